# Sourced by scripts/test.sh: installs the components tests need, once, outside the clone, and
# exports where they are. Safe to run again: it only installs what is missing or changed.
# Needs: the Rust toolchain, Python 3, npm (Node.js) and, as root, apt.

# Python peers and servers, in a venv keyed by the requirements file.
venv="$CLOISTER_CACHE/venv"
stamp="$venv/.requirements"
if ! cmp -s scripts/requirements-test.txt "$stamp" 2>/dev/null; then
  step "python venv with test peers ($venv)"
  if ! python3 -m venv "$venv" 2>/dev/null; then
    # Debian's python3 splits venv support into its own package.
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
  cp scripts/requirements-test.txt "$stamp"
fi
export CLOISTER_PYTHON="$venv/bin/python"

# Azurite (Azure Blob emulator) from npm.
if [ ! -x "$CLOISTER_TOOLS/node_modules/.bin/azurite-blob" ]; then
  if ! command -v npm >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
  fi
  step "azurite into $CLOISTER_TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$CLOISTER_TOOLS" azurite@3.37.0 >/dev/null 2>&1
fi

# PostgreSQL server binaries: the tests start a private cluster on loopback (as user postgres).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  step "postgresql from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

# Sourced by scripts/test.sh: installs the components tests need, once, outside the clone,
# and exports where they are. Safe to run again (it only installs what is missing).
if [ -f scripts/requirements-test.txt ]; then
  venv="$CLOISTER_CACHE/venv"
  stamp="$venv/.requirements"
  if ! cmp -s scripts/requirements-test.txt "$stamp" 2>/dev/null; then
    step "python venv with test peers ($venv)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r scripts/requirements-test.txt
    cp scripts/requirements-test.txt "$stamp"
  fi
  export CLOISTER_PYTHON="$venv/bin/python"
fi

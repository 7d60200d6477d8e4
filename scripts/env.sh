# Sourced by the scripts: where builds and tools live. Outside the clone, so repeated runs
# (and CI runs on the same machine) are warm.
CLOISTER_CACHE="${CLOISTER_CACHE:-$HOME/.cache/cloister}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CLOISTER_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CLOISTER_TOOLS="$CLOISTER_CACHE/tools"
mkdir -p "$CARGO_TARGET_DIR" "$CLOISTER_TOOLS"

step() { printf '\n==> %s\n' "$*" >&2; }

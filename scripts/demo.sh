#!/usr/bin/env bash
# Build cloister and run its main demo on embedded defaults. Arguments go to `cloister demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
step "building cloister (a cold build takes a few minutes)"
cargo build --locked -p cloister-cli --bin cloister
step "cloister demo $*"
exec "$CARGO_TARGET_DIR/debug/cloister" demo "$@"

#!/usr/bin/env bash
# Build cloister and run its main demo on embedded defaults. Arguments go to `cloister demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# Release: the default demo (10 million trips) takes about a minute on 2 cores; a debug build
# is about ten times slower.
step "building cloister --release (a cold build takes a while)"
cargo build --locked --release -p cloister-cli --bin cloister
step "cloister demo $*"
exec "$CARGO_TARGET_DIR/release/cloister" demo "$@"

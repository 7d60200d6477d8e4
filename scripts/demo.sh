#!/usr/bin/env bash
# Build cloister and cloister-demo and run the main demo on embedded defaults. Arguments go to `cloister demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
# Release: the default demo (10 million trips) takes about ten seconds on 2 cores; a debug
# build is far slower.
step "building cloister and cloister-demo --release (a cold build takes a while)"
# `cloister demo` runs the cloister-demo binary next to it.
cargo build --locked --release -p cloister-cli -p cloister-demo --bin cloister --bin cloister-demo
step "cloister demo $*"
exec "$CARGO_TARGET_DIR/release/cloister" demo "$@"

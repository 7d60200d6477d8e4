#!/usr/bin/env bash
# Everything CI checks, from a fresh machine: formatting, lints, dependency boundaries, all
# tests, and a bounded fuzz run. Installs what the tests need (see scripts/setup.sh).
# With CI=true a missing component fails the run instead of skipping tests.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
. scripts/setup.sh
step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings
# The CAS and LAS clients alone (what the runtime links): the workspace build enables `server`.
cargo clippy --locked -p cloister-cas -p cloister-las --no-default-features --lib --tests -- -D warnings
step "cargo doc (broken intra-doc links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --workspace --lib
step "dependency boundaries"
scripts/boundaries.sh
step "the workload's measurement ignores demo and bench edits"
scripts/measure-stability.sh
step "cargo test"
cargo test --locked --workspace --no-fail-fast
step "cargo test (CAS and LAS clients without their servers)"
cargo test --locked -p cloister-cas -p cloister-las --no-default-features --no-fail-fast --lib --tests
step "fuzz (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-15}" scripts/fuzz.sh
step "all checks passed"

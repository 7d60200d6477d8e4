#!/usr/bin/env bash
# The measured workload does not change when demo or benchmark code does (issue 10).
#
# Builds `cloister` (the workload a policy pins) and `cloister-demo`, measures both, makes a
# behaviour-changing edit to a demo source file, rebuilds both and checks that the workload's
# measurement (`cloister measure`) is unchanged while the demo binary's digest changed (so the
# edit was built: the check can fail). The edited file is restored on every exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
probe_file=crates/demo/src/main.rs
backup=$(mktemp)
cp "$probe_file" "$backup"
restore() {
  cp "$backup" "$probe_file"
  rm -f "$backup"
  # A newer mtime than the probe build's outputs: the next build takes the restored file.
  touch "$probe_file"
}
trap restore EXIT

build() { cargo build --locked -q -p cloister-cli -p cloister-demo --bin cloister --bin cloister-demo; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
bin="$CARGO_TARGET_DIR/debug"
measure() {
  workload=$("$bin/cloister" measure --json | field measurement)
  demo=$("$bin/cloister" measure --exe "$bin/cloister-demo" --json | field exe_sha256)
}

step "measure-stability: building cloister and cloister-demo"
build
measure
workload_before=$workload demo_before=$demo

step "measure-stability: editing $probe_file (its error prefix) and rebuilding"
grep -q '"cloister: {err:#}"' "$probe_file" || { echo "measure-stability: the probe line is gone from $probe_file" >&2; exit 2; }
sed -i 's/"cloister: {err:#}"/"cloister (measure-stability probe): {err:#}"/' "$probe_file"
build
measure

echo "workload measurement: $workload_before -> $workload" >&2
echo "cloister-demo sha256: $demo_before -> $demo" >&2
if [ "$demo" = "$demo_before" ]; then
  echo "measure-stability: the demo edit did not change cloister-demo: the check proves nothing" >&2
  exit 1
fi
if [ "$workload" != "$workload_before" ]; then
  echo "measure-stability: editing demo code changed the workload's measurement" >&2
  exit 1
fi
step "measure-stability: the workload's measurement is unchanged"

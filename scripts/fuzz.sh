#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every parser of untrusted bytes (cargo-fuzz / libFuzzer).
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh snp_report     one target for an hour
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. Crashes are saved under fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
seconds="${FUZZ_SECONDS:-20}"
if ! command -v cargo-fuzz >/dev/null 2>&1 && [ ! -x "$CLOISTER_TOOLS/bin/cargo-fuzz" ]; then
  step "installing cargo-fuzz into $CLOISTER_TOOLS"
  cargo install --locked --root "$CLOISTER_TOOLS" cargo-fuzz
fi
export PATH="$CLOISTER_TOOLS/bin:$PATH"
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
for t in "${targets[@]}"; do
  step "fuzz $t for ${seconds}s"
  mkdir -p "fuzz/corpus/$t"
  seeds="fuzz/seeds/$t"; [ -d "$seeds" ] || seeds=""
  cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" $seeds -- -max_total_time="$seconds" -rss_limit_mb=2048 2>&1 | tail -n 3
done

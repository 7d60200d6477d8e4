#!/usr/bin/env bash
# Bounded coverage-guided fuzzing of every parser of untrusted bytes (cargo-fuzz / libFuzzer).
#   scripts/fuzz.sh                 every target for FUZZ_SECONDS (default 20) each
#   FUZZ_SECONDS=3600 scripts/fuzz.sh snp_report     one target for an hour
# cargo-fuzz needs nightly-only compiler flags; RUSTC_BOOTSTRAP=1 lets the stable toolchain
# accept them. Crashes, and inputs that take over 10 s (a hang is a denial of service), are
# saved under fuzz/artifacts/<target>/ and fail the run.
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
  # Seed each target with the real samples it parses (read-only; new inputs go to fuzz/corpus).
  case "$t" in
    dcap_quote) seeds="testdata/tee-evidence/sgx-dcap testdata/tee-evidence/tdx" ;;
    snp_report) seeds="testdata/tee-evidence/sev-snp/go-sev-guest testdata/tee-evidence/sev-snp/virtee-sev" ;;
    maa_jwt) seeds="testdata/tee-evidence/maa-jwt" ;;
    ae_cell) seeds="testdata/always-encrypted/swisscom" ;;
    policy_parse) seeds="crates/policy/examples" ;;
    kmt_key_material) seeds="fuzz/seeds/kmt_key_material" ;;
    spill_chunk) seeds="" ;; # the target seals and reads back its own valid chunk streams
    app_bundle) seeds="" ;;
    signed_request) seeds="" ;;
    las_envelope) seeds="testdata/tee-evidence/sgx-dcap testdata/tee-evidence/tdx testdata/tee-evidence/sev-snp/go-sev-guest testdata/tee-evidence/sev-snp/virtee-sev" ;;
    *) seeds="" ;;
  esac
  # shellcheck disable=SC2086 # $seeds is a list of folders
  log="$CLOISTER_CACHE/fuzz-$t.log"
  if ! cargo fuzz run --sanitizer none "$t" "fuzz/corpus/$t" $seeds -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "fuzz: $t failed (crash inputs, if any, are in fuzz/artifacts/$t; full log: $log)" >&2
    exit 1
  fi
  grep -E '^(Done|INFO: seed corpus)' "$log" || true
done

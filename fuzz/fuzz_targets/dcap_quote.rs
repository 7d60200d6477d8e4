#![no_main]
//! Arbitrary bytes as an Intel DCAP quote: the header sniffer, the layout reader and the whole
//! verification (dcap-qvl included) against the bundled SGX and TDX sample collateral, at a time
//! inside their windows. Nothing may panic; anything may be refused.
//!
//! Seed it with the sample quotes: `cargo fuzz run dcap_quote fuzz/corpus/dcap_quote
//! testdata/tee-evidence/sgx-dcap testdata/tee-evidence/tdx`.
use cloister_attest::dcap::{Collateral, DcapVerifier, sniff};
use cloister_attest::{Context, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

/// 2025-07-01T00:00:00Z: inside the windows of both sample collaterals.
const NOW: u64 = 1_751_328_000;

static VERIFIERS: LazyLock<Vec<DcapVerifier>> = LazyLock::new(|| {
    [
        &include_bytes!("../../testdata/tee-evidence/sgx-dcap/sgx_quote_collateral.json")[..],
        &include_bytes!("../../testdata/tee-evidence/tdx/tdx_quote_collateral.json")[..],
    ]
    .into_iter()
    .map(|json| DcapVerifier::new(Collateral::from_json(json).expect("sample collateral")))
    .collect()
});

fuzz_target!(|data: &[u8]| {
    let ctx = Context::new(SystemTime::UNIX_EPOCH + Duration::from_secs(NOW));
    let tee = sniff(data);
    for verifier in VERIFIERS.iter() {
        if let Ok(verified) = verifier.verify(data, &ctx) {
            // Whatever verifies was sniffed as the TEE it claims.
            assert_eq!(tee, Some(verified.claims().tee));
        }
    }
});

#![no_main]
//! SEV-SNP: arbitrary bytes as a report (raw or hex) verified with the go-sev-guest VCEK, and as
//! a VCEK certificate. Nothing may panic; a forged report must never verify.
use cloister_attest::snp::{SnpVerifier, sniff};
use cloister_attest::{Context, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

const VCEK: &[u8] = include_bytes!("../../testdata/tee-evidence/sev-snp/go-sev-guest/vcek.der");
const REPORT: &[u8] =
    include_bytes!("../../testdata/tee-evidence/sev-snp/go-sev-guest/attestation.bin");

static VERIFIER: LazyLock<SnpVerifier> = LazyLock::new(|| {
    SnpVerifier::new(VCEK.to_vec(), None).expect("the sample VCEK chains to the bundled Milan ARK")
});

fuzz_target!(|data: &[u8]| {
    let _ = sniff(data);
    // 2025-01-01, inside the sample VCEK's validity window.
    let ctx = Context::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600));
    if VERIFIER.verify(data, &ctx).is_ok() && data.len() == REPORT.len() {
        // Only the sample itself, or a change to the unsigned reserved tail, can verify (as raw
        // bytes; a hex form of the sample would be longer).
        assert_eq!(data[..0x330], REPORT[..0x330]);
    }
    // The same bytes as a VCEK (DER or PEM): parsing and the chain check must not panic.
    if data.len() < 8192 {
        let _ = SnpVerifier::new(data.to_vec(), None);
    }
});

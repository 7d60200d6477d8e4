#![no_main]
//! Arbitrary bytes as an MAA token, verified against the sample provider's JWKS at a fixed time
//! inside the sample token's validity; and the same bytes as a token payload through the claim
//! mapping, which the fuzzer could not reach through a valid signature.
//!
//! Seed the corpus with `testdata/tee-evidence/maa-jwt/*.jwt`.

use cloister_attest::maa::{self, MaaVerifier};
use cloister_attest::{Context, Verifier};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::{Duration, SystemTime};

const JWKS: &[u8] = include_bytes!("../../testdata/tee-evidence/maa-jwt/sharedeus_certs_jwks.json");
const ISSUER: &str = "https://sharedeus.eus.attest.azure.net";

#[allow(clippy::expect_used)] // The committed sample JWKS loads; a fuzz harness may panic on setup.
static VERIFIER: LazyLock<MaaVerifier> =
    LazyLock::new(|| MaaVerifier::new(JWKS, ISSUER).expect("the sample JWKS loads"));

fuzz_target!(|data: &[u8]| {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_695_740_000);
    let ctx = Context::new(now).expect_report_data([0u8; 32]);
    let _ = maa::sniff(data);
    let _ = VERIFIER.verify(data, &ctx);
    maa::fuzz_claims(data);
});

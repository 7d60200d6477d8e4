//! Binding evidence to a workload's key: `report_data = SHA-512(nonce ‖ SHA-256(SPKI DER))`.
//!
//! The workload makes a fresh key pair, asks the verifier (CAS) for a nonce, and puts this value
//! in its evidence's `report_data`. The verifier recomputes it from the nonce it issued and the
//! public key the workload presents, so evidence cannot be replayed for another key or nonce.

use crate::Error;
use sha2::{Digest, Sha256, Sha512};

/// The 64-byte `report_data` binding `nonce` and the DER `SubjectPublicKeyInfo` of the workload key.
pub fn report_data(nonce: &[u8], spki_der: &[u8]) -> [u8; 64] {
    let key_hash = Sha256::digest(spki_der);
    let mut h = Sha512::new();
    h.update(nonce);
    h.update(key_hash);
    h.finalize().into()
}

/// Check that the evidence's `got` report data carries `expected`: equal bytes, where a shorter
/// `expected` must be followed by zeros only (how TEEs pad report data to 64 bytes).
pub fn check(expected: &[u8], got: &[u8]) -> Result<(), Error> {
    let matches = expected.len() <= got.len()
        && got[..expected.len()] == *expected
        && got[expected.len()..].iter().all(|b| *b == 0);
    if matches {
        Ok(())
    } else {
        Err(Error::ReportDataMismatch {
            expected: hex::encode(expected),
            got: hex::encode(got),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_nonce_and_key() {
        let a = report_data(b"nonce", b"key");
        assert_ne!(a, report_data(b"nonce2", b"key"));
        assert_ne!(a, report_data(b"nonce", b"key2"));
        // The key is hashed first, so concatenation ambiguity cannot make two inputs collide.
        assert_ne!(report_data(b"ab", b"c"), report_data(b"a", b"bc"));
        check(&a, &a).unwrap();
    }

    #[test]
    fn shorter_expectation_needs_zero_padding() {
        let mut got = [0u8; 64];
        got[..5].copy_from_slice(&[1, 2, 3, 4, 5]);
        check(&[1, 2, 3, 4, 5], &got).unwrap();
        got[63] = 1;
        assert!(matches!(
            check(&[1, 2, 3, 4, 5], &got),
            Err(Error::ReportDataMismatch { .. })
        ));
        assert!(matches!(
            check(&[0u8; 65], &[0u8; 64]),
            Err(Error::ReportDataMismatch { .. })
        ));
    }
}

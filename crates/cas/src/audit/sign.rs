//! The audit log's key: [`AuditSigner`] (derived from the master key) and [`AuditPublicKey`].

use std::path::Path;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};

use crate::Error;
use crate::master_key::{KeyPurpose, MasterKey};

use super::*;

/// The key that signs the audit log. Derived from the master key; wiped on drop.
///
/// Signs with `ring` (several times faster than the pure-Rust P-256), normalising `s` to the
/// low form the verifier requires; the verifier uses `p256`.
pub struct AuditSigner {
    key: SigningKey,
    /// The same key, loaded into `ring` for signing.
    ring: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("public_key", &self.public_key().to_hex())
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// Derives the audit signing key from the master key (see the module docs).
    pub fn from_master_key(master: &MasterKey) -> Result<Self, Error> {
        for counter in 0u8..=255 {
            let seed = master.derive_labelled(KeyPurpose::AuditSigning.info(), &[counter]);
            // Fails only for 0 or a value ≥ the group order: probability about 2⁻³² per try.
            if let Ok(key) = SigningKey::from_slice(seed.as_ref()) {
                let rng = ring::rand::SystemRandom::new();
                let point = key.verifying_key().to_sec1_point(false);
                let ring = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    seed.as_ref(),
                    point.as_bytes(),
                    &rng,
                )
                .map_err(|_| Error::Internal("ring refused a valid P-256 key"))?;
                return Ok(AuditSigner { key, ring, rng });
            }
        }
        Err(Error::Internal(
            "256 HKDF outputs in a row were not P-256 scalars",
        ))
    }

    /// The public key that verifies this signer's log.
    pub fn public_key(&self) -> AuditPublicKey {
        AuditPublicKey(*self.key.verifying_key())
    }

    pub(super) fn sign(&self, message: &[u8]) -> String {
        // ring signs with SHA-256, as `p256` does; both give `r ‖ s` (64 bytes). Should ring
        // fail (it needs the OS random generator), the deterministic p256 signer takes over.
        let sig = self
            .ring
            .sign(&self.rng, message)
            .ok()
            .and_then(|s| Signature::from_slice(s.as_ref()).ok())
            .unwrap_or_else(|| self.key.sign(message));
        hex::encode(sig.normalize_s().to_bytes())
    }
}

/// The public key of an audit log (P-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditPublicKey(VerifyingKey);

impl AuditPublicKey {
    /// The SEC1 compressed point, hex (66 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_sec1_point(true).as_bytes())
    }

    /// Parses a SEC1 point (compressed or not) in hex.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidInput {
            what: "audit public key",
            reason: "expected a SEC1-encoded P-256 point in hex",
        };
        let bytes = hex::decode(text.trim()).map_err(|_| invalid())?;
        VerifyingKey::from_sec1_bytes(&bytes)
            .map(AuditPublicKey)
            .map_err(|_| invalid())
    }

    pub(super) fn verifies(&self, message: &[u8], signature_hex: &str) -> bool {
        let Ok(bytes) = hex::decode(signature_hex) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        // Only the low-S form is accepted, so a signature has exactly one valid encoding.
        sig.normalize_s() == sig && self.0.verify(message, &sig).is_ok()
    }
}

/// Reads the public key the CAS wrote next to its log (see the module docs on trusting it).
pub fn read_public_key(dir: &Path) -> Result<AuditPublicKey, Error> {
    let path = dir.join(PUBLIC_KEY_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io("read audit public key", &path, e))?;
    AuditPublicKey::from_hex(&text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn signer() -> AuditSigner {
        AuditSigner::from_master_key(&MasterKey::from_bytes(Zeroizing::new([3u8; 32]))).unwrap()
    }

    #[test]
    fn signatures_are_low_s_and_verify() {
        let s = signer();
        let public = s.public_key();
        for i in 0..64u32 {
            let msg = i.to_be_bytes();
            let hex_sig = s.sign(&msg);
            let sig = Signature::from_slice(&hex::decode(&hex_sig).unwrap()).unwrap();
            assert_eq!(sig.normalize_s(), sig, "low S");
            assert!(public.verifies(&msg, &hex_sig));
            assert!(!public.verifies(b"other", &hex_sig));
        }
    }

    #[test]
    fn high_s_signature_is_refused() {
        let s = signer();
        let msg = b"m";
        let sig: Signature = s.key.sign(msg);
        let low = sig.normalize_s();
        let (r, s_) = low.split_scalars();
        let high = Signature::from_scalars(r, -*s_).unwrap();
        let public = s.public_key();
        assert!(public.verifies(msg, &hex::encode(low.to_bytes())));
        assert!(!public.verifies(msg, &hex::encode(high.to_bytes())));
    }
}

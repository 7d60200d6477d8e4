//! Configuration sealed to a workload's key, readable only inside its TEE.
//!
//! HPKE (RFC 9180) in base mode with DHKEM(P-256, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM.
//! The recipient key is the workload's fresh P-256 key: the same key whose SPKI the evidence
//! binds (`report_data`) and that the session CA certifies for mutual TLS, so configuration
//! released after an attestation can only be opened by the attested process. Using one P-256 key
//! for ECDSA (TLS) and ECDH (HPKE) is deliberate: it keeps the binding to one SPKI; the two uses
//! go through distinct KDFs, and the key lives only for one process.
//!
//! The associated data names what the envelope is for (session hash, service, nonce), so an
//! envelope cannot be replayed into another attestation.

use crate::Error;
use base64::engine::general_purpose::STANDARD as B64;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use p256::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use zeroize::Zeroizing;

type Kem = DhP256HkdfSha256;

/// The HPKE `info` string: the protocol and its version.
const INFO: &[u8] = b"cloister/v1 sealed configuration";

/// A workload's fresh P-256 key pair. It never leaves the process; the secret is wiped on drop.
pub struct WorkloadKey {
    secret: p256::SecretKey,
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkloadKey")
            .field("spki_sha256", &hex::encode(crate::sha256(&self.spki_der())))
            .finish_non_exhaustive()
    }
}

impl WorkloadKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Result<Self, Error> {
        Ok(Self {
            secret: crate::random_p256()?,
        })
    }

    /// The DER `SubjectPublicKeyInfo` of the public key: what evidence binds and CAS certifies.
    pub fn spki_der(&self) -> Vec<u8> {
        // Encoding a valid P-256 public key cannot fail.
        self.secret
            .public_key()
            .to_public_key_der()
            .map(|d| d.as_bytes().to_vec())
            .unwrap_or_default()
    }

    /// The private key as PKCS#8 DER, for the TLS stack; wiped when dropped.
    pub fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        let doc = self.secret.to_pkcs8_der().map_err(|e| {
            tracing::error!(error = %e, "PKCS#8 encoding");
            Error::Internal("PKCS#8 encoding of a valid key failed")
        })?;
        Ok(Zeroizing::new(doc.as_bytes().to_vec()))
    }

    /// Open an envelope sealed to this key with the same associated data.
    pub fn open(&self, sealed: &Sealed, aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, Error> {
        let scalar = Zeroizing::new(self.secret.to_bytes().to_vec());
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&scalar)
            .map_err(|_| Error::Internal("HPKE rejected a valid P-256 scalar"))?;
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc)
            .map_err(|_| Error::Envelope("encapsulated key is not a P-256 point"))?;
        hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            INFO,
            &sealed.ciphertext,
            aad,
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::Envelope("does not open with this key and context"))
    }
}

/// An HPKE envelope: the encapsulated key and the AEAD ciphertext (base64 in JSON).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sealed {
    /// The sender's encapsulated ephemeral public key.
    #[serde(with = "b64")]
    #[schema(value_type = String, format = Byte)]
    pub enc: Vec<u8>,
    /// The sealed bytes with their AES-GCM tag.
    #[serde(with = "b64")]
    #[schema(value_type = String, format = Byte)]
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Seal `plaintext` to the P-256 key whose DER SPKI is `recipient_spki`.
pub fn seal(recipient_spki: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Sealed, Error> {
    let pk = p256::PublicKey::from_public_key_der(recipient_spki).map_err(|_| {
        Error::invalid(
            "workload public key",
            "not a DER P-256 SubjectPublicKeyInfo",
        )
    })?;
    let point = pk.to_sec1_bytes();
    let pk = <Kem as hpke::Kem>::PublicKey::from_bytes(&point)
        .map_err(|_| Error::invalid("workload public key", "not a P-256 point"))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(
        &OpModeS::Base,
        &pk,
        INFO,
        plaintext,
        aad,
    )
    .map_err(|e| {
        tracing::error!(error = %e, "HPKE seal");
        Error::Internal("HPKE sealing failed")
    })?;
    Ok(Sealed {
        enc: enc.to_bytes().to_vec(),
        ciphertext,
    })
}

/// Check that `spki` is a DER P-256 `SubjectPublicKeyInfo` (the only workload key type).
pub fn check_workload_spki(spki: &[u8]) -> Result<(), Error> {
    p256::PublicKey::from_public_key_der(spki)
        .map(|_| ())
        .map_err(|_| {
            Error::invalid(
                "workload public key",
                "not a DER P-256 SubjectPublicKeyInfo",
            )
        })
}

mod b64 {
    use super::B64;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        B64.decode(s.as_bytes()).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = WorkloadKey::generate().unwrap();
        let sealed = seal(&key.spki_der(), b"configuration with SECRET-CANARY", b"ctx").unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"SECRET"));
        let opened = key.open(&sealed, b"ctx").unwrap();
        assert_eq!(opened.as_slice(), b"configuration with SECRET-CANARY");
    }

    #[test]
    fn another_key_or_context_cannot_open() {
        let key = WorkloadKey::generate().unwrap();
        let other = WorkloadKey::generate().unwrap();
        let sealed = seal(&key.spki_der(), b"config", b"ctx").unwrap();
        assert!(matches!(
            other.open(&sealed, b"ctx"),
            Err(Error::Envelope(_))
        ));
        assert!(matches!(
            key.open(&sealed, b"other ctx"),
            Err(Error::Envelope(_))
        ));
        let mut tampered = sealed.clone();
        tampered.ciphertext[0] ^= 1;
        assert!(matches!(
            key.open(&tampered, b"ctx"),
            Err(Error::Envelope(_))
        ));
        let mut bad_enc = sealed;
        bad_enc.enc.truncate(10);
        assert!(matches!(
            key.open(&bad_enc, b"ctx"),
            Err(Error::Envelope(_))
        ));
    }

    #[test]
    fn refuses_non_p256_keys() {
        assert!(matches!(
            seal(b"not a key", b"x", b""),
            Err(Error::InvalidInput { .. })
        ));
        assert!(check_workload_spki(&WorkloadKey::generate().unwrap().spki_der()).is_ok());
    }

    #[test]
    fn debug_omits_the_secret() {
        let key = WorkloadKey::generate().unwrap();
        let dbg = format!("{key:?}");
        let scalar = hex::encode(key.secret.to_bytes());
        assert!(!dbg.contains(&scalar));
        assert!(dbg.contains("spki_sha256"));
    }

    #[test]
    fn sealed_json_round_trip() {
        let key = WorkloadKey::generate().unwrap();
        let sealed = seal(&key.spki_der(), b"config", b"").unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        let back: Sealed = serde_json::from_str(&json).unwrap();
        assert_eq!(key.open(&back, b"").unwrap().as_slice(), b"config");
    }
}

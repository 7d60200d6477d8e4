//! Session hashes, owner keys and detached signatures.
//!
//! # The signing scheme
//!
//! - The *session hash* of a policy version is SHA-256 over the exact bytes of its YAML text
//!   ([`SessionHash::of`]); no canonicalisation, so what was signed is what is stored.
//! - Owners sign with Ed25519 (RFC 8032, `ed25519-dalek`, strict verification) the message
//!   `b"cloister-policy-v1\0" || session_hash` (19 + 32 bytes, [`signing_message`]). The prefix
//!   keeps a policy signature from ever being valid for anything else the key might sign.
//! - A key is named by its *fingerprint*: lower-case hex SHA-256 of its SubjectPublicKeyInfo
//!   DER ([`KeyFingerprint`]); owners appear in the policy as SPKI PEM or base64 DER.
//! - [`SignedPolicy`] is the wire form the CAS API takes: the YAML and a list of
//!   `{key_fingerprint, sig}` (signature in standard base64).

use crate::Error;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use pkcs8::der::Decode as _;
use pkcs8::der::pem::{self, LineEnding};
use pkcs8::spki::{DecodePublicKey, EncodePublicKey, SubjectPublicKeyInfoRef};
use pkcs8::{DecodePrivateKey, EncodePrivateKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// The domain-separation prefix of the signed message.
pub const SIGNING_CONTEXT: &[u8] = b"cloister-policy-v1\0";

/// SHA-256 of the exact YAML bytes of one policy version; shown and serialised as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionHash([u8; 32]);

impl SessionHash {
    /// The hash of `yaml`, byte for byte.
    pub fn of(yaml: impl AsRef<[u8]>) -> Self {
        Self(Sha256::digest(yaml.as_ref()).into())
    }

    /// The 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Build from 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

/// `b"cloister-policy-v1\0" || hash`: the message owners sign.
pub fn signing_message(hash: &SessionHash) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + 32);
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(&hash.0);
    message
}

/// A key's fingerprint: SHA-256 of its SubjectPublicKeyInfo DER, shown as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint([u8; 32]);

impl KeyFingerprint {
    /// The fingerprint of a SubjectPublicKeyInfo DER encoding.
    pub fn of_spki_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

macro_rules! hex32 {
    ($ty:ident, $what:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($ty), "({})"), self)
            }
        }

        impl FromStr for $ty {
            type Err = Error;

            /// Parse 64 hex digits (either case).
            fn from_str(s: &str) -> Result<Self, Error> {
                let mut bytes = [0u8; 32];
                hex::decode_to_slice(s, &mut bytes).map_err(|e| Error::Malformed {
                    what: $what,
                    reason: format!("expected 64 hex digits: {e}"),
                })?;
                Ok(Self(bytes))
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hex32!(SessionHash, "session hash");
hex32!(KeyFingerprint, "key fingerprint");

/// An owner's Ed25519 public key, as it appears in a policy.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    fingerprint: KeyFingerprint,
}

impl PublicKey {
    fn new(key: VerifyingKey) -> Result<Self, Error> {
        let der = key.to_public_key_der().map_err(|e| Error::Malformed {
            what: "public key",
            reason: e.to_string(),
        })?;
        Ok(Self {
            key,
            fingerprint: KeyFingerprint::of_spki_der(der.as_bytes()),
        })
    }

    /// Parse an Ed25519 SubjectPublicKeyInfo, PEM (`PUBLIC KEY`) or base64 of the DER.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let der = spki_der(text)?;
        let key = VerifyingKey::from_public_key_der(&der).map_err(|e| Error::Malformed {
            what: "owner key",
            reason: format!("not an Ed25519 SubjectPublicKeyInfo: {e}"),
        })?;
        if key.is_weak() {
            return Err(Error::Malformed {
                what: "owner key",
                reason: "weak (small-order) Ed25519 key".into(),
            });
        }
        Self::new(key)
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.fingerprint
    }

    /// The SubjectPublicKeyInfo as PEM.
    pub fn to_pem(&self) -> Result<String, Error> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| Error::Malformed {
                what: "public key",
                reason: e.to_string(),
            })
    }

    /// Whether `sig` is this key's signature over `hash` (strict Ed25519 verification).
    pub fn verifies(&self, hash: &SessionHash, sig: &[u8; 64]) -> bool {
        let sig = ed25519_dalek::Signature::from_bytes(sig);
        self.key.verify_strict(&signing_message(hash), &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("alg", &"ed25519")
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

/// The DER of a SubjectPublicKeyInfo written as PEM or as base64, checked to be one.
pub(crate) fn spki_der(text: &str) -> Result<Vec<u8>, Error> {
    let trimmed = text.trim();
    let der = if trimmed.starts_with("-----BEGIN") {
        let (label, der) = pem::decode_vec(trimmed.as_bytes()).map_err(|e| Error::Malformed {
            what: "public key",
            reason: format!("bad PEM: {e}"),
        })?;
        if label != "PUBLIC KEY" {
            return Err(Error::Malformed {
                what: "public key",
                reason: format!("PEM label is `{label}`, expected `PUBLIC KEY`"),
            });
        }
        der
    } else {
        let compact: String = trimmed.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| Error::Malformed {
                what: "public key",
                reason: format!("neither PEM nor base64: {e}"),
            })?
    };
    SubjectPublicKeyInfoRef::from_der(&der).map_err(|e| Error::Malformed {
        what: "public key",
        reason: format!("not a SubjectPublicKeyInfo: {e}"),
    })?;
    Ok(der)
}

/// An owner's signing key, for `cloister keys gen` and `cloister policy sign`.
///
/// The key is wiped from memory on drop and never shown by `Debug`, which prints the public
/// fingerprint only.
pub struct OwnerKey {
    key: SigningKey,
    public: PublicKey,
}

impl OwnerKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| Error::Unavailable {
            what: "operating system random source",
            reason: e.to_string(),
        })?;
        Self::from_signing_key(SigningKey::from_bytes(&seed))
    }

    /// A key from a 32-byte Ed25519 seed (tests and key import).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, Error> {
        Self::from_signing_key(SigningKey::from_bytes(seed))
    }

    fn from_signing_key(key: SigningKey) -> Result<Self, Error> {
        let public = PublicKey::new(key.verifying_key())?;
        Ok(Self { key, public })
    }

    /// Load a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) Ed25519 key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| Error::Malformed {
            what: "owner private key",
            reason: format!("not a PKCS#8 Ed25519 key: {e}"),
        })?;
        Self::from_signing_key(key)
    }

    /// The key as PKCS#8 PEM, in memory that is wiped on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| Error::Malformed {
                what: "owner private key",
                reason: e.to_string(),
            })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The public key's fingerprint.
    pub fn fingerprint(&self) -> KeyFingerprint {
        self.public.fingerprint
    }

    /// Sign a session hash.
    pub fn sign(&self, hash: &SessionHash) -> Signature {
        Signature {
            key_fingerprint: self.public.fingerprint,
            sig: self.key.sign(&signing_message(hash)).to_bytes(),
        }
    }
}

impl fmt::Debug for OwnerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerKey")
            .field("fingerprint", &self.public.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A detached signature over a session hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// Which key signed.
    pub key_fingerprint: KeyFingerprint,
    /// The 64-byte Ed25519 signature; standard base64 in JSON.
    #[serde(with = "b64_sig")]
    pub sig: [u8; 64],
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("key_fingerprint", &self.key_fingerprint)
            .field(
                "sig",
                &base64::engine::general_purpose::STANDARD.encode(self.sig),
            )
            .finish()
    }
}

mod b64_sig {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(sig: &[u8; 64], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(sig))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 64], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)?;
        bytes
            .try_into()
            .map_err(|b: Vec<u8>| serde::de::Error::invalid_length(b.len(), &"64 bytes"))
    }
}

/// A policy version with its owners' signatures: what the CAS API takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedPolicy {
    /// The policy text; its bytes are what the session hash covers.
    pub yaml: String,
    /// Detached owner signatures over that hash.
    #[serde(default)]
    pub signatures: Vec<Signature>,
}

impl SignedPolicy {
    /// An unsigned policy.
    pub fn new(yaml: impl Into<String>) -> Self {
        Self {
            yaml: yaml.into(),
            signatures: Vec::new(),
        }
    }

    /// The session hash of the YAML.
    pub fn hash(&self) -> SessionHash {
        SessionHash::of(self.yaml.as_bytes())
    }

    /// Add `key`'s signature (replacing an earlier one by the same key).
    pub fn sign(&mut self, key: &OwnerKey) {
        let signature = key.sign(&self.hash());
        self.signatures
            .retain(|s| s.key_fingerprint != signature.key_fingerprint);
        self.signatures.push(signature);
    }

    /// Builder form of [`SignedPolicy::sign`].
    pub fn signed_by(mut self, key: &OwnerKey) -> Self {
        self.sign(key);
        self
    }

    /// The JSON wire form.
    pub fn to_json(&self) -> String {
        // Serialising strings and a list of plain structs to JSON cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parse the JSON wire form.
    pub fn from_json(json: &str) -> Result<Self, Error> {
        serde_json::from_str(json).map_err(|e| Error::Malformed {
            what: "signed policy JSON",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> OwnerKey {
        OwnerKey::from_seed(&[n; 32]).unwrap()
    }

    #[test]
    fn hash_is_sha256_of_the_exact_bytes() {
        let h = SessionHash::of("abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_ne!(SessionHash::of("abc\n"), h);
        assert_eq!(h.to_string().parse::<SessionHash>().unwrap(), h);
    }

    #[test]
    fn signature_verifies_for_its_hash_only() {
        let k = key(1);
        let h = SessionHash::of("policy");
        let sig = k.sign(&h);
        assert_eq!(sig.key_fingerprint, k.fingerprint());
        assert!(k.public_key().verifies(&h, &sig.sig));
        assert!(!k.public_key().verifies(&SessionHash::of("other"), &sig.sig));
        assert!(!key(2).public_key().verifies(&h, &sig.sig));
    }

    #[test]
    fn signature_is_over_the_domain_separated_message() {
        let k = key(3);
        let h = SessionHash::of("p");
        let raw = k.key.sign(h.as_bytes()).to_bytes();
        assert!(
            !k.public_key().verifies(&h, &raw),
            "a bare-hash signature must not count"
        );
        assert_eq!(&signing_message(&h)[..19], b"cloister-policy-v1\0");
    }

    #[test]
    fn keys_round_trip_through_pem_and_base64() {
        let k = key(4);
        let pem = k.to_pkcs8_pem().unwrap();
        let back = OwnerKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(back.fingerprint(), k.fingerprint());

        let public_pem = k.public_key().to_pem().unwrap();
        let parsed = PublicKey::parse(&public_pem).unwrap();
        assert_eq!(parsed.fingerprint(), k.fingerprint());
        let b64: String = public_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert_eq!(PublicKey::parse(&b64).unwrap(), parsed);
        // The fingerprint is SHA-256 of the SPKI DER.
        let der = base64::engine::general_purpose::STANDARD
            .decode(&b64)
            .unwrap();
        assert_eq!(k.fingerprint(), KeyFingerprint::of_spki_der(&der));
    }

    #[test]
    fn bad_public_keys_are_refused() {
        assert!(PublicKey::parse("not a key").is_err());
        assert!(PublicKey::parse("aGVsbG8=").is_err());
        let wrong_label = "-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n";
        assert!(PublicKey::parse(wrong_label).is_err());
    }

    #[test]
    fn signed_policy_json_round_trips() {
        let signed = SignedPolicy::new("name: a/b\n")
            .signed_by(&key(5))
            .signed_by(&key(5));
        assert_eq!(signed.signatures.len(), 1, "re-signing replaces");
        let json = signed.to_json();
        assert!(json.contains("\"key_fingerprint\""));
        assert_eq!(SignedPolicy::from_json(&json).unwrap(), signed);
        assert!(SignedPolicy::from_json("{\"yaml\": \"x\", \"extra\": 1}").is_err());
    }

    #[test]
    fn owner_key_debug_omits_the_secret() {
        let k = key(6);
        let debug = format!("{k:?}");
        assert!(debug.contains(&k.fingerprint().to_string()));
        let pem = k.to_pkcs8_pem().unwrap();
        let secret_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&secret_b64));
        assert!(!debug.contains(&hex::encode([6u8; 32])));
        assert!(!debug.contains("[6, 6"));
    }

    #[test]
    fn generated_keys_differ() {
        let a = OwnerKey::generate().unwrap();
        let b = OwnerKey::generate().unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}

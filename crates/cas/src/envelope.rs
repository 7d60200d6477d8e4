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
//!
//! # Speed
//!
//! Sealing runs once per attestation on the CAS. Its cost is the KEM's two P-256 scalar
//! multiplications, which the `hpke` crate does with the pure-Rust `p256`. [`RingDhP256`] is the
//! same KEM (DHKEM(P-256, HKDF-SHA256), KEM id 0x0010, the same encapsulated key encoding) whose
//! encapsulation takes the ephemeral key pair and the Diffie-Hellman from `ring`'s assembly
//! P-256; the key derivation (`ExtractAndExpand` with the `hpke` crate's labelled HKDF), the key
//! schedule and the AEAD stay the `hpke` crate's. The wire format is unchanged: envelopes open
//! with the standard KEM, which the tests check, as they check RFC 9180's test vectors.

use crate::Error;
use base64::engine::general_purpose::STANDARD as B64;
use hpke::aead::AesGcm256;
use hpke::kdf::{HkdfSha256, Kdf as _};
use hpke::kem::{DhP256HkdfSha256, SharedSecret};
use hpke::{Deserializable, HpkeError, OpModeR, OpModeS, Serializable};
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
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Sealed {
    /// The sender's encapsulated ephemeral public key.
    #[serde(with = "b64")]
    #[cfg_attr(feature = "server", schema(value_type = String, format = Byte))]
    pub enc: Vec<u8>,
    /// The sealed bytes with their AES-GCM tag.
    #[serde(with = "b64")]
    #[cfg_attr(feature = "server", schema(value_type = String, format = Byte))]
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
    let pk = <RingDhP256 as hpke::Kem>::PublicKey::from_bytes(&point)
        .map_err(|_| Error::invalid("workload public key", "not a P-256 point"))?;
    let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, RingDhP256>(
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

/// DHKEM(P-256, HKDF-SHA256) (RFC 9180 §4.1) with its encapsulation on `ring`'s P-256.
///
/// Keys, encapsulated keys and shared secrets are the standard KEM's ([`DhP256HkdfSha256`]);
/// decapsulation, key derivation and the authenticated mode are delegated to it. Only base-mode
/// encapsulation differs: the ephemeral key pair comes from `ring` (from its own system
/// generator; the `csprng` argument is not used), and so does the Diffie-Hellman, whose output
/// (the x-coordinate, as RFC 9180 §7.1.3 requires) goes through the `hpke` crate's
/// `ExtractAndExpand`.
#[derive(Debug)]
pub struct RingDhP256;

/// `suite_id = "KEM" || I2OSP(kem_id, 2)` (RFC 9180 §4.1).
const KEM_SUITE_ID: [u8; 5] = {
    let id = <Kem as hpke::Kem>::KEM_ID.to_be_bytes();
    [b'K', b'E', b'M', id[0], id[1]]
};

impl RingDhP256 {
    /// `ExtractAndExpand(dh, kem_context = enc || pkR)` (RFC 9180 §4.1, `Encap`).
    fn shared_secret(
        dh: &[u8],
        enc: &[u8],
        pk_recip: &[u8],
    ) -> Result<SharedSecret<Self>, HpkeError> {
        let mut kem_context = Vec::with_capacity(enc.len() + pk_recip.len());
        kem_context.extend_from_slice(enc);
        kem_context.extend_from_slice(pk_recip);
        let mut secret = SharedSecret::<Self>::default();
        HkdfSha256::extract_and_expand(dh, &KEM_SUITE_ID, &kem_context, &mut secret.0)?;
        Ok(secret)
    }

    /// The standard KEM's shared secret as this KEM's (the same bytes; both wipe on drop).
    fn from_std(secret: SharedSecret<Kem>) -> SharedSecret<Self> {
        SharedSecret(secret.0)
    }
}

impl hpke::Kem for RingDhP256 {
    type PublicKey = <Kem as hpke::Kem>::PublicKey;
    type PrivateKey = <Kem as hpke::Kem>::PrivateKey;
    type EncappedKey = <Kem as hpke::Kem>::EncappedKey;
    type NSecret = <Kem as hpke::Kem>::NSecret;
    const KEM_ID: u16 = <Kem as hpke::Kem>::KEM_ID;

    fn sk_to_pk(sk: &Self::PrivateKey) -> Self::PublicKey {
        <Kem as hpke::Kem>::sk_to_pk(sk)
    }

    fn derive_keypair(ikm: &[u8]) -> (Self::PrivateKey, Self::PublicKey) {
        <Kem as hpke::Kem>::derive_keypair(ikm)
    }

    fn decap(
        sk_recip: &Self::PrivateKey,
        pk_sender_id: Option<&Self::PublicKey>,
        encapped_key: &Self::EncappedKey,
    ) -> Result<SharedSecret<Self>, HpkeError> {
        <Kem as hpke::Kem>::decap(sk_recip, pk_sender_id, encapped_key).map(Self::from_std)
    }

    fn encap_with_rng(
        pk_recip: &Self::PublicKey,
        sender_id_keypair: Option<(&Self::PrivateKey, &Self::PublicKey)>,
        csprng: &mut impl hpke::rand_core::CryptoRng,
    ) -> Result<(SharedSecret<Self>, Self::EncappedKey), HpkeError> {
        if sender_id_keypair.is_some() {
            return <Kem as hpke::Kem>::encap_with_rng(pk_recip, sender_id_keypair, csprng)
                .map(|(secret, enc)| (Self::from_std(secret), enc));
        }
        use ring::agreement::{ECDH_P256, EphemeralPrivateKey, UnparsedPublicKey, agree_ephemeral};
        let rng = ring::rand::SystemRandom::new();
        let ephemeral =
            EphemeralPrivateKey::generate(&ECDH_P256, &rng).map_err(|_| HpkeError::EncapError)?;
        // The uncompressed point: the standard `SerializePublicKey` of P-256 (Npk = 65).
        let enc = ephemeral
            .compute_public_key()
            .map_err(|_| HpkeError::EncapError)?;
        let pk_recip = pk_recip.to_bytes();
        let peer = UnparsedPublicKey::new(&ECDH_P256, pk_recip.as_slice());
        let secret = agree_ephemeral(ephemeral, &peer, |dh| {
            Self::shared_secret(dh, enc.as_ref(), &pk_recip)
        })
        .map_err(|_| HpkeError::EncapError)??;
        let enc = Self::EncappedKey::from_bytes(enc.as_ref()).map_err(|_| HpkeError::EncapError)?;
        Ok((secret, enc))
    }
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

    /// RFC 9180 Appendix A.3.1: DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode.
    mod rfc9180_a31 {
        pub const INFO: &str = "4f6465206f6e2061204772656369616e2055726e";
        pub const SK_EM: &str = "4995788ef4b9d6132b249ce59a77281493eb39af373d236a1fe415cb0c2d7beb";
        pub const PK_EM: &str = "04a92719c6195d5085104f469a8b9814d5838ff72b60501e2c4466e5e67b325ac98536d7b61a1af4b78e5b7f951c0900be863c403ce65c9bfcb9382657222d18c4";
        pub const PK_RM: &str = "04fe8c19ce0905191ebc298a9245792531f26f0cece2460639e8bc39cb7f706a826a779b4cf969b8a0e539c7f62fb3d30ad6aa8f80e30f1d128aafd68a2ce72ea0";
        pub const SK_RM: &str = "f3ce7fdae57e1a310d87f1ebbde6f328be0a99cdbcadf4d6589cf29de4b8ffd2";
        pub const SHARED_SECRET: &str =
            "c0d26aeab536609a572b07695d933b589dcf363ff9d93c93adea537aeabb8cb8";
        /// Sequence number 0.
        pub const AAD: &str = "436f756e742d30";
        pub const PT: &str = "4265617574792069732074727574682c20747275746820626561757479";
        pub const CT: &str = "5ad590bb8baa577f8619db35a36311226a896e7342a6d836d8b7bcd2f20b6c7f9076ac232e3ab2523f39513434";
    }

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The DH output of the vector's ephemeral and recipient keys, computed with `p256`.
    fn vector_dh() -> Vec<u8> {
        use rfc9180_a31::*;
        let sk_e = p256::SecretKey::from_slice(&unhex(SK_EM)).unwrap();
        let pk_r = p256::PublicKey::from_sec1_bytes(&unhex(PK_RM)).unwrap();
        assert_eq!(sk_e.public_key().to_sec1_bytes().to_vec(), unhex(PK_EM));
        let shared = p256::ecdh::diffie_hellman(sk_e.to_nonzero_scalar(), pk_r.as_affine());
        shared.raw_secret_bytes().to_vec()
    }

    #[test]
    fn rfc9180_a31_extract_and_expand_gives_the_vectors_shared_secret() {
        use rfc9180_a31::*;
        let secret = RingDhP256::shared_secret(&vector_dh(), &unhex(PK_EM), &unhex(PK_RM)).unwrap();
        assert_eq!(hex::encode(secret.0.as_slice()), SHARED_SECRET);
        // The standard KEM's decapsulation agrees.
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&unhex(SK_RM)).unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&unhex(PK_EM)).unwrap();
        let std = <Kem as hpke::Kem>::decap(&sk, None, &enc).unwrap();
        assert_eq!(hex::encode(std.0.as_slice()), SHARED_SECRET);
    }

    #[test]
    fn rfc9180_a31_ciphertext_opens_through_ring_dh_p256() {
        use rfc9180_a31::*;
        let sk = <RingDhP256 as hpke::Kem>::PrivateKey::from_bytes(&unhex(SK_RM)).unwrap();
        assert_eq!(
            <RingDhP256 as hpke::Kem>::sk_to_pk(&sk).to_bytes().to_vec(),
            unhex(PK_RM)
        );
        let enc = <RingDhP256 as hpke::Kem>::EncappedKey::from_bytes(&unhex(PK_EM)).unwrap();
        let pt = hpke::single_shot_open::<hpke::aead::AesGcm128, HkdfSha256, RingDhP256>(
            &OpModeR::Base,
            &sk,
            &enc,
            &unhex(INFO),
            &unhex(CT),
            &unhex(AAD),
        )
        .unwrap();
        assert_eq!(pt, unhex(PT));
        assert_eq!(<RingDhP256 as hpke::Kem>::KEM_ID, 0x0010);
    }

    #[test]
    fn ring_encapsulation_is_the_standard_kems() {
        for _ in 0..16 {
            let (sk, pk) = <Kem as hpke::Kem>::gen_keypair();
            let (secret, enc) = <RingDhP256 as hpke::Kem>::encap(&pk, None).unwrap();
            assert_eq!(enc.to_bytes().len(), 65);
            let std = <Kem as hpke::Kem>::decap(&sk, None, &enc).unwrap();
            assert_eq!(secret.0, std.0);
        }
    }

    #[test]
    fn ring_sealed_envelopes_open_with_the_standard_kem_and_vice_versa() {
        let key = WorkloadKey::generate().unwrap();
        let sk = <Kem as hpke::Kem>::PrivateKey::from_bytes(&key.secret.to_bytes()).unwrap();
        let sealed = seal(&key.spki_der(), b"config", b"aad").unwrap();
        let enc = <Kem as hpke::Kem>::EncappedKey::from_bytes(&sealed.enc).unwrap();
        let opened = hpke::single_shot_open::<AesGcm256, HkdfSha256, Kem>(
            &OpModeR::Base,
            &sk,
            &enc,
            INFO,
            &sealed.ciphertext,
            b"aad",
        )
        .unwrap();
        assert_eq!(opened, b"config");
        let pk = <Kem as hpke::Kem>::sk_to_pk(&sk);
        let (enc, ciphertext) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, Kem>(
            &OpModeS::Base,
            &pk,
            INFO,
            b"standard",
            b"aad",
        )
        .unwrap();
        let sealed = Sealed {
            enc: enc.to_bytes().to_vec(),
            ciphertext,
        };
        assert_eq!(key.open(&sealed, b"aad").unwrap().as_slice(), b"standard");
    }
}

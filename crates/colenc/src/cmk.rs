//! Column master keys (CMKs) and column encryption keys wrapped by them, as SQL Server stores
//! them in `sys.column_encryption_key_values.encrypted_value`.
//!
//! ```text
//! 0x01 ‖ key_path_len (u16 LE) ‖ ciphertext_len (u16 LE) ‖ UTF-16LE(lower(key_path))
//!      ‖ RSA-OAEP(SHA-1, MGF1-SHA-1)(CEK) ‖ RSASSA-PKCS1-v1_5-SHA256(all the preceding bytes)
//! ```
//!
//! This is the format of SqlClient's certificate-store, CNG, Azure Key Vault and Java key store
//! providers. The ciphertext and the signature are each as long as the RSA modulus.

use rand_core::OsRng;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, Pkcs1v15Sign, RsaPrivateKey, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use x509_cert::der::{Decode, DecodePem, Encode};
use zeroize::Zeroizing;

use crate::cell::utf16le;
use crate::{Cek, Error};

/// The provider name of CMKs held in a certificate store (`sys.column_master_keys.key_store_provider_name`).
pub const CERTIFICATE_STORE_PROVIDER: &str = "MSSQL_CERTIFICATE_STORE";
/// The key encryption algorithm of every wrapped CEK (`sys.column_encryption_key_values.encryption_algorithm_name`).
pub const KEY_ENCRYPTION_ALGORITHM: &str = "RSA_OAEP";

/// The only wrapped-key format version.
const VERSION: u8 = 0x01;
/// Version, key path length and ciphertext length.
const HEADER_LEN: usize = 5;
/// The smallest modulus accepted for a CMK.
pub const MIN_CMK_BITS: usize = 2048;
/// The largest modulus accepted for a CMK (its ciphertext length must fit the u16 field).
pub const MAX_CMK_BITS: usize = 16384;
const WHAT: &str = "encrypted column encryption key";

/// A column master key: an RSA key pair whose private half wraps and unwraps column
/// encryption keys. The private key is wiped when dropped and never shown by `Debug`.
pub struct Cmk {
    key: RsaPrivateKey,
    public: CmkPublicKey,
}

impl Cmk {
    /// A fresh key pair of `bits` bits (2048..=16384).
    pub fn generate(bits: usize) -> Result<Self, Error> {
        if !(MIN_CMK_BITS..=MAX_CMK_BITS).contains(&bits) {
            return Err(Error::invalid_key(
                "column master key",
                format!("modulus of {bits} bits, allowed {MIN_CMK_BITS}..={MAX_CMK_BITS}"),
            ));
        }
        let key = RsaPrivateKey::new(&mut OsRng, bits).map_err(Error::random)?;
        Self::from_key(key)
    }

    /// From a PEM RSA private key: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`). Encrypted PEM is not supported.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let key = RsaPrivateKey::from_pkcs8_pem(pem)
            .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
            .map_err(|_| {
                Error::invalid_key(
                    "column master key",
                    "not an unencrypted PKCS#8 or PKCS#1 RSA private key PEM",
                )
            })?;
        Self::from_key(key)
    }

    /// From a DER PKCS#8 RSA private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let key = RsaPrivateKey::from_pkcs8_der(der)
            .map_err(|e| Error::invalid_key("column master key", e))?;
        Self::from_key(key)
    }

    fn from_key(key: RsaPrivateKey) -> Result<Self, Error> {
        let bits = key.size() * 8;
        if !(MIN_CMK_BITS..=MAX_CMK_BITS).contains(&bits) {
            return Err(Error::invalid_key(
                "column master key",
                format!("modulus of {bits} bits, allowed {MIN_CMK_BITS}..={MAX_CMK_BITS}"),
            ));
        }
        key.validate()
            .map_err(|e| Error::invalid_key("column master key", e))?;
        let public = CmkPublicKey {
            key: key.to_public_key(),
        };
        Ok(Self { key, public })
    }

    /// The private key as PKCS#8 PEM, wiped when dropped.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, Error> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| Zeroizing::new(pem.as_str().to_owned()))
            .map_err(|e| Error::Internal(format!("PKCS#8 encoding failed: {e}")))
    }

    /// The public half.
    pub fn public_key(&self) -> &CmkPublicKey {
        &self.public
    }

    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, Error> {
        self.key
            .sign_with_rng(&mut OsRng, Pkcs1v15Sign::new::<Sha256>(), digest)
            .map_err(|e| Error::Internal(format!("RSA signing failed: {e}")))
    }
}

impl std::fmt::Debug for Cmk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmk")
            .field("modulus_bits", &(self.public.modulus_len() * 8))
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The public half of a column master key: verifies wrapped-key and metadata signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmkPublicKey {
    key: RsaPublicKey,
}

impl CmkPublicKey {
    /// From a PEM `BEGIN PUBLIC KEY` (SubjectPublicKeyInfo).
    pub fn from_public_key_pem(pem: &str) -> Result<Self, Error> {
        RsaPublicKey::from_public_key_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| Error::invalid_key("column master key certificate", e))
    }

    /// From the PEM X.509 certificate a certificate-store CMK is (validity dates not checked).
    pub fn from_certificate_pem(pem: &str) -> Result<Self, Error> {
        let cert = x509_cert::Certificate::from_pem(pem)
            .map_err(|e| Error::invalid_key("column master key certificate", e))?;
        Self::from_certificate(&cert)
    }

    /// From a DER X.509 certificate (validity dates not checked).
    pub fn from_certificate_der(der: &[u8]) -> Result<Self, Error> {
        let cert = x509_cert::Certificate::from_der(der)
            .map_err(|e| Error::invalid_key("column master key certificate", e))?;
        Self::from_certificate(&cert)
    }

    fn from_certificate(cert: &x509_cert::Certificate) -> Result<Self, Error> {
        let spki = cert
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .map_err(|e| Error::invalid_key("column master key certificate", e))?;
        RsaPublicKey::from_public_key_der(&spki)
            .map(|key| Self { key })
            .map_err(|e| Error::invalid_key("column master key certificate", e))
    }

    /// As PEM `BEGIN PUBLIC KEY`.
    pub fn to_public_key_pem(&self) -> Result<String, Error> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| Error::Internal(format!("SPKI encoding failed: {e}")))
    }

    /// The modulus size in bytes: the length of every ciphertext and signature it makes.
    pub fn modulus_len(&self) -> usize {
        self.key.size()
    }

    fn verify_digest(
        &self,
        digest: &[u8],
        signature: &[u8],
        what: &'static str,
    ) -> Result<(), Error> {
        self.key
            .verify(Pkcs1v15Sign::new::<Sha256>(), digest, signature)
            .map_err(|_| Error::Signature { what })
    }
}

/// Wrap `cek` with `cmk` under `key_path`, giving the bytes SQL Server stores as the CEK's
/// `encrypted_value`.
///
/// The key path is stored lower-cased (as SqlClient does, `ToLowerInvariant`). The signature
/// needs the CMK's private key, so wrapping does too.
#[tracing::instrument(skip_all, fields(key_path = %key_path))]
pub fn wrap_cek(cek: &Cek, cmk: &Cmk, key_path: &str) -> Result<Vec<u8>, Error> {
    if key_path.trim().is_empty() {
        return Err(Error::malformed("key path", "empty"));
    }
    let path = utf16le(&lowercase_invariant(key_path));
    let path_len = i16::try_from(path.len())
        .map_err(|_| Error::malformed("key path", "longer than 16383 UTF-16 code units"))?;
    let ciphertext = cmk
        .public
        .key
        .encrypt(&mut OsRng, Oaep::new::<Sha1>(), cek.expose_secret())
        .map_err(|e| Error::Internal(format!("RSA-OAEP encryption failed: {e}")))?;
    let ciphertext_len = u16::try_from(ciphertext.len())
        .map_err(|_| Error::Internal("ciphertext longer than the modulus bound".into()))?;

    let mut out = Vec::with_capacity(HEADER_LEN + path.len() + 2 * ciphertext.len());
    out.push(VERSION);
    out.extend_from_slice(&path_len.to_le_bytes());
    out.extend_from_slice(&ciphertext_len.to_le_bytes());
    out.extend_from_slice(&path);
    out.extend_from_slice(&ciphertext);
    let signature = cmk.sign_digest(&Sha256::digest(&out))?;
    out.extend_from_slice(&signature);
    tracing::debug!(len = out.len(), "wrapped column encryption key");
    Ok(out)
}

/// Unwrap an `encrypted_value` with `cmk`, checking that it was wrapped under `key_path`.
///
/// Checks, in order: the format; that the ciphertext and signature are as long as the CMK's
/// modulus ([`Error::KeySizeMismatch`] — usually another CMK); the signature
/// ([`Error::Signature`] — another CMK, or altered bytes); the stored key path against
/// `key_path`, compared lower-cased ([`Error::KeyPathMismatch`]); then RSA-OAEP decryption.
/// Decryption only ever sees ciphertexts signed by the CMK, so it is no padding oracle.
/// SqlClient skips the key-path check; [`WrappedCek::unwrap`] does the same.
#[tracing::instrument(skip_all, fields(key_path = %key_path, len = encrypted_value.len()))]
pub fn unwrap_cek(encrypted_value: &[u8], cmk: &Cmk, key_path: &str) -> Result<Cek, Error> {
    let wrapped = WrappedCek::parse(encrypted_value)?;
    wrapped.verify(cmk.public_key())?;
    let expected = lowercase_invariant(key_path);
    let found = wrapped.key_path()?;
    if found != expected {
        return Err(Error::KeyPathMismatch { expected, found });
    }
    wrapped.decrypt(cmk)
}

/// A parsed `encrypted_value`, borrowing its parts.
#[derive(Clone, Copy, Debug)]
pub struct WrappedCek<'a> {
    signed: &'a [u8],
    key_path: &'a [u8],
    ciphertext: &'a [u8],
    signature: &'a [u8],
}

impl<'a> WrappedCek<'a> {
    /// Split an `encrypted_value` into its parts; nothing is verified yet.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let header: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|h| h.try_into().ok())
            .ok_or(Error::Truncated {
                what: WHAT,
                need: HEADER_LEN,
                got: bytes.len(),
            })?;
        if header[0] != VERSION {
            return Err(Error::UnsupportedVersion {
                what: WHAT,
                got: header[0],
            });
        }
        let path_len = usize::from(u16::from_le_bytes([header[1], header[2]]));
        let ciphertext_len = usize::from(u16::from_le_bytes([header[3], header[4]]));
        if !path_len.is_multiple_of(2) {
            return Err(Error::malformed(
                WHAT,
                format!("key path length {path_len} is odd"),
            ));
        }
        if ciphertext_len == 0 {
            return Err(Error::malformed(WHAT, "ciphertext length is 0"));
        }
        let body_end = HEADER_LEN + path_len + ciphertext_len;
        if bytes.len() <= body_end {
            return Err(Error::Truncated {
                what: WHAT,
                need: body_end + 1,
                got: bytes.len(),
            });
        }
        let (signed, signature) = bytes.split_at(body_end);
        let (key_path, ciphertext) = signed[HEADER_LEN..].split_at(path_len);
        Ok(Self {
            signed,
            key_path,
            ciphertext,
            signature,
        })
    }

    /// The key path stored in the value (lower-case if SqlClient or this crate wrote it).
    pub fn key_path(&self) -> Result<String, Error> {
        let units: Vec<u16> = self
            .key_path
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units).map_err(|_| Error::malformed(WHAT, "key path is not UTF-16"))
    }

    /// The RSA-OAEP ciphertext of the CEK.
    pub fn ciphertext(&self) -> &'a [u8] {
        self.ciphertext
    }

    /// The signature over all the bytes before it.
    pub fn signature(&self) -> &'a [u8] {
        self.signature
    }

    /// Check the lengths and the signature against a CMK's public key.
    pub fn verify(&self, cmk: &CmkPublicKey) -> Result<(), Error> {
        let expected = cmk.modulus_len();
        for (what, got) in [
            ("ciphertext", self.ciphertext.len()),
            ("signature", self.signature.len()),
        ] {
            if got != expected {
                return Err(Error::KeySizeMismatch {
                    what,
                    expected,
                    got,
                });
            }
        }
        cmk.verify_digest(&Sha256::digest(self.signed), self.signature, WHAT)
    }

    /// Verify the signature and decrypt, without checking the key path (SqlClient's behaviour:
    /// the stored path is "for troubleshooting").
    pub fn unwrap(&self, cmk: &Cmk) -> Result<Cek, Error> {
        self.verify(cmk.public_key())?;
        self.decrypt(cmk)
    }

    fn decrypt(&self, cmk: &Cmk) -> Result<Cek, Error> {
        let plain = cmk
            .key
            .decrypt_blinded(&mut OsRng, Oaep::new::<Sha1>(), self.ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| Error::CekDecrypt)?;
        Cek::from_bytes(&plain)
    }
}

/// Sign CMK metadata, as stored in `sys.column_master_keys.signature` for CMKs that allow
/// enclave computations: `RSASSA-PKCS1-v1_5-SHA256` of
/// `SHA-256(UTF-16LE(lower(provider_name ‖ key_path ‖ "true"/"false")))`.
pub fn sign_cmk_metadata(
    cmk: &Cmk,
    provider_name: &str,
    key_path: &str,
    allow_enclave_computations: bool,
) -> Result<Vec<u8>, Error> {
    cmk.sign_digest(&cmk_metadata_digest(
        provider_name,
        key_path,
        allow_enclave_computations,
    ))
}

/// Verify a CMK metadata signature made by [`sign_cmk_metadata`] (or SQL Server's tools).
pub fn verify_cmk_metadata(
    cmk: &CmkPublicKey,
    provider_name: &str,
    key_path: &str,
    allow_enclave_computations: bool,
    signature: &[u8],
) -> Result<(), Error> {
    let digest = cmk_metadata_digest(provider_name, key_path, allow_enclave_computations);
    cmk.verify_digest(&digest, signature, "column master key metadata")
}

fn cmk_metadata_digest(provider_name: &str, key_path: &str, allow: bool) -> [u8; 32] {
    let flag = if allow { "True" } else { "False" };
    let text = lowercase_invariant(&format!("{provider_name}{key_path}{flag}"));
    Sha256::digest(utf16le(&text)).into()
}

/// .NET's `ToLowerInvariant`: simple, context-free lower-casing of each character.
fn lowercase_invariant(s: &str) -> String {
    s.chars()
        .map(|c| c.to_lowercase().next().unwrap_or(c))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata::{self, Lcg, hex_field};
    use rstest::rstest;

    const SWISSCOM_PATH: &str = "CurrentUser/My/0BE978BA81EED610015FD8B7CAEF55F1614CA3B6";

    fn swisscom_value() -> Vec<u8> {
        testdata::read("swisscom/cekv.key")
    }

    /// Encrypted-CEK vectors that cannot be unwrapped here, each with its reason. They are
    /// still parsed and their lengths checked.
    const CEK_PARSE_ONLY: &[(&str, &str)] = &[(
        "cekv-tedious-akv-parse-only",
        "Azure Key Vault key: the private key is not public (the source test mocks unwrap)",
    )];

    #[test]
    fn encrypted_cek_vectors() {
        let vectors = testdata::vectors();
        let list = vectors["encrypted_cek_vectors"].as_array().unwrap();
        let swisscom_public = CmkPublicKey::from_certificate_pem(&testdata::read_string(
            "swisscom/always-encrypted_pub.pem",
        ))
        .unwrap();
        let (mut unwrapped, mut parsed) = (0, 0);
        for v in list {
            let id = v["id"].as_str().unwrap();
            let bytes = hex_field(v, "encrypted_cek");
            let wrapped = WrappedCek::parse(&bytes).unwrap();
            let p = &v["parsed"];
            assert_eq!(
                wrapped.key_path().unwrap(),
                p["key_path"].as_str().unwrap(),
                "{id}"
            );
            assert_eq!(
                wrapped.key_path.len() as u64,
                p["key_path_length_bytes"].as_u64().unwrap()
            );
            assert_eq!(
                wrapped.ciphertext().len() as u64,
                p["ciphertext_length"].as_u64().unwrap()
            );
            assert_eq!(
                wrapped.signature().len() as u64,
                p["signature_length"].as_u64().unwrap()
            );
            parsed += 1;

            if CEK_PARSE_ONLY.iter().any(|(skip, _)| *skip == id) {
                // A signature two bytes short is refused for its length (the tedious test).
                let short = &bytes[..bytes.len() - 2];
                let err = WrappedCek::parse(short)
                    .unwrap()
                    .verify(&swisscom_public)
                    .unwrap_err();
                assert!(
                    matches!(
                        err,
                        Error::KeySizeMismatch {
                            what: "signature",
                            expected: 256,
                            got: 254
                        }
                    ),
                    "{id}: {err:?}"
                );
                continue;
            }

            let files = &v["files"];
            assert_eq!(
                testdata::read(files["encrypted_cek"].as_str().unwrap()),
                bytes,
                "{id}"
            );
            let cmk = Cmk::from_pem(&testdata::read_string(
                files["rsa_private_key_pkcs8_pem"].as_str().unwrap(),
            ))
            .unwrap();
            let public = CmkPublicKey::from_certificate_pem(&testdata::read_string(
                files["cmk_certificate_pem"].as_str().unwrap(),
            ))
            .unwrap();
            assert_eq!(
                &public,
                cmk.public_key(),
                "{id}: certificate matches the private key"
            );
            wrapped.verify(&public).unwrap();
            let cek = unwrap_cek(&bytes, &cmk, p["key_path"].as_str().unwrap()).unwrap();
            assert_eq!(
                cek.expose_secret().to_vec(),
                hex_field(v, "expected_cek"),
                "{id}"
            );
            // OAEP with SHA-256 must not be what SQL Server used.
            assert_eq!(v["expected_oaep_sha256_decrypt"], "fails");
            assert!(
                cmk.key
                    .decrypt(Oaep::new::<Sha256>(), wrapped.ciphertext())
                    .is_err()
            );
            unwrapped += 1;
        }
        assert!(
            unwrapped >= 1 && parsed >= 2,
            "unwrapped {unwrapped}, parsed {parsed}"
        );
        assert_eq!(unwrapped + CEK_PARSE_ONLY.len(), list.len());
    }

    #[test]
    fn real_cek_unwraps_with_any_case_of_its_key_path() {
        let cmk = testdata::swisscom_cmk();
        let cek = unwrap_cek(&swisscom_value(), &cmk, SWISSCOM_PATH).unwrap();
        assert_eq!(cek.expose_secret().to_vec(), testdata::swisscom_cek());
        let err = unwrap_cek(&swisscom_value(), &cmk, "CurrentUser/My/0000").unwrap_err();
        assert!(matches!(err, Error::KeyPathMismatch { .. }), "{err:?}");
        // SqlClient's behaviour: no key-path check.
        let cek2 = WrappedCek::parse(&swisscom_value())
            .unwrap()
            .unwrap(&cmk)
            .unwrap();
        assert_eq!(cek, cek2);
    }

    #[test]
    fn wrap_then_unwrap_round_trips_and_matches_sql_server_layout() {
        let cmk = testdata::swisscom_cmk();
        let cek = Cek::generate().unwrap();
        let value = wrap_cek(&cek, &cmk, SWISSCOM_PATH).unwrap();
        // Same layout and header as the real value: same path, same key size.
        let real = swisscom_value();
        assert_eq!(value.len(), real.len());
        assert_eq!(value[..HEADER_LEN + 110], real[..HEADER_LEN + 110]);
        assert_eq!(unwrap_cek(&value, &cmk, SWISSCOM_PATH).unwrap(), cek);
        // OAEP is randomized: wrapping twice differs.
        assert_ne!(wrap_cek(&cek, &cmk, SWISSCOM_PATH).unwrap(), value);
    }

    #[test]
    fn wrong_cmk_is_refused() {
        let other = testdata::other_cmk();
        let err = unwrap_cek(&swisscom_value(), other, SWISSCOM_PATH).unwrap_err();
        assert!(matches!(err, Error::Signature { .. }), "{err:?}");
        // And a key wrapped by the other CMK does not open with the real one.
        let value = wrap_cek(&Cek::generate().unwrap(), other, SWISSCOM_PATH).unwrap();
        let err = unwrap_cek(&value, &testdata::swisscom_cmk(), SWISSCOM_PATH).unwrap_err();
        assert!(matches!(err, Error::Signature { .. }), "{err:?}");
        // A CMK of another size fails on the lengths first.
        let n = rsa::BigUint::from_bytes_be(&[0xc5; 384]);
        let bigger = CmkPublicKey {
            key: RsaPublicKey::new(n, rsa::BigUint::from(65_537u32)).unwrap(),
        };
        let err = WrappedCek::parse(&swisscom_value())
            .unwrap()
            .verify(&bigger)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::KeySizeMismatch {
                    what: "ciphertext",
                    expected: 384,
                    got: 256
                }
            ),
            "{err:?}"
        );
    }

    #[rstest]
    #[case::version(0, Some("version"))]
    #[case::path_length(1, None)]
    #[case::ciphertext_length(3, None)]
    #[case::key_path(5 + 20, Some("signature"))]
    #[case::ciphertext_first(5 + 110, Some("signature"))]
    #[case::ciphertext_last(5 + 110 + 255, Some("signature"))]
    #[case::signature_first(5 + 110 + 256, Some("signature"))]
    #[case::signature_last(5 + 110 + 511, Some("signature"))]
    fn tampered_wrapped_cek_is_refused(#[case] at: usize, #[case] kind: Option<&str>) {
        let cmk = testdata::swisscom_cmk();
        let mut value = swisscom_value();
        value[at] ^= 0x01;
        let err = unwrap_cek(&value, &cmk, SWISSCOM_PATH).unwrap_err();
        match kind {
            Some("version") => assert!(matches!(err, Error::UnsupportedVersion { .. }), "{err:?}"),
            Some(_) => assert!(matches!(err, Error::Signature { .. }), "{err:?}"),
            // Length fields: the parts shift, so lengths or the signature fail.
            None => assert!(
                matches!(
                    err,
                    Error::Malformed { .. }
                        | Error::Truncated { .. }
                        | Error::KeySizeMismatch { .. }
                        | Error::Signature { .. }
                ),
                "{err:?}"
            ),
        }
    }

    #[rstest]
    #[case::empty(0, 5)]
    #[case::header_only(5, 5 + 110 + 256 + 1)]
    #[case::no_signature(5 + 110 + 256, 5 + 110 + 256 + 1)]
    fn truncated_wrapped_cek(#[case] len: usize, #[case] need: usize) {
        let value = swisscom_value();
        let err = WrappedCek::parse(&value[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { need: n, got, .. } if n == need && got == len),
            "{err:?}"
        );
    }

    #[test]
    fn cmk_metadata_signature_round_trips() {
        let cmk = testdata::swisscom_cmk();
        let public = cmk.public_key();
        let sig = sign_cmk_metadata(&cmk, CERTIFICATE_STORE_PROVIDER, SWISSCOM_PATH, true).unwrap();
        assert_eq!(sig.len(), 256);
        verify_cmk_metadata(
            public,
            CERTIFICATE_STORE_PROVIDER,
            SWISSCOM_PATH,
            true,
            &sig,
        )
        .unwrap();
        // Case does not matter: the metadata is lower-cased before hashing.
        verify_cmk_metadata(
            public,
            "mssql_certificate_store",
            &SWISSCOM_PATH.to_lowercase(),
            true,
            &sig,
        )
        .unwrap();
        for (provider, path, allow) in [
            (CERTIFICATE_STORE_PROVIDER, SWISSCOM_PATH, false),
            ("AZURE_KEY_VAULT", SWISSCOM_PATH, true),
            (CERTIFICATE_STORE_PROVIDER, "CurrentUser/My/00", true),
        ] {
            let err = verify_cmk_metadata(public, provider, path, allow, &sig).unwrap_err();
            assert!(matches!(err, Error::Signature { .. }), "{err:?}");
        }
        // The digest is SHA-256 of the UTF-16LE lower-cased concatenation.
        let expected = Sha256::digest(utf16le(
            "mssql_certificate_storecurrentuser/my/0be978ba81eed610015fd8b7caef55f1614ca3b6true",
        ));
        assert_eq!(
            cmk_metadata_digest(CERTIFICATE_STORE_PROVIDER, SWISSCOM_PATH, true)[..],
            expected[..]
        );
    }

    #[test]
    fn keys_load_and_debug_is_redacted() {
        let cmk = testdata::swisscom_cmk();
        let shown = format!("{cmk:?}");
        assert_eq!(
            shown,
            r#"Cmk { modulus_bits: 2048, private_key: "<redacted>" }"#
        );
        let pem = cmk.to_pkcs8_pem().unwrap();
        let again = Cmk::from_pem(&pem).unwrap();
        assert_eq!(again.public_key(), cmk.public_key());
        let spki = cmk.public_key().to_public_key_pem().unwrap();
        assert_eq!(
            &CmkPublicKey::from_public_key_pem(&spki).unwrap(),
            cmk.public_key()
        );
        assert!(matches!(
            Cmk::from_pem("not a key"),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(Cmk::generate(1024), Err(Error::InvalidKey { .. })));
        assert!(matches!(
            CmkPublicKey::from_certificate_pem(
                "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
            ),
            Err(Error::InvalidKey { .. })
        ));
    }

    #[rstest]
    #[case::ascii("CurrentUser/My/ABC", "currentuser/my/abc")]
    #[case::dotted_i("\u{130}x", "ix")]
    #[case::sigma("ΣΑΣ", "σασ")]
    fn key_paths_lower_case_like_dotnet(#[case] input: &str, #[case] lower: &str) {
        assert_eq!(lowercase_invariant(input), lower);
    }

    /// Deterministic pseudo-random mutations of a wrapped CEK: never a panic, never a key.
    #[test]
    fn fuzz_mutated_wrapped_ceks_never_panic() {
        let cmk = testdata::swisscom_cmk();
        let seed = swisscom_value();
        let mut rng = Lcg::new(0x5eed_0cec);
        let mut cases = 0;
        for round in 0..3000 {
            let mut mutated = rng.mutate(&seed);
            if round % 4 == 0 && mutated.len() >= HEADER_LEN {
                // Aim at the length fields, where the parsing is.
                let at = 1 + rng.below(4);
                mutated[at] = rng.byte();
            }
            let result = unwrap_cek(&mutated, &cmk, SWISSCOM_PATH);
            if mutated != seed {
                assert!(result.is_err(), "mutation {round} unwrapped");
            }
            let _ = WrappedCek::parse(&mutated).map(|w| (w.key_path(), w.verify(cmk.public_key())));
            cases += 1;
        }
        assert_eq!(cases, 3000);
    }
}

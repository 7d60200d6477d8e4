//! Parquet key-management tools (KMT): the envelope-encryption key material that parquet-mr,
//! Spark and pyarrow's `pyarrow.parquet.encryption.CryptoFactory` write into a file's key
//! metadata.
//!
//! With KMT, a file is encrypted under fresh random *data keys* (DEKs). Each DEK is wrapped —
//! directly by a *master key* that lives in a KMS ("single wrapping"), or by a random *key
//! encryption key* (KEK) that is itself wrapped by the master key ("double wrapping", the
//! default). The wrapped keys and the master key's id are stored as a flat JSON object, the *key
//! material*, which (with internal storage, the default) is the Parquet key metadata itself:
//!
//! ```json
//! {"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,
//!  "kmsInstanceID":"DEFAULT","kmsInstanceURL":"DEFAULT","masterKeyID":"kf",
//!  "wrappedDEK":"…","doubleWrapping":true,"keyEncryptionKeyID":"…","wrappedKEK":"…"}
//! ```
//!
//! Local wrapping (DEK under KEK, as parquet-mr's `KeyToolkit.encryptKeyLocally`) is AES-GCM
//! with a random 12-byte nonce, the AAD being the raw 16-byte KEK id; the result is
//! `base64(nonce ‖ ciphertext ‖ tag)`. Cloister's "KMS" is its own key provider: master keys are
//! held in the TEE, and wrapping under a master key is the same AES-GCM construction with the
//! AAD being the master key id in UTF-8 — exactly what parquet-mr's sample `InMemoryKMS` does,
//! so a peer whose `KmsClient` wraps that way (see `tests/peer/parquet_peer.py`) shares files
//! with Cloister in both directions.
//!
//! External key material (side files next to the data) is not supported.
//!
//! This module is the document and the local wrapping only, on raw key bytes; resolving master
//! keys by id (`KmtKeyProvider`) and producing material for new files stay in
//! `cloister_engine::kmt`, which re-exports [`KeyMaterial`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Deserializer, Serialize};
use zeroize::Zeroizing;

use crate::Error;

/// The only key material type defined (parquet key management tools, version 1).
pub const KEY_MATERIAL_TYPE: &str = "PKMT1";

/// Key material as stored in Parquet key metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyMaterial {
    /// Always [`KEY_MATERIAL_TYPE`].
    pub key_material_type: String,
    /// Whether the material is stored in the file (true) or in a side file (false).
    #[serde(default, deserialize_with = "lenient_bool")]
    pub internal_storage: bool,
    /// Whether this is the footer key's material.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub is_footer_key: bool,
    /// KMS instance id (footer key material only).
    #[serde(
        rename = "kmsInstanceID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kms_instance_id: Option<String>,
    /// KMS instance URL (footer key material only).
    #[serde(
        rename = "kmsInstanceURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kms_instance_url: Option<String>,
    /// Id of the master key that (directly or through a KEK) wraps the data key.
    #[serde(rename = "masterKeyID", default)]
    pub master_key_id: String,
    /// The wrapped data key, base64.
    #[serde(rename = "wrappedDEK", default)]
    pub wrapped_dek: String,
    /// Whether the data key is wrapped by a KEK that the master key wraps.
    #[serde(default, deserialize_with = "lenient_bool")]
    pub double_wrapping: bool,
    /// Base64 of the KEK's 16-byte id (double wrapping only).
    #[serde(
        rename = "keyEncryptionKeyID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub kek_id: Option<String>,
    /// The KEK wrapped by the master key, base64 (double wrapping only).
    #[serde(
        rename = "wrappedKEK",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub wrapped_kek: Option<String>,
}

/// parquet-mr writes booleans as strings ("true"), Arrow C++ as JSON booleans: accept both.
fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Lenient {
        Bool(bool),
        Text(String),
    }
    match Lenient::deserialize(d)? {
        Lenient::Bool(b) => Ok(b),
        Lenient::Text(t) if t.eq_ignore_ascii_case("true") => Ok(true),
        Lenient::Text(t) if t.eq_ignore_ascii_case("false") => Ok(false),
        Lenient::Text(t) => Err(serde::de::Error::custom(format!(
            "expected a boolean, got {t:?}"
        ))),
    }
}

impl KeyMaterial {
    /// Whether `metadata` looks like KMT key material (a JSON object) rather than a key id.
    pub fn is_key_material(metadata: &[u8]) -> bool {
        metadata.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
    }

    /// Parse key material from Parquet key metadata.
    pub fn parse(metadata: &[u8]) -> Result<Self, Error> {
        let material: KeyMaterial = serde_json::from_slice(metadata)
            .map_err(|e| Error::malformed(format!("not PKMT1 key material JSON: {e}")))?;
        if material.key_material_type != KEY_MATERIAL_TYPE {
            return Err(Error::malformed(format!(
                "key material type {:?}, expected {KEY_MATERIAL_TYPE:?}",
                material.key_material_type
            )));
        }
        if !material.internal_storage {
            return Err(Error::Unsupported {
                feature: "Parquet key material stored outside the file (external key material)",
            });
        }
        if material.master_key_id.is_empty() || material.wrapped_dek.is_empty() {
            return Err(Error::malformed("masterKeyID or wrappedDEK missing"));
        }
        if material.double_wrapping && (material.kek_id.is_none() || material.wrapped_kek.is_none())
        {
            return Err(Error::malformed(
                "double wrapping without keyEncryptionKeyID and wrappedKEK",
            ));
        }
        Ok(material)
    }

    /// Serialise as Parquet key metadata (compact JSON, internal storage).
    pub fn to_json(&self) -> Result<String, Error> {
        serde_json::to_string(self).map_err(|_| Error::Internal("serialising key material"))
    }
}

/// Fill `buf` from the system random generator.
pub fn fill_random(buf: &mut [u8]) -> Result<(), Error> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| Error::Internal("system random generator failed"))
}

/// An AES-GCM key for `key` (ring implements AES-128 and AES-256, not AES-192).
pub fn gcm_key(key: &[u8]) -> Result<LessSafeKey, Error> {
    let algorithm = match key.len() {
        16 => &AES_128_GCM,
        32 => &AES_256_GCM,
        _ => {
            return Err(Error::Unsupported {
                feature: "AES-192 keys (AES-GCM here is AES-128 or AES-256)",
            });
        }
    };
    UnboundKey::new(algorithm, key)
        .map(LessSafeKey::new)
        .map_err(|_| Error::Internal("AES-GCM key setup"))
}

/// `base64(nonce ‖ AES-GCM(key, nonce, aad, plaintext) ‖ tag)` with a random nonce.
pub fn wrap_locally(plaintext: &[u8], key: &[u8], aad: &[u8]) -> Result<String, Error> {
    let sealing = gcm_key(key)?;
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(NONCE_LEN + plaintext.len() + 16));
    buf.extend_from_slice(&nonce);
    buf.extend_from_slice(plaintext);
    let mut body = buf.split_off(NONCE_LEN);
    sealing
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut body,
        )
        .map_err(|_| Error::Internal("AES-GCM seal"))?;
    buf.extend_from_slice(&body);
    Ok(BASE64.encode(buf.as_slice()))
}

/// Inverse of [`wrap_locally`]: the plaintext key bytes (wiped on drop); `key_name` names the
/// wrapping key in the error.
pub fn unwrap_locally(
    encoded: &str,
    key: &[u8],
    aad: &[u8],
    key_name: &str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let raw = BASE64
        .decode(encoded.trim())
        .map_err(|e| Error::malformed(format!("wrapped key is not base64: {e}")))?;
    if raw.len() < NONCE_LEN + 16 {
        return Err(Error::malformed(format!(
            "wrapped key has {} bytes, fewer than nonce and tag",
            raw.len()
        )));
    }
    let opening = gcm_key(key)?;
    let (nonce, body) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| Error::Internal("nonce length checked above"))?;
    let mut body = Zeroizing::new(body.to_vec());
    let plain_len = opening
        .open_in_place(nonce, Aad::from(aad), &mut body)
        .map_err(|_| Error::UnwrapFailed {
            wrapping_key: key_name.to_owned(),
        })?
        .len();
    body.truncate(plain_len);
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Key material written by pyarrow 26 (`CryptoFactory`, double wrapping) with a KMS client
    /// that wraps under master key "kf" = bytes 0..16 with AES-GCM and AAD "kf".
    const PYARROW_FOOTER_MATERIAL: &str = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"kmsInstanceID":"DEFAULT","kmsInstanceURL":"DEFAULT","masterKeyID":"kf","wrappedDEK":"44KQJJOQ/mJUFSMHkB5IjTGFdn+Zg3EHiafnOGbzDBipqSFWkAJcdY1JeGw=","doubleWrapping":true,"keyEncryptionKeyID":"0GuK5cDmI2TxTtaI4e63Ug==","wrappedKEK":"zFEq6ufjBVy5bA61p8MiwwvTCRKEnFZviAcxdV8Yw17QyqqDuVWlIg4j6NU="}"#;

    #[test]
    fn parses_and_unwraps_pyarrow_material_by_hand() {
        let material = KeyMaterial::parse(PYARROW_FOOTER_MATERIAL.as_bytes()).unwrap();
        assert!(KeyMaterial::is_key_material(
            PYARROW_FOOTER_MATERIAL.as_bytes()
        ));
        let master: Vec<u8> = (0..16).collect();
        let kek = unwrap_locally(
            material.wrapped_kek.as_deref().unwrap(),
            &master,
            b"kf",
            "kf",
        )
        .unwrap();
        let kek_id = BASE64.decode(material.kek_id.as_deref().unwrap()).unwrap();
        let dek = unwrap_locally(&material.wrapped_dek, &kek, &kek_id, "KEK").unwrap();
        assert_eq!(dek.len(), 16);
    }

    #[test]
    fn wrap_then_unwrap_and_wrong_aad() {
        let key = [3u8; 32];
        let wrapped = wrap_locally(b"sixteen byte key", &key, b"mk").unwrap();
        assert_eq!(
            unwrap_locally(&wrapped, &key, b"mk", "mk")
                .unwrap()
                .as_slice(),
            b"sixteen byte key"
        );
        assert!(matches!(
            unwrap_locally(&wrapped, &key, b"other", "mk"),
            Err(Error::UnwrapFailed { wrapping_key }) if wrapping_key == "mk"
        ));
    }

    #[test]
    fn malformed_documents_are_refused() {
        for bad in [
            &br#"{"keyMaterialType": "#[..],
            br#"{"keyMaterialType":"PKMT9","internalStorage":true,"masterKeyID":"kf","wrappedDEK":"AA=="}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":"maybe","masterKeyID":"kf","wrappedDEK":"AA=="}"#,
            br#"{"keyMaterialType":"PKMT1","internalStorage":true,"masterKeyID":"kf","wrappedDEK":"AA==","doubleWrapping":true}"#,
        ] {
            assert!(matches!(
                KeyMaterial::parse(bad),
                Err(Error::MalformedKeyMaterial { .. })
            ));
        }
        assert!(matches!(
            KeyMaterial::parse(br#"{"keyMaterialType":"PKMT1","internalStorage":false}"#),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn aes192_and_short_wrapped_keys_are_refused() {
        assert!(matches!(gcm_key(&[0; 24]), Err(Error::Unsupported { .. })));
        assert!(matches!(
            unwrap_locally("AAAA", &[0; 16], b"", "k"),
            Err(Error::MalformedKeyMaterial { .. })
        ));
    }
}

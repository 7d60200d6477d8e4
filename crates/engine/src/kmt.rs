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
//! The document ([`KeyMaterial`]) and the local wrapping live in [`cloister_formats::kmt`], so
//! that the parser of these host-controlled bytes is fuzzed without DataFusion; this module
//! re-exports them and resolves master keys through a [`KeyProvider`].

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use zeroize::Zeroizing;

use crate::Error;
use crate::keys::{DataKey, KeyProvider};

pub use cloister_formats::kmt::{KEY_MATERIAL_TYPE, KeyMaterial};
pub(crate) use cloister_formats::kmt::{fill_random, gcm_key};
/// Length of generated key-encryption keys and their ids (as parquet-mr and Arrow C++).
const KEK_LEN: usize = 16;
const KEK_ID_LEN: usize = 16;
/// KMS instance id and URL written into footer key material (the KMT defaults).
const KMS_INSTANCE_DEFAULT: &str = "DEFAULT";

/// A [`KeyProvider`] wrapper that also resolves KMT key material.
///
/// Asked for a plain key id, it asks the inner provider. Asked for key material (the JSON
/// Parquet key metadata of a KMT file), it unwraps the data key with the master key that the
/// inner provider holds under the material's `masterKeyID`. It also produces key material for
/// new files (`wrap`, used by the encryption factory).
#[derive(Clone, Debug)]
pub struct KmtKeyProvider {
    inner: Arc<dyn KeyProvider>,
}

impl KmtKeyProvider {
    /// Wrap `inner`, which holds the master keys (and any plain keys).
    pub fn new(inner: Arc<dyn KeyProvider>) -> Self {
        Self { inner }
    }

    /// The provider holding the master keys.
    pub fn inner(&self) -> &Arc<dyn KeyProvider> {
        &self.inner
    }

    /// Unwrap the data key described by `material`.
    #[tracing::instrument(level = "debug", skip_all, fields(master_key_id = %material.master_key_id, double_wrapping = material.double_wrapping))]
    pub fn unwrap_material(&self, material: &KeyMaterial) -> Result<DataKey, Error> {
        let master = self.inner.key(&material.master_key_id)?;
        let master_aad = material.master_key_id.as_bytes();
        let dek = if material.double_wrapping {
            let (Some(kek_id), Some(wrapped_kek)) = (&material.kek_id, &material.wrapped_kek)
            else {
                return Err(Error::malformed(
                    "double wrapping without keyEncryptionKeyID and wrappedKEK",
                ));
            };
            let kek = unwrap_locally(wrapped_kek, &master, master_aad, &material.master_key_id)?;
            let kek_id_raw = Zeroizing::new(
                BASE64
                    .decode(kek_id)
                    .map_err(|e| Error::malformed(format!("keyEncryptionKeyID: {e}")))?,
            );
            let kek_name = format!("KEK {kek_id} of {}", material.master_key_id);
            unwrap_locally(&material.wrapped_dek, &kek, &kek_id_raw, &kek_name)?
        } else {
            unwrap_locally(
                &material.wrapped_dek,
                &master,
                master_aad,
                &material.master_key_id,
            )?
        };
        Ok(dek)
    }

    /// Start wrapping the keys of one new file (KEKs are generated once per master key and
    /// file, as parquet-mr does per writer).
    pub fn wrapper(&self, double_wrapping: bool) -> KmtWrapper<'_> {
        KmtWrapper {
            provider: self,
            double_wrapping,
            keks: HashMap::new(),
        }
    }
}

impl KeyProvider for KmtKeyProvider {
    fn key(&self, key_id: &str) -> Result<DataKey, Error> {
        if KeyMaterial::is_key_material(key_id.as_bytes()) {
            self.unwrap_material(&KeyMaterial::parse(key_id.as_bytes())?)
        } else {
            self.inner.key(key_id)
        }
    }
}

/// A key-encryption key generated for one master key: its bytes, raw id and wrapped form.
struct Kek {
    key: DataKey,
    id: [u8; KEK_ID_LEN],
    wrapped: String,
}

/// Produces key material for the data keys of one file. See [`KmtKeyProvider::wrapper`].
pub struct KmtWrapper<'a> {
    provider: &'a KmtKeyProvider,
    double_wrapping: bool,
    keks: HashMap<String, Kek>,
}

impl fmt::Debug for KmtWrapper<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KmtWrapper")
            .field("double_wrapping", &self.double_wrapping)
            .field("keks_for", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KmtWrapper<'_> {
    /// Key material (Parquet key metadata) for `data_key` under the master key `master_key_id`.
    #[tracing::instrument(level = "debug", skip_all, fields(master_key_id = %master_key_id, is_footer_key = is_footer_key))]
    pub fn wrap(
        &mut self,
        data_key: &DataKey,
        master_key_id: &str,
        is_footer_key: bool,
    ) -> Result<KeyMaterial, Error> {
        let master = self.provider.inner.key(master_key_id)?;
        let (wrapped_dek, kek_id, wrapped_kek) = if self.double_wrapping {
            if !self.keks.contains_key(master_key_id) {
                let kek = DataKey::new("generated KEK", random_vec(KEK_LEN)?)?;
                let mut id = [0u8; KEK_ID_LEN];
                fill_random(&mut id)?;
                let wrapped = wrap_locally(kek.expose(), &master, master_key_id.as_bytes())?;
                self.keks.insert(
                    master_key_id.to_owned(),
                    Kek {
                        key: kek,
                        id,
                        wrapped,
                    },
                );
            }
            let kek = self
                .keks
                .get(master_key_id)
                .ok_or(Error::Internal("KEK inserted above is missing"))?;
            (
                wrap_locally(data_key.expose(), &kek.key, &kek.id)?,
                Some(BASE64.encode(kek.id)),
                Some(kek.wrapped.clone()),
            )
        } else {
            (
                wrap_locally(data_key.expose(), &master, master_key_id.as_bytes())?,
                None,
                None,
            )
        };
        Ok(KeyMaterial {
            key_material_type: KEY_MATERIAL_TYPE.to_owned(),
            internal_storage: true,
            is_footer_key,
            kms_instance_id: is_footer_key.then(|| KMS_INSTANCE_DEFAULT.to_owned()),
            kms_instance_url: is_footer_key.then(|| KMS_INSTANCE_DEFAULT.to_owned()),
            master_key_id: master_key_id.to_owned(),
            wrapped_dek,
            double_wrapping: self.double_wrapping,
            kek_id,
            wrapped_kek,
        })
    }
}

/// A fresh random data key of `len` bytes (16 or 32).
pub fn generate_data_key(len: usize) -> Result<DataKey, Error> {
    DataKey::new("generated data key", random_vec(len)?)
}

fn random_vec(len: usize) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![0u8; len];
    fill_random(&mut bytes)?;
    Ok(bytes)
}

/// `base64(nonce ‖ AES-GCM(key, nonce, aad, plaintext) ‖ tag)` with a random nonce.
pub fn wrap_locally(plaintext: &[u8], key: &DataKey, aad: &[u8]) -> Result<String, Error> {
    Ok(cloister_formats::kmt::wrap_locally(
        plaintext,
        key.expose(),
        aad,
    )?)
}

/// Inverse of [`wrap_locally`]; `key_name` names the wrapping key in the error.
pub fn unwrap_locally(
    encoded: &str,
    key: &DataKey,
    aad: &[u8],
    key_name: &str,
) -> Result<DataKey, Error> {
    let mut plaintext =
        cloister_formats::kmt::unwrap_locally(encoded, key.expose(), aad, key_name)?;
    // Moved, not copied, into the key's secret box; the emptied buffer is wiped on drop.
    DataKey::new("unwrapped data key", std::mem::take(&mut *plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::InMemoryKeyProvider;

    fn provider() -> KmtKeyProvider {
        let keys = InMemoryKeyProvider::new()
            .with_key("kf", (0..16).collect())
            .unwrap()
            .with_key("kc1", (1..17).collect())
            .unwrap()
            .with_key("k256", vec![9; 32])
            .unwrap();
        KmtKeyProvider::new(Arc::new(keys))
    }

    /// Key material written by pyarrow 26 (`CryptoFactory`, double wrapping) with a KMS client
    /// that wraps under master key "kf" = bytes 0..16 with AES-GCM and AAD "kf".
    const PYARROW_FOOTER_MATERIAL: &str = r#"{"keyMaterialType":"PKMT1","internalStorage":true,"isFooterKey":true,"kmsInstanceID":"DEFAULT","kmsInstanceURL":"DEFAULT","masterKeyID":"kf","wrappedDEK":"44KQJJOQ/mJUFSMHkB5IjTGFdn+Zg3EHiafnOGbzDBipqSFWkAJcdY1JeGw=","doubleWrapping":true,"keyEncryptionKeyID":"0GuK5cDmI2TxTtaI4e63Ug==","wrappedKEK":"zFEq6ufjBVy5bA61p8MiwwvTCRKEnFZviAcxdV8Yw17QyqqDuVWlIg4j6NU="}"#;

    #[test]
    fn unwraps_pyarrow_double_wrapped_material() {
        let dek = provider().key(PYARROW_FOOTER_MATERIAL).unwrap();
        assert_eq!(dek.len(), 16);
    }

    #[test]
    fn wrong_master_key_is_unwrap_failure() {
        let keys = InMemoryKeyProvider::new()
            .with_key("kf", vec![0; 16])
            .unwrap();
        let kmt = KmtKeyProvider::new(Arc::new(keys));
        assert!(matches!(
            kmt.key(PYARROW_FOOTER_MATERIAL),
            Err(Error::UnwrapFailed { wrapping_key }) if wrapping_key == "kf"
        ));
    }

    #[test]
    fn unknown_master_key_is_unknown_key() {
        let kmt = KmtKeyProvider::new(Arc::new(InMemoryKeyProvider::new()));
        assert!(matches!(
            kmt.key(PYARROW_FOOTER_MATERIAL),
            Err(Error::UnknownKey { key_id }) if key_id == "kf"
        ));
    }

    #[rstest::rstest]
    #[case::single_aes128("kf", false, 16)]
    #[case::double_aes128("kc1", true, 16)]
    #[case::single_aes256_master("k256", false, 32)]
    #[case::double_aes256_dek("kf", true, 32)]
    fn wrap_then_unwrap(
        #[case] master: &str,
        #[case] double_wrapping: bool,
        #[case] dek_len: usize,
    ) {
        let kmt = provider();
        let dek = generate_data_key(dek_len).unwrap();
        let material = kmt
            .wrapper(double_wrapping)
            .wrap(&dek, master, true)
            .unwrap();
        let json = material.to_json().unwrap();
        assert!(json.starts_with(r#"{"keyMaterialType":"PKMT1","internalStorage":true"#));
        let parsed = KeyMaterial::parse(json.as_bytes()).unwrap();
        assert_eq!(parsed, material);
        assert_eq!(kmt.key(&json).unwrap().expose(), dek.expose());
    }

    #[test]
    fn one_kek_per_master_key_and_file() {
        let kmt = provider();
        let mut wrapper = kmt.wrapper(true);
        let a = wrapper
            .wrap(&generate_data_key(16).unwrap(), "kf", false)
            .unwrap();
        let b = wrapper
            .wrap(&generate_data_key(16).unwrap(), "kf", false)
            .unwrap();
        let c = wrapper
            .wrap(&generate_data_key(16).unwrap(), "kc1", false)
            .unwrap();
        assert_eq!(a.kek_id, b.kek_id);
        assert_ne!(a.kek_id, c.kek_id);
        assert!(a.kms_instance_id.is_none());
    }

    #[test]
    fn tampered_wrapped_dek_is_refused() {
        let mut material = KeyMaterial::parse(PYARROW_FOOTER_MATERIAL.as_bytes()).unwrap();
        let mut raw = BASE64.decode(&material.wrapped_dek).unwrap();
        raw[20] ^= 1;
        material.wrapped_dek = BASE64.encode(raw);
        assert!(matches!(
            provider().unwrap_material(&material),
            Err(Error::UnwrapFailed { .. })
        ));
    }

    #[rstest::rstest]
    #[case::not_json(r#"{"keyMaterialType": "#)]
    #[case::wrong_type(r#"{"keyMaterialType":"PKMT9","internalStorage":true,"masterKeyID":"kf","wrappedDEK":"AA=="}"#)]
    #[case::bad_bool(r#"{"keyMaterialType":"PKMT1","internalStorage":"maybe","masterKeyID":"kf","wrappedDEK":"AA=="}"#)]
    #[case::double_without_kek(r#"{"keyMaterialType":"PKMT1","internalStorage":true,"masterKeyID":"kf","wrappedDEK":"AA==","doubleWrapping":true}"#)]
    fn malformed_material(#[case] json: &str) {
        assert!(matches!(
            provider().key(json),
            Err(Error::MalformedKeyMaterial { .. })
        ));
    }

    #[test]
    fn short_wrapped_key_is_malformed() {
        let json = r#"{"keyMaterialType":"PKMT1","internalStorage":"true","masterKeyID":"kf","wrappedDEK":"AAAA","doubleWrapping":"false"}"#;
        assert!(matches!(
            provider().key(json),
            Err(Error::MalformedKeyMaterial { .. })
        ));
    }

    #[test]
    fn external_material_is_unsupported() {
        let json =
            r#"{"keyMaterialType":"PKMT1","internalStorage":false,"keyReference":"footerKey"}"#;
        assert!(matches!(
            provider().key(json),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn plain_ids_go_to_the_inner_provider() {
        assert_eq!(provider().key("kc1").unwrap().expose()[0], 1);
    }
}

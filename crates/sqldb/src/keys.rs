//! Column master keys: where the engine gets the private keys that unwrap column encryption
//! keys.
//!
//! The database holds only CMK *metadata* (a key store provider name and a key path, as
//! `sys.column_master_keys` does) and CEKs wrapped by the CMKs. The private keys come from the
//! runtime's attested configuration, through a [`ColumnMasterKeyProvider`] — the role SqlClient's
//! column master key store providers play — looked up by provider name and key path.
//!
//! A workload that was given a column encryption key itself (imported from another session,
//! without the CMK that wraps it) holds it by name, as SqlClient's symmetric key cache does:
//! [`ColumnMasterKeyProvider::column_encryption_key`].
//!
//! # Keys from the attested configuration
//!
//! [`InMemoryColumnMasterKeys::from_configured`] takes typed [`ConfiguredKey`]s: CMKs at
//! [`CLOISTER_KEY_STORE`] as PEM private keys, and CEKs by name, either the key itself or its
//! `encrypted_value`, unwrapped here with the configured CMK its key path names. Which
//! configuration variables carry them (`CLOISTER_CMK_<PATH>`, `CLOISTER_CEK_<NAME>`) is the
//! workload role's business, not this crate's.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use cloister_colenc::{Cek, Cmk, WrappedCek, unwrap_cek};
use secrecy::{ExposeSecret, SecretSlice, SecretString};

use super::Error;

/// Key store provider name for CMKs that Cloister's CAS generates and hands to attested
/// workloads. (SQL Server's own providers are `MSSQL_CERTIFICATE_STORE`, `AZURE_KEY_VAULT`,
/// `MSSQL_CNG_STORE`, `MSSQL_CSP_PROVIDER` and `MSSQL_JAVA_KEYSTORE`; a custom provider may use
/// any other name.)
pub const CLOISTER_KEY_STORE: &str = "CLOISTER_CAS";

/// Resolves CMK metadata to the CMK's private key.
pub trait ColumnMasterKeyProvider: Send + Sync + fmt::Debug {
    /// The CMK stored in key store `provider_name` at `key_path`, or `None` if this provider
    /// has no such key. Key paths compare case-insensitively, as SQL Server's do.
    fn column_master_key(&self, provider_name: &str, key_path: &str) -> Option<Arc<Cmk>>;

    /// The column encryption key named `cek_name` itself, if this provider was given it (for
    /// example imported from another session without its CMK). Used when no CMK of the
    /// database unwraps the key, and wrapped (instead of a fresh key) when a sink registers a
    /// CEK of that name. Names compare case-insensitively. Default: none.
    fn column_encryption_key(&self, cek_name: &str) -> Option<Cek> {
        let _ = cek_name;
        None
    }
}

/// A column key handed to the workload in its attested configuration.
#[non_exhaustive]
pub enum ConfiguredKey {
    /// The CMK at [`CLOISTER_KEY_STORE`], key path `key_path` (a policy's `cmk` secret, whose
    /// key path is its name), as a PEM RSA private key.
    ColumnMasterKey {
        /// The key path.
        key_path: String,
        /// The PEM private key.
        pem: SecretString,
    },
    /// The column encryption key named `name`: 32 bytes are the key itself; longer bytes are
    /// its `encrypted_value`, wrapped by a configured CMK.
    ColumnEncryptionKey {
        /// The CEK's name.
        name: String,
        /// The key, or its `encrypted_value`.
        value: SecretSlice<u8>,
    },
}

impl ConfiguredKey {
    /// The CMK at [`CLOISTER_KEY_STORE`] / `key_path`.
    pub fn cmk(key_path: impl Into<String>, pem: SecretString) -> Self {
        ConfiguredKey::ColumnMasterKey {
            key_path: key_path.into(),
            pem,
        }
    }

    /// The CEK `name`, as its bytes or its `encrypted_value`.
    pub fn cek(name: impl Into<String>, value: SecretSlice<u8>) -> Self {
        ConfiguredKey::ColumnEncryptionKey {
            name: name.into(),
            value,
        }
    }

    /// The CEK `name` from hex, as the CAS hands it out (`$$cloister:CEK1:key$$` or
    /// `$$cloister:CEK1:hex$$`); [`Error::InvalidKeyConfig`] if it is not hex.
    pub fn cek_hex(name: impl Into<String>, hex: &SecretString) -> Result<Self, Error> {
        let name = name.into();
        let bytes =
            hex::decode(hex.expose_secret().trim()).map_err(|_| Error::InvalidKeyConfig {
                cek: name.clone(),
                reason: "not hex".into(),
            })?;
        Ok(Self::cek(name, SecretSlice::from(bytes)))
    }
}

impl fmt::Debug for ConfiguredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfiguredKey::ColumnMasterKey { key_path, .. } => f
                .debug_struct("ColumnMasterKey")
                .field("key_path", key_path)
                .finish_non_exhaustive(),
            ConfiguredKey::ColumnEncryptionKey { name, .. } => f
                .debug_struct("ColumnEncryptionKey")
                .field("name", name)
                .finish_non_exhaustive(),
        }
    }
}

/// CMKs (and CEKs) held in memory, filled by the runtime from its attested configuration.
#[derive(Default)]
pub struct InMemoryColumnMasterKeys {
    keys: RwLock<HashMap<(String, String), Arc<Cmk>>>,
    ceks: RwLock<HashMap<String, Cek>>,
}

impl InMemoryColumnMasterKeys {
    /// No keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the CMK at `provider_name` / `key_path`.
    pub fn insert(&self, provider_name: &str, key_path: &str, cmk: Cmk) {
        self.write()
            .insert(Self::id(provider_name, key_path), Arc::new(cmk));
    }

    /// Add the CMK at `provider_name` / `key_path` from its PEM private key.
    pub fn insert_pem(
        &self,
        provider_name: &str,
        key_path: &str,
        pem: &SecretString,
    ) -> Result<(), Error> {
        let cmk =
            Cmk::from_pem(pem.expose_secret()).map_err(|source| Error::InvalidColumnMasterKey {
                location: format!("{provider_name}: {key_path}"),
                source,
            })?;
        self.insert(provider_name, key_path, cmk);
        Ok(())
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with_key(self, provider_name: &str, key_path: &str, cmk: Cmk) -> Self {
        self.insert(provider_name, key_path, cmk);
        self
    }

    /// Hold the column encryption key `cek_name` itself (see
    /// [`ColumnMasterKeyProvider::column_encryption_key`]).
    pub fn insert_cek(&self, cek_name: &str, cek: Cek) {
        self.ceks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(cek_name.to_lowercase(), cek);
    }

    /// The keys of a workload's attested configuration: every CMK, then every CEK (a wrapped
    /// CEK is unwrapped with the configured CMK its key path names).
    ///
    /// Errors name the key, never its value: [`Error::InvalidColumnMasterKey`] for a PEM that
    /// is not an RSA private key, [`Error::InvalidKeyConfig`] for a CEK that does not parse or
    /// names a CMK not given, and [`Error::CekUnwrap`] when it does not unwrap.
    pub fn from_configured(keys: impl IntoIterator<Item = ConfiguredKey>) -> Result<Self, Error> {
        let ring = Self::new();
        let mut ceks = Vec::new();
        for key in keys {
            match key {
                ConfiguredKey::ColumnMasterKey { key_path, pem } => {
                    ring.insert_pem(CLOISTER_KEY_STORE, &key_path, &pem)?;
                }
                ConfiguredKey::ColumnEncryptionKey { name, value } => ceks.push((name, value)),
            }
        }
        for (cek_name, value) in ceks {
            let invalid = |reason: &str| Error::InvalidKeyConfig {
                cek: cek_name.clone(),
                reason: reason.to_owned(),
            };
            let bytes = value.expose_secret();
            let cek = if bytes.len() == Cek::LEN {
                Cek::from_bytes(bytes).map_err(|_| invalid("not a 32-byte key"))?
            } else {
                let wrapped = WrappedCek::parse(bytes)
                    .map_err(|_| invalid("neither 32 bytes nor an encrypted_value"))?;
                let path = wrapped
                    .key_path()
                    .map_err(|_| invalid("its key path is not UTF-16"))?;
                let cmk = ring
                    .column_master_key(CLOISTER_KEY_STORE, &path)
                    .ok_or_else(|| {
                        invalid(&format!(
                            "wrapped by key path {path:?}, but no such column master key is configured"
                        ))
                    })?;
                unwrap_cek(bytes, &cmk, &path).map_err(|source| Error::CekUnwrap {
                    cek: cek_name.clone(),
                    cmk: path.clone(),
                    source,
                })?
            };
            ring.insert_cek(&cek_name, cek);
        }
        Ok(ring)
    }

    fn id(provider_name: &str, key_path: &str) -> (String, String) {
        (provider_name.to_uppercase(), key_path.to_lowercase())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(String, String), Arc<Cmk>>> {
        // Each operation is one insert or lookup: a panic cannot leave the map half updated.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), Arc<Cmk>>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl ColumnMasterKeyProvider for InMemoryColumnMasterKeys {
    fn column_master_key(&self, provider_name: &str, key_path: &str) -> Option<Arc<Cmk>> {
        self.read().get(&Self::id(provider_name, key_path)).cloned()
    }

    fn column_encryption_key(&self, cek_name: &str) -> Option<Cek> {
        self.ceks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&cek_name.to_lowercase())
            .cloned()
    }
}

impl fmt::Debug for InMemoryColumnMasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<String> = self
            .read()
            .keys()
            .map(|(provider, path)| format!("{provider}: {path}"))
            .collect();
        ids.sort();
        let mut ceks: Vec<String> = self
            .ceks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ceks.sort();
        f.debug_struct("InMemoryColumnMasterKeys")
            .field("keys", &ids)
            .field("ceks", &ceks)
            .finish()
    }
}

/// The metadata of a column master key, as `CREATE COLUMN MASTER KEY` declares it: what the
/// sink registers in `cloister_column_master_keys` when it creates a CEK under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMasterKeyDefinition {
    /// The CMK's name in the database (`CMK1`).
    pub name: String,
    /// The key store provider name (`AZURE_KEY_VAULT`, [`CLOISTER_KEY_STORE`], …).
    pub key_store_provider_name: String,
    /// The key's path in that store.
    pub key_path: String,
    /// Whether the CMK allows enclave computations; if so its metadata is signed.
    pub allow_enclave_computations: bool,
}

impl ColumnMasterKeyDefinition {
    /// A CMK named `name` at `key_store_provider_name` / `key_path`, without enclave
    /// computations.
    pub fn new(
        name: impl Into<String>,
        key_store_provider_name: impl Into<String>,
        key_path: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            key_store_provider_name: key_store_provider_name.into(),
            key_path: key_path.into(),
            allow_enclave_computations: false,
        }
    }

    /// Allow (or not) enclave computations (`ENCLAVE_COMPUTATIONS (SIGNATURE = …)`).
    pub fn enclave_computations(mut self, allow: bool) -> Self {
        self.allow_enclave_computations = allow;
        self
    }

    pub(crate) fn location(&self) -> String {
        format!("{}: {}", self.key_store_provider_name, self.key_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_debug_shows_no_key() {
        let keys = InMemoryColumnMasterKeys::new();
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
        ))
        .unwrap();
        keys.insert_pem(
            "MSSQL_CERTIFICATE_STORE",
            "CurrentUser/My/0BE978BA81EED610015FD8B7CAEF55F1614CA3B6",
            &SecretString::from(pem),
        )
        .unwrap();
        assert!(
            keys.column_master_key(
                "mssql_certificate_store",
                "currentuser/my/0be978ba81eed610015fd8b7caef55f1614ca3b6"
            )
            .is_some()
        );
        assert!(keys.column_master_key("AZURE_KEY_VAULT", "x").is_none());
        let shown = format!("{keys:?}");
        assert!(shown.contains("currentuser/my/0be9"), "{shown}");
        assert!(!shown.contains("PRIVATE"), "{shown}");
    }

    #[test]
    fn bad_pem_is_an_error() {
        let keys = InMemoryColumnMasterKeys::new();
        assert!(
            keys.insert_pem("P", "k", &SecretString::from("not a key".to_owned()))
                .is_err()
        );
    }

    #[test]
    fn configured_keys_give_cmks_and_ceks_raw_or_wrapped() {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
        ))
        .unwrap();
        let cmk = Cmk::from_pem(&pem).unwrap();
        let wrapped_key = Cek::generate().unwrap();
        let wrapped = cloister_colenc::wrap_cek(&wrapped_key, &cmk, "CMK1").unwrap();
        let raw = Cek::from_bytes(&[7; 32]).unwrap();
        let hex_of = |bytes: &[u8]| SecretString::from(hex::encode(bytes));
        let keys = InMemoryColumnMasterKeys::from_configured([
            ConfiguredKey::cek_hex("CEK1", &hex_of(&wrapped)).unwrap(),
            ConfiguredKey::cmk("CMK1", SecretString::from(pem.clone())),
            ConfiguredKey::cek("CEK2", SecretSlice::from(vec![7; 32])),
        ])
        .unwrap();
        assert!(keys.column_master_key(CLOISTER_KEY_STORE, "cmk1").is_some());
        assert_eq!(keys.column_encryption_key("cek1"), Some(wrapped_key));
        assert_eq!(keys.column_encryption_key("CEK2"), Some(raw));
        assert_eq!(keys.column_encryption_key("CEK3"), None);
        let shown = format!("{keys:?}");
        assert!(shown.contains("cek2") && !shown.contains("7, 7"), "{shown}");

        // Not hex, a wrapped CEK whose CMK is not given, and a value too short: each names
        // the CEK.
        assert!(matches!(
            ConfiguredKey::cek_hex("X", &SecretString::from("zz".to_owned())),
            Err(Error::InvalidKeyConfig { cek, .. }) if cek == "X"
        ));
        for (name, value) in [("CEK1", wrapped.clone()), ("Y", vec![1, 2])] {
            let key = ConfiguredKey::cek(name, SecretSlice::from(value));
            match InMemoryColumnMasterKeys::from_configured([key]) {
                Err(Error::InvalidKeyConfig { cek, .. }) => assert_eq!(cek, name),
                other => panic!("{name}: {other:?}"),
            }
        }
        let bad = ConfiguredKey::cmk("K", SecretString::from("not a key".to_owned()));
        assert!(matches!(
            InMemoryColumnMasterKeys::from_configured([bad]),
            Err(Error::InvalidColumnMasterKey { .. })
        ));
    }

    #[test]
    fn debug_of_configured_keys_shows_no_key() {
        let cmk = ConfiguredKey::cmk("CMK1", SecretString::from("PRIVATE-PEM".to_owned()));
        let cek = ConfiguredKey::cek("CEK1", SecretSlice::from(vec![0x5A; 32]));
        let shown = format!("{cmk:?} {cek:?}");
        assert!(shown.contains("CMK1") && shown.contains("CEK1"), "{shown}");
        assert!(
            !shown.contains("PRIVATE") && !shown.contains("90"),
            "{shown}"
        );
    }
}

//! Column master keys: where the engine gets the private keys that unwrap column encryption
//! keys.
//!
//! The database holds only CMK *metadata* (a key store provider name and a key path, as
//! `sys.column_master_keys` does) and CEKs wrapped by the CMKs. The private keys come from the
//! runtime's attested configuration, through a [`ColumnMasterKeyProvider`] — the role SqlClient's
//! column master key store providers play — looked up by provider name and key path.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use cloister_colenc::Cmk;
use secrecy::{ExposeSecret, SecretString};

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
}

/// CMKs held in memory, filled by the runtime from its attested configuration.
#[derive(Default)]
pub struct InMemoryColumnMasterKeys {
    keys: RwLock<HashMap<(String, String), Arc<Cmk>>>,
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
}

impl fmt::Debug for InMemoryColumnMasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<String> = self
            .read()
            .keys()
            .map(|(provider, path)| format!("{provider}: {path}"))
            .collect();
        ids.sort();
        f.debug_struct("InMemoryColumnMasterKeys")
            .field("keys", &ids)
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
}

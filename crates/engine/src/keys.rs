//! Key providers: resolve key ids to key bytes.
//!
//! Everything that names a key in Cloister — SQL options, encryption-factory options, Parquet
//! key metadata — names it by id. A [`KeyProvider`] is the one place where an id becomes bytes.
//! The runtime fills an [`InMemoryKeyProvider`] from the configuration it received from CAS
//! after attestation; [`KmtKeyProvider`](crate::kmt::KmtKeyProvider) wraps any provider to also
//! resolve Parquet key-management-tools key material.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use secrecy::{ExposeSecret, SecretBox};

use crate::Error;

/// An AES key of 16, 24 or 32 bytes, wiped from memory when dropped.
///
/// Its `Debug` shows only the length.
pub struct DataKey(SecretBox<[u8]>);

impl DataKey {
    /// Wrap `bytes` as a key, checking its length; `key_id` names it in the error.
    pub fn new(key_id: &str, bytes: Vec<u8>) -> Result<Self, Error> {
        let len = bytes.len();
        // Moved into the secret box before any check, so that a rejected key is wiped too.
        let key = DataKey(SecretBox::new(bytes.into_boxed_slice()));
        match len {
            16 | 24 | 32 => Ok(key),
            _ => Err(Error::InvalidKeyLength {
                key_id: key_id.to_owned(),
                len,
            }),
        }
    }

    /// The key bytes. Keep the borrow short; copies the Parquet crate needs are its own.
    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    /// The key length in bytes (16, 24 or 32).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// Always false: a key has 16, 24 or 32 bytes.
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Clone for DataKey {
    fn clone(&self) -> Self {
        DataKey(SecretBox::new(self.expose().to_vec().into_boxed_slice()))
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DataKey({} bytes)", self.len())
    }
}

/// Resolves key ids to keys.
///
/// Implementations are shared by every query of a session (hence `Send + Sync`) and must not
/// log key bytes. Resolution is synchronous because Parquet's key retriever is.
pub trait KeyProvider: Send + Sync + fmt::Debug {
    /// The key named `key_id`, or [`Error::UnknownKey`].
    fn key(&self, key_id: &str) -> Result<DataKey, Error>;
}

/// Keys held in memory, filled by the runtime from its attested configuration.
#[derive(Default)]
pub struct InMemoryKeyProvider {
    keys: RwLock<HashMap<String, DataKey>>,
}

impl InMemoryKeyProvider {
    /// An empty provider.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add (or replace) the key `key_id`; its length is checked.
    pub fn insert(&self, key_id: impl Into<String>, bytes: Vec<u8>) -> Result<(), Error> {
        let key_id = key_id.into();
        let key = DataKey::new(&key_id, bytes)?;
        self.write().insert(key_id, key);
        Ok(())
    }

    /// Builder form of [`insert`](Self::insert).
    pub fn with_key(self, key_id: impl Into<String>, bytes: Vec<u8>) -> Result<Self, Error> {
        self.insert(key_id, bytes)?;
        Ok(self)
    }

    /// Remove the key `key_id` (it is wiped); true if it was there.
    pub fn remove(&self, key_id: &str) -> bool {
        self.write().remove(key_id).is_some()
    }

    /// The ids of the keys held, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.read().keys().cloned().collect();
        ids.sort();
        ids
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, DataKey>> {
        // A panic while holding the lock cannot leave the map half-updated (each operation is
        // a single insert or remove), so a poisoned lock is still safe to use.
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, DataKey>> {
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl KeyProvider for InMemoryKeyProvider {
    fn key(&self, key_id: &str) -> Result<DataKey, Error> {
        self.read()
            .get(key_id)
            .cloned()
            .ok_or_else(|| Error::UnknownKey {
                key_id: key_id.to_owned(),
            })
    }
}

impl fmt::Debug for InMemoryKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryKeyProvider")
            .field("key_ids", &self.key_ids())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::aes128(16)]
    #[case::aes192(24)]
    #[case::aes256(32)]
    fn accepts_aes_key_lengths(#[case] len: usize) {
        let key = DataKey::new("k", vec![7; len]).unwrap();
        assert_eq!(key.len(), len);
    }

    #[rstest]
    #[case::empty(0)]
    #[case::short(15)]
    #[case::odd(17)]
    #[case::long(64)]
    fn rejects_other_lengths(#[case] len: usize) {
        assert!(matches!(
            DataKey::new("k", vec![7; len]),
            Err(Error::InvalidKeyLength { len: l, .. }) if l == len
        ));
    }

    #[test]
    fn resolves_known_ids_and_refuses_unknown() {
        let keys = InMemoryKeyProvider::new()
            .with_key("kf", vec![1; 16])
            .unwrap();
        assert_eq!(keys.key("kf").unwrap().expose(), &[1; 16]);
        assert!(matches!(keys.key("nope"), Err(Error::UnknownKey { key_id }) if key_id == "nope"));
        assert!(keys.remove("kf"));
        assert!(keys.key("kf").is_err());
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let keys = InMemoryKeyProvider::new()
            .with_key("kf", vec![0xAB; 16])
            .unwrap();
        let shown = format!("{keys:?} {:?}", keys.key("kf").unwrap());
        assert!(shown.contains("kf"), "{shown}");
        assert!(shown.contains("16 bytes"), "{shown}");
        assert!(!shown.contains("171"), "{shown}"); // 0xAB
        assert!(!shown.to_lowercase().contains("ab, "), "{shown}");
    }
}

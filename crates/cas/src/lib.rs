//! Cloister's Configuration and Attestation Service (CAS): its storage foundations.
//!
//! The CAS holds the custodians' policies ("sessions"), the secrets it generates for them, the
//! nonces it hands out for attestation, and its own signing keys, and it keeps an audit log of
//! everything it decides. This crate provides:
//!
//! - [`MasterKey`]: the one key that protects everything at rest, from a `0600` file or
//!   `CLOISTER_MASTER_KEY`, with an HKDF subkey per purpose.
//! - [`Store`]: the typed tables the CAS keeps, and [`FileStore`], the embedded backend (one
//!   `redb` file; every value AES-256-GCM sealed, every name replaced by a keyed hash; every
//!   commit durable). A PostgreSQL backend for a highly available CAS implements the same trait.
//! - [`audit`]: the append-only, hash-chained, signed audit log and its offline verifier, whose
//!   failures ([`AuditError`]) each have their own exit code.
//!
//! - [`server`]: the HTTPS API ([`server::router`], [`server::run`]) over [`server::CasState`]:
//!   sessions, nonces, attestation (verify → appraise → resolve [`secrets`] → certificate,
//!   token and sealed configuration), the audit API; its wire types in [`api`].
//! - [`client`]: the library the runtime and CLI use, pinned to the CAS's certificate.
//!
//! # Design
//!
//! Nothing secret reaches the disk in plaintext: not secret values, not session documents, not
//! names used as keys. Durability is the storage layer's job, so every call that returns `Ok`
//! has been `fsync`ed; a `kill -9` loses no acknowledged write (this is tested by killing a
//! writer process mid-burst). The store is a synchronous trait called through `spawn_blocking`
//! (see [`store`] for why). Concurrent audit appends are group committed (one `fsync` round per
//! batch, each appender answered after the one covering its entry), and attestation nonces are
//! kept in memory, where a restart can only refuse them: an attestation costs one round of
//! `fsync`s, shared with every attestation in flight.
//!
//! # Example
//!
//! ```
//! use cloister_cas::audit::{self, AuditLog, AuditSigner, Event, EventKind};
//! use cloister_cas::{FileStore, MasterKey, SecretBytes, Store, StoredSecret};
//! use std::time::SystemTime;
//!
//! let dir = tempfile::tempdir()?;
//! let key = MasterKey::generate();
//!
//! let store = FileStore::open(dir.path(), &key)?;
//! let secret = StoredSecret { value: SecretBytes::new(b"s3cr3t".to_vec()), created: SystemTime::now() };
//! store.secret_or_insert("taxi-analytics", "db-password", secret)?;
//!
//! let log = AuditLog::open(dir.path(), AuditSigner::from_master_key(&key)?)?;
//! log.append(&Event::new(EventKind::SecretGenerated).session("taxi-analytics").released("db-password"))?;
//!
//! let summary = audit::verify(dir.path(), &log.public_key())?;
//! assert_eq!(summary.entries, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod admin;
pub mod api;
pub mod audit;
pub mod ca;
pub mod client;
pub mod config;
pub mod envelope;
mod error;
pub mod imports;
pub mod master_key;
/// The name syntax of namespaces, sessions and services (one rule, in the policy crate).
pub use cloister_policy::names;
pub mod secrets;
pub mod server;
pub mod store;
pub mod token;

pub use audit::AuditError;
pub use config::{CasConfig, Clock, ManualClock, SystemClock};
pub use error::{Error, NonceRejection, RefusedRules};
pub use imports::ImportRules;
pub use master_key::{KeyPurpose, MASTER_KEY_ENV, MasterKey};
pub use store::file::FileStore;
pub use store::{
    CasKey, Expect, KeyAlgorithm, Namespace, NamespaceOwner, SecretBytes, Session, SessionHash,
    SessionSignature, SessionVersion, Store, StoredSecret, Tombstone, Versioned,
};

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// A fresh P-256 key from the operating system's generator.
pub(crate) fn random_p256() -> Result<p256::SecretKey, Error> {
    use p256::elliptic_curve::Generate as _;
    p256::SecretKey::try_generate().map_err(|_| Error::Internal("the OS random generator failed"))
}

//! Cloister's Configuration and Attestation Service (CAS): the service, and its client.
//!
//! The CAS holds the custodians' policies ("sessions"), the secrets it generates for them, the
//! nonces it hands out for attestation, and its own signing keys; it attests workloads and
//! releases their configuration, and keeps an audit log of everything it decides. Its modules:
//!
//! - [`api`]: the wire types of the HTTPS API, shared by the server and the client.
//! - [`client`]: the library the runtime and the CLI use, pinned to the CAS's certificate.
//! - [`envelope`]: the HPKE envelope that seals a workload's configuration to its key.
//! - [`audit`]: the append-only, hash-chained, signed audit log and its offline verifier, whose
//!   failures ([`AuditError`]) each have their own exit code.
//! - [`store`]: the typed tables the CAS keeps (the [`Store`] trait), and, with `server`,
//!   [`FileStore`], its one backend: one `redb` file; every value AES-256-GCM sealed, every name
//!   replaced by a keyed hash; every commit durable.
//! - [`MasterKey`]: the one key that protects everything at rest, from a `0600` file or
//!   `CLOISTER_MASTER_KEY`, with an HKDF subkey per purpose.
//! - With `server`: [`server`], the HTTPS API ([`server::router`], [`server::run`]) over
//!   [`server::CasState`]: sessions, namespaces, nonces, attestation (verify → appraise →
//!   resolve the session's secrets → certificate from the session CA, token and sealed
//!   configuration), the audit API; [`config`] ([`CasConfig`]); [`token`], the attestation
//!   tokens it signs and their verifier; [`imports`], the operator's rules for secrets imported
//!   from host files; [`admin`], the operator's admin key and namespaces.
//!
//! The node agent that serves TEE evidence and collateral (the LAS) is the `cloister-las` crate.
//!
//! # Features
//!
//! `server` (default) is the service. With `default-features = false` the crate is [`client`],
//! [`api`], [`envelope`] and [`audit`], without redb, axum, utoipa, rcgen or jsonwebtoken: what a
//! workload links.
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
//! A secret kept in the store and an audited decision, verified offline (feature `server`):
//!
//! ```
//! # #[cfg(not(feature = "server"))] fn main() {}
//! # #[cfg(feature = "server")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
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
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "server")]
pub mod admin;
pub mod api;
pub mod audit;
#[cfg(feature = "server")]
pub(crate) mod ca;
pub mod client;
#[cfg(feature = "server")]
pub mod config;
pub mod envelope;
mod error;
#[cfg(feature = "server")]
pub mod imports;
mod master_key;
/// The name syntax of namespaces, sessions and services (one rule, in the policy crate).
pub use cloister_policy::names;
#[cfg(feature = "server")]
pub(crate) mod secrets;
#[cfg(feature = "server")]
pub mod server;
pub mod store;
#[cfg(feature = "server")]
pub mod token;

pub use audit::AuditError;
#[cfg(feature = "server")]
pub use config::{CasConfig, Clock, ManualClock, SystemClock};
pub use error::{Error, NonceRejection, RefusedRules};
#[cfg(feature = "server")]
pub use imports::ImportRules;
pub use master_key::{KeyPurpose, MASTER_KEY_ENV, MasterKey};
#[cfg(feature = "server")]
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

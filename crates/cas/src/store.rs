//! What the CAS keeps, and the [`Store`] trait every backend implements.
//!
//! # Tables
//!
//! | table | key | value | operations |
//! | --- | --- | --- | --- |
//! | sessions | session name | every version: YAML, owner signatures, hash, time | [`Store::session`], [`Store::append_session_version`] (compare-and-swap on the head hash), [`Store::delete_session`], [`Store::session_names`] |
//! | secrets | (session, secret name) | the secret's bytes and creation time | [`Store::secret`], [`Store::secret_or_insert`] (first writer wins), [`Store::secret_names`]; removed with their session by [`Store::delete_session`] |
//! | CAS keys | key id | the CAS's own signing keys (token, session CA) | [`Store::cas_key`], [`Store::insert_cas_key`] (never overwritten) |
//! | kv | (namespace, key) | versioned bytes (today: who may read a deleted session's audit entries) | [`Store::kv_get`], [`Store::kv_put`] (compare-and-swap on the version) |
//! | namespaces | namespace name | its owners, session quota and version | [`Store::namespace`], [`Store::put_namespace`] (compare-and-swap on the version), [`Store::delete_namespace`], [`Store::namespace_names`] |
//! | tombstones | session name | the last version and hash of a deleted session | [`Store::tombstone`] (written by [`Store::delete_session`] in the same transaction) |
//! | meta | `admin_key` | the operator's admin key (SPKI DER) | [`Store::admin_key`], [`Store::set_admin_key`] |
//!
//! The trait holds only what the CAS uses: every method is one a future backend must implement.
//! Attestation nonces are not stored at all: the HTTPS server keeps them in memory, since they
//! are single use and short lived and forgetting them on a restart only refuses them (see
//! `server/nonces.rs`). Store format 3 dropped the durable `nonces` table earlier formats had.
//!
//! Every mutation is atomic and durable when it returns `Ok`: a crash after that (even `kill -9` or
//! a power cut, given a disk that honours `fsync`) loses nothing. Compare-and-swap preconditions
//! fail with [`Error::Conflict`], so two CAS replicas (or two requests) never both win.
//!
//! # Sync trait, called through `spawn_blocking`
//!
//! The trait is synchronous. The CAS is an axum/tokio service, so its handlers call the store
//! through `tokio::task::spawn_blocking` with an `Arc<dyn Store>`. Reasons:
//!
//! - The embedded backend is blocking by nature: every commit waits for `fsync`. An async trait
//!   would only hide a `spawn_blocking` inside each method.
//! - A sync trait is dyn-compatible without boxing futures or a macro crate, so the service holds
//!   `Arc<dyn Store>` and picks the backend at start-up from configuration.
//! - The CLI (`cloister audit verify`, offline inspection) and tests use it without a runtime.
//! - A PostgreSQL backend fits the same shape: the blocking `postgres` client (or a small pool)
//!   runs one transaction per method, inside the caller's `spawn_blocking`, using
//!   `SELECT … FOR UPDATE` for the compare-and-swap operations.
//!
//! # Adding a backend
//!
//! Implement [`Store`] (see [`FileStore`](crate::FileStore) for the embedded one) and run the
//! shared behaviour tests in this module's `conformance` test functions against it. A PostgreSQL
//! backend should keep the same at-rest rule: values sealed with [`KeyPurpose::StoreEncryption`]
//! and names replaced by keyed hashes, so that a database dump reveals no secret.
//!
//! [`KeyPurpose::StoreEncryption`]: crate::KeyPurpose::StoreEncryption

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::Error;

/// Creates `dir` (and parents) with mode 0700 if it does not exist.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<(), Error> {
    cloister_attest::private_fs::create_dir(dir)
        .map_err(|e| Error::io("create data directory", dir, e))
}

#[cfg(feature = "server")]
pub mod file;

/// The SHA-256 hash identifying one version of a session: the policy crate's type, stored as
/// 64 lower-case hex digits.
pub use cloister_policy::SessionHash;

/// One owner's signature over a session version, as the policy layer produced it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSignature {
    /// The signer: a public key (SPKI DER) or key id, as the policy layer defines it.
    #[serde(with = "hex::serde")]
    pub signer: Vec<u8>,
    /// The signature bytes.
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

/// One version of a session (a policy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionVersion {
    /// The version number the session declares.
    pub version: u64,
    /// The session document as the owner submitted it.
    pub yaml: String,
    /// The owners' signatures over it.
    pub signatures: Vec<SessionSignature>,
    /// Its hash: what the next version names as its predecessor.
    pub hash: SessionHash,
    /// When the CAS accepted it.
    pub created: SystemTime,
}

/// A session: its name and every version, oldest first. The last one is in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The session's name.
    pub name: String,
    /// Every version, oldest first; never empty.
    pub versions: Vec<SessionVersion>,
}

impl Session {
    /// The version in force (the newest).
    pub fn head(&self) -> Option<&SessionVersion> {
        self.versions.last()
    }
}

/// Secret bytes: wiped from memory when dropped, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes; the caller's vector moves in, so no copy is left behind.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The bytes. Name it at every use so that reviews can find where secrets flow.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes (not secret).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretBytes {
    fn from(bytes: Vec<u8>) -> Self {
        SecretBytes::new(bytes)
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

/// A secret the CAS generated (or imported) for a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSecret {
    /// The secret itself, in the encoding the issuing layer chose.
    pub value: SecretBytes,
    /// When it was created.
    pub created: SystemTime,
}

/// The algorithm of a CAS signing key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on P-256 with SHA-256 (JWT `ES256`).
    Es256,
    /// ECDSA on P-384 with SHA-384 (JWT `ES384`).
    Es384,
    /// Ed25519.
    Ed25519,
}

/// One of the CAS's own signing keys (attestation tokens, session CAs).
#[derive(Clone, PartialEq, Eq)]
pub struct CasKey {
    /// Its id (the JWT `kid`, or a CA name).
    pub id: String,
    /// Its algorithm.
    pub algorithm: KeyAlgorithm,
    /// The private key (PKCS#8 DER, say); secret.
    pub private_key: SecretBytes,
    /// The public key (SPKI DER, say); public.
    pub public_key: Vec<u8>,
    /// When it was created.
    pub created: SystemTime,
    /// After this it is no longer used to sign (it may still verify).
    pub not_after: Option<SystemTime>,
}

impl std::fmt::Debug for CasKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CasKey")
            .field("id", &self.id)
            .field("algorithm", &self.algorithm)
            .field("public_key", &hex::encode(&self.public_key))
            .field("created", &self.created)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// One owner of a namespace: may approve the creation of sessions in it and read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceOwner {
    /// A name for people.
    pub name: String,
    /// The owner's Ed25519 public key, SubjectPublicKeyInfo DER.
    #[serde(with = "hex::serde")]
    pub public_key: Vec<u8>,
}

/// A namespace: the first segment of session names, created by the operator's admin key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    /// The namespace's name (one name segment, no `/`).
    pub name: String,
    /// Who approves the creation of sessions in it.
    pub owners: Vec<NamespaceOwner>,
    /// How many sessions it may hold.
    pub session_quota: u64,
    /// 1 when created, one more on each update (compare-and-swap).
    pub version: u64,
    /// When it was created.
    pub created: SystemTime,
    /// When it last changed.
    pub updated: SystemTime,
}

/// What a deleted session leaves: its name may be created again only with a version above
/// `version` naming `hash` as its predecessor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    /// The session's name.
    pub name: String,
    /// The version in force when it was deleted.
    pub version: u64,
    /// That version's hash.
    pub hash: SessionHash,
    /// When it was deleted.
    pub deleted: SystemTime,
}

/// A value in the generic key-value table, with its version (1 for the first write).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// Starts at 1; each successful [`Store::kv_put`] adds 1.
    pub version: u64,
    /// The value; treated as secret (wiped on drop, never printed).
    pub value: SecretBytes,
}

/// The precondition of a compare-and-swap write to the kv table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must be at this version.
    Version(u64),
}

/// The CAS's persistent state. See the [module docs](self) for the tables and why it is sync.
///
/// Names (sessions, secrets, keys, namespaces) must be non-empty and at most
/// [`MAX_NAME_LEN`] bytes; other lengths fail with [`Error::InvalidInput`].
pub trait Store: Send + Sync + 'static {
    // ---- sessions ----

    /// The session and all its versions, or `None`.
    fn session(&self, name: &str) -> Result<Option<Session>, Error>;

    /// The names of all sessions, sorted.
    fn session_names(&self) -> Result<Vec<String>, Error>;

    /// Appends `version` to session `name`, atomically checking the current head: `expected_head`
    /// `None` means the session must not exist yet (creation), `Some(h)` that its newest version
    /// has hash `h` (an update naming `h` as predecessor). Otherwise [`Error::Conflict`].
    fn append_session_version(
        &self,
        name: &str,
        expected_head: Option<&SessionHash>,
        version: SessionVersion,
    ) -> Result<(), Error>;

    /// Deletes session `name` with all its versions and secrets, if its head is `expected_head`
    /// (else [`Error::Conflict`]), and leaves a [`Tombstone`] of its head dated `at`, in the
    /// same transaction. Returns whether it existed.
    fn delete_session(
        &self,
        name: &str,
        expected_head: &SessionHash,
        at: SystemTime,
    ) -> Result<bool, Error>;

    /// The tombstone of session `name` (the last deletion), or `None`. Tombstones are never
    /// removed: a later deletion of the same name replaces it.
    fn tombstone(&self, name: &str) -> Result<Option<Tombstone>, Error>;

    // ---- namespaces and the admin key ----

    /// The operator's admin key (Ed25519 SPKI DER), or `None` if none was set.
    fn admin_key(&self) -> Result<Option<Vec<u8>>, Error>;

    /// Sets (or replaces) the admin key.
    fn set_admin_key(&self, spki_der: &[u8]) -> Result<(), Error>;

    /// The namespace `name`, or `None`.
    fn namespace(&self, name: &str) -> Result<Option<Namespace>, Error>;

    /// The names of all namespaces, sorted.
    fn namespace_names(&self) -> Result<Vec<String>, Error>;

    /// Writes `namespace` if the stored one has version `expected_version` (`None`: none may
    /// exist), else [`Error::Conflict`]. The caller sets `namespace.version`.
    fn put_namespace(
        &self,
        namespace: Namespace,
        expected_version: Option<u64>,
    ) -> Result<(), Error>;

    /// Deletes namespace `name` if its version is `expected_version` (else
    /// [`Error::Conflict`]). Returns whether it existed.
    fn delete_namespace(&self, name: &str, expected_version: u64) -> Result<bool, Error>;

    // ---- generated secrets, per session ----

    /// The secret `name` of `session`, or `None`.
    fn secret(&self, session: &str, name: &str) -> Result<Option<StoredSecret>, Error>;

    /// Stores `candidate` as secret `name` of `session` unless one exists; returns the stored one
    /// (the existing secret if there was one). Two racing generators thus agree on one value.
    fn secret_or_insert(
        &self,
        session: &str,
        name: &str,
        candidate: StoredSecret,
    ) -> Result<StoredSecret, Error>;

    /// The names of `session`'s secrets, sorted.
    fn secret_names(&self, session: &str) -> Result<Vec<String>, Error>;

    // ---- the CAS's own keys ----

    /// The key with this id, or `None`.
    fn cas_key(&self, id: &str) -> Result<Option<CasKey>, Error>;

    /// Stores a new key. [`Error::Conflict`] if the id is taken: keys are never overwritten.
    fn insert_cas_key(&self, key: CasKey) -> Result<(), Error>;

    // ---- generic versioned kv ----

    /// The value at (`namespace`, `key`), or `None`.
    fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Versioned>, Error>;

    /// Writes `value` if `expect` holds (else [`Error::Conflict`]); returns the new version.
    fn kv_put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<u64, Error>;
}

/// The longest accepted name, in bytes.
pub const MAX_NAME_LEN: usize = 1024;

/// Checks a name argument.
#[cfg(feature = "server")]
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::InvalidInput {
            what,
            reason: "must not be empty",
        });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Error::InvalidInput {
            what,
            reason: "longer than 1024 bytes",
        });
    }
    Ok(())
}

/// Behaviour every [`Store`] backend must show; each function is run against each backend.
#[cfg(all(test, feature = "server"))]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
pub(crate) mod conformance {
    use std::time::{Duration, SystemTime};

    use super::*;

    pub fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    pub fn version(n: u64, yaml: &str) -> SessionVersion {
        SessionVersion {
            version: n,
            yaml: yaml.to_owned(),
            signatures: vec![SessionSignature {
                signer: vec![1, 2, 3],
                signature: vec![n as u8; 64],
            }],
            hash: SessionHash::from_bytes([n as u8; 32]),
            created: t0() + Duration::from_secs(n),
        }
    }

    pub fn secret(bytes: &[u8]) -> StoredSecret {
        StoredSecret {
            value: SecretBytes::new(bytes.to_vec()),
            created: t0(),
        }
    }

    pub fn sessions(store: &dyn Store) {
        assert_eq!(store.session("a").unwrap(), None);
        store
            .append_session_version("a", None, version(1, "name: a\nversion: 1\n"))
            .unwrap();
        // Creating it again fails: it exists.
        let err = store
            .append_session_version("a", None, version(1, "other"))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Conflict {
                    table: "sessions",
                    ..
                }
            ),
            "{err:?}"
        );
        // An update naming the wrong predecessor fails.
        let err = store
            .append_session_version(
                "a",
                Some(&SessionHash::from_bytes([9; 32])),
                version(2, "v2"),
            )
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
        store
            .append_session_version(
                "a",
                Some(&SessionHash::from_bytes([1; 32])),
                version(2, "v2"),
            )
            .unwrap();
        store
            .append_session_version("b", None, version(1, "b1"))
            .unwrap();
        let a = store.session("a").unwrap().unwrap();
        assert_eq!(a.name, "a");
        assert_eq!(
            a.versions,
            vec![version(1, "name: a\nversion: 1\n"), version(2, "v2")]
        );
        assert_eq!(a.head().unwrap().hash, SessionHash::from_bytes([2; 32]));
        assert_eq!(store.session_names().unwrap(), vec!["a", "b"]);
        // Updating a session that does not exist fails.
        assert!(matches!(
            store.append_session_version(
                "c",
                Some(&SessionHash::from_bytes([1; 32])),
                version(2, "x")
            ),
            Err(Error::Conflict { .. })
        ));

        // Deleting removes the session's secrets too, and checks the head.
        store.secret_or_insert("a", "k", secret(b"ka")).unwrap();
        store.secret_or_insert("b", "k", secret(b"kb")).unwrap();
        assert!(matches!(
            store.delete_session("a", &SessionHash::from_bytes([1; 32]), t0()),
            Err(Error::Conflict { .. })
        ));
        assert_eq!(store.tombstone("a").unwrap(), None);
        let gone = t0() + Duration::from_secs(99);
        assert!(
            store
                .delete_session("a", &SessionHash::from_bytes([2; 32]), gone)
                .unwrap()
        );
        assert!(
            !store
                .delete_session("a", &SessionHash::from_bytes([2; 32]), gone)
                .unwrap()
        );
        assert_eq!(
            store.tombstone("a").unwrap(),
            Some(Tombstone {
                name: "a".into(),
                version: 2,
                hash: SessionHash::from_bytes([2; 32]),
                deleted: gone,
            })
        );
        assert_eq!(store.tombstone("b").unwrap(), None);
        assert_eq!(store.session("a").unwrap(), None);
        assert_eq!(store.secret("a", "k").unwrap(), None);
        assert_eq!(store.secret("b", "k").unwrap(), Some(secret(b"kb")));
        assert_eq!(store.session_names().unwrap(), vec!["b"]);

        assert!(matches!(
            store.session(""),
            Err(Error::InvalidInput {
                what: "session name",
                ..
            })
        ));
    }

    pub fn namespace(name: &str, version: u64) -> Namespace {
        Namespace {
            name: name.to_owned(),
            owners: vec![NamespaceOwner {
                name: "alice".into(),
                public_key: vec![0x30, version as u8],
            }],
            session_quota: 10 * version,
            version,
            created: t0(),
            updated: t0() + Duration::from_secs(version),
        }
    }

    pub fn namespaces(store: &dyn Store) {
        assert_eq!(store.admin_key().unwrap(), None);
        store.set_admin_key(&[0x30, 1, 2]).unwrap();
        assert_eq!(store.admin_key().unwrap(), Some(vec![0x30, 1, 2]));
        store.set_admin_key(&[0x30, 9]).unwrap();
        assert_eq!(store.admin_key().unwrap(), Some(vec![0x30, 9]));

        assert_eq!(store.namespace("demo").unwrap(), None);
        store.put_namespace(namespace("demo", 1), None).unwrap();
        // Creating it again fails; so does an update naming a stale version.
        assert!(matches!(
            store.put_namespace(namespace("demo", 1), None),
            Err(Error::Conflict {
                table: "namespaces",
                ..
            })
        ));
        assert!(matches!(
            store.put_namespace(namespace("demo", 3), Some(2)),
            Err(Error::Conflict { .. })
        ));
        store.put_namespace(namespace("demo", 2), Some(1)).unwrap();
        store.put_namespace(namespace("acme", 1), None).unwrap();
        assert_eq!(store.namespace("demo").unwrap(), Some(namespace("demo", 2)));
        assert_eq!(store.namespace_names().unwrap(), vec!["acme", "demo"]);
        assert!(matches!(
            store.delete_namespace("demo", 1),
            Err(Error::Conflict { .. })
        ));
        assert!(store.delete_namespace("demo", 2).unwrap());
        assert!(!store.delete_namespace("demo", 2).unwrap());
        assert_eq!(store.namespace_names().unwrap(), vec!["acme"]);
        assert!(matches!(
            store.namespace(""),
            Err(Error::InvalidInput { .. })
        ));
    }

    pub fn secrets(store: &dyn Store) {
        assert_eq!(store.secret("s", "db-password").unwrap(), None);
        let first = store
            .secret_or_insert("s", "db-password", secret(b"one"))
            .unwrap();
        assert_eq!(first, secret(b"one"));
        // The first writer wins.
        let again = store
            .secret_or_insert("s", "db-password", secret(b"two"))
            .unwrap();
        assert_eq!(again, secret(b"one"));
        store.secret_or_insert("s", "api", secret(b"")).unwrap();
        store
            .secret_or_insert("s2", "api", secret(b"other"))
            .unwrap();
        assert_eq!(store.secret_names("s").unwrap(), vec!["api", "db-password"]);
        assert_eq!(store.secret_names("s2").unwrap(), vec!["api"]);
        assert_eq!(store.secret_names("none").unwrap(), Vec::<String>::new());
        assert_eq!(store.secret("s", "api").unwrap(), Some(secret(b"")));
        assert_eq!(store.secret("s2", "api").unwrap(), Some(secret(b"other")));
    }

    pub fn cas_keys(store: &dyn Store) {
        let key = CasKey {
            id: "token-2026".into(),
            algorithm: KeyAlgorithm::Es256,
            private_key: SecretBytes::new(vec![0x42; 48]),
            public_key: vec![4; 65],
            created: t0(),
            not_after: Some(t0() + Duration::from_secs(86_400)),
        };
        store.insert_cas_key(key.clone()).unwrap();
        assert!(matches!(
            store.insert_cas_key(key.clone()),
            Err(Error::Conflict { .. })
        ));
        let other = CasKey {
            id: "ca-root".into(),
            algorithm: KeyAlgorithm::Ed25519,
            not_after: None,
            ..key.clone()
        };
        store.insert_cas_key(other.clone()).unwrap();
        assert_eq!(store.cas_key("token-2026").unwrap(), Some(key));
        assert_eq!(store.cas_key("ca-root").unwrap(), Some(other));
        assert_eq!(store.cas_key("absent").unwrap(), None);
    }

    pub fn kv(store: &dyn Store) {
        assert_eq!(store.kv_get("ns", "k").unwrap(), None);
        assert_eq!(store.kv_put("ns", "k", b"v1", Expect::Absent).unwrap(), 1);
        assert!(matches!(
            store.kv_put("ns", "k", b"x", Expect::Absent),
            Err(Error::Conflict { table: "kv", .. })
        ));
        assert!(matches!(
            store.kv_put("ns", "k", b"x", Expect::Version(7)),
            Err(Error::Conflict { .. })
        ));
        assert_eq!(
            store.kv_put("ns", "k", b"v2", Expect::Version(1)).unwrap(),
            2
        );
        assert_eq!(store.kv_put("ns", "k", b"v3", Expect::Any).unwrap(), 3);
        assert_eq!(store.kv_put("ns2", "k", b"w", Expect::Any).unwrap(), 1);
        let got = store.kv_get("ns", "k").unwrap().unwrap();
        assert_eq!(got.version, 3);
        assert_eq!(got.value.expose_secret(), b"v3");
        assert_eq!(
            store
                .kv_get("ns2", "k")
                .unwrap()
                .unwrap()
                .value
                .expose_secret(),
            b"w"
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn secret_types_redact_debug() {
        let secret = StoredSecret {
            value: SecretBytes::new(b"hunter2-hunter2".to_vec()),
            created: SystemTime::UNIX_EPOCH,
        };
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("15 bytes redacted"), "{shown}");

        let key = CasKey {
            id: "k".into(),
            algorithm: KeyAlgorithm::Es256,
            private_key: SecretBytes::new(vec![0xee; 32]),
            public_key: vec![0x04, 0x01],
            created: SystemTime::UNIX_EPOCH,
            not_after: None,
        };
        let shown = format!("{key:?}");
        assert!(!shown.contains("eeee") && !shown.contains("238"), "{shown}");
        assert!(shown.contains("0401"), "{shown}");

        let v = Versioned {
            version: 1,
            value: SecretBytes::new(b"topsecret".to_vec()),
        };
        assert!(!format!("{v:?}").contains("topsecret"));
    }

    #[cfg(feature = "server")]
    #[test]
    fn names_are_checked() {
        assert!(check_name("session name", "ok").is_ok());
        assert!(matches!(
            check_name("session name", ""),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            check_name("session name", &"x".repeat(MAX_NAME_LEN + 1)),
            Err(Error::InvalidInput { .. })
        ));
    }
}

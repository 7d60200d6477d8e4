//! [`FileStore`]: the embedded store, one `redb` file in the data directory, encrypted at rest.
//!
//! # Why redb
//!
//! redb is pure Rust (no C build), ACID, copy-on-write with checksummed commits, and by default
//! every commit is durable (`fsync`) before `commit()` returns: a killed or crashed CAS reopens at
//! its last committed transaction. It locks its file, so a second CAS process on the same data
//! directory is refused ([`Error::Locked`]).
//!
//! # On-disk format (version 3)
//!
//! The data directory (created with mode `0700` if missing) holds `store.redb`, plus the audit
//! log's files (see [`crate::audit`]). `store.redb` has these tables, every key and value a byte
//! string:
//!
//! | table | key | sealed plaintext |
//! | --- | --- | --- |
//! | `meta` | `format` | *(not sealed)* format version, `u32` big-endian, `3` |
//! | `meta` | `key_check` | the ASCII string `cloister-cas key check v1` |
//! | `meta` | `admin_key` | the operator's admin key, Ed25519 SPKI DER (absent until `cas init --admin-key`) |
//! | `sessions` | `H("sessions", name)` | JSON: `{name, versions: [{version, yaml, signatures: [{signer, signature}], hash, created}]}` |
//! | `secrets` | `H("secrets/session", session) ‖ H("secrets/name", session, name)` | fields: session, name, created, value |
//! | `cas_keys` | `H("cas_keys", id)` | fields: id, algorithm, public key, created, not-after, private key |
//! | `kv` | `H("kv", namespace, key)` | fields: namespace, key, version, value |
//! | `namespaces` | `H("namespaces", name)` | JSON: `{name, owners: [{name, public_key}], session_quota, version, created, updated}` |
//! | `tombstones` | `H("tombstones", name)` | JSON: `{name, version, hash, deleted}` |
//!
//! Opening an older store migrates it to version 3 in one transaction:
//!
//! - Version 2 had a `nonces` table (`H("nonces", nonce)` → fields: expiry) that no CAS used:
//!   the server keeps attestation nonces in memory. Migration deletes the table.
//! - Version 1 (before namespaces) had neither the `namespaces` and `tombstones` tables nor
//!   `admin_key`; migration creates the tables (and deletes `nonces`). Its sessions then belong
//!   to no namespace record until the operator runs `cloister cas init --admin-key` (see
//!   `CasState::init_admin`).
//!
//! - `H(label, parts…)` is HMAC-SHA256 under the [`KeyPurpose::StoreKeyHashing`] subkey over
//!   `label ‖ 0x00` followed by each part as a 4-byte big-endian length and its bytes. Names
//!   therefore never appear on disk; lookups hash the name, listings decrypt values (which
//!   carry the name). The secrets key starts with the session's hash so that one range scan finds
//!   a session's secrets.
//! - A sealed value is `0x01 ‖ nonce (12 bytes) ‖ AES-256-GCM ciphertext and tag` under the
//!   [`KeyPurpose::StoreEncryption`] subkey, with a fresh random nonce per write and the
//!   associated data `"cloister-cas/v1" ‖ 0x00 ‖ table ‖ 0x00 ‖ row key`: a value moved to
//!   another row or table fails authentication ([`Error::Corrupt`]). Random 96-bit nonces keep the
//!   collision risk negligible below 2³² writes per master key.
//! - "fields" is a sequence of byte strings each prefixed by a 4-byte big-endian length, times as
//!   8-byte seconds and 4-byte nanoseconds since the Unix epoch (an absent time is an empty field).
//! - Opening checks `format` ([`Error::UnsupportedFormat`]) and unseals `key_check`: a different
//!   master key fails there with [`Error::WrongMasterKey`] before anything else is read.
//!
//! What is not hidden: the number of rows per table, value sizes (YAML and secret lengths, to
//! within the framing), and when rows changed.
//!
//! [`KeyPurpose::StoreKeyHashing`]: crate::KeyPurpose::StoreKeyHashing
//! [`KeyPurpose::StoreEncryption`]: crate::KeyPurpose::StoreEncryption

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use rand_core::OsRng;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;
use crate::error::storage;
use crate::master_key::{KeyPurpose, MasterKey, Subkey};
use crate::store::{
    CasKey, Expect, KeyAlgorithm, Namespace, SecretBytes, Session, SessionHash, SessionVersion,
    Store, StoredSecret, Tombstone, Versioned, check_name, create_private_dir,
};

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "store.redb";

/// The on-disk format this build reads and writes.
pub const FORMAT_VERSION: u32 = 3;

/// The oldest format this build opens (and migrates to [`FORMAT_VERSION`]).
const OLDEST_FORMAT: u32 = 1;

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

const META: &str = "meta";
const SESSIONS: &str = "sessions";
const SECRETS: &str = "secrets";
/// Formats 1 and 2 only: dropped by the migration to format 3.
const NONCES: &str = "nonces";
const CAS_KEYS: &str = "cas_keys";
const KV: &str = "kv";
const NAMESPACES: &str = "namespaces";
const TOMBSTONES: &str = "tombstones";

const KEY_CHECK: &[u8] = b"cloister-cas key check v1";
const SEAL_VERSION: u8 = 1;
const NONCE_LEN: usize = 12;

/// The embedded [`Store`]: one redb file, every value sealed, every name hashed. See the
/// [module docs](self) for the format.
pub struct FileStore {
    db: Database,
    sealer: Sealer,
    path: PathBuf,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FileStore {
    /// Opens (or creates) the store in data directory `dir` under `key`.
    ///
    /// Fails with [`Error::WrongMasterKey`] if the store was created under another key, and with
    /// [`Error::Locked`] if another process has it open.
    #[tracing::instrument(skip_all, fields(dir = %dir.display()))]
    pub fn open(dir: &Path, key: &MasterKey) -> Result<Self, Error> {
        create_private_dir(dir)?;
        let path = dir.join(STORE_FILE);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => Error::Locked { path: path.clone() },
            other => storage(other),
        })?;
        let store = FileStore {
            db,
            sealer: Sealer::new(key),
            path,
        };
        store.initialise()?;
        tracing::debug!(master_key = %key.fingerprint(), "store opened");
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates the tables and the key check on first use; checks format and key afterwards.
    fn initialise(&self) -> Result<(), Error> {
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut meta = txn.open_table(def(META)).map_err(storage)?;
            let format = meta
                .get(b"format".as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            let check = meta
                .get(b"key_check".as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            match (format, check) {
                (None, None) => {
                    meta.insert(
                        b"format".as_slice(),
                        FORMAT_VERSION.to_be_bytes().as_slice(),
                    )
                    .map_err(storage)?;
                    let sealed = self.sealer.seal("meta", b"key_check", KEY_CHECK)?;
                    meta.insert(b"key_check".as_slice(), sealed.as_slice())
                        .map_err(storage)?;
                }
                (Some(format), Some(check)) => {
                    let found = <[u8; 4]>::try_from(format.as_slice())
                        .map(u32::from_be_bytes)
                        .map_err(|_| Error::Corrupt {
                            table: "meta",
                            reason: "format is not a 4-byte integer",
                        })?;
                    if !(OLDEST_FORMAT..=FORMAT_VERSION).contains(&found) {
                        return Err(Error::UnsupportedFormat {
                            found,
                            supported: FORMAT_VERSION,
                        });
                    }
                    match self.sealer.open("meta", b"key_check", &check) {
                        Ok(plain) if plain.as_slice() == KEY_CHECK => {}
                        _ => {
                            return Err(Error::WrongMasterKey {
                                path: self.path.clone(),
                            });
                        }
                    }
                    if found < FORMAT_VERSION {
                        // Version 1 → 3: the namespaces and tombstones tables are created below;
                        // versions 1 and 2 → 3: the unused nonces table goes. One transaction.
                        txn.delete_table(def(NONCES)).map_err(storage)?;
                        meta.insert(
                            b"format".as_slice(),
                            FORMAT_VERSION.to_be_bytes().as_slice(),
                        )
                        .map_err(storage)?;
                        tracing::info!(from = found, to = FORMAT_VERSION, "store migrated");
                    }
                }
                _ => {
                    return Err(Error::Corrupt {
                        table: "meta",
                        reason: "format and key check must both be present",
                    });
                }
            }
            for table in [SESSIONS, SECRETS, CAS_KEYS, KV, NAMESPACES, TOMBSTONES] {
                txn.open_table(def(table)).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)
    }

    /// Reads and unseals one row.
    fn read_row(
        &self,
        table: &'static str,
        key: &[u8],
    ) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
        let txn = self.db.begin_read().map_err(storage)?;
        let t = txn.open_table(def(table)).map_err(storage)?;
        let sealed = t.get(key).map_err(storage)?.map(|v| v.value().to_vec());
        sealed.map(|s| self.sealer.open(table, key, &s)).transpose()
    }

    /// Unseals every row of `table` whose key starts with `prefix`.
    fn read_prefix(
        &self,
        table: &'static str,
        prefix: &[u8],
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        let txn = self.db.begin_read().map_err(storage)?;
        let t = txn.open_table(def(table)).map_err(storage)?;
        let mut out = Vec::new();
        for row in t.range(prefix..).map_err(storage)? {
            let (k, v) = row.map_err(storage)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push(self.sealer.open(table, k.value(), v.value())?);
        }
        Ok(out)
    }

    fn session_key(&self, name: &str) -> [u8; 32] {
        self.sealer.hash("sessions", &[name.as_bytes()])
    }

    fn secret_prefix(&self, session: &str) -> [u8; 32] {
        self.sealer.hash("secrets/session", &[session.as_bytes()])
    }

    fn secret_key(&self, session: &str, name: &str) -> [u8; 64] {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&self.secret_prefix(session));
        key[32..].copy_from_slice(
            &self
                .sealer
                .hash("secrets/name", &[session.as_bytes(), name.as_bytes()]),
        );
        key
    }

    fn decode_session(&self, name: &str, plain: &[u8]) -> Result<Session, Error> {
        let session: Session = serde_json::from_slice(plain).map_err(|_| Error::Corrupt {
            table: "sessions",
            reason: "undecodable session record",
        })?;
        if session.name != name {
            return Err(Error::Corrupt {
                table: "sessions",
                reason: "record names another session",
            });
        }
        Ok(session)
    }

    fn decode_secret(plain: &[u8]) -> Result<(String, String, StoredSecret), Error> {
        let corrupt = || Error::Corrupt {
            table: "secrets",
            reason: "undecodable secret record",
        };
        let mut r = Fields::read(plain);
        let session = r.string().ok_or_else(corrupt)?;
        let name = r.string().ok_or_else(corrupt)?;
        let created = r.time().flatten().ok_or_else(corrupt)?;
        let value = r.bytes().ok_or_else(corrupt)?;
        r.end().ok_or_else(corrupt)?;
        Ok((
            session,
            name,
            StoredSecret {
                value: SecretBytes::new(value.to_vec()),
                created,
            },
        ))
    }

    fn encode_secret(
        session: &str,
        name: &str,
        secret: &StoredSecret,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let mut w = Fields::with_capacity(session.len() + name.len() + secret.value.len() + 32);
        w.put(session.as_bytes());
        w.put(name.as_bytes());
        w.time(Some(secret.created))?;
        w.put(secret.value.expose_secret());
        Ok(w.finish())
    }

    fn decode_cas_key(plain: &[u8]) -> Result<CasKey, Error> {
        let corrupt = || Error::Corrupt {
            table: "cas_keys",
            reason: "undecodable key record",
        };
        let mut r = Fields::read(plain);
        let id = r.string().ok_or_else(corrupt)?;
        let algorithm: KeyAlgorithm =
            serde_json::from_slice(r.bytes().ok_or_else(corrupt)?).map_err(|_| corrupt())?;
        let public_key = r.bytes().ok_or_else(corrupt)?.to_vec();
        let created = r.time().flatten().ok_or_else(corrupt)?;
        let not_after = r.time().ok_or_else(corrupt)?;
        let private_key = SecretBytes::new(r.bytes().ok_or_else(corrupt)?.to_vec());
        r.end().ok_or_else(corrupt)?;
        Ok(CasKey {
            id,
            algorithm,
            private_key,
            public_key,
            created,
            not_after,
        })
    }

    fn decode_kv(plain: &[u8]) -> Result<Versioned, Error> {
        let corrupt = || Error::Corrupt {
            table: "kv",
            reason: "undecodable kv record",
        };
        let mut r = Fields::read(plain);
        let _namespace = r.bytes().ok_or_else(corrupt)?;
        let _key = r.bytes().ok_or_else(corrupt)?;
        let version = r.u64().ok_or_else(corrupt)?;
        let value = SecretBytes::new(r.bytes().ok_or_else(corrupt)?.to_vec());
        r.end().ok_or_else(corrupt)?;
        Ok(Versioned { version, value })
    }
}

impl Store for FileStore {
    fn session(&self, name: &str) -> Result<Option<Session>, Error> {
        check_name("session name", name)?;
        self.read_row(SESSIONS, &self.session_key(name))?
            .map(|plain| self.decode_session(name, &plain))
            .transpose()
    }

    fn session_names(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for plain in self.read_prefix(SESSIONS, &[])? {
            let session: Session = serde_json::from_slice(&plain).map_err(|_| Error::Corrupt {
                table: "sessions",
                reason: "undecodable session record",
            })?;
            names.push(session.name);
        }
        names.sort();
        Ok(names)
    }

    #[tracing::instrument(skip_all, fields(session = name, version = version.version))]
    fn append_session_version(
        &self,
        name: &str,
        expected_head: Option<&SessionHash>,
        version: SessionVersion,
    ) -> Result<(), Error> {
        check_name("session name", name)?;
        let key = self.session_key(name);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(def(SESSIONS)).map_err(storage)?;
            let current = t
                .get(key.as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            let current = current
                .map(|sealed| self.sealer.open("sessions", &key, &sealed))
                .transpose()?
                .map(|plain| self.decode_session(name, &plain))
                .transpose()?;
            let found_head = current.as_ref().and_then(|s| s.head()).map(|v| v.hash);
            if found_head.as_ref() != expected_head {
                return Err(Error::Conflict {
                    table: "sessions",
                    expected: describe_head(expected_head),
                    found: describe_head(found_head.as_ref()),
                });
            }
            let mut session = current.unwrap_or_else(|| Session {
                name: name.to_owned(),
                versions: Vec::new(),
            });
            session.versions.push(version);
            let plain = Zeroizing::new(
                serde_json::to_vec(&session)
                    .map_err(|_| Error::Internal("a session record always serialises"))?,
            );
            let sealed = self.sealer.seal("sessions", &key, &plain)?;
            t.insert(key.as_slice(), sealed.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    #[tracing::instrument(skip_all, fields(session = name))]
    fn delete_session(
        &self,
        name: &str,
        expected_head: &SessionHash,
        at: SystemTime,
    ) -> Result<bool, Error> {
        check_name("session name", name)?;
        let key = self.session_key(name);
        let prefix = self.secret_prefix(name);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(def(SESSIONS)).map_err(storage)?;
            let current = t
                .get(key.as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            let Some(sealed) = current else {
                return Ok(false);
            };
            let plain = self.sealer.open("sessions", &key, &sealed)?;
            let session = self.decode_session(name, &plain)?;
            let found = session.head().map(|v| v.hash);
            if found.as_ref() != Some(expected_head) {
                return Err(Error::Conflict {
                    table: "sessions",
                    expected: describe_head(Some(expected_head)),
                    found: describe_head(found.as_ref()),
                });
            }
            t.remove(key.as_slice()).map_err(storage)?;
            let head = session.head().ok_or(Error::Corrupt {
                table: "sessions",
                reason: "a session record without versions",
            })?;
            let tombstone = Tombstone {
                name: name.to_owned(),
                version: head.version,
                hash: head.hash,
                deleted: at,
            };
            let row = self.sealer.hash("tombstones", &[name.as_bytes()]);
            let plain = serde_json::to_vec(&tombstone)
                .map_err(|_| Error::Internal("a tombstone always serialises"))?;
            let sealed = self.sealer.seal(TOMBSTONES, &row, &plain)?;
            txn.open_table(def(TOMBSTONES))
                .map_err(storage)?
                .insert(row.as_slice(), sealed.as_slice())
                .map_err(storage)?;
            let mut secrets = txn.open_table(def(SECRETS)).map_err(storage)?;
            let mut doomed = Vec::new();
            for row in secrets.range(prefix.as_slice()..).map_err(storage)? {
                let (k, _) = row.map_err(storage)?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                doomed.push(k.value().to_vec());
            }
            for k in doomed {
                secrets.remove(k.as_slice()).map_err(storage)?;
            }
        }
        txn.commit().map_err(storage)?;
        Ok(true)
    }

    fn tombstone(&self, name: &str) -> Result<Option<Tombstone>, Error> {
        check_name("session name", name)?;
        let row = self.sealer.hash("tombstones", &[name.as_bytes()]);
        let Some(plain) = self.read_row(TOMBSTONES, &row)? else {
            return Ok(None);
        };
        let t: Tombstone = serde_json::from_slice(&plain).map_err(|_| Error::Corrupt {
            table: "tombstones",
            reason: "undecodable tombstone record",
        })?;
        if t.name != name {
            return Err(Error::Corrupt {
                table: "tombstones",
                reason: "record names another session",
            });
        }
        Ok(Some(t))
    }

    fn admin_key(&self) -> Result<Option<Vec<u8>>, Error> {
        Ok(self
            .read_row(META, b"admin_key")?
            .map(|plain| plain.to_vec()))
    }

    fn set_admin_key(&self, spki_der: &[u8]) -> Result<(), Error> {
        if spki_der.is_empty() || spki_der.len() > MAX_KEY_LEN {
            return Err(Error::InvalidInput {
                what: "admin key",
                reason: "must be 1 to 1024 bytes of SPKI DER",
            });
        }
        let sealed = self.sealer.seal(META, b"admin_key", spki_der)?;
        let txn = self.db.begin_write().map_err(storage)?;
        txn.open_table(def(META))
            .map_err(storage)?
            .insert(b"admin_key".as_slice(), sealed.as_slice())
            .map_err(storage)?;
        txn.commit().map_err(storage)
    }

    fn namespace(&self, name: &str) -> Result<Option<Namespace>, Error> {
        check_name("namespace name", name)?;
        let row = self.sealer.hash("namespaces", &[name.as_bytes()]);
        self.read_row(NAMESPACES, &row)?
            .map(|plain| decode_namespace(Some(name), &plain))
            .transpose()
    }

    fn namespace_names(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for plain in self.read_prefix(NAMESPACES, &[])? {
            names.push(decode_namespace(None, &plain)?.name);
        }
        names.sort();
        Ok(names)
    }

    #[tracing::instrument(skip_all, fields(namespace = namespace.name, version = namespace.version))]
    fn put_namespace(
        &self,
        namespace: Namespace,
        expected_version: Option<u64>,
    ) -> Result<(), Error> {
        check_name("namespace name", &namespace.name)?;
        let row = self.sealer.hash("namespaces", &[namespace.name.as_bytes()]);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(def(NAMESPACES)).map_err(storage)?;
            let current = t
                .get(row.as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            let found = current
                .map(|sealed| self.sealer.open(NAMESPACES, &row, &sealed))
                .transpose()?
                .map(|plain| decode_namespace(Some(&namespace.name), &plain))
                .transpose()?
                .map(|n| n.version);
            if found != expected_version {
                let show =
                    |v: Option<u64>| v.map_or_else(|| "absent".into(), |v| format!("version {v}"));
                return Err(Error::Conflict {
                    table: "namespaces",
                    expected: show(expected_version),
                    found: show(found),
                });
            }
            let plain = serde_json::to_vec(&namespace)
                .map_err(|_| Error::Internal("a namespace always serialises"))?;
            let sealed = self.sealer.seal(NAMESPACES, &row, &plain)?;
            t.insert(row.as_slice(), sealed.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    fn delete_namespace(&self, name: &str, expected_version: u64) -> Result<bool, Error> {
        check_name("namespace name", name)?;
        let row = self.sealer.hash("namespaces", &[name.as_bytes()]);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(def(NAMESPACES)).map_err(storage)?;
            let current = t
                .get(row.as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            let Some(sealed) = current else {
                return Ok(false);
            };
            let plain = self.sealer.open(NAMESPACES, &row, &sealed)?;
            let found = decode_namespace(Some(name), &plain)?.version;
            if found != expected_version {
                return Err(Error::Conflict {
                    table: "namespaces",
                    expected: format!("version {expected_version}"),
                    found: format!("version {found}"),
                });
            }
            t.remove(row.as_slice()).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(true)
    }

    fn secret(&self, session: &str, name: &str) -> Result<Option<StoredSecret>, Error> {
        check_name("session name", session)?;
        check_name("secret name", name)?;
        self.read_row(SECRETS, &self.secret_key(session, name))?
            .map(|plain| Self::decode_secret(&plain).map(|(_, _, s)| s))
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(session = session, secret = name))]
    fn secret_or_insert(
        &self,
        session: &str,
        name: &str,
        candidate: StoredSecret,
    ) -> Result<StoredSecret, Error> {
        check_name("session name", session)?;
        check_name("secret name", name)?;
        let key = self.secret_key(session, name);
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(def(SECRETS)).map_err(storage)?;
            let existing = t
                .get(key.as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            if let Some(sealed) = existing {
                let plain = self.sealer.open("secrets", &key, &sealed)?;
                return Self::decode_secret(&plain).map(|(_, _, s)| s);
            }
            let plain = Self::encode_secret(session, name, &candidate)?;
            let sealed = self.sealer.seal("secrets", &key, &plain)?;
            t.insert(key.as_slice(), sealed.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        Ok(candidate)
    }

    fn secret_names(&self, session: &str) -> Result<Vec<String>, Error> {
        check_name("session name", session)?;
        let mut names = Vec::new();
        for plain in self.read_prefix(SECRETS, &self.secret_prefix(session))? {
            let (owner, name, _) = Self::decode_secret(&plain)?;
            if owner != session {
                return Err(Error::Corrupt {
                    table: "secrets",
                    reason: "record belongs to another session",
                });
            }
            names.push(name);
        }
        names.sort();
        Ok(names)
    }

    fn cas_key(&self, id: &str) -> Result<Option<CasKey>, Error> {
        check_name("key id", id)?;
        self.read_row(CAS_KEYS, &self.sealer.hash("cas_keys", &[id.as_bytes()]))?
            .map(|plain| Self::decode_cas_key(&plain))
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(key_id = %key.id))]
    fn insert_cas_key(&self, key: CasKey) -> Result<(), Error> {
        check_name("key id", &key.id)?;
        let row = self.sealer.hash("cas_keys", &[key.id.as_bytes()]);
        let algorithm = serde_json::to_vec(&key.algorithm)
            .map_err(|_| Error::Internal("a key algorithm always serialises"))?;
        let mut w = Fields::with_capacity(
            key.id.len() + algorithm.len() + key.public_key.len() + key.private_key.len() + 64,
        );
        w.put(key.id.as_bytes());
        w.put(&algorithm);
        w.put(&key.public_key);
        w.time(Some(key.created))?;
        w.time(key.not_after)?;
        w.put(key.private_key.expose_secret());
        let sealed = self.sealer.seal("cas_keys", &row, &w.finish())?;
        let txn = self.db.begin_write().map_err(storage)?;
        {
            let mut t = txn.open_table(def(CAS_KEYS)).map_err(storage)?;
            if t.get(row.as_slice()).map_err(storage)?.is_some() {
                return Err(Error::Conflict {
                    table: "cas_keys",
                    expected: "absent".into(),
                    found: "a key with this id".into(),
                });
            }
            t.insert(row.as_slice(), sealed.as_slice())
                .map_err(storage)?;
        }
        txn.commit().map_err(storage)
    }

    fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<Versioned>, Error> {
        check_name("kv namespace", namespace)?;
        check_name("kv key", key)?;
        let row = self
            .sealer
            .hash("kv", &[namespace.as_bytes(), key.as_bytes()]);
        self.read_row(KV, &row)?
            .map(|plain| Self::decode_kv(&plain))
            .transpose()
    }

    fn kv_put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expect: Expect,
    ) -> Result<u64, Error> {
        check_name("kv namespace", namespace)?;
        check_name("kv key", key)?;
        let row = self
            .sealer
            .hash("kv", &[namespace.as_bytes(), key.as_bytes()]);
        let txn = self.db.begin_write().map_err(storage)?;
        let version = {
            let mut t = txn.open_table(def(KV)).map_err(storage)?;
            let current = t
                .get(row.as_slice())
                .map_err(storage)?
                .map(|v| v.value().to_vec());
            let current = current
                .map(|sealed| {
                    self.sealer
                        .open("kv", &row, &sealed)
                        .and_then(|plain| Self::decode_kv(&plain))
                })
                .transpose()?
                .map(|v| v.version);
            let ok = match expect {
                Expect::Any => true,
                Expect::Absent => current.is_none(),
                Expect::Version(v) => current == Some(v),
            };
            if !ok {
                return Err(Error::Conflict {
                    table: "kv",
                    expected: match expect {
                        Expect::Any => "any".into(),
                        Expect::Absent => "absent".into(),
                        Expect::Version(v) => format!("version {v}"),
                    },
                    found: current.map_or_else(|| "absent".into(), |v| format!("version {v}")),
                });
            }
            let version = current.unwrap_or(0) + 1;
            let mut w = Fields::with_capacity(namespace.len() + key.len() + value.len() + 32);
            w.put(namespace.as_bytes());
            w.put(key.as_bytes());
            w.u64(version);
            w.put(value);
            let sealed = self.sealer.seal("kv", &row, &w.finish())?;
            t.insert(row.as_slice(), sealed.as_slice())
                .map_err(storage)?;
            version
        };
        txn.commit().map_err(storage)?;
        Ok(version)
    }
}

/// The longest admin key accepted (an Ed25519 SPKI is 44 bytes).
const MAX_KEY_LEN: usize = 1024;

fn decode_namespace(name: Option<&str>, plain: &[u8]) -> Result<Namespace, Error> {
    let ns: Namespace = serde_json::from_slice(plain).map_err(|_| Error::Corrupt {
        table: "namespaces",
        reason: "undecodable namespace record",
    })?;
    if name.is_some_and(|n| n != ns.name) {
        return Err(Error::Corrupt {
            table: "namespaces",
            reason: "record names another namespace",
        });
    }
    Ok(ns)
}

fn describe_head(head: Option<&SessionHash>) -> String {
    head.map_or_else(|| "no session".into(), |h| format!("head {h}"))
}

/// The definition of a table: every table maps byte strings to byte strings.
fn def(name: &'static str) -> Table {
    TableDefinition::new(name)
}

/// AES-256-GCM sealing and HMAC key hashing under the store's two subkeys.
struct Sealer {
    cipher: Aes256Gcm,
    hash_key: Subkey,
}

impl Sealer {
    fn new(master: &MasterKey) -> Self {
        let enc = master.derive(KeyPurpose::StoreEncryption);
        Sealer {
            cipher: Aes256Gcm::new(enc.as_ref().into()),
            hash_key: master.derive(KeyPurpose::StoreKeyHashing),
        }
    }

    fn aad(table: &str, key: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(32 + table.len() + key.len());
        aad.extend_from_slice(b"cloister-cas/v1\0");
        aad.extend_from_slice(table.as_bytes());
        aad.push(0);
        aad.extend_from_slice(key);
        aad
    }

    fn seal(&self, table: &str, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, Error> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plain,
                    aad: &Self::aad(table, key),
                },
            )
            .map_err(|_| Error::Internal("AES-GCM encryption of a stored value failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + ct.len());
        out.push(SEAL_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    fn open(
        &self,
        table: &'static str,
        key: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let (&version, rest) = sealed.split_first().ok_or(Error::Corrupt {
            table,
            reason: "empty value",
        })?;
        if version != SEAL_VERSION || rest.len() < NONCE_LEN {
            return Err(Error::Corrupt {
                table,
                reason: "unknown sealing version or short value",
            });
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: &Self::aad(table, key),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| Error::Corrupt {
                table,
                reason: "authentication failed (modified, moved, or sealed under another key)",
            })
    }

    /// `H(label, parts…)`: see the module docs.
    fn hash(&self, label: &str, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail on our 32 bytes.
        let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(self.hash_key.as_ref()) else {
            unreachable!("HMAC takes keys of any length")
        };
        mac.update(label.as_bytes());
        mac.update(&[0]);
        for part in parts {
            mac.update(&(part.len() as u32).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

/// Length-prefixed fields: the plaintext encoding of records holding secrets, written into one
/// pre-sized buffer that is wiped on drop (no intermediate copies).
struct Fields {
    buf: Zeroizing<Vec<u8>>,
}

impl Fields {
    fn with_capacity(n: usize) -> Self {
        Fields {
            buf: Zeroizing::new(Vec::with_capacity(n)),
        }
    }

    fn put(&mut self, bytes: &[u8]) {
        self.buf
            .extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(bytes);
    }

    fn u64(&mut self, v: u64) {
        self.put(&v.to_be_bytes());
    }

    fn time(&mut self, t: Option<SystemTime>) -> Result<(), Error> {
        match t {
            None => self.put(&[]),
            Some(t) => {
                let d =
                    t.duration_since(SystemTime::UNIX_EPOCH)
                        .map_err(|_| Error::InvalidInput {
                            what: "time",
                            reason: "before 1970",
                        })?;
                let mut b = [0u8; 12];
                b[..8].copy_from_slice(&d.as_secs().to_be_bytes());
                b[8..].copy_from_slice(&d.subsec_nanos().to_be_bytes());
                self.put(&b);
            }
        }
        Ok(())
    }

    fn finish(self) -> Zeroizing<Vec<u8>> {
        self.buf
    }

    fn read(buf: &[u8]) -> FieldReader<'_> {
        FieldReader { rest: buf }
    }
}

struct FieldReader<'a> {
    rest: &'a [u8],
}

impl<'a> FieldReader<'a> {
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.rest.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (field, rest) = rest.split_at(len);
        self.rest = rest;
        Some(field)
    }

    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.bytes()?.try_into().ok()?))
    }

    /// `Some(None)` for an absent time, `None` when undecodable.
    fn time(&mut self) -> Option<Option<SystemTime>> {
        let b = self.bytes()?;
        if b.is_empty() {
            return Some(None);
        }
        let b: [u8; 12] = b.try_into().ok()?;
        let secs = u64::from_be_bytes(b[..8].try_into().ok()?);
        let nanos = u32::from_be_bytes(b[8..].try_into().ok()?);
        if nanos >= 1_000_000_000 {
            return None;
        }
        SystemTime::UNIX_EPOCH
            .checked_add(Duration::new(secs, nanos))
            .map(Some)
    }

    fn end(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use crate::store::conformance;
    use redb::TableHandle;

    fn open(dir: &Path, key: &MasterKey) -> FileStore {
        FileStore::open(dir, key).unwrap()
    }

    #[test]
    fn conformance_sessions() {
        let dir = tempfile::tempdir().unwrap();
        conformance::sessions(&open(dir.path(), &MasterKey::generate()));
    }

    #[test]
    fn conformance_secrets() {
        let dir = tempfile::tempdir().unwrap();
        conformance::secrets(&open(dir.path(), &MasterKey::generate()));
    }

    #[test]
    fn conformance_cas_keys() {
        let dir = tempfile::tempdir().unwrap();
        conformance::cas_keys(&open(dir.path(), &MasterKey::generate()));
    }

    #[test]
    fn conformance_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        conformance::namespaces(&open(dir.path(), &MasterKey::generate()));
    }

    #[test]
    fn tombstones_and_namespaces_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        {
            let store = open(dir.path(), &key);
            store
                .append_session_version("ns/s", None, conformance::version(1, "y"))
                .unwrap();
            store
                .delete_session("ns/s", &SessionHash::from_bytes([1; 32]), conformance::t0())
                .unwrap();
            store
                .put_namespace(conformance::namespace("ns", 1), None)
                .unwrap();
            store.set_admin_key(&[0x30, 7]).unwrap();
        }
        let store = open(dir.path(), &key);
        let t = store.tombstone("ns/s").unwrap().unwrap();
        assert_eq!((t.version, t.hash), (1, SessionHash::from_bytes([1; 32])));
        assert_eq!(
            store.namespace("ns").unwrap(),
            Some(conformance::namespace("ns", 1))
        );
        assert_eq!(store.admin_key().unwrap(), Some(vec![0x30, 7]));
    }

    /// Rewrites an open store into the shape an older build left: `format` set to `format`,
    /// a `nonces` table holding one sealed row as format 2 wrote it (`H("nonces", nonce)` →
    /// sealed fields: expiry), and for format 1 no `namespaces` or `tombstones` table.
    fn make_old_format(store: &FileStore, format: u32) {
        let txn = store.db.begin_write().unwrap();
        txn.open_table(def(META))
            .unwrap()
            .insert(b"format".as_slice(), format.to_be_bytes().as_slice())
            .unwrap();
        {
            let row = store.sealer.hash("nonces", &[b"a durable nonce"]);
            let mut w = Fields::with_capacity(16);
            w.time(Some(conformance::t0())).unwrap();
            let sealed = store.sealer.seal(NONCES, &row, &w.finish()).unwrap();
            txn.open_table(def(NONCES))
                .unwrap()
                .insert(row.as_slice(), sealed.as_slice())
                .unwrap();
        }
        if format == 1 {
            txn.delete_table(def(NAMESPACES)).unwrap();
            txn.delete_table(def(TOMBSTONES)).unwrap();
        }
        txn.commit().unwrap();
    }

    /// The store's `format` and whether it still has a `nonces` table.
    fn format_and_nonces_table(store: &FileStore) -> (u32, bool) {
        let txn = store.db.begin_read().unwrap();
        let format = txn
            .open_table(def(META))
            .unwrap()
            .get(b"format".as_slice())
            .unwrap()
            .unwrap()
            .value()
            .to_vec();
        let tables: Vec<String> = txn
            .list_tables()
            .unwrap()
            .map(|t| t.name().to_owned())
            .collect();
        (
            u32::from_be_bytes(format.try_into().unwrap()),
            tables.iter().any(|t| t == NONCES),
        )
    }

    /// A store written by the previous build (format 2, with the unused durable `nonces`
    /// table) opens, keeps everything else and is format 3 without that table afterwards.
    #[test]
    fn a_format_2_store_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        {
            let store = open(dir.path(), &key);
            store
                .append_session_version("ns/app", None, conformance::version(1, "y"))
                .unwrap();
            store
                .secret_or_insert("ns/app", "k", conformance::secret(b"v"))
                .unwrap();
            store
                .put_namespace(conformance::namespace("ns", 1), None)
                .unwrap();
            store
                .kv_put("audit-readers", "gone", b"[]", Expect::Absent)
                .unwrap();
            make_old_format(&store, 2);
            assert_eq!(format_and_nonces_table(&store), (2, true));
        }
        let store = open(dir.path(), &key);
        assert_eq!(format_and_nonces_table(&store), (FORMAT_VERSION, false));
        assert_eq!(store.session_names().unwrap(), vec!["ns/app"]);
        assert_eq!(
            store.secret("ns/app", "k").unwrap(),
            Some(conformance::secret(b"v"))
        );
        assert_eq!(
            store.namespace("ns").unwrap(),
            Some(conformance::namespace("ns", 1))
        );
        assert_eq!(
            store
                .kv_get("audit-readers", "gone")
                .unwrap()
                .unwrap()
                .version,
            1
        );
        // Opening again is a no-op.
        drop(store);
        let store = open(dir.path(), &key);
        assert_eq!(format_and_nonces_table(&store), (FORMAT_VERSION, false));
    }

    /// A store written by a build before namespaces (format 1: no `namespaces` or
    /// `tombstones` table, a `nonces` table) opens, keeps its sessions and is format 3
    /// afterwards.
    #[test]
    fn a_format_1_store_is_migrated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        {
            let store = open(dir.path(), &key);
            store
                .append_session_version("old/app", None, conformance::version(1, "y"))
                .unwrap();
            make_old_format(&store, 1);
        }
        let store = open(dir.path(), &key);
        assert_eq!(format_and_nonces_table(&store), (FORMAT_VERSION, false));
        assert_eq!(store.session_names().unwrap(), vec!["old/app"]);
        assert_eq!(store.namespace_names().unwrap(), Vec::<String>::new());
        assert_eq!(store.admin_key().unwrap(), None);
        store
            .delete_session(
                "old/app",
                &SessionHash::from_bytes([1; 32]),
                conformance::t0(),
            )
            .unwrap();
        assert!(store.tombstone("old/app").unwrap().is_some());
    }

    #[test]
    fn conformance_kv() {
        let dir = tempfile::tempdir().unwrap();
        conformance::kv(&open(dir.path(), &MasterKey::generate()));
    }

    #[test]
    fn reopen_keeps_everything_and_wrong_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::from_bytes(Zeroizing::new([5u8; 32]));
        {
            let store = open(dir.path(), &key);
            store
                .append_session_version("s", None, conformance::version(1, "y"))
                .unwrap();
            store
                .secret_or_insert("s", "k", conformance::secret(b"v"))
                .unwrap();
        }
        let err = FileStore::open(dir.path(), &MasterKey::generate()).unwrap_err();
        assert!(matches!(err, Error::WrongMasterKey { .. }), "{err:?}");
        let store = open(dir.path(), &key);
        assert_eq!(
            store.session("s").unwrap().unwrap().versions,
            vec![conformance::version(1, "y")]
        );
        assert_eq!(
            store.secret("s", "k").unwrap(),
            Some(conformance::secret(b"v"))
        );
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let _first = open(dir.path(), &key);
        let err = FileStore::open(dir.path(), &key).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    }

    #[test]
    fn moved_value_fails_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &MasterKey::generate());
        store
            .secret_or_insert("s", "a", conformance::secret(b"A"))
            .unwrap();
        store
            .secret_or_insert("s", "b", conformance::secret(b"B"))
            .unwrap();
        // Copy the sealed value of `a` over the row of `b`, as an attacker with write access to
        // the file could.
        let (ka, kb) = (store.secret_key("s", "a"), store.secret_key("s", "b"));
        let txn = store.db.begin_write().unwrap();
        {
            let mut t = txn.open_table(def(SECRETS)).unwrap();
            let va = t.get(ka.as_slice()).unwrap().unwrap().value().to_vec();
            t.insert(kb.as_slice(), va.as_slice()).unwrap();
        }
        txn.commit().unwrap();
        assert!(matches!(
            store.secret("s", "b"),
            Err(Error::Corrupt {
                table: "secrets",
                ..
            })
        ));
        assert_eq!(
            store.secret("s", "a").unwrap(),
            Some(conformance::secret(b"A"))
        );
    }

    #[test]
    fn unsupported_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        {
            let store = open(dir.path(), &key);
            let txn = store.db.begin_write().unwrap();
            txn.open_table(def(META))
                .unwrap()
                .insert(b"format".as_slice(), 4u32.to_be_bytes().as_slice())
                .unwrap();
            txn.commit().unwrap();
        }
        assert!(matches!(
            FileStore::open(dir.path(), &key),
            Err(Error::UnsupportedFormat {
                found: 4,
                supported: 3
            })
        ));
    }

    #[test]
    fn fields_round_trip_and_reject_garbage() {
        let mut w = Fields::with_capacity(8);
        w.put(b"abc");
        w.u64(7);
        w.time(None).unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::new(12, 345);
        w.time(Some(t)).unwrap();
        let buf = w.finish();
        let mut r = Fields::read(&buf);
        assert_eq!(r.bytes(), Some(&b"abc"[..]));
        assert_eq!(r.u64(), Some(7));
        assert_eq!(r.time(), Some(None));
        assert_eq!(r.time(), Some(Some(t)));
        assert_eq!(r.end(), Some(()));
        let mut short = Fields::read(&[0, 0, 0, 9, 1]);
        assert_eq!(short.bytes(), None);
    }

    #[test]
    fn debug_shows_no_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), &MasterKey::generate());
        let shown = format!("{store:?}");
        assert!(shown.starts_with("FileStore { path:"), "{shown}");
        assert!(!shown.contains("cipher") && !shown.contains("hash_key"));
    }
}

//! The audit log: append-only, hash-chained, signed, and verifiable offline.
//!
//! Every session change, every attestation (passed or refused, with the reasons) and every release
//! of secrets is appended here before the CAS answers. The log holds names, hashes and reasons —
//! never a secret: [`Event`] has no field for bytes, and principals are key digests
//! ([`key_digest`]). Callers must keep secret values out of `reasons` too.
//!
//! # What the log records, and what it folds
//!
//! Every event is recorded, with two bounds so that a caller cannot make the log (and its
//! `fsync`s) grow faster than the CAS's work:
//!
//! - Each reason is at most [`MAX_REASON_CHARS`] characters (longer ones are cut on a character
//!   boundary and end in `…`), and an entry holds at most [`MAX_REASONS`] reasons (the last then
//!   says how many more were left out). [`Event::reason`] applies both.
//! - Repeated refused attestations are folded. The first refusal of a kind is appended at once,
//!   with every reason. A refusal identical to it — same session version, same service (all
//!   refusals naming a service the session does not have count as one), same set of failed rule
//!   ids — within the next 60 s is not appended again: the CAS counts it, and appends one
//!   `attestation_refused_repeated` entry with the count, the time span, the entry it repeats and
//!   the first few principals, when the window is over (at the next audited event or
//!   attestation after it) or when another event for the same session is recorded (so the log
//!   stays in order). A flood of identical refusals therefore costs O(1) appends per window
//!   whatever the callers' keys, while no distinct refusal is ever delayed. The CAS tracks a
//!   bounded number of kinds; when full, refusals are appended one by one again. Counts not yet
//!   appended are lost if the CAS stops, never the first refusal of a kind.
//! - A refused session change (`session_change_refused`) is recorded only when someone entitled
//!   to change the session asked for it: an update or deletion carrying at least one valid
//!   signature of an owner of the session's current version, or a creation whose request an
//!   owner of the session's namespace signed. The same refusal without one (unsigned, signed by
//!   a stranger, by a key that is not an owner of the namespace) is answered with its rule id
//!   and not recorded: it changed nothing, and recording it would let anyone write fsynced
//!   entries into any session's stream without limit. Such a caller learns only that no owner
//!   approved the change (`unsigned`, `approvals`), never the session's head, version or owners.
//!
//! # Files (in the data directory)
//!
//! - `audit.log`: one JSON object per line ([`Entry`]), fields in this order, absent options and
//!   empty lists omitted: `seq` (1, 2, …), `time` (RFC 3339, milliseconds, UTC), `kind`
//!   ([`EventKind`], snake case), `session`, `version`, `session_hash`, `service`, `principal`,
//!   `released`, `reasons`, `prev_hash`, `hash`, `signature`. A line is valid only in exactly
//!   this canonical form (re-serialising it gives the same bytes).
//! - `audit.head`: the signed head, `{"seq":N,"hash":"…","signature":"…"}`: the last entry
//!   acknowledged to a caller. Replaced atomically (write `audit.head.tmp`, `fsync`, rename,
//!   `fsync` the directory) after every append, so that truncation at an entry boundary is
//!   detected.
//! - `audit.pub`: the log's public key (SEC1 compressed point, hex), written for convenience.
//!   A verifier should pin the key from elsewhere (the CAS API, or derive it from the master
//!   key); a key read from the same directory as the log proves nothing against someone who can
//!   rewrite that directory.
//!
//! # Hashes and signatures
//!
//! `hash` = SHA-256 over the canonical encoding of the entry without `hash` and `signature`:
//! the ASCII tag `cloister-audit-entry-v1` and a zero byte, `seq` as 8 bytes big-endian, then each
//! field in the order above as a 4-byte big-endian length and its UTF-8 bytes (an option as one
//! byte `0`/`1` then the value; a list as a 4-byte count then its items; `version` as 8 bytes),
//! ending with `prev_hash` (hex text). The first entry's `prev_hash` is 64 zeros. `signature` is
//! ECDSA P-256 / SHA-256 (low-S, `r ‖ s`, hex) over the 32 hash bytes. The head's signature covers
//! `cloister-audit-head-v1`, a zero byte, `seq` (8 bytes) and `hash` (hex text).
//!
//! The signing key is derived from the master key ([`AuditSigner::from_master_key`]: HKDF
//! `info` = `cloister-cas/v1/audit-signing` and a counter byte, retried in the rare case the
//! output is not a valid P-256 scalar), so it survives a rebuilt store and needs no storage.
//!
//! # Durability and crashes
//!
//! [`AuditLog::append`] writes the line, `fsync`s the log, then replaces the head; it returns only
//! after both are durable.
//!
//! Appends are *group committed*: appenders that arrive while a batch is being written queue
//! up, and the next one to find the log idle writes every queued entry with one `write`, one
//! `fsync` and one head replacement, then wakes them. Each appender still returns only after the
//! `fsync` and the head that cover its own entry (no acknowledged entry can be lost), and a
//! failed batch fails every appender in it; but N concurrent appends cost one round of `fsync`s
//! instead of N. [`AuditLog::append_all`] appends several events as adjacent entries in one
//! batch. A crash can leave (a) a partial last line, or (b) a complete last
//! entry the head does not cover yet. Both are writes that were never acknowledged:
//! [`AuditLog::open`] truncates (a) and advances the head over (b), reporting both in
//! [`Recovery`]; [`verify`] tolerates both and reports them in [`Summary`]. Anything else is
//! tampering (or damage) and fails with a specific [`AuditError`].
//!
//! # Reading without loading the log
//!
//! Nothing here holds the log in memory. [`verify`] and [`AuditLog::open`] check it in one
//! streaming pass (line by line, O(1) state; a second pass only to classify a broken chain
//! link), and `open` builds a sparse index on the way: the offset of every [`INDEX_EVERY`]th
//! entry, extended by each append. [`AuditLog::read`] seeks with it and streams a bounded page
//! (a limit of entries kept and of bytes read, then a cursor); [`AuditLog::verify`] continues
//! from where its previous call stopped.
//!
//! # What verification detects, and what it cannot
//!
//! See [`AuditError`] for the variants and their exit codes. The head is only a local
//! checkpoint: someone who can rewrite the directory can roll back log *and* head together to an
//! earlier consistent state (or delete both), which no local check can tell from the past.
//! Publishing the head (the CAS API serves it) to an outside monitor closes that gap.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
use crate::master_key::{KeyPurpose, MasterKey};
use crate::store::SessionHash;
use crate::store::create_private_dir;

/// The log's file name in the data directory.
pub const LOG_FILE: &str = "audit.log";
/// The signed head's file name in the data directory.
pub const HEAD_FILE: &str = "audit.head";
/// The public key's file name in the data directory.
pub const PUBLIC_KEY_FILE: &str = "audit.pub";
const HEAD_TMP_FILE: &str = "audit.head.tmp";

const ENTRY_TAG: &[u8] = b"cloister-audit-entry-v1\0";
const HEAD_TAG: &[u8] = b"cloister-audit-head-v1\0";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// The sparse index keeps the byte offset of every this-many-th entry (seq 1, 257, 513, …).
pub const INDEX_EVERY: u64 = 256;

/// What happened. Serialised in snake case (`session_created`, …).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A session was created.
    SessionCreated,
    /// A new version of a session was accepted.
    SessionUpdated,
    /// A session was deleted.
    SessionDeleted,
    /// A session change was refused (bad signature, wrong predecessor, invalid policy).
    SessionChangeRefused,
    /// A workload's evidence satisfied its session's policy.
    AttestationPassed,
    /// A workload's evidence was refused; `reasons` says which rules failed.
    AttestationRefused,
    /// Refusals identical to an earlier `attestation_refused` entry were counted instead of
    /// appended; `reasons` says how many, when, and which entry they repeat (see the module docs).
    AttestationRefusedRepeated,
    /// The CAS generated a secret for a session (its name only).
    SecretGenerated,
    /// Secrets, keys or configuration were released to a workload (their names in `released`).
    SecretReleased,
    /// The CAS created one of its own signing keys.
    KeyCreated,
    /// The operator set the admin key (`cas init --admin-key`); `principal` is its digest.
    AdminKeySet,
    /// A namespace was created (by the admin key, or by the migration of an older store).
    NamespaceCreated,
    /// A namespace's owners or quota changed.
    NamespaceUpdated,
    /// An empty namespace was deleted.
    NamespaceDeleted,
    /// A namespace change was refused.
    NamespaceChangeRefused,
}

impl EventKind {
    /// The snake-case name used in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SessionCreated => "session_created",
            EventKind::SessionUpdated => "session_updated",
            EventKind::SessionDeleted => "session_deleted",
            EventKind::SessionChangeRefused => "session_change_refused",
            EventKind::AttestationPassed => "attestation_passed",
            EventKind::AttestationRefused => "attestation_refused",
            EventKind::AttestationRefusedRepeated => "attestation_refused_repeated",
            EventKind::SecretGenerated => "secret_generated",
            EventKind::SecretReleased => "secret_released",
            EventKind::KeyCreated => "key_created",
            EventKind::AdminKeySet => "admin_key_set",
            EventKind::NamespaceCreated => "namespace_created",
            EventKind::NamespaceUpdated => "namespace_updated",
            EventKind::NamespaceDeleted => "namespace_deleted",
            EventKind::NamespaceChangeRefused => "namespace_change_refused",
        }
    }
}

/// The SHA-256 digest of a public key (say, a workload's SPKI DER), hex: how the log names a
/// principal.
pub fn key_digest(public_key: &[u8]) -> String {
    hex::encode(Sha256::digest(public_key))
}

/// The longest reason an entry records, in characters (see the module docs).
pub const MAX_REASON_CHARS: usize = 256;

/// The most reasons an entry records (see the module docs).
pub const MAX_REASONS: usize = 32;

/// `reason`, cut to [`MAX_REASON_CHARS`] characters on a character boundary (ending in `…`).
pub fn cap_reason(mut reason: String) -> String {
    if let Some((at, _)) = reason.char_indices().nth(MAX_REASON_CHARS) {
        let keep = reason
            .char_indices()
            .nth(MAX_REASON_CHARS - 1)
            .map_or(at, |(i, _)| i);
        reason.truncate(keep);
        reason.push('…');
    }
    reason
}

/// An event to append: its kind and subject. Built with [`Event::new`] and the setters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The session concerned.
    pub session: Option<String>,
    /// The session version concerned.
    pub version: Option<u64>,
    /// The session version's hash.
    pub session_hash: Option<SessionHash>,
    /// The service (within the session) concerned.
    pub service: Option<String>,
    /// Who: a key digest ([`key_digest`]) or an identity name; never a secret.
    pub principal: Option<String>,
    /// Names of the secrets, keys or files released; never their values.
    pub released: Vec<String>,
    /// Why (for refusals: which rules failed, with expected and found values that are not secret).
    /// Add them with [`Event::reason`], which bounds them.
    pub reasons: Vec<String>,
    /// Reasons left out beyond [`MAX_REASONS`].
    omitted: usize,
}

impl Event {
    /// An event of `kind` with no subject yet.
    pub fn new(kind: EventKind) -> Self {
        Event {
            kind,
            session: None,
            version: None,
            session_hash: None,
            service: None,
            principal: None,
            released: Vec::new(),
            reasons: Vec::new(),
            omitted: 0,
        }
    }

    /// Sets the session.
    pub fn session(mut self, name: impl Into<String>) -> Self {
        self.session = Some(name.into());
        self
    }

    /// Sets the session version.
    pub fn version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    /// Sets the session version's hash.
    pub fn session_hash(mut self, hash: SessionHash) -> Self {
        self.session_hash = Some(hash);
        self
    }

    /// Sets the service.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Sets the principal (a key digest or identity name).
    pub fn principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Adds the name of a released item.
    pub fn released(mut self, name: impl Into<String>) -> Self {
        self.released.push(name.into());
        self
    }

    /// Adds a reason, cut to [`MAX_REASON_CHARS`]; beyond [`MAX_REASONS`] reasons, the last
    /// one only counts those left out.
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        if self.reasons.len() < MAX_REASONS {
            self.reasons.push(cap_reason(reason.into()));
        } else {
            // The last slot's own reason is left out too.
            self.omitted += 1;
            self.reasons[MAX_REASONS - 1] =
                format!("… and {} more reasons not recorded", self.omitted + 1);
        }
        self
    }
}

/// One line of the log, exactly as stored (hex and times as text).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When it was appended (RFC 3339, milliseconds, UTC).
    pub time: String,
    /// The [`EventKind`] in snake case (text, so that older verifiers accept newer kinds).
    pub kind: String,
    /// The session concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// The session version concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// The session version's hash (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_hash: Option<String>,
    /// The service concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Who (a key digest or identity name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    /// Names of released items.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub released: Vec<String>,
    /// Reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<String>,
    /// The previous entry's `hash` (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 of this entry's canonical encoding (hex).
    pub hash: String,
    /// ECDSA P-256 signature over `hash` (hex `r ‖ s`).
    pub signature: String,
}

impl Entry {
    /// The hash of the canonical encoding (see the module docs).
    fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(ENTRY_TAG);
        h.update(self.seq.to_be_bytes());
        let text = |h: &mut Sha256, s: &str| {
            h.update((s.len() as u32).to_be_bytes());
            h.update(s.as_bytes());
        };
        let opt = |h: &mut Sha256, s: &Option<String>| match s {
            None => h.update([0]),
            Some(s) => {
                h.update([1]);
                text(h, s);
            }
        };
        let list = |h: &mut Sha256, items: &[String]| {
            h.update((items.len() as u32).to_be_bytes());
            for item in items {
                text(h, item);
            }
        };
        text(&mut h, &self.time);
        text(&mut h, &self.kind);
        opt(&mut h, &self.session);
        match self.version {
            None => h.update([0]),
            Some(v) => {
                h.update([1]);
                h.update(v.to_be_bytes());
            }
        }
        opt(&mut h, &self.session_hash);
        opt(&mut h, &self.service);
        opt(&mut h, &self.principal);
        list(&mut h, &self.released);
        list(&mut h, &self.reasons);
        text(&mut h, &self.prev_hash);
        h.finalize().into()
    }
}

/// The signed head: the last acknowledged entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    seq: u64,
    hash: String,
    signature: String,
}

fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_TAG.len() + 8 + hash.len());
    m.extend_from_slice(HEAD_TAG);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m
}

/// Why an audit log failed verification. Each variant has its own process exit code
/// ([`AuditError::exit_code`]), which `cloister audit verify` uses:
///
/// | exit code | variant | meaning |
/// | --- | --- | --- |
/// | 0 | — | the log verifies |
/// | 10 | [`Modified`](AuditError::Modified) | an entry's bytes, hash, signature or chain link do not verify |
/// | 11 | [`Removed`](AuditError::Removed) | a gap in `seq`: entries were deleted |
/// | 12 | [`Reordered`](AuditError::Reordered) | `seq` goes backwards or repeats, or an entry links to another out of order |
/// | 13 | [`Truncated`](AuditError::Truncated) | the signed head covers more entries than the log holds |
/// | 14 | [`Head`](AuditError::Head) | the signed head is missing, malformed or not signed by the given key |
/// | 2 | [`Io`](AuditError::Io) | the files could not be read (an operational error, not a verdict) |
///
/// Checks run in this order, and the first failure is reported: the head's signature; each
/// entry's form, hash and signature (in file order); ordering over the whole log; gaps; chain
/// links; finally the head against the last entries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Entry `seq` does not verify: `what` says which check failed.
    #[error("audit entry {seq} was modified: {what}")]
    Modified {
        /// The entry's `seq` (for an unparseable line: the `seq` it should have had).
        seq: u64,
        /// Which check failed.
        what: &'static str,
    },
    /// Entries after `after_seq` were removed; the next entry present is `next_seq`.
    #[error("audit entries were removed after entry {after_seq} (next present: {next_seq})")]
    Removed {
        /// The last entry before the gap (0: the log's start).
        after_seq: u64,
        /// The first entry after the gap.
        next_seq: u64,
    },
    /// Entry `seq` is out of order.
    #[error("audit entry {seq} is out of order")]
    Reordered {
        /// The entry found out of order.
        seq: u64,
    },
    /// The signed head says the log had `head_seq` entries; it ends at `last_seq`.
    #[error(
        "audit log truncated: the signed head covers entry {head_seq}, the log ends at {last_seq}"
    )]
    Truncated {
        /// The head's `seq`.
        head_seq: u64,
        /// The last complete entry present (0: none).
        last_seq: u64,
    },
    /// The signed head cannot be trusted.
    #[error("audit head ({HEAD_FILE}) {reason}")]
    Head {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the log failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl AuditError {
    /// The process exit code for this failure (see the table on [`AuditError`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            AuditError::Modified { .. } => 10,
            AuditError::Removed { .. } => 11,
            AuditError::Reordered { .. } => 12,
            AuditError::Truncated { .. } => 13,
            AuditError::Head { .. } => 14,
            AuditError::Io { .. } => 2,
        }
    }

    fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        AuditError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Complete, verified entries.
    pub entries: u64,
    /// The `seq` the signed head covers.
    pub head_seq: u64,
    /// The last entry's hash (hex; 64 zeros for an empty log).
    pub last_hash: String,
    /// Complete entries after the head: written but not acknowledged before a crash.
    pub beyond_head: u64,
    /// Bytes of a partial last line (a write interrupted by a crash), not yet repaired.
    pub torn_tail_bytes: u64,
}

/// What [`AuditLog::open`] repaired after a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a partial last line that were cut off.
    pub repaired_tail_bytes: u64,
    /// Complete but unacknowledged entries the head was advanced over.
    pub head_advanced_by: u64,
}

/// The key that signs the audit log. Derived from the master key; wiped on drop.
///
/// Signs with `ring` (several times faster than the pure-Rust P-256), normalising `s` to the
/// low form the verifier requires; the verifier uses `p256`.
pub struct AuditSigner {
    key: SigningKey,
    /// The same key, loaded into `ring` for signing.
    ring: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl std::fmt::Debug for AuditSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSigner")
            .field("public_key", &self.public_key().to_hex())
            .finish_non_exhaustive()
    }
}

impl AuditSigner {
    /// Derives the audit signing key from the master key (see the module docs).
    pub fn from_master_key(master: &MasterKey) -> Result<Self, Error> {
        for counter in 0u8..=255 {
            let seed = master.derive_labelled(KeyPurpose::AuditSigning.info(), &[counter]);
            // Fails only for 0 or a value ≥ the group order: probability about 2⁻³² per try.
            if let Ok(key) = SigningKey::from_slice(seed.as_ref()) {
                let rng = ring::rand::SystemRandom::new();
                let point = key.verifying_key().to_sec1_point(false);
                let ring = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    seed.as_ref(),
                    point.as_bytes(),
                    &rng,
                )
                .map_err(|_| Error::Internal("ring refused a valid P-256 key"))?;
                return Ok(AuditSigner { key, ring, rng });
            }
        }
        Err(Error::Internal(
            "256 HKDF outputs in a row were not P-256 scalars",
        ))
    }

    /// The public key that verifies this signer's log.
    pub fn public_key(&self) -> AuditPublicKey {
        AuditPublicKey(*self.key.verifying_key())
    }

    fn sign(&self, message: &[u8]) -> String {
        // ring signs with SHA-256, as `p256` does; both give `r ‖ s` (64 bytes). Should ring
        // fail (it needs the OS random generator), the deterministic p256 signer takes over.
        let sig = self
            .ring
            .sign(&self.rng, message)
            .ok()
            .and_then(|s| Signature::from_slice(s.as_ref()).ok())
            .unwrap_or_else(|| self.key.sign(message));
        hex::encode(sig.normalize_s().to_bytes())
    }
}

/// The public key of an audit log (P-256).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditPublicKey(VerifyingKey);

impl AuditPublicKey {
    /// The SEC1 compressed point, hex (66 digits).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_sec1_point(true).as_bytes())
    }

    /// Parses a SEC1 point (compressed or not) in hex.
    pub fn from_hex(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidInput {
            what: "audit public key",
            reason: "expected a SEC1-encoded P-256 point in hex",
        };
        let bytes = hex::decode(text.trim()).map_err(|_| invalid())?;
        VerifyingKey::from_sec1_bytes(&bytes)
            .map(AuditPublicKey)
            .map_err(|_| invalid())
    }

    fn verifies(&self, message: &[u8], signature_hex: &str) -> bool {
        let Ok(bytes) = hex::decode(signature_hex) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        // Only the low-S form is accepted, so a signature has exactly one valid encoding.
        sig.normalize_s() == sig && self.0.verify(message, &sig).is_ok()
    }
}

/// Reads the public key the CAS wrote next to its log (see the module docs on trusting it).
pub fn read_public_key(dir: &Path) -> Result<AuditPublicKey, Error> {
    let path = dir.join(PUBLIC_KEY_FILE);
    let text =
        std::fs::read_to_string(&path).map_err(|e| Error::io("read audit public key", &path, e))?;
    AuditPublicKey::from_hex(&text)
}

/// Verifies the audit log in data directory `dir` against `key`, read-only. Safe to run while
/// the CAS appends (the head is read first). Reads the log as a stream, line by line: memory
/// stays bounded by the longest entry, whatever the log's size. See [`AuditError`] for the
/// failures.
#[tracing::instrument(skip_all, fields(dir = %dir.display()))]
pub fn verify(dir: &Path, key: &AuditPublicKey) -> Result<Summary, AuditError> {
    let head = read_head(dir, key)?.ok_or(AuditError::Head {
        reason: "is missing",
    })?;
    let log_path = dir.join(LOG_FILE);
    let checked = match File::open(&log_path) {
        Ok(file) => check(
            BufReader::new(file),
            &log_path,
            Start::GENESIS,
            &head,
            key,
            None,
            |hash| any_entry_in_file(&log_path, hash),
        )?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            check(&[][..], &log_path, Start::GENESIS, &head, key, None, |_| {
                Ok(false)
            })?
        }
        Err(e) => return Err(AuditError::io("read", &log_path, e)),
    };
    Ok(checked.summary(&head))
}

/// Verifies a log and its head given as bytes (the contents of `audit.log` and `audit.head`),
/// for logs that are not in a local directory (uploaded, or fetched from a replica).
pub fn verify_bytes(log: &[u8], head: &[u8], key: &AuditPublicKey) -> Result<Summary, AuditError> {
    let head = parse_head(head, key)?;
    let path = Path::new(LOG_FILE);
    let checked = check(log, path, Start::GENESIS, &head, key, None, |hash| {
        any_entry(log, path, hash)
    })?;
    Ok(checked.summary(&head))
}

/// Checks one entry on its own, as the log's first check does: canonical form, hash and
/// signature by `key`. For entries read one by one (a page of `GET /v1/audit/entries`), whose
/// chain cannot be followed because other entries are not visible to the reader.
pub fn verify_entry(entry: &Entry, key: &AuditPublicKey) -> Result<(), AuditError> {
    let text = serde_json::to_string(entry).map_err(|_| AuditError::Modified {
        seq: entry.seq,
        what: "not a valid entry",
    })?;
    check_line(text.as_bytes(), entry.seq, key).map(|_| ())
}

/// Reads and checks the head; `Ok(None)` if it does not exist.
fn read_head(dir: &Path, key: &AuditPublicKey) -> Result<Option<Head>, AuditError> {
    let path = dir.join(HEAD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse_head(&bytes, key).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io("read", &path, e)),
    }
}

/// Parses the head in canonical form and checks its signature.
fn parse_head(bytes: &[u8], key: &AuditPublicKey) -> Result<Head, AuditError> {
    let malformed = || AuditError::Head {
        reason: "is malformed",
    };
    let text = std::str::from_utf8(bytes).map_err(|_| malformed())?;
    let line = text.strip_suffix('\n').ok_or_else(malformed)?;
    let head: Head = serde_json::from_str(line).map_err(|_| malformed())?;
    if serde_json::to_string(&head).ok().as_deref() != Some(line) {
        return Err(malformed());
    }
    if !key.verifies(&head_message(head.seq, &head.hash), &head.signature) {
        return Err(AuditError::Head {
            reason: "is not signed by this key (wrong key, or the head was modified)",
        });
    }
    Ok(head)
}

/// The result of checking the log's bytes.
struct Checked {
    entries: u64,
    last_seq: u64,
    last_hash: String,
    /// Where the last complete entry starts (its line's first byte).
    last_start: u64,
    /// Length of the complete lines (everything up to and including the last newline).
    complete_len: u64,
    torn_tail_bytes: u64,
}

impl Checked {
    fn summary(&self, head: &Head) -> Summary {
        Summary {
            entries: self.entries,
            head_seq: head.seq,
            last_hash: self.last_hash.clone(),
            beyond_head: self.last_seq.saturating_sub(head.seq),
            torn_tail_bytes: self.torn_tail_bytes,
        }
    }
}

/// Where a check starts: after entry `seq` (0: the log's start) with hash `hash`, whose line
/// ends at byte `offset`.
#[derive(Clone, Copy)]
struct Start<'a> {
    seq: u64,
    hash: &'a str,
    offset: u64,
}

impl Start<'_> {
    const GENESIS: Start<'static> = Start {
        seq: 0,
        hash: GENESIS,
        offset: 0,
    };
}

/// Parses one line (without its newline) and checks its form, hash and signature. `guess` is
/// the `seq` to report for a line that does not parse.
fn check_line(line: &[u8], guess: u64, key: &AuditPublicKey) -> Result<Entry, AuditError> {
    let text = std::str::from_utf8(line).map_err(|_| AuditError::Modified {
        seq: guess,
        what: "not UTF-8",
    })?;
    let entry: Entry = serde_json::from_str(text).map_err(|_| AuditError::Modified {
        seq: guess,
        what: "not a valid entry",
    })?;
    let seq = entry.seq;
    if serde_json::to_string(&entry).ok().as_deref() != Some(text) {
        return Err(AuditError::Modified {
            seq,
            what: "not in canonical form",
        });
    }
    let hash_bytes = entry.compute_hash();
    if hex::encode(hash_bytes) != entry.hash {
        return Err(AuditError::Modified {
            seq,
            what: "hash does not match the content",
        });
    }
    if !key.verifies(&hash_bytes, &entry.signature) {
        return Err(AuditError::Modified {
            seq,
            what: "signature does not verify",
        });
    }
    Ok(entry)
}

/// Verifies the log read from `reader` (the lines after `start`) against the (already
/// authenticated) head, in one streaming pass that keeps O(1) state: the first failure of each
/// kind is remembered and reported in the documented order ([`AuditError`]), so the verdict is
/// the one a check of the whole log in memory gives. `links_elsewhere(h)` says whether any
/// entry of the log has hash `h` (a second pass, needed only when a chain link is broken).
/// With `index`, the start offset of every [`INDEX_EVERY`]th entry (seq 1, 257, …) is pushed.
fn check<R: BufRead>(
    mut reader: R,
    path: &Path,
    start: Start<'_>,
    head: &Head,
    key: &AuditPublicKey,
    mut index: Option<&mut Vec<u64>>,
    links_elsewhere: impl FnOnce(&str) -> Result<bool, AuditError>,
) -> Result<Checked, AuditError> {
    let mut line = Vec::new();
    let mut offset = start.offset;
    let mut entries = 0u64;
    let mut torn_tail_bytes = 0u64;
    let mut last_start = start.offset;
    // The previous entry's seq and hash (the start's, before the first line).
    let mut prev_seq = start.seq;
    let mut prev_hash = start.hash.to_owned();
    // The first failure of each kind, in the order they are reported.
    let mut backward: Option<u64> = None;
    let mut gap: Option<(u64, u64)> = None;
    let mut broken_link: Option<(u64, String)> = None;
    let mut head_hash: Option<String> = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            torn_tail_bytes = n as u64;
            break;
        }
        let line_start = offset;
        offset += n as u64;
        let position = start.seq + entries; // entries before this line
        // 1. Each entry on its own: canonical form, hash, signature (the first failure wins).
        let entry = check_line(&line[..n - 1], prev_seq.saturating_add(1), key)?;
        if let Some(index) = index.as_deref_mut()
            && position.is_multiple_of(INDEX_EVERY)
        {
            index.push(line_start);
        }
        let seq = entry.seq;
        // 2. Order: a step backwards (a swap also makes gaps, so this is reported first).
        if backward.is_none() && (position > 0) && seq <= prev_seq {
            backward = Some(seq);
        }
        // 3. Gaps.
        if gap.is_none() && seq != prev_seq.wrapping_add(1) {
            gap = Some((prev_seq, seq));
        }
        // 4. Chain links.
        if broken_link.is_none() && entry.prev_hash != prev_hash {
            broken_link = Some((seq, entry.prev_hash));
        }
        if seq == head.seq && head_hash.is_none() {
            head_hash = Some(entry.hash.clone());
        }
        entries += 1;
        prev_seq = seq;
        prev_hash = entry.hash;
        last_start = line_start;
    }
    if let Some(seq) = backward {
        return Err(AuditError::Reordered { seq });
    }
    if let Some((after_seq, next_seq)) = gap {
        return Err(AuditError::Removed {
            after_seq,
            next_seq,
        });
    }
    if let Some((seq, link)) = broken_link {
        return Err(if links_elsewhere(&link)? {
            AuditError::Reordered { seq }
        } else {
            AuditError::Modified {
                seq,
                what: "prev_hash does not link to the previous entry",
            }
        });
    }
    // 5. The head. seqs now run start.seq + 1 ..= last_seq without gaps.
    let last_seq = prev_seq;
    if head.seq > last_seq {
        return Err(AuditError::Truncated {
            head_seq: head.seq,
            last_seq,
        });
    }
    if head.seq < start.seq {
        return Err(AuditError::Head {
            reason: "is behind entries already verified (rolled back)",
        });
    }
    let expected = if head.seq == start.seq {
        start.hash.to_owned()
    } else {
        head_hash.unwrap_or_else(|| GENESIS.to_owned())
    };
    if head.hash != expected {
        return Err(AuditError::Modified {
            seq: head.seq,
            what: "differs from the signed head",
        });
    }
    Ok(Checked {
        entries,
        last_seq,
        last_hash: prev_hash,
        last_start,
        complete_len: offset,
        torn_tail_bytes,
    })
}

/// Whether any complete, parseable entry read from `reader` has hash `hash`.
fn any_entry<R: BufRead>(mut reader: R, path: &Path, hash: &str) -> Result<bool, AuditError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read", path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(false);
        }
        if serde_json::from_slice::<Entry>(&line[..n - 1]).is_ok_and(|e| e.hash == hash) {
            return Ok(true);
        }
    }
}

/// [`any_entry`] over the log file at `path`.
fn any_entry_in_file(path: &Path, hash: &str) -> Result<bool, AuditError> {
    let file = File::open(path).map_err(|e| AuditError::io("read", path, e))?;
    any_entry(BufReader::new(file), path, hash)
}

/// The appending end of the audit log. One per data directory (the log file is locked).
/// `append` is synchronous (it waits for `fsync`); call it through `spawn_blocking`.
pub struct AuditLog {
    dir: PathBuf,
    signer: AuditSigner,
    /// The file and the chain; held by the appender writing a batch (and by `verify`).
    state: Mutex<State>,
    /// Events waiting for the next batch, and the outcomes of written ones.
    queue: Mutex<Queue>,
    /// Signalled when a batch is done.
    batch_done: Condvar,
    recovery: Recovery,
    /// Where entries start, and how far the log is durable: what readers seek with.
    index: Mutex<Index>,
    /// How far [`AuditLog::verify`] has checked the log; held while it checks.
    checkpoint: Mutex<Checkpoint>,
}

/// The sparse index of the log: `offsets[i]` is where entry `i * INDEX_EVERY + 1` starts. It
/// costs 8 bytes per [`INDEX_EVERY`] entries (40 KiB for a million), built at open by the
/// streaming check and extended by each append.
#[derive(Clone, Debug, Default)]
struct Index {
    offsets: Vec<u64>,
    /// The last durable entry.
    last_seq: u64,
    /// The length of the durable entries, in bytes.
    len: u64,
}

/// The last entry [`AuditLog::verify`] checked: its `seq`, hash, and where its line is.
#[derive(Clone, Debug)]
struct Checkpoint {
    seq: u64,
    hash: String,
    start: u64,
    end: u64,
}

/// A page of entries read with [`AuditLog::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The entries kept, in order.
    pub entries: Vec<Entry>,
    /// Where to continue (`after` of the next read): the last entry scanned, when the read
    /// stopped before the end of the log (the limit of entries or of bytes was reached).
    /// `None`: the log ended (at the time of the read).
    pub next: Option<u64>,
    /// How many bytes of the log the read went through.
    pub scanned_bytes: u64,
}

/// The group-commit queue (see the module docs).
#[derive(Default)]
struct Queue {
    /// Events not yet taken by a writer, in arrival order.
    pending: Vec<Pending>,
    /// The ticket the next queued event gets.
    next_ticket: u64,
    /// Whether an appender is writing a batch now.
    writing: bool,
    /// Outcomes of written batches, until their appenders collect them.
    outcomes: HashMap<u64, Result<Receipt, Failure>>,
}

struct Pending {
    ticket: u64,
    event: Event,
    time: SystemTime,
}

/// Why a batch failed, in a form every appender of the batch can get a copy of.
#[derive(Clone, Debug)]
enum Failure {
    Io {
        op: &'static str,
        path: PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    Internal(&'static str),
}

impl Failure {
    fn of(e: &Error) -> Self {
        match e {
            Error::Io { op, path, source } => Failure::Io {
                op,
                path: path.clone(),
                kind: source.kind(),
                message: source.to_string(),
            },
            Error::Internal(m) => Failure::Internal(m),
            _ => Failure::Internal("an audit append failed"),
        }
    }

    fn to_error(&self) -> Error {
        match self {
            Failure::Io {
                op,
                path,
                kind,
                message,
            } => Error::io(
                op,
                path.clone(),
                std::io::Error::new(*kind, message.clone()),
            ),
            Failure::Internal(m) => Error::Internal(m),
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

struct State {
    file: File,
    last_seq: u64,
    last_hash: String,
    len: u64,
    /// Set when a failed append could not be rolled back: no further appends.
    poisoned: bool,
}

/// What a durable append returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's `seq`.
    pub seq: u64,
    /// The entry's hash (hex).
    pub hash: String,
}

impl AuditLog {
    /// Opens (or creates) the audit log in `dir`, verifies it in full, and repairs what a crash
    /// can leave (see [`Recovery`]). A log that fails verification is refused with
    /// [`Error::Audit`]: the CAS does not append to a tampered log.
    #[tracing::instrument(skip_all, fields(dir = %dir.display()))]
    pub fn open(dir: &Path, signer: AuditSigner) -> Result<Self, Error> {
        create_private_dir(dir)?;
        let log_path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| Error::io("open", &log_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: log_path });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock", &log_path, e));
            }
        }
        sync_dir(dir)?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("stat", &log_path, e))?
            .len();

        let public = signer.public_key();
        let head = match read_head(dir, &public)? {
            Some(head) => head,
            // A new log (or a crash between creating the log and its first head).
            None if file_len == 0 => {
                let head = Head {
                    seq: 0,
                    hash: GENESIS.to_owned(),
                    signature: signer.sign(&head_message(0, GENESIS)),
                };
                write_head(dir, &head)?;
                head
            }
            None => {
                return Err(AuditError::Head {
                    reason: "is missing",
                }
                .into());
            }
        };
        // One streaming pass verifies the log and builds the sparse index; the log is never
        // held in memory.
        let mut offsets = Vec::new();
        let checked = {
            let mut reader = BufReader::new(&file);
            reader
                .seek(SeekFrom::Start(0))
                .map_err(|e| Error::io("read", &log_path, e))?;
            check(
                reader,
                &log_path,
                Start::GENESIS,
                &head,
                &public,
                Some(&mut offsets),
                |hash| any_entry_in_file(&log_path, hash),
            )?
        };
        let mut recovery = Recovery::default();
        if checked.torn_tail_bytes > 0 {
            file.set_len(checked.complete_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("repair", &log_path, e))?;
            tracing::warn!(
                bytes = checked.torn_tail_bytes,
                "cut a partial last audit record left by a crash"
            );
            recovery.repaired_tail_bytes = checked.torn_tail_bytes;
        }
        if checked.last_seq > head.seq {
            write_head(
                dir,
                &Head {
                    seq: checked.last_seq,
                    hash: checked.last_hash.clone(),
                    signature: signer.sign(&head_message(checked.last_seq, &checked.last_hash)),
                },
            )?;
            recovery.head_advanced_by = checked.last_seq - head.seq;
            tracing::warn!(
                entries = recovery.head_advanced_by,
                "advanced the audit head over entries written before a crash"
            );
        }
        write_public_key(dir, &public)?;
        Ok(AuditLog {
            dir: dir.to_owned(),
            signer,
            index: Mutex::new(Index {
                offsets,
                last_seq: checked.last_seq,
                len: checked.complete_len,
            }),
            checkpoint: Mutex::new(Checkpoint {
                seq: checked.last_seq,
                hash: checked.last_hash.clone(),
                start: checked.last_start,
                end: checked.complete_len,
            }),
            state: Mutex::new(State {
                file,
                last_seq: checked.last_seq,
                last_hash: checked.last_hash,
                len: checked.complete_len,
                poisoned: false,
            }),
            queue: Mutex::new(Queue::default()),
            batch_done: Condvar::new(),
            recovery,
        })
    }

    /// What opening repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The key that verifies this log.
    pub fn public_key(&self) -> AuditPublicKey {
        self.signer.public_key()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `event` stamped with the current time; durable when this returns `Ok`.
    pub fn append(&self, event: &Event) -> Result<Receipt, Error> {
        self.append_at(event, SystemTime::now())
    }

    /// Appends `event` stamped with `time` (truncated to milliseconds); durable when this returns.
    #[tracing::instrument(skip_all, fields(kind = event.kind.as_str()))]
    pub fn append_at(&self, event: &Event, time: SystemTime) -> Result<Receipt, Error> {
        let mut receipts = self.append_all(std::slice::from_ref(event), time)?;
        receipts
            .pop()
            .ok_or(Error::Internal("an audit batch lost an entry"))
    }

    /// Appends `events` as adjacent entries stamped with `time`, all in one batch; durable when
    /// this returns. Either all are appended or none is acknowledged.
    pub fn append_all(&self, events: &[Event], time: SystemTime) -> Result<Vec<Receipt>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut queue = self.queue();
        let first = queue.next_ticket;
        for event in events {
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.pending.push(Pending {
                ticket,
                event: event.clone(),
                time,
            });
        }
        let tickets = first..queue.next_ticket;
        loop {
            // A writer takes every pending event at once, so all of ours finish together.
            if queue.outcomes.contains_key(&first) {
                let mut receipts = Vec::with_capacity(events.len());
                let mut failure = None;
                for ticket in tickets {
                    match queue.outcomes.remove(&ticket) {
                        Some(Ok(receipt)) => receipts.push(receipt),
                        Some(Err(f)) => failure = Some(f),
                        None => failure = Some(Failure::Internal("an audit batch lost an entry")),
                    }
                }
                return match failure {
                    Some(f) => Err(f.to_error()),
                    None => Ok(receipts),
                };
            }
            if queue.writing {
                queue = self
                    .batch_done
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            // Nobody is writing: write everything queued, ours included.
            queue.writing = true;
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            let mut writer = BatchWriter {
                log: self,
                tickets: batch.iter().map(|p| p.ticket).collect(),
                outcomes: None,
            };
            writer.outcomes = Some(self.write_batch(&batch));
            drop(writer);
            queue = self.queue();
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent at every unlock (a writer's failure is recorded by
        // `BatchWriter`'s drop), so a panic elsewhere leaves it usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `batch` with one write, one `fsync` and one head; an outcome per entry.
    fn write_batch(&self, batch: &[Pending]) -> Vec<Result<Receipt, Failure>> {
        let fail_all = |e: Error| vec![Err(Failure::of(&e)); batch.len()];
        let Ok(mut state) = self.state.lock() else {
            return fail_all(Error::Internal("audit log lock poisoned by a panic"));
        };
        if state.poisoned {
            return fail_all(Error::Internal(
                "an earlier audit append failed and could not be rolled back; reopen the log",
            ));
        }
        let mut seq = state.last_seq;
        let mut prev_hash = state.last_hash.clone();
        let mut bytes = Vec::with_capacity(batch.len() * 512);
        let mut receipts = Vec::with_capacity(batch.len());
        let mut index_points = Vec::new();
        for p in batch {
            seq += 1;
            let line = match self.entry_line(&p.event, p.time, seq, &prev_hash) {
                Ok(line) => line,
                Err(e) => return fail_all(e),
            };
            if (seq - 1).is_multiple_of(INDEX_EVERY) {
                index_points.push(state.len + bytes.len() as u64);
            }
            bytes.extend_from_slice(&line.bytes);
            receipts.push(Receipt {
                seq,
                hash: line.hash.clone(),
            });
            prev_hash = line.hash;
        }

        let log_path = self.dir.join(LOG_FILE);
        if let Err(e) = state
            .file
            .write_all(&bytes)
            .and_then(|()| state.file.sync_data())
        {
            // Roll back a partial write so that the next append starts on a line boundary.
            let len = state.len;
            if state
                .file
                .set_len(len)
                .and_then(|()| state.file.sync_data())
                .is_err()
            {
                state.poisoned = true;
            }
            return fail_all(Error::io("append to", log_path, e));
        }
        // The entries are durable: from here on they are part of the log even if the head update
        // fails (the next append or open covers them).
        state.last_seq = seq;
        state.last_hash = prev_hash.clone();
        state.len += bytes.len() as u64;
        {
            let mut index = self.index();
            index.offsets.extend(index_points);
            index.last_seq = seq;
            index.len = state.len;
        }
        let head = Head {
            seq,
            signature: self.signer.sign(&head_message(seq, &prev_hash)),
            hash: prev_hash,
        };
        if let Err(e) = write_head(&self.dir, &head) {
            return fail_all(e);
        }
        receipts.into_iter().map(Ok).collect()
    }

    /// The signed, serialised line of entry `seq` for `event`, chained to `prev_hash`.
    fn entry_line(
        &self,
        event: &Event,
        time: SystemTime,
        seq: u64,
        prev_hash: &str,
    ) -> Result<Line, Error> {
        let mut entry = Entry {
            seq,
            time: humantime::format_rfc3339_millis(time).to_string(),
            kind: event.kind.as_str().to_owned(),
            session: event.session.clone(),
            version: event.version,
            session_hash: event.session_hash.map(|h| h.to_string()),
            service: event.service.clone(),
            principal: event.principal.clone(),
            released: event.released.clone(),
            reasons: event.reasons.clone(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
            signature: String::new(),
        };
        let hash_bytes = entry.compute_hash();
        entry.hash = hex::encode(hash_bytes);
        entry.signature = self.signer.sign(&hash_bytes);
        let mut bytes = serde_json::to_vec(&entry)
            .map_err(|_| Error::Internal("an audit entry always serialises"))?;
        bytes.push(b'\n');
        Ok(Line {
            bytes,
            hash: entry.hash,
        })
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is replaced field by field under the lock with values that are each
        // consistent; a panic elsewhere cannot leave it half written.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the entries after `after`, in order, keeping those `keep` accepts, until `limit`
    /// are kept, the entries read after `after` reach `max_scan_bytes` (at least one entry is
    /// always read, so each call makes progress), or the log ends. Seeks with the sparse index (it
    /// reads at most [`INDEX_EVERY`] − 1 entries before `after + 1`) and streams line by line:
    /// memory is bounded by `limit` entries, never the log's size. Entries appended during the
    /// read are left for the next one.
    pub fn read(
        &self,
        after: u64,
        limit: usize,
        max_scan_bytes: u64,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> Result<Page, Error> {
        let (start, first_seq, end, last_seq) = {
            let index = self.index();
            if after >= index.last_seq {
                return Ok(Page {
                    entries: Vec::new(),
                    next: None,
                    scanned_bytes: 0,
                });
            }
            let slot = after / INDEX_EVERY;
            let start = usize::try_from(slot)
                .ok()
                .and_then(|i| index.offsets.get(i).copied())
                .ok_or(Error::Internal("the audit index misses an entry"))?;
            (start, slot * INDEX_EVERY + 1, index.len, index.last_seq)
        };
        let path = self.dir.join(LOG_FILE);
        let mut file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io("read", &path, e))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file.take(end - start));
        let mut line = Vec::new();
        let mut page = Page {
            entries: Vec::new(),
            next: None,
            scanned_bytes: 0,
        };
        let mut seq = first_seq - 1;
        // Bytes of entries after `after`: the entries skipped after the seek do not count.
        let mut budget_used = 0u64;
        while page.entries.len() < limit.max(1) && (budget_used < max_scan_bytes || seq <= after) {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("read", &path, e))?;
            if n == 0 {
                break;
            }
            page.scanned_bytes += n as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let entry: Entry = serde_json::from_slice(text).map_err(|_| AuditError::Modified {
                seq: seq + 1,
                what: "not a valid entry",
            })?;
            seq = entry.seq;
            if seq > after {
                budget_used += n as u64;
                if keep(&entry) {
                    page.entries.push(entry);
                }
            }
        }
        if seq < last_seq {
            page.next = Some(seq.max(after));
        }
        Ok(page)
    }

    /// Verifies what was appended since the last call (or since the log was opened, which
    /// verified it all), and re-reads the last entry verified before, which must be unchanged:
    /// the cost of a call is the new entries, not the log. Calls take turns; appends go on
    /// meanwhile. A modification of entries verified by an earlier call (other than the last)
    /// is not seen here: that is what a full check of the files (`cloister audit verify
    /// --data`) and the published head are for.
    pub fn verify(&self) -> Result<Summary, AuditError> {
        let mut checkpoint = self
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The head and the durable length, consistent with each other: an appender replaces
        // the head while it holds the state lock.
        let (head_bytes, len) = {
            let state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let path = self.dir.join(HEAD_FILE);
            let bytes = std::fs::read(&path).map_err(|e| AuditError::io("read", &path, e))?;
            (bytes, state.len)
        };
        let key = self.public_key();
        let head = parse_head(&head_bytes, &key)?;
        let path = self.dir.join(LOG_FILE);
        let mut file = File::open(&path).map_err(|e| AuditError::io("open", &path, e))?;
        if checkpoint.seq > 0 {
            let mut line = Vec::new();
            file.seek(SeekFrom::Start(checkpoint.start))
                .and_then(|_| {
                    (&mut file)
                        .take(checkpoint.end - checkpoint.start)
                        .read_to_end(&mut line)
                })
                .map_err(|e| AuditError::io("read", &path, e))?;
            let unchanged = line
                .strip_suffix(b"\n")
                .and_then(|text| check_line(text, checkpoint.seq, &key).ok())
                .is_some_and(|e| e.seq == checkpoint.seq && e.hash == checkpoint.hash);
            if !unchanged {
                return Err(AuditError::Modified {
                    seq: checkpoint.seq,
                    what: "differs from the entry verified before",
                });
            }
        }
        file.seek(SeekFrom::Start(checkpoint.end))
            .map_err(|e| AuditError::io("read", &path, e))?;
        let reader = BufReader::new(file.take(len.saturating_sub(checkpoint.end)));
        let checked = check(
            reader,
            &path,
            Start {
                seq: checkpoint.seq,
                hash: &checkpoint.hash,
                offset: checkpoint.end,
            },
            &head,
            &key,
            None,
            |hash| any_entry_in_file(&path, hash),
        )?;
        if checked.entries > 0 {
            *checkpoint = Checkpoint {
                seq: checked.last_seq,
                hash: checked.last_hash.clone(),
                start: checked.last_start,
                end: checked.complete_len,
            };
        }
        Ok(Summary {
            entries: checked.last_seq,
            head_seq: head.seq,
            last_hash: checked.last_hash,
            beyond_head: checked.last_seq.saturating_sub(head.seq),
            torn_tail_bytes: checked.torn_tail_bytes,
        })
    }
}

/// One serialised entry.
struct Line {
    bytes: Vec<u8>,
    hash: String,
}

/// The appender writing a batch. Dropping it (normally, or while unwinding from a panic)
/// records the batch's outcomes, hands the log to the next writer and wakes the waiters, so
/// that no appender waits forever.
struct BatchWriter<'a> {
    log: &'a AuditLog,
    tickets: Vec<u64>,
    outcomes: Option<Vec<Result<Receipt, Failure>>>,
}

impl Drop for BatchWriter<'_> {
    fn drop(&mut self) {
        let outcomes = self.outcomes.take().unwrap_or_default();
        let mut outcomes = outcomes.into_iter();
        let mut queue = self.log.queue();
        for ticket in &self.tickets {
            let outcome = outcomes
                .next()
                .unwrap_or(Err(Failure::Internal("an audit batch writer panicked")));
            queue.outcomes.insert(*ticket, outcome);
        }
        queue.writing = false;
        drop(queue);
        self.log.batch_done.notify_all();
    }
}

/// Replaces the head atomically and durably.
fn write_head(dir: &Path, head: &Head) -> Result<(), Error> {
    let mut text = serde_json::to_string(head)
        .map_err(|_| Error::Internal("the audit head always serialises"))?;
    text.push('\n');
    replace_file(dir, HEAD_FILE, text.as_bytes())
}

fn write_public_key(dir: &Path, key: &AuditPublicKey) -> Result<(), Error> {
    let text = format!("{}\n", key.to_hex());
    let path = dir.join(PUBLIC_KEY_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    replace_file(dir, PUBLIC_KEY_FILE, text.as_bytes())
}

/// Writes `name` in `dir` atomically: temporary file, `fsync`, rename, `fsync` the directory.
fn replace_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(if name == HEAD_FILE {
        HEAD_TMP_FILE.to_owned()
    } else {
        format!("{name}.tmp")
    });
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename into", &path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use std::time::Duration;
    use zeroize::Zeroizing;

    fn signer() -> AuditSigner {
        AuditSigner::from_master_key(&MasterKey::from_bytes(Zeroizing::new([3u8; 32]))).unwrap()
    }

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
    }

    fn event(i: u64) -> Event {
        Event::new(EventKind::AttestationRefused)
            .session(format!("s{i}"))
            .service("driver")
            .principal(key_digest(b"spki"))
            .reason("measurement: expected ab…, got cd…")
    }

    fn log_with(dir: &Path, n: u64) -> AuditLog {
        let log = AuditLog::open(dir, signer()).unwrap();
        for i in 0..n {
            log.append_at(&event(i), t(i)).unwrap();
        }
        log
    }

    #[test]
    fn append_then_verify() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 3);
        let summary = verify(dir.path(), &log.public_key()).unwrap();
        assert_eq!(summary.entries, 3);
        assert_eq!(summary.head_seq, 3);
        assert_eq!(summary.beyond_head, 0);
        assert_eq!(summary.torn_tail_bytes, 0);
        assert_eq!(log.verify().unwrap(), summary);
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let first: Entry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.kind, "attestation_refused");
        assert_eq!(first.time, "2027-01-15T08:00:00.000Z");
        assert_eq!(first.prev_hash, GENESIS);
    }

    #[test]
    fn empty_log_verifies_and_reopen_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let public = {
            let log = AuditLog::open(dir.path(), signer()).unwrap();
            assert_eq!(verify(dir.path(), &log.public_key()).unwrap().entries, 0);
            log.append_at(&event(1), t(1)).unwrap();
            log.public_key()
        };
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.recovery(), &Recovery::default());
        let receipt = log.append_at(&event(2), t(2)).unwrap();
        assert_eq!(receipt.seq, 2);
        assert_eq!(verify(dir.path(), &public).unwrap().last_hash, receipt.hash);
        assert_eq!(read_public_key(dir.path()).unwrap(), public);
    }

    #[test]
    fn verify_bytes_matches_verify() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 2).public_key();
        let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        let first_newline = log.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(
            verify_bytes(&log, &head, &public).unwrap(),
            verify(dir.path(), &public).unwrap()
        );
        assert!(matches!(
            verify_bytes(&log, b"{}", &public),
            Err(AuditError::Head {
                reason: "is malformed"
            })
        ));
        assert!(matches!(
            verify_bytes(&log[..first_newline], &head, &public),
            Err(AuditError::Truncated {
                head_seq: 2,
                last_seq: 0
            })
        ));
    }

    #[test]
    fn second_writer_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let _log = log_with(dir.path(), 1);
        assert!(matches!(
            AuditLog::open(dir.path(), signer()),
            Err(Error::Locked { .. })
        ));
    }

    #[test]
    fn entry_beyond_the_head_is_tolerated_then_covered() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 2).public_key();
        // Simulate a crash after the log was written but before the head was replaced.
        let old_head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        log_with(dir.path(), 1);
        std::fs::write(dir.path().join(HEAD_FILE), old_head).unwrap();
        let summary = verify(dir.path(), &public).unwrap();
        assert_eq!(
            (summary.entries, summary.head_seq, summary.beyond_head),
            (3, 2, 1)
        );
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.recovery().head_advanced_by, 1);
        assert_eq!(verify(dir.path(), &public).unwrap().head_seq, 3);
    }

    #[test]
    fn torn_tail_is_reported_then_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 2).public_key();
        let path = dir.path().join(LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"seq":3,"time":"2027-01-"#).unwrap();
        drop(file);
        let summary = verify(dir.path(), &public).unwrap();
        assert_eq!(summary.torn_tail_bytes, 25);
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.recovery().repaired_tail_bytes, 25);
        log.append_at(&event(3), t(3)).unwrap();
        let summary = verify(dir.path(), &public).unwrap();
        assert_eq!((summary.entries, summary.torn_tail_bytes), (3, 0));
    }

    #[test]
    fn wrong_key_fails_on_the_head() {
        let dir = tempfile::tempdir().unwrap();
        log_with(dir.path(), 1);
        let other = AuditSigner::from_master_key(&MasterKey::generate())
            .unwrap()
            .public_key();
        let err = verify(dir.path(), &other).unwrap_err();
        assert!(matches!(err, AuditError::Head { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 14);
        // The writer refuses to continue a log it did not sign.
        assert!(matches!(
            AuditLog::open(
                dir.path(),
                AuditSigner::from_master_key(&MasterKey::generate()).unwrap()
            ),
            Err(Error::Audit(AuditError::Head { .. }))
        ));
    }

    #[test]
    fn missing_head_with_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 1).public_key();
        std::fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
        assert!(matches!(
            verify(dir.path(), &public),
            Err(AuditError::Head {
                reason: "is missing"
            })
        ));
        assert!(matches!(
            AuditLog::open(dir.path(), signer()),
            Err(Error::Audit(AuditError::Head { .. }))
        ));
    }

    #[test]
    fn exit_codes_are_distinct() {
        let errors = [
            AuditError::Modified { seq: 1, what: "x" },
            AuditError::Removed {
                after_seq: 1,
                next_seq: 3,
            },
            AuditError::Reordered { seq: 1 },
            AuditError::Truncated {
                head_seq: 2,
                last_seq: 1,
            },
            AuditError::Head { reason: "x" },
            AuditError::io("read", Path::new("x"), std::io::ErrorKind::Other.into()),
        ];
        let codes: Vec<i32> = errors.iter().map(AuditError::exit_code).collect();
        assert_eq!(codes, vec![10, 11, 12, 13, 14, 2]);
    }

    #[test]
    fn signer_is_deterministic_and_redacted() {
        let a = signer();
        let b = signer();
        assert_eq!(a.public_key(), b.public_key());
        let hex = a.public_key().to_hex();
        assert_eq!(hex.len(), 66);
        assert_eq!(AuditPublicKey::from_hex(&hex).unwrap(), a.public_key());
        assert!(AuditPublicKey::from_hex("zz").is_err());
        let shown = format!("{a:?}");
        assert!(shown.contains(&hex) && shown.contains(".."), "{shown}");
    }

    #[test]
    fn signatures_are_low_s_and_verify() {
        let s = signer();
        let public = s.public_key();
        for i in 0..64u32 {
            let msg = i.to_be_bytes();
            let hex_sig = s.sign(&msg);
            let sig = Signature::from_slice(&hex::decode(&hex_sig).unwrap()).unwrap();
            assert_eq!(sig.normalize_s(), sig, "low S");
            assert!(public.verifies(&msg, &hex_sig));
            assert!(!public.verifies(b"other", &hex_sig));
        }
    }

    #[test]
    fn high_s_signature_is_refused() {
        let s = signer();
        let msg = b"m";
        let sig: Signature = s.key.sign(msg);
        let low = sig.normalize_s();
        let (r, s_) = low.split_scalars();
        let high = Signature::from_scalars(r, -*s_).unwrap();
        let public = s.public_key();
        assert!(public.verifies(msg, &hex::encode(low.to_bytes())));
        assert!(!public.verifies(msg, &hex::encode(high.to_bytes())));
    }

    #[test]
    fn concurrent_appends_are_all_durable_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path(), signer()).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..25u64)
                        .map(|i| log.append_at(&event(th * 100 + i), t(i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut receipts: Vec<Receipt> = threads
            .into_iter()
            .flat_map(|th| th.join().unwrap())
            .collect();
        receipts.sort_by_key(|r| r.seq);
        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=200).collect::<Vec<_>>()
        );
        let summary = verify(dir.path(), &log.public_key()).unwrap();
        assert_eq!((summary.entries, summary.head_seq), (200, 200));
        assert_eq!(summary.beyond_head, 0);
        // Each receipt names the entry that holds it.
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        for (line, receipt) in text.lines().zip(&receipts) {
            let entry: Entry = serde_json::from_str(line).unwrap();
            assert_eq!((entry.seq, &entry.hash), (receipt.seq, &receipt.hash));
        }
    }

    #[test]
    fn append_all_writes_adjacent_entries_among_concurrent_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path(), signer()).unwrap());
        let others: Vec<_> = (0..4u64)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        log.append_at(&event(th * 100 + i), t(i)).unwrap();
                    }
                })
            })
            .collect();
        let group = [event(1000), event(1001), event(1002)];
        let mut groups = Vec::new();
        for _ in 0..10 {
            let receipts = log.append_all(&group, t(5)).unwrap();
            let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, vec![seqs[0], seqs[0] + 1, seqs[0] + 2]);
            groups.push(seqs[0]);
        }
        for th in others {
            th.join().unwrap();
        }
        assert!(log.append_all(&[], t(6)).unwrap().is_empty());
        let summary = verify(dir.path(), &log.public_key()).unwrap();
        assert_eq!(summary.entries, 4 * 20 + 10 * 3);
        // The entries are the group's events, in order.
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let entries: Vec<Entry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for first in groups {
            let sessions: Vec<_> = entries[(first - 1) as usize..(first + 2) as usize]
                .iter()
                .map(|e| e.session.clone().unwrap())
                .collect();
            assert_eq!(sessions, vec!["s1000", "s1001", "s1002"]);
        }
    }

    #[test]
    fn a_failed_batch_fails_every_appender_in_it_and_nobody_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(log_with(dir.path(), 1));
        // A log whose earlier failure could not be rolled back refuses every append.
        log.state.lock().unwrap().poisoned = true;
        let threads: Vec<_> = (0..6u64)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || log.append_at(&event(th), t(th)))
            })
            .collect();
        for th in threads {
            let err = th.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::Internal(_)), "{err:?}");
        }
        assert!(log.append_all(&[event(9), event(10)], t(9)).is_err());
        assert!(
            log.queue().outcomes.is_empty(),
            "every outcome was collected"
        );
        assert_eq!(verify(dir.path(), &log.public_key()).unwrap().entries, 1);
    }

    /// Appends `n` entries in batches (fast), session `s{i % sessions}`.
    fn big_log(dir: &Path, n: u64, sessions: u64) -> AuditLog {
        let log = AuditLog::open(dir, signer()).unwrap();
        let events: Vec<Event> = (0..n)
            .map(|i| {
                Event::new(EventKind::AttestationPassed)
                    .session(format!("s{}", i % sessions))
                    .principal(key_digest(&i.to_be_bytes()))
            })
            .collect();
        for chunk in events.chunks(500) {
            log.append_all(chunk, t(1)).unwrap();
        }
        log
    }

    #[test]
    fn the_index_is_sparse_and_reads_seek_instead_of_scanning_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * INDEX_EVERY + 10;
        let log_len = {
            let _log = big_log(dir.path(), n, 7);
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len()
        };
        // Reopened: the index is rebuilt by the streaming check, one offset per 256 entries.
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        let index = log.index().clone();
        assert_eq!(index.offsets.len(), 4);
        assert_eq!((index.last_seq, index.len), (n, log_len));
        // Each offset is where its entry starts.
        let bytes = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        for (i, offset) in index.offsets.iter().enumerate() {
            let line = bytes[*offset as usize..]
                .split(|b| *b == b'\n')
                .next()
                .unwrap();
            let entry: Entry = serde_json::from_slice(line).unwrap();
            assert_eq!(entry.seq, i as u64 * INDEX_EVERY + 1);
        }
        // Reading 5 entries near the end goes through fewer than 256 lines, not the log.
        let line_len = log_len / n;
        let page = log.read(n - 8, 5, u64::MAX, |_| true).unwrap();
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (n - 7..=n - 3).collect::<Vec<_>>()
        );
        assert_eq!(page.next, Some(n - 3));
        assert!(
            page.scanned_bytes < INDEX_EVERY * (line_len + 16),
            "scanned {} of {log_len} bytes",
            page.scanned_bytes
        );
        // Appends extend the index.
        let more: Vec<Event> = (0..INDEX_EVERY).map(event).collect();
        log.append_all(&more, t(2)).unwrap();
        assert_eq!(log.index().offsets.len(), 5);
        assert_eq!(log.index().last_seq, n + INDEX_EVERY);
        let page = log.read(4 * INDEX_EVERY, 1, u64::MAX, |_| true).unwrap();
        assert_eq!(page.entries[0].seq, 4 * INDEX_EVERY + 1);
        assert!(
            page.scanned_bytes < 2 * line_len + 64,
            "{}",
            page.scanned_bytes
        );
    }

    #[test]
    fn paged_filtered_reads_return_every_entry_once_within_the_scan_budget() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2000;
        let log = big_log(dir.path(), n, 5);
        let line_len = log.index().len / n;
        let budget = 16 * 1024;
        let mut seen = Vec::new();
        let mut after = 0;
        let mut pages = 0;
        loop {
            let page = log
                .read(after, 100, budget, |e| e.session.as_deref() == Some("s3"))
                .unwrap();
            pages += 1;
            // Beyond the budget: at most the entries skipped after the seek, and one line.
            assert!(
                page.scanned_bytes < budget + INDEX_EVERY * line_len + 1024,
                "{}",
                page.scanned_bytes
            );
            seen.extend(page.entries.iter().map(|e| e.seq));
            match page.next {
                Some(next) => {
                    assert!(next > after);
                    after = next;
                }
                None => break,
            }
        }
        let expected: Vec<u64> = (1..=n).filter(|seq| (seq - 1) % 5 == 3).collect();
        assert_eq!(seen, expected);
        assert!(
            pages > 5,
            "the budget made the reads stop early ({pages} pages)"
        );
        // Past the end: nothing, no cursor.
        let page = log.read(n, 10, budget, |_| true).unwrap();
        assert_eq!((page.entries.len(), page.next), (0, None));
    }

    #[test]
    fn incremental_verify_checks_only_new_entries_and_sees_a_changed_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 3);
        assert_eq!(log.verify().unwrap().entries, 3);
        log.append_at(&event(4), t(4)).unwrap();
        log.append_at(&event(5), t(5)).unwrap();
        let summary = log.verify().unwrap();
        assert_eq!((summary.entries, summary.head_seq), (5, 5));
        assert_eq!(summary, verify(dir.path(), &log.public_key()).unwrap());
        // Rewrite the last verified entry in place (same length): the next check sees it.
        let path = dir.path().join(LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replacen("\"session\":\"s5\"", "\"session\":\"s6\"", 1);
        assert_ne!(text, tampered);
        std::fs::write(&path, tampered).unwrap();
        let err = log.verify().unwrap_err();
        assert!(
            matches!(err, AuditError::Modified { seq: 5, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn streaming_check_reports_like_the_documented_order() {
        // A modified later entry wins over an earlier reordering; a gap over a broken link.
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 5).public_key();
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        let swapped = lines.join("\n") + "\n";
        let head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        assert!(matches!(
            verify_bytes(swapped.as_bytes(), &head, &public),
            Err(AuditError::Reordered { seq: 1 })
        ));
        let modified = swapped.replacen("\"s4\"", "\"sX\"", 1);
        assert!(matches!(
            verify_bytes(modified.as_bytes(), &head, &public),
            Err(AuditError::Modified { seq: 5, .. })
        ));
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(2);
        let removed = lines.join("\n") + "\n";
        assert!(matches!(
            verify_bytes(removed.as_bytes(), &head, &public),
            Err(AuditError::Removed {
                after_seq: 2,
                next_seq: 4
            })
        ));
    }

    #[test]
    fn a_single_entry_verifies_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 2);
        let page = log.read(0, 10, u64::MAX, |_| true).unwrap();
        for entry in &page.entries {
            verify_entry(entry, &log.public_key()).unwrap();
        }
        let mut forged = page.entries[1].clone();
        forged.session = Some("other".into());
        assert!(matches!(
            verify_entry(&forged, &log.public_key()),
            Err(AuditError::Modified { seq: 2, .. })
        ));
    }

    #[test]
    fn event_kinds_serialise_as_their_names() {
        for kind in [
            EventKind::SessionCreated,
            EventKind::SessionUpdated,
            EventKind::SessionDeleted,
            EventKind::SessionChangeRefused,
            EventKind::AttestationPassed,
            EventKind::AttestationRefused,
            EventKind::AttestationRefusedRepeated,
            EventKind::SecretGenerated,
            EventKind::SecretReleased,
            EventKind::KeyCreated,
            EventKind::AdminKeySet,
            EventKind::NamespaceCreated,
            EventKind::NamespaceUpdated,
            EventKind::NamespaceDeleted,
            EventKind::NamespaceChangeRefused,
        ] {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
    }

    /// A caller-chosen reason (a long service name, a Rego message) cannot grow an entry beyond
    /// the caps, and is cut on a character boundary.
    #[test]
    fn reasons_are_capped_in_length_and_number() {
        let long = "é".repeat(10_000);
        let mut event = Event::new(EventKind::AttestationRefused).reason(long);
        assert_eq!(event.reasons[0].chars().count(), MAX_REASON_CHARS);
        assert!(event.reasons[0].ends_with('…'));
        assert_eq!(cap_reason("short".into()), "short");
        assert_eq!(
            cap_reason("x".repeat(MAX_REASON_CHARS)).len(),
            MAX_REASON_CHARS
        );
        for i in 1..100 {
            event = event.reason(format!("r{i}"));
        }
        assert_eq!(event.reasons.len(), MAX_REASONS);
        assert_eq!(
            event.reasons.last().unwrap(),
            &format!(
                "… and {} more reasons not recorded",
                100 - (MAX_REASONS - 1)
            )
        );
        assert_eq!(
            event.reasons[MAX_REASONS - 2],
            format!("r{}", MAX_REASONS - 2)
        );
    }
}

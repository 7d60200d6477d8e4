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

mod entry;
mod log;
mod sign;
mod verify;

pub use entry::{Entry, Event, EventKind, MAX_REASON_CHARS, MAX_REASONS, cap_reason, key_digest};
pub use log::{AuditLog, Page, Receipt, Recovery};
pub use sign::{AuditPublicKey, AuditSigner, read_public_key};
pub use verify::{AuditError, Summary, verify, verify_bytes, verify_entry};

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

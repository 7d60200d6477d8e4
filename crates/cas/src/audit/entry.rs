//! What the audit log records: [`Event`]s, the [`Entry`] lines that carry them with their
//! canonical encoding and hash, and the signed head's message. See the [module docs](super).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::SessionHash;

use super::*;

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
    pub(super) fn compute_hash(&self) -> [u8; 32] {
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
pub(super) struct Head {
    pub(super) seq: u64,
    pub(super) hash: String,
    pub(super) signature: String,
}

pub(super) fn head_message(seq: u64, hash: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(HEAD_TAG.len() + 8 + hash.len());
    m.extend_from_slice(HEAD_TAG);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash.as_bytes());
    m
}

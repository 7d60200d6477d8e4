//! The one error type of this crate, grouped by whose fault it is.

use crate::problem::Problems;
use crate::sign::{KeyFingerprint, SessionHash};

/// Why a policy was not accepted, a request not authorised, or a value not resolved.
///
/// Variants are grouped by fault: the input is malformed; a well-formed request is rejected by a
/// rule (each names it, see [`Error::rule`]); something needed is unavailable. Messages never
/// carry secret values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- invalid input -----
    /// The policy document breaks the language's rules.
    #[error("the policy is not valid:\n{0}")]
    Invalid(Problems),
    /// A key, signature, hash or JSON value is malformed.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A `$$cloister:` placeholder is malformed.
    #[error("placeholder at byte {offset} is malformed: {reason}")]
    PlaceholderSyntax {
        /// Byte offset of the placeholder in its template.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A placeholder names a secret that does not exist.
    #[error("placeholder names unknown secret `{name}`")]
    UnknownSecret {
        /// The name.
        name: String,
    },
    /// A placeholder has a format that does not exist.
    #[error("unknown placeholder format `{format}` (use hex, base64, pem, crt, chain or key)")]
    UnknownFormat {
        /// The format.
        format: String,
    },
    /// A placeholder's format does not apply to its secret's value.
    #[error("format `{format}` does not apply to secret `{name}` ({kind})")]
    FormatNotApplicable {
        /// The secret.
        name: String,
        /// The format (`default` when none was given).
        format: &'static str,
        /// What the secret holds.
        kind: &'static str,
    },
    /// `@@N` names a host argument that was not supplied, or appears where none is allowed.
    #[error("host argument @@{index}: {reason}")]
    HostArg {
        /// N.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },

    // ----- rejected -----
    /// A policy version carries no signature at all.
    #[error("the policy is not signed")]
    Unsigned,
    /// Fewer distinct owners signed than the policy requires.
    #[error("{have} of {need} required owner approvals{}", details(ignored))]
    InsufficientApprovals {
        /// Valid signatures by distinct owners.
        have: usize,
        /// Signatures required (`access.update.approvals`).
        need: usize,
        /// Signatures that did not count, and why.
        ignored: Vec<String>,
    },
    /// A signature claims an owner's key but does not verify over this version's hash.
    #[error("the signature by owner `{owner}` does not verify over session hash {hash}")]
    BadSignature {
        /// The owner's name.
        owner: String,
        /// The hash of the version being authorised.
        hash: SessionHash,
    },
    /// A new policy is not version 1, or an update is not the next version.
    #[error("version {got} is not acceptable here; expected {expected}")]
    WrongVersion {
        /// The required version.
        expected: u64,
        /// The version in the document.
        got: u64,
    },
    /// An update changes the policy's name.
    #[error("the update is named `{got}` but replaces `{expected}`")]
    NameMismatch {
        /// The current name.
        expected: String,
        /// The name in the update.
        got: String,
    },
    /// An update's `predecessor` is not the hash of the current version.
    #[error("stale predecessor: the current version's hash is {expected}, the update names {}", got.map_or_else(|| "none".to_owned(), |h| h.to_string()))]
    StalePredecessor {
        /// The current version's hash.
        expected: SessionHash,
        /// The update's `predecessor`.
        got: Option<SessionHash>,
    },
    /// A deleted session's name is created again without a version above its tombstone
    /// naming the tombstone's hash as predecessor (a replayed old policy, say).
    #[error("session `{name}` was deleted at version {version} ({hash}); creating it again needs version {} or above with predecessor {hash}, the policy has version {got_version} and predecessor {}", version.saturating_add(1), got_predecessor.map_or_else(|| "none".to_owned(), |h| h.to_string()))]
    Resurrection {
        /// The session.
        name: String,
        /// The tombstone's version.
        version: u64,
        /// The tombstone's hash.
        hash: SessionHash,
        /// The new policy's version.
        got_version: u64,
        /// The new policy's predecessor.
        got_predecessor: Option<SessionHash>,
    },
    /// The principal is neither an owner nor a read principal.
    #[error("principal {principal} may not read policy `{policy}`")]
    ReadDenied {
        /// The policy's name.
        policy: String,
        /// The requesting key.
        principal: KeyFingerprint,
    },
    /// The import names a different session than the one offered as exporter.
    #[error("the import is from `{expected}`, not `{got}`")]
    ImportWrongSession {
        /// The session the import names.
        expected: String,
        /// The exporter offered.
        got: String,
    },
    /// The exporter does not export the secret to the importer.
    #[error("session `{exporter}` does not export secret `{secret}` to `{importer}`")]
    ImportNotExported {
        /// The exporting session.
        exporter: String,
        /// The secret.
        secret: String,
        /// The importing session.
        importer: String,
    },
    /// The exporter exports the secret to a session of the importer's name, but the importer is
    /// not the session meant: its history holds no pinned hash, or its namespace has an owner
    /// the export does not name (a squatter on the name gets nothing).
    #[error(
        "session `{exporter}` exports secret `{secret}` to a session named `{importer}` with \
         another identity (pinned session hash or namespace owners)"
    )]
    ExportIdentity {
        /// The exporting session.
        exporter: String,
        /// The secret.
        secret: String,
        /// The importing session.
        importer: String,
    },
    /// The import pins another version of the exporter than the current one.
    #[error("the import pins exporter hash {pinned}, but the exporter's current hash is {current}")]
    ImportHashMismatch {
        /// The hash in the import.
        pinned: SessionHash,
        /// The exporter's current hash.
        current: SessionHash,
    },

    // ----- unavailable -----
    /// Something needed is unavailable (the OS random source).
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        /// What.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

fn details(ignored: &[String]) -> String {
    if ignored.is_empty() {
        String::new()
    } else {
        format!(" (not counted: {})", ignored.join("; "))
    }
}

impl Error {
    /// A stable id of the rule or check that failed, for API error codes and logs.
    pub fn rule(&self) -> &'static str {
        match self {
            Error::Invalid(_) => "invalid-policy",
            Error::Malformed { .. } => "malformed",
            Error::PlaceholderSyntax { .. } => "placeholder-syntax",
            Error::UnknownSecret { .. } => "placeholder-secret",
            Error::UnknownFormat { .. } | Error::FormatNotApplicable { .. } => "placeholder-format",
            Error::HostArg { .. } => "host-arg",
            Error::Unsigned => "unsigned",
            Error::InsufficientApprovals { .. } => "approvals",
            Error::BadSignature { .. } => "bad-signature",
            Error::WrongVersion { .. } => "version",
            Error::NameMismatch { .. } => "name",
            Error::StalePredecessor { .. } => "predecessor",
            Error::Resurrection { .. } => "resurrection",
            Error::ReadDenied { .. } => "read",
            Error::ImportWrongSession { .. } => "import-session",
            Error::ImportNotExported { .. } => "export",
            Error::ExportIdentity { .. } => "export-identity",
            Error::ImportHashMismatch { .. } => "import-hash",
            Error::Unavailable { .. } => "unavailable",
        }
    }
}

//! The crate's error type, grouped by who is at fault.

use std::path::PathBuf;

use crate::audit::AuditError;
#[cfg(feature = "server")]
use crate::token::TokenRule;

/// Everything that can go wrong in the CAS storage layer.
///
/// Variants are grouped by fault: bad configuration or input from the operator or caller, a
/// rejected precondition, stored data that fails its integrity check, an unavailable dependency
/// (disk, database), and internal bugs. Match on variants, never on messages. No variant carries a
/// secret: the master key, secret values and nonces never appear in a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- Invalid input or configuration (the operator's or the caller's fault) ----
    /// No master key was configured: neither a key file nor `CLOISTER_MASTER_KEY`.
    #[error(
        "no CAS master key: pass --master-key-file PATH or set CLOISTER_MASTER_KEY (64 hex digits)"
    )]
    MasterKeyMissing,
    /// The master key could not be read from where it was configured.
    #[error("invalid CAS master key from {origin}: {reason}")]
    MasterKeyInvalid {
        /// Where the key came from: a file path or the environment variable's name.
        origin: String,
        /// What is wrong with it (never the key itself).
        reason: &'static str,
    },
    /// The master key file can be accessed by users other than its owner.
    #[error(
        "master key file {path} has mode {mode:04o}: it must not be accessible by group or others (chmod 600 it)"
    )]
    MasterKeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operator's import rules (`cas serve --imports`) are not acceptable: a path that is
    /// never importable, a relative path, an unknown field, a `CLOISTER_*` variable, ….
    #[error("import rules: {0}")]
    ImportRules(String),
    /// A name or value given to the store is not acceptable.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },

    // ---- Rejected: a precondition did not hold ----
    /// The store was created under a different master key.
    #[error("the store at {path} was created under a different master key")]
    WrongMasterKey {
        /// The store's file.
        path: PathBuf,
    },
    /// A compare-and-swap precondition failed: the stored state is not what the caller expected.
    #[error("conflict in {table}: expected {expected}, found {found}")]
    Conflict {
        /// The table concerned.
        table: &'static str,
        /// What the caller expected (a hash, a version or "absent"), never a secret.
        expected: String,
        /// What the store holds.
        found: String,
    },
    /// A rule refused the request (a token, a key, a certificate request).
    #[error("{rule}: expected {expected}, got {got}")]
    Rejected {
        /// The rule that failed.
        rule: &'static str,
        /// What the rule wants.
        expected: String,
        /// What it got (never a secret).
        got: String,
    },
    /// An attestation token failed verification ([`crate::token::TokenVerifier`], feature
    /// `server`): `rule`
    /// names the check.
    #[cfg(feature = "server")]
    #[error("token refused: {rule}: expected {expected}, got {got}")]
    TokenRefused {
        /// The check that failed.
        rule: TokenRule,
        /// What the check wants.
        expected: String,
        /// What the token had (claims and header values, never the token itself).
        got: String,
    },
    /// A sealed configuration envelope does not open.
    #[error("sealed configuration {0}")]
    Envelope(&'static str),
    /// A secret imported from another session may not be imported (the exporter does not export
    /// it to this session, or the import pins an older version of the exporter).
    #[error("secrets[{secret}]: {rule}: {message}")]
    ImportRefused {
        /// The importing session's name for the secret.
        secret: String,
        /// The policy rule that failed (`export`, `import-hash`, `import-session`, …).
        rule: &'static str,
        /// What the rule says (names and hashes, never a value).
        message: String,
    },
    /// A policy decision or a configuration resolution failed (the policy layer names the rule).
    #[error(transparent)]
    Policy(#[from] cloister_policy::Error),
    /// The CAS answered a client request with an error.
    #[error(
        "CAS refused the request ({status} {code}): {message}{}",
        reasons_suffix(reasons)
    )]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable error code (see `api::ErrorBody`).
        code: String,
        /// The message.
        message: String,
        /// The rule that failed, when one did.
        rule: Option<String>,
        /// Every problem of an invalid policy; for a refused attestation, the failures of what
        /// the caller sent (its nonce, evidence, collateral).
        reasons: Vec<String>,
        /// A refused attestation: the failed rules' ids and the audit entry with the details
        /// (boxed: most errors have none, and it keeps [`Error`] small).
        refused: Option<Box<RefusedRules>>,
    },
    /// Evidence could not be collected or verified.
    #[error(transparent)]
    Evidence(#[from] cloister_attest::Error),

    // ---- Stored data fails its integrity check (damage or tampering) ----
    /// A stored value failed authentication or could not be decoded.
    #[error("corrupt value in table {table}: {reason}")]
    Corrupt {
        /// The table holding it.
        table: &'static str,
        /// What failed.
        reason: &'static str,
    },
    /// The data directory was written by an unknown format version.
    #[error("unsupported store format {found} (this build reads format {supported})")]
    UnsupportedFormat {
        /// The format found on disk.
        found: u32,
        /// The format this build reads and writes.
        supported: u32,
    },
    /// The audit log failed verification (tampering, or damage other than a torn last record).
    #[error(transparent)]
    Audit(#[from] AuditError),

    // ---- An unavailable dependency: the file system or the database ----
    /// An I/O operation on the data directory failed.
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
    /// Another process (or another handle in this one) has the data directory open.
    #[error("{path} is in use by another CAS process")]
    Locked {
        /// The locked file.
        path: PathBuf,
    },
    /// A secret the policy imports is not available (file, environment variable, Kubernetes
    /// secret or the exporting session is missing).
    #[error("secrets[{secret}]: import unavailable: {reason}")]
    ImportUnavailable {
        /// The secret's name in the importing policy.
        secret: String,
        /// Why (no value; may name a file, so it is for logs, not for API bodies).
        reason: String,
    },
    /// The CAS could not be reached, or did not answer in HTTP.
    #[error("CAS at {url} is unreachable: {reason}")]
    Unreachable {
        /// The CAS URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The embedded database reported an error.
    #[cfg(feature = "server")]
    #[error("embedded store: {0}")]
    Storage(#[source] Box<redb::Error>),

    // ---- Internal: a bug in this crate ----
    /// An invariant of this crate was broken.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// What the CAS answers about a refused attestation besides its message (see
/// [`crate::api::ErrorBody`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefusedRules {
    /// The id of every failed rule (no values of the policy), sorted.
    pub rules: Vec<String>,
    /// The audit entry with the details, for the session's owners.
    pub audit_seq: Option<u64>,
}

fn reasons_suffix(reasons: &[String]) -> String {
    if reasons.is_empty() {
        String::new()
    } else {
        format!(": {}", reasons.join("; "))
    }
}

/// Why the CAS refused an attestation nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum NonceRejection {
    /// The store never issued it, or it was already used (single use: taking removes it).
    Unknown,
    /// It was issued but its lifetime is over.
    Expired,
}

impl std::fmt::Display for NonceRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NonceRejection::Unknown => "unknown or already used",
            NonceRejection::Expired => "expired",
        })
    }
}

impl Error {
    pub(crate) fn invalid(what: &'static str, reason: &'static str) -> Self {
        Error::InvalidInput { what, reason }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Converts any of redb's error types into ours.
#[cfg(feature = "server")]
pub(crate) fn storage(e: impl Into<redb::Error>) -> Error {
    Error::Storage(Box::new(e.into()))
}

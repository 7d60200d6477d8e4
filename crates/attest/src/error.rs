//! The one error type of this crate, grouped by whose fault it is.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

/// Why evidence was not accepted, or could not be checked.
///
/// Variants are grouped by fault: the input is not well-formed evidence; the evidence is
/// well-formed but rejected; something the check needs is unavailable; a bug in this crate.
/// Messages name what failed and never carry secrets (evidence holds none).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- invalid input -----
    /// The input ends before a structure it must hold.
    #[error("{what} is truncated: needs {need} bytes, has {got}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// The input does not parse as the structure it claims to be.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// The structure being read.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A version, key type or algorithm this crate does not implement.
    #[error("unsupported {what}: {got}")]
    Unsupported {
        /// What has the unsupported value.
        what: &'static str,
        /// The value found.
        got: String,
    },
    /// The evidence matches none of the known formats.
    #[error("cannot tell which kind of evidence this is; name it with --kind")]
    UnknownFormat,
    /// Evidence of this kind needs collateral that did not come with it (or collateral of
    /// another kind came): the caller's input is incomplete.
    #[error("{evidence} evidence needs {needed}")]
    MissingCollateral {
        /// Which evidence, e.g. `DCAP` or `SEV-SNP`.
        evidence: &'static str,
        /// What it needs, e.g. `the VCEK certificate`.
        needed: &'static str,
    },

    // ----- rejected -----
    /// A signature does not verify.
    #[error("signature of {what} does not verify")]
    BadSignature {
        /// Whose signature.
        what: &'static str,
    },
    /// A certificate chain does not lead to the trusted root.
    #[error("certificate chain of {what} is not trusted: {reason}")]
    UntrustedChain {
        /// Which chain.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A certificate, or the TCB level, is on a revocation list.
    #[error("{what} is revoked")]
    Revoked {
        /// What is revoked.
        what: String,
    },
    /// Something the verdict relies on expired before the verification time.
    #[error("{what} expired at {}, before the verification time {}", rfc3339(*not_after), rfc3339(*now))]
    Expired {
        /// What expired.
        what: String,
        /// When it expired.
        not_after: SystemTime,
        /// The verification time.
        now: SystemTime,
    },
    /// Something the verdict relies on is not valid yet at the verification time.
    #[error("{what} is not valid before {}, after the verification time {}", rfc3339(*not_before), rfc3339(*now))]
    NotYetValid {
        /// What is not valid yet.
        what: String,
        /// When it becomes valid.
        not_before: SystemTime,
        /// The verification time.
        now: SystemTime,
    },
    /// The evidence does not carry the `report_data` that binds it to the expected nonce and key.
    #[error("report_data mismatch: expected {expected}, evidence has {got}")]
    ReportDataMismatch {
        /// Expected, hex.
        expected: String,
        /// Found, hex.
        got: String,
    },
    /// The trust set has no anchors for evidence of this kind (no MAA issuer is pinned, say).
    #[error("{kind} evidence is not accepted: {reason}")]
    NotTrusted {
        /// The kind of the evidence.
        kind: crate::EvidenceKind,
        /// Why it is not.
        reason: &'static str,
    },
    /// A field of the evidence has a value the verifier refuses (issuer, algorithm, key id,
    /// TCB version, platform …).
    #[error("{rule}: expected {expected}, got {got}")]
    Rejected {
        /// The rule that failed, e.g. `token issuer` or `VCEK TCB matches reported TCB`.
        rule: &'static str,
        /// What the rule wants.
        expected: String,
        /// What the evidence has.
        got: String,
    },

    // ----- unavailable -----
    /// A file the verification or collection needs cannot be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TEE interface needed to collect evidence is not present on this machine.
    #[error("{what} is unavailable: {reason}")]
    Unavailable {
        /// Which interface.
        what: &'static str,
        /// Why.
        reason: String,
    },

    // ----- bug -----
    /// An invariant of this crate broke; please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Who is at fault for an [`Error`]; decides exit codes and HTTP statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The evidence is malformed or rejected: a negative verdict.
    Evidence,
    /// Something the check needs is unavailable: an operational error.
    Environment,
    /// A bug in this crate.
    Internal,
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Io { .. } | Error::Unavailable { .. } => Fault::Environment,
            Error::Internal(_) => Fault::Internal,
            _ => Fault::Evidence,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }

    /// Check `now` against a validity window given in seconds since the Unix epoch.
    pub(crate) fn check_window(
        what: impl std::fmt::Display,
        not_before: u64,
        not_after: u64,
        now: SystemTime,
    ) -> Result<(), Error> {
        let nb = unix(not_before);
        let na = unix(not_after);
        if now < nb {
            return Err(Error::NotYetValid {
                what: what.to_string(),
                not_before: nb,
                now,
            });
        }
        if now > na {
            return Err(Error::Expired {
                what: what.to_string(),
                not_after: na,
                now,
            });
        }
        Ok(())
    }
}

/// A time given in seconds since the Unix epoch.
pub(crate) fn unix(secs: u64) -> SystemTime {
    // Saturate instead of overflowing: attacker-supplied dates must never panic.
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(secs))
        .unwrap_or(SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 / 2))
}

/// Format a time as RFC 3339 (UTC, seconds).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

impl Error {
    /// A stable, machine-readable code for the variant (used in JSON output and API bodies).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Truncated { .. } => "truncated",
            Error::Malformed { .. } => "malformed",
            Error::Unsupported { .. } => "unsupported",
            Error::UnknownFormat => "unknown-format",
            Error::MissingCollateral { .. } => "missing-collateral",
            Error::NotTrusted { .. } => "not-trusted",
            Error::BadSignature { .. } => "bad-signature",
            Error::UntrustedChain { .. } => "untrusted-chain",
            Error::Revoked { .. } => "revoked",
            Error::Expired { .. } => "expired",
            Error::NotYetValid { .. } => "not-yet-valid",
            Error::ReportDataMismatch { .. } => "report-data-mismatch",
            Error::Rejected { .. } => "rejected",
            Error::Io { .. } => "io",
            Error::Unavailable { .. } => "unavailable",
            Error::Internal(_) => "internal",
        }
    }
}

//! Cloister's Configuration and Attestation Service (CAS).
//!
//! (Draft: the attestation-side building blocks. The crate docs are completed when the store,
//! audit log and server join.)

pub mod ca;
pub mod envelope;
pub mod token;

use sha2::{Digest, Sha256};

/// Errors of the CAS, grouped by fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request or stored value is not well-formed.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// What is invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A rule refused the request.
    #[error("{rule}: expected {expected}, got {got}")]
    Rejected {
        /// The rule that failed.
        rule: &'static str,
        /// What it wants.
        expected: String,
        /// What it got.
        got: String,
    },
    /// A sealed envelope does not open.
    #[error("sealed configuration {0}")]
    Envelope(&'static str),
    /// A bug.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn rejected(
        rule: &'static str,
        expected: impl Into<String>,
        got: impl Into<String>,
    ) -> Self {
        Error::Rejected {
            rule,
            expected: expected.into(),
            got: got.into(),
        }
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A fresh P-256 key from the operating system's generator.
pub(crate) fn random_p256() -> Result<p256::SecretKey, Error> {
    use p256::elliptic_curve::Generate as _;
    p256::SecretKey::try_generate().map_err(|e| Error::Internal(format!("random key: {e}")))
}

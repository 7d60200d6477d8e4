//! The LAS's error type, grouped by who is at fault.
//!
//! The LAS is a separate component from the CAS (it runs on every node, the CAS runs once), so it
//! has its own crate and its own error enum.

use std::path::PathBuf;
use std::time::SystemTime;

use cloister_attest::rfc3339;

/// Everything that can go wrong in the LAS, its configuration, its collateral cache and its client.
///
/// Variants are grouped by fault: bad configuration (the operator's), a bad request (the
/// caller's), an unavailable dependency (the TEE interface, a collateral service, the disk, the
/// LAS itself seen from the client), and internal bugs. Each variant has a stable [`code`]
/// (`LasError::code`) that the HTTP API returns; messages name the item and the reason and
/// never carry a secret (the LAS holds none but the sim key, which never appears in one).
///
/// [`code`]: LasError::code
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LasError {
    // ---- configuration (the operator's fault) ----
    /// A configuration value is not acceptable.
    #[error("invalid LAS configuration: {field}: {reason}")]
    Config {
        /// Which setting.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Hardware evidence was asked for, but this machine has no TEE interface the LAS can use.
    #[error(
        "no TEE interface under {}: neither configfs-tsm (SEV-SNP / TDX, Linux 6.7+, \
         /sys/kernel/config/tsm/report) nor Gramine's /dev/attestation is present; run the LAS \
         on a confidential node (mount /sys/kernel/config into the pod) or use sim evidence for \
         development", root.display()
    )]
    NoTee {
        /// The filesystem root that was searched.
        root: PathBuf,
    },

    // ---- bad request (the caller's fault) ----
    /// A request is malformed: a field is missing, has the wrong size or is not valid hex/base64.
    #[error("bad request: {what}: {reason}")]
    BadRequest {
        /// The field or part of the request.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The request body is larger than the endpoint accepts.
    #[error("the request body is larger than {limit} bytes")]
    PayloadTooLarge {
        /// The endpoint's limit.
        limit: usize,
    },
    /// The path exists, but not for this method.
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// Nothing is served at this path.
    #[error("no such endpoint: {method} {path}")]
    NotFound {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The evidence is of a kind for which the LAS provides no collateral, or its collateral
    /// cannot be located from it (a DCAP quote without a PCK chain, a Turin SNP report …).
    #[error("no collateral for this evidence: {reason}")]
    NoCollateralFor {
        /// Why.
        reason: String,
    },

    // ---- unavailable ----
    /// The TEE interface failed to produce evidence.
    #[error("cannot collect evidence: {0}")]
    Collect(#[source] cloister_attest::Error),
    /// No valid copy of a collateral item is cached, and none could be fetched.
    #[error("{item} is unavailable: {reason}{}", expired_note(*cached_until))]
    CollateralUnavailable {
        /// The item, e.g. `DCAP collateral (sgx, FMSPC 00A067110000, processor CA)`.
        item: String,
        /// Why each source failed.
        reason: String,
        /// When the cached copy, if any, expired.
        cached_until: Option<SystemTime>,
    },
    /// Too many requests are being served at once; retry shortly.
    #[error("the LAS is busy: {0}")]
    Busy(&'static str),
    /// An operation took longer than allowed.
    #[error("{what} timed out after {secs} s")]
    Timeout {
        /// What timed out.
        what: &'static str,
        /// The limit, in seconds.
        secs: u64,
    },
    /// The listening socket failed.
    #[error("cannot serve: {0}")]
    Serve(#[source] std::io::Error),
    /// A file of the collateral cache cannot be read or written.
    #[error("cannot access {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The LAS (seen from its client) cannot be reached.
    #[error("cannot reach the LAS at {url}: {reason}")]
    Unreachable {
        /// The URL requested.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The LAS (seen from its client) answered with an error.
    #[error("the LAS refused the request (HTTP {status}, {code}): {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The LAS's stable error code.
        code: String,
        /// The LAS's message.
        message: String,
    },
    /// The LAS (seen from its client) answered something that is not its API.
    #[error("unexpected answer from the LAS at {url}: {reason}")]
    Protocol {
        /// The URL requested.
        url: String,
        /// What is wrong with the answer.
        reason: String,
    },

    // ---- bug ----
    /// An invariant broke; please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

fn expired_note(until: Option<SystemTime>) -> String {
    match until {
        Some(t) => format!(" (the cached copy expired at {})", rfc3339(t)),
        None => String::new(),
    }
}

impl LasError {
    /// The stable, machine-readable code of the variant, returned in API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            LasError::Config { .. } => "config",
            LasError::NoTee { .. } => "no-tee",
            LasError::BadRequest { .. } => "bad-request",
            LasError::PayloadTooLarge { .. } => "too-large",
            LasError::MethodNotAllowed { .. } => "method-not-allowed",
            LasError::NotFound { .. } => "not-found",
            LasError::NoCollateralFor { .. } => "no-collateral-for-evidence",
            LasError::Collect(_) => "evidence-unavailable",
            LasError::CollateralUnavailable { .. } => "collateral-unavailable",
            LasError::Busy(_) => "busy",
            LasError::Timeout { .. } => "timeout",
            LasError::Serve(_) => "serve",
            LasError::Io { .. } => "io",
            LasError::Unreachable { .. } => "unreachable",
            LasError::Refused { .. } => "refused",
            LasError::Protocol { .. } => "protocol",
            LasError::Internal(_) => "internal",
        }
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        LasError::Config {
            field,
            reason: reason.into(),
        }
    }

    #[cfg(feature = "server")]
    pub(crate) fn bad_request(what: &'static str, reason: impl Into<String>) -> Self {
        LasError::BadRequest {
            what,
            reason: reason.into(),
        }
    }

    #[cfg(feature = "server")]
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LasError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn collateral_unavailable_names_the_item_the_reason_and_the_expiry() {
        let err = LasError::CollateralUnavailable {
            item: "VCEK (Milan, chip 3ac3fe21…)".into(),
            reason: "https://kdsintf.amd.com: HTTP 429".into(),
            cached_until: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_750_000_000)),
        };
        let msg = err.to_string();
        assert!(
            msg.starts_with("VCEK (Milan, chip 3ac3fe21…) is unavailable"),
            "{msg}"
        );
        assert!(msg.contains("HTTP 429"), "{msg}");
        assert!(msg.contains("expired at 2025-06-15T15:06:40Z"), "{msg}");
        assert_eq!(err.code(), "collateral-unavailable");
    }
}

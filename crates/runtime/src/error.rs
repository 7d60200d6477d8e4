//! The crate's error type, grouped by who is at fault.

use std::path::PathBuf;

/// What a role handler returns when it fails: its own error, boxed.
pub type RoleError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can stop a launch.
///
/// Variants are grouped by fault: invalid input from the operator (files, keys, options), a
/// refusal (the CAS refused the attestation, the bundle is tampered with, opened with the wrong
/// key or not the one the policy pins), an unavailable dependency (the CAS, the LAS, the TEE
/// interface), the role's own failure, and internal bugs. Match on variants, never on messages.
/// No variant carries a secret: keys, tokens and configuration values never appear in a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ---- Invalid input (the operator's fault) ----
    /// A file could not be read or written.
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
    /// The app directory cannot be packaged.
    #[error("app directory: {path}: {reason}")]
    InvalidAppDir {
        /// The offending file or directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The bytes are not a Cloister app bundle (wrong magic, truncated, malformed header).
    #[error("not a Cloister app bundle: {reason}")]
    NotABundle {
        /// What is wrong.
        reason: String,
    },
    /// The bundle was written by a format version this build does not read.
    #[error("unsupported app bundle version {found} (this build reads version {supported})")]
    UnsupportedBundleVersion {
        /// The version in the bundle.
        found: u8,
        /// The version this build reads and writes.
        supported: u8,
    },
    /// A bundle key is not usable.
    #[error("invalid bundle key from {origin}: {reason}")]
    InvalidKey {
        /// Where it came from: a file, or the configuration variable's name.
        origin: String,
        /// What is wrong with it (never the key).
        reason: &'static str,
    },
    /// An option of the launch is not usable.
    #[error("{what}: {reason}")]
    InvalidOption {
        /// Which option.
        what: &'static str,
        /// Why.
        reason: String,
    },

    // ---- Refused: attestation, or the app bundle ----
    /// The CAS refused the attestation (or the session): `rules` names each failed rule. The
    /// details of policy rules are not sent to the workload (they may hold the policy's pinned
    /// values): the session's owners read them in audit entry `audit_seq`.
    #[error(
        "attestation refused by the CAS ({code}): {}",
        detail(message, &refused.rules, reasons, refused.audit_seq)
    )]
    Refused {
        /// The CAS's stable error code (`attestation-refused`, `session-refused`, …).
        code: String,
        /// The CAS's message.
        message: String,
        /// The rule that failed, when the CAS names one.
        rule: Option<String>,
        /// The failures of what the workload sent (nonce, evidence, collateral), with details.
        reasons: Vec<String>,
        /// The id of every failed rule (`security.tees`, `services[job].attestation[0].measurement`,
        /// …) and the audit entry with the details, readable by the session's owners (boxed to
        /// keep [`Error`] small).
        refused: Box<cloister_cas::RefusedRules>,
    },
    /// The bundle does not authenticate under the key from the configuration: the ciphertext or
    /// its header was changed (or damaged) after packaging.
    #[error("the app bundle has been tampered with or damaged: {reason}")]
    BundleTampered {
        /// What failed.
        reason: &'static str,
    },
    /// The key the configuration holds is not the key the bundle was packaged with.
    #[error(
        "wrong bundle key: the bundle was packaged under key `{key_id}`, and the key in the \
         configuration ({origin}) is another one"
    )]
    WrongBundleKey {
        /// The bundle's key id.
        key_id: String,
        /// Where the key came from (the configuration variable's name).
        origin: String,
    },
    /// The bundle is not the one the policy pins (`CLOISTER_BUNDLE_DIGEST`).
    #[error("the app bundle is not the one the policy pins: expected digest {expected}, got {got}")]
    BundleNotPinned {
        /// The digest the configuration pins.
        expected: String,
        /// The bundle's digest.
        got: String,
    },
    /// A path inside the bundle, or an injected file's path, would escape its directory.
    #[error("unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The path as written.
        path: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The bundle's archive is not what `package` writes.
    #[error("the app bundle's archive is malformed: {reason}")]
    MalformedArchive {
        /// What is wrong.
        reason: String,
    },
    /// The role needs the app bundle's key and the configuration has none.
    #[error(
        "the configuration holds no bundle key: the policy's service must set env {env} \
         (e.g. `{env}: $$cloister:bundle_key$$` with the key imported from the packager's key file)"
    )]
    NoBundleKey {
        /// The variable the runtime looks for.
        env: &'static str,
    },

    // ---- Unavailable: the CAS, the LAS, the TEE ----
    /// Talking to the CAS failed (unreachable, an unexpected answer, a configuration that does
    /// not open).
    #[error(transparent)]
    Cas(cloister_cas::Error),
    /// The node's LAS could not be used.
    #[error("the node's LAS: {0}")]
    Las(#[source] cloister_las::LasError),
    /// Evidence could not be collected.
    #[error("collecting evidence: {0}")]
    Evidence(#[source] cloister_attest::Error),
    /// No TEE interface on this machine, and neither a LAS nor a sim key was given.
    #[error(
        "no TEE interface found (configfs-tsm, Gramine /dev/attestation): pass --las URL to use \
         the node's LAS, or --sim-key FILE for development"
    )]
    NoTee,

    // ---- The role's own failure ----
    /// The role handler failed.
    #[error("role {role}: {source}")]
    Role {
        /// The role's name.
        role: String,
        /// Its error.
        #[source]
        source: RoleError,
    },

    // ---- Internal: a bug in this crate ----
    /// An invariant of this crate was broken.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// A negative verdict (exit code 1): the CAS refused, or the app bundle is not the one the
    /// policy allows. Everything else is an operational error.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Error::Refused { .. }
                | Error::BundleTampered { .. }
                | Error::WrongBundleKey { .. }
                | Error::BundleNotPinned { .. }
                | Error::UnsafePath { .. }
                | Error::MalformedArchive { .. }
        )
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn not_a_bundle(reason: impl Into<String>) -> Self {
        Error::NotABundle {
            reason: reason.into(),
        }
    }
}

impl From<cloister_cas::Error> for Error {
    /// A `403` answer is a refusal with its reasons; collection failures are evidence errors;
    /// the rest is the CAS being unavailable or misbehaving.
    fn from(e: cloister_cas::Error) -> Self {
        match e {
            cloister_cas::Error::Api {
                status: 403,
                code,
                message,
                rule,
                reasons,
                refused,
            } => Error::Refused {
                code,
                message,
                rule,
                reasons,
                refused: refused.unwrap_or_default(),
            },
            cloister_cas::Error::Evidence(e) => Error::Evidence(e),
            other => Error::Cas(other),
        }
    }
}

/// The failed rules when the CAS lists them, the details it gave, and where the rest are.
fn detail(message: &str, rules: &[String], reasons: &[String], audit_seq: Option<u64>) -> String {
    if rules.is_empty() && reasons.is_empty() {
        return message.to_owned();
    }
    let mut out = if rules.is_empty() {
        String::new()
    } else {
        format!("failed rules: {}", rules.join(", "))
    };
    if !reasons.is_empty() {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&reasons.join("; "));
    }
    if let Some(seq) = audit_seq {
        out.push_str(&format!(
            " (the session's owners can read the details in audit entry {seq})"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cas_refusal_names_every_rule() {
        let e = Error::from(cloister_cas::Error::Api {
            status: 403,
            code: "attestation-refused".into(),
            message: "the attestation was refused".into(),
            rule: None,
            reasons: vec!["nonce: expired".into()],
            refused: Some(Box::new(cloister_cas::RefusedRules {
                rules: vec![
                    "nonce".into(),
                    "security.tees".into(),
                    "services[job].attestation[0].measurement".into(),
                ],
                audit_seq: Some(42),
            })),
        });
        assert!(e.is_refusal());
        let text = e.to_string();
        for needle in [
            "services[job].attestation[0].measurement",
            "security.tees",
            "nonce: expired",
            "audit entry 42",
        ] {
            assert!(text.contains(needle), "{needle} not in {text}");
        }
    }

    #[test]
    fn other_cas_errors_are_operational() {
        let e = Error::from(cloister_cas::Error::Unreachable {
            url: "https://cas".into(),
            reason: "connection refused".into(),
        });
        assert!(matches!(e, Error::Cas(_)));
        assert!(!e.is_refusal());
        let e = Error::from(cloister_cas::Error::Api {
            status: 404,
            code: "not-found".into(),
            message: "no session".into(),
            rule: None,
            reasons: vec![],
            refused: None,
        });
        assert!(!e.is_refusal());
    }
}

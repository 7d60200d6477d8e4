//! The one place where errors become HTTP responses.
//!
//! Handlers return [`ApiError`]; [`IntoResponse`] turns it into a status and an
//! [`ErrorBody`](crate::api::ErrorBody) with a stable code. Details that must not reach a caller
//! (file paths, storage errors, bugs) are logged here and replaced by a generic message.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::Error;
use crate::api::ErrorBody;

/// An error answer. See [`ErrorBody`] for the codes.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `bad-request`.
    BadRequest(String),
    /// 401 `unauthenticated`.
    Unauthenticated(String),
    /// 401 `unauthenticated`, naming the rule the signature header broke (`signature`,
    /// `timestamp`, `replay`).
    SignatureRefused {
        /// The rule.
        rule: &'static str,
        /// What it says.
        message: String,
    },
    /// 403 `namespace-refused`.
    NamespaceRefused {
        /// The rule.
        rule: &'static str,
        /// What it says.
        message: String,
    },
    /// 403 `forbidden`.
    Forbidden {
        /// The rule.
        rule: &'static str,
        /// What it says.
        message: String,
    },
    /// 403 `session-refused`.
    SessionRefused {
        /// The rule.
        rule: &'static str,
        /// What it says.
        message: String,
    },
    /// 403 `attestation-refused`: the ids of the failed rules, the details the caller may see
    /// (of what it sent itself), and the audit entry holding every detail.
    AttestationRefused {
        /// Every failed rule's id, sorted.
        rules: Vec<String>,
        /// `rule: detail` of failures of the caller's own nonce, evidence or collateral.
        reasons: Vec<String>,
        /// The `seq` of the audit entry with the details (readable by the session's owners).
        audit_seq: Option<u64>,
    },
    /// 404 `not-found`.
    NotFound(String),
    /// 405 `method-not-allowed`.
    MethodNotAllowed,
    /// 408 `timeout`.
    Timeout,
    /// 409 `conflict`.
    Conflict {
        /// The rule, when one failed.
        rule: Option<&'static str>,
        /// What conflicts.
        message: String,
    },
    /// 413 `payload-too-large`.
    PayloadTooLarge,
    /// 422 `invalid-policy`.
    InvalidPolicy {
        /// Every problem.
        reasons: Vec<String>,
    },
    /// 422 `unresolvable-configuration`.
    Unresolvable {
        /// The rule.
        rule: &'static str,
        /// What it says.
        message: String,
    },
    /// 429 `rate-limited`, with `Retry-After`.
    RateLimited {
        /// How long until the client's next request is admitted.
        retry_after: std::time::Duration,
    },
    /// 503 `unavailable`.
    Unavailable(String),
    /// 500 `internal`.
    Internal,
}

impl ApiError {
    /// The status and the body.
    pub fn parts(&self) -> (StatusCode, ErrorBody) {
        let body =
            |code: &str, message: String, rule: Option<&str>, reasons: Vec<String>| ErrorBody {
                code: code.to_owned(),
                message,
                rule: rule.map(str::to_owned),
                reasons,
                rules: Vec::new(),
                audit_seq: None,
            };
        match self {
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                body("bad-request", m.clone(), None, vec![]),
            ),
            ApiError::Unauthenticated(m) => (
                StatusCode::UNAUTHORIZED,
                body("unauthenticated", m.clone(), None, vec![]),
            ),
            ApiError::SignatureRefused { rule, message } => (
                StatusCode::UNAUTHORIZED,
                body("unauthenticated", message.clone(), Some(rule), vec![]),
            ),
            ApiError::NamespaceRefused { rule, message } => (
                StatusCode::FORBIDDEN,
                body(
                    "namespace-refused",
                    message.clone(),
                    Some(rule),
                    vec![format!("{rule}: {message}")],
                ),
            ),
            ApiError::Forbidden { rule, message } => (
                StatusCode::FORBIDDEN,
                body("forbidden", message.clone(), Some(rule), vec![]),
            ),
            ApiError::SessionRefused { rule, message } => (
                StatusCode::FORBIDDEN,
                body(
                    "session-refused",
                    message.clone(),
                    Some(rule),
                    vec![format!("{rule}: {message}")],
                ),
            ),
            ApiError::AttestationRefused {
                rules,
                reasons,
                audit_seq,
            } => {
                let mut message = format!(
                    "the attestation was refused by rule{} {}",
                    if rules.len() == 1 { "" } else { "s" },
                    rules.join(", ")
                );
                if let Some(seq) = audit_seq {
                    message.push_str(&format!(
                        "; the session's owners read the details in audit entry {seq}"
                    ));
                }
                let mut b = body("attestation-refused", message, None, reasons.clone());
                b.rules = rules.clone();
                b.audit_seq = *audit_seq;
                (StatusCode::FORBIDDEN, b)
            }
            ApiError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                body("not-found", m.clone(), None, vec![]),
            ),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                body(
                    "method-not-allowed",
                    "this route does not take that method".into(),
                    None,
                    vec![],
                ),
            ),
            ApiError::Timeout => (
                StatusCode::REQUEST_TIMEOUT,
                body(
                    "timeout",
                    "the request took longer than the CAS allows".into(),
                    None,
                    vec![],
                ),
            ),
            ApiError::Conflict { rule, message } => (
                StatusCode::CONFLICT,
                body("conflict", message.clone(), *rule, vec![]),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                body(
                    "payload-too-large",
                    "the request body is larger than the CAS accepts".into(),
                    None,
                    vec![],
                ),
            ),
            ApiError::InvalidPolicy { reasons } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                body(
                    "invalid-policy",
                    "the policy is not valid; `reasons` lists each problem".into(),
                    Some("invalid-policy"),
                    reasons.clone(),
                ),
            ),
            ApiError::Unresolvable { rule, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                body(
                    "unresolvable-configuration",
                    message.clone(),
                    Some(rule),
                    vec![],
                ),
            ),
            ApiError::RateLimited { retry_after } => (
                StatusCode::TOO_MANY_REQUESTS,
                body(
                    "rate-limited",
                    format!(
                        "too many requests from this client; retry in {} s",
                        retry_seconds(*retry_after)
                    ),
                    Some("rate-limit"),
                    vec![],
                ),
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                body("unavailable", m.clone(), None, vec![]),
            ),
            ApiError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                body(
                    "internal",
                    "internal error; the CAS log has the details".into(),
                    None,
                    vec![],
                ),
            ),
        }
    }

    /// A policy layer decision or resolution error, in the context of a session change (not
    /// an attestation).
    pub fn from_policy(e: cloister_policy::Error) -> Self {
        use cloister_policy::Error as P;
        let rule = e.rule();
        match e {
            P::Invalid(problems) => ApiError::InvalidPolicy {
                reasons: problems.items().iter().map(ToString::to_string).collect(),
            },
            P::Malformed { .. } => ApiError::BadRequest(e.to_string()),
            P::StalePredecessor { .. } => ApiError::Conflict {
                rule: Some(rule),
                message: e.to_string(),
            },
            P::ReadDenied { .. } => ApiError::Forbidden {
                rule,
                message: e.to_string(),
            },
            P::PlaceholderSyntax { .. }
            | P::UnknownSecret { .. }
            | P::UnknownFormat { .. }
            | P::FormatNotApplicable { .. }
            | P::HostArg { .. } => ApiError::Unresolvable {
                rule,
                message: e.to_string(),
            },
            P::Unavailable { .. } => {
                tracing::error!(error = %e, "policy layer dependency unavailable");
                ApiError::Unavailable("a dependency of the CAS is unavailable".into())
            }
            _ => ApiError::SessionRefused {
                rule,
                message: e.to_string(),
            },
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { what, reason } => {
                ApiError::BadRequest(format!("invalid {what}: {reason}"))
            }
            Error::Conflict { table, .. } => ApiError::Conflict {
                rule: None,
                message: format!(
                    "a concurrent change to {table} won; retry with the current state"
                ),
            },
            Error::Policy(p) => ApiError::from_policy(p),
            // The message may name the exporter's hashes: for the audit log, not the caller.
            Error::ImportRefused { secret, rule, .. } => ApiError::AttestationRefused {
                rules: vec![format!("secrets[{secret}].{rule}")],
                reasons: Vec::new(),
                audit_seq: None,
            },
            Error::ImportUnavailable { ref secret, .. } => {
                tracing::error!(error = %e, "import unavailable");
                ApiError::Unavailable(format!(
                    "secrets[{secret}]: the import source is unavailable; the CAS log has the details"
                ))
            }
            Error::Io { .. } | Error::Locked { .. } | Error::Storage(_) => {
                tracing::error!(error = %e, "storage unavailable");
                ApiError::Unavailable("the CAS store is unavailable".into())
            }
            other => {
                tracing::error!(error = %other, "internal error");
                ApiError::Internal
            }
        }
    }
}

/// Whole seconds to wait, rounded up, at least 1 (`Retry-After` has no fractions).
fn retry_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.parts();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), code = %body.code, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), code = %body.code, "request refused");
        }
        let bytes = serde_json::to_vec(&body)
            .unwrap_or_else(|_| b"{\"code\":\"internal\",\"message\":\"internal error\"}".to_vec());
        let mut response = (status, bytes).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let ApiError::RateLimited { retry_after } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_seconds(retry_after).into());
        }
        response
    }
}

/// Rewrites the plain-text answers of middleware (body limit, timeout, unknown route, wrong
/// method) into [`ErrorBody`] JSON, so every error has the same shape.
pub async fn json_errors(response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(response.status().is_client_error() || response.status().is_server_error()) {
        return response;
    }
    match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge.into_response(),
        StatusCode::REQUEST_TIMEOUT => ApiError::Timeout.into_response(),
        StatusCode::NOT_FOUND => ApiError::NotFound("no such route".into()).into_response(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed.into_response(),
        StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::BadRequest("the request is malformed".into()).into_response()
        }
        s if s.is_server_error() => ApiError::Internal.into_response(),
        s => {
            let mut r = ApiError::BadRequest("the request was not accepted".into()).into_response();
            *r.status_mut() = s;
            r
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn storage_and_import_failures_hide_paths() {
        let io = Error::Io {
            op: "read",
            path: PathBuf::from("/var/lib/cas/secret-dir/file"),
            source: std::io::Error::other("boom"),
        };
        let import = Error::ImportUnavailable {
            secret: "db".into(),
            reason: "/run/secrets/db: No such file".into(),
        };
        for (e, code) in [(io, "unavailable"), (import, "unavailable")] {
            let (status, body) = ApiError::from(e).parts();
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
            assert_eq!(body.code, code);
            let json = serde_json::to_string(&body).unwrap();
            assert!(
                !json.contains("/var/lib") && !json.contains("/run/secrets"),
                "{json}"
            );
        }
        let (status, body) = ApiError::from(Error::Internal("invariant")).parts();
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.message.contains("invariant"));
    }

    #[test]
    fn policy_decisions_map_to_stable_codes() {
        use cloister_policy::Error as P;
        let h = cloister_policy::SessionHash::of("x");
        for (e, status, code, rule) in [
            (P::Unsigned, 403, "session-refused", "unsigned"),
            (
                P::InsufficientApprovals {
                    have: 1,
                    need: 2,
                    ignored: vec![],
                },
                403,
                "session-refused",
                "approvals",
            ),
            (
                P::StalePredecessor {
                    expected: h,
                    got: None,
                },
                409,
                "conflict",
                "predecessor",
            ),
            (
                P::HostArg {
                    index: 1,
                    reason: "missing",
                },
                422,
                "unresolvable-configuration",
                "host-arg",
            ),
        ] {
            let (s, body) = ApiError::from_policy(e).parts();
            assert_eq!(
                (s.as_u16(), body.code.as_str(), body.rule.as_deref()),
                (status, code, Some(rule))
            );
        }
    }

    #[test]
    fn rate_limited_answers_say_when_to_retry() {
        use std::time::Duration;
        let r = ApiError::RateLimited {
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[header::RETRY_AFTER], "2");
        for (wait, secs) in [(0, 1), (1, 1), (1000, 1), (1001, 2), (60_000, 60)] {
            assert_eq!(
                retry_seconds(Duration::from_millis(wait)),
                secs,
                "{wait} ms"
            );
        }
        let (_, body) = ApiError::RateLimited {
            retry_after: Duration::ZERO,
        }
        .parts();
        assert_eq!(
            (body.code.as_str(), body.rule.as_deref()),
            ("rate-limited", Some("rate-limit"))
        );
    }

    #[tokio::test]
    async fn middleware_answers_become_json() {
        let plain = (StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded").into_response();
        let r = json_errors(plain).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let ok = (StatusCode::OK, "fine").into_response();
        assert_eq!(json_errors(ok).await.status(), StatusCode::OK);
    }
}

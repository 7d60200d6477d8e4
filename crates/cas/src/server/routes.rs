//! The HTTP handlers and the OpenAPI document that describes them.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::IntoResponse;
use cloister_policy::{KeyFingerprint, SignedPolicy};
use serde::de::DeserializeOwned;
use utoipa::OpenApi;

use super::error::ApiError;
use super::namespaces::SignedRequest;
use super::state::{CasState, Inner};
use crate::api::{
    AttestRequest, AttestResponse, AuditEntries, AuditEntriesQuery, AuditHead, AuditVerification,
    CreateNamespace, DeleteSession, ErrorBody, Health, NamespaceList, NamespaceOwnerJson,
    NamespaceOwnerView, NamespaceView, NonceResponse, OpenIdConfiguration, SessionList,
    SessionSummary, SessionView, SignatureJson, SignedPolicyJson, SnpCollateral, UpdateNamespace,
};
use crate::envelope::Sealed;

/// A JSON body read within the body limit and parsed with errors mapped to [`ApiError`]
/// (`payload-too-large`, `bad-request` naming the line and column, never echoing values).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The body's bytes, read within the body limit (for signed requests, which sign them).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::BadRequest("the request body could not be read".into())
                }
            })
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "is not well-formed JSON"
            }
            _ => "does not have the expected fields and types",
        };
        ApiError::BadRequest(format!(
            "the request body {what} (line {}, column {}); see /v1/openapi.json",
            e.line(),
            e.column()
        ))
    })
}

async fn blocking<T: Send + 'static>(
    state: &CasState,
    f: impl FnOnce(&Inner) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let inner = state.0.clone();
    tokio::task::spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "a request task panicked or was cancelled");
            ApiError::Internal
        })?
}

fn authorization(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn path_and_query(uri: &axum::http::Uri) -> String {
    uri.path_and_query()
        .map_or_else(|| uri.path().to_owned(), |p| p.as_str().to_owned())
}

/// What a signed request's signature covers besides its body: the `Authorization` header, the
/// method and the original path and query. Checked with [`Signed::principal`] inside the
/// blocking task.
pub struct Signed {
    header: Option<String>,
    method: Method,
    path: String,
}

impl<S: Send + Sync> FromRequestParts<S> for Signed {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let uri = parts
            .extensions
            .get::<OriginalUri>()
            .map_or(&parts.uri, |o| &o.0);
        Ok(Signed {
            header: authorization(&parts.headers),
            method: parts.method.clone(),
            path: path_and_query(uri),
        })
    }
}

impl Signed {
    /// The signer's key fingerprint, once the signature over this request and `body` verifies.
    fn principal(&self, s: &Inner, body: &[u8]) -> Result<KeyFingerprint, ApiError> {
        s.authenticate(
            self.header.as_deref(),
            self.method.as_str(),
            &self.path,
            body,
        )
    }
}

/// Liveness, version and identity.
#[utoipa::path(get, path = "/v1/health", tag = "meta",
    responses((status = 200, description = "The CAS is up", body = Health)))]
pub async fn health(State(state): State<CasState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        issuer: state.config().issuer().to_owned(),
        audit_public_key: state.audit_public_key().to_hex(),
        cas_id: state.cas_id().to_string(),
        admin_key_set: matches!(state.0.store.admin_key(), Ok(Some(_))),
    })
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    Json(ApiDoc::openapi())
}

/// OpenID discovery: where relying parties find the token signing keys.
#[utoipa::path(get, path = "/.well-known/openid-configuration", tag = "tokens",
    responses((status = 200, body = OpenIdConfiguration)))]
pub async fn openid_configuration(State(state): State<CasState>) -> Json<OpenIdConfiguration> {
    let issuer = state.config().issuer().to_owned();
    Json(OpenIdConfiguration {
        jwks_uri: format!("{issuer}/.well-known/jwks.json"),
        issuer,
        id_token_signing_alg_values_supported: vec!["ES256".into()],
        subject_types_supported: vec!["public".into()],
        response_types_supported: vec!["id_token".into()],
        claims_supported: [
            "iss",
            "sub",
            "aud",
            "iat",
            "nbf",
            "exp",
            "jti",
            "session",
            "service",
            "session_hash",
            "tee",
            "measurement",
            "tcb_status",
            "debug",
            "key_hash",
        ]
        .map(str::to_owned)
        .to_vec(),
    })
}

/// The token signing keys (ES256), as a JWK set.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "A JWK set (RFC 7517)", body = Object)))]
pub async fn jwks(State(state): State<CasState>) -> impl IntoResponse {
    Json(state.0.token.jwks())
}

/// Create a session from a policy signed by its owners (M of N), approved by an owner of its
/// namespace through the signed request (bound to this CAS, accepted once).
#[utoipa::path(post, path = "/v1/sessions", tag = "sessions",
    request_body = SignedPolicyJson,
    security(("cloister_sig" = [])),
    responses(
        (status = 201, body = SessionSummary),
        (status = 400, description = "bad-request: malformed JSON, base64 or signature", body = ErrorBody),
        (status = 401, description = "unauthenticated: the approval's signature (rule signature, timestamp, replay)", body = ErrorBody),
        (status = 403, description = "session-refused (unauthorised, namespace, quota, resurrection, unsigned, approvals, bad-signature, version)", body = ErrorBody),
        (status = 409, description = "conflict: the session exists", body = ErrorBody),
        (status = 422, description = "invalid-policy", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn create_session(
    State(state): State<CasState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<SessionSummary>), ApiError> {
    let signed: SignedPolicy = parse_json(&body)?;
    let request = SignedRequest {
        header: authorization(&headers),
        path: path_and_query(&uri),
        body: body.to_vec(),
    };
    let summary = blocking(&state, move |s| s.create_session(signed, &request)).await?;
    Ok((StatusCode::CREATED, Json(summary)))
}

/// Create a namespace (the admin key).
#[utoipa::path(post, path = "/v1/namespaces", tag = "namespaces",
    request_body = CreateNamespace,
    security(("cloister_sig" = [])),
    responses(
        (status = 201, body = NamespaceView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "namespace-refused (admin-key, unauthorised, name, owners)", body = ErrorBody),
        (status = 409, description = "conflict: the namespace exists", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn create_namespace(
    State(state): State<CasState>,
    signed: Signed,
    RawBody(body): RawBody,
) -> Result<(StatusCode, Json<NamespaceView>), ApiError> {
    let view = blocking(&state, move |s| {
        let principal = signed.principal(s, &body)?;
        let create: CreateNamespace = parse_json(&body)?;
        s.create_namespace(&principal, create)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// List the namespaces the signer may read (the admin key: all; an owner: its own).
#[utoipa::path(get, path = "/v1/namespaces", tag = "namespaces",
    security(("cloister_sig" = [])),
    responses((status = 200, body = NamespaceList), (status = 401, body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn list_namespaces(
    State(state): State<CasState>,
    signed: Signed,
) -> Result<Json<NamespaceList>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.list_namespaces(&principal)
    })
    .await
    .map(Json)
}

/// Read a namespace (the admin key or an owner of it).
#[utoipa::path(get, path = "/v1/namespaces/{ns}", tag = "namespaces",
    params(("ns" = String, Path, description = "The namespace")),
    security(("cloister_sig" = [])),
    responses(
        (status = 200, body = NamespaceView),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such namespace, or not the signer's to read", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn read_namespace(
    State(state): State<CasState>,
    Path(ns): Path<String>,
    signed: Signed,
) -> Result<Json<NamespaceView>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.read_namespace(&principal, &ns)
    })
    .await
    .map(Json)
}

/// Change a namespace's owners or session quota (the admin key).
#[utoipa::path(put, path = "/v1/namespaces/{ns}", tag = "namespaces",
    params(("ns" = String, Path, description = "The namespace")),
    request_body = UpdateNamespace,
    security(("cloister_sig" = [])),
    responses(
        (status = 200, body = NamespaceView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "conflict: the version moved", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn update_namespace(
    State(state): State<CasState>,
    Path(ns): Path<String>,
    signed: Signed,
    RawBody(body): RawBody,
) -> Result<Json<NamespaceView>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, &body)?;
        let update: UpdateNamespace = parse_json(&body)?;
        s.update_namespace(&principal, &ns, update)
    })
    .await
    .map(Json)
}

/// Delete an empty namespace (the admin key).
#[utoipa::path(delete, path = "/v1/namespaces/{ns}", tag = "namespaces",
    params(("ns" = String, Path, description = "The namespace")),
    security(("cloister_sig" = [])),
    responses(
        (status = 200, description = "The deleted namespace", body = NamespaceView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "namespace-refused (unauthorised, not-empty)", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn delete_namespace(
    State(state): State<CasState>,
    Path(ns): Path<String>,
    signed: Signed,
) -> Result<Json<NamespaceView>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.delete_namespace(&principal, &ns)
    })
    .await
    .map(Json)
}

/// Replace a session's policy with its next version, signed by owners of the current one.
#[utoipa::path(put, path = "/v1/sessions/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The session, `namespace/name`")),
    request_body = SignedPolicyJson,
    responses(
        (status = 200, body = SessionSummary),
        (status = 400, description = "bad-request: malformed JSON, base64 or signature", body = ErrorBody),
        (status = 403, description = "session-refused", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, description = "conflict: stale predecessor or a concurrent update", body = ErrorBody),
        (status = 422, body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn update_session(
    State(state): State<CasState>,
    Path(name): Path<String>,
    ApiJson(signed): ApiJson<SignedPolicy>,
) -> Result<Json<SessionSummary>, ApiError> {
    blocking(&state, move |s| s.update_session(&name, signed))
        .await
        .map(Json)
}

/// Read a session (signed request by an owner or reader). Generated secrets are never returned.
#[utoipa::path(get, path = "/v1/sessions/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The session, `namespace/name`")),
    security(("cloister_sig" = [])),
    responses(
        (status = 200, body = SessionView),
        (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: rule `read`", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn read_session(
    State(state): State<CasState>,
    Path(name): Path<String>,
    signed: Signed,
) -> Result<Json<SessionView>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.read_session(&name, &principal)
    })
    .await
    .map(Json)
}

/// List the sessions the signer may read.
#[utoipa::path(get, path = "/v1/sessions", tag = "sessions",
    security(("cloister_sig" = [])),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn list_sessions(
    State(state): State<CasState>,
    signed: Signed,
) -> Result<Json<SessionList>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.list_sessions(&principal)
    })
    .await
    .map(Json)
}

/// Delete a session and its secrets, approved by M of N owners over `deletion_hash(name, head)`.
#[utoipa::path(delete, path = "/v1/sessions/{name}", tag = "sessions",
    params(("name" = String, Path, description = "The session, `namespace/name`")),
    request_body = DeleteSession,
    responses(
        (status = 200, body = SessionSummary),
        (status = 400, description = "bad-request: malformed JSON, base64 or signature", body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn delete_session(
    State(state): State<CasState>,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<DeleteSession>,
) -> Result<Json<SessionSummary>, ApiError> {
    blocking(&state, move |s| s.delete_session(&name, body))
        .await
        .map(Json)
}

/// A fresh single-use nonce for `report_data`.
#[utoipa::path(post, path = "/v1/nonce", tag = "attestation",
    responses((status = 200, body = NonceResponse),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn nonce(State(state): State<CasState>) -> Result<Json<NonceResponse>, ApiError> {
    // Nonces are in memory: nothing here blocks.
    state.0.nonce().map(Json)
}

/// Attest a workload: verify its evidence, appraise it against the session's policy, and
/// answer with a token, a certificate and the sealed configuration.
#[utoipa::path(post, path = "/v1/attest", tag = "attestation",
    request_body = AttestRequest,
    responses(
        (status = 200, body = AttestResponse),
        (status = 400, description = "bad-request: malformed JSON or base64, a session or service name that breaks the name syntax, evidence over 64 KiB, too many or too long host arguments; nothing is logged", body = ErrorBody),
        (status = 403, description = "attestation-refused: `rules` names each failed rule (ids only, never a value of the policy), `audit_seq` the audit entry with the details, `reasons` the failures of the caller's own nonce, evidence or collateral", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 422, description = "unresolvable-configuration", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn attest(
    State(state): State<CasState>,
    ApiJson(req): ApiJson<AttestRequest>,
) -> Result<Json<AttestResponse>, ApiError> {
    blocking(&state, move |s| s.attest(req)).await.map(Json)
}

/// The audit log's signed head (public: outside monitors pin it).
#[utoipa::path(get, path = "/v1/audit/head", tag = "audit",
    responses((status = 200, body = AuditHead)))]
pub async fn audit_head(State(state): State<CasState>) -> Result<Json<AuditHead>, ApiError> {
    blocking(&state, |s| s.audit_head()).await.map(Json)
}

/// Audit entries after `after`, at most `limit`, that the signer may read: every entry for
/// the auditor key, the entries of the sessions it owns or reads for anyone else. One read
/// goes through a bounded part of the log; page on with `after = next` while `more`.
#[utoipa::path(get, path = "/v1/audit/entries", tag = "audit",
    params(AuditEntriesQuery),
    security(("cloister_sig" = [])),
    responses(
        (status = 200, body = AuditEntries),
        (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: rule `audit-read` (`session` names a session the signer may not read)", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn audit_entries(
    State(state): State<CasState>,
    Query(q): Query<AuditEntriesQuery>,
    signed: Signed,
) -> Result<Json<AuditEntries>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.audit_entries(&principal, &q)
    })
    .await
    .map(Json)
}

/// Verify the audit log entries appended since the previous check (auditor key only).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    security(("cloister_sig" = [])),
    responses(
        (status = 200, body = AuditVerification),
        (status = 401, body = ErrorBody),
        (status = 403, description = "forbidden: rule `audit-read` (not the auditor key)", body = ErrorBody),
        (status = 429, description = "rate-limited: too many requests from this client; retry after `Retry-After` seconds", body = ErrorBody)))]
pub async fn audit_verify(
    State(state): State<CasState>,
    signed: Signed,
) -> Result<Json<AuditVerification>, ApiError> {
    blocking(&state, move |s| {
        let principal = signed.principal(s, b"")?;
        s.audit_verify(&principal)
    })
    .await
    .map(Json)
}

struct SignedRequests;

impl utoipa::Modify for SignedRequests {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "cloister_sig",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "Cloister-Sig key=<base64 SPKI DER>,ts=<unix>,sig=<base64 Ed25519 over \
                 \"cloister-req-v2\\0\" ‖ CAS id (32 bytes: SHA-256 of the TLS certificate's \
                 SPKI, `cas_id` in /v1/health) ‖ METHOD \\0 ‖ PATH?QUERY \\0 ‖ ts \\0 ‖ \
                 SHA-256(body)>; state-changing requests are accepted once",
            ))),
        );
    }
}

/// The OpenAPI document of the CAS API.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cloister Configuration and Attestation Service",
        description = "Policies (sessions), attestation of TEE workloads, secret release and the audit log."
    ),
    paths(
        health, openapi_json, openid_configuration, jwks, create_namespace, list_namespaces,
        read_namespace, update_namespace, delete_namespace, create_session, update_session,
        read_session, list_sessions, delete_session, nonce, attest, audit_head, audit_entries,
        audit_verify
    ),
    components(schemas(
        ErrorBody, Health, OpenIdConfiguration, SignedPolicyJson, SignatureJson, SessionSummary,
        SessionView, SessionList, DeleteSession, NonceResponse, AttestRequest, SnpCollateral,
        AttestResponse, Sealed, AuditHead, AuditEntries, AuditVerification, CreateNamespace,
        UpdateNamespace, NamespaceView, NamespaceList, NamespaceOwnerJson, NamespaceOwnerView
    )),
    modifiers(&SignedRequests),
    tags(
        (name = "meta", description = "Health and this document"),
        (name = "tokens", description = "Where attestation tokens are verified"),
        (name = "namespaces", description = "Namespaces, created by the operator's admin key"),
        (name = "sessions", description = "Policies, signed by their owners"),
        (name = "attestation", description = "Nonces and attestation"),
        (name = "audit", description = "The append-only, hash-chained audit log")
    )
)]
pub struct ApiDoc;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    /// Found by schemathesis: session writes answer 400 to a malformed body, and the signed
    /// policy refuses unknown fields; the document said neither.
    #[test]
    fn regression_openapi_documents_bad_requests_and_strict_signed_policies() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, method) in [
            ("/v1/sessions", "post"),
            ("/v1/namespaces", "post"),
            ("/v1/namespaces/{ns}", "put"),
            ("/v1/sessions/{name}", "put"),
            ("/v1/sessions/{name}", "delete"),
        ] {
            let responses = &doc["paths"][path][method]["responses"];
            assert!(
                responses.get("400").is_some(),
                "{method} {path}: {responses}"
            );
        }
        // Found by schemathesis after per-client rate limits: every limited route documents 429.
        for (path, method) in [
            ("/v1/sessions", "post"),
            ("/v1/sessions", "get"),
            ("/v1/sessions/{name}", "get"),
            ("/v1/sessions/{name}", "put"),
            ("/v1/sessions/{name}", "delete"),
            ("/v1/namespaces", "post"),
            ("/v1/namespaces", "get"),
            ("/v1/namespaces/{ns}", "get"),
            ("/v1/namespaces/{ns}", "put"),
            ("/v1/namespaces/{ns}", "delete"),
            ("/v1/nonce", "post"),
            ("/v1/attest", "post"),
            ("/v1/audit/entries", "get"),
            ("/v1/audit/verify", "get"),
        ] {
            let responses = &doc["paths"][path][method]["responses"];
            assert!(
                responses.get("429").is_some(),
                "{method} {path}: {responses}"
            );
        }
        let schema = &doc["components"]["schemas"]["SignedPolicyJson"];
        assert_eq!(schema["additionalProperties"], false, "{schema}");
    }
}

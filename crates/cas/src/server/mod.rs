//! The CAS HTTPS service: [`router`] builds the axum application, [`run`] serves it over TLS
//! until a shutdown future completes.
//!
//! The routes, bodies and error codes are in [`crate::api`]. Each handler that touches the store
//! or the audit log does its work in `spawn_blocking` (they wait for `fsync`); nonces are kept in
//! memory (see `nonces.rs` for why that is safe across restarts); errors become responses in
//! one place ([`ApiError`]); bodies are limited ([`CasConfig::max_body_bytes`]) and requests time
//! out ([`CasConfig::request_timeout`]) through `tower-http`.
//!
//! The CAS's TLS identity is a self-signed P-256 certificate made on first start and kept (key
//! encrypted) in the store; its PEM is also written to `DIR/cas.crt`. Clients pin it
//! ([`crate::client::CasClient::new`]); it is not re-issued when the configured names change, so
//! that pins keep working.
//!
//! [`CasConfig::max_body_bytes`]: crate::config::CasConfig::max_body_bytes
//! [`CasConfig::request_timeout`]: crate::config::CasConfig::request_timeout

mod error;
mod namespaces;
mod nonces;
mod ops;
mod replay;
mod routes;
mod state;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;
pub use routes::ApiDoc;
pub use state::{CERT_FILE, CasState, TLS_KEY_ID, TOKEN_KEY_ID};

use crate::Error;

/// How long in-flight requests get to finish after shutdown is requested.
const GRACE: Duration = Duration::from_secs(10);

/// The CAS application: every route of [`crate::api`], with body limit, timeout and JSON errors.
pub fn router(state: CasState) -> Router {
    let limit = state.config().max_body_bytes();
    let timeout = state.config().request_timeout();
    Router::new()
        .route("/v1/health", get(routes::health))
        .route("/v1/openapi.json", get(routes::openapi_json))
        .route(
            "/.well-known/openid-configuration",
            get(routes::openid_configuration),
        )
        .route("/.well-known/jwks.json", get(routes::jwks))
        .route(
            "/v1/namespaces",
            post(routes::create_namespace).get(routes::list_namespaces),
        )
        .route(
            "/v1/namespaces/{ns}",
            get(routes::read_namespace)
                .put(routes::update_namespace)
                .delete(routes::delete_namespace),
        )
        .route(
            "/v1/sessions",
            post(routes::create_session).get(routes::list_sessions),
        )
        .route(
            "/v1/sessions/{*name}",
            get(routes::read_session)
                .put(routes::update_session)
                .delete(routes::delete_session),
        )
        .route("/v1/nonce", post(routes::nonce))
        .route("/v1/attest", post(routes::attest))
        .route("/v1/audit/head", get(routes::audit_head))
        .route("/v1/audit/entries", get(routes::audit_entries))
        .route("/v1/audit/verify", get(routes::audit_verify))
        .fallback(|| async { ApiError::NotFound("no such route".into()) })
        .layer(DefaultBodyLimit::max(limit))
        .layer(RequestBodyLimitLayer::new(limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(error::json_errors))
        .with_state(state)
}

/// Serves [`router`]`(state)` over TLS on `listener` until `shutdown` completes, then lets
/// in-flight requests finish (up to 10 s). Build `tls` with [`CasState::tls_config`].
pub async fn run(
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: CasState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let addr = listener.local_addr().ok();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(GRACE));
    });
    let app = router(state);
    tracing::info!(?addr, "CAS listening");
    let io = |op| move |e| Error::io(op, "CAS listener", e);
    axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .map_err(io("listen on"))?
    .handle(handle)
    .serve(app.into_make_service())
    .await
    .map_err(io("serve on"))
}

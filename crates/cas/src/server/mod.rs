//! The CAS HTTPS service: [`router`] builds the axum application, [`run`] serves it over TLS
//! until a shutdown future completes.
//!
//! The routes, bodies and error codes are in [`crate::api`]. Each handler that touches the store
//! or the audit log does its work in `spawn_blocking` (they wait for `fsync`); nonces are
//! stateless MACs and only used ones are kept, in memory (see `nonces.rs` for why that is safe
//! across restarts); errors become responses in one place ([`ApiError`]); bodies are limited
//! ([`CasConfig::max_body_bytes`]) and requests time out ([`CasConfig::request_timeout`]) through
//! `tower-http`.
//!
//! # Bounded resources
//!
//! [`CasConfig::limits`] bounds what one client can take (see [`Limits`] for the defaults):
//!
//! - **Rates**, per client (the peer IP address of the TCP connection, an IPv6 client by its
//!   /64): `POST /v1/nonce`, `POST /v1/attest` and every `/v1/sessions…` request, each group
//!   with its own token bucket; over it, 429 `rate-limited` with `Retry-After`. Health,
//!   discovery and audit routes are not limited.
//! - **Transport** ([`run`]): the TLS handshake must finish within `tls_handshake_timeout`; a
//!   request head must arrive within `header_read_timeout` of the connection becoming ready for
//!   one (after the handshake or the previous response), which also closes idle keep-alive
//!   connections; at most `max_connections` connections are open at once, and at most
//!   `max_connections_per_client` from one client; one beyond a cap is closed at once (existing
//!   connections keep working).
//!
//! [`Limits`]: crate::config::Limits
//! [`CasConfig::limits`]: crate::config::CasConfig::limits
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
mod rate;
mod refusals;
mod replay;
mod routes;
mod state;
pub(crate) mod transport;

use std::future::Future;
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

/// The CAS application: every route of [`crate::api`], with per-client rate limits, body limit,
/// timeout and JSON errors. Serve it with connect info (`into_make_service_with_connect_info::<
/// SocketAddr>`, as [`run`] does) so that clients are told apart.
pub fn router(state: CasState) -> Router {
    let limit = state.config().max_body_bytes();
    let timeout = state.config().request_timeout();
    let rates = state.config().limits();
    let limited = |r: Router<CasState>, rate| {
        r.route_layer(axum::middleware::from_fn_with_state(
            rate::Limiter::new(rate),
            rate::limit,
        ))
    };
    let sessions = limited(
        Router::new()
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
            ),
        rates.session_rate,
    );
    // Signed audit reads go through a bounded part of the log each, and any self-made key may
    // sign one: they share the session routes' rate.
    let audit = limited(
        Router::new()
            .route("/v1/audit/entries", get(routes::audit_entries))
            .route("/v1/audit/verify", get(routes::audit_verify)),
        rates.session_rate,
    );
    let nonce = limited(
        Router::new().route("/v1/nonce", post(routes::nonce)),
        rates.nonce_rate,
    );
    let attest = limited(
        Router::new().route("/v1/attest", post(routes::attest)),
        rates.attest_rate,
    );
    Router::new()
        .route("/v1/health", get(routes::health))
        .route("/v1/openapi.json", get(routes::openapi_json))
        .route(
            "/.well-known/openid-configuration",
            get(routes::openid_configuration),
        )
        .route("/.well-known/jwks.json", get(routes::jwks))
        .merge(sessions)
        .merge(nonce)
        .merge(attest)
        .route("/v1/audit/head", get(routes::audit_head))
        .merge(audit)
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
/// in-flight requests finish (up to 10 s). The TLS identity is the state's
/// ([`CasState::tls_config`]).
///
/// The configuration's [`Limits`](crate::config::Limits) bound each connection: the connection
/// cap is checked before TLS, the handshake and each request head are timed, and handlers see
/// the peer address for rate limits.
pub async fn run(
    listener: std::net::TcpListener,
    state: CasState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let tls = state.tls_config()?;
    let addr = listener.local_addr().ok();
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(GRACE));
    });
    let limits = state.config().limits().clone();
    let app = router(state);
    tracing::info!(?addr, "CAS listening");
    let io = |op| move |e| Error::io(op, "CAS listener", e);
    let mut server = axum_server::from_tcp_rustls(
        listener,
        axum_server::tls_rustls::RustlsConfig::from_config(tls),
    )
    .map_err(io("listen on"))?
    .map(|tls| {
        tls.handshake_timeout(limits.tls_handshake_timeout)
            .acceptor(transport::Capped::new(
                limits.max_connections,
                limits.max_connections_per_client,
            ))
    })
    .handle(handle);
    // axum-server installs hyper's timer; the header timer runs from the moment a connection
    // waits for a request head, so it bounds slow headers and idle keep-alive alike.
    server
        .http_builder()
        .http1()
        .header_read_timeout(limits.header_read_timeout);
    server
        .serve(app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .await
        .map_err(io("serve on"))
}

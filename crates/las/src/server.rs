//! The LAS's HTTP server: [`router`] builds the axum router, [`run`] serves it until shutdown.
//!
//! Errors become responses in exactly one place, the [`IntoResponse`] implementation of
//! [`LasError`] below: a status, the stable code and a message; details that could carry host
//! paths (I/O and internal errors) go to the log only.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::collect::{Collector, Evidence};
use cloister_attest::{EvidenceFormat, EvidenceKind, rfc3339};
use serde_json::value::RawValue;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::api::{
    CollateralRequest, CollateralResponse, ErrorBody, ErrorResponse, EvidenceRequest,
    EvidenceResponse, Health, WireCollateral,
};
use super::collateral::{
    AmdProduct, BundleFetcher, Cached, CollateralCache, DcapTee, Fetcher, HttpFetcher, Item, PckCa,
    SnpTcb,
};
use super::config::{LasConfig, Limits, SimSource};
use super::locate::{self, Needed};
use super::{Clock, LasError, SystemClock};

/// The largest `POST /v1/evidence` body (a 128-hex-digit `report_data` and JSON around it).
const MAX_EVIDENCE_REQUEST: usize = 4 * 1024;
/// The largest `POST /v1/collateral` body (a quote with its PCK chain is ~5 KiB, base64).
const MAX_COLLATERAL_REQUEST: usize = 256 * 1024;

/// What the handlers share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct LasState {
    inner: Arc<Inner>,
}

struct Inner {
    collector: Arc<dyn Collector>,
    /// The same source as `collector`, in sim mode: it can sign a claimed measurement.
    sim: Option<Arc<SimSource>>,
    health: Health,
    cache: CollateralCache,
    amd_product: Option<AmdProduct>,
    limits: Limits,
    collections: Arc<Semaphore>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LasState")
            .field("tee", &self.health.tee)
            .field("source", &self.health.source)
            .field("cache", &self.cache)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl LasState {
    /// The state for `config`, on the system clock.
    pub fn new(config: LasConfig) -> Result<Self, LasError> {
        Self::with_clock(config, Arc::new(SystemClock))
    }

    /// The state for `config`, with collateral validity judged on `clock`.
    pub fn with_clock(config: LasConfig, clock: Arc<dyn Clock>) -> Result<Self, LasError> {
        let c = &config.collateral;
        let mut sources: Vec<Arc<dyn Fetcher>> = Vec::new();
        if let Some(dir) = &c.offline_bundle {
            tracing::info!(dir = %dir.display(), "collateral offline bundle");
            sources.push(Arc::new(BundleFetcher::new(dir.clone())));
        }
        if c.intel.is_some() || c.amd_kds.is_some() {
            let http = HttpFetcher::new(c.intel.clone(), c.amd_kds.clone(), c.fetch_timeout)?;
            tracing::info!(services = %http.name(), "collateral services");
            sources.push(Arc::new(http));
        }
        if let Some(dir) = &c.cache_dir {
            tracing::info!(dir = %dir.display(), "collateral cache");
        }
        let cache = CollateralCache::new(sources, c.cache_dir.clone(), c.refresh.clone(), clock);
        let health = Health {
            status: "ok".into(),
            tee: config.tee(),
            source: config.source_kind(),
            provider: config.provider().map(str::to_owned),
            sim_public_key: config.sim_public_key().map(|k| k.to_pem()),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let limits = config.limits().clone();
        Ok(Self {
            inner: Arc::new(Inner {
                collector: config.collector(),
                sim: config.sim(),
                health,
                cache,
                amd_product: c.amd_product,
                collections: Arc::new(Semaphore::new(limits.max_concurrent_collections)),
                limits,
            }),
        })
    }

    /// The collateral cache.
    pub fn cache(&self) -> &CollateralCache {
        &self.inner.cache
    }

    /// Collect evidence off the async runtime, bounded in concurrency and time; with the
    /// workload's `claimed` measurement in sim mode (refused in any other mode).
    async fn collect(
        &self,
        report_data: [u8; 64],
        claimed: Option<Vec<u8>>,
    ) -> Result<Evidence, LasError> {
        let sim = match (&claimed, &self.inner.sim) {
            (None, _) => None,
            (Some(_), Some(sim)) => Some(sim.clone()),
            (Some(_), None) => {
                return Err(LasError::bad_request(
                    "measurement",
                    "only a sim LAS signs a measurement the workload claims; \
                     a hardware TEE measures the workload itself",
                ));
            }
        };
        let limit = self.inner.limits.collect_timeout;
        let timeout = LasError::Timeout {
            what: "evidence collection",
            secs: limit.as_secs(),
        };
        let permit = tokio::time::timeout(limit, self.inner.collections.clone().acquire_owned())
            .await
            .map_err(|_| LasError::Busy("too many evidence collections at once; retry shortly"))?
            .map_err(|_| LasError::Internal("the collection semaphore is closed".into()))?;
        let collector = self.inner.collector.clone();
        let task = tokio::task::spawn_blocking(move || {
            // Held until the TEE interface answers, even past the timeout, so that a hung
            // interface cannot pile up threads.
            let _permit = permit;
            match (&sim, &claimed) {
                (Some(sim), Some(measurement)) => {
                    sim.collect_claiming(&report_data, Some(measurement))
                }
                _ => collector.collect(&report_data),
            }
        });
        tokio::time::timeout(limit, task)
            .await
            .map_err(|_| timeout)?
            .map_err(|e| LasError::Internal(format!("the collection task failed: {e}")))?
            .map_err(LasError::Collect)
    }

    /// The collateral `evidence` needs, from the cache. `Ok(None)` when it needs none.
    async fn collateral(
        &self,
        format: EvidenceFormat,
        evidence: &[u8],
    ) -> Result<Option<(WireCollateral, SystemTime)>, LasError> {
        match locate::needed(format, evidence, self.inner.amd_product)? {
            Needed::Nothing => Ok(None),
            Needed::Dcap(item) => self.dcap(&item).await.map(Some),
            Needed::Snp { vcek, chain } => self.snp(&vcek, &chain).await.map(Some),
        }
    }

    async fn dcap(&self, item: &Item) -> Result<(WireCollateral, SystemTime), LasError> {
        let copy = self.inner.cache.get(item).await?;
        let json = String::from_utf8(copy.body.to_vec())
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .ok_or_else(|| LasError::Internal(format!("the cached {item} is not JSON")))?;
        Ok((WireCollateral::Dcap(json), copy.window.not_after))
    }

    async fn snp(
        &self,
        vcek: &Item,
        chain: &Item,
    ) -> Result<(WireCollateral, SystemTime), LasError> {
        let vcek: Cached = self.inner.cache.get(vcek).await?;
        let chain_copy: Cached = self.inner.cache.get(chain).await?;
        let cert_chain = String::from_utf8(chain_copy.body.to_vec())
            .map_err(|_| LasError::Internal(format!("the cached {chain} is not PEM")))?;
        Ok((
            WireCollateral::Snp {
                vcek: B64.encode(&vcek.body),
                cert_chain,
            },
            vcek.window.not_after.min(chain_copy.window.not_after),
        ))
    }
}

/// The LAS's router: every endpoint of [`super::api`], with body limits, a request timeout and
/// JSON errors for unknown paths and methods.
pub fn router(state: LasState) -> Router {
    let limit = state.inner.limits.request_timeout;
    Router::new()
        .route("/v1/health", get(health))
        .route(
            "/v1/evidence",
            post(evidence).layer(DefaultBodyLimit::max(MAX_EVIDENCE_REQUEST)),
        )
        .route(
            "/v1/collateral",
            post(collateral_for).layer(DefaultBodyLimit::max(MAX_COLLATERAL_REQUEST)),
        )
        .route(
            "/v1/collateral/dcap/{tee}/{fmspc}/{ca}",
            get(dcap_collateral),
        )
        .route(
            "/v1/collateral/snp/{product}/{chip_id}/{tcb}",
            get(snp_collateral),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(limit, limit_time))
        .with_state(state)
}

/// How long a connection may take to send a request head (from its start or the previous
/// response: also the idle keep-alive timeout).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The most connections served at once; one more is closed at once.
const MAX_CONNECTIONS: usize = 1024;

/// Serve the LAS on `listener` until `shutdown` completes, then finish the requests in flight.
///
/// Connections are bounded like the CAS's: a request head must arrive within 10 s (slow headers
/// and idle keep-alive connections are closed), and at most 1,024 connections are open at once.
pub async fn run(
    listener: TcpListener,
    state: LasState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LasError> {
    let addr = listener.local_addr().map_err(LasError::Serve)?;
    tracing::info!(
        %addr,
        tee = %state.inner.health.tee,
        source = ?state.inner.health.source,
        "LAS listening"
    );
    let handle = axum_server::Handle::<std::net::SocketAddr>::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(None);
    });
    let mut server = axum_server::Server::from_listener(listener)
        .acceptor(crate::transport::Capped::new(MAX_CONNECTIONS))
        .handle(handle);
    server
        .http_builder()
        .http1()
        .header_read_timeout(HEADER_READ_TIMEOUT);
    server
        .serve(router(state).into_make_service())
        .await
        .map_err(LasError::Serve)
}

async fn limit_time(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => LasError::Timeout {
            what: "the request",
            secs: limit.as_secs(),
        }
        .into_response(),
    }
}

async fn health(State(state): State<LasState>) -> Json<Health> {
    Json(state.inner.health.clone())
}

#[tracing::instrument(skip_all)]
async fn evidence(
    State(state): State<LasState>,
    body: Result<Json<EvidenceRequest>, JsonRejection>,
) -> Result<Json<EvidenceResponse>, LasError> {
    let Json(request) = body.map_err(|r| json_rejection(r, MAX_EVIDENCE_REQUEST))?;
    let report_data: [u8; 64] = hex_array("report_data", &request.report_data)?;
    let claimed = request
        .measurement
        .as_deref()
        .map(|m| hex::decode(m.trim()))
        .transpose()
        .map_err(|e| LasError::bad_request("measurement", format!("not hex: {e}")))?;
    if let Some(m) = &claimed
        && !(1..=cloister_attest::sim::MAX_MEASUREMENT_LEN).contains(&m.len())
    {
        return Err(LasError::bad_request(
            "measurement",
            format!(
                "{} bytes; it must be 1 to {}",
                m.len(),
                cloister_attest::sim::MAX_MEASUREMENT_LEN
            ),
        ));
    }
    let evidence = state.collect(report_data, claimed).await?;
    tracing::debug!(
        tee = %evidence.tee,
        len = evidence.bytes.len(),
        sha256 = %hex::encode(&crate::sha256(&evidence.bytes)[..8]),
        "evidence collected"
    );
    // The cache bounds each lookup by its refresh / fetch waits, and records a slow service as
    // a failure (so it backs off); no outer timeout here, which would forget that.
    let found = state.collateral(evidence.format, &evidence.bytes).await;
    let (collateral, collateral_error) = match found {
        Ok(found) => (found.map(|(c, _)| c), None),
        Err(e) => {
            tracing::warn!(error = %e, "evidence served without collateral");
            (None, Some(error_body(&e)))
        }
    };
    Ok(Json(EvidenceResponse {
        tee: evidence.tee,
        format: evidence.format,
        provider: evidence.provider,
        evidence: B64.encode(&evidence.bytes),
        collateral,
        collateral_error,
    }))
}

#[tracing::instrument(skip_all)]
async fn collateral_for(
    State(state): State<LasState>,
    body: Result<Json<CollateralRequest>, JsonRejection>,
) -> Result<Json<CollateralResponse>, LasError> {
    let Json(request) = body.map_err(|r| json_rejection(r, MAX_COLLATERAL_REQUEST))?;
    let evidence = B64
        .decode(request.evidence.trim())
        .map_err(|e| LasError::bad_request("evidence", format!("not base64: {e}")))?;
    let Some(format) = cloister_attest::detect(&evidence).map(EvidenceKind::format) else {
        return Err(LasError::NoCollateralFor {
            reason: "the evidence is neither a DCAP quote nor an SEV-SNP report".into(),
        });
    };
    match state.collateral(format, &evidence).await? {
        Some((collateral, until)) => Ok(Json(CollateralResponse {
            collateral,
            valid_until: rfc3339(until),
        })),
        None => Err(LasError::NoCollateralFor {
            reason: "sim evidence needs no collateral".into(),
        }),
    }
}

async fn dcap_collateral(
    State(state): State<LasState>,
    Path((tee, fmspc, ca)): Path<(String, String, String)>,
) -> Result<Json<CollateralResponse>, LasError> {
    let tee = DcapTee::parse(&tee)
        .ok_or_else(|| LasError::bad_request("tee", format!("{tee:?} is not sgx or tdx")))?;
    let fmspc: [u8; 6] = hex_array("fmspc", &fmspc)?;
    let ca = PckCa::parse(&ca).ok_or_else(|| {
        LasError::bad_request("ca", format!("{ca:?} is not processor or platform"))
    })?;
    let (collateral, until) = state.dcap(&Item::Dcap { tee, fmspc, ca }).await?;
    Ok(Json(CollateralResponse {
        collateral,
        valid_until: rfc3339(until),
    }))
}

async fn snp_collateral(
    State(state): State<LasState>,
    Path((product, chip_id, tcb)): Path<(String, String, String)>,
) -> Result<Json<CollateralResponse>, LasError> {
    let product = AmdProduct::parse(&product).ok_or_else(|| {
        LasError::bad_request("product", format!("{product:?} is not Milan or Genoa"))
    })?;
    let chip_id: [u8; 64] = hex_array("chip_id", &chip_id)?;
    let tcb = SnpTcb(u64::from_be_bytes(hex_array("tcb", &tcb)?));
    let vcek = Item::Vcek {
        product,
        chip_id,
        tcb,
    };
    let chain = Item::AmdCertChain { product };
    let (collateral, until) = state.snp(&vcek, &chain).await?;
    Ok(Json(CollateralResponse {
        collateral,
        valid_until: rfc3339(until),
    }))
}

async fn not_found(method: Method, uri: Uri) -> LasError {
    LasError::NotFound {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

async fn method_not_allowed(method: Method, uri: Uri) -> LasError {
    LasError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Exactly `N` bytes from hex.
fn hex_array<const N: usize>(what: &'static str, text: &str) -> Result<[u8; N], LasError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| LasError::bad_request(what, format!("not hex: {e}")))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        LasError::bad_request(
            what,
            format!(
                "{} bytes; it must be {N} ({} hex digits)",
                bytes.len(),
                2 * N
            ),
        )
    })
}

fn json_rejection(rejection: JsonRejection, limit: usize) -> LasError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        LasError::PayloadTooLarge { limit }
    } else {
        LasError::bad_request("body", rejection.body_text())
    }
}

fn error_body(e: &LasError) -> ErrorBody {
    ErrorBody {
        code: e.code().to_owned(),
        message: public_message(e),
    }
}

/// The message a caller sees: the error's own, except where it could carry host paths or
/// internals, which only the log gets.
fn public_message(e: &LasError) -> String {
    match e {
        LasError::Io { .. }
        | LasError::Internal(_)
        | LasError::Serve(_)
        | LasError::Config { .. }
        | LasError::NoTee { .. } => "internal error; the LAS log has the details".into(),
        LasError::Collect(inner @ cloister_attest::Error::Io { .. }) => format!(
            "the TEE interface failed ({}); the LAS log has the details",
            inner.code()
        ),
        other => other.to_string(),
    }
}

fn status_of(e: &LasError) -> StatusCode {
    match e {
        LasError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        LasError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        LasError::NotFound { .. } => StatusCode::NOT_FOUND,
        LasError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
        LasError::NoCollateralFor { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        LasError::Collect(_) | LasError::CollateralUnavailable { .. } | LasError::Busy(_) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        LasError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
        LasError::Unreachable { .. } | LasError::Refused { .. } | LasError::Protocol { .. } => {
            StatusCode::BAD_GATEWAY
        }
        LasError::Config { .. }
        | LasError::NoTee { .. }
        | LasError::Serve(_)
        | LasError::Io { .. }
        | LasError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for LasError {
    fn into_response(self) -> Response {
        let status = status_of(&self);
        if status.is_server_error() {
            tracing::warn!(code = self.code(), error = %self, "request failed");
        } else {
            tracing::debug!(code = self.code(), error = %self, "request refused");
        }
        let body = ErrorResponse {
            error: error_body(&self),
        };
        let mut response = (status, Json(body)).into_response();
        if matches!(self, LasError::Busy(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CollateralSettings, EvidenceSource};
    use axum::body::Body;
    use cloister_attest::Tee;
    use cloister_attest::sim::{PlatformKey, Statement};

    fn sim_state() -> LasState {
        let config = LasConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            EvidenceSource::Sim {
                key: PlatformKey::generate(),
                template: Statement {
                    measurement: vec![7; 32],
                    ..Default::default()
                },
            },
            CollateralSettings::offline(None),
        )
        .unwrap();
        LasState::new(config).unwrap()
    }

    async fn call(state: LasState, method: &str, path: &str, body: &str) -> (StatusCode, String) {
        use tower::ServiceExt as _;
        let request = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap();
        let response = router(state).oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    fn code(body: &str) -> String {
        let parsed: ErrorResponse = serde_json::from_str(body).unwrap();
        parsed.error.code
    }

    #[tokio::test]
    async fn health_says_sim_and_its_key() {
        let (status, body) = call(sim_state(), "GET", "/v1/health", "").await;
        assert_eq!(status, StatusCode::OK);
        let health: Health = serde_json::from_str(&body).unwrap();
        assert_eq!(health.tee, Tee::Sim);
        assert!(
            health
                .sim_public_key
                .unwrap()
                .starts_with("-----BEGIN PUBLIC KEY")
        );
    }

    #[tokio::test]
    async fn sim_evidence_has_no_collateral() {
        let body = format!(r#"{{"report_data":"{}"}}"#, "ab".repeat(64));
        let (status, body) = call(sim_state(), "POST", "/v1/evidence", &body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let response: EvidenceResponse = serde_json::from_str(&body).unwrap();
        assert_eq!(response.format, EvidenceFormat::Sim);
        assert!(response.collateral.is_none() && response.collateral_error.is_none());
    }

    #[rstest::rstest]
    #[case::short_report_data(
        "POST",
        "/v1/evidence",
        r#"{"report_data":"abcd"}"#,
        400,
        "bad-request"
    )]
    #[case::not_hex("POST", "/v1/evidence", r#"{"report_data":"zz"}"#, 400, "bad-request")]
    #[case::unknown_field(
        "POST",
        "/v1/evidence",
        r#"{"report_data":"00","x":1}"#,
        400,
        "bad-request"
    )]
    #[case::not_json("POST", "/v1/evidence", "report_data", 400, "bad-request")]
    #[case::claimed_measurement_not_hex(
        "POST",
        "/v1/evidence",
        r#"{"report_data":"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000","measurement":"zz"}"#,
        400,
        "bad-request"
    )]
    #[case::claimed_measurement_empty(
        "POST",
        "/v1/evidence",
        r#"{"report_data":"00000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000","measurement":""}"#,
        400,
        "bad-request"
    )]
    #[case::unknown_path("GET", "/v1/nothing", "", 404, "not-found")]
    #[case::wrong_method("GET", "/v1/evidence", "", 405, "method-not-allowed")]
    #[case::bad_tee(
        "GET",
        "/v1/collateral/dcap/sev/00A067110000/processor",
        "",
        400,
        "bad-request"
    )]
    #[case::bad_fmspc(
        "GET",
        "/v1/collateral/dcap/sgx/00A0/processor",
        "",
        400,
        "bad-request"
    )]
    #[case::bad_product("GET", "/v1/collateral/snp/Naples/00/00", "", 400, "bad-request")]
    #[case::sim_needs_none(
        "POST",
        "/v1/collateral",
        r#"{"evidence":"eyJmb3JtYXQiOiJjbG9pc3Rlci1zaW0vdjEifQ=="}"#,
        422,
        "no-collateral-for-evidence"
    )]
    #[case::offline_without_bundle(
        "GET",
        "/v1/collateral/dcap/sgx/00A067110000/processor",
        "",
        503,
        "collateral-unavailable"
    )]
    #[tokio::test]
    async fn errors_have_stable_codes(
        #[case] method: &str,
        #[case] path: &str,
        #[case] body: &str,
        #[case] status: u16,
        #[case] expected: &str,
    ) {
        let (got, body) = call(sim_state(), method, path, body).await;
        assert_eq!(got.as_u16(), status, "{body}");
        assert_eq!(code(&body), expected, "{body}");
    }

    #[tokio::test]
    async fn a_sim_las_signs_the_measurement_the_workload_claims() {
        let key = PlatformKey::generate();
        let verifier = cloister_attest::sim::SimVerifier::new([key.public_key()]);
        let config = LasConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            EvidenceSource::Sim {
                key,
                template: Statement {
                    measurement: vec![7; 32],
                    svn: 2,
                    ..Default::default()
                },
            },
            CollateralSettings::offline(None),
        )
        .unwrap();
        let state = LasState::new(config).unwrap();
        let report_data = [0x11; 64];
        let verify = |body: &str| {
            use cloister_attest::Verifier as _;
            let response: EvidenceResponse = serde_json::from_str(body).unwrap();
            let bytes = B64.decode(response.evidence).unwrap();
            let ctx =
                cloister_attest::Context::new(SystemTime::now()).expect_report_data(report_data);
            verifier.verify(&bytes, &ctx).unwrap().into_claims()
        };
        let claimed = format!(
            r#"{{"report_data":"{}","measurement":"{}"}}"#,
            hex::encode(report_data),
            "c3".repeat(48)
        );
        let (status, body) = call(state.clone(), "POST", "/v1/evidence", &claimed).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let claims = verify(&body);
        assert_eq!(claims.measurement, vec![0xc3; 48]);
        assert_eq!(claims.svn, Some(2), "the rest of the template stays");

        // Without a claim, the template's measurement.
        let plain = format!(r#"{{"report_data":"{}"}}"#, hex::encode(report_data));
        let (status, body) = call(state, "POST", "/v1/evidence", &plain).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(verify(&body).measurement, vec![7; 32]);
    }

    #[tokio::test]
    async fn a_las_that_is_not_sim_refuses_a_claimed_measurement() {
        let config = LasConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            EvidenceSource::Collector(Arc::new(Stuck)),
            CollateralSettings::offline(None),
        )
        .unwrap();
        let body = format!(
            r#"{{"report_data":"{}","measurement":"{}"}}"#,
            "00".repeat(64),
            "c3".repeat(48)
        );
        let (status, text) = call(
            LasState::new(config).unwrap(),
            "POST",
            "/v1/evidence",
            &body,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
        assert_eq!(code(&text), "bad-request");
        assert!(text.contains("only a sim LAS"), "{text}");
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused() {
        let body = format!(r#"{{"report_data":"{}"}}"#, "0".repeat(10_000));
        let (status, body) = call(sim_state(), "POST", "/v1/evidence", &body).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
        assert_eq!(code(&body), "too-large");
    }

    #[test]
    fn io_errors_do_not_leak_paths() {
        let e = LasError::io(
            "/var/lib/cloister/las/secret-dir/x",
            std::io::Error::other("boom"),
        );
        assert!(!public_message(&e).contains("/var/lib"));
        let e = LasError::Collect(cloister_attest::Error::Unavailable {
            what: "configfs-tsm",
            reason: "no provider".into(),
        });
        assert!(public_message(&e).contains("no provider"));
    }

    #[derive(Debug)]
    struct Stuck;
    impl Collector for Stuck {
        fn tee(&self) -> Tee {
            Tee::SevSnp
        }
        fn collect(&self, _: &[u8; 64]) -> Result<Evidence, cloister_attest::Error> {
            std::thread::sleep(Duration::from_millis(300));
            Err(cloister_attest::Error::Unavailable {
                what: "test",
                reason: "stuck".into(),
            })
        }
    }

    #[tokio::test]
    async fn a_hung_tee_interface_times_out_and_bounds_concurrency() {
        let config = LasConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            EvidenceSource::Collector(Arc::new(Stuck)),
            CollateralSettings::offline(None),
        )
        .unwrap()
        .with_limits(Limits {
            collect_timeout: Duration::from_millis(50),
            max_concurrent_collections: 1,
            ..Limits::default()
        })
        .unwrap();
        let state = LasState::new(config).unwrap();
        let body = format!(r#"{{"report_data":"{}"}}"#, "00".repeat(64));
        let (status, text) = call(state.clone(), "POST", "/v1/evidence", &body).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{text}");
        assert_eq!(code(&text), "timeout");
        // The hung collection still holds the only slot.
        let (status, text) = call(state, "POST", "/v1/evidence", &body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert_eq!(code(&text), "busy");
    }
}

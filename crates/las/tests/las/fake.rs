//! A fake Intel PCS and AMD KDS on `127.0.0.1:0`, answering from the recorded collateral in
//! `testdata/tee-evidence/`, that can be switched to fail: HTTP 429 with `Retry-After`, HTTP 503,
//! or closing every connection as soon as it is accepted.
//!
//! Intel PCS API v4 as the LAS calls it: `/{sgx,tdx}/certification/v4/tcb?fmspc=…` and
//! `/qe/identity` answer `{"tcbInfo"|"enclaveIdentity": …, "signature": "<hex>"}` with the issuer
//! chain percent-encoded in a header; `/sgx/certification/v4/pckcrl?ca=…&encoding=der` answers
//! the DER CRL; `/IntelSGXRootCA.der` the root CA CRL. AMD KDS: `/vcek/v1/Milan/<chip id>?…` the
//! DER VCEK of the go-sev-guest report's chip, `/vcek/v1/Milan/cert_chain` the ASK+ARK PEM.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};

pub const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/tee-evidence");

/// The go-sev-guest report's chip id (testdata/tee-evidence/sev-snp/README.md).
pub const GO_CHIP_ID: &str = "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d";

pub fn testdata(path: &str) -> Vec<u8> {
    std::fs::read(format!("{TESTDATA}/{path}")).unwrap()
}

/// How the fake answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Normal = 0,
    /// HTTP 429 with `Retry-After: 120`.
    TooManyRequests = 1,
    /// HTTP 503.
    Unavailable = 2,
    /// Every connection is closed as soon as it is accepted.
    Close = 3,
}

/// The recorded collateral of one platform, as dcap-qvl's `QuoteCollateralV3` JSON holds it.
#[derive(Deserialize)]
struct Recorded {
    pck_crl_issuer_chain: String,
    root_ca_crl: String,
    pck_crl: String,
    tcb_info_issuer_chain: String,
    tcb_info: String,
    tcb_info_signature: String,
    qe_identity_issuer_chain: String,
    qe_identity: String,
    qe_identity_signature: String,
}

impl Recorded {
    fn load(path: &str) -> Self {
        serde_json::from_slice(&testdata(path)).unwrap()
    }
}

pub struct Fake {
    mode: AtomicU8,
    /// Requests that reached a handler.
    requests: AtomicUsize,
    /// Connections accepted (closed ones included).
    connections: AtomicUsize,
    sgx: Recorded,
    tdx: Recorded,
}

impl Fake {
    pub fn set_mode(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn mode(&self) -> Mode {
        match self.mode.load(Ordering::SeqCst) {
            0 => Mode::Normal,
            1 => Mode::TooManyRequests,
            2 => Mode::Unavailable,
            _ => Mode::Close,
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Attempts of any kind: answered requests, or connections closed unanswered.
    pub fn attempts(&self) -> usize {
        self.requests().max(self.connections())
    }
}

pub struct FakeServer {
    pub fake: Arc<Fake>,
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeServer {
    pub async fn start() -> Self {
        let fake = Arc::new(Fake {
            mode: AtomicU8::new(0),
            requests: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            sgx: Recorded::load("sgx-dcap/sgx_quote_collateral.json"),
            tdx: Recorded::load("tdx/tdx_quote_collateral.json"),
        });
        let router = Router::new()
            .route("/{tee}/certification/v4/tcb", get(tcb))
            .route("/{tee}/certification/v4/qe/identity", get(qe_identity))
            .route("/sgx/certification/v4/pckcrl", get(pck_crl))
            .route("/IntelSGXRootCA.der", get(root_ca_crl))
            .route("/vcek/v1/{product}/{chip}", get(vcek))
            .layer(middleware::from_fn_with_state(fake.clone(), failing))
            .with_state(fake.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = Flaky {
            inner: listener,
            fake: fake.clone(),
        };
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self { fake, addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Collateral settings pointing at this fake.
    pub fn settings(&self) -> cloister_las::CollateralSettings {
        cloister_las::CollateralSettings {
            intel_sgx_url: Some(self.url("/sgx/certification/v4")),
            intel_tdx_url: Some(self.url("/tdx/certification/v4")),
            intel_root_ca_crl_url: Some(self.url("/IntelSGXRootCA.der")),
            amd_kds_url: Some(self.url("")),
            ..cloister_las::CollateralSettings::offline(None)
        }
    }
}

/// A listener that closes connections unanswered in [`Mode::Close`].
struct Flaky {
    inner: TcpListener,
    fake: Arc<Fake>,
}

impl axum::serve::Listener for Flaky {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
            self.fake.connections.fetch_add(1, Ordering::SeqCst);
            if self.fake.mode() == Mode::Close {
                drop(stream);
                continue;
            }
            return (stream, addr);
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        axum::serve::Listener::local_addr(&self.inner)
    }
}

/// Counts requests, fails them in the failing modes, and closes every connection after its
/// answer (so that a pooled connection never hides [`Mode::Close`]).
async fn failing(State(fake): State<Arc<Fake>>, request: Request, next: Next) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    let mut response = match fake.mode() {
        Mode::TooManyRequests => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "120")],
        )
            .into_response(),
        Mode::Unavailable => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => next.run(request).await,
    };
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

fn recorded<'a>(fake: &'a Fake, tee: &str) -> Option<&'a Recorded> {
    match tee {
        "sgx" => Some(&fake.sgx),
        "tdx" => Some(&fake.tdx),
        _ => None,
    }
}

fn encoded(chain: &str) -> HeaderValue {
    HeaderValue::from_str(&utf8_percent_encode(chain, NON_ALPHANUMERIC).to_string()).unwrap()
}

fn signed(field: &str, body: &str, signature: &str) -> String {
    // The body exactly as Intel signed it, embedded verbatim.
    format!(r#"{{"{field}":{body},"signature":"{signature}"}}"#)
}

async fn tcb(
    State(fake): State<Arc<Fake>>,
    Path(tee): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let Some(r) = recorded(&fake, &tee) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let fmspc: serde_json::Value = serde_json::from_str(&r.tcb_info).unwrap();
    if query.get("fmspc").map(|f| f.to_uppercase())
        != fmspc["fmspc"].as_str().map(str::to_uppercase)
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert("TCB-Info-Issuer-Chain", encoded(&r.tcb_info_issuer_chain));
    (
        headers,
        signed("tcbInfo", &r.tcb_info, &r.tcb_info_signature),
    )
        .into_response()
}

async fn qe_identity(State(fake): State<Arc<Fake>>, Path(tee): Path<String>) -> Response {
    let Some(r) = recorded(&fake, &tee) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        "SGX-Enclave-Identity-Issuer-Chain",
        encoded(&r.qe_identity_issuer_chain),
    );
    (
        headers,
        signed("enclaveIdentity", &r.qe_identity, &r.qe_identity_signature),
    )
        .into_response()
}

async fn pck_crl(
    State(fake): State<Arc<Fake>>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // The SGX quote's PCK is issued by the Processor CA, the TDX quote's by the Platform CA.
    let r = match query.get("ca").map(String::as_str) {
        Some("processor") => &fake.sgx,
        Some("platform") => &fake.tdx,
        _ => return StatusCode::BAD_REQUEST.into_response(),
    };
    let mut headers = HeaderMap::new();
    headers.insert("SGX-PCK-CRL-Issuer-Chain", encoded(&r.pck_crl_issuer_chain));
    (headers, hex::decode(&r.pck_crl).unwrap()).into_response()
}

async fn root_ca_crl(State(fake): State<Arc<Fake>>) -> Vec<u8> {
    hex::decode(&fake.sgx.root_ca_crl).unwrap()
}

async fn vcek(
    Path((product, chip)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if product != "Milan" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if chip == "cert_chain" {
        return testdata("sev-snp/go-sev-guest/ask_ark_milan.pem").into_response();
    }
    // The report's reported TCB: bl 2, tee 0, snp 5, ucode 68.
    let tcb = ["blSPL", "teeSPL", "snpSPL", "ucodeSPL"].map(|k| query.get(k).cloned());
    if chip != GO_CHIP_ID || tcb != ["2", "0", "5", "68"].map(|v| Some(v.to_owned())) {
        return StatusCode::NOT_FOUND.into_response();
    }
    testdata("sev-snp/go-sev-guest/vcek.der").into_response()
}

//! The Local Attestation Service (LAS): Cloister's node agent.
//!
//! One LAS runs on every node (a Kubernetes DaemonSet with a `hostPort`); workloads on the node
//! reach it at `http://$(status.hostIP):9480` ([`DEFAULT_PORT`], passed to them as
//! [`LAS_URL_ENV`]). It does two things:
//!
//! - **Evidence**: `POST /v1/evidence` with the workload's 64-byte `report_data` returns the
//!   node's TEE evidence carrying it — from configfs-tsm (SEV-SNP, TDX confidential VMs) or
//!   Gramine, found by [`cloister_attest::collect::detect`], or, for development, `sim` evidence
//!   signed by a simulated platform key the LAS holds. A sim LAS signs the measurement the
//!   workload claims for itself when the request carries one ([`EvidenceRequest::measurement`],
//!   simulation only: there is no hardware to measure the workload); any other LAS refuses it.
//! - **Collateral**: Intel (PCS) and AMD (KDS) collateral for that evidence is attached when it
//!   can be, from an on-disk [cache](collateral) that keeps serving valid copies while the
//!   services are rate-limited or down, and that can be seeded from an offline bundle.
//!
//! # Why plain HTTP
//!
//! The LAS serves no secret and decides nothing. Evidence is signed by the TEE hardware and binds
//! the `report_data` the caller chose (normally a hash of the CAS's nonce and the workload's TLS
//! key), so a network attacker can neither forge it nor make it vouch for another key; collateral
//! is signed by Intel or AMD and checked by the verifier against their roots. TLS would protect
//! nothing the signatures do not, and would need a certificate per node. The one secret a LAS can
//! hold is the `sim` platform key, which exists for development only (policies must opt in to
//! `sim` evidence, and production policies do not).
//!
//! What plain HTTP does *not* give is a check of who asks. On a confidential-VM node, evidence
//! describes the node's VM, and any client that can reach the LAS obtains evidence binding a key
//! of its choice. Restrict who can reach the `hostPort` (a NetworkPolicy, or listening on the
//! host IP only) so that only the node's pods can.
//!
//! # Example
//!
//! ```
//! use cloister_attest::sim::{PlatformKey, SimVerifier, Statement};
//! use cloister_attest::{Context, Verifier as _, binding};
//! use cloister_las::{self as las, CollateralSettings, EvidenceSource, LasClient, LasConfig, LasState};
//! use std::time::SystemTime;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A development LAS: sim evidence, no collateral services.
//! let key = PlatformKey::generate();
//! let verifier = SimVerifier::new([key.public_key()]);
//! let template = Statement { measurement: vec![0xab; 32], ..Default::default() };
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let addr = listener.local_addr()?;
//! let config = LasConfig::new(addr, EvidenceSource::Sim { key, template }, CollateralSettings::offline(None))?;
//! let server = tokio::spawn(las::run(listener, LasState::new(config)?, std::future::pending()));
//!
//! // A workload asks for evidence binding its nonce and key.
//! let report_data = binding::report_data(b"nonce from the CAS", b"workload SPKI");
//! let got = LasClient::new(&format!("http://{addr}"))?.evidence(&report_data).await?;
//! let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
//! assert_eq!(verifier.verify(&got.evidence.bytes, &ctx)?.claims().measurement, vec![0xab; 32]);
//! server.abort();
//! # Ok(())
//! # }
//! ```

pub mod api;
mod client;
pub mod collateral;
mod config;
mod error;
pub mod locate;
mod server;
mod transport;

pub use api::{
    CollateralRequest, CollateralResponse, ErrorBody, ErrorResponse, EvidenceRequest,
    EvidenceResponse, Health, SourceKind, WireCollateral,
};
pub use client::{Collateral, LasClient, LasCollector, LasEvidence};
pub use collateral::{AmdProduct, CollateralCache, DcapTee, Item, PckCa, RefreshPolicy, SnpTcb};
pub use config::{
    AMD_KDS_URL, CollateralSettings, EvidenceSource, INTEL_ROOT_CA_CRL_URL, INTEL_SGX_URL,
    INTEL_TDX_URL, LasConfig, Limits,
};
pub use error::LasError;
pub use server::{LasState, router, run};

use std::fmt;
use std::time::{Duration, SystemTime};

/// The LAS's port unless configured otherwise.
pub const DEFAULT_PORT: u16 = 9480;

/// The environment variable that tells a workload where its node's LAS is
/// (`http://$(HOST_IP):9480`, with `HOST_IP` from the downward API's `status.hostIP`).
pub const LAS_URL_ENV: &str = "CLOISTER_LAS_URL";

/// The time, injectable so that tests can move it across collateral expiry.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// SHA-256 of `bytes`.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

/// rustls with the ring provider and Mozilla's roots (webpki-roots): no system certificate store
/// is needed, so the LAS image can be minimal.
fn tls_config() -> Result<rustls::ClientConfig, LasError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LasError::Internal(format!("rustls protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTP client for collateral services and for the LAS API.
fn http_client(timeout: Duration) -> Result<reqwest::Client, LasError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("cloister-las/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LasError::Internal(format!("building the HTTP client: {e}")))
}

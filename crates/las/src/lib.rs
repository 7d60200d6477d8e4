//! The Local Attestation Service (LAS): Cloister's node agent, and its client.
//!
//! The LAS is its own product (a DaemonSet, deployed apart from the CAS), so it is its own crate,
//! and its key design decision is that workloads link only its client: the agent itself (HTTP
//! server, collateral cache and fetchers, evidence sources) is behind the default `server`
//! feature, and with `default-features = false` this crate is [`LasClient`], the blocking
//! [`LasCollector`] and the [wire types](api), with no server stack (no axum).
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
//! A development LAS (feature `server`) and a workload asking it for evidence:
//!
//! ```
//! # #[cfg(not(feature = "server"))] fn main() {}
//! # #[cfg(feature = "server")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cloister_attest::sim::{PlatformKey, SimVerifier, Statement};
//! use cloister_attest::{Context, Verifier as _, binding};
//! use cloister_las::{self as las, CollateralSettings, EvidenceSource, LasClient, LasConfig, LasState};
//! use std::time::SystemTime;
//!
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
#[cfg(feature = "server")]
mod config;
mod error;
mod http;
#[cfg(feature = "server")]
pub mod locate;
#[cfg(feature = "server")]
mod server;
#[cfg(feature = "server")]
mod transport;

pub use api::{
    CollateralRequest, CollateralResponse, ErrorBody, ErrorResponse, EvidenceRequest,
    EvidenceResponse, Health, SourceKind, WireCollateral,
};
pub use client::{LasClient, LasCollector, LasEvidence};
pub use collateral::{AmdProduct, DcapTee, Item, PckCa, SnpTcb};
#[cfg(feature = "server")]
pub use collateral::{CollateralCache, RefreshPolicy};
#[cfg(feature = "server")]
pub use config::{
    AMD_KDS_URL, CollateralSettings, EvidenceSource, INTEL_ROOT_CA_CRL_URL, INTEL_SGX_URL,
    INTEL_TDX_URL, LasConfig, Limits,
};
pub use error::LasError;
#[cfg(feature = "server")]
pub use server::{LasState, router, run};

/// The LAS's port unless configured otherwise.
pub const DEFAULT_PORT: u16 = 9480;

/// The environment variable that tells a workload where its node's LAS is
/// (`http://$(HOST_IP):9480`, with `HOST_IP` from the downward API's `status.hostIP`).
pub const LAS_URL_ENV: &str = "CLOISTER_LAS_URL";

/// The time, injectable so that tests can move it across collateral expiry.
#[cfg(feature = "server")]
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> std::time::SystemTime;
}

/// The system clock.
#[cfg(feature = "server")]
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[cfg(feature = "server")]
impl Clock for SystemClock {
    fn now(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }
}

/// SHA-256 of `bytes`.
#[cfg(feature = "server")]
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

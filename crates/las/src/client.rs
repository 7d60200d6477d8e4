//! The LAS client: [`LasClient`] (async) for workloads and tools, and [`LasCollector`], a
//! blocking [`Collector`] so that the attest flow can take its evidence from the node's LAS.
//!
//! There is one HTTP path: the collector drives a [`LasClient`] on a current-thread runtime of
//! its own, so requests, size caps and error mapping cannot drift apart between the two.
//!
//! Collateral comes back as [`cloister_attest::Collateral`], verified with
//! [`cloister_attest::Verifiers`] like any other: the LAS maps no kind of evidence to a verifier
//! (that is `cloister-attest`'s alone), and its wire format ([`WireCollateral`]) is converted
//! here, at the edge, by `cloister-attest`'s parsers.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::collect::{Collector, Evidence};
use cloister_attest::dcap;
use cloister_attest::{Collateral, EvidenceKind, Tee};
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::LasError;
use crate::api::{
    CollateralRequest, CollateralResponse, ErrorBody, ErrorResponse, EvidenceRequest,
    EvidenceResponse, Health, SourceKind, WireCollateral,
};
use crate::collateral::{AmdProduct, DcapTee, PckCa, SnpTcb};
use crate::http::{error_chain, read_body};

/// The largest answer read from a LAS.
const MAX_RESPONSE: usize = 4 * 1024 * 1024;
/// The default timeout of a request to the LAS (collection and collateral included).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(90);

/// Collateral as the API carries it ([`WireCollateral`]), parsed into the form every verifier of
/// Cloister takes: DCAP collateral JSON by `cloister-attest`'s parser, an SEV-SNP VCEK and chain
/// checked up to a bundled AMD root. The wire format stays the LAS's; this is its one edge.
fn collateral_from_wire(wire: WireCollateral, url: &str) -> Result<Collateral, LasError> {
    let protocol = |reason: String| LasError::Protocol {
        url: url.to_owned(),
        reason,
    };
    match wire {
        WireCollateral::Dcap(json) => dcap::Collateral::from_json(json.get().as_bytes())
            .map(Collateral::dcap)
            .map_err(|e| protocol(format!("DCAP collateral: {e}"))),
        WireCollateral::Snp { vcek, cert_chain } => {
            let vcek_der = B64
                .decode(vcek)
                .map_err(|e| protocol(format!("VCEK: {e}")))?;
            Collateral::snp(vcek_der, Some(cert_chain.into_bytes()))
                .map_err(|e| protocol(format!("SEV-SNP collateral: {e}")))
        }
    }
}

/// Evidence from a LAS, with its collateral when the LAS could attach it.
#[derive(Clone, Debug)]
pub struct LasEvidence {
    /// The evidence.
    pub evidence: Evidence,
    /// The collateral to verify it with [`cloister_attest::Verifiers::verify`] (never for `sim`).
    pub collateral: Option<Collateral>,
    /// The same collateral in the form the CAS takes it (`AttestRequest::collateral`): DCAP
    /// collateral JSON as the LAS sent it, or `{"vcek": …, "chain": …}` for SEV-SNP.
    pub attest_collateral: Option<serde_json::Value>,
    /// Why the LAS attached no collateral to evidence that needs some.
    pub collateral_error: Option<ErrorBody>,
}

impl LasEvidence {
    fn from_response(response: EvidenceResponse, url: &str) -> Result<Self, LasError> {
        let protocol = |reason: String| LasError::Protocol {
            url: url.to_owned(),
            reason,
        };
        let bytes = B64
            .decode(&response.evidence)
            .map_err(|e| protocol(format!("evidence is not base64: {e}")))?;
        // The evidence must be what the LAS says it is.
        let kind = cloister_attest::detect(&bytes);
        let labelled = EvidenceKind::labelled(response.format, response.tee);
        // A LAS serves hardware or sim evidence, never an MAA token.
        if kind.is_none() || kind != labelled || kind == Some(EvidenceKind::Maa) {
            return Err(protocol(format!(
                "the LAS says {} {} evidence, the bytes look like {kind:?}",
                response.tee, response.format
            )));
        }
        let attest_collateral = match &response.collateral {
            None => None,
            Some(WireCollateral::Dcap(json)) => Some(
                serde_json::from_str(json.get())
                    .map_err(|e| protocol(format!("DCAP collateral: {e}")))?,
            ),
            Some(WireCollateral::Snp { vcek, cert_chain }) => {
                Some(serde_json::json!({ "vcek": vcek, "chain": cert_chain }))
            }
        };
        let collateral = response
            .collateral
            .map(|wire| collateral_from_wire(wire, url))
            .transpose()?;
        Ok(Self {
            evidence: Evidence {
                tee: response.tee,
                format: response.format,
                bytes,
                provider: response.provider,
                aux: None,
            },
            collateral,
            attest_collateral,
            collateral_error: response.collateral_error,
        })
    }
}

fn parse_base(base: &str) -> Result<Url, LasError> {
    let url =
        Url::parse(base).map_err(|e| LasError::config("LAS URL", format!("{base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(LasError::config(
            "LAS URL",
            format!("{base:?}: an http(s) URL with a host, e.g. http://10.0.0.5:9480"),
        ));
    }
    Ok(url)
}

fn endpoint(base: &Url, path: &str) -> Result<Url, LasError> {
    let joined = format!("{}{path}", base.as_str().trim_end_matches('/'));
    Url::parse(&joined).map_err(|e| LasError::config("LAS URL", format!("{joined:?}: {e}")))
}

fn json_body<B: Serialize>(body: &B) -> Result<Vec<u8>, LasError> {
    serde_json::to_vec(body).map_err(|e| LasError::Internal(format!("encoding a request: {e}")))
}

/// Turn an HTTP answer into `T`, or the LAS's error.
fn decode<T: DeserializeOwned>(status: u16, body: &[u8], url: &str) -> Result<T, LasError> {
    if (200..300).contains(&status) {
        return serde_json::from_slice(body).map_err(|e| LasError::Protocol {
            url: url.to_owned(),
            reason: format!("HTTP {status} with a body that is not the API's: {e}"),
        });
    }
    match serde_json::from_slice::<ErrorResponse>(body) {
        Ok(ErrorResponse { error }) => Err(LasError::Refused {
            status,
            code: error.code,
            message: error.message,
        }),
        Err(_) => Err(LasError::Protocol {
            url: url.to_owned(),
            reason: format!("HTTP {status} without an API error body"),
        }),
    }
}

/// An async client of a LAS.
#[derive(Clone, Debug)]
pub struct LasClient {
    base: Url,
    http: reqwest::Client,
}

impl LasClient {
    /// A client of the LAS at `base_url` (e.g. `http://10.0.0.5:9480`), with a 90 s timeout.
    pub fn new(base_url: &str) -> Result<Self, LasError> {
        Self::with_timeout(base_url, DEFAULT_TIMEOUT)
    }

    /// A client with another request timeout.
    pub fn with_timeout(base_url: &str, timeout: Duration) -> Result<Self, LasError> {
        Ok(Self {
            base: parse_base(base_url)?,
            http: crate::http::http_client(timeout)?,
        })
    }

    async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, LasError> {
        let url = endpoint(&self.base, path)?;
        let shown = url.to_string();
        let request = match body {
            Some(body) => self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json_body(body)?),
            None => self.http.get(url),
        };
        let response = request.send().await.map_err(|e| LasError::Unreachable {
            url: shown.clone(),
            reason: error_chain(&e),
        })?;
        let status = response.status().as_u16();
        let bytes =
            read_body(response, MAX_RESPONSE)
                .await
                .map_err(|reason| LasError::Unreachable {
                    url: shown.clone(),
                    reason,
                })?;
        decode(status, &bytes, &shown)
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, LasError> {
        self.call::<(), _>("/v1/health", None).await
    }

    /// Evidence carrying `report_data`, with its collateral when the LAS has it.
    #[tracing::instrument(skip_all, fields(las = %self.base))]
    pub async fn evidence(&self, report_data: &[u8; 64]) -> Result<LasEvidence, LasError> {
        let request = EvidenceRequest {
            report_data: hex::encode(report_data),
            measurement: None,
        };
        self.evidence_for(&request).await
    }

    async fn evidence_for(&self, request: &EvidenceRequest) -> Result<LasEvidence, LasError> {
        let response: EvidenceResponse = self.call("/v1/evidence", Some(request)).await?;
        LasEvidence::from_response(response, self.base.as_str())
    }

    /// Collateral for evidence collected elsewhere (an SGX enclave's own quote).
    pub async fn collateral_for(&self, evidence: &[u8]) -> Result<Collateral, LasError> {
        let request = CollateralRequest {
            evidence: B64.encode(evidence),
        };
        let response: CollateralResponse = self.call("/v1/collateral", Some(&request)).await?;
        collateral_from_wire(response.collateral, self.base.as_str())
    }

    /// The LAS's DCAP collateral for a platform, and when it expires (RFC 3339).
    pub async fn dcap_collateral(
        &self,
        tee: DcapTee,
        fmspc: &[u8; 6],
        ca: PckCa,
    ) -> Result<(Collateral, String), LasError> {
        let path = format!(
            "/v1/collateral/dcap/{}/{}/{}",
            tee.as_str(),
            hex::encode_upper(fmspc),
            ca.as_str()
        );
        let response: CollateralResponse = self.call::<(), _>(&path, None).await?;
        let collateral = collateral_from_wire(response.collateral, self.base.as_str())?;
        Ok((collateral, response.valid_until))
    }

    /// The LAS's VCEK and ASK/ARK chain for a chip at a TCB, and when they expire (RFC 3339).
    pub async fn snp_collateral(
        &self,
        product: AmdProduct,
        chip_id: &[u8; 64],
        tcb: SnpTcb,
    ) -> Result<(Collateral, String), LasError> {
        let path = format!(
            "/v1/collateral/snp/{product}/{}/{:016x}",
            hex::encode(chip_id),
            tcb.0
        );
        let response: CollateralResponse = self.call::<(), _>(&path, None).await?;
        let collateral = collateral_from_wire(response.collateral, self.base.as_str())?;
        Ok((collateral, response.valid_until))
    }
}

/// A blocking [`Collector`] that takes evidence from a LAS, for the attest flow (`cloister run`
/// collects through a `Collector` whatever the TEE).
///
/// Like every collector it blocks: call it from a plain thread or `spawn_blocking`, never
/// directly on an async runtime's thread (reqwest's blocking client refuses that).
///
/// A sim LAS can sign the measurement the workload claims for itself
/// ([`LasCollector::claiming_measurement`]; simulation only, see
/// [`EvidenceRequest::measurement`]).
#[derive(Debug)]
pub struct LasCollector {
    client: LasClient,
    runtime: CollectorRuntime,
    tee: Tee,
    source: SourceKind,
    claimed_measurement: Option<Vec<u8>>,
}

impl LasCollector {
    /// Connect to the LAS at `base_url` and learn its TEE (`GET /v1/health`).
    pub fn connect(base_url: &str) -> Result<Self, LasError> {
        let client = LasClient::new(base_url)?;
        let runtime = CollectorRuntime::new()?;
        let health = runtime.block_on(client.health())?;
        Ok(Self {
            client,
            runtime,
            tee: health.tee,
            source: health.source,
            claimed_measurement: None,
        })
    }

    /// Where the LAS said its evidence comes from, at connect.
    pub fn source(&self) -> SourceKind {
        self.source
    }

    /// **Simulation only.** Ask a sim LAS to sign `measurement` (the workload's own) instead of
    /// its template's. Sent only when the LAS said at connect that it is a sim LAS; a hardware
    /// LAS's evidence carries the TEE's own measurement, whatever is claimed here.
    pub fn claiming_measurement(mut self, measurement: Vec<u8>) -> Self {
        self.claimed_measurement = Some(measurement);
        self
    }

    /// Evidence carrying `report_data`, with its collateral when the LAS has it.
    pub fn collect_with_collateral(&self, report_data: &[u8; 64]) -> Result<LasEvidence, LasError> {
        let measurement = match (&self.claimed_measurement, self.source) {
            (Some(m), SourceKind::Sim) => Some(hex::encode(m)),
            _ => None,
        };
        let request = EvidenceRequest {
            report_data: hex::encode(report_data),
            measurement,
        };
        let got = self.runtime.block_on(self.client.evidence_for(&request))?;
        if got.evidence.tee != self.tee {
            return Err(LasError::Protocol {
                url: self.client.base.to_string(),
                reason: format!(
                    "the LAS served {} evidence, it said {} at connect",
                    got.evidence.tee, self.tee
                ),
            });
        }
        Ok(got)
    }
}

/// The collector's own current-thread runtime, on which it drives its [`LasClient`].
#[derive(Debug)]
struct CollectorRuntime(Option<tokio::runtime::Runtime>);

impl CollectorRuntime {
    fn new() -> Result<Self, LasError> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(|e| LasError::Internal(format!("starting the LAS client's runtime: {e}")))
    }

    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        match &self.0 {
            Some(rt) => rt.block_on(future),
            // Only `drop` takes the runtime out.
            None => unreachable!("the collector's runtime is used after drop"),
        }
    }
}

impl Drop for CollectorRuntime {
    /// Shut down without waiting, so that dropping a collector never blocks (nor panics when it
    /// happens on an async runtime's thread): nothing runs on it between calls.
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Collector for LasCollector {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, cloister_attest::Error> {
        self.collect_with_collateral(report_data)
            .map(|got| got.evidence)
            .map_err(|e| cloister_attest::Error::Unavailable {
                what: "the node's LAS",
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_attest::EvidenceFormat;

    #[test]
    fn base_urls_are_checked() {
        assert!(LasClient::new("http://10.0.0.5:9480").is_ok());
        for bad in ["10.0.0.5:9480", "unix:/run/las.sock", "http://"] {
            assert!(
                matches!(LasClient::new(bad), Err(LasError::Config { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn endpoints_join_with_or_without_a_trailing_slash() {
        for base in ["http://h:1", "http://h:1/"] {
            assert_eq!(
                endpoint(&parse_base(base).unwrap(), "/v1/health")
                    .unwrap()
                    .as_str(),
                "http://h:1/v1/health"
            );
        }
    }

    #[test]
    fn error_answers_become_refusals_with_their_code() {
        let body = br#"{"error":{"code":"busy","message":"retry"}}"#;
        let err = decode::<Health>(503, body, "u").unwrap_err();
        assert!(
            matches!(&err, LasError::Refused { status: 503, code, .. } if code == "busy"),
            "{err:?}"
        );
        assert!(matches!(
            decode::<Health>(502, b"<html>", "u"),
            Err(LasError::Protocol { .. })
        ));
        assert!(matches!(
            decode::<Health>(200, b"{}", "u"),
            Err(LasError::Protocol { .. })
        ));
    }

    macro_rules! go_sev_guest {
        ($file:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/tee-evidence/sev-snp/go-sev-guest/",
                $file
            ))
        };
    }

    fn snp_response(vcek_der: &[u8], chain: &[u8]) -> EvidenceResponse {
        EvidenceResponse {
            tee: Tee::SevSnp,
            format: EvidenceFormat::SnpReport,
            provider: Some("sev_guest".into()),
            evidence: B64.encode(go_sev_guest!("attestation.bin")),
            collateral: Some(WireCollateral::Snp {
                vcek: B64.encode(vcek_der),
                cert_chain: String::from_utf8(chain.to_vec()).unwrap(),
            }),
            collateral_error: None,
        }
    }

    #[test]
    fn snp_collateral_is_also_kept_in_the_form_the_cas_takes() {
        let vcek = go_sev_guest!("vcek.der");
        let chain = go_sev_guest!("ask_ark_milan.pem");
        let got = LasEvidence::from_response(snp_response(vcek, chain), "http://las").unwrap();
        assert_eq!(
            got.attest_collateral,
            Some(serde_json::json!({
                "vcek": B64.encode(vcek),
                "chain": String::from_utf8(chain.to_vec()).unwrap(),
            }))
        );
        // Both forms verify the report, through the one trust set of `cloister-attest`.
        let ctx = cloister_attest::Context::new(
            humantime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap(),
        );
        let from_cas_form =
            Collateral::from_json(EvidenceKind::Snp, got.attest_collateral.as_ref().unwrap())
                .unwrap();
        for collateral in [got.collateral.as_ref(), from_cas_form.as_ref()] {
            let verified = cloister_attest::Verifiers::new()
                .verify(&got.evidence.bytes, None, collateral, &ctx)
                .unwrap();
            assert_eq!(verified.claims().tee, Tee::SevSnp);
        }
    }

    #[test]
    fn collateral_that_cannot_verify_anything_is_a_protocol_error() {
        let vcek = go_sev_guest!("vcek.der");
        for response in [
            snp_response(b"vcek der", go_sev_guest!("ask_ark_milan.pem")),
            snp_response(vcek, b"-----BEGIN CERTIFICATE-----\n"),
        ] {
            let err = LasEvidence::from_response(response, "http://las").unwrap_err();
            assert!(
                matches!(&err, LasError::Protocol { reason, .. } if reason.starts_with("SEV-SNP collateral")),
                "{err:?}"
            );
        }
    }

    #[test]
    fn evidence_that_is_not_what_the_las_says_is_refused() {
        let response = EvidenceResponse {
            tee: Tee::Sgx,
            format: EvidenceFormat::DcapQuote,
            provider: None,
            evidence: B64.encode(br#"{"format":"cloister-sim/v1"}"#),
            collateral: None,
            collateral_error: None,
        };
        let err = LasEvidence::from_response(response, "http://las").unwrap_err();
        assert!(matches!(err, LasError::Protocol { .. }), "{err:?}");
    }
}

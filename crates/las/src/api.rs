//! The LAS's HTTP API: the JSON bodies shared by the server and the client.
//!
//! | endpoint | request | answer |
//! | --- | --- | --- |
//! | `GET /v1/health` | — | [`Health`] |
//! | `POST /v1/evidence` | [`EvidenceRequest`] (sim only: with the workload's claimed measurement) | [`EvidenceResponse`] |
//! | `POST /v1/collateral` | [`CollateralRequest`] (evidence the caller collected itself) | [`CollateralResponse`] |
//! | `GET /v1/collateral/dcap/{sgx\|tdx}/{fmspc}/{processor\|platform}` | — | [`CollateralResponse`] |
//! | `GET /v1/collateral/snp/{Milan\|Genoa}/{chip_id}/{tcb}` | — | [`CollateralResponse`] |
//!
//! `fmspc` is 12 hex digits, `chip_id` 128, `tcb` the 64-bit reported TCB as 16 hex digits.
//! Every error is an [`ErrorResponse`] with a stable `code` ([`super::LasError::code`]).

use cloister_attest::{EvidenceFormat, Tee};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `GET /v1/health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Always `ok` when the LAS answers.
    pub status: String,
    /// The TEE whose evidence this LAS serves.
    pub tee: Tee,
    /// Where its evidence comes from.
    pub source: SourceKind,
    /// The TEE interface's provider: `sev_guest`, `tdx_guest`, `gramine`, or none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// For `sim`, the platform's public key (PEM), for a development CAS's trust list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_public_key: Option<String>,
    /// The LAS's version.
    pub version: String,
}

/// Where a LAS's evidence comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// A simulated platform key (development only).
    Sim,
    /// The machine's TEE interface (configfs-tsm or Gramine).
    Hardware,
    /// A collector given by the embedding program.
    Custom,
}

/// `POST /v1/evidence`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRequest {
    /// The 64 bytes the evidence must carry, as 128 hex digits.
    pub report_data: String,
    /// **Simulation only.** The measurement the workload claims for itself, hex (1 to 64
    /// bytes), for the evidence to carry instead of the sim template's.
    ///
    /// A sim TEE has no hardware that measures the workload, so a sim LAS signs the workload's
    /// own claim (`cloister run` measures its executable and app bundle). That makes sim evidence
    /// say exactly what the workload says, which is all `sim` ever meant: policies accept it
    /// only when they name `sim`. A LAS in any other mode refuses a request carrying it
    /// (`bad-request`): a hardware TEE measures the workload itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measurement: Option<String>,
}

/// The answer to `POST /v1/evidence`.
#[derive(Debug, Serialize, Deserialize)]
pub struct EvidenceResponse {
    /// The TEE that produced the evidence.
    pub tee: Tee,
    /// Its format, which selects the verifier.
    pub format: EvidenceFormat,
    /// The TEE interface's provider, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// The evidence, standard base64.
    pub evidence: String,
    /// The collateral to verify it, when the LAS could attach it (never for `sim`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral: Option<WireCollateral>,
    /// Why no collateral is attached, for evidence that needs some.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collateral_error: Option<ErrorBody>,
}

/// Collateral as the API carries it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireCollateral {
    /// dcap-qvl's `QuoteCollateralV3` JSON, as is.
    Dcap(Box<RawValue>),
    /// The VCEK and the ASK/ARK chain.
    Snp {
        /// The VCEK certificate, DER, standard base64.
        vcek: String,
        /// The ASK then the ARK, PEM.
        cert_chain: String,
    },
}

/// `POST /v1/collateral`: collateral for evidence the caller collected itself (an SGX enclave's
/// own quote, say).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollateralRequest {
    /// The evidence (a DCAP quote or a raw SEV-SNP report), standard base64.
    pub evidence: String,
}

/// Collateral, with when it expires.
#[derive(Debug, Serialize, Deserialize)]
pub struct CollateralResponse {
    /// The collateral.
    pub collateral: WireCollateral,
    /// When the earliest of its items expires, RFC 3339.
    pub valid_until: String,
}

/// An error answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// The error.
    pub error: ErrorBody,
}

/// What went wrong: a stable code and a message the caller can act on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The stable code ([`super::LasError::code`]).
    pub code: String,
    /// The message.
    pub message: String,
}

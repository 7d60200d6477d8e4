//! The normalised claims every verifier produces.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Which kind of TEE produced the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Tee {
    /// Intel SGX enclave.
    Sgx,
    /// Intel TDX trust domain.
    Tdx,
    /// AMD SEV-SNP confidential VM.
    SevSnp,
    /// Cloister's software TEE for development and CI. Never hardware; policies must name it.
    Sim,
}

impl Tee {
    /// The stable lower-case name used in JSON, policies and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Tee::Sgx => "sgx",
            Tee::Tdx => "tdx",
            Tee::SevSnp => "sev-snp",
            Tee::Sim => "sim",
        }
    }
}

impl fmt::Display for Tee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The format of the evidence that was verified (the same TEE can be vouched for in several ways).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceFormat {
    /// An Intel DCAP ECDSA quote (SGX v3, TDX v4 / v5), checked against Intel collateral.
    DcapQuote,
    /// An AMD SEV-SNP attestation report, checked against the VCEK → ASK → ARK chain.
    SnpReport,
    /// A Microsoft Azure Attestation token, checked against the provider's JWKS.
    MaaToken,
    /// A statement signed by a simulated platform key.
    Sim,
}

impl fmt::Display for EvidenceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EvidenceFormat::DcapQuote => "dcap-quote",
            EvidenceFormat::SnpReport => "snp-report",
            EvidenceFormat::MaaToken => "maa-token",
            EvidenceFormat::Sim => "sim",
        })
    }
}

/// The platform's TCB status as its vendor's collateral (or the attestation provider) states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TcbStatus {
    /// The platform is patched to the latest TCB level.
    UpToDate,
    /// Up to date, but software mitigations are needed for some advisories.
    #[serde(rename = "SWHardeningNeeded")]
    SwHardeningNeeded,
    /// Up to date, but the platform configuration needs changing.
    ConfigurationNeeded,
    /// Both of the above.
    #[serde(rename = "ConfigurationAndSWHardeningNeeded")]
    ConfigurationAndSwHardeningNeeded,
    /// The platform's TCB level is outdated.
    OutOfDate,
    /// Outdated, and the configuration needs changing.
    OutOfDateConfigurationNeeded,
    /// The evidence format carries no vendor TCB status (SEV-SNP reports); policies compare
    /// TCB versions instead.
    NotReported,
}

impl TcbStatus {
    /// The status name as Intel's collateral spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            TcbStatus::UpToDate => "UpToDate",
            TcbStatus::SwHardeningNeeded => "SWHardeningNeeded",
            TcbStatus::ConfigurationNeeded => "ConfigurationNeeded",
            TcbStatus::ConfigurationAndSwHardeningNeeded => "ConfigurationAndSWHardeningNeeded",
            TcbStatus::OutOfDate => "OutOfDate",
            TcbStatus::OutOfDateConfigurationNeeded => "OutOfDateConfigurationNeeded",
            TcbStatus::NotReported => "NotReported",
        }
    }

    /// Parse Intel's spelling of a TCB status. `Revoked` is not a status here: it is an error.
    pub fn from_intel(s: &str) -> Option<Self> {
        Some(match s {
            "UpToDate" => TcbStatus::UpToDate,
            "SWHardeningNeeded" => TcbStatus::SwHardeningNeeded,
            "ConfigurationNeeded" => TcbStatus::ConfigurationNeeded,
            "ConfigurationAndSWHardeningNeeded" => TcbStatus::ConfigurationAndSwHardeningNeeded,
            "OutOfDate" => TcbStatus::OutOfDate,
            "OutOfDateConfigurationNeeded" => TcbStatus::OutOfDateConfigurationNeeded,
            _ => return None,
        })
    }
}

impl fmt::Display for TcbStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What verified evidence says about the workload, the same shape for every TEE.
///
/// Byte strings serialise as lower-case hex. The JSON form is a stable schema: fields are only
/// ever added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// Which TEE produced the evidence.
    pub tee: Tee,
    /// How it was vouched for.
    pub format: EvidenceFormat,
    /// The primary code measurement: MRENCLAVE (SGX), MRTD (TDX), the launch measurement
    /// (SEV-SNP), or the simulated measurement (sim).
    #[serde(with = "hex::serde")]
    pub measurement: Vec<u8>,
    /// Further named measurements and identities, as lower-case hex or decimal strings:
    /// `rtmr0`..`rtmr3`, `mrseam`, `mrconfigid` (TDX); `host_data`, `chip_id`, `vmpl`,
    /// `reported_tcb` (SEV-SNP); `fmspc`, `isv_prod_id` (SGX) …
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
    /// Who signed the code: MRSIGNER (SGX), MRSIGNERSEAM (TDX), the author key digest (SEV-SNP).
    #[serde(default, with = "opt_hex", skip_serializing_if = "Option::is_none")]
    pub signer: Option<Vec<u8>>,
    /// The product id the signer gave the code (SGX ISV product id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<u16>,
    /// The security version of the code (SGX ISV SVN, SEV-SNP guest SVN, sim svn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub svn: Option<u32>,
    /// The platform's TCB status.
    pub tcb_status: TcbStatus,
    /// Security advisories that apply to the platform at its TCB level, e.g. `INTEL-SA-00615`.
    #[serde(default)]
    pub advisory_ids: Vec<String>,
    /// Whether the TEE runs in debug mode (its memory is readable by the host).
    pub debug: bool,
    /// The 64 bytes (or fewer, for MAA runtime data) the workload bound into the evidence.
    #[serde(with = "hex::serde")]
    pub report_data: Vec<u8>,
    /// The earliest expiry (seconds since the Unix epoch) of anything the verdict relied on:
    /// certificates, CRLs, collateral, the token itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

impl Claims {
    /// Claims with the required fields set and everything optional empty.
    pub fn new(
        tee: Tee,
        format: EvidenceFormat,
        measurement: Vec<u8>,
        report_data: Vec<u8>,
    ) -> Self {
        Self {
            tee,
            format,
            measurement,
            extra: BTreeMap::new(),
            signer: None,
            product_id: None,
            svn: None,
            tcb_status: TcbStatus::NotReported,
            advisory_ids: Vec::new(),
            debug: false,
            report_data,
            expires_at: None,
        }
    }

    /// Keep the earlier of the current expiry and `at` (seconds since the Unix epoch).
    pub fn expire_no_later_than(&mut self, at: u64) {
        self.expires_at = Some(self.expires_at.map_or(at, |e| e.min(at)));
    }
}

mod opt_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&hex::encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| hex::decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

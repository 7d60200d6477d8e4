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
    /// What only SEV-SNP evidence says, typed for appraisal: the reported TCB, the VMPL and the
    /// guest policy. Set for SEV-SNP reports and MAA SEV-SNP tokens that carry them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snp: Option<SnpDetails>,
    /// What only DCAP collateral says: the TCB evaluation data numbers of the TCB info and QE
    /// identity the quote was appraised against. Set for DCAP quotes (SGX, TDX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dcap: Option<DcapDetails>,
}

/// The SEV-SNP part of [`Claims`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnpDetails {
    /// The TCB the signing key (VCEK) was derived from: what the platform vouches for.
    pub reported_tcb: SnpTcb,
    /// The Virtual Machine Privilege Level the report was requested at (0 is the most privileged;
    /// a report from a higher VMPL comes from code below the guest's own firmware's control).
    pub vmpl: u32,
    /// The guest policy the VM was launched with.
    pub policy: SnpGuestPolicy,
}

impl SnpDetails {
    /// Details from their parts.
    pub fn new(reported_tcb: SnpTcb, vmpl: u32, policy: SnpGuestPolicy) -> Self {
        Self {
            reported_tcb,
            vmpl,
            policy,
        }
    }
}

/// An SEV-SNP TCB version: the security patch level of each firmware component.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnpTcb {
    /// Boot loader SPL.
    pub bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub tee: u8,
    /// SNP firmware SPL.
    pub snp: u8,
    /// Microcode SPL.
    pub microcode: u8,
    /// FMC SPL, on processors whose TCB has one (Turin); `None` on Milan and Genoa.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
}

impl SnpTcb {
    /// A Milan / Genoa TCB (no FMC component).
    pub fn new(bootloader: u8, tee: u8, snp: u8, microcode: u8) -> Self {
        Self {
            bootloader,
            tee,
            snp,
            microcode,
            fmc: None,
        }
    }
}

/// `bl=2 tee=0 snp=5 ucode=68` (with `fmc=N` first when there is one).
impl fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(fmc) = self.fmc {
            write!(f, "fmc={fmc} ")?;
        }
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

/// The SEV-SNP guest policy (AMD 56860, "GUEST_POLICY"): what the guest owner allowed at launch.
///
/// `raw` is the 64-bit field when the evidence carries it (a report); an MAA token carries only
/// the `debug`, `smt` and `migrate_ma` bits, so `raw` is `None` there and the other flags read
/// `false`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SnpGuestPolicy {
    /// The whole policy field, when the evidence has it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<u64>,
    /// Bits 15:8: the lowest firmware ABI major version the guest accepts.
    pub abi_major: u8,
    /// Bits 7:0: the lowest firmware ABI minor version the guest accepts.
    pub abi_minor: u8,
    /// Bit 16: simultaneous multithreading may be enabled on the host.
    pub smt: bool,
    /// Bit 18: the guest may be associated with a migration agent, which can read and move its
    /// memory.
    pub migrate_ma: bool,
    /// Bit 19: the hypervisor may debug the guest (read its memory).
    pub debug: bool,
    /// Bit 20: the guest may run only on a single-socket system.
    pub single_socket: bool,
    /// Bit 21: CXL may be populated with guest memory.
    pub cxl_allow: bool,
    /// Bit 22: AES-256-XTS memory encryption is required.
    pub mem_aes_256_xts: bool,
    /// Bit 23: Running Average Power Limit must be disabled.
    pub rapl_dis: bool,
    /// Bit 24: ciphertext hiding must be enabled.
    pub ciphertext_hiding: bool,
    /// Bit 25: guest support for the page-swap commands is disabled.
    pub page_swap_disable: bool,
}

impl SnpGuestPolicy {
    /// Bit 16, SMT allowed.
    pub const SMT: u64 = 1 << 16;
    /// Bit 18, migration agent allowed.
    pub const MIGRATE_MA: u64 = 1 << 18;
    /// Bit 19, debugging allowed.
    pub const DEBUG: u64 = 1 << 19;
    /// Bit 20, single socket only.
    pub const SINGLE_SOCKET: u64 = 1 << 20;
    /// Bit 21, CXL allowed.
    pub const CXL_ALLOW: u64 = 1 << 21;
    /// Bit 22, AES-256-XTS required.
    pub const MEM_AES_256_XTS: u64 = 1 << 22;
    /// Bit 23, RAPL disabled.
    pub const RAPL_DIS: u64 = 1 << 23;
    /// Bit 24, ciphertext hiding.
    pub const CIPHERTEXT_HIDING: u64 = 1 << 24;
    /// Bit 25, page swap disabled.
    pub const PAGE_SWAP_DISABLE: u64 = 1 << 25;

    /// Decode the 64-bit guest policy of a report.
    pub fn from_raw(raw: u64) -> Self {
        let bit = |mask: u64| raw & mask != 0;
        let [abi_minor, abi_major, ..] = raw.to_le_bytes();
        Self {
            raw: Some(raw),
            abi_major,
            abi_minor,
            smt: bit(Self::SMT),
            migrate_ma: bit(Self::MIGRATE_MA),
            debug: bit(Self::DEBUG),
            single_socket: bit(Self::SINGLE_SOCKET),
            cxl_allow: bit(Self::CXL_ALLOW),
            mem_aes_256_xts: bit(Self::MEM_AES_256_XTS),
            rapl_dis: bit(Self::RAPL_DIS),
            ciphertext_hiding: bit(Self::CIPHERTEXT_HIDING),
            page_swap_disable: bit(Self::PAGE_SWAP_DISABLE),
        }
    }

    /// What an attestation provider reports without the raw field: the three flags it has.
    pub fn from_flags(debug: bool, smt: bool, migrate_ma: bool) -> Self {
        Self {
            debug,
            smt,
            migrate_ma,
            ..Self::default()
        }
    }
}

/// The DCAP part of [`Claims`]: how recent Intel's appraisal data was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DcapDetails {
    /// `tcbEvaluationDataNumber` of the TCB info: which of Intel's TCB recovery events the
    /// platform's TCB levels were evaluated against (higher is newer).
    pub tcb_evaluation_data_number: u32,
    /// `tcbEvaluationDataNumber` of the QE identity.
    pub qe_tcb_evaluation_data_number: u32,
}

impl DcapDetails {
    /// Details from the two numbers.
    pub fn new(tcb_evaluation_data_number: u32, qe_tcb_evaluation_data_number: u32) -> Self {
        Self {
            tcb_evaluation_data_number,
            qe_tcb_evaluation_data_number,
        }
    }

    /// The older of the two: what a minimum is checked against.
    pub fn oldest(&self) -> u32 {
        self.tcb_evaluation_data_number
            .min(self.qe_tcb_evaluation_data_number)
    }
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
            snp: None,
            dcap: None,
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

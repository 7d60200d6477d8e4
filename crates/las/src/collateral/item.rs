//! Collateral items: what each is, where it lives in a bundle, and its validity window.

use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use serde::Deserialize;

// ---------------------------------------------------------------------------------------------
// Items
// ---------------------------------------------------------------------------------------------

/// The Intel TEE a DCAP collateral item is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DcapTee {
    /// SGX: TCB info and QE identity from `/sgx/certification/v4`.
    Sgx,
    /// TDX: TCB info and QE identity from `/tdx/certification/v4`.
    Tdx,
}

impl DcapTee {
    /// `sgx` or `tdx`, as in PCS paths.
    pub fn as_str(self) -> &'static str {
        match self {
            DcapTee::Sgx => "sgx",
            DcapTee::Tdx => "tdx",
        }
    }

    /// Parse `sgx` or `tdx`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sgx" => Some(DcapTee::Sgx),
            "tdx" => Some(DcapTee::Tdx),
            _ => None,
        }
    }
}

/// The Intel PCK CA that issued a platform's PCK certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

impl PckCa {
    /// `processor` or `platform`, as in PCS queries.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }

    /// Parse `processor` or `platform`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processor" => Some(PckCa::Processor),
            "platform" => Some(PckCa::Platform),
            _ => None,
        }
    }
}

/// An AMD EPYC generation, as AMD KDS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmdProduct {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 (Zen 4), also Bergamo and Siena.
    Genoa,
}

impl AmdProduct {
    /// `Milan` or `Genoa`, as in KDS paths.
    pub fn as_str(self) -> &'static str {
        match self {
            AmdProduct::Milan => "Milan",
            AmdProduct::Genoa => "Genoa",
        }
    }

    /// Parse a product name, ignoring case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "milan" => Some(AmdProduct::Milan),
            "genoa" => Some(AmdProduct::Genoa),
            _ => None,
        }
    }
}

impl fmt::Display for AmdProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SEV-SNP TCB version as the report and the VCEK carry it (Milan and Genoa layout: boot
/// loader in byte 0, TEE in byte 1, SNP in byte 6, microcode in byte 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnpTcb(pub u64);

impl SnpTcb {
    fn byte(self, i: usize) -> u8 {
        self.0.to_le_bytes()[i % 8]
    }
    /// Boot loader SVN.
    pub fn bl(self) -> u8 {
        self.byte(0)
    }
    /// PSP OS (TEE) SVN.
    pub fn tee(self) -> u8 {
        self.byte(1)
    }
    /// SNP firmware SVN.
    pub fn snp(self) -> u8 {
        self.byte(6)
    }
    /// Microcode SVN.
    pub fn ucode(self) -> u8 {
        self.byte(7)
    }
}

impl fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bl(),
            self.tee(),
            self.snp(),
            self.ucode()
        )
    }
}

/// One collateral item the cache fetches, dates and stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    /// Intel DCAP collateral for one platform: TCB info, QE identity, CRLs and issuer chains.
    Dcap {
        /// SGX or TDX.
        tee: DcapTee,
        /// The platform's FMSPC, from its PCK certificate.
        fmspc: [u8; 6],
        /// The CA that issued the PCK certificate (selects the PCK CRL).
        ca: PckCa,
    },
    /// The VCEK certificate of one AMD chip at one TCB version.
    Vcek {
        /// The EPYC generation.
        product: AmdProduct,
        /// The chip id (hwID) from the report.
        chip_id: [u8; 64],
        /// The report's `reported_tcb`.
        tcb: SnpTcb,
    },
    /// AMD's ASK and ARK certificates for one product.
    AmdCertChain {
        /// The EPYC generation.
        product: AmdProduct,
    },
}

impl Item {
    /// The item's path inside an offline bundle, and (with `.cache` appended) inside the cache.
    pub fn bundle_path(&self) -> PathBuf {
        match self {
            Item::Dcap { tee, fmspc, ca } => PathBuf::from(format!(
                "dcap/{}/{}-{}.json",
                tee.as_str(),
                hex::encode_upper(fmspc),
                ca.as_str()
            )),
            Item::Vcek {
                product,
                chip_id,
                tcb,
            } => PathBuf::from(format!(
                "snp/{product}/vcek/{}-{:016x}.der",
                hex::encode(chip_id),
                tcb.0
            )),
            Item::AmdCertChain { product } => {
                PathBuf::from(format!("snp/{product}/cert_chain.pem"))
            }
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Dcap { tee, fmspc, ca } => write!(
                f,
                "DCAP collateral ({}, FMSPC {}, {} CA)",
                tee.as_str(),
                hex::encode_upper(fmspc),
                ca.as_str()
            ),
            Item::Vcek {
                product,
                chip_id,
                tcb,
            } => {
                let chip = hex::encode(&chip_id[..8]);
                write!(f, "VCEK ({product}, chip {chip}…, TCB {tcb})")
            }
            Item::AmdCertChain { product } => write!(f, "AMD {product} ASK/ARK chain"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Appraisal: is a body the item asked for, and when is it valid?
// ---------------------------------------------------------------------------------------------

/// The validity window of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until (exclusive).
    pub not_after: SystemTime,
}

/// Check that `body` is a well-formed copy of `item` and date it. Signatures are not checked.
pub fn appraise(item: &Item, body: &[u8]) -> Result<Window, String> {
    match item {
        Item::Dcap { tee, fmspc, .. } => appraise_dcap(*tee, fmspc, body),
        Item::Vcek { .. } => {
            let cert = parse_cert(body).map_err(|e| format!("not a VCEK certificate: {e}"))?;
            Ok(cert_window(&cert))
        }
        Item::AmdCertChain { .. } => {
            // x509-cert 0.2's `load_pem_chain` underflows (a panic with overflow checks on) on
            // a body that is empty once trailing line breaks are removed.
            if body.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                return Err("not a PEM ASK/ARK chain: empty".into());
            }
            let certs = x509_cert::Certificate::load_pem_chain(body)
                .map_err(|e| format!("not a PEM ASK/ARK chain: {e}"))?;
            if certs.len() != 2 {
                return Err(format!(
                    "holds {} certificates, not the ASK and the ARK",
                    certs.len()
                ));
            }
            let windows: Vec<Window> = certs.iter().map(cert_window).collect();
            Ok(intersect(&windows))
        }
    }
}

fn appraise_dcap(tee: DcapTee, fmspc: &[u8; 6], body: &[u8]) -> Result<Window, String> {
    // Shape and dates, the way the verifier will read it.
    let collateral =
        cloister_attest::dcap::Collateral::from_json(body).map_err(|e| e.to_string())?;
    // And that it is the platform asked for.
    #[derive(Deserialize)]
    struct Outer {
        tcb_info: String,
    }
    #[derive(Deserialize)]
    struct TcbHead {
        fmspc: String,
        id: Option<String>,
    }
    let outer: Outer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let head: TcbHead =
        serde_json::from_str(&outer.tcb_info).map_err(|e| format!("TCB info: {e}"))?;
    if !head.fmspc.eq_ignore_ascii_case(&hex::encode(fmspc)) {
        return Err(format!(
            "its TCB info is for FMSPC {}, not {}",
            head.fmspc,
            hex::encode_upper(fmspc)
        ));
    }
    if let Some(id) = head.id
        && !id.eq_ignore_ascii_case(tee.as_str())
    {
        return Err(format!(
            "its TCB info is for {id}, not {}",
            tee.as_str().to_uppercase()
        ));
    }
    Ok(Window {
        not_before: collateral.valid_from(),
        not_after: collateral.valid_until(),
    })
}

fn parse_cert(body: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::{Decode as _, DecodePem as _};
    if body.starts_with(b"-----BEGIN") {
        x509_cert::Certificate::from_pem(body).map_err(|e| e.to_string())
    } else {
        x509_cert::Certificate::from_der(body).map_err(|e| e.to_string())
    }
}

fn cert_window(cert: &x509_cert::Certificate) -> Window {
    let validity = &cert.tbs_certificate.validity;
    Window {
        not_before: validity.not_before.to_system_time(),
        not_after: validity.not_after.to_system_time(),
    }
}

fn intersect(windows: &[Window]) -> Window {
    Window {
        not_before: windows
            .iter()
            .map(|w| w.not_before)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH),
        not_after: windows
            .iter()
            .map(|w| w.not_after)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_attest::rfc3339;

    const SGX_COLLATERAL: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sgx-dcap/sgx_quote_collateral.json"
    ));
    const GO_VCEK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/vcek.der"
    ));
    const ASK_ARK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/ask_ark_milan.pem"
    ));

    fn sgx_item() -> Item {
        Item::Dcap {
            tee: DcapTee::Sgx,
            fmspc: [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            ca: PckCa::Processor,
        }
    }

    fn at(rfc: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc).unwrap()
    }

    #[test]
    fn appraise_dates_the_recorded_dcap_collateral() {
        let window = appraise(&sgx_item(), SGX_COLLATERAL).unwrap();
        assert_eq!(rfc3339(window.not_before), "2025-06-19T10:56:11Z");
        assert_eq!(rfc3339(window.not_after), "2025-07-19T10:01:18Z");
    }

    #[test]
    fn appraise_refuses_collateral_of_another_platform() {
        let other = Item::Dcap {
            tee: DcapTee::Sgx,
            fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
            ca: PckCa::Processor,
        };
        let err = appraise(&other, SGX_COLLATERAL).unwrap_err();
        assert!(
            err.contains("FMSPC 00A067110000, not B0C06F000000"),
            "{err}"
        );
        let tdx = Item::Dcap {
            tee: DcapTee::Tdx,
            fmspc: [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            ca: PckCa::Processor,
        };
        let err = appraise(&tdx, SGX_COLLATERAL).unwrap_err();
        assert!(err.contains("for SGX, not TDX"), "{err}");
    }

    #[test]
    fn appraise_dates_vcek_and_amd_chain() {
        let vcek = Item::Vcek {
            product: AmdProduct::Milan,
            chip_id: [0; 64],
            tcb: SnpTcb(0x4405000000000002),
        };
        let window = appraise(&vcek, GO_VCEK).unwrap();
        assert!(rfc3339(window.not_after).starts_with("2029-09-24"));
        let chain = Item::AmdCertChain {
            product: AmdProduct::Milan,
        };
        let window = appraise(&chain, ASK_ARK).unwrap();
        assert!(window.not_after > at("2045-01-01T00:00:00Z"));
        assert!(appraise(&chain, GO_VCEK).is_err());
        assert!(appraise(&vcek, b"garbage").is_err());
    }

    #[test]
    fn snp_tcb_components() {
        let tcb = SnpTcb(0x4405000000000002);
        assert_eq!(tcb.to_string(), "bl=2 tee=0 snp=5 ucode=68");
    }

    #[test]
    fn item_paths_and_names() {
        assert_eq!(
            sgx_item().bundle_path(),
            PathBuf::from("dcap/sgx/00A067110000-processor.json")
        );
        assert_eq!(
            sgx_item().to_string(),
            "DCAP collateral (sgx, FMSPC 00A067110000, processor CA)"
        );
        let vcek = Item::Vcek {
            product: AmdProduct::Genoa,
            chip_id: [0xab; 64],
            tcb: SnpTcb(0x0102),
        };
        assert_eq!(
            vcek.bundle_path(),
            PathBuf::from(format!(
                "snp/Genoa/vcek/{}-0000000000000102.der",
                "ab".repeat(64)
            ))
        );
    }

    #[test]
    fn regression_an_empty_cert_chain_is_refused_not_a_panic() {
        let item = Item::AmdCertChain {
            product: AmdProduct::Milan,
        };
        for body in [&b""[..], b"\n", b"\r\n\n"] {
            let err = appraise(&item, body).unwrap_err();
            assert!(err.contains("empty"), "{err}");
        }
    }
}

//! Which collateral a piece of evidence needs, read from the evidence itself.
//!
//! - A DCAP quote (SGX, TDX) needs the [`Item::Dcap`] of its platform: the FMSPC and the issuing
//!   CA come from the PCK certificate in the quote's certification data (type 5), read with
//!   dcap-qvl.
//! - An SEV-SNP report needs the [`Item::Vcek`] of its `chip_id` at its `reported_tcb`, and the
//!   [`Item::AmdCertChain`] of its product. The product comes from the report's CPUID fields
//!   (report version 3 and later), else from the configured default.
//! - `sim` evidence needs nothing.
//!
//! Nothing is verified here: a wrong FMSPC or chip id only fetches collateral that will not
//! verify the evidence.

use cloister_attest::EvidenceFormat;

use super::LasError;
use super::collateral::{AmdProduct, DcapTee, Item, PckCa, SnpTcb};

/// The collateral some evidence needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Needed {
    /// None (`sim` evidence).
    Nothing,
    /// Intel DCAP collateral.
    Dcap(Item),
    /// An AMD VCEK and its ASK/ARK chain.
    Snp {
        /// The [`Item::Vcek`].
        vcek: Item,
        /// The [`Item::AmdCertChain`].
        chain: Item,
    },
}

/// The length of an SEV-SNP attestation report.
const SNP_REPORT_LEN: usize = 0x4A0;

/// The collateral `evidence` of `format` needs. `amd_product` is used for SEV-SNP reports that
/// do not say their product (version 2).
pub fn needed(
    format: EvidenceFormat,
    evidence: &[u8],
    amd_product: Option<AmdProduct>,
) -> Result<Needed, LasError> {
    match format {
        EvidenceFormat::Sim => Ok(Needed::Nothing),
        EvidenceFormat::DcapQuote => dcap(evidence).map(Needed::Dcap),
        EvidenceFormat::SnpReport => snp(evidence, amd_product),
        EvidenceFormat::MaaToken => Err(no_collateral(
            "an Azure Attestation token carries its own verdict; it needs no collateral",
        )),
        // Unreachable today. A format added to `cloister-attest` compiles here unchanged: its
        // evidence is served with `no-collateral-for-evidence` until the LAS learns to locate
        // its collateral, so adding a TEE does not have to touch the LAS.
        #[allow(unreachable_patterns)]
        _ => Err(no_collateral("unknown evidence format")),
    }
}

fn no_collateral(reason: impl Into<String>) -> LasError {
    LasError::NoCollateralFor {
        reason: reason.into(),
    }
}

fn dcap(quote: &[u8]) -> Result<Item, LasError> {
    let tee = match cloister_attest::dcap::sniff(quote) {
        Some(cloister_attest::Tee::Sgx) => DcapTee::Sgx,
        Some(cloister_attest::Tee::Tdx) => DcapTee::Tdx,
        _ => return Err(no_collateral("not an SGX or TDX DCAP quote")),
    };
    let parsed = dcap_qvl::quote::Quote::parse(quote)
        .map_err(|e| no_collateral(format!("the DCAP quote does not parse: {e:#}")))?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&parsed).map_err(|e| {
        no_collateral(format!(
            "cannot read the FMSPC from the quote's PCK certificate (the quote must carry its \
             PCK chain, certification data type 5): {e:#}"
        ))
    })?;
    let ca = match dcap_qvl::intel::quote_ca(&parsed)
        .map_err(|e| no_collateral(format!("cannot tell the quote's PCK CA: {e:#}")))?
    {
        dcap_qvl::config::PckCa::Processor => PckCa::Processor,
        dcap_qvl::config::PckCa::Platform => PckCa::Platform,
    };
    Ok(Item::Dcap { tee, fmspc, ca })
}

fn snp(report: &[u8], default_product: Option<AmdProduct>) -> Result<Needed, LasError> {
    if report.len() != SNP_REPORT_LEN {
        return Err(no_collateral(format!(
            "an SEV-SNP report is {SNP_REPORT_LEN} bytes, this is {}",
            report.len()
        )));
    }
    let u32_at = |at: usize| {
        let mut bytes = [0u8; 4];
        bytes.copy_from_slice(&report[at..at + 4]);
        u32::from_le_bytes(bytes)
    };
    let version = u32_at(0);
    if !(2..=5).contains(&version) {
        return Err(no_collateral(format!(
            "SEV-SNP report version {version} is not supported"
        )));
    }
    // Bits 4:2 of KEY_INFO: 0 = VCEK, 1 = VLEK.
    if (u32_at(0x48) >> 2) & 0b111 != 0 {
        return Err(no_collateral(
            "the SEV-SNP report is not signed by a VCEK (VLEK-signed reports need the \
             cloud provider's VLEK, not AMD KDS)",
        ));
    }
    let mut tcb = [0u8; 8];
    tcb.copy_from_slice(&report[0x180..0x188]);
    let tcb = SnpTcb(u64::from_le_bytes(tcb));
    let mut chip_id = [0u8; 64];
    chip_id.copy_from_slice(&report[0x1A0..0x1E0]);
    if chip_id == [0; 64] {
        return Err(no_collateral(
            "the SEV-SNP report's chip id is masked (MASK_CHIP_ID): its VCEK cannot be looked up",
        ));
    }
    let product = match product_of(version, report[0x188], report[0x189])? {
        Some(product) => product,
        None => default_product.ok_or_else(|| {
            no_collateral(format!(
                "an SEV-SNP report version {version} does not say its AMD product; configure \
                 the default product (Milan or Genoa)"
            ))
        })?,
    };
    Ok(Needed::Snp {
        vcek: Item::Vcek {
            product,
            chip_id,
            tcb,
        },
        chain: Item::AmdCertChain { product },
    })
}

/// The product from the CPUID family and model of a version 3+ report; `None` for version 2.
fn product_of(version: u32, family: u8, model: u8) -> Result<Option<AmdProduct>, LasError> {
    if version < 3 {
        return Ok(None);
    }
    match (family, model) {
        (0x19, 0x00..=0x0F) => Ok(Some(AmdProduct::Milan)),
        (0x19, 0x10..=0x1F | 0xA0..=0xAF) => Ok(Some(AmdProduct::Genoa)),
        (0x1A, _) => Err(no_collateral(
            "Turin (family 1Ah) SEV-SNP reports are not supported",
        )),
        _ => Err(no_collateral(format!(
            "unknown AMD CPU family {family:#04x} model {model:#04x}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SGX_QUOTE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sgx-dcap/sgx_quote.bin"
    ));
    const TDX_QUOTE: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/tdx/tdx_quote.bin"
    ));
    const SNP_REPORT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/attestation.bin"
    ));

    #[test]
    fn sgx_quote_needs_its_platforms_dcap_collateral() {
        assert_eq!(
            needed(EvidenceFormat::DcapQuote, SGX_QUOTE, None).unwrap(),
            Needed::Dcap(Item::Dcap {
                tee: DcapTee::Sgx,
                fmspc: [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
                ca: PckCa::Processor,
            })
        );
    }

    #[test]
    fn tdx_quote_needs_its_platforms_dcap_collateral() {
        assert_eq!(
            needed(EvidenceFormat::DcapQuote, TDX_QUOTE, None).unwrap(),
            Needed::Dcap(Item::Dcap {
                tee: DcapTee::Tdx,
                fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
                ca: PckCa::Platform,
            })
        );
    }

    #[test]
    fn snp_v2_report_needs_the_default_product() {
        let err = needed(EvidenceFormat::SnpReport, SNP_REPORT, None).unwrap_err();
        assert!(err.to_string().contains("configure"), "{err}");
        let Needed::Snp { vcek, chain } = needed(
            EvidenceFormat::SnpReport,
            SNP_REPORT,
            Some(AmdProduct::Milan),
        )
        .unwrap() else {
            panic!()
        };
        let Item::Vcek {
            product,
            chip_id,
            tcb,
        } = vcek
        else {
            panic!()
        };
        assert_eq!(product, AmdProduct::Milan);
        assert_eq!(
            hex::encode(&chip_id[..8]),
            "3ac3fe21e13fb099",
            "the chip id from testdata/tee-evidence/sev-snp/README.md"
        );
        assert_eq!(tcb, SnpTcb(0x4405000000000002));
        assert_eq!(
            chain,
            Item::AmdCertChain {
                product: AmdProduct::Milan
            }
        );
    }

    #[test]
    fn snp_v3_report_says_its_product() {
        let mut report = SNP_REPORT.to_vec();
        report[0] = 3;
        report[0x188] = 0x19;
        report[0x189] = 0x11;
        let Needed::Snp { chain, .. } =
            needed(EvidenceFormat::SnpReport, &report, Some(AmdProduct::Milan)).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            chain,
            Item::AmdCertChain {
                product: AmdProduct::Genoa
            }
        );
        report[0x188] = 0x1A;
        assert!(needed(EvidenceFormat::SnpReport, &report, None).is_err());
    }

    #[test]
    fn evidence_without_collateral() {
        assert_eq!(
            needed(EvidenceFormat::Sim, b"{}", None).unwrap(),
            Needed::Nothing
        );
        for (format, bytes) in [
            (EvidenceFormat::DcapQuote, &b"short"[..]),
            (EvidenceFormat::DcapQuote, &SGX_QUOTE[..600]),
            (EvidenceFormat::SnpReport, &SNP_REPORT[..100]),
            (EvidenceFormat::MaaToken, &b"eyJ"[..]),
        ] {
            let err = needed(format, bytes, Some(AmdProduct::Milan)).unwrap_err();
            assert!(matches!(err, LasError::NoCollateralFor { .. }), "{err:?}");
        }
        let mut masked = SNP_REPORT.to_vec();
        masked[0x1A0..0x1E0].fill(0);
        assert!(
            needed(EvidenceFormat::SnpReport, &masked, Some(AmdProduct::Milan))
                .unwrap_err()
                .to_string()
                .contains("masked")
        );
    }
}

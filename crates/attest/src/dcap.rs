//! Intel DCAP quotes: SGX (quote v3) and TDX (quote v4 and v5), verified offline against Intel
//! collateral with [dcap-qvl](https://crates.io/crates/dcap-qvl).
//!
//! # What is checked
//!
//! dcap-qvl does the cryptography and Intel's appraisal rules: the TCB info and QE identity
//! signatures and their chains to the root, both CRLs, the PCK chain, the PCK's signature over the
//! QE report, the QE report binding the attestation key, the QE identity, the attestation key's
//! signature over the quote, and the platform (and TDX module) TCB level matching. Around it this
//! module adds:
//!
//! - its own bounds-checked read of the quote layout first (`quote`), so truncation, unsupported
//!   versions and TEE types get precise errors and no input reaches dcap-qvl's parser unchecked;
//! - the collateral validity window (`window`), checked before dcap-qvl, so an expired or
//!   not-yet-valid collateral names the item and the time;
//! - the mapping of dcap-qvl's string errors to this crate's typed [`Error`] (`diagnose`).
//!
//! # Policy choices
//!
//! - Debug enclaves and debug TDs are *not* refused here: dcap-qvl's debug check is switched off
//!   and [`Claims::debug`] reports them, so one policy layer decides (policies deny by default).
//!   For TDX, `debug` is true when any TUD bit of TD_ATTRIBUTES is set (bit 0 DEBUG, and the
//!   profiling bits 4-6), since Intel calls such a TD untrusted.
//! - Other TD attribute rules of dcap-qvl stay on: reserved bits, MIGRATABLE and SERVTD_EXT set,
//!   SEPT_VE_DISABLE clear, and a non-zero MRSERVICETD are refused.
//! - A platform whose TCB is below every TCB level of the collateral (Intel's
//!   `TCB_NOT_SUPPORTED`) is refused with [`Error::Rejected`]; so is a `Revoked` TCB level, with
//!   [`Error::Revoked`]. Every other TCB status is reported in [`Claims::tcb_status`] for policies.
//!   dcap-qvl's TDX 1.5 statuses `TDRelaunchAdvised` and `TDRelaunchAdvisedConfigurationNeeded`
//!   (the TD launched on an outdated TCB that has since been updated) map to `OutOfDate` and
//!   `OutOfDateConfigurationNeeded`, with Intel's name kept in `extra["intel_tcb_status"]`.
//!
//! # Claims
//!
//! SGX: `measurement` = MRENCLAVE, `signer` = MRSIGNER, `product_id` = ISVPRODID, `svn` = ISVSVN,
//! `debug` = ATTRIBUTES.DEBUG, extra `fmspc`, `cpusvn`, `attributes`, `qe_svn`, `pce_svn` (the last
//! two from the quote header, decimal).
//!
//! TDX: `measurement` = MRTD, `signer` = MRSIGNERSEAM (48 bytes, kept even when all zero, as it is
//! for Intel's own TDX module: dcap-qvl requires it to equal the TCB info's TDX module signer,
//! which is all zero in Intel's collateral today), extra `rtmr0`
//! .. `rtmr3`, `mrseam`, `mrconfigid`, `mrowner`, `mrownerconfig`, `td_attributes`, `xfam`,
//! `tee_tcb_svn`, `tee_tcb_svn2` (TDX 1.5 reports, quote v5) and `fmspc`.
//!
//! Both: `dcap` holds the `tcbEvaluationDataNumber` of the collateral's TCB info and of its QE
//! identity (read from the exact JSON whose signatures dcap-qvl checks), for policies that set a
//! minimum (`min_tcb_evaluation_data_number`): an older number means appraisal data from before
//! a TCB recovery, under which a platform that has not taken it may still look up to date.
//!
//! Byte strings in `extra` are lower-case hex. `expires_at` is the earliest nextUpdate / notAfter
//! of the collateral, the trusted root and the verified PCK chain (a CRL is already expired at
//! its nextUpdate; everything else is valid through its end).

mod diagnose;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod fake_pki;
mod quote;
mod window;

use crate::{
    Claims, Context, DcapDetails, Error, EvidenceFormat, TcbStatus, Tee, Verified, Verifier,
};
use dcap_qvl::quote::Report;
use dcap_qvl::verify::QuoteVerifier;
use dcap_qvl::{QuoteClaims, QuoteCollateralV3};
use quote::QuoteLayout;
use std::fmt;
use std::time::SystemTime;
use window::Validity;

/// The Intel SGX Root CA (DER), the trust anchor of SGX and TDX attestation. See
/// `crates/attest/roots/README.md` for its origin and fingerprint.
pub const INTEL_SGX_ROOT_CA: &[u8] = include_bytes!("../roots/Intel_SGX_RootCA.der");

/// Which TEE a DCAP quote header names: `Some(Tee::Sgx)` for a version 3 quote of TEE type 0,
/// `Some(Tee::Tdx)` for version 4 or 5 of TEE type 0x81, otherwise `None` (also for inputs shorter
/// than the 48-byte header). Reads only the header; never panics.
pub fn sniff(evidence: &[u8]) -> Option<Tee> {
    quote::sniff(evidence)
}

/// Intel collateral for one platform (FMSPC): TCB info, QE identity, the PCK and root CA CRLs, and
/// their issuer chains, as fetched from a PCCS or Intel PCS.
///
/// Read once, checked for shape and dated when loaded; its signatures are checked at each
/// verification.
#[derive(Clone)]
pub struct Collateral {
    inner: QuoteCollateralV3,
    /// The dated items of the collateral, for the validity window.
    window: Vec<Validity>,
    /// The TCB evaluation data numbers of the TCB info and the QE identity.
    details: DcapDetails,
}

/// The `tcbEvaluationDataNumber` of a TCB info or QE identity JSON body.
#[derive(serde::Deserialize)]
struct Evaluation {
    #[serde(rename = "tcbEvaluationDataNumber")]
    number: u32,
}

fn evaluation_number(what: &'static str, json: &str) -> Result<u32, Error> {
    serde_json::from_str::<Evaluation>(json)
        .map(|e| e.number)
        .map_err(|e| Error::malformed(what, e))
}

impl Collateral {
    /// Read collateral in dcap-qvl's `QuoteCollateralV3` JSON format: the keys
    /// `pck_crl_issuer_chain`, `root_ca_crl`, `pck_crl`, `tcb_info_issuer_chain`, `tcb_info`,
    /// `tcb_info_signature`, `qe_identity_issuer_chain`, `qe_identity`, `qe_identity_signature`
    /// and optionally `pck_certificate_chain`. CRLs and signatures are hex (DER and r ‖ s), chains
    /// PEM, and `tcb_info` / `qe_identity` the exact JSON strings Intel signed.
    pub fn from_json(bytes: &[u8]) -> Result<Self, Error> {
        let inner: QuoteCollateralV3 = serde_json::from_slice(bytes)
            .map_err(|e| Error::malformed("DCAP collateral JSON", e))?;
        for (what, sig) in [
            ("TCB info signature", &inner.tcb_info_signature),
            ("QE identity signature", &inner.qe_identity_signature),
        ] {
            if sig.len() != 64 {
                return Err(Error::malformed(
                    what,
                    format!("{} bytes, not the 64 of an ECDSA P-256 r ‖ s", sig.len()),
                ));
            }
        }
        let mut items = vec![
            window::json_body("TCB info", &inner.tcb_info)?,
            window::json_body("QE identity", &inner.qe_identity)?,
            window::crl("root CA CRL", &inner.root_ca_crl)?,
            window::crl("PCK CRL", &inner.pck_crl)?,
        ];
        items.extend(window::pem_chain(
            "TCB info issuer chain",
            inner.tcb_info_issuer_chain.as_bytes(),
        )?);
        items.extend(window::pem_chain(
            "QE identity issuer chain",
            inner.qe_identity_issuer_chain.as_bytes(),
        )?);
        items.extend(window::pem_chain(
            "PCK CRL issuer chain",
            inner.pck_crl_issuer_chain.as_bytes(),
        )?);
        if let Some(chain) = &inner.pck_certificate_chain {
            // Only its shape here: its dates count once its signatures are checked.
            window::pem_ders(chain.as_bytes())
                .map_err(|e| Error::malformed("PCK certificate chain", e))?;
        }
        let details = DcapDetails::new(
            evaluation_number("TCB info", &inner.tcb_info)?,
            evaluation_number("QE identity", &inner.qe_identity)?,
        );
        Ok(Self {
            inner,
            window: items,
            details,
        })
    }

    /// The `tcbEvaluationDataNumber`s of the TCB info and the QE identity, as the claims of every
    /// quote verified with this collateral carry them.
    pub fn details(&self) -> DcapDetails {
        self.details
    }

    /// The start of the validity window: the latest issueDate / thisUpdate / notBefore.
    pub fn valid_from(&self) -> SystemTime {
        window::unix(self.window.iter().map(|v| v.not_before).max().unwrap_or(0))
    }

    /// The end of the validity window: the earliest nextUpdate / notAfter. Certificates and
    /// Intel's JSON bodies are valid through their end; a CRL is expired from its nextUpdate on.
    pub fn valid_until(&self) -> SystemTime {
        window::unix(self.window.iter().map(|v| v.not_after).min().unwrap_or(0))
    }
}

impl fmt::Debug for Collateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Collateral")
            .field("valid_from", &crate::rfc3339(self.valid_from()))
            .field("valid_until", &crate::rfc3339(self.valid_until()))
            .field("tcb_info_len", &self.inner.tcb_info.len())
            .field("qe_identity_len", &self.inner.qe_identity.len())
            .finish_non_exhaustive()
    }
}

/// Verifies SGX and TDX DCAP quotes against one platform's [`Collateral`] and a root CA.
#[derive(Clone, Debug)]
pub struct DcapVerifier {
    collateral: Collateral,
    root_der: Vec<u8>,
}

impl DcapVerifier {
    /// A verifier trusting the bundled Intel SGX Root CA ([`INTEL_SGX_ROOT_CA`]).
    pub fn new(collateral: Collateral) -> Self {
        Self::with_root_ca(collateral, INTEL_SGX_ROOT_CA.to_vec())
    }

    /// A verifier trusting another root CA (DER). An unusable root makes every verification fail
    /// with [`Error::UntrustedChain`] or [`Error::Malformed`].
    pub fn with_root_ca(collateral: Collateral, root_der: Vec<u8>) -> Self {
        Self {
            collateral,
            root_der,
        }
    }

    /// The PEM PCK chain dcap-qvl will use: the collateral's if it has one, else the quote's.
    fn pck_chain<'a>(&'a self, quote: &'a [u8], layout: &QuoteLayout) -> Result<&'a [u8], Error> {
        if let Some(chain) = &self.collateral.inner.pck_certificate_chain {
            return Ok(chain.as_bytes());
        }
        if layout.cert_type != quote::CERT_TYPE_PCK_CHAIN {
            return Err(Error::Unsupported {
                what: "PCK certification data type (5, a PCK chain, or collateral with one)",
                got: layout.cert_type.to_string(),
            });
        }
        Ok(quote.get(layout.cert_data.clone()).unwrap_or_default())
    }
}

/// dcap-qvl's policy hook, accepting everything: the verdict on the claims is the policy layer's.
struct ClaimsOnly;

impl dcap_qvl::Policy for ClaimsOnly {
    fn validate(&self, _: &QuoteClaims) -> anyhow::Result<()> {
        Ok(())
    }
}

impl Verifier for DcapVerifier {
    #[tracing::instrument(skip_all, fields(len = evidence.len()))]
    fn verify(&self, evidence: &[u8], ctx: &Context) -> Result<Verified, Error> {
        let layout = QuoteLayout::parse(evidence)?;
        if layout.qe_vendor_id != dcap_qvl::INTEL_QE_VENDOR_ID {
            return Err(Error::Rejected {
                rule: "QE vendor id",
                expected: hex::encode(dcap_qvl::INTEL_QE_VENDOR_ID),
                got: hex::encode(layout.qe_vendor_id),
            });
        }
        let pck_chain_pem = self.pck_chain(evidence, &layout)?;

        let mut items = self.collateral.window.clone();
        items.push(window::der_cert("root CA certificate", &self.root_der)?);
        let window_end = window::check(&items, ctx.now())?;

        let verified = QuoteVerifier::new(self.root_der.clone())
            .allow_debug(true)
            .verify_with_policy(
                evidence,
                &self.collateral.inner,
                ctx.now_unix(),
                &ClaimsOnly,
            )
            .map_err(|e| {
                tracing::debug!(error = format!("{e:#}"), "dcap-qvl refused the quote");
                diagnose::map_error(
                    &e,
                    &diagnose::Inputs {
                        collateral: &self.collateral,
                        root_der: &self.root_der,
                        pck_chain_pem,
                        now: ctx.now(),
                    },
                )
            })?;

        let mut claims = claims(&verified, &layout)?;
        claims.dcap = Some(self.collateral.details);
        claims.expire_no_later_than(window_end);
        claims.expire_no_later_than(verified.earliest_expiration_date);
        Verified::new(claims, ctx)
    }
}

/// Normalise what dcap-qvl verified.
fn claims(v: &QuoteClaims, layout: &QuoteLayout) -> Result<Claims, Error> {
    let (tcb_status, intel_status) = tcb_status(v.tcb.status)?;
    let mut claims = match &v.report {
        Report::SgxEnclave(r) => {
            let mut c = Claims::new(
                Tee::Sgx,
                EvidenceFormat::DcapQuote,
                r.mr_enclave.to_vec(),
                r.report_data.to_vec(),
            );
            c.signer = Some(r.mr_signer.to_vec());
            c.product_id = Some(r.isv_prod_id);
            c.svn = Some(u32::from(r.isv_svn));
            c.debug = r.attributes[0] & 0x02 != 0;
            c.extra.insert("cpusvn".into(), hex::encode(r.cpu_svn));
            c.extra
                .insert("attributes".into(), hex::encode(r.attributes));
            c.extra.insert("qe_svn".into(), v.header.qe_svn.to_string());
            c.extra
                .insert("pce_svn".into(), v.header.pce_svn.to_string());
            c
        }
        Report::TD10(_) | Report::TD15(_) | Report::TD15Ex(_) => {
            let Some(r) = v.report.as_td10() else {
                return Err(Error::Internal("TD report without a TD 1.0 base".into()));
            };
            let mut c = Claims::new(
                Tee::Tdx,
                EvidenceFormat::DcapQuote,
                r.mr_td.to_vec(),
                r.report_data.to_vec(),
            );
            c.signer = Some(r.mr_signer_seam.to_vec());
            c.debug = r.td_attributes[0] != 0;
            for (name, value) in [
                ("rtmr0", &r.rt_mr0[..]),
                ("rtmr1", &r.rt_mr1[..]),
                ("rtmr2", &r.rt_mr2[..]),
                ("rtmr3", &r.rt_mr3[..]),
                ("mrseam", &r.mr_seam[..]),
                ("mrconfigid", &r.mr_config_id[..]),
                ("mrowner", &r.mr_owner[..]),
                ("mrownerconfig", &r.mr_owner_config[..]),
                ("td_attributes", &r.td_attributes[..]),
                ("xfam", &r.xfam[..]),
                ("tee_tcb_svn", &r.tee_tcb_svn[..]),
            ] {
                c.extra.insert(name.into(), hex::encode(value));
            }
            if let Some(r15) = v.report.as_td15() {
                c.extra
                    .insert("tee_tcb_svn2".into(), hex::encode(r15.tee_tcb_svn2));
            }
            c
        }
    };
    if claims.tee != layout.tee {
        return Err(Error::Internal(format!(
            "quote header says {}, dcap-qvl verified a {} report",
            layout.tee, claims.tee
        )));
    }
    claims
        .extra
        .insert("fmspc".into(), hex::encode(v.platform.pck.fmspc));
    if let Some(intel) = intel_status {
        claims.extra.insert("intel_tcb_status".into(), intel);
    }
    claims.tcb_status = tcb_status;
    claims.advisory_ids = v.tcb.advisory_ids.clone();
    Ok(claims)
}

/// This crate's TCB status for dcap-qvl's, and Intel's name when the mapping loses detail.
fn tcb_status(s: dcap_qvl::TcbStatus) -> Result<(TcbStatus, Option<String>), Error> {
    use dcap_qvl::TcbStatus as Q;
    match s {
        Q::Revoked => Err(Error::Revoked {
            what: "platform TCB level (Intel TCB status Revoked)".into(),
        }),
        Q::TDRelaunchAdvised => Ok((TcbStatus::OutOfDate, Some(s.to_string()))),
        Q::TDRelaunchAdvisedConfigurationNeeded => {
            Ok((TcbStatus::OutOfDateConfigurationNeeded, Some(s.to_string())))
        }
        other => TcbStatus::from_intel(&other.to_string())
            .map(|t| (t, None))
            .ok_or_else(|| Error::Internal(format!("unmapped Intel TCB status {other}"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::unix;
    use rstest::rstest;

    macro_rules! testdata {
        ($path:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/tee-evidence/",
                $path
            ))
        };
    }

    pub(crate) const SGX_QUOTE: &[u8] = testdata!("sgx-dcap/sgx_quote.bin");
    pub(crate) const SGX_COLLATERAL: &[u8] = testdata!("sgx-dcap/sgx_quote_collateral.json");
    const TDX_QUOTE: &[u8] = testdata!("tdx/tdx_quote.bin");
    const TDX_COLLATERAL: &[u8] = testdata!("tdx/tdx_quote_collateral.json");
    pub(crate) const TDX5_QUOTE: &[u8] = testdata!("tdx/tdx_quote_outdated.bin");
    pub(crate) const TDX5_COLLATERAL: &[u8] = testdata!("tdx/tdx_quote_outdated_collateral.json");
    const TESTDATA_ROOT: &[u8] = testdata!("sgx-dcap/Intel_SGX_RootCA.der");

    /// 2025-07-01T00:00:00Z, inside the SGX and TDX v4 collateral windows.
    const JULY_2025: u64 = 1_751_328_000;
    /// 2026-03-01T00:00:00Z, inside the TDX v5 collateral window.
    const MARCH_2026: u64 = 1_772_323_200;

    #[derive(Clone, Copy, Debug)]
    enum Sample {
        Sgx,
        Tdx,
        Tdx5,
    }

    impl Sample {
        fn quote(self) -> &'static [u8] {
            match self {
                Sample::Sgx => SGX_QUOTE,
                Sample::Tdx => TDX_QUOTE,
                Sample::Tdx5 => TDX5_QUOTE,
            }
        }

        fn collateral_json(self) -> &'static [u8] {
            match self {
                Sample::Sgx => SGX_COLLATERAL,
                Sample::Tdx => TDX_COLLATERAL,
                Sample::Tdx5 => TDX5_COLLATERAL,
            }
        }

        fn collateral(self) -> Collateral {
            Collateral::from_json(self.collateral_json()).unwrap()
        }

        fn verifier(self) -> DcapVerifier {
            DcapVerifier::new(self.collateral())
        }

        fn now(self) -> u64 {
            match self {
                Sample::Sgx | Sample::Tdx => JULY_2025,
                Sample::Tdx5 => MARCH_2026,
            }
        }

        fn verify(self, quote: &[u8]) -> Result<Verified, Error> {
            self.verifier()
                .verify(quote, &Context::new(unix(self.now())))
        }

        fn layout(self) -> QuoteLayout {
            QuoteLayout::parse(self.quote()).unwrap()
        }
    }

    /// The claims of the SGX sample, verified at [`JULY_2025`].
    pub(crate) fn sgx_claims() -> Claims {
        Sample::Sgx.verify(SGX_QUOTE).unwrap().into_claims()
    }

    fn hex_of(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// The claims carry the collateral's TCB evaluation data numbers, as an independent reading
    /// of the collateral JSON (the signed `tcb_info` and `qe_identity` strings) gives them, and as
    /// the fixture READMEs' files hold them (17 for the SGX and TDX v4 samples, 18 for TDX v5).
    #[rstest]
    #[case::sgx(Sample::Sgx, 17)]
    #[case::tdx(Sample::Tdx, 17)]
    #[case::tdx5(Sample::Tdx5, 18)]
    fn claims_carry_the_tcb_evaluation_data_numbers(#[case] sample: Sample, #[case] want: u32) {
        let json: serde_json::Value = serde_json::from_slice(sample.collateral_json()).unwrap();
        let number = |key: &str| {
            let body: serde_json::Value =
                serde_json::from_str(json[key].as_str().unwrap()).unwrap();
            u32::try_from(body["tcbEvaluationDataNumber"].as_u64().unwrap()).unwrap()
        };
        let (tcb_info, qe_identity) = (number("tcb_info"), number("qe_identity"));
        assert_eq!((tcb_info, qe_identity), (want, want));
        assert_eq!(
            sample.collateral().details(),
            DcapDetails::new(tcb_info, qe_identity)
        );
        if let Sample::Tdx5 = sample {
            // Its platform is below every TCB level of this collateral: not verifiable here
            // (the fake PKI test covers its claims).
            return;
        }
        let claims = sample.verify(sample.quote()).unwrap().into_claims();
        let dcap = claims.dcap.expect("DCAP details");
        assert_eq!(dcap.tcb_evaluation_data_number, tcb_info);
        assert_eq!(dcap.qe_tcb_evaluation_data_number, qe_identity);
        assert_eq!(dcap.oldest(), want);
    }

    #[test]
    fn collateral_without_an_evaluation_number_is_malformed() {
        let mut v: serde_json::Value = serde_json::from_slice(SGX_COLLATERAL).unwrap();
        let body = v["qe_identity"].as_str().unwrap().replacen(
            "\"tcbEvaluationDataNumber\"",
            "\"tcbEvaluationDataNumbr\"",
            1,
        );
        v["qe_identity"] = body.into();
        let err = Collateral::from_json(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(
            matches!(&err, Error::Malformed { what, .. } if *what == "QE identity"),
            "{err:?}"
        );
    }

    #[test]
    fn bundled_root_is_the_intel_sgx_root_ca() {
        use sha2::{Digest, Sha256};
        assert_eq!(
            hex::encode(Sha256::digest(INTEL_SGX_ROOT_CA)),
            "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
        );
        assert_eq!(INTEL_SGX_ROOT_CA, TESTDATA_ROOT);
    }

    #[test]
    fn sgx_quote_verifies() {
        let ctx = Context::new(unix(JULY_2025)).expect_report_data(b"Hello, world!");
        let claims = Sample::Sgx
            .verifier()
            .verify(SGX_QUOTE, &ctx)
            .unwrap()
            .into_claims();
        assert_eq!(claims.tee, Tee::Sgx);
        assert_eq!(claims.format, EvidenceFormat::DcapQuote);
        assert_eq!(
            claims.measurement,
            hex_of("33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb")
        );
        assert_eq!(
            claims.signer,
            Some(hex_of(
                "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
            ))
        );
        assert_eq!(claims.product_id, Some(0));
        assert_eq!(claims.svn, Some(0));
        assert!(!claims.debug);
        let mut report_data = b"Hello, world!".to_vec();
        report_data.resize(64, 0);
        assert_eq!(claims.report_data, report_data);
        assert_eq!(
            claims.tcb_status,
            TcbStatus::ConfigurationAndSwHardeningNeeded
        );
        assert_eq!(claims.advisory_ids, ["INTEL-SA-00289", "INTEL-SA-00615"]);
        let extra = |k: &str| claims.extra.get(k).map(String::as_str);
        assert_eq!(extra("fmspc"), Some("00a067110000"));
        assert_eq!(extra("cpusvn"), Some("0b0b1a18ffff04000000000000000000"));
        assert_eq!(
            extra("attributes"),
            Some("0500000000000000e700000000000000")
        );
        assert_eq!(extra("qe_svn"), Some("10"));
        assert_eq!(extra("pce_svn"), Some("15"));
        assert_eq!(extra("intel_tcb_status"), None);
        // The QE identity's nextUpdate, 2025-07-19T10:01:18Z, is the earliest expiry.
        assert_eq!(claims.expires_at, Some(1_752_919_278));
    }

    #[test]
    fn tdx_v4_quote_verifies() {
        let report_data = hex_of(
            "9a9d48e7f6799642d3d1b34e1e5e1742d4bb02dd6ddd551862c1211d35c304f9\
             eca3efdbb481601c163cf52493d6e44aed55d51ec39b7e518fadb92c2b523f20",
        );
        let ctx = Context::new(unix(JULY_2025)).expect_report_data(&report_data);
        let claims = Sample::Tdx
            .verifier()
            .verify(TDX_QUOTE, &ctx)
            .unwrap()
            .into_claims();
        assert_eq!(claims.tee, Tee::Tdx);
        assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
        assert!(claims.advisory_ids.is_empty());
        assert_eq!(
            claims.measurement,
            hex_of(
                "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407\
                 de03ae6dc5f87f27428b2538873118b7"
            )
        );
        assert_eq!(claims.signer, Some(vec![0; 48]));
        assert_eq!((claims.product_id, claims.svn), (None, None));
        assert!(!claims.debug);
        assert_eq!(claims.report_data, report_data);
        let extra = |k: &str| claims.extra.get(k).map(String::as_str).unwrap_or("-");
        assert_eq!(
            extra("rtmr0"),
            "44c0197b39157fdd7a4dcc44767f9d6b0bb3977c7a8e347b8492f827fe9d9e5c\
             48aca29b220b80b6a540cf994b9bc9c0"
        );
        assert_eq!(
            extra("rtmr1"),
            "0084452c01668329d4bc06acdf58a7205c26743304509973949e5619bf81a6a7\
             aea8c323c173019b3093d54e579e9378"
        );
        assert_eq!(
            extra("rtmr2"),
            "d833feef2cd945148aa38ead2c53e9b7f138190aaaebfc551dccd829fc207aa3\
             ba80b70870d7330733642e01d48c3132"
        );
        let zero48 = "0".repeat(96);
        for k in ["rtmr3", "mrconfigid", "mrowner", "mrownerconfig"] {
            assert_eq!(extra(k), zero48, "{k}");
        }
        assert_eq!(
            extra("mrseam"),
            "5b38e33a6487958b72c3c12a938eaa5e3fd4510c51aeeab58c7d5ecee41d7c43\
             6489d6c8e4f92f160b7cad34207b00c1"
        );
        assert_eq!(extra("tee_tcb_svn"), "06010300000000000000000000000000");
        assert_eq!(extra("td_attributes"), "0000001000000000");
        assert_eq!(extra("xfam"), "e702060000000000");
        assert_eq!(extra("fmspc"), "b0c06f000000");
        assert_eq!(extra("tee_tcb_svn2"), "-");
        // The PCK CRL's nextUpdate, 2025-07-19T10:00:35Z.
        assert_eq!(claims.expires_at, Some(1_752_919_235));
    }

    /// The v5 sample's PCK certificate has CPUSVN component 7 = 3, and every TCB level of its
    /// collateral requires 5 there: the platform is below all listed levels, which Intel's QVL
    /// reports as TCB_NOT_SUPPORTED. The quote is still authentic: every signature check runs
    /// before TCB matching, so the failure is the TCB rule and nothing earlier.
    #[test]
    fn tdx_v5_quote_is_authentic_but_its_tcb_is_below_every_level() {
        // What the collateral says, read independently of dcap-qvl.
        let coll: serde_json::Value = serde_json::from_slice(TDX5_COLLATERAL).unwrap();
        let tcb_info: serde_json::Value =
            serde_json::from_str(coll["tcb_info"].as_str().unwrap()).unwrap();
        let levels = tcb_info["tcbLevels"].as_array().unwrap();
        assert!(!levels.is_empty());
        for level in levels {
            assert_eq!(level["tcb"]["sgxtcbcomponents"][7]["svn"], 5);
        }
        let q = dcap_qvl::quote::Quote::parse(TDX5_QUOTE).unwrap();
        let pck = dcap_qvl::intel::extract_cert_chain(&q).unwrap();
        let ext = dcap_qvl::intel::parse_pck_extension(&pck[0]).unwrap();
        assert_eq!(ext.cpu_svn[7], 3);

        match Sample::Tdx5.verify(TDX5_QUOTE) {
            Err(Error::Rejected { rule, got, .. }) => {
                assert_eq!(rule, "platform TCB level");
                assert!(got.contains("No matching TCB level"), "{got}");
            }
            other => panic!("{other:?}"),
        }

        // The report fields, from the layout this module reads and from dcap-qvl's parser.
        let l = Sample::Tdx5.layout();
        assert_eq!((l.version, l.body_kind), (5, quote::BodyKind::Td15));
        let body = &TDX5_QUOTE[l.body.clone()];
        assert_eq!(
            hex::encode(&body[136..184]),
            "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1\
             ae451d382d5a9b1b4c0ed0e5ae9a3dbd"
        );
        let td15 = q.report.as_td15().unwrap();
        assert_eq!(hex::encode(td15.base.mr_td), hex::encode(&body[136..184]));
        assert_eq!(
            hex::encode(td15.tee_tcb_svn2),
            "0d010300000000000000000000000000"
        );
        assert_eq!(hex::encode(&body[584..600]), hex::encode(td15.tee_tcb_svn2));
    }

    impl DcapVerifier {
        /// dcap-qvl's own claims for a quote, to test the mapping into [`Claims`] alone.
        fn verify_inner_for_tests(&self, quote: &[u8], now: u64) -> QuoteClaims {
            QuoteVerifier::new(self.root_der.clone())
                .verify_with_policy(quote, &self.collateral.inner, now, &ClaimsOnly)
                .unwrap()
        }
    }

    #[rstest]
    #[case::revoked(dcap_qvl::TcbStatus::Revoked, None)]
    #[case::relaunch(dcap_qvl::TcbStatus::TDRelaunchAdvised, Some(TcbStatus::OutOfDate))]
    #[case::relaunch_config(
        dcap_qvl::TcbStatus::TDRelaunchAdvisedConfigurationNeeded,
        Some(TcbStatus::OutOfDateConfigurationNeeded)
    )]
    #[case::sw(
        dcap_qvl::TcbStatus::SWHardeningNeeded,
        Some(TcbStatus::SwHardeningNeeded)
    )]
    #[case::up_to_date(dcap_qvl::TcbStatus::UpToDate, Some(TcbStatus::UpToDate))]
    fn maps_tcb_status(#[case] intel: dcap_qvl::TcbStatus, #[case] ours: Option<TcbStatus>) {
        match (tcb_status(intel), ours) {
            (Ok((got, _)), Some(want)) => assert_eq!(got, want),
            (Err(Error::Revoked { .. }), None) => {}
            (other, _) => panic!("{intel}: {other:?}"),
        }
    }

    #[test]
    fn revoked_tcb_status_is_an_error_in_the_claims_too() {
        let mut v = Sample::Sgx
            .verifier()
            .verify_inner_for_tests(SGX_QUOTE, JULY_2025);
        v.tcb.status = dcap_qvl::TcbStatus::Revoked;
        assert!(matches!(
            claims(&v, &Sample::Sgx.layout()),
            Err(Error::Revoked { .. })
        ));
    }

    #[test]
    fn debug_flags_become_claims() {
        let mut v = Sample::Sgx
            .verifier()
            .verify_inner_for_tests(SGX_QUOTE, JULY_2025);
        if let Report::SgxEnclave(r) = &mut v.report {
            r.attributes[0] |= 0x02;
        }
        assert!(claims(&v, &Sample::Sgx.layout()).unwrap().debug);

        let mut v = Sample::Tdx
            .verifier()
            .verify_inner_for_tests(TDX_QUOTE, JULY_2025);
        if let Report::TD10(r) = &mut v.report {
            r.td_attributes[0] |= 0x01;
        }
        assert!(claims(&v, &Sample::Tdx.layout()).unwrap().debug);
    }

    #[test]
    fn sniffs_samples() {
        assert_eq!(sniff(SGX_QUOTE), Some(Tee::Sgx));
        assert_eq!(sniff(TDX_QUOTE), Some(Tee::Tdx));
        assert_eq!(sniff(TDX5_QUOTE), Some(Tee::Tdx));
        assert_eq!(sniff(SGX_COLLATERAL), None);
        assert_eq!(sniff(&[]), None);
    }

    #[test]
    fn collateral_window_matches_the_readmes() {
        let w = |s: Sample| {
            let c = s.collateral();
            (
                crate::rfc3339(c.valid_from()),
                crate::rfc3339(c.valid_until()),
            )
        };
        assert_eq!(
            w(Sample::Sgx),
            ("2025-06-19T10:56:11Z".into(), "2025-07-19T10:01:18Z".into())
        );
        assert_eq!(
            w(Sample::Tdx),
            ("2025-06-19T10:32:27Z".into(), "2025-07-19T10:00:35Z".into())
        );
        assert_eq!(
            w(Sample::Tdx5),
            ("2026-02-18T10:58:51Z".into(), "2026-03-20T10:41:15Z".into())
        );
        let debug = format!("{:?}", Sample::Sgx.collateral());
        assert!(debug.contains("2025-07-19T10:01:18Z"), "{debug}");
    }

    // ----- negative cases -----

    /// What a tampered input must fail with.
    #[derive(Debug)]
    enum Want {
        BadSignature(&'static str),
        Untrusted(&'static str),
        Expired(&'static str),
        NotYetValid(&'static str),
        Truncated,
        Unsupported,
        Malformed,
        ReportData,
        Rejected(&'static str),
    }

    fn assert_fails(result: Result<Verified, Error>, want: Want) {
        let err = match result {
            Ok(v) => panic!("verified, wanted {want:?}: {:?}", v.claims()),
            Err(e) => e,
        };
        let ok = match (&want, &err) {
            (Want::BadSignature(w), Error::BadSignature { what }) => w == what,
            (Want::Untrusted(w), Error::UntrustedChain { what, .. }) => w == what,
            (Want::Expired(w), Error::Expired { what, .. }) => what.contains(w),
            (Want::NotYetValid(w), Error::NotYetValid { what, .. }) => what.contains(w),
            (Want::Truncated, Error::Truncated { .. }) => true,
            (Want::Unsupported, Error::Unsupported { .. }) => true,
            (Want::Malformed, Error::Malformed { .. }) => true,
            (Want::ReportData, Error::ReportDataMismatch { .. }) => true,
            (Want::Rejected(r), Error::Rejected { rule, .. }) => r == rule,
            _ => false,
        };
        assert!(ok, "wanted {want:?}, got {err:?} ({err})");
        assert_eq!(err.fault(), crate::Fault::Evidence, "{err}");
    }

    /// Flip one bit of `sample`'s quote at `offset(layout)` and verify.
    fn flipped(sample: Sample, at: impl Fn(&QuoteLayout) -> usize) -> Result<Verified, Error> {
        let mut q = sample.quote().to_vec();
        let i = at(&sample.layout());
        q[i] ^= 0x01;
        sample.verify(&q)
    }

    /// The offset of the `n`th byte of `needle`'s first occurrence inside the PCK chain PEM.
    fn in_pem(quote: &[u8], l: &QuoteLayout, needle: &[u8]) -> usize {
        let pem = &quote[l.cert_data.clone()];
        let at = pem.windows(needle.len()).position(|w| w == needle).unwrap();
        l.cert_data.start + at
    }

    #[rstest]
    #[case::sgx_body(Sample::Sgx, |l: &QuoteLayout| l.body.start + 64, Want::BadSignature("quote"))]
    #[case::sgx_report_data(Sample::Sgx, |l: &QuoteLayout| l.body.end - 1, Want::BadSignature("quote"))]
    #[case::sgx_header_user_data(Sample::Sgx, |_: &QuoteLayout| 40, Want::BadSignature("quote"))]
    #[case::sgx_signature(Sample::Sgx, |l: &QuoteLayout| l.signature.start + 5, Want::BadSignature("quote"))]
    #[case::sgx_qe_report(Sample::Sgx, |l: &QuoteLayout| l.qe_report.start + 300, Want::BadSignature("QE report"))]
    #[case::sgx_qe_report_signature(Sample::Sgx, |l: &QuoteLayout| l.qe_report_signature.start + 40, Want::BadSignature("QE report"))]
    #[case::sgx_attestation_key(Sample::Sgx, |l: &QuoteLayout| l.attestation_key.start + 7, Want::Rejected("QE report binds the attestation key"))]
    #[case::sgx_qe_auth_data(Sample::Sgx, |l: &QuoteLayout| l.qe_auth_data.start, Want::Rejected("QE report binds the attestation key"))]
    #[case::tdx_body_mrtd(Sample::Tdx, |l: &QuoteLayout| l.body.start + 140, Want::BadSignature("quote"))]
    #[case::tdx_body_rtmr3(Sample::Tdx, |l: &QuoteLayout| l.body.start + 500, Want::BadSignature("quote"))]
    #[case::tdx_signature(Sample::Tdx, |l: &QuoteLayout| l.signature.start + 33, Want::BadSignature("quote"))]
    #[case::tdx_qe_report(Sample::Tdx, |l: &QuoteLayout| l.qe_report.start + 10, Want::BadSignature("QE report"))]
    #[case::tdx5_body(Sample::Tdx5, |l: &QuoteLayout| l.body.start + 600, Want::BadSignature("quote"))]
    #[case::tdx5_qe_report(Sample::Tdx5, |l: &QuoteLayout| l.qe_report.start + 200, Want::BadSignature("QE report"))]
    fn flipped_bit_in_the_quote(
        #[case] sample: Sample,
        #[case] at: fn(&QuoteLayout) -> usize,
        #[case] want: Want,
    ) {
        assert_fails(flipped(sample, at), want);
    }

    /// A changed byte in the PCK leaf certificate's signature value (the PEM's last line before
    /// the END marker holds the tail of the signature): its issuer's signature no longer verifies.
    #[rstest]
    #[case::sgx(Sample::Sgx)]
    #[case::tdx(Sample::Tdx)]
    fn altered_pck_certificate_is_untrusted(#[case] sample: Sample) {
        let q = sample.quote();
        let l = sample.layout();
        let end = in_pem(q, &l, b"-----END CERTIFICATE-----");
        // 10 base64 characters before the END line: inside the signature's last bytes.
        let i = end - 10;
        let mut tampered = q.to_vec();
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert_fails(sample.verify(&tampered), Want::Untrusted("PCK certificate"));
    }

    /// Only the first certificate in the quote's chain is the PCK leaf: swapping in a copy of
    /// its issuer as the leaf leaves no chain to a PCK certificate.
    #[test]
    fn pck_chain_without_its_leaf_is_refused() {
        let l = Sample::Sgx.layout();
        let pem = &SGX_QUOTE[l.cert_data.clone()];
        let second = pem
            .windows(27)
            .enumerate()
            .filter(|(_, w)| *w == b"-----BEGIN CERTIFICATE-----")
            .nth(1)
            .map(|(i, _)| i)
            .unwrap();
        let mut chain = pem[second..].to_vec();
        chain.resize(pem.len(), b'\n');
        let mut q = SGX_QUOTE.to_vec();
        q[l.cert_data.clone()].copy_from_slice(&chain);
        assert!(Sample::Sgx.verify(&q).is_err());
    }

    #[rstest]
    #[case::sgx(Sample::Sgx)]
    #[case::tdx(Sample::Tdx)]
    fn certificate_from_another_root_is_untrusted(#[case] sample: Sample) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Intel SGX Root CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).unwrap();
        let verifier = DcapVerifier::with_root_ca(sample.collateral(), root.der().to_vec());
        let result = verifier.verify(sample.quote(), &Context::new(unix(sample.now())));
        // The first thing signed by the root is the root CA CRL.
        assert_fails(result, Want::Untrusted("root CA CRL"));
    }

    #[test]
    fn unusable_root_is_refused() {
        let verifier = DcapVerifier::with_root_ca(Sample::Sgx.collateral(), b"not DER".to_vec());
        assert_fails(
            verifier.verify(SGX_QUOTE, &Context::new(unix(JULY_2025))),
            Want::Malformed,
        );
    }

    #[rstest]
    #[case::sgx_after(Sample::Sgx, "2025-07-19T10:01:19Z", Want::Expired("QE identity"))]
    #[case::sgx_long_after(Sample::Sgx, "2030-01-01T00:00:00Z", Want::Expired("QE identity"))]
    #[case::sgx_before(Sample::Sgx, "2025-06-19T10:56:10Z", Want::NotYetValid("TCB info"))]
    #[case::sgx_pre_epoch_now(Sample::Sgx, "1970-01-01T00:00:00Z", Want::NotYetValid("TCB info"))]
    #[case::tdx_after(Sample::Tdx, "2025-08-01T00:00:00Z", Want::Expired("PCK CRL"))]
    #[case::tdx_before(Sample::Tdx, "2025-06-01T00:00:00Z", Want::NotYetValid("QE identity"))]
    #[case::tdx5_after(Sample::Tdx5, "2026-03-20T10:41:15Z", Want::Expired("PCK CRL"))]
    #[case::tdx5_before(Sample::Tdx5, "2026-02-18T10:58:50Z", Want::NotYetValid("TCB info"))]
    fn outside_the_collateral_window(
        #[case] sample: Sample,
        #[case] now: &str,
        #[case] want: Want,
    ) {
        let now = humantime::parse_rfc3339(now).unwrap();
        let result = sample.verifier().verify(sample.quote(), &Context::new(now));
        assert_fails(result, want);
    }

    /// The collateral verifies from `valid_from` on, and until `valid_until` included when that
    /// is a certificate's or JSON body's end (SGX: the QE identity), excluded when it is a CRL's
    /// nextUpdate (TDX: the PCK CRL).
    #[rstest]
    #[case::sgx(Sample::Sgx, 0)]
    #[case::tdx(Sample::Tdx, 1)]
    fn window_edges(#[case] sample: Sample, #[case] exclusive_end: u64) {
        let c = sample.collateral();
        let second = std::time::Duration::from_secs(1);
        let last = c.valid_until() - second * exclusive_end as u32;
        for now in [c.valid_from(), last] {
            sample
                .verifier()
                .verify(sample.quote(), &Context::new(now))
                .unwrap_or_else(|e| panic!("{sample:?} at {}: {e}", crate::rfc3339(now)));
        }
        for now in [c.valid_from() - second, last + second] {
            assert!(
                sample
                    .verifier()
                    .verify(sample.quote(), &Context::new(now))
                    .is_err()
            );
        }
    }

    #[rstest]
    #[case::empty(Sample::Sgx, 0)]
    #[case::one_byte(Sample::Sgx, 1)]
    #[case::half_header(Sample::Tdx, 24)]
    #[case::header_only(Sample::Sgx, 48)]
    #[case::tdx_header_only(Sample::Tdx, 48)]
    #[case::v5_header_and_descriptor(Sample::Tdx5, 54)]
    #[case::body_cut(Sample::Sgx, 48 + 200)]
    #[case::tdx_body_cut(Sample::Tdx, 48 + 583)]
    #[case::no_signature_length(Sample::Sgx, 48 + 384 + 2)]
    #[case::signature_cut(Sample::Tdx, 48 + 584 + 4 + 63)]
    #[case::cert_chain_cut(Sample::Sgx, 4000)]
    #[case::last_signature_byte_missing(Sample::Tdx, 4935)]
    fn truncated_quote(#[case] sample: Sample, #[case] len: usize) {
        assert_fails(sample.verify(&sample.quote()[..len]), Want::Truncated);
    }

    #[rstest]
    #[case::version_2(Sample::Sgx, 2)]
    #[case::version_6(Sample::Tdx, 6)]
    #[case::sgx_as_v4(Sample::Sgx, 4)]
    #[case::tdx_as_v3(Sample::Tdx, 3)]
    fn unsupported_version(#[case] sample: Sample, #[case] version: u8) {
        let mut q = sample.quote().to_vec();
        q[0] = version;
        assert_fails(sample.verify(&q), Want::Unsupported);
    }

    #[test]
    fn unsupported_attestation_key_type() {
        let mut q = SGX_QUOTE.to_vec();
        q[2] = 3; // ECDSA P-384: defined, never produced
        assert_fails(Sample::Sgx.verify(&q), Want::Unsupported);
    }

    #[test]
    fn other_qe_vendor_is_rejected() {
        let mut q = TDX_QUOTE.to_vec();
        q[12] ^= 0xff;
        assert_fails(Sample::Tdx.verify(&q), Want::Rejected("QE vendor id"));
    }

    #[rstest]
    #[case::sgx_other(Sample::Sgx, b"Hello, world?".to_vec())]
    #[case::sgx_prefix_not_padded(Sample::Sgx, b"Hello".to_vec())]
    #[case::sgx_longer(Sample::Sgx, vec![0; 65])]
    #[case::tdx_binding(Sample::Tdx, crate::binding::report_data(b"nonce", b"key").to_vec())]
    fn wrong_report_data(#[case] sample: Sample, #[case] expected: Vec<u8>) {
        let ctx = Context::new(unix(sample.now())).expect_report_data(expected);
        assert_fails(
            sample.verifier().verify(sample.quote(), &ctx),
            Want::ReportData,
        );
    }

    /// Apply `edit` to the collateral JSON object and verify the untouched quote with it.
    fn with_collateral(
        sample: Sample,
        edit: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>),
    ) -> Result<Verified, Error> {
        let mut v: serde_json::Value = serde_json::from_slice(sample.collateral_json()).unwrap();
        edit(v.as_object_mut().unwrap());
        let collateral = Collateral::from_json(&serde_json::to_vec(&v).unwrap())?;
        DcapVerifier::new(collateral).verify(sample.quote(), &Context::new(unix(sample.now())))
    }

    /// Flip the low bit of the hex digit at `index` of a hex string field.
    fn flip_hex(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, index: usize) {
        let s = map[key].as_str().unwrap();
        let mut bytes = hex::decode(s).unwrap();
        bytes[index] ^= 0x01;
        map[key] = hex::encode(bytes).into();
    }

    /// Replace the first `from` in a string field by `to`.
    fn replace(
        map: &mut serde_json::Map<String, serde_json::Value>,
        key: &str,
        from: &str,
        to: &str,
    ) {
        let s = map[key].as_str().unwrap();
        assert!(s.contains(from), "{key} has no {from}");
        map[key] = s.replacen(from, to, 1).into();
    }

    #[rstest]
    #[case::sgx_tcb_info_signature(
        Sample::Sgx,
        "tcb_info_signature",
        Want::BadSignature("TCB info")
    )]
    #[case::tdx_tcb_info_signature(
        Sample::Tdx,
        "tcb_info_signature",
        Want::BadSignature("TCB info")
    )]
    #[case::sgx_qe_identity_signature(
        Sample::Sgx,
        "qe_identity_signature",
        Want::BadSignature("QE identity")
    )]
    #[case::tdx5_qe_identity_signature(
        Sample::Tdx5,
        "qe_identity_signature",
        Want::BadSignature("QE identity")
    )]
    fn tampered_collateral_signature(
        #[case] sample: Sample,
        #[case] key: &str,
        #[case] want: Want,
    ) {
        assert_fails(with_collateral(sample, |m| flip_hex(m, key, 10)), want);
    }

    #[rstest]
    #[case::sgx_tcb_status(
        Sample::Sgx,
        "tcb_info",
        "\"OutOfDate\"",
        "\"UpToDate\"",
        Want::BadSignature("TCB info")
    )]
    #[case::tdx_tcb_eval_number(
        Sample::Tdx,
        "tcb_info",
        "\"tcbEvaluationDataNumber\":17",
        "\"tcbEvaluationDataNumber\":18",
        Want::BadSignature("TCB info")
    )]
    #[case::sgx_qe_isvprodid(
        Sample::Sgx,
        "qe_identity",
        "\"isvprodid\":1",
        "\"isvprodid\":2",
        Want::BadSignature("QE identity")
    )]
    #[case::tdx_next_update(
        Sample::Tdx,
        "tcb_info",
        "\"nextUpdate\":\"2025-07-19",
        "\"nextUpdate\":\"2025-07-29",
        Want::BadSignature("TCB info")
    )]
    fn tampered_collateral_json(
        #[case] sample: Sample,
        #[case] key: &str,
        #[case] from: &str,
        #[case] to: &str,
        #[case] want: Want,
    ) {
        assert_fails(with_collateral(sample, |m| replace(m, key, from, to)), want);
    }

    #[test]
    fn pck_crl_signed_by_no_one_we_trust_is_refused() {
        // A bit flipped in the PCK CRL's signature: webpki cannot check revocation of the PCK.
        let result = with_collateral(Sample::Sgx, |m| {
            let len = hex::decode(m["pck_crl"].as_str().unwrap()).unwrap().len();
            flip_hex(m, "pck_crl", len - 3);
        });
        assert_fails(result, Want::Untrusted("PCK certificate"));
    }

    #[test]
    fn root_crl_not_signed_by_the_root_is_refused() {
        let result = with_collateral(Sample::Tdx, |m| {
            let len = hex::decode(m["root_ca_crl"].as_str().unwrap())
                .unwrap()
                .len();
            flip_hex(m, "root_ca_crl", len - 3);
        });
        assert_fails(result, Want::Untrusted("root CA CRL"));
    }

    #[test]
    fn collateral_of_another_platform_is_rejected() {
        // Valid, Intel-signed collateral, but for the TDX platform: FMSPC and TEE differ.
        let collateral = Sample::Tdx.collateral();
        let result =
            DcapVerifier::new(collateral).verify(SGX_QUOTE, &Context::new(unix(JULY_2025)));
        let err = result.unwrap_err();
        assert!(matches!(err, Error::Rejected { .. }), "{err:?}");
    }

    #[rstest]
    #[case::not_json(b"{".to_vec())]
    #[case::missing_key(br#"{"tcb_info": "{}"}"#.to_vec())]
    #[case::bad_signature_length(short_signature_collateral())]
    #[case::bad_crl(bad_crl_collateral())]
    fn malformed_collateral(#[case] json: Vec<u8>) {
        assert!(matches!(
            Collateral::from_json(&json),
            Err(Error::Malformed { .. })
        ));
    }

    fn short_signature_collateral() -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(SGX_COLLATERAL).unwrap();
        v["tcb_info_signature"] = "abcd".into();
        serde_json::to_vec(&v).unwrap()
    }

    fn bad_crl_collateral() -> Vec<u8> {
        let mut v: serde_json::Value = serde_json::from_slice(SGX_COLLATERAL).unwrap();
        v["pck_crl"] = "3000".into();
        serde_json::to_vec(&v).unwrap()
    }

    /// A tiny deterministic generator (xorshift64*), so the mutation run is reproducible.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Thousands of bit flips, byte overwrites, truncations and length-field changes of the
    /// samples: none may panic. The few that still verify may only touch what the signatures do
    /// not cover (PEM whitespace, the quote's own copy of the root certificate, which is never
    /// trusted, bytes after the signature data) and must yield exactly the original claims.
    #[test]
    fn mutated_quotes_never_panic() {
        let mut rng = Rng(0x00c0_ffee_d0d0_cafe);
        let samples = [Sample::Sgx, Sample::Tdx, Sample::Tdx5];
        let verifiers: Vec<DcapVerifier> = samples.iter().map(|s| s.verifier()).collect();
        let baseline: Vec<Option<Claims>> = samples
            .iter()
            .zip(&verifiers)
            .map(|(s, v)| {
                let ctx = Context::new(unix(s.now()));
                v.verify(s.quote(), &ctx).ok().map(Verified::into_claims)
            })
            .collect();
        let (mut accepted, rounds) = (0, 3000);
        for round in 0..rounds {
            let which = round % samples.len();
            let sample = samples[which];
            let mut q = sample.quote().to_vec();
            match rng.below(5) {
                0 | 1 => {
                    for _ in 0..=rng.below(3) {
                        let i = rng.below(q.len());
                        q[i] ^= 1 << rng.below(8);
                    }
                }
                2 => {
                    let i = rng.below(q.len());
                    q[i] = rng.next() as u8;
                }
                3 => q.truncate(rng.below(q.len())),
                _ => {
                    // Overwrite 4 bytes among the headers and length fields with a random value.
                    let i = rng.below(1300.min(q.len() - 4));
                    q[i..i + 4].copy_from_slice(&(rng.next() as u32).to_le_bytes());
                }
            }
            let ctx = Context::new(unix(sample.now()));
            if let Ok(v) = verifiers[which].verify(&q, &ctx) {
                accepted += 1;
                let signed = sample.layout().signed;
                assert_eq!(q[signed.clone()], sample.quote()[signed], "round {round}");
                assert_eq!(Some(v.claims()), baseline[which].as_ref(), "round {round}");
            }
        }
        assert!(accepted < rounds / 10, "{accepted} mutations verified");
    }
}

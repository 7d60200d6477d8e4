//! A stand-in for Intel's PKI, for tests of what real collateral never shows: a revoked PCK or
//! PCK CA certificate, a revoked TCB level, a TCB info under which the TDX v5 sample's platform
//! is appraisable.
//!
//! It re-creates a sample's trust chain under a fresh root with rcgen: a PCK CA and a PCK leaf
//! carrying the real leaf's SGX extension (so FMSPC, CPUSVN and PCESVN are unchanged), a TCB
//! signing certificate, both CRLs, and Intel's TCB info (optionally edited) and QE identity JSON
//! re-signed. The quote keeps its attestation key and QE report; only the QE report signature is
//! redone with the new PCK key, and the new PCK chain travels in the collateral's
//! `pck_certificate_chain`, which dcap-qvl prefers to the quote's.

use super::{Collateral, DcapVerifier, quote::QuoteLayout};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    CustomExtension, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};
use x509_cert_v03::der::Decode as _;

/// Intel's SGX extension OID, 1.2.840.113741.1.13.1.
const SGX_EXTENSION: [u64; 7] = [1, 2, 840, 113_741, 1, 13, 1];
/// Serial numbers of the generated PCK CA and PCK leaf.
const PCK_CA_SERIAL: u8 = 0x0c;
const PCK_SERIAL: u8 = 0x1e;

/// What to revoke or change in the generated PKI.
#[derive(Clone, Copy, Default)]
pub(super) struct Options {
    /// List the PCK leaf on the PCK CRL.
    pub revoke_pck: bool,
    /// List the PCK CA on the root CA CRL.
    pub revoke_pck_ca: bool,
    /// Edit the parsed TCB info before it is signed.
    pub tcb_info: Option<fn(&mut Value)>,
    /// Edit the quote's report body, then sign it with a new attestation key (bound into the QE
    /// report as the QE would).
    pub body: Option<fn(&mut [u8])>,
}

/// A sample quote and matching collateral under a generated root, and that root's DER.
pub(super) struct FakePki {
    pub quote: Vec<u8>,
    pub root_der: Vec<u8>,
    pub collateral: Collateral,
}

impl FakePki {
    /// Re-create the PKI of `quote` (a sample) and its `collateral_json`.
    pub(super) fn new(quote: &[u8], collateral_json: &[u8], options: Options) -> Self {
        let layout = QuoteLayout::parse(quote).unwrap();
        let root = ca("Intel SGX Root CA", 1, None);
        let pck_ca = ca("Intel SGX PCK CA", PCK_CA_SERIAL, Some(&root));
        let tcb_signer = leaf("Intel SGX TCB Signing", 2, Vec::new(), &root);
        let extension = sgx_extension(&quote[layout.cert_data.clone()]);
        let pck = leaf("Intel SGX PCK Certificate", PCK_SERIAL, extension, &pck_ca);

        let mut quote = quote.to_vec();
        if let Some(edit) = options.body {
            edit(&mut quote[layout.body.clone()]);
            resign_body(&mut quote, &layout);
        }
        let qe_sig = sign(&pck.1, &quote[layout.qe_report.clone()]);
        quote[layout.qe_report_signature.clone()].copy_from_slice(&qe_sig);

        let mut json: Value = serde_json::from_slice(collateral_json).unwrap();
        let mut tcb_info = json["tcb_info"].as_str().unwrap().to_string();
        if let Some(edit) = options.tcb_info {
            let mut parsed: Value = serde_json::from_str(&tcb_info).unwrap();
            edit(&mut parsed);
            tcb_info = parsed.to_string();
        }
        let qe_identity = json["qe_identity"].as_str().unwrap().to_string();
        let revoked = |yes: bool, serial: u8| {
            if yes {
                vec![revoked_cert(serial)]
            } else {
                Vec::new()
            }
        };
        let root_crl = crl(&root, revoked(options.revoke_pck_ca, PCK_CA_SERIAL));
        let pck_crl = crl(&pck_ca, revoked(options.revoke_pck, PCK_SERIAL));

        let pem = |ders: &[&[u8]]| -> String {
            ders.iter()
                .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
                .collect()
        };
        let root_der = root.der().to_vec();
        json["tcb_info_signature"] = hex::encode(sign(&tcb_signer.1, tcb_info.as_bytes())).into();
        json["qe_identity_signature"] =
            hex::encode(sign(&tcb_signer.1, qe_identity.as_bytes())).into();
        json["tcb_info"] = tcb_info.into();
        json["qe_identity"] = qe_identity.into();
        json["tcb_info_issuer_chain"] = pem(&[tcb_signer.0.der(), &root_der]).into();
        json["qe_identity_issuer_chain"] = pem(&[tcb_signer.0.der(), &root_der]).into();
        json["pck_crl_issuer_chain"] = pem(&[pck_ca.der(), &root_der]).into();
        json["pck_certificate_chain"] = pem(&[pck.0.der(), pck_ca.der(), &root_der]).into();
        json["root_ca_crl"] = hex::encode(root_crl).into();
        json["pck_crl"] = hex::encode(pck_crl).into();
        let collateral = Collateral::from_json(&serde_json::to_vec(&json).unwrap()).unwrap();
        Self {
            quote,
            root_der,
            collateral,
        }
    }

    pub(super) fn verifier(&self) -> DcapVerifier {
        DcapVerifier::with_root_ca(self.collateral.clone(), self.root_der.clone())
    }
}

/// Sign the quote's header and body with a new attestation key, and bind that key into the QE
/// report: report_data[..32] = SHA-256(attestation key ‖ QE auth data).
fn resign_body(quote: &mut [u8], layout: &QuoteLayout) {
    use sha2::{Digest, Sha256};
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let public = &key.public_key().as_ref()[1..]; // x ‖ y, without the SEC1 0x04 prefix
    quote[layout.attestation_key.clone()].copy_from_slice(public);
    let mut h = Sha256::new();
    h.update(public);
    h.update(&quote[layout.qe_auth_data.clone()]);
    let report_data = layout.qe_report.start + 320;
    quote[report_data..report_data + 32].copy_from_slice(&h.finalize());
    let signature = key.sign(&rng, &quote[layout.signed.clone()]).unwrap();
    quote[layout.signature.clone()].copy_from_slice(signature.as_ref());
}

/// TCB info edit: a first TCB level that every platform meets, with status `status`.
fn lowest_level_first(tcb_info: &mut Value, status: &str) {
    let zeros: Vec<Value> = (0..16).map(|_| json!({ "svn": 0 })).collect();
    let level = json!({
        "tcb": { "sgxtcbcomponents": zeros, "pcesvn": 0, "tdxtcbcomponents": zeros },
        "tcbDate": "2024-03-13T00:00:00Z",
        "tcbStatus": status,
        "advisoryIDs": ["INTEL-SA-00000"],
    });
    tcb_info["tcbLevels"]
        .as_array_mut()
        .unwrap()
        .insert(0, level);
}

/// A CA certificate with its key: self-signed without an issuer.
fn ca(
    cn: &str,
    serial: u8,
    issuer: Option<&CertifiedIssuer<'static, KeyPair>>,
) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = params(cn, serial);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    match issuer {
        None => CertifiedIssuer::self_signed(params, key).unwrap(),
        Some(issuer) => CertifiedIssuer::signed_by(params, key, issuer).unwrap(),
    }
}

/// An end-entity certificate and its key, with extra extensions.
fn leaf(
    cn: &str,
    serial: u8,
    extensions: Vec<CustomExtension>,
    issuer: &CertifiedIssuer<'static, KeyPair>,
) -> (rcgen::Certificate, KeyPair) {
    let mut params = params(cn, serial);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.custom_extensions = extensions;
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    (params.signed_by(&key, issuer).unwrap(), key)
}

fn params(cn: &str, serial: u8) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.serial_number = Some(SerialNumber::from(vec![serial]));
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params.key_identifier_method = KeyIdMethod::Sha256;
    params
}

/// The SGX extension of the sample's real PCK certificate (the first of `pem_chain`), unchanged.
fn sgx_extension(pem_chain: &[u8]) -> Vec<CustomExtension> {
    let ders = super::window::pem_ders(pem_chain).unwrap();
    let cert = x509_cert_v03::Certificate::from_der(&ders[0]).unwrap();
    let oid = x509_cert_v03::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
    let ext = cert
        .tbs_certificate()
        .extensions()
        .unwrap()
        .iter()
        .find(|e| e.extn_id == oid)
        .unwrap();
    vec![CustomExtension::from_oid_content(
        &SGX_EXTENSION,
        ext.extn_value.as_bytes().to_vec(),
    )]
}

fn revoked_cert(serial: u8) -> RevokedCertParams {
    RevokedCertParams {
        serial_number: SerialNumber::from(vec![serial]),
        revocation_time: date_time_ymd(2025, 1, 1),
        reason_code: Some(rcgen::RevocationReason::KeyCompromise),
        invalidity_date: None,
    }
}

/// A CRL by `issuer`, valid 2020 .. 2040: the samples' own collateral dates the window.
fn crl(issuer: &CertifiedIssuer<'static, KeyPair>, revoked: Vec<RevokedCertParams>) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2020, 1, 1),
        next_update: date_time_ymd(2040, 1, 1),
        crl_number: SerialNumber::from(vec![1]),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    }
    .signed_by(issuer)
    .unwrap()
    .der()
    .to_vec()
}

/// An ECDSA P-256 signature as Intel encodes it: r ‖ s, 64 bytes.
fn sign(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    let rng = SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, key.serialized_der(), &rng)
            .unwrap();
    pair.sign(&rng, message).unwrap().as_ref().to_vec()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::dcap::tests::{SGX_COLLATERAL, SGX_QUOTE, TDX5_COLLATERAL, TDX5_QUOTE, sgx_claims};
    use crate::error::unix;
    use crate::{Context, Error, TcbStatus, Tee, Verifier};

    /// 2025-07-01T00:00:00Z and 2026-03-01T00:00:00Z, inside the samples' windows.
    const JULY_2025: u64 = 1_751_328_000;
    const MARCH_2026: u64 = 1_772_323_200;

    fn verify_sgx(options: Options) -> Result<crate::Verified, Error> {
        let fake = FakePki::new(SGX_QUOTE, SGX_COLLATERAL, options);
        fake.verifier()
            .verify(&fake.quote, &Context::new(unix(JULY_2025)))
    }

    fn verify_tdx5(edit: fn(&mut Value)) -> Result<crate::Verified, Error> {
        let options = Options {
            tcb_info: Some(edit),
            ..Options::default()
        };
        let fake = FakePki::new(TDX5_QUOTE, TDX5_COLLATERAL, options);
        fake.verifier()
            .verify(&fake.quote, &Context::new(unix(MARCH_2026)))
    }

    /// The generated PKI is complete: without revocations the quote verifies to the same claims
    /// as under Intel's root. So the failures below are the revocations and nothing else.
    #[test]
    fn the_stand_in_verifies() {
        let claims = verify_sgx(Options::default()).unwrap().into_claims();
        assert_eq!(claims, sgx_claims());
    }

    #[rstest::rstest]
    #[case::pck_on_the_pck_crl(Options { revoke_pck: true, ..Options::default() }, "PCK certificate")]
    #[case::pck_ca_on_the_root_crl(Options { revoke_pck_ca: true, ..Options::default() }, "PCK certificate")]
    #[case::tcb_level(Options { tcb_info: Some(revoke_sgx_level), ..Options::default() }, "platform TCB level")]
    fn revoked(#[case] options: Options, #[case] what_starts: &str) {
        match verify_sgx(options) {
            Err(Error::Revoked { what }) => assert!(what.starts_with(what_starts), "{what}"),
            Err(other) => panic!("{other:?}"),
            Ok(v) => panic!("verified: {:?}", v.claims()),
        }
    }

    /// A debug enclave verifies, and says so: policies refuse it, not the verifier.
    #[test]
    fn sgx_debug_enclave_is_reported() {
        let options = Options {
            body: Some(|body| body[48] |= 0x02), // ATTRIBUTES.DEBUG
            ..Options::default()
        };
        let claims = verify_sgx(options).unwrap().into_claims();
        assert!(claims.debug);
        assert_eq!(
            claims.extra["attributes"],
            "0700000000000000e700000000000000"
        );
        assert_eq!(claims.measurement, sgx_claims().measurement);
    }

    /// A changed body signed by a key the QE did not certify is still refused.
    #[test]
    fn body_signed_by_an_uncertified_key_is_refused() {
        let mut fake = FakePki::new(SGX_QUOTE, SGX_COLLATERAL, Options::default());
        let layout = QuoteLayout::parse(&fake.quote).unwrap();
        let qe_report_signature = fake.quote[layout.qe_report_signature.clone()].to_vec();
        resign_body(&mut fake.quote, &layout);
        // The QE report now binds the new key, but its PCK signature is over the old report.
        fake.quote[layout.qe_report_signature.clone()].copy_from_slice(&qe_report_signature);
        let result = fake
            .verifier()
            .verify(&fake.quote, &Context::new(unix(JULY_2025)));
        assert!(
            matches!(result, Err(Error::BadSignature { what: "QE report" })),
            "{result:?}"
        );
    }

    /// TD attribute bits: DEBUG is reported; MIGRATABLE is refused.
    #[rstest::rstest]
    #[case::debug(|body: &mut [u8]| body[120] |= 0x01, Ok(true))]
    #[case::migratable(|body: &mut [u8]| body[123] |= 0x20, Err("TD attributes"))]
    fn td_attributes(#[case] edit: fn(&mut [u8]), #[case] want: Result<bool, &str>) {
        let options = Options {
            tcb_info: Some(|t| lowest_level_first(t, "UpToDate")),
            body: Some(edit),
            ..Options::default()
        };
        let fake = FakePki::new(TDX5_QUOTE, TDX5_COLLATERAL, options);
        let result = fake
            .verifier()
            .verify(&fake.quote, &Context::new(unix(MARCH_2026)));
        match (result, want) {
            (Ok(v), Ok(debug)) => assert_eq!(v.claims().debug, debug),
            (Err(Error::Rejected { rule, .. }), Err(want)) => assert_eq!(rule, want),
            (other, want) => panic!("wanted {want:?}, got {other:?}"),
        }
    }

    /// A TCB info re-signed with another evaluation data number: the claims carry the new one
    /// for the TCB info and the unchanged QE identity's.
    #[test]
    fn claims_carry_a_changed_tcb_evaluation_data_number() {
        let claims = verify_sgx(Options {
            tcb_info: Some(|t| t["tcbEvaluationDataNumber"] = 19.into()),
            ..Options::default()
        })
        .unwrap()
        .into_claims();
        let dcap = claims.dcap.unwrap();
        assert_eq!(
            (
                dcap.tcb_evaluation_data_number,
                dcap.qe_tcb_evaluation_data_number,
                dcap.oldest()
            ),
            (19, 17, 17)
        );
    }

    /// The level the SGX sample's platform matches becomes `Revoked`.
    fn revoke_sgx_level(tcb_info: &mut Value) {
        for level in tcb_info["tcbLevels"].as_array_mut().unwrap() {
            if level["tcbStatus"] == "ConfigurationAndSWHardeningNeeded" {
                level["tcbStatus"] = "Revoked".into();
            }
        }
    }

    /// With a TCB level its platform meets, the TDX 1.5 (v5) sample verifies end to end, and its
    /// claims carry the TDX 1.5 fields.
    #[test]
    fn tdx5_with_an_appraisable_tcb_verifies() {
        let claims = verify_tdx5(|t| lowest_level_first(t, "OutOfDate"))
            .unwrap()
            .into_claims();
        assert_eq!(claims.tee, Tee::Tdx);
        assert_eq!(claims.tcb_status, TcbStatus::OutOfDate);
        assert_eq!(claims.advisory_ids, ["INTEL-SA-00000"]);
        assert_eq!(
            hex::encode(&claims.measurement),
            "273828c46252fcbdd8ad2dd907130222b03466d52a2911d70c1a5950895d6bd1\
             ae451d382d5a9b1b4c0ed0e5ae9a3dbd"
        );
        let extra = |k: &str| claims.extra[k].as_str();
        assert_eq!(extra("tee_tcb_svn"), "07010300000000000000000000000000");
        assert_eq!(extra("tee_tcb_svn2"), "0d010300000000000000000000000000");
        assert_eq!(
            extra("mrseam"),
            "49b66faa451d19ebbdbe89371b8daf2b65aa3984ec90110343e9e2eec116af08\
             850fa20e3b1aa9a874d77a65380ee7e6"
        );
        assert_eq!(extra("rtmr0"), "0".repeat(96));
        assert_eq!(extra("fmspc"), "90c06f000000");
        assert!(!claims.extra.contains_key("intel_tcb_status"));
        let mut rd =
            hex::decode("d2142b643598eb5fae2bc8529dd79a558b29f868ccbb6531cb28dab9dce47728")
                .unwrap();
        rd.resize(64, 0);
        assert_eq!(claims.report_data, rd);
    }

    /// The TD launched on TDX module SVN 7, which this TCB info calls out of date, and now runs
    /// on SVN 13, which is up to date: Intel says TDRelaunchAdvised, this crate OutOfDate.
    #[test]
    fn tdx5_relaunch_advised_is_out_of_date() {
        let claims = verify_tdx5(|t| {
            lowest_level_first(t, "UpToDate");
            for module in t["tdxModuleIdentities"].as_array_mut().unwrap() {
                if module["id"] == "TDX_01" {
                    module["tcbLevels"] = json!([
                        { "tcb": { "isvsvn": 13 }, "tcbDate": "2024-11-13T00:00:00Z",
                          "tcbStatus": "UpToDate" },
                        { "tcb": { "isvsvn": 7 }, "tcbDate": "2024-03-13T00:00:00Z",
                          "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-01036"] },
                    ]);
                }
            }
        })
        .unwrap()
        .into_claims();
        assert_eq!(claims.tcb_status, TcbStatus::OutOfDate);
        assert_eq!(claims.extra["intel_tcb_status"], "TDRelaunchAdvised");
    }
}

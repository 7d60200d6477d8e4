//! A stand-in for Intel's PKI, for tests of what real collateral never shows: a revoked PCK or
//! PCK CA certificate, a revoked TCB level.
//!
//! It re-creates the SGX sample's trust chain under a fresh root with rcgen: a PCK CA and a PCK
//! leaf carrying the real leaf's SGX extension (so FMSPC, CPUSVN and PCESVN are unchanged), a TCB
//! signing certificate, both CRLs, and Intel's TCB info and QE identity JSON re-signed. The quote
//! keeps its attestation key and QE report; only the QE report signature is redone with the new
//! PCK key, and the new PCK chain travels in the collateral's `pck_certificate_chain`, which
//! dcap-qvl prefers to the quote's.

use super::tests::{SGX_COLLATERAL, SGX_QUOTE};
use super::{Collateral, DcapVerifier, quote::QuoteLayout};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    CustomExtension, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
    RevokedCertParams, SerialNumber, date_time_ymd,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use x509_cert::der::Decode as _;

/// Intel's SGX extension OID, 1.2.840.113741.1.13.1.
const SGX_EXTENSION: [u64; 7] = [1, 2, 840, 113_741, 1, 13, 1];
/// Serial numbers of the generated PCK CA and PCK leaf.
const PCK_CA_SERIAL: u8 = 0x0c;
const PCK_SERIAL: u8 = 0x1e;

/// What to revoke or change in the generated PKI.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Options {
    /// List the PCK leaf on the PCK CRL.
    pub revoke_pck: bool,
    /// List the PCK CA on the root CA CRL.
    pub revoke_pck_ca: bool,
    /// Give the TCB level the sample matches the status `Revoked`.
    pub revoke_tcb_level: bool,
}

/// The SGX sample quote and matching collateral under a generated root, and that root's DER.
pub(super) struct FakeSgx {
    pub quote: Vec<u8>,
    pub root_der: Vec<u8>,
    pub collateral: Collateral,
}

impl FakeSgx {
    pub(super) fn new(options: Options) -> Self {
        let root = ca("Intel SGX Root CA", 1, None);
        let pck_ca = ca("Intel SGX PCK Processor CA", PCK_CA_SERIAL, Some(&root));
        let tcb_signer = leaf("Intel SGX TCB Signing", 2, Vec::new(), &root);
        let pck = leaf(
            "Intel SGX PCK Certificate",
            PCK_SERIAL,
            sgx_extension(),
            &pck_ca,
        );

        let layout = QuoteLayout::parse(SGX_QUOTE).unwrap();
        let mut quote = SGX_QUOTE.to_vec();
        let qe_sig = sign(&pck.1, &quote[layout.qe_report.clone()]);
        quote[layout.qe_report_signature.clone()].copy_from_slice(&qe_sig);

        let mut json: serde_json::Value = serde_json::from_slice(SGX_COLLATERAL).unwrap();
        let mut tcb_info = json["tcb_info"].as_str().unwrap().to_string();
        if options.revoke_tcb_level {
            tcb_info = tcb_info.replace("\"ConfigurationAndSWHardeningNeeded\"", "\"Revoked\"");
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

/// The SGX extension of the sample's real PCK certificate, unchanged.
fn sgx_extension() -> Vec<CustomExtension> {
    let layout = QuoteLayout::parse(SGX_QUOTE).unwrap();
    let ders = super::window::pem_ders(&SGX_QUOTE[layout.cert_data]).unwrap();
    let cert = x509_cert::Certificate::from_der(&ders[0]).unwrap();
    let oid = x509_cert::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113741.1.13.1");
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

/// A CRL by `issuer`, valid through June and July 2025.
fn crl(issuer: &CertifiedIssuer<'static, KeyPair>, revoked: Vec<RevokedCertParams>) -> Vec<u8> {
    CertificateRevocationListParams {
        this_update: date_time_ymd(2025, 6, 1),
        next_update: date_time_ymd(2025, 8, 1),
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
    use crate::error::unix;
    use crate::{Context, Error, TcbStatus, Verifier};

    const JULY_2025: u64 = 1_751_328_000;

    fn verify(options: Options) -> Result<crate::Verified, Error> {
        let fake = FakeSgx::new(options);
        fake.verifier()
            .verify(&fake.quote, &Context::new(unix(JULY_2025)))
    }

    /// The generated PKI is complete: without revocations the quote verifies to the same claims
    /// as under Intel's root. So the failures below are the revocations and nothing else.
    #[test]
    fn the_stand_in_verifies() {
        let claims = verify(Options::default()).unwrap().into_claims();
        let real = super::super::tests::sgx_claims();
        assert_eq!(claims.measurement, real.measurement);
        assert_eq!(
            claims.tcb_status,
            TcbStatus::ConfigurationAndSwHardeningNeeded
        );
        assert_eq!(claims.advisory_ids, real.advisory_ids);
        assert_eq!(claims.extra, real.extra);
        // The generated CRLs expire on 2025-08-01, after the QE identity (2025-07-19).
        assert_eq!(claims.expires_at, real.expires_at);
    }

    #[rstest::rstest]
    #[case::pck_on_the_pck_crl(Options { revoke_pck: true, ..Options::default() }, "PCK certificate")]
    #[case::pck_ca_on_the_root_crl(Options { revoke_pck_ca: true, ..Options::default() }, "PCK certificate")]
    #[case::tcb_level(Options { revoke_tcb_level: true, ..Options::default() }, "platform TCB level")]
    fn revoked(#[case] options: Options, #[case] what_starts: &str) {
        match verify(options) {
            Err(Error::Revoked { what }) => assert!(what.starts_with(what_starts), "{what}"),
            other => panic!("{other:?}"),
        }
    }
}

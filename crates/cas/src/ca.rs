//! Each session's certificate authority, and the short-lived certificates it issues to attested
//! workloads for mutual TLS between them.
//!
//! A workload never sends CAS a private key or a CSR: CAS certifies the public key the evidence
//! bound (`report_data`), so a certificate from a session CA proves that its key belongs to a
//! process that passed attestation under that session's policy.

use crate::Error;
use p256::pkcs8::DecodePublicKey;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PublicKeyData, SerialNumber,
    SignatureAlgorithm,
};
use std::fmt;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// How long a session CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);

/// A session's CA: its key (kept encrypted in the store) and self-signed certificate.
pub struct SessionCa {
    issuer: Issuer<'static, KeyPair>,
    cert_der: Vec<u8>,
    cert_pem: String,
}

impl fmt::Debug for SessionCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionCa")
            .field("cert_sha256", &hex::encode(crate::sha256(&self.cert_der)))
            .finish_non_exhaustive()
    }
}

/// A certificate issued to a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedCert {
    /// DER.
    pub der: Vec<u8>,
    /// PEM.
    pub pem: String,
}

impl SessionCa {
    /// A new CA for `session` with a fresh P-256 key, valid from `now` for ten years.
    pub fn generate(session: &str, now: SystemTime) -> Result<Self, Error> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(internal)?;
        Self::generate_with(
            key,
            &format!("Cloister session CA {session}"),
            CA_VALIDITY,
            now,
        )
    }

    /// A new self-signed CA with `key` (P-256, P-384, Ed25519 or RSA), common name
    /// `common_name`, valid from `now` for `validity`: what a policy's `x509-ca` secret is.
    pub fn generate_with(
        key: KeyPair,
        common_name: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<Self, Error> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Cloister");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now.into();
        params.not_after = (now + validity).into();
        params.serial_number = Some(random_serial()?);
        let cert = params.self_signed(&key).map_err(internal)?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            cert_pem: pem(cert.der()),
            issuer: Issuer::new(params, key),
        })
    }

    /// Rebuild a CA from its stored certificate (DER) and PKCS#8 private key.
    pub fn from_parts(cert_der: &[u8], key_pkcs8: &[u8]) -> Result<Self, Error> {
        let key = KeyPair::try_from(key_pkcs8)
            .map_err(|_| Error::invalid("session CA key", "not a PKCS#8 key"))?;
        let der = rustls_pki_types::CertificateDer::from(cert_der.to_vec());
        let issuer = Issuer::from_ca_cert_der(&der, key)
            .map_err(|_| Error::invalid("session CA certificate", "not a CA certificate"))?;
        Ok(Self {
            issuer,
            cert_der: cert_der.to_vec(),
            cert_pem: pem(cert_der),
        })
    }

    /// The private key as PKCS#8 DER, for the encrypted store.
    pub fn key_pkcs8(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.issuer.key().serialize_der())
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Certify the workload key `spki_der` (P-256) for TLS client and server use, with common
    /// name `cn` and subject alternative names `sans` (DNS names or IP addresses), valid from
    /// `now` for `validity`.
    pub fn issue(
        &self,
        spki_der: &[u8],
        cn: &str,
        sans: &[String],
        now: SystemTime,
        validity: Duration,
    ) -> Result<IssuedCert, Error> {
        let key = WorkloadPublicKey::from_spki(spki_der)?;
        // A minute of slack for clocks that differ a little between CAS and peers.
        self.certify(
            &key,
            cn,
            sans,
            now - Duration::from_secs(60),
            now + validity,
        )
    }

    /// Certify `key` (any algorithm rcgen knows, e.g. a [`KeyPair`]) for TLS client and server
    /// use, with common name `cn` and subject alternative names `sans`, valid from
    /// `not_before` to `not_after`.
    pub fn certify(
        &self,
        key: &impl PublicKeyData,
        cn: &str,
        sans: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<IssuedCert, Error> {
        let mut params = CertificateParams::new(sans.to_vec()).map_err(|_| {
            Error::invalid("subject alternative names", "not DNS names or IP addresses")
        })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, cn);
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial()?);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(key, &self.issuer).map_err(internal)?;
        Ok(IssuedCert {
            der: cert.der().to_vec(),
            pem: pem(cert.der()),
        })
    }
}

/// The workload's public key as rcgen needs it: the raw SEC1 point and its algorithm.
struct WorkloadPublicKey {
    point: Vec<u8>,
}

impl WorkloadPublicKey {
    fn from_spki(spki_der: &[u8]) -> Result<Self, Error> {
        let pk = p256::PublicKey::from_public_key_der(spki_der).map_err(|_| {
            Error::invalid(
                "workload public key",
                "not a DER P-256 SubjectPublicKeyInfo",
            )
        })?;
        Ok(Self {
            point: pk.to_sec1_bytes().to_vec(),
        })
    }
}

impl PublicKeyData for WorkloadPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

fn random_serial() -> Result<SerialNumber, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| Error::Internal("the OS random generator failed"))?;
    bytes[0] &= 0x7f; // positive
    Ok(SerialNumber::from_slice(&bytes))
}

pub(crate) fn pem(der: &[u8]) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new("CERTIFICATE", der), config)
}

pub(crate) fn internal(e: rcgen::Error) -> Error {
    {
        tracing::error!(error = %e, "certificate generation");
        Error::Internal("certificate generation failed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::WorkloadKey;
    use x509_parser::prelude::*;

    #[test]
    fn workload_cert_chains_to_the_session_ca() {
        let now = SystemTime::now();
        let ca = SessionCa::generate("demo", now).unwrap();
        let workload = WorkloadKey::generate().unwrap();
        let cert = ca
            .issue(
                &workload.spki_der(),
                "driver",
                &["driver.demo".into(), "127.0.0.1".into()],
                now,
                Duration::from_secs(3600),
            )
            .unwrap();
        let (_, ca_cert) = parse_x509_certificate(ca.cert_der()).unwrap();
        let (_, leaf) = parse_x509_certificate(&cert.der).unwrap();
        leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert_eq!(leaf.issuer(), ca_cert.subject());
        assert_eq!(leaf.public_key().raw, workload.spki_der().as_slice());
        assert!(leaf.validity().time_to_expiration().is_some());
        let sans = leaf.subject_alternative_name().unwrap().unwrap();
        assert_eq!(sans.value.general_names.len(), 2);
        // Another CA's key does not verify it.
        let other = SessionCa::generate("other", now).unwrap();
        let (_, other_cert) = parse_x509_certificate(other.cert_der()).unwrap();
        assert!(
            leaf.verify_signature(Some(other_cert.public_key()))
                .is_err()
        );
    }

    #[test]
    fn ca_survives_the_store() {
        let now = SystemTime::now();
        let ca = SessionCa::generate("demo", now).unwrap();
        let again = SessionCa::from_parts(ca.cert_der(), &ca.key_pkcs8()).unwrap();
        let workload = WorkloadKey::generate().unwrap();
        let cert = again
            .issue(&workload.spki_der(), "x", &[], now, Duration::from_secs(60))
            .unwrap();
        let (_, ca_cert) = parse_x509_certificate(ca.cert_der()).unwrap();
        let (_, leaf) = parse_x509_certificate(&cert.der).unwrap();
        leaf.verify_signature(Some(ca_cert.public_key())).unwrap();
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(again.cert_pem(), ca.cert_pem());
    }

    #[test]
    fn refuses_other_keys() {
        let ca = SessionCa::generate("demo", SystemTime::now()).unwrap();
        let r = ca.issue(
            b"junk",
            "x",
            &[],
            SystemTime::now(),
            Duration::from_secs(60),
        );
        assert!(matches!(r, Err(Error::InvalidInput { .. })));
        assert!(!format!("{ca:?}").contains("PRIVATE"));
    }
}

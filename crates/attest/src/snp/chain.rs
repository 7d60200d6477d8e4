//! The VCEK → ASK → ARK certificate chain and the AMD roots bundled with this crate.
//!
//! The trust anchors are the ARK and ASK certificates the `sev` crate ships
//! (`sev::certs::snp::builtin`), pinned here by SHA-256 fingerprint of their DER so that a
//! dependency update cannot change them silently:
//!
//! | product | certificate | SHA-256 of the DER |
//! | --- | --- | --- |
//! | Milan | ARK `CN=ARK-Milan` | `69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd` |
//! | Milan | ASK `CN=SEV-Milan` | `67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b` |
//! | Genoa | ARK `CN=ARK-Genoa` | `4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1` |
//! | Genoa | ASK `CN=SEV-Genoa` | `5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521` |
//!
//! An ARK is self-signed, so one taken from the input would vouch for anything: a caller's ARK is
//! accepted only when it is byte-equal to a bundled one. A caller's ASK is accepted when that ARK
//! signs it (AMD may rotate ASKs). The ASK and ARK sign with RSASSA-PSS (SHA-384, MGF1-SHA-384,
//! salt 48), checked with the `sev` crate's `Verifiable` implementation after the declared
//! parameters are checked here; the VCEK's ECDSA P-384 key is read with `p384`.

use super::report::Tcb;
use crate::Error;
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};
use sev::certs::snp::Verifiable;
use sha2::{Digest, Sha256, Sha384};
use std::fmt;
use x509_cert::Certificate;
use x509_cert::ext::pkix::BasicConstraints;

/// `id-RSASSA-PSS`.
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
/// `id-ecPublicKey`.
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// `secp384r1`.
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
/// `id-at-commonName`.
const OID_COMMON_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
/// `id-ce-basicConstraints`.
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// VCEK extension: boot loader SPL.
const OID_BL_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.1");
/// VCEK extension: TEE (PSP OS) SPL.
const OID_TEE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.2");
/// VCEK extension: SNP firmware SPL.
const OID_SNP_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.3");
/// VCEK extension: microcode SPL.
const OID_UCODE_SPL: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.3.8");
/// VCEK extension: the chip's hardware id, equal to the report's `chip_id`.
const OID_HW_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.3704.1.4");

/// The processor generation a chain belongs to, known from the bundled ARK it ends in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Product {
    /// EPYC 7003.
    Milan,
    /// EPYC 9004.
    Genoa,
}

impl Product {
    /// The name AMD uses in certificate names and KDS URLs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Product::Milan => "Milan",
            Product::Genoa => "Genoa",
        }
    }
}

/// One bundled chain: the product, and its ARK and ASK in PEM.
struct Anchor {
    product: Product,
    ark_pem: &'static [u8],
    ask_pem: &'static [u8],
}

const ANCHORS: [Anchor; 2] = [
    Anchor {
        product: Product::Milan,
        ark_pem: sev::certs::snp::builtin::milan::ARK,
        ask_pem: sev::certs::snp::builtin::milan::ASK,
    },
    Anchor {
        product: Product::Genoa,
        ark_pem: sev::certs::snp::builtin::genoa::ARK,
        ask_pem: sev::certs::snp::builtin::genoa::ASK,
    },
];

/// SHA-256 fingerprints of the bundled certificates' DER: (product, ARK, ASK).
const PINNED: [(Product, &str, &str); 2] = [
    (
        Product::Milan,
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    ),
    (
        Product::Genoa,
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    ),
];

/// A parsed certificate with its DER encoding.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Cert {
    der: Vec<u8>,
    cert: Certificate,
}

impl fmt::Debug for Cert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cert")
            .field("subject", &self.subject())
            .field("sha256", &hex::encode(Sha256::digest(&self.der)))
            .finish()
    }
}

impl Cert {
    /// Parse a DER certificate. The X.509 parser accepts the zero serial numbers of AMD's VCEKs.
    pub(crate) fn from_der(what: &'static str, der: &[u8]) -> Result<Self, Error> {
        let cert = Certificate::from_der(der).map_err(|e| Error::malformed(what, e))?;
        // Keep the canonical encoding: equal certificates then have equal bytes.
        let der = cert.to_der().map_err(|e| Error::malformed(what, e))?;
        Ok(Self { der, cert })
    }

    /// Parse every certificate of a PEM file, or the one certificate of a DER file.
    pub(crate) fn parse_many(what: &'static str, bytes: &[u8]) -> Result<Vec<Self>, Error> {
        if looks_like_pem(bytes) {
            let certs =
                Certificate::load_pem_chain(bytes).map_err(|e| Error::malformed(what, e))?;
            if certs.is_empty() {
                return Err(Error::malformed(what, "the PEM holds no certificate"));
            }
            certs
                .into_iter()
                .map(|cert| {
                    let der = cert.to_der().map_err(|e| Error::malformed(what, e))?;
                    Ok(Self { der, cert })
                })
                .collect()
        } else {
            Ok(vec![Self::from_der(what, bytes)?])
        }
    }

    fn tbs(&self) -> &x509_cert::TbsCertificate {
        &self.cert.tbs_certificate
    }

    /// The subject as an RFC 4514 string.
    pub(crate) fn subject(&self) -> String {
        self.tbs().subject.to_string()
    }

    fn is_self_issued(&self) -> bool {
        self.tbs().subject == self.tbs().issuer
    }

    /// Whether the subject key is an elliptic-curve key (a VCEK) rather than RSA (ASK, ARK).
    pub(crate) fn has_ec_key(&self) -> bool {
        self.tbs().subject_public_key_info.algorithm.oid == OID_EC_PUBLIC_KEY
    }

    /// The validity window in seconds since the Unix epoch.
    pub(crate) fn window(&self) -> (u64, u64) {
        let v = &self.tbs().validity;
        (
            v.not_before.to_unix_duration().as_secs(),
            v.not_after.to_unix_duration().as_secs(),
        )
    }

    fn extension(&self, oid: ObjectIdentifier) -> Option<&[u8]> {
        self.tbs()
            .extensions
            .as_deref()
            .unwrap_or_default()
            .iter()
            .find(|e| e.extn_id == oid)
            .map(|e| e.extn_value.as_bytes())
    }

    /// A short name: the subject's common name, or the whole subject without one.
    pub(crate) fn name(&self) -> String {
        self.tbs()
            .subject
            .0
            .iter()
            .flat_map(|rdn| rdn.0.iter())
            .find(|atv| atv.oid == OID_COMMON_NAME)
            .map_or_else(|| self.subject(), |atv| atv.to_string())
    }

    /// Check that `issuer` signed this certificate, whose role in the chain is `role`, with
    /// RSASSA-PSS SHA-384 / salt 48.
    fn check_signed_by(&self, issuer: &Cert, role: Role) -> Result<(), Error> {
        let alg = &self.cert.signature_algorithm;
        if alg.oid != OID_RSA_PSS {
            return Err(Error::Unsupported {
                what: "AMD certificate signature algorithm (want RSASSA-PSS)",
                got: alg.oid.to_string(),
            });
        }
        let params = alg
            .parameters
            .as_ref()
            .ok_or_else(|| Error::malformed(role.cert(), "RSASSA-PSS without parameters"))?
            .to_der()
            .map_err(|e| Error::malformed(role.cert(), e))?;
        let params = rsa::pkcs1::RsaPssParams::from_der(&params)
            .map_err(|e| Error::malformed(role.cert(), e))?;
        if params != rsa::pkcs1::RsaPssParams::new::<Sha384>(48) {
            return Err(Error::Unsupported {
                what: "AMD certificate RSASSA-PSS parameters (want SHA-384, MGF1-SHA-384, salt 48)",
                got: format!("{params:?}"),
            });
        }
        let signer = sev::certs::snp::Certificate::from(issuer.cert.clone());
        let signee = sev::certs::snp::Certificate::from(self.cert.clone());
        (&signer, &signee)
            .verify()
            .map_err(|e| Error::UntrustedChain {
                what: role.as_str(),
                reason: format!("{} is not signed by {}: {e}", self.name(), issuer.name()),
            })?;
        if self.tbs().signature != *alg {
            return Err(Error::malformed(
                role.cert(),
                "the signed and the outer signature algorithms differ",
            ));
        }
        Ok(())
    }
}

/// A certificate's place in the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Vcek,
    Ask,
    Ark,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Vcek => "VCEK",
            Role::Ask => "ASK",
            Role::Ark => "ARK",
        }
    }

    fn cert(self) -> &'static str {
        match self {
            Role::Vcek => "VCEK certificate",
            Role::Ask => "ASK certificate",
            Role::Ark => "ARK certificate",
        }
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The parts of a VCEK the report check needs.
#[derive(Clone, Debug)]
pub(crate) struct Vcek {
    /// The report signing key.
    pub(crate) key: p384::ecdsa::VerifyingKey,
    /// The TCB the VCEK was derived for.
    pub(crate) tcb: Tcb,
    /// The chip's hardware id.
    pub(crate) hw_id: [u8; 64],
}

impl Vcek {
    fn from_cert(cert: &Cert) -> Result<Self, Error> {
        const WHAT: &str = "VCEK certificate";
        let spki = &cert.tbs().subject_public_key_info;
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
            return Err(Error::Unsupported {
                what: "VCEK key type (want ECDSA P-384)",
                got: format!(
                    "{} {}",
                    spki.algorithm.oid,
                    curve.map(|c| c.to_string()).unwrap_or_default()
                ),
            });
        }
        let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(spki.subject_public_key.raw_bytes())
            .map_err(|e| Error::malformed(WHAT, format_args!("bad P-384 public key: {e}")))?;
        let spl = |oid: ObjectIdentifier, name: &str| -> Result<u8, Error> {
            let value = cert.extension(oid).ok_or_else(|| {
                Error::malformed(WHAT, format_args!("no {name} extension ({oid})"))
            })?;
            u8::from_der(value)
                .map_err(|e| Error::malformed(WHAT, format_args!("{name} extension ({oid}): {e}")))
        };
        let tcb = Tcb {
            bootloader: spl(OID_BL_SPL, "blSPL")?,
            tee: spl(OID_TEE_SPL, "teeSPL")?,
            snp: spl(OID_SNP_SPL, "snpSPL")?,
            microcode: spl(OID_UCODE_SPL, "ucodeSPL")?,
        };
        let hw_id = cert.extension(OID_HW_ID).ok_or_else(|| {
            Error::malformed(WHAT, format_args!("no hwID extension ({OID_HW_ID})"))
        })?;
        // KDS puts the 64 raw bytes in the extension value; accept them wrapped in an OCTET STRING too.
        let hw_id = <[u8; 64]>::try_from(hw_id)
            .ok()
            .or_else(|| {
                der::asn1::OctetStringRef::from_der(hw_id)
                    .ok()
                    .and_then(|o| <[u8; 64]>::try_from(o.as_bytes()).ok())
            })
            .ok_or_else(|| Error::malformed(WHAT, "the hwID extension does not hold 64 bytes"))?;
        Ok(Self { key, tcb, hw_id })
    }
}

/// A verified VCEK → ASK → ARK chain ending in a bundled ARK. The signatures are checked when it
/// is built; the validity windows, which depend on the verification time, when it is used.
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    pub(crate) product: Product,
    pub(crate) vcek: Vcek,
    /// VCEK, ASK, ARK certificates, in that order.
    certs: [(Role, Cert); 3],
}

impl Chain {
    /// Build and check the chain for `vcek` from the caller's ASK/ARK certificates `cas` (may be
    /// empty: then the bundled ones are used).
    pub(crate) fn build(vcek: Cert, cas: Vec<Cert>) -> Result<Self, Error> {
        const WHAT: &str = "VCEK";
        if !vcek.has_ec_key() {
            return Err(Error::malformed(
                "VCEK certificate",
                format_args!("{} has no elliptic-curve key", vcek.subject()),
            ));
        }
        let issuer = vcek.tbs().issuer.to_string();
        if issuer.contains("CN=SEV-Turin") {
            return Err(Error::Unsupported {
                what: "SEV-SNP product (Turin lays out TCB versions differently)",
                got: issuer,
            });
        }
        let bundled = bundled()?;
        let (given_arks, given_asks): (Vec<Cert>, Vec<Cert>) =
            cas.into_iter().partition(Cert::is_self_issued);
        for ark in &given_arks {
            if !bundled.iter().any(|(_, bundled_ark, _)| bundled_ark == ark) {
                return Err(Error::UntrustedChain {
                    what: WHAT,
                    reason: format!(
                        "the given root {} (SHA-256 {}) is not a bundled AMD ARK",
                        ark.name(),
                        hex::encode(Sha256::digest(&ark.der))
                    ),
                });
            }
        }
        let vcek_issuer = &vcek.tbs().issuer;
        let ask = if given_asks.is_empty() {
            bundled
                .iter()
                .map(|(_, _, ask)| ask)
                .find(|ask| ask.tbs().subject == *vcek_issuer)
                .cloned()
                .ok_or_else(|| Error::UntrustedChain {
                    what: WHAT,
                    reason: format!("its issuer {vcek_issuer} is no bundled ASK (Milan, Genoa)"),
                })?
        } else {
            given_asks
                .into_iter()
                .find(|ask| ask.tbs().subject == *vcek_issuer)
                .ok_or_else(|| Error::UntrustedChain {
                    what: WHAT,
                    reason: format!("its issuer {vcek_issuer} is none of the given ASKs"),
                })?
        };
        // A given ARK is byte-equal to the bundled one of the same name, so the bundled one is used.
        let ask_issuer = &ask.tbs().issuer;
        let (product, ark) = bundled
            .iter()
            .find(|(_, ark, _)| ark.tbs().subject == *ask_issuer)
            .map(|(product, ark, _)| (*product, ark.clone()))
            .ok_or_else(|| Error::UntrustedChain {
                what: WHAT,
                reason: format!("the ASK's issuer {ask_issuer} is no bundled ARK"),
            })?;
        if ask.has_ec_key() || ask.is_self_issued() {
            return Err(Error::UntrustedChain {
                what: WHAT,
                reason: format!("{} cannot be an ASK", ask.name()),
            });
        }
        let is_ca = ask
            .extension(OID_BASIC_CONSTRAINTS)
            .and_then(|v| BasicConstraints::from_der(v).ok())
            .is_some_and(|bc| bc.ca);
        if !is_ca {
            return Err(Error::UntrustedChain {
                what: WHAT,
                reason: format!("the ASK {} is not a CA certificate", ask.name()),
            });
        }

        ark.check_signed_by(&ark, Role::Ark)?;
        ask.check_signed_by(&ark, Role::Ask)?;
        vcek.check_signed_by(&ask, Role::Vcek)?;
        let vcek_parts = Vcek::from_cert(&vcek)?;
        Ok(Self {
            product,
            vcek: vcek_parts,
            certs: [(Role::Vcek, vcek), (Role::Ask, ask), (Role::Ark, ark)],
        })
    }

    /// Check every certificate's validity window at `now`.
    pub(crate) fn check_windows(&self, now: std::time::SystemTime) -> Result<(), Error> {
        for (role, cert) in &self.certs {
            let (not_before, not_after) = cert.window();
            Error::check_window(
                format_args!("{} {}", role.cert(), cert.name()),
                not_before,
                not_after,
                now,
            )?;
        }
        Ok(())
    }

    /// The earliest notAfter of the chain, in seconds since the Unix epoch.
    pub(crate) fn expires_at(&self) -> u64 {
        self.certs
            .iter()
            .map(|(_, c)| c.window().1)
            .min()
            .unwrap_or(0)
    }

    /// The VCEK's name, for diagnostics.
    pub(crate) fn vcek_name(&self) -> String {
        self.certs[0].1.name()
    }
}

/// The bundled (product, ARK, ASK) certificates, checked against their pinned fingerprints.
fn bundled() -> Result<Vec<(Product, Cert, Cert)>, Error> {
    ANCHORS
        .iter()
        .zip(PINNED)
        .map(|(anchor, (pinned_product, ark_sha, ask_sha))| {
            let ark = Cert::parse_many("bundled ARK", anchor.ark_pem)?;
            let ask = Cert::parse_many("bundled ASK", anchor.ask_pem)?;
            let (Some(ark), Some(ask)) = (ark.into_iter().next(), ask.into_iter().next()) else {
                return Err(Error::Internal(
                    "a bundled AMD certificate is missing".into(),
                ));
            };
            if anchor.product != pinned_product
                || hex::encode(Sha256::digest(&ark.der)) != ark_sha
                || hex::encode(Sha256::digest(&ask.der)) != ask_sha
            {
                return Err(Error::Internal(format!(
                    "the bundled {} ARK/ASK differ from the pinned fingerprints",
                    anchor.product.as_str()
                )));
            }
            Ok((anchor.product, ark, ask))
        })
        .collect()
}

/// The rule that the VCEK was issued for the TCB the report says signed it.
pub(crate) fn check_tcb(vcek: Tcb, reported: Tcb) -> Result<(), Error> {
    if vcek == reported {
        Ok(())
    } else {
        Err(Error::Rejected {
            rule: "VCEK TCB matches reported TCB",
            expected: vcek.to_string(),
            got: reported.to_string(),
        })
    }
}

/// The rule that the VCEK belongs to the chip that made the report (skipped when the report
/// masks its chip id with zeros).
pub(crate) fn check_chip_id(hw_id: &[u8; 64], chip_id: &[u8; 64]) -> Result<(), Error> {
    if chip_id.iter().all(|b| *b == 0) || hw_id == chip_id {
        Ok(())
    } else {
        Err(Error::Rejected {
            rule: "VCEK hwID matches report chip_id",
            expected: hex::encode(hw_id),
            got: hex::encode(chip_id),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, CustomExtension, DnType, KeyPair};

    const GO_VCEK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/vcek.der"
    ));
    const GO_CHAIN: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/ask_ark_milan.pem"
    ));

    fn vcek() -> Cert {
        Cert::from_der("VCEK certificate", GO_VCEK).unwrap()
    }

    #[test]
    fn bundled_roots_match_their_pins_and_verify() {
        let bundled = bundled().unwrap();
        assert_eq!(bundled.len(), 2);
        for (product, ark, ask) in &bundled {
            ark.check_signed_by(ark, Role::Ark).unwrap();
            ask.check_signed_by(ark, Role::Ask).unwrap();
            assert_eq!(ask.name(), format!("CN=SEV-{}", product.as_str()));
        }
    }

    #[test]
    fn reads_the_vcek_extensions() {
        let v = Vcek::from_cert(&vcek()).unwrap();
        assert_eq!(v.tcb.to_string(), "bl=2 tee=0 snp=5 ucode=68");
        assert_eq!(
            hex::encode(v.hw_id),
            "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
        );
        // The zero serial number that strict parsers refuse.
        assert_eq!(vcek().cert.tbs_certificate.serial_number.as_bytes(), [0]);
    }

    #[test]
    fn given_ask_and_ark_equal_to_bundled_build_the_same_chain() {
        let cas = Cert::parse_many("ASK/ARK", GO_CHAIN).unwrap();
        assert_eq!(cas.len(), 2);
        let given = Chain::build(vcek(), cas.clone()).unwrap();
        let bundled = Chain::build(vcek(), Vec::new()).unwrap();
        assert_eq!(given.certs, bundled.certs);
        assert_eq!(given.product, Product::Milan);
        // Only the ASK given: the ARK comes from the bundle.
        let ask_only = Chain::build(vcek(), vec![cas[0].clone()]).unwrap();
        assert_eq!(ask_only.certs, bundled.certs);
        // Only the ARK given.
        Chain::build(vcek(), vec![cas[1].clone()]).unwrap();
    }

    #[test]
    fn expiry_is_the_earliest_not_after() {
        let chain = Chain::build(vcek(), Vec::new()).unwrap();
        assert_eq!(chain.expires_at(), vcek().window().1);
    }

    #[test]
    fn an_ask_cannot_stand_in_for_a_vcek() {
        let cas = Cert::parse_many("ASK/ARK", GO_CHAIN).unwrap();
        let err = Chain::build(cas[0].clone(), Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Malformed { .. }), "{err:?}");
    }

    /// An EC certificate with the given curve, issuer CN and extensions, signed by a throwaway key.
    fn ec_cert(
        alg: &'static rcgen::SignatureAlgorithm,
        issuer_cn: &str,
        extensions: Vec<CustomExtension>,
    ) -> Cert {
        let issuer_key = KeyPair::generate_for(alg).unwrap();
        let mut issuer_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        issuer_params
            .distinguished_name
            .push(DnType::CommonName, issuer_cn);
        let issuer = rcgen::Issuer::new(issuer_params, issuer_key);
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "SEV-VCEK");
        params.custom_extensions = extensions;
        let cert = params.signed_by(&key, &issuer).unwrap();
        Cert::from_der("test certificate", cert.der()).unwrap()
    }

    fn spl(arc: u64, value: u8) -> CustomExtension {
        CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 3704, 1, 3, arc],
            value.to_der().unwrap(),
        )
    }

    #[test]
    fn a_turin_vcek_is_unsupported() {
        let cert = ec_cert(&rcgen::PKCS_ECDSA_P384_SHA384, "SEV-Turin", Vec::new());
        let err = Chain::build(cert, Vec::new()).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    }

    #[test]
    fn a_vcek_from_an_unknown_issuer_is_untrusted() {
        let cert = ec_cert(&rcgen::PKCS_ECDSA_P384_SHA384, "SEV-Unknown", Vec::new());
        let err = Chain::build(cert, Vec::new()).unwrap_err();
        assert!(matches!(err, Error::UntrustedChain { .. }), "{err:?}");
    }

    #[test]
    fn vcek_fields_need_p384_and_all_extensions() {
        let hw_id = CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 3704, 1, 4], vec![9; 64]);
        let full = || vec![spl(1, 3), spl(2, 0), spl(3, 8), spl(8, 115), hw_id.clone()];
        let ok = ec_cert(&rcgen::PKCS_ECDSA_P384_SHA384, "SEV-Milan", full());
        let v = Vcek::from_cert(&ok).unwrap();
        assert_eq!(v.tcb.to_string(), "bl=3 tee=0 snp=8 ucode=115");
        assert_eq!(v.hw_id, [9; 64]);

        let p256 = ec_cert(&rcgen::PKCS_ECDSA_P256_SHA256, "SEV-Milan", full());
        assert!(matches!(
            Vcek::from_cert(&p256),
            Err(Error::Unsupported { .. })
        ));

        let mut no_ucode = full();
        no_ucode.remove(3);
        let cert = ec_cert(&rcgen::PKCS_ECDSA_P384_SHA384, "SEV-Milan", no_ucode);
        assert!(matches!(
            Vcek::from_cert(&cert),
            Err(Error::Malformed { .. })
        ));

        let mut short_hw_id = full();
        short_hw_id[4] =
            CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 3704, 1, 4], vec![9; 8]);
        let cert = ec_cert(&rcgen::PKCS_ECDSA_P384_SHA384, "SEV-Milan", short_hw_id);
        assert!(matches!(
            Vcek::from_cert(&cert),
            Err(Error::Malformed { .. })
        ));

        let mut big_spl = full();
        big_spl[0] = CustomExtension::from_oid_content(
            &[1, 3, 6, 1, 4, 1, 3704, 1, 3, 1],
            300u16.to_der().unwrap(),
        );
        let cert = ec_cert(&rcgen::PKCS_ECDSA_P384_SHA384, "SEV-Milan", big_spl);
        assert!(matches!(
            Vcek::from_cert(&cert),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn pem_without_certificates_is_malformed() {
        let err = Cert::parse_many("x", b"-----BEGIN NOTHING-----\n-----END NOTHING-----\n");
        assert!(matches!(err, Err(Error::Malformed { .. })));
    }
}

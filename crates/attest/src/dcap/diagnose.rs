//! Turning dcap-qvl's `anyhow` errors into this crate's typed [`Error`].
//!
//! dcap-qvl reports every failure as a string. The messages of version 0.7 are matched here, most
//! specific first; anything unknown becomes [`Error::Rejected`] with the message, so a new or
//! reworded message can make an error less precise but never turns a failure into success.
//! Certificate chain failures do not say which chain failed, so they are re-checked here with
//! webpki (the same fork and options dcap-qvl uses) to name the chain and keep webpki's typed
//! reason: expiry with its time, revocation, unknown issuer.

use super::Collateral;
use super::window::unix;
use crate::Error;
use rustls_pki_types::{CertificateDer, UnixTime};
use std::time::{Duration, SystemTime};

/// What a failed dcap-qvl verification means, given what it was verifying.
pub(super) struct Inputs<'a> {
    pub collateral: &'a Collateral,
    pub root_der: &'a [u8],
    /// The PEM PCK chain dcap-qvl used (from the collateral if it has one, else the quote).
    pub pck_chain_pem: &'a [u8],
    pub now: SystemTime,
}

/// Map a dcap-qvl error to an [`Error`].
pub(super) fn map_error(e: &anyhow::Error, inputs: &Inputs<'_>) -> Error {
    let msg = format!("{e:#}");
    let has = |needle: &str| msg.contains(needle);

    // Trust anchor and CRLs, checked before anything else.
    if has("Failed to load root ca") {
        return untrusted(
            "trust anchor",
            "the root CA certificate is not usable",
            &msg,
        );
    }
    if has("Failed to parse root CA CRL") {
        if has("InvalidCrlSignatureForPublicKey") || has("UnsupportedCrlSignatureAlgorithm") {
            return untrusted(
                "root CA CRL",
                "it is not signed by the trusted root CA",
                &msg,
            );
        }
        return Error::malformed("root CA CRL", msg);
    }
    if has("Failed to parse PCK CRL") {
        return Error::malformed("PCK CRL", msg);
    }

    // Signatures.
    if has("Signature is invalid for tcb_info") {
        return Error::BadSignature { what: "TCB info" };
    }
    if has("Signature is invalid for qe_identity") {
        return Error::BadSignature {
            what: "QE identity",
        };
    }
    if has("Signature is invalid for qe_report") {
        return Error::BadSignature { what: "QE report" };
    }
    if has("ISV enclave report signature is invalid") {
        return Error::BadSignature { what: "quote" };
    }
    if has("QE report hash mismatch") {
        return Error::Rejected {
            rule: "QE report binds the attestation key",
            expected: "report_data = SHA-256(attestation key ‖ QE auth data)".into(),
            got: "a different hash".into(),
        };
    }

    // Certificate chains.
    if has("Failed to verify certificate chain") || has("Certificate chain is too short") {
        return diagnose_chains(inputs).unwrap_or_else(|| untrusted_msg("Intel PKI", &msg));
    }
    if has("TCB Info signer must be issued directly by the root CA") {
        return untrusted_msg("TCB info signing certificate", &msg);
    }
    if has("QE Identity signer must be issued directly by the root CA") {
        return untrusted_msg("QE identity signing certificate", &msg);
    }
    if has("CertRevoked") {
        // check_single_cert_revocation of the root itself.
        return Error::Revoked {
            what: "root CA certificate".into(),
        };
    }

    // Revocation of the TCB level.
    if has("TCB status is invalid: Revoked") {
        return Error::Revoked {
            what: "platform TCB level (Intel TCB status Revoked)".into(),
        };
    }

    // Malformed parts.
    for (needle, what) in [
        ("Failed to decode quote", "quote"),
        ("Failed to decode TcbInfo", "TCB info"),
        ("Failed to decode QeIdentity", "QE identity"),
        ("Unrecognized TCB status", "TCB status in the collateral"),
        ("No TCB levels found in QE Identity", "QE identity"),
        ("Failed to parse certs", "certificate chain PEM"),
        (
            "Failed to extract PCK certificates",
            "PCK certificate chain PEM",
        ),
        ("Failed to parse PCK certificate", "PCK certificate"),
        (
            "Failed to parse TCB Info leaf certificate",
            "TCB info signing certificate",
        ),
        (
            "Failed to parse QE Identity leaf certificate",
            "QE identity signing certificate",
        ),
        ("Intel extension", "PCK certificate SGX extension"),
        ("Fmspc length", "PCK certificate SGX extension"),
        ("CpuSvn", "PCK certificate SGX extension"),
        ("PceSvn", "PCK certificate SGX extension"),
        ("Invalid QE auth data length", "QE authentication data"),
        ("Failed to decode QE report", "QE report"),
        ("Invalid key length", "ECDSA signature"),
        ("Failed to decode TCB FMSPC", "TCB info"),
        ("Failed to parse root CA certificate", "root CA certificate"),
    ] {
        if has(needle) {
            return Error::malformed(what, msg);
        }
    }
    if has("Unsupported DCAP PCK cert format") {
        return Error::Unsupported {
            what: "PCK certification data type (the collateral has no PCK chain either)",
            got: msg,
        };
    }
    if has("Unsupported DCAP quote version") || has("must have version") {
        return Error::Unsupported {
            what: "DCAP quote version",
            got: msg,
        };
    }
    if has("Unsupported TEE type") {
        return Error::Unsupported {
            what: "TEE type of the DCAP quote",
            got: msg,
        };
    }
    if has("Unsupported DCAP attestation key type") {
        return Error::Unsupported {
            what: "DCAP attestation key type",
            got: msg,
        };
    }

    // Rules about what the quote and collateral say.
    let rules: [(&str, &'static str, &str); 18] = [
        ("Unknown QE vendor ID", "QE vendor id", "Intel's"),
        ("QE MRSIGNER mismatch", "QE MRSIGNER", "the QE identity's"),
        ("QE ISVPRODID mismatch", "QE ISVPRODID", "the QE identity's"),
        (
            "QE MISCSELECT mismatch",
            "QE MISCSELECT",
            "the QE identity's",
        ),
        (
            "QE ATTRIBUTES mismatch",
            "QE ATTRIBUTES",
            "the QE identity's",
        ),
        (
            "QE report validation failed",
            "QE is not in debug mode",
            "a production QE",
        ),
        (
            "QE ISVSVN",
            "QE ISVSVN",
            "at or above a QE identity TCB level",
        ),
        (
            "Unsupported QE Identity id/version",
            "QE identity matches the TEE",
            "QE (SGX) or TD_QE (TDX)",
        ),
        (
            "Fmspc mismatch",
            "TCB info FMSPC",
            "the PCK certificate's FMSPC",
        ),
        (
            "TCB info in the collateral",
            "TCB info matches the TEE",
            "SGX TCB info for SGX, TDX for TDX",
        ),
        (
            "No matching TCB level found",
            "platform TCB level",
            "a TCB level of the collateral that the platform meets",
        ),
        (
            "TDX module",
            "TDX module",
            "a TDX module identity and TCB level of the TCB info",
        ),
        ("Debug mode is enabled", "TD attributes", "no debug"),
        (
            "TD profiling is enabled",
            "TD attributes",
            "no TD profiling",
        ),
        (
            "Reserved bits in TD attributes",
            "TD attributes",
            "reserved bits clear",
        ),
        ("TD migration is enabled", "TD attributes", "not migratable"),
        ("SERVTD_EXT is enabled", "TD attributes", "no SERVTD_EXT"),
        (
            "SEPT_VE_DISABLE is not enabled",
            "TD attributes",
            "SEPT_VE_DISABLE set",
        ),
    ];
    for (needle, rule, expected) in rules {
        if has(needle) {
            return Error::Rejected {
                rule,
                expected: expected.into(),
                got: msg,
            };
        }
    }
    if has("Invalid MR service TD") {
        return Error::Rejected {
            rule: "TD is bound to no service TD",
            expected: "MRSERVICETD all zero".into(),
            got: msg,
        };
    }

    // Times: checked before dcap-qvl runs, so reaching these means the two disagree.
    if has("expired") || has("in the future") || has("Expired") || has("NotValidYet") {
        return Error::Rejected {
            rule: "collateral is valid at the verification time",
            expected: "valid".into(),
            got: msg,
        };
    }

    Error::Rejected {
        rule: "DCAP quote verification",
        expected: "a quote and collateral dcap-qvl accepts".into(),
        got: msg,
    }
}

fn untrusted(what: &'static str, reason: &str, msg: &str) -> Error {
    Error::UntrustedChain {
        what,
        reason: format!("{reason} ({msg})"),
    }
}

fn untrusted_msg(what: &'static str, msg: &str) -> Error {
    Error::UntrustedChain {
        what,
        reason: msg.to_string(),
    }
}

/// Re-check the three chains dcap-qvl checks, in its order, and describe the first that fails.
fn diagnose_chains(inputs: &Inputs<'_>) -> Option<Error> {
    let c = &inputs.collateral.inner;
    let chains: [(&'static str, &[u8]); 3] = [
        (
            "TCB info signing certificate",
            c.tcb_info_issuer_chain.as_bytes(),
        ),
        (
            "QE identity signing certificate",
            c.qe_identity_issuer_chain.as_bytes(),
        ),
        ("PCK certificate", inputs.pck_chain_pem),
    ];
    for (what, pem) in chains {
        if let Err(e) = check_chain(pem, inputs) {
            return Some(chain_error(what, e, inputs.now));
        }
    }
    None
}

/// Why a chain failed: webpki's reason, or that it could not be read.
enum ChainFailure {
    Webpki(webpki::Error),
    Unreadable(String),
}

/// Verify one PEM chain (leaf first) like dcap-qvl does: ECDSA P-256 only, both CRLs, revocation
/// status required for the whole chain, expired CRLs refused.
fn check_chain(pem: &[u8], inputs: &Inputs<'_>) -> Result<(), ChainFailure> {
    let certs: Vec<CertificateDer<'static>> = super::window::pem_ders(pem)
        .map_err(ChainFailure::Unreadable)?
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    let [leaf, intermediates @ ..] = certs.as_slice() else {
        return Err(ChainFailure::Unreadable("no certificate".into()));
    };
    let root = CertificateDer::from(inputs.root_der);
    let anchor = webpki::anchor_from_trusted_cert(&root).map_err(ChainFailure::Webpki)?;
    let c = &inputs.collateral.inner;
    let crls: Vec<webpki::CertRevocationList<'static>> = [&c.root_ca_crl, &c.pck_crl]
        .into_iter()
        .map(|der| webpki::OwnedCertRevocationList::from_der(der).map(Into::into))
        .collect::<Result<_, _>>()
        .map_err(ChainFailure::Webpki)?;
    let crl_refs: Vec<&webpki::CertRevocationList<'_>> = crls.iter().collect();
    let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
        .map_err(|_| ChainFailure::Unreadable("no CRLs".into()))?
        .with_depth(webpki::RevocationCheckDepth::Chain)
        .with_status_policy(webpki::UnknownStatusPolicy::Deny)
        .with_expiration_policy(webpki::ExpirationPolicy::Enforce)
        .build();
    let leaf = webpki::EndEntityCert::try_from(leaf).map_err(ChainFailure::Webpki)?;
    let now = UnixTime::since_unix_epoch(Duration::from_secs(
        inputs
            .now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    ));
    leaf.verify_for_usage(
        &[webpki::ring::ECDSA_P256_SHA256],
        &[anchor],
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        Some(revocation),
        None,
    )
    .map(|_| ())
    .map_err(ChainFailure::Webpki)
}

fn chain_error(what: &'static str, failure: ChainFailure, now: SystemTime) -> Error {
    let e = match failure {
        ChainFailure::Unreadable(reason) => return Error::malformed(what, reason),
        ChainFailure::Webpki(e) => e,
    };
    match e {
        webpki::Error::CertExpired { not_after, .. } => Error::Expired {
            what: format!("{what} chain"),
            not_after: unix(not_after.as_secs()),
            now,
        },
        webpki::Error::CertNotValidYet { not_before, .. } => Error::NotYetValid {
            what: format!("{what} chain"),
            not_before: unix(not_before.as_secs()),
            now,
        },
        webpki::Error::CrlExpired { next_update, .. } => Error::Expired {
            what: "CRL".into(),
            not_after: unix(next_update.as_secs()),
            now,
        },
        webpki::Error::CertRevoked => Error::Revoked {
            what: format!("{what} chain (on the CRL)"),
        },
        other => Error::UntrustedChain {
            what,
            reason: format!("{other:?}"),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// The messages dcap-qvl 0.7 produces for the failures the sample data cannot show.
    #[rstest::rstest]
    #[case::revoked_tcb("TCB status is invalid: Revoked", "Revoked")]
    #[case::root_revoked("CertRevoked", "Revoked")]
    #[case::no_level("No matching TCB level found", "Rejected")]
    #[case::qe_svn("QE ISVSVN 3 is below minimum required 4 from QE Identity", "Rejected")]
    #[case::td_debug("Debug mode is enabled", "Rejected")]
    #[case::servtd("Invalid MR service TD", "Rejected")]
    #[case::fmspc("Fmspc mismatch", "Rejected")]
    #[case::pck_format(
        "Unsupported DCAP PCK cert format: 3. Use get_collateral()",
        "Unsupported"
    )]
    #[case::bad_json("Failed to decode TcbInfo: expected value", "Malformed")]
    #[case::qe_hash("QE report hash mismatch", "Rejected")]
    #[case::unknown("something new", "Rejected")]
    fn maps_messages(#[case] msg: &str, #[case] variant: &str) {
        let collateral = Collateral::from_json(super::super::tests::SGX_COLLATERAL).unwrap();
        let inputs = Inputs {
            collateral: &collateral,
            root_der: super::super::INTEL_SGX_ROOT_CA,
            pck_chain_pem: b"",
            now: unix(0),
        };
        let e = map_error(&anyhow::anyhow!("{msg}"), &inputs);
        let got = format!("{e:?}");
        assert!(got.starts_with(variant), "{msg} -> {got}");
    }
}

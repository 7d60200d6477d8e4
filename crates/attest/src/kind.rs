//! Which verifier a piece of evidence needs: [`EvidenceKind`], and its mapping to and from the
//! [`Tee`] and [`EvidenceFormat`] labels, written once here for every caller.
//!
//! The three enums are distinct on purpose: a [`Tee`] is what a policy names (an MAA token can
//! vouch for an SGX enclave or an SEV-SNP VM), an [`EvidenceFormat`] is what the claims record
//! (one format, the DCAP quote, serves SGX and TDX), and an [`EvidenceKind`] is what selects a
//! verifier and its collateral. Code outside this crate converts between them only through the
//! functions below, never with its own `match`.

use crate::collect::Evidence;
use crate::{EvidenceFormat, Tee, dcap, maa, sim, snp};
use std::fmt;
use std::str::FromStr;

/// The kinds of evidence this crate verifies: what selects the verifier and the collateral.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EvidenceKind {
    /// Intel SGX DCAP quote (v3).
    Sgx,
    /// Intel TDX quote (v4, v5).
    Tdx,
    /// AMD SEV-SNP attestation report, raw or hex.
    Snp,
    /// Microsoft Azure Attestation token.
    Maa,
    /// Cloister's simulated TEE.
    Sim,
}

impl EvidenceKind {
    /// Every kind, in the order tables and `--help` list them.
    pub const ALL: [EvidenceKind; 5] = [
        EvidenceKind::Sgx,
        EvidenceKind::Tdx,
        EvidenceKind::Snp,
        EvidenceKind::Maa,
        EvidenceKind::Sim,
    ];

    /// The stable lower-case name used on the wire (`AttestRequest::kind`), in JSON and on the
    /// command line.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::Sgx => "sgx",
            EvidenceKind::Tdx => "tdx",
            EvidenceKind::Snp => "snp",
            EvidenceKind::Maa => "maa",
            EvidenceKind::Sim => "sim",
        }
    }

    /// One line saying what evidence of this kind is, for `--help`.
    pub fn description(self) -> &'static str {
        match self {
            EvidenceKind::Sgx => "Intel SGX DCAP quote (v3)",
            EvidenceKind::Tdx => "Intel TDX quote (v4, v5)",
            EvidenceKind::Snp => "AMD SEV-SNP attestation report (raw or hex)",
            EvidenceKind::Maa => "Microsoft Azure Attestation token (JWT)",
            EvidenceKind::Sim => "Cloister's simulated TEE",
        }
    }

    /// What a verifier of this kind needs besides the evidence, as files
    /// ([`crate::Verifiers::load`]): for `cloister evidence verify --collateral`.
    pub fn trust_material(self) -> &'static str {
        match self {
            EvidenceKind::Sgx | EvidenceKind::Tdx => {
                "the quote collateral JSON (TCB info, QE identity, CRLs, issuer chains)"
            }
            EvidenceKind::Snp => {
                "the VCEK certificate, optionally an ASK+ARK PEM, or a folder holding them"
            }
            EvidenceKind::Maa => "the attestation provider's JWKS, with the issuer to pin",
            EvidenceKind::Sim => "the simulated platform's public key (PEM)",
        }
    }

    /// The format of evidence of this kind.
    pub fn format(self) -> EvidenceFormat {
        match self {
            EvidenceKind::Sgx | EvidenceKind::Tdx => EvidenceFormat::DcapQuote,
            EvidenceKind::Snp => EvidenceFormat::SnpReport,
            EvidenceKind::Maa => EvidenceFormat::MaaToken,
            EvidenceKind::Sim => EvidenceFormat::Sim,
        }
    }

    /// The TEE evidence of this kind always comes from, or `None` when the kind can vouch for
    /// several (an MAA token names the TEE in its claims).
    pub fn tee(self) -> Option<Tee> {
        match self {
            EvidenceKind::Sgx => Some(Tee::Sgx),
            EvidenceKind::Tdx => Some(Tee::Tdx),
            EvidenceKind::Snp => Some(Tee::SevSnp),
            EvidenceKind::Maa => None,
            EvidenceKind::Sim => Some(Tee::Sim),
        }
    }

    /// The kind a `(format, tee)` label names, or `None` when the two contradict each other
    /// (a DCAP quote from an SEV-SNP VM, say).
    pub fn labelled(format: EvidenceFormat, tee: Tee) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.format() == format && k.tee().is_none_or(|t| t == tee))
    }

    /// The kind of collected `evidence`: the kind its label names when its bytes are of that
    /// kind too ([`detect`]), else `None` (the label lies, or the bytes are no known evidence).
    pub fn of(evidence: &Evidence) -> Option<Self> {
        let labelled = Self::labelled(evidence.format, evidence.tee)?;
        (detect(&evidence.bytes) == Some(labelled)).then_some(labelled)
    }
}

impl From<EvidenceKind> for EvidenceFormat {
    fn from(kind: EvidenceKind) -> Self {
        kind.format()
    }
}

impl fmt::Display for EvidenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name given is not one of [`EvidenceKind::as_str`]'s.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown evidence kind {0:?}; expected one of sgx, tdx, snp, maa, sim")]
pub struct UnknownKind(pub String);

impl FromStr for EvidenceKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}

/// Tell the kind of `evidence` from its bytes, cheaply and without verifying anything.
/// Returns `None` when no format matches. Never panics, whatever the input.
pub fn detect(evidence: &[u8]) -> Option<EvidenceKind> {
    if let Some(tee) = dcap::sniff(evidence) {
        return match tee {
            Tee::Tdx => Some(EvidenceKind::Tdx),
            _ => Some(EvidenceKind::Sgx),
        };
    }
    if maa::sniff(evidence) {
        Some(EvidenceKind::Maa)
    } else if sim::sniff(evidence) {
        Some(EvidenceKind::Sim)
    } else if snp::sniff(evidence) {
        Some(EvidenceKind::Snp)
    } else {
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for kind in EvidenceKind::ALL {
            assert_eq!(kind.as_str().parse::<EvidenceKind>().unwrap(), kind);
            assert_eq!(kind.to_string(), kind.as_str());
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::Value::from(kind.as_str())
            );
        }
        assert!("sev-snp".parse::<EvidenceKind>().is_err());
        assert!("auto".parse::<EvidenceKind>().is_err());
    }

    #[test]
    fn labels_name_one_kind_or_none() {
        use EvidenceFormat as F;
        let cases = [
            (F::DcapQuote, Tee::Sgx, Some(EvidenceKind::Sgx)),
            (F::DcapQuote, Tee::Tdx, Some(EvidenceKind::Tdx)),
            (F::DcapQuote, Tee::SevSnp, None),
            (F::DcapQuote, Tee::Sim, None),
            (F::SnpReport, Tee::SevSnp, Some(EvidenceKind::Snp)),
            (F::SnpReport, Tee::Sgx, None),
            (F::MaaToken, Tee::Sgx, Some(EvidenceKind::Maa)),
            (F::MaaToken, Tee::SevSnp, Some(EvidenceKind::Maa)),
            (F::Sim, Tee::Sim, Some(EvidenceKind::Sim)),
            (F::Sim, Tee::Tdx, None),
        ];
        for (format, tee, want) in cases {
            assert_eq!(EvidenceKind::labelled(format, tee), want, "{format} {tee}");
        }
        for kind in EvidenceKind::ALL {
            assert_eq!(EvidenceFormat::from(kind), kind.format());
            if let Some(tee) = kind.tee() {
                assert_eq!(EvidenceKind::labelled(kind.format(), tee), Some(kind));
            }
        }
    }

    #[test]
    fn of_needs_the_bytes_to_agree_with_the_label() {
        let key = sim::PlatformKey::generate();
        let bytes = key
            .sign(&sim::Statement {
                measurement: vec![1; 32],
                ..Default::default()
            })
            .unwrap();
        let mut evidence = Evidence {
            tee: Tee::Sim,
            format: EvidenceFormat::Sim,
            bytes,
            provider: None,
            aux: None,
        };
        assert_eq!(EvidenceKind::of(&evidence), Some(EvidenceKind::Sim));
        evidence.format = EvidenceFormat::SnpReport;
        evidence.tee = Tee::SevSnp;
        assert_eq!(EvidenceKind::of(&evidence), None);
        evidence.bytes = b"not evidence".to_vec();
        assert_eq!(EvidenceKind::of(&evidence), None);
    }
}

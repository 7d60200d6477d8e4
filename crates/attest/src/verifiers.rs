//! One trust set for every kind of evidence: [`Verifiers`] picks the verifier an
//! [`EvidenceKind`] needs, with the [`Collateral`] that came with the evidence.
//!
//! This is the one place that maps a kind to its verifier (as Trustee's `to_verifier(tee)`):
//! the CAS, the CLI and the runtime all verify through it, so they agree by construction, and a
//! new kind of evidence is added here and in the policy crate only.

use crate::dcap::{self, DcapVerifier};
use crate::maa::MaaVerifier;
use crate::sim::{self, SimVerifier};
use crate::snp::SnpVerifier;
use crate::{Context, Error, EvidenceKind, Verified, Verifier, detect};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// Collateral that came with one piece of evidence: Intel DCAP collateral for an SGX or TDX
/// quote, or the VCEK (and ASK/ARK) for an SEV-SNP report. Untrusted input: DCAP collateral is
/// checked at each verification against the trust set's root, and an SEV-SNP chain is checked
/// against the bundled AMD roots when it is built.
#[derive(Clone)]
pub struct Collateral(Inner);

#[derive(Clone)]
enum Inner {
    Dcap(Box<dcap::Collateral>),
    /// The VCEK chain, checked up to a bundled ARK.
    Snp(Box<SnpVerifier>),
}

/// SEV-SNP collateral in the JSON form of `POST /v1/attest`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SnpJson {
    vcek: String,
    #[serde(default)]
    chain: Option<String>,
}

impl Collateral {
    /// Intel DCAP collateral, for SGX and TDX quotes.
    pub fn dcap(collateral: dcap::Collateral) -> Self {
        Self(Inner::Dcap(Box::new(collateral)))
    }

    /// AMD collateral for SEV-SNP reports: the VCEK (DER or PEM) and optionally the ASK and ARK
    /// (PEM; the bundled ones are used when absent). Fails when the chain does not lead to a
    /// bundled ARK ([`SnpVerifier::new`]).
    pub fn snp(vcek: Vec<u8>, ask_ark_pem: Option<Vec<u8>>) -> Result<Self, Error> {
        SnpVerifier::new(vcek, ask_ark_pem).map(|v| Self(Inner::Snp(Box::new(v))))
    }

    /// Collateral in the JSON form `POST /v1/attest` takes (`AttestRequest::collateral`) for
    /// evidence of `kind`: dcap-qvl's collateral JSON for `sgx` and `tdx`;
    /// `{"vcek": base64 of the DER, or PEM, "chain": ASK+ARK PEM}` for `snp`. Kinds that take no
    /// collateral (`sim`, `maa`) ignore it: `Ok(None)`.
    pub fn from_json(kind: EvidenceKind, json: &serde_json::Value) -> Result<Option<Self>, Error> {
        match kind {
            EvidenceKind::Sgx | EvidenceKind::Tdx => {
                let bytes = serde_json::to_vec(json).map_err(|e| Error::Internal(e.to_string()))?;
                dcap::Collateral::from_json(&bytes).map(|c| Some(Self::dcap(c)))
            }
            EvidenceKind::Snp => {
                const WHAT: &str = "SEV-SNP collateral";
                let c: SnpJson = serde_json::from_value(json.clone())
                    .map_err(|_| Error::malformed(WHAT, "expected {\"vcek\": …, \"chain\": …}"))?;
                let vcek = if c.vcek.trim_start().starts_with("-----BEGIN") {
                    c.vcek.into_bytes()
                } else {
                    B64.decode(c.vcek.trim())
                        .map_err(|_| Error::malformed(WHAT, "vcek is neither PEM nor base64"))?
                };
                Self::snp(vcek, c.chain.map(String::into_bytes)).map(Some)
            }
            EvidenceKind::Maa | EvidenceKind::Sim => Ok(None),
        }
    }
}

impl fmt::Debug for Collateral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Inner::Dcap(c) => f.debug_tuple("Collateral::Dcap").field(c).finish(),
            Inner::Snp(v) => f.debug_tuple("Collateral::Snp").field(v).finish(),
        }
    }
}

/// The trust anchors a verifier of any kind of evidence checks against: the sim platform keys,
/// the pinned MAA provider, the Intel root for DCAP (the AMD roots are bundled). Built once,
/// then frozen; [`Verifiers::verify`] dispatches on the kind.
///
/// ```
/// use cloister_attest::{binding, sim, Context, EvidenceKind, Tee, Verifiers};
/// use std::time::SystemTime;
///
/// let platform = sim::PlatformKey::generate();
/// let report_data = binding::report_data(b"nonce", b"workload SPKI DER");
/// let evidence = platform.sign(&sim::Statement {
///     measurement: vec![0xab; 32],
///     report_data: report_data.to_vec(),
///     ..Default::default()
/// })?;
///
/// let verifiers = Verifiers::new().trust_sim_keys([platform.public_key()]);
/// let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
/// // The kind is detected from the bytes when not given; sim evidence needs no collateral.
/// let verified = verifiers.verify(&evidence, None, None, &ctx)?;
/// assert_eq!(verified.claims().tee, Tee::Sim);
///
/// // Nothing is trusted that was not named: no MAA issuer here.
/// let refused = verifiers.verify(b"x.y.z", Some(EvidenceKind::Maa), None, &ctx);
/// assert!(matches!(refused, Err(cloister_attest::Error::NotTrusted { .. })));
/// # Ok::<(), cloister_attest::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Verifiers {
    sim: SimVerifier,
    maa: Option<Arc<MaaVerifier>>,
    dcap_root_der: Vec<u8>,
}

impl Default for Verifiers {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifiers {
    /// A trust set with no sim key, no MAA provider and the bundled Intel SGX Root CA
    /// ([`dcap::INTEL_SGX_ROOT_CA`]): it verifies SGX, TDX and SEV-SNP evidence given collateral.
    pub fn new() -> Self {
        Self {
            sim: SimVerifier::new([]),
            maa: None,
            dcap_root_der: dcap::INTEL_SGX_ROOT_CA.to_vec(),
        }
    }

    /// Also trust `sim` evidence signed by one of `keys` (development and CI only; a policy
    /// must still name `sim`).
    pub fn trust_sim_keys(mut self, keys: impl IntoIterator<Item = sim::PublicKey>) -> Self {
        self.sim = SimVerifier::new(keys);
        self
    }

    /// Also trust MAA tokens of the provider `maa` pins.
    pub fn trust_maa(mut self, maa: impl Into<Arc<MaaVerifier>>) -> Self {
        self.maa = Some(maa.into());
        self
    }

    /// Check DCAP quotes against another root CA (DER) than Intel's: for tests with a fake PKI.
    pub fn dcap_root_ca(mut self, root_der: Vec<u8>) -> Self {
        self.dcap_root_der = root_der;
        self
    }

    /// The trust set and collateral for evidence of `kind`, from files as
    /// `cloister evidence verify --collateral` takes them ([`EvidenceKind::trust_material`]):
    /// DCAP collateral JSON (one file); the VCEK, ASK+ARK or a folder of them
    /// ([`SnpVerifier::from_paths`]); the provider's JWKS (one file) with `issuer`; the sim
    /// platform's public key (one file).
    pub fn load(
        kind: EvidenceKind,
        paths: &[PathBuf],
        issuer: Option<&str>,
    ) -> Result<(Self, Option<Collateral>), Error> {
        let one = || match paths {
            [one] => Ok(one),
            _ => Err(Error::MissingCollateral {
                evidence: kind.as_str(),
                needed: "exactly one collateral file",
            }),
        };
        let read = |path: &PathBuf| std::fs::read(path).map_err(|e| Error::io(path, e));
        Ok(match kind {
            EvidenceKind::Sgx | EvidenceKind::Tdx => {
                let collateral = dcap::Collateral::from_json(&read(one()?)?)?;
                (Self::new(), Some(Collateral::dcap(collateral)))
            }
            EvidenceKind::Snp => {
                let verifier = SnpVerifier::from_paths(paths)?;
                (
                    Self::new(),
                    Some(Collateral(Inner::Snp(Box::new(verifier)))),
                )
            }
            EvidenceKind::Maa => {
                let Some(issuer) = issuer else {
                    return Err(Error::MissingCollateral {
                        evidence: "maa",
                        needed: "the token issuer to pin",
                    });
                };
                let maa = MaaVerifier::new(&read(one()?)?, issuer)?;
                (Self::new().trust_maa(maa), None)
            }
            EvidenceKind::Sim => {
                let key = sim::PublicKey::load(one()?)?;
                (Self::new().trust_sim_keys([key]), None)
            }
        })
    }

    /// Verify `evidence` of `kind` (detected from the bytes when `None`) with the `collateral`
    /// that came with it, at `ctx.now()`, checking `ctx`'s `report_data`.
    ///
    /// Beyond each verifier's own checks: evidence of unknown format is
    /// [`Error::UnknownFormat`]; a kind this set has no trust anchors for is
    /// [`Error::NotTrusted`]; missing or wrong-kind collateral is
    /// [`Error::MissingCollateral`]; and evidence of one TEE named as another's (a TDX quote as
    /// `sgx`) is [`Error::Rejected`] by the rule `evidence kind`.
    pub fn verify(
        &self,
        evidence: &[u8],
        kind: Option<EvidenceKind>,
        collateral: Option<&Collateral>,
        ctx: &Context,
    ) -> Result<Verified, Error> {
        let kind = kind
            .or_else(|| detect(evidence))
            .ok_or(Error::UnknownFormat)?;
        let collateral = collateral.map(|c| &c.0);
        let verified = match kind {
            EvidenceKind::Sim => self.sim.verify(evidence, ctx)?,
            EvidenceKind::Maa => match &self.maa {
                Some(maa) => maa.verify(evidence, ctx)?,
                None => {
                    return Err(Error::NotTrusted {
                        kind,
                        reason: "no Azure Attestation issuer is trusted",
                    });
                }
            },
            EvidenceKind::Sgx | EvidenceKind::Tdx => match collateral {
                Some(Inner::Dcap(c)) => {
                    DcapVerifier::with_root_ca((**c).clone(), self.dcap_root_der.clone())
                        .verify(evidence, ctx)?
                }
                _ => {
                    return Err(Error::MissingCollateral {
                        evidence: "DCAP",
                        needed: "the platform's collateral",
                    });
                }
            },
            EvidenceKind::Snp => match collateral {
                Some(Inner::Snp(v)) => v.verify(evidence, ctx)?,
                _ => {
                    return Err(Error::MissingCollateral {
                        evidence: "SEV-SNP",
                        needed: "the VCEK certificate",
                    });
                }
            },
        };
        match kind.tee() {
            Some(tee) if verified.claims().tee != tee => Err(Error::Rejected {
                rule: "evidence kind",
                expected: tee.to_string(),
                got: verified.claims().tee.to_string(),
            }),
            _ => Ok(verified),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.
mod tests {
    use super::*;
    use crate::{Fault, Tee};
    use std::time::{Duration, SystemTime};

    macro_rules! testdata {
        ($file:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/tee-evidence/",
                $file
            ))
        };
    }

    fn at(rfc3339: &str) -> Context {
        Context::new(humantime::parse_rfc3339(rfc3339).unwrap())
    }

    fn dcap_json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn dcap_quotes_need_their_collateral_and_their_kind() {
        let ctx = at("2025-07-01T00:00:00Z");
        let verifiers = Verifiers::new();
        let sgx = testdata!("sgx-dcap/sgx_quote.bin");
        let sgx_collateral = Collateral::from_json(
            EvidenceKind::Sgx,
            &dcap_json(testdata!("sgx-dcap/sgx_quote_collateral.json")),
        )
        .unwrap();
        let verified = verifiers
            .verify(sgx, None, sgx_collateral.as_ref(), &ctx)
            .unwrap();
        assert_eq!(verified.claims().tee, Tee::Sgx);

        assert!(matches!(
            verifiers.verify(sgx, Some(EvidenceKind::Sgx), None, &ctx),
            Err(Error::MissingCollateral { .. })
        ));

        let tdx = testdata!("tdx/tdx_quote.bin");
        let tdx_collateral = Collateral::from_json(
            EvidenceKind::Tdx,
            &dcap_json(testdata!("tdx/tdx_quote_collateral.json")),
        )
        .unwrap();
        assert_eq!(
            verifiers
                .verify(tdx, None, tdx_collateral.as_ref(), &ctx)
                .unwrap()
                .claims()
                .tee,
            Tee::Tdx
        );
        let err = verifiers
            .verify(tdx, Some(EvidenceKind::Sgx), tdx_collateral.as_ref(), &ctx)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Rejected {
                    rule: "evidence kind",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn snp_collateral_json_is_pem_or_base64_and_typed_when_bad() {
        let ctx = at("2025-07-01T00:00:00Z");
        let report = testdata!("sev-snp/go-sev-guest/attestation.bin");
        let vcek = B64.encode(testdata!("sev-snp/go-sev-guest/vcek.der"));
        let collateral =
            Collateral::from_json(EvidenceKind::Snp, &serde_json::json!({ "vcek": vcek })).unwrap();
        let verified = Verifiers::new()
            .verify(report, None, collateral.as_ref(), &ctx)
            .unwrap();
        assert_eq!(verified.claims().tee, Tee::SevSnp);

        for bad in [
            serde_json::json!({ "vcek": "%%%" }),
            serde_json::json!({ "certificate": vcek }),
            serde_json::json!("just a string"),
        ] {
            let err = Collateral::from_json(EvidenceKind::Snp, &bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::Malformed {
                        what: "SEV-SNP collateral",
                        ..
                    }
                ),
                "{err}"
            );
        }
        // Collateral of another kind is no SEV-SNP collateral.
        let dcap = Collateral::from_json(
            EvidenceKind::Sgx,
            &dcap_json(testdata!("sgx-dcap/sgx_quote_collateral.json")),
        )
        .unwrap();
        assert!(matches!(
            Verifiers::new().verify(report, Some(EvidenceKind::Snp), dcap.as_ref(), &ctx),
            Err(Error::MissingCollateral { .. })
        ));
        // Sim and MAA take none: whatever is given is ignored.
        assert!(
            Collateral::from_json(EvidenceKind::Sim, &serde_json::json!({}))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn only_named_anchors_are_trusted() {
        let ctx = Context::new(SystemTime::UNIX_EPOCH + Duration::from_secs(1_695_740_000));
        let token = testdata!("maa-jwt/sgx_token.jwt");
        let err = Verifiers::new()
            .verify(token, None, None, &ctx)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotTrusted {
                    kind: EvidenceKind::Maa,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.fault(), Fault::Evidence);
        let maa = MaaVerifier::new(
            testdata!("maa-jwt/sharedeus_certs_jwks.json"),
            "https://sharedeus.eus.attest.azure.net",
        )
        .unwrap();
        let verified = Verifiers::new()
            .trust_maa(maa)
            .verify(token, None, None, &ctx)
            .unwrap();
        assert_eq!(verified.claims().tee, Tee::Sgx);

        let platform = sim::PlatformKey::generate();
        let evidence = platform
            .sign(&sim::Statement {
                measurement: vec![1; 32],
                ..Default::default()
            })
            .unwrap();
        assert!(
            Verifiers::new()
                .verify(&evidence, None, None, &ctx)
                .is_err()
        );
        Verifiers::new()
            .trust_sim_keys([platform.public_key()])
            .verify(&evidence, None, None, &ctx)
            .unwrap();

        assert!(matches!(
            Verifiers::new().verify(b"nothing known", None, None, &ctx),
            Err(Error::UnknownFormat)
        ));
    }

    #[test]
    fn load_reads_each_kind_from_files() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/tee-evidence");
        let (verifiers, collateral) = Verifiers::load(
            EvidenceKind::Sgx,
            &[dir.join("sgx-dcap/sgx_quote_collateral.json")],
            None,
        )
        .unwrap();
        verifiers
            .verify(
                testdata!("sgx-dcap/sgx_quote.bin"),
                None,
                collateral.as_ref(),
                &at("2025-07-01T00:00:00Z"),
            )
            .unwrap();
        assert!(matches!(
            Verifiers::load(EvidenceKind::Sgx, &[], None),
            Err(Error::MissingCollateral { .. })
        ));
        assert!(matches!(
            Verifiers::load(
                EvidenceKind::Maa,
                &[dir.join("maa-jwt/sharedeus_certs_jwks.json")],
                None
            ),
            Err(Error::MissingCollateral { .. })
        ));
    }
}

//! AMD SEV-SNP: verify an attestation report against the VCEK → ASK → ARK chain.
//!
//! # What is checked
//!
//! When a [`SnpVerifier`] is built (once per VCEK): the VCEK is signed by the ASK, the ASK by the
//! ARK, the ARK by itself, and the ARK is byte-equal to an AMD root bundled with this crate (Milan
//! or Genoa, see the fingerprints in `snp/chain.rs`). A caller's ASK is used when given; without
//! one, the bundled chain whose ASK issued the VCEK is. The VCEK's TCB and hwID extensions are
//! read.
//!
//! On every [`Verifier::verify`]: the report is 1184 bytes (raw, or ASCII hex with whitespace),
//! of version 2, 3 or 5, signature algorithm 1 and signed by a VCEK; each certificate is valid at
//! [`Context::now`]; the ECDSA P-384 signature over bytes `0..0x2A0` verifies with the VCEK; the
//! VCEK's TCB extensions equal the report's `reported_tcb`; its hwID equals the `chip_id` unless
//! the report masks it; and, through `Verified::new`, the `report_data` is the expected one.
//!
//! # Claims
//!
//! `tee` is `sev-snp`, `format` `snp-report`, `measurement` the 48-byte launch measurement,
//! `signer` the author key digest (none when zero), `svn` the guest SVN, `tcb_status`
//! `NotReported` (SNP has no vendor status; policies compare TCB versions), `debug` bit 19 of the
//! guest policy, `expires_at` the earliest notAfter of VCEK, ASK and ARK. `snp` holds the typed
//! reported TCB (boot loader, TEE, SNP, microcode; no FMC on Milan and Genoa), the VMPL and the
//! decoded guest policy, which policies appraise. `extra` holds, as
//! lower-case hex unless said otherwise: `host_data`, `id_key_digest`, `report_id`, `chip_id`,
//! `family_id`, `image_id`, `vmpl` (decimal), `policy` and `platform_info` (`0x`-prefixed hex
//! u64), `product` (`Milan` or `Genoa`), and `reported_tcb`, `current_tcb`, `committed_tcb`,
//! `launch_tcb` as their components, e.g. `bl=2 tee=0 snp=5 ucode=68`.
//!
//! # Not covered
//!
//! VLEK-signed reports, Turin (whose TCB layout differs), CRLs of the ASK/ARK, and policy on the
//! TCB level, VMPL or guest policy bits beyond reporting them: that is the policy crate's job
//! (`min_tcb`, `max_vmpl`, the `snp-*` tolerations).
//!
//! [`Context::now`]: crate::Context::now

mod chain;
mod report;

use crate::{
    Claims, Context, Error, EvidenceFormat, SnpDetails, SnpGuestPolicy, TcbStatus, Tee, Verified,
    Verifier,
};
use chain::{Cert, Chain};
use report::Report;
use std::fmt;
use std::path::{Path, PathBuf};
use tracing::instrument;

/// Verifies SEV-SNP attestation reports signed by one VCEK.
#[derive(Clone)]
pub struct SnpVerifier {
    chain: Chain,
}

impl fmt::Debug for SnpVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpVerifier")
            .field("product", &self.chain.product.as_str())
            .field("vcek", &self.chain.vcek_name())
            .field("vcek_tcb", &self.chain.vcek.tcb.to_string())
            .finish()
    }
}

impl SnpVerifier {
    /// A verifier for reports signed by the VCEK `vcek_der` (DER, or PEM), chained through the
    /// ASK and ARK in `ask_ark_pem` (either may be missing: the bundled ones are used then).
    ///
    /// Fails with [`Error::UntrustedChain`] when the chain does not verify or ends in an ARK
    /// that is not bundled, and with [`Error::Malformed`] when a certificate does not parse.
    pub fn new(vcek_der: Vec<u8>, ask_ark_pem: Option<Vec<u8>>) -> Result<Self, Error> {
        let mut vceks = Cert::parse_many("VCEK certificate", &vcek_der)?;
        if vceks.len() != 1 {
            return Err(Error::malformed(
                "VCEK certificate",
                format_args!("holds {} certificates, not one", vceks.len()),
            ));
        }
        let vcek = vceks.remove(0);
        let cas = match ask_ark_pem {
            Some(pem) => Cert::parse_many("ASK/ARK certificates", &pem)?,
            None => Vec::new(),
        };
        Ok(Self {
            chain: Chain::build(vcek, cas)?,
        })
    }

    /// A verifier from files: each path is a VCEK (DER or PEM), a PEM bundle of ASK and ARK, or
    /// a folder whose files are such (other files in a folder are skipped). Certificates are told
    /// apart by content: the one with an elliptic-curve key is the VCEK, RSA ones are ASK/ARK.
    /// Exactly one VCEK must be found.
    pub fn from_paths(paths: &[PathBuf]) -> Result<Self, Error> {
        let mut vceks: Vec<(PathBuf, Cert)> = Vec::new();
        let mut cas = Vec::new();
        let mut skipped = Vec::new();
        let mut add = |path: &Path, certs: Vec<Cert>| {
            for cert in certs {
                if cert.has_ec_key() {
                    vceks.push((path.to_path_buf(), cert));
                } else {
                    cas.push(cert);
                }
            }
        };
        for path in paths {
            let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
            if meta.is_dir() {
                let mut files = Vec::new();
                for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
                    let entry = entry.map_err(|e| Error::io(path, e))?;
                    let file = entry.path();
                    if std::fs::metadata(&file).is_ok_and(|m| m.is_file()) {
                        files.push(file);
                    }
                }
                files.sort();
                for file in files {
                    let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
                    match Cert::parse_many("certificate file", &bytes) {
                        Ok(certs) => add(&file, certs),
                        Err(e) => {
                            tracing::debug!(file = %file.display(), error = %e, "skipped");
                            skipped.push(file.display().to_string());
                        }
                    }
                }
            } else {
                let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
                let certs = Cert::parse_many("certificate file", &bytes).map_err(|e| {
                    Error::malformed("certificate file", format_args!("{}: {e}", path.display()))
                })?;
                add(path, certs);
            }
        }
        match vceks.len() {
            0 => Err(Error::Unavailable {
                what: "VCEK",
                reason: if skipped.is_empty() {
                    "none of the given paths holds a VCEK certificate".into()
                } else {
                    format!(
                        "none of the given paths holds a VCEK certificate (skipped files that \
                         are no certificates: {})",
                        skipped.join(", ")
                    )
                },
            }),
            1 => {
                let (_, vcek) = vceks.remove(0);
                Ok(Self {
                    chain: Chain::build(vcek, cas)?,
                })
            }
            n => Err(Error::malformed(
                "SEV-SNP certificates",
                format_args!(
                    "{n} VCEKs found ({}); give exactly one",
                    vceks
                        .iter()
                        .map(|(p, _)| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// The processor generation of the chain: `Milan` or `Genoa`.
    pub fn product(&self) -> &'static str {
        self.chain.product.as_str()
    }
}

impl Verifier for SnpVerifier {
    #[instrument(skip_all, fields(len = evidence.len(), product = self.product()))]
    fn verify(&self, evidence: &[u8], ctx: &Context) -> Result<Verified, Error> {
        let report = Report::decode(evidence)?;
        report.check_format()?;
        self.chain.check_windows(ctx.now())?;

        let signature = report.signature()?;
        use p384::ecdsa::signature::Verifier as _;
        self.chain
            .vcek
            .key
            .verify(report.signed_bytes(), &signature)
            .map_err(|_| Error::BadSignature {
                what: "SEV-SNP report",
            })?;

        chain::check_tcb(self.chain.vcek.tcb, report.reported_tcb())?;
        chain::check_chip_id(&self.chain.vcek.hw_id, &report.chip_id())?;

        let claims = self.claims(&report);
        tracing::debug!(measurement = %hex::encode(&claims.measurement), "SEV-SNP report verified");
        Verified::new(claims, ctx)
    }
}

impl SnpVerifier {
    fn claims(&self, report: &Report) -> Claims {
        let mut claims = Claims::new(
            Tee::SevSnp,
            EvidenceFormat::SnpReport,
            report.measurement().to_vec(),
            report.report_data().to_vec(),
        );
        let author = report.author_key_digest();
        claims.signer = author.iter().any(|b| *b != 0).then(|| author.to_vec());
        claims.svn = Some(report.guest_svn());
        claims.tcb_status = TcbStatus::NotReported;
        claims.debug = report.policy() & report::POLICY_DEBUG != 0;
        claims.snp = Some(SnpDetails::new(
            report.reported_tcb().into(),
            report.vmpl(),
            SnpGuestPolicy::from_raw(report.policy()),
        ));
        claims.expire_no_later_than(self.chain.expires_at());
        let extra = [
            ("host_data", hex::encode(report.host_data())),
            ("id_key_digest", hex::encode(report.id_key_digest())),
            ("report_id", hex::encode(report.report_id())),
            ("chip_id", hex::encode(report.chip_id())),
            ("family_id", hex::encode(report.family_id())),
            ("image_id", hex::encode(report.image_id())),
            ("vmpl", report.vmpl().to_string()),
            ("policy", format!("{:#x}", report.policy())),
            ("platform_info", format!("{:#x}", report.platform_info())),
            ("product", self.product().to_owned()),
            ("reported_tcb", report.reported_tcb().to_string()),
            ("current_tcb", report.current_tcb().to_string()),
            ("committed_tcb", report.committed_tcb().to_string()),
            ("launch_tcb", report.launch_tcb().to_string()),
        ];
        claims
            .extra
            .extend(extra.into_iter().map(|(k, v)| (k.to_owned(), v)));
        claims
    }
}

/// Whether `evidence` looks like an SEV-SNP report: 1184 bytes, raw or as hex, of version 2 to 5
/// and signature algorithm 1. Cheap, and never panics.
pub fn sniff(evidence: &[u8]) -> bool {
    // Hex of a report is 2368 digits; do not decode large inputs that cannot be one.
    if evidence.len() > 4 * report::REPORT_LEN + 4096 {
        return false;
    }
    Report::decode(evidence).is_ok_and(|r| (2..=5).contains(&r.version()) && r.sig_algo() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::time::{Duration, SystemTime};

    macro_rules! testdata {
        ($path:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/tee-evidence/sev-snp/",
                $path
            ))
        };
    }

    const GO_REPORT: &[u8] = testdata!("go-sev-guest/attestation.bin");
    const GO_VCEK: &[u8] = testdata!("go-sev-guest/vcek.der");
    const GO_CHAIN: &[u8] = testdata!("go-sev-guest/ask_ark_milan.pem");
    const VIRTEE_REPORT: &[u8] = testdata!("virtee-sev/report_milan.hex");
    const VIRTEE_VCEK: &[u8] = testdata!("virtee-sev/vcek_milan.der");
    const VIRTEE_CHAIN: &[u8] = testdata!("virtee-sev/cert_chain_milan.pem");

    /// 2025-01-01T00:00:00Z: inside both VCEKs' windows (2022-09-24..2029-09-24 and
    /// 2023-04-03..2030-04-03) and the ASK/ARK ones.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_735_689_600)
    }

    fn go_verifier() -> SnpVerifier {
        SnpVerifier::new(GO_VCEK.to_vec(), Some(GO_CHAIN.to_vec())).unwrap()
    }

    fn go_report_data() -> Vec<u8> {
        let mut rd = vec![0u8; 64];
        rd[..5].copy_from_slice(&[1, 2, 3, 4, 5]);
        rd
    }

    #[test]
    fn go_sev_guest_report_verifies_with_readme_values() {
        let ctx = Context::new(now()).expect_report_data([1, 2, 3, 4, 5]);
        let claims = go_verifier().verify(GO_REPORT, &ctx).unwrap().into_claims();
        assert_eq!(claims.tee, Tee::SevSnp);
        assert_eq!(claims.format, EvidenceFormat::SnpReport);
        assert_eq!(
            hex::encode(&claims.measurement),
            "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
        );
        assert_eq!(claims.report_data, go_report_data());
        assert!(claims.debug, "policy 0xb0000 has bit 19 set");
        assert_eq!(claims.svn, Some(0));
        assert_eq!(claims.signer, None);
        assert_eq!(claims.tcb_status, TcbStatus::NotReported);
        let x = &claims.extra;
        assert_eq!(x["policy"], "0xb0000");
        assert_eq!(x["vmpl"], "0");
        assert_eq!(x["product"], "Milan");
        assert_eq!(
            x["chip_id"],
            "3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d"
        );
        assert_eq!(
            x["report_id"],
            "8edc638e1857c555d21f6b11bda3c8b1b5a09dba4852b4c8ee7aa2f16f22cc0a"
        );
        for key in ["reported_tcb", "current_tcb", "committed_tcb", "launch_tcb"] {
            assert_eq!(x[key], "bl=2 tee=0 snp=5 ucode=68", "{key}");
        }
        for key in ["host_data", "family_id", "image_id"] {
            assert!(x[key].chars().all(|c| c == '0'), "{key}");
        }
        assert_eq!(x["id_key_digest"], "0".repeat(96));
        // The VCEK expires first: 2029-09-24T00:55:28Z.
        assert_eq!(claims.expires_at, Some(1_884_905_728));
    }

    #[test]
    fn virtee_report_verifies_with_readme_values() {
        let verifier = SnpVerifier::new(VIRTEE_VCEK.to_vec(), Some(VIRTEE_CHAIN.to_vec())).unwrap();
        let report_data = hex::decode("d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd").unwrap();
        let ctx = Context::new(now()).expect_report_data(&report_data);
        let claims = verifier.verify(VIRTEE_REPORT, &ctx).unwrap().into_claims();
        assert_eq!(
            hex::encode(&claims.measurement),
            "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f"
        );
        assert_eq!(claims.report_data, report_data);
        assert!(!claims.debug, "policy 0x30000 has bit 19 clear");
        let x = &claims.extra;
        assert_eq!(x["policy"], "0x30000");
        assert_eq!(x["vmpl"], "0");
        assert_eq!(
            x["chip_id"],
            "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6"
        );
        assert_eq!(x["reported_tcb"], "bl=3 tee=0 snp=8 ucode=115");
        // 2030-04-03T19:23:43Z.
        assert_eq!(claims.expires_at, Some(1_901_474_623));
    }

    /// The typed SEV-SNP claims against an independent reading of the report bytes at the
    /// offsets AMD documents (56860, ATTESTATION_REPORT): guest policy u64 at 0x08, VMPL u32 at
    /// 0x30, reported TCB u64 at 0x180 with the boot loader in byte 0, the TEE in byte 1, SNP in
    /// byte 6 and microcode in byte 7; and against the fixture README's values.
    #[rstest]
    #[case::go_sev_guest(GO_VCEK, GO_REPORT, 0xb0000, (2, 0, 5, 68), (true, false, true))]
    #[case::virtee(VIRTEE_VCEK, VIRTEE_REPORT, 0x30000, (3, 0, 8, 115), (true, false, false))]
    fn snp_details_are_the_report_fields(
        #[case] vcek: &[u8],
        #[case] evidence: &[u8],
        #[case] readme_policy: u64,
        #[case] readme_tcb: (u8, u8, u8, u8),
        #[case] smt_migrate_debug: (bool, bool, bool),
    ) {
        let raw = if evidence.len() == 0x4A0 {
            evidence.to_vec()
        } else {
            let digits: Vec<u8> = evidence
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            hex::decode(digits).unwrap()
        };
        let le64 = |at: usize| u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
        let policy = le64(0x08);
        let vmpl = u32::from_le_bytes(raw[0x30..0x34].try_into().unwrap());
        let tcb = &raw[0x180..0x188];
        assert_eq!(policy, readme_policy);
        assert_eq!((tcb[0], tcb[1], tcb[6], tcb[7]), readme_tcb);

        let claims = SnpVerifier::new(vcek.to_vec(), None)
            .unwrap()
            .verify(evidence, &Context::new(now()))
            .unwrap()
            .into_claims();
        let snp = claims.snp.expect("SEV-SNP details");
        assert_eq!(snp.vmpl, vmpl);
        assert_eq!(snp.vmpl, 0);
        let t = snp.reported_tcb;
        assert_eq!((t.bootloader, t.tee, t.snp, t.microcode), readme_tcb);
        assert_eq!(t.fmc, None);
        let p = snp.policy;
        assert_eq!(p.raw, Some(policy));
        assert_eq!((p.smt, p.migrate_ma, p.debug), smt_migrate_debug);
        assert_eq!(
            (p.smt, p.migrate_ma, p.debug, p.single_socket),
            (
                policy >> 16 & 1 == 1,
                policy >> 18 & 1 == 1,
                policy >> 19 & 1 == 1,
                policy >> 20 & 1 == 1
            )
        );
        assert_eq!((p.abi_major, p.abi_minor), (0, 0));
        assert_eq!(p.debug, claims.debug);
        // The typed TCB and the `extra` string say the same.
        assert_eq!(claims.extra["reported_tcb"], t.to_string());
    }

    #[rstest]
    #[case::go_sev_guest(GO_VCEK, GO_REPORT)]
    #[case::virtee(VIRTEE_VCEK, VIRTEE_REPORT)]
    fn verifies_with_bundled_ask_ark(#[case] vcek: &[u8], #[case] evidence: &[u8]) {
        let verifier = SnpVerifier::new(vcek.to_vec(), None).unwrap();
        assert_eq!(verifier.product(), "Milan");
        verifier.verify(evidence, &Context::new(now())).unwrap();
    }

    #[test]
    fn from_paths_classifies_by_content() {
        let dir = tempfile::tempdir().unwrap();
        // Names that say nothing about the content.
        std::fs::write(dir.path().join("a"), GO_CHAIN).unwrap();
        std::fs::write(dir.path().join("b"), GO_VCEK).unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"not a certificate").unwrap();
        let from_dir = SnpVerifier::from_paths(&[dir.path().to_path_buf()]).unwrap();
        from_dir.verify(GO_REPORT, &Context::new(now())).unwrap();

        let from_files =
            SnpVerifier::from_paths(&[dir.path().join("b"), dir.path().join("a")]).unwrap();
        from_files.verify(GO_REPORT, &Context::new(now())).unwrap();

        // A PEM VCEK alone works with the bundled chain.
        let pem =
            der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, GO_VCEK).unwrap();
        std::fs::write(dir.path().join("c"), pem).unwrap();
        let pem_only = SnpVerifier::from_paths(&[dir.path().join("c")]).unwrap();
        pem_only.verify(GO_REPORT, &Context::new(now())).unwrap();

        // Two VCEKs are ambiguous; none is unavailable; a non-certificate file named directly is malformed.
        assert!(matches!(
            SnpVerifier::from_paths(&[dir.path().to_path_buf()]),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            SnpVerifier::from_paths(&[dir.path().join("a")]),
            Err(Error::Unavailable { .. })
        ));
        assert!(matches!(
            SnpVerifier::from_paths(&[dir.path().join("notes.txt")]),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            SnpVerifier::from_paths(&[dir.path().join("missing")]),
            Err(Error::Io { .. })
        ));
    }

    fn flipped(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[index] ^= mask;
        out
    }

    /// How a negative case is verified: which VCEK, chain, evidence and context.
    struct Case {
        vcek: Vec<u8>,
        chain: Option<Vec<u8>>,
        evidence: Vec<u8>,
        ctx: Context,
    }

    impl Case {
        fn go() -> Self {
            Self {
                vcek: GO_VCEK.to_vec(),
                chain: Some(GO_CHAIN.to_vec()),
                evidence: GO_REPORT.to_vec(),
                ctx: Context::new(now()),
            }
        }
        fn run(self) -> Result<Verified, Error> {
            SnpVerifier::new(self.vcek, self.chain)?.verify(&self.evidence, &self.ctx)
        }
    }

    fn at(secs: u64) -> Context {
        Context::new(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn genoa_chain() -> Vec<u8> {
        [
            sev::certs::snp::builtin::genoa::ASK,
            sev::certs::snp::builtin::genoa::ARK,
        ]
        .concat()
    }

    /// The Milan ASK with a Milan ARK whose signature has one bit flipped.
    fn tampered_ark_chain() -> Vec<u8> {
        let (_, mut ark) = der::pem::decode_vec(sev::certs::snp::builtin::milan::ARK).unwrap();
        let last = ark.len() - 1;
        ark[last] ^= 1;
        let ark = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &ark).unwrap();
        [sev::certs::snp::builtin::milan::ASK, ark.as_bytes()].concat()
    }

    /// An ASK and a self-signed ARK from a root that is not AMD's.
    fn foreign_chain() -> Vec<u8> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let alg = &rcgen::PKCS_ECDSA_P384_SHA384;
        let ark_key = KeyPair::generate_for(alg).unwrap();
        let mut ark_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ark_params
            .distinguished_name
            .push(DnType::CommonName, "ARK-Milan");
        ark_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ark = ark_params.self_signed(&ark_key).unwrap();
        let issuer = rcgen::Issuer::new(ark_params, ark_key);
        let ask_key = KeyPair::generate_for(alg).unwrap();
        let mut ask_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ask_params
            .distinguished_name
            .push(DnType::CommonName, "SEV-Milan");
        ask_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        let ask = ask_params.signed_by(&ask_key, &issuer).unwrap();
        format!("{}{}", ask.pem(), ark.pem()).into_bytes()
    }

    #[rstest]
    #[case::signed_body_bit_flipped(
        Case { evidence: flipped(GO_REPORT, 21, 0x80), ..Case::go() },
        |e: &Error| matches!(e, Error::BadSignature { .. }))]
    #[case::report_data_bit_flipped(
        Case { evidence: flipped(GO_REPORT, 0x50, 0x01), ..Case::go() },
        |e: &Error| matches!(e, Error::BadSignature { .. }))]
    #[case::signature_r_bit_flipped(
        Case { evidence: flipped(GO_REPORT, 0x2A0, 0x01), ..Case::go() },
        |e: &Error| matches!(e, Error::BadSignature { .. }))]
    #[case::signature_s_bit_flipped(
        Case { evidence: flipped(GO_REPORT, 0x2E8 + 10, 0x10), ..Case::go() },
        |e: &Error| matches!(e, Error::BadSignature { .. }))]
    #[case::wrong_vcek_for_report(
        Case { vcek: VIRTEE_VCEK.to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::BadSignature { .. }))]
    #[case::vcek_byte_40_xored(
        Case { vcek: flipped(GO_VCEK, 40, 0xff), ..Case::go() },
        |e: &Error| matches!(e, Error::UntrustedChain { .. }))]
    #[case::vcek_signature_bit_flipped(
        Case { vcek: flipped(GO_VCEK, GO_VCEK.len() - 1, 0x01), ..Case::go() },
        |e: &Error| matches!(e, Error::UntrustedChain { .. }))]
    #[case::vcek_not_der(
        Case { vcek: GO_VCEK[..200].to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::Malformed { .. }))]
    #[case::genoa_ask_ark_for_milan_vcek(
        Case { chain: Some(genoa_chain()), ..Case::go() },
        |e: &Error| matches!(e, Error::UntrustedChain { .. }))]
    #[case::foreign_root(
        Case { chain: Some(foreign_chain()), ..Case::go() },
        |e: &Error| matches!(e, Error::UntrustedChain { .. }))]
    #[case::caller_ark_differs_from_bundled(
        Case { chain: Some(tampered_ark_chain()), ..Case::go() },
        |e: &Error| matches!(e, Error::UntrustedChain { .. }))]
    #[case::after_vcek_window(
        Case { ctx: at(1_884_905_729), ..Case::go() },
        |e: &Error| matches!(e, Error::Expired { .. }))]
    #[case::before_vcek_window(
        Case { ctx: at(1_663_980_927), ..Case::go() },
        |e: &Error| matches!(e, Error::NotYetValid { .. }))]
    #[case::empty_report(
        Case { evidence: Vec::new(), ..Case::go() },
        |e: &Error| matches!(e, Error::Truncated { got: 0, .. }))]
    #[case::report_100_bytes(
        Case { evidence: GO_REPORT[..100].to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::Truncated { got: 100, .. }))]
    #[case::report_without_signature(
        Case { evidence: GO_REPORT[..0x2A0].to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::Truncated { got: 0x2A0, .. }))]
    #[case::report_one_byte_short(
        Case { evidence: GO_REPORT[..1183].to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::Truncated { got: 1183, .. }))]
    #[case::hex_report_truncated(
        Case { evidence: VIRTEE_REPORT[..2000].to_vec(), vcek: VIRTEE_VCEK.to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::Truncated { got: 1000, .. }))]
    #[case::unsupported_version(
        Case { evidence: flipped(GO_REPORT, 0, 0x02 ^ 0x07), ..Case::go() },
        |e: &Error| matches!(e, Error::Unsupported { .. }))]
    #[case::unsupported_signature_algorithm(
        Case { evidence: flipped(GO_REPORT, 0x34, 0x01 ^ 0x02), ..Case::go() },
        |e: &Error| matches!(e, Error::Unsupported { .. }))]
    #[case::wrong_report_data(
        Case { ctx: Context::new(now()).expect_report_data([1, 2, 3, 4, 6]), ..Case::go() },
        |e: &Error| matches!(e, Error::ReportDataMismatch { .. }))]
    #[case::garbage_hex(
        Case { evidence: b"0200000000000000 not hex at all".to_vec(), ..Case::go() },
        |e: &Error| matches!(e, Error::Malformed { .. }))]
    #[case::trailing_bytes(
        Case { evidence: [GO_REPORT, b"\0"].concat(), ..Case::go() },
        |e: &Error| matches!(e, Error::Malformed { .. }))]
    fn rejects(#[case] case: Case, #[case] expected: fn(&Error) -> bool) {
        match case.run() {
            Ok(v) => panic!("verified: {:?}", v.claims()),
            Err(e) => assert!(expected(&e), "wrong error: {e:?} ({e})"),
        }
    }

    #[test]
    fn tcb_rule_rejects_a_mismatch() {
        let vcek_tcb = report::Tcb::from_le(0x4405000000000002);
        chain::check_tcb(vcek_tcb, vcek_tcb).unwrap();
        let older_ucode = report::Tcb::from_le(0x4305000000000002);
        let err = chain::check_tcb(vcek_tcb, older_ucode).unwrap_err();
        assert!(
            matches!(&err, Error::Rejected { rule: "VCEK TCB matches reported TCB", expected, got }
                if expected == "bl=2 tee=0 snp=5 ucode=68" && got == "bl=2 tee=0 snp=5 ucode=67"),
            "{err:?}"
        );
    }

    #[test]
    fn chip_id_rule_rejects_a_mismatch_unless_masked() {
        let hw_id = [7u8; 64];
        chain::check_chip_id(&hw_id, &hw_id).unwrap();
        chain::check_chip_id(&hw_id, &[0u8; 64]).unwrap();
        assert!(matches!(
            chain::check_chip_id(&hw_id, &[8u8; 64]),
            Err(Error::Rejected {
                rule: "VCEK hwID matches report chip_id",
                ..
            })
        ));
    }

    #[rstest]
    #[case::raw_go(GO_REPORT, true)]
    #[case::hex_virtee(VIRTEE_REPORT, true)]
    #[case::empty(b"", false)]
    #[case::truncated(&GO_REPORT[..1183], false)]
    #[case::json(b"{\"kind\":\"sim\"}", false)]
    #[case::jwt(b"eyJhbGciOiJSUzI1NiJ9.e30.c2ln", false)]
    fn sniff_recognises_reports(#[case] evidence: &[u8], #[case] expected: bool) {
        assert_eq!(sniff(evidence), expected);
    }

    #[test]
    fn sniff_rejects_other_versions_and_algorithms() {
        assert!(!sniff(&flipped(GO_REPORT, 0, 0x02 ^ 0x06)));
        assert!(!sniff(&flipped(GO_REPORT, 0x34, 0x01 ^ 0x03)));
        assert!(
            sniff(&flipped(GO_REPORT, 0, 0x02 ^ 0x04)),
            "version 4 is plausible"
        );
    }

    /// Deterministic pseudo-random mutations of both sample reports (bit flips, byte writes,
    /// truncations, raw and hex) must never panic, and only those that leave the signed bytes
    /// and the signature intact may verify.
    #[test]
    fn mutated_reports_never_panic() {
        let go = go_verifier();
        let virtee = SnpVerifier::new(VIRTEE_VCEK.to_vec(), None).unwrap();
        let virtee_raw = hex::decode(
            VIRTEE_REPORT
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect::<Vec<u8>>(),
        )
        .unwrap();
        let ctx = Context::new(now());
        // xorshift64*: reproducible, no dependency.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut next = move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            state.wrapping_mul(0x2545_F491_4F6C_DD1D)
        };
        let mut verified = 0;
        for i in 0..3000 {
            let (verifier, base) = if i % 2 == 0 {
                (&go, GO_REPORT)
            } else {
                (&virtee, virtee_raw.as_slice())
            };
            let mut bytes = base.to_vec();
            let r = next();
            match r % 4 {
                0 => {
                    let bit = (next() as usize) % (bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                1 => {
                    for _ in 0..1 + next() % 8 {
                        let at = (next() as usize) % bytes.len();
                        bytes[at] = next() as u8;
                    }
                }
                2 => bytes.truncate((next() as usize) % (bytes.len() + 1)),
                _ => {
                    // Header fields only: version, algorithm, key info, reported TCB.
                    let at = [0usize, 1, 0x34, 0x48, 0x180, 0x187][(next() as usize) % 6];
                    bytes[at] = next() as u8;
                }
            }
            let evidence = if r & 0x100 != 0 {
                hex::encode(&bytes).into_bytes()
            } else {
                bytes.clone()
            };
            let _ = sniff(&evidence);
            if let Ok(report) = Report::decode(&evidence) {
                let _ = (
                    report.check_format(),
                    report.signature(),
                    report.reported_tcb(),
                );
            }
            // Full verification (an ECDSA P-384 check, slow in debug builds) for a quarter,
            // alternating between the two samples.
            if i % 8 < 2 && verifier.verify(&evidence, &ctx).is_ok() {
                // Only the unsigned reserved tail after the signature may change and still verify.
                assert_eq!(bytes.len(), base.len(), "mutation {i}");
                assert_eq!(bytes[..0x330], base[..0x330], "mutation {i} verified");
                verified += 1;
            }
        }
        assert!(verified < 100, "{verified} mutations verified");
    }
}

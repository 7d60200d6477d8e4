//! `cloister evidence …`: verify TEE evidence, and make `sim` evidence for development.

use crate::{EXIT_REFUSED, output};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use cloister_attest::{
    Context, Error, EvidenceKind, Fault, Tee, Verified, Verifier, dcap, detect, maa, sim, snp,
};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(Subcommand)]
pub enum Command {
    /// Verify TEE evidence and print its claims; exit 1 if it is refused.
    ///
    /// The evidence is checked offline against trust anchors bundled in Cloister (Intel SGX Root
    /// CA, AMD Milan and Genoa ARKs) and the collateral you give, at the time given by --at (now
    /// by default). What --collateral takes depends on the kind:
    ///
    ///   sgx, tdx  the quote collateral JSON (TCB info, QE identity, CRLs, issuer chains)
    ///   snp       the VCEK certificate, optionally an ASK+ARK PEM, or a folder holding them
    ///   maa       the attestation provider's JWKS; the issuer is pinned with --issuer
    ///   sim       the simulated platform's public key (PEM)
    ///
    /// Examples:
    ///   cloister evidence verify testdata/tee-evidence/sgx-dcap/sgx_quote.bin \
    ///       --collateral testdata/tee-evidence/sgx-dcap/sgx_quote_collateral.json \
    ///       --at 2025-07-01T00:00:00Z
    ///   cloister evidence verify token.jwt --kind maa --collateral jwks.json \
    ///       --issuer https://sharedeus.eus.attest.azure.net --json
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Generate a simulated platform key pair for the `sim` TEE.
    ///
    /// Writes the private key (PKCS#8 PEM, mode 0600) to --out and the public key to
    /// `<out>.pub`. The public key is what a verifier (and a policy that accepts `sim`) trusts.
    ///
    /// Example: cloister evidence sim-keygen --out platform.pem
    #[command(verbatim_doc_comment)]
    SimKeygen {
        /// Where to write the private key; the public key goes to `<FILE>.pub`.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Make `sim` evidence: a statement signed by a simulated platform key.
    ///
    /// For development and CI without TEE hardware. Its claims always say `tee: sim`, and
    /// policies refuse it unless they name `sim`.
    ///
    /// Example: cloister evidence sim --key platform.pem --measurement ab12… --report-data 00… --out ev.json
    #[command(verbatim_doc_comment)]
    Sim(SimArgs),
}

/// Which evidence verifier to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Tell from the bytes.
    Auto,
    /// Intel SGX DCAP quote (v3).
    Sgx,
    /// Intel TDX quote (v4, v5).
    Tdx,
    /// AMD SEV-SNP attestation report (raw or hex).
    Snp,
    /// Microsoft Azure Attestation token (JWT).
    Maa,
    /// Cloister's simulated TEE.
    Sim,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The evidence file.
    file: PathBuf,
    /// What kind of evidence the file holds.
    #[arg(long, value_enum, default_value_t = Kind::Auto)]
    kind: Kind,
    /// Collateral / trust material; may be given more than once (see above).
    #[arg(long, value_name = "PATH")]
    collateral: Vec<PathBuf>,
    /// The issuer an MAA token must name (exact match).
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Verify as of this time (RFC 3339, e.g. 2025-07-01T00:00:00Z) instead of now.
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    at: Option<SystemTime>,
    /// Require the evidence's report_data to be this (hex; a shorter value must be zero-padded
    /// in the evidence).
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    expect_report_data: Option<Hex>,
    /// Print JSON: {"verified": true, "kind": …, "claims": {…}} or {"verified": false, "error": {…}}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SimArgs {
    /// The simulated platform's private key (from `sim-keygen`).
    #[arg(long, value_name = "FILE")]
    key: PathBuf,
    /// The code measurement to claim (hex, 1 to 64 bytes).
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    measurement: Hex,
    /// The report data to bind (hex, at most 64 bytes).
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    report_data: Hex,
    /// The security version to claim.
    #[arg(long, default_value_t = 0)]
    svn: u32,
    /// Claim a debug-mode TEE.
    #[arg(long)]
    debug: bool,
    /// Where to write the evidence.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("not an RFC 3339 time: {e}"))
}

/// Bytes given on the command line as hex.
#[derive(Clone, Debug)]
pub struct Hex(Vec<u8>);

fn parse_hex(s: &str) -> Result<Hex, String> {
    hex::decode(s.trim())
        .map(Hex)
        .map_err(|e| format!("not hex: {e}"))
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Verify(args) => verify(args),
        Command::SimKeygen { out } => sim_keygen(&out),
        Command::Sim(args) => make_sim(args),
    }
}

#[derive(Serialize)]
struct VerifyReport<'a> {
    verified: bool,
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<&'a cloister_attest::Claims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorReport>,
}

#[derive(Serialize)]
struct ErrorReport {
    code: &'static str,
    message: String,
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let evidence = read(&args.file)?;
    let kind = match args.kind {
        Kind::Auto => match detect(&evidence) {
            Some(k) => Kind::from(k),
            None => return refuse(None, &Error::UnknownFormat, args.json),
        },
        k => k,
    };
    let mut ctx = Context::new(args.at.unwrap_or_else(SystemTime::now));
    if let Some(rd) = &args.expect_report_data {
        ctx = ctx.expect_report_data(&rd.0);
    }
    let verifier = load_verifier(kind, &args.collateral, args.issuer.as_deref())?;
    let result = verifier
        .verify(&evidence, &ctx)
        .and_then(|v| check_kind(kind, v));
    match result {
        Ok(verified) => {
            let claims = verified.claims();
            if args.json {
                output::json(&VerifyReport {
                    verified: true,
                    kind: Some(kind_name(kind)),
                    claims: Some(claims),
                    error: None,
                })?;
            } else {
                output::print_table(&output::claims_table(claims))?;
                eprintln!("cloister: verified {} evidence", claims.tee);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.fault() == Fault::Evidence => refuse(Some(kind), &e, args.json),
        Err(e) => Err(e.into()),
    }
}

/// Print a refusal and return exit code 1.
fn refuse(kind: Option<Kind>, e: &Error, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&VerifyReport {
            verified: false,
            kind: kind.map(kind_name),
            claims: None,
            error: Some(ErrorReport {
                code: e.code(),
                message: e.to_string(),
            }),
        })?;
    }
    eprintln!("cloister: refused: {e}");
    Ok(ExitCode::from(EXIT_REFUSED))
}

/// `--kind sgx` must not accept a TDX quote, and so on.
fn check_kind(kind: Kind, verified: Verified) -> Result<Verified, Error> {
    let want = match kind {
        Kind::Sgx => Some(Tee::Sgx),
        Kind::Tdx => Some(Tee::Tdx),
        Kind::Snp => Some(Tee::SevSnp),
        Kind::Sim => Some(Tee::Sim),
        Kind::Auto | Kind::Maa => None,
    };
    match want {
        Some(tee) if verified.claims().tee != tee => Err(Error::Rejected {
            rule: "evidence kind",
            expected: tee.to_string(),
            got: verified.claims().tee.to_string(),
        }),
        _ => Ok(verified),
    }
}

impl From<EvidenceKind> for Kind {
    fn from(k: EvidenceKind) -> Self {
        match k {
            EvidenceKind::Sgx => Kind::Sgx,
            EvidenceKind::Tdx => Kind::Tdx,
            EvidenceKind::Snp => Kind::Snp,
            EvidenceKind::Maa => Kind::Maa,
            EvidenceKind::Sim => Kind::Sim,
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Auto => "auto",
        Kind::Sgx => "sgx",
        Kind::Tdx => "tdx",
        Kind::Snp => "snp",
        Kind::Maa => "maa",
        Kind::Sim => "sim",
    }
}

fn load_verifier(
    kind: Kind,
    collateral: &[PathBuf],
    issuer: Option<&str>,
) -> anyhow::Result<Box<dyn Verifier>> {
    let one = || -> anyhow::Result<&PathBuf> {
        match collateral {
            [one] => Ok(one),
            [] => bail!("--collateral is required for {} evidence", kind_name(kind)),
            _ => bail!(
                "{} evidence takes one --collateral, got {}",
                kind_name(kind),
                collateral.len()
            ),
        }
    };
    Ok(match kind {
        Kind::Sgx | Kind::Tdx => {
            let json = read(one()?)?;
            Box::new(dcap::DcapVerifier::new(dcap::Collateral::from_json(&json)?))
        }
        Kind::Snp => {
            if collateral.is_empty() {
                bail!(
                    "--collateral is required for snp evidence: the VCEK, or a folder holding it"
                );
            }
            Box::new(snp::SnpVerifier::from_paths(collateral)?)
        }
        Kind::Maa => {
            let Some(issuer) = issuer else {
                bail!("--issuer is required for maa evidence: the token issuer to pin");
            };
            Box::new(maa::MaaVerifier::new(&read(one()?)?, issuer)?)
        }
        Kind::Sim => Box::new(sim::SimVerifier::new([sim::PublicKey::load(one()?)?])),
        Kind::Auto => bail!("internal error: evidence kind not resolved"),
    })
}

fn sim_keygen(out: &Path) -> anyhow::Result<ExitCode> {
    let key = sim::PlatformKey::generate();
    key.save(out)?;
    let public = key.public_key();
    let pub_path = pub_path(out);
    std::fs::write(&pub_path, public.to_pem())
        .with_context(|| format!("cannot write {}", pub_path.display()))?;
    eprintln!(
        "cloister: wrote {} (private, 0600) and {} (fingerprint {})",
        out.display(),
        pub_path.display(),
        public.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}

/// `<out>.pub`: where a key's public half is written.
pub fn pub_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

fn make_sim(args: SimArgs) -> anyhow::Result<ExitCode> {
    let key = sim::PlatformKey::load(&args.key)?;
    let evidence = key.sign(&sim::Statement {
        measurement: args.measurement.0,
        report_data: args.report_data.0,
        svn: args.svn,
        debug: args.debug,
        ..Default::default()
    })?;
    std::fs::write(&args.out, evidence)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(ExitCode::SUCCESS)
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

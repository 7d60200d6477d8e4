//! `cloister evidence …`: verify TEE evidence, and make `sim` evidence for development.

use crate::{EXIT_REFUSED, output};
use anyhow::{Context as _, bail};
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use cloister_attest::{Context, Error, EvidenceKind, Fault, Verifiers, detect, sim};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(Subcommand)]
pub enum Command {
    /// Verify TEE evidence and print its claims; exit 1 if it is refused.
    ///
    /// (`--help` is `verify_long_about()`: it lists what --collateral takes for each kind.)
    #[command(long_about = verify_long_about())]
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

/// `--kind`: a kind of evidence, or `auto` (`None`) to tell from the bytes. The names and their
/// help come from [`EvidenceKind`], so a new kind needs no change here.
#[derive(Clone, Copy, Debug)]
pub struct KindArg(Option<EvidenceKind>);

/// `evidence verify --help`: what --collateral takes for each kind, as `cloister-attest` states
/// it, so that a new kind of evidence needs no change here.
fn verify_long_about() -> String {
    let mut about = String::from(
        "Verify TEE evidence and print its claims; exit 1 if it is refused.\n\n\
         The evidence is checked offline against trust anchors bundled in Cloister (Intel SGX Root\n\
         CA, AMD Milan and Genoa ARKs) and the collateral you give, at the time given by --at (now\n\
         by default). What --collateral takes depends on the kind:\n\n",
    );
    // Kinds that take the same material share a line (`sgx, tdx`).
    let mut lines: Vec<(Vec<&str>, &str)> = Vec::new();
    for kind in EvidenceKind::ALL {
        match lines.iter_mut().find(|(_, m)| *m == kind.trust_material()) {
            Some((names, _)) => names.push(kind.as_str()),
            None => lines.push((vec![kind.as_str()], kind.trust_material())),
        }
    }
    for (names, material) in lines {
        about.push_str(&format!("  {:<10}{material}\n", names.join(", ")));
    }
    about.push_str(
        "\nExamples:\n\
         \x20 cloister evidence verify testdata/tee-evidence/sgx-dcap/sgx_quote.bin \\\n\
         \x20     --collateral testdata/tee-evidence/sgx-dcap/sgx_quote_collateral.json \\\n\
         \x20     --at 2025-07-01T00:00:00Z\n\
         \x20 cloister evidence verify token.jwt --kind maa --collateral jwks.json \\\n\
         \x20     --issuer https://sharedeus.eus.attest.azure.net --json",
    );
    about
}

fn kind_parser() -> impl TypedValueParser<Value = KindArg> {
    let values = std::iter::once(PossibleValue::new("auto").help("Tell from the bytes")).chain(
        EvidenceKind::ALL
            .into_iter()
            .map(|k| PossibleValue::new(k.as_str()).help(k.description())),
    );
    PossibleValuesParser::new(values).map(|name| KindArg(name.parse().ok()))
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The evidence file.
    file: PathBuf,
    /// What kind of evidence the file holds.
    #[arg(long, value_name = "KIND", default_value = "auto", value_parser = kind_parser())]
    kind: KindArg,
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
    let Some(kind) = args.kind.0.or_else(|| detect(&evidence)) else {
        return refuse(None, &Error::UnknownFormat, args.json);
    };
    let mut ctx = Context::new(args.at.unwrap_or_else(SystemTime::now));
    if let Some(rd) = &args.expect_report_data {
        ctx = ctx.expect_report_data(&rd.0);
    }
    if args.collateral.is_empty() {
        bail!(
            "--collateral is required for {kind} evidence: {}",
            kind.trust_material()
        );
    }
    // Unusable trust material is the operator's mistake (exit 2), not a verdict on the evidence.
    let (verifiers, collateral) = Verifiers::load(kind, &args.collateral, args.issuer.as_deref())?;
    match verifiers.verify(&evidence, Some(kind), collateral.as_ref(), &ctx) {
        Ok(verified) => {
            let claims = verified.claims();
            if args.json {
                output::json(&VerifyReport {
                    verified: true,
                    kind: Some(kind.as_str()),
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
fn refuse(kind: Option<EvidenceKind>, e: &Error, json: bool) -> anyhow::Result<ExitCode> {
    if json {
        output::json(&VerifyReport {
            verified: false,
            kind: kind.map(EvidenceKind::as_str),
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

//! `cloister`: confidential big-data analytics in attested TEEs.
//!
//! This binary parses arguments, calls the library crates and prints their results: tables for
//! people, `--json` for programs, diagnostics on stderr prefixed `cloister:`. Exit codes: 0 ok,
//! 1 a negative verdict (evidence refused, verification failed), 2 a usage or operational error.

mod audit;
mod bench;
mod demo;
mod evidence;
mod keys;
mod output;
mod policy;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Confidential big-data analytics in attested Trusted Execution Environments.
///
/// Data, code, keys and results stay encrypted outside a TEE; a workload receives its secrets only
/// after its hardware evidence has been checked against a policy signed by the data's custodian.
///
/// Start with `cloister demo`, then `cloister evidence verify --help`.
#[derive(Parser)]
#[command(
    name = "cloister",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// Only print results and errors: no progress bars or notes.
    #[arg(long, short, global = true)]
    quiet: bool,

    /// Log more (-v: debug, -vv: trace); RUST_LOG overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo: verify every bundled TEE evidence sample and print their claims.
    ///
    /// Verifies real recorded SGX DCAP, TDX, SEV-SNP and Azure Attestation evidence at a time
    /// inside each sample's validity window, shows that tampered copies are refused, and runs a
    /// `sim` TEE round trip that binds a nonce and a workload key into the evidence. Needs no
    /// files and no network.
    ///
    /// Example: cloister demo --json
    Demo(demo::Args),
    /// Collect, create and verify TEE evidence.
    #[command(subcommand)]
    Evidence(evidence::Command),
    /// Make and inspect policy owners' signing keys (Ed25519).
    #[command(subcommand)]
    Keys(keys::Command),
    /// Lint, hash, sign and compare policies, offline.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Verify and read the CAS audit log, offline.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Benchmarks that report ratios against a peer measured in the same run.
    #[command(subcommand)]
    Bench(bench::Command),
}

/// Exit code for a negative verdict: evidence refused, verification failed.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code for a usage or operational error.
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, quiet),
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Keys(cmd) => keys::run(cmd, quiet),
        Command::Policy(cmd) => policy::run(cmd, quiet),
        Command::Audit(cmd) => audit::run(cmd, quiet),
        Command::Bench(cmd) => bench::run(cmd, quiet),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("cloister: {err:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// A closed stdout (`cloister … | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

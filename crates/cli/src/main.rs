//! `cloister`: confidential big-data analytics in attested TEEs.
//!
//! This binary parses arguments, calls the library crates and prints their results: tables for
//! people, `--json` for programs, diagnostics on stderr prefixed `cloister:`. Exit codes: 0 ok,
//! 1 a negative verdict (evidence refused, verification failed), 2 a usage or operational error.

mod audit;
mod cas;
mod evidence;
mod forward;
mod keys;
mod las;
mod namespace;
mod output;
mod package;
mod policy;
mod remote;
mod run;
mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Confidential big-data analytics in attested Trusted Execution Environments.
///
/// Data, code, keys and results stay encrypted outside a TEE; a workload receives its secrets only
/// after its hardware evidence has been checked against a policy signed by the data's custodian.
///
/// Start with `cloister demo`, then `cloister demo evidence` and `cloister evidence verify --help`.
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
    /// Run the demo: attested analytics over encrypted NYC-taxi data, end to end on this machine.
    ///
    /// Runs `cloister-demo demo …` (see `cloister demo --help`): the demos live outside this
    /// executable, which is the measured workload.
    ///
    /// Examples: cloister demo
    ///           cloister demo --rows 1000000 --dir demo-run --json
    ///           cloister demo evidence
    #[command(verbatim_doc_comment, disable_help_flag = true)]
    Demo(forward::Args),
    /// Collect, create and verify TEE evidence.
    #[command(subcommand)]
    Evidence(evidence::Command),
    /// Generate synthetic data sets (NYC-taxi-like trips), optionally encrypted.
    ///
    /// Runs `cloister-demo gen …` (see `cloister gen taxi --help`).
    #[command(disable_help_flag = true)]
    Gen(forward::Args),
    /// Make and inspect policy owners' signing keys (Ed25519).
    #[command(subcommand)]
    Keys(keys::Command),
    /// Lint, hash, sign and compare policies offline; push, read, list and delete them on a CAS.
    #[command(subcommand)]
    Policy(policy::Command),
    /// Create, show, list, update and delete namespaces on a CAS (the operator's admin key).
    #[command(subcommand)]
    Namespace(namespace::Command),
    /// Verify and read the CAS audit log, offline or through the CAS API.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Run the Configuration and Attestation Service (CAS); make its master key.
    #[command(subcommand)]
    Cas(cas::Command),
    /// Run the Local Attestation Service (LAS), the node agent serving evidence and collateral.
    #[command(subcommand)]
    Las(las::Command),
    /// Encrypt an app directory into a bundle (AES-256-GCM), or make a bundle key.
    ///
    /// The bundle holds every regular file under APP_DIR in a deterministic archive, so the same
    /// app always has the same digest and measurement. The key is read from a file; the policy
    /// imports the same file and hands it to the workload as CLOISTER_BUNDLE_KEY.
    ///
    /// Example: cloister package keygen --out app.key
    ///          cloister package ./app --out app.bundle --key-file app.key
    #[command(verbatim_doc_comment)]
    Package(package::PackageArgs),
    /// Print the measurement a policy pins for this executable running a bundle.
    ///
    /// SHA-384 over this executable's SHA-256 and the bundle's plaintext digest (read from the
    /// bundle's header: no key needed). Pin it in the service's `attestation[].measurements`.
    ///
    /// Example: cloister measure --bundle app.bundle
    #[command(verbatim_doc_comment)]
    Measure(package::MeasureArgs),
    /// Run an attested workload: measure, attest to the CAS, receive the configuration, run a role.
    ///
    /// Measures this executable and the bundle, makes a fresh key, gets evidence binding it
    /// (from --las, from --sim-key for development, or from this machine's TEE), attests to the
    /// CAS, keeps the configuration in memory (injected files in a private directory on
    /// /dev/shm, removed at exit), opens the bundle with the key the configuration holds, and
    /// runs the role: `job BUNDLE` runs the bundle's top-level *.sql files on the engine, with
    /// data keys (CLOISTER_KEY_<ID>), store, SQL variables (CLOISTER_APP_VARS), memory limit
    /// (CLOISTER_MEMORY_LIMIT) and output policy from the policy's env only, and prints the
    /// result tables and the committed outputs. A refusal, a tampered bundle, a wrong bundle or
    /// data key or a bundle the policy does not pin stops it with exit code 1 and a message
    /// naming the cause; nothing is written.
    ///
    /// Example: cloister run --cas https://cas:8443 --cas-cert cas.crt --session demo/taxi \
    ///            --service job --las http://$HOST_IP:9480 -- job app.bundle
    #[command(verbatim_doc_comment)]
    Run(run::RunArgs),
    /// Benchmarks that report ratios against a peer measured in the same run.
    ///
    /// Runs `cloister-demo bench …` (see `cloister bench --help`).
    #[command(disable_help_flag = true)]
    Bench(forward::Args),
}

/// Exit code for a negative verdict: evidence refused, verification failed.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code for a usage or operational error.
pub const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    // `demo`, `bench` and `gen` are the `cloister-demo` binary's: hand the whole command line
    // over before parsing, so that its own flags and `--help` apply.
    if let Some(code) = forward::demo_command() {
        return code;
    }
    let cli = Cli::parse();
    let logs = match &cli.command {
        Command::Cas(cmd) => cmd.log_style(),
        Command::Las(cmd) => cmd.log_style(),
        _ => LogStyle::default(),
    };
    init_tracing(cli.verbose, logs);
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Demo(_) | Command::Gen(_) | Command::Bench(_) => Ok(forward::run()),
        Command::Evidence(cmd) => evidence::run(cmd),
        Command::Keys(cmd) => keys::run(cmd, quiet),
        Command::Policy(cmd) => policy::run(cmd, quiet),
        Command::Namespace(cmd) => namespace::run(cmd, quiet),
        Command::Audit(cmd) => audit::run(cmd, quiet),
        Command::Cas(cmd) => cas::run(cmd, quiet),
        Command::Las(cmd) => las::run(cmd),
        Command::Package(args) => package::run(args, quiet),
        Command::Measure(args) => package::measure(args),
        Command::Run(args) => run::run(args, quiet),
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

/// How a command logs: its level without `-v` or `RUST_LOG`, and whether as JSON lines.
pub struct LogStyle {
    /// The level with neither `-v` nor `RUST_LOG`.
    pub level: &'static str,
    /// One JSON object per line instead of text.
    pub json: bool,
}

impl Default for LogStyle {
    fn default() -> Self {
        Self {
            level: "warn",
            json: false,
        }
    }
}

fn init_tracing(verbose: u8, style: LogStyle) {
    let default = match verbose {
        0 => style.level,
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if style.json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// A closed stdout (`cloister … | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

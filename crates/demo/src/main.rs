//! `cloister-demo`: the demos, benchmarks and data generator, outside the measured workload.
//!
//! `cloister demo|bench|gen …` run this binary (it is looked up next to `cloister`, then on
//! `PATH`), so the documented commands are unchanged. Diagnostics are prefixed `cloister:` as
//! the rest of the CLI's; exit codes 0 ok, 1 a negative verdict, 2 a usage or operational error.

use clap::{Parser, Subcommand};
use cloister_demo::{EXIT_ERROR, bench, demo, generate};
use std::process::ExitCode;

/// Cloister's demos, benchmarks and synthetic data (run as `cloister demo|bench|gen …`).
///
/// Kept out of the `cloister` executable, the measured workload a policy pins: editing a demo
/// or a benchmark never changes a measurement a custodian pinned.
#[derive(Parser)]
#[command(
    name = "cloister-demo",
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
    /// Starts a CAS and a sim LAS on 127.0.0.1 (software TEE: development only), makes an
    /// owner key, packages two apps into encrypted bundles, signs and pushes a policy that pins
    /// their measurements and has the CAS generate the data keys, generates --rows trips
    /// encrypted column by column in an attested `ingest` workload, runs the five queries of
    /// examples/nyc-taxi attested and writes encrypted results, reads them back in a second
    /// attested app, prints the tables and ends with what the audit log says was released to
    /// whom. About ten seconds for the default 10M rows in a release build on 2 cores.
    /// `cloister demo evidence` is the TEE evidence demo.
    ///
    /// Examples: cloister demo
    ///           cloister demo --rows 1000000 --dir demo-run --json
    ///           cloister demo evidence
    #[command(verbatim_doc_comment)]
    Demo(demo::Args),
    /// Generate synthetic data sets (NYC-taxi-like trips), optionally encrypted.
    #[command(subcommand)]
    Gen(generate::Command),
    /// Benchmarks that report ratios against a peer measured in the same run.
    #[command(subcommand)]
    Bench(bench::Command),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo and the taxi bench say themselves that they run on the sim TEE; the runtime's
    // warnings about the sim LAS would repeat it for every workload.
    let quiet_logs = matches!(
        cli.command,
        Command::Demo(_) | Command::Bench(bench::Command::Taxi(_))
    );
    init_tracing(cli.verbose, if quiet_logs { "error" } else { "warn" });
    let quiet = cli.quiet;
    let result = match cli.command {
        Command::Demo(args) => demo::run(args, quiet),
        Command::Gen(cmd) => generate::run(cmd, quiet),
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

fn init_tracing(verbose: u8, level: &str) {
    let default = match verbose {
        0 => level,
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
}

/// A closed stdout (`cloister-demo … | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

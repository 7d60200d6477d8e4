//! `cloister demo`: the NYC-taxi demo (attested analytics over encrypted data, end to end on
//! one machine), and `cloister demo evidence`, the TEE evidence demo.
//!
//! [`cluster`] is the in-process deployment (CAS, sim LAS, owner key, attested jobs) the demos
//! and benchmarks build on. New demos add a [`DemoCommand`] variant and a module.

pub mod cluster;
mod evidence;
mod taxi;

use std::process::ExitCode;

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<DemoCommand>,
    #[command(flatten)]
    taxi: taxi::TaxiArgs,
}

/// The demos besides the default NYC-taxi one.
#[derive(clap::Subcommand)]
pub enum DemoCommand {
    /// Verify every bundled TEE evidence sample and print their claims.
    ///
    /// Verifies real recorded SGX DCAP, TDX, SEV-SNP and Azure Attestation evidence at a time
    /// inside each sample's validity window, shows that tampered copies are refused, and runs a
    /// `sim` TEE round trip that binds a nonce and a workload key into the evidence. Needs no
    /// files and no network.
    ///
    /// Example: cloister demo evidence --json
    Evidence(evidence::Args),
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(DemoCommand::Evidence(a)) => evidence::run(a, quiet),
        None => taxi::run(args.taxi, quiet),
    }
}

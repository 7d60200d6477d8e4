//! `cloister demo`: the NYC-taxi demo (attested analytics over encrypted data, end to end on
//! one machine), and `cloister demo evidence`, the TEE evidence demo.
//!
//! [`cluster`] is the in-process deployment (CAS, sim LAS, owner key, attested jobs) the demos
//! and benchmarks build on. New demos add a [`DemoCommand`] variant and a module.

pub mod cluster;
pub mod contoso;
mod evidence;
pub(crate) mod taxi;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// `cloister demo [evidence|contoso] …`.
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
    /// ContosoHR with Always Encrypted: load, attested statistics, key hand-over, refusals.
    ///
    /// Loads testdata/contosohr-employees.csv into SQLite (or PostgreSQL) with SSN and Salary
    /// encrypted under CEK1 (a CAS-generated key wrapped by CMK1); an attested app computes
    /// salary statistics over values decrypted inside the TEE and writes them encrypted; a
    /// second session reads them with CEK1 imported through the first session's export; a
    /// third, not exported to, is refused with the rule named.
    ///
    /// Example: cloister demo contoso --json
    #[command(verbatim_doc_comment)]
    Contoso(contoso::Args),
}

/// Run a demo.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(DemoCommand::Evidence(a)) => evidence::run(a, quiet),
        Some(DemoCommand::Contoso(a)) => contoso::run(a, quiet),
        None => taxi::run(args.taxi, quiet),
    }
}

/// The directory a demo works in: `--dir` (new or empty, kept afterwards) or a temporary one
/// named `prefix…` (removed when the returned guard drops).
pub(crate) fn work_dir(
    dir: Option<&Path>,
    prefix: &str,
) -> anyhow::Result<(Option<tempfile::TempDir>, PathBuf)> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            if std::fs::read_dir(dir)?.next().is_some() {
                bail!(
                    "{} is not empty: give a new or empty directory to --dir",
                    dir.display()
                );
            }
            Ok((None, dir.canonicalize()?))
        }
        None => {
            let tmp = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .context("cannot create a temporary directory")?;
            let path = tmp.path().canonicalize()?;
            Ok((Some(tmp), path))
        }
    }
}

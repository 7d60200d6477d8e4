//! `cloister gen …`: deterministic synthetic data sets.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_datagen::taxi;
use cloister_engine::datafusion::parquet::encryption::encrypt::FileEncryptionProperties;
use cloister_engine::{CloisterEncryptionFactory, EncryptionOptions, InMemoryKeyProvider};
use cloister_roles::output;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use zeroize::{Zeroize as _, Zeroizing};

/// `cloister gen …`.
#[derive(Subcommand)]
pub enum Command {
    /// Generate NYC-taxi-like trips in the official TLC yellow-taxi schema.
    ///
    /// Deterministic (the same --seed gives byte-identical plaintext files on any number of
    /// threads), with realistic shapes: skewed pickup zones, daily and weekly seasonality,
    /// fares correlated with distance, tips mostly on card payments. The trips go to
    /// DIR/trips/, the 265-zone lookup table to DIR/zones/ (its borough sizes and special
    /// zones are real; the other zone names are made up): one table per directory.
    ///
    /// With --keys the files are Parquet-encrypted in the key-management-tools format Spark,
    /// parquet-mr and pyarrow use: each column's data key is wrapped under the named master
    /// key from the keys file (a JSON object of key id → 32-byte hex key, mode 0600), so
    /// whoever holds the master keys (a policy) can read them, and no one else.
    ///
    /// Examples:
    ///   cloister gen taxi --rows 10000000 --out data/
    ///   cloister gen taxi --rows 1000000 --out enc/ --keys keys.json \
    ///       --footer-key footer --column-key 'fare:fare_amount,tip_amount,total_amount'
    #[command(verbatim_doc_comment)]
    Taxi(TaxiArgs),
}

/// `cloister gen taxi …`.
#[derive(Args)]
pub struct TaxiArgs {
    /// How many trips.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// The output directory (created if missing; must not hold an earlier run): the trips go
    /// to DIR/trips/, the zone lookup to DIR/zones/.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// How many Parquet files (default: one per 4M rows).
    #[arg(long)]
    files: Option<u32>,
    /// The random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// The first day of trips (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", default_value = "2025-01-01")]
    start_date: String,
    /// Remove an earlier run's files from --out first.
    #[arg(long)]
    force: bool,
    /// Encrypt: a JSON file of master key id → hex key (never give keys as arguments).
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
    /// The master key id that protects the footer (with --keys).
    #[arg(long, value_name = "ID", requires = "keys")]
    footer_key: Option<String>,
    /// A master key id and the columns it protects, `ID:col,col` (repeatable; with --keys).
    #[arg(long, value_name = "ID:COLUMNS", requires = "keys")]
    column_key: Vec<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Generate a data set.
pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Taxi(args) => taxi(args, quiet),
    }
}

fn taxi(args: TaxiArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut spec = taxi::TaxiSpec::new(args.rows);
    spec.seed = args.seed;
    spec.start_date = taxi::parse_date(&args.start_date)?;
    if let Some(files) = args.files {
        spec.files = files;
    }
    let encryption = match &args.keys {
        None => None,
        Some(path) => Some(encryption(
            path,
            args.footer_key.as_deref(),
            &args.column_key,
        )?),
    };
    if args.force && args.out.exists() {
        taxi::clean(&args.out)?;
    }
    let bar = crate::progress::rows_bar(args.rows, !quiet && !args.json);
    let summary = taxi::gen_taxi(&spec, &args.out, encryption, &|n| bar.inc(n))?;
    bar.finish_and_clear();
    if args.json {
        output::json(&serde_json::json!({
            "rows": summary.rows,
            "files": summary.files.len(),
            "encrypted": args.keys.is_some(),
            "seconds": summary.elapsed.as_secs_f64(),
            "rows_per_sec": summary.rows_per_sec(),
            "out": args.out,
            "trips": args.out.join(taxi::TRIPS_DIR),
            "zones": args.out.join(taxi::ZONES_DIR),
        }))?;
    } else {
        eprintln!(
            "cloister: wrote {} trips in {} files to {} and the zone lookup to {} ({:.0} rows/s{})",
            summary.rows,
            summary.files.len(),
            args.out.join(taxi::TRIPS_DIR).display(),
            args.out.join(taxi::ZONES_DIR).display(),
            summary.rows_per_sec(),
            if args.keys.is_some() {
                ", encrypted"
            } else {
                ""
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Encryption properties from a keys file and the footer / column key ids.
fn encryption(
    keys_file: &Path,
    footer_key: Option<&str>,
    column_keys: &[String],
) -> anyhow::Result<Arc<FileEncryptionProperties>> {
    let Some(footer) = footer_key else {
        bail!("--keys needs --footer-key: the master key id that protects the footer");
    };
    let provider = load_keys(keys_file)?;
    let mut options = EncryptionOptions::new(footer).kmt();
    for spec in column_keys {
        let Some((id, columns)) = spec.split_once(':') else {
            bail!("--column-key {spec:?}: expected ID:col,col");
        };
        let columns: Vec<&str> = columns.split(',').map(str::trim).collect();
        options = options.column_key(id, &columns);
    }
    let factory = CloisterEncryptionFactory::new(Arc::new(provider));
    Ok(factory.encryption_properties(&options, &taxi::schema())?)
}

/// A keys file: `{"key id": "64 hex digits", …}`; refused when others can read it.
pub fn load_keys(path: &Path) -> anyhow::Result<InMemoryKeyProvider> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("cannot read {}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            bail!(
                "keys file {} has mode {:04o}: it must not be readable by others (chmod 600 it)",
                path.display(),
                mode & 0o7777
            );
        }
    }
    let text = Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?,
    );
    let mut map: BTreeMap<String, String> = serde_json::from_str(&text).map_err(|_| {
        anyhow::anyhow!(
            "keys file {}: expected a JSON object of key id → hex key",
            path.display()
        )
    })?;
    let provider = InMemoryKeyProvider::new();
    let result = map.iter().try_for_each(|(id, hex_key)| {
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| anyhow::anyhow!("keys file {}: key {id:?} is not hex", path.display()))?;
        provider.insert(id.clone(), bytes)?;
        Ok::<_, anyhow::Error>(())
    });
    map.values_mut().for_each(|v| v.zeroize());
    result.map(|()| provider)
}

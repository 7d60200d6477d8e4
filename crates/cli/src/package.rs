//! `cloister package …` and `cloister measure`: encrypt an app into a bundle, make bundle keys,
//! and print the measurement a policy pins.
//!
//! Bundle keys are read from files (never from the command line). The packager holds the key
//! before the CAS does: the policy imports the same key file (`kind: import, from: {file: …}`,
//! from a directory the CAS's `--imports` rules allow its namespace) and hands it to the
//! workload as `CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$`.

use crate::output;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_runtime::bundle::{self, BundleKey, Header};
use cloister_runtime::{ExeDigest, Measurement};
use serde::Serialize;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The largest key file read.
const MAX_KEY_FILE: u64 = 4096;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PackageArgs {
    #[command(subcommand)]
    command: Option<PackageCommand>,
    /// The app directory: every regular file under it goes into the bundle.
    #[arg(value_name = "APP_DIR", required = true)]
    app_dir: Option<PathBuf>,
    /// Where to write the bundle (replaced if it exists).
    #[arg(long, value_name = "BUNDLE", required = true)]
    out: Option<PathBuf>,
    /// The bundle key: 64 hex digits (as `package keygen` writes it), base64, or 32 raw bytes.
    #[arg(long, value_name = "KEYFILE", required = true)]
    key_file: Option<PathBuf>,
    /// The key's name, recorded in the bundle for messages (the policy's secret name).
    #[arg(long, value_name = "ID", default_value = bundle::DEFAULT_KEY_ID)]
    key_id: String,
    /// Print JSON: {"bundle", "key_id", "files", "digest", "measurement"}.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum PackageCommand {
    /// Make a bundle key: 32 random bytes as 64 hex digits, in a new 0600 file.
    ///
    /// An existing file is never overwritten. The policy imports the same file:
    ///
    ///   secrets:
    ///     - name: bundle_key
    ///       kind: import
    ///       from: {file: /etc/cloister/keys/app.key}
    ///
    /// (the CAS reads it only where its --imports rules let the policy's namespace read
    /// /etc/cloister/keys).
    ///
    /// Example: cloister package keygen --out app.key
    #[command(verbatim_doc_comment)]
    Keygen(KeygenArgs),
}

#[derive(Args)]
struct KeygenArgs {
    /// Where to write the key.
    #[arg(long, value_name = "KEYFILE")]
    out: PathBuf,
}

#[derive(Args)]
pub struct MeasureArgs {
    /// The app bundle (its digest is read from its header; no key needed). Without it, the
    /// measurement of a workload that runs no bundle.
    #[arg(long, value_name = "BUNDLE")]
    bundle: Option<PathBuf>,
    /// The `cloister` executable the workload runs (default: this one).
    #[arg(long, value_name = "FILE")]
    exe: Option<PathBuf>,
    /// Print JSON: {"measurement", "exe", "exe_sha256", "bundle", "bundle_digest", "key_id"}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: PackageArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if let Some(PackageCommand::Keygen(k)) = args.command {
        return keygen(&k.out, quiet);
    }
    let (Some(app_dir), Some(out), Some(key_file)) = (args.app_dir, args.out, args.key_file) else {
        bail!("APP_DIR, --out and --key-file are required");
    };
    let key = read_key(&key_file)?;
    let files = bundle::read_app_dir(&app_dir)?;
    let archive = bundle::archive(&files)?;
    let sealed = bundle::seal(&archive, &key, &args.key_id)?;
    let digest = Header::parse(&sealed)?.digest;
    write_replacing(&out, &sealed)?;
    let measurement = Measurement::of_running_exe(Some(&digest))?;
    if !quiet {
        eprintln!(
            "cloister: wrote {} ({} files, {} bytes)",
            out.display(),
            files.len(),
            sealed.len()
        );
    }
    let report = PackageReport {
        bundle: out,
        key_id: args.key_id,
        files: files.keys().cloned().collect(),
        digest: digest.to_string(),
        measurement: measurement.to_string(),
    };
    if args.json {
        output::json(&report)?;
    } else {
        let mut t = output::table(&["field", "value"]);
        t.add_row(vec!["bundle".into(), report.bundle.display().to_string()]);
        t.add_row(vec!["key_id".into(), report.key_id.clone()]);
        t.add_row(vec!["files".into(), report.files.join("\n")]);
        t.add_row(vec!["digest".into(), report.digest.clone()]);
        t.add_row(vec![
            "measurement (this executable)".into(),
            report.measurement.clone(),
        ]);
        output::print_table(&t)?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct PackageReport {
    bundle: PathBuf,
    key_id: String,
    files: Vec<String>,
    /// SHA-256 of the plaintext archive, hex.
    digest: String,
    /// The measurement with this executable, hex.
    measurement: String,
}

pub fn measure(args: MeasureArgs) -> anyhow::Result<ExitCode> {
    let header = match &args.bundle {
        Some(path) => {
            let bytes = read_bundle_head(path)?;
            Some(Header::parse(&bytes).with_context(|| format!("{}", path.display()))?)
        }
        None => None,
    };
    let exe = match &args.exe {
        Some(path) => ExeDigest::of_file(path)?,
        None => ExeDigest::of_running_exe()?,
    };
    let measurement = Measurement::compute(&exe, header.as_ref().map(|h| &h.digest));
    if args.json {
        output::json(&MeasureReport {
            measurement: measurement.to_string(),
            exe: args.exe,
            exe_sha256: exe.to_string(),
            bundle: args.bundle,
            bundle_digest: header.as_ref().map(|h| h.digest.to_string()),
            key_id: header.map(|h| h.key_id),
        })?;
    } else {
        writeln!(std::io::stdout().lock(), "{measurement}")?;
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct MeasureReport {
    measurement: String,
    /// The executable measured; `null`: this one.
    exe: Option<PathBuf>,
    exe_sha256: String,
    bundle: Option<PathBuf>,
    bundle_digest: Option<String>,
    key_id: Option<String>,
}

/// The first bytes of a bundle: enough for any header.
fn read_bundle_head(path: &Path) -> anyhow::Result<Vec<u8>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    // The longest header is 8 + 2 + 64 + 32 + 16 + 12 bytes; the tag must follow it.
    file.take(1024)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

fn keygen(out: &Path, quiet: bool) -> anyhow::Result<ExitCode> {
    let key = BundleKey::generate()?;
    let mut text = zeroize::Zeroizing::new(key.to_hex().to_string());
    text.push('\n');
    let mut file = cloister_attest::private_fs::create_new(out).with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            out.display()
        )
    })?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", out.display()))?;
    if !quiet {
        eprintln!(
            "cloister: wrote {} (private, 0600); the policy imports it as a secret and sets \
             CLOISTER_BUNDLE_KEY: $$cloister:<secret name>$$",
            out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A bundle key from a file, warning when others can read it.
fn read_key(path: &Path) -> anyhow::Result<BundleKey> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    #[cfg(unix)]
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "cloister: warning: {} is readable by other users (mode {:04o}); chmod 600 it",
                path.display(),
                mode & 0o7777
            );
        }
    }
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(BundleKey::parse(&bytes, &path.display().to_string())?)
}

/// Write `bytes` to `path` through a temporary file beside it, so that a reader never sees a
/// half-written bundle.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = std::fs::File::create(&partial).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&partial, path)) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

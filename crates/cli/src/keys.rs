//! `cloister keys …`: owner signing keys (Ed25519) for policies, and Always Encrypted column
//! encryption keys (`keys cek`).
//!
//! A policy names its owners by public key; each owner keeps the private half in a PKCS#8 PEM
//! file (mode 0600) and signs policy versions with it (`cloister policy sign`). Private keys are
//! read from files or stdin, never from the command line.

mod cek;

use crate::output;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_policy::{KeyFingerprint, OwnerKey, PublicKey};
use serde::Serialize;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zeroize::Zeroizing;

#[derive(Subcommand)]
pub enum Command {
    /// Generate an owner key pair: private key to --out (0600), public key to `<out>.pub`.
    ///
    /// The private key is an Ed25519 key in PKCS#8 PEM, created with mode 0600; an existing file
    /// is never overwritten. The public key (SubjectPublicKeyInfo PEM) goes to `<out>.pub`.
    /// Prints the key's fingerprint (SHA-256 of the SPKI DER, the name signatures carry), the
    /// public key as a policy's `access.owners[].key` takes it, and a ready owner entry.
    ///
    /// Example: cloister keys gen --out alice.pem --name alice
    #[command(verbatim_doc_comment)]
    Gen(GenArgs),
    /// Show a key's fingerprint and public key; FILE is a private or a public key.
    ///
    /// Takes an owner private key (PKCS#8 PEM, as `keys gen` writes it; `-` reads it from stdin)
    /// or a public key (SPKI PEM or base64 DER). Warns when a private key file is readable by
    /// other users.
    ///
    /// Example: cloister keys show alice.pem.pub --json
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
    /// Always Encrypted column encryption keys: create, wrap, rotate (re-encrypting columns), show.
    #[command(subcommand)]
    Cek(cek::Command),
}

#[derive(Args)]
pub struct GenArgs {
    /// Where to write the private key; the public key goes to `<FILE>.pub`.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The owner's name for the printed policy entry (default: the file name without extension).
    #[arg(long)]
    name: Option<String>,
    /// Print JSON: {"name", "fingerprint", "public_key", "public_key_pem", "private_key_file",
    /// "public_key_file"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The key file (`-`: a private key on stdin).
    file: PathBuf,
    /// Print JSON: {"private", "fingerprint", "public_key", "public_key_pem"}.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Gen(args) => gen_key(args, quiet),
        Command::Show(args) => show(args),
        Command::Cek(cmd) => cek::run(cmd),
    }
}

#[derive(Serialize)]
struct GenReport {
    name: String,
    fingerprint: KeyFingerprint,
    /// Base64 of the SPKI DER: what `access.owners[].key` takes.
    public_key: String,
    public_key_pem: String,
    private_key_file: PathBuf,
    public_key_file: PathBuf,
}

fn gen_key(args: GenArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let pub_path = crate::evidence::pub_path(&args.out);
    for path in [&args.out, &pub_path] {
        if path.exists() {
            bail!("{} exists; refusing to overwrite a key", path.display());
        }
    }
    let key = OwnerKey::generate()?;
    let pem = key.to_pkcs8_pem()?;
    write_private(&args.out, pem.as_bytes())?;
    let public = key.public_key();
    let public_pem = public.to_pem()?;
    write_new(&pub_path, public_pem.as_bytes())?;
    let name = args.name.unwrap_or_else(|| default_name(&args.out));
    let report = GenReport {
        name,
        fingerprint: key.fingerprint(),
        public_key: spki_base64(&public_pem),
        public_key_pem: public_pem,
        private_key_file: args.out,
        public_key_file: pub_path,
    };
    if args.json {
        output::json(&report)?;
    } else {
        let mut t = output::table(&["field", "value"]);
        t.add_row(vec![
            "fingerprint".to_string(),
            report.fingerprint.to_string(),
        ]);
        t.add_row(vec!["public_key".to_string(), report.public_key.clone()]);
        t.add_row(vec![
            "owner_entry".to_string(),
            owner_entry(&report.name, &report.public_key),
        ]);
        output::print_table(&t)?;
    }
    if !quiet && !args.json {
        eprintln!(
            "cloister: wrote {} (private, 0600) and {}",
            report.private_key_file.display(),
            report.public_key_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct ShowReport {
    private: bool,
    fingerprint: KeyFingerprint,
    public_key: String,
    public_key_pem: String,
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let text = read_secret_text(&args.file)?;
    let (private, public) = if text.contains("PRIVATE KEY") {
        warn_if_readable(&args.file);
        let key = OwnerKey::from_pkcs8_pem(&text)
            .with_context(|| format!("{}: not an owner key", args.file.display()))?;
        (true, key.public_key().clone())
    } else {
        let key = PublicKey::parse(&text)
            .with_context(|| format!("{}: not an owner key", args.file.display()))?;
        (false, key)
    };
    let public_pem = public.to_pem()?;
    let report = ShowReport {
        private,
        fingerprint: public.fingerprint(),
        public_key: spki_base64(&public_pem),
        public_key_pem: public_pem,
    };
    if args.json {
        output::json(&report)?;
    } else {
        let mut t = output::table(&["field", "value"]);
        t.add_row(vec![
            "fingerprint".to_string(),
            report.fingerprint.to_string(),
        ]);
        t.add_row(vec!["public_key".to_string(), report.public_key.clone()]);
        output::print_table(&t)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Load an owner's private key from a PKCS#8 PEM file, or stdin for `-`.
pub fn load_owner_key(path: &Path) -> anyhow::Result<OwnerKey> {
    let text = read_secret_text(path)?;
    warn_if_readable(path);
    OwnerKey::from_pkcs8_pem(&text)
        .with_context(|| format!("{}: not an owner private key", path.display()))
}

/// A file's text (stdin for `-`) in memory that is wiped on drop: it may hold a private key.
pub(crate) fn read_secret_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    let mut text = Zeroizing::new(String::new());
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read stdin")?;
    } else {
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(text)
}

/// A private key readable by group or others deserves a warning (not a refusal: the file may
/// sit on a volume without Unix permissions).
fn warn_if_readable(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if path == Path::new("-") {
            return;
        }
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                eprintln!(
                    "cloister: warning: {} is readable by other users (mode {:04o}); chmod 600 it",
                    path.display(),
                    mode & 0o7777
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Create `path` (never overwriting) with mode 0600 and write `bytes`, durably.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file = cloister_attest::private_fs::create_new(path);
    write_to(file, path, bytes)
}

/// Create `path` (never overwriting) and write `bytes`, durably.
fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path);
    write_to(file, path, bytes)
}

fn write_to(file: std::io::Result<std::fs::File>, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = file.with_context(|| {
        format!(
            "cannot create {} (an existing key is never overwritten)",
            path.display()
        )
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The base64 body of an SPKI PEM: the DER as a policy's `key:` takes it.
fn spki_base64(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// `alice.pem` → `alice`.
fn default_name(out: &Path) -> String {
    out.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "owner".to_string())
}

/// A one-line YAML list item for `access.owners`.
fn owner_entry(name: &str, key: &str) -> String {
    // Quote the name as JSON (valid YAML) unless it is a plain word.
    let plain = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let name = if plain {
        name.to_string()
    } else {
        serde_json::Value::from(name).to_string()
    };
    format!("- {{name: {name}, key: {key}}}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_entry_is_one_yaml_item() {
        assert_eq!(
            owner_entry("alice", "MCow+/="),
            "- {name: alice, key: MCow+/=}"
        );
        assert_eq!(
            owner_entry("Alice Smith: ops", "K"),
            "- {name: \"Alice Smith: ops\", key: K}"
        );
    }

    #[test]
    fn default_name_is_the_file_stem() {
        assert_eq!(default_name(Path::new("keys/alice.pem")), "alice");
    }
}

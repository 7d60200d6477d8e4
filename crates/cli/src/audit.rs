//! `cloister audit …`: verify and read the CAS audit log, offline from its data directory
//! (`--data`) or through the API of a running CAS (`--cas`).
//!
//! Through the API the log is fetched (`/v1/audit/head`, `/v1/audit/entries`) and verified
//! here, exactly as the offline check verifies the files: the entries are canonical JSON, so
//! their lines are the file's lines. The CAS's own check of its files (`/v1/audit/verify`) is
//! asked too, and a failure there fails the command.

use crate::{EXIT_ERROR, output};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_cas::MasterKey;
use cloister_cas::audit::{self, AuditError, AuditPublicKey, AuditSigner, Entry};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Command {
    /// Verify the CAS audit log: every entry's hash, signature and chain link, and the signed head.
    ///
    /// Reads `audit.log` and `audit.head` in the CAS data directory (read-only; safe while the
    /// CAS runs) and checks them against the log's public key. Pin that key from outside the data
    /// directory: --public-key (the hex the CAS API serves, or a file holding it), or --master-key
    /// to derive it from the CAS master key. Without either, `DIR/audit.pub` is used with a
    /// warning: a key read from the same directory as the log proves nothing against someone who
    /// can rewrite that directory.
    ///
    /// Exit codes (each failure has its own):
    ///    0  the log verifies
    ///   10  modified: an entry's bytes, hash, signature or chain link do not verify
    ///   11  removed: a gap in the sequence numbers; entries were deleted
    ///   12  reordered: sequence numbers go backwards or repeat, or an entry links out of order
    ///   13  truncated: the signed head covers more entries than the log holds
    ///   14  head: the signed head is missing, malformed or not signed by the key
    ///    2  the files or the key could not be read (an operational error, not a verdict)
    ///
    /// A partial last line or entries beyond the head (a crash mid-append) are not failures; the
    /// summary reports them and the CAS repairs them when it next opens the log. The head is a
    /// local checkpoint: rolling back log and head together is detected only by comparing the
    /// head with one published earlier.
    ///
    /// With --cas instead of --data, the log and its signed head are fetched from a running CAS
    /// (pinned with --cas-cert) and verified here the same way; the key is the one the CAS
    /// serves unless pinned with --public-key or --master-key. The CAS's own check of its files
    /// must pass too (it fails with that check's exit code).
    ///
    /// Examples:
    ///   cloister audit verify --data /var/lib/cloister-cas --public-key 02ab…
    ///   cloister audit verify --data ./cas-data --master-key /etc/cloister/master.key --json
    ///   cloister audit verify --cas https://cas:8443 --cas-cert cas.crt --public-key 02ab…
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Print the last entries of the CAS audit log (not verified: run `audit verify` for that).
    ///
    /// A table of seq, time, kind, session (with version), service, principal (a key digest,
    /// shortened), released items and reasons; --json prints the entries exactly as stored.
    ///
    /// Examples:
    ///   cloister audit tail --data /var/lib/cloister-cas -n 50
    ///   cloister audit tail --cas https://cas:8443 --cas-cert cas.crt --json
    #[command(verbatim_doc_comment)]
    Tail(TailArgs),
}

/// Where the log is: a data directory, or a running CAS.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct Source {
    /// The CAS data directory (holding audit.log and audit.head), read offline.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A running CAS's URL: fetch the log through its API (with --cas-cert).
    #[arg(long, value_name = "URL", requires = "cas_cert")]
    cas: Option<String>,
}

/// The pinned certificate of --cas.
#[derive(Args)]
pub struct CasCert {
    /// The CAS's TLS certificate to pin (PEM; `cas serve` writes it to DIR/cas.crt).
    #[arg(long, value_name = "FILE", requires = "cas")]
    cas_cert: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    cert: CasCert,
    /// The log's public key: SEC1 P-256 point in hex, or a file holding it.
    #[arg(long, value_name = "FILE|HEX", conflicts_with = "master_key")]
    public_key: Option<String>,
    /// Derive the public key from the CAS master key in FILE (32 bytes or 64 hex digits).
    #[arg(long, value_name = "FILE")]
    master_key: Option<PathBuf>,
    /// Print JSON: {"verified": true, "entries", "head_seq", "last_hash", "beyond_head",
    /// "torn_tail_bytes", "public_key"} or {"verified": false, "error": {"code", "exit_code",
    /// "message"}}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct TailArgs {
    #[command(flatten)]
    source: Source,
    #[command(flatten)]
    cert: CasCert,
    /// How many entries.
    #[arg(short = 'n', long, default_value_t = 20)]
    lines: usize,
    /// Print a JSON array of the entries as stored.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Verify(args) => verify(args, quiet),
        Command::Tail(args) => tail(args),
    }
}

#[derive(Serialize)]
struct VerifyReport {
    verified: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    summary: Option<SummaryReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorReport>,
}

#[derive(Serialize)]
struct SummaryReport {
    entries: u64,
    head_seq: u64,
    last_hash: String,
    beyond_head: u64,
    torn_tail_bytes: u64,
    public_key: String,
}

#[derive(Serialize)]
struct ErrorReport {
    code: &'static str,
    exit_code: i32,
    message: String,
}

/// The stable name of a verification failure.
fn code(e: &AuditError) -> &'static str {
    match e {
        AuditError::Modified { .. } => "modified",
        AuditError::Removed { .. } => "removed",
        AuditError::Reordered { .. } => "reordered",
        AuditError::Truncated { .. } => "truncated",
        AuditError::Head { .. } => "head",
        AuditError::Io { .. } => "io",
        _ => "other",
    }
}

fn verify(args: VerifyArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let (key, result) = match (&args.source.data, &args.source.cas) {
        (Some(data), _) => {
            let key = public_key(&args, Some(data))?;
            let result = audit::verify(data, &key);
            (key, result)
        }
        (None, Some(url)) => match verify_remote(&args, url)? {
            Remote::Checked(key, result) => (key, result),
            Remote::CasCheckFailed { message, exit_code } => {
                let exit = u8::try_from(exit_code).unwrap_or(EXIT_ERROR);
                if args.json {
                    output::json(&VerifyReport {
                        verified: false,
                        summary: None,
                        error: Some(ErrorReport {
                            code: "cas-check",
                            exit_code,
                            message: message.clone(),
                        }),
                    })?;
                }
                eprintln!("cloister: the CAS's own check of its audit log failed: {message}");
                return Ok(ExitCode::from(exit));
            }
        },
        (None, None) => bail!("--data or --cas says where the log is"),
    };
    report(result, &key, args.json, quiet)
}

/// What verifying through the API found.
enum Remote {
    /// The fetched log, checked here against `key`.
    Checked(AuditPublicKey, Result<audit::Summary, AuditError>),
    /// The fetched log verifies, but the CAS's check of its files does not.
    CasCheckFailed { message: String, exit_code: i32 },
}

/// The signed head as `audit.head` holds it (fields in this order).
#[derive(Serialize)]
struct HeadLine<'a> {
    seq: u64,
    hash: &'a str,
    signature: &'a str,
}

/// Fetches the head and every entry, rebuilds `audit.head` and `audit.log` from them (entries
/// are canonical JSON), and verifies those bytes.
fn verify_remote(args: &VerifyArgs, url: &str) -> anyhow::Result<Remote> {
    let cert = args
        .cert
        .cas_cert
        .as_deref()
        .context("--cas needs --cas-cert")?;
    let client = crate::remote::client(url, cert)?;
    let (head, entries, cas_check) = crate::remote::block_on(async {
        // The head first: entries appended after it are "beyond the head", which verifies.
        let head = client.audit_head().await?;
        let entries = fetch_entries(&client, 0).await?;
        let cas_check = client.audit_verify().await?;
        anyhow::Ok((head, entries, cas_check))
    })??;
    let key = match (&args.public_key, &args.master_key) {
        (None, None) => AuditPublicKey::from_hex(&head.public_key)
            .context("the CAS served an audit public key that is not a P-256 point")?,
        _ => public_key(args, None)?,
    };
    let mut log = Vec::new();
    for entry in &entries {
        log.extend_from_slice(serde_json::to_string(entry)?.as_bytes());
        log.push(b'\n');
    }
    let mut head_line = serde_json::to_string(&HeadLine {
        seq: head.seq,
        hash: &head.hash,
        signature: &head.signature,
    })?;
    head_line.push('\n');
    let result = audit::verify_bytes(&log, head_line.as_bytes(), &key);
    if result.is_ok() && !cas_check.ok {
        return Ok(Remote::CasCheckFailed {
            message: cas_check
                .failure
                .unwrap_or_else(|| "no reason given".to_owned()),
            exit_code: cas_check.exit_code.unwrap_or(i32::from(EXIT_ERROR)),
        });
    }
    Ok(Remote::Checked(key, result))
}

/// Every entry after `after`, page by page.
async fn fetch_entries(
    client: &cloister_cas::client::CasClient,
    mut after: u64,
) -> anyhow::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    loop {
        let page = client.audit_entries(after, None).await?;
        let Some(last) = page.entries.last().map(|e| e.seq) else {
            break;
        };
        if last <= after {
            bail!("the CAS answered entries out of order (after {after}, up to {last})");
        }
        after = last;
        entries.extend(page.entries);
        if !page.more {
            break;
        }
    }
    Ok(entries)
}

/// Prints the verdict; exit 0, or the failure's own exit code.
fn report(
    result: Result<audit::Summary, AuditError>,
    key: &AuditPublicKey,
    json: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(s) => {
            let report = SummaryReport {
                entries: s.entries,
                head_seq: s.head_seq,
                last_hash: s.last_hash,
                beyond_head: s.beyond_head,
                torn_tail_bytes: s.torn_tail_bytes,
                public_key: key.to_hex(),
            };
            if json {
                output::json(&VerifyReport {
                    verified: true,
                    summary: Some(report),
                    error: None,
                })?;
            } else {
                let mut t = output::table(&["field", "value"]);
                t.add_row(vec!["entries".to_string(), report.entries.to_string()]);
                t.add_row(vec!["head_seq".to_string(), report.head_seq.to_string()]);
                t.add_row(vec!["last_hash".to_string(), report.last_hash.clone()]);
                t.add_row(vec!["public_key".to_string(), report.public_key.clone()]);
                output::print_table(&t)?;
                if report.beyond_head > 0 {
                    eprintln!(
                        "cloister: note: {} entr{} after the signed head (written, not \
                         acknowledged before a crash)",
                        report.beyond_head,
                        if report.beyond_head == 1 { "y" } else { "ies" }
                    );
                }
                if report.torn_tail_bytes > 0 {
                    eprintln!(
                        "cloister: note: a partial last line of {} bytes (a write interrupted by \
                         a crash; the CAS cuts it off when it opens the log)",
                        report.torn_tail_bytes
                    );
                }
                if !quiet {
                    eprintln!("cloister: audit log verified: {} entries", report.entries);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ AuditError::Io { .. }) => Err(e.into()),
        Err(e) => {
            let exit = u8::try_from(e.exit_code()).unwrap_or(EXIT_ERROR);
            if json {
                output::json(&VerifyReport {
                    verified: false,
                    summary: None,
                    error: Some(ErrorReport {
                        code: code(&e),
                        exit_code: e.exit_code(),
                        message: e.to_string(),
                    }),
                })?;
            }
            eprintln!("cloister: audit log failed verification: {e}");
            Ok(ExitCode::from(exit))
        }
    }
}

/// The key to verify with: given, derived from the master key, or (with a warning) the copy in
/// the data directory `data`.
fn public_key(args: &VerifyArgs, data: Option<&Path>) -> anyhow::Result<AuditPublicKey> {
    if let Some(given) = &args.public_key {
        let looks_hex = !given.is_empty() && given.chars().all(|c| c.is_ascii_hexdigit());
        if looks_hex && !Path::new(given).exists() {
            return AuditPublicKey::from_hex(given)
                .with_context(|| "--public-key is not a P-256 public key in hex".to_string());
        }
        let text = std::fs::read_to_string(given)
            .with_context(|| format!("cannot read the public key file {given}"))?;
        return AuditPublicKey::from_hex(&text)
            .with_context(|| format!("{given}: not a P-256 public key in hex"));
    }
    if let Some(path) = &args.master_key {
        let master = MasterKey::from_file(path)?;
        return Ok(AuditSigner::from_master_key(&master)?.public_key());
    }
    let data = data.context("--public-key or --master-key pins the key")?;
    let path = data.join(audit::PUBLIC_KEY_FILE);
    eprintln!(
        "cloister: warning: using the public key in {}, next to the log: whoever can rewrite the \
         log can rewrite it too. Pin the key with --public-key or --master-key.",
        path.display()
    );
    Ok(audit::read_public_key(data)?)
}

fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let entries = match (&args.source.data, &args.source.cas) {
        (Some(data), _) => tail_file(data, args.lines)?,
        (None, Some(url)) => {
            let cert = args
                .cert
                .cas_cert
                .as_deref()
                .context("--cas needs --cas-cert")?;
            let client = crate::remote::client(url, cert)?;
            let lines = args.lines;
            crate::remote::block_on(async move {
                let head = client.audit_head().await?;
                let mut entries =
                    fetch_entries(&client, head.seq.saturating_sub(lines as u64)).await?;
                let first = entries.len().saturating_sub(lines);
                entries.drain(..first);
                anyhow::Ok(entries)
            })??
        }
        (None, None) => bail!("--data or --cas says where the log is"),
    };
    if args.json {
        output::json(&entries)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut t = output::table(&[
        "seq",
        "time",
        "kind",
        "session",
        "service",
        "principal",
        "released",
        "reasons",
    ]);
    for e in &entries {
        let session = match (&e.session, e.version) {
            (Some(s), Some(v)) => format!("{s} v{v}"),
            (Some(s), None) => s.clone(),
            (None, Some(v)) => format!("v{v}"),
            (None, None) => String::new(),
        };
        t.add_row(vec![
            e.seq.to_string(),
            e.time.clone(),
            e.kind.clone(),
            session,
            e.service.clone().unwrap_or_default(),
            e.principal.as_deref().map(shorten).unwrap_or_default(),
            e.released.join(", "),
            e.reasons.join("; "),
        ]);
    }
    output::print_table(&t)?;
    Ok(ExitCode::SUCCESS)
}

/// The last `lines` complete entries of `DIR/audit.log`.
fn tail_file(data: &Path, lines: usize) -> anyhow::Result<Vec<Entry>> {
    let path = data.join(audit::LOG_FILE);
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no audit log in {} ({} is missing)",
                data.display(),
                path.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    // Only complete lines: a partial last line is a write still (or never) in progress.
    let complete = text
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(&text[..0], |i| &text[..=i]);
    let all: Vec<&[u8]> = complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let first = all.len().saturating_sub(lines);
    all[first..]
        .iter()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_slice::<Entry>(line).with_context(|| {
                format!(
                    "{} line {} is not an audit entry (run `cloister audit verify`)",
                    path.display(),
                    first + i + 1
                )
            })
        })
        .collect()
}

/// A 64-digit key digest shortened to 12 digits for the table; names are shown whole.
fn shorten(principal: &str) -> String {
    if principal.len() == 64 && principal.chars().all(|c| c.is_ascii_hexdigit()) {
        format!("{}…", &principal[..12])
    } else {
        principal.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_that_are_digests_are_shortened() {
        assert_eq!(shorten(&"ab".repeat(32)), "abababababab…");
        assert_eq!(shorten("cas-admin"), "cas-admin");
    }
}

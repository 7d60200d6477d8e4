//! `cloister audit …`: verify and read the CAS audit log offline, from its data directory.

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
    /// Examples:
    ///   cloister audit verify --data /var/lib/cloister-cas --public-key 02ab…
    ///   cloister audit verify --data ./cas-data --master-key /etc/cloister/master.key --json
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Print the last entries of the CAS audit log (not verified: run `audit verify` for that).
    ///
    /// A table of seq, time, kind, session (with version), service, principal (a key digest,
    /// shortened), released items and reasons; --json prints the entries exactly as stored.
    ///
    /// Example: cloister audit tail --data /var/lib/cloister-cas -n 50
    #[command(verbatim_doc_comment)]
    Tail(TailArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// The CAS data directory (holding audit.log and audit.head).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
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
    /// The CAS data directory (holding audit.log).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
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
    let key = public_key(&args)?;
    match audit::verify(&args.data, &key) {
        Ok(s) => {
            let report = SummaryReport {
                entries: s.entries,
                head_seq: s.head_seq,
                last_hash: s.last_hash,
                beyond_head: s.beyond_head,
                torn_tail_bytes: s.torn_tail_bytes,
                public_key: key.to_hex(),
            };
            if args.json {
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
            if args.json {
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
/// the data directory.
fn public_key(args: &VerifyArgs) -> anyhow::Result<AuditPublicKey> {
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
    let path = args.data.join(audit::PUBLIC_KEY_FILE);
    eprintln!(
        "cloister: warning: using the public key in {}, next to the log: whoever can rewrite the \
         log can rewrite it too. Pin the key with --public-key or --master-key.",
        path.display()
    );
    Ok(audit::read_public_key(&args.data)?)
}

fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let path = args.data.join(audit::LOG_FILE);
    let text = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!(
                "no audit log in {} ({} is missing)",
                args.data.display(),
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
    let lines: Vec<&[u8]> = complete
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let first = lines.len().saturating_sub(args.lines);
    let entries = lines[first..]
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
        .collect::<anyhow::Result<Vec<_>>>()?;
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

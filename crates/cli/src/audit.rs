//! `cloister audit …`: verify and read the CAS audit log, offline from its data directory
//! (`--data`) or through the API of a running CAS (`--cas`).
//!
//! Through the API, reads are signed with --key: the auditor key the CAS was started with
//! (`cas serve --auditor-key`) reads every entry, an owner's or reader's key the entries of its
//! sessions. With the auditor key the log is fetched (`/v1/audit/head`, `/v1/audit/entries`)
//! and verified here exactly as the offline check verifies the files (the entries are canonical
//! JSON, so their lines are the file's lines), and the CAS's own check (`/v1/audit/verify`)
//! must pass too. With another key, each entry it may read is verified on its own (form, hash,
//! signature): the chain between them holds other sessions' entries it cannot see.

use crate::{EXIT_ERROR, output};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_cas::MasterKey;
use cloister_cas::audit::{self, AuditError, AuditPublicKey, AuditSigner, Entry};
use cloister_cas::client::{CasClient, RequestSigner};
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
    /// With --cas instead of --data, the entries are fetched from a running CAS (pinned with
    /// --cas-cert) with requests signed by --key, and verified here against the log's key (the
    /// one the CAS serves unless pinned with --public-key or --master-key). With the auditor key
    /// (`cas serve --auditor-key`) the whole log and its signed head are verified as offline,
    /// and the CAS's own check must pass too (it fails with that check's exit code). With an
    /// owner's or reader's key, each entry of its sessions is verified on its own (exit 10 if
    /// one does not verify); the chain needs the auditor key.
    ///
    /// Examples:
    ///   cloister audit verify --data /var/lib/cloister-cas --public-key 02ab…
    ///   cloister audit verify --data ./cas-data --master-key /etc/cloister/master.key --json
    ///   cloister audit verify --cas https://cas:8443 --cas-cert cas.crt --key auditor.pem \
    ///       --public-key 02ab…
    #[command(verbatim_doc_comment)]
    Verify(VerifyArgs),
    /// Print the last entries of the CAS audit log (not verified: run `audit verify` for that).
    ///
    /// A table of seq, time, kind, session (with version), service, principal (a key digest,
    /// shortened), released items and reasons; --json prints the entries exactly as stored.
    /// Through --cas, the requests are signed with --key: the auditor key sees every entry, an
    /// owner's or reader's key the last entries of its sessions.
    ///
    /// Examples:
    ///   cloister audit tail --data /var/lib/cloister-cas -n 50
    ///   cloister audit tail --cas https://cas:8443 --cas-cert cas.crt --key alice.pem --json
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

/// The pinned certificate of --cas, and the key that signs the reads.
#[derive(Args)]
pub struct CasCert {
    /// The CAS's TLS certificate to pin (PEM; `cas serve` writes it to DIR/cas.crt).
    #[arg(long, value_name = "FILE", requires = "cas")]
    cas_cert: Option<PathBuf>,
    /// The key that signs the reads through --cas (PKCS#8 PEM, `keys gen`): the CAS's auditor
    /// key reads every entry, an owner's or reader's key its sessions' entries.
    #[arg(long, value_name = "KEY.pem", requires = "cas")]
    key: Option<PathBuf>,
}

impl CasCert {
    /// A client of the CAS at `url`, and the signer of its requests.
    fn connect(&self, url: &str) -> anyhow::Result<(CasClient, RequestSigner)> {
        let cert = self.cas_cert.as_deref().context("--cas needs --cas-cert")?;
        let key = self.key.as_deref().context(
            "--cas needs --key: audit reads are signed (the auditor key reads every entry, an \
             owner's or reader's key its sessions' entries)",
        )?;
        let signer = RequestSigner::from_owner_key(&crate::keys::load_owner_key(key)?)?;
        Ok((crate::remote::client(url, cert)?, signer))
    }
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
    /// Through --cas with a key other than the auditor's: `"visible"` (only the entries that
    /// key may read were verified, each on its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'static str>,
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
    let (key, result, scope) = match (&args.source.data, &args.source.cas) {
        (Some(data), _) => {
            let key = public_key(&args, Some(data))?;
            let result = audit::verify(data, &key);
            (key, result, None)
        }
        (None, Some(url)) => match verify_remote(&args, url)? {
            Remote::Checked(key, result) => (key, result, None),
            Remote::Visible(key, result) => (key, result, Some("visible")),
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
    report(result, &key, scope, args.json, quiet)
}

/// What verifying through the API found.
enum Remote {
    /// The fetched log, checked here against `key`.
    Checked(AuditPublicKey, Result<audit::Summary, AuditError>),
    /// Not the auditor: the entries the key may read, each checked on its own.
    Visible(AuditPublicKey, Result<audit::Summary, AuditError>),
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
    let (client, signer) = args.cert.connect(url)?;
    let (head, entries, cas_check) = crate::remote::block_on(async {
        // The head first: entries appended after it are "beyond the head", which verifies.
        let head = client.audit_head().await?;
        // Only the auditor may ask the CAS to check its files; anyone else gets 403.
        let cas_check = match client.audit_verify(&signer).await {
            Ok(check) => Some(check),
            Err(cloister_cas::Error::Api { status: 403, .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let entries = client.audit_entries_all(0, &signer).await?;
        anyhow::Ok((head, entries, cas_check))
    })??;
    let key = match (&args.public_key, &args.master_key) {
        (None, None) => AuditPublicKey::from_hex(&head.public_key)
            .context("the CAS served an audit public key that is not a P-256 point")?,
        _ => public_key(args, None)?,
    };
    let Some(cas_check) = cas_check else {
        return Ok(Remote::Visible(key, verify_each(&entries, head.seq, &key)));
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

/// Verifies each entry on its own (form, hash, signature) and that they are in order.
fn verify_each(
    entries: &[Entry],
    head_seq: u64,
    key: &AuditPublicKey,
) -> Result<audit::Summary, AuditError> {
    let mut last = None::<&Entry>;
    for entry in entries {
        audit::verify_entry(entry, key)?;
        if last.is_some_and(|l| l.seq >= entry.seq) {
            return Err(AuditError::Reordered { seq: entry.seq });
        }
        last = Some(entry);
    }
    Ok(audit::Summary {
        entries: entries.len() as u64,
        head_seq,
        last_hash: last.map_or_else(String::new, |e| e.hash.clone()),
        beyond_head: 0,
        torn_tail_bytes: 0,
    })
}

/// Prints the verdict; exit 0, or the failure's own exit code.
fn report(
    result: Result<audit::Summary, AuditError>,
    key: &AuditPublicKey,
    scope: Option<&'static str>,
    json: bool,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(s) => {
            let report = SummaryReport {
                scope,
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
                if scope.is_some() {
                    eprintln!(
                        "cloister: note: verified the {} entries this key may read, each on its \
                         own; the chain between them needs the auditor key",
                        report.entries
                    );
                } else if !quiet {
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
            let (client, signer) = args.cert.connect(url)?;
            crate::remote::block_on(tail_remote(&client, &signer, args.lines))??
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

/// The last `lines` entries `signer` may read: from the last `lines` of the log (all of them,
/// for the auditor) or, if fewer are visible there, from the start, keeping only the last.
async fn tail_remote(
    client: &CasClient,
    signer: &RequestSigner,
    lines: usize,
) -> anyhow::Result<Vec<Entry>> {
    let head = client.audit_head().await?;
    let near = head.seq.saturating_sub(lines as u64);
    let mut entries = client.audit_entries_all(near, signer).await?;
    if entries.len() < lines && near > 0 {
        // Page through the whole log, keeping only the last `lines` in memory.
        let mut kept = std::collections::VecDeque::with_capacity(lines + 1);
        let mut after = 0;
        loop {
            let page = client.audit_entries(after, None, signer).await?;
            for entry in page.entries {
                kept.push_back(entry);
                if kept.len() > lines {
                    kept.pop_front();
                }
            }
            match page.next {
                Some(next) if page.more && next > after => after = next,
                Some(_) if page.more => bail!("the CAS's audit cursor did not move forward"),
                _ => break,
            }
        }
        entries = kept.into();
    }
    let first = entries.len().saturating_sub(lines);
    entries.drain(..first);
    Ok(entries)
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

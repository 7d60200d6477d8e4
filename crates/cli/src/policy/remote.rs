//! `cloister policy push|get|list|delete`: the custodian's commands against a running CAS.
//!
//! Approvals are collected offline: each owner adds a signature with `policy sign --append`,
//! then anyone pushes the file. Reads are signed requests by an owner's or reader's key; a
//! deletion is signed by M owners over the session's current head.

use super::PolicyFile;
use crate::remote::{self, CasArgs};
use crate::{EXIT_REFUSED, output};
use anyhow::{Context as _, bail};
use clap::Args;
use cloister_cas::api::{SessionSummary, SessionView, SignedPolicyJson};
use cloister_cas::client::RequestSigner;
use cloister_policy::{OwnerKey, SessionHash};
use serde::Serialize;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PushArgs {
    /// The signed policy (JSON from `policy sign`, with every approval it needs).
    file: PathBuf,
    #[command(flatten)]
    cas: CasArgs,
    /// A namespace owner's private key (PKCS#8 PEM; `-`: stdin) approving the creation of a
    /// session; not needed to update one.
    #[arg(long, value_name = "KEYFILE", env = "CLOISTER_NAMESPACE_KEY_FILE")]
    key: Option<PathBuf>,
    /// Print JSON: {"action": "created"|"updated", "name", "version", "hash", "created"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct GetArgs {
    /// The session, `namespace/name`.
    name: String,
    #[command(flatten)]
    cas: CasArgs,
    /// The key signing the read: an owner's or a reader's private key (PKCS#8 PEM; `-`: stdin).
    #[arg(long, value_name = "KEYFILE", env = "CLOISTER_OWNER_KEY_FILE")]
    key: PathBuf,
    /// Print the CAS's view as JSON: {"name", "version", "hash", "yaml", "signatures",
    /// "created", "history": [{"name", "version", "hash", "created"}]}.
    #[arg(long, conflicts_with = "signed")]
    json: bool,
    /// Print the signed wire form ({"yaml", "signatures"}), as `policy sign` writes it.
    #[arg(long)]
    signed: bool,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    cas: CasArgs,
    /// The key signing the request: only sessions it owns or may read are listed.
    #[arg(long, value_name = "KEYFILE", env = "CLOISTER_OWNER_KEY_FILE")]
    key: PathBuf,
    /// Print JSON: {"sessions": [{"name", "version", "hash", "created"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DeleteArgs {
    /// The session, `namespace/name`.
    name: String,
    #[command(flatten)]
    cas: CasArgs,
    /// An owner's private key approving the deletion; repeat for M of N owners.
    #[arg(long = "key", value_name = "KEYFILE", required = true)]
    keys: Vec<PathBuf>,
    /// The hash of the version to delete; default: the current one, read with the first key.
    /// The CAS refuses the deletion if another version has been accepted since.
    #[arg(long, value_name = "HASH")]
    head: Option<SessionHash>,
    /// Print JSON: {"name", "version", "hash", "created"} of the deleted head.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct PushReport<'a> {
    action: &'static str,
    #[serde(flatten)]
    summary: &'a SessionSummary,
}

pub fn push(args: PushArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let file = PolicyFile::read(&args.file)?;
    let Some(signed) = &file.signed else {
        bail!(
            "{} is not a signed policy; sign it first with `cloister policy sign`",
            args.file.display()
        );
    };
    let policy = match file.parse() {
        Ok(policy) => policy,
        Err(problems) => {
            eprintln!("{problems}");
            eprintln!(
                "cloister: refused: {} is not a valid policy; not pushing it",
                args.file.display()
            );
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    let name = policy.name().to_owned();
    let client = args.cas.client()?;
    let approver = args.key.as_deref().map(signer).transpose()?;
    // An update if the session exists, else a create: the CAS answers 404 to an update of a
    // session it does not hold (and 409 `exists` to a create of one it does).
    let result = remote::block_on(async {
        match client.update_session(&name, signed).await {
            Err(cloister_cas::Error::Api { status: 404, .. }) => {
                let Some(approver) = &approver else {
                    bail!(
                        "the CAS holds no session `{name}`: creating it needs the approval of an \
                         owner of its namespace (--key NSOWNER.pem)"
                    );
                };
                Ok(client
                    .create_session(signed, approver)
                    .await
                    .map(|s| ("created", s)))
            }
            other => Ok(other.map(|s| ("updated", s))),
        }
    })??;
    let (action, summary) = match result {
        Ok(done) => done,
        Err(e) => return remote::refused(e),
    };
    if args.json {
        output::json(&PushReport {
            action,
            summary: &summary,
        })?;
    } else {
        summary_table(std::slice::from_ref(&summary))?;
    }
    if !quiet && !args.json {
        eprintln!(
            "cloister: {action} {} version {} ({})",
            summary.name, summary.version, summary.hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn get(args: GetArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let client = args.cas.client()?;
    let signer = signer(&args.key)?;
    let view: SessionView = match remote::block_on(client.session(&args.name, &signer))? {
        Ok(view) => view,
        Err(e) => return remote::refused(e),
    };
    if args.json {
        output::json(&view)?;
    } else if args.signed {
        output::json(&SignedPolicyJson {
            yaml: view.yaml.clone(),
            signatures: view.signatures.clone(),
        })?;
    } else {
        // The exact bytes that were signed: `policy hash` of this output is the session hash.
        std::io::stdout().lock().write_all(view.yaml.as_bytes())?;
    }
    if !quiet && !args.json {
        eprintln!(
            "cloister: {} version {} ({}), {} version{} in its history",
            view.name,
            view.version,
            view.hash,
            view.history.len(),
            if view.history.len() == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let client = args.cas.client()?;
    let signer = signer(&args.key)?;
    let list = match remote::block_on(client.list_sessions(&signer))? {
        Ok(list) => list,
        Err(e) => return remote::refused(e),
    };
    if args.json {
        output::json(&list)?;
    } else {
        summary_table(&list.sessions)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn delete(args: DeleteArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let client = args.cas.client()?;
    let owners = args
        .keys
        .iter()
        .map(|path| crate::keys::load_owner_key(path))
        .collect::<anyhow::Result<Vec<OwnerKey>>>()?;
    let owner_refs: Vec<&OwnerKey> = owners.iter().collect();
    let result = remote::block_on(async {
        let head = match &args.head {
            Some(head) => *head,
            None => {
                let first = owners
                    .first()
                    .context("at least one --key approves a deletion")?;
                let signer = RequestSigner::from_owner_key(first)?;
                match client.session(&args.name, &signer).await {
                    Ok(view) => view
                        .hash
                        .parse()
                        .context("the CAS answered a session hash that is not 64 hex digits")?,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        anyhow::Ok(client.delete_session(&args.name, &head, &owner_refs).await)
    })??;
    let summary = match result {
        Ok(summary) => summary,
        Err(e) => return remote::refused(e),
    };
    if args.json {
        output::json(&summary)?;
    } else {
        summary_table(std::slice::from_ref(&summary))?;
    }
    if !quiet && !args.json {
        eprintln!(
            "cloister: deleted {} (version {}, {}) and its secrets",
            summary.name, summary.version, summary.hash
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A request signer from a PKCS#8 PEM key file (an owner's or a reader's).
fn signer(path: &std::path::Path) -> anyhow::Result<RequestSigner> {
    let key = crate::keys::load_owner_key(path)?;
    Ok(RequestSigner::from_owner_key(&key)?)
}

fn summary_table(sessions: &[SessionSummary]) -> anyhow::Result<()> {
    let mut t = output::table(&["name", "version", "hash", "created"]);
    for s in sessions {
        t.add_row(vec![
            s.name.clone(),
            s.version.to_string(),
            s.hash.clone(),
            s.created.clone(),
        ]);
    }
    output::print_table(&t)
}

//! `cloister namespace create|show|list|update|delete`: the operator's namespaces on a CAS.
//!
//! A namespace is the first segment of session names (`demo` in `demo/nyc-taxi`). The CAS's
//! admin key (set with `cloister cas init --admin-key`) creates it and names its owners, who
//! approve the creation of sessions in it (`cloister policy push --key`), and its session
//! quota. Every request is signed with --key, for this CAS only.

use crate::remote::{self, CasArgs};
use crate::{EXIT_ERROR, output};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_cas::api::{CreateNamespace, NamespaceOwnerJson, NamespaceView, UpdateNamespace};
use cloister_cas::client::RequestSigner;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Command {
    /// Create a namespace with its owners (signed by the CAS's admin key).
    ///
    /// Each --owner is NAME=PUBFILE: an owner's name and public key (`keys gen` writes it to
    /// `<key>.pub`). The owners approve the creation of sessions `NAME/…`. The CAS refuses
    /// (exit 1) a signer that is not its admin key, a CAS without one, and an existing name.
    ///
    /// Example:
    ///   cloister namespace create demo --owner alice=alice.pem.pub --quota 100 \
    ///       --key admin.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// Show a namespace: owners, quota, how many sessions it holds (admin key or an owner).
    ///
    /// Example: cloister namespace show demo --key alice.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
    /// List the namespaces the key may read (the admin key: all; an owner: its own).
    ///
    /// Example: cloister namespace list --key admin.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    List(ListArgs),
    /// Replace a namespace's owners and/or change its session quota (admin key).
    ///
    /// Reads the namespace's current version first (with the same key) and updates exactly that
    /// version: a concurrent change makes the CAS refuse (exit 1).
    ///
    /// Examples:
    ///   cloister namespace update demo --quota 2000 --key admin.pem --cas https://cas:8443 --cas-cert cas.crt
    ///   cloister namespace update demo --owner alice=alice.pem.pub --owner bob=bob.pem.pub \
    ///       --key admin.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Update(UpdateArgs),
    /// Delete an empty namespace (admin key); one holding sessions is refused (exit 1).
    ///
    /// Example: cloister namespace delete demo --key admin.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Delete(ShowArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The namespace: 1 to 63 of a-z 0-9 . _ - starting with a letter or digit.
    name: String,
    /// An owner, NAME=PUBFILE (an Ed25519 public key, PEM or base64 DER). Repeatable; at least one.
    #[arg(long = "owner", value_name = "NAME=PUBFILE", required = true)]
    owners: Vec<String>,
    /// How many sessions it may hold (default 1000).
    #[arg(long, value_name = "N")]
    quota: Option<u64>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct UpdateArgs {
    /// The namespace.
    name: String,
    /// The new owners, NAME=PUBFILE, replacing all the current ones. Repeatable.
    #[arg(long = "owner", value_name = "NAME=PUBFILE")]
    owners: Vec<String>,
    /// The new session quota.
    #[arg(long, value_name = "N")]
    quota: Option<u64>,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The namespace.
    name: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    common: Common,
}

#[derive(Args)]
struct Common {
    #[command(flatten)]
    cas: CasArgs,
    /// The key signing the request (PKCS#8 PEM; `-`: stdin): the admin key, or for show and
    /// list a namespace owner's.
    #[arg(long, value_name = "KEYFILE", env = "CLOISTER_ADMIN_KEY_FILE")]
    key: PathBuf,
    /// Print JSON: the namespace {"name", "owners": [{"name", "public_key", "fingerprint"}],
    /// "session_quota", "sessions", "version", "created", "updated"} (list:
    /// {"namespaces": [...]}).
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create(args) => create(args, quiet),
        Command::Show(args) => show(args),
        Command::List(args) => list(args),
        Command::Update(args) => update(args, quiet),
        Command::Delete(args) => delete(args, quiet),
    }
}

fn signer(path: &std::path::Path) -> anyhow::Result<RequestSigner> {
    let key = crate::keys::load_owner_key(path)?;
    Ok(RequestSigner::from_owner_key(&key)?)
}

/// `NAME=PUBFILE` → an owner with the file's public key.
fn owner(spec: &str) -> anyhow::Result<NamespaceOwnerJson> {
    let (name, file) = spec
        .split_once('=')
        .with_context(|| format!("--owner {spec}: expected NAME=PUBFILE"))?;
    if name.is_empty() {
        bail!("--owner {spec}: the owner's name is empty");
    }
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the public key {file}"))?;
    let key = cloister_policy::PublicKey::parse(&text)
        .with_context(|| format!("{file}: not an Ed25519 public key"))?;
    Ok(NamespaceOwnerJson {
        name: name.to_owned(),
        public_key: key.to_pem()?,
    })
}

fn print(view: &NamespaceView, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(view);
    }
    table(std::slice::from_ref(view))
}

fn table(views: &[NamespaceView]) -> anyhow::Result<()> {
    let mut t = output::table(&["name", "owners", "sessions", "quota", "version", "updated"]);
    for v in views {
        t.add_row(vec![
            v.name.clone(),
            v.owners
                .iter()
                .map(|o| format!("{} ({})", o.name, &o.fingerprint[..16]))
                .collect::<Vec<_>>()
                .join(", "),
            v.sessions.to_string(),
            v.session_quota.to_string(),
            v.version.to_string(),
            v.updated.clone(),
        ]);
    }
    output::print_table(&t)
}

fn create(args: CreateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let owners = args
        .owners
        .iter()
        .map(|s| owner(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let admin = signer(&args.common.key)?;
    let client = args.common.cas.client()?;
    let body = CreateNamespace {
        name: args.name,
        owners,
        session_quota: args.quota,
    };
    let view = match remote::block_on(client.create_namespace(&body, &admin))? {
        Ok(view) => view,
        Err(e) => return remote::refused(e),
    };
    print(&view, args.common.json)?;
    if !quiet && !args.common.json {
        eprintln!(
            "cloister: created namespace {} ({} owner{}, quota {})",
            view.name,
            view.owners.len(),
            if view.owners.len() == 1 { "" } else { "s" },
            view.session_quota
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let key = signer(&args.common.key)?;
    let client = args.common.cas.client()?;
    match remote::block_on(client.get_namespace(&args.name, &key))? {
        Ok(view) => print(&view, args.common.json)?,
        Err(e) => return remote::refused(e),
    }
    Ok(ExitCode::SUCCESS)
}

fn list(args: ListArgs) -> anyhow::Result<ExitCode> {
    let key = signer(&args.common.key)?;
    let client = args.common.cas.client()?;
    let list = match remote::block_on(client.list_namespaces(&key))? {
        Ok(list) => list,
        Err(e) => return remote::refused(e),
    };
    if args.common.json {
        output::json(&list)?;
    } else {
        table(&list.namespaces)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn update(args: UpdateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.owners.is_empty() && args.quota.is_none() {
        eprintln!("cloister: nothing to update: give --owner and/or --quota");
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let owners = if args.owners.is_empty() {
        None
    } else {
        Some(
            args.owners
                .iter()
                .map(|s| owner(s))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let admin = signer(&args.common.key)?;
    let client = args.common.cas.client()?;
    let result = remote::block_on(async {
        let current = client.get_namespace(&args.name, &admin).await?;
        let body = UpdateNamespace {
            version: current.version,
            owners,
            session_quota: args.quota,
        };
        client.update_namespace(&args.name, &body, &admin).await
    })?;
    let view = match result {
        Ok(view) => view,
        Err(e) => return remote::refused(e),
    };
    print(&view, args.common.json)?;
    if !quiet && !args.common.json {
        eprintln!(
            "cloister: updated namespace {} (version {})",
            view.name, view.version
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn delete(args: ShowArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let admin = signer(&args.common.key)?;
    let client = args.common.cas.client()?;
    let view = match remote::block_on(client.delete_namespace(&args.name, &admin))? {
        Ok(view) => view,
        Err(e) => return remote::refused(e),
    };
    print(&view, args.common.json)?;
    if !quiet && !args.common.json {
        eprintln!("cloister: deleted namespace {}", view.name);
    }
    Ok(ExitCode::SUCCESS)
}

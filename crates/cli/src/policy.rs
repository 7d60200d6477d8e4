//! `cloister policy …`: the custodian's policy tools — offline: lint, schema, hash, sign, diff;
//! against a running CAS: push, get, list, delete (in [`remote`]).
//!
//! A policy file is either the YAML itself or the signed wire form (`{"yaml": …, "signatures":
//! […]}`, what `policy sign` writes and the CAS takes); every command here accepts both and works
//! on the YAML's exact bytes, whose SHA-256 is the session hash.

mod diff;
mod remote;

use crate::{EXIT_REFUSED, output};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_policy::{Policy, Problems, SessionHash, SignedPolicy};
use serde::Serialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum Command {
    /// Check policies and print every problem; exit 1 if there is any.
    ///
    /// Each problem is one line, compiler style:
    ///
    ///   FILE:LINE:COLUMN: PATH: MESSAGE [rule: RULE-ID]
    ///
    /// Structural problems (YAML syntax, unknown fields, wrong types) stop at the first; once
    /// the document has the right shape every rule is checked. A signed policy (JSON) is linted
    /// by its YAML, and its locations are in that YAML (the file is shown as `FILE#yaml`). Rule
    /// ids are listed in docs/policy.md.
    ///
    /// Examples:
    ///   cloister policy lint policy.yaml
    ///   cloister policy lint policies/*.yaml --json
    #[command(verbatim_doc_comment)]
    Lint(LintArgs),
    /// Print the JSON Schema (draft 2020-12) of the policy language.
    ///
    /// For editors and CI: the schema checks the shape of a document; `policy lint` checks every
    /// rule.
    ///
    /// Example: cloister policy schema > cloister-policy.schema.json
    #[command(verbatim_doc_comment)]
    Schema,
    /// Print a policy's session hash: SHA-256 of its exact YAML bytes.
    ///
    /// The next version names this hash as its `predecessor`; owners' signatures cover it; an
    /// importing session pins it. No canonicalisation: any byte changed changes the hash.
    ///
    /// Example: cloister policy hash v1.yaml
    #[command(verbatim_doc_comment)]
    Hash(HashArgs),
    /// Sign a policy with an owner key, or add an approval to a signed policy (--append).
    ///
    /// Without --append, FILE is the policy YAML: it is linted (an invalid policy is refused with
    /// exit 1), signed, and written as the signed wire form to --out (a new file) or stdout.
    ///
    /// With --append, FILE is a signed policy: the key's signature is added and the file is
    /// replaced (or --out written). This is how M-of-N approval works: each owner signs the same
    /// bytes in turn. A key that has already signed is refused, and so is a file whose
    /// existing owner signatures do not verify over its YAML (it was changed after signing).
    ///
    /// The key is read from a PKCS#8 PEM file (`-`: stdin), never from the command line. A key
    /// that is not an owner of this version gets a warning: for an update, it is the owners of the
    /// current version that approve.
    ///
    /// Examples:
    ///   cloister policy sign policy.yaml --key alice.pem --out policy.signed.json
    ///   cloister policy sign policy.signed.json --key bob.pem --append
    #[command(verbatim_doc_comment)]
    Sign(SignArgs),
    /// Compare two policy versions: a unified diff and the changes that matter.
    ///
    /// OLD and NEW are YAML or signed policies. After the diff of the YAML, a table lists the
    /// changes a custodian should review: owners, readers and approvals; TEEs, tolerations and
    /// ignored advisories; the Rego rule; services added or removed, measurement and signer pins,
    /// commands, environment and files; secrets added, removed or changed; exports. Last, whether
    /// NEW's `predecessor` is OLD's session hash.
    ///
    /// Exit 0 after printing; with --check, exit 1 unless NEW is OLD's successor (same name,
    /// next version, predecessor = OLD's hash).
    ///
    /// Example: cloister policy diff v1.yaml v2.yaml
    #[command(verbatim_doc_comment)]
    Diff(DiffArgs),
    /// Send a signed policy to a CAS: update the session if it exists, else create it.
    ///
    /// FILE is the signed wire form with every approval the change needs. Approvals are
    /// collected offline: each owner adds theirs with `policy sign FILE --key KEY --append`, then
    /// anyone pushes the file (the CAS checks the signatures, not who sends them). A new
    /// session's policy is version 1 and is approved by its own owners; a new version names
    /// the current one's hash as `predecessor` and is approved by the current version's owners.
    ///
    /// Creating a session (a name the CAS does not hold) also needs the approval of an owner of
    /// its namespace: --key signs the request with that owner's key, for this CAS only and
    /// once. A deleted name is created again only by a version above the deleted one that names
    /// it as `predecessor` (`policy get` showed its hash; the audit log has it).
    ///
    /// The policy is linted first (an invalid one is refused here, exit 1). If the CAS refuses
    /// the change (unsigned, too few approvals, a stale predecessor, another version accepted
    /// first, no namespace approval, the namespace's quota, a resurrection) it exits 1 and
    /// prints the CAS's rule and reasons, one per line.
    ///
    /// Examples:
    ///   cloister policy push v1.signed.json --key nsowner.pem --cas https://cas:8443 --cas-cert cas.crt
    ///   cloister policy sign v2.yaml --key alice.pem --out v2.signed.json
    ///   cloister policy sign v2.signed.json --key bob.pem --append
    ///   cloister policy push v2.signed.json --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Push(remote::PushArgs),
    /// Read a session's policy in force from a CAS: its exact YAML, or --json / --signed.
    ///
    /// The request is signed with KEYFILE, an owner's or a `read` principal's private key.
    /// The YAML printed is byte for byte what the owners signed, so `policy hash` of it is the
    /// session hash, and a next version names that hash as `predecessor`. The CAS never returns
    /// a secret it generated.
    ///
    /// Example: cloister policy get demo/nyc-taxi --key alice.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Get(remote::GetArgs),
    /// List the sessions on a CAS that KEYFILE owns or may read.
    ///
    /// Example: cloister policy list --key alice.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    List(remote::ListArgs),
    /// Delete a session and every secret it holds, approved by M of its N owners.
    ///
    /// Each --key signs the deletion of the current version (or of --head). The keys must be on
    /// this machine: a deletion has no offline approval form yet. The CAS refuses a deletion
    /// with too few approvals, and one whose head is no longer current (exit 1).
    ///
    /// Example: cloister policy delete demo/nyc-taxi --key alice.pem --key bob.pem --cas https://cas:8443 --cas-cert cas.crt
    #[command(verbatim_doc_comment)]
    Delete(remote::DeleteArgs),
}

#[derive(Args)]
pub struct LintArgs {
    /// The policy files (YAML or signed JSON).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Print a JSON array of problems: [{"file", "line", "column", "path", "rule", "message"}].
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct HashArgs {
    /// The policy file (YAML or signed JSON).
    file: PathBuf,
    /// Print JSON: {"file", "session_hash"}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct SignArgs {
    /// The policy YAML, or with --append a signed policy.
    file: PathBuf,
    /// The owner's private key (PKCS#8 PEM from `cloister keys gen`; `-`: stdin).
    #[arg(long, value_name = "KEYFILE", env = "CLOISTER_OWNER_KEY_FILE")]
    key: PathBuf,
    /// Where to write the signed policy: default stdout, or FILE itself with --append.
    #[arg(long, value_name = "SIGNED.json")]
    out: Option<PathBuf>,
    /// Add a signature to the signed policy FILE.
    #[arg(long)]
    append: bool,
}

#[derive(Args)]
pub struct DiffArgs {
    /// The earlier version.
    old: PathBuf,
    /// The later version.
    new: PathBuf,
    /// Exit 1 unless NEW is OLD's successor.
    #[arg(long)]
    check: bool,
    /// Print JSON: {"old", "new", "predecessor_matches", "follows", "changes", "diff"}.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Lint(args) => lint(args, quiet),
        Command::Schema => {
            output::json(&cloister_policy::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Hash(args) => hash(args),
        Command::Sign(args) => sign(args, quiet),
        Command::Diff(args) => diff::run(args),
        Command::Push(args) => remote::push(args, quiet),
        Command::Get(args) => remote::get(args, quiet),
        Command::List(args) => remote::list(args),
        Command::Delete(args) => remote::delete(args, quiet),
    }
}

/// A policy file as read: its YAML and, for the signed form, the signatures.
pub struct PolicyFile {
    path: PathBuf,
    yaml: String,
    signed: Option<SignedPolicy>,
}

impl PolicyFile {
    /// Read YAML or the signed JSON form. A file that starts with `{` and is a signed policy is
    /// one; anything else is taken as YAML.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if text.trim_start().starts_with('{')
            && let Ok(signed) = SignedPolicy::from_json(&text)
        {
            return Ok(Self {
                path: path.to_owned(),
                yaml: signed.yaml.clone(),
                signed: Some(signed),
            });
        }
        Ok(Self {
            path: path.to_owned(),
            yaml: text,
            signed: None,
        })
    }

    /// The name problems are reported under: the path, plus `#yaml` for a signed policy.
    pub fn source_name(&self) -> String {
        let path = self.path.display();
        if self.signed.is_some() {
            format!("{path}#yaml")
        } else {
            path.to_string()
        }
    }

    /// The session hash of the YAML.
    pub fn hash(&self) -> SessionHash {
        SessionHash::of(self.yaml.as_bytes())
    }

    /// Parse and validate, naming the problems after the file.
    pub fn parse(&self) -> Result<Policy, Problems> {
        Policy::parse(&self.yaml).map_err(|p| p.with_source_name(self.source_name()))
    }
}

#[derive(Serialize)]
struct LintProblem {
    file: String,
    line: usize,
    column: usize,
    path: String,
    rule: &'static str,
    message: String,
}

fn lint(args: LintArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let mut all = Vec::new();
    let mut text = String::new();
    for path in &args.files {
        let file = PolicyFile::read(path)?;
        match file.parse() {
            Ok(_) => {
                if !quiet && !args.json {
                    eprintln!("cloister: {}: no problems", path.display());
                }
            }
            Err(problems) => {
                text.push_str(&problems.to_string());
                text.push('\n');
                let source = file.source_name();
                all.extend(problems.items().iter().map(|p| LintProblem {
                    file: source.clone(),
                    line: p.line,
                    column: p.column,
                    path: p.path.clone(),
                    rule: p.rule.as_str(),
                    message: p.message.clone(),
                }));
            }
        }
    }
    if args.json {
        output::json(&all)?;
    } else {
        std::io::stdout().lock().write_all(text.as_bytes())?;
    }
    if all.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        if !args.json && !quiet {
            eprintln!(
                "cloister: {} problem{}",
                all.len(),
                if all.len() == 1 { "" } else { "s" }
            );
        }
        Ok(ExitCode::from(EXIT_REFUSED))
    }
}

#[derive(Serialize)]
struct HashReport<'a> {
    file: &'a Path,
    session_hash: SessionHash,
}

fn hash(args: HashArgs) -> anyhow::Result<ExitCode> {
    let file = PolicyFile::read(&args.file)?;
    if args.json {
        output::json(&HashReport {
            file: &args.file,
            session_hash: file.hash(),
        })?;
    } else {
        writeln!(std::io::stdout().lock(), "{}", file.hash())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn sign(args: SignArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let file = PolicyFile::read(&args.file)?;
    let mut signed = match (&file.signed, args.append) {
        (Some(signed), true) => signed.clone(),
        (None, false) => SignedPolicy::new(file.yaml.clone()),
        (Some(_), false) => bail!(
            "{} is already a signed policy; add a signature with --append",
            args.file.display()
        ),
        (None, true) => bail!(
            "--append takes a signed policy (JSON from `policy sign`); {} is not one",
            args.file.display()
        ),
    };
    let out = match (&args.out, args.append) {
        (Some(out), _) => Some(out.clone()),
        (None, true) => Some(args.file.clone()),
        (None, false) => None,
    };
    if !args.append
        && let Some(out) = &out
        && out.exists()
    {
        bail!(
            "{} exists; to add a signature to it, sign it with --append",
            out.display()
        );
    }
    let policy = match file.parse() {
        Ok(policy) => policy,
        Err(problems) => {
            eprintln!("{problems}");
            eprintln!(
                "cloister: refused: {} is not a valid policy; not signing it",
                args.file.display()
            );
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    };
    let key = crate::keys::load_owner_key(&args.key)?;
    let fingerprint = key.fingerprint();
    if signed
        .signatures
        .iter()
        .any(|s| s.key_fingerprint == fingerprint)
    {
        bail!(
            "{} is already signed by this key (fingerprint {fingerprint})",
            args.file.display()
        );
    }
    let hash = signed.hash();
    for sig in &signed.signatures {
        if let Some(owner) = policy.access().owner(&sig.key_fingerprint)
            && !owner.key.verifies(&hash, &sig.sig)
        {
            eprintln!(
                "cloister: refused: the signature of owner {} does not verify over this YAML \
                 (was it changed after signing?)",
                owner.name
            );
            return Ok(ExitCode::from(EXIT_REFUSED));
        }
    }
    let owner = policy.access().owner(&fingerprint).map(|o| o.name.clone());
    if owner.is_none() {
        eprintln!(
            "cloister: warning: key {fingerprint} is not an owner of {} version {}; its \
             signature counts only as an approval by an owner of the current version",
            policy.name(),
            policy.version()
        );
    }
    signed.sign(&key);

    let json = signed.to_json() + "\n";
    match &out {
        Some(path) => replace_file(path, json.as_bytes())?,
        None => std::io::stdout().lock().write_all(json.as_bytes())?,
    }
    if !quiet {
        let approvals = signed
            .signatures
            .iter()
            .filter(|s| {
                policy
                    .access()
                    .owner(&s.key_fingerprint)
                    .is_some_and(|o| o.key.verifies(&hash, &s.sig))
            })
            .count();
        let by = owner.map_or_else(|| fingerprint.to_string(), |name| format!("owner {name}"));
        let written = out.map_or_else(String::new, |p| format!("; wrote {}", p.display()));
        eprintln!(
            "cloister: signed {} version {} ({hash}) by {by}: {approvals} of the {} owner \
             approval{} this version asks for{written}",
            policy.name(),
            policy.version(),
            policy.access().approvals,
            if policy.access().approvals == 1 {
                ""
            } else {
                "s"
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Write `bytes` to `path` atomically: a temporary file beside it, then a rename.
fn replace_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

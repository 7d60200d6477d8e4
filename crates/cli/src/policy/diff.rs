//! `cloister policy diff`: the text diff of two versions and the changes a custodian must review.
//!
//! The changes themselves are computed by [`cloister_policy::diff`]; this module renders them.

use super::{DiffArgs, PolicyFile};
use crate::{EXIT_REFUSED, output};
use cloister_policy::diff::{Change, changes};
use cloister_policy::{Policy, SessionHash};
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

#[derive(Serialize)]
struct VersionReport<'a> {
    file: &'a Path,
    session_hash: SessionHash,
    /// `null` when the file is not a valid policy.
    name: Option<&'a str>,
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    predecessor: Option<Option<SessionHash>>,
}

#[derive(Serialize)]
struct DiffReport<'a> {
    old: VersionReport<'a>,
    new: VersionReport<'a>,
    /// Whether NEW's `predecessor` is OLD's session hash.
    predecessor_matches: bool,
    /// Same name, next version and a matching predecessor.
    follows: bool,
    /// The changes that matter; `null` when either file is not a valid policy.
    changes: Option<Vec<Change>>,
    /// The unified diff of the YAML.
    diff: String,
}

pub fn run(args: DiffArgs) -> anyhow::Result<ExitCode> {
    let old = PolicyFile::read(&args.old)?;
    let new = PolicyFile::read(&args.new)?;
    let text = similar::TextDiff::from_lines(&old.yaml, &new.yaml)
        .unified_diff()
        .context_radius(3)
        .header(
            &args.old.display().to_string(),
            &args.new.display().to_string(),
        )
        .to_string();

    let parsed = |f: &PolicyFile| match f.parse() {
        Ok(p) => Some(p),
        Err(problems) => {
            eprintln!(
                "cloister: warning: {} is not a valid policy ({} problem{}; see `cloister policy \
                 lint`): only the text diff is shown",
                f.path.display(),
                problems.len(),
                if problems.len() == 1 { "" } else { "s" }
            );
            None
        }
    };
    let (old_policy, new_policy) = (parsed(&old), parsed(&new));
    let changes = match (&old_policy, &new_policy) {
        (Some(o), Some(n)) => Some(changes(o, n)),
        _ => None,
    };
    let old_hash = old.hash();
    let predecessor = new_policy.as_ref().map(Policy::predecessor);
    let predecessor_matches = predecessor.flatten() == Some(old_hash);
    let follows = predecessor_matches
        && match (&old_policy, &new_policy) {
            (Some(o), Some(n)) => {
                o.name() == n.name() && Some(n.version()) == o.version().checked_add(1)
            }
            _ => false,
        };

    if args.json {
        output::json(&DiffReport {
            old: VersionReport {
                file: &args.old,
                session_hash: old_hash,
                name: old_policy.as_ref().map(Policy::name),
                version: old_policy.as_ref().map(Policy::version),
                predecessor: None,
            },
            new: VersionReport {
                file: &args.new,
                session_hash: new.hash(),
                name: new_policy.as_ref().map(Policy::name),
                version: new_policy.as_ref().map(Policy::version),
                predecessor: Some(predecessor.flatten()),
            },
            predecessor_matches,
            follows,
            changes,
            diff: text,
        })?;
    } else {
        let mut out = std::io::stdout().lock();
        if text.is_empty() {
            eprintln!("cloister: the YAML of both versions is identical");
        } else {
            write!(out, "{text}")?;
            writeln!(out)?;
        }
        if let Some(changes) = &changes {
            if changes.is_empty() {
                writeln!(out, "changes that matter: none")?;
            } else {
                writeln!(out, "changes that matter:")?;
                let mut t = output::table(&["", "where", "what"]);
                for c in changes {
                    t.add_row(vec![c.change.symbol(), &c.path, &c.detail]);
                }
                writeln!(out, "{t}")?;
            }
        }
        let line = match predecessor {
            None => format!("predecessor: unknown ({} is not valid)", args.new.display()),
            Some(None) => format!(
                "predecessor: {} names none (a version 1); {} hashes to {old_hash}",
                args.new.display(),
                args.old.display()
            ),
            Some(Some(p)) if p == old_hash => format!(
                "predecessor: {} names {p}, the session hash of {} (matches)",
                args.new.display(),
                args.old.display()
            ),
            Some(Some(p)) => format!(
                "predecessor: {} names {p}, but {} hashes to {old_hash} (does NOT match)",
                args.new.display(),
                args.old.display()
            ),
        };
        writeln!(out, "{line}")?;
    }
    if args.check && !follows {
        eprintln!(
            "cloister: refused: {} is not the successor of {} (same name, next version, \
             predecessor = its hash)",
            args.new.display(),
            args.old.display()
        );
        return Ok(ExitCode::from(EXIT_REFUSED));
    }
    Ok(ExitCode::SUCCESS)
}

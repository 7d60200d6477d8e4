//! `cloister run`: the attested workload (see `cloister_runtime` for the flow).
//!
//! The roles after `--`: `job BUNDLE` runs the bundle's SQL app on the engine inside this
//! attested process ([`cloister_roles::job`] says which configuration variables it reads: data keys,
//! store, SQL variables, memory limit, output policy). `driver`, `executor` and `connect`
//! arrive with distributed execution. The job prints its result tables and an outputs summary
//! (`--json`: one object); a refusal or a failure stops it before any output is committed.

use anyhow::{Context as _, bail};
use clap::Args;
use cloister_attest::sim::PlatformKey;
use cloister_runtime::{EvidenceSource, FilesMode, Job, Launch, RoleError, launch};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct RunArgs {
    /// The CAS's URL.
    #[arg(long, value_name = "URL")]
    cas: String,
    /// The CAS's certificate (PEM; its `cas.crt`): the only certificate trusted.
    #[arg(long, value_name = "FILE")]
    cas_cert: PathBuf,
    /// The session (policy) name, `namespace/name`.
    #[arg(long)]
    session: String,
    /// The service within the session.
    #[arg(long)]
    service: String,
    /// Take evidence from the node's LAS at this URL (`http://$HOST_IP:9480`).
    #[arg(long, value_name = "URL", conflicts_with = "sim_key")]
    las: Option<String>,
    /// DEVELOPMENT ONLY: sign sim evidence with this platform key (PKCS#8 PEM, as `evidence
    /// sim-keygen` writes it). No hardware protects the workload.
    #[arg(long, value_name = "FILE")]
    sim_key: Option<PathBuf>,
    /// An argument from the host, for `@@N` in the policy's args (N counts from 0). Repeatable.
    #[arg(long = "host-arg", value_name = "ARG", allow_hyphen_values = true)]
    host_args: Vec<String>,
    /// Keep injected files in memory only (default: also in a private directory on /dev/shm).
    #[arg(long, conflicts_with = "files_under")]
    files_in_memory: bool,
    /// Create the private files directory under DIR instead of /dev/shm (use a tmpfs).
    #[arg(long, value_name = "DIR")]
    files_under: Option<PathBuf>,
    /// Print the job's report as JSON: {"session", "service", "session_hash", "measurement",
    /// "bundle_digest", "results": [{"name", "script", "statement", "rows", "columns",
    /// "data"}], "outputs": [{"url", "rows", "script", "statement"}], "spill": {"files",
    /// "bytes", "encrypted"}, "seconds"}.
    #[arg(long)]
    json: bool,
    /// The role and its arguments: `job BUNDLE`.
    #[arg(last = true, required = true, value_name = "ROLE")]
    role: Vec<String>,
}

pub fn run(args: RunArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let bundle = match args.role.as_slice() {
        [role, bundle] if role == "job" => PathBuf::from(bundle),
        [role, ..] if role == "job" => bail!("the job role takes one argument: -- job BUNDLE"),
        [role, ..] if ["driver", "executor", "connect"].contains(&role.as_str()) => {
            bail!("the {role} role is not available yet; use -- job BUNDLE")
        }
        [role, ..] => bail!("unknown role {role:?}: use -- job BUNDLE"),
        [] => bail!("name a role after --: -- job BUNDLE"),
    };
    let cas_cert_pem = std::fs::read_to_string(&args.cas_cert)
        .with_context(|| format!("cannot read {}", args.cas_cert.display()))?;
    let evidence = match (&args.las, &args.sim_key) {
        (Some(url), _) => EvidenceSource::Las(url.clone()),
        (None, Some(path)) => {
            let pem = zeroize::Zeroizing::new(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            );
            let key = PlatformKey::from_pem(&pem)
                .with_context(|| format!("{} is not a sim platform key", path.display()))?;
            eprintln!(
                "cloister: WARNING: --sim-key: sim evidence signed on this machine. DEVELOPMENT \
                 ONLY: no hardware protects this workload, and only a policy that accepts `sim` \
                 admits it."
            );
            EvidenceSource::Sim(key)
        }
        (None, None) => EvidenceSource::Hardware { root: "/".into() },
    };
    let mut options = Launch::new(args.cas, cas_cert_pem, args.session, args.service, evidence);
    options.bundle = Some(bundle);
    options.host_args = args.host_args;
    options.files = match (args.files_in_memory, args.files_under) {
        (true, _) => FilesMode::Memory,
        (false, Some(dir)) => FilesMode::Under(dir),
        (false, None) => FilesMode::Auto,
    };
    let json = args.json;
    let job = Job::new(move |bundle, ctx| {
        cloister_roles::job::run_role(
            bundle,
            ctx,
            &cloister_roles::job::JobOptions::default(),
            quiet,
        )
        .map_err(RoleError::from)
    });
    match launch(options, job) {
        Ok(report) => {
            cloister_roles::job::print_report(&report, json)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.is_refusal() => {
            eprintln!("cloister: refused: {e}");
            if let cloister_runtime::Error::Refused { refused, .. } = &e
                && let Some(seq) = refused.audit_seq
                && !refused.rules.is_empty()
            {
                eprintln!(
                    "cloister: the CAS names the failed rules only; the session's owners read the \
                     details in its audit log, entry {seq} (`cloister audit tail`)"
                );
            }
            if !quiet {
                eprintln!("cloister: the job did not run and wrote nothing");
            }
            Ok(ExitCode::from(crate::EXIT_REFUSED))
        }
        Err(cloister_runtime::Error::Role { source, .. }) => {
            let (code, what) = match source.downcast_ref::<cloister_roles::job::JobError>() {
                Some(e) if e.is_refusal() => (crate::EXIT_REFUSED, "refused"),
                _ => (crate::EXIT_ERROR, "job failed"),
            };
            eprintln!("cloister: {what}: {source}");
            if !quiet {
                eprintln!("cloister: no output was written");
            }
            Ok(ExitCode::from(code))
        }
        Err(e) => Err(e.into()),
    }
}

//! `cloister cas …`: run the Configuration and Attestation Service and make its master key.
//!
//! `cas serve` opens the CAS over its data directory, serves the HTTPS API until SIGTERM or
//! SIGINT, then lets requests in flight finish. Once it accepts connections it writes its URL to
//! `DIR/cas.addr` (atomically) and prints the URL, the pinned certificate and the audit log's
//! public key on stderr, so that scripts can wait for it.

use crate::serve::{self, LogFormat};
use crate::{EXIT_ERROR, LogStyle};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_cas::config::{Limits, RateLimit};
use cloister_cas::server::{self, CERT_FILE, CasState};
use cloister_cas::{CasConfig, ImportRules, MASTER_KEY_ENV, MasterKey};
use sha2::Digest as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The file in the data directory holding the URL of the running CAS.
pub const ADDR_FILE: &str = "cas.addr";

#[derive(Subcommand)]
pub enum Command {
    /// Run the CAS: the HTTPS API over the data directory, until SIGTERM or Ctrl-C.
    ///
    /// The master key, which protects everything in DIR, comes from --master-key-file (a 0600
    /// file of 64 hex digits, as `cas init` writes it) or from the environment variable
    /// CLOISTER_MASTER_KEY (64 hex digits), never from the command line. A key found in the
    /// environment is read once; then the process re-executes itself (same pid) without the
    /// variable, handing the key over on a pipe, so /proc/PID/environ no longer holds it.
    ///
    /// On first start the CAS makes its token signing key and a self-signed TLS certificate for
    /// the --tls-name names (default localhost, 127.0.0.1, ::1) and writes the certificate to
    /// DIR/cas.crt: custodians and workloads pin it (`--cas-cert`). Once it accepts connections
    /// it writes its URL to DIR/cas.addr and prints on stderr:
    ///
    ///   cloister: CAS listening on https://127.0.0.1:8443
    ///   cloister: certificate DIR/cas.crt (SHA-256 …)
    ///   cloister: audit public key 02…
    ///
    /// (with --log-format json, one JSON object with "url", "certificate", "certificate_sha256"
    /// and "audit_public_key"). SIGTERM or SIGINT stops it: requests in flight get 10 s to
    /// finish, DIR/cas.addr is removed, exit 0.
    ///
    /// Each client (peer IP address) is rate limited on nonces, attestations and session
    /// requests (429 with Retry-After beyond); slow handshakes and request heads are cut off and
    /// connections are capped: see the Limits flags.
    ///
    /// Trust is explicit: sim evidence only from the platform keys given (and only for policies
    /// listing `sim`), Azure Attestation tokens only from --maa-issuer. Logs go to stderr (level
    /// info; RUST_LOG overrides) and never hold a secret.
    ///
    /// Audit entries are read with signed requests: owners and readers see their sessions'
    /// entries, the --auditor-key sees all; only the signed head is public.
    /// Host imports are the operator's decision: a policy's `import: {file|env|kubernetes}`
    /// secrets are read only where --imports FILE allows the policy's namespace (the part of
    /// its name before `/`); without it nothing is importable. FILE is YAML, or TOML when it
    /// ends in .toml:
    ///
    ///   namespaces:
    ///     contoso:
    ///       files: [/etc/cloister/imports/contoso]  # directories; files beneath them
    ///       env: [CONTOSO_DB_PASSWORD]              # this process's environment
    ///       kubernetes: [contoso-db]                # Secrets under --kubernetes-secrets-dir
    ///
    /// /proc, /sys, /dev, DIR and CLOISTER_* variables are never importable: rules naming them
    /// (or a directory above them) are refused at start. Files are opened beneath their
    /// directory with no symlink or `..` escape; a refused import is refused by rule
    /// (import-not-allowed, import-escape, …) and recorded in the audit log.
    ///
    /// Examples:
    ///   cloister cas init --data ./cas-data --master-key-file ./master.key
    ///   cloister keys gen --out auditor.pem
    ///   cloister cas serve --listen 127.0.0.1:8443 --data ./cas-data \
    ///       --master-key-file ./master.key --insecure-sim-platform-key platform.pem.pub \
    ///       --auditor-key auditor.pem.pub
    ///       --imports imports.yaml
    #[command(verbatim_doc_comment)]
    Serve(Box<ServeArgs>),
    /// Make a CAS master key file and set the operator's admin key.
    ///
    /// A new data directory: writes a master key file (64 hex digits, mode 0600, never
    /// overwriting a file), creates DIR (0700) and, with --admin-key, the store holding the
    /// admin key. Keep the key file safe and backed up apart from the data: without it, nothing
    /// in DIR can be read. Prints the key's public fingerprint (also logged by the CAS), never
    /// the key.
    ///
    /// The admin key (an Ed25519 public key, as `cloister keys gen` writes it to `<key>.pub`)
    /// creates namespaces and names their owners (`cloister namespace create`); without one
    /// the CAS serves its existing sessions but refuses every namespace change.
    ///
    /// An existing data directory (stop its CAS first): --admin-key sets or replaces the admin
    /// key, opening the store with the existing --master-key-file (or CLOISTER_MASTER_KEY), and
    /// creates a namespace record for every namespace that already has sessions, owned by the
    /// owners of those sessions' current policies. Both are audited.
    ///
    /// Examples:
    ///   cloister keys gen --out admin.pem
    ///   cloister cas init --data ./cas-data --master-key-file ./master.key --admin-key admin.pem.pub
    ///   cloister cas init --data ./old-data --master-key-file ./old.key --admin-key admin.pem.pub
    #[command(verbatim_doc_comment)]
    Init(InitArgs),
}

impl Command {
    /// `serve` logs at info, as text or JSON; `init` like every other command.
    pub fn log_style(&self) -> LogStyle {
        match self {
            Command::Serve(args) => args.log_format.log_style(),
            Command::Init(_) => LogStyle::default(),
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: a free port; DIR/cas.addr says which).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// The data directory: store, audit log, cas.crt, cas.addr (created 0700 if missing).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// The master key file (64 hex digits or 32 bytes; mode 0600). Default: $CLOISTER_MASTER_KEY.
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// Refused: a key on the command line is visible to every user of the machine.
    #[arg(long, value_name = "KEY", hide = true)]
    master_key: Option<String>,
    /// Insecure, for development: trust sim evidence signed by this platform public key (PEM,
    /// `evidence sim-keygen`). Sim evidence is signed by software, not hardware; policies must
    /// still list `sim` in security.tees. Logged as a warning. Repeatable.
    #[arg(long = "insecure-sim-platform-key", value_name = "PUBFILE")]
    insecure_sim_platform_keys: Vec<PathBuf>,
    /// Refused: renamed --insecure-sim-platform-key.
    #[arg(long = "sim-platform-key", value_name = "PUBFILE", hide = true)]
    old_sim_platform_keys: Vec<PathBuf>,
    /// A DNS name or IP address for the TLS certificate made on first start. Repeatable;
    /// default localhost, 127.0.0.1 and ::1. Later starts keep the certificate (pins stay valid).
    #[arg(long = "tls-name", value_name = "NAME")]
    tls_names: Vec<String>,
    /// The CAS's base URL, the `iss` of its tokens. Default: https://NAME:PORT with the first
    /// --tls-name (or the listen address) and the port listened on.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// Accept Azure Attestation tokens from this issuer, signed by a key in --maa-jwks.
    #[arg(long, value_name = "URL", requires = "maa_jwks")]
    maa_issuer: Option<String>,
    /// The JWK set (JSON file) of --maa-issuer's signing keys.
    #[arg(long, value_name = "FILE", requires = "maa_issuer")]
    maa_jwks: Option<PathBuf>,
    /// Read `import: {kubernetes: {secret: S, key: K}}` secrets from DIR/S/K (for the Secret
    /// names --imports allows).
    #[arg(long, value_name = "DIR")]
    kubernetes_secrets_dir: Option<PathBuf>,
    /// The auditor's public key (`cloister keys gen` writes it to KEY.pem.pub): its signed
    /// requests read every audit entry and ask the CAS to verify its log. Without it, owners and
    /// readers still read their own sessions' entries; only the signed head is public.
    #[arg(long, value_name = "FILE.pub")]
    auditor_key: Option<PathBuf>,
    /// What policies may import from this host, per namespace (YAML, or TOML for *.toml).
    /// Default: nothing. See the long help (--help) for the format.
    #[arg(long, value_name = "FILE")]
    imports: Option<PathBuf>,
    /// Internal: the master key (64 hex digits) arrives on stdin, from this same process
    /// before it re-executed itself without CLOISTER_MASTER_KEY in its environment.
    #[arg(long, hide = true, conflicts_with = "master_key_file")]
    master_key_stdin: bool,
    /// The log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    // ---- resource limits (docs/defaults.md says why each default) ----
    /// Per-client limit on POST /v1/nonce: requests per second, and the burst allowed after a
    /// pause (default 50,500). Clients are told apart by peer IP address (IPv6: /64).
    #[arg(long, value_name = "RATE[,BURST]", help_heading = "Limits")]
    nonce_rate: Option<RateLimit>,
    /// Per-client limit on POST /v1/attest (default 50,500).
    #[arg(long, value_name = "RATE[,BURST]", help_heading = "Limits")]
    attest_rate: Option<RateLimit>,
    /// Per-client limit on every /v1/sessions request (default 10,100).
    #[arg(long, value_name = "RATE[,BURST]", help_heading = "Limits")]
    session_rate: Option<RateLimit>,
    /// The most used nonces remembered until they expire; when full, new attestations get 503
    /// (default 1048576, about 50 MB).
    #[arg(long, value_name = "N", help_heading = "Limits")]
    max_used_nonces: Option<usize>,
    /// How long a client has to finish the TLS handshake (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
        help_heading = "Limits")]
    tls_handshake_timeout: Option<Duration>,
    /// How long a connection may take to send a request head, counted from the handshake or the
    /// previous response: also the idle keep-alive timeout (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
        help_heading = "Limits")]
    header_read_timeout: Option<Duration>,
    /// The most connections open at once; one more is closed at once (default 1024). Keep it
    /// below the open-file limit (ulimit -n).
    #[arg(long, value_name = "N", help_heading = "Limits")]
    max_connections: Option<usize>,
    /// The most connections one client (peer IP address, IPv6: /64) holds at once, so that one
    /// client cannot take every slot (default 32).
    #[arg(long, value_name = "N", help_heading = "Limits")]
    max_connections_per_client: Option<usize>,
}

#[derive(Args)]
pub struct InitArgs {
    /// The data directory to create (0700) if missing.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Where to write the new master key (created 0600; an existing file is never replaced);
    /// for an existing DIR, the master key it was made with (default: $CLOISTER_MASTER_KEY).
    #[arg(long, value_name = "FILE")]
    master_key_file: Option<PathBuf>,
    /// The operator's admin key: an Ed25519 public key file (`keys gen` writes `<key>.pub`).
    #[arg(long, value_name = "PUBFILE")]
    admin_key: Option<PathBuf>,
}

pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(args) => serve(*args),
        Command::Init(args) => init(args, quiet),
    }
}

fn init(args: InitArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let admin = args.admin_key.as_deref().map(read_admin_key).transpose()?;
    let existing = args
        .data
        .join(cloister_cas::store::file::STORE_FILE)
        .exists();
    // A data directory made by `cas init` without --admin-key has a master key but no store
    // yet: setting the admin key later opens (creates) the store with that key.
    let key_made = admin.is_some()
        && args.data.is_dir()
        && args.master_key_file.as_ref().is_some_and(|f| f.exists());
    if existing || key_made {
        let Some(admin) = admin else {
            bail!(
                "{} already holds a CAS store, which can only be opened with the master key it \
                 was made with (to set its admin key, add --admin-key)",
                args.data.display()
            );
        };
        let master = MasterKey::load(args.master_key_file.as_deref())?;
        let done = cloister_cas::admin::init_admin_in(
            &args.data,
            &master,
            &admin,
            std::time::SystemTime::now(),
        )
        .with_context(|| format!("cannot set the admin key of {}", args.data.display()))?;
        if !quiet {
            report_admin(&done);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(master_key_file) = &args.master_key_file else {
        bail!("--master-key-file FILE: where to write the new master key");
    };
    if master_key_file.exists() {
        bail!(
            "{} exists; refusing to overwrite a master key (the data it protects would be lost)",
            master_key_file.display()
        );
    }
    create_private_dir(&args.data)?;
    let key = MasterKey::generate();
    key.write_new_file(master_key_file)?;
    if !quiet {
        eprintln!(
            "cloister: wrote {} (0600), master key fingerprint {}",
            master_key_file.display(),
            key.fingerprint()
        );
    }
    if let Some(admin) = admin {
        let done = cloister_cas::admin::init_admin_in(
            &args.data,
            &key,
            &admin,
            std::time::SystemTime::now(),
        )
        .with_context(|| format!("cannot create the CAS store in {}", args.data.display()))?;
        if !quiet {
            report_admin(&done);
        }
    }
    if !quiet {
        eprintln!(
            "cloister: next: cloister cas serve --data {} --master-key-file {}",
            args.data.display(),
            master_key_file.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The SPKI DER of the admin public key file (PEM or base64 DER).
fn read_admin_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the admin key {}", path.display()))?;
    let key = cloister_policy::PublicKey::parse(&text).with_context(|| {
        format!(
            "{}: not an Ed25519 public key (make one with `cloister keys gen`)",
            path.display()
        )
    })?;
    Ok(cloister_cas::admin::owner_der(&key)?)
}

fn report_admin(done: &cloister_cas::admin::AdminInit) {
    let what = if done.unchanged {
        "admin key unchanged"
    } else if done.replaced {
        "replaced the admin key"
    } else {
        "set the admin key"
    };
    eprintln!("cloister: {what}, fingerprint {}", done.fingerprint);
    for (ns, sessions) in &done.migrated {
        eprintln!(
            "cloister: created namespace {ns} for its {sessions} existing session{}, owned by \
             their policies' owners",
            if *sessions == 1 { "" } else { "s" }
        );
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    cloister_attest::private_fs::create_dir(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if !args.old_sim_platform_keys.is_empty() {
        eprintln!(
            "cloister: refusing --sim-platform-key: it was renamed --insecure-sim-platform-key \
             (sim evidence is signed by software, not hardware)"
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    if args.master_key.is_some() {
        eprintln!(
            "cloister: refusing --master-key: a key on the command line is visible to every user \
             of this machine (ps, /proc). Use --master-key-file FILE or {MASTER_KEY_ENV}."
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    if args.master_key_file.is_some() && std::env::var_os(MASTER_KEY_ENV).is_some() {
        eprintln!(
            "cloister: both --master-key-file and {MASTER_KEY_ENV} are set: unset {MASTER_KEY_ENV}              (a key left in the environment stays readable in /proc/PID/environ)"
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    let master = if args.master_key_stdin {
        master_key_from_stdin()?
    } else if args.master_key_file.is_none() && std::env::var_os(MASTER_KEY_ENV).is_some() {
        // Read once, then gone from the environment: this returns only on failure.
        return Err(reexec_without_master_key_env());
    } else {
        MasterKey::load(args.master_key_file.as_deref())?
    };
    tracing::info!(master_key = %master.fingerprint(), "master key loaded");

    create_private_dir(&args.data)?;

    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let url = format!("https://{}", connectable(bound));
    let config = config(&args, bound)?;
    let state = CasState::open(&args.data, &master, config)
        .with_context(|| format!("cannot open the CAS in {}", args.data.display()))?;
    // The store is ours now (it is locked): an address left by a CAS that was killed must not
    // be mistaken for this one before it is ready.
    serve::remove_if_present(&args.data.join(ADDR_FILE))?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let stop = serve::shutdown_signal()?;
        serve::write_addr_file(&args.data.join(ADDR_FILE), &url)?;
        ready(&args, &state, &url)?;
        server::run(listener, state, stop).await?;
        serve::remove_if_present(&args.data.join(ADDR_FILE))?;
        tracing::info!("CAS stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// The CAS configuration from the flags, for a CAS bound to `bound`.
fn config(args: &ServeArgs, bound: SocketAddr) -> anyhow::Result<CasConfig> {
    let issuer = match &args.issuer {
        Some(issuer) => issuer.clone(),
        None => {
            let host = match args.tls_names.first() {
                Some(name) if name.parse::<Ipv6Addr>().is_ok() => format!("[{name}]"),
                Some(name) => name.clone(),
                None => match connectable(bound).ip() {
                    IpAddr::V6(ip) => format!("[{ip}]"),
                    ip => ip.to_string(),
                },
            };
            format!("https://{host}:{}", bound.port())
        }
    };
    let mut builder = CasConfig::builder(issuer);
    for path in &args.insecure_sim_platform_keys {
        let key = cloister_attest::sim::PublicKey::load(path)
            .with_context(|| format!("{}: not a sim platform public key", path.display()))?;
        tracing::warn!(
            sim_platform_key = %key.fingerprint(),
            "--insecure-sim-platform-key: trusting sim evidence, which software signs, not hardware"
        );
        builder = builder.dangerous().trust_sim_key(key);
    }
    if let (Some(issuer), Some(jwks)) = (&args.maa_issuer, &args.maa_jwks) {
        let jwks =
            std::fs::read(jwks).with_context(|| format!("cannot read {}", jwks.display()))?;
        builder = builder.maa(issuer.clone(), jwks);
    }
    if !args.tls_names.is_empty() {
        builder = builder.tls_names(args.tls_names.clone());
    }
    if let Some(dir) = &args.kubernetes_secrets_dir {
        builder = builder.kubernetes_secrets_dir(dir);
    }
    if let Some(path) = &args.auditor_key {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the auditor key {}", path.display()))?;
        let key = cloister_policy::PublicKey::parse(&text)
            .with_context(|| format!("{}: not an Ed25519 public key", path.display()))?;
        tracing::info!(auditor = %key.fingerprint(), "audit reads of every entry for this key");
        builder = builder.auditor_key(&key);
    }
    if let Some(file) = &args.imports {
        let rules = ImportRules::load(file)?;
        tracing::info!(imports = %file.display(), "host imports allowed by the import rules");
        builder = builder.imports(rules);
    }
    builder = builder.limits(limits(args));
    Ok(builder.build()?)
}

/// The resource limits: the defaults, with the flags given.
fn limits(args: &ServeArgs) -> Limits {
    let mut limits = Limits::default();
    if let Some(rate) = args.nonce_rate {
        limits.nonce_rate = rate;
    }
    if let Some(rate) = args.attest_rate {
        limits.attest_rate = rate;
    }
    if let Some(rate) = args.session_rate {
        limits.session_rate = rate;
    }
    if let Some(n) = args.max_used_nonces {
        limits.max_used_nonces = n;
    }
    if let Some(t) = args.tls_handshake_timeout {
        limits.tls_handshake_timeout = t;
    }
    if let Some(t) = args.header_read_timeout {
        limits.header_read_timeout = t;
    }
    if let Some(n) = args.max_connections {
        limits.max_connections = n;
    }
    if let Some(n) = args.max_connections_per_client {
        limits.max_connections_per_client = n;
    }
    limits
}

/// Reads `CLOISTER_MASTER_KEY`, then re-executes this program (`exec`: same pid, same
/// arguments plus `--master-key-stdin`) with the variable removed from its environment and the
/// key on a pipe as its stdin. Rust 2024 makes `remove_var` unsafe, which this workspace
/// forbids; a new program image gets a new environment block, so `/proc/PID/environ` no
/// longer shows the key. Returns only on failure.
fn reexec_without_master_key_env() -> anyhow::Error {
    use std::os::unix::process::CommandExt as _;
    let key = match MasterKey::from_env() {
        Ok(Some(key)) => key,
        Ok(None) => return anyhow::anyhow!("{MASTER_KEY_ENV} vanished"),
        Err(e) => return e.into(),
    };
    let (reader, mut writer) = match std::io::pipe() {
        Ok(pipe) => pipe,
        Err(e) => return anyhow::Error::new(e).context("cannot make a pipe for the master key"),
    };
    // 65 bytes fit in any pipe buffer: written before `exec`, read by the new image. The
    // writing end is close-on-exec, so the reader sees end of file after the key.
    if let Err(e) = key.write_hex(&mut writer) {
        return anyhow::Error::new(e).context("cannot hand the master key over");
    }
    drop(writer);
    // /proc/self/exe is this very program, even if its file was replaced or removed since.
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "cloister".into());
    let err = std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .arg("--master-key-stdin")
        .env_remove(MASTER_KEY_ENV)
        .stdin(reader)
        .exec();
    anyhow::Error::new(err).context("cannot re-execute without the master key in the environment")
}

/// The master key handed over by [`reexec_without_master_key_env`] on stdin.
fn master_key_from_stdin() -> anyhow::Result<MasterKey> {
    use std::io::Read as _;
    if std::env::var_os(MASTER_KEY_ENV).is_some() {
        bail!("--master-key-stdin is internal: {MASTER_KEY_ENV} must be gone by now");
    }
    let mut text = zeroize::Zeroizing::new(String::new());
    std::io::stdin()
        .take(1024)
        .read_to_string(&mut text)
        .context("cannot read the master key from stdin")?;
    Ok(MasterKey::from_hex(&text, "stdin")?)
}

/// The address clients connect to: an unspecified listen address (`0.0.0.0`, `::`) becomes
/// the loopback address of its family.
pub(crate) fn connectable(bound: SocketAddr) -> SocketAddr {
    let ip = match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, bound.port())
}

/// Tells whoever waits that the CAS is up: its URL, certificate and audit key on stderr.
fn ready(args: &ServeArgs, state: &CasState, url: &str) -> anyhow::Result<()> {
    let cert = args.data.join(CERT_FILE);
    let der = pem::parse(state.certificate_pem()).context("the CAS certificate is not PEM")?;
    let sha256 = hex::encode(sha2::Sha256::digest(der.contents()));
    let audit = state.audit_public_key().to_hex();
    let mut err = std::io::stderr().lock();
    if args.log_format == LogFormat::Json {
        let line = serde_json::json!({
            "ready": true,
            "url": url,
            "certificate": cert,
            "certificate_sha256": sha256,
            "audit_public_key": audit,
        });
        writeln!(err, "{line}")?;
    } else {
        writeln!(err, "cloister: CAS listening on {url}")?;
        writeln!(
            err,
            "cloister: certificate {} (SHA-256 {sha256})",
            cert.display()
        )?;
        writeln!(err, "cloister: audit public key {audit}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_addresses_become_loopback() {
        let v4: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        assert_eq!(connectable(v4).to_string(), "127.0.0.1:8443");
        let v6: SocketAddr = "[::]:1".parse().unwrap();
        assert_eq!(connectable(v6).to_string(), "[::1]:1");
        let given: SocketAddr = "10.0.0.1:2".parse().unwrap();
        assert_eq!(connectable(given), given);
    }
}

//! `cloister las serve`: run the Local Attestation Service, the node agent that hands workloads
//! their node's TEE evidence and the collateral that goes with it.
//!
//! The flags map one to one onto [`LasConfig`]: the evidence source (`--sim-key …` or the
//! hardware under `--root`), the collateral services, the offline bundle, the cache directory and
//! the refresh policy. The configuration is validated before the port is opened, so a typo fails
//! at once with the flag it concerns. Once it accepts connections, `las serve` prints its URL on
//! stderr (and writes it to `--addr-file`), and serves until SIGTERM or SIGINT.

use crate::cas::connectable;
use crate::serve::{self, LogFormat};
use crate::{EXIT_ERROR, LogStyle};
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand, ValueEnum};
use cloister_attest::TcbStatus;
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_las::{
    self as las, AMD_KDS_URL, AmdProduct, CollateralSettings, EvidenceSource,
    INTEL_ROOT_CA_CRL_URL, INTEL_SGX_URL, INTEL_TDX_URL, LasConfig, LasState, Limits,
    RefreshPolicy,
};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub enum Command {
    /// Run the LAS: serve evidence and collateral to the node's workloads until SIGTERM or Ctrl-C.
    ///
    /// One LAS runs on every node (a DaemonSet with a hostPort); workloads reach it at
    /// http://$HOST_IP:9480 (`cloister run --las URL`). It serves POST /v1/evidence (the node's
    /// TEE evidence binding the workload's report_data), POST /v1/collateral and GET
    /// /v1/health. It holds no secret but the sim key and decides nothing: the CAS verifies.
    ///
    /// Development (sim TEE, no hardware; policies must list `sim`, and the CAS must trust the
    /// public key with --insecure-sim-platform-key):
    ///   cloister evidence sim-keygen --out platform.pem
    ///   cloister las serve --listen 127.0.0.1:9480 --sim-key platform.pem --offline
    ///
    /// Hardware (SEV-SNP / TDX confidential VM through configfs-tsm, or SGX through Gramine),
    /// collateral from Intel PCS and AMD KDS (the defaults; a PCCS with --intel-sgx-url …),
    /// kept in --cache-dir across restarts:
    ///   cloister las serve --cache-dir /var/cache/cloister-las
    ///
    /// Air-gapped (no collateral service: an offline bundle, refreshed by hand):
    ///   cloister las serve --offline --offline-bundle /etc/cloister/collateral
    ///
    /// While a valid copy of an item is cached, a failing or rate-limited collateral service
    /// does not fail a request: the cached copy is served and refreshed later, --refresh-margin
    /// before it expires. Once it accepts connections it prints
    ///
    ///   cloister: LAS listening on http://127.0.0.1:9480
    ///
    /// (with --log-format json, one JSON object with "url", "tee" and "source") and writes the
    /// URL to --addr-file. SIGTERM or SIGINT stops it: requests in flight finish, the address
    /// file is removed, exit 0. Logs go to stderr (level info; RUST_LOG overrides).
    #[command(verbatim_doc_comment)]
    Serve(Box<ServeArgs>),
}

impl Command {
    /// `serve` logs at info, as text or JSON.
    pub fn log_style(&self) -> LogStyle {
        match self {
            Command::Serve(args) => args.log_format.log_style(),
        }
    }
}

/// An AMD EPYC generation, for `--amd-product`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Product {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 (Zen 4), also Bergamo and Siena.
    Genoa,
}

impl From<Product> for AmdProduct {
    fn from(p: Product) -> Self {
        match p {
            Product::Milan => AmdProduct::Milan,
            Product::Genoa => AmdProduct::Genoa,
        }
    }
}

#[derive(Args)]
pub struct ServeArgs {
    /// The address to listen on (port 0: a free port; the ready line and --addr-file say which).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([0, 0, 0, 0], las::DEFAULT_PORT)))]
    listen: SocketAddr,
    /// Write the LAS's URL to FILE (atomically) once it accepts connections; removed at exit.
    #[arg(long, value_name = "FILE")]
    addr_file: Option<PathBuf>,
    /// DEVELOPMENT ONLY: serve sim evidence signed with this platform key (PKCS#8 PEM, from
    /// `cloister evidence sim-keygen`) instead of the node's TEE. Anyone who reaches the LAS
    /// gets evidence for any key.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "root",
        help_heading = "Evidence"
    )]
    sim_key: Option<PathBuf>,
    /// With --sim-key: the measurement signed when the workload claims none (hex, 1 to 64
    /// bytes). `cloister run --las` claims its own.
    #[arg(long, value_name = "HEX", requires = "sim_key", value_parser = parse_hex, help_heading = "Evidence")]
    sim_measurement: Option<Measurement>,
    /// With --sim-key: the security version signed.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 0,
        requires = "sim_key",
        help_heading = "Evidence"
    )]
    sim_svn: u32,
    /// With --sim-key: sign a debug-mode TEE (policies refuse it unless they tolerate debug).
    #[arg(long, requires = "sim_key", help_heading = "Evidence")]
    sim_debug: bool,
    /// With --sim-key: the TCB status signed (UpToDate, SWHardeningNeeded, ConfigurationNeeded,
    /// ConfigurationAndSWHardeningNeeded, OutOfDate, OutOfDateConfigurationNeeded).
    #[arg(long, value_name = "STATUS", default_value = "UpToDate", requires = "sim_key",
        value_parser = parse_tcb_status, help_heading = "Evidence")]
    sim_tcb_status: TcbStatus,
    /// With --sim-key: an advisory id the simulated platform reports. Repeatable.
    #[arg(
        long = "sim-advisory",
        value_name = "ID",
        requires = "sim_key",
        help_heading = "Evidence"
    )]
    sim_advisories: Vec<String>,
    /// Hardware: the filesystem root under which the TEE interface is found (configfs-tsm at
    /// ROOT/sys/kernel/config/tsm/report, Gramine at ROOT/dev/attestation). Default: /.
    #[arg(long, value_name = "DIR", help_heading = "Evidence")]
    root: Option<PathBuf>,
    /// No collateral from the network: only from --offline-bundle and --cache-dir (air-gapped
    /// nodes, development).
    #[arg(long, conflicts_with_all = ["intel_sgx_url", "intel_tdx_url", "intel_root_ca_crl_url", "amd_kds_url"],
        help_heading = "Collateral")]
    offline: bool,
    /// A directory of collateral files consulted before the network (layout: see the LAS docs;
    /// `sgx/…`, `tdx/…`, `snp/<Milan|Genoa>/…`).
    #[arg(long, value_name = "DIR", help_heading = "Collateral")]
    offline_bundle: Option<PathBuf>,
    /// Keep fetched collateral here across restarts (created if missing). Default: memory only.
    #[arg(long, value_name = "DIR", help_heading = "Collateral")]
    cache_dir: Option<PathBuf>,
    /// Intel PCS (or a PCCS) SGX API base URL.
    #[arg(long, value_name = "URL", default_value = INTEL_SGX_URL, help_heading = "Collateral")]
    intel_sgx_url: String,
    /// Intel PCS (or a PCCS) TDX API base URL.
    #[arg(long, value_name = "URL", default_value = INTEL_TDX_URL, help_heading = "Collateral")]
    intel_tdx_url: String,
    /// The Intel SGX Root CA CRL URL (with a PCCS: <sgx base>/rootcacrl).
    #[arg(long, value_name = "URL", default_value = INTEL_ROOT_CA_CRL_URL, help_heading = "Collateral")]
    intel_root_ca_crl_url: String,
    /// AMD Key Distribution Service base URL.
    #[arg(long, value_name = "URL", default_value = AMD_KDS_URL, help_heading = "Collateral")]
    amd_kds_url: String,
    /// This node's AMD product, for SEV-SNP reports that do not name theirs.
    #[arg(long, value_enum, value_name = "PRODUCT", help_heading = "Collateral")]
    amd_product: Option<Product>,
    /// Refresh a cached item once it expires within this long (e.g. 7d, 12h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
        default_value = "7d", help_heading = "Collateral")]
    refresh_margin: Duration,
    /// The timeout of each request to a collateral service.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
        default_value = "30s", help_heading = "Collateral")]
    fetch_timeout: Duration,
    /// The longest one request to the LAS may take, collateral fetches included.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
        default_value = "60s", help_heading = "Limits")]
    request_timeout: Duration,
    /// The longest the TEE interface may take to produce evidence.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration,
        default_value = "20s", help_heading = "Limits")]
    collect_timeout: Duration,
    /// How many evidence collections may run at once.
    #[arg(long, value_name = "N", default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=1024), help_heading = "Limits")]
    max_concurrent_collections: u32,
    /// The log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// A measurement given in hex (a newtype: clap would read a `Vec<u8>` as many values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurement(Vec<u8>);

fn parse_hex(s: &str) -> Result<Measurement, String> {
    let bytes = hex::decode(s.trim()).map_err(|e| format!("not hex: {e}"))?;
    if bytes.is_empty() {
        return Err("empty".into());
    }
    Ok(Measurement(bytes))
}

fn parse_tcb_status(s: &str) -> Result<TcbStatus, String> {
    let status: TcbStatus = serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("unknown TCB status {s:?}"))?;
    if status == TcbStatus::NotReported {
        return Err("NotReported is for SEV-SNP reports, not sim evidence".into());
    }
    Ok(status)
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Serve(args) => serve(*args),
    }
}

/// The evidence source the flags name.
fn source(args: &ServeArgs) -> anyhow::Result<EvidenceSource> {
    let Some(path) = &args.sim_key else {
        return Ok(EvidenceSource::Hardware {
            root: args.root.clone().unwrap_or_else(|| PathBuf::from("/")),
        });
    };
    let key = PlatformKey::load(path)
        .with_context(|| format!("{}: not a sim platform key", path.display()))?;
    let template = Statement {
        // A workload that claims no measurement gets this one; 32 zero bytes say "unmeasured".
        measurement: args
            .sim_measurement
            .clone()
            .map_or_else(|| vec![0; 32], |m| m.0),
        svn: args.sim_svn,
        debug: args.sim_debug,
        tcb_status: args.sim_tcb_status,
        advisory_ids: args.sim_advisories.clone(),
        ..Statement::default()
    };
    Ok(EvidenceSource::Sim { key, template })
}

/// The collateral settings the flags name.
fn collateral(args: &ServeArgs) -> CollateralSettings {
    let network = |url: &String| (!args.offline).then(|| url.clone());
    CollateralSettings {
        intel_sgx_url: network(&args.intel_sgx_url),
        intel_tdx_url: network(&args.intel_tdx_url),
        intel_root_ca_crl_url: network(&args.intel_root_ca_crl_url),
        amd_kds_url: network(&args.amd_kds_url),
        offline_bundle: args.offline_bundle.clone(),
        cache_dir: args.cache_dir.clone(),
        refresh: RefreshPolicy {
            margin: args.refresh_margin,
            ..RefreshPolicy::default()
        },
        fetch_timeout: args.fetch_timeout,
        amd_product: args.amd_product.map(AmdProduct::from),
    }
}

/// The validated configuration, for a LAS bound to `bound`.
fn config(args: &ServeArgs, bound: SocketAddr) -> anyhow::Result<LasConfig> {
    let limits = Limits {
        request_timeout: args.request_timeout,
        collect_timeout: args.collect_timeout,
        max_concurrent_collections: usize::try_from(args.max_concurrent_collections)
            .context("--max-concurrent-collections")?,
    };
    let config = LasConfig::new(bound, source(args)?, collateral(args))?.with_limits(limits)?;
    Ok(config)
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    if args.sim_key.is_some() && args.root.is_some() {
        // clap refuses the pair already; kept for callers that build ServeArgs otherwise.
        bail!("--sim-key and --root are exclusive");
    }
    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let bound = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let config = match config(&args, bound) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("cloister: {e:#}");
            return Ok(ExitCode::from(EXIT_ERROR));
        }
    };
    if let Some(key) = config.sim_public_key() {
        eprintln!(
            "cloister: WARNING: --sim-key: serving sim evidence. DEVELOPMENT ONLY: no hardware \
             protects the workloads, and only policies that accept `sim` admit them. Platform \
             key {} (trust it with `cas serve --insecure-sim-platform-key`)",
            key.fingerprint()
        );
    }
    let url = format!("http://{}", connectable(bound));
    let tee = config.tee();
    let kind = config.source_kind();
    let state = LasState::new(config)?;
    if let Some(path) = &args.addr_file {
        serve::remove_if_present(path)?;
    }
    listener
        .set_nonblocking(true)
        .context("cannot make the listener non-blocking")?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let stop = serve::shutdown_signal()?;
        let listener =
            tokio::net::TcpListener::from_std(listener).context("cannot use the listener")?;
        // The ready line first: whoever sees the address file can read it already.
        let mut err = std::io::stderr().lock();
        if args.log_format == LogFormat::Json {
            let line = serde_json::json!({
                "ready": true,
                "url": url,
                "tee": tee.as_str(),
                "source": kind,
            });
            writeln!(err, "{line}")?;
        } else {
            writeln!(err, "cloister: LAS listening on {url} (tee {tee})")?;
        }
        drop(err);
        if let Some(path) = &args.addr_file {
            serve::write_addr_file(path, &url)?;
        }
        las::run(listener, state, stop).await?;
        if let Some(path) = &args.addr_file {
            serve::remove_if_present(path)?;
        }
        tracing::info!("LAS stopped");
        Ok(ExitCode::SUCCESS)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use std::path::Path;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: Command,
    }

    fn serve_args(args: &[&str]) -> Result<ServeArgs, clap::Error> {
        let mut all = vec!["las", "serve"];
        all.extend_from_slice(args);
        let Command::Serve(args) = Cli::try_parse_from(all)?.cmd;
        Ok(*args)
    }

    #[test]
    fn defaults_are_all_interfaces_and_the_public_services() {
        let args = serve_args(&[]).unwrap();
        assert_eq!(args.listen.to_string(), "0.0.0.0:9480");
        let c = collateral(&args);
        assert_eq!(
            c,
            CollateralSettings {
                fetch_timeout: Duration::from_secs(30),
                ..CollateralSettings::default()
            }
        );
        assert!(
            matches!(source(&args).unwrap(), EvidenceSource::Hardware { root } if root == Path::new("/"))
        );
    }

    #[test]
    fn offline_drops_every_service_and_keeps_the_bundle() {
        let args = serve_args(&[
            "--offline",
            "--offline-bundle",
            "/b",
            "--refresh-margin",
            "12h",
        ])
        .unwrap();
        let c = collateral(&args);
        assert_eq!(c.intel_sgx_url, None);
        assert_eq!(c.intel_tdx_url, None);
        assert_eq!(c.intel_root_ca_crl_url, None);
        assert_eq!(c.amd_kds_url, None);
        assert_eq!(c.offline_bundle.as_deref(), Some(Path::new("/b")));
        assert_eq!(c.refresh.margin, Duration::from_secs(12 * 3600));
        assert!(serve_args(&["--offline", "--amd-kds-url", "https://kds"]).is_err());
    }

    #[test]
    fn sim_flags_need_a_sim_key_and_exclude_hardware() {
        assert!(serve_args(&["--sim-svn", "3"]).is_err());
        assert!(serve_args(&["--sim-key", "k.pem", "--root", "/"]).is_err());
        assert!(serve_args(&["--sim-key", "k.pem", "--sim-measurement", "zz"]).is_err());
        assert!(serve_args(&["--sim-key", "k.pem", "--sim-tcb-status", "NotReported"]).is_err());
        let args = serve_args(&[
            "--sim-key",
            "k.pem",
            "--sim-tcb-status",
            "OutOfDate",
            "--sim-measurement",
            "ab01",
        ])
        .unwrap();
        assert_eq!(args.sim_tcb_status, TcbStatus::OutOfDate);
        assert_eq!(args.sim_measurement, Some(Measurement(vec![0xab, 0x01])));
    }

    #[test]
    fn the_sim_template_carries_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("platform.pem");
        PlatformKey::generate().save(&key).unwrap();
        let args = serve_args(&[
            "--sim-key",
            key.to_str().unwrap(),
            "--sim-svn",
            "7",
            "--sim-debug",
            "--sim-advisory",
            "INTEL-SA-00001",
        ])
        .unwrap();
        let EvidenceSource::Sim { template, .. } = source(&args).unwrap() else {
            panic!("not sim")
        };
        assert_eq!(template.svn, 7);
        assert!(template.debug);
        assert_eq!(template.measurement, vec![0; 32]);
        assert_eq!(template.advisory_ids, vec!["INTEL-SA-00001".to_owned()]);
    }
}

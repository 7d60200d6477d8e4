//! `cloister bench cas`: attestations per second and their latency, against the null requests
//! `POST /v1/nonce` and `GET /v1/health` measured on the same connections in the same run.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use cloister_attest::collect::SimCollector;
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_cas::client::{CasClient, attest_workload};
use cloister_cas::config::Limits;
use cloister_cas::envelope::WorkloadKey;
use cloister_cas::server::{self, CasState};
use cloister_cas::{CasConfig, MasterKey};
use cloister_policy::{OwnerKey, SignedPolicy};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::{CpuSnapshot, Latency, OTHER, histogram, micros, progress};
use crate::{EXIT_ERROR, output};

/// The thread-name prefix of the in-process CAS's runtime.
const SERVER_THREADS: &str = "cas-server";
/// The thread-name prefix of the load generator's runtime.
const CLIENT_THREADS: &str = "bench-client";
/// The session the in-process CAS is given, and its service.
const SESSION: &str = "bench/cas";
const SERVICE: &str = "worker";
/// The measurement the in-process policy pins and the sim workloads claim.
const MEASUREMENT: [u8; 32] = [0xbe; 32];
/// How many `fsync`s the data directory probe times.
const FSYNC_PROBES: usize = 20;
/// Distinct error messages kept for the report.
const MAX_ERROR_MESSAGES: usize = 5;

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent sim workloads, each with its own kept-alive HTTPS connection.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    clients: u32,
    /// How long to measure each phase (attest, then each baseline).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration,
        conflicts_with = "attestations")]
    duration: Duration,
    /// Measure this many attestations (and as many of each baseline request) instead.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    attestations: Option<u64>,
    /// Attest this long before measuring (connections, caches, generated secrets).
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Print JSON: {"target", "clients", "cores", "warmup_seconds", "data_dir_fsync",
    /// "phases": [{"name", "what", "completed", "errors", "seconds", "per_second", "latency",
    /// "cpu"}], "ratios": [{"baseline", "throughput", "p99"}], "cas_cpu_bound_per_second",
    /// "errors"}; latencies in ms, CPU in s and ms per request.
    #[arg(long)]
    json: bool,
    /// Bench the CAS at this URL instead of one started in-process.
    #[arg(long, value_name = "URL", requires_all = ["cas_cert", "platform_key", "session", "measurement"])]
    cas: Option<String>,
    /// With --cas: the CAS's certificate to pin (its `cas.crt`).
    #[arg(long, value_name = "FILE", requires = "cas")]
    cas_cert: Option<PathBuf>,
    /// With --cas: the sim platform private key the CAS trusts (`cloister evidence sim-keygen`).
    #[arg(long, value_name = "FILE", requires = "cas")]
    platform_key: Option<PathBuf>,
    /// With --cas: the session to attest to; its policy must accept `sim`.
    #[arg(long, requires = "cas")]
    session: Option<String>,
    /// With --cas: the service within the session.
    #[arg(long, default_value = SERVICE, requires = "cas")]
    service: String,
    /// With --cas: the measurement the sim evidence claims (hex), as the service pins it.
    #[arg(long, value_name = "HEX", requires = "cas")]
    measurement: Option<String>,
    /// Measure attestation only, without the baselines (for profiling).
    #[arg(long, hide = true)]
    skip_baselines: bool,
}

/// What each phase's clients send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// fresh key → nonce → sim evidence → attest → open the configuration.
    Attest,
    /// `POST /v1/nonce`.
    Nonce,
    /// `GET /v1/health`.
    Health,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Attest => "attest",
            Op::Nonce => "nonce",
            Op::Health => "health",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Op::Attest => "key → POST /v1/nonce → sim evidence → POST /v1/attest → open",
            Op::Nonce => "POST /v1/nonce",
            Op::Health => "GET /v1/health",
        }
    }
}

/// When a phase ends.
#[derive(Clone, Copy, Debug)]
enum Limit {
    Time(Duration),
    Count(u64),
}

/// One simulated workload: its own connection, the shared sim platform.
struct Workload {
    client: CasClient,
    collector: Arc<SimCollector>,
    session: Arc<str>,
    service: Arc<str>,
}

impl Workload {
    async fn once(&self, op: Op) -> anyhow::Result<()> {
        match op {
            Op::Attest => {
                let key = WorkloadKey::generate()?;
                let attested = attest_workload(
                    &self.client,
                    &self.session,
                    &self.service,
                    &key,
                    &*self.collector,
                    None,
                    &[],
                )
                .await?;
                if attested.config.service != *self.service {
                    bail!("the configuration opened is for another service");
                }
            }
            Op::Nonce => {
                self.client.nonce().await?;
            }
            Op::Health => {
                self.client.health().await?;
            }
        }
        Ok(())
    }
}

/// CPU seconds of each thread group during a phase.
#[derive(Clone, Debug, Serialize)]
struct Cpu {
    /// The in-process CAS's threads (absent when benching a remote CAS).
    cas_seconds: Option<f64>,
    /// The load generator's threads (the workloads' crypto, TLS and JSON).
    clients_seconds: f64,
    /// Everything else in this process.
    other_seconds: f64,
    /// CAS CPU per completed request, milliseconds.
    cas_ms_per_request: Option<f64>,
    /// Client CPU per completed request, milliseconds.
    clients_ms_per_request: f64,
}

/// One measured phase.
#[derive(Clone, Debug, Serialize)]
struct Phase {
    name: &'static str,
    what: &'static str,
    completed: u64,
    errors: u64,
    seconds: f64,
    per_second: f64,
    latency: Latency,
    cpu: Option<Cpu>,
}

/// How attestation compares with a baseline of the same run.
#[derive(Clone, Debug, Serialize)]
struct Ratio {
    baseline: &'static str,
    /// attestations/s ÷ baseline requests/s.
    throughput: f64,
    /// attestation p99 ÷ baseline p99.
    p99: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    target: String,
    clients: u32,
    cores: usize,
    warmup_seconds: f64,
    /// Latency of appending 256 bytes and `fsync`ing, in the in-process CAS's data directory,
    /// before the phases: the floor under every durable write.
    data_dir_fsync: Option<Latency>,
    phases: Vec<Phase>,
    ratios: Vec<Ratio>,
    /// Attestations/s the in-process CAS could sustain on `cores` from its CPU time alone, if the
    /// clients ran elsewhere: `cores ÷ CAS CPU per attestation`. An estimate, labelled as such.
    cas_cpu_bound_per_second: Option<f64>,
    errors: Vec<String>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let hidden = quiet || args.json;
    let client_rt = runtime(CLIENT_THREADS)?;
    let (target, cas) = match &args.cas {
        Some(url) => (Target::remote(url, &args)?, None),
        None => {
            let (cas, target) = InProcess::start(&client_rt)?;
            (target, Some(cas))
        }
    };
    let groups: &[&'static str] = &[SERVER_THREADS, CLIENT_THREADS];
    let workloads = (0..args.clients)
        .map(|_| {
            Ok(Arc::new(Workload {
                client: CasClient::new(&target.url, &target.cert_pem)?,
                collector: target.collector.clone(),
                session: target.session.clone(),
                service: target.service.clone(),
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let fsync = cas.as_ref().map(InProcess::fsync_probe).transpose()?;
    let mut errors = Vec::new();
    if !args.warmup.is_zero() {
        let bar = progress(1, hidden);
        bar.set_prefix("warmup");
        let warm = client_rt.block_on(phase(
            &workloads,
            Op::Attest,
            Limit::Time(args.warmup),
            &bar,
        ));
        bar.finish_and_clear();
        note(&mut errors, warm.messages);
    }
    let limit = args
        .attestations
        .map_or(Limit::Time(args.duration), Limit::Count);
    let mut phases = Vec::new();
    let ops: &[Op] = if args.skip_baselines {
        &[Op::Attest]
    } else {
        &[Op::Attest, Op::Nonce, Op::Health]
    };
    for &op in ops {
        let bar = progress(1, hidden);
        bar.set_prefix(op.name());
        let before = CpuSnapshot::now(groups);
        let measured = client_rt.block_on(phase(&workloads, op, limit, &bar));
        let after = CpuSnapshot::now(groups);
        bar.finish_and_clear();
        let cpu = before.zip(after).map(|(b, a)| {
            let per = |d: Duration| 1000.0 * d.as_secs_f64() / measured.completed.max(1) as f64;
            let server = a.since(&b, SERVER_THREADS);
            let clients = a.since(&b, CLIENT_THREADS);
            Cpu {
                cas_seconds: cas.as_ref().map(|_| server.as_secs_f64()),
                clients_seconds: clients.as_secs_f64(),
                other_seconds: a.since(&b, OTHER).as_secs_f64(),
                cas_ms_per_request: cas.as_ref().map(|_| per(server)),
                clients_ms_per_request: per(clients),
            }
        });
        note(&mut errors, measured.messages);
        let seconds = measured.elapsed.as_secs_f64();
        phases.push(Phase {
            name: op.name(),
            what: op.what(),
            completed: measured.completed,
            errors: measured.errors,
            seconds,
            per_second: measured.completed as f64 / seconds.max(1e-9),
            latency: Latency::of(&measured.histogram),
            cpu,
        });
    }
    if let Some(cas) = cas {
        cas.stop()?;
    }

    let ratios = phases[1..]
        .iter()
        .map(|base| Ratio {
            baseline: base.name,
            throughput: phases[0].per_second / base.per_second.max(1e-9),
            p99: phases[0].latency.p99_ms / base.latency.p99_ms.max(1e-6),
        })
        .collect();
    let failed: u64 = phases.iter().map(|p| p.errors).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cas_cpu_bound_per_second = phases[0]
        .cpu
        .as_ref()
        .and_then(|c| c.cas_ms_per_request)
        .filter(|ms| *ms > 0.0 && phases[0].completed > 0)
        .map(|ms| cores as f64 * 1000.0 / ms);
    let report = Report {
        target: target.name,
        clients: args.clients,
        cores,
        warmup_seconds: args.warmup.as_secs_f64(),
        data_dir_fsync: fsync,
        phases,
        ratios,
        cas_cpu_bound_per_second,
        errors,
    };
    if args.json {
        output::json(&report)?;
    } else {
        print_report(&report)?;
    }
    if failed > 0 {
        eprintln!(
            "cloister: {failed} requests failed; first: {}",
            report.errors.first().map_or("?", String::as_str)
        );
        return Ok(ExitCode::from(EXIT_ERROR));
    }
    Ok(ExitCode::SUCCESS)
}

fn note(errors: &mut Vec<String>, messages: Vec<String>) {
    for m in messages {
        if errors.len() < MAX_ERROR_MESSAGES && !errors.contains(&m) {
            errors.push(m);
        }
    }
}

/// A multi-threaded runtime whose threads (workers and blocking pool) are named `name`, and
/// kept alive so that their CPU time stays countable.
fn runtime(name: &'static str) -> anyhow::Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .context("start a tokio runtime")
}

/// What one phase measured.
struct Measured {
    completed: u64,
    errors: u64,
    elapsed: Duration,
    histogram: Histogram<u64>,
    messages: Vec<String>,
}

/// Runs `op` on every workload until `limit`; each workload records its own latencies.
async fn phase(workloads: &[Arc<Workload>], op: Op, limit: Limit, bar: &ProgressBar) -> Measured {
    let done = Arc::new(AtomicU64::new(0));
    let tickets = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for w in workloads {
        let (w, done, tickets) = (w.clone(), done.clone(), tickets.clone());
        tasks.spawn(async move {
            let mut hist = histogram();
            let mut errors = 0u64;
            let mut messages = Vec::new();
            loop {
                let go = match limit {
                    Limit::Time(d) => start.elapsed() < d,
                    Limit::Count(n) => tickets.fetch_add(1, Ordering::Relaxed) < n,
                };
                if !go {
                    break;
                }
                let t0 = Instant::now();
                match w.once(op).await {
                    Ok(()) => hist.saturating_record(micros(t0.elapsed())),
                    Err(e) => {
                        errors += 1;
                        let m = format!("{}: {e:#}", op.name());
                        if messages.len() < MAX_ERROR_MESSAGES && !messages.contains(&m) {
                            messages.push(m);
                        }
                    }
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (hist, errors, messages)
        });
    }
    let (len, unit) = match limit {
        Limit::Time(d) => (u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1), 0),
        Limit::Count(n) => (n, 1),
    };
    bar.set_length(len);
    let mut measured = Measured {
        completed: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        histogram: histogram(),
        messages: Vec::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok((hist, errors, messages))) => {
                    // Both histograms have the same bounds, so adding cannot fail.
                    let _ = measured.histogram.add(&hist);
                    measured.errors += errors;
                    note(&mut measured.messages, messages);
                }
                Some(Err(e)) => {
                    measured.errors += 1;
                    note(&mut measured.messages, vec![format!("a workload task failed: {e}")]);
                }
                None => break,
            },
            _ = tick.tick() => {
                let n = done.load(Ordering::Relaxed);
                let elapsed = start.elapsed();
                bar.set_position(if unit == 0 {
                    u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX).min(len)
                } else {
                    n.min(len)
                });
                bar.set_message(format!("{n} done, {:.0}/s", n as f64 / elapsed.as_secs_f64().max(1e-3)));
            }
        }
    }
    measured.elapsed = start.elapsed();
    measured.completed = measured.histogram.len();
    measured
}

/// Where the workloads attest, and as what.
struct Target {
    name: String,
    url: String,
    cert_pem: String,
    collector: Arc<SimCollector>,
    session: Arc<str>,
    service: Arc<str>,
}

impl Target {
    fn remote(url: &str, args: &Args) -> anyhow::Result<Self> {
        // clap's `requires_all` makes these present together with --cas.
        let (Some(cert), Some(key), Some(session), Some(measurement)) = (
            &args.cas_cert,
            &args.platform_key,
            &args.session,
            &args.measurement,
        ) else {
            bail!("--cas needs --cas-cert, --platform-key, --session and --measurement");
        };
        let cert_pem = std::fs::read_to_string(cert)
            .with_context(|| format!("read the CAS certificate {}", cert.display()))?;
        let platform = PlatformKey::load(key)
            .with_context(|| format!("load the sim platform key {}", key.display()))?;
        let measurement = hex::decode(measurement.trim()).context("--measurement is not hex")?;
        Ok(Self {
            name: url.to_owned(),
            url: url.to_owned(),
            cert_pem,
            collector: Arc::new(SimCollector::new(platform, statement(measurement))),
            session: session.as_str().into(),
            service: args.service.as_str().into(),
        })
    }
}

fn statement(measurement: Vec<u8>) -> Statement {
    Statement {
        measurement,
        svn: 1,
        ..Default::default()
    }
}

/// A CAS running in this process on its own runtime, in a temporary data directory.
struct InProcess {
    runtime: Runtime,
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), cloister_cas::Error>>,
    dir: tempfile::TempDir,
}

impl InProcess {
    /// Starts the CAS and creates the bench session through its API (with `client_rt`).
    fn start(client_rt: &Runtime) -> anyhow::Result<(Self, Target)> {
        let runtime = runtime(SERVER_THREADS)?;
        let dir = tempfile::Builder::new()
            .prefix("cloister-bench-cas-")
            .tempdir()
            .context("create a temporary data directory")?;
        let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let url = format!("https://{}", listener.local_addr()?);
        let platform = PlatformKey::generate();
        // The bench's clients all come from this host: per-client limits sized for many
        // hosts would measure the limiter, not the CAS.
        let config = CasConfig::builder(&url)
            .dangerous()
            .trust_sim_key(platform.public_key())
            .limits(Limits::bench())
            .build()?;
        let state = CasState::open(dir.path(), &MasterKey::generate(), config)?;
        let owner = OwnerKey::generate()?;
        let approver = cloister_cas::client::RequestSigner::from_owner_key(&owner)?;
        state.init_admin(approver.spki_der())?;
        let cert_pem = state.certificate_pem().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let join = runtime.spawn(server::run(listener, state, async move {
            let _ = stopped.await;
        }));

        let signed = SignedPolicy::new(policy(&owner)?).signed_by(&owner);
        let client = CasClient::new(&url, &cert_pem)?;
        let ns = SESSION.split('/').next().unwrap_or(SESSION);
        client_rt
            .block_on(async {
                client.create_namespace_owned_by(ns, &owner, &owner).await?;
                client.create_session(&signed, &approver).await
            })
            .context("create the bench session")?;
        let target = Target {
            name: "an in-process CAS".into(),
            url,
            cert_pem,
            collector: Arc::new(SimCollector::new(platform, statement(MEASUREMENT.to_vec()))),
            session: SESSION.into(),
            service: SERVICE.into(),
        };
        let cas = Self {
            runtime,
            stop: Some(stop),
            join,
            dir,
        };
        Ok((cas, target))
    }

    /// Times [`FSYNC_PROBES`] appends of 256 bytes, each followed by `fdatasync`, in the data
    /// directory.
    fn fsync_probe(&self) -> anyhow::Result<Latency> {
        use std::io::Write as _;
        let path = self.dir.path().join("fsync-probe");
        let mut file = std::fs::File::create(&path).context("create the fsync probe")?;
        let mut hist = histogram();
        for _ in 0..FSYNC_PROBES {
            let t0 = Instant::now();
            file.write_all(&[0u8; 256])
                .and_then(|()| file.sync_data())
                .context("write the fsync probe")?;
            hist.saturating_record(micros(t0.elapsed()));
        }
        drop(file);
        std::fs::remove_file(&path).context("remove the fsync probe")?;
        Ok(Latency::of(&hist))
    }

    /// Stops the server, letting in-flight requests finish.
    fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.runtime
            .block_on(self.join)
            .context("the CAS task failed")?
            .context("the CAS failed")?;
        Ok(())
    }
}

/// The bench session: `sim` accepted for [`MEASUREMENT`]; the service's configuration holds a
/// generated password and a certificate from the session CA, as a real workload's would.
fn policy(owner: &OwnerKey) -> anyhow::Result<String> {
    let pem = owner.public_key().to_pem()?;
    let key: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(format!(
        r#"name: {SESSION}
version: 1
access:
  owners:
    - name: bench
      key: {key}
  update:
    approvals: 1
security:
  tees: [sim]
services:
  - name: {SERVICE}
    attestation:
      - measurements: ["{m}"]
    command: /bin/worker
    args: [run]
    env:
      DB_PASSWORD: $$cloister:db_password$$
    files:
      - path: /etc/tls/key.pem
        content: $$cloister:worker_cert:key$$
        mode: "0400"
secrets:
  - name: db_password
    kind: ascii
  - name: session_ca
    kind: x509-ca
    common_name: Bench session CA
  - name: worker_cert
    kind: x509
    issuer: session_ca
    common_name: {SERVICE}
    sans: [worker.bench]
"#,
        m = hex::encode(MEASUREMENT)
    ))
}

fn print_report(r: &Report) -> anyhow::Result<()> {
    let mut t = output::table(&[
        "phase",
        "requests",
        "errors",
        "per s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "CAS CPU ms/req",
        "client CPU ms/req",
    ]);
    let ms = |v: f64| format!("{v:.2}");
    for p in &r.phases {
        let (cas, clients) = match &p.cpu {
            Some(c) => (
                c.cas_ms_per_request.map_or("-".into(), ms),
                ms(c.clients_ms_per_request),
            ),
            None => ("-".into(), "-".into()),
        };
        t.add_row(vec![
            format!("{} ({})", p.name, p.what),
            p.completed.to_string(),
            p.errors.to_string(),
            format!("{:.0}", p.per_second),
            ms(p.latency.p50_ms),
            ms(p.latency.p90_ms),
            ms(p.latency.p99_ms),
            ms(p.latency.max_ms),
            cas,
            clients,
        ]);
    }
    output::print_table(&t)?;
    let mut out = String::new();
    for ratio in &r.ratios {
        out.push_str(&format!(
            "attest vs {}: {:.3}× the throughput, {:.1}× the p99\n",
            ratio.baseline, ratio.throughput, ratio.p99
        ));
    }
    out.push_str(&format!(
        "{} clients on {} ({} cores shared by the CAS and the clients in this process)\n",
        r.clients, r.target, r.cores
    ));
    if let (Some(bound), Some(attest)) = (r.cas_cpu_bound_per_second, r.phases.first()) {
        let cpu = attest.cpu.as_ref();
        out.push_str(&format!(
            "CAS CPU {:.2} ms per attestation: about {bound:.0}/s on {} cores if the clients ran \
             elsewhere (they used {:.2} ms each here)\n",
            cpu.and_then(|c| c.cas_ms_per_request).unwrap_or_default(),
            r.cores,
            cpu.map_or(0.0, |c| c.clients_ms_per_request),
        ));
    }
    if let Some(attest) = r.phases.first().filter(|p| p.per_second > 0.0) {
        out.push_str(&format!(
            "each client waits for its answer: mean latency ≈ {} clients ÷ {:.0}/s = {:.1} ms\n",
            r.clients,
            attest.per_second,
            1000.0 * f64::from(r.clients) / attest.per_second
        ));
    }
    if let Some(f) = &r.data_dir_fsync {
        out.push_str(&format!(
            "data directory: write + fsync p50 {:.2} ms, max {:.2} ms ({FSYNC_PROBES} probes before the run)\n",
            f.p50_ms, f.max_ms
        ));
    }
    use std::io::Write as _;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

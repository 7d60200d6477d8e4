//! `cloister bench …`: reproducible benchmarks that print their figures as ratios against a
//! named peer measured in the same run, so that a number means something on any machine.
//!
//! Shared here: latency summaries ([`Latency`], from an HDR histogram), CPU accounting by thread
//! group ([`CpuSnapshot`]: the CAS's threads and the load generator's are named, so their costs
//! are told apart even when they share the process and its cores), and the progress bar.

mod cas;
mod taxi;

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// `cloister bench …`.
#[derive(Subcommand)]
pub enum Command {
    /// Attestations per second and latency of a CAS under concurrent sim workloads.
    ///
    /// Starts a CAS in-process on 127.0.0.1 (temporary data directory, generated master key, a
    /// policy accepting a generated sim platform key), or benches a running one with --cas.
    /// Each of --clients workloads has its own HTTPS connection (kept alive) and loops:
    /// fresh key → POST /v1/nonce → sim evidence binding nonce and key → POST /v1/attest →
    /// open the sealed configuration. The same clients then send POST /v1/nonce alone and
    /// GET /v1/health alone for as long: those are the peers the attestation figures are
    /// compared with. CPU time is reported per thread group (CAS / clients): both run in
    /// this process and share its cores.
    ///
    /// Examples:
    ///   cloister bench cas --clients 64 --duration 10s
    ///   cloister bench cas --clients 4 --attestations 80 --warmup 0s --json
    ///   cloister bench cas --cas https://cas:8443 --cas-cert cas.crt \
    ///       --platform-key platform.pem --session demo/bench --service worker --measurement aa…
    #[command(verbatim_doc_comment)]
    Cas(cas::Args),
    /// The NYC taxi demo queries: Cloister confidential vs plaintext vs DuckDB.
    ///
    /// Generates NYC-taxi-like trips (cached in --dir, keyed by the spec) and an encrypted
    /// copy under master keys that a CAS on loopback generates and releases to this process
    /// after it attested (sim TEE; a footer key and column keys that cover every trip
    /// column, fresh data keys per file). Then runs the five queries of examples/nyc-taxi/queries/ in
    /// three modes: Cloister confidential (encrypted input, encrypted spill), Cloister
    /// plaintext (the same session settings on the plaintext copy, DataFusion's plain spill)
    /// and DuckDB (PyPI `duckdb`, through --python) on the plaintext copy, all with the same
    /// thread count. The warm-up round's results must agree across the modes (integers and
    /// text exactly, doubles to 1e-9 relative) before any figure is printed: per-query
    /// medians, confidential/plaintext and confidential/DuckDB ratios with their geometric
    /// means, and rows/s of the per-hour aggregate, against the targets of docs/bench.md.
    /// Exit code 1 when the modes disagree, 2 on an operational error.
    ///
    /// Examples:
    ///   cloister bench taxi --dir ~/.cache/cloister/bench
    ///   cloister bench taxi --rows 100000000 --runs 5 --dir /data/bench --json
    ///   cloister bench taxi --rows 20000 --runs 1 --modes confidential,plaintext
    #[command(verbatim_doc_comment)]
    Taxi(taxi::Args),
}

/// Runs a benchmark.
pub fn run(cmd: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Cas(args) => cas::run(args, quiet),
        Command::Taxi(args) => taxi::run(args, quiet),
    }
}

/// The histogram every benchmark records latencies in: microseconds, 1 µs to 1 h, 3 digits.
fn histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts (low ≥ 1, high ≥ 2 × low, 3 digits).
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Mean.
    pub mean_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

/// CPU time used so far by each group of this process's threads, by thread-name prefix.
///
/// Read from `/proc/self/task/*/schedstat` (nanoseconds on the CPU), falling back to the
/// `utime + stime` ticks of `/proc/self/task/*/stat`. Threads that exited are not counted, so
/// benchmarks keep their runtimes' threads alive. `None` off Linux.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuSnapshot(BTreeMap<&'static str, Duration>);

/// The group of threads matching no prefix.
const OTHER: &str = "other";

impl CpuSnapshot {
    /// Now, with threads grouped by the first of `groups` their name starts with.
    pub fn now(groups: &[&'static str]) -> Option<Self> {
        let mut totals = BTreeMap::new();
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        for task in tasks.flatten() {
            let path = task.path();
            // A thread may exit between listing and reading: skip it.
            let Ok(comm) = std::fs::read_to_string(path.join("comm")) else {
                continue;
            };
            let Some(cpu) = thread_cpu(&path) else {
                continue;
            };
            let group = groups
                .iter()
                .copied()
                .find(|g| comm.trim_end().starts_with(g))
                .unwrap_or(OTHER);
            *totals.entry(group).or_insert(Duration::ZERO) += cpu;
        }
        Some(Self(totals))
    }

    /// CPU time of `group` since `earlier`.
    pub fn since(&self, earlier: &Self, group: &str) -> Duration {
        let get = |s: &Self| s.0.get(group).copied().unwrap_or_default();
        get(self).saturating_sub(get(earlier))
    }
}

fn thread_cpu(task: &std::path::Path) -> Option<Duration> {
    if let Some(ns) = std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
    {
        return Some(Duration::from_nanos(ns));
    }
    let stat = std::fs::read_to_string(task.join("stat")).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux architecture's ABI.
    Some(Duration::from_millis(ticks * 10))
}

/// A progress bar on stderr; hidden when `hidden` or when stderr is not a terminal.
fn progress(len: u64, hidden: bool) -> ProgressBar {
    let target = if hidden {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    if let Ok(style) = ProgressStyle::with_template("{prefix:>8} [{bar:30}] {percent:>3}% {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn latency_of_a_known_distribution() {
        let mut h = histogram();
        for ms in 1..=100u64 {
            h.record(ms * 1000).unwrap();
        }
        let l = Latency::of(&h);
        assert!((l.p50_ms - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99_ms - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max_ms - 100.0).abs() < 0.1, "{l:?}");
        assert!(l.p50_ms <= l.p90_ms && l.p90_ms <= l.p99_ms && l.p99_ms <= l.max_ms);
        let empty = Latency::of(&histogram());
        assert_eq!(empty.max_ms, 0.0);
    }

    #[test]
    fn micros_is_at_least_one() {
        assert_eq!(micros(Duration::ZERO), 1);
        assert_eq!(micros(Duration::from_millis(3)), 3000);
    }

    #[test]
    fn cpu_snapshot_sees_a_named_busy_thread() {
        let Some(before) = CpuSnapshot::now(&["bench-test-"]) else {
            return; // not Linux
        };
        std::thread::Builder::new()
            .name("bench-test-spin".into())
            .spawn(move || {
                let start = std::time::Instant::now();
                let mut x = 0u64;
                while start.elapsed() < Duration::from_millis(30) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
                // Read while the thread is still alive: exited threads are not counted.
                let after = CpuSnapshot::now(&["bench-test-"]).unwrap();
                assert!(after.since(&before, "bench-test-") > Duration::ZERO);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}

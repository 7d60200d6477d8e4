//! CPU cost and throughput of `POST /v1/attest`, without the CLI: an in-process CAS on
//! loopback (HTTPS, its own runtime, threads named `cas-server`) and N sim workloads (their own
//! runtime, threads named `bench-client`), each attesting over and over on a kept-alive
//! connection, as `cloister bench cas` does. Reports attestations per second, p50 / p99
//! latency, and CPU time per attestation of each thread group (from
//! `/proc/self/task/*/schedstat`, so robust to other load on the machine).
//!
//! Run: `cargo run --release -p cloister-cas --example attest_cpu -- [CLIENTS] [SECONDS]`
//! (default 64 clients, 10 s after 2 s of warm-up).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)] // an example

use cloister_attest::collect::SimCollector;
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_cas::client::{CasClient, attest_workload};
use cloister_cas::envelope::WorkloadKey;
use cloister_cas::server::{self, CasState};
use cloister_cas::{CasConfig, MasterKey};
use cloister_policy::{OwnerKey, SignedPolicy};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SESSION: &str = "bench/cas";
const SERVICE: &str = "worker";
const MEASUREMENT: [u8; 32] = [0xbe; 32];

fn runtime(name: &'static str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .unwrap()
}

/// CPU time per thread-name prefix.
fn cpu() -> BTreeMap<String, Duration> {
    let mut totals = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let (Ok(comm), Ok(stat)) = (
            std::fs::read_to_string(task.path().join("comm")),
            std::fs::read_to_string(task.path().join("schedstat")),
        ) else {
            continue;
        };
        let group = ["cas-server", "bench-client"]
            .into_iter()
            .find(|g| comm.starts_with(g))
            .unwrap_or("other");
        let ns: u64 = stat.split_whitespace().next().unwrap().parse().unwrap();
        *totals.entry(group.to_owned()).or_default() += Duration::from_nanos(ns);
    }
    totals
}

fn policy(owner: &OwnerKey) -> String {
    let pem = owner.public_key().to_pem().unwrap();
    let key: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    format!(
        r#"name: {SESSION}
version: 1
access:
  owners:
    - name: bench
      key: {key}
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
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let clients: usize = args.next().map_or(64, |a| a.parse().unwrap());
    let seconds: u64 = args.next().map_or(10, |a| a.parse().unwrap());

    let server_rt = runtime("cas-server");
    let client_rt = runtime("bench-client");
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let platform = PlatformKey::generate();
    let config = CasConfig::builder(&url)
        .dangerous()
        .trust_sim_key(platform.public_key())
        .limits(cloister_cas::config::Limits::bench())
        .build()
        .unwrap();
    let state = CasState::open(dir.path(), &MasterKey::generate(), config).unwrap();
    let owner = OwnerKey::generate().unwrap();
    let approver = cloister_cas::client::RequestSigner::from_owner_key(&owner).unwrap();
    state.init_admin(approver.spki_der()).unwrap();
    let cert = state.certificate_pem().to_owned();
    server_rt.spawn(server::run(listener, state, std::future::pending::<()>()));

    let signed = SignedPolicy::new(policy(&owner)).signed_by(&owner);
    client_rt
        .block_on(async {
            let client = CasClient::new(&url, &cert).unwrap();
            let ns = SESSION.split('/').next().unwrap();
            client
                .create_namespace_owned_by(ns, &owner, &owner)
                .await
                .unwrap();
            client.create_session(&signed, &approver).await
        })
        .unwrap();
    let collector = Arc::new(SimCollector::new(
        platform,
        Statement {
            measurement: MEASUREMENT.to_vec(),
            svn: 1,
            ..Default::default()
        },
    ));

    let run = |duration: Duration| -> (Vec<Duration>, Duration) {
        let stop = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let client = CasClient::new(&url, &cert).unwrap();
                let collector = collector.clone();
                let stop = stop.clone();
                client_rt.spawn(async move {
                    let mut latencies = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t0 = Instant::now();
                        let key = WorkloadKey::generate().unwrap();
                        attest_workload(&client, SESSION, SERVICE, &key, &*collector, None, &[])
                            .await
                            .unwrap();
                        latencies.push(t0.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        std::thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in tasks {
            all.extend(client_rt.block_on(task).unwrap());
        }
        (all, start.elapsed())
    };

    run(Duration::from_secs(2));
    let before = cpu();
    let (mut latencies, elapsed) = run(Duration::from_secs(seconds));
    let after = cpu();
    latencies.sort();
    let n = latencies.len();
    let pct = |p: f64| latencies[((n as f64 * p) as usize).min(n - 1)].as_secs_f64() * 1e3;
    println!(
        "clients {clients}  attestations {n}  {:.0}/s  p50 {:.1} ms  p99 {:.1} ms",
        n as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99)
    );
    for (group, t) in &after {
        let spent = t.saturating_sub(before.get(group).copied().unwrap_or_default());
        println!(
            "cpu {group:<13} {:6.2} s  {:.3} ms per attestation",
            spent.as_secs_f64(),
            spent.as_secs_f64() * 1e3 / n as f64
        );
    }
}

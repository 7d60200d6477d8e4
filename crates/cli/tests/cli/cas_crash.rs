//! `kill -9` of the CAS process in the middle of a burst of session changes and attestations:
//! nothing the CAS acknowledged is lost, and its audit log still verifies.

use super::cas_process::{
    CasProcess, MEASUREMENT, approver, collector, owner, platform, run, runtime, signed,
    sim_policy, text,
};
use super::json_of;
use cloister_cas::client::CasClient;
use cloister_cas::envelope::WorkloadKey;
use cloister_cas::{Error, audit};
use cloister_policy::{OwnerKey, SessionHash};
use cloister_testkit::cas::attest_driver;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Session writers and attesting workloads running at once.
const WRITERS: usize = 3;
const ATTESTERS: usize = 2;
/// The CAS is killed once this many changes have been acknowledged.
const KILL_AFTER: usize = 40;

/// What the CAS acknowledged (answered 2xx) before it was killed.
#[derive(Default)]
struct Acked {
    /// Session versions: name → [(version, hash)].
    versions: BTreeMap<String, Vec<(u64, String)>>,
    /// Attestations: the workload keys' digests (the audit entries' principal).
    attestations: Vec<String>,
}

type Shared = Arc<(Mutex<Acked>, AtomicUsize)>;

/// Creates session `name`, then updates it version after version, until a request fails.
async fn writer(client: CasClient, name: String, acked: Shared) -> Error {
    let key = OwnerKey::from_seed(&[1; 32]).unwrap();
    let owners = [("owner", super::cas_process::public_b64(&key))];
    let owners: Vec<(&str, &str)> = owners.iter().map(|(n, k)| (*n, k.as_str())).collect();
    let mut predecessor = None;
    for version in 1.. {
        let yaml = sim_policy(&name, version, predecessor, &owners, 1);
        let policy = signed(&yaml, &[&key]);
        let result = if version == 1 {
            client.create_session(&policy, &approver(&key)).await
        } else {
            client.update_session(&name, &policy).await
        };
        match result {
            Ok(summary) => {
                assert_eq!(summary.version, version);
                let (lock, count) = &*acked;
                lock.lock()
                    .unwrap()
                    .versions
                    .entry(name.clone())
                    .or_default()
                    .push((summary.version, summary.hash));
                count.fetch_add(1, Ordering::SeqCst);
                predecessor = Some(SessionHash::of(&yaml));
            }
            Err(e) => return e,
        }
    }
    unreachable!("versions do not run out")
}

/// Attests fresh workload keys to `burst/attest` until a request fails.
async fn attester(
    client: CasClient,
    collector: cloister_attest::collect::SimCollector,
    acked: Shared,
) -> Error {
    loop {
        let key = WorkloadKey::generate().unwrap();
        match attest_driver(&client, "burst/attest", &key, &collector).await {
            Ok(_) => {
                let (lock, count) = &*acked;
                lock.lock()
                    .unwrap()
                    .attestations
                    .push(audit::key_digest(&key.spki_der()));
                count.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => return e,
        }
    }
}

#[test]
fn kill_9_mid_burst_loses_no_acknowledged_change() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let platform = platform(d);
    let (key, public) = owner(d, "owner.pem", 1);
    let mut cas = CasProcess::start(d, &[], &[]);
    let rt = runtime();
    let client = cas.client();
    cas.namespace("burst", &key);
    let attest_policy = sim_policy("burst/attest", 1, None, &[("owner", &public)], 1);
    rt.block_on(client.create_session(&signed(&attest_policy, &[&key]), &approver(&key)))
        .unwrap();

    let acked: Shared = Arc::default();
    let mut tasks = Vec::new();
    for i in 0..WRITERS {
        tasks.push(rt.spawn(writer(client.clone(), format!("burst/s{i}"), acked.clone())));
    }
    for _ in 0..ATTESTERS {
        tasks.push(rt.spawn(attester(
            client.clone(),
            collector(&platform, &MEASUREMENT),
            acked.clone(),
        )));
    }
    // Kill once enough is acknowledged, while every task still has a request in flight or
    // about to be.
    let deadline = Instant::now() + Duration::from_secs(300);
    while acked.1.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "the burst is too slow: {} acknowledged",
            acked.1.load(Ordering::SeqCst)
        );
        assert!(
            tasks.iter().all(|t| !t.is_finished()),
            "a task stopped before the kill"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    cas.kill9();
    for task in tasks {
        let error = rt.block_on(task).unwrap();
        // Every task ended because the CAS went away, not because it refused something.
        assert!(
            matches!(error, Error::Unreachable { .. }),
            "a task ended with {error}"
        );
    }
    let acked = std::mem::take(&mut *acked.0.lock().unwrap());
    let total = acked.attestations.len() + acked.versions.values().map(Vec::len).sum::<usize>();
    assert!(total >= KILL_AFTER, "{total} acknowledged");
    assert!(!acked.attestations.is_empty() && !acked.versions.is_empty());

    // The crashed directory verifies offline as it is (a torn or unacknowledged last entry is
    // not a failure).
    run(
        d,
        &[
            "audit",
            "verify",
            "--data",
            "data",
            "--master-key",
            "master.key",
        ],
        0,
    );

    // Restarted on the same data directory, the CAS has every acknowledged change.
    let cas = CasProcess::start(d, &[], &[]);
    for (name, versions) in &acked.versions {
        let view = json_of(&run(
            d,
            &cas.args(&["policy", "get", name, "--key", "owner.pem", "--json"]),
            0,
        ));
        let history: Vec<(u64, String)> = view["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_u64().unwrap(),
                    v["hash"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        for acknowledged in versions {
            assert!(
                history.contains(acknowledged),
                "{name}: acknowledged version {acknowledged:?} lost; history {history:?}"
            );
        }
        let last = versions.last().unwrap().0;
        assert!(view["version"].as_u64().unwrap() >= last);
    }
    let entries = json_of(&run(
        d,
        &cas.audit_args(&["audit", "tail", "-n", "1000000", "--json"]),
        0,
    ));
    let entries = entries.as_array().unwrap();
    for digest in &acked.attestations {
        assert!(
            entries.iter().any(|e| e["kind"] == "attestation_passed"
                && e["session"] == "burst/attest"
                && e["principal"] == digest.as_str()),
            "no audit entry for the acknowledged attestation of key {digest}"
        );
    }
    for (name, versions) in &acked.versions {
        for (version, hash) in versions {
            assert!(
                entries.iter().any(|e| e["session"] == name.as_str()
                    && e["version"] == *version
                    && e["session_hash"] == hash.as_str()
                    && (e["kind"] == "session_created" || e["kind"] == "session_updated")),
                "no audit entry for {name} version {version}"
            );
        }
    }
    run(d, &cas.audit_args(&["audit", "verify"]), 0);
    run(
        d,
        &[
            "audit",
            "verify",
            "--data",
            "data",
            "--master-key",
            "master.key",
        ],
        0,
    );
    // And it goes on working.
    let key2 = WorkloadKey::generate().unwrap();
    rt.block_on(attest_driver(
        &cas.client(),
        "burst/attest",
        &key2,
        &collector(&platform, &MEASUREMENT),
    ))
    .unwrap();
    let log = text(&std::fs::read(&cas.stderr_log).unwrap());
    assert_eq!(
        log.matches("cloister: CAS listening on").count(),
        2,
        "{log}"
    );
}

//! `cloister bench cas`: the code path runs end to end and reports sanely. Never timing.

use super::{cloister, json_of};
use cloister_attest::sim::PlatformKey;
use cloister_policy::{OwnerKey, SignedPolicy};
use serde_json::Value;
use std::process::Output;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Checks one phase of a `--json` report that measured `n` requests without errors.
fn check_phase(phase: &Value, name: &str, n: u64, cpu_of_cas: bool) {
    assert_eq!(phase["name"], name, "{phase}");
    assert_eq!(phase["completed"], n, "{phase}");
    assert_eq!(phase["errors"], 0, "{phase}");
    assert!(phase["per_second"].as_f64().unwrap() > 0.0, "{phase}");
    let l = &phase["latency"];
    let ms = |k: &str| l[k].as_f64().unwrap();
    assert!(ms("p50_ms") > 0.0, "{phase}");
    assert!(
        ms("p50_ms") <= ms("p90_ms") && ms("p90_ms") <= ms("p99_ms"),
        "{phase}"
    );
    assert!(ms("p99_ms") <= ms("max_ms"), "{phase}");
    if cfg!(target_os = "linux") {
        let cpu = &phase["cpu"];
        assert!(cpu["clients_seconds"].as_f64().unwrap() > 0.0, "{phase}");
        assert_eq!(cpu["cas_seconds"].is_f64(), cpu_of_cas, "{phase}");
    }
}

#[test]
fn bench_cas_in_process_reports_every_phase_without_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(
        &[
            "bench",
            "cas",
            "--clients",
            "4",
            "--attestations",
            "80",
            "--warmup",
            "0s",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "", "--json shows no progress and no notes");
    let report = json_of(&out);
    assert_eq!(report["clients"], 4);
    assert_eq!(report["target"], "an in-process CAS");
    assert!(report["data_dir_fsync"]["p50_ms"].as_f64().unwrap() > 0.0);
    let phases = report["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 3);
    for (phase, name) in phases.iter().zip(["attest", "nonce", "health"]) {
        check_phase(phase, name, 80, true);
    }
    let ratios = report["ratios"].as_array().unwrap();
    let baselines: Vec<&str> = ratios
        .iter()
        .map(|r| r["baseline"].as_str().unwrap())
        .collect();
    assert_eq!(baselines, ["nonce", "health"]);
    for r in ratios {
        assert!(r["throughput"].as_f64().unwrap() > 0.0, "{r}");
        assert!(r["p99"].as_f64().unwrap() > 0.0, "{r}");
    }
    assert_eq!(report["errors"], Value::Array(Vec::new()));
    if cfg!(target_os = "linux") {
        assert!(report["cas_cpu_bound_per_second"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_cas_prints_a_table_and_the_ratios() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(
        &[
            "bench",
            "cas",
            "--clients",
            "2",
            "--attestations",
            "6",
            "--warmup",
            "0s",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    for want in [
        "attest (",
        "nonce (POST /v1/nonce)",
        "health (GET /v1/health)",
        "attest vs nonce:",
        "attest vs health:",
        "2 clients on an in-process CAS",
        "data directory: write + fsync",
        "ms per attestation: about",
        "mean latency ≈ 2 clients ÷",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // Not a terminal: no progress bar.
    assert_eq!(stderr(&out), "");
}

#[test]
fn bench_cas_against_a_running_cas() {
    let dir = tempfile::tempdir().unwrap();
    let platform = PlatformKey::generate();
    let key_file = dir.path().join("platform.pem");
    platform.save(&key_file).unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let owner = OwnerKey::generate().unwrap();
    let approver = cloister_cas::client::RequestSigner::from_owner_key(&owner).unwrap();
    let cas = rt.block_on(
        cloister_testkit::cas::Cas::builder()
            .platform_key(platform)
            .admin(&approver)
            .start(),
    );
    let url = cas.url.clone();
    let cert = dir.path().join("cas.crt");
    std::fs::write(&cert, &cas.cert_pem).unwrap();
    let pem = owner.public_key().to_pem().unwrap();
    let key: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let measurement = "cd".repeat(32);
    let yaml = format!(
        "name: ops/bench\nversion: 1\naccess:\n  owners:\n    - name: ops\n      key: {key}\n  \
         update:\n    approvals: 1\nsecurity:\n  tees: [sim]\nservices:\n  - name: api\n    \
         attestation:\n      - measurements: [\"{measurement}\"]\n    command: /bin/api\n"
    );
    let client = &cas.client;
    rt.block_on(async {
        client
            .create_namespace_owned_by("ops", &owner, &owner)
            .await
            .unwrap();
        client
            .create_session(&SignedPolicy::new(yaml).signed_by(&owner), &approver)
            .await
    })
    .unwrap();

    let args = |measurement: &str| {
        vec![
            "bench".to_owned(),
            "cas".into(),
            "--cas".into(),
            url.clone(),
            "--cas-cert".into(),
            cert.to_str().unwrap().into(),
            "--platform-key".into(),
            key_file.to_str().unwrap().into(),
            "--session".into(),
            "ops/bench".into(),
            "--service".into(),
            "api".into(),
            "--measurement".into(),
            measurement.into(),
            "--clients".into(),
            "3".into(),
            "--attestations".into(),
            "12".into(),
            "--warmup".into(),
            "0s".into(),
            "--json".into(),
        ]
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cloister(&args, dir.path())
    };
    let out = run(args(&measurement));
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["target"], url.as_str());
    assert!(report["data_dir_fsync"].is_null(), "not our disk to probe");
    assert!(
        report["cas_cpu_bound_per_second"].is_null(),
        "not our CPU to count"
    );
    for (phase, name) in report["phases"]
        .as_array()
        .unwrap()
        .iter()
        .zip(["attest", "nonce", "health"])
    {
        check_phase(phase, name, 12, false);
    }

    // Refused attestations are errors: reported, and the exit code says so.
    let out = run(args(&"ee".repeat(32)));
    assert_eq!(out.status.code(), Some(2), "stderr: {}", stderr(&out));
    let report = json_of(&out);
    assert_eq!(report["phases"][0]["errors"], 12);
    assert_eq!(report["phases"][0]["completed"], 0);
    let first = report["errors"][0].as_str().unwrap();
    assert!(first.contains("measurement"), "{first}");
    assert!(stderr(&out).contains("cloister: 12 requests failed"));

    rt.block_on(cas.stop());
}

#[test]
fn bench_cas_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    // --cas needs the platform key, the session and the rest.
    let out = cloister(
        &["bench", "cas", "--cas", "https://127.0.0.1:1"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--cas-cert"), "{}", stderr(&out));
    // A duration and a count are alternatives.
    let out = cloister(
        &["bench", "cas", "--duration", "1s", "--attestations", "5"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    // The remote-only flags need --cas.
    let out = cloister(&["bench", "cas", "--session", "a/b"], dir.path());
    assert_eq!(out.status.code(), Some(2));
}

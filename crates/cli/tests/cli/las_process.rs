//! `cloister las serve` as a real child process beside a real `cloister cas serve`: a workload
//! (`cloister run --las …`) attests with the LAS's sim evidence; a LAS signing debug evidence
//! gets the workload refused with the rule named; SIGTERM stops the LAS cleanly.

use super::cas_process::{CasProcess, approver, owner, run, runtime, signed, text};
use super::cloister;
use cloister_attest::sim::PlatformKey;
use cloister_testkit::process::ServiceProcess;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

const SESSION: &str = "demo/las";

/// A running `cloister las serve`, killed when dropped (a testkit [`ServiceProcess`]).
struct LasProcess {
    process: ServiceProcess,
    url: String,
    addr_file: PathBuf,
    stderr_log: PathBuf,
}

impl LasProcess {
    /// Starts `las serve --listen 127.0.0.1:0 --addr-file dir/NAME.addr` with `extra` and waits
    /// for the address file.
    fn start(dir: &Path, name: &str, extra: &[&str]) -> Self {
        let addr_file = dir.join(format!("{name}.addr"));
        let stderr_log = dir.join(format!("{name}.stderr.log"));
        let (process, url) = ServiceProcess::start(
            "cloister las serve",
            Command::new(env!("CARGO_BIN_EXE_cloister"))
                .args(["las", "serve", "--listen", "127.0.0.1:0", "--addr-file"])
                .arg(&addr_file)
                .args(extra)
                .current_dir(dir)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&stderr_log).unwrap()),
            &addr_file,
            &stderr_log,
            Duration::from_secs(60),
        );
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        Self {
            process,
            url,
            addr_file,
            stderr_log,
        }
    }

    /// SIGTERM, and wait (at most 30 s) for the process to exit.
    fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

/// A policy for one `job` service pinned to `measurement`, handed the bundle key.
fn job_policy(owner_key: &str, measurement: &str, bundle_key: &Path) -> String {
    let head = cloister_testkit::policies::custodian_session(SESSION, owner_key);
    format!(
        r#"{head}  - name: job
    attestation:
      - measurements: ["{measurement}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$
secrets:
  - name: bundle_key
    kind: import
    from:
      file: {bundle_key}
"#,
        bundle_key = bundle_key.display()
    )
}

#[test]
fn a_workload_attests_with_evidence_from_a_las_process_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The sim platform: the LAS holds the private key, the CAS trusts the public one.
    let platform = PlatformKey::generate();
    platform.save(d.join("platform.pem")).unwrap();
    std::fs::write(d.join("platform.pem.pub"), platform.public_key().to_pem()).unwrap();

    // The app: a bundle, its key, its measurement.
    // The bundle key is imported by the CAS from `imports/`, where its rules allow.
    std::fs::create_dir_all(d.join("imports")).unwrap();
    run(d, &["package", "keygen", "--out", "imports/bundle.key"], 0);
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::write(d.join("app/query.sql"), "SELECT 1;\n").unwrap();
    run(
        d,
        &[
            "package",
            "app",
            "--out",
            "app.bundle",
            "--key-file",
            "imports/bundle.key",
        ],
        0,
    );
    let out = run(d, &["measure", "--bundle", "app.bundle"], 0);
    let measurement = text(&out.stdout).trim().to_owned();

    let cas = CasProcess::start(d, &[], &[]);
    let (owner_key, owner_public) = owner(d, "owner.pem", 9);
    cas.namespace("demo", &owner_key);
    let policy = job_policy(&owner_public, &measurement, &d.join("imports/bundle.key"));
    runtime()
        .block_on(
            cas.client()
                .create_session(&signed(&policy, &[&owner_key]), &approver(&owner_key)),
        )
        .unwrap();

    let mut las = LasProcess::start(d, "las", &["--sim-key", "platform.pem", "--offline"]);
    let stderr = las.stderr();
    assert!(
        stderr.contains("LAS listening on http://127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&platform.public_key().fingerprint()),
        "the sim key's fingerprint is shown: {stderr}"
    );
    let cas_url = cas.url.clone();
    let cas_cert = cas.cert.display().to_string();
    let workload = |las_url: &str| {
        cloister(
            &[
                "run",
                "--cas",
                &cas_url,
                "--cas-cert",
                &cas_cert,
                "--session",
                SESSION,
                "--service",
                "job",
                "--las",
                las_url,
                "--files-in-memory",
                "--",
                "job",
                "app.bundle",
            ],
            d,
        )
    };

    let out = workload(&las.url);
    assert_eq!(
        out.status.code(),
        Some(0),
        "attestation through the LAS\nstdout: {}\nstderr: {}\nLAS: {}",
        text(&out.stdout),
        text(&out.stderr),
        las.stderr()
    );
    assert!(
        !text(&out.stderr).contains("refused"),
        "{}",
        text(&out.stderr)
    );

    // A LAS whose platform claims a debug TEE: the CAS refuses, naming the rule (the detail,
    // "debug not tolerated", is for the session's owners in the audit log).
    let mut debug = LasProcess::start(
        d,
        "las-debug",
        &["--sim-key", "platform.pem", "--offline", "--sim-debug"],
    );
    let out = workload(&debug.url);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused") && stderr.contains("security.tolerate"),
        "{stderr}"
    );
    assert!(debug.terminate().success());

    // SIGTERM: exit 0, the address file removed.
    let status = las.terminate();
    assert!(status.success(), "{status}: {}", las.stderr());
    assert!(!las.addr_file.exists());
}

#[test]
fn las_serve_json_ready_line_names_url_tee_and_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    PlatformKey::generate()
        .save(d.join("platform.pem"))
        .unwrap();
    let mut las = LasProcess::start(
        d,
        "las",
        &[
            "--sim-key",
            "platform.pem",
            "--offline",
            "--log-format",
            "json",
        ],
    );
    let stderr = las.stderr();
    let ready: serde_json::Value = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["ready"] == true)
        .unwrap_or_else(|| panic!("no ready line in {stderr}"));
    assert_eq!(ready["url"], las.url.as_str());
    assert_eq!(ready["tee"], "sim");
    assert_eq!(ready["source"], "sim");
    assert!(las.terminate().success());
    assert!(!las.addr_file.exists());
}

#[test]
fn las_serve_refuses_a_bad_configuration_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = run(
        d,
        &[
            "las",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--offline",
            "--offline-bundle",
            "missing",
            "--root",
            ".",
        ],
        2,
    );
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("cloister: "), "{stderr}");
    // No TEE under `.` is found before the bundle is looked at; either way the cause is named.
    assert!(
        stderr.contains("configfs-tsm") || stderr.contains("offline_bundle"),
        "{stderr}"
    );

    PlatformKey::generate()
        .save(d.join("platform.pem"))
        .unwrap();
    let out = run(
        d,
        &[
            "las",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--sim-key",
            "platform.pem",
            "--offline-bundle",
            "missing",
        ],
        2,
    );
    assert!(
        text(&out.stderr).contains("offline_bundle"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn las_serve_help_teaches_sim_hardware_and_air_gapped_setups() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(dir.path(), &["las", "serve", "--help"], 0);
    let help = text(&out.stdout);
    for needle in [
        "--sim-key platform.pem",
        "--cache-dir",
        "--offline --offline-bundle",
        "--intel-sgx-url",
        "--amd-kds-url",
        "--refresh-margin",
        "SIGTERM",
        "0.0.0.0:9480",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}

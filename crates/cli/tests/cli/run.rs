//! `cloister package | measure | run` end to end: the built binary packages an app, prints the
//! measurement a policy pins, and runs a `job` against a CAS (and a sim LAS) served by this test
//! process on 127.0.0.1:0, with the refusals each naming their cause.

use cloister_attest::sim::{PlatformKey, Statement};
use cloister_policy::{OwnerKey, SignedPolicy};
use cloister_testkit::canary;
use cloister_testkit::cli::{ok, text};
use cloister_testkit::las::Las;
use rstest::rstest;
use std::path::{Path, PathBuf};
use std::process::Output;

const SESSION: &str = "demo/job";

/// The test binary's `cloister` runner, with the directory first.
fn run_cloister(dir: &Path, args: &[&str]) -> Output {
    super::cloister(args, dir)
}

async fn cloister(dir: &Path, args: &[&str]) -> Output {
    cloister_testkit::cli::run_blocking(super::bin(), dir, args, &[]).await
}

fn owner() -> OwnerKey {
    OwnerKey::from_seed(&[5; 32]).unwrap()
}

/// The custodian's side, done with the built binary: a platform key, two bundle keys, an app,
/// its bundle and the measurement to pin. Then a CAS holding a policy that pins it.
struct Setup {
    dir: tempfile::TempDir,
    cas_url: String,
    measurement: String,
    bundle_key_hex: String,
    _cas: cloister_testkit::cas::Cas,
}

impl Setup {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        ok(
            cloister(d, &["evidence", "sim-keygen", "--out", "platform.pem"]).await,
            "sim-keygen",
        );
        ok(
            cloister(d, &["package", "keygen", "--out", "bundle.key"]).await,
            "keygen",
        );
        ok(
            cloister(d, &["package", "keygen", "--out", "wrong.key"]).await,
            "keygen",
        );
        std::fs::create_dir_all(d.join("app/lib")).unwrap();
        std::fs::write(
            d.join("app/query.sql"),
            "SELECT count(*) AS n FROM (VALUES (1), (2), (3)) AS t(x);\n",
        )
        .unwrap();
        std::fs::write(d.join("app/lib/helper.sql"), "-- helpers\n").unwrap();
        let measurement = super::package_and_measure(d).await;
        assert_eq!(measurement.len(), 96, "{measurement}");

        // The CAS, trusting the sim platform key, with the policy imports reading the key files.
        let cas = super::start_cas(d, "demo", &owner()).await;
        let cas_url = cas.url.clone();
        let client = &cas.client;
        let policy = policy(d, &measurement);
        let ns = cloister_policy::Policy::parse(&policy)
            .unwrap()
            .name()
            .split('/')
            .next()
            .unwrap()
            .to_owned();
        client
            .create_namespace_owned_by(&ns, &owner(), &owner())
            .await
            .unwrap();
        client
            .create_session(
                &SignedPolicy::new(policy).signed_by(&owner()),
                &cloister_cas::client::RequestSigner::from_owner_key(&owner()).unwrap(),
            )
            .await
            .unwrap();
        let bundle_key_hex = std::fs::read_to_string(d.join("bundle.key"))
            .unwrap()
            .trim()
            .to_owned();
        Setup {
            dir,
            cas_url,
            measurement,
            bundle_key_hex,
            _cas: cas,
        }
    }

    /// `cloister run … -- job BUNDLE` with `evidence` (`--sim-key …` or `--las …`).
    async fn run(&self, service: &str, evidence: &[&str], extra: &[&str], bundle: &str) -> Output {
        let mut args = vec![
            "run",
            "--cas",
            &self.cas_url,
            "--cas-cert",
            "cas.crt",
            "--session",
            SESSION,
            "--service",
            service,
            "--host-arg",
            "trips.parquet",
        ];
        args.extend_from_slice(evidence);
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "job", bundle]);
        cloister(self.dir.path(), &args).await
    }

    /// No secret value in either stream.
    fn assert_no_secret(&self, out: &Output) {
        for stream in [text(&out.stdout), text(&out.stderr)] {
            canary::assert_absent(&stream, &self.bundle_key_hex);
        }
    }
}

fn policy(dir: &Path, measurement: &str) -> String {
    let key: String = owner()
        .public_key()
        .to_pem()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let head = cloister_testkit::policies::custodian_session(SESSION, &key);
    format!(
        r#"{head}  - name: job
    attestation:
      - measurements: ["{measurement}"]
    args: [--input, "@@0"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$
      DB_PASSWORD: $$cloister:db_password$$
      MODE: batch
      CLOISTER_INSECURE_PRINT_RESULTS: "true"
    files:
      - path: /etc/app/password
        content: $$cloister:db_password$$
        mode: "0400"
  - name: wrong-key
    attestation:
      - measurements: ["{measurement}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:wrong_key$$
secrets:
  - name: bundle_key
    kind: import
    from:
      file: {bundle_key}
  - name: wrong_key
    kind: import
    from:
      file: {wrong_key}
  - name: db_password
    kind: ascii
"#,
        bundle_key = dir.join("bundle.key").display(),
        wrong_key = dir.join("wrong.key").display(),
    )
}

/// The directory of the `cloister: injected files: …` line, when the files went to one.
fn files_dir(stderr: &str) -> Option<PathBuf> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("cloister: injected files: "))?;
    Some(PathBuf::from(line))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_with_a_sim_key_gets_its_bundle_and_configuration_and_cleans_up() {
    let s = Setup::new().await;
    let out = ok(
        s.run(
            "job",
            &["--sim-key", "platform.pem"],
            &["--json"],
            "app.bundle",
        )
        .await,
        "run",
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert!(stderr.contains("WARNING: --sim-key"), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["measurement"], s.measurement.as_str());
    // The bundle's top-level script ran; lib/helper.sql is not part of the SQL app.
    assert_eq!(v["results"].as_array().unwrap().len(), 1);
    assert_eq!(v["results"][0]["name"], "query");
    assert_eq!(v["results"][0]["data"][0]["n"], 3);
    assert!(
        stderr.contains("cloister: attested: session demo/job service job"),
        "{stderr}"
    );
    // The bundle key is consumed by the runtime; values are never printed.
    for stream in [&stdout, &stderr] {
        assert!(!stream.contains("CLOISTER_BUNDLE_KEY"), "{stream}");
        assert!(!stream.contains("batch"), "{stream}");
    }
    s.assert_no_secret(&out);
    // The injected files were in a private directory, gone now.
    if let Some(dir) = files_dir(&stderr) {
        assert!(dir.starts_with("/dev/shm"), "{}", dir.display());
        assert!(!dir.exists(), "{} outlived the job", dir.display());
    }

    // Under a directory of our choice: created there, and nothing left in it.
    let parent = s.dir.path().join("tmpfs");
    std::fs::create_dir(&parent).unwrap();
    let out = ok(
        s.run(
            "job",
            &["--sim-key", "platform.pem"],
            &["--files-under", parent.to_str().unwrap()],
            "app.bundle",
        )
        .await,
        "run --files-under",
    );
    let dir = files_dir(&text(&out.stderr)).expect("a files directory");
    assert!(text(&out.stdout).contains("== query (1 rows) =="));
    assert!(dir.starts_with(&parent), "{}", dir.display());
    assert_eq!(std::fs::read_dir(&parent).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_through_a_sim_las_presents_its_own_measurement() {
    let s = Setup::new().await;
    // The LAS's template measurement is not the pinned one: the runtime's claim is what counts.
    let platform = PlatformKey::load(s.dir.path().join("platform.pem")).unwrap();
    let las = Las::start_sim(
        platform,
        Statement {
            measurement: vec![0; 48],
            ..Statement::default()
        },
    )
    .await;
    let las_url = las.url.clone();
    let out = ok(
        s.run(
            "job",
            &["--las", &las_url],
            &["--files-in-memory"],
            "app.bundle",
        )
        .await,
        "run --las",
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("== query (1 rows) =="), "{stdout}");
    assert!(
        files_dir(&text(&out.stderr)).is_none(),
        "{}",
        text(&out.stderr)
    );
    s.assert_no_secret(&out);
    drop(las);
}

#[derive(Debug, Clone, Copy)]
enum Spoil {
    /// Flip a byte of the ciphertext.
    Tamper,
    /// Change the app and package it again after the measurement was pinned.
    ChangeAfterPinning,
    /// Run the service whose configuration holds another key.
    WrongKey,
}

#[rstest]
#[case::tampered_bundle(Spoil::Tamper, "tampered")]
#[case::measurement_not_pinned(Spoil::ChangeAfterPinning, "attestation[0].measurement")]
#[case::wrong_bundle_key(Spoil::WrongKey, "wrong bundle key")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_job_refusals_name_their_cause_and_write_nothing(
    #[case] spoil: Spoil,
    #[case] cause: &str,
) {
    let s = Setup::new().await;
    let d = s.dir.path();
    let mut service = "job";
    match spoil {
        Spoil::Tamper => {
            super::tamper_bundle(d);
        }
        Spoil::ChangeAfterPinning => {
            std::fs::write(d.join("app/query.sql"), "SELECT 4 AS four;\n").unwrap();
            super::package_app(d, "package again").await;
        }
        Spoil::WrongKey => service = "wrong-key",
    }
    let parent = d.join("tmpfs");
    std::fs::create_dir(&parent).unwrap();
    let out = s
        .run(
            service,
            &["--sim-key", "platform.pem"],
            &["--files-under", parent.to_str().unwrap()],
            "app.bundle",
        )
        .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cloister: refused: "), "{stderr}");
    assert!(stderr.contains(cause), "{cause:?} in {stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_eq!(std::fs::read_dir(&parent).unwrap().count(), 0);
    s.assert_no_secret(&out);
}

#[test]
fn run_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("cas.crt"), "x").unwrap();
    let base = [
        "run",
        "--cas",
        "https://127.0.0.1:1",
        "--cas-cert",
        "cas.crt",
        "--session",
        "a/b",
        "--service",
        "s",
        "--",
    ];
    for (role, says) in [
        (&["driver"][..], "not available yet"),
        (&["job"][..], "-- job BUNDLE"),
        (&["spark"][..], "unknown role"),
    ] {
        let args: Vec<&str> = base.iter().chain(role).copied().collect();
        let out = run_cloister(dir.path(), &args);
        assert_eq!(out.status.code(), Some(2), "{role:?}");
        assert!(text(&out.stderr).contains(says), "{}", text(&out.stderr));
    }
}

#[test]
fn package_is_deterministic_and_keygen_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(
        run_cloister(d, &["package", "keygen", "--out", "k"]),
        "keygen",
    );
    let again = run_cloister(d, &["package", "keygen", "--out", "k"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("never overwritten"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(d.join("k")).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
    }
    std::fs::create_dir(d.join("app")).unwrap();
    std::fs::write(d.join("app/q.sql"), "SELECT 1;").unwrap();
    let digest = |out: Output| -> String {
        let v: serde_json::Value = serde_json::from_slice(&ok(out, "package").stdout).unwrap();
        v["digest"].as_str().unwrap().to_owned()
    };
    let a = digest(run_cloister(
        d,
        &["package", "app", "--out", "a", "--key-file", "k", "--json"],
    ));
    let b = digest(run_cloister(
        d,
        &["package", "app", "--out", "b", "--key-file", "k", "--json"],
    ));
    assert_eq!(a, b);
    assert_ne!(
        std::fs::read(d.join("a")).unwrap(),
        std::fs::read(d.join("b")).unwrap()
    );
    // `measure --json` reads the same digest from the bundle, without the key.
    let v: serde_json::Value = serde_json::from_slice(
        &ok(
            run_cloister(d, &["measure", "--bundle", "a", "--json"]),
            "measure",
        )
        .stdout,
    )
    .unwrap();
    assert_eq!(v["bundle_digest"], a.as_str());
    assert_eq!(v["key_id"], "bundle_key");
}

//! The `job` role and `cloister demo` end to end: the built binary runs SQL apps attested
//! against a CAS served by this test process, over Parquet encrypted with keys only the policy
//! holds. Failures name their cause and write nothing; no plaintext canary reaches any file,
//! log line or output stream, spill included.

use cloister_cas::client::CasClient;
use cloister_engine::{EncryptionOptions, EngineBuilder, InMemoryKeyProvider};
use cloister_policy::{OwnerKey, SignedPolicy};
use cloister_testkit::canary::{self, files_under};
use cloister_testkit::cli::{ok, text};
use rstest::rstest;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const SESSION: &str = "test/job";
/// Trip rows the failure cases generate.
const ROWS: u64 = 3000;

async fn cloister(dir: &Path, args: &[&str]) -> Output {
    cloister_env(dir, args, &[]).await
}

async fn cloister_env(dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    cloister_testkit::cli::run_blocking(super::bin(), dir, args, envs).await
}

fn owner() -> OwnerKey {
    OwnerKey::from_seed(&[9; 32]).unwrap()
}

fn owner_b64() -> String {
    owner()
        .public_key()
        .to_pem()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// A CAS on 127.0.0.1:0 trusting a sim platform key made with the built binary.
struct Cas {
    url: String,
    client: CasClient,
    _cas: cloister_testkit::cas::Cas,
}

impl Cas {
    async fn start(d: &Path) -> Self {
        ok(
            cloister(d, &["evidence", "sim-keygen", "--out", "platform.pem"]).await,
            "sim-keygen",
        );
        // The policies import their key files from the test's directory.
        let cas = super::start_cas(d, "test", &owner()).await;
        Cas {
            url: cas.url.clone(),
            client: cas.client.clone(),
            _cas: cas,
        }
    }

    async fn push(&self, yaml: &str) {
        // The owner is the admin too; its namespace exists after the first push.
        let policy = cloister_policy::Policy::parse(yaml).unwrap();
        let ns = policy.name().split('/').next().unwrap();
        let _ = self
            .client
            .create_namespace_owned_by(ns, &owner(), &owner())
            .await;
        self.client
            .create_session(
                &SignedPolicy::new(yaml).signed_by(&owner()),
                &cloister_cas::client::RequestSigner::from_owner_key(&owner()).unwrap(),
            )
            .await
            .unwrap();
    }

    /// `cloister run … --sim-key platform.pem [extra] -- job BUNDLE`.
    async fn run(
        &self,
        d: &Path,
        service: &str,
        extra: &[&str],
        bundle: &str,
        envs: &[(&str, &Path)],
    ) -> Output {
        let mut args = vec![
            "run",
            "--cas",
            &self.url,
            "--cas-cert",
            "cas.crt",
            "--session",
            SESSION,
            "--service",
            service,
            "--sim-key",
            "platform.pem",
            "--files-in-memory",
        ];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--", "job", bundle]);
        cloister_env(d, &args, envs).await
    }
}

/// Encrypted trips (one KMT master key, `trips`), a second key that does not open them, an
/// app over them, a CAS with a policy pinning it.
struct Trips {
    dir: tempfile::TempDir,
    cas: Cas,
    measurement: String,
    trips_key_hex: String,
}

impl Trips {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let cas = Cas::start(d).await;
        let key = |name: &str| -> String {
            let hex: String = (0..32).map(|_| format!("{:02x}", rand_byte())).collect();
            std::fs::write(d.join(name), &hex).unwrap();
            hex
        };
        let trips_key_hex = key("trips.key");
        key("other.key");
        std::fs::write(
            d.join("keys.json"),
            format!("{{\"trips\": \"{trips_key_hex}\"}}"),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(d.join("keys.json"), std::fs::Permissions::from_mode(0o600))
                .unwrap();
        }
        // What `cloister gen taxi --out data --keys keys.json --footer-key trips` writes (the
        // generator is cloister-demo's, not this binary's): the trips, footer key `trips`.
        {
            use cloister_datagen::taxi;
            let keys = InMemoryKeyProvider::new();
            keys.insert("trips".to_owned(), hex::decode(&trips_key_hex).unwrap())
                .unwrap();
            let encryption = cloister_engine::CloisterEncryptionFactory::new(Arc::new(keys))
                .encryption_properties(&EncryptionOptions::new("trips").kmt(), &taxi::schema())
                .unwrap();
            taxi::gen_taxi(
                &taxi::TaxiSpec::new(ROWS),
                &d.join("data"),
                Some(encryption),
                &|_| {},
            )
            .unwrap();
        }
        std::fs::create_dir_all(d.join("out")).unwrap();
        ok(
            cloister(d, &["package", "keygen", "--out", "bundle.key"]).await,
            "keygen",
        );
        std::fs::create_dir_all(d.join("app")).unwrap();
        std::fs::write(
            d.join("app/00_tables.sql"),
            "CREATE EXTERNAL TABLE trips STORED AS PARQUET \
             LOCATION '${DATA}/trips/yellow_tripdata_part-00000.parquet' \
             OPTIONS ('format.crypto.factory_id' 'cloister');\n",
        )
        .unwrap();
        std::fs::write(
            d.join("app/01_count.sql"),
            "SELECT count(*) AS trips FROM trips;\n",
        )
        .unwrap();
        std::fs::write(
            d.join("app/02_save.sql"),
            "COPY (SELECT payment_type, count(*) AS n FROM trips GROUP BY payment_type) \
             TO '${OUT}/by_payment.parquet' STORED AS PARQUET \
             OPTIONS ('format.crypto.factory_id' 'cloister', \
                      'format.crypto.factory_options.footer_key' 'results');\n",
        )
        .unwrap();
        let measurement = super::package_and_measure(d).await;
        cas.push(&trips_policy(d, &measurement)).await;
        Trips {
            dir,
            cas,
            measurement,
            trips_key_hex,
        }
    }

    fn out_files(&self) -> Vec<PathBuf> {
        files_under(&self.dir.path().join("out"))
    }
}

fn rand_byte() -> u8 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    h.finish() as u8
}

fn trips_policy(d: &Path, measurement: &str) -> String {
    let owner = owner_b64();
    let data = d.join("data");
    let out = d.join("out");
    let file = |name: &str| d.join(name).display().to_string();
    let common = format!(
        "      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$\n      \
         CLOISTER_KEY_RESULTS: $$cloister:results:hex$$\n      \
         CLOISTER_APP_VARS: DATA,OUT\n      DATA: \"{}\"\n      OUT: \"{}\"\n      \
         CLOISTER_INSECURE_PRINT_RESULTS: \"true\"\n",
        data.display(),
        out.display()
    );
    let head = cloister_testkit::policies::custodian_session(SESSION, &owner);
    format!(
        r#"{head}  - name: job
    attestation:
      - measurements: ["{measurement}"]
    env:
{common}      CLOISTER_KEY_TRIPS: $$cloister:trips$$
  - name: wrong-key
    attestation:
      - measurements: ["{measurement}"]
    env:
{common}      CLOISTER_KEY_TRIPS: $$cloister:other$$
  - name: azure-no-sas
    attestation:
      - measurements: ["{measurement}"]
    env:
{common}      CLOISTER_KEY_TRIPS: $$cloister:trips$$
      AZURE_BLOB_ACCOUNT_NAME: devstoreaccount1
      AZURE_BLOB_CONTAINER_NAME: trips
      AZURE_BLOB_RELATIVE_PATH: yellow
secrets:
  - name: bundle_key
    kind: import
    from:
      file: {bundle_key}
  - name: trips
    kind: import
    from:
      file: {trips}
  - name: other
    kind: import
    from:
      file: {other}
  - name: results
    kind: aes256
"#,
        bundle_key = file("bundle.key"),
        trips = file("trips.key"),
        other = file("other.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_runs_the_bundles_sql_over_encrypted_data_and_commits_encrypted_outputs() {
    let t = Trips::new().await;
    let d = t.dir.path();
    let out = ok(
        t.cas.run(d, "job", &["--json"], "app.bundle", &[]).await,
        "job",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["measurement"], t.measurement.as_str());
    assert_eq!(v["results"][0]["name"], "01_count");
    assert_eq!(v["results"][0]["data"][0]["trips"], ROWS);
    assert_eq!(v["outputs"].as_array().unwrap().len(), 1);
    assert!(
        v["outputs"][0]["url"]
            .as_str()
            .unwrap()
            .ends_with("by_payment.parquet")
    );
    assert_eq!(t.out_files().len(), 1, "{:?}", t.out_files());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("keys: results, trips"), "{stderr}");
    for stream in [text(&out.stdout), stderr] {
        canary::assert_absent(&stream, &t.trips_key_hex);
    }

    // The human form: a table per query and the outputs summary.
    std::fs::remove_file(d.join("out/by_payment.parquet")).unwrap();
    let out = ok(t.cas.run(d, "job", &[], "app.bundle", &[]).await, "job");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("== 01_count (1 rows) =="), "{stdout}");
    assert!(stdout.contains(&ROWS.to_string()), "{stdout}");
    assert!(stdout.contains("by_payment.parquet"), "{stdout}");
}

#[derive(Debug, Clone, Copy)]
enum Spoil {
    TamperedBundle,
    MeasurementNotPinned,
    WrongDataKey,
    MissingSasToken,
}

#[rstest]
#[case::tampered_bundle(Spoil::TamperedBundle, 1, &["tampered"])]
#[case::measurement_not_pinned(Spoil::MeasurementNotPinned, 1, &[".measurement", "audit log, entry"])]
#[case::wrong_data_key(Spoil::WrongDataKey, 1, &["\"trips\"", "CLOISTER_KEY_TRIPS"])]
#[case::missing_sas_token(Spoil::MissingSasToken, 2, &["AZURE_BLOB_SAS_TOKEN"])]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_failures_name_their_cause_and_write_no_output(
    #[case] spoil: Spoil,
    #[case] code: i32,
    #[case] causes: &[&str],
) {
    let t = Trips::new().await;
    let d = t.dir.path();
    let mut service = "job";
    match spoil {
        Spoil::TamperedBundle => {
            super::tamper_bundle(d);
        }
        Spoil::MeasurementNotPinned => {
            std::fs::write(d.join("app/01_count.sql"), "SELECT 1;\n").unwrap();
            super::package_and_measure(d).await;
        }
        Spoil::WrongDataKey => service = "wrong-key",
        Spoil::MissingSasToken => service = "azure-no-sas",
    }
    let out = t.cas.run(d, service, &[], "app.bundle", &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    for cause in causes {
        assert!(stderr.contains(cause), "{cause:?} in {stderr}");
    }
    assert!(
        stderr.contains("wrote nothing") || stderr.contains("no output was written"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert!(t.out_files().is_empty(), "{:?}", t.out_files());
    for stream in [text(&out.stdout), stderr] {
        canary::assert_absent(&stream, &t.trips_key_hex);
    }
}

/// The canary planted in every input string.
const CANARY: &str = "QZXJ-CANARY-PLAINTEXT";
const CANARY_ROWS: u64 = 1_000_000;

/// Plant canaries in an encrypted input, run a job that must spill (32 MiB memory limit) and
/// writes an encrypted output, then look for the canary in every file under the work, temp
/// (spill) and output directories, and in the job's stdout and stderr at trace level (-vv): none.
/// The job's report shows that it spilled; spill files seen while it ran are Cloister's
/// encrypted format.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_plaintext_reaches_disk_logs_or_output_while_spilling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let cas = Cas::start(d).await;

    // The input: 1M rows whose strings all carry the canary, encrypted under `input`.
    let key_hex: String = (0..32).map(|i| format!("{:02x}", i * 7 + 3)).collect();
    std::fs::write(d.join("input.key"), &key_hex).unwrap();
    let keys = InMemoryKeyProvider::new()
        .with_key("input", hex::decode(&key_hex).unwrap())
        .unwrap();
    let engine = EngineBuilder::new(Arc::new(keys)).build().unwrap();
    let input = d.join("input");
    engine
        .sql(&format!(
            "COPY (SELECT value AS id, \
                   '{CANARY}-' || CAST(value * 7919 % {CANARY_ROWS} AS VARCHAR) AS name \
                   FROM generate_series(1, {CANARY_ROWS})) \
             TO '{}/canaries.parquet' STORED AS PARQUET OPTIONS ({})",
            input.display(),
            EncryptionOptions::new("input").to_sql_options()
        ))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    drop(engine);
    let input_bytes = std::fs::read(input.join("canaries.parquet")).unwrap();
    // The input is encrypted.
    canary::assert_absent(&input_bytes, CANARY);

    // The app: a count (printed) and a sort of every row (spilled, written encrypted).
    ok(
        cloister(d, &["package", "keygen", "--out", "bundle.key"]).await,
        "keygen",
    );
    std::fs::create_dir_all(d.join("app")).unwrap();
    std::fs::write(
        d.join("app/00_setup.sql"),
        "SET datafusion.execution.target_partitions = 1;\n\
         SET datafusion.execution.sort_spill_reservation_bytes = 1048576;\n\
         SET datafusion.execution.spill_compression = 'uncompressed';\n\
         CREATE EXTERNAL TABLE input STORED AS PARQUET LOCATION '${INPUT}/' \
         OPTIONS ('format.crypto.factory_id' 'cloister');\n",
    )
    .unwrap();
    std::fs::write(
        d.join("app/01_count.sql"),
        "SELECT count(*) AS n, min(id) AS first, max(id) AS last FROM input;\n",
    )
    .unwrap();
    std::fs::write(
        d.join("app/02_sorted.sql"),
        "COPY (SELECT name, id FROM input ORDER BY name DESC) TO '${OUT}/sorted.parquet' \
         STORED AS PARQUET OPTIONS ('format.crypto.factory_id' 'cloister', \
         'format.crypto.factory_options.footer_key' 'out');\n",
    )
    .unwrap();
    let measurement = super::package_and_measure(d).await;
    let out_dir = d.join("out");
    let tmp = d.join("tmp");
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    let head = cloister_testkit::policies::custodian_session(SESSION, &owner_b64());
    cas.push(&format!(
        r#"{head}  - name: job
    attestation:
      - measurements: ["{measurement}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$
      CLOISTER_KEY_INPUT: $$cloister:input$$
      CLOISTER_KEY_OUT: $$cloister:out:hex$$
      CLOISTER_MEMORY_LIMIT: 32M
      CLOISTER_APP_VARS: INPUT,OUT
      INPUT: "{input}"
      OUT: "{out}"
      CLOISTER_INSECURE_PRINT_RESULTS: "true"
secrets:
  - name: bundle_key
    kind: import
    from:
      file: {bundle_key}
  - name: input
    kind: import
    from:
      file: {input_key}
  - name: out
    kind: aes256
"#,
        input = input.display(),
        out = out_dir.display(),
        bundle_key = d.join("bundle.key").display(),
        input_key = d.join("input.key").display(),
    ))
    .await;

    // Watch the temp directory while the job runs: every spill file seen is kept.
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = Arc::clone(&done);
        let tmp = tmp.clone();
        std::thread::spawn(move || {
            let mut seen: Vec<(PathBuf, Vec<u8>)> = Vec::new();
            while !done.load(Ordering::Relaxed) {
                for path in files_under(&tmp) {
                    if seen.iter().all(|(p, _)| *p != path)
                        && let Ok(bytes) = std::fs::read(&path)
                        && bytes.len() > 8
                    {
                        seen.push((path, bytes));
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            seen
        })
    };
    let out = cas
        .run(
            d,
            "job",
            &["--json", "-vv"],
            "app.bundle",
            &[("TMPDIR", tmp.as_path())],
        )
        .await;
    done.store(true, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    let out = ok(out, "the canary job");

    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["data"][0]["n"], CANARY_ROWS);
    assert_eq!(v["outputs"][0]["rows"], CANARY_ROWS);
    assert!(
        v["spill"]["files"].as_u64().unwrap() > 0,
        "the job did not spill: {}",
        v["spill"]
    );
    assert!(v["spill"]["bytes"].as_u64().unwrap() > 0);
    for (path, bytes) in &seen {
        assert!(
            bytes.starts_with(b"CLSPILL1"),
            "{} is not an encrypted spill file",
            path.display()
        );
        canary::assert_absent(bytes, CANARY);
    }
    // Spill files live for seconds while the sort merges: the watcher sees some.
    assert!(!seen.is_empty(), "no spill file seen in {}", tmp.display());

    // Zero hits: every file under the work directory (input, app, bundle, output, temp), and
    // every stream of the job.
    let mut scanned = 0;
    for path in files_under(d) {
        scanned += 1;
        let is_plain_app = path.starts_with(d.join("app"));
        if !is_plain_app {
            canary::assert_absent(path.as_path(), CANARY);
        }
    }
    assert!(
        files_under(&out_dir).len() == 1,
        "{:?}",
        files_under(&out_dir)
    );
    assert!(scanned > 5);
    canary::assert_absent(&out.stdout, CANARY);
    canary::assert_absent(&out.stderr, CANARY);
    assert!(!text(&out.stderr).is_empty(), "debug logs expected");
    // The spill directory is gone after the job.
    assert!(
        files_under(&tmp).is_empty(),
        "left in temp: {:?}",
        files_under(&tmp)
    );
}

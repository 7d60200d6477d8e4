//! The launch end to end against a real CAS on `127.0.0.1:0` (in this process, on its own
//! runtime), with sim evidence; and the private files directory removed on SIGTERM (in a child
//! process: this test binary re-executed with `CLOISTER_RUNTIME_TEST_CHILD` set).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cloister_cas::client::RequestSigner;
use cloister_policy::{OwnerKey, SignedPolicy};
use cloister_runtime::bundle::{self, BundleKey, Header};
use cloister_runtime::{
    BundleDigest, Error, EvidenceSource, FilesMode, InjectedFiles, Job, Launch, Measurement,
    RoleContext, launch,
};
use secrecy::{ExposeSecret as _, SecretString};

const CHILD_ENV: &str = "CLOISTER_RUNTIME_TEST_CHILD";
const SESSION: &str = "demo/runtime";

/// A CAS serving on 127.0.0.1:0 until dropped, trusting one sim platform key (the testkit's,
/// on a runtime of its own).
struct Cas {
    cas: cloister_testkit::cas::Cas,
    rt: tokio::runtime::Runtime,
}

impl Cas {
    fn start(bundle_key_hex: String) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let owner = OwnerKey::from_seed(&[1; 32]).unwrap();
        let cas = rt.block_on(
            cloister_testkit::cas::Cas::builder()
                .config(move |b| {
                    b.env_source(Arc::new(move |name| {
                        (name == "BUNDLE_KEY").then(|| bundle_key_hex.clone())
                    }))
                    .imports(cloister_cas::ImportRules::none().allow_env("demo", "BUNDLE_KEY"))
                })
                .admin(&RequestSigner::from_owner_key(&owner).unwrap())
                .start(),
        );
        Self { cas, rt }
    }

    fn push(&self, yaml: &str) {
        let owner = OwnerKey::from_seed(&[1; 32]).unwrap();
        let client = &self.cas.client;
        self.rt.block_on(async {
            // Once per CAS; a second push finds the namespace there.
            let _ = client
                .create_namespace_owned_by("demo", &owner, &owner)
                .await;
            client
                .create_session(
                    &SignedPolicy::new(yaml).signed_by(&owner),
                    &RequestSigner::from_owner_key(&owner).unwrap(),
                )
                .await
                .unwrap()
        });
    }

    fn launch_options(&self, service: &str, bundle: &Path, files: FilesMode) -> Launch {
        let key = self.cas.platform_key_copy();
        let mut options = Launch::new(
            &self.cas.url,
            &self.cas.cert_pem,
            SESSION,
            service,
            EvidenceSource::Sim(key),
        );
        options.bundle = Some(bundle.to_path_buf());
        options.host_args = vec!["from-the-host".into()];
        options.files = files;
        options
    }
}

fn owner_key_b64() -> String {
    let pem = OwnerKey::from_seed(&[1; 32])
        .unwrap()
        .public_key()
        .to_pem()
        .unwrap();
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

/// Services: `job` (pinned to `pinned`, the bundle key, a file, env, a host argument), `no-key`
/// (pinned, no bundle key), `digest-pinned` (pinned, and `CLOISTER_BUNDLE_DIGEST` = `digest`),
/// `other` (pinned to another measurement).
fn policy(pinned: &Measurement, digest: &str) -> String {
    let head = cloister_testkit::policies::custodian_session(SESSION, &owner_key_b64());
    format!(
        r#"{head}  - name: job
    attestation:
      - measurements: ["{pinned}"]
    args: [--input, "@@0"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$
      DB_PASSWORD: $$cloister:db_password$$
      MODE: batch
    files:
      - path: /etc/app/password
        content: $$cloister:db_password$$
        mode: "0400"
  - name: no-key
    attestation:
      - measurements: ["{pinned}"]
  - name: digest-pinned
    attestation:
      - measurements: ["{pinned}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$
      CLOISTER_BUNDLE_DIGEST: "{digest}"
  - name: other
    attestation:
      - measurements: ["{other}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$
secrets:
  - name: bundle_key
    kind: import
    from:
      env: BUNDLE_KEY
  - name: db_password
    kind: ascii
"#,
        other = "ab".repeat(48),
    )
}

struct Setup {
    cas: Cas,
    bundle_dir: tempfile::TempDir,
    bundle: PathBuf,
    digest: BundleDigest,
}

fn setup() -> Setup {
    let key = BundleKey::generate().unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("query.sql"), "SELECT 42;\n").unwrap();
    let sealed = bundle::package(app.path(), &key, bundle::DEFAULT_KEY_ID).unwrap();
    let digest = Header::parse(&sealed).unwrap().digest;
    let bundle_dir = tempfile::tempdir().unwrap();
    let bundle = bundle_dir.path().join("app.bundle");
    std::fs::write(&bundle, &sealed).unwrap();
    let cas = Cas::start(key.to_hex().to_string());
    // The test binary is the running executable the runtime measures.
    let pinned = Measurement::of_running_exe(Some(&digest)).unwrap();
    cas.push(&policy(&pinned, &"00".repeat(32)));
    Setup {
        cas,
        bundle_dir,
        bundle,
        digest,
    }
}

#[test]
fn an_attested_job_gets_its_bundle_configuration_and_files_and_leaves_nothing_behind() {
    let s = setup();
    let parent = tempfile::tempdir().unwrap();
    let options = s.cas.launch_options(
        "job",
        &s.bundle,
        FilesMode::Under(parent.path().to_path_buf()),
    );
    let digest = s.digest;
    let files_dir = launch(
        options,
        Job::new(move |bundle: bundle::Bundle, ctx: RoleContext| {
            assert_eq!(bundle.file("query.sql"), Some(&b"SELECT 42;\n"[..]));
            assert_eq!(*bundle.digest(), digest);
            assert_eq!(ctx.measurement, Measurement::of_running_exe(Some(&digest))?);
            // The bundle key was consumed; the rest of the env is there.
            let names: Vec<&str> = ctx.env.keys().map(String::as_str).collect();
            assert_eq!(names, ["DB_PASSWORD", "MODE"]);
            assert_eq!(ctx.env["MODE"].expose_secret(), "batch");
            let args: Vec<&str> = ctx.args.iter().map(|a| a.expose_secret()).collect();
            assert_eq!(args, ["--input", "from-the-host"]);
            // The file is in memory and in the private directory, with the same content.
            let password = ctx.env["DB_PASSWORD"].expose_secret();
            let in_memory = ctx.files.get(Path::new("/etc/app/password")).unwrap();
            assert_eq!(in_memory.content.expose_secret(), password);
            let on_disk = ctx.files.host_path(Path::new("/etc/app/password")).unwrap();
            assert_eq!(std::fs::read_to_string(&on_disk)?, password);
            // The identity: a certificate for this key and a token.
            assert!(ctx.identity.certificate_pem.contains("BEGIN CERTIFICATE"));
            assert!(!ctx.identity.token.expose_secret().is_empty());
            // A child sees exactly the policy's env, and where the files are.
            let out = ctx.command("/usr/bin/env").output()?;
            let child_env = String::from_utf8(out.stdout)?;
            assert!(child_env.contains("MODE=batch"), "{child_env}");
            assert!(child_env.contains("CLOISTER_FILES_DIR="), "{child_env}");
            assert!(!child_env.contains("CLOISTER_BUNDLE_KEY"), "{child_env}");
            assert!(!child_env.contains("PATH="), "{child_env}");
            // Debug shows names, not values.
            let debug = format!("{ctx:?}");
            assert!(!debug.contains(password), "{debug}");
            Ok(ctx.files.dir().unwrap().to_path_buf())
        }),
    )
    .unwrap();
    assert!(files_dir.starts_with(parent.path()));
    assert!(!files_dir.exists(), "the injected files outlived the role");
    drop(s.bundle_dir);
}

#[test]
fn refusals_name_their_cause_and_write_nothing() {
    let s = setup();
    let parent = tempfile::tempdir().unwrap();
    let under = || FilesMode::Under(parent.path().to_path_buf());
    let never = || Job::new(|_: bundle::Bundle, _: RoleContext| -> Result<(), _> { panic!("ran") });

    // A measurement the policy does not pin: the CAS refuses, naming the rule.
    let err = launch(s.cas.launch_options("other", &s.bundle, under()), never()).unwrap_err();
    assert!(
        matches!(&err, Error::Refused { refused, .. }
            if refused.audit_seq.is_some()
                && refused.rules.iter().any(|r| r.ends_with(".measurement"))),
        "{err:?}"
    );
    assert!(err.is_refusal());

    // No bundle key in the configuration.
    let err = launch(s.cas.launch_options("no-key", &s.bundle, under()), never()).unwrap_err();
    assert!(matches!(err, Error::NoBundleKey { .. }), "{err:?}");

    // A digest pinned in the configuration that is not the bundle's.
    let err = launch(
        s.cas.launch_options("digest-pinned", &s.bundle, under()),
        never(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::BundleNotPinned { got, .. } if *got == s.digest.to_string()),
        "{err:?}"
    );

    // A tampered bundle (the measurement is the header's, so the CAS admits it; opening fails).
    let mut sealed = std::fs::read(&s.bundle).unwrap();
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let tampered = s.bundle_dir.path().join("tampered.bundle");
    std::fs::write(&tampered, sealed).unwrap();
    let err = launch(s.cas.launch_options("job", &tampered, under()), never()).unwrap_err();
    assert!(matches!(err, Error::BundleTampered { .. }), "{err:?}");

    // None of them wrote a file.
    assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
}

#[test]
fn a_role_that_needs_a_bundle_is_refused_without_one_before_attesting() {
    let options = Launch::new(
        "https://127.0.0.1:1",
        "not pem",
        SESSION,
        "job",
        EvidenceSource::Hardware {
            root: "/nonexistent".into(),
        },
    );
    let err = launch(
        options,
        Job::new(|_: bundle::Bundle, _: RoleContext| Ok(())),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::InvalidOption { what: "bundle", .. }),
        "{err:?}"
    );
}

#[test]
fn without_a_tee_las_or_sim_key_the_launch_says_what_to_pass() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("q.sql"), "SELECT 1;").unwrap();
    let sealed = bundle::package(dir.path(), &BundleKey::generate().unwrap(), "k").unwrap();
    let path = dir.path().join("b");
    std::fs::write(&path, sealed).unwrap();
    let mut options = Launch::new(
        "https://127.0.0.1:1",
        "not pem",
        SESSION,
        "job",
        EvidenceSource::Hardware {
            root: dir.path().to_path_buf(),
        },
    );
    options.bundle = Some(path);
    let err = launch(
        options,
        Job::new(|_: bundle::Bundle, _: RoleContext| Ok(())),
    )
    .unwrap_err();
    assert!(matches!(err, Error::NoTee), "{err:?}");
    assert!(err.to_string().contains("--las"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// SIGTERM.

/// Entry point of the child process of the SIGTERM test; does nothing on its own.
#[test]
fn child_process_entry_point() {
    let Ok(parent) = std::env::var(CHILD_ENV) else {
        return;
    };
    let files = InjectedFiles::materialise(
        vec![cloister_cas::client::ConfigFile {
            path: "/etc/app/secret".into(),
            content: SecretString::from("s3cr3t"),
            mode: 0o400,
        }],
        &FilesMode::Under(parent.into()),
    )
    .unwrap();
    println!("DIR {}", files.dir().unwrap().display());
    std::thread::sleep(std::time::Duration::from_secs(60));
    drop(files);
}

#[test]
fn sigterm_removes_the_injected_files() {
    use std::os::unix::process::ExitStatusExt as _;
    let parent = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "child_process_entry_point",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, parent.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let dir = loop {
        let line = lines
            .next()
            .expect("the child printed its directory")
            .unwrap();
        // libtest may have printed the test's name on the same line.
        if let Some((_, dir)) = line.split_once("DIR ") {
            break PathBuf::from(dir);
        }
    };
    assert!(dir.join("etc/app/secret").exists());
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "{status:?}");
    assert!(!dir.exists(), "the injected files survived SIGTERM");
}

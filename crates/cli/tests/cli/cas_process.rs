//! A CAS run as a real `cloister cas serve` child process on `127.0.0.1:0`, and the keys,
//! policies and sim platform the process-level tests share.

use super::cloister;
use cloister_attest::collect::SimCollector;
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_cas::client::CasClient;
use cloister_policy::{OwnerKey, SessionHash, SignedPolicy};
use cloister_testkit::process::ServiceProcess;
use secrecy::ExposeSecret as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// The measurement the test policies pin for their `driver` service.
pub const MEASUREMENT: [u8; 32] = [0xab; 32];
/// The value of `CANARY_TOKEN` in every test CAS's environment: the imported secret.
pub const CANARY: &str = "CANARY-5d1f0c9a7e2b-imported-api-token";
/// The namespaces the process tests' policies import host secrets in.
pub const IMPORTING_NAMESPACES: [&str; 4] = ["canary", "e2e", "burst", "demo"];
/// The seed of every test CAS's admin key (`DIR/admin.pem`, `DIR/admin.pem.pub`).
pub const ADMIN_SEED: u8 = 0xad;
/// How long a CAS gets to come up (a debug build on a loaded 2-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// A running `cloister cas serve`, killed (SIGKILL) when dropped (a testkit
/// [`ServiceProcess`]).
///
/// Layout under the test's directory `dir`: `data/` (the CAS data directory), `master.key`
/// (made with `cas init` on first start), `platform.pem.pub` (trusted when present),
/// `imports.yaml` (the import rules: the namespaces of [`IMPORTING_NAMESPACES`] may import
/// `CANARY_TOKEN` and the files beneath `imports/`), and the child's output appended to
/// `cas.stdout.log` and `cas.stderr.log`.
pub struct CasProcess {
    process: ServiceProcess,
    /// The URL from `data/cas.addr`.
    pub url: String,
    /// The data directory.
    pub data: PathBuf,
    /// The pinned certificate, `data/cas.crt`.
    pub cert: PathBuf,
    /// The child's stdout.
    pub stdout_log: PathBuf,
    /// The child's stderr.
    pub stderr_log: PathBuf,
}

impl CasProcess {
    /// Starts a CAS in `dir` with extra environment variables and `serve` arguments, and
    /// waits until it has written `data/cas.addr`.
    pub fn start(dir: &Path, env: &[(&str, &str)], extra: &[&str]) -> Self {
        Self::start_keyed(dir, env, extra, true)
    }

    /// The same; with `key_file` false, the master key comes from `CLOISTER_MASTER_KEY` (the
    /// contents of `master.key`) instead of `--master-key-file`.
    pub fn start_keyed(dir: &Path, env: &[(&str, &str)], extra: &[&str], key_file: bool) -> Self {
        let data = dir.join("data");
        let key = dir.join("master.key");
        std::fs::create_dir_all(dir.join("imports")).unwrap();
        let mut rules = String::from("namespaces:\n");
        for ns in IMPORTING_NAMESPACES {
            rules.push_str(&format!(
                "  {ns}:\n    env: [CANARY_TOKEN]\n    files: [\"{}\"]\n",
                dir.join("imports").display()
            ));
        }
        std::fs::write(dir.join("imports.yaml"), rules).unwrap();
        if !key.exists() {
            let (admin, _) = owner(dir, "admin.pem", ADMIN_SEED);
            std::fs::write(
                dir.join("admin.pem.pub"),
                admin.public_key().to_pem().unwrap(),
            )
            .unwrap();
            let out = cloister(
                &[
                    "cas",
                    "init",
                    "--data",
                    "data",
                    "--master-key-file",
                    "master.key",
                    "--admin-key",
                    "admin.pem.pub",
                ],
                dir,
            );
            assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        }
        let addr = data.join("cas.addr");
        let _ = std::fs::remove_file(&addr);
        let stdout_log = dir.join("cas.stdout.log");
        let stderr_log = dir.join("cas.stderr.log");
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap()
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cloister"));
        cmd.args(["cas", "serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .args(["--imports", "imports.yaml"])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("CLOISTER_MASTER_KEY")
            .env("CANARY_TOKEN", CANARY)
            .stdin(Stdio::null())
            .stdout(append(&stdout_log))
            .stderr(append(&stderr_log));
        let platform = dir.join("platform.pem.pub");
        if platform.exists() {
            cmd.arg("--insecure-sim-platform-key").arg(&platform);
        }
        cmd.arg("--auditor-key").arg(auditor_key(dir));
        if key_file {
            cmd.arg("--master-key-file").arg(&key);
        } else {
            let hex = std::fs::read_to_string(&key).unwrap();
            cmd.env("CLOISTER_MASTER_KEY", hex.trim());
        }
        cmd.envs(env.iter().copied()).args(extra);
        let (process, url) = ServiceProcess::start(
            "cloister cas serve",
            &mut cmd,
            &addr,
            &stderr_log,
            START_TIMEOUT,
        );
        assert!(url.starts_with("https://127.0.0.1:"), "{url}");
        Self {
            process,
            url,
            cert: data.join("cas.crt"),
            data,
            stdout_log,
            stderr_log,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Creates namespace `ns` owned by `owner`, signed by the admin key (on a thread of its
    /// own, so that callers inside or outside a runtime can use it).
    pub fn namespace(&self, ns: &str, owner: &OwnerKey) {
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let admin = OwnerKey::from_seed(&[ADMIN_SEED; 32]).unwrap();
                    self.client()
                        .create_namespace_owned_by(ns, owner, &admin)
                        .await
                        .unwrap();
                });
            })
            .join()
            .unwrap();
        });
    }

    /// A client pinned to this CAS's certificate.
    pub fn client(&self) -> CasClient {
        let pem = std::fs::read_to_string(&self.cert).unwrap();
        CasClient::new(&self.url, &pem).unwrap()
    }

    /// `args` followed by `--cas URL --cas-cert CERT`.
    pub fn args(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--cas".to_owned(),
            self.url.clone(),
            "--cas-cert".to_owned(),
            self.cert.display().to_string(),
        ]);
        all
    }

    /// `args` followed by `--key AUDITOR.pem --cas URL --cas-cert CERT`: an audit command read
    /// with the auditor key this CAS was started with.
    pub fn audit_args(&self, args: &[&str]) -> Vec<String> {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--key".to_owned(), AUDITOR_FILE.to_owned()]);
        all.extend(self.args(&[]));
        all
    }

    /// `kill -9`, and reap the process.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// SIGTERM, and wait (at most 30 s) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.process.terminate()
    }
}

/// The auditor's private key, in the test's directory (its public key next to it, `.pub`).
pub const AUDITOR_FILE: &str = "auditor.pem";

/// Writes the auditor key pair into `dir` (once; the same key for every start) and returns
/// the public key's path.
fn auditor_key(dir: &Path) -> PathBuf {
    let private = dir.join(AUDITOR_FILE);
    let public = dir.join(format!("{AUDITOR_FILE}.pub"));
    if !public.exists() {
        let key = OwnerKey::from_seed(&[0xad; 32]).unwrap();
        std::fs::write(&private, key.to_pkcs8_pem().unwrap().as_bytes()).unwrap();
        std::fs::write(&public, key.public_key().to_pem().unwrap()).unwrap();
    }
    public
}

pub use cloister_testkit::cli::text;

/// Runs `cloister` with `args` in `dir` and requires exit code `code`.
pub fn run<S: AsRef<str>>(dir: &Path, args: &[S], code: i32) -> Output {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let out = cloister(&args, dir);
    assert_eq!(
        out.status.code(),
        Some(code),
        "cloister {args:?}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// A sim platform whose public key is at `dir/platform.pem.pub` (trusted by [`CasProcess`]).
pub fn platform(dir: &Path) -> PlatformKey {
    let key = PlatformKey::generate();
    std::fs::write(dir.join("platform.pem.pub"), key.public_key().to_pem()).unwrap();
    key
}

/// A collector of sim evidence from `platform` for code measured as `measurement`.
pub fn collector(platform: &PlatformKey, measurement: &[u8]) -> SimCollector {
    let key = PlatformKey::from_pem(platform.to_pem().expose_secret()).unwrap();
    SimCollector::new(
        key,
        Statement {
            measurement: measurement.to_vec(),
            svn: 1,
            ..Default::default()
        },
    )
}

/// An owner key from a seed, written to `dir/file` (PKCS#8 PEM, 0600); returns the key and
/// its public half as a policy names it (base64 SPKI DER).
pub fn owner(dir: &Path, file: &str, seed: u8) -> (OwnerKey, String) {
    let key = OwnerKey::from_seed(&[seed; 32]).unwrap();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(
        &mut options.open(dir.join(file)).unwrap(),
        key.to_pkcs8_pem().unwrap().as_bytes(),
    )
    .unwrap();
    let public = public_b64(&key);
    (key, public)
}

/// A request signer with `key`: a namespace owner's approval of a session's creation.
pub fn approver(key: &OwnerKey) -> cloister_cas::client::RequestSigner {
    cloister_cas::client::RequestSigner::from_owner_key(key).unwrap()
}

/// The public half of `key` as a policy names it.
pub fn public_b64(key: &OwnerKey) -> String {
    key.public_key()
        .to_pem()
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// A sim policy: `owners` (name, base64 key), `approvals` of them for an update; a `driver`
/// service pinned to [`MEASUREMENT`] whose configuration holds a generated password, a
/// generated AES key (hex), the imported canary (`CANARY_TOKEN`) and a key and certificate
/// from the session CA.
pub fn sim_policy(
    name: &str,
    version: u64,
    predecessor: Option<SessionHash>,
    owners: &[(&str, &str)],
    approvals: usize,
) -> String {
    let mut y = cloister_testkit::policies::head(name, version, predecessor, owners);
    y.push_str(&format!("  update:\n    approvals: {approvals}\n"));
    y.push_str(&format!(
        r#"security:
  tees: [sim]
services:
  - name: driver
    attestation:
      - measurements: ["{m}"]
    command: /bin/driver
    args: [run]
    env:
      DB_PASSWORD: $$cloister:db_password$$
      DATA_KEY: $$cloister:data_key:hex$$
      API_TOKEN: $$cloister:api_token$$
    files:
      - path: /etc/tls/key.pem
        content: $$cloister:driver_cert:key$$
        mode: "0400"
      - path: /etc/tls/cert.pem
        content: $$cloister:driver_cert:chain$$
        mode: "0444"
secrets:
  - name: db_password
    kind: ascii
  - name: data_key
    kind: aes256
  - name: api_token
    kind: import
    from:
      env: CANARY_TOKEN
  - name: session_ca
    kind: x509-ca
    common_name: Process test session CA
  - name: driver_cert
    kind: x509
    issuer: session_ca
    common_name: driver
    sans: [driver.test]
"#,
        m = hex::encode(MEASUREMENT)
    ));
    y
}

/// `yaml` signed by each of `owners`.
pub fn signed(yaml: &str, owners: &[&OwnerKey]) -> SignedPolicy {
    owners
        .iter()
        .fold(SignedPolicy::new(yaml), |p, o| p.signed_by(o))
}

/// A runtime for the tests' client calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

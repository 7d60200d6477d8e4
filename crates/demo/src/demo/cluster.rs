//! A whole Cloister deployment in one process, for demos, benchmarks and tests.
//!
//! [`Cluster::start`] brings up, on 127.0.0.1 with ports chosen by the OS:
//!
//! - a CAS (HTTPS, its own data directory, a fresh master key) that trusts one freshly made
//!   **sim** platform key — development only, no hardware protects anything — and lets
//!   policies import from this host exactly what the caller's [`ImportRules`] allow (the
//!   demos: the directory of their bundle keys, for their own namespace);
//! - a sim LAS signing evidence with that platform key (for the measurement each workload
//!   claims, as a sim LAS does);
//! - a fresh policy owner key ([`Cluster::owner_yaml`] is its `access.owners` entry), and a
//!   fresh auditor key the CAS lets read its whole audit log;
//! - a fresh operator admin key set on the CAS, which creates the `demo` namespace owned by
//!   that owner ([`Cluster::create_namespace`] makes others; [`Cluster::push_policy`] creates
//!   the namespace of a policy it pushes when it is missing).
//!
//! The servers run on a small tokio runtime owned by the [`Cluster`]; they stop when it is
//! dropped. Its methods block: use it from plain threads (`main`, `#[test]`), never from inside
//! an async runtime. Then:
//!
//! 1. write an app directory ([`write_app`]), make a bundle key ([`make_bundle_key`]) and
//!    [`package_app`] it: the [`PackagedApp`] carries the measurement to pin (this executable
//!    and the bundle's digest), or pin [`measurement_without_bundle`] for a workload that runs
//!    no bundle;
//! 2. [`Cluster::push_policy`] / [`Cluster::update_policy`] the policy, signed by the owner;
//! 3. [`Cluster::run_job`] runs an attested SQL job exactly as `cloister run … -- job BUNDLE`
//!    does (runtime [`launch`](fn@launch) on a blocking thread, evidence from the LAS, the configuration
//!    in memory) and returns its [`JobReport`]; [`Cluster::launch`] runs any other [`Role`];
//! 4. [`Cluster::audit_entries`] reads the CAS audit log and [`audit_summary`] condenses it to
//!    who attested and what was released to whom.
//!
//! ```text
//! let keys = dir.join("keys");
//! let cluster = Cluster::start(dir.join("cluster"), ImportRules::none().allow_files("demo", &keys))?;
//! make_bundle_key(&keys.join("app.key"))?;
//! write_app(&dir.join("app"), &[("q.sql", "SELECT 1 AS one".into())])?;
//! let app = package_app(&dir.join("app"), &keys.join("app.key"), &dir.join("app.bundle"))?;
//! cluster.push_policy(&policy_yaml_pinning(app.measurement))?;
//! let report = cluster.run_job("demo/x", "job", &app.path, JobOptions::default())?;
//! ```
//!
//! The API is used by `cloister demo`, `cloister bench taxi` and `cloister demo contoso`: keep it
//! stable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use cloister_attest::sim::{PlatformKey, Statement};
pub use cloister_cas::ImportRules;
use cloister_cas::api::{CreateNamespace, NamespaceOwnerJson, SessionSummary};
use cloister_cas::audit::Entry;
use cloister_cas::client::{CasClient, RequestSigner};
use cloister_cas::server::{self, CasState};
use cloister_cas::{CasConfig, MasterKey};
use cloister_las::{self as las, CollateralSettings, LasConfig, LasState};
use cloister_policy::{OwnerKey, SignedPolicy};
use cloister_runtime::bundle::{self, BundleKey, Header};
use cloister_runtime::{
    BundleDigest, EvidenceSource, FilesMode, Job, Launch, Measurement, Role, RoleError, launch,
};
use serde::Serialize;
use tokio::sync::watch;

use cloister_roles::job::{self, JobOptions, JobReport};

/// The bundle key id recorded in bundles the harness packages.
pub const BUNDLE_KEY_ID: &str = "bundle_key";

/// The namespace the cluster creates at start.
pub const DEMO_NAMESPACE: &str = "demo";

/// A CAS, a sim LAS and a policy owner on loopback; see the [module docs](self).
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    dir: PathBuf,
    cas_url: String,
    cas_cert_pem: String,
    las_url: String,
    owner: OwnerKey,
    /// The key the CAS names as its auditor: it reads the whole audit log.
    auditor: RequestSigner,
    admin: OwnerKey,
    namespaces: std::sync::Mutex<std::collections::BTreeSet<String>>,
    client: CasClient,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("dir", &self.dir)
            .field("cas_url", &self.cas_url)
            .field("las_url", &self.las_url)
            .field("owner", &self.owner.fingerprint().to_string())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Start the CAS (data in `dir/cas`; policies may import from this host what `imports`
    /// allows, nothing else) and the sim LAS, and make an owner key.
    pub fn start(dir: impl Into<PathBuf>, imports: ImportRules) -> anyhow::Result<Self> {
        let dir = dir.into();
        let cas_dir = dir.join("cas");
        std::fs::create_dir_all(&cas_dir)
            .with_context(|| format!("cannot create {}", cas_dir.display()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cluster")
            .enable_all()
            .build()
            .context("cannot start the cluster's async runtime")?;
        let (shutdown, _) = watch::channel(false);
        let stopped = |rx: watch::Receiver<bool>| async move {
            let mut rx = rx;
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let platform = PlatformKey::generate();
        let auditor = OwnerKey::generate()?;
        let config = CasConfig::builder("https://cas.cloister.local")
            .dangerous()
            .trust_sim_key(platform.public_key())
            .auditor_key(auditor.public_key())
            .imports(imports)
            .build()?;
        let state = CasState::open(&cas_dir, &MasterKey::generate(), config)?;
        let admin = OwnerKey::generate()?;
        state.init_admin(RequestSigner::from_owner_key(&admin)?.spki_der())?;
        let cas_cert_pem = state.certificate_pem().to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind the CAS")?;
        listener.set_nonblocking(true)?;
        let cas_url = format!("https://{}", listener.local_addr()?);
        rt.spawn({
            let stop = stopped(shutdown.subscribe());
            async move {
                if let Err(e) = server::run(listener, state, stop).await {
                    tracing::error!(error = %e, "the in-process CAS stopped");
                }
            }
        });

        let las_listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .context("bind the LAS")?;
        let las_addr: SocketAddr = las_listener.local_addr()?;
        let las_config = LasConfig::new(
            las_addr,
            las::EvidenceSource::Sim {
                key: platform,
                // The runtime claims its own measurement; this one is never used.
                template: Statement {
                    measurement: vec![0; 48],
                    ..Statement::default()
                },
            },
            CollateralSettings::offline(None),
        )?;
        let las_state = LasState::new(las_config)?;
        rt.spawn({
            let stop = stopped(shutdown.subscribe());
            async move {
                if let Err(e) = las::run(las_listener, las_state, stop).await {
                    tracing::error!(error = %e, "the in-process LAS stopped");
                }
            }
        });
        let las_url = format!("http://{las_addr}");

        let client = {
            let _entered = rt.enter();
            CasClient::new(&cas_url, &cas_cert_pem)?
        };
        rt.block_on(client.health())
            .context("the in-process CAS does not answer")?;
        let cluster = Self {
            rt,
            dir,
            cas_url,
            cas_cert_pem,
            las_url,
            owner: OwnerKey::generate()?,
            auditor: RequestSigner::from_owner_key(&auditor)?,
            admin,
            namespaces: std::sync::Mutex::default(),
            client,
            shutdown,
        };
        cluster.create_namespace(DEMO_NAMESPACE)?;
        Ok(cluster)
    }

    /// Creates namespace `ns` owned by the cluster's owner, signed by its admin key.
    pub fn create_namespace(&self, ns: &str) -> anyhow::Result<()> {
        let admin = RequestSigner::from_owner_key(&self.admin)?;
        let create = CreateNamespace {
            name: ns.to_owned(),
            owners: vec![NamespaceOwnerJson {
                name: "demo-owner".into(),
                public_key: self.owner_public_key()?,
            }],
            session_quota: None,
        };
        self.rt
            .block_on(self.client.create_namespace(&create, &admin))
            .with_context(|| format!("the CAS refused to create namespace {ns}"))?;
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(ns.to_owned());
        Ok(())
    }

    /// The operator's admin key of the cluster's CAS.
    pub fn admin(&self) -> &OwnerKey {
        &self.admin
    }

    /// The directory the cluster keeps its state in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The CAS's URL (`https://127.0.0.1:PORT`).
    pub fn cas_url(&self) -> &str {
        &self.cas_url
    }

    /// The CAS's certificate (PEM), the one workloads pin.
    pub fn cas_cert_pem(&self) -> &str {
        &self.cas_cert_pem
    }

    /// The sim LAS's URL (`http://127.0.0.1:PORT`).
    pub fn las_url(&self) -> &str {
        &self.las_url
    }

    /// The policy owner's key.
    pub fn owner(&self) -> &OwnerKey {
        &self.owner
    }

    /// The owner's key fingerprint (what an export names importers' owners by).
    pub fn owner_fingerprint(&self) -> String {
        self.owner.fingerprint().to_string()
    }

    /// The owner's public key as a policy writes it (base64 SPKI DER).
    pub fn owner_public_key(&self) -> anyhow::Result<String> {
        Ok(self
            .owner
            .public_key()
            .to_pem()?
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect())
    }

    /// The `access:` block of a policy owned by this cluster's owner.
    pub fn owner_yaml(&self) -> anyhow::Result<String> {
        Ok(format!(
            "access:\n  owners:\n    - name: demo-owner\n      key: {}\n",
            self.owner_public_key()?
        ))
    }

    /// A client of the CAS (async; run it with [`Cluster::block_on`]).
    pub fn client(&self) -> &CasClient {
        &self.client
    }

    /// Run `future` on the cluster's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }

    /// Create a session from `yaml`, signed by the owner, who approves it as the owner of its
    /// namespace (created first if the cluster has not made it yet).
    pub fn push_policy(&self, yaml: &str) -> anyhow::Result<SessionSummary> {
        if let Ok(policy) = cloister_policy::Policy::parse(yaml)
            && let Some((ns, _)) = policy.name().split_once('/')
            && !self.has_namespace(ns)
        {
            self.create_namespace(ns)?;
        }
        let signed = SignedPolicy::new(yaml).signed_by(&self.owner);
        let approver = RequestSigner::from_owner_key(&self.owner)?;
        self.rt
            .block_on(self.client.create_session(&signed, &approver))
            .context("the CAS refused the policy")
    }

    fn has_namespace(&self, ns: &str) -> bool {
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(ns)
    }

    /// Replace session `name` by `yaml` (which names its predecessor), signed by the owner.
    pub fn update_policy(&self, name: &str, yaml: &str) -> anyhow::Result<SessionSummary> {
        let signed = SignedPolicy::new(yaml).signed_by(&self.owner);
        self.rt
            .block_on(self.client.update_session(name, &signed))
            .context("the CAS refused the policy update")
    }

    /// Every entry of the CAS audit log, in order (read with the cluster's auditor key).
    pub fn audit_entries(&self) -> anyhow::Result<Vec<Entry>> {
        Ok(self
            .rt
            .block_on(self.client.audit_entries_all(0, &self.auditor))?)
    }

    /// Run `role` as an attested workload of `session`/`service`, with evidence from the LAS
    /// and injected files in memory, on a thread of its own (the runtime's launch blocks).
    pub fn launch<R>(
        &self,
        session: &str,
        service: &str,
        bundle: Option<&Path>,
        role: R,
    ) -> Result<R::Output, cloister_runtime::Error>
    where
        R: Role + Send,
        R::Output: Send,
    {
        let mut options = Launch::new(
            self.cas_url.clone(),
            self.cas_cert_pem.clone(),
            session,
            service,
            EvidenceSource::Las(self.las_url.clone()),
        );
        options.bundle = bundle.map(Path::to_path_buf);
        options.files = FilesMode::Memory;
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name(format!("workload-{service}"))
                .spawn_scoped(s, move || launch(options, role))
                .map_err(|_| cloister_runtime::Error::Internal("cannot start a workload thread"))?
                .join()
                .map_err(|_| cloister_runtime::Error::Internal("the workload thread panicked"))?
        })
    }

    /// Run the SQL app in `bundle` as the attested job `session`/`service` (what
    /// `cloister run … -- job BUNDLE` does) and return its report. A job failure is
    /// `Error::Role` whose source is a [`job::JobError`].
    pub fn run_job(
        &self,
        session: &str,
        service: &str,
        bundle: &Path,
        options: JobOptions,
    ) -> Result<JobReport, cloister_runtime::Error> {
        let role =
            Job::new(move |b, ctx| job::run_role(b, ctx, &options, true).map_err(RoleError::from));
        self.launch(session, service, Some(bundle), role)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

/// Make a bundle key (64 hex digits) in a new `0600` file; the policy imports it.
pub fn make_bundle_key(path: &Path) -> anyhow::Result<()> {
    let key = BundleKey::generate()?;
    let mut text = zeroize::Zeroizing::new(key.to_hex().to_string());
    text.push('\n');
    write_private(path, text.as_bytes())
}

/// Write `bytes` into a new file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Write an app directory: `(file name, content)` pairs under `dir` (created).
pub fn write_app(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (name, content) in files {
        let path = dir.join(name);
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A packaged app: where its bundle is, its digest, and the measurement a policy pins for this
/// executable running it.
#[derive(Clone, Debug)]
pub struct PackagedApp {
    /// The sealed bundle.
    pub path: PathBuf,
    /// The plaintext digest.
    pub digest: BundleDigest,
    /// This executable with this bundle.
    pub measurement: Measurement,
}

/// Package `app_dir` under the key in `key_file` into `out` (as `cloister package` does).
pub fn package_app(app_dir: &Path, key_file: &Path, out: &Path) -> anyhow::Result<PackagedApp> {
    let text = zeroize::Zeroizing::new(
        std::fs::read(key_file).with_context(|| format!("cannot read {}", key_file.display()))?,
    );
    let key = BundleKey::parse(&text, &key_file.display().to_string())?;
    let sealed = bundle::package(app_dir, &key, BUNDLE_KEY_ID)?;
    let digest = Header::parse(&sealed)?.digest;
    std::fs::write(out, &sealed).with_context(|| format!("cannot write {}", out.display()))?;
    Ok(PackagedApp {
        path: out.to_path_buf(),
        measurement: Measurement::of_running_exe(Some(&digest))?,
        digest,
    })
}

/// The measurement of this executable running no bundle (a workload built into `cloister`).
pub fn measurement_without_bundle() -> anyhow::Result<Measurement> {
    Ok(Measurement::of_running_exe(None)?)
}

/// One workload's attestation in the audit log, and what it was given.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRow {
    /// The session.
    pub session: String,
    /// The service.
    pub service: String,
    /// The workload's key digest (the log's principal), shortened.
    pub workload: String,
    /// `passed` or `refused`.
    pub verdict: String,
    /// The names released (`secret:…`, `certificate`, `configuration`); empty when refused.
    pub released: Vec<String>,
    /// Why it was refused.
    pub reasons: Vec<String>,
}

/// Who attested and what was released to whom, from the audit log's entries.
pub fn audit_summary(entries: &[Entry]) -> Vec<AuditRow> {
    let mut rows: Vec<AuditRow> = Vec::new();
    for e in entries {
        let row = |verdict: &str| AuditRow {
            session: e.session.clone().unwrap_or_default(),
            service: e.service.clone().unwrap_or_default(),
            workload: e
                .principal
                .as_deref()
                .map(|p| p.chars().take(12).collect())
                .unwrap_or_default(),
            verdict: verdict.to_owned(),
            released: Vec::new(),
            reasons: e.reasons.clone(),
        };
        match e.kind.as_str() {
            "attestation_passed" => rows.push(row("passed")),
            "attestation_refused" => rows.push(row("refused")),
            "secret_released" => {
                let mine = row("passed");
                if let Some(r) = rows.iter_mut().rev().find(|r| {
                    r.session == mine.session
                        && r.service == mine.service
                        && r.workload == mine.workload
                }) {
                    r.released.extend(e.released.iter().cloned());
                }
            }
            _ => {}
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The harness end to end: a policy pinning a packaged app, an attested job with a data
    /// key and a SQL variable, its results, and the audit log naming what was released.
    #[test]
    fn a_cluster_runs_an_attested_job_and_audits_it() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let keys = d.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let cluster = Cluster::start(
            d.join("cluster"),
            ImportRules::none().allow_files("test", &keys),
        )
        .unwrap();
        make_bundle_key(&keys.join("app.key")).unwrap();
        write_app(
            &d.join("app"),
            &[(
                "q.sql",
                "SELECT '${GREETING}' AS greeting, 41 + 1 AS answer".into(),
            )],
        )
        .unwrap();
        let app =
            package_app(&d.join("app"), &keys.join("app.key"), &d.join("app.bundle")).unwrap();
        let policy = format!(
            "name: test/cluster\nversion: 1\n{}security:\n  tees: [sim]\nservices:\n  - name: job\n    attestation:\n      - measurements: [\"{}\"]\n    env:\n      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$\n      CLOISTER_KEY_K1: $$cloister:k1:hex$$\n      CLOISTER_APP_VARS: GREETING\n      GREETING: hello\n      CLOISTER_INSECURE_PRINT_RESULTS: \"true\"\n  - name: quiet\n    attestation:\n      - measurements: [\"{}\"]\n    env:\n      CLOISTER_BUNDLE_KEY: $$cloister:bundle_key$$\n      CLOISTER_APP_VARS: GREETING\n      GREETING: hello\nsecrets:\n  - name: bundle_key\n    kind: import\n    from:\n      file: {}\n  - name: k1\n    kind: aes256\n",
            cluster.owner_yaml().unwrap(),
            app.measurement,
            app.measurement,
            keys.join("app.key").display()
        );
        cluster.push_policy(&policy).unwrap();
        let report = cluster
            .run_job("test/cluster", "job", &app.path, JobOptions::default())
            .unwrap();
        assert_eq!(report.results.len(), 1);
        let table = report.results[0].to_pretty_string().unwrap();
        assert!(table.contains("hello") && table.contains("42"), "{table}");
        assert_eq!(report.measurement, app.measurement.to_string());

        // Without CLOISTER_INSECURE_PRINT_RESULTS the results stay in the process: name and rows only.
        let quiet = cluster
            .run_job("test/cluster", "quiet", &app.path, JobOptions::default())
            .unwrap();
        assert!(quiet.results.is_empty());
        assert_eq!(quiet.withheld.len(), 1);
        assert_eq!(quiet.withheld[0].rows, 1);

        // Another bundle is not pinned: refused, with the rule.
        write_app(&d.join("other"), &[("q.sql", "SELECT 2".into())]).unwrap();
        let other = package_app(
            &d.join("other"),
            &keys.join("app.key"),
            &d.join("other.bundle"),
        )
        .unwrap();
        let err = cluster
            .run_job("test/cluster", "job", &other.path, JobOptions::default())
            .unwrap_err();
        assert!(err.is_refusal(), "{err}");

        let rows = audit_summary(&cluster.audit_entries().unwrap());
        let passed: Vec<_> = rows.iter().filter(|r| r.verdict == "passed").collect();
        assert_eq!(passed.len(), 2, "{rows:?}");
        assert!(
            passed[0].released.contains(&"secret:k1".to_owned()),
            "{rows:?}"
        );
        assert!(rows.iter().any(|r| r.verdict == "refused"), "{rows:?}");
    }
}

//! The CAS HTTPS API end to end: a real server on `127.0.0.1:0`, the client library, sim
//! workloads, and the refusal matrix.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::collect::{Collector as _, SimCollector};
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_attest::{EvidenceKind, TcbStatus, binding};
use cloister_cas::api::AttestRequest;
use cloister_cas::client::{RequestSigner, attest_workload, delete_request};
use cloister_cas::config::CasConfigBuilder;
use cloister_cas::envelope::WorkloadKey;
use cloister_cas::token::{TokenRule, TokenVerifier};
use cloister_cas::{Error, ImportRules, ManualClock, MasterKey};
use cloister_policy::{SessionHash, SignedPolicy};
use cloister_testkit::canary;
use cloister_testkit::cas::attest_driver;
use cloister_testkit::policies;
use cloister_testkit::policies::{key as owner, namespace, public_b64, signed, signer, spki};
use rstest::rstest;
use secrecy::ExposeSecret as _;

mod dispatch;
mod imports;
mod limits;
mod namespaces;
mod session_refusals;

const ISSUER: &str = "https://cas.test";
const MEASUREMENT: [u8; 32] = [0xaa; 32];
const CANARY: &str = "CANARY-7f3e9b2c-imported-api-token";
const MASTER_HEX: &str = "4242424242424242424242424242424242424242424242424242424242424242";

/// The key every test CAS names as its auditor.
const AUDITOR: u8 = 42;

fn auditor() -> RequestSigner {
    signer(AUDITOR)
}

/// The operator's admin key of every test CAS.
const ADMIN: u8 = 200;

/// A session `name` owned by the keys `owners` (M = `approvals`), readable by key 9, with a
/// `driver` service pinned to [`MEASUREMENT`] whose configuration uses a generated password,
/// an imported canary, a host argument and a certificate from the session CA.
fn app_policy(
    name: &str,
    version: u64,
    predecessor: Option<SessionHash>,
    tees: &str,
    owners: &[u8],
    approvals: usize,
) -> String {
    let mut y = policies::head_of_keys(name, version, predecessor, owners);
    y.push_str(&format!(
        "  read:\n    - name: auditor\n      key: {}\n  update:\n    approvals: {approvals}\n",
        public_b64(9)
    ));
    y.push_str(&format!(
        r#"security:
  tees: [{tees}]
services:
  - name: driver
    attestation:
      - measurements: ["{m}"]
    command: /bin/driver
    args: [run, "@@1"]
    env:
      DB_PASSWORD: $$cloister:db_password$$
      API_TOKEN: $$cloister:api_token$$
      RUST_LOG: info{bundle_pin}
    files:
      - path: /etc/tls/key.pem
        content: $$cloister:driver_cert:key$$
        mode: "0400"
secrets:
  - name: db_password
    kind: ascii
  - name: api_token
    kind: import
    from:
      env: CANARY_TOKEN
  - name: session_ca
    kind: x509-ca
    common_name: Test session CA
  - name: driver_cert
    kind: x509
    issuer: session_ca
    common_name: driver
    sans: [driver.test]
"#,
        m = hex::encode(MEASUREMENT),
        // A policy accepting hardware pins the app bundle (rule `bundle-digest`).
        bundle_pin = if tees == "sim" {
            String::new()
        } else {
            format!("\n      CLOISTER_BUNDLE_DIGEST: {}", "0d".repeat(32))
        },
    ));
    y
}

/// A running CAS: the testkit's, with the test clock.
struct Cas {
    inner: cloister_testkit::cas::Cas,
    clock: Arc<ManualClock>,
}

impl std::ops::Deref for Cas {
    type Target = cloister_testkit::cas::Cas;

    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl Cas {
    async fn start() -> Self {
        Self::start_with(tempfile::tempdir().unwrap(), PlatformKey::generate(), |b| b).await
    }

    async fn start_with(
        dir: tempfile::TempDir,
        platform: PlatformKey,
        edit: impl FnOnce(CasConfigBuilder) -> CasConfigBuilder,
    ) -> Self {
        Self::start_opts(dir, platform, true, edit).await
    }

    /// Starts a CAS; with `admin`, sets [`ADMIN`] as its admin key and creates the namespace
    /// `test` owned by keys 1 and 2.
    async fn start_opts(
        dir: tempfile::TempDir,
        platform: PlatformKey,
        admin: bool,
        edit: impl FnOnce(CasConfigBuilder) -> CasConfigBuilder,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(SystemTime::now()));
        let mut builder = cloister_testkit::cas::Cas::builder()
            .issuer(ISSUER)
            .dir(dir)
            .platform_key(platform)
            .master_key(MasterKey::from_hex(MASTER_HEX, "test").unwrap())
            .config({
                let clock = clock.clone();
                move |b| {
                    edit(
                        b.auditor_key(owner(AUDITOR).public_key())
                            .clock(clock)
                            .env_source(Arc::new(|name| {
                                (name == "CANARY_TOKEN").then(|| CANARY.to_owned())
                            }))
                            .imports(ImportRules::none().allow_env("test", "CANARY_TOKEN")),
                    )
                }
            });
        if admin {
            builder = builder.admin(&signer(ADMIN));
        }
        let inner = builder.start().await;
        // The namespace of every test session, owned by keys 1 and 2 (already there after a
        // restart).
        if admin {
            match inner
                .client
                .create_namespace(&namespace("test", &[1, 2], None), &signer(ADMIN))
                .await
            {
                Ok(_) | Err(Error::Api { status: 409, .. }) => {}
                Err(e) => panic!("cannot create the test namespace: {e}"),
            }
        }
        Cas { inner, clock }
    }

    /// Stops the server and hands back its data directory and platform key.
    async fn stop(self) -> (tempfile::TempDir, PlatformKey) {
        self.inner.stop().await
    }

    /// Creates the session `yaml`, signed and approved by owner key 1; it must succeed.
    async fn push(&self, yaml: &str) -> cloister_cas::api::SessionSummary {
        self.client
            .create_session(&signed(yaml, &[1]), &signer(1))
            .await
            .unwrap()
    }

    fn good_statement() -> Statement {
        Statement {
            measurement: MEASUREMENT.to_vec(),
            svn: 1,
            ..Default::default()
        }
    }

    /// Every audit entry, read with the auditor key.
    async fn audit_all(&self) -> Vec<cloister_cas::audit::Entry> {
        self.client.audit_entries_all(0, &auditor()).await.unwrap()
    }

    /// `GET path` with a raw client (not the client library), signed by `signer` if given;
    /// the status and the JSON body.
    async fn raw_get(
        &self,
        path: &str,
        signer: Option<&RequestSigner>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.raw().get(format!("{}{path}", self.url));
        if let Some(signer) = signer {
            request = request.header(
                "authorization",
                signer.header(&self.client.cas_id(), "GET", path, b"", SystemTime::now()),
            );
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

/// The parts of an API error.
#[derive(Debug)]
struct ApiErr {
    status: u16,
    code: String,
    rule: Option<String>,
    reasons: Vec<String>,
    rules: Vec<String>,
    audit_seq: Option<u64>,
    message: String,
}

impl ApiErr {
    /// Asserts that the refusal has HTTP `status` and names `rule`.
    fn assert_refused(&self, status: u16, rule: &str) {
        assert_eq!(
            (self.status, self.rule.as_deref()),
            (status, Some(rule)),
            "{}",
            self.text()
        );
    }

    fn names(&self, needle: &str) -> bool {
        self.rule.as_deref() == Some(needle)
            || self.rules.iter().any(|r| r == needle)
            || self.reasons.iter().any(|r| r.contains(needle))
            || self.message.contains(needle)
    }

    fn text(&self) -> String {
        format!(
            "{} {} {:?} {:?} {:?} {:?} {}",
            self.status,
            self.code,
            self.rule,
            self.rules,
            self.reasons,
            self.audit_seq,
            self.message
        )
    }
}

fn api_err<T: std::fmt::Debug>(r: Result<T, Error>) -> ApiErr {
    match r {
        Err(Error::Api {
            status,
            code,
            message,
            rule,
            reasons,
            refused,
        }) => {
            let refused = refused.map(|r| *r).unwrap_or_default();
            ApiErr {
                status,
                code,
                rule,
                reasons,
                rules: refused.rules,
                audit_seq: refused.audit_seq,
                message,
            }
        }
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// An attestation request for `key`, with evidence from `collector` bound to `bound_to`'s key.
async fn request_with(
    cas: &Cas,
    session: &str,
    collector: &SimCollector,
    key: &WorkloadKey,
    bound_to: &WorkloadKey,
) -> AttestRequest {
    let nonce = cas.client.nonce().await.unwrap();
    let evidence = collector
        .collect(&binding::report_data(&nonce.bytes, &bound_to.spki_der()))
        .unwrap();
    AttestRequest {
        session: session.to_owned(),
        service: "driver".to_owned(),
        evidence: B64.encode(&evidence.bytes),
        kind: Some(EvidenceKind::Sim),
        collateral: None,
        nonce: B64.encode(&nonce.bytes),
        public_key: B64.encode(key.spki_der()),
        host_args: vec!["argv0".into(), "host-arg-1".into()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_workload_attests_and_opens_its_configuration() {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    let created = cas.push(&yaml).await;
    assert_eq!(created.version, 1);
    assert_eq!(created.hash, SessionHash::of(&yaml).to_string());

    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let host_args = ["argv0".to_owned(), "host-arg-1".to_owned()];
    let attested = attest_workload(
        &cas.client,
        "test/app",
        "driver",
        &key,
        &collector,
        None,
        &host_args,
    )
    .await
    .unwrap();

    // The configuration: placeholders resolved to the generated and imported secrets.
    let config = &attested.config;
    assert_eq!(config.session, "test/app");
    assert_eq!(config.session_hash, created.hash);
    assert_eq!(
        config.command.as_ref().unwrap().expose_secret(),
        "/bin/driver"
    );
    let args: Vec<&str> = config.args.iter().map(|a| a.expose_secret()).collect();
    assert_eq!(args, ["run", "host-arg-1"]);
    let password = config.env["DB_PASSWORD"].expose_secret().to_owned();
    assert_eq!(password.len(), 32);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(config.env["API_TOKEN"].expose_secret(), CANARY);
    assert_eq!(config.env["RUST_LOG"].expose_secret(), "info");
    assert_eq!(config.files[0].mode, 0o400);
    assert!(
        config.files[0]
            .content
            .expose_secret()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let debug = format!("{attested:?}");
    assert!(
        !debug.contains(&password) && !debug.contains(CANARY),
        "{debug}"
    );

    // The certificate certifies the workload key and chains to the session CA.
    let leaf_der = pem::parse(&attested.certificate_pem).unwrap();
    let ca_der = pem::parse(&attested.ca_pem).unwrap();
    let (_, leaf) = x509_parser::parse_x509_certificate(leaf_der.contents()).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der.contents()).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(leaf.issuer(), ca.subject());
    assert_eq!(leaf.public_key().raw, key.spki_der().as_slice());
    assert!(ca.subject().to_string().contains("Test session CA"));
    let sans = leaf.subject_alternative_name().unwrap().unwrap();
    let names: Vec<String> = sans
        .value
        .general_names
        .iter()
        .map(|n| n.to_string())
        .collect();
    assert!(names.iter().any(|n| n.contains("driver.test")), "{names:?}");
    let validity = leaf.validity().time_to_expiration().unwrap();
    assert!(validity.whole_seconds() <= 3601, "{validity:?}");

    // The token verifies against the published JWKS, for this key and this workload only.
    let jwks = cas.client.jwks().await.unwrap();
    let verifier = TokenVerifier::new(ISSUER, jwks);
    let token = attested.token.expose_secret();
    let claims = verifier
        .expect_audience("test/app", "driver")
        .verify(token, SystemTime::now())
        .unwrap();
    assert_eq!(claims.sub, "test/app/driver");
    assert_eq!(claims.aud, "test/app/driver");
    for (session, service) in [("test/other", "driver"), ("test/app", "worker")] {
        let err = verifier
            .expect_audience(session, service)
            .verify(token, SystemTime::now())
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::TokenRefused {
                    rule: TokenRule::Audience,
                    ..
                }
            ),
            "{err:?}"
        );
    }
    assert!(!format!("{attested:?}").contains(token));
    assert_eq!(claims.tee, "sim");
    assert_eq!(claims.measurement, hex::encode(MEASUREMENT));
    assert_eq!(claims.session_hash, created.hash);
    assert_eq!(
        claims.key_hash,
        cloister_cas::audit::key_digest(&key.spki_der())
    );
    let discovery = cas.client.openid_configuration().await.unwrap();
    assert_eq!(
        discovery.jwks_uri,
        format!("{ISSUER}/.well-known/jwks.json")
    );
    assert!(discovery.claims_supported.iter().any(|c| c == "aud"));

    // The generated secret is kept: a second workload gets the same password.
    let key2 = WorkloadKey::generate().unwrap();
    let again = attest_workload(
        &cas.client,
        "test/app",
        "driver",
        &key2,
        &collector,
        None,
        &host_args,
    )
    .await
    .unwrap();
    assert_eq!(again.config.env["DB_PASSWORD"].expose_secret(), password);

    // The audit log has every step, names only, and verifies.
    let entries = cas.audit_all().await;
    let kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "key_created",
        "session_created",
        "attestation_passed",
        "secret_generated",
        "secret_released",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let created_entry = entries
        .iter()
        .find(|e| e.kind == "session_created")
        .unwrap();
    assert_eq!(
        created_entry.principal.as_deref(),
        Some(owner(1).fingerprint().to_string().as_str())
    );
    let released = entries
        .iter()
        .find(|e| e.kind == "secret_released")
        .unwrap();
    assert!(
        released.released.contains(&"secret:db_password".to_owned()),
        "{released:?}"
    );
    let verified = cas.client.audit_verify(&auditor()).await.unwrap();
    assert!(verified.ok);
    assert_eq!(verified.entries, entries.len() as u64);
    let head = cas.client.audit_head().await.unwrap();
    assert_eq!(head.seq, verified.head_seq);
    assert_eq!(head.hash, entries.last().unwrap().hash);
    let page = cas
        .client
        .audit_entries(2, Some(3), &auditor())
        .await
        .unwrap();
    assert_eq!(
        page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [3, 4, 5]
    );
    assert!(page.more);

    // Neither the generated password nor the imported canary is in any file of the data dir.
    let (dir, _) = cas.stop().await;
    assert!(!canary::files_under(dir.path()).is_empty());
    canary::assert_absent(dir.path(), &password);
    canary::assert_absent(dir.path(), CANARY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cas_keeps_its_identity_policies_and_secrets() {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let args = ["a".to_owned(), "b".to_owned()];
    let first = attest_workload(
        &cas.client,
        "test/app",
        "driver",
        &key,
        &collector,
        None,
        &args,
    )
    .await
    .unwrap();
    let jwks = cas.client.jwks().await.unwrap();
    let cert = cas.cert_pem.clone();

    let (dir, platform) = cas.stop().await;
    let cas = Cas::start_with(dir, platform, |b| b).await;
    assert_eq!(
        cas.cert_pem, cert,
        "the pinned TLS certificate survives a restart"
    );
    assert_eq!(cas.client.jwks().await.unwrap(), jwks);
    cloister_cas::token::verify(
        first.token.expose_secret(),
        &jwks,
        ISSUER,
        "test/app/driver",
        SystemTime::now(),
    )
    .unwrap();
    let second = attest_workload(
        &cas.client,
        "test/app",
        "driver",
        &key,
        &collector,
        None,
        &args,
    )
    .await
    .unwrap();
    assert_eq!(
        second.config.env["DB_PASSWORD"].expose_secret(),
        first.config.env["DB_PASSWORD"].expose_secret()
    );
    assert_eq!(second.ca_pem, first.ca_pem);
    assert!(cas.client.audit_verify(&auditor()).await.unwrap().ok);
}

/// Nonces live in memory: a restart forgets the outstanding ones, which are then refused like
/// used ones (never accepted twice); fresh nonces work at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_cas_refuses_nonces_issued_before_the_restart() {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let before = request_with(&cas, "test/app", &collector, &key, &key).await;

    let (dir, platform) = cas.stop().await;
    let cas = Cas::start_with(dir, platform, |b| b).await;
    let err = api_err(cas.client.attest(&before, &key).await);
    assert_eq!(
        (err.status, err.code.as_str()),
        (403, "attestation-refused")
    );
    assert!(
        err.names("nonce: unknown or already used"),
        "{}",
        err.text()
    );
    let after = request_with(&cas, "test/app", &collector, &key, &key).await;
    cas.client.attest(&after, &key).await.unwrap();
}

/// Many attestations racing with one nonce: exactly one passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_is_accepted_once_under_concurrency() {
    let cas = Arc::new(Cas::start().await);
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = Arc::new(WorkloadKey::generate().unwrap());
    let collector = cas.collector(Cas::good_statement());
    let req = Arc::new(request_with(&cas, "test/app", &collector, &key, &key).await);
    let racers: Vec<_> = (0..12)
        .map(|_| {
            let (cas, key, req) = (cas.clone(), key.clone(), req.clone());
            tokio::spawn(async move { cas.client.attest(&req, &key).await })
        })
        .collect();
    let mut passed = 0;
    for racer in racers {
        match racer.await.unwrap() {
            Ok(_) => passed += 1,
            Err(e) => assert!(api_err::<()>(Err(e)).names("nonce: unknown or already used")),
        }
    }
    assert_eq!(passed, 1);
    assert!(cas.client.audit_verify(&auditor()).await.unwrap().ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_read_updated_and_deleted_by_their_principals() {
    let cas = Cas::start().await;
    let v1 = app_policy("test/app", 1, None, "sim", &[1], 1);
    let h1 = SessionHash::of(&v1);
    cas.push(&v1).await;

    // Owner and reader may read; the view has the YAML but no generated secret.
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let attested = attest_workload(
        &cas.client,
        "test/app",
        "driver",
        &key,
        &collector,
        None,
        &["a".into(), "b".into()],
    )
    .await
    .unwrap();
    let password = attested.config.env["DB_PASSWORD"]
        .expose_secret()
        .to_owned();
    for reader in [1, 9] {
        let view = cas
            .client
            .session("test/app", &signer(reader))
            .await
            .unwrap();
        assert_eq!(view.yaml, v1);
        assert_eq!(view.hash, h1.to_string());
        assert_eq!(
            view.signatures[0].key_fingerprint,
            owner(1).fingerprint().to_string()
        );
        let json = serde_json::to_string(&view).unwrap();
        assert!(!json.contains(&password) && !json.contains(CANARY));
        let list = cas.client.list_sessions(&signer(reader)).await.unwrap();
        assert_eq!(list.sessions.len(), 1);
    }
    assert!(
        cas.client
            .list_sessions(&signer(5))
            .await
            .unwrap()
            .sessions
            .is_empty()
    );

    // Update to version 2, then a concurrent pair of version 3s: exactly one wins.
    let v2 = app_policy("test/app", 2, Some(h1), "sim", &[1], 1);
    let updated = cas
        .client
        .update_session("test/app", &signed(&v2, &[1]))
        .await
        .unwrap();
    assert_eq!(updated.version, 2);
    let h2 = SessionHash::of(&v2);
    let v3a = app_policy("test/app", 3, Some(h2), "sim", &[1], 1);
    let v3b = format!("{v3a}description: the other one\n");
    let (s3a, s3b) = (signed(&v3a, &[1]), signed(&v3b, &[1]));
    let (a, b) = tokio::join!(
        cas.client.update_session("test/app", &s3a),
        cas.client.update_session("test/app", &s3b)
    );
    assert_eq!(a.is_ok() as u8 + b.is_ok() as u8, 1, "{a:?} {b:?}");
    let lost = api_err(if a.is_ok() { b } else { a });
    assert_eq!(
        (lost.status, lost.code.as_str()),
        (409, "conflict"),
        "{}",
        lost.text()
    );
    let view = cas.client.session("test/app", &signer(1)).await.unwrap();
    assert_eq!(view.version, 3);
    assert_eq!(view.history.len(), 3);

    // Deletion needs the current head and an owner; a reader cannot delete.
    let head: SessionHash = view.hash.parse().unwrap();
    let err = api_err(
        cas.client
            .delete_session("test/app", &head, &[&owner(9)])
            .await,
    );
    err.assert_refused(403, "approvals");
    let err = api_err(
        cas.client
            .delete_session("test/app", &h1, &[&owner(1)])
            .await,
    );
    err.assert_refused(409, "predecessor");
    cas.client
        .delete_session("test/app", &head, &[&owner(1)])
        .await
        .unwrap();
    let err = api_err(cas.client.session("test/app", &signer(1)).await);
    assert_eq!((err.status, err.code.as_str()), (404, "not-found"));

    let kinds: Vec<String> = cas.audit_all().await.into_iter().map(|e| e.kind).collect();
    for kind in [
        "session_updated",
        "session_deleted",
        "session_change_refused",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
}

/// Every way an attestation or a session change can be refused; each must name its rule.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    WrongMeasurement,
    SimNotAccepted,
    DebugNotTolerated,
    OutdatedTcbNotTolerated,
    ReplayedNonce,
    ExpiredNonce,
    EvidenceBoundToAnotherKey,
    UnsignedUpdate,
    StalePredecessor,
    OneOfTwoApprovals,
    ReadByUnauthorisedPrincipal,
    ImportNotExported,
    ImportPinnedToOldExporterHash,
    /// Someone else creates the importer's name first, pinning their own TEE.
    ExportSquatted,
}

/// Sets up `case` on a fresh CAS and returns the refusal.
async fn refuse(cas: &Cas, case: Refusal) -> ApiErr {
    let key = WorkloadKey::generate().unwrap();
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    let attest = |statement: Statement| {
        let collector = cas.collector(statement);
        let key = &key;
        async move {
            let req = request_with(cas, "test/app", &collector, key, key).await;
            cas.client.attest(&req, key).await
        }
    };
    if !matches!(case, Refusal::SimNotAccepted | Refusal::OneOfTwoApprovals) {
        cas.push(&yaml).await;
    }
    match case {
        Refusal::WrongMeasurement => api_err(
            attest(Statement {
                measurement: vec![0xbb; 32],
                ..Cas::good_statement()
            })
            .await,
        ),
        Refusal::SimNotAccepted => {
            let sgx = app_policy("test/app", 1, None, "sgx", &[1], 1);
            cas.push(&sgx).await;
            api_err(attest(Cas::good_statement()).await)
        }
        Refusal::DebugNotTolerated => api_err(
            attest(Statement {
                debug: true,
                ..Cas::good_statement()
            })
            .await,
        ),
        Refusal::OutdatedTcbNotTolerated => api_err(
            attest(Statement {
                tcb_status: TcbStatus::OutOfDate,
                ..Cas::good_statement()
            })
            .await,
        ),
        Refusal::ReplayedNonce => {
            let collector = cas.collector(Cas::good_statement());
            let req = request_with(cas, "test/app", &collector, &key, &key).await;
            cas.client.attest(&req, &key).await.unwrap();
            api_err(cas.client.attest(&req, &key).await)
        }
        Refusal::ExpiredNonce => {
            let collector = cas.collector(Cas::good_statement());
            let req = request_with(cas, "test/app", &collector, &key, &key).await;
            cas.clock.advance(Duration::from_secs(61));
            api_err(cas.client.attest(&req, &key).await)
        }
        Refusal::EvidenceBoundToAnotherKey => {
            let collector = cas.collector(Cas::good_statement());
            let other = WorkloadKey::generate().unwrap();
            let req = request_with(cas, "test/app", &collector, &key, &other).await;
            api_err(cas.client.attest(&req, &key).await)
        }
        Refusal::UnsignedUpdate => {
            let v2 = app_policy("test/app", 2, Some(SessionHash::of(&yaml)), "sim", &[1], 1);
            api_err(
                cas.client
                    .update_session("test/app", &SignedPolicy::new(v2))
                    .await,
            )
        }
        Refusal::StalePredecessor => {
            let v2 = app_policy(
                "test/app",
                2,
                Some(SessionHash::of("an older version")),
                "sim",
                &[1],
                1,
            );
            api_err(
                cas.client
                    .update_session("test/app", &signed(&v2, &[1]))
                    .await,
            )
        }
        Refusal::OneOfTwoApprovals => {
            let two = app_policy("test/app", 1, None, "sim", &[1, 2], 2);
            api_err(
                cas.client
                    .create_session(&signed(&two, &[2]), &signer(1))
                    .await,
            )
        }
        Refusal::ReadByUnauthorisedPrincipal => {
            api_err(cas.client.session("test/app", &signer(5)).await)
        }
        Refusal::ExportSquatted => {
            // The exporter names `squat/importer` with the owners of `test`; the operator gave
            // namespace `squat` to someone else (key 7), who takes the name first.
            let exporter = exporter_policy(1, None, "squat/importer");
            cas.push(&exporter).await;
            cas.client
                .create_namespace(&namespace("squat", &[7], None), &signer(ADMIN))
                .await
                .unwrap();
            // The squatter's own key owns the name; the exporter's hash is public (audit log).
            let squat = importer_policy_owned(SessionHash::of(&exporter), 7)
                .replace("name: test/importer", "name: squat/importer");
            cas.client
                .create_session(&signed(&squat, &[7]), &signer(7))
                .await
                .unwrap();
            let collector = cas.collector(Cas::good_statement());
            let req = request_with(cas, "squat/importer", &collector, &key, &key).await;
            api_err(cas.client.attest(&req, &key).await)
        }
        Refusal::ImportNotExported | Refusal::ImportPinnedToOldExporterHash => {
            let to = if matches!(case, Refusal::ImportNotExported) {
                "test/someone-else"
            } else {
                "test/importer"
            };
            let exporter = exporter_policy(1, None, to);
            cas.push(&exporter).await;
            let importer = importer_policy(SessionHash::of(&exporter));
            cas.push(&importer).await;
            if matches!(case, Refusal::ImportPinnedToOldExporterHash) {
                let v2 = exporter_policy(2, Some(SessionHash::of(&exporter)), to);
                cas.client
                    .update_session("test/exporter", &signed(&v2, &[1]))
                    .await
                    .unwrap();
            }
            let collector = cas.collector(Cas::good_statement());
            let req = request_with(cas, "test/importer", &collector, &key, &key).await;
            api_err(cas.client.attest(&req, &key).await)
        }
    }
}

fn exporter_policy(version: u64, predecessor: Option<SessionHash>, to: &str) -> String {
    let mut y = format!("name: test/exporter\nversion: {version}\n");
    if let Some(p) = predecessor {
        y.push_str(&format!("predecessor: {p}\n"));
    }
    y.push_str(&format!(
        "access:\n  owners:\n    - name: o\n      key: {k}\nsecurity:\n  tees: [sim]\n\
         services:\n  - name: driver\n    attestation:\n      - measurements: [\"{m}\"]\n    \
         env:\n      KEY: $$cloister:trips_key:hex$$\nsecrets:\n  - name: trips_key\n    kind: aes256\n\
         export:\n  - secret: trips_key\n    to:\n      - session: {to}\n        owners: [{fp1}, {fp2}]\n",
        k = public_b64(1),
        m = hex::encode(MEASUREMENT),
        // The owners of namespace `test`, where the importer lives.
        fp1 = owner(1).fingerprint(),
        fp2 = owner(2).fingerprint(),
    ));
    y
}

fn importer_policy(exporter_hash: SessionHash) -> String {
    importer_policy_owned(exporter_hash, 1)
}

/// `test/importer`, owned by key `owner`, importing `trips_key` from `test/exporter`.
fn importer_policy_owned(exporter_hash: SessionHash, owner: u8) -> String {
    format!(
        "name: test/importer\nversion: 1\naccess:\n  owners:\n    - name: o\n      key: {k}\n\
         security:\n  tees: [sim]\nservices:\n  - name: driver\n    attestation:\n      - measurements: [\"{m}\"]\n    \
         env:\n      KEY: $$cloister:shared:hex$$\nsecrets:\n  - name: shared\n    kind: import\n    from:\n      \
         session:\n        session: test/exporter\n        secret: trips_key\n        session_hash: {exporter_hash}\n",
        k = public_b64(owner),
        m = hex::encode(MEASUREMENT),
    )
}

/// `rule`: what the answer names (for attestations, the rule id in `rules`); `detail`: what the
/// audit entry the answer points to says (for session changes, the answer itself).
#[rstest]
#[case::wrong_measurement(
    Refusal::WrongMeasurement,
    403,
    "attestation-refused",
    "services[driver].attestation[0].measurement",
    "services[driver].attestation[0]: measurement"
)]
#[case::sim_not_accepted(
    Refusal::SimNotAccepted,
    403,
    "attestation-refused",
    "security.tees",
    "security.tees: sim not accepted"
)]
#[case::debug_not_tolerated(
    Refusal::DebugNotTolerated,
    403,
    "attestation-refused",
    "security.tolerate",
    "security.tolerate: debug not tolerated"
)]
#[case::outdated_tcb_not_tolerated(
    Refusal::OutdatedTcbNotTolerated,
    403,
    "attestation-refused",
    "security.tolerate",
    "security.tolerate: tcb OutOfDate not tolerated"
)]
#[case::replayed_nonce(
    Refusal::ReplayedNonce,
    403,
    "attestation-refused",
    "nonce",
    "nonce: unknown or already used"
)]
#[case::expired_nonce(
    Refusal::ExpiredNonce,
    403,
    "attestation-refused",
    "nonce",
    "nonce: expired"
)]
#[case::evidence_bound_to_another_key(
    Refusal::EvidenceBoundToAnotherKey,
    403,
    "attestation-refused",
    "evidence",
    "evidence: report_data mismatch"
)]
#[case::unsigned_update(
    Refusal::UnsignedUpdate,
    403,
    "session-refused",
    "unsigned",
    "unsigned"
)]
#[case::stale_predecessor(
    Refusal::StalePredecessor,
    409,
    "conflict",
    "predecessor",
    "predecessor"
)]
#[case::one_of_two_approvals(
    Refusal::OneOfTwoApprovals,
    403,
    "session-refused",
    "approvals",
    "approvals"
)]
#[case::read_by_unauthorised_principal(
    Refusal::ReadByUnauthorisedPrincipal,
    403,
    "forbidden",
    "read",
    "read"
)]
#[case::import_not_exported(
    Refusal::ImportNotExported,
    403,
    "attestation-refused",
    "secrets[shared].export",
    "secrets[shared]: export:"
)]
#[case::import_pinned_to_old_exporter_hash(
    Refusal::ImportPinnedToOldExporterHash,
    403,
    "attestation-refused",
    "secrets[shared].import-hash",
    "secrets[shared]: import-hash:"
)]
#[case::export_squatted(
    Refusal::ExportSquatted,
    403,
    "attestation-refused",
    "secrets[shared].export-identity",
    "secrets[shared]: export-identity:"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_name_the_rule(
    #[case] case: Refusal,
    #[case] status: u16,
    #[case] code: &str,
    #[case] rule: &str,
    #[case] detail: &str,
) {
    let cas = Cas::start().await;
    let err = refuse(&cas, case).await;
    assert_eq!(
        (err.status, err.code.as_str()),
        (status, code),
        "{case:?}: {}",
        err.text()
    );
    assert!(err.names(rule), "{case:?}: no `{rule}` in {}", err.text());
    assert!(
        !err.text().contains(CANARY),
        "{case:?}: the canary leaked: {}",
        err.text()
    );
    if code != "attestation-refused" {
        assert!(
            err.names(detail),
            "{case:?}: no `{detail}` in {}",
            err.text()
        );
        return;
    }
    assert!(err.rules.iter().any(|r| r == rule), "{}", err.text());
    // The details are in the audit entry the answer names.
    let seq = err.audit_seq.expect("a refusal names its audit entry");
    let entries = cas.audit_all().await;
    let refused = entries.iter().find(|e| e.seq == seq).unwrap();
    assert_eq!(refused.kind, "attestation_refused");
    assert!(
        refused.reasons.iter().any(|r| r.contains(detail)),
        "{refused:?}"
    );
    assert!(
        !entries.iter().any(|e| e.kind == "secret_released"
            && e.session.as_deref() == refused.session.as_deref()
            && e.seq > refused.seq),
        "released after a refusal"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exported_secret_reaches_the_importer() {
    let cas = Cas::start().await;
    let exporter = exporter_policy(1, None, "test/importer");
    cas.push(&exporter).await;
    cas.push(&importer_policy(SessionHash::of(&exporter))).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let imported = attest_driver(&cas.client, "test/importer", &key, &collector)
        .await
        .unwrap();
    let exported = attest_driver(&cas.client, "test/exporter", &key, &collector)
        .await
        .unwrap();
    let value = imported.config.env["KEY"].expose_secret();
    assert_eq!(value.len(), 64);
    assert_eq!(value, exported.config.env["KEY"].expose_secret());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_evidence_from_an_untrusted_platform_is_refused() {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let stranger = SimCollector::new(PlatformKey::generate(), Cas::good_statement());
    let err = api_err(attest_driver(&cas.client, "test/app", &key, &stranger).await);
    assert_eq!(err.status, 403);
    assert!(err.names("evidence: sim platform key"), "{}", err.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_oversized_and_unknown_requests_get_stable_codes() {
    let cas = Cas::start().await;
    let http = cas.raw();
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{}{path}", cas.url))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let body = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let json: serde_json::Value = r.json().await.unwrap();
        (
            status,
            json["code"].as_str().unwrap_or_default().to_owned(),
            json,
        )
    };

    let (status, code, json) = body(post("/v1/attest", b"{not json".to_vec()).await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "bad-request"), "{json}");
    let (status, code, _) = body(
        post("/v1/sessions", br#"{"yaml": 7}"#.to_vec())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (400, "bad-request"));
    // An oversized body is refused on its Content-Length, before it is read. (Sent without the
    // body: a client still writing it when the CAS closes the connection sees a broken pipe.)
    let head = "POST /v1/attest HTTP/1.1\r\nHost: cas\r\nContent-Type: application/json\r\n\
                Content-Length: 2097152\r\nConnection: close\r\n\r\n";
    let (status, json) = cas.raw_exchange(head.as_bytes().to_vec()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (413, Some("payload-too-large")),
        "{json}"
    );
    let (status, code, _) = body(
        http.get(format!("{}/v1/nothing", cas.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (404, "not-found"));
    let (status, code, _) = body(
        http.delete(format!("{}/v1/nonce", cas.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (405, "method-not-allowed"));

    // Unknown session: 404 for attestation and for an authenticated read.
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let req = request_with(&cas, "test/nope", &collector, &key, &key).await;
    let err = api_err(cas.client.attest(&req, &key).await);
    assert_eq!((err.status, err.code.as_str()), (404, "not-found"));
    let err = api_err(cas.client.session("test/nope", &signer(1)).await);
    assert_eq!((err.status, err.code.as_str()), (404, "not-found"));

    // Reads need a valid, fresh signature.
    let (status, code, _) = body(
        http.get(format!("{}/v1/sessions", cas.url))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "unauthenticated"));
    let stale = signer(1).header(
        &cas.client.cas_id(),
        "GET",
        "/v1/sessions",
        b"",
        SystemTime::now() - Duration::from_secs(400),
    );
    let r = http
        .get(format!("{}/v1/sessions", cas.url))
        .header("authorization", stale)
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await.0, 401);
    let wrong_path = signer(1).header(
        &cas.client.cas_id(),
        "GET",
        "/v1/sessions/x",
        b"",
        SystemTime::now(),
    );
    let r = http
        .get(format!("{}/v1/sessions", cas.url))
        .header("authorization", wrong_path)
        .send()
        .await
        .unwrap();
    assert_eq!(body(r).await.0, 401);

    // An invalid policy lists every problem.
    let err = api_err(
        cas.client
            .create_session(
                &SignedPolicy::new("name: Bad Name\nversion: 1\n"),
                &signer(1),
            )
            .await,
    );
    assert_eq!(
        (err.status, err.code.as_str()),
        (422, "invalid-policy"),
        "{}",
        err.text()
    );
    assert!(!err.reasons.is_empty());

    // A missing host argument is an unresolvable configuration, named by its rule.
    cas.push(&app_policy("test/app", 1, None, "sim", &[1], 1))
        .await;
    let err = api_err(attest_driver(&cas.client, "test/app", &key, &collector).await);
    err.assert_refused(422, "host-arg");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_every_route() {
    let cas = Cas::start().await;
    let doc = cas.client.openapi().await.unwrap();
    let paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for (path, method) in [
        ("/v1/health", "get"),
        ("/v1/openapi.json", "get"),
        ("/.well-known/openid-configuration", "get"),
        ("/.well-known/jwks.json", "get"),
        ("/v1/namespaces", "post"),
        ("/v1/namespaces", "get"),
        ("/v1/namespaces/{ns}", "get"),
        ("/v1/namespaces/{ns}", "put"),
        ("/v1/namespaces/{ns}", "delete"),
        ("/v1/sessions", "post"),
        ("/v1/sessions", "get"),
        ("/v1/sessions/{name}", "get"),
        ("/v1/sessions/{name}", "put"),
        ("/v1/sessions/{name}", "delete"),
        ("/v1/nonce", "post"),
        ("/v1/attest", "post"),
        ("/v1/audit/head", "get"),
        ("/v1/audit/entries", "get"),
        ("/v1/audit/verify", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} undocumented; have {paths:?}"
        );
    }
    assert_eq!(paths.len(), 13, "{paths:?}");
    for schema in [
        "AttestRequest",
        "AttestResponse",
        "ErrorBody",
        "SignedPolicyJson",
        "Sealed",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} missing"
        );
    }
    let health = cas.client.health().await.unwrap();
    assert_eq!(health.status, "ok");
    assert_eq!(health.issuer, ISSUER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletion_signatures_do_not_transfer() {
    let cas = Cas::start().await;
    let a = app_policy("test/app", 1, None, "sim", &[1], 1);
    let b = app_policy("test/other", 1, None, "sim", &[1], 1);
    cas.push(&a).await;
    cas.push(&b).await;
    // Owner 1 approved deleting test/app; the approval replayed against test/other fails.
    let approval = delete_request("test/app", &SessionHash::of(&a), &[&owner(1)]);
    let mut replay = approval.clone();
    replay.head = SessionHash::of(&b).to_string();
    let r = cas
        .raw()
        .delete(format!("{}/v1/sessions/test/other", cas.url))
        .json(&replay)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let json: serde_json::Value = r.json().await.unwrap();
    // No valid signature of an owner over *this* deletion: refused as unapproved, without
    // saying whose key the signature names (the replayer may not learn the owners).
    assert_eq!(json["rule"], "approvals", "{json}");
    assert!(!json.to_string().contains("owner1"), "{json}");
}

/// Posts `body` to `/v1/attest` with a plain HTTP client, as an outside attacker would; the
/// status and the JSON answer.
async fn post_attest(cas: &Cas, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = cas
        .raw()
        .post(format!("{}/v1/attest", cas.url))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

fn audit_log_len(cas: &Cas) -> u64 {
    std::fs::metadata(cas.dir.path().join(cloister_cas::audit::LOG_FILE))
        .unwrap()
        .len()
}

/// Found by the security review (issue 9, finding 5): a refused attestation logged its unchecked
/// service name, so one 1 MiB request cost ≈ 0.9 MB of fsynced audit log. Names and sizes are
/// now checked before anything is logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_malformed_attest_requests_are_refused_before_anything_is_logged() {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let good =
        serde_json::to_value(request_with(&cas, "test/app", &collector, &key, &key).await).unwrap();
    let with = |field: &str, value: serde_json::Value| {
        let mut v = good.clone();
        v[field] = value;
        v
    };
    let before = audit_log_len(&cas);
    for (what, body) in [
        (
            "900 KB service",
            with("service", "a".repeat(900_000).into()),
        ),
        (
            "900 KB session",
            with("session", format!("test/{}", "a".repeat(900_000)).into()),
        ),
        ("service with a dot", with("service", "driver.x".into())),
        ("service with a newline", with("service", "driver\n".into())),
        ("session without a namespace", with("session", "app".into())),
        (
            "session with two slashes",
            with("session", "test/app/x".into()),
        ),
        ("upper-case session", with("session", "Test/App".into())),
        ("empty service", with("service", "".into())),
        (
            "evidence over 64 KiB",
            with("evidence", B64.encode(vec![0u8; 65 * 1024]).into()),
        ),
        ("65 host arguments", with("host_args", vec!["x"; 65].into())),
        (
            "a 5000-byte host argument",
            with("host_args", vec!["x".repeat(5000)].into()),
        ),
    ] {
        let (status, json) = post_attest(&cas, &body).await;
        assert_eq!(
            (status, json["code"].as_str()),
            (400, Some("bad-request")),
            "{what}: {json}"
        );
        let text = json.to_string();
        assert!(
            text.len() < 1000,
            "{what}: the answer echoes the input: {}",
            text.len()
        );
    }
    assert_eq!(
        audit_log_len(&cas),
        before,
        "a malformed request was logged"
    );

    // A well-formed name of a service the session does not have: refused with rule `service`,
    // logged with that (checked, short) name.
    let (status, json) = post_attest(&cas, &with("service", "ghost".into())).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("attestation-refused")),
        "{json}"
    );
    assert_eq!(json["rules"], serde_json::json!(["service"]), "{json}");
    let seq = json["audit_seq"].as_u64().unwrap();
    let entries = cas
        .client
        .audit_entries(seq - 1, Some(1), &auditor())
        .await
        .unwrap()
        .entries;
    assert_eq!(entries[0].service.as_deref(), Some("ghost"));
    assert!(
        entries[0].reasons[0].starts_with("service: "),
        "{:?}",
        entries[0]
    );
    assert!(audit_log_len(&cas) - before < 2000);
}

/// Issue 9, finding 5: a flood of identical refused attestations costs a bounded number of
/// audit entries, whatever the keys; the count is recorded, and the log stays in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_identical_refusals_is_counted_not_appended() {
    const FLOOD: u64 = 1000;
    // Without per-client rate limits: this floods the audit log, not the rate limiter.
    let cas = Arc::new(
        Cas::start_with(tempfile::tempdir().unwrap(), PlatformKey::generate(), |b| {
            b.limits(cloister_cas::config::Limits::bench())
        })
        .await,
    );
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let collector = cas.collector(Statement {
        measurement: vec![0xbb; 32],
        ..Cas::good_statement()
    });
    // One request replayed: the first is refused for its measurement, the rest also for the
    // used nonce; every refusal from a fresh key as an attacker would.
    let key = WorkloadKey::generate().unwrap();
    let template =
        serde_json::to_value(request_with(&cas, "test/app", &collector, &key, &key).await).unwrap();
    let before = cas.client.audit_head().await.unwrap().seq;
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let (cas, template) = (cas.clone(), template.clone());
            tokio::spawn(async move {
                for _ in 0..FLOOD / 8 {
                    let mut body = template.clone();
                    let k = WorkloadKey::generate().unwrap();
                    body["public_key"] = B64.encode(k.spki_der()).into();
                    let (status, json) = post_attest(&cas, &body).await;
                    assert_eq!(status, 403, "task {t}: {json}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let entries = cas
        .client
        .audit_entries(before, None, &auditor())
        .await
        .unwrap()
        .entries;
    let refused = entries
        .iter()
        .filter(|e| e.kind == "attestation_refused")
        .count() as u64;
    assert!(
        entries.len() <= 4,
        "{} entries for {FLOOD} refusals: {:?}",
        entries.len(),
        entries.iter().map(|e| &e.kind).collect::<Vec<_>>()
    );

    // An honest workload's entry comes after the counts, which are then appended.
    let honest = WorkloadKey::generate().unwrap();
    attest_workload(
        &cas.client,
        "test/app",
        "driver",
        &honest,
        &cas.collector(Cas::good_statement()),
        None,
        &["argv0".to_owned(), "x".to_owned()],
    )
    .await
    .unwrap();
    let entries = cas
        .client
        .audit_entries(before, None, &auditor())
        .await
        .unwrap()
        .entries;
    let repeated: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == "attestation_refused_repeated")
        .collect();
    let counted: u64 = repeated
        .iter()
        .map(|e| {
            let r = e.reasons[0].strip_prefix("repeated: ").unwrap();
            r.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    assert_eq!(refused + counted, FLOOD, "{entries:#?}");
    let passed = entries
        .iter()
        .position(|e| e.kind == "attestation_passed")
        .unwrap();
    assert!(
        entries[..passed]
            .iter()
            .all(|e| e.kind.starts_with("attestation_refused")),
        "{entries:#?}"
    );
    assert!(
        repeated
            .iter()
            .all(|e| e.reasons.iter().any(|r| r.starts_with("rules: ")))
    );

    // After the window, the next identical refusal is appended again.
    cas.clock.advance(Duration::from_secs(61));
    let mut body = template.clone();
    body["nonce"] = B64.encode(cas.client.nonce().await.unwrap().bytes).into();
    let (status, json) = post_attest(&cas, &body).await;
    assert_eq!(status, 403, "{json}");
    let last = cas.client.audit_head().await.unwrap().seq;
    assert_eq!(json["audit_seq"].as_u64(), Some(last), "{json}");
    assert!(cas.client.audit_verify(&auditor()).await.unwrap().ok);
}

/// Issue 9, finding 7: a refusal answered to anyone never carries the values another tenant's
/// policy pins (claims, Rego messages, measurements), in any encoding; the session's owner finds
/// them in the audit entry the answer points to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_do_not_reveal_another_tenants_pinned_values() {
    let cas = Cas::start().await;
    let pinned_measurement = [0x5c; 32];
    let pinned_claim = [0x3e; 32];
    let pinned_signer = [0x7d; 32];
    let yaml = format!(
        "name: tenant/secret-app\nversion: 1\naccess:\n  owners:\n    - name: o\n      key: {k}\n\
         security:\n  tees: [sim]\n  rego: |\n    package cloister\n    \
         deny contains \"svn below the tenant floor {rego}\" if {{ input.claims.svn < 100 }}\n\
         services:\n  - name: job\n    attestation:\n      - measurements: [\"{m}\"]\n        \
         extra:\n          platform_key: \"{c}\"\n      - tee: sgx\n        signer: \"{s}\"\n        \
         product_id: 4242\n",
        k = public_b64(1),
        m = hex::encode(pinned_measurement),
        c = hex::encode(pinned_claim),
        s = hex::encode(pinned_signer),
        rego = "REGO-PIN-91f3",
    );
    cas.client
        .create_namespace(&namespace("tenant", &[1], None), &signer(ADMIN))
        .await
        .unwrap();
    cas.push(&yaml).await;

    // The attacker: its own sim evidence for someone else's session, and its own client.
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Statement {
        measurement: vec![0xbb; 32],
        ..Cas::good_statement()
    });
    let mut req = request_with(&cas, "tenant/secret-app", &collector, &key, &key).await;
    req.service = "job".into();
    req.host_args.clear();
    let (status, json) = post_attest(&cas, &serde_json::to_value(&req).unwrap()).await;
    assert_eq!(
        (status, json["code"].as_str()),
        (403, Some("attestation-refused")),
        "{json}"
    );
    let body = json.to_string();
    for value in [&pinned_measurement[..], &pinned_claim, &pinned_signer] {
        canary::assert_absent(&body, value);
        // A prefix is enough to recognise a pin.
        let prefix = hex::encode(&value[..8]);
        assert!(!body.contains(&prefix), "{prefix} in {body}");
    }
    for leak in ["REGO-PIN-91f3", "4242", "platform_key"] {
        assert!(!body.contains(leak), "{leak} in {body}");
    }
    let rules: Vec<&str> = json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(
        rules,
        [
            "security.rego",
            "services[job].attestation[0].extra",
            "services[job].attestation[0].measurement",
            "services[job].attestation[1].product_id",
            "services[job].attestation[1].signer",
            "services[job].attestation[1].tee",
        ],
        "{body}"
    );

    // The owner reads the details in the entry the answer names.
    let seq = json["audit_seq"].as_u64().unwrap();
    let entry = cas
        .client
        .audit_entries(seq - 1, Some(1), &auditor())
        .await
        .unwrap()
        .entries
        .remove(0);
    assert_eq!(entry.seq, seq);
    let details = entry.reasons.join("\n");
    for needle in [
        hex::encode(pinned_claim).as_str(),
        "REGO-PIN-91f3",
        "not pinned",
    ] {
        assert!(details.contains(needle), "{needle} not in {details}");
    }
}

// ---- audit reads, from the attacker's side -----------------------------------------------------

/// [`app_policy`] with key `reader` instead of key 9 as its reader.
fn policy_read_by(name: &str, owner_key: u8, reader: u8) -> String {
    app_policy(name, 1, None, "sim", &[owner_key], 1).replace(&public_b64(9), &public_b64(reader))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reads_without_a_signature_are_refused_and_the_head_stays_public() {
    let cas = Cas::start().await;
    cas.push(&policy_read_by("test/a", 1, 3)).await;
    for path in [
        "/v1/audit/entries",
        "/v1/audit/entries?after=0&limit=1000",
        "/v1/audit/entries?session=test%2Fa",
        "/v1/audit/verify",
    ] {
        let (status, body) = cas.raw_get(path, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthenticated")),
            "{path}: {body}"
        );
        assert!(body.get("entries").is_none(), "{path}: {body}");
    }
    // A signature over another request does not open this one.
    let header = auditor().header(
        &cas.client.cas_id(),
        "GET",
        "/v1/audit/head",
        b"",
        SystemTime::now(),
    );
    let r = cas
        .raw()
        .get(format!("{}/v1/audit/entries", cas.url))
        .header("authorization", header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // The signed head is public, for outside monitors.
    let (status, head) = cas.raw_get("/v1/audit/head", None).await;
    assert_eq!(status, 200, "{head}");
    let entries = cas.audit_all().await;
    assert_eq!(head["seq"], entries.last().unwrap().seq);
    assert_eq!(head["hash"], entries.last().unwrap().hash.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_entries_are_visible_to_their_sessions_owners_and_readers_only() {
    let cas = Cas::start().await;
    // test/a: owner 1, reader 3. test/b: owner 2, reader 4. Key 6 is nobody's.
    cas.push(&policy_read_by("test/a", 1, 3)).await;
    cas.client
        .create_session(&signed(&policy_read_by("test/b", 2, 4), &[2]), &signer(1))
        .await
        .unwrap();
    // A refused change of test/b (signed by a stranger) and a refused attestation of test/a.
    let v2 = app_policy(
        "test/b",
        2,
        Some(SessionHash::of(policy_read_by("test/b", 2, 4))),
        "sim",
        &[2],
        1,
    );
    api_err(
        cas.client
            .update_session("test/b", &signed(&v2, &[6]))
            .await,
    );
    let key = WorkloadKey::generate().unwrap();
    let bad = cas.collector(Statement {
        measurement: vec![0xbb; 32],
        ..Cas::good_statement()
    });
    api_err(attest_workload(&cas.client, "test/a", "driver", &key, &bad, None, &[]).await);

    let all = cas.audit_all().await;
    let sessions_of = |entries: &[cloister_cas::audit::Entry]| {
        entries
            .iter()
            .map(|e| e.session.clone().unwrap_or_default())
            .collect::<std::collections::BTreeSet<_>>()
    };
    // The auditor sees everything, the CAS's own entries (no session) included.
    assert!(
        all.iter()
            .any(|e| e.kind == "key_created" && e.session.is_none())
    );
    assert_eq!(
        sessions_of(&all),
        ["", "test/a", "test/b"].map(str::to_owned).into()
    );
    let visible = |n: u8| {
        let client = cas.client.clone();
        async move { client.audit_entries_all(0, &signer(n)).await.unwrap() }
    };
    for (key, session) in [(1, "test/a"), (3, "test/a"), (2, "test/b"), (4, "test/b")] {
        let entries = visible(key).await;
        let expected: Vec<_> = all
            .iter()
            .filter(|e| e.session.as_deref() == Some(session))
            .cloned()
            .collect();
        assert!(!expected.is_empty());
        assert_eq!(
            entries, expected,
            "key {key} must see exactly {session}'s entries"
        );
    }
    // A key that owns and reads nothing sees nothing.
    assert!(visible(6).await.is_empty());
    // Naming another's session, or asking the CAS to verify, is refused with the rule.
    for (key, path) in [
        (6, "/v1/audit/entries?session=test%2Fa"),
        (1, "/v1/audit/entries?session=test%2Fb"),
        (3, "/v1/audit/entries?session=test%2Fb"),
        (6, "/v1/audit/verify"),
        (1, "/v1/audit/verify"),
    ] {
        let (status, body) = cas.raw_get(path, Some(&signer(key))).await;
        assert_eq!(
            (status, body["rule"].as_str()),
            (403, Some("audit-read")),
            "key {key} {path}: {body}"
        );
    }
    // Their own session by name is fine.
    let (status, body) = cas
        .raw_get("/v1/audit/entries?session=test%2Fa", Some(&signer(3)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(!body["entries"].as_array().unwrap().is_empty());
    assert!(cas.client.audit_verify(&auditor()).await.unwrap().ok);

    // Deleted, test/a's entries stay with its last owners and readers, and nobody else.
    cas.client
        .delete_session(
            "test/a",
            &SessionHash::of(policy_read_by("test/a", 1, 3)),
            &[&owner(1)],
        )
        .await
        .unwrap();
    for key in [1, 3] {
        let entries = visible(key).await;
        assert!(
            entries.iter().any(|e| e.kind == "session_deleted"),
            "key {key}"
        );
        assert!(
            entries
                .iter()
                .all(|e| e.session.as_deref() == Some("test/a"))
        );
    }
    assert!(visible(6).await.is_empty());
    assert!(
        visible(2)
            .await
            .iter()
            .all(|e| e.session.as_deref() == Some("test/b"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_paging_returns_every_entry_exactly_once_over_thousands_of_entries() {
    // A log of 3000 entries written before the CAS starts: a third for test/a, a third for
    // test/b, a third naming no session.
    let dir = tempfile::tempdir().unwrap();
    {
        let master = MasterKey::from_hex(MASTER_HEX, "test").unwrap();
        let log = cloister_cas::audit::AuditLog::open(
            dir.path(),
            cloister_cas::audit::AuditSigner::from_master_key(&master).unwrap(),
        )
        .unwrap();
        let events: Vec<_> = (0..3000u64)
            .map(|i| {
                let event = cloister_cas::audit::Event::new(
                    cloister_cas::audit::EventKind::AttestationRefused,
                )
                .service("driver")
                .reason(format!("measurement: refusal number {i}"));
                match i % 3 {
                    0 => event.session("test/a"),
                    1 => event.session("test/b"),
                    _ => event,
                }
            })
            .collect();
        for chunk in events.chunks(500) {
            log.append_all(chunk, SystemTime::now()).unwrap();
        }
    }
    // A small scan budget, so that reads stop early and hand out cursors (many reads: no
    // per-client rate limit).
    let cas = Cas::start_with(dir, PlatformKey::generate(), |b| {
        b.audit_scan_bytes(64 << 10)
            .limits(cloister_cas::config::Limits::bench())
    })
    .await;
    cas.push(&policy_read_by("test/a", 1, 3)).await;
    let head = cas.client.audit_head().await.unwrap();
    assert!(head.seq > 3000);

    // The auditor, page by page with the cursor: every seq once, in order.
    let mut seqs = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let page = cas
            .client
            .audit_entries(after, None, &auditor())
            .await
            .unwrap();
        pages += 1;
        seqs.extend(page.entries.iter().map(|e| e.seq));
        if !page.more {
            assert_eq!(page.next, None);
            break;
        }
        let next = page.next.unwrap();
        assert!(next > after);
        after = next;
    }
    assert_eq!(seqs, (1..=head.seq).collect::<Vec<_>>());
    assert!(pages > 3, "a 64 KiB budget needs several pages ({pages})");
    let all = cas.audit_all().await;

    // The owner of test/a, with small pages: exactly test/a's entries, each once.
    for limit in [None, Some(7)] {
        let mut mine = Vec::new();
        let mut after = 0;
        let mut empty_pages_with_more = 0;
        loop {
            let page = cas
                .client
                .audit_entries(after, limit, &signer(1))
                .await
                .unwrap();
            assert!(page.entries.len() <= limit.unwrap_or(1000));
            if page.entries.is_empty() && page.more {
                empty_pages_with_more += 1;
            }
            mine.extend(page.entries);
            match page.next {
                Some(next) => {
                    assert!(next > after);
                    after = next;
                }
                None => break,
            }
        }
        let expected: Vec<_> = all
            .iter()
            .filter(|e| e.session.as_deref() == Some("test/a"))
            .cloned()
            .collect();
        assert_eq!(mine.len(), expected.len(), "limit {limit:?}");
        assert_eq!(mine, expected, "limit {limit:?}");
        if limit.is_none() {
            // test/a's 1000 entries are spread over the log: the budget ends scans before the
            // limit, and the cursor carries the read on.
            assert_eq!(empty_pages_with_more, 0);
        }
    }
}

//! Host imports and exports, played from the attacker's side: a policy author who may create
//! sessions and attest their own TEE asks for the CAS host's files, environment and Kubernetes
//! Secrets, or takes an importer's name first. Each attempt is refused by rule, recorded in the
//! audit log, and releases nothing; what the operator allows still works.

use super::*;

/// A `driver` service pinned to [`MEASUREMENT`] whose `X` is the secret `x` imported `from`,
/// placed with `format` (`""` or `":hex"`…), in session `name` owned by key `owner`.
fn import_policy(name: &str, owner_key: u8, from: &str, format: &str) -> String {
    format!(
        "name: {name}\nversion: 1\naccess:\n  owners:\n    - name: o\n      key: {k}\n\
         security:\n  tees: [sim]\nservices:\n  - name: driver\n    attestation:\n      \
         - measurements: [\"{m}\"]\n    env:\n      X: $$cloister:x{format}$$\n\
         secrets:\n  - name: x\n    kind: import\n    from:\n      {from}\n",
        k = public_b64(owner_key),
        m = hex::encode(MEASUREMENT),
    )
}

/// A CAS whose operator lets namespace `test` import the files beneath `imports/`, the
/// variables `CANARY_TOKEN` and `DB_PASSWORD`, and the Kubernetes Secret `db`; beside it, files
/// it must never give out.
struct Host {
    cas: Cas,
    /// Holds `imports/`, `k8s/` and `outside/`.
    root: tempfile::TempDir,
}

const OUTSIDE_VALUE: &str = "OUTSIDE-a41c-never-importable";
const FILE_VALUE: &str = "file-pw-9d2e\n";
const BINARY_VALUE: [u8; 4] = [0xff, 0x00, 0xc3, 0x28];
const K8S_VALUE: &str = "k8s-pw-51b7";
const ENV_VALUE: &str = "env-pw-3c8a";
/// What the CAS's own environment holds: an attacker's prize.
const MASTER_VALUE: &str = "MASTER-KEY-IN-ENV-e0f1";

impl Host {
    async fn start() -> Self {
        let root = tempfile::tempdir().unwrap();
        let imports = root.path().join("imports");
        let outside = root.path().join("outside");
        let k8s = root.path().join("k8s");
        for d in [&imports, &outside, &k8s.join("db"), &k8s.join("other")] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(imports.join("text"), FILE_VALUE).unwrap();
        std::fs::write(imports.join("binary"), BINARY_VALUE).unwrap();
        std::fs::write(outside.join("secret"), OUTSIDE_VALUE).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), imports.join("link")).unwrap();
        std::fs::write(k8s.join("db/password"), K8S_VALUE).unwrap();
        std::fs::write(k8s.join("other/password"), OUTSIDE_VALUE).unwrap();
        let rules = ImportRules::none()
            .allow_files("test", &imports)
            .allow_env("test", "CANARY_TOKEN")
            .allow_env("test", "DB_PASSWORD")
            .allow_kubernetes_secret("test", "db");
        let cas = Cas::start_with(tempfile::tempdir().unwrap(), PlatformKey::generate(), |b| {
            b.imports(rules)
                .kubernetes_secrets_dir(&k8s)
                .env_source(Arc::new(|name| match name {
                    "CANARY_TOKEN" => Some(CANARY.to_owned()),
                    "DB_PASSWORD" => Some(ENV_VALUE.to_owned()),
                    "HOME" => Some(OUTSIDE_VALUE.to_owned()),
                    "CLOISTER_MASTER_KEY" => Some(MASTER_VALUE.to_owned()),
                    _ => None,
                }))
        })
        .await;
        // A namespace the import rules do not name at all; its owner approves what key 7 writes
        // (a namespace owner may be the attacker too: the import rules still hold).
        cas.client
            .create_namespace(&namespace("evil", &[1], None), &signer(ADMIN))
            .await
            .unwrap();
        Host { cas, root }
    }

    /// Creates `yaml` (signed by `owner_key`) and attests its `driver` with the pinned TEE.
    async fn attest(
        &self,
        session: &str,
        yaml: &str,
        owner_key: u8,
    ) -> Result<cloister_cas::client::Attested, Error> {
        self.cas
            .client
            .create_session(&signed(yaml, &[owner_key]), &signer(1))
            .await
            .unwrap();
        let key = WorkloadKey::generate().unwrap();
        let collector = self.cas.collector(Cas::good_statement());
        attest_driver(&self.cas.client, session, &key, &collector).await
    }

    fn path(&self, p: &str) -> String {
        p.replace("ROOT", &self.root.path().display().to_string())
            .replace("DATA", &self.cas.dir.path().display().to_string())
    }
}

#[rstest]
#[case::proc_self_environ("file: /proc/self/environ", "import-not-allowed")]
#[case::etc_shadow("file: /etc/shadow", "import-not-allowed")]
#[case::symlink_out_of_an_allowed_dir("file: ROOT/imports/link", "import-escape")]
#[case::the_cas_data_dir("file: DATA/cas.crt", "import-not-allowed")]
#[case::the_master_key_env("env: CLOISTER_MASTER_KEY", "import-not-allowed")]
#[case::an_env_not_allowed("env: HOME", "import-not-allowed")]
#[case::a_kubernetes_secret_not_allowed(
    "kubernetes: {secret: other, key: password}",
    "import-not-allowed"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_imports_the_operator_did_not_allow_are_refused(
    #[case] from: &str,
    #[case] rule: &str,
) {
    let host = Host::start().await;
    let from = host.path(from);
    // An allowed namespace asking for more, and a namespace with no rules at all.
    for session in ["test/attack", "evil/attack"] {
        let yaml = import_policy(session, 7, &from, ":hex");
        let err = api_err(host.attest(session, &yaml, 7).await);
        let expected = if session.starts_with("evil") {
            "import-not-allowed"
        } else {
            rule
        };
        assert_eq!(
            (err.status, err.code.as_str()),
            (403, "attestation-refused")
        );
        // The answer names the rule; the details are for the owners, in the audit log.
        assert!(
            err.names(&format!("secrets[x].{expected}")),
            "{session} {from}: {}",
            err.text()
        );
        // The refusal names no host path and no value.
        for leak in [
            OUTSIDE_VALUE,
            MASTER_VALUE,
            &host.root.path().display().to_string(),
            &host.cas.dir.path().display().to_string(),
            "/proc/self",
            "/etc/shadow",
        ] {
            assert!(!err.text().contains(leak), "{leak} in {}", err.text());
        }
        // The policy's owners read why in the audit log; nothing was released.
        let entries = host.cas.audit_all().await;
        let refused = entries
            .iter()
            .rfind(|e| e.kind == "attestation_refused")
            .unwrap();
        assert_eq!(refused.session.as_deref(), Some(session));
        assert_eq!(Some(refused.seq), err.audit_seq, "{}", err.text());
        assert!(
            refused
                .reasons
                .iter()
                .any(|r| r.contains(&format!("secrets[x]: {expected}:"))),
            "{refused:?}"
        );
        assert!(
            !entries
                .iter()
                .any(|e| e.kind == "secret_released" && e.session.as_deref() == Some(session)),
            "released"
        );
    }
    let log = std::fs::read(host.cas.dir.path().join(cloister_cas::audit::LOG_FILE)).unwrap();
    canary::assert_absent(&log, OUTSIDE_VALUE);
    canary::assert_absent(&log, MASTER_VALUE);
}

/// `..` never reaches the CAS's file system: the policy does not validate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_import_with_dotdot_is_refused_when_the_policy_is_created() {
    let host = Host::start().await;
    let from = host.path("file: ROOT/imports/../outside/secret");
    let yaml = import_policy("test/dotdot", 7, &from, ":hex");
    let err = api_err(
        host.cas
            .client
            .create_session(&signed(&yaml, &[7]), &signer(1))
            .await,
    );
    assert_eq!(err.status, 422, "{}", err.text());
    assert!(err.names("import-source"), "{}", err.text());
    assert!(!err.text().contains(OUTSIDE_VALUE));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_imports_the_operator_allowed_still_work() {
    let host = Host::start().await;
    let cases: [(&str, &str, &str, String); 5] = [
        (
            "test/text",
            "file: ROOT/imports/text",
            "",
            FILE_VALUE.into(),
        ),
        (
            "test/binary-hex",
            "file: ROOT/imports/binary",
            ":hex",
            hex::encode(BINARY_VALUE),
        ),
        (
            "test/binary-b64",
            "file: ROOT/imports/binary",
            ":base64",
            B64.encode(BINARY_VALUE),
        ),
        ("test/env", "env: DB_PASSWORD", "", ENV_VALUE.into()),
        (
            "test/k8s",
            "kubernetes: {secret: db, key: password}",
            "",
            K8S_VALUE.into(),
        ),
    ];
    for (session, from, format, expected) in cases {
        let yaml = import_policy(session, 1, &host.path(from), format);
        let attested = host
            .attest(session, &yaml, 1)
            .await
            .unwrap_or_else(|e| panic!("{session}: {e}"));
        assert_eq!(
            attested.config.env["X"].expose_secret(),
            expected,
            "{session}"
        );
    }
    // A binary file placed raw is refused with a clear rule, not mangled into text.
    let yaml = import_policy("test/raw", 1, &host.path("file: ROOT/imports/binary"), "");
    let err = api_err(host.attest("test/raw", &yaml, 1).await);
    assert!(err.names("secrets[x].placeholder-format"), "{}", err.text());
    let entries = host.cas.audit_all().await;
    let refused = entries
        .iter()
        .find(|e| Some(e.seq) == err.audit_seq)
        .unwrap();
    assert!(
        refused
            .reasons
            .iter()
            .any(|r| r.contains("secrets[x]: placeholder-format:") && r.contains(":hex or :base64")),
        "{refused:?}"
    );
}

/// The legitimate flow with a version pin instead of owners: the exporter pins importer
/// version 1, the importer's version 2 pins the exporter version that does; a squatter who
/// takes another name's pin gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_pinned_to_an_importer_version_follows_its_successors() {
    let cas = Cas::start().await;
    let exp1 = exporter_policy(1, None, "test/someone-else");
    cas.push(&exp1).await;
    let imp1 = importer_policy_owned(SessionHash::of(&exp1), 2);
    cas.client
        .create_session(&signed(&imp1, &[2]), &signer(1))
        .await
        .unwrap();
    let exp2 = format!(
        "{}      - session: test/importer\n        session_hash: {}\n",
        exporter_policy(2, Some(SessionHash::of(&exp1)), "test/someone-else"),
        SessionHash::of(&imp1)
    );
    cas.client
        .update_session("test/exporter", &signed(&exp2, &[1]))
        .await
        .unwrap();
    let imp2 = importer_policy_owned(SessionHash::of(&exp2), 2).replacen(
        "version: 1\n",
        &format!("version: 2\npredecessor: {}\n", SessionHash::of(&imp1)),
        1,
    );
    cas.client
        .update_session("test/importer", &signed(&imp2, &[2]))
        .await
        .unwrap();
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let attest = |session: &'static str| {
        let (client, key, collector) = (&cas.client, &key, &collector);
        async move { attest_driver(client, session, key, collector).await }
    };
    let imported = attest("test/importer").await.unwrap();
    let exported = attest("test/exporter").await.unwrap();
    assert_eq!(
        imported.config.env["KEY"].expose_secret(),
        exported.config.env["KEY"].expose_secret()
    );
}

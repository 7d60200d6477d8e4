//! Taking what the CAS guards: its host's files and environment (the master key among them),
//! the Kubernetes Secrets mounted into it, and another tenant's exported data key.

use super::kit::{self, Attempt};
use super::{
    ATTACKER_NS, Outcome, Scene, VICTIM_MEASUREMENT, assert_nothing_released, create_and_attest,
    service, session_policy, thief_policy,
};
use crate::cas_process::{CANARY, run};

/// The rules a refused host import may name: the namespace (the attacker may not create the
/// session at all) or the operator's import allow-list.
const IMPORT_RULES: &[&str] = &["import", "namespace", "host", "allow"];

/// Creates one attacker session per `(secret, from)` and attests to each; returns the outcomes.
fn loot(scene: &Scene, tag: &str, imports: &[(&str, &str)]) -> Vec<(String, Outcome)> {
    scene.grant_attacker_namespace();
    let owner = scene.mallory.owner_key_b64();
    imports
        .iter()
        .enumerate()
        .map(|(i, import)| {
            let name = format!("{ATTACKER_NS}/{tag}-{i}");
            let yaml = thief_policy(&name, &owner, &[*import]);
            let outcome = create_and_attest(scene, &name, &yaml);
            (format!("{name} (from: {})", import.1), outcome)
        })
        .collect()
}

/// `from: file` naming a canary file on the CAS host (outside any directory an operator could
/// have allowed) and `/proc/self/environ` (the CAS's environment, `CANARY_TOKEN` in it).
#[test]
fn attack_reads_cas_host_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret = kit::canary("host-file");
    let file = dir.path().join("host-secret.txt");
    std::fs::write(&file, &secret).unwrap();
    let scene = Scene::start_in(dir, &[], &[]);

    let file_from = format!("file: {}", file.display());
    let outcomes = loot(
        &scene,
        "host-file",
        &[
            ("loot", file_from.as_str()),
            ("loot", "file: /proc/self/environ"),
        ],
    );
    assert_nothing_released(
        &outcomes,
        &[
            ("the canary file", secret.as_bytes()),
            ("CANARY_TOKEN from /proc/self/environ", CANARY.as_bytes()),
        ],
        IMPORT_RULES,
    );
}

/// `from: env` naming `CLOISTER_MASTER_KEY` (the CAS started with the master key in its
/// environment, as `cas serve --help` offers) and another variable holding a canary.
#[test]
fn attack_reads_cas_env_master_key() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    run(
        d,
        &[
            "cas",
            "init",
            "--data",
            "data",
            "--master-key-file",
            "master.key",
        ],
        0,
    );
    let master = std::fs::read_to_string(d.join("master.key")).unwrap();
    let master = master.trim().to_owned();
    let secret = kit::canary("operator-env");
    let scene = Scene::start_in(
        dir,
        &[
            ("CLOISTER_MASTER_KEY", master.as_str()),
            ("OPERATOR_DB_PASSWORD", secret.as_str()),
        ],
        &[],
    );

    let outcomes = loot(
        &scene,
        "env",
        &[
            ("loot", "env: CLOISTER_MASTER_KEY"),
            ("loot", "env: OPERATOR_DB_PASSWORD"),
        ],
    );
    let master_bytes = hex::decode(&master).unwrap();
    assert_nothing_released(
        &outcomes,
        &[
            ("the CAS master key (hex text)", master.as_bytes()),
            ("the CAS master key (bytes)", &master_bytes),
            ("OPERATOR_DB_PASSWORD", secret.as_bytes()),
        ],
        IMPORT_RULES,
    );
}

/// `from: kubernetes` naming a Secret mounted into the CAS (`--kubernetes-secrets-dir`) that
/// the operator mounted for someone else.
#[test]
fn attack_reads_kubernetes_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = kit::canary("k8s-secret");
    let mount = dir.path().join("k8s/billing-db");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::write(mount.join("password"), &secret).unwrap();
    let k8s = dir.path().join("k8s").display().to_string();
    let scene = Scene::start_in(dir, &[], &["--kubernetes-secrets-dir", &k8s]);

    let outcomes = loot(
        &scene,
        "k8s",
        &[(
            "loot",
            "kubernetes:\n        secret: billing-db\n        key: password",
        )],
    );
    assert_nothing_released(
        &outcomes,
        &[(
            "the Kubernetes Secret billing-db/password",
            secret.as_bytes(),
        )],
        IMPORT_RULES,
    );
}

/// The victim's `victim/exporter` exports its data key to `tenant/importer`, which does not
/// exist yet. The attacker creates `tenant/importer` first, pinning the exporter's hash (from
/// the victim's public push output) and its own TEE, and attests.
#[test]
fn attack_squats_export_importer() {
    let scene = Scene::start(&[], &[]);
    let exporter = session_policy(
        "victim/exporter",
        &scene.victim_public,
        &service(
            "producer",
            &VICTIM_MEASUREMENT,
            &[("DATA_KEY", "$$cloister:data_key:hex$$")],
        ),
        "  - name: data_key\n    kind: aes256\n",
        "export:\n  - secret: data_key\n    to: [tenant/importer]\n",
    );
    let (_, summary) = scene.victim_creates(&exporter);
    // The victim's own workload learns the key (so the test can recognise it if stolen).
    let data_key = match scene.honest().attest(
        &scene.tee(&VICTIM_MEASUREMENT),
        "victim/exporter",
        "producer",
    ) {
        Attempt::Released { config, .. } => {
            let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
            hex::decode(config["env"]["DATA_KEY"].as_str().unwrap()).unwrap()
        }
        Attempt::Refused(r) => panic!("the victim's own workload was refused: {r}"),
    };

    let importer = session_policy(
        "tenant/importer",
        &scene.mallory.owner_key_b64(),
        &service(
            "thief",
            &super::ATTACKER_MEASUREMENT,
            &[("STOLEN", "$$cloister:data_key:hex$$")],
        ),
        &format!(
            "  - name: data_key\n    kind: import\n    from:\n      session:\n        \
             session: victim/exporter\n        secret: data_key\n        session_hash: {}\n",
            summary.hash
        ),
        "",
    );
    let outcome = create_and_attest(&scene, "tenant/importer", &importer);
    assert_nothing_released(
        &[("squatting tenant/importer".to_owned(), outcome)],
        &[("victim/exporter's data key", &data_key)],
        &["namespace", "import", "export"],
    );
}

//! Taking what the CAS guards: its host's files and environment (the master key among them),
//! the Kubernetes Secrets mounted into it, and another tenant's exported data key.

use super::kit::{self, Attempt};
use super::{
    ATTACKER_NS, Case, Outcome, Scene, VICTIM_MEASUREMENT, assert_nothing_released,
    create_and_attest, service, session_policy, thief_policy,
};
use crate::cas_process::{CANARY, IMPORTING_NAMESPACES};

/// The refusal of an import the operator's rules do not allow the attacker's namespace.
const NOT_ALLOWED: &[&str] = &["secrets[loot].import-not-allowed"];

/// A namespace the test CAS's import rules (`imports.yaml`, see
/// [`crate::cas_process::CasProcess`]) allow the files beneath `DIR/imports/`, which hold no
/// canary: an operator may give a hostile tenant such a namespace.
const ALLOWED_NS: &str = "burst";

/// Creates one attacker session in `ns` per `(from, rules)` importing `loot` from it, and
/// attests to each; returns the cases.
fn loot(
    scene: &Scene,
    ns: &str,
    tag: &str,
    imports: &[(&str, &'static [&'static str])],
) -> Vec<Case> {
    let owner = scene.mallory.owner_key_b64();
    imports
        .iter()
        .enumerate()
        .map(|(i, (from, rules))| {
            let name = format!("{ns}/{tag}-{i}");
            let yaml = thief_policy(&name, &owner, &[("loot", from)]);
            Case {
                what: format!("{name} (from: {from})"),
                outcome: create_and_attest(scene, &name, &yaml),
                rules,
            }
        })
        .collect()
}

/// `from: file` naming a canary file on the CAS host (outside any directory the operator
/// allowed) and `/proc/self/environ` (the CAS's environment, `CANARY_TOKEN` in it), from the
/// attacker's own namespace (allowed nothing) and from one allowed `DIR/imports/`, where the
/// attacker also tries `DIR/imports/../host-secret.txt`.
#[test]
fn attack_reads_cas_host_file() {
    assert!(IMPORTING_NAMESPACES.contains(&ALLOWED_NS));
    let dir = tempfile::tempdir().unwrap();
    let secret = kit::canary("host-file");
    let file = dir.path().join("host-secret.txt");
    std::fs::write(&file, &secret).unwrap();
    let escape = dir.path().join("imports/../host-secret.txt");
    let scene = Scene::start_in(dir, &[], &[]);
    scene.grant_attacker_namespace();
    scene.operator_grants(ALLOWED_NS, &scene.mallory.owner_key_b64());

    let file_from = format!("file: {}", file.display());
    let escape_from = format!("file: {}", escape.display());
    let mut cases = loot(
        &scene,
        ATTACKER_NS,
        "host-file",
        &[
            (&file_from, NOT_ALLOWED),
            ("file: /proc/self/environ", NOT_ALLOWED),
        ],
    );
    cases.extend(loot(
        &scene,
        ALLOWED_NS,
        "host-file",
        &[
            (&file_from, NOT_ALLOWED),
            // Refused as the policy is read: no `..` in an import path.
            (&escape_from, &["invalid-policy", "import-source"]),
            ("file: /proc/self/environ", NOT_ALLOWED),
        ],
    ));
    assert_nothing_released(
        &cases,
        &[
            ("the canary file", secret.as_bytes()),
            ("CANARY_TOKEN from /proc/self/environ", CANARY.as_bytes()),
        ],
    );
}

/// `from: env` naming `CLOISTER_MASTER_KEY` (the CAS started with the master key in its
/// environment, as `cas serve --help` offers) and another variable holding a canary.
#[test]
fn attack_reads_cas_env_master_key() {
    let secret = kit::canary("operator-env");
    let scene = Scene::start_keyed(
        tempfile::tempdir().unwrap(),
        &[("OPERATOR_DB_PASSWORD", secret.as_str())],
        &[],
        false,
    );
    let master = std::fs::read_to_string(scene.path().join("master.key")).unwrap();
    let master = master.trim().to_owned();
    let master_bytes = hex::decode(&master).unwrap();
    let secrets: [(&str, &[u8]); 3] = [
        ("the CAS master key (hex text)", master.as_bytes()),
        ("the CAS master key (bytes)", &master_bytes),
        ("OPERATOR_DB_PASSWORD", secret.as_bytes()),
    ];
    scene.grant_attacker_namespace();

    let cases = loot(
        &scene,
        ATTACKER_NS,
        "env",
        &[
            ("env: CLOISTER_MASTER_KEY", NOT_ALLOWED),
            ("env: OPERATOR_DB_PASSWORD", NOT_ALLOWED),
        ],
    );
    assert_nothing_released(&cases, &secrets);
    // Nor would any file read of the CAS process find it: it re-executed itself without the
    // key in its environment (the operator's view of /proc/PID/environ).
    let environ = std::fs::read(format!("/proc/{}/environ", scene.cas.pid())).unwrap();
    for (what, value) in &secrets[..2] {
        let found = kit::found(&environ, value);
        assert!(
            found.is_empty(),
            "{what} in the CAS's environment ({found:?})"
        );
    }
}

/// `from: kubernetes` naming a Secret mounted into the CAS (`--kubernetes-secrets-dir`) that
/// the operator mounted for someone else, and a Secret named `..` (the mount directory's
/// parent).
#[test]
fn attack_reads_kubernetes_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = kit::canary("k8s-secret");
    let mount = dir.path().join("k8s/billing-db");
    std::fs::create_dir_all(&mount).unwrap();
    std::fs::write(mount.join("password"), &secret).unwrap();
    let k8s = dir.path().join("k8s").display().to_string();
    let scene = Scene::start_in(dir, &[], &["--kubernetes-secrets-dir", &k8s]);
    scene.grant_attacker_namespace();

    let cases = loot(
        &scene,
        ATTACKER_NS,
        "k8s",
        &[
            (
                "kubernetes:\n        secret: billing-db\n        key: password",
                NOT_ALLOWED,
            ),
            (
                "kubernetes:\n        secret: ..\n        key: billing-db",
                &["invalid-policy", "import-source"],
            ),
        ],
    );
    assert_nothing_released(
        &cases,
        &[(
            "the Kubernetes Secret billing-db/password",
            secret.as_bytes(),
        )],
    );
}

/// The victim's `victim/exporter` exports its data key to `partner/importer`, naming the
/// importer by the owners of its namespace (the victim's own key in this test: the partner).
/// The attacker, who learns the exporter's hash from the victim's public push output, tries
/// to take the importer's name:
///
/// - in `partner`, which the operator has not created yet, and in `victim`, whose owner it is
///   not: the session is not created (`namespace`, `unauthorised`);
/// - in `partner` after the operator gave that namespace to the attacker (a hostile tenant
///   got the name first): the session is created, and the import is refused because the
///   importer's namespace owners are not the ones the export names (`export-identity`).
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
        &format!(
            "export:\n  - secret: data_key\n    to:\n      - session: partner/importer\n        \
             owners: [{}]\n      - session: victim/importer\n        owners: [{}]\n",
            scene.victim.fingerprint(),
            scene.victim.fingerprint(),
        ),
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

    let importer = |name: &str| {
        session_policy(
            name,
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
        )
    };
    let squat = |name: &str, rules| Case {
        what: format!("squatting {name}"),
        outcome: create_and_attest(&scene, name, &importer(name)),
        rules,
    };
    let mut cases = vec![
        squat("partner/importer", &["namespace"]),
        squat("victim/importer", &["unauthorised"]),
    ];
    scene.operator_grants("partner", &scene.mallory.owner_key_b64());
    cases.push(squat(
        "partner/importer",
        &["secrets[data_key].export-identity"],
    ));
    assert_nothing_released(&cases, &[("victim/exporter's data key", &data_key)]);
    // The squatted session exists: the refusal came from the export's identity check.
    assert!(
        matches!(cases[2].outcome, Outcome::Attested(_)),
        "{:?}",
        cases[2]
    );
}

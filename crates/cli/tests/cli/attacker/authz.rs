//! Acting without authority: creating sessions in another tenant's namespace, resurrecting a
//! deleted session from its public signed policy, reading the audit log.

use super::kit::Attempt;
use super::{
    ATTACKER_MEASUREMENT, Scene, VICTIM_MEASUREMENT, assert_refusal_names_rule, kit, service,
    session_policy,
};
use crate::cas_process::runtime;

/// The victim owns namespace `victim` (it has a session there); the attacker creates
/// `victim/anything` with its own key as owner.
#[test]
fn attack_creates_session_in_foreign_namespace() {
    let scene = Scene::start(&[], &[]);
    let mine = session_policy(
        "victim/app",
        &scene.victim_public,
        &service("api", &VICTIM_MEASUREMENT, &[]),
        "",
        "",
    );
    scene.victim_creates(&mine);

    let squat = session_policy(
        "victim/anything",
        &scene.mallory.owner_key_b64(),
        &service("thief", &ATTACKER_MEASUREMENT, &[]),
        "",
        "",
    );
    let reply = scene.mallory.create_session(&squat);
    assert_ne!(
        reply.status, 201,
        "ATTACK SUCCEEDED: the attacker created victim/anything in the victim's namespace: {reply}"
    );
    assert_eq!(reply.status, 403, "{reply}");
    assert_eq!(reply.code(), "session-refused", "{reply}");
    assert_refusal_names_rule("victim/anything", &reply, &["namespace"]);
}

/// The victim deletes `victim/retired` (revoking its workload). Its signed policy JSON is not
/// secret (it lives in git); the attacker pushes it again, byte for byte.
#[test]
fn attack_resurrects_deleted_session() {
    let scene = Scene::start(&[], &[]);
    let yaml = session_policy(
        "victim/retired",
        &scene.victim_public,
        &service(
            "worker",
            &VICTIM_MEASUREMENT,
            &[("DB_PASSWORD", "$$cloister:db_password$$")],
        ),
        "  - name: db_password\n    kind: ascii\n",
        "",
    );
    let (signed, summary) = scene.victim_creates(&yaml);
    // Published with the project's configuration (git): the attacker reads it from there.
    let published = scene.path().join("victim-retired.policy.json");
    std::fs::write(&published, serde_json::to_vec_pretty(&signed).unwrap()).unwrap();
    let head: cloister_policy::SessionHash = summary.hash.parse().unwrap();
    runtime()
        .block_on(
            scene
                .cas
                .client()
                .delete_session("victim/retired", &head, &[&scene.victim]),
        )
        .expect("the victim deletes its session");

    let replayed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&published).unwrap()).unwrap();
    let reply = scene.mallory.post("/v1/sessions", &replayed);
    if reply.status == 201 {
        // What it bought: the revoked workload is served again.
        let revoked =
            scene
                .mallory
                .attest(&scene.tee(&VICTIM_MEASUREMENT), "victim/retired", "worker");
        let got = match &revoked {
            Attempt::Released { config, .. } => {
                format!(
                    "the revoked workload attests again and receives {}",
                    String::from_utf8_lossy(config)
                )
            }
            Attempt::Refused(r) => format!("(the revoked workload was still refused: {r})"),
        };
        let audit = scene.audit_log();
        let created_by = audit
            .lines()
            .rfind(|l| l.contains("victim/retired") && l.contains("created"))
            .unwrap_or_default()
            .to_owned();
        panic!(
            "ATTACK SUCCEEDED: the deleted session was re-created from its old signed policy \
             ({reply}); {got}; the audit log names the victim as creator: {created_by}"
        );
    }
    assert!(
        reply.status == 403 || reply.status == 409,
        "expected 403 or 409, got {reply}"
    );
    assert_refusal_names_rule(
        "resurrection",
        &reply,
        &["resurrection", "tombstone", "namespace"],
    );
}

/// The audit log holds every session name and hash, owner fingerprints and which secrets went
/// to which workload key. Without credentials, and with the attacker's own key, nothing of it
/// is readable; only the signed head stays public.
#[test]
fn attack_reads_audit_log_without_credentials() {
    let scene = Scene::start(&[], &[]);
    let secret_name = "victim/payroll-merger-2027";
    let yaml = session_policy(
        secret_name,
        &scene.victim_public,
        &service("api", &VICTIM_MEASUREMENT, &[]),
        "",
        "",
    );
    scene.victim_creates(&yaml);
    let victim_fp = scene.victim.fingerprint().to_string();

    let mut leaks = Vec::new();
    for path in [
        "/v1/audit/entries",
        "/v1/audit/entries?after=0&limit=1000",
        "/v1/audit/verify",
    ] {
        for signed in [false, true] {
            let reply = if signed {
                scene.mallory.get_signed(path)
            } else {
                scene.mallory.get(path)
            };
            let who = if signed {
                "signed by the attacker's key"
            } else {
                "unsigned"
            };
            let found_name = !kit::found(&reply.body, secret_name.as_bytes()).is_empty();
            let found_fp = !kit::found(&reply.body, victim_fp.as_bytes()).is_empty();
            if reply.status == 200 || found_name || found_fp {
                leaks.push(format!(
                    "GET {path} ({who}) → {} ({} bytes; session name: {found_name}, owner \
                     fingerprint: {found_fp})",
                    reply.status,
                    reply.body.len()
                ));
                continue;
            }
            let expected: &[u16] = if signed { &[401, 403] } else { &[401] };
            assert!(
                expected.contains(&reply.status),
                "GET {path} ({who}): expected {expected:?}, got {reply}"
            );
            assert!(
                ["unauthenticated", "forbidden"].contains(&reply.code().as_str()),
                "GET {path} ({who}): {reply}"
            );
        }
    }
    assert!(
        leaks.is_empty(),
        "ATTACK SUCCEEDED: the audit log is readable without credentials:\n{}",
        leaks.join("\n")
    );

    // The signed head stays public, for outside monitors.
    let head = scene.mallory.get("/v1/audit/head");
    assert_eq!(head.status, 200, "{head}");
    assert!(head.json()["signature"].is_string(), "{head}");
    assert!(kit::found(&head.body, secret_name.as_bytes()).is_empty());
}

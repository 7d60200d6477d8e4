//! Acting without authority: creating sessions in another tenant's namespace, resurrecting a
//! deleted session from its public signed policy, reading the audit log.

use super::kit::Attempt;
use super::{
    ATTACKER_MEASUREMENT, ATTACKER_NS, Scene, VICTIM_MEASUREMENT, assert_refusal_names_rule, kit,
    service, session_policy,
};
use crate::cas_process::{approver, runtime};

/// The victim owns namespace `victim` (it has a session there); the attacker creates
/// `victim/anything` with its own key as owner: without a request signature, with its own
/// (not an owner of `victim`), and in a namespace nobody was given.
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

    let squat = |name: &str| {
        session_policy(
            name,
            &scene.mallory.owner_key_b64(),
            &service("thief", &ATTACKER_MEASUREMENT, &[]),
            "",
            "",
        )
    };
    let unsigned = scene.mallory.post(
        "/v1/sessions",
        &scene.mallory.signed_policy(&squat("victim/anything")),
    );
    let signed = scene.mallory.create_session(&squat("victim/anything"));
    let nowhere = scene.mallory.create_session(&squat("nobody/anything"));
    for (what, reply, rule) in [
        (
            "victim/anything, unsigned request",
            &unsigned,
            "unauthorised",
        ),
        (
            "victim/anything, signed by the attacker",
            &signed,
            "unauthorised",
        ),
        (
            "nobody/anything, signed by the attacker",
            &nowhere,
            "namespace",
        ),
    ] {
        assert_ne!(
            reply.status, 201,
            "ATTACK SUCCEEDED: the attacker created {what}: {reply}"
        );
        assert_eq!(reply.status, 403, "{what}: {reply}");
        assert_eq!(reply.code(), "session-refused", "{what}: {reply}");
        assert_refusal_names_rule(what, reply, &[rule]);
    }
    // Nothing was created: the victim's namespace still holds only its own session.
    let list = runtime()
        .block_on(scene.cas.client().list_sessions(&approver(&scene.victim)))
        .unwrap();
    let names: Vec<&str> = list.sessions.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["victim/app"]);
}

/// The victim deletes `victim/retired` (revoking its workload). Its signed policy JSON is not
/// secret (it lives in git); the attacker pushes it again, byte for byte, unsigned and signed
/// with its own key. Even the namespace's owner, pushing it again (a CI job replaying the
/// repository's history), does not bring it back: a tombstone names the deletion.
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
    let unsigned = scene.mallory.post("/v1/sessions", &replayed);
    let signed_by_attacker = scene
        .mallory
        .request("POST", "/v1/sessions", Some(&replayed), true);
    // A second later than the creation: the same signed request twice is refused as a replay
    // (rule `replay`) before anything else is looked at.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let by_owner = runtime().block_on(
        scene
            .cas
            .client()
            .create_session(&signed, &approver(&scene.victim)),
    );

    let mut resurrected = Vec::new();
    for (what, reply) in [
        ("unsigned", &unsigned),
        ("signed by the attacker", &signed_by_attacker),
    ] {
        if reply.status == 201 {
            resurrected.push(format!("{what}: {reply}"));
        }
    }
    if let Ok(s) = &by_owner {
        resurrected.push(format!("approved by the namespace's owner: {s:?}"));
    }
    if !resurrected.is_empty() {
        // What it bought: the revoked workload is served again.
        let got =
            match scene
                .mallory
                .attest(&scene.tee(&VICTIM_MEASUREMENT), "victim/retired", "worker")
            {
                Attempt::Released { config, .. } => format!(
                    "the revoked workload attests again and receives {}",
                    String::from_utf8_lossy(&config)
                ),
                Attempt::Refused(r) => format!("(the revoked workload was still refused: {r})"),
            };
        panic!(
            "ATTACK SUCCEEDED: the deleted session was re-created from its old signed policy \
             ({}); {got}",
            resurrected.join("; ")
        );
    }
    for (what, reply) in [
        ("unsigned", &unsigned),
        ("signed by the attacker", &signed_by_attacker),
    ] {
        assert_eq!(reply.status, 403, "{what}: {reply}");
        assert_eq!(reply.code(), "session-refused", "{what}: {reply}");
        assert_refusal_names_rule(what, reply, &["unauthorised"]);
    }
    match by_owner {
        Err(cloister_cas::Error::Api {
            status, code, rule, ..
        }) => assert_eq!(
            (status, code.as_str(), rule.as_deref()),
            (403, "session-refused", Some("resurrection"))
        ),
        other => panic!("the owner's re-push: {other:?}"),
    }
}

/// The audit log holds every session name and hash, owner fingerprints and which secrets went
/// to which workload key. Without credentials nothing of it is readable; with the attacker's
/// own key (an owner of its own namespace and session) only the entries of its own session;
/// only the signed head stays public.
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
    // The attacker's own session, whose entries it may read.
    scene.grant_attacker_namespace();
    let own = format!("{ATTACKER_NS}/own");
    let created = scene.mallory.create_session(&session_policy(
        &own,
        &scene.mallory.owner_key_b64(),
        &service("thief", &ATTACKER_MEASUREMENT, &[]),
        "",
        "",
    ));
    assert_eq!(created.status, 201, "{created}");

    let mut leaks = Vec::new();
    let session_query = format!("/v1/audit/entries?session={secret_name}");
    let paths = [
        "/v1/audit/entries",
        "/v1/audit/entries?after=0&limit=1000",
        session_query.as_str(),
        "/v1/audit/verify",
    ];
    for path in paths {
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
            if found_name || found_fp {
                leaks.push(format!(
                    "GET {path} ({who}) → {} ({} bytes; session name: {found_name}, owner \
                     fingerprint: {found_fp})",
                    reply.status,
                    reply.body.len()
                ));
                continue;
            }
            match (signed, path) {
                (false, _) => {
                    assert_eq!(reply.status, 401, "GET {path} ({who}): {reply}");
                    assert_eq!(
                        reply.code(),
                        "unauthenticated",
                        "GET {path} ({who}): {reply}"
                    );
                }
                // The attacker's own session's entries, and nothing else.
                (true, p) if p.starts_with("/v1/audit/entries") && p != session_query => {
                    assert_eq!(reply.status, 200, "GET {path} ({who}): {reply}");
                    let entries = reply.json()["entries"].as_array().cloned().unwrap();
                    let sessions: Vec<&str> = entries
                        .iter()
                        .map(|e| e["session"].as_str().unwrap_or_default())
                        .collect();
                    if sessions.iter().any(|s| *s != own) {
                        leaks.push(format!(
                            "GET {path} ({who}) → entries of sessions {sessions:?}"
                        ));
                    }
                    assert!(!entries.is_empty(), "GET {path} ({who}): {reply}");
                }
                (true, _) => {
                    assert_eq!(reply.status, 403, "GET {path} ({who}): {reply}");
                    assert_eq!(reply.code(), "forbidden", "GET {path} ({who}): {reply}");
                    assert_refusal_names_rule(path, &reply, &["audit-read"]);
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "ATTACK SUCCEEDED: the audit log is readable without credentials:\n{}",
        leaks.join("\n")
    );
    // The victim reads its own entries: the attacker saw none of them because it may not.
    let victims = runtime()
        .block_on(
            scene
                .cas
                .client()
                .audit_entries(0, None, &approver(&scene.victim)),
        )
        .unwrap();
    assert!(
        victims
            .entries
            .iter()
            .any(|e| e.session.as_deref() == Some(secret_name)),
        "{victims:?}"
    );

    // The signed head stays public, for outside monitors.
    let head = scene.mallory.get("/v1/audit/head");
    assert_eq!(head.status, 200, "{head}");
    assert!(head.json()["signature"].is_string(), "{head}");
    assert!(kit::found(&head.body, secret_name.as_bytes()).is_empty());
}

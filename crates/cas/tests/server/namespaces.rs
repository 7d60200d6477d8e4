//! Namespaces, namespace owner approvals bound to one CAS and accepted once, quotas and
//! tombstones, played from the attacker's side: each refusal names its rule and stores nothing.

use super::*;
use cloister_cas::FileStore;
use cloister_cas::api::{SignedPolicyJson, UpdateNamespace};
use cloister_cas::audit::Entry;

/// Every audit entry of `cas`.
async fn audit(cas: &Cas) -> Vec<Entry> {
    cas.audit_all().await
}

/// A `POST /v1/sessions` of `policy` with the approval header `auth` (or none), sent by a raw
/// client: what an attacker holding a captured request can do.
async fn raw_create(cas: &Cas, body: &[u8], auth: Option<&str>) -> (u16, serde_json::Value) {
    raw_post(cas, "/v1/sessions", body, auth).await
}

/// A `POST path` of `body` with the header `auth` (or none), sent by a raw client.
async fn raw_post(
    cas: &Cas,
    path: &str,
    body: &[u8],
    auth: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut request = cas
        .raw()
        .post(format!("{}{path}", cas.url))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn policy_body(yaml: &str, signers: &[u8]) -> Vec<u8> {
    serde_json::to_vec(&signed(yaml, signers)).unwrap()
}

/// Whether `cas` holds session `name` (read by its owner 1).
async fn holds(cas: &Cas, name: &str) -> bool {
    match cas.client.session(name, &signer(1)).await {
        Ok(_) => true,
        Err(Error::Api { status: 404, .. }) => false,
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_session_in_a_namespace_you_do_not_own_is_refused() {
    let cas = Cas::start().await;
    // Key 7 owns the policy it signs, but not the namespace `test`.
    let yaml = app_policy("test/app", 1, None, "sim", &[7], 1);
    let before = audit(&cas).await.len();
    let err = api_err(
        cas.client
            .create_session(&signed(&yaml, &[7]), &signer(7))
            .await,
    );
    err.assert_refused(403, "unauthorised");
    assert!(!holds(&cas, "test/app").await);
    let entries = audit(&cas).await;
    assert!(
        entries[before..]
            .iter()
            .all(|e| e.kind != "session_created"),
        "nothing created"
    );
    // A namespace nobody created.
    let yaml = app_policy("nowhere/app", 1, None, "sim", &[1], 1);
    let err = api_err(
        cas.client
            .create_session(&signed(&yaml, &[1]), &signer(1))
            .await,
    );
    err.assert_refused(403, "namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_session_without_namespace_approval_is_refused() {
    let cas = Cas::start().await;
    let body = policy_body(&app_policy("test/app", 1, None, "sim", &[1], 1), &[1]);
    let before = audit(&cas).await.len();
    let (status, answer) = raw_create(&cas, &body, None).await;
    assert_eq!(
        (status, answer["rule"].as_str()),
        (403, Some("unauthorised")),
        "{answer}"
    );
    assert!(!holds(&cas, "test/app").await);
    // Unauthenticated requests leave no trace in the audit log (they cannot flood it).
    assert_eq!(audit(&cas).await.len(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_beyond_the_namespace_quota_is_refused() {
    let cas = Cas::start().await;
    cas.client
        .create_namespace(&namespace("small", &[1], Some(1)), &signer(ADMIN))
        .await
        .unwrap();
    cas.push(&app_policy("small/one", 1, None, "sim", &[1], 1))
        .await;
    let err = api_err(
        cas.client
            .create_session(
                &signed(&app_policy("small/two", 1, None, "sim", &[1], 1), &[1]),
                &signer(1),
            )
            .await,
    );
    err.assert_refused(403, "quota");
    assert!(!holds(&cas, "small/two").await);
    // The admin raises the quota; now it fits.
    let view = cas
        .client
        .update_namespace(
            "small",
            &UpdateNamespace {
                version: 1,
                owners: None,
                session_quota: Some(2),
            },
            &signer(ADMIN),
        )
        .await
        .unwrap();
    assert_eq!((view.version, view.session_quota, view.sessions), (2, 2, 1));
    cas.push(&app_policy("small/two", 1, None, "sim", &[1], 1))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_signed_for_one_cas_is_refused_by_another() {
    // Two CASes with the same admin key, the same namespace and the same owners: only the
    // binding to the CAS tells them apart.
    let (a, b) = (Cas::start().await, Cas::start().await);
    assert_ne!(a.client.cas_id(), b.client.cas_id());
    assert_eq!(
        a.client.health().await.unwrap().cas_id,
        a.client.cas_id().to_string()
    );
    let body = policy_body(&app_policy("test/app", 1, None, "sim", &[1], 1), &[1]);
    let auth = signer(1).header(
        &a.client.cas_id(),
        "POST",
        "/v1/sessions",
        &body,
        SystemTime::now(),
    );
    let (status, answer) = raw_create(&b, &body, Some(&auth)).await;
    assert_eq!(
        (status, answer["rule"].as_str()),
        (401, Some("signature")),
        "{answer}"
    );
    assert!(!holds(&b, "test/app").await);
    // The same request at the CAS it was signed for is accepted.
    let (status, answer) = raw_create(&a, &body, Some(&auth)).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_change_replayed_within_the_window_is_refused() {
    let cas = Cas::start().await;
    let admin_ns = serde_json::to_vec(&namespace("other", &[7], None)).unwrap();
    let auth = signer(ADMIN).header(
        &cas.client.cas_id(),
        "POST",
        "/v1/namespaces",
        &admin_ns,
        SystemTime::now(),
    );
    let send = || async {
        let r = cas
            .raw()
            .post(format!("{}/v1/namespaces", cas.url))
            .header("content-type", "application/json")
            .header("authorization", &auth)
            .body(admin_ns.clone())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        (status, body)
    };
    assert_eq!(send().await.0, 201);
    // The admin deletes it; a replay of the creation must not bring it back.
    cas.client
        .delete_namespace("other", &signer(ADMIN))
        .await
        .unwrap();
    let (status, answer) = send().await;
    assert_eq!(
        (status, answer["rule"].as_str()),
        (401, Some("replay")),
        "{answer}"
    );
    assert!(matches!(
        cas.client.get_namespace("other", &signer(ADMIN)).await,
        Err(Error::Api { status: 404, .. })
    ));

    // The same for a session's approval: a second use is refused before anything else.
    let body = policy_body(&app_policy("test/app", 1, None, "sim", &[1], 1), &[1]);
    let auth = signer(1).header(
        &cas.client.cas_id(),
        "POST",
        "/v1/sessions",
        &body,
        SystemTime::now(),
    );
    assert_eq!(raw_create(&cas, &body, Some(&auth)).await.0, 201);
    let (status, answer) = raw_create(&cas, &body, Some(&auth)).await;
    assert_eq!(
        (status, answer["rule"].as_str()),
        (401, Some("replay")),
        "{answer}"
    );
}

/// Deletes `test/app` (owned by key 1) at `head`.
async fn delete_app(cas: &Cas, head: &SessionHash) {
    cas.client
        .delete_session("test/app", head, &[&owner(1)])
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_session_is_not_resurrected_by_its_old_signed_policy() {
    let cas = Cas::start().await;
    let v1 = app_policy("test/app", 1, None, "sim", &[1], 1);
    let old = signed(&v1, &[1]);
    cas.client.create_session(&old, &signer(1)).await.unwrap();
    let h1 = SessionHash::of(&v1);
    delete_app(&cas, &h1).await;

    // The old signed policy lives in git: anyone can push it again, even with a fresh
    // namespace owner approval (say, by a careless owner). (The client signs the very same
    // request again within the same second with a later timestamp: regression, it used to be
    // refused as a replay of its own first approval.)
    let err = api_err(cas.client.create_session(&old, &signer(1)).await);
    err.assert_refused(403, "resurrection");
    assert!(!holds(&cas, "test/app").await);
    // A later version that does not name the tombstone neither.
    let stray = app_policy(
        "test/app",
        2,
        Some(SessionHash::of("other")),
        "sim",
        &[1],
        1,
    );
    let err = api_err(
        cas.client
            .create_session(&signed(&stray, &[1]), &signer(1))
            .await,
    );
    assert_eq!(err.rule.as_deref(), Some("resurrection"), "{}", err.text());

    // The legitimate re-creation: version 2 naming the deleted version, freshly approved.
    let v2 = app_policy("test/app", 2, Some(h1), "sim", &[1], 1);
    let created = cas.push(&v2).await;
    assert_eq!(created.version, 2);
    let entries = audit(&cas).await;
    let last = entries
        .iter()
        .rev()
        .find(|e| e.kind == "session_created")
        .unwrap();
    let text = serde_json::to_string(last).unwrap();
    assert!(text.contains("approved-by"), "{text}");
    assert!(text.contains(&owner(1).fingerprint().to_string()), "{text}");
    assert!(
        text.contains(&format!("recreates: deleted version 1 {h1}")),
        "{text}"
    );
    let refusals = entries
        .iter()
        .filter(|e| e.kind == "session_change_refused")
        .map(|e| serde_json::to_string(e).unwrap())
        .collect::<Vec<_>>();
    assert!(
        refusals.iter().any(|r| r.contains("resurrection")),
        "{refusals:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_survives_a_restart() {
    let cas = Cas::start().await;
    let v1 = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&v1).await;
    delete_app(&cas, &SessionHash::of(&v1)).await;
    let (dir, platform) = cas.stop().await;
    let cas = Cas::start_with(dir, platform, |b| b).await;
    let err = api_err(
        cas.client
            .create_session(&signed(&v1, &[1]), &signer(1))
            .await,
    );
    assert_eq!(err.rule.as_deref(), Some("resurrection"), "{}", err.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_admin_key_changes_namespaces_and_only_owners_read_them() {
    let cas = Cas::start().await;
    // An owner of `test` cannot create a namespace, nor change its own.
    let err = api_err(
        cas.client
            .create_namespace(&namespace("mine", &[1], None), &signer(1))
            .await,
    );
    assert_eq!(
        (err.status, err.code.as_str(), err.rule.as_deref()),
        (403, "namespace-refused", Some("unauthorised")),
        "{}",
        err.text()
    );
    let err = api_err(
        cas.client
            .update_namespace(
                "test",
                &UpdateNamespace {
                    version: 1,
                    owners: None,
                    session_quota: Some(1_000_000),
                },
                &signer(1),
            )
            .await,
    );
    assert_eq!(err.rule.as_deref(), Some("unauthorised"), "{}", err.text());
    // Names are checked before anything is stored.
    let err = api_err(
        cas.client
            .create_namespace(&namespace("Bad/Name", &[1], None), &signer(ADMIN))
            .await,
    );
    assert_eq!(err.rule.as_deref(), Some("name"), "{}", err.text());
    // Owners and the admin read it; anyone else gets 404, as if it did not exist.
    let view = cas.client.get_namespace("test", &signer(2)).await.unwrap();
    assert_eq!(view.owners.len(), 2);
    assert_eq!(view.session_quota, cloister_cas::api::DEFAULT_SESSION_QUOTA);
    assert!(matches!(
        cas.client.get_namespace("test", &signer(7)).await,
        Err(Error::Api { status: 404, .. })
    ));
    assert!(
        cas.client
            .list_namespaces(&signer(7))
            .await
            .unwrap()
            .namespaces
            .is_empty()
    );
    assert_eq!(
        cas.client
            .list_namespaces(&signer(ADMIN))
            .await
            .unwrap()
            .namespaces
            .len(),
        1
    );
    // A namespace holding a session cannot be deleted.
    cas.push(&app_policy("test/app", 1, None, "sim", &[1], 1))
        .await;
    let err = api_err(cas.client.delete_namespace("test", &signer(ADMIN)).await);
    assert_eq!(err.rule.as_deref(), Some("not-empty"), "{}", err.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_made_before_namespaces_is_migrated_by_setting_the_admin_key() {
    let dir = tempfile::tempdir().unwrap();
    let master = MasterKey::from_hex(MASTER_HEX, "test").unwrap();
    // An old CAS: sessions, no admin key, no namespace records.
    let legacy = app_policy("legacy/app", 1, None, "sim", &[1], 1);
    {
        let cas = Cas::start_opts(dir, PlatformKey::generate(), false, |b| b).await;
        let health = cas.client.health().await.unwrap();
        assert!(!health.admin_key_set);
        // Without an admin key the CAS refuses namespace changes, saying what to run.
        let err = api_err(
            cas.client
                .create_namespace(&namespace("legacy", &[1], None), &signer(ADMIN))
                .await,
        );
        assert_eq!(err.rule.as_deref(), Some("admin-key"), "{}", err.text());
        assert!(err.message.contains("cas init"), "{}", err.text());
        let (dir, _) = cas.stop().await;
        let store = FileStore::open(dir.path(), &master).unwrap();
        let version = cloister_cas::SessionVersion {
            version: 1,
            yaml: legacy.clone(),
            signatures: Vec::new(),
            hash: SessionHash::of(&legacy),
            created: SystemTime::now(),
        };
        cloister_cas::Store::append_session_version(&store, "legacy/app", None, version).unwrap();
        drop(store);
        // `cloister cas init --admin-key` on the stopped CAS.
        let done = cloister_cas::admin::init_admin_in(
            dir.path(),
            &master,
            &spki(ADMIN),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(done.migrated, vec![("legacy".to_owned(), 1)]);
        let cas = Cas::start_opts(dir, PlatformKey::generate(), false, |b| b).await;
        // The existing session's owner owns the namespace now; a stranger does not.
        let view = cas
            .client
            .get_namespace("legacy", &signer(1))
            .await
            .unwrap();
        assert_eq!(view.sessions, 1);
        assert_eq!(
            view.owners[0].fingerprint,
            owner(1).fingerprint().to_string()
        );
        cas.push(&app_policy("legacy/second", 1, None, "sim", &[1], 1))
            .await;
        let err = api_err(
            cas.client
                .create_session(
                    &signed(&app_policy("legacy/third", 1, None, "sim", &[7], 1), &[7]),
                    &signer(7),
                )
                .await,
        );
        assert_eq!(err.rule.as_deref(), Some("unauthorised"), "{}", err.text());
        let entries = audit(&cas).await;
        assert!(entries.iter().any(|e| e.kind == "admin_key_set"));
        assert!(entries.iter().any(|e| e.kind == "namespace_created"));
        // The signed-policy JSON type is what the wire carries.
        let _: SignedPolicyJson = serde_json::from_slice(&policy_body(&legacy, &[1])).unwrap();
    }
}

/// Review finding: signed changes by a key that can change nothing (neither the admin key nor
/// a namespace owner) take no place in the table of used signatures; otherwise any self-made
/// key could fill it and lock the admin and every owner out. Such a request replayed is simply
/// refused again by its rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_signed_changes_take_no_place_in_the_replay_table() {
    let cas = Cas::start().await;
    let post_signed_twice_or_more = |key: u8, ns: &str, times: usize| {
        let body = serde_json::to_vec(&namespace(ns, &[1], None)).unwrap();
        let header = signer(key).header(
            &cas.client.cas_id(),
            "POST",
            "/v1/namespaces",
            &body,
            SystemTime::now(),
        );
        let cas = &cas;
        async move {
            let mut answers = Vec::new();
            for _ in 0..times {
                let (status, json) = raw_post(cas, "/v1/namespaces", &body, Some(&header)).await;
                answers.push((status, json["rule"].as_str().map(str::to_owned)));
            }
            answers
        }
    };
    let unauthorised = (403, Some("unauthorised".to_owned()));
    assert_eq!(
        post_signed_twice_or_more(9, "stranger", 3).await,
        [unauthorised.clone(), unauthorised.clone(), unauthorised]
    );
    // The admin's own change is remembered: its replay is refused as one.
    assert_eq!(
        post_signed_twice_or_more(ADMIN, "ops", 2).await,
        [(201, None), (401, Some("replay".to_owned()))]
    );
}

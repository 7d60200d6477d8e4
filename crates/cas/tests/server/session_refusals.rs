//! Refused session changes, played from the attacker's side: an update or deletion that no
//! current owner signed learns only `unsigned` / `approvals` — never the head hash, the
//! version, nor whether a key is an owner and its name — and writes nothing into the audit log,
//! however many times it is sent. An owner's signed request still gets the details.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_cas::api::DeleteSession;
use cloister_cas::client::delete_request;
use cloister_cas::config::Limits;
use cloister_policy::{SessionHash, Signature, SignedPolicy};
use rstest::rstest;

use super::{ApiErr, Cas, api_err, app_policy, owner, public_b64, signed, signer};

/// A CAS whose rate limits do not stop a flood (the flood is what is measured), holding
/// `test/app` owned by keys 1 and 2 (M = 1) at version 2. Returns it, the old version 1's hash
/// and the current head's.
async fn victim() -> (Cas, SessionHash, SessionHash) {
    let cas = Cas::start_with(
        tempfile::tempdir().unwrap(),
        cloister_attest::sim::PlatformKey::generate(),
        |b| b.limits(Limits::bench()),
    )
    .await;
    let v1 = app_policy("test/app", 1, None, "sim", &[1, 2], 1);
    let h1 = SessionHash::of(&v1);
    cas.push(&v1).await;
    let v2 = app_policy("test/app", 2, Some(h1), "sim", &[1, 2], 1);
    let h2 = SessionHash::of(&v2);
    cas.client
        .update_session("test/app", &signed(&v2, &[1]))
        .await
        .unwrap();
    (cas, h1, h2)
}

/// What the attacker must not find in an answer: the head (hex, either case, base64), the
/// current version or the next, and each owner's name, fingerprint and public key.
fn secrets_of_the_session(head: &SessionHash) -> Vec<String> {
    let hex = head.to_string();
    let mut needles = vec![
        hex.clone(),
        hex.to_uppercase(),
        hex[..16].to_owned(),
        B64.encode(head.as_bytes()),
        "expected".to_owned(),
        "version 2".to_owned(),
        "version 3".to_owned(),
        " 2 ".to_owned(),
        " 3 ".to_owned(),
    ];
    for n in [1u8, 2] {
        needles.push(format!("owner{n}"));
        let fp = owner(n).fingerprint().to_string();
        needles.push(fp[..16].to_owned());
        needles.push(fp[..16].to_uppercase());
        needles.push(public_b64(n)[..24].to_owned());
    }
    needles
}

fn assert_learns_nothing(what: &str, err: &ApiErr, head: &SessionHash) {
    let text = err.text();
    for needle in secrets_of_the_session(head) {
        assert!(
            !text.contains(&needle),
            "{what}: the answer reveals `{needle}`: {text}"
        );
    }
}

/// A signature that names owner 1's key but is made by the attacker's (key 7).
fn forged(hash: &SessionHash) -> Signature {
    Signature {
        key_fingerprint: owner(1).fingerprint(),
        sig: owner(7).sign(hash).sig,
    }
}

#[derive(Debug, Clone, Copy)]
enum Attack {
    /// Version 3 naming version 1: an owner would hear the head's hash (`predecessor`).
    UnsignedStaleUpdate,
    /// Version 5 naming the head: an owner would hear the expected `version`.
    UnsignedSkippedVersion,
    StrangerStaleUpdate,
    /// The attacker guesses owner 1's key: an owner would hear `bad-signature` by `owner1`.
    ForgedOwnerSignatureUpdate,
    /// Owner 1's real signature over another document (version 1), attached to this one.
    ReplayedOwnerSignatureUpdate,
    UnsignedDeleteOfAnOldHead,
    StrangerDeleteOfAnOldHead,
    StrangerDeleteOfTheHead,
    ForgedOwnerSignatureDelete,
}

async fn attack(cas: &Cas, h1: SessionHash, head: SessionHash, case: Attack) -> ApiErr {
    let update = |version: u64, predecessor: SessionHash| {
        app_policy("test/app", version, Some(predecessor), "sim", &[7], 1)
    };
    let put =
        |p: SignedPolicy| async move { api_err(cas.client.update_session("test/app", &p).await) };
    let delete = |body: DeleteSession| async move {
        let response = cas
            .raw()
            .delete(format!("{}/v1/sessions/test/app", cas.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        let field = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
        ApiErr {
            status,
            code: field("code"),
            rule: body["rule"].as_str().map(str::to_owned),
            reasons: serde_json::from_value(body["reasons"].clone()).unwrap_or_default(),
            rules: Vec::new(),
            audit_seq: None,
            message: format!("{body}"),
        }
    };
    match case {
        Attack::UnsignedStaleUpdate => put(SignedPolicy::new(update(3, h1))).await,
        Attack::UnsignedSkippedVersion => put(SignedPolicy::new(update(5, head))).await,
        Attack::StrangerStaleUpdate => put(signed(&update(3, h1), &[7])).await,
        Attack::ForgedOwnerSignatureUpdate => {
            let mut p = SignedPolicy::new(update(3, h1));
            p.signatures.push(forged(&p.hash()));
            put(p).await
        }
        Attack::ReplayedOwnerSignatureUpdate => {
            let mut p = SignedPolicy::new(update(3, h1));
            p.signatures.push(owner(1).sign(&h1));
            put(p).await
        }
        Attack::UnsignedDeleteOfAnOldHead => delete(delete_request("test/app", &h1, &[])).await,
        Attack::StrangerDeleteOfAnOldHead => {
            delete(delete_request("test/app", &h1, &[&owner(7)])).await
        }
        Attack::StrangerDeleteOfTheHead => {
            delete(delete_request("test/app", &head, &[&owner(7)])).await
        }
        Attack::ForgedOwnerSignatureDelete => {
            let mut body = delete_request("test/app", &head, &[&owner(7)]);
            body.signatures[0].key_fingerprint = owner(1).fingerprint().to_string();
            delete(body).await
        }
    }
}

/// Each attack is refused by the rule that holds whatever the session is (`unsigned`, or no
/// owner's `approvals`), with nothing of the session in the answer and nothing in the log.
#[rstest]
#[case::unsigned_stale_update(Attack::UnsignedStaleUpdate, "unsigned")]
#[case::unsigned_skipped_version(Attack::UnsignedSkippedVersion, "unsigned")]
#[case::stranger_stale_update(Attack::StrangerStaleUpdate, "approvals")]
#[case::forged_owner_signature_update(Attack::ForgedOwnerSignatureUpdate, "approvals")]
#[case::replayed_owner_signature_update(Attack::ReplayedOwnerSignatureUpdate, "approvals")]
#[case::unsigned_delete_of_an_old_head(Attack::UnsignedDeleteOfAnOldHead, "unsigned")]
#[case::stranger_delete_of_an_old_head(Attack::StrangerDeleteOfAnOldHead, "approvals")]
#[case::stranger_delete_of_the_head(Attack::StrangerDeleteOfTheHead, "approvals")]
#[case::forged_owner_signature_delete(Attack::ForgedOwnerSignatureDelete, "approvals")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_a_change_no_owner_signed_learns_nothing_of_the_session(
    #[case] case: Attack,
    #[case] rule: &str,
) {
    let (cas, h1, head) = victim().await;
    let before = cas.audit_all().await.len();
    let err = attack(&cas, h1, head, case).await;
    assert_eq!(
        (err.status, err.code.as_str(), err.rule.as_deref()),
        (403, "session-refused", Some(rule)),
        "{case:?}: {}",
        err.text()
    );
    assert_learns_nothing(&format!("{case:?}"), &err, &head);
    assert_eq!(
        cas.audit_all().await.len(),
        before,
        "{case:?}: a refusal no owner signed was recorded"
    );
    // The session is untouched.
    let view = cas.client.session("test/app", &signer(1)).await.unwrap();
    assert_eq!(view.hash, head.to_string());
}

/// An owner signing a stale or skipped change still hears why, and the refusal is recorded
/// with its details for the other owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_still_gets_the_details_of_a_refused_change() {
    let (cas, h1, head) = victim().await;
    let stale = app_policy("test/app", 3, Some(h1), "sim", &[1, 2], 1);
    let err = api_err(
        cas.client
            .update_session("test/app", &signed(&stale, &[2]))
            .await,
    );
    err.assert_refused(409, "predecessor");
    assert!(err.message.contains(&head.to_string()), "{}", err.text());

    let skipped = app_policy("test/app", 5, Some(head), "sim", &[1, 2], 1);
    let err = api_err(
        cas.client
            .update_session("test/app", &signed(&skipped, &[1]))
            .await,
    );
    assert_eq!(err.rule.as_deref(), Some("version"), "{}", err.text());
    assert!(err.message.contains("expected 3"), "{}", err.text());

    // A forged signature beside an owner's real one: the owner hears which owner's key it names.
    let next = app_policy("test/app", 3, Some(head), "sim", &[1, 2], 2);
    let mut p = signed(&next, &[2]);
    p.signatures.push(forged(&p.hash()));
    let err = api_err(cas.client.update_session("test/app", &p).await);
    assert_eq!(err.rule.as_deref(), Some("bad-signature"), "{}", err.text());
    assert!(err.message.contains("owner1"), "{}", err.text());

    let err = api_err(
        cas.client
            .delete_session("test/app", &h1, &[&owner(1)])
            .await,
    );
    err.assert_refused(409, "predecessor");
    assert!(err.message.contains(&head.to_string()), "{}", err.text());

    let refusals: Vec<String> = cas
        .audit_all()
        .await
        .into_iter()
        .filter(|e| e.kind == "session_change_refused")
        .map(|e| serde_json::to_string(&e).unwrap())
        .collect();
    assert_eq!(refusals.len(), 4, "{refusals:#?}");
    assert!(refusals[0].contains(&head.to_string()), "{refusals:#?}");
    assert!(refusals[2].contains("owner1"), "{refusals:#?}");
}

/// 500 refused changes nobody entitled signed — unsigned and stranger-signed updates and
/// deletions, and creations in the victim's namespace approved by a stranger's key — leave the
/// audit log as it was: no caller can write into a session's stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regression_refused_changes_nobody_entitled_signed_do_not_grow_the_log() {
    let (cas, h1, head) = victim().await;
    let log = cas.dir.path().join(cloister_cas::audit::LOG_FILE);
    let size = std::fs::metadata(&log).unwrap().len();
    let entries = cas.audit_all().await.len();
    let cases = [
        Attack::UnsignedStaleUpdate,
        Attack::StrangerStaleUpdate,
        Attack::ForgedOwnerSignatureUpdate,
        Attack::UnsignedDeleteOfAnOldHead,
        Attack::StrangerDeleteOfTheHead,
    ];
    for i in 0..450 {
        let err = attack(&cas, h1, head, cases[i % cases.len()]).await;
        assert_eq!(err.status, 403, "{}", err.text());
    }
    // Creations: any key signs a request; it is no owner of namespace `test`.
    let squat = app_policy("test/squat", 1, None, "sim", &[7], 1);
    for _ in 0..50 {
        let err = api_err(
            cas.client
                .create_session(&signed(&squat, &[7]), &signer(7))
                .await,
        );
        assert_eq!(err.rule.as_deref(), Some("unauthorised"), "{}", err.text());
    }
    assert_eq!(cas.audit_all().await.len(), entries);
    assert_eq!(std::fs::metadata(&log).unwrap().len(), size);
}

//! What refusals and tokens give away: other tenants' pinned values in refusal bodies, and
//! tokens that a relying party of another service accepts.

use super::kit::{self, Attempt};
use super::{ATTACKER_NS, Scene, VICTIM_MEASUREMENT, assert_refusal_names_rule, service};
use crate::cas_process::runtime;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_cas::token::{self, TokenRule, TokenVerifier};
use std::time::SystemTime;

/// The signer the victim's second attestation variant pins.
const VICTIM_SIGNER: [u8; 32] = [0x5e; 32];

/// The attacker attests against the victim's session, whose variants pin a measurement M with
/// an `extra` claim V (the victim's own platform key) and a signer S, and whose Rego rule's
/// message names M. The refusal must name the failed rules (ids only) without any of M, S or V.
#[test]
fn attack_refusal_reveals_pinned_values() {
    let scene = Scene::start(&[], &[]);
    let victim_platform = cloister_attest::sim::PlatformKey::generate();
    let pinned_platform = hex::decode(victim_platform.public_key().fingerprint()).unwrap();
    let m = hex::encode(VICTIM_MEASUREMENT);
    let yaml = format!(
        r#"name: victim/vault
version: 1
access:
  owners:
    - name: owner
      key: {owner}
security:
  tees: [sim]
  rego: |
    package cloister
    deny contains msg if {{
      input.claims.measurement != "{m}"
      msg := "only {m} may open the vault"
    }}
services:
  - name: vault
    attestation:
      - measurements: ["{m}"]
        extra:
          platform_key: "{v}"
      - signer: "{s}"
        product_id: 7
"#,
        owner = scene.victim_public,
        v = hex::encode(&pinned_platform),
        s = hex::encode(VICTIM_SIGNER),
    );
    scene.victim_creates(&yaml);

    let attempt = scene
        .mallory
        .attest(&scene.attacker_tee(), "victim/vault", "vault");
    let Attempt::Refused(reply) = &attempt else {
        panic!("ATTACK SUCCEEDED: the attacker's TEE passed the victim's policy: {attempt:?}");
    };
    let mut leaks = Vec::new();
    for (what, value) in [
        ("the pinned measurement M", &VICTIM_MEASUREMENT[..]),
        ("the pinned signer S", &VICTIM_SIGNER[..]),
        (
            "the pinned extra claim V (platform_key)",
            &pinned_platform[..],
        ),
    ] {
        let found = kit::found(&reply.body, value);
        if !found.is_empty() {
            leaks.push(format!("{what} (as {})", found.join(", ")));
        }
    }
    assert!(
        leaks.is_empty(),
        "ATTACK SUCCEEDED: the refusal reveals {}: {reply}",
        leaks.join("; ")
    );
    assert_eq!(reply.status, 403, "{reply}");
    assert_eq!(reply.code(), "attestation-refused", "{reply}");
    // Each failed rule by its id only, and the audit entry with the details for the owners.
    assert_refusal_names_rule(
        "victim/vault",
        reply,
        &[
            "security.rego",
            "services[vault].attestation[0].extra",
            "services[vault].attestation[0].measurement",
            "services[vault].attestation[1].product_id",
            "services[vault].attestation[1].signer",
        ],
    );
    assert!(reply.audit_seq().is_some(), "{reply}");
}

/// The attacker attests its own service `mallory/app/thief` (legitimately: its session, its
/// TEE) and presents the token to a relying party that serves `victim/app/api`. The token
/// carries `aud` = `mallory/app/thief`, and the relying party's verifier, bound to the
/// audience it serves, refuses it (rule `audience`); a relying party of `mallory/app/thief`
/// accepts it.
#[test]
fn attack_token_replayed_for_another_service() {
    let scene = Scene::start(&[], &[]);
    scene.grant_attacker_namespace();
    let session = format!("{ATTACKER_NS}/app");
    let own = super::session_policy(
        &session,
        &scene.mallory.owner_key_b64(),
        &service("thief", &super::ATTACKER_MEASUREMENT, &[]),
        "",
        "",
    );
    let created = scene.mallory.create_session(&own);
    assert_eq!(created.status, 201, "{created}");
    let attempt = scene
        .mallory
        .attest(&scene.attacker_tee(), &session, "thief");
    let Attempt::Released { token, .. } = attempt else {
        panic!("the attacker's own attestation was refused: {attempt:?}");
    };

    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["aud"], format!("{session}/thief"), "{claims}");

    // The relying parties, with the CAS's published issuer and keys.
    let client = scene.cas.client();
    let jwks = runtime().block_on(client.jwks()).unwrap();
    let issuer = runtime()
        .block_on(client.openid_configuration())
        .unwrap()
        .issuer;
    let verifier = TokenVerifier::new(issuer.clone(), jwks.clone());
    let now = SystemTime::now();
    match verifier
        .expect_audience("victim/app", "api")
        .verify(&token, now)
    {
        Err(cloister_cas::Error::TokenRefused {
            rule: TokenRule::Audience,
            ..
        }) => {}
        Ok(_) => panic!(
            "ATTACK SUCCEEDED: the relying party of victim/app/api accepts a token of \
             {session}/thief ({claims})"
        ),
        Err(other) => panic!("refused for another reason than the audience: {other}"),
    }
    // The one-shot form refuses it too; the token's own audience passes both.
    let refused = token::verify(&token, &jwks, &issuer, "victim/app/api", now);
    assert!(
        matches!(
            refused,
            Err(cloister_cas::Error::TokenRefused {
                rule: TokenRule::Audience,
                ..
            })
        ),
        "{refused:?}"
    );
    let verified = verifier
        .expect_audience(&session, "thief")
        .verify(&token, now)
        .expect("a relying party of the attacker's own service accepts its token");
    assert_eq!(verified.claims().service, "thief");
    token::verify(&token, &jwks, &issuer, &format!("{session}/thief"), now)
        .expect("the one-shot form accepts the token's own audience");
}

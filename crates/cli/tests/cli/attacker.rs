//! An outside attacker against a real `cloister cas serve` on loopback (issue 9, "Must show").
//!
//! The attacker holds no key of any legitimate owner. It brings its own HTTPS client, its own
//! Ed25519 key, its own P-256 workload keys, and its own TEE: the sim platform the CAS trusts
//! stands for any confidential VM a tenant can rent from a vendor the CAS trusts. Everything it
//! sends is written from the wire description in [`kit`], never with `cloister_cas::client`.
//! The victim, the operator and honest workloads may use the project's CLI and client library.
//!
//! Every test is named `attack_<what>` and asserts the *secure* behaviour: the attack is
//! refused with the failed rule named in the body, and nothing secret comes back in any
//! encoding ([`kit::found`]). A test that fails says what the attack achieved.
//!
//! Every loop is bounded in count and time; every address is in 127.0.0.0/8.

#[path = "attacker/authz.rs"]
mod authz;
#[path = "attacker/floods.rs"]
mod floods;
#[path = "attacker/kit.rs"]
pub mod kit;
#[path = "attacker/leaks.rs"]
mod leaks;
#[path = "attacker/secrets.rs"]
mod secrets;

use super::cas_process::{ADMIN_SEED, CasProcess, approver, owner, platform, runtime};
use cloister_attest::sim::PlatformKey;
use cloister_policy::{OwnerKey, SignedPolicy};
use kit::{Attempt, Client, Reply, Tee};
use secrecy::ExposeSecret as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// Where the attacker connects from.
pub const ATTACKER_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
/// Where honest workloads connect from (another client as far as the CAS can tell).
pub const HONEST_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
/// The code the attacker runs in its own TEE.
pub const ATTACKER_MEASUREMENT: [u8; 32] = [0x66; 32];
/// The code the victim's workloads run.
pub const VICTIM_MEASUREMENT: [u8; 32] = [0x71; 32];
/// The namespace the attacker works in when it needs one of its own.
pub const ATTACKER_NS: &str = "mallory";

/// A CAS, the sim platform it trusts, a victim (an owner key) and an attacker (its client).
pub struct Scene {
    pub cas: CasProcess,
    platform: PlatformKey,
    pub victim: OwnerKey,
    pub victim_public: String,
    pub mallory: Client,
    /// The CAS's directory; declared last so that it is removed after the CAS is killed.
    pub dir: tempfile::TempDir,
}

impl Scene {
    /// A CAS started with `env` and `extra` `serve` arguments in a fresh directory.
    pub fn start(env: &[(&str, &str)], extra: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), env, extra)
    }

    /// A CAS started in `dir` (which a test may have prepared).
    pub fn start_in(dir: tempfile::TempDir, env: &[(&str, &str)], extra: &[&str]) -> Self {
        Self::start_keyed(dir, env, extra, true)
    }

    /// The same; with `key_file` false the CAS reads its master key from
    /// `CLOISTER_MASTER_KEY` (the contents of `DIR/master.key`), as `cas serve --help` offers.
    pub fn start_keyed(
        dir: tempfile::TempDir,
        env: &[(&str, &str)],
        extra: &[&str],
        key_file: bool,
    ) -> Self {
        let d = dir.path();
        let platform = platform(d);
        let (victim, victim_public) = owner(d, "victim.pem", 0x5a);
        let cas = CasProcess::start_keyed(d, env, extra, key_file);
        let mallory = Client::new(&cas.url, &cert_pem(&cas), ATTACKER_IP);
        let scene = Self {
            cas,
            platform,
            victim,
            victim_public,
            mallory,
            dir,
        };
        scene.operator_grants("victim", &scene.victim_public);
        scene
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The operator gives namespace `ns` to the owner `owner_b64` (base64 SPKI DER): its admin
    /// key creates `ns`, with the project's client library. The attacker gets
    /// [`ATTACKER_NS`] this way too, since a paying tenant may be hostile.
    pub fn operator_grants(&self, ns: &str, owner_b64: &str) {
        let create = cloister_cas::api::CreateNamespace {
            name: ns.to_owned(),
            owners: vec![cloister_cas::api::NamespaceOwnerJson {
                name: "owner".to_owned(),
                public_key: owner_b64.to_owned(),
            }],
            session_quota: None,
        };
        let admin = cloister_policy::OwnerKey::from_seed(&[ADMIN_SEED; 32]).unwrap();
        runtime()
            .block_on(
                self.cas
                    .client()
                    .create_namespace(&create, &approver(&admin)),
            )
            .unwrap_or_else(|e| panic!("the operator could not create namespace {ns}: {e}"));
    }

    /// The attacker gets a namespace of its own (see [`Self::operator_grants`]).
    pub fn grant_attacker_namespace(&self) {
        self.operator_grants(ATTACKER_NS, &self.mallory.owner_key_b64());
    }

    /// The attacker's TEE, running [`ATTACKER_MEASUREMENT`].
    pub fn attacker_tee(&self) -> Tee {
        self.tee(&ATTACKER_MEASUREMENT)
    }

    /// A TEE on the trusted platform running `measurement` (the victim's workloads, or code an
    /// attacker claims to be theirs: the platform signs what it runs).
    pub fn tee(&self, measurement: &[u8]) -> Tee {
        Tee {
            platform: PlatformKey::from_pem(self.platform.to_pem().expose_secret()).unwrap(),
            measurement: measurement.to_vec(),
        }
    }

    /// A client for an honest workload, connecting from [`HONEST_IP`].
    pub fn honest(&self) -> Client {
        Client::new(&self.cas.url, &cert_pem(&self.cas), HONEST_IP)
    }

    /// The victim creates a session in its namespace with the project's client library.
    pub fn victim_creates(&self, yaml: &str) -> (SignedPolicy, cloister_cas::api::SessionSummary) {
        let signed = SignedPolicy::new(yaml).signed_by(&self.victim);
        let summary = runtime()
            .block_on(
                self.cas
                    .client()
                    .create_session(&signed, &approver(&self.victim)),
            )
            .unwrap_or_else(|e| panic!("the victim could not create its session: {e}"));
        (signed, summary)
    }

    /// The audit log's size on disk (the operator's view).
    pub fn audit_log_len(&self) -> u64 {
        std::fs::metadata(self.cas.data.join("audit.log"))
            .map(|m| m.len())
            .unwrap_or(0)
    }
}

pub fn cert_pem(cas: &CasProcess) -> String {
    std::fs::read_to_string(&cas.cert).unwrap()
}

/// A policy of session `name` owned by `owner_b64` on the sim TEE, with `services` and
/// `secrets` (YAML list items, either may be empty) and `tail` appended as is (`export:`, …).
pub fn session_policy(
    name: &str,
    owner_b64: &str,
    services: &str,
    secrets: &str,
    tail: &str,
) -> String {
    let mut y = format!(
        "name: {name}\nversion: 1\naccess:\n  owners:\n    - name: owner\n      key: {owner_b64}\n\
         security:\n  tees: [sim]\n"
    );
    if !services.is_empty() {
        y.push_str("services:\n");
        y.push_str(services);
    }
    if !secrets.is_empty() {
        y.push_str("secrets:\n");
        y.push_str(secrets);
    }
    y.push_str(tail);
    y
}

/// A service pinned to `measurement` with `env` lines (`KEY: value`).
pub fn service(name: &str, measurement: &[u8], env: &[(&str, &str)]) -> String {
    let mut y = format!(
        "  - name: {name}\n    attestation:\n      - measurements: [\"{}\"]\n",
        hex::encode(measurement)
    );
    if !env.is_empty() {
        y.push_str("    env:\n");
        for (k, v) in env {
            y.push_str(&format!("      {k}: {v}\n"));
        }
    }
    y
}

/// The attacker's policy for session `name`: its own key as owner, one service `thief` in its
/// own TEE whose environment carries each of `imports` (`(secret, from-YAML)`) as `LOOT_i`.
pub fn thief_policy(name: &str, owner_b64: &str, imports: &[(&str, &str)]) -> String {
    let env: Vec<(String, String)> = imports
        .iter()
        .enumerate()
        .map(|(i, (secret, _))| (format!("LOOT_{i}"), format!("$$cloister:{secret}$$")))
        .collect();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut secrets = String::new();
    for (secret, from) in imports {
        secrets.push_str(&format!(
            "  - name: {secret}\n    kind: import\n    from:\n      {from}\n"
        ));
    }
    session_policy(
        name,
        owner_b64,
        &service("thief", &ATTACKER_MEASUREMENT, &env),
        &secrets,
        "",
    )
}

/// How far an attack got.
#[derive(Debug)]
pub enum Outcome {
    /// The CAS refused to create the attacker's session.
    CreateRefused(Reply),
    /// The session was created; then the attestation went like this.
    Attested(Attempt),
}

impl Outcome {
    /// Every byte the attacker received.
    pub fn everything(&self) -> Vec<u8> {
        match self {
            Outcome::CreateRefused(r) => r.body.clone(),
            Outcome::Attested(a) => a.everything(),
        }
    }
}

/// The attacker creates `yaml` (session `name`) and attests to service `thief` from its TEE.
pub fn create_and_attest(scene: &Scene, name: &str, yaml: &str) -> Outcome {
    let reply = scene.mallory.create_session(yaml);
    if reply.status != 201 {
        return Outcome::CreateRefused(reply);
    }
    Outcome::Attested(scene.mallory.attest(&scene.attacker_tee(), name, "thief"))
}

/// Why `reply` is not a refusal (4xx, not 404) naming its rule: exactly the rule ids `rules`
/// (its `rule` and `rules`, in any order) when `rules` is not empty, at least one rule id
/// otherwise; `None` if it is one.
pub fn refusal_problem(what: &str, reply: &Reply, rules: &[&str]) -> Option<String> {
    if !(400..500).contains(&reply.status) || reply.status == 404 {
        return Some(format!(
            "{what}: expected a refusal (4xx, not 404) naming the rule, got {reply}"
        ));
    }
    if !reply.names_a_rule() {
        return Some(format!("{what}: the refusal names no rule: {reply}"));
    }
    let mut named = reply.rules();
    named.sort();
    let mut expected: Vec<String> = rules.iter().map(|r| (*r).to_owned()).collect();
    expected.sort();
    if !rules.is_empty() && named != expected {
        return Some(format!(
            "{what}: the refusal names the rules {named:?}, expected {expected:?}: {reply}"
        ));
    }
    None
}

/// Requires that `reply` is a refusal naming its rule (see [`refusal_problem`]).
pub fn assert_refusal_names_rule(what: &str, reply: &Reply, rules: &[&str]) {
    if let Some(problem) = refusal_problem(what, reply, rules) {
        panic!("{problem}");
    }
}

/// One attack and how far it got: `rules` are the rule ids its refusal must name, exactly.
#[derive(Debug)]
pub struct Case {
    pub what: String,
    pub outcome: Outcome,
    pub rules: &'static [&'static str],
}

/// Why `outcome` is not a clean refusal: a secret of `secrets` (`(what, value)`) in any
/// encoding in anything the attacker received, a released configuration, a refusal that does
/// not name exactly `rules`, or a refused attestation without the audit entry of its details.
/// `None` if the attack got nothing.
pub fn release_problem(
    what: &str,
    outcome: &Outcome,
    secrets: &[(&str, &[u8])],
    rules: &[&str],
) -> Option<String> {
    let all = outcome.everything();
    let leaked: Vec<String> = secrets
        .iter()
        .filter_map(|(name, value)| {
            let found = kit::found(&all, value);
            (!found.is_empty()).then(|| format!("{name} (as {})", found.join(", ")))
        })
        .collect();
    let stage = match outcome {
        Outcome::CreateRefused(_) => "session creation refused",
        Outcome::Attested(Attempt::Refused(_)) => "session created, attestation refused",
        Outcome::Attested(Attempt::Released { .. }) => {
            "session created, attestation PASSED, configuration released"
        }
    };
    if !leaked.is_empty() {
        return Some(format!(
            "{what}: ATTACK SUCCEEDED ({stage}): the attacker holds {}",
            leaked.join("; ")
        ));
    }
    match outcome {
        Outcome::CreateRefused(r) => refusal_problem(what, r, rules),
        Outcome::Attested(Attempt::Refused(r)) => refusal_problem(what, r, rules).or_else(|| {
            (r.code() == "attestation-refused" && r.audit_seq().is_none()).then(|| {
                format!("{what}: the refused attestation names no audit entry (audit_seq): {r}")
            })
        }),
        Outcome::Attested(Attempt::Released { config, .. }) => Some(format!(
            "{what}: {stage} to the attacker ({} bytes of configuration):\n{}",
            config.len(),
            String::from_utf8_lossy(config)
        )),
    }
}

/// Requires that no case released anything and each was refused naming exactly its rules
/// (see [`release_problem`]); reports every case that did not.
pub fn assert_nothing_released(cases: &[Case], secrets: &[(&str, &[u8])]) {
    let problems: Vec<String> = cases
        .iter()
        .filter_map(|c| release_problem(&c.what, &c.outcome, secrets, c.rules))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The control: the attacker's own kit speaks the protocol. Its signed request is accepted,
/// its signed policy creates a session in its own namespace, and its TEE attests and opens the
/// configuration. Without this, a refusal in an `attack_*` test could come from a broken kit
/// (a bad signature) rather than from the CAS's rules. Passes today and must keep passing.
#[test]
fn attack_control_kit_speaks_the_protocol() {
    let scene = Scene::start(&[], &[]);
    scene.grant_attacker_namespace();
    let name = format!("{ATTACKER_NS}/control");
    let yaml = session_policy(
        &name,
        &scene.mallory.owner_key_b64(),
        &service(
            "thief",
            &ATTACKER_MEASUREMENT,
            &[("OWN_PASSWORD", "$$cloister:own_password$$")],
        ),
        "  - name: own_password\n    kind: ascii\n",
        "",
    );
    let created = scene.mallory.create_session(&yaml);
    assert_eq!(created.status, 201, "{created}");

    let read = scene.mallory.get_signed(&format!("/v1/sessions/{name}"));
    assert_eq!(read.status, 200, "a signed read by the owner: {read}");
    assert_eq!(read.json()["yaml"], yaml.as_str(), "{read}");
    let unsigned = scene.mallory.get(&format!("/v1/sessions/{name}"));
    assert_eq!(unsigned.status, 401, "{unsigned}");
    // The kit binds its signatures to this CAS: the same read signed for another CAS id fails.
    let path = format!("/v1/sessions/{name}");
    let elsewhere = scene.mallory.signature_header_at(
        &[0u8; 32],
        "GET",
        &path,
        b"",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    );
    let other_cas = scene
        .mallory
        .request_with_header("GET", &path, None, Some(&elsewhere));
    assert_eq!(other_cas.status, 401, "{other_cas}");
    assert_refusal_names_rule("signed for another CAS", &other_cas, &["signature"]);

    match scene.mallory.attest(&scene.attacker_tee(), &name, "thief") {
        Attempt::Released { config, token, .. } => {
            let config: serde_json::Value = serde_json::from_slice(&config).unwrap();
            assert_eq!(config["session"], name.as_str());
            assert_eq!(
                config["env"]["OWN_PASSWORD"].as_str().map(str::len),
                Some(32),
                "{config}"
            );
            assert_eq!(token.split('.').count(), 3, "{token}");
        }
        Attempt::Refused(r) => panic!("the attacker's own attestation was refused: {r}"),
    }
    // Another TEE's code is refused, naming the rule.
    match scene
        .mallory
        .attest(&scene.tee(&VICTIM_MEASUREMENT), &name, "thief")
    {
        Attempt::Refused(r) => assert_refusal_names_rule(
            "another measurement",
            &r,
            &["services[thief].attestation[0].measurement"],
        ),
        Attempt::Released { .. } => panic!("code the policy does not pin was served"),
    }
}

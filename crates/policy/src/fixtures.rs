//! Test fixtures shared by the unit tests: deterministic keys and a base policy. With the
//! `fixtures` feature, public for `cloister-testkit` (which re-exports them as
//! `cloister_testkit::policies`), so that the tests of every crate build on the same keys.
// Fixtures panic where a test would: their inputs are constants.
#![allow(clippy::unwrap_used)]

use crate::{OwnerKey, SessionHash, SignedPolicy};
use base64::Engine as _;
use cloister_attest::{Claims, EvidenceFormat, Tee};

/// The owner key from seed `[n; 32]`.
pub fn key(n: u8) -> OwnerKey {
    OwnerKey::from_seed(&[n; 32]).unwrap()
}

/// Its public key as base64 SPKI DER (one line).
pub fn public_b64(n: u8) -> String {
    let pem = key(n).public_key().to_pem().unwrap();
    let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    // Check it decodes, so a fixture bug shows here and not as a confusing validation error.
    base64::engine::general_purpose::STANDARD
        .decode(&der)
        .unwrap();
    der
}

/// The measurement every fixture pins.
pub const MEASUREMENT: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// A valid policy exercising most of the language. Line numbers matter to the validation
/// tests: keep them stable.
pub fn base() -> String {
    format!(
        r#"name: test/base
version: 1
access:
  owners:
    - name: alice
      key: {k1}
    - name: bob
      key: {k2}
  update:
    approvals: 1
security:
  tees: [sim]
  tolerate: [debug]
  ignore_advisories: [INTEL-SA-00615]
services:
  - name: driver
    attestation:
      - measurements:
          - {MEASUREMENT}
    command: /bin/app
    args: [run, "@@1"]
    env:
      TOKEN: $$cloister:token$$
    files:
      - path: /etc/app/key.pem
        content: $$cloister:cert:key$$
        mode: "0600"
secrets:
  - name: token
    kind: ascii
  - name: ca
    kind: x509-ca
  - name: cert
    kind: x509
    issuer: ca
    sans: [driver.local]
export:
  - secret: token
    to:
      - session: test/other
        owners: [{fp2}]
"#,
        k1 = public_b64(1),
        k2 = public_b64(2),
        fp2 = key(2).fingerprint(),
    )
}

/// The head of a policy: `name`, `version`, `predecessor` when given, and the owners as
/// (name, base64 key) pairs; the caller goes on with `read:` or `update:`.
pub fn head(
    name: &str,
    version: u64,
    predecessor: Option<SessionHash>,
    owners: &[(&str, &str)],
) -> String {
    let mut y = format!("name: {name}\nversion: {version}\n");
    if let Some(p) = predecessor {
        y.push_str(&format!("predecessor: {p}\n"));
    }
    y.push_str("access:\n  owners:\n");
    for (owner, key) in owners {
        y.push_str(&format!("    - name: {owner}\n      key: {key}\n"));
    }
    y
}

/// The head of a policy owned by the keys of `owners`, named `owner<n>`.
pub fn head_of_keys(
    name: &str,
    version: u64,
    predecessor: Option<SessionHash>,
    owners: &[u8],
) -> String {
    let owners: Vec<(String, String)> = owners
        .iter()
        .map(|n| (format!("owner{n}"), public_b64(*n)))
        .collect();
    let owners: Vec<(&str, &str)> = owners
        .iter()
        .map(|(n, k)| (n.as_str(), k.as_str()))
        .collect();
    head(name, version, predecessor, &owners)
}

/// A policy named `name`, version `version` (with `predecessor` when given), owned by the
/// keys of `owners` with `approvals` required, readable by the keys of `readers`.
pub fn policy(
    name: &str,
    version: u64,
    predecessor: Option<SessionHash>,
    owners: &[u8],
    approvals: usize,
    readers: &[u8],
) -> String {
    let mut y = head_of_keys(name, version, predecessor, owners);
    if !readers.is_empty() {
        y.push_str("  read:\n");
        for n in readers {
            y.push_str(&format!(
                "    - name: reader{n}\n      key: {}\n",
                public_b64(*n)
            ));
        }
    }
    y.push_str(&format!("  update:\n    approvals: {approvals}\n"));
    y.push_str(&format!(
        "security:\n  tees: [sim]\nservices:\n  - name: app\n    attestation:\n      - measurements: [{MEASUREMENT}]\n"
    ));
    y
}

/// Sign `yaml` with the keys of `signers`.
pub fn signed(yaml: &str, signers: &[u8]) -> SignedPolicy {
    signers
        .iter()
        .fold(SignedPolicy::new(yaml), |p, n| p.signed_by(&key(*n)))
}

/// Sim claims with the fixture measurement, up to date, not debug.
pub fn sim_claims() -> Claims {
    let mut c = Claims::new(
        Tee::Sim,
        EvidenceFormat::Sim,
        hex::decode(MEASUREMENT).unwrap(),
        vec![0; 64],
    );
    c.tcb_status = cloister_attest::TcbStatus::UpToDate;
    c
}

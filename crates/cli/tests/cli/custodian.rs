//! The data custodian's offline commands: `keys`, `policy lint|schema|hash|sign|diff`.

use super::{cloister, json_of};
use cloister_policy::{Error, OwnerKey, SessionHash, SignedPolicy, authorize_create};
use std::path::Path;
use std::process::Output;

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run and require exit code `code`.
fn run(dir: &Path, args: &[&str], code: i32) -> Output {
    let out = cloister(args, dir);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{args:?}\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    out
}

/// `keys gen --json`: the public key (base64 SPKI DER) and fingerprint.
fn gen_key(dir: &Path, file: &str) -> (String, String) {
    let out = run(dir, &["keys", "gen", "--out", file, "--json"], 0);
    let v = json_of(&out);
    (
        v["public_key"].as_str().unwrap().to_string(),
        v["fingerprint"].as_str().unwrap().to_string(),
    )
}

const M1: &str = "5f3a9c0e1d2b4a6f8e7d9c0b1a2f3e4d5c6b7a8f9e0d1c2b3a4f5e6d7c8b9a0f";
const M2: &str = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1";
/// The app bundle digest the SGX policy pins (every service of a hardware policy pins one).
const BUNDLE: &str = "0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d";

/// A valid version-1 policy owned by `owners` (name, base64 key), `approvals` of them needed.
fn policy_v1(owners: &[(&str, &str)], approvals: usize) -> String {
    let mut yaml = String::from("name: demo/taxi\nversion: 1\naccess:\n  owners:\n");
    for (name, key) in owners {
        yaml.push_str(&format!("    - name: {name}\n      key: {key}\n"));
    }
    yaml.push_str(&format!(
        "  update:\n    approvals: {approvals}\n\
         security:\n  tees: [sgx]\n\
         services:\n  - name: driver\n    attestation:\n      - measurements: [{M1}]\n\
         \x20   env:\n      SPILL_KEY: $$cloister:spill_key:base64$$\n\
         \x20     CLOISTER_BUNDLE_DIGEST: {BUNDLE}\n\
         secrets:\n  - name: spill_key\n    kind: aes256\n"
    ));
    yaml
}

#[test]
fn keys_gen_writes_a_private_key_0600_and_never_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &["keys", "gen", "--out", "alice.pem", "--name", "alice"],
        0,
    );
    let pem = std::fs::read_to_string(dir.path().join("alice.pem")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let key = OwnerKey::from_pkcs8_pem(&pem).unwrap();
    let fingerprint = key.fingerprint().to_string();
    // The table shows the fingerprint and an owner entry ready for a policy.
    let table = stdout(&out);
    assert!(table.contains(&fingerprint), "{table}");
    assert!(
        table.contains("- {name: alice, key: MCowBQYDK2VwAyEA"),
        "{table}"
    );
    assert!(stderr(&out).starts_with("cloister: wrote alice.pem (private, 0600)"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("alice.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
    }

    // `keys show` agrees, on the private and on the public half.
    for file in ["alice.pem", "alice.pem.pub"] {
        let v = json_of(&run(dir.path(), &["keys", "show", file, "--json"], 0));
        assert_eq!(v["fingerprint"], fingerprint.as_str(), "{file}");
        assert_eq!(v["private"], file == "alice.pem");
    }

    // A second `gen` to the same file is refused and leaves the key alone.
    let out = run(dir.path(), &["keys", "gen", "--out", "alice.pem"], 2);
    assert_eq!(
        stderr(&out),
        "cloister: alice.pem exists; refusing to overwrite a key\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("alice.pem")).unwrap(),
        pem
    );
    // Also when only the public half is in the way.
    std::fs::write(dir.path().join("bob.pem.pub"), "x").unwrap();
    run(dir.path(), &["keys", "gen", "--out", "bob.pem"], 2);
    assert!(!dir.path().join("bob.pem").exists());
}

#[test]
fn keys_show_refuses_what_is_not_a_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("junk"), "hello").unwrap();
    let out = run(dir.path(), &["keys", "show", "junk"], 2);
    assert!(stderr(&out).starts_with("cloister: junk: not an owner key"));
}

#[test]
fn lint_accepts_a_valid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(dir.path(), "alice.pem");
    std::fs::write(dir.path().join("p.yaml"), policy_v1(&[("alice", &key)], 1)).unwrap();
    let out = run(dir.path(), &["policy", "lint", "p.yaml"], 0);
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "cloister: p.yaml: no problems\n");
    let out = run(dir.path(), &["policy", "lint", "p.yaml", "--json"], 0);
    assert_eq!(json_of(&out), serde_json::json!([]));
    // The shipped examples lint clean too.
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../policy/examples");
    for name in ["sim-demo.yaml", "production.yaml", "exporter.yaml"] {
        let path = format!("{examples}/{name}");
        run(dir.path(), &["policy", "lint", &path], 0);
    }
}

#[test]
fn lint_prints_each_problem_with_its_location_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(dir.path(), "alice.pem");
    let bad = policy_v1(&[("alice", &key)], 1)
        .replace(M1, "zz")
        .replace("spill_key:base64", "nope:base64");
    std::fs::write(dir.path().join("bad.yaml"), &bad).unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        policy_v1(&[("alice", &key)], 1),
    )
    .unwrap();

    let out = run(dir.path(), &["policy", "lint", "good.yaml", "bad.yaml"], 1);
    assert_eq!(
        stdout(&out),
        "bad.yaml:14:24: services[driver].attestation[0].measurements[0]: `zz` is not hex of 32 \
         or 48 bytes [rule: measurement-hex]\n\
         bad.yaml:16:18: services[driver].env.SPILL_KEY: placeholder names unknown secret `nope` \
         [rule: placeholder-secret]\n"
    );
    assert!(
        stderr(&out).ends_with("cloister: 2 problems\n"),
        "{}",
        stderr(&out)
    );

    let out = run(dir.path(), &["policy", "lint", "bad.yaml", "--json"], 1);
    let v = json_of(&out);
    assert_eq!(
        v[0],
        serde_json::json!({
            "file": "bad.yaml", "line": 14, "column": 24,
            "path": "services[driver].attestation[0].measurements[0]",
            "rule": "measurement-hex", "message": "`zz` is not hex of 32 or 48 bytes",
        })
    );
    assert_eq!(v[1]["rule"], "placeholder-secret");

    // A structural problem: one line, and the rule says which.
    std::fs::write(dir.path().join("typo.yaml"), bad.replace("tees:", "teees:")).unwrap();
    let out = run(dir.path(), &["policy", "lint", "typo.yaml"], 1);
    assert!(
        stdout(&out).starts_with("typo.yaml:10:3: ")
            && stdout(&out).ends_with("[rule: unknown-field]\n"),
        "{}",
        stdout(&out)
    );

    // A missing file is an operational error, not a verdict.
    run(dir.path(), &["policy", "lint", "nope.yaml"], 2);
}

#[test]
fn schema_is_json_schema() {
    let dir = tempfile::tempdir().unwrap();
    let v = json_of(&run(dir.path(), &["policy", "schema"], 0));
    assert_eq!(v["title"], "Cloister policy");
    assert_eq!(v, cloister_policy::json_schema());
    assert!(v["$schema"].as_str().unwrap().contains("json-schema.org"));
}

#[test]
fn hash_is_the_session_hash_of_the_yaml_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = gen_key(dir.path(), "alice.pem");
    let yaml = policy_v1(&[("alice", &key)], 1);
    std::fs::write(dir.path().join("p.yaml"), &yaml).unwrap();
    let want = format!("{}\n", SessionHash::of(&yaml));
    assert_eq!(
        stdout(&run(dir.path(), &["policy", "hash", "p.yaml"], 0)),
        want
    );
    // The signed form hashes to the same: the signature covers the YAML.
    run(
        dir.path(),
        &[
            "policy",
            "sign",
            "p.yaml",
            "--key",
            "alice.pem",
            "--out",
            "p.json",
        ],
        0,
    );
    assert_eq!(
        stdout(&run(dir.path(), &["policy", "hash", "p.json"], 0)),
        want
    );
}

fn read_signed(dir: &Path, file: &str) -> SignedPolicy {
    SignedPolicy::from_json(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

/// Two of two owners approve in turn; the result is what the CAS accepts.
#[test]
fn sign_and_append_collect_m_of_n_approvals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (alice, alice_fp) = gen_key(d, "alice.pem");
    let (bob, bob_fp) = gen_key(d, "bob.pem");
    gen_key(d, "carol.pem");
    std::fs::write(
        d.join("p.yaml"),
        policy_v1(&[("alice", &alice), ("bob", &bob)], 2),
    )
    .unwrap();

    // Alice signs: one approval of two is not enough yet.
    let out = run(
        d,
        &[
            "policy",
            "sign",
            "p.yaml",
            "--key",
            "alice.pem",
            "--out",
            "p.json",
        ],
        0,
    );
    assert!(
        stderr(&out).contains("by owner alice: 1 of the 2 owner approvals"),
        "{}",
        stderr(&out)
    );
    let signed = read_signed(d, "p.json");
    assert_eq!(signed.signatures.len(), 1);
    assert!(matches!(
        authorize_create(&signed),
        Err(Error::InsufficientApprovals { .. })
    ));

    // Bob appends his approval in place: now the CAS would accept it.
    let out = run(
        d,
        &["policy", "sign", "p.json", "--key", "bob.pem", "--append"],
        0,
    );
    assert!(stderr(&out).contains("2 of the 2 owner approvals"));
    assert_eq!(stdout(&out), "");
    let signed = read_signed(d, "p.json");
    let fps: Vec<String> = signed
        .signatures
        .iter()
        .map(|s| s.key_fingerprint.to_string())
        .collect();
    assert_eq!(fps, [alice_fp.clone(), bob_fp]);
    let policy = authorize_create(&signed).unwrap();
    for sig in &signed.signatures {
        let owner = policy.access().owner(&sig.key_fingerprint).unwrap();
        assert!(
            owner.key.verifies(&signed.hash(), &sig.sig),
            "{}",
            owner.name
        );
    }
    assert!(!d.join("p.json.tmp").exists());

    // The same key twice is refused, and the file is left alone.
    let before = std::fs::read(d.join("p.json")).unwrap();
    let out = run(
        d,
        &["policy", "sign", "p.json", "--key", "alice.pem", "--append"],
        2,
    );
    assert_eq!(
        stderr(&out),
        format!("cloister: p.json is already signed by this key (fingerprint {alice_fp})\n")
    );
    assert_eq!(std::fs::read(d.join("p.json")).unwrap(), before);

    // A signed file is appended to, never re-signed from scratch or overwritten.
    run(d, &["policy", "sign", "p.json", "--key", "carol.pem"], 2);
    run(
        d,
        &[
            "policy",
            "sign",
            "p.yaml",
            "--key",
            "carol.pem",
            "--out",
            "p.json",
        ],
        2,
    );
    // --append needs a signed file.
    run(
        d,
        &["policy", "sign", "p.yaml", "--key", "carol.pem", "--append"],
        2,
    );

    // A key that is not an owner may sign (it may own the current version) but is warned about.
    let out = run(
        d,
        &[
            "policy",
            "sign",
            "p.json",
            "--key",
            "carol.pem",
            "--append",
            "--out",
            "p3.json",
        ],
        0,
    );
    assert!(
        stderr(&out).starts_with("cloister: warning: key "),
        "{}",
        stderr(&out)
    );
    assert_eq!(read_signed(d, "p3.json").signatures.len(), 3);
    authorize_create(&read_signed(d, "p3.json")).unwrap();
}

#[test]
fn sign_without_out_prints_the_signed_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (alice, _) = gen_key(d, "alice.pem");
    std::fs::write(d.join("p.yaml"), policy_v1(&[("alice", &alice)], 1)).unwrap();
    let out = run(d, &["policy", "sign", "p.yaml", "--key", "alice.pem"], 0);
    let signed = SignedPolicy::from_json(&stdout(&out)).unwrap();
    authorize_create(&signed).unwrap();
    // The key may come from the environment (a file path, never the key itself).
    let out = cloister_env(
        d,
        &["policy", "sign", "p.yaml"],
        ("CLOISTER_OWNER_KEY_FILE", "alice.pem"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

fn cloister_env(dir: &Path, args: &[&str], env: (&str, &str)) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(args)
        .current_dir(dir)
        .env(env.0, env.1)
        .output()
        .unwrap()
}

#[test]
fn sign_refuses_invalid_and_tampered_policies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (alice, _) = gen_key(d, "alice.pem");
    let (bob, _) = gen_key(d, "bob.pem");
    let yaml = policy_v1(&[("alice", &alice), ("bob", &bob)], 2);

    std::fs::write(d.join("bad.yaml"), yaml.replace(M1, "zz")).unwrap();
    let out = run(d, &["policy", "sign", "bad.yaml", "--key", "alice.pem"], 1);
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("[rule: measurement-hex]"));

    // The YAML changed after Alice signed: Bob's approval is refused.
    std::fs::write(d.join("p.yaml"), &yaml).unwrap();
    run(
        d,
        &[
            "policy",
            "sign",
            "p.yaml",
            "--key",
            "alice.pem",
            "--out",
            "p.json",
        ],
        0,
    );
    let mut signed = read_signed(d, "p.json");
    signed.yaml = signed.yaml.replace(M1, M2);
    std::fs::write(d.join("p.json"), signed.to_json()).unwrap();
    let out = run(
        d,
        &["policy", "sign", "p.json", "--key", "bob.pem", "--append"],
        1,
    );
    assert!(
        stderr(&out).contains("the signature of owner alice does not verify"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn diff_shows_text_and_the_changes_that_matter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (alice, _) = gen_key(d, "alice.pem");
    let (bob, bob_fp) = gen_key(d, "bob.pem");
    let v1 = policy_v1(&[("alice", &alice)], 1);
    std::fs::write(d.join("v1.yaml"), &v1).unwrap();
    run(
        d,
        &[
            "policy",
            "sign",
            "v1.yaml",
            "--key",
            "alice.pem",
            "--out",
            "v1.json",
        ],
        0,
    );
    let v2 = v1
        .replace(
            "version: 1\n",
            &format!("version: 2\npredecessor: {}\n", SessionHash::of(&v1)),
        )
        .replace(
            "  update:",
            &format!("    - name: bob\n      key: {bob}\n  update:"),
        )
        .replace("tees: [sgx]", "tees: [sgx, sim]\n  tolerate: [debug]")
        .replace(M1, M2)
        .replace(
            "    kind: aes256\n",
            &format!(
                "    kind: aes256\n  - name: token\n    kind: ascii\nexport:\n  - secret: spill_key\n    \
                 to:\n      - session: demo/reports\n        owners: [{bob_fp}]\n"
            ),
        );
    std::fs::write(d.join("v2.yaml"), &v2).unwrap();
    run(d, &["policy", "lint", "v2.yaml"], 0);

    // OLD may be the signed form: it is its YAML that is compared and hashed.
    let out = run(d, &["policy", "diff", "v1.json", "v2.yaml"], 0);
    let text = stdout(&out);
    assert!(
        text.starts_with("--- v1.json\n+++ v2.yaml\n@@ -1,"),
        "{text}"
    );
    for line in [
        "\n-version: 1\n",
        "\n+version: 2\n",
        &format!("\n-      - measurements: [{M1}]\n"),
        &format!("\n+      - measurements: [{M2}]\n"),
        "\nchanges that matter:\n",
        &format!(
            "\npredecessor: v2.yaml names {}, the session hash of v1.json (matches)\n",
            SessionHash::of(&v1)
        ),
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    for row in [
        "sim accepted",
        "debug tolerated",
        &format!("measurement {M2} pinned"),
        &format!("measurement {M1} unpinned"),
        &format!("owner bob (key {bob_fp}) added"),
        "1 of 1 owners → 1 of 2 owners",
        "secret added (ascii)",
        "spill_key exported to demo/reports",
    ] {
        assert!(text.contains(row), "missing {row:?} in\n{text}");
    }

    let v = json_of(&run(
        d,
        &["policy", "diff", "v1.yaml", "v2.yaml", "--json", "--check"],
        0,
    ));
    assert_eq!(v["predecessor_matches"], true);
    assert_eq!(v["follows"], true);
    assert_eq!(v["old"]["version"], 1);
    assert_eq!(v["new"]["predecessor"], SessionHash::of(&v1).to_string());
    let changes = v["changes"].as_array().unwrap();
    assert!(changes.contains(&serde_json::json!({
        "change": "added", "path": "services[driver].attestation",
        "detail": format!("measurement {M2} pinned"),
    })));
    assert!(changes.contains(&serde_json::json!({
        "change": "added", "path": "security.tees", "detail": "sim accepted",
    })));
    assert!(v["diff"].as_str().unwrap().contains("+version: 2\n"));

    // Backwards it is not a successor: shown as such, and --check refuses it.
    let out = run(d, &["policy", "diff", "v2.yaml", "v1.yaml"], 0);
    assert!(stdout(&out).contains("predecessor: v1.yaml names none (a version 1)"));
    assert!(stdout(&out).contains("sim no longer accepted"));
    let out = run(d, &["policy", "diff", "v2.yaml", "v1.yaml", "--check"], 1);
    assert!(stderr(&out).starts_with("cloister: refused: v1.yaml is not the successor"));

    // A stale predecessor is called out.
    let stale = v2.replace(&SessionHash::of(&v1).to_string(), &"0".repeat(64));
    std::fs::write(d.join("stale.yaml"), stale).unwrap();
    let out = run(
        d,
        &["policy", "diff", "v1.yaml", "stale.yaml", "--check"],
        1,
    );
    assert!(
        stdout(&out).contains("(does NOT match)"),
        "{}",
        stdout(&out)
    );

    // An invalid version still gets its text diff.
    std::fs::write(d.join("bad.yaml"), v2.replace(M2, "zz")).unwrap();
    let out = run(d, &["policy", "diff", "v2.yaml", "bad.yaml", "--json"], 0);
    let v = json_of(&out);
    assert_eq!(v["changes"], serde_json::Value::Null);
    assert!(
        v["diff"]
            .as_str()
            .unwrap()
            .contains("+      - measurements: [zz]")
    );
    assert!(stderr(&out).contains("bad.yaml is not a valid policy"));
}

#[test]
fn help_has_examples() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        &["keys", "gen"][..],
        &["keys", "show"],
        &["policy", "lint"],
        &["policy", "sign"],
        &["policy", "diff"],
        &["policy", "hash"],
        &["policy", "schema"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let help = stdout(&run(dir.path(), &args, 0));
        assert!(help.contains("Example"), "{cmd:?}: {help}");
    }
}

//! `cloister cas serve` as a real process, driven by the custodian commands and a sim workload.

use super::cas_process::{
    CasProcess, MEASUREMENT, collector, platform, run, runtime, sim_policy, text,
};
use super::json_of;
use cloister_cas::envelope::WorkloadKey;
use cloister_policy::SessionHash;
use cloister_testkit::canary::{self, contains};
use cloister_testkit::cas::attest_driver;
use secrecy::ExposeSecret as _;
use std::path::Path;

/// `keys gen --json`: the public key (base64 SPKI DER).
fn gen_key(dir: &Path, file: &str) -> String {
    let out = run(dir, &["keys", "gen", "--out", file, "--json"], 0);
    json_of(&out)["public_key"].as_str().unwrap().to_owned()
}

#[test]
fn custodians_and_a_sim_workload_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let alice = gen_key(d, "alice.pem");
    let bob = gen_key(d, "bob.pem");
    gen_key(d, "stranger.pem");
    let platform = platform(d);
    let owners = [("alice", alice.as_str()), ("bob", bob.as_str())];
    let v1 = sim_policy("e2e/app", 1, None, &owners, 2);
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

    let cas = CasProcess::start(d, &[], &[]);
    let stderr = text(&std::fs::read(&cas.stderr_log).unwrap());
    assert!(
        stderr.contains(&format!("cloister: CAS listening on {}\n", cas.url)),
        "{stderr}"
    );
    assert!(stderr.contains("cloister: certificate "), "{stderr}");

    // One approval of the two the policy asks for: refused, naming the rule.
    // The operator makes the namespace, owned by alice, with the admin key.
    run(
        d,
        &cas.args(&[
            "namespace",
            "create",
            "e2e",
            "--owner",
            "alice=alice.pem.pub",
            "--key",
            "admin.pem",
        ]),
        0,
    );
    // Without a namespace owner's approval, a creation is refused here.
    let out = run(d, &cas.args(&["policy", "push", "v1.json"]), 2);
    assert!(
        text(&out.stderr).contains("--key NSOWNER.pem"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        d,
        &cas.args(&["policy", "push", "v1.json", "--key", "alice.pem"]),
        1,
    );
    let err = text(&out.stderr);
    assert!(
        err.starts_with("cloister: refused by the CAS (403 session-refused, rule approvals)"),
        "{err}"
    );
    assert!(err.contains("\ncloister:   approvals: "), "{err}");

    // Bob approves offline; the push creates the session.
    run(
        d,
        &["policy", "sign", "v1.json", "--key", "bob.pem", "--append"],
        0,
    );
    let out = run(
        d,
        &cas.args(&["policy", "push", "v1.json", "--key", "alice.pem", "--json"]),
        0,
    );
    let pushed = json_of(&out);
    let h1 = SessionHash::of(&v1);
    assert_eq!(pushed["action"], "created");
    assert_eq!(pushed["version"], 1);

    // The namespace: its owner reads it; only the admin key changes it, and not while it
    // holds a session.
    let shown = json_of(&run(
        d,
        &cas.args(&["namespace", "show", "e2e", "--key", "alice.pem", "--json"]),
        0,
    ));
    assert_eq!(
        (shown["sessions"].as_u64(), shown["version"].as_u64()),
        (Some(1), Some(1))
    );
    let out = run(
        d,
        &cas.args(&[
            "namespace",
            "create",
            "mine",
            "--owner",
            "bob=bob.pem.pub",
            "--key",
            "bob.pem",
        ]),
        1,
    );
    assert!(
        text(&out.stderr).contains("rule unauthorised"),
        "{}",
        text(&out.stderr)
    );
    let out = run(
        d,
        &cas.args(&["namespace", "delete", "e2e", "--key", "admin.pem"]),
        1,
    );
    assert!(
        text(&out.stderr).contains("rule not-empty"),
        "{}",
        text(&out.stderr)
    );
    let updated = json_of(&run(
        d,
        &cas.args(&[
            "namespace",
            "update",
            "e2e",
            "--quota",
            "5",
            "--key",
            "admin.pem",
            "--json",
        ]),
        0,
    ));
    assert_eq!(updated["session_quota"], 5);
    let listed = json_of(&run(
        d,
        &cas.args(&["namespace", "list", "--key", "admin.pem", "--json"]),
        0,
    ));
    assert_eq!(listed["namespaces"][0]["name"], "e2e");
    let help = text(&run(d, &["namespace", "create", "--help"], 0).stdout);
    assert!(help.contains("Example:"), "{help}");
    assert_eq!(pushed["hash"], h1.to_string());

    // Owners read back the exact bytes they signed; others see nothing.
    let out = run(
        d,
        &cas.args(&["policy", "get", "e2e/app", "--key", "alice.pem"]),
        0,
    );
    assert_eq!(text(&out.stdout), v1);
    let view = json_of(&run(
        d,
        &cas.args(&["policy", "get", "e2e/app", "--key", "bob.pem", "--json"]),
        0,
    ));
    assert_eq!(view["version"], 1);
    assert_eq!(view["signatures"].as_array().unwrap().len(), 2);
    let list = json_of(&run(
        d,
        &cas.args(&["policy", "list", "--key", "bob.pem", "--json"]),
        0,
    ));
    assert_eq!(list["sessions"][0]["name"], "e2e/app");
    let list = json_of(&run(
        d,
        &cas.args(&["policy", "list", "--key", "stranger.pem", "--json"]),
        0,
    ));
    assert_eq!(list["sessions"], serde_json::json!([]));
    let out = run(
        d,
        &cas.args(&["policy", "get", "e2e/app", "--key", "stranger.pem"]),
        1,
    );
    assert!(
        text(&out.stderr).contains("(403 forbidden, rule read)"),
        "{}",
        text(&out.stderr)
    );

    // A sim workload attests, opens its configuration, and its certificate chains to the
    // session CA.
    let rt = runtime();
    let client = cas.client();
    let key = WorkloadKey::generate().unwrap();
    let attested = rt
        .block_on(attest_driver(
            &client,
            "e2e/app",
            &key,
            &collector(&platform, &MEASUREMENT),
        ))
        .unwrap();
    let config = &attested.config;
    assert_eq!(config.session_hash, h1.to_string());
    assert_eq!(
        config.env["API_TOKEN"].expose_secret(),
        super::cas_process::CANARY
    );
    assert_eq!(config.env["DB_PASSWORD"].expose_secret().len(), 32);
    assert_eq!(config.env["DATA_KEY"].expose_secret().len(), 64);
    let leaf = pem_der(&attested.certificate_pem);
    let ca = pem_der(&attested.ca_pem);
    let (_, leaf) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    let (_, ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(leaf.issuer(), ca.subject());
    assert_eq!(leaf.public_key().raw, key.spki_der().as_slice());
    assert!(ca.subject().to_string().contains("Process test session CA"));
    // The chain file the workload gets holds the same CA.
    let chain = config
        .files
        .iter()
        .find(|f| f.path.ends_with("cert.pem"))
        .unwrap();
    assert!(
        chain
            .content
            .expose_secret()
            .contains(attested.ca_pem.trim())
    );

    // Version 2, approved by both; then a version 3 that names version 1 as its predecessor
    // (written from an old copy) is stale.
    let v2 = sim_policy("e2e/app", 2, Some(h1), &owners, 2);
    let stale = sim_policy("e2e/app", 3, Some(h1), &owners, 2);
    for (file, yaml) in [("v2", &v2), ("stale", &stale)] {
        std::fs::write(d.join(format!("{file}.yaml")), yaml).unwrap();
        let json = format!("{file}.json");
        run(
            d,
            &[
                "policy",
                "sign",
                &format!("{file}.yaml"),
                "--key",
                "alice.pem",
                "--out",
                &json,
            ],
            0,
        );
        run(
            d,
            &["policy", "sign", &json, "--key", "bob.pem", "--append"],
            0,
        );
    }
    let out = run(d, &cas.args(&["policy", "push", "v2.json"]), 0);
    assert!(
        text(&out.stderr).starts_with("cloister: updated e2e/app version 2"),
        "{}",
        text(&out.stderr)
    );
    let out = run(d, &cas.args(&["policy", "push", "stale.json"]), 1);
    let err = text(&out.stderr);
    assert!(
        err.starts_with("cloister: refused by the CAS (409 conflict, rule predecessor)"),
        "{err}"
    );

    // The audit log verifies through the API and offline, and tells the story.
    run(d, &cas.audit_args(&["audit", "verify"]), 0);
    let out = run(
        d,
        &[
            "audit",
            "verify",
            "--data",
            "data",
            "--master-key",
            "master.key",
            "--json",
        ],
        0,
    );
    assert_eq!(json_of(&out)["verified"], true);
    let entries = json_of(&run(
        d,
        &cas.audit_args(&["audit", "tail", "-n", "1000", "--json"]),
        0,
    ));
    let kinds: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "session_change_refused",
        "session_created",
        "attestation_passed",
        "session_updated",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let out = run(d, &cas.audit_args(&["audit", "tail", "-n", "2"]), 0);
    assert!(
        text(&out.stdout).contains("session_change_refused"),
        "{}",
        text(&out.stdout)
    );
    // Unsigned reads are refused; an owner reads its session's entries (each verified on its
    // own), a stranger reads none.
    let out = run(d, &cas.args(&["audit", "tail"]), 2);
    assert!(
        text(&out.stderr).contains("--cas needs --key"),
        "{}",
        text(&out.stderr)
    );
    let mine = json_of(&run(
        d,
        &cas.args(&[
            "audit",
            "tail",
            "-n",
            "1000",
            "--json",
            "--key",
            "alice.pem",
        ]),
        0,
    ));
    let mine = mine.as_array().unwrap();
    assert!(!mine.is_empty());
    assert!(mine.iter().all(|e| e["session"] == "e2e/app"), "{mine:?}");
    assert!(mine.len() < entries.as_array().unwrap().len());
    let none = json_of(&run(
        d,
        &cas.args(&["audit", "tail", "--json", "--key", "stranger.pem"]),
        0,
    ));
    assert_eq!(none, serde_json::json!([]));
    let out = run(
        d,
        &cas.args(&["audit", "verify", "--json", "--key", "alice.pem"]),
        0,
    );
    assert_eq!(json_of(&out)["scope"], "visible");
    assert_eq!(json_of(&out)["entries"], mine.len());
    let out = run(d, &cas.audit_args(&["audit", "tail", "-n", "2"]), 0);
    assert!(
        text(&out.stdout).contains("session_change_refused"),
        "{}",
        text(&out.stdout)
    );

    // Deleting takes both owners.
    let out = run(
        d,
        &cas.args(&["policy", "delete", "e2e/app", "--key", "alice.pem"]),
        1,
    );
    assert!(text(&out.stderr).contains("rule approvals"));
    run(
        d,
        &cas.args(&[
            "policy",
            "delete",
            "e2e/app",
            "--key",
            "alice.pem",
            "--key",
            "bob.pem",
        ]),
        0,
    );
    let out = run(
        d,
        &cas.args(&["policy", "get", "e2e/app", "--key", "alice.pem"]),
        1,
    );
    assert!(text(&out.stderr).contains("(404 not-found)"));
}

fn pem_der(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[test]
fn serve_logs_json_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cas = CasProcess::start(d, &[], &["--log-format", "json"]);

    // A second CAS on the same data directory is refused, and leaves the first one's address.
    let second = super::cloister(
        &[
            "cas",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data",
            "data",
            "--master-key-file",
            "master.key",
        ],
        d,
    );
    assert_eq!(second.status.code(), Some(2), "{}", text(&second.stderr));
    assert!(cas.data.join("cas.addr").exists());
    run(d, &cas.audit_args(&["audit", "verify"]), 0);

    let status = cas.terminate();
    assert_eq!(status.code(), Some(0));
    assert!(!cas.data.join("cas.addr").exists());
    let log = text(&std::fs::read(&cas.stderr_log).unwrap());
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let ready = lines.iter().find(|l| l["ready"] == true).unwrap();
    assert_eq!(ready["url"], cas.url.as_str());
    assert_eq!(ready["certificate_sha256"].as_str().unwrap().len(), 64);
    let messages: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["fields"]["message"].as_str())
        .collect();
    assert!(messages.contains(&"CAS stopped"), "{messages:?}");
}

/// The flag that trusts a sim key was renamed to say it is insecure; the old name is refused
/// with a message naming the new one, before anything is created.
#[test]
fn serve_refuses_the_old_sim_platform_key_flag() {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        dir.path(),
        &[
            "cas",
            "serve",
            "--data",
            "data",
            "--sim-platform-key",
            "p.pub",
        ],
        2,
    );
    let err = text(&out.stderr);
    assert!(
        err.starts_with("cloister: refusing --sim-platform-key")
            && err.contains("--insecure-sim-platform-key"),
        "{err}"
    );
    assert!(!dir.path().join("data").exists());
}

#[test]
fn serve_refuses_a_master_key_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let key = "42".repeat(32);
    let out = run(
        dir.path(),
        &["cas", "serve", "--data", "data", "--master-key", &key],
        2,
    );
    let err = text(&out.stderr);
    assert!(err.starts_with("cloister: refusing --master-key"), "{err}");
    assert!(!err.contains(&key));
    assert!(!dir.path().join("data").exists());
    // Without a key from a file or the environment, it says where a key comes from.
    let out = run(dir.path(), &["cas", "serve", "--data", "data"], 2);
    assert!(text(&out.stderr).contains("CLOISTER_MASTER_KEY"));
    // A key file and the variable both: refused, so that no key is left in the environment.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["cas", "serve", "--data", "data", "--master-key-file", "k"])
        .current_dir(dir.path())
        .env("CLOISTER_MASTER_KEY", &key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("both --master-key-file and CLOISTER_MASTER_KEY"),
        "{err}"
    );
    assert!(!err.contains(&key));
    // `cas init` never overwrites a key.
    run(
        dir.path(),
        &["cas", "init", "--data", "data", "--master-key-file", "k"],
        0,
    );
    let before = std::fs::read(dir.path().join("k")).unwrap();
    run(
        dir.path(),
        &["cas", "init", "--data", "data", "--master-key-file", "k"],
        2,
    );
    assert_eq!(std::fs::read(dir.path().join("k")).unwrap(), before);
    // The admin key is set later with the same key file; setting it again changes nothing.
    gen_key(dir.path(), "admin.pem");
    let init_admin = [
        "cas",
        "init",
        "--data",
        "data",
        "--master-key-file",
        "k",
        "--admin-key",
        "admin.pem.pub",
    ];
    let out = run(dir.path(), &init_admin, 0);
    assert!(
        text(&out.stderr).contains("cloister: set the admin key, fingerprint "),
        "{}",
        text(&out.stderr)
    );
    let out = run(dir.path(), &init_admin, 0);
    assert!(
        text(&out.stderr).contains("admin key unchanged"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read(dir.path().join("k")).unwrap(), before);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("k"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// A key from `CLOISTER_MASTER_KEY` is read once: the serving process (the same pid, re-executed)
/// no longer has it in `/proc/PID/environ`, and it opens the store that key protects.
#[test]
fn serve_removes_the_master_key_from_its_environment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut cas = CasProcess::start_keyed(d, &[], &[], false);
    let hex = std::fs::read_to_string(d.join("master.key")).unwrap();
    let environ = std::fs::read(format!("/proc/{}/environ", cas.pid())).unwrap();
    assert!(
        !contains(&environ, b"CLOISTER_MASTER_KEY"),
        "still in the environment"
    );
    // The key is not in the environment.
    canary::assert_absent(&environ, hex.trim());
    // The rest of the environment stays, and the process is the one started.
    assert!(contains(&environ, b"CANARY_TOKEN="));
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", cas.pid())).unwrap();
    assert!(contains(&cmdline, b"--master-key-stdin"));
    runtime().block_on(cas.client().nonce()).unwrap();
    assert_eq!(cas.terminate().code(), Some(0));
    // The store it made opens with the key file: the key handed over was the right one.
    let cas = CasProcess::start(d, &[], &[]);
    runtime().block_on(cas.client().nonce()).unwrap();
    // The internal flag with nothing on stdin is an error, not a CAS without a key.
    let out = super::cloister(&["cas", "serve", "--data", "data", "--master-key-stdin"], d);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

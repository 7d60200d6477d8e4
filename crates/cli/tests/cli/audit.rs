//! `cloister audit verify|tail` on logs written by the CAS crate, intact and tampered with.

use super::{cloister, json_of};
use cloister_cas::MasterKey;
use cloister_cas::audit::{self, AuditLog, AuditSigner, Event, EventKind};
use rstest::rstest;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, SystemTime};

const MASTER_HEX: &str = "0909090909090909090909090909090909090909090909090909090909090909";

fn master() -> MasterKey {
    MasterKey::from_hex(MASTER_HEX, "test").unwrap()
}

/// A CAS data directory `dir/data` with an audit log of `n` entries; returns the public key hex.
fn write_log(dir: &Path, n: u64) -> String {
    let data = dir.join("data");
    let log = AuditLog::open(&data, AuditSigner::from_master_key(&master()).unwrap()).unwrap();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    for i in 1..=n {
        let event = if i % 2 == 0 {
            Event::new(EventKind::AttestationRefused)
                .session(format!("s{i}"))
                .version(2)
                .service("executor")
                .principal(audit::key_digest(format!("spki-{i}").as_bytes()))
                .reason(format!("rule {i}"))
                .reason("tee sim")
        } else {
            Event::new(EventKind::SecretReleased)
                .session(format!("s{i}"))
                .service("driver")
                .principal(audit::key_digest(format!("spki-{i}").as_bytes()))
                .released("spill_key")
        };
        log.append_at(&event, t0 + Duration::from_secs(i)).unwrap();
    }
    log.public_key().to_hex()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[test]
fn verify_an_intact_log_with_each_source_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 5);
    let last_hash = std::fs::read_to_string(dir.path().join("data/audit.log"))
        .unwrap()
        .lines()
        .last()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["hash"].clone())
        .unwrap();

    // Pinned as hex: no warning.
    let out = cloister(
        &[
            "audit",
            "verify",
            "--data",
            "data",
            "--public-key",
            &public,
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let v = json_of(&out);
    assert_eq!(
        v,
        serde_json::json!({
            "verified": true, "entries": 5, "head_seq": 5, "last_hash": last_hash,
            "beyond_head": 0, "torn_tail_bytes": 0, "public_key": public,
        })
    );

    // Pinned as a file outside the data directory; the table has the summary.
    std::fs::write(dir.path().join("cas-audit.pub"), format!("{public}\n")).unwrap();
    let out = cloister(
        &[
            "audit",
            "verify",
            "--data",
            "data",
            "--public-key",
            "cas-audit.pub",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("entries") && table.contains(" 5 "),
        "{table}"
    );
    assert!(table.contains(last_hash.as_str().unwrap()), "{table}");
    assert_eq!(stderr(&out), "cloister: audit log verified: 5 entries\n");

    // Derived from the master key.
    master()
        .write_new_file(&dir.path().join("master.key"))
        .unwrap();
    let out = cloister(
        &[
            "audit",
            "verify",
            "--data",
            "data",
            "--master-key",
            "master.key",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(json_of(&out)["public_key"], public.as_str());

    // From the data directory itself: works, with a warning.
    let out = cloister(&["audit", "verify", "--data", "data"], dir.path());
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("cloister: warning: using the public key in data/audit.pub"),
        "{}",
        stderr(&out)
    );
}

#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// Change entry k's session name.
    Modify(usize),
    /// Re-serialise entry k with a space (same content, other bytes).
    Reformat(usize),
    /// Delete entry k.
    Remove(usize),
    /// Swap entries k and k+1.
    Reorder(usize),
    /// Keep the first k entries.
    Truncate(usize),
    /// Make the head claim fewer entries.
    EditHead,
}

fn apply(data: &Path, tamper: Tamper) {
    let path = data.join(audit::LOG_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match tamper {
        Tamper::Modify(k) => lines[k - 1] = lines[k - 1].replace(&format!("\"s{k}\""), "\"sX\""),
        Tamper::Reformat(k) => lines[k - 1] = lines[k - 1].replacen(",\"", ", \"", 1),
        Tamper::Remove(k) => {
            lines.remove(k - 1);
        }
        Tamper::Reorder(k) => lines.swap(k - 1, k),
        Tamper::Truncate(k) => lines.truncate(k),
        Tamper::EditHead => {
            let head = data.join(audit::HEAD_FILE);
            let text = std::fs::read_to_string(&head).unwrap();
            std::fs::write(&head, text.replace("\"seq\":5", "\"seq\":4")).unwrap();
        }
    }
    let mut out = lines.join("\n");
    if !lines.is_empty() {
        out.push('\n');
    }
    std::fs::write(&path, out).unwrap();
}

/// Each way of tampering has its own exit code, as `--help` documents.
#[rstest]
#[case::modified(Tamper::Modify(3), 10, "modified", "audit entry 3 was modified")]
#[case::reformatted(Tamper::Reformat(2), 10, "modified", "audit entry 2 was modified")]
#[case::removed(Tamper::Remove(3), 11, "removed", "removed after entry 2")]
#[case::removed_first(Tamper::Remove(1), 11, "removed", "removed after entry 0")]
#[case::reordered(Tamper::Reorder(2), 12, "reordered", "audit entry 2 is out of order")]
#[case::truncated(
    Tamper::Truncate(3),
    13,
    "truncated",
    "covers entry 5, the log ends at 3"
)]
#[case::emptied(Tamper::Truncate(0), 13, "truncated", "the log ends at 0")]
#[case::head_edited(Tamper::EditHead, 14, "head", "audit head")]
fn tampering_exits_with_its_own_code(
    #[case] tamper: Tamper,
    #[case] exit: i32,
    #[case] name: &str,
    #[case] message: &str,
) {
    let dir = tempfile::tempdir().unwrap();
    let public = write_log(dir.path(), 5);
    apply(&dir.path().join("data"), tamper);
    let args = ["audit", "verify", "--data", "data", "--public-key", &public];
    let out = cloister(&args, dir.path());
    assert_eq!(code(&out), Some(exit), "{tamper:?}: {}", stderr(&out));
    assert_eq!(out.stdout, b"");
    assert!(
        stderr(&out).starts_with("cloister: audit log failed verification: ")
            && stderr(&out).contains(message),
        "{tamper:?}: {}",
        stderr(&out)
    );

    let out = cloister(&[&args[..], &["--json"]].concat(), dir.path());
    assert_eq!(code(&out), Some(exit));
    let v = json_of(&out);
    assert_eq!(v["verified"], false);
    assert_eq!(v["error"]["code"], name);
    assert_eq!(v["error"]["exit_code"], exit);
}

#[test]
fn wrong_key_and_unreadable_logs() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 2);
    // Another CAS's key: the head does not verify (14).
    let other = AuditSigner::from_master_key(&MasterKey::from_hex(&"0a".repeat(32), "t").unwrap())
        .unwrap()
        .public_key()
        .to_hex();
    let out = cloister(
        &["audit", "verify", "--data", "data", "--public-key", &other],
        dir.path(),
    );
    assert_eq!(code(&out), Some(14), "{}", stderr(&out));
    // A directory without a log (and without audit.pub) is an operational error (2).
    std::fs::create_dir(dir.path().join("empty")).unwrap();
    let out = cloister(&["audit", "verify", "--data", "empty"], dir.path());
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    // So is a key that is not one.
    let out = cloister(
        &["audit", "verify", "--data", "data", "--public-key", "abcd"],
        dir.path(),
    );
    assert_eq!(code(&out), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).starts_with("cloister: "));
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(&["audit", "verify", "--help"], dir.path());
    let help = String::from_utf8_lossy(&out.stdout);
    for line in [
        "10  modified",
        "11  removed",
        "12  reordered",
        "13  truncated",
        "14  head",
        "Example",
    ] {
        assert!(help.contains(line), "{line}: {help}");
    }
    let out = cloister(&["audit", "tail", "--help"], dir.path());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Example"));
}

#[test]
fn tail_shows_the_last_entries() {
    let dir = tempfile::tempdir().unwrap();
    write_log(dir.path(), 5);
    let out = cloister(&["audit", "tail", "--data", "data", "-n", "2"], dir.path());
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    for cell in [
        "seq",
        "principal",
        "reasons",
        "attestation_refused",
        "secret_released",
        "s4 v2",
        "s5",
        "executor",
        "spill_key",
        "rule 4; tee sim",
        "2027-01-15T08:00:05.000Z",
        &format!("{}…", &audit::key_digest(b"spki-4")[..12]),
    ] {
        assert!(table.contains(cell), "missing {cell:?} in\n{table}");
    }
    assert!(!table.contains("s3"), "{table}");

    let out = cloister(
        &["audit", "tail", "--data", "data", "-n", "3", "--json"],
        dir.path(),
    );
    let v = json_of(&out);
    let seqs: Vec<u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(v[1]["kind"], "attestation_refused");
    assert_eq!(v[1]["principal"], audit::key_digest(b"spki-4"));

    // More than there are: all of them.
    let v = json_of(&cloister(
        &["audit", "tail", "--data", "data", "-n", "99", "--json"],
        dir.path(),
    ));
    assert_eq!(v.as_array().unwrap().len(), 5);

    let out = cloister(&["audit", "tail", "--data", "nowhere"], dir.path());
    assert_eq!(code(&out), Some(2));
    assert!(stderr(&out).starts_with("cloister: no audit log in nowhere"));
}

/// `cloister audit tail --json | head` must exit 0, not report the closed pipe.
#[test]
fn regression_broken_pipe_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    // Far more output than a pipe buffers (64 KiB), so the write must meet the closed pipe.
    write_log(dir.path(), 400);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cloister"))
        .args(["audit", "tail", "--data", "data", "-n", "400", "--json"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), Some(0), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

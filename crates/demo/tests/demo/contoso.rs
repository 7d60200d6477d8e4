//! `cloister demo contoso` and `cloister keys cek`, end to end with the built binary: the
//! statistics match the CSV, the importer reads what the exporter wrote, the refusals name their
//! rules, no plaintext SSN or salary is in the SQLite files or a `pg_dump`, and cells cross
//! between Cloister and the independent Python peer (`colenc/tests/peer/ae_peer.py`) both ways.
//!
//! Python is `$CLOISTER_PYTHON` if set, else `python3`; without `cryptography` the Python checks
//! fail under `CI=true` and are skipped (reason on stderr) otherwise.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use super::{cloister, json_of};
use cloister_testkit::pg::Cluster;

const CMK_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
);
const CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/contosohr-employees.csv"
);
const PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/demo/peer/contoso_peer.py"
);
const AE_PEER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../colenc/tests/peer/ae_peer.py"
);

struct Employee {
    id: i64,
    ssn: String,
    salary: i64,
}

fn employees() -> Vec<Employee> {
    std::fs::read_to_string(CSV)
        .unwrap()
        .lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            Employee {
                id: f[0].parse().unwrap(),
                ssn: f[1].to_owned(),
                salary: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// `percentile_cont`: linear interpolation between the closest ranks.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = p * (sorted.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
}

/// The statistics the demo must report, from the CSV.
fn expected_statistics() -> Vec<(String, f64)> {
    let people = employees();
    let mut s: Vec<f64> = people.iter().map(|e| e.salary as f64).collect();
    s.sort_by(f64::total_cmp);
    let mut out = vec![
        ("count".to_owned(), s.len() as f64),
        ("min".to_owned(), s[0]),
        ("max".to_owned(), s[s.len() - 1]),
        ("average".to_owned(), s.iter().sum::<f64>() / s.len() as f64),
        ("p25".to_owned(), percentile(&s, 0.25)),
        ("median".to_owned(), percentile(&s, 0.5)),
        ("p75".to_owned(), percentile(&s, 0.75)),
        ("p90".to_owned(), percentile(&s, 0.9)),
    ];
    let mut bands: BTreeMap<i64, u32> = BTreeMap::new();
    for e in &people {
        *bands.entry(e.salary / 20_000 * 20_000).or_default() += 1;
    }
    for (low, n) in bands {
        out.push((format!("band {low}-{}", low + 19_999), f64::from(n)));
    }
    out
}

fn statistics_of(v: &Value) -> Vec<(String, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["statistic"].as_str().unwrap().to_owned(),
                s["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn assert_statistics(got: &[(String, f64)]) {
    let want = expected_statistics();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((gn, gv), (wn, wv)) in got.iter().zip(&want) {
        assert_eq!(gn, wn);
        // DataFusion's percentile_cont interpolates in its own float steps: within a cent.
        assert!((gv - wv).abs() < 0.01, "{gn}: {gv} != {wv}");
    }
}

/// Check the flow's JSON report.
fn check_report(report: &Value, database: &str, cmk: &str) {
    assert_eq!(report["database"], database);
    assert_eq!(report["cmk"], cmk);
    assert_eq!(report["loaded_rows"], 270);
    assert_statistics(&statistics_of(&report["statistics"]));
    assert_eq!(report["imported_read"], report["statistics"]);
    let sessions: Vec<(&str, u64)> = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["session"].as_str().unwrap(),
                s["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sessions,
        [
            ("contoso/hr", 1),
            ("contoso/payroll", 1),
            ("contoso/rogue", 1),
            ("contoso/hr", 2)
        ]
    );
    let refusals: Vec<(&str, &str)> = report["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["session"].as_str().unwrap(), r["rule"].as_str().unwrap()))
        .collect();
    assert_eq!(
        refusals,
        [
            ("contoso/rogue", "export"),
            ("contoso/payroll", "import-hash")
        ]
    );
    // The audit log: the importer was released CEK1 and never CMK1; the refused got nothing.
    let audit = report["audit"].as_array().unwrap();
    let payroll = audit
        .iter()
        .find(|r| r["session"] == "contoso/payroll" && r["verdict"] == "passed")
        .unwrap();
    let released: Vec<&str> = payroll["released"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(released.contains(&"secret:CEK1") && !released.contains(&"secret:CMK1"));
    assert!(
        audit
            .iter()
            .filter(|r| r["verdict"] == "refused")
            .all(|r| r["released"].as_array().unwrap().is_empty())
    );
    let stale = report["refusals"][1]["reasons"][0].as_str().unwrap();
    assert!(
        stale.contains(report["sessions"][0]["hash"].as_str().unwrap()),
        "the refusal names the old pin: {stale}"
    );
}

/// Plaintext that must not be in a file: every SSN, every salary of 5 digits or more as text
/// (shorter numbers occur by chance), and every salary as SQL Server `money` bytes (the
/// plaintext serialisation) and as a little-endian double.
fn canaries() -> Vec<(String, Vec<u8>, bool)> {
    let mut out = Vec::new();
    for e in employees() {
        out.push((format!("SSN {}", e.ssn), e.ssn.clone().into_bytes(), false));
        if e.salary >= 10_000 {
            out.push((
                format!("salary {}", e.salary),
                e.salary.to_string().into_bytes(),
                true,
            ));
        }
        let money = e.salary * 10_000;
        let money_bytes: Vec<u8> = [(money >> 32) as u32, money as u32]
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect();
        out.push((format!("money {}", e.salary), money_bytes, false));
        out.push((
            format!("bigint {}", e.salary),
            money.to_le_bytes().to_vec(),
            false,
        ));
        out.push((
            format!("double {}", e.salary),
            (e.salary as f64).to_le_bytes().to_vec(),
            false,
        ));
    }
    out
}

fn find_canaries(bytes: &[u8]) -> Vec<String> {
    find_bounded(bytes, |b| b.is_ascii_digit() || b == b'.')
}

/// A text dump (`pg_dump`, a server log): numbers count only between non-alphanumerics (hex
/// cells are letters and digits), and every `\x…` bytea literal is decoded and scanned too.
fn find_canaries_in_dump(text: &[u8]) -> Vec<String> {
    let mut found = find_bounded(text, |b| b.is_ascii_alphanumeric() || b == b'.');
    let mut i = 0;
    while let Some(at) = text[i..].windows(2).position(|w| w == b"\\x") {
        let start = i + at + 2;
        let len = text[start..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if let Ok(bytes) = hex::decode(&text[start..start + len - len % 2]) {
            found.extend(find_canaries(&bytes));
        }
        i = start + len;
    }
    found.sort();
    found.dedup();
    found
}

fn find_bounded(bytes: &[u8], is_part: impl Fn(u8) -> bool) -> Vec<String> {
    let part = |b: Option<&u8>| b.is_some_and(|b| is_part(*b));
    canaries()
        .into_iter()
        .filter(|(_, needle, bounded)| {
            bytes.windows(needle.len()).enumerate().any(|(i, w)| {
                w == needle.as_slice()
                    && (!bounded
                        || (!part(i.checked_sub(1).and_then(|j| bytes.get(j)))
                            && !part(bytes.get(i + needle.len()))))
            })
        })
        .map(|(name, _, _)| name)
        .collect()
}

fn python() -> Option<String> {
    let python = std::env::var("CLOISTER_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let reason = format!("`{python}` has no `cryptography`; set CLOISTER_PYTHON to the test venv");
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true: {reason}"
    );
    let _ = writeln!(std::io::stderr(), "contoso Python checks SKIPPED: {reason}");
    None
}

fn peer(python: &str, script: &str, request: &Value) -> Value {
    let mut child = Command::new(python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sqlite_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("contoso.db")
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn read_column(
    python: &str,
    db: &Path,
    table: &str,
    column: &str,
    ty: Value,
    order_by: &str,
) -> Vec<String> {
    let out = peer(
        python,
        PEER,
        &json!({"op": "read", "db": db, "cmk_pem": CMK_PEM, "table": table,
                "column": column, "type": ty, "order_by": order_by}),
    );
    out["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn demo_contoso_on_sqlite_with_canary_scan_and_python_peer() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = cloister(
        &[
            "demo",
            "contoso",
            "--json",
            "--dir",
            data.to_str().unwrap(),
            "--cmk-pem",
            CMK_PEM,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json_of(&out);
    check_report(&report, "sqlite", "imported");
    let db = data.join("contoso.db");
    assert_eq!(report["database_path"], db.to_str().unwrap());

    // No plaintext SSN or salary in the database files.
    let files = sqlite_files(&data);
    assert!(!files.is_empty());
    for (path, bytes) in &files {
        let found = find_canaries(bytes);
        assert!(found.is_empty(), "{}: {found:?}", path.display());
    }

    let Some(python) = python() else { return };
    // Cells Cloister wrote decrypt in Python: Employees with the CEK the CAS generated (wrapped
    // by CMK1 in the database), and the statistics the attested app wrote.
    let people = employees();
    let ssns = read_column(
        &python,
        &db,
        "Employees",
        "SSN",
        json!({"name": "char", "len": 11}),
        "EmployeeID",
    );
    let salaries = read_column(
        &python,
        &db,
        "Employees",
        "Salary",
        json!({"name": "money"}),
        "EmployeeID",
    );
    assert_eq!(
        ssns,
        people.iter().map(|e| e.ssn.clone()).collect::<Vec<_>>()
    );
    assert_eq!(
        salaries,
        people
            .iter()
            .map(|e| format!("{}.0000", e.salary))
            .collect::<Vec<_>>()
    );
    let stats = read_column(
        &python,
        &db,
        "SalaryStatistics",
        "value",
        json!({"name": "float"}),
        "position",
    );
    let stats: Vec<f64> = stats.iter().map(|s| s.parse().unwrap()).collect();
    let reported: Vec<f64> = statistics_of(&report["statistics"])
        .iter()
        .map(|s| s.1)
        .collect();
    assert_eq!(stats, reported);

    // Cells Python writes decrypt in Cloister: the rotation decrypts every cell (MAC checked)
    // and re-encrypts it under CEK2, which Python then reads back.
    let written = peer(
        &python,
        PEER,
        &json!({"op": "write", "db": db, "cmk_pem": CMK_PEM, "table": "Employees",
                "column": "Salary", "type": {"name": "money"}, "key_column": "EmployeeID",
                "values": {(people[0].id.to_string()): "12345.6789", (people[1].id.to_string()): "77777.0000"}}),
    );
    assert_eq!(written["written"], 2);
    let out = cloister(
        &[
            "keys",
            "cek",
            "rotate",
            "--db",
            db.to_str().unwrap(),
            "--table",
            "Employees",
            "--column",
            "SSN",
            "--column",
            "Salary",
            "--new-cek",
            "CEK2",
            "--cmk",
            CMK_PEM,
            "--cmk-name",
            "CMK1",
            "--key-path",
            "CMK1",
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rotation = json_of(&out);
    assert_eq!(rotation["new_cek"], "CEK2");
    assert_eq!(rotation["created"], true);
    assert_eq!(rotation["cells"], 2 * 270);
    let salaries = read_column(
        &python,
        &db,
        "Employees",
        "Salary",
        json!({"name": "money"}),
        "EmployeeID",
    );
    assert_eq!(salaries[0], "12345.6789");
    assert_eq!(salaries[1], "77777.0000");
    assert_eq!(salaries[2], format!("{}.0000", people[2].salary));

    // The key metadata now: CEK1 and CEK2 under CMK1, signatures valid, Employees under CEK2.
    let out = cloister(
        &[
            "keys",
            "cek",
            "show",
            "--db",
            db.to_str().unwrap(),
            "--cmk",
            CMK_PEM,
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = json_of(&out);
    let ceks: Vec<(&str, &str, bool)> = meta["column_encryption_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap(),
                k["key_path"].as_str().unwrap(),
                k["signature_valid"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(ceks, [("CEK1", "cmk1", true), ("CEK2", "cmk1", true)]);
    let columns: Vec<(&str, &str, &str)> = meta["encrypted_columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["table"].as_str().unwrap(),
                c["column"].as_str().unwrap(),
                c["cek"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        columns,
        [
            ("Employees", "SSN", "CEK2"),
            ("Employees", "Salary", "CEK2"),
            ("SalaryStatistics", "value", "CEK1")
        ]
    );
    assert_eq!(
        meta["column_master_keys"][0]["allow_enclave_computations"],
        true
    );
}

#[test]
fn canary_scan_finds_planted_plaintext() {
    let e = &employees()[0];
    let money = hex::encode((e.salary * 10_000).to_le_bytes());
    let dump = format!("COPY x FROM stdin;\n1\t\\x01{money}02\n");
    assert_eq!(
        find_canaries_in_dump(dump.as_bytes()),
        [format!("bigint {}", e.salary)]
    );
    let text = format!("1\t{}\t{}\n", e.ssn, 53352);
    assert_eq!(
        find_canaries_in_dump(text.as_bytes()),
        [format!("SSN {}", e.ssn), "salary 53352".to_owned()]
    );
    assert!(find_canaries_in_dump(b"\\xab53352cd").is_empty());
}

#[test]
fn demo_contoso_generates_cmk_in_cas_and_prints_tables() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(&["demo", "contoso"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for want in [
        "contoso/payroll",
        "band 80000-99999",
        "import-hash",
        "export",
        "50549.97",
    ] {
        assert!(stdout.contains(want), "{want} not in:\n{stdout}");
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CMK1 generated"), "{stderr}");
}

#[test]
fn demo_contoso_on_postgres_with_pg_dump_canary() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let conninfo = cluster.conninfo("postgres");
    let out = cloister(
        &[
            "demo",
            "contoso",
            "--json",
            "--postgres",
            &conninfo,
            "--cmk-pem",
            CMK_PEM,
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_report(&json_of(&out), "postgres", "imported");

    // Rotate Employees.Salary to CEK2 on PostgreSQL too; the metadata then says so.
    let out = cloister(
        &[
            "keys",
            "cek",
            "rotate",
            "--postgres",
            &conninfo,
            "--table",
            "Employees",
            "--column",
            "Salary",
            "--new-cek",
            "CEK2",
            "--cmk",
            CMK_PEM,
            "--cmk-name",
            "CMK1",
            "--key-path",
            "CMK1",
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["cells"], 270);
    let out = cloister(
        &[
            "keys",
            "cek",
            "show",
            "--postgres",
            &conninfo,
            "--cmk",
            CMK_PEM,
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta = json_of(&out);
    let salary = meta["encrypted_columns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["table"] == "Employees" && c["column"] == "Salary")
        .unwrap()
        .clone();
    assert_eq!(salary["cek"], "CEK2");
    assert!(
        meta["column_encryption_keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["signature_valid"] == true)
    );
    let dump = cluster.dump("postgres");
    assert!(
        String::from_utf8_lossy(&dump).contains("SalaryStatistics"),
        "the dump has the result table"
    );
    let found = find_canaries_in_dump(&dump);
    assert!(found.is_empty(), "pg_dump holds plaintext: {found:?}");
    let found = find_canaries_in_dump(&cluster.server_log());
    assert!(
        found.is_empty(),
        "the server log holds plaintext: {found:?}"
    );
}

#[test]
fn keys_cek_create_wrap_show_and_tamper() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(
        &[
            "keys",
            "cek",
            "create",
            "--cmk",
            CMK_PEM,
            "--key-path",
            "CMK1",
            "--out",
            "cek1.hex",
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created = json_of(&out);
    assert_eq!(created["key_path"], "cmk1");
    assert_eq!(created["algorithm"], "RSA_OAEP");
    assert_eq!(created["ciphertext_len"], 256);
    let hex = std::fs::read_to_string(dir.path().join("cek1.hex")).unwrap();
    assert_eq!(hex.trim(), created["encrypted_value"].as_str().unwrap());
    // Never overwritten.
    let again = cloister(
        &[
            "keys",
            "cek",
            "create",
            "--cmk",
            CMK_PEM,
            "--key-path",
            "CMK1",
            "--out",
            "cek1.hex",
        ],
        dir.path(),
    );
    assert_eq!(again.status.code(), Some(2));

    // Re-wrap under another key path (the same RSA key stands in for a new CMK).
    let out = cloister(
        &[
            "keys",
            "cek",
            "wrap",
            "--value-file",
            "cek1.hex",
            "--cmk",
            CMK_PEM,
            "--new-cmk",
            CMK_PEM,
            "--new-key-path",
            "CMK2",
            "--json",
        ],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rewrapped = json_of(&out);
    assert_eq!(rewrapped["key_path"], "cmk2");

    // Show verifies with the public key; a flipped bit is INVALID with exit code 1.
    let pub_pem = CMK_PEM.replace("always-encrypted.pem", "always-encrypted_pub.pem");
    let value = created["encrypted_value"].as_str().unwrap().to_owned();
    let out = cloister(
        &["keys", "cek", "show", "--value", &value, "--cmk", &pub_pem],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
    let mut tampered = value.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    let out = cloister(
        &[
            "keys", "cek", "show", "--value", &tampered, "--cmk", &pub_pem,
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INVALID"));

    // The Python peer unwraps what the CLI wrapped, both values to the same key.
    let Some(python) = python() else { return };
    let unwrap = |v: &str| {
        peer(
            &python,
            AE_PEER,
            &json!([{"op": "unwrap", "encrypted_value": v, "cmk_pem": CMK_PEM}]),
        )
    };
    let a = unwrap(&value);
    let b = unwrap(rewrapped["encrypted_value"].as_str().unwrap());
    assert_eq!(a[0]["ok"]["cek"], b[0]["ok"]["cek"], "{a} {b}");
    assert_eq!(b[0]["ok"]["key_path"], "cmk2");
}

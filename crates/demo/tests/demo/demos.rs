//! `cloister demo` (NYC taxi, attested, audited) and `cloister demo evidence`, end to end.
//! Moved from the `cloister` tests (`cli/tests/cli/job.rs` and `cli/tests/cli.rs`).

use super::{cloister, json_of};
use cloister_testkit::canary::files_under;
use cloister_testkit::cli::{ok, text};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

fn cloister_sync(dir: &Path, args: &[&str], _envs: &[(&str, &Path)]) -> Output {
    cloister(args, dir)
}

/// `cloister demo` end to end on a small data set: exit 0, the five tables, the audit summary;
/// `--json` parses and says what each service was given.
#[test]
fn demo_runs_the_taxi_analytics_attested_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = ok(
        cloister_sync(
            d,
            &["demo", "--rows", "100000", "--dir", "run", "--json"],
            &[],
        ),
        "demo --json",
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", text(&out.stdout));
    });
    assert_eq!(v["rows"], 100_000);
    let results = v["results"].as_array().unwrap();
    let names: Vec<&str> = results
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "1_trip_count",
            "2_trips_per_hour",
            "3_top_pickup_zones",
            "4_payment_passengers",
            "5_revenue_by_borough"
        ]
    );
    assert_eq!(results[0]["data"][0]["trips"], 100_000);
    assert_eq!(results[1]["rows"], 24);
    assert_eq!(results[2]["rows"], 10);
    assert_eq!(v["outputs"].as_array().unwrap().len(), 5);
    let audit = v["audit"].as_array().unwrap();
    let released = |service: &str| -> Vec<String> {
        let row = audit
            .iter()
            .find(|r| {
                r["session"] == "demo/nyc-taxi"
                    && r["service"] == service
                    && r["verdict"] == "passed"
            })
            .unwrap_or_else(|| panic!("{service} did not attest: {audit:?}"));
        row["released"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(released("ingest").contains(&"secret:trips_fare".to_owned()));
    assert!(released("analytics").contains(&"secret:results_key".to_owned()));
    let report = released("report");
    assert!(
        report.contains(&"secret:results_key".to_owned()),
        "{report:?}"
    );
    assert!(
        !report.iter().any(|s| s.starts_with("secret:trips")),
        "the report got a trip key: {report:?}"
    );
    // The ContosoHR flow ran on the same CAS: statistics read back through the export, the
    // session without one refused, and the import pinned to an old hash refused.
    let contoso = &v["contoso"];
    assert_eq!(contoso["loaded_rows"], 270, "{contoso}");
    assert_eq!(contoso["statistics"], contoso["imported_read"]);
    let rules: Vec<&str> = contoso["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["export", "import-hash"]);
    // Everything was kept in --dir; the trips are encrypted, the results too.
    let run = d.join("run");
    assert!(run.join("policy.yaml").is_file());
    let trips = files_under(&run.join("data/trips"));
    assert!(!trips.is_empty());
    for path in trips.iter().chain(files_under(&run.join("results")).iter()) {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.ends_with(b"PARE"),
            "{} is not encrypted Parquet",
            path.display()
        );
    }

    // The human form.
    let out = ok(cloister_sync(d, &["demo", "--rows", "20000"], &[]), "demo");
    let stdout = text(&out.stdout);
    for needle in [
        "== 1_trip_count (1 rows) ==",
        "== 5_revenue_by_borough",
        "Manhattan",
        "Audit log",
        "secret:results_key",
        "read by contoso/payroll",
        "import-hash",
    ] {
        assert!(stdout.contains(needle), "{needle:?} in {stdout}");
    }
    assert!(text(&out.stderr).contains("[8/8]"), "{}", text(&out.stderr));
}

#[test]
fn demo_verifies_every_sample_and_refuses_tampered_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cloister(&["demo", "evidence", "--json"], dir.path());
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = json_of(&out);
    let rows = rows.as_array().expect("array");
    assert!(rows.len() >= 18, "{} rows", rows.len());
    assert!(rows.iter().all(|r| r["as_expected"] == true), "{rows:#?}");
    assert!(rows.iter().any(|r| r["verified"] == false));
}

//! The NYC taxi demo queries: Cloister's results equal DuckDB's on the same plaintext data
//! (counts and text exactly, doubles to 1e-9 relative), and `cloister bench taxi` runs end to
//! end. Never timing.
//!
//! DuckDB is PyPI's `duckdb` in the test venv (`scripts/requirements-test.txt`), found as
//! `$CLOISTER_PYTHON`, else `~/.cache/cloister/venv/bin/python`, else `python3`. Without it
//! the tests fail under `CI=true` and are skipped, saying why, elsewhere.

use super::{cloister, json_of};
use cloister_datagen::taxi::{self, TaxiSpec};
use cloister_engine::datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use cloister_engine::datafusion::arrow::compute::cast;
use cloister_engine::datafusion::arrow::datatypes::DataType;
use cloister_engine::datafusion::arrow::record_batch::RecordBatch;
use cloister_engine::{EngineBuilder, InMemoryKeyProvider};
use cloister_testkit::cli::assert_exit;
use serde_json::{Value, json};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

/// The DuckDB peer `cloister bench taxi` embeds.
const DUCKDB_PEER: &str = include_str!("../../src/bench/taxi_duckdb.py");

macro_rules! query {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/nyc-taxi/queries/",
                $name,
                ".sql"
            )),
        )
    };
}

/// The demo's queries, as the bench and the demo read them.
const QUERIES: [(&str, &str); 5] = [
    query!("1_trip_count"),
    query!("2_trips_per_hour"),
    query!("3_top_pickup_zones"),
    query!("4_payment_passengers"),
    query!("5_revenue_by_borough"),
];

const ROWS: u64 = 200_000;
const RELATIVE_TOLERANCE: f64 = 1e-9;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A Python that imports `duckdb`, or why there is none.
fn duckdb_python() -> Result<PathBuf, String> {
    let python = std::env::var_os("CLOISTER_PYTHON")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let venv =
                Path::new(&std::env::var_os("HOME")?).join(".cache/cloister/venv/bin/python");
            venv.exists().then_some(venv)
        })
        .unwrap_or_else(|| PathBuf::from("python3"));
    let probe = Command::new(&python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    if !probe.status.success() {
        return Err(format!(
            "{} has no duckdb (pip install -r scripts/requirements-test.txt): {}",
            python.display(),
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    Ok(python)
}

/// The Python with duckdb; `None` (after saying why) when the test is to be skipped.
fn python_or_skip(test: &str) -> Option<PathBuf> {
    match duckdb_python() {
        Ok(p) => Some(p),
        Err(why) if ci() => panic!("DuckDB is required under CI=true: {why}"),
        Err(why) => {
            eprintln!("skipped: {test}: {why}");
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

fn agree(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Float(x), Cell::Float(y)) => {
            x == y || (x - y).abs() <= RELATIVE_TOLERANCE * x.abs().max(y.abs())
        }
        _ => a == b,
    }
}

fn arrow_rows(batches: &[RecordBatch]) -> (Vec<String>, Vec<Vec<Cell>>) {
    let columns = batches.first().map_or(Vec::new(), |b| {
        b.schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    });
    let mut rows = Vec::new();
    for batch in batches {
        let cols: Vec<Vec<Cell>> = batch
            .columns()
            .iter()
            .map(|a| {
                let n = a.len();
                match a.data_type() {
                    DataType::Int32 | DataType::Int64 => {
                        let a = cast(a, &DataType::Int64).unwrap();
                        let a = a.as_any().downcast_ref::<Int64Array>().unwrap();
                        (0..n)
                            .map(|i| {
                                if a.is_null(i) {
                                    Cell::Null
                                } else {
                                    Cell::Int(a.value(i))
                                }
                            })
                            .collect()
                    }
                    DataType::Float64 => {
                        let a = a.as_any().downcast_ref::<Float64Array>().unwrap();
                        (0..n)
                            .map(|i| {
                                if a.is_null(i) {
                                    Cell::Null
                                } else {
                                    Cell::Float(a.value(i))
                                }
                            })
                            .collect()
                    }
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                        let a = cast(a, &DataType::Utf8).unwrap();
                        let a = a.as_any().downcast_ref::<StringArray>().unwrap();
                        (0..n)
                            .map(|i| {
                                if a.is_null(i) {
                                    Cell::Null
                                } else {
                                    Cell::Text(a.value(i).to_owned())
                                }
                            })
                            .collect()
                    }
                    other => panic!("unexpected result type {other}"),
                }
            })
            .collect();
        for i in 0..batch.num_rows() {
            rows.push(cols.iter().map(|c| c[i].clone()).collect());
        }
    }
    (columns, rows)
}

fn json_rows(answer: &Value) -> (Vec<String>, Vec<Vec<Cell>>) {
    let columns = answer["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect();
    let rows = answer["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    Value::Null => Cell::Null,
                    Value::String(s) => Cell::Text(s.clone()),
                    Value::Number(n) if n.is_i64() => Cell::Int(n.as_i64().unwrap()),
                    Value::Number(n) => Cell::Float(n.as_f64().unwrap()),
                    other => panic!("unexpected DuckDB value {other}"),
                })
                .collect()
        })
        .collect();
    (columns, rows)
}

/// Runs every query through the embedded peer in one DuckDB session; one answer per query.
fn duckdb_answers(python: &Path, trips: &Path, zones: &Path) -> Vec<Value> {
    let mut child = Command::new(python)
        .args(["-c", DUCKDB_PEER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = json!({
        "trips": format!("{}/*.parquet", trips.display()),
        "zones": zones.display().to_string(),
        "threads": 2,
    })
    .to_string();
    input.push('\n');
    for (_, sql) in QUERIES {
        input.push_str(&json!({ "sql": sql, "rows": true }).to_string());
        input.push('\n');
    }
    // The answers are small: writing everything before reading cannot fill the pipes.
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the DuckDB peer failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap());
    let ready = lines.next().expect("a ready line");
    assert_eq!(ready["ready"], true, "{ready}");
    let answers: Vec<Value> = lines.collect();
    assert_eq!(answers.len(), QUERIES.len(), "{stdout}");
    for (answer, (name, _)) in answers.iter().zip(QUERIES) {
        assert!(
            answer.get("error").is_none(),
            "DuckDB failed on {name}: {answer}"
        );
    }
    answers
}

/// Every demo query gives DuckDB's result on the same ~200k generated trips.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_queries_equal_duckdb_on_the_same_plaintext() {
    let Some(python) = python_or_skip("demo_queries_equal_duckdb_on_the_same_plaintext") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (trips, zones_dir) = (dir.path().join("trips"), dir.path().join("zones"));
    let spec = TaxiSpec {
        files: 2,
        // Several row groups per file, as in the real data sets.
        row_group_rows: 1 << 16,
        ..TaxiSpec::new(ROWS)
    };
    let props = || taxi::default_writer_properties().build();
    taxi::generate(&spec, &trips, |_| props(), &|_| {}).unwrap();
    let zones = taxi::write_zones(&zones_dir, props(), false).unwrap()[0].clone();

    let engine = EngineBuilder::new(Arc::new(InMemoryKeyProvider::new()))
        .build()
        .unwrap();
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '{}/'",
            trips.display()
        ))
        .await
        .unwrap();
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE zones STORED AS PARQUET LOCATION '{}'",
            zones.display()
        ))
        .await
        .unwrap();
    let answers = duckdb_answers(&python, &trips, &zones);

    let mut failures = Vec::new();
    for ((name, sql), answer) in QUERIES.iter().zip(&answers) {
        let batches = engine.sql(sql).await.unwrap().collect().await.unwrap();
        let (ours_cols, ours) = arrow_rows(&batches);
        let (theirs_cols, theirs) = json_rows(answer);
        assert!(!ours.is_empty(), "{name}: no rows");
        if ours_cols != theirs_cols {
            failures.push(format!("{name}: columns {ours_cols:?} vs {theirs_cols:?}"));
            continue;
        }
        if ours.len() != theirs.len() {
            failures.push(format!("{name}: {} rows vs {}", ours.len(), theirs.len()));
            continue;
        }
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            for ((x, y), col) in a.iter().zip(b).zip(&ours_cols) {
                if !agree(x, y) {
                    failures.push(format!(
                        "{name} row {i} {col}: Cloister {x:?}, DuckDB {y:?}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The count is the data set's size, exactly.
    assert_eq!(json_rows(&answers[0]).1, [[Cell::Int(ROWS as i64)]]);
}

/// `cloister bench taxi --json` runs every mode on a small data set, reuses its cached data,
/// and reports what docs/bench.md says it does.
#[test]
fn bench_taxi_small_json() {
    let dir = tempfile::tempdir().unwrap();
    let python = python_or_skip("bench_taxi_small_json (DuckDB mode)");
    let mut args = vec![
        "bench", "taxi", "--rows", "20000", "--runs", "1", "--json", "--dir", "data",
    ];
    let python_arg;
    match &python {
        Some(p) => {
            python_arg = p.display().to_string();
            args.extend(["--python", &python_arg]);
        }
        None => args.extend(["--modes", "confidential,plaintext"]),
    }
    let run = || {
        let out = cloister(&args, dir.path());
        assert_exit(&out, 0);
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "--json shows no progress"
        );
        json_of(&out)
    };
    let report = run();
    assert_eq!(report["rows"], 20000);
    assert_eq!(report["data"]["cached"], false);
    assert_eq!(report["key_source"], "attested");
    let modes: Vec<&str> = report["modes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let expected: &[&str] = if python.is_some() {
        &["confidential", "plaintext", "duckdb"]
    } else {
        &["confidential", "plaintext"]
    };
    assert_eq!(modes, expected);
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 5);
    for q in queries {
        for mode in &modes {
            let t = &q["timings"][mode];
            assert_eq!(t["runs_ms"].as_array().unwrap().len(), 1, "{q}");
            assert!(t["median_ms"].as_f64().unwrap() > 0.0, "{q}");
        }
        assert!(
            q["confidential_over_plaintext"].as_f64().unwrap() > 0.0,
            "{q}"
        );
    }
    assert_eq!(queries[0]["result_rows"], 1);
    assert_eq!(queries[1]["result_rows"], 24);
    assert!(
        report["geomean"]["confidential_over_plaintext"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(
        report["per_hour_rows_per_second"]["confidential"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(!report["targets"].as_array().unwrap().is_empty());
    if python.is_some() {
        assert!(
            report["geomean"]["confidential_over_duckdb"]
                .as_f64()
                .unwrap()
                > 0.0
        );
        assert!(report["duckdb"]["version"].as_str().unwrap().contains('.'));
    }

    // The same spec again: the plaintext copy is reused; the encrypted one is made anew.
    let again = run();
    assert_eq!(again["data"]["cached"], true);
    assert!(again["data"]["generate_seconds"].is_null());
    assert!(again["data"]["encrypt_seconds"].as_f64().unwrap() > 0.0);
    // Only the cached plaintext copy stays behind; the encrypted copy is removed.
    let left: Vec<String> = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn bench_taxi_refuses_a_missing_python_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(
        &[
            "bench",
            "taxi",
            "--rows",
            "1000",
            "--runs",
            "1",
            "--python",
            "/no/such/python",
            "--modes",
            "duckdb",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("cloister: "), "{stderr}");
    assert!(stderr.contains("/no/such/python"), "{stderr}");
}

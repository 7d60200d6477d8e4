//! SQL apps on local files: scripts, variables, atomic encrypted outputs, the output policy.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cloister_engine::datafusion::arrow::array::AsArray as _;
use cloister_engine::datafusion::arrow::compute::cast;
use cloister_engine::datafusion::arrow::datatypes::DataType;
use cloister_engine::datafusion::error::DataFusionError;
use cloister_engine::{
    AppVars, Engine, EngineBuilder, Error, InMemoryKeyProvider, OutputPolicy, Rule, SqlApp,
};

use cloister_testkit::canary::{self, files_under};

use crate::{f64s, readme_keys};

/// The testdata directory, canonical (so that it is a valid variable value).
fn testdata() -> PathBuf {
    std::fs::canonicalize(crate::TESTDATA).unwrap()
}

fn engine(policy: OutputPolicy) -> Engine {
    EngineBuilder::new(Arc::new(app_keys()))
        .output_policy(policy)
        .build()
        .unwrap()
}

/// The README keys for reading the testdata, and a key for writing.
fn app_keys() -> InMemoryKeyProvider {
    let keys = readme_keys(false);
    keys.insert("out-master", vec![0x5C; 32]).unwrap();
    keys
}

fn vars(out: &Path) -> AppVars {
    AppVars::new()
        .with("TESTDATA", testdata().to_str().unwrap())
        .unwrap()
        .with("OUT", out.to_str().unwrap())
        .unwrap()
}

const CREATE: &str = "-- The input: an encrypted file written by parquet-mr; keys resolve by id.
CREATE EXTERNAL TABLE trips STORED AS PARQUET
  LOCATION '${TESTDATA}/encrypt_columns_and_footer.parquet.encrypted'
  OPTIONS ('format.crypto.factory_id' 'cloister');
";

const AGGREGATE: &str = "SELECT count(*) AS n,
       round(sum(double_field), 4) AS total,
       'a;b' AS not_a_boundary -- a ; in a string or comment splits nothing
  FROM trips;
";

const COPY: &str =
    "COPY (SELECT CAST(int32_field AS INT) % 2 AS parity, count(*) AS n, sum(double_field) AS total
        FROM trips GROUP BY 1)
  TO '${OUT}/summary/' STORED AS PARQUET
  OPTIONS ('format.crypto.factory_id' 'cloister',
           'format.crypto.factory_options.key_management' 'kmt',
           'format.crypto.factory_options.footer_key' 'out-master');
";

fn three_scripts(last: &str) -> SqlApp {
    SqlApp::from_files([
        ("01_create.sql", CREATE),
        ("02_aggregate.sql", AGGREGATE),
        ("03_copy.sql", last),
    ])
    .unwrap()
}

/// Entries of `dir` (names), sorted.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn refused_rule(err: &DataFusionError) -> Option<Rule> {
    match Error::find_in(err) {
        Some(Error::StatementRefused { rule, .. }) => Some(*rule),
        _ => None,
    }
}

#[tokio::test]
async fn three_script_app_writes_encrypted_output() {
    let dir = tempfile::tempdir().unwrap();
    // The scripts come from a directory, as an unpacked app bundle holds them.
    let app_dir = dir.path().join("app");
    std::fs::create_dir(&app_dir).unwrap();
    for (name, sql) in [
        ("01_create.sql", CREATE),
        ("02_aggregate.sql", AGGREGATE),
        ("03_copy.sql", COPY),
    ] {
        std::fs::write(app_dir.join(name), sql).unwrap();
    }
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();

    let run = engine(OutputPolicy::default())
        .run_app(&SqlApp::from_dir(&app_dir).unwrap(), &vars(&out))
        .await
        .unwrap();

    // The query result, by name, and printable.
    assert_eq!(run.results().len(), 1);
    let result = run.result("02_aggregate").unwrap();
    assert_eq!(result.num_rows(), 1);
    let table = result.to_pretty_string().unwrap();
    assert!(table.contains("| 50 ") && table.contains("a;b"), "{table}");
    // sum of i * 1.1111111 for i in 0..50
    assert_eq!(f64s(result.batches(), "total"), vec![Some(1361.1111)]);

    // The output: committed, encrypted, nothing staged left behind.
    assert_eq!(run.outputs().len(), 1);
    let output = &run.outputs()[0];
    assert_eq!(output.rows(), 2);
    assert_eq!(output.script(), "03_copy.sql");
    assert!(output.url().starts_with("file://") && output.url().ends_with("/out/summary/"));
    assert_eq!(entries(&out), ["summary"]);
    let files = files_under(&out.join("summary"));
    assert!(!files.is_empty());
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            bytes.ends_with(b"PARE"),
            "{} is not encrypted Parquet",
            file.display()
        );
        // The schema is not in plaintext.
        canary::assert_absent(&bytes, b"parity");
    }

    // Read back by another engine with the keys.
    let reader = engine(OutputPolicy::default());
    reader
        .sql(&format!(
            "CREATE EXTERNAL TABLE summary STORED AS PARQUET LOCATION '{}/summary/' \
             OPTIONS ('format.crypto.factory_id' 'cloister')",
            out.display()
        ))
        .await
        .unwrap();
    let batches = reader
        .sql("SELECT parity, n FROM summary ORDER BY parity")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(f64s(&batches, "n"), vec![Some(25.0), Some(25.0)]);
}

#[tokio::test]
async fn failing_last_statement_leaves_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let last = format!("{COPY}\nSELECT no_such_column FROM trips;\n");
    let engine = engine(OutputPolicy::default());
    let err = engine
        .run_app(&three_scripts(&last), &vars(&out))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("03_copy.sql") && message.contains("statement 2"),
        "{message}"
    );
    assert!(
        entries(&out).is_empty(),
        "partial output left: {:?}",
        entries(&out)
    );
}

#[tokio::test]
async fn failing_copy_in_second_output_discards_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let bad_copy = COPY
        .replace("summary/", "second/")
        .replace("'out-master'", "'no-such-key'");
    let app = SqlApp::from_files([
        ("01_create.sql", CREATE.to_owned()),
        ("02_copy.sql", COPY.to_owned()),
        ("03_copy.sql", bad_copy),
    ])
    .unwrap();
    let err = engine(OutputPolicy::default())
        .run_app(&app, &vars(&out))
        .await
        .unwrap_err();
    assert!(
        matches!(Error::find_in(&err), Some(Error::UnknownKey { key_id }) if key_id == "no-such-key"),
        "{err}"
    );
    assert!(entries(&out).is_empty(), "{:?}", entries(&out));
}

#[rstest::rstest]
#[case::csv("COPY (SELECT 1 AS a) TO '${OUT}/x.csv';", "CSV")]
#[case::json("COPY (SELECT 1 AS a) TO '${OUT}/x/' STORED AS JSON;", "JSON")]
#[case::plain_parquet(
    "COPY (SELECT 1 AS a) TO '${OUT}/x/' STORED AS PARQUET;",
    "unencrypted Parquet"
)]
#[tokio::test]
async fn plaintext_output_is_refused_before_anything_runs(#[case] copy: &str, #[case] what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The refused COPY is in the last script; the encrypted COPY before it must not run.
    let engine = engine(OutputPolicy::default());
    let err = engine
        .run_app(&three_scripts(&format!("{COPY}\n{copy}")), &vars(&out))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::PlaintextOutput), "{err}");
    assert!(err.to_string().contains(what), "{err}");
    assert!(!out.exists(), "{:?}", entries(&out));
}

#[tokio::test]
async fn plaintext_csv_with_permission() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let engine = engine(OutputPolicy::encrypted_only().allow_plaintext_formats());
    let app = SqlApp::from_files([(
        "01.sql",
        "COPY (SELECT 'x' AS a) TO '${OUT}/x.csv' STORED AS CSV OPTIONS ('format.has_header' 'true');",
    )])
    .unwrap();
    let run = engine.run_app(&app, &vars(&out)).await.unwrap();
    assert_eq!(run.outputs()[0].rows(), 1);
    assert_eq!(
        std::fs::read_to_string(out.join("x.csv")).unwrap(),
        "a\nx\n"
    );
    assert_eq!(entries(&out), ["x.csv"]);
}

#[rstest::rstest]
#[case::partial_column_keys(
    "COPY (SELECT 1 AS a, 'secret' AS b) TO '${OUT}/x/' STORED AS PARQUET \
     OPTIONS ('format.crypto.factory_id' 'cloister', \
              'format.crypto.factory_options.footer_key' 'out-master', \
              'format.crypto.factory_options.column_keys' 'out-master:a');",
    "b"
)]
#[case::partitioned(
    "COPY (SELECT 1 AS a, 'secret' AS b) TO '${OUT}/x/' STORED AS PARQUET PARTITIONED BY (b) \
     OPTIONS ('format.crypto.factory_id' 'cloister', \
              'format.crypto.factory_options.footer_key' 'out-master');",
    "PARTITIONED BY b"
)]
#[tokio::test]
async fn plaintext_columns_need_permission(#[case] copy: &str, #[case] what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let app = SqlApp::from_files([("01.sql", copy)]).unwrap();
    let err = engine(OutputPolicy::default())
        .run_app(&app, &vars(&out))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::PlaintextOutput), "{err}");
    assert!(err.to_string().contains(what), "{err}");
    assert!(!out.exists());

    let run = engine(OutputPolicy::encrypted_only().allow_plaintext_columns())
        .run_app(&app, &vars(&out))
        .await
        .unwrap();
    assert_eq!(run.outputs()[0].rows(), 1);
}

#[tokio::test]
async fn column_keys_covering_every_column_are_encrypted_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let app = SqlApp::from_files([(
        "01.sql",
        "COPY (SELECT 1 AS a, named_struct('x', 2, 'y', 'z') AS s) TO '${OUT}/one.parquet' \
         STORED AS PARQUET OPTIONS ('format.crypto.factory_id' 'cloister', \
         'format.crypto.factory_options.footer_key' 'out-master', \
         'format.crypto.factory_options.column_keys' 'kc1:a,s.x;kc2:s.y');",
    )])
    .unwrap();
    let run = engine(OutputPolicy::default())
        .run_app(&app, &vars(&out))
        .await
        .unwrap();
    // A single-file output is committed as that file.
    assert!(run.outputs()[0].url().ends_with("/out/one.parquet"));
    assert_eq!(entries(&out), ["one.parquet"]);
    assert!(out.join("one.parquet").is_file());
}

#[tokio::test]
async fn existing_output_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("summary")).unwrap();
    std::fs::write(out.join("summary/old.parquet"), b"old").unwrap();
    let err = engine(OutputPolicy::default())
        .run_app(&three_scripts(COPY), &vars(&out))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::OutputExists), "{err}");
    assert_eq!(entries(&out.join("summary")), ["old.parquet"]);
}

#[tokio::test]
async fn the_same_output_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let err = engine(OutputPolicy::default())
        .run_app(&three_scripts(&format!("{COPY}\n{COPY}")), &vars(&out))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::OutputExists), "{err}");
}

#[rstest::rstest]
#[case::insert_into_file_table(
    "CREATE EXTERNAL TABLE sink (a INT) STORED AS PARQUET LOCATION '${OUT}/sink/';
     INSERT INTO sink VALUES (1);"
)]
#[case::explain_analyze_copy(
    "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '${OUT}/x/' STORED AS PARQUET \
     OPTIONS ('format.crypto.factory_id' 'cloister', 'format.crypto.factory_options.footer_key' 'out-master');"
)]
#[tokio::test]
async fn writes_that_cannot_be_staged_are_refused(#[case] sql: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let app = SqlApp::from_files([("01.sql", sql)]).unwrap();
    // Even when plaintext were allowed.
    let err = engine(OutputPolicy::allow_plaintext())
        .run_app(&app, &vars(&out))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::AtomicOutput), "{err}");
    assert!(files_under(&out).is_empty());
}

#[tokio::test]
async fn memory_tables_and_several_queries_per_script() {
    let app = SqlApp::from_files([(
        "01_mem.sql",
        "CREATE TABLE t (a INT, s VARCHAR);
         INSERT INTO t VALUES (1, 'x;y'), (2, '${DAY}');
         SELECT count(*) AS n FROM t;
         SELECT s FROM t ORDER BY a;",
    )])
    .unwrap();
    let vars = AppVars::new().with("DAY", "2024-01-31").unwrap();
    let run = engine(OutputPolicy::default())
        .run_app(&app, &vars)
        .await
        .unwrap();
    let names: Vec<&str> = run.results().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["01_mem.3", "01_mem.4"]);
    let table = run.result("01_mem.4").unwrap().to_pretty_string().unwrap();
    assert_eq!(
        table,
        "+------------+\n| s          |\n+------------+\n| x;y        |\n| 2024-01-31 |\n+------------+"
    );
}

/// Whoever sets a variable (a host arg, another session's export) chooses a literal, never a
/// statement: each hostile value comes back as the string it is, and the table the value
/// tries to drop is still there.
#[rstest::rstest]
#[case::drop_table("x'; DROP TABLE t; --")]
#[case::or_true("' OR 1=1 --")]
#[case::braces_and_dollars("a}b${DAY}$c$$d")]
#[case::unicode_quotes("\u{2019} OR \u{2018}1\u{2019}=\u{2018}1")]
#[case::double_quote("\"; DROP TABLE t; --")]
#[tokio::test]
async fn regression_variable_values_are_bound_as_literals(#[case] value: &str) {
    let app = SqlApp::from_files([
        (
            "01_setup.sql",
            "CREATE TABLE t (s VARCHAR) AS VALUES ('kept');",
        ),
        (
            "02_bound.sql",
            "SELECT '${V}' AS quoted, ${V} AS bare, count(*) AS n FROM t WHERE s <> ${V};",
        ),
        ("03_after.sql", "SELECT s FROM t;"),
    ])
    .unwrap();
    let vars = AppVars::new()
        .with("V", value)
        .unwrap()
        .with("DAY", "2024-01-31")
        .unwrap();
    let run = engine(OutputPolicy::default())
        .run_app(&app, &vars)
        .await
        .unwrap();
    // One result per query: no statement was added.
    let names: Vec<&str> = run.results().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["02_bound", "03_after"]);
    let bound = &run.result("02_bound").unwrap().batches()[0];
    for column in ["quoted", "bare"] {
        let strings = cast(bound.column_by_name(column).unwrap(), &DataType::Utf8).unwrap();
        let strings = strings.as_string::<i32>().value(0);
        assert_eq!(strings, value, "{column}");
    }
    let after = run.result("03_after").unwrap().to_pretty_string().unwrap();
    assert!(after.contains("kept"), "{after}");
}

#[tokio::test]
async fn unset_variable_and_syntax_error_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let engine = engine(OutputPolicy::default());
    // A syntax error in the last script: the COPY in the first never runs.
    let app = SqlApp::from_files([
        ("01.sql", COPY.replace("trips", "(SELECT 1)")),
        ("02.sql", "SELEC 1".into()),
    ]);
    let err = engine
        .run_app(&app.unwrap(), &vars(&out))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("02.sql"), "{err}");
    assert!(!out.exists());

    for sql in ["SELECT '${MISSING}'", "SELECT ${MISSING}"] {
        let app = SqlApp::from_files([("01.sql", sql)]).unwrap();
        let err = engine.run_app(&app, &vars(&out)).await.unwrap_err();
        assert!(
            matches!(Error::find_in(&err), Some(Error::UnsetVariable { name, .. }) if name == "MISSING"),
            "{err}"
        );
        assert!(err.to_string().contains("${MISSING}"), "{err}");
    }
}

#[tokio::test]
async fn engine_rules_hold_inside_apps() {
    let engine = engine(OutputPolicy::allow_plaintext());
    for (sql, rule) in [
        (
            "SET datafusion.runtime.temp_directory = '/tmp'",
            Rule::SpillEncryption,
        ),
        (
            "COPY (SELECT 1 AS a) TO '/tmp/never/' STORED AS PARQUET OPTIONS \
             ('format.crypto.file_encryption.footer_key_as_hex' '30313233343536373839303132333435')",
            Rule::KeyMaterialInSql,
        ),
    ] {
        let app = SqlApp::from_files([("01.sql", sql)]).unwrap();
        let err = engine.run_app(&app, &AppVars::new()).await.unwrap_err();
        assert_eq!(refused_rule(&err), Some(rule), "{err}");
    }
}

#[tokio::test]
async fn regression_engine_sql_refuses_plaintext_output_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("x.csv");
    let engine = engine(OutputPolicy::default());
    let err = engine
        .sql(&format!("COPY (SELECT 1 AS a) TO '{}'", target.display()))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::PlaintextOutput), "{err}");
    // Also hidden inside EXPLAIN ANALYZE, which would run it.
    let err = engine
        .sql(&format!(
            "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{}'",
            target.display()
        ))
        .await
        .unwrap_err();
    assert_eq!(refused_rule(&err), Some(Rule::PlaintextOutput), "{err}");
    assert!(!target.exists());
}

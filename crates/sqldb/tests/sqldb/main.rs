//! SQL databases with Always Encrypted columns, end to end: the ContosoHR sample loaded
//! encrypted, queried through DataFusion with decryption, pushdown as ciphertext equality, key
//! and cell tampering, the transactional sink, and canary scans of what the database stores.
//!
//! The scenarios take a [`Db`] and run against SQLite here and PostgreSQL in [`postgres`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contosohr;
mod postgres;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use anyhow::{Context, Result};
use cloister_colenc::{Cmk, CodePage, EncryptionType, SqlType};
use cloister_engine::datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int64Array,
    RecordBatch, StringArray, TimestampMicrosecondArray,
};
use cloister_engine::datafusion::arrow::compute::{cast, concat};
use cloister_engine::datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use cloister_engine::datafusion::catalog::TableProvider;
use cloister_engine::datafusion::error::DataFusionError;
use cloister_engine::datafusion::logical_expr::{TableProviderFilterPushDown, ident, lit};
use cloister_engine::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use cloister_engine::{Engine, EngineBuilder, InMemoryKeyProvider};
use cloister_sqldb::{
    self as sql, ColumnEncryption, ColumnMasterKeyDefinition, EncryptedSqlTable,
    InMemoryColumnMasterKeys, PostgresConfig, SqlDatabase, SqlSink, StatementLog,
};
use cloister_testkit::canary::{self, contains};

const CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/contosohr-employees.csv"
);
const CMK_PEM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
);
/// ContosoHR's CMK lives in Azure Key Vault; here the runtime holds it.
const KEY_STORE: &str = "AZURE_KEY_VAULT";
const KEY_PATH: &str = "https://contosohr-kv.vault.azure.net/keys/CMK/0c8bd1d7a2c94e2f";

// ----- fixtures -----

#[derive(Clone, Debug)]
struct Employee {
    id: i64,
    ssn: String,
    first: String,
    last: String,
    salary: i64,
}

/// The plaintext CSV, parsed by hand (no quoting in this file).
fn employees() -> Vec<Employee> {
    let text = std::fs::read_to_string(CSV).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.trim().split(',').collect();
            assert_eq!(f.len(), 5, "{line}");
            Employee {
                id: f[0].parse().unwrap(),
                ssn: f[1].into(),
                first: f[2].into(),
                last: f[3].into(),
                salary: f[4].parse().unwrap(),
            }
        })
        .collect()
}

fn cmk() -> Cmk {
    Cmk::from_pem(&std::fs::read_to_string(CMK_PEM).unwrap()).unwrap()
}

/// Another RSA-2048 key: the wrong CMK. Generated once per test binary.
fn other_cmk() -> Cmk {
    static PEM: OnceLock<String> = OnceLock::new();
    let pem = PEM.get_or_init(|| {
        Cmk::generate(2048)
            .unwrap()
            .to_pkcs8_pem()
            .unwrap()
            .to_string()
    });
    Cmk::from_pem(pem).unwrap()
}

fn keys() -> Arc<InMemoryColumnMasterKeys> {
    Arc::new(InMemoryColumnMasterKeys::new().with_key(KEY_STORE, KEY_PATH, cmk()))
}

fn cmk1() -> ColumnMasterKeyDefinition {
    contosohr::contosohr_cmk(KEY_STORE, KEY_PATH)
}

fn engine() -> Engine {
    EngineBuilder::new(Arc::new(InMemoryKeyProvider::new()))
        .build()
        .unwrap()
}

/// A database under test, with a side door that bypasses the engine (to read and alter the
/// stored bytes, as the database's administrator could).
pub(crate) struct Db {
    db: SqlDatabase,
    log: StatementLog,
    raw: Raw,
}

pub(crate) enum Raw {
    Sqlite(PathBuf),
    Postgres(PostgresConfig),
}

impl Db {
    fn sqlite(path: &Path) -> Self {
        let log = StatementLog::new();
        Self {
            db: SqlDatabase::sqlite(path).with_statement_log(log.clone()),
            log,
            raw: Raw::Sqlite(path.to_owned()),
        }
    }

    pub(crate) fn postgres(config: PostgresConfig) -> Self {
        let log = StatementLog::new();
        Self {
            db: SqlDatabase::postgres(config.clone()).with_statement_log(log.clone()),
            log,
            raw: Raw::Postgres(config),
        }
    }

    /// How a byte string appears in a statement sent to this database.
    fn literal(&self, bytes: &[u8]) -> String {
        match self.raw {
            Raw::Sqlite(_) => format!("x'{}'", hex(bytes)),
            Raw::Postgres(_) => format!("'\\x{}'", hex(bytes)),
        }
    }

    async fn raw_client(config: &PostgresConfig) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::Config::new()
            .host(&config.host)
            .port(config.port)
            .user(&config.user)
            .dbname(&config.dbname)
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client
    }

    /// The stored bytes of `column` in the row whose `key` column is `id`.
    async fn cell(&self, table: &str, column: &str, key: &str, id: i64) -> Vec<u8> {
        let sql = format!("SELECT \"{column}\" FROM \"{table}\" WHERE \"{key}\" = {id}");
        match &self.raw {
            Raw::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(&sql, [], |row| row.get(0))
                .unwrap(),
            Raw::Postgres(config) => Self::raw_client(config)
                .await
                .query_one(&sql, &[])
                .await
                .unwrap()
                .get(0),
        }
    }

    async fn set_cell(&self, table: &str, column: &str, key: &str, id: i64, cell: Vec<u8>) {
        match &self.raw {
            Raw::Sqlite(path) => {
                let sql =
                    format!("UPDATE \"{table}\" SET \"{column}\" = ?1 WHERE \"{key}\" = {id}");
                let n = rusqlite::Connection::open(path)
                    .unwrap()
                    .execute(&sql, [cell])
                    .unwrap();
                assert_eq!(n, 1);
            }
            Raw::Postgres(config) => {
                let sql =
                    format!("UPDATE \"{table}\" SET \"{column}\" = $1 WHERE \"{key}\" = {id}");
                let n = Self::raw_client(config)
                    .await
                    .execute(&sql, &[&cell])
                    .await
                    .unwrap();
                assert_eq!(n, 1);
            }
        }
    }

    /// `SELECT count(*) …` through the side door.
    async fn count(&self, sql: &str) -> i64 {
        match &self.raw {
            Raw::Sqlite(path) => rusqlite::Connection::open(path)
                .unwrap()
                .query_row(sql, [], |row| row.get(0))
                .unwrap(),
            Raw::Postgres(config) => Self::raw_client(config)
                .await
                .query_one(sql, &[])
                .await
                .unwrap()
                .get(0),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn load_contosohr(db: &Db) {
    let ctx = engine();
    let rows =
        contosohr::load_contosohr(ctx.session(), Path::new(CSV), db.db.clone(), keys(), cmk1())
            .await
            .unwrap();
    assert_eq!(rows, 270);
}

/// ContosoHR into `table`, but with SSN encrypted deterministically.
async fn load_contosohr_deterministic(db: &Db, table: &str) {
    let sink = SqlSink::new(db.db.clone(), table, keys())
        .encrypt(
            ColumnEncryption::deterministic("SSN", "CEK1").sql_type(SqlType::Char {
                len: 11,
                code_page: CodePage::Ascii,
            }),
        )
        .encrypt(ColumnEncryption::randomized("Salary", "CEK1").sql_type(SqlType::Money))
        .create_keys_under(cmk1());
    let rows = sql::load_csv(
        engine().session(),
        Path::new(CSV),
        contosohr::contosohr_schema(),
        &sink,
    )
    .await
    .unwrap();
    assert_eq!(rows, 270);
}

async fn open(db: &Db, table: &str) -> Result<EncryptedSqlTable, sql::Error> {
    EncryptedSqlTable::open(db.db.clone(), table, keys().as_ref()).await
}

async fn register(engine: &Engine, db: &Db, table: &str, name: &str) -> Arc<EncryptedSqlTable> {
    let provider = Arc::new(open(db, table).await.unwrap());
    engine
        .session()
        .register_table(name, provider.clone())
        .unwrap();
    provider
}

async fn query(engine: &Engine, sql: &str) -> Result<Vec<RecordBatch>, DataFusionError> {
    engine.sql(sql).await?.collect().await
}

fn column(batches: &[RecordBatch], name: &str, ty: &DataType) -> ArrayRef {
    let parts: Vec<ArrayRef> = batches
        .iter()
        .map(|b| cast(b.column_by_name(name).unwrap(), ty).unwrap())
        .collect();
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    concat(&refs).unwrap()
}

fn f64s(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    column(batches, name, &DataType::Float64)
        .as_primitive::<Float64Type>()
        .iter()
        .collect()
}

fn i64s(batches: &[RecordBatch], name: &str) -> Vec<Option<i64>> {
    column(batches, name, &DataType::Int64)
        .as_primitive::<Int64Type>()
        .iter()
        .collect()
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    column(batches, name, &DataType::Utf8)
        .as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_owned))
        .collect()
}

/// The text of `EXPLAIN [ANALYZE] sql`.
async fn explain(engine: &Engine, sql: &str) -> String {
    let batches = query(engine, &format!("EXPLAIN {sql}")).await.unwrap();
    let mut out = String::new();
    for batch in &batches {
        let plans = batch.column(batch.num_columns() - 1).as_string::<i32>();
        for plan in plans.iter().flatten() {
            out.push_str(plan);
            out.push('\n');
        }
    }
    out
}

fn sql_err(err: &DataFusionError) -> &sql::Error {
    sql::Error::find_in(err).unwrap_or_else(|| panic!("not a sql::Error: {err}"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    // Nearest rank.
    let rank = (p * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank - 1]
}

// ----- scenarios, shared with PostgreSQL -----

/// Salary statistics through DataFusion, decrypting, equal those of the plaintext CSV.
pub(crate) async fn contosohr_statistics(db: &Db) {
    load_contosohr(db).await;
    let people = employees();
    let engine = engine();
    let provider = register(&engine, db, contosohr::CONTOSOHR_TABLE, "employees").await;

    // The metadata says what the demo's setup says.
    let enc = provider.encrypted_columns();
    assert_eq!(enc.len(), 2);
    for c in &enc {
        assert_eq!(c.cek_name, "CEK1");
        assert_eq!(c.encryption_type, EncryptionType::Randomized);
        assert_eq!(c.algorithm, "AEAD_AES_256_CBC_HMAC_SHA_256");
    }
    assert_eq!(
        sql::format_sql_type(
            &enc.iter()
                .find(|c| c.column_name == "SSN")
                .unwrap()
                .plaintext_type
        ),
        "char(11) COLLATE Latin1_General_BIN2"
    );

    let stats = query(
        &engine,
        "SELECT count(*) AS n, CAST(min(\"Salary\") AS DOUBLE) AS lo, \
         CAST(max(\"Salary\") AS DOUBLE) AS hi, CAST(sum(\"Salary\") AS DOUBLE) AS total, \
         CAST(avg(\"Salary\") AS DOUBLE) AS mean, CAST(median(\"Salary\") AS DOUBLE) AS mid, \
         approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY CAST(\"Salary\" AS DOUBLE)) AS p90 \
         FROM employees",
    )
    .await
    .unwrap();
    let salaries: Vec<i64> = people.iter().map(|e| e.salary).collect();
    let mut sorted: Vec<f64> = salaries.iter().map(|&s| s as f64).collect();
    sorted.sort_by(f64::total_cmp);
    let total: i64 = salaries.iter().sum();
    assert_eq!(i64s(&stats, "n"), [Some(270)]);
    assert_eq!(f64s(&stats, "lo"), [Some(165.0)]);
    assert_eq!(f64s(&stats, "hi"), [Some(99_872.0)]);
    assert_eq!(total, 13_648_491, "the schema document's checksum");
    assert_eq!(f64s(&stats, "total"), [Some(total as f64)]);
    let mean = f64s(&stats, "mean")[0].unwrap();
    assert!((mean - total as f64 / 270.0).abs() < 1e-6, "{mean}");
    let mid = (sorted[134] + sorted[135]) / 2.0;
    assert_eq!(f64s(&stats, "mid"), [Some(mid)]);
    let p90 = f64s(&stats, "p90")[0].unwrap();
    let exact_p90 = percentile(&sorted, 0.9);
    assert!(
        (p90 - exact_p90).abs() <= 0.02 * (sorted[269] - sorted[0]),
        "approx p90 {p90} vs exact {exact_p90}"
    );

    // Exact percentiles by sorting in the engine.
    let ordered = query(
        &engine,
        "SELECT CAST(\"Salary\" AS DOUBLE) AS s FROM employees ORDER BY s",
    )
    .await
    .unwrap();
    let ordered: Vec<f64> = f64s(&ordered, "s")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(ordered, sorted);
    for p in [0.1, 0.25, 0.5, 0.75, 0.99] {
        assert_eq!(percentile(&ordered, p), percentile(&sorted, p));
    }

    // Head counts per salary band.
    let bands = query(
        &engine,
        "SELECT CASE WHEN \"Salary\" < 20000 THEN 'a' WHEN \"Salary\" < 50000 THEN 'b' \
         WHEN \"Salary\" < 80000 THEN 'c' ELSE 'd' END AS band, count(*) AS n \
         FROM employees GROUP BY band ORDER BY band",
    )
    .await
    .unwrap();
    let band = |s: i64| match s {
        s if s < 20_000 => "a",
        s if s < 50_000 => "b",
        s if s < 80_000 => "c",
        _ => "d",
    };
    let expected: Vec<(Option<String>, Option<i64>)> = ["a", "b", "c", "d"]
        .iter()
        .map(|b| {
            let n = salaries.iter().filter(|&&s| band(s) == *b).count() as i64;
            (Some(b.to_string()), Some(n))
        })
        .collect();
    let got: Vec<_> = strings(&bands, "band")
        .into_iter()
        .zip(i64s(&bands, "n"))
        .collect();
    assert_eq!(got, expected);

    // The demo's queries (QueryColumns.sql) on randomized columns run in the engine.
    let range = query(
        &engine,
        "SELECT \"EmployeeID\" FROM employees WHERE \"Salary\" > 40000 AND \"Salary\" < 45000 \
         ORDER BY \"EmployeeID\"",
    )
    .await
    .unwrap();
    let expected: Vec<Option<i64>> = people
        .iter()
        .filter(|e| e.salary > 40_000 && e.salary < 45_000)
        .map(|e| Some(e.id))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(i64s(&range, "EmployeeID"), expected);
    let like = query(
        &engine,
        "SELECT \"FirstName\", \"LastName\", \"Salary\" FROM employees WHERE \"SSN\" LIKE '%9838'",
    )
    .await
    .unwrap();
    assert_eq!(strings(&like, "LastName"), [Some("Abel".to_owned())]);
    assert_eq!(f64s(&like, "Salary"), [Some(31_692.0)]);

    // Every row decrypts to its CSV row.
    let all = query(
        &engine,
        "SELECT \"EmployeeID\", \"SSN\", \"FirstName\", \"LastName\", \"Salary\" FROM employees \
         ORDER BY \"EmployeeID\"",
    )
    .await
    .unwrap();
    let got: Vec<(i64, String, String, String, i64)> = i64s(&all, "EmployeeID")
        .into_iter()
        .zip(strings(&all, "SSN"))
        .zip(strings(&all, "FirstName"))
        .zip(strings(&all, "LastName"))
        .zip(f64s(&all, "Salary"))
        .map(|((((id, ssn), first), last), salary)| {
            (
                id.unwrap(),
                ssn.unwrap(),
                first.unwrap(),
                last.unwrap(),
                salary.unwrap() as i64,
            )
        })
        .collect();
    let want: Vec<_> = people
        .iter()
        .map(|e| {
            (
                e.id,
                e.ssn.clone(),
                e.first.clone(),
                e.last.clone(),
                e.salary,
            )
        })
        .collect();
    assert_eq!(got, want);

    // Randomized: an equality on SSN is not sent to the database.
    let plan = explain(
        &engine,
        "SELECT \"EmployeeID\" FROM employees WHERE \"SSN\" = '795-73-9838'",
    )
    .await;
    assert!(plan.contains("FilterExec"), "{plan}");
    assert!(!plan.contains("WHERE"), "{plan}");
}

/// `SSN = literal` on a deterministic column reaches the database as ciphertext equality.
pub(crate) async fn deterministic_pushdown(db: &Db) {
    let table = "EmployeesDet";
    load_contosohr_deterministic(db, table).await;
    let engine = engine();
    let provider = register(&engine, db, table, "det").await;

    // What each filter is reported as.
    let support = provider
        .supports_filters_pushdown(&[
            &ident("SSN").eq(lit("795-73-9838")),
            &ident("Salary").gt(lit(1)),
            &ident("Salary").eq(lit(1)),
            &ident("SSN").like(lit("%9838")),
            &ident("EmployeeID").eq(lit(5)),
            &ident("SSN").is_null(),
            &ident("SSN").eq(lit("795-73")),
        ])
        .unwrap();
    use TableProviderFilterPushDown::{Exact, Inexact, Unsupported};
    assert_eq!(
        support,
        [
            Exact,
            Unsupported,
            Unsupported,
            Unsupported,
            Inexact,
            Exact,
            Unsupported
        ]
    );

    // The cell the database stores for row 1 is the one it is asked to compare with.
    let stored = db.cell(table, "SSN", "EmployeeID", 1).await;
    assert_eq!(stored.len(), 65, "char(11) gives a one-block cell");
    let literal = db.literal(&stored);
    let sql =
        "SELECT \"EmployeeID\", \"FirstName\", \"Salary\" FROM det WHERE \"SSN\" = '795-73-9838'";

    let plan = explain(&engine, sql).await;
    assert!(
        plan.contains(&format!("WHERE \"SSN\" = {literal}")),
        "plan does not send the ciphertext:\n{plan}"
    );
    assert!(
        !plan.contains("FilterExec"),
        "Exact: no filter left:\n{plan}"
    );

    db.log.clear();
    let rows = query(&engine, sql).await.unwrap();
    assert_eq!(i64s(&rows, "EmployeeID"), [Some(1)]);
    assert_eq!(strings(&rows, "FirstName"), [Some("Catherine".to_owned())]);
    assert_eq!(f64s(&rows, "Salary"), [Some(31_692.0)]);
    let executed: Vec<String> = db
        .log
        .entries()
        .into_iter()
        .filter(|s| s.contains("\"EmployeesDet\""))
        .collect();
    assert_eq!(executed.len(), 1, "{executed:?}");
    assert!(
        executed[0].contains(&format!("WHERE \"SSN\" = {literal}")),
        "the database did not receive the ciphertext predicate: {executed:?}"
    );
    assert!(!executed[0].contains("795-73-9838"), "{executed:?}");

    // The database returned one row, not 270.
    let analyzed = explain(&engine, &format!("ANALYZE {sql}")).await;
    assert!(analyzed.contains("rows_fetched=1"), "{analyzed}");

    // IN lists too.
    let rows = query(
        &engine,
        "SELECT \"LastName\" FROM det WHERE \"SSN\" IN ('795-73-9838', '990-00-6818') \
         ORDER BY \"LastName\"",
    )
    .await
    .unwrap();
    assert_eq!(
        strings(&rows, "LastName"),
        [Some("Abel".to_owned()), Some("Abercrombie".to_owned())]
    );
    let plan = explain(
        &engine,
        "SELECT \"LastName\" FROM det WHERE \"SSN\" IN ('795-73-9838', '990-00-6818')",
    )
    .await;
    assert!(
        plan.contains("WHERE (\"SSN\" = ") && plan.contains(" OR \"SSN\" = "),
        "{plan}"
    );
    assert!(!plan.contains("FilterExec"), "{plan}");

    // What cannot be decided on ciphertext is decided in the engine, after decryption.
    let sql = "SELECT \"EmployeeID\" FROM det WHERE \"SSN\" LIKE '%6818' AND \"EmployeeID\" < 100";
    let plan = explain(&engine, sql).await;
    assert!(plan.contains("FilterExec"), "{plan}");
    assert!(plan.contains("WHERE \"EmployeeID\" < "), "{plan}");
    let rows = query(&engine, sql).await.unwrap();
    assert_eq!(i64s(&rows, "EmployeeID"), [Some(2)]);

    // A literal that is not 11 characters long cannot match a char(11): nothing pushed, no row.
    let rows = query(&engine, "SELECT * FROM det WHERE \"SSN\" = '795-73'")
        .await
        .unwrap();
    assert_eq!(rows.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
}

/// A wrong or missing CMK fails when the table is opened, naming the keys.
pub(crate) async fn wrong_cmk(db: &Db) {
    let wrong = InMemoryColumnMasterKeys::new().with_key(KEY_STORE, KEY_PATH, other_cmk());
    let err = EncryptedSqlTable::open(db.db.clone(), contosohr::CONTOSOHR_TABLE, &wrong)
        .await
        .unwrap_err();
    match &err {
        sql::Error::CekUnwrap { cek, cmk, source } => {
            assert_eq!((cek.as_str(), cmk.as_str()), ("CEK1", "CMK1"));
            assert!(
                matches!(
                    source,
                    cloister_colenc::Error::Signature { .. }
                        | cloister_colenc::Error::KeySizeMismatch { .. }
                ),
                "{source:?}"
            );
        }
        other => panic!("expected CekUnwrap, got {other:?}"),
    }
    let shown = err.to_string();
    assert!(shown.contains("CEK1") && shown.contains("CMK1"), "{shown}");
    assert_eq!(err.fault(), sql::Fault::Input);

    let none = InMemoryColumnMasterKeys::new();
    match EncryptedSqlTable::open(db.db.clone(), contosohr::CONTOSOHR_TABLE, &none).await {
        Err(sql::Error::NoColumnMasterKey { cek, key_paths }) => {
            assert_eq!(cek, "CEK1");
            assert_eq!(key_paths, [format!("{KEY_STORE}: {KEY_PATH}")]);
        }
        other => panic!("expected NoColumnMasterKey, got {other:?}"),
    }
    assert!(matches!(
        open(db, "NoSuchTable").await,
        Err(sql::Error::NoSuchTable { .. })
    ));
}

/// A cell altered in the database fails its MAC when read.
pub(crate) async fn tampered_cell(db: &Db) {
    let table = "Tampered";
    let engine = engine();
    let frame = engine
        .sql("SELECT * FROM (VALUES (1, 'a', 10), (2, 'b', 20)) AS t(id, secret, n)")
        .await
        .unwrap();
    SqlSink::new(db.db.clone(), table, keys())
        .encrypt(ColumnEncryption::randomized("secret", "CEK1"))
        .create_keys_under(cmk1())
        .write(frame.execute_stream().await.unwrap())
        .await
        .unwrap();
    register(&engine, db, table, "tampered").await;
    let ok = query(&engine, "SELECT secret FROM tampered ORDER BY id")
        .await
        .unwrap();
    assert_eq!(strings(&ok, "secret"), [Some("a".into()), Some("b".into())]);

    let mut cell = db.cell(table, "secret", "id", 2).await;
    cell[40] ^= 0x01; // in the IV
    db.set_cell(table, "secret", "id", 2, cell).await;
    let err = query(&engine, "SELECT secret FROM tampered")
        .await
        .unwrap_err();
    assert!(
        matches!(
            sql_err(&err),
            sql::Error::Cell { column, source: cloister_colenc::Error::Mac, .. } if column == "secret"
        ),
        "{err}"
    );
    // Columns that are not read are not decrypted.
    let ids = query(&engine, "SELECT id, n FROM tampered ORDER BY id")
        .await
        .unwrap();
    assert_eq!(i64s(&ids, "id"), [Some(1), Some(2)]);
}

/// Deterministic and randomized columns of many types, with NULLs, written and read back.
pub(crate) async fn sink_round_trip(db: &Db) {
    let table = "RoundTrip";
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])) as ArrayRef,
        ),
        (
            "name",
            Arc::new(StringArray::from(vec![
                Some("Ann"),
                Some("Bob"),
                None,
                Some("Dee"),
            ])),
        ),
        (
            "dept",
            Arc::new(StringArray::from(vec![
                Some("ops"),
                Some("ops"),
                Some("dev"),
                None,
            ])),
        ),
        (
            "salary",
            Arc::new(
                Decimal128Array::from(vec![Some(123_456), Some(123_456), None, Some(-5)])
                    .with_precision_and_scale(10, 2)
                    .unwrap(),
            ),
        ),
        (
            "rate",
            Arc::new(Float64Array::from(vec![
                Some(0.5),
                Some(-0.0),
                Some(1e300),
                None,
            ])),
        ),
        (
            "hired",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(19_000),
                Some(-1),
                None,
            ])),
        ),
        (
            "active",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
        ),
        (
            "seen",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(1_700_000_000_123_456),
                None,
                Some(-86_400_000_000),
                Some(0),
            ])),
        ),
    ])
    .unwrap();
    let schema = batch.schema();
    let stream = RecordBatchStreamAdapter::new(
        schema.clone(),
        futures::stream::iter(vec![Ok(batch.clone())]),
    );
    let sink = SqlSink::new(db.db.clone(), table, keys())
        .encrypt(
            ColumnEncryption::deterministic("dept", "CEK_RT")
                .sql_type(SqlType::NVarChar { max_len: Some(50) }),
        )
        .encrypt(ColumnEncryption::randomized("salary", "CEK_RT").sql_type(SqlType::Money))
        .encrypt(ColumnEncryption::randomized("rate", "CEK_RT"))
        .encrypt(ColumnEncryption::deterministic("hired", "CEK_RT2"))
        .encrypt(ColumnEncryption::deterministic("active", "CEK_RT2"))
        .encrypt(ColumnEncryption::randomized("seen", "CEK_RT2"))
        .create_keys_under(cmk1());
    assert_eq!(sink.write(Box::pin(stream)).await.unwrap(), 4);

    // Writing the same table again is refused.
    let again =
        RecordBatchStreamAdapter::new(schema.clone(), futures::stream::iter(vec![Ok(batch)]));
    assert!(matches!(
        sink.write(Box::pin(again)).await,
        Err(sql::Error::TableExists { .. })
    ));

    let engine = engine();
    let provider = register(&engine, db, table, "rt").await;
    let mut types: Vec<(String, String, EncryptionType)> = provider
        .encrypted_columns()
        .iter()
        .map(|c| {
            (
                c.column_name.clone(),
                sql::format_sql_type(&c.plaintext_type),
                c.encryption_type,
            )
        })
        .collect();
    types.sort_by(|a, b| a.0.cmp(&b.0));
    use EncryptionType::{Deterministic as D, Randomized as R};
    assert_eq!(
        types,
        [
            ("active".into(), "bit".into(), D),
            ("dept".into(), "nvarchar(50)".into(), D),
            ("hired".into(), "date".into(), D),
            ("rate".into(), "float".into(), R),
            ("salary".into(), "money".into(), R),
            ("seen".into(), "datetime2(6)".into(), R),
        ]
    );

    let rows = query(&engine, "SELECT * FROM rt ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        strings(&rows, "name"),
        [
            Some("Ann".into()),
            Some("Bob".into()),
            None,
            Some("Dee".into())
        ]
    );
    assert_eq!(
        strings(&rows, "dept"),
        [
            Some("ops".into()),
            Some("ops".into()),
            Some("dev".into()),
            None
        ]
    );
    assert_eq!(
        f64s(&rows, "salary"),
        [Some(1234.56), Some(1234.56), None, Some(-0.05)]
    );
    let rates = f64s(&rows, "rate");
    assert_eq!(rates[0], Some(0.5));
    assert!(rates[1].unwrap() == 0.0 && rates[1].unwrap().is_sign_negative());
    assert_eq!(&rates[2..], [Some(1e300), None]);
    assert_eq!(
        strings(&rows, "hired"),
        [
            Some("1970-01-01".into()),
            Some("2022-01-08".into()),
            Some("1969-12-31".into()),
            None
        ]
    );
    assert_eq!(
        strings(&rows, "active"),
        [
            Some("true".into()),
            Some("false".into()),
            None,
            Some("true".into())
        ]
    );
    assert_eq!(
        i64s(&rows, "seen"),
        [
            Some(1_700_000_000_123_456),
            None,
            Some(-86_400_000_000),
            Some(0)
        ]
    );
    assert_eq!(
        rows[0]
            .schema()
            .field_with_name("salary")
            .unwrap()
            .data_type(),
        &DataType::Decimal128(19, 4)
    );

    // Deterministic: equal values, equal cells. Randomized: equal values, different cells.
    assert_eq!(
        db.cell(table, "dept", "id", 1).await,
        db.cell(table, "dept", "id", 2).await
    );
    assert_ne!(
        db.cell(table, "salary", "id", 1).await,
        db.cell(table, "salary", "id", 2).await
    );

    // Pushdown on the deterministic columns of other types.
    let rows = query(&engine, "SELECT id FROM rt WHERE dept = 'ops' ORDER BY id")
        .await
        .unwrap();
    assert_eq!(i64s(&rows, "id"), [Some(1), Some(2)]);
    let rows = query(&engine, "SELECT id FROM rt WHERE hired = DATE '2022-01-08'")
        .await
        .unwrap();
    assert_eq!(i64s(&rows, "id"), [Some(2)]);
    let rows = query(&engine, "SELECT id FROM rt WHERE active = true ORDER BY id")
        .await
        .unwrap();
    assert_eq!(i64s(&rows, "id"), [Some(1), Some(4)]);
    let rows = query(&engine, "SELECT id FROM rt WHERE dept IS NULL")
        .await
        .unwrap();
    assert_eq!(i64s(&rows, "id"), [Some(4)]);
    let plan = explain(&engine, "SELECT id FROM rt WHERE dept = 'ops'").await;
    assert!(plan.contains("WHERE \"dept\" = "), "{plan}");
    assert!(!plan.contains("FilterExec"), "{plan}");
}

/// A sink that fails part-way leaves no table, no metadata rows and no new key.
pub(crate) async fn failed_sink_leaves_nothing(db: &Db, failure: Failure) {
    let table = format!("Failed{failure:?}");
    let cek = format!("CEK_{failure:?}");
    let schema = contosohr::contosohr_schema();
    let good = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(cloister_engine::datafusion::arrow::array::Int32Array::from(
                vec![1, 2],
            )),
            Arc::new(StringArray::from(vec!["795-73-9838", "990-00-6818"])),
            Arc::new(StringArray::from(vec!["Catherine", "Kim"])),
            Arc::new(StringArray::from(vec!["Abel", "Abercrombie"])),
            Arc::new(Int64Array::from(vec![31_692, 990])),
        ],
    )
    .unwrap();
    let second = match failure {
        Failure::Stream => Err(DataFusionError::Execution("the job failed".into())),
        // One SSN too long for char(11): the second batch cannot be encrypted.
        Failure::Value => Ok(RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(cloister_engine::datafusion::arrow::array::Int32Array::from(
                    vec![3],
                )),
                Arc::new(StringArray::from(vec!["009-37-3952-0"])),
                Arc::new(StringArray::from(vec!["Frances"])),
                Arc::new(StringArray::from(vec!["Adams"])),
                Arc::new(Int64Array::from(vec![5_684])),
            ],
        )
        .unwrap()),
    };
    let stream = RecordBatchStreamAdapter::new(
        schema.clone(),
        futures::stream::iter(vec![Ok(good), second]),
    );
    let mut encryption = contosohr::contosohr_encryption();
    for c in &mut encryption {
        c.cek_name = cek.clone();
    }
    let sink = encryption
        .into_iter()
        .fold(
            SqlSink::new(db.db.clone(), &table, keys()),
            SqlSink::encrypt,
        )
        .create_keys_under(cmk1());
    let err = sink.write(Box::pin(stream)).await.unwrap_err();
    match failure {
        Failure::Stream => assert!(matches!(err, sql::Error::Input { .. }), "{err:?}"),
        Failure::Value => assert!(
            matches!(&err, sql::Error::Value { column, .. } if column == "SSN"),
            "{err:?}"
        ),
    }

    assert!(matches!(
        open(db, &table).await,
        Err(sql::Error::NoSuchTable { .. })
    ));
    let leftovers = db
        .count(&format!(
            "SELECT count(*) FROM cloister_encrypted_columns WHERE table_name = '{table}'"
        ))
        .await
        + db.count(&format!(
            "SELECT count(*) FROM cloister_column_encryption_keys WHERE name = '{cek}'"
        ))
        .await;
    assert_eq!(leftovers, 0, "metadata of the failed write survived");
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Failure {
    /// The input stream fails after one batch.
    Stream,
    /// A value of the second batch cannot be encrypted.
    Value,
}

// ----- canary scan -----

/// Plaintext that must not appear, in any encoding (`cloister_testkit::canary::found`), in
/// anything the database stores. `bounded_numbers` also looks for salaries as decimal text
/// (only for text formats, and only salaries of four or more digits, which no other number in
/// those files can be confused with).
pub(crate) struct Canary {
    needles: Vec<(String, Vec<u8>)>,
    numbers: Vec<String>,
}

impl Canary {
    pub(crate) fn contosohr() -> Self {
        let mut needles = Vec::new();
        let mut numbers = Vec::new();
        for e in employees() {
            needles.push((format!("SSN {}", e.ssn), e.ssn.as_bytes().to_vec()));
            let utf16: Vec<u8> = e.ssn.encode_utf16().flat_map(u16::to_le_bytes).collect();
            needles.push((format!("SSN {} (UTF-16)", e.ssn), utf16));
            // The money serialisation SQL Server encrypts (× 10⁴, high half first).
            let v = e.salary * 10_000;
            let mut money = ((v >> 32) as i32).to_le_bytes().to_vec();
            money.extend_from_slice(&(v as u32).to_le_bytes());
            needles.push((format!("salary {} (money)", e.salary), money));
            if e.salary >= 1000 {
                numbers.push(e.salary.to_string());
            }
        }
        Self { needles, numbers }
    }

    /// What of the canary `bytes` contain; `text` also checks salaries as numbers.
    pub(crate) fn find(&self, bytes: &[u8], text: bool) -> Vec<String> {
        let mut found: Vec<String> = self
            .needles
            .iter()
            .filter(|(_, n)| !canary::found(bytes, n).is_empty())
            .map(|(what, _)| what.clone())
            .collect();
        if text {
            for number in &self.numbers {
                if contains_token(bytes, number.as_bytes()) {
                    found.push(format!("salary {number} (text)"));
                }
            }
        }
        found
    }
}

/// `needle` with no letter or digit right before or after it.
fn contains_token(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle
            && (i == 0 || !haystack[i - 1].is_ascii_alphanumeric())
            && haystack
                .get(i + needle.len())
                .is_none_or(|b| !b.is_ascii_alphanumeric())
    })
}

/// The SQLite file and its journals.
fn sqlite_files(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    ["", "-journal", "-wal", "-shm"]
        .iter()
        .map(|suffix| PathBuf::from(format!("{}{suffix}", path.display())))
        .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
        .collect()
}

// ----- SQLite -----

fn sqlite_db(dir: &tempfile::TempDir) -> Db {
    Db::sqlite(&dir.path().join("contosohr.db"))
}

#[tokio::test]
async fn sqlite_contosohr_statistics_match_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    contosohr_statistics(&sqlite_db(&dir)).await;
}

#[tokio::test]
async fn sqlite_deterministic_equality_is_pushed_down_as_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    deterministic_pushdown(&sqlite_db(&dir)).await;
}

#[tokio::test]
async fn sqlite_wrong_cmk_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir);
    load_contosohr(&db).await;
    wrong_cmk(&db).await;
}

#[tokio::test]
async fn sqlite_tampered_cell_fails_its_mac() {
    let dir = tempfile::tempdir().unwrap();
    tampered_cell(&sqlite_db(&dir)).await;
}

#[tokio::test]
async fn sqlite_sink_round_trip_deterministic_and_randomized() {
    let dir = tempfile::tempdir().unwrap();
    sink_round_trip(&sqlite_db(&dir)).await;
}

#[rstest::rstest]
#[case::stream_error(Failure::Stream)]
#[case::value_error(Failure::Value)]
#[tokio::test]
async fn sqlite_failed_sink_leaves_no_table_or_rows(#[case] failure: Failure) {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_db(&dir);
    // Metadata tables and a committed key exist before; the failed write adds nothing.
    load_contosohr(&db).await;
    failed_sink_leaves_nothing(&db, failure).await;
    let tables = db
        .count("SELECT count(*) FROM sqlite_master WHERE type = 'table'")
        .await;
    assert_eq!(tables, 4, "the three metadata tables and Employees");
}

#[tokio::test]
async fn sqlite_file_holds_no_plaintext_ssn_or_salary() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("contosohr.db");
    let db = Db::sqlite(&path);
    load_contosohr(&db).await;
    load_contosohr_deterministic(&db, "EmployeesDet").await;
    failed_sink_leaves_nothing(&db, Failure::Stream).await;

    let canary = Canary::contosohr();
    let files = sqlite_files(&path);
    assert!(!files.is_empty());
    for (file, bytes) in &files {
        let found = canary.find(bytes, true);
        assert!(
            found.is_empty(),
            "{} holds plaintext: {found:?}",
            file.display()
        );
    }
    // The scan sees the file's content: plaintext columns are there.
    let main = &files[0].1;
    assert!(contains(main, b"Abercrombie") && contains(main, b"Vicknair"));

    // And it would see a leak: the same data written without encryption.
    let control_path = dir.path().join("control.db");
    let control = SqlDatabase::sqlite(&control_path);
    let sink = SqlSink::new(control, "Employees", keys());
    let rows = sql::load_csv(
        engine().session(),
        Path::new(CSV),
        contosohr::contosohr_schema(),
        &sink,
    )
    .await
    .context("plaintext control")?;
    assert_eq!(rows, 270);
    let leaked = canary.find(&std::fs::read(&control_path)?, true);
    assert!(
        leaked.iter().any(|f| f.starts_with("SSN 795-73-9838")),
        "{leaked:?}"
    );
    Ok(())
}

#[test]
fn canary_tokens_need_boundaries() {
    assert!(contains_token(b"a\t31692\n", b"31692"));
    assert!(contains_token(b"31692", b"31692"));
    assert!(!contains_token(b"\\x0131692ab", b"31692"));
    assert!(!contains_token(b"1316920", b"31692"));
}

//! End-to-end tests of the engine: its cryptographic data plane through SQL (here), and in
//! `suite/`: sqllogictest golden files, SQL apps, and object stores on Azurite and moto.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod suite;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};
use cloister_engine::datafusion::arrow::array::{Array, AsArray, RecordBatch};
use cloister_engine::datafusion::arrow::compute::{cast, concat};
use cloister_engine::datafusion::arrow::datatypes::{
    DataType, Float32Type, Float64Type, Int64Type,
};
use cloister_engine::datafusion::error::DataFusionError;
use cloister_engine::datafusion::prelude::SessionConfig;
use cloister_engine::{
    EncryptionOptions, Engine, EngineBuilder, Error, InMemoryKeyProvider, OutputPolicy,
    SpillConfig, SpillObserver,
};
use cloister_testkit::canary::{self, files_under};
use cloister_testkit::services::chain;
use rstest::rstest;

const TESTDATA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/parquet-encryption"
);

// ----- helpers -----

/// The keys of `testdata/parquet-encryption/README.md`. The README lists them as
/// `{0,1,2,…}`, but the bytes are the ASCII digits (`b"0123456789012345"`), as in the Parquet
/// C++ and parquet-mr tests that wrote the files.
fn readme_keys(aes256: bool) -> InMemoryKeyProvider {
    let keys = InMemoryKeyProvider::new();
    if aes256 {
        keys.insert("kf", b"01234567890123456789012345678901".to_vec())
            .unwrap();
        for n in 1..=8u8 {
            let mut key = b"1234567890123456789012345678901".to_vec();
            key.push(b'1' + n);
            keys.insert(format!("kc{n}"), key).unwrap();
        }
    } else {
        keys.insert("kf", b"0123456789012345".to_vec()).unwrap();
        keys.insert("kc1", b"1234567890123450".to_vec()).unwrap();
        keys.insert("kc2", b"1234567890123451".to_vec()).unwrap();
    }
    keys
}

/// These tests write files with some columns deliberately unencrypted (to check exactly
/// which are), so they allow plaintext columns; `suite::app` tests the default policy.
fn new_engine(keys: InMemoryKeyProvider) -> Engine {
    EngineBuilder::new(Arc::new(keys))
        .output_policy(OutputPolicy::encrypted_only().allow_plaintext_columns())
        .build()
        .unwrap()
}

async fn query(engine: &Engine, sql: &str) -> Result<Vec<RecordBatch>, DataFusionError> {
    engine.sql(sql).await?.collect().await
}

/// Column `name` of all batches, cast to `ty`.
fn column(batches: &[RecordBatch], name: &str, ty: &DataType) -> Arc<dyn Array> {
    let parts: Vec<Arc<dyn Array>> = batches
        .iter()
        .map(|b| cast(b.column_by_name(name).unwrap(), ty).unwrap())
        .collect();
    let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
    concat(&refs).unwrap()
}

fn f64s(batches: &[RecordBatch], name: &str) -> Vec<Option<f64>> {
    let col = column(batches, name, &DataType::Float64);
    col.as_primitive::<Float64Type>().iter().collect()
}

fn strings(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    let col = column(batches, name, &DataType::Utf8);
    col.as_string::<i32>()
        .iter()
        .map(|s| s.map(str::to_owned))
        .collect()
}

async fn register(engine: &Engine, table: &str, location: &Path, options: &str) {
    try_register(engine, table, location, options)
        .await
        .unwrap();
}

async fn try_register(
    engine: &Engine,
    table: &str,
    location: &Path,
    options: &str,
) -> Result<(), DataFusionError> {
    let sql = format!(
        "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{}' OPTIONS ({options})",
        location.display()
    );
    engine.sql(&sql).await.map(|_| ())
}

/// Register and query; DataFusion reads the footer already when registering (schema
/// inference), so a key or format error can surface at either step.
async fn register_and_query(
    engine: &Engine,
    location: &Path,
    options: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, DataFusionError> {
    try_register(engine, "t", location, options).await?;
    query(engine, sql).await
}

fn sql_factory_options(extra: &[(&str, &str)]) -> String {
    let mut parts = vec!["'format.crypto.factory_id' 'cloister'".to_owned()];
    for (k, v) in extra {
        parts.push(format!("'format.crypto.factory_options.{k}' '{v}'"));
    }
    parts.join(", ")
}

// ----- parquet-testing files (written by Parquet C++ and parquet-mr) -----

#[rstest]
#[case::uniform("uniform_encryption.parquet.encrypted", false, None)]
#[case::columns_and_footer("encrypt_columns_and_footer.parquet.encrypted", false, None)]
#[case::plaintext_footer("encrypt_columns_plaintext_footer.parquet.encrypted", false, None)]
#[case::aad_prefix_not_stored(
    "encrypt_columns_and_footer_disable_aad_storage.parquet.encrypted",
    false,
    Some("tester")
)]
#[case::aes256_uniform("aes256/uniform_encryption.parquet.encrypted", true, None)]
#[case::aes256_columns_and_footer(
    "aes256/encrypt_columns_and_footer.parquet.encrypted",
    true,
    None
)]
#[case::aes256_plaintext_footer(
    "aes256/encrypt_columns_plaintext_footer.parquet.encrypted",
    true,
    None
)]
#[tokio::test]
async fn reads_parquet_testing_files(
    #[case] file: &str,
    #[case] aes256: bool,
    #[case] aad_prefix: Option<&str>,
) {
    let engine = new_engine(readme_keys(aes256));
    let extra: Vec<(&str, &str)> = aad_prefix.map(|p| ("aad_prefix", p)).into_iter().collect();
    register(
        &engine,
        "t",
        &Path::new(TESTDATA).join(file),
        &sql_factory_options(&extra),
    )
    .await;

    let batches = query(&engine, "SELECT * FROM t").await.unwrap();
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 50, "{file}");
    // Both writers use "linear" data: row i has float_field = i * 1.1f and
    // double_field = i * 1.1111111, and ba_field = "parquet…" on even rows, null on odd ones.
    let doubles = f64s(&batches, "double_field");
    let floats = column(&batches, "float_field", &DataType::Float32);
    let floats = floats.as_primitive::<Float32Type>();
    let blobs = column(&batches, "ba_field", &DataType::Binary);
    let blobs = blobs.as_binary::<i32>();
    for (i, double) in doubles.iter().enumerate() {
        assert_eq!(*double, Some(i as f64 * 1.1111111), "{file} row {i}");
        assert_eq!(floats.value(i), i as f32 * 1.1f32, "{file} row {i}");
        assert_eq!(blobs.is_valid(i), i % 2 == 0, "{file} row {i}");
        if i % 2 == 0 {
            assert!(blobs.value(i).starts_with(b"parquet"), "{file} row {i}");
        }
    }

    // A filter on an encrypted column (pruning reads encrypted statistics and indexes).
    let hit = query(
        &engine,
        "SELECT count(*) AS n FROM t WHERE double_field > 54",
    )
    .await
    .unwrap();
    let n = column(&hit, "n", &DataType::Int64);
    assert_eq!(n.as_primitive::<Int64Type>().value(0), 1);
}

#[tokio::test]
async fn reads_parquet_testing_bloom_filter_file() {
    // 2000 rows: double_field = i + 0.5, float_field = i + 0.25, int32_field = i,
    // name = "name_i"; bloom filters on the two encrypted columns.
    let engine = new_engine(readme_keys(false));
    let file = "encrypt_columns_and_footer_bloom_filter.parquet.encrypted";
    register(
        &engine,
        "t",
        &Path::new(TESTDATA).join(file),
        &sql_factory_options(&[]),
    )
    .await;
    let batches = query(&engine, "SELECT * FROM t").await.unwrap();
    let doubles = f64s(&batches, "double_field");
    let floats = f64s(&batches, "float_field");
    let names = strings(&batches, "name");
    assert_eq!(doubles.len(), 2000);
    for i in 0..2000 {
        assert_eq!(doubles[i], Some(i as f64 + 0.5));
        assert_eq!(floats[i], Some(i as f64 + 0.25));
        assert_eq!(names[i], Some(format!("name_{i}")));
    }
    for (predicate, expected) in [("double_field = 1234.5", 1), ("double_field = 1234.0", 0)] {
        let hit = query(
            &engine,
            &format!("SELECT count(*) AS n FROM t WHERE {predicate}"),
        )
        .await
        .unwrap();
        let n = column(&hit, "n", &DataType::Int64);
        assert_eq!(
            n.as_primitive::<Int64Type>().value(0),
            expected,
            "{predicate}"
        );
    }
}

#[tokio::test]
async fn ctr_file_is_a_clear_unsupported_error() {
    let engine = new_engine(readme_keys(false));
    let err = register_and_query(
        &engine,
        &Path::new(TESTDATA).join("encrypt_columns_and_footer_ctr.parquet.encrypted"),
        &sql_factory_options(&[]),
        "SELECT * FROM t",
    )
    .await
    .unwrap_err();
    let msg = chain(&err);
    assert!(msg.contains("AES_GCM_CTR_V1"), "{msg}");
}

#[tokio::test]
async fn missing_aad_prefix_is_an_error() {
    let engine = new_engine(readme_keys(false));
    let err = register_and_query(
        &engine,
        &Path::new(TESTDATA)
            .join("encrypt_columns_and_footer_disable_aad_storage.parquet.encrypted"),
        &sql_factory_options(&[]),
        "SELECT * FROM t",
    )
    .await
    .unwrap_err();
    assert!(
        chain(&err).to_lowercase().contains("aad"),
        "{}",
        chain(&err)
    );
}

#[rstest]
#[case::wrong_footer_key("kf")]
#[case::wrong_column_key("kc1")]
#[tokio::test]
async fn wrong_key_is_an_error(#[case] wrong: &str) {
    let keys = readme_keys(false);
    keys.insert(wrong, vec![0x42; 16]).unwrap();
    let engine = new_engine(keys);
    let result = register_and_query(
        &engine,
        &Path::new(TESTDATA).join("encrypt_columns_and_footer.parquet.encrypted"),
        &sql_factory_options(&[]),
        "SELECT double_field FROM t",
    )
    .await;
    let err = result.expect_err("reading with a wrong key must fail");
    assert!(
        chain(&err).contains("unable to decrypt") || chain(&err).contains("Unable to decrypt"),
        "{}",
        chain(&err)
    );
}

#[tokio::test]
async fn unknown_key_is_our_typed_error() {
    let keys = readme_keys(false);
    keys.remove("kc2");
    let engine = new_engine(keys);
    let err = register_and_query(
        &engine,
        &Path::new(TESTDATA).join("encrypt_columns_and_footer.parquet.encrypted"),
        &sql_factory_options(&[]),
        "SELECT float_field FROM t",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(Error::find_in(&err), Some(Error::UnknownKey { key_id }) if key_id == "kc2"),
        "{}",
        chain(&err)
    );
}

#[rstest]
#[case::column_data(0.4)]
#[case::footer(0.97)]
#[tokio::test]
async fn tampered_file_is_an_error(#[case] at: f64) {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes =
        std::fs::read(Path::new(TESTDATA).join("encrypt_columns_and_footer.parquet.encrypted"))
            .unwrap();
    let i = (bytes.len() as f64 * at) as usize;
    bytes[i] ^= 0x01;
    let path = dir.path().join("tampered.parquet");
    std::fs::write(&path, &bytes).unwrap();

    let engine = new_engine(readme_keys(false));
    let result =
        register_and_query(&engine, &path, &sql_factory_options(&[]), "SELECT * FROM t").await;
    // The Parquet crate reports a failed page decryption as `ring::error::Unspecified`;
    // a failed footer decryption by name.
    let err = result.expect_err("a tampered file must not read");
    let msg = chain(&err);
    assert!(
        msg.contains("decrypt") || msg.contains("ring::error::Unspecified"),
        "{msg}"
    );
}

// ----- SQL round trip -----

const CANARIES: [&str; 3] = ["CANARY-alice", "CANARY-123-45-6789", "CANARY-bob"];

async fn write_people(engine: &Engine, out: &Path, options: &EncryptionOptions) -> Result<()> {
    let sql = format!(
        "COPY (SELECT * FROM (VALUES \
            (1, 'CANARY-alice', 'CANARY-123-45-6789', 1000.5), \
            (2, 'CANARY-bob', 'CANARY-987-65-4321', 2000.25)) AS p(id, name, ssn, salary)) \
         TO '{}' STORED AS PARQUET OPTIONS ({})",
        out.display(),
        options.to_sql_options()
    );
    engine.sql(&sql).await?.collect().await?;
    Ok(())
}

fn writer_keys() -> InMemoryKeyProvider {
    InMemoryKeyProvider::new()
        .with_key("kf", vec![0x10; 32])
        .and_then(|k| k.with_key("kc1", vec![0x20; 16]))
        .and_then(|k| k.with_key("kc2", vec![0x30; 32]))
        .unwrap()
}

#[rstest]
#[case::raw(EncryptionOptions::new("kf").column_key("kc1", &["ssn"]).column_key("kc2", &["name"]))]
#[case::raw_uniform(EncryptionOptions::new("kf"))]
#[case::raw_plaintext_footer(
    EncryptionOptions::new("kf").column_key("kc1", &["ssn", "name"]).plaintext_footer(true)
)]
#[case::raw_aad_prefix_not_stored(
    EncryptionOptions::new("kf").column_key("kc1", &["ssn", "name"]).aad_prefix("table-7", false)
)]
#[case::kmt_double(EncryptionOptions::new("kf").kmt().column_key("kc1", &["ssn"]).column_key("kc2", &["name"]))]
#[case::kmt_single_256(
    EncryptionOptions::new("kc2").kmt().single_wrapping().data_keys_256().column_key("kc1", &["ssn", "name"])
)]
#[tokio::test]
async fn sql_round_trip_without_plaintext(#[case] options: EncryptionOptions) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("people/");
    let engine = new_engine(writer_keys());
    write_people(&engine, &out, &options).await.unwrap();

    let files = files_under(&out);
    assert!(!files.is_empty());
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        assert!(bytes.ends_with(b"PARE") || bytes.ends_with(b"PAR1"));
        for canary in CANARIES {
            canary::assert_absent(file.as_path(), canary);
        }
        // Key bytes are not in the file either (only ids or wrapped keys).
        canary::assert_absent(&bytes, &[0x20; 16]);
        canary::assert_absent(&bytes, &[0x30; 32]);
    }

    // Read back: only the AAD prefix (when not stored) has to be named.
    let read_options = match options.to_map().get("store_aad_prefix").map(String::as_str) {
        Some("false") => sql_factory_options(&[("aad_prefix", "table-7")]),
        _ => sql_factory_options(&[]),
    };
    register(&engine, "people", &out, &read_options).await;
    let batches = query(&engine, "SELECT * FROM people ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        strings(&batches, "name"),
        vec![Some("CANARY-alice".into()), Some("CANARY-bob".into())]
    );
    assert_eq!(
        strings(&batches, "ssn")[0].as_deref(),
        Some("CANARY-123-45-6789")
    );
    assert_eq!(f64s(&batches, "salary"), vec![Some(1000.5), Some(2000.25)]);

    // Without the factory the data does not read.
    let plain = new_engine(writer_keys());
    let err = register_and_query(&plain, &out, "'format.pruning' 'true'", "SELECT * FROM t")
        .await
        .unwrap_err();
    assert!(chain(&err).contains("decrypt"), "{}", chain(&err));

    // With the factory but without the keys it does not read either.
    let stranger = new_engine(InMemoryKeyProvider::new());
    let err = register_and_query(&stranger, &out, &read_options, "SELECT name, ssn FROM t")
        .await
        .unwrap_err();
    assert!(
        matches!(Error::find_in(&err), Some(Error::UnknownKey { .. })),
        "{}",
        chain(&err)
    );
}

#[tokio::test]
async fn writing_needs_a_known_footer_key() {
    let dir = tempfile::tempdir().unwrap();
    let engine = new_engine(writer_keys());
    let err = write_people(
        &engine,
        &dir.path().join("x/"),
        &EncryptionOptions::new("nope"),
    )
    .await
    .unwrap_err();
    let df = err.downcast_ref::<DataFusionError>().unwrap();
    assert!(matches!(Error::find_in(df), Some(Error::UnknownKey { key_id }) if key_id == "nope"));
}

#[tokio::test]
async fn unknown_factory_option_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = new_engine(writer_keys());
    let sql = format!(
        "COPY (SELECT 1 AS a) TO '{}' STORED AS PARQUET OPTIONS ({})",
        dir.path().join("x/").display(),
        sql_factory_options(&[("footer_key", "kf"), ("footer_key_bytes", "00")])
    );
    let err = match engine.sql(&sql).await {
        Ok(df) => df.collect().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(
        Error::find_in(&err),
        Some(Error::InvalidOption { option, .. }) if option == "footer_key_bytes"
    ));
}

// ----- pyarrow interop -----

struct Peer {
    python: String,
    script: PathBuf,
}

/// The pyarrow peer, or `None` (with the reason printed) when pyarrow is not installed locally.
/// Under `CI=true` a missing peer fails the test.
fn peer() -> Option<Peer> {
    let python = std::env::var("CLOISTER_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peer/parquet_peer.py");
    let ok = Command::new(&python)
        .arg(&script)
        .arg("check")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        return Some(Peer { python, script });
    }
    let reason = format!(
        "pyarrow peer unavailable: `{python}` cannot import pyarrow.parquet.encryption and \
         cryptography (set CLOISTER_PYTHON to an interpreter that can)"
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const MASTER_KF: [u8; 16] = [0xA1; 16];
const MASTER_KC1: [u8; 32] = [0xB2; 32];
const MASTER_KC2: [u8; 16] = [0xC3; 16];

fn master_keys() -> InMemoryKeyProvider {
    InMemoryKeyProvider::new()
        .with_key("kf", MASTER_KF.to_vec())
        .and_then(|k| k.with_key("kc1", MASTER_KC1.to_vec()))
        .and_then(|k| k.with_key("kc2", MASTER_KC2.to_vec()))
        .unwrap()
}

impl Peer {
    fn run(&self, args: &[&str], double_wrapping: bool) -> Result<String> {
        let config = serde_json::json!({
            "master_keys": {"kf": hex(&MASTER_KF), "kc1": hex(&MASTER_KC1), "kc2": hex(&MASTER_KC2)},
            "footer_key": "kf",
            "column_keys": {"kc1": ["ssn"], "kc2": ["name"]},
            "double_wrapping": double_wrapping,
        });
        let mut child = Command::new(&self.python)
            .arg(&self.script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting the pyarrow peer")?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().context("peer stdin")?;
            stdin.write_all(config.to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "peer {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

#[rstest]
#[case::double_wrapping(true)]
#[case::single_wrapping(false)]
#[tokio::test]
async fn pyarrow_writes_cloister_reads(#[case] double_wrapping: bool) {
    let Some(peer) = peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from_pyarrow.parquet");
    peer.run(&["write", file.to_str().unwrap()], double_wrapping)
        .unwrap();
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.ends_with(b"PARE"));
    canary::assert_absent(&bytes, b"CANARY");

    let engine = new_engine(master_keys());
    register(&engine, "peer", &file, &sql_factory_options(&[])).await;
    let batches = query(&engine, "SELECT * FROM peer ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        strings(&batches, "name"),
        vec![
            Some("CANARY-py-alice".into()),
            Some("CANARY-py-bob".into()),
            Some("CANARY-py-carol".into())
        ]
    );
    assert_eq!(
        strings(&batches, "ssn")[2].as_deref(),
        Some("CANARY-333-33-3333")
    );
    assert_eq!(
        f64s(&batches, "salary"),
        vec![Some(1000.5), Some(2000.25), Some(3000.0)]
    );

    // The same file under a wrong master key: a typed unwrap failure.
    let wrong = master_keys();
    wrong.insert("kf", vec![0; 16]).unwrap();
    let engine = new_engine(wrong);
    let err = register_and_query(&engine, &file, &sql_factory_options(&[]), "SELECT * FROM t")
        .await
        .unwrap_err();
    assert!(
        matches!(Error::find_in(&err), Some(Error::UnwrapFailed { wrapping_key }) if wrapping_key == "kf"),
        "{}",
        chain(&err)
    );
}

#[rstest]
#[case::double_wrapping(EncryptionOptions::new("kf").kmt())]
#[case::single_wrapping_256(EncryptionOptions::new("kf").kmt().single_wrapping().data_keys_256())]
#[case::plaintext_footer(EncryptionOptions::new("kf").kmt().plaintext_footer(true))]
#[tokio::test]
async fn cloister_writes_pyarrow_reads(#[case] options: EncryptionOptions) {
    let Some(peer) = peer() else { return };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("to_pyarrow/");
    let engine = new_engine(master_keys());
    let options = options
        .column_key("kc1", &["ssn"])
        .column_key("kc2", &["name"]);
    write_people(&engine, &out, &options).await.unwrap();

    let files = files_under(&out);
    let mut args = vec!["read"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let json = peer.run(&args, true).unwrap();
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        rows["name"],
        serde_json::json!(["CANARY-alice", "CANARY-bob"])
    );
    assert_eq!(
        rows["ssn"],
        serde_json::json!(["CANARY-123-45-6789", "CANARY-987-65-4321"])
    );
    assert_eq!(rows["salary"], serde_json::json!([1000.5, 2000.25]));
}

// ----- encrypted spill -----

#[derive(Default)]
struct SpillAudit {
    files: Mutex<Vec<(PathBuf, u64, bool)>>,
}

impl SpillObserver for SpillAudit {
    fn file_finished(&self, path: &Path, bytes: u64, _chunks: u64) {
        // Read what is really on disk at the moment the file is complete.
        let on_disk = std::fs::read(path).unwrap_or_default();
        let leaked = !canary::found(&on_disk, b"CANARY-SPILL").is_empty();
        self.files
            .lock()
            .unwrap()
            .push((path.to_path_buf(), bytes, leaked));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_sort_spills_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(SpillAudit::default());
    let mut config = SessionConfig::new()
        .with_target_partitions(1)
        .with_sort_spill_reservation_bytes(1024 * 1024);
    config.options_mut().execution.spill_compression =
        cloister_engine::datafusion::common::config::SpillCompression::Uncompressed;
    let engine = EngineBuilder::new(Arc::new(InMemoryKeyProvider::new()))
        .memory_limit(16 * 1024 * 1024)
        .spill(SpillConfig::default().directory(dir.path()))
        .spill_observer(audit.clone())
        .session_config(config)
        .build()
        .unwrap();

    const ROWS: i64 = 1_000_000;
    let batches = query(
        &engine,
        &format!(
            "SELECT value, 'CANARY-SPILL-' || CAST(value * 7919 % {ROWS} AS VARCHAR) AS s \
             FROM generate_series(1, {ROWS}) ORDER BY s DESC"
        ),
    )
    .await
    .unwrap();
    let sorted = strings(&batches, "s");
    assert_eq!(sorted.len(), ROWS as usize);
    assert!(sorted.windows(2).all(|w| w[0] >= w[1]), "not sorted");
    assert_eq!(sorted[0].as_deref(), Some("CANARY-SPILL-999999"));

    let stats = engine.spill_stats();
    let files = audit.files.lock().unwrap().clone();
    assert!(stats.files_created > 0, "the sort did not spill: {stats:?}");
    assert_eq!(files.len() as u64, stats.files_finished);
    assert!(
        files
            .iter()
            .all(|(path, _, _)| path.starts_with(dir.path()))
    );
    assert!(files.iter().all(|(_, bytes, _)| *bytes > 0));
    assert!(
        files.iter().all(|(_, _, leaked)| !leaked),
        "plaintext canary in a spill file"
    );
    // Everything was deleted after the query.
    assert_eq!(engine.spill_stats().bytes_on_disk, 0);
}

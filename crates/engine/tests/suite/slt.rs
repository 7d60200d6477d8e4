//! SQL behaviour pinned in sqllogictest golden files (`tests/slt/*.slt`), EXPLAIN included.
//!
//! Every `.slt` file runs against a fresh [`Engine`] with the encrypted parquet-testing files
//! registered as tables (`uniform`, `columns`, `bloom`; keys by id from the README) and a
//! scratch directory for `COPY` outputs, named `${WORK}` in the files (with
//! `control substitution on`). Absolute paths in results (EXPLAIN shows file names) are
//! replaced by `TESTDATA/` and `WORK/`.
//!
//! To regenerate the expected results after a deliberate change, run
//! `CLOISTER_SLT_COMPLETE=1 cargo test -p cloister-engine --test engine slt` and review the diff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloister_engine::datafusion::arrow::array::RecordBatch;
use cloister_engine::datafusion::arrow::datatypes::DataType;
use cloister_engine::datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use cloister_engine::datafusion::error::DataFusionError;
use cloister_engine::datafusion::prelude::SessionConfig;
use cloister_engine::{Engine, EngineBuilder, OutputPolicy};
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::readme_keys;

struct SltEngine {
    engine: Engine,
    /// (absolute path, placeholder) pairs applied to every result cell.
    replacements: Vec<(String, &'static str)>,
}

fn column_type(ty: &DataType) -> DefaultColumnType {
    match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => DefaultColumnType::FloatingPoint,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => DefaultColumnType::Text,
        _ => DefaultColumnType::Any,
    }
}

impl SltEngine {
    fn normalize(&self, cell: String) -> String {
        let mut cell = cell;
        for (path, placeholder) in &self.replacements {
            cell = cell.replace(path.as_str(), placeholder);
            // Object-store paths have no leading slash.
            cell = cell.replace(path.trim_start_matches('/'), placeholder);
        }
        if cell.is_empty() {
            "(empty)".to_owned()
        } else {
            cell
        }
    }

    /// Rows as strings; a multi-line cell (EXPLAIN plans) becomes one row per line.
    fn rows(&self, batches: &[RecordBatch]) -> Result<Vec<Vec<String>>, DataFusionError> {
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                let cells: Vec<String> = formatters
                    .iter()
                    .map(|f| self.normalize(f.value(row).to_string()))
                    .collect();
                let lines: Vec<Vec<&str>> = cells.iter().map(|c| c.lines().collect()).collect();
                let height = lines.iter().map(Vec::len).max().unwrap_or(1).max(1);
                for i in 0..height {
                    rows.push(
                        lines
                            .iter()
                            .map(|l| l.get(i).map(|s| (*s).to_owned()).unwrap_or_default())
                            .collect(),
                    );
                }
            }
        }
        Ok(rows)
    }
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for SltEngine {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        let df = self.engine.sql(sql).await?;
        let schema = df.schema().as_arrow().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: schema
                .fields()
                .iter()
                .map(|f| column_type(f.data_type()))
                .collect(),
            rows: self.rows(&batches)?,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "cloister"
    }

    async fn sleep(dur: Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn testdata() -> PathBuf {
    std::fs::canonicalize(crate::TESTDATA).unwrap()
}

async fn make_engine(work: &Path) -> Result<SltEngine, DataFusionError> {
    let keys = readme_keys(false);
    keys.insert("out-master", vec![0x4D; 32]).unwrap();
    // Fixed partitioning, so that plans do not depend on the machine's core count.
    let config = SessionConfig::new().with_target_partitions(2);
    let engine = EngineBuilder::new(Arc::new(keys))
        .session_config(config)
        .output_policy(OutputPolicy::default())
        .build()?;
    let data = testdata();
    for (table, file) in [
        ("uniform", "uniform_encryption.parquet.encrypted"),
        ("columns", "encrypt_columns_and_footer.parquet.encrypted"),
        (
            "bloom",
            "encrypt_columns_and_footer_bloom_filter.parquet.encrypted",
        ),
    ] {
        engine
            .sql(&format!(
                "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '{}' \
                 OPTIONS ('format.crypto.factory_id' 'cloister')",
                data.join(file).display()
            ))
            .await?;
    }
    let work = std::fs::canonicalize(work).unwrap();
    Ok(SltEngine {
        engine,
        replacements: vec![
            (format!("{}/", data.display()), "TESTDATA/"),
            (format!("{}/", work.display()), "WORK/"),
        ],
    })
}

/// Compare whole rows, normalised (whitespace collapsed), so that the empty first cell of an
/// EXPLAIN continuation line does not count as a leading space.
fn validator(
    normalizer: sqllogictest::Normalizer,
    actual: &[Vec<String>],
    expected: &[String],
) -> bool {
    let actual: Vec<String> = actual
        .iter()
        .map(|row| normalizer(&row.join(" ")))
        .collect();
    let expected: Vec<String> = expected.iter().map(normalizer).collect();
    actual == expected
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt_golden_files() {
    let files = slt_files();
    assert!(files.len() >= 4, "{files:?}");
    let complete = std::env::var("CLOISTER_SLT_COMPLETE").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();
    for file in &files {
        let work = tempfile::tempdir().unwrap();
        let work_path = std::fs::canonicalize(work.path()).unwrap();
        let work_for_conn = work_path.clone();
        let mut runner = sqllogictest::Runner::new(move || {
            let work = work_for_conn.clone();
            async move { make_engine(&work).await }
        });
        runner.set_var("WORK".into(), work_path.display().to_string());
        runner.with_column_validator(sqllogictest::strict_column_validator);
        runner.with_validator(validator);
        let result = if complete {
            runner
                .update_test_file(
                    file,
                    " ",
                    validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::strict_column_validator,
                )
                .await
                .map_err(|e| e.to_string())
        } else {
            runner.run_file_async(file).await.map_err(|e| e.to_string())
        };
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        match result {
            Ok(()) => eprintln!("slt {name}: ok"),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

//! Loading CSV files into encrypted tables, and the ContosoHR sample as its setup encrypts it.
//!
//! `testdata/contosohr-schema.md` describes the Always Encrypted demo database: table
//! `dbo.Employees` with `SSN char(11)` and `Salary money` both encrypted RANDOMIZED under CEK
//! `CEK1`, wrapped by CMK `CMK1`, which allows enclave computations. [`load_contosohr`] builds
//! the same table (named `Employees`: SQLite has no schemas) from the sample CSV.

use std::path::Path;
use std::sync::Arc;

use cloister_colenc::{CodePage, SqlType};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::prelude::{CsvReadOptions, SessionContext};

use super::Error;
use super::database::SqlDatabase;
use super::keys::{ColumnMasterKeyDefinition, ColumnMasterKeyProvider};
use super::sink::{ColumnEncryption, SqlSink};

/// The ContosoHR table.
pub const CONTOSOHR_TABLE: &str = "Employees";
/// The ContosoHR column encryption key.
pub const CONTOSOHR_CEK: &str = "CEK1";
/// The ContosoHR column master key.
pub const CONTOSOHR_CMK: &str = "CMK1";

/// The columns of `contosohr-employees.csv`: `EmployeeID` int, `SSN`, `FirstName`,
/// `LastName` text, `Salary` a whole number (stored as `money`).
pub fn contosohr_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("EmployeeID", DataType::Int32, false),
        Field::new("SSN", DataType::Utf8, false),
        Field::new("FirstName", DataType::Utf8, false),
        Field::new("LastName", DataType::Utf8, false),
        Field::new("Salary", DataType::Int64, false),
    ]))
}

/// ContosoHR's column encryption: `SSN char(11) COLLATE Latin1_General_BIN2` and
/// `Salary money`, both RANDOMIZED under `CEK1`.
pub fn contosohr_encryption() -> Vec<ColumnEncryption> {
    vec![
        ColumnEncryption::randomized("SSN", CONTOSOHR_CEK).sql_type(SqlType::Char {
            len: 11,
            code_page: CodePage::Ascii,
        }),
        ColumnEncryption::randomized("Salary", CONTOSOHR_CEK).sql_type(SqlType::Money),
    ]
}

/// `CMK1` at `key_store_provider_name` / `key_path`, allowing enclave computations as in the
/// demo (its metadata is signed).
pub fn contosohr_cmk(key_store_provider_name: &str, key_path: &str) -> ColumnMasterKeyDefinition {
    ColumnMasterKeyDefinition::new(CONTOSOHR_CMK, key_store_provider_name, key_path)
        .enclave_computations(true)
}

/// Read the CSV file `csv` (with a header row, columns as `schema`) and write it through
/// `sink` in one transaction; the number of rows written.
pub async fn load_csv(
    ctx: &SessionContext,
    csv: &Path,
    schema: SchemaRef,
    sink: &SqlSink,
) -> Result<u64, Error> {
    let input = |source| Error::Input {
        table: sink.table().to_owned(),
        source,
    };
    let path = csv.to_str().ok_or_else(|| Error::Input {
        table: sink.table().to_owned(),
        source: datafusion::error::DataFusionError::Plan(format!(
            "CSV path {} is not UTF-8",
            csv.display()
        )),
    })?;
    let options = CsvReadOptions::new().has_header(true).schema(&schema);
    let frame = ctx.read_csv(path, options).await.map_err(input)?;
    let stream = frame.execute_stream().await.map_err(input)?;
    sink.write(stream).await
}

/// Load `contosohr-employees.csv` into table `Employees` of `db` as the demo's setup encrypts
/// it: `CEK1` is created under `cmk` if the database does not have it yet (the CMK's private
/// key comes from `keys`).
pub async fn load_contosohr(
    ctx: &SessionContext,
    csv: &Path,
    db: SqlDatabase,
    keys: Arc<dyn ColumnMasterKeyProvider>,
    cmk: ColumnMasterKeyDefinition,
) -> Result<u64, Error> {
    let sink = contosohr_encryption()
        .into_iter()
        .fold(SqlSink::new(db, CONTOSOHR_TABLE, keys), SqlSink::encrypt)
        .create_keys_under(cmk);
    load_csv(ctx, csv, contosohr_schema(), &sink).await
}

//! The ContosoHR sample as its setup encrypts it: the tests' own fixture (the demo has its
//! copy in `cloister demo contoso`; neither is public API of the crate).
//!
//! `testdata/contosohr-schema.md` describes the Always Encrypted demo database: table
//! `dbo.Employees` with `SSN char(11)` and `Salary money` both encrypted RANDOMIZED under CEK
//! `CEK1`, wrapped by CMK `CMK1`, which allows enclave computations. [`load_contosohr`] builds
//! the same table (named `Employees`: SQLite has no schemas) from the sample CSV.

use std::path::Path;
use std::sync::Arc;

use cloister_colenc::{CodePage, SqlType};
use cloister_engine::datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use cloister_engine::datafusion::prelude::SessionContext;
use cloister_sqldb::{
    ColumnEncryption, ColumnMasterKeyDefinition, ColumnMasterKeyProvider, Error, SqlDatabase,
    SqlSink, load_csv,
};

/// The ContosoHR table.
pub(crate) const CONTOSOHR_TABLE: &str = "Employees";
/// The ContosoHR column encryption key.
pub(crate) const CONTOSOHR_CEK: &str = "CEK1";
/// The ContosoHR column master key.
pub(crate) const CONTOSOHR_CMK: &str = "CMK1";

/// The columns of `contosohr-employees.csv`: `EmployeeID` int, `SSN`, `FirstName`,
/// `LastName` text, `Salary` a whole number (stored as `money`).
pub(crate) fn contosohr_schema() -> SchemaRef {
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
pub(crate) fn contosohr_encryption() -> Vec<ColumnEncryption> {
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
pub(crate) fn contosohr_cmk(
    key_store_provider_name: &str,
    key_path: &str,
) -> ColumnMasterKeyDefinition {
    ColumnMasterKeyDefinition::new(CONTOSOHR_CMK, key_store_provider_name, key_path)
        .enclave_computations(true)
}

/// Load `contosohr-employees.csv` into table `Employees` of `db` as the demo's setup encrypts
/// it: `CEK1` is created under `cmk` if the database does not have it yet (the CMK's private
/// key comes from `keys`).
pub(crate) async fn load_contosohr(
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

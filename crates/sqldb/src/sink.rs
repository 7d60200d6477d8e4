//! Writing: a record batch stream into a new database table, named columns encrypted.
//!
//! Everything happens in one transaction — creating the key metadata tables if needed, the
//! CMK and CEK rows of keys created on the way, the table, its `cloister_encrypted_columns`
//! rows and every data row — and it commits only after the input stream has ended. Any error,
//! from the stream or the database, rolls it all back; so does a crash, since the transaction
//! was never committed. A failed job leaves no table and no rows.

use std::collections::HashMap;
use std::sync::Arc;

use cloister_colenc::{ALGORITHM, CellCipher, EncryptionType, SqlType};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    Date32Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, TimestampMicrosecondType,
};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

use super::Error;
use super::database::{Conn, Dialect, Kind, SqlDatabase, Value};
use super::keys::{ColumnMasterKeyDefinition, ColumnMasterKeyProvider};
use super::metadata::{self, EncryptedColumn};
use super::types::{array_to_values, default_sql_type, format_sql_type};

/// How one column is encrypted when written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnEncryption {
    /// The column.
    pub column: String,
    /// The CEK to encrypt it under (created if it does not exist yet, see
    /// [`SqlSink::create_keys_under`]).
    pub cek_name: String,
    /// Deterministic or randomized.
    pub encryption_type: EncryptionType,
    /// The SQL Server type of the plaintext; `None` derives it from the Arrow type
    /// (`Utf8` → `nvarchar(max)`, `Int64` → `bigint`, … see
    /// [`default_sql_type`](super::default_sql_type)).
    pub sql_type: Option<SqlType>,
}

impl ColumnEncryption {
    /// Encrypt `column` deterministically under `cek_name`: equality predicates on it can be
    /// pushed down, and equal values are visible as equal cells.
    pub fn deterministic(column: impl Into<String>, cek_name: impl Into<String>) -> Self {
        Self::new(column, cek_name, EncryptionType::Deterministic)
    }

    /// Encrypt `column` with random IVs under `cek_name`.
    pub fn randomized(column: impl Into<String>, cek_name: impl Into<String>) -> Self {
        Self::new(column, cek_name, EncryptionType::Randomized)
    }

    fn new(
        column: impl Into<String>,
        cek_name: impl Into<String>,
        encryption_type: EncryptionType,
    ) -> Self {
        Self {
            column: column.into(),
            cek_name: cek_name.into(),
            encryption_type,
            sql_type: None,
        }
    }

    /// Serialise the plaintext as SQL Server type `ty`.
    pub fn sql_type(mut self, ty: SqlType) -> Self {
        self.sql_type = Some(ty);
        self
    }
}

/// Writes record batches into a new table, encrypting the columns it is told to.
#[derive(Debug)]
pub struct SqlSink {
    db: SqlDatabase,
    table: String,
    columns: Vec<ColumnEncryption>,
    new_keys_under: Option<ColumnMasterKeyDefinition>,
    keys: Arc<dyn ColumnMasterKeyProvider>,
}

/// How a column of the input is stored.
enum Plan {
    Plain(Kind),
    Encrypted {
        ty: SqlType,
        encryption: EncryptionType,
        cipher: Arc<CellCipher>,
    },
}

impl SqlSink {
    /// A sink into the new table `table` of `db`; CEKs are unwrapped (or wrapped) with CMKs
    /// from `keys`.
    pub fn new(
        db: SqlDatabase,
        table: impl Into<String>,
        keys: Arc<dyn ColumnMasterKeyProvider>,
    ) -> Self {
        Self {
            db,
            table: table.into(),
            columns: Vec::new(),
            new_keys_under: None,
            keys,
        }
    }

    /// Encrypt a column.
    pub fn encrypt(mut self, column: ColumnEncryption) -> Self {
        self.columns.retain(|c| c.column != column.column);
        self.columns.push(column);
        self
    }

    /// Create CEKs that the database does not have yet under `cmk` (registering the CMK too).
    /// Without this, every CEK named must already be in the database.
    pub fn create_keys_under(mut self, cmk: ColumnMasterKeyDefinition) -> Self {
        self.new_keys_under = Some(cmk);
        self
    }

    /// The table written.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Write `stream` into the table in one transaction; the number of rows written.
    ///
    /// Errors: [`Error::TableExists`], [`Error::NoSuchColumn`], [`Error::UnknownCek`],
    /// [`Error::UnsupportedArrowType`], [`Error::Value`], [`Error::Input`] (the stream failed),
    /// [`Error::Database`]. After any error nothing of this write is in the database.
    #[tracing::instrument(skip_all, fields(db = self.db.kind(), table = %self.table))]
    pub async fn write(&self, stream: SendableRecordBatchStream) -> Result<u64, Error> {
        let mut conn = self.db.connect().await?;
        match self.write_in(&mut *conn, stream).await {
            Ok(rows) => {
                conn.batch("COMMIT").await?;
                tracing::debug!(rows, "committed encrypted table");
                Ok(rows)
            }
            Err(e) => {
                // Best effort: dropping the connection rolls back as well.
                if let Err(rollback) = conn.batch("ROLLBACK").await {
                    tracing::debug!(error = %rollback, "rollback after a failed write");
                }
                Err(e)
            }
        }
    }

    async fn write_in(
        &self,
        conn: &mut dyn Conn,
        mut stream: SendableRecordBatchStream,
    ) -> Result<u64, Error> {
        let dialect = conn.dialect();
        conn.batch(dialect.begin()).await?;
        conn.batch(&metadata::create_statements(dialect)).await?;
        if conn.columns(&self.table).await?.is_some() {
            return Err(Error::TableExists {
                table: self.table.clone(),
            });
        }

        let schema = stream.schema();
        for spec in &self.columns {
            if schema.field_with_name(&spec.column).is_err() {
                return Err(Error::NoSuchColumn {
                    table: self.table.clone(),
                    column: spec.column.clone(),
                });
            }
        }
        let ciphers = self.ciphers(conn).await?;

        let mut plans = Vec::with_capacity(schema.fields().len());
        let mut definitions = Vec::with_capacity(schema.fields().len());
        let mut encrypted = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            let unsupported = |target: String| Error::UnsupportedArrowType {
                column: name.clone(),
                data_type: field.data_type().to_string(),
                target,
            };
            let plan = match self.columns.iter().find(|c| &c.column == name) {
                Some(spec) => {
                    let ty = match spec.sql_type {
                        Some(ty) => ty,
                        None => default_sql_type(field.data_type())
                            .ok_or_else(|| unsupported("an encrypted column".into()))?,
                    };
                    ty.validate().map_err(|source| Error::Value {
                        column: name.clone(),
                        source,
                    })?;
                    let cipher = ciphers
                        .get(&spec.cek_name)
                        .cloned()
                        .ok_or_else(|| Error::Internal("every CEK was resolved above".into()))?;
                    encrypted.push(EncryptedColumn {
                        table_name: self.table.clone(),
                        column_name: name.clone(),
                        cek_name: spec.cek_name.clone(),
                        encryption_type: spec.encryption_type,
                        algorithm: ALGORITHM.to_owned(),
                        plaintext_type: ty,
                    });
                    tracing::debug!(column = %name, ty = %format_sql_type(&ty), "encrypted column");
                    Plan::Encrypted {
                        ty,
                        encryption: spec.encryption_type,
                        cipher,
                    }
                }
                None => Plan::Plain(
                    Kind::for_arrow(field.data_type(), dialect)
                        .ok_or_else(|| unsupported(format!("a {dialect:?} column")))?,
                ),
            };
            let kind = match &plan {
                Plan::Plain(kind) => *kind,
                Plan::Encrypted { .. } => Kind::Bytes,
            };
            definitions.push(format!(
                "{} {}",
                dialect.quote(name),
                dialect.type_name(kind)
            ));
            plans.push(plan);
        }

        conn.batch(&format!(
            "CREATE TABLE {} ({})",
            dialect.quote(&self.table),
            definitions.join(", ")
        ))
        .await?;
        for column in &encrypted {
            metadata::insert_encrypted_column(conn, column).await?;
        }

        let insert = insert_statement(dialect, &self.table, &schema);
        let mut written = 0;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(|source| Error::Input {
                table: self.table.clone(),
                source,
            })?;
            let rows = encode_batch(&batch, &plans)?;
            written += conn.execute(&insert, rows).await?;
        }
        Ok(written)
    }

    /// A cipher for every CEK named, unwrapping existing CEKs and creating missing ones.
    async fn ciphers(
        &self,
        conn: &mut dyn Conn,
    ) -> Result<HashMap<String, Arc<CellCipher>>, Error> {
        let mut ciphers = HashMap::new();
        for spec in &self.columns {
            if ciphers.contains_key(&spec.cek_name) {
                continue;
            }
            let cek = match metadata::resolve_cek(conn, &spec.cek_name, &*self.keys).await? {
                Some(cek) => cek,
                None => match &self.new_keys_under {
                    Some(cmk) => {
                        metadata::create_cek(conn, &spec.cek_name, cmk, &*self.keys).await?
                    }
                    None => {
                        return Err(Error::UnknownCek {
                            cek: spec.cek_name.clone(),
                        });
                    }
                },
            };
            ciphers.insert(spec.cek_name.clone(), Arc::new(CellCipher::new(&cek)));
        }
        Ok(ciphers)
    }
}

fn insert_statement(
    dialect: Dialect,
    table: &str,
    schema: &datafusion::arrow::datatypes::Schema,
) -> String {
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| dialect.quote(f.name()))
        .collect();
    let placeholders: Vec<String> = (1..=names.len()).map(|i| dialect.placeholder(i)).collect();
    format!(
        "INSERT INTO {} ({}) VALUES ({})",
        dialect.quote(table),
        names.join(", "),
        placeholders.join(", ")
    )
}

/// A batch as rows of database values, encrypted columns encrypted.
fn encode_batch(batch: &RecordBatch, plans: &[Plan]) -> Result<Vec<Vec<Value>>, Error> {
    let schema = batch.schema();
    let mut columns = Vec::with_capacity(plans.len());
    for ((array, plan), field) in batch.columns().iter().zip(plans).zip(schema.fields()) {
        let name = field.name();
        columns.push(match plan {
            Plan::Plain(kind) => plain_values(*kind, array, name)?,
            Plan::Encrypted {
                ty,
                encryption,
                cipher,
            } => array_to_values(ty, array, name)?
                .into_iter()
                .map(|value| match value {
                    None => Ok(Value::Null),
                    Some(value) => cipher
                        .encrypt_value(&value, ty, *encryption)
                        .map(Value::Bytes)
                        .map_err(|source| Error::Value {
                            column: name.clone(),
                            source,
                        }),
                })
                .collect::<Result<Vec<_>, _>>()?,
        });
    }
    let mut rows: Vec<Vec<Value>> = (0..batch.num_rows())
        .map(|_| Vec::with_capacity(columns.len()))
        .collect();
    for column in columns {
        for (row, value) in rows.iter_mut().zip(column) {
            row.push(value);
        }
    }
    Ok(rows)
}

/// The values of a plaintext column as database values of `kind`.
fn plain_values(kind: Kind, array: &ArrayRef, column: &str) -> Result<Vec<Value>, Error> {
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let cast = cast_with_options(array, &kind.arrow_type(), &options).map_err(|_| {
        Error::UnsupportedArrowType {
            column: column.to_owned(),
            data_type: array.data_type().to_string(),
            target: kind.name().to_owned(),
        }
    })?;
    fn all<T>(iter: impl Iterator<Item = Option<T>>, f: impl Fn(T) -> Value) -> Vec<Value> {
        iter.map(|v| v.map_or(Value::Null, &f)).collect()
    }
    Ok(match kind {
        Kind::Bool => all(cast.as_boolean().iter(), Value::Bool),
        Kind::Int16 => all(cast.as_primitive::<Int16Type>().iter(), |v| {
            Value::Int(v.into())
        }),
        Kind::Int32 => all(cast.as_primitive::<Int32Type>().iter(), |v| {
            Value::Int(v.into())
        }),
        Kind::Int64 => all(cast.as_primitive::<Int64Type>().iter(), Value::Int),
        Kind::Float32 => all(cast.as_primitive::<Float32Type>().iter(), |v| {
            Value::Float(v.into())
        }),
        Kind::Float64 => all(cast.as_primitive::<Float64Type>().iter(), Value::Float),
        Kind::Text => all(cast.as_string::<i32>().iter(), |s| {
            Value::Text(s.to_owned())
        }),
        Kind::Bytes => all(cast.as_binary::<i32>().iter(), |b| Value::Bytes(b.to_vec())),
        Kind::Date => all(cast.as_primitive::<Date32Type>().iter(), Value::Date),
        Kind::Timestamp => all(
            cast.as_primitive::<TimestampMicrosecondType>().iter(),
            Value::Timestamp,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn insert_statement_quotes_names() {
        let schema = Schema::new(vec![
            Field::new("a\"b", DataType::Int32, true),
            Field::new("C", DataType::Utf8, true),
        ]);
        assert_eq!(
            insert_statement(Dialect::Postgres, "T", &schema),
            "INSERT INTO \"T\" (\"a\"\"b\", \"C\") VALUES ($1, $2)"
        );
    }

    #[test]
    fn encode_batch_transposes_and_encrypts() {
        let cek = cloister_colenc::Cek::from_bytes(&[7; 32]).unwrap();
        let cipher = Arc::new(CellCipher::new(&cek));
        let ty = SqlType::NVarChar { max_len: None };
        let batch = RecordBatch::try_from_iter(vec![
            (
                "n",
                Arc::new(Int32Array::from(vec![Some(1), None])) as ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let plans = [
            Plan::Plain(Kind::Int32),
            Plan::Encrypted {
                ty,
                encryption: EncryptionType::Deterministic,
                cipher: Arc::clone(&cipher),
            },
        ];
        let rows = encode_batch(&batch, &plans).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][0], Value::Int(1));
        let Value::Bytes(cell) = &rows[0][1] else {
            panic!("not a cell")
        };
        assert_eq!(
            cipher.decrypt_value(cell, &ty).unwrap(),
            cloister_colenc::SqlValue::String("x".into())
        );
        assert_eq!(rows[1], [Value::Null, Value::Null]);
    }
}

//! The error type of the SQL-database data plane, grouped by whose fault it is.
//!
//! At DataFusion's trait boundaries (`TableProvider`, `ExecutionPlan`, record batch streams) an
//! [`Error`] travels inside `DataFusionError::External`; [`Error::find_in`] digs it out again,
//! so that callers and tests match variants, not strings.

use datafusion::error::DataFusionError;

/// Boxed error of a database driver (`rusqlite`, `tokio-postgres`).
pub type DriverError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong reading or writing a SQL database with Always Encrypted columns.
///
/// Variants are grouped by fault: the caller's input (type names, schemas, values) is invalid;
/// it is well-formed but rejected (unknown or wrong keys, tampered cells or metadata); the
/// database is unavailable or failed; a bug. Messages name tables, columns and key names, never
/// key bytes or cell plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- invalid input -----
    /// A SQL Server type name (`cloister_encrypted_columns.plaintext_type`) does not parse.
    #[error("invalid SQL type {text:?}: {reason}")]
    InvalidTypeName {
        /// The type name as given.
        text: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The key metadata tables hold something this engine cannot use.
    #[error("invalid Always Encrypted metadata for {what}: {reason}")]
    InvalidMetadata {
        /// The table, column or key concerned.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A database column has a type that has no Arrow equivalent here.
    #[error("column {table}.{column} has unsupported database type {type_name}")]
    UnsupportedColumnType {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The database's name for the type.
        type_name: String,
    },
    /// An Arrow column cannot be stored (or encrypted as the SQL type asked for).
    #[error("column {column:?} of Arrow type {data_type} cannot be stored as {target}")]
    UnsupportedArrowType {
        /// The column.
        column: String,
        /// Its Arrow type.
        data_type: String,
        /// What it was to become (a database type or a SQL Server type).
        target: String,
    },
    /// The table does not exist.
    #[error("table {table:?} does not exist")]
    NoSuchTable {
        /// The table.
        table: String,
    },
    /// A column named in an encryption setting is not in the data.
    #[error("column {column:?} is not in the data written to {table:?}")]
    NoSuchColumn {
        /// The table being written.
        table: String,
        /// The missing column.
        column: String,
    },
    /// The sink writes new tables only.
    #[error("table {table:?} already exists; the sink only creates new tables")]
    TableExists {
        /// The table.
        table: String,
    },
    /// A column master key's private key is unusable (not an RSA key, too small, …).
    #[error("invalid column master key {location:?}: {source}")]
    InvalidColumnMasterKey {
        /// `provider: key path` of the key.
        location: String,
        /// Why it is refused.
        #[source]
        source: cloister_colenc::Error,
    },
    /// A column encryption key given in the configuration ([`ConfiguredKey`]) is unusable.
    ///
    /// [`ConfiguredKey`]: crate::ConfiguredKey
    #[error("invalid configured column encryption key {cek:?}: {reason}")]
    InvalidKeyConfig {
        /// The CEK's name.
        cek: String,
        /// Why (never the value).
        reason: String,
    },
    /// A value cannot be serialised as its column's SQL type (range, length, scale).
    #[error("a value of column {column:?} cannot be encrypted: {source}")]
    Value {
        /// The column.
        column: String,
        /// The serialisation error (never the value).
        #[source]
        source: cloister_colenc::Error,
    },
    /// A value read from the database does not have the type its column declares.
    #[error("column {column:?} holds a value that is not {expected}")]
    UnexpectedValue {
        /// The column.
        column: String,
        /// The type expected.
        expected: &'static str,
    },
    /// The record batch stream given to the sink failed; nothing was committed.
    #[error("the data written to {table:?} failed; nothing was committed: {source}")]
    Input {
        /// The table being written.
        table: String,
        /// The stream's error.
        #[source]
        source: DataFusionError,
    },

    // ----- rejected -----
    /// No column encryption key of this name is in `cloister_column_encryption_keys`, and the
    /// sink was given no column master key to create it under.
    #[error("unknown column encryption key {cek:?}")]
    UnknownCek {
        /// The key's name.
        cek: String,
    },
    /// None of the column master keys that wrap this CEK is known to the key provider.
    #[error(
        "no column master key for column encryption key {cek:?} is configured; the database names {key_paths:?}"
    )]
    NoColumnMasterKey {
        /// The CEK's name.
        cek: String,
        /// `provider: key path` of each CMK the database says wraps it.
        key_paths: Vec<String>,
    },
    /// A CEK does not unwrap with the configured CMK: the CMK is the wrong key, or the
    /// encrypted value was altered.
    #[error("cannot unwrap column encryption key {cek:?} with column master key {cmk:?}: {source}")]
    CekUnwrap {
        /// The CEK's name.
        cek: String,
        /// The CMK's name.
        cmk: String,
        /// Why (signature, size or key-path mismatch, OAEP failure).
        #[source]
        source: cloister_colenc::Error,
    },
    /// The signature of a CMK's metadata (`cloister_column_master_keys.signature`) does not
    /// verify: the key path or enclave flag was altered, or the CMK is the wrong key.
    #[error("metadata of column master key {cmk:?} does not verify: {source}")]
    CmkMetadata {
        /// The CMK's name.
        cmk: String,
        /// The verification error.
        #[source]
        source: cloister_colenc::Error,
    },
    /// A CMK of this name is already registered with another key store or key path.
    #[error("column master key {cmk:?} is registered as {registered:?}, not {requested:?}")]
    CmkMismatch {
        /// The CMK's name.
        cmk: String,
        /// `provider: key path` in the database.
        registered: String,
        /// `provider: key path` asked for.
        requested: String,
    },
    /// A cell does not decrypt: wrong CEK, altered cell, or not a cell at all.
    #[error("cell of column {table}.{column} does not decrypt: {source}")]
    Cell {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The cell error ([`cloister_colenc::Error::Mac`] for an altered cell).
        #[source]
        source: cloister_colenc::Error,
    },

    // ----- unavailable -----
    /// The database refused or failed an operation, or cannot be reached.
    #[error("database error while {context}: {source}")]
    Database {
        /// What was being done.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: DriverError,
    },

    // ----- bug -----
    /// An invariant of this crate broke (or a key could not be generated).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Who is at fault for an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The caller's input or the stored data is invalid, or was rejected.
    Input,
    /// The database is unavailable or failed.
    Environment,
    /// A bug.
    Internal,
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Database { .. } => Fault::Environment,
            Error::Internal(_) => Fault::Internal,
            _ => Fault::Input,
        }
    }

    /// Find this crate's error in the source chain of `err` (for example a
    /// `DataFusionError` that carries it as `External`, possibly wrapped in context or inside
    /// an `io::Error`).
    pub fn find_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<Error>() {
                return Some(found);
            }
            // `io::Error::other(inner)` reports no source of its own; look inside it (as
            // `cloister_engine::Error::find_in` does).
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && let Some(inner) = io.get_ref()
                && let Some(found) = Error::find_in(inner)
            {
                return Some(found);
            }
            current = e.source();
        }
        None
    }

    pub(crate) fn database(
        context: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error::Database {
            context,
            source: Box::new(source),
        }
    }

    pub(crate) fn metadata(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidMetadata {
            what: what.into(),
            reason: reason.into(),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        DataFusionError::External(Box::new(err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_through_datafusion_wrappers() {
        let inner = Error::Cell {
            table: "t".into(),
            column: "c".into(),
            source: cloister_colenc::Error::Mac,
        };
        let df: DataFusionError = inner.into();
        let df = DataFusionError::Context("scanning".into(), Box::new(df));
        assert!(matches!(
            Error::find_in(&df),
            Some(Error::Cell {
                source: cloister_colenc::Error::Mac,
                ..
            })
        ));
    }

    #[test]
    fn regression_found_inside_an_io_error() {
        // A stream adapter or the Parquet/object-store layers may carry the error as
        // `io::Error::other(..)`, whose `source()` is `None`.
        let inner: DataFusionError = Error::UnknownCek { cek: "CEK1".into() }.into();
        let io = std::io::Error::other(inner);
        let df = DataFusionError::IoError(io);
        assert!(matches!(
            Error::find_in(&df),
            Some(Error::UnknownCek { cek }) if cek == "CEK1"
        ));
    }

    #[test]
    fn faults() {
        let db = Error::database("connecting", std::io::Error::other("refused"));
        assert_eq!(db.fault(), Fault::Environment);
        assert_eq!(Error::Internal("x".into()).fault(), Fault::Internal);
        assert_eq!(Error::UnknownCek { cek: "c".into() }.fault(), Fault::Input);
    }
}

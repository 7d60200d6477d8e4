//! `cloister-sqldb`: SQL databases (SQLite, PostgreSQL) with SQL Server Always Encrypted
//! columns, as DataFusion sources and as sinks.
//!
//! A table-provider crate beside `cloister-engine`, as DataFusion's own table providers are
//! crates beside DataFusion: the engine never depends on it (nor on any database driver), and
//! a workload registers an [`EncryptedSqlTable`] on its engine's session like any other
//! `TableProvider`. Keys come in typed ([`ConfiguredKey`]); which configuration variables carry
//! them is the workload role's business.
//!
//! A table's sensitive columns hold SQL Server cells (`AEAD_AES_256_CBC_HMAC_SHA_256`, see
//! [`cloister_colenc`]) in binary columns; three metadata tables next to it mirror SQL
//! Server's `sys.column_master_keys`, `sys.column_encryption_keys` and the encryption columns of
//! `sys.columns` (see [`metadata`] for the mapping). The database thus holds ciphertext and
//! *wrapped* keys only; the column master keys' private halves come from the runtime's attested
//! configuration through a [`ColumnMasterKeyProvider`], and cells are decrypted and encrypted
//! inside the TEE.
//!
//! - Source: [`EncryptedSqlTable`], a `TableProvider` that decrypts as it scans and sends
//!   equality predicates on deterministic columns to the database as ciphertext equality
//!   (see [`provider`] for what is pushed down and how exactly).
//! - Sink: [`SqlSink`] writes a record batch stream into a new table in one transaction,
//!   encrypting the columns named by [`ColumnEncryption`]s; a failure leaves nothing behind.
//! - [`load_csv`]: a CSV file into a new encrypted table, through a [`SqlSink`].
//! - [`rotate_cek`]: re-encrypt columns under another CEK, atomically.
//!
//! # Design
//!
//! Two drivers, one shape: SQLite in process (`rusqlite`, bundled SQLite, on blocking threads)
//! and PostgreSQL over `tokio-postgres` without TLS (loopback, or a channel the TEE
//! terminates); both sit behind one small connection trait, so the provider, the sink and the
//! metadata code are written once. Every operation opens its own connection. CEKs are
//! unwrapped when a table is opened, so a wrong or missing CMK fails there, with the key's
//! name, not in the middle of a query; tampered cells fail their MAC when read.
//!
//! # Column types
//!
//! Encrypted columns are binary in the database and read as the Arrow type of their SQL Server
//! plaintext type (see [`arrow_type`]; `money` is `Decimal128(19,4)`, `char(n)` is `Utf8`, …).
//! Plaintext columns map by their database type:
//!
//! | Arrow | SQLite (declared type, affinity rules) | PostgreSQL |
//! | --- | --- | --- |
//! | `Boolean` | `BOOLEAN` | `bool` |
//! | `Int16` / `Int32` / `Int64` | `SMALLINT` / — / any other `…INT…` (SQLite integers read as `Int64`) | `int2` / `int4` / `int8` |
//! | `Float32` / `Float64` | — / `REAL`, `FLOAT…`, `DOUBLE…` | `float4` / `float8` |
//! | `Utf8` | `…CHAR…`, `…CLOB…`, `…TEXT…` | `text`, `varchar`, `bpchar`, `name` |
//! | `Binary` | `BLOB` or no type | `bytea` |
//! | `Date32` / `Timestamp(µs)` | — | `date` / `timestamp` |
//!
//! Other plaintext types (`NUMERIC`, `timestamptz`, arrays, …) are refused when the table is
//! opened, naming the column; encrypt such columns, or cast them when writing.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cloister_colenc::Cmk;
//! use cloister_sqldb::{
//!     CLOISTER_KEY_STORE, ColumnEncryption, ColumnMasterKeyDefinition, EncryptedSqlTable,
//!     InMemoryColumnMasterKeys, SqlDatabase, SqlSink,
//! };
//! use cloister_engine::{EngineBuilder, InMemoryKeyProvider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let db = SqlDatabase::sqlite(dir.path().join("hr.db"));
//! // The runtime fills this from its attested configuration.
//! let keys = Arc::new(InMemoryColumnMasterKeys::new().with_key(
//!     CLOISTER_KEY_STORE,
//!     "cmk/hr",
//!     Cmk::generate(2048)?,
//! ));
//! let engine = EngineBuilder::new(Arc::new(InMemoryKeyProvider::new())).build()?;
//!
//! // Write: ssn encrypted deterministically under a new CEK1, wrapped by CMK1.
//! let people = engine
//!     .sql("SELECT * FROM (VALUES ('795-73-9838', 31692)) AS t(ssn, salary)")
//!     .await?;
//! SqlSink::new(db.clone(), "people", keys.clone())
//!     .encrypt(ColumnEncryption::deterministic("ssn", "CEK1"))
//!     .create_keys_under(ColumnMasterKeyDefinition::new("CMK1", CLOISTER_KEY_STORE, "cmk/hr"))
//!     .write(people.execute_stream().await?)
//!     .await?;
//!
//! // Read: the equality on ssn reaches the database as ciphertext equality.
//! let table = EncryptedSqlTable::open(db, "people", keys.as_ref()).await?;
//! engine.session().register_table("people", Arc::new(table))?;
//! let rows = engine
//!     .sql("SELECT salary FROM people WHERE ssn = '795-73-9838'")
//!     .await?
//!     .collect()
//!     .await?;
//! assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
//! # Ok(())
//! # }
//! ```

mod database;
mod error;
mod keys;
mod load;
pub mod metadata;
mod postgres;
pub mod provider;
pub mod rotate;
mod sink;
mod sqlite;
mod types;

pub use database::{PostgresConfig, SqlDatabase, StatementLog};
pub use error::{DriverError, Error, Fault};
pub use keys::{
    CLOISTER_KEY_STORE, ColumnMasterKeyDefinition, ColumnMasterKeyProvider, ConfiguredKey,
    InMemoryColumnMasterKeys,
};
pub use load::load_csv;
pub use metadata::{ColumnMasterKeyRow, EncryptedColumn};
pub use provider::{EncryptedSqlTable, SqlScanExec};
pub use rotate::{ColumnEncryptionKeyRow, KeyMetadata, Rotation, key_metadata, rotate_cek};
pub use sink::{ColumnEncryption, SqlSink};
pub use types::{arrow_type, default_sql_type, format_sql_type, parse_sql_type};

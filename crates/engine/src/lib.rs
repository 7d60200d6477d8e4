//! Cloister's analytics engine: Apache DataFusion with a cryptographic data plane.
//!
//! Inside a TEE the engine is the only place where data is plaintext. This crate makes sure it
//! stays there: Parquet is read and written with Parquet modular encryption, keyed through a
//! [`KeyProvider`] that the runtime fills from its attested configuration, and every temporary
//! file DataFusion spills to local disk is AES-256-GCM encrypted under a key that never leaves
//! the process.
//!
//! # Design
//!
//! **Key ids, never key bytes, cross DataFusion's surfaces.** SQL text, table and COPY options,
//! session config, logical and physical plans (and so anything serialised from them) name keys
//! by id only; the ids are resolved through [`CloisterEncryptionFactory`], a DataFusion
//! `EncryptionFactory` registered on the runtime as [`FACTORY_ID`] (`'format.crypto.factory_id'
//! 'cloister'`). Files carry key ids — or Parquet key-management-tools key material, which
//! Spark, parquet-mr and pyarrow understand — in their key metadata, so reading needs no key
//! options at all. [`Engine::sql`] refuses SQL that would put key bytes into options
//! (DataFusion's own `…_key_as_hex` options) or switch DataFusion back to plain temp files;
//! every statement rule, each a [`Rule`] with a stable id, is in [`rules`].
//!
//! Spill encryption plugs into DataFusion 55's `TempFileFactory` extension point, below every
//! spilling operator; see [`spill`] for why, and for the chunk format.
//!
//! **Outputs are encrypted and all-or-nothing by default.** The [`OutputPolicy`] lets the
//! engine write only fully encrypted Parquet unless the caller allows more ([`output`]).
//! A [`SqlApp`] — the ordered `.sql` scripts of an app bundle — runs with
//! [`Engine::run_app`]: statements split by DataFusion's parser, `${VAR}` placeholders bound
//! as literals (never spliced into the SQL text) from an allow-list that refuses anything
//! secret-looking, and every `COPY` staged beside its
//! target and committed only when the whole app succeeded ([`app`]).
//!
//! **Object stores are explicit.** A [`StoreConfig`] (local directory, Azure Blob / ADLS Gen2
//! with a SAS token or account key, S3) is validated when built, keeps its credential out of
//! `Debug`, and is registered on the runtime for `az://`, `abfss://` and `s3://` URLs
//! ([`store`]).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cloister_engine::{EncryptionOptions, EngineBuilder, InMemoryKeyProvider};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The runtime fills this from its attested configuration.
//! let keys = InMemoryKeyProvider::new()
//!     .with_key("footer-2024", vec![0x11; 32])?
//!     .with_key("pii", vec![0x22; 32])?;
//! let engine = EngineBuilder::new(Arc::new(keys)).build()?;
//!
//! let dir = tempfile::tempdir()?;
//! let out = dir.path().join("people/");
//! // The PII column under its own key, the rest under the footer key: by default the engine
//! // writes only Parquet whose every column is encrypted.
//! let options = EncryptionOptions::new("footer-2024")
//!     .column_key("pii", &["name"])
//!     .column_key("footer-2024", &["age"]);
//! engine
//!     .sql(&format!(
//!         "COPY (SELECT 'Alice' AS name, 42 AS age) TO '{}' STORED AS PARQUET OPTIONS ({})",
//!         out.display(),
//!         options.to_sql_options(),
//!     ))
//!     .await?
//!     .collect()
//!     .await?;
//!
//! engine
//!     .sql(&format!(
//!         "CREATE EXTERNAL TABLE people STORED AS PARQUET LOCATION '{}' \
//!          OPTIONS ('format.crypto.factory_id' 'cloister')",
//!         out.display(),
//!     ))
//!     .await?;
//! let batches = engine.sql("SELECT name, age FROM people").await?.collect().await?;
//! assert_eq!(batches[0].num_rows(), 1);
//! # Ok(())
//! # }
//! ```

// Tests may unwrap; the non-test build (also linted) may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod app;
pub mod encryption;
mod error;
pub mod keys;
pub mod kmt;
pub mod output;
pub mod rules;
mod session;
pub mod spill;
pub mod store;

pub use app::{AppOutput, AppRun, AppVars, QueryResult, SqlApp, SqlScript};
pub use datafusion;
pub use encryption::{CloisterEncryptionFactory, EncryptionOptions, FACTORY_ID};
pub use error::{Error, Fault};
pub use keys::{DataKey, InMemoryKeyProvider, KeyProvider};
pub use kmt::KmtKeyProvider;
pub use output::OutputPolicy;
pub use rules::{Rule, check_output, check_plan};
pub use session::{Engine, EngineBuilder};
pub use spill::{EncryptedSpill, SpillConfig, SpillObserver, SpillStats};
pub use store::{AzureConfig, AzureCredential, LocalConfig, S3Config, StoreConfig};

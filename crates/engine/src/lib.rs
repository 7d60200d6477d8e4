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
//! (DataFusion's own `…_key_as_hex` options) or switch DataFusion back to plain temp files.
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
pub mod spill;
pub mod store;

use std::sync::Arc;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result as DfResult;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement};
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

pub use app::{AppOutput, AppRun, AppVars, QueryResult, SqlApp, SqlScript};
pub use datafusion;
pub use encryption::{CloisterEncryptionFactory, EncryptionOptions, FACTORY_ID};
pub use error::{Error, Fault};
pub use keys::{DataKey, InMemoryKeyProvider, KeyProvider};
pub use kmt::KmtKeyProvider;
pub use output::{OutputPolicy, check_output};
pub use spill::{EncryptedSpill, SpillConfig, SpillObserver, SpillStats};
pub use store::{AzureConfig, AzureCredential, LocalConfig, S3Config, StoreConfig};

/// Builds an [`Engine`]: a DataFusion session with the encryption factory registered and
/// encrypted spill in place.
pub struct EngineBuilder {
    keys: Arc<dyn KeyProvider>,
    memory_limit: Option<usize>,
    spill: SpillConfig,
    spill_observer: Option<Arc<dyn SpillObserver>>,
    config: SessionConfig,
    stores: Vec<StoreConfig>,
    output_policy: OutputPolicy,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("keys", &self.keys)
            .field("memory_limit", &self.memory_limit)
            .field("spill", &self.spill)
            .field("stores", &self.stores)
            .field("output_policy", &self.output_policy)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// An engine whose Parquet keys come from `keys`.
    pub fn new(keys: Arc<dyn KeyProvider>) -> Self {
        Self {
            keys,
            memory_limit: None,
            spill: SpillConfig::default(),
            spill_observer: None,
            config: SessionConfig::new(),
            stores: Vec::new(),
            output_policy: OutputPolicy::default(),
        }
    }

    /// Register `store` on the engine's runtime (see [`Engine::register_store`]).
    pub fn store(mut self, store: StoreConfig) -> Self {
        self.stores.push(store);
        self
    }

    /// What the engine may write (default: encrypted Parquet only); see [`output`].
    pub fn output_policy(mut self, policy: OutputPolicy) -> Self {
        self.output_policy = policy;
        self
    }

    /// Limit query memory to `bytes`; operators that can spill do so beyond it.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Where and how encrypted spill files are written.
    pub fn spill(mut self, config: SpillConfig) -> Self {
        self.spill = config;
        self
    }

    /// Tell `observer` about every finished spill file.
    pub fn spill_observer(mut self, observer: Arc<dyn SpillObserver>) -> Self {
        self.spill_observer = Some(observer);
        self
    }

    /// Start from this DataFusion session configuration.
    pub fn session_config(mut self, config: SessionConfig) -> Self {
        self.config = config;
        self
    }

    /// Assemble the runtime and the session.
    pub fn build(self) -> DfResult<Engine> {
        let spill = match self.spill_observer {
            Some(observer) => EncryptedSpill::with_observer(self.spill, observer)?,
            None => EncryptedSpill::new(self.spill)?,
        };
        let mut runtime = RuntimeEnvBuilder::new().with_disk_manager_builder(
            DiskManagerBuilder::default().with_temp_file_factory(Arc::new(spill.clone())),
        );
        if let Some(limit) = self.memory_limit {
            runtime = runtime.with_memory_limit(limit, 1.0);
        }
        let runtime = runtime.build_arc()?;
        runtime.register_parquet_encryption_factory(
            FACTORY_ID,
            Arc::new(CloisterEncryptionFactory::new(self.keys)),
        );
        let ctx = SessionContext::new_with_config_rt(self.config, runtime);
        let engine = Engine {
            ctx,
            spill,
            output_policy: self.output_policy,
        };
        for store in &self.stores {
            engine.register_store(store)?;
        }
        Ok(engine)
    }
}

/// A DataFusion session with Cloister's encryption factory and encrypted spill.
#[derive(Clone)]
pub struct Engine {
    ctx: SessionContext,
    spill: EncryptedSpill,
    output_policy: OutputPolicy,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("session_id", &self.ctx.session_id())
            .field("spill", &self.spill)
            .field("output_policy", &self.output_policy)
            .finish()
    }
}

/// `datafusion.runtime.*` settings that SQL may change: those that keep the disk manager.
/// DataFusion 55 rebuilds the disk manager in plain-file mode when any other runtime setting
/// (`temp_directory`, `max_temp_directory_size`, `max_spill_merge_fan_in`) is set or reset.
const RUNTIME_SETTINGS_ALLOWED: [&str; 5] = [
    "datafusion.runtime.memory_limit",
    "datafusion.runtime.metadata_cache_limit",
    "datafusion.runtime.list_files_cache_limit",
    "datafusion.runtime.list_files_cache_ttl",
    "datafusion.runtime.file_statistics_cache_limit",
];

impl Engine {
    /// The DataFusion session. Prefer [`sql`](Self::sql) for SQL: it applies the engine's
    /// statement rules, which `SessionContext::sql` does not.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// Counters of the encrypted spill files written so far.
    pub fn spill_stats(&self) -> SpillStats {
        self.spill.stats()
    }

    /// The encrypted spill factory in use.
    pub fn spill(&self) -> &EncryptedSpill {
        &self.spill
    }

    /// What the engine may write.
    pub fn output_policy(&self) -> &OutputPolicy {
        &self.output_policy
    }

    /// Plan and run `sql` after checking it against the engine's rules ([`check_plan`]) and
    /// its output policy ([`check_output`]).
    pub async fn sql(&self, sql: &str) -> DfResult<DataFrame> {
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        check_plan(&plan)?;
        check_output(&plan, &self.output_policy)?;
        self.ctx.execute_logical_plan(plan).await
    }

    /// Make `store`'s client and register it on the runtime under its URLs (see [`store`]).
    /// No request is made; a bad credential shows at the first query.
    pub fn register_store(&self, store: &StoreConfig) -> Result<(), Error> {
        let client = store.build()?;
        for url in store.registration_urls() {
            self.ctx
                .runtime_env()
                .register_object_store(&url, Arc::clone(&client));
        }
        Ok(())
    }
}

/// The engine's rules for SQL statements:
///
/// - `key-material-in-sql`: no `crypto.file_encryption.*` / `crypto.file_decryption.*` options
///   (DataFusion's way of giving key bytes in hex) in `COPY` or `CREATE EXTERNAL TABLE`; name key
///   ids through `crypto.factory_options.*` instead.
/// - `spill-encryption`: no `SET` / `RESET` of `datafusion.runtime.*` settings that would make
///   DataFusion rebuild its disk manager without the encrypted spill factory.
///
/// Every node of the plan is checked, so the rules also hold under `EXPLAIN` (whose output
/// would show the options) and `EXPLAIN ANALYZE` (which runs the statement).
pub fn check_plan(plan: &LogicalPlan) -> Result<(), Error> {
    let mut result = Ok(());
    // The closure never fails itself; the first violation stops the walk.
    let _ = plan.apply_with_subqueries(|node| match check_node(node) {
        Ok(()) => Ok(TreeNodeRecursion::Continue),
        Err(e) => {
            result = Err(e);
            Ok(TreeNodeRecursion::Stop)
        }
    });
    result
}

fn check_node(plan: &LogicalPlan) -> Result<(), Error> {
    let options = match plan {
        LogicalPlan::Copy(copy) => Some(&copy.options),
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => Some(&create.options),
        LogicalPlan::Statement(Statement::SetVariable(set)) => {
            return check_runtime_setting(&set.variable);
        }
        LogicalPlan::Statement(Statement::ResetVariable(reset)) => {
            return check_runtime_setting(&reset.variable);
        }
        _ => None,
    };
    if let Some(options) = options {
        let mut keys: Vec<&String> = options.keys().collect();
        keys.sort();
        if let Some(key) = keys.into_iter().find(|k| {
            let k = k.to_ascii_lowercase();
            k.contains("crypto.file_encryption") || k.contains("crypto.file_decryption")
        }) {
            return Err(Error::StatementRefused {
                rule: "key-material-in-sql",
                detail: format!(
                    "option {key:?} carries key bytes; name key ids with \
                     'format.crypto.factory_id' '{FACTORY_ID}' and \
                     'format.crypto.factory_options.*' instead"
                ),
            });
        }
    }
    Ok(())
}

fn check_runtime_setting(variable: &str) -> Result<(), Error> {
    let variable = variable.trim().to_ascii_lowercase();
    if variable.starts_with("datafusion.runtime.")
        && !RUNTIME_SETTINGS_ALLOWED.contains(&variable.as_str())
    {
        return Err(Error::StatementRefused {
            rule: "spill-encryption",
            detail: format!("{variable} would replace the encrypted spill factory"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        EngineBuilder::new(Arc::new(InMemoryKeyProvider::new()))
            .build()
            .unwrap()
    }

    #[rstest::rstest]
    #[case::set_temp_directory("SET datafusion.runtime.temp_directory = '/tmp'")]
    #[case::set_max_temp_size("SET datafusion.runtime.max_temp_directory_size = '1G'")]
    #[case::set_fan_in("SET datafusion.runtime.max_spill_merge_fan_in = '4'")]
    #[case::reset_temp_directory("RESET datafusion.runtime.temp_directory")]
    #[case::upper_case("SET DATAFUSION.RUNTIME.TEMP_DIRECTORY = '/tmp'")]
    #[tokio::test]
    async fn regression_runtime_settings_cannot_disable_spill_encryption(#[case] sql: &str) {
        let err = engine().sql(sql).await.unwrap_err();
        assert!(
            matches!(
                Error::find_in(&err),
                Some(Error::StatementRefused {
                    rule: "spill-encryption",
                    ..
                })
            ),
            "{err}"
        );
    }

    #[tokio::test]
    async fn harmless_settings_are_allowed() {
        let engine = engine();
        engine
            .sql("SET datafusion.runtime.memory_limit = '1G'")
            .await
            .unwrap();
        engine
            .sql("SET datafusion.execution.batch_size = 1024")
            .await
            .unwrap();
    }

    #[rstest::rstest]
    #[case::copy(
        "COPY (SELECT 1 AS a) TO '/tmp/x/' STORED AS PARQUET \
         OPTIONS ('format.crypto.file_encryption.footer_key_as_hex' '30313233343536373839303132333435')"
    )]
    #[case::create(
        "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x/' \
         OPTIONS ('format.crypto.file_decryption.footer_key_as_hex' '30313233343536373839303132333435')"
    )]
    #[case::explain_copy(
        "EXPLAIN COPY (SELECT 1 AS a) TO '/tmp/x/' STORED AS PARQUET \
         OPTIONS ('format.crypto.file_encryption.footer_key_as_hex' '30313233343536373839303132333435')"
    )]
    #[case::explain_analyze_copy(
        "EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '/tmp/x/' STORED AS PARQUET \
         OPTIONS ('format.crypto.file_encryption.footer_key_as_hex' '30313233343536373839303132333435')"
    )]
    #[tokio::test]
    async fn regression_key_bytes_in_sql_are_refused(#[case] sql: &str) {
        let err = engine().sql(sql).await.unwrap_err();
        assert!(
            matches!(
                Error::find_in(&err),
                Some(Error::StatementRefused {
                    rule: "key-material-in-sql",
                    ..
                })
            ),
            "{err}"
        );
    }

    #[test]
    fn debug_of_builder_and_engine_show_no_keys() {
        let keys = InMemoryKeyProvider::new()
            .with_key("kf", vec![0x5A; 16])
            .unwrap();
        let builder = EngineBuilder::new(Arc::new(keys));
        let shown = format!("{builder:?}");
        assert!(shown.contains("kf") && !shown.contains("90"), "{shown}");
        let engine = builder.build().unwrap();
        assert!(format!("{engine:?}").contains("EncryptedSpill"));
    }

    #[test]
    fn debug_of_builder_with_a_store_shows_no_credential() {
        let store = StoreConfig::from_env([
            ("AZURE_BLOB_ACCOUNT_NAME", "acct"),
            ("AZURE_BLOB_CONTAINER_NAME", "data"),
            ("AZURE_BLOB_SAS_TOKEN", "sv=2020-12-06&sig=SIGNATURE-VALUE"),
        ])
        .unwrap();
        let builder = EngineBuilder::new(Arc::new(InMemoryKeyProvider::new())).store(store);
        let shown = format!("{builder:?}");
        assert!(shown.contains("SasToken(<redacted>)"), "{shown}");
        assert!(!shown.contains("SIGNATURE-VALUE"), "{shown}");
        // Registering makes no request.
        let engine = builder.build().unwrap();
        let url = datafusion::execution::object_store::ObjectStoreUrl::parse("az://data").unwrap();
        assert!(engine.session().runtime_env().object_store(&url).is_ok());
    }
}

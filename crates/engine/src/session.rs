//! The engine's session: [`EngineBuilder`] assembles a DataFusion runtime with Cloister's
//! encryption factory and encrypted spill; [`Engine`] runs SQL under the statement rules
//! ([`rules`](crate::rules)) and the output policy ([`output`](crate::output)).

use std::sync::Arc;

use datafusion::error::Result as DfResult;
use datafusion::execution::disk_manager::DiskManagerBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{DataFrame, SessionConfig, SessionContext};

use crate::rules::{check_output, check_plan};
use crate::{
    CloisterEncryptionFactory, EncryptedSpill, Error, FACTORY_ID, KeyProvider, OutputPolicy,
    SpillConfig, SpillObserver, SpillStats, StoreConfig,
};

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

    /// What the engine may write (default: encrypted Parquet only); see [`output`](crate::output).
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

    /// Make `store`'s client and register it on the runtime under its URLs (see [`store`](crate::store)).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InMemoryKeyProvider;
    use crate::rules::Rule;
    use crate::store::AzureConfig;
    use secrecy::SecretString;

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
                    rule: Rule::SpillEncryption,
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
                    rule: Rule::KeyMaterialInSql,
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
        let store = StoreConfig::Azure(
            AzureConfig::builder("acct", "data")
                .sas_token(SecretString::from(
                    "sv=2020-12-06&sig=SIGNATURE-VALUE".to_owned(),
                ))
                .build()
                .unwrap(),
        );
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

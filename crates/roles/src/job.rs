//! The `job` role: run the app bundle's SQL on the engine, inside the attested process.
//!
//! `cloister run … -- job BUNDLE` hands the opened bundle and the attested [`RoleContext`] here.
//! Everything the job needs comes from the configuration the CAS released (the policy's `env`
//! for this service), never from the host: the host chooses only the bundle file and where to
//! print.
//!
//! # Configuration (the service's `env` in the policy)
//!
//! The variables, their meanings and their loud names are documented in one place,
//! [`crate::config`]; [`JobSettings::from_env`] reads and checks them when the job starts. The
//! Always Encrypted keys are read (and checked) too, into [`JobSettings::column_keys`] for the
//! SQL-database sources and sinks (`cloister_sqldb`) of roles that use them; SQL apps
//! cannot open SQL-database tables yet. Every other variable is ignored here.
//!
//! # The app
//!
//! The bundle's top-level `*.sql` files, run in the order of their names by
//! `cloister_engine::Engine::run_app`: queries print as tables, `COPY … TO` outputs are
//! staged and committed only when every statement succeeded, so a failed job writes nothing.
//!
//! # Errors
//!
//! A [`JobError`] names the setting, key id, script or rule at fault and never a value.
//! [`JobError::is_refusal`] tells refusals (a key that does not open the data, a statement a
//! rule refuses) from operational failures.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloister_engine::datafusion::error::DataFusionError;
use cloister_engine::{
    AppOutput, AppVars, EngineBuilder, InMemoryKeyProvider, OutputPolicy, QueryResult, SpillConfig,
    SpillObserver, SpillStats, SqlApp, StoreConfig,
};
use cloister_runtime::{Bundle, RoleContext};
use cloister_sqldb::{ConfiguredKey, Error as SqlError, InMemoryColumnMasterKeys};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;

pub use crate::config::{
    APP_VARS_ENV, CEK_ENV_PREFIX, CMK_ENV_PREFIX, KEY_ENV_PREFIX, MEMORY_LIMIT_ENV,
    OUTPUT_PLAINTEXT_ENV, PRINT_RESULTS_ENV, SPILL_DIR_ENV, key_setting,
};
use crate::config::{
    OLD_PRINT_RESULTS_ENV, OutputPlaintext, names_store, parse_bytes, parse_flag, store_from_env,
};

/// Why a job did not run to the end. Messages name settings, key ids, scripts and rules;
/// never a value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
    /// A configuration setting is missing or invalid.
    #[error("configuration {setting}: {reason}")]
    Setting {
        /// The variable.
        setting: String,
        /// What is wrong (never the value).
        reason: String,
    },
    /// The store settings do not make a store (a missing SAS token, a bucket without keys, …).
    #[error("configuration: {0}")]
    Store(#[source] cloister_engine::Error),
    /// The bundle does not hold a runnable SQL app.
    #[error("the app bundle: {0}")]
    App(#[source] cloister_engine::Error),
    /// The app failed: a statement, a key that does not open the data, a refused rule.
    ///
    /// Shown through `shown`: errors that may quote data (execution, Arrow casts, …) show
    /// only their class. The engine's error is deliberately not the `source`, so that no
    /// error chain printer reaches its text either.
    #[error("{}{}", shown(error), hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Run {
        /// The engine's error, naming the script and statement. Its text may quote
        /// decrypted data: never print it outside the TEE.
        error: DataFusionError,
        /// What to check, when the cause is a key or a rule.
        hint: Option<String>,
    },
    /// The engine could not start.
    #[error("starting the engine: {0}")]
    Start(String),
}

impl JobError {
    /// A negative verdict: the data did not open with the configured key, or a rule refused a
    /// statement. Everything else is an operational error.
    pub fn is_refusal(&self) -> bool {
        use cloister_engine::Error as E;
        match self {
            JobError::Run { error, .. } => matches!(
                E::find_in(error),
                Some(
                    E::UnknownKey { .. }
                        | E::UnwrapFailed { .. }
                        | E::SpillIntegrity { .. }
                        | E::StatementRefused { .. }
                        | E::VariableRefused { .. }
                )
            ),
            JobError::App(E::VariableRefused { .. }) => true,
            _ => false,
        }
    }

    fn run(error: DataFusionError) -> Self {
        use cloister_engine::Error as E;
        let hint = match E::find_in(&error) {
            Some(E::UnknownKey { key_id }) => Some(format!(
                "the configuration holds no key {key_id:?}: the policy must set {}",
                key_setting(key_id)
            )),
            Some(E::UnwrapFailed { wrapping_key }) => Some(format!(
                "{} in the configuration is not the key the data was written with",
                key_setting(wrapping_key)
            )),
            Some(E::StatementRefused {
                rule: cloister_engine::Rule::PlaintextOutput,
                ..
            }) => Some(format!(
                "outputs are encrypted-only unless the policy sets {OUTPUT_PLAINTEXT_ENV}"
            )),
            Some(E::UnsetVariable { .. }) => Some(format!(
                "SQL variables come from the policy's env entries named in {APP_VARS_ENV}"
            )),
            _ => None,
        };
        JobError::Run { error, hint }
    }
}

/// `error` as it may be shown outside the TEE: the script and statement, then Cloister's own
/// error (which names keys, rules and settings, never values) or DataFusion's when its kind
/// is about the query and the plan (planning, SQL, schema, resources, storage). Errors raised
/// while computing on rows (execution, Arrow, Parquet decoding, external) may quote a
/// decrypted value (`Cannot cast string '…'`), so only their kind is shown.
fn shown(error: &DataFusionError) -> String {
    let mut contexts = Vec::new();
    let mut root = error;
    loop {
        root = match root {
            DataFusionError::Context(context, inner) => {
                contexts.push(context.as_str());
                inner
            }
            DataFusionError::Diagnostic(_, inner) => inner,
            DataFusionError::Shared(inner) => inner,
            _ => break,
        };
    }
    let message = match cloister_engine::Error::find_in(root) {
        Some(ours) => ours.to_string(),
        None => match root {
            DataFusionError::Plan(..)
            | DataFusionError::SQL(..)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(..)
            | DataFusionError::Configuration(..)
            | DataFusionError::ResourcesExhausted(..)
            | DataFusionError::ObjectStore(..)
            | DataFusionError::IoError(..) => root.to_string(),
            other => format!(
                "{} error (details withheld: they may quote decrypted data)",
                match other {
                    DataFusionError::ArrowError(..) => "Arrow",
                    DataFusionError::ParquetError(..) => "Parquet",
                    DataFusionError::External(..) => "external",
                    DataFusionError::Internal(..) => "internal",
                    _ => "execution",
                }
            ),
        },
    };
    contexts.push(&message);
    contexts.join(": ")
}

/// What the job takes from the attested configuration; see the [module docs](self).
pub struct JobSettings {
    keys: Arc<InMemoryKeyProvider>,
    column_keys: Arc<InMemoryColumnMasterKeys>,
    store: Option<StoreConfig>,
    vars: AppVars,
    memory_limit: Option<usize>,
    output_policy: OutputPolicy,
    spill_dir: Option<PathBuf>,
    print_results: bool,
}

impl fmt::Debug for JobSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Key ids, the store's kind and variable names only.
        f.debug_struct("JobSettings")
            .field("keys", &self.keys.key_ids())
            .field("column_keys", &self.column_keys)
            .field("store", &self.store.as_ref().map(store_kind))
            .field("vars", &self.vars)
            .field("memory_limit", &self.memory_limit)
            .field("output_policy", &self.output_policy)
            .field("spill_dir", &self.spill_dir)
            .field("print_results", &self.print_results)
            .finish()
    }
}

fn store_kind(store: &StoreConfig) -> &'static str {
    match store {
        StoreConfig::Local(_) => "local",
        StoreConfig::Azure(_) => "azure",
        StoreConfig::S3(_) => "s3",
        _ => "other",
    }
}

// ----- CLOISTER_CMK_* / CLOISTER_CEK_* → typed column keys -----
//
// The `CLOISTER_*` names are the job role's contract; `cloister-sqldb` takes typed
// `ConfiguredKey`s and knows no variable names.

/// The Always Encrypted keys of the configuration's env: `CLOISTER_CMK_<PATH>` (a PEM) and
/// `CLOISTER_CEK_<NAME>` (hex); errors name the variable, never its value.
fn column_keys_from_env(
    env: &BTreeMap<String, SecretString>,
) -> Result<InMemoryColumnMasterKeys, JobError> {
    let setting = |name: &str, reason: String| JobError::Setting {
        setting: name.to_owned(),
        reason,
    };
    let mut keys = Vec::new();
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(CMK_ENV_PREFIX) {
            keys.push(ConfiguredKey::cmk(path, value.clone()));
        } else if let Some(cek) = name.strip_prefix(CEK_ENV_PREFIX) {
            let key =
                ConfiguredKey::cek_hex(cek, value).map_err(|_| setting(name, "not hex".into()))?;
            keys.push(key);
        }
    }
    InMemoryColumnMasterKeys::from_configured(keys).map_err(|e| match e {
        SqlError::InvalidKeyConfig { cek, reason } => {
            setting(&format!("{CEK_ENV_PREFIX}{cek}"), reason)
        }
        SqlError::InvalidColumnMasterKey { location, .. } => setting(
            &format!(
                "{CMK_ENV_PREFIX}{}",
                location.rsplit(": ").next().unwrap_or("")
            ),
            "not an RSA private key PEM of 2048 bits or more".into(),
        ),
        other => setting(&format!("{CEK_ENV_PREFIX}…"), other.to_string()),
    })
}

impl JobSettings {
    /// Read the settings from the configuration's env.
    pub fn from_env(env: &BTreeMap<String, SecretString>) -> Result<Self, JobError> {
        let setting = |name: &str, reason: String| JobError::Setting {
            setting: name.to_owned(),
            reason,
        };
        let keys = InMemoryKeyProvider::new();
        for (name, value) in env {
            let Some(id) = name.strip_prefix(KEY_ENV_PREFIX) else {
                continue;
            };
            if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(setting(
                    name,
                    "a key variable is CLOISTER_KEY_ then letters, digits or _".into(),
                ));
            }
            let bytes = hex::decode(value.expose_secret().trim()).map_err(|_| {
                setting(
                    name,
                    "not a hex key (give the secret as $$cloister:NAME:hex$$)".into(),
                )
            })?;
            keys.insert(id.to_ascii_lowercase(), bytes).map_err(|_| {
                setting(
                    name,
                    "a key has 16, 24 or 32 bytes (32, 48 or 64 hex digits)".into(),
                )
            })?;
        }

        let column_keys = column_keys_from_env(env)?;

        let pairs = || env.iter().map(|(k, v)| (k.as_str(), v.expose_secret()));
        let names_store = env.keys().any(|k| names_store(k));
        let store = if names_store {
            Some(store_from_env(pairs()).map_err(JobError::Store)?)
        } else {
            None
        };

        let allowed: Vec<&str> = match env.get(APP_VARS_ENV) {
            Some(list) => list
                .expose_secret()
                .split([',', ' ', '\t', '\n'])
                .filter(|s| !s.is_empty())
                .collect(),
            None => Vec::new(),
        };
        // Cloister's own settings (keys, the bundle key, store credentials' companions) never
        // become SQL text, whatever their names look like.
        if let Some(own) = allowed.iter().find(|n| n.starts_with("CLOISTER_")) {
            return Err(setting(
                APP_VARS_ENV,
                format!("names {own}: CLOISTER_* settings never become SQL variables"),
            ));
        }
        if let Some(missing) = allowed.iter().find(|n| !env.contains_key(**n)) {
            return Err(setting(
                APP_VARS_ENV,
                format!("names {missing}, which the configuration does not set"),
            ));
        }
        let vars = AppVars::from_env(pairs(), &allowed).map_err(JobError::App)?;

        let memory_limit = env
            .get(MEMORY_LIMIT_ENV)
            .map(|v| {
                parse_bytes(v.expose_secret()).ok_or_else(|| {
                    setting(
                        MEMORY_LIMIT_ENV,
                        "expected bytes, or a number with K, M or G (e.g. 512M)".into(),
                    )
                })
            })
            .transpose()?;

        let output_policy = OutputPlaintext::parse(
            env.get(OUTPUT_PLAINTEXT_ENV)
                .map_or("", |v| v.expose_secret()),
        )
        .map_err(|reason| setting(OUTPUT_PLAINTEXT_ENV, reason))?
        .policy();
        let spill_dir = env
            .get(SPILL_DIR_ENV)
            .map(|v| PathBuf::from(v.expose_secret()));
        if env.contains_key(OLD_PRINT_RESULTS_ENV) {
            return Err(setting(
                OLD_PRINT_RESULTS_ENV,
                format!(
                    "renamed: set {PRINT_RESULTS_ENV}=true to print results (stdout leaves the \
                     TEE in plaintext)"
                ),
            ));
        }
        let print_results =
            parse_flag(env.get(PRINT_RESULTS_ENV).map_or("", |v| v.expose_secret()))
                .map_err(|reason| setting(PRINT_RESULTS_ENV, reason))?;
        Ok(Self {
            keys: Arc::new(keys),
            column_keys: Arc::new(column_keys),
            store,
            vars,
            memory_limit,
            output_policy,
            spill_dir,
            print_results,
        })
    }

    /// The data keys (for roles that write data themselves, as the demo's ingest does).
    pub fn keys(&self) -> Arc<InMemoryKeyProvider> {
        Arc::clone(&self.keys)
    }

    /// The Always Encrypted column master and encryption keys of the configuration.
    pub fn column_keys(&self) -> Arc<InMemoryColumnMasterKeys> {
        Arc::clone(&self.column_keys)
    }

    /// The key ids held, sorted.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys.key_ids()
    }

    /// A one-line description for the operator: key ids, store kind, variable names, limits.
    pub fn describe(&self) -> String {
        let ids = self.key_ids();
        let vars: Vec<&str> = self.vars.names().collect();
        format!(
            "keys: {}; store: {}; vars: {}; memory limit: {}; outputs: {}; spill: encrypted",
            if ids.is_empty() {
                "none".into()
            } else {
                ids.join(", ")
            },
            self.store.as_ref().map_or("local paths", store_kind),
            if vars.is_empty() {
                "none".into()
            } else {
                vars.join(", ")
            },
            self.memory_limit
                .map_or("none".into(), |b| format!("{b} bytes")),
            if self.output_policy.allows_plaintext_formats() {
                "plaintext allowed"
            } else if self.output_policy.allows_plaintext_columns() {
                "encrypted Parquet, plaintext columns allowed"
            } else {
                "encrypted Parquet only"
            },
        )
    }
}

/// Test and harness hooks for a job (the CLI uses the defaults).
#[derive(Clone, Default)]
pub struct JobOptions {
    /// Told about every spill file the job finishes.
    pub spill_observer: Option<Arc<dyn SpillObserver>>,
}

impl fmt::Debug for JobOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobOptions")
            .field("spill_observer", &self.spill_observer.is_some())
            .finish()
    }
}

/// What a job produced.
#[derive(Debug)]
pub struct JobReport {
    /// The session, service and policy hash that admitted the job.
    pub session: String,
    /// The service.
    pub service: String,
    /// The policy version's hash.
    pub session_hash: String,
    /// The job's measurement (executable and bundle), hex.
    pub measurement: String,
    /// The bundle's digest, hex.
    pub bundle_digest: String,
    /// The query results, in order; empty when the policy does not let the job print them.
    pub results: Vec<QueryResult>,
    /// The results not shown (policy without `CLOISTER_PRINT_RESULTS=true`): names and row
    /// counts only.
    pub withheld: Vec<Withheld>,
    /// The committed outputs.
    pub outputs: Vec<AppOutput>,
    /// The encrypted spill files written.
    pub spill: SpillStats,
    /// How long the app ran.
    pub elapsed: Duration,
}

/// A query result the job did not show: its name and row count.
#[derive(Clone, Debug, Serialize)]
pub struct Withheld {
    /// The result's name.
    pub name: String,
    /// Its number of rows.
    pub rows: usize,
}

/// The SQL app of a bundle: its top-level `*.sql` files.
pub fn sql_app(bundle: &Bundle) -> Result<SqlApp, JobError> {
    let mut files = Vec::new();
    for (path, content) in bundle.files() {
        if path.contains('/') || !path.ends_with(".sql") {
            continue;
        }
        let sql = std::str::from_utf8(content).map_err(|_| {
            JobError::App(cloister_engine::Error::InvalidApp {
                reason: format!("script {path:?} is not UTF-8"),
            })
        })?;
        files.push((path.clone(), sql.to_owned()));
    }
    SqlApp::from_files(files).map_err(JobError::App)
}

/// Run the bundle's SQL app with `settings` on a fresh engine (blocking: it makes its own
/// async runtime; call it from a plain thread, as roles run).
pub fn run_app(
    bundle: &Bundle,
    settings: &JobSettings,
    options: &JobOptions,
) -> Result<(Vec<QueryResult>, Vec<AppOutput>, SpillStats, Duration), JobError> {
    let app = sql_app(bundle)?;
    let mut spill = SpillConfig::default();
    if let Some(dir) = &settings.spill_dir {
        spill = spill.directory(dir);
    }
    let mut builder = EngineBuilder::new(settings.keys.clone())
        .output_policy(settings.output_policy)
        .spill(spill);
    if let Some(limit) = settings.memory_limit {
        builder = builder.memory_limit(limit);
    }
    if let Some(store) = &settings.store {
        builder = builder.store(store.clone());
    }
    if let Some(observer) = &options.spill_observer {
        builder = builder.spill_observer(Arc::clone(observer));
    }
    let engine = builder
        .build()
        .map_err(|e| JobError::Start(e.to_string()))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("cloister-job")
        .build()
        .map_err(|e| JobError::Start(e.to_string()))?;
    let started = Instant::now();
    let run = rt
        .block_on(engine.run_app(&app, &settings.vars))
        .map_err(JobError::run)?;
    let elapsed = started.elapsed();
    let spill = engine.spill_stats();
    drop(engine);
    drop(rt);
    Ok((
        run.results().to_vec(),
        run.outputs().to_vec(),
        spill,
        elapsed,
    ))
}

/// The `job` role: settings from `ctx`, the app from `bundle`, a report back. Prints a
/// description of what it received (names only) to stderr unless `quiet`.
pub fn run_role(
    bundle: Bundle,
    ctx: RoleContext,
    options: &JobOptions,
    quiet: bool,
) -> Result<JobReport, JobError> {
    let settings = JobSettings::from_env(&ctx.env)?;
    if !quiet {
        eprintln!(
            "cloister: attested: session {} service {} (policy {}), measurement {}",
            ctx.session,
            ctx.service,
            short(&ctx.session_hash),
            short(&ctx.measurement.to_string()),
        );
        eprintln!("cloister: job: {}", settings.describe());
        if let Some(dir) = ctx.files.dir() {
            eprintln!("cloister: injected files: {}", dir.display());
        }
    }
    let (mut results, outputs, spill, elapsed) = run_app(&bundle, &settings, options)?;
    let mut withheld = Vec::new();
    if !settings.print_results {
        withheld = results
            .drain(..)
            .map(|r| Withheld {
                name: r.name().to_owned(),
                rows: r.num_rows(),
            })
            .collect();
    }
    Ok(JobReport {
        session: ctx.session.clone(),
        service: ctx.service.clone(),
        session_hash: ctx.session_hash.clone(),
        measurement: ctx.measurement.to_string(),
        bundle_digest: bundle.digest().to_string(),
        results,
        withheld,
        outputs,
        spill,
        elapsed,
    })
}

/// The first 16 digits of a hex string, for messages.
fn short(hex: &str) -> String {
    match hex.get(..16) {
        Some(head) if hex.len() > 16 => format!("{head}…"),
        _ => hex.to_owned(),
    }
}

/// A result as JSON: `{"name", "script", "statement", "rows", "columns", "data": [{col: value}]}`.
#[derive(Serialize)]
pub struct ResultJson {
    name: String,
    script: String,
    statement: usize,
    rows: usize,
    columns: Vec<String>,
    data: Vec<serde_json::Value>,
}

impl ResultJson {
    /// Convert a query result.
    pub fn of(result: &QueryResult) -> anyhow::Result<Self> {
        let columns = result
            .batches()
            .first()
            .map(|b| {
                b.schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            name: result.name().to_owned(),
            script: result.script().to_owned(),
            statement: result.statement(),
            rows: result.num_rows(),
            columns,
            data: rows_json(result.batches())?,
        })
    }
}

/// Result rows as JSON objects, one key per column in every row: a SQL NULL is `null`, not a
/// missing key (a consumer reading `row["col"]` must not have to guess which).
fn rows_json(
    batches: &[cloister_engine::datafusion::arrow::record_batch::RecordBatch],
) -> anyhow::Result<Vec<serde_json::Value>> {
    use cloister_engine::datafusion::arrow::json::{WriterBuilder, writer::JsonArray};
    let mut writer = WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, JsonArray>(Vec::new());
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    Ok(if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes)?
    })
}

/// An output as JSON.
#[derive(Serialize)]
pub struct OutputJson {
    url: String,
    rows: u64,
    script: String,
    statement: usize,
}

impl OutputJson {
    /// Convert an output.
    pub fn of(output: &AppOutput) -> Self {
        Self {
            url: output.url().to_owned(),
            rows: output.rows(),
            script: output.script().to_owned(),
            statement: output.statement(),
        }
    }
}

/// Spill counters as JSON.
#[derive(Serialize)]
pub struct SpillJson {
    files: u64,
    bytes: u64,
    encrypted: bool,
}

impl SpillJson {
    /// Convert spill counters.
    pub fn of(stats: &SpillStats) -> Self {
        Self {
            files: stats.files_created,
            bytes: stats.bytes_written,
            encrypted: true,
        }
    }
}

/// `cloister run -- job --json`: {"session", "service", "session_hash", "measurement",
/// "bundle_digest", "results", "outputs", "spill": {"files", "bytes", "encrypted"}, "seconds"}.
#[derive(Serialize)]
struct ReportJson {
    session: String,
    service: String,
    session_hash: String,
    measurement: String,
    bundle_digest: String,
    results: Vec<ResultJson>,
    withheld: Vec<Withheld>,
    outputs: Vec<OutputJson>,
    spill: SpillJson,
    seconds: f64,
}

/// Print `report`: result tables and an outputs summary, or JSON.
pub fn print_report(report: &JobReport, json: bool) -> anyhow::Result<()> {
    use std::io::Write as _;
    if json {
        let value = ReportJson {
            session: report.session.clone(),
            service: report.service.clone(),
            session_hash: report.session_hash.clone(),
            measurement: report.measurement.clone(),
            bundle_digest: report.bundle_digest.clone(),
            results: report
                .results
                .iter()
                .map(ResultJson::of)
                .collect::<anyhow::Result<_>>()?,
            withheld: report.withheld.clone(),
            outputs: report.outputs.iter().map(OutputJson::of).collect(),
            spill: SpillJson::of(&report.spill),
            seconds: report.elapsed.as_secs_f64(),
        };
        return crate::output::json(&value);
    }
    print_results(&report.results)?;
    for w in &report.withheld {
        println!(
            "== {} ({} rows) == withheld: the policy does not set {PRINT_RESULTS_ENV}=true \
             (stdout leaves the TEE); write it with an encrypted COPY … TO",
            w.name, w.rows
        );
    }
    if !report.outputs.is_empty() {
        print_outputs(&report.outputs)?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{} results ({} withheld), {} outputs committed in {:.2} s; spill: {} encrypted files, {} bytes",
        report.results.len() + report.withheld.len(),
        report.withheld.len(),
        report.outputs.len(),
        report.elapsed.as_secs_f64(),
        report.spill.files_created,
        report.spill.bytes_written
    )?;
    Ok(())
}

/// Each result as `== name (N rows) ==` and a table.
pub fn print_results(results: &[QueryResult]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for result in results {
        writeln!(out, "== {} ({} rows) ==", result.name(), result.num_rows())?;
        writeln!(out, "{}", result.to_pretty_string()?)?;
    }
    out.flush()?;
    Ok(())
}

/// The outputs as a table.
pub fn print_outputs(outputs: &[AppOutput]) -> anyhow::Result<()> {
    let mut t = crate::output::table(&["output", "rows", "written by"]);
    for o in outputs {
        t.add_row(vec![
            o.url().to_owned(),
            o.rows().to_string(),
            format!("{} #{}", o.script(), o.statement()),
        ]);
    }
    crate::output::print_table(&t)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// Papercut (issue 10): `--json` rows kept a column's key only when its value was not
    /// NULL, so a consumer could not tell a NULL from a column that does not exist.
    #[test]
    fn regression_json_rows_keep_null_columns() {
        use cloister_engine::datafusion::arrow::array::{Int64Array, StringArray};
        use cloister_engine::datafusion::arrow::datatypes::{DataType, Field, Schema};
        use cloister_engine::datafusion::arrow::record_batch::RecordBatch;
        use std::sync::Arc;
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![None, Some("x")])),
            ],
        )
        .unwrap();
        let rows = super::rows_json(&[batch]).unwrap();
        assert_eq!(
            serde_json::Value::Array(rows),
            serde_json::json!([{"n": 1, "s": null}, {"n": null, "s": "x"}])
        );
        assert!(super::rows_json(&[]).unwrap().is_empty());
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretString> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), SecretString::from((*v).to_owned())))
            .collect()
    }

    const KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn keys_are_named_by_lower_cased_ids() {
        let s = JobSettings::from_env(&env(&[
            ("CLOISTER_KEY_TRIPS_FARE", KEY),
            ("CLOISTER_KEY_R2", &KEY[..32]),
            ("OTHER", "x"),
        ]))
        .unwrap();
        assert_eq!(s.key_ids(), ["r2", "trips_fare"]);
        let shown = format!("{s:?}");
        assert!(!shown.contains(KEY) && !shown.contains("0001"), "{shown}");
    }

    #[test]
    fn always_encrypted_keys_are_loaded_for_the_sql_sources() {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
        ))
        .unwrap();
        let s = JobSettings::from_env(&env(&[
            ("CLOISTER_CMK_CMK1", &pem),
            ("CLOISTER_CEK_CEK9", KEY),
        ]))
        .unwrap();
        use cloister_sqldb::{CLOISTER_KEY_STORE, ColumnMasterKeyProvider as _};
        let keys = s.column_keys();
        assert!(keys.column_master_key(CLOISTER_KEY_STORE, "cmk1").is_some());
        assert!(keys.column_encryption_key("CEK9").is_some());
        assert!(s.key_ids().is_empty(), "AE keys are not data keys");
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("PRIVATE") && !shown.contains("0001"),
            "{shown}"
        );
    }

    #[rstest::rstest]
    #[case::not_hex("CLOISTER_KEY_A", "zz", "not a hex key")]
    #[case::short("CLOISTER_KEY_A", "0011", "16, 24 or 32 bytes")]
    #[case::bad_id("CLOISTER_KEY_A-B", KEY, "letters, digits")]
    #[case::memory("CLOISTER_MEMORY_LIMIT", "lots", "512M")]
    #[case::output(
        "CLOISTER_OUTPUT_PLAINTEXT",
        "yes",
        "none, insecure-columns or insecure-formats"
    )]
    #[case::vars("CLOISTER_APP_VARS", "OUT", "does not set")]
    #[case::print("CLOISTER_INSECURE_PRINT_RESULTS", "yes", "true or false")]
    #[case::cmk_not_pem("CLOISTER_CMK_CMK1", "not a key", "RSA private key")]
    #[case::cek_not_hex("CLOISTER_CEK_CEK1", "zz", "not hex")]
    #[case::cek_short("CLOISTER_CEK_CEK1", "0011", "encrypted_value")]
    fn bad_settings_name_the_setting_and_not_the_value(
        #[case] name: &str,
        #[case] value: &str,
        #[case] says: &str,
    ) {
        let err = JobSettings::from_env(&env(&[(name, value)])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(name) && text.contains(says), "{text}");
        if value.len() > 3 {
            assert!(!text.contains(value), "{text}");
        }
    }

    #[test]
    fn app_vars_are_only_the_listed_ones_and_never_secret_looking() {
        let s = JobSettings::from_env(&env(&[
            ("CLOISTER_APP_VARS", "DATA, OUT"),
            ("DATA", "/lake"),
            ("OUT", "/out"),
            ("MODE", "x"),
        ]))
        .unwrap();
        assert_eq!(s.vars.names().collect::<Vec<_>>(), ["DATA", "OUT"]);
        let err = JobSettings::from_env(&env(&[
            ("CLOISTER_APP_VARS", "AZURE_BLOB_SAS_TOKEN"),
            ("AZURE_BLOB_SAS_TOKEN", "sig=SECRET"),
            ("AZURE_BLOB_ACCOUNT_NAME", "acct"),
            ("AZURE_BLOB_CONTAINER_NAME", "data"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("looks like a secret"), "{err}");
        assert!(!err.to_string().contains("SECRET"), "{err}");
    }

    #[test]
    fn regression_errors_that_may_quote_data_show_only_their_kind() {
        use cloister_engine::datafusion::arrow::error::ArrowError;
        let cast = DataFusionError::Context(
            "script \"q.sql\", statement 1".into(),
            Box::new(DataFusionError::ArrowError(
                Box::new(ArrowError::CastError(
                    "Cannot cast string 'CANARY-SSN-123' to value of Int32 type".into(),
                )),
                None,
            )),
        );
        let execution = DataFusionError::Execution("value CANARY-SSN-123 overflows".into());
        for error in [cast, execution] {
            let text = JobError::run(error).to_string();
            assert!(!text.contains("CANARY"), "{text}");
            assert!(text.contains("details withheld"), "{text}");
        }
        let plan = DataFusionError::Context(
            "script \"q.sql\", statement 2".into(),
            Box::new(DataFusionError::Plan("table 'trips' not found".into())),
        );
        let text = JobError::run(plan).to_string();
        assert!(
            text.contains("q.sql") && text.contains("table 'trips' not found"),
            "{text}"
        );
    }

    #[test]
    fn regression_a_key_variable_never_becomes_a_sql_variable() {
        // A raw CEK is 64 hex digits: a value AppVars would accept; its name is the guard.
        let cek = "ab".repeat(32);
        for (list, name) in [
            ("CLOISTER_CEK_CEK1", "CLOISTER_CEK_CEK1"),
            ("OUT CLOISTER_KEY_K1", "CLOISTER_KEY_K1"),
            ("CLOISTER_BUNDLE_KEY", "CLOISTER_BUNDLE_KEY"),
        ] {
            let err = JobSettings::from_env(&env(&[
                ("CLOISTER_APP_VARS", list),
                ("OUT", "/out"),
                (name, &cek),
            ]))
            .unwrap_err();
            let text = err.to_string();
            assert!(text.contains("never become SQL variables"), "{text}");
            assert!(!text.contains(&cek), "{text}");
        }
    }

    #[test]
    fn azure_without_a_credential_names_the_sas_token() {
        let err = JobSettings::from_env(&env(&[
            ("AZURE_BLOB_ACCOUNT_NAME", "acct"),
            ("AZURE_BLOB_CONTAINER_NAME", "data"),
        ]))
        .unwrap_err();
        assert!(matches!(err, JobError::Store(_)), "{err:?}");
        assert!(err.to_string().contains("AZURE_BLOB_SAS_TOKEN"), "{err}");
    }

    #[rstest::rstest]
    #[case("1048576", 1 << 20)]
    #[case("512M", 512 << 20)]
    #[case("2G", 2 << 30)]
    #[case("64MiB", 64 << 20)]
    #[case(" 16k ", 16 << 10)]
    fn memory_limits_parse(#[case] text: &str, #[case] bytes: usize) {
        assert_eq!(parse_bytes(text), Some(bytes));
    }

    #[test]
    fn memory_limits_refuse_nonsense() {
        for text in ["", "0", "M", "12X", "-5"] {
            assert_eq!(parse_bytes(text), None, "{text}");
        }
    }

    /// Risky settings have loud names (issue 10): a policy written with an old spelling is
    /// refused with the new one named, instead of meaning something else.
    #[test]
    fn regression_old_spellings_of_risky_settings_are_refused_with_the_new_name() {
        for (old, new) in [
            ("formats", "insecure-formats"),
            ("columns", "insecure-columns"),
        ] {
            let err = JobSettings::from_env(&env(&[("CLOISTER_OUTPUT_PLAINTEXT", old)]))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("CLOISTER_OUTPUT_PLAINTEXT") && err.contains(new),
                "{err}"
            );
        }
        let err = JobSettings::from_env(&env(&[("CLOISTER_PRINT_RESULTS", "true")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CLOISTER_PRINT_RESULTS")
                && err.contains("CLOISTER_INSECURE_PRINT_RESULTS=true"),
            "{err}"
        );
        let s = JobSettings::from_env(&env(&[
            ("CLOISTER_OUTPUT_PLAINTEXT", "insecure-formats"),
            ("CLOISTER_INSECURE_PRINT_RESULTS", "true"),
        ]))
        .unwrap();
        assert!(s.print_results && s.output_policy.allows_plaintext_formats());
        assert!(
            s.describe().contains("plaintext allowed"),
            "{}",
            s.describe()
        );
    }

    #[test]
    fn key_settings_name_the_variable() {
        assert_eq!(key_setting("trips_fare"), "CLOISTER_KEY_TRIPS_FARE");
    }
}

//! `cloister bench taxi`: the NYC taxi demo's five queries, timed in three modes in one run —
//! Cloister confidential (encrypted Parquet, encrypted spill), Cloister plaintext (the same
//! engine settings on the plaintext copy, DataFusion's own spill) and DuckDB on the plaintext
//! copy — after a warm-up round whose results must agree across the modes.
//!
//! The rounds interleave the modes (query by query, the mode order rotating every round), so a
//! change in the machine's load during the run touches every mode alike.

mod compare;
mod duckdb;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::ValueEnum;
use cloister_datagen::taxi::{self, TaxiSpec};
use cloister_engine::datafusion::execution::runtime_env::RuntimeEnvBuilder;
use cloister_engine::datafusion::prelude::{SessionConfig, SessionContext};
use cloister_engine::{
    CloisterEncryptionFactory, EncryptionOptions, Engine, EngineBuilder, InMemoryKeyProvider,
};
use cloister_runtime::{Role, RoleContext, RoleError};
use serde::{Deserialize, Serialize};

use self::compare::Rows;
use self::duckdb::DuckDb;
use super::progress;
use crate::demo::cluster::{Cluster, measurement_without_bundle};
use crate::demo::taxi::{TRIP_KEYS, trips_encryption};
use crate::{EXIT_REFUSED, output};
use cloister_roles::job::JobSettings;

/// One demo query: its file name without `.sql`, and its text.
#[derive(Clone, Copy, Debug)]
pub struct Query {
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! query {
    ($name:literal) => {
        Query {
            name: $name,
            sql: include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/nyc-taxi/queries/",
                $name,
                ".sql"
            )),
        }
    };
}

/// The demo's queries (`examples/nyc-taxi/queries/`), in order.
pub const QUERIES: [Query; 5] = [
    query!("1_trip_count"),
    query!("2_trips_per_hour"),
    query!("3_top_pickup_zones"),
    query!("4_payment_passengers"),
    query!("5_revenue_by_borough"),
];

/// The query whose rate (rows/s) the report states.
const PER_HOUR: &str = "2_trips_per_hour";

/// The targets the report checks (docs/bench.md says why these).
const TARGET_CONFIDENTIAL_OVER_PLAINTEXT: f64 = 1.10;
const TARGET_CONFIDENTIAL_OVER_DUCKDB: f64 = 1.5;
const TARGET_PER_HOUR_ROWS_PER_SECOND: f64 = 25e6;

#[derive(clap::Args)]
pub struct Args {
    /// How many trips to generate.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    rows: u64,
    /// Timed rounds after the warm-up; each runs every query once in every mode.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Warm-up rounds (untimed; the first one's results are compared across the modes).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    warmup: u32,
    /// Keep the plaintext data set here and reuse it when the same spec is there already
    /// (default: a temporary directory, removed at the end).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The Python with the `duckdb` package (default: $CLOISTER_PYTHON, else
    /// ~/.cache/cloister/venv/bin/python when present, else python3).
    #[arg(long, value_name = "PATH")]
    python: Option<PathBuf>,
    /// Threads for every mode: Cloister's runtime workers and target partitions, DuckDB's
    /// `threads` (default: the cores available).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1024))]
    threads: Option<u32>,
    /// The modes to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Mode::Confidential, Mode::Plaintext, Mode::Duckdb])]
    modes: Vec<Mode>,
    /// Trip files (default: one per 4 Mi rows).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    files: Option<u32>,
    /// Rows per Parquet row group of the generated files (default: 1 Mi, pyarrow's).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(65536..))]
    row_group_rows: Option<u64>,
    /// Set a DataFusion session option in both Cloister modes, e.g.
    /// `--set datafusion.execution.batch_size=16384` (repeatable; for tuning experiments).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// Print JSON: {"rows", "runs", "warmup", "threads", "cores", "data", "key_source",
    /// "duckdb", "modes", "queries": [{"name", "result_rows", "timings": {MODE: {"median_ms",
    /// "min_ms", "max_ms", "runs_ms"}}, "confidential_over_plaintext",
    /// "confidential_over_duckdb"}], "geomean", "per_hour_rows_per_second", "targets"}.
    #[arg(long)]
    json: bool,
}

/// How the queries run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Cloister on the encrypted copy, with encrypted spill.
    Confidential,
    /// Cloister on the plaintext copy, with DataFusion's plain spill.
    Plaintext,
    /// DuckDB on the plaintext copy.
    Duckdb,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Confidential => "confidential",
            Mode::Plaintext => "plaintext",
            Mode::Duckdb => "duckdb",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the data is and how it got there.
#[derive(Debug, Serialize)]
struct DataReport {
    /// The plaintext copy (trips and zones).
    dir: PathBuf,
    /// Whether the plaintext copy was found from an earlier run.
    cached: bool,
    trip_files: u32,
    plain_bytes: u64,
    encrypted_bytes: Option<u64>,
    /// Seconds generating the plaintext copy (absent when cached).
    generate_seconds: Option<f64>,
    /// Seconds generating the encrypted copy (absent without the confidential mode).
    encrypt_seconds: Option<f64>,
}

/// Median, extremes and every timed run of one query in one mode.
#[derive(Clone, Debug, Serialize)]
struct Timing {
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
    runs_ms: Vec<f64>,
}

impl Timing {
    fn of(runs_ms: Vec<f64>) -> Self {
        let mut sorted = runs_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median_ms: median,
            min_ms: sorted.first().copied().unwrap_or(f64::NAN),
            max_ms: sorted.last().copied().unwrap_or(f64::NAN),
            runs_ms,
        }
    }
}

#[derive(Debug, Serialize)]
struct QueryReport {
    name: &'static str,
    result_rows: usize,
    timings: std::collections::BTreeMap<Mode, Timing>,
    confidential_over_plaintext: Option<f64>,
    confidential_over_duckdb: Option<f64>,
}

#[derive(Debug, Default, Serialize)]
struct Geomean {
    confidential_over_plaintext: Option<f64>,
    confidential_over_duckdb: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Target {
    name: String,
    /// The bound, and whether it is an upper (`max`) or lower (`min`) one.
    bound: f64,
    kind: &'static str,
    value: f64,
    met: bool,
}

#[derive(Debug, Serialize)]
struct DuckdbReport {
    version: String,
    python: PathBuf,
    threads: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: u64,
    runs: u32,
    warmup: u32,
    threads: u32,
    cores: usize,
    data: DataReport,
    /// Where the confidential mode's keys come from.
    key_source: &'static str,
    duckdb: Option<DuckdbReport>,
    modes: Vec<Mode>,
    queries: Vec<QueryReport>,
    geomean: Geomean,
    per_hour_rows_per_second: std::collections::BTreeMap<Mode, f64>,
    targets: Vec<Target>,
}

pub fn run(args: Args, quiet: bool) -> anyhow::Result<ExitCode> {
    let hidden = quiet || args.json;
    let mut modes = args.modes.clone();
    modes.sort();
    modes.dedup();
    if modes.is_empty() {
        bail!("--modes names no mode");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args
        .threads
        .unwrap_or_else(|| u32::try_from(cores).unwrap_or(1));

    // DuckDB first: a missing peer should stop the run before minutes of data generation.
    let python = args.python.clone().unwrap_or_else(default_python);
    if modes.contains(&Mode::Duckdb) {
        duckdb::probe(&python)?;
    }
    let mut spec = TaxiSpec::new(args.rows);
    if let Some(files) = args.files {
        spec.files = files;
    }
    if let Some(n) = args.row_group_rows {
        spec.row_group_rows = usize::try_from(n).context("--row-group-rows is too large")?;
    }
    spec.validate()?;
    let data = Data::prepare(&spec, args.dir.as_deref(), &modes, hidden)?;
    let mut duck = if modes.contains(&Mode::Duckdb) {
        Some(DuckDb::start(
            &python,
            &data.plain_trips_glob(),
            &data.zones_file(),
            threads,
        )?)
    } else {
        None
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads as usize)
        .thread_name("bench-engine")
        .enable_all()
        .build()
        .context("start a tokio runtime")?;
    let mut config = session_config(threads);
    for setting in &args.settings {
        let Some((key, value)) = setting.split_once('=') else {
            bail!("--set {setting:?}: expected KEY=VALUE");
        };
        config
            .options_mut()
            .set(key.trim(), value.trim())
            .with_context(|| format!("--set {setting:?}"))?;
    }
    let confidential = match &data.keys {
        Some(keys) if modes.contains(&Mode::Confidential) => {
            Some(rt.block_on(confidential_engine(config.clone(), keys.clone(), &data))?)
        }
        _ => None,
    };
    let plaintext = if modes.contains(&Mode::Plaintext) {
        Some(rt.block_on(plaintext_session(config, &data))?)
    } else {
        None
    };

    let rounds = args.warmup + args.runs;
    let bar = progress(
        u64::from(rounds) * (modes.len() * QUERIES.len()) as u64,
        hidden,
    );
    bar.set_prefix("queries");
    let mut times: Vec<std::collections::BTreeMap<Mode, Vec<f64>>> =
        vec![Default::default(); QUERIES.len()];
    let mut results: Vec<Vec<(Mode, Rows)>> = vec![Vec::new(); QUERIES.len()];
    for round in 0..rounds {
        let warm = round < args.warmup;
        for (qi, q) in QUERIES.iter().enumerate() {
            for k in 0..modes.len() {
                // Rotate the order every round: no mode always runs right after another.
                let mode = modes[(k + round as usize) % modes.len()];
                bar.set_message(format!(
                    "{} {} {}",
                    if warm { "warm-up" } else { "round" },
                    q.name,
                    mode
                ));
                let want_rows = round == 0;
                let (elapsed, rows) = match mode {
                    Mode::Confidential => {
                        let engine = confidential.as_ref().context("no confidential engine")?;
                        rt.block_on(time_cloister(q, want_rows, |sql| engine.sql(sql)))
                    }
                    Mode::Plaintext => {
                        let ctx = plaintext.as_ref().context("no plaintext session")?;
                        rt.block_on(time_cloister(q, want_rows, |sql| ctx.sql(sql)))
                    }
                    Mode::Duckdb => duck
                        .as_mut()
                        .context("no DuckDB process")?
                        .query(q.sql, want_rows),
                }
                .with_context(|| format!("{mode}: query {}", q.name))?;
                if let Some(rows) = rows {
                    results[qi].push((mode, rows));
                }
                if !warm {
                    times[qi]
                        .entry(mode)
                        .or_default()
                        .push(elapsed.as_secs_f64() * 1e3);
                }
                bar.inc(1);
            }
            // The results agree before any figure is taken.
            if round == 0 {
                let disagreements = compare::agree(&results[qi]);
                if !disagreements.is_empty() {
                    bar.finish_and_clear();
                    eprintln!(
                        "cloister: the modes disagree on {}:\n  {}",
                        q.name,
                        disagreements.join("\n  ")
                    );
                    return Ok(ExitCode::from(EXIT_REFUSED));
                }
            }
        }
    }
    bar.finish_and_clear();
    let duck_report = duck.as_mut().map(|d| DuckdbReport {
        version: d.version().to_owned(),
        python: python.clone(),
        threads: d.threads().clone(),
    });
    if let Some(d) = duck.take() {
        d.stop();
    }

    let report = build_report(
        &args,
        threads,
        cores,
        data.report,
        duck_report,
        modes,
        times,
        &results,
    );
    if args.json {
        output::json(&report)?;
    } else {
        print_report(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The session settings shared by both Cloister modes.
fn session_config(threads: u32) -> SessionConfig {
    SessionConfig::new().with_target_partitions(threads as usize)
}

/// Runs `q` once through `sql` (planning included) and collects its result.
async fn time_cloister<F, Fut>(
    q: &Query,
    want_rows: bool,
    sql: F,
) -> anyhow::Result<(Duration, Option<Rows>)>
where
    F: FnOnce(&'static str) -> Fut,
    Fut: std::future::Future<
            Output = cloister_engine::datafusion::error::Result<
                cloister_engine::datafusion::prelude::DataFrame,
            >,
        >,
{
    let start = Instant::now();
    let batches = sql(q.sql).await?.collect().await?;
    let elapsed = start.elapsed();
    let rows = if want_rows {
        Some(Rows::from_batches(&batches)?)
    } else {
        None
    };
    Ok((elapsed, rows))
}

/// The confidential engine: keys from memory, the encrypted trips, the public zones.
async fn confidential_engine(
    config: SessionConfig,
    keys: Arc<InMemoryKeyProvider>,
    data: &Data,
) -> anyhow::Result<Engine> {
    let engine = EngineBuilder::new(keys).session_config(config).build()?;
    let enc = data
        .encrypted_trips()
        .context("no encrypted copy was made")?;
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION {} \
             OPTIONS ('format.crypto.factory_id' '{}')",
            literal(&enc),
            cloister_engine::FACTORY_ID
        ))
        .await?;
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE zones STORED AS PARQUET LOCATION {}",
            literal(&data.zones_file())
        ))
        .await?;
    Ok(engine)
}

/// The plaintext session: the same settings, DataFusion's default runtime (plain spill files).
async fn plaintext_session(config: SessionConfig, data: &Data) -> anyhow::Result<SessionContext> {
    let runtime = RuntimeEnvBuilder::new().build_arc()?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION {}",
        literal(&data.plain_trips())
    ))
    .await?;
    ctx.sql(&format!(
        "CREATE EXTERNAL TABLE zones STORED AS PARQUET LOCATION {}",
        literal(&data.zones_file())
    ))
    .await?;
    Ok(ctx)
}

/// A SQL string literal naming `path` (a directory gets its trailing `/`).
fn literal(path: &Path) -> String {
    let mut s = path.display().to_string();
    if path.is_dir() && !s.ends_with('/') {
        s.push('/');
    }
    format!("'{}'", s.replace('\'', "''"))
}

/// `--python`'s default.
fn default_python() -> PathBuf {
    if let Some(p) = std::env::var_os("CLOISTER_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/cloister/venv/bin/python");
        if venv.exists() {
            return venv;
        }
    }
    PathBuf::from("python3")
}

/// What a data directory holds: the spec it was generated from. Written last, so a directory
/// with it is complete.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    format: u32,
    rows: u64,
    files: u32,
    seed: u64,
    start_date: String,
    days: u32,
    row_group_rows: usize,
    batch_rows: usize,
}

impl Stamp {
    const FILE: &'static str = "SPEC.json";

    fn of(spec: &TaxiSpec) -> Self {
        Self {
            format: 1,
            rows: spec.rows,
            files: spec.files,
            seed: spec.seed,
            start_date: spec.start_date.to_string(),
            days: spec.days,
            row_group_rows: spec.row_group_rows,
            batch_rows: spec.batch_rows,
        }
    }

    fn read(dir: &Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(Self::FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// The bench's data: the plaintext copy (cached in --dir) and, for the confidential mode, an
/// encrypted copy made in this run under master keys released by a CAS after attestation.
struct Data {
    plain: PathBuf,
    encrypted: Option<tempfile::TempDir>,
    keys: Option<Arc<InMemoryKeyProvider>>,
    report: DataReport,
    /// The directory everything is in when no --dir was given; removed on drop.
    _scratch: Option<tempfile::TempDir>,
}

impl Data {
    fn prepare(
        spec: &TaxiSpec,
        dir: Option<&Path>,
        modes: &[Mode],
        hidden: bool,
    ) -> anyhow::Result<Self> {
        let (base, scratch) = match dir {
            Some(d) => {
                std::fs::create_dir_all(d)
                    .with_context(|| format!("create the data directory {}", d.display()))?;
                (d.to_path_buf(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("cloister-bench-taxi-")
                    .tempdir()
                    .context("create a temporary data directory")?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let stamp = Stamp::of(spec);
        let plain = base.join(format!(
            "taxi-{}rows-{}files-{}rg-seed{}",
            spec.rows, spec.files, spec.row_group_rows, spec.seed
        ));
        let cached = Stamp::read(&plain).is_some_and(|s| s == stamp);
        let mut generate_seconds = None;
        if !cached {
            if plain.exists() {
                std::fs::remove_dir_all(&plain)
                    .with_context(|| format!("remove the stale data in {}", plain.display()))?;
            }
            let start = Instant::now();
            let bar = crate::progress::rows_bar(spec.rows, !hidden);
            bar.set_message("plaintext");
            let props = || {
                taxi::default_writer_properties()
                    .set_max_row_group_row_count(Some(spec.row_group_rows))
                    .build()
            };
            taxi::generate(spec, &plain.join("trips"), |_| props(), &|n| bar.inc(n))?;
            taxi::write_zones(&plain.join("zones"), props(), false)?;
            bar.finish_and_clear();
            std::fs::write(plain.join(Stamp::FILE), serde_json::to_vec_pretty(&stamp)?)
                .context("write the data set's stamp")?;
            generate_seconds = Some(start.elapsed().as_secs_f64());
        }
        let plain_bytes = dir_bytes(&plain.join("trips"))?;

        let (mut encrypted, mut keys, mut encrypt_seconds, mut encrypted_bytes) =
            (None, None, None, None);
        if modes.contains(&Mode::Confidential) {
            let start = Instant::now();
            let enc = tempfile::Builder::new()
                .prefix("encrypted-")
                .tempdir_in(&base)
                .context("create the encrypted copy's directory")?;
            let provider = attested_master_keys(&enc.path().join("cluster"))?;
            // Fresh data keys per file (wrapped by the master keys), as the demo's ingest.
            let props = (0..spec.files)
                .map(|_| encryption(&provider))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let bar = crate::progress::rows_bar(spec.rows, !hidden);
            // `generate` asks for files 0..spec.files, one entry of `props` each: indexing
            // cannot fail, and no file can fall back to plaintext.
            let writer = |file: usize| {
                taxi::default_writer_properties()
                    .set_max_row_group_row_count(Some(spec.row_group_rows))
                    .with_file_encryption_properties(props[file].clone())
                    .build()
            };
            taxi::generate(spec, &enc.path().join("trips"), writer, &|n| bar.inc(n))?;
            bar.finish_and_clear();
            encrypt_seconds = Some(start.elapsed().as_secs_f64());
            encrypted_bytes = Some(dir_bytes(&enc.path().join("trips"))?);
            encrypted = Some(enc);
            keys = Some(provider);
        }
        Ok(Self {
            report: DataReport {
                dir: plain.clone(),
                cached,
                trip_files: spec.files,
                plain_bytes,
                encrypted_bytes,
                generate_seconds,
                encrypt_seconds,
            },
            plain,
            encrypted,
            keys,
            _scratch: scratch,
        })
    }

    fn plain_trips(&self) -> PathBuf {
        self.plain.join("trips")
    }

    fn plain_trips_glob(&self) -> String {
        format!(
            "{}/{}*.parquet",
            self.plain_trips().display(),
            taxi::PART_PREFIX
        )
    }

    fn zones_file(&self) -> PathBuf {
        self.plain
            .join("zones")
            .join(format!("{}.parquet", taxi::ZONE_LOOKUP_STEM))
    }

    fn encrypted_trips(&self) -> Option<PathBuf> {
        self.encrypted.as_ref().map(|d| d.path().join("trips"))
    }
}

fn dir_bytes(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("list {}", dir.display()))? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}

/// The bench's session on its CAS.
const SESSION: &str = "bench/nyc-taxi";

/// The master keys (footer and the three column keys), as the confidential mode gets them in
/// production: a CAS generates them (`aes256` secrets of a policy pinning this executable)
/// and releases them only to this process once it attested — here a CAS and a sim LAS on
/// loopback ([`Cluster`]), stopped again once the keys are in memory.
fn attested_master_keys(dir: &Path) -> anyhow::Result<Arc<InMemoryKeyProvider>> {
    // The bench's policy imports nothing from the host.
    let cluster = Cluster::start(dir, crate::demo::cluster::ImportRules::none())?;
    let mut env = String::new();
    let mut secrets = String::new();
    for (id, _) in TRIP_KEYS {
        env += &format!(
            "      {}: $$cloister:{id}:hex$$\n",
            cloister_roles::job::key_setting(id)
        );
        secrets += &format!("  - name: {id}\n    kind: aes256\n");
    }
    let policy = format!(
        "name: {SESSION}\nversion: 1\n{owner}security:\n  tees: [sim]\nservices:\n  \
         - name: bench\n    attestation:\n      - measurements: [\"{measurement}\"]\n    \
         env:\n{env}secrets:\n{secrets}",
        owner = cluster.owner_yaml()?,
        measurement = measurement_without_bundle()?,
    );
    cluster.push_policy(&policy)?;
    Ok(cluster.launch(SESSION, "bench", None, ReceiveKeys)?)
}

/// The bench's attested service: takes the data keys from its configuration.
struct ReceiveKeys;

impl Role for ReceiveKeys {
    type Output = Arc<InMemoryKeyProvider>;

    fn name(&self) -> &str {
        "bench"
    }

    fn run(self, ctx: RoleContext) -> Result<Self::Output, RoleError> {
        Ok(JobSettings::from_env(&ctx.env)?.keys())
    }
}

/// The options the encrypted copy is written with: key-management-tools material (data keys
/// per file and column, wrapped by the master keys), every trip column under a column key.
fn encryption_options() -> anyhow::Result<EncryptionOptions> {
    // The demo's encryption: the same master keys and columns, so the bench measures what
    // the demo runs.
    let options = trips_encryption();
    let covered = options.encrypted_columns();
    let schema = taxi::schema();
    if let Some(left) = schema.fields().iter().find(|f| !covered.contains(f.name())) {
        bail!(
            "internal error: trip column {} has no column key",
            left.name()
        );
    }
    Ok(options)
}

fn encryption(
    keys: &Arc<InMemoryKeyProvider>,
) -> anyhow::Result<
    Arc<cloister_engine::datafusion::parquet::encryption::encrypt::FileEncryptionProperties>,
> {
    let factory = CloisterEncryptionFactory::new(keys.clone());
    Ok(factory.encryption_properties(&encryption_options()?, &taxi::schema())?)
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    args: &Args,
    threads: u32,
    cores: usize,
    data: DataReport,
    duckdb: Option<DuckdbReport>,
    modes: Vec<Mode>,
    times: Vec<std::collections::BTreeMap<Mode, Vec<f64>>>,
    results: &[Vec<(Mode, Rows)>],
) -> Report {
    let mut queries = Vec::new();
    for ((q, t), r) in QUERIES.iter().zip(times).zip(results) {
        let timings: std::collections::BTreeMap<Mode, Timing> =
            t.into_iter().map(|(m, v)| (m, Timing::of(v))).collect();
        let ratio = |a: Mode, b: Mode| {
            Some(timings.get(&a)?.median_ms / timings.get(&b)?.median_ms.max(1e-9))
        };
        queries.push(QueryReport {
            name: q.name,
            result_rows: r.first().map_or(0, |(_, rows)| rows.len()),
            confidential_over_plaintext: ratio(Mode::Confidential, Mode::Plaintext),
            confidential_over_duckdb: ratio(Mode::Confidential, Mode::Duckdb),
            timings,
        });
    }
    let geo = |f: fn(&QueryReport) -> Option<f64>| {
        let v: Option<Vec<f64>> = queries.iter().map(f).collect();
        v.filter(|v| !v.is_empty())
            .map(|v| (v.iter().map(|x| x.ln()).sum::<f64>() / v.len() as f64).exp())
    };
    let geomean = Geomean {
        confidential_over_plaintext: geo(|q| q.confidential_over_plaintext),
        confidential_over_duckdb: geo(|q| q.confidential_over_duckdb),
    };
    let per_hour_rows_per_second: std::collections::BTreeMap<Mode, f64> = queries
        .iter()
        .find(|q| q.name == PER_HOUR)
        .map(|q| {
            q.timings
                .iter()
                .map(|(m, t)| (*m, args.rows as f64 / (t.median_ms / 1e3).max(1e-9)))
                .collect()
        })
        .unwrap_or_default();

    let mut targets = Vec::new();
    if let Some(g) = geomean.confidential_over_plaintext {
        targets.push(Target {
            name: "confidential / plaintext, geometric mean".into(),
            bound: TARGET_CONFIDENTIAL_OVER_PLAINTEXT,
            kind: "max",
            value: g,
            met: g <= TARGET_CONFIDENTIAL_OVER_PLAINTEXT,
        });
    }
    for q in &queries {
        if let Some(r) = q.confidential_over_duckdb {
            targets.push(Target {
                name: format!("confidential / DuckDB, {}", q.name),
                bound: TARGET_CONFIDENTIAL_OVER_DUCKDB,
                kind: "max",
                value: r,
                met: r <= TARGET_CONFIDENTIAL_OVER_DUCKDB,
            });
        }
    }
    if let Some(rate) = per_hour_rows_per_second.get(&Mode::Confidential) {
        targets.push(Target {
            name: format!("confidential rows/s, {PER_HOUR}"),
            bound: TARGET_PER_HOUR_ROWS_PER_SECOND,
            kind: "min",
            value: *rate,
            met: *rate >= TARGET_PER_HOUR_ROWS_PER_SECOND,
        });
    }
    Report {
        rows: args.rows,
        runs: args.runs,
        warmup: args.warmup,
        threads,
        cores,
        data,
        key_source: "attested",
        duckdb,
        modes,
        queries,
        geomean,
        per_hour_rows_per_second,
        targets,
    }
}

fn print_report(r: &Report) -> anyhow::Result<()> {
    let mut header = vec!["query".to_string(), "rows".to_string()];
    for m in &r.modes {
        header.push(format!("{m} ms (min–max)"));
    }
    let has = |m: Mode| r.modes.contains(&m);
    let conf_plain = has(Mode::Confidential) && has(Mode::Plaintext);
    let conf_duck = has(Mode::Confidential) && has(Mode::Duckdb);
    if conf_plain {
        header.push("conf / plain".into());
    }
    if conf_duck {
        header.push("conf / DuckDB".into());
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = output::table(&header);
    let ratio = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2}"));
    for q in &r.queries {
        let mut row = vec![q.name.to_string(), q.result_rows.to_string()];
        for m in &r.modes {
            row.push(q.timings.get(m).map_or("-".into(), |t| {
                format!("{:.1} ({:.1}–{:.1})", t.median_ms, t.min_ms, t.max_ms)
            }));
        }
        if conf_plain {
            row.push(ratio(q.confidential_over_plaintext));
        }
        if conf_duck {
            row.push(ratio(q.confidential_over_duckdb));
        }
        t.add_row(row);
    }
    if conf_plain || conf_duck {
        let mut row = vec!["geometric mean".to_string(), String::new()];
        row.extend(r.modes.iter().map(|_| String::new()));
        if conf_plain {
            row.push(ratio(r.geomean.confidential_over_plaintext));
        }
        if conf_duck {
            row.push(ratio(r.geomean.confidential_over_duckdb));
        }
        t.add_row(row);
    }
    output::print_table(&t)?;

    let mut out = String::new();
    let rates: Vec<String> = r
        .per_hour_rows_per_second
        .iter()
        .map(|(m, v)| format!("{m} {:.1}M", v / 1e6))
        .collect();
    out.push_str(&format!("{PER_HOUR}: rows/s {}\n", rates.join(", ")));
    for target in &r.targets {
        let op = if target.kind == "max" { "≤" } else { "≥" };
        let fmt = |v: f64| {
            if v >= 1e5 {
                format!("{:.1}M", v / 1e6)
            } else {
                format!("{v:.2}")
            }
        };
        out.push_str(&format!(
            "target {}: {} {op} {} {}\n",
            target.name,
            fmt(target.value),
            fmt(target.bound),
            if target.met { "met" } else { "MISSED" }
        ));
    }
    out.push_str(&format!(
        "{} trips in {} files ({:.0} MB plaintext{}{}), {} threads on {} cores, medians of {} runs after {} warm-up round(s){}\n",
        r.rows,
        r.data.trip_files,
        r.data.plain_bytes as f64 / 1e6,
        r.data
            .encrypted_bytes
            .map_or(String::new(), |b| format!(", {:.0} MB encrypted", b as f64 / 1e6)),
        if r.data.cached { ", cached" } else { "" },
        r.threads,
        r.cores,
        r.runs,
        r.warmup,
        if r.modes.len() > 1 {
            "; the results of every mode agreed"
        } else {
            ""
        },
    ));
    if r.modes.contains(&Mode::Confidential) {
        out.push_str(
            "confidential: every trip column encrypted (3 master keys as in the demo, KMT), \
             master keys released by a CAS after attestation (sim, loopback), spill encrypted\n",
        );
    }
    if let Some(d) = &r.duckdb {
        out.push_str(&format!(
            "DuckDB {} ({}), threads {}\n",
            d.version,
            d.python.display(),
            d.threads
        ));
    }
    use std::io::Write as _;
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_runs() {
        let t = Timing::of(vec![3.0, 1.0, 2.0]);
        assert_eq!((t.median_ms, t.min_ms, t.max_ms), (2.0, 1.0, 3.0));
        assert_eq!(Timing::of(vec![4.0, 1.0, 2.0, 3.0]).median_ms, 2.5);
        assert_eq!(t.runs_ms, [3.0, 1.0, 2.0]);
    }

    #[test]
    fn every_trip_column_has_a_column_key() {
        let options = encryption_options().unwrap();
        assert_eq!(
            options.encrypted_columns().len(),
            taxi::schema().fields().len()
        );
    }

    #[test]
    fn queries_are_the_example_files() {
        assert_eq!(QUERIES.len(), 5);
        for q in QUERIES {
            assert!(q.sql.to_ascii_uppercase().contains("SELECT"), "{}", q.name);
            assert!(!q.sql.trim_end().ends_with(';'), "{}", q.name);
        }
    }

    #[test]
    fn stamps_tell_specs_apart() {
        let a = Stamp::of(&TaxiSpec::new(1000));
        assert_eq!(a, Stamp::of(&TaxiSpec::new(1000)));
        assert_ne!(a, Stamp::of(&TaxiSpec::new(1001)));
    }

    #[test]
    fn literal_quotes() {
        assert_eq!(literal(Path::new("/no/such/it's")), "'/no/such/it''s'");
    }
}

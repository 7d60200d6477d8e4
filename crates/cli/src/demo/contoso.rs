//! `cloister demo contoso`: the ContosoHR Always Encrypted flow, attested end to end.
//!
//! 1. A CAS starts in-process on loopback (sim TEE, a fresh owner key). Three sessions:
//!    - `contoso/hr` holds `CMK1` (a `cmk` secret: RSA-2048 generated in the CAS, or the PEM
//!      given with `--cmk-pem`, imported from a file) and `CEK1` (a `cek` secret wrapped by
//!      `CMK1`), and exports `CEK1` to `contoso/payroll`;
//!    - `contoso/payroll` imports `CEK1` through that export, pinned to `contoso/hr`'s hash;
//!    - `contoso/rogue` imports `CEK1` too, but is not in the export.
//! 2. `contoso/hr`'s `loader` attests and loads `testdata/contosohr-employees.csv` into the
//!    database, `SSN` and `Salary` encrypted RANDOMIZED under `CEK1` as the ContosoHR schema has
//!    them (the CEK is the CAS's, wrapped by `CMK1` in the database's key metadata).
//! 3. `contoso/hr`'s `stats` attests, decrypts salaries inside the TEE, computes count, min, max,
//!    average, percentiles and counts per salary band, and writes them to `SalaryStatistics`
//!    with `value` encrypted RANDOMIZED under `CEK1`, in one transaction.
//! 4. `contoso/payroll`'s `report` attests and reads `SalaryStatistics` with the CEK it imported
//!    (it never holds the CMK).
//! 5. `contoso/rogue`'s `report` is refused by the CAS, which names the rule (`export`).
//! 6. `contoso/hr` is updated (its hash changes): `contoso/payroll`'s import, pinned to the old
//!    hash, is now refused (`import-hash`).
//!
//! Each app is this executable, attested with its measurement pinned in the policies; its keys
//! arrive in the attested configuration as `CLOISTER_CMK_<PATH>` / `CLOISTER_CEK_<NAME>` (see
//! [`InMemoryColumnMasterKeys::from_config_env`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use anyhow::{Context as _, bail};
use cloister_attest::sim::PlatformKey;
use cloister_cas::client::CasClient;
use cloister_cas::server::{self, CasState};
use cloister_cas::{CasConfig, MasterKey};
use cloister_engine::datafusion;
use cloister_engine::sql::{
    CLOISTER_KEY_STORE, ColumnEncryption, EncryptedSqlTable, InMemoryColumnMasterKeys, SqlDatabase,
    SqlSink, contosohr_cmk, load_contosohr,
};
use cloister_engine::{Engine, EngineBuilder, InMemoryKeyProvider};
use cloister_policy::{OwnerKey, SignedPolicy};
use cloister_runtime::{EvidenceSource, Launch, Role, RoleContext, RoleError, launch};
use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema};
use secrecy::SecretString;
use serde::Serialize;

use crate::output;

/// The exporting session.
pub const HR_SESSION: &str = "contoso/hr";
/// The importing session.
pub const PAYROLL_SESSION: &str = "contoso/payroll";
/// The session that imports without being exported to.
pub const ROGUE_SESSION: &str = "contoso/rogue";
/// The result table.
pub const RESULT_TABLE: &str = "SalaryStatistics";
/// Width of a salary band.
pub const BAND_WIDTH: i64 = 20_000;

const CSV: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/contosohr-employees.csv"
);

/// `cloister demo contoso`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print JSON (see `Report`) instead of tables.
    #[arg(long)]
    json: bool,
    /// Keep the database (`contoso.db`) in DIR (default: a temporary directory, removed).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Use this PostgreSQL database instead of SQLite: `host=H port=P user=U dbname=D`
    /// (no password: loopback or trust authentication).
    #[arg(long, value_name = "CONNINFO")]
    postgres: Option<String>,
    /// Import CMK1 from this PEM RSA private key instead of generating it in the CAS.
    #[arg(long, value_name = "FILE")]
    cmk_pem: Option<PathBuf>,
}

/// Where the flow keeps its data.
#[derive(Debug)]
pub struct Options {
    /// The database.
    pub database: SqlDatabase,
    /// `CMK1` from this PEM file (imported by the CAS) instead of generated.
    pub cmk_pem: Option<PathBuf>,
    /// The ContosoHR CSV.
    pub csv: PathBuf,
}

impl Options {
    /// SQLite at `path`, CMK generated in the CAS, the bundled CSV.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            database: SqlDatabase::sqlite(path),
            cmk_pem: None,
            csv: PathBuf::from(CSV),
        }
    }
}

/// What the flow did, for people (tables) and programs (`--json`). The schema is stable.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `sqlite` or `postgres`.
    pub database: &'static str,
    /// The SQLite file, if SQLite.
    pub database_path: Option<PathBuf>,
    /// Where `CMK1` came from: `generated` or `imported`.
    pub cmk: &'static str,
    /// The sessions pushed, in order (the last is `contoso/hr` version 2).
    pub sessions: Vec<SessionRow>,
    /// Rows the loader wrote into `Employees`.
    pub loaded_rows: u64,
    /// What `contoso/hr`'s `stats` computed and wrote to `SalaryStatistics`.
    pub statistics: Vec<Statistic>,
    /// What `contoso/payroll`'s `report` read back from `SalaryStatistics`.
    pub imported_read: Vec<Statistic>,
    /// The refused attestations, each with the rule the CAS named.
    pub refusals: Vec<RefusalRow>,
}

/// A session version the CAS accepted.
#[derive(Clone, Debug, Serialize)]
pub struct SessionRow {
    /// `namespace/name`.
    pub session: String,
    /// Its version.
    pub version: u64,
    /// Its hash.
    pub hash: String,
}

/// One row of `SalaryStatistics`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Statistic {
    /// `count`, `min`, `max`, `average`, `p25`, `median`, `p75`, `p90`, `band 20000-39999`, …
    pub statistic: String,
    /// The value (a count of employees for a band).
    pub value: f64,
}

/// An attestation the CAS refused.
#[derive(Debug, Serialize)]
pub struct RefusalRow {
    /// The session.
    pub session: String,
    /// The service.
    pub service: String,
    /// The rule the CAS named (`export`, `import-hash`, …).
    pub rule: String,
    /// Every reason it gave.
    pub reasons: Vec<String>,
}

/// `cloister demo contoso`.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<std::process::ExitCode> {
    let temp = match &args.dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("cloister-contoso-")
                .tempdir()
                .context("create a temporary directory")?,
        ),
    };
    let dir = match (&args.dir, &temp) {
        (Some(dir), _) => {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            dir.clone()
        }
        (None, Some(t)) => t.path().to_path_buf(),
        (None, None) => bail!("no directory"),
    };
    let mut options = Options::sqlite(dir.join("contoso.db"));
    if let Some(conninfo) = &args.postgres {
        options.database = SqlDatabase::postgres(crate::keys::parse_conninfo(conninfo)?);
    }
    options.cmk_pem = args.cmk_pem.clone();
    let report = run_flow(&options)?;
    if args.json {
        output::json(&report)?;
    } else {
        print_report(&report, quiet)?;
        if temp.is_some() && !quiet {
            eprintln!(
                "cloister: the database was in a temporary directory, now removed; keep it with \
                 --dir DIR"
            );
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

/// Run the whole flow (see the [module docs](self)) against `options.database`. Blocks; call it
/// from a plain thread, not from inside an async runtime. `cloister demo` calls this at its end.
pub fn run_flow(options: &Options) -> anyhow::Result<Report> {
    let cas = InProcessCas::start()?;
    let result = flow(&cas, options);
    cas.stop()?;
    result
}

fn flow(cas: &InProcessCas, options: &Options) -> anyhow::Result<Report> {
    let measurement = hex::encode(
        cloister_runtime::Measurement::of_running_exe(None)
            .context("measure this executable")?
            .as_bytes(),
    );
    let cmk_pem = match &options.cmk_pem {
        Some(path) => Some(
            std::fs::canonicalize(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let mut sessions = Vec::new();
    let hr_v1 = cas.create(&hr_policy(
        &cas.owner,
        &measurement,
        cmk_pem.as_deref(),
        None,
    )?)?;
    sessions.push(hr_v1.clone());
    for (name, exported) in [(PAYROLL_SESSION, true), (ROGUE_SESSION, false)] {
        let yaml = importer_policy(&cas.owner, &measurement, name, &hr_v1.hash)?;
        let row = cas.create(&yaml)?;
        debug_assert!(exported || row.session == ROGUE_SESSION);
        sessions.push(row);
    }

    // The loader and the statistics app: contoso/hr, with CMK1 and CEK1.
    let db = options.database.clone();
    let csv = options.csv.clone();
    let loaded_rows = cas.run_app(HR_SESSION, "loader", move |ctx| {
        block_on(async move {
            let keys = Arc::new(keys_of(&ctx)?);
            let engine = engine()?;
            let rows = load_contosohr(
                engine.session(),
                &csv,
                db,
                keys,
                contosohr_cmk(CLOISTER_KEY_STORE, "CMK1"),
            )
            .await?;
            Ok(rows)
        })
    })??;
    let db = options.database.clone();
    let statistics = cas.run_app(HR_SESSION, "stats", move |ctx| {
        block_on(async move {
            let keys = Arc::new(keys_of(&ctx)?);
            let engine = engine()?;
            let employees = EncryptedSqlTable::open(db.clone(), "Employees", keys.as_ref()).await?;
            engine
                .session()
                .register_table("employees", Arc::new(employees))?;
            let stats = salary_statistics(&engine).await?;
            let frame = engine.session().read_batch(statistics_batch(&stats)?)?;
            SqlSink::new(db, RESULT_TABLE, keys)
                .encrypt(ColumnEncryption::randomized("value", "CEK1"))
                .write(frame.execute_stream().await?)
                .await?;
            Ok(stats)
        })
    })??;

    // The importer reads with the CEK alone.
    let db = options.database.clone();
    let read = move |ctx: RoleContext| {
        block_on(async move {
            let keys = keys_of(&ctx)?;
            let engine = engine()?;
            let table = EncryptedSqlTable::open(db, RESULT_TABLE, &keys).await?;
            engine
                .session()
                .register_table("results", Arc::new(table))?;
            read_statistics(&engine).await
        })
    };
    let imported_read = cas.run_app(PAYROLL_SESSION, "report", read.clone())??;

    // Refusals: not exported to; pinned to a hash that is no longer current.
    let mut refusals = Vec::new();
    refusals.push(cas.expect_refusal(ROGUE_SESSION, "report", read.clone())?);
    let hr_v2 = cas.update(
        HR_SESSION,
        &hr_policy(
            &cas.owner,
            &measurement,
            cmk_pem.as_deref(),
            Some(&hr_v1.hash),
        )?,
    )?;
    sessions.push(hr_v2);
    refusals.push(cas.expect_refusal(PAYROLL_SESSION, "report", read)?);

    Ok(Report {
        database: options.database.kind(),
        database_path: options.database.sqlite_path().map(Path::to_path_buf),
        cmk: if cmk_pem.is_some() {
            "imported"
        } else {
            "generated"
        },
        sessions,
        loaded_rows,
        statistics,
        imported_read,
        refusals,
    })
}

/// The keys of an attested configuration (`CLOISTER_CMK_…`, `CLOISTER_CEK_…`).
fn keys_of(ctx: &RoleContext) -> anyhow::Result<InMemoryColumnMasterKeys> {
    Ok(InMemoryColumnMasterKeys::from_config_env(
        ctx.env.iter().map(|(k, v)| (k.as_str(), v)),
    )?)
}

fn engine() -> anyhow::Result<Engine> {
    Ok(EngineBuilder::new(Arc::new(InMemoryKeyProvider::new())).build()?)
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> Result<T, RoleError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(f)
        .map_err(|e| RoleError::from(format!("{e:#}")))
}

/// Count, min, max, average, percentiles and counts per band, over decrypted salaries.
async fn salary_statistics(engine: &Engine) -> anyhow::Result<Vec<Statistic>> {
    let salary = "CAST(\"Salary\" AS DOUBLE)";
    let summary = engine
        .sql(&format!(
            "SELECT CAST(count(*) AS DOUBLE) AS count, min({salary}) AS min, \
             max({salary}) AS max, avg({salary}) AS average, \
             percentile_cont(0.25) WITHIN GROUP (ORDER BY {salary}) AS p25, \
             percentile_cont(0.5) WITHIN GROUP (ORDER BY {salary}) AS median, \
             percentile_cont(0.75) WITHIN GROUP (ORDER BY {salary}) AS p75, \
             percentile_cont(0.9) WITHIN GROUP (ORDER BY {salary}) AS p90 \
             FROM employees"
        ))
        .await?
        .collect()
        .await?;
    let mut stats = Vec::new();
    let batch = summary.first().context("no summary row")?;
    for (i, field) in batch.schema().fields().iter().enumerate() {
        let column = datafusion::arrow::compute::cast(batch.column(i), &DataType::Float64)?;
        let values = column.as_primitive::<Float64Type>();
        if values.is_empty() || values.is_null(0) {
            bail!("statistic {} is empty", field.name());
        }
        stats.push(Statistic {
            statistic: field.name().clone(),
            value: values.value(0),
        });
    }
    let bands = engine
        .sql(&format!(
            "SELECT CAST(floor({salary} / {BAND_WIDTH}) AS BIGINT) * {BAND_WIDTH} AS low, \
             count(*) AS employees FROM employees GROUP BY 1 ORDER BY 1"
        ))
        .await?
        .collect()
        .await?;
    for batch in &bands {
        let low = batch.column(0).as_primitive::<Int64Type>();
        let n = batch.column(1).as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            let low = low.value(row);
            stats.push(Statistic {
                statistic: format!("band {low}-{}", low + BAND_WIDTH - 1),
                // A count of at most a few thousand rows: exact as a double.
                value: n.value(row) as f64,
            });
        }
    }
    Ok(stats)
}

/// `SalaryStatistics`: `position` and `statistic` in the clear, `value` to be encrypted.
fn statistics_batch(stats: &[Statistic]) -> anyhow::Result<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("position", DataType::Int64, false),
        Field::new("statistic", DataType::Utf8, false),
        Field::new("value", DataType::Float64, false),
    ]));
    let positions: Vec<i64> = (0..).take(stats.len()).collect();
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(positions)),
            Arc::new(StringArray::from_iter_values(
                stats.iter().map(|s| s.statistic.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(
                stats.iter().map(|s| s.value),
            )),
        ],
    )?)
}

async fn read_statistics(engine: &Engine) -> anyhow::Result<Vec<Statistic>> {
    let batches = engine
        .sql("SELECT statistic, value FROM results ORDER BY position")
        .await?
        .collect()
        .await?;
    let mut out = Vec::new();
    for batch in &batches {
        let names = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let names = names.as_string::<i32>();
        let values = batch.column(1).as_primitive::<Float64Type>();
        for row in 0..batch.num_rows() {
            out.push(Statistic {
                statistic: names.value(row).to_owned(),
                value: values.value(row),
            });
        }
    }
    Ok(out)
}

fn owner_entry(owner: &OwnerKey) -> anyhow::Result<String> {
    let pem = owner.public_key().to_pem()?;
    let key: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    Ok(format!(
        "access:\n  owners:\n    - name: custodian\n      key: {key}\nsecurity:\n  tees: [sim]\n"
    ))
}

/// `contoso/hr`: CMK1 and CEK1, the loader and the statistics app, CEK1 exported to payroll.
fn hr_policy(
    owner: &OwnerKey,
    measurement: &str,
    cmk_pem: Option<&Path>,
    predecessor: Option<&str>,
) -> anyhow::Result<String> {
    let cmk = match cmk_pem {
        Some(path) => format!(
            "  - name: CMK1\n    kind: cmk\n    from:\n      file: {}\n",
            path.display()
        ),
        None => "  - name: CMK1\n    kind: cmk\n    algorithm: rsa-2048\n".to_owned(),
    };
    let (version, history) = match predecessor {
        Some(hash) => (2, format!("predecessor: {hash}\n")),
        None => (1, String::new()),
    };
    let service = |name: &str| {
        format!(
            "  - name: {name}\n    attestation:\n      - measurements: [\"{measurement}\"]\n    \
             env:\n      CLOISTER_CMK_CMK1: $$cloister:CMK1:pem$$\n      \
             CLOISTER_CEK_CEK1: $$cloister:CEK1:hex$$\n"
        )
    };
    Ok(format!(
        "name: {HR_SESSION}\nversion: {version}\n{history}\
         description: ContosoHR employees, SSN and Salary encrypted under CEK1 (version {version})\n\
         {access}services:\n{loader}{stats}secrets:\n{cmk}  - name: CEK1\n    kind: cek\n    cmk: CMK1\n\
         export:\n  - secret: CEK1\n    to: [{PAYROLL_SESSION}]\n",
        access = owner_entry(owner)?,
        loader = service("loader"),
        stats = service("stats"),
    ))
}

/// An importer of `contoso/hr`'s CEK1, pinned to `hr_hash`; its `report` gets the key itself.
fn importer_policy(
    owner: &OwnerKey,
    measurement: &str,
    name: &str,
    hr_hash: &str,
) -> anyhow::Result<String> {
    Ok(format!(
        "name: {name}\nversion: 1\n{access}services:\n  - name: report\n    attestation:\n      \
         - measurements: [\"{measurement}\"]\n    env:\n      \
         CLOISTER_CEK_CEK1: $$cloister:CEK1:key$$\nsecrets:\n  - name: CEK1\n    kind: import\n    \
         from:\n      session:\n        session: {HR_SESSION}\n        secret: CEK1\n        \
         session_hash: {hr_hash}\n",
        access = owner_entry(owner)?,
    ))
}

/// A CAS in this process on loopback, trusting a fresh sim platform key; stopped by
/// [`InProcessCas::stop`].
struct InProcessCas {
    runtime: tokio::runtime::Runtime,
    url: String,
    cert_pem: String,
    platform_pem: SecretString,
    owner: OwnerKey,
    client: CasClient,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<tokio::task::JoinHandle<Result<(), cloister_cas::Error>>>,
    _dir: tempfile::TempDir,
}

impl InProcessCas {
    fn start() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("contoso-cas")
            .enable_all()
            .build()?;
        let dir = tempfile::Builder::new()
            .prefix("cloister-contoso-cas-")
            .tempdir()?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
        let url = format!("https://{}", listener.local_addr()?);
        let platform = PlatformKey::generate();
        let config = CasConfig::builder(&url)
            .trust_sim_key(platform.public_key())
            .build()?;
        let state = CasState::open(dir.path(), &MasterKey::generate(), config)?;
        let tls = state.tls_config()?;
        let cert_pem = state.certificate_pem().to_owned();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let join = runtime.spawn(server::run(listener, tls, state, async move {
            let _ = stopped.await;
        }));
        let client = CasClient::new(&url, &cert_pem)?;
        Ok(Self {
            runtime,
            url,
            cert_pem,
            platform_pem: platform.to_pem(),
            owner: OwnerKey::generate()?,
            client,
            stop: Some(stop),
            join: Some(join),
            _dir: dir,
        })
    }

    fn create(&self, yaml: &str) -> anyhow::Result<SessionRow> {
        let signed = SignedPolicy::new(yaml.to_owned()).signed_by(&self.owner);
        let s = self
            .runtime
            .block_on(self.client.create_session(&signed))
            .context("push a session")?;
        Ok(SessionRow {
            session: s.name,
            version: s.version,
            hash: s.hash,
        })
    }

    fn update(&self, name: &str, yaml: &str) -> anyhow::Result<SessionRow> {
        let signed = SignedPolicy::new(yaml.to_owned()).signed_by(&self.owner);
        let s = self
            .runtime
            .block_on(self.client.update_session(name, &signed))
            .context("update a session")?;
        Ok(SessionRow {
            session: s.name,
            version: s.version,
            hash: s.hash,
        })
    }

    fn launch_options(&self, session: &str, service: &str) -> anyhow::Result<Launch> {
        let platform =
            PlatformKey::from_pem(secrecy::ExposeSecret::expose_secret(&self.platform_pem))?;
        Ok(Launch::new(
            &self.url,
            &self.cert_pem,
            session,
            service,
            EvidenceSource::Sim(platform),
        ))
    }

    /// Attest as `session`/`service` on a plain thread and run `app` with the configuration.
    fn run_app<T: Send + 'static>(
        &self,
        session: &str,
        service: &str,
        app: impl FnOnce(RoleContext) -> Result<T, RoleError> + Send + 'static,
    ) -> anyhow::Result<Result<T, anyhow::Error>> {
        let options = self.launch_options(session, service)?;
        let what = format!("{session}/{service}");
        let handle: JoinHandle<Result<T, cloister_runtime::Error>> =
            std::thread::spawn(move || launch(options, App(app)));
        let result = handle
            .join()
            .map_err(|_| anyhow::anyhow!("the {what} app panicked"))?;
        Ok(result.with_context(|| format!("the {what} app failed")))
    }

    /// Attest as `session`/`service`, which the CAS must refuse; the rule it names.
    fn expect_refusal<T: Send + 'static>(
        &self,
        session: &str,
        service: &str,
        app: impl FnOnce(RoleContext) -> Result<T, RoleError> + Send + 'static,
    ) -> anyhow::Result<RefusalRow> {
        let options = self.launch_options(session, service)?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(launch(options, App(app)).map(|_| ()));
        });
        match rx.recv().context("the app thread ended")? {
            Ok(()) => bail!("{session}/{service} was admitted; the CAS should have refused it"),
            Err(cloister_runtime::Error::Refused { rule, reasons, .. }) => Ok(RefusalRow {
                session: session.to_owned(),
                service: service.to_owned(),
                rule: rule.unwrap_or_else(|| rule_in(&reasons)),
                reasons,
            }),
            Err(e) => Err(e).with_context(|| format!("{session}/{service} failed otherwise")),
        }
    }

    fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            self.runtime
                .block_on(join)
                .context("the CAS task failed")?
                .context("the CAS failed")?;
        }
        Ok(())
    }
}

/// The rule in a reason `secrets[NAME]: RULE: message`, else `attestation`.
fn rule_in(reasons: &[String]) -> String {
    reasons
        .iter()
        .find_map(|r| r.split(": ").nth(1).map(str::to_owned))
        .unwrap_or_else(|| "attestation".into())
}

/// A role running a closure on the attested configuration (no app bundle: the executable is
/// the app, and its measurement is what the policies pin).
struct App<F>(F);

impl<F, T> Role for App<F>
where
    F: FnOnce(RoleContext) -> Result<T, RoleError>,
{
    type Output = T;

    fn name(&self) -> &str {
        "contoso"
    }

    fn run(self, ctx: RoleContext) -> Result<T, RoleError> {
        (self.0)(ctx)
    }
}

fn print_report(r: &Report, quiet: bool) -> anyhow::Result<()> {
    let mut sessions = output::table(&["session", "version", "hash"]);
    for s in &r.sessions {
        sessions.add_row(vec![
            s.session.clone(),
            s.version.to_string(),
            s.hash.clone(),
        ]);
    }
    output::print_table(&sessions)?;
    let mut stats = output::table(&[
        "statistic",
        "computed in contoso/hr",
        "read by contoso/payroll",
    ]);
    for (i, s) in r.statistics.iter().enumerate() {
        let read = r
            .imported_read
            .get(i)
            .map_or_else(|| "—".to_owned(), |x| format_value(x.value));
        stats.add_row(vec![s.statistic.clone(), format_value(s.value), read]);
    }
    output::print_table(&stats)?;
    let mut refused = output::table(&["refused", "rule", "reason"]);
    for f in &r.refusals {
        refused.add_row(vec![
            format!("{}/{}", f.session, f.service),
            f.rule.clone(),
            f.reasons.join("; "),
        ]);
    }
    output::print_table(&refused)?;
    if !quiet {
        let place = r
            .database_path
            .as_ref()
            .map_or_else(|| r.database.to_owned(), |p| p.display().to_string());
        eprintln!(
            "cloister: {} employees loaded into {place} with SSN and Salary encrypted under CEK1 \
             (CMK1 {}); {RESULT_TABLE}.value encrypted under CEK1",
            r.loaded_rows, r.cmk
        );
    }
    Ok(())
}

fn format_value(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_found_in_reasons() {
        assert_eq!(
            rule_in(&["secrets[CEK1]: import-hash: pinned to …".into()]),
            "import-hash"
        );
        assert_eq!(rule_in(&[]), "attestation");
    }

    #[test]
    fn policies_validate() {
        let owner = OwnerKey::generate().unwrap();
        let m = "ab".repeat(48);
        let hr = hr_policy(&owner, &m, None, None).unwrap();
        let p = cloister_policy::Policy::parse(&hr).unwrap_or_else(|e| panic!("{e}\n{hr}"));
        let v2 = hr_policy(
            &owner,
            &m,
            Some(Path::new("/etc/cmk.pem")),
            Some(&p.hash().to_string()),
        )
        .unwrap();
        cloister_policy::Policy::parse(&v2).unwrap_or_else(|e| panic!("{e}\n{v2}"));
        let imp = importer_policy(&owner, &m, PAYROLL_SESSION, &p.hash().to_string()).unwrap();
        cloister_policy::Policy::parse(&imp).unwrap_or_else(|e| panic!("{e}\n{imp}"));
    }
}

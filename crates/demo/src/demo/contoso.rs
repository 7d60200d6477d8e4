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
//! [`InMemoryColumnMasterKeys::from_configured`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, bail};
use cloister_cas::api::SessionSummary;
use cloister_colenc::{CodePage, SqlType};
use cloister_engine::datafusion;
use cloister_engine::{Engine, EngineBuilder, InMemoryKeyProvider};
use cloister_runtime::{Role, RoleContext, RoleError};
use cloister_sqldb::{
    CLOISTER_KEY_STORE, ColumnEncryption, ColumnMasterKeyDefinition, ColumnMasterKeyProvider,
    EncryptedSqlTable, InMemoryColumnMasterKeys, SqlDatabase, SqlSink, load_csv,
};
use datafusion::arrow::array::{
    Array, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use serde::Serialize;

use super::cluster::{AuditRow, Cluster, ImportRules, audit_summary, measurement_without_bundle};
use cloister_cas::imports::namespace_of;
use cloister_roles::job::JobSettings;
use cloister_roles::output;

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

/// The ContosoHR sample, built in so that the demo needs no files.
const CSV_TEXT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/contosohr-employees.csv"
));

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
    /// The ContosoHR CSV (`None`: the sample built into this executable).
    pub csv: Option<PathBuf>,
}

impl Options {
    /// SQLite at `path`, CMK generated in the CAS, the bundled CSV.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            database: SqlDatabase::sqlite(path),
            cmk_pem: None,
            csv: None,
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
    /// The CAS audit log's view: each attestation of a `contoso/` session and what it released.
    pub audit: Vec<AuditRow>,
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
    /// The details, from the audit entry the refusal names (the CAS tells the workload only the
    /// rule ids; the demo's custodian reads the log).
    pub reasons: Vec<String>,
    /// That audit entry.
    pub audit_seq: Option<u64>,
}

/// `cloister demo contoso`.
pub fn run(args: Args, quiet: bool) -> anyhow::Result<std::process::ExitCode> {
    let (temp, dir) = super::work_dir(args.dir.as_deref(), "cloister-contoso-")?;
    let mut options = Options::sqlite(dir.join("contoso.db"));
    if let Some(conninfo) = &args.postgres {
        options.database =
            SqlDatabase::postgres(cloister_roles::conninfo::parse_conninfo(conninfo)?);
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
    let dir = tempfile::Builder::new()
        .prefix("cloister-contoso-cluster-")
        .tempdir()
        .context("create a temporary directory")?;
    // The CAS imports CMK1 (with --cmk-pem) from a copy in `imports/`, the only host import
    // its rules allow, for `contoso/*` only.
    let imports = dir.path().join("imports");
    let mut rules = ImportRules::none();
    let copied;
    let options = match &options.cmk_pem {
        Some(pem) => {
            std::fs::create_dir_all(&imports)
                .with_context(|| format!("cannot create {}", imports.display()))?;
            let bytes = zeroize::Zeroizing::new(
                std::fs::read(pem).with_context(|| format!("cannot read {}", pem.display()))?,
            );
            super::cluster::write_private(&imports.join("cmk1.pem"), &bytes)?;
            // Canonical, as `flow` names the file.
            rules = rules.allow_files(namespace_of(HR_SESSION), imports.canonicalize()?);
            copied = Options {
                cmk_pem: Some(imports.join("cmk1.pem")),
                database: options.database.clone(),
                csv: options.csv.clone(),
            };
            &copied
        }
        None => options,
    };
    let cluster = Cluster::start(dir.path().join("cluster"), rules)?;
    flow(&cluster, options)
}

/// The flow on an existing cluster (the default demo shares its own).
pub fn flow(cluster: &Cluster, options: &Options) -> anyhow::Result<Report> {
    let measurement = hex::encode(measurement_without_bundle()?.as_bytes());
    let access = cluster.owner_yaml()?;
    let cmk_pem = match &options.cmk_pem {
        Some(path) => Some(
            std::fs::canonicalize(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let mut sessions = Vec::new();
    let owner = cluster.owner_fingerprint();
    let hr_v1 = session_row(cluster.push_policy(&hr_policy(
        &access,
        &owner,
        &measurement,
        cmk_pem.as_deref(),
        None,
    ))?);
    sessions.push(hr_v1.clone());
    for name in [PAYROLL_SESSION, ROGUE_SESSION] {
        let yaml = importer_policy(&access, &measurement, name, &hr_v1.hash);
        sessions.push(session_row(cluster.push_policy(&yaml)?));
    }

    // The loader and the statistics app: contoso/hr, with CMK1 and CEK1.
    let db = options.database.clone();
    let csv_dir = tempfile::Builder::new()
        .prefix("cloister-contoso-csv-")
        .tempdir()
        .context("create a temporary directory")?;
    let csv = match &options.csv {
        Some(path) => path.clone(),
        None => {
            let path = csv_dir.path().join("contosohr-employees.csv");
            std::fs::write(&path, CSV_TEXT).context("write the sample CSV")?;
            path
        }
    };
    let loaded_rows = run_app(cluster, HR_SESSION, "loader", move |ctx| {
        block_on(async move {
            let keys = keys_of(&ctx)?;
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
    })?;
    let db = options.database.clone();
    let statistics = run_app(cluster, HR_SESSION, "stats", move |ctx| {
        block_on(async move {
            let keys = keys_of(&ctx)?;
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
    })?;

    // The importer reads with the CEK alone.
    let db = options.database.clone();
    let read = move |ctx: RoleContext| {
        block_on(async move {
            let keys = keys_of(&ctx)?;
            let engine = engine()?;
            let table = EncryptedSqlTable::open(db, RESULT_TABLE, keys.as_ref()).await?;
            engine
                .session()
                .register_table("results", Arc::new(table))?;
            read_statistics(&engine).await
        })
    };
    let imported_read = run_app(cluster, PAYROLL_SESSION, "report", read.clone())?;

    // Refusals: not exported to; pinned to a hash that is no longer current.
    let mut refusals = Vec::new();
    refusals.push(expect_refusal(
        cluster,
        ROGUE_SESSION,
        "report",
        read.clone(),
    )?);
    let hr_v2 = cluster.update_policy(
        HR_SESSION,
        &hr_policy(
            &access,
            &owner,
            &measurement,
            cmk_pem.as_deref(),
            Some(&hr_v1.hash),
        ),
    )?;
    sessions.push(session_row(hr_v2));
    refusals.push(expect_refusal(cluster, PAYROLL_SESSION, "report", read)?);
    let entries = cluster.audit_entries()?;
    for r in &mut refusals {
        if let Some(e) = entries.iter().find(|e| Some(e.seq) == r.audit_seq) {
            r.reasons = e.reasons.clone();
        }
    }
    let audit = audit_summary(&entries)
        .into_iter()
        .filter(|r| r.session.starts_with("contoso/"))
        .collect();

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
        audit,
    })
}

/// The Always Encrypted keys of an attested configuration (`CLOISTER_CMK_…`, `CLOISTER_CEK_…`),
/// read as the `job` role reads them.
fn keys_of(ctx: &RoleContext) -> anyhow::Result<Arc<InMemoryColumnMasterKeys>> {
    Ok(JobSettings::from_env(&ctx.env)?.column_keys())
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
        let values = column
            .as_primitive_opt::<Float64Type>()
            .context("a statistic is not a number")?;
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
        let low = batch
            .column(0)
            .as_primitive_opt::<Int64Type>()
            .context("a salary band is not a BIGINT")?;
        let n = batch
            .column(1)
            .as_primitive_opt::<Int64Type>()
            .context("a band count is not a BIGINT")?;
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
        let names = names
            .as_string_opt::<i32>()
            .context("a statistic's name is not text")?;
        // The types come from the database's metadata, which whoever holds the database can
        // change: cast, and refuse what does not fit, rather than trust them.
        let values = datafusion::arrow::compute::cast(batch.column(1), &DataType::Float64)?;
        let values = values
            .as_primitive_opt::<Float64Type>()
            .context("a statistic's value is not a number")?;
        for row in 0..batch.num_rows() {
            out.push(Statistic {
                statistic: names.value(row).to_owned(),
                value: values.value(row),
            });
        }
    }
    Ok(out)
}

/// `contoso/hr`: CMK1 and CEK1, the loader and the statistics app, CEK1 exported to payroll,
/// whose namespace's owner has key fingerprint `payroll_owner` (a session someone else
/// creates under that name gets nothing).
fn hr_policy(
    access: &str,
    payroll_owner: &str,
    measurement: &str,
    cmk_pem: Option<&Path>,
    predecessor: Option<&str>,
) -> String {
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
    format!(
        "name: {HR_SESSION}\nversion: {version}\n{history}\
         description: ContosoHR employees, SSN and Salary encrypted under CEK1 (version {version})\n\
         {access}security:\n  tees: [sim]\nservices:\n{loader}{stats}secrets:\n{cmk}  - name: CEK1\n    kind: cek\n    cmk: CMK1\n\
         export:\n  - secret: CEK1\n    to:\n      - session: {PAYROLL_SESSION}\n        \
         owners: [{payroll_owner}]\n",
        loader = service("loader"),
        stats = service("stats"),
    )
}

/// An importer of `contoso/hr`'s CEK1, pinned to `hr_hash`; its `report` gets the key itself.
fn importer_policy(access: &str, measurement: &str, name: &str, hr_hash: &str) -> String {
    format!(
        "name: {name}\nversion: 1\n{access}security:\n  tees: [sim]\nservices:\n  - name: report\n    attestation:\n      \
         - measurements: [\"{measurement}\"]\n    env:\n      \
         CLOISTER_CEK_CEK1: $$cloister:CEK1:key$$\nsecrets:\n  - name: CEK1\n    kind: import\n    \
         from:\n      session:\n        session: {HR_SESSION}\n        secret: CEK1\n        \
         session_hash: {hr_hash}\n"
    )
}

/// Run `app` as the attested workload `session`/`service` on the cluster.
fn run_app<T: Send>(
    cluster: &Cluster,
    session: &str,
    service: &str,
    app: impl FnOnce(RoleContext) -> Result<T, RoleError> + Send,
) -> anyhow::Result<T> {
    cluster
        .launch(session, service, None, App(app))
        .with_context(|| format!("the {session}/{service} app failed"))
}

/// Attest as `session`/`service`, which the CAS must refuse; the rule it names.
fn expect_refusal<T: Send>(
    cluster: &Cluster,
    session: &str,
    service: &str,
    app: impl FnOnce(RoleContext) -> Result<T, RoleError> + Send,
) -> anyhow::Result<RefusalRow> {
    match cluster.launch(session, service, None, App(app)) {
        Ok(_) => bail!("{session}/{service} was admitted; the CAS should have refused it"),
        Err(cloister_runtime::Error::Refused { rule, refused, .. }) => Ok(RefusalRow {
            session: session.to_owned(),
            service: service.to_owned(),
            rule: rule.unwrap_or_else(|| rule_in(&refused.rules)),
            reasons: Vec::new(),
            audit_seq: refused.audit_seq,
        }),
        Err(e) => Err(e).with_context(|| format!("{session}/{service} failed otherwise")),
    }
}

fn session_row(s: SessionSummary) -> SessionRow {
    SessionRow {
        session: s.name,
        version: s.version,
        hash: s.hash,
    }
}

/// The import rule in a rule id `secrets[NAME].RULE`, else the first rule id, else
/// `attestation`.
fn rule_in(rules: &[String]) -> String {
    rules
        .iter()
        .find_map(|r| {
            r.strip_prefix("secrets[")
                .and_then(|r| r.split_once("]."))
                .map(|(_, rule)| rule.to_owned())
        })
        .or_else(|| rules.first().cloned())
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

pub(super) fn print_report(r: &Report, quiet: bool) -> anyhow::Result<()> {
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

// ----- the ContosoHR sample -----
//
// `testdata/contosohr-schema.md` describes the Always Encrypted demo database: table
// `dbo.Employees` with `SSN char(11)` and `Salary money` both encrypted RANDOMIZED under CEK
// `CEK1`, wrapped by CMK `CMK1`, which allows enclave computations. [`load_contosohr`] builds
// the same table (named `Employees`: SQLite has no schemas) from the sample CSV.

/// The ContosoHR table.
const CONTOSOHR_TABLE: &str = "Employees";
/// The ContosoHR column encryption key.
const CONTOSOHR_CEK: &str = "CEK1";
/// The ContosoHR column master key.
const CONTOSOHR_CMK: &str = "CMK1";

/// The columns of `contosohr-employees.csv`: `EmployeeID` int, `SSN`, `FirstName`,
/// `LastName` text, `Salary` a whole number (stored as `money`).
fn contosohr_schema() -> SchemaRef {
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
fn contosohr_encryption() -> Vec<ColumnEncryption> {
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
fn contosohr_cmk(key_store_provider_name: &str, key_path: &str) -> ColumnMasterKeyDefinition {
    ColumnMasterKeyDefinition::new(CONTOSOHR_CMK, key_store_provider_name, key_path)
        .enclave_computations(true)
}

/// Load `contosohr-employees.csv` into table `Employees` of `db` as the demo's setup encrypts
/// it: `CEK1` is created under `cmk` if the database does not have it yet (the CMK's private
/// key comes from `keys`).
async fn load_contosohr(
    ctx: &SessionContext,
    csv: &Path,
    db: SqlDatabase,
    keys: Arc<dyn ColumnMasterKeyProvider>,
    cmk: ColumnMasterKeyDefinition,
) -> Result<u64, cloister_sqldb::Error> {
    let sink = contosohr_encryption()
        .into_iter()
        .fold(SqlSink::new(db, CONTOSOHR_TABLE, keys), SqlSink::encrypt)
        .create_keys_under(cmk);
    load_csv(ctx, csv, contosohr_schema(), &sink).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_found_in_reasons() {
        assert_eq!(
            rule_in(&["nonce".into(), "secrets[CEK1].import-hash".into()]),
            "import-hash"
        );
        assert_eq!(rule_in(&["security.tees".into()]), "security.tees");
        assert_eq!(rule_in(&[]), "attestation");
    }

    #[test]
    fn policies_validate() {
        let owner = cloister_policy::OwnerKey::generate().unwrap();
        let key: String = owner
            .public_key()
            .to_pem()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let access = format!("access:\n  owners:\n    - name: o\n      key: {key}\n");
        let m = "ab".repeat(48);
        let fp = owner.fingerprint().to_string();
        let hr = hr_policy(&access, &fp, &m, None, None);
        let p = cloister_policy::Policy::parse(&hr).unwrap_or_else(|e| panic!("{e}\n{hr}"));
        let v2 = hr_policy(
            &access,
            &fp,
            &m,
            Some(Path::new("/etc/cmk.pem")),
            Some(&p.hash().to_string()),
        );
        cloister_policy::Policy::parse(&v2).unwrap_or_else(|e| panic!("{e}\n{v2}"));
        let imp = importer_policy(&access, &m, PAYROLL_SESSION, &p.hash().to_string());
        cloister_policy::Policy::parse(&imp).unwrap_or_else(|e| panic!("{e}\n{imp}"));
    }
}

//! `cloister demo`: confidential analytics over encrypted NYC-taxi data, end to end on one
//! machine.
//!
//! 1. A CAS and a sim LAS start on 127.0.0.1 ([`super::cluster`]); an owner key is made.
//! 2. Two apps are packaged into encrypted bundles: *analytics* (the tables, then one encrypted
//!    `COPY … TO` per query of `examples/nyc-taxi/queries/`) and *report* (reads the encrypted
//!    results back).
//! 3. The policy `demo/nyc-taxi` is signed and pushed. It pins the real measurements of this
//!    executable (alone, and with each bundle) and declares the data keys as `aes256` secrets
//!    that the CAS generates and never lets out except to attested services:
//!    - `ingest` gets the trip keys, to write the data set;
//!    - `analytics` gets the trip keys and the results key;
//!    - `report` gets the results key only.
//! 4. `ingest` runs attested and writes the trips as Parquet encrypted column by column
//!    (location ids, money columns and the rest under three master keys, in the
//!    key-management-tools format) and the public zone table in plaintext.
//! 5. `analytics` runs attested: the five queries, written as encrypted Parquet.
//! 6. `report` runs attested: reads the encrypted results, prints the tables.
//! 7. The ContosoHR flow ([`super::contoso`]) runs on the same CAS: Always Encrypted columns in
//!    SQLite, attested salary statistics, CEK1 handed to a second session through an export,
//!    a third session refused.
//! 8. The CAS audit log says which workloads attested and what each was given.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cloister_datagen::taxi;
use cloister_engine::datafusion::parquet::file::properties::WriterProperties;
use cloister_engine::{CloisterEncryptionFactory, EncryptionOptions};
use cloister_runtime::{Measurement, Role, RoleContext, RoleError};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::cluster::{self, AuditRow, Cluster, PackagedApp};
use cloister_cas::imports::namespace_of;
use cloister_roles::job::{JobOptions, JobSettings, OutputJson, ResultJson, SpillJson};
use cloister_roles::output;

/// The demo's session.
pub const SESSION: &str = "demo/nyc-taxi";

macro_rules! query {
    ($stem:literal) => {
        (
            $stem,
            concat!($stem, ".sql"),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/nyc-taxi/queries/",
                $stem,
                ".sql"
            )),
        )
    };
}

/// The demo's queries: `(file stem, file name, SQL)`, from `examples/nyc-taxi/queries/`.
pub const QUERIES: [(&str, &str, &str); 5] = [
    query!("1_trip_count"),
    query!("2_trips_per_hour"),
    query!("3_top_pickup_zones"),
    query!("4_payment_passengers"),
    query!("5_revenue_by_borough"),
];

/// Master key ids of the trips and the columns each protects (every column is encrypted).
pub const TRIP_KEYS: [(&str, &[&str]); 3] = [
    ("trips_location", &["PULocationID", "DOLocationID"]),
    (
        "trips_fare",
        &[
            "fare_amount",
            "extra",
            "mta_tax",
            "tip_amount",
            "tolls_amount",
            "improvement_surcharge",
            "total_amount",
            "congestion_surcharge",
            "Airport_fee",
            "cbd_congestion_fee",
        ],
    ),
    (
        "trips_footer",
        &[
            "VendorID",
            "tpep_pickup_datetime",
            "tpep_dropoff_datetime",
            "passenger_count",
            "trip_distance",
            "RatecodeID",
            "store_and_fwd_flag",
            "payment_type",
        ],
    ),
];

/// The key id of the results.
pub const RESULTS_KEY: &str = "results";

#[derive(clap::Args)]
pub struct TaxiArgs {
    /// How many trips to generate.
    #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    rows: u64,
    /// Keep everything (CAS state, keys, bundles, policy, data, results) in DIR, which must be
    /// new or empty; default: a temporary directory removed at the end.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print JSON: {"rows", "dir", "session", "policy_hash", "measurements", "steps":
    /// [{"step", "seconds"}], "results": [{"name", "script", "statement", "rows", "columns",
    /// "data"}], "outputs": [{"url", "rows", "script", "statement"}], "spill", "audit":
    /// [{"session", "service", "workload", "verdict", "released", "reasons"}], "seconds"}.
    #[arg(long)]
    json: bool,
}

/// The trips' encryption: KMT, every column under one of [`TRIP_KEYS`].
pub fn trips_encryption() -> EncryptionOptions {
    let mut options = EncryptionOptions::new("trips_footer").kmt();
    for (key, columns) in TRIP_KEYS {
        options = options.column_key(key, columns);
    }
    options
}

/// The analytics app: the tables, then one encrypted `COPY … TO` per query. Variables:
/// `${DATA}` (with `trips/` and `zones/`) and `${OUT}`.
pub fn analytics_app() -> Vec<(&'static str, String)> {
    let mut files = vec![(
        "00_tables.sql",
        "-- The trips: Parquet encrypted column by column under master keys only the policy holds\n\
         -- (each file's key material names them; no key appears here).\n\
         CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '${DATA}/trips/'\n  \
         OPTIONS ('format.crypto.factory_id' 'cloister');\n\
         -- The zone lookup: public reference data, in plaintext.\n\
         CREATE EXTERNAL TABLE zones STORED AS PARQUET LOCATION '${DATA}/zones/';\n"
            .to_owned(),
    )];
    for (stem, file, query) in QUERIES {
        files.push((
            file,
            format!(
                "COPY (\n{query}\n) TO '${{OUT}}/{stem}.parquet' STORED AS PARQUET\n  \
                 OPTIONS ('format.crypto.factory_id' 'cloister', \
                 'format.crypto.factory_options.footer_key' '{RESULTS_KEY}');\n"
            ),
        ));
    }
    files
}

/// The report app: each result of the analytics app, read back. Variable: `${RESULTS}`.
pub fn report_app() -> Vec<(&'static str, String)> {
    let mut tables = String::from("-- The analytics app's encrypted results.\n");
    let mut files = Vec::new();
    for (stem, file, _) in QUERIES {
        let table = result_table(stem);
        tables.push_str(&format!(
            "CREATE EXTERNAL TABLE {table} STORED AS PARQUET LOCATION '${{RESULTS}}/{stem}.parquet'\n  \
             OPTIONS ('format.crypto.factory_id' 'cloister');\n"
        ));
        files.push((file, format!("SELECT * FROM {table}\n")));
    }
    files.insert(0, ("00_tables.sql", tables));
    files
}

/// `2_trips_per_hour` → `trips_per_hour`.
fn result_table(stem: &str) -> &str {
    stem.split_once('_').map_or(stem, |(_, rest)| rest)
}

/// The demo policy.
pub fn policy_yaml(
    owner_yaml: &str,
    ingest: &Measurement,
    analytics: &PackagedApp,
    report: &PackagedApp,
    keys_dir: &Path,
    data_dir: &Path,
    results_dir: &Path,
) -> String {
    let trip_env: String = TRIP_KEYS
        .iter()
        .map(|(id, _)| {
            format!(
                "      {}: $$cloister:{id}:hex$$\n",
                cloister_roles::job::key_setting(id)
            )
        })
        .collect();
    let trip_secrets: String = TRIP_KEYS
        .iter()
        .map(|(id, _)| format!("  - name: {id}\n    kind: aes256\n"))
        .collect();
    let results_env = format!(
        "      {}: $$cloister:results_key:hex$$\n",
        cloister_roles::job::key_setting(RESULTS_KEY)
    );
    format!(
        r#"# The `cloister demo` policy: everything on one machine, in the software TEE (`sim`).
name: {SESSION}
version: 1
description: NYC taxi demo on the simulated TEE; not for real data.
{owner_yaml}security:
  tees: [sim]
services:
  # Writes the encrypted trips: this executable without an app bundle.
  - name: ingest
    attestation:
      - measurements: ["{ingest}"]
    env:
{trip_env}  # The analytics app: reads the trips, writes encrypted results.
  - name: analytics
    attestation:
      - measurements: ["{analytics_m}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:analytics_bundle_key$$
{trip_env}{results_env}      CLOISTER_APP_VARS: DATA,OUT
      DATA: "{data}"
      OUT: "{results}"
  # The report app: reads the results only; never gets a trip key.
  - name: report
    attestation:
      - measurements: ["{report_m}"]
    env:
      CLOISTER_BUNDLE_KEY: $$cloister:report_bundle_key$$
{results_env}      CLOISTER_APP_VARS: RESULTS
      RESULTS: "{results}"
      CLOISTER_INSECURE_PRINT_RESULTS: "true"  # the demo prints the report on this machine's terminal
secrets:
  - name: analytics_bundle_key
    kind: import
    from:
      file: "{keys}/analytics.key"
  - name: report_bundle_key
    kind: import
    from:
      file: "{keys}/report.key"
{trip_secrets}  - name: results_key
    kind: aes256
"#,
        analytics_m = analytics.measurement,
        report_m = report.measurement,
        data = data_dir.display(),
        results = results_dir.display(),
        keys = keys_dir.display(),
    )
}

/// The `ingest` service: generates the trips, encrypted under the keys its configuration
/// holds, and the plaintext zone table.
struct Ingest {
    spec: taxi::TaxiSpec,
    trips: PathBuf,
    zones: PathBuf,
    progress: ProgressBar,
}

impl Role for Ingest {
    type Output = taxi::Summary;

    fn name(&self) -> &str {
        "ingest"
    }

    fn run(self, ctx: RoleContext) -> Result<taxi::Summary, RoleError> {
        let settings = JobSettings::from_env(&ctx.env)?;
        let factory = CloisterEncryptionFactory::new(settings.keys());
        let options = trips_encryption();
        let schema = taxi::schema();
        // Fresh data keys per file, wrapped by the master keys.
        let props = (0..self.spec.files)
            .map(|_| {
                let encryption = factory.encryption_properties(&options, &schema)?;
                Ok(taxi::default_writer_properties()
                    .set_max_row_group_row_count(Some(self.spec.row_group_rows))
                    .with_file_encryption_properties(encryption)
                    .build())
            })
            .collect::<Result<Vec<WriterProperties>, cloister_engine::Error>>()?;
        // `generate` asks for files 0..spec.files, one entry of `props` each: indexing cannot
        // fail, and no file can fall back to plaintext.
        let summary = taxi::generate(&self.spec, &self.trips, |file| props[file].clone(), &|n| {
            self.progress.inc(n)
        })?;
        taxi::write_zones(
            &self.zones,
            taxi::default_writer_properties().build(),
            false,
        )?;
        Ok(summary)
    }
}

/// Timed steps, announced on stderr.
struct Steps {
    show: bool,
    done: Vec<StepJson>,
    current: Option<(String, Instant)>,
    total: usize,
}

#[derive(Serialize)]
struct StepJson {
    step: String,
    seconds: f64,
}

impl Steps {
    fn begin(&mut self, what: impl Into<String>) {
        let what = what.into();
        if self.show {
            eprintln!(
                "cloister: [{}/{}] {what} …",
                self.done.len() + 1,
                self.total
            );
        }
        self.current = Some((what, Instant::now()));
    }

    fn end(&mut self) -> Duration {
        let Some((step, at)) = self.current.take() else {
            return Duration::ZERO;
        };
        let took = at.elapsed();
        if self.show {
            eprintln!("cloister:       done in {:.1} s", took.as_secs_f64());
        }
        self.done.push(StepJson {
            step,
            seconds: took.as_secs_f64(),
        });
        took
    }
}

fn spinner(show: bool, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

#[derive(Serialize)]
struct Measurements {
    ingest: String,
    analytics: String,
    report: String,
}

#[derive(Serialize)]
struct DemoJson {
    rows: u64,
    dir: Option<PathBuf>,
    session: &'static str,
    policy_hash: String,
    measurements: Measurements,
    steps: Vec<StepJson>,
    results: Vec<ResultJson>,
    outputs: Vec<OutputJson>,
    spill: SpillJson,
    audit: Vec<AuditRow>,
    contoso: super::contoso::Report,
    seconds: f64,
}

pub fn run(args: TaxiArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let show = !quiet && !args.json;
    let (tmp, dir) = super::work_dir(args.dir.as_deref(), "cloister-demo-")?;
    let mut steps = Steps {
        show,
        done: Vec::new(),
        current: None,
        total: 8,
    };
    if show {
        eprintln!(
            "cloister: DEMO on the simulated TEE (sim): no hardware protects it; working in {}",
            dir.display()
        );
    }

    steps.begin("start a CAS and a sim LAS on 127.0.0.1, make an owner key");
    // The CAS's import rules: the policy imports the bundle keys from `keys/`, nothing else.
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys)?;
    let imports = cluster::ImportRules::none().allow_files(namespace_of(SESSION), &keys);
    let cluster = Cluster::start(dir.join("cluster"), imports)?;
    steps.end();

    steps.begin("package the analytics and report apps into encrypted bundles");
    let apps = dir.join("apps");
    let mut packaged = Vec::new();
    for (name, files) in [("analytics", analytics_app()), ("report", report_app())] {
        let key = keys.join(format!("{name}.key"));
        cluster::make_bundle_key(&key)?;
        cluster::write_app(&apps.join(name), &files)?;
        packaged.push(cluster::package_app(
            &apps.join(name),
            &key,
            &dir.join(format!("{name}.bundle")),
        )?);
    }
    let report_app = packaged.pop().context("two apps were packaged")?;
    let analytics_app = packaged.pop().context("two apps were packaged")?;
    let ingest = cluster::measurement_without_bundle()?;
    steps.end();

    steps.begin(format!(
        "sign and push the policy {SESSION} (pins 3 measurements; 4 data keys made in the CAS)"
    ));
    let data = dir.join("data");
    let results_dir = dir.join("results");
    std::fs::create_dir_all(&results_dir)?;
    let policy = policy_yaml(
        &cluster.owner_yaml()?,
        &ingest,
        &analytics_app,
        &report_app,
        &keys,
        &data,
        &results_dir,
    );
    std::fs::write(dir.join("policy.yaml"), &policy)?;
    let pushed = cluster.push_policy(&policy)?;
    steps.end();

    steps.begin(format!(
        "attested `ingest`: generate {} trips, encrypted column by column",
        args.rows
    ));
    let progress = crate::progress::rows_bar(args.rows, show);
    let generated = cluster.launch(
        SESSION,
        "ingest",
        None,
        Ingest {
            spec: taxi::TaxiSpec::new(args.rows),
            trips: data.join("trips"),
            zones: data.join("zones"),
            progress: progress.clone(),
        },
    );
    progress.finish_and_clear();
    let generated = generated?;
    steps.end();
    if show {
        eprintln!(
            "cloister:       {} files, {} bytes, {:.0} rows/s",
            generated.files.len(),
            generated.bytes,
            generated.rows_per_sec()
        );
    }

    steps.begin("attested `analytics`: 5 queries over the encrypted trips → encrypted results");
    let bar = spinner(show, "running the analytics app");
    let analytics = cluster.run_job(
        SESSION,
        "analytics",
        &analytics_app.path,
        JobOptions::default(),
    );
    bar.finish_and_clear();
    let analytics = analytics?;
    steps.end();

    steps.begin("attested `report`: read the encrypted results back");
    let report = cluster.run_job(SESSION, "report", &report_app.path, JobOptions::default())?;
    steps.end();

    steps.begin("ContosoHR: Always Encrypted salaries in SQLite, statistics, key hand-over");
    let contoso = super::contoso::flow(
        &cluster,
        &super::contoso::Options::sqlite(dir.join("contoso.db")),
    )?;
    steps.end();

    steps.begin("read the CAS audit log");
    let audit = cluster::audit_summary(&cluster.audit_entries()?);
    steps.end();
    drop(cluster);

    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        output::json(&DemoJson {
            rows: args.rows,
            dir: args.dir.as_ref().map(|_| dir.clone()),
            session: SESSION,
            policy_hash: pushed.hash,
            measurements: Measurements {
                ingest: ingest.to_string(),
                analytics: analytics_app.measurement.to_string(),
                report: report_app.measurement.to_string(),
            },
            steps: steps.done,
            results: report
                .results
                .iter()
                .map(ResultJson::of)
                .collect::<anyhow::Result<_>>()?,
            outputs: analytics.outputs.iter().map(OutputJson::of).collect(),
            spill: SpillJson::of(&analytics.spill),
            audit,
            contoso,
            seconds,
        })?;
    } else {
        cloister_roles::job::print_results(&report.results)?;
        println!("Encrypted results written by `analytics` (key `{RESULTS_KEY}`):");
        cloister_roles::job::print_outputs(&analytics.outputs)?;
        println!(
            "ContosoHR: salaries under Always Encrypted in SQLite, CEK1 handed over by export:"
        );
        super::contoso::print_report(&contoso, true)?;
        println!("Audit log: who attested, and what the CAS released to whom:");
        let mut t = output::table(&["workload", "key", "verdict", "released"]);
        for row in &audit {
            t.add_row(vec![
                format!("{}/{}", row.session, row.service),
                row.workload.clone(),
                row.verdict.clone(),
                if row.released.is_empty() {
                    row.reasons.join("\n")
                } else {
                    row.released.join(" ")
                },
            ]);
        }
        output::print_table(&t)?;
        println!(
            "{} trips analysed confidentially in {seconds:.1} s ({} of them in the analytics job).",
            args.rows,
            format_args!("{:.1} s", analytics.elapsed.as_secs_f64()),
        );
    }
    if let Some(tmp) = tmp {
        tmp.close()
            .context("cannot remove the demo's temporary directory")?;
    } else if show {
        eprintln!("cloister: kept everything in {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_trip_column_is_encrypted_once() {
        let schema = taxi::schema();
        let mut named: Vec<&str> = TRIP_KEYS
            .iter()
            .flat_map(|(_, c)| c.iter().copied())
            .collect();
        named.sort_unstable();
        let mut all: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        all.sort_unstable();
        assert_eq!(named, all);
    }

    #[test]
    fn apps_have_one_script_per_query_and_name_no_key_bytes() {
        let analytics = analytics_app();
        assert_eq!(analytics.len(), QUERIES.len() + 1);
        assert!(
            analytics
                .iter()
                .skip(1)
                .all(|(_, sql)| sql.contains("COPY ("))
        );
        let report = report_app();
        assert_eq!(report.len(), QUERIES.len() + 1);
        for (name, _) in report.iter().skip(1) {
            assert!(analytics.iter().any(|(n, _)| n == name), "{name}");
        }
    }
}

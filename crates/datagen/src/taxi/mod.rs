//! NYC-taxi-like trips in the official TLC yellow-taxi Parquet schema (2025 layout, 20
//! columns), and the 265-zone lookup table.
//!
//! [`gen_taxi`] is what `cloister gen taxi` runs: trips with [`default_writer_properties`]
//! (optionally encrypted), then the zone lookup. [`generate`] writes only the trips, with
//! writer properties chosen per file by the caller; [`zones`] and friends give the lookup.
//!
//! # Output
//!
//! `K` files `yellow_tripdata_part-00000.parquet` … in the output directory, rows split evenly
//! (the first files take the remainder), row groups of [`TaxiSpec::row_group_rows`] rows; then
//! `taxi_zone_lookup.parquet` and, unless encrypting, `taxi_zone_lookup.csv`. Files are written
//! under a `.tmp` name and renamed only when every file is complete, so a failed run leaves no
//! partial data set; a directory that already holds one is refused ([`Error::OutputExists`],
//! see [`clean`]).
//!
//! # Determinism
//!
//! Rows are drawn in batches of [`TaxiSpec::batch_rows`]; each batch has its own random
//! stream derived from `(seed, file, batch)`, so the same spec gives byte-identical files
//! whatever the number of threads (encrypted files differ run to run: Parquet modular
//! encryption draws fresh nonces). Results are reproducible on one platform; the floating-point
//! `exp`/`ln` of another libm may change a few last digits.
//!
//! # The model
//!
//! - Pickup time: [`TaxiSpec::days`] days from [`TaxiSpec::start_date`] (January 2025 by
//!   default), whole seconds, following a daily curve (night lull, morning rise, evening peak
//!   at 18:00) that differs on weekends (busy small hours, no morning rush) and per weekday.
//!   Trip number k of N is drawn within the k-th N-quantile of that distribution, so the
//!   data set is sorted by pickup time, file after file (file 0 holds the first days), as
//!   the TLC's monthly files roughly are: row-group statistics prune time ranges, and the
//!   delta-encoded timestamps take little space.
//! - Zones: pickups Zipf-like over the zones (the top ten take ~42%), 87% in Manhattan and
//!   most of those near Midtown, about 5% at JFK and 3.5% at LaGuardia; drop-offs by a
//!   gravity model (popular places, fewer far away; airport trips go far). See [`zones`] for
//!   what is real in the zone table and what is made up.
//! - `trip_distance`: the synthetic road distance between the zones with log-normal noise
//!   (mean 3.4 mi, median 1.8 mi); 1.2% zero distances. Duration follows distance and the
//!   hour's traffic speed (median 11 min).
//! - `fare_amount`: the meter ($3.00 + $0.70 per fifth of a mile or slow minute) with noise;
//!   $70 flat JFK↔Manhattan (`RatecodeID` 2), Newark surcharge (3), negotiated fares (5).
//! - Surcharges as in 2025: `extra` $2.50 weekday 16–20 h and $1.00 at night,
//!   `mta_tax` $0.50, `improvement_surcharge` $1.00, `congestion_surcharge` $2.50 when
//!   either end is south of 96th Street, `Airport_fee` $1.75 for JFK/LGA pickups,
//!   `cbd_congestion_fee` $0.75 from 2025-01-05 when either end is south of 60th Street,
//!   tolls across bridges and tunnels.
//! - `payment_type` 1 (credit card) 80%, 2 (cash) 16.5%, disputes and no-charge 3.4%; tips
//!   for credit cards (mostly the 20/25/30% presets), none recorded for cash; half the
//!   disputes are voided with negated amounts. `total_amount` is the sum of its parts.
//! - 4.5% of rows have the driver-entered fields null together (`passenger_count`,
//!   `RatecodeID`, `store_and_fwd_flag`, `congestion_surcharge`, `Airport_fee`) and
//!   `payment_type` 0, as in the real files. No extreme outliers are generated.

mod alias;
mod model;
mod zones;

use std::fs;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnWriter, compute_leaves};
use parquet::basic::{Compression, Encoding};
use parquet::encryption::encrypt::FileEncryptionProperties;
use parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use parquet::schema::types::ColumnPath;
use rayon::prelude::*;
use time::Date;

use crate::error::{Error, Result};
use model::Model;
pub use zones::{
    Borough, JFK_AIRPORT, LAGUARDIA_AIRPORT, NEWARK_AIRPORT, ZONE_COUNT, Zone, zone_schema, zones,
    zones_batch, zones_csv,
};

/// File name prefix of the trip files.
pub const PART_PREFIX: &str = "yellow_tripdata_part-";
/// File name of the zone lookup table, without extension.
pub const ZONE_LOOKUP_STEM: &str = "taxi_zone_lookup";

/// What to generate. Equal specs give equal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaxiSpec {
    /// Total number of trips.
    pub rows: u64,
    /// Number of Parquet files; rows are split evenly between them.
    pub files: u32,
    /// The random seed.
    pub seed: u64,
    /// First day of the pickup period (local NYC time).
    pub start_date: Date,
    /// Length of the pickup period in days.
    pub days: u32,
    /// Rows per Parquet row group (the last of each file may be shorter).
    pub row_group_rows: usize,
    /// Rows drawn per random stream; part of what fixes the data, keep the default.
    pub batch_rows: usize,
}

impl TaxiSpec {
    /// Default row group size: 2^20 rows, pyarrow's default.
    pub const ROW_GROUP_ROWS: usize = 1 << 20;
    /// Default rows per random stream.
    pub const BATCH_ROWS: usize = 1 << 16;
    /// Default rows per file when [`TaxiSpec::new`] chooses the number of files.
    pub const ROWS_PER_FILE: u64 = 4 << 20;

    /// `rows` trips in January 2025, seed 42, one file per 4 Mi rows.
    pub fn new(rows: u64) -> Self {
        Self {
            rows,
            files: u32::try_from(rows.div_ceil(Self::ROWS_PER_FILE).max(1)).unwrap_or(u32::MAX),
            seed: 42,
            start_date: Date::from_calendar_date(2025, time::Month::January, 1)
                .unwrap_or(Date::MIN),
            days: 31,
            row_group_rows: Self::ROW_GROUP_ROWS,
            batch_rows: Self::BATCH_ROWS,
        }
    }

    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |field, reason: &str| {
            Err(Error::InvalidSpec {
                field,
                reason: reason.to_string(),
            })
        };
        if self.rows == 0 {
            return bad("rows", "must be at least 1");
        }
        if self.files == 0 {
            return bad("files", "must be at least 1");
        }
        if u64::from(self.files) > self.rows {
            return bad("files", "must not exceed rows");
        }
        if !(1..=3660).contains(&self.days) {
            return bad("days", "must be between 1 and 3660");
        }
        if self.row_group_rows == 0 {
            return bad("row_group_rows", "must be at least 1");
        }
        if self.batch_rows == 0 || self.batch_rows > self.row_group_rows {
            return bad("batch_rows", "must be between 1 and row_group_rows");
        }
        if self.start_date.year() < 1970 || self.start_date.year() > 9000 {
            return bad("start_date", "must be between 1970 and 9000");
        }
        let per_file = self.rows.div_ceil(u64::from(self.files));
        if per_file.div_ceil(self.batch_rows as u64) > u64::from(u32::MAX) {
            return bad("rows", "too many batches per file; use more files");
        }
        Ok(())
    }

    /// Rows in file `file`: an even split, the first files taking the remainder.
    pub fn rows_in_file(&self, file: u32) -> u64 {
        let files = u64::from(self.files);
        self.rows / files + u64::from(u64::from(file) < self.rows % files)
    }

    /// The data-set-wide number of the first row of file `file`.
    fn first_row_of_file(&self, file: u32) -> u64 {
        let (files, file) = (u64::from(self.files), u64::from(file));
        file * (self.rows / files) + file.min(self.rows % files)
    }
}

impl Default for TaxiSpec {
    fn default() -> Self {
        Self::new(1_000_000)
    }
}

/// Parses `YYYY-MM-DD` (for `--start`).
pub fn parse_date(text: &str) -> Result<Date> {
    let invalid = || Error::InvalidDate {
        input: text.to_string(),
    };
    let mut parts = text.trim().splitn(3, '-');
    let mut next = || parts.next().ok_or_else(invalid);
    let (y, m, d) = (next()?, next()?, next()?);
    if y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return Err(invalid());
    }
    let y: i32 = y.parse().map_err(|_| invalid())?;
    let m: u8 = m.parse().map_err(|_| invalid())?;
    let d: u8 = d.parse().map_err(|_| invalid())?;
    let m = time::Month::try_from(m).map_err(|_| invalid())?;
    Date::from_calendar_date(y, m, d).map_err(|_| invalid())
}

/// The Arrow schema of the trip files: the 20 columns of the TLC's 2025 yellow-taxi files,
/// with their names, types and order, every column nullable.
pub fn schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    let f = |name, ty: DataType| Field::new(name, ty, true);
    Arc::new(Schema::new(vec![
        f("VendorID", DataType::Int32),
        f("tpep_pickup_datetime", ts.clone()),
        f("tpep_dropoff_datetime", ts),
        f("passenger_count", DataType::Int64),
        f("trip_distance", DataType::Float64),
        f("RatecodeID", DataType::Int64),
        f("store_and_fwd_flag", DataType::LargeUtf8),
        f("PULocationID", DataType::Int32),
        f("DOLocationID", DataType::Int32),
        f("payment_type", DataType::Int64),
        f("fare_amount", DataType::Float64),
        f("extra", DataType::Float64),
        f("mta_tax", DataType::Float64),
        f("tip_amount", DataType::Float64),
        f("tolls_amount", DataType::Float64),
        f("improvement_surcharge", DataType::Float64),
        f("total_amount", DataType::Float64),
        f("congestion_surcharge", DataType::Float64),
        f("Airport_fee", DataType::Float64),
        f("cbd_congestion_fee", DataType::Float64),
    ]))
}

/// Writer properties that suit the trip files: Snappy, statistics per page, dictionaries
/// except for the near-unique columns, where they cost time and save nothing; the
/// timestamps (sorted, or nearly) delta-encoded. Add encryption or change compression on the
/// returned builder.
pub fn default_writer_properties() -> WriterPropertiesBuilder {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(TaxiSpec::ROW_GROUP_ROWS));
    for column in ["tpep_pickup_datetime", "tpep_dropoff_datetime"] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(column), false)
            .set_column_encoding(ColumnPath::from(column), Encoding::DELTA_BINARY_PACKED);
    }
    b.set_column_dictionary_enabled(ColumnPath::from("total_amount"), false)
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    /// Where it is.
    pub path: PathBuf,
    /// Trips in it.
    pub rows: u64,
    /// Its size.
    pub bytes: u64,
}

/// What a run wrote.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The trip files, in order.
    pub files: Vec<FileSummary>,
    /// The zone lookup files ([`gen_taxi`] only).
    pub zone_files: Vec<PathBuf>,
    /// Total trips.
    pub rows: u64,
    /// Total size of the trip files.
    pub bytes: u64,
    /// Wall-clock time of the trip generation.
    pub elapsed: Duration,
}

impl Summary {
    /// Trips per second.
    pub fn rows_per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// The name of trip file `file`.
pub fn part_file_name(file: u32) -> String {
    format!("{PART_PREFIX}{file:05}.parquet")
}

/// Whether `name` is a file this module writes (trip parts, zone lookup, or their `.tmp`).
fn is_generated(name: &str) -> bool {
    let name = name.strip_suffix(".tmp").unwrap_or(name);
    (name.starts_with(PART_PREFIX) && name.ends_with(".parquet"))
        || name == format!("{ZONE_LOOKUP_STEM}.parquet")
        || name == format!("{ZONE_LOOKUP_STEM}.csv")
}

fn generated_files(out_dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(out_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(out_dir)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(Error::io(out_dir))?;
        if entry.file_name().to_str().is_some_and(is_generated) {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// The subdirectory of a [`gen_taxi`] output directory that holds the trips.
pub const TRIPS_DIR: &str = "trips";
/// The subdirectory of a [`gen_taxi`] output directory that holds the zone lookup.
pub const ZONES_DIR: &str = "zones";

/// The directories a previous run may have written into: `out_dir` itself and its
/// [`TRIPS_DIR`] and [`ZONES_DIR`].
fn run_dirs(out_dir: &Path) -> [PathBuf; 3] {
    [
        out_dir.to_path_buf(),
        out_dir.join(TRIPS_DIR),
        out_dir.join(ZONES_DIR),
    ]
}

/// Removes every file a previous run wrote into `out_dir`, its `trips/` or its `zones/` (trip
/// parts, zone lookup, leftover `.tmp` files) and nothing else, then `trips/` and `zones/`
/// if that left them empty; returns how many files. For `--force`.
pub fn clean(out_dir: &Path) -> Result<usize> {
    let mut removed = 0;
    for dir in run_dirs(out_dir) {
        let files = generated_files(&dir)?;
        for f in &files {
            fs::remove_file(f).map_err(Error::io(f))?;
        }
        removed += files.len();
        if dir != out_dir && fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) {
            fs::remove_dir(&dir).map_err(Error::io(&dir))?;
        }
    }
    Ok(removed)
}

fn refuse_existing(out_dir: &Path) -> Result<()> {
    for dir in run_dirs(out_dir) {
        if let Some(path) = generated_files(&dir)?.into_iter().next() {
            return Err(Error::OutputExists { path });
        }
    }
    Ok(())
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Renames every `.tmp` into place, or removes them all if the run failed (`ok` false).
fn commit(tmps: &[PathBuf], ok: bool) -> Result<()> {
    if !ok {
        for t in tmps {
            // Best effort: the run already failed with a more useful error.
            let _ = fs::remove_file(t);
        }
        return Ok(());
    }
    for t in tmps {
        let path = t.with_extension("");
        fs::rename(t, &path).map_err(Error::io(&path))?;
    }
    Ok(())
}

/// Writes the trip files of `spec` into `out_dir` (created if missing), in parallel on the
/// current rayon pool, with the writer properties `writer_props(file_index)` for each file.
///
/// Row groups follow `spec.row_group_rows` whatever the properties say. Progress advances by
/// rows through `progress(rows)`, called from the writing threads (pass `&|_| {}` for none).
pub fn generate<F>(
    spec: &TaxiSpec,
    out_dir: &Path,
    writer_props: F,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary>
where
    F: Fn(usize) -> WriterProperties + Sync,
{
    spec.validate()?;
    fs::create_dir_all(out_dir).map_err(Error::io(out_dir))?;
    refuse_existing(out_dir)?;
    let model = Model::new(schema(), spec.start_date, spec.days, spec.rows)?;
    let started = Instant::now();

    let results: Vec<Result<FileSummary>> = (0..spec.files)
        .into_par_iter()
        .map(|file| {
            let path = out_dir.join(part_file_name(file));
            write_part(
                &model,
                spec,
                file,
                &tmp_path(&path),
                writer_props(file as usize),
                progress,
            )
            .map(|bytes| FileSummary {
                path,
                rows: spec.rows_in_file(file),
                bytes,
            })
        })
        .collect();
    let tmps: Vec<PathBuf> = (0..spec.files)
        .map(|f| tmp_path(&out_dir.join(part_file_name(f))))
        .collect();
    let files = results.into_iter().collect::<Result<Vec<_>>>();
    commit(&tmps, files.is_ok())?;
    let files = files?;
    Ok(Summary {
        rows: files.iter().map(|f| f.rows).sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        zone_files: Vec::new(),
        elapsed: started.elapsed(),
    })
}

/// Writes one trip file to `tmp`; returns its size.
fn write_part(
    model: &Model,
    spec: &TaxiSpec,
    file: u32,
    tmp: &Path,
    props: WriterProperties,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    let out = fs::File::create(tmp).map_err(Error::io(tmp))?;
    let out = BufWriter::with_capacity(4 << 20, out);
    let schema = schema();
    let writer =
        ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(Error::parquet(tmp))?;
    let (mut writer, factory) = writer
        .into_serialized_writer()
        .map_err(Error::parquet(tmp))?;

    // The batches of this file: (row group, first row in the data set, rows, last of its
    // group).
    let rows = spec.rows_in_file(file);
    let mut plan = Vec::new();
    let mut first_row = spec.first_row_of_file(file);
    let mut left = rows;
    let mut group = 0;
    while left > 0 {
        let mut in_group = left.min(spec.row_group_rows as u64);
        left -= in_group;
        while in_group > 0 {
            let n = in_group.min(spec.batch_rows as u64);
            in_group -= n;
            plan.push((group, first_row, n as usize, in_group == 0));
            first_row += n;
        }
        group += 1;
    }

    let draw = |k: usize| -> Result<RecordBatch> {
        // `validate` bounds the batches per file by u32::MAX.
        let batch = u32::try_from(k).unwrap_or(u32::MAX);
        model.batch(spec.seed, file, batch, plan[k].1, plan[k].2)
    };
    let mut writers = factory
        .create_column_writers(0)
        .map_err(Error::parquet(tmp))?;
    let mut pending = if plan.is_empty() {
        None
    } else {
        Some(draw(0)?)
    };
    for (k, &(group, _, _, last_in_group)) in plan.iter().enumerate() {
        let Some(current) = pending.take() else { break };
        // Draw the next batch while this one is encoded, column by column in parallel.
        let (next, encoded) = rayon::join(
            || (k + 1 < plan.len()).then(|| draw(k + 1)).transpose(),
            || encode(&mut writers, &current, &schema),
        );
        encoded.map_err(Error::parquet(tmp))?;
        pending = next?;
        progress(current.num_rows() as u64);
        if last_in_group {
            let chunks = std::mem::take(&mut writers)
                .into_par_iter()
                .map(ArrowColumnWriter::close)
                .collect::<parquet::errors::Result<Vec<_>>>()
                .map_err(Error::parquet(tmp))?;
            let mut row_group = writer.next_row_group().map_err(Error::parquet(tmp))?;
            for chunk in chunks {
                chunk
                    .append_to_row_group(&mut row_group)
                    .map_err(Error::parquet(tmp))?;
            }
            row_group.close().map_err(Error::parquet(tmp))?;
            if k + 1 < plan.len() {
                writers = factory
                    .create_column_writers(group + 1)
                    .map_err(Error::parquet(tmp))?;
            }
        }
    }
    let out = writer.into_inner().map_err(Error::parquet(tmp))?;
    let out = out
        .into_inner()
        .map_err(|e| Error::io(tmp)(e.into_error()))?;
    let bytes = out.metadata().map_err(Error::io(tmp))?.len();
    Ok(bytes)
}

fn encode(
    writers: &mut [ArrowColumnWriter],
    batch: &RecordBatch,
    schema: &Schema,
) -> parquet::errors::Result<()> {
    // Every column is primitive: one leaf, one writer per field.
    writers
        .par_iter_mut()
        .zip(batch.columns().par_iter())
        .zip(schema.fields().par_iter())
        .try_for_each(|((writer, column), field)| {
            for leaf in compute_leaves(field, column)? {
                writer.write(&leaf)?;
            }
            Ok(())
        })
}

/// Writes the zone lookup as `taxi_zone_lookup.parquet` with `props` and, if `csv`, as
/// `taxi_zone_lookup.csv`; returns the paths.
pub fn write_zones(out_dir: &Path, props: WriterProperties, csv: bool) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(out_dir).map_err(Error::io(out_dir))?;
    let parquet_path = out_dir.join(format!("{ZONE_LOOKUP_STEM}.parquet"));
    let tmp = tmp_path(&parquet_path);
    let mut tmps = vec![tmp.clone()];
    let written = (|| {
        let file = fs::File::create(&tmp).map_err(Error::io(&tmp))?;
        let mut w =
            ArrowWriter::try_new(file, zone_schema(), Some(props)).map_err(Error::parquet(&tmp))?;
        w.write(&zones_batch()?).map_err(Error::parquet(&tmp))?;
        w.close().map_err(Error::parquet(&tmp))?;
        if csv {
            let csv_tmp = tmp_path(&out_dir.join(format!("{ZONE_LOOKUP_STEM}.csv")));
            tmps.push(csv_tmp.clone());
            fs::write(&csv_tmp, zones_csv()).map_err(Error::io(&csv_tmp))?;
        }
        Ok(())
    })();
    commit(&tmps, written.is_ok())?;
    written?;
    Ok(tmps.iter().map(|t| t.with_extension("")).collect())
}

/// `cloister gen taxi`: the trips of `spec` in `out_dir/trips/` ([`TRIPS_DIR`]) with
/// [`default_writer_properties`], encrypted with `encryption` when given, and then the zone
/// lookup (Parquet and CSV) in `out_dir/zones/` ([`ZONES_DIR`]), which is public reference data
/// and always plaintext. Two directories, because the two tables have different schemas: a
/// reader given one directory gets one table. Refuses a directory that holds a previous run
/// ([`clean`] it first).
pub fn gen_taxi(
    spec: &TaxiSpec,
    out_dir: &Path,
    encryption: Option<Arc<FileEncryptionProperties>>,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Summary> {
    spec.validate()?;
    refuse_existing(out_dir)?;
    let props = || {
        let b = default_writer_properties().set_max_row_group_row_count(Some(spec.row_group_rows));
        match &encryption {
            Some(e) => b.with_file_encryption_properties(e.clone()),
            None => b,
        }
        .build()
    };
    let mut summary = generate(spec, &out_dir.join(TRIPS_DIR), |_| props(), progress)?;
    // The zone lookup is public reference data (the TLC publishes it), and the trips' column
    // keys name columns it does not have: it is always written in plaintext.
    summary.zone_files = write_zones(
        &out_dir.join(ZONES_DIR),
        default_writer_properties().build(),
        true,
    )?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_evenly() {
        let spec = TaxiSpec {
            files: 3,
            ..TaxiSpec::new(10)
        };
        let rows: Vec<u64> = (0..3).map(|f| spec.rows_in_file(f)).collect();
        assert_eq!(rows, [4, 3, 3]);
        let firsts: Vec<u64> = (0..3).map(|f| spec.first_row_of_file(f)).collect();
        assert_eq!(firsts, [0, 4, 7]);
    }

    #[test]
    fn new_picks_one_file_per_4mi_rows() {
        assert_eq!(TaxiSpec::new(1).files, 1);
        assert_eq!(TaxiSpec::new(10_000_000).files, 3);
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let field = |spec: TaxiSpec| match spec.validate() {
            Err(Error::InvalidSpec { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(TaxiSpec::new(0)), "rows");
        assert_eq!(
            field(TaxiSpec {
                files: 0,
                ..TaxiSpec::new(5)
            }),
            "files"
        );
        assert_eq!(
            field(TaxiSpec {
                files: 6,
                ..TaxiSpec::new(5)
            }),
            "files"
        );
        assert_eq!(
            field(TaxiSpec {
                days: 0,
                ..TaxiSpec::new(5)
            }),
            "days"
        );
        assert_eq!(
            field(TaxiSpec {
                batch_rows: 2 << 20,
                ..TaxiSpec::new(5)
            }),
            "batch_rows"
        );
    }

    #[test]
    fn parses_dates() {
        assert_eq!(
            parse_date("2024-02-29").unwrap(),
            Date::from_calendar_date(2024, time::Month::February, 29).unwrap()
        );
        for bad in [
            "2023-02-29",
            "2024-2-1",
            "20240201",
            "",
            "2024-13-01",
            "x-y-z",
        ] {
            assert!(
                matches!(parse_date(bad), Err(Error::InvalidDate { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn recognises_only_its_own_files() {
        assert!(is_generated("yellow_tripdata_part-00003.parquet"));
        assert!(is_generated("yellow_tripdata_part-00003.parquet.tmp"));
        assert!(is_generated("taxi_zone_lookup.csv"));
        assert!(!is_generated("yellow_tripdata_2025-01.parquet"));
        assert!(!is_generated("notes.txt"));
    }

    #[test]
    fn tmp_paths_round_trip() {
        let p = Path::new("/x/yellow_tripdata_part-00000.parquet");
        assert_eq!(tmp_path(p).with_extension(""), p);
    }
}

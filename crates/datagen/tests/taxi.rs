//! End-to-end tests of the taxi generator: the files it writes, read back with the parquet
//! crate.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, AsArray, Float64Array, Int32Array, Int64Array, RecordBatch, TimestampMicrosecondArray,
};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Float64Type, Int32Type, Int64Type, TimeUnit};
use cloister_datagen::Error;
use cloister_datagen::taxi::{self, TaxiSpec};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use parquet::encryption::decrypt::FileDecryptionProperties;
use parquet::encryption::encrypt::FileEncryptionProperties;

const SCHEMA_DOC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/nyc-taxi-schema.md"
);

fn hidden() -> &'static (dyn Fn(u64) + Sync) {
    &|_| {}
}

fn read_all(path: &Path) -> RecordBatch {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn plain_props(_: usize) -> parquet::file::properties::WriterProperties {
    taxi::default_writer_properties().build()
}

/// The columns of table 1 of the schema document: `(name, arrow type)`, in order.
fn documented_columns() -> Vec<(String, DataType)> {
    let doc = std::fs::read_to_string(SCHEMA_DOC).unwrap();
    let section = doc
        .split("## 1.")
        .nth(1)
        .unwrap()
        .split("## 2.")
        .next()
        .unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | # | `name` | type | nullable | meaning |
            let n: usize = cells.get(1)?.parse().ok()?;
            let name = cells[2].trim_matches('`').to_string();
            let ty = match cells[3] {
                "int32" => DataType::Int32,
                "int64" => DataType::Int64,
                "double" => DataType::Float64,
                "timestamp[us] (no tz)" => DataType::Timestamp(TimeUnit::Microsecond, None),
                "large_string (utf8)" => DataType::LargeUtf8,
                other => panic!("column {n}: undocumented type {other}"),
            };
            assert!(cells[4].starts_with("yes"), "{name} nullable");
            Some((name, ty))
        })
        .collect()
}

#[test]
fn schema_matches_the_documented_tlc_schema() {
    let documented = documented_columns();
    assert_eq!(documented.len(), 20);
    let schema = taxi::schema();
    let ours: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(ours, documented);
    assert!(schema.fields().iter().all(|f| f.is_nullable()));
}

#[test]
fn files_read_back_with_the_schema_and_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    let spec = TaxiSpec {
        files: 2,
        row_group_rows: 20_000,
        batch_rows: 8_000,
        ..TaxiSpec::new(50_001)
    };
    let summary = taxi::generate(&spec, dir.path(), plain_props, hidden()).unwrap();
    assert_eq!(summary.rows, 50_001);
    let names: Vec<String> = summary
        .files
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "yellow_tripdata_part-00000.parquet",
            "yellow_tripdata_part-00001.parquet"
        ]
    );
    for (f, rows) in summary.files.iter().zip([25_001, 25_000]) {
        assert_eq!(f.rows, rows);
        assert_eq!(f.bytes, std::fs::metadata(&f.path).unwrap().len());
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&f.path).unwrap()).unwrap();
        let groups: Vec<i64> = builder
            .metadata()
            .row_groups()
            .iter()
            .map(|g| g.num_rows())
            .collect();
        assert_eq!(groups, [20_000, rows as i64 - 20_000]);
        assert_eq!(builder.schema(), &taxi::schema());
        let batch = read_all(&f.path);
        assert_eq!(batch.num_rows() as u64, rows);
    }
    // No temporary files are left behind.
    let leftovers: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn same_spec_gives_byte_identical_files_on_1_and_2_threads() {
    let spec = TaxiSpec {
        files: 3,
        seed: 7,
        row_group_rows: 30_000,
        batch_rows: 10_000,
        ..TaxiSpec::new(100_000)
    };
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let summary = pool
            .install(|| taxi::generate(&spec, dir.path(), plain_props, hidden()))
            .unwrap();
        let bytes: Vec<Vec<u8>> = summary
            .files
            .iter()
            .map(|f| std::fs::read(&f.path).unwrap())
            .collect();
        (dir, bytes)
    };
    let (_one_dir, one) = run(1);
    let (_two_dir, two) = run(2);
    assert_eq!(one.len(), 3);
    for (a, b) in one.iter().zip(&two) {
        assert!(a == b, "files differ between 1 and 2 threads");
    }
    // A different seed gives different data.
    let other = TaxiSpec {
        seed: 8,
        ..spec.clone()
    };
    let dir = tempfile::tempdir().unwrap();
    let s = taxi::generate(&other, dir.path(), plain_props, hidden()).unwrap();
    assert_ne!(std::fs::read(&s.files[0].path).unwrap(), one[0]);
}

/// 200k trips of January 2025, generated once for the distribution tests.
fn sample() -> &'static RecordBatch {
    static SAMPLE: OnceLock<RecordBatch> = OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let spec = TaxiSpec {
            files: 2,
            ..TaxiSpec::new(200_000)
        };
        let s = taxi::generate(&spec, dir.path(), plain_props, hidden()).unwrap();
        let batches: Vec<RecordBatch> = s.files.iter().map(|f| read_all(&f.path)).collect();
        concat_batches(&taxi::schema(), &batches).unwrap()
    })
}

fn f64s<'a>(b: &'a RecordBatch, name: &str) -> &'a Float64Array {
    b.column_by_name(name)
        .unwrap()
        .as_primitive::<Float64Type>()
}
fn i64s<'a>(b: &'a RecordBatch, name: &str) -> &'a Int64Array {
    b.column_by_name(name).unwrap().as_primitive::<Int64Type>()
}
fn i32s<'a>(b: &'a RecordBatch, name: &str) -> &'a Int32Array {
    b.column_by_name(name).unwrap().as_primitive::<Int32Type>()
}
fn pickups(b: &RecordBatch) -> &TimestampMicrosecondArray {
    b.column_by_name("tpep_pickup_datetime")
        .unwrap()
        .as_primitive()
}

fn pearson(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    sxy / (sxx * syy).sqrt()
}

#[test]
fn trips_peak_in_the_evening_rush() {
    let b = sample();
    let mut per_hour = [0u64; 24];
    for us in pickups(b).values() {
        per_hour[((us / 3_600_000_000) % 24) as usize] += 1;
    }
    let peak = (0..24).max_by_key(|&h| per_hour[h]).unwrap();
    assert!((17..=19).contains(&peak), "peak at {peak}: {per_hour:?}");
    // The small hours are the quietest.
    let trough = (0..24).min_by_key(|&h| per_hour[h]).unwrap();
    assert!((2..=5).contains(&trough), "trough at {trough}");
    assert!(per_hour[18] > 8 * per_hour[4]);
}

#[test]
fn weekends_have_busy_nights_and_no_morning_rush() {
    let b = sample();
    // 2025-01-01 was a Wednesday.
    let (mut weekday, mut weekend) = ([0f64; 24], [0f64; 24]);
    for us in pickups(b).values() {
        let day = us / 86_400_000_000;
        let dow = (day + 3) % 7; // 1970-01-01 was a Thursday: 0 = Monday
        let hour = ((us / 3_600_000_000) % 24) as usize;
        if dow >= 5 {
            weekend[hour] += 1.0;
        } else {
            weekday[hour] += 1.0;
        }
    }
    let share = |h: &[f64; 24], range: std::ops::Range<usize>| {
        range.map(|i| h[i]).sum::<f64>() / h.iter().sum::<f64>()
    };
    assert!(share(&weekend, 0..4) > 2.0 * share(&weekday, 0..4));
    assert!(share(&weekday, 7..10) > 1.5 * share(&weekend, 7..10));
    assert!(weekend.iter().sum::<f64>() > 0.0 && weekday.iter().sum::<f64>() > 0.0);
}

#[test]
fn tips_are_recorded_for_cards_and_not_for_cash() {
    let b = sample();
    let (pay, tip) = (i64s(b, "payment_type"), f64s(b, "tip_amount"));
    let (mut cash, mut card, mut card_tips, mut card_tipped) = (0, 0, 0.0, 0);
    for i in 0..b.num_rows() {
        match pay.value(i) {
            2 => {
                cash += 1;
                assert_eq!(tip.value(i), 0.0, "cash tip at row {i}");
            }
            1 => {
                card += 1;
                card_tips += tip.value(i);
                card_tipped += usize::from(tip.value(i) > 0.0);
            }
            _ => {}
        }
    }
    let share = |k: usize| k as f64 / b.num_rows() as f64;
    assert!((0.70..0.82).contains(&share(card)), "card {}", share(card));
    assert!((0.12..0.20).contains(&share(cash)), "cash {}", share(cash));
    assert!(card_tipped as f64 / card as f64 > 0.8);
    assert!(card_tips / card as f64 > 2.0);
}

#[test]
fn fares_follow_distance() {
    let b = sample();
    let (fare, dist) = (f64s(b, "fare_amount"), f64s(b, "trip_distance"));
    let (xs, ys): (Vec<f64>, Vec<f64>) = (0..b.num_rows())
        .map(|i| (dist.value(i), fare.value(i)))
        .unzip();
    let r = pearson(&xs, &ys);
    assert!(r > 0.8, "correlation {r}");
    let mean_distance = xs.iter().sum::<f64>() / xs.len() as f64;
    let mut sorted = xs.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    assert!((2.0..5.0).contains(&mean_distance), "mean {mean_distance}");
    assert!((1.0..2.5).contains(&median), "median {median}");
    assert!(mean_distance > median, "right-skewed");
}

#[test]
fn most_trips_carry_one_passenger() {
    let b = sample();
    let p = i64s(b, "passenger_count");
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for v in p.iter().flatten() {
        *counts.entry(v).or_default() += 1;
    }
    let mode = counts.iter().max_by_key(|(_, c)| **c).map(|(v, _)| *v);
    assert_eq!(mode, Some(1));
    assert!(counts[&1] as f64 / (p.len() - p.null_count()) as f64 > 0.6);
}

#[test]
fn pickups_are_skewed_towards_a_few_zones() {
    let b = sample();
    let pu = i32s(b, "PULocationID");
    let mut counts = vec![0usize; 266];
    for z in pu.values() {
        assert!((1..=265).contains(z));
        counts[*z as usize] += 1;
    }
    let mut sorted = counts.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let top10 = sorted[..10].iter().sum::<usize>() as f64 / b.num_rows() as f64;
    assert!((0.30..0.55).contains(&top10), "top 10 zones {top10}");
    let jfk = counts[taxi::JFK_AIRPORT as usize] as f64 / b.num_rows() as f64;
    assert!((0.03..0.07).contains(&jfk), "JFK {jfk}");
    let zones = taxi::zones();
    let manhattan: usize = (1..=265)
        .filter(|&z| zones[z - 1].borough == taxi::Borough::Manhattan)
        .map(|z| counts[z])
        .sum();
    assert!(manhattan as f64 / b.num_rows() as f64 > 0.8);
}

#[test]
fn total_amount_is_the_sum_of_its_parts() {
    let b = sample();
    let parts = [
        "fare_amount",
        "extra",
        "mta_tax",
        "tip_amount",
        "tolls_amount",
        "improvement_surcharge",
        "congestion_surcharge",
        "Airport_fee",
        "cbd_congestion_fee",
    ];
    let total = f64s(b, "total_amount");
    for i in 0..b.num_rows() {
        let sum: f64 = parts
            .iter()
            .map(|p| {
                let a = f64s(b, p);
                if a.is_null(i) { 0.0 } else { a.value(i) }
            })
            .sum();
        assert_eq!(
            (sum * 100.0).round(),
            (total.value(i) * 100.0).round(),
            "row {i}"
        );
    }
}

#[test]
fn driver_entered_fields_are_null_together() {
    let b = sample();
    let nullable = [
        "passenger_count",
        "RatecodeID",
        "store_and_fwd_flag",
        "congestion_surcharge",
        "Airport_fee",
    ];
    let pay = i64s(b, "payment_type");
    let first = b.column_by_name(nullable[0]).unwrap();
    let share = first.null_count() as f64 / b.num_rows() as f64;
    assert!((0.03..0.06).contains(&share), "null rows {share}");
    for name in nullable {
        let col = b.column_by_name(name).unwrap();
        for i in 0..b.num_rows() {
            assert_eq!(col.is_null(i), first.is_null(i), "{name} row {i}");
        }
    }
    for i in 0..b.num_rows() {
        assert_eq!(first.is_null(i), pay.value(i) == 0, "row {i}");
    }
    // Columns the real files always fill have no nulls.
    for name in [
        "VendorID",
        "tpep_pickup_datetime",
        "fare_amount",
        "total_amount",
    ] {
        assert_eq!(b.column_by_name(name).unwrap().null_count(), 0, "{name}");
    }
}

#[test]
fn dropoff_follows_pickup_within_the_month() {
    let b = sample();
    let pu = pickups(b);
    let dropoff: &TimestampMicrosecondArray = b
        .column_by_name("tpep_dropoff_datetime")
        .unwrap()
        .as_primitive();
    let jan1 = 1_735_689_600_000_000i64;
    for i in 0..b.num_rows() {
        let (p, d) = (pu.value(i), dropoff.value(i));
        assert!((jan1..jan1 + 31 * 86_400_000_000).contains(&p));
        assert!(d > p && d - p < 6 * 3_600_000_000, "row {i}");
        assert_eq!(p % 1_000_000, 0, "whole seconds");
    }
}

#[test]
fn encrypted_output_needs_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = b"0123456789012345".to_vec();
    let encryption = FileEncryptionProperties::builder(key.clone())
        .build()
        .unwrap();
    let spec = TaxiSpec::new(5_000);
    let s = taxi::gen_taxi(&spec, dir.path(), Some(encryption), hidden()).unwrap();
    // The zone lookup is public reference data: plaintext Parquet and CSV.
    assert_eq!(s.zone_files.len(), 2);
    assert!(dir.path().join("zones/taxi_zone_lookup.csv").exists());
    assert!(
        s.files
            .iter()
            .all(|f| f.path.starts_with(dir.path().join("trips")))
    );

    for path in s.files.iter().map(|f| f.path.clone()) {
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[bytes.len() - 4..], b"PARE", "encrypted footer");
        // Without the key the file cannot be opened.
        assert!(ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).is_err());
        // With the wrong key neither.
        let wrong = FileDecryptionProperties::builder(b"5432109876543210".to_vec())
            .build()
            .unwrap();
        let opts = ArrowReaderOptions::new().with_file_decryption_properties(wrong);
        let read =
            ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(&path).unwrap(), opts);
        assert!(read.is_err());
        // With it, it reads.
        let right = FileDecryptionProperties::builder(key.clone())
            .build()
            .unwrap();
        let opts = ArrowReaderOptions::new().with_file_decryption_properties(right);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new_with_options(File::open(&path).unwrap(), opts)
                .unwrap()
                .build()
                .unwrap();
        let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 5_000);
    }
}

#[test]
fn zone_lookup_is_written_as_parquet_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let s = taxi::gen_taxi(&TaxiSpec::new(1_000), dir.path(), None, hidden()).unwrap();
    assert_eq!(s.zone_files.len(), 2);
    let zones = read_all(&dir.path().join("zones/taxi_zone_lookup.parquet"));
    assert_eq!(zones.num_rows(), 265);
    assert_eq!(zones.schema(), taxi::zone_schema());
    let csv = std::fs::read_to_string(dir.path().join("zones/taxi_zone_lookup.csv")).unwrap();
    assert_eq!(csv, taxi::zones_csv());
    // Every trip zone exists in the lookup.
    let trips = read_all(&s.files[0].path);
    assert!(
        i32s(&trips, "DOLocationID")
            .values()
            .iter()
            .all(|z| (1..=265).contains(z))
    );
}

#[test]
fn a_second_run_into_the_same_directory_is_refused_until_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "keep me").unwrap();
    let spec = TaxiSpec::new(1_000);
    taxi::gen_taxi(&spec, dir.path(), None, hidden()).unwrap();
    let again = taxi::gen_taxi(&spec, dir.path(), None, hidden());
    assert!(
        matches!(again, Err(Error::OutputExists { .. })),
        "{again:?}"
    );
    assert_eq!(taxi::clean(dir.path()).unwrap(), 3);
    assert!(dir.path().join("notes.txt").exists());
    assert!(!dir.path().join("trips").exists() && !dir.path().join("zones").exists());
    taxi::gen_taxi(&spec, dir.path(), None, hidden()).unwrap();
}

#[test]
fn invalid_writer_properties_fail_without_leaving_files() {
    let dir = tempfile::tempdir().unwrap();
    // A column key for a column that does not exist is refused by the writer.
    let bad = FileEncryptionProperties::builder(b"0123456789012345".to_vec())
        .with_column_key("no_such_column", b"1234567890123450".to_vec())
        .build()
        .unwrap();
    let result = taxi::generate(
        &TaxiSpec::new(1_000),
        dir.path(),
        move |_| {
            taxi::default_writer_properties()
                .with_file_encryption_properties(Arc::clone(&bad))
                .build()
        },
        hidden(),
    );
    assert!(matches!(result, Err(Error::Parquet { .. })), "{result:?}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

/// Papercut (issue 10): `gen taxi --out DIR` wrote the zone lookup beside the trip files, so
/// reading `DIR` as one table mixed two schemas. Each directory now holds one table.
#[test]
fn regression_gen_taxi_writes_trips_and_zones_into_their_own_directories() {
    let dir = tempfile::tempdir().unwrap();
    taxi::gen_taxi(&TaxiSpec::new(1_000), dir.path(), None, hidden()).unwrap();
    let names = |sub: &str| -> Vec<String> {
        let mut n: Vec<String> = std::fs::read_dir(dir.path().join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(""), ["trips", "zones"]);
    assert_eq!(names("trips"), ["yellow_tripdata_part-00000.parquet"]);
    assert_eq!(
        names("zones"),
        ["taxi_zone_lookup.csv", "taxi_zone_lookup.parquet"]
    );
}

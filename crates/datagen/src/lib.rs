//! Deterministic synthetic data sets for Cloister's demos and benchmarks.
//!
//! `cloister demo` and `cloister bench` need realistic data without a download: this crate
//! makes it. [`taxi`] writes NYC-taxi-like trips in the exact schema of the TLC's yellow-taxi
//! Parquet files (with skewed zones, daily and weekly seasonality, fares that follow distance)
//! and the 265-zone lookup table, optionally with Parquet modular encryption.
//!
//! # Design
//!
//! Speed and reproducibility come first. Rows are drawn a column at a time into plain vectors
//! that become Arrow arrays without copying, Parquet column chunks are encoded in parallel,
//! and files are written in parallel on the rayon pool. Every batch of rows has its own random
//! stream derived from `(seed, file, batch)`, so the output is byte-identical whatever the
//! number of threads. The crate depends on arrow and parquet (the versions DataFusion uses)
//! but not on DataFusion, so it builds quickly and the engine can read its output directly.
//!
//! # Example
//!
//! ```
//! use cloister_datagen::taxi::{self, TaxiSpec};
//!
//! let dir = tempfile::tempdir()?;
//! let spec = TaxiSpec { files: 2, ..TaxiSpec::new(10_000) };
//! let rows_done = |_rows: u64| {}; // progress: rows written so far
//! let summary = taxi::gen_taxi(&spec, dir.path(), None, &rows_done)?;
//! assert_eq!(summary.rows, 10_000);
//! assert_eq!(summary.files.len(), 2);
//! assert!(dir.path().join("trips/yellow_tripdata_part-00001.parquet").exists());
//! assert!(dir.path().join("zones/taxi_zone_lookup.csv").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

// Tests may unwrap: a panic there is a test failure with its location.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod error;
pub mod taxi;

pub use error::{Error, Result};

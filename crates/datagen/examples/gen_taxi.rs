//! Generates taxi trips and prints the throughput: `gen_taxi ROWS OUT_DIR [FILES] [none|snappy|zstd]`.
//!
//! Build it optimised to measure: `cargo run --release -p cloister-datagen --example gen_taxi
//! -- 10000000 /tmp/taxi`. The output directory must not hold a previous run.

use std::path::PathBuf;

use cloister_datagen::taxi::{self, TaxiSpec};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::EnabledStatistics;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen_taxi ROWS OUT_DIR [FILES] [none|snappy|zstd]";
    let rows: u64 = args
        .first()
        .ok_or_else(|| anyhow::anyhow!(usage))?
        .parse()?;
    let out = PathBuf::from(args.get(1).ok_or_else(|| anyhow::anyhow!(usage))?);
    let mut spec = TaxiSpec::new(rows);
    if let Some(files) = args.get(2) {
        spec.files = files.parse()?;
    }
    let compression = match args.get(3).map(String::as_str) {
        None | Some("snappy") => Compression::SNAPPY,
        Some("none") => Compression::UNCOMPRESSED,
        Some("zstd") => Compression::ZSTD(ZstdLevel::try_new(1)?),
        Some(other) => anyhow::bail!("unknown compression {other}"),
    };
    // Knobs for experiments: rows per random stream, columns without dictionary.
    if let Ok(v) = std::env::var("GEN_BATCH_ROWS") {
        spec.batch_rows = v.parse()?;
    }
    let no_dict: Vec<String> = std::env::var("GEN_NO_DICT")
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let summary = taxi::generate(
        &spec,
        &out,
        |_| {
            let mut b = taxi::default_writer_properties().set_compression(compression);
            if let Ok(v) = std::env::var("GEN_WRITE_BATCH") {
                b = b.set_write_batch_size(v.parse().unwrap_or(1024));
            }
            match std::env::var("GEN_STATS").as_deref() {
                Ok("none") => b = b.set_statistics_enabled(EnabledStatistics::None),
                Ok("chunk") => b = b.set_statistics_enabled(EnabledStatistics::Chunk),
                _ => {}
            }
            for c in &no_dict {
                b = b.set_column_dictionary_enabled(c.as_str().into(), false);
            }
            b.build()
        },
        &|_| {},
    )?;
    println!(
        "{} rows in {} files, {:.1} MB, {:.2} s: {:.2} M rows/s on {} threads",
        summary.rows,
        summary.files.len(),
        summary.bytes as f64 / 1e6,
        summary.elapsed.as_secs_f64(),
        summary.rows_per_sec() / 1e6,
        rayon::current_num_threads()
    );
    Ok(())
}

//! Loading CSV files into encrypted tables.

use std::path::Path;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::prelude::{CsvReadOptions, SessionContext};

use super::Error;
use super::sink::SqlSink;

/// Read the CSV file `csv` (with a header row, columns as `schema`) and write it through
/// `sink` in one transaction; the number of rows written.
pub async fn load_csv(
    ctx: &SessionContext,
    csv: &Path,
    schema: SchemaRef,
    sink: &SqlSink,
) -> Result<u64, Error> {
    let input = |source| Error::Input {
        table: sink.table().to_owned(),
        source,
    };
    let path = csv.to_str().ok_or_else(|| Error::Input {
        table: sink.table().to_owned(),
        source: datafusion::error::DataFusionError::Plan(format!(
            "CSV path {} is not UTF-8",
            csv.display()
        )),
    })?;
    let options = CsvReadOptions::new().has_header(true).schema(&schema);
    let frame = ctx.read_csv(path, options).await.map_err(input)?;
    let stream = frame.execute_stream().await.map_err(input)?;
    sink.write(stream).await
}

//! Query results in one shape for every mode, and the rule by which they agree: the same
//! columns and rows in the same order, integers and text equal, doubles within
//! [`RELATIVE_TOLERANCE`] (engines sum in different orders).

use anyhow::{Context as _, bail};
use cloister_engine::datafusion::arrow::array::{Array, Float64Array, Int64Array, StringArray};
use cloister_engine::datafusion::arrow::compute::cast;
use cloister_engine::datafusion::arrow::datatypes::DataType;
use cloister_engine::datafusion::arrow::record_batch::RecordBatch;

use super::Mode;

/// How far two doubles may be apart, relative to the larger magnitude.
pub const RELATIVE_TOLERANCE: f64 = 1e-9;

/// Differences reported per query at most.
const MAX_REPORTED: usize = 5;

/// One result value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Text(String),
}

impl std::fmt::Display for Cell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cell::Null => f.write_str("NULL"),
            Cell::Int(v) => write!(f, "{v}"),
            Cell::Float(v) => write!(f, "{v:?}"),
            Cell::Text(v) => write!(f, "{v:?}"),
        }
    }
}

/// A query's result: column names and rows, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// From Arrow batches: integers as `Int`, floating point and decimals as `Float`, strings
    /// as `Text`; other types are refused (the demo queries produce none).
    pub fn from_batches(batches: &[RecordBatch]) -> anyhow::Result<Self> {
        let mut out = Rows::default();
        let Some(first) = batches.first() else {
            return Ok(out);
        };
        out.columns = first
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        for batch in batches {
            let mut columns: Vec<Vec<Cell>> = Vec::with_capacity(batch.num_columns());
            for (array, field) in batch.columns().iter().zip(batch.schema().fields()) {
                columns.push(
                    cells(array.as_ref())
                        .with_context(|| format!("result column {}", field.name()))?,
                );
            }
            for i in 0..batch.num_rows() {
                out.rows
                    .push(columns.iter().map(|c| c[i].clone()).collect());
            }
        }
        Ok(out)
    }

    /// From the DuckDB peer's JSON: numbers that are integers in JSON as `Int`, others as
    /// `Float` (Python prints a double with a decimal point or exponent, an int without).
    pub fn from_json(columns: Vec<String>, rows: &[serde_json::Value]) -> anyhow::Result<Self> {
        let mut out = Rows {
            columns,
            rows: Vec::with_capacity(rows.len()),
        };
        for row in rows {
            let values = row.as_array().context("a result row is not an array")?;
            let mut cells = Vec::with_capacity(values.len());
            for v in values {
                cells.push(match v {
                    serde_json::Value::Null => Cell::Null,
                    serde_json::Value::String(s) => Cell::Text(s.clone()),
                    serde_json::Value::Number(n) => match n.as_i64() {
                        Some(i) if !n.is_f64() => Cell::Int(i),
                        _ => Cell::Float(n.as_f64().context("a number out of range")?),
                    },
                    other => bail!("unexpected result value {other}"),
                });
            }
            out.rows.push(cells);
        }
        Ok(out)
    }
}

fn cells(array: &dyn Array) -> anyhow::Result<Vec<Cell>> {
    use DataType as T;
    let n = array.len();
    let null_or = |i: usize, f: &dyn Fn(usize) -> Cell| {
        if array.is_null(i) { Cell::Null } else { f(i) }
    };
    Ok(match array.data_type() {
        T::Int8 | T::Int16 | T::Int32 | T::Int64 | T::UInt8 | T::UInt16 | T::UInt32 | T::UInt64 => {
            let a = cast(array, &T::Int64)?;
            let a = a
                .as_any()
                .downcast_ref::<Int64Array>()
                .context("cast to Int64")?;
            (0..n)
                .map(|i| null_or(i, &|i| Cell::Int(a.value(i))))
                .collect()
        }
        T::Float16 | T::Float32 | T::Float64 | T::Decimal128(..) | T::Decimal256(..) => {
            let a = cast(array, &T::Float64)?;
            let a = a
                .as_any()
                .downcast_ref::<Float64Array>()
                .context("cast to Float64")?;
            (0..n)
                .map(|i| null_or(i, &|i| Cell::Float(a.value(i))))
                .collect()
        }
        T::Utf8 | T::LargeUtf8 | T::Utf8View => {
            let a = cast(array, &T::Utf8)?;
            let a = a
                .as_any()
                .downcast_ref::<StringArray>()
                .context("cast to Utf8")?;
            (0..n)
                .map(|i| null_or(i, &|i| Cell::Text(a.value(i).to_owned())))
                .collect()
        }
        other => bail!("unsupported result type {other}"),
    })
}

/// Whether two cells agree: see the module docs.
pub fn cells_agree(a: &Cell, b: &Cell) -> bool {
    match (a, b) {
        (Cell::Float(x), Cell::Float(y)) => floats_agree(*x, *y),
        _ => a == b,
    }
}

/// `x` and `y` within [`RELATIVE_TOLERANCE`] of the larger magnitude (both NaN agree).
pub fn floats_agree(x: f64, y: f64) -> bool {
    if x.is_nan() || y.is_nan() {
        return x.is_nan() && y.is_nan();
    }
    x == y || (x - y).abs() <= RELATIVE_TOLERANCE * x.abs().max(y.abs())
}

/// How `b` differs from `a` (empty: they agree), at most [`MAX_REPORTED`] lines.
pub fn differences(a: &Rows, b: &Rows) -> Vec<String> {
    let mut out = Vec::new();
    let names =
        |r: &Rows| -> Vec<String> { r.columns.iter().map(|c| c.to_ascii_lowercase()).collect() };
    if names(a) != names(b) {
        out.push(format!("columns {:?} vs {:?}", a.columns, b.columns));
        return out;
    }
    if a.rows.len() != b.rows.len() {
        out.push(format!("{} rows vs {}", a.rows.len(), b.rows.len()));
        return out;
    }
    for (i, (ra, rb)) in a.rows.iter().zip(&b.rows).enumerate() {
        for ((x, y), column) in ra.iter().zip(rb).zip(&a.columns) {
            if !cells_agree(x, y) {
                if out.len() == MAX_REPORTED {
                    out.push("…".into());
                    return out;
                }
                out.push(format!("row {i}, {column}: {x} vs {y}"));
            }
        }
        if ra.len() != rb.len() {
            out.push(format!("row {i}: {} values vs {}", ra.len(), rb.len()));
        }
    }
    out
}

/// Every mode's result compared with the first's; each difference names both modes.
pub fn agree(results: &[(Mode, Rows)]) -> Vec<String> {
    let Some((first_mode, first)) = results.first() else {
        return Vec::new();
    };
    results[1..]
        .iter()
        .flat_map(|(mode, rows)| {
            differences(first, rows)
                .into_iter()
                .map(move |d| format!("{first_mode} vs {mode}: {d}"))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use cloister_engine::datafusion::arrow::array::{Int32Array, LargeStringArray};
    use cloister_engine::datafusion::arrow::datatypes::{Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Schema::new(vec![
            Field::new("hour", DataType::Int32, true),
            Field::new("avg_fare", DataType::Float64, true),
            Field::new("zone", DataType::LargeUtf8, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(Int32Array::from(vec![Some(0), None])),
                Arc::new(Float64Array::from(vec![Some(15.25), Some(0.1 + 0.2)])),
                Arc::new(LargeStringArray::from(vec![Some("JFK Airport"), None])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn arrow_and_json_results_agree() {
        let arrow = Rows::from_batches(&[batch()]).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(r#"[[0, 15.25, "JFK Airport"], [null, 0.3, null]]"#).unwrap();
        let json = Rows::from_json(
            vec!["hour".into(), "avg_fare".into(), "zone".into()],
            json.as_array().unwrap(),
        )
        .unwrap();
        assert_eq!(arrow.rows[1][0], Cell::Null);
        assert!(
            differences(&arrow, &json).is_empty(),
            "{:?}",
            differences(&arrow, &json)
        );
    }

    #[test]
    fn counts_are_exact_and_doubles_close() {
        let a = Rows {
            columns: vec!["trips".into(), "revenue".into()],
            rows: vec![vec![Cell::Int(10), Cell::Float(1e6)]],
        };
        let mut b = a.clone();
        b.rows[0][1] = Cell::Float(1e6 * (1.0 + 5e-10));
        assert!(differences(&a, &b).is_empty());
        b.rows[0][1] = Cell::Float(1e6 * (1.0 + 5e-9));
        assert_eq!(differences(&a, &b).len(), 1);
        b.rows[0][1] = Cell::Float(1e6);
        b.rows[0][0] = Cell::Int(11);
        assert_eq!(differences(&a, &b), ["row 0, trips: 10 vs 11"]);
        // An integer is not a double.
        b.rows[0][0] = Cell::Float(10.0);
        assert_eq!(differences(&a, &b).len(), 1);
    }

    #[test]
    fn shapes_must_match() {
        let a = Rows {
            columns: vec!["x".into()],
            rows: vec![vec![Cell::Int(1)]],
        };
        let b = Rows {
            columns: vec!["X".into()],
            rows: vec![],
        };
        assert_eq!(differences(&a, &b), ["1 rows vs 0"]);
        let c = Rows {
            columns: vec!["y".into()],
            rows: vec![vec![Cell::Int(1)]],
        };
        assert!(differences(&a, &c)[0].starts_with("columns"));
        let named = agree(&[(Mode::Confidential, a.clone()), (Mode::Duckdb, c)]);
        assert!(
            named[0].starts_with("confidential vs duckdb: "),
            "{named:?}"
        );
        assert!(agree(&[(Mode::Plaintext, a)]).is_empty());
    }

    #[test]
    fn nan_only_agrees_with_nan() {
        assert!(floats_agree(f64::NAN, f64::NAN));
        assert!(!floats_agree(f64::NAN, 1.0));
        assert!(floats_agree(0.0, -0.0));
    }
}

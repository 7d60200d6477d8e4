//! SQL Server type names, and how values of encrypted columns become Arrow arrays and back.
//!
//! `cloister_encrypted_columns.plaintext_type` holds the column's SQL Server type as T-SQL
//! spells it (`char(11) COLLATE Latin1_General_BIN2`, `money`, `decimal(10,2)`,
//! `nvarchar(max)`), because the plaintext serialisation — and so every cell — depends on it.
//! [`parse_sql_type`] reads it and [`format_sql_type`] writes it. The collation matters only for
//! `char` / `varchar`: one ending in `_UTF8` means UTF-8 (code page 65001); any other is read as
//! its ASCII subset, the one text every Latin code page shares.
//!
//! | SQL Server type | Arrow type | notes |
//! | --- | --- | --- |
//! | `bit` | `Boolean` | |
//! | `tinyint` / `smallint` / `int` / `bigint` | `UInt8` / `Int16` / `Int32` / `Int64` | |
//! | `real` / `float` | `Float32` / `Float64` | |
//! | `decimal(p,s)`, `numeric(p,s)` | `Decimal128(p,s)` | |
//! | `money` / `smallmoney` | `Decimal128(19,4)` / `Decimal128(10,4)` | |
//! | `date` | `Date32` | |
//! | `time(n)` | `Time64(ns)` | |
//! | `datetime2(n)` | `Timestamp(µs)` | 100-ns ticks below a microsecond are dropped |
//! | `datetimeoffset(n)` | `Timestamp(µs, "+00:00")` | the UTC instant; the offset is dropped |
//! | `datetime` / `smalldatetime` | `Timestamp(µs)` | 1/300 s ticks rounded to the microsecond / whole minutes |
//! | `char`, `varchar`, `nchar`, `nvarchar` | `Utf8` | fixed-length values read padded with spaces |
//! | `binary`, `varbinary` | `Binary` | fixed-length values read padded with zeros |
//! | `uniqueidentifier` | `FixedSizeBinary(16)` | RFC 4122 byte order |

use std::str::FromStr;
use std::sync::Arc;

use cloister_colenc::{
    CodePage, Date, DateTime, DateTime2, DateTimeOffset, Decimal, SmallDateTime, SqlType, SqlValue,
    Time,
};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Date32Array, Decimal128Array,
    FixedSizeBinaryArray, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    StringArray, Time64NanosecondArray, TimestampMicrosecondArray, UInt8Array,
};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int64Type,
    Time64NanosecondType, TimeUnit, TimestampMicrosecondType,
};

use super::Error;

/// The time zone of `datetimeoffset` columns in Arrow: the values are UTC instants.
pub const UTC: &str = "+00:00";

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// Days from 1900-01-01 (the base of `datetime` and `smalldatetime`) to 1970-01-01.
const SQL_BASE_TO_UNIX_DAYS: i64 = 25_567;

/// Parse a SQL Server type name such as `char(11) COLLATE Latin1_General_BIN2`.
pub fn parse_sql_type(text: &str) -> Result<SqlType, Error> {
    let fail = |reason: &str| Error::InvalidTypeName {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let lower = text.trim().to_ascii_lowercase();
    let (decl, collation) = match lower.find(" collate ") {
        Some(i) => (
            lower[..i].trim(),
            Some(lower[i + " collate ".len()..].trim()),
        ),
        None => (lower.as_str(), None),
    };
    let (name, args): (&str, Vec<&str>) = match decl.find('(') {
        Some(open) => {
            let inner = decl[open + 1..]
                .strip_suffix(')')
                .ok_or_else(|| fail("unbalanced parentheses"))?;
            (
                decl[..open].trim(),
                inner.split(',').map(str::trim).collect(),
            )
        }
        None => (decl, Vec::new()),
    };
    let number = |arg: &str| -> Result<u16, Error> {
        arg.parse::<u16>()
            .map_err(|_| fail("type arguments must be small non-negative integers"))
    };
    let small = |arg: &str| -> Result<u8, Error> {
        u8::try_from(number(arg)?).map_err(|_| fail("precision and scale must be below 256"))
    };
    let length = |default: u16| -> Result<Option<u16>, Error> {
        match args.as_slice() {
            [] => Ok(Some(default)),
            ["max"] => Ok(None),
            [n] => number(n).map(Some),
            _ => Err(fail("expected one length")),
        }
    };
    let fixed = |default: u16| -> Result<u16, Error> {
        length(default)?.ok_or_else(|| fail("fixed-length types have no (max)"))
    };
    let scale = || -> Result<u8, Error> {
        match args.as_slice() {
            [] => Ok(7),
            [n] => small(n),
            _ => Err(fail("expected one fractional-second scale")),
        }
    };
    let code_page = collation.map_or(CodePage::Ascii, |c| {
        if c.ends_with("_utf8") {
            CodePage::Utf8
        } else {
            CodePage::Ascii
        }
    });
    let is_text = matches!(name, "char" | "varchar" | "nchar" | "nvarchar");
    if collation.is_some() && !is_text {
        return Err(fail("only character types have a collation"));
    }
    let no_args = |ty: SqlType| {
        if args.is_empty() {
            Ok(ty)
        } else {
            Err(fail("this type takes no arguments"))
        }
    };

    let ty = match name {
        "bit" => no_args(SqlType::Bit)?,
        "tinyint" => no_args(SqlType::TinyInt)?,
        "smallint" => no_args(SqlType::SmallInt)?,
        "int" | "integer" => no_args(SqlType::Int)?,
        "bigint" => no_args(SqlType::BigInt)?,
        "real" => no_args(SqlType::Real)?,
        "float" => match args.as_slice() {
            [] => SqlType::Float,
            [n] if (1..=24).contains(&number(n)?) => SqlType::Real,
            [n] if (25..=53).contains(&number(n)?) => SqlType::Float,
            _ => return Err(fail("float(n) takes n in 1..=53")),
        },
        "decimal" | "numeric" | "dec" => match args.as_slice() {
            [] => SqlType::Decimal {
                precision: 18,
                scale: 0,
            },
            [p] => SqlType::Decimal {
                precision: small(p)?,
                scale: 0,
            },
            [p, s] => SqlType::Decimal {
                precision: small(p)?,
                scale: small(s)?,
            },
            _ => return Err(fail("decimal takes (precision[, scale])")),
        },
        "money" => no_args(SqlType::Money)?,
        "smallmoney" => no_args(SqlType::SmallMoney)?,
        "date" => no_args(SqlType::Date)?,
        "time" => SqlType::Time { scale: scale()? },
        "datetime2" => SqlType::DateTime2 { scale: scale()? },
        "datetimeoffset" => SqlType::DateTimeOffset { scale: scale()? },
        "datetime" => no_args(SqlType::DateTime)?,
        "smalldatetime" => no_args(SqlType::SmallDateTime)?,
        "char" => SqlType::Char {
            len: fixed(1)?,
            code_page,
        },
        "varchar" => SqlType::VarChar {
            max_len: length(1)?,
            code_page,
        },
        "nchar" => SqlType::NChar { len: fixed(1)? },
        "nvarchar" => SqlType::NVarChar {
            max_len: length(1)?,
        },
        "binary" => SqlType::Binary { len: fixed(1)? },
        "varbinary" => SqlType::VarBinary {
            max_len: length(1)?,
        },
        "uniqueidentifier" => no_args(SqlType::UniqueIdentifier)?,
        _ => return Err(fail("unknown or unsupported type name")),
    };
    ty.validate().map_err(|e| Error::InvalidTypeName {
        text: text.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(ty)
}

/// The T-SQL spelling of `ty`, with a binary collation for `char` / `varchar` (required for
/// encrypted character columns): `Latin1_General_100_BIN2_UTF8` for UTF-8,
/// `Latin1_General_BIN2` otherwise. [`parse_sql_type`] reads it back to the same type.
pub fn format_sql_type(ty: &SqlType) -> String {
    match ty {
        SqlType::Char { code_page, .. } | SqlType::VarChar { code_page, .. } => {
            let collation = if *code_page == CodePage::Utf8 {
                "Latin1_General_100_BIN2_UTF8"
            } else {
                "Latin1_General_BIN2"
            };
            format!("{ty} COLLATE {collation}")
        }
        _ => ty.to_string(),
    }
}

/// The Arrow type that the plaintext of a `ty` column is read as (see the module table).
pub fn arrow_type(ty: &SqlType) -> DataType {
    match *ty {
        SqlType::Bit => DataType::Boolean,
        SqlType::TinyInt => DataType::UInt8,
        SqlType::SmallInt => DataType::Int16,
        SqlType::Int => DataType::Int32,
        SqlType::BigInt => DataType::Int64,
        SqlType::Real => DataType::Float32,
        SqlType::Float => DataType::Float64,
        SqlType::Decimal { precision, scale } => DataType::Decimal128(precision, scale as i8),
        SqlType::Money => DataType::Decimal128(19, 4),
        SqlType::SmallMoney => DataType::Decimal128(10, 4),
        SqlType::Date => DataType::Date32,
        SqlType::Time { .. } => DataType::Time64(TimeUnit::Nanosecond),
        SqlType::DateTimeOffset { .. } => {
            DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into()))
        }
        SqlType::DateTime2 { .. } | SqlType::DateTime | SqlType::SmallDateTime => {
            DataType::Timestamp(TimeUnit::Microsecond, None)
        }
        SqlType::Binary { .. } | SqlType::VarBinary { .. } => DataType::Binary,
        SqlType::UniqueIdentifier => DataType::FixedSizeBinary(16),
        // Character types, and any type a later colenc adds (read as text is the safe guess;
        // `encode`/`decode` reject what they do not know).
        _ => DataType::Utf8,
    }
}

/// The SQL Server type an Arrow column is encrypted as when the caller names none.
pub fn default_sql_type(data_type: &DataType) -> Option<SqlType> {
    Some(match data_type {
        DataType::Boolean => SqlType::Bit,
        DataType::UInt8 => SqlType::TinyInt,
        DataType::Int8 | DataType::Int16 => SqlType::SmallInt,
        DataType::UInt16 | DataType::Int32 => SqlType::Int,
        DataType::UInt32 | DataType::Int64 => SqlType::BigInt,
        DataType::Float16 | DataType::Float32 => SqlType::Real,
        DataType::Float64 => SqlType::Float,
        DataType::Decimal128(p, s) if *s >= 0 && *p <= 38 => SqlType::Decimal {
            precision: *p,
            scale: *s as u8,
        },
        DataType::Date32 | DataType::Date64 => SqlType::Date,
        DataType::Time32(_) | DataType::Time64(_) => SqlType::Time { scale: 7 },
        DataType::Timestamp(_, None) => SqlType::DateTime2 { scale: 6 },
        DataType::Timestamp(_, Some(_)) => SqlType::DateTimeOffset { scale: 6 },
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            SqlType::NVarChar { max_len: None }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            SqlType::VarBinary { max_len: None }
        }
        DataType::FixedSizeBinary(16) => SqlType::UniqueIdentifier,
        _ => return None,
    })
}

/// Build the Arrow array of a column of type `ty` from decrypted values (`None` is NULL).
pub(crate) fn values_to_array(
    ty: &SqlType,
    values: Vec<Option<SqlValue>>,
) -> Result<ArrayRef, Error> {
    let wrong = || Error::Internal(format!("a decrypted value does not match its type {ty}"));
    macro_rules! collect {
        ($pat:pat => $e:expr) => {
            values
                .into_iter()
                .map(|v| match v {
                    None => Ok(None),
                    Some($pat) => Ok(Some($e)),
                    Some(_) => Err(wrong()),
                })
                .collect::<Result<Vec<_>, Error>>()?
        };
    }
    let array: ArrayRef = match *ty {
        SqlType::Bit => Arc::new(BooleanArray::from(collect!(SqlValue::Bit(v) => v))),
        SqlType::TinyInt => Arc::new(UInt8Array::from(collect!(SqlValue::TinyInt(v) => v))),
        SqlType::SmallInt => Arc::new(Int16Array::from(collect!(SqlValue::SmallInt(v) => v))),
        SqlType::Int => Arc::new(Int32Array::from(collect!(SqlValue::Int(v) => v))),
        SqlType::BigInt => Arc::new(Int64Array::from(collect!(SqlValue::BigInt(v) => v))),
        SqlType::Real => Arc::new(Float32Array::from(collect!(SqlValue::Real(v) => v))),
        SqlType::Float => Arc::new(Float64Array::from(collect!(SqlValue::Float(v) => v))),
        SqlType::Decimal { precision, scale } => {
            let raw =
                collect!(SqlValue::Decimal(d) => d.rescale(scale).ok_or_else(wrong)?.unscaled());
            Arc::new(decimal_array(raw, precision, scale)?)
        }
        SqlType::Money => {
            let raw = collect!(SqlValue::Money(v) => i128::from(v));
            Arc::new(decimal_array(raw, 19, 4)?)
        }
        SqlType::SmallMoney => {
            let raw = collect!(SqlValue::SmallMoney(v) => i128::from(v));
            Arc::new(decimal_array(raw, 10, 4)?)
        }
        SqlType::Date => Arc::new(Date32Array::from(
            collect!(SqlValue::Date(d) => i32::try_from(d.unix_days()).map_err(|_| wrong())?),
        )),
        SqlType::Time { .. } => Arc::new(Time64NanosecondArray::from(
            collect!(SqlValue::Time(t) => i64::try_from(t.ticks()).map_err(|_| wrong())? * 100),
        )),
        SqlType::DateTime2 { .. } => Arc::new(TimestampMicrosecondArray::from(
            collect!(SqlValue::DateTime2(dt) => dt.unix_micros()),
        )),
        SqlType::DateTimeOffset { .. } => Arc::new(
            TimestampMicrosecondArray::from(
                collect!(SqlValue::DateTimeOffset(dto) => dto.utc().unix_micros()),
            )
            .with_timezone(UTC),
        ),
        SqlType::DateTime => Arc::new(TimestampMicrosecondArray::from(
            collect!(SqlValue::DateTime(dt) => datetime_micros(dt)),
        )),
        SqlType::SmallDateTime => Arc::new(TimestampMicrosecondArray::from(
            collect!(SqlValue::SmallDateTime(dt) => smalldatetime_micros(dt)),
        )),
        SqlType::Binary { .. } | SqlType::VarBinary { .. } => {
            let bytes = collect!(SqlValue::Binary(b) => b);
            Arc::new(BinaryArray::from_iter(bytes))
        }
        SqlType::UniqueIdentifier => {
            let guids = collect!(SqlValue::UniqueIdentifier(g) => g);
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(guids.into_iter(), 16)
                    .map_err(|e| Error::Internal(format!("building a uuid array: {e}")))?,
            )
        }
        _ => Arc::new(StringArray::from(collect!(SqlValue::String(s) => s))),
    };
    Ok(array)
}

fn decimal_array(
    raw: Vec<Option<i128>>,
    precision: u8,
    scale: u8,
) -> Result<Decimal128Array, Error> {
    Decimal128Array::from(raw)
        .with_precision_and_scale(precision, scale as i8)
        .map_err(|e| Error::Internal(format!("building a decimal array: {e}")))
}

fn datetime_micros(dt: DateTime) -> i64 {
    let days = i64::from(dt.days()) - SQL_BASE_TO_UNIX_DAYS;
    // 1/300 s is 10_000/3 µs; round half up, as SQL Server shows milliseconds.
    let micros = (i64::from(dt.ticks()) * 10_000 + 1) / 3;
    days * MICROS_PER_DAY + micros
}

fn smalldatetime_micros(dt: SmallDateTime) -> i64 {
    let days = i64::from(dt.days()) - SQL_BASE_TO_UNIX_DAYS;
    days * MICROS_PER_DAY + i64::from(dt.minutes()) * 60_000_000
}

/// The values of an Arrow column as values of SQL type `ty`, ready to serialise (`None` is
/// NULL). `column` names the column in errors.
pub(crate) fn array_to_values(
    ty: &SqlType,
    array: &ArrayRef,
    column: &str,
) -> Result<Vec<Option<SqlValue>>, Error> {
    let unsupported = || Error::UnsupportedArrowType {
        column: column.to_owned(),
        data_type: array.data_type().to_string(),
        target: format_sql_type(ty),
    };
    let out_of_range = |what: &str| Error::Value {
        column: column.to_owned(),
        source: cloister_colenc::Error::Encode {
            ty: ty.to_string(),
            reason: format!("{what} out of range"),
        },
    };
    let to = |target: DataType| -> Result<ArrayRef, Error> {
        // Strict casts: a value that does not fit is an error, never a silent NULL.
        let options = CastOptions {
            safe: false,
            ..CastOptions::default()
        };
        cast_with_options(array, &target, &options).map_err(|_| unsupported())
    };

    Ok(match *ty {
        SqlType::Bit => {
            if !matches!(array.data_type(), DataType::Boolean) {
                return Err(unsupported());
            }
            array
                .as_boolean()
                .iter()
                .map(|v| v.map(SqlValue::Bit))
                .collect()
        }
        SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
            if !array.data_type().is_integer() {
                return Err(unsupported());
            }
            to(DataType::Int64)?
                .as_primitive::<Int64Type>()
                .iter()
                .map(|v| v.map(SqlValue::BigInt))
                .collect()
        }
        SqlType::Real => {
            if !array.data_type().is_floating() {
                return Err(unsupported());
            }
            to(DataType::Float32)?
                .as_primitive::<Float32Type>()
                .iter()
                .map(|v| v.map(SqlValue::Real))
                .collect()
        }
        SqlType::Float => {
            if !array.data_type().is_floating() {
                return Err(unsupported());
            }
            to(DataType::Float64)?
                .as_primitive::<Float64Type>()
                .iter()
                .map(|v| v.map(SqlValue::Float))
                .collect()
        }
        SqlType::Decimal { scale, .. } => decimals(array, column, ty)?
            .into_iter()
            .map(|d| {
                d.map(|d| {
                    d.rescale(scale)
                        .map(SqlValue::Decimal)
                        .ok_or_else(|| out_of_range("digits after the point"))
                })
                .transpose()
            })
            .collect::<Result<_, _>>()?,
        SqlType::Money | SqlType::SmallMoney => decimals(array, column, ty)?
            .into_iter()
            .map(|d| {
                d.map(|d| {
                    let ten_thousandths = d
                        .rescale(4)
                        .and_then(|d| i64::try_from(d.unscaled()).ok())
                        .ok_or_else(|| out_of_range("money value"))?;
                    if *ty == SqlType::Money {
                        Ok(SqlValue::Money(ten_thousandths))
                    } else {
                        i32::try_from(ten_thousandths)
                            .map(SqlValue::SmallMoney)
                            .map_err(|_| out_of_range("smallmoney value"))
                    }
                })
                .transpose()
            })
            .collect::<Result<_, _>>()?,
        SqlType::Date => {
            if !matches!(array.data_type(), DataType::Date32 | DataType::Date64) {
                return Err(unsupported());
            }
            to(DataType::Date32)?
                .as_primitive::<Date32Type>()
                .iter()
                .map(|v| {
                    v.map(|days| {
                        Date::from_unix_days(i64::from(days))
                            .map(SqlValue::Date)
                            .ok_or_else(|| out_of_range("date"))
                    })
                    .transpose()
                })
                .collect::<Result<_, _>>()?
        }
        SqlType::Time { .. } => {
            if !matches!(array.data_type(), DataType::Time32(_) | DataType::Time64(_)) {
                return Err(unsupported());
            }
            to(DataType::Time64(TimeUnit::Nanosecond))?
                .as_primitive::<Time64NanosecondType>()
                .iter()
                .map(|v| {
                    v.map(|ns| {
                        u64::try_from(ns / 100)
                            .ok()
                            .and_then(Time::from_ticks)
                            .map(SqlValue::Time)
                            .ok_or_else(|| out_of_range("time of day"))
                    })
                    .transpose()
                })
                .collect::<Result<_, _>>()?
        }
        SqlType::DateTime2 { .. }
        | SqlType::DateTimeOffset { .. }
        | SqlType::DateTime
        | SqlType::SmallDateTime => {
            let micros = match array.data_type() {
                // Same time zone, other unit: the stored instants are kept as they are.
                DataType::Timestamp(_, tz) => {
                    to(DataType::Timestamp(TimeUnit::Microsecond, tz.clone()))?
                }
                DataType::Date32 | DataType::Date64 => {
                    to(DataType::Timestamp(TimeUnit::Microsecond, None))?
                }
                _ => return Err(unsupported()),
            };
            micros
                .as_primitive::<TimestampMicrosecondType>()
                .iter()
                .map(|v| {
                    v.map(|us| timestamp_value(ty, us).ok_or_else(|| out_of_range("timestamp")))
                        .transpose()
                })
                .collect::<Result<_, _>>()?
        }
        SqlType::Binary { .. } | SqlType::VarBinary { .. } => {
            if !matches!(
                array.data_type(),
                DataType::Binary
                    | DataType::LargeBinary
                    | DataType::BinaryView
                    | DataType::FixedSizeBinary(_)
            ) {
                return Err(unsupported());
            }
            to(DataType::Binary)?
                .as_binary::<i32>()
                .iter()
                .map(|v| v.map(|b| SqlValue::Binary(b.to_vec())))
                .collect()
        }
        SqlType::UniqueIdentifier => {
            if !matches!(array.data_type(), DataType::FixedSizeBinary(16)) {
                return Err(unsupported());
            }
            array
                .as_fixed_size_binary()
                .iter()
                .map(|v| {
                    v.map(|b| {
                        <[u8; 16]>::try_from(b)
                            .map(SqlValue::UniqueIdentifier)
                            .map_err(|_| unsupported())
                    })
                    .transpose()
                })
                .collect::<Result<_, _>>()?
        }
        _ => {
            if !matches!(
                array.data_type(),
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            ) {
                return Err(unsupported());
            }
            to(DataType::Utf8)?
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(|s| SqlValue::String(s.to_owned())))
                .collect()
        }
    })
}

/// Integer, decimal or decimal-text values as exact decimals.
fn decimals(array: &ArrayRef, column: &str, ty: &SqlType) -> Result<Vec<Option<Decimal>>, Error> {
    let unsupported = || Error::UnsupportedArrowType {
        column: column.to_owned(),
        data_type: array.data_type().to_string(),
        target: format_sql_type(ty),
    };
    let bad_value = |reason: String| Error::Value {
        column: column.to_owned(),
        source: cloister_colenc::Error::Encode {
            ty: ty.to_string(),
            reason,
        },
    };
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    match array.data_type() {
        t if t.is_integer() => {
            let ints =
                cast_with_options(array, &DataType::Int64, &options).map_err(|_| unsupported())?;
            ints.as_primitive::<Int64Type>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        Decimal::new(i128::from(v), 0)
                            .ok_or_else(|| bad_value("more than 38 digits".into()))
                    })
                    .transpose()
                })
                .collect()
        }
        DataType::Decimal32(..) | DataType::Decimal64(..) | DataType::Decimal128(..) => {
            let scale = match array.data_type() {
                DataType::Decimal32(_, s)
                | DataType::Decimal64(_, s)
                | DataType::Decimal128(_, s) => *s,
                _ => 0,
            };
            let target = DataType::Decimal128(38, scale);
            let wide = cast_with_options(array, &target, &options).map_err(|_| unsupported())?;
            let scale = u8::try_from(scale).map_err(|_| unsupported())?;
            wide.as_primitive::<Decimal128Type>()
                .iter()
                .map(|v| {
                    v.map(|v| {
                        Decimal::new(v, scale)
                            .ok_or_else(|| bad_value("more than 38 digits".into()))
                    })
                    .transpose()
                })
                .collect()
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let text =
                cast_with_options(array, &DataType::Utf8, &options).map_err(|_| unsupported())?;
            text.as_string::<i32>()
                .iter()
                .map(|v| {
                    v.map(|s| {
                        Decimal::from_str(s.trim())
                            .map_err(|_| bad_value("not a decimal number".into()))
                    })
                    .transpose()
                })
                .collect()
        }
        _ => Err(unsupported()),
    }
}

fn timestamp_value(ty: &SqlType, micros: i64) -> Option<SqlValue> {
    Some(match ty {
        SqlType::DateTime2 { .. } => SqlValue::DateTime2(DateTime2::from_unix_micros(micros)?),
        SqlType::DateTimeOffset { .. } => SqlValue::DateTimeOffset(DateTimeOffset::from_utc(
            DateTime2::from_unix_micros(micros)?,
            0,
        )?),
        SqlType::DateTime => {
            let days = micros.div_euclid(MICROS_PER_DAY);
            let in_day = micros.rem_euclid(MICROS_PER_DAY);
            // Round to the nearest 1/300 s; a tick count of a full day carries over.
            let ticks = (in_day * 3 + 5_000) / 10_000;
            let (days, ticks) = if ticks >= i64::from(DateTime::TICKS_PER_DAY) {
                (days + 1, 0)
            } else {
                (days, ticks)
            };
            SqlValue::DateTime(DateTime::from_parts(
                i32::try_from(days + SQL_BASE_TO_UNIX_DAYS).ok()?,
                u32::try_from(ticks).ok()?,
            )?)
        }
        SqlType::SmallDateTime => {
            // Round to the nearest minute, as SQL Server does.
            let minutes = (micros + 30_000_000).div_euclid(60_000_000);
            let days = minutes.div_euclid(1440);
            SqlValue::SmallDateTime(SmallDateTime::from_parts(
                u16::try_from(days + SQL_BASE_TO_UNIX_DAYS).ok()?,
                u16::try_from(minutes.rem_euclid(1440)).ok()?,
            )?)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::ssn("char(11) COLLATE Latin1_General_BIN2", SqlType::Char { len: 11, code_page: CodePage::Ascii })]
    #[case::utf8("VARCHAR(20) collate Latin1_General_100_BIN2_UTF8", SqlType::VarChar { max_len: Some(20), code_page: CodePage::Utf8 })]
    #[case::money("money", SqlType::Money)]
    #[case::decimal("decimal(10, 2)", SqlType::Decimal { precision: 10, scale: 2 })]
    #[case::numeric_default("numeric", SqlType::Decimal { precision: 18, scale: 0 })]
    #[case::nvarchar_max("nvarchar(max)", SqlType::NVarChar { max_len: None })]
    #[case::float24("float(24)", SqlType::Real)]
    #[case::time_default("time", SqlType::Time { scale: 7 })]
    #[case::datetime2("datetime2(3)", SqlType::DateTime2 { scale: 3 })]
    #[case::guid("uniqueidentifier", SqlType::UniqueIdentifier)]
    fn parses_type_names(#[case] text: &str, #[case] expected: SqlType) {
        assert_eq!(parse_sql_type(text).unwrap(), expected);
        let again = parse_sql_type(&format_sql_type(&expected)).unwrap();
        assert_eq!(again, expected);
    }

    #[rstest]
    #[case::unknown("geography")]
    #[case::unbalanced("char(11")]
    #[case::too_long("char(9000)")]
    #[case::fixed_max("char(max)")]
    #[case::collated_int("int COLLATE Latin1_General_BIN2")]
    #[case::int_args("int(4)")]
    #[case::scale("decimal(5,6)")]
    fn rejects_bad_type_names(#[case] text: &str) {
        assert!(
            matches!(parse_sql_type(text), Err(Error::InvalidTypeName { .. })),
            "{text}"
        );
    }

    #[test]
    fn money_from_integers_and_decimals() {
        let ints: ArrayRef = Arc::new(Int64Array::from(vec![Some(31692), None]));
        let values = array_to_values(&SqlType::Money, &ints, "Salary").unwrap();
        assert_eq!(values, vec![Some(SqlValue::Money(316_920_000)), None]);

        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(12_345)])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        let values = array_to_values(&SqlType::Money, &decimals, "Salary").unwrap();
        assert_eq!(values, vec![Some(SqlValue::Money(1_234_500))]);

        let back = values_to_array(&SqlType::Money, values).unwrap();
        assert_eq!(back.data_type(), &DataType::Decimal128(19, 4));
        assert_eq!(back.as_primitive::<Decimal128Type>().value(0), 1_234_500);
    }

    #[test]
    fn decimal_digits_that_would_be_lost_are_an_error() {
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![Some(12_345)])
                .with_precision_and_scale(10, 3)
                .unwrap(),
        );
        let ty = SqlType::Decimal {
            precision: 10,
            scale: 2,
        };
        assert!(matches!(
            array_to_values(&ty, &decimals, "d"),
            Err(Error::Value { .. })
        ));
    }

    #[test]
    fn wrong_arrow_type_is_refused() {
        let floats: ArrayRef = Arc::new(Float64Array::from(vec![1.5]));
        assert!(matches!(
            array_to_values(&SqlType::Money, &floats, "Salary"),
            Err(Error::UnsupportedArrowType { .. })
        ));
        let text: ArrayRef = Arc::new(StringArray::from(vec!["x"]));
        assert!(matches!(
            array_to_values(&SqlType::Int, &text, "n"),
            Err(Error::UnsupportedArrowType { .. })
        ));
    }

    #[rstest]
    #[case::datetime2(SqlType::DateTime2 { scale: 6 }, 1_700_000_000_123_456)]
    #[case::datetimeoffset(SqlType::DateTimeOffset { scale: 6 }, 1_700_000_000_123_456)]
    #[case::datetime(SqlType::DateTime, 1_700_000_000_120_000 - 3_333 + 3_333)]
    #[case::smalldatetime(SqlType::SmallDateTime, 1_699_999_980_000_000)]
    #[case::before_1970(SqlType::DateTime2 { scale: 6 }, -1_000_000_000_000)]
    fn timestamps_round_trip(#[case] ty: SqlType, #[case] micros: i64) {
        let tz = matches!(ty, SqlType::DateTimeOffset { .. }).then(|| UTC);
        let array: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![Some(micros)]).with_timezone_opt(tz));
        let values = array_to_values(&ty, &array, "t").unwrap();
        for v in values.iter().flatten() {
            let bytes = v.encode(&ty).unwrap();
            assert_eq!(&SqlValue::decode(&bytes, &ty).unwrap(), v);
        }
        let back = values_to_array(&ty, values).unwrap();
        assert_eq!(back.data_type(), &arrow_type(&ty));
        let got = back.as_primitive::<TimestampMicrosecondType>().value(0);
        // datetime keeps 1/300 s: within 2 µs of the input.
        assert!((got - micros).abs() <= 2, "{got} vs {micros}");
    }

    #[test]
    fn strings_and_char_padding() {
        let ty = SqlType::Char {
            len: 5,
            code_page: CodePage::Ascii,
        };
        let array: ArrayRef = Arc::new(StringArray::from(vec![Some("ab"), None]));
        let values = array_to_values(&ty, &array, "c").unwrap();
        assert_eq!(values[0], Some(SqlValue::String("ab".into())));
        let bytes = values[0].as_ref().unwrap().encode(&ty).unwrap();
        let read = SqlValue::decode(&bytes, &ty).unwrap();
        let back = values_to_array(&ty, vec![Some(read), None]).unwrap();
        assert_eq!(back.as_string::<i32>().value(0), "ab   ");
        assert!(back.is_null(1));
    }

    #[test]
    fn defaults_for_arrow_types() {
        assert_eq!(
            default_sql_type(&DataType::Utf8),
            Some(SqlType::NVarChar { max_len: None })
        );
        assert_eq!(default_sql_type(&DataType::Int32), Some(SqlType::Int));
        assert_eq!(default_sql_type(&DataType::Null), None);
        for ty in [
            SqlType::Bit,
            SqlType::Int,
            SqlType::Money,
            SqlType::Date,
            SqlType::UniqueIdentifier,
        ] {
            assert!(default_sql_type(&arrow_type(&ty)).is_some());
        }
    }
}

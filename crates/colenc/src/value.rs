//! Plaintext serialisation: how a value of each SQL type becomes the bytes that are encrypted.
//!
//! SQL Server never sees these bytes, but every client that writes a column must produce the
//! same ones, or deterministic encryption stops matching and other drivers cannot read the
//! cells. The rules are those of Microsoft's drivers (normalisation rule version 1, as in
//! SqlClient's `SerializeUnencryptedValue` and the JDBC driver's `normalizedValue`):
//!
//! | SQL type | plaintext |
//! | --- | --- |
//! | `bit`, `tinyint`, `smallint`, `int`, `bigint` | 8 bytes, `i64` little-endian (all integers are widened to `bigint`) |
//! | `real` / `float` | 4 bytes `f32` LE / 8 bytes `f64` LE |
//! | `decimal(p,s)`, `numeric(p,s)` | 17 bytes: sign (1 = positive, 0 = negative), then the unscaled magnitude as a 128-bit LE integer |
//! | `money`, `smallmoney` | 8 bytes: the value × 10⁴ as `i64`, high 32 bits first, each half LE (`smallmoney` is widened to `money`) |
//! | `date` | 3 bytes LE: days since 0001-01-01 |
//! | `time(n)` | 5 bytes LE: 100-ns ticks since midnight (truncated to `n` digits, but always in 100-ns units) |
//! | `datetime2(n)` | 5 bytes time as above ‖ 3 bytes date |
//! | `datetimeoffset(n)` | 8 bytes `datetime2` of the UTC instant ‖ offset minutes as `i16` LE |
//! | `datetime` | days since 1900-01-01 `i32` LE ‖ 1/300-s ticks `i32` LE |
//! | `smalldatetime` | days since 1900-01-01 `u16` LE ‖ minutes `u16` LE |
//! | `char`, `varchar` | the string in the column collation's code page (UTF-8 and ASCII supported) |
//! | `nchar`, `nvarchar` | UTF-16LE |
//! | `binary`, `varbinary` | the bytes |
//! | `uniqueidentifier` | 16 bytes in .NET `Guid.ToByteArray` order (first three groups byte-swapped) |
//!
//! Values are encrypted as given: `char(n)` / `nchar(n)` / `binary(n)` values are not padded
//! (the drivers do not pad parameters); decoding pads them to `n` with spaces or zeros, as a
//! fixed-length column reads. `NULL` is never encrypted, so there is no null value here.

use std::fmt;

use crate::Error;
use crate::decimal::{Decimal, MAX_PRECISION};
use crate::temporal::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};

/// How a `char` / `varchar` column's collation encodes text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CodePage {
    /// Code page 65001, the `*_UTF8` collations.
    Utf8,
    /// 7-bit ASCII (code page 20127); also the common subset of every Latin code page.
    Ascii,
}

impl CodePage {
    /// From a Windows code page number; `None` for code pages this crate cannot encode.
    pub fn from_code(code: u16) -> Option<Self> {
        match code {
            65001 => Some(Self::Utf8),
            20127 => Some(Self::Ascii),
            _ => None,
        }
    }
}

/// The SQL type of an encrypted column, with what its serialisation depends on.
///
/// `max_len: None` is `(max)`. Lengths are SQL Server's: bytes for `char`, `varchar`, `binary`
/// and `varbinary`, UTF-16 code units for `nchar` and `nvarchar`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SqlType {
    /// `bit`.
    Bit,
    /// `tinyint` (0..=255).
    TinyInt,
    /// `smallint`.
    SmallInt,
    /// `int`.
    Int,
    /// `bigint`.
    BigInt,
    /// `real` (`float(24)`).
    Real,
    /// `float` (`float(53)`).
    Float,
    /// `decimal(precision, scale)` or `numeric(precision, scale)`.
    Decimal {
        /// Total digits, 1..=38.
        precision: u8,
        /// Digits after the point, 0..=precision.
        scale: u8,
    },
    /// `money`.
    Money,
    /// `smallmoney`.
    SmallMoney,
    /// `date`.
    Date,
    /// `time(scale)`.
    Time {
        /// Fractional-second digits, 0..=7.
        scale: u8,
    },
    /// `datetime2(scale)`.
    DateTime2 {
        /// Fractional-second digits, 0..=7.
        scale: u8,
    },
    /// `datetimeoffset(scale)`.
    DateTimeOffset {
        /// Fractional-second digits, 0..=7.
        scale: u8,
    },
    /// `datetime`.
    DateTime,
    /// `smalldatetime`.
    SmallDateTime,
    /// `char(len)`.
    Char {
        /// Length in bytes, 1..=8000.
        len: u16,
        /// The collation's code page.
        code_page: CodePage,
    },
    /// `varchar(max_len)` or `varchar(max)`.
    VarChar {
        /// Maximum length in bytes, 1..=8000, or `None` for `max`.
        max_len: Option<u16>,
        /// The collation's code page.
        code_page: CodePage,
    },
    /// `nchar(len)`.
    NChar {
        /// Length in UTF-16 code units, 1..=4000.
        len: u16,
    },
    /// `nvarchar(max_len)` or `nvarchar(max)`.
    NVarChar {
        /// Maximum length in UTF-16 code units, 1..=4000, or `None` for `max`.
        max_len: Option<u16>,
    },
    /// `binary(len)`.
    Binary {
        /// Length in bytes, 1..=8000.
        len: u16,
    },
    /// `varbinary(max_len)` or `varbinary(max)`.
    VarBinary {
        /// Maximum length in bytes, 1..=8000, or `None` for `max`.
        max_len: Option<u16>,
    },
    /// `uniqueidentifier`.
    UniqueIdentifier,
}

impl SqlType {
    /// Check the type's parameters against SQL Server's limits.
    pub fn validate(&self) -> Result<(), Error> {
        let reason = match *self {
            Self::Decimal { precision, scale }
                if !(1..=MAX_PRECISION).contains(&precision) || scale > precision =>
            {
                "precision must be 1..=38 and scale 0..=precision"
            }
            Self::Time { scale } | Self::DateTime2 { scale } | Self::DateTimeOffset { scale }
                if scale > 7 =>
            {
                "fractional-second scale must be 0..=7"
            }
            Self::Char { len, .. } | Self::Binary { len } if !(1..=8000).contains(&len) => {
                "length must be 1..=8000"
            }
            Self::VarChar {
                max_len: Some(len), ..
            }
            | Self::VarBinary { max_len: Some(len) }
                if !(1..=8000).contains(&len) =>
            {
                "length must be 1..=8000 or max"
            }
            Self::NChar { len } | Self::NVarChar { max_len: Some(len) }
                if !(1..=4000).contains(&len) =>
            {
                "length must be 1..=4000"
            }
            _ => return Ok(()),
        };
        Err(Error::Encode {
            ty: self.to_string(),
            reason: reason.into(),
        })
    }
}

impl fmt::Display for SqlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn len(max_len: Option<u16>) -> String {
            max_len.map_or_else(|| "max".to_owned(), |n| n.to_string())
        }
        match *self {
            Self::Bit => f.write_str("bit"),
            Self::TinyInt => f.write_str("tinyint"),
            Self::SmallInt => f.write_str("smallint"),
            Self::Int => f.write_str("int"),
            Self::BigInt => f.write_str("bigint"),
            Self::Real => f.write_str("real"),
            Self::Float => f.write_str("float"),
            Self::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            Self::Money => f.write_str("money"),
            Self::SmallMoney => f.write_str("smallmoney"),
            Self::Date => f.write_str("date"),
            Self::Time { scale } => write!(f, "time({scale})"),
            Self::DateTime2 { scale } => write!(f, "datetime2({scale})"),
            Self::DateTimeOffset { scale } => write!(f, "datetimeoffset({scale})"),
            Self::DateTime => f.write_str("datetime"),
            Self::SmallDateTime => f.write_str("smalldatetime"),
            Self::Char { len, .. } => write!(f, "char({len})"),
            Self::VarChar { max_len, .. } => write!(f, "varchar({})", len(max_len)),
            Self::NChar { len } => write!(f, "nchar({len})"),
            Self::NVarChar { max_len } => write!(f, "nvarchar({})", len(max_len)),
            Self::Binary { len } => write!(f, "binary({len})"),
            Self::VarBinary { max_len } => write!(f, "varbinary({})", len(max_len)),
            Self::UniqueIdentifier => f.write_str("uniqueidentifier"),
        }
    }
}

/// A non-null value of an encrypted column.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SqlValue {
    /// `bit`.
    Bit(bool),
    /// `tinyint`.
    TinyInt(u8),
    /// `smallint`.
    SmallInt(i16),
    /// `int`.
    Int(i32),
    /// `bigint`.
    BigInt(i64),
    /// `real`.
    Real(f32),
    /// `float`.
    Float(f64),
    /// `decimal` / `numeric`.
    Decimal(Decimal),
    /// `money`, in ten-thousandths (the value × 10⁴).
    Money(i64),
    /// `smallmoney`, in ten-thousandths (the value × 10⁴).
    SmallMoney(i32),
    /// `date`.
    Date(Date),
    /// `time(n)`.
    Time(Time),
    /// `datetime2(n)`.
    DateTime2(DateTime2),
    /// `datetimeoffset(n)`.
    DateTimeOffset(DateTimeOffset),
    /// `datetime`.
    DateTime(DateTime),
    /// `smalldatetime`.
    SmallDateTime(SmallDateTime),
    /// `char`, `varchar`, `nchar`, `nvarchar`.
    String(String),
    /// `binary`, `varbinary`.
    Binary(Vec<u8>),
    /// `uniqueidentifier`, in the byte order of its text form (RFC 4122, big-endian).
    UniqueIdentifier([u8; 16]),
}

impl SqlValue {
    fn kind(&self) -> &'static str {
        match self {
            Self::Bit(_) => "bit",
            Self::TinyInt(_) => "tinyint",
            Self::SmallInt(_) => "smallint",
            Self::Int(_) => "int",
            Self::BigInt(_) => "bigint",
            Self::Real(_) => "real",
            Self::Float(_) => "float",
            Self::Decimal(_) => "decimal",
            Self::Money(_) => "money",
            Self::SmallMoney(_) => "smallmoney",
            Self::Date(_) => "date",
            Self::Time(_) => "time",
            Self::DateTime2(_) => "datetime2",
            Self::DateTimeOffset(_) => "datetimeoffset",
            Self::DateTime(_) => "datetime",
            Self::SmallDateTime(_) => "smalldatetime",
            Self::String(_) => "string",
            Self::Binary(_) => "binary",
            Self::UniqueIdentifier(_) => "uniqueidentifier",
        }
    }

    fn as_integer(&self) -> Option<i64> {
        match *self {
            Self::TinyInt(v) => Some(i64::from(v)),
            Self::SmallInt(v) => Some(i64::from(v)),
            Self::Int(v) => Some(i64::from(v)),
            Self::BigInt(v) => Some(v),
            _ => None,
        }
    }

    /// Serialise this value for a column of type `ty`.
    ///
    /// Integer values may go into any integer column they fit, `real` into `float`, and
    /// `smallmoney` into `money`; otherwise the value must be of the column's type. Times are
    /// truncated to the column's scale, as SQL Server's drivers do.
    pub fn encode(&self, ty: &SqlType) -> Result<Vec<u8>, Error> {
        ty.validate()?;
        let fail = |reason: String| Error::Encode {
            ty: ty.to_string(),
            reason,
        };
        let mismatch = || {
            fail(format!(
                "a {} value does not go into this column",
                self.kind()
            ))
        };

        Ok(match (ty, self) {
            (SqlType::Bit, Self::Bit(v)) => i64::from(*v).to_le_bytes().to_vec(),
            (SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt, _) => {
                let v = self.as_integer().ok_or_else(mismatch)?;
                let (min, max) = integer_range(ty);
                if !(min..=max).contains(&v) {
                    return Err(fail(format!("out of range {min}..={max}")));
                }
                v.to_le_bytes().to_vec()
            }
            (SqlType::Real, Self::Real(v)) => {
                finite(f64::from(*v), fail).map(|_| v.to_le_bytes().to_vec())?
            }
            (SqlType::Float, Self::Float(v)) => {
                finite(*v, fail).map(|_| v.to_le_bytes().to_vec())?
            }
            (SqlType::Float, Self::Real(v)) => {
                finite(f64::from(*v), fail).map(|_| f64::from(*v).to_le_bytes().to_vec())?
            }
            (&SqlType::Decimal { precision, scale }, Self::Decimal(d)) => {
                if d.scale() > scale {
                    return Err(fail(format!(
                        "value has {} digits after the point, the column {scale}",
                        d.scale()
                    )));
                }
                let d = d
                    .rescale(scale)
                    .filter(|d| d.digits() <= precision)
                    .ok_or_else(|| fail(format!("value has more than {precision} digits")))?;
                let mut out = Vec::with_capacity(17);
                out.push(u8::from(d.unscaled() >= 0));
                out.extend_from_slice(&d.unscaled().unsigned_abs().to_le_bytes());
                out
            }
            (SqlType::Money, Self::Money(v)) => money(*v),
            (SqlType::Money | SqlType::SmallMoney, Self::SmallMoney(v)) => money(i64::from(*v)),
            (SqlType::SmallMoney, Self::Money(v)) => {
                let v =
                    i32::try_from(*v).map_err(|_| fail("out of the smallmoney range".into()))?;
                money(i64::from(v))
            }
            (SqlType::Date, Self::Date(d)) => d.days().to_le_bytes()[..3].to_vec(),
            (&SqlType::Time { scale }, Self::Time(t)) => {
                t.truncate(scale).ticks().to_le_bytes()[..5].to_vec()
            }
            (&SqlType::DateTime2 { scale }, Self::DateTime2(dt)) => datetime2(*dt, scale),
            (&SqlType::DateTimeOffset { scale }, Self::DateTimeOffset(dto)) => {
                let mut out = datetime2(dto.utc(), scale);
                out.extend_from_slice(&dto.offset_minutes().to_le_bytes());
                out
            }
            (SqlType::DateTime, Self::DateTime(dt)) => {
                let mut out = dt.days().to_le_bytes().to_vec();
                out.extend_from_slice(&dt.ticks().to_le_bytes());
                out
            }
            (SqlType::SmallDateTime, Self::SmallDateTime(dt)) => {
                let mut out = dt.days().to_le_bytes().to_vec();
                out.extend_from_slice(&dt.minutes().to_le_bytes());
                out
            }
            (
                &(SqlType::Char { code_page, .. } | SqlType::VarChar { code_page, .. }),
                Self::String(s),
            ) => {
                let bytes = match code_page {
                    CodePage::Utf8 => s.as_bytes().to_vec(),
                    CodePage::Ascii => {
                        if !s.is_ascii() {
                            return Err(fail("value has characters outside ASCII".into()));
                        }
                        s.as_bytes().to_vec()
                    }
                };
                check_len(bytes.len(), max_len(ty), "bytes", fail)?;
                bytes
            }
            (SqlType::NChar { .. } | SqlType::NVarChar { .. }, Self::String(s)) => {
                let units: Vec<u16> = s.encode_utf16().collect();
                check_len(units.len(), max_len(ty), "UTF-16 code units", fail)?;
                units.into_iter().flat_map(u16::to_le_bytes).collect()
            }
            (SqlType::Binary { .. } | SqlType::VarBinary { .. }, Self::Binary(b)) => {
                check_len(b.len(), max_len(ty), "bytes", fail)?;
                b.clone()
            }
            (SqlType::UniqueIdentifier, Self::UniqueIdentifier(g)) => guid_swap(g).to_vec(),
            _ => return Err(mismatch()),
        })
    }

    /// Deserialise the decrypted plaintext of a column of type `ty`.
    pub fn decode(bytes: &[u8], ty: &SqlType) -> Result<Self, Error> {
        ty.validate()?;
        let fail = |reason: String| Error::Decode {
            ty: ty.to_string(),
            reason,
        };
        let exact = |n: usize| -> Result<&[u8], Error> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(fail(format!("needs {n} bytes, has {}", bytes.len())))
            }
        };

        Ok(match *ty {
            SqlType::Bit => Self::Bit(le_i64(exact(8)?) != 0),
            SqlType::TinyInt | SqlType::SmallInt | SqlType::Int | SqlType::BigInt => {
                let v = le_i64(exact(8)?);
                let (min, max) = integer_range(ty);
                if !(min..=max).contains(&v) {
                    return Err(fail(format!("out of range {min}..={max}")));
                }
                // Each cast is checked by the range test above.
                match ty {
                    SqlType::TinyInt => Self::TinyInt(v as u8),
                    SqlType::SmallInt => Self::SmallInt(v as i16),
                    SqlType::Int => Self::Int(v as i32),
                    _ => Self::BigInt(v),
                }
            }
            SqlType::Real | SqlType::Float => {
                let v = match bytes.len() {
                    4 => f64::from(f32::from_le_bytes(array(bytes)?)),
                    8 => f64::from_le_bytes(array(bytes)?),
                    n => return Err(fail(format!("needs 4 or 8 bytes, has {n}"))),
                };
                if *ty == SqlType::Real {
                    Self::Real(v as f32)
                } else {
                    Self::Float(v)
                }
            }
            SqlType::Decimal { precision, scale } => {
                let Some((&sign, magnitude)) = bytes.split_first() else {
                    return Err(fail("empty".into()));
                };
                if magnitude.is_empty() || magnitude.len() > 16 {
                    return Err(fail(format!(
                        "needs a sign and 1..=16 magnitude bytes, has {}",
                        bytes.len()
                    )));
                }
                let mut le = [0u8; 16];
                le[..magnitude.len()].copy_from_slice(magnitude);
                let magnitude = u128::from_le_bytes(le);
                let unscaled = i128::try_from(magnitude).ok();
                let value = match sign {
                    1 => unscaled,
                    0 => unscaled.map(|v| -v),
                    s => return Err(fail(format!("sign byte must be 0 or 1, is {s}"))),
                };
                let d = value
                    .and_then(|v| Decimal::new(v, scale))
                    .filter(|d| d.digits() <= precision)
                    .ok_or_else(|| fail(format!("value has more than {precision} digits")))?;
                Self::Decimal(d)
            }
            SqlType::Money => Self::Money(read_money(exact(8)?)),
            SqlType::SmallMoney => Self::SmallMoney(
                i32::try_from(read_money(exact(8)?))
                    .map_err(|_| fail("out of the smallmoney range".into()))?,
            ),
            SqlType::Date => {
                Self::Date(read_date(exact(3)?).ok_or_else(|| fail("past 9999-12-31".into()))?)
            }
            SqlType::Time { .. } => Self::Time(
                read_time(exact(5)?)
                    .ok_or_else(|| fail("time of day is 24 hours or more".into()))?,
            ),
            SqlType::DateTime2 { .. } => Self::DateTime2(
                read_datetime2(exact(8)?)
                    .ok_or_else(|| fail("date or time out of range".into()))?,
            ),
            SqlType::DateTimeOffset { .. } => {
                let b = exact(10)?;
                let utc = read_datetime2(&b[..8])
                    .ok_or_else(|| fail("date or time out of range".into()))?;
                let offset = i16::from_le_bytes([b[8], b[9]]);
                Self::DateTimeOffset(
                    DateTimeOffset::from_utc(utc, offset)
                        .ok_or_else(|| fail("offset out of range".into()))?,
                )
            }
            SqlType::DateTime => {
                let b = exact(8)?;
                let days = i32::from_le_bytes(array(&b[..4])?);
                let ticks = u32::from_le_bytes(array(&b[4..])?);
                Self::DateTime(
                    DateTime::from_parts(days, ticks)
                        .ok_or_else(|| fail("date or time out of range".into()))?,
                )
            }
            SqlType::SmallDateTime => {
                let b = exact(4)?;
                Self::SmallDateTime(
                    SmallDateTime::from_parts(
                        u16::from_le_bytes([b[0], b[1]]),
                        u16::from_le_bytes([b[2], b[3]]),
                    )
                    .ok_or_else(|| fail("minutes out of range".into()))?,
                )
            }
            SqlType::Char { code_page, .. } | SqlType::VarChar { code_page, .. } => {
                check_len(bytes.len(), max_len(ty), "bytes", fail)?;
                let mut s = String::from_utf8(bytes.to_vec()).map_err(|e| {
                    fail(format!(
                        "not UTF-8 at byte {}",
                        e.utf8_error().valid_up_to()
                    ))
                })?;
                if code_page == CodePage::Ascii && !s.is_ascii() {
                    return Err(fail("has bytes outside ASCII".into()));
                }
                if let SqlType::Char { len, .. } = *ty {
                    let pad = usize::from(len) - s.len();
                    s.extend(std::iter::repeat_n(' ', pad));
                }
                Self::String(s)
            }
            SqlType::NChar { .. } | SqlType::NVarChar { .. } => {
                if !bytes.len().is_multiple_of(2) {
                    return Err(fail(format!("odd length {} for UTF-16", bytes.len())));
                }
                let units: Vec<u16> = bytes
                    .chunks_exact(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                check_len(units.len(), max_len(ty), "UTF-16 code units", fail)?;
                let mut s = String::from_utf16(&units)
                    .map_err(|_| fail("has an unpaired UTF-16 surrogate".into()))?;
                if let SqlType::NChar { len } = *ty {
                    let pad = usize::from(len) - units.len();
                    s.extend(std::iter::repeat_n(' ', pad));
                }
                Self::String(s)
            }
            SqlType::Binary { .. } | SqlType::VarBinary { .. } => {
                check_len(bytes.len(), max_len(ty), "bytes", fail)?;
                let mut b = bytes.to_vec();
                if let SqlType::Binary { len } = *ty {
                    b.resize(usize::from(len), 0);
                }
                Self::Binary(b)
            }
            SqlType::UniqueIdentifier => Self::UniqueIdentifier(guid_swap(&array(exact(16)?)?)),
        })
    }
}

fn integer_range(ty: &SqlType) -> (i64, i64) {
    match ty {
        SqlType::TinyInt => (0, 255),
        SqlType::SmallInt => (i16::MIN.into(), i16::MAX.into()),
        SqlType::Int => (i32::MIN.into(), i32::MAX.into()),
        _ => (i64::MIN, i64::MAX),
    }
}

fn max_len(ty: &SqlType) -> Option<usize> {
    match *ty {
        SqlType::Char { len, .. } | SqlType::NChar { len } | SqlType::Binary { len } => {
            Some(usize::from(len))
        }
        SqlType::VarChar { max_len, .. }
        | SqlType::NVarChar { max_len }
        | SqlType::VarBinary { max_len } => max_len.map(usize::from),
        _ => None,
    }
}

fn check_len(
    len: usize,
    max: Option<usize>,
    unit: &str,
    fail: impl Fn(String) -> Error,
) -> Result<(), Error> {
    match max {
        Some(max) if len > max => Err(fail(format!("{len} {unit}, the column holds {max}"))),
        _ => Ok(()),
    }
}

fn finite(v: f64, fail: impl Fn(String) -> Error) -> Result<(), Error> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(fail("SQL Server has no NaN or infinity".into()))
    }
}

fn money(v: i64) -> Vec<u8> {
    let mut out = ((v >> 32) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(&(v as u32).to_le_bytes());
    out
}

fn read_money(b: &[u8]) -> i64 {
    let high = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let low = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    (i64::from(high) << 32) | i64::from(low)
}

fn datetime2(dt: DateTime2, scale: u8) -> Vec<u8> {
    let mut out = dt.time.truncate(scale).ticks().to_le_bytes()[..5].to_vec();
    out.extend_from_slice(&dt.date.days().to_le_bytes()[..3]);
    out
}

fn read_date(b: &[u8]) -> Option<Date> {
    Date::from_days(u32::from_le_bytes([b[0], b[1], b[2], 0]))
}

fn read_time(b: &[u8]) -> Option<Time> {
    let mut le = [0u8; 8];
    le[..5].copy_from_slice(&b[..5]);
    Time::from_ticks(u64::from_le_bytes(le))
}

fn read_datetime2(b: &[u8]) -> Option<DateTime2> {
    Some(DateTime2::new(read_date(&b[5..8])?, read_time(&b[..5])?))
}

fn le_i64(b: &[u8]) -> i64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&b[..8]);
    i64::from_le_bytes(le)
}

fn array<const N: usize>(b: &[u8]) -> Result<[u8; N], Error> {
    b.try_into()
        .map_err(|_| Error::Internal(format!("slice of {} bytes, expected {N}", b.len())))
}

/// Between RFC 4122 order and .NET `Guid.ToByteArray` order: the first three groups are
/// little-endian in .NET. The swap is its own inverse.
fn guid_swap(g: &[u8; 16]) -> [u8; 16] {
    let mut out = *g;
    out[..4].reverse();
    out[4..6].reverse();
    out[6..8].reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cek, CellCipher, EncryptionType};
    use rstest::rstest;

    fn dec(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn date(y: u16, m: u8, d: u8) -> Date {
        Date::from_ymd(y, m, d).unwrap()
    }

    fn dt2(y: u16, mo: u8, d: u8, h: u8, mi: u8, s: u8, frac: u32) -> DateTime2 {
        DateTime2::new(date(y, mo, d), Time::from_hms(h, mi, s, frac).unwrap())
    }

    const GUID: [u8; 16] = [
        0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64,
        0xff,
    ];

    /// Known serialisations, from the drivers' rules (see the module table).
    #[rstest]
    #[case::bit(SqlType::Bit, SqlValue::Bit(true), "0100000000000000")]
    #[case::tinyint(SqlType::TinyInt, SqlValue::TinyInt(255), "ff00000000000000")]
    #[case::smallint(SqlType::SmallInt, SqlValue::SmallInt(-2), "feffffffffffffff")]
    #[case::int(SqlType::Int, SqlValue::Int(0x0102_0304), "0403020100000000")]
    #[case::bigint(SqlType::BigInt, SqlValue::BigInt(-1), "ffffffffffffffff")]
    #[case::real(SqlType::Real, SqlValue::Real(1.5), "0000c03f")]
    #[case::float(SqlType::Float, SqlValue::Float(-2.0), "00000000000000c0")]
    #[case::decimal(
        SqlType::Decimal { precision: 10, scale: 2 },
        SqlValue::Decimal(dec("-123.45")),
        "0039300000000000000000000000000000"
    )]
    #[case::money(SqlType::Money, SqlValue::Money(-12345), "ffffffffc7cfffff")]
    #[case::smallmoney(SqlType::SmallMoney, SqlValue::SmallMoney(12345), "0000000039300000")]
    #[case::date(SqlType::Date, SqlValue::Date(date(2000, 2, 29)), "42240b")]
    #[case::time(SqlType::Time { scale: 7 }, SqlValue::Time(Time::from_ticks(1).unwrap()), "0100000000")]
    #[case::datetime2(
        SqlType::DateTime2 { scale: 7 },
        SqlValue::DateTime2(dt2(1, 1, 1, 0, 0, 0, 1)),
        "0100000000000000"
    )]
    #[case::datetimeoffset(
        SqlType::DateTimeOffset { scale: 0 },
        SqlValue::DateTimeOffset(DateTimeOffset::from_utc(dt2(1, 1, 2, 0, 0, 0, 0), -60).unwrap()),
        "0000000000010000c4ff"
    )]
    #[case::datetime(
        SqlType::DateTime,
        SqlValue::DateTime(DateTime::from_parts(1, 300).unwrap()),
        "010000002c010000"
    )]
    #[case::smalldatetime(
        SqlType::SmallDateTime,
        SqlValue::SmallDateTime(SmallDateTime::from_parts(2, 61).unwrap()),
        "02003d00"
    )]
    #[case::varchar_utf8(
        SqlType::VarChar { max_len: Some(10), code_page: CodePage::Utf8 },
        SqlValue::String("hé".into()),
        "68c3a9"
    )]
    #[case::nvarchar(SqlType::NVarChar { max_len: None }, SqlValue::String("hé".into()), "6800e900")]
    #[case::varbinary(SqlType::VarBinary { max_len: None }, SqlValue::Binary(vec![1, 2]), "0102")]
    #[case::guid(
        SqlType::UniqueIdentifier,
        SqlValue::UniqueIdentifier(GUID),
        "ff19966f868b11d0b42d00c04fc964ff"
    )]
    fn known_serialisations(#[case] ty: SqlType, #[case] value: SqlValue, #[case] hex: &str) {
        let bytes = value.encode(&ty).unwrap();
        assert_eq!(hex::encode(&bytes), hex);
        assert_eq!(SqlValue::decode(&bytes, &ty).unwrap(), value);
    }

    /// Round trips through encryption, for every type: deterministic cells repeat,
    /// randomized cells differ, and both decrypt to the value.
    #[rstest]
    #[case::bit(SqlType::Bit, SqlValue::Bit(false))]
    #[case::tinyint(SqlType::TinyInt, SqlValue::TinyInt(7))]
    #[case::smallint(SqlType::SmallInt, SqlValue::SmallInt(i16::MIN))]
    #[case::int(SqlType::Int, SqlValue::Int(-123_456))]
    #[case::bigint(SqlType::BigInt, SqlValue::BigInt(i64::MAX))]
    #[case::real(SqlType::Real, SqlValue::Real(3.25))]
    #[case::float(SqlType::Float, SqlValue::Float(std::f64::consts::PI))]
    #[case::decimal(SqlType::Decimal { precision: 38, scale: 4 }, SqlValue::Decimal(dec("-1234567890123456789012345678901234.5678")))]
    #[case::numeric(SqlType::Decimal { precision: 5, scale: 0 }, SqlValue::Decimal(dec("99999")))]
    #[case::money(SqlType::Money, SqlValue::Money(i64::MIN))]
    #[case::smallmoney(SqlType::SmallMoney, SqlValue::SmallMoney(i32::MIN))]
    #[case::date(SqlType::Date, SqlValue::Date(date(9999, 12, 31)))]
    #[case::time(SqlType::Time { scale: 3 }, SqlValue::Time(Time::from_hms(23, 59, 59, 9_990_000).unwrap()))]
    #[case::datetime2(SqlType::DateTime2 { scale: 7 }, SqlValue::DateTime2(dt2(2024, 2, 29, 12, 34, 56, 1_234_567)))]
    #[case::datetimeoffset(SqlType::DateTimeOffset { scale: 7 }, SqlValue::DateTimeOffset(DateTimeOffset::from_utc(dt2(2024, 1, 1, 8, 0, 0, 0), 330).unwrap()))]
    #[case::datetime(SqlType::DateTime, SqlValue::DateTime(DateTime::from_parts(45_000, 12_345).unwrap()))]
    #[case::smalldatetime(SqlType::SmallDateTime, SqlValue::SmallDateTime(SmallDateTime::from_parts(40_000, 1439).unwrap()))]
    #[case::char_full(SqlType::Char { len: 5, code_page: CodePage::Ascii }, SqlValue::String("abcde".into()))]
    #[case::varchar_utf8(SqlType::VarChar { max_len: None, code_page: CodePage::Utf8 }, SqlValue::String("Grüße, 世界".into()))]
    #[case::varchar_empty(SqlType::VarChar { max_len: Some(1), code_page: CodePage::Ascii }, SqlValue::String(String::new()))]
    #[case::nchar_full(SqlType::NChar { len: 10 }, SqlValue::String("12345     ".into()))]
    #[case::nvarchar(SqlType::NVarChar { max_len: Some(20) }, SqlValue::String("emoji 🦀 ok".into()))]
    #[case::binary_full(SqlType::Binary { len: 3 }, SqlValue::Binary(vec![0, 1, 2]))]
    #[case::varbinary(SqlType::VarBinary { max_len: Some(8000) }, SqlValue::Binary(vec![0xaa; 8000]))]
    #[case::guid(SqlType::UniqueIdentifier, SqlValue::UniqueIdentifier(GUID))]
    fn round_trip_every_type(#[case] ty: SqlType, #[case] value: SqlValue) {
        let cipher = CellCipher::new(&Cek::generate().unwrap());
        let det_a = cipher
            .encrypt_value(&value, &ty, EncryptionType::Deterministic)
            .unwrap();
        let det_b = cipher
            .encrypt_value(&value, &ty, EncryptionType::Deterministic)
            .unwrap();
        assert_eq!(det_a, det_b, "deterministic cells must repeat");
        let rnd_a = cipher
            .encrypt_value(&value, &ty, EncryptionType::Randomized)
            .unwrap();
        let rnd_b = cipher
            .encrypt_value(&value, &ty, EncryptionType::Randomized)
            .unwrap();
        assert_ne!(rnd_a, rnd_b, "randomized cells must differ");
        assert_ne!(rnd_a, det_a);
        for cell in [&det_a, &rnd_a, &rnd_b] {
            assert_eq!(cipher.decrypt_value(cell, &ty).unwrap(), value);
        }
    }

    #[rstest]
    #[case::char(SqlType::Char { len: 4, code_page: CodePage::Utf8 }, SqlValue::String("ab".into()), SqlValue::String("ab  ".into()))]
    #[case::nchar(SqlType::NChar { len: 3 }, SqlValue::String("x".into()), SqlValue::String("x  ".into()))]
    #[case::binary(SqlType::Binary { len: 4 }, SqlValue::Binary(vec![9]), SqlValue::Binary(vec![9, 0, 0, 0]))]
    fn fixed_length_types_are_padded_on_decode_only(
        #[case] ty: SqlType,
        #[case] value: SqlValue,
        #[case] read: SqlValue,
    ) {
        let bytes = value.encode(&ty).unwrap();
        assert_eq!(SqlValue::decode(&bytes, &ty).unwrap(), read);
        // Padding is not part of the plaintext: SqlClient sends the value as given.
        assert_eq!(
            read.encode(&ty).unwrap().len(),
            match ty {
                SqlType::NChar { len } => 2 * usize::from(len),
                SqlType::Char { len, .. } | SqlType::Binary { len } => usize::from(len),
                _ => unreachable!(),
            }
        );
    }

    #[test]
    fn integers_widen_and_time_truncates_like_the_drivers() {
        // An int value in a bigint column serialises exactly like the bigint.
        let ty = SqlType::BigInt;
        assert_eq!(
            SqlValue::Int(5).encode(&ty).unwrap(),
            SqlValue::BigInt(5).encode(&ty).unwrap()
        );
        // A datetime2(2) column keeps two digits, still counted in 100-ns ticks.
        let ty = SqlType::DateTime2 { scale: 2 };
        let v = SqlValue::DateTime2(dt2(2024, 1, 1, 0, 0, 0, 1_234_567));
        let back = SqlValue::decode(&v.encode(&ty).unwrap(), &ty).unwrap();
        assert_eq!(
            back,
            SqlValue::DateTime2(dt2(2024, 1, 1, 0, 0, 0, 1_200_000))
        );
        // Decimal scales up to the column's scale.
        let ty = SqlType::Decimal {
            precision: 6,
            scale: 3,
        };
        let back =
            SqlValue::decode(&SqlValue::Decimal(dec("1.5")).encode(&ty).unwrap(), &ty).unwrap();
        assert_eq!(back, SqlValue::Decimal(dec("1.500")));
    }

    #[rstest]
    #[case::tinyint_negative(SqlType::TinyInt, SqlValue::Int(-1))]
    #[case::smallint_overflow(SqlType::SmallInt, SqlValue::Int(40_000))]
    #[case::int_overflow(SqlType::Int, SqlValue::BigInt(1 << 40))]
    #[case::wrong_family(SqlType::Int, SqlValue::String("1".into()))]
    #[case::float_into_real(SqlType::Real, SqlValue::Float(1.0))]
    #[case::nan(SqlType::Float, SqlValue::Float(f64::NAN))]
    #[case::infinite(SqlType::Real, SqlValue::Real(f32::INFINITY))]
    #[case::decimal_precision(SqlType::Decimal { precision: 4, scale: 2 }, SqlValue::Decimal(dec("123.45")))]
    #[case::decimal_scale(SqlType::Decimal { precision: 10, scale: 1 }, SqlValue::Decimal(dec("1.25")))]
    #[case::bad_decimal_type(SqlType::Decimal { precision: 39, scale: 0 }, SqlValue::Decimal(dec("1")))]
    #[case::smallmoney_overflow(SqlType::SmallMoney, SqlValue::Money(1 << 40))]
    #[case::bad_time_scale(SqlType::Time { scale: 8 }, SqlValue::Time(Time::MIDNIGHT))]
    #[case::varchar_too_long(SqlType::VarChar { max_len: Some(3), code_page: CodePage::Utf8 }, SqlValue::String("éé".into()))]
    #[case::ascii_only(SqlType::VarChar { max_len: None, code_page: CodePage::Ascii }, SqlValue::String("é".into()))]
    #[case::nchar_too_long(SqlType::NChar { len: 1 }, SqlValue::String("🦀".into()))]
    #[case::binary_too_long(SqlType::Binary { len: 1 }, SqlValue::Binary(vec![1, 2]))]
    #[case::zero_length_type(SqlType::VarBinary { max_len: Some(0) }, SqlValue::Binary(vec![]))]
    fn values_that_do_not_fit_are_refused(#[case] ty: SqlType, #[case] value: SqlValue) {
        assert!(matches!(value.encode(&ty), Err(Error::Encode { .. })));
    }

    #[rstest]
    #[case::int_short(SqlType::Int, "01000000")]
    #[case::int_out_of_range(SqlType::Int, "0000000001000000")]
    #[case::tinyint_negative(SqlType::TinyInt, "ffffffffffffffff")]
    #[case::float_odd(SqlType::Float, "000000")]
    #[case::decimal_empty(SqlType::Decimal { precision: 5, scale: 0 }, "")]
    #[case::decimal_sign(SqlType::Decimal { precision: 5, scale: 0 }, "0201")]
    #[case::decimal_digits(SqlType::Decimal { precision: 2, scale: 0 }, "0164")]
    #[case::decimal_long(SqlType::Decimal { precision: 38, scale: 0 }, "01000000000000000000000000000000000000")]
    #[case::decimal_huge(SqlType::Decimal { precision: 38, scale: 0 }, "01ffffffffffffffffffffffffffffffff")]
    #[case::smallmoney_range(SqlType::SmallMoney, "0100000000000000")]
    #[case::date_past_9999(SqlType::Date, "ffffff")]
    #[case::time_24h(SqlType::Time { scale: 7 }, "00c0692ac9")]
    #[case::datetime2_short(SqlType::DateTime2 { scale: 7 }, "00000000000000")]
    #[case::dto_offset(SqlType::DateTimeOffset { scale: 7 }, "00000000000100007f7f")]
    #[case::datetime_ticks(SqlType::DateTime, "00000000ffffffff")]
    #[case::smalldatetime_minutes(SqlType::SmallDateTime, "0000a005")]
    #[case::varchar_not_utf8(SqlType::VarChar { max_len: None, code_page: CodePage::Utf8 }, "ff")]
    #[case::varchar_not_ascii(SqlType::VarChar { max_len: None, code_page: CodePage::Ascii }, "c3a9")]
    #[case::varchar_too_long(SqlType::VarChar { max_len: Some(1), code_page: CodePage::Utf8 }, "6161")]
    #[case::nvarchar_odd(SqlType::NVarChar { max_len: None }, "61")]
    #[case::nvarchar_surrogate(SqlType::NVarChar { max_len: None }, "00d8")]
    #[case::guid_short(SqlType::UniqueIdentifier, "00")]
    fn malformed_plaintexts_are_decode_errors(#[case] ty: SqlType, #[case] hex: &str) {
        let bytes = hex::decode(hex).unwrap();
        let err = SqlValue::decode(&bytes, &ty).unwrap_err();
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    }

    #[test]
    fn decode_accepts_the_jdbc_decimal_and_float_forms() {
        // The JDBC driver writes decimals as 16 bytes and real as 8.
        let ty = SqlType::Decimal {
            precision: 5,
            scale: 2,
        };
        let jdbc = hex::decode("01393000000000000000000000000000").unwrap();
        assert_eq!(
            SqlValue::decode(&jdbc, &ty).unwrap(),
            SqlValue::Decimal(dec("123.45"))
        );
        let real_as_double = 1.5f64.to_le_bytes();
        assert_eq!(
            SqlValue::decode(&real_as_double, &SqlType::Real).unwrap(),
            SqlValue::Real(1.5)
        );
        let float_as_single = 1.5f32.to_le_bytes();
        assert_eq!(
            SqlValue::decode(&float_as_single, &SqlType::Float).unwrap(),
            SqlValue::Float(1.5)
        );
    }

    #[test]
    fn type_names_are_sql_servers() {
        assert_eq!(
            SqlType::Decimal {
                precision: 10,
                scale: 2
            }
            .to_string(),
            "decimal(10,2)"
        );
        assert_eq!(
            SqlType::NVarChar { max_len: None }.to_string(),
            "nvarchar(max)"
        );
        assert_eq!(SqlType::DateTime2 { scale: 3 }.to_string(), "datetime2(3)");
        assert_eq!(CodePage::from_code(65001), Some(CodePage::Utf8));
        assert_eq!(CodePage::from_code(1252), None);
    }

    #[test]
    fn errors_never_show_the_value() {
        let secret = "TOP-SECRET-VALUE";
        let err = SqlValue::String(secret.into())
            .encode(&SqlType::VarChar {
                max_len: Some(3),
                code_page: CodePage::Utf8,
            })
            .unwrap_err();
        assert!(!err.to_string().contains(secret), "{err}");
        let err = SqlValue::decode(secret.as_bytes(), &SqlType::NChar { len: 2 }).unwrap_err();
        assert!(!err.to_string().contains("TOP"), "{err}");
    }
}

//! `decimal(p, s)` / `numeric(p, s)` values.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// The largest precision SQL Server allows.
pub const MAX_PRECISION: u8 = 38;

/// 10^38, one past the largest magnitude of a `decimal(38, s)`.
const LIMIT: u128 = 10u128.pow(MAX_PRECISION as u32);

/// An exact decimal number: `unscaled × 10^-scale`, with at most 38 digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    unscaled: i128,
    scale: u8,
}

impl Decimal {
    /// `unscaled × 10^-scale`; `None` for more than 38 digits or a scale above 38.
    pub fn new(unscaled: i128, scale: u8) -> Option<Self> {
        (scale <= MAX_PRECISION && unscaled.unsigned_abs() < LIMIT)
            .then_some(Self { unscaled, scale })
    }

    /// The integer that the value is `× 10^-scale` of.
    pub fn unscaled(self) -> i128 {
        self.unscaled
    }

    /// Digits after the decimal point.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// The same value with `scale` digits after the point; `None` if digits would be lost or
    /// the result needs more than 38 digits.
    pub fn rescale(self, scale: u8) -> Option<Self> {
        if scale < self.scale {
            let factor = 10i128.checked_pow(u32::from(self.scale - scale))?;
            if self.unscaled % factor != 0 {
                return None;
            }
            Self::new(self.unscaled / factor, scale)
        } else {
            let factor = 10i128.checked_pow(u32::from(scale - self.scale))?;
            Self::new(self.unscaled.checked_mul(factor)?, scale)
        }
    }

    /// Number of significant digits of the unscaled value (at least 1).
    pub fn digits(self) -> u8 {
        let mut magnitude = self.unscaled.unsigned_abs();
        let mut digits = 1;
        while magnitude >= 10 {
            magnitude /= 10;
            digits += 1;
        }
        digits
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let digits = self.unscaled.unsigned_abs().to_string();
        let scale = usize::from(self.scale);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

impl FromStr for Decimal {
    type Err = Error;

    /// Parses `[-+]digits[.digits]`; the scale is the number of digits after the point.
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |reason: &str| Error::malformed("decimal literal", reason);
        let (negative, body) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if int.is_empty() && frac.is_empty() {
            return Err(bad("no digits"));
        }
        if !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) {
            return Err(bad("only digits, one '.' and a leading sign are allowed"));
        }
        let scale = u8::try_from(frac.len())
            .ok()
            .filter(|s| *s <= MAX_PRECISION)
            .ok_or_else(|| bad("more than 38 digits after the point"))?;
        let mut unscaled: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            unscaled = unscaled
                .checked_mul(10)
                .and_then(|v| v.checked_add(i128::from(b - b'0')))
                .filter(|v| v.unsigned_abs() < LIMIT)
                .ok_or_else(|| bad("more than 38 digits"))?;
        }
        if negative {
            unscaled = -unscaled;
        }
        Self::new(unscaled, scale).ok_or_else(|| bad("more than 38 digits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::integer("42", 42, 0)]
    #[case::fraction("123.45", 12345, 2)]
    #[case::negative("-0.001", -1, 3)]
    #[case::leading_point(".5", 5, 1)]
    #[case::max("99999999999999999999999999999999999999", 10i128.pow(38) - 1, 0)]
    fn parse_and_show(#[case] text: &str, #[case] unscaled: i128, #[case] scale: u8) {
        let d: Decimal = text.parse().unwrap();
        assert_eq!((d.unscaled(), d.scale()), (unscaled, scale));
        let shown = d.to_string();
        let canonical = if text.starts_with('.') {
            format!("0{text}")
        } else {
            text.to_owned()
        };
        assert_eq!(shown, canonical.replace("-.", "-0."));
    }

    #[rstest]
    #[case::empty("")]
    #[case::sign_only("-")]
    #[case::letters("1e5")]
    #[case::two_points("1.2.3")]
    #[case::too_long("100000000000000000000000000000000000000")]
    fn bad_literals(#[case] text: &str) {
        assert!(matches!(
            text.parse::<Decimal>(),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn rescale_never_loses_digits() {
        let d: Decimal = "1.50".parse().unwrap();
        assert_eq!(d.rescale(4).unwrap().to_string(), "1.5000");
        assert_eq!(d.rescale(1).unwrap().to_string(), "1.5");
        assert_eq!("1.55".parse::<Decimal>().unwrap().rescale(1), None);
        assert_eq!(Decimal::new(10i128.pow(37), 0).unwrap().rescale(1), None);
        assert_eq!(d.digits(), 3);
    }
}

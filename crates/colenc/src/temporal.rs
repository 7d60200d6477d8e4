//! SQL Server's date and time types, as the counts SQL Server serialises.
//!
//! No calendar library: each type is a validated count (days since 0001-01-01, 100-ns ticks
//! since midnight, …) with conversions to civil dates and Unix time, which is what both the SQL
//! Server wire format and Arrow's `Date32` / `Timestamp` need.

use std::fmt;

/// Days from 0001-01-01 to 1970-01-01.
const UNIX_EPOCH_DAYS: i64 = 719_162;
/// Days from 0001-01-01 to 1900-01-01, the base of `datetime` and `smalldatetime`.
const SQL_BASE_DAYS: i64 = 693_595;
/// 100-ns ticks in a day.
pub(crate) const TICKS_PER_DAY: u64 = 864_000_000_000;
/// 100-ns ticks in a second.
const TICKS_PER_SECOND: u64 = 10_000_000;

/// A `date`: days since 0001-01-01 in the proleptic Gregorian calendar, up to 9999-12-31.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(u32);

impl Date {
    /// 0001-01-01.
    pub const MIN: Date = Date(0);
    /// 9999-12-31.
    pub const MAX: Date = Date(3_652_058);

    /// From days since 0001-01-01; `None` past 9999-12-31.
    pub fn from_days(days: u32) -> Option<Self> {
        (days <= Self::MAX.0).then_some(Self(days))
    }

    /// From a civil date; `None` if it does not exist or lies outside 0001-01-01..=9999-12-31.
    pub fn from_ymd(year: u16, month: u8, day: u8) -> Option<Self> {
        if !(1..=9999).contains(&year)
            || !(1..=12).contains(&month)
            || day == 0
            || day > days_in_month(year, month)
        {
            return None;
        }
        let days = days_from_civil(i64::from(year), i64::from(month), i64::from(day));
        u32::try_from(days + UNIX_EPOCH_DAYS)
            .ok()
            .and_then(Self::from_days)
    }

    /// From days since 1970-01-01 (Arrow's `Date32`).
    pub fn from_unix_days(days: i64) -> Option<Self> {
        u32::try_from(days.checked_add(UNIX_EPOCH_DAYS)?)
            .ok()
            .and_then(Self::from_days)
    }

    /// Days since 0001-01-01.
    pub fn days(self) -> u32 {
        self.0
    }

    /// Days since 1970-01-01 (negative before).
    pub fn unix_days(self) -> i64 {
        i64::from(self.0) - UNIX_EPOCH_DAYS
    }

    /// Year, month, day.
    pub fn ymd(self) -> (u16, u8, u8) {
        let (y, m, d) = civil_from_days(self.unix_days());
        // In range by construction: 1 <= y <= 9999, 1 <= m <= 12, 1 <= d <= 31.
        (y as u16, m as u8, d as u8)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// A `time(n)`: 100-ns ticks since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// Midnight.
    pub const MIDNIGHT: Time = Time(0);

    /// From 100-ns ticks since midnight; `None` for a day or more.
    pub fn from_ticks(ticks: u64) -> Option<Self> {
        (ticks < TICKS_PER_DAY).then_some(Self(ticks))
    }

    /// From hours, minutes, seconds and 100-ns ticks within the second.
    pub fn from_hms(hour: u8, minute: u8, second: u8, fraction_ticks: u32) -> Option<Self> {
        if hour > 23 || minute > 59 || second > 59 || u64::from(fraction_ticks) >= TICKS_PER_SECOND
        {
            return None;
        }
        let seconds = u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second);
        Self::from_ticks(seconds * TICKS_PER_SECOND + u64::from(fraction_ticks))
    }

    /// 100-ns ticks since midnight.
    pub fn ticks(self) -> u64 {
        self.0
    }

    /// This time truncated to `scale` fractional digits (0..=7), as SQL Server normalises it.
    pub fn truncate(self, scale: u8) -> Self {
        let unit = 10u64.pow(u32::from(7u8.saturating_sub(scale)));
        Self(self.0 / unit * unit)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / TICKS_PER_SECOND;
        let frac = self.0 % TICKS_PER_SECOND;
        write!(
            f,
            "{:02}:{:02}:{:02}.{frac:07}",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

/// A `datetime2(n)`: a date and a time of day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime2 {
    /// The date.
    pub date: Date,
    /// The time of day.
    pub time: Time,
}

impl DateTime2 {
    /// A date and a time of day.
    pub fn new(date: Date, time: Time) -> Self {
        Self { date, time }
    }

    /// From microseconds since 1970-01-01T00:00 (Arrow's `Timestamp(Microsecond)`).
    pub fn from_unix_micros(micros: i64) -> Option<Self> {
        let micros_per_day = (TICKS_PER_DAY / 10) as i64;
        let date = Date::from_unix_days(micros.div_euclid(micros_per_day))?;
        let time = Time::from_ticks(micros.rem_euclid(micros_per_day) as u64 * 10)?;
        Some(Self { date, time })
    }

    /// Microseconds since 1970-01-01T00:00, sub-microsecond ticks truncated.
    pub fn unix_micros(self) -> i64 {
        self.date.unix_days() * (TICKS_PER_DAY / 10) as i64 + (self.time.ticks() / 10) as i64
    }

    /// 100-ns ticks since 0001-01-01T00:00.
    fn ticks_since_ce(self) -> u64 {
        u64::from(self.date.days()) * TICKS_PER_DAY + self.time.ticks()
    }

    fn from_ticks_since_ce(ticks: u64) -> Option<Self> {
        let date = Date::from_days(u32::try_from(ticks / TICKS_PER_DAY).ok()?)?;
        let time = Time::from_ticks(ticks % TICKS_PER_DAY)?;
        Some(Self { date, time })
    }
}

impl fmt::Display for DateTime2 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.date, self.time)
    }
}

/// A `datetimeoffset(n)`: a UTC instant and the offset of the local time that was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DateTimeOffset {
    utc: DateTime2,
    offset_minutes: i16,
}

impl DateTimeOffset {
    /// From the UTC date and time and an offset in minutes (−14:00..=+14:00); `None` if the
    /// offset is out of range or the local time would fall outside 0001..=9999.
    pub fn from_utc(utc: DateTime2, offset_minutes: i16) -> Option<Self> {
        if !(-840..=840).contains(&offset_minutes) {
            return None;
        }
        let value = Self {
            utc,
            offset_minutes,
        };
        value.local_ticks().map(|_| value)
    }

    /// The instant in UTC.
    pub fn utc(self) -> DateTime2 {
        self.utc
    }

    /// The offset from UTC in minutes.
    pub fn offset_minutes(self) -> i16 {
        self.offset_minutes
    }

    /// The local date and time (UTC plus the offset).
    pub fn local(self) -> DateTime2 {
        self.local_ticks()
            .and_then(DateTime2::from_ticks_since_ce)
            // Checked in the constructor; UTC is the only sane fallback.
            .unwrap_or(self.utc)
    }

    fn local_ticks(self) -> Option<u64> {
        let shift = i64::from(self.offset_minutes) * 60 * TICKS_PER_SECOND as i64;
        let ticks = (self.utc.ticks_since_ce() as i64).checked_add(shift)?;
        let ticks = u64::try_from(ticks).ok()?;
        DateTime2::from_ticks_since_ce(ticks).map(|_| ticks)
    }
}

impl fmt::Display for DateTimeOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let abs = self.offset_minutes.unsigned_abs();
        write!(f, "{} {sign}{:02}:{:02}", self.local(), abs / 60, abs % 60)
    }
}

/// A legacy `datetime`: days since 1900-01-01 and 1/300-second ticks since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    days: i32,
    ticks: u32,
}

impl DateTime {
    /// 1/300-second ticks in a day.
    pub const TICKS_PER_DAY: u32 = 25_920_000;

    /// From days since 1900-01-01 (1753-01-01..=9999-12-31) and 1/300-second ticks.
    pub fn from_parts(days: i32, ticks: u32) -> Option<Self> {
        let date = i64::from(days) + SQL_BASE_DAYS;
        let min = i64::from(Date::from_ymd(1753, 1, 1)?.days());
        if date < min || date > i64::from(Date::MAX.days()) || ticks >= Self::TICKS_PER_DAY {
            return None;
        }
        Some(Self { days, ticks })
    }

    /// Days since 1900-01-01.
    pub fn days(self) -> i32 {
        self.days
    }

    /// 1/300-second ticks since midnight.
    pub fn ticks(self) -> u32 {
        self.ticks
    }

    /// The date.
    pub fn date(self) -> Date {
        // In range by construction.
        Date::from_days((i64::from(self.days) + SQL_BASE_DAYS) as u32).unwrap_or(Date::MIN)
    }
}

impl fmt::Display for DateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SQL Server shows milliseconds rounded from the 1/300 s ticks.
        let ms = (u64::from(self.ticks) * 10 + 1) / 3;
        let secs = ms / 1000;
        write!(
            f,
            "{} {:02}:{:02}:{:02}.{:03}",
            self.date(),
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            ms % 1000
        )
    }
}

/// A `smalldatetime`: days since 1900-01-01 and minutes since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SmallDateTime {
    days: u16,
    minutes: u16,
}

impl SmallDateTime {
    /// From days since 1900-01-01 and minutes since midnight.
    pub fn from_parts(days: u16, minutes: u16) -> Option<Self> {
        (minutes < 1440).then_some(Self { days, minutes })
    }

    /// Days since 1900-01-01.
    pub fn days(self) -> u16 {
        self.days
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u16 {
        self.minutes
    }
}

impl fmt::Display for SmallDateTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always in range: 1900-01-01 + 65535 days is 2079-06-06.
        let date =
            Date::from_days((i64::from(self.days) + SQL_BASE_DAYS) as u32).unwrap_or(Date::MIN);
        write!(
            f,
            "{date} {:02}:{:02}",
            self.minutes / 60,
            self.minutes % 60
        )
    }
}

fn is_leap(year: u16) -> bool {
    (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400)
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date of days since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::first_day(1, 1, 1, 0)]
    #[case::unix_epoch(1970, 1, 1, 719_162)]
    #[case::sql_base(1900, 1, 1, 693_595)]
    #[case::leap_day(2000, 2, 29, 730_178)]
    #[case::last_day(9999, 12, 31, 3_652_058)]
    fn civil_dates_and_day_counts_agree(
        #[case] y: u16,
        #[case] m: u8,
        #[case] d: u8,
        #[case] days: u32,
    ) {
        let date = Date::from_ymd(y, m, d).unwrap();
        assert_eq!(date.days(), days);
        assert_eq!(date.ymd(), (y, m, d));
        assert_eq!(Date::from_days(days), Some(date));
    }

    #[rstest]
    #[case::year_zero(0, 1, 1)]
    #[case::year_10000(10000, 1, 1)]
    #[case::month_13(2024, 13, 1)]
    #[case::day_zero(2024, 1, 0)]
    #[case::not_leap(1900, 2, 29)]
    #[case::april_31(2024, 4, 31)]
    fn impossible_dates_are_refused(#[case] y: u16, #[case] m: u8, #[case] d: u8) {
        assert_eq!(Date::from_ymd(y, m, d), None);
    }

    #[test]
    fn every_day_round_trips_through_civil_form() {
        for days in (0..=Date::MAX.days()).step_by(97).chain([Date::MAX.days()]) {
            let date = Date::from_days(days).unwrap();
            let (y, m, d) = date.ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(date), "{days}");
        }
        assert_eq!(Date::from_days(Date::MAX.days() + 1), None);
    }

    #[test]
    fn unix_conversions() {
        let date = Date::from_ymd(2024, 2, 29).unwrap();
        assert_eq!(date.unix_days(), 19_782);
        assert_eq!(Date::from_unix_days(19_782), Some(date));
        let dt = DateTime2::new(date, Time::from_hms(12, 34, 56, 1_234_567).unwrap());
        let micros = dt.unix_micros();
        assert_eq!(micros, 1_709_210_096_123_456);
        assert_eq!(
            DateTime2::from_unix_micros(micros),
            Some(DateTime2::new(
                date,
                Time::from_hms(12, 34, 56, 1_234_560).unwrap()
            ))
        );
        assert_eq!(
            DateTime2::from_unix_micros(-1).unwrap().to_string(),
            "1969-12-31 23:59:59.9999990"
        );
    }

    #[rstest]
    #[case::scale0(0, "12:34:56.0000000")]
    #[case::scale3(3, "12:34:56.1230000")]
    #[case::scale7(7, "12:34:56.1234567")]
    fn time_truncates_to_scale(#[case] scale: u8, #[case] shown: &str) {
        let time = Time::from_hms(12, 34, 56, 1_234_567).unwrap();
        assert_eq!(time.truncate(scale).to_string(), shown);
    }

    #[test]
    fn datetimeoffset_shows_local_time() {
        let utc = DateTime2::new(
            Date::from_ymd(2024, 1, 1).unwrap(),
            Time::from_hms(23, 30, 0, 0).unwrap(),
        );
        let value = DateTimeOffset::from_utc(utc, 90).unwrap();
        assert_eq!(value.to_string(), "2024-01-02 01:00:00.0000000 +01:30");
        let value = DateTimeOffset::from_utc(utc, -600).unwrap();
        assert_eq!(value.to_string(), "2024-01-01 13:30:00.0000000 -10:00");
        assert_eq!(DateTimeOffset::from_utc(utc, 841), None);
        let first = DateTime2::new(Date::MIN, Time::MIDNIGHT);
        assert_eq!(DateTimeOffset::from_utc(first, -1), None);
    }

    #[test]
    fn legacy_datetimes() {
        let dt = DateTime::from_parts(0, 300 * 3600 + 1).unwrap();
        assert_eq!(dt.to_string(), "1900-01-01 01:00:00.003");
        assert_eq!(DateTime::from_parts(-53_691, 0), None);
        assert!(DateTime::from_parts(-53_690, 0).is_some());
        assert_eq!(DateTime::from_parts(0, DateTime::TICKS_PER_DAY), None);
        let sdt = SmallDateTime::from_parts(65_535, 1439).unwrap();
        assert_eq!(sdt.to_string(), "2079-06-06 23:59");
        assert_eq!(SmallDateTime::from_parts(0, 1440), None);
    }
}

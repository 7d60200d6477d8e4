//! The trip model: how one batch of trips is drawn, column by column.
//!
//! A batch is generated in passes over whole columns (times, then zones, then distances, …),
//! each a tight loop over plain vectors, and the Arrow arrays are built from those vectors
//! without copying. Each batch has its own random stream, ChaCha8 keyed by the seed with the
//! stream number `(file << 32) | batch`, so a batch's content depends only on
//! `(seed, file, batch)` and never on which thread made it or in which order.
//!
//! All money is computed in integer cents and converted once, so `total_amount` is exactly the
//! sum of its parts rounded to cents, as on a real receipt.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Float64Array, Int32Array, Int64Array, LargeStringArray, RecordBatch,
    TimestampMicrosecondArray,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer, ScalarBuffer};
use arrow::datatypes::SchemaRef;
use rand::rngs::ChaCha8Rng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use time::Date;

use super::alias::AliasTable;
use super::zones::{
    Borough, JFK_AIRPORT, LAGUARDIA_AIRPORT, NEWARK_AIRPORT, ZONE_COUNT, ZoneTable,
};
use crate::error::{Error, Result};

/// Relative trips per hour of day on weekdays: a night lull, a morning rise and the evening
/// rush peaking at 18:00 (shape of the TLC's yellow-taxi data).
const WEEKDAY_HOURS: [f64; 24] = [
    2.2, 1.3, 0.8, 0.5, 0.45, 0.6, 1.5, 2.9, 3.9, 4.2, 4.4, 4.7, 5.0, 5.1, 5.6, 5.8, 5.9, 6.6, 6.9,
    6.1, 5.3, 5.2, 4.7, 3.6,
];
/// Relative trips per hour on Saturdays and Sundays: busy small hours (the night before), no
/// morning rush.
const WEEKEND_HOURS: [f64; 24] = [
    4.5, 3.6, 2.6, 1.8, 1.1, 0.6, 0.6, 0.9, 1.6, 2.6, 3.7, 4.6, 5.3, 5.5, 5.6, 5.6, 5.6, 5.9, 6.1,
    5.8, 5.2, 5.0, 5.0, 4.7,
];
/// Relative trips per day, Monday first.
const DAY_WEIGHTS: [f64; 7] = [0.88, 0.97, 1.02, 1.07, 1.06, 1.0, 0.85];
/// Typical weekday street speed in mph per hour of day (weekends are 15% faster).
const SPEED_MPH: [f64; 24] = [
    15.0, 16.0, 17.0, 17.0, 16.0, 14.0, 12.0, 9.5, 8.5, 8.5, 9.0, 9.0, 9.0, 9.0, 8.5, 8.0, 7.5,
    7.5, 8.0, 9.0, 10.0, 11.0, 12.0, 13.5,
];

/// Share of trips whose driver-entered fields are missing: `passenger_count`, `RatecodeID`,
/// `store_and_fwd_flag`, `congestion_surcharge` and `Airport_fee` are null together and
/// `payment_type` is 0, as in the real 2024–2025 files.
const NULL_ROW_RATE: f64 = 0.045;
/// Share of trips with a zero distance (meter glitches, cancelled trips).
const ZERO_DISTANCE_RATE: f64 = 0.012;
/// The MTA Congestion Relief Zone toll started on 2025-01-05.
const CBD_FEE_START: (i32, time::Month, u8) = (2025, time::Month::January, 5);

/// Coarse zone classes for the fare rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Manhattan,
    Brooklyn,
    Queens,
    Bronx,
    StatenIsland,
    Jfk,
    Lga,
    Ewr,
    Unknown,
}

/// Everything fixed for one generation run, shared by all threads.
pub(crate) struct Model {
    schema: SchemaRef,
    class: Vec<Class>,
    yellow: Vec<bool>,
    cbd: Vec<bool>,
    /// Road distance in miles between zone centres, `[pu * 265 + do]`.
    road: Vec<f64>,
    pickup: AliasTable,
    /// Drop-off zone given the pickup zone.
    dropoff: Vec<AliasTable>,
    /// Cumulative share of trips by hour slot of the period (`slot = day * 24 + hour`):
    /// `slot_cdf[s]` trips start before slot `s`; `slot_cdf[last] == 1`.
    slot_cdf: Vec<f64>,
    /// Trips in the whole data set.
    total_rows: u64,
    start_us: i64,
    first_weekday: u32,
    cbd_from_slot: u32,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("start_us", &self.start_us)
            .finish_non_exhaustive()
    }
}

/// Microseconds since the Unix epoch at midnight of `date`.
pub(crate) fn epoch_micros(date: Date) -> i64 {
    const UNIX_EPOCH_JULIAN_DAY: i64 = 2_440_588;
    (i64::from(date.to_julian_day()) - UNIX_EPOCH_JULIAN_DAY) * 86_400 * 1_000_000
}

impl Model {
    pub(crate) fn new(
        schema: SchemaRef,
        start_date: Date,
        days: u32,
        total_rows: u64,
    ) -> Result<Self> {
        let table = ZoneTable::build();
        let class: Vec<Class> = table
            .zones
            .iter()
            .map(|z| match (z.location_id, z.borough) {
                (JFK_AIRPORT, _) => Class::Jfk,
                (LAGUARDIA_AIRPORT, _) => Class::Lga,
                (NEWARK_AIRPORT, _) => Class::Ewr,
                (_, Borough::Manhattan) => Class::Manhattan,
                (_, Borough::Brooklyn) => Class::Brooklyn,
                (_, Borough::Queens) => Class::Queens,
                (_, Borough::Bronx) => Class::Bronx,
                (_, Borough::StatenIsland) => Class::StatenIsland,
                _ => Class::Unknown,
            })
            .collect();
        let geo = &table.geo;

        let mut road = vec![0.0; ZONE_COUNT * ZONE_COUNT];
        for (p, a) in geo.iter().enumerate() {
            for (d, b) in geo.iter().enumerate() {
                road[p * ZONE_COUNT + d] = if p == d {
                    a.radius
                } else {
                    // Streets are not straight lines; unknown zones are anywhere.
                    let straight = (a.x - b.x).hypot(a.y - b.y);
                    0.2 + 1.3 * straight.max(0.5 * (a.radius + b.radius))
                };
            }
        }

        let pickup = AliasTable::new(&geo.iter().map(|g| g.pickup_weight).collect::<Vec<_>>())
            .ok_or(Error::Bug("the pickup-zone weights"))?;
        let dropoff = (0..ZONE_COUNT)
            .map(|p| {
                // A gravity model: popular destinations, fewer of them far away. Airport
                // pickups travel far; Manhattan pickups mostly stay in Manhattan.
                let reach = match class[p] {
                    Class::Jfk | Class::Lga | Class::Ewr => 25.0,
                    Class::Manhattan => 1.6,
                    _ => 4.5,
                };
                let weights: Vec<f64> = (0..ZONE_COUNT)
                    .map(|d| {
                        let miles = road[p * ZONE_COUNT + d];
                        let same = if p == d { 2.5 } else { 1.0 };
                        same * geo[d].dropoff_weight / (1.0 + (miles / reach).powi(2))
                    })
                    .collect();
                AliasTable::new(&weights).ok_or(Error::Bug("the drop-off-zone weights"))
            })
            .collect::<Result<Vec<_>>>()?;

        let first_weekday = u32::from(start_date.weekday().number_days_from_monday());
        let slot_weights: Vec<f64> = (0..days * 24)
            .map(|slot| {
                let (day, hour) = ((slot / 24), (slot % 24) as usize);
                let dow = ((first_weekday + day) % 7) as usize;
                let curve = if dow >= 5 {
                    &WEEKEND_HOURS
                } else {
                    &WEEKDAY_HOURS
                };
                // Friday nights run late.
                let friday_night = if dow == 4 && hour >= 21 { 1.15 } else { 1.0 };
                DAY_WEIGHTS[dow] * curve[hour] * friday_night
            })
            .collect();
        let sum: f64 = slot_weights.iter().sum();
        let mut slot_cdf = Vec::with_capacity(slot_weights.len() + 1);
        let mut acc = 0.0;
        slot_cdf.push(0.0);
        for w in &slot_weights {
            acc += w / sum;
            slot_cdf.push(acc);
        }
        if let Some(last) = slot_cdf.last_mut() {
            *last = 1.0;
        }

        let (y, m, d) = CBD_FEE_START;
        let cbd_start = Date::from_calendar_date(y, m, d)
            .map_err(Error::internal("the congestion-relief start date"))?;
        let cbd_days = (cbd_start.to_julian_day() - start_date.to_julian_day()).max(0);
        let cbd_from_slot = u32::try_from(cbd_days)
            .unwrap_or(u32::MAX / 24)
            .saturating_mul(24);

        Ok(Self {
            schema,
            yellow: geo.iter().map(|g| g.yellow).collect(),
            cbd: geo.iter().map(|g| g.cbd).collect(),
            class,
            road,
            pickup,
            dropoff,
            slot_cdf,
            total_rows,
            start_us: epoch_micros(start_date),
            first_weekday,
            cbd_from_slot,
        })
    }

    /// The random stream of one batch.
    fn rng(seed: u64, file: u32, batch: u32) -> ChaCha8Rng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        // Domain separation: other generators given the same seed draw other numbers.
        key[8..16].copy_from_slice(b"taxi/v1\0");
        let mut rng = ChaCha8Rng::from_seed(key);
        rng.set_stream((u64::from(file) << 32) | u64::from(batch));
        rng
    }

    /// Draws batch number `batch` of file `file`: `rows` trips, the first of which is trip
    /// number `first_row` of the whole data set.
    pub(crate) fn batch(
        &self,
        seed: u64,
        file: u32,
        batch: u32,
        first_row: u64,
        rows: usize,
    ) -> Result<RecordBatch> {
        let rng = &mut Self::rng(seed, file, batch);
        let n = rows;

        // Pickup time, in order: trip number k of N falls at a random point of the k-th
        // N-quantile of the period's trip-time distribution (stratified sampling), mapped
        // through its inverse CDF: hour slots from the daily and weekly curves, uniform
        // within the hour. The data set is thus sorted by pickup time across batches and
        // files, like the TLC's monthly files, and each batch needs no other.
        let mut slot = Vec::with_capacity(n);
        let mut pickup_us = Vec::with_capacity(n);
        let total = self.total_rows.max(1) as f64;
        let last_slot = self.slot_cdf.len().saturating_sub(2);
        let first_q = first_row as f64 / total;
        let mut s = self
            .slot_cdf
            .partition_point(|&c| c <= first_q)
            .saturating_sub(1)
            .min(last_slot);
        for i in 0..n {
            let q = ((first_row + i as u64) as f64 + unit(rng)) / total;
            while s < last_slot && self.slot_cdf[s + 1] <= q {
                s += 1;
            }
            let (lo, hi) = (self.slot_cdf[s], self.slot_cdf[s + 1]);
            let within = ((q - lo) / (hi - lo)).clamp(0.0, 1.0);
            let second = ((within * 3600.0) as i64).min(3599);
            slot.push(s as u32);
            pickup_us.push(self.start_us + (s as i64 * 3600 + second) * 1_000_000);
        }

        // Zones: a skewed pickup zone, then a drop-off zone given it.
        let pu: Vec<u16> = (0..n)
            .map(|_| self.pickup.sample(rng.next_u64()) as u16)
            .collect();
        let dz: Vec<u16> = pu
            .iter()
            .map(|&p| self.dropoff[usize::from(p)].sample(rng.next_u64()) as u16)
            .collect();

        // Distance in hundredths of a mile: the road distance with log-normal noise.
        let dist_h: Vec<i64> = pu
            .iter()
            .zip(&dz)
            .map(|(&p, &d)| {
                if unit32(rng) < ZERO_DISTANCE_RATE {
                    return 0;
                }
                let base = self.road[usize::from(p) * ZONE_COUNT + usize::from(d)];
                let z: f64 = StandardNormal.sample(rng);
                round_pos(base * (0.32 * z).exp() * 100.0).max(1)
            })
            .collect();

        // Duration in seconds: slower in the rush, faster at night, on weekends and on long
        // (highway) trips.
        let mut minutes = Vec::with_capacity(n);
        let mut dropoff_us = Vec::with_capacity(n);
        for i in 0..n {
            let (hour, weekend) = self.hour_and_weekend(slot[i]);
            let miles = dist_h[i] as f64 / 100.0;
            let m = if dist_h[i] == 0 {
                0.2 + 8.0 * unit(rng).powi(2)
            } else {
                let speed = SPEED_MPH[hour]
                    * if weekend { 1.15 } else { 1.0 }
                    * (1.0 + 0.9 * (1.0 - (-miles / 6.0).exp()));
                let z: f64 = StandardNormal.sample(rng);
                60.0 * miles / speed * (0.22 * z).exp() + 1.0 + 2.0 * unit(rng)
            };
            minutes.push(m);
            dropoff_us.push(pickup_us[i] + round_pos(m * 60.0).max(1) * 1_000_000);
        }

        // The categorical columns.
        let mut valid = Vec::with_capacity(n);
        let mut vendor = Vec::with_capacity(n);
        let mut passengers = Vec::with_capacity(n);
        let mut store_fwd = Vec::with_capacity(n);
        let mut payment = Vec::with_capacity(n);
        let mut ratecode = Vec::with_capacity(n);
        for i in 0..n {
            let is_valid = unit32(rng) >= NULL_ROW_RATE;
            valid.push(is_valid);
            vendor.push(pick(rng, &[(0.745, 2), (0.245, 1), (0.006, 6), (0.004, 7)]) as i32);
            passengers.push(if is_valid {
                pick(
                    rng,
                    &[
                        (0.75, 1),
                        (0.15, 2),
                        (0.035, 3),
                        (0.022, 4),
                        (0.017, 5),
                        (0.014, 6),
                        (0.012, 0),
                    ],
                )
            } else {
                0
            });
            store_fwd.push(unit32(rng) < 0.004);
            payment.push(if is_valid {
                pick(
                    rng,
                    &[(0.80, 1), (0.165, 2), (0.011, 3), (0.023, 4), (0.001, 5)],
                )
            } else {
                0
            });
            let (p, d) = (
                self.class[usize::from(pu[i])],
                self.class[usize::from(dz[i])],
            );
            let u = unit32(rng);
            ratecode.push(match (p, d) {
                (Class::Jfk, Class::Manhattan) | (Class::Manhattan, Class::Jfk) if u < 0.92 => 2,
                (_, Class::Ewr) | (Class::Ewr, _) if u < 0.9 => 3,
                _ if u < 0.004 => 5,
                _ if u < 0.0055 => 4,
                _ if u < 0.0085 => 99,
                _ => 1,
            });
        }

        // Money, in cents.
        let mut fare = Vec::with_capacity(n);
        let mut extra = Vec::with_capacity(n);
        let mut mta = Vec::with_capacity(n);
        let mut tip = Vec::with_capacity(n);
        let mut tolls = Vec::with_capacity(n);
        let mut improvement = Vec::with_capacity(n);
        let mut congestion = Vec::with_capacity(n);
        let mut airport = Vec::with_capacity(n);
        let mut cbd = Vec::with_capacity(n);
        let mut total = Vec::with_capacity(n);
        for i in 0..n {
            let (p, d) = (usize::from(pu[i]), usize::from(dz[i]));
            let (hour, weekend) = self.hour_and_weekend(slot[i]);
            let miles = dist_h[i] as f64 / 100.0;
            // The meter: $3.00 on entry, then $0.70 per fifth of a mile or per minute in slow
            // traffic.
            let slow_minutes = (minutes[i] - miles / 12.0 * 60.0).max(0.0) * 0.8;
            let mut units = round_pos(miles * 5.0 + slow_minutes);
            let u = unit32(rng);
            if u < 0.15 {
                units = (units - 1).max(0);
            } else if u < 0.3 {
                units += 1;
            }
            let metered = 300 + 70 * units;
            let rc = ratecode[i];
            let mut f = match rc {
                2 => 7000,
                3 => metered + 2000,
                4 => metered * 8 / 5,
                5 => round_pos(metered as f64 * (0.6 + 0.8 * unit(rng)) / 100.0).max(1) * 100,
                _ => metered,
            };
            let mut x = match (rc, weekend, hour) {
                (5, _, _) => 0,
                (_, false, 16..=19) => 250,
                (_, _, 20..=23 | 0..=5) => 100,
                _ => 0,
            };
            let mut m = if rc == 3 { 0 } else { 50 };
            let mut imp = 100;
            let mut cong = if self.yellow[p] || self.yellow[d] {
                250
            } else {
                0
            };
            let mut air = if matches!(self.class[p], Class::Jfk | Class::Lga) {
                175
            } else {
                0
            };
            let mut c = if (self.cbd[p] || self.cbd[d]) && slot[i] >= self.cbd_from_slot {
                75
            } else {
                0
            };
            let mut t = toll(self.class[p], self.class[d], unit32(rng));

            // Tips: credit cards mostly tip (tablet presets of 20/25/30% or a custom amount),
            // app-paid fares sometimes; cash tips are not recorded.
            let pay = payment[i];
            let tips = match pay {
                1 => unit32(rng) < 0.88,
                0 => unit32(rng) < 0.6,
                _ => false,
            };
            let mut tp = 0;
            if tips {
                let base = (f + x + m + imp + cong + air + c + t) as f64;
                let v = unit32(rng);
                tp = if v < 0.38 {
                    round_pos(base * 0.20)
                } else if v < 0.62 {
                    round_pos(base * 0.25)
                } else if v < 0.72 {
                    round_pos(base * 0.30)
                } else {
                    let z: f64 = StandardNormal.sample(rng);
                    let custom = base * (0.17 + 0.06 * z).clamp(0.02, 0.6);
                    if v < 0.86 {
                        round_pos(custom / 100.0).max(1) * 100
                    } else {
                        round_pos(custom)
                    }
                };
            }

            // Disputes and no-charge trips are often voided with a negated copy.
            if matches!(pay, 3 | 4) && unit32(rng) < 0.5 {
                for v in [
                    &mut f, &mut x, &mut m, &mut imp, &mut cong, &mut air, &mut c, &mut t, &mut tp,
                ] {
                    *v = -*v;
                }
            }
            fare.push(f);
            extra.push(x);
            mta.push(m);
            tip.push(tp);
            tolls.push(t);
            improvement.push(imp);
            // Null congestion and airport fees add nothing to the total.
            let (cong, air) = if valid[i] { (cong, air) } else { (0, 0) };
            congestion.push(cong);
            airport.push(air);
            cbd.push(c);
            total.push(f + x + m + tp + t + imp + cong + air + c);
        }

        // Arrow arrays, built from the vectors without copying.
        let nulls = NullBuffer::from(valid);
        let nulls = (nulls.null_count() > 0).then_some(nulls);
        let i32s = |v: Vec<i32>| Arc::new(Int32Array::from(v)) as ArrayRef;
        let i64s = |v: Vec<i64>, nulls: Option<NullBuffer>| {
            Arc::new(Int64Array::new(ScalarBuffer::from(v), nulls)) as ArrayRef
        };
        let dollars = |v: Vec<i64>, nulls: Option<NullBuffer>| {
            let values: Vec<f64> = v.into_iter().map(|c| c as f64 / 100.0).collect();
            Arc::new(Float64Array::new(ScalarBuffer::from(values), nulls)) as ArrayRef
        };
        let zone_ids = |v: &[u16]| i32s(v.iter().map(|&z| i32::from(z) + 1).collect());
        let flags = {
            let valid = nulls.as_ref();
            let mut offsets = Vec::with_capacity(n + 1);
            let mut bytes = Vec::with_capacity(n);
            offsets.push(0i64);
            for (i, &y) in store_fwd.iter().enumerate() {
                if valid.is_none_or(|v| v.is_valid(i)) {
                    bytes.push(if y { b'Y' } else { b'N' });
                }
                offsets.push(bytes.len() as i64);
            }
            LargeStringArray::try_new(
                OffsetBuffer::new(ScalarBuffer::from(offsets)),
                Buffer::from(bytes),
                nulls.clone(),
            )
            .map_err(Error::internal("store_and_fwd_flag"))?
        };
        let columns: Vec<ArrayRef> = vec![
            i32s(vendor),
            Arc::new(TimestampMicrosecondArray::from(pickup_us)),
            Arc::new(TimestampMicrosecondArray::from(dropoff_us)),
            i64s(passengers, nulls.clone()),
            Arc::new(Float64Array::from(
                dist_h.iter().map(|&d| d as f64 / 100.0).collect::<Vec<_>>(),
            )),
            i64s(ratecode, nulls.clone()),
            Arc::new(flags),
            zone_ids(&pu),
            zone_ids(&dz),
            i64s(payment, None),
            dollars(fare, None),
            dollars(extra, None),
            dollars(mta, None),
            dollars(tip, None),
            dollars(tolls, None),
            dollars(improvement, None),
            dollars(total, None),
            dollars(congestion, nulls.clone()),
            dollars(airport, nulls),
            dollars(cbd, None),
        ];
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(Error::internal("a batch of trips"))
    }

    fn hour_and_weekend(&self, slot: u32) -> (usize, bool) {
        let dow = (self.first_weekday + slot / 24) % 7;
        ((slot % 24) as usize, dow >= 5)
    }
}

/// A uniform draw in `[0, 1)` with 53 random bits.
#[inline]
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A uniform draw in `[0, 1)` with 32 random bits: enough for yes/no and category draws,
/// and half the random stream of [`unit`].
#[inline]
fn unit32(rng: &mut ChaCha8Rng) -> f64 {
    f64::from(rng.next_u32()) * (1.0 / 4_294_967_296.0)
}

/// Rounds a non-negative `x` half up. `f64::round` is a libm call on baseline x86-64; this is
/// one add and a truncating conversion.
#[inline]
fn round_pos(x: f64) -> i64 {
    (x + 0.5) as i64
}

/// Picks a value from `(probability, value)` pairs; the last absorbs rounding.
#[inline]
fn pick(rng: &mut ChaCha8Rng, choices: &[(f64, i64)]) -> i64 {
    let mut u = unit32(rng);
    for &(p, v) in choices {
        if u < p {
            return v;
        }
        u -= p;
    }
    choices.last().map_or(0, |&(_, v)| v)
}

/// Bridge and tunnel tolls in cents, by the classes of the two ends.
fn toll(p: Class, d: Class, u: f64) -> i64 {
    use Class::*;
    let (chance, cents) = match (p, d) {
        (Ewr, _) | (_, Ewr) => (0.85, 1_738),
        (StatenIsland, StatenIsland) => (0.0, 0),
        (StatenIsland, _) | (_, StatenIsland) => (0.7, 694),
        (Jfk | Lga, Manhattan) | (Manhattan, Jfk | Lga) => (0.45, 694),
        (Manhattan, Brooklyn | Queens) | (Brooklyn | Queens, Manhattan) => (0.2, 694),
        (Bronx, Queens | Jfk | Lga) | (Queens | Jfk | Lga, Bronx) => (0.5, 694),
        _ => (0.0, 0),
    };
    if u < chance { cents } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        let start = Date::from_calendar_date(2025, time::Month::January, 1).unwrap();
        Model::new(super::super::schema(), start, 31, 1_000_000).unwrap()
    }

    #[test]
    fn a_batch_depends_only_on_seed_file_and_batch() {
        let m = model();
        let a = m.batch(7, 3, 5, 0, 1000).unwrap();
        assert_eq!(a, m.batch(7, 3, 5, 0, 1000).unwrap());
        assert_ne!(a, m.batch(7, 3, 6, 0, 1000).unwrap());
        assert_ne!(a, m.batch(7, 4, 5, 0, 1000).unwrap());
        assert_ne!(a, m.batch(8, 3, 5, 0, 1000).unwrap());
    }

    #[test]
    fn pickups_are_in_order_across_batches() {
        let m = model();
        let times = |first_row| {
            let b = m.batch(1, 0, 0, first_row, 5000).unwrap();
            b.column(1)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        };
        let (a, b) = (times(0), times(5000));
        assert!(a.windows(2).all(|w| w[0] <= w[1]));
        assert!(b.windows(2).all(|w| w[0] <= w[1]));
        assert!(a[a.len() - 1] <= b[0]);
        // The last trips of the data set fall on the last day.
        let end = times(995_000);
        let jan31 = epoch_micros(Date::from_calendar_date(2025, time::Month::January, 31).unwrap());
        assert!(end[0] >= jan31 && end[4999] < jan31 + 86_400_000_000);
    }

    #[test]
    fn epoch_micros_of_known_dates() {
        let d = |y, m, d| Date::from_calendar_date(y, m, d).unwrap();
        assert_eq!(epoch_micros(d(1970, time::Month::January, 1)), 0);
        assert_eq!(
            epoch_micros(d(2025, time::Month::January, 1)),
            1_735_689_600_000_000
        );
    }

    #[test]
    fn the_cbd_fee_starts_on_january_5_2025() {
        let m = model();
        assert_eq!(m.cbd_from_slot, 4 * 24);
        let before = Date::from_calendar_date(2024, time::Month::December, 1).unwrap();
        let m = Model::new(super::super::schema(), before, 31, 10).unwrap();
        assert_eq!(m.cbd_from_slot, 35 * 24);
    }

    #[test]
    fn tolls_only_across_water() {
        assert_eq!(toll(Class::Manhattan, Class::Manhattan, 0.0), 0);
        assert_eq!(toll(Class::Ewr, Class::Manhattan, 0.0), 1_738);
        assert_eq!(toll(Class::Jfk, Class::Manhattan, 0.9), 0);
    }

    #[test]
    fn pick_covers_every_choice() {
        let rng = &mut Model::rng(1, 0, 0);
        let mut seen = [false; 3];
        for _ in 0..1000 {
            seen[pick(rng, &[(0.5, 0), (0.3, 1), (0.2, 2)]) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
    }
}

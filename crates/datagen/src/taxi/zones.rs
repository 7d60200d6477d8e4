//! The 265 TLC taxi zones: the lookup table (`taxi_zone_lookup`) and the synthetic geography
//! the trip generator uses.
//!
//! The real lookup table is not part of the schema document this crate follows, so only its
//! shape is real: 265 zones with the real borough sizes (Manhattan 69, Brooklyn 61, Queens 69,
//! Bronx 43, Staten Island 20, EWR 1, Unknown 2), the real ids of the zones the schema
//! mentions (1 Newark Airport, 132 JFK Airport, 138 LaGuardia Airport, 264/265 Unknown), the
//! real `service_zone` values (`EWR`, `Airports`, `Yellow Zone`, `Boro Zone`, `N/A`), and ids
//! assigned in alphabetical order of zone name as in the real table. Every other zone name is
//! made up ("East Mercer", "Rowan Slope", …), and so are the zone positions: points in miles
//! around Midtown (x east, y north) inside a rough box per borough, Manhattan a long thin strip.
//! Nothing here is random at run time: the table is a pure function of this file.

use std::sync::Arc;

use arrow::array::{Int32Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::error::{Error, Result};

/// Number of zones in the lookup table (LocationID 1..=265).
pub const ZONE_COUNT: usize = 265;

/// LocationID of Newark Airport (borough `EWR`).
pub const NEWARK_AIRPORT: i32 = 1;
/// LocationID of JFK Airport (Queens).
pub const JFK_AIRPORT: i32 = 132;
/// LocationID of LaGuardia Airport (Queens).
pub const LAGUARDIA_AIRPORT: i32 = 138;

/// A borough of the lookup table's `Borough` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Borough {
    /// Manhattan.
    Manhattan,
    /// Brooklyn.
    Brooklyn,
    /// Queens.
    Queens,
    /// The Bronx.
    Bronx,
    /// Staten Island.
    StatenIsland,
    /// Newark Airport, New Jersey.
    Ewr,
    /// Unknown location.
    Unknown,
}

impl Borough {
    /// The name as written in the lookup table.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manhattan => "Manhattan",
            Self::Brooklyn => "Brooklyn",
            Self::Queens => "Queens",
            Self::Bronx => "Bronx",
            Self::StatenIsland => "Staten Island",
            Self::Ewr => "EWR",
            Self::Unknown => "Unknown",
        }
    }
}

/// One row of the zone lookup table.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    /// `LocationID`, 1..=265, as in `PULocationID` / `DOLocationID`.
    pub location_id: i32,
    /// `Borough`.
    pub borough: Borough,
    /// `Zone`: the zone's name (synthetic except the airports and the unknowns).
    pub zone: String,
    /// `service_zone`: `EWR`, `Airports`, `Yellow Zone`, `Boro Zone` or `N/A`.
    pub service_zone: &'static str,
}

/// The 265-row zone lookup table, ordered by `LocationID`.
///
/// Real: the borough sizes (Manhattan 69, Brooklyn 61, Queens 69, Bronx 43, Staten Island 20,
/// EWR 1, Unknown 2), the ids and names of Newark Airport (1), JFK Airport (132), LaGuardia
/// Airport (138) and the unknown zones (264 `NV`, 265 `NA`), the `service_zone` values, and
/// ids in alphabetical order of name. Made up: the other 260 names ("East Mercer", "Rowan
/// Slope", …), which borough each id falls in, and the geography behind the trips.
pub fn zones() -> Vec<Zone> {
    ZoneTable::build().zones
}

/// The Arrow schema of the zone lookup table: `LocationID` int32, `Borough`, `Zone`,
/// `service_zone` utf8, none null.
pub fn zone_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("LocationID", DataType::Int32, false),
        Field::new("Borough", DataType::Utf8, false),
        Field::new("Zone", DataType::Utf8, false),
        Field::new("service_zone", DataType::Utf8, false),
    ]))
}

/// The zone lookup table as one Arrow record batch.
pub fn zones_batch() -> Result<RecordBatch> {
    let zones = zones();
    RecordBatch::try_new(
        zone_schema(),
        vec![
            Arc::new(Int32Array::from_iter_values(
                zones.iter().map(|z| z.location_id),
            )),
            Arc::new(StringArray::from_iter_values(
                zones.iter().map(|z| z.borough.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                zones.iter().map(|z| z.zone.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                zones.iter().map(|z| z.service_zone),
            )),
        ],
    )
    .map_err(Error::internal("the zone lookup batch"))
}

/// The zone lookup table as CSV in the layout of the TLC's `taxi_zone_lookup.csv`: a quoted
/// header, numeric ids, every text field quoted.
pub fn zones_csv() -> String {
    fn quoted(s: &str) -> String {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
    let mut out = String::from("\"LocationID\",\"Borough\",\"Zone\",\"service_zone\"\n");
    for z in zones() {
        out.push_str(&format!(
            "{},{},{},{}\n",
            z.location_id,
            quoted(z.borough.name()),
            quoted(&z.zone),
            quoted(z.service_zone)
        ));
    }
    out
}

/// Where a zone is and how busy it is: what the trip model needs beyond the lookup row.
#[derive(Debug, Clone)]
pub(crate) struct ZoneGeo {
    /// Miles east of Midtown.
    pub x: f64,
    /// Miles north of Midtown.
    pub y: f64,
    /// Typical length of a trip that starts and ends in this zone, miles.
    pub radius: f64,
    /// Relative share of pickups.
    pub pickup_weight: f64,
    /// Relative attractiveness as a drop-off (before distance decay).
    pub dropoff_weight: f64,
    /// Inside the congestion-surcharge area (Manhattan south of 96th Street).
    pub yellow: bool,
    /// Inside the Congestion Relief Zone (Manhattan south of 60th Street).
    pub cbd: bool,
}

/// The lookup table and its geography, both indexed by `LocationID - 1`.
#[derive(Debug, Clone)]
pub(crate) struct ZoneTable {
    pub zones: Vec<Zone>,
    pub geo: Vec<ZoneGeo>,
}

/// Name parts per borough: every name is `first second` ("Upper Beacon" in Manhattan, "Rowan
/// Slope" in Brooklyn), and the parts differ between boroughs so names are unique.
struct NameParts {
    borough: Borough,
    count: usize,
    first: &'static [&'static str],
    second: &'static [&'static str],
}

const NAME_PARTS: [NameParts; 5] = [
    NameParts {
        borough: Borough::Manhattan,
        count: 69,
        first: &[
            "East", "West", "North", "South", "Upper", "Lower", "Central", "Old",
        ],
        second: &[
            "Ashford", "Beacon", "Carlton", "Cedar", "Harbor", "Kingsley", "Linden", "Marlow",
            "Mercer", "Sterling", "Thornton", "Whitman",
        ],
    },
    NameParts {
        borough: Borough::Brooklyn,
        count: 61,
        first: &[
            "Alder", "Aspen", "Birch", "Briar", "Cobble", "Elm", "Fern", "Hazel", "Maple", "Oak",
            "Rowan", "Willow",
        ],
        second: &["Bay", "Flats", "Gardens", "Hill", "Park", "Point", "Slope"],
    },
    NameParts {
        borough: Borough::Queens,
        count: 67,
        first: &[
            "Cypress", "Hemlock", "Holly", "Juniper", "Larch", "Laurel", "Magnolia", "Pine",
            "Poplar", "Spruce", "Sumac", "Tamarack",
        ],
        second: &[
            "Beach", "Glen", "Hills", "Meadows", "Springs", "Village", "Woods",
        ],
    },
    NameParts {
        borough: Borough::Bronx,
        count: 43,
        first: &[
            "Beech", "Chestnut", "Dogwood", "Hickory", "Locust", "Mulberry", "Sycamore", "Walnut",
        ],
        second: &[
            "Crossing", "Grove", "Heights", "Junction", "Parkway", "Terrace",
        ],
    },
    NameParts {
        borough: Borough::StatenIsland,
        count: 20,
        first: &[
            "Bayberry",
            "Cranberry",
            "Driftwood",
            "Heron",
            "Saltmarsh",
            "Seaside",
        ],
        second: &["Harbor", "Hollow", "Landing", "Manor", "Shore"],
    },
];

/// A box in miles around Midtown: `(x_min, x_max, y_min, y_max)`.
type Area = (f64, f64, f64, f64);

fn area(borough: Borough) -> Area {
    match borough {
        Borough::Manhattan => (-1.0, 1.0, -4.5, 8.5),
        Borough::Brooklyn => (-3.0, 6.0, -12.0, -2.5),
        Borough::Queens => (2.5, 14.0, -8.0, 6.0),
        Borough::Bronx => (0.5, 7.0, 8.5, 15.0),
        Borough::StatenIsland => (-13.0, -5.0, -19.0, -9.0),
        Borough::Ewr | Borough::Unknown => (0.0, 0.0, 0.0, 0.0),
    }
}

/// Share of all pickups per borough (airports and unknowns are set per zone below).
fn pickup_share(borough: Borough) -> f64 {
    match borough {
        Borough::Manhattan => 0.875,
        Borough::Brooklyn => 0.016,
        Borough::Queens => 0.012,
        Borough::Bronx => 0.003,
        Borough::StatenIsland => 0.0002,
        Borough::Ewr | Borough::Unknown => 0.0,
    }
}

/// Share of drop-off attractiveness per borough (before distance decay).
fn dropoff_share(borough: Borough) -> f64 {
    match borough {
        Borough::Manhattan => 0.78,
        Borough::Brooklyn => 0.24,
        Borough::Queens => 0.17,
        Borough::Bronx => 0.05,
        Borough::StatenIsland => 0.002,
        Borough::Ewr | Borough::Unknown => 0.0,
    }
}

/// The fractional part of `x` (for the low-discrepancy sequences that place zones).
fn frac(x: f64) -> f64 {
    x - x.floor()
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Normalises `weights` in place to sum to `total`.
fn scale_to(weights: &mut [f64], total: f64) {
    let sum: f64 = weights.iter().sum();
    if sum > 0.0 {
        for w in weights.iter_mut() {
            *w *= total / sum;
        }
    }
}

impl ZoneTable {
    pub(crate) fn build() -> Self {
        // 1. Names, and a position and popularity rank for each, per borough.
        struct Proto {
            borough: Borough,
            name: String,
            geo: ZoneGeo,
        }
        let mut protos: Vec<Proto> = Vec::with_capacity(ZONE_COUNT);
        for parts in &NAME_PARTS {
            let combos: Vec<String> = parts
                .first
                .iter()
                .flat_map(|a| parts.second.iter().map(move |b| format!("{a} {b}")))
                .collect();
            let n = combos.len();
            // Visit the combinations with a stride coprime to their number: distinct names,
            // spread over every first and second part.
            let mut stride = (n as f64 * 0.618) as usize;
            while gcd(stride, n) != 1 {
                stride += 1;
            }
            let (x0, x1, y0, y1) = area(parts.borough);
            let mut geo: Vec<ZoneGeo> = (0..parts.count)
                .map(|j| {
                    let jf = j as f64;
                    let (x, y) = if parts.borough == Borough::Manhattan {
                        // Evenly along the island, narrower in the north.
                        let y = y0 + (y1 - y0) * (jf + 0.5) / parts.count as f64;
                        let width = if y > 4.0 { 1.2 } else { 2.0 };
                        (width * (frac(0.5 + jf * 0.618_034) - 0.5), y)
                    } else {
                        // The R2 low-discrepancy sequence: evenly spread, no clumps.
                        let u = frac(0.5 + jf * 0.754_877_666_2);
                        let v = frac(0.5 + jf * 0.569_840_291);
                        (x0 + (x1 - x0) * u, y0 + (y1 - y0) * v)
                    };
                    ZoneGeo {
                        x,
                        y,
                        radius: if parts.borough == Borough::Manhattan {
                            0.45
                        } else {
                            0.9
                        },
                        pickup_weight: 0.0,
                        dropoff_weight: 0.0,
                        yellow: parts.borough == Borough::Manhattan && y < 5.3,
                        cbd: parts.borough == Borough::Manhattan && y < 1.7,
                    }
                })
                .collect();
            // Popularity: Manhattan ranks zones by closeness to Midtown (with a deterministic
            // jitter), the others by their order; busy zones carry most trips.
            let mut order: Vec<usize> = (0..parts.count).collect();
            if parts.borough == Borough::Manhattan {
                let key =
                    |j: usize| (geo[j].y - 1.0).abs() + 1.2 * frac(0.3 + j as f64 * 0.414_213_56);
                order.sort_by(|&a, &b| key(a).total_cmp(&key(b)));
            }
            let mut pickup = vec![0.0; parts.count];
            let mut dropoff = vec![0.0; parts.count];
            for (rank, &j) in order.iter().enumerate() {
                let r = rank as f64;
                if parts.borough == Borough::Manhattan {
                    // A Zipf-like head with a fast-falling tail: the top ten Manhattan zones
                    // take about a third of all pickups, the northern tip almost none.
                    pickup[j] = 1.0 / (1.0 + ((r - 32.0) / 5.0).exp()) / (r + 14.0) + 1e-5;
                    dropoff[j] = 1.0 / (1.0 + ((r - 40.0) / 8.0).exp()) / (r + 14.0) + 1e-4;
                } else {
                    pickup[j] = 1.0 / (r + 3.0);
                    dropoff[j] = 1.0 / (r + 3.0).sqrt();
                }
            }
            scale_to(&mut pickup, pickup_share(parts.borough));
            scale_to(&mut dropoff, dropoff_share(parts.borough));
            for (j, g) in geo.iter_mut().enumerate() {
                g.pickup_weight = pickup[j];
                g.dropoff_weight = dropoff[j];
            }
            for (j, g) in geo.into_iter().enumerate() {
                let name = &combos[(j * stride + 1) % n];
                protos.push(Proto {
                    borough: parts.borough,
                    name: name.clone(),
                    geo: g,
                });
            }
        }

        // 2. Ids in alphabetical order of name, skipping the fixed ids of the real table.
        protos.sort_by(|a, b| a.name.cmp(&b.name));
        let fixed = [
            NEWARK_AIRPORT,
            JFK_AIRPORT,
            LAGUARDIA_AIRPORT,
            ZONE_COUNT as i32 - 1,
            ZONE_COUNT as i32,
        ];
        let mut slots: Vec<Option<(Zone, ZoneGeo)>> = vec![None; ZONE_COUNT];
        let mut free_ids = (1..=ZONE_COUNT as i32).filter(|id| !fixed.contains(id));
        for p in protos {
            // 260 names for the 260 free ids: the counts above are the real borough sizes
            // minus the fixed zones, checked by a unit test.
            let Some(id) = free_ids.next() else { break };
            let service_zone = match (p.borough, p.geo.yellow) {
                (Borough::Manhattan, true) => "Yellow Zone",
                _ => "Boro Zone",
            };
            slots[id as usize - 1] = Some((
                Zone {
                    location_id: id,
                    borough: p.borough,
                    zone: p.name,
                    service_zone,
                },
                p.geo,
            ));
        }

        // 3. The fixed zones.
        let special = |x, y, radius, pickup_weight, dropoff_weight| ZoneGeo {
            x,
            y,
            radius,
            pickup_weight,
            dropoff_weight,
            yellow: false,
            cbd: false,
        };
        let fixed_rows = [
            (
                NEWARK_AIRPORT,
                Borough::Ewr,
                "Newark Airport",
                "EWR",
                special(-9.0, -5.0, 1.0, 0.0001, 0.003),
            ),
            (
                JFK_AIRPORT,
                Borough::Queens,
                "JFK Airport",
                "Airports",
                special(11.0, -6.5, 0.8, 0.048, 0.02),
            ),
            (
                LAGUARDIA_AIRPORT,
                Borough::Queens,
                "LaGuardia Airport",
                "Airports",
                special(5.5, 3.5, 0.8, 0.035, 0.025),
            ),
            (
                ZONE_COUNT as i32 - 1,
                Borough::Unknown,
                "NV",
                "N/A",
                special(0.0, 1.0, 2.5, 0.008, 0.006),
            ),
            (
                ZONE_COUNT as i32,
                Borough::Unknown,
                "NA",
                "N/A",
                special(0.0, 1.0, 2.5, 0.002, 0.002),
            ),
        ];
        for (id, borough, name, service_zone, geo) in fixed_rows {
            slots[id as usize - 1] = Some((
                Zone {
                    location_id: id,
                    borough,
                    zone: name.to_string(),
                    service_zone,
                },
                geo,
            ));
        }

        let (zones, geo) = slots.into_iter().flatten().unzip();
        Self { zones, geo }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_265_zones_with_the_real_borough_sizes() {
        let t = ZoneTable::build();
        assert_eq!(t.zones.len(), ZONE_COUNT);
        assert_eq!(t.geo.len(), ZONE_COUNT);
        for (i, z) in t.zones.iter().enumerate() {
            assert_eq!(z.location_id, i as i32 + 1);
        }
        let count = |b| t.zones.iter().filter(|z| z.borough == b).count();
        assert_eq!(count(Borough::Manhattan), 69);
        assert_eq!(count(Borough::Brooklyn), 61);
        assert_eq!(count(Borough::Queens), 69);
        assert_eq!(count(Borough::Bronx), 43);
        assert_eq!(count(Borough::StatenIsland), 20);
        assert_eq!(count(Borough::Ewr), 1);
        assert_eq!(count(Borough::Unknown), 2);
    }

    #[test]
    fn fixed_zones_keep_their_real_ids() {
        let z = zones();
        assert_eq!(z[0].zone, "Newark Airport");
        assert_eq!(z[0].service_zone, "EWR");
        assert_eq!(z[131].zone, "JFK Airport");
        assert_eq!(z[137].zone, "LaGuardia Airport");
        assert_eq!(z[137].service_zone, "Airports");
        assert_eq!(z[263].borough, Borough::Unknown);
        assert_eq!(z[264].borough, Borough::Unknown);
    }

    #[test]
    fn names_are_unique_and_free_ids_alphabetical() {
        let z = zones();
        let mut names: Vec<&str> = z.iter().map(|z| z.zone.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ZONE_COUNT);
        let free: Vec<&str> = z[1..263]
            .iter()
            .filter(|z| ![JFK_AIRPORT, LAGUARDIA_AIRPORT].contains(&z.location_id))
            .map(|z| z.zone.as_str())
            .collect();
        assert!(free.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn manhattan_has_yellow_and_boro_zones() {
        let z = zones();
        let yellow = z.iter().filter(|z| z.service_zone == "Yellow Zone").count();
        assert!((45..=60).contains(&yellow), "{yellow} yellow zones");
        assert!(
            z.iter()
                .filter(|z| z.service_zone == "Yellow Zone")
                .all(|z| z.borough == Borough::Manhattan)
        );
    }

    #[test]
    fn csv_is_quoted_like_the_tlc_file() {
        let csv = zones_csv();
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("\"LocationID\",\"Borough\",\"Zone\",\"service_zone\"")
        );
        assert_eq!(lines.next(), Some("1,\"EWR\",\"Newark Airport\",\"EWR\""));
        assert_eq!(csv.lines().count(), ZONE_COUNT + 1);
    }

    #[test]
    fn zones_batch_matches_the_schema() {
        let b = zones_batch().unwrap();
        assert_eq!(b.num_rows(), ZONE_COUNT);
        assert_eq!(b.schema(), zone_schema());
    }
}

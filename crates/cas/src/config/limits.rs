//! The CAS's resource limits: per-client request rates, the used-nonce set, and the transport
//! (TLS handshake, header read, connections). See `docs/defaults.md` for why each default.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::Error;

/// A per-client rate: `per_second` requests sustained, up to `burst` at once after a pause
/// (a token bucket of `burst` tokens refilled at `per_second`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests per second, sustained (1 to 1,000,000).
    pub per_second: u32,
    /// Requests allowed at once (1 to 1,000,000).
    pub burst: u32,
}

impl RateLimit {
    /// `per_second` sustained, `burst` at once.
    pub const fn new(per_second: u32, burst: u32) -> Self {
        Self { per_second, burst }
    }

    fn check(self, what: &'static str) -> Result<(), Error> {
        let ok = |n: u32| (1..=1_000_000).contains(&n);
        if ok(self.per_second) && ok(self.burst) {
            Ok(())
        } else {
            Err(Error::invalid(
                what,
                "rate and burst must be 1 to 1,000,000",
            ))
        }
    }
}

impl fmt::Display for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s,{}", self.per_second, self.burst)
    }
}

/// Parses `RATE` or `RATE,BURST` (`RATE` may end in `/s`); the burst defaults to ten seconds'
/// worth of requests. Values are checked when the configuration is built.
impl FromStr for RateLimit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{s}`: expected RATE or RATE,BURST (requests per second, burst)");
        let (rate, burst) = match s.split_once(',') {
            Some((r, b)) => (r, Some(b)),
            None => (s, None),
        };
        let rate: u32 = rate
            .trim()
            .trim_end_matches("/s")
            .parse()
            .map_err(|_| bad())?;
        let burst = match burst {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => rate.saturating_mul(10),
        };
        Ok(Self::new(rate, burst))
    }
}

/// The CAS's resource limits. [`Limits::default`] gives the defaults listed on each field.
///
/// Rates are per client, keyed by the peer IP address of the TCP connection (an IPv6 client by
/// its /64 prefix), never by a header. Health, discovery (JWKS, OpenID configuration, OpenAPI)
/// and the audit endpoints are not rate limited.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `POST /v1/nonce` per client. Default 50/s, burst 500.
    pub nonce_rate: RateLimit,
    /// `POST /v1/attest` per client. Default 50/s, burst 500.
    pub attest_rate: RateLimit,
    /// Every method of `/v1/sessions…` per client. Default 10/s, burst 100.
    pub session_rate: RateLimit,
    /// The most used nonces remembered until they expire (16 to 16 Mi); when full, new
    /// attestations are refused with 503 rather than a used nonce forgotten. Default 2²⁰.
    pub max_used_nonces: usize,
    /// How long a client has to complete the TLS handshake (100 ms to 10 min). Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// How long a connection may wait for a complete request head (100 ms to 10 min): from the
    /// end of the handshake or of the previous response to the last header byte. So it is also
    /// the idle keep-alive timeout. Default 10 s.
    pub header_read_timeout: Duration,
    /// The most connections served at once (1 to 1,000,000), including those still in their
    /// handshake; a connection beyond it is closed at once, before TLS. Default 1,024.
    pub max_connections: usize,
    /// The most connections one client (peer IP address, IPv6 by /64) holds at once (1 to
    /// `max_connections`), so that one client cannot hold every slot. Default 32.
    pub max_connections_per_client: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            nonce_rate: RateLimit::new(50, 500),
            attest_rate: RateLimit::new(50, 500),
            session_rate: RateLimit::new(10, 100),
            max_used_nonces: 1 << 20,
            tls_handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 1024,
            max_connections_per_client: 32,
        }
    }
}

impl Limits {
    /// Limits high enough not to matter for one benchmark client machine (1,000,000/s per
    /// client, 65,536 connections): for `cloister bench cas`, never for a CAS others can reach.
    pub fn bench() -> Self {
        let high = RateLimit::new(1_000_000, 1_000_000);
        Self {
            nonce_rate: high,
            attest_rate: high,
            session_rate: high,
            max_used_nonces: 16 << 20,
            max_connections: 65_536,
            max_connections_per_client: 65_536,
            ..Self::default()
        }
    }

    /// Checks every value against its documented range.
    pub(crate) fn check(&self) -> Result<(), Error> {
        self.nonce_rate.check("nonce rate limit")?;
        self.attest_rate.check("attest rate limit")?;
        self.session_rate.check("session rate limit")?;
        if !(16..=16 << 20).contains(&self.max_used_nonces) {
            return Err(Error::invalid("used-nonce capacity", "must be 16 to 16 Mi"));
        }
        let timeout = |what, d: Duration| {
            if d < Duration::from_millis(100) || d > Duration::from_secs(600) {
                Err(Error::invalid(what, "must be 100 ms to 10 min"))
            } else {
                Ok(())
            }
        };
        timeout("TLS handshake timeout", self.tls_handshake_timeout)?;
        timeout("header read timeout", self.header_read_timeout)?;
        if !(1..=1_000_000).contains(&self.max_connections) {
            return Err(Error::invalid(
                "connection cap",
                "must be 1 to 1,000,000 connections",
            ));
        }
        if !(1..=self.max_connections).contains(&self.max_connections_per_client) {
            return Err(Error::invalid(
                "per-client connection cap",
                "must be 1 to the connection cap",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("50".parse::<RateLimit>(), Ok(RateLimit::new(50, 500)));
        assert_eq!("50/s,7".parse::<RateLimit>(), Ok(RateLimit::new(50, 7)));
        assert!("fast".parse::<RateLimit>().is_err());
        assert!("5,x".parse::<RateLimit>().is_err());
        assert_eq!(RateLimit::new(3, 4).to_string(), "3/s,4");
    }

    #[test]
    fn defaults_and_bench_check() {
        Limits::default().check().unwrap();
        Limits::bench().check().unwrap();
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let what = |l: Limits| match l.check() {
            Err(Error::InvalidInput { what, .. }) => what,
            other => panic!("expected a refusal, got {other:?}"),
        };
        let d = Limits::default;
        assert_eq!(
            what(Limits {
                attest_rate: RateLimit::new(0, 1),
                ..d()
            }),
            "attest rate limit"
        );
        assert_eq!(
            what(Limits {
                max_used_nonces: 1,
                ..d()
            }),
            "used-nonce capacity"
        );
        assert_eq!(
            what(Limits {
                header_read_timeout: Duration::ZERO,
                ..d()
            }),
            "header read timeout"
        );
        assert_eq!(
            what(Limits {
                max_connections: 0,
                ..d()
            }),
            "connection cap"
        );
    }
}

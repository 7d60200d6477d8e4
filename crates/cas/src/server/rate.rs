//! Per-client rate limits: a keyed GCRA limiter (`governor`) per group of routes.
//!
//! A client is the peer IP address of its TCP connection, from axum's [`ConnectInfo`] (set by
//! [`super::run`]), never from a header such as `X-Forwarded-For`, which a client writes
//! itself. IPv6 clients are keyed by their /64 prefix: one host usually holds a whole /64, so
//! per-address limits would not limit it. A request over its client's limit gets 429
//! `rate-limited` with `Retry-After`; the handler does not run.
//!
//! Idle clients are forgotten every [`SWEEP_EVERY`] checks (`retain_recent`), so the limiter's
//! memory follows the clients active in the last burst window, not every address ever seen.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use super::error::ApiError;
use crate::config::RateLimit;

/// How many checks between two sweeps of idle clients.
const SWEEP_EVERY: u64 = 4096;

/// The limiter of one group of routes.
pub struct Limiter {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
    checks: AtomicU64,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("clients", &self.limiter.len())
            .finish_non_exhaustive()
    }
}

impl Limiter {
    /// A limiter allowing each client `rate`.
    pub fn new(rate: RateLimit) -> Arc<Self> {
        // `Limits::check` keeps both at least 1; `MIN` only guards a value built around it.
        let per_second = NonZeroU32::new(rate.per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(rate.burst).unwrap_or(NonZeroU32::MIN);
        Arc::new(Self {
            limiter: governor::RateLimiter::keyed(Quota::per_second(per_second).allow_burst(burst)),
            // The limiter's clock is `Instant`-based; another instance reads the same time.
            clock: DefaultClock::default(),
            checks: AtomicU64::new(0),
        })
    }

    /// Admits one request from `peer`, or says how long to wait.
    pub fn check(&self, peer: IpAddr) -> Result<(), std::time::Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&client_key(peer))
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// The key of a client: its IPv4 address, or the /64 prefix of its IPv6 address.
pub(super) fn client_key(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V4(ip) => IpAddr::V4(ip),
        IpAddr::V6(ip) => {
            let prefix = u128::from(ip) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

/// Middleware: answers 429 when the peer is over its limit, otherwise runs the handler.
pub async fn limit(State(limiter): State<Arc<Limiter>>, request: Request, next: Next) -> Response {
    // Without `ConnectInfo` (the router served some other way) every request shares one key:
    // still limited, never unlimited.
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    match limiter.check(peer) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            tracing::debug!(%peer, ?wait, "rate limited");
            ApiError::RateLimited { retry_after: wait }.into_response()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn clients_are_limited_separately() {
        let limiter = Limiter::new(RateLimit::new(1, 3));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..3 {
            limiter.check(a).unwrap();
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > std::time::Duration::ZERO && wait <= std::time::Duration::from_secs(1));
        limiter.check(b).unwrap();
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_64_prefix() {
        let limiter = Limiter::new(RateLimit::new(1, 1));
        limiter.check("2001:db8:0:1::1".parse().unwrap()).unwrap();
        // Another address of the same /64 shares the limit; another /64 does not.
        assert!(limiter.check("2001:db8:0:1::2".parse().unwrap()).is_err());
        limiter.check("2001:db8:0:2::1".parse().unwrap()).unwrap();
        // An IPv4-mapped address counts as the IPv4 client.
        limiter.check("198.51.100.7".parse().unwrap()).unwrap();
        assert!(
            limiter
                .check("::ffff:198.51.100.7".parse().unwrap())
                .is_err()
        );
    }
}

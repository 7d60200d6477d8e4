//! Attestation nonces, kept in memory: single use, short lived.
//!
//! # Why not in the store
//!
//! A nonce proves freshness: evidence binding it was made after the CAS issued it, and it is
//! accepted once. Keeping outstanding nonces durably bought nothing for either property and cost
//! two `fsync`ed commits per attestation (issue and take), the largest part of its latency.
//!
//! A restarted CAS forgets every outstanding nonce, and that is safe: a forgotten nonce is
//! *unknown*, so it is refused like a used one; a nonce can therefore never be accepted twice,
//! before or after a restart. New nonces are 32 random bytes, so one colliding with a nonce
//! issued before the restart has probability 2⁻²⁵⁶ per pair. The only effect of a restart is that
//! workloads which asked for a nonce in the last [`CasConfig::nonce_ttl`] ask again.
//!
//! One CAS process owns a data directory (the store's file is locked), so memory is exactly the
//! scope nonces had before. A CAS replicated over a shared store must route a workload's nonce
//! and attest requests to the same replica.
//!
//! # Bounds
//!
//! Expired nonces are kept for one more TTL (so that a late workload is told "expired" rather
//! than "unknown"), then dropped in issue order, amortised O(1) per issue. At most
//! [`MAX_OUTSTANDING`] nonces are kept; beyond that `POST /v1/nonce` answers 503 until some
//! expire, so a client requesting nonces in a loop costs bounded memory.
//!
//! [`CasConfig::nonce_ttl`]: crate::config::CasConfig::nonce_ttl

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::NonceRejection;

/// The most nonces kept at once (about 100 bytes each).
pub const MAX_OUTSTANDING: usize = 1 << 20;

/// Why a nonce could not be issued.
#[derive(Debug, PartialEq, Eq)]
pub enum IssueError {
    /// [`MAX_OUTSTANDING`] nonces are outstanding.
    Full,
    /// The operating system's random generator failed.
    Random,
}

#[derive(Default)]
struct Inner {
    /// Outstanding (and recently expired) nonces and their expiry.
    live: HashMap<[u8; 32], SystemTime>,
    /// Every issued nonce in issue order, for dropping expired ones; may name taken nonces.
    order: VecDeque<(SystemTime, [u8; 32])>,
}

/// The nonces the CAS issued and that were not used yet.
#[derive(Default)]
pub struct Nonces {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("outstanding", &self.outstanding())
            .finish()
    }
}

impl Nonces {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Every critical section leaves the maps consistent (no panics between paired updates).
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A fresh nonce valid until `now + ttl`.
    pub fn issue(&self, now: SystemTime, ttl: Duration) -> Result<[u8; 32], IssueError> {
        let mut nonce = [0u8; 32];
        getrandom::fill(&mut nonce).map_err(|_| IssueError::Random)?;
        let expires = now + ttl;
        let mut inner = self.lock();
        // Drop nonces expired for a whole TTL (and the order entries of nonces already taken).
        while let Some(&(exp, n)) = inner.order.front() {
            if exp + ttl > now {
                break;
            }
            inner.order.pop_front();
            if inner.live.get(&n) == Some(&exp) {
                inner.live.remove(&n);
            }
        }
        if inner.live.len() >= MAX_OUTSTANDING || inner.order.len() >= 2 * MAX_OUTSTANDING {
            return Err(IssueError::Full);
        }
        inner.live.insert(nonce, expires);
        inner.order.push_back((expires, nonce));
        Ok(nonce)
    }

    /// Uses `nonce`: succeeds once for a nonce issued and not expired at `now`.
    pub fn take(&self, nonce: &[u8], now: SystemTime) -> Result<(), NonceRejection> {
        let key: [u8; 32] = nonce.try_into().map_err(|_| NonceRejection::Unknown)?;
        let expires = self
            .lock()
            .live
            .remove(&key)
            .ok_or(NonceRejection::Unknown)?;
        if now >= expires {
            return Err(NonceRejection::Expired);
        }
        Ok(())
    }

    /// How many nonces are kept (outstanding or recently expired).
    pub fn outstanding(&self) -> usize {
        self.lock().live.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const TTL: Duration = Duration::from_secs(60);

    fn t(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn single_use() {
        let nonces = Nonces::default();
        let n = nonces.issue(t(0), TTL).unwrap();
        assert_eq!(nonces.take(&n, t(1)), Ok(()));
        assert_eq!(nonces.take(&n, t(1)), Err(NonceRejection::Unknown));
        assert_eq!(nonces.outstanding(), 0);
    }

    #[test]
    fn unknown_and_malformed_are_refused() {
        let nonces = Nonces::default();
        assert_eq!(nonces.take(&[7; 32], t(0)), Err(NonceRejection::Unknown));
        assert_eq!(nonces.take(&[7; 5], t(0)), Err(NonceRejection::Unknown));
        assert_eq!(nonces.take(&[], t(0)), Err(NonceRejection::Unknown));
    }

    #[test]
    fn expiry_is_reported_then_forgotten() {
        let nonces = Nonces::default();
        let a = nonces.issue(t(0), TTL).unwrap();
        let b = nonces.issue(t(0), TTL).unwrap();
        // Valid up to (not including) its expiry.
        assert_eq!(nonces.take(&a, t(60)), Err(NonceRejection::Expired));
        // One TTL after expiry an issue drops it: then it is unknown.
        nonces.issue(t(119), TTL).unwrap();
        assert_eq!(nonces.outstanding(), 2);
        nonces.issue(t(120), TTL).unwrap();
        assert_eq!(
            nonces.outstanding(),
            2,
            "b was dropped, the two new ones kept"
        );
        assert_eq!(nonces.take(&b, t(120)), Err(NonceRejection::Unknown));
    }

    #[test]
    fn a_restart_forgets_outstanding_nonces() {
        let before = Nonces::default();
        let n = before.issue(t(0), TTL).unwrap();
        drop(before);
        let after = Nonces::default();
        assert_eq!(after.take(&n, t(1)), Err(NonceRejection::Unknown));
    }

    #[test]
    fn concurrent_takes_succeed_exactly_once() {
        let nonces = Arc::new(Nonces::default());
        let issued: Vec<[u8; 32]> = (0..200).map(|_| nonces.issue(t(0), TTL).unwrap()).collect();
        let issued = Arc::new(issued);
        let wins = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (nonces, issued, wins) = (nonces.clone(), issued.clone(), wins.clone());
                std::thread::spawn(move || {
                    for n in issued.iter() {
                        if nonces.take(n, t(1)).is_ok() {
                            wins.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(wins.load(Ordering::Relaxed), 200);
        assert_eq!(nonces.outstanding(), 0);
    }

    #[test]
    fn issued_nonces_differ() {
        let nonces = Nonces::default();
        let a = nonces.issue(t(0), TTL).unwrap();
        let b = nonces.issue(t(0), TTL).unwrap();
        assert_ne!(a, b);
    }
}

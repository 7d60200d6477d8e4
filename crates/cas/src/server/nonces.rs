//! Attestation nonces: stateless to issue, remembered only once used.
//!
//! # Format
//!
//! ```text
//! nonce = issued: u64 BE (ms since the Unix epoch) ‖ random: 16 bytes ‖ tag: 32 bytes
//! tag   = HMAC-SHA-256(key, "cloister-nonce-v1" ‖ issued ‖ random)
//! ```
//!
//! Issuing a nonce stores nothing: `POST /v1/nonce` costs one HMAC and 16 random bytes, however
//! many nonces a client asks for. Using one checks, in this order: the tag (in constant time; a
//! nonce the CAS did not make is *unknown*), its age (older than [`CasConfig::nonce_ttl`]:
//! *expired*; dated more than [`MAX_SKEW`] ahead of the CAS's clock: *unknown*), and that it was
//! not used before (*unknown or already used*). Only used nonces are remembered, each until it
//! expires, when its age alone refuses it.
//!
//! # The key: random per process
//!
//! The MAC key is 64 random bytes made when the CAS starts, never derived from the master key.
//! The used set lives in memory, so a key that survived a restart would make every nonce used
//! before the restart acceptable again for the rest of its TTL. With a per-process key a restart
//! invalidates every outstanding nonce instead: they are *unknown*, refused like used ones, and a
//! nonce is never accepted twice, before or after a restart. The only cost is that workloads
//! which asked for a nonce in the last TTL ask again.
//!
//! One CAS process owns a data directory (the store's file is locked). A CAS replicated over a
//! shared store must route a workload's nonce and attest requests to the same replica.
//!
//! # Bounds
//!
//! The used set holds at most [`CasConfig::max_used_nonces`] entries (24 bytes of key each, plus
//! the tree's overhead); entries leave when they expire, in expiry order, amortised O(log n) per
//! use. What fills it is bounded by the per-client rate limits on `POST /v1/attest` times the TTL.
//! When it is full, a new attestation is refused with 503 (the nonce is not consumed) rather than
//! a used nonce forgotten: a replay is never accepted.
//!
//! [`CasConfig::nonce_ttl`]: crate::config::CasConfig::nonce_ttl
//! [`CasConfig::max_used_nonces`]: crate::config::CasConfig::max_used_nonces

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use crate::NonceRejection;

/// How far ahead of the CAS's clock a nonce may be dated (the clock stepped back a little).
pub const MAX_SKEW: Duration = Duration::from_secs(2);
/// The length of a nonce: 8 bytes of time, 16 random, a 32-byte tag.
pub const NONCE_LEN: usize = 8 + RANDOM_LEN + TAG_LEN;
const RANDOM_LEN: usize = 16;
const TAG_LEN: usize = 32;
/// The MAC key: SHA-256's block size, 512 random bits.
const KEY_LEN: usize = 64;
/// Domain separation of the tag (the key is used for nothing else, but it costs nothing).
const CONTEXT: &[u8] = b"cloister-nonce-v1";

/// Why a nonce could not be used.
#[derive(Debug, PartialEq, Eq)]
pub enum TakeError {
    /// The nonce is refused: the workload asks for a fresh one.
    Rejected(NonceRejection),
    /// The used set is full: the nonce is valid but cannot be remembered, so it is not accepted
    /// (and not consumed); the caller answers 503.
    Full,
}

impl From<NonceRejection> for TakeError {
    fn from(r: NonceRejection) -> Self {
        TakeError::Rejected(r)
    }
}

/// The operating system's random generator failed.
#[derive(Debug, PartialEq, Eq)]
pub struct RandomFailed;

/// Issues and checks nonces; remembers the used ones until they expire.
pub struct Nonces {
    /// Keyed with the per-process key; cloned per use (the key schedule is done once).
    mac: Hmac<Sha256>,
    ttl: Duration,
    capacity: usize,
    /// Used nonces as (issued ms, random), ordered by issue time so expired ones leave first.
    used: Mutex<BTreeSet<(u64, [u8; RANDOM_LEN])>>,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is not shown.
        f.debug_struct("Nonces")
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .field("used", &self.used())
            .finish_non_exhaustive()
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Nonces {
    /// Nonces valid for `ttl`, at most `capacity` used ones remembered, under a fresh random key.
    pub fn new(ttl: Duration, capacity: usize) -> Result<Self, RandomFailed> {
        let mut key = zeroize::Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(key.as_mut()).map_err(|_| RandomFailed)?;
        Ok(Self::with_key(&key, ttl, capacity))
    }

    fn with_key(key: &[u8; KEY_LEN], ttl: Duration, capacity: usize) -> Self {
        Self {
            // A key of exactly SHA-256's block size: infallible, used as is by HMAC.
            mac: <Hmac<Sha256> as KeyInit>::new(key.into()),
            ttl,
            capacity,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    fn tagger(&self, issued: &[u8; 8], random: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(CONTEXT);
        mac.update(issued);
        mac.update(random);
        mac
    }

    /// A fresh nonce issued at `now`. Stores nothing.
    pub fn issue(&self, now: SystemTime) -> Result<[u8; NONCE_LEN], RandomFailed> {
        let mut nonce = [0u8; NONCE_LEN];
        let issued = millis(now).to_be_bytes();
        nonce[..8].copy_from_slice(&issued);
        getrandom::fill(&mut nonce[8..8 + RANDOM_LEN]).map_err(|_| RandomFailed)?;
        let tag = self
            .tagger(&issued, &nonce[8..8 + RANDOM_LEN])
            .finalize()
            .into_bytes();
        nonce[8 + RANDOM_LEN..].copy_from_slice(&tag);
        Ok(nonce)
    }

    /// When a nonce issued at `now` expires.
    pub fn expires(&self, now: SystemTime) -> SystemTime {
        now + self.ttl
    }

    /// Uses `nonce` at `now`: succeeds once for a nonce this process issued less than a TTL ago.
    pub fn take(&self, nonce: &[u8], now: SystemTime) -> Result<(), TakeError> {
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| NonceRejection::Unknown)?;
        let (issued, rest) = nonce.split_at(8);
        let (random, tag) = rest.split_at(RANDOM_LEN);
        let issued: [u8; 8] = issued.try_into().map_err(|_| NonceRejection::Unknown)?;
        let random: [u8; RANDOM_LEN] = random.try_into().map_err(|_| NonceRejection::Unknown)?;
        // `verify_slice` compares in constant time.
        self.tagger(&issued, &random)
            .verify_slice(tag)
            .map_err(|_| NonceRejection::Unknown)?;
        let issued = u64::from_be_bytes(issued);
        let now = millis(now);
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let skew = u64::try_from(MAX_SKEW.as_millis()).unwrap_or(u64::MAX);
        if issued > now.saturating_add(skew) {
            return Err(NonceRejection::Unknown.into());
        }
        if now >= issued.saturating_add(ttl) {
            return Err(NonceRejection::Expired.into());
        }
        let mut used = self.lock();
        // Forget used nonces that expired: their age refuses them now.
        while let Some(&(first, _)) = used.first() {
            if now < first.saturating_add(ttl) {
                break;
            }
            used.pop_first();
        }
        if used.contains(&(issued, random)) {
            return Err(NonceRejection::Unknown.into());
        }
        if used.len() >= self.capacity {
            return Err(TakeError::Full);
        }
        used.insert((issued, random));
        Ok(())
    }

    /// How many used nonces are remembered.
    pub fn used(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, [u8; RANDOM_LEN])>> {
        // Every critical section leaves the set consistent (no panics between updates).
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

    fn nonces() -> Nonces {
        Nonces::new(TTL, 1000).unwrap()
    }

    const UNKNOWN: Result<(), TakeError> = Err(TakeError::Rejected(NonceRejection::Unknown));
    const EXPIRED: Result<(), TakeError> = Err(TakeError::Rejected(NonceRejection::Expired));

    #[test]
    fn single_use() {
        let nonces = nonces();
        let n = nonces.issue(t(0)).unwrap();
        assert_eq!(nonces.take(&n, t(1)), Ok(()));
        assert_eq!(nonces.take(&n, t(1)), UNKNOWN);
        assert_eq!(nonces.used(), 1);
    }

    #[test]
    fn unknown_and_malformed_are_refused() {
        let nonces = nonces();
        assert_eq!(nonces.take(&[7; NONCE_LEN], t(0)), UNKNOWN);
        assert_eq!(nonces.take(&[7; 32], t(0)), UNKNOWN);
        assert_eq!(nonces.take(&[], t(0)), UNKNOWN);
        assert_eq!(nonces.used(), 0);
    }

    /// Every byte of a nonce is covered by the tag: time, randomness and the tag itself.
    #[test]
    fn a_tampered_nonce_is_unknown() {
        let nonces = nonces();
        let n = nonces.issue(t(10)).unwrap();
        for i in 0..NONCE_LEN {
            let mut bad = n;
            bad[i] ^= 0x01;
            assert_eq!(nonces.take(&bad, t(11)), UNKNOWN, "byte {i}");
        }
        // Backdating to dodge the used set, or postdating to extend the TTL, breaks the tag.
        let mut later = n;
        later[..8].copy_from_slice(&(millis(t(50))).to_be_bytes());
        assert_eq!(nonces.take(&later, t(80)), UNKNOWN);
        assert_eq!(nonces.take(&n, t(11)), Ok(()));
    }

    #[test]
    fn a_nonce_from_another_key_is_unknown() {
        let other = Nonces::with_key(&[9; KEY_LEN], TTL, 10);
        let n = other.issue(t(0)).unwrap();
        assert_eq!(other.take(&n, t(1)), Ok(()));
        assert_eq!(nonces().take(&n, t(1)), UNKNOWN);
    }

    #[test]
    fn expiry_and_skew() {
        let nonces = nonces();
        let n = nonces.issue(t(0)).unwrap();
        // Valid up to (not including) its expiry.
        assert_eq!(nonces.take(&n, t(60)), EXPIRED);
        assert_eq!(nonces.take(&n, t(1000)), EXPIRED);
        // Issued before a small clock step back: accepted.
        let n = nonces.issue(t(101)).unwrap();
        assert_eq!(nonces.take(&n, t(100)), Ok(()));
        // Dated further ahead than MAX_SKEW (the clock stepped back more): unknown.
        let n = nonces.issue(t(200)).unwrap();
        assert_eq!(nonces.take(&n, t(197)), UNKNOWN);
        assert_eq!(nonces.used(), 1);
    }

    #[test]
    fn used_nonces_are_forgotten_when_they_expire() {
        let nonces = nonces();
        let a = nonces.issue(t(0)).unwrap();
        let b = nonces.issue(t(30)).unwrap();
        nonces.take(&a, t(31)).unwrap();
        nonces.take(&b, t(31)).unwrap();
        assert_eq!(nonces.used(), 2);
        let c = nonces.issue(t(60)).unwrap();
        nonces.take(&c, t(60)).unwrap();
        assert_eq!(nonces.used(), 2, "a expired and left, b and c are kept");
        // a is now refused by its age, not by memory.
        assert_eq!(nonces.take(&a, t(61)), EXPIRED);
        assert_eq!(nonces.take(&b, t(61)), UNKNOWN);
    }

    #[test]
    fn a_full_used_set_refuses_rather_than_forgets() {
        let nonces = Nonces::new(TTL, 3).unwrap();
        let used: Vec<_> = (0..3).map(|_| nonces.issue(t(0)).unwrap()).collect();
        for n in &used {
            nonces.take(n, t(1)).unwrap();
        }
        let fresh = nonces.issue(t(1)).unwrap();
        assert_eq!(nonces.take(&fresh, t(2)), Err(TakeError::Full));
        // Replays are still refused; the refused fresh nonce was not consumed.
        for n in &used {
            assert_eq!(nonces.take(n, t(2)), UNKNOWN);
        }
        assert_eq!(nonces.used(), 3);
        // Once the used ones expire there is room again, and `fresh` is still good.
        assert_eq!(nonces.take(&fresh, t(60)), Ok(()));
        assert_eq!(nonces.used(), 1);
    }

    #[test]
    fn a_restart_forgets_outstanding_nonces() {
        let before = nonces();
        let n = before.issue(t(0)).unwrap();
        drop(before);
        let after = nonces();
        assert_eq!(after.take(&n, t(1)), UNKNOWN);
    }

    /// Issuing is stateless: a million nonces leave nothing behind.
    #[test]
    fn issuing_a_million_nonces_stores_nothing() {
        let nonces = nonces();
        let mut last = [0u8; NONCE_LEN];
        for i in 0..1_000_000 {
            last = nonces.issue(t(i / 100_000)).unwrap();
        }
        assert_eq!(nonces.used(), 0);
        assert_eq!(nonces.take(&last, t(10)), Ok(()));
    }

    #[test]
    fn concurrent_takes_succeed_exactly_once() {
        let nonces = Arc::new(Nonces::new(TTL, 1000).unwrap());
        let issued: Vec<_> = (0..200).map(|_| nonces.issue(t(0)).unwrap()).collect();
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
        assert_eq!(nonces.used(), 200);
    }

    #[test]
    fn issued_nonces_differ() {
        let nonces = nonces();
        let a = nonces.issue(t(0)).unwrap();
        let b = nonces.issue(t(0)).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), NONCE_LEN);
    }
}

//! Signatures of state-changing signed requests already accepted, remembered until their
//! timestamp leaves the window so that none is accepted twice (see the API docs, "Signed
//! requests").
//!
//! Ed25519 signatures are verified strictly (no malleable second encoding), so one signed
//! request has one signature: remembering its SHA-256 is enough. The table is in memory: a
//! restart forgets it, which re-opens at most one window for the requests signed just before
//! it. It is bounded; when full of unexpired entries the request is refused as unavailable
//! rather than anything forgotten early.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

/// Why a signature was not remembered.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    /// It was used before.
    Replayed,
    /// The table is full.
    Full,
}

/// The remembered signatures: SHA-256 of the signature → expiry (Unix seconds).
#[derive(Debug)]
pub struct UsedSignatures {
    max: usize,
    seen: Mutex<HashMap<[u8; 32], u64>>,
}

impl UsedSignatures {
    /// A table holding at most `max` signatures.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Remembers `sig` until `expires`, unless it is remembered already (at `now`).
    pub fn remember(&self, sig: &[u8; 64], expires: u64, now: u64) -> Result<(), Refused> {
        let key: [u8; 32] = Sha256::digest(sig).into();
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(&until) = seen.get(&key)
            && until >= now
        {
            return Err(Refused::Replayed);
        }
        if seen.len() >= self.max {
            seen.retain(|_, until| *until >= now);
            if seen.len() >= self.max {
                return Err(Refused::Full);
            }
        }
        seen.insert(key, expires);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_is_accepted_once_until_it_expires() {
        let used = UsedSignatures::new(2);
        assert_eq!(used.remember(&[1; 64], 100, 0), Ok(()));
        assert_eq!(used.remember(&[1; 64], 100, 50), Err(Refused::Replayed));
        assert_eq!(used.remember(&[2; 64], 100, 50), Ok(()));
        // Full of unexpired signatures: refused, nothing forgotten.
        assert_eq!(used.remember(&[3; 64], 100, 50), Err(Refused::Full));
        assert_eq!(used.remember(&[1; 64], 100, 60), Err(Refused::Replayed));
        // Once expired they make room.
        assert_eq!(used.remember(&[3; 64], 300, 101), Ok(()));
    }
}

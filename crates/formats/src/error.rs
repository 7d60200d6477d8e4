//! The one error type of this crate, grouped by whose fault it is.

/// What went wrong parsing, unwrapping or opening bytes that came back from storage.
///
/// Each variant has a namesake in `cloister_engine::Error`, which converts it one to one (so the
/// engine's callers and tests keep matching the same variants). The enum is deliberately not
/// `#[non_exhaustive]`: a new variant must break that conversion until the engine maps it.
/// Messages name key *ids*, never key bytes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ----- invalid input -----
    /// Parquet key metadata that claims to be key-management-tools material does not parse.
    #[error("malformed key material: {reason}")]
    MalformedKeyMaterial {
        /// What is wrong with it.
        reason: String,
    },

    // ----- rejected -----
    /// A wrapped key did not authenticate under its master (or key-encryption) key: the key is
    /// wrong or the key material was tampered with.
    #[error("cannot unwrap a data key with {wrapping_key:?}: wrong key or tampered key material")]
    UnwrapFailed {
        /// Id of the key that should have unwrapped it.
        wrapping_key: String,
    },
    /// An encrypted spill file failed its integrity check: tampered, truncated or reordered.
    #[error("spill file integrity check failed at chunk {chunk}: {reason}")]
    SpillIntegrity {
        /// Index of the chunk where the check failed.
        chunk: u64,
        /// What failed.
        reason: &'static str,
    },

    // ----- unsupported -----
    /// A feature of the format that Cloister does not implement.
    #[error("not supported: {feature}")]
    Unsupported {
        /// What is not supported.
        feature: &'static str,
    },

    // ----- bug -----
    /// An invariant of this crate broke (or the system random generator failed).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Error::MalformedKeyMaterial {
            reason: reason.into(),
        }
    }
}

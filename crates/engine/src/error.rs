//! The one error type of this crate, grouped by whose fault it is.
//!
//! At DataFusion's trait boundaries ([`EncryptionFactory`](datafusion::execution::parquet_encryption::EncryptionFactory),
//! `TempFileFactory`, `SpillFile`) an [`Error`] travels inside `DataFusionError::External`
//! (or `ParquetError::External` for the Parquet key retriever); [`Error::find_in`] digs it out
//! again, so that callers and tests match variants, not strings.

use datafusion::error::DataFusionError;

use crate::rules::Rule;

/// What went wrong in the engine's cryptographic data plane.
///
/// Variants are grouped by fault: the caller's input (options, key material) is invalid; it is
/// well-formed but rejected (unknown key, wrong key, tampered data, refused statement); the
/// feature is not supported by the Parquet implementation underneath; something the engine needs
/// is unavailable (disk, quota); a bug. Messages name key *ids*, never key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- invalid input -----
    /// A key has a length that no AES variant uses.
    #[error("key {key_id:?} has {len} bytes; AES keys have 16, 24 or 32")]
    InvalidKeyLength {
        /// The key's id.
        key_id: String,
        /// Its length in bytes.
        len: usize,
    },
    /// An encryption-factory option is unknown or has an invalid value.
    #[error("invalid encryption option {option:?}: {reason}")]
    InvalidOption {
        /// The option's name (as given after `format.crypto.factory_options.`).
        option: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A store setting (or a credential it needs) is missing; named by the setting the caller
    /// gives, e.g. `AZURE_BLOB_SAS_TOKEN`. Raised before any request is made.
    #[error("{store} store: {setting} is missing ({hint})")]
    MissingStoreSetting {
        /// Which kind of store.
        store: &'static str,
        /// The missing setting.
        setting: String,
        /// What to give.
        hint: &'static str,
    },
    /// A store setting is invalid. The reason never quotes a credential.
    #[error("{store} store: invalid {setting}: {reason}")]
    InvalidStoreSetting {
        /// Which kind of store.
        store: &'static str,
        /// The invalid setting.
        setting: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A SQL app is malformed: no scripts, a duplicate or badly named script, a bad
    /// placeholder, SQL that does not parse.
    #[error("invalid SQL app: {reason}")]
    InvalidApp {
        /// What is wrong, naming the script.
        reason: String,
    },
    /// A script uses a `${NAME}` placeholder for which no value was provided.
    #[error("script {script:?} uses ${{{name}}}, which is not set")]
    UnsetVariable {
        /// The script.
        script: String,
        /// The variable.
        name: String,
    },
    /// Parquet key metadata that claims to be key-management-tools material does not parse.
    #[error("malformed key material: {reason}")]
    MalformedKeyMaterial {
        /// What is wrong with it.
        reason: String,
    },

    // ----- rejected -----
    /// No key with this id is known to the key provider.
    #[error("unknown key id {key_id:?}")]
    UnknownKey {
        /// The id asked for.
        key_id: String,
    },
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
    /// A SQL statement would weaken the engine's protections and is refused.
    #[error("statement refused by rule \"{rule}\": {detail}")]
    StatementRefused {
        /// The rule that refused it.
        rule: Rule,
        /// What in the statement broke the rule.
        detail: String,
    },

    /// A variable may not be bound into SQL: its name looks like a secret, or its value is
    /// too long, has a control character or does not fit the placeholder's type.
    #[error("variable {name:?} refused: {reason}")]
    VariableRefused {
        /// The variable.
        name: String,
        /// Why (never the value).
        reason: &'static str,
    },

    // ----- unsupported -----
    /// A Parquet encryption feature the underlying Parquet implementation does not have.
    #[error("not supported: {feature}")]
    Unsupported {
        /// What is not supported.
        feature: &'static str,
    },

    // ----- unavailable -----
    /// Encrypted spill files would exceed the configured disk quota.
    #[error("encrypted spill files would exceed the quota of {limit} bytes")]
    SpillQuotaExceeded {
        /// The quota in bytes.
        limit: u64,
    },
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// An object store request failed (unreachable, refused, not found).
    #[error("{context}: {source}")]
    ObjectStore {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: object_store::Error,
    },

    // ----- bug -----
    /// An invariant of this crate broke (or the system random generator failed).
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// Who is at fault for an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The caller's options or the data are invalid, or were rejected.
    Input,
    /// The request needs a feature the Parquet implementation lacks.
    Unsupported,
    /// Something the engine needs (disk, quota) is unavailable.
    Environment,
    /// A bug in this crate.
    Internal,
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Unsupported { .. } => Fault::Unsupported,
            Error::SpillQuotaExceeded { .. } | Error::Io { .. } | Error::ObjectStore { .. } => {
                Fault::Environment
            }
            Error::Internal(_) => Fault::Internal,
            _ => Fault::Input,
        }
    }

    /// Find this crate's error in the source chain of `err` (for example a `DataFusionError`
    /// that carries it as `External`, possibly inside a `ParquetError` or an `io::Error`).
    pub fn find_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Error> {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
        while let Some(e) = current {
            if let Some(found) = e.downcast_ref::<Error>() {
                return Some(found);
            }
            // `io::Error::other(inner)` reports no source of its own; look inside it.
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && let Some(inner) = io.get_ref()
                && let Some(found) = Error::find_in(inner)
            {
                return Some(found);
            }
            current = e.source();
        }
        None
    }

    pub(crate) fn option(option: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidOption {
            option: option.into(),
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        Error::MalformedKeyMaterial {
            reason: reason.into(),
        }
    }
}

/// The formats crate's errors are the engine's namesakes (one to one, no wildcard: a new
/// variant there must be mapped here).
impl From<cloister_formats::Error> for Error {
    fn from(err: cloister_formats::Error) -> Self {
        use cloister_formats::Error as F;
        match err {
            F::MalformedKeyMaterial { reason } => Error::MalformedKeyMaterial { reason },
            F::UnwrapFailed { wrapping_key } => Error::UnwrapFailed { wrapping_key },
            F::SpillIntegrity { chunk, reason } => Error::SpillIntegrity { chunk, reason },
            F::Unsupported { feature } => Error::Unsupported { feature },
            F::Internal(what) => Error::Internal(what),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        DataFusionError::External(Box::new(err))
    }
}

impl From<Error> for datafusion::parquet::errors::ParquetError {
    fn from(err: Error) -> Self {
        datafusion::parquet::errors::ParquetError::External(Box::new(err))
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            Error::SpillIntegrity { .. } => std::io::ErrorKind::InvalidData,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_through_datafusion_and_parquet_wrappers() {
        let inner = Error::UnknownKey {
            key_id: "kc9".into(),
        };
        let parquet: datafusion::parquet::errors::ParquetError = inner.into();
        let df = DataFusionError::ParquetError(Box::new(parquet));
        let df = DataFusionError::Context("reading".into(), Box::new(df));
        assert!(matches!(
            Error::find_in(&df),
            Some(Error::UnknownKey { key_id }) if key_id == "kc9"
        ));
    }

    #[test]
    fn found_inside_io_error() {
        let io: std::io::Error = Error::SpillIntegrity {
            chunk: 3,
            reason: "tag",
        }
        .into();
        let df = DataFusionError::IoError(io);
        assert!(matches!(
            Error::find_in(&df),
            Some(Error::SpillIntegrity { chunk: 3, .. })
        ));
    }

    #[test]
    fn faults() {
        assert_eq!(
            Error::Unsupported { feature: "x" }.fault(),
            Fault::Unsupported
        );
        assert_eq!(Error::Internal("x").fault(), Fault::Internal);
        assert_eq!(
            Error::UnknownKey { key_id: "k".into() }.fault(),
            Fault::Input
        );
    }
}

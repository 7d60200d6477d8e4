//! The crate's one error type, grouped by who is at fault.

use std::path::PathBuf;

/// Everything that can go wrong while generating a data set.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // --- invalid input (the caller's fault) ---
    /// A field of the generation spec is out of range.
    #[error("invalid spec: `{field}` {reason}")]
    InvalidSpec {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A date given as text is not `YYYY-MM-DD`.
    #[error("invalid date {input:?}: expected YYYY-MM-DD")]
    InvalidDate {
        /// The text given.
        input: String,
    },
    /// The output directory already holds a generated file; remove it first (see
    /// [`crate::taxi::clean`]) so that a data set never mixes two runs.
    #[error("output already exists: {}", path.display())]
    OutputExists {
        /// The file found.
        path: PathBuf,
    },

    // --- the environment (disk, permissions, writer settings) ---
    /// Reading or writing a file failed.
    #[error("i/o on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The Parquet writer refused the data or the writer properties (for example invalid
    /// encryption properties), or failed writing.
    #[error("writing parquet {}: {source}", path.display())]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: parquet::errors::ParquetError,
    },

    // --- a bug in this crate ---
    /// A built-in table or distribution is inconsistent: a bug here.
    #[error("internal error: invalid {0}")]
    Bug(&'static str),
    /// Arrow rejected arrays this crate built, or a built-in distribution was invalid: a bug
    /// here.
    #[error("internal error building {what}: {source}")]
    Internal {
        /// What was being built.
        what: &'static str,
        /// The underlying error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io { path, source }
    }

    pub(crate) fn parquet(
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(parquet::errors::ParquetError) -> Self {
        let path = path.into();
        move |source| Self::Parquet { path, source }
    }

    pub(crate) fn internal<E: std::error::Error + Send + Sync + 'static>(
        what: &'static str,
    ) -> impl FnOnce(E) -> Self {
        move |source| Self::Internal {
            what,
            source: Box::new(source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_field_and_path() {
        let e = Error::InvalidSpec {
            field: "rows",
            reason: "must be at least 1".into(),
        };
        assert_eq!(e.to_string(), "invalid spec: `rows` must be at least 1");
        let e = Error::OutputExists {
            path: "/tmp/x.parquet".into(),
        };
        assert_eq!(e.to_string(), "output already exists: /tmp/x.parquet");
    }
}

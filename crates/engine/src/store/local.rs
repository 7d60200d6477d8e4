//! A local directory.

use std::path::{Path, PathBuf};

use url::Url;

use super::LOCAL;
use crate::Error;

/// A local directory holding tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalConfig {
    root: PathBuf,
}

impl LocalConfig {
    /// `root` must be an existing directory; it is made absolute and canonical.
    pub fn new(root: impl AsRef<Path>) -> Result<Self, Error> {
        let root = root.as_ref();
        let invalid = |reason: String| Error::InvalidStoreSetting {
            store: LOCAL,
            setting: "root".into(),
            reason,
        };
        let root =
            std::fs::canonicalize(root).map_err(|e| invalid(format!("{}: {e}", root.display())))?;
        if !root.is_dir() {
            return Err(invalid(format!("{} is not a directory", root.display())));
        }
        Ok(Self { root })
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(super) fn url(&self) -> Url {
        // A canonical absolute path always converts; fall back to the file root otherwise.
        Url::from_directory_path(&self.root).unwrap_or_else(|()| file_root())
    }
}

pub(super) fn file_root() -> Url {
    // A constant, valid URL.
    #[allow(clippy::expect_used)]
    Url::parse("file:///").expect("file:/// is a valid URL")
}

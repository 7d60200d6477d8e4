//! Files and directories only their owner can read: the one place that creates key files
//! (mode `0600`, never overwriting) and data directories (mode `0700`).
//!
//! It lives here because this is the lowest crate that every writer of keys already depends
//! on: `attest` (sim platform keys), `cas` (the master key, the data directory) and the CLI
//! (owner keys, bundle keys). On other platforms than Unix the modes are not set.
//!
//! ```
//! let dir = std::env::temp_dir().join(format!("cloister-doc-{}", std::process::id()));
//! cloister_attest::private_fs::create_dir(&dir.join("data"))?;
//! cloister_attest::private_fs::write_new(&dir.join("data/key"), b"secret")?;
//! // Never overwritten:
//! assert!(cloister_attest::private_fs::write_new(&dir.join("data/key"), b"other").is_err());
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), std::io::Error>(())
//! ```

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

/// Creates the new file `path`, readable and writable by its owner only (`0600`), and returns it
/// open for writing. Fails with `AlreadyExists` if there is a file: keys are never overwritten.
pub fn create_new(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// [`create_new`], then writes `bytes` and flushes them to disk before returning.
pub fn write_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = create_new(path)?;
    file.write_all(bytes).and_then(|()| file.sync_all())
}

/// Creates `dir` and its missing parents with mode `0700`; an existing directory is left as it
/// is.
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn files_are_0600_directories_0700_and_nothing_is_overwritten() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_dir(&dir).unwrap();
        create_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let key = dir.join("key");
        write_new(&key, b"one").unwrap();
        assert_eq!(mode(&key), 0o600);
        let err = write_new(&key, b"two").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&key).unwrap(), b"one");
    }
}

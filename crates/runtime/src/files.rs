//! The files the configuration injects, in memory and, where a tmpfs is at hand, in a private
//! directory that is removed when the files are dropped or the process is told to stop.
//!
//! A policy's files have absolute paths (`/etc/app/token`). The runtime never writes them there:
//! it keeps every file in memory, and with [`FilesMode::Auto`] (the default) also writes them
//! under a fresh `0700` directory on `/dev/shm` (memory-backed on Linux), at the same path below
//! it (`/dev/shm/cloister-XXXXXX/etc/app/token`), each with the policy's mode. Roles that run
//! programs point them at [`InjectedFiles::dir`] (children get it as `CLOISTER_FILES_DIR`).
//!
//! The directory goes away when [`InjectedFiles`] is dropped — at the end of the role, on an
//! error, or while a panic unwinds — and on SIGTERM, SIGINT or SIGHUP: the first private
//! directory installs a handler thread that removes every live one, then ends the process as the
//! signal would have. Only SIGKILL (and a power cut, which a tmpfs survives no better) leaves
//! one behind.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cloister_cas::client::ConfigFile;
use secrecy::{ExposeSecret as _, SecretString};

use crate::Error;

/// Where the tmpfs is looked for.
pub const SHM: &str = "/dev/shm";
/// The variable that tells a child process where the injected files are.
pub const FILES_DIR_ENV: &str = "CLOISTER_FILES_DIR";

/// Where injected files are kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FilesMode {
    /// In memory, and in a private directory on `/dev/shm` when one can be made there (in
    /// memory only otherwise).
    #[default]
    Auto,
    /// In memory only: no directory, nothing on any file system.
    Memory,
    /// In memory, and in a private directory created under this one (which should be a tmpfs).
    Under(PathBuf),
}

/// One injected file.
pub struct InjectedFile {
    /// Its content (may hold secrets).
    pub content: SecretString,
    /// Its permission bits.
    pub mode: u32,
}

impl fmt::Debug for InjectedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InjectedFile")
            .field("content_len", &self.content.expose_secret().len())
            .field("mode", &format_args!("{:04o}", self.mode))
            .finish()
    }
}

/// The injected files: in memory, and in a private directory when there is one.
#[derive(Debug)]
pub struct InjectedFiles {
    files: BTreeMap<PathBuf, InjectedFile>,
    dir: Option<PrivateDir>,
}

impl InjectedFiles {
    /// Keep `files` as `mode` says. Paths must be absolute with plain components.
    #[tracing::instrument(skip_all, fields(files = files.len()))]
    pub fn materialise(files: Vec<ConfigFile>, mode: &FilesMode) -> Result<Self, Error> {
        let mut kept = BTreeMap::new();
        for file in files {
            let shown = file.path.display().to_string();
            relative(&file.path)?;
            let injected = InjectedFile {
                content: file.content,
                mode: file.mode & 0o777,
            };
            if kept.insert(file.path, injected).is_some() {
                return Err(Error::UnsafePath {
                    path: shown,
                    reason: "injected twice",
                });
            }
        }
        let dir = match mode {
            _ if kept.is_empty() => None,
            FilesMode::Memory => None,
            FilesMode::Under(parent) => Some(PrivateDir::create(parent, &kept)?),
            FilesMode::Auto => {
                let shm = Path::new(SHM);
                if shm.is_dir() {
                    // Best effort: the files are in memory whatever happens here.
                    PrivateDir::create(shm, &kept)
                        .inspect_err(|e| {
                            tracing::warn!(error = %e, "injected files are kept in memory only");
                        })
                        .ok()
                } else {
                    tracing::info!("no {SHM}: injected files are kept in memory only");
                    None
                }
            }
        };
        Ok(Self { files: kept, dir })
    }

    /// The private directory holding the files, when there is one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path.as_path())
    }

    /// Where the file the policy names `policy_path` is on this machine, when there is a
    /// directory.
    pub fn host_path(&self, policy_path: &Path) -> Option<PathBuf> {
        let dir = self.dir()?;
        self.files.contains_key(policy_path).then(|| {
            // Checked when kept.
            dir.join(relative(policy_path).unwrap_or_default())
        })
    }

    /// The file the policy names `policy_path`.
    pub fn get(&self, policy_path: &Path) -> Option<&InjectedFile> {
        self.files.get(policy_path)
    }

    /// The policy's paths of every file.
    pub fn paths(&self) -> impl Iterator<Item = &Path> {
        self.files.keys().map(PathBuf::as_path)
    }

    /// How many files there are.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// An absolute policy path as a relative one, refusing anything but plain components.
fn relative(path: &Path) -> Result<PathBuf, Error> {
    let refuse = |reason| Error::UnsafePath {
        path: path.display().to_string(),
        reason,
    };
    let mut components = path.components();
    if components.next() != Some(Component::RootDir) {
        return Err(refuse("an injected file's path must be absolute"));
    }
    let mut out = PathBuf::new();
    for c in components {
        match c {
            Component::Normal(part) => out.push(part),
            _ => return Err(refuse("a `.` or `..` component")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(refuse("no file name"));
    }
    Ok(out)
}

/// A `0700` directory removed on drop and on termination signals.
struct PrivateDir {
    path: PathBuf,
    registration: u64,
}

impl fmt::Debug for PrivateDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PrivateDir").field(&self.path).finish()
    }
}

impl PrivateDir {
    fn create(parent: &Path, files: &BTreeMap<PathBuf, InjectedFile>) -> Result<Self, Error> {
        use std::io::Write as _;
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};

        // A random name, created 0700 atomically (the umask can only take bits away).
        let path = tempfile::Builder::new()
            .prefix("cloister-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(|e| Error::io("create a private directory in", parent, e))?
            .keep();
        // Registered before anything is written, so that a signal from now on removes it.
        let dir = Self {
            registration: cleanup::register(path.clone()),
            path,
        };
        for (policy_path, file) in files {
            let target = dir.path.join(relative(policy_path)?);
            if let Some(parent) = target.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(parent)
                    .map_err(|e| Error::io("create", parent, e))?;
            }
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&target)
                .map_err(|e| Error::io("create", &target, e))?;
            out.write_all(file.content.expose_secret().as_bytes())
                .map_err(|e| Error::io("write", &target, e))?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
                .map_err(|e| Error::io("set the mode of", &target, e))?;
        }
        tracing::debug!(dir = %dir.path.display(), files = files.len(), "injected files written");
        Ok(dir)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        cleanup::unregister(self.registration);
        remove(&self.path);
    }
}

/// Remove a private directory (its entries may be read-only: the directories are `0700`).
fn remove(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() || !path.exists() {
        return;
    }
    tracing::warn!(dir = %path.display(), "could not remove the injected files directory");
}

/// The live private directories, and the signal thread that removes them.
mod cleanup {
    use super::*;

    fn live() -> &'static Mutex<BTreeMap<u64, PathBuf>> {
        static LIVE: OnceLock<Mutex<BTreeMap<u64, PathBuf>>> = OnceLock::new();
        LIVE.get_or_init(|| Mutex::new(BTreeMap::new()))
    }

    fn lock() -> std::sync::MutexGuard<'static, BTreeMap<u64, PathBuf>> {
        // A panic while holding the lock leaves the map usable.
        live()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn register(path: PathBuf) -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        install();
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        lock().insert(id, path);
        id
    }

    pub(super) fn unregister(id: u64) {
        lock().remove(&id);
    }

    /// Start the signal thread, once per process.
    fn install() {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
            let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP])
            {
                Ok(signals) => signals,
                Err(e) => {
                    tracing::warn!(error = %e, "no signal handler: injected files are removed on exit only");
                    return;
                }
            };
            let spawned = std::thread::Builder::new()
                .name("cloister-cleanup".into())
                .spawn(move || {
                    if let Some(signal) = signals.forever().next() {
                        let dirs: Vec<PathBuf> = lock().values().cloned().collect();
                        for dir in &dirs {
                            remove(dir);
                        }
                        // End as the signal would have; if that fails, the shell's convention.
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                        std::process::exit(128 + signal);
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no signal thread: injected files are removed on exit only");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn file(path: &str, content: &str, mode: u32) -> ConfigFile {
        ConfigFile {
            path: path.into(),
            content: SecretString::from(content),
            mode,
        }
    }

    #[test]
    fn files_are_written_privately_and_removed_on_drop() {
        let parent = tempfile::tempdir().unwrap();
        let files = InjectedFiles::materialise(
            vec![
                file("/etc/app/token", "CANARY-token", 0o400),
                file("/etc/app/conf/app.toml", "x = 1", 0o644),
            ],
            &FilesMode::Under(parent.path().to_path_buf()),
        )
        .unwrap();
        let dir = files.dir().unwrap().to_path_buf();
        assert!(dir.starts_with(parent.path()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        let token = files.host_path(Path::new("/etc/app/token")).unwrap();
        assert_eq!(token, dir.join("etc/app/token"));
        assert_eq!(std::fs::read_to_string(&token).unwrap(), "CANARY-token");
        assert_eq!(mode(&token), 0o400);
        assert_eq!(mode(&dir.join("etc/app")), 0o700);
        assert_eq!(mode(&dir.join("etc/app/conf/app.toml")), 0o644);
        assert_eq!(files.len(), 2);
        assert!(files.host_path(Path::new("/etc/other")).is_none());

        // Debug shows paths and sizes only.
        let debug = format!("{files:?}");
        assert!(!debug.contains("CANARY"), "{debug}");

        drop(files);
        assert!(!dir.exists(), "the private directory outlived its files");
    }

    #[test]
    fn auto_mode_uses_dev_shm_when_there_is_one() {
        let files =
            InjectedFiles::materialise(vec![file("/etc/app/token", "t", 0o400)], &FilesMode::Auto)
                .unwrap();
        match files.dir() {
            Some(dir) => {
                let dir = dir.to_path_buf();
                assert!(dir.starts_with(SHM), "{}", dir.display());
                drop(files);
                assert!(!dir.exists());
            }
            None => assert!(!Path::new(SHM).is_dir(), "{SHM} exists but was not used"),
        }
    }

    #[test]
    fn memory_mode_writes_nothing() {
        let files = InjectedFiles::materialise(
            vec![file("/etc/app/token", "t", 0o400)],
            &FilesMode::Memory,
        )
        .unwrap();
        assert!(files.dir().is_none());
        assert!(files.host_path(Path::new("/etc/app/token")).is_none());
        assert_eq!(
            files
                .get(Path::new("/etc/app/token"))
                .unwrap()
                .content
                .expose_secret(),
            "t"
        );
    }

    #[test]
    fn no_files_no_directory() {
        let parent = tempfile::tempdir().unwrap();
        let files =
            InjectedFiles::materialise(vec![], &FilesMode::Under(parent.path().into())).unwrap();
        assert!(files.dir().is_none() && files.is_empty());
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[rstest::rstest]
    #[case::relative("etc/app/token")]
    #[case::dot_dot("/etc/../../token")]
    #[case::root("/")]
    fn unsafe_paths_are_refused_before_anything_is_written(#[case] path: &str) {
        let parent = tempfile::tempdir().unwrap();
        let err = InjectedFiles::materialise(
            vec![file("/etc/ok", "x", 0o600), file(path, "x", 0o600)],
            &FilesMode::Under(parent.path().into()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_write_leaves_no_directory() {
        // A file and a directory at the same path: the second write fails.
        let parent = tempfile::tempdir().unwrap();
        let err = InjectedFiles::materialise(
            vec![
                file("/etc/app", "x", 0o600),
                file("/etc/app/token", "y", 0o600),
            ],
            &FilesMode::Under(parent.path().into()),
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err:?}");
        assert_eq!(std::fs::read_dir(parent.path()).unwrap().count(), 0);
    }
}

//! Test doubles for the TEE interfaces: a fake configfs-tsm kernel and a fake Gramine
//! `/dev/attestation`, laid out in a temp directory.
//!
//! What is simulated, and how: the kernel and Gramine produce `outblob` / `quote` when they are
//! read, from what was just written to `inblob` / `user_report_data`. A regular file cannot do
//! that, so those two are named pipes (FIFOs) served by a thread: when the collector opens one
//! for reading, the thread reads the input file, builds a report of the right size with the
//! input where the real format carries `report_data`, and writes it. Nothing is signed: the
//! reports are placeholders with real layouts, enough to show the bytes flow through. A real
//! configfs also creates the attribute files itself on `mkdir`; [`FakeKernel`] does it in its
//! `create`, which the collector calls where it would `mkdir`.

use super::tsm::Entries;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// `O_NONBLOCK` on x86-64 and AArch64 Linux.
const O_NONBLOCK: i32 = 0o4000;
/// `ENXIO`: opening a FIFO for writing without blocking while it has no reader.
const ENXIO: i32 = 6;

/// A report layout the fakes produce.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Report {
    /// An SEV-SNP attestation report (1184 bytes, `report_data` at 0x50).
    Snp,
    /// A TDX quote v4 (48-byte header, 584-byte TD report body with `report_data` at 520).
    TdxQuote,
    /// An SGX quote v3 (48-byte header, 384-byte report body with `report_data` at 320).
    SgxQuote,
}

impl Report {
    pub(crate) fn report_data_offset(self) -> usize {
        match self {
            Report::Snp => 0x50,
            Report::TdxQuote => 48 + 520,
            Report::SgxQuote => 48 + 320,
        }
    }

    /// A placeholder report with this layout carrying `report_data` (unsigned: the signature
    /// area is zeros).
    fn build(self, report_data: &[u8]) -> Vec<u8> {
        let (len, header): (usize, &[u8]) = match self {
            // version 3
            Report::Snp => (0x4a0, &[3, 0, 0, 0]),
            // version 4, ECDSA-256 attestation key, TEE type TDX (0x81)
            Report::TdxQuote => (48 + 584 + 4 + 128, &[4, 0, 2, 0, 0x81, 0, 0, 0]),
            // version 3, ECDSA-256 attestation key, TEE type SGX (0)
            Report::SgxQuote => (48 + 384 + 4 + 128, &[3, 0, 2, 0, 0, 0, 0, 0]),
        };
        let mut report = vec![0u8; len];
        report[..header.len()].copy_from_slice(header);
        let at = self.report_data_offset();
        let n = report_data.len().min(64);
        report[at..at + n].copy_from_slice(&report_data[..n]);
        report
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Serves reads of a FIFO from a thread until stopped (on drop).
pub(crate) struct FifoServer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FifoServer {
    /// Serve `path` (created here): each time a reader opens it, write `make()` and close.
    /// With `repeat`, the FIFO is replaced by a fresh one before the writer closes, so the next
    /// reader never sees the previous answer.
    fn start(
        path: PathBuf,
        repeat: bool,
        mut make: impl FnMut() -> Vec<u8> + Send + 'static,
    ) -> Self {
        mkfifo(&path);
        let stop = Arc::new(AtomicBool::new(false));
        let handle = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let opened = fs::OpenOptions::new()
                        .write(true)
                        .custom_flags(O_NONBLOCK)
                        .open(&path);
                    let mut writer = match opened {
                        Ok(writer) => writer,
                        Err(e)
                            if e.raw_os_error() == Some(ENXIO)
                                || e.kind() == io::ErrorKind::NotFound =>
                        {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        Err(e) => panic!("fake cannot open {}: {e}", path.display()),
                    };
                    let answer = make();
                    let mut rest = answer.as_slice();
                    while !rest.is_empty() {
                        match writer.write(rest) {
                            Ok(n) => rest = &rest[n..],
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(1));
                            }
                            Err(e) => panic!("fake cannot write {}: {e}", path.display()),
                        }
                    }
                    if !repeat {
                        return;
                    }
                    let fresh = path.with_extension("next");
                    mkfifo(&fresh);
                    fs::rename(&fresh, &path).unwrap();
                    drop(writer);
                }
            }
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }
}

impl std::fmt::Debug for FifoServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FifoServer").finish_non_exhaustive()
    }
}

impl Drop for FifoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.join().unwrap();
        }
    }
}

/// A configfs-tsm kernel with one provider.
#[derive(Debug)]
pub(crate) struct FakeKernel {
    /// `None`: no provider registered, so creating an entry fails with `ENXIO`.
    provider: Option<String>,
    report: Report,
    with_aux: bool,
    /// Writes by "another process" added to `generation` while a report is produced.
    foreign_writes: AtomicU64,
    created: AtomicUsize,
    /// Each live entry's `outblob` server.
    servers: Mutex<HashMap<PathBuf, FifoServer>>,
}

impl FakeKernel {
    pub(crate) fn new(provider: &str, report: Report, with_aux: bool) -> Self {
        Self {
            provider: Some(provider.to_owned()),
            report,
            with_aux,
            foreign_writes: AtomicU64::new(0),
            created: AtomicUsize::new(0),
            servers: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn without_provider() -> Self {
        Self {
            provider: None,
            ..Self::new("", Report::Snp, false)
        }
    }

    /// From now on, another writer touches each entry while its report is produced.
    pub(crate) fn simulate_concurrent_writer(&self) {
        self.foreign_writes.store(2, Ordering::Relaxed);
    }

    /// How many report entries were created.
    pub(crate) fn entries_created(&self) -> usize {
        self.created.load(Ordering::Relaxed)
    }
}

impl Entries for FakeKernel {
    fn create(&self, entry: &Path) -> io::Result<()> {
        let Some(provider) = &self.provider else {
            return Err(io::Error::from_raw_os_error(ENXIO));
        };
        fs::create_dir(entry)?;
        fs::write(entry.join("provider"), format!("{provider}\n"))?;
        fs::write(entry.join("generation"), "0\n")?;
        fs::write(entry.join("privlevel_floor"), "0\n")?;
        fs::write(entry.join("inblob"), b"")?;
        if self.with_aux {
            fs::write(entry.join("auxblob"), b"fake SNP certificate table")?;
        }
        let report = self.report;
        let foreign = self.foreign_writes.load(Ordering::Relaxed);
        let dir = entry.to_path_buf();
        let server = FifoServer::start(entry.join("outblob"), false, move || {
            let inblob = fs::read(dir.join("inblob")).unwrap();
            // One write (our inblob), plus any by the simulated other process.
            fs::write(dir.join("generation"), format!("{}\n", 1 + foreign)).unwrap();
            report.build(&inblob)
        });
        self.servers
            .lock()
            .unwrap()
            .insert(entry.to_path_buf(), server);
        self.created.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn remove(&self, entry: &Path) -> io::Result<()> {
        // Stop the entry's server first (it may never have been read).
        drop(self.servers.lock().unwrap().remove(entry));
        fs::remove_dir_all(entry)
    }
}

/// Gramine's `/dev/attestation` under `root`, answering `quote` reads with an SGX quote that
/// carries the current `user_report_data`. Dropping it stops the quote server.
pub(crate) fn gramine_tree(root: &Path, attestation_type: &str) -> FifoServer {
    let dir = super::gramine::device_dir(root);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("attestation_type"), attestation_type).unwrap();
    fs::write(dir.join("user_report_data"), b"").unwrap();
    FifoServer::start(dir.join("quote"), true, move || {
        let report_data = fs::read(dir.join("user_report_data")).unwrap();
        Report::SgxQuote.build(&report_data)
    })
}

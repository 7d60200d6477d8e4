//! AMD SEV-SNP and Intel TDX evidence through Linux configfs-tsm (kernel 6.7+).
//!
//! The kernel's interface (`Documentation/ABI/testing/configfs-tsm-report`): `mkdir` a report
//! entry under `/sys/kernel/config/tsm/report/`, which the kernel populates with attributes;
//! write up to 64 bytes to `inblob`; read `outblob`, which makes the TEE produce the report (an
//! SNP attestation report from `sev_guest`, a TDX quote from `tdx_guest`); optionally read
//! `auxblob` (for `sev_guest`, the host-supplied certificate table); `rmdir` the entry.
//! `generation` counts the writes to the entry: it must grow by exactly one (our `inblob`)
//! between the start and the end, or another process wrote to the entry meanwhile. Each
//! collection uses a fresh, uniquely named entry, so that does not happen in practice.
//!
//! `privlevel` (SNP VMPL) is left at the kernel's default, `privlevel_floor`.

use super::{Collector, Evidence, read_limited, write_attribute};
use crate::{Error, EvidenceFormat, Tee};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Where the report entries live, under the filesystem root.
const REPORT_DIR: &str = "sys/kernel/config/tsm/report";
/// The largest `outblob` or `auxblob` read (the kernel's own limit is 32 KiB).
const MAX_BLOB: usize = 1024 * 1024;
/// The interface's name in errors.
const WHAT: &str = "configfs-tsm";
/// `ENXIO`, which `mkdir` returns when no TSM provider is registered (same on every Linux
/// architecture).
const ENXIO: i32 = 6;

pub(super) fn report_dir(root: &Path) -> PathBuf {
    root.join(REPORT_DIR)
}

/// Makes and removes report entries: `mkdir` / `rmdir` on a real configfs, where the kernel
/// populates and empties them; a fake kernel in tests.
pub(super) trait Entries: Send + Sync + fmt::Debug {
    fn create(&self, entry: &Path) -> io::Result<()>;
    fn remove(&self, entry: &Path) -> io::Result<()>;
}

#[derive(Debug)]
struct Configfs;

impl Entries for Configfs {
    fn create(&self, entry: &Path) -> io::Result<()> {
        std::fs::create_dir(entry)
    }

    fn remove(&self, entry: &Path) -> io::Result<()> {
        std::fs::remove_dir(entry)
    }
}

/// Collects SEV-SNP reports or TDX quotes through configfs-tsm.
#[derive(Clone, Debug)]
pub struct TsmCollector {
    reports: PathBuf,
    provider: String,
    tee: Tee,
    entries: Arc<dyn Entries>,
}

impl TsmCollector {
    /// Open configfs-tsm under `root` (`/` outside tests) and learn its provider, by creating
    /// and removing one report entry.
    ///
    /// [`Error::Unavailable`] when the interface or a provider is missing,
    /// [`Error::Unsupported`] for a provider other than `sev_guest` and `tdx_guest`.
    pub fn new(root: PathBuf) -> Result<Self, Error> {
        Self::with_entries(&root, Arc::new(Configfs))
    }

    pub(super) fn with_entries(root: &Path, entries: Arc<dyn Entries>) -> Result<Self, Error> {
        let reports = report_dir(root);
        if !reports.is_dir() {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: format!(
                    "{} does not exist: this is not a SEV-SNP or TDX confidential VM with Linux 6.7 \
                     or later, or configfs is not mounted (mount -t configfs none /sys/kernel/config)",
                    reports.display()
                ),
            });
        }
        let entry = Entry::create(&reports, entries.as_ref())?;
        let provider = entry.provider()?;
        drop(entry);
        let tee = tee_of(&provider)?;
        Ok(Self {
            reports,
            provider,
            tee,
            entries,
        })
    }

    /// The provider's name: `sev_guest` or `tdx_guest`.
    pub fn provider(&self) -> &str {
        &self.provider
    }
}

impl Collector for TsmCollector {
    fn tee(&self) -> Tee {
        self.tee
    }

    fn provider(&self) -> Option<&str> {
        Some(&self.provider)
    }

    #[tracing::instrument(skip_all, fields(provider = %self.provider))]
    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        let entry = Entry::create(&self.reports, self.entries.as_ref())?;
        let provider = entry.provider()?;
        if provider != self.provider {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: format!("the provider changed from {} to {provider}", self.provider),
            });
        }
        let before = entry.generation()?;
        write_attribute(&entry.path.join("inblob"), report_data)?;
        let outblob = read_limited(&entry.path.join("outblob"), MAX_BLOB)?;
        let aux = entry.auxblob()?;
        let after = entry.generation()?;
        if after != before.wrapping_add(1) {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: format!(
                    "report entry {} changed while in use (generation {before} → {after}, \
                     expected {}): another process wrote to it; retry",
                    entry.path.display(),
                    before.wrapping_add(1)
                ),
            });
        }
        if outblob.is_empty() {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: format!("the {provider} provider returned an empty report"),
            });
        }
        tracing::debug!(
            len = outblob.len(),
            aux_len = aux.as_ref().map_or(0, Vec::len),
            "collected"
        );
        Ok(Evidence {
            tee: self.tee,
            format: format_of(self.tee),
            bytes: outblob,
            provider: Some(provider),
            aux,
        })
    }
}

fn tee_of(provider: &str) -> Result<Tee, Error> {
    match provider {
        "sev_guest" => Ok(Tee::SevSnp),
        "tdx_guest" => Ok(Tee::Tdx),
        other => Err(Error::Unsupported {
            what: "configfs-tsm provider",
            got: other.to_owned(),
        }),
    }
}

fn format_of(tee: Tee) -> EvidenceFormat {
    match tee {
        Tee::SevSnp => EvidenceFormat::SnpReport,
        _ => EvidenceFormat::DcapQuote,
    }
}

/// A report entry, removed on drop.
struct Entry<'a> {
    path: PathBuf,
    entries: &'a dyn Entries,
}

impl<'a> Entry<'a> {
    fn create(reports: &Path, entries: &'a dyn Entries) -> Result<Self, Error> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut attempts = 0;
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = reports.join(format!("cloister-{}-{n}-{nanos}", std::process::id()));
            match entries.create(&path) {
                Ok(()) => return Ok(Self { path, entries }),
                // Another PID namespace may use the same name: take the next one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 16 => {
                    attempts += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(Error::Unavailable {
                        what: WHAT,
                        reason: format!("{} disappeared", reports.display()),
                    });
                }
                Err(e) if e.raw_os_error() == Some(ENXIO) => {
                    return Err(Error::Unavailable {
                        what: WHAT,
                        reason: "no TSM provider is registered: not a confidential VM, or the \
                                 sev-guest / tdx-guest driver is not loaded"
                            .to_owned(),
                    });
                }
                Err(e) => return Err(Error::io(path, e)),
            }
        }
    }

    fn provider(&self) -> Result<String, Error> {
        let bytes = read_limited(&self.path.join("provider"), 256)?;
        Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
    }

    fn generation(&self) -> Result<u64, Error> {
        let bytes = read_limited(&self.path.join("generation"), 64)?;
        let text = String::from_utf8_lossy(&bytes);
        text.trim().parse().map_err(|_| Error::Unavailable {
            what: WHAT,
            reason: format!("generation is not a number: {:?}", text.trim()),
        })
    }

    /// `auxblob`, when the provider has one and it is not empty.
    fn auxblob(&self) -> Result<Option<Vec<u8>>, Error> {
        let path = self.path.join("auxblob");
        if !path.exists() {
            return Ok(None);
        }
        let aux = read_limited(&path, MAX_BLOB)?;
        Ok((!aux.is_empty()).then_some(aux))
    }
}

impl Drop for Entry<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.entries.remove(&self.path) {
            tracing::warn!(entry = %self.path.display(), error = %e, "cannot remove configfs-tsm report entry");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeKernel, Report};
    use super::*;
    use rstest::rstest;

    fn tree() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(report_dir(root.path())).unwrap();
        root
    }

    fn entries_left(root: &Path) -> usize {
        std::fs::read_dir(report_dir(root)).unwrap().count()
    }

    #[rstest]
    #[case::sev_guest("sev_guest", Tee::SevSnp, EvidenceFormat::SnpReport, Report::Snp, true)]
    #[case::tdx_guest(
        "tdx_guest",
        Tee::Tdx,
        EvidenceFormat::DcapQuote,
        Report::TdxQuote,
        false
    )]
    fn happy_path(
        #[case] provider: &str,
        #[case] tee: Tee,
        #[case] format: EvidenceFormat,
        #[case] report: Report,
        #[case] with_aux: bool,
    ) {
        let root = tree();
        let kernel = Arc::new(FakeKernel::new(provider, report, with_aux));
        let collector = TsmCollector::with_entries(root.path(), kernel.clone()).unwrap();
        assert_eq!(collector.tee(), tee);
        assert_eq!(collector.provider(), provider);
        assert_eq!(Collector::provider(&collector), Some(provider));

        let report_data: [u8; 64] = std::array::from_fn(|i| i as u8);
        let evidence = collector.collect(&report_data).unwrap();
        assert_eq!(evidence.tee, tee);
        assert_eq!(evidence.format, format);
        assert_eq!(evidence.provider.as_deref(), Some(provider));
        // The fake kernel puts the inblob where the real report carries report_data.
        let at = report.report_data_offset();
        assert_eq!(evidence.bytes[at..at + 64], report_data);
        assert_eq!(evidence.aux.is_some(), with_aux);

        // The probe and the collection each made one entry, and removed it.
        assert_eq!(kernel.entries_created(), 2);
        assert_eq!(entries_left(root.path()), 0);

        // Again, with another entry.
        collector.collect(&[7; 64]).unwrap();
        assert_eq!(kernel.entries_created(), 3);
        assert_eq!(entries_left(root.path()), 0);
    }

    #[test]
    fn missing_tree_is_unavailable() {
        let root = tempfile::tempdir().unwrap();
        let err = TsmCollector::new(root.path().to_path_buf()).unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable { what: WHAT, reason } if reason.contains("configfs")),
            "{err:?}"
        );
        assert_eq!(err.fault(), crate::Fault::Environment);
    }

    #[test]
    fn tree_removed_after_opening_is_unavailable() {
        let root = tree();
        let kernel = Arc::new(FakeKernel::new("sev_guest", Report::Snp, false));
        let collector = TsmCollector::with_entries(root.path(), kernel).unwrap();
        std::fs::remove_dir_all(root.path().join("sys")).unwrap();
        assert!(matches!(
            collector.collect(&[0; 64]),
            Err(Error::Unavailable { what: WHAT, .. })
        ));
    }

    #[test]
    fn no_provider_is_unavailable() {
        let root = tree();
        let kernel = Arc::new(FakeKernel::without_provider());
        let err = TsmCollector::with_entries(root.path(), kernel).unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable { what: WHAT, reason } if reason.contains("provider")),
            "{err:?}"
        );
    }

    #[test]
    fn unknown_provider_is_unsupported() {
        let root = tree();
        let kernel = Arc::new(FakeKernel::new("arm_cca_guest", Report::Snp, false));
        let err = TsmCollector::with_entries(root.path(), kernel).unwrap_err();
        assert!(
            matches!(&err, Error::Unsupported { what: "configfs-tsm provider", got } if got == "arm_cca_guest"),
            "{err:?}"
        );
        assert_eq!(entries_left(root.path()), 0);
    }

    #[test]
    fn concurrent_write_is_detected_and_the_entry_still_removed() {
        let root = tree();
        let kernel = Arc::new(FakeKernel::new("tdx_guest", Report::TdxQuote, false));
        let collector = TsmCollector::with_entries(root.path(), kernel.clone()).unwrap();
        kernel.simulate_concurrent_writer();
        let err = collector.collect(&[1; 64]).unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable { what: WHAT, reason } if reason.contains("generation")),
            "{err:?}"
        );
        assert_eq!(entries_left(root.path()), 0);
    }
}

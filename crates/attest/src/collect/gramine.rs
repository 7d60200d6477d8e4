//! Intel SGX DCAP quotes from inside a Gramine enclave, through `/dev/attestation`.
//!
//! Gramine's pseudo-filesystem: `attestation_type` reads `dcap` when the manifest sets
//! `sgx.remote_attestation = "dcap"`; writing 64 bytes to `user_report_data` and then reading
//! `quote` makes the enclave produce a DCAP quote carrying them. The files are per process, so
//! collections within this process are serialised.

use super::{Collector, Evidence, read_limited, write_attribute};
use crate::{Error, EvidenceFormat, Tee};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Gramine's attestation directory, under the filesystem root.
const DEVICE_DIR: &str = "dev/attestation";
/// The largest quote read (quotes with their certification chain are a few KiB).
const MAX_QUOTE: usize = 1024 * 1024;
/// The interface's name in errors.
const WHAT: &str = "Gramine /dev/attestation";

/// One `user_report_data` → `quote` exchange at a time: the pseudo-files are shared by the
/// process's threads.
static EXCHANGE: Mutex<()> = Mutex::new(());

pub(super) fn device_dir(root: &Path) -> PathBuf {
    root.join(DEVICE_DIR)
}

/// Collects SGX DCAP quotes from Gramine's `/dev/attestation`.
#[derive(Clone, Debug)]
pub struct GramineCollector {
    dir: PathBuf,
}

impl GramineCollector {
    /// A collector using `<root>/dev/attestation` (`root` is `/` outside tests). Nothing is
    /// checked until [`Collector::collect`].
    pub fn new(root: PathBuf) -> Self {
        Self {
            dir: device_dir(&root),
        }
    }

    fn check_attestation_type(&self) -> Result<(), Error> {
        let path = self.dir.join("attestation_type");
        if !path.exists() {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: format!(
                    "{} does not exist: not running inside a Gramine SGX enclave",
                    path.display()
                ),
            });
        }
        let kind = read_limited(&path, 64)?;
        let kind = String::from_utf8_lossy(&kind);
        let kind = kind.trim();
        if kind != "dcap" {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: format!(
                    "attestation_type is {kind:?}, not \"dcap\": set \
                     sgx.remote_attestation = \"dcap\" in the Gramine manifest"
                ),
            });
        }
        Ok(())
    }
}

/// The provider name Gramine evidence carries ([`Evidence::provider`]).
const PROVIDER: &str = "gramine";

impl Collector for GramineCollector {
    fn tee(&self) -> Tee {
        Tee::Sgx
    }

    fn provider(&self) -> Option<&str> {
        Some(PROVIDER)
    }

    #[tracing::instrument(skip_all)]
    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        self.check_attestation_type()?;
        // A panic elsewhere while holding the lock leaves nothing half-done that matters here:
        // each exchange rewrites `user_report_data` first.
        let _exchange = EXCHANGE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        write_attribute(&self.dir.join("user_report_data"), report_data)?;
        let quote = read_limited(&self.dir.join("quote"), MAX_QUOTE)?;
        if quote.is_empty() {
            return Err(Error::Unavailable {
                what: WHAT,
                reason: "the enclave returned an empty quote".to_owned(),
            });
        }
        tracing::debug!(len = quote.len(), "collected");
        Ok(Evidence {
            tee: Tee::Sgx,
            format: EvidenceFormat::DcapQuote,
            bytes: quote,
            provider: Some(PROVIDER.to_owned()),
            aux: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{Report, gramine_tree};
    use super::*;

    #[test]
    fn happy_path() {
        let root = tempfile::tempdir().unwrap();
        let _gramine = gramine_tree(root.path(), "dcap");
        let collector = GramineCollector::new(root.path().to_path_buf());
        assert_eq!(collector.tee(), Tee::Sgx);
        for round in 0..2u8 {
            let report_data = [round + 1; 64];
            let evidence = collector.collect(&report_data).unwrap();
            assert_eq!(evidence.tee, Tee::Sgx);
            assert_eq!(evidence.format, EvidenceFormat::DcapQuote);
            assert_eq!(evidence.provider.as_deref(), Some("gramine"));
            let at = Report::SgxQuote.report_data_offset();
            assert_eq!(evidence.bytes[at..at + 64], report_data);
            assert_eq!(
                std::fs::read(device_dir(root.path()).join("user_report_data")).unwrap(),
                report_data
            );
        }
    }

    #[test]
    fn missing_device_is_unavailable() {
        let root = tempfile::tempdir().unwrap();
        let err = GramineCollector::new(root.path().to_path_buf())
            .collect(&[0; 64])
            .unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable { what: WHAT, reason } if reason.contains("Gramine")),
            "{err:?}"
        );
    }

    #[test]
    fn attestation_type_other_than_dcap_is_unavailable() {
        let root = tempfile::tempdir().unwrap();
        let _gramine = gramine_tree(root.path(), "none");
        let err = GramineCollector::new(root.path().to_path_buf())
            .collect(&[0; 64])
            .unwrap_err();
        assert!(
            matches!(&err, Error::Unavailable { what: WHAT, reason } if reason.contains("sgx.remote_attestation")),
            "{err:?}"
        );
    }
}

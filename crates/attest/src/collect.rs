//! Collecting evidence inside a workload, behind one [`Collector`] trait.
//!
//! - [`SimCollector`]: the software TEE. Never detected: choose it explicitly.
//! - [`TsmCollector`]: AMD SEV-SNP and Intel TDX confidential VMs through Linux configfs-tsm
//!   (`/sys/kernel/config/tsm/report`, kernel 6.7 and later).
//! - [`GramineCollector`]: Intel SGX enclaves under Gramine (`/dev/attestation`, DCAP).
//!
//! [`detect`] picks the hardware interface present on the machine. Collection is collateral-free:
//! a collector returns the TEE's own evidence bytes; fetching and caching Intel or AMD collateral
//! is the node agent's (LAS) job, and verification happens elsewhere.
//!
//! Every hardware collector takes the filesystem root it looks under (`/` in production, a temp
//! directory laid out like the kernel's and Gramine's interfaces in tests).

mod gramine;
mod tsm;

#[cfg(test)]
mod fake;

pub use gramine::GramineCollector;
pub use tsm::TsmCollector;

use crate::sim::{PlatformKey, PublicKey, Statement};
use crate::{Error, EvidenceFormat, Tee};
use std::fmt;
use std::io::Read as _;
use std::path::Path;

/// A source of evidence for one kind of TEE.
pub trait Collector: Send + Sync {
    /// The TEE whose evidence this collector produces.
    fn tee(&self) -> Tee;

    /// Collect fresh evidence carrying `report_data` (normally [`crate::binding::report_data`]).
    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, Error>;

    /// The interface's name for its provider, as [`Evidence::provider`] carries it
    /// (configfs-tsm's `sev_guest` or `tdx_guest`, `gramine`), or `None` when it has none.
    fn provider(&self) -> Option<&str> {
        None
    }
}

/// Evidence as a TEE produced it, with what is needed to pick its verifier.
#[derive(Clone, PartialEq, Eq)]
pub struct Evidence {
    /// The TEE that produced it.
    pub tee: Tee,
    /// Its format, which selects the verifier.
    pub format: EvidenceFormat,
    /// The evidence itself: a DCAP quote, an SNP report, or sim evidence.
    pub bytes: Vec<u8>,
    /// The interface's name for its provider, when it has one: configfs-tsm's `sev_guest` or
    /// `tdx_guest`, or `gramine`.
    pub provider: Option<String>,
    /// Auxiliary data the interface returned beside the evidence, untrusted and not verified:
    /// configfs-tsm's `auxblob`, which for `sev_guest` is the certificate table (VCEK, ASK, ARK)
    /// the host may supply. `None` when the interface returned none.
    pub aux: Option<Vec<u8>>,
}

impl fmt::Debug for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sizes, not payloads.
        f.debug_struct("Evidence")
            .field("tee", &self.tee)
            .field("format", &self.format)
            .field("bytes", &format_args!("{} bytes", self.bytes.len()))
            .field("provider", &self.provider)
            .field(
                "aux",
                &self.aux.as_ref().map(|a| format!("{} bytes", a.len())),
            )
            .finish()
    }
}

/// Collects `sim` evidence: signs a copy of a statement template carrying the `report_data`.
#[derive(Debug)]
pub struct SimCollector {
    key: PlatformKey,
    template: Statement,
}

impl SimCollector {
    /// A collector signing `template` (with each request's `report_data`) with `key`.
    pub fn new(key: PlatformKey, template: Statement) -> Self {
        Self { key, template }
    }

    /// The platform key's public half, for the verifier's trust list.
    pub fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }
}

impl Collector for SimCollector {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, Error> {
        let statement = Statement {
            report_data: report_data.to_vec(),
            ..self.template.clone()
        };
        Ok(Evidence {
            tee: Tee::Sim,
            format: EvidenceFormat::Sim,
            bytes: self.key.sign(&statement)?,
            provider: None,
            aux: None,
        })
    }
}

/// The hardware collector for this machine: configfs-tsm when it has a working provider, else
/// Gramine's `/dev/attestation` when present, else `None`. Never `sim`, which must be chosen
/// explicitly. `root` is `/` outside tests.
pub fn detect(root: &Path) -> Option<Box<dyn Collector>> {
    if tsm::report_dir(root).is_dir() {
        match TsmCollector::new(root.to_path_buf()) {
            Ok(collector) => {
                tracing::debug!(provider = collector.provider(), "using configfs-tsm");
                return Some(Box::new(collector));
            }
            Err(e) => tracing::debug!(error = %e, "configfs-tsm present but unusable"),
        }
    }
    if gramine::device_dir(root).is_dir() {
        tracing::debug!("using Gramine /dev/attestation");
        return Some(Box::new(GramineCollector::new(root.to_path_buf())));
    }
    None
}

/// Read at most `max` bytes of a file the TEE interface produces.
fn read_limited(path: &Path, max: usize) -> Result<Vec<u8>, Error> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut bytes = Vec::new();
    // `max + 1` so that an over-long file is noticed; `usize` to `u64` never truncates here.
    file.take(max as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() > max {
        return Err(Error::Unavailable {
            what: "TEE interface",
            reason: format!("{} is larger than {max} bytes", path.display()),
        });
    }
    Ok(bytes)
}

/// Write `data` to an attribute file the interface provides (never creating it), in one write,
/// and close it: configfs commits binary attributes on close.
fn write_attribute(path: &Path, data: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(data).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimVerifier;
    use crate::{Context, Verifier as _, binding};
    use std::time::SystemTime;

    #[test]
    fn sim_collector_output_verifies_with_the_binding() {
        let collector = SimCollector::new(
            PlatformKey::generate(),
            Statement {
                measurement: vec![1; 48],
                svn: 3,
                ..Default::default()
            },
        );
        assert_eq!(collector.tee(), Tee::Sim);
        let report_data = binding::report_data(b"nonce", b"spki");
        let evidence = collector.collect(&report_data).unwrap();
        assert_eq!(evidence.tee, Tee::Sim);
        assert_eq!(evidence.format, EvidenceFormat::Sim);
        assert_eq!(evidence.provider, None);
        assert!(crate::sim::sniff(&evidence.bytes));

        let verifier = SimVerifier::new([collector.public_key()]);
        let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
        let claims = verifier
            .verify(&evidence.bytes, &ctx)
            .unwrap()
            .into_claims();
        assert_eq!(claims.measurement, vec![1; 48]);
        assert_eq!(claims.svn, Some(3));
    }

    #[test]
    fn sim_collector_refuses_an_invalid_template() {
        let collector = SimCollector::new(PlatformKey::generate(), Statement::default());
        assert!(matches!(
            collector.collect(&[0; 64]),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn evidence_debug_shows_sizes_not_bytes() {
        let evidence = Evidence {
            tee: Tee::Sgx,
            format: EvidenceFormat::DcapQuote,
            bytes: vec![0xee; 3],
            provider: Some("gramine".into()),
            aux: None,
        };
        let debug = format!("{evidence:?}");
        assert!(debug.contains("3 bytes"), "{debug}");
        assert!(!debug.contains("238"), "{debug}");
    }

    #[test]
    fn detect_finds_nothing_on_a_plain_machine() {
        let root = tempfile::tempdir().unwrap();
        assert!(detect(root.path()).is_none());
    }

    #[test]
    fn detect_finds_gramine() {
        let root = tempfile::tempdir().unwrap();
        fake::gramine_tree(root.path(), "dcap");
        let collector = detect(root.path()).unwrap();
        assert_eq!(collector.tee(), Tee::Sgx);
    }

    #[test]
    fn detect_skips_configfs_tsm_without_a_provider() {
        // The tree exists whenever the kernel has configfs-tsm, also outside a confidential VM;
        // here the new entry gets no attributes, as when no provider answers.
        let root = tempfile::tempdir().unwrap();
        let reports = tsm::report_dir(root.path());
        std::fs::create_dir_all(&reports).unwrap();
        assert!(detect(root.path()).is_none());
        assert_eq!(
            std::fs::read_dir(&reports).unwrap().count(),
            0,
            "probe entry left behind"
        );

        fake::gramine_tree(root.path(), "dcap");
        assert_eq!(detect(root.path()).unwrap().tee(), Tee::Sgx);
    }
}

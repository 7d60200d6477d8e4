//! The LAS's configuration, validated when built: a [`LasConfig`] that exists is one the LAS can
//! run with (its TEE interface found, its URLs well-formed, its directories usable).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cloister_attest::collect::{self, Collector, Evidence};
use cloister_attest::sim::{PlatformKey, PublicKey, Statement};
use cloister_attest::{EvidenceFormat, Tee};
use reqwest::Url;

use super::LasError;
use super::api::SourceKind;
use super::collateral::{AmdProduct, IntelPcs, RefreshPolicy};

/// Intel PCS, SGX API v4 (also the PCK CRLs of TDX platforms).
pub const INTEL_SGX_URL: &str = "https://api.trustedservices.intel.com/sgx/certification/v4";
/// Intel PCS, TDX API v4.
pub const INTEL_TDX_URL: &str = "https://api.trustedservices.intel.com/tdx/certification/v4";
/// The Intel SGX Root CA's CRL (the CRL distribution point of the root certificate).
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";
/// AMD Key Distribution Service.
pub const AMD_KDS_URL: &str = "https://kdsintf.amd.com";

/// Where the LAS's evidence comes from.
pub enum EvidenceSource {
    /// `sim` evidence: `template` (its `report_data` replaced by each request's) signed by `key`.
    /// For development: anyone who can reach the LAS gets evidence of any key.
    Sim {
        /// The simulated platform key.
        key: PlatformKey,
        /// The statement signed: measurement, svn, debug, TCB status.
        template: Statement,
    },
    /// The machine's TEE interface, found by [`collect::detect`] under `root` (`/` in
    /// production; `/sys/kernel/config` must be mounted for configfs-tsm).
    Hardware {
        /// The filesystem root.
        root: PathBuf,
    },
    /// A collector supplied by the embedding program (tests, an in-process demo).
    Collector(Arc<dyn Collector>),
}

impl fmt::Debug for EvidenceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // `PlatformKey`'s Debug shows only its public fingerprint.
            EvidenceSource::Sim { key, template } => f
                .debug_struct("Sim")
                .field("key", key)
                .field("template", template)
                .finish(),
            EvidenceSource::Hardware { root } => {
                f.debug_struct("Hardware").field("root", root).finish()
            }
            EvidenceSource::Collector(c) => {
                f.debug_tuple("Collector").field(&c.tee().as_str()).finish()
            }
        }
    }
}

/// Where collateral comes from and how long it is kept. Plain settings; [`LasConfig::new`]
/// validates them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CollateralSettings {
    /// Intel PCS (or PCCS) SGX API base; `None`: no Intel collateral from the network.
    pub intel_sgx_url: Option<String>,
    /// Intel PCS (or PCCS) TDX API base; `None`: no TDX collateral from the network.
    pub intel_tdx_url: Option<String>,
    /// The Intel SGX Root CA CRL (a PCCS: `<sgx base>/rootcacrl`).
    pub intel_root_ca_crl_url: Option<String>,
    /// AMD KDS base; `None`: no AMD collateral from the network.
    pub amd_kds_url: Option<String>,
    /// A directory of collateral files (see [`super::collateral`] for the layout), consulted
    /// before the network.
    pub offline_bundle: Option<PathBuf>,
    /// Where fetched collateral is kept across restarts; created if missing. `None`: memory only.
    pub cache_dir: Option<PathBuf>,
    /// Refresh margin, backoff and retries.
    pub refresh: RefreshPolicy,
    /// The timeout of each request to a collateral service.
    pub fetch_timeout: Duration,
    /// The AMD product of this node, for SEV-SNP reports (version 2) that do not say theirs.
    pub amd_product: Option<AmdProduct>,
}

impl Default for CollateralSettings {
    /// Intel PCS and AMD KDS, no bundle, no cache directory, the default refresh policy.
    fn default() -> Self {
        Self {
            intel_sgx_url: Some(INTEL_SGX_URL.into()),
            intel_tdx_url: Some(INTEL_TDX_URL.into()),
            intel_root_ca_crl_url: Some(INTEL_ROOT_CA_CRL_URL.into()),
            amd_kds_url: Some(AMD_KDS_URL.into()),
            offline_bundle: None,
            cache_dir: None,
            refresh: RefreshPolicy::default(),
            fetch_timeout: Duration::from_secs(30),
            amd_product: None,
        }
    }
}

impl CollateralSettings {
    /// No network: collateral only from `bundle` (or none at all).
    pub fn offline(bundle: Option<PathBuf>) -> Self {
        Self {
            intel_sgx_url: None,
            intel_tdx_url: None,
            intel_root_ca_crl_url: None,
            amd_kds_url: None,
            offline_bundle: bundle,
            ..Self::default()
        }
    }
}

/// Bounds on the work one request can cause.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The longest a request may take, collateral fetches included.
    pub request_timeout: Duration,
    /// The longest the TEE interface may take to produce evidence.
    pub collect_timeout: Duration,
    /// How many evidence collections may run at once; more wait up to `collect_timeout`.
    pub max_concurrent_collections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(60),
            collect_timeout: Duration::from_secs(20),
            max_concurrent_collections: 4,
        }
    }
}

/// The validated collateral settings.
#[derive(Clone, Debug)]
pub(crate) struct CollateralConfig {
    pub intel: Option<IntelPcs>,
    pub amd_kds: Option<Url>,
    pub offline_bundle: Option<PathBuf>,
    pub cache_dir: Option<PathBuf>,
    pub refresh: RefreshPolicy,
    pub fetch_timeout: Duration,
    pub amd_product: Option<AmdProduct>,
}

/// The sim evidence source: a platform key and the statement template it signs.
///
/// Besides the template's measurement, it can sign a measurement the workload claims for itself
/// ([`SimSource::collect_claiming`]): a sim TEE has no hardware to measure the workload, so the
/// workload's own measurement is all there is. Simulation only, like everything `sim`.
#[derive(Debug)]
pub(crate) struct SimSource {
    key: PlatformKey,
    template: Statement,
}

impl SimSource {
    /// Sim evidence carrying `report_data` and, when given, `measurement` instead of the
    /// template's.
    pub(crate) fn collect_claiming(
        &self,
        report_data: &[u8; 64],
        measurement: Option<&[u8]>,
    ) -> Result<Evidence, cloister_attest::Error> {
        let mut statement = Statement {
            report_data: report_data.to_vec(),
            ..self.template.clone()
        };
        if let Some(measurement) = measurement {
            statement.measurement = measurement.to_vec();
        }
        Ok(Evidence {
            tee: Tee::Sim,
            format: EvidenceFormat::Sim,
            bytes: self.key.sign(&statement)?,
            provider: None,
            aux: None,
        })
    }
}

impl Collector for SimSource {
    fn tee(&self) -> Tee {
        Tee::Sim
    }

    fn collect(&self, report_data: &[u8; 64]) -> Result<Evidence, cloister_attest::Error> {
        self.collect_claiming(report_data, None)
    }
}

/// A validated LAS configuration.
pub struct LasConfig {
    listen: SocketAddr,
    collector: Arc<dyn Collector>,
    kind: SourceKind,
    sim: Option<Arc<SimSource>>,
    sim_public_key: Option<PublicKey>,
    pub(crate) collateral: CollateralConfig,
    limits: Limits,
}

impl fmt::Debug for LasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LasConfig")
            .field("listen", &self.listen)
            .field("tee", &self.tee())
            .field("source", &self.kind)
            .field("collateral", &self.collateral)
            .field("limits", &self.limits)
            .finish()
    }
}

impl LasConfig {
    /// Validate a configuration: for `Hardware`, the TEE interface must be present under the
    /// root ([`LasError::NoTee`]); for `Sim`, the template must be signable; URLs must be
    /// `http(s)` with a host; the bundle must be a directory; the cache directory is created
    /// and must be writable; durations must be positive. Uses [`Limits::default`].
    pub fn new(
        listen: SocketAddr,
        source: EvidenceSource,
        collateral: CollateralSettings,
    ) -> Result<Self, LasError> {
        let (collector, kind, sim) = resolve_source(source)?;
        let collateral = validate_collateral(collateral)?;
        if kind == SourceKind::Sim && !listen.ip().is_loopback() {
            tracing::warn!(
                %listen,
                "sim evidence served beyond loopback: for development only"
            );
        }
        Ok(Self {
            listen,
            collector,
            kind,
            sim_public_key: sim.as_ref().map(|sim| sim.key.public_key()),
            sim,
            collateral,
            limits: Limits::default(),
        })
    }

    /// The same configuration with other limits (each must be positive).
    pub fn with_limits(mut self, limits: Limits) -> Result<Self, LasError> {
        if limits.request_timeout.is_zero() {
            return Err(LasError::config("request_timeout", "must be positive"));
        }
        if limits.collect_timeout.is_zero() {
            return Err(LasError::config("collect_timeout", "must be positive"));
        }
        if limits.max_concurrent_collections == 0 {
            return Err(LasError::config(
                "max_concurrent_collections",
                "must be at least 1",
            ));
        }
        self.limits = limits;
        Ok(self)
    }

    /// The address to listen on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// The TEE whose evidence the LAS serves.
    pub fn tee(&self) -> Tee {
        self.collector.tee()
    }

    /// Where the evidence comes from.
    pub fn source_kind(&self) -> SourceKind {
        self.kind
    }

    /// The TEE interface's provider, as the health endpoint reports it.
    pub fn provider(&self) -> Option<&str> {
        match self.kind {
            SourceKind::Hardware => self.collector.provider(),
            SourceKind::Sim | SourceKind::Custom => None,
        }
    }

    /// The sim platform's public key, in sim mode.
    pub fn sim_public_key(&self) -> Option<&PublicKey> {
        self.sim_public_key.as_ref()
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn collector(&self) -> Arc<dyn Collector> {
        self.collector.clone()
    }

    /// The sim source, in sim mode.
    pub(crate) fn sim(&self) -> Option<Arc<SimSource>> {
        self.sim.clone()
    }
}

type Resolved = (Arc<dyn Collector>, SourceKind, Option<Arc<SimSource>>);

fn resolve_source(source: EvidenceSource) -> Result<Resolved, LasError> {
    match source {
        EvidenceSource::Sim { key, template } => {
            // What the verifier would refuse, refused now rather than at the first request.
            let probe = Statement {
                report_data: vec![0; 64],
                ..template.clone()
            };
            probe
                .validate()
                .map_err(|e| LasError::config("sim template", e.to_string()))?;
            let sim = Arc::new(SimSource { key, template });
            Ok((sim.clone(), SourceKind::Sim, Some(sim)))
        }
        EvidenceSource::Hardware { root } => match collect::detect(&root) {
            Some(collector) => {
                tracing::info!(tee = %collector.tee(), "TEE interface found");
                Ok((Arc::from(collector), SourceKind::Hardware, None))
            }
            None => Err(LasError::NoTee { root }),
        },
        EvidenceSource::Collector(collector) => Ok((collector, SourceKind::Custom, None)),
    }
}

fn url(field: &'static str, value: Option<String>) -> Result<Option<Url>, LasError> {
    let Some(value) = value else {
        return Ok(None);
    };
    let parsed =
        Url::parse(&value).map_err(|e| LasError::config(field, format!("{value:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(LasError::config(
            field,
            format!("{value:?}: only http and https URLs are supported"),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(LasError::config(field, format!("{value:?}: no host")));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(LasError::config(
            field,
            format!("{value:?}: a base URL takes no query or fragment"),
        ));
    }
    if parsed.scheme() == "http" {
        tracing::warn!(field, url = %parsed, "collateral over plain http: fine for a PCCS on a trusted network, the signatures are checked anyway");
    }
    Ok(Some(parsed))
}

fn validate_collateral(s: CollateralSettings) -> Result<CollateralConfig, LasError> {
    let sgx = url("intel_sgx_url", s.intel_sgx_url)?;
    let tdx = url("intel_tdx_url", s.intel_tdx_url)?;
    let root_ca_crl = url("intel_root_ca_crl_url", s.intel_root_ca_crl_url)?;
    let amd_kds = url("amd_kds_url", s.amd_kds_url)?;
    let intel = match (sgx, tdx, root_ca_crl) {
        (Some(sgx), tdx, Some(root_ca_crl)) => Some(IntelPcs {
            sgx,
            tdx,
            root_ca_crl,
        }),
        (None, None, _) => None,
        (None, Some(_), _) => {
            return Err(LasError::config(
                "intel_sgx_url",
                "needed with intel_tdx_url: TDX platforms' PCK CRLs are served by the SGX API",
            ));
        }
        (Some(_), _, None) => {
            return Err(LasError::config(
                "intel_root_ca_crl_url",
                "needed with intel_sgx_url",
            ));
        }
    };
    if let Some(bundle) = &s.offline_bundle
        && !bundle.is_dir()
    {
        return Err(LasError::config(
            "offline_bundle",
            format!("{} is not a directory", bundle.display()),
        ));
    }
    if let Some(dir) = &s.cache_dir {
        std::fs::create_dir_all(dir).map_err(|e| {
            LasError::config("cache_dir", format!("cannot create {}: {e}", dir.display()))
        })?;
        let probe = dir.join(".write-probe");
        super::collateral::write_atomically(&probe, b"probe")
            .and_then(|()| std::fs::remove_file(&probe).map_err(|e| LasError::io(&probe, e)))
            .map_err(|e| {
                LasError::config(
                    "cache_dir",
                    format!("{} is not writable: {e}", dir.display()),
                )
            })?;
    }
    let r = &s.refresh;
    if r.backoff_min.is_zero() {
        return Err(LasError::config("backoff_min", "must be positive"));
    }
    if r.backoff_min > r.backoff_max {
        return Err(LasError::config(
            "backoff_max",
            format!(
                "{} s is less than backoff_min {} s",
                r.backoff_max.as_secs(),
                r.backoff_min.as_secs()
            ),
        ));
    }
    if r.refresh_wait.is_zero() || r.fetch_wait.is_zero() {
        return Err(LasError::config(
            "refresh_wait / fetch_wait",
            "must be positive",
        ));
    }
    if r.margin > Duration::from_secs(365 * 24 * 3600) {
        return Err(LasError::config(
            "refresh_margin",
            "longer than a year: every item would always be refreshed",
        ));
    }
    if s.fetch_timeout.is_zero() {
        return Err(LasError::config("fetch_timeout", "must be positive"));
    }
    Ok(CollateralConfig {
        intel,
        amd_kds,
        offline_bundle: s.offline_bundle,
        cache_dir: s.cache_dir,
        refresh: s.refresh,
        fetch_timeout: s.fetch_timeout,
        amd_product: s.amd_product,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    fn sim() -> EvidenceSource {
        EvidenceSource::Sim {
            key: PlatformKey::generate(),
            template: Statement {
                measurement: vec![1; 32],
                ..Default::default()
            },
        }
    }

    #[test]
    fn defaults_are_intel_pcs_and_amd_kds() {
        let config = LasConfig::new(addr(), sim(), CollateralSettings::default()).unwrap();
        let intel = config.collateral.intel.as_ref().unwrap();
        assert_eq!(intel.sgx.as_str(), INTEL_SGX_URL);
        assert_eq!(intel.tdx.as_ref().unwrap().as_str(), INTEL_TDX_URL);
        assert_eq!(
            config.collateral.amd_kds.as_ref().unwrap().as_str(),
            "https://kdsintf.amd.com/"
        );
        assert_eq!(config.tee(), Tee::Sim);
        assert_eq!(config.source_kind(), SourceKind::Sim);
        assert!(config.sim_public_key().is_some());
    }

    #[test]
    fn an_invalid_sim_template_is_refused() {
        let source = EvidenceSource::Sim {
            key: PlatformKey::generate(),
            template: Statement::default(),
        };
        let err = LasConfig::new(addr(), source, CollateralSettings::offline(None)).unwrap_err();
        assert!(
            matches!(
                &err,
                LasError::Config {
                    field: "sim template",
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn bad_urls_are_refused_with_their_field() {
        for (settings, field) in [
            (
                CollateralSettings {
                    amd_kds_url: Some("ftp://kds".into()),
                    ..Default::default()
                },
                "amd_kds_url",
            ),
            (
                CollateralSettings {
                    intel_sgx_url: Some("not a url".into()),
                    ..Default::default()
                },
                "intel_sgx_url",
            ),
            (
                CollateralSettings {
                    intel_tdx_url: Some("https://pcs/?x=1".into()),
                    ..Default::default()
                },
                "intel_tdx_url",
            ),
            (
                CollateralSettings {
                    intel_root_ca_crl_url: None,
                    ..Default::default()
                },
                "intel_root_ca_crl_url",
            ),
            (
                CollateralSettings {
                    intel_sgx_url: None,
                    ..Default::default()
                },
                "intel_sgx_url",
            ),
        ] {
            let err = LasConfig::new(addr(), sim(), settings).unwrap_err();
            assert!(
                matches!(&err, LasError::Config { field: f, .. } if *f == field),
                "{field}: {err:?}"
            );
        }
    }

    #[test]
    fn directories_are_checked_and_the_cache_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let err = LasConfig::new(
            addr(),
            sim(),
            CollateralSettings::offline(Some(dir.path().join("missing"))),
        )
        .unwrap_err();
        assert!(matches!(
            &err,
            LasError::Config {
                field: "offline_bundle",
                ..
            }
        ));

        let cache = dir.path().join("a/b/cache");
        LasConfig::new(
            addr(),
            sim(),
            CollateralSettings {
                cache_dir: Some(cache.clone()),
                ..CollateralSettings::offline(None)
            },
        )
        .unwrap();
        assert!(cache.is_dir());
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "probe left");
    }

    #[test]
    fn refresh_policy_and_limits_are_checked() {
        let mut settings = CollateralSettings::offline(None);
        settings.refresh.backoff_max = Duration::from_secs(1);
        let err = LasConfig::new(addr(), sim(), settings).unwrap_err();
        assert!(matches!(
            &err,
            LasError::Config {
                field: "backoff_max",
                ..
            }
        ));

        let config = LasConfig::new(addr(), sim(), CollateralSettings::offline(None)).unwrap();
        let err = config
            .with_limits(Limits {
                max_concurrent_collections: 0,
                ..Limits::default()
            })
            .unwrap_err();
        assert!(matches!(
            &err,
            LasError::Config {
                field: "max_concurrent_collections",
                ..
            }
        ));
    }

    #[test]
    fn hardware_without_a_tee_says_where_it_looked() {
        let root = tempfile::tempdir().unwrap();
        let err = LasConfig::new(
            addr(),
            EvidenceSource::Hardware {
                root: root.path().to_path_buf(),
            },
            CollateralSettings::offline(None),
        )
        .unwrap_err();
        let LasError::NoTee { root: searched } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(searched, root.path());
        assert!(err.to_string().contains("configfs-tsm"), "{err}");
        assert_eq!(err.code(), "no-tee");
    }

    #[test]
    fn hardware_with_gramine_serves_sgx() {
        // Gramine's interface is found by its directory; nothing is read until a collection.
        let root = tempfile::tempdir().unwrap();
        let dev = root.path().join("dev/attestation");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("attestation_type"), "dcap").unwrap();
        let config = LasConfig::new(
            addr(),
            EvidenceSource::Hardware {
                root: root.path().to_path_buf(),
            },
            CollateralSettings::offline(None),
        )
        .unwrap();
        assert_eq!(config.tee(), Tee::Sgx);
        assert_eq!(config.source_kind(), SourceKind::Hardware);
        assert_eq!(config.provider(), Some("gramine"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let key = PlatformKey::generate();
        let pem = {
            use secrecy::ExposeSecret as _;
            key.to_pem().expose_secret().to_owned()
        };
        let source = EvidenceSource::Sim {
            key,
            template: Statement {
                measurement: vec![1; 32],
                ..Default::default()
            },
        };
        let debug = format!("{source:?}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(!debug.contains(&body[..40]), "{debug}");
        assert!(debug.contains("public_key"), "{debug}");
    }
}

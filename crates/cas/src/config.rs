//! The CAS's configuration: which evidence it trusts, its clock, lifetimes and limits.
//!
//! A [`CasConfig`] is built with [`CasConfig::builder`] and checked by
//! [`CasConfigBuilder::build`]; once built it is frozen. Trust is explicit:
//!
//! - **sim**: the simulated platform keys whose statements CAS verifies, trusted only through
//!   [`CasConfigBuilder::dangerous`] (`.dangerous().trust_sim_key(key)`). Verifying is not
//!   accepting: a policy must still list `sim` in `security.tees`, so a CAS that trusts a
//!   development key still refuses sim evidence for every production policy.
//! - **MAA**: an Azure Attestation issuer and its JWKS (optional; without it MAA tokens are
//!   refused).
//! - **DCAP / SEV-SNP**: the Intel SGX root CA is bundled (another root can be configured for
//!   tests); the AMD roots are bundled in `cloister-attest`. Collateral comes with each request
//!   and is checked against these roots.
//!
//! Host imports are the operator's decision: [`ImportRules`] lists, per namespace, what policies
//! may import from files, environment variables and Kubernetes Secrets of the CAS host; the
//! default is nothing (see [`crate::imports`]).
//!
//! The clock is injectable ([`Clock`], [`ManualClock`]) so that expiry is tested without
//! sleeping.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloister_attest::maa::MaaVerifier;
use cloister_attest::sim;
use cloister_policy::{KeyFingerprint, PublicKey};

use crate::Error;
use crate::imports::ImportRules;

mod limits;
pub use limits::{Limits, RateLimit};

/// Where the CAS reads the time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    /// A clock showing `now`.
    pub fn new(now: SystemTime) -> Self {
        Self(Mutex::new(now))
    }

    /// Sets the time.
    pub fn set(&self, now: SystemTime) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = now;
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads an environment variable for `import: {env: NAME}` secrets.
pub type EnvSource = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The CAS's validated configuration. Built with [`CasConfig::builder`].
#[derive(Clone)]
pub struct CasConfig {
    issuer: String,
    sim_keys: Vec<sim::PublicKey>,
    maa: Option<Arc<MaaVerifier>>,
    dcap_root_der: Vec<u8>,
    clock: Arc<dyn Clock>,
    nonce_ttl: Duration,
    token_validity: Duration,
    cert_validity: Duration,
    request_timeout: Duration,
    max_body_bytes: usize,
    signature_window: Duration,
    tls_names: Vec<String>,
    kubernetes_secrets_dir: Option<PathBuf>,
    env: EnvSource,
    auditor: Option<KeyFingerprint>,
    audit_scan_bytes: u64,
    imports: Arc<ImportRules>,
    data_dir: Option<PathBuf>,
    limits: Limits,
}

impl fmt::Debug for CasConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasConfig")
            .field("issuer", &self.issuer)
            .field(
                "sim_keys",
                &self
                    .sim_keys
                    .iter()
                    .map(sim::PublicKey::fingerprint)
                    .collect::<Vec<_>>(),
            )
            .field("maa", &self.maa.as_ref().map(|m| m.issuer().to_owned()))
            .field(
                "dcap_root_sha256",
                &hex::encode(crate::sha256(&self.dcap_root_der)),
            )
            .field("clock", &self.clock)
            .field("nonce_ttl", &self.nonce_ttl)
            .field("token_validity", &self.token_validity)
            .field("cert_validity", &self.cert_validity)
            .field("request_timeout", &self.request_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("signature_window", &self.signature_window)
            .field("tls_names", &self.tls_names)
            .field("kubernetes_secrets_dir", &self.kubernetes_secrets_dir)
            .field("auditor", &self.auditor)
            .field("audit_scan_bytes", &self.audit_scan_bytes)
            .field("imports", &self.imports)
            .field("data_dir", &self.data_dir)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl CasConfig {
    /// A builder for a CAS reachable at `issuer` (its `https://` base URL, the `iss` of its
    /// tokens), with the defaults listed on [`CasConfigBuilder`].
    pub fn builder(issuer: impl Into<String>) -> CasConfigBuilder {
        CasConfigBuilder {
            issuer: issuer.into(),
            sim_keys: Vec::new(),
            maa: None,
            dcap_root_der: None,
            clock: Arc::new(SystemClock),
            nonce_ttl: Duration::from_secs(60),
            token_validity: Duration::from_secs(3600),
            cert_validity: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(30),
            max_body_bytes: 1 << 20,
            signature_window: Duration::from_secs(300),
            tls_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            kubernetes_secrets_dir: None,
            env: Arc::new(|name| std::env::var(name).ok()),
            auditor: None,
            audit_scan_bytes: 4 << 20,
            imports: ImportRules::none(),
            limits: Limits::default(),
        }
    }

    /// The CAS's base URL, the `iss` of its tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The trusted sim platform keys.
    pub fn sim_keys(&self) -> &[sim::PublicKey] {
        &self.sim_keys
    }

    /// The MAA verifier, when an issuer is configured.
    pub fn maa(&self) -> Option<&MaaVerifier> {
        self.maa.as_deref()
    }

    /// The root CA (DER) DCAP quotes must chain to.
    pub fn dcap_root_der(&self) -> &[u8] {
        &self.dcap_root_der
    }

    /// The clock.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The current time on the configured clock.
    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// How long a nonce stays valid.
    pub fn nonce_ttl(&self) -> Duration {
        self.nonce_ttl
    }

    /// How long an attestation token is valid.
    pub fn token_validity(&self) -> Duration {
        self.token_validity
    }

    /// How long a workload certificate is valid.
    pub fn cert_validity(&self) -> Duration {
        self.cert_validity
    }

    /// The limit on handling one request.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The largest request body accepted.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// How far a signed request's timestamp may be from the CAS's clock.
    pub fn signature_window(&self) -> Duration {
        self.signature_window
    }

    /// The DNS names and IP addresses of the CAS's TLS certificate (used when it is created).
    pub fn tls_names(&self) -> &[String] {
        &self.tls_names
    }

    /// The directory under which Kubernetes Secrets are mounted, one sub-directory per Secret.
    pub fn kubernetes_secrets_dir(&self) -> Option<&Path> {
        self.kubernetes_secrets_dir.as_deref()
    }

    /// Reads an environment variable of the CAS process (or the configured stand-in). Whether
    /// a policy may import it is [`CasConfig::imports`]' decision.
    pub fn env_var(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Rate limits, the used-nonce capacity and the transport limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// The fingerprint of the auditor key, which may read every audit entry and ask the CAS to
    /// verify its log; `None`: no auditor (owners and readers still read their sessions').
    pub fn auditor(&self) -> Option<&KeyFingerprint> {
        self.auditor.as_ref()
    }

    /// How many bytes of the audit log one read of `GET /v1/audit/entries` may go through.
    pub fn audit_scan_bytes(&self) -> u64 {
        self.audit_scan_bytes
    }
    /// What policies may import from this host.
    pub fn imports(&self) -> &ImportRules {
        &self.imports
    }

    /// The CAS data directory, once [`CasConfig::with_data_dir`] named it: never importable.
    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_deref()
    }

    /// This configuration for a CAS whose data directory is `dir`: the import rules are checked
    /// again, so that neither `dir` nor a directory above it is importable. (The CAS server
    /// calls this when it opens its data directory.)
    pub fn with_data_dir(mut self, dir: &Path) -> Result<Self, Error> {
        self.imports.validate(Some(dir))?;
        check_kubernetes_dir(self.kubernetes_secrets_dir.as_deref(), Some(dir))?;
        self.data_dir = Some(dir.to_owned());
        Ok(self)
    }
}

/// The Kubernetes secrets directory may not be (inside or above) a never-importable one.
fn check_kubernetes_dir(dir: Option<&Path>, data_dir: Option<&Path>) -> Result<(), Error> {
    let Some(dir) = dir else { return Ok(()) };
    ImportRules::none()
        .allow_files("kubernetes", dir)
        .validate(data_dir)
        .map_err(|e| match e {
            Error::ImportRules(m) => Error::ImportRules(m.replace(
                "namespace `kubernetes`: files from",
                "Kubernetes secrets directory",
            )),
            other => other,
        })
}

/// Builds a [`CasConfig`]. Defaults: no sim keys, no MAA, the Intel SGX root, the system
/// clock, nonces valid 60 s, tokens and certificates 1 h, requests time out after 30 s, bodies
/// up to 1 MiB, signed requests within ±300 s, TLS names `localhost`, `127.0.0.1`, `::1`, no
/// Kubernetes secrets, the process environment, no host imports, no auditor key, audit reads
/// through at most 4 MiB of the log, and the [`Limits::default`] resource limits.
#[must_use]
pub struct CasConfigBuilder {
    issuer: String,
    sim_keys: Vec<sim::PublicKey>,
    maa: Option<(String, Vec<u8>)>,
    dcap_root_der: Option<Vec<u8>>,
    clock: Arc<dyn Clock>,
    nonce_ttl: Duration,
    token_validity: Duration,
    cert_validity: Duration,
    request_timeout: Duration,
    max_body_bytes: usize,
    signature_window: Duration,
    tls_names: Vec<String>,
    kubernetes_secrets_dir: Option<PathBuf>,
    env: EnvSource,
    auditor: Option<KeyFingerprint>,
    audit_scan_bytes: u64,
    imports: ImportRules,
    limits: Limits,
}

/// The risky part of a [`CasConfigBuilder`], reached through [`CasConfigBuilder::dangerous`].
/// Each method returns the ordinary builder.
#[derive(Debug)]
#[must_use = "a dangerous option does nothing until it is applied"]
pub struct DangerousCasConfigBuilder(CasConfigBuilder);

impl DangerousCasConfigBuilder {
    /// Trusts sim evidence signed by `key`: statements from a software key, not hardware. A
    /// policy must still list `sim` in `security.tees` for the CAS to accept it, so production
    /// policies stay safe, but a CAS trusting a sim key is for development and tests.
    pub fn trust_sim_key(self, key: sim::PublicKey) -> CasConfigBuilder {
        let mut builder = self.0;
        builder.sim_keys.push(key);
        builder
    }

    /// Replaces Intel's SGX root CA as the anchor of SGX and TDX quotes (a stand-in Intel PKI in
    /// tests): whoever holds the replacement's key can mint quotes this CAS accepts.
    pub fn dcap_root_der(self, der: Vec<u8>) -> CasConfigBuilder {
        let mut builder = self.0;
        builder.dcap_root_der = Some(der);
        builder
    }
}

impl fmt::Debug for CasConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasConfigBuilder")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl CasConfigBuilder {
    /// The options that weaken what the CAS trusts, named so that every use reads as such (as
    /// rustls does): `CasConfig::builder(…).dangerous().trust_sim_key(key)`.
    pub fn dangerous(self) -> DangerousCasConfigBuilder {
        DangerousCasConfigBuilder(self)
    }

    /// Accepts Azure Attestation tokens from `issuer`, signed by a key in `jwks_json`.
    pub fn maa(mut self, issuer: impl Into<String>, jwks_json: Vec<u8>) -> Self {
        self.maa = Some((issuer.into(), jwks_json));
        self
    }

    /// Uses `clock` instead of the system clock.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Sets how long nonces are valid (1 s to 1 h).
    pub fn nonce_ttl(mut self, ttl: Duration) -> Self {
        self.nonce_ttl = ttl;
        self
    }

    /// Sets how long tokens are valid (1 min to 24 h).
    pub fn token_validity(mut self, validity: Duration) -> Self {
        self.token_validity = validity;
        self
    }

    /// Sets how long workload certificates are valid (1 min to 30 days).
    pub fn cert_validity(mut self, validity: Duration) -> Self {
        self.cert_validity = validity;
        self
    }

    /// Sets the per-request time limit (1 s to 10 min).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets the largest accepted request body (4 KiB to 64 MiB).
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.max_body_bytes = bytes;
        self
    }

    /// Sets the accepted clock difference of signed requests (10 s to 1 h).
    pub fn signature_window(mut self, window: Duration) -> Self {
        self.signature_window = window;
        self
    }

    /// Sets the names of the CAS's TLS certificate (DNS names or IP addresses).
    pub fn tls_names(mut self, names: Vec<String>) -> Self {
        self.tls_names = names;
        self
    }

    /// Reads `import: {kubernetes: {secret: S, key: K}}` from `DIR/S/K`.
    pub fn kubernetes_secrets_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.kubernetes_secrets_dir = Some(dir.into());
        self
    }

    /// Lets policies import what `rules` allow from this host (default: nothing). Checked by
    /// [`CasConfigBuilder::build`].
    pub fn imports(mut self, rules: ImportRules) -> Self {
        self.imports = rules;
        self
    }

    /// Reads `import: {env: NAME}` from `source` instead of the process environment (tests;
    /// Rust 2024 makes changing the process environment `unsafe`, which this workspace forbids).
    pub fn env_source(mut self, source: EnvSource) -> Self {
        self.env = source;
        self
    }

    /// Lets the holder of `key` (an Ed25519 public key, as `cloister keys gen` writes it) read
    /// every audit entry, CAS-level ones included, and ask the CAS to verify its log.
    pub fn auditor_key(mut self, key: &PublicKey) -> Self {
        self.auditor = Some(key.fingerprint());
        self
    }

    /// Sets how many bytes of the audit log one read may go through (64 KiB to 64 MiB;
    /// default 4 MiB). A filtered read that reaches it answers with a cursor to continue.
    pub fn audit_scan_bytes(mut self, bytes: u64) -> Self {
        self.audit_scan_bytes = bytes;
        self
    }

    /// Sets the resource limits: per-client rates, used-nonce capacity, transport timeouts and
    /// the connection cap (each checked against the range its field documents).
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Checks the configuration and freezes it.
    pub fn build(self) -> Result<CasConfig, Error> {
        let issuer = self.issuer.trim_end_matches('/').to_owned();
        let host = issuer.strip_prefix("https://").unwrap_or_default();
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(Error::invalid(
                "CAS issuer URL",
                "must be an https:// URL with a host",
            ));
        }
        let between = |what: &'static str, d: Duration, min: u64, max: u64, reason| {
            if d < Duration::from_secs(min) || d > Duration::from_secs(max) {
                Err(Error::invalid(what, reason))
            } else {
                Ok(())
            }
        };
        between("nonce TTL", self.nonce_ttl, 1, 3600, "must be 1 s to 1 h")?;
        between(
            "token validity",
            self.token_validity,
            60,
            86_400,
            "must be 1 min to 24 h",
        )?;
        between(
            "certificate validity",
            self.cert_validity,
            60,
            30 * 86_400,
            "must be 1 min to 30 days",
        )?;
        between(
            "request timeout",
            self.request_timeout,
            1,
            600,
            "must be 1 s to 10 min",
        )?;
        between(
            "signature window",
            self.signature_window,
            10,
            3600,
            "must be 10 s to 1 h",
        )?;
        if !(4096..=64 << 20).contains(&self.max_body_bytes) {
            return Err(Error::invalid(
                "maximum body size",
                "must be 4 KiB to 64 MiB",
            ));
        }
        if !(64 << 10..=64 << 20).contains(&self.audit_scan_bytes) {
            return Err(Error::invalid(
                "audit scan limit",
                "must be 64 KiB to 64 MiB",
            ));
        }
        if self.tls_names.is_empty() {
            return Err(Error::invalid(
                "TLS names",
                "at least one DNS name or IP address",
            ));
        }
        self.limits.check()?;
        rcgen::CertificateParams::new(self.tls_names.clone())
            .map_err(|_| Error::invalid("TLS names", "not DNS names or IP addresses"))?;
        let maa = match self.maa {
            None => None,
            Some((issuer, jwks)) => {
                Some(Arc::new(MaaVerifier::new(&jwks, issuer).map_err(|_| {
                    Error::invalid("MAA trust", "the JWKS holds no usable signing key")
                })?))
            }
        };
        self.imports.validate(None)?;
        check_kubernetes_dir(self.kubernetes_secrets_dir.as_deref(), None)?;
        Ok(CasConfig {
            issuer,
            sim_keys: self.sim_keys,
            maa,
            dcap_root_der: self
                .dcap_root_der
                .unwrap_or_else(|| cloister_attest::dcap::INTEL_SGX_ROOT_CA.to_vec()),
            clock: self.clock,
            nonce_ttl: self.nonce_ttl,
            token_validity: self.token_validity,
            cert_validity: self.cert_validity,
            request_timeout: self.request_timeout,
            max_body_bytes: self.max_body_bytes,
            signature_window: self.signature_window,
            tls_names: self.tls_names,
            kubernetes_secrets_dir: self.kubernetes_secrets_dir,
            env: self.env,
            auditor: self.auditor,
            audit_scan_bytes: self.audit_scan_bytes,
            imports: Arc::new(self.imports),
            data_dir: None,
            limits: self.limits,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn defaults_build() {
        let c = CasConfig::builder("https://cas.example/").build().unwrap();
        assert_eq!(c.issuer(), "https://cas.example");
        assert_eq!(c.nonce_ttl(), Duration::from_secs(60));
        assert!(c.maa().is_none());
        assert!(c.sim_keys().is_empty());
        assert_eq!(c.dcap_root_der(), cloister_attest::dcap::INTEL_SGX_ROOT_CA);
    }

    #[test]
    fn invalid_values_are_refused() {
        let refused = |b: CasConfigBuilder| match b.build() {
            Err(Error::InvalidInput { what, .. }) => what,
            other => panic!("expected a refusal, got {other:?}"),
        };
        assert_eq!(refused(CasConfig::builder("http://cas")), "CAS issuer URL");
        assert_eq!(
            refused(CasConfig::builder("https://cas").nonce_ttl(Duration::ZERO)),
            "nonce TTL"
        );
        assert_eq!(
            refused(CasConfig::builder("https://cas").max_body_bytes(10)),
            "maximum body size"
        );
        assert_eq!(
            refused(CasConfig::builder("https://cas").tls_names(vec![])),
            "TLS names"
        );
        assert_eq!(
            refused(CasConfig::builder("https://cas").audit_scan_bytes(1024)),
            "audit scan limit"
        );
        assert_eq!(
            refused(CasConfig::builder("https://cas").maa("https://maa", b"{}".to_vec())),
            "MAA trust"
        );
    }

    #[test]
    fn import_rules_are_checked_with_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let opened = |rules: ImportRules| {
            CasConfig::builder("https://cas")
                .imports(rules)
                .build()?
                .with_data_dir(&data)
        };
        let ok = opened(ImportRules::none().allow_files("t", dir.path().join("imports"))).unwrap();
        assert_eq!(ok.data_dir(), Some(data.as_path()));
        assert!(ok.imports().namespace("t").is_some());
        for bad in [
            ImportRules::none().allow_files("t", &data),
            ImportRules::none().allow_files("t", dir.path()),
            ImportRules::none().allow_env("t", "CLOISTER_MASTER_KEY"),
        ] {
            assert!(
                matches!(opened(bad), Err(Error::ImportRules(_))),
                "accepted"
            );
        }
        let k8s_in_proc = CasConfig::builder("https://cas")
            .kubernetes_secrets_dir("/proc/self")
            .build();
        assert!(matches!(k8s_in_proc, Err(Error::ImportRules(m)) if m.contains("Kubernetes")));
    }

    #[test]
    fn manual_clock_moves_when_told() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let clock = ManualClock::new(t0);
        clock.advance(Duration::from_secs(61));
        assert_eq!(clock.now(), t0 + Duration::from_secs(61));
        clock.set(t0);
        assert_eq!(clock.now(), t0);
    }
}

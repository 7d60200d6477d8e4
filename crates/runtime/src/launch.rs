//! The launch: measure → key → evidence → attest → configuration in memory → bundle → files →
//! role.
//!
//! 1. The app bundle's header gives its plaintext digest; with the running executable it makes
//!    the [`Measurement`].
//! 2. A fresh [`WorkloadKey`] is made; the CAS's nonce and the key's SPKI are bound into the
//!    evidence's `report_data`.
//! 3. Evidence comes from the [`EvidenceSource`]: the node's LAS (with its collateral; a sim LAS
//!    is asked to sign the measurement the runtime computed), a sim platform key in-process
//!    (development only), or the machine's TEE interface.
//! 4. `POST /v1/attest` to the CAS, pinned to its certificate. A refusal stops here with every
//!    failed rule ([`Error::Refused`]). The answer — token, certificate, CA, configuration — is
//!    opened with the workload key and kept in memory only.
//! 5. The bundle key comes from the configuration's env [`BUNDLE_KEY_ENV`] (removed from the env
//!    the role sees); the bundle is authenticated, decrypted and unpacked in memory. When the
//!    configuration pins a digest ([`BUNDLE_DIGEST_ENV`]) the bundle must have it, and a launch
//!    without a bundle is refused. Policies that accept a hardware TEE must pin it (the policy
//!    rule `bundle-digest`): the hardware measurement does not cover the bundle.
//! 6. Injected files are kept in memory and written to a private directory (see [`crate::files`]).
//! 7. The role runs with the [`RoleContext`]; the files go when it is dropped.
//!
//! Nothing is written before step 6, so a refusal, a tampered bundle or a wrong key leaves no
//! trace on disk. [`launch`] blocks: call it from a plain thread (`main`), not from inside an
//! async runtime (it runs its own for the CAS calls and drops it before the role starts).

use std::fmt;
use std::path::{Path, PathBuf};

use cloister_attest::collect::{self, Collector, Evidence, SimCollector};
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_cas::api::AttestRequest;
use cloister_cas::client::{Attested, CasClient};
use cloister_cas::envelope::WorkloadKey;
use cloister_las::{LasCollector, SourceKind};
use secrecy::{ExposeSecret as _, SecretString};

use crate::Error;
use crate::bundle::{self, BundleDigest, BundleKey, Header};
use crate::files::{FilesMode, InjectedFiles};
use crate::measure::Measurement;
use crate::role::{Identity, Role, RoleContext};

/// The configuration variable holding the bundle key (64 hex digits or base64; normally
/// `$$cloister:bundle_key$$`, imported from the packager's key file).
pub const BUNDLE_KEY_ENV: &str = "CLOISTER_BUNDLE_KEY";
/// The configuration variable that, when set, pins the bundle's plaintext digest (64 hex
/// digits, as `cloister measure --json` prints it): what binds the bundle on hardware TEEs,
/// whose measurement covers the launched image but not the bundle.
pub const BUNDLE_DIGEST_ENV: &str = "CLOISTER_BUNDLE_DIGEST";

/// Where the evidence comes from.
#[non_exhaustive]
pub enum EvidenceSource {
    /// The node's LAS at this URL (`http://HOST_IP:9480`).
    Las(String),
    /// **Development only.** Sim evidence signed in this process with this platform key, for
    /// the measurement the runtime computed. Anyone holding the key can make such evidence;
    /// policies accept it only when they name `sim`. Warn your user when you choose it.
    Sim(PlatformKey),
    /// The machine's TEE interface (configfs-tsm or Gramine), found under `root` (`/`).
    Hardware {
        /// The filesystem root to look under.
        root: PathBuf,
    },
}

impl fmt::Debug for EvidenceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvidenceSource::Las(url) => f.debug_tuple("Las").field(url).finish(),
            // Its Debug shows only the public key's fingerprint.
            EvidenceSource::Sim(key) => f.debug_tuple("Sim").field(key).finish(),
            EvidenceSource::Hardware { root } => {
                f.debug_struct("Hardware").field("root", root).finish()
            }
        }
    }
}

/// What to launch, and where to attest.
#[derive(Debug)]
pub struct Launch {
    /// The CAS's URL (`https://…`).
    pub cas_url: String,
    /// The CAS's certificate (PEM), the only one trusted.
    pub cas_cert_pem: String,
    /// The session (`namespace/name`).
    pub session: String,
    /// The service within it.
    pub service: String,
    /// Where evidence comes from.
    pub evidence: EvidenceSource,
    /// The host's arguments, for `@@N` in the policy's `args`.
    pub host_args: Vec<String>,
    /// The encrypted app bundle.
    pub bundle: Option<PathBuf>,
    /// Where injected files are kept.
    pub files: FilesMode,
}

impl Launch {
    /// A launch with no bundle, no host arguments, and files kept as [`FilesMode::Auto`] says.
    pub fn new(
        cas_url: impl Into<String>,
        cas_cert_pem: impl Into<String>,
        session: impl Into<String>,
        service: impl Into<String>,
        evidence: EvidenceSource,
    ) -> Self {
        Self {
            cas_url: cas_url.into(),
            cas_cert_pem: cas_cert_pem.into(),
            session: session.into(),
            service: service.into(),
            evidence,
            host_args: Vec::new(),
            bundle: None,
            files: FilesMode::Auto,
        }
    }
}

/// The sealed bundle, read before attestation.
struct SealedBundle {
    path: PathBuf,
    bytes: Vec<u8>,
    header: Header,
}

impl SealedBundle {
    fn read(path: &Path) -> Result<Self, Error> {
        use std::io::Read as _;
        let file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut bytes = Vec::new();
        file.take(bundle::MAX_BUNDLE_LEN as u64 + 1025)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io("read", path, e))?;
        let header = Header::parse(&bytes)?;
        Ok(Self {
            path: path.to_path_buf(),
            bytes,
            header,
        })
    }
}

/// Run `role` as an attested workload (see the module docs for the steps).
#[tracing::instrument(skip_all, fields(session = %options.session, service = %options.service, role = role.name()))]
pub fn launch<R: Role>(options: Launch, role: R) -> Result<R::Output, Error> {
    let Launch {
        cas_url,
        cas_cert_pem,
        session,
        service,
        evidence,
        host_args,
        bundle,
        files,
    } = options;
    if role.needs_bundle() && bundle.is_none() {
        return Err(Error::InvalidOption {
            what: "bundle",
            reason: format!("the {} role needs an app bundle", role.name()),
        });
    }
    let sealed = bundle.as_deref().map(SealedBundle::read).transpose()?;
    let measurement = Measurement::of_running_exe(sealed.as_ref().map(|s| &s.header.digest))?;
    tracing::info!(%measurement, "measured the executable and the bundle");

    let source = Source::new(evidence, &measurement)?;
    let key = WorkloadKey::generate()?;
    let attested = attest(
        &cas_url,
        &cas_cert_pem,
        &session,
        &service,
        &key,
        &source,
        host_args,
    )?;
    drop(source);
    tracing::info!(session_hash = %attested.session_hash, "attested; configuration received");

    let Attested {
        token,
        certificate_pem,
        ca_pem,
        session_hash,
        expires_at,
        config,
    } = attested;
    let mut env = config.env;
    let bundle = match sealed {
        Some(sealed) => Some(open_bundle(&sealed, &mut env)?),
        None => {
            env.remove(BUNDLE_KEY_ENV);
            refuse_pin_without_bundle(&env)?;
            None
        }
    };
    let files = InjectedFiles::materialise(config.files, &files)?;
    let ctx = RoleContext {
        session,
        service,
        session_hash,
        measurement,
        bundle,
        command: config.command,
        args: config.args,
        env,
        files,
        identity: Identity {
            key,
            certificate_pem,
            ca_pem,
            token,
            token_expires_at: expires_at,
        },
    };
    let name = role.name().to_owned();
    role.run(ctx)
        .map_err(|source| Error::Role { role: name, source })
}

/// A configuration that pins a bundle digest is for that bundle: launching without any bundle
/// would run the service's role (and hand it the service's secrets) with no app the custodian
/// pinned.
fn refuse_pin_without_bundle(
    env: &std::collections::BTreeMap<String, SecretString>,
) -> Result<(), Error> {
    match env.get(BUNDLE_DIGEST_ENV) {
        Some(pinned) => Err(Error::BundleNotPinned {
            expected: pinned.expose_secret().trim().to_owned(),
            got: "no bundle".to_owned(),
        }),
        None => Ok(()),
    }
}

/// Open the bundle with the key from the configuration, and check its pinned digest.
fn open_bundle(
    sealed: &SealedBundle,
    env: &mut std::collections::BTreeMap<String, SecretString>,
) -> Result<bundle::Bundle, Error> {
    let origin = format!("env {BUNDLE_KEY_ENV}");
    let value = env.remove(BUNDLE_KEY_ENV).ok_or(Error::NoBundleKey {
        env: BUNDLE_KEY_ENV,
    })?;
    let key = BundleKey::parse(value.expose_secret().as_bytes(), &origin)?;
    drop(value);
    let opened = bundle::open(&sealed.bytes, &key, &origin)?;
    if let Some(pinned) = env.get(BUNDLE_DIGEST_ENV) {
        let expected =
            BundleDigest::from_hex(pinned.expose_secret()).ok_or_else(|| Error::InvalidOption {
                what: "CLOISTER_BUNDLE_DIGEST in the configuration",
                reason: "not 64 hex digits".into(),
            })?;
        if expected != *opened.digest() {
            return Err(Error::BundleNotPinned {
                expected: expected.to_string(),
                got: opened.digest().to_string(),
            });
        }
    }
    tracing::info!(
        bundle = %sealed.path.display(),
        files = opened.files().len(),
        digest = %opened.digest(),
        "bundle opened"
    );
    Ok(opened)
}

/// A ready evidence source.
enum Source {
    Las(LasCollector),
    Local(Box<dyn Collector>),
}

impl Source {
    fn new(evidence: EvidenceSource, measurement: &Measurement) -> Result<Self, Error> {
        Ok(match evidence {
            EvidenceSource::Las(url) => {
                let las = LasCollector::connect(&url)
                    .map_err(Error::Las)?
                    .claiming_measurement(measurement.as_bytes().to_vec());
                if las.source() == SourceKind::Sim {
                    tracing::warn!(
                        las = %url,
                        "the LAS is a sim LAS: its evidence says what this process claims; development only"
                    );
                }
                Source::Las(las)
            }
            EvidenceSource::Sim(key) => {
                // Chosen by the caller, who warns its user (`cloister run` does, loudly).
                tracing::info!(
                    "sim evidence signed in this process: development only, no hardware protects this workload"
                );
                Source::Local(Box::new(SimCollector::new(
                    key,
                    Statement {
                        measurement: measurement.as_bytes().to_vec(),
                        ..Statement::default()
                    },
                )))
            }
            EvidenceSource::Hardware { root } => {
                Source::Local(collect::detect(&root).ok_or(Error::NoTee)?)
            }
        })
    }

    /// Evidence carrying `report_data`, and collateral for the CAS when there is some. Blocks.
    fn collect(
        &self,
        report_data: &[u8; 64],
    ) -> Result<(Evidence, Option<serde_json::Value>), Error> {
        match self {
            Source::Las(las) => {
                let got = las
                    .collect_with_collateral(report_data)
                    .map_err(Error::Las)?;
                if let Some(e) = &got.collateral_error {
                    tracing::warn!(code = %e.code, message = %e.message, "the LAS attached no collateral");
                }
                Ok((got.evidence, got.attest_collateral))
            }
            Source::Local(collector) => Ok((
                collector.collect(report_data).map_err(Error::Evidence)?,
                None,
            )),
        }
    }
}

/// Nonce → evidence → `POST /v1/attest` → configuration opened with `key`.
///
/// The CAS calls run on a current-thread runtime made here; evidence is collected between them
/// on this thread, outside the runtime, because collectors block (the LAS collector with
/// reqwest's blocking client, which must not run inside an async runtime).
fn attest(
    cas_url: &str,
    cas_cert_pem: &str,
    session: &str,
    service: &str,
    key: &WorkloadKey,
    source: &Source,
    host_args: Vec<String>,
) -> Result<Attested, Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("start", "the async runtime", e))?;
    let cas = {
        let _entered = rt.enter();
        CasClient::new(cas_url, cas_cert_pem)?
    };
    let nonce = rt.block_on(cas.nonce())?;
    let (evidence, collateral) = source.collect(&nonce.report_data(key))?;
    tracing::debug!(tee = %evidence.tee, len = evidence.bytes.len(), "collected evidence");
    let request = AttestRequest::new(
        session, service, &evidence, collateral, &nonce, key, host_args,
    );
    let attested = rt.block_on(cas.attest(&request, key))?;
    drop(cas);
    Ok(attested)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A configuration that pins a bundle refuses a launch without one: on hardware the
    /// measurement does not cover the bundle, so a missing bundle must not pass for the pinned
    /// one.
    #[test]
    fn a_pinned_digest_without_a_bundle_is_refused() {
        let mut env = BTreeMap::new();
        refuse_pin_without_bundle(&env).unwrap();
        env.insert(
            BUNDLE_DIGEST_ENV.to_owned(),
            SecretString::from("0d".repeat(32)),
        );
        let err = refuse_pin_without_bundle(&env).unwrap_err();
        assert!(
            matches!(&err, Error::BundleNotPinned { got, .. } if got == "no bundle"),
            "{err:?}"
        );
        assert!(err.is_refusal());
    }
}

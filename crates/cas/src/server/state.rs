//! The server's state: store, audit log, configuration, and the CAS's own keys.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloister_attest::Verifiers;
use cloister_policy::Policy;
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};

use super::nonces::Nonces;
use super::refusals::RefusalLog;
use super::replay::UsedSignatures;
use crate::api::{CasId, MAX_REMEMBERED_SIGNATURES};
use crate::audit::{AuditLog, AuditPublicKey, AuditSigner, Event, EventKind};
use crate::config::CasConfig;
use crate::token::TokenSigner;
use crate::{CasKey, Error, FileStore, KeyAlgorithm, MasterKey, SecretBytes, Session, Store};

/// The store id of the token signing key.
pub const TOKEN_KEY_ID: &str = "token-es256";
/// The store id of the CAS's TLS identity (the private key; `public_key` holds the certificate DER).
pub const TLS_KEY_ID: &str = "tls-identity";
/// The file in the data directory holding the CAS's TLS certificate, for custodians to pin.
pub const CERT_FILE: &str = "cas.crt";

/// How long the CAS's self-signed TLS certificate is valid.
const TLS_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How many parsed policies are kept.
const POLICY_CACHE: usize = 256;

/// Everything the CAS's handlers share. Cheap to clone.
#[derive(Clone)]
pub struct CasState(pub(crate) Arc<Inner>);

impl std::fmt::Debug for CasState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CasState")
            .field("dir", &self.0.dir)
            .field("config", &self.0.config)
            .finish_non_exhaustive()
    }
}

pub(crate) struct Inner {
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub config: CasConfig,
    pub token: TokenSigner,
    pub verifiers: Verifiers,
    pub dir: PathBuf,
    pub tls_cert_der: Vec<u8>,
    pub tls_cert_pem: String,
    tls_key: SecretBytes,
    policies: Mutex<HashMap<[u8; 32], Arc<Policy>>>,
    /// Session CAs, built once per stored value.
    pub session_cas: crate::secrets::SessionCaCache,
    pub nonces: Nonces,
    /// Refused attestations being counted instead of appended (see `refusals.rs`).
    pub refusals: RefusalLog,
    /// What request signatures are bound to: SHA-256 of the TLS certificate's SPKI.
    pub cas_id: CasId,
    /// Signatures of state-changing requests already accepted.
    pub used_signatures: UsedSignatures,
    /// Held while a session is created or a namespace changes, so that the namespace, quota
    /// and tombstone checks and the write are one step.
    pub namespace_lock: Mutex<()>,
}

impl CasState {
    /// Opens (or creates) the CAS in data directory `dir`: the embedded store and the audit log
    /// under `master`, the token signing key and TLS identity (created on first start).
    pub fn open(dir: &Path, master: &MasterKey, config: CasConfig) -> Result<Self, Error> {
        let store = FileStore::open(dir, master)?;
        let audit = AuditLog::open(dir, AuditSigner::from_master_key(master)?)?;
        Self::new(Arc::new(store), audit, config)
    }

    /// A CAS over any [`Store`] backend and an open audit log; `cas.crt` is written to the
    /// log's directory.
    pub fn new(store: Arc<dyn Store>, audit: AuditLog, config: CasConfig) -> Result<Self, Error> {
        // The data directory is never importable: the import rules are checked against it.
        let config = config.with_data_dir(audit.dir())?;
        let now = config.now();
        let token_key = load_or_create(&*store, &audit, TOKEN_KEY_ID, now, || {
            let signer = TokenSigner::generate()?;
            Ok((signer.to_pkcs8_der()?.to_vec(), Vec::new()))
        })?;
        let token = TokenSigner::from_pkcs8_der(token_key.private_key.expose_secret())?;
        let tls = load_or_create(&*store, &audit, TLS_KEY_ID, now, || {
            tls_identity(config.tls_names(), now)
        })?;
        let dir = audit.dir().to_owned();
        let tls_cert_pem = crate::ca::pem(&tls.public_key);
        write_cert_file(&dir, &tls_cert_pem)?;
        let nonces = Nonces::new(config.nonce_ttl(), config.limits().max_used_nonces)
            .map_err(|_| Error::Internal("the OS random generator failed"))?;
        let cas_id = CasId::of_certificate_der(&tls.public_key).ok_or(Error::Internal(
            "the CAS's own TLS certificate does not parse",
        ))?;
        Ok(Self(Arc::new(Inner {
            verifiers: verifiers(&config),
            store,
            audit,
            config,
            token,
            dir,
            tls_cert_der: tls.public_key,
            tls_cert_pem,
            tls_key: tls.private_key,
            policies: Mutex::new(HashMap::new()),
            session_cas: crate::secrets::SessionCaCache::default(),
            nonces,
            refusals: RefusalLog::default(),
            cas_id,
            used_signatures: UsedSignatures::new(MAX_REMEMBERED_SIGNATURES),
            namespace_lock: Mutex::new(()),
        })))
    }

    /// The CAS id request signatures are bound to (also in `GET /v1/health`).
    pub fn cas_id(&self) -> CasId {
        self.0.cas_id
    }

    /// Sets the operator's admin key (Ed25519 SPKI DER) and creates namespace records for
    /// existing sessions: what `cloister cas init --admin-key` does, for a CAS already open
    /// (in-process deployments and tests). See [`crate::admin`].
    pub fn init_admin(&self, admin_spki_der: &[u8]) -> Result<crate::admin::AdminInit, Error> {
        let _guard = self
            .0
            .namespace_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        crate::admin::init_admin(
            &*self.0.store,
            &self.0.audit,
            admin_spki_der,
            self.0.config.now(),
        )
    }

    /// The CAS's TLS certificate (PEM): what clients pin. Also in `DIR/cas.crt`.
    pub fn certificate_pem(&self) -> &str {
        &self.0.tls_cert_pem
    }

    /// The configuration.
    pub fn config(&self) -> &CasConfig {
        &self.0.config
    }

    /// The audit log's public key.
    pub fn audit_public_key(&self) -> AuditPublicKey {
        self.0.audit.public_key()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.0.dir
    }

    /// How many used nonces the CAS remembers (until they expire). Issuing adds none.
    pub fn used_nonces(&self) -> usize {
        self.0.nonces.used()
    }

    /// A rustls server configuration with the CAS's TLS identity (TLS 1.3, ring, HTTP/1.1).
    pub fn tls_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key =
            rustls_pki_types::PrivateKeyDer::Pkcs8(self.0.tls_key.expose_secret().to_vec().into());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|_| Error::Internal("rustls refused TLS 1.3 with ring"))?
            .with_no_client_auth()
            .with_single_cert(vec![self.0.tls_cert_der.clone().into()], key)
            .map_err(|_| Error::Internal("rustls refused the CAS's TLS identity"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Inner {
    /// The policy of a stored session version, parsed once and cached by hash.
    pub fn policy(&self, yaml: &str, hash: &crate::SessionHash) -> Result<Arc<Policy>, Error> {
        let mut cache = self
            .policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(p) = cache.get(hash.as_bytes()) {
            return Ok(p.clone());
        }
        let policy = Policy::parse(yaml).map_err(|problems| {
            tracing::error!(%problems, "a stored policy no longer validates");
            Error::Internal("a stored policy no longer validates")
        })?;
        if cache.len() >= POLICY_CACHE {
            cache.clear();
        }
        let policy = Arc::new(policy);
        cache.insert(*hash.as_bytes(), policy.clone());
        Ok(policy)
    }

    /// The session `name` and its policy in force, or `None`.
    pub fn current(&self, name: &str) -> Result<Option<(Session, Arc<Policy>)>, Error> {
        if name.is_empty() || name.len() > crate::store::MAX_NAME_LEN {
            return Ok(None);
        }
        let Some(session) = self.store.session(name)? else {
            return Ok(None);
        };
        let head = session
            .head()
            .ok_or(Error::Internal("a stored session has no version"))?;
        let policy = self.policy(&head.yaml, &head.hash)?;
        Ok(Some((session, policy)))
    }
}

/// The stored key `id`, or a new one from `make` (private PKCS#8, public part) stored and
/// audited. Two CAS processes starting together agree on the one stored first.
fn load_or_create(
    store: &dyn Store,
    audit: &AuditLog,
    id: &str,
    now: SystemTime,
    make: impl FnOnce() -> Result<(Vec<u8>, Vec<u8>), Error>,
) -> Result<CasKey, Error> {
    if let Some(key) = store.cas_key(id)? {
        return Ok(key);
    }
    let (private, public) = make()?;
    let key = CasKey {
        id: id.to_owned(),
        algorithm: KeyAlgorithm::Es256,
        private_key: SecretBytes::new(private),
        public_key: public,
        created: now,
        not_after: None,
    };
    match store.insert_cas_key(key.clone()) {
        Ok(()) => {
            audit.append(&Event::new(EventKind::KeyCreated).released(id))?;
            tracing::info!(key = id, "created a CAS key");
            Ok(key)
        }
        Err(Error::Conflict { .. }) => store
            .cas_key(id)?
            .ok_or(Error::Internal("a CAS key vanished after a conflict")),
        Err(e) => Err(e),
    }
}

/// A self-signed P-256 TLS certificate for `names`: (PKCS#8 key, certificate DER).
fn tls_identity(names: &[String], now: SystemTime) -> Result<(Vec<u8>, Vec<u8>), Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(crate::ca::internal)?;
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|_| Error::invalid("TLS names", "not DNS names or IP addresses"))?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Cloister");
    dn.push(DnType::CommonName, "Cloister CAS");
    params.distinguished_name = dn;
    // Not a CA: clients trust exactly this certificate, as its own root.
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = (now - Duration::from_secs(3600)).into();
    params.not_after = (now + TLS_VALIDITY).into();
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|_| Error::Internal("the OS random generator failed"))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key).map_err(crate::ca::internal)?;
    Ok((key.serialize_der(), cert.der().to_vec()))
}

/// Writes `DIR/cas.crt` (atomically, only when it changed).
/// The trust set evidence is verified against: the configured sim keys, MAA provider and DCAP
/// root (the AMD roots are bundled in `cloister-attest`).
fn verifiers(config: &CasConfig) -> Verifiers {
    let verifiers = Verifiers::new()
        .trust_sim_keys(config.sim_keys().iter().cloned())
        .dcap_root_ca(config.dcap_root_der().to_vec());
    match config.maa() {
        Some(maa) => verifiers.trust_maa(maa.clone()),
        None => verifiers,
    }
}

fn write_cert_file(dir: &Path, pem: &str) -> Result<(), Error> {
    let path = dir.join(CERT_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(pem) {
        return Ok(());
    }
    let tmp = dir.join(format!("{CERT_FILE}.tmp"));
    std::fs::write(&tmp, pem).map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))
}

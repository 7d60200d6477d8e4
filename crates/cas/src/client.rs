//! The CAS client library: what the runtime and the CLI use to talk to a CAS.
//!
//! [`CasClient`] speaks HTTPS (reqwest, rustls with the ring provider, TLS 1.3) and trusts
//! exactly one certificate: the CAS's own, pinned from `DIR/cas.crt` (no system roots). Signed
//! requests ([`RequestSigner`], see [`crate::api`] for the scheme) are bound to that CAS: the
//! client computes the CAS id from the pinned certificate. Session, namespace and audit reads,
//! namespace changes (the admin key) and the namespace owner's approval of a session's
//! creation are signed requests; creates and updates carry owner signatures in the body;
//! deletions are approved by owners over [`api::deletion_hash`].
//!
//! A workload attests with [`attest_workload`]: nonce → `report_data` bound to its key →
//! evidence from its collector → `POST /v1/attest` → the sealed configuration opened with its
//! key. The configuration ([`ResolvedConfig`]) holds secrets: they are `secrecy` strings, wiped
//! on drop and absent from `Debug`.
//!
//! # Example
//!
//! ```no_run
//! use cloister_cas::client::{CasClient, attest_workload};
//! use cloister_cas::envelope::WorkloadKey;
//! # async fn demo(collector: &dyn cloister_attest::collect::Collector) -> Result<(), cloister_cas::Error> {
//! let pinned = std::fs::read_to_string("/var/lib/cloister-cas/cas.crt").unwrap_or_default();
//! let cas = CasClient::new("https://cas.cloister.svc:8443", &pinned)?;
//! let key = WorkloadKey::generate()?;
//! let attested = attest_workload(&cas, "demo/nyc-taxi", "driver", &key, collector, None, &[]).await?;
//! println!("{:?}", attested.config); // names and sizes only
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::collect::{Collector, Evidence};
use cloister_attest::{EvidenceKind, binding};
use cloister_policy::{KeyFingerprint, OwnerKey, SessionHash, SignedPolicy};
use ed25519_dalek::Signer as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};
use reqwest::{Method, RequestBuilder};
use secrecy::{ExposeSecret as _, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::Error;
use crate::api::{
    self, AttestRequest, AttestResponse, AuditEntries, AuditEntriesQuery, AuditHead,
    AuditVerification, CasId, CreateNamespace, DeleteSession, ErrorBody, Health, NamespaceList,
    NamespaceView, NonceResponse, OpenIdConfiguration, SealedConfig, SessionList, SessionSummary,
    SessionView, SignatureHeader, SignatureJson, UpdateNamespace,
};
use crate::envelope::WorkloadKey;

/// A client of one CAS, pinned to its certificate. Cheap to clone.
#[derive(Clone)]
pub struct CasClient {
    base: String,
    http: reqwest::Client,
    cas_id: CasId,
    /// Recently signed requests: the digest of what was signed → its timestamp (see
    /// [`CasClient::timestamp`]).
    recently_signed: Arc<Mutex<HashMap<[u8; 32], u64>>>,
}

impl fmt::Debug for CasClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CasClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A nonce from the CAS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nonce {
    /// The nonce's bytes (not secret: it is bound into public evidence).
    pub bytes: Vec<u8>,
    /// When it expires (seconds since the Unix epoch).
    pub expires_at: u64,
}

impl CasClient {
    /// A client for the CAS at `url` (`https://host:port`), trusting only the certificate(s) in
    /// `pinned_cert_pem` (the CAS's `cas.crt`).
    pub fn new(url: &str, pinned_cert_pem: &str) -> Result<Self, Error> {
        let base = url.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(Error::invalid("CAS URL", "must start with https://"));
        }
        let certs = pem::parse_many(pinned_cert_pem)
            .map_err(|_| Error::invalid("pinned CAS certificate", "not PEM"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs.iter().filter(|p| p.tag() == "CERTIFICATE") {
            roots
                .add(rustls_pki_types::CertificateDer::from(
                    cert.contents().to_vec(),
                ))
                .map_err(|_| {
                    Error::invalid("pinned CAS certificate", "not a usable certificate")
                })?;
        }
        if roots.is_empty() {
            return Err(Error::invalid(
                "pinned CAS certificate",
                "no CERTIFICATE in the PEM",
            ));
        }
        let cas_id = CasId::of_certificate_pem(pinned_cert_pem)
            .ok_or_else(|| Error::invalid("pinned CAS certificate", "not an X.509 certificate"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|_| Error::Internal("rustls refused TLS 1.3 with ring"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .https_only(true)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| Error::Unreachable {
                url: base.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            base,
            http,
            cas_id,
            recently_signed: Arc::default(),
        })
    }

    /// The CAS's base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The id of the pinned CAS, which signed requests are bound to.
    pub fn cas_id(&self) -> CasId {
        self.cas_id
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    async fn send<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, Error> {
        let unreachable = |e: reqwest::Error| Error::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|_| Error::Unreachable {
                url: self.base.clone(),
                reason: format!("the answer ({status}) is not the expected JSON"),
            });
        }
        let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
            code: "unknown".into(),
            message: format!("HTTP {status} without an error body"),
            rule: None,
            reasons: Vec::new(),
            rules: Vec::new(),
            audit_seq: None,
        });
        Err(Error::Api {
            status: status.as_u16(),
            code: body.code,
            message: body.message,
            rule: body.rule,
            reasons: body.reasons,
            refused: (!body.rules.is_empty() || body.audit_seq.is_some()).then(|| {
                Box::new(crate::RefusedRules {
                    rules: body.rules,
                    audit_seq: body.audit_seq,
                })
            }),
        })
    }

    /// The time to sign a request at: now, or one second after the previous signature of the
    /// same request by the same signer when that was within this second. Ed25519 signatures
    /// are deterministic and the CAS accepts a state-changing signature once, so a retry (or a
    /// re-push right after a deletion) must not sign the very same message again.
    fn timestamp(
        &self,
        signer: &RequestSigner,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> SystemTime {
        use sha2::Digest as _;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let digest: [u8; 32] = sha2::Sha256::new()
            .chain_update(signer.spki_der())
            .chain_update([0])
            .chain_update(method)
            .chain_update([0])
            .chain_update(path)
            .chain_update([0])
            .chain_update(body)
            .finalize()
            .into();
        let mut recent = self
            .recently_signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only requests of the last seconds matter; the map stays small.
        recent.retain(|_, ts| *ts + 2 >= now);
        let ts = match recent.get(&digest) {
            Some(last) if *last >= now => last + 1,
            _ => now,
        };
        recent.insert(digest, ts);
        SystemTime::UNIX_EPOCH + Duration::from_secs(ts)
    }

    fn signed(&self, method: Method, path: &str, signer: &RequestSigner) -> RequestBuilder {
        self.signed_with_body(method, path, signer, Vec::new())
    }

    /// A request with a JSON `body`, signed over exactly those bytes.
    fn signed_with_body(
        &self,
        method: Method,
        path: &str,
        signer: &RequestSigner,
        body: Vec<u8>,
    ) -> RequestBuilder {
        let now = self.timestamp(signer, method.as_str(), path, &body);
        let header = signer.header(&self.cas_id, method.as_str(), path, &body, now);
        let request = self
            .request(method, path)
            .header(reqwest::header::AUTHORIZATION, header);
        if body.is_empty() {
            request
        } else {
            request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
        }
    }

    fn json_bytes(value: &impl serde::Serialize) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(value).map_err(|_| Error::Internal("a request body always serialises"))
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<Health, Error> {
        self.send(self.request(Method::GET, "/v1/health")).await
    }

    /// `GET /.well-known/openid-configuration`.
    pub async fn openid_configuration(&self) -> Result<OpenIdConfiguration, Error> {
        self.send(self.request(Method::GET, "/.well-known/openid-configuration"))
            .await
    }

    /// `GET /.well-known/jwks.json`: the keys that verify attestation tokens
    /// ([`crate::token::verify`]). Feature `server` (which has the token module).
    #[cfg(feature = "server")]
    pub async fn jwks(&self) -> Result<jsonwebtoken::jwk::JwkSet, Error> {
        self.send(self.request(Method::GET, "/.well-known/jwks.json"))
            .await
    }

    /// `GET /v1/openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value, Error> {
        self.send(self.request(Method::GET, "/v1/openapi.json"))
            .await
    }

    /// `POST /v1/nonce`.
    pub async fn nonce(&self) -> Result<Nonce, Error> {
        let r: NonceResponse = self.send(self.request(Method::POST, "/v1/nonce")).await?;
        Ok(Nonce {
            bytes: B64
                .decode(r.nonce)
                .map_err(|_| Error::invalid("nonce from CAS", "not base64"))?,
            expires_at: r.expires_at,
        })
    }

    /// `POST /v1/attest`, returning the answer as sent (configuration still sealed).
    pub async fn attest_raw(&self, req: &AttestRequest) -> Result<AttestResponse, Error> {
        self.send(self.request(Method::POST, "/v1/attest").json(req))
            .await
    }

    /// `POST /v1/attest`, opening the sealed configuration with `key` (the key whose SPKI is
    /// `req.public_key`).
    pub async fn attest(&self, req: &AttestRequest, key: &WorkloadKey) -> Result<Attested, Error> {
        let nonce = B64
            .decode(&req.nonce)
            .map_err(|_| Error::invalid("nonce", "not base64"))?;
        let response = self.attest_raw(req).await?;
        Attested::open(response, key, &req.session, &req.service, &nonce)
    }

    /// `POST /v1/sessions`, approved by `approver`, an owner of the session's namespace.
    pub async fn create_session(
        &self,
        signed: &SignedPolicy,
        approver: &RequestSigner,
    ) -> Result<SessionSummary, Error> {
        let body = Self::json_bytes(signed)?;
        self.send(self.signed_with_body(Method::POST, "/v1/sessions", approver, body))
            .await
    }

    /// `POST /v1/namespaces`, signed by the admin key.
    pub async fn create_namespace(
        &self,
        create: &CreateNamespace,
        admin: &RequestSigner,
    ) -> Result<NamespaceView, Error> {
        let body = Self::json_bytes(create)?;
        self.send(self.signed_with_body(Method::POST, "/v1/namespaces", admin, body))
            .await
    }

    /// Creates namespace `ns` owned by `owner` alone (default quota), signed by `admin`: the
    /// first step on a fresh CAS in tests and in-process deployments.
    pub async fn create_namespace_owned_by(
        &self,
        ns: &str,
        owner: &OwnerKey,
        admin: &OwnerKey,
    ) -> Result<NamespaceView, Error> {
        let create = CreateNamespace {
            name: ns.to_owned(),
            owners: vec![api::NamespaceOwnerJson::of("owner", owner.public_key())?],
            session_quota: None,
        };
        self.create_namespace(&create, &RequestSigner::from_owner_key(admin)?)
            .await
    }

    /// `GET /v1/namespaces/{ns}`, signed by the admin key or an owner of `ns`.
    pub async fn get_namespace(
        &self,
        ns: &str,
        signer: &RequestSigner,
    ) -> Result<NamespaceView, Error> {
        self.send(self.signed(Method::GET, &format!("/v1/namespaces/{ns}"), signer))
            .await
    }

    /// `GET /v1/namespaces`: those `signer` may read.
    pub async fn list_namespaces(&self, signer: &RequestSigner) -> Result<NamespaceList, Error> {
        self.send(self.signed(Method::GET, "/v1/namespaces", signer))
            .await
    }

    /// `PUT /v1/namespaces/{ns}`, signed by the admin key.
    pub async fn update_namespace(
        &self,
        ns: &str,
        update: &UpdateNamespace,
        admin: &RequestSigner,
    ) -> Result<NamespaceView, Error> {
        let body = Self::json_bytes(update)?;
        self.send(self.signed_with_body(Method::PUT, &format!("/v1/namespaces/{ns}"), admin, body))
            .await
    }

    /// `DELETE /v1/namespaces/{ns}`, signed by the admin key.
    pub async fn delete_namespace(
        &self,
        ns: &str,
        admin: &RequestSigner,
    ) -> Result<NamespaceView, Error> {
        self.send(self.signed(Method::DELETE, &format!("/v1/namespaces/{ns}"), admin))
            .await
    }

    /// `PUT /v1/sessions/{name}`.
    pub async fn update_session(
        &self,
        name: &str,
        signed: &SignedPolicy,
    ) -> Result<SessionSummary, Error> {
        self.send(
            self.request(Method::PUT, &format!("/v1/sessions/{name}"))
                .json(signed),
        )
        .await
    }

    /// `GET /v1/sessions/{name}`, signed by `signer` (an owner or reader).
    pub async fn session(&self, name: &str, signer: &RequestSigner) -> Result<SessionView, Error> {
        self.send(self.signed(Method::GET, &format!("/v1/sessions/{name}"), signer))
            .await
    }

    /// `GET /v1/sessions`, signed by `signer`: the sessions it may read.
    pub async fn list_sessions(&self, signer: &RequestSigner) -> Result<SessionList, Error> {
        self.send(self.signed(Method::GET, "/v1/sessions", signer))
            .await
    }

    /// `DELETE /v1/sessions/{name}`, approved by `owners` for the current `head`.
    pub async fn delete_session(
        &self,
        name: &str,
        head: &SessionHash,
        owners: &[&OwnerKey],
    ) -> Result<SessionSummary, Error> {
        let body = delete_request(name, head, owners);
        self.send(
            self.request(Method::DELETE, &format!("/v1/sessions/{name}"))
                .json(&body),
        )
        .await
    }

    /// `GET /v1/audit/head`.
    pub async fn audit_head(&self) -> Result<AuditHead, Error> {
        self.send(self.request(Method::GET, "/v1/audit/head")).await
    }

    /// `GET /v1/audit/entries?after=N&limit=M`, signed by `signer`: the auditor key reads every
    /// entry, an owner or reader its sessions' entries. Page on with `after = next` while
    /// `more` (or use [`CasClient::audit_entries_all`]).
    pub async fn audit_entries(
        &self,
        after: u64,
        limit: Option<usize>,
        signer: &RequestSigner,
    ) -> Result<AuditEntries, Error> {
        self.audit_entries_query(
            &AuditEntriesQuery {
                after,
                limit,
                session: None,
            },
            signer,
        )
        .await
    }

    /// `GET /v1/audit/entries` with every query parameter, signed by `signer`.
    pub async fn audit_entries_query(
        &self,
        query: &AuditEntriesQuery,
        signer: &RequestSigner,
    ) -> Result<AuditEntries, Error> {
        self.send(self.signed(Method::GET, &query.path_and_query(), signer))
            .await
    }

    /// Every entry after `after` that `signer` may read, page by page.
    pub async fn audit_entries_all(
        &self,
        mut after: u64,
        signer: &RequestSigner,
    ) -> Result<Vec<crate::audit::Entry>, Error> {
        let mut entries = Vec::new();
        loop {
            let page = self.audit_entries(after, None, signer).await?;
            entries.extend(page.entries);
            match page.next {
                Some(next) if page.more && next > after => after = next,
                Some(_) if page.more => {
                    return Err(Error::Unreachable {
                        url: self.base.clone(),
                        reason: "the CAS's audit cursor did not move forward".into(),
                    });
                }
                _ => return Ok(entries),
            }
        }
    }

    /// `GET /v1/audit/verify`, signed by the auditor key.
    pub async fn audit_verify(&self, signer: &RequestSigner) -> Result<AuditVerification, Error> {
        self.send(self.signed(Method::GET, "/v1/audit/verify", signer))
            .await
    }
}

/// The body of a deletion approved by `owners` for session `name` at `head`.
pub fn delete_request(name: &str, head: &SessionHash, owners: &[&OwnerKey]) -> DeleteSession {
    let approved = api::deletion_hash(name, head);
    DeleteSession {
        head: head.to_string(),
        signatures: owners
            .iter()
            .map(|o| {
                let s = o.sign(&approved);
                SignatureJson {
                    key_fingerprint: s.key_fingerprint.to_string(),
                    sig: B64.encode(s.sig),
                }
            })
            .collect(),
    }
}

/// Signs requests with an Ed25519 key (an owner's or a reader's). The key is wiped on drop
/// and absent from `Debug`.
pub struct RequestSigner {
    key: ed25519_dalek::SigningKey,
    spki_der: Vec<u8>,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl RequestSigner {
    /// A signer with an owner's key.
    pub fn from_owner_key(owner: &OwnerKey) -> Result<Self, Error> {
        let pem = owner.to_pkcs8_pem()?;
        Self::from_pkcs8_pem(&pem)
    }

    /// A signer from a PKCS#8 PEM Ed25519 key (`cloister keys gen`).
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, Error> {
        let key = ed25519_dalek::SigningKey::from_pkcs8_pem(pem)
            .map_err(|_| Error::invalid("request signing key", "not a PKCS#8 Ed25519 key"))?;
        let spki_der = key
            .verifying_key()
            .to_public_key_der()
            .map_err(|_| Error::Internal("SPKI encoding of an Ed25519 key failed"))?
            .into_vec();
        Ok(Self { key, spki_der })
    }

    /// The key's fingerprint (SHA-256 of its SPKI DER): the principal the CAS sees.
    pub fn fingerprint(&self) -> KeyFingerprint {
        KeyFingerprint::of_spki_der(&self.spki_der)
    }

    /// The key's SubjectPublicKeyInfo DER.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The `Authorization` header value for a request to the CAS `cas` at time `now`.
    pub fn header(
        &self,
        cas: &CasId,
        method: &str,
        path_and_query: &str,
        body: &[u8],
        now: SystemTime,
    ) -> String {
        let ts = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let message = api::request_signing_message(cas, method, path_and_query, ts, body);
        SignatureHeader {
            spki_der: self.spki_der.clone(),
            ts,
            sig: self.key.sign(&message).to_bytes(),
        }
        .to_header_value()
    }
}

/// What a passed attestation gives a workload.
pub struct Attested {
    /// The attestation token (ES256 JWT, `aud` = `<session>/<service>`): a bearer secret.
    pub token: SecretString,
    /// The workload key's certificate, PEM.
    pub certificate_pem: String,
    /// The session CA's certificate, PEM.
    pub ca_pem: String,
    /// The hash of the policy version the workload was appraised against, hex.
    pub session_hash: String,
    /// The token's expiry (seconds since the Unix epoch).
    pub expires_at: u64,
    /// The service's configuration, opened.
    pub config: ResolvedConfig,
}

impl fmt::Debug for Attested {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attested")
            .field("token_len", &self.token.expose_secret().len())
            .field("session_hash", &self.session_hash)
            .field("expires_at", &self.expires_at)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Attested {
    /// Opens an attestation answer with the workload key, checking the associated data.
    pub fn open(
        response: AttestResponse,
        key: &WorkloadKey,
        session: &str,
        service: &str,
        nonce: &[u8],
    ) -> Result<Self, Error> {
        let plaintext = key.open(&response.config, &api::config_aad(session, service, nonce))?;
        let sealed: SealedConfig<Secret> = serde_json::from_slice(&plaintext)
            .map_err(|_| Error::Envelope("does not hold a configuration"))?;
        if sealed.session != session || sealed.service != service {
            return Err(Error::Envelope("is for another session or service"));
        }
        let config = ResolvedConfig {
            session: sealed.session,
            service: sealed.service,
            session_hash: sealed.session_hash,
            command: sealed.command.map(|s| s.0),
            args: sealed.args.into_iter().map(|s| s.0).collect(),
            env: sealed.env.into_iter().map(|(k, v)| (k, v.0)).collect(),
            files: sealed
                .files
                .into_iter()
                .map(|f| ConfigFile {
                    path: PathBuf::from(f.path),
                    content: f.content.0,
                    mode: f.mode,
                })
                .collect(),
        };
        Ok(Self {
            token: response.token,
            certificate_pem: response.certificate_pem,
            ca_pem: response.ca_pem,
            session_hash: response.session_hash,
            expires_at: response.expires_at,
            config,
        })
    }
}

/// A string read from the sealed configuration straight into a secret.
struct Secret(SecretString);

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Secret(SecretString::from(s)))
    }
}

/// A service's configuration as the workload receives it. Every value may hold secrets:
/// `secrecy` strings, wiped on drop; `Debug` shows names, paths and sizes only.
pub struct ResolvedConfig {
    /// The session.
    pub session: String,
    /// The service.
    pub service: String,
    /// The policy version's hash, hex.
    pub session_hash: String,
    /// The program.
    pub command: Option<SecretString>,
    /// The arguments.
    pub args: Vec<SecretString>,
    /// The environment.
    pub env: BTreeMap<String, SecretString>,
    /// The injected files.
    pub files: Vec<ConfigFile>,
}

impl fmt::Debug for ResolvedConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedConfig")
            .field("session", &self.session)
            .field("service", &self.service)
            .field("session_hash", &self.session_hash)
            .field("command", &self.command.as_ref().map(|_| "…"))
            .field("args", &self.args.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .finish()
    }
}

/// A file to inject into the workload's in-memory file system.
pub struct ConfigFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Content.
    pub content: SecretString,
    /// Permission bits.
    pub mode: u32,
}

impl fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("content_len", &self.content.expose_secret().len())
            .field("mode", &format_args!("{:04o}", self.mode))
            .finish()
    }
}

impl Nonce {
    /// The `report_data` evidence must carry to be accepted with this nonce for `key`
    /// ([`binding::report_data`] of the nonce and the key's SPKI).
    pub fn report_data(&self, key: &WorkloadKey) -> [u8; 64] {
        binding::report_data(&self.bytes, &key.spki_der())
    }
}

impl AttestRequest {
    /// The `POST /v1/attest` request for `evidence` collected with [`Nonce::report_data`] of
    /// `nonce` and `key`: the one place the protocol's fields are filled in, for
    /// [`attest_workload`] and the runtime. The kind is named when the evidence's label and bytes
    /// agree on one ([`EvidenceKind::of`]), else left for the CAS to detect.
    pub fn new(
        session: &str,
        service: &str,
        evidence: &Evidence,
        collateral: Option<serde_json::Value>,
        nonce: &Nonce,
        key: &WorkloadKey,
        host_args: Vec<String>,
    ) -> Self {
        Self {
            session: session.to_owned(),
            service: service.to_owned(),
            evidence: B64.encode(&evidence.bytes),
            kind: EvidenceKind::of(evidence),
            collateral,
            nonce: B64.encode(&nonce.bytes),
            public_key: B64.encode(key.spki_der()),
            host_args,
        }
    }
}

/// Attests a workload end to end: a nonce from `cas`, `report_data` binding it to `key`,
/// evidence from `collector`, `POST /v1/attest` with `collateral` and `host_args`, and the
/// configuration opened with `key`.
#[tracing::instrument(skip_all, fields(session, service))]
pub async fn attest_workload(
    cas: &CasClient,
    session: &str,
    service: &str,
    key: &WorkloadKey,
    collector: &dyn Collector,
    collateral: Option<serde_json::Value>,
    host_args: &[String],
) -> Result<Attested, Error> {
    let nonce = cas.nonce().await?;
    let evidence = collector.collect(&nonce.report_data(key))?;
    tracing::debug!(tee = %evidence.tee, evidence_len = evidence.bytes.len(), "collected evidence");
    let req = AttestRequest::new(
        session,
        service,
        &evidence,
        collateral,
        &nonce,
        key,
        host_args.to_vec(),
    );
    cas.attest(&req, key).await
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    #[test]
    fn request_signer_debug_and_fingerprint() {
        let owner = OwnerKey::from_seed(&[3; 32]).unwrap();
        let signer = RequestSigner::from_owner_key(&owner).unwrap();
        assert_eq!(signer.fingerprint(), owner.fingerprint());
        let debug = format!("{signer:?}");
        assert!(debug.contains(&owner.fingerprint().to_string()));
        let secret = hex::encode(signer.key.to_bytes());
        assert!(!debug.contains(&secret));
    }

    #[test]
    fn signed_header_verifies() {
        let signer =
            RequestSigner::from_owner_key(&OwnerKey::from_seed(&[4; 32]).unwrap()).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let cas = CasId([3; 32]);
        let header = signer.header(&cas, "GET", "/v1/sessions/a/b", b"", now);
        let parsed = SignatureHeader::parse(&header).unwrap();
        assert_eq!(parsed.ts, 1_800_000_000);
        let message = api::request_signing_message(&cas, "GET", "/v1/sessions/a/b", parsed.ts, b"");
        signer
            .key
            .verifying_key()
            .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(&parsed.sig))
            .unwrap();
    }

    #[test]
    fn resolved_config_debug_hides_values() {
        let config = ResolvedConfig {
            session: "s".into(),
            service: "driver".into(),
            session_hash: "00".into(),
            command: Some(SecretString::from("run --token=CANARY-1")),
            args: vec![SecretString::from("CANARY-2")],
            env: [("TOKEN".to_owned(), SecretString::from("CANARY-3"))].into(),
            files: vec![ConfigFile {
                path: "/etc/x".into(),
                content: SecretString::from("CANARY-4"),
                mode: 0o400,
            }],
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("TOKEN") && debug.contains("/etc/x") && debug.contains("0400"));
    }

    #[test]
    fn debug_attested_omits_the_token() {
        let attested = Attested {
            token: SecretString::from("eyJ.CANARY-token.sig"),
            certificate_pem: "cert".into(),
            ca_pem: "ca".into(),
            session_hash: "ab".into(),
            expires_at: 7,
            config: ResolvedConfig {
                session: "s".into(),
                service: "driver".into(),
                session_hash: "ab".into(),
                command: None,
                args: Vec::new(),
                env: BTreeMap::new(),
                files: Vec::new(),
            },
        };
        let debug = format!("{attested:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("token_len: 20"), "{debug}");
    }

    #[test]
    fn new_refuses_bad_urls_and_pins() {
        assert!(matches!(
            CasClient::new("http://cas", "x"),
            Err(Error::InvalidInput { .. })
        ));
        assert!(matches!(
            CasClient::new("https://cas", "not pem"),
            Err(Error::InvalidInput { .. })
        ));
    }
}

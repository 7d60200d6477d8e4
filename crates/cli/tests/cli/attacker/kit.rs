//! The attacker's own tools: an HTTPS client, the `Cloister-Sig` request signature, policy
//! signatures, sim evidence for the attacker's own TEE, a P-256 workload key and the opening of
//! the sealed configuration, raw TCP/TLS sockets, and canary searches in every encoding.
//!
//! Written from the wire description (the CAS's OpenAPI document and the module docs of
//! `cloister_cas::api` and `cloister_cas::envelope`), not with the project's client library:
//! an attacker does not run the defender's code. The only project code used is the sim
//! platform's signer ([`cloister_attest::sim`]), which stands for the attacker's own TEE
//! (a confidential VM rented from the same vendor the CAS trusts).
//!
//! Self-contained on purpose but for the shared test tools (`cloister_testkit`'s canary scan and
//! pinned TLS configuration), so that it can move into the testkit crate unchanged.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use cloister_attest::sim::{PlatformKey, Statement};
use ed25519_dalek::Signer as _;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::DhP256HkdfSha256;
use hpke::{Deserializable as _, Kem as _, OpModeR, Serializable as _};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha512};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How long one request of the attacker's client may take before it counts as unanswered.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the 32 key bytes follow.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// DER prefix of a P-256 SubjectPublicKeyInfo (RFC 5480): the 65-byte uncompressed point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// The HPKE `info` of the sealed configuration (read from `crates/cas/src/envelope.rs`).
const SEAL_INFO: &[u8] = b"cloister/v1 sealed configuration";

/// One answer of the CAS: status, raw body, and the `Retry-After` header when there is one.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<String>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The error body's `code`.
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// The rule ids the error body names: its `rule`, every id of its `rules` array (a
    /// refused attestation lists each failed rule there, without values) and the rule each
    /// `reasons` line of an invalid policy ends with (`… [rule: import-source]`).
    pub fn rules(&self) -> Vec<String> {
        let v = self.json();
        let rule = v["rule"].as_str().map(str::to_owned);
        let rules = v["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned));
        let reasons = v["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| {
                let tail = r.as_str()?.rsplit_once("[rule: ")?.1;
                Some(tail.strip_suffix(']')?.to_owned())
            });
        rule.into_iter().chain(rules).chain(reasons).collect()
    }

    /// Whether the body names a failed rule (any of [`Self::rules`]).
    pub fn names_a_rule(&self) -> bool {
        self.rules().iter().any(|r| !r.trim().is_empty())
    }

    /// The error body's `audit_seq`: the audit entry holding a refused attestation's details.
    pub fn audit_seq(&self) -> Option<u64> {
        self.json()["audit_seq"].as_u64()
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = self.text();
        let cut: String = text.chars().take(2000).collect();
        write!(f, "HTTP {}: {cut}", self.status)
    }
}

/// A rustls client configuration that trusts exactly `cert_pem` (the certificate any client
/// gets from the server's TLS handshake anyway).
pub use cloister_testkit::https::tls_config;

/// The id a CAS binds request signatures to: SHA-256 of the SubjectPublicKeyInfo DER of its
/// TLS certificate (`cert_pem`, the one every client sees in the handshake).
pub fn cas_id(cert_pem: &str) -> [u8; 32] {
    let der = pem::parse(cert_pem).expect("the CAS certificate is PEM");
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.contents()).expect("the CAS certificate parses");
    Sha256::digest(cert.tbs_certificate.subject_pki.raw).into()
}

/// The attacker's HTTPS client: its own connection pool bound to one loopback source address,
/// its own Ed25519 key for signed requests and policies, its own runtime.
pub struct Client {
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    base: String,
    key: ed25519_dalek::SigningKey,
    /// The CAS id its request signatures are bound to.
    cas_id: [u8; 32],
    /// The last `ts` signed: each signature gets a later one, so that no two state-changing
    /// requests of this client carry the same signature (the CAS accepts each once).
    last_ts: std::sync::Mutex<u64>,
}

impl Client {
    /// A client of the CAS at `base` (`https://127.0.0.1:PORT`) trusting `cert_pem`, connecting
    /// from `source` (a 127.0.0.0/8 address), with a fresh random Ed25519 key.
    pub fn new(base: &str, cert_pem: &str, source: IpAddr) -> Self {
        assert!(source.is_loopback(), "loopback only: {source}");
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).expect("random seed");
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls_config(cert_pem)).clone())
            .local_address(source)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("HTTPS client");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        Self {
            rt,
            http,
            base: base.trim_end_matches('/').to_owned(),
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
            cas_id: cas_id(cert_pem),
            last_ts: std::sync::Mutex::new(0),
        }
    }

    /// The async HTTP client and base URL, for concurrent floods.
    pub fn http(&self) -> (reqwest::Client, String) {
        (self.http.clone(), self.base.clone())
    }

    /// Runs `f` on this client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The attacker's key as a policy names an owner: base64 of the SPKI DER.
    pub fn owner_key_b64(&self) -> String {
        STANDARD.encode(self.spki_der())
    }

    fn spki_der(&self) -> Vec<u8> {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.key.verifying_key().as_bytes());
        der
    }

    /// `Authorization: Cloister-Sig key=…,ts=…,sig=…` for `method path_and_query` with `body`,
    /// at a `ts` later than any this client signed before (now, or a second after the last).
    pub fn signature_header(&self, method: &str, path_and_query: &str, body: &[u8]) -> String {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs();
        let ts = {
            let mut last = self.last_ts.lock().expect("not poisoned");
            *last = now.max(*last + 1);
            *last
        };
        self.signature_header_at(&self.cas_id, method, path_and_query, body, ts)
    }

    /// The header at `ts` for the CAS `cas_id`: Ed25519 over
    /// `"cloister-req-v2" 0 ‖ CAS id ‖ METHOD 0 ‖ PATH?QUERY 0 ‖ ts 0 ‖ SHA-256(body)`.
    pub fn signature_header_at(
        &self,
        cas_id: &[u8; 32],
        method: &str,
        path_and_query: &str,
        body: &[u8],
        ts: u64,
    ) -> String {
        let mut m = b"cloister-req-v2\0".to_vec();
        m.extend_from_slice(cas_id);
        m.extend_from_slice(method.as_bytes());
        m.push(0);
        m.extend_from_slice(path_and_query.as_bytes());
        m.push(0);
        m.extend_from_slice(ts.to_string().as_bytes());
        m.push(0);
        m.extend_from_slice(&Sha256::digest(body));
        let sig = self.key.sign(&m).to_bytes();
        format!(
            "Cloister-Sig key={},ts={ts},sig={}",
            STANDARD.encode(self.spki_der()),
            STANDARD.encode(sig)
        )
    }

    /// `yaml` signed by the attacker's key, as `POST /v1/sessions` takes it: Ed25519 over
    /// `"cloister-policy-v1" 0 ‖ SHA-256(yaml)`, named by the SHA-256 of the SPKI DER.
    pub fn signed_policy(&self, yaml: &str) -> Value {
        let mut m = b"cloister-policy-v1\0".to_vec();
        m.extend_from_slice(&Sha256::digest(yaml.as_bytes()));
        json!({
            "yaml": yaml,
            "signatures": [{
                "key_fingerprint": hex::encode(Sha256::digest(self.spki_der())),
                "sig": STANDARD.encode(self.key.sign(&m).to_bytes()),
            }],
        })
    }

    /// Sends a request; `auth` adds a `Cloister-Sig` header signed by the attacker's key. An
    /// unanswered request (timeout, reset) is status 0 with the error as body.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>, auth: bool) -> Reply {
        let header = auth.then(|| {
            let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON"));
            self.signature_header(method, path, bytes.as_deref().unwrap_or(b""))
        });
        self.request_with_header(method, path, body, header.as_deref())
    }

    /// Sends a request with `authorization` (any header value, or none).
    pub fn request_with_header(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        authorization: Option<&str>,
    ) -> Reply {
        let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON"));
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(header) = authorization {
            req = req.header("authorization", header);
        }
        if let Some(bytes) = bytes {
            req = req.header("content-type", "application/json").body(bytes);
        }
        self.rt.block_on(send(req))
    }

    pub fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None, false)
    }

    pub fn get_signed(&self, path: &str) -> Reply {
        self.request("GET", path, None, true)
    }

    pub fn post(&self, path: &str, body: &Value) -> Reply {
        self.request("POST", path, Some(body), false)
    }

    /// `POST /v1/sessions` with `yaml` signed by the attacker, and the request signed by the
    /// attacker's key too (the approval of the namespace's owner, which it is for its own
    /// namespace).
    pub fn create_session(&self, yaml: &str) -> Reply {
        self.request(
            "POST",
            "/v1/sessions",
            Some(&self.signed_policy(yaml)),
            true,
        )
    }

    /// `POST /v1/nonce`: the nonce's bytes, or the refusal.
    pub fn nonce(&self) -> Result<Vec<u8>, Reply> {
        let reply = self.post("/v1/nonce", &json!({}));
        match reply.json()["nonce"].as_str() {
            Some(n) if reply.status == 200 => Ok(STANDARD.decode(n).expect("nonce is base64")),
            _ => Err(reply),
        }
    }

    /// A full attestation from `tee` for `session`/`service`: nonce, then
    /// [`Self::attest_with_nonce`].
    pub fn attest(&self, tee: &Tee, session: &str, service: &str) -> Attempt {
        match self.nonce() {
            Ok(nonce) => self.attest_with_nonce(tee, session, service, nonce),
            Err(reply) => Attempt::Refused(reply),
        }
    }

    /// An attestation with `nonce`: a fresh P-256 key, evidence from `tee` binding both,
    /// `POST /v1/attest`, and the sealed configuration opened with the key.
    pub fn attest_with_nonce(
        &self,
        tee: &Tee,
        session: &str,
        service: &str,
        nonce: Vec<u8>,
    ) -> Attempt {
        let key = WorkloadKey::generate();
        let evidence = tee.evidence(&report_data(&nonce, &key.spki_der));
        let reply = self.post(
            "/v1/attest",
            &json!({
                "session": session,
                "service": service,
                "evidence": STANDARD.encode(evidence),
                "kind": "sim",
                "nonce": STANDARD.encode(&nonce),
                "public_key": STANDARD.encode(&key.spki_der),
            }),
        );
        if reply.status != 200 {
            return Attempt::Refused(reply);
        }
        let v = reply.json();
        let config = key
            .open(&v["config"], &config_aad(session, service, &nonce))
            .expect("the sealed configuration opens with the attacker's own key");
        Attempt::Released {
            token: v["token"].as_str().unwrap_or_default().to_owned(),
            config,
            reply,
        }
    }
}

/// Sends `req`, reading the whole body.
pub async fn send(req: reqwest::RequestBuilder) -> Reply {
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match resp.bytes().await {
                Ok(b) => Reply {
                    status,
                    body: b.to_vec(),
                    retry_after,
                },
                Err(e) => Reply {
                    status: 0,
                    body: format!("body not read: {e}").into_bytes(),
                    retry_after: None,
                },
            }
        }
        Err(e) => Reply {
            status: 0,
            body: format!("no answer: {e}").into_bytes(),
            retry_after: None,
        },
    }
}

/// What an attestation came to.
#[derive(Debug)]
pub enum Attempt {
    /// The CAS refused (at the nonce or the attestation).
    Refused(Reply),
    /// The CAS released a configuration: its plaintext JSON, opened by the attacker.
    Released {
        token: String,
        config: Vec<u8>,
        reply: Reply,
    },
}

impl Attempt {
    /// Every byte the attacker received: the answer and, when released, the opened plaintext.
    pub fn everything(&self) -> Vec<u8> {
        match self {
            Attempt::Refused(r) => r.body.clone(),
            Attempt::Released { config, reply, .. } => {
                let mut all = reply.body.clone();
                all.extend_from_slice(config);
                all
            }
        }
    }
}

/// The attacker's own TEE: in these tests a sim platform the CAS trusts (any tenant can rent a
/// confidential VM of a vendor the CAS trusts), running code measured as `measurement`.
pub struct Tee {
    pub platform: PlatformKey,
    pub measurement: Vec<u8>,
}

impl Tee {
    /// Sim evidence for `report_data`.
    pub fn evidence(&self, report_data: &[u8]) -> Vec<u8> {
        self.platform
            .sign(&Statement {
                measurement: self.measurement.clone(),
                report_data: report_data.to_vec(),
                svn: 1,
                ..Default::default()
            })
            .expect("sim evidence")
    }
}

/// `SHA-512(nonce ‖ SHA-256(spki))`: what evidence binds (`report_data`).
pub fn report_data(nonce: &[u8], spki_der: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(nonce);
    h.update(Sha256::digest(spki_der));
    h.finalize().into()
}

/// `"cloister-attest-v1" 0 ‖ session 0 ‖ service 0 ‖ nonce`: the sealed configuration's AAD.
pub fn config_aad(session: &str, service: &str, nonce: &[u8]) -> Vec<u8> {
    let mut aad = b"cloister-attest-v1\0".to_vec();
    aad.extend_from_slice(session.as_bytes());
    aad.push(0);
    aad.extend_from_slice(service.as_bytes());
    aad.push(0);
    aad.extend_from_slice(nonce);
    aad
}

/// The attacker's workload key: P-256, HPKE's own key type.
pub struct WorkloadKey {
    secret: <DhP256HkdfSha256 as hpke::Kem>::PrivateKey,
    pub spki_der: Vec<u8>,
}

impl WorkloadKey {
    pub fn generate() -> Self {
        let (secret, public) = DhP256HkdfSha256::gen_keypair();
        let mut spki_der = P256_SPKI_PREFIX.to_vec();
        spki_der.extend_from_slice(&public.to_bytes());
        Self { secret, spki_der }
    }

    /// Opens `{"enc": b64, "ciphertext": b64}` (HPKE base mode, DHKEM(P-256), HKDF-SHA256,
    /// AES-256-GCM) with `aad`.
    pub fn open(&self, sealed: &Value, aad: &[u8]) -> Option<Vec<u8>> {
        let field = |k: &str| STANDARD.decode(sealed[k].as_str()?).ok();
        let enc = <DhP256HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(&field("enc")?).ok()?;
        hpke::single_shot_open::<AesGcm256, HkdfSha256, DhP256HkdfSha256>(
            &OpModeR::Base,
            &self.secret,
            &enc,
            SEAL_INFO,
            &field("ciphertext")?,
            aad,
        )
        .ok()
    }
}

// ---- canaries --------------------------------------------------------------------------------

/// Which encodings of `secret` a reply holds (the testkit's canary scan: raw, hex, base64,
/// UTF-16LE and the rest).
pub use cloister_testkit::canary::found;

/// A random canary value with a recognisable prefix.
pub fn canary(what: &str) -> String {
    cloister_testkit::canary::Canary::new(what).to_string()
}

// ---- raw sockets -----------------------------------------------------------------------------

/// A client TLS stream over a blocking TCP socket.
pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `server` trusting `tls`'s roots, its handshake completed; each connect,
/// read and write may take at most `within` (a server that does not accept times out).
pub fn tls_connect(
    server: SocketAddr,
    tls: &Arc<rustls::ClientConfig>,
    within: Duration,
) -> std::io::Result<TlsStream> {
    let mut sock = TcpStream::connect_timeout(&server, within)?;
    sock.set_read_timeout(Some(within))?;
    sock.set_write_timeout(Some(within))?;
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let mut conn = rustls::ClientConnection::new(tls.clone(), name)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(rustls::StreamOwned::new(conn, sock))
}

/// Whether the peer has closed `stream` (EOF, reset, or an answer followed by close) within
/// `wait`; `false` while it is still open and silent.
pub fn closed_by_peer<S: std::io::Read>(stream: &mut S, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = std::time::Instant::now() + wait;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            // An answer (a 408, a TLS alert): the server is dealing with the connection; keep
            // reading until it closes.
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
    }
}

/// Writes `bytes` to `stream` and flushes.
pub fn send_raw<S: std::io::Write>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes)?;
    stream.flush()
}

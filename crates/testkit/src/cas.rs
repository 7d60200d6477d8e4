//! The CAS in this process, serving HTTPS on `127.0.0.1:0` until dropped: the deployment every
//! end-to-end test of the CAS, the runtime and the CLI's workloads attests against.
//!
//! [`Cas::start`] is a CAS with defaults (issuer [`ISSUER`], a fresh sim platform key it trusts,
//! a fresh master key, a temp data directory, no admin key); [`Cas::builder`] sets what a test
//! needs beyond that. Both run on the caller's tokio runtime.

use cloister_attest::collect::{Collector, SimCollector};
use cloister_attest::sim::{PlatformKey, Statement};
use cloister_cas::client::{Attested, CasClient, RequestSigner, attest_workload};
use cloister_cas::config::CasConfigBuilder;
use cloister_cas::envelope::WorkloadKey;
use cloister_cas::server::{self, CERT_FILE, CasState};
use cloister_cas::{CasConfig, Error, MasterKey};
use secrecy::ExposeSecret as _;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The issuer of every test CAS unless the builder says otherwise.
pub const ISSUER: &str = "https://cas.test";

type Configure<'a> = Box<dyn FnOnce(CasConfigBuilder) -> CasConfigBuilder + 'a>;

/// How to start a [`Cas`]; every option has a default.
pub struct CasBuilder<'a> {
    issuer: String,
    dir: Option<TempDir>,
    platform_key: Option<PlatformKey>,
    master_key: Option<MasterKey>,
    admin: Option<Vec<u8>>,
    configure: Option<Configure<'a>>,
}

impl<'a> CasBuilder<'a> {
    /// The token issuer (default [`ISSUER`]).
    pub fn issuer(mut self, issuer: &str) -> Self {
        issuer.clone_into(&mut self.issuer);
        self
    }

    /// The data directory (default: a new temp dir); a CAS restarted on the directory of a
    /// stopped one finds its store.
    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// The sim platform key the CAS trusts (default: a new one).
    pub fn platform_key(mut self, key: PlatformKey) -> Self {
        self.platform_key = Some(key);
        self
    }

    /// The master key (default: a new one; give the same one to reopen a directory).
    pub fn master_key(mut self, key: MasterKey) -> Self {
        self.master_key = Some(key);
        self
    }

    /// Sets `signer`'s key as the operator's admin key (default: none set).
    pub fn admin(mut self, signer: &RequestSigner) -> Self {
        self.admin = Some(signer.spki_der().to_vec());
        self
    }

    /// Further configuration, applied after the issuer and the trusted sim key.
    pub fn config(mut self, edit: impl FnOnce(CasConfigBuilder) -> CasConfigBuilder + 'a) -> Self {
        self.configure = Some(Box::new(edit));
        self
    }

    /// Opens the store, binds `127.0.0.1:0` and serves on the current tokio runtime.
    pub async fn start(self) -> Cas {
        let dir = match self.dir {
            Some(dir) => dir,
            None => tempfile::tempdir().expect("a temp dir"),
        };
        let platform_key = self.platform_key.unwrap_or_else(PlatformKey::generate);
        let master = self.master_key.unwrap_or_else(MasterKey::generate);
        let mut config = CasConfig::builder(&self.issuer)
            .dangerous()
            .trust_sim_key(platform_key.public_key());
        if let Some(edit) = self.configure {
            config = edit(config);
        }
        let config = config.build().expect("a valid CAS configuration");
        let state = CasState::open(dir.path(), &master, config).expect("open the CAS store");
        if let Some(admin) = &self.admin {
            state.init_admin(admin).expect("set the admin key");
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let url = format!(
            "https://{}",
            listener.local_addr().expect("the listener's address")
        );
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(server::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        let cert_pem =
            std::fs::read_to_string(dir.path().join(CERT_FILE)).expect("the CAS certificate");
        let client = CasClient::new(&url, &cert_pem).expect("a CAS client");
        Cas {
            url,
            cert_pem,
            client,
            platform_key,
            dir,
            state,
            stop: Some(stop),
            join: Some(join),
        }
    }
}

/// A CAS serving on `127.0.0.1:0`; dropping it stops the server.
pub struct Cas {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    /// The CAS's self-signed certificate, which clients pin.
    pub cert_pem: String,
    /// A client library pinned to the certificate.
    pub client: CasClient,
    /// The sim platform key the CAS trusts (sign evidence with [`Cas::collector`]).
    pub platform_key: PlatformKey,
    /// The data directory.
    pub dir: TempDir,
    /// The server's state, for what a test checks beside the API.
    pub state: CasState,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<Result<(), Error>>>,
}

impl Cas {
    /// A CAS with every default (see the module docs).
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// Options for a CAS.
    pub fn builder<'a>() -> CasBuilder<'a> {
        CasBuilder {
            issuer: ISSUER.to_owned(),
            dir: None,
            platform_key: None,
            master_key: None,
            admin: None,
            configure: None,
        }
    }

    /// Stops the server, waits until it has, and hands back its data directory and platform
    /// key (to restart on them).
    pub async fn stop(mut self) -> (TempDir, PlatformKey) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(join) = self.join.take() {
            join.await
                .expect("the server task")
                .expect("the server stops cleanly");
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("a temp dir"));
        (dir, self.platform_key_copy())
    }

    /// A copy of the trusted sim platform key.
    pub fn platform_key_copy(&self) -> PlatformKey {
        PlatformKey::from_pem(self.platform_key.to_pem().expose_secret())
            .expect("a platform key reads back")
    }

    /// A collector of sim evidence, signed by the trusted platform key, saying `statement`.
    pub fn collector(&self, statement: Statement) -> SimCollector {
        SimCollector::new(self.platform_key_copy(), statement)
    }

    /// A raw HTTP client trusting the pinned certificate, for malformed requests.
    pub fn raw(&self) -> reqwest::Client {
        crate::https::client(&self.cert_pem)
    }

    /// Sends `request` as is over a TLS connection pinned to the CAS; the status and the JSON
    /// body of the answer.
    pub async fn raw_exchange(&self, request: Vec<u8>) -> (u16, serde_json::Value) {
        let (url, cert_pem) = (self.url.clone(), self.cert_pem.clone());
        tokio::task::spawn_blocking(move || crate::https::exchange(&url, &cert_pem, &request))
            .await
            .expect("the exchange task")
    }
}

/// Attests `key` as the `driver` service of `session` with evidence from `collector`, without
/// collateral or host arguments: the attestation most tests make.
pub async fn attest_driver(
    client: &CasClient,
    session: &str,
    key: &WorkloadKey,
    collector: &dyn Collector,
) -> Result<Attested, Error> {
    attest_workload(client, session, "driver", key, collector, None, &[]).await
}

impl Drop for Cas {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

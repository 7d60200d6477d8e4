//! The LAS in this process, serving plain HTTP on `127.0.0.1:0` until dropped.
//!
//! [`Las::start_sim`] answers with sim evidence signed by a given platform key and needs no
//! collateral service; [`Las::start`] takes any evidence source, collateral settings and clock.

use std::sync::Arc;

use cloister_attest::sim::{PlatformKey, Statement};
use cloister_las::{
    self as las, Clock, CollateralSettings, EvidenceSource, LasClient, LasConfig, LasError,
    LasState,
};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A LAS serving on `127.0.0.1:0`; dropping it stops the server at once.
pub struct Las {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// A client of this LAS.
    pub client: LasClient,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), LasError>>>,
}

impl Las {
    /// A LAS signing sim evidence with `key`, saying `template` (its `report_data` replaced by
    /// each request's), offline (no collateral).
    pub async fn start_sim(key: PlatformKey, template: Statement) -> Self {
        let settings = CollateralSettings::offline(None);
        let source = EvidenceSource::Sim { key, template };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let config = LasConfig::new(addr, source, settings).expect("a valid LAS configuration");
        Self::serve(listener, LasState::new(config).expect("the LAS state"))
    }

    /// A LAS with evidence from `source`, collateral per `settings`, time from `clock`.
    pub async fn start(
        source: EvidenceSource,
        settings: CollateralSettings,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("the listener's address");
        let config = LasConfig::new(addr, source, settings).expect("a valid LAS configuration");
        let state = LasState::with_clock(config, clock).expect("the LAS state");
        Self::serve(listener, state)
    }

    fn serve(listener: tokio::net::TcpListener, state: LasState) -> Self {
        let addr = listener.local_addr().expect("the listener's address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(las::run(listener, state, async {
            let _ = stopped.await;
        }));
        let url = format!("http://{addr}");
        Self {
            client: LasClient::new(&url).expect("a LAS client"),
            url,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops the server and waits until it has stopped cleanly.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("the LAS task")
                .expect("the LAS stops cleanly");
        }
    }
}

impl Drop for Las {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

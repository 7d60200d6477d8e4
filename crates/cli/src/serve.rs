//! What `cas serve` and `las serve` share: the log format and the log style it implies, the
//! shutdown signal, and the address file (written atomically once the server listens, removed
//! when it stops, and removed at start so that a stale one is never mistaken for this server).

use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::ValueEnum;

use crate::LogStyle;

/// How a server writes its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// A server logs at info, as text or JSON.
    pub fn log_style(self) -> LogStyle {
        LogStyle {
            level: "info",
            json: self == LogFormat::Json,
        }
    }
}

/// Completes on SIGTERM or SIGINT. The handlers are installed before this returns, so a signal
/// sent as soon as the address file exists is not lost.
pub fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(signal = name, "stopping: letting requests in flight finish");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stopping: letting requests in flight finish");
        })
    }
}

/// Writes `url` and a newline to `path` atomically: a temporary file beside it, `fsync`, rename.
pub fn write_addr_file(path: &Path, url: &str) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    std::fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(format!("{url}\n").as_bytes())
                .and_then(|()| f.sync_all())
        })
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Removes `path`; a file that is not there is fine.
pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test fails
    use super::*;

    #[test]
    fn the_address_file_is_replaced_whole_and_removal_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.addr");
        write_addr_file(&path, "https://127.0.0.1:1").unwrap();
        write_addr_file(&path, "https://127.0.0.1:2").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "https://127.0.0.1:2\n"
        );
        assert!(!dir.path().join("x.addr.tmp").exists());
        remove_if_present(&path).unwrap();
        remove_if_present(&path).unwrap();
        assert!(!path.exists());
    }
}

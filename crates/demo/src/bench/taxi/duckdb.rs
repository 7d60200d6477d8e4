//! The DuckDB peer: `taxi_duckdb.py` (embedded) run by a Python with the `duckdb` package,
//! driven over JSON lines on its stdin and stdout. It times each query itself.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::compare::Rows;

/// The peer's program (also used by the DuckDB equality test).
pub const SCRIPT: &str = include_str!("../taxi_duckdb.py");

/// Checks that `python` runs and imports `duckdb`; returns DuckDB's version.
pub fn probe(python: &Path) -> anyhow::Result<String> {
    let out = Command::new(python)
        .args(["-c", "import duckdb; print(duckdb.__version__)"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run {} for DuckDB (name a Python with the duckdb package with --python)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "{} cannot import duckdb (pip install duckdb, or name another Python with --python): {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A running DuckDB peer; stopped (or killed) when dropped.
pub struct DuckDb {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Arc<Mutex<String>>,
    version: String,
    threads: Value,
}

impl DuckDb {
    /// Starts the peer with `python` over the trips matching `trips_glob` and the zone table
    /// `zones`, with `threads` threads.
    pub fn start(
        python: &Path,
        trips_glob: &str,
        zones: &Path,
        threads: u32,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(python)
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} for DuckDB (give a Python with `pip install duckdb` with --python)",
                    python.display()
                )
            })?;
        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut err) = child.stderr.take() {
            let sink = stderr.clone();
            // Drained on its own thread so that a chatty peer never blocks on a full pipe.
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = err.read_to_string(&mut text);
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&text);
                }
            });
        }
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("the DuckDB peer's pipes were not opened");
        };
        let mut peer = Self {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr,
            version: String::new(),
            threads: Value::Null,
        };
        let ready = peer
            .exchange(&json!({
                "trips": trips_glob,
                "zones": zones.display().to_string(),
                "threads": threads,
            }))
            .with_context(|| format!("start DuckDB with {}", python.display()))?;
        peer.version = ready["duckdb"].as_str().unwrap_or("?").to_owned();
        peer.threads = ready["threads"].clone();
        Ok(peer)
    }

    /// DuckDB's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// DuckDB's `threads` setting as it reported it.
    pub fn threads(&self) -> &Value {
        &self.threads
    }

    /// Runs `sql`; returns DuckDB's own timing and, if `want_rows`, the result.
    pub fn query(
        &mut self,
        sql: &str,
        want_rows: bool,
    ) -> anyhow::Result<(Duration, Option<Rows>)> {
        let answer = self.exchange(&json!({ "sql": sql, "rows": want_rows }))?;
        let ms = answer["ms"]
            .as_f64()
            .context("DuckDB's answer has no time")?;
        let rows = if want_rows {
            let columns = answer["columns"]
                .as_array()
                .context("DuckDB's answer has no columns")?
                .iter()
                .map(|c| c.as_str().unwrap_or_default().to_owned())
                .collect();
            let rows = answer["rows"]
                .as_array()
                .context("DuckDB's answer has no rows")?;
            Some(Rows::from_json(columns, rows)?)
        } else {
            None
        };
        Ok((Duration::from_secs_f64(ms.max(0.0) / 1e3), rows))
    }

    /// Sends one request line and reads one answer line; an `error` answer is an error.
    fn exchange(&mut self, request: &Value) -> anyhow::Result<Value> {
        let stdin = self.stdin.as_mut().context("the DuckDB peer is stopped")?;
        let mut line = serde_json::to_string(request)?;
        line.push('\n');
        let sent = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush());
        let mut answer = String::new();
        let read = sent.and_then(|()| self.stdout.read_line(&mut answer));
        if read.is_err() || answer.is_empty() {
            bail!("the DuckDB peer exited: {}", self.stderr_tail());
        }
        let answer: Value = serde_json::from_str(&answer)
            .with_context(|| format!("the DuckDB peer said {answer:?}"))?;
        if let Some(e) = answer.get("error") {
            bail!("DuckDB: {}", e.as_str().unwrap_or("?"));
        }
        Ok(answer)
    }

    fn stderr_tail(&mut self) -> String {
        // Give the drain thread a moment to collect what the dying process wrote.
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(50));
        let text = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        let text = text.trim();
        let start = text.len().saturating_sub(1500);
        let tail = text.get(start..).unwrap_or(text);
        if tail.is_empty() {
            "(no message)".into()
        } else {
            tail.to_owned()
        }
    }

    /// Closes its stdin (it exits at end of input) and waits for it; kills it after 5 s.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DuckDb {
    fn drop(&mut self) {
        self.shutdown();
    }
}

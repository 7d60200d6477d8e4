//! Helpers for tests that start real components (Azurite, moto): where the tools are, free
//! loopback ports, child processes killed on drop, and the skip-or-fail rule (under `CI=true`
//! a missing component fails the test; locally the test is skipped and says why).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether missing components must fail the run.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Under CI, fail; locally, print why the test is skipped (visible with `--nocapture`) and a
/// summary line.
pub fn unavailable(component: &str, reason: &str) {
    if ci() {
        panic!("{component} is unavailable under CI=true: {reason}");
    }
    eprintln!("skipped: {component}: {reason}");
    summary(component, &format!("SKIPPED ({reason})"));
}

/// One line per component test, so that a run shows what really ran.
pub fn summary(component: &str, outcome: &str) {
    eprintln!("summary: {component}: {outcome}");
}

/// A free TCP port on 127.0.0.1 (free when asked; the server binds it right after).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Wait until something accepts connections on `127.0.0.1:port`.
pub fn wait_for_port(port: u16, child: &mut ServerChild, timeout: Duration) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let start = Instant::now();
    while start.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            return Err(format!(
                "{} exited with {status} before listening; its log: {}",
                child.name,
                child.log_tail()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!(
        "{} did not listen on port {port} within {timeout:?}; its log: {}",
        child.name,
        child.log_tail()
    ))
}

/// A server process, killed (and reaped) when dropped — also when the test panics.
pub struct ServerChild {
    name: String,
    child: Child,
    log: PathBuf,
}

impl ServerChild {
    /// Start `command` with stdout and stderr going to `log`.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> std::io::Result<Self> {
        let out = std::fs::File::create(log)?;
        let err = out.try_clone()?;
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let start = log.len().saturating_sub(2000);
        log.get(start..).unwrap_or_default().to_owned()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `program --version` runs.
pub fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Where test tools (Azurite) are installed: `$CLOISTER_TOOLS`, or `~/.cache/cloister/tools`.
pub fn tools_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CLOISTER_TOOLS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    Path::new(&home).join(".cache/cloister/tools")
}

/// The Python interpreter of the test venv: `$CLOISTER_PYTHON`, else `python3`.
pub fn python() -> String {
    std::env::var("CLOISTER_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into())
}

/// Run `command`, returning its stdout, or a message with its stderr.
pub fn output(mut command: Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The error chain as one line.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(" / ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

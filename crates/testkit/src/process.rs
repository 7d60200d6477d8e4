//! A service run as a real child process (`cloister cas serve`, `cloister las serve`): started,
//! waited for until it writes its address file, stopped with SIGTERM or SIGKILL, and killed
//! when dropped (also when the test panics).
//!
//! The caller builds the command (the binary's path is the caller's: `env!("CARGO_BIN_EXE_…")`
//! exists only in the test crate of that binary); this module owns the life cycle.

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// How long a service gets to stop after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running service process.
pub struct ServiceProcess {
    name: String,
    child: Option<Child>,
}

impl ServiceProcess {
    /// Spawns `command` and waits (at most `timeout`) until `addr_file` holds a line: the
    /// address the service listens on, which is returned. Panics with `stderr_log`'s content if
    /// the service exits first or is not ready in time.
    pub fn start(
        name: &str,
        command: &mut Command,
        addr_file: &Path,
        stderr_log: &Path,
        timeout: Duration,
    ) -> (Self, String) {
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut process = Self {
            name: name.to_owned(),
            child: Some(child),
        };
        let deadline = Instant::now() + timeout;
        let log = || std::fs::read_to_string(stderr_log).unwrap_or_default();
        let addr = loop {
            if let Ok(text) = std::fs::read_to_string(addr_file)
                && let Some(addr) = text.strip_suffix('\n')
            {
                break addr.to_owned();
            }
            if let Some(status) = process.child_mut().try_wait().expect("poll the child") {
                panic!("{name} exited ({status}) before it was ready:\n{}", log());
            }
            if Instant::now() > deadline {
                process.kill9();
                panic!("{name} was not ready after {timeout:?}:\n{}", log());
            }
            std::thread::sleep(Duration::from_millis(25));
        };
        (process, addr)
    }

    fn child_mut(&mut self) -> &mut Child {
        self.child
            .as_mut()
            .unwrap_or_else(|| panic!("{} was already stopped", self.name))
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .unwrap_or_else(|| panic!("{} was already stopped", self.name))
    }

    /// `kill -9`, and reap the process.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap the child");
        }
    }

    /// SIGTERM, and wait (at most 30 s) for the process to exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{} was already stopped", self.name));
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {}", child.id());
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("poll the child") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "{} did not stop within {STOP_TIMEOUT:?} of SIGTERM",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

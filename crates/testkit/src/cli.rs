//! A built binary run to completion in a directory, and its output decoded: the steps every
//! end-to-end test of `cloister` and `cloister-demo` takes around the command under test.
//!
//! The caller names the binary (`env!("CARGO_BIN_EXE_…")` exists only in the test crate of
//! that binary); this module runs it with `RUST_LOG` unset, so stderr holds only what the
//! command itself prints, and decodes what it wrote.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `program args…` in `dir` with `envs` set and `RUST_LOG` unset, to completion.
pub fn run(program: &Path, dir: &Path, args: &[&str], envs: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(dir).env_remove("RUST_LOG");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output()
        .unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

/// [`run`] on a blocking thread, so that a server in the test's own runtime keeps answering
/// the binary.
pub async fn run_blocking(
    program: &Path,
    dir: &Path,
    args: &[&str],
    envs: &[(&str, &Path)],
) -> Output {
    let program = program.to_path_buf();
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, PathBuf)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_path_buf()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &Path)> = envs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_path()))
            .collect();
        run(&program, &dir, &args, &envs)
    })
    .await
    .expect("the blocking run panicked")
}

/// Output bytes as text (lossy: a test shows what it got).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `out` exited with `code`; else fails with its stdout and stderr.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// `out`, after asserting it exited 0; else fails naming `what`, with stdout and stderr.
pub fn ok(out: Output, what: &str) -> Output {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{what}\nstdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Stdout parsed as JSON; else fails with stdout and stderr.
pub fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

//! schemathesis against a live CAS: its answers to generated requests (valid and not) are never
//! a server error and always match `/v1/openapi.json` (bodies, status codes, content types).
//!
//! Needs Python with schemathesis 4 (`pip install schemathesis`), named by `CLOISTER_PYTHON`.
//! Without it the test fails under `CI=true` and is skipped, saying why, elsewhere.

use super::cas_process::{CasProcess, text};
use std::process::Command;

/// The checks that must hold for every generated request.
const CHECKS: &str = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance";

/// The interpreter to run schemathesis with, or why there is none.
fn python() -> Result<String, String> {
    let python = std::env::var("CLOISTER_PYTHON")
        .map_err(|_| "CLOISTER_PYTHON is not set (a Python with schemathesis 4)".to_owned())?;
    let probe = Command::new(&python)
        .args([
            "-c",
            "import schemathesis, sys; sys.exit(0 if schemathesis.__version__.startswith('4.') else 3)",
        ])
        .output()
        .map_err(|e| format!("cannot run CLOISTER_PYTHON={python}: {e}"))?;
    if !probe.status.success() {
        return Err(format!(
            "CLOISTER_PYTHON={python} has no schemathesis 4 ({}): pip install schemathesis",
            text(&probe.stderr).trim()
        ));
    }
    Ok(python)
}

#[test]
fn schemathesis_finds_no_server_error_or_schema_violation() {
    let python = match python() {
        Ok(python) => python,
        Err(why) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("schemathesis is required under CI=true: {why}")
        }
        Err(why) => {
            eprintln!("skipping the schemathesis run: {why}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cas = CasProcess::start(dir.path(), &[], &[]);
    let schema = format!("{}/v1/openapi.json", cas.url);
    let out = Command::new(&python)
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; \
             sys.argv[0] = 'schemathesis'; sys.exit(schemathesis())",
            "run",
            &schema,
            "--checks",
            CHECKS,
            "--max-examples",
            "30",
            "--seed",
            "20260101",
            "--workers",
            "1",
            "--request-timeout",
            "30",
            "--tls-verify",
        ])
        .arg(&cas.cert)
        // Its example database and any configuration file stay in the temporary directory.
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run schemathesis");
    let report = format!("{}\n{}", text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "schemathesis failed:\n{report}");
    assert!(
        report.contains("Test cases:") && report.contains(" passed"),
        "schemathesis ran no test:\n{report}"
    );
    // The CAS is still up: nothing it was sent brought it down.
    assert_eq!(cas.terminate().code(), Some(0));
    let log = text(&std::fs::read(&cas.stderr_log).unwrap());
    assert!(!log.contains("panicked"), "{log}");
}

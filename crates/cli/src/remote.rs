//! Talking to a running CAS: the connection flags of every remote command, and how the CAS's
//! answers become exit codes.
//!
//! A remote command trusts exactly one certificate, the CAS's own (`DIR/cas.crt`, given with
//! `--cas-cert`): no system roots. The CAS refusing a request (403, 404, 409, 422) is a verdict:
//! exit 1, with its message, rule and each reason on stderr. Anything else (unreachable, bad
//! request, unauthenticated, a server error) is an operational error: exit 2.

use crate::EXIT_REFUSED;
use anyhow::Context as _;
use clap::Args;
use cloister_cas::client::CasClient;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// Where the CAS is and which certificate to pin.
#[derive(Args, Clone, Debug)]
pub struct CasArgs {
    /// The CAS's URL, https://HOST:PORT (`cas serve` writes it to DIR/cas.addr).
    #[arg(long = "cas", value_name = "URL")]
    pub url: String,
    /// The CAS's TLS certificate to pin (PEM; `cas serve` writes it to DIR/cas.crt).
    #[arg(long = "cas-cert", value_name = "FILE")]
    pub cert: PathBuf,
}

impl CasArgs {
    /// A client for this CAS, pinned to the certificate.
    pub fn client(&self) -> anyhow::Result<CasClient> {
        client(&self.url, &self.cert)
    }
}

/// A client for the CAS at `url`, pinned to the certificate in `cert`.
pub fn client(url: &str, cert: &std::path::Path) -> anyhow::Result<CasClient> {
    let pem = std::fs::read_to_string(cert)
        .with_context(|| format!("cannot read the CAS certificate {}", cert.display()))?;
    CasClient::new(url, &pem).with_context(|| format!("cannot use the CAS at {url}"))
}

/// Runs `future` (a client call) to completion on a small runtime.
pub fn block_on<F: Future>(future: F) -> anyhow::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    Ok(runtime.block_on(future))
}

/// Whether an HTTP status from the CAS is a verdict on the request (exit 1) rather than an
/// operational failure (exit 2).
pub fn is_refusal(status: u16) -> bool {
    matches!(status, 403 | 404 | 409 | 422)
}

/// Exit 1 for a refusal by the CAS, printing its message and reasons one per line on stderr;
/// any other error is returned (exit 2).
pub fn refused(error: cloister_cas::Error) -> anyhow::Result<ExitCode> {
    match error {
        cloister_cas::Error::Api {
            status,
            code,
            message,
            rule,
            reasons,
            refused,
            ..
        } if is_refusal(status) => {
            let rules = refused.map(|r| r.rules).unwrap_or_default();
            let rule = rule.map_or_else(String::new, |r| format!(", rule {r}"));
            eprintln!("cloister: refused by the CAS ({status} {code}{rule}): {message}");
            for reason in &reasons {
                eprintln!("cloister:   {reason}");
            }
            for rule in reasons_missing(&rules, &reasons) {
                eprintln!("cloister:   {rule}");
            }
            Ok(ExitCode::from(EXIT_REFUSED))
        }
        other => Err(other.into()),
    }
}

/// The rule ids that no printed reason already names.
fn reasons_missing<'a>(rules: &'a [String], reasons: &[String]) -> Vec<&'a String> {
    rules
        .iter()
        .filter(|r| !reasons.iter().any(|reason| reason.starts_with(r.as_str())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_verdicts_and_the_rest_operational() {
        for status in [403, 404, 409, 422] {
            assert!(is_refusal(status), "{status}");
        }
        for status in [400, 401, 408, 413, 500, 503] {
            assert!(!is_refusal(status), "{status}");
        }
        let api = |status| cloister_cas::Error::Api {
            status,
            code: "x".into(),
            message: "m".into(),
            rule: None,
            reasons: vec![],
            refused: None,
        };
        assert!(matches!(refused(api(409)), Ok(code) if code == ExitCode::from(EXIT_REFUSED)));
        assert!(refused(api(401)).is_err());
    }
}

//! HTTP plumbing shared by the LAS client and the collateral fetchers: one rustls configuration,
//! one way to build a client, a size-capped body reader and readable error chains.

use std::time::Duration;

use crate::LasError;

/// rustls with the ring provider and Mozilla's roots (webpki-roots): no system certificate store
/// is needed, so the LAS image can be minimal.
fn tls_config() -> Result<rustls::ClientConfig, LasError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LasError::Internal(format!("rustls protocol versions: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// The HTTP client for collateral services and for the LAS API.
pub(crate) fn http_client(timeout: Duration) -> Result<reqwest::Client, LasError> {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls_config()?)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("cloister-las/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| LasError::Internal(format!("building the HTTP client: {e}")))
}

/// Read a response body of at most `max` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, `: `-separated (reqwest's own message hides the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = s.source();
    }
    text
}

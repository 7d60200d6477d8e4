//! Raw HTTPS to a CAS, pinned to its self-signed certificate: for the requests the client
//! library would never send (malformed, oversized, unsigned), and for byte-exact exchanges.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

/// A rustls client configuration trusting only `cert_pem` (ring provider, safe defaults).
pub fn tls_config(cert_pem: &str) -> Arc<rustls::ClientConfig> {
    let der = pem::parse(cert_pem).expect("the CAS certificate is PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(der.contents().to_vec().into())
        .expect("the CAS certificate parses");
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth(),
    )
}

/// A reqwest client trusting only `cert_pem`. No connection reuse: the CAS closes a
/// connection after refusing an oversized body.
pub fn client(cert_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls_config(cert_pem)).clone())
        .pool_max_idle_per_host(0)
        .build()
        .expect("a reqwest client")
}

/// The socket address of an `https://IP:PORT` URL.
pub fn addr(url: &str) -> SocketAddr {
    url.trim_start_matches("https://")
        .trim_end_matches('/')
        .parse()
        .expect("an https://IP:PORT URL")
}

/// A blocking TLS connection to `addr` (server name `127.0.0.1`), pinned to `cert_pem`; the
/// handshake happens on first use.
pub fn connect(
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a server name");
    let conn = rustls::ClientConnection::new(tls, name).expect("a TLS client connection");
    let tcp = TcpStream::connect(addr).expect("connect to the CAS");
    rustls::StreamOwned::new(conn, tcp)
}

/// Sends `request` as is over a TLS connection pinned to `cert_pem` and reads until the
/// server closes it (the CAS answers with `Connection: close`); the status and the JSON body
/// (`Null` when the body is not JSON). Blocking: call it from `spawn_blocking` in async tests.
pub fn exchange(url: &str, cert_pem: &str, request: &[u8]) -> (u16, serde_json::Value) {
    let mut tls = connect(addr(url), tls_config(cert_pem));
    tls.write_all(request).expect("send the request");
    let mut answer = Vec::new();
    let _ = tls.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (status, serde_json::from_str(body).unwrap_or_default())
}

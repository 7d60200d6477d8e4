//! Bounded resources, played from the attacker's side with raw sockets: slow headers, stalled
//! handshakes, connection floods, request floods, and forged, expired, replayed and
//! future-dated nonces. Timeouts are 200 ms here (configured), so each test takes about a
//! second; upper bounds on "closed within" are loose because the machine is shared.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::collect::Collector as _;
use cloister_attest::{EvidenceKind, binding};
use cloister_cas::Clock as _;
use cloister_cas::api::{AttestRequest, NonceResponse};
use cloister_cas::config::{CasConfigBuilder, Limits, RateLimit};
use cloister_cas::envelope::WorkloadKey;
use cloister_testkit::https;
use rstest::rstest;

use super::{ApiErr, Cas, api_err, app_policy, request_with};

const SHORT: Duration = Duration::from_millis(200);
/// How long a connection the CAS should have closed may take to show it (a shared machine).
const CLOSED_WITHIN: Duration = Duration::from_secs(5);
/// The stated latency bound for an honest workload while another client floods.
const HONEST_LATENCY: Duration = Duration::from_secs(2);

fn limits(edit: impl FnOnce(&mut Limits)) -> impl FnOnce(CasConfigBuilder) -> CasConfigBuilder {
    let mut l = Limits::default();
    edit(&mut l);
    move |b| b.limits(l)
}

async fn start(edit: impl FnOnce(&mut Limits)) -> Cas {
    Cas::start_with(
        tempfile::tempdir().unwrap(),
        cloister_attest::sim::PlatformKey::generate(),
        limits(edit),
    )
    .await
}

/// A CAS with these limits and no admin key nor namespace: the client library opens no
/// connection of its own that would take a slot of the connection caps.
async fn start_bare(edit: impl FnOnce(&mut Limits)) -> Cas {
    Cas::start_opts(
        tempfile::tempdir().unwrap(),
        cloister_attest::sim::PlatformKey::generate(),
        false,
        limits(edit),
    )
    .await
}

/// Opens raw connections to a CAS (Send, for `spawn_blocking`).
#[derive(Clone)]
struct Dialer {
    addr: SocketAddr,
    tls: Arc<rustls::ClientConfig>,
}

impl Dialer {
    /// A blocking TLS connection to the CAS with the handshake done.
    fn tls_connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let mut tls = https::connect(self.addr, self.tls.clone());
        tls.sock.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        tls
    }
}

impl Cas {
    fn addr(&self) -> SocketAddr {
        https::addr(&self.url)
    }

    fn dialer(&self) -> Dialer {
        Dialer {
            addr: self.addr(),
            tls: self.tls_client(),
        }
    }

    fn tls_client(&self) -> Arc<rustls::ClientConfig> {
        https::tls_config(&self.cert_pem)
    }

    /// A reqwest client pinned to the CAS whose connections come from `source`.
    fn raw_from(&self, source: IpAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls_client()).clone())
            .local_address(source)
            .build()
            .unwrap()
    }
}

/// Reads until the peer closes the connection (or fails it); how long that took and what came.
fn wait_for_close(stream: &mut impl std::io::Read) -> (Duration, Vec<u8>) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                panic!("the CAS kept the connection open for {CLOSED_WITHIN:?}")
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("the CAS kept the connection open for {CLOSED_WITHIN:?}")
            }
            // Reset, or a TLS close without close_notify: closed all the same.
            Err(_) => break,
        }
    }
    (start.elapsed(), got)
}

/// Reads one HTTP/1.1 response with a `Content-Length` body; returns its status.
fn read_response(stream: &mut impl std::io::Read) -> u16 {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before a response");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text[9..12].parse().unwrap();
            }
        }
    }
}

/// A client that sends part of a request head and stalls is closed after the header-read
/// timeout; so is an idle keep-alive connection after its last response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_idle_keep_alive_connections_are_closed() {
    let cas = start(|l| l.header_read_timeout = SHORT).await;
    let dialer = cas.dialer();
    tokio::task::spawn_blocking(move || {
        let mut slow = dialer.tls_connect();
        let mut idle = dialer.tls_connect();
        slow.write_all(b"POST /v1/nonce HTTP/1.1\r\nHost: cas\r\nContent-Le")
            .unwrap();
        slow.flush().unwrap();
        let (waited, got) = wait_for_close(&mut slow);
        let text = String::from_utf8_lossy(&got);
        assert!(
            !text.contains(" 200 "),
            "a partial head was answered: {text}"
        );
        assert!(waited < CLOSED_WITHIN, "{waited:?}");

        idle.write_all(b"GET /v1/health HTTP/1.1\r\nHost: cas\r\n\r\n")
            .unwrap();
        assert_eq!(read_response(&mut idle), 200);
        let (waited, got) = wait_for_close(&mut idle);
        assert!(got.is_empty(), "{}", String::from_utf8_lossy(&got));
        assert!(waited < CLOSED_WITHIN, "{waited:?}");
    })
    .await
    .unwrap();
    // Honest clients are unaffected.
    cas.client.health().await.unwrap();
}

/// A client that opens TCP and never completes the TLS handshake (silent, or a few bytes of a
/// ClientHello) is dropped after the handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_handshakes_is_dropped() {
    let cas = start(|l| l.tls_handshake_timeout = SHORT).await;
    let addr = cas.addr();
    tokio::task::spawn_blocking(move || {
        for partial in [&b""[..], &[0x16, 0x03, 0x01, 0x02][..]] {
            let mut tcp = TcpStream::connect(addr).unwrap();
            tcp.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
            tcp.write_all(partial).unwrap();
            let start = Instant::now();
            let (_, got) = wait_for_close(&mut tcp);
            assert!(got.is_empty(), "{got:?}");
            assert!(start.elapsed() < CLOSED_WITHIN);
        }
    })
    .await
    .unwrap();
    cas.client.health().await.unwrap();
}

/// With the cap reached, a new connection is closed at once (before TLS) while the existing
/// ones keep working; once they close, an honest client is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_closed_and_honest_clients_are_served_after() {
    const CAP: usize = 4;
    let cas = start_bare(|l| {
        l.max_connections = CAP;
        l.max_connections_per_client = CAP;
        l.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let dialer = cas.dialer();
    let mut held = tokio::task::spawn_blocking(move || {
        let mut held: Vec<_> = (0..CAP).map(|_| dialer.tls_connect()).collect();
        // Beyond the cap: closed without a handshake.
        let mut over = https::connect(dialer.addr, dialer.tls.clone());
        over.sock.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
        let start = Instant::now();
        let answer = over
            .write_all(b"GET /v1/health HTTP/1.1\r\nHost: cas\r\n\r\n")
            .and_then(|()| over.flush())
            .and_then(|()| over.read(&mut [0u8; 64]));
        assert!(
            !matches!(answer, Ok(n) if n > 0),
            "a connection beyond the cap was served"
        );
        assert!(start.elapsed() < CLOSED_WITHIN);
        // The held connections still work.
        for c in &mut held {
            c.write_all(b"GET /v1/health HTTP/1.1\r\nHost: cas\r\n\r\n")
                .unwrap();
            assert_eq!(read_response(c), 200);
        }
        held
    })
    .await
    .unwrap();
    held.clear();
    // The CAS sees the closes asynchronously: try a bounded number of times.
    let mut served = false;
    for _ in 0..100 {
        if cas.client.health().await.is_ok() {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        served,
        "an honest client was not served after the others closed"
    );
}

/// One client holding its share of connections cannot take the rest: its next connection is
/// closed while another client (127.0.0.2) is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_hold_every_connection() {
    const PER_CLIENT: usize = 3;
    let cas = start_bare(|l| {
        l.max_connections = 16;
        l.max_connections_per_client = PER_CLIENT;
        l.header_read_timeout = Duration::from_secs(30);
    })
    .await;
    let dialer = cas.dialer();
    let held = tokio::task::spawn_blocking(move || {
        let held: Vec<_> = (0..PER_CLIENT).map(|_| dialer.tls_connect()).collect();
        let mut over = TcpStream::connect(dialer.addr).unwrap();
        over.set_read_timeout(Some(CLOSED_WITHIN)).unwrap();
        let (waited, got) = wait_for_close(&mut over);
        assert!(got.is_empty() && waited < CLOSED_WITHIN);
        held
    })
    .await
    .unwrap();
    let other = cas.raw_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let r = other
        .get(format!("{}/v1/health", cas.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(held);
}

/// One client floods `POST /v1/nonce` and gets 429 with `Retry-After`; meanwhile health answers
/// and an honest workload from another address (127.0.0.2) attests within [`HONEST_LATENCY`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nonce_flood_is_rate_limited_and_others_still_attest() {
    let cas = Arc::new(
        start(|l| {
            l.nonce_rate = RateLimit::new(5, 10);
        })
        .await,
    );
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, limited) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let flooder = {
        let (cas, stop, ok, limited) = (cas.clone(), stop.clone(), ok.clone(), limited.clone());
        tokio::spawn(async move {
            let http = cas.raw_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
            for _ in 0..5_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let r = http
                    .post(format!("{}/v1/nonce", cas.url))
                    .send()
                    .await
                    .unwrap();
                if r.status() == 429 {
                    let retry: u64 = r.headers()["retry-after"]
                        .to_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!((1..=60).contains(&retry), "{retry}");
                    let body: serde_json::Value = r.json().await.unwrap();
                    assert_eq!(body["code"], "rate-limited", "{body}");
                    limited.fetch_add(1, Ordering::Relaxed);
                } else {
                    assert_eq!(r.status(), 200);
                    ok.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    // Let the flood use up its burst.
    while limited.load(Ordering::Relaxed) == 0 {
        assert!(!flooder.is_finished(), "the flood was never limited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Health from the flooding address is not limited.
    for _ in 0..20 {
        cas.client.health().await.unwrap();
    }
    // An honest workload from another address attests, three times, each within the bound.
    let honest = cas.raw_from(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let collector = cas.collector(Cas::good_statement());
    for _ in 0..3 {
        let start = Instant::now();
        let key = WorkloadKey::generate().unwrap();
        let nonce: NonceResponse = honest
            .post(format!("{}/v1/nonce", cas.url))
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .json()
            .await
            .unwrap();
        let nonce = B64.decode(nonce.nonce).unwrap();
        let evidence = collector
            .collect(&binding::report_data(&nonce, &key.spki_der()))
            .unwrap();
        let req = AttestRequest {
            session: "test/app".into(),
            service: "driver".into(),
            evidence: B64.encode(&evidence.bytes),
            kind: Some(EvidenceKind::Sim),
            collateral: None,
            nonce: B64.encode(&nonce),
            public_key: B64.encode(key.spki_der()),
            host_args: vec!["argv0".into(), "host-arg-1".into()],
        };
        let r = honest
            .post(format!("{}/v1/attest", cas.url))
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
        let took = start.elapsed();
        assert!(took < HONEST_LATENCY, "an honest attestation took {took:?}");
    }
    stop.store(true, Ordering::Relaxed);
    flooder.await.unwrap();
    // The flood got its burst and the sustained rate, no more (5/s over a few seconds).
    let ok = ok.load(Ordering::Relaxed);
    assert!(ok >= 10, "{ok}");
    assert!(limited.load(Ordering::Relaxed) > ok, "{ok} admitted");
}

/// Session endpoints and `POST /v1/attest` are limited too (each group on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_and_session_floods_are_rate_limited() {
    let cas = start(|l| {
        l.attest_rate = RateLimit::new(1, 2);
        // One of the four slots went to creating the test namespace.
        l.session_rate = RateLimit::new(1, 4);
    })
    .await;
    let http = cas.raw_from(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = http
            .post(format!("{}/v1/attest", cas.url))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    // Malformed bodies still count: the limit runs before the handler reads the body. (Two
    // slots, refilled at 1/s: at least one of the next two is refused on any machine.)
    assert_eq!(statuses[..2], [400, 400], "{statuses:?}");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = http
            .get(format!("{}/v1/sessions", cas.url))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert!(statuses[..3].iter().all(|s| *s != 429), "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");
    // Nonces have their own budget.
    cas.client.nonce().await.unwrap();
}

/// How a nonce is spoiled.
#[derive(Debug, Clone, Copy)]
enum BadNonce {
    /// A bit of the MAC flipped.
    BadMac,
    /// The issue time moved later (to stretch its lifetime): the MAC no longer matches.
    Postdated,
    /// Issued by this CAS with its clock ahead, used after the clock stepped back past the skew.
    IssuedInTheFuture,
    /// Used after its TTL.
    Expired,
    /// Used twice.
    Replayed,
    /// Not a nonce of this format at all.
    Truncated,
}

#[rstest]
#[case::bad_mac(BadNonce::BadMac, "nonce: unknown or already used")]
#[case::postdated(BadNonce::Postdated, "nonce: unknown or already used")]
#[case::issued_in_the_future(BadNonce::IssuedInTheFuture, "nonce: unknown or already used")]
#[case::expired(BadNonce::Expired, "nonce: expired")]
#[case::replayed(BadNonce::Replayed, "nonce: unknown or already used")]
#[case::truncated(BadNonce::Truncated, "nonce: unknown or already used")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoiled_nonces_are_refused(#[case] how: BadNonce, #[case] reason: &str) {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let now = cas.clock.now();
    if matches!(how, BadNonce::IssuedInTheFuture) {
        cas.clock.advance(Duration::from_secs(30));
    }
    let mut req = request_with(&cas, "test/app", &collector, &key, &key).await;
    let mut nonce = B64.decode(&req.nonce).unwrap();
    match how {
        BadNonce::BadMac => *nonce.last_mut().unwrap() ^= 1,
        BadNonce::Postdated => {
            let t = u64::from_be_bytes(nonce[..8].try_into().unwrap()) + 30_000;
            nonce[..8].copy_from_slice(&t.to_be_bytes());
        }
        BadNonce::IssuedInTheFuture => cas.clock.set(now),
        BadNonce::Expired => cas.clock.advance(Duration::from_secs(60)),
        BadNonce::Replayed => {
            cas.client.attest(&req, &key).await.unwrap();
        }
        BadNonce::Truncated => nonce.truncate(32),
    }
    if !matches!(
        how,
        BadNonce::IssuedInTheFuture | BadNonce::Expired | BadNonce::Replayed
    ) {
        // Evidence bound to the spoiled nonce, so that only the nonce check can refuse it.
        req.evidence = B64.encode(
            collector
                .collect(&binding::report_data(&nonce, &key.spki_der()))
                .unwrap()
                .bytes,
        );
        req.nonce = B64.encode(&nonce);
    }
    let err: ApiErr = api_err(cas.client.attest(&req, &key).await);
    assert_eq!(
        (err.status, err.code.as_str()),
        (403, "attestation-refused")
    );
    assert!(err.names(reason), "{}", err.text());
    if !matches!(how, BadNonce::IssuedInTheFuture | BadNonce::Expired) {
        assert_eq!(
            err.reasons.len(),
            1,
            "only the nonce is refused: {}",
            err.text()
        );
    }
}

/// Issuing nonces stores nothing; only a used nonce is remembered. `POST /v1/nonce` never runs
/// out (the old table answered 503 when full).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuing_nonces_stores_nothing() {
    let cas = Cas::start_with(
        tempfile::tempdir().unwrap(),
        cloister_attest::sim::PlatformKey::generate(),
        |b| b.limits(Limits::bench()),
    )
    .await;
    for _ in 0..2_000 {
        cas.client.nonce().await.unwrap();
    }
    assert_eq!(cas.state.used_nonces(), 0);
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    // Review finding: evidence that does not verify spends no nonce, so junk attestations
    // cannot fill the used set every honest workload needs room in.
    for _ in 0..20 {
        let mut junk = request_with(&cas, "test/app", &collector, &key, &key).await;
        junk.evidence = B64.encode(b"not evidence at all");
        let err = api_err(cas.client.attest(&junk, &key).await);
        assert_eq!(err.status, 403, "{}", err.text());
    }
    assert_eq!(cas.state.used_nonces(), 0);
    let req = request_with(&cas, "test/app", &collector, &key, &key).await;
    cas.client.attest(&req, &key).await.unwrap();
    assert_eq!(cas.state.used_nonces(), 1);
}

/// When the used set is full, a new attestation is refused with 503 and replays stay refused:
/// the CAS never forgets a used nonce to make room.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_used_nonce_set_refuses_new_attestations_not_replays() {
    let cas = start(|l| l.max_used_nonces = 16).await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let mut used = Vec::new();
    for _ in 0..16 {
        let req = request_with(&cas, "test/app", &collector, &key, &key).await;
        cas.client.attest(&req, &key).await.unwrap();
        used.push(req);
    }
    let fresh = request_with(&cas, "test/app", &collector, &key, &key).await;
    let err = api_err(cas.client.attest(&fresh, &key).await);
    assert_eq!(
        (err.status, err.code.as_str()),
        (503, "unavailable"),
        "{}",
        err.text()
    );
    let err = api_err(cas.client.attest(&used[0], &key).await);
    assert!(
        err.names("nonce: unknown or already used"),
        "{}",
        err.text()
    );
    // When the used nonces expire there is room again.
    cas.clock.advance(Duration::from_secs(61));
    let req = request_with(&cas, "test/app", &collector, &key, &key).await;
    cas.client.attest(&req, &key).await.unwrap();
}

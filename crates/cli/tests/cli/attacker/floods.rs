//! Exhausting the CAS: nonce floods, floods of refused attestations that each write to the
//! audit log, and connections that never finish their request header or TLS handshake. The CAS
//! must keep serving `/v1/health` and honest workloads (from another source address) within
//! [`HONEST_LATENCY`] per request while one client floods.

use super::kit::{self, Attempt, Client, Reply};
use super::{Scene, VICTIM_MEASUREMENT, service, session_policy};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The most one honest request (health, nonce, attest) may take while the CAS is flooded, on a
/// debug build sharing 2 cores with other builds.
const HONEST_LATENCY: Duration = Duration::from_secs(2);

/// The nonce flood: at most this many requests, for at most [`NONCE_FLOOD_TIME`].
const NONCE_FLOOD_REQUESTS: usize = 20_000;
const NONCE_FLOOD_TIME: Duration = Duration::from_secs(10);
/// `cas serve --nonce-rate` for the nonce flood: per client, per second and burst (the default
/// is 50,500; a lower burst makes the limit show within the flood on any machine).
const NONCE_RATE: &str = "50,100";
/// Requests the flooding client keeps in flight.
const FLOOD_CONCURRENCY: usize = 16;

/// Refused attestations per phase, at most [`REFUSAL_FLOOD_TIME`] per phase.
const REFUSAL_FLOOD_REQUESTS: usize = 2_000;
const REFUSAL_FLOOD_TIME: Duration = Duration::from_secs(60);
/// How much the audit log may grow over both refusal floods.
const AUDIT_GROWTH_LIMIT: u64 = 1_000_000;
/// `cas serve --attest-rate` for the refusal floods: high enough that every refusal reaches
/// the handler, so that what bounds the log is the handler's (validation before logging,
/// folding), not the per-client rate limit.
const REFUSAL_FLOOD_ATTEST_RATE: &str = "100000,100000";
/// How much the audit log may grow over the flood of one identical refusal (folded into its
/// first entry and a count).
const FOLDED_GROWTH_LIMIT: u64 = 16 * 1024;

/// `cas serve` limits for the slow-connection attack (flags of the fix, issue 9 part `limits`).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_CONNECTIONS: usize = 64;
/// Of which one client may hold this many: the rest stay free for others.
const MAX_CONNECTIONS_PER_CLIENT: usize = 32;
/// Connections that finish TLS and stall in the request header; connections that never start
/// TLS.
const SLOW_HEADER_CONNECTIONS: usize = 100;
const NO_TLS_CONNECTIONS: usize = 40;
/// Slack over a timeout for the CAS to notice and close (a loaded debug build).
const CLOSE_SLACK: Duration = Duration::from_secs(5);

/// The victim's honest session: one service with generated secrets only.
fn honest_session(scene: &Scene) {
    let yaml = session_policy(
        "victim/app",
        &scene.victim_public,
        &service(
            "api",
            &VICTIM_MEASUREMENT,
            &[("DB_PASSWORD", "$$cloister:db_password$$")],
        ),
        "  - name: db_password\n    kind: ascii\n",
        "",
    );
    scene.victim_creates(&yaml);
}

/// One honest round from [`super::HONEST_IP`]: health, nonce, attestation; each timed.
fn honest_round(scene: &Scene, honest: &Client) -> Result<[Duration; 3], String> {
    let t = Instant::now();
    let health = honest.get("/v1/health");
    let health_t = t.elapsed();
    if health.status != 200 {
        return Err(format!("health: {health}"));
    }
    let t = Instant::now();
    let nonce = honest.nonce().map_err(|r| format!("nonce: {r}"))?;
    let nonce_t = t.elapsed();
    let t = Instant::now();
    let attempt =
        honest.attest_with_nonce(&scene.tee(&VICTIM_MEASUREMENT), "victim/app", "api", nonce);
    let attest_t = t.elapsed();
    match attempt {
        Attempt::Released { .. } => Ok([health_t, nonce_t, attest_t]),
        Attempt::Refused(r) => Err(format!("attest: {r}")),
    }
}

/// What a flood got: how many answers had each status (0: unanswered), the first answer of
/// each status, and how long it ran.
struct Flooded {
    statuses: BTreeMap<u16, usize>,
    samples: BTreeMap<u16, Reply>,
    took: Duration,
}

/// Runs `make` requests from `client`, [`FLOOD_CONCURRENCY`] at a time, until `count` were sent
/// or `time` passed. `running` is cleared when it stops.
fn flood(
    client: &Client,
    count: usize,
    time: Duration,
    running: &AtomicBool,
    make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync + 'static,
) -> Flooded {
    let (http, base) = client.http();
    let make = Arc::new(make);
    let started = Instant::now();
    let deadline = started + time;
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (statuses, samples) = client.block_on(async move {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..FLOOD_CONCURRENCY {
            let (http, base, make, sent) = (http.clone(), base.clone(), make.clone(), sent.clone());
            tasks.spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                let mut samples = BTreeMap::<u16, Reply>::new();
                while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < count {
                    let reply = kit::send((*make)(&http, &base)).await;
                    *statuses.entry(reply.status).or_default() += 1;
                    samples.entry(reply.status).or_insert(reply);
                }
                (statuses, samples)
            });
        }
        let mut all = BTreeMap::<u16, usize>::new();
        let mut samples = BTreeMap::<u16, Reply>::new();
        while let Some(done) = tasks.join_next().await {
            let (statuses, some) = done.expect("a flood task panicked");
            for (status, n) in statuses {
                *all.entry(status).or_default() += n;
            }
            for (status, reply) in some {
                samples.entry(status).or_insert(reply);
            }
        }
        (all, samples)
    });
    running.store(false, Ordering::Relaxed);
    Flooded {
        statuses,
        samples,
        took: started.elapsed(),
    }
}

/// The attacker (127.0.0.1) requests nonces as fast as it can, 20,000 or 10 s; meanwhile an
/// honest workload (127.0.0.2) checks health, gets a nonce and attests, each within
/// [`HONEST_LATENCY`]. The attacker must be slowed down: 429 `rate-limited` (rule
/// `rate-limit`) with `Retry-After`.
#[test]
fn attack_floods_nonces() {
    let scene = Scene::start(&[], &["--nonce-rate", NONCE_RATE]);
    honest_session(&scene);
    let honest = scene.honest();
    // Warm up the honest path (first attestation generates the session's secrets).
    honest_round(&scene, &honest).expect("the honest workload attests before the flood");

    let running = Arc::new(AtomicBool::new(true));
    let flooding = running.clone();
    let url = scene.cas.url.clone();
    let cert = super::cert_pem(&scene.cas);
    let attacker = std::thread::spawn(move || {
        let mallory = Client::new(&url, &cert, super::ATTACKER_IP);
        flood(
            &mallory,
            NONCE_FLOOD_REQUESTS,
            NONCE_FLOOD_TIME,
            &flooding,
            |http, base| http.post(format!("{base}/v1/nonce")),
        )
    });

    let mut rounds = Vec::new();
    std::thread::sleep(Duration::from_millis(500));
    while running.load(Ordering::Relaxed) && rounds.len() < 20 {
        rounds.push(honest_round(&scene, &honest));
        std::thread::sleep(Duration::from_millis(300));
    }
    let Flooded {
        statuses,
        samples,
        took,
    } = attacker.join().unwrap();
    let report = format!(
        "attacker: {} requests in {took:.1?}, statuses {statuses:?}; honest rounds \
         [health, nonce, attest]: {rounds:?}",
        statuses.values().sum::<usize>()
    );
    assert!(
        !rounds.is_empty(),
        "no honest round ran during the flood: {report}"
    );
    for round in &rounds {
        let times = round.as_ref().unwrap_or_else(|e| {
            panic!("an honest request failed during the flood ({e}): {report}")
        });
        assert!(
            times.iter().all(|t| *t <= HONEST_LATENCY),
            "an honest request took longer than {HONEST_LATENCY:?}: {report}"
        );
    }
    assert!(
        health_ok(&scene),
        "the CAS does not answer health after the flood: {report}"
    );
    let Some(limited) = samples.get(&429) else {
        panic!("ATTACK SUCCEEDED: one client got every nonce it asked for, unthrottled: {report}");
    };
    assert_eq!(limited.code(), "rate-limited", "{limited}");
    assert_eq!(limited.rules(), ["rate-limit"], "{limited}");
    let retry: u64 = limited
        .retry_after
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("a 429 without Retry-After seconds: {limited:?}"));
    assert!(retry >= 1, "{limited:?}");
    // Every answer was a nonce or a 429: the flood was slowed, not turned into errors.
    assert!(statuses.keys().all(|s| [200, 429].contains(s)), "{report}");
}

fn health_ok(scene: &Scene) -> bool {
    let t = Instant::now();
    let reply = scene.honest().get("/v1/health");
    reply.status == 200 && t.elapsed() <= HONEST_LATENCY
}

/// 2,000 refused attestations naming a 900 KB service, then 2,000 naming a valid but unknown
/// service. The audit log must grow by less than [`AUDIT_GROWTH_LIMIT`] over both, and the CAS
/// keep answering: the long name is refused (400 `bad-request`) before anything is logged, and
/// identical refusals of the valid name are folded into a few entries. (A phase stops as soon
/// as the log has grown past the limit in it, so a failing run costs about 10 MB, not 1.8 GB.)
#[test]
fn attack_floods_refused_attestations() {
    let scene = Scene::start(&[], &["--attest-rate", REFUSAL_FLOOD_ATTEST_RATE]);
    honest_session(&scene);
    let before = scene.audit_log_len();
    let key = kit::WorkloadKey::generate();
    let public_key = STANDARD.encode(&key.spki_der);
    let mut report = Vec::new();

    for (phase, service_name, refusal) in [
        ("900 KB service name", "s".repeat(900 * 1024), 400),
        (
            "valid but unknown service",
            "no-such-service".to_owned(),
            403,
        ),
    ] {
        let body = Arc::new(
            serde_json::to_vec(&json!({
                "session": "victim/app",
                "service": service_name,
                "evidence": STANDARD.encode(b"not evidence"),
                "kind": "sim",
                "nonce": STANDARD.encode([7u8; 32]),
                "public_key": public_key,
            }))
            .unwrap(),
        );
        let mut statuses = BTreeMap::<u16, usize>::new();
        let mut samples = BTreeMap::<u16, Reply>::new();
        let started = Instant::now();
        let phase_start = scene.audit_log_len();
        let mut sent = 0;
        // In batches, checking the log between them: a flood that is not bounded by the CAS is
        // stopped by the test once it has shown as much.
        while sent < REFUSAL_FLOOD_REQUESTS
            && started.elapsed() < REFUSAL_FLOOD_TIME
            && scene.audit_log_len() - phase_start <= AUDIT_GROWTH_LIMIT
        {
            let batch = 10.min(REFUSAL_FLOOD_REQUESTS - sent);
            let body = body.clone();
            let running = AtomicBool::new(true);
            let flooded = flood(
                &scene.mallory,
                batch,
                REFUSAL_FLOOD_TIME,
                &running,
                move |http, base| {
                    http.post(format!("{base}/v1/attest"))
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone())
                },
            );
            for (status, n) in flooded.statuses {
                *statuses.entry(status).or_default() += n;
            }
            for (status, reply) in flooded.samples {
                samples.entry(status).or_insert(reply);
            }
            sent += batch;
        }
        let grown = scene.audit_log_len() - phase_start;
        report.push(format!(
            "{phase}: {sent} requests in {:.1?}, statuses {statuses:?}; audit log grown by \
             {grown} bytes",
            started.elapsed()
        ));
        assert!(
            health_ok(&scene),
            "the CAS does not answer health within {HONEST_LATENCY:?} after the {phase} flood: {report:?}"
        );
        // Every request reached the handler and was refused, nothing else.
        assert!(
            statuses.keys().all(|s| *s == refusal),
            "{phase}: expected {refusal} only: {report:?} {:?}",
            samples
                .values()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
        );
        let refused = &samples[&refusal];
        if refusal == 400 {
            // The name is checked before anything is logged.
            assert_eq!(refused.code(), "bad-request", "{phase}: {refused}");
            assert_eq!(grown, 0, "{phase}: the refusals were logged: {report:?}");
        } else {
            // The first refusal is logged; the identical ones after it are counted.
            assert_eq!(refused.code(), "attestation-refused", "{phase}: {refused}");
            assert_eq!(refused.rules(), ["service"], "{phase}: {refused}");
            assert!(
                grown < FOLDED_GROWTH_LIMIT,
                "ATTACK SUCCEEDED: identical refusals were not folded: {report:?}"
            );
        }
    }
    let grown = scene.audit_log_len() - before;
    assert!(
        grown < AUDIT_GROWTH_LIMIT,
        "ATTACK SUCCEEDED: refused attestations grew the audit log by {grown} bytes (limit \
         {AUDIT_GROWTH_LIMIT}):\n{}",
        report.join("\n")
    );
    let honest = scene.honest();
    honest_round(&scene, &honest).expect("the honest workload still attests");
}

/// Connections that complete TLS and send half a request header, then stall; connections that
/// never start TLS. With short limits the CAS closes each within its timeout (plus
/// [`CLOSE_SLACK`]), and an honest client is served meanwhile.
#[test]
fn attack_slow_header_connections() {
    let header = format!("{}s", HEADER_READ_TIMEOUT.as_secs());
    let handshake = format!("{}s", TLS_HANDSHAKE_TIMEOUT.as_secs());
    let max = MAX_CONNECTIONS.to_string();
    let per_client = MAX_CONNECTIONS_PER_CLIENT.to_string();
    let scene = Scene::start(
        &[],
        &[
            "--header-read-timeout",
            &header,
            "--tls-handshake-timeout",
            &handshake,
            "--max-connections",
            &max,
            "--max-connections-per-client",
            &per_client,
        ],
    );
    slow_connections(
        &scene,
        HEADER_READ_TIMEOUT.max(TLS_HANDSHAKE_TIMEOUT) + CLOSE_SLACK,
    );
}

/// The slow-connection attack against `scene`'s CAS; every attacker connection must be closed
/// by the CAS within `within` of the last one opened.
pub fn slow_connections(scene: &Scene, within: Duration) {
    let addr: std::net::SocketAddr = scene
        .cas
        .url
        .trim_start_matches("https://")
        .parse()
        .unwrap();
    let tls = kit::tls_config(&super::cert_pem(&scene.cas));
    let opening = Instant::now();
    let mut slow = Vec::new();
    let mut refused_handshakes = 0;
    for _ in 0..SLOW_HEADER_CONNECTIONS {
        if opening.elapsed() > Duration::from_secs(20) {
            break;
        }
        match kit::tls_connect(addr, &tls, Duration::from_secs(5)) {
            Ok(mut s) => {
                kit::send_raw(
                    &mut s,
                    b"POST /v1/nonce HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ",
                )
                .unwrap();
                slow.push(s);
            }
            // The connection cap at work: stop opening more.
            Err(_) => {
                refused_handshakes += 1;
                break;
            }
        }
    }
    let mut bare = Vec::new();
    for _ in 0..NO_TLS_CONNECTIONS {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            bare.push(s);
        }
    }
    let opened = Instant::now();
    let report = format!(
        "{} TLS connections stalled in the header, {} without TLS, {refused_handshakes} \
         handshakes refused, opened in {:.1?}",
        slow.len(),
        bare.len(),
        opening.elapsed()
    );

    // An honest client is served while the attacker holds its connections.
    let honest = scene.honest();
    let t = Instant::now();
    let reply: Reply = honest.get("/v1/health");
    assert_eq!(
        reply.status, 200,
        "the honest client was not served ({report}): {reply}"
    );
    let honest_took = t.elapsed();

    // Every attacker connection is closed by the CAS in time.
    let deadline = opened + within;
    let (mut open_slow, mut open_bare) = (slow, bare);
    for s in &open_slow {
        s.sock.set_nonblocking(true).unwrap();
    }
    for s in &open_bare {
        s.set_nonblocking(true).unwrap();
    }
    while Instant::now() < deadline && !(open_slow.is_empty() && open_bare.is_empty()) {
        open_slow.retain_mut(|s| !kit::closed_by_peer(s, Duration::ZERO));
        open_bare.retain_mut(|s| !kit::closed_by_peer(s, Duration::ZERO));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        open_slow.is_empty() && open_bare.is_empty(),
        "ATTACK SUCCEEDED: {} stalled-header and {} no-TLS connections still open {within:?} \
         after opening ({report}; the honest client took {honest_took:.1?})",
        open_slow.len(),
        open_bare.len()
    );
    assert!(
        honest_took <= within,
        "the honest client took {honest_took:.1?} ({report})"
    );
}

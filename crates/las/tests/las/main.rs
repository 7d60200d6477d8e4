//! The LAS end to end over HTTP on `127.0.0.1:0`: sim evidence checked by the sim verifier,
//! recorded SGX / TDX / SEV-SNP evidence with collateral from a fake Intel PCS and AMD KDS
//! checked by the real verifiers, the cache carrying attestation through a failing service, an
//! offline bundle with no service at all, and the cache across restarts.
//!
//! Time is injected: the recorded collateral is valid 2025-06-19 .. 2025-07-19.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod fake;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloister_attest::collect::{Collector, Evidence};
use cloister_attest::sim::{PlatformKey, SimVerifier, Statement};
use cloister_attest::{
    Collateral, Context, Error as AttestError, EvidenceFormat, EvidenceKind, TcbStatus, Tee,
    Verifier as _, Verifiers, binding,
};
use cloister_las::{
    self as las, AmdProduct, Clock, CollateralSettings, DcapTee, EvidenceSource, LasCollector,
    LasConfig, LasError, LasEvidence, PckCa, RefreshPolicy, SourceKind,
};
use cloister_testkit::las::Las;
use rstest::rstest;

use fake::{FakeServer, GO_CHIP_ID, Mode, testdata};

const SGX_ITEM: &str = "DCAP collateral (sgx, FMSPC 00A067110000, processor CA)";
const SGX_EXPIRY: &str = "2025-07-19T10:01:18Z";

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

#[derive(Debug)]
struct ManualClock(Mutex<SystemTime>);

impl ManualClock {
    fn at(rfc3339: &str) -> Arc<Self> {
        Arc::new(Self(Mutex::new(at(rfc3339))))
    }
    fn set(&self, rfc3339: &str) {
        *self.0.lock().unwrap() = at(rfc3339);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}

/// Serves one recorded piece of evidence, whatever the report_data.
#[derive(Debug)]
struct Recorded {
    tee: Tee,
    format: EvidenceFormat,
    bytes: Vec<u8>,
}

impl Recorded {
    fn sgx() -> Arc<Self> {
        Arc::new(Self {
            tee: Tee::Sgx,
            format: EvidenceFormat::DcapQuote,
            bytes: testdata("sgx-dcap/sgx_quote.bin"),
        })
    }
    fn tdx() -> Arc<Self> {
        Arc::new(Self {
            tee: Tee::Tdx,
            format: EvidenceFormat::DcapQuote,
            bytes: testdata("tdx/tdx_quote.bin"),
        })
    }
    fn snp() -> Arc<Self> {
        Arc::new(Self {
            tee: Tee::SevSnp,
            format: EvidenceFormat::SnpReport,
            bytes: testdata("sev-snp/go-sev-guest/attestation.bin"),
        })
    }
}

impl Collector for Recorded {
    fn tee(&self) -> Tee {
        self.tee
    }
    fn collect(&self, _: &[u8; 64]) -> Result<Evidence, AttestError> {
        Ok(Evidence {
            tee: self.tee,
            format: self.format,
            bytes: self.bytes.clone(),
            provider: None,
            aux: None,
        })
    }
}

/// A short refresh policy: refresh within 3 days of expiry, back off 60 s .. 10 min, and retry
/// once, quickly, when nothing is cached.
fn policy() -> RefreshPolicy {
    RefreshPolicy {
        margin: Duration::from_secs(3 * 24 * 3600),
        backoff_min: Duration::from_secs(60),
        backoff_max: Duration::from_secs(600),
        retries: 1,
        retry_delay: Duration::from_millis(10),
        retry_wait_max: Duration::from_millis(50),
        refresh_wait: Duration::from_secs(5),
        fetch_wait: Duration::from_secs(10),
    }
}

fn settings(fake: &FakeServer) -> CollateralSettings {
    CollateralSettings {
        refresh: policy(),
        amd_product: Some(AmdProduct::Milan),
        ..fake.settings()
    }
}

fn verify_at(got: &LasEvidence, now: &str) -> cloister_attest::Claims {
    let collateral = got.collateral.as_ref().expect("collateral attached");
    verify_with(collateral, &got.evidence.bytes, now).into_claims()
}

/// Verify `evidence` with `collateral` as the CAS would: through the one trust set.
fn verify_with(collateral: &Collateral, evidence: &[u8], now: &str) -> cloister_attest::Verified {
    Verifiers::new()
        .verify(evidence, None, Some(collateral), &Context::new(at(now)))
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Sim

fn sim_source() -> (EvidenceSource, SimVerifier) {
    let key = PlatformKey::generate();
    let verifier = SimVerifier::new([key.public_key()]);
    let source = EvidenceSource::Sim {
        key,
        template: Statement {
            measurement: vec![0x5a; 32],
            svn: 7,
            ..Default::default()
        },
    };
    (source, verifier)
}

#[tokio::test]
async fn sim_las_serves_evidence_the_sim_verifier_accepts() {
    let (source, verifier) = sim_source();
    let las = Las::start(
        source,
        CollateralSettings::offline(None),
        Arc::new(las::SystemClock),
    )
    .await;

    let health = las.client.health().await.unwrap();
    assert_eq!((health.tee, health.source), (Tee::Sim, SourceKind::Sim));
    assert!(health.sim_public_key.unwrap().contains("PUBLIC KEY"));

    let report_data = binding::report_data(b"nonce", b"workload spki");
    let got = las.client.evidence(&report_data).await.unwrap();
    assert_eq!(got.evidence.tee, Tee::Sim);
    assert!(got.collateral.is_none() && got.collateral_error.is_none());

    let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
    let claims = verifier
        .verify(&got.evidence.bytes, &ctx)
        .unwrap()
        .into_claims();
    assert_eq!(claims.measurement, vec![0x5a; 32]);
    assert_eq!(claims.svn, Some(7));

    // Bound to this report_data and no other.
    let other = Context::new(SystemTime::now())
        .expect_report_data(binding::report_data(b"nonce2", b"workload spki"));
    assert!(matches!(
        verifier.verify(&got.evidence.bytes, &other),
        Err(AttestError::ReportDataMismatch { .. })
    ));
    las.stop().await;
}

#[tokio::test]
async fn the_las_collector_feeds_the_attest_flow() {
    let (source, verifier) = sim_source();
    let las = Las::start(
        source,
        CollateralSettings::offline(None),
        Arc::new(las::SystemClock),
    )
    .await;
    let url = las.url.clone();
    let report_data = binding::report_data(b"n", b"k");
    // A collector blocks: off the async runtime, as the attest flow calls it.
    let evidence = tokio::task::spawn_blocking(move || {
        let collector = LasCollector::connect(&url).unwrap();
        assert_eq!(collector.tee(), Tee::Sim);
        collector.collect(&report_data).unwrap()
    })
    .await
    .unwrap();
    let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
    verifier.verify(&evidence.bytes, &ctx).unwrap();
    las.stop().await;

    // A LAS that is gone is an unavailable collector, not a panic.
    let url = las_url_of_a_closed_port().await;
    let err = tokio::task::spawn_blocking(move || LasCollector::connect(&url).unwrap_err())
        .await
        .unwrap();
    assert!(matches!(err, LasError::Unreachable { .. }), "{err:?}");
}

#[tokio::test]
async fn the_las_collector_claims_the_workloads_measurement_from_a_sim_las_only() {
    let (source, verifier) = sim_source();
    let las = Las::start(
        source,
        CollateralSettings::offline(None),
        Arc::new(las::SystemClock),
    )
    .await;
    let url = las.url.clone();
    let report_data = binding::report_data(b"n", b"k");
    let evidence = tokio::task::spawn_blocking(move || {
        let collector = LasCollector::connect(&url)
            .unwrap()
            .claiming_measurement(vec![0x4d; 48]);
        assert_eq!(collector.source(), SourceKind::Sim);
        collector.collect(&report_data).unwrap()
    })
    .await
    .unwrap();
    let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
    let claims = verifier
        .verify(&evidence.bytes, &ctx)
        .unwrap()
        .into_claims();
    assert_eq!(claims.measurement, vec![0x4d; 48]);
    las.stop().await;

    // A LAS with its own collector (as a hardware one) is never sent the claim: its evidence
    // carries what its TEE measured.
    let las = Las::start(
        EvidenceSource::Collector(Recorded::sgx()),
        CollateralSettings::offline(None),
        Arc::new(las::SystemClock),
    )
    .await;
    let url = las.url.clone();
    let got = tokio::task::spawn_blocking(move || {
        let collector = LasCollector::connect(&url)
            .unwrap()
            .claiming_measurement(vec![0x4d; 48]);
        assert_eq!(collector.source(), SourceKind::Custom);
        collector.collect(&report_data)
    })
    .await
    .unwrap();
    assert!(got.is_ok(), "{got:?}");
    las.stop().await;
}

async fn las_url_of_a_closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

#[test]
fn hardware_mode_needs_a_tee_interface() {
    let root = tempfile::tempdir().unwrap();
    let err = LasConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        EvidenceSource::Hardware {
            root: root.path().to_path_buf(),
        },
        CollateralSettings::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, LasError::NoTee { root: r } if r == root.path()),
        "{err:?}"
    );

    // configfs-tsm present but no provider registered (not a confidential VM): still no TEE.
    std::fs::create_dir_all(root.path().join("sys/kernel/config/tsm/report")).unwrap();
    let err = LasConfig::new(
        "127.0.0.1:0".parse().unwrap(),
        EvidenceSource::Hardware {
            root: root.path().to_path_buf(),
        },
        CollateralSettings::default(),
    )
    .unwrap_err();
    assert!(matches!(&err, LasError::NoTee { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------------------------
// Collateral from the (fake) services

#[rstest]
#[case::sgx(Recorded::sgx(), TcbStatus::ConfigurationAndSwHardeningNeeded)]
#[case::tdx(Recorded::tdx(), TcbStatus::UpToDate)]
#[tokio::test]
async fn dcap_evidence_comes_with_collateral_that_verifies_it(
    #[case] recorded: Arc<Recorded>,
    #[case] status: TcbStatus,
) {
    let fake = FakeServer::start().await;
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let tee = recorded.tee;
    let las = Las::start(EvidenceSource::Collector(recorded), settings(&fake), clock).await;
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    assert_eq!(got.evidence.tee, tee);
    assert!(got.collateral.is_some(), "{:?}", got.collateral_error);
    // The same collateral as the CAS takes it in an attestation request.
    let json = serde_json::to_vec(got.attest_collateral.as_ref().unwrap()).unwrap();
    cloister_attest::dcap::Collateral::from_json(&json).unwrap();
    let claims = verify_at(&got, "2025-07-01T00:00:00Z");
    assert_eq!(claims.tee, tee);
    assert_eq!(claims.tcb_status, status);
    // pckcrl, tcb, qe/identity, root CA CRL.
    assert_eq!(fake.fake.requests(), 4);

    // Cached: a second request asks nothing.
    las.client.evidence(&[1; 64]).await.unwrap();
    assert_eq!(fake.fake.requests(), 4);
}

#[tokio::test]
async fn snp_evidence_comes_with_the_vcek_and_chain_that_verify_it() {
    let fake = FakeServer::start().await;
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let las = Las::start(
        EvidenceSource::Collector(Recorded::snp()),
        settings(&fake),
        clock,
    )
    .await;
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    assert!(got.collateral.is_some(), "{:?}", got.collateral_error);
    let claims = verify_at(&got, "2025-07-01T00:00:00Z");
    // The same collateral as the CAS takes it in an attestation request, by the CAS's parser.
    let cas_form =
        Collateral::from_json(EvidenceKind::Snp, got.attest_collateral.as_ref().unwrap()).unwrap();
    let cas_claims = verify_with(
        cas_form.as_ref().unwrap(),
        &got.evidence.bytes,
        "2025-07-01T00:00:00Z",
    );
    assert_eq!(cas_claims.claims().tee, Tee::SevSnp);
    assert_eq!(claims.tee, Tee::SevSnp);
    assert_eq!(claims.extra["chip_id"], GO_CHIP_ID);
    // The VCEK and the chain, each once.
    assert_eq!(fake.fake.requests(), 2);
}

#[tokio::test]
async fn snp_without_a_known_product_serves_evidence_and_says_why_there_is_no_collateral() {
    let fake = FakeServer::start().await;
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let settings = CollateralSettings {
        amd_product: None,
        ..settings(&fake)
    };
    let las = Las::start(EvidenceSource::Collector(Recorded::snp()), settings, clock).await;
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    assert!(got.collateral.is_none());
    let error = got.collateral_error.unwrap();
    assert_eq!(error.code, "no-collateral-for-evidence");
    assert!(error.message.contains("product"), "{}", error.message);
}

#[tokio::test]
async fn collateral_endpoints_answer_directly() {
    let fake = FakeServer::start().await;
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let (source, _) = sim_source();
    let las = Las::start(source, settings(&fake), clock).await;

    let (collateral, until) = las
        .client
        .dcap_collateral(
            DcapTee::Sgx,
            &[0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            PckCa::Processor,
        )
        .await
        .unwrap();
    assert_eq!(until, SGX_EXPIRY);
    let quote = testdata("sgx-dcap/sgx_quote.bin");
    verify_with(&collateral, &quote, "2025-07-01T00:00:00Z");

    let chip: [u8; 64] = hex::decode(GO_CHIP_ID).unwrap().try_into().unwrap();
    let (collateral, until) = las
        .client
        .snp_collateral(AmdProduct::Milan, &chip, las::SnpTcb(0x4405000000000002))
        .await
        .unwrap();
    assert!(until.starts_with("2029-09-24"), "{until}");
    let report = testdata("sev-snp/go-sev-guest/attestation.bin");
    verify_with(&collateral, &report, "2025-07-01T00:00:00Z");

    // Evidence collected elsewhere: the TDX quote, posted.
    let tdx = testdata("tdx/tdx_quote.bin");
    let collateral = las.client.collateral_for(&tdx).await.unwrap();
    verify_with(&collateral, &tdx, "2025-07-01T00:00:00Z");

    // An unknown chip: KDS says 404, which is no reason to retry.
    let err = las
        .client
        .snp_collateral(AmdProduct::Milan, &[7; 64], las::SnpTcb(0x4405000000000002))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LasError::Refused { status: 503, code, message } if code == "collateral-unavailable" && message.contains("HTTP 404")),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The cache while the service fails

#[rstest]
#[case::too_many_requests(Mode::TooManyRequests, "429")]
#[case::service_unavailable(Mode::Unavailable, "503")]
#[case::connections_closed(Mode::Close, "http://127.0.0.1")]
#[tokio::test]
async fn cached_collateral_carries_attestation_through_a_failing_service(
    #[case] mode: Mode,
    #[case] symptom: &str,
) {
    let fake = FakeServer::start().await;
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let las = Las::start(
        EvidenceSource::Collector(Recorded::sgx()),
        settings(&fake),
        clock.clone(),
    )
    .await;
    let first = las.client.evidence(&[0; 64]).await.unwrap();
    assert!(first.collateral.is_some());

    fake.fake.set_mode(mode);

    // Two days before expiry, inside the 3-day margin: a refresh is tried, fails, and the
    // cached copy is served; the quote still verifies.
    clock.set("2025-07-17T00:00:00Z");
    let before = fake.fake.attempts();
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    assert!(fake.fake.attempts() > before, "a refresh was attempted");
    assert!(got.collateral_error.is_none(), "{:?}", got.collateral_error);
    let claims = verify_at(&got, "2025-07-17T00:00:00Z");
    assert_eq!(
        claims.tcb_status,
        TcbStatus::ConfigurationAndSwHardeningNeeded
    );

    // Backing off: the next requests ask the service nothing.
    let after_failure = fake.fake.attempts();
    for _ in 0..3 {
        let got = las.client.evidence(&[0; 64]).await.unwrap();
        assert!(got.collateral.is_some());
    }
    assert_eq!(
        fake.fake.attempts(),
        after_failure,
        "no request while backing off"
    );

    // After expiry: evidence still, but no collateral, and an error naming the item, the
    // service's failure and when the cached copy expired.
    clock.set("2025-07-20T00:00:00Z");
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    assert!(got.collateral.is_none());
    let error = got.collateral_error.unwrap();
    assert_eq!(error.code, "collateral-unavailable");
    assert!(error.message.contains(SGX_ITEM), "{}", error.message);
    assert!(error.message.contains(symptom), "{}", error.message);
    assert!(
        error.message.contains(&format!("expired at {SGX_EXPIRY}")),
        "{}",
        error.message
    );

    // The collateral endpoint refuses likewise.
    let err = las
        .client
        .dcap_collateral(
            DcapTee::Sgx,
            &[0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            PckCa::Processor,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, LasError::Refused { status: 503, code, .. } if code == "collateral-unavailable"),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Offline bundle and the cache on disk

fn bundle(dir: &Path) {
    let put = |path: &str, from: &str| {
        let to = dir.join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::write(to, testdata(from)).unwrap();
    };
    put(
        "dcap/sgx/00A067110000-processor.json",
        "sgx-dcap/sgx_quote_collateral.json",
    );
    put(
        "dcap/tdx/B0C06F000000-platform.json",
        "tdx/tdx_quote_collateral.json",
    );
    put(
        &format!("snp/Milan/vcek/{GO_CHIP_ID}-4405000000000002.der"),
        "sev-snp/go-sev-guest/vcek.der",
    );
    put(
        "snp/Milan/cert_chain.pem",
        "sev-snp/go-sev-guest/ask_ark_milan.pem",
    );
}

#[rstest]
#[case::sgx(Recorded::sgx())]
#[case::tdx(Recorded::tdx())]
#[case::snp(Recorded::snp())]
#[tokio::test]
async fn an_offline_bundle_needs_no_service_at_all(#[case] recorded: Arc<Recorded>) {
    let dir = tempfile::tempdir().unwrap();
    bundle(dir.path());
    let settings = CollateralSettings {
        amd_product: Some(AmdProduct::Milan),
        refresh: policy(),
        ..CollateralSettings::offline(Some(dir.path().to_path_buf()))
    };
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let las = Las::start(EvidenceSource::Collector(recorded), settings, clock.clone()).await;
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    verify_at(&got, "2025-07-01T00:00:00Z");

    // Past the bundle's validity, the error says so.
    if got.evidence.tee != Tee::SevSnp {
        clock.set("2025-08-01T00:00:00Z");
        let got = las.client.evidence(&[0; 64]).await.unwrap();
        let error = got.collateral_error.unwrap();
        assert!(
            error
                .message
                .contains("offline bundle: its copy is valid only from"),
            "{}",
            error.message
        );
    }
}

#[tokio::test]
async fn the_cache_survives_a_restart_and_a_corrupted_file_is_refetched_atomically() {
    let fake = FakeServer::start().await;
    let cache = tempfile::tempdir().unwrap();
    let clock = ManualClock::at("2025-07-01T00:00:00Z");
    let settings = CollateralSettings {
        cache_dir: Some(cache.path().to_path_buf()),
        ..settings(&fake)
    };
    let start = || {
        Las::start(
            EvidenceSource::Collector(Recorded::sgx()),
            settings.clone(),
            clock.clone(),
        )
    };

    let las = start().await;
    assert!(
        las.client
            .evidence(&[0; 64])
            .await
            .unwrap()
            .collateral
            .is_some()
    );
    las.stop().await;
    assert_eq!(fake.fake.requests(), 4);
    let file = cache
        .path()
        .join("dcap/sgx/00A067110000-processor.json.cache");
    let good = std::fs::read(&file).unwrap();

    // Restarted while the service closes every connection: served from disk, nothing asked.
    fake.fake.set_mode(Mode::Close);
    let attempts = fake.fake.attempts();
    let las = start().await;
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    verify_at(&got, "2025-07-01T00:00:00Z");
    assert_eq!(fake.fake.attempts(), attempts);
    las.stop().await;

    // A corrupted file (a torn write by some other tool) is detected and refetched. The new file
    // replaces the old by rename: a hard link to the old one still sees the corrupted bytes.
    let corrupted = &good[..good.len() / 2];
    std::fs::write(&file, corrupted).unwrap();
    let old = cache.path().join("old-link");
    std::fs::hard_link(&file, &old).unwrap();
    fake.fake.set_mode(Mode::Normal);
    let las = start().await;
    let got = las.client.evidence(&[0; 64]).await.unwrap();
    verify_at(&got, "2025-07-01T00:00:00Z");
    assert_eq!(fake.fake.requests(), 8, "refetched");
    las.stop().await;
    assert_eq!(std::fs::read(&old).unwrap(), corrupted);
    let rewritten = std::fs::read(&file).unwrap();
    assert_ne!(rewritten, corrupted);
    let leftovers: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // And the rewritten file serves the next restart with the service down.
    fake.fake.set_mode(Mode::Unavailable);
    let requests = fake.fake.requests();
    let las = start().await;
    assert!(
        las.client
            .evidence(&[0; 64])
            .await
            .unwrap()
            .collateral
            .is_some()
    );
    assert_eq!(fake.fake.requests(), requests);
    las.stop().await;
}

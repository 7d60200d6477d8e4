//! End-to-end tests of the built `cloister` binary: stdout, stderr and exit codes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

#[path = "cli/attacker.rs"]
mod attacker;
#[path = "cli/audit.rs"]
mod audit;
#[path = "cli/cas.rs"]
mod cas;
#[path = "cli/cas_canary.rs"]
mod cas_canary;
#[path = "cli/cas_crash.rs"]
mod cas_crash;
#[path = "cli/cas_process.rs"]
mod cas_process;
#[path = "cli/custodian.rs"]
mod custodian;
#[path = "cli/job.rs"]
mod job;
#[path = "cli/las_process.rs"]
mod las_process;
#[path = "cli/run.rs"]
mod run;
#[path = "cli/schemathesis.rs"]
mod schemathesis;

use cloister_testkit::cli::{assert_exit, json_of};
use rstest::rstest;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `cloister`, run to completion in `dir`.
fn cloister(args: &[&str], dir: &Path) -> Output {
    cloister_testkit::cli::run(bin(), dir, args, &[])
}

/// The built `cloister` binary.
fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cloister"))
}

/// A CAS on `127.0.0.1:0` trusting the sim platform key `dir/platform.pem`, with `admin` as
/// its admin key and the policies of namespace `ns` importing files from `dir`; its
/// certificate is written to `dir/cas.crt`.
async fn start_cas(
    dir: &Path,
    ns: &str,
    admin: &cloister_policy::OwnerKey,
) -> cloister_testkit::cas::Cas {
    let platform = cloister_attest::sim::PlatformKey::load(dir.join("platform.pem")).unwrap();
    let cas = cloister_testkit::cas::Cas::builder()
        .platform_key(platform)
        .config(|b| b.imports(cloister_cas::ImportRules::none().allow_files(ns, dir)))
        .admin(&cloister_cas::client::RequestSigner::from_owner_key(admin).unwrap())
        .start()
        .await;
    std::fs::write(dir.join("cas.crt"), &cas.cert_pem).unwrap();
    cas
}

/// Flips one bit of `dir/app.bundle`, 40 bytes from its end.
fn tamper_bundle(dir: &Path) {
    let mut bytes = std::fs::read(dir.join("app.bundle")).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x01;
    std::fs::write(dir.join("app.bundle"), bytes).unwrap();
}

/// `cloister package app --out app.bundle --key-file bundle.key` in `dir`, which must succeed
/// (`what` names the step when it does not).
async fn package_app(dir: &Path, what: &str) -> Output {
    let args = [
        "package",
        "app",
        "--out",
        "app.bundle",
        "--key-file",
        "bundle.key",
    ];
    let out = cloister_testkit::cli::run_blocking(bin(), dir, &args, &[]).await;
    cloister_testkit::cli::ok(out, what)
}

/// [`package_app`], then `cloister measure`: the measurement a policy pins.
async fn package_and_measure(dir: &Path) -> String {
    package_app(dir, "package").await;
    let args = ["measure", "--bundle", "app.bundle"];
    let out = cloister_testkit::cli::run_blocking(bin(), dir, &args, &[]).await;
    let out = cloister_testkit::cli::ok(out, "measure");
    cloister_testkit::cli::text(&out.stdout).trim().to_owned()
}

fn testdata(rel: &str) -> String {
    let p: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "../../testdata/tee-evidence",
        rel,
    ]
    .iter()
    .collect();
    p.to_str().expect("utf-8 path").to_string()
}

/// Each recorded sample verifies at a time inside its window, with the values its README states.
#[rstest]
#[case::sgx("sgx-dcap/sgx_quote.bin", &["--collateral", "sgx-dcap/sgx_quote_collateral.json"], "2025-07-01T00:00:00Z",
    "sgx", "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb", "ConfigurationAndSWHardeningNeeded")]
#[case::tdx_v4("tdx/tdx_quote.bin", &["--collateral", "tdx/tdx_quote_collateral.json"], "2025-07-01T00:00:00Z",
    "tdx", "91eb2b44d141d4ece09f0c75c2c53d247a3c68edd7fafe8a3520c942a604a407de03ae6dc5f87f27428b2538873118b7", "UpToDate")]
#[case::snp_go_sev_guest("sev-snp/go-sev-guest/attestation.bin", &["--collateral", "sev-snp/go-sev-guest"], "2025-07-01T00:00:00Z",
    "sev-snp", "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01", "NotReported")]
#[case::snp_virtee("sev-snp/virtee-sev/report_milan.hex", &["--collateral", "sev-snp/virtee-sev/vcek_milan.der", "--collateral", "sev-snp/virtee-sev/cert_chain_milan.pem"], "2025-07-01T00:00:00Z",
    "sev-snp", "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f", "NotReported")]
#[case::maa_sgx("maa-jwt/sgx_token.jwt", &["--collateral", "maa-jwt/sharedeus_certs_jwks.json", "--issuer", "https://sharedeus.eus.attest.azure.net"], "2023-09-26T15:00:00Z",
    "sgx", "f56735aa42563627a832e0c7ba9911382eb68afed75830b3f97266f3e67bdc99", "UpToDate")]
fn verify_each_sample(
    #[case] file: &str,
    #[case] extra: &[&str],
    #[case] at: &str,
    #[case] tee: &str,
    #[case] measurement: &str,
    #[case] tcb: &str,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut args = vec!["evidence".to_string(), "verify".into(), testdata(file)];
    for pair in extra.chunks(2) {
        args.push(pair[0].to_string());
        args.push(if pair[0] == "--collateral" {
            testdata(pair[1])
        } else {
            pair[1].to_string()
        });
    }
    args.extend(["--at".into(), at.into(), "--json".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cloister(&args, dir.path());
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["verified"], true);
    assert_eq!(v["claims"]["tee"], tee);
    assert_eq!(v["claims"]["measurement"], measurement);
    assert_eq!(v["claims"]["tcb_status"], tcb);
}

#[test]
fn sgx_claims_carry_advisories_and_report_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cloister(
        &[
            "evidence",
            "verify",
            &testdata("sgx-dcap/sgx_quote.bin"),
            "--collateral",
            &testdata("sgx-dcap/sgx_quote_collateral.json"),
            "--at",
            "2025-07-01T00:00:00Z",
            "--expect-report-data",
            &hex_of(b"Hello, world!"),
            "--json",
        ],
        dir.path(),
    );
    assert_exit(&out, 0);
    let v = json_of(&out);
    assert_eq!(v["kind"], "sgx");
    assert_eq!(
        v["claims"]["advisory_ids"],
        serde_json::json!(["INTEL-SA-00289", "INTEL-SA-00615"])
    );
    assert_eq!(
        v["claims"]["signer"],
        "815f42f11cf64430c30bab7816ba596a1da0130c3b028b673133a66cf9a3e0e6"
    );
    assert_eq!(v["claims"]["debug"], false);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Refusals exit 1 and say why, in JSON with a stable code.
#[rstest]
#[case::expired(&["evidence", "verify", "@sgx-dcap/sgx_quote.bin", "--collateral", "@sgx-dcap/sgx_quote_collateral.json", "--at", "2030-01-01T00:00:00Z", "--json"], "expired")]
#[case::not_yet_valid(&["evidence", "verify", "@sgx-dcap/sgx_quote.bin", "--collateral", "@sgx-dcap/sgx_quote_collateral.json", "--at", "2020-01-01T00:00:00Z", "--json"], "not-yet-valid")]
#[case::wrong_report_data(&["evidence", "verify", "@sgx-dcap/sgx_quote.bin", "--collateral", "@sgx-dcap/sgx_quote_collateral.json", "--at", "2025-07-01T00:00:00Z", "--expect-report-data", "00ff", "--json"], "report-data-mismatch")]
#[case::tdx_as_sgx(&["evidence", "verify", "@tdx/tdx_quote.bin", "--kind", "sgx", "--collateral", "@tdx/tdx_quote_collateral.json", "--at", "2025-07-01T00:00:00Z", "--json"], "rejected")]
#[case::maa_wrong_issuer(&["evidence", "verify", "@maa-jwt/sgx_token.jwt", "--collateral", "@maa-jwt/sharedeus_certs_jwks.json", "--issuer", "https://evil.example", "--at", "2023-09-26T15:00:00Z", "--json"], "rejected")]
#[case::maa_expired(&["evidence", "verify", "@maa-jwt/sgx_token.jwt", "--collateral", "@maa-jwt/sharedeus_certs_jwks.json", "--issuer", "https://sharedeus.eus.attest.azure.net", "--json"], "expired")]
#[case::tdx_v5_tcb_not_supported(&["evidence", "verify", "@tdx/tdx_quote_outdated.bin", "--collateral", "@tdx/tdx_quote_outdated_collateral.json", "--at", "2026-03-01T00:00:00Z", "--json"], "rejected")]
#[case::snp_wrong_vcek(&["evidence", "verify", "@sev-snp/go-sev-guest/attestation.bin", "--collateral", "@sev-snp/virtee-sev/vcek_milan.der", "--at", "2025-07-01T00:00:00Z", "--json"], "bad-signature")]
#[case::unknown_format(&["evidence", "verify", "@README.md", "--json"], "unknown-format")]
fn refusals_exit_1(#[case] args: &[&str], #[case] code: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let args: Vec<String> = args
        .iter()
        .map(|a| a.strip_prefix('@').map_or(a.to_string(), testdata))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = cloister(&args, dir.path());
    assert_exit(&out, 1);
    let v = json_of(&out);
    assert_eq!(v["verified"], false);
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("cloister: refused: "));
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Missing collateral is the operator's mistake, not a verdict.
    let out = cloister(
        &["evidence", "verify", &testdata("sgx-dcap/sgx_quote.bin")],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--collateral is required"));
    // A missing file too.
    let out = cloister(
        &["evidence", "verify", "no-such-file", "--kind", "sim"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    // And bad arguments.
    let out = cloister(
        &["evidence", "verify", "x", "--at", "yesterday"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
}

/// `sim-keygen` → `sim` → `verify` round trip, and the private key file is private.
#[test]
fn sim_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ok = |args: &[&str]| {
        let out = cloister(args, dir.path());
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    ok(&["evidence", "sim-keygen", "--out", "platform.pem"]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("platform.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "private key readable by others: {mode:o}");
    }
    ok(&[
        "evidence",
        "sim",
        "--key",
        "platform.pem",
        "--measurement",
        "c1c1c1c1",
        "--report-data",
        "0102",
        "--svn",
        "3",
        "--out",
        "ev.json",
    ]);
    let out = ok(&[
        "evidence",
        "verify",
        "ev.json",
        "--collateral",
        "platform.pem.pub",
        "--expect-report-data",
        "0102",
        "--json",
    ]);
    let v = json_of(&out);
    assert_eq!(v["kind"], "sim");
    assert_eq!(v["claims"]["tee"], "sim");
    assert_eq!(v["claims"]["measurement"], "c1c1c1c1");
    assert_eq!(v["claims"]["svn"], 3);

    // Another platform key does not vouch for it.
    ok(&["evidence", "sim-keygen", "--out", "other.pem"]);
    let out = cloister(
        &[
            "evidence",
            "verify",
            "ev.json",
            "--collateral",
            "other.pem.pub",
            "--json",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn help_teaches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = cloister(&["evidence", "verify", "--help"], dir.path());
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Example"), "{help}");
    assert!(help.contains("--collateral"));
    // Lists and examples keep their lines (clap would otherwise reflow them into one paragraph).
    assert!(
        help.contains("\n  sim       the simulated platform's public key (PEM)\n"),
        "{help}"
    );
}

/// `cloister demo|bench|gen` hand the command line to `cloister-demo` next to the executable
/// (the demos are not in the measured workload), unchanged, flags and `--help` included.
#[cfg(unix)]
#[test]
fn demo_bench_and_gen_run_the_sibling_cloister_demo() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = dir.path().join("cloister");
    std::fs::copy(env!("CARGO_BIN_EXE_cloister"), &exe).expect("copy cloister");
    let run = |args: &[&str]| {
        Command::new(&exe)
            .args(args)
            .current_dir(dir.path())
            .env("PATH", "")
            .output()
            .expect("run cloister")
    };

    // Without it: a clear error that says how to build it, exit 2.
    let out = run(&["demo", "--rows", "10"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cloister-demo") && stderr.contains("cargo build -p cloister-demo"),
        "{stderr}"
    );

    // With it: every argument reaches it, in order; its exit code is cloister's.
    let demo = dir.path().join("cloister-demo");
    std::fs::write(&demo, "#!/bin/sh\necho \"$*\"\nexit 3\n").expect("write stub");
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for args in [
        &["demo", "--rows", "10", "--json"][..],
        &["-q", "bench", "taxi", "--help"][..],
        &["gen", "taxi", "--out", "d"][..],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{}\n", args.join(" "))
        );
    }
    // Other commands stay here.
    let out = run(&["keys", "--help"]);
    assert_eq!(out.status.code(), Some(0));
}

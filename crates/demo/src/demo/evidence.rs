//! `cloister demo evidence`: the evidence demo — every bundled real sample verified, tampered copies
//! refused, and a `sim` TEE round trip bound to a nonce and a workload key.

use crate::{EXIT_REFUSED, output};
use cloister_attest::{
    Claims, Context, Error, Verifier, binding,
    collect::{Collector, SimCollector},
    dcap, maa, sim, snp,
};
use serde::Serialize;
use std::process::ExitCode;
use std::time::SystemTime;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON (one object per sample) instead of a table.
    #[arg(long)]
    json: bool,
}

macro_rules! sample {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/tee-evidence/",
            $path
        ))
        .as_slice()
    };
}

/// One recorded sample, the material to verify it, and the time inside its validity window.
struct Sample {
    name: &'static str,
    evidence: &'static [u8],
    at: &'static str,
    /// Whether the untouched sample must verify.
    valid: bool,
    verifier: fn() -> Result<Box<dyn Verifier>, Error>,
}

const MAA_ISSUER: &str = "https://sharedeus.eus.attest.azure.net";

fn samples() -> Vec<Sample> {
    vec![
        Sample {
            name: "sgx-dcap/sgx_quote.bin",
            evidence: sample!("sgx-dcap/sgx_quote.bin"),
            at: "2025-07-01T00:00:00Z",
            valid: true,
            verifier: || {
                let c = dcap::Collateral::from_json(sample!("sgx-dcap/sgx_quote_collateral.json"))?;
                Ok(Box::new(dcap::DcapVerifier::new(c)))
            },
        },
        Sample {
            name: "tdx/tdx_quote.bin (v4)",
            evidence: sample!("tdx/tdx_quote.bin"),
            at: "2025-07-01T00:00:00Z",
            valid: true,
            verifier: || {
                let c = dcap::Collateral::from_json(sample!("tdx/tdx_quote_collateral.json"))?;
                Ok(Box::new(dcap::DcapVerifier::new(c)))
            },
        },
        Sample {
            // Its signatures and chain verify, but its PCK certificate's TCB (CPUSVN[7] = 3) is
            // below every TCB level of its collateral (all need 5): Intel's verifier calls this
            // "TCB not supported", and so do we.
            name: "tdx/tdx_quote_outdated.bin (v5, TCB below every level)",
            evidence: sample!("tdx/tdx_quote_outdated.bin"),
            at: "2026-03-01T00:00:00Z",
            valid: false,
            verifier: || {
                let c =
                    dcap::Collateral::from_json(sample!("tdx/tdx_quote_outdated_collateral.json"))?;
                Ok(Box::new(dcap::DcapVerifier::new(c)))
            },
        },
        Sample {
            name: "sev-snp/go-sev-guest/attestation.bin",
            evidence: sample!("sev-snp/go-sev-guest/attestation.bin"),
            at: "2025-07-01T00:00:00Z",
            valid: true,
            verifier: || {
                Ok(Box::new(snp::SnpVerifier::new(
                    sample!("sev-snp/go-sev-guest/vcek.der").to_vec(),
                    Some(sample!("sev-snp/go-sev-guest/ask_ark_milan.pem").to_vec()),
                )?))
            },
        },
        Sample {
            name: "sev-snp/virtee-sev/report_milan.hex",
            evidence: sample!("sev-snp/virtee-sev/report_milan.hex"),
            at: "2025-07-01T00:00:00Z",
            valid: true,
            verifier: || {
                Ok(Box::new(snp::SnpVerifier::new(
                    sample!("sev-snp/virtee-sev/vcek_milan.der").to_vec(),
                    Some(sample!("sev-snp/virtee-sev/cert_chain_milan.pem").to_vec()),
                )?))
            },
        },
        Sample {
            name: "maa-jwt/sgx_token.jwt",
            evidence: sample!("maa-jwt/sgx_token.jwt"),
            at: "2023-09-26T15:00:00Z",
            valid: true,
            verifier: || {
                Ok(Box::new(maa::MaaVerifier::new(
                    sample!("maa-jwt/sharedeus_certs_jwks.json"),
                    MAA_ISSUER,
                )?))
            },
        },
    ]
}

#[derive(Serialize)]
struct Row {
    sample: String,
    verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    claims: Option<Claims>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Whether the result is the expected one (tampered copies must be refused).
    as_expected: bool,
}

fn check(
    name: String,
    verifier: &dyn Verifier,
    evidence: &[u8],
    ctx: &Context,
    want_ok: bool,
) -> Row {
    match verifier.verify(evidence, ctx) {
        Ok(v) => Row {
            sample: name,
            verified: true,
            claims: Some(v.into_claims()),
            error: None,
            as_expected: want_ok,
        },
        Err(e) => Row {
            sample: name,
            verified: false,
            claims: None,
            error: Some(e.to_string()),
            as_expected: !want_ok,
        },
    }
}

pub fn run(args: Args, _quiet: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for s in samples() {
        let at = humantime::parse_rfc3339(s.at)?;
        let ctx = Context::new(at);
        let verifier = (s.verifier)()?;
        rows.push(check(
            s.name.to_string(),
            verifier.as_ref(),
            s.evidence,
            &ctx,
            s.valid,
        ));
        // The same evidence with one bit flipped in its middle must be refused.
        let mut tampered = s.evidence.to_vec();
        let mid = tampered.len() / 2;
        tampered[mid] ^= 0x01;
        rows.push(check(
            format!("{} (1 bit flipped)", s.name),
            verifier.as_ref(),
            &tampered,
            &ctx,
            false,
        ));
        // And so must the untouched evidence a year after its window.
        let late = Context::new(at + std::time::Duration::from_secs(5 * 365 * 86_400));
        rows.push(check(
            format!("{} (+5 years)", s.name),
            verifier.as_ref(),
            s.evidence,
            &late,
            false,
        ));
    }
    rows.extend(sim_round_trip()?);

    if args.json {
        output::json(&rows)?;
    } else {
        print_tables(&rows)?;
    }
    if rows.iter().all(|r| r.as_expected) {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("cloister: some samples did not give the expected verdict");
        Ok(ExitCode::from(EXIT_REFUSED))
    }
}

/// Verified evidence with its claims, then every refusal with its reason.
fn print_tables(rows: &[Row]) -> anyhow::Result<()> {
    let mark = |r: &Row| if r.as_expected { "" } else { " (UNEXPECTED)" };
    let mut verified = output::table(&[
        "verified",
        "tee",
        "measurement",
        "tcb",
        "advisories",
        "debug",
    ]);
    let mut refused = output::table(&["refused", "reason"]);
    for r in rows {
        match (&r.claims, &r.error) {
            (Some(c), _) => verified.add_row(vec![
                format!("{}{}", r.sample, mark(r)),
                c.tee.to_string(),
                output::short_hex(&c.measurement, 16),
                c.tcb_status.to_string(),
                c.advisory_ids.join(" "),
                c.debug.to_string(),
            ]),
            (None, error) => refused.add_row(vec![
                format!("{}{}", r.sample, mark(r)),
                error.clone().unwrap_or_default(),
            ]),
        };
    }
    output::print_table(&verified)?;
    output::print_table(&refused)
}

/// A `sim` workload binds a CAS nonce and its key into evidence; the verifier accepts it with
/// the right nonce and refuses it with another.
fn sim_round_trip() -> anyhow::Result<Vec<Row>> {
    let platform = sim::PlatformKey::generate();
    let workload_key = sim::PlatformKey::generate().public_key();
    let nonce = b"nonce issued by CAS";
    let report_data = binding::report_data(nonce, workload_key.spki_der());
    let collector = SimCollector::new(
        platform,
        sim::Statement {
            measurement: vec![0xc1; 32],
            svn: 1,
            ..Default::default()
        },
    );
    let evidence = collector.collect(&report_data)?;
    let verifier = sim::SimVerifier::new([collector.public_key()]);
    let now = SystemTime::now();
    let good = Context::new(now).expect_report_data(report_data);
    let other = binding::report_data(b"another nonce", workload_key.spki_der());
    let replayed = Context::new(now).expect_report_data(other);
    Ok(vec![
        check(
            "sim: bound to nonce and key".into(),
            &verifier,
            &evidence.bytes,
            &good,
            true,
        ),
        check(
            "sim: replayed for another nonce".into(),
            &verifier,
            &evidence.bytes,
            &replayed,
            false,
        ),
    ])
}

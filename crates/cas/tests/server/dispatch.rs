//! The CAS verifies through `cloister_attest::Verifiers`: what came with the evidence is refused
//! by the rule `collateral`, the evidence itself by `evidence`, each with its typed reason.

use cloister_attest::EvidenceKind;
use cloister_cas::envelope::WorkloadKey;
use rstest::rstest;

use super::{Cas, api_err, app_policy, request_with};

#[rstest]
#[case::dcap_without_collateral(
    Some(EvidenceKind::Sgx),
    None,
    "collateral",
    "collateral: DCAP evidence needs the platform's collateral"
)]
#[case::snp_without_collateral(
    Some(EvidenceKind::Snp),
    None,
    "collateral",
    "collateral: SEV-SNP evidence needs the VCEK certificate"
)]
#[case::snp_collateral_not_base64(
    Some(EvidenceKind::Snp),
    Some(serde_json::json!({ "vcek": "%%%" })),
    "collateral",
    "collateral: SEV-SNP collateral is malformed: vcek is neither PEM nor base64"
)]
#[case::snp_collateral_of_another_shape(
    Some(EvidenceKind::Snp),
    Some(serde_json::json!({ "certificate": "AAAA" })),
    "collateral",
    "collateral: SEV-SNP collateral is malformed"
)]
#[case::dcap_collateral_not_dcap(
    Some(EvidenceKind::Tdx),
    Some(serde_json::json!({ "tcb_info": 1 })),
    "collateral",
    "collateral: DCAP collateral JSON is malformed"
)]
#[case::maa_without_a_trusted_issuer(
    Some(EvidenceKind::Maa),
    None,
    "evidence",
    "evidence: maa evidence is not accepted: no Azure Attestation issuer is trusted"
)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_evidence_and_collateral_name_their_rule(
    #[case] kind: Option<EvidenceKind>,
    #[case] collateral: Option<serde_json::Value>,
    #[case] rule: &str,
    #[case] detail: &str,
) {
    let cas = Cas::start().await;
    let yaml = app_policy("test/app", 1, None, "sim", &[1], 1);
    cas.push(&yaml).await;
    let key = WorkloadKey::generate().unwrap();
    let collector = cas.collector(Cas::good_statement());
    let mut req = request_with(&cas, "test/app", &collector, &key, &key).await;
    req.kind = kind;
    req.collateral = collateral;
    let err = api_err(cas.client.attest(&req, &key).await);
    assert_eq!(err.code, "attestation-refused", "{}", err.text());
    assert_eq!(err.rules, [rule], "{}", err.text());
    assert!(
        err.reasons.iter().any(|r| r.starts_with(detail)),
        "no `{detail}` in {}",
        err.text()
    );
}

/// `api::SnpCollateral` is only the OpenAPI schema of SEV-SNP collateral; `cloister-attest`
/// parses it. The two must describe the same JSON: what the schema serialises, the parser takes
/// (with and without the chain, the VCEK as base64 or PEM), and what the schema refuses (another
/// field), the parser refuses too.
#[test]
fn the_snp_collateral_schema_is_what_attest_parses() {
    use base64::Engine as _;
    use cloister_attest::{Collateral, Context, Tee, Verifiers};
    use cloister_cas::api::SnpCollateral;

    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest"
    );
    let read = |file: &str| std::fs::read(format!("{dir}/{file}")).unwrap();
    let vcek_der = read("vcek.der");
    let vcek_pem = pem::encode(&pem::Pem::new("CERTIFICATE", vcek_der.clone()));
    let chain = String::from_utf8(read("ask_ark_milan.pem")).unwrap();
    let report = read("attestation.bin");
    let ctx = Context::new(humantime::parse_rfc3339("2025-07-01T00:00:00Z").unwrap());

    for schema in [
        SnpCollateral {
            vcek: base64::engine::general_purpose::STANDARD.encode(&vcek_der),
            chain: Some(chain.clone()),
        },
        SnpCollateral {
            vcek: vcek_pem,
            chain: None,
        },
    ] {
        let json = serde_json::to_value(&schema).unwrap();
        let collateral = Collateral::from_json(EvidenceKind::Snp, &json)
            .unwrap()
            .expect("SEV-SNP takes collateral");
        let verified = Verifiers::new()
            .verify(&report, None, Some(&collateral), &ctx)
            .unwrap();
        assert_eq!(verified.claims().tee, Tee::SevSnp);
        // And back: what the parser took is what the schema describes.
        assert_eq!(
            serde_json::from_value::<SnpCollateral>(json).unwrap(),
            schema
        );
    }

    let other_field = serde_json::json!({ "vcek": "AAAA", "certificate": "AAAA" });
    assert!(serde_json::from_value::<SnpCollateral>(other_field.clone()).is_err());
    assert!(Collateral::from_json(EvidenceKind::Snp, &other_field).is_err());
}

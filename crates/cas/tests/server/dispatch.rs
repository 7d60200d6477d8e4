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

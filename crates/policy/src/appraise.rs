//! Appraisal: do verified claims satisfy a service of the policy? Deny by default.

use crate::doc::Tolerate;
use crate::model::{AttestationVariant, Pin, Policy, Security, Service};
use cloister_attest::{Claims, TcbStatus, Tee};
use std::fmt;

/// Why claims were refused: every violated rule, as `path: what`, in a stable order (platform
/// rules, then each attestation variant, then the Rego rule).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The service the claims were presented for.
    pub service: String,
    /// One line per violated rule, e.g. `security.tolerate: debug not tolerated`.
    pub reasons: Vec<String>,
}

impl Refusal {
    /// Whether any reason contains `needle` (for tests and callers that branch on a rule).
    pub fn mentions(&self, needle: &str) -> bool {
        self.reasons.iter().any(|r| r.contains(needle))
    }

    /// The id of each violated rule ([`rule_id`]), in order, without repeats: what may be shown
    /// to a caller who is not an owner of the policy.
    pub fn rules(&self) -> Vec<String> {
        let mut rules: Vec<String> = Vec::new();
        for r in &self.reasons {
            let id = rule_id(r);
            if !rules.contains(&id) {
                rules.push(id);
            }
        }
        rules
    }
}

/// The longest rule id [`rule_id`] returns.
pub const MAX_RULE_ID_LEN: usize = 160;

/// The id of the rule a reason `rule.path: detail` names, without the detail: the path
/// (`security.tees`, `security.rego`, `services[driver].attestation[0]`, …), refined for an
/// attestation variant by what failed in it (`….measurement`, `….signer`, `….tee`,
/// `….product_id`, `….svn`, `….extra`). The detail may hold the policy's pinned values; the id
/// never does. A reason that is not in this form gives `policy`.
///
/// ```
/// use cloister_policy::rule_id;
/// assert_eq!(rule_id("security.tees: sim not accepted"), "security.tees");
/// assert_eq!(
///     rule_id("services[job].attestation[1]: signer 51 is not 52"),
///     "services[job].attestation[1].signer"
/// );
/// assert_eq!(rule_id("no form at all, or a hostile one"), "policy");
/// ```
pub fn rule_id(reason: &str) -> String {
    let (path, detail) = reason.split_once(": ").unwrap_or((reason, ""));
    let safe = |s: &str| {
        !s.is_empty()
            && s.len() <= MAX_RULE_ID_LEN - ".product_id".len()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'[' | b']'))
    };
    if !safe(path) {
        return "policy".to_owned();
    }
    let variant =
        path.starts_with("services[") && path.ends_with(']') && path.contains("].attestation[");
    let aspect = |d: &str| {
        let starts = |p: &str| d.starts_with(p);
        if starts("measurement ") {
            Some("measurement")
        } else if starts("signer ") || d == "the evidence names no signer" {
            Some("signer")
        } else if starts("tee ") {
            Some("tee")
        } else if starts("product id ") || d == "the evidence names no product id" {
            Some("product_id")
        } else if starts("svn ") || d == "the evidence names no svn" {
            Some("svn")
        } else if starts("claim ") || starts("the evidence has no claim ") {
            Some("extra")
        } else {
            None
        }
    };
    match (variant, aspect(detail)) {
        (true, Some(a)) => format!("{path}.{a}"),
        _ => path.to_owned(),
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "attestation for service `{}` refused: {}",
            self.service,
            self.reasons.join("; ")
        )
    }
}

impl std::error::Error for Refusal {}

/// The tolerations a TCB status needs; `UpToDate` and `NotReported` need none (SEV-SNP reports
/// carry no vendor status: their TCB is appraised against `min_tcb` instead, see [`snp_reasons`]).
fn needed(status: TcbStatus) -> &'static [Tolerate] {
    match status {
        TcbStatus::UpToDate | TcbStatus::NotReported => &[],
        TcbStatus::SwHardeningNeeded => &[Tolerate::SwHardeningNeeded],
        TcbStatus::ConfigurationNeeded => &[Tolerate::ConfigurationNeeded],
        TcbStatus::ConfigurationAndSwHardeningNeeded => {
            &[Tolerate::ConfigurationNeeded, Tolerate::SwHardeningNeeded]
        }
        TcbStatus::OutOfDate => &[Tolerate::OutdatedTcb],
        TcbStatus::OutOfDateConfigurationNeeded => {
            &[Tolerate::OutdatedTcb, Tolerate::ConfigurationNeeded]
        }
    }
}

impl Policy {
    /// Appraise verified `claims` presented for `service`: the service's configuration if every
    /// rule holds, otherwise a [`Refusal`] listing every violated rule.
    ///
    /// Rules: the TEE kind is in `security.tees` (`sim` only when listed); debug mode only when
    /// `debug` is tolerated; a TCB status other than `UpToDate`/`NotReported` only when its
    /// toleration is listed; every advisory is ignored explicitly; SEV-SNP: the reported TCB
    /// at or above `min_tcb` (unless `snp-any-tcb`), the VMPL at most `max_vmpl` (default 0),
    /// no migration agent unless `snp-migration-agent`; SGX / TDX: collateral not older than
    /// `min_tcb_evaluation_data_number` when set; at least one attestation
    /// variant of the service matches (all its pins and extra claims); the Rego rule, if any,
    /// denies nothing. Every check runs, so the refusal is complete.
    pub fn appraise(&self, service: &str, claims: &Claims) -> Result<&Service, Refusal> {
        let refuse = |reasons| Refusal {
            service: service.to_owned(),
            reasons,
        };
        let Some(svc) = self.service(service) else {
            return Err(refuse(vec![format!(
                "services: policy `{}` has no service `{service}`",
                self.name()
            )]));
        };
        let sec = self.security();
        let mut reasons = Vec::new();

        if !sec.tees.contains(&claims.tee) {
            reasons.push(format!("security.tees: {} not accepted", claims.tee));
        }
        if claims.debug && !sec.tolerate.contains(&Tolerate::Debug) {
            reasons.push("security.tolerate: debug not tolerated".to_owned());
        }
        let missing: Vec<&str> = needed(claims.tcb_status)
            .iter()
            .filter(|t| !sec.tolerate.contains(t))
            .map(|t| t.as_str())
            .collect();
        if !missing.is_empty() {
            reasons.push(format!(
                "security.tolerate: tcb {} not tolerated (needs {})",
                claims.tcb_status,
                missing.join(", ")
            ));
        }
        for id in &claims.advisory_ids {
            if !sec.ignore_advisories.ignores(id) {
                reasons.push(format!("security.ignore_advisories: {id} not ignored"));
            }
        }
        match claims.tee {
            Tee::SevSnp => snp_reasons(sec, claims, &mut reasons),
            Tee::Sgx | Tee::Tdx => dcap_reasons(sec, claims, &mut reasons),
            Tee::Sim => {}
        }

        let failures: Vec<Vec<String>> = svc
            .attestation
            .iter()
            .map(|v| variant_failures(v, claims))
            .collect();
        if !failures.iter().any(Vec::is_empty) {
            for (j, fs) in failures.iter().enumerate() {
                for f in fs {
                    reasons.push(format!("services[{}].attestation[{j}]: {f}", svc.name));
                }
            }
            if failures.is_empty() {
                reasons.push(format!("services[{}].attestation: no variant", svc.name));
            }
        }

        if let Some(rule) = &sec.rego {
            match rule.deny(claims, &svc.name) {
                Ok(messages) => {
                    reasons.extend(messages.into_iter().map(|m| format!("security.rego: {m}")))
                }
                Err(e) => reasons.push(format!("security.rego: evaluation failed: {e}")),
            }
        }

        if reasons.is_empty() {
            Ok(svc)
        } else {
            Err(refuse(reasons))
        }
    }
}

/// SEV-SNP: the reported TCB at or above `min_tcb` in every component (unless `snp-any-tcb`),
/// the VMPL at most `max_vmpl`, and no migration agent unless `snp-migration-agent`. Evidence
/// without the typed details is refused: nothing is assumed about what it does not say.
fn snp_reasons(sec: &Security, claims: &Claims, reasons: &mut Vec<String>) {
    let any_tcb = sec.tolerate.contains(&Tolerate::SnpAnyTcb);
    let Some(snp) = &claims.snp else {
        if !any_tcb {
            reasons.push("security.min_tcb: the evidence reports no TCB".to_owned());
        }
        reasons.push("security.max_vmpl: the evidence reports no VMPL".to_owned());
        return;
    };
    if !any_tcb {
        match &sec.min_tcb {
            None => reasons.push("security.min_tcb: no TCB floor for sev-snp".to_owned()),
            Some(min) => {
                let got = snp.reported_tcb;
                for (name, got, min) in [
                    ("bootloader", got.bootloader, min.bootloader),
                    ("tee", got.tee, min.tee),
                    ("snp", got.snp, min.snp),
                    ("microcode", got.microcode, min.microcode),
                ] {
                    if got < min {
                        reasons.push(format!(
                            "security.min_tcb: {name} component {got} below {min}"
                        ));
                    }
                }
            }
        }
    }
    if snp.vmpl > sec.max_vmpl {
        reasons.push(format!(
            "security.max_vmpl: vmpl {} above {}",
            snp.vmpl, sec.max_vmpl
        ));
    }
    if snp.policy.migrate_ma && !sec.tolerate.contains(&Tolerate::SnpMigrationAgent) {
        reasons.push("security.tolerate: snp-migration-agent not tolerated".to_owned());
    }
}

/// SGX / TDX: collateral at least as recent as `min_tcb_evaluation_data_number`, for both the
/// TCB info and the QE identity.
fn dcap_reasons(sec: &Security, claims: &Claims, reasons: &mut Vec<String>) {
    let Some(min) = sec.min_tcb_evaluation_data_number else {
        return;
    };
    let rule = "security.min_tcb_evaluation_data_number";
    let Some(dcap) = &claims.dcap else {
        reasons.push(format!(
            "{rule}: the evidence reports no tcbEvaluationDataNumber"
        ));
        return;
    };
    for (what, got) in [
        ("tcb info", dcap.tcb_evaluation_data_number),
        ("qe identity", dcap.qe_tcb_evaluation_data_number),
    ] {
        if got < min {
            reasons.push(format!("{rule}: {what} {got} below {min}"));
        }
    }
}

/// Why `claims` do not match `variant` (empty: they match).
fn variant_failures(variant: &AttestationVariant, claims: &Claims) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(tee) = variant.tee
        && tee != claims.tee
    {
        failures.push(format!("tee {} is not {tee}", claims.tee));
    }
    match &variant.pin {
        Pin::Measurements(pinned) => {
            if !pinned.contains(&claims.measurement) {
                failures.push(format!(
                    "measurement {} not pinned",
                    hex::encode(&claims.measurement)
                ));
            }
        }
        Pin::Signer {
            signer,
            product_id,
            svn,
        } => {
            match &claims.signer {
                None => failures.push("the evidence names no signer".to_owned()),
                Some(s) if s != signer => {
                    failures.push(format!(
                        "signer {} is not {}",
                        hex::encode(s),
                        hex::encode(signer)
                    ));
                }
                Some(_) => {}
            }
            if let Some(want) = product_id {
                match claims.product_id {
                    Some(got) if got == *want => {}
                    Some(got) => failures.push(format!("product id {got} is not {want}")),
                    None => failures.push("the evidence names no product id".to_owned()),
                }
            }
            if svn.min.is_some() || svn.max.is_some() {
                match claims.svn {
                    Some(got) if svn.contains(got) => {}
                    Some(got) => failures.push(format!("svn {got} not in {svn}")),
                    None => failures.push("the evidence names no svn".to_owned()),
                }
            }
        }
    }
    for (name, want) in &variant.extra {
        match claims.extra.get(name) {
            Some(got) if got.to_ascii_lowercase() == *want => {}
            Some(got) => failures.push(format!("claim {name} is {got}, not {want}")),
            None => failures.push(format!("the evidence has no claim {name}")),
        }
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{MEASUREMENT, public_b64, sim_claims};
    use cloister_attest::{DcapDetails, EvidenceFormat, SnpDetails, SnpGuestPolicy, SnpTcb};
    use rstest::rstest;

    const SIGNER: &str = "5151515151515151515151515151515151515151515151515151515151515151";
    const DIGEST: &str = "0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d";

    fn policy(tees: &str) -> Policy {
        let mut yaml = format!(
            "name: test/appraise\nversion: 1\naccess:\n  owners:\n    - name: a\n      key: {}\n\
             security:\n  tees: {tees}\n  tolerate: [sw-hardening-needed]\n  ignore_advisories: [INTEL-SA-00615]\n",
            public_b64(1)
        );
        if cfg!(feature = "rego") {
            yaml.push_str(
                "  rego: |\n    package cloister\n    deny contains \"svn 13 is revoked\" if { input.claims.svn == 13 }\n",
            );
        }
        yaml.push_str(&format!(
            "services:\n  - name: driver\n    attestation:\n      - measurements: [{MEASUREMENT}]\n      \
             - tee: sgx\n        signer: {SIGNER}\n        product_id: 7\n        svn: {{min: 3, max: 20}}\n    \
             env:\n      CLOISTER_BUNDLE_DIGEST: {DIGEST}\n"
        ));
        Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}"))
    }

    fn sgx_signed(c: &mut Claims) {
        c.tee = Tee::Sgx;
        c.format = EvidenceFormat::DcapQuote;
        c.measurement = vec![0x42; 32];
        c.signer = Some(hex::decode(SIGNER).unwrap());
        c.product_id = Some(7);
        c.svn = Some(5);
    }

    #[rstest]
    #[case::sim_matches("[sgx, sim]", |_: &mut Claims| {}, &[])]
    #[case::wrong_measurement("[sgx, sim]", |c: &mut Claims| c.measurement = vec![0xbb; 32], &[
        "services[driver].attestation[0]: measurement bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb not pinned",
        "services[driver].attestation[1]: tee sim is not sgx",
    ])]
    #[case::sim_not_accepted("[sgx]", |_: &mut Claims| {}, &["security.tees: sim not accepted"])]
    #[case::debug_not_tolerated("[sim]", |c: &mut Claims| c.debug = true, &["security.tolerate: debug not tolerated"])]
    #[case::out_of_date_not_tolerated("[sim]", |c: &mut Claims| c.tcb_status = TcbStatus::OutOfDate, &[
        "security.tolerate: tcb OutOfDate not tolerated (needs outdated-tcb)",
    ])]
    #[case::sw_hardening_tolerated("[sim]", |c: &mut Claims| c.tcb_status = TcbStatus::SwHardeningNeeded, &[])]
    #[case::configuration_not_tolerated("[sim]", |c: &mut Claims| c.tcb_status = TcbStatus::ConfigurationAndSwHardeningNeeded, &[
        "security.tolerate: tcb ConfigurationAndSWHardeningNeeded not tolerated (needs configuration-needed)",
    ])]
    #[case::not_reported_passes("[sim]", |c: &mut Claims| c.tcb_status = TcbStatus::NotReported, &[])]
    #[case::advisory_ignored("[sim]", |c: &mut Claims| c.advisory_ids = vec!["INTEL-SA-00615".into()], &[])]
    #[case::advisory_not_ignored("[sim]", |c: &mut Claims| c.advisory_ids = vec!["INTEL-SA-00615".into(), "INTEL-SA-00999".into()], &[
        "security.ignore_advisories: INTEL-SA-00999 not ignored",
    ])]
    #[case::signer_variant_passes("[sgx]", sgx_signed as fn(&mut Claims), &[])]
    #[case::signer_svn_below_range("[sgx]", |c: &mut Claims| { sgx_signed(c); c.svn = Some(2) }, &[
        "services[driver].attestation[1]: svn 2 not in 3..=20",
    ])]
    #[case::signer_svn_above_range("[sgx]", |c: &mut Claims| { sgx_signed(c); c.svn = Some(21) }, &[
        "services[driver].attestation[1]: svn 21 not in 3..=20",
    ])]
    #[case::signer_wrong_product("[sgx]", |c: &mut Claims| { sgx_signed(c); c.product_id = Some(8) }, &[
        "services[driver].attestation[1]: product id 8 is not 7",
    ])]
    #[case::signer_wrong_key("[sgx]", |c: &mut Claims| { sgx_signed(c); c.signer = Some(vec![0x52; 32]) }, &[
        "services[driver].attestation[1]: signer 5252525252525252525252525252525252525252525252525252525252525252 is not 5151515151515151515151515151515151515151515151515151515151515151",
    ])]
    #[case::signer_without_svn("[sgx]", |c: &mut Claims| { sgx_signed(c); c.svn = None }, &[
        "services[driver].attestation[1]: the evidence names no svn",
    ])]
    #[case::signer_variant_is_sgx_only("[sgx, sim]", |c: &mut Claims| { sgx_signed(c); c.tee = Tee::Sim }, &[
        "services[driver].attestation[1]: tee sim is not sgx",
    ])]
    fn appraisal(#[case] tees: &str, #[case] edit: fn(&mut Claims), #[case] expected: &[&str]) {
        let policy = policy(tees);
        let mut claims = sim_claims();
        edit(&mut claims);
        match policy.appraise("driver", &claims) {
            Ok(service) => {
                assert!(expected.is_empty(), "accepted, expected {expected:?}");
                assert_eq!(service.name, "driver");
            }
            Err(refusal) => {
                assert!(!expected.is_empty(), "refused: {refusal}");
                for reason in expected {
                    assert!(
                        refusal.reasons.iter().any(|r| r == reason),
                        "`{reason}` not in {refusal:#?}"
                    );
                }
                // Platform reasons are exactly the expected ones; variant reasons include the
                // expected ones (every failing variant reports all its mismatches).
                let is_variant = |r: &&str| r.starts_with("services[driver].attestation");
                let platform: Vec<&str> = refusal
                    .reasons
                    .iter()
                    .map(String::as_str)
                    .filter(|r| !is_variant(r))
                    .collect();
                let expected_platform: Vec<&str> = expected
                    .iter()
                    .copied()
                    .filter(|r| !is_variant(r))
                    .collect();
                assert_eq!(platform, expected_platform, "{refusal:#?}");
                if expected.iter().all(|r| !is_variant(r)) {
                    assert!(
                        refusal.reasons.iter().all(|r| !is_variant(&r.as_str())),
                        "{refusal:#?}"
                    );
                }
            }
        }
    }

    /// A hardware policy: SEV-SNP, SGX and TDX, with `security` appended to its security section
    /// (which must hold the SEV-SNP floor or its toleration).
    fn hardware_policy(security: &str) -> Policy {
        let yaml = format!(
            "name: test/hardware\nversion: 1\naccess:\n  owners:\n    - name: a\n      key: {}\n\
             security:\n  tees: [sev-snp, sgx, tdx]\n{security}services:\n  - name: driver\n    \
             attestation:\n      - measurements: [{MEASUREMENT}]\n    env:\n      \
             CLOISTER_BUNDLE_DIGEST: {DIGEST}\n",
            public_b64(1)
        );
        Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}\n{yaml}"))
    }

    /// The platform the SEV-SNP cases start from: TCB bl=3 tee=1 snp=8 ucode=115, VMPL 0,
    /// guest policy 0x30000 (SMT allowed, the reserved bit 17, nothing risky).
    fn snp_claims() -> Claims {
        let mut c = sim_claims();
        c.tee = Tee::SevSnp;
        c.format = EvidenceFormat::SnpReport;
        c.tcb_status = TcbStatus::NotReported;
        c.snp = Some(SnpDetails::new(
            SnpTcb::new(3, 1, 8, 115),
            0,
            SnpGuestPolicy::from_raw(0x30000),
        ));
        c
    }

    fn snp(c: &mut Claims) -> &mut SnpDetails {
        c.snp.as_mut().unwrap()
    }

    /// The floor every SEV-SNP case uses unless it says otherwise: exactly the start platform.
    const FLOOR: &str = "  min_tcb: {bootloader: 3, tee: 1, snp: 8, microcode: 115}\n";

    #[rstest]
    #[case::at_the_floor(FLOOR, |_: &mut Claims| {}, &[])]
    #[case::above_the_floor(FLOOR, |c: &mut Claims| snp(c).reported_tcb = SnpTcb::new(4, 2, 9, 116), &[])]
    #[case::bootloader_below(FLOOR, |c: &mut Claims| snp(c).reported_tcb.bootloader = 2, &[
        "security.min_tcb: bootloader component 2 below 3",
    ])]
    #[case::tee_below(FLOOR, |c: &mut Claims| snp(c).reported_tcb.tee = 0, &[
        "security.min_tcb: tee component 0 below 1",
    ])]
    #[case::snp_below(FLOOR, |c: &mut Claims| snp(c).reported_tcb.snp = 3, &[
        "security.min_tcb: snp component 3 below 8",
    ])]
    #[case::microcode_below(FLOOR, |c: &mut Claims| snp(c).reported_tcb.microcode = 114, &[
        "security.min_tcb: microcode component 114 below 115",
    ])]
    #[case::one_above_does_not_make_up_for_one_below(FLOOR, |c: &mut Claims| {
        snp(c).reported_tcb = SnpTcb::new(9, 9, 7, 200);
    }, &["security.min_tcb: snp component 7 below 8"])]
    #[case::every_component_below(FLOOR, |c: &mut Claims| snp(c).reported_tcb = SnpTcb::new(2, 0, 5, 68), &[
        "security.min_tcb: bootloader component 2 below 3",
        "security.min_tcb: tee component 0 below 1",
        "security.min_tcb: snp component 5 below 8",
        "security.min_tcb: microcode component 68 below 115",
    ])]
    #[case::below_with_any_tcb_tolerated("  tolerate: [snp-any-tcb]\n", |c: &mut Claims| {
        snp(c).reported_tcb = SnpTcb::new(0, 0, 0, 0);
    }, &[])]
    #[case::vmpl_1_refused(FLOOR, |c: &mut Claims| snp(c).vmpl = 1, &["security.max_vmpl: vmpl 1 above 0"])]
    #[case::vmpl_1_allowed(&format!("{FLOOR}  max_vmpl: 1\n"), |c: &mut Claims| snp(c).vmpl = 1, &[])]
    #[case::vmpl_2_above_max_1(&format!("{FLOOR}  max_vmpl: 1\n"), |c: &mut Claims| snp(c).vmpl = 2, &[
        "security.max_vmpl: vmpl 2 above 1",
    ])]
    #[case::migration_agent_refused(FLOOR, |c: &mut Claims| {
        snp(c).policy = SnpGuestPolicy::from_raw(0x30000 | SnpGuestPolicy::MIGRATE_MA);
    }, &["security.tolerate: snp-migration-agent not tolerated"])]
    #[case::migration_agent_tolerated(&format!("{FLOOR}  tolerate: [snp-migration-agent]\n"), |c: &mut Claims| {
        snp(c).policy = SnpGuestPolicy::from_raw(0x30000 | SnpGuestPolicy::MIGRATE_MA);
    }, &[])]
    #[case::migration_agent_from_maa_flags(FLOOR, |c: &mut Claims| {
        snp(c).policy = SnpGuestPolicy::from_flags(false, true, true);
    }, &["security.tolerate: snp-migration-agent not tolerated"])]
    #[case::debug_refused(FLOOR, |c: &mut Claims| {
        snp(c).policy = SnpGuestPolicy::from_raw(0x30000 | SnpGuestPolicy::DEBUG);
        c.debug = true;
    }, &["security.tolerate: debug not tolerated"])]
    #[case::no_details(FLOOR, |c: &mut Claims| c.snp = None, &[
        "security.min_tcb: the evidence reports no TCB",
        "security.max_vmpl: the evidence reports no VMPL",
    ])]
    #[case::no_details_any_tcb("  tolerate: [snp-any-tcb]\n", |c: &mut Claims| c.snp = None, &[
        "security.max_vmpl: the evidence reports no VMPL",
    ])]
    fn snp_appraisal(
        #[case] security: &str,
        #[case] edit: fn(&mut Claims),
        #[case] expected: &[&str],
    ) {
        let mut claims = snp_claims();
        edit(&mut claims);
        let policy = hardware_policy(security);
        let reasons = policy
            .appraise("driver", &claims)
            .err()
            .map(|r| r.reasons)
            .unwrap_or_default();
        assert_eq!(reasons, expected);
    }

    fn dcap_claims(tee: Tee, tcb_info: u32, qe_identity: u32) -> Claims {
        let mut c = sim_claims();
        c.tee = tee;
        c.format = EvidenceFormat::DcapQuote;
        c.dcap = Some(DcapDetails::new(tcb_info, qe_identity));
        c
    }

    const MIN_17: &str = "  min_tcb_evaluation_data_number: 17\n";

    #[rstest]
    #[case::sgx_at_the_minimum(MIN_17, dcap_claims(Tee::Sgx, 17, 17), &[])]
    #[case::tdx_above_the_minimum(MIN_17, dcap_claims(Tee::Tdx, 18, 19), &[])]
    #[case::tcb_info_below(MIN_17, dcap_claims(Tee::Sgx, 16, 17), &[
        "security.min_tcb_evaluation_data_number: tcb info 16 below 17",
    ])]
    #[case::qe_identity_below(MIN_17, dcap_claims(Tee::Tdx, 18, 16), &[
        "security.min_tcb_evaluation_data_number: qe identity 16 below 17",
    ])]
    #[case::both_below(MIN_17, dcap_claims(Tee::Tdx, 1, 2), &[
        "security.min_tcb_evaluation_data_number: tcb info 1 below 17",
        "security.min_tcb_evaluation_data_number: qe identity 2 below 17",
    ])]
    #[case::no_number_in_the_evidence(MIN_17, { let mut c = dcap_claims(Tee::Sgx, 0, 0); c.dcap = None; c }, &[
        "security.min_tcb_evaluation_data_number: the evidence reports no tcbEvaluationDataNumber",
    ])]
    #[case::no_minimum_accepts_old_collateral("", dcap_claims(Tee::Sgx, 1, 1), &[])]
    fn dcap_appraisal(#[case] security: &str, #[case] claims: Claims, #[case] expected: &[&str]) {
        let policy = hardware_policy(&format!("{FLOOR}{security}"));
        let reasons = policy
            .appraise("driver", &claims)
            .err()
            .map(|r| r.reasons)
            .unwrap_or_default();
        assert_eq!(reasons, expected);
    }

    #[cfg(feature = "rego")]
    #[test]
    fn rego_deny_refuses() {
        let mut claims = sim_claims();
        sgx_signed(&mut claims);
        claims.svn = Some(13);
        let refusal = policy("[sgx]").appraise("driver", &claims).unwrap_err();
        assert_eq!(refusal.reasons, vec!["security.rego: svn 13 is revoked"]);
    }

    #[test]
    fn unknown_service_is_refused() {
        let refusal = policy("[sim]")
            .appraise("worker", &sim_claims())
            .unwrap_err();
        assert_eq!(
            refusal.reasons,
            vec!["services: policy `test/appraise` has no service `worker`"]
        );
    }

    #[test]
    fn every_violation_is_listed_at_once() {
        let mut claims = sim_claims();
        claims.debug = true;
        claims.tcb_status = TcbStatus::OutOfDate;
        claims.advisory_ids = vec!["INTEL-SA-00001".into()];
        claims.measurement = vec![0; 32];
        let refusal = policy("[sgx]").appraise("driver", &claims).unwrap_err();
        for needle in [
            "security.tees: sim not accepted",
            "debug not tolerated",
            "tcb OutOfDate",
            "INTEL-SA-00001 not ignored",
            "attestation[0]: measurement",
            "attestation[1]: tee sim is not sgx",
        ] {
            assert!(refusal.mentions(needle), "{needle} missing: {refusal}");
        }
        assert!(
            refusal
                .to_string()
                .starts_with("attestation for service `driver` refused: ")
        );
    }

    /// The ids shown to callers hold no value of the policy: every pinned measurement, signer,
    /// product id, svn range and extra claim stays in the reasons.
    #[test]
    fn rule_ids_name_the_rule_without_the_pinned_values() {
        let mut claims = sim_claims();
        sgx_signed(&mut claims);
        claims.tee = Tee::Sim;
        claims.signer = Some(vec![0x52; 32]);
        claims.product_id = Some(8);
        claims.svn = Some(2);
        claims.debug = true;
        let refusal = policy("[sgx]").appraise("driver", &claims).unwrap_err();
        let rules = refusal.rules();
        for rule in [
            "security.tees",
            "security.tolerate",
            "services[driver].attestation[0].measurement",
            "services[driver].attestation[1].tee",
            "services[driver].attestation[1].signer",
            "services[driver].attestation[1].product_id",
            "services[driver].attestation[1].svn",
        ] {
            assert!(rules.iter().any(|r| r == rule), "{rule} not in {rules:?}");
        }
        let text = rules.join(" ");
        for pinned in [SIGNER, MEASUREMENT, "3..=20", " 7", "5252"] {
            assert!(!text.contains(pinned), "{pinned} in {text}");
        }
        assert_eq!(
            rules.len(),
            rules
                .iter()
                .collect::<std::collections::BTreeSet<_>>()
                .len()
        );
    }

    #[rstest]
    #[case::extra(
        "services[a].attestation[0]: claim host_data is 01, not 02",
        "services[a].attestation[0].extra"
    )]
    #[case::missing_extra(
        "services[a].attestation[0]: the evidence has no claim x",
        "services[a].attestation[0].extra"
    )]
    #[case::rego("security.rego: tenant secret 42 is revoked", "security.rego")]
    #[case::import(
        "secrets[db].export: session `x` does not export",
        "secrets[db].export"
    )]
    #[case::no_detail("nonce", "nonce")]
    #[case::unknown_variant_detail(
        "services[a].attestation[0]: something new",
        "services[a].attestation[0]"
    )]
    #[case::hostile_path("security.tees 0xdeadbeef: x", "policy")]
    #[case::too_long(&format!("{}: x", "a".repeat(200)), "policy")]
    #[case::empty("", "policy")]
    fn rule_ids(#[case] reason: &str, #[case] id: &str) {
        assert_eq!(rule_id(reason), id);
    }
}

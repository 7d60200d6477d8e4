//! Appraisal: do verified claims satisfy a service of the policy? Deny by default.

use crate::doc::Tolerate;
use crate::model::{AttestationVariant, Pin, Policy, Service};
use cloister_attest::{Claims, TcbStatus};
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
/// carry no vendor status: pin svn ranges or use Rego on `reported_tcb` there).
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
    /// toleration is listed; every advisory is ignored explicitly; at least one attestation
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
            if !pinned.iter().any(|m| *m == claims.measurement) {
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

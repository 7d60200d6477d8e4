//! The optional Rego appraisal rule (`security.rego`), evaluated with `regorus`.
//!
//! The module must be `package cloister`; every message in the set `data.cloister.deny`
//! refuses attestation. `input` is `{"claims": <Claims as JSON>, "service": "<name>"}`, the same
//! JSON `cloister evidence verify --json` prints. Rego v1 syntax (`deny contains msg if { … }`).
//! The rule is compiled when the policy is validated (a syntax error is a `rego-syntax` problem)
//! and again for each appraisal, so a [`RegoRule`] holds only text and is `Send + Sync`.
//! Evaluation is limited to one second of wall-clock time.
//!
//! Without the `rego` cargo feature a policy with a `rego` rule does not validate
//! (`rego-unsupported`): a build that cannot enforce a rule never pretends to.

use cloister_attest::Claims;
use std::fmt;

/// The package every policy rule must declare.
pub const PACKAGE: &str = "cloister";
/// The rule whose messages refuse attestation.
pub const DENY_RULE: &str = "data.cloister.deny";

/// A compiled-once-to-check Rego rule.
#[derive(Clone, PartialEq, Eq)]
pub struct RegoRule {
    source: String,
}

impl fmt::Debug for RegoRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegoRule")
            .field("bytes", &self.source.len())
            .finish()
    }
}

impl RegoRule {
    /// The rule's source.
    pub fn source(&self) -> &str {
        &self.source
    }
}

#[cfg(feature = "rego")]
mod imp {
    use super::*;
    use regorus::Engine;
    use std::num::NonZeroU32;
    use std::time::Duration;

    fn engine(source: &str) -> Result<Engine, String> {
        let mut engine = Engine::new();
        engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
            limit: Duration::from_secs(1),
            check_interval: NonZeroU32::MIN.saturating_add(99),
        });
        let package = engine
            .add_policy("policy.rego".into(), source.into())
            .map_err(|e| e.to_string())?;
        if package != format!("data.{PACKAGE}") {
            return Err(format!(
                "the module is `{package}`; it must be `package {PACKAGE}`"
            ));
        }
        Ok(engine)
    }

    impl RegoRule {
        /// Check that `source` parses, declares `package cloister` and defines `deny`.
        pub fn compile(source: &str) -> Result<Self, String> {
            let mut engine = engine(source)?;
            engine
                .compile_with_entrypoint(&regorus::Rc::from(DENY_RULE))
                .map_err(|e| format!("the module must define `deny`: {e}"))?;
            Ok(Self {
                source: source.to_owned(),
            })
        }

        /// The deny messages for `claims` presented for `service` (empty: no objection).
        pub fn deny(&self, claims: &Claims, service: &str) -> Result<Vec<String>, String> {
            let mut engine = engine(&self.source)?;
            let input = serde_json::json!({ "claims": claims, "service": service });
            engine.set_input(regorus::Value::from(input));
            let verdict = engine
                .eval_rule(DENY_RULE.into())
                .map_err(|e| e.to_string())?;
            if verdict == regorus::Value::Undefined {
                return Ok(Vec::new());
            }
            let set = verdict
                .as_set()
                .map_err(|_| "`deny` must be a set of messages".to_owned())?;
            Ok(set
                .iter()
                .map(|m| match m.as_string() {
                    Ok(s) => s.to_string(),
                    Err(_) => m.to_string(),
                })
                .collect())
        }
    }
}

#[cfg(not(feature = "rego"))]
impl RegoRule {
    /// Without the `rego` feature no rule can be enforced, so none is accepted.
    pub fn compile(_source: &str) -> Result<Self, String> {
        Err("this build of Cloister has no Rego support (cargo feature `rego`)".into())
    }

    /// Unreachable without the feature: no `RegoRule` can be built.
    pub fn deny(&self, _claims: &Claims, _service: &str) -> Result<Vec<String>, String> {
        Err("this build of Cloister has no Rego support".into())
    }
}

#[cfg(all(test, feature = "rego"))]
mod tests {
    use super::*;
    use cloister_attest::{EvidenceFormat, Tee};

    const RULE: &str = r#"
package cloister

deny contains msg if {
    input.claims.svn < 3
    msg := sprintf("svn %d is below 3", [input.claims.svn])
}

deny contains "executors must not run on sim" if {
    input.service == "executor"
    input.claims.tee == "sim"
}
"#;

    fn claims(svn: u32) -> Claims {
        let mut c = Claims::new(Tee::Sim, EvidenceFormat::Sim, vec![0; 32], vec![0; 64]);
        c.svn = Some(svn);
        c
    }

    #[test]
    fn deny_messages_are_collected() {
        let rule = RegoRule::compile(RULE).unwrap();
        assert!(rule.deny(&claims(5), "driver").unwrap().is_empty());
        assert_eq!(
            rule.deny(&claims(1), "driver").unwrap(),
            vec!["svn 1 is below 3"]
        );
        assert_eq!(rule.deny(&claims(1), "executor").unwrap().len(), 2);
    }

    #[test]
    fn syntax_and_package_are_checked() {
        assert!(RegoRule::compile("package cloister\ndeny contains x if {").is_err());
        let err = RegoRule::compile("package other\ndeny contains 1 if { true }").unwrap_err();
        assert!(err.contains("package cloister"), "{err}");
    }

    #[test]
    fn a_module_without_deny_is_refused() {
        let err =
            RegoRule::compile("package cloister\ndenny contains 1 if { true }\n").unwrap_err();
        assert!(err.contains("must define `deny`"), "{err}");
    }
}

//! From YAML text to a validated [`Policy`], collecting every problem with its location.

use crate::Error;
use crate::doc::{
    self, ImportSourceDoc, KeyAlgorithm, PolicyDoc, SecretDoc, SecretKindName, TeeName, Tolerate,
};
use crate::model::{
    Access, Advisories, AttestationVariant, Export, ExportTarget, ImportSource, ImporterIdentity,
    InjectedFile, Owner, Pin, Policy, Reader, Secret, SecretKind, Security, Service, SessionImport,
    SvnRange,
};
use crate::problem::{Problem, Problems, Rule};
use crate::rego::RegoRule;
use crate::sign::{KeyFingerprint, PublicKey, SessionHash, spki_der};
use crate::template::{Format, Piece, ValueShape, scan};
use crate::yaml::{self, Node, Seg};
use cloister_attest::{SnpTcb, Tee};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

/// Default file mode of injected files.
pub const DEFAULT_FILE_MODE: u32 = 0o600;
/// Default size of `ascii` and `binary` secrets.
pub const DEFAULT_SECRET_SIZE: u32 = 32;
/// Largest `ascii` / `binary` secret.
pub const MAX_SECRET_SIZE: u32 = 4096;
const DEFAULT_CA_DAYS: u32 = 365;
const DEFAULT_CERT_DAYS: u32 = 90;
const MAX_VALIDITY_DAYS: u32 = 36_500;
/// The service `env` variable that pins the app bundle's plaintext digest (the runtime's
/// `cloister_runtime::BUNDLE_DIGEST_ENV`; this crate does not depend on the runtime).
pub const BUNDLE_DIGEST_ENV: &str = "CLOISTER_BUNDLE_DIGEST";

impl Policy {
    /// Parse and validate a policy version. The session hash is taken over `yaml`'s bytes.
    ///
    /// Structural problems (YAML syntax, unknown fields, wrong types) stop at the first one;
    /// after that every semantic rule is checked and all problems are returned together.
    pub fn parse(yaml: &str) -> Result<Policy, Problems> {
        let tree = yaml::parse(yaml).map_err(|p| Problems::new(vec![p]))?;
        let doc: PolicyDoc = yaml::from_node(&tree).map_err(|p| Problems::new(vec![p]))?;
        let mut v = Validator {
            tree: &tree,
            problems: Vec::new(),
        };
        let policy = v.policy(doc, SessionHash::of(yaml.as_bytes()));
        if v.problems.is_empty() {
            Ok(policy)
        } else {
            Err(Problems::new(v.problems))
        }
    }
}

/// Parse a policy version and check it, for `cloister policy lint`: every problem, located.
pub fn lint(yaml: &str) -> Result<(), Problems> {
    Policy::parse(yaml).map(|_| ())
}

/// The YAML document as JSON (plain scalars resolved with the YAML 1.2 core schema), refusing
/// what the policy language refuses (aliases, tags, duplicate keys). For validating against
/// [`crate::json_schema`] and for tools.
pub fn yaml_to_json(yaml: &str) -> Result<serde_json::Value, Problems> {
    yaml::parse(yaml)
        .map(|tree| tree.to_json())
        .map_err(|p| Problems::new(vec![p]))
}

struct Validator<'t> {
    tree: &'t Node,
    problems: Vec<Problem>,
}

/// Path segments, built as the typed document is walked.
macro_rules! at {
    ($($seg:expr),* $(,)?) => { &[$(seg($seg)),*][..] };
}

// After `at!`, which they use (a `macro_rules!` macro is visible below its definition).
mod access;
mod exports;
mod secrets;
mod security;
mod services;

trait IntoSeg<'a> {
    fn into_seg(self) -> Seg<'a>;
}
impl<'a> IntoSeg<'a> for &'a str {
    fn into_seg(self) -> Seg<'a> {
        Seg::Key(self)
    }
}
impl<'a> IntoSeg<'a> for &'a String {
    fn into_seg(self) -> Seg<'a> {
        Seg::Key(self)
    }
}
impl IntoSeg<'static> for usize {
    fn into_seg(self) -> Seg<'static> {
        Seg::Index(self)
    }
}
fn seg<'a>(s: impl IntoSeg<'a>) -> Seg<'a> {
    s.into_seg()
}

impl Validator<'_> {
    fn report(&mut self, segs: &[Seg<'_>], rule: Rule, message: impl Into<String>) {
        let problem = self.tree.problem(self.tree.lookup(segs), rule, message);
        self.problems.push(problem);
    }

    /// Report at the key `key` of the mapping at `segs` (a field that should not be there).
    fn report_key(&mut self, segs: &[Seg<'_>], key: &str, rule: Rule, message: impl Into<String>) {
        let problem = self
            .tree
            .problem(self.tree.lookup_key(segs, key), rule, message);
        self.problems.push(problem);
    }

    fn policy(&mut self, doc: PolicyDoc, hash: SessionHash) -> Policy {
        if !is_session_name(&doc.name) {
            self.report(
                at!["name"],
                Rule::SessionName,
                format!(
                    "`{}` is not `namespace/name` (lower-case letters, digits, `-`, `_`, `.`)",
                    doc.name
                ),
            );
        }
        if doc.version == 0 {
            self.report(at!["version"], Rule::Version, "versions start at 1");
        }
        let predecessor = match (&doc.predecessor, doc.version) {
            (Some(_), 1) => {
                self.report(
                    at!["predecessor"],
                    Rule::Predecessor,
                    "version 1 has no predecessor",
                );
                None
            }
            (None, v) if v > 1 => {
                self.report(
                    at!["version"],
                    Rule::Predecessor,
                    format!("version {v} must name its predecessor's hash"),
                );
                None
            }
            (Some(p), _) => match p.parse::<SessionHash>() {
                Ok(h) => Some(h),
                Err(_) => {
                    self.report(
                        at!["predecessor"],
                        Rule::Predecessor,
                        "predecessor is not a SHA-256 (64 hex digits)",
                    );
                    None
                }
            },
            (None, _) => None,
        };

        let access = self.access(&doc.access);
        let security = self.security(&doc.security);

        // Secrets first: placeholders in services refer to them.
        let mut shapes: HashMap<&str, ValueShape> = HashMap::new();
        let secrets = self.secrets(&doc.name, &doc.secrets);
        for s in &secrets {
            shapes
                .entry(s.name.as_str())
                .or_insert_with(|| s.kind.shape());
        }
        let hardware = security.tees.iter().any(|t| *t != Tee::Sim);
        let services = self.services(&doc.services, &shapes, hardware);
        let exports = self.exports(&doc.export, &secrets);

        Policy {
            hash,
            name: doc.name.clone(),
            version: doc.version,
            predecessor,
            description: doc.description.clone(),
            access,
            security,
            services,
            secrets,
            exports,
            doc,
        }
    }
}

fn reason(e: Error) -> String {
    match e {
        Error::Malformed { reason, .. } | Error::PlaceholderSyntax { reason, .. } => reason,
        other => other.to_string(),
    }
}

fn tee(t: TeeName) -> Tee {
    match t {
        TeeName::Sgx => Tee::Sgx,
        TeeName::Tdx => Tee::Tdx,
        TeeName::SevSnp => Tee::SevSnp,
        TeeName::Sim => Tee::Sim,
    }
}

fn kind_name(k: SecretKindName) -> &'static str {
    match k {
        SecretKindName::Ascii => "ascii",
        SecretKindName::Binary => "binary",
        SecretKindName::PrivateKey => "private-key",
        SecretKindName::X509Ca => "x509-ca",
        SecretKindName::X509 => "x509",
        SecretKindName::Aes256 => "aes256",
        SecretKindName::Cmk => "cmk",
        SecretKindName::Cek => "cek",
        SecretKindName::Import => "import",
    }
}

fn short(s: &str) -> String {
    if s.chars().count() > 24 {
        format!("{}…", s.chars().take(24).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// A bundle digest as the runtime reads it: SHA-256, 64 hex digits.
fn is_bundle_digest(s: &str) -> bool {
    let s = s.trim();
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Hex of a 32- or 48-byte digest.
fn digest_hex(s: &str) -> Option<Vec<u8>> {
    hex::decode(s.trim())
        .ok()
        .filter(|b| b.len() == 32 || b.len() == 48)
}

/// `namespace/name` (the rule is [`crate::names::check_session_name`]).
pub(crate) fn is_session_name(s: &str) -> bool {
    crate::names::check_session_name(s).is_ok()
}

/// The rule is [`crate::names::check_service_name`].
fn is_service_name(s: &str) -> bool {
    crate::names::check_service_name(s).is_ok()
}

fn is_secret_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn is_x509_name(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 64 && !s.chars().any(char::is_control)
}

fn is_k8s_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn is_k8s_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn is_safe_absolute(p: &str) -> bool {
    let path = Path::new(p);
    path.is_absolute()
        && !p.contains('\0')
        && path
            .components()
            .all(|c| !matches!(c, Component::ParentDir))
}

/// `"0600"`, `"600"` or `"0o600"`: octal, at most 0777.
fn parse_mode(m: &str) -> Option<u32> {
    let digits = m.strip_prefix("0o").unwrap_or(m);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8)
        .ok()
        .filter(|&mode| mode <= 0o777)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{MEASUREMENT, base};
    use rstest::rstest;

    const OTHER_HASH: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn mutate(from: &str, to: &str) -> String {
        let yaml = base();
        assert!(yaml.contains(from), "fixture has no `{from}`");
        yaml.replacen(from, to, 1)
    }

    #[test]
    fn base_fixture_is_valid() {
        let policy = Policy::parse(&base()).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(policy.name(), "test/base");
        assert_eq!(policy.access().approvals, 1);
        let driver = policy.service("driver").unwrap();
        assert_eq!(driver.files[0].mode, 0o600);
        assert!(matches!(
            policy.secret("cert").unwrap().kind,
            SecretKind::X509 {
                validity_days: 90,
                ..
            }
        ));
    }

    #[rstest]
    #[case::unknown_field(
        "    command: /bin/app",
        "    comand: /bin/app",
        Rule::UnknownField,
        "services[driver].comand",
        20,
        5
    )]
    #[case::measurement_not_hex(
        MEASUREMENT,
        "zz",
        Rule::MeasurementHex,
        "services[driver].attestation[0].measurements[0]",
        19,
        13
    )]
    #[case::measurement_wrong_length(
        MEASUREMENT,
        "abcd",
        Rule::MeasurementHex,
        "services[driver].attestation[0].measurements[0]",
        19,
        13
    )]
    #[case::duplicate_service(
        "secrets:\n",
        "  - name: driver\n    attestation: [{measurements: [aa]}]\nsecrets:\n",
        Rule::DuplicateService,
        "services[driver].name",
        28,
        11
    )]
    #[case::duplicate_secret(
        "  - name: ca\n",
        "  - name: token\n    kind: binary\n  - name: ca\n",
        Rule::DuplicateSecret,
        "secrets[token].name",
        31,
        11
    )]
    #[case::placeholder_unknown_secret(
        "$$cloister:token$$",
        "$$cloister:tokn$$",
        Rule::PlaceholderSecret,
        "services[driver].env.TOKEN",
        23,
        14
    )]
    #[case::placeholder_unknown_format(
        "$$cloister:cert:key$$",
        "$$cloister:cert:jwk$$",
        Rule::PlaceholderFormat,
        "services[driver].files[0].content",
        26,
        18
    )]
    #[case::placeholder_format_not_for_kind(
        "$$cloister:token$$",
        "$$cloister:token:crt$$",
        Rule::PlaceholderFormat,
        "services[driver].env.TOKEN",
        23,
        14
    )]
    #[case::placeholder_unclosed(
        "$$cloister:token$$",
        "$$cloister:token",
        Rule::PlaceholderSyntax,
        "services[driver].env.TOKEN",
        23,
        14
    )]
    #[case::host_arg_outside_args(
        "$$cloister:token$$",
        "\"@@2\"",
        Rule::HostArg,
        "services[driver].env.TOKEN",
        23,
        14
    )]
    #[case::wildcard_without_debug(
        "  tolerate: [debug]\n  ignore_advisories: [INTEL-SA-00615]",
        "  ignore_advisories: [\"*\"]",
        Rule::AdvisoryWildcard,
        "security.ignore_advisories[0]",
        13,
        23
    )]
    #[case::advisory_glob(
        "[INTEL-SA-00615]",
        "[INTEL-SA-*]",
        Rule::AdvisoryId,
        "security.ignore_advisories[0]",
        14,
        23
    )]
    #[case::version_zero("version: 1", "version: 0", Rule::Version, "version", 2, 10)]
    #[case::predecessor_on_version_1("version: 1\n", &format!("version: 1\npredecessor: {OTHER_HASH}\n"), Rule::Predecessor, "predecessor", 3, 14)]
    #[case::no_predecessor_on_version_2(
        "version: 1",
        "version: 2",
        Rule::Predecessor,
        "version",
        2,
        10
    )]
    #[case::predecessor_not_hex(
        "version: 1\n",
        "version: 2\npredecessor: abc\n",
        Rule::Predecessor,
        "predecessor",
        3,
        14
    )]
    #[case::approvals_above_owners(
        "approvals: 1",
        "approvals: 3",
        Rule::Approvals,
        "access.update.approvals",
        10,
        16
    )]
    #[case::approvals_zero(
        "approvals: 1",
        "approvals: 0",
        Rule::Approvals,
        "access.update.approvals",
        10,
        16
    )]
    #[case::bad_owner_key(
        "MCowBQYDK2VwAyEAgTl3",
        "MCowBQYDK2VwAyEAgTl4",
        Rule::OwnerKey,
        "access.owners[bob].key",
        8,
        12
    )]
    #[case::owner_key_not_ed25519(
        "MCowBQYDK2VwAyEAgTl3",
        "MCowBQYDK2VuAyEAgTl3",
        Rule::OwnerKey,
        "access.owners[bob].key",
        8,
        12
    )]
    #[case::bad_file_mode(
        "\"0600\"",
        "\"0999\"",
        Rule::FileMode,
        "services[driver].files[0].mode",
        27,
        15
    )]
    #[case::file_path_relative(
        "/etc/app/key.pem",
        "etc/../key.pem",
        Rule::FilePath,
        "services[driver].files[0].path",
        25,
        15
    )]
    #[case::x509_unknown_issuer(
        "issuer: ca",
        "issuer: nca",
        Rule::X509Issuer,
        "secrets[cert].issuer",
        35,
        13
    )]
    #[case::x509_issuer_not_a_ca(
        "issuer: ca",
        "issuer: token",
        Rule::X509Issuer,
        "secrets[cert].issuer",
        35,
        13
    )]
    #[case::export_unknown_secret(
        "  - secret: token",
        "  - secret: nope",
        Rule::ExportSecret,
        "export[0].secret",
        38,
        13
    )]
    #[case::export_to_bad_session(
        "session: test/other",
        "session: other",
        Rule::ExportSession,
        "export[0].to[0].session",
        40,
        18
    )]
    #[case::export_to_a_name_alone(
        "      - session: test/other\n",
        "      - session: test/third\n      - session: test/other\n",
        Rule::ExportIdentity,
        "export[0].to[0]",
        40,
        9
    )]
    #[case::export_bad_owner(
        "        owners: [",
        "        owners: [zz, ",
        Rule::ExportIdentity,
        "export[0].to[0].owners[0]",
        41,
        18
    )]
    #[case::export_both_identities(
        "        owners: [",
        "        session_hash: 1234\n        owners: [",
        Rule::ExportIdentity,
        "export[0].to[0]",
        40,
        9
    )]
    #[case::secret_field_not_for_kind(
        "    kind: ascii\n",
        "    kind: ascii\n    issuer: ca\n",
        Rule::SecretField,
        "secrets[token].issuer",
        31,
        5
    )]
    #[case::secret_size(
        "    kind: ascii\n",
        "    kind: ascii\n    size: 0\n",
        Rule::SecretSize,
        "secrets[token].size",
        31,
        11
    )]
    #[case::missing_field("    kind: ascii\n", "", Rule::MissingField, "secrets[token]", 29, 5)]
    #[case::wrong_type(
        "approvals: 1",
        "approvals: many",
        Rule::Type,
        "access.update.approvals",
        10,
        16
    )]
    #[case::unknown_tee(
        "tees: [sim]",
        "tees: [sgz]",
        Rule::UnknownVariant,
        "security.tees[0]",
        12,
        10
    )]
    #[case::session_name("name: test/base", "name: Test", Rule::SessionName, "name", 1, 7)]
    #[case::service_name(
        "  - name: driver",
        "  - name: Driver_1",
        Rule::ServiceName,
        "services[Driver_1].name",
        16,
        11
    )]
    #[case::env_name(
        "      TOKEN:",
        "      2TOKEN:",
        Rule::EnvName,
        "services[driver].env.2TOKEN",
        23,
        7
    )]
    #[case::attestation_both(&format!("      - measurements:\n          - {MEASUREMENT}\n"), &format!("      - measurements: [{MEASUREMENT}]\n        signer: {MEASUREMENT}\n"), Rule::AttestationVariant, "services[driver].attestation[0]", 18, 9)]
    #[case::attestation_empty(&format!("      - measurements:\n          - {MEASUREMENT}\n"), "      - {}\n", Rule::AttestationVariant, "services[driver].attestation[0]", 18, 9)]
    #[case::svn_range(&format!("      - measurements:\n          - {MEASUREMENT}\n"), &format!("      - signer: {MEASUREMENT}\n        svn: {{min: 5, max: 2}}\n"), Rule::SvnRange, "services[driver].attestation[0].svn", 19, 14)]
    #[case::duplicate_yaml_key(
        "version: 1\n",
        "version: 1\nversion: 1\n",
        Rule::DuplicateKey,
        "",
        3,
        1
    )]
    #[case::yaml_alias("tees: [sim]", "tees: [&t sim]", Rule::YamlAlias, "", 12, 10)]
    #[case::import_bad_hash(
        "  - name: ca\n",
        "  - name: imp\n    kind: import\n    from:\n      session: {session: a/b, secret: s, session_hash: 12}\n  - name: ca\n",
        Rule::ImportSource,
        "secrets[imp].from.session.session_hash",
        34,
        56
    )]
    fn invalid_documents(
        #[case] from: &str,
        #[case] to: &str,
        #[case] rule: Rule,
        #[case] path: &str,
        #[case] line: usize,
        #[case] column: usize,
    ) {
        let problems = Policy::parse(&mutate(from, to)).expect_err("must not validate");
        let p = problems
            .find(rule)
            .unwrap_or_else(|| panic!("no {rule} problem in:\n{problems}"));
        assert_eq!(
            (p.path.as_str(), p.line, p.column),
            (path, line, column),
            "{p}"
        );
    }

    const DIGEST: &str = "0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d0d";
    const FLOOR: &str = "  min_tcb: {bootloader: 3, tee: 0, snp: 8, microcode: 115}\n";

    /// The base policy accepting `tees`, with `security` appended to its security section and
    /// `env` to the driver's environment.
    /// A `tolerate` line in `security` replaces the base's.
    fn hardware(tees: &str, security: &str, env: &str) -> String {
        let mut yaml = mutate("  tees: [sim]\n", &format!("  tees: [{tees}]\n{security}"));
        if security.contains("  tolerate:") {
            yaml = yaml.replacen("  tolerate: [debug]\n", "", 1);
        }
        yaml.replacen(
            "      TOKEN: $$cloister:token$$\n",
            &format!("      TOKEN: $$cloister:token$$\n{env}"),
            1,
        )
    }

    fn pinned() -> String {
        format!("      CLOISTER_BUNDLE_DIGEST: {DIGEST}\n")
    }

    /// The platform rules for hardware TEEs: which documents validate, and for those that do
    /// not, the rule and the path of the first problem with it.
    #[rstest]
    #[case::snp_with_floor("sim, sev-snp", FLOOR, pinned(), None)]
    #[case::snp_without_floor("sim, sev-snp", "", pinned(), Some((Rule::SnpMinTcb, "security.tees[1]")))]
    #[case::snp_any_tcb_tolerated("sev-snp", "  tolerate: [debug, snp-any-tcb]\n", pinned(), None)]
    #[case::floor_and_any_tcb("sev-snp", &format!("{FLOOR}  tolerate: [debug, snp-any-tcb]\n"), pinned(), Some((Rule::SnpMinTcb, "security.min_tcb")))]
    #[case::floor_without_snp("sgx", FLOOR, pinned(), Some((Rule::SnpMinTcb, "security.min_tcb")))]
    #[case::floor_missing_a_component("sev-snp", "  min_tcb: {bootloader: 3, tee: 0, snp: 8}\n", pinned(), Some((Rule::MissingField, "security.min_tcb")))]
    #[case::floor_component_above_255("sev-snp", "  min_tcb: {bootloader: 3, tee: 0, snp: 8, microcode: 256}\n", pinned(), Some((Rule::Type, "security.min_tcb.microcode")))]
    #[case::max_vmpl_1("sev-snp", &format!("{FLOOR}  max_vmpl: 1\n"), pinned(), None)]
    #[case::max_vmpl_4("sev-snp", &format!("{FLOOR}  max_vmpl: 4\n"), pinned(), Some((Rule::SnpVmpl, "security.max_vmpl")))]
    #[case::max_vmpl_without_snp("sgx", "  max_vmpl: 1\n", pinned(), Some((Rule::SnpVmpl, "security.max_vmpl")))]
    #[case::evaluation_number_sgx("sgx", "  min_tcb_evaluation_data_number: 17\n", pinned(), None)]
    #[case::evaluation_number_tdx(
        "tdx, sim",
        "  min_tcb_evaluation_data_number: 17\n",
        pinned(),
        None
    )]
    #[case::evaluation_number_without_dcap("sev-snp", &format!("{FLOOR}  min_tcb_evaluation_data_number: 17\n"), pinned(), Some((Rule::TcbEvaluationDataNumber, "security.min_tcb_evaluation_data_number")))]
    #[case::sgx_without_bundle_pin("sgx", "", String::new(), Some((Rule::BundleDigest, "services[driver].env")))]
    #[case::tdx_without_bundle_pin("sim, tdx", "", String::new(), Some((Rule::BundleDigest, "services[driver].env")))]
    #[case::snp_without_bundle_pin("sev-snp", FLOOR, String::new(), Some((Rule::BundleDigest, "services[driver].env")))]
    #[case::bundle_pin_placeholder("sgx", "", "      CLOISTER_BUNDLE_DIGEST: $$cloister:token$$\n".into(), Some((Rule::BundleDigest, "services[driver].env.CLOISTER_BUNDLE_DIGEST")))]
    #[case::bundle_pin_short("sgx", "", format!("      CLOISTER_BUNDLE_DIGEST: {}\n", &DIGEST[..62]), Some((Rule::BundleDigest, "services[driver].env.CLOISTER_BUNDLE_DIGEST")))]
    #[case::sim_only_needs_no_bundle_pin("sim", "", String::new(), None)]
    fn hardware_rules(
        #[case] tees: &str,
        #[case] security: &str,
        #[case] env: String,
        #[case] want: Option<(Rule, &str)>,
    ) {
        let yaml = hardware(tees, security, &env);
        match (Policy::parse(&yaml), want) {
            (Ok(_), None) => {}
            (Ok(_), Some((rule, _))) => panic!("validated; expected {rule}:\n{yaml}"),
            (Err(problems), None) => panic!("{problems}\n{yaml}"),
            (Err(problems), Some((rule, path))) => {
                let p = problems
                    .find(rule)
                    .unwrap_or_else(|| panic!("no {rule} problem in:\n{problems}"));
                assert_eq!(p.path, path, "{p}");
            }
        }
    }

    #[test]
    fn hardware_rules_are_located() {
        let problems = Policy::parse(&hardware("sim, sev-snp", "", String::new().as_str()))
            .unwrap_err()
            .with_source_name("p.yaml");
        let text = problems.to_string();
        assert!(
            text.contains(
                "p.yaml:12:15: security.tees[1]: accepting `sev-snp` needs a platform TCB floor"
            ),
            "{text}"
        );
        assert!(text.contains("[rule: snp-min-tcb]"), "{text}");
        let bundle = problems.find(Rule::BundleDigest).unwrap();
        assert_eq!((bundle.line, bundle.column), (23, 7), "{bundle}");
        assert!(text.contains("[rule: bundle-digest]"), "{text}");
    }

    #[test]
    fn security_carries_the_snp_and_dcap_rules() {
        let policy = Policy::parse(&hardware(
            "sev-snp, tdx",
            &format!("{FLOOR}  max_vmpl: 2\n  min_tcb_evaluation_data_number: 18\n"),
            &pinned(),
        ))
        .unwrap_or_else(|p| panic!("{p}"));
        let sec = policy.security();
        assert_eq!(sec.min_tcb, Some(SnpTcb::new(3, 0, 8, 115)));
        assert_eq!(sec.max_vmpl, 2);
        assert_eq!(sec.min_tcb_evaluation_data_number, Some(18));
        let defaults = Policy::parse(&base()).unwrap();
        assert_eq!(defaults.security().max_vmpl, 0);
        assert_eq!(defaults.security().min_tcb, None);
    }

    /// A service only sim evidence can match needs no bundle pin, even in a policy that also
    /// accepts hardware: the sim measurement covers the bundle.
    #[test]
    fn a_sim_only_service_needs_no_bundle_pin() {
        let yaml = hardware("sim, sgx", "", "").replacen(
            &format!("      - measurements:\n          - {MEASUREMENT}\n"),
            &format!("      - tee: sim\n        measurements:\n          - {MEASUREMENT}\n"),
            1,
        );
        Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}"));
    }

    #[test]
    fn every_semantic_problem_is_reported() {
        let yaml = base()
            .replacen("version: 1", "version: 0", 1)
            .replacen("issuer: ca", "issuer: nca", 1)
            .replacen("\"0600\"", "\"9\"", 1)
            .replacen("$$cloister:token$$", "$$cloister:tokn$$", 1);
        let problems = Policy::parse(&yaml).unwrap_err();
        for rule in [
            Rule::Version,
            Rule::X509Issuer,
            Rule::FileMode,
            Rule::PlaceholderSecret,
        ] {
            assert!(problems.has(rule), "{rule} missing from:\n{problems}");
        }
        assert_eq!(problems.len(), 4, "{problems}");
        let lines: Vec<_> = problems.items().iter().map(|p| p.line).collect();
        assert!(lines.is_sorted(), "{lines:?}");
    }

    #[test]
    fn display_names_file_line_column_path_and_rule() {
        let problems = Policy::parse(&mutate(MEASUREMENT, "zz"))
            .unwrap_err()
            .with_source_name("policy.yaml");
        assert_eq!(
            problems.to_string(),
            "policy.yaml:19:13: services[driver].attestation[0].measurements[0]: \
             `zz` is not hex of 32 or 48 bytes [rule: measurement-hex]"
        );
    }

    #[rstest]
    #[case::unquoted_octal("0640", 0o640)]
    #[case::rust_style("\"0o600\"", 0o600)]
    #[case::three_digits("\"400\"", 0o400)]
    fn file_modes(#[case] written: &str, #[case] mode: u32) {
        let policy = Policy::parse(&mutate("\"0600\"", written)).unwrap();
        assert_eq!(policy.service("driver").unwrap().files[0].mode, mode);
    }

    #[test]
    fn wildcard_with_debug_ignores_everything() {
        let policy = Policy::parse(&mutate("[INTEL-SA-00615]", "[\"*\"]")).unwrap();
        assert_eq!(policy.security().ignore_advisories, Advisories::All);
    }

    #[test]
    fn hash_is_over_the_exact_text() {
        let yaml = base();
        let a = Policy::parse(&yaml).unwrap();
        let b = Policy::parse(&format!("{yaml}# a comment\n")).unwrap();
        assert_eq!(a.hash(), SessionHash::of(&yaml));
        assert_ne!(a.hash(), b.hash());
    }

    #[test]
    fn yaml_to_json_resolves_scalars() {
        let json = yaml_to_json(&base()).unwrap();
        assert_eq!(json["version"], 1);
        assert_eq!(json["services"][0]["files"][0]["mode"], "0600");
    }

    #[test]
    fn mutated_documents_never_panic() {
        // A deterministic smoke fuzz (the cargo-fuzz target `policy_parse` goes further).
        let base = base();
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            usize::try_from(state % 1_000_003).unwrap()
        };
        const BYTES: &[u8] = b":-[]{}'\"&*!|>#@$%?,\n \t0aZ";
        for _ in 0..2000 {
            let mut doc = base.as_bytes().to_vec();
            for _ in 0..1 + next() % 4 {
                let i = next() % doc.len();
                let b = BYTES[next() % BYTES.len()];
                match next() % 3 {
                    0 => doc[i] = b,
                    1 => doc.insert(i, b),
                    _ => doc.truncate(i.max(1)),
                }
            }
            if let Ok(text) = std::str::from_utf8(&doc) {
                let _ = Policy::parse(text);
            }
        }
    }

    #[test]
    fn regression_long_keys_do_not_blow_up_paths() {
        let long = "k".repeat(400);
        let mut yaml = format!("{long}:\n");
        for i in 0..2000 {
            yaml.push_str(&format!("  {long}{i}: x\n"));
        }
        let problems = Policy::parse(&yaml).unwrap_err();
        assert!(
            problems.items()[0].path.chars().count() <= 41,
            "{}",
            problems.items()[0].path.len()
        );
    }

    /// The base policy with `secrets` appended to its secrets and `env` to the driver's
    /// environment.
    fn with_ae_keys(secrets: &str, env: &str) -> String {
        base()
            .replacen(
                "      TOKEN: $$cloister:token$$\n",
                &format!("      TOKEN: $$cloister:token$$\n{env}"),
                1,
            )
            .replacen("export:\n", &format!("{secrets}export:\n"), 1)
    }

    const AE_KEYS: &str =
        "  - name: CMK1\n    kind: cmk\n  - name: CEK1\n    kind: cek\n    cmk: CMK1\n";

    #[test]
    fn column_master_and_encryption_keys_validate() {
        let yaml = with_ae_keys(
            &format!(
                "{AE_KEYS}  - name: CMK2\n    kind: cmk\n    algorithm: rsa-3072\n\
                 \x20 - name: CMK3\n    kind: cmk\n    from:\n      file: /etc/cas/cmk3.pem\n"
            ),
            "      CLOISTER_CMK_CMK1: $$cloister:CMK1:pem$$\n      CLOISTER_CEK_CEK1: $$cloister:CEK1:hex$$\n\
             \x20     PLAIN: $$cloister:CEK1:key$$\n      B64: $$cloister:CEK1:base64$$\n",
        );
        let policy = Policy::parse(&yaml).unwrap_or_else(|p| panic!("{p}"));
        assert_eq!(
            policy.secret("CMK1").unwrap().kind,
            SecretKind::ColumnMasterKey {
                algorithm: KeyAlgorithm::Rsa2048,
                source: None
            }
        );
        assert_eq!(
            policy.secret("CMK3").unwrap().kind,
            SecretKind::ColumnMasterKey {
                algorithm: KeyAlgorithm::Rsa2048,
                source: Some(ImportSource::File("/etc/cas/cmk3.pem".into()))
            }
        );
        assert_eq!(
            policy.secret("CEK1").unwrap().kind,
            SecretKind::ColumnEncryptionKey { cmk: "CMK1".into() }
        );
        assert_eq!(policy.secret("CEK1").unwrap().kind.name(), "cek");
    }

    #[test]
    fn regression_an_imported_column_master_key_is_not_exported() {
        let yaml = with_ae_keys(
            "  - name: CMK3\n    kind: cmk\n    from:\n      file: /etc/cas/cmk3.pem\n",
            "",
        )
        .replacen(
            "export:\n",
            &format!(
                "export:\n  - secret: CMK3\n    to:\n      - session: test/other\n        \
                 owners: [{}]\n",
                crate::fixtures::key(2).fingerprint()
            ),
            1,
        );
        let problems = Policy::parse(&yaml).expect_err("must not validate");
        let p = problems
            .find(Rule::ExportSecret)
            .unwrap_or_else(|| panic!("no export-secret problem in:\n{problems}"));
        assert!(p.message.contains("imported"), "{p}");
    }

    #[rstest]
    #[case::cek_without_cmk(
        "  - name: CEK1\n    kind: cek\n",
        "",
        Rule::ColumnMasterKeyRef,
        "secrets[CEK1]"
    )]
    #[case::cek_unknown_cmk(
        "  - name: CEK1\n    kind: cek\n    cmk: CMK9\n",
        "",
        Rule::ColumnMasterKeyRef,
        "secrets[CEK1].cmk"
    )]
    #[case::cek_cmk_not_a_cmk(
        "  - name: CEK1\n    kind: cek\n    cmk: token\n",
        "",
        Rule::ColumnMasterKeyRef,
        "secrets[CEK1].cmk"
    )]
    #[case::cmk_not_rsa(
        "  - name: CMK1\n    kind: cmk\n    algorithm: ec-p256\n",
        "",
        Rule::ColumnMasterKeyRef,
        "secrets[CMK1].algorithm"
    )]
    #[case::cmk_from_session(
        &format!("  - name: CMK1\n    kind: cmk\n    from:\n      session: {{session: a/b, secret: k, session_hash: {}}}\n", "ab".repeat(32)),
        "",
        Rule::ColumnMasterKeyRef,
        "secrets[CMK1].from.session"
    )]
    #[case::cmk_from_relative_file(
        "  - name: CMK1\n    kind: cmk\n    from:\n      file: cmk.pem\n",
        "",
        Rule::ImportSource,
        "secrets[CMK1].from"
    )]
    #[case::cmk_takes_no_size(
        "  - name: CMK1\n    kind: cmk\n    size: 16\n",
        "",
        Rule::SecretField,
        "secrets[CMK1].size"
    )]
    #[case::cek_takes_no_algorithm(
        "  - name: CMK1\n    kind: cmk\n  - name: CEK1\n    kind: cek\n    cmk: CMK1\n    algorithm: rsa-2048\n",
        "",
        Rule::SecretField,
        "secrets[CEK1].algorithm"
    )]
    #[case::cmk_ref_on_another_kind(
        "  - name: CMK1\n    kind: cmk\n  - name: k\n    kind: aes256\n    cmk: CMK1\n",
        "",
        Rule::SecretField,
        "secrets[k].cmk"
    )]
    #[case::cek_has_no_default_format(
        AE_KEYS,
        "      CEK: $$cloister:CEK1$$\n",
        Rule::PlaceholderFormat,
        "services[driver].env.CEK"
    )]
    #[case::cek_has_no_pem(
        AE_KEYS,
        "      CEK: $$cloister:CEK1:pem$$\n",
        Rule::PlaceholderFormat,
        "services[driver].env.CEK"
    )]
    #[case::cmk_has_no_chain(
        AE_KEYS,
        "      CMK: $$cloister:CMK1:chain$$\n",
        Rule::PlaceholderFormat,
        "services[driver].env.CMK"
    )]
    fn invalid_column_keys(
        #[case] secrets: &str,
        #[case] env: &str,
        #[case] rule: Rule,
        #[case] path: &str,
    ) {
        let problems = Policy::parse(&with_ae_keys(secrets, env)).expect_err("must not validate");
        let p = problems
            .find(rule)
            .unwrap_or_else(|| panic!("no {rule} problem in:\n{problems}"));
        assert_eq!(p.path, path, "{p}");
    }
}

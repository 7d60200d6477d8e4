//! Located validation problems: what is wrong, where, and which rule says so.

use std::fmt;

/// The rule a policy document broke. Each has a stable kebab-case id (shown as `[rule: id]`) that
/// tools and tests can match on; `docs/policy.md` lists them all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    // ----- YAML -----
    /// The text is not well-formed YAML.
    YamlSyntax,
    /// Anchors and aliases are not accepted: every value is written where it applies.
    YamlAlias,
    /// YAML tags (`!!str`, `!custom`) are not accepted.
    YamlTag,
    /// The document exceeds a size or nesting limit.
    YamlLimits,
    /// A mapping key is not a plain string.
    KeyType,
    /// A mapping has the same key twice.
    DuplicateKey,
    // ----- structure -----
    /// A field the language does not have (often a typo).
    UnknownField,
    /// A required field is absent.
    MissingField,
    /// A value of the wrong type or out of range.
    Type,
    /// A value that is not one of the allowed names.
    UnknownVariant,
    // ----- identity and history -----
    /// `name` is not `namespace/name` of lower-case letters, digits, `-`, `_` and `.`.
    SessionName,
    /// `version` is 0.
    Version,
    /// `predecessor` is present on version 1, absent on a later version, or not a SHA-256 hex.
    Predecessor,
    // ----- access -----
    /// The policy names no owner.
    OwnersRequired,
    /// An owner's key is not an Ed25519 SPKI public key (PEM or base64 DER).
    OwnerKey,
    /// A read principal's key or fingerprint is malformed.
    PrincipalKey,
    /// The same key or name is listed twice among the owners or principals.
    DuplicatePrincipal,
    /// `access.update.approvals` is 0 or more than the number of owners.
    Approvals,
    // ----- security -----
    /// A wildcard in `security.ignore_advisories` without `debug` in `security.tolerate`.
    AdvisoryWildcard,
    /// An advisory id is empty or has characters other than letters, digits, `-` and `_`.
    AdvisoryId,
    /// The `rego` rule does not parse.
    RegoSyntax,
    /// The policy has a `rego` rule but this build has no Rego support.
    RegoUnsupported,
    /// `tees` lists `sev-snp` without `min_tcb` and without `snp-any-tcb` tolerated; or
    /// `min_tcb` is given together with `snp-any-tcb`, or without `sev-snp` in `tees`.
    SnpMinTcb,
    /// `max_vmpl` is above 3, or given without `sev-snp` in `tees`.
    SnpVmpl,
    /// `min_tcb_evaluation_data_number` is given without `sgx` or `tdx` in `tees`.
    TcbEvaluationDataNumber,
    // ----- services -----
    /// A service name is not lower-case letters, digits and `-`.
    ServiceName,
    /// Two services have the same name.
    DuplicateService,
    /// A service lists no attestation variant, so no workload could ever match it.
    AttestationRequired,
    /// An attestation variant must pin either `measurements` or `signer` (not both, not neither).
    AttestationVariant,
    /// A measurement is not hex of 32 or 48 bytes.
    MeasurementHex,
    /// A signer is not hex of 32 or 48 bytes.
    SignerHex,
    /// An svn range has `min > max`.
    SvnRange,
    /// A pinned extra claim has an empty name or value.
    ExtraClaim,
    /// A service that hardware evidence can match does not pin its app bundle: on a hardware
    /// TEE the measurement covers the launched image, not the bundle, so `env` must set
    /// `CLOISTER_BUNDLE_DIGEST` to the bundle's digest (64 hex digits).
    BundleDigest,
    /// An environment variable name is not `[A-Za-z_][A-Za-z0-9_]*`.
    EnvName,
    /// An injected file path is not absolute, or has `..` or NUL.
    FilePath,
    /// A file mode is not a quoted octal string such as `"0600"`.
    FileMode,
    /// Two injected files of a service have the same path.
    DuplicateFile,
    /// `@@N` appears outside `args`, or is malformed.
    HostArg,
    // ----- secrets -----
    /// A secret name is not `[A-Za-z][A-Za-z0-9_-]*`.
    SecretName,
    /// Two secrets have the same name.
    DuplicateSecret,
    /// A field is given that the secret's kind does not take, or a required one is missing.
    SecretField,
    /// A generated secret's size is 0 or too large.
    SecretSize,
    /// An `x509` secret's `issuer` is not an `x509-ca` secret of this policy.
    X509Issuer,
    /// A `private_key` reference is not a `private-key` secret of this policy.
    PrivateKeyRef,
    /// A subject alternative name or common name is empty or has control characters.
    X509Name,
    /// A `cek` secret's `cmk` is missing or not a `cmk` secret of this policy, or a `cmk`
    /// secret's algorithm is not RSA or its import source is another session.
    ColumnMasterKeyRef,
    /// An import source is malformed (relative path, bad env name, bad session hash…).
    ImportSource,
    // ----- placeholders -----
    /// A `$$cloister:` placeholder is not closed or has an empty name.
    PlaceholderSyntax,
    /// A placeholder names a secret the policy does not define.
    PlaceholderSecret,
    /// A placeholder format is unknown or does not apply to the secret's kind.
    PlaceholderFormat,
    // ----- export -----
    /// An export names a secret the policy does not define, or an imported one.
    ExportSecret,
    /// An export's importer is not a valid session name.
    ExportSession,
    /// An export's importer is not bound to an identity: it needs exactly one of
    /// `session_hash` and `owners` (fingerprints).
    ExportIdentity,
}

impl Rule {
    /// The stable id, as shown in `[rule: …]`.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::YamlSyntax => "yaml-syntax",
            Rule::YamlAlias => "yaml-alias",
            Rule::YamlTag => "yaml-tag",
            Rule::YamlLimits => "yaml-limits",
            Rule::KeyType => "key-type",
            Rule::DuplicateKey => "duplicate-key",
            Rule::UnknownField => "unknown-field",
            Rule::MissingField => "missing-field",
            Rule::Type => "type",
            Rule::UnknownVariant => "unknown-variant",
            Rule::SessionName => "session-name",
            Rule::Version => "version",
            Rule::Predecessor => "predecessor",
            Rule::OwnersRequired => "owners-required",
            Rule::OwnerKey => "owner-key",
            Rule::PrincipalKey => "principal-key",
            Rule::DuplicatePrincipal => "duplicate-principal",
            Rule::Approvals => "approvals",
            Rule::AdvisoryWildcard => "advisory-wildcard",
            Rule::AdvisoryId => "advisory-id",
            Rule::RegoSyntax => "rego-syntax",
            Rule::RegoUnsupported => "rego-unsupported",
            Rule::SnpMinTcb => "snp-min-tcb",
            Rule::SnpVmpl => "snp-vmpl",
            Rule::TcbEvaluationDataNumber => "tcb-evaluation-data-number",
            Rule::ServiceName => "service-name",
            Rule::DuplicateService => "duplicate-service",
            Rule::AttestationRequired => "attestation-required",
            Rule::AttestationVariant => "attestation-variant",
            Rule::MeasurementHex => "measurement-hex",
            Rule::SignerHex => "signer-hex",
            Rule::SvnRange => "svn-range",
            Rule::ExtraClaim => "extra-claim",
            Rule::BundleDigest => "bundle-digest",
            Rule::EnvName => "env-name",
            Rule::FilePath => "file-path",
            Rule::FileMode => "file-mode",
            Rule::DuplicateFile => "duplicate-file",
            Rule::HostArg => "host-arg",
            Rule::SecretName => "secret-name",
            Rule::DuplicateSecret => "duplicate-secret",
            Rule::SecretField => "secret-field",
            Rule::SecretSize => "secret-size",
            Rule::X509Issuer => "x509-issuer",
            Rule::PrivateKeyRef => "private-key-ref",
            Rule::X509Name => "x509-name",
            Rule::ColumnMasterKeyRef => "cmk-ref",
            Rule::ImportSource => "import-source",
            Rule::PlaceholderSyntax => "placeholder-syntax",
            Rule::PlaceholderSecret => "placeholder-secret",
            Rule::PlaceholderFormat => "placeholder-format",
            Rule::ExportSecret => "export-secret",
            Rule::ExportSession => "export-session",
            Rule::ExportIdentity => "export-identity",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing wrong with a policy document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document, e.g. `services[driver].attestation[0].measurements[1]`. Elements of
    /// lists whose items have a `name` are shown by name, others by index; empty for the whole
    /// document.
    pub path: String,
    /// 1-based line of the offending node.
    pub line: usize,
    /// 1-based column (in characters) of the offending node.
    pub column: usize,
    /// The rule that was broken.
    pub rule: Rule,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.line, self.column)?;
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        write!(f, "{} [rule: {}]", self.message, self.rule)
    }
}

/// Every problem found in a policy document, in document order.
///
/// Structural problems (YAML syntax, unknown fields, wrong types) stop parsing, so there is one;
/// once the document has the right shape every semantic rule is checked and all failures are kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems {
    source: Option<String>,
    items: Vec<Problem>,
}

impl Problems {
    pub(crate) fn new(mut items: Vec<Problem>) -> Self {
        items.sort_by_key(|p| (p.line, p.column));
        Self {
            source: None,
            items,
        }
    }

    /// Name the document (usually its file name) so that `Display` prefixes each line with it,
    /// compiler style: `policy.yaml:12:7: …`.
    pub fn with_source_name(mut self, name: impl Into<String>) -> Self {
        self.source = Some(name.into());
        self
    }

    /// The problems, in document order.
    pub fn items(&self) -> &[Problem] {
        &self.items
    }

    /// Whether a problem with `rule` was found.
    pub fn has(&self, rule: Rule) -> bool {
        self.items.iter().any(|p| p.rule == rule)
    }

    /// The first problem with `rule`, if any.
    pub fn find(&self, rule: Rule) -> Option<&Problem> {
        self.items.iter().find(|p| p.rule == rule)
    }

    /// The number of problems.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether there are none (never the case for a returned error).
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if let Some(source) = &self.source {
                write!(f, "{source}:")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_compiler_style() {
        let problems = Problems::new(vec![Problem {
            path: "services[driver].attestation[0].measurements[1]".into(),
            line: 12,
            column: 7,
            rule: Rule::MeasurementHex,
            message: "measurement is not hex".into(),
        }])
        .with_source_name("policy.yaml");
        assert_eq!(
            problems.to_string(),
            "policy.yaml:12:7: services[driver].attestation[0].measurements[1]: \
             measurement is not hex [rule: measurement-hex]"
        );
    }

    #[test]
    fn problems_are_sorted_by_position() {
        let p = |line, column| Problem {
            path: String::new(),
            line,
            column,
            rule: Rule::Type,
            message: "x".into(),
        };
        let problems = Problems::new(vec![p(3, 1), p(1, 5), p(1, 2)]);
        let order: Vec<_> = problems
            .items()
            .iter()
            .map(|p| (p.line, p.column))
            .collect();
        assert_eq!(order, vec![(1, 2), (1, 5), (3, 1)]);
        assert_eq!(
            problems.to_string(),
            "1:2: x [rule: type]\n1:5: x [rule: type]\n3:1: x [rule: type]"
        );
    }
}

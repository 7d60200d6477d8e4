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

    fn access(&mut self, access: &doc::AccessDoc) -> Access {
        let mut owners: Vec<Owner> = Vec::new();
        if access.owners.is_empty() {
            self.report(
                at!["access", "owners"],
                Rule::OwnersRequired,
                "a policy needs at least one owner",
            );
        }
        let mut seen_names = BTreeSet::new();
        for (i, o) in access.owners.iter().enumerate() {
            if !seen_names.insert(o.name.as_str()) {
                self.report(
                    at!["access", "owners", i, "name"],
                    Rule::DuplicatePrincipal,
                    format!("owner `{}` is listed twice", o.name),
                );
            }
            match PublicKey::parse(&o.key) {
                Ok(key) => {
                    if owners
                        .iter()
                        .any(|x| x.key.fingerprint() == key.fingerprint())
                    {
                        self.report(
                            at!["access", "owners", i, "key"],
                            Rule::DuplicatePrincipal,
                            format!("owner `{}` has the same key as another owner", o.name),
                        );
                    } else {
                        owners.push(Owner {
                            name: o.name.clone(),
                            key,
                        });
                    }
                }
                Err(e) => self.report(at!["access", "owners", i, "key"], Rule::OwnerKey, reason(e)),
            }
        }

        let mut readers: Vec<Reader> = Vec::new();
        for (i, r) in access.read.iter().enumerate() {
            let fingerprint = match (&r.key, &r.fingerprint) {
                (Some(key), None) => match spki_der(key) {
                    Ok(der) => Some(KeyFingerprint::of_spki_der(&der)),
                    Err(e) => {
                        self.report(
                            at!["access", "read", i, "key"],
                            Rule::PrincipalKey,
                            reason(e),
                        );
                        None
                    }
                },
                (None, Some(fp)) => match fp.parse::<KeyFingerprint>() {
                    Ok(fp) => Some(fp),
                    Err(_) => {
                        self.report(
                            at!["access", "read", i, "fingerprint"],
                            Rule::PrincipalKey,
                            "fingerprint is not a SHA-256 (64 hex digits)",
                        );
                        None
                    }
                },
                _ => {
                    self.report(
                        at!["access", "read", i],
                        Rule::PrincipalKey,
                        "give exactly one of `key` and `fingerprint`",
                    );
                    None
                }
            };
            if let Some(fingerprint) = fingerprint {
                if readers.iter().any(|x| x.fingerprint == fingerprint) {
                    self.report(
                        at!["access", "read", i],
                        Rule::DuplicatePrincipal,
                        format!("principal `{}` is listed twice", r.name),
                    );
                }
                readers.push(Reader {
                    name: r.name.clone(),
                    fingerprint,
                });
            }
        }

        let approvals = access
            .update
            .as_ref()
            .and_then(|u| u.approvals)
            .unwrap_or(1);
        let approvals = usize::try_from(approvals).unwrap_or(usize::MAX);
        if approvals == 0 {
            self.report(
                at!["access", "update", "approvals"],
                Rule::Approvals,
                "approvals must be at least 1",
            );
        } else if !access.owners.is_empty() && approvals > access.owners.len() {
            self.report(
                at!["access", "update", "approvals"],
                Rule::Approvals,
                format!(
                    "{approvals} approvals required but only {} owners",
                    access.owners.len()
                ),
            );
        }
        Access {
            owners,
            readers,
            approvals,
        }
    }

    fn security(&mut self, sec: &doc::SecurityDoc) -> Security {
        let tees: BTreeSet<Tee> = sec.tees.iter().map(|t| tee(*t)).collect();
        let tolerate: BTreeSet<Tolerate> = sec.tolerate.iter().copied().collect();
        let mut all = false;
        let mut ids = BTreeSet::new();
        for (i, id) in sec.ignore_advisories.iter().enumerate() {
            if id == "*" {
                if !tolerate.contains(&Tolerate::Debug) {
                    self.report(
                        at!["security", "ignore_advisories", i],
                        Rule::AdvisoryWildcard,
                        "`*` ignores every advisory and is accepted only with `debug` tolerated \
                         (development); list advisory ids instead",
                    );
                }
                all = true;
            } else if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                self.report(
                    at!["security", "ignore_advisories", i],
                    Rule::AdvisoryId,
                    format!("`{id}` is not an advisory id (only `*` alone is a wildcard)"),
                );
            } else {
                ids.insert(id.clone());
            }
        }
        let rego = sec
            .rego
            .as_ref()
            .and_then(|source| match RegoRule::compile(source) {
                Ok(rule) => Some(rule),
                Err(message) => {
                    let rule = if cfg!(feature = "rego") {
                        Rule::RegoSyntax
                    } else {
                        Rule::RegoUnsupported
                    };
                    self.report(at!["security", "rego"], rule, message);
                    None
                }
            });
        let (min_tcb, max_vmpl) = self.snp_rules(sec, &tees, &tolerate);
        if sec.min_tcb_evaluation_data_number.is_some()
            && !tees.contains(&Tee::Sgx)
            && !tees.contains(&Tee::Tdx)
        {
            self.report(
                at!["security", "min_tcb_evaluation_data_number"],
                Rule::TcbEvaluationDataNumber,
                "min_tcb_evaluation_data_number applies to DCAP collateral, but `tees` lists \
                 neither `sgx` nor `tdx`",
            );
        }
        Security {
            tees,
            tolerate,
            ignore_advisories: if all {
                Advisories::All
            } else {
                Advisories::Only(ids)
            },
            rego,
            min_tcb,
            max_vmpl,
            min_tcb_evaluation_data_number: sec.min_tcb_evaluation_data_number,
        }
    }

    /// The SEV-SNP rules: a TCB floor whenever `sev-snp` is accepted (or `snp-any-tcb` said
    /// out loud), and a VMPL bound of 0 to 3 (default 0).
    fn snp_rules(
        &mut self,
        sec: &doc::SecurityDoc,
        tees: &BTreeSet<Tee>,
        tolerate: &BTreeSet<Tolerate>,
    ) -> (Option<SnpTcb>, u32) {
        let snp = tees.contains(&Tee::SevSnp);
        let any_tcb = tolerate.contains(&Tolerate::SnpAnyTcb);
        match (&sec.min_tcb, snp, any_tcb) {
            (None, true, false) => {
                let i = sec
                    .tees
                    .iter()
                    .position(|t| *t == TeeName::SevSnp)
                    .unwrap_or(0);
                self.report(
                    at!["security", "tees", i],
                    Rule::SnpMinTcb,
                    "accepting `sev-snp` needs a platform TCB floor: set `min_tcb` (bootloader, \
                     tee, snp, microcode), or tolerate `snp-any-tcb` to accept any TCB",
                );
            }
            (Some(_), _, true) => self.report(
                at!["security", "min_tcb"],
                Rule::SnpMinTcb,
                "`min_tcb` and the `snp-any-tcb` toleration contradict each other; keep one",
            ),
            (Some(_), false, _) => self.report(
                at!["security", "min_tcb"],
                Rule::SnpMinTcb,
                "min_tcb applies to SEV-SNP reports, but `tees` does not list `sev-snp`",
            ),
            _ => {}
        }
        let min_tcb = sec
            .min_tcb
            .map(|t| SnpTcb::new(t.bootloader, t.tee, t.snp, t.microcode));
        let max_vmpl = match sec.max_vmpl {
            None => 0,
            Some(v) if v > 3 => {
                self.report(
                    at!["security", "max_vmpl"],
                    Rule::SnpVmpl,
                    format!("max_vmpl {v} is not a VMPL (0 to 3)"),
                );
                0
            }
            Some(v) => {
                if !snp {
                    self.report(
                        at!["security", "max_vmpl"],
                        Rule::SnpVmpl,
                        "max_vmpl applies to SEV-SNP reports, but `tees` does not list `sev-snp`",
                    );
                }
                v
            }
        };
        (min_tcb, max_vmpl)
    }

    /// The services; `hardware`: the policy accepts a hardware TEE, so every service that
    /// hardware evidence can match must pin its app bundle.
    fn services(
        &mut self,
        docs: &[doc::ServiceDoc],
        shapes: &HashMap<&str, ValueShape>,
        hardware: bool,
    ) -> Vec<Service> {
        let mut services = Vec::new();
        let mut names = BTreeSet::new();
        for (i, s) in docs.iter().enumerate() {
            if !is_service_name(&s.name) {
                self.report(
                    at!["services", i, "name"],
                    Rule::ServiceName,
                    format!(
                        "`{}` is not lower-case letters, digits and `-` (at most 63)",
                        s.name
                    ),
                );
            }
            if !names.insert(s.name.as_str()) {
                self.report(
                    at!["services", i, "name"],
                    Rule::DuplicateService,
                    format!("service `{}` is defined twice", s.name),
                );
            }
            if s.attestation.is_empty() {
                self.report(
                    at!["services", i, "attestation"],
                    Rule::AttestationRequired,
                    "a service needs at least one attestation variant",
                );
            }
            let attestation = s
                .attestation
                .iter()
                .enumerate()
                .filter_map(|(j, a)| self.variant(i, j, a))
                .collect();
            let sim_only = !s.attestation.is_empty()
                && s.attestation.iter().all(|a| a.tee == Some(TeeName::Sim));
            if hardware && !sim_only {
                self.bundle_pin(i, s);
            }

            if let Some(command) = &s.command {
                self.template(at!["services", i, "command"], command, false, shapes);
            }
            for (j, arg) in s.args.iter().enumerate() {
                self.template(at!["services", i, "args", j], arg, true, shapes);
            }
            for (k, value) in &s.env {
                if !is_env_name(k) {
                    self.report_key(
                        at!["services", i, "env"],
                        k,
                        Rule::EnvName,
                        format!("`{k}` is not an environment variable name"),
                    );
                }
                self.template(at!["services", i, "env", k], value, false, shapes);
            }
            let mut files: Vec<InjectedFile> = Vec::new();
            for (j, f) in s.files.iter().enumerate() {
                if !is_safe_absolute(&f.path) {
                    self.report(
                        at!["services", i, "files", j, "path"],
                        Rule::FilePath,
                        format!("`{}` is not an absolute path without `..`", f.path),
                    );
                }
                if files.iter().any(|x| x.path == Path::new(&f.path)) {
                    self.report(
                        at!["services", i, "files", j, "path"],
                        Rule::DuplicateFile,
                        format!("file `{}` is injected twice", f.path),
                    );
                }
                let mode = match &f.mode {
                    None => DEFAULT_FILE_MODE,
                    Some(m) => parse_mode(m).unwrap_or_else(|| {
                        self.report(
                            at!["services", i, "files", j, "mode"],
                            Rule::FileMode,
                            format!("`{m}` is not an octal mode such as \"0600\" (quote it; at most 0777)"),
                        );
                        DEFAULT_FILE_MODE
                    }),
                };
                self.template(
                    at!["services", i, "files", j, "content"],
                    &f.content,
                    false,
                    shapes,
                );
                files.push(InjectedFile {
                    path: PathBuf::from(&f.path),
                    content: f.content.clone(),
                    mode,
                });
            }
            services.push(Service {
                name: s.name.clone(),
                attestation,
                command: s.command.clone(),
                args: s.args.clone(),
                env: s.env.clone(),
                files,
            });
        }
        services
    }

    /// On hardware the TEE measures the launched image, not the app bundle: the service pins
    /// the bundle with `env.CLOISTER_BUNDLE_DIGEST`, which the runtime checks before it runs it.
    fn bundle_pin(&mut self, i: usize, s: &doc::ServiceDoc) {
        match s.env.get(BUNDLE_DIGEST_ENV) {
            None => self.report(
                at!["services", i, "env", BUNDLE_DIGEST_ENV],
                Rule::BundleDigest,
                format!(
                    "the policy accepts a hardware TEE, whose measurement does not cover the app \
                     bundle: set env `{BUNDLE_DIGEST_ENV}` to the bundle's digest (`cloister \
                     measure --json` prints it), or restrict the service to `tee: sim`"
                ),
            ),
            Some(v) if !is_bundle_digest(v) => self.report(
                at!["services", i, "env", BUNDLE_DIGEST_ENV],
                Rule::BundleDigest,
                format!(
                    "`{}` is not a bundle digest (64 hex digits, written out: no placeholder)",
                    short(v)
                ),
            ),
            Some(_) => {}
        }
    }

    fn variant(
        &mut self,
        i: usize,
        j: usize,
        a: &doc::AttestationDoc,
    ) -> Option<AttestationVariant> {
        let here = at!["services", i, "attestation", j];
        let pin = match (a.measurements.is_empty(), &a.signer) {
            (false, None) => {
                if a.product_id.is_some() || a.svn.is_some() {
                    self.report(
                        here,
                        Rule::AttestationVariant,
                        "`product_id` and `svn` go with `signer`, not with `measurements`",
                    );
                }
                let mut ms = Vec::new();
                for (k, m) in a.measurements.iter().enumerate() {
                    match digest_hex(m) {
                        Some(bytes) => ms.push(bytes),
                        None => self.report(
                            at!["services", i, "attestation", j, "measurements", k],
                            Rule::MeasurementHex,
                            format!("`{}` is not hex of 32 or 48 bytes", short(m)),
                        ),
                    }
                }
                Pin::Measurements(ms)
            }
            (true, Some(signer)) => {
                let svn = SvnRange {
                    min: a.svn.as_ref().and_then(|s| s.min),
                    max: a.svn.as_ref().and_then(|s| s.max),
                };
                if let (Some(min), Some(max)) = (svn.min, svn.max)
                    && min > max
                {
                    self.report(
                        at!["services", i, "attestation", j, "svn"],
                        Rule::SvnRange,
                        format!("svn range is empty: min {min} > max {max}"),
                    );
                }
                let signer = digest_hex(signer).unwrap_or_else(|| {
                    self.report(
                        at!["services", i, "attestation", j, "signer"],
                        Rule::SignerHex,
                        format!("`{}` is not hex of 32 or 48 bytes", short(signer)),
                    );
                    Vec::new()
                });
                Pin::Signer {
                    signer,
                    product_id: a.product_id,
                    svn,
                }
            }
            _ => {
                self.report(
                    here,
                    Rule::AttestationVariant,
                    "an attestation variant pins either `measurements` or `signer` (one of them)",
                );
                return None;
            }
        };
        let mut extra = BTreeMap::new();
        for (k, v) in &a.extra {
            if k.is_empty() || v.trim().is_empty() {
                self.report(
                    at!["services", i, "attestation", j, "extra", k],
                    Rule::ExtraClaim,
                    "extra claims need a name and a value",
                );
            }
            extra.insert(k.clone(), v.trim().to_ascii_lowercase());
        }
        Some(AttestationVariant {
            tee: a.tee.map(tee),
            pin,
            extra,
        })
    }

    /// Check placeholders and host arguments of one template.
    fn template(
        &mut self,
        segs: &[Seg<'_>],
        text: &str,
        host_args: bool,
        shapes: &HashMap<&str, ValueShape>,
    ) {
        let pieces = match scan(text) {
            Ok(pieces) => pieces,
            Err(e) => {
                self.report(segs, Rule::PlaceholderSyntax, reason(e));
                return;
            }
        };
        for piece in pieces {
            match piece {
                Piece::Text(_) => {}
                Piece::HostArg { index, .. } => {
                    if !host_args {
                        self.report(
                            segs,
                            Rule::HostArg,
                            format!("`@@{index}` (a host argument) is only allowed in `args`"),
                        );
                    }
                }
                Piece::Secret { name, format, .. } => {
                    let Some(shape) = shapes.get(name) else {
                        self.report(
                            segs,
                            Rule::PlaceholderSecret,
                            format!("placeholder names unknown secret `{name}`"),
                        );
                        continue;
                    };
                    let parsed = match format {
                        None => None,
                        Some(f) => match Format::parse(f) {
                            Some(f) => Some(f),
                            None => {
                                self.report(
                                    segs,
                                    Rule::PlaceholderFormat,
                                    format!(
                                        "unknown format `{f}` in `$$cloister:{name}:{f}$$` \
                                         (use hex, base64, pem, crt, chain or key)"
                                    ),
                                );
                                continue;
                            }
                        },
                    };
                    if !shape.accepts(parsed) {
                        self.report(
                            segs,
                            Rule::PlaceholderFormat,
                            format!(
                                "format `{}` does not apply to secret `{name}` ({})",
                                parsed.map_or("default", Format::as_str),
                                shape.describe()
                            ),
                        );
                    }
                }
            }
        }
    }

    fn secrets(&mut self, own_name: &str, docs: &[SecretDoc]) -> Vec<Secret> {
        let kinds: HashMap<&str, SecretKindName> =
            docs.iter().map(|s| (s.name.as_str(), s.kind)).collect();
        let mut secrets = Vec::new();
        let mut names = BTreeSet::new();
        for (i, s) in docs.iter().enumerate() {
            if !is_secret_name(&s.name) {
                self.report(
                    at!["secrets", i, "name"],
                    Rule::SecretName,
                    format!(
                        "`{}` is not a secret name ([A-Za-z][A-Za-z0-9_-]*, at most 64)",
                        s.name
                    ),
                );
            }
            if !names.insert(s.name.as_str()) {
                self.report(
                    at!["secrets", i, "name"],
                    Rule::DuplicateSecret,
                    format!("secret `{}` is defined twice", s.name),
                );
                continue;
            }
            if let Some(kind) = self.secret(own_name, i, s, &kinds) {
                secrets.push(Secret {
                    name: s.name.clone(),
                    kind,
                });
            }
        }
        secrets
    }

    fn secret(
        &mut self,
        own_name: &str,
        i: usize,
        s: &SecretDoc,
        kinds: &HashMap<&str, SecretKindName>,
    ) -> Option<SecretKind> {
        use SecretKindName as K;
        let here = at!["secrets", i];
        let this_kind = kind_name(s.kind);
        // Which optional fields this kind takes.
        let present: [(&str, bool); 9] = [
            ("size", s.size.is_some()),
            ("algorithm", s.algorithm.is_some()),
            ("common_name", s.common_name.is_some()),
            ("sans", !s.sans.is_empty()),
            ("validity_days", s.validity_days.is_some()),
            ("issuer", s.issuer.is_some()),
            ("private_key", s.private_key.is_some()),
            ("cmk", s.cmk.is_some()),
            ("from", s.from.is_some()),
        ];
        let allowed: &[&str] = match s.kind {
            K::Ascii | K::Binary => &["size"],
            K::PrivateKey => &["algorithm"],
            K::X509Ca => &["algorithm", "common_name", "validity_days"],
            K::X509 => &[
                "algorithm",
                "common_name",
                "sans",
                "validity_days",
                "issuer",
                "private_key",
            ],
            K::Aes256 => &[],
            K::Cmk => &["algorithm", "from"],
            K::Cek => &["cmk"],
            K::Import => &["from"],
        };
        for (field, is_present) in present {
            if is_present && !allowed.contains(&field) {
                self.report_key(
                    here,
                    field,
                    Rule::SecretField,
                    format!("a `{this_kind}` secret takes no `{field}`"),
                );
            }
        }
        let size = match s.size {
            None => DEFAULT_SECRET_SIZE,
            Some(n) if (1..=MAX_SECRET_SIZE).contains(&n) => n,
            Some(n) => {
                self.report(
                    at!["secrets", i, "size"],
                    Rule::SecretSize,
                    format!("size {n} is not in 1..={MAX_SECRET_SIZE}"),
                );
                DEFAULT_SECRET_SIZE
            }
        };
        let algorithm = s.algorithm.unwrap_or(KeyAlgorithm::EcP256);
        let validity = |default: u32, v: &mut Self| match s.validity_days {
            None => default,
            Some(d) if (1..=MAX_VALIDITY_DAYS).contains(&d) => d,
            Some(d) => {
                v.report(
                    at!["secrets", i, "validity_days"],
                    Rule::SecretField,
                    format!("validity_days {d} is not in 1..={MAX_VALIDITY_DAYS}"),
                );
                default
            }
        };
        let common_name = s.common_name.clone().unwrap_or_else(|| s.name.clone());
        if matches!(s.kind, K::X509Ca | K::X509) && !is_x509_name(&common_name) {
            self.report(
                at!["secrets", i, "common_name"],
                Rule::X509Name,
                "common_name is empty, longer than 64, or has control characters",
            );
        }

        Some(match s.kind {
            K::Cmk => {
                let algorithm = s.algorithm.unwrap_or(KeyAlgorithm::Rsa2048);
                if !matches!(
                    algorithm,
                    KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 | KeyAlgorithm::Rsa4096
                ) {
                    self.report(
                        at!["secrets", i, "algorithm"],
                        Rule::ColumnMasterKeyRef,
                        "a `cmk` is an RSA key: rsa-2048, rsa-3072 or rsa-4096",
                    );
                }
                let source = match &s.from {
                    None => None,
                    Some(ImportSourceDoc::Session(_)) => {
                        self.report(
                            at!["secrets", i, "from", "session"],
                            Rule::ColumnMasterKeyRef,
                            "a `cmk` is generated or imported as PEM from `file`, `env` or \
                             `kubernetes`; import another session's key with `kind: import`",
                        );
                        None
                    }
                    Some(from) => match self.import_source(own_name, i, from) {
                        ImportSource::Session(_) => None,
                        source => Some(source),
                    },
                };
                SecretKind::ColumnMasterKey { algorithm, source }
            }
            K::Cek => {
                let Some(cmk) = &s.cmk else {
                    self.report(
                        here,
                        Rule::ColumnMasterKeyRef,
                        "a `cek` secret needs `cmk` (the cmk secret that wraps it)",
                    );
                    return None;
                };
                match kinds.get(cmk.as_str()) {
                    Some(K::Cmk) => {}
                    None => self.report(
                        at!["secrets", i, "cmk"],
                        Rule::ColumnMasterKeyRef,
                        format!("cmk `{cmk}` is not a secret of this policy"),
                    ),
                    Some(other) => self.report(
                        at!["secrets", i, "cmk"],
                        Rule::ColumnMasterKeyRef,
                        format!(
                            "cmk `{cmk}` is a `{}` secret, not a `cmk`",
                            kind_name(*other)
                        ),
                    ),
                }
                SecretKind::ColumnEncryptionKey { cmk: cmk.clone() }
            }
            K::Ascii => SecretKind::Ascii { size },
            K::Binary => SecretKind::Binary { size },
            K::Aes256 => SecretKind::Aes256,
            K::PrivateKey => SecretKind::PrivateKey { algorithm },
            K::X509Ca => SecretKind::X509Ca {
                algorithm,
                common_name,
                validity_days: validity(DEFAULT_CA_DAYS, self),
            },
            K::X509 => {
                let validity_days = validity(DEFAULT_CERT_DAYS, self);
                for (k, san) in s.sans.iter().enumerate() {
                    if !is_x509_name(san) || san.contains(' ') {
                        self.report(
                            at!["secrets", i, "sans", k],
                            Rule::X509Name,
                            format!("`{san}` is not a DNS name or IP address"),
                        );
                    }
                }
                let Some(issuer) = &s.issuer else {
                    self.report(
                        here,
                        Rule::X509Issuer,
                        "an `x509` secret needs an `issuer` (an x509-ca secret)",
                    );
                    return None;
                };
                match kinds.get(issuer.as_str()) {
                    None => self.report(
                        at!["secrets", i, "issuer"],
                        Rule::X509Issuer,
                        format!("issuer `{issuer}` is not a secret of this policy"),
                    ),
                    Some(K::X509Ca) => {}
                    Some(other) => self.report(
                        at!["secrets", i, "issuer"],
                        Rule::X509Issuer,
                        format!(
                            "issuer `{issuer}` is a `{}` secret, not an `x509-ca`",
                            kind_name(*other)
                        ),
                    ),
                }
                if let Some(key) = &s.private_key
                    && kinds.get(key.as_str()) != Some(&K::PrivateKey)
                {
                    self.report(
                        at!["secrets", i, "private_key"],
                        Rule::PrivateKeyRef,
                        format!("`{key}` is not a `private-key` secret of this policy"),
                    );
                }
                SecretKind::X509 {
                    issuer: issuer.clone(),
                    algorithm,
                    common_name,
                    sans: s.sans.clone(),
                    validity_days,
                    private_key: s.private_key.clone(),
                }
            }
            K::Import => {
                let Some(from) = &s.from else {
                    self.report(here, Rule::SecretField, "an `import` secret needs `from`");
                    return None;
                };
                SecretKind::Import(self.import_source(own_name, i, from))
            }
        })
    }

    fn import_source(&mut self, own_name: &str, i: usize, from: &ImportSourceDoc) -> ImportSource {
        let from_at = at!["secrets", i, "from"];
        match from {
            ImportSourceDoc::File(path) => {
                if !is_safe_absolute(path) {
                    self.report(
                        from_at,
                        Rule::ImportSource,
                        format!("`{path}` is not an absolute path without `..`"),
                    );
                }
                ImportSource::File(PathBuf::from(path))
            }
            ImportSourceDoc::Env(var) => {
                if !is_env_name(var) {
                    self.report(
                        from_at,
                        Rule::ImportSource,
                        format!("`{var}` is not an environment variable name"),
                    );
                }
                ImportSource::Env(var.clone())
            }
            ImportSourceDoc::Kubernetes(k) => {
                if !is_k8s_name(&k.secret) || !is_k8s_key(&k.key) {
                    self.report(
                        from_at,
                        Rule::ImportSource,
                        "kubernetes `secret` must be a DNS-1123 name and `key` [-._a-zA-Z0-9]+",
                    );
                }
                ImportSource::Kubernetes {
                    secret: k.secret.clone(),
                    key: k.key.clone(),
                }
            }
            ImportSourceDoc::Session(imp) => {
                let here = at!["secrets", i, "from", "session"];
                if !is_session_name(&imp.session) {
                    self.report(
                        here,
                        Rule::ImportSource,
                        format!("`{}` is not a session name", imp.session),
                    );
                } else if imp.session == own_name {
                    self.report(
                        here,
                        Rule::ImportSource,
                        "a session cannot import from itself",
                    );
                }
                if !is_secret_name(&imp.secret) {
                    self.report(
                        here,
                        Rule::ImportSource,
                        format!("`{}` is not a secret name", imp.secret),
                    );
                }
                let session_hash = imp.session_hash.parse().unwrap_or_else(|_| {
                    self.report(
                        at!["secrets", i, "from", "session", "session_hash"],
                        Rule::ImportSource,
                        "session_hash is not a SHA-256 (64 hex digits)",
                    );
                    SessionHash::from_bytes([0; 32])
                });
                ImportSource::Session(SessionImport {
                    session: imp.session.clone(),
                    secret: imp.secret.clone(),
                    session_hash,
                })
            }
        }
    }

    /// What identifies an export's importer: exactly one of a session hash and a non-empty
    /// list of owner fingerprints.
    fn importer_identity(
        &mut self,
        i: usize,
        j: usize,
        target: &doc::ExportTargetDoc,
    ) -> Option<ImporterIdentity> {
        match (&target.session_hash, target.owners.is_empty()) {
            (Some(hash), true) => match hash.parse::<SessionHash>() {
                Ok(h) => Some(ImporterIdentity::SessionHash(h)),
                Err(_) => {
                    self.report(
                        at!["export", i, "to", j, "session_hash"],
                        Rule::ExportIdentity,
                        format!("`{hash}` is not a session hash (64 hex digits)"),
                    );
                    None
                }
            },
            (None, false) => {
                let mut owners = BTreeSet::new();
                for (k, fp) in target.owners.iter().enumerate() {
                    match fp.parse::<KeyFingerprint>() {
                        Ok(f) => {
                            if !owners.insert(f) {
                                self.report(
                                    at!["export", i, "to", j, "owners", k],
                                    Rule::ExportIdentity,
                                    format!("owner `{fp}` is named twice"),
                                );
                            }
                        }
                        Err(_) => self.report(
                            at!["export", i, "to", j, "owners", k],
                            Rule::ExportIdentity,
                            format!("`{fp}` is not a key fingerprint (64 hex digits)"),
                        ),
                    }
                }
                Some(ImporterIdentity::Owners(owners))
            }
            (Some(_), false) => {
                self.report(
                    at!["export", i, "to", j],
                    Rule::ExportIdentity,
                    "name the importer by `session_hash` or by `owners`, not both",
                );
                None
            }
            (None, true) => {
                self.report(
                    at!["export", i, "to", j],
                    Rule::ExportIdentity,
                    format!(
                        "an importer is named with its identity: `session_hash` (a version of \
                         `{}`) or `owners` (fingerprints of its namespace's owners); a name \
                         alone can be taken by anyone first",
                        target.session
                    ),
                );
                None
            }
        }
    }

    fn exports(&mut self, docs: &[doc::ExportDoc], secrets: &[Secret]) -> Vec<Export> {
        let mut exports = Vec::new();
        for (i, e) in docs.iter().enumerate() {
            match secrets.iter().find(|s| s.name == e.secret) {
                None => self.report(
                    at!["export", i, "secret"],
                    Rule::ExportSecret,
                    format!("export names unknown secret `{}`", e.secret),
                ),
                Some(secret) if secret.kind.is_imported() => self.report(
                    at!["export", i, "secret"],
                    Rule::ExportSecret,
                    format!(
                        "`{}` is imported; only secrets generated here can be exported",
                        e.secret
                    ),
                ),
                Some(_) => {}
            }
            if e.to.is_empty() {
                self.report(
                    at!["export", i, "to"],
                    Rule::ExportSession,
                    "an export names at least one importing session",
                );
            }
            let mut to = Vec::new();
            for (j, target) in e.to.iter().enumerate() {
                if !is_session_name(&target.session) {
                    self.report(
                        at!["export", i, "to", j, "session"],
                        Rule::ExportSession,
                        format!(
                            "`{}` is not a session name (namespace/name)",
                            target.session
                        ),
                    );
                }
                if let Some(identity) = self.importer_identity(i, j, target) {
                    to.push(ExportTarget {
                        session: target.session.clone(),
                        identity,
                    });
                }
            }
            exports.push(Export {
                secret: e.secret.clone(),
                to,
            });
        }
        exports
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

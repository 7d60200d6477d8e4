//! What changed between two versions of a policy, in the terms a custodian reviews: owners and
//! approvals, accepted TEEs and floors, pinned code identities, service configuration, secrets
//! and exports. `cloister policy diff` renders these; the CAS can use them to describe an update.
//!
//! ```
//! use cloister_policy::Policy;
//! use cloister_policy::diff::{ChangeKind, changes};
//!
//! let owner = "MCowBQYDK2VwAyEAiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";
//! let v1 = format!("name: a/b\nversion: 1\naccess:\n  owners:\n    - name: alice\n      key: {owner}\nsecurity:\n  tees: [sgx]\n");
//! let v2 = v1.replace("[sgx]", "[sgx, tdx]");
//! let found = changes(&Policy::parse(&v1)?, &Policy::parse(&v2)?);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].change, ChangeKind::Added);
//! assert_eq!(found[0].path, "security.tees");
//! assert_eq!(found[0].detail, "tdx accepted");
//! # Ok::<(), cloister_policy::Problems>(())
//! ```

use crate::{
    Advisories, AttestationVariant, ImporterIdentity, Pin, Policy, SecretKind, doc::Tolerate,
};
use cloister_attest::SnpTcb;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

/// What happened to a part of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// Present only in NEW.
    Added,
    /// Present only in OLD.
    Removed,
    /// Present in both, different.
    Changed,
}

impl ChangeKind {
    /// `+`, `-` or `~`, as a diff shows it.
    pub fn symbol(self) -> &'static str {
        match self {
            ChangeKind::Added => "+",
            ChangeKind::Removed => "-",
            ChangeKind::Changed => "~",
        }
    }
}

/// One change that matters, e.g. `{added, services[worker], "service added"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Added, removed or changed.
    pub change: ChangeKind,
    /// Where, in policy paths (`services[driver].attestation`).
    pub path: String,
    /// What, for a person.
    pub detail: String,
}

/// The changes between two valid versions that a custodian should review, in policy order.
pub fn changes(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Changes::default();
    if old.name() != new.name() {
        out.changed("name", format!("{} → {}", old.name(), new.name()));
    }
    if old.version() != new.version() {
        out.changed("version", format!("{} → {}", old.version(), new.version()));
    }
    access(&mut out, old, new);
    security(&mut out, old, new);
    services(&mut out, old, new);
    secrets(&mut out, old, new);
    exports(&mut out, old, new);
    out.0
}

#[derive(Default)]
struct Changes(Vec<Change>);

impl Changes {
    fn push(&mut self, change: ChangeKind, path: impl Into<String>, detail: impl Into<String>) {
        self.0.push(Change {
            change,
            path: path.into(),
            detail: detail.into(),
        });
    }

    fn added(&mut self, path: impl Into<String>, detail: impl Into<String>) {
        self.push(ChangeKind::Added, path, detail);
    }

    fn removed(&mut self, path: impl Into<String>, detail: impl Into<String>) {
        self.push(ChangeKind::Removed, path, detail);
    }

    fn changed(&mut self, path: impl Into<String>, detail: impl Into<String>) {
        self.push(ChangeKind::Changed, path, detail);
    }

    /// Added and removed members of two sets, each described by `what`.
    fn sets<T: Ord + Clone>(
        &mut self,
        path: &str,
        old: &BTreeSet<T>,
        new: &BTreeSet<T>,
        what: impl Fn(&T, ChangeKind) -> String,
    ) {
        for x in new.difference(old) {
            self.added(path, what(x, ChangeKind::Added));
        }
        for x in old.difference(new) {
            self.removed(path, what(x, ChangeKind::Removed));
        }
    }

    /// Keyed maps: keys added, removed, and values changed.
    fn maps<V: PartialEq>(
        &mut self,
        path: &str,
        old: &BTreeMap<String, V>,
        new: &BTreeMap<String, V>,
        noun: &str,
        describe: impl Fn(&V) -> String,
    ) {
        for (k, v) in new {
            match old.get(k) {
                None => self.added(path, format!("{noun} {k} added: {}", describe(v))),
                Some(o) if o != v => self.changed(
                    path,
                    format!("{noun} {k}: {} → {}", describe(o), describe(v)),
                ),
                Some(_) => {}
            }
        }
        for (k, v) in old {
            if !new.contains_key(k) {
                self.removed(path, format!("{noun} {k} removed (was {})", describe(v)));
            }
        }
    }
}

fn verb(kind: ChangeKind, added: &str, removed: &str) -> String {
    match kind {
        ChangeKind::Added => added.to_string(),
        ChangeKind::Removed | ChangeKind::Changed => removed.to_string(),
    }
}

fn access(out: &mut Changes, old: &Policy, new: &Policy) {
    let owners = |p: &Policy| -> BTreeMap<String, String> {
        p.access()
            .owners
            .iter()
            .map(|o| (o.key.fingerprint().to_string(), o.name.clone()))
            .collect()
    };
    let (o, n) = (owners(old), owners(new));
    for (fp, name) in &n {
        match o.get(fp) {
            None => out.added("access.owners", format!("owner {name} (key {fp}) added")),
            Some(was) if was != name => out.changed(
                "access.owners",
                format!("owner {was} renamed {name} (key {fp})"),
            ),
            Some(_) => {}
        }
    }
    for (fp, name) in &o {
        if !n.contains_key(fp) {
            out.removed("access.owners", format!("owner {name} (key {fp}) removed"));
        }
    }
    let readers = |p: &Policy| -> BTreeMap<String, String> {
        p.access()
            .readers
            .iter()
            .map(|r| (r.fingerprint.to_string(), r.name.clone()))
            .collect()
    };
    out.maps(
        "access.read",
        &readers(old),
        &readers(new),
        "reader key",
        |name| format!("name {name}"),
    );
    let (a, b) = (old.access().approvals, new.access().approvals);
    if a != b || o.len() != n.len() {
        out.changed(
            "access.update.approvals",
            format!("{a} of {} owners → {b} of {} owners", o.len(), n.len()),
        );
    }
}

fn security(out: &mut Changes, old: &Policy, new: &Policy) {
    let (o, n) = (old.security(), new.security());
    out.sets("security.tees", &o.tees, &n.tees, |t, k| {
        verb(
            k,
            &format!("{t} accepted"),
            &format!("{t} no longer accepted"),
        )
    });
    out.sets("security.tolerate", &o.tolerate, &n.tolerate, |t, k| {
        let t: &Tolerate = t;
        verb(
            k,
            &format!("{} tolerated", t.as_str()),
            &format!("{} no longer tolerated", t.as_str()),
        )
    });
    match (&o.ignore_advisories, &n.ignore_advisories) {
        (Advisories::Only(a), Advisories::Only(b)) => {
            out.sets("security.ignore_advisories", a, b, |id, k| {
                verb(
                    k,
                    &format!("{id} ignored"),
                    &format!("{id} no longer ignored"),
                )
            });
        }
        (Advisories::All, Advisories::All) => {}
        (Advisories::Only(_), Advisories::All) => {
            out.changed(
                "security.ignore_advisories",
                "every advisory now ignored (*)",
            );
        }
        (Advisories::All, Advisories::Only(ids)) => out.changed(
            "security.ignore_advisories",
            format!("no longer ignores every advisory; ignores {}", list(ids)),
        ),
    }
    let floor = |t: Option<SnpTcb>| t.map_or_else(|| "none".to_string(), |t| t.to_string());
    if o.min_tcb != n.min_tcb {
        out.changed(
            "security.min_tcb",
            format!("{} → {}", floor(o.min_tcb), floor(n.min_tcb)),
        );
    }
    if o.max_vmpl != n.max_vmpl {
        out.changed(
            "security.max_vmpl",
            format!("{} → {}", o.max_vmpl, n.max_vmpl),
        );
    }
    if o.min_tcb_evaluation_data_number != n.min_tcb_evaluation_data_number {
        let number = |v: Option<u32>| v.map_or_else(|| "none".to_string(), |v| v.to_string());
        out.changed(
            "security.min_tcb_evaluation_data_number",
            format!(
                "{} → {}",
                number(o.min_tcb_evaluation_data_number),
                number(n.min_tcb_evaluation_data_number)
            ),
        );
    }
    let rego = |p: &Policy| p.security().rego.as_ref().map(|r| r.source().to_string());
    match (rego(old), rego(new)) {
        (None, Some(_)) => out.added("security.rego", "Rego rule added"),
        (Some(_), None) => out.removed("security.rego", "Rego rule removed"),
        (Some(a), Some(b)) if a != b => out.changed("security.rego", "Rego rule changed"),
        _ => {}
    }
}

fn list<T: Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|x| x.to_string()).collect();
    if items.is_empty() {
        "none".to_string()
    } else {
        items.join(", ")
    }
}

/// One accepted code identity, flattened so that adding a measurement to a variant shows as
/// that one measurement pinned.
fn pins(variants: &[AttestationVariant]) -> BTreeSet<String> {
    let mut pins = BTreeSet::new();
    for v in variants {
        let mut qualifiers = String::new();
        if let Some(tee) = v.tee {
            qualifiers.push_str(&format!(" on {tee}"));
        }
        for (k, val) in &v.extra {
            qualifiers.push_str(&format!(" with {k}={val}"));
        }
        match &v.pin {
            Pin::Measurements(ms) => {
                for m in ms {
                    pins.insert(format!("measurement {}{qualifiers}", hex::encode(m)));
                }
            }
            Pin::Signer {
                signer,
                product_id,
                svn,
            } => {
                let product = product_id.map_or_else(String::new, |p| format!(" product {p}"));
                pins.insert(format!(
                    "signer {}{product} svn {svn}{qualifiers}",
                    hex::encode(signer)
                ));
            }
        }
    }
    pins
}

fn services(out: &mut Changes, old: &Policy, new: &Policy) {
    for s in new.services() {
        let path = format!("services[{}]", s.name);
        let Some(o) = old.service(&s.name) else {
            let n = pins(&s.attestation).len();
            let noun = if n == 1 { "identity" } else { "identities" };
            out.added(path, format!("service added ({n} accepted code {noun})"));
            continue;
        };
        out.sets(
            &format!("{path}.attestation"),
            &pins(&o.attestation),
            &pins(&s.attestation),
            |pin, k| verb(k, &format!("{pin} pinned"), &format!("{pin} unpinned")),
        );
        if o.command != s.command {
            let show = |c: &Option<String>| c.clone().unwrap_or_else(|| "none".into());
            out.changed(
                format!("{path}.command"),
                format!("{} → {}", show(&o.command), show(&s.command)),
            );
        }
        if o.args != s.args {
            out.changed(
                format!("{path}.args"),
                format!("[{}] → [{}]", o.args.join(", "), s.args.join(", ")),
            );
        }
        out.maps(&format!("{path}.env"), &o.env, &s.env, "variable", |v| {
            format!("{v:?}")
        });
        let files = |svc: &crate::Service| -> BTreeMap<String, (String, u32)> {
            svc.files
                .iter()
                .map(|f| (f.path.display().to_string(), (f.content.clone(), f.mode)))
                .collect()
        };
        let (fo, fs) = (files(o), files(s));
        for (p, (content, mode)) in &fs {
            match fo.get(p) {
                None => out.added(
                    format!("{path}.files"),
                    format!("{p} added (mode {mode:04o})"),
                ),
                Some((c, m)) => {
                    if c != content {
                        out.changed(format!("{path}.files"), format!("{p}: content changed"));
                    }
                    if m != mode {
                        out.changed(
                            format!("{path}.files"),
                            format!("{p}: mode {m:04o} → {mode:04o}"),
                        );
                    }
                }
            }
        }
        for p in fo.keys() {
            if !fs.contains_key(p) {
                out.removed(format!("{path}.files"), format!("{p} removed"));
            }
        }
    }
    for s in old.services() {
        if new.service(&s.name).is_none() {
            out.removed(format!("services[{}]", s.name), "service removed");
        }
    }
}

fn secret_kind(kind: &SecretKind) -> String {
    match kind {
        SecretKind::Import(source) => format!("import from {}", import_source(source)),
        other => other.name().to_string(),
    }
}

fn import_source(source: &crate::ImportSource) -> String {
    use crate::ImportSource;
    match source {
        ImportSource::File(p) => format!("file {}", p.display()),
        ImportSource::Env(name) => format!("env {name}"),
        ImportSource::Kubernetes { secret, key } => format!("kubernetes secret {secret} key {key}"),
        ImportSource::Session(s) => format!(
            "session {} secret {} pinned at {}",
            s.session, s.secret, s.session_hash
        ),
    }
}

fn secrets(out: &mut Changes, old: &Policy, new: &Policy) {
    for s in new.secrets() {
        let path = format!("secrets[{}]", s.name);
        match old.secret(&s.name) {
            None => out.added(path, format!("secret added ({})", secret_kind(&s.kind))),
            Some(o) if o.kind != s.kind => {
                let (a, b) = (secret_kind(&o.kind), secret_kind(&s.kind));
                if a == b {
                    out.changed(path, format!("{a} parameters changed"));
                } else {
                    out.changed(path, format!("{a} → {b}"));
                }
            }
            Some(_) => {}
        }
    }
    for s in old.secrets() {
        if new.secret(&s.name).is_none() {
            out.removed(
                format!("secrets[{}]", s.name),
                format!("secret removed ({})", secret_kind(&s.kind)),
            );
        }
    }
}

fn exports(out: &mut Changes, old: &Policy, new: &Policy) {
    let pairs = |p: &Policy| -> BTreeSet<(String, String)> {
        p.exports()
            .iter()
            .flat_map(|e| {
                e.to.iter().map(|to| {
                    let who = match &to.identity {
                        ImporterIdentity::SessionHash(h) => format!("version {h}"),
                        ImporterIdentity::Owners(owners) => {
                            let fps: Vec<String> = owners.iter().map(|f| f.to_string()).collect();
                            format!("owners {}", fps.join(", "))
                        }
                    };
                    (e.secret.clone(), format!("{} ({who})", to.session))
                })
            })
            .collect()
    };
    out.sets("export", &pairs(old), &pairs(new), |(secret, to), k| {
        verb(
            k,
            &format!("{secret} exported to {to}"),
            &format!("{secret} no longer exported to {to}"),
        )
    });
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // a panic is how a test fails
    use super::*;

    /// The published test owner key of `crates/policy/examples/sim-demo.yaml` (seed [1; 32]).
    const ALICE: &str = "MCowBQYDK2VwAyEAiojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w=";

    fn policy(body: &str) -> Policy {
        let yaml = format!(
            "name: a/b\nversion: 1\naccess:\n  owners:\n    - name: alice\n      key: {ALICE}\n{body}"
        );
        Policy::parse(&yaml).unwrap()
    }

    /// A `web` service; it pins its app bundle, as every service of a policy accepting
    /// hardware must.
    fn service(pins: &str, extra: &str) -> String {
        let pin = format!("      CLOISTER_BUNDLE_DIGEST: {}\n", "0d".repeat(32));
        let extra = if extra.contains("    env:\n") {
            extra.replacen("    env:\n", &format!("    env:\n{pin}"), 1)
        } else {
            format!("{extra}    env:\n{pin}")
        };
        format!("services:\n  - name: web\n    attestation:\n{pins}{extra}")
    }

    fn details(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{} {}: {}", c.change.symbol(), c.path, c.detail))
            .collect()
    }

    const BOB: &str = "MCowBQYDK2VwAyEAgTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=";
    const AUDITOR: &str = "MCowBQYDK2VwAyEA7UkoxijRwsbq6QM4kFmVYSlZJzpcY/k2NsFGFKyHN9E=";
    const SGX: &str = "security:\n  tees: [sgx]\n";

    /// One edit to a base policy (`old` → `new`, both appended after the owner list) and the
    /// changes it must show, in order.
    #[rstest::rstest]
    #[case::owner_added(
        SGX.to_string(),
        format!("    - name: bob\n      key: {BOB}\n{SGX}"),
        &["+ access.owners: owner bob (key 47dea58ea00fae9417ee19d76755bfef690899021132effb04fe1f9e4f0c8059) added", "~ access.update.approvals: 1 of 1 owners → 1 of 2 owners"],
    )]
    #[case::reader_added(
        SGX.to_string(),
        format!("  read:\n    - name: auditor\n      key: {AUDITOR}\n{SGX}"),
        &["+ access.read: reader key 8cef065b7af83669150b7d32704d3d3e75c3e9aee0d4f6740544c68e81b377aa added: name auditor"],
    )]
    #[case::tee_added(
        SGX.to_string(),
        "security:\n  tees: [sgx, tdx]\n".to_string(),
        &["+ security.tees: tdx accepted"],
    )]
    #[case::secret_kind_changed(
        format!("{SGX}secrets:\n  - name: k\n    kind: aes256\n"),
        format!("{SGX}secrets:\n  - name: k\n    kind: ascii\n"),
        &["~ secrets[k]: aes256 → ascii"],
    )]
    #[case::export_added(
        format!("{SGX}secrets:\n  - name: k\n    kind: aes256\n"),
        format!("{SGX}secrets:\n  - name: k\n    kind: aes256\nexport:\n  - secret: k\n    to:\n      - session: c/d\n        owners: [{}]\n", "47".repeat(32)),
        &["+ export: k exported to c/d (owners 4747474747474747474747474747474747474747474747474747474747474747)"],
    )]
    fn one_edit_shows_its_changes(
        #[case] old: String,
        #[case] new: String,
        #[case] expected: &[&str],
    ) {
        let found = details(&changes(&policy(&old), &policy(&new)));
        assert_eq!(found, expected, "{found:#?}");
    }

    #[test]
    fn identical_policies_have_no_changes() {
        let p = policy("security:\n  tees: [sgx]\n");
        assert!(changes(&p, &p).is_empty());
    }

    #[test]
    fn hex_case_is_not_a_change() {
        let m = "ab".repeat(32);
        let a = policy(&format!(
            "security:\n  tees: [sgx]\n{}",
            service(&format!("      - measurements: [{m}]\n"), "")
        ));
        let b = policy(&format!(
            "security:\n  tees: [sgx]\n{}",
            service(
                &format!("      - measurements: [{}]\n", m.to_uppercase()),
                ""
            )
        ));
        assert_eq!(details(&changes(&a, &b)), Vec::<String>::new());
    }

    #[test]
    fn signer_pins_and_service_configuration() {
        let s = "cd".repeat(32);
        let a = policy(&format!(
            "security:\n  tees: [sgx]\n{}",
            service(
                &format!("      - signer: {s}\n        product_id: 1\n        svn: {{min: 2}}\n"),
                "    command: /bin/a\n    env:\n      A: x\n      B: y\n    files:\n      - path: /etc/f\n        content: one\n"
            )
        ));
        let b = policy(&format!(
            "security:\n  tees: [sgx]\n{}",
            service(
                &format!(
                    "      - signer: {s}\n        product_id: 1\n        svn: {{min: 3}}\n        tee: sgx\n"
                ),
                "    command: /bin/b\n    env:\n      A: z\n      C: y\n    files:\n      - path: /etc/f\n        content: two\n        mode: \"0400\"\n"
            )
        ));
        assert_eq!(
            details(&changes(&a, &b)),
            [
                format!("+ services[web].attestation: signer {s} product 1 svn >= 3 on sgx pinned"),
                format!("- services[web].attestation: signer {s} product 1 svn >= 2 unpinned"),
                "~ services[web].command: /bin/a → /bin/b".to_string(),
                "~ services[web].env: variable A: \"x\" → \"z\"".to_string(),
                "+ services[web].env: variable C added: \"y\"".to_string(),
                "- services[web].env: variable B removed (was \"y\")".to_string(),
                "~ services[web].files: /etc/f: content changed".to_string(),
                "~ services[web].files: /etc/f: mode 0600 → 0400".to_string(),
            ]
        );
    }

    #[test]
    fn security_and_secrets() {
        let a = policy(
            "security:\n  tees: [sgx, tdx]\n  ignore_advisories: [INTEL-SA-00615]\n\
             secrets:\n  - name: k\n    kind: ascii\n  - name: old\n    kind: aes256\n",
        );
        let b = policy(
            "security:\n  tees: [tdx]\n  tolerate: [debug, outdated-tcb]\n  ignore_advisories: [\"*\"]\n\
             secrets:\n  - name: k\n    kind: ascii\n    size: 64\n  - name: new\n    kind: import\n    from: {env: TOKEN}\n",
        );
        assert_eq!(
            details(&changes(&a, &b)),
            [
                "- security.tees: sgx no longer accepted",
                "+ security.tolerate: debug tolerated",
                "+ security.tolerate: outdated-tcb tolerated",
                "~ security.ignore_advisories: every advisory now ignored (*)",
                "~ secrets[k]: ascii parameters changed",
                "+ secrets[new]: secret added (import from env TOKEN)",
                "- secrets[old]: secret removed (aes256)",
            ]
        );
    }

    #[test]
    fn platform_floors() {
        let a = policy(
            "security:\n  tees: [sev-snp, sgx]\n  min_tcb: {bootloader: 3, tee: 0, snp: 8, microcode: 115}\n",
        );
        let b = policy(
            "security:\n  tees: [sev-snp, sgx]\n  min_tcb: {bootloader: 3, tee: 0, snp: 5, microcode: 115}\n  \
             max_vmpl: 1\n  min_tcb_evaluation_data_number: 17\n",
        );
        assert_eq!(
            details(&changes(&a, &b)),
            [
                "~ security.min_tcb: bl=3 tee=0 snp=8 ucode=115 → bl=3 tee=0 snp=5 ucode=115",
                "~ security.max_vmpl: 0 → 1",
                "~ security.min_tcb_evaluation_data_number: none → 17",
            ]
        );
    }

    #[test]
    fn services_added_and_removed() {
        let m = "ab".repeat(32);
        let pins = format!("      - measurements: [{m}]\n");
        let a = policy(&format!("security:\n  tees: [sgx]\n{}", service(&pins, "")));
        let b = policy(&format!(
            "security:\n  tees: [sgx]\n{}",
            service(&pins, "").replace("name: web", "name: api")
        ));
        assert_eq!(
            details(&changes(&a, &b)),
            [
                "+ services[api]: service added (1 accepted code identity)",
                "- services[web]: service removed"
            ]
        );
    }
}

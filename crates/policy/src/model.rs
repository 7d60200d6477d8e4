//! The validated policy: typed, checked, and frozen.

use crate::doc::{KeyAlgorithm, Tolerate};
use crate::sign::{KeyFingerprint, PublicKey, SessionHash};
use crate::template::{Lookup, ValueShape, resolve, resolve_arg};
use crate::{Error, doc};
use cloister_attest::{SnpTcb, Tee};
use secrecy::{ExposeSecret, SecretString};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

/// A validated policy version. Only [`Policy::parse`] (and the `authorize_*` functions that call
/// it) build one, so holding a `Policy` means every rule of the language was checked.
#[derive(Clone, Debug)]
pub struct Policy {
    pub(crate) hash: SessionHash,
    pub(crate) name: String,
    pub(crate) version: u64,
    pub(crate) predecessor: Option<SessionHash>,
    pub(crate) description: Option<String>,
    pub(crate) access: Access,
    pub(crate) security: Security,
    pub(crate) services: Vec<Service>,
    pub(crate) secrets: Vec<Secret>,
    pub(crate) exports: Vec<Export>,
    pub(crate) doc: doc::PolicyDoc,
}

impl Policy {
    /// The session hash of the YAML this was parsed from.
    pub fn hash(&self) -> SessionHash {
        self.hash
    }

    /// `namespace/name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version number (1 for a new policy).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The hash of the version this one replaces (`None` for version 1).
    pub fn predecessor(&self) -> Option<SessionHash> {
        self.predecessor
    }

    /// The free-text description.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Owners, readers, approvals.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Accepted platforms and tolerances.
    pub fn security(&self) -> &Security {
        &self.security
    }

    /// The services.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The service named `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The secrets (generated and imported).
    pub fn secrets(&self) -> &[Secret] {
        &self.secrets
    }

    /// The secret named `name`.
    pub fn secret(&self, name: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| s.name == name)
    }

    /// The exports.
    pub fn exports(&self) -> &[Export] {
        &self.exports
    }

    /// The secrets imported from other sessions: `(local name, import)`.
    pub fn session_imports(&self) -> impl Iterator<Item = (&str, &SessionImport)> {
        self.secrets.iter().filter_map(|s| match &s.kind {
            SecretKind::Import(ImportSource::Session(import)) => Some((s.name.as_str(), import)),
            _ => None,
        })
    }

    /// The document as parsed (for re-serialising, e.g. `cloister policy show --json`).
    pub fn document(&self) -> &doc::PolicyDoc {
        &self.doc
    }
}

/// Who owns and may read a policy, and how many owners approve an update.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Access {
    /// The owners; they sign versions.
    pub owners: Vec<Owner>,
    /// Other principals who may read.
    pub readers: Vec<Reader>,
    /// M: distinct owner signatures needed to create or update (1 ≤ M ≤ owners).
    pub approvals: usize,
}

impl Access {
    /// The owner whose key has `fingerprint`.
    pub fn owner(&self, fingerprint: &KeyFingerprint) -> Option<&Owner> {
        self.owners
            .iter()
            .find(|o| o.key.fingerprint() == *fingerprint)
    }
}

/// An owner.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Owner {
    /// A name for people.
    pub name: String,
    /// The owner's Ed25519 key.
    pub key: PublicKey,
}

/// A read principal.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Reader {
    /// A name for people.
    pub name: String,
    /// Its key's fingerprint.
    pub fingerprint: KeyFingerprint,
}

/// What the policy accepts about platforms.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Security {
    /// Accepted TEE kinds.
    pub tees: BTreeSet<Tee>,
    /// Tolerated platform conditions.
    pub tolerate: BTreeSet<Tolerate>,
    /// Ignored advisories.
    pub ignore_advisories: Advisories,
    /// The optional Rego appraisal rule.
    pub rego: Option<crate::rego::RegoRule>,
    /// SEV-SNP: the lowest accepted reported TCB per component (`None` only with `snp-any-tcb`
    /// tolerated or without `sev-snp` accepted).
    pub min_tcb: Option<SnpTcb>,
    /// SEV-SNP: the highest accepted VMPL (default 0).
    pub max_vmpl: u32,
    /// SGX / TDX: the lowest accepted `tcbEvaluationDataNumber` of the collateral.
    pub min_tcb_evaluation_data_number: Option<u32>,
}

/// Which advisories are ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Advisories {
    /// Every advisory (`*`, only with tolerated debug).
    All,
    /// These exact ids.
    Only(BTreeSet<String>),
}

impl Advisories {
    /// Whether `id` is ignored.
    pub fn ignores(&self, id: &str) -> bool {
        match self {
            Advisories::All => true,
            Advisories::Only(ids) => ids.contains(id),
        }
    }
}

/// One workload's identity and configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Service {
    /// The service name.
    pub name: String,
    /// Accepted identities; any one must match.
    pub attestation: Vec<AttestationVariant>,
    /// The program (a template).
    pub command: Option<String>,
    /// The arguments (templates; `@@N` allowed).
    pub args: Vec<String>,
    /// Environment (templates).
    pub env: BTreeMap<String, String>,
    /// Injected files.
    pub files: Vec<InjectedFile>,
}

impl Service {
    /// Resolve every placeholder of the service's configuration with `lookup`, and `@@N` in
    /// `args` with `host_args` (the untrusted host's argv).
    pub fn resolve(
        &self,
        host_args: &[String],
        lookup: Lookup<'_>,
    ) -> Result<ResolvedService, Error> {
        Ok(ResolvedService {
            command: self
                .command
                .as_deref()
                .map(|c| resolve(c, lookup))
                .transpose()?,
            args: self
                .args
                .iter()
                .map(|a| resolve_arg(a, host_args, lookup))
                .collect::<Result<_, _>>()?,
            env: self
                .env
                .iter()
                .map(|(k, v)| Ok((k.clone(), resolve(v, lookup)?)))
                .collect::<Result<_, Error>>()?,
            files: self
                .files
                .iter()
                .map(|f| {
                    Ok(ResolvedFile {
                        path: f.path.clone(),
                        content: resolve(&f.content, lookup)?,
                        mode: f.mode,
                    })
                })
                .collect::<Result<_, Error>>()?,
        })
    }
}

/// A service's configuration with every secret filled in: what the CAS sends, encrypted, to an
/// attested workload. `Debug` shows names, paths and sizes only.
#[non_exhaustive]
pub struct ResolvedService {
    /// The program.
    pub command: Option<SecretString>,
    /// The arguments.
    pub args: Vec<SecretString>,
    /// The environment.
    pub env: BTreeMap<String, SecretString>,
    /// The files.
    pub files: Vec<ResolvedFile>,
}

/// An injected file with its content resolved.
#[non_exhaustive]
pub struct ResolvedFile {
    /// Absolute path in the workload.
    pub path: PathBuf,
    /// Content.
    pub content: SecretString,
    /// Permission bits.
    pub mode: u32,
}

impl fmt::Debug for ResolvedService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedService")
            .field("command", &self.command.as_ref().map(|_| "…"))
            .field("args", &self.args.len())
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("files", &self.files)
            .finish()
    }
}

impl fmt::Debug for ResolvedFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedFile")
            .field("path", &self.path)
            .field("content_len", &self.content.expose_secret().len())
            .field("mode", &format_args!("{:04o}", self.mode))
            .finish()
    }
}

/// One accepted code identity.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttestationVariant {
    /// Only this TEE kind matches, if set.
    pub tee: Option<Tee>,
    /// What identifies the code.
    pub pin: Pin,
    /// Further claims that must equal these values (hex lower-cased).
    pub extra: BTreeMap<String, String>,
}

/// How code is pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pin {
    /// The primary measurement is one of these.
    Measurements(Vec<Vec<u8>>),
    /// Signed by `signer`, with this product id (if set) and an svn in range.
    Signer {
        /// MRSIGNER or equivalent.
        signer: Vec<u8>,
        /// The required product id.
        product_id: Option<u16>,
        /// The accepted svn range.
        svn: SvnRange,
    },
}

/// An inclusive svn range; `None` bounds are open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SvnRange {
    /// Lowest accepted.
    pub min: Option<u32>,
    /// Highest accepted.
    pub max: Option<u32>,
}

impl SvnRange {
    /// Whether `svn` is in range.
    pub fn contains(&self, svn: u32) -> bool {
        self.min.is_none_or(|m| svn >= m) && self.max.is_none_or(|m| svn <= m)
    }
}

impl fmt::Display for SvnRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.min, self.max) {
            (Some(a), Some(b)) => write!(f, "{a}..={b}"),
            (Some(a), None) => write!(f, ">= {a}"),
            (None, Some(b)) => write!(f, "<= {b}"),
            (None, None) => f.write_str("any"),
        }
    }
}

/// A file injected into the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct InjectedFile {
    /// Absolute path.
    pub path: PathBuf,
    /// Content template.
    pub content: String,
    /// Permission bits (default 0o600).
    pub mode: u32,
}

/// A secret of the policy.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Secret {
    /// Its name.
    pub name: String,
    /// What it is and how the CAS obtains it.
    pub kind: SecretKind,
}

/// What a secret is. Generated kinds are made by the CAS when the policy is created and kept
/// across updates; `Import` comes from elsewhere.
///
/// Extension point: new kinds (Parquet column keys wrapped by a master key, …) are added as
/// variants here, a name in
/// [`doc::SecretKindName`], a case in `validate::secret` and a `template::ValueShape`; the enum is
/// `non_exhaustive` so that adding one is not a breaking change for the CAS.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecretKind {
    /// Random letters and digits.
    Ascii {
        /// Length.
        size: u32,
    },
    /// Random bytes.
    Binary {
        /// Length.
        size: u32,
    },
    /// A private key.
    PrivateKey {
        /// Algorithm.
        algorithm: KeyAlgorithm,
    },
    /// A self-signed CA.
    X509Ca {
        /// Key algorithm.
        algorithm: KeyAlgorithm,
        /// Subject CN.
        common_name: String,
        /// Validity from issuance.
        validity_days: u32,
    },
    /// A certificate issued by a CA secret.
    X509 {
        /// The `X509Ca` secret that signs it.
        issuer: String,
        /// Key algorithm (of a fresh key; ignored with `private_key`).
        algorithm: KeyAlgorithm,
        /// Subject CN.
        common_name: String,
        /// Subject alternative names (DNS names or IP addresses).
        sans: Vec<String>,
        /// Validity from issuance.
        validity_days: u32,
        /// A `PrivateKey` secret to certify instead of a fresh key.
        private_key: Option<String>,
    },
    /// A 256-bit AES data key.
    Aes256,
    /// An Always Encrypted column master key: an RSA private key, generated in the CAS or
    /// imported as PEM. Its key path (in key store `CLOISTER_CAS`) is the secret's name.
    ColumnMasterKey {
        /// The RSA key size of a generated key (ignored with `source`).
        algorithm: KeyAlgorithm,
        /// Import the PEM private key from here instead of generating one (never a session).
        source: Option<ImportSource>,
    },
    /// An Always Encrypted column encryption key: 32 random bytes, wrapped by a column master
    /// key of the same policy as SQL Server stores it (`encrypted_value`).
    ColumnEncryptionKey {
        /// The `ColumnMasterKey` secret that wraps it.
        cmk: String,
    },
    /// Imported.
    Import(ImportSource),
}

impl SecretKind {
    /// Whether the value comes from outside the CAS (an import, or a column master key
    /// imported as PEM). Only values the CAS generated may be exported to other sessions.
    pub fn is_imported(&self) -> bool {
        matches!(
            self,
            SecretKind::Import(_)
                | SecretKind::ColumnMasterKey {
                    source: Some(_),
                    ..
                }
        )
    }

    /// The kind's name as written in policies.
    pub fn name(&self) -> &'static str {
        match self {
            SecretKind::Ascii { .. } => "ascii",
            SecretKind::Binary { .. } => "binary",
            SecretKind::PrivateKey { .. } => "private-key",
            SecretKind::X509Ca { .. } => "x509-ca",
            SecretKind::X509 { .. } => "x509",
            SecretKind::Aes256 => "aes256",
            SecretKind::ColumnMasterKey { .. } => "cmk",
            SecretKind::ColumnEncryptionKey { .. } => "cek",
            SecretKind::Import(_) => "import",
        }
    }

    pub(crate) fn shape(&self) -> ValueShape {
        match self {
            SecretKind::Ascii { .. } => ValueShape::Text,
            SecretKind::Binary { .. } | SecretKind::Aes256 => ValueShape::Bytes,
            SecretKind::PrivateKey { .. } | SecretKind::ColumnMasterKey { .. } => {
                ValueShape::PrivateKey
            }
            SecretKind::ColumnEncryptionKey { .. } => ValueShape::ColumnKey,
            SecretKind::X509Ca { .. } | SecretKind::X509 { .. } => ValueShape::Certificate,
            SecretKind::Import(ImportSource::Session(_)) => ValueShape::Unknown,
            SecretKind::Import(_) => ValueShape::Text,
        }
    }
}

/// Where an imported secret comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImportSource {
    /// A file on the CAS host.
    File(PathBuf),
    /// An environment variable of the CAS process.
    Env(String),
    /// A key of a Kubernetes Secret mounted into the CAS pod (the CAS maps the Secret's name to
    /// its mount directory).
    Kubernetes {
        /// The Secret's name.
        secret: String,
        /// The key.
        key: String,
    },
    /// Another session's export.
    Session(SessionImport),
}

/// An import of another session's exported secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionImport {
    /// The exporter's `namespace/name`.
    pub session: String,
    /// The secret's name there.
    pub secret: String,
    /// The exporter version this import trusts.
    pub session_hash: SessionHash,
}

/// One exported secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Export {
    /// The secret.
    pub secret: String,
    /// The sessions allowed to import it, with their identities.
    pub to: Vec<ExportTarget>,
}

/// A session allowed to import an exported secret.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportTarget {
    /// The importing session's `namespace/name`.
    pub session: String,
    /// What the importing session must be, beyond its name.
    pub identity: ImporterIdentity,
}

/// What identifies an importing session: a name alone can be taken by anyone first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImporterIdentity {
    /// A version of the session: its current version or one of its predecessors has this hash
    /// (each later version was approved by the owners of the one before).
    SessionHash(SessionHash),
    /// The owners of the session's namespace: every one of them is in this set.
    Owners(BTreeSet<KeyFingerprint>),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretValue;
    use crate::fixtures::base;

    #[test]
    fn policies_can_be_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Policy>();
        send_sync::<ResolvedService>();
    }

    #[test]
    fn svn_ranges_are_inclusive_and_open_ended() {
        let r = SvnRange {
            min: Some(3),
            max: Some(5),
        };
        assert!(!r.contains(2) && r.contains(3) && r.contains(5) && !r.contains(6));
        assert!(SvnRange::default().contains(0));
        assert_eq!(r.to_string(), "3..=5");
        assert_eq!(
            SvnRange {
                min: Some(3),
                max: None
            }
            .to_string(),
            ">= 3"
        );
    }

    #[test]
    fn resolved_service_debug_shows_no_secret() {
        let policy = Policy::parse(&base()).unwrap();
        let lookup = |name: &str| match name {
            "token" => Some(SecretValue::text("tok-3141592653")),
            "cert" => Some(SecretValue::Certificate {
                der: vec![0x30, 0],
                issuers: vec![],
                key: secrecy::SecretBox::from(b"KEYMATERIAL".to_vec().into_boxed_slice()),
            }),
            _ => None,
        };
        let resolved = policy
            .service("driver")
            .unwrap()
            .resolve(&["argv0".into(), "host-arg".into()], &lookup)
            .unwrap();
        assert_eq!(resolved.env["TOKEN"].expose_secret(), "tok-3141592653");
        assert_eq!(resolved.args[1].expose_secret(), "host-arg");
        let debug = format!("{resolved:?}");
        assert!(
            debug.contains("TOKEN") && debug.contains("/etc/app/key.pem") && debug.contains("0600")
        );
        for leak in ["tok-3141592653", "S0VZTUFURVJJQUw", "host-arg"] {
            assert!(!debug.contains(leak), "{leak} in {debug}");
        }
    }

    #[test]
    fn unknown_secret_at_resolution_is_an_error() {
        let policy = Policy::parse(&base()).unwrap();
        let host_args = ["argv0".to_owned(), "x".to_owned()];
        let err = policy
            .service("driver")
            .unwrap()
            .resolve(&host_args, &|_| None)
            .unwrap_err();
        assert!(
            matches!(err, Error::UnknownSecret { ref name } if name == "token"),
            "{err}"
        );
    }
}

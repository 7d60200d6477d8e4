//! The secrets a policy declares: generated in CAS on first use and kept in the store, or
//! imported; and the [`Lookup`](cloister_policy::Lookup) that fills a service's placeholders with them.
//!
//! # Generated secrets
//!
//! The first attestation that needs a generated secret makes it and stores it with
//! [`Store::secret_or_insert`] (encrypted at rest like everything in the store); two racing
//! attestations agree on the one stored first. Values are kept across policy updates (the key is
//! the session and the secret's name) and deleted with the session.
//!
//! | kind | value |
//! | --- | --- |
//! | `ascii` | `size` random letters and digits (rejection sampling, no modulo bias) |
//! | `binary` | `size` random bytes |
//! | `aes256` | 32 random bytes |
//! | `private-key` | a fresh key, PKCS#8 DER: P-256, P-384 and Ed25519 from `ring`, RSA from `rsa` |
//! | `x509-ca` | a self-signed CA ([`SessionCa::generate_with`]) with the policy's algorithm, common name and validity |
//! | `x509` | a certificate from the named `x509-ca`, with the policy's common name, SANs and validity, for a fresh key or the named `private-key` |
//! | `cmk` | a fresh RSA key (PKCS#8 DER, `rsa`), or with `from` the imported PEM key (read at each use, as imports are) |
//! | `cek` | 32 random bytes and their `encrypted_value` under the named `cmk` ([`cloister_colenc::wrap_cek`], key path = the CMK's name), both stored |
//!
//! # The session CA
//!
//! Attested workloads get a certificate for their own key from the *session CA*: the policy's
//! first `x509-ca` secret, or, when it declares none, an implicit P-256 CA kept under the
//! reserved name [`IMPLICIT_SESSION_CA`] (policy secret names cannot start with a dot).
//!
//! # Imported secrets
//!
//! Imports are read at each use and never stored, so a rotated source is picked up. Host
//! imports are allowed only where the operator's [`ImportRules`](crate::ImportRules) let the
//! session's namespace (see [`crate::imports`]):
//!
//! - `file: PATH`: the file's bytes (at most [`MAX_IMPORT_LEN`]), exactly, with no trailing
//!   newline removed: text when they are UTF-8, else binary (placed with `:hex` or `:base64`);
//!   opened beneath an allowed directory with no symlink or `..` escape;
//! - `env: NAME`: the CAS process's environment variable (see [`CasConfig::env_var`]), never a
//!   `CLOISTER_*` one;
//! - `kubernetes: {secret: S, key: K}`: the file `K` in `S`'s directory under
//!   [`CasConfig::kubernetes_secrets_dir`] (how a Secret volume is mounted), text or binary;
//! - `session: {session, secret, session_hash}`: the exporter's secret, after
//!   [`cloister_policy::authorize_import`] against the exporter's *current* version and hash
//!   and the importer's identity (its version history and its namespace's owners, see
//!   [`importer_owners`]).
//!
//! Every refused or failed import is [`Error::ImportRefused`] naming the rule (`export`,
//! `export-identity`, `import-hash`, `import-not-allowed`, `import-escape`, `import-missing`,
//! `import-too-large`, …) with a message that names no host path and no value: the CAS server
//! records it in the audit log as the attestation's refusal, where the policy's owners read it;
//! the host path is only in the CAS log.
//!
//! # Encoding in the store
//!
//! A stored value is a version byte (1), a tag (1 text, 2 bytes, 3 private key, 4 certificate,
//! 5 column key) and length-prefixed fields (4-byte big-endian lengths): the value; for a
//! certificate its DER, its PKCS#8 key and a count of issuer certificates followed by each; for
//! a column key the key and its wrapped value.
//!
//! No value appears in a log line, an error or a `Debug` output: errors carry names only.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use cloister_policy::{
    ImportSource, Importer, KeyAlgorithm, KeyFingerprint, Policy, ResolvedService, SecretKind,
    SecretValue, Service, SessionHash,
};
use rand_core::{OsRng, RngCore};
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519, PKCS_RSA_SHA256,
};
use secrecy::{ExposeSecret, SecretBox};
use zeroize::Zeroizing;

use crate::ca::SessionCa;
use crate::config::CasConfig;
use crate::imports::Refusal;
use crate::{Error, SecretBytes, Store, StoredSecret};

/// The reserved secret name of the implicit session CA.
pub const IMPLICIT_SESSION_CA: &str = ".session-ca";

const FORMAT_V1: u8 = 1;
const TAG_TEXT: u8 = 1;
const TAG_BYTES: u8 = 2;
const TAG_PRIVATE_KEY: u8 = 3;
const TAG_CERTIFICATE: u8 = 4;
const TAG_COLUMN_KEY: u8 = 5;

/// Finds the policy in force of another session (for imports): `None` if it does not exist.
pub type PolicySource<'a> = &'a dyn Fn(&str) -> Result<Option<Arc<Policy>>, Error>;

/// Encodes a secret value for the store.
pub fn encode(value: &SecretValue) -> Result<SecretBytes, Error> {
    let field = |out: &mut Vec<u8>, bytes: &[u8]| -> Result<(), Error> {
        let len = u32::try_from(bytes.len())
            .map_err(|_| Error::invalid("secret value", "longer than 4 GiB"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
        Ok(())
    };
    let (tag, size) = match value {
        SecretValue::Text(t) => (TAG_TEXT, t.expose_secret().len()),
        SecretValue::Bytes(b) => (TAG_BYTES, b.expose_secret().len()),
        SecretValue::PrivateKey(k) => (TAG_PRIVATE_KEY, k.expose_secret().len()),
        SecretValue::Certificate { der, issuers, key } => (
            TAG_CERTIFICATE,
            der.len() + key.expose_secret().len() + issuers.iter().map(Vec::len).sum::<usize>(),
        ),
        SecretValue::ColumnKey { key, wrapped } => {
            (TAG_COLUMN_KEY, key.expose_secret().len() + wrapped.len())
        }
        _ => {
            return Err(Error::Internal(
                "a secret value kind the store cannot encode",
            ));
        }
    };
    // Sized up front so that no reallocation leaves a copy of the secret behind.
    let mut out = Vec::with_capacity(2 + size + 4 * 4 + 4 * 64);
    out.push(FORMAT_V1);
    out.push(tag);
    match value {
        SecretValue::Text(t) => field(&mut out, t.expose_secret().as_bytes())?,
        SecretValue::Bytes(b) | SecretValue::PrivateKey(b) => field(&mut out, b.expose_secret())?,
        SecretValue::Certificate { der, issuers, key } => {
            field(&mut out, der)?;
            field(&mut out, key.expose_secret())?;
            let n = u32::try_from(issuers.len())
                .map_err(|_| Error::invalid("secret value", "too many issuers"))?;
            out.extend_from_slice(&n.to_be_bytes());
            for issuer in issuers {
                field(&mut out, issuer)?;
            }
        }
        SecretValue::ColumnKey { key, wrapped } => {
            field(&mut out, key.expose_secret())?;
            field(&mut out, wrapped)?;
        }
        _ => {
            return Err(Error::Internal(
                "a secret value kind the store cannot encode",
            ));
        }
    }
    Ok(SecretBytes::new(out))
}

/// Decodes a stored secret value.
pub fn decode(bytes: &[u8]) -> Result<SecretValue, Error> {
    let corrupt = |reason| Error::Corrupt {
        table: "secrets",
        reason,
    };
    let mut reader = Reader { rest: bytes };
    let header = reader.take(2)?;
    if header[0] != FORMAT_V1 {
        return Err(corrupt("unknown secret value format"));
    }
    let tag = header[1];
    let value = match tag {
        TAG_TEXT => {
            let text = std::str::from_utf8(reader.field()?)
                .map_err(|_| corrupt("text secret is not UTF-8"))?;
            SecretValue::text(text)
        }
        TAG_BYTES => SecretValue::Bytes(secret_box(reader.field()?)),
        TAG_PRIVATE_KEY => SecretValue::PrivateKey(secret_box(reader.field()?)),
        TAG_CERTIFICATE => {
            let der = reader.field()?.to_vec();
            let key = secret_box(reader.field()?);
            let n = u32::from_be_bytes(
                reader
                    .take(4)?
                    .try_into()
                    .map_err(|_| corrupt("truncated secret value"))?,
            );
            let mut issuers = Vec::new();
            for _ in 0..n {
                issuers.push(reader.field()?.to_vec());
            }
            SecretValue::Certificate { der, issuers, key }
        }
        TAG_COLUMN_KEY => {
            let key = secret_box(reader.field()?);
            let wrapped = reader.field()?.to_vec();
            SecretValue::ColumnKey { key, wrapped }
        }
        _ => return Err(corrupt("unknown secret value tag")),
    };
    if !reader.rest.is_empty() {
        return Err(corrupt("trailing bytes after a secret value"));
    }
    Ok(value)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(Error::Corrupt {
                table: "secrets",
                reason: "truncated secret value",
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn field(&mut self) -> Result<&'a [u8], Error> {
        let len = self.take(4)?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.take(len)
    }
}

fn secret_box(bytes: &[u8]) -> SecretBox<[u8]> {
    SecretBox::from(bytes.to_vec().into_boxed_slice())
}

/// A service's configuration with every placeholder filled, and the names of the secrets it
/// released.
#[derive(Debug)]
pub struct Resolved {
    /// The configuration.
    pub service: ResolvedService,
    /// The secrets it contains, by name, sorted.
    pub released: Vec<String>,
}

/// Session CAs rebuilt from their stored values, keyed by the SHA-256 of the value.
///
/// A session CA is per session, not per request, but rebuilding it (loading its key, which
/// checks the key pair, and parsing its certificate) cost more per attestation than reading and
/// decrypting the value. Keyed by the value itself, an entry can never stand for another CA or a
/// replaced one.
#[derive(Default)]
pub struct SessionCaCache {
    cas: Mutex<HashMap<[u8; 32], Arc<SessionCa>>>,
}

impl std::fmt::Debug for SessionCaCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let len = self
            .cas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        f.debug_struct("SessionCaCache").field("len", &len).finish()
    }
}

impl SessionCaCache {
    /// Entries kept; beyond that the cache starts afresh.
    const CAPACITY: usize = 1024;

    /// The CA stored as `value` (encoded as [`decode`] reads it), built once.
    fn get(&self, value: &[u8]) -> Result<Arc<SessionCa>, Error> {
        let digest = crate::sha256(value);
        let lock = || {
            self.cas
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        };
        if let Some(ca) = lock().get(&digest) {
            return Ok(ca.clone());
        }
        let ca = Arc::new(ca_from_value(&decode(value)?)?);
        let mut cas = lock();
        if cas.len() >= Self::CAPACITY {
            cas.clear();
        }
        cas.insert(digest, ca.clone());
        Ok(ca)
    }
}

/// Obtains a session's secrets: from the store, generated on first use, or imported.
pub struct Secrets<'a> {
    store: &'a dyn Store,
    config: &'a CasConfig,
    policies: PolicySource<'a>,
    now: SystemTime,
    generated: RefCell<Vec<(String, String)>>,
    ca_cache: Option<&'a SessionCaCache>,
}

impl std::fmt::Debug for Secrets<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("now", &self.now)
            .field("generated", &self.generated.borrow())
            .finish_non_exhaustive()
    }
}

impl<'a> Secrets<'a> {
    /// Secrets kept in `store`, generated at `now`, imported per `config`; other sessions'
    /// policies (for imports) come from `policies`.
    pub fn new(
        store: &'a dyn Store,
        config: &'a CasConfig,
        policies: PolicySource<'a>,
        now: SystemTime,
    ) -> Self {
        Self {
            store,
            config,
            policies,
            now,
            generated: RefCell::new(Vec::new()),
            ca_cache: None,
        }
    }

    /// The same, building each session CA once in `cache`.
    pub fn with_ca_cache(mut self, cache: &'a SessionCaCache) -> Self {
        self.ca_cache = Some(cache);
        self
    }

    /// The `(session, secret)` names this instance generated (for the audit log).
    pub fn generated(&self) -> Vec<(String, String)> {
        self.generated.borrow().clone()
    }

    /// The value of secret `name` of `policy`, encoded as in the store (see [`decode`]).
    pub fn value(&self, policy: &Policy, name: &str) -> Result<SecretBytes, Error> {
        let Some(secret) = policy.secret(name) else {
            return Err(Error::invalid(
                "secret",
                "the policy declares no such secret",
            ));
        };
        match &secret.kind {
            SecretKind::Import(source) => self.import(policy, name, source),
            SecretKind::ColumnMasterKey {
                source: Some(source),
                ..
            } => self.imported_cmk(policy, name, source),
            kind => self.generated_value(policy, name, kind),
        }
    }

    /// The session CA: the policy's first `x509-ca` secret, else the implicit one. Returns it
    /// with the policy secret's name (`None` for the implicit CA).
    pub fn session_ca(&self, policy: &Policy) -> Result<(Arc<SessionCa>, Option<String>), Error> {
        let declared = policy
            .secrets()
            .iter()
            .find(|s| matches!(s.kind, SecretKind::X509Ca { .. }));
        let (bytes, name) = match declared {
            Some(s) => (self.value(policy, &s.name)?, Some(s.name.clone())),
            None => {
                let bytes = self.stored_or_generate(policy.name(), IMPLICIT_SESSION_CA, || {
                    let ca = SessionCa::generate(policy.name(), self.now)?;
                    Ok(SecretValue::Certificate {
                        der: ca.cert_der().to_vec(),
                        issuers: Vec::new(),
                        key: secret_box(&ca.key_pkcs8()),
                    })
                })?;
                (bytes, None)
            }
        };
        let ca = match self.ca_cache {
            Some(cache) => cache.get(bytes.expose_secret())?,
            None => Arc::new(ca_from_value(&decode(bytes.expose_secret())?)?),
        };
        Ok((ca, name))
    }

    /// Fills every placeholder of `service` (of `policy`) and `@@N` with `host_args`.
    ///
    /// Only the secrets the configuration names are obtained (a first pass with stand-in
    /// values finds them), so an attestation generates and releases no more than it needs.
    pub fn resolve(
        &self,
        policy: &Policy,
        service: &Service,
        host_args: &[String],
    ) -> Result<Resolved, Error> {
        let wanted = RefCell::new(BTreeSet::new());
        let probe = |name: &str| {
            let secret = policy.secret(name)?;
            wanted.borrow_mut().insert(name.to_owned());
            Some(stand_in(&secret.kind))
        };
        drop(service.resolve(host_args, &probe)?);
        let wanted = wanted.into_inner();
        let mut values = BTreeMap::new();
        for name in &wanted {
            let bytes = self.value(policy, name)?;
            decode(bytes.expose_secret())?;
            values.insert(name.clone(), bytes);
        }
        let lookup = |name: &str| {
            values
                .get(name)
                .and_then(|b| decode(b.expose_secret()).ok())
        };
        let service = service.resolve(host_args, &lookup).map_err(|e| match e {
            // Only an imported value's shape is unknown until now: a binary file placed raw.
            cloister_policy::Error::FormatNotApplicable { name, format, kind } => {
                Error::ImportRefused {
                    message: format!(
                        "the value is {kind}; format `{format}` does not apply (binary values \
                         are placed with :hex or :base64)"
                    ),
                    secret: name,
                    rule: "placeholder-format",
                }
            }
            other => other.into(),
        })?;
        Ok(Resolved {
            service,
            released: wanted.into_iter().collect(),
        })
    }

    fn generated_value(
        &self,
        policy: &Policy,
        name: &str,
        kind: &SecretKind,
    ) -> Result<SecretBytes, Error> {
        self.stored_or_generate(policy.name(), name, || self.generate(policy, kind))
    }

    fn stored_or_generate(
        &self,
        session: &str,
        name: &str,
        make: impl FnOnce() -> Result<SecretValue, Error>,
    ) -> Result<SecretBytes, Error> {
        if let Some(stored) = self.store.secret(session, name)? {
            return Ok(stored.value);
        }
        let candidate = encode(&make()?)?;
        let stored = self.store.secret_or_insert(
            session,
            name,
            StoredSecret {
                value: candidate.clone(),
                created: self.now,
            },
        )?;
        if stored.value == candidate {
            tracing::info!(session, secret = name, "generated a secret");
            self.generated
                .borrow_mut()
                .push((session.to_owned(), name.to_owned()));
        }
        Ok(stored.value)
    }

    fn generate(&self, policy: &Policy, kind: &SecretKind) -> Result<SecretValue, Error> {
        Ok(match kind {
            SecretKind::Ascii { size } => SecretValue::text(random_ascii(*size as usize)?),
            SecretKind::Binary { size } => {
                SecretValue::Bytes(secret_box(&random_bytes(*size as usize)?))
            }
            SecretKind::Aes256 => SecretValue::Bytes(secret_box(&random_bytes(32)?)),
            SecretKind::PrivateKey { algorithm } => {
                SecretValue::PrivateKey(secret_box(&new_key(*algorithm)?.serialize_der()))
            }
            SecretKind::X509Ca {
                algorithm,
                common_name,
                validity_days,
            } => {
                let ca = SessionCa::generate_with(
                    new_key(*algorithm)?,
                    common_name,
                    days(*validity_days),
                    self.now,
                )?;
                SecretValue::Certificate {
                    der: ca.cert_der().to_vec(),
                    issuers: Vec::new(),
                    key: secret_box(&ca.key_pkcs8()),
                }
            }
            SecretKind::X509 {
                issuer,
                algorithm,
                common_name,
                sans,
                validity_days,
                private_key,
            } => {
                let ca_value = decode(self.value(policy, issuer)?.expose_secret())?;
                let ca = ca_from_value(&ca_value)?;
                let mut chain = vec![ca.cert_der().to_vec()];
                if let SecretValue::Certificate { issuers, .. } = &ca_value {
                    chain.extend(issuers.iter().cloned());
                }
                let key = match private_key {
                    Some(name) => match decode(self.value(policy, name)?.expose_secret())? {
                        SecretValue::PrivateKey(der) => KeyPair::try_from(der.expose_secret())
                            .map_err(|_| Error::Internal("a stored private key does not load"))?,
                        _ => {
                            return Err(Error::Internal(
                                "an x509 secret's private_key is not a private key",
                            ));
                        }
                    },
                    None => new_key(*algorithm)?,
                };
                let cert = ca.certify(
                    &key,
                    common_name,
                    sans,
                    self.now,
                    self.now + days(*validity_days),
                )?;
                SecretValue::Certificate {
                    der: cert.der,
                    issuers: chain,
                    key: secret_box(&Zeroizing::new(key.serialize_der())),
                }
            }
            SecretKind::ColumnMasterKey { algorithm, .. } => {
                SecretValue::PrivateKey(secret_box(&new_key(*algorithm)?.serialize_der()))
            }
            SecretKind::ColumnEncryptionKey { cmk } => {
                let master = self.column_master_key(policy, cmk)?;
                let cek = cloister_colenc::Cek::generate()
                    .map_err(|_| Error::Internal("the OS random generator failed"))?;
                let wrapped = cloister_colenc::wrap_cek(&cek, &master, cmk)
                    .map_err(|_| Error::Internal("wrapping a column encryption key failed"))?;
                SecretValue::ColumnKey {
                    key: secret_box(cek.expose_secret()),
                    wrapped,
                }
            }
            _ => return Err(Error::Internal("a secret kind this CAS cannot generate")),
        })
    }

    /// The `cmk` secret `name` of `policy` as a column master key.
    fn column_master_key(
        &self,
        policy: &Policy,
        name: &str,
    ) -> Result<cloister_colenc::Cmk, Error> {
        match decode(self.value(policy, name)?.expose_secret())? {
            SecretValue::PrivateKey(der) => {
                cloister_colenc::Cmk::from_pkcs8_der(der.expose_secret())
                    .map_err(|_| Error::Internal("a stored column master key does not load"))
            }
            _ => Err(Error::Internal("a cek's cmk is not a private key")),
        }
    }

    /// A `cmk` imported as PEM (PKCS#8 or PKCS#1 RSA), as PKCS#8 DER; read at each use.
    fn imported_cmk(
        &self,
        policy: &Policy,
        name: &str,
        source: &ImportSource,
    ) -> Result<SecretBytes, Error> {
        let not_a_key = || Error::ImportRefused {
            secret: name.to_owned(),
            rule: "import-format",
            message: "not an RSA private key PEM of 2048 bits or more".into(),
        };
        let SecretValue::Text(pem) = decode(self.import(policy, name, source)?.expose_secret())?
        else {
            return Err(not_a_key());
        };
        let cmk = cloister_colenc::Cmk::from_pem(pem.expose_secret()).map_err(|_| not_a_key())?;
        let pkcs8 = cmk
            .to_pkcs8_pem()
            .map_err(|_| Error::Internal("PKCS#8 encoding of a column master key failed"))?;
        let der = pem::parse(pkcs8.as_bytes())
            .map_err(|_| Error::Internal("PKCS#8 encoding of a column master key failed"))?;
        let der = Zeroizing::new(der.into_contents());
        encode(&SecretValue::PrivateKey(secret_box(&der)))
    }

    #[tracing::instrument(skip_all, fields(session = policy.name(), secret = name))]
    fn import(
        &self,
        policy: &Policy,
        name: &str,
        source: &ImportSource,
    ) -> Result<SecretBytes, Error> {
        let refused = |r: Refusal| {
            // The details (a host path) for the operator; the rule and message for everyone.
            tracing::warn!(rule = r.rule, detail = %r.detail, "import refused");
            Error::ImportRefused {
                secret: name.to_owned(),
                rule: r.rule,
                message: r.message,
            }
        };
        let rules = self.config.imports();
        let session = policy.name();
        let data_dir = self.config.data_dir();
        let value = match source {
            ImportSource::File(path) => {
                host_value(rules.read_file(session, path, data_dir).map_err(refused)?)
            }
            ImportSource::Env(var) => {
                rules.check_env(session, var).map_err(refused)?;
                let value = self.config.env_var(var).ok_or_else(|| {
                    refused(Refusal::new(
                        "import-missing",
                        format!("environment variable `{var}` is not set"),
                        "",
                    ))
                })?;
                SecretValue::text(value)
            }
            ImportSource::Kubernetes { secret, key } => host_value(
                rules
                    .read_kubernetes(
                        session,
                        self.config.kubernetes_secrets_dir(),
                        secret,
                        key,
                        data_dir,
                    )
                    .map_err(refused)?,
            ),
            ImportSource::Session(import) => {
                let exporter =
                    (self.policies)(&import.session)?.ok_or_else(|| Error::ImportUnavailable {
                        secret: name.to_owned(),
                        reason: format!("session `{}` does not exist", import.session),
                    })?;
                let history = self.history(policy)?;
                let owners = importer_owners(self.store, policy)?;
                let importer = Importer::new(policy, &history, &owners);
                cloister_policy::authorize_import(&importer, import, &exporter, &exporter.hash())
                    .map_err(|e| Error::ImportRefused {
                    secret: name.to_owned(),
                    rule: e.rule(),
                    message: e.to_string(),
                })?;
                return match exporter.secret(&import.secret).map(|s| &s.kind) {
                    Some(kind) if !kind.is_imported() => self.value(&exporter, &import.secret),
                    _ => Err(Error::ImportRefused {
                        secret: name.to_owned(),
                        rule: "export-secret",
                        message: format!(
                            "`{}` is not a secret `{}` generates",
                            import.secret, import.session
                        ),
                    }),
                };
            }
            _ => {
                return Err(refused(Refusal::new(
                    "import-not-allowed",
                    "an import source this CAS does not know",
                    "",
                )));
            }
        };
        encode(&value)
    }

    /// The hashes of every stored version of `policy`'s session, and `policy`'s own.
    fn history(&self, policy: &Policy) -> Result<Vec<SessionHash>, Error> {
        let mut hashes: Vec<SessionHash> = self
            .store
            .session(policy.name())?
            .map(|s| s.versions.iter().map(|v| v.hash).collect())
            .unwrap_or_default();
        hashes.push(policy.hash());
        Ok(hashes)
    }
}

/// The owners of the importing session's namespace, whom an export may name instead of a
/// version of the importer: the namespace's owners in the CAS's registry (set by the operator's
/// admin key), so that only whom the operator appointed can put a session under that name.
///
/// A store made before namespaces existed has sessions in namespaces with no record until the
/// operator runs `cloister cas init --admin-key` (which creates one for each); until then the
/// importing session's own policy owners stand in, and a session created under the importer's
/// name by anyone else has other owners (the export names every one), so it still gets nothing.
pub fn importer_owners(
    store: &dyn Store,
    policy: &Policy,
) -> Result<BTreeSet<KeyFingerprint>, Error> {
    let namespace = cloister_policy::names::split_session(policy.name())
        .ok()
        .map(|(ns, _)| ns);
    if let Some(ns) = namespace
        .map(|ns| store.namespace(ns))
        .transpose()?
        .flatten()
    {
        return Ok(ns
            .owners
            .iter()
            .map(|o| KeyFingerprint::of_spki_der(&o.public_key))
            .collect());
    }
    Ok(policy
        .access()
        .owners
        .iter()
        .map(|o| o.key.fingerprint())
        .collect())
}

/// A host import's bytes: text when they are UTF-8, else binary.
fn host_value(bytes: Zeroizing<Vec<u8>>) -> SecretValue {
    match std::str::from_utf8(&bytes) {
        Ok(text) => SecretValue::text(text),
        Err(_) => SecretValue::Bytes(secret_box(&bytes)),
    }
}

/// A stand-in value of the right shape for the discovery pass of [`Secrets::resolve`]; an
/// imported session secret may be of any kind, and a certificate accepts every format.
fn stand_in(kind: &SecretKind) -> SecretValue {
    match kind {
        SecretKind::Ascii { .. }
        | SecretKind::Import(ImportSource::File(_))
        | SecretKind::Import(ImportSource::Env(_))
        | SecretKind::Import(ImportSource::Kubernetes { .. }) => SecretValue::text(""),
        SecretKind::Binary { .. } | SecretKind::Aes256 => SecretValue::bytes(Vec::new()),
        SecretKind::PrivateKey { .. } | SecretKind::ColumnMasterKey { .. } => {
            SecretValue::private_key(Vec::new())
        }
        SecretKind::ColumnEncryptionKey { .. } => SecretValue::ColumnKey {
            key: secret_box(&[]),
            wrapped: Vec::new(),
        },
        _ => SecretValue::Certificate {
            der: Vec::new(),
            issuers: Vec::new(),
            key: secret_box(&[]),
        },
    }
}

fn ca_from_value(value: &SecretValue) -> Result<SessionCa, Error> {
    match value {
        SecretValue::Certificate { der, key, .. } => {
            SessionCa::from_parts(der, key.expose_secret())
        }
        _ => Err(Error::Internal(
            "an x509-ca secret does not hold a certificate",
        )),
    }
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

fn random_bytes(n: usize) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut bytes = Zeroizing::new(vec![0u8; n]);
    getrandom::fill(&mut bytes).map_err(|_| Error::Internal("the OS random generator failed"))?;
    Ok(bytes)
}

/// `n` random letters and digits: bytes ≥ 248 (= 4 × 62) are drawn again, so each of the 62
/// characters is equally likely.
fn random_ascii(n: usize) -> Result<String, Error> {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let batch = random_bytes(n)?;
        for b in batch.iter().filter(|b| **b < 248) {
            if out.len() == n {
                break;
            }
            out.push(char::from(ALPHABET[usize::from(*b % 62)]));
        }
    }
    Ok(out)
}

fn new_key(algorithm: KeyAlgorithm) -> Result<KeyPair, Error> {
    let generated =
        |alg| KeyPair::generate_for(alg).map_err(|_| Error::Internal("key generation failed"));
    let rsa = |bits: usize| -> Result<KeyPair, Error> {
        use rsa::pkcs8::EncodePrivateKey as _;
        let key = rsa::RsaPrivateKey::new(&mut OsRng, bits)
            .map_err(|_| Error::Internal("RSA key generation failed"))?;
        let der = key
            .to_pkcs8_der()
            .map_err(|_| Error::Internal("PKCS#8 encoding of an RSA key failed"))?;
        let der = rustls_pki_types::PrivatePkcs8KeyDer::from(der.as_bytes());
        KeyPair::from_pkcs8_der_and_sign_algo(&der, &PKCS_RSA_SHA256)
            .map_err(|_| Error::Internal("ring refused a fresh RSA key"))
    };
    // Touch the RNG trait so that a failing OS generator shows up here, not in a library panic.
    let _ = OsRng.next_u32();
    match algorithm {
        KeyAlgorithm::EcP256 => generated(&PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcP384 => generated(&PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Ed25519 => generated(&PKCS_ED25519),
        KeyAlgorithm::Rsa2048 => rsa(2048),
        KeyAlgorithm::Rsa3072 => rsa(3072),
        KeyAlgorithm::Rsa4096 => rsa(4096),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use crate::{FileStore, MasterKey};
    use cloister_policy::OwnerKey;

    fn owner_b64(seed: u8) -> String {
        let pem = OwnerKey::from_seed(&[seed; 32])
            .unwrap()
            .public_key()
            .to_pem()
            .unwrap();
        pem.lines().filter(|l| !l.starts_with("-----")).collect()
    }

    fn policy(name: &str, secrets: &str, env: &str, extra: &str) -> Policy {
        let yaml = format!(
            "name: {name}\nversion: 1\naccess:\n  owners:\n    - name: o\n      key: {k}\n\
             security:\n  tees: [sim]\nservices:\n  - name: app\n    attestation:\n\
             \x20     - measurements: [{m}]\n    env:\n{env}secrets:\n{secrets}{extra}",
            k = owner_b64(1),
            m = "ab".repeat(32),
        );
        Policy::parse(&yaml).unwrap()
    }

    fn with_secrets<T>(f: impl FnOnce(&Secrets<'_>, &dyn Store) -> T) -> T {
        with_secrets_in(|secrets, store, _| f(secrets, store))
    }

    /// Secrets over a store in `DIR/data`; namespace `t` may import the files beneath the
    /// directory passed to `f`, `DB_PASSWORD` and `UNSET_VAR`, and Kubernetes Secret `db`.
    fn with_secrets_in<T>(f: impl FnOnce(&Secrets<'_>, &dyn Store, &std::path::Path) -> T) -> T {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let imports = dir.path().join("imports");
        std::fs::create_dir_all(&imports).unwrap();
        let store = FileStore::open(&data, &MasterKey::generate()).unwrap();
        let rules = crate::ImportRules::none()
            .allow_files("t", &imports)
            .allow_env("t", "DB_PASSWORD")
            .allow_env("t", "UNSET_VAR")
            .allow_kubernetes_secret("t", "db");
        let config = CasConfig::builder("https://cas.test")
            .env_source(Arc::new(|name| {
                (name == "DB_PASSWORD" || name == "HOME").then(|| "env-pw".into())
            }))
            .kubernetes_secrets_dir(dir.path().join("k8s"))
            .imports(rules)
            .build()
            .unwrap()
            .with_data_dir(&data)
            .unwrap();
        std::fs::create_dir_all(dir.path().join("k8s/db")).unwrap();
        std::fs::write(dir.path().join("k8s/db/password"), "k8s-pw").unwrap();
        std::fs::write(imports.join("file-secret"), "file-pw\n").unwrap();
        std::fs::write(imports.join("binary"), [0xff, 0x00, 0xfe]).unwrap();
        let none = |_: &str| Ok(None);
        let secrets = Secrets::new(&store, &config, &none, SystemTime::now());
        f(&secrets, &store, &imports)
    }

    fn refused_rule(r: Result<SecretBytes, Error>) -> &'static str {
        match r {
            Err(Error::ImportRefused { rule, .. }) => rule,
            Err(other) => panic!("expected a refusal, got {other:?}"),
            Ok(_) => panic!("expected a refusal, got a value"),
        }
    }

    #[test]
    fn encoding_round_trips_every_kind() {
        for value in [
            SecretValue::text("pw"),
            SecretValue::bytes(vec![1, 2, 3]),
            SecretValue::private_key(vec![4; 40]),
            SecretValue::Certificate {
                der: vec![0x30, 1],
                issuers: vec![vec![5], vec![6, 7]],
                key: secret_box(&[8; 3]),
            },
        ] {
            let bytes = encode(&value).unwrap();
            let back = decode(bytes.expose_secret()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{value:?}"));
            assert_eq!(encode(&back).unwrap(), bytes);
        }
        for bad in [
            &[][..],
            &[2, 1, 0, 0, 0, 0],
            &[1, 9, 0, 0, 0, 0],
            &[1, 1, 0, 0, 0, 5, 1],
        ] {
            assert!(matches!(decode(bad), Err(Error::Corrupt { .. })), "{bad:?}");
        }
    }

    #[test]
    fn random_ascii_is_alphanumeric_of_the_length() {
        let s = random_ascii(500).unwrap();
        assert_eq!(s.len(), 500);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn generated_secrets_are_kept_and_resolved() {
        let p = policy(
            "t/gen",
            "  - name: pw\n    kind: ascii\n    size: 20\n  - name: raw\n    kind: binary\n    size: 7\n\
             \x20 - name: dek\n    kind: aes256\n  - name: ed\n    kind: private-key\n    algorithm: ed25519\n\
             \x20 - name: ec\n    kind: private-key\n    algorithm: ec-p384\n\
             \x20 - name: ca\n    kind: x509-ca\n    common_name: Test CA\n\
             \x20 - name: cert\n    kind: x509\n    issuer: ca\n    common_name: app\n    sans: [app.test, 10.0.0.1]\n    private_key: ec\n\
             \x20 - name: unused\n    kind: aes256\n",
            "      PW: $$cloister:pw$$\n      RAW: $$cloister:raw:hex$$\n      DEK: $$cloister:dek:base64$$\n\
             \x20     ED: $$cloister:ed$$\n      CHAIN: $$cloister:cert:chain$$\n      KEY: $$cloister:cert:key$$\n",
            "",
        );
        with_secrets(|secrets, store| {
            let r = secrets.resolve(&p, p.service("app").unwrap(), &[]).unwrap();
            assert_eq!(r.released, vec!["cert", "dek", "ed", "pw", "raw"]);
            let env = |k: &str| r.service.env[k].expose_secret().to_owned();
            assert_eq!(env("PW").len(), 20);
            assert_eq!(env("RAW").len(), 14);
            assert!(env("ED").starts_with("-----BEGIN PRIVATE KEY-----"));
            assert_eq!(env("CHAIN").matches("BEGIN CERTIFICATE").count(), 2);
            assert!(env("KEY").starts_with("-----BEGIN PRIVATE KEY-----"));
            // Generated once, kept: the same values the second time; `unused` never made.
            let again = secrets.resolve(&p, p.service("app").unwrap(), &[]).unwrap();
            assert_eq!(again.service.env["PW"].expose_secret(), env("PW"));
            assert_eq!(again.service.env["CHAIN"].expose_secret(), env("CHAIN"));
            assert_eq!(
                store.secret_names("t/gen").unwrap(),
                vec!["ca", "cert", "dek", "ec", "ed", "pw", "raw"]
            );
            let generated: Vec<String> = secrets.generated().into_iter().map(|(_, n)| n).collect();
            assert_eq!(generated.len(), 7, "{generated:?}");
            // The x509 certifies the named private key and chains to the CA.
            let SecretValue::Certificate { der, issuers, .. } = decode(
                store
                    .secret("t/gen", "cert")
                    .unwrap()
                    .unwrap()
                    .value
                    .expose_secret(),
            )
            .unwrap() else {
                panic!("not a certificate")
            };
            let (_, leaf) = x509_parser::parse_x509_certificate(&der).unwrap();
            let (_, ca) = x509_parser::parse_x509_certificate(&issuers[0]).unwrap();
            leaf.verify_signature(Some(ca.public_key())).unwrap();
            let (ca_cert, name) = secrets.session_ca(&p).unwrap();
            assert_eq!(name.as_deref(), Some("ca"));
            assert_eq!(ca_cert.cert_der(), issuers[0].as_slice());
        });
    }

    #[test]
    fn rsa_keys_are_generated() {
        let key = new_key(KeyAlgorithm::Rsa2048).unwrap();
        assert_eq!(key.algorithm(), &PKCS_RSA_SHA256);
        let again = KeyPair::try_from(key.serialize_der().as_slice()).unwrap();
        assert_eq!(again.public_key_raw(), key.public_key_raw());
    }

    #[test]
    fn implicit_session_ca_is_kept() {
        let p = policy(
            "t/noca",
            "  - name: pw\n    kind: ascii\n",
            "      PW: x\n",
            "",
        );
        with_secrets(|secrets, store| {
            let (a, name) = secrets.session_ca(&p).unwrap();
            assert_eq!(name, None);
            let (b, _) = secrets.session_ca(&p).unwrap();
            assert_eq!(a.cert_der(), b.cert_der());
            assert_eq!(
                store.secret_names("t/noca").unwrap(),
                vec![IMPLICIT_SESSION_CA]
            );
        });
    }

    #[test]
    fn session_cas_are_built_once_per_stored_value() {
        let p = policy(
            "t/cached",
            "  - name: pw\n    kind: ascii\n",
            "      PW: x\n",
            "",
        );
        let cache = SessionCaCache::default();
        with_secrets(|secrets, _| {
            let uncached = secrets.session_ca(&p).unwrap().0;
            let secrets =
                Secrets::new(secrets.store, secrets.config, secrets.policies, secrets.now)
                    .with_ca_cache(&cache);
            let (a, _) = secrets.session_ca(&p).unwrap();
            let (b, _) = secrets.session_ca(&p).unwrap();
            assert!(Arc::ptr_eq(&a, &b), "built once");
            assert_eq!(a.cert_der(), uncached.cert_der());
        });
        // Another session's CA is another entry.
        let q = policy(
            "t/other",
            "  - name: pw\n    kind: ascii\n",
            "      PW: x\n",
            "",
        );
        with_secrets(|secrets, _| {
            let secrets =
                Secrets::new(secrets.store, secrets.config, secrets.policies, secrets.now)
                    .with_ca_cache(&cache);
            let (c, _) = secrets.session_ca(&q).unwrap();
            assert!(!c.cert_pem().is_empty());
        });
        assert_eq!(cache.cas.lock().unwrap().len(), 2);
    }

    #[test]
    fn imports_are_read_at_use() {
        with_secrets_in(|secrets, store, imports| {
            let p = policy(
                "t/imp",
                &format!(
                    "  - name: f\n    kind: import\n    from:\n      file: {f}\n\
                     \x20 - name: bin\n    kind: import\n    from:\n      file: {b}\n\
                     \x20 - name: e\n    kind: import\n    from:\n      env: DB_PASSWORD\n\
                     \x20 - name: missing\n    kind: import\n    from:\n      env: UNSET_VAR\n\
                     \x20 - name: k\n    kind: import\n    from:\n      kubernetes:\n        secret: db\n        key: password\n",
                    f = imports.join("file-secret").display(),
                    b = imports.join("binary").display(),
                ),
                "      E: $$cloister:e$$\n      K: $$cloister:k$$\n      F: $$cloister:f$$\n\
                 \x20     B: $$cloister:bin:hex$$\n      B64: $$cloister:bin:base64$$\n",
                "",
            );
            let r = secrets.resolve(&p, p.service("app").unwrap(), &[]).unwrap();
            assert_eq!(r.service.env["E"].expose_secret(), "env-pw");
            assert_eq!(r.service.env["K"].expose_secret(), "k8s-pw");
            // Exactly the file's bytes: the newline stays.
            assert_eq!(r.service.env["F"].expose_secret(), "file-pw\n");
            // Binary files are bytes, rendered by :hex and :base64.
            assert_eq!(r.service.env["B"].expose_secret(), "ff00fe");
            assert_eq!(r.service.env["B64"].expose_secret(), "/wD+");
            assert!(
                store.secret_names("t/imp").unwrap().is_empty(),
                "imports are not stored"
            );
            assert_eq!(refused_rule(secrets.value(&p, "missing")), "import-missing");
        });
    }

    #[test]
    fn a_binary_import_placed_raw_is_refused_by_rule() {
        with_secrets_in(|secrets, _, imports| {
            let p = policy(
                "t/raw",
                &format!(
                    "  - name: bin\n    kind: import\n    from:\n      file: {}\n",
                    imports.join("binary").display()
                ),
                "      B: $$cloister:bin$$\n",
                "",
            );
            let err = secrets
                .resolve(&p, p.service("app").unwrap(), &[])
                .unwrap_err();
            match err {
                Error::ImportRefused {
                    secret,
                    rule,
                    message,
                } => {
                    assert_eq!((secret.as_str(), rule), ("bin", "placeholder-format"));
                    assert!(message.contains(":hex or :base64"), "{message}");
                }
                other => panic!("{other:?}"),
            }
        });
    }

    /// What an attacker's policy may ask for: each refused by rule, naming no host path.
    #[rstest::rstest]
    #[case::proc_environ("file: /proc/self/environ", "import-not-allowed")]
    #[case::etc_shadow("file: /etc/shadow", "import-not-allowed")]
    #[case::symlink_out("file: IMPORTS/link", "import-escape")]
    #[case::data_dir("file: DATA/cas.redb", "import-not-allowed")]
    #[case::master_key("env: CLOISTER_MASTER_KEY", "import-not-allowed")]
    #[case::env_not_allowed("env: HOME", "import-not-allowed")]
    #[case::kubernetes_not_allowed(
        "kubernetes: {secret: other, key: password}",
        "import-not-allowed"
    )]
    fn host_imports_not_allowed_are_refused(#[case] from: &str, #[case] rule: &str) {
        with_secrets_in(|secrets, _, imports| {
            let root = imports.parent().unwrap();
            std::os::unix::fs::symlink("/etc/passwd", imports.join("link")).unwrap();
            let from = from
                .replace("IMPORTS", &imports.display().to_string())
                .replace("DATA", &root.join("data").display().to_string());
            let p = policy(
                "t/attack",
                &format!("  - name: x\n    kind: import\n    from:\n      {from}\n"),
                "      X: $$cloister:x:hex$$\n",
                "",
            );
            let err = secrets
                .resolve(&p, p.service("app").unwrap(), &[])
                .unwrap_err();
            let Error::ImportRefused {
                rule: got, message, ..
            } = &err
            else {
                panic!("{err:?}")
            };
            assert_eq!(*got, rule, "{message}");
            assert!(!message.contains(&root.display().to_string()), "{message}");
        });
    }

    #[test]
    fn column_keys_are_generated_wrapped_and_imported() {
        let exporter = Arc::new(policy(
            "t/hr",
            "  - name: CMK1\n    kind: cmk\n  - name: CEK1\n    kind: cek\n    cmk: CMK1\n",
            "      CLOISTER_CMK_CMK1: $$cloister:CMK1:pem$$\n      CLOISTER_CEK_CEK1: $$cloister:CEK1:hex$$\n\
             \x20     RAW: $$cloister:CEK1:key$$\n",
            &format!(
                "export:\n  - secret: CEK1\n    to:\n      - session: t/payroll\n        owners: [{}]\n",
                OwnerKey::from_seed(&[1; 32]).unwrap().fingerprint()
            ),
        ));
        let importer = |hash: &str| {
            policy(
                "t/payroll",
                &format!(
                    "  - name: CEK1\n    kind: import\n    from:\n      session:\n        session: t/hr\n\
                     \x20       secret: CEK1\n        session_hash: {hash}\n"
                ),
                "      CLOISTER_CEK_CEK1: $$cloister:CEK1:key$$\n",
                "",
            )
        };
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), &MasterKey::generate()).unwrap();
        let config = CasConfig::builder("https://cas.test").build().unwrap();
        let exp = exporter.clone();
        let source = move |name: &str| Ok((name == "t/hr").then(|| exp.clone()));
        let secrets = Secrets::new(&store, &config, &source, SystemTime::now());

        let r = secrets
            .resolve(&exporter, exporter.service("app").unwrap(), &[])
            .unwrap();
        assert_eq!(r.released, vec!["CEK1", "CMK1"]);
        let env = |k: &str| r.service.env[k].expose_secret().to_owned();
        let cmk = cloister_colenc::Cmk::from_pem(&env("CLOISTER_CMK_CMK1")).unwrap();
        let wrapped = hex::decode(env("CLOISTER_CEK_CEK1")).unwrap();
        // Wrapped as SQL Server does, under key path = the CMK's name (lower-cased).
        let parsed = cloister_colenc::WrappedCek::parse(&wrapped).unwrap();
        assert_eq!(parsed.key_path().unwrap(), "cmk1");
        parsed.verify(cmk.public_key()).unwrap();
        let cek = cloister_colenc::unwrap_cek(&wrapped, &cmk, "CMK1").unwrap();
        assert_eq!(hex::encode(cek.expose_secret()), env("RAW"));

        // The importer gets the same key without the CMK; a stale pin is refused by rule.
        let ok = importer(&exporter.hash().to_string());
        let got = secrets
            .resolve(&ok, ok.service("app").unwrap(), &[])
            .unwrap();
        assert_eq!(
            got.service.env["CLOISTER_CEK_CEK1"].expose_secret(),
            env("RAW")
        );
        let stale = importer(&"ab".repeat(32));
        let err = secrets
            .resolve(&stale, stale.service("app").unwrap(), &[])
            .unwrap_err();
        assert!(
            matches!(&err, Error::ImportRefused { rule, .. } if *rule == "import-hash"),
            "{err:?}"
        );
        // Stored values are kept, and no key shows in Debug.
        let SecretValue::ColumnKey { wrapped: kept, .. } = decode(
            store
                .secret("t/hr", "CEK1")
                .unwrap()
                .unwrap()
                .value
                .expose_secret(),
        )
        .unwrap() else {
            panic!("not a column key")
        };
        assert_eq!(kept, wrapped);
        assert!(!format!("{r:?}").contains(&env("RAW")));
    }

    #[test]
    fn imported_cmk_pem_wraps_ceks() {
        with_secrets_in(imported_cmk_pem_wraps_ceks_in);
    }

    fn imported_cmk_pem_wraps_ceks_in(
        secrets: &Secrets<'_>,
        store: &dyn Store,
        dir: &std::path::Path,
    ) {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
        ))
        .unwrap();
        let path = dir.join("cmk.pem");
        std::fs::write(&path, &pem).unwrap();
        std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
        let p = policy(
            "t/imported",
            &format!(
                "  - name: CMK2\n    kind: cmk\n    from:\n      file: {}\n\
                 \x20 - name: BAD\n    kind: cmk\n    from:\n      file: {}\n\
                 \x20 - name: CEK2\n    kind: cek\n    cmk: CMK2\n",
                path.display(),
                dir.join("bad.pem").display()
            ),
            "      CEK: $$cloister:CEK2:hex$$\n",
            "",
        );
        let r = secrets.resolve(&p, p.service("app").unwrap(), &[]).unwrap();
        let wrapped = hex::decode(r.service.env["CEK"].expose_secret()).unwrap();
        let cmk = cloister_colenc::Cmk::from_pem(&pem).unwrap();
        cloister_colenc::unwrap_cek(&wrapped, &cmk, "CMK2").unwrap();
        // The imported CMK itself is never stored; the CEK is.
        assert_eq!(store.secret_names("t/imported").unwrap(), vec!["CEK2"]);
        let err = secrets.value(&p, "BAD").unwrap_err();
        assert!(
            matches!(&err, Error::ImportRefused { secret, rule: "import-format", .. } if secret == "BAD"),
            "{err:?}"
        );
    }
}

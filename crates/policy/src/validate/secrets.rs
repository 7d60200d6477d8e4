//! `secrets:`: generated, imported and column-encryption secrets, and who may import them.

use super::*;

impl Validator<'_> {
    pub(super) fn secrets(&mut self, own_name: &str, docs: &[SecretDoc]) -> Vec<Secret> {
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

    pub(super) fn secret(
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

    pub(super) fn import_source(
        &mut self,
        own_name: &str,
        i: usize,
        from: &ImportSourceDoc,
    ) -> ImportSource {
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
    pub(super) fn importer_identity(
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
}

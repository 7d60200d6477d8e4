//! `services:`: each service's attestation variants, bundle pin, environment and file templates.

use super::*;

impl Validator<'_> {
    /// The services; `hardware`: the policy accepts a hardware TEE, so every service that
    /// hardware evidence can match must pin its app bundle.
    pub(super) fn services(
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
    pub(super) fn bundle_pin(&mut self, i: usize, s: &doc::ServiceDoc) {
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

    pub(super) fn variant(
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
    pub(super) fn template(
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
}

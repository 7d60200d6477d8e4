//! `access:`: owners, readers, approvals and who may change what.

use super::*;

impl Validator<'_> {
    pub(super) fn access(&mut self, access: &doc::AccessDoc) -> Access {
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
}

//! `exports:`: which secrets another session may import.

use super::*;

impl Validator<'_> {
    pub(super) fn exports(&mut self, docs: &[doc::ExportDoc], secrets: &[Secret]) -> Vec<Export> {
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

//! `security:`: the accepted TEEs, what is tolerated, and the SNP and DCAP rules.

use super::*;

impl Validator<'_> {
    pub(super) fn security(&mut self, sec: &doc::SecurityDoc) -> Security {
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
    pub(super) fn snp_rules(
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
}

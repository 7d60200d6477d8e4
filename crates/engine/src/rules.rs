//! The engine's rules for SQL statements, checked on every plan before it runs.
//!
//! Each refusal is an [`Error::StatementRefused`] carrying the [`Rule`] it broke; the rule's id
//! ([`Rule::as_str`], also its `Display`) is user-visible and stable:
//!
//! | rule | id | refuses |
//! | --- | --- | --- |
//! | [`Rule::KeyMaterialInSql`] | `key-material-in-sql` | key bytes in `COPY` / `CREATE EXTERNAL TABLE` options ([`check_plan`]) |
//! | [`Rule::SpillEncryption`] | `spill-encryption` | `SET` / `RESET` of runtime settings that would drop the encrypted spill ([`check_plan`]) |
//! | [`Rule::PlaintextOutput`] | `plaintext-output` | writes the [`OutputPolicy`] does not allow ([`check_output`]) |
//! | [`Rule::OutputExists`] | `output-exists` | an app output that exists already, or is written twice ([`output`](crate::output)) |
//! | [`Rule::AtomicOutput`] | `atomic-output` | an app write that cannot be staged and committed atomically ([`app`](crate::app)) |

use std::fmt;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::logical_plan::dml::CopyTo;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, Statement, WriteOp};
use datafusion::parquet::arrow::ArrowSchemaConverter;

use crate::encryption::EncryptionOptions;
use crate::output::{OutputPolicy, is_memory_table};
use crate::{Error, FACTORY_ID};

/// A statement rule of the engine, carried by [`Error::StatementRefused`]; see the
/// [module docs](self) for what each refuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// `key-material-in-sql`: no key bytes in SQL options; name key ids instead.
    KeyMaterialInSql,
    /// `spill-encryption`: no setting that would replace the encrypted spill factory.
    SpillEncryption,
    /// `plaintext-output`: only the outputs the [`OutputPolicy`] allows.
    PlaintextOutput,
    /// `output-exists`: an app's output must not exist beforehand, nor be written twice.
    OutputExists,
    /// `atomic-output`: an app's writes must be ones the engine can stage and commit whole.
    AtomicOutput,
}

impl Rule {
    /// Every rule.
    pub const ALL: [Rule; 5] = [
        Rule::KeyMaterialInSql,
        Rule::SpillEncryption,
        Rule::PlaintextOutput,
        Rule::OutputExists,
        Rule::AtomicOutput,
    ];

    /// The rule's stable kebab-case id (shown to users, matched by tools).
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::KeyMaterialInSql => "key-material-in-sql",
            Rule::SpillEncryption => "spill-encryption",
            Rule::PlaintextOutput => "plaintext-output",
            Rule::OutputExists => "output-exists",
            Rule::AtomicOutput => "atomic-output",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `datafusion.runtime.*` settings that SQL may change: those that keep the disk manager.
/// DataFusion 55 rebuilds the disk manager in plain-file mode when any other runtime setting
/// (`temp_directory`, `max_temp_directory_size`, `max_spill_merge_fan_in`) is set or reset.
const RUNTIME_SETTINGS_ALLOWED: [&str; 5] = [
    "datafusion.runtime.memory_limit",
    "datafusion.runtime.metadata_cache_limit",
    "datafusion.runtime.list_files_cache_limit",
    "datafusion.runtime.list_files_cache_ttl",
    "datafusion.runtime.file_statistics_cache_limit",
];

/// The engine's rules for SQL statements:
///
/// - `key-material-in-sql`: no `crypto.file_encryption.*` / `crypto.file_decryption.*` options
///   (DataFusion's way of giving key bytes in hex) in `COPY` or `CREATE EXTERNAL TABLE`; name key
///   ids through `crypto.factory_options.*` instead.
/// - `spill-encryption`: no `SET` / `RESET` of `datafusion.runtime.*` settings that would make
///   DataFusion rebuild its disk manager without the encrypted spill factory.
///
/// Every node of the plan is checked, so the rules also hold under `EXPLAIN` (whose output
/// would show the options) and `EXPLAIN ANALYZE` (which runs the statement).
pub fn check_plan(plan: &LogicalPlan) -> Result<(), Error> {
    let mut result = Ok(());
    // The closure never fails itself; the first violation stops the walk.
    let _ = plan.apply_with_subqueries(|node| match check_node(node) {
        Ok(()) => Ok(TreeNodeRecursion::Continue),
        Err(e) => {
            result = Err(e);
            Ok(TreeNodeRecursion::Stop)
        }
    });
    result
}

fn check_node(plan: &LogicalPlan) -> Result<(), Error> {
    let options = match plan {
        LogicalPlan::Copy(copy) => Some(&copy.options),
        LogicalPlan::Ddl(DdlStatement::CreateExternalTable(create)) => Some(&create.options),
        LogicalPlan::Statement(Statement::SetVariable(set)) => {
            return check_runtime_setting(&set.variable);
        }
        LogicalPlan::Statement(Statement::ResetVariable(reset)) => {
            return check_runtime_setting(&reset.variable);
        }
        _ => None,
    };
    if let Some(options) = options {
        let mut keys: Vec<&String> = options.keys().collect();
        keys.sort();
        if let Some(key) = keys.into_iter().find(|k| {
            let k = k.to_ascii_lowercase();
            k.contains("crypto.file_encryption") || k.contains("crypto.file_decryption")
        }) {
            return Err(Error::StatementRefused {
                rule: Rule::KeyMaterialInSql,
                detail: format!(
                    "option {key:?} carries key bytes; name key ids with \
                     'format.crypto.factory_id' '{FACTORY_ID}' and \
                     'format.crypto.factory_options.*' instead"
                ),
            });
        }
    }
    Ok(())
}

fn check_runtime_setting(variable: &str) -> Result<(), Error> {
    let variable = variable.trim().to_ascii_lowercase();
    if variable.starts_with("datafusion.runtime.")
        && !RUNTIME_SETTINGS_ALLOWED.contains(&variable.as_str())
    {
        return Err(Error::StatementRefused {
            rule: Rule::SpillEncryption,
            detail: format!("{variable} would replace the encrypted spill factory"),
        });
    }
    Ok(())
}

// ----- plaintext-output -----

fn refused(detail: String) -> Error {
    Error::StatementRefused {
        rule: Rule::PlaintextOutput,
        detail,
    }
}

/// Check every write in `plan` (anywhere in it, including under `EXPLAIN ANALYZE`) against
/// `policy`.
pub fn check_output(plan: &LogicalPlan, policy: &OutputPolicy) -> Result<(), Error> {
    let mut result = Ok(());
    // The closure never returns an error itself; the first violation stops the walk.
    let _ = plan.apply_with_subqueries(|node| {
        let checked = match node {
            LogicalPlan::Copy(copy) => check_copy(copy, policy),
            LogicalPlan::Dml(dml) => check_dml(dml, policy),
            _ => Ok(()),
        };
        match checked {
            Ok(()) => Ok(TreeNodeRecursion::Continue),
            Err(e) => {
                result = Err(e);
                Ok(TreeNodeRecursion::Stop)
            }
        }
    });
    result
}

/// The format-only part of the policy, for a `COPY` known from its SQL text (before
/// planning): `format` is the `STORED AS` format or the target's extension, `options` the
/// statement's options with DataFusion's key normalisation (lower case, `format.` prefix).
pub(crate) fn check_copy_format(
    target: &str,
    format: &str,
    options: &dyn Fn(&str) -> Option<String>,
    policy: &OutputPolicy,
) -> Result<(), Error> {
    if policy.allows_plaintext_formats() {
        return Ok(());
    }
    let format = format.to_ascii_lowercase();
    if format != "parquet" {
        return Err(refused(format!(
            "COPY to {target:?} writes plaintext {}; the output policy allows encrypted \
             Parquet only (STORED AS PARQUET with 'format.crypto.factory_id' '{FACTORY_ID}')",
            format.to_ascii_uppercase()
        )));
    }
    let factory = options("format.crypto.factory_id");
    if factory.as_deref().map(str::trim) != Some(FACTORY_ID) {
        return Err(refused(format!(
            "COPY to {target:?} writes unencrypted Parquet; add OPTIONS \
             ('format.crypto.factory_id' '{FACTORY_ID}', \
             'format.crypto.factory_options.footer_key' '<key id>')"
        )));
    }
    Ok(())
}

fn check_copy(copy: &CopyTo, policy: &OutputPolicy) -> Result<(), Error> {
    let target = &copy.output_url;
    let lookup = |key: &str| copy.options.get(key).cloned();
    check_copy_format(target, &copy.file_type.get_ext(), &lookup, policy)?;
    if policy.allows_plaintext_columns()
        || !copy.file_type.get_ext().eq_ignore_ascii_case("parquet")
    {
        return Ok(());
    }
    if !copy.partition_by.is_empty() {
        return Err(refused(format!(
            "COPY to {target:?} is PARTITIONED BY {}, whose values would be plaintext \
             directory names",
            copy.partition_by.join(", ")
        )));
    }
    const PREFIX: &str = "format.crypto.factory_options.";
    let factory_options = copy
        .options
        .iter()
        .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k.to_owned(), v.clone())))
        .collect();
    let options = EncryptionOptions::from_map(&factory_options)?;
    let covered = options.encrypted_columns();
    if covered.is_empty() {
        // Uniform encryption: the footer key encrypts every column.
        return Ok(());
    }
    let schema: Schema = copy.input.schema().as_arrow().clone();
    let leaves = ArrowSchemaConverter::new()
        .convert(&schema)
        .map_err(|_| Error::Internal("converting the written schema to Parquet"))?;
    let plaintext: Vec<String> = leaves
        .columns()
        .iter()
        .map(|c| c.path().string())
        .filter(|path| !covered.contains(path))
        .collect();
    if !plaintext.is_empty() {
        return Err(refused(format!(
            "COPY to {target:?} would leave column(s) {} in plaintext: name them in \
             'format.crypto.factory_options.column_keys', or leave column_keys out to encrypt \
             every column with the footer key",
            plaintext.join(", ")
        )));
    }
    Ok(())
}

fn check_dml(dml: &DmlStatement, policy: &OutputPolicy) -> Result<(), Error> {
    if !matches!(dml.op, WriteOp::Insert(_)) || policy.allows_plaintext_formats() {
        return Ok(());
    }
    if is_memory_table(dml) {
        return Ok(());
    }
    Err(refused(format!(
        "INSERT INTO {} writes files whose encryption the engine does not check; write \
         outputs with COPY … TO … STORED AS PARQUET OPTIONS ('format.crypto.factory_id' \
         '{FACTORY_ID}', …)",
        dml.table_name
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_ids_are_the_user_visible_ones() {
        let ids: Vec<String> = Rule::ALL.iter().map(Rule::to_string).collect();
        assert_eq!(
            ids,
            [
                "key-material-in-sql",
                "spill-encryption",
                "plaintext-output",
                "output-exists",
                "atomic-output"
            ]
        );
        let refused = Error::StatementRefused {
            rule: Rule::OutputExists,
            detail: "d".into(),
        };
        assert_eq!(
            refused.to_string(),
            "statement refused by rule \"output-exists\": d"
        );
    }

    #[rstest::rstest]
    #[case::csv("csv", Some(FACTORY_ID), false)]
    #[case::json("json", None, false)]
    #[case::plain_parquet("parquet", None, false)]
    #[case::other_factory("parquet", Some("other"), false)]
    #[case::encrypted_parquet("parquet", Some(FACTORY_ID), true)]
    fn copy_format_rule(#[case] format: &str, #[case] factory: Option<&str>, #[case] ok: bool) {
        let lookup = |key: &str| {
            (key == "format.crypto.factory_id")
                .then(|| factory.map(str::to_owned))
                .flatten()
        };
        let result = check_copy_format("out/", format, &lookup, &OutputPolicy::default());
        assert_eq!(result.is_ok(), ok, "{result:?}");
        if let Err(e) = result {
            assert!(
                matches!(
                    e,
                    Error::StatementRefused {
                        rule: Rule::PlaintextOutput,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        assert!(
            check_copy_format("out/", format, &lookup, &OutputPolicy::allow_plaintext()).is_ok()
        );
    }
}

//! The engine's rules for SQL statements, checked on every plan before it runs.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement};

use crate::{Error, FACTORY_ID};

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
                rule: "key-material-in-sql",
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
            rule: "spill-encryption",
            detail: format!("{variable} would replace the encrypted spill factory"),
        });
    }
    Ok(())
}

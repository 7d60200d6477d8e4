//! What the engine may write, and how outputs become visible.
//!
//! # The output policy
//!
//! Every statement that writes files — `COPY … TO`, `INSERT INTO` a file-backed table, also
//! inside `EXPLAIN ANALYZE` — is checked against the engine's [`OutputPolicy`] before it runs.
//! By default only **encrypted Parquet** may be written: `STORED AS PARQUET` with
//! `'format.crypto.factory_id' 'cloister'` given on the statement itself, and every column
//! encrypted (uniform encryption, or `column_keys` naming every leaf column), without
//! `PARTITIONED BY` (partition values become plaintext directory names). The caller may allow
//! more:
//!
//! | policy | also allows |
//! | --- | --- |
//! | [`OutputPolicy::encrypted_only`] (default) | — |
//! | `.allow_plaintext_columns()` | encrypted Parquet with some columns in plaintext, and `PARTITIONED BY` |
//! | `.allow_plaintext_formats()` | CSV, JSON, Arrow, unencrypted Parquet; `INSERT INTO` file-backed tables (whose format is not checked) |
//!
//! A refusal is [`Error::StatementRefused`] with rule `plaintext-output`, naming the target
//! and what would be plaintext.
//!
//! # Atomic outputs of SQL apps
//!
//! [`Engine::run_app`](crate::Engine::run_app) writes each `COPY … TO '<parent>/<name>'` into
//! `<parent>/_tmp-<run id>/<n>/<name>` and moves it to `<parent>/<name>` only after every
//! statement of every script succeeded; on failure the temporary locations are deleted and the
//! error returned. An output must not exist beforehand (rule `output-exists`; a local empty
//! directory is fine), and two statements may not write the same output.
//!
//! | store | commit | guarantee |
//! | --- | --- | --- |
//! | local files | one `rename(2)` of the output file or directory | each output appears whole or not at all; outputs appear one after another |
//! | Azure Blob, S3 | copy every object to its final name, then delete the temporary ones (object stores have no rename) | a failed or interrupted *run* leaves nothing at the final names; while the commit runs, a reader can see an output partially; a failure *during the commit* is reported naming the output, and can leave part of it |
//!
//! Parent directories that the staging created locally stay (empty) after a failed run.
//! A process killed mid-run leaves its `_tmp-<run id>/` behind (outside every final name);
//! Spark and Hadoop readers skip `_`-prefixed names, and DataFusion does not descend into
//! subdirectories of a table by default.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::{MemTable, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::logical_plan::dml::CopyTo;
use datafusion::logical_expr::{DmlStatement, LogicalPlan, WriteOp};
use datafusion::parquet::arrow::ArrowSchemaConverter;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::encryption::EncryptionOptions;
use crate::{Error, FACTORY_ID};

/// Which outputs the engine may write; see the [module docs](self).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutputPolicy {
    plaintext_columns: bool,
    plaintext_formats: bool,
}

impl OutputPolicy {
    /// Only fully encrypted Parquet (the default).
    pub const fn encrypted_only() -> Self {
        Self {
            plaintext_columns: false,
            plaintext_formats: false,
        }
    }

    /// Everything: plaintext formats and plaintext columns.
    pub const fn allow_plaintext() -> Self {
        Self {
            plaintext_columns: true,
            plaintext_formats: true,
        }
    }

    /// Also encrypted Parquet with some columns in plaintext, and partitioned writes.
    pub const fn allow_plaintext_columns(mut self) -> Self {
        self.plaintext_columns = true;
        self
    }

    /// Also plaintext formats (CSV, JSON, Arrow, unencrypted Parquet); implies plaintext
    /// columns.
    pub const fn allow_plaintext_formats(mut self) -> Self {
        self.plaintext_formats = true;
        self.plaintext_columns = true;
        self
    }

    /// Whether plaintext formats may be written.
    pub const fn allows_plaintext_formats(&self) -> bool {
        self.plaintext_formats
    }

    /// Whether plaintext columns may be written.
    pub const fn allows_plaintext_columns(&self) -> bool {
        self.plaintext_columns
    }
}

const RULE: &str = "plaintext-output";

fn refused(detail: String) -> Error {
    Error::StatementRefused { rule: RULE, detail }
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
    if policy.plaintext_formats {
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
    if policy.plaintext_columns || !copy.file_type.get_ext().eq_ignore_ascii_case("parquet") {
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
    if !matches!(dml.op, WriteOp::Insert(_)) || policy.plaintext_formats {
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

pub(crate) fn is_memory_table(dml: &DmlStatement) -> bool {
    source_as_provider(&dml.target)
        .map(|p| p.is::<MemTable>())
        .unwrap_or(false)
}

// ----- staging of atomic outputs -----

/// A random id for a run's temporary locations.
pub(crate) fn run_id() -> Result<String, Error> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Internal("the system random generator failed"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Where one output is written during the run, and where it goes at commit.
#[derive(Debug)]
pub(crate) struct StagedOutput {
    /// The target as the statement gives it.
    pub target: String,
    /// The target as DataFusion should write it during the run.
    pub temp_target: String,
    /// The final URL (for reports).
    pub final_url: String,
    location: Location,
}

#[derive(Debug)]
enum Location {
    Local {
        temp: PathBuf,
        target: PathBuf,
    },
    Store {
        store: Arc<dyn ObjectStore>,
        temp: ObjectPath,
        target: ObjectPath,
    },
}

#[derive(Debug)]
enum TempRoot {
    Local(PathBuf),
    Store(Arc<dyn ObjectStore>, ObjectPath),
}

/// The outputs of one app run.
#[derive(Debug)]
pub(crate) struct Staging {
    run_id: String,
    outputs: Vec<StagedOutput>,
    roots: Vec<TempRoot>,
    seen_roots: HashSet<String>,
}

impl Staging {
    pub fn new() -> Result<Self, Error> {
        Ok(Self {
            run_id: run_id()?,
            outputs: Vec::new(),
            roots: Vec::new(),
            seen_roots: HashSet::new(),
        })
    }

    pub fn outputs(&self) -> &[StagedOutput] {
        &self.outputs
    }

    /// Plan the temporary location of `target` and check that the output does not exist yet.
    /// Returns the output's index.
    pub async fn stage(&mut self, target: &str, runtime: &RuntimeEnv) -> DfResult<usize> {
        let url = ListingTableUrl::parse(target)?;
        let refuse = |detail: String| Error::StatementRefused {
            rule: "output-exists",
            detail,
        };
        let mut segments: Vec<String> =
            url.get_url().path().split('/').map(str::to_owned).collect();
        let collection = url.is_collection();
        if collection {
            segments.pop(); // the empty segment after the trailing slash
        }
        let Some(name) = segments.pop().filter(|n| !n.is_empty()) else {
            return Err(Error::StatementRefused {
                rule: "atomic-output",
                detail: format!(
                    "COPY to {target:?}: an output must be a file or directory below the \
                     root, so that it can be staged beside its final name"
                ),
            }
            .into());
        };
        let index = self.outputs.len();
        let parent = segments.join("/");
        let root_path = format!("{parent}/_tmp-{}", self.run_id);
        let temp_path = format!(
            "{root_path}/{index}/{name}{}",
            if collection { "/" } else { "" }
        );
        let mut temp_url = url.get_url().clone();
        temp_url.set_path(&temp_path);
        let mut root_url = url.get_url().clone();
        root_url.set_path(&format!("{root_path}/"));
        let final_url = url.get_url().to_string();

        if self.outputs.iter().any(|o| o.final_url == final_url) {
            return Err(Error::StatementRefused {
                rule: "output-exists",
                detail: format!("{final_url} is written by two statements"),
            }
            .into());
        }

        let location = if url.scheme() == "file" {
            let to_path = |u: &url::Url| {
                u.to_file_path().map_err(|()| Error::InvalidApp {
                    reason: format!("{u} is not a local path"),
                })
            };
            let target_path = to_path(url.get_url())?;
            let temp = to_path(&temp_url)?;
            if local_output_exists(&target_path) {
                return Err(refuse(format!("{} already exists", target_path.display())).into());
            }
            let root = to_path(&root_url)?;
            if self.seen_roots.insert(root_url.to_string()) {
                self.roots.push(TempRoot::Local(root));
            }
            Location::Local {
                temp,
                target: target_path,
            }
        } else {
            let store = runtime.object_store(url.object_store())?;
            let target_path = url.prefix().clone();
            let temp = ObjectPath::from_url_path(temp_url.path())?;
            if store_output_exists(store.as_ref(), &target_path)
                .await
                .map_err(|source| Error::ObjectStore {
                    context: format!("checking whether {final_url} exists"),
                    source,
                })?
            {
                return Err(refuse(format!("{final_url} already exists")).into());
            }
            if self.seen_roots.insert(root_url.to_string()) {
                self.roots.push(TempRoot::Store(
                    Arc::clone(&store),
                    ObjectPath::from_url_path(root_url.path())?,
                ));
            }
            Location::Store {
                store,
                temp,
                target: target_path,
            }
        };
        self.outputs.push(StagedOutput {
            target: target.to_owned(),
            temp_target: temp_url.to_string(),
            final_url,
            location,
        });
        Ok(index)
    }

    /// Move every output to its final name, then delete the temporary locations.
    pub async fn commit(self) -> Result<Vec<String>, Error> {
        let mut committed = Vec::new();
        for output in &self.outputs {
            match commit_one(output).await {
                Ok(()) => committed.push(output.final_url.clone()),
                Err(e) => {
                    self.cleanup().await;
                    return Err(e);
                }
            }
        }
        self.cleanup().await;
        Ok(committed)
    }

    /// Delete the temporary locations (best effort: failures are logged).
    pub async fn abort(self) {
        self.cleanup().await;
    }

    async fn cleanup(&self) {
        for root in &self.roots {
            match root {
                TempRoot::Local(path) => {
                    if let Err(e) = tokio::fs::remove_dir_all(path).await
                        && e.kind() != std::io::ErrorKind::NotFound
                    {
                        tracing::warn!(path = %path.display(), error = %e, "cannot delete a staging directory");
                    }
                }
                TempRoot::Store(store, prefix) => {
                    if let Err(e) = delete_prefix(store.as_ref(), prefix).await {
                        tracing::warn!(prefix = %prefix, error = %e, "cannot delete staged objects");
                    }
                }
            }
        }
    }
}

fn local_output_exists(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Err(_) => false,
        // An existing empty directory is replaced by the rename.
        Ok(meta) if meta.is_dir() => std::fs::read_dir(path)
            .map(|mut entries| entries.next().is_some())
            .unwrap_or(true),
        Ok(_) => true,
    }
}

async fn store_output_exists(
    store: &dyn ObjectStore,
    path: &ObjectPath,
) -> Result<bool, object_store::Error> {
    match store.head(path).await {
        Ok(_) => return Ok(true),
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(e),
    }
    let first = store.list(Some(path)).try_next().await?;
    Ok(first.is_some())
}

async fn delete_prefix(
    store: &dyn ObjectStore,
    prefix: &ObjectPath,
) -> Result<(), object_store::Error> {
    let objects: Vec<ObjectPath> = store
        .list(Some(prefix))
        .map_ok(|meta| meta.location)
        .try_collect()
        .await?;
    for object in objects {
        match store.delete(&object).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn commit_one(output: &StagedOutput) -> Result<(), Error> {
    match &output.location {
        Location::Local { temp, target } => {
            if std::fs::symlink_metadata(temp).is_err() {
                // The statement wrote nothing (no rows into a directory).
                return Ok(());
            }
            if local_output_exists(target) {
                return Err(Error::StatementRefused {
                    rule: "output-exists",
                    detail: format!("{} appeared while the app ran", target.display()),
                });
            }
            tokio::fs::rename(temp, target)
                .await
                .map_err(|source| Error::Io {
                    context: "moving an output to its final name",
                    source,
                })
        }
        Location::Store {
            store,
            temp,
            target,
        } => {
            let context = |what: &str| format!("committing {}: {what}", output.final_url);
            let mut moves = Vec::new();
            match store.head(temp).await {
                Ok(_) => moves.push((temp.clone(), target.clone())),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::ObjectStore {
                        context: context("reading the staged output"),
                        source,
                    });
                }
            }
            let listed: Vec<ObjectPath> = store
                .list(Some(temp))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
                .map_err(|source| Error::ObjectStore {
                    context: context("listing the staged output"),
                    source,
                })?;
            for from in listed {
                let Some(rest) = from.prefix_match(temp) else {
                    continue;
                };
                let to = rest.fold(target.clone(), |path, part| path.join(part));
                moves.push((from, to));
            }
            for (from, to) in &moves {
                store
                    .copy(from, to)
                    .await
                    .map_err(|source| Error::ObjectStore {
                        context: context("copying a staged object"),
                        source,
                    })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_builders() {
        let default = OutputPolicy::default();
        assert_eq!(default, OutputPolicy::encrypted_only());
        assert!(!default.allows_plaintext_columns() && !default.allows_plaintext_formats());
        let columns = OutputPolicy::encrypted_only().allow_plaintext_columns();
        assert!(columns.allows_plaintext_columns() && !columns.allows_plaintext_formats());
        let formats = OutputPolicy::encrypted_only().allow_plaintext_formats();
        assert_eq!(formats, OutputPolicy::allow_plaintext());
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
                matches!(e, Error::StatementRefused { rule: RULE, .. }),
                "{e:?}"
            );
        }
        assert!(
            check_copy_format("out/", format, &lookup, &OutputPolicy::allow_plaintext()).is_ok()
        );
    }

    #[test]
    fn run_ids_differ() {
        let a = run_id().unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, run_id().unwrap());
    }

    #[test]
    fn local_existence() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!local_output_exists(&dir.path().join("nope")));
        assert!(!local_output_exists(dir.path()), "an empty directory");
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert!(local_output_exists(dir.path()));
        assert!(local_output_exists(&dir.path().join("f")));
    }
}

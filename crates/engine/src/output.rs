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
//! A refusal is [`Error::StatementRefused`] with rule `plaintext-output`
//! ([`Rule::PlaintextOutput`]), naming the target and what would be plaintext; the check itself
//! is [`check_output`](crate::rules::check_output), with the other statement rules.
//!
//! # Atomic outputs of SQL apps
//!
//! [`Engine::run_app`](crate::Engine::run_app) writes each `COPY … TO '<parent>/<name>'` into
//! `<parent>/_tmp-<run id>/<n>/<name>` and moves it to `<parent>/<name>` only after every
//! statement of every script succeeded; on failure the temporary locations are deleted and the
//! error returned. An output must not exist beforehand (rule `output-exists`,
//! [`Rule::OutputExists`]; a local empty directory is fine), and two statements may not write
//! the same output.
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

use datafusion::datasource::listing::ListingTableUrl;
use datafusion::datasource::{MemTable, source_as_provider};
use datafusion::error::Result as DfResult;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::DmlStatement;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::Error;
use crate::rules::Rule;

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
            rule: Rule::OutputExists,
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
                rule: Rule::AtomicOutput,
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
                rule: Rule::OutputExists,
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
                    rule: Rule::OutputExists,
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

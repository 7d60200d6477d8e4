//! What policies may import from the CAS host: the operator's decision, per namespace.
//!
//! A policy may declare secrets `kind: import` read from a file, an environment variable or a
//! Kubernetes Secret of the CAS host. Anyone who can reach the CAS can create a policy, so what
//! a policy *asks* for is never enough: the CAS operator lists, per namespace (the part of a
//! session name before `/`), the directories, environment variable names and Kubernetes Secret
//! names its sessions may import ([`ImportRules`], `cloister cas serve --imports FILE`). The
//! default is nothing.
//!
//! ```yaml
//! namespaces:
//!   contoso:
//!     files: [/etc/cloister/imports/contoso]   # directories; files beneath them
//!     env: [CONTOSO_DB_PASSWORD]
//!     kubernetes: [contoso-db]                 # Secret names under --kubernetes-secrets-dir
//! ```
//!
//! Some things are never importable, whatever the rules say: `/proc`, `/sys`, `/dev`, the CAS
//! data directory (and any directory containing one of them), and the CAS's own `CLOISTER_*`
//! environment variables. Rules naming them are refused when loaded ([`ImportRules::validate`]),
//! and every import checks again.
//!
//! Files are opened with `openat2(2)` beneath the allowed directory with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS`: no `..`, no symlink, no `/proc` magic link
//! leads out. Kubernetes Secret volumes are made of relative symlinks (`key -> ..data/key`), so
//! their keys are opened with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: symlinks are followed
//! only while they stay beneath the Secret's directory. Only regular files of at most
//! [`MAX_IMPORT_LEN`] bytes are read.
//!
//! A refused import is a [`Refusal`] with a rule (`import-not-allowed`, `import-escape`,
//! `import-missing`, `import-not-regular`, `import-too-large`, `import-unreadable`) and a
//! message that names the namespace and what was asked for, never a host path the policy did
//! not write nor a value; the CAS log gets the details.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{CWD, Mode, OFlags, ResolveFlags};
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::Error;

/// The largest imported value, in bytes.
pub const MAX_IMPORT_LEN: usize = 64 * 1024;

/// Directories that are never importable, nor any directory above or below them.
pub const NEVER_IMPORTABLE: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The prefix of the CAS's own environment variables, which are never importable.
pub const RESERVED_ENV_PREFIX: &str = "CLOISTER_";

/// The largest rules file read.
const MAX_RULES_LEN: u64 = 1 << 20;

/// `statfs` magic numbers of file systems never read from (linux/magic.h).
const PROC_SUPER_MAGIC: u64 = 0x9fa0;
const SYSFS_MAGIC: u64 = 0x6265_6572;

/// What the sessions of each namespace may import from the CAS host. Built empty (nothing is
/// importable), from a file ([`ImportRules::load`]) or with the `allow_*` methods; checked by
/// [`ImportRules::validate`] (the CAS configuration does so when it is built).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportRules {
    namespaces: BTreeMap<String, NamespaceImports>,
}

/// What one namespace may import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceImports {
    /// Directories whose files (at any depth) may be imported.
    #[serde(default)]
    files: Vec<PathBuf>,
    /// Environment variable names.
    #[serde(default)]
    env: BTreeSet<String>,
    /// Kubernetes Secret names (directories under the CAS's Kubernetes secrets directory).
    #[serde(default)]
    kubernetes: BTreeSet<String>,
}

impl NamespaceImports {
    /// The directories whose files may be imported.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// The environment variable names.
    pub fn env(&self) -> &BTreeSet<String> {
        &self.env
    }

    /// The Kubernetes Secret names.
    pub fn kubernetes(&self) -> &BTreeSet<String> {
        &self.kubernetes
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesDoc {
    #[serde(default)]
    namespaces: BTreeMap<String, NamespaceImports>,
}

/// Why an import was refused: the rule, a message for the caller and the audit log (names the
/// namespace and what the policy asked for, never another host path or a value), and details
/// for the CAS log only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The rule that failed.
    pub rule: &'static str,
    /// What the rule says.
    pub message: String,
    /// Details for the CAS log (may name host paths; never a value).
    pub detail: String,
}

impl Refusal {
    pub(crate) fn new(
        rule: &'static str,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            rule,
            message: message.into(),
            detail: detail.into(),
        }
    }
}

impl ImportRules {
    /// No imports at all (the default).
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether nothing is importable.
    pub fn is_empty(&self) -> bool {
        self.namespaces
            .values()
            .all(|n| n.files.is_empty() && n.env.is_empty() && n.kubernetes.is_empty())
    }

    /// What `namespace` may import.
    pub fn namespace(&self, namespace: &str) -> Option<&NamespaceImports> {
        self.namespaces.get(namespace)
    }

    /// Lets `namespace` import the files beneath directory `dir`.
    pub fn allow_files(mut self, namespace: &str, dir: impl Into<PathBuf>) -> Self {
        self.entry(namespace).files.push(dir.into());
        self
    }

    /// Lets `namespace` import environment variable `name`.
    pub fn allow_env(mut self, namespace: &str, name: impl Into<String>) -> Self {
        self.entry(namespace).env.insert(name.into());
        self
    }

    /// Lets `namespace` import the keys of Kubernetes Secret `secret`.
    pub fn allow_kubernetes_secret(mut self, namespace: &str, secret: impl Into<String>) -> Self {
        self.entry(namespace).kubernetes.insert(secret.into());
        self
    }

    fn entry(&mut self, namespace: &str) -> &mut NamespaceImports {
        self.namespaces.entry(namespace.to_owned()).or_default()
    }

    /// Reads rules from `path`: TOML when it ends in `.toml`, YAML otherwise. Validated
    /// ([`ImportRules::validate`] without a data directory).
    pub fn load(path: &Path) -> Result<Self, Error> {
        let file =
            std::fs::File::open(path).map_err(|e| Error::io("open import rules", path, e))?;
        let mut text = String::new();
        file.take(MAX_RULES_LEN + 1)
            .read_to_string(&mut text)
            .map_err(|e| Error::io("read import rules", path, e))?;
        if text.len() as u64 > MAX_RULES_LEN {
            return Err(Error::ImportRules(format!(
                "{} is larger than 1 MiB",
                path.display()
            )));
        }
        let in_file = |e: Error| match e {
            Error::ImportRules(m) => Error::ImportRules(format!("{}: {m}", path.display())),
            other => other,
        };
        if path.extension().is_some_and(|e| e == "toml") {
            Self::from_toml(&text).map_err(in_file)
        } else {
            Self::from_yaml(&text).map_err(in_file)
        }
    }

    /// Parses and validates rules written in YAML.
    pub fn from_yaml(text: &str) -> Result<Self, Error> {
        if text.trim().is_empty() {
            return Ok(Self::none());
        }
        let json = cloister_policy::yaml_to_json(text)
            .map_err(|p| Error::ImportRules(p.to_string().trim_end().to_owned()))?;
        // An empty document is no rules.
        let doc: RulesDoc = if json.is_null() {
            RulesDoc {
                namespaces: BTreeMap::new(),
            }
        } else {
            serde_json::from_value(json).map_err(|e| Error::ImportRules(e.to_string()))?
        };
        Self::from_doc(doc)
    }

    /// Parses and validates rules written in TOML.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let doc: RulesDoc =
            toml::from_str(text).map_err(|e| Error::ImportRules(e.to_string().trim().into()))?;
        Self::from_doc(doc)
    }

    fn from_doc(doc: RulesDoc) -> Result<Self, Error> {
        let rules = Self {
            namespaces: doc.namespaces,
        };
        rules.validate(None)?;
        Ok(rules)
    }

    /// Checks every rule: namespaces are namespace names; directories are absolute, plain
    /// (no `.` or `..`) and neither inside nor above `/proc`, `/sys`, `/dev` or `data_dir`
    /// (symlinks resolved where the directory exists); environment names are plain and not
    /// `CLOISTER_*`; Secret names are plain names.
    pub fn validate(&self, data_dir: Option<&Path>) -> Result<(), Error> {
        let never = never_importable(data_dir);
        for (ns, allowed) in &self.namespaces {
            if !is_namespace(ns) {
                return Err(Error::ImportRules(format!(
                    "`{ns}` is not a namespace name (lower-case letters, digits, `-`, `_`, `.`; \
                     at most 63)"
                )));
            }
            for dir in &allowed.files {
                check_root(dir, &never).map_err(|reason| {
                    Error::ImportRules(format!(
                        "namespace `{ns}`: files from {}: {reason}",
                        dir.display()
                    ))
                })?;
            }
            for name in &allowed.env {
                check_env_name(name).map_err(|reason| {
                    Error::ImportRules(format!("namespace `{ns}`: env `{name}`: {reason}"))
                })?;
            }
            for name in &allowed.kubernetes {
                if !is_plain_name(name) {
                    return Err(Error::ImportRules(format!(
                        "namespace `{ns}`: Kubernetes Secret `{name}` is not a plain name"
                    )));
                }
            }
        }
        Ok(())
    }

    /// The bytes of file `path`, which the sessions of `session`'s namespace may import if it
    /// lies beneath one of their directories.
    pub fn read_file(
        &self,
        session: &str,
        path: &Path,
        data_dir: Option<&Path>,
    ) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        let ns = namespace_of(session);
        let shown = path.display();
        if !path.is_absolute()
            || path
                .components()
                .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        {
            return Err(Refusal::new(
                "import-escape",
                "a file import must be an absolute path without `.` or `..`",
                format!("path {shown}"),
            ));
        }
        let not_allowed = || {
            Refusal::new(
                "import-not-allowed",
                format!(
                    "namespace `{ns}` may not import this file: the CAS's import rules do not \
                     allow it (kind: file)"
                ),
                format!("path {shown}"),
            )
        };
        let allowed = self.namespaces.get(ns).ok_or_else(not_allowed)?;
        let (root, rel) = allowed
            .files
            .iter()
            .filter_map(|root| path.strip_prefix(root).ok().map(|rel| (root, rel)))
            .max_by_key(|(root, _)| root.components().count())
            .ok_or_else(not_allowed)?;
        let never = never_importable(data_dir);
        let root = check_root(root, &never).map_err(|reason| {
            Refusal::new(
                "import-not-allowed",
                format!("namespace `{ns}`: that directory is never importable (kind: file)"),
                format!("root {}: {reason}", root.display()),
            )
        })?;
        if rel.as_os_str().is_empty() {
            return Err(Refusal::new(
                "import-not-regular",
                "a file import names a directory",
                format!("path {shown}"),
            ));
        }
        let flags = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
        read_beneath(&root, rel, flags).map_err(|mut r| {
            r.detail = format!("path {shown}: {}", r.detail);
            r
        })
    }

    /// Checks that `session`'s namespace may import environment variable `name`.
    pub fn check_env(&self, session: &str, name: &str) -> Result<(), Refusal> {
        let ns = namespace_of(session);
        if let Err(reason) = check_env_name(name) {
            return Err(Refusal::new(
                "import-not-allowed",
                format!("environment variable `{name}` is never importable: {reason} (kind: env)"),
                format!("namespace {ns}"),
            ));
        }
        match self.namespaces.get(ns) {
            Some(allowed) if allowed.env.contains(name) => Ok(()),
            _ => Err(Refusal::new(
                "import-not-allowed",
                format!(
                    "namespace `{ns}` may not import environment variable `{name}`: the CAS's \
                     import rules do not allow it (kind: env)"
                ),
                String::new(),
            )),
        }
    }

    /// The bytes of key `key` of Kubernetes Secret `secret`, mounted under `dir`, if
    /// `session`'s namespace may import that Secret.
    pub fn read_kubernetes(
        &self,
        session: &str,
        dir: Option<&Path>,
        secret: &str,
        key: &str,
        data_dir: Option<&Path>,
    ) -> Result<Zeroizing<Vec<u8>>, Refusal> {
        let ns = namespace_of(session);
        for (what, part) in [("Secret", secret), ("key", key)] {
            if !is_plain_name(part) {
                return Err(Refusal::new(
                    "import-escape",
                    format!("Kubernetes {what} name `{part}` is not a plain name"),
                    String::new(),
                ));
            }
        }
        match self.namespaces.get(ns) {
            Some(allowed) if allowed.kubernetes.contains(secret) => {}
            _ => {
                return Err(Refusal::new(
                    "import-not-allowed",
                    format!(
                        "namespace `{ns}` may not import Kubernetes Secret `{secret}`: the CAS's \
                         import rules do not allow it (kind: kubernetes)"
                    ),
                    String::new(),
                ));
            }
        }
        let dir = dir.ok_or_else(|| {
            Refusal::new(
                "import-missing",
                "this CAS has no Kubernetes secrets directory",
                String::new(),
            )
        })?;
        let never = never_importable(data_dir);
        let root = check_root(&dir.join(secret), &never).map_err(|reason| {
            Refusal::new(
                "import-not-allowed",
                format!("Kubernetes Secret `{secret}` is never importable (kind: kubernetes)"),
                format!("directory {}: {reason}", dir.display()),
            )
        })?;
        // Secret volumes are relative symlinks (`key -> ..data/key`): followed while beneath.
        let flags = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        read_beneath(&root, Path::new(key), flags)
    }
}

/// The namespace of a session name: the part before the first `/`.
pub fn namespace_of(session: &str) -> &str {
    session.split_once('/').map_or(session, |(ns, _)| ns)
}

fn is_namespace(ns: &str) -> bool {
    let b = ns.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"-_.".contains(c))
}

fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn check_env_name(name: &str) -> Result<(), &'static str> {
    let b = name.as_bytes();
    if b.is_empty()
        || b[0].is_ascii_digit()
        || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
    {
        return Err("not an environment variable name");
    }
    if name.starts_with(RESERVED_ENV_PREFIX) {
        return Err("`CLOISTER_*` variables are the CAS's own");
    }
    Ok(())
}

/// The never-importable directories, as written and with symlinks resolved.
fn never_importable(data_dir: Option<&Path>) -> Vec<PathBuf> {
    let mut never: Vec<PathBuf> = NEVER_IMPORTABLE.iter().map(PathBuf::from).collect();
    if let Some(dir) = data_dir {
        never.push(std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned()));
        if let Ok(real) = dir.canonicalize() {
            never.push(real);
        }
    }
    never
}

/// Checks an allowed directory; returns it with symlinks resolved (the path opened).
fn check_root(dir: &Path, never: &[PathBuf]) -> Result<PathBuf, String> {
    if !dir.is_absolute() {
        return Err("not an absolute path".into());
    }
    if dir
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err("`.` and `..` are not accepted".into());
    }
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    for candidate in [dir, real.as_path()] {
        if let Some(bad) = never
            .iter()
            .find(|n| candidate.starts_with(n) || n.starts_with(candidate))
        {
            return Err(format!(
                "{} is never importable, nor any directory inside or above it",
                bad.display()
            ));
        }
    }
    Ok(real)
}

/// Opens `rel` beneath directory `root` with `resolve` and reads it: a regular file of at most
/// [`MAX_IMPORT_LEN`] bytes, not on procfs or sysfs.
fn read_beneath(
    root: &Path,
    rel: &Path,
    resolve: ResolveFlags,
) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let unreadable = |e: rustix::io::Errno, what: &str| {
        let rule = match e {
            rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR => "import-missing",
            rustix::io::Errno::XDEV | rustix::io::Errno::LOOP => "import-escape",
            _ => "import-unreadable",
        };
        let message = match rule {
            "import-missing" => "the imported file does not exist",
            "import-escape" => "the import leads out of its allowed directory (symlink or `..`)",
            _ => "the imported file cannot be read",
        };
        Refusal::new(rule, message, format!("{what}: {e}"))
    };
    // The root has no symlinks left (resolved when checked): one swapped in since is refused.
    let dir = rustix::fs::openat2(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| unreadable(e, "allowed directory"))?;
    let fd = rustix::fs::openat2(
        &dir,
        rel,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
        Mode::empty(),
        resolve,
    )
    .map_err(|e| unreadable(e, "file"))?;
    let fs = rustix::fs::fstatfs(&fd).map_err(|e| unreadable(e, "statfs"))?;
    #[allow(clippy::useless_conversion, clippy::unnecessary_cast)] // f_type's type varies by arch
    let fs_type = fs.f_type as u64;
    if fs_type == PROC_SUPER_MAGIC || fs_type == SYSFS_MAGIC {
        return Err(Refusal::new(
            "import-not-allowed",
            "procfs and sysfs are never importable",
            "file on procfs or sysfs",
        ));
    }
    let file = std::fs::File::from(fd);
    let meta = file.metadata().map_err(|e| {
        Refusal::new(
            "import-unreadable",
            "the imported file cannot be read",
            format!("stat: {e}"),
        )
    })?;
    if !meta.is_file() {
        return Err(Refusal::new(
            "import-not-regular",
            "the import is not a regular file",
            format!("file type {:?}", meta.file_type()),
        ));
    }
    let too_large = || {
        Refusal::new(
            "import-too-large",
            format!("the imported file is larger than {MAX_IMPORT_LEN} bytes"),
            String::new(),
        )
    };
    if meta.len() > MAX_IMPORT_LEN as u64 {
        return Err(too_large());
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(MAX_IMPORT_LEN + 1));
    file.take(MAX_IMPORT_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Refusal::new(
                "import-unreadable",
                "the imported file cannot be read",
                format!("read: {e}"),
            )
        })?;
    if bytes.len() > MAX_IMPORT_LEN {
        return Err(too_large());
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use rstest::rstest;

    fn rejected(r: Result<ImportRules, Error>) -> String {
        match r {
            Err(Error::ImportRules(m)) => m,
            other => panic!("expected refused rules, got {other:?}"),
        }
    }

    #[test]
    fn yaml_and_toml_say_the_same() {
        let yaml = ImportRules::from_yaml(
            "namespaces:\n  contoso:\n    files: [/srv/imports/contoso]\n    env: [DB_PASSWORD]\n    kubernetes: [db]\n",
        )
        .unwrap();
        let toml = ImportRules::from_toml(
            "[namespaces.contoso]\nfiles = [\"/srv/imports/contoso\"]\nenv = [\"DB_PASSWORD\"]\nkubernetes = [\"db\"]\n",
        )
        .unwrap();
        assert_eq!(yaml, toml);
        let built = ImportRules::none()
            .allow_files("contoso", "/srv/imports/contoso")
            .allow_env("contoso", "DB_PASSWORD")
            .allow_kubernetes_secret("contoso", "db");
        assert_eq!(yaml, built);
        assert!(!yaml.is_empty());
        assert!(ImportRules::from_yaml("").unwrap().is_empty());
        assert!(ImportRules::from_toml("").unwrap().is_empty());
    }

    #[rstest]
    #[case::proc("files: [/proc]", "/proc is never importable")]
    #[case::proc_inside("files: [/proc/self]", "/proc is never importable")]
    #[case::root_above_proc("files: [/]", "never importable")]
    #[case::sys("files: [/sys/kernel]", "/sys is never importable")]
    #[case::dev("files: [/dev]", "/dev is never importable")]
    #[case::relative("files: [etc/secrets]", "not an absolute path")]
    #[case::dotdot("files: [/srv/../proc]", "`..`")]
    #[case::master_key_env("env: [CLOISTER_MASTER_KEY]", "CAS's own")]
    #[case::any_cloister_env("env: [CLOISTER_X]", "CAS's own")]
    #[case::bad_env("env: [\"A=B\"]", "not an environment variable name")]
    #[case::bad_secret("kubernetes: [../etc]", "not a plain name")]
    #[case::unknown_field("paths: [/srv]", "unknown field")]
    fn rules_that_open_the_host_are_refused_at_load(#[case] rule: &str, #[case] says: &str) {
        let m = rejected(ImportRules::from_yaml(&format!(
            "namespaces:\n  t:\n    {rule}\n"
        )));
        assert!(m.contains(says), "{m}");
    }

    #[test]
    fn bad_namespaces_and_the_data_dir_are_refused() {
        let m = rejected(ImportRules::from_yaml(
            "namespaces:\n  Bad/NS:\n    env: [X]\n",
        ));
        assert!(m.contains("not a namespace name"), "{m}");
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        for root in [data.clone(), data.join("sub"), dir.path().to_owned()] {
            let rules = ImportRules::none().allow_files("t", &root);
            rules.validate(None).unwrap();
            let m = rejected(rules.validate(Some(&data)).map(|()| ImportRules::none()));
            assert!(m.contains("never importable"), "{m}");
        }
        // A symlink to the data directory is the data directory.
        std::os::unix::fs::symlink(&data, dir.path().join("link")).unwrap();
        let rules = ImportRules::none().allow_files("t", dir.path().join("link"));
        assert!(rules.validate(Some(&data)).is_err());
    }

    #[test]
    fn files_are_read_beneath_their_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("allowed");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/pw"), "pw\n").unwrap();
        std::fs::write(dir.path().join("outside"), "no").unwrap();
        std::os::unix::fs::symlink(dir.path().join("outside"), root.join("link")).unwrap();
        std::os::unix::fs::symlink("sub/pw", root.join("inner-link")).unwrap();
        std::fs::write(root.join("big"), vec![b'a'; MAX_IMPORT_LEN + 1]).unwrap();
        let rules = ImportRules::none().allow_files("t", &root);
        let read = |session: &str, p: &Path| rules.read_file(session, p, None);
        assert_eq!(
            read("t/s", &root.join("sub/pw")).unwrap().as_slice(),
            b"pw\n"
        );
        let rule = |session: &str, p: PathBuf| read(session, &p).unwrap_err().rule;
        assert_eq!(rule("other/s", root.join("sub/pw")), "import-not-allowed");
        assert_eq!(
            rule("t/s", dir.path().join("outside")),
            "import-not-allowed"
        );
        assert_eq!(rule("t/s", root.join("../outside")), "import-escape");
        assert_eq!(rule("t/s", root.join("link")), "import-escape");
        // Even a symlink that stays inside is refused (RESOLVE_NO_SYMLINKS).
        assert_eq!(rule("t/s", root.join("inner-link")), "import-escape");
        assert_eq!(rule("t/s", root.join("missing")), "import-missing");
        assert_eq!(rule("t/s", root.join("sub")), "import-not-regular");
        assert_eq!(rule("t/s", root.clone()), "import-not-regular");
        assert_eq!(rule("t/s", root.join("big")), "import-too-large");
        let refusal = read("t/s", &root.join("link")).unwrap_err();
        assert!(!refusal.message.contains("/"), "{refusal:?}");
    }

    #[test]
    fn a_root_inside_the_data_dir_is_refused_at_import_too() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("store"), "x").unwrap();
        // Rules checked without the data directory (as a test harness might build them).
        let rules = ImportRules::none().allow_files("t", dir.path());
        let r = rules
            .read_file("t/s", &dir.path().join("store"), Some(dir.path()))
            .unwrap_err();
        assert_eq!(r.rule, "import-not-allowed");
    }

    #[test]
    fn env_names_are_checked() {
        let rules = ImportRules::none().allow_env("t", "DB_PASSWORD");
        rules.check_env("t/s", "DB_PASSWORD").unwrap();
        for (session, name) in [
            ("other/s", "DB_PASSWORD"),
            ("t/s", "HOME"),
            ("t/s", "CLOISTER_MASTER_KEY"),
        ] {
            let r = rules.check_env(session, name).unwrap_err();
            assert_eq!(r.rule, "import-not-allowed", "{session} {name}");
        }
    }

    #[test]
    fn kubernetes_secrets_follow_their_own_links_only() {
        let dir = tempfile::tempdir().unwrap();
        let k8s = dir.path().join("k8s");
        // The layout of a Secret volume: key -> ..data/key, ..data -> ..2024_01.
        let db = k8s.join("db");
        std::fs::create_dir_all(db.join("..2024_01")).unwrap();
        std::fs::write(db.join("..2024_01/password"), "k8s-pw").unwrap();
        std::os::unix::fs::symlink("..2024_01", db.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/password", db.join("password")).unwrap();
        std::os::unix::fs::symlink("../other/key", db.join("escape")).unwrap();
        std::fs::create_dir_all(k8s.join("other")).unwrap();
        std::fs::write(k8s.join("other/key"), "other").unwrap();
        let rules = ImportRules::none().allow_kubernetes_secret("t", "db");
        let read = |session: &str, secret: &str, key: &str| {
            rules.read_kubernetes(session, Some(&k8s), secret, key, None)
        };
        assert_eq!(read("t/s", "db", "password").unwrap().as_slice(), b"k8s-pw");
        assert_eq!(
            read("t/s", "other", "key").unwrap_err().rule,
            "import-not-allowed"
        );
        assert_eq!(
            read("x/s", "db", "password").unwrap_err().rule,
            "import-not-allowed"
        );
        assert_eq!(
            read("t/s", "db", "escape").unwrap_err().rule,
            "import-escape"
        );
        assert_eq!(
            read("t/s", "db", "../other").unwrap_err().rule,
            "import-escape"
        );
        assert_eq!(
            read("t/s", "db", "nope").unwrap_err().rule,
            "import-missing"
        );
    }

    #[test]
    fn namespaces_are_the_part_before_the_slash() {
        assert_eq!(namespace_of("contoso/payroll"), "contoso");
        assert_eq!(namespace_of("plain"), "plain");
    }
}

//! The `CLOISTER_*` configuration contract: every variable a workload reads from the
//! configuration the CAS released (the service's `env` in the policy), in one place.
//!
//! The host chooses only the bundle file and where to print; everything else comes from here.
//! Values are read and checked once, when a role starts ([`crate::job::JobSettings::from_env`]),
//! and errors name the variable, never its value.
//!
//! # Launch (read by `cloister-runtime` before any role runs)
//!
//! The launcher owns these: it needs them to open the bundle and to place injected files,
//! before a role exists. They are re-exported here so that this module lists the whole contract.
//!
//! | variable | meaning |
//! | --- | --- |
//! | [`BUNDLE_KEY_ENV`] `CLOISTER_BUNDLE_KEY` | the app bundle's key (64 hex digits or base64), normally `$$cloister:bundle_key$$` |
//! | [`BUNDLE_DIGEST_ENV`] `CLOISTER_BUNDLE_DIGEST` | optional: pins the bundle's plaintext digest (what binds the bundle on hardware TEEs) |
//! | [`FILES_DIR_ENV`] `CLOISTER_FILES_DIR` | set *by* the runtime for child processes: where the injected files are |
//!
//! # The `job` role
//!
//! | variable | meaning |
//! | --- | --- |
//! | `CLOISTER_KEY_<ID>` ([`KEY_ENV_PREFIX`]) | a data key: 32, 48 or 64 hex digits (AES-128/192/256), normally `$$cloister:<secret>:hex$$`. It is held in memory under key id `<id>` **lower-cased** (`CLOISTER_KEY_TRIPS_FARE` → `trips_fare`): the id SQL names in `'format.crypto.factory_options.footer_key'` / `column_keys`, and the master-key id in key-management-tools files (Spark, pyarrow). `<ID>` is letters, digits and `_`. |
//! | [`APP_VARS_ENV`] `CLOISTER_APP_VARS` | the names (comma or space separated) of other `env` entries that become `${NAME}` placeholders of the SQL. Nothing else reaches SQL; `CLOISTER_*` names and names that look like secrets (`KEY`, `TOKEN`, `SAS`, `PASSWORD`, …) are refused. Values are bound as literals after the SQL is tokenized, never spliced into its text: inside a string literal (`'${OUT}/x.parquet'`) the value becomes part of that string; elsewhere `${NAME}` (or `${NAME:str}`) is a string literal and `${NAME:int}` an integer literal. A quote, `;` or `--` in a value stays in the literal (see `cloister_engine::app`). |
//! | `AZURE_BLOB_*`, `AWS_*`, `CLOISTER_DATA_ROOT` ([`names_store`]) | the data store (SAS token, account key or S3 keys included), read by [`store_from_env`] into a `cloister_engine::StoreConfig`: see [the data store](#the-data-store). When none is set, only local paths are reachable. |
//! | [`MEMORY_LIMIT_ENV`] `CLOISTER_MEMORY_LIMIT` | optional query memory limit: bytes, or with a `K`, `M`, `G` (`KiB`, `MiB`, `GiB`) suffix ([`parse_bytes`]). Operators that can spill do so beyond it. |
//! | [`OUTPUT_PLAINTEXT_ENV`] `CLOISTER_OUTPUT_PLAINTEXT` | [`OutputPlaintext`]: `none` (default): only fully encrypted Parquet may be written; `insecure-columns`: encrypted Parquet with some plaintext columns; `insecure-formats`: also CSV, JSON and plain Parquet. The old spellings `columns` and `formats` are refused with a message naming the new ones. |
//! | [`PRINT_RESULTS_ENV`] `CLOISTER_INSECURE_PRINT_RESULTS` | `true` lets the job print its queries' results (tables on stdout, `--json`): stdout leaves the TEE in plaintext, so it is the custodian's choice. Default `false`: each result is withheld and only its name and row count are shown; write results with an encrypted `COPY … TO` instead. The old name `CLOISTER_PRINT_RESULTS` ([`OLD_PRINT_RESULTS_ENV`]) is refused with a message naming this one. |
//! | [`SPILL_DIR_ENV`] `CLOISTER_SPILL_DIR` | optional: spill files go into a fresh directory under it (default: the OS temp directory). Spill files are always AES-256-GCM encrypted under a per-process key; no setting turns that off. |
//! | `CLOISTER_CMK_<PATH>` ([`CMK_ENV_PREFIX`]) | an Always Encrypted column master key: a PEM RSA private key (`$$cloister:CMK1:pem$$`), at key store `CLOISTER_CAS`, key path `<PATH>` (a `cmk` secret's key path is its name). |
//! | `CLOISTER_CEK_<NAME>` ([`CEK_ENV_PREFIX`]) | an Always Encrypted column encryption key named `<NAME>` in the database's key metadata: its 32 bytes in hex (`$$cloister:CEK1:key$$`, for a session that imported it without the CMK) or its wrapped value (`$$cloister:CEK1:hex$$`, unwrapped with the `CLOISTER_CMK_…` its key path names). |
//!
//! ## The data store
//!
//! [`store_from_env`] maps these onto the engine's typed builders (the names the reference app
//! uses for Azure, and the usual `AWS_*` names for S3). Exactly one store may be named; empty
//! values count as unset.
//!
//! | variable | meaning |
//! | --- | --- |
//! | `AZURE_BLOB_ACCOUNT_NAME`, `AZURE_BLOB_CONTAINER_NAME` | the container (required for Azure) |
//! | `AZURE_BLOB_RELATIVE_PATH` | the data's path inside the container (optional) |
//! | `AZURE_BLOB_SAS_TOKEN` or `AZURE_BLOB_ACCOUNT_KEY` | the credential: exactly one is required |
//! | `AZURE_BLOB_ANONYMOUS=true` | no credential: a public container (the reference app's empty SAS token) |
//! | `AZURE_BLOB_ENDPOINT`, `AZURE_BLOB_ALLOW_HTTP` | another endpoint, e.g. Azurite's `http://127.0.0.1:10000/devstoreaccount1` |
//! | `AWS_BUCKET` (or `AWS_BUCKET_NAME`) | the bucket (required for S3) |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` | the credential (required) |
//! | `AWS_SESSION_TOKEN` | a temporary credential's session token (optional) |
//! | `AWS_REGION` (or `AWS_DEFAULT_REGION`) | the region (default `us-east-1`) |
//! | `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`), `AWS_ALLOW_HTTP` | another endpoint, e.g. moto or MinIO |
//! | `AWS_VIRTUAL_HOSTED_STYLE_REQUEST=true` | virtual-hosted-style requests (default: path-style) |
//! | `AWS_S3_RELATIVE_PATH` | the data's path inside the bucket (optional) |
//! | [`DATA_ROOT_ENV`] `CLOISTER_DATA_ROOT` | a local directory instead |
//!
//! Credentials are only ever explicit: no instance metadata, CLI login or ambient environment
//! is consulted, because inside a TEE the only trusted source of a credential is the attested
//! configuration.
//!
//! Every other variable is ignored by the job (it may still be named in `CLOISTER_APP_VARS`).
//! The store variables and the Always Encrypted keys are parsed into the engine's typed values
//! (`StoreConfig`, the column master keys) here, at load; the engine itself reads no
//! environment.
//!
//! ```
//! use cloister_roles::config::{OutputPlaintext, parse_bytes};
//! assert_eq!(OutputPlaintext::parse("insecure-formats"), Ok(OutputPlaintext::InsecureFormats));
//! assert!(OutputPlaintext::parse("formats").unwrap_err().contains("insecure-formats"));
//! assert_eq!(parse_bytes("512M"), Some(512 << 20));
//! ```

pub use cloister_runtime::files::FILES_DIR_ENV;
pub use cloister_runtime::{BUNDLE_DIGEST_ENV, BUNDLE_KEY_ENV};

mod store;
pub use store::store_from_env;

/// The prefix of Always Encrypted column master key variables (`CLOISTER_CMK_<PATH>`).
pub const CMK_ENV_PREFIX: &str = "CLOISTER_CMK_";
/// The prefix of Always Encrypted column encryption key variables (`CLOISTER_CEK_<NAME>`).
pub const CEK_ENV_PREFIX: &str = "CLOISTER_CEK_";
/// The prefix of data-key variables: `CLOISTER_KEY_<ID>` → key id `<id>`.
pub const KEY_ENV_PREFIX: &str = "CLOISTER_KEY_";
/// The variable listing the `env` entries that become SQL variables.
pub const APP_VARS_ENV: &str = "CLOISTER_APP_VARS";
/// The variable holding the optional memory limit.
pub const MEMORY_LIMIT_ENV: &str = "CLOISTER_MEMORY_LIMIT";
/// The variable relaxing the output policy ([`OutputPlaintext`]).
pub const OUTPUT_PLAINTEXT_ENV: &str = "CLOISTER_OUTPUT_PLAINTEXT";
/// The variable naming where spill files go.
pub const SPILL_DIR_ENV: &str = "CLOISTER_SPILL_DIR";
/// The variable that lets the job print query results (stdout leaves the TEE in plaintext).
pub const PRINT_RESULTS_ENV: &str = "CLOISTER_INSECURE_PRINT_RESULTS";
/// The old name of [`PRINT_RESULTS_ENV`], refused so that a policy written for it fails loudly
/// instead of silently withholding results.
pub const OLD_PRINT_RESULTS_ENV: &str = "CLOISTER_PRINT_RESULTS";
/// The local data root; with the `AZURE_BLOB_` and `AWS_` prefixes, what makes a store.
pub const DATA_ROOT_ENV: &str = "CLOISTER_DATA_ROOT";

/// The variable that holds data key `key_id`.
pub fn key_setting(key_id: &str) -> String {
    format!("{KEY_ENV_PREFIX}{}", key_id.to_ascii_uppercase())
}

/// Whether `name` is one of the data-store variables (`AZURE_BLOB_*`, `AWS_*`,
/// `CLOISTER_DATA_ROOT`).
pub fn names_store(name: &str) -> bool {
    name.starts_with("AZURE_BLOB_") || name.starts_with("AWS_") || name == DATA_ROOT_ENV
}

/// What the job may write in plaintext (`CLOISTER_OUTPUT_PLAINTEXT`). Anything but
/// [`OutputPlaintext::None`] lets data leave the TEE unencrypted, hence the loud names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputPlaintext {
    /// `none` (or unset): fully encrypted Parquet only.
    #[default]
    None,
    /// `insecure-columns`: encrypted Parquet in which some columns may be plaintext.
    InsecureColumns,
    /// `insecure-formats`: also CSV, JSON and plain Parquet.
    InsecureFormats,
}

impl OutputPlaintext {
    /// Parse a value; the error says what is expected (never echoing the value), and for the
    /// old spellings `columns` / `formats`, the new name.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value.trim() {
            "" | "none" => Ok(Self::None),
            "insecure-columns" => Ok(Self::InsecureColumns),
            "insecure-formats" => Ok(Self::InsecureFormats),
            old @ ("columns" | "formats") => Err(format!(
                "`{old}` is now spelled `insecure-{old}` (plaintext leaves the TEE)"
            )),
            _ => Err("expected none, insecure-columns or insecure-formats".into()),
        }
    }

    /// The engine's output policy.
    pub fn policy(self) -> cloister_engine::OutputPolicy {
        let encrypted = cloister_engine::OutputPolicy::encrypted_only();
        match self {
            Self::None => encrypted,
            Self::InsecureColumns => encrypted.allow_plaintext_columns(),
            Self::InsecureFormats => encrypted.allow_plaintext_formats(),
        }
    }
}

/// A `true` / `false` setting (empty or unset: `false`).
pub fn parse_flag(value: &str) -> Result<bool, String> {
    match value.trim() {
        "" | "false" => Ok(false),
        "true" => Ok(true),
        _ => Err("expected true or false".into()),
    }
}

/// `512M`, `2G`, `64MiB`, `1048576` → bytes; `None` for anything else, zero included.
pub fn parse_bytes(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: usize = digits.parse().ok()?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    n.checked_mul(1usize << shift).filter(|b| *b > 0)
}

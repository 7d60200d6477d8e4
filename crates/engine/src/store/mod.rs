//! Object stores: where tables are read from and outputs are written to.
//!
//! A [`StoreConfig`] names one place — a local directory, an Azure Blob / ADLS Gen2 container or
//! an S3 bucket — with its credential. It is validated when it is built, so that a missing SAS
//! token, account key or secret is an error naming the missing setting *before* any request
//! is made, and it has a hand-written `Debug` that shows which kind of credential is in use
//! but never the credential itself.
//!
//! [`Engine::register_store`](crate::Engine::register_store) (or
//! [`EngineBuilder::store`](crate::EngineBuilder::store)) registers the store on the engine's
//! DataFusion runtime, so that SQL can name its URLs:
//!
//! | store | URLs registered | example table location |
//! | --- | --- | --- |
//! | Azure Blob / ADLS Gen2 | `az://<container>`, `abfss://<container>@<account>.dfs.core.windows.net` | `az://nyctlc/yellow/` |
//! | S3 | `s3://<bucket>` | `s3://lake/trips/` |
//! | local directory | none (DataFusion's `file://` store serves it) | `/data/lake/trips/` |
//!
//! DataFusion keys stores by scheme and host: an `abfss://` URL's key is the account's DFS
//! host, so an engine reaches one container per account through `abfss://` (any number through
//! `az://`).
//!
//! # Settings
//!
//! The stores take typed values through their builders ([`AzureConfig::builder`],
//! [`S3Config::builder`], [`LocalConfig::new`]); the engine reads no environment. The variables
//! a workload names its store with (`AZURE_BLOB_*`, `AWS_*`, `CLOISTER_DATA_ROOT`) are the
//! role's contract: they are documented, and mapped onto these builders, in
//! `cloister_roles::config` (`store_from_env`).
//!
//! Credentials are only ever explicit: no instance metadata, CLI login or ambient environment
//! is consulted, because inside a TEE the only trusted source of a credential is the attested
//! configuration.
//!
//! # Transport
//!
//! `object_store` talks HTTPS through `reqwest` with `rustls` on `ring` (no OpenSSL, no
//! aws-lc); plain HTTP only when the configuration says `allow_http` (emulators on loopback).

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use url::Url;

use crate::Error;

mod azure;
mod local;
mod s3;

pub use azure::{AzureConfig, AzureConfigBuilder, AzureCredential};
pub use local::LocalConfig;
use local::file_root;
pub use s3::{S3Config, S3ConfigBuilder};

const AZURE: &str = "Azure Blob";
const S3: &str = "S3";
const LOCAL: &str = "local";

/// Where data lives, validated; see the [module docs](self).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum StoreConfig {
    /// A local directory.
    Local(LocalConfig),
    /// An Azure Blob Storage / ADLS Gen2 container.
    Azure(AzureConfig),
    /// An S3 (or S3-compatible) bucket.
    S3(S3Config),
}

impl StoreConfig {
    /// The URL of the store's root: `az://<container>/`, `s3://<bucket>/` or `file:///<root>/`.
    pub fn url(&self) -> Url {
        match self {
            StoreConfig::Local(c) => c.url(),
            StoreConfig::Azure(c) => c.url(),
            StoreConfig::S3(c) => c.url(),
        }
    }

    /// The URL of the data: the root URL joined with the configured relative path.
    pub fn data_url(&self) -> Url {
        let relative = match self {
            StoreConfig::Local(_) => "",
            StoreConfig::Azure(c) => &c.relative_path,
            StoreConfig::S3(c) => &c.relative_path,
        };
        join_relative(self.url(), relative)
    }

    /// The URLs under which [`build`](Self::build)'s store is registered on a DataFusion
    /// runtime (none for a local directory: DataFusion's `file://` store serves it).
    pub fn registration_urls(&self) -> Vec<Url> {
        match self {
            StoreConfig::Local(_) => Vec::new(),
            StoreConfig::Azure(c) => c.registration_urls(),
            StoreConfig::S3(c) => vec![c.url()],
        }
    }

    /// Make the `object_store` client. No request is made.
    pub fn build(&self) -> Result<Arc<dyn ObjectStore>, Error> {
        match self {
            StoreConfig::Local(_) => Ok(Arc::new(LocalFileSystem::new())),
            StoreConfig::Azure(c) => c.build(),
            StoreConfig::S3(c) => c.build(),
        }
    }
}

// ----- shared helpers -----

fn validate_name(
    store: &'static str,
    setting: &str,
    name: &str,
    min: usize,
    max: usize,
    allowed: impl Fn(char) -> bool,
) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidStoreSetting {
        store,
        setting: setting.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(Error::MissingStoreSetting {
            store,
            setting: setting.to_owned(),
            hint: "it is empty",
        });
    }
    if !(min..=max).contains(&name.len()) {
        return Err(invalid(format!(
            "{name:?} must have {min} to {max} characters"
        )));
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return Err(invalid(format!("{name:?} may not contain {c:?}")));
    }
    if name.starts_with(['-', '.']) || name.ends_with(['-', '.']) {
        return Err(invalid(format!(
            "{name:?} must start and end with a letter or digit"
        )));
    }
    Ok(())
}

fn check_endpoint(
    store: &'static str,
    endpoint: &Url,
    allow_http: bool,
    allow_name: &str,
) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidStoreSetting {
        store,
        setting: "endpoint".into(),
        reason,
    };
    match endpoint.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(invalid(format!(
                "{endpoint} is plain HTTP; allow it explicitly ({allow_name}=true), for \
                 emulators on loopback only"
            )));
        }
        other => return Err(invalid(format!("scheme {other:?} is not http(s)"))),
    }
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(invalid("an endpoint must not carry credentials".into()));
    }
    if endpoint.query().is_some() {
        return Err(invalid(
            "an endpoint must not carry a query (give a SAS token as the credential)".into(),
        ));
    }
    Ok(())
}

/// A relative path inside a container or bucket: no leading slash, no `.` / `..` segments.
fn clean_relative(store: &'static str, path: &str) -> Result<String, Error> {
    let path = path.trim().trim_start_matches('/');
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err(Error::InvalidStoreSetting {
            store,
            setting: "relative path".into(),
            reason: format!("{path:?} has a . or .. segment"),
        });
    }
    Ok(path.to_owned())
}

fn bucket_url(scheme: &str, bucket: &str) -> Url {
    // Bucket and container names were validated to URL-safe characters, so this parses; the
    // scheme's root is only a fallback that is never reached.
    Url::parse(&format!("{scheme}://{bucket}/")).unwrap_or_else(|_| file_root())
}

/// `base` (a directory URL) joined with `relative` ('/'-separated, percent-encoded per
/// segment); a trailing slash is kept.
fn join_relative(mut base: Url, relative: &str) -> Url {
    let relative = relative.trim_start_matches('/');
    if relative.is_empty() {
        return base;
    }
    if let Ok(mut segments) = base.path_segments_mut() {
        segments.pop_if_empty();
        segments.extend(relative.split('/'));
    }
    base
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    const SAS: &str = "sv=2021-08-06&sr=c&sp=rl&se=2099-01-01T00%3A00%3A00Z&sig=TOPSECRETSIG%2B%3D";
    const ACCOUNT_KEY: &str = "c2VjcmV0LWFjY291bnQta2V5LWJ5dGVz";

    #[test]
    fn builder_without_credential_is_refused() {
        let err = AzureConfig::builder("acct", "cont").build().unwrap_err();
        assert!(matches!(err, Error::MissingStoreSetting { .. }), "{err:?}");
    }

    #[rstest::rstest]
    #[case::no_signature("sv=2021-08-06&sp=rl")]
    #[case::not_a_query("justsomething")]
    fn malformed_sas_is_refused(#[case] sas: &str) {
        let err = AzureConfig::builder("acct", "cont")
            .sas_token(SecretString::from(sas.to_owned()))
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidStoreSetting { .. }), "{err:?}");
        assert!(!err.to_string().contains(sas), "{err}");
    }

    #[test]
    fn account_key_and_emulator() {
        let key = AzureConfig::builder("devstoreaccount1", "data")
            .account_key(SecretString::from(ACCOUNT_KEY.to_owned()))
            .emulator(&Url::parse("http://127.0.0.1:10000").unwrap())
            .build()
            .unwrap();
        assert_eq!(
            key.endpoint.as_ref().unwrap().as_str(),
            "http://127.0.0.1:10000/devstoreaccount1"
        );
        StoreConfig::Azure(key).build().unwrap();
        let anon = AzureConfig::builder("acct", "cont")
            .anonymous()
            .build()
            .unwrap();
        assert!(format!("{anon:?}").contains("Anonymous"));
    }

    #[rstest::rstest]
    #[case::http_without_permission("http://127.0.0.1:10000/devstoreaccount1", false)]
    #[case::wrong_scheme("ftp://example.com/", true)]
    #[case::credentials_in_url("https://user:pw@example.com/", false)]
    #[case::query("https://example.com/?sig=abc", false)]
    fn bad_endpoints_are_refused(#[case] endpoint: &str, #[case] allow_http: bool) {
        let err = AzureConfig::builder("acct", "cont")
            .anonymous()
            .endpoint(Url::parse(endpoint).unwrap())
            .allow_http(allow_http)
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidStoreSetting { setting, .. } if setting == "endpoint"),
            "{err:?}"
        );
    }

    #[rstest::rstest]
    #[case::upper_case("Nyctlc")]
    #[case::too_short("ab")]
    #[case::slash("a/b/c")]
    #[case::leading_dash("-abc")]
    fn bad_container_names_are_refused(#[case] name: &str) {
        let err = AzureConfig::builder("acct", name)
            .anonymous()
            .build()
            .unwrap_err();
        assert!(
            matches!(&err, Error::InvalidStoreSetting { setting, .. } if setting == "container"),
            "{err:?}"
        );
    }

    #[test]
    fn local_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreConfig::Local(LocalConfig::new(dir.path()).unwrap());
        assert_eq!(store.url().scheme(), "file");
        assert!(store.url().as_str().ends_with('/'));
        assert!(store.registration_urls().is_empty());
        let err = LocalConfig::new(dir.path().join("missing")).unwrap_err();
        assert!(matches!(err, Error::InvalidStoreSetting { .. }));
    }

    #[test]
    fn relative_path_may_not_escape() {
        let err = S3Config::builder("lake")
            .access_key_id("id")
            .secret_access_key(SecretString::from("s".to_owned()))
            .relative_path("a/../b")
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::InvalidStoreSetting { .. }));
    }

    #[test]
    fn debug_shows_no_secrets() {
        let azure_sas = AzureConfig::builder("acct", "cont")
            .sas_token(SecretString::from(SAS.to_owned()))
            .build()
            .unwrap();
        let azure_key = AzureConfig::builder("acct", "cont")
            .account_key(SecretString::from(ACCOUNT_KEY.to_owned()))
            .build()
            .unwrap();
        let s3 = S3Config::builder("lake")
            .access_key_id("AKIDEXAMPLE")
            .secret_access_key(SecretString::from("S3-TOP-SECRET-VALUE".to_owned()))
            .session_token(SecretString::from("SESSION-SECRET".to_owned()))
            .build()
            .unwrap();
        for (store, secrets) in [
            (StoreConfig::Azure(azure_sas), &["TOPSECRETSIG", "sig="][..]),
            (StoreConfig::Azure(azure_key), &[ACCOUNT_KEY][..]),
            (
                StoreConfig::S3(s3),
                &["S3-TOP-SECRET-VALUE", "SESSION-SECRET"][..],
            ),
        ] {
            for shown in [format!("{store:?}"), format!("{store:#?}")] {
                for secret in secrets {
                    assert!(!shown.contains(secret), "{secret} in {shown}");
                }
                assert!(shown.contains("redacted"), "{shown}");
            }
        }
        // The builders too.
        let builder =
            AzureConfig::builder("acct", "cont").sas_token(SecretString::from(SAS.to_owned()));
        assert!(!format!("{builder:?}").contains("TOPSECRETSIG"));
        let builder = S3Config::builder("lake")
            .secret_access_key(SecretString::from("S3-TOP-SECRET".to_owned()));
        assert!(!format!("{builder:?}").contains("S3-TOP-SECRET"));
    }
}

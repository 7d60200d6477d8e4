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
//! # From the environment the workload receives
//!
//! [`StoreConfig::from_env`] builds a store from the key/value settings a workload receives
//! from CAS after attestation — the names the reference app uses for Azure, and the usual
//! `AWS_*` names for S3:
//!
//! | setting | meaning |
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
//! | `CLOISTER_DATA_ROOT` | a local directory instead |
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
mod env;
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

fn parse_endpoint(store: &'static str, name: &str, value: &str) -> Result<Url, Error> {
    Url::parse(value).map_err(|e| Error::InvalidStoreSetting {
        store,
        setting: name.to_owned(),
        reason: format!("not a URL: {e}"),
    })
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

    fn azure_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("AZURE_BLOB_ACCOUNT_NAME", "azureopendatastorage"),
            ("AZURE_BLOB_CONTAINER_NAME", "nyctlc"),
            ("AZURE_BLOB_RELATIVE_PATH", "yellow"),
        ];
        env.extend_from_slice(extra);
        env
    }

    #[test]
    fn azure_from_reference_app_env() {
        let store = StoreConfig::from_env(azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)])).unwrap();
        let StoreConfig::Azure(azure) = &store else {
            panic!("{store:?}")
        };
        assert_eq!(azure.account(), "azureopendatastorage");
        assert!(matches!(azure.credential(), AzureCredential::SasToken(_)));
        assert_eq!(store.url().as_str(), "az://nyctlc/");
        assert_eq!(store.data_url().as_str(), "az://nyctlc/yellow");
        let urls: Vec<String> = store
            .registration_urls()
            .iter()
            .map(|u| u.to_string())
            .collect();
        assert_eq!(
            urls,
            [
                "az://nyctlc/",
                "abfss://nyctlc@azureopendatastorage.dfs.core.windows.net/"
            ]
        );
        store.build().unwrap();
    }

    #[rstest::rstest]
    #[case::missing(&[])]
    #[case::empty(&[("AZURE_BLOB_SAS_TOKEN", "")])]
    #[case::blank(&[("AZURE_BLOB_SAS_TOKEN", "  ")])]
    fn missing_sas_token_is_named(#[case] extra: &[(&str, &str)]) {
        let err = StoreConfig::from_env(azure_env(extra)).unwrap_err();
        assert!(
            matches!(&err, Error::MissingStoreSetting { store: "Azure Blob", setting, .. } if setting == "AZURE_BLOB_SAS_TOKEN"),
            "{err:?}"
        );
        assert!(err.to_string().contains("AZURE_BLOB_SAS_TOKEN"), "{err}");
    }

    #[rstest::rstest]
    #[case::account("AZURE_BLOB_ACCOUNT_NAME")]
    #[case::container("AZURE_BLOB_CONTAINER_NAME")]
    fn missing_azure_names_are_named(#[case] missing: &str) {
        let env: Vec<_> = azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)])
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let err = StoreConfig::from_env(env).unwrap_err();
        assert!(
            matches!(&err, Error::MissingStoreSetting { setting, .. } if setting == missing),
            "{err:?}"
        );
    }

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
    fn anonymous_and_account_key_and_emulator() {
        let anon = StoreConfig::from_env(azure_env(&[
            ("AZURE_BLOB_SAS_TOKEN", ""),
            ("AZURE_BLOB_ANONYMOUS", "true"),
        ]))
        .unwrap();
        assert!(format!("{anon:?}").contains("Anonymous"));
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
        let both = StoreConfig::from_env(azure_env(&[
            ("AZURE_BLOB_SAS_TOKEN", SAS),
            ("AZURE_BLOB_ACCOUNT_KEY", ACCOUNT_KEY),
        ]))
        .unwrap_err();
        assert!(matches!(both, Error::InvalidStoreSetting { .. }));
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

    fn s3_env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut env = vec![
            ("AWS_BUCKET", "lake"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "S3-TOP-SECRET-VALUE"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_S3_RELATIVE_PATH", "trips/"),
        ];
        env.extend_from_slice(extra);
        env
    }

    #[test]
    fn s3_from_env() {
        let store = StoreConfig::from_env(s3_env(&[])).unwrap();
        let StoreConfig::S3(s3) = &store else {
            panic!("{store:?}")
        };
        assert_eq!((s3.bucket(), s3.region()), ("lake", "eu-west-1"));
        assert!(s3.path_style);
        assert_eq!(store.data_url().as_str(), "s3://lake/trips/");
        assert_eq!(store.registration_urls()[0].as_str(), "s3://lake/");
        store.build().unwrap();
    }

    #[rstest::rstest]
    #[case::key_id("AWS_ACCESS_KEY_ID")]
    #[case::secret("AWS_SECRET_ACCESS_KEY")]
    fn missing_s3_credentials_are_named(#[case] missing: &str) {
        let env: Vec<_> = s3_env(&[])
            .into_iter()
            .filter(|(k, _)| *k != missing)
            .collect();
        let err = StoreConfig::from_env(env).unwrap_err();
        assert!(
            matches!(&err, Error::MissingStoreSetting { store: "S3", setting, .. } if setting == missing),
            "{err:?}"
        );
    }

    #[test]
    fn s3_http_endpoint_needs_permission() {
        let env: Vec<_> = s3_env(&[])
            .into_iter()
            .filter(|(k, _)| *k != "AWS_ALLOW_HTTP")
            .collect();
        let err = StoreConfig::from_env(env).unwrap_err();
        assert!(err.to_string().contains("AWS_ALLOW_HTTP"), "{err}");
    }

    #[test]
    fn no_store_or_two_stores() {
        let err = StoreConfig::from_env([("PATH", "/bin")]).unwrap_err();
        assert!(matches!(err, Error::MissingStoreSetting { .. }));
        let mut env = s3_env(&[]);
        env.extend(azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)]));
        let err = StoreConfig::from_env(env).unwrap_err();
        assert!(matches!(err, Error::InvalidStoreSetting { .. }));
    }

    #[test]
    fn local_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let store = StoreConfig::from_env([("CLOISTER_DATA_ROOT", root)]).unwrap();
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
        let azure_sas = StoreConfig::from_env(azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)])).unwrap();
        let azure_key =
            StoreConfig::from_env(azure_env(&[("AZURE_BLOB_ACCOUNT_KEY", ACCOUNT_KEY)])).unwrap();
        let s3 = StoreConfig::from_env(s3_env(&[("AWS_SESSION_TOKEN", "SESSION-SECRET")])).unwrap();
        for (store, secrets) in [
            (&azure_sas, &["TOPSECRETSIG", "sig="][..]),
            (&azure_key, &[ACCOUNT_KEY][..]),
            (&s3, &["S3-TOP-SECRET-VALUE", "SESSION-SECRET"][..]),
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

//! The workload settings that name a store: the one place that knows the variable names.
//!
//! The names are listed in the [`config`](crate::config) module docs. Everything here goes
//! through the engine's public builders ([`AzureConfig::builder`], [`S3Config::builder`],
//! [`LocalConfig::new`]); the engine itself reads no environment.

use cloister_engine::Error;
use cloister_engine::store::{AzureConfig, LocalConfig, S3Config, StoreConfig};
use secrecy::SecretString;
use url::Url;

use super::DATA_ROOT_ENV;

// The store kinds, as the engine's builders name them in their errors.
const AZURE: &str = "Azure Blob";
const S3: &str = "S3";

/// Build a store from workload settings (see the [`config`](crate::config) module docs for the
/// names).
///
/// Azure is chosen when `AZURE_BLOB_ACCOUNT_NAME` or `AZURE_BLOB_CONTAINER_NAME` is set,
/// S3 when `AWS_BUCKET` / `AWS_BUCKET_NAME` is, a local directory when
/// `CLOISTER_DATA_ROOT` is; exactly one of them must be. Empty values count as unset.
/// Other settings are ignored. Errors name the setting, never its value.
pub fn store_from_env<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<StoreConfig, Error> {
    let env = Env::new(vars);
    let azure = env.get("AZURE_BLOB_ACCOUNT_NAME").is_some()
        || env.get("AZURE_BLOB_CONTAINER_NAME").is_some();
    let s3 = env.get("AWS_BUCKET").is_some() || env.get("AWS_BUCKET_NAME").is_some();
    let local = env.get(DATA_ROOT_ENV).is_some();
    match (azure, s3, local) {
        (true, false, false) => azure_from_env(&env).map(StoreConfig::Azure),
        (false, true, false) => s3_from_env(&env).map(StoreConfig::S3),
        (false, false, true) => {
            let root = env.get(DATA_ROOT_ENV).unwrap_or_default();
            LocalConfig::new(root).map(StoreConfig::Local)
        }
        (false, false, false) => Err(Error::MissingStoreSetting {
            store: "data",
            setting: "AZURE_BLOB_ACCOUNT_NAME, AWS_BUCKET or CLOISTER_DATA_ROOT".into(),
            hint: "name the container, bucket or directory the data is in",
        }),
        _ => Err(Error::InvalidStoreSetting {
            store: "data",
            setting: "AZURE_BLOB_*, AWS_BUCKET, CLOISTER_DATA_ROOT".into(),
            reason: "settings for more than one store are given; give one".into(),
        }),
    }
}

fn parse_endpoint(store: &'static str, name: &str, value: &str) -> Result<Url, Error> {
    Url::parse(value).map_err(|e| Error::InvalidStoreSetting {
        store,
        setting: name.to_owned(),
        reason: format!("not a URL: {e}"),
    })
}

fn azure_from_env(env: &Env) -> Result<AzureConfig, Error> {
    let account = env.require(AZURE, "AZURE_BLOB_ACCOUNT_NAME", "the storage account name")?;
    let container = env.require(AZURE, "AZURE_BLOB_CONTAINER_NAME", "the container name")?;
    let mut builder = AzureConfig::builder(account, container)
        .relative_path(env.get("AZURE_BLOB_RELATIVE_PATH").unwrap_or_default());
    let anonymous = env.flag(AZURE, "AZURE_BLOB_ANONYMOUS")?;
    builder = match (
        env.get("AZURE_BLOB_SAS_TOKEN"),
        env.get("AZURE_BLOB_ACCOUNT_KEY"),
        anonymous,
    ) {
        (Some(sas), None, false) => builder.sas_token(SecretString::from(sas.to_owned())),
        (None, Some(key), false) => builder.account_key(SecretString::from(key.to_owned())),
        (None, None, true) => builder.anonymous(),
        (None, None, false) => {
            return Err(Error::MissingStoreSetting {
                store: AZURE,
                setting: "AZURE_BLOB_SAS_TOKEN".into(),
                hint: "give a SAS token (or AZURE_BLOB_ACCOUNT_KEY); for a public container \
                       set AZURE_BLOB_ANONYMOUS=true",
            });
        }
        _ => {
            return Err(Error::InvalidStoreSetting {
                store: AZURE,
                setting: "AZURE_BLOB_SAS_TOKEN, AZURE_BLOB_ACCOUNT_KEY, AZURE_BLOB_ANONYMOUS"
                    .into(),
                reason: "more than one credential is given; give one".into(),
            });
        }
    };
    if let Some(endpoint) = env.get("AZURE_BLOB_ENDPOINT") {
        builder = builder.endpoint(parse_endpoint(AZURE, "AZURE_BLOB_ENDPOINT", endpoint)?);
    }
    builder
        .allow_http(env.flag(AZURE, "AZURE_BLOB_ALLOW_HTTP")?)
        .build()
}

fn s3_from_env(env: &Env) -> Result<S3Config, Error> {
    let bucket = env
        .get("AWS_BUCKET")
        .or_else(|| env.get("AWS_BUCKET_NAME"))
        .unwrap_or_default();
    let mut builder = S3Config::builder(bucket)
        .relative_path(env.get("AWS_S3_RELATIVE_PATH").unwrap_or_default())
        .access_key_id(env.require(S3, "AWS_ACCESS_KEY_ID", "the access key id")?)
        .secret_access_key(SecretString::from(
            env.require(S3, "AWS_SECRET_ACCESS_KEY", "the secret access key")?
                .to_owned(),
        ))
        .allow_http(env.flag(S3, "AWS_ALLOW_HTTP")?)
        .path_style(!env.flag(S3, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST")?);
    if let Some(region) = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"))
    {
        builder = builder.region(region);
    }
    if let Some(token) = env.get("AWS_SESSION_TOKEN") {
        builder = builder.session_token(SecretString::from(token.to_owned()));
    }
    let endpoint = env
        .get("AWS_ENDPOINT_URL")
        .map(|e| ("AWS_ENDPOINT_URL", e))
        .or_else(|| env.get("AWS_ENDPOINT").map(|e| ("AWS_ENDPOINT", e)));
    if let Some((name, endpoint)) = endpoint {
        builder = builder.endpoint(parse_endpoint(S3, name, endpoint)?);
    }
    builder.build()
}

/// Settings as a map; empty values count as unset.
struct Env<'a>(Vec<(&'a str, &'a str)>);

impl<'a> Env<'a> {
    fn new(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env(vars.into_iter().collect())
    }

    fn get(&self, name: &str) -> Option<&'a str> {
        // The last setting of a name wins, as in a shell.
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn require(
        &self,
        store: &'static str,
        name: &str,
        hint: &'static str,
    ) -> Result<&'a str, Error> {
        self.get(name).ok_or_else(|| Error::MissingStoreSetting {
            store,
            setting: name.to_owned(),
            hint,
        })
    }

    fn flag(&self, store: &'static str, name: &str) -> Result<bool, Error> {
        match self.get(name).map(str::to_ascii_lowercase).as_deref() {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(_) => Err(Error::InvalidStoreSetting {
                store,
                setting: name.to_owned(),
                reason: "expected true or false".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use cloister_engine::store::AzureCredential;

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
        let store = store_from_env(azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)])).unwrap();
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
        let err = store_from_env(azure_env(extra)).unwrap_err();
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
        let err = store_from_env(env).unwrap_err();
        assert!(
            matches!(&err, Error::MissingStoreSetting { setting, .. } if setting == missing),
            "{err:?}"
        );
    }

    #[test]
    fn anonymous_and_account_key() {
        let anon = store_from_env(azure_env(&[
            ("AZURE_BLOB_SAS_TOKEN", ""),
            ("AZURE_BLOB_ANONYMOUS", "true"),
        ]))
        .unwrap();
        assert!(format!("{anon:?}").contains("Anonymous"));
        let both = store_from_env(azure_env(&[
            ("AZURE_BLOB_SAS_TOKEN", SAS),
            ("AZURE_BLOB_ACCOUNT_KEY", ACCOUNT_KEY),
        ]))
        .unwrap_err();
        assert!(matches!(both, Error::InvalidStoreSetting { .. }));
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
        let store = store_from_env(s3_env(&[])).unwrap();
        let StoreConfig::S3(s3) = &store else {
            panic!("{store:?}")
        };
        assert_eq!((s3.bucket(), s3.region()), ("lake", "eu-west-1"));
        assert!(format!("{s3:?}").contains("path_style: true"));
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
        let err = store_from_env(env).unwrap_err();
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
        let err = store_from_env(env).unwrap_err();
        assert!(err.to_string().contains("AWS_ALLOW_HTTP"), "{err}");
    }

    #[test]
    fn no_store_or_two_stores() {
        let err = store_from_env([("PATH", "/bin")]).unwrap_err();
        assert!(matches!(err, Error::MissingStoreSetting { .. }));
        let mut env = s3_env(&[]);
        env.extend(azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)]));
        let err = store_from_env(env).unwrap_err();
        assert!(matches!(err, Error::InvalidStoreSetting { .. }));
    }

    #[test]
    fn local_store() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let store = store_from_env([(DATA_ROOT_ENV, root)]).unwrap();
        assert_eq!(store.url().scheme(), "file");
        assert!(store.url().as_str().ends_with('/'));
        assert!(store.registration_urls().is_empty());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let azure_sas = store_from_env(azure_env(&[("AZURE_BLOB_SAS_TOKEN", SAS)])).unwrap();
        let azure_key =
            store_from_env(azure_env(&[("AZURE_BLOB_ACCOUNT_KEY", ACCOUNT_KEY)])).unwrap();
        let s3 = store_from_env(s3_env(&[("AWS_SESSION_TOKEN", "SESSION-SECRET")])).unwrap();
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

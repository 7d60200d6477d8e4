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


//! Azure Blob Storage / ADLS Gen2 containers.

use std::fmt;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::*;
use crate::Error;

/// How the engine authenticates to an Azure container.
#[derive(Clone)]
#[non_exhaustive]
pub enum AzureCredential {
    /// A shared access signature (the query string, with or without the leading `?`).
    SasToken(SecretString),
    /// The storage account's shared key (base64).
    AccountKey(SecretString),
    /// No credential: a container that allows anonymous reads.
    Anonymous,
}

impl fmt::Debug for AzureCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AzureCredential::SasToken(_) => "SasToken(<redacted>)",
            AzureCredential::AccountKey(_) => "AccountKey(<redacted>)",
            AzureCredential::Anonymous => "Anonymous",
        })
    }
}

/// An Azure Blob Storage / ADLS Gen2 container, validated; built by [`AzureConfig::builder`].
#[derive(Clone)]
pub struct AzureConfig {
    account: String,
    container: String,
    pub(super) relative_path: String,
    credential: AzureCredential,
    pub(super) endpoint: Option<Url>,
    allow_http: bool,
}

impl fmt::Debug for AzureConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfig")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("relative_path", &self.relative_path)
            .field("credential", &self.credential)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl AzureConfig {
    /// Start configuring `container` in storage account `account`.
    pub fn builder(account: impl Into<String>, container: impl Into<String>) -> AzureConfigBuilder {
        AzureConfigBuilder {
            account: account.into(),
            container: container.into(),
            relative_path: String::new(),
            credential: None,
            endpoint: None,
            allow_http: false,
        }
    }

    /// The storage account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The container.
    pub fn container(&self) -> &str {
        &self.container
    }

    /// The data's path inside the container (may be empty).
    pub fn relative_path(&self) -> &str {
        &self.relative_path
    }

    /// The credential (its `Debug` shows only its kind).
    pub fn credential(&self) -> &AzureCredential {
        &self.credential
    }

    pub(super) fn url(&self) -> Url {
        bucket_url("az", &self.container)
    }

    pub(super) fn registration_urls(&self) -> Vec<Url> {
        let mut urls = vec![self.url()];
        let dfs = format!(
            "abfss://{}@{}.dfs.core.windows.net/",
            self.container, self.account
        );
        // Account and container names were validated to URL-safe characters.
        if let Ok(url) = Url::parse(&dfs) {
            urls.push(url);
        }
        urls
    }

    pub(super) fn build(&self) -> Result<Arc<dyn ObjectStore>, Error> {
        let mut builder = MicrosoftAzureBuilder::new()
            .with_account(&self.account)
            .with_container_name(&self.container)
            .with_allow_http(self.allow_http);
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/').to_owned());
        }
        builder = match &self.credential {
            AzureCredential::SasToken(sas) => {
                builder.with_config(AzureConfigKey::SasKey, sas.expose_secret())
            }
            AzureCredential::AccountKey(key) => builder.with_access_key(key.expose_secret()),
            AzureCredential::Anonymous => builder.with_skip_signature(true),
        };
        let store = builder.build().map_err(|e| Error::InvalidStoreSetting {
            store: AZURE,
            setting: "configuration".into(),
            reason: e.to_string(),
        })?;
        Ok(Arc::new(store))
    }
}

/// Builds an [`AzureConfig`]; exactly one credential must be chosen.
pub struct AzureConfigBuilder {
    account: String,
    container: String,
    relative_path: String,
    credential: Option<AzureCredential>,
    endpoint: Option<Url>,
    allow_http: bool,
}

impl fmt::Debug for AzureConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzureConfigBuilder")
            .field("account", &self.account)
            .field("container", &self.container)
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl AzureConfigBuilder {
    /// Authenticate with a shared access signature.
    pub fn sas_token(mut self, token: SecretString) -> Self {
        self.credential = Some(AzureCredential::SasToken(token));
        self
    }

    /// Authenticate with the account's shared key.
    pub fn account_key(mut self, key: SecretString) -> Self {
        self.credential = Some(AzureCredential::AccountKey(key));
        self
    }

    /// Send no credential (a public container).
    pub fn anonymous(mut self) -> Self {
        self.credential = Some(AzureCredential::Anonymous);
        self
    }

    /// The data's path inside the container.
    pub fn relative_path(mut self, path: impl Into<String>) -> Self {
        self.relative_path = path.into();
        self
    }

    /// Talk to `endpoint` instead of `https://<account>.blob.core.windows.net`. For Azurite
    /// use [`emulator`](Self::emulator), or its URL with the account name as path
    /// (`http://127.0.0.1:10000/devstoreaccount1`) and [`allow_http`](Self::allow_http).
    pub fn endpoint(mut self, endpoint: Url) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// Talk to the Azurite emulator whose blob service is at `blob_service` (for example
    /// `http://127.0.0.1:10000`), over plain HTTP.
    pub fn emulator(mut self, blob_service: &Url) -> Self {
        self.endpoint = Some(join_relative(blob_service.clone(), &self.account));
        self.allow_http = true;
        self
    }

    /// Allow a plain-HTTP endpoint (emulators on loopback only).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Validate and freeze the configuration.
    pub fn build(self) -> Result<AzureConfig, Error> {
        validate_name(AZURE, "account", &self.account, 3, 24, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit()
        })?;
        validate_name(AZURE, "container", &self.container, 3, 63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
        })?;
        let credential = self.credential.ok_or(Error::MissingStoreSetting {
            store: AZURE,
            setting: "credential".into(),
            hint: "give a SAS token or an account key (or choose anonymous access explicitly)",
        })?;
        match &credential {
            AzureCredential::SasToken(sas) => validate_sas(sas.expose_secret())?,
            AzureCredential::AccountKey(key) => validate_account_key(key.expose_secret())?,
            AzureCredential::Anonymous => {}
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(AZURE, endpoint, self.allow_http, "AZURE_BLOB_ALLOW_HTTP")?;
        }
        Ok(AzureConfig {
            account: self.account,
            container: self.container,
            relative_path: clean_relative(AZURE, &self.relative_path)?,
            credential,
            endpoint: self.endpoint,
            allow_http: self.allow_http,
        })
    }
}

fn validate_sas(token: &str) -> Result<(), Error> {
    let invalid = |reason: &str| Error::InvalidStoreSetting {
        store: AZURE,
        setting: "SAS token".into(),
        reason: reason.into(),
    };
    let token = token.trim().trim_start_matches('?');
    if token.is_empty() {
        return Err(Error::MissingStoreSetting {
            store: AZURE,
            setting: "SAS token".into(),
            hint: "the SAS token is empty; for a public container choose anonymous access",
        });
    }
    let mut has_signature = false;
    for pair in token.split('&').filter(|p| !p.is_empty()) {
        let Some((name, _)) = pair.split_once('=') else {
            return Err(invalid("not a query string of name=value pairs"));
        };
        has_signature |= name == "sig";
    }
    if !has_signature {
        return Err(invalid("it has no sig= parameter"));
    }
    Ok(())
}

fn validate_account_key(key: &str) -> Result<(), Error> {
    use base64::Engine as _;
    let mut decoded = base64::engine::general_purpose::STANDARD
        .decode(key.trim())
        .map_err(|_| Error::InvalidStoreSetting {
            store: AZURE,
            setting: "account key".into(),
            reason: "not base64".into(),
        })?;
    // Wipe the decoded copy; only the length mattered.
    let empty = decoded.is_empty();
    zeroize::Zeroize::zeroize(&mut decoded);
    if empty {
        return Err(Error::MissingStoreSetting {
            store: AZURE,
            setting: "account key".into(),
            hint: "the account key is empty",
        });
    }
    Ok(())
}

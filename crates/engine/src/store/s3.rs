//! S3 and S3-compatible buckets.

use std::fmt;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use super::*;
use crate::Error;

/// An S3 (or S3-compatible) bucket, validated; built by [`S3Config::builder`].
#[derive(Clone)]
pub struct S3Config {
    bucket: String,
    region: String,
    endpoint: Option<Url>,
    access_key_id: String,
    secret_access_key: SecretString,
    session_token: Option<SecretString>,
    allow_http: bool,
    pub(super) path_style: bool,
    pub(super) relative_path: String,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("endpoint", &self.endpoint.as_ref().map(Url::as_str))
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("path_style", &self.path_style)
            .field("relative_path", &self.relative_path)
            .finish()
    }
}

impl S3Config {
    /// Start configuring `bucket`.
    pub fn builder(bucket: impl Into<String>) -> S3ConfigBuilder {
        S3ConfigBuilder {
            bucket: bucket.into(),
            region: None,
            endpoint: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            allow_http: false,
            path_style: true,
            relative_path: String::new(),
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The data's path inside the bucket (may be empty).
    pub fn relative_path(&self) -> &str {
        &self.relative_path
    }

    pub(super) fn url(&self) -> Url {
        bucket_url("s3", &self.bucket)
    }

    pub(super) fn build(&self) -> Result<Arc<dyn ObjectStore>, Error> {
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key_id)
            .with_secret_access_key(self.secret_access_key.expose_secret())
            .with_allow_http(self.allow_http)
            .with_virtual_hosted_style_request(!self.path_style);
        if let Some(token) = &self.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.as_str().trim_end_matches('/'));
        }
        let store = builder.build().map_err(|e| Error::InvalidStoreSetting {
            store: S3,
            setting: "configuration".into(),
            reason: e.to_string(),
        })?;
        Ok(Arc::new(store))
    }
}

/// Builds an [`S3Config`]; the access key id and secret are required.
pub struct S3ConfigBuilder {
    bucket: String,
    region: Option<String>,
    endpoint: Option<Url>,
    access_key_id: Option<String>,
    secret_access_key: Option<SecretString>,
    session_token: Option<SecretString>,
    allow_http: bool,
    path_style: bool,
    relative_path: String,
}

impl fmt::Debug for S3ConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3ConfigBuilder")
            .field("bucket", &self.bucket)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl S3ConfigBuilder {
    /// The region (default `us-east-1`).
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }

    /// Talk to `endpoint` instead of AWS (moto, MinIO, …).
    pub fn endpoint(mut self, endpoint: Url) -> Self {
        self.endpoint = Some(endpoint);
        self
    }

    /// The access key id.
    pub fn access_key_id(mut self, id: impl Into<String>) -> Self {
        self.access_key_id = Some(id.into());
        self
    }

    /// The secret access key.
    pub fn secret_access_key(mut self, secret: SecretString) -> Self {
        self.secret_access_key = Some(secret);
        self
    }

    /// The session token of a temporary credential.
    pub fn session_token(mut self, token: SecretString) -> Self {
        self.session_token = Some(token);
        self
    }

    /// Allow a plain-HTTP endpoint (emulators on loopback only).
    pub fn allow_http(mut self, allow: bool) -> Self {
        self.allow_http = allow;
        self
    }

    /// Path-style requests (`<endpoint>/<bucket>/<key>`, the default) or virtual-hosted-style
    /// ones (`<bucket>.<endpoint>/<key>`).
    pub fn path_style(mut self, path_style: bool) -> Self {
        self.path_style = path_style;
        self
    }

    /// The data's path inside the bucket.
    pub fn relative_path(mut self, path: impl Into<String>) -> Self {
        self.relative_path = path.into();
        self
    }

    /// Validate and freeze the configuration.
    pub fn build(self) -> Result<S3Config, Error> {
        if self.bucket.is_empty() {
            return Err(Error::MissingStoreSetting {
                store: S3,
                setting: "AWS_BUCKET".into(),
                hint: "the bucket name",
            });
        }
        validate_name(S3, "bucket", &self.bucket, 3, 63, |c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
        })?;
        let access_key_id = match self.access_key_id {
            Some(id) if !id.trim().is_empty() => id,
            _ => {
                return Err(Error::MissingStoreSetting {
                    store: S3,
                    setting: "AWS_ACCESS_KEY_ID".into(),
                    hint: "the access key id",
                });
            }
        };
        let secret_access_key = match self.secret_access_key {
            Some(secret) if !secret.expose_secret().trim().is_empty() => secret,
            _ => {
                return Err(Error::MissingStoreSetting {
                    store: S3,
                    setting: "AWS_SECRET_ACCESS_KEY".into(),
                    hint: "the secret access key",
                });
            }
        };
        let region = self.region.unwrap_or_else(|| "us-east-1".to_owned());
        if region.is_empty()
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::InvalidStoreSetting {
                store: S3,
                setting: "region".into(),
                reason: format!("{region:?} is not a region name"),
            });
        }
        if let Some(endpoint) = &self.endpoint {
            check_endpoint(S3, endpoint, self.allow_http, "AWS_ALLOW_HTTP")?;
        }
        Ok(S3Config {
            relative_path: clean_relative(S3, &self.relative_path)?,
            bucket: self.bucket,
            region,
            endpoint: self.endpoint,
            access_key_id,
            secret_access_key,
            session_token: self.session_token,
            allow_http: self.allow_http,
            path_style: self.path_style,
        })
    }
}

//! Sources of collateral: the [`Fetcher`] trait, an offline bundle directory, and Intel PCS /
//! AMD KDS over HTTPS.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::value::RawValue;

use super::MAX_ITEM_LEN;
use super::item::{DcapTee, Item, PckCa};
use crate::LasError;
use crate::http::{error_chain, read_body};

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

/// A boxed future, so that [`Fetcher`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a source could not provide an item.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The service is rate-limiting (HTTP 429).
    #[error("{url}: HTTP 429 Too Many Requests{}", retry_note(*retry_after))]
    RateLimited {
        /// The URL requested.
        url: String,
        /// The service's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The service answered with another non-success status.
    #[error("{url}: HTTP {status}{}", retry_note(*retry_after))]
    Status {
        /// The URL requested.
        url: String,
        /// The status.
        status: u16,
        /// The service's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// The request failed before an answer: DNS, connection, TLS, timeout, a closed connection.
    #[error("{url}: {reason}")]
    Network {
        /// The URL requested.
        url: String,
        /// The transport error.
        reason: String,
    },
    /// The service answered, but not with the item: a missing header, a malformed body.
    #[error("{url}: {reason}")]
    Invalid {
        /// The URL requested.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A bundle file cannot be read.
    #[error("offline bundle: {}: {reason}", path.display())]
    Io {
        /// The file, relative to the bundle.
        path: PathBuf,
        /// The error.
        reason: String,
    },
}

fn retry_note(after: Option<Duration>) -> String {
    after.map_or_else(String::new, |d| format!(" (Retry-After {} s)", d.as_secs()))
}

impl FetchError {
    /// Whether trying again later may succeed: rate limiting, server errors, network failures.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::RateLimited { .. } | FetchError::Network { .. } => true,
            FetchError::Status { status, .. } => *status >= 500 || *status == 408,
            FetchError::Invalid { .. } | FetchError::Io { .. } => false,
        }
    }

    /// The delay the service asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            FetchError::RateLimited { retry_after, .. }
            | FetchError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// A source of collateral: a vendor service or an offline bundle.
pub trait Fetcher: Send + Sync + fmt::Debug {
    /// The source's name in messages: a base URL, or `offline bundle <dir>`.
    fn name(&self) -> String;

    /// Fetch `item`'s body. `Ok(None)` when this source does not hold items of its kind (a
    /// bundle without the file, an HTTP source with no service configured for that vendor).
    fn fetch<'a>(&'a self, item: &'a Item) -> BoxFuture<'a, Result<Option<Vec<u8>>, FetchError>>;
}

/// An offline bundle directory, laid out as the module documentation says.
#[derive(Clone, Debug)]
pub struct BundleFetcher {
    dir: PathBuf,
}

impl BundleFetcher {
    /// A bundle rooted at `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }
}

impl Fetcher for BundleFetcher {
    fn name(&self) -> String {
        // No host path in messages that reach API callers; the path is logged at startup.
        "offline bundle".into()
    }

    fn fetch<'a>(&'a self, item: &'a Item) -> BoxFuture<'a, Result<Option<Vec<u8>>, FetchError>> {
        Box::pin(async move {
            let path = self.dir.join(item.bundle_path());
            match read_limited(&path, MAX_ITEM_LEN) {
                Ok(body) => Ok(Some(body)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(FetchError::Io {
                    path: item.bundle_path(),
                    reason: e.to_string(),
                }),
            }
        })
    }
}

pub(super) fn read_limited(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let file = std::fs::File::open(path)?;
    let mut body = Vec::new();
    // `max + 1` so that an over-long file is noticed; `usize` to `u64` never truncates here.
    file.take(max as u64 + 1).read_to_end(&mut body)?;
    if body.len() > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(body)
}

/// Where Intel's Provisioning Certification Service (or a PCCS) is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntelPcs {
    /// The SGX API base, e.g. `https://api.trustedservices.intel.com/sgx/certification/v4`;
    /// also serves the PCK CRLs of TDX platforms.
    pub sgx: Url,
    /// The TDX API base, e.g. `https://api.trustedservices.intel.com/tdx/certification/v4`;
    /// `None`: TDX collateral is not fetched.
    pub tdx: Option<Url>,
    /// The Intel SGX Root CA CRL, e.g.
    /// `https://certificates.trustedservices.intel.com/IntelSGXRootCA.der` (a PCCS serves it at
    /// `<sgx base>/rootcacrl`).
    pub root_ca_crl: Url,
}

/// Fetches collateral over HTTPS from Intel PCS and AMD KDS (or mirrors with the same API).
#[derive(Clone, Debug)]
pub struct HttpFetcher {
    client: reqwest::Client,
    intel: Option<IntelPcs>,
    amd_kds: Option<Url>,
}

impl HttpFetcher {
    /// A fetcher for the services given (`None`: items of that vendor are not fetched), with a
    /// timeout for each request.
    pub fn new(
        intel: Option<IntelPcs>,
        amd_kds: Option<Url>,
        timeout: Duration,
    ) -> Result<Self, LasError> {
        let client = crate::http::http_client(timeout)?;
        Ok(Self {
            client,
            intel,
            amd_kds,
        })
    }

    async fn get(&self, url: &Url) -> Result<(HeaderMap, Vec<u8>), FetchError> {
        let shown = url.to_string();
        tracing::debug!(url = %shown, "fetching collateral");
        let response =
            self.client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| FetchError::Network {
                    url: shown.clone(),
                    reason: error_chain(&e),
                })?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = parse_retry_after(response.headers(), SystemTime::now());
            return Err(if status.as_u16() == 429 {
                FetchError::RateLimited {
                    url: shown,
                    retry_after,
                }
            } else {
                FetchError::Status {
                    url: shown,
                    status: status.as_u16(),
                    retry_after,
                }
            });
        }
        let headers = response.headers().clone();
        let body = read_body(response, MAX_ITEM_LEN)
            .await
            .map_err(|reason| FetchError::Network { url: shown, reason })?;
        Ok((headers, body))
    }

    async fn fetch_dcap(
        &self,
        pcs: &IntelPcs,
        base: &Url,
        fmspc: &[u8; 6],
        ca: PckCa,
    ) -> Result<Vec<u8>, FetchError> {
        let url = join(&pcs.sgx, &format!("pckcrl?ca={}&encoding=der", ca.as_str()))?;
        let (headers, body) = self.get(&url).await?;
        let pck_crl_issuer_chain = header(&headers, &["SGX-PCK-CRL-Issuer-Chain"], &url)?;
        let pck_crl = crl_der(body);

        let url = join(base, &format!("tcb?fmspc={}", hex::encode_upper(fmspc)))?;
        let (headers, body) = self.get(&url).await?;
        let tcb_info_issuer_chain = header(
            &headers,
            &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            &url,
        )?;
        let (tcb_info, tcb_info_signature) = signed_body(&body, "tcbInfo", &url)?;

        let url = join(base, "qe/identity")?;
        let (headers, body) = self.get(&url).await?;
        let qe_identity_issuer_chain =
            header(&headers, &["SGX-Enclave-Identity-Issuer-Chain"], &url)?;
        let (qe_identity, qe_identity_signature) = signed_body(&body, "enclaveIdentity", &url)?;

        let (_, body) = self.get(&pcs.root_ca_crl).await?;
        let root_ca_crl = crl_der(body);

        let collateral = dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain,
            root_ca_crl,
            pck_crl,
            tcb_info_issuer_chain,
            tcb_info,
            tcb_info_signature,
            qe_identity_issuer_chain,
            qe_identity,
            qe_identity_signature,
            pck_certificate_chain: None,
        };
        serde_json::to_vec(&collateral).map_err(|e| FetchError::Invalid {
            url: base.to_string(),
            reason: format!("cannot encode the collateral: {e}"),
        })
    }
}

impl Fetcher for HttpFetcher {
    fn name(&self) -> String {
        let mut names = Vec::new();
        if let Some(pcs) = &self.intel {
            names.push(pcs.sgx.to_string());
        }
        if let Some(kds) = &self.amd_kds {
            names.push(kds.to_string());
        }
        names.join(" + ")
    }

    fn fetch<'a>(&'a self, item: &'a Item) -> BoxFuture<'a, Result<Option<Vec<u8>>, FetchError>> {
        Box::pin(async move {
            match item {
                Item::Dcap { tee, fmspc, ca } => {
                    let Some(pcs) = &self.intel else {
                        return Ok(None);
                    };
                    let base = match tee {
                        DcapTee::Sgx => &pcs.sgx,
                        DcapTee::Tdx => match &pcs.tdx {
                            Some(tdx) => tdx,
                            None => return Ok(None),
                        },
                    };
                    self.fetch_dcap(pcs, base, fmspc, *ca).await.map(Some)
                }
                Item::Vcek {
                    product,
                    chip_id,
                    tcb,
                } => {
                    let Some(kds) = &self.amd_kds else {
                        return Ok(None);
                    };
                    let url = join(
                        kds,
                        &format!(
                            "vcek/v1/{product}/{}?blSPL={}&teeSPL={}&snpSPL={}&ucodeSPL={}",
                            hex::encode(chip_id),
                            tcb.bl(),
                            tcb.tee(),
                            tcb.snp(),
                            tcb.ucode()
                        ),
                    )?;
                    Ok(Some(self.get(&url).await?.1))
                }
                Item::AmdCertChain { product } => {
                    let Some(kds) = &self.amd_kds else {
                        return Ok(None);
                    };
                    let url = join(kds, &format!("vcek/v1/{product}/cert_chain"))?;
                    Ok(Some(self.get(&url).await?.1))
                }
            }
        })
    }
}

/// `base` + `/` + `rest` (`rest` may carry a query).
fn join(base: &Url, rest: &str) -> Result<Url, FetchError> {
    let joined = format!("{}/{rest}", base.as_str().trim_end_matches('/'));
    Url::parse(&joined).map_err(|e| FetchError::Invalid {
        url: joined,
        reason: e.to_string(),
    })
}

/// The first of `names` present, percent-decoded (Intel encodes PEM chains in headers so).
fn header(headers: &HeaderMap, names: &[&str], url: &Url) -> Result<String, FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        url: url.to_string(),
        reason,
    };
    let value = names
        .iter()
        .find_map(|name| headers.get(*name))
        .ok_or_else(|| invalid(format!("no {} header", names.join(" / "))))?;
    let text = value
        .to_str()
        .map_err(|_| invalid(format!("{} is not ASCII", names[0])))?;
    percent_encoding::percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| invalid(format!("{} is not UTF-8 once decoded", names[0])))
}

/// `{"<field>": {...}, "signature": "<hex>"}` → the exact JSON text of `<field>` (the bytes Intel
/// signed) and the signature bytes.
fn signed_body(body: &[u8], field: &str, url: &Url) -> Result<(String, Vec<u8>), FetchError> {
    let invalid = |reason: String| FetchError::Invalid {
        url: url.to_string(),
        reason,
    };
    let map: HashMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let signed = map
        .get(field)
        .ok_or_else(|| invalid(format!("no {field}")))?
        .get()
        .to_owned();
    let signature: String = map
        .get("signature")
        .ok_or_else(|| invalid("no signature".into()))
        .and_then(|raw| {
            serde_json::from_str(raw.get()).map_err(|e| invalid(format!("signature: {e}")))
        })?;
    let signature = hex::decode(signature).map_err(|e| invalid(format!("signature: {e}")))?;
    Ok((signed, signature))
}

/// A CRL as DER, from DER, PEM or hex (a PCCS answers hex).
fn crl_der(body: Vec<u8>) -> Vec<u8> {
    if body.starts_with(b"-----BEGIN")
        && let Ok(pem) = pem::parse(&body)
    {
        return pem.into_contents();
    }
    let trimmed = body.trim_ascii();
    if !trimmed.is_empty()
        && trimmed.iter().all(u8::is_ascii_hexdigit)
        && let Ok(der) = hex::decode(trimmed)
    {
        return der;
    }
    body
}

/// `Retry-After` as a delay: delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rfc: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc).unwrap()
    }

    #[test]
    fn retry_after_as_seconds_and_as_date() {
        let now = at("2025-07-01T00:00:00Z");
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "120".parse().unwrap());
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(120))
        );
        headers.insert(
            "retry-after",
            "Tue, 01 Jul 2025 00:05:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            parse_retry_after(&headers, now),
            Some(Duration::from_secs(300))
        );
        headers.insert("retry-after", "soon".parse().unwrap());
        assert_eq!(parse_retry_after(&headers, now), None);
    }

    #[test]
    fn crl_bodies_in_every_encoding() {
        let der = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        assert_eq!(crl_der(der.clone()), der);
        assert_eq!(crl_der(hex::encode(&der).into_bytes()), der);
        let pem = pem::encode(&pem::Pem::new("X509 CRL", der.clone()));
        assert_eq!(crl_der(pem.into_bytes()), der);
    }
}

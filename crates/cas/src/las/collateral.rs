//! The collateral cache: Intel and AMD collateral, fetched from their services or an offline
//! bundle, kept on disk, and served while valid even when the services fail.
//!
//! # Items
//!
//! An [`Item`] is one unit the cache fetches, dates and stores:
//!
//! | item | body | valid until | fetched from |
//! | --- | --- | --- | --- |
//! | [`Item::Dcap`] (tee, FMSPC, PCK CA) | dcap-qvl `QuoteCollateralV3` JSON | the earliest nextUpdate / notAfter of its TCB info, QE identity, CRLs and issuer chains | Intel PCS (or a PCCS): `pckcrl`, `tcb`, `qe/identity`, and the root CA CRL |
//! | [`Item::Vcek`] (product, chip id, reported TCB) | VCEK certificate, DER | its notAfter | AMD KDS `vcek/v1/{product}/{chip_id}?blSPL=…` |
//! | [`Item::AmdCertChain`] (product) | ASK then ARK, PEM | the earlier notAfter | AMD KDS `vcek/v1/{product}/cert_chain` |
//!
//! Only what is needed to date an item and to check it is the item asked for is parsed here;
//! signatures are the verifier's job (the collateral is untrusted input to it).
//!
//! # Offline bundle
//!
//! A directory laid out by [`Item::bundle_path`]; any file may be missing:
//!
//! ```text
//! dcap/sgx/<FMSPC, upper-case hex>-<processor|platform>.json   QuoteCollateralV3 JSON
//! dcap/tdx/<FMSPC>-<processor|platform>.json                   QuoteCollateralV3 JSON
//! snp/<Milan|Genoa>/vcek/<chip_id, lower-case hex>-<TCB, 16 hex digits>.der
//! snp/<Milan|Genoa>/cert_chain.pem                             ASK then ARK
//! ```
//!
//! The bundle is consulted before the network: a bundle copy that is valid beyond the refresh
//! margin is taken without any request.
//!
//! # Cache and refresh
//!
//! Each item fetched is written to the cache directory (`<cache>/<bundle path>.cache`, a JSON
//! envelope holding the body, its SHA-256 and where it came from) by writing a temporary file in
//! the same directory and renaming it over the old one, so a reader sees the old or the new file,
//! never a mix. A cache file that fails its digest or no longer parses is ignored and refetched.
//!
//! A request for an item is served from the cache while the cached copy is valid. Once the copy
//! is within the *refresh margin* of its expiry, the request first tries the sources once; if
//! that fails (network error, HTTP 429 with or without `Retry-After`, HTTP 5xx, a copy that is no
//! newer) the valid cached copy is served anyway and the item *backs off*: no source is asked
//! again before an exponentially growing delay (and never before a `Retry-After`) has passed.
//! Only one fetch of an item runs at a time; other requests are served from the cache meanwhile.
//! With no valid copy, a request retries transient failures a few times with a short backoff, and
//! then fails with [`LasError::CollateralUnavailable`] naming the item and each source's failure.
//! The backoff schedules come from the `backon` crate.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder, Retryable as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::rfc3339;
use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Clock, LasError};

/// The largest collateral body accepted from a source or the cache (Intel's are ~20 KiB).
pub const MAX_ITEM_LEN: usize = 1024 * 1024;

/// The marker of a cache file's format.
const CACHE_FORMAT: &str = "cloister-las-cache/v1";

// ---------------------------------------------------------------------------------------------
// Items
// ---------------------------------------------------------------------------------------------

/// The Intel TEE a DCAP collateral item is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DcapTee {
    /// SGX: TCB info and QE identity from `/sgx/certification/v4`.
    Sgx,
    /// TDX: TCB info and QE identity from `/tdx/certification/v4`.
    Tdx,
}

impl DcapTee {
    /// `sgx` or `tdx`, as in PCS paths.
    pub fn as_str(self) -> &'static str {
        match self {
            DcapTee::Sgx => "sgx",
            DcapTee::Tdx => "tdx",
        }
    }

    /// Parse `sgx` or `tdx`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "sgx" => Some(DcapTee::Sgx),
            "tdx" => Some(DcapTee::Tdx),
            _ => None,
        }
    }
}

/// The Intel PCK CA that issued a platform's PCK certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PckCa {
    /// Intel SGX PCK Processor CA.
    Processor,
    /// Intel SGX PCK Platform CA.
    Platform,
}

impl PckCa {
    /// `processor` or `platform`, as in PCS queries.
    pub fn as_str(self) -> &'static str {
        match self {
            PckCa::Processor => "processor",
            PckCa::Platform => "platform",
        }
    }

    /// Parse `processor` or `platform`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "processor" => Some(PckCa::Processor),
            "platform" => Some(PckCa::Platform),
            _ => None,
        }
    }
}

/// An AMD EPYC generation, as AMD KDS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AmdProduct {
    /// EPYC 7003 (Zen 3).
    Milan,
    /// EPYC 9004 (Zen 4), also Bergamo and Siena.
    Genoa,
}

impl AmdProduct {
    /// `Milan` or `Genoa`, as in KDS paths.
    pub fn as_str(self) -> &'static str {
        match self {
            AmdProduct::Milan => "Milan",
            AmdProduct::Genoa => "Genoa",
        }
    }

    /// Parse a product name, ignoring case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "milan" => Some(AmdProduct::Milan),
            "genoa" => Some(AmdProduct::Genoa),
            _ => None,
        }
    }
}

impl fmt::Display for AmdProduct {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An SEV-SNP TCB version as the report and the VCEK carry it (Milan and Genoa layout: boot
/// loader in byte 0, TEE in byte 1, SNP in byte 6, microcode in byte 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SnpTcb(pub u64);

impl SnpTcb {
    fn byte(self, i: usize) -> u8 {
        self.0.to_le_bytes()[i % 8]
    }
    /// Boot loader SVN.
    pub fn bl(self) -> u8 {
        self.byte(0)
    }
    /// PSP OS (TEE) SVN.
    pub fn tee(self) -> u8 {
        self.byte(1)
    }
    /// SNP firmware SVN.
    pub fn snp(self) -> u8 {
        self.byte(6)
    }
    /// Microcode SVN.
    pub fn ucode(self) -> u8 {
        self.byte(7)
    }
}

impl fmt::Display for SnpTcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bl(),
            self.tee(),
            self.snp(),
            self.ucode()
        )
    }
}

/// One collateral item the cache fetches, dates and stores.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Item {
    /// Intel DCAP collateral for one platform: TCB info, QE identity, CRLs and issuer chains.
    Dcap {
        /// SGX or TDX.
        tee: DcapTee,
        /// The platform's FMSPC, from its PCK certificate.
        fmspc: [u8; 6],
        /// The CA that issued the PCK certificate (selects the PCK CRL).
        ca: PckCa,
    },
    /// The VCEK certificate of one AMD chip at one TCB version.
    Vcek {
        /// The EPYC generation.
        product: AmdProduct,
        /// The chip id (hwID) from the report.
        chip_id: [u8; 64],
        /// The report's `reported_tcb`.
        tcb: SnpTcb,
    },
    /// AMD's ASK and ARK certificates for one product.
    AmdCertChain {
        /// The EPYC generation.
        product: AmdProduct,
    },
}

impl Item {
    /// The item's path inside an offline bundle, and (with `.cache` appended) inside the cache.
    pub fn bundle_path(&self) -> PathBuf {
        match self {
            Item::Dcap { tee, fmspc, ca } => PathBuf::from(format!(
                "dcap/{}/{}-{}.json",
                tee.as_str(),
                hex::encode_upper(fmspc),
                ca.as_str()
            )),
            Item::Vcek {
                product,
                chip_id,
                tcb,
            } => PathBuf::from(format!(
                "snp/{product}/vcek/{}-{:016x}.der",
                hex::encode(chip_id),
                tcb.0
            )),
            Item::AmdCertChain { product } => {
                PathBuf::from(format!("snp/{product}/cert_chain.pem"))
            }
        }
    }
}

impl fmt::Display for Item {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Item::Dcap { tee, fmspc, ca } => write!(
                f,
                "DCAP collateral ({}, FMSPC {}, {} CA)",
                tee.as_str(),
                hex::encode_upper(fmspc),
                ca.as_str()
            ),
            Item::Vcek {
                product,
                chip_id,
                tcb,
            } => {
                let chip = hex::encode(&chip_id[..8]);
                write!(f, "VCEK ({product}, chip {chip}…, TCB {tcb})")
            }
            Item::AmdCertChain { product } => write!(f, "AMD {product} ASK/ARK chain"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Appraisal: is a body the item asked for, and when is it valid?
// ---------------------------------------------------------------------------------------------

/// The validity window of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Valid from.
    pub not_before: SystemTime,
    /// Valid until (exclusive).
    pub not_after: SystemTime,
}

/// Check that `body` is a well-formed copy of `item` and date it. Signatures are not checked.
pub fn appraise(item: &Item, body: &[u8]) -> Result<Window, String> {
    match item {
        Item::Dcap { tee, fmspc, .. } => appraise_dcap(*tee, fmspc, body),
        Item::Vcek { .. } => {
            let cert = parse_cert(body).map_err(|e| format!("not a VCEK certificate: {e}"))?;
            Ok(cert_window(&cert))
        }
        Item::AmdCertChain { .. } => {
            let certs = x509_cert::Certificate::load_pem_chain(body)
                .map_err(|e| format!("not a PEM ASK/ARK chain: {e}"))?;
            if certs.len() != 2 {
                return Err(format!(
                    "holds {} certificates, not the ASK and the ARK",
                    certs.len()
                ));
            }
            let windows: Vec<Window> = certs.iter().map(cert_window).collect();
            Ok(intersect(&windows))
        }
    }
}

fn appraise_dcap(tee: DcapTee, fmspc: &[u8; 6], body: &[u8]) -> Result<Window, String> {
    // Shape and dates, the way the verifier will read it.
    let collateral =
        cloister_attest::dcap::Collateral::from_json(body).map_err(|e| e.to_string())?;
    // And that it is the platform asked for.
    #[derive(Deserialize)]
    struct Outer {
        tcb_info: String,
    }
    #[derive(Deserialize)]
    struct TcbHead {
        fmspc: String,
        id: Option<String>,
    }
    let outer: Outer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let head: TcbHead =
        serde_json::from_str(&outer.tcb_info).map_err(|e| format!("TCB info: {e}"))?;
    if !head.fmspc.eq_ignore_ascii_case(&hex::encode(fmspc)) {
        return Err(format!(
            "its TCB info is for FMSPC {}, not {}",
            head.fmspc,
            hex::encode_upper(fmspc)
        ));
    }
    if let Some(id) = head.id
        && !id.eq_ignore_ascii_case(tee.as_str())
    {
        return Err(format!(
            "its TCB info is for {id}, not {}",
            tee.as_str().to_uppercase()
        ));
    }
    Ok(Window {
        not_before: collateral.valid_from(),
        not_after: collateral.valid_until(),
    })
}

fn parse_cert(body: &[u8]) -> Result<x509_cert::Certificate, String> {
    use x509_cert::der::{Decode as _, DecodePem as _};
    if body.starts_with(b"-----BEGIN") {
        x509_cert::Certificate::from_pem(body).map_err(|e| e.to_string())
    } else {
        x509_cert::Certificate::from_der(body).map_err(|e| e.to_string())
    }
}

fn cert_window(cert: &x509_cert::Certificate) -> Window {
    let validity = &cert.tbs_certificate.validity;
    Window {
        not_before: validity.not_before.to_system_time(),
        not_after: validity.not_after.to_system_time(),
    }
}

fn intersect(windows: &[Window]) -> Window {
    Window {
        not_before: windows
            .iter()
            .map(|w| w.not_before)
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH),
        not_after: windows
            .iter()
            .map(|w| w.not_after)
            .min()
            .unwrap_or(SystemTime::UNIX_EPOCH),
    }
}

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

fn read_limited(path: &Path, max: usize) -> std::io::Result<Vec<u8>> {
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
        let client = super::http_client(timeout)?;
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

/// Read a response body of at most `max` bytes.
pub(crate) async fn read_body(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, String> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e))? {
        if body.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An error and its sources, `: `-separated (reqwest's own message hides the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let line = s.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = s.source();
    }
    text
}

// ---------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------

/// How and when the cache refreshes items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh an item once its cached copy expires within this margin.
    pub margin: Duration,
    /// The first delay after a failed refresh, and the least time between two fetches of one item.
    pub backoff_min: Duration,
    /// The longest delay between failed refreshes (before jitter, which adds up to as much again).
    pub backoff_max: Duration,
    /// How many times a request with no valid cached copy retries transient failures.
    pub retries: usize,
    /// The first delay of those retries (doubling each time).
    pub retry_delay: Duration,
    /// A `Retry-After` longer than this ends those retries at once.
    pub retry_wait_max: Duration,
    /// The longest a request waits for a refresh while a valid copy is cached; past it the
    /// attempt counts as failed and the cached copy is served.
    pub refresh_wait: Duration,
    /// The longest a request waits for a fetch (retries included) when no valid copy is cached.
    pub fetch_wait: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            margin: Duration::from_secs(24 * 3600),
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(3600),
            retries: 2,
            retry_delay: Duration::from_millis(250),
            retry_wait_max: Duration::from_secs(5),
            refresh_wait: Duration::from_secs(5),
            fetch_wait: Duration::from_secs(15),
        }
    }
}

/// A valid, dated copy of an item.
#[derive(Clone, PartialEq, Eq)]
pub struct Cached {
    /// The body.
    pub body: Arc<[u8]>,
    /// Its validity window.
    pub window: Window,
    /// Where it came from: a source name, or `cache <file>`.
    pub source: String,
    /// When it was fetched.
    pub fetched_at: SystemTime,
}

impl fmt::Debug for Cached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cached")
            .field("len", &self.body.len())
            .field("valid_from", &rfc3339(self.window.not_before))
            .field("valid_until", &rfc3339(self.window.not_after))
            .field("source", &self.source)
            .finish()
    }
}

impl Cached {
    /// Whether the copy is valid at `now`.
    pub fn valid_at(&self, now: SystemTime) -> bool {
        self.window.not_before <= now && now < self.window.not_after
    }
}

/// The on-disk form of a cached item.
#[derive(Serialize, Deserialize)]
struct Envelope {
    format: String,
    item: String,
    source: String,
    fetched_at: u64,
    sha256: String,
    body: String,
}

#[derive(Default)]
struct Slot {
    /// Whether the disk cache was read for this item.
    loaded: bool,
    cached: Option<Cached>,
    /// No source is asked before this time.
    next_attempt: Option<SystemTime>,
    /// The delays after consecutive failures.
    backoff: Option<ExponentialBackoff>,
    /// Why the last attempt failed.
    last_error: Option<String>,
}

/// Why fetching from every source failed.
#[derive(Debug)]
struct Failure {
    reasons: String,
    transient: bool,
    retry_after: Option<Duration>,
}

/// The collateral cache. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct CollateralCache {
    sources: Vec<Arc<dyn Fetcher>>,
    dir: Option<PathBuf>,
    policy: RefreshPolicy,
    clock: Arc<dyn Clock>,
    slots: std::sync::Mutex<HashMap<Item, Slot>>,
    flights: std::sync::Mutex<HashMap<Item, Arc<tokio::sync::Mutex<()>>>>,
}

impl fmt::Debug for CollateralCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollateralCache")
            .field(
                "sources",
                &self.sources.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("dir", &self.dir)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl CollateralCache {
    /// A cache asking `sources` in order, keeping copies in `dir` (memory only when `None`; the
    /// directory must exist), refreshing by `policy`, with time from `clock`.
    pub fn new(
        sources: Vec<Arc<dyn Fetcher>>,
        dir: Option<PathBuf>,
        policy: RefreshPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            sources,
            dir,
            policy,
            clock,
            slots: std::sync::Mutex::new(HashMap::new()),
            flights: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// The cache file of `item`, when the cache has a directory.
    pub fn cache_path(&self, item: &Item) -> Option<PathBuf> {
        let mut path = self.dir.as_ref()?.join(item.bundle_path());
        path.as_mut_os_string().push(".cache");
        Some(path)
    }

    /// A valid copy of `item`: the cached one, refreshed when it nears expiry and the sources
    /// answer, or fetched when none is cached. See the module documentation for the rules.
    #[tracing::instrument(skip_all, fields(item = %item))]
    pub async fn get(&self, item: &Item) -> Result<Cached, LasError> {
        let now = self.clock.now();
        let state = self.peek(item, now);
        if let Some(valid) = &state.valid
            && !state.due
        {
            return Ok(valid.clone());
        }
        if state.valid.is_none() && !state.due {
            return Err(self.unavailable(item, &state, now));
        }

        // One fetch per item at a time. With a valid copy, don't wait for another request's
        // fetch: serve the copy.
        let flight = self.flight(item);
        let _guard = match &state.valid {
            Some(valid) => match flight.try_lock_owned() {
                Ok(guard) => guard,
                Err(_) => return Ok(valid.clone()),
            },
            None => flight.lock_owned().await,
        };
        let now = self.clock.now();
        let state = self.peek(item, now);
        match &state.valid {
            Some(valid) if !state.due => return Ok(valid.clone()),
            None if !state.due => return Err(self.unavailable(item, &state, now)),
            _ => {}
        }

        // Bounded, so that a hanging service delays a request by at most the wait, and the
        // attempt still counts as a failure for the backoff.
        let (wait, outcome) = match &state.valid {
            Some(valid) => (
                self.policy.refresh_wait,
                tokio::time::timeout(self.policy.refresh_wait, self.fetch_once(item, Some(valid)))
                    .await,
            ),
            None => (
                self.policy.fetch_wait,
                tokio::time::timeout(self.policy.fetch_wait, self.fetch_retrying(item)).await,
            ),
        };
        let outcome = outcome.unwrap_or_else(|_| {
            Err(Failure {
                reasons: format!("no source answered within {} s", wait.as_secs_f32()),
                transient: true,
                retry_after: None,
            })
        });
        let now = self.clock.now();
        match outcome {
            Ok(fresh) => {
                self.persist(item, &fresh);
                self.update(item, |slot| {
                    slot.cached = Some(fresh.clone());
                    slot.backoff = None;
                    slot.last_error = None;
                    slot.next_attempt = Some(now + self.policy.backoff_min);
                });
                tracing::info!(
                    source = %fresh.source,
                    valid_until = %rfc3339(fresh.window.not_after),
                    "collateral fetched"
                );
                Ok(fresh)
            }
            Err(failure) => {
                let delay = self.record_failure(item, &failure, now);
                match state.valid {
                    Some(valid) => {
                        tracing::warn!(
                            reasons = %failure.reasons,
                            valid_until = %rfc3339(valid.window.not_after),
                            retry_in_s = delay.as_secs(),
                            "collateral refresh failed; serving the cached copy"
                        );
                        Ok(valid)
                    }
                    None => Err(LasError::CollateralUnavailable {
                        item: item.to_string(),
                        reason: failure.reasons,
                        cached_until: state.expired.map(|c| c.window.not_after),
                    }),
                }
            }
        }
    }

    /// The copy of `item` held in memory (or on disk), valid or not, without fetching.
    pub fn cached(&self, item: &Item) -> Option<Cached> {
        let now = self.clock.now();
        let state = self.peek(item, now);
        state.valid.or(state.expired)
    }

    fn unavailable(&self, item: &Item, state: &Peek, now: SystemTime) -> LasError {
        let retry = state
            .next_attempt
            .map(|t| rfc3339(t.max(now)))
            .unwrap_or_default();
        LasError::CollateralUnavailable {
            item: item.to_string(),
            reason: format!(
                "not retried before {retry} after the last failure: {}",
                state.last_error.as_deref().unwrap_or("unknown")
            ),
            cached_until: state.expired.as_ref().map(|c| c.window.not_after),
        }
    }

    fn flight(&self, item: &Item) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock().unwrap_or_else(|p| p.into_inner());
        flights.entry(item.clone()).or_default().clone()
    }

    fn update(&self, item: &Item, f: impl FnOnce(&mut Slot)) {
        // A panic while holding the lock leaves a slot at worst stale; recover the guard.
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        f(slots.entry(item.clone()).or_default());
    }

    /// What is known about `item` at `now`, reading the disk cache the first time.
    fn peek(&self, item: &Item, now: SystemTime) -> Peek {
        let loaded = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(item).is_some_and(|s| s.loaded)
        };
        if !loaded {
            let from_disk = self.load(item);
            self.update(item, |slot| {
                if !slot.loaded {
                    slot.loaded = true;
                    if slot.cached.is_none() {
                        slot.cached = from_disk;
                    }
                }
            });
        }
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let slot = slots.get(item);
        let cached = slot.and_then(|s| s.cached.clone());
        let next_attempt = slot.and_then(|s| s.next_attempt);
        let attempt_allowed = next_attempt.is_none_or(|t| now >= t);
        let (valid, expired) = match cached {
            Some(c) if c.valid_at(now) => (Some(c), None),
            Some(c) => (None, Some(c)),
            None => (None, None),
        };
        let near_expiry = valid
            .as_ref()
            .is_none_or(|c| now + self.policy.margin >= c.window.not_after);
        Peek {
            due: near_expiry && attempt_allowed,
            valid,
            expired,
            next_attempt,
            last_error: slot.and_then(|s| s.last_error.clone()),
        }
    }

    /// Ask each source once, in order. A copy valid beyond the margin is taken at once;
    /// otherwise the longest-valid copy found, if it is newer than `current`.
    async fn fetch_once(&self, item: &Item, current: Option<&Cached>) -> Result<Cached, Failure> {
        let mut best: Option<Cached> = None;
        let mut reasons = Vec::new();
        let mut transient = false;
        let mut retry_after: Option<Duration> = None;
        for source in &self.sources {
            let name = source.name();
            let body = match source.fetch(item).await {
                Ok(Some(body)) => body,
                Ok(None) => {
                    reasons.push(format!("{name}: not held there"));
                    continue;
                }
                Err(e) => {
                    transient |= e.is_transient();
                    retry_after = retry_after.max(e.retry_after());
                    reasons.push(e.to_string());
                    continue;
                }
            };
            let window = match appraise(item, &body) {
                Ok(window) => window,
                Err(reason) => {
                    reasons.push(format!("{name}: {reason}"));
                    continue;
                }
            };
            let now = self.clock.now();
            let copy = Cached {
                body: body.into(),
                window,
                source: name.clone(),
                fetched_at: now,
            };
            if !copy.valid_at(now) {
                reasons.push(format!(
                    "{name}: its copy is valid only from {} to {}",
                    rfc3339(window.not_before),
                    rfc3339(window.not_after)
                ));
                continue;
            }
            if let Some(current) = current
                && copy.window.not_after <= current.window.not_after
            {
                reasons.push(format!(
                    "{name}: its copy (valid until {}) is not newer than the cached one",
                    rfc3339(window.not_after)
                ));
                continue;
            }
            if now + self.policy.margin < copy.window.not_after {
                return Ok(copy);
            }
            reasons.push(format!(
                "{name}: its copy expires at {}, within the refresh margin",
                rfc3339(window.not_after)
            ));
            if best
                .as_ref()
                .is_none_or(|b| b.window.not_after < copy.window.not_after)
            {
                best = Some(copy);
            }
        }
        if let Some(best) = best {
            return Ok(best);
        }
        if reasons.is_empty() {
            reasons.push("no collateral source is configured".into());
        }
        Err(Failure {
            reasons: reasons.join("; "),
            transient,
            retry_after,
        })
    }

    /// [`Self::fetch_once`], retrying transient failures with a short exponential backoff.
    async fn fetch_retrying(&self, item: &Item) -> Result<Cached, Failure> {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.policy.retry_delay)
            .with_max_delay(self.policy.retry_wait_max)
            .with_max_times(self.policy.retries)
            .with_jitter();
        let wait_max = self.policy.retry_wait_max;
        (|| self.fetch_once(item, None))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|failure: &Failure| failure.transient)
            .adjust(move |failure: &Failure, delay| match failure.retry_after {
                // The service asked for longer than a request should wait: give up now.
                Some(after) if after > wait_max => None,
                Some(after) => delay.map(|d| d.max(after)),
                None => delay,
            })
            .notify(|failure: &Failure, delay| {
                tracing::debug!(reasons = %failure.reasons, retry_in_ms = delay.as_millis() as u64, "collateral fetch failed; retrying");
            })
            .await
    }

    /// Back the item off after a failure; returns the delay.
    fn record_failure(&self, item: &Item, failure: &Failure, now: SystemTime) -> Duration {
        let policy = &self.policy;
        let mut delay = policy.backoff_min;
        self.update(item, |slot| {
            let backoff = slot.backoff.get_or_insert_with(|| {
                ExponentialBuilder::default()
                    .with_min_delay(policy.backoff_min)
                    .with_max_delay(policy.backoff_max)
                    .with_jitter()
                    .without_max_times()
                    .build()
            });
            delay = backoff.next().unwrap_or(policy.backoff_max);
            if let Some(after) = failure.retry_after {
                // Honour the service's request, up to a day.
                delay = delay.max(after.min(Duration::from_secs(24 * 3600)));
            }
            slot.next_attempt = Some(now + delay);
            slot.last_error = Some(failure.reasons.clone());
        });
        delay
    }

    /// Read `item`'s cache file. A missing file is `None`; a corrupted one is logged and `None`.
    fn load(&self, item: &Item) -> Option<Cached> {
        let path = self.cache_path(item)?;
        let bytes = match read_limited(&path, 2 * MAX_ITEM_LEN) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot read a collateral cache file; refetching");
                return None;
            }
        };
        match decode_envelope(item, &bytes) {
            Ok(cached) => Some(Cached {
                source: format!("cache {} (from {})", path.display(), cached.source),
                ..cached
            }),
            Err(reason) => {
                tracing::warn!(file = %path.display(), %reason, "corrupted collateral cache file ignored; refetching");
                None
            }
        }
    }

    /// Write `copy` to the cache directory, atomically. Failures are logged: the copy is still
    /// served from memory.
    fn persist(&self, item: &Item, copy: &Cached) {
        let Some(path) = self.cache_path(item) else {
            return;
        };
        if let Err(e) = write_envelope(&path, item, copy) {
            tracing::warn!(file = %path.display(), error = %e, "cannot write the collateral cache");
        }
    }
}

/// What [`CollateralCache::peek`] found.
struct Peek {
    valid: Option<Cached>,
    expired: Option<Cached>,
    /// Whether a fetch should be attempted now.
    due: bool,
    next_attempt: Option<SystemTime>,
    last_error: Option<String>,
}

fn decode_envelope(item: &Item, bytes: &[u8]) -> Result<Cached, String> {
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if envelope.format != CACHE_FORMAT {
        return Err(format!("unknown format {:?}", envelope.format));
    }
    if envelope.item != item.to_string() {
        return Err(format!("holds {:?}", envelope.item));
    }
    let body = B64.decode(&envelope.body).map_err(|e| e.to_string())?;
    if hex::encode(crate::sha256(&body)) != envelope.sha256 {
        return Err("the body does not match its SHA-256".into());
    }
    let window = appraise(item, &body)?;
    Ok(Cached {
        body: body.into(),
        window,
        source: envelope.source,
        fetched_at: SystemTime::UNIX_EPOCH + Duration::from_secs(envelope.fetched_at),
    })
}

fn write_envelope(path: &Path, item: &Item, copy: &Cached) -> Result<(), LasError> {
    let envelope = Envelope {
        format: CACHE_FORMAT.into(),
        item: item.to_string(),
        source: copy.source.clone(),
        fetched_at: copy
            .fetched_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        sha256: hex::encode(crate::sha256(&copy.body)),
        body: B64.encode(&copy.body),
    };
    let bytes = serde_json::to_vec_pretty(&envelope)
        .map_err(|e| LasError::Internal(format!("encoding a cache envelope: {e}")))?;
    let dir = path
        .parent()
        .ok_or_else(|| LasError::Internal(format!("{} has no parent", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| LasError::io(dir, e))?;
    write_atomically(path, &bytes)
}

/// Write `bytes` to `path` so that readers see the old file or the new one, never a mix: a
/// temporary file in the same directory, flushed to disk, renamed over `path`, and the directory
/// flushed so the rename survives a crash.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LasError> {
    let dir = path
        .parent()
        .ok_or_else(|| LasError::Internal(format!("{} has no parent", path.display())))?;
    let mut temp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(|e| LasError::io(dir, e))?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|e| LasError::io(temp.path(), e))?;
    temp.persist(path)
        .map_err(|e| LasError::io(path, e.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| LasError::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SGX_COLLATERAL: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sgx-dcap/sgx_quote_collateral.json"
    ));
    const GO_VCEK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/vcek.der"
    ));
    const ASK_ARK: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/ask_ark_milan.pem"
    ));

    fn sgx_item() -> Item {
        Item::Dcap {
            tee: DcapTee::Sgx,
            fmspc: [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            ca: PckCa::Processor,
        }
    }

    fn at(rfc: &str) -> SystemTime {
        humantime::parse_rfc3339(rfc).unwrap()
    }

    #[derive(Debug)]
    struct ManualClock(Mutex<SystemTime>);
    impl Clock for ManualClock {
        fn now(&self) -> SystemTime {
            *self.0.lock().unwrap()
        }
    }

    /// A source answering from a script: each call pops the next answer (the last repeats).
    #[derive(Debug)]
    struct Scripted {
        answers: Mutex<Vec<Result<Option<Vec<u8>>, FetchError>>>,
        calls: AtomicUsize,
    }
    impl Scripted {
        fn new(answers: Vec<Result<Option<Vec<u8>>, FetchError>>) -> Arc<Self> {
            Arc::new(Self {
                answers: Mutex::new(answers),
                calls: AtomicUsize::new(0),
            })
        }
        fn calls(&self) -> usize {
            self.calls.load(Ordering::SeqCst)
        }
    }
    impl Fetcher for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        fn fetch<'a>(&'a self, _: &'a Item) -> BoxFuture<'a, Result<Option<Vec<u8>>, FetchError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let mut answers = self.answers.lock().unwrap();
            let answer = if answers.len() > 1 {
                answers.remove(0)
            } else {
                answers[0].clone()
            };
            Box::pin(async move { answer })
        }
    }

    fn rate_limited(secs: u64) -> Result<Option<Vec<u8>>, FetchError> {
        Err(FetchError::RateLimited {
            url: "https://pcs.test/tcb".into(),
            retry_after: Some(Duration::from_secs(secs)),
        })
    }

    fn policy() -> RefreshPolicy {
        RefreshPolicy {
            margin: Duration::from_secs(3 * 24 * 3600),
            backoff_min: Duration::from_secs(60),
            backoff_max: Duration::from_secs(600),
            retries: 1,
            retry_delay: Duration::from_millis(1),
            retry_wait_max: Duration::from_millis(10),
            refresh_wait: Duration::from_millis(200),
            fetch_wait: Duration::from_millis(500),
        }
    }

    #[test]
    fn appraise_dates_the_recorded_dcap_collateral() {
        let window = appraise(&sgx_item(), SGX_COLLATERAL).unwrap();
        assert_eq!(rfc3339(window.not_before), "2025-06-19T10:56:11Z");
        assert_eq!(rfc3339(window.not_after), "2025-07-19T10:01:18Z");
    }

    #[test]
    fn appraise_refuses_collateral_of_another_platform() {
        let other = Item::Dcap {
            tee: DcapTee::Sgx,
            fmspc: [0xB0, 0xC0, 0x6F, 0, 0, 0],
            ca: PckCa::Processor,
        };
        let err = appraise(&other, SGX_COLLATERAL).unwrap_err();
        assert!(
            err.contains("FMSPC 00A067110000, not B0C06F000000"),
            "{err}"
        );
        let tdx = Item::Dcap {
            tee: DcapTee::Tdx,
            fmspc: [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            ca: PckCa::Processor,
        };
        let err = appraise(&tdx, SGX_COLLATERAL).unwrap_err();
        assert!(err.contains("for SGX, not TDX"), "{err}");
    }

    #[test]
    fn appraise_dates_vcek_and_amd_chain() {
        let vcek = Item::Vcek {
            product: AmdProduct::Milan,
            chip_id: [0; 64],
            tcb: SnpTcb(0x4405000000000002),
        };
        let window = appraise(&vcek, GO_VCEK).unwrap();
        assert!(rfc3339(window.not_after).starts_with("2029-09-24"));
        let chain = Item::AmdCertChain {
            product: AmdProduct::Milan,
        };
        let window = appraise(&chain, ASK_ARK).unwrap();
        assert!(window.not_after > at("2045-01-01T00:00:00Z"));
        assert!(appraise(&chain, GO_VCEK).is_err());
        assert!(appraise(&vcek, b"garbage").is_err());
    }

    #[test]
    fn snp_tcb_components() {
        let tcb = SnpTcb(0x4405000000000002);
        assert_eq!(tcb.to_string(), "bl=2 tee=0 snp=5 ucode=68");
    }

    #[test]
    fn item_paths_and_names() {
        assert_eq!(
            sgx_item().bundle_path(),
            PathBuf::from("dcap/sgx/00A067110000-processor.json")
        );
        assert_eq!(
            sgx_item().to_string(),
            "DCAP collateral (sgx, FMSPC 00A067110000, processor CA)"
        );
        let vcek = Item::Vcek {
            product: AmdProduct::Genoa,
            chip_id: [0xab; 64],
            tcb: SnpTcb(0x0102),
        };
        assert_eq!(
            vcek.bundle_path(),
            PathBuf::from(format!(
                "snp/Genoa/vcek/{}-0000000000000102.der",
                "ab".repeat(64)
            ))
        );
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

    #[tokio::test]
    async fn serves_the_cached_copy_while_refreshes_fail_and_backs_off() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-01T00:00:00Z"))));
        let source = Scripted::new(vec![Ok(Some(SGX_COLLATERAL.to_vec())), rate_limited(300)]);
        let cache = CollateralCache::new(vec![source.clone()], None, policy(), clock.clone());

        // First fetch: within the 3-day margin of the 2025-07-19 expiry? No: 18 days left.
        let first = cache.get(&sgx_item()).await.unwrap();
        assert_eq!(source.calls(), 1);
        assert_eq!(&*first.body, SGX_COLLATERAL);

        // Still fresh: no request.
        cache.get(&sgx_item()).await.unwrap();
        assert_eq!(source.calls(), 1);

        // Near expiry: one attempt, rate-limited; the cached copy is served.
        *clock.0.lock().unwrap() = at("2025-07-17T00:00:00Z");
        let served = cache.get(&sgx_item()).await.unwrap();
        assert_eq!(served, first);
        assert_eq!(source.calls(), 2);

        // Backing off (Retry-After 300 s): no request.
        cache.get(&sgx_item()).await.unwrap();
        assert_eq!(source.calls(), 2);

        // After the backoff: one more attempt, still the cached copy.
        *clock.0.lock().unwrap() = at("2025-07-17T00:06:00Z");
        assert_eq!(cache.get(&sgx_item()).await.unwrap(), first);
        assert_eq!(source.calls(), 3);

        // Expired: a clear error naming the item, the failure and the expiry.
        *clock.0.lock().unwrap() = at("2025-07-20T00:00:00Z");
        let err = cache.get(&sgx_item()).await.unwrap_err();
        let LasError::CollateralUnavailable {
            item,
            reason,
            cached_until,
        } = &err
        else {
            panic!("{err:?}")
        };
        assert_eq!(item, &sgx_item().to_string());
        assert!(reason.contains("429"), "{reason}");
        assert_eq!(rfc3339(cached_until.unwrap()), "2025-07-19T10:01:18Z");
    }

    /// A source that never answers.
    #[derive(Debug)]
    struct Hanging(AtomicUsize);
    impl Fetcher for Hanging {
        fn name(&self) -> String {
            "hanging".into()
        }
        fn fetch<'a>(&'a self, _: &'a Item) -> BoxFuture<'a, Result<Option<Vec<u8>>, FetchError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_hanging_source_delays_requests_boundedly_and_backs_off() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-17T00:00:00Z"))));
        let dir = tempfile::tempdir().unwrap();
        let seed = Scripted::new(vec![Ok(Some(SGX_COLLATERAL.to_vec()))]);
        let seeded = CollateralCache::new(
            vec![seed],
            Some(dir.path().to_path_buf()),
            policy(),
            clock.clone(),
        );
        seeded.get(&sgx_item()).await.unwrap();

        // Near expiry, the source hangs: the cached copy is served after `refresh_wait`.
        let hanging = Arc::new(Hanging(AtomicUsize::new(0)));
        let cache = CollateralCache::new(
            vec![hanging.clone()],
            Some(dir.path().to_path_buf()),
            policy(),
            clock.clone(),
        );
        let started = std::time::Instant::now();
        assert!(cache.get(&sgx_item()).await.is_ok());
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(hanging.0.load(Ordering::SeqCst), 1);
        // And the attempt counted as a failure: no new attempt while backing off.
        cache.get(&sgx_item()).await.unwrap();
        assert_eq!(hanging.0.load(Ordering::SeqCst), 1);

        // Without a copy, the request fails after `fetch_wait`, saying so.
        *clock.0.lock().unwrap() = at("2025-07-20T00:00:00Z");
        let err = cache.get(&sgx_item()).await.unwrap_err();
        assert!(
            err.to_string().contains("no source answered within"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn without_a_copy_transient_failures_are_retried() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-01T00:00:00Z"))));
        let source = Scripted::new(vec![
            Err(FetchError::Status {
                url: "https://pcs.test/tcb".into(),
                status: 503,
                retry_after: None,
            }),
            Ok(Some(SGX_COLLATERAL.to_vec())),
        ]);
        let cache = CollateralCache::new(vec![source.clone()], None, policy(), clock);
        cache.get(&sgx_item()).await.unwrap();
        assert_eq!(source.calls(), 2);
    }

    #[tokio::test]
    async fn without_a_copy_a_long_retry_after_fails_at_once_and_backs_off() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-01T00:00:00Z"))));
        let source = Scripted::new(vec![rate_limited(3600)]);
        let cache = CollateralCache::new(vec![source.clone()], None, policy(), clock.clone());
        let err = cache.get(&sgx_item()).await.unwrap_err();
        assert!(matches!(err, LasError::CollateralUnavailable { .. }));
        assert_eq!(
            source.calls(),
            1,
            "no retry before a Retry-After of an hour"
        );
        // Within the hour, no request at all, and the error says why.
        let err = cache.get(&sgx_item()).await.unwrap_err();
        assert!(err.to_string().contains("not retried before"), "{err}");
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test]
    async fn a_non_transient_failure_is_not_retried() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-01T00:00:00Z"))));
        let source = Scripted::new(vec![Err(FetchError::Status {
            url: "https://pcs.test/tcb".into(),
            status: 404,
            retry_after: None,
        })]);
        let cache = CollateralCache::new(vec![source.clone()], None, policy(), clock);
        let err = cache.get(&sgx_item()).await.unwrap_err();
        assert!(err.to_string().contains("HTTP 404"), "{err}");
        assert_eq!(source.calls(), 1);
    }

    #[tokio::test]
    async fn an_expired_or_wrong_copy_from_a_source_is_refused() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-08-01T00:00:00Z"))));
        let source = Scripted::new(vec![Ok(Some(SGX_COLLATERAL.to_vec()))]);
        let cache = CollateralCache::new(vec![source.clone()], None, policy(), clock.clone());
        let err = cache.get(&sgx_item()).await.unwrap_err();
        assert!(err.to_string().contains("valid only from"), "{err}");

        *clock.0.lock().unwrap() = at("2025-07-01T00:00:00Z");
        let source = Scripted::new(vec![Ok(Some(b"{}".to_vec()))]);
        let cache = CollateralCache::new(vec![source], None, policy(), clock);
        let err = cache.get(&sgx_item()).await.unwrap_err();
        assert!(err.to_string().contains("malformed"), "{err}");
    }

    #[tokio::test]
    async fn a_later_source_is_asked_when_an_earlier_copy_nears_expiry() {
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-17T00:00:00Z"))));
        let bundle = Scripted::new(vec![Ok(Some(SGX_COLLATERAL.to_vec()))]);
        let network = Scripted::new(vec![rate_limited(1)]);
        let cache =
            CollateralCache::new(vec![bundle.clone(), network.clone()], None, policy(), clock);
        // The bundle's copy is within the margin, the network fails: the bundle copy is served.
        let copy = cache.get(&sgx_item()).await.unwrap();
        assert_eq!(copy.source, "scripted");
        assert_eq!((bundle.calls(), network.calls()), (1, 1));
    }

    #[tokio::test]
    async fn writes_are_atomic_and_a_corrupted_file_is_refetched() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock(Mutex::new(at("2025-07-01T00:00:00Z"))));
        let source = Scripted::new(vec![Ok(Some(SGX_COLLATERAL.to_vec()))]);
        let cache = CollateralCache::new(
            vec![source.clone()],
            Some(dir.path().to_path_buf()),
            policy(),
            clock.clone(),
        );
        cache.get(&sgx_item()).await.unwrap();
        let path = cache.cache_path(&sgx_item()).unwrap();
        let written = std::fs::read(&path).unwrap();
        // Only the file itself: no temporary file left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");

        // A restarted cache serves from the file without asking.
        let restarted = CollateralCache::new(
            vec![source.clone()],
            Some(dir.path().to_path_buf()),
            policy(),
            clock.clone(),
        );
        let copy = restarted.get(&sgx_item()).await.unwrap();
        assert!(copy.source.starts_with("cache "), "{}", copy.source);
        assert_eq!(source.calls(), 1);

        // Corrupt one byte of the body: detected by its digest, refetched, rewritten.
        let mut corrupted = written.clone();
        let at_body = corrupted.len() - 200;
        corrupted[at_body] = if corrupted[at_body] == b'A' {
            b'B'
        } else {
            b'A'
        };
        std::fs::write(&path, &corrupted).unwrap();
        let restarted = CollateralCache::new(
            vec![source.clone()],
            Some(dir.path().to_path_buf()),
            policy(),
            clock,
        );
        let copy = restarted.get(&sgx_item()).await.unwrap();
        assert_eq!(copy.source, "scripted");
        assert_eq!(source.calls(), 2);
        assert_eq!(
            decode_envelope(&sgx_item(), &std::fs::read(&path).unwrap())
                .unwrap()
                .body,
            copy.body
        );
    }

    #[test]
    fn envelope_checks_item_digest_and_format() {
        let copy = Cached {
            body: SGX_COLLATERAL.into(),
            window: appraise(&sgx_item(), SGX_COLLATERAL).unwrap(),
            source: "test".into(),
            fetched_at: at("2025-07-01T00:00:00Z"),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.cache");
        write_envelope(&path, &sgx_item(), &copy).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            decode_envelope(&sgx_item(), &bytes).unwrap().body,
            copy.body
        );
        let other = Item::AmdCertChain {
            product: AmdProduct::Milan,
        };
        assert!(
            decode_envelope(&other, &bytes)
                .unwrap_err()
                .contains("holds")
        );
        assert!(decode_envelope(&sgx_item(), &bytes[..bytes.len() / 2]).is_err());
    }
}

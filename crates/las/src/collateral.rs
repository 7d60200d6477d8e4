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
//! then fails with [`LasError::CollateralUnavailable`](crate::LasError::CollateralUnavailable)
//! naming the item and each source's failure.
//! The backoff schedules come from the `backon` crate.

#[cfg(feature = "server")]
mod cache;
mod item;
#[cfg(feature = "server")]
mod source;

#[cfg(feature = "server")]
pub(crate) use cache::write_atomically;
#[cfg(feature = "server")]
pub use cache::{Cached, CollateralCache, MAX_ITEM_LEN, MAX_ITEMS, RefreshPolicy, decode_envelope};
pub use item::{AmdProduct, DcapTee, Item, PckCa, SnpTcb, Window, appraise};
#[cfg(feature = "server")]
pub use source::{BoxFuture, BundleFetcher, FetchError, Fetcher, HttpFetcher, IntelPcs};

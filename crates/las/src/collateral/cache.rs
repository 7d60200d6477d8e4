//! The cache itself: copies in memory and on disk, refreshed from the sources by the rules in
//! the [module documentation](super).

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder as _, ExponentialBackoff, ExponentialBuilder, Retryable as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cloister_attest::rfc3339;
use serde::{Deserialize, Serialize};

use super::item::{Item, Window, appraise};
use super::source::{Fetcher, read_limited};
use crate::{Clock, LasError};

/// The largest collateral body accepted from a source or the cache (Intel's are ~20 KiB).
pub const MAX_ITEM_LEN: usize = 1024 * 1024;

/// The most distinct items the cache tracks. A node needs a handful (its platform's DCAP item,
/// or its chip's VCEK and chain); the cap keeps callers asking for arbitrary items from growing
/// memory without bound.
pub const MAX_ITEMS: usize = 1024;

/// The marker of a cache file's format.
const CACHE_FORMAT: &str = "cloister-las-cache/v1";

// ---------------------------------------------------------------------------------------------
// The cache
// ---------------------------------------------------------------------------------------------

/// How and when the cache refreshes items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshPolicy {
    /// Refresh an item once its cached copy expires within this margin (default 7 days: Intel
    /// collateral is valid for about 30 days and reissued daily, so this leaves a week of
    /// retries before a failing service matters).
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
            margin: Duration::from_secs(7 * 24 * 3600),
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
        {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            if slots.len() >= MAX_ITEMS && !slots.contains_key(item) {
                return Err(LasError::Busy(
                    "the collateral cache tracks too many distinct items",
                ));
            }
        }
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

/// Parse a cache file that should hold `item`: its envelope, the body's SHA-256, and the body's
/// validity window ([`appraise`]). The bytes are untrusted (whoever controls the host's disk
/// wrote them): anything wrong is an error saying what, and the cache then ignores the file.
pub fn decode_envelope(item: &Item, bytes: &[u8]) -> Result<Cached, String> {
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
    use crate::collateral::{AmdProduct, BoxFuture, DcapTee, FetchError, PckCa};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SGX_COLLATERAL: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sgx-dcap/sgx_quote_collateral.json"
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

//! Refused attestations: what the caller is told, what the audit log records, and how a flood of
//! identical refusals is folded into one count.
//!
//! A refusal is a list of [`Failed`] rules. The caller gets each rule's *id* (`security.tees`,
//! `services[job].attestation[0].measurement`, `nonce`, `secrets[db].export`), the `seq` of the
//! audit entry that holds the details, and the detail only of failures that describe what the
//! caller itself sent (its nonce, its evidence, its collateral). The details of policy rules
//! (which may quote another tenant's pinned measurement, signer, claims or Rego messages) go
//! only to the audit log, where the session's owners read them.
//!
//! [`RefusalLog`] decides which refusals are appended to the audit log and which are counted:
//! see the audit module docs ("What the log records, and what it folds").

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::audit::{Event, EventKind};
use crate::store::SessionHash;

/// How long identical refusals are counted instead of appended.
pub(crate) const FOLD_WINDOW: Duration = Duration::from_secs(60);
/// How many kinds of refusal are tracked at once; beyond, refusals are appended one by one.
pub(crate) const MAX_TRACKED: usize = 1024;
/// How many distinct principals a folded entry lists.
const MAX_PRINCIPALS: usize = 8;

/// The rule id of a refusal for a service the session does not have.
pub(crate) const UNKNOWN_SERVICE_RULE: &str = "service";

/// One failed rule of an attestation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Failed {
    /// The rule id (no value of the policy).
    pub rule: String,
    /// The full reason, `path: detail`, for the audit log.
    pub reason: String,
    /// Whether the caller may see the reason: it describes only what the caller sent.
    pub caller_own: bool,
}

impl Failed {
    /// A failure of what the caller sent (`nonce`, `evidence`, `collateral`): the detail is
    /// shown to it.
    pub fn caller(rule: &str, detail: impl std::fmt::Display) -> Self {
        Failed {
            rule: rule.to_owned(),
            reason: format!("{rule}: {detail}"),
            caller_own: true,
        }
    }

    /// A reason in the policy crate's `rule.path: detail` form: only the id is shown.
    pub fn policy(reason: String) -> Self {
        Failed {
            rule: cloister_policy::rule_id(&reason),
            reason,
            caller_own: false,
        }
    }

    /// An import the policy layer refused: rule `secrets[NAME].RULE`; the message (which may
    /// name the exporter's hashes) for the audit log only.
    pub fn import(secret: &str, rule: &str, message: &str) -> Self {
        Failed {
            rule: format!("secrets[{secret}].{rule}"),
            reason: format!("secrets[{secret}]: {rule}: {message}"),
            caller_own: false,
        }
    }

    /// A rule with an id of its own and a detail for the audit log only.
    pub fn withheld(rule: String, detail: impl std::fmt::Display) -> Self {
        Failed {
            reason: format!("{rule}: {detail}"),
            rule,
            caller_own: false,
        }
    }
}

/// The rule ids of `failed`, sorted and without repeats: the caller's view and the folding key.
pub(crate) fn rule_ids(failed: &[Failed]) -> Vec<String> {
    failed
        .iter()
        .map(|f| f.rule.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// What makes two refusals identical.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub session: String,
    pub session_hash: [u8; 32],
    /// `None` for every service the session does not have.
    pub service: Option<String>,
    pub rules: Vec<String>,
}

struct Tracked {
    /// The entry that holds the details (`None` while it is being appended).
    first_seq: Option<u64>,
    opened: SystemTime,
    last: SystemTime,
    version: u64,
    repeats: u64,
    principals: BTreeSet<String>,
    unlisted: u64,
}

/// What to do with a refusal.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Append it (a first of its kind); then report the entry with [`RefusalLog::appended`].
    Append,
    /// Counted: not appended; the entry holding the details of its kind is this one.
    Folded(Option<u64>),
}

/// The refusals being counted (see the module docs).
pub(crate) struct RefusalLog {
    window: Duration,
    max_tracked: usize,
    tracked: Mutex<HashMap<Key, Tracked>>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(FOLD_WINDOW, MAX_TRACKED)
    }
}

impl RefusalLog {
    pub fn new(window: Duration, max_tracked: usize) -> Self {
        RefusalLog {
            window,
            max_tracked,
            tracked: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Tracked>> {
        // Every update leaves the map consistent, so a panic elsewhere leaves it usable.
        self.tracked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides about a refusal of kind `key` by `principal` at `now`; also returns the folded
    /// entries due (windows that closed), to be appended before anything else.
    pub fn refused(
        &self,
        key: &Key,
        version: u64,
        principal: &str,
        now: SystemTime,
    ) -> (Decision, Vec<Event>) {
        let mut tracked = self.lock();
        let due = self.take_due(&mut tracked, now, None);
        if let Some(t) = tracked.get_mut(key) {
            t.repeats += 1;
            t.last = now;
            if t.principals.len() < MAX_PRINCIPALS || t.principals.contains(principal) {
                t.principals.insert(principal.to_owned());
            } else {
                t.unlisted += 1;
            }
            return (Decision::Folded(t.first_seq), due);
        }
        if tracked.len() < self.max_tracked {
            tracked.insert(
                key.clone(),
                Tracked {
                    first_seq: None,
                    opened: now,
                    last: now,
                    version,
                    repeats: 0,
                    principals: BTreeSet::new(),
                    unlisted: 0,
                },
            );
        }
        (Decision::Append, due)
    }

    /// The first refusal of kind `key` is entry `seq`.
    pub fn appended(&self, key: &Key, seq: u64) {
        if let Some(t) = self.lock().get_mut(key) {
            t.first_seq = Some(seq);
        }
    }

    /// Appending the first refusal of kind `key` failed: the next one is a first again.
    pub fn forget(&self, key: &Key) {
        let mut tracked = self.lock();
        if tracked.get(key).is_some_and(|t| t.first_seq.is_none()) {
            tracked.remove(key);
        }
    }

    /// The folded entries due at `now`: those of closed windows, and every one of the sessions
    /// named in `events` (about to be recorded, so the log stays in order).
    pub fn due_before(&self, events: &[Event], now: SystemTime) -> Vec<Event> {
        let mut tracked = self.lock();
        if tracked.is_empty() {
            return Vec::new();
        }
        let sessions: BTreeSet<&str> = events.iter().filter_map(|e| e.session.as_deref()).collect();
        self.take_due(&mut tracked, now, Some(&sessions))
    }

    /// Removes the kinds whose window closed (or whose session is in `sessions`) and returns a
    /// folded entry for each that counted repeats.
    fn take_due(
        &self,
        tracked: &mut HashMap<Key, Tracked>,
        now: SystemTime,
        sessions: Option<&BTreeSet<&str>>,
    ) -> Vec<Event> {
        let closed = |k: &Key, t: &Tracked| {
            now.duration_since(t.opened)
                .is_ok_and(|age| age >= self.window)
                || sessions.is_some_and(|s| s.contains(k.session.as_str()))
        };
        let keys: Vec<Key> = tracked
            .iter()
            .filter(|(k, t)| closed(k, t))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for key in keys {
            if let Some(t) = tracked.remove(&key)
                && t.repeats > 0
                && t.first_seq.is_some()
            {
                out.push(folded_entry(&key, &t));
            }
        }
        out
    }
}

fn folded_entry(key: &Key, t: &Tracked) -> Event {
    let time = |t: SystemTime| humantime::format_rfc3339_seconds(t).to_string();
    let mut event = Event::new(EventKind::AttestationRefusedRepeated)
        .session(&key.session)
        .version(t.version)
        .session_hash(SessionHash::from_bytes(key.session_hash))
        .principal(t.principals.iter().cloned().collect::<Vec<_>>().join(","))
        .reason(format!(
            "repeated: {} more refusals like entry {} from {} to {}",
            t.repeats,
            t.first_seq.unwrap_or_default(),
            time(t.opened),
            time(t.last),
        ))
        .reason(format!("rules: {}", key.rules.join(", ")));
    if let Some(s) = &key.service {
        event = event.service(s);
    }
    if t.unlisted > 0 {
        event = event.reason(format!(
            "principals: {} more refusals by principals not listed",
            t.unlisted
        ));
    }
    event
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;

    fn key(rules: &[&str]) -> Key {
        Key {
            session: "a/b".into(),
            session_hash: [1; 32],
            service: Some("driver".into()),
            rules: rules.iter().map(|r| (*r).to_owned()).collect(),
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
    }

    #[test]
    fn the_first_is_appended_and_repeats_are_counted_until_the_window_closes() {
        let log = RefusalLog::default();
        let k = key(&["nonce"]);
        assert_eq!(log.refused(&k, 1, "p0", at(0)), (Decision::Append, vec![]));
        log.appended(&k, 7);
        for i in 1..=1000 {
            let (d, due) = log.refused(&k, 1, &format!("p{i}"), at(i % 59));
            assert_eq!((d, due.len()), (Decision::Folded(Some(7)), 0));
        }
        // A different kind is appended at once.
        let other = key(&["security.tees"]);
        assert_eq!(log.refused(&other, 1, "p", at(30)).0, Decision::Append);
        // After the window: the count is due, and the next refusal is a first again.
        let (d, due) = log.refused(&k, 1, "p", at(61));
        assert_eq!(d, Decision::Append);
        assert_eq!(due.len(), 1, "{due:?}");
        let e = &due[0];
        assert_eq!(e.kind, EventKind::AttestationRefusedRepeated);
        assert!(
            e.reasons[0].starts_with("repeated: 1000 more refusals like entry 7"),
            "{e:?}"
        );
        assert_eq!(e.reasons[1], "rules: nonce");
        assert_eq!(
            e.principal.as_deref().unwrap().split(',').count(),
            MAX_PRINCIPALS
        );
        assert!(e.reasons[2].contains("992 more refusals"), "{e:?}");
        // `other` never reported its entry (as if its append were still running): no count.
    }

    #[test]
    fn another_event_of_the_session_flushes_its_counts_first() {
        let log = RefusalLog::default();
        let k = key(&["nonce"]);
        log.refused(&k, 1, "p", at(0));
        log.appended(&k, 3);
        log.refused(&k, 1, "p", at(1));
        let unrelated = Event::new(EventKind::SessionCreated).session("x/y");
        assert!(log.due_before(&[unrelated], at(2)).is_empty());
        let passed = Event::new(EventKind::AttestationPassed).session("a/b");
        let due = log.due_before(&[passed], at(2));
        assert_eq!(due.len(), 1);
        assert_eq!(log.refused(&k, 1, "p", at(3)).0, Decision::Append);
    }

    #[test]
    fn a_full_table_falls_back_to_appending_and_a_failed_append_is_forgotten() {
        let log = RefusalLog::new(FOLD_WINDOW, 2);
        for r in ["a", "b", "c"] {
            let k = key(&[r]);
            assert_eq!(log.refused(&k, 1, "p", at(0)).0, Decision::Append);
            log.appended(&k, 1);
        }
        let c = key(&["c"]);
        assert_eq!(log.refused(&c, 1, "p", at(1)).0, Decision::Append);
        let a = key(&["a"]);
        assert_eq!(log.refused(&a, 1, "p", at(1)).0, Decision::Folded(Some(1)));

        let log = RefusalLog::default();
        let k = key(&["x"]);
        log.refused(&k, 1, "p", at(0));
        log.forget(&k);
        assert_eq!(log.refused(&k, 1, "p", at(0)).0, Decision::Append);
    }

    #[test]
    fn ids_are_sorted_and_details_kept_apart() {
        let failed = vec![
            Failed::policy("security.tees: sim not accepted".into()),
            Failed::caller("nonce", "expired"),
            Failed::policy("security.tees: again".into()),
        ];
        assert_eq!(rule_ids(&failed), ["nonce", "security.tees"]);
        assert!(failed[1].caller_own && !failed[0].caller_own);
        assert_eq!(failed[1].reason, "nonce: expired");
    }
}

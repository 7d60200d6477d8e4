//! The appending end: [`AuditLog`], with group commit (one `fsync` per batch of concurrent
//! appends), crash recovery, the sparse index and paged reads.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use crate::Error;
use crate::store::create_private_dir;

use super::entry::*;
use super::sign::*;
use super::verify::*;
use super::*;

/// What [`AuditLog::open`] repaired after a crash.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of a partial last line that were cut off.
    pub repaired_tail_bytes: u64,
    /// Complete but unacknowledged entries the head was advanced over.
    pub head_advanced_by: u64,
}

/// The appending end of the audit log. One per data directory (the log file is locked).
/// `append` is synchronous (it waits for `fsync`); call it through `spawn_blocking`.
pub struct AuditLog {
    dir: PathBuf,
    signer: AuditSigner,
    /// The file and the chain; held by the appender writing a batch (and by `verify`).
    state: Mutex<State>,
    /// Events waiting for the next batch, and the outcomes of written ones.
    queue: Mutex<Queue>,
    /// Signalled when a batch is done.
    batch_done: Condvar,
    recovery: Recovery,
    /// Where entries start, and how far the log is durable: what readers seek with.
    index: Mutex<Index>,
    /// How far [`AuditLog::verify`] has checked the log; held while it checks.
    checkpoint: Mutex<Checkpoint>,
}

/// The sparse index of the log: `offsets[i]` is where entry `i * INDEX_EVERY + 1` starts. It
/// costs 8 bytes per [`INDEX_EVERY`] entries (40 KiB for a million), built at open by the
/// streaming check and extended by each append.
#[derive(Clone, Debug, Default)]
struct Index {
    offsets: Vec<u64>,
    /// The last durable entry.
    last_seq: u64,
    /// The length of the durable entries, in bytes.
    len: u64,
}

/// The last entry [`AuditLog::verify`] checked: its `seq`, hash, and where its line is.
#[derive(Clone, Debug)]
struct Checkpoint {
    seq: u64,
    hash: String,
    start: u64,
    end: u64,
}

/// A page of entries read with [`AuditLog::read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page {
    /// The entries kept, in order.
    pub entries: Vec<Entry>,
    /// Where to continue (`after` of the next read): the last entry scanned, when the read
    /// stopped before the end of the log (the limit of entries or of bytes was reached).
    /// `None`: the log ended (at the time of the read).
    pub next: Option<u64>,
    /// How many bytes of the log the read went through.
    pub scanned_bytes: u64,
}

/// The group-commit queue (see the module docs).
#[derive(Default)]
struct Queue {
    /// Events not yet taken by a writer, in arrival order.
    pending: Vec<Pending>,
    /// The ticket the next queued event gets.
    next_ticket: u64,
    /// Whether an appender is writing a batch now.
    writing: bool,
    /// Outcomes of written batches, until their appenders collect them.
    outcomes: HashMap<u64, Result<Receipt, Failure>>,
}

struct Pending {
    ticket: u64,
    event: Event,
    time: SystemTime,
}

/// Why a batch failed, in a form every appender of the batch can get a copy of.
#[derive(Clone, Debug)]
enum Failure {
    Io {
        op: &'static str,
        path: PathBuf,
        kind: std::io::ErrorKind,
        message: String,
    },
    Internal(&'static str),
}

impl Failure {
    fn of(e: &Error) -> Self {
        match e {
            Error::Io { op, path, source } => Failure::Io {
                op,
                path: path.clone(),
                kind: source.kind(),
                message: source.to_string(),
            },
            Error::Internal(m) => Failure::Internal(m),
            _ => Failure::Internal("an audit append failed"),
        }
    }

    fn to_error(&self) -> Error {
        match self {
            Failure::Io {
                op,
                path,
                kind,
                message,
            } => Error::io(
                op,
                path.clone(),
                std::io::Error::new(*kind, message.clone()),
            ),
            Failure::Internal(m) => Error::Internal(m),
        }
    }
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("dir", &self.dir)
            .field("signer", &self.signer)
            .finish_non_exhaustive()
    }
}

struct State {
    file: File,
    last_seq: u64,
    last_hash: String,
    len: u64,
    /// Set when a failed append could not be rolled back: no further appends.
    poisoned: bool,
}

/// What a durable append returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The entry's `seq`.
    pub seq: u64,
    /// The entry's hash (hex).
    pub hash: String,
}

impl AuditLog {
    /// Opens (or creates) the audit log in `dir`, verifies it in full, and repairs what a crash
    /// can leave (see [`Recovery`]). A log that fails verification is refused with
    /// [`Error::Audit`]: the CAS does not append to a tampered log.
    #[tracing::instrument(skip_all, fields(dir = %dir.display()))]
    pub fn open(dir: &Path, signer: AuditSigner) -> Result<Self, Error> {
        create_private_dir(dir)?;
        let log_path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(|e| Error::io("open", &log_path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { path: log_path });
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(Error::io("lock", &log_path, e));
            }
        }
        sync_dir(dir)?;
        let file_len = file
            .metadata()
            .map_err(|e| Error::io("stat", &log_path, e))?
            .len();

        let public = signer.public_key();
        let head = match read_head(dir, &public)? {
            Some(head) => head,
            // A new log (or a crash between creating the log and its first head).
            None if file_len == 0 => {
                let head = Head {
                    seq: 0,
                    hash: GENESIS.to_owned(),
                    signature: signer.sign(&head_message(0, GENESIS)),
                };
                write_head(dir, &head)?;
                head
            }
            None => {
                return Err(AuditError::Head {
                    reason: "is missing",
                }
                .into());
            }
        };
        // One streaming pass verifies the log and builds the sparse index; the log is never
        // held in memory.
        let mut offsets = Vec::new();
        let checked = {
            let mut reader = BufReader::new(&file);
            reader
                .seek(SeekFrom::Start(0))
                .map_err(|e| Error::io("read", &log_path, e))?;
            check(
                reader,
                &log_path,
                Start::GENESIS,
                &head,
                &public,
                Some(&mut offsets),
                |hash| any_entry_in_file(&log_path, hash),
            )?
        };
        let mut recovery = Recovery::default();
        if checked.torn_tail_bytes > 0 {
            file.set_len(checked.complete_len)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("repair", &log_path, e))?;
            tracing::warn!(
                bytes = checked.torn_tail_bytes,
                "cut a partial last audit record left by a crash"
            );
            recovery.repaired_tail_bytes = checked.torn_tail_bytes;
        }
        if checked.last_seq > head.seq {
            write_head(
                dir,
                &Head {
                    seq: checked.last_seq,
                    hash: checked.last_hash.clone(),
                    signature: signer.sign(&head_message(checked.last_seq, &checked.last_hash)),
                },
            )?;
            recovery.head_advanced_by = checked.last_seq - head.seq;
            tracing::warn!(
                entries = recovery.head_advanced_by,
                "advanced the audit head over entries written before a crash"
            );
        }
        write_public_key(dir, &public)?;
        Ok(AuditLog {
            dir: dir.to_owned(),
            signer,
            index: Mutex::new(Index {
                offsets,
                last_seq: checked.last_seq,
                len: checked.complete_len,
            }),
            checkpoint: Mutex::new(Checkpoint {
                seq: checked.last_seq,
                hash: checked.last_hash.clone(),
                start: checked.last_start,
                end: checked.complete_len,
            }),
            state: Mutex::new(State {
                file,
                last_seq: checked.last_seq,
                last_hash: checked.last_hash,
                len: checked.complete_len,
                poisoned: false,
            }),
            queue: Mutex::new(Queue::default()),
            batch_done: Condvar::new(),
            recovery,
        })
    }

    /// What opening repaired.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The key that verifies this log.
    pub fn public_key(&self) -> AuditPublicKey {
        self.signer.public_key()
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends `event` stamped with the current time; durable when this returns `Ok`.
    pub fn append(&self, event: &Event) -> Result<Receipt, Error> {
        self.append_at(event, SystemTime::now())
    }

    /// Appends `event` stamped with `time` (truncated to milliseconds); durable when this returns.
    #[tracing::instrument(skip_all, fields(kind = event.kind.as_str()))]
    pub fn append_at(&self, event: &Event, time: SystemTime) -> Result<Receipt, Error> {
        let mut receipts = self.append_all(std::slice::from_ref(event), time)?;
        receipts
            .pop()
            .ok_or(Error::Internal("an audit batch lost an entry"))
    }

    /// Appends `events` as adjacent entries stamped with `time`, all in one batch; durable when
    /// this returns. Either all are appended or none is acknowledged.
    pub fn append_all(&self, events: &[Event], time: SystemTime) -> Result<Vec<Receipt>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut queue = self.queue();
        let first = queue.next_ticket;
        for event in events {
            let ticket = queue.next_ticket;
            queue.next_ticket += 1;
            queue.pending.push(Pending {
                ticket,
                event: event.clone(),
                time,
            });
        }
        let tickets = first..queue.next_ticket;
        loop {
            // A writer takes every pending event at once, so all of ours finish together.
            if queue.outcomes.contains_key(&first) {
                let mut receipts = Vec::with_capacity(events.len());
                let mut failure = None;
                for ticket in tickets {
                    match queue.outcomes.remove(&ticket) {
                        Some(Ok(receipt)) => receipts.push(receipt),
                        Some(Err(f)) => failure = Some(f),
                        None => failure = Some(Failure::Internal("an audit batch lost an entry")),
                    }
                }
                return match failure {
                    Some(f) => Err(f.to_error()),
                    None => Ok(receipts),
                };
            }
            if queue.writing {
                queue = self
                    .batch_done
                    .wait(queue)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                continue;
            }
            // Nobody is writing: write everything queued, ours included.
            queue.writing = true;
            let batch = std::mem::take(&mut queue.pending);
            drop(queue);
            let mut writer = BatchWriter {
                log: self,
                tickets: batch.iter().map(|p| p.ticket).collect(),
                outcomes: None,
            };
            writer.outcomes = Some(self.write_batch(&batch));
            drop(writer);
            queue = self.queue();
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent at every unlock (a writer's failure is recorded by
        // `BatchWriter`'s drop), so a panic elsewhere leaves it usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `batch` with one write, one `fsync` and one head; an outcome per entry.
    fn write_batch(&self, batch: &[Pending]) -> Vec<Result<Receipt, Failure>> {
        let fail_all = |e: Error| vec![Err(Failure::of(&e)); batch.len()];
        let Ok(mut state) = self.state.lock() else {
            return fail_all(Error::Internal("audit log lock poisoned by a panic"));
        };
        if state.poisoned {
            return fail_all(Error::Internal(
                "an earlier audit append failed and could not be rolled back; reopen the log",
            ));
        }
        let mut seq = state.last_seq;
        let mut prev_hash = state.last_hash.clone();
        let mut bytes = Vec::with_capacity(batch.len() * 512);
        let mut receipts = Vec::with_capacity(batch.len());
        let mut index_points = Vec::new();
        for p in batch {
            seq += 1;
            let line = match self.entry_line(&p.event, p.time, seq, &prev_hash) {
                Ok(line) => line,
                Err(e) => return fail_all(e),
            };
            if (seq - 1).is_multiple_of(INDEX_EVERY) {
                index_points.push(state.len + bytes.len() as u64);
            }
            bytes.extend_from_slice(&line.bytes);
            receipts.push(Receipt {
                seq,
                hash: line.hash.clone(),
            });
            prev_hash = line.hash;
        }

        let log_path = self.dir.join(LOG_FILE);
        if let Err(e) = state
            .file
            .write_all(&bytes)
            .and_then(|()| state.file.sync_data())
        {
            // Roll back a partial write so that the next append starts on a line boundary.
            let len = state.len;
            if state
                .file
                .set_len(len)
                .and_then(|()| state.file.sync_data())
                .is_err()
            {
                state.poisoned = true;
            }
            return fail_all(Error::io("append to", log_path, e));
        }
        // The entries are durable: from here on they are part of the log even if the head update
        // fails (the next append or open covers them).
        state.last_seq = seq;
        state.last_hash = prev_hash.clone();
        state.len += bytes.len() as u64;
        {
            let mut index = self.index();
            index.offsets.extend(index_points);
            index.last_seq = seq;
            index.len = state.len;
        }
        let head = Head {
            seq,
            signature: self.signer.sign(&head_message(seq, &prev_hash)),
            hash: prev_hash,
        };
        if let Err(e) = write_head(&self.dir, &head) {
            return fail_all(e);
        }
        receipts.into_iter().map(Ok).collect()
    }

    /// The signed, serialised line of entry `seq` for `event`, chained to `prev_hash`.
    fn entry_line(
        &self,
        event: &Event,
        time: SystemTime,
        seq: u64,
        prev_hash: &str,
    ) -> Result<Line, Error> {
        let mut entry = Entry {
            seq,
            time: humantime::format_rfc3339_millis(time).to_string(),
            kind: event.kind.as_str().to_owned(),
            session: event.session.clone(),
            version: event.version,
            session_hash: event.session_hash.map(|h| h.to_string()),
            service: event.service.clone(),
            principal: event.principal.clone(),
            released: event.released.clone(),
            reasons: event.reasons.clone(),
            prev_hash: prev_hash.to_owned(),
            hash: String::new(),
            signature: String::new(),
        };
        let hash_bytes = entry.compute_hash();
        entry.hash = hex::encode(hash_bytes);
        entry.signature = self.signer.sign(&hash_bytes);
        let mut bytes = serde_json::to_vec(&entry)
            .map_err(|_| Error::Internal("an audit entry always serialises"))?;
        bytes.push(b'\n');
        Ok(Line {
            bytes,
            hash: entry.hash,
        })
    }

    fn index(&self) -> MutexGuard<'_, Index> {
        // The index is replaced field by field under the lock with values that are each
        // consistent; a panic elsewhere cannot leave it half written.
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reads the entries after `after`, in order, keeping those `keep` accepts, until `limit`
    /// are kept, the entries read after `after` reach `max_scan_bytes` (at least one entry is
    /// always read, so each call makes progress), or the log ends. Seeks with the sparse index (it
    /// reads at most [`INDEX_EVERY`] − 1 entries before `after + 1`) and streams line by line:
    /// memory is bounded by `limit` entries, never the log's size. Entries appended during the
    /// read are left for the next one.
    pub fn read(
        &self,
        after: u64,
        limit: usize,
        max_scan_bytes: u64,
        mut keep: impl FnMut(&Entry) -> bool,
    ) -> Result<Page, Error> {
        let (start, first_seq, end, last_seq) = {
            let index = self.index();
            if after >= index.last_seq {
                return Ok(Page {
                    entries: Vec::new(),
                    next: None,
                    scanned_bytes: 0,
                });
            }
            let slot = after / INDEX_EVERY;
            let start = usize::try_from(slot)
                .ok()
                .and_then(|i| index.offsets.get(i).copied())
                .ok_or(Error::Internal("the audit index misses an entry"))?;
            (start, slot * INDEX_EVERY + 1, index.len, index.last_seq)
        };
        let path = self.dir.join(LOG_FILE);
        let mut file = File::open(&path).map_err(|e| Error::io("open", &path, e))?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| Error::io("read", &path, e))?;
        let mut reader = BufReader::with_capacity(64 * 1024, file.take(end - start));
        let mut line = Vec::new();
        let mut page = Page {
            entries: Vec::new(),
            next: None,
            scanned_bytes: 0,
        };
        let mut seq = first_seq - 1;
        // Bytes of entries after `after`: the entries skipped after the seek do not count.
        let mut budget_used = 0u64;
        while page.entries.len() < limit.max(1) && (budget_used < max_scan_bytes || seq <= after) {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(|e| Error::io("read", &path, e))?;
            if n == 0 {
                break;
            }
            page.scanned_bytes += n as u64;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            let entry: Entry = serde_json::from_slice(text).map_err(|_| AuditError::Modified {
                seq: seq + 1,
                what: "not a valid entry",
            })?;
            seq = entry.seq;
            if seq > after {
                budget_used += n as u64;
                if keep(&entry) {
                    page.entries.push(entry);
                }
            }
        }
        if seq < last_seq {
            page.next = Some(seq.max(after));
        }
        Ok(page)
    }

    /// Verifies what was appended since the last call (or since the log was opened, which
    /// verified it all), and re-reads the last entry verified before, which must be unchanged:
    /// the cost of a call is the new entries, not the log. Calls take turns; appends go on
    /// meanwhile. A modification of entries verified by an earlier call (other than the last)
    /// is not seen here: that is what a full check of the files (`cloister audit verify
    /// --data`) and the published head are for.
    pub fn verify(&self) -> Result<Summary, AuditError> {
        let mut checkpoint = self
            .checkpoint
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The head and the durable length, consistent with each other: an appender replaces
        // the head while it holds the state lock.
        let (head_bytes, len) = {
            let state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let path = self.dir.join(HEAD_FILE);
            let bytes = std::fs::read(&path).map_err(|e| AuditError::io("read", &path, e))?;
            (bytes, state.len)
        };
        let key = self.public_key();
        let head = parse_head(&head_bytes, &key)?;
        let path = self.dir.join(LOG_FILE);
        let mut file = File::open(&path).map_err(|e| AuditError::io("open", &path, e))?;
        if checkpoint.seq > 0 {
            let mut line = Vec::new();
            file.seek(SeekFrom::Start(checkpoint.start))
                .and_then(|_| {
                    (&mut file)
                        .take(checkpoint.end - checkpoint.start)
                        .read_to_end(&mut line)
                })
                .map_err(|e| AuditError::io("read", &path, e))?;
            let unchanged = line
                .strip_suffix(b"\n")
                .and_then(|text| check_line(text, checkpoint.seq, &key).ok())
                .is_some_and(|e| e.seq == checkpoint.seq && e.hash == checkpoint.hash);
            if !unchanged {
                return Err(AuditError::Modified {
                    seq: checkpoint.seq,
                    what: "differs from the entry verified before",
                });
            }
        }
        file.seek(SeekFrom::Start(checkpoint.end))
            .map_err(|e| AuditError::io("read", &path, e))?;
        let reader = BufReader::new(file.take(len.saturating_sub(checkpoint.end)));
        let checked = check(
            reader,
            &path,
            Start {
                seq: checkpoint.seq,
                hash: &checkpoint.hash,
                offset: checkpoint.end,
            },
            &head,
            &key,
            None,
            |hash| any_entry_in_file(&path, hash),
        )?;
        if checked.entries > 0 {
            *checkpoint = Checkpoint {
                seq: checked.last_seq,
                hash: checked.last_hash.clone(),
                start: checked.last_start,
                end: checked.complete_len,
            };
        }
        Ok(Summary {
            entries: checked.last_seq,
            head_seq: head.seq,
            last_hash: checked.last_hash,
            beyond_head: checked.last_seq.saturating_sub(head.seq),
            torn_tail_bytes: checked.torn_tail_bytes,
        })
    }
}

/// One serialised entry.
struct Line {
    bytes: Vec<u8>,
    hash: String,
}

/// The appender writing a batch. Dropping it (normally, or while unwinding from a panic)
/// records the batch's outcomes, hands the log to the next writer and wakes the waiters, so
/// that no appender waits forever.
struct BatchWriter<'a> {
    log: &'a AuditLog,
    tickets: Vec<u64>,
    outcomes: Option<Vec<Result<Receipt, Failure>>>,
}

impl Drop for BatchWriter<'_> {
    fn drop(&mut self) {
        let outcomes = self.outcomes.take().unwrap_or_default();
        let mut outcomes = outcomes.into_iter();
        let mut queue = self.log.queue();
        for ticket in &self.tickets {
            let outcome = outcomes
                .next()
                .unwrap_or(Err(Failure::Internal("an audit batch writer panicked")));
            queue.outcomes.insert(*ticket, outcome);
        }
        queue.writing = false;
        drop(queue);
        self.log.batch_done.notify_all();
    }
}

/// Replaces the head atomically and durably.
fn write_head(dir: &Path, head: &Head) -> Result<(), Error> {
    let mut text = serde_json::to_string(head)
        .map_err(|_| Error::Internal("the audit head always serialises"))?;
    text.push('\n');
    replace_file(dir, HEAD_FILE, text.as_bytes())
}

fn write_public_key(dir: &Path, key: &AuditPublicKey) -> Result<(), Error> {
    let text = format!("{}\n", key.to_hex());
    let path = dir.join(PUBLIC_KEY_FILE);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    replace_file(dir, PUBLIC_KEY_FILE, text.as_bytes())
}

/// Writes `name` in `dir` atomically: temporary file, `fsync`, rename, `fsync` the directory.
fn replace_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(if name == HEAD_FILE {
        HEAD_TMP_FILE.to_owned()
    } else {
        format!("{name}.tmp")
    });
    let path = dir.join(name);
    let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::io("write", &tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename into", &path, e))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("sync directory", dir, e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use crate::master_key::MasterKey;
    use std::time::Duration;
    use zeroize::Zeroizing;

    fn signer() -> AuditSigner {
        AuditSigner::from_master_key(&MasterKey::from_bytes(Zeroizing::new([3u8; 32]))).unwrap()
    }

    fn t(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
    }

    fn event(i: u64) -> Event {
        Event::new(EventKind::AttestationRefused)
            .session(format!("s{i}"))
            .service("driver")
            .principal(key_digest(b"spki"))
            .reason("measurement: expected ab…, got cd…")
    }

    fn log_with(dir: &Path, n: u64) -> AuditLog {
        let log = AuditLog::open(dir, signer()).unwrap();
        for i in 0..n {
            log.append_at(&event(i), t(i)).unwrap();
        }
        log
    }

    #[test]
    fn append_then_verify() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 3);
        let summary = verify(dir.path(), &log.public_key()).unwrap();
        assert_eq!(summary.entries, 3);
        assert_eq!(summary.head_seq, 3);
        assert_eq!(summary.beyond_head, 0);
        assert_eq!(summary.torn_tail_bytes, 0);
        assert_eq!(log.verify().unwrap(), summary);
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let first: Entry = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.kind, "attestation_refused");
        assert_eq!(first.time, "2027-01-15T08:00:00.000Z");
        assert_eq!(first.prev_hash, GENESIS);
    }

    #[test]
    fn empty_log_verifies_and_reopen_continues_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let public = {
            let log = AuditLog::open(dir.path(), signer()).unwrap();
            assert_eq!(verify(dir.path(), &log.public_key()).unwrap().entries, 0);
            log.append_at(&event(1), t(1)).unwrap();
            log.public_key()
        };
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.recovery(), &Recovery::default());
        let receipt = log.append_at(&event(2), t(2)).unwrap();
        assert_eq!(receipt.seq, 2);
        assert_eq!(verify(dir.path(), &public).unwrap().last_hash, receipt.hash);
        assert_eq!(read_public_key(dir.path()).unwrap(), public);
    }

    #[test]
    fn verify_bytes_matches_verify() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 2).public_key();
        let log = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        let head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        let first_newline = log.iter().position(|&b| b == b'\n').unwrap();
        assert_eq!(
            verify_bytes(&log, &head, &public).unwrap(),
            verify(dir.path(), &public).unwrap()
        );
        assert!(matches!(
            verify_bytes(&log, b"{}", &public),
            Err(AuditError::Head {
                reason: "is malformed"
            })
        ));
        assert!(matches!(
            verify_bytes(&log[..first_newline], &head, &public),
            Err(AuditError::Truncated {
                head_seq: 2,
                last_seq: 0
            })
        ));
    }

    #[test]
    fn second_writer_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let _log = log_with(dir.path(), 1);
        assert!(matches!(
            AuditLog::open(dir.path(), signer()),
            Err(Error::Locked { .. })
        ));
    }

    #[test]
    fn entry_beyond_the_head_is_tolerated_then_covered() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 2).public_key();
        // Simulate a crash after the log was written but before the head was replaced.
        let old_head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        log_with(dir.path(), 1);
        std::fs::write(dir.path().join(HEAD_FILE), old_head).unwrap();
        let summary = verify(dir.path(), &public).unwrap();
        assert_eq!(
            (summary.entries, summary.head_seq, summary.beyond_head),
            (3, 2, 1)
        );
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.recovery().head_advanced_by, 1);
        assert_eq!(verify(dir.path(), &public).unwrap().head_seq, 3);
    }

    #[test]
    fn torn_tail_is_reported_then_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 2).public_key();
        let path = dir.path().join(LOG_FILE);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"seq":3,"time":"2027-01-"#).unwrap();
        drop(file);
        let summary = verify(dir.path(), &public).unwrap();
        assert_eq!(summary.torn_tail_bytes, 25);
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        assert_eq!(log.recovery().repaired_tail_bytes, 25);
        log.append_at(&event(3), t(3)).unwrap();
        let summary = verify(dir.path(), &public).unwrap();
        assert_eq!((summary.entries, summary.torn_tail_bytes), (3, 0));
    }

    #[test]
    fn wrong_key_fails_on_the_head() {
        let dir = tempfile::tempdir().unwrap();
        log_with(dir.path(), 1);
        let other = AuditSigner::from_master_key(&MasterKey::generate())
            .unwrap()
            .public_key();
        let err = verify(dir.path(), &other).unwrap_err();
        assert!(matches!(err, AuditError::Head { .. }), "{err:?}");
        assert_eq!(err.exit_code(), 14);
        // The writer refuses to continue a log it did not sign.
        assert!(matches!(
            AuditLog::open(
                dir.path(),
                AuditSigner::from_master_key(&MasterKey::generate()).unwrap()
            ),
            Err(Error::Audit(AuditError::Head { .. }))
        ));
    }

    #[test]
    fn missing_head_with_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 1).public_key();
        std::fs::remove_file(dir.path().join(HEAD_FILE)).unwrap();
        assert!(matches!(
            verify(dir.path(), &public),
            Err(AuditError::Head {
                reason: "is missing"
            })
        ));
        assert!(matches!(
            AuditLog::open(dir.path(), signer()),
            Err(Error::Audit(AuditError::Head { .. }))
        ));
    }

    #[test]
    fn exit_codes_are_distinct() {
        let errors = [
            AuditError::Modified { seq: 1, what: "x" },
            AuditError::Removed {
                after_seq: 1,
                next_seq: 3,
            },
            AuditError::Reordered { seq: 1 },
            AuditError::Truncated {
                head_seq: 2,
                last_seq: 1,
            },
            AuditError::Head { reason: "x" },
            AuditError::io("read", Path::new("x"), std::io::ErrorKind::Other.into()),
        ];
        let codes: Vec<i32> = errors.iter().map(AuditError::exit_code).collect();
        assert_eq!(codes, vec![10, 11, 12, 13, 14, 2]);
    }

    #[test]
    fn signer_is_deterministic_and_redacted() {
        let a = signer();
        let b = signer();
        assert_eq!(a.public_key(), b.public_key());
        let hex = a.public_key().to_hex();
        assert_eq!(hex.len(), 66);
        assert_eq!(AuditPublicKey::from_hex(&hex).unwrap(), a.public_key());
        assert!(AuditPublicKey::from_hex("zz").is_err());
        let shown = format!("{a:?}");
        assert!(shown.contains(&hex) && shown.contains(".."), "{shown}");
    }

    #[test]
    fn concurrent_appends_are_all_durable_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path(), signer()).unwrap());
        let threads: Vec<_> = (0..8u64)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || {
                    (0..25u64)
                        .map(|i| log.append_at(&event(th * 100 + i), t(i)).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut receipts: Vec<Receipt> = threads
            .into_iter()
            .flat_map(|th| th.join().unwrap())
            .collect();
        receipts.sort_by_key(|r| r.seq);
        assert_eq!(
            receipts.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (1..=200).collect::<Vec<_>>()
        );
        let summary = verify(dir.path(), &log.public_key()).unwrap();
        assert_eq!((summary.entries, summary.head_seq), (200, 200));
        assert_eq!(summary.beyond_head, 0);
        // Each receipt names the entry that holds it.
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        for (line, receipt) in text.lines().zip(&receipts) {
            let entry: Entry = serde_json::from_str(line).unwrap();
            assert_eq!((entry.seq, &entry.hash), (receipt.seq, &receipt.hash));
        }
    }

    #[test]
    fn append_all_writes_adjacent_entries_among_concurrent_appends() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(AuditLog::open(dir.path(), signer()).unwrap());
        let others: Vec<_> = (0..4u64)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for i in 0..20 {
                        log.append_at(&event(th * 100 + i), t(i)).unwrap();
                    }
                })
            })
            .collect();
        let group = [event(1000), event(1001), event(1002)];
        let mut groups = Vec::new();
        for _ in 0..10 {
            let receipts = log.append_all(&group, t(5)).unwrap();
            let seqs: Vec<u64> = receipts.iter().map(|r| r.seq).collect();
            assert_eq!(seqs, vec![seqs[0], seqs[0] + 1, seqs[0] + 2]);
            groups.push(seqs[0]);
        }
        for th in others {
            th.join().unwrap();
        }
        assert!(log.append_all(&[], t(6)).unwrap().is_empty());
        let summary = verify(dir.path(), &log.public_key()).unwrap();
        assert_eq!(summary.entries, 4 * 20 + 10 * 3);
        // The entries are the group's events, in order.
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let entries: Vec<Entry> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for first in groups {
            let sessions: Vec<_> = entries[(first - 1) as usize..(first + 2) as usize]
                .iter()
                .map(|e| e.session.clone().unwrap())
                .collect();
            assert_eq!(sessions, vec!["s1000", "s1001", "s1002"]);
        }
    }

    #[test]
    fn a_failed_batch_fails_every_appender_in_it_and_nobody_hangs() {
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(log_with(dir.path(), 1));
        // A log whose earlier failure could not be rolled back refuses every append.
        log.state.lock().unwrap().poisoned = true;
        let threads: Vec<_> = (0..6u64)
            .map(|th| {
                let log = log.clone();
                std::thread::spawn(move || log.append_at(&event(th), t(th)))
            })
            .collect();
        for th in threads {
            let err = th.join().unwrap().unwrap_err();
            assert!(matches!(err, Error::Internal(_)), "{err:?}");
        }
        assert!(log.append_all(&[event(9), event(10)], t(9)).is_err());
        assert!(
            log.queue().outcomes.is_empty(),
            "every outcome was collected"
        );
        assert_eq!(verify(dir.path(), &log.public_key()).unwrap().entries, 1);
    }

    /// Appends `n` entries in batches (fast), session `s{i % sessions}`.
    fn big_log(dir: &Path, n: u64, sessions: u64) -> AuditLog {
        let log = AuditLog::open(dir, signer()).unwrap();
        let events: Vec<Event> = (0..n)
            .map(|i| {
                Event::new(EventKind::AttestationPassed)
                    .session(format!("s{}", i % sessions))
                    .principal(key_digest(&i.to_be_bytes()))
            })
            .collect();
        for chunk in events.chunks(500) {
            log.append_all(chunk, t(1)).unwrap();
        }
        log
    }

    #[test]
    fn the_index_is_sparse_and_reads_seek_instead_of_scanning_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let n = 3 * INDEX_EVERY + 10;
        let log_len = {
            let _log = big_log(dir.path(), n, 7);
            std::fs::metadata(dir.path().join(LOG_FILE)).unwrap().len()
        };
        // Reopened: the index is rebuilt by the streaming check, one offset per 256 entries.
        let log = AuditLog::open(dir.path(), signer()).unwrap();
        let index = log.index().clone();
        assert_eq!(index.offsets.len(), 4);
        assert_eq!((index.last_seq, index.len), (n, log_len));
        // Each offset is where its entry starts.
        let bytes = std::fs::read(dir.path().join(LOG_FILE)).unwrap();
        for (i, offset) in index.offsets.iter().enumerate() {
            let line = bytes[*offset as usize..]
                .split(|b| *b == b'\n')
                .next()
                .unwrap();
            let entry: Entry = serde_json::from_slice(line).unwrap();
            assert_eq!(entry.seq, i as u64 * INDEX_EVERY + 1);
        }
        // Reading 5 entries near the end goes through fewer than 256 lines, not the log.
        let line_len = log_len / n;
        let page = log.read(n - 8, 5, u64::MAX, |_| true).unwrap();
        assert_eq!(
            page.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
            (n - 7..=n - 3).collect::<Vec<_>>()
        );
        assert_eq!(page.next, Some(n - 3));
        assert!(
            page.scanned_bytes < INDEX_EVERY * (line_len + 16),
            "scanned {} of {log_len} bytes",
            page.scanned_bytes
        );
        // Appends extend the index.
        let more: Vec<Event> = (0..INDEX_EVERY).map(event).collect();
        log.append_all(&more, t(2)).unwrap();
        assert_eq!(log.index().offsets.len(), 5);
        assert_eq!(log.index().last_seq, n + INDEX_EVERY);
        let page = log.read(4 * INDEX_EVERY, 1, u64::MAX, |_| true).unwrap();
        assert_eq!(page.entries[0].seq, 4 * INDEX_EVERY + 1);
        assert!(
            page.scanned_bytes < 2 * line_len + 64,
            "{}",
            page.scanned_bytes
        );
    }

    #[test]
    fn paged_filtered_reads_return_every_entry_once_within_the_scan_budget() {
        let dir = tempfile::tempdir().unwrap();
        let n = 2000;
        let log = big_log(dir.path(), n, 5);
        let line_len = log.index().len / n;
        let budget = 16 * 1024;
        let mut seen = Vec::new();
        let mut after = 0;
        let mut pages = 0;
        loop {
            let page = log
                .read(after, 100, budget, |e| e.session.as_deref() == Some("s3"))
                .unwrap();
            pages += 1;
            // Beyond the budget: at most the entries skipped after the seek, and one line.
            assert!(
                page.scanned_bytes < budget + INDEX_EVERY * line_len + 1024,
                "{}",
                page.scanned_bytes
            );
            seen.extend(page.entries.iter().map(|e| e.seq));
            match page.next {
                Some(next) => {
                    assert!(next > after);
                    after = next;
                }
                None => break,
            }
        }
        let expected: Vec<u64> = (1..=n).filter(|seq| (seq - 1) % 5 == 3).collect();
        assert_eq!(seen, expected);
        assert!(
            pages > 5,
            "the budget made the reads stop early ({pages} pages)"
        );
        // Past the end: nothing, no cursor.
        let page = log.read(n, 10, budget, |_| true).unwrap();
        assert_eq!((page.entries.len(), page.next), (0, None));
    }

    #[test]
    fn incremental_verify_checks_only_new_entries_and_sees_a_changed_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 3);
        assert_eq!(log.verify().unwrap().entries, 3);
        log.append_at(&event(4), t(4)).unwrap();
        log.append_at(&event(5), t(5)).unwrap();
        let summary = log.verify().unwrap();
        assert_eq!((summary.entries, summary.head_seq), (5, 5));
        assert_eq!(summary, verify(dir.path(), &log.public_key()).unwrap());
        // Rewrite the last verified entry in place (same length): the next check sees it.
        let path = dir.path().join(LOG_FILE);
        let text = std::fs::read_to_string(&path).unwrap();
        let tampered = text.replacen("\"session\":\"s5\"", "\"session\":\"s6\"", 1);
        assert_ne!(text, tampered);
        std::fs::write(&path, tampered).unwrap();
        let err = log.verify().unwrap_err();
        assert!(
            matches!(err, AuditError::Modified { seq: 5, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn streaming_check_reports_like_the_documented_order() {
        // A modified later entry wins over an earlier reordering; a gap over a broken link.
        let dir = tempfile::tempdir().unwrap();
        let public = log_with(dir.path(), 5).public_key();
        let text = std::fs::read_to_string(dir.path().join(LOG_FILE)).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines.swap(0, 1);
        let swapped = lines.join("\n") + "\n";
        let head = std::fs::read(dir.path().join(HEAD_FILE)).unwrap();
        assert!(matches!(
            verify_bytes(swapped.as_bytes(), &head, &public),
            Err(AuditError::Reordered { seq: 1 })
        ));
        let modified = swapped.replacen("\"s4\"", "\"sX\"", 1);
        assert!(matches!(
            verify_bytes(modified.as_bytes(), &head, &public),
            Err(AuditError::Modified { seq: 5, .. })
        ));
        let mut lines: Vec<&str> = text.lines().collect();
        lines.remove(2);
        let removed = lines.join("\n") + "\n";
        assert!(matches!(
            verify_bytes(removed.as_bytes(), &head, &public),
            Err(AuditError::Removed {
                after_seq: 2,
                next_seq: 4
            })
        ));
    }

    #[test]
    fn a_single_entry_verifies_on_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let log = log_with(dir.path(), 2);
        let page = log.read(0, 10, u64::MAX, |_| true).unwrap();
        for entry in &page.entries {
            verify_entry(entry, &log.public_key()).unwrap();
        }
        let mut forged = page.entries[1].clone();
        forged.session = Some("other".into());
        assert!(matches!(
            verify_entry(&forged, &log.public_key()),
            Err(AuditError::Modified { seq: 2, .. })
        ));
    }

    #[test]
    fn event_kinds_serialise_as_their_names() {
        for kind in [
            EventKind::SessionCreated,
            EventKind::SessionUpdated,
            EventKind::SessionDeleted,
            EventKind::SessionChangeRefused,
            EventKind::AttestationPassed,
            EventKind::AttestationRefused,
            EventKind::AttestationRefusedRepeated,
            EventKind::SecretGenerated,
            EventKind::SecretReleased,
            EventKind::KeyCreated,
            EventKind::AdminKeySet,
            EventKind::NamespaceCreated,
            EventKind::NamespaceUpdated,
            EventKind::NamespaceDeleted,
            EventKind::NamespaceChangeRefused,
        ] {
            assert_eq!(
                serde_json::to_string(&kind).unwrap(),
                format!("\"{}\"", kind.as_str())
            );
        }
    }

    /// A caller-chosen reason (a long service name, a Rego message) cannot grow an entry beyond
    /// the caps, and is cut on a character boundary.
    #[test]
    fn reasons_are_capped_in_length_and_number() {
        let long = "é".repeat(10_000);
        let mut event = Event::new(EventKind::AttestationRefused).reason(long);
        assert_eq!(event.reasons[0].chars().count(), MAX_REASON_CHARS);
        assert!(event.reasons[0].ends_with('…'));
        assert_eq!(cap_reason("short".into()), "short");
        assert_eq!(
            cap_reason("x".repeat(MAX_REASON_CHARS)).len(),
            MAX_REASON_CHARS
        );
        for i in 1..100 {
            event = event.reason(format!("r{i}"));
        }
        assert_eq!(event.reasons.len(), MAX_REASONS);
        assert_eq!(
            event.reasons.last().unwrap(),
            &format!(
                "… and {} more reasons not recorded",
                100 - (MAX_REASONS - 1)
            )
        );
        assert_eq!(
            event.reasons[MAX_REASONS - 2],
            format!("r{}", MAX_REASONS - 2)
        );
    }
}

//! Offline verification of the audit log: [`verify`], [`verify_bytes`], [`verify_entry`] and
//! the checks behind them. See the [module docs](super) for what they detect.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use super::entry::*;
use super::sign::*;
use super::*;

/// Why an audit log failed verification. Each variant has its own process exit code
/// ([`AuditError::exit_code`]), which `cloister audit verify` uses:
///
/// | exit code | variant | meaning |
/// | --- | --- | --- |
/// | 0 | — | the log verifies |
/// | 10 | [`Modified`](AuditError::Modified) | an entry's bytes, hash, signature or chain link do not verify |
/// | 11 | [`Removed`](AuditError::Removed) | a gap in `seq`: entries were deleted |
/// | 12 | [`Reordered`](AuditError::Reordered) | `seq` goes backwards or repeats, or an entry links to another out of order |
/// | 13 | [`Truncated`](AuditError::Truncated) | the signed head covers more entries than the log holds |
/// | 14 | [`Head`](AuditError::Head) | the signed head is missing, malformed or not signed by the given key |
/// | 2 | [`Io`](AuditError::Io) | the files could not be read (an operational error, not a verdict) |
///
/// Checks run in this order, and the first failure is reported: the head's signature; each
/// entry's form, hash and signature (in file order); ordering over the whole log; gaps; chain
/// links; finally the head against the last entries.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// Entry `seq` does not verify: `what` says which check failed.
    #[error("audit entry {seq} was modified: {what}")]
    Modified {
        /// The entry's `seq` (for an unparseable line: the `seq` it should have had).
        seq: u64,
        /// Which check failed.
        what: &'static str,
    },
    /// Entries after `after_seq` were removed; the next entry present is `next_seq`.
    #[error("audit entries were removed after entry {after_seq} (next present: {next_seq})")]
    Removed {
        /// The last entry before the gap (0: the log's start).
        after_seq: u64,
        /// The first entry after the gap.
        next_seq: u64,
    },
    /// Entry `seq` is out of order.
    #[error("audit entry {seq} is out of order")]
    Reordered {
        /// The entry found out of order.
        seq: u64,
    },
    /// The signed head says the log had `head_seq` entries; it ends at `last_seq`.
    #[error(
        "audit log truncated: the signed head covers entry {head_seq}, the log ends at {last_seq}"
    )]
    Truncated {
        /// The head's `seq`.
        head_seq: u64,
        /// The last complete entry present (0: none).
        last_seq: u64,
    },
    /// The signed head cannot be trusted.
    #[error("audit head ({HEAD_FILE}) {reason}")]
    Head {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Reading the log failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl AuditError {
    /// The process exit code for this failure (see the table on [`AuditError`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            AuditError::Modified { .. } => 10,
            AuditError::Removed { .. } => 11,
            AuditError::Reordered { .. } => 12,
            AuditError::Truncated { .. } => 13,
            AuditError::Head { .. } => 14,
            AuditError::Io { .. } => 2,
        }
    }

    pub(super) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        AuditError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// What a successful verification found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Complete, verified entries.
    pub entries: u64,
    /// The `seq` the signed head covers.
    pub head_seq: u64,
    /// The last entry's hash (hex; 64 zeros for an empty log).
    pub last_hash: String,
    /// Complete entries after the head: written but not acknowledged before a crash.
    pub beyond_head: u64,
    /// Bytes of a partial last line (a write interrupted by a crash), not yet repaired.
    pub torn_tail_bytes: u64,
}

/// Verifies the audit log in data directory `dir` against `key`, read-only. Safe to run while
/// the CAS appends (the head is read first). Reads the log as a stream, line by line: memory
/// stays bounded by the longest entry, whatever the log's size. See [`AuditError`] for the
/// failures.
#[tracing::instrument(skip_all, fields(dir = %dir.display()))]
pub fn verify(dir: &Path, key: &AuditPublicKey) -> Result<Summary, AuditError> {
    let head = read_head(dir, key)?.ok_or(AuditError::Head {
        reason: "is missing",
    })?;
    let log_path = dir.join(LOG_FILE);
    let checked = match File::open(&log_path) {
        Ok(file) => check(
            BufReader::new(file),
            &log_path,
            Start::GENESIS,
            &head,
            key,
            None,
            |hash| any_entry_in_file(&log_path, hash),
        )?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            check(&[][..], &log_path, Start::GENESIS, &head, key, None, |_| {
                Ok(false)
            })?
        }
        Err(e) => return Err(AuditError::io("read", &log_path, e)),
    };
    Ok(checked.summary(&head))
}

/// Verifies a log and its head given as bytes (the contents of `audit.log` and `audit.head`),
/// for logs that are not in a local directory (uploaded, or fetched from a replica).
pub fn verify_bytes(log: &[u8], head: &[u8], key: &AuditPublicKey) -> Result<Summary, AuditError> {
    let head = parse_head(head, key)?;
    let path = Path::new(LOG_FILE);
    let checked = check(log, path, Start::GENESIS, &head, key, None, |hash| {
        any_entry(log, path, hash)
    })?;
    Ok(checked.summary(&head))
}

/// Checks one entry on its own, as the log's first check does: canonical form, hash and
/// signature by `key`. For entries read one by one (a page of `GET /v1/audit/entries`), whose
/// chain cannot be followed because other entries are not visible to the reader.
pub fn verify_entry(entry: &Entry, key: &AuditPublicKey) -> Result<(), AuditError> {
    let text = serde_json::to_string(entry).map_err(|_| AuditError::Modified {
        seq: entry.seq,
        what: "not a valid entry",
    })?;
    check_line(text.as_bytes(), entry.seq, key).map(|_| ())
}

/// Reads and checks the head; `Ok(None)` if it does not exist.
pub(super) fn read_head(dir: &Path, key: &AuditPublicKey) -> Result<Option<Head>, AuditError> {
    let path = dir.join(HEAD_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => parse_head(&bytes, key).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AuditError::io("read", &path, e)),
    }
}

/// Parses the head in canonical form and checks its signature.
pub(super) fn parse_head(bytes: &[u8], key: &AuditPublicKey) -> Result<Head, AuditError> {
    let malformed = || AuditError::Head {
        reason: "is malformed",
    };
    let text = std::str::from_utf8(bytes).map_err(|_| malformed())?;
    let line = text.strip_suffix('\n').ok_or_else(malformed)?;
    let head: Head = serde_json::from_str(line).map_err(|_| malformed())?;
    if serde_json::to_string(&head).ok().as_deref() != Some(line) {
        return Err(malformed());
    }
    if !key.verifies(&head_message(head.seq, &head.hash), &head.signature) {
        return Err(AuditError::Head {
            reason: "is not signed by this key (wrong key, or the head was modified)",
        });
    }
    Ok(head)
}

/// The result of checking the log's bytes.
pub(super) struct Checked {
    pub(super) entries: u64,
    pub(super) last_seq: u64,
    pub(super) last_hash: String,
    /// Where the last complete entry starts (its line's first byte).
    pub(super) last_start: u64,
    /// Length of the complete lines (everything up to and including the last newline).
    pub(super) complete_len: u64,
    pub(super) torn_tail_bytes: u64,
}

impl Checked {
    pub(super) fn summary(&self, head: &Head) -> Summary {
        Summary {
            entries: self.entries,
            head_seq: head.seq,
            last_hash: self.last_hash.clone(),
            beyond_head: self.last_seq.saturating_sub(head.seq),
            torn_tail_bytes: self.torn_tail_bytes,
        }
    }
}

/// Where a check starts: after entry `seq` (0: the log's start) with hash `hash`, whose line
/// ends at byte `offset`.
#[derive(Clone, Copy)]
pub(super) struct Start<'a> {
    pub(super) seq: u64,
    pub(super) hash: &'a str,
    pub(super) offset: u64,
}

impl Start<'_> {
    pub(super) const GENESIS: Start<'static> = Start {
        seq: 0,
        hash: GENESIS,
        offset: 0,
    };
}

/// Parses one line (without its newline) and checks its form, hash and signature. `guess` is
/// the `seq` to report for a line that does not parse.
pub(super) fn check_line(
    line: &[u8],
    guess: u64,
    key: &AuditPublicKey,
) -> Result<Entry, AuditError> {
    let text = std::str::from_utf8(line).map_err(|_| AuditError::Modified {
        seq: guess,
        what: "not UTF-8",
    })?;
    let entry: Entry = serde_json::from_str(text).map_err(|_| AuditError::Modified {
        seq: guess,
        what: "not a valid entry",
    })?;
    let seq = entry.seq;
    if serde_json::to_string(&entry).ok().as_deref() != Some(text) {
        return Err(AuditError::Modified {
            seq,
            what: "not in canonical form",
        });
    }
    let hash_bytes = entry.compute_hash();
    if hex::encode(hash_bytes) != entry.hash {
        return Err(AuditError::Modified {
            seq,
            what: "hash does not match the content",
        });
    }
    if !key.verifies(&hash_bytes, &entry.signature) {
        return Err(AuditError::Modified {
            seq,
            what: "signature does not verify",
        });
    }
    Ok(entry)
}

/// Verifies the log read from `reader` (the lines after `start`) against the (already
/// authenticated) head, in one streaming pass that keeps O(1) state: the first failure of each
/// kind is remembered and reported in the documented order ([`AuditError`]), so the verdict is
/// the one a check of the whole log in memory gives. `links_elsewhere(h)` says whether any
/// entry of the log has hash `h` (a second pass, needed only when a chain link is broken).
/// With `index`, the start offset of every [`INDEX_EVERY`]th entry (seq 1, 257, …) is pushed.
pub(super) fn check<R: BufRead>(
    mut reader: R,
    path: &Path,
    start: Start<'_>,
    head: &Head,
    key: &AuditPublicKey,
    mut index: Option<&mut Vec<u64>>,
    links_elsewhere: impl FnOnce(&str) -> Result<bool, AuditError>,
) -> Result<Checked, AuditError> {
    let mut line = Vec::new();
    let mut offset = start.offset;
    let mut entries = 0u64;
    let mut torn_tail_bytes = 0u64;
    let mut last_start = start.offset;
    // The previous entry's seq and hash (the start's, before the first line).
    let mut prev_seq = start.seq;
    let mut prev_hash = start.hash.to_owned();
    // The first failure of each kind, in the order they are reported.
    let mut backward: Option<u64> = None;
    let mut gap: Option<(u64, u64)> = None;
    let mut broken_link: Option<(u64, String)> = None;
    let mut head_hash: Option<String> = None;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        if line.last() != Some(&b'\n') {
            torn_tail_bytes = n as u64;
            break;
        }
        let line_start = offset;
        offset += n as u64;
        let position = start.seq + entries; // entries before this line
        // 1. Each entry on its own: canonical form, hash, signature (the first failure wins).
        let entry = check_line(&line[..n - 1], prev_seq.saturating_add(1), key)?;
        if let Some(index) = index.as_deref_mut()
            && position.is_multiple_of(INDEX_EVERY)
        {
            index.push(line_start);
        }
        let seq = entry.seq;
        // 2. Order: a step backwards (a swap also makes gaps, so this is reported first).
        if backward.is_none() && (position > 0) && seq <= prev_seq {
            backward = Some(seq);
        }
        // 3. Gaps.
        if gap.is_none() && seq != prev_seq.wrapping_add(1) {
            gap = Some((prev_seq, seq));
        }
        // 4. Chain links.
        if broken_link.is_none() && entry.prev_hash != prev_hash {
            broken_link = Some((seq, entry.prev_hash));
        }
        if seq == head.seq && head_hash.is_none() {
            head_hash = Some(entry.hash.clone());
        }
        entries += 1;
        prev_seq = seq;
        prev_hash = entry.hash;
        last_start = line_start;
    }
    if let Some(seq) = backward {
        return Err(AuditError::Reordered { seq });
    }
    if let Some((after_seq, next_seq)) = gap {
        return Err(AuditError::Removed {
            after_seq,
            next_seq,
        });
    }
    if let Some((seq, link)) = broken_link {
        return Err(if links_elsewhere(&link)? {
            AuditError::Reordered { seq }
        } else {
            AuditError::Modified {
                seq,
                what: "prev_hash does not link to the previous entry",
            }
        });
    }
    // 5. The head. seqs now run start.seq + 1 ..= last_seq without gaps.
    let last_seq = prev_seq;
    if head.seq > last_seq {
        return Err(AuditError::Truncated {
            head_seq: head.seq,
            last_seq,
        });
    }
    if head.seq < start.seq {
        return Err(AuditError::Head {
            reason: "is behind entries already verified (rolled back)",
        });
    }
    let expected = if head.seq == start.seq {
        start.hash.to_owned()
    } else {
        head_hash.unwrap_or_else(|| GENESIS.to_owned())
    };
    if head.hash != expected {
        return Err(AuditError::Modified {
            seq: head.seq,
            what: "differs from the signed head",
        });
    }
    Ok(Checked {
        entries,
        last_seq,
        last_hash: prev_hash,
        last_start,
        complete_len: offset,
        torn_tail_bytes,
    })
}

/// Whether any complete, parseable entry read from `reader` has hash `hash`.
pub(super) fn any_entry<R: BufRead>(
    mut reader: R,
    path: &Path,
    hash: &str,
) -> Result<bool, AuditError> {
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| AuditError::io("read", path, e))?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Ok(false);
        }
        if serde_json::from_slice::<Entry>(&line[..n - 1]).is_ok_and(|e| e.hash == hash) {
            return Ok(true);
        }
    }
}

/// [`any_entry`] over the log file at `path`.
pub(super) fn any_entry_in_file(path: &Path, hash: &str) -> Result<bool, AuditError> {
    let file = File::open(path).map_err(|e| AuditError::io("read", path, e))?;
    any_entry(BufReader::new(file), path, hash)
}

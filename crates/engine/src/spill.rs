//! Encrypted spill: every temporary file DataFusion writes is AES-256-GCM encrypted.
//!
//! # Mechanism
//!
//! DataFusion 55 routes every temporary file through its [`DiskManager`](datafusion::execution::DiskManager):
//! sorts, aggregations, joins and repartitions spill through a `SpillManager`, which asks the
//! disk manager for a file and writes Arrow IPC into it through the file's
//! [`SpillWriter`], and reads it back through [`SpillFile::read_stream`]. Since 55 the disk
//! manager can be given a custom [`TempFileFactory`] (`DiskManagerBuilder::with_temp_file_factory`,
//! "custom mode"); then *no* file is created by DataFusion itself. [`EncryptedSpill`] is that
//! factory: it is the cleanest real mechanism, because it sits below every spilling operator
//! (no operator-level hooks to keep in sync) and above the file system (no OS-level tricks).
//! The alternatives were worse: a `Directories` disk manager on an encrypted file system is
//! outside our control, and wrapping individual operators misses new spilling operators.
//!
//! One hole remains in DataFusion itself: `SET datafusion.runtime.temp_directory = …` (and
//! `RESET` of it) rebuilds the disk manager in plain-directory mode. The engine's SQL entry point
//! ([`Engine::sql`](crate::Engine::sql)) refuses those statements.
//!
//! # Key
//!
//! A random 256-bit secret is drawn when an [`EncryptedSpill`] is made and goes straight into
//! an HKDF-SHA256 pseudo-random key; it never leaves memory and is never written anywhere.
//! Each file gets a random 16-byte id and its own AES-256-GCM key
//! `HKDF-Expand(prk, info = file id)`, so nonces are simply chunk counters and can never repeat
//! under one key (a file can be opened for writing once).
//!
//! # Format
//!
//! ```text
//! header   = "CLSPILL1" ‖ file_id[16]
//! chunk i  = len: u32 LE ‖ AES-256-GCM(key_file, nonce = 0[4] ‖ i: u64 BE,
//!                                      aad = "CLSPILL1" ‖ file_id ‖ i: u64 BE ‖ final: u8)
//! ```
//!
//! The format itself — header, length framing, per-chunk seal and open — is
//! [`cloister_formats::spill`], where its parsers are fuzzed without DataFusion; this module
//! writes files in it and reads them back asynchronously.
//!
//! Plaintext is cut into chunks of at most `chunk_size` bytes (64 KiB by default; a flush
//! seals a shorter chunk so that a concurrent reader sees the data). The last chunk (possibly
//! empty) has `final = 1`. Because the chunk index and the final flag are authenticated, and the
//! reader also knows from memory how many chunks the writer sealed, a reordered, replaced,
//! truncated or extended file — or one copied from another file — fails with
//! [`Error::SpillIntegrity`]. What leaks: the number and sizes of chunks and files, and when
//! they are written.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use cloister_formats::spill::{
    ChunkCipher, FILE_ID_LEN, HEADER_LEN, LEN_PREFIX, TAG_LEN, body_len, spill_prk,
};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SpillFile, SpillWriter, TempFileFactory};
use futures::Stream;
use ring::hkdf;
use tempfile::{NamedTempFile, TempDir};
use tokio::io::{AsyncRead, AsyncReadExt, BufReader};
use zeroize::Zeroizing;

use crate::Error;
use crate::kmt::fill_random;

/// Default plaintext bytes per chunk.
pub const DEFAULT_CHUNK_SIZE: usize = 64 * 1024;
/// Default quota for all encrypted spill files together (DataFusion's default too).
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024 * 1024;

/// Where and how spill files are written.
#[derive(Clone, Debug)]
pub struct SpillConfig {
    directory: Option<PathBuf>,
    chunk_size: usize,
    max_bytes: u64,
}

impl Default for SpillConfig {
    fn default() -> Self {
        Self {
            directory: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

impl SpillConfig {
    /// Put spill files in a fresh directory inside `dir` (default: the OS temp directory).
    pub fn directory(mut self, dir: impl Into<PathBuf>) -> Self {
        self.directory = Some(dir.into());
        self
    }

    /// Plaintext bytes per chunk (at least 1 KiB, at most 16 MiB).
    pub fn chunk_size(mut self, bytes: usize) -> Self {
        self.chunk_size = bytes.clamp(1024, 16 * 1024 * 1024);
        self
    }

    /// Quota for all spill files together, in bytes on disk.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// Told about every spill file when its writer finishes (for audits and tests).
pub trait SpillObserver: Send + Sync {
    /// The file at `path` is complete: `bytes` on disk in `chunks` chunks.
    fn file_finished(&self, path: &Path, bytes: u64, chunks: u64);
}

/// Counters over all spill files of one [`EncryptedSpill`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpillStats {
    /// Files created.
    pub files_created: u64,
    /// Files whose writer finished.
    pub files_finished: u64,
    /// Chunks sealed and written.
    pub chunks_written: u64,
    /// Bytes written to disk (headers, lengths, ciphertext and tags).
    pub bytes_written: u64,
    /// Bytes on disk now (files not yet deleted).
    pub bytes_on_disk: u64,
}

/// State shared by the factory and all its files.
struct Shared {
    prk: hkdf::Prk,
    config: SpillConfig,
    dir: Mutex<Option<Arc<TempDir>>>,
    observer: Option<Arc<dyn SpillObserver>>,
    files_created: AtomicU64,
    files_finished: AtomicU64,
    chunks_written: AtomicU64,
    bytes_written: AtomicU64,
    bytes_on_disk: AtomicU64,
}

/// DataFusion [`TempFileFactory`] writing AES-256-GCM encrypted, chunked spill files.
///
/// Cheap to clone; clones share the key, the directory and the counters.
#[derive(Clone)]
pub struct EncryptedSpill {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EncryptedSpill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSpill")
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl EncryptedSpill {
    /// A factory with a fresh random key.
    pub fn new(config: SpillConfig) -> Result<Self, Error> {
        Self::build(config, None)
    }

    /// A factory with a fresh random key that tells `observer` about every finished file.
    pub fn with_observer(
        config: SpillConfig,
        observer: Arc<dyn SpillObserver>,
    ) -> Result<Self, Error> {
        Self::build(config, Some(observer))
    }

    fn build(config: SpillConfig, observer: Option<Arc<dyn SpillObserver>>) -> Result<Self, Error> {
        let mut secret = Zeroizing::new([0u8; 32]);
        fill_random(secret.as_mut())?;
        let prk = spill_prk(secret.as_ref());
        Ok(Self {
            shared: Arc::new(Shared {
                prk,
                config,
                dir: Mutex::new(None),
                observer,
                files_created: AtomicU64::new(0),
                files_finished: AtomicU64::new(0),
                chunks_written: AtomicU64::new(0),
                bytes_written: AtomicU64::new(0),
                bytes_on_disk: AtomicU64::new(0),
            }),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> SpillStats {
        let s = &self.shared;
        SpillStats {
            files_created: s.files_created.load(Ordering::Relaxed),
            files_finished: s.files_finished.load(Ordering::Relaxed),
            chunks_written: s.chunks_written.load(Ordering::Relaxed),
            bytes_written: s.bytes_written.load(Ordering::Relaxed),
            bytes_on_disk: s.bytes_on_disk.load(Ordering::Relaxed),
        }
    }

    /// The directory spill files go to, once the first one was created.
    pub fn directory(&self) -> Option<PathBuf> {
        self.lock_dir().as_ref().map(|d| d.path().to_path_buf())
    }

    fn lock_dir(&self) -> std::sync::MutexGuard<'_, Option<Arc<TempDir>>> {
        // The guarded value is replaced in one assignment, so a poisoned lock is still sound.
        self.shared
            .dir
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Create one encrypted spill file (what DataFusion's disk manager calls).
    pub fn create_file(&self) -> Result<Arc<EncryptedSpillFile>, Error> {
        let dir = {
            let mut guard = self.lock_dir();
            match guard.as_ref() {
                Some(dir) => Arc::clone(dir),
                None => {
                    let parent = self
                        .shared
                        .config
                        .directory
                        .clone()
                        .unwrap_or_else(std::env::temp_dir);
                    std::fs::create_dir_all(&parent).map_err(|source| Error::Io {
                        context: "creating the spill directory",
                        source,
                    })?;
                    let dir = Arc::new(
                        tempfile::Builder::new()
                            .prefix("cloister-spill-")
                            .tempdir_in(&parent)
                            .map_err(|source| Error::Io {
                                context: "creating the spill directory",
                                source,
                            })?,
                    );
                    *guard = Some(Arc::clone(&dir));
                    dir
                }
            }
        };
        let file = tempfile::Builder::new()
            .prefix("spill-")
            .tempfile_in(dir.path())
            .map_err(|source| Error::Io {
                context: "creating a spill file",
                source,
            })?;
        let mut file_id = [0u8; FILE_ID_LEN];
        fill_random(&mut file_id)?;
        let cipher = ChunkCipher::derive(&self.shared.prk, file_id)?;
        self.shared.files_created.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(EncryptedSpillFile {
            file,
            _dir: dir,
            state: Arc::new(FileState {
                cipher,
                chunk_size: self.shared.config.chunk_size,
                progress: AtomicU64::new(0),
                writer_opened: AtomicBool::new(false),
                header_written: AtomicBool::new(false),
                bytes: AtomicU64::new(0),
                spill: Arc::clone(&self.shared),
            }),
        }))
    }
}

impl TempFileFactory for EncryptedSpill {
    fn create_temp_file(&self, description: &str) -> DfResult<Arc<dyn SpillFile>> {
        tracing::debug!(request = description, "creating encrypted spill file");
        Ok(self.create_file()?)
    }
}

/// What one file's writer has done, shared with its readers. `progress` packs
/// `sealed_chunks << 2 | abandoned << 1 | finished` so that readers see both in one load.
struct FileState {
    cipher: ChunkCipher,
    chunk_size: usize,
    progress: AtomicU64,
    writer_opened: AtomicBool,
    header_written: AtomicBool,
    bytes: AtomicU64,
    spill: Arc<Shared>,
}

const FINISHED: u64 = 1;
const ABANDONED: u64 = 2;

impl FileState {
    fn progress(&self) -> (u64, bool, bool) {
        let p = self.progress.load(Ordering::Acquire);
        (p >> 2, p & FINISHED != 0, p & ABANDONED != 0)
    }

    fn add_bytes(&self, n: u64) -> Result<(), Error> {
        let limit = self.spill.config.max_bytes;
        let before = self.spill.bytes_on_disk.fetch_add(n, Ordering::Relaxed);
        if before + n > limit {
            self.spill.bytes_on_disk.fetch_sub(n, Ordering::Relaxed);
            return Err(Error::SpillQuotaExceeded { limit });
        }
        self.bytes.fetch_add(n, Ordering::Relaxed);
        self.spill.bytes_written.fetch_add(n, Ordering::Relaxed);
        Ok(())
    }
}

/// One encrypted spill file; deleted when the last reference is dropped.
pub struct EncryptedSpillFile {
    file: NamedTempFile,
    _dir: Arc<TempDir>,
    state: Arc<FileState>,
}

impl std::fmt::Debug for EncryptedSpillFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (chunks, finished, _) = self.state.progress();
        f.debug_struct("EncryptedSpillFile")
            .field("path", &self.file.path())
            .field("chunks", &chunks)
            .field("finished", &finished)
            .finish()
    }
}

impl Drop for EncryptedSpillFile {
    fn drop(&mut self) {
        let bytes = self.state.bytes.load(Ordering::Relaxed);
        self.state
            .spill
            .bytes_on_disk
            .fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl EncryptedSpillFile {
    /// The file's path (its bytes are ciphertext).
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// Open the (single) writer.
    pub fn writer(&self) -> Result<EncryptedSpillWriter, Error> {
        if self.state.writer_opened.swap(true, Ordering::AcqRel) {
            // A second writer would restart the chunk counter and reuse nonces.
            return Err(Error::Internal("spill file opened for writing twice"));
        }
        let mut file = self
            .file
            .as_file()
            .try_clone()
            .map_err(|source| Error::Io {
                context: "opening a spill file for writing",
                source,
            })?;
        let header = self.state.cipher.header();
        self.state.add_bytes(header.len() as u64)?;
        file.write_all(&header).map_err(|source| Error::Io {
            context: "writing a spill file",
            source,
        })?;
        self.state.header_written.store(true, Ordering::Release);
        Ok(EncryptedSpillWriter {
            file,
            path: self.file.path().to_path_buf(),
            state: Arc::clone(&self.state),
            buffer: Zeroizing::new(Vec::with_capacity(self.state.chunk_size)),
            next_chunk: 0,
            done: false,
        })
    }

    /// A stream of the decrypted contents, chunk by chunk, verified.
    pub fn reader(
        &self,
    ) -> Result<impl Stream<Item = Result<Bytes, Error>> + Send + 'static, Error> {
        let file = File::open(self.file.path()).map_err(|source| Error::Io {
            context: "opening a spill file for reading",
            source,
        })?;
        let reader = BufReader::with_capacity(
            LEN_PREFIX + self.state.chunk_size + TAG_LEN,
            tokio::fs::File::from_std(file),
        );
        Ok(chunk_stream(reader, Arc::clone(&self.state)))
    }
}

impl SpillFile for EncryptedSpillFile {
    fn path(&self) -> Option<&Path> {
        Some(self.file.path())
    }

    fn size(&self) -> Option<u64> {
        Some(self.state.bytes.load(Ordering::Relaxed))
    }

    fn read_stream(&self) -> DfResult<Pin<Box<dyn Stream<Item = DfResult<Bytes>> + Send>>> {
        use futures::StreamExt;
        let stream = self.reader()?;
        Ok(Box::pin(stream.map(|item| {
            item.map_err(|e| DataFusionError::External(Box::new(e)))
        })))
    }

    fn open_writer(&self) -> DfResult<Box<dyn SpillWriter>> {
        Ok(Box::new(self.writer()?))
    }
}

/// Writer of one encrypted spill file: buffers plaintext and seals it in chunks.
pub struct EncryptedSpillWriter {
    file: File,
    path: PathBuf,
    state: Arc<FileState>,
    buffer: Zeroizing<Vec<u8>>,
    next_chunk: u64,
    done: bool,
}

impl std::fmt::Debug for EncryptedSpillWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptedSpillWriter")
            .field("path", &self.path)
            .field("buffered", &self.buffer.len())
            .field("next_chunk", &self.next_chunk)
            .finish()
    }
}

impl EncryptedSpillWriter {
    fn seal_and_write(&mut self, take: usize, last: bool) -> Result<(), Error> {
        let index = self.next_chunk;
        let sealed = self.state.cipher.seal(index, last, &self.buffer[..take])?;
        self.state.add_bytes(sealed.len() as u64)?;
        self.file.write_all(&sealed).map_err(|source| Error::Io {
            context: "writing a spill file",
            source,
        })?;
        self.buffer.drain(..take);
        self.next_chunk += 1;
        // Published only after the bytes are written, so that readers never see a chunk that is
        // not completely on disk.
        let finished = if last { FINISHED } else { 0 };
        self.state
            .progress
            .store((self.next_chunk << 2) | finished, Ordering::Release);
        self.state
            .spill
            .chunks_written
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Seal the last chunk; no more writes afterwards.
    pub fn finish_file(&mut self) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        let remaining = self.buffer.len();
        self.seal_and_write(remaining, true)?;
        self.file.flush().map_err(|source| Error::Io {
            context: "writing a spill file",
            source,
        })?;
        self.done = true;
        let spill = &self.state.spill;
        spill.files_finished.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = &spill.observer {
            observer.file_finished(
                &self.path,
                self.state.bytes.load(Ordering::Relaxed),
                self.next_chunk,
            );
        }
        Ok(())
    }
}

impl Write for EncryptedSpillWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.done {
            return Err(Error::Internal("write after the spill file was finished").into());
        }
        let chunk_size = self.state.chunk_size;
        let mut rest = buf;
        while !rest.is_empty() {
            let room = chunk_size - self.buffer.len();
            let take = room.min(rest.len());
            self.buffer.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.buffer.len() == chunk_size {
                self.seal_and_write(chunk_size, false)?;
            }
        }
        Ok(buf.len())
    }

    /// Seals what is buffered as a (short) chunk, so that a concurrent reader can see it.
    fn flush(&mut self) -> std::io::Result<()> {
        if !self.done && !self.buffer.is_empty() {
            let len = self.buffer.len();
            self.seal_and_write(len, false)?;
        }
        self.file.flush()
    }
}

impl SpillWriter for EncryptedSpillWriter {
    fn finish(&mut self) -> DfResult<()> {
        Ok(self.finish_file()?)
    }
}

impl Drop for EncryptedSpillWriter {
    fn drop(&mut self) {
        if !self.done {
            // Readers must not take a file whose writer gave up for a complete one.
            self.state.progress.fetch_or(ABANDONED, Ordering::AcqRel);
        }
    }
}

/// Where a reader is in a file.
struct ReadState<R> {
    reader: R,
    state: Arc<FileState>,
    next_chunk: u64,
    header_checked: bool,
    done: bool,
}

fn integrity(chunk: u64, reason: &'static str) -> Error {
    Error::SpillIntegrity { chunk, reason }
}

/// Decrypted chunks of a spill file, verified against the writer's in-memory progress.
///
/// While the writer is still active, the stream ends at the last chunk sealed so far (as a
/// plain file read ends at its current end); once it has finished, a missing final chunk is an
/// integrity error.
fn chunk_stream<R>(
    reader: R,
    state: Arc<FileState>,
) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let init = ReadState {
        reader,
        state,
        next_chunk: 0,
        header_checked: false,
        done: false,
    };
    futures::stream::try_unfold(init, next_chunk)
}

/// One step of [`chunk_stream`]: the next non-empty decrypted chunk, or the end.
async fn next_chunk<R>(mut st: ReadState<R>) -> Result<Option<(Bytes, ReadState<R>)>, Error>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    loop {
        if st.done {
            return Ok(None);
        }
        if !st.state.header_written.load(Ordering::Acquire) {
            return Ok(None); // nothing written yet
        }
        if !st.header_checked {
            let mut header = [0u8; HEADER_LEN];
            st.reader
                .read_exact(&mut header)
                .await
                .map_err(|_| integrity(0, "header missing or truncated"))?;
            st.state.cipher.check_header(&header)?;
            st.header_checked = true;
        }
        let (sealed, finished, abandoned) = st.state.progress();
        let index = st.next_chunk;
        if index >= sealed {
            if abandoned {
                return Err(integrity(index, "the writer did not finish this file"));
            }
            return Ok(None); // end of what the active writer has sealed so far
        }
        let last = finished && index + 1 == sealed;
        let mut len = [0u8; LEN_PREFIX];
        st.reader
            .read_exact(&mut len)
            .await
            .map_err(|_| integrity(index, "file truncated before a sealed chunk"))?;
        let len = body_len(index, len, st.state.chunk_size)?;
        let mut body = vec![0u8; len];
        st.reader
            .read_exact(&mut body)
            .await
            .map_err(|_| integrity(index, "file truncated inside a chunk"))?;
        let plain_len = st.state.cipher.open(index, last, &mut body)?;
        body.truncate(plain_len);
        st.next_chunk += 1;
        if last {
            let mut probe = [0u8; 1];
            let extra = st
                .reader
                .read(&mut probe)
                .await
                .map_err(|source| Error::Io {
                    context: "reading a spill file",
                    source,
                })?;
            if extra != 0 {
                return Err(integrity(index + 1, "data after the final chunk"));
            }
            st.done = true;
        }
        if !body.is_empty() {
            return Ok(Some((Bytes::from(body), st)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloister_formats::spill::MAGIC;
    use futures::TryStreamExt;

    fn spill(chunk_size: usize) -> (EncryptedSpill, TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let spill = EncryptedSpill::new(
            SpillConfig::default()
                .directory(dir.path())
                .chunk_size(chunk_size),
        )
        .unwrap();
        (spill, dir)
    }

    /// 5 KiB of text in 1 KiB chunks: 5 full chunks and an empty final one.
    fn written(spill: &EncryptedSpill) -> Arc<EncryptedSpillFile> {
        let file = spill.create_file().unwrap();
        let mut w = file.writer().unwrap();
        let text = "CANARY-plaintext-".repeat(5 * 1024 / 17 + 1);
        w.write_all(&text.as_bytes()[..5 * 1024]).unwrap();
        w.finish_file().unwrap();
        file
    }

    async fn read_all(file: &EncryptedSpillFile) -> Result<Vec<u8>, Error> {
        let chunks: Vec<Bytes> = file.reader()?.try_collect().await?;
        Ok(chunks.concat())
    }

    fn chunk_offsets(bytes: &[u8]) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut at = HEADER_LEN;
        while at < bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            out.push((at, LEN_PREFIX + len));
            at += LEN_PREFIX + len;
        }
        out
    }

    #[tokio::test]
    async fn round_trip_and_no_plaintext_on_disk() {
        let (spill, _dir) = spill(1024);
        let file = written(&spill);
        let on_disk = std::fs::read(file.path()).unwrap();
        assert!(on_disk.starts_with(MAGIC));
        assert!(!on_disk.windows(6).any(|w| w == b"CANARY"));
        assert_eq!(chunk_offsets(&on_disk).len(), 6);
        let plain = read_all(&file).await.unwrap();
        assert_eq!(plain.len(), 5 * 1024);
        assert!(plain.starts_with(b"CANARY-plaintext-"));
        let stats = spill.stats();
        assert_eq!(
            (
                stats.files_created,
                stats.files_finished,
                stats.chunks_written
            ),
            (1, 1, 6)
        );
        assert_eq!(stats.bytes_on_disk, on_disk.len() as u64);
        drop(file);
        assert_eq!(spill.stats().bytes_on_disk, 0);
    }

    async fn tampered(edit: impl FnOnce(&mut Vec<u8>)) -> Error {
        let (spill, _dir) = spill(1024);
        let file = written(&spill);
        let mut bytes = std::fs::read(file.path()).unwrap();
        edit(&mut bytes);
        std::fs::write(file.path(), &bytes).unwrap();
        read_all(&file).await.unwrap_err()
    }

    #[rstest::rstest]
    #[case::flipped_ciphertext_bit(|b: &mut Vec<u8>| { let (at, _) = chunk_offsets(b)[1]; b[at + 10] ^= 1; })]
    #[case::flipped_tag_bit(|b: &mut Vec<u8>| { let (at, len) = chunk_offsets(b)[2]; b[at + len - 1] ^= 0x80; })]
    #[case::swapped_chunks(|b: &mut Vec<u8>| {
        let c = chunk_offsets(b);
        let (a, la) = c[1];
        let (d, ld) = c[2];
        assert_eq!(la, ld);
        let first = b[a..a + la].to_vec();
        let second = b[d..d + ld].to_vec();
        b[a..a + la].copy_from_slice(&second);
        b[d..d + ld].copy_from_slice(&first);
    })]
    #[case::final_chunk_dropped(|b: &mut Vec<u8>| { let (at, _) = *chunk_offsets(b).last().unwrap(); b.truncate(at); })]
    #[case::truncated_mid_chunk(|b: &mut Vec<u8>| { let (at, _) = chunk_offsets(b)[3]; b.truncate(at + 100); })]
    #[case::data_appended(|b: &mut Vec<u8>| b.extend_from_slice(&[0; 40]))]
    #[case::header_replaced(|b: &mut Vec<u8>| b[MAGIC.len()] ^= 1)]
    #[case::length_inflated(|b: &mut Vec<u8>| { let (at, _) = chunk_offsets(b)[0]; b[at + 3] = 0x7f; })]
    #[tokio::test]
    async fn tampering_is_detected(#[case] edit: fn(&mut Vec<u8>)) {
        let err = tampered(edit).await;
        assert!(matches!(err, Error::SpillIntegrity { .. }), "{err:?}");
    }

    #[tokio::test]
    async fn a_chunk_from_another_file_is_refused() {
        let (spill, _dir) = spill(1024);
        let a = written(&spill);
        let b = written(&spill);
        let bytes_a = std::fs::read(a.path()).unwrap();
        let mut bytes_b = std::fs::read(b.path()).unwrap();
        let (at, len) = chunk_offsets(&bytes_a)[1];
        bytes_b[at..at + len].copy_from_slice(&bytes_a[at..at + len]);
        std::fs::write(b.path(), &bytes_b).unwrap();
        assert!(matches!(
            read_all(&b).await,
            Err(Error::SpillIntegrity { chunk: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_live_reader_sees_flushed_chunks_and_then_the_rest() {
        let (spill, _dir) = spill(1024);
        let file = spill.create_file().unwrap();
        let mut w = file.writer().unwrap();
        w.write_all(b"first batch").unwrap();
        w.flush().unwrap();
        // Like DataFusion's spill pool: read what is there while the writer is active.
        let mut live = Box::pin(file.reader().unwrap());
        assert_eq!(
            live.try_next().await.unwrap().unwrap(),
            Bytes::from_static(b"first batch")
        );
        assert!(live.try_next().await.unwrap().is_none());
        w.write_all(b"second").unwrap();
        w.finish_file().unwrap();
        assert_eq!(
            read_all(&file).await.unwrap(),
            b"first batchsecond".to_vec()
        );
    }

    #[tokio::test]
    async fn an_abandoned_file_does_not_read_as_complete() {
        let (spill, _dir) = spill(1024);
        let file = spill.create_file().unwrap();
        let mut w = file.writer().unwrap();
        w.write_all(b"partial").unwrap();
        w.flush().unwrap();
        drop(w);
        assert!(matches!(
            read_all(&file).await,
            Err(Error::SpillIntegrity { chunk: 1, .. })
        ));
    }

    #[test]
    fn a_second_writer_is_refused() {
        let (spill, _dir) = spill(1024);
        let file = spill.create_file().unwrap();
        let _w = file.writer().unwrap();
        assert!(matches!(file.writer(), Err(Error::Internal(_))));
    }

    #[test]
    fn quota_is_enforced() {
        let dir = tempfile::tempdir().unwrap();
        let spill = EncryptedSpill::new(
            SpillConfig::default()
                .directory(dir.path())
                .chunk_size(1024)
                .max_bytes(3000),
        )
        .unwrap();
        let file = spill.create_file().unwrap();
        let mut w = file.writer().unwrap();
        let err = w.write_all(&[0u8; 4096]).unwrap_err();
        assert!(matches!(
            Error::find_in(&err),
            Some(Error::SpillQuotaExceeded { limit: 3000 })
        ));
    }

    #[test]
    fn files_live_in_a_private_directory_and_are_deleted() {
        let (spill, dir) = spill(1024);
        let file = written(&spill);
        let path = file.path().to_path_buf();
        assert!(path.starts_with(dir.path()));
        assert_eq!(spill.directory().as_deref(), path.parent());
        drop(file);
        assert!(!path.exists());
    }
}

//! The app bundle: an app directory, archived deterministically and encrypted with AES-256-GCM
//! under a key the policy holds.
//!
//! # Format, version 1
//!
//! ```text
//! magic        8 bytes   "CLSTRBDL"
//! version      1 byte    1
//! key_id_len   1 byte    1..=64
//! key_id       key_id_len bytes, printable ASCII: the key's name (for messages; not secret)
//! digest      32 bytes   SHA-256 of the plaintext archive: what the measurement covers
//! key_check   16 bytes   HKDF-SHA256(key, info "cloister-bundle/v1 key check")
//! nonce       12 bytes   random
//! ciphertext   the rest  AES-256-GCM(HKDF-SHA256(key, info "cloister-bundle/v1 encryption"),
//!                        nonce, archive, aad = every header byte above), tag included
//! ```
//!
//! The header is authenticated as associated data, so changing any of it (the digest included)
//! makes the bundle fail to open: [`Error::BundleTampered`]. The digest sits in the clear so that
//! the measurement can be computed before attestation, when the key is not yet known
//! (`cloister measure`, and the runtime before it asks for its configuration); once opened, the
//! archive's digest is recomputed and must equal it. The key check tells a wrong key
//! ([`Error::WrongBundleKey`]) from a tampered bundle, and commits the bundle to one key (AES-GCM
//! alone does not). Both derived keys come from the bundle key through HKDF, so the key check
//! says nothing about the encryption key.
//!
//! The digest is public, like any measurement: it lets whoever guesses an app's exact contents
//! confirm the guess, and nothing else.
//!
//! # The archive
//!
//! A tar (GNU format) of the regular files under the app directory, in byte order of their
//! relative `/`-separated paths, each with mode `0644`, uid and gid 0, no user or group names and
//! mtime 0, and no directory entries: the same files give the same archive, digest and
//! measurement on any machine. Symbolic links and special files are refused when packaging. When
//! opening, every entry must be a regular file with a relative path of plain components (no
//! `..`, no absolute path, no `\`), each path once: [`Error::UnsafePath`] otherwise.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hkdf::Hkdf;
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::Error;

/// The first bytes of every bundle.
pub const MAGIC: [u8; 8] = *b"CLSTRBDL";
/// The format version this build writes and reads.
pub const VERSION: u8 = 1;
/// The longest key id.
pub const MAX_KEY_ID_LEN: usize = 64;
/// The key id `package` uses unless told otherwise: the secret's name in the policy.
pub const DEFAULT_KEY_ID: &str = "bundle_key";
/// The largest bundle read or written (and the largest archive).
pub const MAX_BUNDLE_LEN: usize = 1 << 30;
/// The longest path inside a bundle.
pub const MAX_PATH_LEN: usize = 4096;

const DIGEST_LEN: usize = 32;
const KEY_CHECK_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const INFO_ENCRYPTION: &[u8] = b"cloister-bundle/v1 encryption";
const INFO_KEY_CHECK: &[u8] = b"cloister-bundle/v1 key check";

/// A bundle key: 32 bytes, wiped on drop, absent from `Debug` (which shows its key check).
pub struct BundleKey(Zeroizing<[u8; 32]>);

impl fmt::Debug for BundleKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BundleKey")
            .field("check", &hex::encode(self.key_check()))
            .finish_non_exhaustive()
    }
}

impl BundleKey {
    /// A fresh key from the operating system's generator.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut())
            .map_err(|_| Error::Internal("the OS random generator failed"))?;
        Ok(Self(key))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// A key as written in a key file or a configuration value: 64 hex digits or standard
    /// base64 of 32 bytes (surrounding white space ignored), or exactly 32 raw bytes. `origin`
    /// names where it came from, for the error.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Self, Error> {
        let invalid = |reason| Error::InvalidKey {
            origin: origin.to_owned(),
            reason,
        };
        let text = std::str::from_utf8(bytes).ok().map(str::trim);
        let mut key = Zeroizing::new([0u8; 32]);
        match text {
            Some(t) if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
                hex::decode_to_slice(t, key.as_mut()).map_err(|_| invalid("not 64 hex digits"))?;
            }
            Some(t) if t.len() == 44 => {
                let decoded = Zeroizing::new(
                    B64.decode(t)
                        .map_err(|_| invalid("neither hex, base64 nor 32 raw bytes"))?,
                );
                if decoded.len() != 32 {
                    return Err(invalid("base64 of other than 32 bytes"));
                }
                key.copy_from_slice(&decoded);
            }
            _ if bytes.len() == 32 => key.copy_from_slice(bytes),
            _ => {
                return Err(invalid(
                    "a bundle key is 32 bytes: 64 hex digits, base64, or raw",
                ));
            }
        }
        Ok(Self(key))
    }

    /// The key as 64 lower-case hex digits (how `keygen` writes key files).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    fn derive<const N: usize>(&self, info: &[u8]) -> Zeroizing<[u8; N]> {
        let mut out = Zeroizing::new([0u8; N]);
        // HKDF-SHA256 can expand up to 8160 bytes; N is 16 or 32 here.
        let hk = Hkdf::<Sha256>::new(None, self.0.as_ref());
        if hk.expand(info, out.as_mut()).is_err() {
            unreachable!("HKDF-SHA256 expands {N} bytes");
        }
        out
    }

    fn key_check(&self) -> [u8; KEY_CHECK_LEN] {
        *self.derive::<KEY_CHECK_LEN>(INFO_KEY_CHECK)
    }

    fn cipher(&self) -> Aes256Gcm {
        let key = self.derive::<32>(INFO_ENCRYPTION);
        Aes256Gcm::new(key.as_ref().into())
    }
}

/// SHA-256 of a bundle's plaintext archive.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BundleDigest([u8; DIGEST_LEN]);

impl BundleDigest {
    /// The digest of an archive.
    pub fn of(archive: &[u8]) -> Self {
        Self(Sha256::digest(archive).into())
    }

    /// A digest from its bytes.
    pub fn from_bytes(bytes: [u8; DIGEST_LEN]) -> Self {
        Self(bytes)
    }

    /// A digest from 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = [0u8; DIGEST_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(Self(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; DIGEST_LEN] {
        &self.0
    }
}

impl fmt::Display for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BundleDigest({self})")
    }
}

/// A bundle's header, readable without the key (and not yet authenticated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The format version.
    pub version: u8,
    /// The key's name.
    pub key_id: String,
    /// The plaintext archive's digest, as the header claims it.
    pub digest: BundleDigest,
    key_check: [u8; KEY_CHECK_LEN],
    nonce: [u8; NONCE_LEN],
    /// The header's length in bytes (the associated data).
    len: usize,
}

impl Header {
    /// Read the header of `bytes`, checking its shape (not its authenticity: that needs the key).
    pub fn parse(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() < MAGIC.len() || bytes[..MAGIC.len()] != MAGIC {
            return Err(Error::not_a_bundle(
                "it does not start with the bundle magic",
            ));
        }
        let mut at = MAGIC.len();
        let mut take = |n: usize, what: &str| -> Result<&[u8], Error> {
            let end = at
                .checked_add(n)
                .filter(|end| *end <= bytes.len())
                .ok_or_else(|| Error::not_a_bundle(format!("truncated in its {what}")))?;
            let out = &bytes[at..end];
            at = end;
            Ok(out)
        };
        let version = take(1, "version")?[0];
        if version != VERSION {
            return Err(Error::UnsupportedBundleVersion {
                found: version,
                supported: VERSION,
            });
        }
        let key_id_len = usize::from(take(1, "key id length")?[0]);
        if key_id_len == 0 || key_id_len > MAX_KEY_ID_LEN {
            return Err(Error::not_a_bundle(format!(
                "key id of {key_id_len} bytes; it must be 1 to {MAX_KEY_ID_LEN}"
            )));
        }
        let key_id = take(key_id_len, "key id")?;
        if !key_id.iter().all(u8::is_ascii_graphic) {
            return Err(Error::not_a_bundle("the key id is not printable ASCII"));
        }
        let key_id = String::from_utf8_lossy(key_id).into_owned();
        let mut digest = [0u8; DIGEST_LEN];
        digest.copy_from_slice(take(DIGEST_LEN, "digest")?);
        let mut key_check = [0u8; KEY_CHECK_LEN];
        key_check.copy_from_slice(take(KEY_CHECK_LEN, "key check")?);
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(take(NONCE_LEN, "nonce")?);
        if bytes.len() - at < TAG_LEN {
            return Err(Error::not_a_bundle("truncated: no room for the ciphertext"));
        }
        Ok(Self {
            version,
            key_id,
            digest: BundleDigest(digest),
            key_check,
            nonce,
            len: at,
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        out.extend_from_slice(&MAGIC);
        out.push(self.version);
        // The key id was checked to be 1..=64 bytes.
        out.push(u8::try_from(self.key_id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(self.key_id.as_bytes());
        out.extend_from_slice(&self.digest.0);
        out.extend_from_slice(&self.key_check);
        out.extend_from_slice(&self.nonce);
        out
    }
}

/// An opened bundle: its files in memory (wiped on drop), and its digest.
pub struct Bundle {
    files: BTreeMap<String, Zeroizing<Vec<u8>>>,
    digest: BundleDigest,
    key_id: String,
}

impl fmt::Debug for Bundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths and sizes, never contents.
        let files: BTreeMap<&str, usize> = self
            .files
            .iter()
            .map(|(p, c)| (p.as_str(), c.len()))
            .collect();
        f.debug_struct("Bundle")
            .field("digest", &self.digest)
            .field("key_id", &self.key_id)
            .field("files", &files)
            .finish()
    }
}

impl Bundle {
    /// The files: relative `/`-separated path → content.
    pub fn files(&self) -> &BTreeMap<String, Zeroizing<Vec<u8>>> {
        &self.files
    }

    /// One file's content.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        self.files.get(path).map(|c| c.as_slice())
    }

    /// The plaintext archive's digest (what the measurement covers).
    pub fn digest(&self) -> &BundleDigest {
        &self.digest
    }

    /// The key's name.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The files, taken out of the bundle.
    pub fn into_files(self) -> BTreeMap<String, Zeroizing<Vec<u8>>> {
        self.files
    }
}

/// Package `app_dir` under `key`, named `key_id`: the bundle's bytes.
#[tracing::instrument(skip_all, fields(app_dir = %app_dir.display(), key_id))]
pub fn package(app_dir: &Path, key: &BundleKey, key_id: &str) -> Result<Vec<u8>, Error> {
    let files = read_app_dir(app_dir)?;
    let archive = archive(&files)?;
    seal(&archive, key, key_id)
}

/// The regular files under `dir`, by relative `/`-separated path.
pub fn read_app_dir(dir: &Path) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, Error> {
    let meta = std::fs::metadata(dir).map_err(|e| Error::io("read", dir, e))?;
    if !meta.is_dir() {
        return Err(Error::InvalidAppDir {
            path: dir.to_path_buf(),
            reason: "not a directory".into(),
        });
    }
    let mut files = BTreeMap::new();
    let mut total = 0usize;
    walk(dir, "", &mut files, &mut total)?;
    if files.is_empty() {
        return Err(Error::InvalidAppDir {
            path: dir.to_path_buf(),
            reason: "holds no files".into(),
        });
    }
    Ok(files)
}

fn walk(
    dir: &Path,
    prefix: &str,
    files: &mut BTreeMap<String, Zeroizing<Vec<u8>>>,
    total: &mut usize,
) -> Result<(), Error> {
    let mut entries: Vec<(String, PathBuf)> = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io("list", dir, e))? {
        let entry = entry.map_err(|e| Error::io("list", dir, e))?;
        let path = entry.path();
        let name = entry
            .file_name()
            .into_string()
            .map_err(|_| Error::InvalidAppDir {
                path: path.clone(),
                reason: "the name is not UTF-8".into(),
            })?;
        entries.push((name, path));
    }
    entries.sort();
    for (name, path) in entries {
        let relative = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        check_path(&relative)?;
        let kind = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::io("read", &path, e))?
            .file_type();
        if kind.is_dir() {
            walk(&path, &relative, files, total)?;
        } else if kind.is_file() {
            let content =
                Zeroizing::new(std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?);
            *total = total.saturating_add(content.len());
            if *total > MAX_BUNDLE_LEN {
                return Err(Error::InvalidAppDir {
                    path,
                    reason: format!("the app is larger than {MAX_BUNDLE_LEN} bytes"),
                });
            }
            files.insert(relative, content);
        } else {
            let what = if kind.is_symlink() {
                "a symbolic link"
            } else {
                "not a regular file"
            };
            return Err(Error::InvalidAppDir {
                path,
                reason: format!("{what}: a bundle holds regular files only"),
            });
        }
    }
    Ok(())
}

/// The deterministic archive of `files` (see the module docs).
pub fn archive(files: &BTreeMap<String, Zeroizing<Vec<u8>>>) -> Result<Zeroizing<Vec<u8>>, Error> {
    // Sized up front so that the plaintext is not left behind in reallocated buffers: a header
    // block, a GNU long-name entry when needed, and the content padded to 512-byte blocks.
    let blocks = |n: usize| n.div_ceil(512) * 512;
    let capacity = files.iter().fold(1024usize, |acc, (path, content)| {
        acc.saturating_add(512 + blocks(content.len()))
            .saturating_add(if path.len() >= 100 {
                512 + blocks(path.len() + 1)
            } else {
                0
            })
    });
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    let mut builder = tar::Builder::new(&mut *out);
    for (path, content) in files {
        check_path(path)?;
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, path, content.as_slice())
            .map_err(|e| Error::MalformedArchive {
                reason: format!("cannot archive {path}: {e}"),
            })?;
    }
    builder.into_inner().map_err(|e| Error::MalformedArchive {
        reason: format!("cannot finish the archive: {e}"),
    })?;
    Ok(out)
}

/// Encrypt `archive` under `key`, named `key_id`: the bundle's bytes.
pub fn seal(archive: &[u8], key: &BundleKey, key_id: &str) -> Result<Vec<u8>, Error> {
    if key_id.is_empty()
        || key_id.len() > MAX_KEY_ID_LEN
        || !key_id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(Error::InvalidOption {
            what: "key id",
            reason: format!("1 to {MAX_KEY_ID_LEN} printable ASCII characters without spaces"),
        });
    }
    if archive.len() > MAX_BUNDLE_LEN {
        return Err(Error::InvalidOption {
            what: "app",
            reason: format!("larger than {MAX_BUNDLE_LEN} bytes"),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| Error::Internal("the OS random generator failed"))?;
    let header = Header {
        version: VERSION,
        key_id: key_id.to_owned(),
        digest: BundleDigest::of(archive),
        key_check: key.key_check(),
        nonce,
        len: MAGIC.len() + 2 + key_id.len() + DIGEST_LEN + KEY_CHECK_LEN + NONCE_LEN,
    };
    let mut out = header.encode();
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: archive,
                aad: &out,
            },
        )
        .map_err(|_| Error::Internal("AES-GCM refused to encrypt"))?;
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Open a bundle with `key`: authenticate and decrypt it, check its digest, and unpack its
/// archive in memory. `origin` names where the key came from, for the error.
#[tracing::instrument(skip_all, fields(len = bytes.len()))]
pub fn open(bytes: &[u8], key: &BundleKey, origin: &str) -> Result<Bundle, Error> {
    if bytes.len() > MAX_BUNDLE_LEN + 1024 {
        return Err(Error::not_a_bundle(format!(
            "larger than {MAX_BUNDLE_LEN} bytes"
        )));
    }
    let header = Header::parse(bytes)?;
    if header.key_check != key.key_check() {
        return Err(Error::WrongBundleKey {
            key_id: header.key_id,
            origin: origin.to_owned(),
        });
    }
    let (aad, ciphertext) = bytes.split_at(header.len);
    let archive = Zeroizing::new(
        key.cipher()
            .decrypt(
                Nonce::from_slice(&header.nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| Error::BundleTampered {
                reason: "its authentication tag does not verify",
            })?,
    );
    let digest = BundleDigest::of(&archive);
    if digest != header.digest {
        // Authentic, so written by a holder of the key with a false digest.
        return Err(Error::BundleTampered {
            reason: "its archive does not have the digest its header states",
        });
    }
    let files = unpack(&archive)?;
    tracing::debug!(files = files.len(), %digest, "bundle opened");
    Ok(Bundle {
        files,
        digest,
        key_id: header.key_id,
    })
}

/// The files of an archive, in memory, every path checked.
pub fn unpack(archive: &[u8]) -> Result<BTreeMap<String, Zeroizing<Vec<u8>>>, Error> {
    let malformed = |reason: String| Error::MalformedArchive { reason };
    let mut files = BTreeMap::new();
    let mut tar = tar::Archive::new(archive);
    let entries = tar
        .entries()
        .map_err(|e| malformed(format!("cannot read its entries: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| malformed(format!("cannot read an entry: {e}")))?;
        let path = String::from_utf8(entry.path_bytes().into_owned())
            .map_err(|_| malformed("a path is not UTF-8".into()))?;
        check_path(&path)?;
        let kind = entry.header().entry_type();
        if kind != tar::EntryType::Regular {
            return Err(malformed(format!(
                "{path} is a {kind:?} entry; a bundle holds regular files only"
            )));
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| malformed(format!("{path}: its size: {e}")))?;
        if size > archive.len() as u64 {
            return Err(malformed(format!("{path}: a size beyond the archive")));
        }
        // Bounded by the archive's length just above.
        let mut content = Zeroizing::new(Vec::with_capacity(size as usize));
        entry
            .read_to_end(&mut content)
            .map_err(|e| malformed(format!("{path}: {e}")))?;
        if files.insert(path.clone(), content).is_some() {
            return Err(malformed(format!("{path} appears twice")));
        }
    }
    Ok(files)
}

/// A bundle path: relative, `/`-separated, plain components only.
fn check_path(path: &str) -> Result<(), Error> {
    let unsafe_path = |reason| Error::UnsafePath {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() || path.len() > MAX_PATH_LEN {
        return Err(unsafe_path("a path is 1 to 4096 bytes"));
    }
    if path.starts_with('/') {
        return Err(unsafe_path("an absolute path"));
    }
    if path.contains('\\') || path.contains('\0') {
        return Err(unsafe_path("a backslash or NUL in a path"));
    }
    for component in path.split('/') {
        match component {
            "" => return Err(unsafe_path("an empty path component")),
            "." | ".." => return Err(unsafe_path("a `.` or `..` component")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn key(byte: u8) -> BundleKey {
        BundleKey::from_bytes([byte; 32])
    }

    fn app() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.sql"), "SELECT 1;\n").unwrap();
        std::fs::create_dir_all(dir.path().join("lib/deep")).unwrap();
        std::fs::write(dir.path().join("lib/util.sql"), "-- util\n").unwrap();
        std::fs::write(dir.path().join("lib/deep/x.sql"), "").unwrap();
        let long = "a".repeat(120);
        std::fs::write(dir.path().join(&long), "long name\n").unwrap();
        dir
    }

    #[test]
    fn a_bundle_round_trips() {
        let dir = app();
        let sealed = package(dir.path(), &key(1), DEFAULT_KEY_ID).unwrap();
        let bundle = open(&sealed, &key(1), "test").unwrap();
        let paths: Vec<&str> = bundle.files().keys().map(String::as_str).collect();
        let long = "a".repeat(120);
        assert_eq!(
            paths,
            [long.as_str(), "lib/deep/x.sql", "lib/util.sql", "main.sql"]
        );
        assert_eq!(bundle.file("main.sql"), Some(&b"SELECT 1;\n"[..]));
        assert_eq!(bundle.file(&long), Some(&b"long name\n"[..]));
        assert_eq!(bundle.file("lib/deep/x.sql"), Some(&b""[..]));
        assert_eq!(bundle.key_id(), DEFAULT_KEY_ID);
        assert_eq!(*bundle.digest(), Header::parse(&sealed).unwrap().digest);
    }

    #[test]
    fn packaging_is_deterministic_in_the_plaintext_only() {
        let dir = app();
        let a = package(dir.path(), &key(1), "k").unwrap();
        let b = package(dir.path(), &key(2), "other").unwrap();
        assert_ne!(a, b, "fresh nonces");
        let (ha, hb) = (Header::parse(&a).unwrap(), Header::parse(&b).unwrap());
        assert_eq!(
            ha.digest, hb.digest,
            "same app, same digest, whatever the key"
        );

        // A copy elsewhere, written in another order and at another time, archives the same.
        let copy = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(copy.path().join("lib/deep")).unwrap();
        for rel in [
            "lib/deep/x.sql".to_owned(),
            "a".repeat(120),
            "main.sql".into(),
            "lib/util.sql".into(),
        ] {
            std::fs::copy(dir.path().join(&rel), copy.path().join(&rel)).unwrap();
        }
        let c = package(copy.path(), &key(1), "k").unwrap();
        assert_eq!(Header::parse(&c).unwrap().digest, ha.digest);

        // A changed byte changes it.
        std::fs::write(copy.path().join("main.sql"), "SELECT 2;\n").unwrap();
        let d = package(copy.path(), &key(1), "k").unwrap();
        assert_ne!(Header::parse(&d).unwrap().digest, ha.digest);
    }

    #[test]
    fn the_archive_has_fixed_metadata() {
        let files: BTreeMap<String, Zeroizing<Vec<u8>>> =
            [("q.sql".to_owned(), Zeroizing::new(b"x".to_vec()))].into();
        let archive = archive(&files).unwrap();
        let mut tar = tar::Archive::new(&archive[..]);
        for entry in tar.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(
                (
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                    h.gid().unwrap(),
                    h.mtime().unwrap()
                ),
                (0o644, 0, 0, 0)
            );
            assert_eq!(h.username().unwrap(), Some(""));
        }
    }

    #[rstest]
    #[case::ciphertext_byte(|b: &mut Vec<u8>| { let n = b.len(); b[n - 20] ^= 1; })]
    #[case::tag_byte(|b: &mut Vec<u8>| { let n = b.len(); b[n - 1] ^= 0x80; })]
    #[case::digest_in_header(|b: &mut Vec<u8>| b[8 + 2 + 10] ^= 1)]
    #[case::nonce(|b: &mut Vec<u8>| b[8 + 2 + 10 + 32 + 16] ^= 1)]
    #[case::key_id(|b: &mut Vec<u8>| b[8 + 2] = b'B')]
    #[case::appended(|b: &mut Vec<u8>| b.push(0))]
    fn tampering_is_detected(#[case] tamper: fn(&mut Vec<u8>)) {
        let dir = app();
        let mut sealed = package(dir.path(), &key(1), "bundle_key").unwrap();
        assert_eq!(&sealed[10..20], b"bundle_key");
        tamper(&mut sealed);
        let err = open(&sealed, &key(1), "test").unwrap_err();
        assert!(matches!(err, Error::BundleTampered { .. }), "{err:?}");
        assert!(err.is_refusal());
        assert!(err.to_string().contains("tampered"), "{err}");
    }

    #[test]
    fn a_wrong_key_is_named_as_such() {
        let dir = app();
        let sealed = package(dir.path(), &key(1), "bundle_key").unwrap();
        let err = open(&sealed, &key(2), "env CLOISTER_BUNDLE_KEY").unwrap_err();
        assert!(
            matches!(&err, Error::WrongBundleKey { key_id, .. } if key_id == "bundle_key"),
            "{err:?}"
        );
        assert!(err.to_string().contains("wrong bundle key"), "{err}");
        // A changed key check reads as a wrong key too: either way nothing opens.
        let mut changed = sealed.clone();
        changed[8 + 2 + 10 + 32] ^= 1;
        assert!(matches!(
            open(&changed, &key(1), "t"),
            Err(Error::WrongBundleKey { .. })
        ));
    }

    #[rstest]
    #[case::empty(b"", "magic")]
    #[case::other_magic(b"PK\x03\x04rest of a zip file", "magic")]
    #[case::truncated_header(b"CLSTRBDL\x01\x05abc", "truncated")]
    #[case::no_key_id(b"CLSTRBDL\x01\x00", "key id")]
    fn not_a_bundle(#[case] bytes: &[u8], #[case] says: &str) {
        let err = open(bytes, &key(1), "t").unwrap_err();
        assert!(matches!(err, Error::NotABundle { .. }), "{err:?}");
        assert!(err.to_string().contains(says), "{err}");
    }

    #[test]
    fn an_unknown_version_is_refused() {
        let dir = app();
        let mut sealed = package(dir.path(), &key(1), "k").unwrap();
        sealed[8] = 2;
        assert!(matches!(
            open(&sealed, &key(1), "t"),
            Err(Error::UnsupportedBundleVersion {
                found: 2,
                supported: 1
            })
        ));
    }

    /// A raw tar entry with `path` written straight into the header (no checks by the builder).
    fn raw_tar(path: &[u8], kind: tar::EntryType) -> Vec<u8> {
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..path.len()].copy_from_slice(path);
        header.set_entry_type(kind);
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        let mut out = header.as_bytes().to_vec();
        out.extend_from_slice(b"x");
        out.resize(1024, 0);
        out.extend_from_slice(&[0; 1024]);
        out
    }

    #[rstest]
    #[case::dot_dot(b"../escape.sql")]
    #[case::inner_dot_dot(b"lib/../../escape.sql")]
    #[case::absolute(b"/etc/passwd")]
    #[case::backslash(b"..\\escape.sql")]
    #[case::dot(b"./main.sql")]
    fn path_traversal_in_the_archive_is_refused(#[case] path: &[u8]) {
        let archive = raw_tar(path, tar::EntryType::Regular);
        let err = unpack(&archive).unwrap_err();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err:?}");
        // And through a sealed bundle, as the runtime meets it.
        let sealed = seal(&archive, &key(1), "k").unwrap();
        let err = open(&sealed, &key(1), "t").unwrap_err();
        assert!(matches!(err, Error::UnsafePath { .. }), "{err:?}");
    }

    #[rstest]
    #[case::symlink(tar::EntryType::Symlink)]
    #[case::hard_link(tar::EntryType::Link)]
    #[case::directory(tar::EntryType::Directory)]
    fn entries_other_than_files_are_refused(#[case] kind: tar::EntryType) {
        let archive = raw_tar(b"lib", kind);
        assert!(matches!(
            unpack(&archive),
            Err(Error::MalformedArchive { .. })
        ));
    }

    #[test]
    fn a_duplicate_path_is_refused() {
        let mut archive = raw_tar(b"a.sql", tar::EntryType::Regular);
        archive.truncate(1024);
        archive.extend_from_slice(&raw_tar(b"a.sql", tar::EntryType::Regular));
        let err = unpack(&archive).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn symlinks_in_the_app_dir_are_refused() {
        let dir = app();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        let err = package(dir.path(), &key(1), "k").unwrap_err();
        assert!(matches!(err, Error::InvalidAppDir { .. }), "{err:?}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    #[test]
    fn an_empty_app_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            package(dir.path(), &key(1), "k"),
            Err(Error::InvalidAppDir { .. })
        ));
    }

    #[rstest]
    #[case::empty("")]
    #[case::space("bundle key")]
    #[case::too_long(&"k".repeat(65))]
    fn key_ids_are_checked(#[case] id: &str) {
        assert!(matches!(
            seal(b"x", &key(1), id),
            Err(Error::InvalidOption { .. })
        ));
    }

    #[test]
    fn keys_parse_from_hex_base64_and_raw() {
        let k = key(7);
        let hex = k.to_hex();
        let check = k.key_check();
        for text in [
            format!("{}\n", hex.as_str()),
            format!("  {}  ", hex.as_str().to_uppercase()),
            B64.encode([7u8; 32]),
        ] {
            assert_eq!(
                BundleKey::parse(text.as_bytes(), "t").unwrap().key_check(),
                check
            );
        }
        assert_eq!(
            BundleKey::parse(&[7u8; 32], "t").unwrap().key_check(),
            check
        );
        for bad in [&b"abcd"[..], &[0u8; 31], "zz".repeat(32).as_bytes()] {
            let err = BundleKey::parse(bad, "key.hex").unwrap_err();
            assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
            assert!(err.to_string().contains("key.hex"));
        }
    }

    #[test]
    fn debug_shows_no_key_and_no_content() {
        let k = key(0x5a);
        let debug = format!("{k:?}");
        assert!(!debug.contains(&"5a".repeat(32)), "{debug}");
        assert!(debug.contains("check"), "{debug}");

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("q.sql"), "SELECT 'CANARY-91c2';").unwrap();
        let bundle = open(&package(dir.path(), &k, "k").unwrap(), &k, "t").unwrap();
        let debug = format!("{bundle:?}");
        assert!(!debug.contains("CANARY"), "{debug}");
        assert!(debug.contains("q.sql"), "{debug}");
    }

    #[test]
    fn a_generated_key_is_random() {
        let (a, b) = (
            BundleKey::generate().unwrap(),
            BundleKey::generate().unwrap(),
        );
        assert_ne!(a.to_hex().as_str(), b.to_hex().as_str());
        assert_eq!(a.to_hex().len(), 64);
    }
}

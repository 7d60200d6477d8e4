//! The CAS master key: where it comes from and what is derived from it.
//!
//! Everything the CAS keeps at rest is protected by one 32-byte master key. It is never used
//! directly: each purpose gets its own subkey, derived with HKDF-SHA256 (RFC 5869) from the master
//! key with no salt and a purpose label as `info` (see [`KeyPurpose`]):
//!
//! | purpose | `info` | used for |
//! | --- | --- | --- |
//! | [`KeyPurpose::StoreEncryption`] | `cloister-cas/v1/store-encryption` | AES-256-GCM key for every stored value |
//! | [`KeyPurpose::StoreKeyHashing`] | `cloister-cas/v1/store-key-hashing` | HMAC-SHA256 key that turns names into table keys |
//! | [`KeyPurpose::AuditSigning`] | `cloister-cas/v1/audit-signing` | seed of the P-256 key that signs the audit log |
//! | [`KeyPurpose::Fingerprint`] | `cloister-cas/v1/fingerprint` | a public identifier of the key, for logs |
//!
//! # Where the key comes from
//!
//! - A file, `--master-key-file PATH`: either exactly 32 raw bytes, or 64 hex digits (surrounding
//!   whitespace, such as a final newline, is ignored). The file must be a regular file that neither
//!   group nor others can access (mode `0600` or stricter); anything else is refused with
//!   [`Error::MasterKeyPermissions`]. [`MasterKey::write_new_file`] writes such a file.
//! - The environment variable `CLOISTER_MASTER_KEY` (64 hex digits), for platforms that inject
//!   secrets as environment variables (a Kubernetes `Secret` with `env.valueFrom`). Rust 2024
//!   makes removing a variable `unsafe`, which this workspace forbids, so `cloister cas serve`
//!   reads it once and re-executes itself (same pid) without it, handing the key over on a
//!   pipe ([`MasterKey::write_hex`]): the running CAS's `/proc/PID/environ` does not hold it, and
//!   no policy can import it (`CLOISTER_*` variables are never importable either).
//!
//! A key file wins over the environment ([`MasterKey::load`]). The key never comes from a command
//! line argument, where `ps` would show it.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::Error;

/// The environment variable holding the master key as 64 hex digits.
pub const MASTER_KEY_ENV: &str = "CLOISTER_MASTER_KEY";

/// Length of the master key and of every subkey, in bytes.
pub const KEY_LEN: usize = 32;

/// A 32-byte subkey derived from the master key; wiped when dropped.
pub type Subkey = Zeroizing<[u8; KEY_LEN]>;

/// What a subkey is for. Each purpose has its own HKDF `info` label, so subkeys are independent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyPurpose {
    /// AES-256-GCM encryption of stored values.
    StoreEncryption,
    /// HMAC-SHA256 key hashing names into table keys.
    StoreKeyHashing,
    /// Seed of the audit log's P-256 signing key.
    AuditSigning,
    /// A non-secret identifier of the master key (safe to log).
    Fingerprint,
}

impl KeyPurpose {
    /// The HKDF `info` label of this purpose.
    pub fn info(self) -> &'static [u8] {
        match self {
            KeyPurpose::StoreEncryption => b"cloister-cas/v1/store-encryption",
            KeyPurpose::StoreKeyHashing => b"cloister-cas/v1/store-key-hashing",
            KeyPurpose::AuditSigning => b"cloister-cas/v1/audit-signing",
            KeyPurpose::Fingerprint => b"cloister-cas/v1/fingerprint",
        }
    }
}

/// The CAS master key: 32 secret bytes, wiped from memory when dropped, never printed.
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    /// A fresh random key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(key.as_mut());
        MasterKey(key)
    }

    /// Wraps key bytes the caller already holds.
    pub fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        MasterKey(bytes)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn from_hex(hex_digits: &str, origin: &str) -> Result<Self, Error> {
        let digits = hex_digits.trim();
        if digits.len() != 2 * KEY_LEN {
            return Err(Error::MasterKeyInvalid {
                origin: origin.to_owned(),
                reason: "expected 64 hex digits (32 bytes)",
            });
        }
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(digits, key.as_mut()).map_err(|_| Error::MasterKeyInvalid {
            origin: origin.to_owned(),
            reason: "not hex",
        })?;
        Ok(MasterKey(key))
    }

    /// Reads the key from a file holding 32 raw bytes or 64 hex digits. The file must not be
    /// accessible by group or others.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let mut file = File::open(path).map_err(|e| Error::io("open master key file", path, e))?;
        // Check the opened file, not the path, so that the file checked is the file read.
        let meta = file
            .metadata()
            .map_err(|e| Error::io("stat master key file", path, e))?;
        if !meta.is_file() {
            return Err(Error::MasterKeyInvalid {
                origin: path.display().to_string(),
                reason: "not a regular file",
            });
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(Error::MasterKeyPermissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        if meta.len() > 1024 {
            return Err(Error::MasterKeyInvalid {
                origin: path.display().to_string(),
                reason: "file too large for a key",
            });
        }
        let mut contents = Zeroizing::new(Vec::with_capacity(128));
        file.read_to_end(&mut contents)
            .map_err(|e| Error::io("read master key file", path, e))?;
        let origin = path.display().to_string();
        if contents.len() == KEY_LEN {
            // 32 bytes that are all hex digits are far more likely a 128-bit key written in hex
            // (too short) than 32 random bytes (probability (22/256)^32).
            if contents.iter().all(u8::is_ascii_hexdigit) {
                return Err(Error::MasterKeyInvalid {
                    origin,
                    reason: "32 hex digits is a 16-byte key; the master key needs 32 bytes (64 hex digits)",
                });
            }
            let mut key = Zeroizing::new([0u8; KEY_LEN]);
            key.copy_from_slice(&contents);
            return Ok(MasterKey(key));
        }
        let text = std::str::from_utf8(&contents).map_err(|_| Error::MasterKeyInvalid {
            origin: origin.clone(),
            reason: "expected 32 raw bytes or 64 hex digits",
        })?;
        Self::from_hex(text, &origin)
    }

    /// Reads the key from `CLOISTER_MASTER_KEY`; `Ok(None)` when the variable is not set.
    pub fn from_env() -> Result<Option<Self>, Error> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                Self::from_hex(&value, MASTER_KEY_ENV).map(Some)
            }
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::MasterKeyInvalid {
                origin: MASTER_KEY_ENV.to_owned(),
                reason: "not valid UTF-8",
            }),
        }
    }

    /// The key from `file` if given, else from `CLOISTER_MASTER_KEY`, else
    /// [`Error::MasterKeyMissing`].
    pub fn load(file: Option<&Path>) -> Result<Self, Error> {
        match file {
            Some(path) => Self::from_file(path),
            None => Self::from_env()?.ok_or(Error::MasterKeyMissing),
        }
    }

    /// Writes the key as 64 hex digits and a newline to a new file created with mode `0600`.
    /// Refuses to overwrite an existing file. The file is flushed to disk before this returns.
    pub fn write_new_file(&self, path: &Path) -> Result<(), Error> {
        let mut file = cloister_attest::private_fs::create_new(path)
            .map_err(|e| Error::io("create master key file", path, e))?;
        self.write_hex(&mut file)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io("write master key file", path, e))?;
        Ok(())
    }

    /// Writes the key as 64 hex digits and a newline to `out` (a `0600` file, or a pipe to
    /// this same program), leaving no copy behind in memory.
    pub fn write_hex(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut text = Zeroizing::new([0u8; 2 * KEY_LEN + 1]);
        for (i, byte) in self.0.iter().enumerate() {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            text[2 * i] = DIGITS[usize::from(byte >> 4)];
            text[2 * i + 1] = DIGITS[usize::from(byte & 0x0f)];
        }
        text[2 * KEY_LEN] = b'\n';
        out.write_all(text.as_ref())
    }

    /// The subkey for `purpose` (HKDF-SHA256, no salt, the purpose's label as `info`).
    pub fn derive(&self, purpose: KeyPurpose) -> Subkey {
        self.derive_labelled(purpose.info(), &[])
    }

    /// HKDF-SHA256 output for `info ‖ suffix`; the suffix lets a caller retry a derivation that
    /// produced an unusable value (see the audit signing key).
    pub(crate) fn derive_labelled(&self, info: &[u8], suffix: &[u8]) -> Subkey {
        let hkdf = Hkdf::<Sha256>::new(None, self.0.as_ref());
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // `expand` fails only when asked for more than 255 hash lengths; we ask for one, so the
        // error cannot happen (`regression_subkeys_match_rfc5869` pins the derived values).
        let _ = hkdf.expand_multi_info(&[info, suffix], out.as_mut());
        out
    }

    /// A short public identifier of this key (16 hex digits), safe to log and to compare.
    pub fn fingerprint(&self) -> String {
        let id = self.derive(KeyPurpose::Fingerprint);
        hex::encode(&id[..8])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn key_file(dir: &Path, contents: &[u8], mode: u32) -> std::path::PathBuf {
        let path = dir.join("master.key");
        std::fs::write(&path, contents).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn debug_is_redacted() {
        let key = MasterKey::from_bytes(Zeroizing::new([0xab; 32]));
        let shown = format!("{key:?}");
        assert_eq!(shown, "MasterKey(<redacted>)");
        assert!(!shown.to_lowercase().contains("abab"));
    }

    #[test]
    fn hex_file_round_trip_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let key = MasterKey::generate();
        let path = dir.path().join("k");
        key.write_new_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let read = MasterKey::from_file(&path).unwrap();
        assert_eq!(read.0.as_ref(), key.0.as_ref());
        // Refuses to overwrite.
        assert!(matches!(
            key.write_new_file(&path),
            Err(Error::Io {
                op: "create master key file",
                ..
            })
        ));
    }

    #[test]
    fn hex_round_trips_through_a_writer() {
        let key = MasterKey::from_bytes(Zeroizing::new([0xa5; 32]));
        let mut out = Vec::new();
        key.write_hex(&mut out).unwrap();
        assert_eq!(out, format!("{}\n", "a5".repeat(32)).into_bytes());
        let back = MasterKey::from_hex(std::str::from_utf8(&out).unwrap(), "test").unwrap();
        assert_eq!(back.0.as_ref(), key.0.as_ref());
    }

    #[test]
    fn raw_file_is_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let raw: Vec<u8> = (0u8..32).map(|i| i.wrapping_mul(37) ^ 0xf0).collect();
        let path = key_file(dir.path(), &raw, 0o400);
        let key = MasterKey::from_file(&path).unwrap();
        assert_eq!(key.0.as_ref(), raw.as_slice());
    }

    #[test]
    fn group_or_world_readable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = key_file(dir.path(), hex::encode([7u8; 32]).as_bytes(), 0o640);
        let err = MasterKey::from_file(&path).unwrap_err();
        assert!(matches!(
            err,
            Error::MasterKeyPermissions { mode: 0o640, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o604)).unwrap();
        assert!(matches!(
            MasterKey::from_file(&path),
            Err(Error::MasterKeyPermissions { mode: 0o604, .. })
        ));
    }

    #[test]
    fn bad_contents_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        for contents in [&b"zz"[..], &[b'a'; 32][..], &[b'q'; 64][..], &[0u8; 31][..]] {
            let path = key_file(dir.path(), contents, 0o600);
            let err = MasterKey::from_file(&path).unwrap_err();
            assert!(matches!(err, Error::MasterKeyInvalid { .. }), "{err:?}");
            assert!(!err.to_string().contains("aaaa"), "{err}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn from_hex_accepts_trailing_newline() {
        let digits = format!("{}\n", hex::encode([9u8; 32]));
        let key = MasterKey::from_hex(&digits, "test").unwrap();
        assert_eq!(key.0.as_ref(), &[9u8; 32]);
    }

    /// Values computed independently (Python's `hmac`, RFC 5869 with an empty salt).
    #[test]
    fn regression_subkeys_match_rfc5869() {
        let key = MasterKey::from_bytes(Zeroizing::new([1u8; 32]));
        assert_eq!(
            hex::encode(*key.derive(KeyPurpose::StoreEncryption)),
            "8f76336b62a721e3c0168d1355b2fc7139971baebe8363976553b0d80bc04df5"
        );
        assert_eq!(key.fingerprint(), "05a82fb6365d9eef");
    }

    #[test]
    fn subkeys_differ_per_purpose_and_are_stable() {
        let key = MasterKey::from_bytes(Zeroizing::new([1u8; 32]));
        let purposes = [
            KeyPurpose::StoreEncryption,
            KeyPurpose::StoreKeyHashing,
            KeyPurpose::AuditSigning,
            KeyPurpose::Fingerprint,
        ];
        let derived: Vec<[u8; 32]> = purposes.iter().map(|p| *key.derive(*p)).collect();
        for (i, a) in derived.iter().enumerate() {
            assert_ne!(a, &[0u8; 32]);
            assert_ne!(a, &[1u8; 32]);
            for b in &derived[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(*key.derive(KeyPurpose::StoreEncryption), derived[0]);
        assert_eq!(key.fingerprint().len(), 16);
        assert_ne!(
            key.fingerprint(),
            MasterKey::from_bytes(Zeroizing::new([2u8; 32])).fingerprint()
        );
    }
}

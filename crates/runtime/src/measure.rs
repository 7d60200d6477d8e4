//! The workload's measurement: which launcher runs which app.
//!
//! ```text
//! measurement = SHA-384( "cloister-runtime measurement/v1\0"
//!                        ‖ SHA-256(executable bytes)                 32 bytes
//!                        ‖ 0x01 ‖ bundle digest                      33 bytes, or
//!                        ‖ 0x00                                      1 byte without a bundle )
//! ```
//!
//! The bundle digest is SHA-256 of the bundle's *plaintext* (see [`crate::bundle`]): the same app
//! measures the same whatever key or nonce it was encrypted with, and a changed app never does.
//! Every field has a fixed width (the last is tagged), so the encoding is unambiguous; the domain
//! string keeps the hash from meaning anything else.
//!
//! **Why SHA-384.** The measurement stands where a TEE's launch measurement stands in a policy:
//! SEV-SNP and TDX measurements are 48 bytes, policies pin 32 or 48, and sim evidence carries up
//! to 64. 48 bytes fits all of them and reads like the hardware measurements it sits beside.
//!
//! **Which executable.** On Linux the running image is read through `/proc/self/exe`, which
//! names the file the process was started from even if its path has since been replaced; other
//! systems use [`std::env::current_exe`].
//!
//! **Where it counts.** With `sim` evidence (a sim key, or a sim LAS) this measurement *is* the
//! evidence's measurement, and the policy pins it. On hardware the TEE reports its own
//! measurement of the launched image; the runtime then still refuses a bundle whose digest is not
//! the one the configuration pins, when it pins one (`CLOISTER_BUNDLE_DIGEST`).

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256, Sha384};

use crate::Error;
use crate::bundle::BundleDigest;

/// The domain string the measurement hash starts with.
pub const DOMAIN: &[u8] = b"cloister-runtime measurement/v1\0";

/// A workload's measurement: 48 bytes, shown as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Measurement([u8; 48]);

impl Measurement {
    /// The measurement of the executable with digest `exe` running the bundle with digest
    /// `bundle` (or no bundle).
    pub fn compute(exe: &ExeDigest, bundle: Option<&BundleDigest>) -> Self {
        let mut h = Sha384::new();
        h.update(DOMAIN);
        h.update(exe.0);
        match bundle {
            Some(bundle) => {
                h.update([1]);
                h.update(bundle.as_bytes());
            }
            None => h.update([0]),
        }
        Self(h.finalize().into())
    }

    /// The measurement of the running executable with `bundle`.
    pub fn of_running_exe(bundle: Option<&BundleDigest>) -> Result<Self, Error> {
        Ok(Self::compute(&ExeDigest::of_running_exe()?, bundle))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 48] {
        &self.0
    }
}

impl fmt::Display for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Measurement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Measurement({self})")
    }
}

/// SHA-256 of an executable's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExeDigest([u8; 32]);

impl ExeDigest {
    /// The digest of the file at `path`, read in chunks.
    pub fn of_file(path: &Path) -> Result<Self, Error> {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io("open", path, e))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| Error::io("read", path, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(Self(h.finalize().into()))
    }

    /// The digest of the running executable (`/proc/self/exe` on Linux).
    pub fn of_running_exe() -> Result<Self, Error> {
        Self::of_file(&running_exe()?)
    }

    /// The digest of `bytes`.
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for ExeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ExeDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ExeDigest({self})")
    }
}

/// The file the running process was started from.
fn running_exe() -> Result<PathBuf, Error> {
    let proc_exe = Path::new("/proc/self/exe");
    if cfg!(target_os = "linux") && proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().map_err(|e| Error::io("locate", "the running executable", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(byte: u8) -> BundleDigest {
        BundleDigest::from_bytes([byte; 32])
    }

    #[test]
    fn the_measurement_changes_with_the_executable_and_the_bundle() {
        let exe = ExeDigest::of_bytes(b"cloister v1");
        let base = Measurement::compute(&exe, Some(&bundle(1)));
        assert_eq!(base, Measurement::compute(&exe, Some(&bundle(1))));
        let other_exe = ExeDigest::of_bytes(b"cloister v2");
        assert_ne!(base, Measurement::compute(&other_exe, Some(&bundle(1))));
        assert_ne!(base, Measurement::compute(&exe, Some(&bundle(2))));
        assert_ne!(base, Measurement::compute(&exe, None));
        assert_eq!(base.to_string().len(), 96);
    }

    #[test]
    fn the_encoding_is_pinned() {
        // A change to the encoding changes every pinned measurement: it must be deliberate
        // (and come with a new domain string).
        let m = Measurement::compute(&ExeDigest::of_bytes(b""), Some(&bundle(0)));
        let mut h = Sha384::new();
        h.update(b"cloister-runtime measurement/v1\0");
        h.update(Sha256::digest(b""));
        h.update([1]);
        h.update([0; 32]);
        assert_eq!(m.as_bytes()[..], h.finalize()[..]);
    }

    #[test]
    fn the_running_executable_is_measured_from_its_file() {
        let running = ExeDigest::of_running_exe().unwrap();
        let from_path = ExeDigest::of_file(&std::env::current_exe().unwrap()).unwrap();
        assert_eq!(running, from_path);
    }

    #[test]
    fn a_missing_executable_is_an_io_error() {
        assert!(matches!(
            ExeDigest::of_file(Path::new("/nonexistent/cloister")),
            Err(Error::Io { .. })
        ));
    }
}

//! Canary scans: a secret that must never be written down, and the checks that it was not, in
//! any of the encodings a leak would take.
//!
//! A leak rarely writes the secret as is: a log line hex-dumps it, a JSON field carries it as
//! base64, a Windows-minded library writes UTF-16. [`assert_absent`] looks for every form
//! [`encodings`] lists, in a byte string or in every file under a directory. Base64 is checked
//! at each of the three alignments the secret can have inside a longer encoded value.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// A random marker that a test plants as a secret and then looks for where it must not be.
#[derive(Clone, PartialEq, Eq)]
pub struct Canary(String);

impl Canary {
    /// `CANARY-<16 random hex digits>-<label>`: unique per test run, so that a scan never
    /// finds a leftover of another run.
    pub fn new(label: &str) -> Self {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the OS random source");
        Self(format!("CANARY-{}-{label}", hex::encode(random)))
    }

    /// A canary with a fixed text (a constant the test shares with a child process).
    pub fn fixed(text: &str) -> Self {
        Self(text.to_owned())
    }

    /// The marker.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Canary {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Display for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Canary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Canary({:?})", self.0)
    }
}

/// Every way `secret` could be written down, each with a name for the report: raw, hex (lower
/// and upper case), base64 (standard and URL-safe, padded and not), UTF-16LE. Base64 forms come
/// at the three alignments the secret can have inside a longer encoded value (the characters
/// that also depend on the neighbouring bytes left out).
pub fn encodings(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let utf16: Vec<u8> = String::from_utf8_lossy(secret)
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let mut out = vec![
        ("raw", secret.to_vec()),
        ("hex", hex::encode(secret).into_bytes()),
        ("HEX", hex::encode_upper(secret).into_bytes()),
        ("base64", STANDARD.encode(secret).into_bytes()),
        ("base64-nopad", STANDARD_NO_PAD.encode(secret).into_bytes()),
        ("base64url", URL_SAFE.encode(secret).into_bytes()),
        (
            "base64url-nopad",
            URL_SAFE_NO_PAD.encode(secret).into_bytes(),
        ),
        ("utf16le", utf16),
    ];
    for (name, engine) in [
        ("base64 (inside a longer value)", &STANDARD_NO_PAD),
        ("base64url (inside a longer value)", &URL_SAFE_NO_PAD),
    ] {
        for shift in 0..3 {
            if let Some(core) = base64_core(engine, secret, shift) {
                out.push((name, core));
            }
        }
    }
    out.retain(|(_, needle)| !needle.is_empty());
    out
}

/// The base64 characters of `secret`, preceded by `shift` other bytes and followed by more,
/// that depend on the secret alone; `None` when too short to be a meaningful needle.
fn base64_core(
    engine: &base64::engine::GeneralPurpose,
    secret: &[u8],
    shift: usize,
) -> Option<Vec<u8>> {
    let mut shifted = vec![0u8; shift];
    shifted.extend_from_slice(secret);
    let encoded = engine.encode(&shifted).into_bytes();
    // With a shift, the first 4 characters also cover the (unknown) bytes before the secret;
    // a last partial group would mix in the (unknown) bytes that follow.
    let whole_groups = shifted.len() / 3;
    let start = if shift == 0 { 0 } else { 4 };
    let core = encoded.get(start..whole_groups * 4)?;
    (core.len() >= 8).then(|| core.to_vec())
}

/// Whether `needle` occurs in `haystack` as is (no other encoding: for what must be present,
/// or for a byte pattern that is not text).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The names of the encodings of `secret` found in `haystack` (empty: none).
///
/// One pass over `haystack` for all encodings, dispatching on each byte to the encodings that
/// start with it: scans of large files (or of many secrets) stay fast in debug builds.
pub fn found(haystack: &[u8], secret: &[u8]) -> Vec<&'static str> {
    let needles = encodings(secret);
    let mut by_first: Vec<Vec<usize>> = vec![Vec::new(); 256];
    for (i, (_, needle)) in needles.iter().enumerate() {
        by_first[usize::from(needle[0])].push(i);
    }
    let mut hit = vec![false; needles.len()];
    let mut left = needles.len();
    for (at, byte) in haystack.iter().enumerate() {
        for &i in &by_first[usize::from(*byte)] {
            if !hit[i] && haystack[at..].starts_with(&needles[i].1) {
                hit[i] = true;
                left -= 1;
            }
        }
        if left == 0 {
            break;
        }
    }
    let mut names: Vec<&'static str> = needles
        .iter()
        .zip(hit)
        .filter(|(_, hit)| *hit)
        .map(|((name, _), _)| *name)
        .collect();
    names.dedup();
    names
}

/// What a canary scan reads: bytes, or every file under a directory (or the one file a path
/// names; nothing when it does not exist).
pub trait Haystack {
    /// Each place scanned, named for the report, with its bytes.
    fn places(&self) -> Vec<(String, Vec<u8>)>;
}

impl Haystack for [u8] {
    fn places(&self) -> Vec<(String, Vec<u8>)> {
        vec![("bytes".to_owned(), self.to_vec())]
    }
}

impl Haystack for Vec<u8> {
    fn places(&self) -> Vec<(String, Vec<u8>)> {
        self.as_slice().places()
    }
}

impl Haystack for str {
    fn places(&self) -> Vec<(String, Vec<u8>)> {
        vec![("text".to_owned(), self.as_bytes().to_vec())]
    }
}

impl Haystack for String {
    fn places(&self) -> Vec<(String, Vec<u8>)> {
        self.as_str().places()
    }
}

impl Haystack for Path {
    fn places(&self) -> Vec<(String, Vec<u8>)> {
        let files = if self.is_file() {
            vec![self.to_path_buf()]
        } else {
            files_under(self)
        };
        files
            .into_iter()
            .filter_map(|f| {
                let bytes = std::fs::read(&f).ok()?;
                Some((f.display().to_string(), bytes))
            })
            .collect()
    }
}

impl Haystack for PathBuf {
    fn places(&self) -> Vec<(String, Vec<u8>)> {
        self.as_path().places()
    }
}

/// Each place in `haystack` holding `secret` in some encoding, with the encodings found.
pub fn leaks<H, S>(haystack: &H, secret: &S) -> Vec<(String, Vec<&'static str>)>
where
    H: Haystack + ?Sized,
    S: AsRef<[u8]> + ?Sized,
{
    let secret = secret.as_ref();
    haystack
        .places()
        .into_iter()
        .filter_map(|(place, bytes)| {
            let found = found(&bytes, secret);
            (!found.is_empty()).then_some((place, found))
        })
        .collect()
}

/// Panics, naming each place and encoding, if `secret` occurs anywhere in `haystack` in any
/// of its [`encodings`].
#[track_caller]
pub fn assert_absent<H, S>(haystack: &H, secret: &S)
where
    H: Haystack + ?Sized,
    S: AsRef<[u8]> + ?Sized,
{
    let leaks = leaks(haystack, secret);
    assert!(
        leaks.is_empty(),
        "canary {:?} found: {leaks:?}",
        String::from_utf8_lossy(secret.as_ref())
    );
}

/// Every regular file under `dir`, recursively, sorted (nothing when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_encoding_is_found() {
        let canary = Canary::new("unit");
        let secret = canary.as_str().as_bytes();
        for (name, needle) in encodings(secret) {
            let mut haystack = b"prefix ".to_vec();
            haystack.extend_from_slice(&needle);
            haystack.extend_from_slice(b" suffix");
            assert!(!found(&haystack, secret).is_empty(), "{name}");
        }
    }

    #[test]
    fn base64_inside_a_longer_value_is_found_at_every_alignment() {
        let secret = b"CANARY-0123456789abcdef-aligned";
        for prefix in 0..3 {
            let mut value = vec![b'x'; prefix];
            value.extend_from_slice(secret);
            value.extend_from_slice(b"tail");
            for encoded in [STANDARD.encode(&value), URL_SAFE_NO_PAD.encode(&value)] {
                assert!(
                    !found(encoded.as_bytes(), secret).is_empty(),
                    "prefix {prefix}: {encoded}"
                );
            }
        }
    }

    #[test]
    fn nothing_is_found_in_unrelated_bytes() {
        let canary = Canary::new("unit");
        let other = Canary::new("unit");
        assert!(leaks(other.as_str(), &canary).is_empty());
        assert_absent(&b"nothing here"[..], &canary);
    }

    #[test]
    #[should_panic(expected = "canary")]
    fn a_file_holding_the_hex_form_fails() {
        let dir = tempfile::tempdir().unwrap();
        let canary = Canary::new("file");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/log"), hex::encode(canary.as_str())).unwrap();
        assert_eq!(files_under(dir.path()).len(), 1);
        assert_absent(dir.path(), &canary);
    }
}

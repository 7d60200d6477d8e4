//! The chunk format of the engine's encrypted spill files (see `cloister_engine::spill` for
//! the mechanism that writes and reads them).
//!
//! ```text
//! header   = "CLSPILL1" ‖ file_id[16]
//! chunk i  = len: u32 LE ‖ AES-256-GCM(key_file, nonce = 0[4] ‖ i: u64 BE,
//!                                      aad = "CLSPILL1" ‖ file_id ‖ i: u64 BE ‖ final: u8)
//! ```
//!
//! The file key is `HKDF-Expand(prk, info = file id)` with `prk` from [`spill_prk`]. Everything
//! the reader parses before decryption is a synchronous function here —
//! [`ChunkCipher::check_header`], [`body_len`] — and [`ChunkCipher::open`] authenticates a
//! body; the engine's async reader only moves bytes between them and the file (and knows from
//! the writer's memory how many chunks exist and which is final).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hkdf;

use crate::Error;

/// The magic bytes a spill file starts with.
pub const MAGIC: &[u8; 8] = b"CLSPILL1";
/// Length of a spill file's random id.
pub const FILE_ID_LEN: usize = 16;
/// Length of the header (magic and file id).
pub const HEADER_LEN: usize = MAGIC.len() + FILE_ID_LEN;
/// Length of the AES-GCM tag at the end of every chunk body.
pub const TAG_LEN: usize = 16;
/// Length of the little-endian `u32` body length before every chunk body.
pub const LEN_PREFIX: usize = 4;

/// The HKDF-SHA256 pseudo-random key from which every file key of one spill is expanded.
pub fn spill_prk(secret: &[u8]) -> hkdf::Prk {
    hkdf::Salt::new(hkdf::HKDF_SHA256, b"cloister spill v1").extract(secret)
}

/// The body length announced by a chunk's length prefix, checked against the range a writer
/// with `chunk_size` plaintext bytes per chunk can produce (tag only … full chunk and tag).
pub fn body_len(index: u64, prefix: [u8; LEN_PREFIX], chunk_size: usize) -> Result<usize, Error> {
    let len = u32::from_le_bytes(prefix) as usize;
    if !(TAG_LEN..=chunk_size + TAG_LEN).contains(&len) {
        return Err(Error::SpillIntegrity {
            chunk: index,
            reason: "chunk length out of range",
        });
    }
    Ok(len)
}

/// The AES-256-GCM key and id of one spill file, and the chunk construction.
pub struct ChunkCipher {
    key: LessSafeKey,
    file_id: [u8; FILE_ID_LEN],
}

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCipher")
            .field("file_id", &self.file_id)
            .finish_non_exhaustive()
    }
}

impl ChunkCipher {
    /// The cipher of file `file_id` under the spill's `prk`.
    pub fn derive(prk: &hkdf::Prk, file_id: [u8; FILE_ID_LEN]) -> Result<Self, Error> {
        let info = [&file_id[..]];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| Error::Internal("HKDF expand of the spill file key"))?;
        Ok(Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
            file_id,
        })
    }

    /// The file's header.
    pub fn header(&self) -> [u8; HEADER_LEN] {
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()..].copy_from_slice(&self.file_id);
        header
    }

    /// Refuse a header that is not this file's.
    pub fn check_header(&self, header: &[u8; HEADER_LEN]) -> Result<(), Error> {
        if *header != self.header() {
            return Err(Error::SpillIntegrity {
                chunk: 0,
                reason: "header is not this file's",
            });
        }
        Ok(())
    }

    fn nonce(index: u64) -> Nonce {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[NONCE_LEN - 8..].copy_from_slice(&index.to_be_bytes());
        Nonce::assume_unique_for_key(nonce)
    }

    fn aad(&self, index: u64, last: bool) -> [u8; HEADER_LEN + 9] {
        let mut aad = [0u8; HEADER_LEN + 9];
        aad[..HEADER_LEN].copy_from_slice(&self.header());
        aad[HEADER_LEN..HEADER_LEN + 8].copy_from_slice(&index.to_be_bytes());
        aad[HEADER_LEN + 8] = u8::from(last);
        aad
    }

    /// `len ‖ ciphertext ‖ tag` of chunk `index`.
    pub fn seal(&self, index: u64, last: bool, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(LEN_PREFIX + plaintext.len() + TAG_LEN);
        let len = u32::try_from(plaintext.len() + TAG_LEN)
            .map_err(|_| Error::Internal("chunk longer than 4 GiB"))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(plaintext);
        let mut body = out.split_off(LEN_PREFIX);
        self.key
            .seal_in_place_append_tag(
                Self::nonce(index),
                Aad::from(self.aad(index, last)),
                &mut body,
            )
            .map_err(|_| Error::Internal("AES-GCM seal of a spill chunk"))?;
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decrypt `ciphertext ‖ tag` of chunk `index` in place; returns the plaintext length.
    pub fn open(&self, index: u64, last: bool, body: &mut [u8]) -> Result<usize, Error> {
        self.key
            .open_in_place(Self::nonce(index), Aad::from(self.aad(index, last)), body)
            .map(|plain| plain.len())
            .map_err(|_| Error::SpillIntegrity {
                chunk: index,
                reason: "authentication failed (tampered, reordered or from another file)",
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cipher() -> ChunkCipher {
        ChunkCipher::derive(&spill_prk(&[7; 32]), [1; FILE_ID_LEN]).unwrap()
    }

    #[test]
    fn final_flag_is_authenticated() {
        // A non-final chunk presented as final (or vice versa) does not open.
        let cipher = cipher();
        let sealed = cipher.seal(4, false, b"payload").unwrap();
        let mut body = sealed[LEN_PREFIX..].to_vec();
        assert!(cipher.open(4, true, &mut body.clone()).is_err());
        assert!(cipher.open(5, false, &mut body.clone()).is_err());
        assert_eq!(cipher.open(4, false, &mut body).unwrap(), 7);
    }

    #[test]
    fn another_files_header_and_body_are_refused() {
        let a = cipher();
        let b = ChunkCipher::derive(&spill_prk(&[7; 32]), [2; FILE_ID_LEN]).unwrap();
        a.check_header(&a.header()).unwrap();
        assert!(matches!(
            a.check_header(&b.header()),
            Err(Error::SpillIntegrity { chunk: 0, .. })
        ));
        let mut body = b.seal(0, true, b"x").unwrap().split_off(LEN_PREFIX);
        assert!(matches!(
            a.open(0, true, &mut body),
            Err(Error::SpillIntegrity { chunk: 0, .. })
        ));
    }

    #[test]
    fn body_lengths_outside_the_chunk_range_are_refused() {
        assert_eq!(body_len(3, 16u32.to_le_bytes(), 1024).unwrap(), 16);
        assert_eq!(body_len(3, 1040u32.to_le_bytes(), 1024).unwrap(), 1040);
        for bad in [0u32, 15, 1041, u32::MAX] {
            assert!(matches!(
                body_len(3, bad.to_le_bytes(), 1024),
                Err(Error::SpillIntegrity { chunk: 3, .. })
            ));
        }
    }
}

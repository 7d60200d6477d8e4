#![no_main]
//! Encrypted spill chunks from untrusted bytes (a spill file lies on a disk the host controls):
//! the header check, the length framing and the chunk opening must return an error, never
//! panic, and must never hand out plaintext that a writer under the key did not seal.
//!
//! AES-GCM cannot be forged by a fuzzer, so the framing parser is fuzzed before decryption (the
//! input as a chunk stream, with its own header or with this file's, as the engine's reader
//! walks it) and the opening with arbitrary bodies; and the input is sealed as a stream of
//! chunks and read back, which must round-trip exactly.
use cloister_formats::Error;
use cloister_formats::spill::{
    ChunkCipher, FILE_ID_LEN, HEADER_LEN, LEN_PREFIX, body_len, spill_prk,
};
use libfuzzer_sys::fuzz_target;

/// Walk `bytes` as a spill file of which the writer sealed `sealed` chunks (the last one final
/// if `finished`), as `cloister_engine::spill`'s reader does, and return the plaintext.
fn read_stream(
    cipher: &ChunkCipher,
    bytes: &[u8],
    chunk_size: usize,
    sealed: u64,
    finished: bool,
) -> Result<Vec<u8>, Error> {
    let truncated = |chunk, reason| Error::SpillIntegrity { chunk, reason };
    let (header, mut rest) = bytes
        .split_first_chunk::<HEADER_LEN>()
        .ok_or(truncated(0, "header missing or truncated"))?;
    cipher.check_header(header)?;
    let mut plain = Vec::new();
    for index in 0..sealed {
        let last = finished && index + 1 == sealed;
        let (prefix, after) = rest
            .split_first_chunk::<LEN_PREFIX>()
            .ok_or(truncated(index, "file truncated before a sealed chunk"))?;
        let len = body_len(index, *prefix, chunk_size)?;
        if after.len() < len {
            return Err(truncated(index, "file truncated inside a chunk"));
        }
        let (body, after) = after.split_at(len);
        let mut body = body.to_vec();
        let plain_len = cipher.open(index, last, &mut body)?;
        plain.extend_from_slice(&body[..plain_len]);
        rest = after;
        if last && !rest.is_empty() {
            return Err(truncated(index + 1, "data after the final chunk"));
        }
    }
    Ok(plain)
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(cipher) = ChunkCipher::derive(&spill_prk(&[0x42; 32]), [0x17; FILE_ID_LEN]) else {
        return;
    };
    // The engine clamps chunk sizes to 1 KiB … 16 MiB; small ones keep chunks in reach.
    let chunk_size = 1024 << (selector & 3);
    let sealed = u64::from(selector >> 3);
    let finished = selector & 4 != 0;

    // The input as a whole file, and as chunks after this file's header.
    let _ = read_stream(&cipher, rest, chunk_size, sealed, finished);
    let mut with_header = cipher.header().to_vec();
    with_header.extend_from_slice(rest);
    let _ = read_stream(&cipher, &with_header, chunk_size, sealed, finished);

    // The input as one chunk body.
    let mut body = rest.to_vec();
    assert!(cipher.open(sealed, finished, &mut body).is_err());

    // Sealed in chunks of at most `piece` bytes (the last one final) and read back.
    let piece = usize::from(selector).max(1);
    let mut file = cipher.header().to_vec();
    let pieces: Vec<&[u8]> = rest.chunks(piece).chain([&[][..]]).collect();
    for (index, chunk) in pieces.iter().enumerate() {
        let last = index + 1 == pieces.len();
        match cipher.seal(index as u64, last, chunk) {
            Ok(sealed) => file.extend_from_slice(&sealed),
            Err(e) => panic!("sealing failed: {e}"),
        }
    }
    let back = read_stream(
        &cipher,
        &file,
        chunk_size.max(piece),
        pieces.len() as u64,
        true,
    );
    assert!(
        back.as_deref().is_ok_and(|b| b == rest),
        "sealed chunks do not read back: {back:?}"
    );
});

#![no_main]
//! Parquet KMT key material from untrusted bytes (a file's key metadata is written by whoever
//! wrote the file): the `PKMT1` parser and the local key unwrapping must return an error, never
//! panic.
//!
//! The input is tried as a key-material document; whatever parses must serialise and parse back
//! to the same document, and its wrapped keys are unwrapped under a fixed master key as the
//! engine's `KmtKeyProvider` does. The input is also tried as a wrapped key directly, and — so
//! that fuzzing reaches past the AES-GCM tag — wrapped and unwrapped again.
use cloister_formats::kmt::{KeyMaterial, unwrap_locally, wrap_locally};
use libfuzzer_sys::fuzz_target;

const MASTER_128: [u8; 16] = [0x5a; 16];
const MASTER_256: [u8; 32] = [0xa5; 32];

fuzz_target!(|data: &[u8]| {
    let _ = KeyMaterial::is_key_material(data);
    if let Ok(material) = KeyMaterial::parse(data) {
        if let Ok(json) = material.to_json() {
            let again = KeyMaterial::parse(json.as_bytes());
            assert!(
                again.as_ref().is_ok_and(|m| *m == material),
                "key material does not round-trip: {json} -> {again:?}"
            );
        }
        let aad = material.master_key_id.as_bytes();
        let name = &material.master_key_id;
        for master in [&MASTER_128[..], &MASTER_256[..]] {
            if let Some(wrapped_kek) = &material.wrapped_kek {
                let _ = unwrap_locally(wrapped_kek, master, aad, name);
            }
            let _ = unwrap_locally(&material.wrapped_dek, master, aad, name);
        }
    }

    // As a wrapped key (base64 text), and as a plaintext that must round-trip.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let key: &[u8] = match selector % 3 {
        0 => &MASTER_128,
        1 => &MASTER_256,
        _ => &[7; 24], // AES-192: refused, never a panic
    };
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = unwrap_locally(text, key, b"kf", "kf");
    }
    if let Ok(wrapped) = wrap_locally(rest, key, b"kf") {
        let plain = unwrap_locally(&wrapped, key, b"kf", "kf");
        assert!(
            plain.as_ref().is_ok_and(|p| p.as_slice() == rest),
            "wrapped key does not unwrap: {plain:?}"
        );
        assert!(unwrap_locally(&wrapped, key, b"kc", "kc").is_err());
    }
});

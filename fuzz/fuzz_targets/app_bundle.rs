#![no_main]
//! Arbitrary bytes into the app bundle reader, three ways (picked by the first byte): as a whole
//! bundle opened with a fixed key (header parsing, key check, authentication); as the plaintext
//! archive of a bundle sealed with that key (so the tar reader and the path checks are reached
//! past authentication, as only a key holder could); and as an archive unpacked directly.
//! Nothing may panic.
use cloister_runtime::bundle::{self, BundleKey, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    let key = BundleKey::from_bytes([0x42; 32]);
    let Some((mode, data)) = input.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = Header::parse(data);
            let _ = bundle::open(data, &key, "fuzz");
        }
        1 => {
            if let Ok(sealed) = bundle::seal(data, &key, "fuzz") {
                let _ = bundle::open(&sealed, &key, "fuzz");
            }
        }
        _ => {
            let _ = bundle::unpack(data);
        }
    }
});

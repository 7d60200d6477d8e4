#![no_main]
//! The CAS parses the `Authorization: Cloister-Sig …` header of any request before it knows who
//! sent it: the parser must never panic, and what it accepts must print back to a value that
//! parses to the same thing (no two readings of one header).
use cloister_cas::api::SignatureHeader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(parsed) = SignatureHeader::parse(text) {
        let again = SignatureHeader::parse(&parsed.to_header_value());
        assert_eq!(again.as_ref(), Some(&parsed), "{text:?}");
    }
});

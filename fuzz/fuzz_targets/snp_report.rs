#![no_main]
//! Placeholder: the module's helper writes this target.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = data;
});

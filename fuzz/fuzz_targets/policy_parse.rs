//! Policy documents arrive at the CAS before their signatures are checked: parsing any bytes
//! must return a value or located problems, never panic, and stay within its limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cloister_policy::Policy::parse(text);
        let _ = cloister_policy::SignedPolicy::from_json(text);
        let _ = cloister_policy::resolve(text, &|_| None);
    }
});

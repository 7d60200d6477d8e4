#![no_main]
//! The audit log verifier reads files an attacker may have rewritten: it must never panic.
//! Input: `head bytes ‖ 0xff ‖ log bytes` (0xff never occurs in UTF-8 text).
use cloister_cas::MasterKey;
use cloister_cas::audit::{AuditSigner, verify_bytes};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn key() -> &'static cloister_cas::audit::AuditPublicKey {
    static KEY: OnceLock<cloister_cas::audit::AuditPublicKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let master = MasterKey::from_hex(&"11".repeat(32), "fuzz").expect("fixed key is valid");
        AuditSigner::from_master_key(&master)
            .expect("fixed key derives")
            .public_key()
    })
}

fuzz_target!(|data: &[u8]| {
    let (head, log) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let _ = verify_bytes(log, head, key());
});

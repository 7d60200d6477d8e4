#![no_main]
//! The LAS reads its collateral cache back from a directory on the host's disk, which whoever
//! controls the host can write: the envelope parser (JSON, base64, digest) and the appraisal of
//! the body it holds (DCAP collateral JSON, VCEK DER, ASK/ARK PEM) must never panic, whatever
//! the bytes. Each input is tried as a cache file and as a bare body for every kind of item, so
//! the recorded collateral in testdata/ seeds the body parsers directly.
use cloister_las::collateral::{self, AmdProduct, DcapTee, Item, PckCa, SnpTcb};
use libfuzzer_sys::fuzz_target;

/// The platforms of the recorded collateral (testdata/tee-evidence), so that bodies get past
/// the FMSPC check, and an AMD chip of each kind.
fn items() -> [Item; 5] {
    [
        Item::Dcap {
            tee: DcapTee::Sgx,
            fmspc: [0x00, 0xA0, 0x67, 0x11, 0x00, 0x00],
            ca: PckCa::Processor,
        },
        Item::Dcap {
            tee: DcapTee::Tdx,
            fmspc: [0xB0, 0xC0, 0x6F, 0x00, 0x00, 0x00],
            ca: PckCa::Platform,
        },
        Item::Vcek {
            product: AmdProduct::Milan,
            chip_id: [0x5a; 64],
            tcb: SnpTcb(0x0300_0000_0000_0008),
        },
        Item::AmdCertChain {
            product: AmdProduct::Milan,
        },
        Item::AmdCertChain {
            product: AmdProduct::Genoa,
        },
    ]
}

fuzz_target!(|data: &[u8]| {
    for item in items() {
        if let Ok(cached) = collateral::decode_envelope(&item, data) {
            // What the envelope accepted is a body the appraisal accepts with the same window.
            let window = collateral::appraise(&item, &cached.body).expect("appraised twice");
            assert_eq!(window, cached.window);
        }
        let _ = collateral::appraise(&item, data);
    }
});

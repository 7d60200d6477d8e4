//! Test helpers: the shared Always Encrypted test data, and a deterministic mutator.

use std::sync::OnceLock;

use crate::Cmk;

const DIR: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../testdata/always-encrypted/"
);

pub(crate) fn read(rel: &str) -> Vec<u8> {
    std::fs::read(format!("{DIR}{rel}")).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

pub(crate) fn read_string(rel: &str) -> String {
    String::from_utf8(read(rel)).unwrap()
}

pub(crate) fn vectors() -> serde_json::Value {
    serde_json::from_slice(&read("vectors.json")).unwrap()
}

pub(crate) fn hex_field(v: &serde_json::Value, name: &str) -> Vec<u8> {
    let text = v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no hex field {name} in {v}"));
    hex::decode(text).unwrap()
}

/// The CEK the swisscom CMK unwraps from `swisscom/cekv.key`.
pub(crate) fn swisscom_cek() -> Vec<u8> {
    let vectors = vectors();
    let v = vectors["encrypted_cek_vectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["id"] == "cekv-swisscom-cert-store")
        .unwrap();
    hex_field(v, "expected_cek")
}

/// The test-only CMK of the swisscom vectors.
pub(crate) fn swisscom_cmk() -> Cmk {
    Cmk::from_pem(&read_string("swisscom/always-encrypted.pem")).unwrap()
}

/// Another 2048-bit CMK, generated once per test run.
pub(crate) fn other_cmk() -> &'static Cmk {
    static KEY: OnceLock<Cmk> = OnceLock::new();
    KEY.get_or_init(|| Cmk::generate(2048).unwrap())
}

/// A small deterministic generator (SplitMix64) for reproducible mutations. Not for keys.
pub(crate) struct Lcg(u64);

impl Lcg {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub(crate) fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }

    /// One to three random edits: flip a bit, set a byte, truncate, extend, insert, delete,
    /// or swap two bytes.
    pub(crate) fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + self.below(3) {
            let len = out.len();
            match self.below(7) {
                0 if len > 0 => {
                    let at = self.below(len);
                    out[at] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let at = self.below(len);
                    out[at] = self.byte();
                }
                2 => out.truncate(self.below(len + 1)),
                3 => {
                    let n = 1 + self.below(32);
                    let extra = self.bytes(n);
                    out.extend_from_slice(&extra);
                }
                4 => {
                    let at = self.below(len + 1);
                    let b = self.byte();
                    out.insert(at, b);
                }
                5 if len > 0 => {
                    let at = self.below(len);
                    out.remove(at);
                }
                6 if len > 1 => {
                    let (a, b) = (self.below(len), self.below(len));
                    out.swap(a, b);
                }
                _ => {}
            }
        }
        out
    }
}

#![no_main]
//! Arbitrary bytes into the sim verifier, three ways (picked by the first byte): as whole evidence; as the statement of
//! correctly signed evidence (so the statement parser is reached past the signature); and
//! overwriting part of valid evidence signed by the trusted key. Nothing may panic.
use cloister_attest::sim::{self, PlatformKey, SimVerifier, Statement};
use cloister_attest::{Context, Verifier as _};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;
use std::time::SystemTime;

/// A fixed key (made with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`),
/// so that runs and crash reproductions are deterministic. It protects nothing.
const KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZva54ZEFg+7PmICX
2sxQ2oP32MCVEc3v2tvULE1YPz2hRANCAAT3Z/06BexU0t1VGf1A0ww22r5OJ3BL
KPzo3WPF0HGv4AQJEtbdo9PJushhLAQdyidPbNPHLHtp4uggM5ELmCdw
-----END PRIVATE KEY-----
";

struct Fixture {
    key: PlatformKey,
    verifier: SimVerifier,
    valid: Vec<u8>,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let key = PlatformKey::from_pem(KEY_PEM).expect("fixed key parses");
    let verifier = SimVerifier::new([key.public_key()]);
    let valid = key
        .sign(&Statement {
            measurement: vec![0xab; 32],
            report_data: vec![0xcd; 64],
            svn: 1,
            advisory_ids: vec!["INTEL-SA-00615".into()],
            ..Default::default()
        })
        .expect("valid statement signs");
    Fixture {
        key,
        verifier,
        valid,
    }
});

fuzz_target!(|input: &[u8]| {
    let f = &*FIXTURE;
    let ctx = Context::new(SystemTime::UNIX_EPOCH);
    // The first byte picks the mode, so the slow signing modes do not slow down the others.
    let Some((mode, data)) = input.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let _ = sim::sniff(data);
            let _ = f.verifier.verify(data, &ctx);
        }
        1 => {
            if let Ok(evidence) = f.key.sign_statement_bytes(data) {
                let _ = f.verifier.verify(&evidence, &ctx);
            }
        }
        _ => {
            if let [a, b, rest @ ..] = data {
                let mut evidence = f.valid.clone();
                let at = usize::from(u16::from_le_bytes([*a, *b])) % (evidence.len() + 1);
                let end = (at + rest.len()).min(evidence.len());
                evidence.splice(at..end, rest.iter().copied());
                let _ = f.verifier.verify(&evidence, &ctx);
            }
        }
    }
});

//! The SEV-SNP attestation report: decoding (raw or ASCII hex), its fixed layout, and its signature.
//!
//! The layout is the `ATTESTATION_REPORT` structure of the SEV-SNP firmware ABI (AMD 56860, table
//! "ATTESTATION_REPORT Structure"): 0x4A0 bytes, little-endian integers, the ECDSA P-384 signature
//! at 0x2A0 over bytes `0..0x2A0`. Versions 2, 3 and 5 share every offset read here; version 3
//! adds the CPUID fields in former reserved bytes and version 5 the mitigation vectors.
//!
//! The report is read at fixed offsets from the bytes as given, and the signature is checked over
//! exactly those bytes: nothing is re-encoded, so reserved bytes and masked chip ids need no
//! special handling (the `sev` crate's eager parser rejects a version-2 report whose chip id is
//! masked, and verifies a re-encoding of the report rather than the signed bytes).

use crate::Error;
use std::fmt;

/// Length of an attestation report.
pub(crate) const REPORT_LEN: usize = 0x4A0;
/// Length of the signed part of the report (the signature covers `0..SIGNED_LEN`).
pub(crate) const SIGNED_LEN: usize = 0x2A0;
/// The report versions whose layout this module reads.
pub(crate) const SUPPORTED_VERSIONS: [u32; 3] = [2, 3, 5];
/// `SIGNATURE_ALGO` value for ECDSA P-384 with SHA-384.
pub(crate) const SIG_ALGO_ECDSA_P384_SHA384: u32 = 1;

const WHAT: &str = "SEV-SNP report";

/// Bit 19 of the guest policy: the hypervisor may debug the guest (read its memory).
pub(crate) const POLICY_DEBUG: u64 = 1 << 19;

/// An attestation report of exactly [`REPORT_LEN`] bytes, not yet checked in any other way.
#[derive(Clone)]
pub(crate) struct Report {
    bytes: Box<[u8; REPORT_LEN]>,
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Report")
            .field("version", &self.version())
            .field("measurement", &hex::encode(self.measurement()))
            .finish_non_exhaustive()
    }
}

impl Report {
    /// Decode evidence: the raw report, or its ASCII hex with any whitespace.
    ///
    /// Input made only of printable ASCII and whitespace is taken as hex (a raw report starts
    /// with its version, `02 00 00 00` and the like, which is not printable).
    pub(crate) fn decode(evidence: &[u8]) -> Result<Self, Error> {
        let textual = !evidence.is_empty()
            && evidence
                .iter()
                .all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        if textual {
            let digits: Vec<u8> = evidence
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            let raw = hex::decode(digits)
                .map_err(|e| Error::malformed(WHAT, format_args!("text that is not hex: {e}")))?;
            Self::from_raw(&raw)
        } else {
            Self::from_raw(evidence)
        }
    }

    /// Take exactly [`REPORT_LEN`] raw bytes.
    fn from_raw(raw: &[u8]) -> Result<Self, Error> {
        match <[u8; REPORT_LEN]>::try_from(raw) {
            Ok(bytes) => Ok(Self {
                bytes: Box::new(bytes),
            }),
            Err(_) if raw.len() < REPORT_LEN => Err(Error::Truncated {
                what: WHAT,
                need: REPORT_LEN,
                got: raw.len(),
            }),
            Err(_) => Err(Error::malformed(
                WHAT,
                format_args!(
                    "{} trailing bytes after the {REPORT_LEN}-byte report",
                    raw.len() - REPORT_LEN
                ),
            )),
        }
    }

    /// Check that this module knows the report's version and signature algorithm.
    pub(crate) fn check_format(&self) -> Result<(), Error> {
        if !SUPPORTED_VERSIONS.contains(&self.version()) {
            return Err(Error::Unsupported {
                what: "SEV-SNP report version",
                got: self.version().to_string(),
            });
        }
        if self.sig_algo() != SIG_ALGO_ECDSA_P384_SHA384 {
            return Err(Error::Unsupported {
                what: "SEV-SNP report signature algorithm",
                got: self.sig_algo().to_string(),
            });
        }
        if self.signing_key() != 0 {
            return Err(Error::Unsupported {
                what: "SEV-SNP report signing key (only VCEK-signed reports are verified)",
                got: match self.signing_key() {
                    1 => "VLEK".to_owned(),
                    7 => "none".to_owned(),
                    other => other.to_string(),
                },
            });
        }
        Ok(())
    }

    /// `N` bytes at `offset`. Every caller passes constants inside the report, so the slice
    /// bounds cannot fail.
    fn array<const N: usize>(&self, offset: usize) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[offset..offset + N]);
        out
    }

    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.array(offset))
    }

    fn u64_at(&self, offset: usize) -> u64 {
        u64::from_le_bytes(self.array(offset))
    }

    /// The report format version.
    pub(crate) fn version(&self) -> u32 {
        self.u32_at(0x00)
    }
    /// The guest SVN from the ID block.
    pub(crate) fn guest_svn(&self) -> u32 {
        self.u32_at(0x04)
    }
    /// The guest policy.
    pub(crate) fn policy(&self) -> u64 {
        self.u64_at(0x08)
    }
    /// The family id from the ID block.
    pub(crate) fn family_id(&self) -> [u8; 16] {
        self.array(0x10)
    }
    /// The image id from the ID block.
    pub(crate) fn image_id(&self) -> [u8; 16] {
        self.array(0x20)
    }
    /// The VMPL the report was requested at.
    pub(crate) fn vmpl(&self) -> u32 {
        self.u32_at(0x30)
    }
    /// The signature algorithm (1: ECDSA P-384 with SHA-384).
    pub(crate) fn sig_algo(&self) -> u32 {
        self.u32_at(0x34)
    }
    /// The platform's current TCB.
    pub(crate) fn current_tcb(&self) -> Tcb {
        Tcb::from_le(self.u64_at(0x38))
    }
    /// Platform information flags (SMT enabled, TSME enabled, …).
    pub(crate) fn platform_info(&self) -> u64 {
        self.u64_at(0x40)
    }
    /// Which key signed the report: bits 4:2 of the key information (0 VCEK, 1 VLEK, 7 none).
    fn signing_key(&self) -> u32 {
        (self.u32_at(0x48) >> 2) & 0b111
    }
    /// The 64 bytes of guest data the report binds.
    pub(crate) fn report_data(&self) -> [u8; 64] {
        self.array(0x50)
    }
    /// The launch measurement.
    pub(crate) fn measurement(&self) -> [u8; 48] {
        self.array(0x90)
    }
    /// Data the hypervisor gave at launch.
    pub(crate) fn host_data(&self) -> [u8; 32] {
        self.array(0xC0)
    }
    /// SHA-384 of the ID key that signed the ID block (zero without an ID block).
    pub(crate) fn id_key_digest(&self) -> [u8; 48] {
        self.array(0xE0)
    }
    /// SHA-384 of the author key that certified the ID key (zero without one).
    pub(crate) fn author_key_digest(&self) -> [u8; 48] {
        self.array(0x110)
    }
    /// The guest's report id.
    pub(crate) fn report_id(&self) -> [u8; 32] {
        self.array(0x140)
    }
    /// The TCB the VCEK that signs the report was derived from.
    pub(crate) fn reported_tcb(&self) -> Tcb {
        Tcb::from_le(self.u64_at(0x180))
    }
    /// The chip id (all zero when the guest policy masks it).
    pub(crate) fn chip_id(&self) -> [u8; 64] {
        self.array(0x1A0)
    }
    /// The committed TCB.
    pub(crate) fn committed_tcb(&self) -> Tcb {
        Tcb::from_le(self.u64_at(0x1E0))
    }
    /// The TCB at the time the guest was launched.
    pub(crate) fn launch_tcb(&self) -> Tcb {
        Tcb::from_le(self.u64_at(0x1F0))
    }

    /// The signed bytes.
    pub(crate) fn signed_bytes(&self) -> &[u8] {
        &self.bytes[..SIGNED_LEN]
    }

    /// The signature: `r` and `s` as 72-byte little-endian fields of which only the low 48
    /// bytes may be non-zero for P-384.
    pub(crate) fn signature(&self) -> Result<p384::ecdsa::Signature, Error> {
        let bad = || Error::BadSignature { what: WHAT };
        let r_le: [u8; 72] = self.array(SIGNED_LEN);
        let s_le: [u8; 72] = self.array(SIGNED_LEN + 72);
        if r_le[48..].iter().chain(&s_le[48..]).any(|b| *b != 0) {
            return Err(bad());
        }
        let mut r = [0u8; 48];
        let mut s = [0u8; 48];
        r.copy_from_slice(&r_le[..48]);
        s.copy_from_slice(&s_le[..48]);
        r.reverse();
        s.reverse();
        p384::ecdsa::Signature::from_scalars(r, s).map_err(|_| bad())
    }
}

/// A TCB version as Milan and Genoa lay it out: security patch levels of the boot loader, the
/// PSP OS (TEE), the SNP firmware and the microcode. (Turin adds an FMC level and moves fields.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Tcb {
    /// Boot loader SPL.
    pub(crate) bootloader: u8,
    /// PSP OS (TEE) SPL.
    pub(crate) tee: u8,
    /// SNP firmware SPL.
    pub(crate) snp: u8,
    /// Microcode SPL.
    pub(crate) microcode: u8,
}

impl Tcb {
    /// Split the little-endian `TCB_VERSION` u64: byte 0 boot loader, 1 TEE, 6 SNP, 7 microcode.
    pub(crate) fn from_le(raw: u64) -> Self {
        let b = raw.to_le_bytes();
        Self {
            bootloader: b[0],
            tee: b[1],
            snp: b[6],
            microcode: b[7],
        }
    }
}

impl From<Tcb> for crate::SnpTcb {
    fn from(t: Tcb) -> Self {
        crate::SnpTcb::new(t.bootloader, t.tee, t.snp, t.microcode)
    }
}

/// `bl=2 tee=0 snp=5 ucode=68`: the form used in claims and error messages.
impl fmt::Display for Tcb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bl={} tee={} snp={} ucode={}",
            self.bootloader, self.tee, self.snp, self.microcode
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const GO_REPORT: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/go-sev-guest/attestation.bin"
    ));
    const VIRTEE_REPORT_HEX: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sev-snp/virtee-sev/report_milan.hex"
    ));

    #[test]
    fn reads_the_go_sev_guest_fields() {
        let r = Report::decode(GO_REPORT).unwrap();
        r.check_format().unwrap();
        assert_eq!(r.version(), 2);
        assert_eq!(r.policy(), 0xb0000);
        assert_eq!(r.vmpl(), 0);
        assert_eq!(r.guest_svn(), 0);
        let tcb = Tcb::from_le(0x4405000000000002);
        assert_eq!(
            tcb,
            Tcb {
                bootloader: 2,
                tee: 0,
                snp: 5,
                microcode: 68
            }
        );
        for t in [
            r.current_tcb(),
            r.reported_tcb(),
            r.committed_tcb(),
            r.launch_tcb(),
        ] {
            assert_eq!(t, tcb);
        }
        assert_eq!(tcb.to_string(), "bl=2 tee=0 snp=5 ucode=68");
        assert_eq!(r.signed_bytes().len(), 0x2A0);
        r.signature().unwrap();
    }

    #[test]
    fn hex_with_whitespace_equals_raw() {
        let r = Report::decode(VIRTEE_REPORT_HEX).unwrap();
        let spaced: Vec<u8> = hex::encode(r.bytes.as_slice())
            .bytes()
            .enumerate()
            .flat_map(|(i, b)| {
                if i % 32 == 31 {
                    vec![b, b'\n']
                } else {
                    vec![b, b' ']
                }
            })
            .collect();
        assert_eq!(Report::decode(&spaced).unwrap().bytes, r.bytes);
        assert_eq!(r.reported_tcb().to_string(), "bl=3 tee=0 snp=8 ucode=115");
    }

    #[rstest]
    #[case::empty(0)]
    #[case::hundred(100)]
    #[case::signed_part_only(0x2A0)]
    #[case::one_short(REPORT_LEN - 1)]
    fn short_input_is_truncated(#[case] len: usize) {
        let err = Report::decode(&GO_REPORT[..len]).unwrap_err();
        assert!(
            matches!(err, Error::Truncated { need: REPORT_LEN, got, .. } if got == len),
            "{err:?}"
        );
    }

    #[test]
    fn trailing_bytes_are_malformed() {
        let mut long = GO_REPORT.to_vec();
        long.push(0);
        assert!(matches!(
            Report::decode(&long),
            Err(Error::Malformed { .. })
        ));
    }

    #[rstest]
    #[case::odd_length(b"abc".as_slice())]
    #[case::not_hex_digits(b"02000000zz".as_slice())]
    fn garbage_hex_is_malformed(#[case] input: &[u8]) {
        assert!(matches!(
            Report::decode(input),
            Err(Error::Malformed { .. })
        ));
    }

    #[rstest]
    #[case::version_0(0x00, 0)]
    #[case::version_4(0x00, 4)]
    #[case::version_6(0x00, 6)]
    #[case::sig_algo_2(0x34, 2)]
    #[case::vlek_signed(0x48, 1 << 2)]
    fn unknown_format_is_unsupported(#[case] offset: usize, #[case] value: u32) {
        let mut bytes = GO_REPORT.to_vec();
        bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        let r = Report::decode(&bytes).unwrap();
        assert!(matches!(r.check_format(), Err(Error::Unsupported { .. })));
    }

    #[test]
    fn signature_with_high_bytes_set_is_bad() {
        let mut bytes = GO_REPORT.to_vec();
        bytes[SIGNED_LEN + 60] = 1;
        let r = Report::decode(&bytes).unwrap();
        assert!(matches!(r.signature(), Err(Error::BadSignature { .. })));
        let zero = [0u8; REPORT_LEN];
        let r = Report::decode(&zero).unwrap();
        assert!(matches!(r.signature(), Err(Error::BadSignature { .. })));
    }
}

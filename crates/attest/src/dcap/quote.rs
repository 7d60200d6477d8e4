//! The layout of an Intel DCAP ECDSA quote, read without trusting it.
//!
//! dcap-qvl parses quotes too, but reports a short input only as a string. This reader walks the
//! same structure first so that a truncated quote, an unsupported version or TEE type and an
//! inconsistent length field each get their own [`Error`], and so that tests can name the byte
//! ranges of the parts they tamper with. It never allocates and never panics: every offset is
//! checked against the bytes that are present.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header (48)  version u16 | att_key_type u16 | tee_type u32 | qe_svn u16 | pce_svn u16
//!              | qe_vendor_id [16] | user_data [20]
//! body         v3: SGX enclave report (384)
//!              v4: TD report 1.0 (584)
//!              v5: body_type u16 | body_size u32 | TD report 1.0 (584) / 1.5 (648) / 1.5ex (885)
//! sig_len u32, then sig_len bytes of signature data:
//!   quote signature (64) | attestation key (64)
//!   v3:    QE report certification data (below) directly
//!   v4/v5: cert_type u16 (= 6) | size u32 | QE report certification data
//! QE report certification data:
//!   QE report (384) | QE report signature (64) | auth_len u16 | auth data
//!   | cert_type u16 | cert_size u32 | cert data (type 5: PCK chain as PEM)
//! ```

use crate::{Error, Tee};
use std::ops::Range;

/// Length of the quote header.
pub(super) const HEADER_LEN: usize = 48;
/// Attestation key type of ECDSA P-256, the only one Intel's quoting enclaves use.
const ECDSA_P256: u16 = 2;
/// TEE type of SGX in the header.
pub(super) const TEE_TYPE_SGX: u32 = 0;
/// TEE type of TDX in the header.
pub(super) const TEE_TYPE_TDX: u32 = 0x81;
/// Certification data type of a PCK certificate chain in PEM.
pub(super) const CERT_TYPE_PCK_CHAIN: u16 = 5;
/// Certification data type wrapping the QE report certification data (v4 and v5 quotes).
const CERT_TYPE_QE_REPORT: u16 = 6;

/// Which report a quote carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// SGX enclave report (quote v3).
    SgxEnclave,
    /// TD report of TDX 1.0 (quote v4, or v5 body type 2).
    Td10,
    /// TD report of TDX 1.5 (quote v5 body type 3).
    Td15,
    /// TD report of TDX 1.5 with the extended fields (quote v5 body type 4).
    Td15Ex,
}

impl BodyKind {
    /// Size of the report in bytes.
    pub(super) fn len(self) -> usize {
        match self {
            BodyKind::SgxEnclave => 384,
            BodyKind::Td10 => 584,
            BodyKind::Td15 => 648,
            BodyKind::Td15Ex => 885,
        }
    }

    /// The report of a v5 quote's body type.
    fn from_v5_type(body_type: u16) -> Option<Self> {
        match body_type {
            2 => Some(BodyKind::Td10),
            3 => Some(BodyKind::Td15),
            4 => Some(BodyKind::Td15Ex),
            _ => None,
        }
    }
}

/// Where each part of a quote is. Ranges index the quote the layout was read from and are all
/// within it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct QuoteLayout {
    /// Quote format version: 3 (SGX), 4 or 5 (TDX).
    pub version: u16,
    /// Which TEE made the quote.
    pub tee: Tee,
    /// The QE vendor id of the header.
    pub qe_vendor_id: [u8; 16],
    /// Which report the body is.
    pub body_kind: BodyKind,
    /// The report body.
    pub body: Range<usize>,
    /// The bytes the attestation key signs: header, the v5 body descriptor and the body.
    pub signed: Range<usize>,
    /// The ECDSA signature (r ‖ s) over `signed`.
    pub signature: Range<usize>,
    /// The attestation public key (x ‖ y).
    pub attestation_key: Range<usize>,
    /// The quoting enclave's report, signed by the PCK.
    pub qe_report: Range<usize>,
    /// The PCK's signature over the QE report.
    pub qe_report_signature: Range<usize>,
    /// The QE authentication data hashed into the QE report's report_data.
    pub qe_auth_data: Range<usize>,
    /// Type of the certification data; 5 is a PEM PCK certificate chain.
    pub cert_type: u16,
    /// The certification data.
    pub cert_data: Range<usize>,
}

impl QuoteLayout {
    /// Read the layout of `quote`.
    pub(super) fn parse(quote: &[u8]) -> Result<Self, Error> {
        let mut r = Reader::new(quote, quote.len());
        let header = r.take(HEADER_LEN, "quote header")?;
        let version = le_u16(quote, header.start);
        let att_key_type = le_u16(quote, header.start + 2);
        let tee_type = le_u32(quote, header.start + 4);
        let mut qe_vendor_id = [0u8; 16];
        if let Some(id) = quote.get(header.start + 12..header.start + 28) {
            qe_vendor_id.copy_from_slice(id);
        }

        let (tee, mut body_kind) = match (version, tee_type) {
            (3, TEE_TYPE_SGX) => (Tee::Sgx, BodyKind::SgxEnclave),
            (4 | 5, TEE_TYPE_TDX) => (Tee::Tdx, BodyKind::Td10),
            (3..=5, other) => {
                return Err(Error::Unsupported {
                    what: "TEE type of the DCAP quote",
                    got: format!("{other:#x} in a version {version} quote"),
                });
            }
            (other, _) => {
                return Err(Error::Unsupported {
                    what: "DCAP quote version",
                    got: other.to_string(),
                });
            }
        };
        if att_key_type != ECDSA_P256 {
            return Err(Error::Unsupported {
                what: "DCAP attestation key type",
                got: att_key_type.to_string(),
            });
        }

        if version == 5 {
            let body_type = r.u16("quote v5 body descriptor")?;
            let body_size = r.u32("quote v5 body descriptor")?;
            body_kind = BodyKind::from_v5_type(body_type).ok_or_else(|| Error::Unsupported {
                what: "TDX quote v5 body type",
                got: body_type.to_string(),
            })?;
            if usize::try_from(body_size).ok() != Some(body_kind.len()) {
                return Err(Error::malformed(
                    "quote v5 body descriptor",
                    format!(
                        "body size {body_size} does not match body type {body_type} ({} bytes)",
                        body_kind.len()
                    ),
                ));
            }
        }
        let body = r.take(body_kind.len(), "quote report body")?;
        let signed = 0..body.end;

        let sig_len = r.u32_len("quote signature data length")?;
        let sig_data = r.take(sig_len, "quote signature data")?;
        let mut s = Reader::at(quote, sig_data.start, sig_data.end);
        let signature = s.take(64, "quote signature")?;
        let attestation_key = s.take(64, "attestation key")?;
        let mut qe = if version == 3 {
            s
        } else {
            let cert_type = s.u16("QE report certification data header")?;
            if cert_type != CERT_TYPE_QE_REPORT {
                return Err(Error::Unsupported {
                    what: "certification data type of a v4/v5 quote",
                    got: cert_type.to_string(),
                });
            }
            let size = s.u32_len("QE report certification data header")?;
            let inner = s.take(size, "QE report certification data")?;
            Reader::at(quote, inner.start, inner.end)
        };
        let qe_report = qe.take(384, "QE report")?;
        let qe_report_signature = qe.take(64, "QE report signature")?;
        let auth_len = usize::from(qe.u16("QE authentication data length")?);
        let qe_auth_data = qe.take(auth_len, "QE authentication data")?;
        let cert_type = qe.u16("PCK certification data header")?;
        let cert_len = qe.u32_len("PCK certification data header")?;
        let cert_data = qe.take(cert_len, "PCK certification data")?;

        Ok(Self {
            version,
            tee,
            qe_vendor_id,
            body_kind,
            body,
            signed,
            signature,
            attestation_key,
            qe_report,
            qe_report_signature,
            qe_auth_data,
            cert_type,
            cert_data,
        })
    }
}

/// The TEE a quote header names, if it is one this module verifies. Needs the whole header.
pub(super) fn sniff(evidence: &[u8]) -> Option<Tee> {
    if evidence.len() < HEADER_LEN {
        return None;
    }
    match (le_u16(evidence, 0), le_u32(evidence, 4)) {
        (3, TEE_TYPE_SGX) => Some(Tee::Sgx),
        (4 | 5, TEE_TYPE_TDX) => Some(Tee::Tdx),
        _ => None,
    }
}

/// A bounds-checked cursor over `bytes[..end]`.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], end: usize) -> Self {
        Self::at(bytes, 0, end)
    }

    fn at(bytes: &'a [u8], pos: usize, end: usize) -> Self {
        Self {
            bytes,
            pos,
            end: end.min(bytes.len()),
        }
    }

    /// The next `n` bytes, or `Truncated` naming `what` (sizes count from the quote's start).
    fn take(&mut self, n: usize, what: &'static str) -> Result<Range<usize>, Error> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.end => {
                let range = self.pos..end;
                self.pos = end;
                Ok(range)
            }
            need => Err(Error::Truncated {
                what,
                need: need.unwrap_or(usize::MAX),
                got: self.end,
            }),
        }
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, Error> {
        let at = self.take(2, what)?.start;
        Ok(le_u16(self.bytes, at))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, Error> {
        let at = self.take(4, what)?.start;
        Ok(le_u32(self.bytes, at))
    }

    /// A u32 length field as `usize` (saturating on 16-bit targets, where it cannot fit anyway).
    fn u32_len(&mut self, what: &'static str) -> Result<usize, Error> {
        Ok(usize::try_from(self.u32(what)?).unwrap_or(usize::MAX))
    }
}

/// The little-endian u16 at `at`, or 0 if out of range (callers check ranges first).
fn le_u16(bytes: &[u8], at: usize) -> u16 {
    let mut b = [0u8; 2];
    if let Some(s) = at.checked_add(2).and_then(|end| bytes.get(at..end)) {
        b.copy_from_slice(s);
    }
    u16::from_le_bytes(b)
}

/// The little-endian u32 at `at`, or 0 if out of range (callers check ranges first).
fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = at.checked_add(4).and_then(|end| bytes.get(at..end)) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use rstest::rstest;

    const SGX: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/sgx-dcap/sgx_quote.bin"
    ));
    const TDX: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/tdx/tdx_quote.bin"
    ));
    const TDX_V5: &[u8] = include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../testdata/tee-evidence/tdx/tdx_quote_outdated.bin"
    ));

    #[rstest]
    #[case::sgx_v3(SGX, 3, Tee::Sgx, BodyKind::SgxEnclave, 48 + 384)]
    #[case::tdx_v4(TDX, 4, Tee::Tdx, BodyKind::Td10, 48 + 584)]
    #[case::tdx_v5(TDX_V5, 5, Tee::Tdx, BodyKind::Td15, 48 + 6 + 648)]
    fn reads_the_samples(
        #[case] quote: &[u8],
        #[case] version: u16,
        #[case] tee: Tee,
        #[case] kind: BodyKind,
        #[case] signed: usize,
    ) {
        let l = QuoteLayout::parse(quote).unwrap();
        assert_eq!((l.version, l.tee, l.body_kind), (version, tee, kind));
        assert_eq!(l.signed, 0..signed);
        assert_eq!(l.body.end, signed);
        assert_eq!(l.cert_type, CERT_TYPE_PCK_CHAIN);
        assert_eq!(l.qe_auth_data.len(), 32);
        let pem = &quote[l.cert_data.clone()];
        assert!(pem.starts_with(b"-----BEGIN CERTIFICATE-----"));
        // Quotes may carry unsigned bytes after the signature data (the TDX v4 sample has 70).
        assert!(l.cert_data.end <= quote.len());
        assert_eq!(sniff(quote), Some(tee));
    }

    #[test]
    fn every_prefix_is_truncated_never_a_panic() {
        for quote in [SGX, TDX, TDX_V5] {
            let full = QuoteLayout::parse(quote).unwrap();
            for len in 0..full.cert_data.end {
                match QuoteLayout::parse(&quote[..len]) {
                    Err(Error::Truncated { need, got, .. }) => assert!(need > got, "{len}"),
                    other => panic!("prefix of {len} bytes: {other:?}"),
                }
            }
        }
    }

    #[rstest]
    #[case::empty(&[], None)]
    #[case::short(&[3, 0, 2, 0, 0, 0, 0, 0], None)]
    #[case::sgx_header(&SGX[..48], Some(Tee::Sgx))]
    #[case::tdx_header(&TDX[..48], Some(Tee::Tdx))]
    #[case::snp_report(&[2u8; 1184], None)]
    fn sniffs_headers(#[case] bytes: &[u8], #[case] tee: Option<Tee>) {
        assert_eq!(sniff(bytes), tee);
    }

    #[test]
    fn sniff_rejects_mismatched_version_and_tee_type() {
        let mut q = SGX.to_vec();
        q[0] = 4; // an SGX v4 quote: not produced by Intel's QE for SGX, not verified here
        assert_eq!(sniff(&q), None);
        let mut q = TDX.to_vec();
        q[0] = 3;
        assert_eq!(sniff(&q), None);
    }

    #[test]
    fn inconsistent_v5_body_size_is_malformed() {
        let mut q = TDX_V5.to_vec();
        q[50] ^= 0x01; // body_size 648 -> 649
        assert!(matches!(
            QuoteLayout::parse(&q),
            Err(Error::Malformed {
                what: "quote v5 body descriptor",
                ..
            })
        ));
        let mut q = TDX_V5.to_vec();
        q[48] = 9; // body type 9
        assert!(matches!(
            QuoteLayout::parse(&q),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn huge_length_fields_are_truncation() {
        let l = QuoteLayout::parse(SGX).unwrap();
        let mut q = SGX.to_vec();
        q[l.body.end..l.body.end + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            QuoteLayout::parse(&q),
            Err(Error::Truncated {
                what: "quote signature data",
                ..
            })
        ));
    }
}

//! TEE evidence for Cloister: collect it inside a workload, verify it anywhere.
//!
//! Every trust decision in Cloister starts here: is this really the expected code, in a real,
//! up-to-date TEE, and is the evidence bound to this workload's key? This crate answers that for
//! Intel SGX (DCAP quotes v3), Intel TDX (quotes v4 and v5), AMD SEV-SNP (attestation reports with
//! the VCEK → ASK → ARK chain), Microsoft Azure Attestation tokens, and `sim`, a software TEE for
//! development whose claims always say `tee: sim`.
//!
//! # Design
//!
//! Verification is pure: evidence, trust anchors, collateral, a fixed "now" and the expected
//! `report_data` go in; a [`Verified`] value or a typed [`Error`] comes out. No network, no async
//! runtime, no clock read behind the caller's back — fetching and caching collateral is the node
//! agent's job. [`Verified`] can only be built by this crate, so holding one proves the checks ran.
//! Every TEE's result is normalised into one [`Claims`] struct so that policies are written once.
//!
//! One trust set, [`Verifiers`], holds the anchors for every kind of evidence and picks the
//! verifier an [`EvidenceKind`] needs, with the [`Collateral`] that came with the evidence. It is
//! the only place a kind is mapped to a verifier, and [`EvidenceKind`]'s methods the only place it
//! is mapped to a [`Tee`] or an [`EvidenceFormat`]: the CAS, the CLI and the runtime go through
//! them, so a new kind of evidence is added in this crate (and named in `cloister-policy`).
//!
//! # Example
//!
//! ```
//! use cloister_attest::{binding, sim, Context, Tee, Verifier};
//! use std::time::SystemTime;
//!
//! // A simulated platform key signs a statement binding a nonce and the workload's key.
//! let platform = sim::PlatformKey::generate();
//! let report_data = binding::report_data(b"nonce-from-cas", b"workload SPKI DER");
//! let evidence = platform.sign(&sim::Statement {
//!     measurement: vec![0xab; 32],
//!     report_data: report_data.to_vec(),
//!     svn: 1,
//!     debug: false,
//!     ..Default::default()
//! })?;
//!
//! let verifier = sim::SimVerifier::new([platform.public_key()]);
//! let ctx = Context::new(SystemTime::now()).expect_report_data(report_data);
//! let verified = verifier.verify(&evidence, &ctx)?;
//! assert_eq!(verified.claims().tee, Tee::Sim);
//! # Ok::<(), cloister_attest::Error>(())
//! ```

pub mod binding;
mod claims;
pub mod collect;
pub mod dcap;
mod error;
mod kind;
pub mod maa;
pub mod private_fs;
pub mod sim;
pub mod snp;
mod verifiers;

pub use claims::{
    Claims, DcapDetails, EvidenceFormat, SnpDetails, SnpGuestPolicy, SnpTcb, TcbStatus, Tee,
};
pub use error::{Error, Fault, rfc3339};
pub use kind::{EvidenceKind, UnknownKind, detect};
pub use verifiers::{Collateral, Verifiers};

use std::time::SystemTime;

/// What a verification is checked against besides the trust anchors: the time, and the
/// `report_data` the evidence must carry.
#[derive(Clone, Debug)]
pub struct Context {
    now: SystemTime,
    report_data: Option<Vec<u8>>,
}

impl Context {
    /// A context that checks validity windows at `now` and does not check `report_data`.
    pub fn new(now: SystemTime) -> Self {
        Self {
            now,
            report_data: None,
        }
    }

    /// Also require the evidence's `report_data` to equal `expected` (all 64 bytes; shorter
    /// values are compared as a prefix followed by zeros, the way SGX pads them).
    pub fn expect_report_data(mut self, expected: impl AsRef<[u8]>) -> Self {
        self.report_data = Some(expected.as_ref().to_vec());
        self
    }

    /// The time at which certificates, collateral and tokens must be valid.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// Seconds since the Unix epoch of [`Context::now`] (0 for times before it).
    pub fn now_unix(&self) -> u64 {
        self.now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// The `report_data` the evidence must carry, if any.
    pub fn expected_report_data(&self) -> Option<&[u8]> {
        self.report_data.as_deref()
    }
}

/// One kind of evidence verifier, holding its trust anchors and collateral.
pub trait Verifier {
    /// Verify `evidence` at `ctx.now()` and, when `ctx` names one, check its `report_data`.
    fn verify(&self, evidence: &[u8], ctx: &Context) -> Result<Verified, Error>;
}

/// Evidence that passed verification: the proof that every check ran. Only this crate builds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    claims: Claims,
}

impl Verified {
    /// Wrap `claims` after checking the expected report data of `ctx`: the one place every
    /// verifier goes through, so no verifier can forget the key-binding check.
    pub(crate) fn new(claims: Claims, ctx: &Context) -> Result<Self, Error> {
        if let Some(expected) = ctx.expected_report_data() {
            binding::check(expected, &claims.report_data)?;
        }
        Ok(Self { claims })
    }

    /// The normalised claims of the verified evidence.
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    /// Take the claims out.
    pub fn into_claims(self) -> Claims {
        self.claims
    }
}

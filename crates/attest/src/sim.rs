//! `sim`: a software TEE for development and CI.
//!
//! A simulated platform key (ECDSA P-256) signs a [`Statement`] — a measurement, the
//! `report_data`, an SVN, the debug flag and, so tests can play the part of real hardware, a TCB
//! status and advisory ids. [`SimVerifier`] accepts only statements signed by one of the platform
//! keys it was given. Its claims always say `tee: sim`, so a policy accepts sim evidence only when
//! it names `sim`: anybody can make a platform key, and nothing here is protected by hardware.
//!
//! # Evidence format `cloister-sim/v1`
//!
//! The evidence is one JSON object with exactly these members, all strings:
//!
//! ```json
//! {"format":"cloister-sim/v1","alg":"ES256","platform_key":"MFkw…","statement":"eyJt…","signature":"3q2-…"}
//! ```
//!
//! - `format`: the version marker, [`FORMAT`]. Another value is [`Error::Unsupported`].
//! - `alg`: the signature algorithm, [`ALG`] (ECDSA P-256 with SHA-256, as in JWS). It must match
//!   the format's only algorithm; the verifier never lets it choose how to verify.
//! - `platform_key`: the signer's DER `SubjectPublicKeyInfo`, base64url without padding. It only
//!   names the key: the verifier looks its [fingerprint](PublicKey::fingerprint) up among the
//!   trusted keys and verifies with the trusted copy.
//! - `statement`: the statement's JSON bytes, base64url without padding. The signature covers
//!   these exact bytes, so the statement needs no canonical form.
//! - `signature`: the 64-byte `r ‖ s` ECDSA signature (low-S form), base64url without padding,
//!   over [`SIGNING_DOMAIN`] followed by the statement bytes. The domain prefix keeps a platform
//!   key's signature from being valid for anything else the same key might sign.
//!
//! The statement JSON has the members of [`Statement`]: `measurement` and `report_data` as hex,
//! `svn` (u32), `debug` (bool), `tcb_status` (Intel's spelling, default `UpToDate`) and
//! `advisory_ids` (default empty). Parsing is strict: unknown or duplicate members, non-canonical
//! base64 and evidence over [`MAX_EVIDENCE_LEN`] bytes are refused, and no input panics. The
//! signature is checked before the statement is parsed.

use crate::{Claims, Context, Error, EvidenceFormat, TcbStatus, Tee, Verified, Verifier};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use zeroize::Zeroizing;

/// The format marker of the evidence this module writes and reads.
pub const FORMAT: &str = "cloister-sim/v1";
/// The only signature algorithm of [`FORMAT`]: ECDSA P-256 with SHA-256.
pub const ALG: &str = "ES256";
/// The prefix the signature covers before the statement bytes (domain separation).
pub const SIGNING_DOMAIN: &[u8] = b"cloister-sim/v1 statement\0";
/// The largest evidence accepted, in bytes.
pub const MAX_EVIDENCE_LEN: usize = 64 * 1024;
/// The longest measurement, in bytes (the shortest is 1).
pub const MAX_MEASUREMENT_LEN: usize = 64;
/// The longest `report_data`, in bytes.
pub const MAX_REPORT_DATA_LEN: usize = 64;
/// The most advisory ids a statement may carry.
pub const MAX_ADVISORIES: usize = 64;
/// The longest advisory id, in bytes.
pub const MAX_ADVISORY_LEN: usize = 64;

/// The prefix of every format marker of this family, for [`sniff`].
const FORMAT_FAMILY: &[u8] = b"\"cloister-sim/";

/// What a simulated platform vouches for.
///
/// Build one with a struct literal; `..Default::default()` fills in the fields that simulate
/// hardware TCB reporting (`tcb_status: UpToDate`, no advisories).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The simulated code measurement, 1 to [`MAX_MEASUREMENT_LEN`] bytes.
    #[serde(with = "hex::serde")]
    pub measurement: Vec<u8>,
    /// The data the workload binds into the evidence, at most [`MAX_REPORT_DATA_LEN`] bytes
    /// (normally [`crate::binding::report_data`]).
    #[serde(with = "hex::serde")]
    pub report_data: Vec<u8>,
    /// The security version of the code.
    pub svn: u32,
    /// Whether the simulated TEE runs in debug mode.
    pub debug: bool,
    /// The TCB status the simulated platform reports, so tests can exercise policies on it.
    #[serde(default = "up_to_date")]
    pub tcb_status: TcbStatus,
    /// Advisory ids the simulated platform reports (at most [`MAX_ADVISORIES`], each 1 to
    /// [`MAX_ADVISORY_LEN`] printable ASCII characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub advisory_ids: Vec<String>,
}

fn up_to_date() -> TcbStatus {
    TcbStatus::UpToDate
}

impl Default for Statement {
    fn default() -> Self {
        Self {
            measurement: Vec::new(),
            report_data: Vec::new(),
            svn: 0,
            debug: false,
            tcb_status: TcbStatus::UpToDate,
            advisory_ids: Vec::new(),
        }
    }
}

impl Statement {
    /// Check the size and character rules the verifier enforces.
    pub fn validate(&self) -> Result<(), Error> {
        let n = self.measurement.len();
        if !(1..=MAX_MEASUREMENT_LEN).contains(&n) {
            return Err(Error::malformed(
                "sim statement",
                format!("measurement is {n} bytes; it must be 1 to {MAX_MEASUREMENT_LEN}"),
            ));
        }
        let n = self.report_data.len();
        if n > MAX_REPORT_DATA_LEN {
            return Err(Error::malformed(
                "sim statement",
                format!("report_data is {n} bytes; it must be at most {MAX_REPORT_DATA_LEN}"),
            ));
        }
        if self.advisory_ids.len() > MAX_ADVISORIES {
            return Err(Error::malformed(
                "sim statement",
                format!(
                    "{} advisory ids; at most {MAX_ADVISORIES} are allowed",
                    self.advisory_ids.len()
                ),
            ));
        }
        for id in &self.advisory_ids {
            let ok = (1..=MAX_ADVISORY_LEN).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                return Err(Error::malformed(
                    "sim statement",
                    format!(
                        "advisory id {:?} is not 1 to {MAX_ADVISORY_LEN} printable ASCII characters",
                        shorten(id)
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The simulated platform's signing key (ECDSA P-256). Wiped from memory on drop; its `Debug`
/// shows only the public key's fingerprint.
pub struct PlatformKey {
    key: SigningKey,
}

// The only field is a `SigningKey`, which zeroizes its scalar on drop.
impl zeroize::ZeroizeOnDrop for PlatformKey {}

impl fmt::Debug for PlatformKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformKey")
            .field("public_key", &self.public_key().fingerprint())
            .finish_non_exhaustive()
    }
}

impl PlatformKey {
    /// A fresh random key from the operating system's random number generator.
    ///
    /// # Panics
    ///
    /// If the operating system's random number generator fails, which modern systems do not.
    pub fn generate() -> Self {
        Self {
            key: SigningKey::generate(),
        }
    }

    /// Read a PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`) P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        // The decoder's error says what is wrong with the structure, never the key bytes.
        let key = SigningKey::from_pkcs8_pem(pem)
            .map_err(|e| Error::malformed("sim platform key (PKCS#8 PEM, P-256)", e))?;
        Ok(Self { key })
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> SecretString {
        #[allow(
            clippy::expect_used,
            reason = "encoding a valid fixed-size P-256 key as PKCS#8 cannot fail"
        )]
        let pem = self
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .expect("P-256 PKCS#8 encoding");
        // `pem` is `Zeroizing`, so the intermediate copy is wiped too.
        SecretString::from(pem.as_str())
    }

    /// Read a key file written by [`PlatformKey::save`]. Logs a warning when the file is
    /// readable by group or others.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let pem = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(path)
                .map_err(|e| Error::io(path, e))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "sim platform key file is readable by others; chmod 600 it"
                );
            }
        }
        Self::from_pem(&pem)
    }

    /// Write the key as PKCS#8 PEM to a new file that only its owner can read (mode 0600).
    /// Refuses to overwrite an existing file ([`Error::Io`] with `AlreadyExists`), so a trusted
    /// platform key is never lost by accident.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), Error> {
        use secrecy::ExposeSecret as _;
        let path = path.as_ref();
        let pem = self.to_pem();
        crate::private_fs::write_new(path, pem.expose_secret().as_bytes())
            .map_err(|e| Error::io(path, e))
    }

    /// The public half, to give to [`SimVerifier::new`].
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_verifying_key(*self.key.verifying_key())
    }

    /// Sign `statement` as `cloister-sim/v1` evidence. Refuses statements the verifier would
    /// refuse ([`Statement::validate`]).
    #[tracing::instrument(skip_all, fields(measurement = %hex::encode(&statement.measurement)))]
    pub fn sign(&self, statement: &Statement) -> Result<Vec<u8>, Error> {
        statement.validate()?;
        let bytes = serde_json::to_vec(statement)
            .map_err(|e| Error::Internal(format!("serialising a sim statement: {e}")))?;
        self.sign_statement_bytes(&bytes)
    }

    /// Sign `statement` bytes as given, without checking that they are a valid statement: for
    /// tests and fuzzing that need correctly signed evidence the verifier must refuse.
    #[doc(hidden)]
    pub fn sign_statement_bytes(&self, statement: &[u8]) -> Result<Vec<u8>, Error> {
        let signature = self.sign_message(&signed_message(statement))?;
        // P-256 signing does not normalise `s`; the format requires low-S, so do it here.
        let signature = signature.normalize_s();
        let envelope = Envelope {
            format: FORMAT.to_owned(),
            alg: ALG.to_owned(),
            platform_key: URL_SAFE_NO_PAD.encode(self.public_key().spki_der()),
            statement: URL_SAFE_NO_PAD.encode(statement),
            signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()),
        };
        serde_json::to_vec(&envelope)
            .map_err(|e| Error::Internal(format!("serialising sim evidence: {e}")))
    }
}

impl PlatformKey {
    /// ECDSA P-256 with SHA-256 over `message`, computed by `ring` (its assembly P-256 is several
    /// times faster than the pure-Rust one). The key pair is made for this one signature from
    /// the scalar, so the only long-lived copy of the key stays the zeroizing `SigningKey`;
    /// `ring`'s transient copy is not wiped (`ring` offers no zeroization).
    fn sign_message(&self, message: &[u8]) -> Result<Signature, Error> {
        let rng = ring::rand::SystemRandom::new();
        let scalar = Zeroizing::new(self.key.to_bytes());
        let point = self.key.verifying_key().to_sec1_bytes();
        let pair = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            scalar.as_slice(),
            &point,
            &rng,
        )
        .map_err(|_| Error::Internal("ring refused a valid P-256 key pair".into()))?;
        let fixed = pair.sign(&rng, message).map_err(|_| {
            Error::Internal("ring could not sign (random generator failure)".into())
        })?;
        Signature::from_slice(fixed.as_ref())
            .map_err(|_| Error::Internal("ring made a malformed P-256 signature".into()))
    }
}

/// A simulated platform's public key (P-256), identified by its fingerprint.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// The DER `SubjectPublicKeyInfo`, as this crate encodes it.
    spki: Vec<u8>,
    /// The uncompressed SEC1 point, as `ring` verifies with it.
    sec1: Vec<u8>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl PublicKey {
    fn from_verifying_key(key: VerifyingKey) -> Self {
        #[allow(
            clippy::expect_used,
            reason = "encoding a valid P-256 point as a fixed-size SPKI cannot fail"
        )]
        let spki = key
            .to_public_key_der()
            .expect("P-256 SPKI encoding")
            .into_vec();
        let sec1 = key.to_sec1_bytes().into_vec();
        Self { key, spki, sec1 }
    }

    /// Read a DER `SubjectPublicKeyInfo` holding a P-256 key.
    pub fn from_der(spki: &[u8]) -> Result<Self, Error> {
        let key = VerifyingKey::from_public_key_der(spki)
            .map_err(|e| Error::malformed("sim platform public key (SPKI DER, P-256)", e))?;
        Ok(Self::from_verifying_key(key))
    }

    /// Read a PEM `-----BEGIN PUBLIC KEY-----` P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, Error> {
        let key = VerifyingKey::from_public_key_pem(pem)
            .map_err(|e| Error::malformed("sim platform public key (SPKI PEM, P-256)", e))?;
        Ok(Self::from_verifying_key(key))
    }

    /// Read a PEM public key file.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let pem = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_pem(&pem)
    }

    /// The key as PEM `SubjectPublicKeyInfo`.
    pub fn to_pem(&self) -> String {
        #[allow(
            clippy::expect_used,
            reason = "PEM-encoding a fixed-size SPKI of a valid key cannot fail"
        )]
        self.key
            .to_public_key_pem(LineEnding::LF)
            .expect("P-256 SPKI PEM encoding")
    }

    /// The DER `SubjectPublicKeyInfo`.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki
    }

    /// The stable fingerprint: lower-case hex SHA-256 of the DER `SubjectPublicKeyInfo`.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.spki)
    }
}

fn fingerprint(spki: &[u8]) -> String {
    hex::encode(Sha256::digest(spki))
}

/// Verifies `cloister-sim/v1` evidence signed by one of a set of trusted platform keys.
#[derive(Clone, Debug)]
pub struct SimVerifier {
    /// Trusted keys by fingerprint.
    keys: BTreeMap<String, PublicKey>,
}

impl SimVerifier {
    /// A verifier that trusts exactly `keys`.
    pub fn new(keys: impl IntoIterator<Item = PublicKey>) -> Self {
        Self {
            keys: keys.into_iter().map(|k| (k.fingerprint(), k)).collect(),
        }
    }

    /// The fingerprints of the trusted keys, sorted.
    pub fn fingerprints(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    fn trusted_list(&self) -> String {
        const SHOWN: usize = 4;
        if self.keys.is_empty() {
            return "a trusted sim platform key (none configured)".to_owned();
        }
        let mut list: Vec<&str> = self.fingerprints().take(SHOWN).collect();
        if self.keys.len() > SHOWN {
            list.push("…");
        }
        format!("one of {}", list.join(", "))
    }
}

impl Verifier for SimVerifier {
    #[tracing::instrument(skip_all, fields(evidence_len = evidence.len()))]
    fn verify(&self, evidence: &[u8], ctx: &Context) -> Result<Verified, Error> {
        let envelope = Envelope::parse(evidence)?;

        let spki = decode("sim platform_key", &envelope.platform_key)?;
        let fp = fingerprint(&spki);
        let key = self.keys.get(&fp).ok_or_else(|| Error::Rejected {
            rule: "sim platform key",
            expected: self.trusted_list(),
            got: fp.clone(),
        })?;

        let statement_bytes = decode("sim statement", &envelope.statement)?;
        let signature_bytes = decode("sim signature", &envelope.signature)?;
        let signature = Signature::from_slice(&signature_bytes).map_err(|_| {
            Error::malformed(
                "sim signature",
                format!(
                    "{} bytes are not a P-256 r ‖ s signature (64 bytes, both non-zero and below the group order)",
                    signature_bytes.len()
                ),
            )
        })?;
        if signature.normalize_s() != signature {
            return Err(Error::malformed("sim signature", "s is not in low-S form"));
        }
        // `ring`'s assembly P-256 verifies several times faster than the pure-Rust one; the
        // signature's encoding and low-S form were checked above.
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &key.sec1,
        )
        .verify(&signed_message(&statement_bytes), &signature_bytes)
        .map_err(|_| Error::BadSignature {
            what: "sim statement",
        })?;

        // Authentic from here on; still parsed strictly.
        let statement: Statement = serde_json::from_slice(&statement_bytes)
            .map_err(|e| Error::malformed("sim statement", shorten(&e.to_string())))?;
        statement.validate()?;

        let mut claims = Claims::new(
            Tee::Sim,
            EvidenceFormat::Sim,
            statement.measurement,
            statement.report_data,
        );
        claims.svn = Some(statement.svn);
        claims.debug = statement.debug;
        claims.tcb_status = statement.tcb_status;
        claims.advisory_ids = statement.advisory_ids;
        claims.extra.insert("platform_key".to_owned(), fp);
        tracing::debug!(platform_key = %key.fingerprint(), "sim evidence verified");
        Verified::new(claims, ctx)
    }
}

/// Whether `evidence` looks like sim evidence: a JSON object carrying a `cloister-sim/` format
/// marker. Cheap (no full parse), never panics; [`SimVerifier`] does the real checks, so even
/// truncated or future-version sim evidence is routed there for a precise error.
pub fn sniff(evidence: &[u8]) -> bool {
    if evidence.len() > MAX_EVIDENCE_LEN {
        return false;
    }
    let starts_as_object = evidence
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    starts_as_object
        && evidence
            .windows(FORMAT_FAMILY.len())
            .any(|w| w == FORMAT_FAMILY)
}

/// The outer JSON object of sim evidence.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope {
    format: String,
    alg: String,
    platform_key: String,
    statement: String,
    signature: String,
}

/// Just the format marker, to tell a future version from a malformed one.
#[derive(Deserialize)]
struct FormatProbe {
    format: String,
}

impl Envelope {
    fn parse(evidence: &[u8]) -> Result<Self, Error> {
        if evidence.len() > MAX_EVIDENCE_LEN {
            return Err(Error::malformed(
                "sim evidence",
                format!(
                    "{} bytes exceed the limit of {MAX_EVIDENCE_LEN}",
                    evidence.len()
                ),
            ));
        }
        let envelope: Envelope = match serde_json::from_slice(evidence) {
            Ok(envelope) => envelope,
            Err(e) => {
                // Another version may have other members: say so rather than "unknown field".
                if let Ok(probe) = serde_json::from_slice::<FormatProbe>(evidence) {
                    check_format(&probe.format)?;
                }
                return Err(Error::malformed("sim evidence", shorten(&e.to_string())));
            }
        };
        check_format(&envelope.format)?;
        if envelope.alg != ALG {
            return Err(Error::Unsupported {
                what: "sim signature algorithm",
                got: shorten(&envelope.alg),
            });
        }
        Ok(envelope)
    }
}

fn check_format(format: &str) -> Result<(), Error> {
    if format == FORMAT {
        Ok(())
    } else {
        Err(Error::Unsupported {
            what: "sim evidence format",
            got: shorten(format),
        })
    }
}

/// The bytes the platform key signs: the domain prefix, then the statement bytes.
fn signed_message(statement: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_DOMAIN.len() + statement.len());
    message.extend_from_slice(SIGNING_DOMAIN);
    message.extend_from_slice(statement);
    message
}

fn decode(what: &'static str, b64: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|e| Error::malformed(what, format!("not unpadded base64url: {e}")))
}

/// Cut evidence-controlled text that goes into an error message to a readable length.
fn shorten(s: &str) -> String {
    const MAX: usize = 120;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binding;
    use rstest::rstest;
    use std::sync::LazyLock;
    use std::time::SystemTime;

    /// One platform key for the whole test binary: key generation is the slow part.
    static PLATFORM: LazyLock<PlatformKey> = LazyLock::new(PlatformKey::generate);
    static OTHER: LazyLock<PlatformKey> = LazyLock::new(PlatformKey::generate);

    const NONCE: &[u8] = b"nonce-from-cas";
    const SPKI: &[u8] = b"workload SPKI DER";

    fn statement() -> Statement {
        Statement {
            measurement: vec![0xab; 32],
            report_data: binding::report_data(NONCE, SPKI).to_vec(),
            svn: 7,
            debug: false,
            ..Default::default()
        }
    }

    fn verifier() -> SimVerifier {
        SimVerifier::new([PLATFORM.public_key()])
    }

    fn ctx() -> Context {
        Context::new(SystemTime::UNIX_EPOCH).expect_report_data(binding::report_data(NONCE, SPKI))
    }

    fn envelope_json(evidence: &[u8]) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_slice(evidence).unwrap()
    }

    fn to_bytes(map: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(map).unwrap()
    }

    /// Decode the envelope, let `f` change the statement JSON, re-sign it with `key`.
    fn resigned(key: &PlatformKey, f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
        let mut st = serde_json::to_value(statement()).unwrap();
        f(&mut st);
        key.sign_statement_bytes(&serde_json::to_vec(&st).unwrap())
            .unwrap()
    }

    fn with_member(evidence: &[u8], member: &str, value: serde_json::Value) -> Vec<u8> {
        let mut env = envelope_json(evidence);
        env.insert(member.to_owned(), value);
        to_bytes(&env)
    }

    fn flip_in_member(evidence: &[u8], member: &str, byte: usize) -> Vec<u8> {
        let env = envelope_json(evidence);
        let mut raw = URL_SAFE_NO_PAD
            .decode(env[member].as_str().unwrap())
            .unwrap();
        raw[byte] ^= 0x01;
        with_member(evidence, member, URL_SAFE_NO_PAD.encode(raw).into())
    }

    /// Signing and verifying moved from `p256` to `ring`: each must accept the other's work, so
    /// evidence made before the change still verifies and other verifiers accept ours.
    #[test]
    fn ring_and_p256_agree_on_sim_signatures() {
        use p256::ecdsa::signature::{Signer as _, Verifier as _};
        let evidence = PLATFORM.sign(&statement()).unwrap();
        let env = envelope_json(&evidence);
        let decode = |m: &str| URL_SAFE_NO_PAD.decode(env[m].as_str().unwrap()).unwrap();
        let statement_bytes = decode("statement");
        let signature = Signature::from_slice(&decode("signature")).unwrap();
        assert_eq!(signature.normalize_s(), signature, "low-S");
        PLATFORM
            .key
            .verifying_key()
            .verify(&signed_message(&statement_bytes), &signature)
            .unwrap();

        let by_p256: Signature = PLATFORM.key.sign(&signed_message(&statement_bytes));
        let by_p256 = URL_SAFE_NO_PAD.encode(by_p256.normalize_s().to_bytes());
        let evidence = with_member(&evidence, "signature", by_p256.into());
        verifier().verify(&evidence, &ctx()).unwrap();
        assert_eq!(PLATFORM.public_key().sec1.len(), 65, "uncompressed point");
    }

    #[test]
    fn round_trip_with_binding() {
        let evidence = PLATFORM.sign(&statement()).unwrap();
        assert!(sniff(&evidence));
        let verified = verifier().verify(&evidence, &ctx()).unwrap();
        let claims = verified.claims();
        assert_eq!(claims.tee, Tee::Sim);
        assert_eq!(claims.format, EvidenceFormat::Sim);
        assert_eq!(claims.measurement, vec![0xab; 32]);
        assert_eq!(claims.svn, Some(7));
        assert!(!claims.debug);
        assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
        assert!(claims.advisory_ids.is_empty());
        assert_eq!(
            claims.report_data,
            binding::report_data(NONCE, SPKI).to_vec()
        );
        assert_eq!(
            claims.extra.get("platform_key"),
            Some(&PLATFORM.public_key().fingerprint())
        );
    }

    #[test]
    fn simulated_tcb_status_and_advisories_reach_the_claims() {
        let st = Statement {
            tcb_status: TcbStatus::SwHardeningNeeded,
            advisory_ids: vec!["INTEL-SA-00615".into(), "INTEL-SA-00657".into()],
            debug: true,
            ..statement()
        };
        let evidence = PLATFORM.sign(&st).unwrap();
        let claims = verifier().verify(&evidence, &ctx()).unwrap().into_claims();
        assert_eq!(claims.tcb_status, TcbStatus::SwHardeningNeeded);
        assert_eq!(claims.advisory_ids, st.advisory_ids);
        assert!(claims.debug);
    }

    #[test]
    fn omitted_optional_statement_fields_take_their_defaults() {
        let evidence = resigned(&PLATFORM, |st| {
            let st = st.as_object_mut().unwrap();
            st.remove("tcb_status");
            st.remove("advisory_ids");
        });
        let claims = verifier().verify(&evidence, &ctx()).unwrap().into_claims();
        assert_eq!(claims.tcb_status, TcbStatus::UpToDate);
    }

    #[test]
    fn short_report_data_is_compared_zero_padded() {
        let st = Statement {
            report_data: b"short".to_vec(),
            ..statement()
        };
        let evidence = PLATFORM.sign(&st).unwrap();
        let ctx = Context::new(SystemTime::UNIX_EPOCH).expect_report_data(b"short");
        verifier().verify(&evidence, &ctx).unwrap();
    }

    #[test]
    fn any_of_several_trusted_keys_is_accepted() {
        let v = SimVerifier::new([OTHER.public_key(), PLATFORM.public_key()]);
        v.verify(&PLATFORM.sign(&statement()).unwrap(), &ctx())
            .unwrap();
        v.verify(&OTHER.sign(&statement()).unwrap(), &ctx())
            .unwrap();
        assert_eq!(v.fingerprints().count(), 2);
    }

    #[test]
    fn sign_refuses_what_verify_would_refuse() {
        for st in [
            Statement {
                measurement: vec![],
                ..statement()
            },
            Statement {
                measurement: vec![1; 65],
                ..statement()
            },
            Statement {
                report_data: vec![1; 65],
                ..statement()
            },
            Statement {
                advisory_ids: vec!["has space".into()],
                ..statement()
            },
            Statement {
                advisory_ids: vec![String::new()],
                ..statement()
            },
        ] {
            assert!(matches!(
                PLATFORM.sign(&st),
                Err(Error::Malformed {
                    what: "sim statement",
                    ..
                })
            ));
        }
    }

    /// Which error a tampered evidence must give.
    #[derive(Debug)]
    enum Want {
        Malformed(&'static str),
        Unsupported(&'static str),
        BadSignature,
        Rejected(&'static str),
        ReportDataMismatch,
    }

    fn check(result: Result<Verified, Error>, want: Want) {
        let err = result.unwrap_err();
        let ok = match (&err, &want) {
            (Error::Malformed { what, .. }, Want::Malformed(w)) => what == w,
            (Error::Unsupported { what, .. }, Want::Unsupported(w)) => what == w,
            (Error::BadSignature { what }, Want::BadSignature) => *what == "sim statement",
            (Error::Rejected { rule, .. }, Want::Rejected(r)) => rule == r,
            (Error::ReportDataMismatch { .. }, Want::ReportDataMismatch) => true,
            _ => false,
        };
        assert!(ok, "wanted {want:?}, got {err:?}");
    }

    fn valid() -> Vec<u8> {
        PLATFORM.sign(&statement()).unwrap()
    }

    #[rstest]
    #[case::signature_bit_flipped(flip_in_member(&valid(), "signature", 40), Want::BadSignature)]
    #[case::statement_byte_changed(flip_in_member(&valid(), "statement", 20), Want::BadSignature)]
    #[case::unknown_platform_key(OTHER.sign(&statement()).unwrap(), Want::Rejected("sim platform key"))]
    #[case::trusted_key_named_but_other_key_signed(
        with_member(
            &OTHER.sign(&statement()).unwrap(),
            "platform_key",
            URL_SAFE_NO_PAD.encode(PLATFORM.public_key().spki_der()).into(),
        ),
        Want::BadSignature
    )]
    #[case::truncated(valid()[..valid().len() - 10].to_vec(), Want::Malformed("sim evidence"))]
    #[case::empty(Vec::new(), Want::Malformed("sim evidence"))]
    #[case::not_json(b"\x30\x82\x01\x00 not json".to_vec(), Want::Malformed("sim evidence"))]
    #[case::json_array(b"[\"cloister-sim/v1\"]".to_vec(), Want::Malformed("sim evidence"))]
    #[case::wrong_format_marker(with_member(&valid(), "format", "dcap".into()), Want::Unsupported("sim evidence format"))]
    #[case::future_version(with_member(&valid(), "format", "cloister-sim/v2".into()), Want::Unsupported("sim evidence format"))]
    #[case::future_version_with_new_member(
        with_member(&with_member(&valid(), "format", "cloister-sim/v2".into()), "nonce", "x".into()),
        Want::Unsupported("sim evidence format")
    )]
    #[case::format_not_a_string(with_member(&valid(), "format", 1.into()), Want::Malformed("sim evidence"))]
    #[case::alg_confusion_none(with_member(&valid(), "alg", "none".into()), Want::Unsupported("sim signature algorithm"))]
    #[case::alg_confusion_hs256(with_member(&valid(), "alg", "HS256".into()), Want::Unsupported("sim signature algorithm"))]
    #[case::alg_confusion_eddsa(with_member(&valid(), "alg", "EdDSA".into()), Want::Unsupported("sim signature algorithm"))]
    #[case::unknown_envelope_member(with_member(&valid(), "extra", "x".into()), Want::Malformed("sim evidence"))]
    #[case::missing_envelope_member(
        { let mut e = envelope_json(&valid()); e.remove("signature"); to_bytes(&e) },
        Want::Malformed("sim evidence")
    )]
    #[case::duplicate_envelope_member(
        { let mut v = valid(); v.pop(); v.extend_from_slice(br#","alg":"ES256"}"#); v },
        Want::Malformed("sim evidence")
    )]
    #[case::unknown_statement_field(
        resigned(&PLATFORM, |st| { st["vmpl"] = 0.into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::statement_missing_measurement(
        resigned(&PLATFORM, |st| { st.as_object_mut().unwrap().remove("measurement"); }),
        Want::Malformed("sim statement")
    )]
    #[case::statement_not_json(PLATFORM.sign_statement_bytes(b"\xff\xfe").unwrap(), Want::Malformed("sim statement"))]
    #[case::statement_bad_hex(
        resigned(&PLATFORM, |st| { st["measurement"] = "zz".into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::statement_svn_negative(
        resigned(&PLATFORM, |st| { st["svn"] = (-1).into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::unknown_tcb_status(
        resigned(&PLATFORM, |st| { st["tcb_status"] = "Revoked".into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::measurement_too_long(
        resigned(&PLATFORM, |st| { st["measurement"] = hex::encode([1u8; 65]).into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::measurement_empty(
        resigned(&PLATFORM, |st| { st["measurement"] = "".into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::report_data_too_long(
        resigned(&PLATFORM, |st| { st["report_data"] = hex::encode([0u8; 65]).into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::too_many_advisories(
        resigned(&PLATFORM, |st| { st["advisory_ids"] = vec!["INTEL-SA-00001"; 65].into(); }),
        Want::Malformed("sim statement")
    )]
    #[case::oversize_evidence(
        { let mut v = b"{\"format\":\"cloister-sim/v1\",\"pad\":\"".to_vec(); v.resize(MAX_EVIDENCE_LEN, b'a'); v.extend_from_slice(b"\"}"); v },
        Want::Malformed("sim evidence")
    )]
    #[case::padded_base64(
        { let e = envelope_json(&valid()); let s = e["signature"].as_str().unwrap().to_owned(); with_member(&valid(), "signature", format!("{s}==").into()) },
        Want::Malformed("sim signature")
    )]
    #[case::standard_base64_alphabet(
        { let e = envelope_json(&valid()); let s = e["platform_key"].as_str().unwrap().replace('-', "+").replace('_', "/") + "+"; with_member(&valid(), "platform_key", s.into()) },
        Want::Malformed("sim platform_key")
    )]
    #[case::signature_short(with_member(&valid(), "signature", URL_SAFE_NO_PAD.encode([1u8; 63]).into()), Want::Malformed("sim signature"))]
    #[case::signature_zero(with_member(&valid(), "signature", URL_SAFE_NO_PAD.encode([0u8; 64]).into()), Want::Malformed("sim signature"))]
    #[case::wrong_expected_report_data(
        PLATFORM.sign(&Statement { report_data: binding::report_data(b"other nonce", SPKI).to_vec(), ..statement() }).unwrap(),
        Want::ReportDataMismatch
    )]
    fn tampered_evidence_is_refused(#[case] evidence: Vec<u8>, #[case] want: Want) {
        check(verifier().verify(&evidence, &ctx()), want);
    }

    #[test]
    fn high_s_signature_is_refused() {
        // (r, n - s) verifies under plain ECDSA too; the format requires the low-S one only.
        let evidence = valid();
        let env = envelope_json(&evidence);
        let raw = URL_SAFE_NO_PAD
            .decode(env["signature"].as_str().unwrap())
            .unwrap();
        let sig = Signature::from_slice(&raw).unwrap();
        let (r, s) = sig.split_scalars();
        let high = Signature::from_scalars(r, -s).unwrap();
        assert_ne!(high, sig);
        let tampered = with_member(
            &evidence,
            "signature",
            URL_SAFE_NO_PAD.encode(high.to_bytes()).into(),
        );
        check(
            verifier().verify(&tampered, &ctx()),
            Want::Malformed("sim signature"),
        );
    }

    #[test]
    fn unknown_key_error_names_the_fingerprints() {
        let err = verifier()
            .verify(&OTHER.sign(&statement()).unwrap(), &ctx())
            .unwrap_err();
        let Error::Rejected { expected, got, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(got, OTHER.public_key().fingerprint());
        assert!(expected.contains(&PLATFORM.public_key().fingerprint()));
        let none = SimVerifier::new([]);
        assert!(matches!(
            none.verify(&valid(), &ctx()),
            Err(Error::Rejected {
                rule: "sim platform key",
                ..
            })
        ));
    }

    #[test]
    fn pem_round_trips() {
        use secrecy::ExposeSecret as _;
        let pem = PLATFORM.to_pem();
        assert!(
            pem.expose_secret()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        let back = PlatformKey::from_pem(pem.expose_secret()).unwrap();
        assert_eq!(back.public_key(), PLATFORM.public_key());

        let public = PLATFORM.public_key();
        let pem = public.to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::from_pem(&pem).unwrap(), public);
        assert_eq!(PublicKey::from_der(public.spki_der()).unwrap(), public);

        assert!(matches!(
            PlatformKey::from_pem(&pem),
            Err(Error::Malformed { .. })
        ));
        assert!(matches!(
            PublicKey::from_pem("not pem"),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn openssl_generated_key_loads() {
        // `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256` (the fuzz target's key).
        const PEM: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgZva54ZEFg+7PmICX
2sxQ2oP32MCVEc3v2tvULE1YPz2hRANCAAT3Z/06BexU0t1VGf1A0ww22r5OJ3BL
KPzo3WPF0HGv4AQJEtbdo9PJushhLAQdyidPbNPHLHtp4uggM5ELmCdw
-----END PRIVATE KEY-----
";
        let key = PlatformKey::from_pem(PEM).unwrap();
        let evidence = key.sign(&statement()).unwrap();
        SimVerifier::new([key.public_key()])
            .verify(&evidence, &ctx())
            .unwrap();
    }

    #[test]
    fn fingerprint_is_sha256_of_spki_hex() {
        let public = PLATFORM.public_key();
        let fp = public.fingerprint();
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, hex::encode(Sha256::digest(public.spki_der())));
        // A P-256 SPKI with an uncompressed point is 91 bytes.
        assert_eq!(public.spki_der().len(), 91);
        assert_eq!(fp, public.fingerprint());
    }

    #[test]
    fn save_and_load_with_owner_only_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.pem");
        PLATFORM.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let loaded = PlatformKey::load(&path).unwrap();
        assert_eq!(loaded.public_key(), PLATFORM.public_key());

        // Never overwrites a key.
        let err = OTHER.save(&path).unwrap_err();
        assert!(
            matches!(&err, Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists)
        );
        assert_eq!(
            PlatformKey::load(&path).unwrap().public_key(),
            PLATFORM.public_key()
        );

        let pub_path = dir.path().join("platform.pub.pem");
        std::fs::write(&pub_path, PLATFORM.public_key().to_pem()).unwrap();
        assert_eq!(PublicKey::load(&pub_path).unwrap(), PLATFORM.public_key());
        assert!(matches!(
            PublicKey::load(dir.path().join("missing")),
            Err(Error::Io { .. })
        ));
    }

    #[test]
    fn debug_omits_the_private_key() {
        use secrecy::ExposeSecret as _;
        let debug = format!("{:?}", *PLATFORM);
        assert!(debug.contains(&PLATFORM.public_key().fingerprint()));
        let pem = PLATFORM.to_pem();
        let body: String = pem
            .expose_secret()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        assert!(!debug.contains(&body));
        let scalar = PLATFORM.key.to_bytes();
        assert!(!debug.contains(&hex::encode(scalar)));
        assert!(!debug.to_lowercase().contains("secret"));
        assert!(!debug.contains("PRIVATE"));
    }

    #[test]
    fn platform_key_zeroizes_on_drop() {
        fn zeroizes_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        zeroizes_on_drop::<SigningKey>();
        zeroizes_on_drop::<PlatformKey>();
    }

    #[rstest]
    #[case::ours(valid(), true)]
    #[case::leading_whitespace([b" \n".as_slice(), &valid()].concat(), true)]
    #[case::future_version(with_member(&valid(), "format", "cloister-sim/v2".into()), true)]
    #[case::truncated(valid()[..40].to_vec(), true)]
    #[case::other_json(br#"{"format":"other"}"#.to_vec(), false)]
    #[case::jwt(b"eyJhbGciOiJSUzI1NiJ9.e30.sig".to_vec(), false)]
    #[case::binary(vec![3, 0, 2, 0, 0x81, 0, 0, 0], false)]
    #[case::empty(Vec::new(), false)]
    #[case::oversize({ let mut v = valid(); v.resize(MAX_EVIDENCE_LEN + 1, b' '); v }, false)]
    fn sniff_cases(#[case] evidence: Vec<u8>, #[case] want: bool) {
        assert_eq!(sniff(&evidence), want);
    }

    /// SplitMix64: a deterministic generator for mutations (not for anything secret).
    struct Mutator(u64);

    impl Mutator {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }

        fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
            const INTERESTING: &[&[u8]] = &[
                b"\"",
                b"\\",
                b"{",
                b"}",
                b"[",
                b"]",
                b",",
                b":",
                b"null",
                b"-1",
                b"1e999",
                b"\\u0000",
                b"\xff",
                b"=",
                b"cloister-sim/v1",
                b"ES256",
            ];
            let mut out = input.to_vec();
            for _ in 0..1 + self.below(4) {
                let at = self.below(out.len() + 1);
                match self.below(6) {
                    0 if !out.is_empty() => {
                        let i = self.below(out.len());
                        out[i] ^= 1 << self.below(8);
                    }
                    1 if !out.is_empty() => {
                        let i = self.below(out.len());
                        out[i] = self.next() as u8;
                    }
                    2 => out.truncate(at),
                    3 if at < out.len() => {
                        let end = (at + 1 + self.below(16)).min(out.len());
                        out.drain(at..end);
                    }
                    4 => {
                        let token = INTERESTING[self.below(INTERESTING.len())];
                        out.splice(at..at, token.iter().copied());
                    }
                    _ => {
                        // Duplicate a slice of the input somewhere else.
                        let from = self.below(input.len());
                        let len = self.below(32).min(input.len() - from);
                        out.splice(at..at, input[from..from + len].iter().copied());
                    }
                }
            }
            out
        }
    }

    #[test]
    fn mutated_evidence_never_panics_and_never_verifies_as_something_else() {
        let v = verifier();
        let ctx = Context::new(SystemTime::UNIX_EPOCH);
        let original = valid();
        let want = v.verify(&original, &ctx).unwrap().into_claims();
        // Also mutate the statement under a valid signature, to reach the statement parser.
        let statement_json = serde_json::to_vec(&statement()).unwrap();
        let mut m = Mutator(0x5151_c10f_57e2);
        let mut accepted = 0;
        for i in 0..4000 {
            if i % 4 == 3 {
                let st = m.mutate(&statement_json);
                let evidence = PLATFORM.sign_statement_bytes(&st).unwrap();
                let _ = sniff(&evidence);
                if let Ok(verified) = v.verify(&evidence, &ctx) {
                    verified.claims().measurement.len();
                }
            } else {
                let evidence = m.mutate(&original);
                let _ = sniff(&evidence);
                if let Ok(verified) = v.verify(&evidence, &ctx) {
                    // The signature covers the statement: whatever verifies says what it said.
                    assert_eq!(verified.into_claims(), want);
                    accepted += 1;
                }
            }
        }
        // Nearly every mutation of the envelope must fail; a few (e.g. whitespace) may not.
        assert!(accepted < 100, "{accepted} mutations verified");
    }
}

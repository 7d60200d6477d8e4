//! Microsoft Azure Attestation (MAA) tokens: RS256 JWTs an attestation provider issues after it
//! verified a TEE's evidence against its policy.
//!
//! MAA checks the hardware evidence itself (the SGX quote and Intel collateral, or the SEV-SNP
//! report and AMD's certificate chain) and signs what it found as claims. Here we check MAA's
//! signature and copy the claims into [`Claims`]; the token is exactly as trustworthy as the
//! provider whose keys and issuer the caller pins.
//!
//! # What is checked, in order
//!
//! 1. The token is a compact JWS: three base64url segments (no padding, canonical), at most
//!    [`MAX_TOKEN_LEN`] bytes once surrounding whitespace is trimmed.
//! 2. The header's `alg` is exactly `RS256` ([`ALGORITHM`]). The algorithm is fixed by us, never taken
//!    from the token: `none`, `HS256` (the public key used as an HMAC secret), `RS512`, `ES256` …
//!    are refused before any key is touched. A `crit` header is refused. Key material named by the
//!    header (`jku`, `jwk`, `x5c`, `x5u`) is ignored: only the pinned JWKS counts.
//! 3. The header's `kid` names a key of the pinned JWKS, and that key is an RSA key of at least
//!    [`MIN_RSA_BITS`] bits.
//! 4. The RSASSA-PKCS1-v1_5 / SHA-256 signature over `header.payload` verifies.
//! 5. `iss` equals the pinned issuer exactly.
//! 6. `exp` is required and `nbf` is checked when present, against [`Context::now`] with no leeway:
//!    the token is valid for `nbf <= now < exp` (RFC 7519).
//! 7. The TEE claims are mapped (below); then the expected `report_data` of the [`Context`] is
//!    checked, as for every verifier.
//!
//! # Claims mapping
//!
//! | `x-ms-attestation-type` | [`Claims`] |
//! | --- | --- |
//! | `sgx` | tee `sgx`; measurement `x-ms-sgx-mrenclave`; signer `x-ms-sgx-mrsigner`; product id, svn, debug; report_data `x-ms-sgx-report-data`; extra `ehd` (hex of the base64url `x-ms-sgx-ehd`, the runtime data MAA bound to report_data), `tcb_identifier`, `quote_hash` |
//! | `sevsnpvm` | tee `sev-snp`; measurement `x-ms-sevsnpvm-launchmeasurement`; signer the author key digest; svn the guest SVN; report_data `x-ms-sevsnpvm-reportdata`; extra `host_data`, `vmpl`, `guest_svn`, `microcode_svn`, `snpfw_svn`, `bootloader_svn`, `tee_svn`, `id_key_digest`, `family_id`, `image_id`, `report_id`, `smt_allowed`, `migration_allowed`; `snp` the typed reported TCB (the four SVNs), the VMPL and the debug / SMT / migration-agent flags of the guest policy, when the token has all of them |
//!
//! Confidential-VM tokens (`azurevm`) carry the TEE claims nested in `x-ms-isolation-tee`; they are
//! mapped the same way, with extra `attestation_type` (the outer type) and `compliance_status`.
//! Every token adds extra `issuer`, `policy_hash` and `token_version` (`x-ms-ver`). Other types
//! (`tdxvm`, `tpm`, `vbs`, …) are [`Error::Unsupported`].
//!
//! **TCB status.** MAA issues an SGX token only for a quote that meets the provider's TCB baseline
//! (Azure's default, or the one the policy names; the token's `x-ms-sgx-tcbidentifier`, kept as extra
//! `tcb_identifier`), so SGX tokens get [`TcbStatus::UpToDate`], meaning "up to date as far as the
//! provider's baseline goes" — that baseline may lag Intel's latest TCB recovery. MAA does not vouch
//! for an SEV-SNP TCB level, so SEV-SNP tokens get [`TcbStatus::NotReported`] (as SEV-SNP reports
//! do) and policies compare the SVNs in extra.
//!
//! # Trust anchors
//!
//! The caller supplies the provider's JWKS (`<issuer>/certs`) and issuer, or its OpenID metadata
//! (`<issuer>/.well-known/openid-configuration`), fetched and pinned out of band: this module does
//! no I/O. A JWK may give its key as `n`/`e`, as an `x5c` certificate, or both (then they must
//! match). The `x5c` certificate is used only as a container for the key: its chain and validity are
//! not checked, because the JWKS itself is the trust anchor.

mod claims;
mod jwks;
mod jws;

use claims::*;
use jwks::*;
use jws::*;

use crate::{
    Claims, Context, Error, EvidenceFormat, SnpDetails, SnpGuestPolicy, SnpTcb, TcbStatus, Tee,
    Verified, Verifier,
};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey as _;
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use rsa::{BigUint, RsaPublicKey};
use serde_json::{Map, Value};
use sha2::Sha256;
use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;
use x509_cert::Certificate;
use x509_cert::der::{Decode as _, Encode as _};

/// The one token signature algorithm accepted: RSASSA-PKCS1-v1_5 with SHA-256.
pub const ALGORITHM: &str = "RS256";

/// The smallest RSA modulus, in bits, accepted for a token signing key.
pub const MIN_RSA_BITS: usize = 2048;

/// The largest token accepted, in bytes (after trimming whitespace). Real MAA tokens are a few KiB.
pub const MAX_TOKEN_LEN: usize = 1 << 20;

/// Latest `exp` / `nbf` accepted (9999-12-31T23:59:59Z); later values are malformed.
const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

const WHAT_TOKEN: &str = "MAA token";
const WHAT_HEADER: &str = "MAA token header";
const WHAT_CLAIMS: &str = "MAA token claims";
const WHAT_JWKS: &str = "JWKS";

/// base64url that accepts padding or not: JWK members and `x-ms-sgx-ehd` are not always consistent.
const URL_SAFE_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Standard base64 (RFC 7517 `x5c`), padding optional.
const STANDARD_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Verifies MAA tokens against one provider's pinned signing keys and issuer.
///
/// ```
/// use cloister_attest::{maa::MaaVerifier, Context, Tee, Verifier};
/// use std::time::{Duration, SystemTime};
///
/// # macro_rules! testdata { ($f:literal) => { include_bytes!(concat!(
/// #     env!("CARGO_MANIFEST_DIR"), "/../../testdata/tee-evidence/maa-jwt/", $f)) } }
/// // Fetched once from the provider and pinned: its OpenID metadata and JWKS (`/certs`).
/// let metadata = br#"{"issuer": "https://sharedeus.eus.attest.azure.net"}"#;
/// let jwks = testdata!("sharedeus_certs_jwks.json");
/// let verifier = MaaVerifier::from_openid_metadata(metadata, jwks)?;
///
/// // The token an SGX enclave got from that provider, checked at a time inside its validity.
/// let token = testdata!("sgx_token.jwt");
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_695_740_000);
/// let verified = verifier.verify(token, &Context::new(now))?;
/// assert_eq!(verified.claims().tee, Tee::Sgx);
/// assert_eq!(verified.claims().extra["ehd"], hex::encode("This is some runtime data"));
/// # Ok::<(), cloister_attest::Error>(())
/// ```
#[derive(Clone)]
pub struct MaaVerifier {
    issuer: String,
    keys: BTreeMap<String, SigningKey>,
}

/// A JWKS entry as loaded: a key we verify with, or why that key is refused when a token names it.
#[derive(Clone)]
enum SigningKey {
    Usable {
        key: VerifyingKey<Sha256>,
        bits: usize,
    },
    Refused {
        rule: &'static str,
        expected: String,
        got: String,
    },
}

impl MaaVerifier {
    /// A verifier for tokens issued by `issuer` (compared exactly with `iss`) and signed by a key of
    /// the JWK Set `jwks_json`.
    ///
    /// The JWKS must be a JSON object with a `keys` array of objects, and key ids must be unique.
    /// Keys without a `kid` are skipped (a token could not name them). A key that is unusable —
    /// not RSA, not for signatures, an `alg` other than RS256, smaller than [`MIN_RSA_BITS`], `n`/`e`
    /// not matching its `x5c` certificate — is kept as refused, and a token naming it is rejected
    /// with the reason.
    pub fn new(jwks_json: &[u8], issuer: impl Into<String>) -> Result<Self, Error> {
        let issuer = issuer.into();
        if issuer.is_empty() {
            return Err(Error::malformed("MAA issuer", "it is empty"));
        }
        let keys = load_jwks(jwks_json)?;
        Ok(Self { issuer, keys })
    }

    /// A verifier from the provider's OpenID metadata (its `issuer` is pinned) and its JWKS, both
    /// fetched by the caller; nothing is fetched here, and `jwks_uri` is not followed.
    pub fn from_openid_metadata(metadata_json: &[u8], jwks_json: &[u8]) -> Result<Self, Error> {
        const WHAT: &str = "OpenID metadata";
        let metadata: Map<String, Value> =
            serde_json::from_slice(metadata_json).map_err(|e| Error::malformed(WHAT, e))?;
        let issuer = match metadata.get("issuer") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(Error::malformed(WHAT, "`issuer` is not a string")),
            None => return Err(Error::malformed(WHAT, "`issuer` is missing")),
        };
        Self::new(jwks_json, issuer)
    }

    /// The pinned issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key ids a token may be signed with (refused keys are left out).
    pub fn key_ids(&self) -> impl Iterator<Item = &str> {
        self.keys
            .iter()
            .filter(|(_, k)| matches!(k, SigningKey::Usable { .. }))
            .map(|(kid, _)| kid.as_str())
    }

    /// The key `kid` names, or why it is not usable.
    fn key(&self, kid: &str) -> Result<&VerifyingKey<Sha256>, Error> {
        match self.keys.get(kid) {
            Some(SigningKey::Usable { key, .. }) => Ok(key),
            Some(SigningKey::Refused {
                rule,
                expected,
                got,
            }) => Err(Error::Rejected {
                rule,
                expected: expected.clone(),
                got: format!("{got} (kid {kid})"),
            }),
            None => Err(Error::Rejected {
                rule: "token signing key",
                expected: format!("a kid of the pinned JWKS of {}", self.issuer),
                got: format!("kid {kid}"),
            }),
        }
    }
}

impl fmt::Debug for MaaVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Keys<'a>(&'a BTreeMap<String, SigningKey>);
        impl fmt::Debug for Keys<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_map()
                    .entries(self.0.iter().map(|(kid, key)| {
                        let state = match key {
                            SigningKey::Usable { bits, .. } => format!("RSA-{bits}"),
                            SigningKey::Refused { got, .. } => format!("refused: {got}"),
                        };
                        (kid, state)
                    }))
                    .finish()
            }
        }
        f.debug_struct("MaaVerifier")
            .field("issuer", &self.issuer)
            .field("keys", &Keys(&self.keys))
            .finish()
    }
}

impl Verifier for MaaVerifier {
    #[tracing::instrument(skip_all, fields(len = evidence.len(), issuer = %self.issuer))]
    fn verify(&self, evidence: &[u8], ctx: &Context) -> Result<Verified, Error> {
        let jws = CompactJws::split(evidence)?;

        let header = json_object(WHAT_HEADER, &decode_segment("header", jws.header)?)?;
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => alg,
            Some(_) => return Err(Error::malformed(WHAT_HEADER, "`alg` is not a string")),
            None => return Err(Error::malformed(WHAT_HEADER, "`alg` is missing")),
        };
        if alg != ALGORITHM {
            return Err(Error::Rejected {
                rule: "token algorithm",
                expected: ALGORITHM.to_owned(),
                got: alg.clone(),
            });
        }
        if let Some(crit) = header.get("crit") {
            return Err(Error::Unsupported {
                what: "MAA token critical header parameters",
                got: crit.to_string(),
            });
        }
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid,
            Some(_) => return Err(Error::malformed(WHAT_HEADER, "`kid` is not a string")),
            None => return Err(Error::malformed(WHAT_HEADER, "`kid` is missing")),
        };
        let key = self.key(kid)?;

        let signature = decode_segment("signature", jws.signature)?;
        let signature = Signature::try_from(signature.as_slice())
            .map_err(|_| Error::BadSignature { what: WHAT_TOKEN })?;
        key.verify(jws.signing_input.as_bytes(), &signature)
            .map_err(|_| Error::BadSignature { what: WHAT_TOKEN })?;
        tracing::debug!(kid = %kid, "MAA token signature verified");

        let payload = json_object(WHAT_CLAIMS, &decode_segment("payload", jws.payload)?)?;
        let iss = str_claim(&payload, "iss")?;
        if iss != self.issuer {
            return Err(Error::Rejected {
                rule: "token issuer",
                expected: self.issuer.clone(),
                got: iss.to_owned(),
            });
        }
        let exp = numeric_date(&payload, "exp")?.ok_or_else(|| missing("exp"))?;
        let nbf = numeric_date(&payload, "nbf")?;
        check_validity(nbf, exp, ctx.now())?;

        let mut claims = claims_from_payload(&payload)?;
        claims.expire_no_later_than(exp);
        Verified::new(claims, ctx)
    }
}

/// Whether `evidence` looks like a compact JWS: three base64url segments, the first decoding to a
/// JSON object with an `alg`. Surrounding whitespace is ignored. Says nothing about validity.
pub fn sniff(evidence: &[u8]) -> bool {
    let Ok(jws) = CompactJws::split(evidence) else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(jws.header)
        .ok()
        .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
        .is_some_and(|h| h.contains_key("alg"))
}

/// Map the claims of a token payload without verifying anything, for the fuzz target only.
#[doc(hidden)]
pub fn fuzz_claims(payload_json: &[u8]) {
    if let Ok(payload) = serde_json::from_slice::<Map<String, Value>>(payload_json) {
        let _ = claims_from_payload(&payload);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on purpose.
mod tests {
    use super::*;
    use hmac::{Hmac, Mac};
    use rsa::RsaPrivateKey;
    use rsa::pkcs1v15::SigningKey as RsaSigningKey;
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};
    use rstest::rstest;
    use serde_json::json;
    use sha2::Digest as _;
    use std::sync::LazyLock;
    use std::time::Duration;

    macro_rules! testdata {
        ($file:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../testdata/tee-evidence/maa-jwt/",
                $file
            ))
        };
    }

    const SGX_TOKEN: &[u8] = testdata!("sgx_token.jwt");
    const SNP_TOKEN: &[u8] = testdata!("sevsnp_aci_token.jwt");
    const JWKS: &[u8] = testdata!("sharedeus_certs_jwks.json");
    const KEY_2048_PEM: &[u8] = testdata!("synthetic/test_rsa2048.pk8.pem");
    const KEY_1024_PEM: &[u8] = testdata!("synthetic/test_rsa1024.pk8.pem");
    const CERT_2048_DER: &[u8] = testdata!("synthetic/test_rsa2048.cert.der");

    const ISSUER: &str = "https://sharedeus.eus.attest.azure.net";
    const SGX_KID: &str = "rFl9xM+g7TvX63y0iseZtIn20MD5SYAnGblKFasau8I=";
    /// Another 2048-bit key of the sample JWKS (from a certificate that expired in 2024).
    const OTHER_SAMPLE_KID: &str = "dSsaF5uUxZO_LRycmQ4KJu3ctMc";
    /// The real sample JWKS also publishes a 1024-bit key under this kid.
    const SAMPLE_1024_KID: &str = "lH/VQ9TL53cXpeFt3Vf9tiOv+rkWwV+5PbiNzgWcySQ=";
    const SGX_NBF: u64 = 1_695_737_747;
    const SGX_EXP: u64 = 1_695_766_547;
    /// Inside the sample's validity window.
    const NOW: u64 = 1_695_740_000;

    const SNP_ISSUER: &str = "https://sharedweu.weu.test.attest.azure.net";
    const SNP_KID: &str = "jNolL7YTrRkDIukgm3on/fz5uMi9kjxhfUBTh6Or8No=";
    const SNP_NOW: u64 = 1_744_090_000;

    /// Tokens the tests sign with the synthetic keys.
    const TEST_ISSUER: &str = "https://maa.test.invalid";
    const TEST_KID: &str = "test-2048";
    const SMALL_KID: &str = "test-1024";
    const TEST_NOW: u64 = 1_800_000_000;

    static KEY_2048: LazyLock<RsaPrivateKey> = LazyLock::new(|| private_key(KEY_2048_PEM));
    static KEY_1024: LazyLock<RsaPrivateKey> = LazyLock::new(|| private_key(KEY_1024_PEM));

    fn private_key(pem: &[u8]) -> RsaPrivateKey {
        RsaPrivateKey::from_pkcs8_pem(std::str::from_utf8(pem).unwrap()).unwrap()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn ctx(secs: u64) -> Context {
        Context::new(at(secs))
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn b64_json(v: &Value) -> String {
        b64(v.to_string().as_bytes())
    }

    fn sample() -> MaaVerifier {
        MaaVerifier::new(JWKS, ISSUER).unwrap()
    }

    /// The three segments of a token file, still base64url.
    fn segments(token: &[u8]) -> [String; 3] {
        let parts: Vec<String> = std::str::from_utf8(token)
            .unwrap()
            .trim()
            .split('.')
            .map(str::to_owned)
            .collect();
        parts.try_into().unwrap()
    }

    fn decoded_json(segment: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    fn sgx_payload() -> Value {
        decoded_json(&segments(SGX_TOKEN)[1])
    }

    fn snp_payload() -> Value {
        decoded_json(&segments(SNP_TOKEN)[1])
    }

    fn payload_map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    /// The sample SGX token with its header replaced and its payload and signature kept.
    fn sgx_with_header(header: Value) -> Vec<u8> {
        let [_, payload, signature] = segments(SGX_TOKEN);
        format!("{}.{payload}.{signature}", b64_json(&header)).into_bytes()
    }

    fn rs256(key: &RsaPrivateKey, header: &Value, payload: &[u8]) -> String {
        let input = format!("{}.{}", b64_json(header), b64(payload));
        let signature = RsaSigningKey::<Sha256>::new(key.clone()).sign(input.as_bytes());
        format!("{input}.{}", b64(&signature.to_vec()))
    }

    fn header(kid: &str) -> Value {
        json!({"alg": "RS256", "kid": kid, "typ": "JWT"})
    }

    /// The SGX sample's claims, reissued by the test issuer around `TEST_NOW`.
    fn test_payload() -> Value {
        let mut p = sgx_payload();
        p["iss"] = json!(TEST_ISSUER);
        p["iat"] = json!(TEST_NOW - 60);
        p["nbf"] = json!(TEST_NOW - 60);
        p["exp"] = json!(TEST_NOW + 3600);
        p
    }

    fn jwk(kid: &str, key: &RsaPublicKey) -> Value {
        json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "n": b64(&key.n().to_bytes_be()),
            "e": b64(&key.e().to_bytes_be()),
        })
    }

    /// A JWKS with the synthetic keys: a good one (n/e and a matching x5c), a 1024-bit one, an EC
    /// key, and one whose n/e contradict its x5c certificate.
    fn test_jwks() -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD;
        let big = KEY_2048.to_public_key();
        let small = KEY_1024.to_public_key();
        let mut good = jwk(TEST_KID, &big);
        good["x5c"] = json!([STANDARD.encode(CERT_2048_DER)]);
        let mut mismatch = jwk("mismatch", &small);
        mismatch["x5c"] = json!([STANDARD.encode(CERT_2048_DER)]);
        let ec = json!({"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"});
        json!({"keys": [good, jwk(SMALL_KID, &small), ec, mismatch]})
            .to_string()
            .into_bytes()
    }

    fn test_verifier() -> MaaVerifier {
        MaaVerifier::new(&test_jwks(), TEST_ISSUER).unwrap()
    }

    /// The RSA public key of a sample JWKS entry, as SubjectPublicKeyInfo DER.
    fn sample_spki_der(kid: &str) -> Vec<u8> {
        use base64::engine::general_purpose::STANDARD;
        let jwks: Value = serde_json::from_slice(JWKS).unwrap();
        let entry = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap();
        let cert = STANDARD.decode(entry["x5c"][0].as_str().unwrap()).unwrap();
        Certificate::from_der(&cert)
            .unwrap()
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap()
    }

    fn readme_report_data() -> Vec<u8> {
        let mut rd = Sha256::digest(b"This is some runtime data").to_vec();
        rd.extend_from_slice(&[0; 32]);
        rd
    }

    // ----- the sample SGX token -----

    #[test]
    fn sgx_sample_verifies_with_the_readme_values() {
        let verified = sample().verify(SGX_TOKEN, &ctx(NOW)).unwrap();
        let c = verified.claims();
        assert_eq!(c.tee, Tee::Sgx);
        assert_eq!(c.format, EvidenceFormat::MaaToken);
        assert_eq!(
            hex::encode(&c.measurement),
            "f56735aa42563627a832e0c7ba9911382eb68afed75830b3f97266f3e67bdc99"
        );
        assert_eq!(
            c.signer.as_deref().map(hex::encode).as_deref(),
            Some("a595c6c5805da0c9c4cb920334d354aeaee2207e479dff679d5f360375f557dd")
        );
        assert_eq!(c.product_id, Some(1));
        assert_eq!(c.svn, Some(1));
        assert!(!c.debug);
        assert_eq!(c.tcb_status, TcbStatus::UpToDate);
        assert_eq!(c.report_data, readme_report_data());
        assert_eq!(c.expires_at, Some(SGX_EXP));
        assert_eq!(c.extra["ehd"], hex::encode("This is some runtime data"));
        assert_eq!(c.extra["issuer"], ISSUER);
        assert_eq!(
            c.extra["policy_hash"],
            "OwEvpSVEWA5eisCEncBt8NSZFLYDRKoLaoONPrZgoeY"
        );
        assert_eq!(c.extra["token_version"], "1.0");
        assert_eq!(c.extra["tcb_identifier"], "10");
        assert_eq!(
            c.extra["quote_hash"],
            "89ee11a883a080aab6e26262c1050398b675edc24ac34e23704851c465370f10"
        );
    }

    #[test]
    fn sgx_sample_report_data_binding() {
        let v = sample();
        let expected = readme_report_data();
        v.verify(SGX_TOKEN, &ctx(NOW).expect_report_data(&expected))
            .unwrap();
        // The 32-byte SHA-256 alone is a prefix followed by zeros, which also matches.
        v.verify(SGX_TOKEN, &ctx(NOW).expect_report_data(&expected[..32]))
            .unwrap();
        let other = Sha256::digest(b"other runtime data");
        assert!(matches!(
            v.verify(SGX_TOKEN, &ctx(NOW).expect_report_data(other)),
            Err(Error::ReportDataMismatch { .. })
        ));
    }

    #[rstest]
    #[case::at_nbf(SGX_NBF)]
    #[case::one_second_before_exp(SGX_EXP - 1)]
    fn sgx_sample_validity_window_bounds(#[case] now: u64) {
        sample().verify(SGX_TOKEN, &ctx(now)).unwrap();
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let token = format!(
            "\n  {}\r\n\n",
            std::str::from_utf8(SGX_TOKEN).unwrap().trim()
        );
        sample().verify(token.as_bytes(), &ctx(NOW)).unwrap();
    }

    #[test]
    fn sample_jwks_keeps_its_two_2048_bit_x5c_keys() {
        let v = sample();
        let mut kids: Vec<&str> = v.key_ids().collect();
        kids.sort_unstable();
        let mut want = vec![SGX_KID, OTHER_SAMPLE_KID];
        want.sort_unstable();
        assert_eq!(kids, want);
        assert_eq!(v.issuer(), ISSUER);
        // The third, 1024-bit key is kept only to say why it is refused.
        assert!(format!("{v:?}").contains("refused: 1024 bits"));
    }

    #[test]
    fn debug_names_issuer_and_keys() {
        let s = format!("{:?}", test_verifier());
        assert!(s.contains(TEST_ISSUER), "{s}");
        assert!(s.contains("RSA-2048"), "{s}");
        assert!(s.contains("refused: 1024 bits"), "{s}");
    }

    #[test]
    fn openid_metadata_pins_its_issuer() {
        let metadata = json!({
            "issuer": ISSUER,
            "jwks_uri": format!("{ISSUER}/certs"),
            "id_token_signing_alg_values_supported": ["RS256"],
        })
        .to_string();
        let v = MaaVerifier::from_openid_metadata(metadata.as_bytes(), JWKS).unwrap();
        assert_eq!(v.issuer(), ISSUER);
        v.verify(SGX_TOKEN, &ctx(NOW)).unwrap();

        let other = json!({"issuer": SNP_ISSUER}).to_string();
        let v = MaaVerifier::from_openid_metadata(other.as_bytes(), JWKS).unwrap();
        assert!(matches!(
            v.verify(SGX_TOKEN, &ctx(NOW)),
            Err(Error::Rejected {
                rule: "token issuer",
                ..
            })
        ));
    }

    #[rstest]
    #[case::not_json(b"<html>".as_slice())]
    #[case::no_issuer(br#"{"jwks_uri": "https://x/certs"}"#.as_slice())]
    #[case::issuer_not_string(br#"{"issuer": 1}"#.as_slice())]
    #[case::empty_issuer(br#"{"issuer": ""}"#.as_slice())]
    fn bad_openid_metadata_is_malformed(#[case] metadata: &[u8]) {
        assert!(matches!(
            MaaVerifier::from_openid_metadata(metadata, JWKS),
            Err(Error::Malformed { .. })
        ));
    }

    #[rstest]
    #[case::not_json(b"not json".as_slice())]
    #[case::not_an_object(b"[]".as_slice())]
    #[case::no_keys(b"{}".as_slice())]
    #[case::keys_not_array(br#"{"keys": {}}"#.as_slice())]
    #[case::key_not_object(br#"{"keys": [1]}"#.as_slice())]
    #[case::kid_not_string(br#"{"keys": [{"kty": "RSA", "kid": 1}]}"#.as_slice())]
    #[case::duplicate_kid(br#"{"keys": [{"kty": "EC", "kid": "a"}, {"kty": "EC", "kid": "a"}]}"#.as_slice())]
    fn bad_jwks_is_malformed(#[case] jwks: &[u8]) {
        assert!(matches!(
            MaaVerifier::new(jwks, ISSUER),
            Err(Error::Malformed { what: "JWKS", .. })
        ));
    }

    #[test]
    fn unusable_jwks_entries_are_kept_as_refused() {
        let v = test_verifier();
        assert_eq!(v.key_ids().collect::<Vec<_>>(), vec![TEST_KID]);
        // A key without kid is skipped, not an error.
        let v = MaaVerifier::new(br#"{"keys": [{"kty": "RSA"}]}"#, ISSUER).unwrap();
        assert_eq!(v.key_ids().count(), 0);
    }

    // ----- SEV-SNP -----

    #[test]
    fn sevsnp_claims_decode_only() {
        let c = claims_from_payload(&payload_map(snp_payload())).unwrap();
        assert_eq!(c.tee, Tee::SevSnp);
        assert_eq!(c.format, EvidenceFormat::MaaToken);
        assert_eq!(
            hex::encode(&c.measurement),
            "02c3b0d5bf1d256fa4e3b5deefc07b55ff2f7029085ed350f60959140a1a51f1310753ba5ab2c03a0536b1c0c193af47"
        );
        assert_eq!(
            c.extra["host_data"],
            "73973b78d70cc68353426de188db5dfc57e5b766e399935fb73a61127ea26d20"
        );
        assert!(!c.debug);
        assert_eq!(c.extra["vmpl"], "0");
        assert_eq!(c.extra["microcode_svn"], "115");
        assert_eq!(c.extra["snpfw_svn"], "8");
        assert_eq!(c.extra["guest_svn"], "2");
        assert_eq!(c.extra["bootloader_svn"], "3");
        assert_eq!(c.extra["smt_allowed"], "true");
        assert_eq!(c.extra["migration_allowed"], "false");
        let snp = c.snp.as_ref().expect("typed SEV-SNP details");
        assert_eq!(snp.reported_tcb.to_string(), "bl=3 tee=0 snp=8 ucode=115");
        assert_eq!(snp.vmpl, 0);
        assert_eq!(
            (
                snp.policy.raw,
                snp.policy.smt,
                snp.policy.migrate_ma,
                snp.policy.debug
            ),
            (None, true, false, false)
        );
        assert_eq!(c.extra["issuer"], SNP_ISSUER);
        assert_eq!(c.svn, Some(2));
        assert_eq!(c.signer, Some(vec![0; 48]));
        assert_eq!(c.tcb_status, TcbStatus::NotReported);
        assert_eq!(c.report_data.len(), 64);
        assert_eq!(hex::encode(&c.report_data[..7]), "40fc248ecb5500");
        // The mapping does not set the expiry; `verify` does, from the checked `exp`.
        assert_eq!(c.expires_at, None);
    }

    #[test]
    fn sevsnp_token_is_refused_by_the_sgx_provider_keys() {
        let err = sample().verify(SNP_TOKEN, &ctx(SNP_NOW)).unwrap_err();
        assert!(
            matches!(&err, Error::Rejected { rule: "token signing key", got, .. } if got.contains(SNP_KID)),
            "{err}"
        );
    }

    #[test]
    fn resigned_sevsnp_payload_verifies_end_to_end() {
        // The real ACI payload, signed by a synthetic key published under the real kid: the whole
        // verify path for SEV-SNP, with the claims unchanged.
        let jwks = json!({"keys": [jwk(SNP_KID, &KEY_2048.to_public_key())]}).to_string();
        let v = MaaVerifier::new(jwks.as_bytes(), SNP_ISSUER).unwrap();
        let [_, payload, _] = segments(SNP_TOKEN);
        let token = rs256(
            &KEY_2048,
            &header(SNP_KID),
            &URL_SAFE_NO_PAD.decode(payload).unwrap(),
        );
        let c = v
            .verify(token.as_bytes(), &ctx(SNP_NOW))
            .unwrap()
            .into_claims();
        assert_eq!(c.tee, Tee::SevSnp);
        assert_eq!(c.expires_at, Some(1_744_114_500));
        assert_eq!(c.extra["vmpl"], "0");
    }

    #[test]
    fn isolation_tee_nested_form_maps_like_the_top_level_one() {
        let flat = payload_map(snp_payload());
        let mut inner = flat.clone();
        for common in [
            "iss",
            "exp",
            "iat",
            "nbf",
            "jti",
            "x-ms-policy-hash",
            "x-ms-ver",
        ] {
            inner.remove(common);
        }
        inner.insert(
            "x-ms-compliance-status".into(),
            json!("azure-compliant-cvm"),
        );
        let nested = json!({
            "iss": SNP_ISSUER,
            "x-ms-attestation-type": "azurevm",
            "x-ms-policy-hash": flat["x-ms-policy-hash"],
            "x-ms-ver": "1.0",
            "x-ms-isolation-tee": inner,
        });
        let want = claims_from_payload(&flat).unwrap();
        let got = claims_from_payload(&payload_map(nested)).unwrap();
        assert_eq!(got.extra["attestation_type"], "azurevm");
        assert_eq!(got.extra["compliance_status"], "azure-compliant-cvm");
        let mut got_common = got.clone();
        got_common.extra.remove("attestation_type");
        got_common.extra.remove("compliance_status");
        assert_eq!(got_common, want);
    }

    #[test]
    fn signed_token_without_nbf_is_accepted() {
        let mut p = test_payload();
        p.as_object_mut().unwrap().remove("nbf");
        let token = rs256(&KEY_2048, &header(TEST_KID), p.to_string().as_bytes());
        test_verifier()
            .verify(token.as_bytes(), &ctx(TEST_NOW))
            .unwrap();
    }

    // ----- negative cases -----

    /// A verifier, a token and the verification time.
    struct Scenario {
        verifier: MaaVerifier,
        token: Vec<u8>,
        now: u64,
    }

    fn on_sample(token: impl Into<Vec<u8>>) -> Scenario {
        Scenario {
            verifier: sample(),
            token: token.into(),
            now: NOW,
        }
    }

    fn sample_at(now: u64) -> Scenario {
        Scenario {
            now,
            ..on_sample(SGX_TOKEN)
        }
    }

    fn sample_pinning(issuer: &str) -> Scenario {
        Scenario {
            verifier: MaaVerifier::new(JWKS, issuer).unwrap(),
            ..on_sample(SGX_TOKEN)
        }
    }

    fn signed(key: &RsaPrivateKey, kid: &str, payload: &[u8]) -> Scenario {
        Scenario {
            verifier: test_verifier(),
            token: rs256(key, &header(kid), payload).into_bytes(),
            now: TEST_NOW,
        }
    }

    fn signed_json(edit: impl FnOnce(&mut Map<String, Value>)) -> Scenario {
        let mut p = payload_map(test_payload());
        edit(&mut p);
        signed(&KEY_2048, TEST_KID, Value::Object(p).to_string().as_bytes())
    }

    /// HS256 over the sample's header and payload, keyed with the provider's public key: the
    /// classic algorithm-confusion forgery.
    fn hs256_confusion(pem: bool) -> Scenario {
        use base64::engine::general_purpose::STANDARD;
        let der = sample_spki_der(SGX_KID);
        let secret = if pem {
            let body = STANDARD.encode(&der);
            let lines: Vec<&str> = body
                .as_bytes()
                .chunks(64)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect();
            format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                lines.join("\n")
            )
            .into_bytes()
        } else {
            der
        };
        let [_, payload, _] = segments(SGX_TOKEN);
        let input = format!(
            "{}.{payload}",
            b64_json(&json!({"alg": "HS256", "kid": SGX_KID, "typ": "JWT"}))
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(&secret).unwrap();
        mac.update(input.as_bytes());
        on_sample(format!("{input}.{}", b64(&mac.finalize().into_bytes())))
    }

    fn alg_none() -> Scenario {
        let [_, payload, _] = segments(SGX_TOKEN);
        on_sample(format!(
            "{}.{payload}.",
            b64_json(&json!({"alg": "none", "kid": SGX_KID}))
        ))
    }

    fn with_alg(alg: &str) -> Scenario {
        on_sample(sgx_with_header(
            json!({"alg": alg, "kid": SGX_KID, "typ": "JWT"}),
        ))
    }

    fn flipped_payload_bit() -> Scenario {
        let [h, p, s] = segments(SGX_TOKEN);
        let mut payload = URL_SAFE_NO_PAD.decode(p).unwrap();
        // Inside the mrenclave hex string: 'f' ^ 0x02 = 'd', still valid JSON and hex.
        let at = payload.windows(8).position(|w| w == b"f56735aa").unwrap();
        payload[at] ^= 0x02;
        on_sample(format!("{h}.{}.{s}", b64(&payload)))
    }

    fn flipped_signature_bit() -> Scenario {
        let [h, p, s] = segments(SGX_TOKEN);
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[100] ^= 0x01;
        on_sample(format!("{h}.{p}.{}", b64(&sig)))
    }

    fn truncated_signature() -> Scenario {
        let [h, p, s] = segments(SGX_TOKEN);
        let sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        on_sample(format!("{h}.{p}.{}", b64(&sig[..sig.len() / 2])))
    }

    fn sgx_with_signature(signature: &str) -> Scenario {
        let [h, p, _] = segments(SGX_TOKEN);
        on_sample(format!("{h}.{p}.{signature}"))
    }

    fn cut(keep: usize) -> Scenario {
        on_sample(segments(SGX_TOKEN)[..keep].join("."))
    }

    fn replace_header(segment: &str) -> Scenario {
        let [_, p, s] = segments(SGX_TOKEN);
        on_sample(format!("{segment}.{p}.{s}"))
    }

    #[derive(Debug)]
    enum Want {
        Malformed,
        Unsupported,
        BadSignature,
        Expired,
        NotYetValid,
        Rejected(&'static str),
    }

    #[rstest]
    #[case::alg_confusion_hs256_der_key(hs256_confusion(false), Want::Rejected("token algorithm"))]
    #[case::alg_confusion_hs256_pem_key(hs256_confusion(true), Want::Rejected("token algorithm"))]
    #[case::alg_none(alg_none(), Want::Rejected("token algorithm"))]
    #[case::alg_rs512(with_alg("RS512"), Want::Rejected("token algorithm"))]
    #[case::alg_es256(with_alg("ES256"), Want::Rejected("token algorithm"))]
    #[case::alg_ps256(with_alg("PS256"), Want::Rejected("token algorithm"))]
    #[case::alg_lower_case(with_alg("rs256"), Want::Rejected("token algorithm"))]
    #[case::alg_not_string(on_sample(sgx_with_header(json!({"alg": 256, "kid": SGX_KID}))), Want::Malformed)]
    #[case::alg_missing(on_sample(sgx_with_header(json!({"kid": SGX_KID}))), Want::Malformed)]
    #[case::unknown_kid(Scenario { now: SNP_NOW, ..on_sample(SNP_TOKEN) }, Want::Rejected("token signing key"))]
    #[case::other_kid_of_the_jwks(
        on_sample(sgx_with_header(header(OTHER_SAMPLE_KID))),
        Want::BadSignature
    )]
    #[case::sample_jwks_1024_bit_key(
        on_sample(sgx_with_header(header(SAMPLE_1024_KID))),
        Want::Rejected("token signing key size")
    )]
    #[case::kid_missing(on_sample(sgx_with_header(json!({"alg": "RS256"}))), Want::Malformed)]
    #[case::crit_header(on_sample(sgx_with_header(json!({"alg": "RS256", "kid": SGX_KID, "crit": ["exp"]}))), Want::Unsupported)]
    #[case::wrong_issuer(sample_pinning(SNP_ISSUER), Want::Rejected("token issuer"))]
    #[case::issuer_with_trailing_slash(
        sample_pinning("https://sharedeus.eus.attest.azure.net/"),
        Want::Rejected("token issuer")
    )]
    #[case::expired_at_exp(sample_at(SGX_EXP), Want::Expired)]
    #[case::expired_after_exp(sample_at(SGX_EXP + 86_400), Want::Expired)]
    #[case::not_yet_valid(sample_at(SGX_NBF - 1), Want::NotYetValid)]
    #[case::flipped_payload_bit(flipped_payload_bit(), Want::BadSignature)]
    #[case::flipped_signature_bit(flipped_signature_bit(), Want::BadSignature)]
    #[case::truncated_signature(truncated_signature(), Want::BadSignature)]
    #[case::empty_signature(sgx_with_signature(""), Want::BadSignature)]
    #[case::non_base64_signature(sgx_with_signature("AAA+"), Want::Malformed)]
    #[case::header_only(cut(1), Want::Malformed)]
    #[case::two_segments(cut(2), Want::Malformed)]
    #[case::four_segments(on_sample([SGX_TOKEN.trim_ascii(), b".e30"].concat()), Want::Malformed)]
    #[case::empty(on_sample(b"".as_slice()), Want::Malformed)]
    #[case::whitespace_only(on_sample(b" \n\t".as_slice()), Want::Malformed)]
    #[case::non_base64_character(replace_header("eyJhbGciOi*"), Want::Malformed)]
    #[case::base64_bad_length(replace_header("eyJhbGciOiJSUzI1NiJ9x"), Want::Malformed)]
    #[case::base64_padding(on_sample([SGX_TOKEN.trim_ascii(), b"=="].concat()), Want::Malformed)]
    #[case::non_canonical_base64(replace_header("eB"), Want::Malformed)]
    #[case::non_json_header(replace_header(&b64(b"not json")), Want::Malformed)]
    #[case::header_not_object(replace_header(&b64(br#"["RS256"]"#)), Want::Malformed)]
    #[case::non_utf8(on_sample(vec![0xff, 0xfe, b'.', b'a', b'.', b'b']), Want::Malformed)]
    #[case::oversized(on_sample(vec![b'a'; MAX_TOKEN_LEN + 1]), Want::Malformed)]
    #[case::rsa_1024_key(signed(&KEY_1024, SMALL_KID, test_payload().to_string().as_bytes()), Want::Rejected("token signing key size"))]
    #[case::ec_key_named(signed(&KEY_2048, "ec", test_payload().to_string().as_bytes()), Want::Rejected("token signing key"))]
    #[case::jwk_contradicts_its_x5c(signed(&KEY_1024, "mismatch", test_payload().to_string().as_bytes()), Want::Rejected("token signing key"))]
    #[case::signed_by_another_key(signed(&KEY_1024, TEST_KID, test_payload().to_string().as_bytes()), Want::BadSignature)]
    #[case::missing_exp(signed_json(|p| { p.remove("exp"); }), Want::Malformed)]
    #[case::missing_iss(signed_json(|p| { p.remove("iss"); }), Want::Malformed)]
    #[case::exp_not_integer(signed_json(|p| { p.insert("exp".into(), json!("tomorrow")); }), Want::Malformed)]
    #[case::exp_fractional(signed_json(|p| { p.insert("exp".into(), json!(1.8e9 + 0.5)); }), Want::Malformed)]
    #[case::exp_beyond_year_9999(signed_json(|p| { p.insert("exp".into(), json!(u64::MAX)); }), Want::Malformed)]
    #[case::nbf_beyond_year_9999(signed_json(|p| { p.insert("nbf".into(), json!(u64::MAX)); }), Want::Malformed)]
    #[case::missing_mrenclave(signed_json(|p| { p.remove("x-ms-sgx-mrenclave"); }), Want::Malformed)]
    #[case::short_report_data(signed_json(|p| { p.insert("x-ms-sgx-report-data".into(), json!("00")); }), Want::Malformed)]
    #[case::debuggable_not_bool(signed_json(|p| { p.insert("x-ms-sgx-is-debuggable".into(), json!("false")); }), Want::Malformed)]
    #[case::product_id_out_of_range(signed_json(|p| { p.insert("x-ms-sgx-product-id".into(), json!(70_000)); }), Want::Malformed)]
    #[case::ehd_not_base64(signed_json(|p| { p.insert("x-ms-sgx-ehd".into(), json!("!!")); }), Want::Malformed)]
    #[case::isolation_tee_not_object(signed_json(|p| { p.insert("x-ms-isolation-tee".into(), json!("sevsnpvm")); }), Want::Malformed)]
    #[case::attestation_type_tdxvm(signed_json(|p| { p.insert("x-ms-attestation-type".into(), json!("tdxvm")); }), Want::Unsupported)]
    #[case::payload_not_json(signed(&KEY_2048, TEST_KID, b"not json"), Want::Malformed)]
    #[case::payload_not_object(signed(&KEY_2048, TEST_KID, b"[1, 2]"), Want::Malformed)]
    fn refused(#[case] s: Scenario, #[case] want: Want) {
        let err = s.verifier.verify(&s.token, &ctx(s.now)).unwrap_err();
        let ok = match (&err, &want) {
            (Error::Malformed { .. }, Want::Malformed)
            | (Error::Unsupported { .. }, Want::Unsupported)
            | (Error::BadSignature { .. }, Want::BadSignature)
            | (Error::Expired { .. }, Want::Expired)
            | (Error::NotYetValid { .. }, Want::NotYetValid) => true,
            (Error::Rejected { rule, .. }, Want::Rejected(want)) => rule == want,
            _ => false,
        };
        assert!(ok, "wanted {want:?}, got {err:?}");
    }

    #[test]
    fn expired_and_not_yet_valid_carry_the_times() {
        match sample().verify(SGX_TOKEN, &ctx(SGX_EXP + 5)) {
            Err(Error::Expired { not_after, now, .. }) => {
                assert_eq!(not_after, at(SGX_EXP));
                assert_eq!(now, at(SGX_EXP + 5));
            }
            other => panic!("{other:?}"),
        }
        match sample().verify(SGX_TOKEN, &ctx(SGX_NBF - 5)) {
            Err(Error::NotYetValid {
                not_before, now, ..
            }) => {
                assert_eq!(not_before, at(SGX_NBF));
                assert_eq!(now, at(SGX_NBF - 5));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_small_key_says_why() {
        let s = signed(&KEY_1024, SMALL_KID, test_payload().to_string().as_bytes());
        let msg = s
            .verifier
            .verify(&s.token, &ctx(s.now))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("at least 2048 bits") && msg.contains("1024 bits"),
            "{msg}"
        );
        assert!(msg.contains(SMALL_KID), "{msg}");
    }

    // ----- sniff -----

    #[rstest]
    #[case::sgx_token(SGX_TOKEN, true)]
    #[case::snp_token(SNP_TOKEN, true)]
    #[case::alg_none_token(alg_none().token.leak(), true)]
    #[case::empty(b"", false)]
    #[case::json(br#"{"alg": "RS256"}"#, false)]
    #[case::binary(&[0x03, 0x00, 0x02, 0x00, 0xff, 0x2e, 0x2e], false)]
    #[case::two_segments(b"eyJhbGciOiJSUzI1NiJ9.e30", false)]
    #[case::header_without_alg(b"e30.e30.AA", false)]
    #[case::header_not_json(b"bm90.e30.AA", false)]
    #[case::dots_only(b"..", false)]
    fn sniff_recognises_compact_jws(#[case] evidence: &[u8], #[case] want: bool) {
        assert_eq!(sniff(evidence), want);
    }

    // ----- robustness -----

    /// xorshift64*: deterministic, dependency-free pseudo-random numbers for the mutation tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
        const INTERESTING: &[u8] = b".-_=+/ \n\0\xff{}\"0aA";
        let mut out = input.to_vec();
        for _ in 0..=rng.below(3) {
            let i = rng.below(out.len());
            match rng.below(7) {
                0 if !out.is_empty() => out[i] ^= 1 << rng.below(8),
                1 if !out.is_empty() => {
                    out.remove(i);
                }
                2 => out.insert(i, INTERESTING[rng.below(INTERESTING.len())]),
                3 => out.truncate(i),
                4 if !out.is_empty() => out[i] = INTERESTING[rng.below(INTERESTING.len())],
                5 => {
                    let end = (i + rng.below(64)).min(out.len());
                    let chunk = out[i..end].to_vec();
                    let at = rng.below(out.len());
                    out.splice(at..at, chunk);
                }
                _ => {
                    let end = (i + rng.below(16)).min(out.len());
                    out.drain(i..end);
                }
            }
        }
        out
    }

    #[test]
    fn mutated_sample_tokens_never_panic_and_never_verify_changed_claims() {
        let v = sample();
        let original = v.verify(SGX_TOKEN, &ctx(NOW)).unwrap().into_claims();
        let mut rng = Rng(0x5eed_cafe_f00d_0001);
        let mut accepted = 0;
        for _ in 0..3000 {
            let token = mutate(&mut rng, SGX_TOKEN);
            let _ = sniff(&token);
            if let Ok(verified) = v.verify(&token, &ctx(NOW)) {
                // Only harmless changes (trailing whitespace) may still verify.
                assert_eq!(verified.claims(), &original);
                accepted += 1;
            }
        }
        assert!(accepted < 3000 / 10, "{accepted} mutated tokens verified");
    }

    #[test]
    fn mutated_payloads_never_panic_the_claim_mapping() {
        let mut rng = Rng(0x5eed_cafe_f00d_0002);
        for payload in [sgx_payload(), snp_payload()] {
            let json = payload.to_string().into_bytes();
            for _ in 0..2000 {
                fuzz_claims(&mutate(&mut rng, &json));
            }
        }
    }
}

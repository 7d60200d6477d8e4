//! Attestation tokens: what CAS says about a workload it attested, as an ES256 JWT.
//!
//! Each token is for one workload identity: its `aud` claim is `"<session>/<service>"`
//! ([`audience`]), so a token a workload of one session or service obtained is refused by a
//! relying party that expects another. Relying parties (other services, the custodian's tools)
//! verify a token with a [`TokenVerifier`] built from the CAS's issuer and the keys it publishes
//! at `/.well-known/jwks.json`, bound to the audience they expect, at an explicit `now`:
//!
//! ```text
//! TokenVerifier::new(issuer, jwks).expect_audience(session, service).verify(token, now)
//! ```
//!
//! The algorithm is fixed to ES256 on both sides: the token header's `alg` is never trusted
//! (`none` and `HS256` are refused by name), the key is the JWKS key the header's `kid` names,
//! and `iss`, `aud`, `nbf` and `exp` are checked (the last two with [`DEFAULT_LEEWAY`]). Every
//! refusal is [`Error::TokenRefused`] with the [`TokenRule`] that failed. A token is a bearer
//! secret: it is never logged, and the types that hold it keep it out of `Debug`.
//!
//! Tokens are signed with `ring` (its P-256 is several times faster than the pure-Rust one, and
//! the key is loaded once, where `jsonwebtoken` would re-parse it for every token) and
//! serialised as a compact JWS (RFC 7515: `base64url(header).base64url(claims).base64url(r ‖ s)`);
//! verification checks the signature with `jsonwebtoken`, as any relying party would.

use crate::{Error, sha256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::{Duration, SystemTime};
use zeroize::Zeroizing;

/// The claims of an attestation token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationClaims {
    /// The CAS that issued it (its base URL).
    pub iss: String,
    /// `<session>/<service>`.
    pub sub: String,
    /// The audience: the one workload identity the token is for, `<session>/<service>`
    /// ([`audience`]). Relying parties check it ([`TokenVerifier::expect_audience`]).
    pub aud: String,
    /// Issued at (seconds since the Unix epoch).
    pub iat: u64,
    /// Not before.
    pub nbf: u64,
    /// Expires.
    pub exp: u64,
    /// A unique id for this attestation.
    pub jti: String,
    /// The session (policy) name.
    pub session: String,
    /// The service within the session.
    pub service: String,
    /// The hash of the policy version the workload was appraised against.
    pub session_hash: String,
    /// The TEE kind (`sgx`, `tdx`, `sev-snp`, `sim`).
    pub tee: String,
    /// The primary measurement, hex.
    pub measurement: String,
    /// The platform's TCB status.
    pub tcb_status: String,
    /// Whether the TEE runs in debug mode.
    pub debug: bool,
    /// SHA-256 of the workload key's DER SPKI, hex: ties the token to the key in its certificate.
    pub key_hash: String,
}

/// The CAS's token signing key (P-256). Persisted encrypted in the store; wiped on drop.
pub struct TokenSigner {
    secret: p256::SecretKey,
    kid: String,
    /// The same key, loaded into `ring` for signing.
    signing: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

/// The protected header of every token.
#[derive(Serialize)]
struct JwsHeader<'a> {
    typ: &'static str,
    alg: &'static str,
    kid: &'a str,
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl TokenSigner {
    /// A new random signing key.
    pub fn generate() -> Result<Self, Error> {
        Self::from_secret(crate::random_p256()?)
    }

    /// Load a key saved with [`TokenSigner::to_pkcs8_der`].
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, Error> {
        let secret = p256::SecretKey::from_pkcs8_der(der)
            .map_err(|_| Error::invalid("token signing key", "not a PKCS#8 P-256 key"))?;
        Self::from_secret(secret)
    }

    fn from_secret(secret: p256::SecretKey) -> Result<Self, Error> {
        let spki = secret.public_key().to_public_key_der().map_err(|e| {
            tracing::error!(error = %e, "SPKI encoding");
            Error::Internal("SPKI encoding of a valid key failed")
        })?;
        // The key id is the SPKI's SHA-256, so it changes exactly when the key does.
        let kid = B64URL.encode(sha256(spki.as_bytes()));
        let rng = ring::rand::SystemRandom::new();
        let scalar = Zeroizing::new(secret.to_bytes());
        let point = secret.public_key().to_sec1_bytes();
        let signing = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar,
            &point,
            &rng,
        )
        .map_err(|_| Error::Internal("ring refused a valid P-256 key"))?;
        Ok(Self {
            secret,
            kid,
            signing,
            rng,
        })
    }

    /// The private key as PKCS#8 DER, for the encrypted store.
    pub fn to_pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, Error> {
        pkcs8(&self.secret)
    }

    /// The key id in token headers and the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Sign `claims` as a compact ES256 JWS. The token is a bearer secret from here on.
    pub fn issue(&self, claims: &AttestationClaims) -> Result<SecretString, Error> {
        let unserialisable = |_| Error::Internal("token claims always serialise");
        let header = serde_json::to_vec(&JwsHeader {
            typ: "JWT",
            alg: "ES256",
            kid: &self.kid,
        })
        .map_err(unserialisable)?;
        let claims = serde_json::to_vec(claims).map_err(unserialisable)?;
        let mut token = B64URL.encode(header);
        token.push('.');
        B64URL.encode_string(claims, &mut token);
        // ES256: ECDSA P-256 over SHA-256 of the signing input, `r ‖ s` (RFC 7518 §3.4).
        let sig = self
            .signing
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| Error::Internal("token signing failed"))?;
        token.push('.');
        B64URL.encode_string(sig.as_ref(), &mut token);
        Ok(SecretString::from(token))
    }

    /// The public key as a JWK set, as served at `/.well-known/jwks.json`.
    pub fn jwks(&self) -> JwkSet {
        // P-256 points encode uncompressed: 0x04 ‖ x (32) ‖ y (32).
        let point = self.secret.public_key().to_sec1_bytes();
        let (x, y) = point[1..].split_at(32);
        JwkSet {
            keys: vec![Jwk {
                common: CommonParameters {
                    public_key_use: Some(PublicKeyUse::Signature),
                    key_algorithm: Some(KeyAlgorithm::ES256),
                    key_id: Some(self.kid.clone()),
                    ..Default::default()
                },
                algorithm: AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                    key_type: EllipticCurveKeyType::EC,
                    curve: EllipticCurve::P256,
                    x: B64URL.encode(x),
                    y: B64URL.encode(y),
                }),
            }],
        }
    }
}

fn pkcs8(secret: &p256::SecretKey) -> Result<Zeroizing<Vec<u8>>, Error> {
    secret
        .to_pkcs8_der()
        .map(|d| Zeroizing::new(d.as_bytes().to_vec()))
        .map_err(|e| {
            tracing::error!(error = %e, "PKCS#8 encoding");
            Error::Internal("PKCS#8 encoding of a valid key failed")
        })
}

/// The `aud` claim of a token for `service` of `session`: `"<session>/<service>"`, e.g.
/// `"demo/nyc-taxi/driver"`.
///
/// Session names contain `/` (`namespace/name`) but service names cannot (lower-case letters,
/// digits and `-`), so the last `/` separates the two and the form is unambiguous.
pub fn audience(session: &str, service: &str) -> String {
    format!("{session}/{service}")
}

/// The leeway [`TokenVerifier`] allows on `nbf` and `exp` for clock skew between the CAS and a
/// relying party, unless [`TokenVerifier::with_leeway`] says otherwise.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);

/// Which check refused a token (in [`Error::TokenRefused`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenRule {
    /// Not a compact JWS with a JSON header and the claims of an attestation token.
    Format,
    /// The header's `alg` is not `ES256` (`none`, `HS256`, …).
    Algorithm,
    /// The header names no key, or one the CAS's JWKS does not hold as an ES256 key.
    Key,
    /// The signature does not verify with the key the header names.
    Signature,
    /// The token was issued by another CAS.
    Issuer,
    /// The token is for another session or service.
    Audience,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    NotYetValid,
}

impl TokenRule {
    /// The rule's stable name: `format`, `algorithm`, `key`, `signature`, `issuer`,
    /// `audience`, `expired`, `not-yet-valid`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRule::Format => "format",
            TokenRule::Algorithm => "algorithm",
            TokenRule::Key => "key",
            TokenRule::Signature => "signature",
            TokenRule::Issuer => "issuer",
            TokenRule::Audience => "audience",
            TokenRule::Expired => "expired",
            TokenRule::NotYetValid => "not-yet-valid",
        }
    }
}

impl fmt::Display for TokenRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn refused(rule: TokenRule, expected: impl Into<String>, got: impl Into<String>) -> Error {
    Error::TokenRefused {
        rule,
        expected: expected.into(),
        got: got.into(),
    }
}

/// A relying party's verifier of one CAS's tokens: the CAS's issuer (its base URL, as in the
/// OpenID configuration) and its JWKS (from `/.well-known/jwks.json`).
///
/// Tokens are verified only for an expected audience ([`expect_audience`](Self::expect_audience)),
/// so a token a workload of another session or service presents is refused:
///
/// ```
/// # use cloister_cas::token::{AttestationClaims, TokenSigner, TokenVerifier, TokenRule, audience};
/// # use cloister_cas::Error;
/// # use std::time::{Duration, SystemTime};
/// # let signer = TokenSigner::generate()?;
/// # let now = SystemTime::now();
/// # let iat = now.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs();
/// # let token = signer.issue(&AttestationClaims {
/// #     iss: "https://cas.example".into(), sub: "demo/app/driver".into(),
/// #     aud: audience("demo/app", "driver"), iat, nbf: iat, exp: iat + 600, jti: "1".into(),
/// #     session: "demo/app".into(), service: "driver".into(), session_hash: "ab".into(),
/// #     tee: "sim".into(), measurement: "c1".into(), tcb_status: "UpToDate".into(),
/// #     debug: false, key_hash: "00".into(),
/// # })?;
/// let verifier = TokenVerifier::new("https://cas.example", signer.jwks());
/// # use secrecy::ExposeSecret as _;
/// # let token = token.expose_secret();
/// let verified = verifier.expect_audience("demo/app", "driver").verify(token, now)?;
/// assert_eq!(verified.service, "driver");
///
/// // The same token, presented to a relying party that expects another service.
/// let err = verifier.expect_audience("demo/app", "worker").verify(token, now).unwrap_err();
/// assert!(matches!(err, Error::TokenRefused { rule: TokenRule::Audience, .. }));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct TokenVerifier {
    issuer: String,
    jwks: JwkSet,
    leeway: Duration,
}

impl TokenVerifier {
    /// A verifier of the tokens `issuer` signs with a key of `jwks`, with [`DEFAULT_LEEWAY`].
    pub fn new(issuer: impl Into<String>, jwks: JwkSet) -> Self {
        Self {
            issuer: issuer.into(),
            jwks,
            leeway: DEFAULT_LEEWAY,
        }
    }

    /// The clock-skew leeway on `nbf` and `exp`.
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Verify tokens for `service` of `session` only (the `aud` claim, see [`audience`]).
    pub fn expect_audience(&self, session: &str, service: &str) -> AudienceVerifier<'_> {
        AudienceVerifier {
            verifier: self,
            audience: audience(session, service),
        }
    }
}

/// A [`TokenVerifier`] bound to one expected audience; see [`TokenVerifier::expect_audience`].
#[derive(Clone, Debug)]
pub struct AudienceVerifier<'a> {
    verifier: &'a TokenVerifier,
    audience: String,
}

impl AudienceVerifier<'_> {
    /// Verify `token` at `now`, in this order: a compact JWS (`format`); `alg` exactly `ES256`,
    /// whatever else the header says (`algorithm`); the header's `kid` names an ES256 key of
    /// the JWKS (`key`); the signature (`signature`); `iss` (`issuer`); `aud` (`audience`);
    /// `nbf` and `exp` at `now` with the leeway (`not-yet-valid`, `expired`). A refusal is
    /// [`Error::TokenRefused`] naming the rule.
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<VerifiedToken, Error> {
        let v = self.verifier;
        let header = protected_header(token)?;
        if header.alg != "ES256" {
            return Err(refused(TokenRule::Algorithm, "ES256", header.alg));
        }
        let kid = header
            .kid
            .ok_or_else(|| refused(TokenRule::Key, "a kid in the header", "none"))?;
        let jwk = v
            .jwks
            .find(&kid)
            .filter(|jwk| is_es256_key(jwk))
            .ok_or_else(|| refused(TokenRule::Key, "an ES256 key of the CAS's JWKS", &kid))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|_| refused(TokenRule::Key, "a usable ES256 key", &kid))?;
        // jsonwebtoken checks the signature (and the algorithm again); the claims are checked
        // below, at the caller's `now` rather than the system clock.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<AttestationClaims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => refused(TokenRule::Signature, "valid", "invalid"),
                ErrorKind::InvalidAlgorithm => refused(TokenRule::Algorithm, "ES256", "another"),
                _ => refused(
                    TokenRule::Format,
                    "the claims of an attestation token",
                    "other claims",
                ),
            })?
            .claims;
        if claims.iss != v.issuer {
            return Err(refused(TokenRule::Issuer, &v.issuer, claims.iss));
        }
        if claims.aud != self.audience {
            return Err(refused(TokenRule::Audience, &self.audience, claims.aud));
        }
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let leeway = v.leeway.as_secs();
        if now.saturating_add(leeway) < claims.nbf {
            return Err(refused(
                TokenRule::NotYetValid,
                format!("nbf ≤ {now} + {leeway} s"),
                claims.nbf.to_string(),
            ));
        }
        if now >= claims.exp.saturating_add(leeway) {
            return Err(refused(
                TokenRule::Expired,
                format!("exp + {leeway} s > {now}"),
                claims.exp.to_string(),
            ));
        }
        Ok(VerifiedToken(claims))
    }
}

/// The claims of a token that passed every check of [`AudienceVerifier::verify`]; only this
/// crate builds one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedToken(AttestationClaims);

impl VerifiedToken {
    /// The verified claims.
    pub fn claims(&self) -> &AttestationClaims {
        &self.0
    }

    /// The verified claims, owned.
    pub fn into_claims(self) -> AttestationClaims {
        self.0
    }
}

impl std::ops::Deref for VerifiedToken {
    type Target = AttestationClaims;

    fn deref(&self) -> &AttestationClaims {
        &self.0
    }
}

/// Verify `token` as issued by `issuer` with a key of `jwks`, for `expected_audience` (the form
/// of [`audience`]), at `now` with [`DEFAULT_LEEWAY`]; see [`AudienceVerifier::verify`] for the
/// checks. Relying parties that verify many tokens keep a [`TokenVerifier`] instead.
pub fn verify(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    expected_audience: &str,
    now: SystemTime,
) -> Result<VerifiedToken, Error> {
    let verifier = TokenVerifier::new(issuer, jwks.clone());
    AudienceVerifier {
        verifier: &verifier,
        audience: expected_audience.to_owned(),
    }
    .verify(token, now)
}

/// The header fields a verifier reads; parsed here rather than by jsonwebtoken so that an
/// algorithm jsonwebtoken does not know (`none`) is refused by the `algorithm` rule, by name.
#[derive(Deserialize)]
struct ReceivedHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

fn protected_header(token: &str) -> Result<ReceivedHeader, Error> {
    let malformed = || refused(TokenRule::Format, "a compact JWS", "something else");
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let json = B64URL.decode(header).map_err(|_| malformed())?;
    serde_json::from_slice(&json).map_err(|_| malformed())
}

fn is_es256_key(jwk: &Jwk) -> bool {
    matches!(
        &jwk.algorithm,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256
    ) && matches!(jwk.common.key_algorithm, None | Some(KeyAlgorithm::ES256))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use rstest::rstest;
    use secrecy::ExposeSecret as _;

    const ISS: &str = "https://cas.test";

    fn claims_for(session: &str, service: &str, now: u64) -> AttestationClaims {
        AttestationClaims {
            iss: ISS.into(),
            sub: format!("{session}/{service}"),
            aud: audience(session, service),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "1".into(),
            session: session.into(),
            service: service.into(),
            session_hash: "ab".into(),
            tee: "sim".into(),
            measurement: "c1".into(),
            tcb_status: "UpToDate".into(),
            debug: false,
            key_hash: "00".into(),
        }
    }

    fn claims(now: u64) -> AttestationClaims {
        claims_for("ns/a", "job", now)
    }

    fn issue(signer: &TokenSigner, claims: &AttestationClaims) -> String {
        signer.issue(claims).unwrap().expose_secret().to_owned()
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn rule(r: Result<VerifiedToken, Error>) -> TokenRule {
        match r {
            Err(Error::TokenRefused { rule, .. }) => rule,
            other => panic!("expected a token refusal, got {other:?}"),
        }
    }

    /// A token with `header` and `claims` as given, signed by `sign` over the signing input.
    fn forge(header: &serde_json::Value, claims: &impl Serialize, sig: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            B64URL.encode(serde_json::to_vec(header).unwrap()),
            B64URL.encode(serde_json::to_vec(claims).unwrap()),
            B64URL.encode(sig)
        )
    }

    #[test]
    fn issue_and_verify() {
        let signer = TokenSigner::generate().unwrap();
        let token = issue(&signer, &claims(1000));
        let verifier = TokenVerifier::new(ISS, signer.jwks());
        let got = verifier
            .expect_audience("ns/a", "job")
            .verify(&token, at(1001))
            .unwrap();
        assert_eq!(got.claims(), &claims(1000));
        assert_eq!(got.aud, "ns/a/job");
        // The JWKS is what a relying party fetches: it round-trips through JSON.
        let json = serde_json::to_string(&signer.jwks()).unwrap();
        let jwks: JwkSet = serde_json::from_str(&json).unwrap();
        verify(&token, &jwks, ISS, "ns/a/job", at(1001)).unwrap();
    }

    #[test]
    fn tokens_are_compact_es256_jws_naming_their_key() {
        let signer = TokenSigner::generate().unwrap();
        let token = issue(&signer, &claims(1000));
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(B64URL.decode(parts[2]).unwrap().len(), 64, "r ‖ s");
        // ECDSA is randomised: two tokens for the same claims differ, and both verify.
        let again = issue(&signer, &claims(1000));
        assert_ne!(token, again);
        verify(&again, &signer.jwks(), ISS, "ns/a/job", at(1001)).unwrap();
    }

    /// A token for `ns/a`/`job`, presented to relying parties that expect other workloads.
    #[rstest]
    #[case::other_session("ns/b", "job")]
    #[case::other_service("ns/a", "worker")]
    #[case::other_namespace("other/a", "job")]
    fn regression_a_token_for_one_workload_is_refused_for_another(
        #[case] session: &str,
        #[case] service: &str,
    ) {
        let signer = TokenSigner::generate().unwrap();
        let token = issue(&signer, &claims(1000));
        let verifier = TokenVerifier::new(ISS, signer.jwks());
        let err = verifier
            .expect_audience(session, service)
            .verify(&token, at(1001))
            .unwrap_err();
        assert!(
            matches!(
                &err,
                Error::TokenRefused { rule: TokenRule::Audience, expected, got }
                    if got == "ns/a/job" && *expected == format!("{session}/{service}")
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_token_without_an_audience_is_refused() {
        // Signed by the CAS key but without `aud` (as tokens were before): it names no
        // workload, so no relying party takes it.
        let signer = TokenSigner::generate().unwrap();
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": signer.kid()});
        let mut old = serde_json::to_value(claims(1000)).unwrap();
        old.as_object_mut().unwrap().remove("aud");
        let input = format!(
            "{}.{}",
            B64URL.encode(serde_json::to_vec(&header).unwrap()),
            B64URL.encode(serde_json::to_vec(&old).unwrap())
        );
        let sig = signer.signing.sign(&signer.rng, input.as_bytes()).unwrap();
        let token = format!("{input}.{}", B64URL.encode(sig.as_ref()));
        assert_eq!(
            rule(verify(&token, &signer.jwks(), ISS, "ns/a/job", at(1001))),
            TokenRule::Format
        );
    }

    #[test]
    fn time_rules_allow_the_leeway_and_no_more() {
        let signer = TokenSigner::generate().unwrap();
        let token = issue(&signer, &claims(1000));
        let verifier = TokenVerifier::new(ISS, signer.jwks());
        let check = |now| {
            verifier
                .expect_audience("ns/a", "job")
                .verify(&token, at(now))
        };
        let leeway = DEFAULT_LEEWAY.as_secs();
        check(1000 - leeway).unwrap();
        assert_eq!(rule(check(1000 - leeway - 1)), TokenRule::NotYetValid);
        check(1600 + leeway - 1).unwrap();
        assert_eq!(rule(check(1600 + leeway)), TokenRule::Expired);
        let strict = TokenVerifier::new(ISS, signer.jwks()).with_leeway(Duration::ZERO);
        let strict = strict.expect_audience("ns/a", "job");
        assert_eq!(rule(strict.verify(&token, at(1600))), TokenRule::Expired);
        assert_eq!(rule(strict.verify(&token, at(999))), TokenRule::NotYetValid);
    }

    #[test]
    fn refusals_name_their_rule() {
        let signer = TokenSigner::generate().unwrap();
        let token = issue(&signer, &claims(1000));
        let jwks = signer.jwks();
        let check = |token: &str, jwks: &JwkSet| verify(token, jwks, ISS, "ns/a/job", at(1001));

        // Wrong issuer: the same CAS key, but the relying party trusts another CAS URL.
        assert_eq!(
            rule(verify(&token, &jwks, "https://other", "ns/a/job", at(1001))),
            TokenRule::Issuer
        );
        // Expired, long after.
        assert_eq!(
            rule(verify(&token, &jwks, ISS, "ns/a/job", at(100_000))),
            TokenRule::Expired
        );

        // Tampered payload: the claims swapped for another workload's, the signature kept.
        let parts: Vec<&str> = token.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            B64URL.encode(serde_json::to_vec(&claims_for("ns/b", "job", 1000)).unwrap()),
            parts[2]
        );
        assert_eq!(
            rule(verify(&tampered, &jwks, ISS, "ns/b/job", at(1001))),
            TokenRule::Signature
        );
        // Tampered header (another kid of the same key set would need a key; a changed `typ`
        // changes the signing input).
        let header = serde_json::json!({"alg": "ES256", "typ": "JOSE", "kid": signer.kid()});
        let retyped = format!(
            "{}.{}.{}",
            B64URL.encode(serde_json::to_vec(&header).unwrap()),
            parts[1],
            parts[2]
        );
        assert_eq!(rule(check(&retyped, &jwks)), TokenRule::Signature);

        // Unknown kid: a token of another CAS (or the attacker's own key).
        let other = TokenSigner::generate().unwrap();
        assert_eq!(rule(check(&token, &other.jwks())), TokenRule::Key);
        let by_other = issue(&other, &claims(1000));
        assert_eq!(rule(check(&by_other, &jwks)), TokenRule::Key);
        // No kid at all.
        let no_kid = forge(
            &serde_json::json!({"alg": "ES256"}),
            &claims(1000),
            &[0; 64],
        );
        assert_eq!(rule(check(&no_kid, &jwks)), TokenRule::Key);
        // Same kid, other key: a forged signature.
        let mut forged_jwks = other.jwks();
        forged_jwks.keys[0].common.key_id = Some(signer.kid().to_string());
        assert_eq!(rule(check(&token, &forged_jwks)), TokenRule::Signature);

        // Garbage and near-JWS shapes.
        let four_parts = format!("{token}.");
        for garbage in ["garbage", "a.b", "a.b.c", "a.b.c.d", "...", &four_parts] {
            assert_eq!(rule(check(garbage, &jwks)), TokenRule::Format, "{garbage}");
        }
    }

    /// Algorithm confusion: the header's `alg` never chooses how the token is checked.
    #[rstest]
    #[case::none("none", b"" as &[u8])]
    #[case::hs256("HS256", b"")]
    #[case::es384("ES384", b"")]
    #[case::lower_case("es256", b"")]
    fn regression_alg_confusion_is_refused(#[case] alg: &str, #[case] sig: &[u8]) {
        let signer = TokenSigner::generate().unwrap();
        let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": signer.kid()});
        let token = forge(&header, &claims(1000), sig);
        let err = verify(&token, &signer.jwks(), ISS, "ns/a/job", at(1001)).unwrap_err();
        assert!(
            matches!(&err, Error::TokenRefused { rule: TokenRule::Algorithm, got, .. } if got == alg),
            "{err:?}"
        );
    }

    #[test]
    fn regression_hs256_keyed_with_the_public_key_is_refused() {
        // The classic confusion: HMAC keyed with the verifier's public key bytes.
        let signer = TokenSigner::generate().unwrap();
        let public = signer.secret.public_key().to_sec1_bytes();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(signer.kid().to_owned());
        let hs = jsonwebtoken::encode(
            &header,
            &claims(1000),
            &EncodingKey::from_secret(&public).unwrap(),
        )
        .unwrap();
        assert_eq!(
            rule(verify(&hs, &signer.jwks(), ISS, "ns/a/job", at(1001))),
            TokenRule::Algorithm
        );
    }

    #[test]
    fn refusals_never_carry_the_token() {
        let signer = TokenSigner::generate().unwrap();
        let token = issue(&signer, &claims(1000));
        let verifier = TokenVerifier::new(ISS, signer.jwks());
        let err = verifier
            .expect_audience("ns/b", "job")
            .verify(&token, at(1001))
            .unwrap_err();
        let signature = token.rsplit('.').next().unwrap();
        assert!(!err.to_string().contains(signature));
        assert!(!format!("{err:?}").contains(signature));
    }

    #[test]
    fn key_persists() {
        let signer = TokenSigner::generate().unwrap();
        let der = signer.to_pkcs8_der().unwrap();
        let again = TokenSigner::from_pkcs8_der(&der).unwrap();
        assert_eq!(signer.kid(), again.kid());
        assert!(!format!("{signer:?}").contains(&hex::encode(&der[..])));
    }
}

//! Attestation tokens: what CAS says about a workload it attested, as an ES256 JWT.
//!
//! Relying parties (other services, the custodian's tools) verify a token with the keys CAS
//! publishes at `/.well-known/jwks.json`. The algorithm is fixed to ES256 on both sides; the
//! token header's `alg` is never trusted.
//!
//! Tokens are signed with `ring` (its P-256 is several times faster than the pure-Rust one, and
//! the key is loaded once, where `jsonwebtoken` would re-parse it for every token) and
//! serialised as a compact JWS (RFC 7515: `base64url(header).base64url(claims).base64url(r ‖ s)`);
//! [`verify`] checks them with `jsonwebtoken`, as any relying party would.

use crate::{Error, sha256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::SystemTime;
use zeroize::Zeroizing;

/// The claims of an attestation token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationClaims {
    /// The CAS that issued it (its base URL).
    pub iss: String,
    /// `<session>/<service>`.
    pub sub: String,
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

    /// Sign `claims` as a compact ES256 JWS.
    pub fn issue(&self, claims: &AttestationClaims) -> Result<String, Error> {
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
        Ok(token)
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

/// Verify an attestation token against a CAS's JWKS: ES256 only, the key named by `kid`, the
/// issuer pinned, `exp`/`nbf` at `now`.
pub fn verify(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    now: SystemTime,
) -> Result<AttestationClaims, Error> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|_| Error::invalid("token", "not a JWT"))?;
    if header.alg != Algorithm::ES256 {
        return Err(Error::rejected(
            "token algorithm",
            "ES256",
            format!("{:?}", header.alg),
        ));
    }
    let kid = header.kid.unwrap_or_default();
    let jwk = jwks.find(&kid).ok_or_else(|| {
        Error::rejected("token signing key", "a key in the CAS JWKS", kid.clone())
    })?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| Error::invalid("JWKS", "unusable key"))?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
    let data =
        jsonwebtoken::decode::<AttestationClaims>(token, &key, &validation).map_err(|e| match e
            .kind()
        {
            jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                Error::rejected("token issuer", issuer, "another issuer")
            }
            jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                Error::rejected("token signature", "valid", "invalid")
            }
            _ => Error::invalid("token", "not a valid attestation token"),
        })?;
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let c = data.claims;
    if now < c.nbf {
        return Err(Error::rejected(
            "token not before",
            format!("≤ {now}"),
            c.nbf.to_string(),
        ));
    }
    if now >= c.exp {
        return Err(Error::rejected(
            "token expiry",
            format!("> {now}"),
            c.exp.to_string(),
        ));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use std::time::Duration;

    fn claims(now: u64) -> AttestationClaims {
        AttestationClaims {
            iss: "https://cas.test".into(),
            sub: "demo/driver".into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            jti: "1".into(),
            session: "demo".into(),
            service: "driver".into(),
            session_hash: "ab".into(),
            tee: "sim".into(),
            measurement: "c1".into(),
            tcb_status: "UpToDate".into(),
            debug: false,
            key_hash: "00".into(),
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn issue_and_verify() {
        let signer = TokenSigner::generate().unwrap();
        let token = signer.issue(&claims(1000)).unwrap();
        let got = verify(&token, &signer.jwks(), "https://cas.test", at(1001)).unwrap();
        assert_eq!(got, claims(1000));
        // The JWKS is what a relying party fetches: it round-trips through JSON.
        let json = serde_json::to_string(&signer.jwks()).unwrap();
        let jwks: JwkSet = serde_json::from_str(&json).unwrap();
        verify(&token, &jwks, "https://cas.test", at(1001)).unwrap();
    }

    #[test]
    fn tokens_are_compact_es256_jws_naming_their_key() {
        let signer = TokenSigner::generate().unwrap();
        let token = signer.issue(&claims(1000)).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::ES256);
        assert_eq!(header.kid.as_deref(), Some(signer.kid()));
        assert_eq!(header.typ.as_deref(), Some("JWT"));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(B64URL.decode(parts[2]).unwrap().len(), 64, "r ‖ s");
        // ECDSA is randomised: two tokens for the same claims differ, and both verify.
        let again = signer.issue(&claims(1000)).unwrap();
        assert_ne!(token, again);
        verify(&again, &signer.jwks(), "https://cas.test", at(1001)).unwrap();
    }

    #[test]
    fn refusals() {
        let signer = TokenSigner::generate().unwrap();
        let token = signer.issue(&claims(1000)).unwrap();
        let jwks = signer.jwks();
        let rule = |r: Result<AttestationClaims, Error>| match r {
            Err(Error::Rejected { rule, .. }) => rule,
            other => panic!("expected a rejection, got {other:?}"),
        };
        assert_eq!(
            rule(verify(&token, &jwks, "https://other", at(1001))),
            "token issuer"
        );
        assert_eq!(
            rule(verify(&token, &jwks, "https://cas.test", at(1600))),
            "token expiry"
        );
        assert_eq!(
            rule(verify(&token, &jwks, "https://cas.test", at(999))),
            "token not before"
        );
        let other = TokenSigner::generate().unwrap();
        assert_eq!(
            rule(verify(&token, &other.jwks(), "https://cas.test", at(1001))),
            "token signing key"
        );
        // Same kid, other key: a forged signature.
        let mut forged_jwks = other.jwks();
        forged_jwks.keys[0].common.key_id = Some(signer.kid().to_string());
        assert_eq!(
            rule(verify(&token, &forged_jwks, "https://cas.test", at(1001))),
            "token signature"
        );
        // alg confusion: an HS256 token is refused before any key is used.
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(1000),
            &EncodingKey::from_secret(b"k").unwrap(),
        )
        .unwrap();
        assert_eq!(
            rule(verify(&hs, &jwks, "https://cas.test", at(1001))),
            "token algorithm"
        );
        assert!(matches!(
            verify("garbage", &jwks, "https://cas.test", at(1001)),
            Err(Error::InvalidInput { .. })
        ));
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

//! The pinned JWK Set: which keys a token may be signed with, and why a key is refused.

use super::*;

pub(super) fn load_jwks(jwks_json: &[u8]) -> Result<BTreeMap<String, SigningKey>, Error> {
    let jwks = json_object(WHAT_JWKS, jwks_json)?;
    let Some(Value::Array(entries)) = jwks.get("keys") else {
        return Err(Error::malformed(WHAT_JWKS, "it has no `keys` array"));
    };
    let mut keys = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(jwk) = entry else {
            return Err(Error::malformed(
                WHAT_JWKS,
                format!("key {i} is not an object"),
            ));
        };
        let kid = match jwk.get("kid") {
            Some(Value::String(kid)) => kid.clone(),
            Some(_) => {
                return Err(Error::malformed(
                    WHAT_JWKS,
                    format!("kid of key {i} is not a string"),
                ));
            }
            None => {
                tracing::debug!(index = i, "JWKS key without kid skipped");
                continue;
            }
        };
        if keys.contains_key(&kid) {
            return Err(Error::malformed(
                WHAT_JWKS,
                format!("kid {kid} appears twice"),
            ));
        }
        let key = load_jwk(jwk);
        keys.insert(kid, key);
    }
    Ok(keys)
}

pub(super) fn refused(
    rule: &'static str,
    expected: impl Into<String>,
    got: impl Into<String>,
) -> SigningKey {
    SigningKey::Refused {
        rule,
        expected: expected.into(),
        got: got.into(),
    }
}

pub(super) fn load_jwk(jwk: &Map<String, Value>) -> SigningKey {
    const RULE: &str = "token signing key";
    let member = |name: &str| {
        jwk.get(name)
            .map(|v| v.as_str().unwrap_or("(not a string)"))
    };
    match member("kty") {
        Some("RSA") => {}
        other => {
            return refused(
                RULE,
                "an RSA key (kty RSA)",
                format!("kty {}", other.unwrap_or("missing")),
            );
        }
    }
    if let Some(usage) = member("use")
        && usage != "sig"
    {
        return refused(RULE, "a signature key (use sig)", format!("use {usage}"));
    }
    if let Some(alg) = member("alg")
        && alg != ALGORITHM
    {
        return refused(
            RULE,
            format!("a key for {ALGORITHM}"),
            format!("a key for {alg}"),
        );
    }

    let from_components = match (member("n"), member("e")) {
        (None, None) => None,
        (Some(n), Some(e)) => Some(rsa_from_components(n, e)),
        _ => Some(Err("n and e must come together".to_owned())),
    };
    let from_certificate = match jwk.get("x5c") {
        None => None,
        Some(Value::Array(chain)) => match chain.first() {
            Some(Value::String(cert)) => Some(rsa_from_certificate(cert)),
            _ => Some(Err(
                "x5c does not start with a certificate string".to_owned()
            )),
        },
        Some(_) => Some(Err("x5c is not an array".to_owned())),
    };
    let key = match (from_components, from_certificate) {
        (Some(Err(why)), _) | (_, Some(Err(why))) => {
            return refused(RULE, "a well-formed RSA public key", why);
        }
        (Some(Ok(a)), Some(Ok(b))) if a != b => {
            return refused(
                RULE,
                "n and e equal to the key of the x5c certificate",
                "a different key",
            );
        }
        (Some(Ok(key)), _) | (None, Some(Ok(key))) => key,
        (None, None) => return refused(RULE, "a key given by n and e or by x5c", "neither"),
    };
    let bits = key.n().bits();
    if bits < MIN_RSA_BITS {
        return refused(
            "token signing key size",
            format!("an RSA modulus of at least {MIN_RSA_BITS} bits"),
            format!("{bits} bits"),
        );
    }
    SigningKey::Usable {
        key: VerifyingKey::new(key),
        bits,
    }
}

pub(super) fn rsa_from_components(n: &str, e: &str) -> Result<RsaPublicKey, String> {
    let decode = |name: &str, v: &str| {
        URL_SAFE_LENIENT
            .decode(v)
            .map_err(|err| format!("{name} is not base64url: {err}"))
    };
    let n = BigUint::from_bytes_be(&decode("n", n)?);
    let e = BigUint::from_bytes_be(&decode("e", e)?);
    RsaPublicKey::new(n, e).map_err(|err| format!("n and e: {err}"))
}

pub(super) fn rsa_from_certificate(cert_b64: &str) -> Result<RsaPublicKey, String> {
    let der = STANDARD_LENIENT
        .decode(cert_b64)
        .map_err(|e| format!("x5c certificate is not base64: {e}"))?;
    let cert = Certificate::from_der(&der).map_err(|e| format!("x5c certificate: {e}"))?;
    let spki = cert
        .tbs_certificate
        .subject_public_key_info
        .to_der()
        .map_err(|e| format!("x5c certificate key: {e}"))?;
    RsaPublicKey::from_public_key_der(&spki)
        .map_err(|e| format!("x5c certificate key is not RSA: {e}"))
}

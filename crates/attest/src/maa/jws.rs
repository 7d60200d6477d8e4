//! The compact JWS form of a token: its three segments, their decoding, its validity window.

use super::*;

/// The three segments of a compact JWS, still base64url.
pub(super) struct CompactJws<'a> {
    pub(super) header: &'a str,
    pub(super) payload: &'a str,
    pub(super) signature: &'a str,
    /// `header.payload`, the bytes the signature covers.
    pub(super) signing_input: &'a str,
}

impl<'a> CompactJws<'a> {
    pub(super) fn split(evidence: &'a [u8]) -> Result<Self, Error> {
        let token = evidence.trim_ascii();
        if token.is_empty() {
            return Err(Error::malformed(WHAT_TOKEN, "it is empty"));
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(Error::malformed(
                WHAT_TOKEN,
                format!("it is {} bytes, more than {MAX_TOKEN_LEN}", token.len()),
            ));
        }
        if let Some(bad) = token
            .iter()
            .find(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
        {
            return Err(Error::malformed(
                WHAT_TOKEN,
                format!("it holds byte 0x{bad:02x}, which is neither base64url nor '.'"),
            ));
        }
        // Only ASCII is left, so this cannot fail; map the error anyway rather than unwrap.
        let token = std::str::from_utf8(token).map_err(|e| Error::malformed(WHAT_TOKEN, e))?;
        let parts: Vec<&str> = token.split('.').collect();
        let [header, payload, signature] = parts[..] else {
            return Err(Error::malformed(
                WHAT_TOKEN,
                format!("it has {} segments, a compact JWS has 3", parts.len()),
            ));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(Error::malformed(
                WHAT_TOKEN,
                "its header or payload is empty",
            ));
        }
        Ok(Self {
            header,
            payload,
            signature,
            signing_input: &token[..header.len() + 1 + payload.len()],
        })
    }
}

pub(super) fn decode_segment(segment: &str, b64: &str) -> Result<Vec<u8>, Error> {
    URL_SAFE_NO_PAD.decode(b64).map_err(|e| {
        Error::malformed(
            WHAT_TOKEN,
            format!("{segment} is not unpadded base64url: {e}"),
        )
    })
}

pub(super) fn json_object(what: &'static str, json: &[u8]) -> Result<Map<String, Value>, Error> {
    match serde_json::from_slice::<Value>(json) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::malformed(what, "it is not a JSON object")),
        Err(e) => Err(Error::malformed(what, format!("it is not JSON: {e}"))),
    }
}

/// `nbf <= now < exp`, in whole seconds (both claims are integers, so this is exact).
pub(super) fn check_validity(nbf: Option<u64>, exp: u64, now: SystemTime) -> Result<(), Error> {
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Both dates are at most MAX_NUMERIC_DATE, so `unix` cannot overflow.
    let at = crate::error::unix;
    if let Some(nbf) = nbf
        && now_secs < nbf
    {
        return Err(Error::NotYetValid {
            what: WHAT_TOKEN.to_owned(),
            not_before: at(nbf),
            now,
        });
    }
    if now_secs >= exp {
        return Err(Error::Expired {
            what: WHAT_TOKEN.to_owned(),
            not_after: at(exp),
            now,
        });
    }
    Ok(())
}

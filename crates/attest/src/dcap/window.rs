//! The validity window of DCAP collateral, computed here so that expiry errors name what expired
//! and when (dcap-qvl only says "TCBInfo expired").
//!
//! The window is the intersection of: TCB info `issueDate..nextUpdate`, QE identity
//! `issueDate..nextUpdate`, each CRL's `thisUpdate..nextUpdate`, and the `notBefore..notAfter`
//! of every certificate in the collateral's issuer chains and of the trusted root. The PCK chain
//! inside the quote is not part of it: its dates are only meaningful once its signatures are
//! checked, which webpki does (see `diagnose`).

use crate::Error;
use serde::Deserialize;
use std::time::SystemTime;
use x509_cert_v03::Certificate;
use x509_cert_v03::crl::CertificateList;
use x509_cert_v03::der::Decode as _;

/// One dated item the verdict relies on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Validity {
    /// What it is, for error messages: `TCB info`, `PCK CRL`, `certificate "Intel SGX Root CA"`.
    pub what: String,
    /// Valid from (seconds since the Unix epoch).
    pub not_before: u64,
    /// Valid until (seconds since the Unix epoch): notAfter, nextUpdate.
    pub not_after: u64,
    /// Whether `not_after` itself is outside the window: webpki treats a CRL as expired from
    /// its nextUpdate on, while certificates and Intel's JSON bodies end after theirs.
    pub end_exclusive: bool,
}

impl Validity {
    /// The last second at which the item is valid.
    fn last_valid(&self) -> u64 {
        self.not_after - u64::from(self.end_exclusive && self.not_after > 0)
    }
}

/// The dates of a TCB info or QE identity JSON body.
#[derive(Deserialize)]
struct Dated {
    #[serde(rename = "issueDate")]
    issue_date: String,
    #[serde(rename = "nextUpdate")]
    next_update: String,
}

/// The `issueDate..nextUpdate` of a signed Intel JSON body (TCB info or QE identity).
pub(super) fn json_body(what: &'static str, json: &str) -> Result<Validity, Error> {
    let dated: Dated = serde_json::from_str(json).map_err(|e| Error::malformed(what, e))?;
    Ok(Validity {
        what: what.to_string(),
        not_before: rfc3339_secs(what, &dated.issue_date)?,
        not_after: rfc3339_secs(what, &dated.next_update)?,
        end_exclusive: false,
    })
}

/// The `thisUpdate..nextUpdate` of a DER CRL. A CRL without nextUpdate is refused: Intel's
/// always carry one, and webpki's expiration policy needs it.
pub(super) fn crl(what: &'static str, der: &[u8]) -> Result<Validity, Error> {
    let crl = CertificateList::<x509_cert_v03::certificate::Rfc5280>::from_der(der)
        .map_err(|e| Error::malformed(what, e))?;
    let tbs = &crl.tbs_cert_list;
    let next = tbs
        .next_update
        .ok_or_else(|| Error::malformed(what, "no nextUpdate"))?;
    Ok(Validity {
        what: what.to_string(),
        not_before: tbs.this_update.to_unix_duration().as_secs(),
        not_after: next.to_unix_duration().as_secs(),
        end_exclusive: true,
    })
}

/// The validity of each certificate of a PEM chain, named `certificate "<CN>" (<chain>)`.
pub(super) fn pem_chain(chain: &'static str, pem: &[u8]) -> Result<Vec<Validity>, Error> {
    let ders = pem_ders(pem).map_err(|e| Error::malformed(chain, e))?;
    ders.iter()
        .map(|der| {
            Certificate::from_der(der)
                .map(|c| certificate(Some(chain), &c))
                .map_err(|e| Error::malformed(chain, e))
        })
        .collect()
}

/// The DER certificates of a PEM chain, leaf first, read the way dcap-qvl reads them (so a trailing
/// NUL, as in quotes, is fine). At least one.
pub(super) fn pem_ders(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let ders: Vec<Vec<u8>> = pem::parse_many(pem)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err("no certificate".into());
    }
    Ok(ders)
}

/// The validity of one DER certificate.
pub(super) fn der_cert(what: &'static str, der: &[u8]) -> Result<Validity, Error> {
    let cert = Certificate::from_der(der).map_err(|e| Error::malformed(what, e))?;
    Ok(certificate(None, &cert))
}

fn certificate(chain: Option<&str>, cert: &Certificate) -> Validity {
    let tbs = cert.tbs_certificate();
    let cn = tbs
        .subject()
        .common_name()
        .ok()
        .flatten()
        .map(|cn| cn.value().into_owned())
        .unwrap_or_else(|| tbs.subject().to_string());
    let what = match chain {
        Some(chain) => format!("certificate \"{cn}\" ({chain})"),
        None => format!("certificate \"{cn}\""),
    };
    Validity {
        what,
        not_before: tbs.validity().not_before.to_unix_duration().as_secs(),
        not_after: tbs.validity().not_after.to_unix_duration().as_secs(),
        end_exclusive: false,
    }
}

/// Check `now` against every item: the item that becomes valid last names `NotYetValid`, the one
/// that expires first names `Expired`. Returns the earliest notAfter / nextUpdate on success,
/// `u64::MAX` for no items.
pub(super) fn check(items: &[Validity], now: SystemTime) -> Result<u64, Error> {
    let now_secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let before_epoch = now < SystemTime::UNIX_EPOCH;
    if let Some(latest) = items.iter().max_by_key(|v| v.not_before)
        && (before_epoch || now_secs < latest.not_before)
    {
        return Err(Error::NotYetValid {
            what: latest.what.clone(),
            not_before: unix(latest.not_before),
            now,
        });
    }
    match items.iter().min_by_key(|v| v.last_valid()) {
        Some(earliest) if now_secs > earliest.last_valid() => Err(Error::Expired {
            what: earliest.what.clone(),
            not_after: unix(earliest.not_after),
            now,
        }),
        Some(earliest) => Ok(earliest.not_after),
        None => Ok(u64::MAX),
    }
}

/// A time in seconds since the Unix epoch, saturating far in the future instead of overflowing.
pub(super) fn unix(secs: u64) -> SystemTime {
    // Certificates and collateral end by 9999-12-31; anything later is clamped there.
    crate::error::unix(secs.min(MAX_TIME))
}

/// 9999-12-31T23:59:59Z, the latest time X.509 and RFC 3339 can express.
const MAX_TIME: u64 = 253_402_300_799;

/// Seconds since the Unix epoch of an RFC 3339 time such as `2025-06-19T10:56:11Z`.
fn rfc3339_secs(what: &'static str, s: &str) -> Result<u64, Error> {
    // humantime accepts years up to 9999, so the result never exceeds MAX_TIME.
    let t = humantime::parse_rfc3339(s)
        .map_err(|e| Error::malformed(what, format!("date {s:?}: {e}")))?;
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .map_err(|_| Error::malformed(what, format!("date {s:?} is before 1970")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn item(what: &str, nb: u64, na: u64) -> Validity {
        Validity {
            what: what.into(),
            not_before: nb,
            not_after: na,
            end_exclusive: false,
        }
    }

    #[test]
    fn a_crl_expires_at_its_next_update() {
        let crl = Validity {
            end_exclusive: true,
            ..item("crl", 0, 50)
        };
        let items = [item("cert", 0, 50), crl];
        assert_eq!(check(&items, unix(49)).unwrap(), 50);
        match check(&items, unix(50)) {
            Err(Error::Expired {
                what, not_after, ..
            }) => {
                assert_eq!((what.as_str(), not_after), ("crl", unix(50)));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_the_binding_item() {
        let items = [item("a", 10, 100), item("b", 20, 200), item("c", 5, 50)];
        assert_eq!(check(&items, unix(30)).unwrap(), 50);
        match check(&items, unix(15)) {
            Err(Error::NotYetValid { what, .. }) => assert_eq!(what, "b"),
            other => panic!("{other:?}"),
        }
        match check(&items, unix(60)) {
            Err(Error::Expired {
                what, not_after, ..
            }) => {
                assert_eq!((what.as_str(), not_after), ("c", unix(50)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(check(&[], unix(1)).unwrap(), u64::MAX);
    }

    #[test]
    fn parses_intel_dates() {
        let v = json_body(
            "TCB info",
            r#"{"id":"SGX","issueDate":"2025-06-19T10:56:11Z","nextUpdate":"2025-07-19T10:56:11Z"}"#,
        )
        .unwrap();
        assert_eq!(v.not_before, 1_750_330_571);
        assert_eq!(v.not_after - v.not_before, 30 * 86_400);
        assert!(matches!(
            json_body("TCB info", r#"{"issueDate":"yesterday","nextUpdate":"x"}"#),
            Err(Error::Malformed {
                what: "TCB info",
                ..
            })
        ));
        assert!(matches!(
            json_body("QE identity", "{"),
            Err(Error::Malformed { .. })
        ));
    }
}

//! The names the CAS accepts for namespaces and sessions, checked before anything about a
//! request is logged or stored.
//!
//! A name segment is `[a-z0-9][a-z0-9._-]{0,62}` (the policy language's rule); a namespace is
//! one segment; a session name is exactly `namespace/name`, two segments. Nothing else (no
//! upper case, no second `/`, no control bytes) reaches the audit log, the store or a log line.

use crate::Error;

/// The longest name segment, in bytes.
pub const MAX_SEGMENT_LEN: usize = 63;

/// Whether `s` is one name segment: `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_SEGMENT_LEN
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// Checks a namespace name.
pub fn check_namespace(s: &str) -> Result<(), Error> {
    if is_segment(s) {
        Ok(())
    } else {
        Err(Error::InvalidInput {
            what: "namespace name",
            reason: "must be 1 to 63 of a-z 0-9 . _ - starting with a letter or digit",
        })
    }
}

/// Splits a session name into its namespace and its name; both must be segments.
pub fn split_session(s: &str) -> Result<(&str, &str), Error> {
    match s.split_once('/') {
        Some((ns, name)) if is_segment(ns) && is_segment(name) => Ok((ns, name)),
        _ => Err(Error::InvalidInput {
            what: "session name",
            reason: "must be `namespace/name`, each 1 to 63 of a-z 0-9 . _ - starting with a \
                     letter or digit",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("demo/nyc-taxi", true)]
    #[case::dots_and_underscores("a.b_c/0-x", true)]
    #[case::longest(&format!("{}/{}", "a".repeat(63), "b".repeat(63)), true)]
    #[case::too_long(&format!("{}/b", "a".repeat(64)), false)]
    #[case::no_namespace("nyc-taxi", false)]
    #[case::three_segments("a/b/c", false)]
    #[case::empty_namespace("/b", false)]
    #[case::empty_name("a/", false)]
    #[case::upper_case("Demo/x", false)]
    #[case::leading_dash("-a/b", false)]
    #[case::newline("a/b\nforged", false)]
    #[case::nul("a/b\0", false)]
    #[case::non_ascii("a/é", false)]
    fn session_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(split_session(name).is_ok(), ok, "{name:?}");
    }

    #[test]
    fn namespace_names() {
        assert!(check_namespace("demo").is_ok());
        for bad in ["", "a/b", "A", ".x", &"x".repeat(64)] {
            assert!(
                matches!(check_namespace(bad), Err(Error::InvalidInput { .. })),
                "{bad:?}"
            );
        }
    }
}

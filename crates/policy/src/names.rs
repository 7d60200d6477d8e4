//! The syntax of session and service names: one rule, shared by the policy's validation and by
//! the services that receive names from callers (the CAS checks a name with these functions
//! before it looks it up or writes it anywhere, such as its audit log).
//!
//! - A *session name* is exactly `namespace/name`; each segment is
//!   `[a-z0-9][a-z0-9._-]{0,62}` (at most 63 bytes), so a whole name is at most 127 bytes.
//! - A *service name* is `[a-z0-9][a-z0-9-]{0,62}`: it also names the workload's certificate
//!   (a DNS-like label), so no `.` or `_`.
//!
//! ```
//! use cloister_policy::names::{check_service_name, check_session_name};
//!
//! assert!(check_session_name("demo/nyc-taxi").is_ok());
//! assert!(check_session_name("demo/nyc/taxi").is_err());
//! assert!(check_service_name("driver").is_ok());
//! assert!(check_service_name(&"a".repeat(64)).is_err());
//! ```

/// The longest segment of a session name, and the longest service name, in bytes.
pub const MAX_SEGMENT_LEN: usize = 63;

/// The longest session name (`namespace/name`), in bytes.
pub const MAX_SESSION_NAME_LEN: usize = 2 * MAX_SEGMENT_LEN + 1;

/// Why a name is not acceptable. Its [`Display`](std::fmt::Display) never repeats the name,
/// which may be long or hostile; callers that want to show it should cut it first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Empty, or a segment is empty.
    #[error("is empty")]
    Empty,
    /// Longer than allowed.
    #[error("is longer than {max} bytes")]
    TooLong {
        /// The limit.
        max: usize,
    },
    /// A character outside the allowed set, or a segment that does not start with a letter or
    /// digit.
    #[error("{0}")]
    Syntax(&'static str),
}

const SESSION_SYNTAX: &str = "is not `namespace/name` (each segment: lower-case letters, digits, \
                              `-`, `_`, `.`, starting with a letter or digit, at most 63)";
const SERVICE_SYNTAX: &str =
    "is not lower-case letters, digits and `-`, starting with a letter or digit";

/// Checks one segment of a session name: `[a-z0-9][a-z0-9._-]{0,62}`.
fn check_segment(s: &str) -> Result<(), NameError> {
    if s.is_empty() {
        return Err(NameError::Empty);
    }
    if s.len() > MAX_SEGMENT_LEN {
        return Err(NameError::TooLong {
            max: MAX_SEGMENT_LEN,
        });
    }
    let first_ok = s
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::Syntax(SESSION_SYNTAX))
    }
}

/// Checks a session name: exactly `namespace/name`, each segment `[a-z0-9][a-z0-9._-]{0,62}`.
/// The length is checked first, so a long hostile name costs nothing to refuse.
pub fn check_session_name(name: &str) -> Result<(), NameError> {
    if name.len() > MAX_SESSION_NAME_LEN {
        return Err(NameError::TooLong {
            max: MAX_SESSION_NAME_LEN,
        });
    }
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    let Some((ns, rest)) = name.split_once('/') else {
        return Err(NameError::Syntax(SESSION_SYNTAX));
    };
    check_segment(ns).and_then(|()| check_segment(rest))
}

/// Checks a namespace name: one segment of a session name, `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn check_namespace(name: &str) -> Result<(), NameError> {
    check_segment(name)
}

/// Checks a session name and splits it into its namespace and its name.
pub fn split_session(name: &str) -> Result<(&str, &str), NameError> {
    check_session_name(name)?;
    name.split_once('/')
        .ok_or(NameError::Syntax(SESSION_SYNTAX))
}

/// Checks a service name: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn check_service_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_SEGMENT_LEN {
        return Err(NameError::TooLong {
            max: MAX_SEGMENT_LEN,
        });
    }
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(NameError::Syntax(SERVICE_SYNTAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::plain("demo/nyc-taxi")]
    #[case::dots_and_underscores("a.b/c_d.e-f")]
    #[case::digits_first("0/9")]
    #[case::longest_segments(&format!("{}/{}", "a".repeat(63), "b".repeat(63)))]
    fn good_session_names(#[case] name: &str) {
        assert_eq!(check_session_name(name), Ok(()));
    }

    #[rstest]
    #[case::empty("", NameError::Empty)]
    #[case::no_slash("demo", NameError::Syntax(SESSION_SYNTAX))]
    #[case::two_slashes("a/b/c", NameError::Syntax(SESSION_SYNTAX))]
    #[case::empty_namespace("/b", NameError::Empty)]
    #[case::empty_name("a/", NameError::Empty)]
    #[case::upper_case("Demo/x", NameError::Syntax(SESSION_SYNTAX))]
    #[case::starts_with_dash("a/-x", NameError::Syntax(SESSION_SYNTAX))]
    #[case::dot_dot("../x", NameError::Syntax(SESSION_SYNTAX))]
    #[case::space("a/b c", NameError::Syntax(SESSION_SYNTAX))]
    #[case::nul("a/b\0", NameError::Syntax(SESSION_SYNTAX))]
    #[case::long_segment(&format!("a/{}", "b".repeat(64)), NameError::TooLong { max: 63 })]
    #[case::huge(&"a".repeat(900_000), NameError::TooLong { max: 127 })]
    fn bad_session_names(#[case] name: &str, #[case] error: NameError) {
        assert_eq!(check_session_name(name), Err(error));
    }

    #[rstest]
    #[case::plain("driver", true)]
    #[case::dash_digit("exec-2", true)]
    #[case::longest(&"a".repeat(63), true)]
    #[case::too_long(&"a".repeat(64), false)]
    #[case::huge(&"a".repeat(900_000), false)]
    #[case::empty("", false)]
    #[case::dot("a.b", false)]
    #[case::underscore("a_b", false)]
    #[case::leading_dash("-a", false)]
    #[case::upper("Driver", false)]
    #[case::newline("driver\n", false)]
    fn service_names(#[case] name: &str, #[case] ok: bool) {
        assert_eq!(check_service_name(name).is_ok(), ok, "{name:.20}");
    }

    #[test]
    fn errors_never_repeat_the_name() {
        let hostile = "X".repeat(1000);
        for e in [
            check_session_name(&hostile).unwrap_err(),
            check_service_name(&hostile).unwrap_err(),
            check_session_name("a/Xy").unwrap_err(),
        ] {
            assert!(!e.to_string().contains("XX"), "{e}");
        }
    }
}

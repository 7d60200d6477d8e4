//! The one error type of this crate, grouped by whose fault it is.

/// Why a cell, a wrapped key or a value was not accepted, or could not be produced.
///
/// Variants are grouped by fault: the input is not well-formed; the input is well-formed but
/// rejected by a cryptographic check; something the operation needs is unavailable; a bug in
/// this crate. Messages never carry key material or plaintext: only lengths, versions, key
/// paths and type names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // ----- invalid input -----
    /// The input ends before a structure it must hold.
    #[error("{what} is truncated: needs at least {need} bytes, has {got}")]
    Truncated {
        /// The structure being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        got: usize,
    },
    /// The leading version byte is not the one version SQL Server has ever written (`0x01`).
    #[error("unsupported {what} version {got:#04x}, expected 0x01")]
    UnsupportedVersion {
        /// The structure whose version is wrong.
        what: &'static str,
        /// The version byte found.
        got: u8,
    },
    /// The input does not parse as the structure it claims to be.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// The structure being read.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Key material is not a usable key (wrong length, unparseable PEM, too small a modulus …).
    #[error("invalid {what}: {reason}")]
    InvalidKey {
        /// Which key.
        what: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// A value does not fit the SQL type it is encoded as.
    #[error("cannot encode value as {ty}: {reason}")]
    Encode {
        /// The SQL type, as SQL Server spells it.
        ty: String,
        /// Why (lengths and ranges, never the value).
        reason: String,
    },
    /// Decrypted bytes are not a valid serialisation of the column's SQL type.
    #[error("cannot decode plaintext as {ty}: {reason}")]
    Decode {
        /// The SQL type, as SQL Server spells it.
        ty: String,
        /// Why (lengths and ranges, never the value).
        reason: String,
    },

    // ----- rejected -----
    /// The cell's authentication tag does not verify: the cell was encrypted under another
    /// column encryption key, or it was altered.
    #[error(
        "cell authentication tag does not verify: wrong column encryption key, or the cell was altered"
    )]
    Mac,
    /// The cell authenticated but its PKCS#7 padding is invalid: its producer is broken.
    #[error("cell authenticated but its PKCS#7 padding is invalid")]
    Padding,
    /// An RSA signature does not verify with the column master key.
    #[error("signature of the {what} does not verify with this column master key")]
    Signature {
        /// What was signed.
        what: &'static str,
    },
    /// A wrapped key's ciphertext or signature length is not the column master key's modulus
    /// size: it was wrapped by another key (or altered).
    #[error(
        "{what} of the encrypted column encryption key is {got} bytes, but the column master key's modulus is {expected} bytes: wrong column master key?"
    )]
    KeySizeMismatch {
        /// `ciphertext` or `signature`.
        what: &'static str,
        /// The modulus size in bytes.
        expected: usize,
        /// The length found.
        got: usize,
    },
    /// The encrypted column encryption key names another column master key path.
    #[error(
        "encrypted column encryption key was wrapped under key path {found:?}, expected {expected:?}"
    )]
    KeyPathMismatch {
        /// The key path asked for, lower-cased as SQL Server stores it.
        expected: String,
        /// The key path stored in the encrypted value.
        found: String,
    },
    /// RSA-OAEP decryption of a correctly signed wrapped key failed.
    #[error("RSA-OAEP decryption of the column encryption key failed")]
    CekDecrypt,

    // ----- unavailable -----
    /// The operating system's random number generator failed.
    #[error("operating-system random number generator failed: {0}")]
    Random(String),

    // ----- bug -----
    /// An invariant of this crate broke; please report it.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Who is at fault for an [`Error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The input (cell, wrapped key, value, key file) is malformed or fails a check.
    Input,
    /// Something the operation needs (the OS random number generator) is unavailable.
    Environment,
    /// A bug in this crate.
    Internal,
}

impl Error {
    /// Who is at fault.
    pub fn fault(&self) -> Fault {
        match self {
            Error::Random(_) => Fault::Environment,
            Error::Internal(_) => Fault::Internal,
            _ => Fault::Input,
        }
    }

    pub(crate) fn malformed(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::Malformed {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid_key(what: &'static str, reason: impl std::fmt::Display) -> Self {
        Error::InvalidKey {
            what,
            reason: reason.to_string(),
        }
    }

    pub(crate) fn random(err: impl std::fmt::Display) -> Self {
        Error::Random(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::mac(Error::Mac, Fault::Input)]
    #[case::truncated(Error::Truncated { what: "cell", need: 65, got: 1 }, Fault::Input)]
    #[case::random(Error::Random("no entropy".into()), Fault::Environment)]
    #[case::internal(Error::Internal("bug".into()), Fault::Internal)]
    fn fault_groups_variants(#[case] err: Error, #[case] fault: Fault) {
        assert_eq!(err.fault(), fault);
    }

    #[test]
    fn messages_name_what_failed() {
        let err = Error::UnsupportedVersion {
            what: "cell",
            got: 2,
        };
        assert_eq!(
            err.to_string(),
            "unsupported cell version 0x02, expected 0x01"
        );
    }
}

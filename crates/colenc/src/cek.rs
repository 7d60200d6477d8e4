//! The column encryption key (CEK): the 32-byte root key of one encrypted column.

use rand_core::{OsRng, RngCore};
use secrecy::{ExposeSecret, SecretBox};
use subtle::ConstantTimeEq;

use crate::Error;

/// A column encryption key: the 32-byte root key from which [`CellCipher`](crate::CellCipher)
/// derives its encryption, MAC and IV keys.
///
/// It lives on the heap and is wiped when dropped; `Debug` never shows it, and equality is
/// constant time. SQL Server only ever stores it wrapped by a column master key (see
/// [`wrap_cek`](crate::wrap_cek)).
pub struct Cek(SecretBox<[u8; Cek::LEN]>);

impl Cek {
    /// Length of a column encryption key in bytes (AES-256).
    pub const LEN: usize = 32;

    /// A key from its 32 raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let array: [u8; Self::LEN] = bytes.try_into().map_err(|_| {
            Error::invalid_key(
                "column encryption key",
                format!("needs {} bytes, has {}", Self::LEN, bytes.len()),
            )
        })?;
        Ok(Self::from_array(array))
    }

    /// A fresh random key from the operating system's random number generator.
    pub fn generate() -> Result<Self, Error> {
        let mut key = Box::new([0u8; Self::LEN]);
        OsRng.try_fill_bytes(&mut key[..]).map_err(Error::random)?;
        Ok(Self(SecretBox::new(key)))
    }

    fn from_array(mut array: [u8; Self::LEN]) -> Self {
        let key = Self(SecretBox::new(Box::new(array)));
        zeroize::Zeroize::zeroize(&mut array);
        key
    }

    /// The raw key bytes. The name is a reminder: whatever holds them now holds the key.
    pub fn expose_secret(&self) -> &[u8; Self::LEN] {
        self.0.expose_secret()
    }
}

impl Clone for Cek {
    fn clone(&self) -> Self {
        Self::from_array(*self.expose_secret())
    }
}

impl PartialEq for Cek {
    fn eq(&self, other: &Self) -> bool {
        self.expose_secret().ct_eq(other.expose_secret()).into()
    }
}

impl Eq for Cek {}

impl std::fmt::Debug for Cek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cek(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    #[rstest]
    #[case::empty(0)]
    #[case::short(31)]
    #[case::long(33)]
    #[case::aes128(16)]
    fn from_bytes_rejects_wrong_length(#[case] len: usize) {
        let err = Cek::from_bytes(&vec![7; len]).unwrap_err();
        assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    }

    #[test]
    fn debug_is_redacted() {
        let key = Cek::from_bytes(&[0xab; 32]).unwrap();
        let shown = format!("{key:?}");
        assert_eq!(shown, "Cek(<redacted>)");
        assert!(!shown.to_lowercase().contains("ab, ab"));
    }

    #[test]
    fn generate_gives_distinct_keys() {
        let a = Cek::generate().unwrap();
        let b = Cek::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.clone(), a);
    }

    #[test]
    fn bytes_round_trip() {
        let bytes: Vec<u8> = (0..32).collect();
        let key = Cek::from_bytes(&bytes).unwrap();
        assert_eq!(&key.expose_secret()[..], &bytes[..]);
    }
}

//! Column encryption byte-compatible with SQL Server Always Encrypted.
//!
//! Cloister reads and writes SQL databases whose sensitive columns are encrypted the way SQL
//! Server's Always Encrypted does it, so that data written inside a TEE can be read by any
//! Always Encrypted client (SqlClient, the JDBC and ODBC drivers, SSMS) holding the keys, and the
//! other way round. This crate is that format and nothing else:
//!
//! - [`CellCipher`]: `AEAD_AES_256_CBC_HMAC_SHA_256` cells, deterministic or randomized.
//! - [`wrap_cek`] / [`unwrap_cek`]: column encryption keys ([`Cek`]) wrapped by a column master
//!   key ([`Cmk`], RSA) in the layout of `sys.column_encryption_key_values.encrypted_value`:
//!   RSA-OAEP-SHA-1 ciphertext, signed with RSASSA-PKCS1-v1_5-SHA-256.
//! - [`sign_cmk_metadata`] / [`verify_cmk_metadata`]: the signature of enclave-enabled CMKs.
//! - [`SqlValue`] / [`SqlType`]: the plaintext serialisation of each SQL type (every integer
//!   widened to 8 bytes, `decimal` as 17 bytes, `datetime2` in 100-ns ticks, …).
//!
//! # Design
//!
//! Byte compatibility comes first: every rule here is SQL Server's, checked against recorded
//! vectors (including a cell and a wrapped key produced by a real SQL Server) and against an
//! independent Python implementation in the tests. The cryptography is composed from RustCrypto
//! primitives (`aes`, `cbc`, `hmac`, `sha2`, `rsa`), never hand-written, and the crate depends on
//! no analytics stack or async runtime: the CAS uses it to generate and wrap keys, the engine to
//! decrypt cells. Every parser of stored bytes returns a typed [`Error`] and never panics; MACs
//! and signatures are checked before anything is decrypted, MACs in constant time. Keys are
//! wiped on drop and absent from `Debug`.
//!
//! # Example
//!
//! ```
//! use cloister_colenc::{
//!     unwrap_cek, wrap_cek, Cek, CellCipher, Cmk, EncryptionType, SqlType, SqlValue,
//! };
//!
//! # let cmk_pem = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"),
//! #     "/../../testdata/always-encrypted/swisscom/always-encrypted.pem")).unwrap();
//! // The CAS: a column master key (here loaded from PEM) wraps a fresh column encryption key.
//! let cmk = Cmk::from_pem(&cmk_pem)?;
//! let cek = Cek::generate()?;
//! let key_path = "CurrentUser/My/0BE978BA81EED610015FD8B7CAEF55F1614CA3B6";
//! let encrypted_value = wrap_cek(&cek, &cmk, key_path)?;
//!
//! // The engine: unwrap it and encrypt an nvarchar(50) cell, deterministically.
//! let cek = unwrap_cek(&encrypted_value, &cmk, key_path)?;
//! let cipher = CellCipher::new(&cek);
//! let ty = SqlType::NVarChar { max_len: Some(50) };
//! let cell = cipher.encrypt_value(
//!     &SqlValue::String("Alice".into()),
//!     &ty,
//!     EncryptionType::Deterministic,
//! )?;
//! assert_eq!(cell[0], 0x01);
//! assert_eq!(cipher.decrypt_value(&cell, &ty)?, SqlValue::String("Alice".into()));
//! # Ok::<(), cloister_colenc::Error>(())
//! ```

// Tests may unwrap: a panic there is a test failure with its location.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod cek;
pub mod cell;
pub mod cmk;
mod decimal;
mod error;
pub mod temporal;
mod value;

#[cfg(test)]
mod testdata;

pub use cek::Cek;
pub use cell::{CellCipher, EncryptionType};
pub use cmk::{
    Cmk, CmkPublicKey, WrappedCek, sign_cmk_metadata, unwrap_cek, verify_cmk_metadata, wrap_cek,
};
pub use decimal::Decimal;
pub use error::{Error, Fault};
pub use temporal::{Date, DateTime, DateTime2, DateTimeOffset, SmallDateTime, Time};
pub use value::{CodePage, SqlType, SqlValue};

/// The cell encryption algorithm's name as SQL Server spells it in `sys.columns`
/// (`encryption_algorithm_name`).
pub const ALGORITHM: &str = "AEAD_AES_256_CBC_HMAC_SHA_256";

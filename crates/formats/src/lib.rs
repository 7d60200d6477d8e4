//! The byte formats Cloister's engine reads back from storage that the host controls, without
//! the analytics stack: Parquet key-management-tools key material ([`kmt`]: the `PKMT1` JSON
//! document in a file's key metadata and the local AES-GCM key wrapping) and the chunks of the
//! engine's encrypted spill files ([`spill`]: header, length framing, per-chunk seal/open).
//!
//! # Design
//!
//! These parsers take bytes an attacker on the host can write (a Parquet footer, a spill file
//! on disk), so they must refuse anything without panicking; they live apart from
//! `cloister-engine` so that a fuzz target can reach them without building DataFusion (the
//! `kmt_key_material` and `spill_chunk` targets in `fuzz/`). The engine depends on this crate
//! and re-exports what its API had ([`kmt::KeyMaterial`]); its errors map one to one onto the
//! engine's. Dependencies: ring, serde_json, base64, zeroize — nothing else.
//!
//! # Example
//!
//! ```
//! use cloister_formats::kmt::{KeyMaterial, unwrap_locally, wrap_locally};
//! use cloister_formats::spill::{ChunkCipher, LEN_PREFIX, body_len, spill_prk};
//!
//! // Key material: a data key wrapped directly under master key "mk".
//! let master = [9u8; 16];
//! let json = format!(
//!     r#"{{"keyMaterialType":"PKMT1","internalStorage":true,"masterKeyID":"mk","wrappedDEK":"{}"}}"#,
//!     wrap_locally(&[1u8; 16], &master, b"mk")?,
//! );
//! let material = KeyMaterial::parse(json.as_bytes())?;
//! let dek = unwrap_locally(&material.wrapped_dek, &master, b"mk", "mk")?;
//! assert_eq!(dek.as_slice(), &[1u8; 16]);
//!
//! // A spill chunk: sealed, framed, parsed and opened.
//! let cipher = ChunkCipher::derive(&spill_prk(&[0u8; 32]), [5u8; 16])?;
//! let chunk = cipher.seal(0, true, b"rows")?;
//! let (prefix, body) = chunk.split_at(LEN_PREFIX);
//! let len = body_len(0, prefix.try_into().expect("4 bytes"), 64 * 1024)?;
//! let mut body = body[..len].to_vec();
//! assert_eq!(cipher.open(0, true, &mut body)?, 4);
//! # Ok::<(), cloister_formats::Error>(())
//! ```

// Tests may unwrap; the non-test build (also linted) may not.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod error;
pub mod kmt;
pub mod spill;

pub use error::Error;

//! Cloister's runtime: the launcher that *is* the confidential workload.
//!
//! `cloister run` measures itself and the app bundle, makes a fresh key pair, gets evidence that
//! binds the key, attests to the CAS, receives its certificate and configuration in memory only,
//! opens the app bundle, and hands all of it to a role (`job` now; `driver`, `executor` and
//! `connect` on the engine later). This crate is that flow, without the analytics: it never
//! depends on DataFusion, arrow, parquet or object_store (`scripts/boundaries.sh` checks).
//!
//! - [`measure`]: the workload's [`Measurement`] — SHA-384 over the executable's digest and the
//!   bundle's plaintext digest, domain-separated. `cloister measure --bundle B` prints it for
//!   custodians to pin.
//! - [`bundle`]: the app bundle — a deterministic tar of the app directory, AES-256-GCM under a
//!   key the policy holds, in a versioned envelope whose header is authenticated.
//! - [`files`]: injected files, in memory and in a private `0700` tmpfs directory removed on
//!   drop and on SIGTERM / SIGINT / SIGHUP.
//! - [`launch()`]: the flow, for any [`Role`]; [`Job`] hands the bundle and context to a
//!   callback.
//!
//! # Design
//!
//! The key decision: **the bundle is measured by its plaintext digest, which its header carries
//! in the clear and its encryption authenticates.** The measurement can then be computed before
//! attestation, when the key is not known yet (the CAS releases the key only to a workload whose
//! measurement the policy pins), and a bundle that was changed, re-encrypted with a false digest
//! or opened with another key never reaches a role. Each refusal is its own [`Error`] variant,
//! and [`Error::is_refusal`] tells verdicts from operational failures.
//!
//! Secrets (the bundle key, the token, configuration values, the workload key) live in
//! `secrecy` / `zeroize` types; every `Debug` here shows names and sizes only; nothing is put in
//! this process's environment.
//!
//! # Example
//!
//! Packaging an app, measuring it, and opening it again:
//!
//! ```
//! use cloister_runtime::bundle::{self, BundleKey, Header};
//! use cloister_runtime::Measurement;
//!
//! let app = tempfile::tempdir()?;
//! std::fs::write(app.path().join("query.sql"), "SELECT count(*) FROM trips;")?;
//!
//! let key = BundleKey::generate()?;
//! let sealed = bundle::package(app.path(), &key, bundle::DEFAULT_KEY_ID)?;
//!
//! // Without the key: what `cloister measure` prints for the policy.
//! let digest = Header::parse(&sealed)?.digest;
//! let measurement = Measurement::of_running_exe(Some(&digest))?;
//! assert_eq!(measurement.to_string().len(), 96);
//!
//! // With the key: what the runtime does after attestation.
//! let opened = bundle::open(&sealed, &key, "example")?;
//! assert_eq!(opened.file("query.sql"), Some(&b"SELECT count(*) FROM trips;"[..]));
//! assert_eq!(*opened.digest(), digest);
//!
//! // Another key is refused as such.
//! let other = BundleKey::generate()?;
//! assert!(matches!(
//!     bundle::open(&sealed, &other, "example"),
//!     Err(cloister_runtime::Error::WrongBundleKey { .. })
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bundle;
mod error;
pub mod files;
pub mod launch;
pub mod measure;
pub mod role;

pub use bundle::{Bundle, BundleDigest, BundleKey};
pub use error::{Error, RoleError};
pub use files::{FilesMode, InjectedFiles};
pub use launch::{BUNDLE_DIGEST_ENV, BUNDLE_KEY_ENV, EvidenceSource, Launch, launch};
pub use measure::{ExeDigest, Measurement};
pub use role::{Identity, Job, Role, RoleContext};

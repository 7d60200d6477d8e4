//! Cloister's policy ("session") language: the data custodian's signed statement of which code,
//! on which platforms, gets which configuration and secrets.
//!
//! A policy is a YAML document (see `docs/policy.md` and [`json_schema`]) with a name, a version
//! chain (`predecessor` = the session hash of the version it replaces), owners who sign it, the
//! accepted TEEs and tolerances, services pinned by measurement or signer, secrets generated or
//! imported by the CAS, exports to other sessions, and an optional Rego rule.
//!
//! # Design
//!
//! Everything here is a pure function over text, keys and claims, so the CAS's decisions can be
//! tested exhaustively without a server:
//!
//! - [`Policy::parse`] validates a document and reports *every* problem with its path, line,
//!   column and rule ([`Problems`]); a [`Policy`] exists only if all rules hold.
//! - [`authorize_create`], [`authorize_update`], [`authorize_read`] and [`authorize_import`]
//!   decide policy changes and access, returning an [`Error`] that names the failed rule.
//! - [`Policy::appraise`] decides whether verified [`cloister_attest::Claims`] satisfy a service,
//!   deny by default, and lists every violated rule in a [`Refusal`].
//! - [`resolve`] / [`Service::resolve`] fill `$$cloister:NAME[:FORMAT]$$` placeholders and
//!   `@@N` host arguments; secret values stay in `secrecy` types and out of `Debug`.
//! - [`diff::changes`] lists what changed between two versions in the terms a custodian
//!   reviews (owners, TEEs and floors, pinned code, configuration, secrets, exports).
//!
//! The session hash is SHA-256 of the exact YAML bytes; owners sign it with Ed25519 (see
//! [`sign`] for the scheme).
//!
//! # Example
//!
//! ```
//! use cloister_policy::{OwnerKey, SignedPolicy, authorize_create};
//! use cloister_attest::{Claims, EvidenceFormat, Tee};
//!
//! let owner = OwnerKey::from_seed(&[7; 32])?;
//! let yaml = format!(
//!     "name: demo/taxi\nversion: 1\naccess:\n  owners:\n    - name: alice\n      key: {key}\n\
//!      security:\n  tees: [sim]\nservices:\n  - name: driver\n    attestation:\n\
//!      \x20     - measurements: [\"{m}\"]\n",
//!     key = owner.public_key().to_pem()?.lines().filter(|l| !l.starts_with("-----")).collect::<String>(),
//!     m = "ab".repeat(32),
//! );
//! let policy = authorize_create(&SignedPolicy::new(yaml).signed_by(&owner))?;
//!
//! let claims = Claims::new(Tee::Sim, EvidenceFormat::Sim, vec![0xab; 32], vec![0; 64]);
//! assert_eq!(policy.appraise("driver", &claims).map(|s| s.name.as_str()), Ok("driver"));
//!
//! let wrong = Claims::new(Tee::Sim, EvidenceFormat::Sim, vec![0xcd; 32], vec![0; 64]);
//! let refusal = policy.appraise("driver", &wrong).unwrap_err();
//! assert!(refusal.mentions("not pinned"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod appraise;
mod decide;
pub mod diff;
pub mod doc;
mod error;
#[cfg(any(test, feature = "fixtures"))]
#[doc(hidden)]
pub mod fixtures;
mod model;
pub mod names;
mod problem;
pub mod rego;
pub mod sign;
mod template;
mod validate;
mod yaml;

pub use appraise::{MAX_RULE_ID_LEN, Refusal, rule_id};
pub use decide::{
    Importer, authorize_create, authorize_import, authorize_read, authorize_recreate,
    authorize_update, signed_by_an_owner,
};
pub use doc::{KeyAlgorithm, Tolerate, json_schema};
pub use error::Error;
pub use model::{
    Access, Advisories, AttestationVariant, Export, ExportTarget, ImportSource, ImporterIdentity,
    InjectedFile, Owner, Pin, Policy, Reader, ResolvedFile, ResolvedService, Secret, SecretKind,
    Security, Service, SessionImport, SvnRange,
};
pub use problem::{Problem, Problems, Rule};
pub use sign::{KeyFingerprint, OwnerKey, PublicKey, SessionHash, Signature, SignedPolicy};
pub use template::{Format, Lookup, SecretValue, resolve, resolve_arg};
pub use validate::{DEFAULT_FILE_MODE, lint, yaml_to_json};

//! Cloister's test harnesses, shared by the integration tests of every crate: one copy of each
//! instead of one per test binary.
//!
//! Key design decision: this crate is a dev-dependency only (`publish = false`) and panics
//! where a test would: a harness that cannot start its component fails the test that asked for
//! it, with the reason, rather than returning an error every caller would unwrap. Real
//! components (PostgreSQL, Azurite, moto) follow one rule: under `CI=true` a missing component
//! fails the run; locally the test is skipped and prints why ([`services::unavailable`]). It
//! depends on the trust core (`cas`, `attest`, `policy`) only, never on the analytics stack, so
//! the CAS's and the runtime's test binaries stay free of DataFusion; the trust-core harnesses
//! themselves sit behind the `cas` feature, so that the engine's tests build without them.
//!
//! Modules, by what they stand up or check:
//! - `cas`: the CAS in this process on `127.0.0.1:0` (`cas::Cas::start`, a builder).
//! - `las`: the LAS in this process on `127.0.0.1:0` (`las::Las::start_sim`).
//! - [`process`]: a service run as a child process: address file, SIGTERM, SIGKILL.
//! - `cli`: a built binary run in a directory, its exit checked and its stdout decoded.
//! - [`canary`]: planted secrets and the scans that they were written nowhere, in any encoding.
//! - `https`: raw HTTPS pinned to a CAS certificate, for requests the client would not send.
//! - `policies`: owner keys by seed, sample policies and namespaces.
//! - [`services`]: free ports, server child processes killed on drop, the skip-or-fail rule.
//! - [`pg`]: a private PostgreSQL cluster in a temp dir.
//!
//! ```
//! use cloister_testkit::canary::{self, Canary};
//!
//! let canary = Canary::new("doc");
//! let log = format!("token={}", hex::encode(canary.as_str()));
//! assert_eq!(canary::found(log.as_bytes(), canary.as_ref()), ["hex"]);
//! canary::assert_absent("nothing secret here", &canary);
//! ```
// A harness panics where a test would: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod canary;
#[cfg(feature = "cas")]
pub mod cas;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "cas")]
pub mod https;
#[cfg(feature = "cas")]
pub mod las;
pub mod pg;
#[cfg(feature = "cas")]
pub mod policies;
pub mod process;
pub mod services;

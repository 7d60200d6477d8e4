//! Cloister's test harnesses, shared by the integration tests of every crate: one copy of each
//! instead of one per test binary.
//!
//! Key design decision: this crate is a dev-dependency only (`publish = false`) and panics
//! where a test would: a harness that cannot start its component fails the test that asked for
//! it, with the reason, rather than returning an error every caller would unwrap. Real
//! components (PostgreSQL, Azurite, moto) follow one rule: under `CI=true` a missing component
//! fails the run; locally the test is skipped and prints why ([`services::unavailable`]).
//!
//! Modules, by what they stand up or check:
//! - [`services`]: free ports, server child processes killed on drop, the skip-or-fail rule.
//! - [`pg`]: a private PostgreSQL cluster in a temp dir.
//!
//! ```
//! // Whether a missing component must fail this run.
//! let strict = cloister_testkit::services::ci();
//! assert_eq!(strict, std::env::var("CI").is_ok_and(|v| v == "true"));
//! ```
// A harness panics where a test would: a panic is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod pg;
pub mod services;

//! Cloister's demos, benchmarks and synthetic data: the `cloister-demo` binary.
//!
//! Everything here is kept out of the `cloister` executable on purpose: that executable is the
//! measured workload, whose hash a custodian pins in a policy, so demo, benchmark and data
//! generation code must not be part of it (editing a benchmark would otherwise change every
//! pinned measurement; see `docs/threat-model.md`). `cloister demo|bench|gen …` forward here.
//!
//! - [`demo`]: the NYC-taxi and ContosoHR demos and the TEE evidence demo, on
//!   [`demo::cluster::Cluster`], an in-process deployment (CAS, sim LAS, owner key, attested
//!   jobs running the [`cloister_roles::job`] role).
//! - [`bench`](mod@bench): benchmarks reporting ratios against a peer measured in the same run.
//! - [`generate`]: deterministic synthetic data sets (`cloister-datagen`), optionally encrypted.
//!
//! ```
//! // The exit codes every command of the binary uses.
//! assert_eq!((cloister_demo::EXIT_REFUSED, cloister_demo::EXIT_ERROR), (1, 2));
//! ```

pub mod bench;
pub mod demo;
pub mod generate;
pub mod progress;

pub use cloister_roles::output;

/// Exit code for a negative verdict: evidence refused, verification failed.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code for a usage or operational error.
pub const EXIT_ERROR: u8 = 2;

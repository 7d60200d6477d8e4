//! Cloister's roles: what an attested workload runs once the CAS released its configuration.
//!
//! `cloister run … -- job BUNDLE` measures, attests and opens the bundle (`cloister-runtime`),
//! then hands the bundle and the attested `RoleContext` to a role here. Today there is one role,
//! [`job`]; `worker`, `pyspark` and `connect` will join it. Keeping roles in a library (not in
//! the `cloister` binary) lets the demo and tests run the same code in-process.
//!
//! The key design decision: [`config`] is the one place that names and documents the
//! `CLOISTER_*` variables a role reads from its attested configuration, and each role validates
//! them when it loads them, into typed values, so a bad value stops the role before it runs.
//!
//! ```
//! assert_eq!(cloister_roles::job::key_setting("trips_fare"), "CLOISTER_KEY_TRIPS_FARE");
//! ```

pub mod config;
pub mod conninfo;
pub mod job;
pub mod output;

//! End-to-end tests of the built `cloister-demo` binary (`cloister demo|bench|gen …`): stdout,
//! stderr and exit codes.
//!
//! Commands other than `demo`, `bench` and `gen` (`keys cek …` on a demo's database) run the
//! `cloister` binary next to `cloister-demo` in the target directory: `cargo build -p
//! cloister-cli` first (`scripts/test.sh` does, and `cargo test --workspace` builds both).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is how a test fails

#[path = "demo/bench.rs"]
mod bench;
#[path = "demo/contoso.rs"]
mod contoso;
#[path = "demo/demos.rs"]
mod demos;
#[path = "demo/generate.rs"]
mod generate;
#[path = "demo/taxi.rs"]
mod taxi;

use cloister_testkit::cli::json_of;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The binary that runs `args`: `cloister-demo` for its own commands, else `cloister` beside it.
fn program(args: &[&str]) -> PathBuf {
    let demo = PathBuf::from(env!("CARGO_BIN_EXE_cloister-demo"));
    if matches!(args.first(), Some(&("demo" | "bench" | "gen"))) {
        return demo;
    }
    let cloister = demo.with_file_name(format!("cloister{}", std::env::consts::EXE_SUFFIX));
    assert!(
        cloister.is_file(),
        "{} is missing: `cargo build -p cloister-cli` first",
        cloister.display()
    );
    cloister
}

fn cloister(args: &[&str], dir: &Path) -> Output {
    cloister_testkit::cli::run(&program(args), dir, args, &[])
}

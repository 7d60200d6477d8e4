//! `cloister demo|bench|gen …`: run the sibling `cloister-demo` binary.
//!
//! The demos, benchmarks and data generator live in `cloister-demo` (crate `crates/demo`), not
//! in this executable: this executable is the measured workload whose hash a policy pins, and
//! editing a demo must not change it (`docs/threat-model.md`). The commands stay where the docs
//! say they are by handing the command line over unchanged: `cloister-demo` is looked up next
//! to this executable, then on `PATH`.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

/// The commands `cloister-demo` runs.
const COMMANDS: [&str; 3] = ["demo", "bench", "gen"];
/// The binary's file name.
const DEMO_BIN: &str = "cloister-demo";

/// What clap keeps of a forwarded command (only for `cloister --help`; [`demo_command`] hands
/// the command line over before clap parses it).
#[derive(clap::Args)]
pub struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    args: Vec<OsString>,
}

/// Run `cloister-demo` when the command (the first argument that is not a flag) is one of its
/// own; `None` for every other command. The global flags (`-q`, `-v`) take no value, so the
/// first argument without a leading `-` is the command.
pub fn demo_command() -> Option<ExitCode> {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let command = args
        .iter()
        .find(|a| !a.to_string_lossy().starts_with('-'))?;
    if !COMMANDS.iter().any(|c| command == *c) {
        return None;
    }
    Some(exec(args))
}

/// Run `cloister-demo` with this process's arguments (a fallback for [`demo_command`]).
pub fn run() -> ExitCode {
    exec(std::env::args_os().skip(1).collect())
}

fn exec(args: Vec<OsString>) -> ExitCode {
    let Some(program) = find() else {
        eprintln!(
            "cloister: `cloister {}` runs the {DEMO_BIN} binary, which is neither next to this \
             executable nor on PATH: build it with `cargo build -p cloister-demo` (or install it \
             with `cargo install --path crates/demo`)",
            args.first()
                .map(|a| a.to_string_lossy())
                .unwrap_or_default()
        );
        return ExitCode::from(crate::EXIT_ERROR);
    };
    let mut command = std::process::Command::new(&program);
    command.args(&args);
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        // Usage lines and errors then say `cloister …`, as the command was typed.
        let err = command.arg0("cloister").exec();
        eprintln!("cloister: cannot run {}: {err}", program.display());
        ExitCode::from(crate::EXIT_ERROR)
    }
    #[cfg(not(unix))]
    match command.status() {
        Ok(status) => match status.code() {
            Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(crate::EXIT_ERROR)),
            None => ExitCode::from(crate::EXIT_ERROR),
        },
        Err(err) => {
            eprintln!("cloister: cannot run {}: {err}", program.display());
            ExitCode::from(crate::EXIT_ERROR)
        }
    }
}

/// `cloister-demo` next to this executable, else the first on `PATH`.
fn find() -> Option<PathBuf> {
    let name = format!("{DEMO_BIN}{}", std::env::consts::EXE_SUFFIX);
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(&name)))
        .filter(|p| p.is_file());
    sibling.or_else(|| {
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join(&name))
            .find(|p| p.is_file())
    })
}

//! A private PostgreSQL cluster for tests, in a temp dir, on loopback, started by the test and
//! stopped when it ends (pass or fail). Shared by the sqldb and CLI integration tests.
//!
//! The server comes from `/usr/lib/postgresql/<version>/bin`. Without it the test is skipped
//! with the reason printed, except under `CI=true`, where a missing server is a failure (as
//! root, CI first tries `apt-get install -y postgresql`). PostgreSQL refuses to run as root, so
//! as root the cluster belongs to the `postgres` user (`runuser -u postgres --`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::services::ci;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn server_bin() -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, bin)| bin)
}

fn apt_install_postgresql() {
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        let _ = Command::new("apt-get").arg("update").status();
        install();
    }
}

fn run(mut command: Command, what: &str) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// A private PostgreSQL cluster; dropping it stops the server.
pub struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    /// The loopback port the server listens on.
    pub port: u16,
    as_postgres: bool,
    // Last: removed after the server has stopped.
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Start a cluster, or `None` (reason printed) when PostgreSQL is not installed and this
    /// is not CI.
    pub fn start() -> Option<Self> {
        let root = is_root();
        let bin = match server_bin() {
            Some(bin) => bin,
            None if ci() && root => {
                apt_install_postgresql();
                server_bin().unwrap_or_else(|| {
                    panic!("CI=true: `apt-get install -y postgresql` gave no initdb")
                })
            }
            None => {
                let reason = "PostgreSQL server not found (/usr/lib/postgresql/*/bin/initdb); \
                              install the Debian package `postgresql`";
                assert!(!ci(), "CI=true: {reason}");
                eprintln!("skipped: {reason}");
                return None;
            }
        };
        let dir = tempfile::Builder::new()
            .prefix("cloister-pg-")
            .tempdir()
            .unwrap();
        if root {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:"]).arg(dir.path());
                    c
                },
                "chown the cluster directory",
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            bin,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            port,
            as_postgres: root,
            dir,
        };
        let mut initdb = cluster.tool("initdb");
        initdb.arg("-D").arg(&cluster.data).args([
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ]);
        run(initdb, "initdb");
        // From here on, Drop stops the server whatever happens.
        let mut start = cluster.tool("pg_ctl");
        start
            .arg("-D")
            .arg(&cluster.data)
            .arg("-l")
            .arg(&cluster.log)
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c log_statement=all",
                cluster.dir.path().display()
            ))
            .arg("start");
        run(start, "pg_ctl start");
        Some(cluster)
    }

    fn tool(&self, name: &str) -> Command {
        if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(name));
            c
        } else {
            Command::new(self.bin.join(name))
        }
    }

    /// `dbname` as a libpq connection string (the CLI's `--postgres`).
    pub fn conninfo(&self, dbname: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname={dbname}",
            self.port
        )
    }

    /// `pg_dump` of `dbname`, plain SQL.
    pub fn dump(&self, dbname: &str) -> Vec<u8> {
        let mut dump = Command::new(self.bin.join("pg_dump"));
        dump.args(["-h", "127.0.0.1", "-U", "postgres", "-d", dbname, "-p"])
            .arg(self.port.to_string());
        run(dump, "pg_dump").stdout
    }

    /// The server's log (every statement: `log_statement=all`).
    pub fn server_log(&self) -> Vec<u8> {
        std::fs::read(&self.log).unwrap_or_default()
    }

    fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut stop = self.tool("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match stop.status() {
            Ok(s) if s.success() => {}
            other => eprintln!("pg_ctl stop: {other:?}"),
        }
    }
}

//! PostgreSQL connection info from a `--postgres` flag (`cloister keys cek`, `cloister demo
//! contoso`): `host=H port=P user=U dbname=D`, never a password.

use anyhow::{Context as _, bail};
use cloister_sqldb::PostgresConfig;

/// `host=H port=P user=U dbname=D`.
pub fn parse_conninfo(conninfo: &str) -> anyhow::Result<PostgresConfig> {
    let (mut host, mut port, mut user, mut dbname) = (None, 5432u16, None, None);
    for part in conninfo.split_whitespace() {
        let Some((k, v)) = part.split_once('=') else {
            bail!("--postgres: `{part}` is not key=value");
        };
        match k {
            "host" => host = Some(v.to_owned()),
            "port" => port = v.parse().context("--postgres: port is not a number")?,
            "user" => user = Some(v.to_owned()),
            "dbname" => dbname = Some(v.to_owned()),
            "password" => bail!("--postgres: no passwords on the command line"),
            other => bail!("--postgres: unknown key `{other}` (host, port, user, dbname)"),
        }
    }
    Ok(PostgresConfig::new(
        host.unwrap_or_else(|| "127.0.0.1".into()),
        port,
        user.unwrap_or_else(|| "postgres".into()),
        dbname.unwrap_or_else(|| "postgres".into()),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn conninfo_parses_and_refuses_passwords() {
        let c = parse_conninfo("host=127.0.0.1 port=6543 user=u dbname=d").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.user.as_str(), c.dbname.as_str()),
            ("127.0.0.1", 6543, "u", "d")
        );
        assert!(parse_conninfo("password=x").is_err());
        assert!(parse_conninfo("hostx").is_err());
    }
}

//! PostgreSQL: the same scenarios against a real server, a private cluster on loopback
//! ([`cloister_testkit::pg`]).

use super::{Canary, Db, Failure, contains, hex};
use cloister_sqldb::PostgresConfig;
use cloister_testkit::pg::Cluster;

#[tokio::test]
async fn postgres_source_sink_and_canary() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (admin, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(cluster.port)
        .user("postgres")
        .dbname("postgres")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    admin
        .batch_execute("CREATE DATABASE contosohr")
        .await
        .unwrap();
    drop(admin);

    let db = Db::postgres(PostgresConfig::new(
        "127.0.0.1",
        cluster.port,
        "postgres",
        "contosohr",
    ));
    super::contosohr_statistics(&db).await;
    super::deterministic_pushdown(&db).await;
    super::wrong_cmk(&db).await;
    super::tampered_cell(&db).await;
    super::sink_round_trip(&db).await;
    super::failed_sink_leaves_nothing(&db, Failure::Stream).await;
    super::failed_sink_leaves_nothing(&db, Failure::Value).await;

    // The server itself logged the ciphertext it was asked to compare with.
    let log = cluster.server_log();
    let stored = db.cell("EmployeesDet", "SSN", "EmployeeID", 1).await;
    assert!(
        contains(&log, format!("\\x{}", hex(&stored)).as_bytes()),
        "the server log lacks the ciphertext predicate"
    );
    assert!(contains(&log, b"WHERE \"SSN\" = $1"));

    // Neither the dump nor the statement log holds plaintext SSNs or salaries.
    let canary = Canary::contosohr();
    let dump = cluster.dump("contosohr");
    assert!(
        contains(&dump, b"Abercrombie"),
        "the dump has the plaintext columns"
    );
    let found = canary.find(&dump, true);
    assert!(found.is_empty(), "pg_dump holds plaintext: {found:?}");
    let mut found = canary.find(&log, false);
    for e in super::employees().iter().filter(|e| e.salary >= 1000) {
        if contains(&log, format!("'{}'", e.salary).as_bytes()) {
            found.push(format!("salary {} (parameter)", e.salary));
        }
    }
    assert!(
        found.is_empty(),
        "the server log holds plaintext: {found:?}"
    );
}

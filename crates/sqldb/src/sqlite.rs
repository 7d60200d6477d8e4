//! SQLite through `rusqlite`, on tokio's blocking threads.
//!
//! Column kinds follow SQLite's type-affinity rules on the declared type: `BOOLEAN` is a
//! boolean, `SMALLINT` a 16-bit integer, any other name containing `INT` a 64-bit integer,
//! `CHAR` / `CLOB` / `TEXT` text, `BLOB` (or no type) binary, `REAL` / `FLOA` / `DOUB` a
//! double. Other declared types (`NUMERIC`, `DATE`, …) are refused, naming the column.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql, params_from_iter};

use super::Error;
use super::database::{Conn, DbColumn, Dialect, Kind, ReadAs, RowChunks, StatementLog, Value};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SqliteConn {
    conn: Arc<Mutex<Connection>>,
}

impl SqliteConn {
    pub(crate) async fn open(path: PathBuf, log: Option<StatementLog>) -> Result<Self, Error> {
        let conn = blocking(move || {
            let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI;
            let mut conn = Connection::open_with_flags(&path, flags)
                .map_err(|e| Error::database("opening the SQLite database", e))?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| Error::database("configuring the SQLite connection", e))?;
            if let Some(log) = log {
                conn.trace_v2(
                    rusqlite::trace::TraceEventCodes::SQLITE_TRACE_STMT,
                    Some(move |event: rusqlite::trace::TraceEvent<'_>| {
                        if let rusqlite::trace::TraceEvent::Stmt(stmt, sql) = event {
                            log.push(stmt.expanded_sql().unwrap_or_else(|| sql.to_owned()));
                        }
                    }),
                )
                .map_err(|e| Error::database("installing the statement log", e))?;
            }
            Ok(conn)
        })
        .await?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        blocking(move || f(&*lock(&conn)?)).await
    }
}

fn lock(conn: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, Error> {
    conn.lock().map_err(|_| {
        Error::Internal("a SQLite operation panicked while holding its connection".into())
    })
}

async fn blocking<T, F>(f: F) -> Result<T, Error>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, Error> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("a SQLite task failed: {e}")))?
}

#[async_trait]
impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        let sql = sql.to_owned();
        self.with(move |conn| {
            conn.execute_batch(&sql)
                .map_err(|e| Error::database("running a statement", e))
        })
        .await
    }

    async fn execute(&mut self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, Error> {
        let sql = sql.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&sql)
                .map_err(|e| Error::database("preparing a statement", e))?;
            let mut changed = 0u64;
            for row in &rows {
                let n = stmt
                    .execute(params_from_iter(row.iter()))
                    .map_err(|e| Error::database("executing a statement", e))?;
                changed += n as u64;
            }
            Ok(changed)
        })
        .await
    }

    async fn query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        columns: Arc<[ReadAs]>,
    ) -> Result<Vec<Vec<Value>>, Error> {
        let sql = sql.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare(&sql)
                .map_err(|e| Error::database("preparing a query", e))?;
            let mut rows = stmt
                .query(params_from_iter(params.iter()))
                .map_err(|e| Error::database("running a query", e))?;
            let mut out = Vec::new();
            while let Some(row) = rows
                .next()
                .map_err(|e| Error::database("reading a row", e))?
            {
                out.push(read_row(row, &columns)?);
            }
            Ok(out)
        })
        .await
    }

    async fn columns(&mut self, table: &str) -> Result<Option<Vec<DbColumn>>, Error> {
        let table = table.to_owned();
        self.with(move |conn| {
            let mut stmt = conn
                .prepare("SELECT name, type FROM pragma_table_info(?1) ORDER BY cid")
                .map_err(|e| Error::database("reading a table's columns", e))?;
            let columns = stmt
                .query_map([&table], |row| {
                    let name: String = row.get(0)?;
                    let type_name: String = row.get(1)?;
                    Ok(DbColumn {
                        kind: kind_of(&type_name),
                        name,
                        type_name,
                    })
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::database("reading a table's columns", e))?;
            Ok((!columns.is_empty()).then_some(columns))
        })
        .await
    }

    fn rows(
        self: Box<Self>,
        sql: String,
        params: Vec<Value>,
        columns: Arc<[ReadAs]>,
        chunk: usize,
    ) -> RowChunks {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<Vec<Value>>, Error>>(2);
        let conn = Arc::clone(&self.conn);
        // The reader thread stops at the first failed send: the stream was dropped.
        tokio::task::spawn_blocking(move || {
            let run = || -> Result<(), Error> {
                let conn = lock(&conn)?;
                let mut stmt = conn
                    .prepare(&sql)
                    .map_err(|e| Error::database("preparing a query", e))?;
                let mut rows = stmt
                    .query(params_from_iter(params.iter()))
                    .map_err(|e| Error::database("running a query", e))?;
                let mut buffer = Vec::with_capacity(chunk);
                while let Some(row) = rows
                    .next()
                    .map_err(|e| Error::database("reading a row", e))?
                {
                    buffer.push(read_row(row, &columns)?);
                    if buffer.len() >= chunk
                        && tx
                            .blocking_send(Ok(std::mem::replace(
                                &mut buffer,
                                Vec::with_capacity(chunk),
                            )))
                            .is_err()
                    {
                        return Ok(());
                    }
                }
                if !buffer.is_empty() {
                    let _ = tx.blocking_send(Ok(buffer));
                }
                Ok(())
            };
            if let Err(e) = run() {
                let _ = tx.blocking_send(Err(e));
            }
        });
        futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        })
        .boxed()
    }
}

fn kind_of(declared: &str) -> Option<Kind> {
    let t = declared.trim().to_ascii_uppercase();
    Some(match t.as_str() {
        "BOOLEAN" | "BOOL" => Kind::Bool,
        "SMALLINT" => Kind::Int16,
        "" => Kind::Bytes,
        _ if t.contains("INT") => Kind::Int64,
        _ if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") => Kind::Text,
        _ if t.contains("BLOB") => Kind::Bytes,
        _ if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") => Kind::Float64,
        _ => return None,
    })
}

fn read_row(row: &rusqlite::Row<'_>, columns: &[ReadAs]) -> Result<Vec<Value>, Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = row
                .get_ref(i)
                .map_err(|e| Error::database("reading a row", e))?;
            read_value(value, column)
        })
        .collect()
}

fn read_value(value: ValueRef<'_>, column: &ReadAs) -> Result<Value, Error> {
    let unexpected = || Error::UnexpectedValue {
        column: column.name.clone(),
        expected: column.kind.name(),
    };
    Ok(match (column.kind, value) {
        (_, ValueRef::Null) => Value::Null,
        (Kind::Bool, ValueRef::Integer(i)) => Value::Bool(i != 0),
        (Kind::Int16, ValueRef::Integer(i)) => {
            i16::try_from(i).map_err(|_| unexpected())?;
            Value::Int(i)
        }
        (Kind::Int32, ValueRef::Integer(i)) => {
            i32::try_from(i).map_err(|_| unexpected())?;
            Value::Int(i)
        }
        (Kind::Int64, ValueRef::Integer(i)) => Value::Int(i),
        (Kind::Float32 | Kind::Float64, ValueRef::Real(f)) => Value::Float(f),
        // A REAL column stores integral values as integers.
        (Kind::Float32 | Kind::Float64, ValueRef::Integer(i)) => Value::Float(i as f64),
        (Kind::Text, ValueRef::Text(t)) => {
            Value::Text(String::from_utf8(t.to_vec()).map_err(|_| unexpected())?)
        }
        (Kind::Bytes, ValueRef::Blob(b)) => Value::Bytes(b.to_vec()),
        _ => return Err(unexpected()),
    })
}

impl ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            Value::Null => ValueRef::Null,
            Value::Bool(b) => ValueRef::Integer(i64::from(*b)),
            Value::Int(i) | Value::Timestamp(i) => ValueRef::Integer(*i),
            Value::Date(d) => ValueRef::Integer(i64::from(*d)),
            Value::Float(f) => ValueRef::Real(*f),
            Value::Text(s) => ValueRef::Text(s.as_bytes()),
            Value::Bytes(b) => ValueRef::Blob(b),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use rstest::rstest;

    #[rstest]
    #[case::integer("INTEGER", Some(Kind::Int64))]
    #[case::bigint("BIGINT", Some(Kind::Int64))]
    #[case::smallint("smallint", Some(Kind::Int16))]
    #[case::varchar("VARCHAR(50)", Some(Kind::Text))]
    #[case::blob("BLOB", Some(Kind::Bytes))]
    #[case::none("", Some(Kind::Bytes))]
    #[case::double("DOUBLE PRECISION", Some(Kind::Float64))]
    #[case::boolean("BOOLEAN", Some(Kind::Bool))]
    #[case::numeric("NUMERIC(10,2)", None)]
    #[case::date("DATE", None)]
    fn declared_types(#[case] declared: &str, #[case] kind: Option<Kind>) {
        assert_eq!(kind_of(declared), kind);
    }

    #[tokio::test]
    async fn round_trip_and_stream_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let log = StatementLog::new();
        let mut conn = SqliteConn::open(dir.path().join("t.db"), Some(log.clone()))
            .await
            .unwrap();
        conn.batch("CREATE TABLE t (a BIGINT, b TEXT, c BLOB)")
            .await
            .unwrap();
        let rows: Vec<Vec<Value>> = (0..5)
            .map(|i| {
                vec![
                    Value::Int(i),
                    Value::Text(format!("r{i}")),
                    if i == 2 {
                        Value::Null
                    } else {
                        Value::Bytes(vec![i as u8])
                    },
                ]
            })
            .collect();
        assert_eq!(
            conn.execute("INSERT INTO t VALUES (?1, ?2, ?3)", rows.clone())
                .await
                .unwrap(),
            5
        );
        let columns = conn.columns("t").await.unwrap().unwrap();
        assert_eq!(columns.len(), 3);
        assert!(conn.columns("missing").await.unwrap().is_none());

        let read: Arc<[ReadAs]> = vec![
            ReadAs::new("a", Kind::Int64),
            ReadAs::new("b", Kind::Text),
            ReadAs::new("c", Kind::Bytes),
        ]
        .into();
        let chunks: Vec<_> = Box::new(conn)
            .rows("SELECT a, b, c FROM t ORDER BY a".into(), vec![], read, 2)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1]);
        assert_eq!(chunks.concat(), rows);
        assert!(
            log.entries().iter().any(|s| s.contains("x'04'")),
            "{:?}",
            log.entries()
        );
    }

    #[tokio::test]
    async fn wrong_stored_type_names_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = SqliteConn::open(dir.path().join("t.db"), None)
            .await
            .unwrap();
        conn.batch("CREATE TABLE t (a BIGINT); INSERT INTO t VALUES ('text')")
            .await
            .unwrap();
        let err = conn
            .query(
                "SELECT a FROM t",
                vec![],
                vec![ReadAs::new("a", Kind::Int64)].into(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnexpectedValue { column, .. } if column == "a"));
    }
}

//! PostgreSQL through `tokio-postgres`, without TLS.
//!
//! Column kinds: `bool`, `int2` / `int4` / `int8`, `float4` / `float8`, `text` / `varchar` /
//! `bpchar` / `name`, `bytea`, `date` and `timestamp` (without time zone). Other types
//! (`numeric`, `timestamptz`, arrays, …) are refused, naming the column.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{BufMut, BytesMut};
use futures::{StreamExt, TryStreamExt};
use secrecy::ExposeSecret;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, NoTls, Row};

use super::Error;
use super::database::{
    Conn, DbColumn, Dialect, Kind, PostgresConfig, ReadAs, RowChunks, StatementLog, Value,
};

/// Days from 1970-01-01 to PostgreSQL's epoch, 2000-01-01.
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

pub(crate) struct PgConn {
    client: Client,
    connection: tokio::task::JoinHandle<()>,
    log: Option<StatementLog>,
}

impl Drop for PgConn {
    fn drop(&mut self) {
        // Closing the socket ends the session: the server rolls back an open transaction.
        self.connection.abort();
    }
}

impl PgConn {
    pub(crate) async fn connect(
        config: &PostgresConfig,
        log: Option<StatementLog>,
    ) -> Result<Self, Error> {
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host)
            .port(config.port)
            .user(&config.user)
            .dbname(&config.dbname)
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("cloister");
        if let Some(password) = &config.password {
            pg.password(password.expose_secret());
        }
        let (client, connection) = pg
            .connect(NoTls)
            .await
            .map_err(|e| Error::database("connecting to PostgreSQL", e))?;
        let connection = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "PostgreSQL connection ended");
            }
        });
        Ok(Self {
            client,
            connection,
            log,
        })
    }

    fn record(&self, sql: &str, params: &[Value]) {
        if let Some(log) = &self.log {
            log.push(Dialect::Postgres.expand(sql, params));
        }
    }
}

fn as_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|v| v as &(dyn ToSql + Sync)).collect()
}

#[async_trait]
impl Conn for PgConn {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    async fn batch(&mut self, sql: &str) -> Result<(), Error> {
        self.record(sql, &[]);
        self.client
            .batch_execute(sql)
            .await
            .map_err(|e| Error::database("running a statement", e))
    }

    async fn execute(&mut self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, Error> {
        let stmt = self
            .client
            .prepare(sql)
            .await
            .map_err(|e| Error::database("preparing a statement", e))?;
        for row in &rows {
            self.record(sql, row);
        }
        // In flight together, the executions are pipelined on the one connection: no round
        // trip per row. They all run inside the caller's transaction, if any.
        let client = &self.client;
        let changed = futures::future::try_join_all(rows.iter().map(|row| {
            let stmt = &stmt;
            async move { client.execute(stmt, &as_params(row)).await }
        }))
        .await
        .map_err(|e| Error::database("executing a statement", e))?;
        Ok(changed.iter().sum())
    }

    async fn query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        columns: Arc<[ReadAs]>,
    ) -> Result<Vec<Vec<Value>>, Error> {
        self.record(sql, &params);
        let rows = self
            .client
            .query(sql, &as_params(&params))
            .await
            .map_err(|e| Error::database("running a query", e))?;
        rows.iter().map(|row| read_row(row, &columns)).collect()
    }

    async fn columns(&mut self, table: &str) -> Result<Option<Vec<DbColumn>>, Error> {
        let sql = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), t.typname::text \
                   FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                   WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
                   ORDER BY a.attnum";
        let quoted = Dialect::Postgres.quote(table);
        let rows = self
            .client
            .query(sql, &[&quoted])
            .await
            .map_err(|e| Error::database("reading a table's columns", e))?;
        let columns = rows
            .iter()
            .map(|row| {
                let name: String = row.try_get(0)?;
                let type_name: String = row.try_get(1)?;
                let base: String = row.try_get(2)?;
                Ok(DbColumn {
                    name,
                    type_name,
                    kind: kind_of(&base),
                })
            })
            .collect::<Result<Vec<_>, tokio_postgres::Error>>()
            .map_err(|e| Error::database("reading a table's columns", e))?;
        Ok((!columns.is_empty()).then_some(columns))
    }

    fn rows(
        self: Box<Self>,
        sql: String,
        params: Vec<Value>,
        columns: Arc<[ReadAs]>,
        chunk: usize,
    ) -> RowChunks {
        let start = async move {
            let conn = *self;
            conn.record(&sql, &params);
            let stmt = conn
                .client
                .prepare(&sql)
                .await
                .map_err(|e| Error::database("preparing a query", e))?;
            let rows = conn
                .client
                .query_raw(&stmt, params.iter().map(|v| v as &(dyn ToSql + Sync)))
                .await
                .map_err(|e| Error::database("running a query", e))?;
            Ok::<_, Error>(rows.chunks(chunk).map(move |rows| {
                // The connection lives as long as the stream that reads from it.
                let _open = &conn;
                rows.into_iter()
                    .map(|row| {
                        row.map_err(|e| Error::database("reading a row", e))
                            .and_then(|row| read_row(&row, &columns))
                    })
                    .collect::<Result<Vec<_>, _>>()
            }))
        };
        futures::stream::once(start).try_flatten().boxed()
    }
}

fn kind_of(type_name: &str) -> Option<Kind> {
    Some(match type_name {
        "bool" => Kind::Bool,
        "int2" => Kind::Int16,
        "int4" => Kind::Int32,
        "int8" => Kind::Int64,
        "float4" => Kind::Float32,
        "float8" => Kind::Float64,
        "text" | "varchar" | "bpchar" | "name" => Kind::Text,
        "bytea" => Kind::Bytes,
        "date" => Kind::Date,
        "timestamp" => Kind::Timestamp,
        _ => return None,
    })
}

fn read_row(row: &Row, columns: &[ReadAs]) -> Result<Vec<Value>, Error> {
    columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let unexpected = || Error::UnexpectedValue {
                column: column.name.clone(),
                expected: column.kind.name(),
            };
            let value = read_value(row, i, column.kind).map_err(|_| unexpected())?;
            let fits = match (&value, column.kind) {
                (Value::Int(v), Kind::Int16) => i16::try_from(*v).is_ok(),
                (Value::Int(v), Kind::Int32) => i32::try_from(*v).is_ok(),
                _ => true,
            };
            if fits { Ok(value) } else { Err(unexpected()) }
        })
        .collect()
}

fn read_value(row: &Row, i: usize, kind: Kind) -> Result<Value, tokio_postgres::Error> {
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> Value) -> Value {
        v.map_or(Value::Null, f)
    }
    Ok(match kind {
        Kind::Bool => or_null(row.try_get::<_, Option<bool>>(i)?, Value::Bool),
        // Any integer column reads into any integer kind; `read_row` checks the range.
        Kind::Int16 | Kind::Int32 | Kind::Int64 => {
            or_null(row.try_get::<_, Option<PgInt>>(i)?, |v| Value::Int(v.0))
        }
        Kind::Float32 => or_null(row.try_get::<_, Option<f32>>(i)?, |v| {
            Value::Float(v.into())
        }),
        Kind::Float64 => or_null(row.try_get::<_, Option<f64>>(i)?, Value::Float),
        Kind::Text => or_null(row.try_get::<_, Option<String>>(i)?, Value::Text),
        Kind::Bytes => or_null(row.try_get::<_, Option<Vec<u8>>>(i)?, Value::Bytes),
        Kind::Date => or_null(row.try_get::<_, Option<PgDate>>(i)?, |d| Value::Date(d.0)),
        Kind::Timestamp => or_null(row.try_get::<_, Option<PgTimestamp>>(i)?, |t| {
            Value::Timestamp(t.0)
        }),
    })
}

/// An `int2`, `int4` or `int8`.
struct PgInt(i64);

impl<'a> FromSql<'a> for PgInt {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(PgInt(if *ty == Type::INT2 {
            i16::from_sql(ty, raw)?.into()
        } else if *ty == Type::INT4 {
            i32::from_sql(ty, raw)?.into()
        } else {
            i64::from_sql(ty, raw)?
        }))
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT2, Type::INT4, Type::INT8].contains(ty)
    }
}

/// A `date` as days since 1970-01-01.
struct PgDate(i32);

impl<'a> FromSql<'a> for PgDate {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let days = i32::from_be_bytes(raw.try_into()?);
        days.checked_add(PG_EPOCH_DAYS)
            .map(PgDate)
            .ok_or_else(|| "date out of range (infinity?)".into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::DATE
    }
}

/// A `timestamp` as microseconds since 1970-01-01T00:00.
struct PgTimestamp(i64);

impl<'a> FromSql<'a> for PgTimestamp {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        let micros = i64::from_be_bytes(raw.try_into()?);
        micros
            .checked_add(PG_EPOCH_MICROS)
            .map(PgTimestamp)
            .ok_or_else(|| "timestamp out of range (infinity?)".into())
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::TIMESTAMP
    }
}

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        let mismatch = || -> BoxError { format!("cannot send a {self:?} value as {ty}").into() };
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) if *ty == Type::BOOL => b.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) if *ty == Type::INT8 => i.to_sql(ty, out),
            Value::Float(f) if *ty == Type::FLOAT4 => (*f as f32).to_sql(ty, out),
            Value::Float(f) if *ty == Type::FLOAT8 => f.to_sql(ty, out),
            Value::Text(s) if <&str as ToSql>::accepts(ty) => s.as_str().to_sql(ty, out),
            Value::Bytes(b) if *ty == Type::BYTEA => b.as_slice().to_sql(ty, out),
            Value::Date(d) if *ty == Type::DATE => {
                out.put_i32(d.checked_sub(PG_EPOCH_DAYS).ok_or_else(mismatch)?);
                Ok(IsNull::No)
            }
            Value::Timestamp(t) if *ty == Type::TIMESTAMP => {
                out.put_i64(t.checked_sub(PG_EPOCH_MICROS).ok_or_else(mismatch)?);
                Ok(IsNull::No)
            }
            _ => Err(mismatch()),
        }
    }

    fn accepts(_: &Type) -> bool {
        // Checked per value in `to_sql`, which knows the variant.
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_postgres_types() {
        assert_eq!(kind_of("int4"), Some(Kind::Int32));
        assert_eq!(kind_of("bytea"), Some(Kind::Bytes));
        assert_eq!(kind_of("bpchar"), Some(Kind::Text));
        assert_eq!(kind_of("numeric"), None);
        assert_eq!(kind_of("timestamptz"), None);
    }

    #[test]
    fn values_refuse_mismatched_types() {
        let mut out = BytesMut::new();
        assert!(
            Value::Text("x".into())
                .to_sql(&Type::INT4, &mut out)
                .is_err()
        );
        assert!(Value::Int(70_000).to_sql(&Type::INT2, &mut out).is_err());
        assert!(matches!(
            Value::Null.to_sql(&Type::BYTEA, &mut out),
            Ok(IsNull::Yes)
        ));
        Value::Date(0).to_sql(&Type::DATE, &mut out).unwrap();
        assert_eq!(&out[..], &(-PG_EPOCH_DAYS).to_be_bytes());
    }
}

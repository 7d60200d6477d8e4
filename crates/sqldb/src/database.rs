//! Where a SQL database is and how the engine talks to it: the two drivers behind one small
//! connection trait.
//!
//! SQLite runs in process (`rusqlite`, SQLite compiled from the bundled amalgamation);
//! PostgreSQL is a server reached with `tokio-postgres`, without TLS: the engine expects it on
//! loopback or behind a TEE-terminated channel, and since every sensitive column is encrypted
//! before it leaves the TEE, the connection carries only ciphertext for those columns. Each
//! operation opens its own connection, so a transaction never outlives the operation that
//! began it: dropping a connection rolls back whatever it left uncommitted.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use futures::stream::BoxStream;
use secrecy::SecretString;

use super::Error;

/// A SQL database the engine reads encrypted tables from and writes them to.
#[derive(Clone, Debug)]
pub struct SqlDatabase {
    target: Target,
    log: Option<StatementLog>,
}

#[derive(Clone, Debug)]
pub(crate) enum Target {
    Sqlite(PathBuf),
    Postgres(Arc<PostgresConfig>),
}

impl SqlDatabase {
    /// The SQLite database in the file `path` (created by the first write if missing).
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        Self {
            target: Target::Sqlite(path.into()),
            log: None,
        }
    }

    /// A PostgreSQL database.
    pub fn postgres(config: PostgresConfig) -> Self {
        Self {
            target: Target::Postgres(Arc::new(config)),
            log: None,
        }
    }

    /// Record every statement the database executes, with its parameters expanded, in `log`.
    ///
    /// A diagnostic and test aid: parameters of plaintext columns appear in the log as they
    /// are sent, so never enable it where the log could leave the TEE. SQLite reports the
    /// statements itself (`sqlite3_trace_v2`, `sqlite3_expanded_sql`); for PostgreSQL the
    /// client records what it sends.
    pub fn with_statement_log(mut self, log: StatementLog) -> Self {
        self.log = Some(log);
        self
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    /// The SQLite file, if this is SQLite.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match &self.target {
            Target::Sqlite(path) => Some(path),
            Target::Postgres(_) => None,
        }
    }

    pub(crate) async fn connect(&self) -> Result<Box<dyn Conn>, Error> {
        match &self.target {
            Target::Sqlite(path) => Ok(Box::new(
                super::sqlite::SqliteConn::open(path.clone(), self.log.clone()).await?,
            )),
            Target::Postgres(config) => Ok(Box::new(
                super::postgres::PgConn::connect(config, self.log.clone()).await?,
            )),
        }
    }
}

/// How to reach a PostgreSQL server. The password, if any, is a secret: `Debug` omits it.
#[derive(Clone)]
pub struct PostgresConfig {
    /// Host name or IP address (a path for a Unix socket directory).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// User name.
    pub user: String,
    /// Database name.
    pub dbname: String,
    /// Password, for password authentication.
    pub password: Option<SecretString>,
}

impl PostgresConfig {
    /// A server at `host:port`, as `user`, database `dbname`, without a password.
    pub fn new(
        host: impl Into<String>,
        port: u16,
        user: impl Into<String>,
        dbname: impl Into<String>,
    ) -> Self {
        Self {
            host: host.into(),
            port,
            user: user.into(),
            dbname: dbname.into(),
            password: None,
        }
    }

    /// Authenticate with `password`.
    pub fn password(mut self, password: SecretString) -> Self {
        self.password = Some(password);
        self
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("dbname", &self.dbname)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The statements a database executed, parameters expanded; see
/// [`SqlDatabase::with_statement_log`].
#[derive(Clone, Default)]
pub struct StatementLog(Arc<Mutex<Vec<String>>>);

impl StatementLog {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// The statements recorded so far, oldest first.
    pub fn entries(&self) -> Vec<String> {
        self.lock().clone()
    }

    /// Forget the statements recorded so far.
    pub fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn push(&self, statement: String) {
        self.lock().push(statement);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        // Each operation is one push, clear or clone: a panic cannot leave it half done.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for StatementLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StatementLog({} statements)", self.lock().len())
    }
}

/// A value as the drivers exchange it. `Debug` shows the kind only: values of plaintext
/// columns are data.
#[derive(Clone, Default, PartialEq)]
pub(crate) enum Value {
    #[default]
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 1970-01-01.
    Date(i32),
    /// Microseconds since 1970-01-01T00:00 (no time zone).
    Timestamp(i64),
}

impl Value {
    fn kind_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytes",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
        }
    }

    /// The value as a SQL literal, for statement logs and plan displays.
    pub(crate) fn sql_literal(&self, dialect: Dialect) -> String {
        match self {
            Value::Null => "NULL".into(),
            Value::Bool(b) => if *b { "TRUE" } else { "FALSE" }.into(),
            Value::Int(v) | Value::Timestamp(v) => v.to_string(),
            Value::Date(v) => v.to_string(),
            Value::Float(v) => v.to_string(),
            Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
            Value::Bytes(b) => match dialect {
                Dialect::Sqlite => format!("x'{}'", hex(b)),
                Dialect::Postgres => format!("'\\x{}'", hex(b)),
            },
        }
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            other => write!(f, "{}(..)", other.kind_name()),
        }
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            // Writing to a String cannot fail.
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// How a column is stored in the database and read into Arrow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    Bytes,
    Date,
    Timestamp,
}

impl Kind {
    pub(crate) fn arrow_type(self) -> DataType {
        match self {
            Kind::Bool => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Bytes => DataType::Binary,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
        }
    }

    /// The kind a plaintext Arrow column is stored as, if it can be.
    pub(crate) fn for_arrow(data_type: &DataType, dialect: Dialect) -> Option<Kind> {
        Some(match data_type {
            DataType::Boolean => Kind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => Kind::Int16,
            DataType::Int32 | DataType::UInt16 => Kind::Int32,
            DataType::Int64 | DataType::UInt32 => Kind::Int64,
            DataType::Float16 | DataType::Float32 => Kind::Float32,
            DataType::Float64 => Kind::Float64,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Kind::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Kind::Bytes,
            // SQLite has no date or time types; store those encrypted, or as text.
            DataType::Date32 | DataType::Date64 if dialect == Dialect::Postgres => Kind::Date,
            DataType::Timestamp(_, None) if dialect == Dialect::Postgres => Kind::Timestamp,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Bool => "a boolean",
            Kind::Int16 => "a 16-bit integer",
            Kind::Int32 => "a 32-bit integer",
            Kind::Int64 => "an integer",
            Kind::Float32 | Kind::Float64 => "a floating-point number",
            Kind::Text => "text",
            Kind::Bytes => "binary",
            Kind::Date => "a date",
            Kind::Timestamp => "a timestamp",
        }
    }
}

/// The SQL spellings that differ between the two databases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `n`-th (1-based) parameter placeholder.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("?{n}"),
            Dialect::Postgres => format!("${n}"),
        }
    }

    /// `ident` as a quoted identifier (the same in both: double quotes, doubled inside).
    pub(crate) fn quote(self, ident: &str) -> String {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }

    /// The column type declared for `kind`.
    pub(crate) fn type_name(self, kind: Kind) -> &'static str {
        match (self, kind) {
            (_, Kind::Bool) => "BOOLEAN",
            (_, Kind::Int16) => "SMALLINT",
            (_, Kind::Int32) => "INTEGER",
            (_, Kind::Int64) => "BIGINT",
            (_, Kind::Float32) => "REAL",
            (_, Kind::Float64) => "DOUBLE PRECISION",
            (_, Kind::Text) => "TEXT",
            (Dialect::Sqlite, Kind::Bytes) => "BLOB",
            (Dialect::Postgres, Kind::Bytes) => "BYTEA",
            (_, Kind::Date) => "DATE",
            (_, Kind::Timestamp) => "TIMESTAMP",
        }
    }

    /// The statement that opens a write transaction.
    pub(crate) fn begin(self) -> &'static str {
        match self {
            // Take the write lock now, not at the first write: no deadlock between two writers.
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// `sql` with its placeholders replaced by `params` as literals.
    pub(crate) fn expand(self, sql: &str, params: &[Value]) -> String {
        let marker = match self {
            Dialect::Sqlite => '?',
            Dialect::Postgres => '$',
        };
        // One pass, so that neither `$1` inside `$10` nor a placeholder-like text inside an
        // expanded literal is replaced.
        let mut out = String::with_capacity(sql.len());
        let mut chars = sql.chars().peekable();
        while let Some(c) = chars.next() {
            if c != marker {
                out.push(c);
                continue;
            }
            let mut digits = String::new();
            while let Some(d) = chars.next_if(char::is_ascii_digit) {
                digits.push(d);
            }
            let value = digits
                .parse::<usize>()
                .ok()
                .and_then(|n| n.checked_sub(1))
                .and_then(|i| params.get(i));
            match value {
                Some(value) => out.push_str(&value.sql_literal(self)),
                None => {
                    out.push(c);
                    out.push_str(&digits);
                }
            }
        }
        out
    }
}

/// A column of a database table.
#[derive(Clone, Debug)]
pub(crate) struct DbColumn {
    pub(crate) name: String,
    /// The database's name of its type.
    pub(crate) type_name: String,
    /// How it is read, or `None` if it cannot be.
    pub(crate) kind: Option<Kind>,
}

/// A column of a query result: its name (for errors) and how to read it.
#[derive(Clone, Debug)]
pub(crate) struct ReadAs {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

impl ReadAs {
    pub(crate) fn new(name: impl Into<String>, kind: Kind) -> Self {
        Self {
            name: name.into(),
            kind,
        }
    }
}

/// Chunks of rows of a query.
pub(crate) type RowChunks = BoxStream<'static, Result<Vec<Vec<Value>>, Error>>;

/// One open connection.
#[async_trait]
pub(crate) trait Conn: Send {
    fn dialect(&self) -> Dialect;

    /// Run statements without parameters or results (DDL, `BEGIN`, `COMMIT`).
    async fn batch(&mut self, sql: &str) -> Result<(), Error>;

    /// Run one statement once per parameter row; the number of rows changed.
    async fn execute(&mut self, sql: &str, rows: Vec<Vec<Value>>) -> Result<u64, Error>;

    /// Run a query and read all its rows.
    async fn query(
        &mut self,
        sql: &str,
        params: Vec<Value>,
        columns: Arc<[ReadAs]>,
    ) -> Result<Vec<Vec<Value>>, Error>;

    /// The columns of `table` in order, or `None` if there is no such table.
    async fn columns(&mut self, table: &str) -> Result<Option<Vec<DbColumn>>, Error>;

    /// Run a query and stream its rows in chunks of up to `chunk` rows, keeping the
    /// connection open until the stream ends or is dropped.
    fn rows(
        self: Box<Self>,
        sql: String,
        params: Vec<Value>,
        columns: Arc<[ReadAs]>,
        chunk: usize,
    ) -> RowChunks;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_high_placeholders_first() {
        let params: Vec<Value> = (1..=10).map(Value::Int).collect();
        let sql = "SELECT $1, $10";
        assert_eq!(Dialect::Postgres.expand(sql, &params), "SELECT 1, 10");
        let params = vec![
            Value::Bytes(vec![1, 0xab]),
            Value::Text("O'Brien ?1".into()),
        ];
        assert_eq!(
            Dialect::Sqlite.expand("?1 ?2 ?3", &params),
            "x'01ab' 'O''Brien ?1' ?3"
        );
    }

    #[test]
    fn debug_hides_values_and_passwords() {
        let shown = format!("{:?}", Value::Text("795-73-9838".into()));
        assert!(!shown.contains("795"), "{shown}");
        let config = PostgresConfig::new("127.0.0.1", 5432, "u", "db")
            .password(SecretString::from("hunter2"));
        let shown = format!("{config:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("redacted"),
            "{shown}"
        );
    }
}

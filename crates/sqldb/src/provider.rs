//! Reading: a DataFusion `TableProvider` over a database table with Always Encrypted columns.
//!
//! [`EncryptedSqlTable::open`] reads the table's columns and its key metadata, unwraps every
//! CEK it needs with CMKs from a [`ColumnMasterKeyProvider`], and fails there — not at the
//! first query — if a key is missing or wrong. Scans run one SQL query ([`SqlScanExec`]) and
//! decrypt the cells into Arrow arrays of the plaintext types.
//!
//! # Filter pushdown
//!
//! | filter | sent to the database | reported |
//! | --- | --- | --- |
//! | `det_col = literal`, `det_col IN (literals)` on a deterministic column | `det_col = <cell>` / `IN (<cells>)`: the literal encrypted deterministically under the column's CEK | `Exact` (see below) |
//! | `col IS [NOT] NULL` on any column | the same (NULL is never encrypted) | `Exact` |
//! | `col = literal`, `col <> literal`, `IN (…)` on a plaintext column; `<`, `<=`, `>`, `>=` on a plaintext integer, date or timestamp column | the same | `Inexact` (the engine checks again: database comparison rules may differ) |
//! | anything else on an encrypted column (ranges, `LIKE`, functions), any filter on a randomized column | nothing | `Unsupported` (evaluated in the engine, after decryption) |
//!
//! Ciphertext equality is plaintext equality only where the serialisation is canonical.
//! `char(n)` / `nchar(n)` values may be stored with or without their trailing spaces but read
//! padded, so a literal of exactly `n` characters becomes one cell per padding
//! (`IN (…)`). Other literal lengths, `binary(n)`, and the time types (whose serialisation
//! truncates to the column's scale, or which read back at another precision) are not pushed
//! down. A float literal `0` matches both signed zeros and is reported `Inexact`.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use cloister_colenc::{CellCipher, EncryptionType, SqlType, SqlValue};
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, RecordBatch, RecordBatchOptions, StringArray,
    TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{
    BinaryExpr, Expr, Operator, TableProviderFilterPushDown, TableType,
};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricBuilder, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning,
    PlanProperties, ReplaceChildrenOptions,
};
use futures::{StreamExt, TryStreamExt};

use super::Error;
use super::database::{Dialect, Kind, ReadAs, SqlDatabase, Value};
use super::keys::ColumnMasterKeyProvider;
use super::metadata::{self, EncryptedColumn};
use super::types::{array_to_values, arrow_type, values_to_array};

/// At most this many paddings of a `char(n)` literal are sent as cells.
const MAX_PAD_VARIANTS: usize = 16;

/// A database table whose Always Encrypted columns are decrypted as it is read.
pub struct EncryptedSqlTable {
    db: SqlDatabase,
    table: String,
    dialect: Dialect,
    schema: SchemaRef,
    columns: Vec<TableColumn>,
}

/// A column of the table: how it is stored, and its key if it is encrypted.
#[derive(Clone)]
pub(crate) struct TableColumn {
    name: String,
    kind: Kind,
    crypto: Option<Arc<ColumnCrypto>>,
}

pub(crate) struct ColumnCrypto {
    metadata: EncryptedColumn,
    cipher: Arc<CellCipher>,
}

impl fmt::Debug for TableColumn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("TableColumn");
        s.field("name", &self.name).field("kind", &self.kind);
        if let Some(crypto) = &self.crypto {
            // The cipher's keys stay out; its Debug is redacted anyway.
            s.field("cek", &crypto.metadata.cek_name)
                .field("encryption", &crypto.metadata.encryption_type)
                .field("plaintext_type", &crypto.metadata.plaintext_type);
        }
        s.finish()
    }
}

impl fmt::Debug for EncryptedSqlTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedSqlTable")
            .field("db", &self.db.kind())
            .field("table", &self.table)
            .field("columns", &self.columns)
            .finish()
    }
}

impl EncryptedSqlTable {
    /// Open `table` in `db`: read its columns and key metadata and unwrap its CEKs with CMKs
    /// from `keys`.
    ///
    /// Errors: [`Error::NoSuchTable`]; [`Error::UnknownCek`] / [`Error::NoColumnMasterKey`] when
    /// a key is missing; [`Error::CekUnwrap`] / [`Error::CmkMetadata`] for a wrong CMK or
    /// tampered key metadata; [`Error::UnsupportedColumnType`] for a plaintext column of a type
    /// with no Arrow mapping here.
    #[tracing::instrument(skip_all, fields(db = db.kind(), table = %table))]
    pub async fn open(
        db: SqlDatabase,
        table: &str,
        keys: &dyn ColumnMasterKeyProvider,
    ) -> Result<Self, Error> {
        let mut conn = db.connect().await?;
        let dialect = conn.dialect();
        let db_columns = conn
            .columns(table)
            .await?
            .ok_or_else(|| Error::NoSuchTable {
                table: table.to_owned(),
            })?;
        let encrypted = if metadata::present(&mut *conn).await? {
            metadata::encrypted_columns(&mut *conn, table).await?
        } else {
            Vec::new()
        };

        let mut ciphers: std::collections::HashMap<String, Arc<CellCipher>> = Default::default();
        for column in &encrypted {
            if ciphers.contains_key(&column.cek_name) {
                continue;
            }
            let cek = metadata::resolve_cek(&mut *conn, &column.cek_name, keys)
                .await?
                .ok_or_else(|| Error::UnknownCek {
                    cek: column.cek_name.clone(),
                })?;
            ciphers.insert(column.cek_name.clone(), Arc::new(CellCipher::new(&cek)));
        }
        for column in &encrypted {
            if !db_columns.iter().any(|c| c.name == column.column_name) {
                return Err(Error::metadata(
                    format!("{table}.{}", column.column_name),
                    "the metadata names a column the table does not have",
                ));
            }
        }

        let mut columns = Vec::with_capacity(db_columns.len());
        let mut fields = Vec::with_capacity(db_columns.len());
        for db_column in db_columns {
            let meta = encrypted
                .iter()
                .find(|c| c.column_name == db_column.name)
                .cloned();
            let kind = db_column.kind.ok_or_else(|| Error::UnsupportedColumnType {
                table: table.to_owned(),
                column: db_column.name.clone(),
                type_name: db_column.type_name.clone(),
            })?;
            let crypto = match meta {
                Some(metadata) => {
                    if kind != Kind::Bytes {
                        return Err(Error::metadata(
                            format!("{table}.{}", db_column.name),
                            format!(
                                "an encrypted column must be binary, is {}",
                                db_column.type_name
                            ),
                        ));
                    }
                    let cipher = ciphers
                        .get(&metadata.cek_name)
                        .cloned()
                        .ok_or_else(|| Error::Internal("every CEK was resolved above".into()))?;
                    Some(Arc::new(ColumnCrypto { metadata, cipher }))
                }
                None => None,
            };
            let data_type = match &crypto {
                Some(c) => arrow_type(&c.metadata.plaintext_type),
                None => kind.arrow_type(),
            };
            fields.push(Field::new(&db_column.name, data_type, true));
            columns.push(TableColumn {
                name: db_column.name,
                kind,
                crypto,
            });
        }
        tracing::debug!(
            columns = columns.len(),
            encrypted = encrypted.len(),
            "opened encrypted SQL table"
        );
        Ok(Self {
            db,
            table: table.to_owned(),
            dialect,
            schema: Arc::new(Schema::new(fields)),
            columns,
        })
    }

    /// The table's encrypted columns, as its metadata describes them.
    pub fn encrypted_columns(&self) -> Vec<&EncryptedColumn> {
        self.columns
            .iter()
            .filter_map(|c| c.crypto.as_ref().map(|c| &c.metadata))
            .collect()
    }

    fn column(&self, expr: &Expr) -> Option<&TableColumn> {
        match expr {
            Expr::Column(c) => self.columns.iter().find(|t| t.name == c.name),
            _ => None,
        }
    }

    /// The SQL condition for `filter`, if it can be sent to the database.
    fn translate(&self, filter: &Expr) -> Option<Condition> {
        let quoted = |c: &TableColumn| self.dialect.quote(&c.name);
        match filter {
            // DataFusion rewrites short IN lists to ORs; AND appears inside them.
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: op @ (Operator::Or | Operator::And),
                right,
            }) => {
                let (left, right) = (self.translate(left)?, self.translate(right)?);
                let mut pieces = vec![Piece::Sql("(".into())];
                pieces.extend(left.pieces);
                pieces.push(Piece::Sql(format!(" {op} ")));
                pieces.extend(right.pieces);
                pieces.push(Piece::Sql(")".into()));
                Some(Condition {
                    pieces,
                    exact: left.exact && right.exact,
                })
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (column, op, literal) = match (self.column(left), literal(right)) {
                    (Some(column), Some(literal)) => (column, *op, literal),
                    _ => (self.column(right)?, op.swap()?, literal(left)?),
                };
                if literal.is_null() {
                    return None;
                }
                match &column.crypto {
                    Some(crypto) if op == Operator::Eq => {
                        let (cells, exact) = equality_cells(crypto, literal)?;
                        Some(Condition::one_of(quoted(column), cells, exact))
                    }
                    Some(_) => None,
                    None => {
                        let value = plain_literal(column.kind, literal)?;
                        let ordered = matches!(
                            column.kind,
                            Kind::Int16 | Kind::Int32 | Kind::Int64 | Kind::Date | Kind::Timestamp
                        );
                        let sql_op = match op {
                            Operator::Eq => "=",
                            Operator::NotEq => "<>",
                            Operator::Lt if ordered => "<",
                            Operator::LtEq if ordered => "<=",
                            Operator::Gt if ordered => ">",
                            Operator::GtEq if ordered => ">=",
                            _ => return None,
                        };
                        Some(Condition {
                            pieces: vec![
                                Piece::Sql(format!("{} {sql_op} ", quoted(column))),
                                Piece::Param(value),
                            ],
                            exact: false,
                        })
                    }
                }
            }
            Expr::InList(InList {
                expr,
                list,
                negated: false,
            }) => {
                let column = self.column(expr)?;
                let literals = list.iter().map(literal).collect::<Option<Vec<_>>>()?;
                if literals.is_empty() || literals.iter().any(|l| l.is_null()) {
                    return None;
                }
                match &column.crypto {
                    Some(crypto) => {
                        let mut all = Vec::new();
                        let mut all_exact = true;
                        for literal in literals {
                            let (cells, exact) = equality_cells(crypto, literal)?;
                            all.extend(cells);
                            all_exact &= exact;
                        }
                        Some(Condition::one_of(quoted(column), all, all_exact))
                    }
                    None => {
                        let values = literals
                            .into_iter()
                            .map(|l| plain_literal(column.kind, l))
                            .collect::<Option<Vec<_>>>()?;
                        let mut condition = Condition::one_of(quoted(column), values, false);
                        condition.exact = false;
                        Some(condition)
                    }
                }
            }
            Expr::IsNull(inner) => Some(Condition::sql(
                format!("{} IS NULL", quoted(self.column(inner)?)),
                true,
            )),
            Expr::IsNotNull(inner) => Some(Condition::sql(
                format!("{} IS NOT NULL", quoted(self.column(inner)?)),
                true,
            )),
            _ => None,
        }
    }
}

fn literal(expr: &Expr) -> Option<&ScalarValue> {
    match expr {
        Expr::Literal(value, _) => Some(value),
        _ => None,
    }
}

/// A literal for a comparison with a plaintext column, if its type fits the column's exactly.
fn plain_literal(kind: Kind, literal: &ScalarValue) -> Option<Value> {
    use ScalarValue as S;
    Some(match (kind, literal) {
        (Kind::Bool, S::Boolean(Some(b))) => Value::Bool(*b),
        (Kind::Int16 | Kind::Int32 | Kind::Int64, _) => {
            let v: i64 = match literal {
                S::Int8(Some(v)) => (*v).into(),
                S::Int16(Some(v)) => (*v).into(),
                S::Int32(Some(v)) => (*v).into(),
                S::Int64(Some(v)) => *v,
                S::UInt8(Some(v)) => (*v).into(),
                S::UInt16(Some(v)) => (*v).into(),
                S::UInt32(Some(v)) => (*v).into(),
                S::UInt64(Some(v)) => i64::try_from(*v).ok()?,
                _ => return None,
            };
            Value::Int(v)
        }
        (Kind::Text, S::Utf8(Some(s)) | S::LargeUtf8(Some(s)) | S::Utf8View(Some(s))) => {
            Value::Text(s.clone())
        }
        (Kind::Date, S::Date32(Some(d))) => Value::Date(*d),
        (Kind::Timestamp, S::TimestampMicrosecond(Some(t), None)) => Value::Timestamp(*t),
        _ => return None,
    })
}

/// The cells whose plaintext equals `literal` in the engine's semantics, and whether the set
/// is exact; `None` if equality cannot be decided on ciphertext.
fn equality_cells(crypto: &ColumnCrypto, literal: &ScalarValue) -> Option<(Vec<Value>, bool)> {
    if crypto.metadata.encryption_type != EncryptionType::Deterministic {
        return None;
    }
    let ty = &crypto.metadata.plaintext_type;
    let array = literal.to_array_of_size(1).ok()?;
    let value = array_to_values(ty, &array, &crypto.metadata.column_name)
        .ok()?
        .into_iter()
        .next()??;
    let (variants, exact) = match (ty, &value) {
        (SqlType::Char { len, .. }, SqlValue::String(s)) => {
            (pad_variants(s, usize::from(*len), str::len)?, true)
        }
        (SqlType::NChar { len }, SqlValue::String(s)) => (
            pad_variants(s, usize::from(*len), |s| s.encode_utf16().count())?,
            true,
        ),
        (SqlType::Real, SqlValue::Real(f)) if *f == 0.0 => {
            (vec![SqlValue::Real(0.0), SqlValue::Real(-0.0)], false)
        }
        (SqlType::Float, SqlValue::Float(f)) if *f == 0.0 => {
            (vec![SqlValue::Float(0.0), SqlValue::Float(-0.0)], false)
        }
        (
            SqlType::Binary { .. }
            | SqlType::Time { .. }
            | SqlType::DateTime2 { .. }
            | SqlType::DateTimeOffset { .. }
            | SqlType::DateTime
            | SqlType::SmallDateTime,
            _,
        ) => return None,
        _ => (vec![value], true),
    };
    let cells = variants
        .iter()
        .map(|v| {
            crypto
                .cipher
                .encrypt_value(v, ty, EncryptionType::Deterministic)
                .ok()
                .map(Value::Bytes)
        })
        .collect::<Option<Vec<_>>>()?;
    Some((cells, exact))
}

/// `s` with 0..=k of its trailing spaces, where `s` fills the fixed length `len` and k is the
/// number of trailing spaces: every stored value that reads back as `s`.
fn pad_variants(s: &str, len: usize, units: impl Fn(&str) -> usize) -> Option<Vec<SqlValue>> {
    if units(s) != len {
        return None;
    }
    let trimmed = s.trim_end_matches(' ');
    let missing = len.checked_sub(units(trimmed))?;
    if missing >= MAX_PAD_VARIANTS {
        return None;
    }
    Some(
        (0..=missing)
            .map(|n| SqlValue::String(format!("{trimmed}{}", " ".repeat(n))))
            .collect(),
    )
}

/// A condition of the `WHERE` clause, with its parameters in place.
struct Condition {
    pieces: Vec<Piece>,
    exact: bool,
}

enum Piece {
    Sql(String),
    Param(Value),
}

impl Condition {
    fn sql(sql: String, exact: bool) -> Self {
        Self {
            pieces: vec![Piece::Sql(sql)],
            exact,
        }
    }

    /// `column = v` for one value, `column IN (v, …)` for more.
    fn one_of(column: String, values: Vec<Value>, exact: bool) -> Self {
        let mut pieces = Vec::with_capacity(values.len() * 2 + 1);
        if values.len() == 1 {
            pieces.push(Piece::Sql(format!("{column} = ")));
            pieces.extend(values.into_iter().map(Piece::Param));
        } else {
            pieces.push(Piece::Sql(format!("{column} IN (")));
            for (i, value) in values.into_iter().enumerate() {
                if i > 0 {
                    pieces.push(Piece::Sql(", ".into()));
                }
                pieces.push(Piece::Param(value));
            }
            pieces.push(Piece::Sql(")".into()));
        }
        Self { pieces, exact }
    }
}

#[async_trait]
impl TableProvider for EncryptedSqlTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| match self.translate(f) {
                Some(Condition { exact: true, .. }) => TableProviderFilterPushDown::Exact,
                Some(_) => TableProviderFilterPushDown::Inexact,
                None => TableProviderFilterPushDown::Unsupported,
            })
            .collect())
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let columns = indices
            .iter()
            .map(|&i| {
                self.columns.get(i).cloned().ok_or_else(|| {
                    DataFusionError::Internal(format!("projection index {i} out of range"))
                })
            })
            .collect::<DfResult<Vec<_>>>()?;
        let schema = Arc::new(self.schema.project(&indices)?);

        let mut sql = String::from("SELECT ");
        if columns.is_empty() {
            sql.push('1');
        } else {
            let names: Vec<String> = columns
                .iter()
                .map(|c| self.dialect.quote(&c.name))
                .collect();
            sql.push_str(&names.join(", "));
        }
        sql.push_str(" FROM ");
        sql.push_str(&self.dialect.quote(&self.table));

        let mut params = Vec::new();
        let mut all_exact = true;
        for (i, filter) in filters.iter().enumerate() {
            // Only filters reported Exact or Inexact arrive here, and translation is
            // deterministic: a miss is a bug, and skipping an Exact filter would be wrong.
            let condition = self.translate(filter).ok_or_else(|| {
                DataFusionError::Internal(format!("filter {filter} was not pushed down"))
            })?;
            all_exact &= condition.exact;
            sql.push_str(if i == 0 { " WHERE " } else { " AND " });
            for piece in condition.pieces {
                match piece {
                    Piece::Sql(s) => sql.push_str(&s),
                    Piece::Param(v) => {
                        params.push(v);
                        sql.push_str(&self.dialect.placeholder(params.len()));
                    }
                }
            }
        }
        if let (Some(limit), true) = (limit, all_exact) {
            sql.push_str(&format!(" LIMIT {limit}"));
        }

        Ok(Arc::new(SqlScanExec::new(
            self.db.clone(),
            self.table.clone(),
            self.dialect,
            sql,
            params,
            columns,
            schema,
        )))
    }
}

/// The scan of an [`EncryptedSqlTable`]: one SQL query, its rows decrypted into batches.
///
/// Its display shows the SQL with parameters expanded — for a pushed-down equality on a
/// deterministic column, the ciphertext cell the database compares with. Metrics:
/// `rows_fetched` (rows the database returned) and `cells_decrypted`.
pub struct SqlScanExec {
    db: SqlDatabase,
    table: String,
    dialect: Dialect,
    sql: String,
    params: Vec<Value>,
    columns: Vec<TableColumn>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl SqlScanExec {
    fn new(
        db: SqlDatabase,
        table: String,
        dialect: Dialect,
        sql: String,
        params: Vec<Value>,
        columns: Vec<TableColumn>,
        schema: SchemaRef,
    ) -> Self {
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Self {
            db,
            table,
            dialect,
            sql,
            params,
            columns,
            schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    /// The SQL sent to the database, with placeholders.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The SQL with its parameters expanded as literals.
    pub fn expanded_sql(&self) -> String {
        self.dialect.expand(&self.sql, &self.params)
    }
}

impl fmt::Debug for SqlScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlScanExec")
            .field("db", &self.db.kind())
            .field("table", &self.table)
            .field("sql", &self.sql)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for SqlScanExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        match t {
            DisplayFormatType::Default | DisplayFormatType::Verbose => write!(
                f,
                "SqlScanExec: db={}, table={}, sql={}",
                self.db.kind(),
                self.table,
                self.expanded_sql()
            ),
            DisplayFormatType::TreeRender => {
                writeln!(f, "db={}", self.db.kind())?;
                write!(f, "sql={}", self.expanded_sql())
            }
        }
    }
}

impl ExecutionPlan for SqlScanExec {
    fn name(&self) -> &'static str {
        "SqlScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "SqlScanExec has one partition, asked for {partition}"
            )));
        }
        let chunk = context.session_config().batch_size().max(1);
        let read: Arc<[ReadAs]> = if self.columns.is_empty() {
            vec![ReadAs::new("1", Kind::Int64)].into()
        } else {
            self.columns
                .iter()
                .map(|c| ReadAs::new(c.name.clone(), c.kind))
                .collect()
        };
        let rows_fetched = MetricBuilder::new(&self.metrics).counter("rows_fetched", partition);
        let cells_decrypted =
            MetricBuilder::new(&self.metrics).counter("cells_decrypted", partition);
        let db = self.db.clone();
        let sql = self.sql.clone();
        let params = self.params.clone();
        let chunks = futures::stream::once(async move {
            let conn = db.connect().await?;
            Ok::<_, Error>(conn.rows(sql, params, read, chunk))
        })
        .try_flatten();

        let schema = Arc::clone(&self.schema);
        let columns = self.columns.clone();
        let table = self.table.clone();
        let batches = chunks
            .map(move |chunk| {
                let rows = chunk?;
                rows_fetched.add(rows.len());
                let (batch, decrypted) = to_batch(&schema, &columns, &table, rows)?;
                cells_decrypted.add(decrypted);
                Ok::<_, Error>(batch)
            })
            .map_err(DataFusionError::from);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// Rows (row-major) as a record batch, decrypting encrypted columns; also the number of cells
/// decrypted.
fn to_batch(
    schema: &SchemaRef,
    columns: &[TableColumn],
    table: &str,
    mut rows: Vec<Vec<Value>>,
) -> Result<(RecordBatch, usize), Error> {
    let internal = |e: datafusion::arrow::error::ArrowError| {
        Error::Internal(format!("building a record batch: {e}"))
    };
    if columns.is_empty() {
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(schema), vec![], &options)
            .map_err(internal)?;
        return Ok((batch, 0));
    }
    let mut arrays = Vec::with_capacity(columns.len());
    let mut decrypted = 0;
    for (j, column) in columns.iter().enumerate() {
        let values: Vec<Value> = rows
            .iter_mut()
            .map(|row| row.get_mut(j).map(std::mem::take).unwrap_or_default())
            .collect();
        let array = match &column.crypto {
            None => plain_array(column, values)?,
            Some(crypto) => {
                let ty = &crypto.metadata.plaintext_type;
                let plain = values
                    .into_iter()
                    .map(|v| match v {
                        Value::Null => Ok(None),
                        Value::Bytes(cell) => {
                            decrypted += 1;
                            crypto
                                .cipher
                                .decrypt_value(&cell, ty)
                                .map(Some)
                                .map_err(|source| Error::Cell {
                                    table: table.to_owned(),
                                    column: column.name.clone(),
                                    source,
                                })
                        }
                        _ => Err(Error::UnexpectedValue {
                            column: column.name.clone(),
                            expected: "a binary cell",
                        }),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                values_to_array(ty, plain)?
            }
        };
        arrays.push(array);
    }
    let batch = RecordBatch::try_new(Arc::clone(schema), arrays).map_err(internal)?;
    Ok((batch, decrypted))
}

fn plain_array(column: &TableColumn, values: Vec<Value>) -> Result<ArrayRef, Error> {
    let unexpected = || Error::UnexpectedValue {
        column: column.name.clone(),
        expected: column.kind.name(),
    };
    macro_rules! collect {
        ($pat:pat => $e:expr) => {
            values
                .into_iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    $pat => Ok(Some($e)),
                    _ => Err(unexpected()),
                })
                .collect::<Result<Vec<_>, Error>>()?
        };
    }
    Ok(match column.kind {
        Kind::Bool => Arc::new(BooleanArray::from(collect!(Value::Bool(b) => b))),
        Kind::Int16 => Arc::new(Int16Array::from(
            collect!(Value::Int(i) => i16::try_from(i).map_err(|_| unexpected())?),
        )),
        Kind::Int32 => Arc::new(Int32Array::from(
            collect!(Value::Int(i) => i32::try_from(i).map_err(|_| unexpected())?),
        )),
        Kind::Int64 => Arc::new(Int64Array::from(collect!(Value::Int(i) => i))),
        Kind::Float32 => Arc::new(Float32Array::from(collect!(Value::Float(f) => f as f32))),
        Kind::Float64 => Arc::new(Float64Array::from(collect!(Value::Float(f) => f))),
        Kind::Text => Arc::new(StringArray::from(collect!(Value::Text(s) => s))),
        Kind::Bytes => Arc::new(BinaryArray::from_iter(collect!(Value::Bytes(b) => b))),
        Kind::Date => Arc::new(Date32Array::from(collect!(Value::Date(d) => d))),
        Kind::Timestamp => Arc::new(TimestampMicrosecondArray::from(
            collect!(Value::Timestamp(t) => t),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_variants_cover_every_stored_padding() {
        let v = pad_variants("ab  ", 4, str::len).unwrap();
        assert_eq!(v, ["ab", "ab ", "ab  "].map(|s| SqlValue::String(s.into())));
        assert_eq!(pad_variants("abcd", 4, str::len).unwrap().len(), 1);
        assert!(pad_variants("ab", 4, str::len).is_none());
        assert!(pad_variants(&" ".repeat(40), 40, str::len).is_none());
    }

    #[test]
    fn plain_literals_must_fit_the_column() {
        assert_eq!(
            plain_literal(Kind::Int64, &ScalarValue::Int32(Some(5))),
            Some(Value::Int(5))
        );
        assert_eq!(
            plain_literal(Kind::Int64, &ScalarValue::Float64(Some(5.0))),
            None
        );
        assert_eq!(
            plain_literal(Kind::Float64, &ScalarValue::Float64(Some(5.0))),
            None
        );
        assert_eq!(
            plain_literal(Kind::Text, &ScalarValue::Utf8(Some("x".into()))),
            Some(Value::Text("x".into()))
        );
    }
}

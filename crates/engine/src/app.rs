//! SQL apps: ordered `.sql` scripts run as one job, with all-or-nothing outputs.
//!
//! A [`SqlApp`] is what a data engineer ships in an app bundle: `.sql` files, run in the order
//! of their names (`01_tables.sql`, `02_report.sql`, …). [`Engine::run_app`] runs them:
//!
//! 1. Each script is split into tokens by DataFusion's SQL tokenizer, its `${NAME}`
//!    placeholders are bound to the [`AppVars`] given as literals (see below), and the tokens
//!    are parsed into statements (so a `;` inside a string literal or comment is not a
//!    statement boundary). Every script is parsed before anything runs: a syntax error in the
//!    last script runs nothing.
//! 2. Every `COPY … TO` is checked against the engine's
//!    [`OutputPolicy`](crate::OutputPolicy) — a plaintext format without permission is
//!    refused before anything runs — and staged: see
//!    [`output`](crate::output) for where outputs are written during the run and how they
//!    become visible.
//! 3. The statements run in order, each planned only after the previous one ran (so a script
//!    can query a table an earlier one created), under the same rules as
//!    [`Engine::sql`](crate::Engine::sql). DDL (`CREATE EXTERNAL TABLE … OPTIONS (…)`, `SET`,
//!    …) produces nothing; each query produces a named [`QueryResult`]; each `COPY` an output.
//! 4. Only when everything succeeded are the outputs committed. On any failure the staged
//!    outputs are deleted and the error names the script and statement.
//!
//! Outputs are visible only after the app finished, so a script cannot read what an earlier
//! `COPY` of the same app wrote; `INSERT INTO` a file-backed table and `EXPLAIN ANALYZE COPY`
//! are refused (rule `atomic-output`) because their writes could not be staged.
//!
//! # Variables
//!
//! Variables are bound, never spliced: the SQL is split into tokens first, and a value only
//! ever becomes the content of a literal token, so no value — quotes, `;`, `--`, `$`, `}`
//! included — can end a literal, start a comment or add a statement. NAME is a letter or `_`,
//! then letters, digits, `_`; a placeholder whose variable is not set is an error naming it.
//!
//! | where | written | becomes |
//! | --- | --- | --- |
//! | inside a string literal or quoted identifier | `'${OUT}/x.parquet'`, `"${TABLE}"` | the same literal with the value in its text (`$${` stands for a literal `${`) |
//! | anywhere else | `${DAY}` or `${DAY:str}` | a string literal holding the value (`'2024-01-31'`) |
//! | anywhere else | `${LIMIT:int}` | an integer literal; the value must be a decimal `i64` |
//!
//! Other types come from SQL: `DATE ${DAY}` or `CAST(${N} AS DOUBLE)`. Placeholders in
//! comments are ignored.
//!
//! Key material never belongs in SQL (keys are named by id and resolved by the engine), so
//! [`AppVars`] accepts:
//!
//! - only the names the caller allows ([`AppVars::from_env`] takes an explicit allow-list);
//! - no name that looks like a secret (containing `KEY`, `SECRET`, `TOKEN`, `PASSWORD`,
//!   `PASSWD`, `SAS`, `SIG`, `CREDENTIAL`, `PRIVATE`, `CEK` or `CMK`, in any case) — conservative on
//!   purpose;
//! - values of at most 1024 characters without control characters. Any other text is a
//!   value: whoever sets a variable chooses a literal, never a statement.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use cloister_engine::{AppVars, EngineBuilder, InMemoryKeyProvider, SqlApp};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = InMemoryKeyProvider::new().with_key("kf", vec![7; 32])?;
//! let engine = EngineBuilder::new(Arc::new(keys)).build()?;
//! let dir = tempfile::tempdir()?;
//! let app = SqlApp::from_files([
//!     ("01_report.sql", "SELECT 'a;b' AS s, 1 + 1 AS two; SELECT '${DAY}' AS day;"),
//!     (
//!         "02_save.sql",
//!         "COPY (SELECT 42 AS answer) TO '${OUT}/answers/' STORED AS PARQUET \
//!          OPTIONS ('format.crypto.factory_id' 'cloister', \
//!                   'format.crypto.factory_options.footer_key' 'kf');",
//!     ),
//! ])?;
//! let vars = AppVars::new()
//!     .with("DAY", "2024-01-31")?
//!     .with("OUT", dir.path().to_str().unwrap())?;
//! let run = engine.run_app(&app, &vars).await?;
//! assert_eq!(run.results().len(), 2);
//! println!("{}", run.results()[0].to_pretty_string()?);
//! assert_eq!(run.outputs()[0].rows(), 1);
//! assert!(dir.path().join("answers").is_dir());
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, UInt64Type};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::logical_plan::dml::CopyTo;
use datafusion::logical_expr::{LogicalPlan, WriteOp};
use datafusion::sql::parser::{CopyToStatement, DFParserBuilder, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::Value;
use datafusion::sql::sqlparser::dialect::{Dialect, dialect_from_str};
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan, Tokenizer};

use crate::output::{Staging, is_memory_table};
use crate::rules::{Rule, check_copy_format, check_output, check_plan};
use crate::{Engine, Error};

/// One `.sql` script of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlScript {
    name: String,
    sql: String,
}

impl SqlScript {
    /// The file name, e.g. `02_report.sql`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SQL text, before substitution.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// The name without `.sql`.
    pub fn stem(&self) -> &str {
        self.name.strip_suffix(".sql").unwrap_or(&self.name)
    }
}

/// An ordered set of `.sql` scripts; see the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SqlApp {
    scripts: Vec<SqlScript>,
}

impl SqlApp {
    /// The `*.sql` files directly in `dir` (other files and subdirectories are ignored),
    /// ordered by name.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, Error> {
        let dir = dir.as_ref();
        let io = |source| Error::Io {
            context: "reading a SQL app directory",
            source,
        };
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            if !entry.file_type().map_err(io)?.is_file()
                || path.extension().and_then(|e| e.to_str()) != Some("sql")
            {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let sql = String::from_utf8(std::fs::read(&path).map_err(io)?).map_err(|_| {
                Error::InvalidApp {
                    reason: format!("script {name:?} is not UTF-8"),
                }
            })?;
            files.push((name, sql));
        }
        Self::from_files(files)
    }

    /// Scripts held in memory (as an app bundle holds them): `(file name, SQL)`, ordered by
    /// name. Names must end in `.sql`, contain no `/` and be unique.
    pub fn from_files<N: Into<String>, S: Into<String>>(
        files: impl IntoIterator<Item = (N, S)>,
    ) -> Result<Self, Error> {
        let mut scripts: Vec<SqlScript> = files
            .into_iter()
            .map(|(name, sql)| SqlScript {
                name: name.into(),
                sql: sql.into(),
            })
            .collect();
        scripts.sort_by(|a, b| a.name.cmp(&b.name));
        for script in &scripts {
            if !script.name.ends_with(".sql")
                || script.name.len() <= 4
                || script.name.contains(['/', '\\'])
            {
                return Err(Error::InvalidApp {
                    reason: format!(
                        "script name {:?} must be a file name ending in .sql",
                        script.name
                    ),
                });
            }
        }
        if let Some(w) = scripts.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::InvalidApp {
                reason: format!("script {:?} is given twice", w[0].name),
            });
        }
        if scripts.is_empty() {
            return Err(Error::InvalidApp {
                reason: "the app has no .sql scripts".into(),
            });
        }
        Ok(Self { scripts })
    }

    /// The scripts, in the order they run.
    pub fn scripts(&self) -> &[SqlScript] {
        &self.scripts
    }
}

/// Values for the `${NAME}` placeholders of an app; see the [module docs](self#variables) for
/// what is accepted. `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AppVars {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for AppVars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

/// Name fragments that make a variable look like a secret.
const SECRET_MARKERS: [&str; 11] = [
    "KEY",
    "CEK",
    "CMK",
    "SECRET",
    "TOKEN",
    "PASSWORD",
    "PASSWD",
    "SAS",
    "SIG",
    "CREDENTIAL",
    "PRIVATE",
];

const MAX_VALUE_LEN: usize = 1024;

impl AppVars {
    /// No variables.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `name` to `value`, if both are acceptable.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), Error> {
        check_name(name)?;
        check_value(name, value)?;
        self.vars.insert(name.to_owned(), value.to_owned());
        Ok(())
    }

    /// Builder form of [`set`](Self::set).
    pub fn with(mut self, name: &str, value: &str) -> Result<Self, Error> {
        self.set(name, value)?;
        Ok(self)
    }

    /// The variables named in `allowed` that `env` sets (the last setting of a name wins).
    /// Everything else in `env` is ignored; an allowed name that `env` lacks stays unset.
    pub fn from_env<'a>(
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        allowed: &[&str],
    ) -> Result<Self, Error> {
        for name in allowed {
            check_name(name)?;
        }
        let mut vars = Self::new();
        for (name, value) in env {
            if allowed.contains(&name) {
                vars.set(name, value)?;
            }
        }
        Ok(vars)
    }

    /// The names set, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.vars.keys().map(String::as_str)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }
}

fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_name(name: &str) -> Result<(), Error> {
    if !is_name(name) {
        return Err(Error::VariableRefused {
            name: name.to_owned(),
            reason: "a name is a letter or _, then letters, digits or _",
        });
    }
    let upper = name.to_ascii_uppercase();
    if SECRET_MARKERS.iter().any(|m| upper.contains(m)) {
        return Err(Error::VariableRefused {
            name: name.to_owned(),
            reason: "the name looks like a secret, and secrets never go into SQL (name keys \
                     by id in the encryption options instead)",
        });
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), Error> {
    if value.chars().count() > MAX_VALUE_LEN {
        return Err(Error::VariableRefused {
            name: name.to_owned(),
            reason: "the value is longer than 1024 characters",
        });
    }
    if value.chars().any(char::is_control) {
        return Err(Error::VariableRefused {
            name: name.to_owned(),
            reason: "the value has a control character (line breaks and tabs included)",
        });
    }
    Ok(())
}

/// The literal a placeholder outside string literals becomes (`${NAME}` or `${NAME:TYPE}`).
#[derive(Clone, Copy)]
enum VarType {
    /// `${NAME}` or `${NAME:str}`: a string literal.
    Str,
    /// `${NAME:int}`: an integer literal; the value must be a decimal integer.
    Int,
}

/// Tokenize `sql` and bind `vars` into the tokens (see the [module docs](self#variables)).
///
/// Values go into the *content* of string-literal and quoted-identifier tokens, or become
/// literal tokens of their own, after the SQL was split into tokens: no value is ever read by
/// the tokenizer, so no value can end a literal, start a comment or add a statement.
fn bind(
    script: &str,
    sql: &str,
    dialect: &dyn Dialect,
    vars: &AppVars,
) -> DfResult<Vec<TokenWithSpan>> {
    let tokens = Tokenizer::new(dialect, sql)
        .tokenize_with_location()
        .map_err(ParserError::from)?;
    let mut bound = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while let Some(t) = tokens.get(i) {
        if matches!(&t.token, Token::Placeholder(p) if p == "$")
            && matches!(tokens.get(i + 1).map(|t| &t.token), Some(Token::LBrace))
        {
            let (len, name, ty) = bare_placeholder(script, &tokens[i..])?;
            let value = lookup(script, vars, name)?;
            let span = Span::new(t.span.start, tokens[i + len - 1].span.end);
            match ty {
                VarType::Str => bound.push(TokenWithSpan::new(
                    Token::SingleQuotedString(value.to_owned()),
                    span,
                )),
                VarType::Int => {
                    let (negative, digits) = integer(name, value)?;
                    if negative {
                        bound.push(TokenWithSpan::new(Token::Minus, span));
                    }
                    bound.push(TokenWithSpan::new(
                        Token::Number(digits.to_owned(), false),
                        span,
                    ));
                }
            }
            i += len;
            continue;
        }
        let mut t = t.clone();
        if let Some(content) = literal_content(&mut t.token) {
            *content = fill(script, content, vars)?;
        }
        bound.push(t);
        i += 1;
    }
    Ok(bound)
}

/// The text of a string literal or quoted identifier, where `${NAME}` is replaced.
fn literal_content(token: &mut Token) -> Option<&mut String> {
    match token {
        Token::SingleQuotedString(s)
        | Token::DoubleQuotedString(s)
        | Token::TripleSingleQuotedString(s)
        | Token::TripleDoubleQuotedString(s)
        | Token::SingleQuotedByteStringLiteral(s)
        | Token::DoubleQuotedByteStringLiteral(s)
        | Token::TripleSingleQuotedByteStringLiteral(s)
        | Token::TripleDoubleQuotedByteStringLiteral(s)
        | Token::SingleQuotedRawStringLiteral(s)
        | Token::DoubleQuotedRawStringLiteral(s)
        | Token::TripleSingleQuotedRawStringLiteral(s)
        | Token::TripleDoubleQuotedRawStringLiteral(s)
        | Token::NationalStringLiteral(s)
        | Token::EscapedStringLiteral(s)
        | Token::UnicodeStringLiteral(s) => Some(s),
        Token::DollarQuotedString(d) => Some(&mut d.value),
        Token::Word(w) if w.quote_style.is_some() => Some(&mut w.value),
        _ => None,
    }
}

/// `${NAME}` or `${NAME:TYPE}` at the start of `tokens` (which start with `$` `{`): how many
/// tokens it spans, the name and the type.
fn bare_placeholder<'t>(
    script: &str,
    tokens: &'t [TokenWithSpan],
) -> Result<(usize, &'t str, VarType), Error> {
    let kinds: Vec<&Token> = tokens.iter().take(6).map(|t| &t.token).collect();
    let word = |t: &'t Token| match t {
        Token::Word(w) if w.quote_style.is_none() && is_name(&w.value) => Some(w.value.as_str()),
        _ => None,
    };
    let parsed = match kinds.as_slice() {
        [_, _, name, Token::RBrace, ..] => word(name).map(|n| (4, n, VarType::Str)),
        [_, _, name, Token::Colon, ty, Token::RBrace, ..] => {
            let ty = match word(ty).map(str::to_ascii_lowercase).as_deref() {
                Some("str") => Some(VarType::Str),
                Some("int") => Some(VarType::Int),
                _ => None,
            };
            word(name).zip(ty).map(|(n, ty)| (6, n, ty))
        }
        _ => None,
    };
    parsed.ok_or_else(|| Error::InvalidApp {
        reason: format!(
            "script {script:?}: a ${{ outside a string literal must be ${{NAME}}, ${{NAME:str}} \
             or ${{NAME:int}}"
        ),
    })
}

fn lookup<'v>(script: &str, vars: &'v AppVars, name: &str) -> Result<&'v str, Error> {
    vars.get(name).ok_or_else(|| Error::UnsetVariable {
        script: script.to_owned(),
        name: name.to_owned(),
    })
}

/// A `${NAME:int}` value: a sign and decimal digits that fit an `i64`.
fn integer<'v>(name: &str, value: &'v str) -> Result<(bool, &'v str), Error> {
    let (negative, digits) = match value.strip_prefix('-') {
        Some(digits) => (true, digits),
        None => (false, value),
    };
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || value.parse::<i64>().is_err()
    {
        return Err(Error::VariableRefused {
            name: name.to_owned(),
            reason: "${NAME:int} needs a decimal integer that fits 64 bits",
        });
    }
    Ok((negative, digits))
}

/// Replace `${NAME}` in the text of a literal; `$${` stands for `${`.
fn fill(script: &str, text: &str, vars: &AppVars) -> Result<String, Error> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let Some(end) = after.find('}') else {
                return Err(Error::InvalidApp {
                    reason: format!("script {script:?}: a ${{ placeholder is not closed"),
                });
            };
            let name = &after[..end];
            if !is_name(name) {
                return Err(Error::InvalidApp {
                    reason: format!(
                        "script {script:?}: ${{{name}}} is not a variable name (write $${{ for \
                         a literal ${{)"
                    ),
                });
            }
            out.push_str(lookup(script, vars, name)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The rows a query of an app returned.
#[derive(Clone, Debug)]
pub struct QueryResult {
    name: String,
    script: String,
    statement: usize,
    batches: Vec<RecordBatch>,
}

impl QueryResult {
    /// The result's name: the script's stem (`02_report`) when the script has one query,
    /// otherwise the stem and the statement's 1-based position (`02_report.3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The script that produced it.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The statement's 1-based position in its script.
    pub fn statement(&self) -> usize {
        self.statement
    }

    /// The rows.
    pub fn batches(&self) -> &[RecordBatch] {
        &self.batches
    }

    /// The number of rows.
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    /// The rows as a text table (`arrow::util::pretty`).
    pub fn to_pretty_string(&self) -> DfResult<String> {
        Ok(datafusion::arrow::util::pretty::pretty_format_batches(&self.batches)?.to_string())
    }
}

/// An output an app wrote and committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppOutput {
    url: String,
    rows: u64,
    script: String,
    statement: usize,
}

impl AppOutput {
    /// Where the output is, as a URL (`file:///…`, `az://…`, `s3://…`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The number of rows written.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The script that wrote it.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The statement's 1-based position in its script.
    pub fn statement(&self) -> usize {
        self.statement
    }
}

/// What an app produced.
#[derive(Clone, Debug, Default)]
pub struct AppRun {
    results: Vec<QueryResult>,
    outputs: Vec<AppOutput>,
}

impl AppRun {
    /// The query results, in the order the queries ran.
    pub fn results(&self) -> &[QueryResult] {
        &self.results
    }

    /// The result named `name`.
    pub fn result(&self, name: &str) -> Option<&QueryResult> {
        self.results.iter().find(|r| r.name == name)
    }

    /// The committed outputs, in the order they were written.
    pub fn outputs(&self) -> &[AppOutput] {
        &self.outputs
    }
}

struct Parsed {
    script: String,
    stem: String,
    position: usize,
    statement: DfStatement,
    /// Index into the staging's outputs, for a `COPY`.
    output: Option<usize>,
}

impl Parsed {
    fn context(&self) -> String {
        format!("script {:?}, statement {}", self.script, self.position)
    }
}

fn in_context(context: String, err: impl Into<DataFusionError>) -> DataFusionError {
    DataFusionError::Context(context, Box::new(err.into()))
}

/// The `COPY` in `statement` and whether it would run (`EXPLAIN ANALYZE`).
fn copy_in(statement: &DfStatement) -> Option<(&CopyToStatement, bool)> {
    match statement {
        DfStatement::CopyTo(copy) => Some((copy, true)),
        DfStatement::Explain(explain) => {
            copy_in(&explain.statement).map(|(copy, runs)| (copy, runs && explain.options.analyze))
        }
        _ => None,
    }
}

fn option_value(value: &Value) -> String {
    match value {
        Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The format and normalised options of a `COPY` as DataFusion will see them.
fn copy_format(copy: &CopyToStatement) -> (String, BTreeMap<String, String>) {
    let format = match &copy.stored_as {
        Some(format) => format.clone(),
        None => Path::new(&copy.target)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or_default()
            .to_owned(),
    };
    let options = copy
        .options
        .iter()
        .map(|(k, v)| {
            let key = if k.contains('.') {
                k.to_lowercase()
            } else {
                format!("format.{k}").to_lowercase()
            };
            (key, option_value(v))
        })
        .collect();
    (format, options)
}

fn contains_copy(plan: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        found |= matches!(node, LogicalPlan::Copy(_));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

fn atomic_refusal(detail: &str) -> DataFusionError {
    Error::StatementRefused {
        rule: Rule::AtomicOutput,
        detail: detail.to_owned(),
    }
    .into()
}

/// How a planned statement of an app is run.
enum Kind {
    /// DDL, SET, INSERT into a memory table: run, no result.
    Silent,
    /// A query: run, a named result.
    Query,
    /// A COPY: run into its staged location.
    Copy(Box<CopyTo>),
}

fn classify(plan: LogicalPlan) -> DfResult<(Kind, LogicalPlan)> {
    let kind = match &plan {
        LogicalPlan::Copy(copy) => Kind::Copy(Box::new(copy.clone())),
        LogicalPlan::Explain(_) => Kind::Query,
        _ if contains_copy(&plan) => {
            return Err(atomic_refusal(
                "COPY inside EXPLAIN ANALYZE would write outside the app's staging; run the \
                 COPY as a statement of its own",
            ));
        }
        LogicalPlan::Dml(dml) if matches!(dml.op, WriteOp::Insert(_)) => {
            if !is_memory_table(dml) {
                return Err(atomic_refusal(&format!(
                    "INSERT INTO {} writes files that cannot be staged; write outputs with \
                     COPY … TO",
                    dml.table_name
                )));
            }
            Kind::Silent
        }
        LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Dml(_) => Kind::Silent,
        _ => Kind::Query,
    };
    Ok((kind, plan))
}

fn copied_rows(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.column_by_name("count"))
        .filter(|c| c.data_type() == &DataType::UInt64)
        .map(|c| {
            c.as_primitive::<UInt64Type>()
                .iter()
                .map(|v| v.unwrap_or(0))
                .sum::<u64>()
        })
        .sum()
}

impl Engine {
    /// Run `app` with `vars`; see the [module docs](crate::app). Errors name the script and
    /// statement (as DataFusion context) and carry this crate's [`Error`] where it applies
    /// ([`Error::find_in`]).
    #[tracing::instrument(skip_all, fields(scripts = app.scripts().len(), vars = ?vars))]
    pub async fn run_app(&self, app: &SqlApp, vars: &AppVars) -> DfResult<AppRun> {
        let state = self.session().state();
        let options = state.config().options();
        let dialect_name = options.sql_parser.dialect;
        let recursion_limit = options.sql_parser.recursion_limit.get();
        let dialect = dialect_from_str(dialect_name).ok_or_else(|| {
            DataFusionError::Plan(format!("unsupported SQL dialect {dialect_name}"))
        })?;

        // 1. Bind the variables and parse everything.
        let mut parsed = Vec::new();
        for script in app.scripts() {
            let context = || format!("script {:?}", script.name());
            let tokens = bind(script.name(), script.sql(), dialect.as_ref(), vars)
                .map_err(|e| in_context(context(), e))?;
            let statements = DFParserBuilder::new(tokens)
                .with_dialect(dialect.as_ref())
                .with_recursion_limit(recursion_limit)
                .build()
                .and_then(|mut parser| parser.parse_statements())
                .map_err(|e| in_context(context(), e))?;
            parsed.extend(
                statements
                    .into_iter()
                    .enumerate()
                    .map(|(i, statement)| Parsed {
                        script: script.name().to_owned(),
                        stem: script.stem().to_owned(),
                        position: i + 1,
                        statement,
                        output: None,
                    }),
            );
        }

        // 2. Check and stage the outputs before anything runs.
        let mut staging = Staging::new()?;
        for p in &mut parsed {
            let Some((copy, runs)) = copy_in(&p.statement) else {
                continue;
            };
            let (format, copy_options) = copy_format(copy);
            let lookup = |key: &str| copy_options.get(key).cloned();
            let checked = check_copy_format(&copy.target, &format, &lookup, self.output_policy())
                .map_err(DataFusionError::from);
            let checked = match (checked, runs, &p.statement) {
                (Err(e), _, _) => Err(e),
                (Ok(()), true, DfStatement::Explain(_)) => Err(atomic_refusal(
                    "COPY inside EXPLAIN ANALYZE would write outside the app's staging; run \
                     the COPY as a statement of its own",
                )),
                (Ok(()), true, _) => staging
                    .stage(&copy.target, &self.session().runtime_env())
                    .await
                    .map(|index| p.output = Some(index)),
                (Ok(()), false, _) => Ok(()),
            };
            if let Err(e) = checked {
                let context = p.context();
                staging.abort().await;
                return Err(in_context(context, e));
            }
        }

        // Names of results: the stem, or stem.position when a script has several queries.
        // Decided after planning, so collect (stem, position) first.
        let mut run = AppRun::default();
        let mut results: Vec<(String, String, usize, Vec<RecordBatch>)> = Vec::new();

        // 3. Run in order.
        for p in parsed {
            let context = p.context();
            let ran = self.run_statement(&p, &staging).await;
            match ran {
                Ok(Ran::Nothing) => {}
                Ok(Ran::Rows(batches)) => {
                    results.push((p.stem.clone(), p.script.clone(), p.position, batches))
                }
                Ok(Ran::Copied(rows)) => run.outputs.push(AppOutput {
                    url: String::new(), // filled in at commit
                    rows,
                    script: p.script.clone(),
                    statement: p.position,
                }),
                Err(e) => {
                    tracing::warn!(statement = %context, "app statement failed; discarding staged outputs");
                    staging.abort().await;
                    return Err(in_context(context, e));
                }
            }
        }

        // 4. Commit.
        let urls = staging.commit().await?;
        for (output, url) in run.outputs.iter_mut().zip(urls) {
            output.url = url;
        }
        let mut per_stem: BTreeMap<String, usize> = BTreeMap::new();
        for (stem, ..) in &results {
            *per_stem.entry(stem.clone()).or_default() += 1;
        }
        run.results = results
            .into_iter()
            .map(|(stem, script, statement, batches)| QueryResult {
                name: if per_stem.get(&stem).copied().unwrap_or(0) > 1 {
                    format!("{stem}.{statement}")
                } else {
                    stem
                },
                script,
                statement,
                batches,
            })
            .collect();
        Ok(run)
    }

    async fn run_statement(&self, p: &Parsed, staging: &Staging) -> DfResult<Ran> {
        let plan = self
            .session()
            .state()
            .statement_to_plan(p.statement.clone())
            .await?;
        check_plan(&plan)?;
        check_output(&plan, self.output_policy())?;
        let (kind, plan) = classify(plan)?;
        match kind {
            Kind::Silent => {
                self.session()
                    .execute_logical_plan(plan)
                    .await?
                    .collect()
                    .await?;
                Ok(Ran::Nothing)
            }
            Kind::Query => Ok(Ran::Rows(
                self.session()
                    .execute_logical_plan(plan)
                    .await?
                    .collect()
                    .await?,
            )),
            Kind::Copy(copy) => {
                let staged = p
                    .output
                    .and_then(|i| staging.outputs().get(i))
                    .filter(|s| s.target == copy.output_url)
                    .ok_or(Error::Internal("a COPY was planned that was not staged"))?;
                let relocated = LogicalPlan::Copy(CopyTo {
                    output_url: staged.temp_target.clone(),
                    ..*copy
                });
                let batches = self
                    .session()
                    .execute_logical_plan(relocated)
                    .await?
                    .collect()
                    .await?;
                Ok(Ran::Copied(copied_rows(&batches)))
            }
        }
    }
}

enum Ran {
    Nothing,
    Rows(Vec<RecordBatch>),
    Copied(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars() -> AppVars {
        AppVars::new()
            .with("CONTAINER", "nyctlc")
            .unwrap()
            .with("PATH_1", "yellow/2024")
            .unwrap()
    }

    /// Values an attacker who controls a variable would choose.
    const HOSTILE: [&str; 6] = [
        "x'; DROP TABLE t; --",
        "' OR 1=1 --",
        "a}b${CONTAINER}$c$$d",
        "\u{2019} OR \u{2018}1\u{2019}=\u{2018}1",
        "x\"; DROP TABLE t; --",
        "*/ SELECT 1; /*",
    ];

    /// The statements `sql` parses into once `vars` are bound, as SQL text.
    fn bound(sql: &str, vars: &AppVars) -> DfResult<Vec<DfStatement>> {
        let dialect = dialect_from_str("generic").unwrap();
        let tokens = bind("s.sql", sql, dialect.as_ref(), vars)?;
        DFParserBuilder::new(tokens)
            .with_dialect(dialect.as_ref())
            .build()?
            .parse_statements()
            .map(Vec::from)
    }

    fn rendered(sql: &str) -> String {
        let vars = vars().with("N", "10").unwrap().with("M", "-5").unwrap();
        let statements = bound(sql, &vars).unwrap();
        assert_eq!(statements.len(), 1, "{statements:?}");
        statements[0].to_string()
    }

    #[rstest::rstest]
    #[case::plain("SELECT 1", "SELECT 1")]
    #[case::in_string(
        "SELECT 'az://${CONTAINER}/${PATH_1}/'",
        "SELECT 'az://nyctlc/yellow/2024/'"
    )]
    #[case::escaped("SELECT '$${CONTAINER}'", "SELECT '${CONTAINER}'")]
    #[case::other_dollars("SELECT $1, '$', '$x'", "SELECT $1, '$', '$x'")]
    #[case::adjacent("SELECT '${CONTAINER}${CONTAINER}'", "SELECT 'nyctlcnyctlc'")]
    #[case::quoted_identifier("SELECT 1 AS \"${CONTAINER}\"", "SELECT 1 AS \"nyctlc\"")]
    #[case::bare_string("SELECT ${CONTAINER}", "SELECT 'nyctlc'")]
    #[case::bare_str("SELECT ${PATH_1:str}", "SELECT 'yellow/2024'")]
    #[case::bare_int("SELECT 1 LIMIT ${N:int}", "SELECT 1 LIMIT 10")]
    #[case::bare_negative_int("SELECT 2 - ${M:INT}", "SELECT 2 - -5")]
    #[case::typed_by_sql("SELECT DATE ${N}", "SELECT DATE '10'")]
    #[case::comment_ignored("SELECT 1 -- ${NOPE}\n", "SELECT 1")]
    #[case::copy_target(
        "COPY (SELECT 1) TO '${CONTAINER}/x.parquet'",
        "COPY (SELECT 1) TO nyctlc/x.parquet"
    )]
    fn binding(#[case] sql: &str, #[case] expected: &str) {
        assert_eq!(rendered(sql), expected);
    }

    /// Each hostile value stays one literal, wherever the placeholder is: one statement, whose
    /// literal holds exactly the value.
    #[test]
    fn regression_hostile_values_stay_one_literal() {
        use datafusion::sql::sqlparser::ast::{Expr, SelectItem, SetExpr, Statement};
        for value in HOSTILE {
            let vars = AppVars::new().with("V", value).unwrap();
            for sql in ["SELECT '${V}'", "SELECT ${V}", "SELECT ${V:str}"] {
                let statements = bound(sql, &vars).unwrap();
                assert_eq!(statements.len(), 1, "{value:?} in {sql}");
                let DfStatement::Statement(statement) = &statements[0] else {
                    panic!("{statements:?}");
                };
                let Statement::Query(query) = statement.as_ref() else {
                    panic!("{statement:?}");
                };
                let SetExpr::Select(select) = query.body.as_ref() else {
                    panic!("{query:?}");
                };
                let [SelectItem::UnnamedExpr(Expr::Value(v))] = select.projection.as_slice() else {
                    panic!("{select:?}");
                };
                assert_eq!(v.value, Value::SingleQuotedString(value.to_owned()));
            }
            // A quoted identifier holds it whole too.
            let statements = bound("SELECT 1 AS \"${V}\"; SELECT 2", &vars).unwrap();
            assert_eq!(statements.len(), 2, "{value:?}");
        }
    }

    #[rstest::rstest]
    #[case::unset_in_string("SELECT '${NOPE}'")]
    #[case::unset_bare("SELECT ${NOPE}")]
    #[case::unset_int("SELECT ${NOPE:int}")]
    #[case::unset_identifier("SELECT 1 AS \"${NOPE}\"")]
    fn unset_variables_are_named(#[case] sql: &str) {
        let err = bound(sql, &vars()).unwrap_err();
        assert!(
            matches!(Error::find_in(&err), Some(Error::UnsetVariable { name, script })
                if name == "NOPE" && script == "s.sql"),
            "{err:?}"
        );
        assert!(err.to_string().contains("${NOPE}"), "{err}");
    }

    #[rstest::rstest]
    #[case::unclosed("SELECT '${CONTAINER'")]
    #[case::bad_name("SELECT '${1X}'")]
    #[case::bare_spaced("SELECT ${ CONTAINER }")]
    #[case::bare_unknown_type("SELECT ${CONTAINER:float}")]
    #[case::bare_unclosed("SELECT ${CONTAINER")]
    #[case::bare_bad_name("SELECT ${1X}")]
    fn malformed_placeholders_are_refused(#[case] sql: &str) {
        let err = bound(sql, &vars()).unwrap_err();
        assert!(
            matches!(Error::find_in(&err), Some(Error::InvalidApp { .. })),
            "{err:?}"
        );
    }

    #[rstest::rstest]
    #[case::word("nyctlc")]
    #[case::decimal("1.5")]
    #[case::injection("1; DROP TABLE t")]
    #[case::overflow("9223372036854775808")]
    #[case::empty("")]
    #[case::sign_only("-")]
    fn int_placeholders_take_integers_only(#[case] value: &str) {
        let vars = AppVars::new().with("N", value).unwrap();
        let err = bound("SELECT ${N:int}", &vars).unwrap_err();
        assert!(
            matches!(Error::find_in(&err), Some(Error::VariableRefused { name, .. }) if name == "N"),
            "{err:?}"
        );
    }

    #[rstest::rstest]
    #[case::sas("AZURE_BLOB_SAS_TOKEN")]
    #[case::account_key("AZURE_BLOB_ACCOUNT_KEY")]
    #[case::lower_case("footer_key")]
    #[case::secret("AWS_SECRET_ACCESS_KEY")]
    #[case::password("DB_PASSWORD")]
    #[case::not_a_name("A-B")]
    fn secret_like_or_bad_names_are_refused(#[case] name: &str) {
        let err = AppVars::new().with(name, "x").unwrap_err();
        assert!(matches!(err, Error::VariableRefused { .. }), "{err:?}");
        // Also when the caller allows them explicitly.
        let err = AppVars::from_env([(name, "x")], &[name]).unwrap_err();
        assert!(matches!(err, Error::VariableRefused { .. }), "{err:?}");
    }

    #[rstest::rstest]
    #[case::newline("a\nb")]
    #[case::tab("a\tb")]
    #[case::nul("a\u{0}b")]
    #[case::too_long(&"x".repeat(1025))]
    fn control_characters_and_long_values_are_refused(#[case] value: &str) {
        let err = AppVars::new().with("V", value).unwrap_err();
        assert!(matches!(err, Error::VariableRefused { .. }), "{err:?}");
        assert!(!err.to_string().contains(value), "{err}");
    }

    #[test]
    fn any_other_text_is_a_value() {
        for value in [
            "",
            "2024-01-31",
            "/data/lake/out",
            "az://c/p",
            "year=2024",
            "a@b+c,d~e:f",
            "a b",
            "a\\b",
            &"é".repeat(1024),
        ]
        .into_iter()
        .chain(HOSTILE)
        {
            AppVars::new().with("V", value).unwrap();
        }
    }

    #[test]
    fn from_env_takes_only_allowed_names() {
        let env = [
            ("AZURE_BLOB_CONTAINER_NAME", "nyctlc"),
            ("AZURE_BLOB_RELATIVE_PATH", "yellow"),
            ("AZURE_BLOB_SAS_TOKEN", "sv=1&sig=x"),
            ("HOME", "/root"),
        ];
        let vars = AppVars::from_env(
            env,
            &["AZURE_BLOB_CONTAINER_NAME", "AZURE_BLOB_RELATIVE_PATH"],
        )
        .unwrap();
        assert_eq!(
            vars.names().collect::<Vec<_>>(),
            ["AZURE_BLOB_CONTAINER_NAME", "AZURE_BLOB_RELATIVE_PATH"]
        );
        assert!(!format!("{vars:?}").contains("nyctlc"));
    }

    #[test]
    fn app_from_files_orders_and_validates() {
        let app = SqlApp::from_files([("b.sql", "SELECT 2"), ("a.sql", "SELECT 1")]).unwrap();
        let names: Vec<_> = app.scripts().iter().map(SqlScript::name).collect();
        assert_eq!(names, ["a.sql", "b.sql"]);
        assert_eq!(app.scripts()[0].stem(), "a");
        for bad in [
            vec![("a.txt", "")],
            vec![("x/a.sql", "")],
            vec![(".sql", "")],
            vec![("a.sql", ""), ("a.sql", "")],
            vec![],
        ] {
            assert!(
                matches!(
                    SqlApp::from_files(bad.clone()),
                    Err(Error::InvalidApp { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn app_from_dir_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("02_b.sql"), "SELECT 2").unwrap();
        std::fs::write(dir.path().join("01_a.sql"), "SELECT 1").unwrap();
        std::fs::write(dir.path().join("README.md"), "docs").unwrap();
        std::fs::create_dir(dir.path().join("sub.sql")).unwrap();
        let app = SqlApp::from_dir(dir.path()).unwrap();
        let names: Vec<_> = app.scripts().iter().map(SqlScript::name).collect();
        assert_eq!(names, ["01_a.sql", "02_b.sql"]);
    }
}

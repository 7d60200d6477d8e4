//! `cloister keys cek …`: Always Encrypted column encryption keys outside the CAS.
//!
//! A CEK is only ever shown wrapped (`encrypted_value`, the bytes SQL Server keeps in
//! `sys.column_encryption_key_values`); the CMK's private key is read from a PEM file or stdin,
//! never from the command line. `rotate` re-encrypts columns of a SQLite or PostgreSQL table
//! under a new CEK in one transaction (see `cloister_sqldb::rotate`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use cloister_colenc::{Cek, Cmk, CmkPublicKey, WrappedCek, unwrap_cek, wrap_cek};
use cloister_roles::conninfo::parse_conninfo;
use cloister_sqldb::{
    CLOISTER_KEY_STORE, ColumnMasterKeyDefinition, InMemoryColumnMasterKeys, SqlDatabase,
    format_sql_type, key_metadata, rotate_cek,
};
use serde::Serialize;

use super::read_secret_text;
use crate::output;

#[derive(Subcommand)]
pub enum Command {
    /// Create a CEK wrapped by a CMK: prints (or writes) its encrypted_value, hex.
    ///
    /// 32 random bytes wrapped with RSA-OAEP (SHA-1) by the CMK and signed with
    /// RSASSA-PKCS1-v1_5-SHA-256 over the key path, as SQL Server stores a CEK. The CEK itself is
    /// never printed.
    ///
    /// Example: cloister keys cek create --cmk cmk1.pem --key-path CMK1 --out cek1.hex
    #[command(verbatim_doc_comment)]
    Create(CreateArgs),
    /// Re-wrap a CEK under another CMK (CMK rotation); the CEK stays the same.
    ///
    /// Example: cloister keys cek wrap --value-file cek1.hex --cmk old.pem --new-cmk new.pem --new-key-path CMK2
    #[command(verbatim_doc_comment)]
    Wrap(WrapArgs),
    /// Re-encrypt columns of a table under a new CEK, atomically.
    ///
    /// The new CEK is created under the CMK (registered in the database's key metadata if
    /// needed); every cell is decrypted with its current CEK and encrypted under the new one
    /// with the same encryption type, in one transaction: a failure changes nothing.
    ///
    /// Example: cloister keys cek rotate --db hr.db --table Employees --column SSN --column Salary --new-cek CEK2 --cmk cmk1.pem --cmk-name CMK1 --key-path CMK1
    #[command(verbatim_doc_comment)]
    Rotate(RotateArgs),
    /// Show key metadata: of an encrypted_value, or of a database's keys and encrypted columns.
    ///
    /// With --cmk (private key, public key or certificate PEM) a value's signature is verified.
    ///
    /// Example: cloister keys cek show --db hr.db --json
    #[command(verbatim_doc_comment)]
    Show(ShowArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// The CMK's private key (PEM, PKCS#8 or PKCS#1 RSA; `-` reads stdin).
    #[arg(long, value_name = "FILE")]
    cmk: PathBuf,
    /// The CMK's key path (recorded in the value and signed; `CLOISTER_CAS` key paths are the
    /// CMK's name).
    #[arg(long, value_name = "PATH")]
    key_path: String,
    /// Write the encrypted_value (hex) here instead of stdout (not overwritten).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print JSON (see `show --json`).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct WrapArgs {
    /// The encrypted_value, hex (or use --value-file).
    #[arg(long, value_name = "HEX", conflicts_with = "value_file")]
    value: Option<String>,
    /// A file holding the encrypted_value, hex.
    #[arg(long, value_name = "FILE")]
    value_file: Option<PathBuf>,
    /// The CMK that wraps it now (private key PEM).
    #[arg(long, value_name = "FILE")]
    cmk: PathBuf,
    /// The CMK to wrap it under (private key PEM: the value is signed with it).
    #[arg(long, value_name = "FILE")]
    new_cmk: PathBuf,
    /// The new CMK's key path.
    #[arg(long, value_name = "PATH")]
    new_key_path: String,
    /// Write the new encrypted_value (hex) here instead of stdout (not overwritten).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Print JSON (see `show --json`).
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DbArgs {
    /// A SQLite database file.
    #[arg(long, value_name = "FILE", conflicts_with = "postgres")]
    db: Option<PathBuf>,
    /// A PostgreSQL database: `host=H port=P user=U dbname=D` (no password).
    #[arg(long, value_name = "CONNINFO")]
    postgres: Option<String>,
}

impl DbArgs {
    fn database(&self) -> anyhow::Result<Option<SqlDatabase>> {
        Ok(match (&self.db, &self.postgres) {
            (Some(path), _) => {
                if !path.is_file() {
                    bail!("{} is not a file", path.display());
                }
                Some(SqlDatabase::sqlite(path))
            }
            (None, Some(conninfo)) => Some(SqlDatabase::postgres(parse_conninfo(conninfo)?)),
            (None, None) => None,
        })
    }
}

#[derive(Args)]
pub struct RotateArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The table.
    #[arg(long)]
    table: String,
    /// An encrypted column to re-encrypt. Repeatable.
    #[arg(long = "column", value_name = "COLUMN", required = true)]
    columns: Vec<String>,
    /// The CEK to encrypt under (created if the database does not have it).
    #[arg(long, value_name = "NAME")]
    new_cek: String,
    /// The CMK's private key (PEM; `-` reads stdin): unwraps the current CEKs, wraps the new.
    #[arg(long, value_name = "FILE")]
    cmk: PathBuf,
    /// The CMK's name in the database.
    #[arg(long, value_name = "NAME")]
    cmk_name: String,
    /// The CMK's key store provider.
    #[arg(long, value_name = "NAME", default_value = CLOISTER_KEY_STORE)]
    provider: String,
    /// The CMK's key path.
    #[arg(long, value_name = "PATH")]
    key_path: String,
    /// Print JSON: {"table", "new_cek", "created", "cells", "columns": [{"column", "previous_cek"}]}.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    db: DbArgs,
    /// An encrypted_value, hex.
    #[arg(long, value_name = "HEX", conflicts_with_all = ["value_file", "db", "postgres"])]
    value: Option<String>,
    /// A file holding an encrypted_value, hex.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["db", "postgres"])]
    value_file: Option<PathBuf>,
    /// Verify signatures with this CMK (private key, public key or certificate PEM).
    #[arg(long, value_name = "FILE")]
    cmk: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: Command) -> anyhow::Result<ExitCode> {
    match cmd {
        Command::Create(a) => create(a),
        Command::Wrap(a) => wrap(a),
        Command::Rotate(a) => rotate(a),
        Command::Show(a) => show(a),
    }
}

/// Metadata of one encrypted_value.
#[derive(Serialize)]
struct ValueInfo {
    /// The CEK's name (database only).
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    /// The CMK's name (database only).
    #[serde(skip_serializing_if = "Option::is_none")]
    cmk_name: Option<String>,
    key_path: String,
    algorithm: &'static str,
    ciphertext_len: usize,
    signature_len: usize,
    /// `true`/`false` when checked against --cmk, absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_valid: Option<bool>,
    encrypted_value: String,
}

fn value_info(bytes: &[u8], cmk: Option<&CmkPublicKey>) -> anyhow::Result<ValueInfo> {
    let parsed = WrappedCek::parse(bytes).context("not an encrypted_value")?;
    Ok(ValueInfo {
        name: None,
        cmk_name: None,
        key_path: parsed.key_path()?,
        algorithm: cloister_colenc::cmk::KEY_ENCRYPTION_ALGORITHM,
        ciphertext_len: parsed.ciphertext().len(),
        signature_len: parsed.signature().len(),
        signature_valid: cmk.map(|k| parsed.verify(k).is_ok()),
        encrypted_value: hex::encode(bytes),
    })
}

fn load_cmk(path: &Path) -> anyhow::Result<Cmk> {
    Cmk::from_pem(&read_secret_text(path)?)
        .with_context(|| format!("{} is not an RSA private key PEM", path.display()))
}

fn load_public(path: &Path) -> anyhow::Result<CmkPublicKey> {
    let pem = read_secret_text(path)?;
    if let Ok(cmk) = Cmk::from_pem(&pem) {
        return Ok(cmk.public_key().clone());
    }
    CmkPublicKey::from_public_key_pem(&pem)
        .or_else(|_| CmkPublicKey::from_certificate_pem(&pem))
        .with_context(|| format!("{} is not an RSA key or certificate PEM", path.display()))
}

fn read_value(value: Option<&str>, file: Option<&Path>) -> anyhow::Result<Vec<u8>> {
    let text = match (value, file) {
        (Some(v), _) => v.to_owned(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read {}", f.display()))?
        }
        (None, None) => bail!("give --value or --value-file"),
    };
    let text = text.trim();
    hex::decode(text.strip_prefix("0x").unwrap_or(text)).context("the value is not hex")
}

fn emit(bytes: &[u8], out: Option<&Path>, json: bool) -> anyhow::Result<ExitCode> {
    let info = value_info(bytes, None)?;
    if let Some(path) = out {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| {
                format!("cannot create {} (it is never overwritten)", path.display())
            })?;
        use std::io::Write as _;
        writeln!(file, "{}", info.encrypted_value)?;
    }
    if json {
        output::json(&info)?;
    } else if out.is_none() {
        println!("{}", info.encrypted_value);
    } else {
        output::print_table(&value_table(&[info]))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn create(a: CreateArgs) -> anyhow::Result<ExitCode> {
    let cmk = load_cmk(&a.cmk)?;
    let cek = Cek::generate()?;
    let wrapped = wrap_cek(&cek, &cmk, &a.key_path)?;
    emit(&wrapped, a.out.as_deref(), a.json)
}

fn wrap(a: WrapArgs) -> anyhow::Result<ExitCode> {
    if a.cmk.as_os_str() == "-" && a.new_cmk.as_os_str() == "-" {
        bail!("--cmk and --new-cmk cannot both be read from standard input (-)");
    }
    let bytes = read_value(a.value.as_deref(), a.value_file.as_deref())?;
    let old = load_cmk(&a.cmk)?;
    let path = WrappedCek::parse(&bytes)
        .context("not an encrypted_value")?
        .key_path()?;
    let cek = unwrap_cek(&bytes, &old, &path).context("the value does not unwrap with --cmk")?;
    let new = load_cmk(&a.new_cmk)?;
    let wrapped = wrap_cek(&cek, &new, &a.new_key_path)?;
    emit(&wrapped, a.out.as_deref(), a.json)
}

#[derive(Serialize)]
struct RotateReport {
    table: String,
    new_cek: String,
    created: bool,
    cells: u64,
    columns: Vec<RotatedColumn>,
}

#[derive(Serialize)]
struct RotatedColumn {
    column: String,
    previous_cek: String,
}

fn rotate(a: RotateArgs) -> anyhow::Result<ExitCode> {
    let Some(db) = a.db.database()? else {
        bail!("give --db FILE or --postgres CONNINFO");
    };
    let keys =
        InMemoryColumnMasterKeys::new().with_key(&a.provider, &a.key_path, load_cmk(&a.cmk)?);
    let cmk = ColumnMasterKeyDefinition::new(&a.cmk_name, &a.provider, &a.key_path);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let r = rt
        .block_on(rotate_cek(
            &db, &a.table, &a.columns, &a.new_cek, &cmk, &keys,
        ))
        .with_context(|| format!("rotating {} to {}", a.table, a.new_cek))?;
    let report = RotateReport {
        table: r.table,
        new_cek: r.new_cek,
        created: r.created,
        cells: r.cells,
        columns: r
            .columns
            .into_iter()
            .map(|(column, previous_cek)| RotatedColumn {
                column,
                previous_cek,
            })
            .collect(),
    };
    if a.json {
        output::json(&report)?;
    } else {
        let mut t = output::table(&["column", "previous CEK", "new CEK"]);
        for c in &report.columns {
            t.add_row(vec![
                c.column.clone(),
                c.previous_cek.clone(),
                report.new_cek.clone(),
            ]);
        }
        output::print_table(&t)?;
        eprintln!(
            "cloister: {} cells of {} re-encrypted under {}{}",
            report.cells,
            report.table,
            report.new_cek,
            if report.created { " (created)" } else { "" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct DbReport {
    column_master_keys: Vec<CmkInfo>,
    column_encryption_keys: Vec<ValueInfo>,
    encrypted_columns: Vec<ColumnInfo>,
}

#[derive(Serialize)]
struct CmkInfo {
    name: String,
    key_store_provider_name: String,
    key_path: String,
    allow_enclave_computations: bool,
    signed: bool,
}

#[derive(Serialize)]
struct ColumnInfo {
    table: String,
    column: String,
    cek: String,
    encryption_type: &'static str,
    algorithm: String,
    plaintext_type: String,
}

fn show(a: ShowArgs) -> anyhow::Result<ExitCode> {
    let public = a.cmk.as_deref().map(load_public).transpose()?;
    let Some(db) = a.db.database()? else {
        let bytes = read_value(a.value.as_deref(), a.value_file.as_deref())?;
        let info = value_info(&bytes, public.as_ref())?;
        let invalid = info.signature_valid == Some(false);
        if a.json {
            output::json(&info)?;
        } else {
            output::print_table(&value_table(&[info]))?;
        }
        return Ok(if invalid {
            ExitCode::from(crate::EXIT_REFUSED)
        } else {
            ExitCode::SUCCESS
        });
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let meta = rt.block_on(key_metadata(&db))?;
    let mut values = Vec::new();
    for k in &meta.column_encryption_keys {
        let mut info = value_info(&k.encrypted_value, public.as_ref())?;
        info.name = Some(k.name.clone());
        info.cmk_name = Some(k.cmk_name.clone());
        values.push(info);
    }
    let report = DbReport {
        column_master_keys: meta
            .column_master_keys
            .iter()
            .map(|c| CmkInfo {
                name: c.name.clone(),
                key_store_provider_name: c.key_store_provider_name.clone(),
                key_path: c.key_path.clone(),
                allow_enclave_computations: c.allow_enclave_computations,
                signed: c.signature.is_some(),
            })
            .collect(),
        column_encryption_keys: values,
        encrypted_columns: meta
            .encrypted_columns
            .iter()
            .map(|c| ColumnInfo {
                table: c.table_name.clone(),
                column: c.column_name.clone(),
                cek: c.cek_name.clone(),
                encryption_type: c.encryption_type.sql_name(),
                algorithm: c.algorithm.clone(),
                plaintext_type: format_sql_type(&c.plaintext_type),
            })
            .collect(),
    };
    // An invalid signature is a negative verdict, as for a single value.
    let verdict = if report
        .column_encryption_keys
        .iter()
        .any(|v| v.signature_valid == Some(false))
    {
        ExitCode::from(crate::EXIT_REFUSED)
    } else {
        ExitCode::SUCCESS
    };
    if a.json {
        output::json(&report)?;
        return Ok(verdict);
    }
    let mut cmks = output::table(&["CMK", "provider", "key path", "enclave", "signed"]);
    for c in &report.column_master_keys {
        cmks.add_row(vec![
            c.name.clone(),
            c.key_store_provider_name.clone(),
            c.key_path.clone(),
            c.allow_enclave_computations.to_string(),
            c.signed.to_string(),
        ]);
    }
    output::print_table(&cmks)?;
    output::print_table(&value_table(&report.column_encryption_keys))?;
    let mut cols = output::table(&["table", "column", "CEK", "encryption", "type"]);
    for c in &report.encrypted_columns {
        cols.add_row(vec![
            c.table.clone(),
            c.column.clone(),
            c.cek.clone(),
            c.encryption_type.to_owned(),
            c.plaintext_type.clone(),
        ]);
    }
    output::print_table(&cols)?;
    Ok(verdict)
}

fn value_table(values: &[ValueInfo]) -> comfy_table::Table {
    let mut t = output::table(&[
        "CEK",
        "CMK",
        "key path",
        "algorithm",
        "ciphertext",
        "signature",
    ]);
    for v in values {
        t.add_row(vec![
            v.name.clone().unwrap_or_else(|| "—".into()),
            v.cmk_name.clone().unwrap_or_else(|| "—".into()),
            v.key_path.clone(),
            v.algorithm.to_owned(),
            format!("{} bytes", v.ciphertext_len),
            match v.signature_valid {
                Some(true) => format!("{} bytes, valid", v.signature_len),
                Some(false) => format!("{} bytes, INVALID", v.signature_len),
                None => format!("{} bytes", v.signature_len),
            },
        ]);
    }
    t
}

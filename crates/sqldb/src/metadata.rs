//! The key metadata tables: SQL Server's Always Encrypted catalog views, as three tables in the
//! database itself.
//!
//! SQLite and PostgreSQL have no Always Encrypted catalog, so the metadata that SQL Server keeps
//! in `sys.column_master_keys`, `sys.column_encryption_keys` /
//! `sys.column_encryption_key_values` and `sys.columns` lives in three ordinary tables next to
//! the data, with the same meaning and the same byte formats — a CEK's `encrypted_value` is
//! exactly what SQL Server stores, so keys can move between the databases unchanged.
//!
//! | Cloister column | SQL Server source |
//! | --- | --- |
//! | `cloister_column_master_keys.name` | `sys.column_master_keys.name` |
//! | `….key_store_provider_name` | `sys.column_master_keys.key_store_provider_name` |
//! | `….key_path` | `sys.column_master_keys.key_path` |
//! | `….allow_enclave_computations` (0/1) | `sys.column_master_keys.allow_enclave_computations` |
//! | `….signature` | `sys.column_master_keys.signature` (see [`sign_cmk_metadata`]) |
//! | `cloister_column_encryption_keys.name` | `sys.column_encryption_keys.name` |
//! | `….cmk_name` | the CMK's name, through `sys.column_encryption_key_values.column_master_key_id` |
//! | `….encrypted_value` | `sys.column_encryption_key_values.encrypted_value` |
//! | `….algorithm` | `sys.column_encryption_key_values.encryption_algorithm_name` (`RSA_OAEP`) |
//! | `cloister_encrypted_columns.table_name` | `OBJECT_NAME(sys.columns.object_id)` |
//! | `….column_name` | `sys.columns.name` |
//! | `….cek_name` | the CEK's name, through `sys.columns.column_encryption_key_id` |
//! | `….encryption_type` (1/2) | `sys.columns.encryption_type` (1 = deterministic, 2 = randomized) |
//! | `….algorithm` | `sys.columns.encryption_algorithm_name` (`AEAD_AES_256_CBC_HMAC_SHA_256`) |
//! | `….plaintext_type` | the column's declared type (`user_type_id`, `max_length`, `precision`, `scale`, `collation_name`) in T-SQL syntax |
//!
//! Left out: numeric ids (names are the keys), `create_date` / `modify_date`, and
//! `column_encryption_key_database_name`. As in SQL Server a CEK may have two values, wrapped by
//! two CMKs (during CMK rotation): the reader uses the first CMK its key provider knows. The
//! encrypted columns themselves are binary (`BLOB` / `BYTEA`) and hold SQL Server cells.

use std::sync::Arc;

use cloister_colenc::{
    ALGORITHM, Cek, EncryptionType, SqlType, sign_cmk_metadata, unwrap_cek, verify_cmk_metadata,
    wrap_cek,
};

use super::Error;
use super::database::{Conn, Dialect, Kind, ReadAs, Value};
use super::keys::{ColumnMasterKeyDefinition, ColumnMasterKeyProvider};
use super::types::{format_sql_type, parse_sql_type};

/// The table of column master keys (`sys.column_master_keys`).
pub const COLUMN_MASTER_KEYS: &str = "cloister_column_master_keys";
/// The table of wrapped column encryption keys (`sys.column_encryption_key_values`).
pub const COLUMN_ENCRYPTION_KEYS: &str = "cloister_column_encryption_keys";
/// The table of encrypted columns (the encryption columns of `sys.columns`).
pub const ENCRYPTED_COLUMNS: &str = "cloister_encrypted_columns";
/// The CEK wrapping algorithm's name as SQL Server spells it.
pub const CEK_ALGORITHM: &str = "RSA_OAEP";

/// One row of `cloister_column_master_keys`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnMasterKeyRow {
    /// The CMK's name.
    pub name: String,
    /// Its key store provider.
    pub key_store_provider_name: String,
    /// Its path in that key store.
    pub key_path: String,
    /// Whether it allows enclave computations.
    pub allow_enclave_computations: bool,
    /// The signature of its metadata, if any.
    pub signature: Option<Vec<u8>>,
}

/// One row of `cloister_encrypted_columns`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptedColumn {
    /// The table.
    pub table_name: String,
    /// The column.
    pub column_name: String,
    /// The CEK its cells are encrypted under.
    pub cek_name: String,
    /// Deterministic or randomized.
    pub encryption_type: EncryptionType,
    /// The cell algorithm (always `AEAD_AES_256_CBC_HMAC_SHA_256`).
    pub algorithm: String,
    /// The plaintext's SQL Server type.
    pub plaintext_type: SqlType,
}

/// `CREATE TABLE IF NOT EXISTS` for the three metadata tables.
pub(crate) fn create_statements(dialect: Dialect) -> String {
    let blob = dialect.type_name(Kind::Bytes);
    format!(
        "CREATE TABLE IF NOT EXISTS {COLUMN_MASTER_KEYS} (
            name TEXT NOT NULL PRIMARY KEY,
            key_store_provider_name TEXT NOT NULL,
            key_path TEXT NOT NULL,
            allow_enclave_computations INTEGER NOT NULL DEFAULT 0,
            signature {blob}
        );
        CREATE TABLE IF NOT EXISTS {COLUMN_ENCRYPTION_KEYS} (
            name TEXT NOT NULL,
            cmk_name TEXT NOT NULL REFERENCES {COLUMN_MASTER_KEYS} (name),
            encrypted_value {blob} NOT NULL,
            algorithm TEXT NOT NULL,
            PRIMARY KEY (name, cmk_name)
        );
        CREATE TABLE IF NOT EXISTS {ENCRYPTED_COLUMNS} (
            table_name TEXT NOT NULL,
            column_name TEXT NOT NULL,
            cek_name TEXT NOT NULL,
            encryption_type INTEGER NOT NULL CHECK (encryption_type IN (1, 2)),
            algorithm TEXT NOT NULL,
            plaintext_type TEXT NOT NULL,
            PRIMARY KEY (table_name, column_name)
        );"
    )
}

/// Whether the database has the metadata tables.
pub(crate) async fn present(conn: &mut dyn Conn) -> Result<bool, Error> {
    for table in [
        COLUMN_MASTER_KEYS,
        COLUMN_ENCRYPTION_KEYS,
        ENCRYPTED_COLUMNS,
    ] {
        if conn.columns(table).await?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn text(value: Value, what: &str) -> Result<String, Error> {
    match value {
        Value::Text(s) => Ok(s),
        _ => Err(Error::metadata(what, "expected text")),
    }
}

/// The encrypted columns of `table`.
pub(crate) async fn encrypted_columns(
    conn: &mut dyn Conn,
    table: &str,
) -> Result<Vec<EncryptedColumn>, Error> {
    let sql = format!(
        "SELECT column_name, cek_name, encryption_type, algorithm, plaintext_type \
         FROM {ENCRYPTED_COLUMNS} WHERE table_name = {} ORDER BY column_name",
        conn.dialect().placeholder(1)
    );
    let read: Arc<[ReadAs]> = vec![
        ReadAs::new("column_name", Kind::Text),
        ReadAs::new("cek_name", Kind::Text),
        ReadAs::new("encryption_type", Kind::Int64),
        ReadAs::new("algorithm", Kind::Text),
        ReadAs::new("plaintext_type", Kind::Text),
    ]
    .into();
    let rows = conn
        .query(&sql, vec![Value::Text(table.to_owned())], read)
        .await?;
    rows.into_iter()
        .map(|row| {
            let [column, cek, kind, algorithm, ty]: [Value; 5] = row
                .try_into()
                .map_err(|_| Error::Internal("query returned the wrong column count".into()))?;
            let column_name = text(column, table)?;
            let what = format!("{table}.{column_name}");
            let encryption_type = match kind {
                Value::Int(code) => u8::try_from(code)
                    .ok()
                    .and_then(EncryptionType::from_sql_code),
                _ => None,
            }
            .ok_or_else(|| Error::metadata(&what, "encryption_type must be 1 or 2"))?;
            let algorithm = text(algorithm, &what)?;
            if algorithm != ALGORITHM {
                return Err(Error::metadata(
                    &what,
                    format!("unsupported cell algorithm {algorithm:?}, expected {ALGORITHM}"),
                ));
            }
            Ok(EncryptedColumn {
                table_name: table.to_owned(),
                cek_name: text(cek, &what)?,
                encryption_type,
                algorithm,
                plaintext_type: parse_sql_type(&text(ty, &what)?)?,
                column_name,
            })
        })
        .collect()
}

/// Register `column` in `cloister_encrypted_columns`.
pub(crate) async fn insert_encrypted_column(
    conn: &mut dyn Conn,
    column: &EncryptedColumn,
) -> Result<(), Error> {
    let d = conn.dialect();
    let sql = format!(
        "INSERT INTO {ENCRYPTED_COLUMNS} \
         (table_name, column_name, cek_name, encryption_type, algorithm, plaintext_type) \
         VALUES ({}, {}, {}, {}, {}, {})",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3),
        d.placeholder(4),
        d.placeholder(5),
        d.placeholder(6),
    );
    let row = vec![
        Value::Text(column.table_name.clone()),
        Value::Text(column.column_name.clone()),
        Value::Text(column.cek_name.clone()),
        Value::Int(i64::from(column.encryption_type.sql_code())),
        Value::Text(column.algorithm.clone()),
        Value::Text(format_sql_type(&column.plaintext_type)),
    ];
    conn.execute(&sql, vec![row]).await?;
    Ok(())
}

/// The CMK named `name`, if registered.
pub(crate) async fn column_master_key(
    conn: &mut dyn Conn,
    name: &str,
) -> Result<Option<ColumnMasterKeyRow>, Error> {
    let sql = format!(
        "SELECT name, key_store_provider_name, key_path, allow_enclave_computations, signature \
         FROM {COLUMN_MASTER_KEYS} WHERE name = {}",
        conn.dialect().placeholder(1)
    );
    let rows = conn
        .query(&sql, vec![Value::Text(name.to_owned())], cmk_columns())
        .await?;
    rows.into_iter().next().map(cmk_row).transpose()
}

fn cmk_columns() -> Arc<[ReadAs]> {
    vec![
        ReadAs::new("name", Kind::Text),
        ReadAs::new("key_store_provider_name", Kind::Text),
        ReadAs::new("key_path", Kind::Text),
        ReadAs::new("allow_enclave_computations", Kind::Int64),
        ReadAs::new("signature", Kind::Bytes),
    ]
    .into()
}

fn cmk_row(row: Vec<Value>) -> Result<ColumnMasterKeyRow, Error> {
    let [name, provider, path, allow, signature]: [Value; 5] = row
        .try_into()
        .map_err(|_| Error::Internal("query returned the wrong column count".into()))?;
    let name = text(name, COLUMN_MASTER_KEYS)?;
    Ok(ColumnMasterKeyRow {
        key_store_provider_name: text(provider, &name)?,
        key_path: text(path, &name)?,
        allow_enclave_computations: matches!(allow, Value::Int(v) if v != 0),
        signature: match signature {
            Value::Bytes(b) => Some(b),
            _ => None,
        },
        name,
    })
}

/// Unwrap the CEK named `cek` with the first of its CMKs that `keys` holds; `None` if no CEK
/// of that name is registered.
///
/// The wrapped value's signature and key path are checked against the CMK, and the CMK's
/// metadata signature (if any) against its public key, before the key is used.
#[tracing::instrument(skip_all, fields(cek = %cek))]
pub(crate) async fn resolve_cek(
    conn: &mut dyn Conn,
    cek: &str,
    keys: &dyn ColumnMasterKeyProvider,
) -> Result<Option<Cek>, Error> {
    let sql = format!(
        "SELECT m.name, m.key_store_provider_name, m.key_path, m.allow_enclave_computations, \
         m.signature, k.encrypted_value, k.algorithm \
         FROM {COLUMN_ENCRYPTION_KEYS} k JOIN {COLUMN_MASTER_KEYS} m ON m.name = k.cmk_name \
         WHERE k.name = {} ORDER BY m.name",
        conn.dialect().placeholder(1)
    );
    let mut read = cmk_columns().to_vec();
    read.push(ReadAs::new("encrypted_value", Kind::Bytes));
    read.push(ReadAs::new("algorithm", Kind::Text));
    let rows = conn
        .query(&sql, vec![Value::Text(cek.to_owned())], read.into())
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let mut tried = Vec::new();
    for mut row in rows {
        let algorithm = row.pop().map(|v| text(v, cek)).transpose()?;
        let encrypted_value = match row.pop() {
            Some(Value::Bytes(b)) => b,
            _ => return Err(Error::metadata(cek, "encrypted_value must be binary")),
        };
        if algorithm.as_deref() != Some(CEK_ALGORITHM) {
            return Err(Error::metadata(
                cek,
                format!(
                    "unsupported key wrapping algorithm {algorithm:?}, expected {CEK_ALGORITHM}"
                ),
            ));
        }
        let cmk_meta = cmk_row(row)?;
        let Some(cmk) =
            keys.column_master_key(&cmk_meta.key_store_provider_name, &cmk_meta.key_path)
        else {
            tried.push(format!(
                "{}: {}",
                cmk_meta.key_store_provider_name, cmk_meta.key_path
            ));
            continue;
        };
        let key = unwrap_cek(&encrypted_value, &cmk, &cmk_meta.key_path).map_err(|source| {
            Error::CekUnwrap {
                cek: cek.to_owned(),
                cmk: cmk_meta.name.clone(),
                source,
            }
        })?;
        match &cmk_meta.signature {
            Some(signature) => verify_cmk_metadata(
                cmk.public_key(),
                &cmk_meta.key_store_provider_name,
                &cmk_meta.key_path,
                cmk_meta.allow_enclave_computations,
                signature,
            )
            .map_err(|source| Error::CmkMetadata {
                cmk: cmk_meta.name.clone(),
                source,
            })?,
            None if cmk_meta.allow_enclave_computations => {
                return Err(Error::metadata(
                    &cmk_meta.name,
                    "allows enclave computations but its metadata is not signed",
                ));
            }
            None => {}
        }
        return Ok(Some(key));
    }
    // No CMK of the database is known here: a workload given the key itself (an import)
    // reads with it; a wrong key fails every cell's MAC.
    if let Some(key) = keys.column_encryption_key(cek) {
        tracing::debug!("using a configured column encryption key");
        return Ok(Some(key));
    }
    Err(Error::NoColumnMasterKey {
        cek: cek.to_owned(),
        key_paths: tried,
    })
}

/// Create the CEK `cek` under the CMK `cmk` (registering the CMK if needed): the key `keys`
/// holds under that name (e.g. generated by the CAS), else a fresh random key, wrapped by the
/// CMK from `keys`.
#[tracing::instrument(skip_all, fields(cek = %cek, cmk = %cmk.name))]
pub(crate) async fn create_cek(
    conn: &mut dyn Conn,
    cek: &str,
    cmk: &ColumnMasterKeyDefinition,
    keys: &dyn ColumnMasterKeyProvider,
) -> Result<Cek, Error> {
    let private = keys
        .column_master_key(&cmk.key_store_provider_name, &cmk.key_path)
        .ok_or_else(|| Error::NoColumnMasterKey {
            cek: cek.to_owned(),
            key_paths: vec![cmk.location()],
        })?;
    let d = conn.dialect();
    match column_master_key(conn, &cmk.name).await? {
        Some(row) => {
            let registered = format!("{}: {}", row.key_store_provider_name, row.key_path);
            if !row
                .key_store_provider_name
                .eq_ignore_ascii_case(&cmk.key_store_provider_name)
                || row.key_path.to_lowercase() != cmk.key_path.to_lowercase()
            {
                return Err(Error::CmkMismatch {
                    cmk: cmk.name.clone(),
                    registered,
                    requested: cmk.location(),
                });
            }
        }
        None => {
            let signature = if cmk.allow_enclave_computations {
                let sig =
                    sign_cmk_metadata(&private, &cmk.key_store_provider_name, &cmk.key_path, true)
                        .map_err(|e| Error::Internal(format!("signing CMK metadata: {e}")))?;
                Value::Bytes(sig)
            } else {
                Value::Null
            };
            let sql = format!(
                "INSERT INTO {COLUMN_MASTER_KEYS} \
                 (name, key_store_provider_name, key_path, allow_enclave_computations, signature) \
                 VALUES ({}, {}, {}, {}, {})",
                d.placeholder(1),
                d.placeholder(2),
                d.placeholder(3),
                d.placeholder(4),
                d.placeholder(5),
            );
            let row = vec![
                Value::Text(cmk.name.clone()),
                Value::Text(cmk.key_store_provider_name.clone()),
                Value::Text(cmk.key_path.clone()),
                Value::Int(i64::from(cmk.allow_enclave_computations)),
                signature,
            ];
            conn.execute(&sql, vec![row]).await?;
        }
    }

    let key = match keys.column_encryption_key(cek) {
        Some(key) => key,
        None => Cek::generate().map_err(|e| Error::Internal(format!("generating a CEK: {e}")))?,
    };
    let wrapped = wrap_cek(&key, &private, &cmk.key_path)
        .map_err(|e| Error::Internal(format!("wrapping a CEK: {e}")))?;
    let sql = format!(
        "INSERT INTO {COLUMN_ENCRYPTION_KEYS} (name, cmk_name, encrypted_value, algorithm) \
         VALUES ({}, {}, {}, {})",
        d.placeholder(1),
        d.placeholder(2),
        d.placeholder(3),
        d.placeholder(4),
    );
    let row = vec![
        Value::Text(cek.to_owned()),
        Value::Text(cmk.name.clone()),
        Value::Bytes(wrapped),
        Value::Text(CEK_ALGORITHM.to_owned()),
    ];
    conn.execute(&sql, vec![row]).await?;
    tracing::debug!("created a column encryption key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SqlDatabase;
    use crate::keys::InMemoryColumnMasterKeys;
    use cloister_colenc::Cmk;

    fn test_cmk() -> Cmk {
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../testdata/always-encrypted/swisscom/always-encrypted.pem"
        ))
        .unwrap();
        Cmk::from_pem(&pem).unwrap()
    }

    #[tokio::test]
    async fn create_then_resolve_a_cek_and_refuse_tampered_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqlDatabase::sqlite(dir.path().join("k.db"));
        let mut conn = db.connect().await.unwrap();
        conn.batch(&create_statements(conn.dialect()))
            .await
            .unwrap();
        let keys = InMemoryColumnMasterKeys::new().with_key("TEST", "path/one", test_cmk());
        let cmk =
            ColumnMasterKeyDefinition::new("CMK1", "TEST", "path/one").enclave_computations(true);

        let created = create_cek(&mut *conn, "CEK1", &cmk, &keys).await.unwrap();
        let resolved = resolve_cek(&mut *conn, "CEK1", &keys)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(created, resolved);
        assert!(
            resolve_cek(&mut *conn, "nope", &keys)
                .await
                .unwrap()
                .is_none()
        );

        // The same name with another path is refused.
        let other = ColumnMasterKeyDefinition::new("CMK1", "TEST", "path/two");
        let keys2 = InMemoryColumnMasterKeys::new().with_key("TEST", "path/two", test_cmk());
        assert!(matches!(
            create_cek(&mut *conn, "CEK2", &other, &keys2).await,
            Err(Error::CmkMismatch { .. })
        ));

        // Flipping the enclave flag breaks the metadata signature.
        conn.batch(&format!(
            "UPDATE {COLUMN_MASTER_KEYS} SET allow_enclave_computations = 0"
        ))
        .await
        .unwrap();
        assert!(matches!(
            resolve_cek(&mut *conn, "CEK1", &keys).await,
            Err(Error::CmkMetadata { .. })
        ));

        // Without the CMK the error names the key path the database asks for.
        let none = InMemoryColumnMasterKeys::new();
        match resolve_cek(&mut *conn, "CEK1", &none).await {
            Err(Error::NoColumnMasterKey { key_paths, .. }) => {
                assert_eq!(key_paths, ["TEST: path/one"]);
            }
            other => panic!("{other:?}"),
        }
    }
}

//! Column encryption key rotation: re-encrypt columns under another CEK, in one transaction.
//!
//! [`rotate_cek`] registers the new CEK if the database does not have it yet (under the given
//! CMK, wrapping the key the provider holds under that name or a fresh one), decrypts every
//! cell of the named columns with their current CEK, encrypts the plaintext under the new one
//! with the same encryption type, and points `cloister_encrypted_columns` at the new CEK. It all
//! commits at once or not at all: a failure (a cell that does not decrypt, a missing key) leaves
//! the table as it was.
//!
//! Cells are rewritten by value (`UPDATE t SET c = new WHERE c = old`, once per distinct old
//! cell), so the table needs no key column; equal deterministic cells stay equal. That is one
//! statement per distinct cell: fine for the tables Always Encrypted protects (identifiers,
//! salaries, SSNs), slow for millions of rows.

use cloister_colenc::CellCipher;

use super::Error;
use super::database::{Conn, Dialect, Kind, ReadAs, SqlDatabase, Value};
use super::keys::{ColumnMasterKeyDefinition, ColumnMasterKeyProvider};
use super::metadata::{self, ENCRYPTED_COLUMNS};

/// What [`rotate_cek`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Rotation {
    /// The table.
    pub table: String,
    /// `(column, previous CEK)` for each column rotated.
    pub columns: Vec<(String, String)>,
    /// The CEK the columns are now encrypted under.
    pub new_cek: String,
    /// Whether the new CEK was created (registered) by this rotation.
    pub created: bool,
    /// The number of distinct cells re-encrypted.
    pub cells: u64,
}

/// Re-encrypt `columns` of `table` under the CEK `new_cek`, atomically (see the
/// [module docs](self)). A new CEK is created under `cmk` (registered if needed) with the CMK
/// from `keys`; the current CEKs are unwrapped with `keys` as a reader would.
///
/// Errors: [`Error::NoSuchTable`], [`Error::NoSuchColumn`] (not an encrypted column),
/// [`Error::InvalidMetadata`] (a column is already under `new_cek`), [`Error::UnknownCek`],
/// [`Error::NoColumnMasterKey`], [`Error::CekUnwrap`], [`Error::Cell`], [`Error::Database`].
#[tracing::instrument(skip_all, fields(db = db.kind(), table = %table, new_cek = %new_cek))]
pub async fn rotate_cek(
    db: &SqlDatabase,
    table: &str,
    columns: &[String],
    new_cek: &str,
    cmk: &ColumnMasterKeyDefinition,
    keys: &dyn ColumnMasterKeyProvider,
) -> Result<Rotation, Error> {
    let mut conn = db.connect().await?;
    match rotate_in(&mut *conn, table, columns, new_cek, cmk, keys).await {
        Ok(rotation) => {
            conn.batch("COMMIT").await?;
            tracing::info!(cells = rotation.cells, "rotated a column encryption key");
            Ok(rotation)
        }
        Err(e) => {
            if let Err(rollback) = conn.batch("ROLLBACK").await {
                tracing::debug!(error = %rollback, "rollback after a failed rotation");
            }
            Err(e)
        }
    }
}

async fn rotate_in(
    conn: &mut dyn Conn,
    table: &str,
    columns: &[String],
    new_cek: &str,
    cmk: &ColumnMasterKeyDefinition,
    keys: &dyn ColumnMasterKeyProvider,
) -> Result<Rotation, Error> {
    let d = conn.dialect();
    conn.batch(d.begin()).await?;
    if !metadata::present(conn).await? || conn.columns(table).await?.is_none() {
        return Err(Error::NoSuchTable {
            table: table.to_owned(),
        });
    }
    // PostgreSQL's BEGIN reads at READ COMMITTED and locks nothing: keep writers out until the
    // rotation commits, or a row written meanwhile would stay under the old CEK while the
    // metadata names the new one. (SQLite's BEGIN IMMEDIATE already holds the write lock.)
    if matches!(d, Dialect::Postgres) {
        conn.batch(&format!(
            "LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE",
            d.quote(table)
        ))
        .await?;
    }
    let encrypted = metadata::encrypted_columns(conn, table).await?;
    let mut targets = Vec::new();
    for name in columns {
        let Some(column) = encrypted.iter().find(|c| &c.column_name == name) else {
            return Err(Error::NoSuchColumn {
                table: table.to_owned(),
                column: name.clone(),
            });
        };
        if column.cek_name.eq_ignore_ascii_case(new_cek) {
            return Err(Error::metadata(
                format!("{table}.{name}"),
                format!("is already encrypted under {new_cek}"),
            ));
        }
        targets.push(column.clone());
    }
    let (new_key, created) = match metadata::resolve_cek(conn, new_cek, keys).await? {
        Some(key) => (key, false),
        None => (metadata::create_cek(conn, new_cek, cmk, keys).await?, true),
    };
    let new_cipher = CellCipher::new(&new_key);
    let mut cells = 0;
    let mut rotated = Vec::new();
    for column in targets {
        let old_key = metadata::resolve_cek(conn, &column.cek_name, keys)
            .await?
            .ok_or_else(|| Error::UnknownCek {
                cek: column.cek_name.clone(),
            })?;
        let old_cipher = CellCipher::new(&old_key);
        let col = d.quote(&column.column_name);
        let tbl = d.quote(table);
        let old_cells = conn
            .query(
                &format!("SELECT DISTINCT {col} FROM {tbl} WHERE {col} IS NOT NULL"),
                Vec::new(),
                vec![ReadAs::new(column.column_name.clone(), Kind::Bytes)].into(),
            )
            .await?;
        let mut updates = Vec::with_capacity(old_cells.len());
        for row in old_cells {
            let Some(Value::Bytes(old)) = row.into_iter().next() else {
                return Err(Error::UnexpectedValue {
                    column: column.column_name.clone(),
                    expected: "a binary cell",
                });
            };
            let cell_error = |source| Error::Cell {
                table: table.to_owned(),
                column: column.column_name.clone(),
                source,
            };
            let plaintext = zeroize::Zeroizing::new(old_cipher.decrypt(&old).map_err(cell_error)?);
            let new = new_cipher
                .encrypt(&plaintext, column.encryption_type)
                .map_err(cell_error)?;
            updates.push(vec![Value::Bytes(new), Value::Bytes(old)]);
        }
        cells += updates.len() as u64;
        if !updates.is_empty() {
            conn.execute(
                &format!(
                    "UPDATE {tbl} SET {col} = {} WHERE {col} = {}",
                    d.placeholder(1),
                    d.placeholder(2)
                ),
                updates,
            )
            .await?;
        }
        conn.execute(
            &format!(
                "UPDATE {ENCRYPTED_COLUMNS} SET cek_name = {} WHERE table_name = {} AND column_name = {}",
                d.placeholder(1),
                d.placeholder(2),
                d.placeholder(3)
            ),
            vec![vec![
                Value::Text(new_cek.to_owned()),
                Value::Text(table.to_owned()),
                Value::Text(column.column_name.clone()),
            ]],
        )
        .await?;
        rotated.push((column.column_name, column.cek_name));
    }
    Ok(Rotation {
        table: table.to_owned(),
        columns: rotated,
        new_cek: new_cek.to_owned(),
        created,
        cells,
    })
}

/// One wrapped value of a column encryption key, as `cloister_column_encryption_keys` holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnEncryptionKeyRow {
    /// The CEK's name.
    pub name: String,
    /// The CMK that wraps this value.
    pub cmk_name: String,
    /// The `encrypted_value` (not secret without the CMK).
    pub encrypted_value: Vec<u8>,
}

/// The key metadata of a database: what `sys.column_master_keys`,
/// `sys.column_encryption_key_values` and the encrypted columns of `sys.columns` would show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyMetadata {
    /// The column master keys.
    pub column_master_keys: Vec<super::ColumnMasterKeyRow>,
    /// The wrapped column encryption keys.
    pub column_encryption_keys: Vec<ColumnEncryptionKeyRow>,
    /// The encrypted columns, by table.
    pub encrypted_columns: Vec<super::EncryptedColumn>,
}

/// Read the key metadata of `db` (empty if it has none). No key is unwrapped.
pub async fn key_metadata(db: &SqlDatabase) -> Result<KeyMetadata, Error> {
    let mut conn = db.connect().await?;
    let conn = &mut *conn;
    if !metadata::present(conn).await? {
        return Ok(KeyMetadata::default());
    }
    let mut out = KeyMetadata::default();
    let names = conn
        .query(
            &format!(
                "SELECT name FROM {} ORDER BY name",
                metadata::COLUMN_MASTER_KEYS
            ),
            Vec::new(),
            vec![ReadAs::new("name", Kind::Text)].into(),
        )
        .await?;
    for row in names {
        if let Some(Value::Text(name)) = row.into_iter().next()
            && let Some(cmk) = metadata::column_master_key(conn, &name).await?
        {
            out.column_master_keys.push(cmk);
        }
    }
    let ceks = conn
        .query(
            &format!(
                "SELECT name, cmk_name, encrypted_value FROM {} ORDER BY name, cmk_name",
                metadata::COLUMN_ENCRYPTION_KEYS
            ),
            Vec::new(),
            vec![
                ReadAs::new("name", Kind::Text),
                ReadAs::new("cmk_name", Kind::Text),
                ReadAs::new("encrypted_value", Kind::Bytes),
            ]
            .into(),
        )
        .await?;
    for row in ceks {
        if let [
            Value::Text(name),
            Value::Text(cmk_name),
            Value::Bytes(encrypted_value),
        ] = <[Value; 3]>::try_from(row)
            .map_err(|_| Error::Internal("query returned the wrong column count".into()))?
        {
            out.column_encryption_keys.push(ColumnEncryptionKeyRow {
                name,
                cmk_name,
                encrypted_value,
            });
        }
    }
    let tables = conn
        .query(
            &format!("SELECT DISTINCT table_name FROM {ENCRYPTED_COLUMNS} ORDER BY table_name"),
            Vec::new(),
            vec![ReadAs::new("table_name", Kind::Text)].into(),
        )
        .await?;
    for row in tables {
        if let Some(Value::Text(table)) = row.into_iter().next() {
            out.encrypted_columns
                .extend(metadata::encrypted_columns(conn, &table).await?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        CLOISTER_KEY_STORE, ColumnEncryption, EncryptedSqlTable, InMemoryColumnMasterKeys, SqlSink,
    };
    use cloister_colenc::Cmk;
    use datafusion::prelude::SessionContext;
    use std::sync::Arc;

    #[tokio::test]
    async fn rotation_reencrypts_atomically_and_keeps_values() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqlDatabase::sqlite(dir.path().join("r.db"));
        let keys = Arc::new(InMemoryColumnMasterKeys::new().with_key(
            CLOISTER_KEY_STORE,
            "CMK1",
            Cmk::generate(2048).unwrap(),
        ));
        let cmk = ColumnMasterKeyDefinition::new("CMK1", CLOISTER_KEY_STORE, "CMK1");
        let ctx = SessionContext::new();
        let frame = ctx
            .sql("SELECT * FROM (VALUES (1, 'a', 10), (2, 'a', 20), (3, 'b', 30)) AS t(id, tag, pay)")
            .await
            .unwrap();
        SqlSink::new(db.clone(), "t", keys.clone())
            .encrypt(ColumnEncryption::deterministic("tag", "CEK1"))
            .encrypt(ColumnEncryption::randomized("pay", "CEK1"))
            .create_keys_under(cmk.clone())
            .write(frame.execute_stream().await.unwrap())
            .await
            .unwrap();
        let read = |db: SqlDatabase, keys: Arc<InMemoryColumnMasterKeys>| async move {
            let table = EncryptedSqlTable::open(db, "t", keys.as_ref())
                .await
                .unwrap();
            let ctx = SessionContext::new();
            ctx.register_table("t", Arc::new(table)).unwrap();
            let batches = ctx
                .sql("SELECT id, tag, pay FROM t ORDER BY id")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        let before = read(db.clone(), keys.clone()).await;

        let columns = vec!["tag".to_owned(), "pay".to_owned()];
        let r = rotate_cek(&db, "t", &columns, "CEK2", &cmk, keys.as_ref())
            .await
            .unwrap();
        assert!(r.created);
        assert_eq!(
            r.cells,
            2 + 3,
            "two distinct deterministic cells, three random"
        );
        assert_eq!(read(db.clone(), keys.clone()).await, before);
        let meta = key_metadata(&db).await.unwrap();
        assert!(meta.encrypted_columns.iter().all(|c| c.cek_name == "CEK2"));
        assert_eq!(meta.column_encryption_keys.len(), 2);
        assert_eq!(meta.column_master_keys[0].key_path, "CMK1");

        // Again to CEK2: refused, and a failed rotation changes nothing.
        assert!(matches!(
            rotate_cek(&db, "t", &columns, "CEK2", &cmk, keys.as_ref()).await,
            Err(Error::InvalidMetadata { .. })
        ));
        let none = InMemoryColumnMasterKeys::new();
        assert!(matches!(
            rotate_cek(&db, "t", &columns, "CEK3", &cmk, &none).await,
            Err(Error::NoColumnMasterKey { .. })
        ));
        assert_eq!(key_metadata(&db).await.unwrap(), meta);
        assert!(matches!(
            rotate_cek(&db, "t", &["id".to_owned()], "CEK3", &cmk, keys.as_ref()).await,
            Err(Error::NoSuchColumn { .. })
        ));
    }
}

//! Parquet modular encryption for DataFusion, keyed by key *ids*.
//!
//! [`CloisterEncryptionFactory`] is a DataFusion [`EncryptionFactory`] registered on the
//! session's runtime under [`FACTORY_ID`]. SQL names it, and configures it with options that
//! hold key ids only:
//!
//! ```sql
//! COPY (SELECT …) TO 'out/' STORED AS PARQUET OPTIONS (
//!   'format.crypto.factory_id' 'cloister',
//!   'format.crypto.factory_options.footer_key' 'kf',
//!   'format.crypto.factory_options.column_keys' 'kc1:ssn,salary;kc2:name');
//! CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION 'out/'
//!   OPTIONS ('format.crypto.factory_id' 'cloister');
//! ```
//!
//! The key bytes come from the [`KeyProvider`] the factory was built with. Option names are
//! lower case (DataFusion lower-cases option keys); column names therefore travel in values:
//!
//! | option | values | meaning |
//! | --- | --- | --- |
//! | `key_management` | `raw` (default), `kmt` | `raw`: the footer / column keys are the keys named; their ids are stored as key metadata. `kmt`: fresh random data keys per file, wrapped by the named *master* keys as Parquet key-management-tools material (readable by Spark, parquet-mr, pyarrow) |
//! | `footer_key` | key id | footer key (raw) or footer master key (kmt); required for writing |
//! | `column_keys` | `id:col,col;id:col` | column keys, in parquet-mr's `parquet.encryption.column.keys` syntax; without it every column is encrypted with the footer key ("uniform encryption") |
//! | `plaintext_footer` | `false` (default), `true` | write a signed plaintext footer (legacy readers can read unencrypted columns) |
//! | `algorithm` | `AES_GCM_V1` (default), `AES_GCM_CTR_V1` | the Parquet cipher; the Parquet crate writes (and reads) only `AES_GCM_V1`, so CTR is refused with [`Error::Unsupported`] |
//! | `aad_prefix` | text | AAD prefix bound into every module (writing), or supplied for files that do not store theirs (reading) |
//! | `store_aad_prefix` | `true` (default), `false` | whether the written file stores the AAD prefix |
//! | `double_wrapping` | `true` (default), `false` | kmt: wrap data keys with a per-file KEK wrapped by the master key |
//! | `data_key_length_bits` | `128` (default), `256` | kmt: length of generated data keys |
//!
//! Reading needs no key options at all: the key retriever resolves every key from the file's
//! own key metadata — a raw key id, or KMT key material — through the provider.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::config::{EncryptionFactoryOptions, ParquetEncryptionOptions};
use datafusion::error::Result as DfResult;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::parquet::encryption::decrypt::{FileDecryptionProperties, KeyRetriever};
use datafusion::parquet::encryption::encrypt::FileEncryptionProperties;
use object_store::path::Path;

use crate::Error;
use crate::keys::{DataKey, KeyProvider};
use crate::kmt::{KeyMaterial, KmtKeyProvider, generate_data_key};

/// The id under which the engine registers [`CloisterEncryptionFactory`]
/// (`'format.crypto.factory_id' 'cloister'`).
pub const FACTORY_ID: &str = "cloister";

/// How the keys named in the options become Parquet keys and key metadata.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyManagement {
    /// The named keys encrypt the file; their ids are the key metadata.
    #[default]
    Raw,
    /// The named keys are master keys wrapping fresh data keys (Parquet KMT key material).
    Kmt,
}

/// The Parquet encryption algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Algorithm {
    /// `AES_GCM_V1`: every module AES-GCM.
    #[default]
    AesGcmV1,
    /// `AES_GCM_CTR_V1`: page data AES-CTR, metadata AES-GCM (not supported by the Parquet crate).
    AesGcmCtrV1,
}

/// Validated options of [`CloisterEncryptionFactory`]; see the [module docs](self) for the
/// option names. Holds key ids only.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncryptionOptions {
    key_management: KeyManagement,
    footer_key: Option<String>,
    /// Key id → columns, in the order given.
    column_keys: Vec<(String, Vec<String>)>,
    plaintext_footer: bool,
    algorithm: Algorithm,
    aad_prefix: Option<String>,
    store_aad_prefix: bool,
    double_wrapping: bool,
    data_key_len: usize,
}

const OPTION_NAMES: [&str; 9] = [
    "key_management",
    "footer_key",
    "column_keys",
    "plaintext_footer",
    "algorithm",
    "aad_prefix",
    "store_aad_prefix",
    "double_wrapping",
    "data_key_length_bits",
];

impl EncryptionOptions {
    /// Options for writing with `footer_key` (a key id) and defaults otherwise.
    pub fn new(footer_key: impl Into<String>) -> Self {
        Self {
            footer_key: Some(footer_key.into()),
            ..Self::reading()
        }
    }

    /// Options for reading only (no key needs naming).
    pub fn reading() -> Self {
        Self {
            store_aad_prefix: true,
            double_wrapping: true,
            data_key_len: 16,
            ..Self::default()
        }
    }

    /// Use key-management-tools key material: the named keys become master keys.
    pub fn kmt(mut self) -> Self {
        self.key_management = KeyManagement::Kmt;
        self
    }

    /// Encrypt `columns` with the key `key_id`.
    pub fn column_key(mut self, key_id: impl Into<String>, columns: &[&str]) -> Self {
        self.column_keys.push((
            key_id.into(),
            columns.iter().map(|c| (*c).to_owned()).collect(),
        ));
        self
    }

    /// Write a signed plaintext footer.
    pub fn plaintext_footer(mut self, plaintext: bool) -> Self {
        self.plaintext_footer = plaintext;
        self
    }

    /// Bind `prefix` into every module's AAD; `store` says whether the file keeps it.
    pub fn aad_prefix(mut self, prefix: impl Into<String>, store: bool) -> Self {
        self.aad_prefix = Some(prefix.into());
        self.store_aad_prefix = store;
        self
    }

    /// KMT: wrap data keys directly with the master key instead of through a KEK.
    pub fn single_wrapping(mut self) -> Self {
        self.double_wrapping = false;
        self
    }

    /// KMT: generate 256-bit data keys instead of 128-bit ones.
    pub fn data_keys_256(mut self) -> Self {
        self.data_key_len = 32;
        self
    }

    /// The key management mode.
    pub fn key_management(&self) -> KeyManagement {
        self.key_management
    }

    /// Parse DataFusion's `format.crypto.factory_options.*` map; unknown names are refused.
    pub fn from_factory_options(options: &EncryptionFactoryOptions) -> Result<Self, Error> {
        Self::from_map(&options.options)
    }

    /// The columns named in `column_keys` (empty: uniform encryption, every column under the
    /// footer key).
    pub fn encrypted_columns(&self) -> HashSet<String> {
        self.column_keys
            .iter()
            .flat_map(|(_, columns)| columns.iter().cloned())
            .collect()
    }

    pub(crate) fn from_map(map: &HashMap<String, String>) -> Result<Self, Error> {
        let mut out = Self::reading();
        // Sorted, so that the first error reported does not depend on hash order.
        let sorted: BTreeMap<&String, &String> = map.iter().collect();
        for (name, value) in sorted {
            let value = value.trim();
            match name.as_str() {
                "key_management" => {
                    out.key_management = match value.to_ascii_lowercase().as_str() {
                        "raw" => KeyManagement::Raw,
                        "kmt" => KeyManagement::Kmt,
                        _ => return Err(Error::option(name, "expected raw or kmt")),
                    }
                }
                "footer_key" => out.footer_key = Some(non_empty(name, value)?.to_owned()),
                "column_keys" => out.column_keys = parse_column_keys(value)?,
                "plaintext_footer" => out.plaintext_footer = parse_bool(name, value)?,
                "algorithm" => {
                    out.algorithm = match value.to_ascii_uppercase().as_str() {
                        "AES_GCM_V1" => Algorithm::AesGcmV1,
                        "AES_GCM_CTR_V1" => Algorithm::AesGcmCtrV1,
                        _ => {
                            return Err(Error::option(
                                name,
                                "expected AES_GCM_V1 or AES_GCM_CTR_V1",
                            ));
                        }
                    }
                }
                "aad_prefix" => out.aad_prefix = Some(value.to_owned()),
                "store_aad_prefix" => out.store_aad_prefix = parse_bool(name, value)?,
                "double_wrapping" => out.double_wrapping = parse_bool(name, value)?,
                "data_key_length_bits" => {
                    out.data_key_len = match value {
                        "128" => 16,
                        "256" => 32,
                        _ => return Err(Error::option(name, "expected 128 or 256")),
                    }
                }
                _ => {
                    return Err(Error::option(
                        name,
                        format!("unknown option; known: {}", OPTION_NAMES.join(", ")),
                    ));
                }
            }
        }
        let mut seen = HashSet::new();
        for column in out.column_keys.iter().flat_map(|(_, cols)| cols) {
            if !seen.insert(column) {
                return Err(Error::option(
                    "column_keys",
                    format!("column {column:?} is given more than one key"),
                ));
            }
        }
        Ok(out)
    }

    /// The options as DataFusion's factory-options map (the inverse of
    /// [`from_factory_options`](Self::from_factory_options)).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            map.insert(k.to_owned(), v);
        };
        put(
            "key_management",
            match self.key_management {
                KeyManagement::Raw => "raw",
                KeyManagement::Kmt => "kmt",
            }
            .into(),
        );
        if let Some(footer) = &self.footer_key {
            put("footer_key", footer.clone());
        }
        if !self.column_keys.is_empty() {
            let spec: Vec<String> = self
                .column_keys
                .iter()
                .map(|(id, cols)| format!("{id}:{}", cols.join(",")))
                .collect();
            put("column_keys", spec.join(";"));
        }
        put("plaintext_footer", self.plaintext_footer.to_string());
        put(
            "algorithm",
            match self.algorithm {
                Algorithm::AesGcmV1 => "AES_GCM_V1",
                Algorithm::AesGcmCtrV1 => "AES_GCM_CTR_V1",
            }
            .into(),
        );
        if let Some(prefix) = &self.aad_prefix {
            put("aad_prefix", prefix.clone());
        }
        put("store_aad_prefix", self.store_aad_prefix.to_string());
        put("double_wrapping", self.double_wrapping.to_string());
        put("data_key_length_bits", (self.data_key_len * 8).to_string());
        map
    }

    /// Point `crypto` (a table's or a write's Parquet encryption options) at the Cloister
    /// factory with these options.
    pub fn apply(&self, crypto: &mut ParquetEncryptionOptions) {
        crypto.factory_id = Some(FACTORY_ID.to_owned());
        crypto.factory_options.options = self.to_map().into_iter().collect();
    }

    /// The options as a SQL `OPTIONS (…)` list, e.g. for `COPY … OPTIONS (<this>)`.
    pub fn to_sql_options(&self) -> String {
        let mut parts = vec![format!("'format.crypto.factory_id' '{FACTORY_ID}'")];
        for (k, v) in self.to_map() {
            parts.push(format!(
                "'format.crypto.factory_options.{k}' '{}'",
                v.replace('\'', "''")
            ));
        }
        parts.join(", ")
    }
}

fn non_empty<'a>(name: &str, value: &'a str) -> Result<&'a str, Error> {
    if value.is_empty() {
        Err(Error::option(name, "must not be empty"))
    } else {
        Ok(value)
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, Error> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Error::option(name, "expected true or false")),
    }
}

/// `id:col,col;id:col` (parquet-mr's `parquet.encryption.column.keys` syntax).
fn parse_column_keys(spec: &str) -> Result<Vec<(String, Vec<String>)>, Error> {
    let mut out = Vec::new();
    for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, columns)) = entry.split_once(':') else {
            return Err(Error::option(
                "column_keys",
                format!("entry {entry:?} is not key_id:column,column"),
            ));
        };
        let id = id.trim();
        let columns: Vec<String> = columns
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        if id.is_empty() || columns.is_empty() {
            return Err(Error::option(
                "column_keys",
                format!("entry {entry:?} needs a key id and at least one column"),
            ));
        }
        out.push((id.to_owned(), columns));
    }
    Ok(out)
}

/// DataFusion [`EncryptionFactory`] resolving key ids through a [`KeyProvider`].
#[derive(Clone)]
pub struct CloisterEncryptionFactory {
    keys: KmtKeyProvider,
}

impl CloisterEncryptionFactory {
    /// A factory resolving key ids (and the master keys of KMT material) through `keys`.
    pub fn new(keys: Arc<dyn KeyProvider>) -> Self {
        Self {
            keys: KmtKeyProvider::new(keys),
        }
    }

    /// Encryption properties for writing a file with `schema` under `options`.
    #[tracing::instrument(level = "debug", skip_all, fields(footer_key = ?options.footer_key, mode = ?options.key_management))]
    pub fn encryption_properties(
        &self,
        options: &EncryptionOptions,
        schema: &SchemaRef,
    ) -> Result<Arc<FileEncryptionProperties>, Error> {
        if options.algorithm == Algorithm::AesGcmCtrV1 {
            return Err(Error::Unsupported {
                feature: "writing AES_GCM_CTR_V1 (the Parquet crate implements AES_GCM_V1 only)",
            });
        }
        let footer_id = options.footer_key.as_deref().ok_or_else(|| {
            Error::option(
                "footer_key",
                "writing encrypted Parquet needs a footer key id",
            )
        })?;
        for (_, columns) in &options.column_keys {
            for column in columns {
                let top = column.split('.').next().unwrap_or(column);
                if schema.field_with_name(top).is_err() {
                    return Err(Error::option(
                        "column_keys",
                        format!("column {column:?} is not in the written schema"),
                    ));
                }
            }
        }

        let mut wrapper = self.keys.wrapper(options.double_wrapping);
        // (key, key metadata) for a key id: the key itself (raw) or a fresh wrapped data key.
        let mut resolve = |key_id: &str, is_footer: bool| -> Result<(DataKey, Vec<u8>), Error> {
            match options.key_management {
                KeyManagement::Raw => {
                    let key = self.keys.inner().key(key_id)?;
                    crate::kmt::gcm_key(key.expose())?; // refuse AES-192 before Parquet does
                    Ok((key, key_id.as_bytes().to_vec()))
                }
                KeyManagement::Kmt => {
                    let dek = generate_data_key(options.data_key_len)?;
                    let material: KeyMaterial = wrapper.wrap(&dek, key_id, is_footer)?;
                    Ok((dek, material.to_json()?.into_bytes()))
                }
            }
        };

        let (footer_key, footer_metadata) = resolve(footer_id, true)?;
        let mut builder = FileEncryptionProperties::builder(footer_key.expose().to_vec())
            .with_footer_key_metadata(footer_metadata)
            .with_plaintext_footer(options.plaintext_footer);
        for (key_id, columns) in &options.column_keys {
            for column in columns {
                // KMT: a fresh data key per column, as parquet-mr does.
                let (key, metadata) = resolve(key_id, false)?;
                builder =
                    builder.with_column_key_and_metadata(column, key.expose().to_vec(), metadata);
            }
        }
        if let Some(prefix) = &options.aad_prefix {
            builder = builder
                .with_aad_prefix(prefix.as_bytes().to_vec())
                .with_aad_prefix_storage(options.store_aad_prefix);
        }
        builder
            .build()
            .map_err(|_| Error::Internal("building encryption properties"))
    }

    /// Decryption properties for reading any file whose key metadata the provider resolves.
    pub fn decryption_properties(
        &self,
        options: &EncryptionOptions,
    ) -> Result<Arc<FileDecryptionProperties>, Error> {
        let retriever = Arc::new(ProviderKeyRetriever {
            keys: self.keys.clone(),
        });
        let mut builder = FileDecryptionProperties::with_key_retriever(retriever);
        if let Some(prefix) = &options.aad_prefix {
            builder = builder.with_aad_prefix(prefix.as_bytes().to_vec());
        }
        builder
            .build()
            .map_err(|_| Error::Internal("building decryption properties"))
    }
}

impl fmt::Debug for CloisterEncryptionFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CloisterEncryptionFactory")
            .field("keys", self.keys.inner())
            .finish()
    }
}

#[async_trait]
impl EncryptionFactory for CloisterEncryptionFactory {
    async fn get_file_encryption_properties(
        &self,
        config: &EncryptionFactoryOptions,
        schema: &SchemaRef,
        file_path: &Path,
    ) -> DfResult<Option<Arc<FileEncryptionProperties>>> {
        let options = EncryptionOptions::from_factory_options(config)?;
        tracing::debug!(
            path = %file_path,
            column_keys = options.column_keys.len(),
            "encrypting Parquet file"
        );
        Ok(Some(self.encryption_properties(&options, schema)?))
    }

    async fn get_file_decryption_properties(
        &self,
        config: &EncryptionFactoryOptions,
        file_path: &Path,
    ) -> DfResult<Option<Arc<FileDecryptionProperties>>> {
        let options = EncryptionOptions::from_factory_options(config)?;
        tracing::debug!(path = %file_path, "decrypting Parquet file");
        Ok(Some(self.decryption_properties(&options)?))
    }
}

/// Parquet [`KeyRetriever`] resolving key metadata — a key id or KMT key material — through the
/// provider.
struct ProviderKeyRetriever {
    keys: KmtKeyProvider,
}

impl KeyRetriever for ProviderKeyRetriever {
    fn retrieve_key(&self, key_metadata: &[u8]) -> datafusion::parquet::errors::Result<Vec<u8>> {
        if key_metadata.is_empty() {
            return Err(Error::UnknownKey {
                key_id: String::new(),
            }
            .into());
        }
        let key = if KeyMaterial::is_key_material(key_metadata) {
            self.keys
                .unwrap_material(&KeyMaterial::parse(key_metadata).map_err(Error::from)?)?
        } else {
            let key_id = std::str::from_utf8(key_metadata).map_err(|_| {
                Error::malformed("key metadata is neither key material nor a UTF-8 key id")
            })?;
            self.keys.inner().key(key_id)?
        };
        // The Parquet crate takes keys as plain `Vec<u8>` and keeps them for the file's life.
        Ok(key.expose().to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parses_all_options() {
        let opts = EncryptionOptions::from_map(&map(&[
            ("key_management", "KMT"),
            ("footer_key", "kf"),
            ("column_keys", "kc1: a, b ; kc2:c"),
            ("plaintext_footer", "true"),
            ("algorithm", "aes_gcm_v1"),
            ("aad_prefix", "tester"),
            ("store_aad_prefix", "false"),
            ("double_wrapping", "false"),
            ("data_key_length_bits", "256"),
        ]))
        .unwrap();
        let expected = EncryptionOptions::new("kf")
            .kmt()
            .column_key("kc1", &["a", "b"])
            .column_key("kc2", &["c"])
            .plaintext_footer(true)
            .aad_prefix("tester", false)
            .single_wrapping()
            .data_keys_256();
        assert_eq!(opts, expected);
        // And back.
        let round = EncryptionOptions::from_map(&expected.to_map().into_iter().collect()).unwrap();
        assert_eq!(round, expected);
    }

    #[rstest]
    #[case::unknown(("footer_key_as_hex", "00"), "footer_key_as_hex")]
    #[case::bad_mode(("key_management", "vault"), "key_management")]
    #[case::bad_bool(("plaintext_footer", "yes"), "plaintext_footer")]
    #[case::bad_algorithm(("algorithm", "AES_CBC"), "algorithm")]
    #[case::bad_bits(("data_key_length_bits", "192"), "data_key_length_bits")]
    #[case::bad_columns(("column_keys", "kc1"), "column_keys")]
    #[case::empty_columns(("column_keys", "kc1:"), "column_keys")]
    #[case::duplicate_column(("column_keys", "kc1:a;kc2:a"), "column_keys")]
    #[case::empty_footer(("footer_key", " "), "footer_key")]
    fn refuses_invalid_options(#[case] pair: (&str, &str), #[case] expected: &str) {
        let err = EncryptionOptions::from_map(&map(&[pair])).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidOption { option, .. } if option == expected),
            "{err:?}"
        );
    }

    #[test]
    fn sql_options_name_the_factory_and_ids_only() {
        let sql = EncryptionOptions::new("kf")
            .column_key("kc1", &["it's"])
            .to_sql_options();
        assert!(sql.starts_with("'format.crypto.factory_id' 'cloister'"));
        assert!(sql.contains("'format.crypto.factory_options.column_keys' 'kc1:it''s'"));
    }

    fn factory() -> CloisterEncryptionFactory {
        let keys = crate::InMemoryKeyProvider::new()
            .with_key("kf", vec![1; 16])
            .unwrap()
            .with_key("k192", vec![2; 24])
            .unwrap();
        CloisterEncryptionFactory::new(Arc::new(keys))
    }

    fn schema() -> SchemaRef {
        use datafusion::arrow::datatypes::{DataType, Field, Schema};
        Arc::new(Schema::new(vec![Field::new("a", DataType::Int32, false)]))
    }

    #[test]
    fn ctr_is_unsupported_for_writing() {
        let mut opts = EncryptionOptions::new("kf");
        opts.algorithm = Algorithm::AesGcmCtrV1;
        assert!(matches!(
            factory().encryption_properties(&opts, &schema()),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn aes192_is_unsupported_for_writing() {
        assert!(matches!(
            factory().encryption_properties(&EncryptionOptions::new("k192"), &schema()),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn unknown_column_and_missing_footer_are_invalid() {
        let opts = EncryptionOptions::new("kf").column_key("kf", &["nope"]);
        assert!(matches!(
            factory().encryption_properties(&opts, &schema()),
            Err(Error::InvalidOption { option, .. }) if option == "column_keys"
        ));
        assert!(matches!(
            factory().encryption_properties(&EncryptionOptions::reading(), &schema()),
            Err(Error::InvalidOption { option, .. }) if option == "footer_key"
        ));
    }

    #[test]
    fn unknown_key_id_is_refused() {
        assert!(matches!(
            factory().encryption_properties(&EncryptionOptions::new("nope"), &schema()),
            Err(Error::UnknownKey { key_id }) if key_id == "nope"
        ));
    }

    #[test]
    fn raw_writes_key_ids_as_metadata() {
        let props = factory()
            .encryption_properties(
                &EncryptionOptions::new("kf").column_key("kf", &["a"]),
                &schema(),
            )
            .unwrap();
        assert_eq!(props.footer_key_metadata(), Some(&b"kf".to_vec()));
        let (columns, _keys, metadata) = props.column_keys();
        assert_eq!(columns, vec!["a".to_owned()]);
        assert_eq!(metadata, vec![b"kf".to_vec()]);
    }

    #[test]
    fn retriever_resolves_ids_and_material_and_refuses_garbage() {
        let f = factory();
        let retriever = ProviderKeyRetriever {
            keys: f.keys.clone(),
        };
        assert_eq!(retriever.retrieve_key(b"kf").unwrap(), vec![1; 16]);
        let props = f
            .encryption_properties(&EncryptionOptions::new("kf").kmt(), &schema())
            .unwrap();
        let material = props.footer_key_metadata().unwrap();
        assert_eq!(
            &retriever.retrieve_key(material).unwrap(),
            props.footer_key()
        );
        for bad in [&b""[..], b"\xff\xfe", b"nope", b"{not json"] {
            let err = retriever.retrieve_key(bad).unwrap_err();
            assert!(Error::find_in(&err).is_some(), "{err}");
        }
    }
}

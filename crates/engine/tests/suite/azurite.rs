//! Azure Blob Storage through Azurite: encrypted Parquet read with a container SAS token, the
//! clear refusals without or with a wrong token, and an app's atomic output written to a
//! container.
//!
//! Azurite is installed on demand (`npm install --prefix <tools> azurite@3.37.0`, tools from
//! `$CLOISTER_TOOLS` or `~/.cache/cloister/tools`), started on a free loopback port with a
//! temporary `--location`, and killed when the test ends. SAS tokens are made here following
//! the documented Service SAS / Account SAS string-to-sign (version 2020-12-06), with
//! `hmac` + `sha2` (composed, not implemented).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use cloister_engine::datafusion::error::DataFusionError;
use cloister_engine::store::AzureConfig;
use cloister_engine::{
    AppVars, Engine, EngineBuilder, Error, InMemoryKeyProvider, Rule, SqlApp, StoreConfig,
};
use futures::TryStreamExt;
use hmac::{Hmac, Mac};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use secrecy::SecretString;
use sha2::Sha256;

use crate::{TESTDATA, readme_keys};
use cloister_testkit::canary;
use cloister_testkit::services::{
    ServerChild, chain, free_port, output, runs, summary, tools_dir, unavailable, wait_for_port,
};

const COMPONENT: &str = "azurite";
const ACCOUNT: &str = "devstoreaccount1";
/// Azurite's well-known development account key (public, documented by Microsoft).
const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const CONTAINER: &str = "lake";
const SAS_VERSION: &str = "2020-12-06";
const EXPIRY: &str = "2099-01-01T00:00:00Z";

struct Azurite {
    port: u16,
    _child: ServerChild,
    _dir: tempfile::TempDir,
}

impl Azurite {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }
}

/// Serialises the on-demand install: both Azurite tests may need it at the same time.
static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn azurite_bin() -> Result<PathBuf, String> {
    let _installing = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let tools = tools_dir();
    let bin = tools.join("node_modules/.bin/azurite-blob");
    if !runs("node") {
        return Err("node is not installed (Azurite needs Node.js)".into());
    }
    if bin.exists() {
        return Ok(bin);
    }
    if !runs("npm") {
        return Err("npm is not installed, so Azurite cannot be installed".into());
    }
    std::fs::create_dir_all(&tools).map_err(|e| format!("{}: {e}", tools.display()))?;
    eprintln!("installing azurite@3.37.0 into {}", tools.display());
    let mut npm = Command::new("npm");
    npm.args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&tools)
        .arg("azurite@3.37.0");
    output(npm)?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("npm install did not produce {}", bin.display()))
    }
}

fn start() -> Result<Azurite, String> {
    let bin = azurite_bin()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    std::fs::create_dir(&data).map_err(|e| e.to_string())?;
    let port = free_port();
    let mut command = Command::new(bin);
    command
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        .arg("--location")
        .arg(&data)
        .args(["--skipApiVersionCheck", "--loose", "--silent"]);
    let mut child = ServerChild::spawn("azurite", command, &dir.path().join("azurite.log"))
        .map_err(|e| format!("starting azurite: {e}"))?;
    wait_for_port(port, &mut child, Duration::from_secs(60))?;
    Ok(Azurite {
        port,
        _child: child,
        _dir: dir,
    })
}

fn sign(key_b64: &str, string_to_sign: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(key_b64).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(string_to_sign.as_bytes());
    b64.encode(mac.finalize().into_bytes())
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// An account SAS (blob service; service, container and object level; all permissions).
fn account_sas(key_b64: &str) -> String {
    let (sp, ss, srt) = ("rwdlac", "b", "sco");
    // account, sp, ss, srt, st, se, sip, spr, sv, ses, and a final newline.
    let string_to_sign = format!("{ACCOUNT}\n{sp}\n{ss}\n{srt}\n\n{EXPIRY}\n\n\n{SAS_VERSION}\n\n");
    let sig = sign(key_b64, &string_to_sign);
    query_string(&[
        ("sv", SAS_VERSION),
        ("ss", ss),
        ("srt", srt),
        ("sp", sp),
        ("se", EXPIRY),
        ("sig", &sig),
    ])
}

/// A service SAS for the container, granting read and list.
fn container_sas(key_b64: &str) -> String {
    let (sp, sr) = ("rl", "c");
    let resource = format!("/blob/{ACCOUNT}/{CONTAINER}");
    // sp, st, se, canonicalized resource, si, sip, spr, sv, sr, snapshot time, ses,
    // rscc, rscd, rsce, rscl, rsct.
    let fields = [
        sp,
        "",
        EXPIRY,
        &resource,
        "",
        "",
        "",
        SAS_VERSION,
        sr,
        "",
        "",
        "",
        "",
        "",
        "",
        "",
    ];
    let sig = sign(key_b64, &fields.join("\n"));
    query_string(&[
        ("sv", SAS_VERSION),
        ("sr", sr),
        ("sp", sp),
        ("se", EXPIRY),
        ("sig", &sig),
    ])
}

async fn create_container(azurite: &Azurite) {
    let url = format!(
        "{}/{CONTAINER}?restype=container&{}",
        azurite.endpoint(),
        account_sas(ACCOUNT_KEY)
    );
    let response = reqwest::Client::new()
        .put(url)
        .header("x-ms-version", SAS_VERSION)
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        201,
        "{}",
        response.text().await.unwrap_or_default()
    );
}

/// The container through `object_store` with the account key (the test's own access).
fn admin_store(azurite: &Azurite) -> Arc<dyn ObjectStore> {
    let config = AzureConfig::builder(ACCOUNT, CONTAINER)
        .account_key(SecretString::from(ACCOUNT_KEY.to_owned()))
        .emulator(&url::Url::parse(&format!("http://127.0.0.1:{}", azurite.port)).unwrap())
        .build()
        .unwrap();
    StoreConfig::Azure(config).build().unwrap()
}

/// The settings the workload receives, as the reference app's names.
/// The workload's store, as a role builds it from the reference app's settings
/// (`cloister_roles::config`): the container, a relative path and the emulator's endpoint.
fn workload_store(azurite_endpoint: &str) -> cloister_engine::store::AzureConfigBuilder {
    AzureConfig::builder(ACCOUNT, CONTAINER)
        .relative_path("trips/")
        .endpoint(url::Url::parse(azurite_endpoint).unwrap())
        .allow_http(true)
}

fn workload_sas_store(azurite_endpoint: &str, sas: &str) -> StoreConfig {
    StoreConfig::Azure(
        workload_store(azurite_endpoint)
            .sas_token(SecretString::from(sas.to_owned()))
            .build()
            .unwrap(),
    )
}

fn engine_with(store: StoreConfig, keys: InMemoryKeyProvider) -> Engine {
    EngineBuilder::new(Arc::new(keys))
        .store(store)
        .build()
        .unwrap()
}

async fn count_rows(engine: &Engine, location: &str) -> Result<(i64, f64), DataFusionError> {
    engine
        .sql(&format!(
            "CREATE EXTERNAL TABLE IF NOT EXISTS t STORED AS PARQUET LOCATION '{location}' \
             OPTIONS ('format.crypto.factory_id' 'cloister')"
        ))
        .await?;
    let batches = engine
        .sql("SELECT count(*) AS n, sum(double_field) AS s FROM t")
        .await?
        .collect()
        .await?;
    let n = crate::column(
        &batches,
        "n",
        &cloister_engine::datafusion::arrow::datatypes::DataType::Int64,
    );
    let n = cloister_engine::datafusion::arrow::array::AsArray::as_primitive::<
        cloister_engine::datafusion::arrow::datatypes::Int64Type,
    >(&n)
    .value(0);
    let s = crate::f64s(&batches, "s")[0].unwrap_or_default();
    Ok((n, s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_sas_token_reads_encrypted_parquet() {
    let azurite = match start() {
        Ok(azurite) => azurite,
        Err(reason) => return unavailable(COMPONENT, &reason),
    };
    create_container(&azurite).await;
    let file =
        std::fs::read(PathBuf::from(TESTDATA).join("encrypt_columns_and_footer.parquet.encrypted"))
            .unwrap();
    admin_store(&azurite)
        .put(&ObjectPath::from("trips/part-0.parquet"), file.into())
        .await
        .unwrap();
    let endpoint = azurite.endpoint();

    // 1. With the container SAS token, through the reference app's settings.
    let sas = container_sas(ACCOUNT_KEY);
    let store = workload_sas_store(&endpoint, &sas);
    assert_eq!(store.data_url().as_str(), "az://lake/trips/");
    let engine = engine_with(store.clone(), readme_keys(false));
    let (n, _) = count_rows(&engine, store.data_url().as_str())
        .await
        .unwrap();
    assert_eq!(n, 50);

    // The same data through the ADLS Gen2 URL form.
    let engine = engine_with(store.clone(), readme_keys(false));
    let (n, _) = count_rows(
        &engine,
        &format!("abfss://{CONTAINER}@{ACCOUNT}.dfs.core.windows.net/trips/"),
    )
    .await
    .unwrap();
    assert_eq!(n, 50);

    // A SQL app whose location comes from allow-listed settings; the token is not among them.
    let env = [
        ("AZURE_BLOB_CONTAINER_NAME", CONTAINER),
        ("AZURE_BLOB_RELATIVE_PATH", "trips/"),
        ("AZURE_BLOB_SAS_TOKEN", sas.as_str()),
    ];
    let vars = AppVars::from_env(
        env.iter().copied(),
        &["AZURE_BLOB_CONTAINER_NAME", "AZURE_BLOB_RELATIVE_PATH"],
    )
    .unwrap();
    let app = SqlApp::from_files([
        (
            "01_input.sql",
            "CREATE EXTERNAL TABLE input STORED AS PARQUET \
             LOCATION 'az://${AZURE_BLOB_CONTAINER_NAME}/${AZURE_BLOB_RELATIVE_PATH}' \
             OPTIONS ('format.crypto.factory_id' 'cloister');",
        ),
        ("02_count.sql", "SELECT count(*) AS n FROM input;"),
    ])
    .unwrap();
    let run = engine_with(store, readme_keys(false))
        .run_app(&app, &vars)
        .await
        .unwrap();
    assert_eq!(run.result("02_count").unwrap().num_rows(), 1);

    // 2. Without a token: refused before any request, naming the missing setting.
    let err = workload_store(&endpoint).build().unwrap_err();
    assert!(matches!(&err, Error::MissingStoreSetting { .. }), "{err:?}");

    // 3. With a token signed by a wrong key: the server refuses, and says so.
    let wrong_key = base64::engine::general_purpose::STANDARD.encode([0x42u8; 64]);
    let wrong_sas = container_sas(&wrong_key);
    let store = workload_sas_store(&endpoint, &wrong_sas);
    let err = count_rows(&engine_with(store, readme_keys(false)), "az://lake/trips/")
        .await
        .unwrap_err();
    let message = chain(&err);
    eprintln!("azurite: with a wrong SAS token: {message}");
    assert!(message.contains("403"), "{message}");
    assert!(
        !message.contains(&wrong_sas),
        "the token is in the error: {message}"
    );

    // 4. Anonymous access to the private container is refused by the server too.
    let store = StoreConfig::Azure(workload_store(&endpoint).anonymous().build().unwrap());
    let err = count_rows(&engine_with(store, readme_keys(false)), "az://lake/trips/")
        .await
        .unwrap_err();
    let message = chain(&err);
    eprintln!("azurite: anonymous: {message}");
    assert!(message.contains("40"), "{message}");

    summary(
        COMPONENT,
        "ok (SAS read via az:// and abfss://, app with allow-listed vars, missing token named, wrong token 403, anonymous refused)",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azurite_app_output_is_committed_whole() {
    let azurite = match start() {
        Ok(azurite) => azurite,
        Err(reason) => return unavailable(COMPONENT, &reason),
    };
    create_container(&azurite).await;
    let store = StoreConfig::Azure(
        AzureConfig::builder(ACCOUNT, CONTAINER)
            .account_key(SecretString::from(ACCOUNT_KEY.to_owned()))
            .endpoint(url::Url::parse(&azurite.endpoint()).unwrap())
            .allow_http(true)
            .build()
            .unwrap(),
    );
    let keys = || {
        InMemoryKeyProvider::new()
            .with_key("out", vec![0x31; 32])
            .unwrap()
    };
    let copy = "COPY (SELECT value AS id, 'CANARY-' || CAST(value AS VARCHAR) AS secret \
                FROM generate_series(1, 1000)) TO 'az://lake/out/report/' STORED AS PARQUET \
                OPTIONS ('format.crypto.factory_id' 'cloister', \
                         'format.crypto.factory_options.footer_key' 'out');";
    let admin = admin_store(&azurite);
    let list = |prefix: &'static str| {
        let admin = Arc::clone(&admin);
        async move {
            let mut names: Vec<String> = admin
                .list(Some(&ObjectPath::from(prefix)))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            names.sort();
            names
        }
    };

    // A failing last statement: nothing under out/ at all.
    let failing =
        SqlApp::from_files([("01.sql", copy), ("02.sql", "SELECT * FROM nowhere;")]).unwrap();
    let err = engine_with(store.clone(), keys())
        .run_app(&failing, &AppVars::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("02.sql"), "{err}");
    assert_eq!(list("out").await, Vec::<String>::new());

    // A successful run: the output under its final name only, encrypted.
    let app = SqlApp::from_files([("01.sql", copy)]).unwrap();
    let run = engine_with(store.clone(), keys())
        .run_app(&app, &AppVars::new())
        .await
        .unwrap();
    assert_eq!(run.outputs()[0].rows(), 1000);
    assert_eq!(run.outputs()[0].url(), "az://lake/out/report/");
    let objects = list("out").await;
    assert!(!objects.is_empty());
    assert!(
        objects
            .iter()
            .all(|o| o.starts_with("out/report/") && !o.contains("_tmp-")),
        "{objects:?}"
    );
    for object in &objects {
        let bytes = admin
            .get(&ObjectPath::from(object.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(bytes.ends_with(b"PARE"));
        // No plaintext in the object.
        canary::assert_absent(&bytes[..], b"CANARY-");
    }

    // Running it again: the output exists, refused before anything is written.
    let err = engine_with(store, keys())
        .run_app(&app, &AppVars::new())
        .await
        .unwrap_err();
    assert!(
        matches!(
            Error::find_in(&err),
            Some(Error::StatementRefused {
                rule: Rule::OutputExists,
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(list("out").await, objects);
    summary(
        COMPONENT,
        "ok (app output committed whole to a container; failed run left nothing)",
    );
}

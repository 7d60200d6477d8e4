//! S3 through moto: an app writes encrypted Parquet with `COPY … TO 's3://…'` (staged and
//! committed), and the engine reads it back.
//!
//! `moto_server` comes from the venv of `$CLOISTER_PYTHON` (installed there with
//! `pip install 'moto[server]'` when missing and the interpreter is a venv's), started on a
//! free loopback port and killed when the test ends.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use cloister_engine::datafusion::arrow::array::AsArray;
use cloister_engine::datafusion::arrow::datatypes::{DataType, Int64Type};
use cloister_engine::store::S3Config;
use cloister_engine::{AppVars, EngineBuilder, Error, InMemoryKeyProvider, SqlApp, StoreConfig};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjectPath;
use secrecy::SecretString;

use cloister_testkit::canary;
use cloister_testkit::services::{
    ServerChild, chain, free_port, output, python, summary, unavailable, wait_for_port,
};

const COMPONENT: &str = "moto";
const BUCKET: &str = "lake";

struct Moto {
    port: u16,
    _child: ServerChild,
    _dir: tempfile::TempDir,
}

/// `moto_server` beside the interpreter, installing moto into its venv if needed.
fn moto_server() -> Result<PathBuf, String> {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let python = python();
    let probe = "import os, sys; print(os.path.dirname(sys.executable)); \
                 print(sys.prefix != sys.base_prefix)";
    let mut command = Command::new(&python);
    command.args(["-c", probe]);
    let out =
        output(command).map_err(|e| format!("no usable Python ({e}); set CLOISTER_PYTHON"))?;
    let mut lines = out.lines();
    let bin_dir = PathBuf::from(lines.next().unwrap_or_default());
    let in_venv = lines.next() == Some("True");
    let server = bin_dir.join("moto_server");
    if server.exists() {
        return Ok(server);
    }
    if !in_venv {
        return Err(format!(
            "{python} has no moto_server and is not a venv's interpreter; set CLOISTER_PYTHON \
             to a venv's python (moto is then installed into it)"
        ));
    }
    eprintln!("installing moto[server] with {python}");
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet", "moto[server]"]);
    output(pip)?;
    if server.exists() {
        Ok(server)
    } else {
        Err(format!("pip install did not produce {}", server.display()))
    }
}

fn start() -> Result<Moto, String> {
    let server = moto_server()?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = free_port();
    let mut command = Command::new(server);
    command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
    let mut child = ServerChild::spawn("moto_server", command, &dir.path().join("moto.log"))
        .map_err(|e| format!("starting moto_server: {e}"))?;
    wait_for_port(port, &mut child, Duration::from_secs(60))?;
    Ok(Moto {
        port,
        _child: child,
        _dir: dir,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_copy_to_s3_and_read_back() {
    let moto = match start() {
        Ok(moto) => moto,
        Err(reason) => return unavailable(COMPONENT, &reason),
    };
    let endpoint = format!("http://127.0.0.1:{}", moto.port);
    // moto accepts an unsigned bucket creation.
    let response = reqwest::Client::new()
        .put(format!("{endpoint}/{BUCKET}"))
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());

    let s3_store = || {
        StoreConfig::S3(
            S3Config::builder(BUCKET)
                .region("us-east-1")
                .endpoint(url::Url::parse(&endpoint).unwrap())
                .allow_http(true)
                .access_key_id("testing")
                .secret_access_key(SecretString::from("testing-secret".to_owned()))
                .relative_path("out/")
                .build()
                .unwrap(),
        )
    };
    let store = s3_store();
    let client = store.build().unwrap();
    let keys = || {
        Arc::new(
            InMemoryKeyProvider::new()
                .with_key("master", vec![0x77; 32])
                .unwrap(),
        )
    };
    let engine = EngineBuilder::new(keys())
        .store(store.clone())
        .build()
        .unwrap();
    let vars = AppVars::new()
        .with("OUT", store.data_url().as_str().trim_end_matches('/'))
        .unwrap();
    let copy = "COPY (SELECT value AS id, 'CANARY-' || CAST(value AS VARCHAR) AS secret \
                FROM generate_series(1, 500)) TO '${OUT}/ids/' STORED AS PARQUET \
                OPTIONS ('format.crypto.factory_id' 'cloister', \
                         'format.crypto.factory_options.key_management' 'kmt', \
                         'format.crypto.factory_options.footer_key' 'master');";
    let list = || {
        let client = Arc::clone(&client);
        async move {
            let mut names: Vec<String> = client
                .list(Some(&ObjectPath::from("out")))
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            names.sort();
            names
        }
    };

    // A failing app leaves nothing in the bucket.
    let failing =
        SqlApp::from_files([("01.sql", copy), ("02.sql", "SELECT 1/0 FROM nowhere;")]).unwrap();
    let err = engine.run_app(&failing, &vars).await.unwrap_err();
    assert!(err.to_string().contains("02.sql"), "{}", chain(&err));
    assert_eq!(list().await, Vec::<String>::new());

    // The app writes and commits.
    let app = SqlApp::from_files([("01.sql", copy)]).unwrap();
    let run = engine.run_app(&app, &vars).await.unwrap();
    assert_eq!(run.outputs()[0].rows(), 500);
    assert_eq!(run.outputs()[0].url(), "s3://lake/out/ids/");
    let objects = list().await;
    assert!(!objects.is_empty());
    assert!(
        objects
            .iter()
            .all(|o| o.starts_with("out/ids/") && !o.contains("_tmp-")),
        "{objects:?}"
    );
    for object in &objects {
        let bytes = client
            .get(&ObjectPath::from(object.as_str()))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(
            bytes.ends_with(b"PARE"),
            "{object} is not encrypted Parquet"
        );
        // No plaintext in the object.
        canary::assert_absent(&bytes[..], b"CANARY-");
    }

    // Read back through another engine.
    let reader = EngineBuilder::new(keys()).store(store).build().unwrap();
    reader
        .sql(
            "CREATE EXTERNAL TABLE ids STORED AS PARQUET LOCATION 's3://lake/out/ids/' \
             OPTIONS ('format.crypto.factory_id' 'cloister')",
        )
        .await
        .unwrap();
    let batches = reader
        .sql("SELECT count(*) AS n, max(secret) AS top FROM ids WHERE id > 250")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let n = crate::column(&batches, "n", &DataType::Int64);
    assert_eq!(n.as_primitive::<Int64Type>().value(0), 250);
    assert_eq!(
        crate::strings(&batches, "top"),
        vec![Some("CANARY-500".to_owned())]
    );

    // Without the master key the data does not read.
    let stranger = EngineBuilder::new(Arc::new(InMemoryKeyProvider::new()))
        .store(s3_store())
        .build()
        .unwrap();
    let err = match stranger
        .sql(
            "CREATE EXTERNAL TABLE ids STORED AS PARQUET LOCATION 's3://lake/out/ids/' \
             OPTIONS ('format.crypto.factory_id' 'cloister')",
        )
        .await
    {
        Ok(_) => stranger
            .sql("SELECT * FROM ids")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap_err(),
        Err(e) => e,
    };
    assert!(
        matches!(Error::find_in(&err), Some(Error::UnknownKey { key_id }) if key_id == "master"),
        "{}",
        chain(&err)
    );
    summary(
        COMPONENT,
        "ok (failed app left nothing; COPY to s3:// committed encrypted; read back; no key, no read)",
    );
}

//! `cloister gen taxi`: plaintext and encrypted output, and key-file hygiene.

use super::cloister;
use cloister_testkit::cli::assert_exit;
use std::path::Path;

fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

#[test]
fn gen_taxi_writes_plain_and_encrypted_parquet() {
    let dir = tempfile::tempdir().unwrap();
    let out = cloister(
        &[
            "gen", "taxi", "--rows", "20000", "--files", "2", "--out", "plain", "--json",
        ],
        dir.path(),
    );
    assert_exit(&out, 0);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["rows"], 20000);
    assert_eq!(summary["files"], 2);
    assert_eq!(summary["trips"], "plain/trips");
    assert_eq!(summary["zones"], "plain/zones");
    // One table per directory (issue 10): the trips, and beside them the zone lookup.
    assert!(parquet_files(&dir.path().join("plain")).is_empty());
    assert_eq!(parquet_files(&dir.path().join("plain/zones")).len(), 1);
    let plain = parquet_files(&dir.path().join("plain/trips"));
    assert_eq!(plain.len(), 2, "two trip files: {plain:?}");
    assert!(
        plain
            .iter()
            .all(|f| std::fs::read(f).unwrap().ends_with(b"PAR1"))
    );

    // Encrypted: every trip file has an encrypted footer (magic PARE).
    let keys = dir.path().join("keys.json");
    std::fs::write(
        &keys,
        r#"{"footer": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            "fare": "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"}"#,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
        let args = [
            "gen",
            "taxi",
            "--rows",
            "1000",
            "--out",
            "enc",
            "--keys",
            "keys.json",
            "--footer-key",
            "footer",
        ];
        let refused = cloister(&args, dir.path());
        assert_eq!(refused.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("chmod 600"));
        std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let out = cloister(
        &[
            "gen",
            "taxi",
            "--rows",
            "20000",
            "--out",
            "enc",
            "--keys",
            "keys.json",
            "--footer-key",
            "footer",
            "--column-key",
            "fare:fare_amount,tip_amount,total_amount",
        ],
        dir.path(),
    );
    assert_exit(&out, 0);
    let trips: Vec<_> = parquet_files(&dir.path().join("enc/trips"))
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("tripdata"))
        .collect();
    assert!(!trips.is_empty());
    for f in trips {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            bytes.ends_with(b"PARE"),
            "{} is not footer-encrypted",
            f.display()
        );
        // The master keys never reach the file; only wrapped data keys do.
        let master = [
            0x00u8, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
            0xee, 0xff,
        ];
        assert!(!bytes.windows(16).any(|w| w == master));
    }

    // An unknown master key id is a clear error.
    let out = cloister(
        &[
            "gen",
            "taxi",
            "--rows",
            "10",
            "--out",
            "bad",
            "--keys",
            "keys.json",
            "--footer-key",
            "nope",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

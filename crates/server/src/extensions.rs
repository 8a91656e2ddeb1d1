//! Browser extensions a team uploads as a zip: checked, unpacked into
//! `<data dir>/extensions/<extension id>/`, and loaded into the browsers of
//! sessions that name them (`browser.extensions`).
//!
//! The zip is never trusted: every entry's path must stay inside the
//! folder (no absolute paths, no `..`, no links), the unpacked bytes are
//! counted as they are written (the sizes a zip declares can lie), and the
//! count of entries and the bytes are capped, so a zip bomb stops early
//! with nothing kept. A `manifest.json` must sit at the root.

use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use serde_json::Value;

/// Most entries in one extension.
const MAX_ENTRIES: usize = 10_000;

/// Why an upload is refused.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionError {
    /// Not an extension (not a zip, a bad path, no manifest…): a `400`.
    #[error("{0}")]
    Invalid(String),
    /// Unpacked, it would be larger than allowed: a `413`.
    #[error("the extension unpacks to more than {0} bytes")]
    TooLarge(u64),
    /// Reading or writing failed on the server's side.
    #[error("cannot unpack the extension: {0}")]
    Io(#[from] std::io::Error),
}

fn invalid(message: impl Into<String>) -> ExtensionError {
    ExtensionError::Invalid(message.into())
}

/// Unpacks the zip at `zip` into `into` (made here) and returns its
/// manifest. On any error `into` is removed. Blocking.
pub fn unpack(zip: &Path, into: &Path, max_unpacked: u64) -> Result<Value, ExtensionError> {
    let outcome = unpack_checked(zip, into, max_unpacked);
    if outcome.is_err() {
        let _ = std::fs::remove_dir_all(into);
    }
    outcome
}

fn unpack_checked(zip: &Path, into: &Path, max_unpacked: u64) -> Result<Value, ExtensionError> {
    let file = std::fs::File::open(zip)?;
    let mut archive =
        zip::ZipArchive::new(file).map_err(|error| invalid(format!("file is not a zip archive: {error}")))?;
    if archive.len() > MAX_ENTRIES {
        return Err(invalid(format!("the zip holds more than {MAX_ENTRIES} entries")));
    }
    std::fs::create_dir_all(into)?;
    let mut written: u64 = 0;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|error| invalid(format!("the zip cannot be read: {error}")))?;
        let name = entry.name().to_owned();
        let relative = safe_path(&name).ok_or_else(|| invalid(format!("the zip entry {name:?} leaves its folder")))?;
        if entry.is_symlink() {
            return Err(invalid(format!("the zip entry {name:?} is a link")));
        }
        let target = into.join(&relative);
        if entry.is_dir() {
            std::fs::create_dir_all(&target)?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&target)?;
        let mut buffer = [0_u8; 64 * 1024];
        loop {
            let read = entry
                .read(&mut buffer)
                .map_err(|error| invalid(format!("the zip entry {name:?} cannot be read: {error}")))?;
            if read == 0 {
                break;
            }
            written += read as u64;
            if written > max_unpacked {
                return Err(ExtensionError::TooLarge(max_unpacked));
            }
            out.write_all(&buffer[..read])?;
        }
    }
    let manifest =
        std::fs::read(into.join("manifest.json")).map_err(|_| invalid("the zip has no manifest.json at its root"))?;
    let manifest: Value = serde_json::from_slice(&manifest)
        .map_err(|error| invalid(format!("manifest.json is not valid JSON: {error}")))?;
    let text = |key: &str| {
        manifest
            .get(key)
            .and_then(Value::as_str)
            .is_some_and(|value| !value.is_empty())
    };
    if !text("name") || !text("version") {
        return Err(invalid("manifest.json must give a name and a version"));
    }
    if !matches!(manifest.get("manifest_version").and_then(Value::as_i64), Some(2 | 3)) {
        return Err(invalid("manifest.json must give manifest_version 2 or 3"));
    }
    Ok(manifest)
}

/// At start-up: removes folders under `root` that no extension names
/// (deleted ones, unfinished uploads), once left alone long enough to be
/// no other node's upload in progress.
pub async fn sweep(store: &dyn anchorage_store::Store, root: &Path) -> Result<(), anchorage_store::StoreError> {
    let known: Vec<String> = store
        .list_extensions(None)
        .await?
        .iter()
        .map(|extension| extension.id.as_uuid().simple().to_string())
        .collect();
    let Ok(mut entries) = tokio::fs::read_dir(root).await else {
        return Ok(());
    };
    while let Ok(Some(entry)) = entries.next_entry().await {
        if !known.contains(&entry.file_name().to_string_lossy().into_owned())
            && crate::leftovers::left_long_ago(&entry.path()).await
        {
            if entry.file_type().await.is_ok_and(|kind| kind.is_dir()) {
                let _ = tokio::fs::remove_dir_all(entry.path()).await;
            } else {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
    }
    Ok(())
}

/// The entry's path inside the folder, or `None` if it would leave it.
fn safe_path(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    (!clean.as_os_str().is_empty() && !name.contains('\\')).then_some(clean)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn zip_of(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("temp");
        let mut writer = zip::ZipWriter::new(file.reopen().expect("reopen"));
        let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
        for (name, body) in entries {
            writer.start_file(*name, options).expect("entry");
            writer.write_all(body).expect("body");
        }
        writer.finish().expect("finish");
        file
    }

    const MANIFEST: &[u8] = br#"{"manifest_version": 3, "name": "m", "version": "1"}"#;

    #[test]
    fn a_good_extension_unpacks_and_bad_ones_leave_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let good = zip_of(&[("manifest.json", MANIFEST), ("js/mark.js", b"1")]);
        let manifest = unpack(good.path(), &dir.path().join("good"), 1 << 20).expect("unpacked");
        assert_eq!(manifest["name"], "m");
        assert!(dir.path().join("good/js/mark.js").is_file());

        let bomb = vec![0_u8; 2 << 20];
        let cases: Vec<(tempfile::NamedTempFile, &str)> = vec![
            (zip_of(&[("../evil.js", b"1"), ("manifest.json", MANIFEST)]), "leaves"),
            (zip_of(&[("/etc/evil", b"1"), ("manifest.json", MANIFEST)]), "leaves"),
            (zip_of(&[("js/mark.js", b"1")]), "manifest.json"),
            (zip_of(&[("manifest.json", b"{")]), "JSON"),
            (
                zip_of(&[("manifest.json", br#"{"name": "m", "version": "1"}"#)]),
                "manifest_version",
            ),
            (zip_of(&[("manifest.json", MANIFEST), ("big.bin", &bomb)]), "more than"),
        ];
        for (index, (zip, needle)) in cases.iter().enumerate() {
            let into = dir.path().join(format!("bad{index}"));
            let error = unpack(zip.path(), &into, 1 << 20).expect_err("refused");
            assert!(error.to_string().contains(needle), "{index}: {error}");
            assert!(!into.exists(), "{index}: nothing is kept");
        }
        let not_zip = tempfile::NamedTempFile::new().expect("temp");
        std::fs::write(not_zip.path(), b"plain text").expect("write");
        assert!(unpack(not_zip.path(), &dir.path().join("text"), 1 << 20)
            .expect_err("refused")
            .to_string()
            .contains("not a zip"));
    }

    #[tokio::test]
    async fn the_start_up_sweep_removes_old_leftovers_and_keeps_recent_ones() {
        let dir = tempfile::tempdir().expect("dir");
        let store = anchorage_store::open("sqlite::memory:").await.expect("store");
        let team = store.create_team("alpha").await.expect("team").id;
        let now = anchorage_core::Timestamp::now();
        let kept = anchorage_store::ExtensionRecord {
            id: anchorage_core::ExtensionId::new_random(),
            team_id: team,
            name: "kept".to_owned(),
            manifest: serde_json::json!({}),
            size_bytes: 1,
            created_at: now,
            updated_at: now,
        };
        store.create_extension(&kept).await.expect("extension");
        let folder = |name: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(&path).expect("folder");
            path
        };
        let known = folder(&kept.id.as_uuid().simple().to_string());
        crate::test_support::age(&known);
        let deleted = folder("0123456789abcdef0123456789abcdef");
        crate::test_support::age(&deleted);
        let stray = dir.path().join("upload.zip");
        std::fs::write(&stray, b"zip").expect("file");
        crate::test_support::age(&stray);
        // An upload another node sharing the folder is unpacking now.
        let fresh = folder("fedcba9876543210fedcba9876543210");

        sweep(store.as_ref(), dir.path()).await.expect("swept");
        assert!(known.is_dir() && fresh.is_dir());
        assert!(!deleted.exists() && !stray.exists());
    }
}

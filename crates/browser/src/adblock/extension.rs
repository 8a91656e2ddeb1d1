//! The extension that hides elements in each browser that blocks ads: a
//! content script in every http(s) document and frame, and a service worker
//! the server's connection attaches to (see [`super::connection`]).
//!
//! It asks for no permission at all: requests are the browsers' own filter's
//! (see [`super::filter`]), and an extension with a request-blocking
//! permission would put every request of the browser through its browser
//! process (ARCHITECTURE.md, "Ad blocking: where the engine runs").

use std::path::{Path, PathBuf};

use serde_json::json;

/// Writes the extension into `dir` (made, or emptied first): its manifest,
/// its worker and its content script.
pub fn write_extension(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let manifest = json!({
        "manifest_version": 3,
        "name": "anchorage ad blocking",
        "description": "Hides the elements the node's filter lists name.",
        "version": "1.0",
        "background": {"service_worker": "worker.js"},
        // Element hiding: a script in every http(s) document and frame (in
        // the extension's isolated world), answered through the worker.
        // Content scripts grant no host permission.
        "content_scripts": [{
            "matches": ["http://*/*", "https://*/*"],
            "js": ["page.js"],
            "run_at": "document_start",
            "all_frames": true,
        }],
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string())?;
    std::fs::write(dir.join("worker.js"), include_str!("worker.js"))?;
    std::fs::write(dir.join("page.js"), include_str!("page.js"))?;
    Ok(())
}

/// The id Chromium gives an unpacked extension loaded from `dir` (an
/// absolute path): the SHA-256 of the path, its first 32 hex digits spelt
/// with the letters `a` to `p`.
pub fn extension_id(dir: &Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    digest
        .iter()
        .take(16)
        .flat_map(|byte| [byte >> 4, byte & 0x0f])
        .map(|nibble| char::from(b'a' + nibble))
        .collect()
}

/// Where a node keeps its extension.
pub fn extension_dir(root: &Path) -> PathBuf {
    root.join("extension")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_chromiums_for_the_path() {
        // Chromium's id of an unpacked extension at this path, as the
        // browser showed it (bench/adblock_inside.py's experiment).
        assert_eq!(
            extension_id(Path::new("/tmp/dnr/ext")),
            "kboggohbeboegmbnneafagbebmkmafcc"
        );
    }

    #[test]
    fn the_extension_asks_for_no_permission() {
        let dir = tempfile::tempdir().expect("temp dir");
        write_extension(dir.path()).expect("written");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("manifest")).expect("json");
        assert!(manifest.get("permissions").is_none(), "{manifest}");
        assert!(manifest.get("host_permissions").is_none(), "{manifest}");
        for file in ["worker.js", "page.js"] {
            assert!(dir.path().join(file).is_file(), "{file}");
        }
    }
}

//! The extension of each browser that blocks ads: the lists' generic
//! stylesheet as a stylesheet content script ([`super::sheet`]), which
//! Chromium adds to each document by itself. It holds no script: a script
//! content script costs every page load, even an empty one (BENCHMARKS.md);
//! the rest of element hiding is the server's connection's
//! ([`super::connection`]).
//!
//! It asks for no permission at all: requests are the browsers' own filter's
//! (see [`super::filter`]), and an extension with a request-blocking
//! permission would put every request of the browser through its browser
//! process (ARCHITECTURE.md, "Ad blocking: where the engine runs").

use std::path::{Path, PathBuf};

use serde_json::json;

use super::sheet::NativeSheet;

/// The stylesheet's file in the extension.
const SHEET_FILE: &str = "generic.css";

/// Writes the extension into `dir` (made, or emptied first): its manifest
/// and the stylesheet of `sheet`.
pub fn write_extension(dir: &Path, sheet: &NativeSheet) -> std::io::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let scripts: Vec<serde_json::Value> = sheet.content_script(SHEET_FILE).into_iter().collect();
    let manifest = json!({
        "manifest_version": 3,
        "name": "anchorage ad blocking",
        "description": "Hides the elements the node's filter lists name.",
        "version": "1.0",
        "content_scripts": scripts,
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string())?;
    std::fs::write(dir.join(SHEET_FILE), &sheet.css)?;
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

/// Where a node keeps the extension of its compile `generation`.
pub fn extension_dir(root: &Path, generation: u64) -> PathBuf {
    root.join(format!("extension-{generation}"))
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
    fn the_extension_asks_for_no_permission_and_holds_no_script() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sheet = NativeSheet::exclusions(["example.com#@#AMP-AD\n"]);
        sheet.css = "AMP-AD{display:none!important}\n".to_owned();
        write_extension(dir.path(), &sheet).expect("written");
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).expect("manifest")).expect("json");
        assert!(manifest.get("permissions").is_none(), "{manifest}");
        assert!(manifest.get("host_permissions").is_none(), "{manifest}");
        assert!(manifest.get("background").is_none(), "{manifest}");
        let scripts = manifest["content_scripts"].as_array().expect("content scripts");
        assert_eq!(scripts.len(), 1, "{manifest}");
        assert!(scripts[0].get("js").is_none(), "{manifest}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SHEET_FILE)).expect("the sheet"),
            sheet.css
        );
    }
}

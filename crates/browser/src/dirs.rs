//! Where a browser's directories go.
//!
//! Chromium puts a Unix socket (`SingletonSocket`) in a fresh directory under
//! its TMPDIR, and Unix socket paths are limited to 107 bytes: with a deep data
//! dir, a TMPDIR inside it makes Chromium abort at start ("Socket path too
//! long"). So the TMPDIR sits in the session's directory when the path is
//! short enough, and otherwise under a short per-server directory in the
//! system temp dir. Both roots are swept by [`crate::reap_leftovers`].

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

/// Longest Unix socket path, in bytes (`sun_path` holds 108 with the NUL).
const SOCKET_PATH_LIMIT: usize = 107;
/// What Chromium appends to TMPDIR: `/org.chromium.Chromium.XXXXXX/SingletonSocket`.
const SOCKET_SUFFIX_BYTES: usize = "/org.chromium.Chromium.XXXXXX/SingletonSocket".len();

/// The directory layout of one server's browsers.
#[derive(Debug, Clone)]
pub struct BrowserDirs {
    root: PathBuf,
    short_tmp_root: PathBuf,
}

impl BrowserDirs {
    /// Browsers under `root` (an absolute path); the fallback TMPDIR root is
    /// derived from it, so each server has its own.
    pub fn new(root: PathBuf) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        root.hash(&mut hasher);
        let short_tmp_root = PathBuf::from("/tmp").join(format!("anchorage-{:08x}", hasher.finish() as u32));
        Self { root, short_tmp_root }
    }

    /// Where session directories (and their profiles) go.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where TMPDIRs go when the session directory is too deep.
    pub fn short_tmp_root(&self) -> &Path {
        &self.short_tmp_root
    }

    /// Removes the fallback TMPDIR root if nothing is left in it (at
    /// shutdown: it lives outside the data dir, so it must not pile up).
    pub fn remove_empty_roots(&self) {
        // `remove_dir` removes only an empty directory; anything else stays.
        let _ = std::fs::remove_dir(&self.short_tmp_root);
    }

    /// The session directory and TMPDIR for a browser called `name`.
    pub fn for_session(&self, name: &str) -> (PathBuf, PathBuf) {
        let session_dir = self.root.join(name);
        let inside = session_dir.join("tmp");
        if inside.as_os_str().len() + SOCKET_SUFFIX_BYTES <= SOCKET_PATH_LIMIT {
            (session_dir, inside)
        } else {
            (session_dir, self.short_tmp_root.join(name))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_dirs_always_leave_room_for_the_socket() {
        let name = "0123456789abcdef0123456789abcdef";
        for root in [
            "/d/browsers",
            "/a/very/deep/directory/that/goes/on/and/on/and/on/for/ever/browsers",
        ] {
            let dirs = BrowserDirs::new(PathBuf::from(root));
            let (session_dir, tmp_dir) = dirs.for_session(name);
            assert!(session_dir.starts_with(root));
            assert!(
                tmp_dir.as_os_str().len() + SOCKET_SUFFIX_BYTES <= SOCKET_PATH_LIMIT,
                "{}",
                tmp_dir.display()
            );
        }
        let shallow = BrowserDirs::new(PathBuf::from("/d/browsers"));
        assert_eq!(
            shallow.for_session(name).1,
            PathBuf::from(format!("/d/browsers/{name}/tmp"))
        );
    }
}

//! Copying a browser's profile (its user-data-dir: cookies, local storage,
//! IndexedDB, cache) out of a session and into a new one.
//!
//! Only plain files and directories are copied (files Chromium writes once
//! are hard-linked, see `is_write_once`). Symbolic links, sockets and
//! Chromium's own lock files (`Singleton*`, `lockfile`, `*.lock`) are left
//! out: a link written by a page's browser could otherwise point the copy at
//! any file the server can read, and a lock of a dead browser would make the
//! next one refuse the profile.

use std::fs;
use std::io;
use std::path::Path;

/// Where copied files go and whose they become.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyLimits {
    /// The copy fails once this many bytes have been copied.
    pub max_bytes: u64,
    /// The owner (uid, gid) given to every copied entry, when not the server's.
    pub owner: Option<(u32, u32)>,
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// More than the limit.
    #[error("the profile is larger than {0} bytes")]
    TooLarge(u64),
    /// Reading or writing failed.
    #[error("cannot copy the profile: {0}")]
    Io(#[from] io::Error),
}

/// Copies the tree under `from` into `to` (made if missing) and returns
/// the bytes copied. Blocking: run it on a blocking thread.
pub fn copy_profile(from: &Path, to: &Path, limits: CopyLimits) -> Result<u64, CopyError> {
    let mut copied = 0;
    copy_dir(from, to, limits, &mut copied, true)?;
    Ok(copied)
}

/// Whether a top-level entry of a profile is the node's, not the user's:
/// the ad blocking filter's ruleset, which every launch gets afresh.
fn is_nodes(name: &str) -> bool {
    name == "Subresource Filter"
}

/// Whether a file name is one of Chromium's locks of a running browser.
fn is_lock(name: &str) -> bool {
    name.starts_with("Singleton") || name == "lockfile" || name.ends_with(".lock") || name == "DevToolsActivePort"
}

/// Whether Chromium writes a profile file once and never changes it in
/// place (it deletes it instead): LevelDB tables (`*.ldb`) and the blob
/// files of IndexedDB (anything under a `*.blob` folder). Such files are
/// hard-linked rather than copied, which makes a large profile cheap to
/// save and to start from; a deletion in one copy leaves the other's link.
fn is_write_once(path: &Path) -> bool {
    path.extension().is_some_and(|extension| extension == "ldb")
        || path
            .ancestors()
            .skip(1)
            .any(|dir| dir.extension().is_some_and(|extension| extension == "blob"))
}

fn copy_dir(from: &Path, to: &Path, limits: CopyLimits, copied: &mut u64, top: bool) -> Result<(), CopyError> {
    fs::create_dir_all(to)?;
    own(to, limits)?;
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if is_lock(&name.to_string_lossy()) || (top && is_nodes(&name.to_string_lossy())) {
            continue;
        }
        // The entry's own type: a symbolic link is not followed.
        let kind = entry.file_type()?;
        let target = to.join(&name);
        if kind.is_dir() {
            copy_dir(&entry.path(), &target, limits, copied, false)?;
        } else if kind.is_file() {
            let length = entry.metadata()?.len();
            if copied.saturating_add(length) > limits.max_bytes {
                return Err(CopyError::TooLarge(limits.max_bytes));
            }
            let source = entry.path();
            if is_write_once(&source) && fs::hard_link(&source, &target).is_ok() {
                // Shared with the other copy: another user's browser may
                // read it (the folders around it keep it from anyone else),
                // and neither may change it.
                if limits.owner.is_some() {
                    fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
                }
                *copied += length;
            } else {
                *copied += fs::copy(&source, &target)?;
                own(&target, limits)?;
            }
        }
    }
    Ok(())
}

fn own(path: &Path, limits: CopyLimits) -> io::Result<()> {
    match limits.owner {
        Some((uid, gid)) => std::os::unix::fs::chown(path, Some(uid), Some(gid)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_files_and_folders_but_no_links_or_locks() {
        let from = tempfile::tempdir().expect("from");
        let to = tempfile::tempdir().expect("to");
        fs::create_dir_all(from.path().join("Default/Local Storage")).expect("dirs");
        fs::write(from.path().join("Default/Cookies"), b"cookies").expect("file");
        fs::write(from.path().join("Default/Local Storage/000003.log"), b"storage").expect("file");
        fs::write(from.path().join("SingletonLock"), b"x").expect("lock");
        fs::create_dir_all(from.path().join("Subresource Filter/Indexed Rules")).expect("dirs");
        fs::write(from.path().join("Subresource Filter/Indexed Rules/x"), b"the node's").expect("file");
        std::os::unix::fs::symlink("/etc/passwd", from.path().join("Default/link")).expect("link");
        let limits = CopyLimits {
            max_bytes: 1000,
            owner: None,
        };
        let copied = copy_profile(from.path(), &to.path().join("copy"), limits).expect("copied");
        assert_eq!(copied, 14);
        let copy = to.path().join("copy");
        assert_eq!(fs::read(copy.join("Default/Cookies")).expect("read"), b"cookies");
        assert!(copy.join("Default/Local Storage/000003.log").is_file());
        assert!(!copy.join("SingletonLock").exists());
        assert!(
            !copy.join("Subresource Filter").exists(),
            "the node's ruleset is not the user's"
        );
        assert!(fs::symlink_metadata(copy.join("Default/link")).is_err());
        // Write-once files are linked, the others copied.
        fs::create_dir_all(from.path().join("Default/IndexedDB/x.blob/1")).expect("blob dir");
        fs::write(from.path().join("Default/IndexedDB/x.blob/1/7"), b"blob").expect("blob");
        fs::write(from.path().join("Default/000005.ldb"), b"table").expect("table");
        copy_profile(from.path(), &to.path().join("linked"), limits).expect("copied");
        let inode = |path: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(path).expect("meta"));
        let linked = to.path().join("linked");
        assert_eq!(
            inode(&linked.join("Default/IndexedDB/x.blob/1/7")),
            inode(&from.path().join("Default/IndexedDB/x.blob/1/7"))
        );
        assert_eq!(
            inode(&linked.join("Default/000005.ldb")),
            inode(&from.path().join("Default/000005.ldb"))
        );
        assert_ne!(
            inode(&linked.join("Default/Cookies")),
            inode(&from.path().join("Default/Cookies"))
        );
        let small = CopyLimits {
            max_bytes: 10,
            owner: None,
        };
        assert!(matches!(
            copy_profile(from.path(), &to.path().join("small"), small),
            Err(CopyError::TooLarge(10))
        ));
    }
}

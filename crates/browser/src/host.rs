//! What this crate knows about the machine browsers run on: where Chromium
//! is (and the binary behind a distribution's launcher script), whether its
//! sandbox can work here, the users of the machine, and how to ready a data
//! dir for browsers that run as another user.
//!
//! Nothing here knows about settings: errors are typed, and the server turns
//! them into messages that name its settings.

use std::path::{Path, PathBuf};

use crate::launch::RunAs;

/// Where distributions put the real browser behind their launcher scripts.
const REAL_BINARIES: [&str; 3] = [
    "/usr/lib/chromium/chromium",
    "/usr/lib/chromium-browser/chromium-browser",
    "/opt/google/chrome/chrome",
];

/// The names Chromium goes by on `PATH`, in the order they are tried.
pub const CHROMIUM_NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// Whether `path` is an executable file.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The first Chromium on `path` (a `PATH` value), with a launcher script
/// replaced by the binary it runs: Debian's `/usr/bin/chromium` sources
/// `/etc/chromium.d`, cleans old crash reports and probes `/dev/shm` on every
/// start (about 25 ms here) before it runs the real binary.
pub fn find_chromium(path: &str) -> Option<PathBuf> {
    CHROMIUM_NAMES.iter().find_map(|name| {
        std::env::split_paths(path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
            .map(skip_launcher_script)
    })
}

/// The first executable called `name` on this process's `PATH`, or in
/// `/usr/bin` when `PATH` has none.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(std::iter::once(PathBuf::from("/usr/bin")))
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn skip_launcher_script(found: PathBuf) -> PathBuf {
    let is_script = std::fs::File::open(&found)
        .and_then(|mut file| {
            let mut start = [0_u8; 2];
            std::io::Read::read_exact(&mut file, &mut start).map(|()| start == *b"#!")
        })
        .unwrap_or(false);
    if !is_script {
        return found;
    }
    REAL_BINARIES
        .iter()
        .map(PathBuf::from)
        .find(|binary| is_executable(binary))
        .unwrap_or(found)
}

/// This process's effective user id, from `/proc/self/status`.
pub fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether unprivileged users may make user namespaces (what Chromium's
/// sandbox needs when it has no setuid helper): the kernel's limit, and
/// Debian's and AppArmor's switches.
pub fn user_namespaces_allowed() -> bool {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|text| text.trim().to_owned());
    let allowed_by = |path: &str, allowed: &str| read(path).is_none_or(|value| value == allowed);
    read("/proc/sys/user/max_user_namespaces").is_some_and(|value| value != "0")
        && allowed_by("/proc/sys/kernel/unprivileged_userns_clone", "1")
        && allowed_by("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "0")
}

/// A user of this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemUser {
    /// Its name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
}

impl SystemUser {
    /// Finds a user by name or uid in `/etc/passwd`.
    pub fn look_up(name_or_uid: &str) -> Option<Self> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let (name, uid, gid) = (fields.first()?, fields.get(2)?, fields.get(3)?);
            (*name == name_or_uid || *uid == name_or_uid).then(|| {
                Some(Self {
                    name: (*name).to_owned(),
                    uid: uid.parse().ok()?,
                    gid: gid.parse().ok()?,
                })
            })?
        })
    }
}

/// Why a data dir cannot be readied for browsers of another user.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// A directory above the data dir does not let the user through.
    #[error("the browser user cannot pass through {blocked}")]
    CannotPass {
        /// That directory.
        blocked: PathBuf,
    },
    /// A file operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Readies `data_dir` for browsers that run as `user`: the user may pass
/// through the data dir and `browsers_dir` to its own session dirs (and list
/// nothing), gets a cache dir of its own (`browser-cache`), and cannot read
/// the database files (`anchorage.db*`, made `0600`).
pub fn prepare_for_user(user: &SystemUser, data_dir: &Path, browsers_dir: &Path) -> Result<RunAs, PrepareError> {
    use std::os::unix::fs::PermissionsExt;
    let io = |what: &'static str| move |source: std::io::Error| PrepareError::Io { what, source };
    let add_mode = |path: &Path, bits: u32| -> std::io::Result<()> {
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & bits != bits {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode | bits))?;
        }
        Ok(())
    };
    for ancestor in data_dir.ancestors().skip(1) {
        let mode = std::fs::metadata(ancestor)
            .map_err(io("read the data dir's parents"))?
            .permissions()
            .mode();
        if mode & 0o001 == 0 {
            return Err(PrepareError::CannotPass {
                blocked: ancestor.to_path_buf(),
            });
        }
    }
    add_mode(data_dir, 0o001).map_err(io("let it through the data dir"))?;
    add_mode(browsers_dir, 0o001).map_err(io("let it through the browsers dir"))?;
    let cache_dir = data_dir.join("browser-cache");
    std::fs::create_dir_all(&cache_dir).map_err(io("make its cache dir"))?;
    std::os::unix::fs::chown(&cache_dir, Some(user.uid), Some(user.gid)).map_err(io("give it its cache dir"))?;
    // The database (keys' hashes, the token secret) stays the server's alone.
    for entry in std::fs::read_dir(data_dir).map_err(io("read the data dir"))? {
        let path = entry.map_err(io("read the data dir"))?.path();
        let is_database = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with("anchorage.db"));
        if is_database {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .map_err(io("close the database to it"))?;
        }
    }
    Ok(RunAs {
        uid: user.uid,
        gid: user.gid,
        cache_dir,
    })
}

//! The files of saved browser profiles: `<data dir>/profiles/<profile id>/<version>`.
//!
//! A save copies the ended browser's profile into a new `<version>.partial`
//! folder, renames it to `<version>` once complete, and only then switches
//! the store's row to it; the version it replaced is removed after. A crash
//! at any point leaves the row on a complete copy (the previous one until
//! the switch), and [`ProfileFiles::sweep`] removes what no row names.
//!
//! A start copies the version in use into its browser's new profile while
//! holding that profile's read lock; a switch takes the write lock only for
//! the store update, so a save never removes a copy a start is reading, and
//! neither ever waits for another session's copy to finish.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anchorage_browser::{copy_profile, CopyError, CopyLimits};
use anchorage_core::{ProfileId, ProfileStatus, Timestamp};
use anchorage_store::Store;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};

/// Where profiles' files are, and how large one may be.
#[derive(Debug)]
pub struct ProfileFiles {
    root: PathBuf,
    max_bytes: u64,
    locks: Mutex<HashMap<ProfileId, Arc<RwLock<()>>>>,
    /// Saves announced and not finished, per profile (shown as `saving`).
    saving: Mutex<HashMap<ProfileId, usize>>,
}

/// A profile copy a start reads from; the copy stays while this is held.
#[derive(Debug)]
pub struct ProfileSeed {
    /// The folder to copy from.
    pub folder: PathBuf,
    /// The most bytes it may hold.
    pub max_bytes: u64,
    _reading: OwnedRwLockReadGuard<()>,
}

impl ProfileFiles {
    /// Profiles under `root`, each at most `max_bytes`.
    pub fn new(root: PathBuf, max_bytes: u64) -> Self {
        Self {
            root,
            max_bytes,
            locks: Mutex::new(HashMap::new()),
            saving: Mutex::new(HashMap::new()),
        }
    }

    fn lock_of(&self, id: ProfileId) -> Arc<RwLock<()>> {
        match self.locks.lock() {
            Ok(mut locks) => Arc::clone(locks.entry(id).or_default()),
            // A poisoned map: a lock of its own is still correct for this call.
            Err(_) => Arc::new(RwLock::new(())),
        }
    }

    fn folder(&self, id: ProfileId) -> PathBuf {
        self.root.join(id.as_uuid().simple().to_string())
    }

    /// The profile a start names, and the copy it begins from (the version
    /// the store names now; `None` for a profile with nothing saved yet).
    /// `None` when the team has no such profile.
    pub async fn seed(
        &self,
        store: &dyn Store,
        team: anchorage_core::TeamId,
        name: &str,
    ) -> Option<(ProfileId, Option<ProfileSeed>)> {
        let record = store.profile(team, name).await.ok().flatten()?;
        let reading = self.lock_of(record.id).read_owned().await;
        // Read again under the lock: a switch may have happened meanwhile.
        let record = store.profile(team, name).await.ok().flatten()?;
        let seed = record.version.map(|version| ProfileSeed {
            folder: self.folder(record.id).join(version),
            max_bytes: self.max_bytes,
            _reading: reading,
        });
        Some((record.id, seed))
    }

    /// Announces saves about to run (the session has ended, the browser
    /// still closes), so that the profiles show `saving` until they are done.
    pub fn announce_saves(&self, ids: &[ProfileId]) {
        if let Ok(mut saving) = self.saving.lock() {
            for id in ids {
                *saving.entry(*id).or_default() += 1;
            }
        }
    }

    /// Whether a save of the profile is announced and not finished.
    pub fn is_saving(&self, id: ProfileId) -> bool {
        self.saving.lock().is_ok_and(|saving| saving.contains_key(&id))
    }

    /// Saves the profile folder of an ended browser as the profile's new
    /// version, and ends its announcement (see [`Self::announce_saves`]).
    pub async fn save_announced(&self, store: &dyn Store, id: ProfileId, from: &Path) {
        self.save(store, id, from).await;
        if let Ok(mut saving) = self.saving.lock() {
            if let Some(count) = saving.get_mut(&id) {
                *count -= 1;
                if *count == 0 {
                    saving.remove(&id);
                }
            }
        }
    }

    /// Saves the profile folder of an ended browser as the profile's new
    /// version. Failures are recorded on the profile and logged; the
    /// previous version stays in use.
    async fn save(&self, store: &dyn Store, id: ProfileId, from: &Path) {
        let version = format!("v{}-{:08x}", Timestamp::now().as_millis(), rand_suffix());
        let folder = self.folder(id);
        let partial = folder.join(format!("{version}.partial"));
        let complete = folder.join(&version);
        let limits = CopyLimits {
            max_bytes: self.max_bytes,
            owner: None,
        };
        let (source, target) = (from.to_path_buf(), partial.clone());
        let copied = tokio::task::spawn_blocking(move || copy_profile(&source, &target, limits))
            .await
            .unwrap_or_else(|error| Err(CopyError::Io(std::io::Error::other(error.to_string()))));
        let size = match copied {
            Ok(size) => size,
            Err(error) => {
                tracing::warn!(profile_id = %id, %error, "a profile could not be saved; it keeps its previous copy");
                remove(partial).await;
                self.record_failure(store, id).await;
                return;
            }
        };
        if let Err(error) = tokio::fs::rename(&partial, &complete).await {
            tracing::warn!(profile_id = %id, %error, "a profile could not be saved; it keeps its previous copy");
            remove(partial).await;
            self.record_failure(store, id).await;
            return;
        }
        let switched = {
            let _writing = self.lock_of(id).write_owned().await;
            let size = i64::try_from(size).unwrap_or(i64::MAX);
            store
                .profile_saved(id, Some((&version, size)), ProfileStatus::Ready, Timestamp::now())
                .await
        };
        match switched {
            Ok(Some(Some(previous))) => remove(folder.join(previous)).await,
            Ok(Some(None)) => {}
            // Deleted while it was being saved: the copy goes too.
            Ok(None) => remove(folder).await,
            Err(error) => {
                tracing::error!(profile_id = %id, %error, "cannot record a saved profile; it keeps its previous copy");
                remove(complete).await;
            }
        }
    }

    async fn record_failure(&self, store: &dyn Store, id: ProfileId) {
        let has_copy = store
            .all_profiles()
            .await
            .ok()
            .and_then(|profiles| profiles.into_iter().find(|profile| profile.id == id))
            .is_some_and(|profile| profile.version.is_some());
        let status = if has_copy {
            ProfileStatus::Ready
        } else {
            ProfileStatus::Failed
        };
        let _ = store.profile_saved(id, None, status, Timestamp::now()).await;
    }

    /// Removes a deleted profile's files (after any start reading them).
    pub async fn remove(&self, id: ProfileId) {
        let _writing = self.lock_of(id).write_owned().await;
        remove(self.folder(id)).await;
        if let Ok(mut locks) = self.locks.lock() {
            locks.remove(&id);
        }
    }

    /// At start-up: removes folders no profile names (deleted profiles,
    /// replaced versions, unfinished saves) once they are old enough to be
    /// no other node's work in progress, and marks profiles that waited
    /// for a session that no longer runs as saved or failed (a session
    /// another node still runs saves its profile when it ends).
    pub async fn sweep(&self, store: &dyn Store) -> Result<(), anchorage_store::StoreError> {
        // Only the server may pass through: a browser reaches the files of
        // its own profile through the links in its own folder, nothing else.
        if tokio::fs::create_dir_all(&self.root).await.is_ok() {
            use std::os::unix::fs::PermissionsExt;
            let _ = tokio::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700)).await;
        }
        let profiles = store.all_profiles().await?;
        for profile in profiles
            .iter()
            .filter(|profile| profile.status == ProfileStatus::Pending)
        {
            // One whose session still runs (on another node: this node's
            // sessions were ended before the sweep) is saved when it ends.
            if let Some(session_id) = profile.session_id {
                let session = store.session(profile.team_id, session_id).await?;
                if session.is_some_and(|session| session.status.is_live()) {
                    continue;
                }
            }
            let status = if profile.version.is_some() {
                ProfileStatus::Ready
            } else {
                ProfileStatus::Failed
            };
            store.profile_saved(profile.id, None, status, Timestamp::now()).await?;
        }
        let Ok(mut entries) = tokio::fs::read_dir(&self.root).await else {
            return Ok(());
        };
        while let Ok(Some(entry)) = entries.next_entry().await {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(profile) = profiles
                .iter()
                .find(|profile| profile.id.as_uuid().simple().to_string() == name)
            else {
                if crate::leftovers::left_long_ago(&entry.path()).await {
                    remove(entry.path()).await;
                }
                continue;
            };
            let Ok(mut versions) = tokio::fs::read_dir(entry.path()).await else {
                continue;
            };
            while let Ok(Some(version)) = versions.next_entry().await {
                if profile.version.as_deref() != Some(&*version.file_name().to_string_lossy())
                    && crate::leftovers::left_long_ago(&version.path()).await
                {
                    remove(version.path()).await;
                }
            }
        }
        Ok(())
    }
}

async fn remove(path: PathBuf) {
    let _ = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&path) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => tracing::warn!(path = %path.display(), %error, "cannot remove a profile folder"),
    })
    .await;
}

fn rand_suffix() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorage_store::ProfileRecord;

    /// A store with one team and one profile of it, nothing saved yet.
    async fn store_with_profile() -> (Arc<dyn Store>, ProfileRecord) {
        let store = anchorage_store::open("sqlite::memory:").await.expect("store");
        let team = store.create_team("alpha").await.expect("team");
        let now = Timestamp::now();
        let profile = ProfileRecord {
            id: ProfileId::new_random(),
            team_id: team.id,
            name: "shop".to_owned(),
            description: None,
            source: None,
            session_id: None,
            status: ProfileStatus::Ready,
            version: None,
            size_bytes: 0,
            created_at: now,
            updated_at: now,
        };
        store.create_profile(&profile).await.expect("profile");
        (store, profile)
    }

    /// A browser profile folder holding one file of `bytes` bytes.
    fn browser_folder(parent: &Path, name: &str, bytes: usize) -> PathBuf {
        let folder = parent.join(name);
        std::fs::create_dir_all(folder.join("Default")).expect("folder");
        std::fs::write(folder.join("Default").join("Preferences"), vec![b'x'; bytes]).expect("file");
        folder
    }

    fn entries(folder: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder)
            .map(|read| {
                read.filter_map(Result::ok)
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    async fn version_of(store: &dyn Store, profile: &ProfileRecord) -> (Option<String>, ProfileStatus) {
        let read = store
            .profile(profile.team_id, &profile.name)
            .await
            .expect("read")
            .expect("there");
        (read.version, read.status)
    }

    #[tokio::test]
    async fn a_save_that_fails_keeps_the_previous_copy_and_leaves_no_partial_folder() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, profile) = store_with_profile().await;
        let files = ProfileFiles::new(dir.path().join("profiles"), 1000);
        let first = browser_folder(dir.path(), "first", 10);
        files.announce_saves(&[profile.id]);
        assert!(files.is_saving(profile.id));
        files.save_announced(store.as_ref(), profile.id, &first).await;
        assert!(!files.is_saving(profile.id));
        let (version, status) = version_of(store.as_ref(), &profile).await;
        let version = version.expect("saved");
        assert_eq!(status, ProfileStatus::Ready);

        // Over the size limit: refused, the row and the folder as they were.
        let large = browser_folder(dir.path(), "large", 5000);
        files.announce_saves(&[profile.id]);
        files.save_announced(store.as_ref(), profile.id, &large).await;
        assert_eq!(
            version_of(store.as_ref(), &profile).await,
            (Some(version.clone()), ProfileStatus::Ready)
        );
        assert_eq!(entries(&files.folder(profile.id)), vec![version.clone()]);
        let seed = files
            .seed(store.as_ref(), profile.team_id, &profile.name)
            .await
            .expect("known")
            .1
            .expect("a copy");
        assert_eq!(seed.folder, files.folder(profile.id).join(&version));
        assert_eq!(
            std::fs::read(seed.folder.join("Default").join("Preferences")).expect("kept"),
            vec![b'x'; 10]
        );
    }

    #[tokio::test]
    async fn the_start_up_sweep_removes_what_a_crash_left_and_keeps_the_copy_in_use() {
        let dir = tempfile::tempdir().expect("dir");
        let (store, profile) = store_with_profile().await;
        let files = ProfileFiles::new(dir.path().join("profiles"), 1 << 20);
        files
            .save_announced(store.as_ref(), profile.id, &browser_folder(dir.path(), "first", 10))
            .await;
        let (Some(version), _) = version_of(store.as_ref(), &profile).await else {
            panic!("not saved");
        };
        // What a crash leaves: a copy cut off mid-way, a complete copy the
        // row was never switched to, and the folder of a deleted profile.
        let folder = files.folder(profile.id);
        let deleted = dir.path().join("profiles").join("0123456789abcdef0123456789abcdef");
        for left in [
            browser_folder(&folder, "v1-cut.partial", 3),
            browser_folder(&folder, "v2-unswitched", 3),
            browser_folder(&deleted, "v1", 3),
        ] {
            crate::test_support::age(&left);
        }
        crate::test_support::age(&deleted);
        // A copy another node sharing the folder is writing now stays.
        let fresh = browser_folder(&folder, "v3-elsewhere.partial", 3);
        // A profile that waited for a session of the previous run, and one
        // waiting for a session another node still runs.
        let waiting = ProfileRecord {
            id: ProfileId::new_random(),
            name: "waiting".to_owned(),
            status: ProfileStatus::Pending,
            ..profile.clone()
        };
        store.create_profile(&waiting).await.expect("profile");
        let elsewhere =
            crate::test_support::live_session(store.as_ref(), profile.team_id, anchorage_core::NodeId::from_u128(9))
                .await;
        let still_waiting = ProfileRecord {
            id: ProfileId::new_random(),
            name: "still waiting".to_owned(),
            status: ProfileStatus::Pending,
            session_id: Some(elsewhere.id),
            ..profile.clone()
        };
        store.create_profile(&still_waiting).await.expect("profile");

        files.sweep(store.as_ref()).await.expect("swept");
        assert_eq!(
            entries(&folder),
            vec![version.clone(), "v3-elsewhere.partial".to_owned()]
        );
        assert!(fresh.exists());
        assert!(!deleted.exists());
        assert_eq!(
            std::fs::read(folder.join(&version).join("Default").join("Preferences")).expect("kept"),
            vec![b'x'; 10]
        );
        assert_eq!(
            version_of(store.as_ref(), &profile).await,
            (Some(version), ProfileStatus::Ready)
        );
        assert_eq!(
            version_of(store.as_ref(), &waiting).await,
            (None, ProfileStatus::Failed)
        );
        assert_eq!(
            version_of(store.as_ref(), &still_waiting).await,
            (None, ProfileStatus::Pending)
        );
    }
}

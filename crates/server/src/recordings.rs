//! Session recordings on disk: where each file lives
//! (`<root>/<session id>/<recording id>.mp4`), recording a live session
//! (the browser crate's `record`, one task per session, its row in the
//! store), the start-up recovery of recordings a stopped server left
//! unfinished, and the retention sweep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anchorage_browser::{Devtools, RecordingControl, RecordingSpec};
use anchorage_core::{RecordingId, RecordingStatus, SessionId, TeamId, Timestamp};
use anchorage_store::{RecordingRecord, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// Frames per second of recordings.
pub const FPS: u32 = 10;

/// A live session to record.
pub struct Subject {
    /// The session.
    pub session_id: SessionId,
    /// Its team.
    pub team_id: TeamId,
    /// Its browser's DevTools pipe.
    pub devtools: Devtools,
    /// The video's size: the session's viewport.
    pub size: (u32, u32),
    /// Fires when the session ends.
    pub stop: CancellationToken,
}

/// The recordings of a server.
#[derive(Debug)]
pub struct Recordings {
    root: PathBuf,
    ffmpeg: PathBuf,
    ffprobe: Option<PathBuf>,
    retention: Duration,
    /// The node these files are on: it recovers and sweeps its own
    /// sessions' recordings, not the other nodes'.
    node: anchorage_core::NodeId,
}

impl Recordings {
    /// Recordings of `node`'s sessions under `root`, encoded by `ffmpeg`,
    /// kept for `retention`.
    pub fn new(root: PathBuf, ffmpeg: PathBuf, retention: Duration, node: anchorage_core::NodeId) -> Self {
        let ffprobe = ffmpeg
            .parent()
            .map(|dir| dir.join("ffprobe"))
            .filter(|path| path.exists())
            .or_else(|| anchorage_browser::host::find_in_path("ffprobe"));
        Self {
            root,
            ffmpeg,
            ffprobe,
            retention,
            node,
        }
    }

    /// The file of a recording.
    pub fn file(&self, session_id: SessionId, recording_id: RecordingId) -> PathBuf {
        self.root
            .join(session_id.to_string())
            .join(format!("{recording_id}.mp4"))
    }

    /// Starts recording a live session: its row, then a task that records
    /// until `stop` fires (or the browser goes) and finishes the row. The
    /// recording's id and its controls.
    pub async fn start(
        self: &Arc<Self>,
        store: Arc<dyn Store>,
        subject: Subject,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<(RecordingId, RecordingControl), StoreError> {
        let Subject {
            session_id,
            team_id,
            devtools,
            size,
            stop,
        } = subject;
        let id = RecordingId::new_random();
        let output = self.file(session_id, id);
        let record = RecordingRecord {
            id,
            session_id,
            team_id,
            status: RecordingStatus::Recording,
            size_bytes: 0,
            duration_ms: 0,
            error: None,
            created_at: Timestamp::now(),
            ended_at: None,
        };
        store.create_recording(&record).await?;
        let control = RecordingControl::default();
        let spec = RecordingSpec {
            ffmpeg: self.ffmpeg.clone(),
            output: output.clone(),
            fps: FPS,
            width: size.0,
            height: size.1,
        };
        let recording_id = id;
        let running = control.clone();
        tasks.spawn(async move {
            let folder = output.parent().map(Path::to_path_buf).unwrap_or_default();
            let recorded = match tokio::fs::create_dir_all(&folder).await {
                Err(error) => Err(error),
                Ok(()) => anchorage_browser::record(&devtools, &spec, running, stop).await,
            };
            let size = file_size(&output).await;
            let (status, duration_ms, error) = match recorded {
                Ok(recorded) if recorded.frames > 0 && size > 0 => {
                    if recorded.dropped > 0 {
                        tracing::info!(%session_id, dropped = recorded.dropped, "the encoder fell behind: frames were dropped");
                    }
                    let error = (!recorded.clean).then(|| {
                        format!(
                            "ffmpeg did not finish cleanly: {}",
                            recorded.error.unwrap_or_default()
                        )
                    });
                    (RecordingStatus::Ready, recorded.duration.as_millis() as i64, error)
                }
                Ok(recorded) => (
                    RecordingStatus::Failed,
                    0,
                    Some(match recorded.error {
                        Some(said) => format!("no video was written: {said}"),
                        None => "no frame was recorded (the page never painted)".to_owned(),
                    }),
                ),
                Err(error) => (RecordingStatus::Failed, 0, Some(format!("ffmpeg could not run: {error}"))),
            };
            if let Err(error) = store
                .finish_recording(recording_id, status, size, duration_ms, error.as_deref(), Timestamp::now())
                .await
            {
                tracing::error!(%session_id, %error, "cannot record the end of a recording");
            }
        });
        Ok((id, control))
    }

    /// After a restart: kills encoders a killed server left, and finishes
    /// the recordings it left `recording` (ffmpeg finishes a file whose
    /// input closes, and a fragmented MP4 plays up to its last fragment):
    /// `ready` when a file is there, with its length as `ffprobe` reads it,
    /// `failed` when not.
    pub async fn recover(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let root = self.root.clone();
        let killed =
            tokio::task::spawn_blocking(move || anchorage_browser::reap_encoders(&root, Duration::from_secs(5)))
                .await
                .unwrap_or(0);
        if killed > 0 {
            tracing::warn!(killed, "killed encoders a previous run left");
        }
        let unfinished = store
            .recordings_in(RecordingStatus::Recording, None, Some(self.node))
            .await?;
        for recording in &unfinished {
            let file = self.file(recording.session_id, recording.id);
            let size = file_size(&file).await;
            let duration = match &self.ffprobe {
                Some(ffprobe) if size > 0 => anchorage_browser::probe_duration(ffprobe, &file).await,
                _ => None,
            };
            let reason = "the server stopped while recording";
            let (status, error) = match duration {
                Some(_) => (
                    RecordingStatus::Ready,
                    Some(format!("{reason}: the video ends where it stopped")),
                ),
                None => (
                    RecordingStatus::Failed,
                    Some(format!("{reason}: no playable video was left")),
                ),
            };
            let duration_ms = duration.map_or(0, |duration| duration.as_millis() as i64);
            store
                .finish_recording(
                    recording.id,
                    status,
                    size,
                    duration_ms,
                    error.as_deref(),
                    Timestamp::now(),
                )
                .await?;
        }
        Ok(unfinished.len())
    }

    /// Deletes finished recordings older than the retention, files first.
    pub async fn sweep(&self, store: &dyn Store) -> Result<usize, StoreError> {
        let before = Timestamp::from_millis(Timestamp::now().as_millis() - self.retention.as_millis() as i64);
        let mut removed = 0;
        for status in [RecordingStatus::Ready, RecordingStatus::Failed] {
            for recording in store.recordings_in(status, Some(before), Some(self.node)).await? {
                self.remove_file(recording.session_id, recording.id).await;
                if store
                    .delete_recording(recording.team_id, recording.session_id, recording.id)
                    .await?
                    .is_some()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    /// Removes a recording's file (and its session's folder once empty).
    pub async fn remove_file(&self, session_id: SessionId, recording_id: RecordingId) {
        let file = self.file(session_id, recording_id);
        let _ = tokio::fs::remove_file(&file).await;
        if let Some(folder) = file.parent() {
            let _ = tokio::fs::remove_dir(folder).await;
        }
    }
}

/// A file's size; 0 when it is not there.
async fn file_size(file: &Path) -> i64 {
    tokio::fs::metadata(file)
        .await
        .map_or(0, |meta| i64::try_from(meta.len()).unwrap_or(i64::MAX))
}

/// `HH:MM:SS` of a length in milliseconds.
pub fn clock(duration_ms: i64) -> String {
    let seconds = duration_ms.max(0) / 1000;
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchorage_core::NodeId;

    #[test]
    fn lengths_read_as_a_clock() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(5_900), "00:00:05");
        assert_eq!(clock(3_723_000), "01:02:03");
    }

    #[tokio::test]
    async fn the_sweep_removes_finished_recordings_past_their_retention_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("dir");
        let store = anchorage_store::open("sqlite::memory:").await.expect("store");
        let team = store.create_team("alpha").await.expect("team").id;
        let node = NodeId::from_u128(7);
        let now = Timestamp::now();
        let session = crate::test_support::live_session(store.as_ref(), team, node).await;
        let recordings = Recordings::new(
            dir.path().join("recordings"),
            PathBuf::from("ffmpeg"),
            Duration::from_secs(3600),
            node,
        );
        let hours_ago = |hours: i64| Timestamp::from_millis(now.as_millis() - hours * 3_600_000);
        // Two finished three hours ago (past the hour kept), one finished
        // now, one still recording since three hours ago.
        let [old, old_failed, new, live] = [1, 2, 3, 4].map(RecordingId::from_u128);
        for (id, status, ended) in [
            (old, RecordingStatus::Ready, Some(3)),
            (old_failed, RecordingStatus::Failed, Some(3)),
            (new, RecordingStatus::Ready, Some(0)),
            (live, RecordingStatus::Recording, None),
        ] {
            let record = RecordingRecord {
                id,
                session_id: session.id,
                team_id: team,
                status: RecordingStatus::Recording,
                size_bytes: 0,
                duration_ms: 0,
                error: None,
                created_at: hours_ago(3),
                ended_at: None,
            };
            store.create_recording(&record).await.expect("recording");
            if let Some(hours) = ended {
                assert!(store
                    .finish_recording(id, status, 10, 1000, None, hours_ago(hours))
                    .await
                    .expect("finish"));
            }
            let file = recordings.file(session.id, id);
            std::fs::create_dir_all(file.parent().expect("folder")).expect("folder");
            std::fs::write(&file, b"video").expect("file");
        }

        assert_eq!(recordings.sweep(store.as_ref()).await.expect("sweep"), 2);
        let mut left: Vec<RecordingId> = store
            .session_recordings(team, session.id)
            .await
            .expect("list")
            .into_iter()
            .map(|recording| recording.id)
            .collect();
        left.sort();
        assert_eq!(left, [new, live]);
        for (id, kept) in [(old, false), (old_failed, false), (new, true), (live, true)] {
            assert_eq!(recordings.file(session.id, id).exists(), kept, "{id}");
        }
        // Another node's sweep leaves this node's recordings alone.
        let elsewhere = Recordings::new(
            dir.path().join("recordings"),
            PathBuf::from("ffmpeg"),
            Duration::ZERO,
            NodeId::from_u128(8),
        );
        assert_eq!(elsewhere.sweep(store.as_ref()).await.expect("sweep"), 0);
    }
}

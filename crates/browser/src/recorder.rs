//! Recording a browser's active page to an MP4 (H.264): pictures of the
//! page (`Page.captureScreenshot`, JPEG, on a connection that follows the
//! active page), at a steady frame rate, encoded by `ffmpeg` running as a
//! child in its own process group.
//!
//! - **Pictures, not the screencast**: a screencast makes the browser
//!   composite and read back every frame an animation paints (60 a second),
//!   whatever it then sends; one capture a period costs a fraction of that
//!   (measured in BENCHMARKS.md).
//! - **Giving way**: a picture that took long delays the next one as long
//!   again, so a busy page is not slowed by its recording.
//! - **Steady time**: a ticker writes the latest picture `fps` times a second
//!   (a page that does not change still takes time in the video), so the
//!   video lasts as long as it recorded. While paused, nothing is captured
//!   or written: the paused stretch is not in the video.
//! - **Never starving the session**: pictures go to the encoder through a
//!   channel of a few frames; when the encoder falls behind, new ones are
//!   dropped (and counted), never queued without bound. The encoder runs at
//!   a lower priority than the browsers.
//! - **Fragmented MP4**, each fragment flushed as it is made: the file is
//!   playable up to its last fragment at any moment, so a server killed
//!   mid-recording leaves a playable file (and `ffmpeg`, reading end-of-file
//!   on its stdin, finishes it on its own).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::actions::{Capture, PageControl};
use crate::cdp::CdpError;
use crate::devtools::Devtools;

/// How long one picture may take before the page is looked up again.
const PICTURE_TIMEOUT: Duration = Duration::from_secs(1);

/// How each picture is taken: the viewport, as a JPEG.
const PICTURE: Capture = Capture {
    jpeg_quality: Some(70),
    full_height: false,
    fast: true,
};

/// Frames waiting for the encoder at most; more are dropped.
const ENCODER_BACKLOG: usize = 4;
/// The encoder's nice value: below the browsers it records.
const ENCODER_NICE: i32 = 10;

/// How a recording is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingSpec {
    /// The `ffmpeg` executable.
    pub ffmpeg: PathBuf,
    /// The MP4 to write.
    pub output: PathBuf,
    /// Frames per second of the video.
    pub fps: u32,
    /// The video's size (the session's viewport), in pixels.
    pub width: u32,
    /// Its height.
    pub height: u32,
}

impl RecordingSpec {
    /// `ffmpeg`'s arguments: JPEG frames on stdin at `fps`, scaled into the
    /// video's size (even sides, as H.264 wants), fragmented MP4 out.
    fn arguments(&self) -> Vec<String> {
        let (width, height) = (self.width.max(2) & !1, self.height.max(2) & !1);
        let fps = self.fps.max(1);
        [
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "image2pipe",
            "-framerate",
            &fps.to_string(),
            "-c:v",
            "mjpeg",
            "-i",
            "pipe:0",
            "-vf",
            &format!(
                "scale={width}:{height}:force_original_aspect_ratio=decrease,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,format=yuv420p"
            ),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "30",
            "-g",
            &(fps * 2).to_string(),
            "-movflags",
            "+frag_keyframe+empty_moov+default_base_moof",
            // Each fragment goes to the file as it is made, not when a
            // buffer fills: a killed server leaves every finished fragment.
            "-flush_packets",
            "1",
            "-f",
            "mp4",
        ]
        .iter()
        .map(|argument| argument.to_string())
        .chain(std::iter::once(self.output.display().to_string()))
        .collect()
    }
}

/// What a finished recording is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Frames in the video.
    pub frames: u64,
    /// Frames dropped because the encoder was behind.
    pub dropped: u64,
    /// The video's length.
    pub duration: Duration,
    /// Whether `ffmpeg` finished the file cleanly.
    pub clean: bool,
    /// What `ffmpeg` said on its error output, if anything.
    pub error: Option<String>,
}

/// Controls of a recording under way.
#[derive(Debug, Clone, Default)]
pub struct RecordingControl {
    paused: Arc<AtomicBool>,
    frames: Arc<AtomicU64>,
}

impl RecordingControl {
    /// Pauses (`true`) or resumes; `false` if it was already so.
    pub fn set_paused(&self, paused: bool) -> bool {
        self.paused.swap(paused, Ordering::SeqCst) != paused
    }

    /// Whether it is paused.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Frames written so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::SeqCst)
    }
}

/// The `ffmpeg` child.
struct Encoder {
    child: Child,
    stdin: Option<ChildStdin>,
    stderr: tokio::task::JoinHandle<String>,
}

impl Encoder {
    fn start(spec: &RecordingSpec) -> std::io::Result<Self> {
        let mut command = Command::new(&spec.ffmpeg);
        command
            .args(spec.arguments())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // SAFETY: between fork and exec the closure only calls
        // setpriority, which is async-signal-safe.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(|| {
                // The encoder yields to the pages it records: when it falls
                // behind, frames are dropped, not the pages slowed.
                libc::setpriority(libc::PRIO_PROCESS, 0, ENCODER_NICE);
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let stdin = child.stdin.take();
        let mut stderr = child.stderr.take();
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            if let Some(stderr) = stderr.as_mut() {
                let mut bytes = Vec::new();
                let _ = stderr.take(16 * 1024).read_to_end(&mut bytes).await;
                text = String::from_utf8_lossy(&bytes).trim().to_owned();
            }
            text
        });
        Ok(Self { child, stdin, stderr })
    }

    /// Closes its input and waits for it to finish the file; kills it
    /// (its whole group) after `within`.
    async fn finish(mut self, within: Duration) -> (bool, Option<String>) {
        drop(self.stdin.take());
        let clean = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                kill_group(&self.child);
                let _ = self.child.wait().await;
                false
            }
        };
        let said = self.stderr.await.unwrap_or_default();
        (clean, Some(said).filter(|text| !text.is_empty()))
    }
}

fn kill_group(child: &Child) {
    if let Some(pid) = child.id() {
        #[allow(unsafe_code)]
        // SAFETY: killpg takes plain integers and touches no memory of ours.
        unsafe {
            libc::killpg(pid as i32, libc::SIGKILL);
        }
    }
}

/// Records the browser's active page into `spec.output` until `stop`
/// fires or the browser goes, then finishes the file. `control` pauses and
/// resumes it. Errors only when the encoder cannot be started; a
/// screencast that cannot be opened gives an empty, failed recording.
pub async fn record(
    devtools: &Devtools,
    spec: &RecordingSpec,
    control: RecordingControl,
    stop: CancellationToken,
) -> std::io::Result<Recorded> {
    let mut encoder = Encoder::start(spec)?;
    let Some(mut stdin) = encoder.stdin.take() else {
        return Err(std::io::Error::other("ffmpeg has no stdin"));
    };
    let (frames_in, mut frames_out) = mpsc::channel::<Arc<Vec<u8>>>(ENCODER_BACKLOG);
    // The writer: frames to ffmpeg's stdin, as fast as it takes them.
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames_out.recv().await {
            if stdin.write_all(&frame).await.is_err() {
                break;
            }
        }
        drop(stdin);
    });
    let fps = spec.fps.max(1);
    let period = Duration::from_secs_f64(1.0 / f64::from(fps));
    // The capturer: the active page, captured once a period (not while
    // paused), its latest picture in `latest`; it ends when the browser goes.
    // Each picture with the moment its capture began.
    let (latest_in, mut latest) = tokio::sync::watch::channel::<Option<(Instant, Arc<Vec<u8>>)>>(None);
    let capturer = {
        let (devtools, control, stop) = (devtools.clone(), control.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = capture_pictures(&devtools, period, &control, latest_in) => {}
                () = stop.cancelled() => {}
            }
        })
    };
    let mut ticker = tokio::time::interval(period);
    // A late tick is made up for: the video keeps the wall clock's pace.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut dropped = 0_u64;
    // After a pause, only a picture whose capture began once it was over is
    // used: one taken during the pause (its capture was in flight when the
    // pause came) would show what the pause hid.
    let (mut was_paused, mut resumed_at) = (false, None::<Instant>);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            changed = latest.changed() => {
                // The capturer ended: the browser went.
                if changed.is_err() {
                    break;
                }
            }
            _ = ticker.tick() => {
                if control.is_paused() {
                    was_paused = true;
                    continue;
                }
                if std::mem::take(&mut was_paused) {
                    resumed_at = Some(Instant::now());
                }
                let Some((began, frame)) = latest.borrow().clone() else { continue };
                if resumed_at.is_some_and(|resumed| began < resumed) {
                    continue;
                }
                match frames_in.try_send(frame) {
                    Ok(()) => {
                        control.frames.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
        }
    }
    capturer.abort();
    let _ = capturer.await;
    drop(frames_in);
    let _ = writer.await;
    let (clean, error) = encoder.finish(Duration::from_secs(20)).await;
    let frames = control.frames();
    Ok(Recorded {
        frames,
        dropped,
        duration: Duration::from_secs_f64(frames as f64 / f64::from(fps)),
        clean,
        error,
    })
}

/// Captures the browser's active page as a JPEG once a `period` (skipping
/// paused stretches) into `latest`, until the browser goes.
async fn capture_pictures(
    devtools: &Devtools,
    period: Duration,
    control: &RecordingControl,
    latest: tokio::sync::watch::Sender<Option<(Instant, Arc<Vec<u8>>)>>,
) {
    let mut page: Option<PageControl> = None;
    let mut next = tokio::time::Instant::now();
    loop {
        if !control.is_paused() {
            if page.is_none() {
                match PageControl::open(devtools).await {
                    Ok(opened) => page = Some(opened),
                    Err(error) => {
                        tracing::debug!(%error, "the recording cannot follow the page");
                        return;
                    }
                }
            }
            let Some(current) = page.as_mut() else { return };
            if current.refresh().await.is_err() {
                return;
            }
            // A capture in flight when its page swaps processes (a
            // navigation to another site) is never answered: the
            // connection is made again.
            let began = Instant::now();
            match tokio::time::timeout(PICTURE_TIMEOUT, current.capture(PICTURE)).await {
                Ok(Ok(jpeg)) => {
                    latest.send_replace(Some((began, Arc::new(jpeg))));
                }
                Ok(Err(CdpError::Closed | CdpError::Unreachable(_))) => return,
                // A page between two documents, or closing: the next one.
                Ok(Err(error)) => tracing::debug!(%error, "a picture for the recording could not be taken"),
                Err(_) => {
                    // Not a busy page but a lost answer: connect again and
                    // take the next picture at once, without waiting as long again.
                    page = None;
                    next = tokio::time::Instant::now();
                    continue;
                }
            }
        }
        let now = tokio::time::Instant::now();
        // A picture that took long says the page (or the machine) is busy:
        // the next waits as long again, and the video repeats the latest
        // picture meanwhile, so recording gives way to the page's own work.
        let took = now.saturating_duration_since(next);
        next = (next + period).max(now + took);
        tokio::time::sleep_until(next).await;
    }
}

/// A video's length as `ffprobe` reads it (`None` if it cannot).
pub async fn probe_duration(ffprobe: &Path, file: &Path) -> Option<Duration> {
    let probe = Command::new(ffprobe)
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(file)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), probe).await.ok()?.ok()?;
    let seconds: f64 = String::from_utf8_lossy(&output.stdout).trim().parse().ok()?;
    (seconds.is_finite() && seconds > 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// `ffmpeg` processes left by a previous run, writing under `root`.
pub fn leftover_encoder_pids(root: &Path) -> Vec<u32> {
    let marker = format!("{}/", root.display());
    crate::reap::pids_whose_command_line(|cmdline| {
        let mut arguments = cmdline.split(|byte| *byte == 0);
        arguments.next().is_some_and(|program| program.ends_with(b"ffmpeg"))
            && arguments.any(|argument| argument.starts_with(marker.as_bytes()))
    })
}

/// Kills `ffmpeg` processes a previous run left writing under `root`; how
/// many. Each had its input closed when that run died, and finishes its
/// file on its own: they get `grace` to do so first.
pub fn reap_encoders(root: &Path, grace: Duration) -> usize {
    let deadline = std::time::Instant::now() + grace;
    while !leftover_encoder_pids(root).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = leftover_encoder_pids(root);
    for pid in &pids {
        #[allow(unsafe_code)]
        // SAFETY: a plain syscall with integer arguments.
        unsafe {
            libc::kill(*pid as i32, libc::SIGKILL);
        }
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_make_even_sides_and_a_fragmented_mp4() {
        let spec = RecordingSpec {
            ffmpeg: PathBuf::from("ffmpeg"),
            output: PathBuf::from("/data/recordings/x/primary.mp4"),
            fps: 10,
            width: 1281,
            height: 799,
        };
        let arguments = spec.arguments().join(" ");
        assert!(arguments.contains("scale=1280:798"), "{arguments}");
        assert!(arguments.contains("+frag_keyframe+empty_moov"), "{arguments}");
        assert!(arguments.ends_with("/data/recordings/x/primary.mp4"));
        assert!(arguments.contains("-framerate 10"));
    }

    #[test]
    fn pause_and_resume_say_whether_they_changed_anything() {
        let control = RecordingControl::default();
        assert!(control.set_paused(true));
        assert!(!control.set_paused(true));
        assert!(control.is_paused());
        assert!(control.set_paused(false));
    }
}

//! Recordings with real Chromium and ffmpeg: a session that shows a red
//! page, then a blue one, with a green stretch while paused, yields an MP4
//! whose decoded frames are red then blue and never green, as long as the
//! recorded time; it can be fetched only once finished, and only by its team.

use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{Cdp, TestServer};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The colour names of a video's frames, sampled `per_second` times a
/// second, with repeats folded.
fn colours(video: &std::path::Path, per_second: u32) -> Vec<&'static str> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("fps={per_second},scale=1:1"),
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .expect("ffmpeg decodes the video");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut names: Vec<&'static str> = Vec::new();
    for pixel in output.stdout.chunks(3) {
        let name = match pixel {
            [r, g, b] if *r > 150 && *g < 100 && *b < 100 => "red",
            [r, g, b] if *b > 150 && *r < 100 && *g < 100 => "blue",
            [r, g, b] if *g > 100 && *r < 100 && *b < 100 => "green",
            _ => "other",
        };
        if names.last() != Some(&name) {
            names.push(name);
        }
    }
    names
}

/// The colour names of a finished session's primary recording, sampled 4
/// times a second, with repeats folded.
pub(crate) async fn primary_colours(server: &TestServer, id: &str) -> Vec<&'static str> {
    let fetch = format!("{}/v1/sessions/{id}/recordings/primary/fetch", server.base);
    let (status, _, bytes) = server.get_url_for_bytes(&fetch).await;
    assert_eq!(status, StatusCode::OK);
    let dir = tempfile::tempdir().expect("temp dir");
    let video = dir.path().join("primary.mp4");
    std::fs::write(&video, &bytes).expect("write");
    colours(&video, 4)
}

fn duration_of(video: &std::path::Path) -> f64 {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(video)
        .output()
        .expect("ffprobe");
    String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(-1.0)
}

async fn paint(cdp: &mut Cdp, page: &str, colour: &str) {
    cdp.evaluate(
        page,
        &format!(
            "document.documentElement.style.background = '{colour}'; document.body.style.background = '{colour}'; 1"
        ),
    )
    .await;
}

#[tokio::test]
async fn a_recording_shows_what_the_page_showed_in_order_without_the_paused_stretch() {
    let server = TestServer::start().await;
    let session = server
        .create_session(json!({
            "session": {"recording": {"active": true}},
            "browser": {"viewport": {"width": 640, "height": 400}}
        }))
        .await;
    let id = text(&session["id"]).to_owned();
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    let started = Instant::now();
    paint(&mut cdp, &page, "rgb(255, 0, 0)").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    paint(&mut cdp, &page, "rgb(0, 0, 255)").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (status, paused) = server
        .post(&format!("/v1/sessions/{id}/recordings/pause"), json!({}))
        .await;
    assert_eq!(
        (status, paused),
        (StatusCode::OK, json!({"data": {"data": {"status": "success"}}}))
    );
    let paused_at = Instant::now();
    paint(&mut cdp, &page, "rgb(0, 255, 0)").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    paint(&mut cdp, &page, "rgb(0, 0, 255)").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused_for = paused_at.elapsed();
    let (status, _) = server
        .post(&format!("/v1/sessions/{id}/recordings/resume"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Not finished while the session runs.
    let (status, listed) = server.get(&format!("/v1/sessions/{id}/recordings")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"]["count"], json!(1), "{listed}");
    assert_eq!(listed["data"]["items"][0]["status"], json!("recording"));
    let fetch = format!("{}/v1/sessions/{id}/recordings/primary/fetch", server.base);
    assert_eq!(server.get_url_for_bytes(&fetch).await.0, StatusCode::CONFLICT);

    cdp.close().await;
    let (status, _) = server.delete(&format!("/v1/sessions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let recorded_for = started.elapsed() - paused_for;
    // Fetched at once after the end: the fetch waits for the finish.
    let (status, content_type, bytes) = server.get_url_for_bytes(&fetch).await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "video/mp4"));
    // The listing agrees.
    let (_, listed) = server.get(&format!("/v1/sessions/{id}/recordings")).await;
    let item = listed["data"]["items"][0].clone();
    assert_eq!(item["status"], json!("ready"), "{item}");
    assert_eq!(item["is_primary"], json!(true));
    assert_eq!(item["size"].as_f64(), Some(bytes.len() as f64), "{item}");
    let dir = tempfile::tempdir().expect("temp dir");
    let video = dir.path().join("primary.mp4");
    std::fs::write(&video, &bytes).expect("write");
    let seen = colours(&video, 4);
    let shown: Vec<_> = seen.iter().filter(|name| **name != "other").copied().collect();
    assert_eq!(shown, ["red", "blue"], "frames: {seen:?}");
    let length = duration_of(&video);
    let expected = recorded_for.as_secs_f64();
    assert!(
        (length - expected).abs() < 1.0,
        "the video lasts {length} s, the recorded time was {expected:.1} s"
    );

    // Another team sees none of it.
    let other = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    for path in [
        format!("/v1/sessions/{id}/recordings"),
        format!("/v1/sessions/{id}/recordings/primary/fetch"),
    ] {
        let response = server
            .http
            .get(format!("{}{path}", server.base))
            .header("anchor-api-key", &other)
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // Deleted: gone with its file.
    let (status, _) = server.delete(&format!("/v1/sessions/{id}/recordings/primary")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get_url_for_bytes(&fetch).await.0, StatusCode::NOT_FOUND);
    assert!(!server.data_dir.path().join("recordings").join(&id).exists());
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn recording_follows_the_servers_default_and_bad_calls_are_clear() {
    let server = TestServer::start_with(&[("ANCHORAGE_DEFAULT_RECORDING", "true")], |_| {}).await;
    let recorded = server.create_session(json!({})).await;
    let unrecorded = server
        .create_session(json!({"session": {"recording": {"active": false}}}))
        .await;
    let (_, listed) = server
        .get(&format!("/v1/sessions/{}/recordings", text(&recorded["id"])))
        .await;
    assert_eq!(listed["data"]["count"], json!(1), "the default records: {listed}");
    let quiet = text(&unrecorded["id"]).to_owned();
    let (_, listed) = server.get(&format!("/v1/sessions/{quiet}/recordings")).await;
    assert_eq!(listed["data"]["count"], json!(0));
    let (status, error) = server
        .post(&format!("/v1/sessions/{quiet}/recordings/pause"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let fetch = format!("{}/v1/sessions/{quiet}/recordings/primary/fetch", server.base);
    assert_eq!(server.get_url_for_bytes(&fetch).await.0, StatusCode::NOT_FOUND);
    let unknown = format!("/v1/sessions/{}/recordings", uuid::Uuid::new_v4());
    assert_eq!(server.get(&unknown).await.0, StatusCode::NOT_FOUND);
    server.delete("/v1/sessions/all").await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_browser_that_dies_leaves_a_finished_recording() {
    let server = TestServer::start().await;
    let session = server
        .create_session(json!({"session": {"recording": {"active": true}},
                               "browser": {"viewport": {"width": 640, "height": 400}}}))
        .await;
    let id = text(&session["id"]).to_owned();
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    paint(&mut cdp, &page, "rgb(255, 0, 0)").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = server.main_browser_pid(&id).expect("the browser runs");
    crate::support::kill_process(pid);
    server.wait_for_status(&id, "failed", Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, listed) = server.get(&format!("/v1/sessions/{id}/recordings")).await;
        if listed["data"]["items"][0]["status"] == json!("ready") {
            break;
        }
        assert!(Instant::now() < deadline, "the recording was not finished: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(primary_colours(&server, &id).await.contains(&"red"));
    server.assert_no_browsers_left().await;
    server.stop().await;
}

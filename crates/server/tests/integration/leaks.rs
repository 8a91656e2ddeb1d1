//! The leak check: waves of sessions through every way a session can start
//! (from the warm pool or launched, headless or headful, a context in a
//! host browser, recorded, with a persisting profile), be used (CDP, live view, downloads, uploads) and
//! end, after each of which everything must be back at its baseline:
//! browser, display and encoder processes, profile and temp dirs, the
//! server's open file descriptors, WebSocket tasks, session counts, the
//! warm pool; and the process's memory must not grow wave over wave beyond
//! noise.
//!
//! The server runs in this test process, so descriptors and memory are
//! measured on the process itself; the test's HTTP client keeps no idle
//! connections, so every socket it opens is closed again.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{fake_chromium, serve_test_page, Cdp, TestServer};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// What must return to its baseline after every wave.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Footprint {
    browsers: usize,
    displays: usize,
    encoders: usize,
    profile_dirs: usize,
    session_dirs: usize,
    short_tmp_dirs: usize,
    open_files: usize,
    websocket_tasks: String,
    running_sessions: String,
    connections: String,
    queued: String,
    pooled: String,
}

/// Open descriptors of the process, leaving out the database pool's: the
/// pool opens connections as load asks (up to its maximum) and keeps them.
fn open_files(database: &Path) -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|fds| {
            fds.filter_map(Result::ok)
                .filter(|fd| {
                    std::fs::read_link(fd.path()).map_or(true, |target| {
                        !target.to_string_lossy().starts_with(&*database.to_string_lossy())
                    })
                })
                .count()
        })
        .unwrap_or(0)
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(Iterator::count).unwrap_or(0)
}

fn sample(metrics: &str, name: &str) -> String {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or("missing")
        .to_owned()
}

async fn footprint(server: &TestServer, short_tmp_root: &Path) -> Footprint {
    let metrics = server.metrics().await;
    let root = std::fs::canonicalize(server.browsers_dir()).unwrap_or_else(|_| server.browsers_dir());
    Footprint {
        browsers: server.browser_pids().len(),
        displays: anchorage_browser::leftover_display_pids(&root).len(),
        encoders: anchorage_browser::leftover_encoder_pids(server.data_dir.path()).len(),
        profile_dirs: entries(&server.data_dir.path().join("profiles")),
        session_dirs: entries(&server.browsers_dir()),
        short_tmp_dirs: entries(short_tmp_root),
        open_files: open_files(&server.data_dir.path().join("anchorage.db")),
        websocket_tasks: sample(&metrics, "anchorage_websocket_tasks"),
        running_sessions: sample(&metrics, "anchorage_sessions_running"),
        connections: sample(&metrics, "anchorage_cdp_connections"),
        queued: sample(&metrics, "anchorage_queued_requests"),
        pooled: sample(&metrics, "anchorage_pool_browsers"),
    }
}

/// Waits until the footprint is back at the baseline (descriptors may be
/// fewer: the database pool can shrink).
async fn settle(server: &TestServer, short_tmp_root: &Path, baseline: &Footprint, wave: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = footprint(server, short_tmp_root).await;
        let same_but_files = Footprint {
            open_files: baseline.open_files,
            ..now.clone()
        };
        if now.open_files <= baseline.open_files && same_but_files == *baseline {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "after wave {wave} the server did not return to its baseline:\n  baseline {baseline:?}\n  now      {now:?}\n  open: {:?}",
            std::fs::read_dir("/proc/self/fd")
                .map(|fds| fds
                    .filter_map(Result::ok)
                    .filter_map(|fd| std::fs::read_link(fd.path()).ok())
                    .collect::<Vec<PathBuf>>())
                .unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One wave: every way in and out of a session, once.
async fn wave(server: &TestServer, page: &str) {
    // Create (from the warm pool: it holds one), connect, use, disconnect, end.
    server.wait_for_metric("anchorage_pool_browsers", 1.0).await;
    let warm = server.browser_pids();
    let session = server.create_session(json!({})).await;
    // A browser launched for a session has a dir named after it; the warm
    // one, named before the session existed, still runs and serves it.
    assert!(
        server.main_browser_pid(text(&session["id"])).is_none()
            && warm.iter().all(|pid| Path::new(&format!("/proc/{pid}")).exists()),
        "the first start of a wave is served by the warm pool"
    );
    let mut client = Cdp::connect(text(&session["cdp_url"])).await;
    let tab = client.open_page(page).await;
    client.evaluate(&tab, "document.title").await;
    client.close().await;
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;

    // A client that drops in the middle of the WebSocket handshake, and one
    // that sends half a request and leaves.
    let session = server.create_session(json!({})).await;
    let cdp_url = url::Url::parse(text(&session["cdp_url"])).expect("cdp url");
    let address = format!(
        "{}:{}",
        cdp_url.host_str().unwrap_or_default(),
        cdp_url.port().unwrap_or(80)
    );
    let path = format!("{}?{}", cdp_url.path(), cdp_url.query().unwrap_or_default());
    let mut dropped = tokio::net::TcpStream::connect(&address).await.expect("connect");
    let handshake = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    dropped.write_all(handshake.as_bytes()).await.expect("write");
    drop(dropped);
    let mut half = tokio::net::TcpStream::connect(&address).await.expect("connect");
    half.write_all(b"GET /v1/sessions HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    drop(half);

    // Ended while a CDP client and a live-view viewer are connected.
    let mut client = Cdp::connect(text(&session["cdp_url"])).await;
    let (path, query) = text(&session["live_view_url"]).split_once('?').expect("token");
    let stream_url = format!("{}/stream?{query}", path.replacen("http://", "ws://", 1));
    let (mut viewer, _) = tokio_tungstenite::connect_async(stream_url).await.expect("live view");
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    client.closed(Duration::from_secs(10)).await;
    while viewer.next().await.is_some_and(|message| message.is_ok()) {}

    // Headful and recorded, with a file uploaded to it; headless, recorded
    // and persisting a profile, with a file downloaded by a click.
    let headful = server
        .create_session(json!({
            "session": {"recording": {"active": true}},
            "browser": {"headless": {"active": false}},
        }))
        .await;
    upload_a_file(server, text(&headful["id"])).await;
    let saving = server
        .create_session(json!({
            "session": {"recording": {"active": true}},
            "browser": {"profile": {"name": "leak check", "persist": true}},
        }))
        .await;
    let id = text(&saving["id"]).to_owned();
    download_by_a_click(server, &id, page).await;
    server.delete(&format!("/v1/sessions/{}", text(&headful["id"]))).await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    // The profile is saved once its session ended: the next wave reuses it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.get("/v1/profiles/leak%20check").await.1["data"]["status"] != json!("ready") {
        assert!(Instant::now() < deadline, "the profile was never saved");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Context sessions in a host browser (the pool's, which refills): one
    // recorded, with an upload and a download by a click; one whose client
    // makes a context and a page of its own; a batch of them cancelled.
    // The host goes with the last of them.
    let context = json!({"isolation": "context"});
    let recorded = server
        .create_session(json!({"anchorage": context, "session": {"recording": {"active": true}}}))
        .await;
    let other = server.create_session(json!({"anchorage": context})).await;
    let id = text(&recorded["id"]).to_owned();
    upload_a_file(server, &id).await;
    download_by_a_click(server, &id, page).await;
    let mut client = Cdp::connect(text(&other["cdp_url"])).await;
    let made = client.call("Target.createBrowserContext", json!({}), None).await;
    client
        .call(
            "Target.createTarget",
            json!({"url": page, "browserContextId": made["browserContextId"]}),
            None,
        )
        .await;
    cancel_a_batch(server, json!({"count": 2, "configuration": {"anchorage": context}})).await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.delete(&format!("/v1/sessions/{}", text(&other["id"]))).await;
    client.closed(Duration::from_secs(10)).await;

    // A launch that fails (twice: it is retried once). The window size
    // keeps it and the batch below out of the warm pool: they launch.
    let launched = json!({"width": 1000, "height": 700});
    let (status, _) = server
        .post(
            "/v1/sessions",
            json!({
                "session": {"initial_url": "http://127.0.0.1:9/anchorage-fail-launch"},
                // Without ad blocking, the first page is among the launch's arguments.
                "browser": {"viewport": launched, "adblock": {"active": false}},
            }),
        )
        .await;
    assert_eq!(status, 500);

    // A batch cancelled while it launches.
    cancel_a_batch(
        server,
        json!({"count": 3, "configuration": {"browser": {"viewport": launched}}}),
    )
    .await;

    // Ended by the idle timeout (nobody connects) and by max_duration (a
    // client stays connected, for which it has two "minutes"). One timeout
    // minute lasts a second here.
    let idle = server
        .create_session(json!({"session": {"timeout": {"idle_timeout": 1, "max_duration": -1}}}))
        .await;
    let busy = server
        .create_session(json!({"session": {"timeout": {"idle_timeout": -1, "max_duration": 2}}}))
        .await;
    let mut client = Cdp::connect(text(&busy["cdp_url"])).await;
    server
        .wait_for_status(text(&idle["id"]), "completed", Duration::from_secs(20))
        .await;
    server
        .wait_for_status(text(&busy["id"]), "completed", Duration::from_secs(20))
        .await;
    client.closed(Duration::from_secs(10)).await;
}

/// Starts a batch, cancels it while it launches (or finds it already
/// done), and deletes it.
async fn cancel_a_batch(server: &TestServer, body: serde_json::Value) {
    let batch_id = server.create_batch(body).await;
    let (status, answer) = server
        .patch(
            &format!("/v1/batch-sessions/{batch_id}"),
            json!({"status": "cancelled"}),
        )
        .await;
    assert!(status == 200 || status == 409, "{answer}");
    server.delete(&format!("/v1/batch-sessions/{batch_id}")).await;
}

/// Uploads a small file into a session.
async fn upload_a_file(server: &TestServer, id: &str) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(&b"leak check"[..]).file_name("notes.txt"),
    );
    let (status, answer) = server
        .post_multipart(&format!("/v1/sessions/{id}/uploads"), crate::support::TEST_KEY, form)
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// Opens the actions page in a session, clicks its download link, and waits
/// until the session lists the file.
async fn download_by_a_click(server: &TestServer, id: &str, page: &str) {
    server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{page}/actions")}),
        )
        .await;
    let (status, answer) = server
        .post(&format!("/v1/sessions/{id}/mouse/click"), json!({"selector": "#dl"}))
        .await;
    assert_eq!(status, 200, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.get(&format!("/v1/sessions/{id}/downloads")).await.1["data"]["count"] != json!(1) {
        assert!(
            Instant::now() < deadline,
            "the download of session {id} was never listed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waves_of_sessions_return_everything_to_its_baseline() {
    let page = serve_test_page().await;
    let tools = tempfile::tempdir().expect("temp dir");
    let chromium = fake_chromium(tools.path());
    let chromium_setting = chromium.display().to_string();
    let mut server = TestServer::start_with(
        &[
            ("ANCHORAGE_CHROMIUM", chromium_setting.as_str()),
            ("ANCHORAGE_POOL_SIZE", "1"),
        ],
        |config| {
            config.timeout_minute = Duration::from_secs(1);
        },
    )
    .await;
    // Every socket the test opens is closed when it is done with it.
    server.http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let short_tmp_root = anchorage_browser::BrowserDirs::new(server.browsers_dir())
        .short_tmp_root()
        .to_path_buf();

    let (status, made) = server.post("/v1/profiles", json!({"name": "leak check"})).await;
    assert_eq!(status, 200, "{made}");
    // A first wave warms up what is made once (the database pool, caches).
    wave(&server, &page).await;
    // The baseline is taken once the first wave is wholly gone.
    let deadline = Instant::now() + Duration::from_secs(30);
    let baseline = loop {
        let now = footprint(&server, &short_tmp_root).await;
        // The warm pool's one browser is all that runs (with its dir and its
        // short TMPDIR, which goes after a session's dir: wait for both).
        let quiet = now.browsers == 1
            && now.session_dirs == 1
            && now.short_tmp_dirs == 1
            && now.displays == 0
            && now.encoders == 0
            && now.pooled == "1"
            && [
                &now.websocket_tasks,
                &now.running_sessions,
                &now.connections,
                &now.queued,
            ]
            .iter()
            .all(|value| value.as_str() == "0");
        if quiet {
            break now;
        }
        assert!(Instant::now() < deadline, "the first wave never ended: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((baseline.browsers, baseline.profile_dirs), (1, 1), "{baseline:?}");
    // Nothing runs between waves; every sample exists.
    for value in [
        &baseline.websocket_tasks,
        &baseline.running_sessions,
        &baseline.connections,
        &baseline.queued,
    ] {
        assert_eq!(value, "0", "{baseline:?}");
    }
    let mut resident = vec![resident_kib()];
    for number in 1..=4 {
        wave(&server, &page).await;
        settle(&server, &short_tmp_root, &baseline, number).await;
        resident.push(resident_kib());
    }
    eprintln!("resident memory after each wave, KiB: {resident:?}");
    // Memory may move with the allocator, but not climb wave after wave.
    let growth = resident.last().copied().unwrap_or(0).saturating_sub(resident[0]);
    assert!(
        growth < 24 * 1024,
        "resident memory grew {growth} KiB over four waves: {resident:?}"
    );
    // The warm browser goes with the server.
    let data_dir = server.stop().await;
    let root = data_dir.path().join("browsers");
    crate::support::wait_until("no browser left after the stop", Duration::from_secs(10), || {
        anchorage_browser::leftover_browser_pids(&root).is_empty()
    })
    .await;
}

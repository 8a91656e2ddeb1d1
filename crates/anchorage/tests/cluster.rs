//! Several `anchorage` processes as the nodes of one PostgreSQL database:
//! work spreads over them, any node answers any call (and passes what acts
//! on a browser to the node that runs it), a cancel is exact across them,
//! and a lost node's sessions are recorded and its share of the work goes
//! on elsewhere. The database is a fresh schema in the cluster the test
//! command starts (`ANCHORAGE_TEST_POSTGRES_URL`).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::*;

/// A fresh schema in the test command's PostgreSQL cluster, as the
/// database URL the nodes share; `None` (the test passes without running,
/// and says so) where there is no PostgreSQL and none is required (a plain
/// `cargo test`; the README's test command sets both settings).
fn database() -> Option<String> {
    let Ok(base) = std::env::var("ANCHORAGE_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("ANCHORAGE_TEST_REQUIRE_POSTGRES").is_none(),
            "ANCHORAGE_TEST_POSTGRES_URL is not set, and ANCHORAGE_TEST_REQUIRE_POSTGRES says these tests must run: \
             run the tests with ./scripts/test, which starts PostgreSQL"
        );
        eprintln!("skipped: ANCHORAGE_TEST_POSTGRES_URL is not set (./scripts/test starts PostgreSQL and sets it)");
        return None;
    };
    let schema = format!("cluster_{}", uuid_like());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let admin = sqlx::PgPool::connect(&base).await.expect("connect");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&admin)
            .await
            .expect("create schema");
        admin.close().await;
    });
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(format!("{base}{separator}options=-c%20search_path%3D{schema}"))
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// A node of `url` with room for `max_sessions` browsers, in `dir`.
fn node(dir: &Path, url: &str, max_sessions: u32) -> Server {
    let max = max_sessions.to_string();
    Server::start(
        dir,
        &[("ANCHORAGE_DATABASE_URL", url), ("ANCHORAGE_MAX_SESSIONS", &max)],
    )
}

/// The processes of the browser launched for `session_id` under `dir`'s
/// data dir (its profile dir is named after the session).
fn session_browser_pids(dir: &tempfile::TempDir, session_id: &str) -> Vec<u32> {
    let marker = format!(
        "--user-data-dir={}/browsers/{}/",
        std::fs::canonicalize(dir.path()).expect("dir").display(),
        session_id.replace('-', "")
    );
    browser_pids(dir.path())
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .split(|byte| *byte == 0)
                .any(|argument| argument.starts_with(marker.as_bytes()))
        })
        .collect()
}

/// Which node (an index into `dirs`) runs `session_id`'s browser; fails
/// unless exactly one does.
fn owner_of(dirs: &[tempfile::TempDir], session_id: &str) -> usize {
    let owners: Vec<usize> = (0..dirs.len())
        .filter(|index| !session_browser_pids(&dirs[*index], session_id).is_empty())
        .collect();
    assert_eq!(owners.len(), 1, "{session_id} runs on nodes {owners:?}");
    owners[0]
}

fn running_on(server: &Server) -> u64 {
    gauge(server, "anchorage_sessions_running")
}

/// How many signals of `kind` the server received from other nodes.
fn signals_received(server: &Server, kind: &str) -> f64 {
    let text = metrics_text(server);
    let series = format!("anchorage_node_signals_total{{direction=\"received\",signal=\"{kind}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}

/// The server's `/metrics` text.
fn metrics_text(server: &Server) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        reqwest::get(format!("{}/metrics", server.base))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text")
    })
}

/// A gauge of the server's `/metrics`.
fn gauge(server: &Server, name: &str) -> u64 {
    let text = metrics_text(server);
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// `Browser.getVersion` over the CDP WebSocket at `url`.
fn browser_version(url: &str) -> Value {
    use tokio_tungstenite::tungstenite::{connect, Message};
    let (mut socket, _) = connect(url).unwrap_or_else(|error| panic!("connect {url}: {error}"));
    socket
        .send(Message::text(
            json!({"id": 1, "method": "Browser.getVersion"}).to_string(),
        ))
        .expect("send");
    loop {
        let message = socket.read().expect("read");
        if let Message::Text(text) = message {
            let answer: Value = serde_json::from_str(&text).expect("JSON");
            if answer["id"] == json!(1) {
                let _ = socket.close(None);
                return answer["result"].clone();
            }
        }
    }
}

fn items(batch: &Value) -> Vec<Value> {
    batch["sessions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_batch_fills_every_node_and_each_session_answers_through_every_node() {
    let Some(url) = database() else { return };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let nodes: Vec<Server> = dirs.iter().map(|dir| node(dir.path(), &url, 2)).collect();

    // More than any one node holds: every node takes its share.
    let batch_id = create_batch(&nodes[0], 6);
    let done = wait_for_batch(&nodes[1], &batch_id, |batch| batch["completed_requests"] == json!(6));
    for server in &nodes {
        assert_eq!(running_on(server), 2, "each node runs two of the six");
    }
    // The nodes told each other (LISTEN/NOTIFY): the others heard of the
    // queued batch, and the node streaming it heard of its changes.
    for server in &nodes[1..] {
        assert!(
            signals_received(server, "queued") >= 1.0,
            "{} heard of no queued work",
            server.base
        );
    }
    assert!(signals_received(&nodes[1], "batch") >= 1.0);

    // Every session answers CDP through every node, whichever runs it.
    for item in items(&done) {
        let cdp_url = item["cdp_url"].as_str().expect("cdp_url");
        let path = cdp_url.splitn(4, '/').nth(3).expect("path");
        for server in &nodes {
            let through = format!("{}/{path}", server.base.replacen("http://", "ws://", 1));
            let version = browser_version(&through);
            assert!(
                version["product"]
                    .as_str()
                    .is_some_and(|product| product.contains("Chrome")),
                "{version}"
            );
        }
    }

    // An end sent to a node that does not run the session (read from where
    // its browser's processes are) ends the browser where it runs.
    let mut passed_on = 0;
    for item in items(&done) {
        let session_id = item["session_id"].as_str().expect("session id");
        let owner = owner_of(&dirs, session_id);
        let other = (owner + 1 + passed_on % 2) % 3;
        let (status, answer) = nodes[other].call(reqwest::Method::DELETE, &format!("/v1/sessions/{session_id}"), None);
        assert_eq!(status, 200, "{answer}");
        // A DELETE answers once the end is recorded and the kill under way
        // (as on one node); the processes go moments later.
        wait_until("the browser ended where it runs", || {
            session_browser_pids(&dirs[owner], session_id).is_empty()
        });
        passed_on += 1;
    }
    assert!(passed_on > 0);
    for (server, dir) in nodes.iter().zip(&dirs) {
        wait_until("every session's place freed", || running_on(server) == 0);
        assert!(browser_pids(dir.path()).is_empty(), "every browser is gone");
    }
}

#[test]
fn one_cancel_of_three_racing_ones_wins_and_ends_the_batch_on_every_node() {
    let Some(url) = database() else { return };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    let nodes: Vec<Server> = dirs.iter().map(|dir| node(dir.path(), &url, 2)).collect();
    let batch_id = create_batch(&nodes[0], 8);
    wait_for_batch(&nodes[0], &batch_id, |batch| batch["completed_requests"] == json!(6));

    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let cancels: Vec<_> = nodes
            .iter()
            .map(|server| {
                let path = format!("/v1/batch-sessions/{batch_id}");
                scope.spawn(move || server.call(reqwest::Method::PATCH, &path, Some(json!({"status": "cancelled"}))))
            })
            .collect();
        cancels
            .into_iter()
            .map(|cancel| cancel.join().expect("cancel"))
            .collect()
    });
    let mut sorted: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 409, 409], "{answers:?}");
    // The winner counts the browsers every node ended: two on each.
    let (_, won) = answers.iter().find(|(status, _)| *status == 200).expect("a winner");
    assert_eq!(won["data"]["cancelled_sessions"], json!(6), "{won}");
    // The 200 came once every browser of the batch was gone, on every node.
    for (server, dir) in nodes.iter().zip(&dirs) {
        assert!(browser_pids(dir.path()).is_empty(), "a browser outlived the cancel");
        assert_eq!(running_on(server), 0);
    }
    let cancelled = batch(&nodes[2], &batch_id);
    assert_eq!(cancelled["status"], json!("cancelled"), "{cancelled}");
    assert_eq!(cancelled["cancelled_requests"], json!(2), "{cancelled}");
    // Nothing of it starts later, anywhere: no start is queued in the
    // database, and every node's scheduler has looked at every change.
    for server in &nodes {
        let deadline = Instant::now() + Duration::from_secs(10);
        while gauge(server, "anchorage_queued_requests") != 0
            || gauge(server, "anchorage_admission_unseen_changes") != 0
        {
            assert!(Instant::now() < deadline, "a node's scheduler did not settle");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(running_on(server), 0);
    }
}

/// Reads the batch's event stream from `server` until `wanted` holds for
/// an event's data, or fails after a while.
fn stream_until(server: &Server, batch_id: &str, wanted: impl Fn(&Value) -> bool) {
    use std::io::BufRead;
    let response = reqwest::blocking_get(server, &format!("/v1/batch-sessions/{batch_id}/events"));
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in std::io::BufReader::new(response).lines() {
        assert!(Instant::now() < deadline, "the stream never showed it");
        let line = line.expect("line");
        if let Some(data) = line.strip_prefix("data:") {
            let event: Value = serde_json::from_str(data.trim()).unwrap_or(Value::Null);
            if wanted(&event) {
                return;
            }
        }
    }
    panic!("the stream ended first");
}

#[test]
fn a_lost_node_is_recorded_its_work_goes_on_and_a_node_that_owns_none_of_it_streams_it() {
    let Some(url) = database() else { return };
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().expect("temp dir")).collect();
    // The observer is full with a batch of its own: it owns nothing of the next.
    let observer = node(dirs[0].path(), &url, 1);
    let own = create_batch(&observer, 1);
    wait_for_batch(&observer, &own, |batch| batch["completed_requests"] == json!(1));
    let first = node(dirs[1].path(), &url, 2);
    let mut second = node(dirs[2].path(), &url, 2);
    let batch_id = create_batch(&first, 6);
    let running = wait_for_batch(&first, &batch_id, |batch| batch["completed_requests"] == json!(4));
    assert_eq!(running_on(&observer), 1, "the observer runs its own batch only");

    // Killed outright: its browsers stay behind it, its rows say running.
    let left_behind = browser_pids(dirs[2].path());
    assert!(!left_behind.is_empty());
    second.signal(libc::SIGKILL);
    let _ = second.child.wait();
    let lost_dir = std::mem::take(&mut second.data_dir);
    drop(second);

    // Once its lease runs out another node records its sessions as failed;
    // the stream of the observer shows their items lose their cdp_url.
    let started = Instant::now();
    stream_until(&observer, &batch_id, |event| {
        event["status"] == json!("completed") && event["session_id"].is_string() && event["cdp_url"].is_null()
    });
    let lost: Vec<String> = items(&running)
        .iter()
        .filter_map(|item| item["session_id"].as_str())
        .filter_map(|session_id| {
            let (_, answer) = observer.call(reqwest::Method::GET, &format!("/v1/sessions/{session_id}"), None);
            (answer["data"]["status"] == json!("failed")).then(|| session_id.to_owned())
        })
        .collect();
    assert_eq!(
        lost.len(),
        2,
        "the lost node's two sessions failed ({:?} after the kill)",
        started.elapsed()
    );

    // It comes back (same data dir, same id): it reaps what it left, and
    // takes the two items still queued, so the batch completes.
    let back = node(&lost_dir, &url, 2);
    let done = wait_for_batch(&observer, &batch_id, |batch| batch["completed_requests"] == json!(6));
    assert_eq!(done["pending_requests"], json!(0), "{done}");
    assert_eq!(running_on(&back), 2);
    let now_there = browser_pids(&lost_dir);
    assert!(
        left_behind.iter().all(|pid| !now_there.contains(pid)),
        "the old browsers were reaped at start"
    );
    drop(back);
}

/// A tiny blocking GET with the test key, for streams.
mod reqwest {
    pub use ::reqwest::*;

    pub fn blocking_get(server: &super::Server, path: &str) -> impl std::io::Read {
        let stream = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).expect("connect");
        let mut writer = stream.try_clone().expect("clone");
        std::io::Write::write_all(
            &mut writer,
            format!(
                "GET {path} HTTP/1.1\r\nHost: test\r\nanchor-api-key: {}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n",
                super::KEY
            )
            .as_bytes(),
        )
        .expect("write");
        stream
    }
}

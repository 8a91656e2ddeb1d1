//! Faults from outside, in-process: a browser that never comes up, and a
//! database locked by another process. (A browser killed mid-session is in
//! `sessions.rs`; the server killed mid-batch and a full disk are process
//! tests of the binary, in `crates/anchorage/tests/process.rs`.)

use std::time::{Duration, Instant};

use crate::support::{fake_chromium, TestServer};
use serde_json::json;
use sqlx::Connection;

#[tokio::test]
async fn a_browser_that_never_opens_devtools_times_out_and_is_killed() {
    let tools = tempfile::tempdir().expect("temp dir");
    let chromium = fake_chromium(tools.path()).display().to_string();
    let server = TestServer::start_with(
        &[
            ("ANCHORAGE_CHROMIUM", chromium.as_str()),
            ("ANCHORAGE_LAUNCH_TIMEOUT_SECONDS", "1"),
        ],
        |_| {},
    )
    .await;
    // Without ad blocking, the first page is among the launch's arguments.
    let hang = json!({"session": {"initial_url": "http://127.0.0.1:9/anchorage-hang-launch"},
                      "browser": {"adblock": {"active": false}}});

    // A single start: tried twice, then a clear failure.
    let started = Instant::now();
    let (status, answer) = server.post("/v1/sessions", hang.clone()).await;
    assert_eq!(status, 500, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(30));

    // A batch item: failed, with the reason.
    let batch_id = server.create_batch(json!({"count": 1, "configuration": hang})).await;
    let batch = server
        .wait_for_batch(&batch_id, Duration::from_secs(30), |batch| batch["status"] == "failed")
        .await;
    let error = batch["sessions"][0]["error"].as_str().unwrap_or_default();
    assert!(error.contains("DevTools") || error.contains("time"), "{batch}");
    assert_eq!(batch["sessions"][0]["retry_count"], 0);

    // Each hung process (its whole group) was killed.
    server.assert_no_browsers_left().await;
    let (_, history) = server.get("/v1/sessions?status=failed").await;
    assert_eq!(history["data"]["total"], 2, "{history}");
    server.stop().await;
}

#[tokio::test]
async fn a_database_locked_by_another_process_is_a_clear_503_and_then_works_again() {
    let server = TestServer::start().await;
    let database = server.data_dir.path().join("anchorage.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", database.display()))
        .await
        .expect("a second connection");
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut other).await.expect("lock");

    let (status, answer) = server.post("/v1/sessions", json!({})).await;
    assert_eq!(status, 503, "{answer}");
    let message = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("locked"), "{answer}");
    let (status, answer) = server.post("/v1/batch-sessions", json!({"count": 2})).await;
    assert_eq!(status, 503, "{answer}");
    // Reads still work (the journal is a write-ahead log).
    let (status, live) = server.get("/v1/sessions/all/status").await;
    assert_eq!(status, 200);
    assert_eq!(live["data"]["count"], 0);
    assert!(server.browser_pids().is_empty(), "nothing started while locked");

    sqlx::query("ROLLBACK").execute(&mut other).await.expect("unlock");
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut other)
        .await
        .expect("integrity check");
    assert_eq!(integrity, "ok");
    other.close().await.expect("close");

    let session = server.create_session(json!({})).await;
    let (_, batches) = server.get("/v1/batch-sessions").await;
    assert_eq!(
        batches["data"]["pagination"]["total_records"], 0,
        "the refused batch left nothing"
    );
    server
        .delete(&format!("/v1/sessions/{}", session["id"].as_str().unwrap_or_default()))
        .await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

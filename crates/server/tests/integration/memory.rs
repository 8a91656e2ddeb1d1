//! Memory-aware admission with real browsers: the memory the node's
//! browsers use is read from `/proc`, starts wait while it is at
//! `ANCHORAGE_MAX_MEMORY_MIB`, and a host browser past
//! `ANCHORAGE_HOST_MAX_MEMORY_MIB` takes no more sessions and ends with its
//! last one.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use crate::support::TestServer;

const MIB: f64 = 1024.0 * 1024.0;

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Waits until a series satisfies `wanted`; its last value.
async fn wait_metric(server: &TestServer, series: &str, what: &str, wanted: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = server.metric(series).await;
        if wanted(now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting until {what} ({series} is {now})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn starts_wait_while_the_browsers_fill_the_memory_limit_and_go_when_a_session_ends() {
    // A browser takes well over 64 MiB: once one runs, the limit is reached.
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_MEMORY_MIB", "64")], |_| {}).await;
    assert_eq!(server.metric("anchorage_memory_limit_bytes").await, 64.0 * MIB);
    let first = server.create_session(json!({})).await;
    let used = wait_metric(
        &server,
        "anchorage_memory_in_use_bytes",
        "a reading saw the browser",
        |bytes| bytes > 64.0 * MIB,
    )
    .await;
    // One idle Chromium: its processes' proportional sizes add up to a
    // browser's worth, not to their resident sizes counted many times.
    assert!(used < 1024.0 * MIB, "one browser read as {} MiB", used / MIB);
    wait_metric(
        &server,
        "anchorage_memory_reserved_bytes",
        "nothing reserved",
        |bytes| bytes == 0.0,
    )
    .await;

    // The next start waits in the queue, however long.
    let waiting = {
        let (base, http) = (server.base.clone(), server.http.clone());
        tokio::spawn(async move {
            http.post(format!("{base}/v1/sessions"))
                .header("anchor-api-key", crate::support::TEST_KEY)
                .json(&json!({}))
                .send()
                .await
                .expect("sent")
                .json::<Value>()
                .await
                .expect("JSON")
        })
    };
    server.wait_for_metric("anchorage_queued_requests", 1.0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        server.main_browser_count(),
        1,
        "a browser launched over the memory limit"
    );
    assert_eq!(server.metric("anchorage_queued_requests").await, 1.0);

    // The first session ends: the memory frees and the waiting start goes.
    server.delete(&format!("/v1/sessions/{}", text(&first["id"]))).await;
    let second = tokio::time::timeout(Duration::from_secs(30), waiting)
        .await
        .expect("the waiting start went once memory freed")
        .expect("task");
    let id = text(&second["data"]["id"]).to_owned();
    assert_eq!(server.session_status(&id).await.0, "running", "{second}");
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_host_that_grew_past_its_limit_takes_no_more_sessions_and_ends_with_its_last() {
    // Every host is past 1 MiB at its first reading.
    let server = TestServer::start_with(
        &[
            ("ANCHORAGE_SESSION_ISOLATION", "context"),
            ("ANCHORAGE_HOST_MAX_MEMORY_MIB", "1"),
        ],
        |_| {},
    )
    .await;
    let first = server.create_session(json!({})).await;
    let first_host = server.browser_pids();
    assert_eq!(server.main_browser_count(), 1);
    // A reading begun once the host was known (the one running now may have
    // started while it was launching, before it was a host to close).
    let readings = server.metric("anchorage_memory_readings").await;
    wait_metric(&server, "anchorage_memory_readings", "two more readings", |count| {
        count >= readings + 2.0
    })
    .await;
    assert!(server.metric("anchorage_memory_in_use_bytes").await > MIB);
    // That reading saw it past its limit and closed it: the next session gets a new host.
    let second = server.create_session(json!({})).await;
    assert_eq!(
        server.main_browser_count(),
        2,
        "the oversized host took another session"
    );
    assert_eq!(server.metric("anchorage_host_browsers").await, 2.0);

    // The old host goes with its last session; the new one stays.
    server.delete(&format!("/v1/sessions/{}", text(&first["id"]))).await;
    crate::support::wait_until("the oversized host is gone", Duration::from_secs(10), || {
        server.main_browser_count() == 1 && first_host.iter().all(|pid| !server.browser_pids().contains(pid))
    })
    .await;
    assert_eq!(server.session_status(text(&second["id"])).await.0, "running");
    server.delete(&format!("/v1/sessions/{}", text(&second["id"]))).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

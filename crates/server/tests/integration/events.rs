//! Named events: a wait is released by a signal from another client with
//! its data, times out with a clear error, is team-scoped, and is released
//! by a shutdown.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use crate::support::{TestServer, TEST_KEY};

#[tokio::test]
async fn a_signal_releases_every_waiter_of_the_team_and_a_wait_times_out_cleanly() {
    let server = TestServer::start().await;
    let other = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    let wait = |key: String, timeout: u64| {
        let server = &server;
        async move {
            server
                .request(
                    reqwest::Method::POST,
                    "/v1/events/job%20done/wait",
                    Some(&key),
                    Some(json!({"timeoutMs": timeout})),
                )
                .await
        }
    };
    // Two waiters of this team and one of another; then a signal of this team.
    let (first, second, theirs, signalled) = tokio::join!(
        wait(TEST_KEY.to_owned(), 10_000),
        wait(TEST_KEY.to_owned(), 10_000),
        wait(other.clone(), 1_500),
        async {
            // Once all three wait (a signal with nobody waiting is not kept).
            let deadline = Instant::now() + Duration::from_secs(10);
            while server.metric("anchorage_event_waiters").await < 3.0 {
                assert!(Instant::now() < deadline, "the waiters did not arrive");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            server
                .post("/v1/events/job%20done", json!({"data": {"result": 42}}))
                .await
        }
    );
    assert_eq!(signalled, (StatusCode::OK, json!({"data": {"status": "success"}})));
    assert_eq!(first, (StatusCode::OK, json!({"data": {"result": 42}})));
    assert_eq!(second, (StatusCode::OK, json!({"data": {"result": 42}})));
    assert_eq!(theirs.0, StatusCode::GATEWAY_TIMEOUT, "{theirs:?}");
    assert!(theirs.1["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("within 1500 ms"));

    for (path, body) in [
        ("/v1/events/x", json!({})),
        ("/v1/events/x", json!({"data": 3})),
        ("/v1/events/x/wait", json!({"timeoutMs": 0})),
        ("/v1/events/x/wait", json!({"timeoutMs": 600_001})),
        ("/v1/events/x/wait", json!({"timeoutMs": "5"})),
    ] {
        let (status, error) = server.post(path, body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {error}");
    }

    // A shutdown releases a waiter at once, with a 503 (not at its timeout).
    let base = server.base.clone();
    let waiting = tokio::spawn(async move {
        let answer = reqwest::Client::new()
            .post(format!("{base}/v1/events/later/wait"))
            .header("anchor-api-key", TEST_KEY)
            .json(&json!({"timeoutMs": 600_000}))
            .send()
            .await
            .expect("answered");
        let status = answer.status();
        (status, answer.json::<serde_json::Value>().await.unwrap_or_default())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("anchorage_event_waiters").await < 1.0 {
        assert!(Instant::now() < deadline, "the waiter did not arrive");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.stop().await;
    let (status, error) = waiting.await.expect("waiter task");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{error}");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("shutting down"),
        "{error}"
    );
}

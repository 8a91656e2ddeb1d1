//! Named events: a wait is released by a signal from another client with
//! its data, times out with a clear error, and is team-scoped.

use std::time::Duration;

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
            tokio::time::sleep(Duration::from_millis(500)).await;
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
    server.stop().await;
}

//! Batches end to end with real Chromium: completion, cancel under a full
//! server and under races, delete, retry after failed launches, fair
//! admission across teams, quotas, and the events stream.

use std::time::Duration;

use crate::support::{serve_test_page, Cdp, TestServer, TEST_PAGE_TITLE};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

fn status_is(wanted: &'static str) -> impl Fn(&Value) -> bool {
    move |batch: &Value| batch["status"] == json!(wanted)
}

const WAIT: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_batch_completes_and_every_session_shows_the_test_page() {
    let page = serve_test_page().await;
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "5")], |_| {}).await;
    let batch_id = server
        .create_batch(json!({
            "count": 5,
            "configuration": {"session": {"initial_url": format!("{page}/"), "tags": ["batch"]}},
            "metadata": {"run": "test"},
        }))
        .await;
    let batch = server.wait_for_batch(&batch_id, WAIT, status_is("completed")).await;
    assert_eq!(batch["completed_requests"], json!(5));
    assert_eq!(
        batch["progress"],
        json!({"percentage": 100.0, "current_phase": "ready"})
    );
    assert!(batch["actual_completion_time"].is_string());
    assert_eq!(batch["error"], Value::Null);
    assert_eq!(batch["metadata"], json!({"run": "test"}));

    for (index, item) in batch["sessions"].as_array().expect("items").iter().enumerate() {
        assert_eq!(item["item_index"], json!(index));
        assert_eq!(item["status"], json!("completed"));
        let mut cdp = Cdp::connect(text(&item["cdp_url"])).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let targets = cdp.call("Target.getTargets", json!({}), None).await;
            let titles: Vec<String> = targets["targetInfos"]
                .as_array()
                .expect("targets")
                .iter()
                .map(|info| text(&info["title"]).to_owned())
                .collect();
            if titles.iter().any(|title| title == TEST_PAGE_TITLE) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "item {index} never showed the page: {titles:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cdp.close().await;
    }
    let (_, in_batch) = server
        .get(&format!("/v1/sessions/all/status?batch_id={batch_id}"))
        .await;
    assert_eq!(in_batch["data"]["count"], json!(5));
    let (_, listed) = server.get("/v1/batch-sessions?status=completed").await;
    assert_eq!(listed["data"]["batches"][0]["batch_id"], json!(batch_id));
    assert_eq!(listed["data"]["pagination"]["total_records"], json!(1));

    let (code, deleted) = server.delete(&format!("/v1/batch-sessions/{batch_id}")).await;
    assert_eq!(code, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["data"]["deleted_sessions"], json!(5));
    assert_eq!(deleted["data"]["failed_deletions"], json!(0));
    server.assert_no_browsers_left().await;
    let (code, _) = server.get(&format!("/v1/batch-sessions/{batch_id}")).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test]
async fn cancel_under_a_full_server_ends_what_runs_and_starts_nothing_more() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "2")], |_| {}).await;
    let batch_id = server.create_batch(json!({"count": 6})).await;
    let batch = server
        .wait_for_batch(&batch_id, WAIT, |batch| batch["completed_requests"] == json!(2))
        .await;
    assert_eq!(batch["status"], json!("processing"));
    assert_eq!(batch["progress"]["current_phase"], json!("provisioning"));
    // The rest wait for capacity.
    server.admission_settled().await;
    let batch = server.batch(&batch_id).await;
    assert_eq!(
        (batch["pending_requests"].clone(), batch["completed_requests"].clone()),
        (json!(4), json!(2))
    );
    assert_eq!(server.main_browser_count(), 2);

    let path = format!("/v1/batch-sessions/{batch_id}");
    let (code, answer) = server.patch(&path, json!({"status": "cancelled"})).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["status"], json!("cancelled"));
    assert_eq!(answer["data"]["cancelled_sessions"], json!(2));
    // Nothing of the batch is left running the moment the answer arrives.
    assert!(server.browser_pids().is_empty(), "browsers left after cancel");
    let batch = server.batch(&batch_id).await;
    assert_eq!(batch["status"], json!("cancelled"));
    assert_eq!(
        (batch["completed_requests"].clone(), batch["cancelled_requests"].clone()),
        (json!(2), json!(4))
    );
    assert!(batch["actual_completion_time"].is_string());
    for item in batch["sessions"].as_array().expect("items") {
        assert!(["completed", "cancelled"].contains(&text(&item["status"])), "{item}");
        assert_eq!(item["cdp_url"], Value::Null, "an ended session has no cdp_url: {item}");
    }
    let (code, again) = server.patch(&path, json!({"status": "cancelled"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(text(&again["error"]["message"]).contains("cancelled"), "{again}");

    // Nothing of it starts later, though capacity is free now.
    server.admission_settled().await;
    assert!(server.browser_pids().is_empty());
    assert_eq!(server.batch(&batch_id).await["cancelled_requests"], json!(4));
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn two_cancels_at_the_same_moment_give_one_200_and_one_409() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "2")], |_| {}).await;
    for _ in 0..3 {
        let batch_id = server.create_batch(json!({"count": 3})).await;
        server
            .wait_for_batch(&batch_id, WAIT, |batch| batch["completed_requests"].as_i64() >= Some(1))
            .await;
        let path = format!("/v1/batch-sessions/{batch_id}");
        let body = json!({"status": "cancelled"});
        let (first, second) = tokio::join!(server.patch(&path, body.clone()), server.patch(&path, body.clone()));
        let mut codes = [first.0, second.0];
        codes.sort();
        assert_eq!(codes, [StatusCode::OK, StatusCode::CONFLICT], "{first:?} {second:?}");
        assert!(server.browser_pids().is_empty());
    }
    server.stop().await;
}

#[tokio::test]
async fn a_completed_batch_cannot_be_cancelled_but_can_be_deleted() {
    let server = TestServer::start().await;
    let batch_id = server.create_batch(json!({"count": 2})).await;
    let batch = server.wait_for_batch(&batch_id, WAIT, status_is("completed")).await;
    let path = format!("/v1/batch-sessions/{batch_id}");
    let (code, refused) = server.patch(&path, json!({"status": "cancelled"})).await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(text(&refused["error"]["message"]).contains("completed"), "{refused}");
    let session_ids: Vec<String> = batch["sessions"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| text(&item["session_id"]).to_owned())
        .collect();
    for session_id in &session_ids {
        let (status, data) = server.session_status(session_id).await;
        assert_eq!(status, "running", "{data} in {batch}");
    }
    let (code, deleted) = server.delete(&path).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(deleted["data"]["deleted_sessions"], json!(2));
    for session_id in &session_ids {
        let (status, data) = server.session_status(session_id).await;
        assert_eq!(status, "completed");
        assert!(text(&data["end_reason"]).contains("deleted"), "{data}");
    }
    server.assert_no_browsers_left().await;
    for (method, route) in [
        (reqwest::Method::GET, path.clone()),
        (reqwest::Method::DELETE, path.clone()),
        (reqwest::Method::POST, format!("{path}/retry")),
    ] {
        let (code, body) = server
            .request(method, &route, Some(crate::support::TEST_KEY), Some(json!({})))
            .await;
        assert_eq!(code, StatusCode::NOT_FOUND, "{route}: {body}");
        assert_eq!(body["error"]["message"], json!("Batch not found"));
    }
    server.stop().await;
}

#[tokio::test]
async fn failed_launches_are_retried_once_then_reported_and_a_retry_brings_them_up() {
    // A Chromium that fails its first four launches: items 0 and 1 fail
    // twice each (the automatic second try included), item 2 comes up.
    let dir = tempfile::tempdir().expect("temp dir");
    let wrapper = dir.path().join("flaky-chromium");
    let counter = dir.path().join("launches");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nn=$(cat {counter} 2>/dev/null || echo 0)\nn=$((n + 1))\necho $n > {counter}\n\
             if [ $n -le 4 ]; then echo \"simulated launch failure $n\" >&2; exit 1; fi\nexec chromium \"$@\"\n",
            counter = counter.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    // Browsers may run as another user (a root server's run as nobody).
    std::fs::write(&counter, "0\n").expect("counter");
    std::fs::set_permissions(&counter, std::os::unix::fs::PermissionsExt::from_mode(0o666)).expect("chmod");
    let wrapper_path = wrapper.display().to_string();
    let server = TestServer::start_with(
        &[
            ("ANCHORAGE_CHROMIUM", wrapper_path.as_str()),
            ("ANCHORAGE_LAUNCH_CONCURRENCY", "1"),
        ],
        |_| {},
    )
    .await;
    let batch_id = server.create_batch(json!({"count": 3})).await;
    let batch = server.wait_for_batch(&batch_id, WAIT, status_is("completed")).await;
    assert_eq!(
        (batch["completed_requests"].clone(), batch["failed_requests"].clone()),
        (json!(1), json!(2))
    );
    let error = text(&batch["error"]);
    assert!(
        error.starts_with("2 of 3 sessions failed to start: chromium exited with exit status 1"),
        "{error}"
    );
    assert!(error.contains("simulated launch failure"), "{error}");
    let items = batch["sessions"].as_array().expect("items");
    assert_eq!(items[0]["status"], json!("failed"));
    assert!(
        text(&items[0]["error"]).contains("simulated launch failure 2"),
        "{}",
        items[0]
    );
    assert_eq!(items[2]["status"], json!("completed"));

    let path = format!("/v1/batch-sessions/{batch_id}/retry");
    let (code, retried) = server
        .post(&path, json!({"retry_failed_only": true, "max_retries": 1}))
        .await;
    assert_eq!(code, StatusCode::OK, "{retried}");
    assert_eq!(retried["data"]["retried_sessions"], json!(2));
    assert_eq!(retried["data"]["status"], json!("processing"));
    let batch = server.wait_for_batch(&batch_id, WAIT, status_is("completed")).await;
    assert_eq!(batch["completed_requests"], json!(3), "{batch}");
    assert_eq!(batch["error"], Value::Null);
    let retry_counts: Vec<i64> = batch["sessions"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| item["retry_count"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(retry_counts, vec![1, 1, 0]);
    // Nothing left to retry.
    let (code, nothing) = server.post(&path, json!({})).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(nothing["data"]["retried_sessions"], json!(0));
    server.stop().await;
}

#[tokio::test]
async fn a_cancelled_batch_cannot_be_retried() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "1")], |_| {}).await;
    let batch_id = server.create_batch(json!({"count": 2})).await;
    let (code, _) = server
        .patch(
            &format!("/v1/batch-sessions/{batch_id}"),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let (code, refused) = server
        .post(&format!("/v1/batch-sessions/{batch_id}/retry"), json!({}))
        .await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert!(text(&refused["error"]["message"]).contains("cancelled"));
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn another_teams_single_start_is_not_held_behind_a_batch() {
    let server = TestServer::start_with(
        &[("ANCHORAGE_MAX_SESSIONS", "1"), ("ANCHORAGE_LAUNCH_CONCURRENCY", "1")],
        |_| {},
    )
    .await;
    let batch_id = server.create_batch(json!({"count": 4})).await;
    let batch = server
        .wait_for_batch(&batch_id, WAIT, |batch| batch["completed_requests"] == json!(1))
        .await;
    let other_key = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    let (code, accepted) = server
        .request(
            reqwest::Method::POST,
            "/v1/sessions/async",
            Some(&other_key),
            Some(json!({})),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    let status_path = format!("/v1/sessions/async/{}/status", text(&accepted["data"]["request_id"]));

    // Free the only place: the other team's start goes first, not the batch's next item.
    let running = text(&batch["sessions"][0]["session_id"]).to_owned();
    server.delete(&format!("/v1/sessions/{running}")).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, answer) = server
            .request(reqwest::Method::GET, &status_path, Some(&other_key), None)
            .await;
        if answer["data"]["status"] == json!("ready") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let batch = server.batch(&batch_id).await;
    assert_eq!(
        (batch["completed_requests"].clone(), batch["pending_requests"].clone()),
        (json!(1), json!(3))
    );
    let (code, _) = server
        .patch(
            &format!("/v1/batch-sessions/{batch_id}"),
            json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(code, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_team_at_its_quota_gets_429_on_single_starts_while_its_batch_waits() {
    let server = TestServer::start_with(&[("ANCHORAGE_TEAM_MAX_SESSIONS", "1")], |_| {}).await;
    let batch_id = server.create_batch(json!({"count": 2})).await;
    server
        .wait_for_batch(&batch_id, WAIT, |batch| batch["completed_requests"] == json!(1))
        .await;
    server.admission_settled().await;
    assert_eq!(server.batch(&batch_id).await["pending_requests"], json!(1));

    let response = server
        .http
        .post(format!("{}/v1/sessions", server.base))
        .header("anchor-api-key", crate::support::TEST_KEY)
        .json(&json!({}))
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()),
        Some("5")
    );
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(body["error"]["code"], json!(429));
    let (code, _) = server.post("/v1/sessions/async", json!({})).await;
    assert_eq!(code, StatusCode::TOO_MANY_REQUESTS);
    server.stop().await;
}

#[tokio::test]
async fn the_events_stream_follows_a_batch_to_its_end() {
    let server = TestServer::start().await;
    let batch_id = server.create_batch(json!({"count": 2})).await;
    let mut response = server
        .http
        .get(format!("{}/v1/batch-sessions/{batch_id}/events", server.base))
        .header("anchor-api-key", crate::support::TEST_KEY)
        .send()
        .await
        .expect("sent");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap_or_default()
        .starts_with("text/event-stream"));
    let mut body = String::new();
    let read = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = response.chunk().await.expect("chunk") {
            body.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream did not end with the batch: {body}");

    let events: Vec<(String, Value)> = body
        .split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|line| line.strip_prefix("event: "))?;
            let data = block.lines().find_map(|line| line.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).ok()?))
        })
        .collect();
    let last = events.last().expect("events");
    assert_eq!(last.0, "batch");
    assert_eq!(last.1["status"], json!("completed"));
    for index in 0..2 {
        assert!(
            events.iter().any(|(name, data)| name == "item"
                && data["item_index"] == json!(index)
                && data["status"] == json!("completed")),
            "no completed event for item {index}: {body}"
        );
    }
    let (code, _) = server.delete(&format!("/v1/batch-sessions/{batch_id}")).await;
    assert_eq!(code, StatusCode::OK);
    server.stop().await;
}

#[tokio::test]
async fn a_cancel_that_lands_during_launches_leaves_no_browser_behind() {
    let (server, hold) = crate::support::LaunchHold::server().await;
    let held = crate::support::LaunchHold::held_start();
    // The first round's launches are still held when the cancel lands;
    // the second's are let go at the moment it is sent.
    for round in 1..=2 {
        let before = hold.held();
        let batch_id = server
            .create_batch(json!({"count": 4, "configuration": held.clone()}))
            .await;
        hold.wait_for(before + 1).await;
        let launching = server.batch(&batch_id).await;
        assert!(
            launching["processing_requests"]
                .as_i64()
                .is_some_and(|count| count >= 1)
                && launching["completed_requests"] == json!(0),
            "{launching}"
        );
        let path = format!("/v1/batch-sessions/{batch_id}");
        let (code, answer) = if round == 1 {
            server.patch(&path, json!({"status": "cancelled"})).await
        } else {
            let cancel = server.patch(&path, json!({"status": "cancelled"}));
            hold.release();
            cancel.await
        };
        assert_eq!(code, StatusCode::OK, "{answer}");
        assert!(server.browser_pids().is_empty(), "a browser outlived the cancel");
        let batch = server.batch(&batch_id).await;
        assert_eq!(batch["status"], json!("cancelled"));
        assert_eq!(batch["pending_requests"], json!(0));
        assert_eq!(batch["processing_requests"], json!(0));
        let completed = batch["completed_requests"].as_i64().unwrap_or(-1);
        assert_eq!(
            answer["data"]["cancelled_sessions"],
            json!(completed),
            "{answer} {batch}"
        );
        if round == 1 {
            assert_eq!(completed, 0, "nothing could have come up: {batch}");
        }
    }
    // Released, nothing of either batch comes up later.
    hold.release();
    server.admission_settled().await;
    assert!(server.browser_pids().is_empty(), "a browser came up after the cancel");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

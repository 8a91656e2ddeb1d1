//! Bad input, table-driven: every 4xx row of the contract that applies to
//! sessions, with status and JSON body checked, and proof that none of it
//! starts a browser or hurts the server.

use crate::support::{TestServer, TEST_KEY};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

struct Row {
    method: Method,
    path: &'static str,
    key: Option<&'static str>,
    body: Option<&'static str>,
    status: u16,
    message_contains: &'static str,
}

fn row(
    method: Method,
    path: &'static str,
    body: Option<&'static str>,
    status: u16,
    message_contains: &'static str,
) -> Row {
    Row {
        method,
        path,
        key: Some(TEST_KEY),
        body,
        status,
        message_contains,
    }
}

const UNKNOWN: &str = "6f1c2a4e-8d1b-4c5e-9a7f-0b2c3d4e5f60";

/// Sends every row and checks its status and JSON error body.
async fn check_rows(server: &TestServer, rows: &[Row]) {
    for row in rows {
        let mut request = server
            .http
            .request(row.method.clone(), format!("{}{}", server.base, row.path));
        if let Some(key) = row.key {
            request = request.header("anchor-api-key", key);
        }
        if let Some(body) = row.body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        let response = request.send().await.expect("sent");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let shown_body: String = row.body.map(|body| body.chars().take(80).collect()).unwrap_or_default();
        let value: Value = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("{} {} answered non-JSON: {text:?}", row.method, row.path));
        assert_eq!(status, row.status, "{} {} {shown_body}: {value}", row.method, row.path);
        assert_eq!(value["error"]["code"], json!(row.status), "{value}");
        let message = value["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(row.message_contains),
            "{} {} {shown_body}: {message:?} lacks {:?}",
            row.method,
            row.path,
            row.message_contains
        );
    }
}

#[tokio::test]
async fn every_bad_request_gets_the_contract_error_and_changes_nothing() {
    let server = TestServer::start().await;
    let unknown_session = format!("/v1/sessions/{UNKNOWN}");
    let unknown_pages = format!("/v1/sessions/{UNKNOWN}/pages");
    let unknown_request = format!("/v1/sessions/async/{UNKNOWN}/status");
    let leaked = |text: String| -> &'static str { Box::leak(text.into_boxed_str()) };

    let mut rows = vec![
        // 401: no key, wrong key, on every kind of route.
        Row {
            method: Method::POST,
            path: "/v1/sessions",
            key: None,
            body: Some("{}"),
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::POST,
            path: "/v1/sessions",
            key: Some("nope"),
            body: Some("{}"),
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::GET,
            path: "/v1/sessions",
            key: None,
            body: None,
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::GET,
            path: "/v1/sessions/all/status",
            key: Some(""),
            body: None,
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::DELETE,
            path: "/v1/sessions/all",
            key: None,
            body: None,
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::POST,
            path: "/v1/sessions/async",
            key: None,
            body: Some("{}"),
            status: 401,
            message_contains: "Invalid API Key",
        },
        // 400: malformed JSON and wrong shapes.
        row(Method::POST, "/v1/sessions", Some("{"), 400, "not valid JSON"),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": }"),
            400,
            "not valid JSON",
        ),
        row(Method::POST, "/v1/sessions", Some("[]"), 400, "JSON object"),
        row(Method::POST, "/v1/sessions", Some("\"text\""), 400, "JSON object"),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": 5}"),
            400,
            "session must be an object",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"browser\": []}"),
            400,
            "browser must be an object",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"tags\": \"x\"}}"),
            400,
            "session.tags",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"tags\": [1, 2]}}"),
            400,
            "session.tags",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"timeout\": {\"max_duration\": 0}}}"),
            400,
            "session.timeout.max_duration",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"timeout\": {\"idle_timeout\": \"5\"}}}"),
            400,
            "session.timeout.idle_timeout",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"timeout\": {\"idle_timeout\": 1.5}}}"),
            400,
            "session.timeout.idle_timeout",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"timeout\": {\"max_duration\": 99999999}}}"),
            400,
            "session.timeout.max_duration",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"browser\": {\"viewport\": {\"width\": \"wide\"}}}"),
            400,
            "browser.viewport.width",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"browser\": {\"viewport\": {\"height\": 1}}}"),
            400,
            "browser.viewport.height",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"browser\": {\"headless\": {\"active\": \"yes\"}}}"),
            400,
            "browser.headless.active",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"live_view\": {\"read_only\": 1}}}"),
            400,
            "session.live_view.read_only",
        ),
        row(
            Method::POST,
            "/v1/sessions/async",
            Some("{\"session\": {\"recording\": {\"active\": null, \"x\": 1}, \"proxy\": 3}}"),
            400,
            "session.proxy",
        ),
        // 400: forbidden URL schemes.
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"initial_url\": \"file:///etc/passwd\"}}"),
            400,
            "http or https",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"initial_url\": \"chrome://settings\"}}"),
            400,
            "http or https",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"initial_url\": \"javascript:alert(1)\"}}"),
            400,
            "http or https",
        ),
        row(
            Method::POST,
            "/v1/sessions/async",
            Some("{\"session\": {\"initial_url\": \"data:text/html,hi\"}}"),
            400,
            "http or https",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"initial_url\": \"not a url\"}}"),
            400,
            "session.initial_url",
        ),
        row(
            Method::POST,
            "/v1/sessions",
            Some("{\"session\": {\"initial_url\": 42}}"),
            400,
            "session.initial_url",
        ),
        // 400: list parameters.
        row(Method::GET, "/v1/sessions?page=0", None, 400, "page"),
        row(Method::GET, "/v1/sessions?page=x", None, 400, "page"),
        row(Method::GET, "/v1/sessions?limit=15", None, 400, "limit"),
        row(Method::GET, "/v1/sessions?sort_order=up", None, 400, "sort_order"),
        row(Method::GET, "/v1/sessions?sort_by=colour", None, 400, "sort_by"),
        row(Method::GET, "/v1/sessions?status=bogus", None, 400, "status"),
        row(
            Method::GET,
            "/v1/sessions?created_from=yesterday",
            None,
            400,
            "created_from",
        ),
        row(
            Method::GET,
            "/v1/sessions/all/status?created_to=2026-13-45",
            None,
            400,
            "created_to",
        ),
        row(Method::GET, "/v1/sessions/all/status?batch_id=x", None, 400, "batch_id"),
        // 404: malformed and unknown ids, unknown routes.
        row(Method::GET, "/v1/sessions/not-a-uuid", None, 404, "Session not found"),
        row(
            Method::GET,
            leaked(unknown_session.clone()),
            None,
            404,
            "Session not found",
        ),
        row(Method::DELETE, leaked(unknown_session), None, 404, "Session not found"),
        row(Method::DELETE, "/v1/sessions/123", None, 404, "Session not found"),
        row(Method::GET, leaked(unknown_pages), None, 404, "Session not found"),
        row(Method::GET, leaked(unknown_request), None, 404, "Request not found"),
        row(
            Method::GET,
            "/v1/sessions/async/zzz/status",
            None,
            404,
            "Request not found",
        ),
        row(Method::GET, "/v1/nothing-here", None, 404, "no route"),
        // 405: a route with the wrong method.
        row(Method::PUT, "/v1/sessions", None, 405, "not allowed"),
    ];
    // 413: a body over the 1 MiB default.
    let huge: &'static str = leaked(format!(
        "{{\"session\": {{\"tags\": [\"{}\"]}}}}",
        "x".repeat(1024 * 1024 + 1)
    ));
    rows.push(row(
        Method::POST,
        "/v1/sessions",
        Some(huge),
        413,
        "larger than the limit",
    ));
    // Deep nesting is refused, not a crash.
    let deep: &'static str = leaked(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)));
    rows.push(row(Method::POST, "/v1/sessions", Some(deep), 400, "not valid JSON"));

    check_rows(&server, &rows).await;

    // Nothing started, nothing stored, and the server still serves.
    assert!(server.browser_pids().is_empty());
    let (code, live) = server.get("/v1/sessions/all/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(live["data"]["count"], json!(0));
    let (_, history) = server.get("/v1/sessions").await;
    assert_eq!(history["data"]["total"], json!(0));
    server.stop().await;
}

#[tokio::test]
async fn another_teams_session_is_indistinguishable_from_a_missing_one() {
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let session_id = session["id"].as_str().expect("id").to_owned();
    let other_key = anchorage_server::keys::create(&server.config, "intruders", "test")
        .await
        .expect("key");
    let not_found = json!({"error": {"code": 404, "message": "Session not found"}});
    for (method, path) in [
        (Method::GET, format!("/v1/sessions/{session_id}")),
        (Method::DELETE, format!("/v1/sessions/{session_id}")),
        (Method::GET, format!("/v1/sessions/{session_id}/pages")),
    ] {
        let answer = server.request(method.clone(), &path, Some(&other_key), None).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, not_found.clone()), "{method} {path}");
    }
    // Their lists and "end all" do not see or touch it.
    let (_, live) = server
        .request(Method::GET, "/v1/sessions/all/status", Some(&other_key), None)
        .await;
    assert_eq!(live["data"]["count"], json!(0));
    let (code, _) = server
        .request(Method::DELETE, "/v1/sessions/all", Some(&other_key), None)
        .await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(server.session_status(&session_id).await.0, "running");
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    let server = TestServer::start().await;
    let key = anchorage_server::keys::create(&server.config, "temporary", "test")
        .await
        .expect("key");
    let (code, _) = server.request(Method::GET, "/v1/sessions", Some(&key), None).await;
    assert_eq!(code, StatusCode::OK);
    let prefix: String = key.chars().take(12).collect();
    assert_eq!(
        anchorage_server::keys::revoke(&server.config, &prefix)
            .await
            .expect("revoke"),
        1
    );
    let (code, body) = server.request(Method::GET, "/v1/sessions", Some(&key), None).await;
    assert_eq!(
        (code, body),
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": 401, "message": "Invalid API Key"}})
        )
    );
    server.stop().await;
}

#[tokio::test]
async fn every_bad_batch_request_gets_the_contract_error_and_changes_nothing() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "1")], |_| {}).await;
    // A real batch to aim PATCH, retry and another team's requests at; it
    // stays pending behind a running session so that nothing it does races.
    let blocker = server.create_session(json!({})).await;
    let batch_id = server.create_batch(json!({"count": 1})).await;
    let batch_path: &'static str = Box::leak(format!("/v1/batch-sessions/{batch_id}").into_boxed_str());
    let retry_path: &'static str = Box::leak(format!("{batch_path}/retry").into_boxed_str());
    let unknown: &'static str = Box::leak(format!("/v1/batch-sessions/{UNKNOWN}").into_boxed_str());
    let unknown_retry: &'static str = Box::leak(format!("{unknown}/retry").into_boxed_str());
    let unknown_events: &'static str = Box::leak(format!("{unknown}/events").into_boxed_str());
    let count_message = "count must be an integer between 1 and 1000";

    let rows = vec![
        Row {
            method: Method::POST,
            path: "/v1/batch-sessions",
            key: None,
            body: Some("{\"count\": 1}"),
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::GET,
            path: batch_path,
            key: None,
            body: None,
            status: 401,
            message_contains: "Invalid API Key",
        },
        Row {
            method: Method::GET,
            path: "/v1/batch-sessions",
            key: Some("wrong"),
            body: None,
            status: 401,
            message_contains: "Invalid API Key",
        },
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 0}"),
            400,
            count_message,
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": -1}"),
            400,
            count_message,
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1001}"),
            400,
            count_message,
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 2.5}"),
            400,
            count_message,
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": \"3\"}"),
            400,
            count_message,
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": null}"),
            400,
            count_message,
        ),
        row(Method::POST, "/v1/batch-sessions", Some("{}"), 400, count_message),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1e3}"),
            400,
            count_message,
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1, \"configuration\": \"x\"}"),
            400,
            "configuration must be an object",
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1, \"configuration\": [1]}"),
            400,
            "configuration must be an object",
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1, \"configuration\": {\"session\": {\"initial_url\": \"file:///etc/passwd\"}}}"),
            400,
            "configuration.session.initial_url",
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1, \"metadata\": 7}"),
            400,
            "metadata must be an object",
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": 1, \"metadata\": [\"a\"]}"),
            400,
            "metadata must be an object",
        ),
        row(
            Method::POST,
            "/v1/batch-sessions",
            Some("{\"count\": "),
            400,
            "not valid JSON",
        ),
        row(Method::POST, "/v1/batch-sessions", Some("[1]"), 400, "JSON object"),
        row(Method::PATCH, batch_path, Some("{}"), 400, "status is required"),
        row(
            Method::PATCH,
            batch_path,
            Some("{\"status\": \"running\"}"),
            400,
            "status must be \"cancelled\"",
        ),
        row(
            Method::PATCH,
            batch_path,
            Some("{\"status\": \"completed\"}"),
            400,
            "status must be \"cancelled\"",
        ),
        row(
            Method::PATCH,
            batch_path,
            Some("{\"status\": 1}"),
            400,
            "status must be \"cancelled\"",
        ),
        row(Method::PATCH, batch_path, Some("{\"status\": "), 400, "not valid JSON"),
        row(
            Method::POST,
            retry_path,
            Some("{\"max_retries\": 0}"),
            400,
            "max_retries",
        ),
        row(
            Method::POST,
            retry_path,
            Some("{\"max_retries\": 4}"),
            400,
            "max_retries",
        ),
        row(
            Method::POST,
            retry_path,
            Some("{\"max_retries\": \"2\"}"),
            400,
            "max_retries",
        ),
        row(
            Method::POST,
            retry_path,
            Some("{\"retry_failed_only\": \"yes\"}"),
            400,
            "retry_failed_only",
        ),
        row(Method::GET, "/v1/batch-sessions?page=0", None, 400, "page"),
        row(Method::GET, "/v1/batch-sessions?limit=0", None, 400, "limit"),
        row(Method::GET, "/v1/batch-sessions?limit=101", None, 400, "limit"),
        row(Method::GET, "/v1/batch-sessions?status=bogus", None, 400, "status"),
        row(
            Method::GET,
            "/v1/batch-sessions?created_after=last-week",
            None,
            400,
            "created_after",
        ),
        row(
            Method::GET,
            "/v1/batch-sessions?created_before=2026-02-30",
            None,
            400,
            "created_before",
        ),
        row(Method::GET, unknown, None, 404, "Batch not found"),
        row(
            Method::PATCH,
            unknown,
            Some("{\"status\": \"cancelled\"}"),
            404,
            "Batch not found",
        ),
        row(Method::DELETE, unknown, None, 404, "Batch not found"),
        row(Method::POST, unknown_retry, Some("{}"), 404, "Batch not found"),
        row(Method::GET, unknown_events, None, 404, "Batch not found"),
        row(
            Method::GET,
            "/v1/batch-sessions/not-a-uuid",
            None,
            404,
            "Batch not found",
        ),
        row(
            Method::PATCH,
            "/v1/batch-sessions/123",
            Some("{\"status\": \"cancelled\"}"),
            404,
            "Batch not found",
        ),
        row(Method::DELETE, "/v1/batch-sessions/zzz", None, 404, "Batch not found"),
    ];
    check_rows(&server, &rows).await;

    // Another team sees nothing of it, and cannot touch it.
    let other_key = anchorage_server::keys::create(&server.config, "others", "test")
        .await
        .expect("key");
    let not_found = json!({"error": {"code": 404, "message": "Batch not found"}});
    for (method, path, body) in [
        (Method::GET, batch_path.to_owned(), None),
        (
            Method::PATCH,
            batch_path.to_owned(),
            Some(json!({"status": "cancelled"})),
        ),
        (Method::DELETE, batch_path.to_owned(), None),
        (Method::POST, retry_path.to_owned(), Some(json!({}))),
        (Method::GET, format!("{batch_path}/events"), None),
    ] {
        let answer = server.request(method.clone(), &path, Some(&other_key), body).await;
        assert_eq!(answer, (StatusCode::NOT_FOUND, not_found.clone()), "{method} {path}");
    }
    let (_, theirs) = server
        .request(Method::GET, "/v1/batch-sessions", Some(&other_key), None)
        .await;
    assert_eq!(theirs["data"]["pagination"]["total_records"], json!(0));

    // Nothing changed: one batch, still pending, no browser but the blocker.
    let batch = server.batch(&batch_id).await;
    assert_eq!(batch["status"], json!("pending"));
    let (_, listed) = server.get("/v1/batch-sessions").await;
    assert_eq!(listed["data"]["pagination"]["total_records"], json!(1));
    assert_eq!(server.main_browser_count(), 1);
    server
        .delete(&format!("/v1/sessions/{}", blocker["id"].as_str().unwrap_or_default()))
        .await;
    server.delete(batch_path).await;
    server.stop().await;
}

#[tokio::test]
async fn the_batch_cap_is_a_setting() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_BATCH", "3")], |_| {}).await;
    let (code, body) = server.post("/v1/batch-sessions", json!({"count": 4})).await;
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        json!("count must be an integer between 1 and 3")
    );
    server.stop().await;
}

#[tokio::test]
async fn hostile_shapes_and_slow_clients_get_clear_errors_and_bounded_resources() {
    let server = TestServer::start_with(&[], |config| {
        config.header_read_timeout = std::time::Duration::from_millis(500);
    })
    .await;
    let deep_metadata = format!(
        "{{\"count\": 1, \"metadata\": {{\"a\": {}{}}}}}",
        "[".repeat(5_000),
        "]".repeat(5_000)
    );
    let huge_metadata = format!(
        "{{\"count\": 1, \"metadata\": {{\"a\": \"{}\"}}}}",
        "x".repeat(2 * 1024 * 1024)
    );
    let many_tags = json!({"session": {"tags": (0..5_000).map(|tag| tag.to_string()).collect::<Vec<_>>()}}).to_string();
    for (path, body, status, message) in [
        ("/v1/batch-sessions", deep_metadata.as_str(), 400, "not valid JSON"),
        (
            "/v1/batch-sessions",
            huge_metadata.as_str(),
            413,
            "larger than the limit",
        ),
        ("/v1/sessions", many_tags.as_str(), 400, "at most 100"),
        ("/v1/batch-sessions", "{\"count\": 1e400}", 400, ""),
        ("/v1/sessions", "\"\\ud800\"", 400, ""),
    ] {
        let response = server
            .http
            .post(format!("{}{path}", server.base))
            .header("anchor-api-key", TEST_KEY)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("sent");
        assert_eq!(response.status().as_u16(), status, "{path} {:.80}", body);
        let answer: Value = response.json().await.expect("a JSON error body");
        let text = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{answer}");
    }

    // A client that sends half its headers and waits is cut off.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut slow = tokio::net::TcpStream::connect(&address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a slow client kept its connection open");
    // Meanwhile and afterwards, others are served.
    let (status, _) = server.get("/v1/sessions/all/status").await;
    assert_eq!(status, StatusCode::OK);
    let (_, batches) = server.get("/v1/batch-sessions").await;
    assert_eq!(batches["data"]["pagination"]["total_records"], 0, "nothing was created");
    assert!(server.browser_pids().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_websocket_frame_over_the_limit_closes_that_connection_only() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
    use tokio_tungstenite::tungstenite::Message;

    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let cdp_url = session["cdp_url"].as_str().unwrap_or_default().to_owned();
    // A client that allows itself more than the server takes.
    // Another client of the same session, already connected, with a page
    // attached: it must be left alone.
    let mut bystander = crate::support::Cdp::connect(&cdp_url).await;
    let page = bystander.attach_newest_page().await;
    bystander.evaluate(&page, "window.mark = 41; 1").await;
    let unlimited = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(&cdp_url, Some(unlimited), false)
        .await
        .expect("connect");
    let oversized = vec![b'x'; anchorage_browser::MAX_FRAME_BYTES + 1];
    // The server refuses the frame from its header on, so the send itself may fail.
    let _ = socket.send(Message::binary(oversized)).await;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(30), socket.next()).await {
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
            Ok(Some(Ok(_))) => continue,
            Err(_) => panic!("the connection was not closed"),
        }
    }
    // The session runs on: the other client still works on its page, and a new client is served.
    let session_id = session["id"].as_str().unwrap_or_default();
    assert_eq!(server.session_status(session_id).await.0, "running");
    assert_eq!(bystander.evaluate(&page, "window.mark + 1").await, json!(42));
    bystander.close().await;
    let mut client = crate::support::Cdp::connect(&cdp_url).await;
    client.call("Browser.getVersion", json!({}), None).await;
    client.close().await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

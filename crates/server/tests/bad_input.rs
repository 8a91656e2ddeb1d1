//! Bad input, table-driven: every 4xx row of the contract that applies to
//! sessions, with status and JSON body checked, and proof that none of it
//! starts a browser or hurts the server.

mod support;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{TestServer, TEST_KEY};

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

    for row in &rows {
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

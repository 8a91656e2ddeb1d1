//! The live view's stream, spoken to directly: frames, input, the idle
//! clock, tokens. (The page itself is tested in a real browser by
//! `tests/compat/test_ui.py`.)

use std::time::Duration;

use crate::support::{refused_upgrade_status, serve_test_page, Cdp, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The stream URL of a `live_view_url`.
fn stream_url(live_view_url: &str) -> String {
    let (path, query) = live_view_url.split_once('?').expect("a token");
    format!("{}/stream?{query}", path.replacen("http://", "ws://", 1))
}

async fn open_stream(live_view_url: &str) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(stream_url(live_view_url))
        .await
        .expect("live stream");
    socket
}

/// The next message of a type, skipping others.
async fn next_of(socket: &mut Socket, kind: &str) -> Value {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(30), socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} message in time"))
            .expect("stream open")
            .expect("frame");
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).expect("JSON");
            if value["type"] == kind {
                return value;
            }
        }
    }
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.expect("send");
}

#[tokio::test]
async fn the_stream_shows_frames_forwards_keys_and_follows_new_tabs() {
    let page = serve_test_page().await;
    let server = TestServer::start().await;
    let session = server
        .create_session(json!({"browser": {"viewport": {"width": 800, "height": 600}}}))
        .await;
    let mut stream = open_stream(text(&session["live_view_url"])).await;
    let hello = next_of(&mut stream, "hello").await;
    assert_eq!(hello["read_only"], false);
    assert_eq!(hello["session_id"], session["id"]);
    let frame = next_of(&mut stream, "frame").await;
    // A JPEG, and the page's size in CSS pixels.
    assert!(
        text(&frame["data"]).starts_with("/9j/"),
        "{}",
        &text(&frame["data"])[..20]
    );
    assert_eq!(
        (frame["width"].as_f64(), frame["height"].as_f64()),
        (Some(800.0), Some(600.0))
    );

    // A new tab is what the viewer is shown next; typing reaches it.
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let tab = cdp.open_page(&format!("{page}/second")).await;
    next_of(&mut stream, "page").await;
    cdp.evaluate(
        &tab,
        "document.body.innerHTML = '<input id=field autofocus>'; document.getElementById('field').focus()",
    )
    .await;
    for key in ["h", "i"] {
        let code = format!("Key{}", key.to_uppercase());
        let key_code = u32::from(key.to_uppercase().as_bytes()[0]);
        send(
            &mut stream,
            json!({"type": "key", "event": "down", "key": key, "code": code, "text": key, "key_code": key_code}),
        )
        .await;
        send(
            &mut stream,
            json!({"type": "key", "event": "up", "key": key, "code": code, "key_code": key_code}),
        )
        .await;
    }
    // A bad message is answered with an error and changes nothing.
    send(&mut stream, json!({"type": "mouse", "event": "hover", "x": 1, "y": 1})).await;
    let error = next_of(&mut stream, "error").await;
    assert!(text(&error["message"]).contains("mouse event"), "{error}");
    // Input is handled in order, so the keys were dispatched before the error came back.
    let mut typed = Value::Null;
    for _ in 0..100 {
        typed = cdp.evaluate(&tab, "document.getElementById('field').value").await;
        if typed == "hi" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(typed, "hi");

    // Switched back to the first tab through the API, the viewer is shown it
    // and types into it.
    let id = text(&session["id"]);
    let (_, listed) = server.get(&format!("/v1/sessions/{id}/pages")).await;
    let first = listed["data"]["items"]
        .as_array()
        .and_then(|items| items.iter().find(|item| !text(&item["url"]).ends_with("/second")))
        .map(|item| text(&item["id"]).to_owned())
        .expect("the first tab");
    let first_session = cdp.attach(&first).await;
    cdp.evaluate(
        &first_session,
        "document.body.innerHTML = '<input id=field>'; document.getElementById('field').focus()",
    )
    .await;
    let (status, _) = server
        .post(&format!("/v1/sessions/{id}/pages/{first}/activate"), json!({}))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    next_of(&mut stream, "page").await;
    let key = json!({"type": "key", "event": "down", "key": "x", "code": "KeyX", "text": "x", "key_code": 88});
    send(&mut stream, key).await;
    let mut typed = Value::Null;
    for _ in 0..100 {
        typed = cdp
            .evaluate(&first_session, "document.getElementById('field').value")
            .await;
        if typed == "x" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(typed, "x");
    cdp.close().await;

    // Ending the session tells the viewer and closes the stream.
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    let ended = next_of(&mut stream, "ended").await;
    assert!(text(&ended["message"]).contains("ended"), "{ended}");
    // A viewer arriving later is told the same at once.
    let mut late = open_stream(text(&session["live_view_url"])).await;
    next_of(&mut late, "ended").await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_viewer_keeps_the_session_from_idling_out() {
    // One timeout minute lasts 500 ms here.
    let server = TestServer::start_with(&[], |config| config.timeout_minute = Duration::from_millis(500)).await;
    let session = server
        .create_session(json!({"session": {"timeout": {"idle_timeout": 1, "max_duration": -1}}}))
        .await;
    let session_id = text(&session["id"]).to_owned();
    let mut stream = open_stream(text(&session["live_view_url"])).await;
    next_of(&mut stream, "hello").await;
    // Watched for well over the idle limit: still running.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.session_status(&session_id).await.0, "running");
    let metrics = server.metrics().await;
    assert!(metrics.contains("anchorage_cdp_connections 1"), "{metrics}");
    stream.close(None).await.expect("close");
    let ended = server
        .wait_for_status(&session_id, "completed", Duration::from_secs(20))
        .await;
    assert!(text(&ended["end_reason"]).contains("idle_timeout"), "{ended}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn the_page_and_stream_need_the_sessions_own_token() {
    let server = TestServer::start().await;
    let first = server.create_session(json!({})).await;
    let second = server.create_session(json!({})).await;
    let first_url = text(&first["live_view_url"]);
    // The page is served with the right token only.
    let page = server.http.get(first_url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("<canvas"));
    let (path, _) = first_url.split_once('?').expect("token");
    let second_token = text(&second["live_view_url"]).split_once('?').expect("token").1;
    let borrowed = format!("{path}?{second_token}");
    assert_eq!(server.http.get(&borrowed).send().await.expect("page").status(), 401);
    assert_eq!(server.http.get(path).send().await.expect("page").status(), 401);
    // So is the stream.
    assert_eq!(refused_upgrade_status(&stream_url(&borrowed)).await, 401);
    assert_eq!(
        refused_upgrade_status(&format!("{}/stream", path.replacen("http://", "ws://", 1))).await,
        401
    );
    for session in [&first, &second] {
        server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn the_root_is_the_dashboard_for_a_browser_and_json_for_a_client() {
    let server = TestServer::start().await;
    let page = server
        .http
        .get(format!("{}/", server.base))
        .header("accept", "text/html,application/xhtml+xml;q=0.9,*/*;q=0.8")
        .send()
        .await
        .expect("dashboard");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("body").contains("id=\"api-key\""));
    let (status, about) = server.get("/").await;
    assert_eq!(status, 200);
    assert_eq!(about["name"], "anchorage");
    server.stop().await;
}

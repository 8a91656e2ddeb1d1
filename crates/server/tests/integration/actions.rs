//! The REST actions on a running session with real Chromium: each call's
//! effect is read back from the page (clicks counted, typed text, the
//! selection a shortcut made, the scroll position, the screenshot's size),
//! and each route's bad inputs get the contract's errors.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{serve_test_page, Cdp, TestServer};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Polls an expression on the page until it equals `wanted`.
async fn page_shows(cdp: &mut Cdp, page: &str, expression: &str, wanted: Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let value = cdp.evaluate(page, expression).await;
        if value == wanted {
            return;
        }
        assert!(Instant::now() < deadline, "{expression} is {value}, not {wanted}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn actions_act_on_the_active_page_and_bad_inputs_are_refused() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let session = server.create_session(json!({})).await;
    let id = text(&session["id"]).to_owned();
    let action = |path: &str| format!("/v1/sessions/{id}/{path}");

    let (status, answer) = server
        .post(&action("goto"), json!({"url": format!("{pages}/actions")}))
        .await;
    assert_eq!((status, &answer), (StatusCode::OK, &json!({"status": "navigated"})));
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    assert_eq!(cdp.evaluate(&page, "document.title").await, json!("actions"));

    // Mouse: a click, a double click (two more clicks), a press and release.
    assert_eq!(
        server.post(&action("mouse/click"), json!({"x": 100, "y": 50})).await.0,
        StatusCode::OK
    );
    page_shows(&mut cdp, &page, "clicks", json!(1)).await;
    let (status, _) = server
        .post(&action("mouse/doubleClick"), json!({"x": 100, "y": 50}))
        .await;
    assert_eq!(status, StatusCode::OK);
    page_shows(&mut cdp, &page, "[clicks, doubles]", json!([3, 1])).await;
    for step in ["mouse/move", "mouse/down", "mouse/up"] {
        assert_eq!(
            server.post(&action(step), json!({"x": 20, "y": 20})).await.0,
            StatusCode::OK,
            "{step}"
        );
    }
    page_shows(&mut cdp, &page, "clicks", json!(4)).await;

    // Keyboard: focus the input, type, select all with a shortcut, type over it.
    assert_eq!(
        server.post(&action("mouse/click"), json!({"x": 150, "y": 220})).await.0,
        StatusCode::OK
    );
    let (status, _) = server
        .post(&action("keyboard/type"), json!({"text": "hello", "delay": 5}))
        .await;
    assert_eq!(status, StatusCode::OK);
    page_shows(&mut cdp, &page, "t.value", json!("hello")).await;
    let (status, _) = server
        .post(&action("keyboard/shortcut"), json!({"keys": ["Control", "a"]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    page_shows(&mut cdp, &page, "[t.selectionStart, t.selectionEnd]", json!([0, 5])).await;

    // The clipboard: copy the selection, read it back, paste, set.
    let (status, copied) = server.post(&action("copy"), json!({})).await;
    assert_eq!((status, copied), (StatusCode::OK, json!({"text": "hello"})));
    assert_eq!(
        server.get(&action("clipboard")).await.1,
        json!({"data": {"text": "hello"}})
    );
    server.post(&action("keyboard/type"), json!({"text": "x"})).await;
    page_shows(&mut cdp, &page, "t.value", json!("x")).await;
    let (status, _) = server.post(&action("paste"), json!({"text": " pasted"})).await;
    assert_eq!(status, StatusCode::OK);
    page_shows(&mut cdp, &page, "t.value", json!("x pasted")).await;
    assert_eq!(
        server.post(&action("clipboard"), json!({"text": "set"})).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&action("clipboard")).await.1,
        json!({"data": {"text": "set"}})
    );

    // A drag moves the box that follows the mouse.
    let (status, _) = server
        .post(
            &action("drag-and-drop"),
            json!({"startX": 425, "startY": 25, "endX": 625, "endY": 225}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    page_shows(
        &mut cdp,
        &page,
        "[d.style.left, d.style.top]",
        json!(["600px", "200px"]),
    )
    .await;

    // The wheel scrolls the page.
    let (status, _) = server
        .post(
            &action("scroll"),
            json!({"x": 400, "y": 400, "deltaY": 600, "steps": 3}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    page_shows(&mut cdp, &page, "scrollY > 0", json!(true)).await;

    // A click by selector scrolls its element into view and clicks it.
    let (status, _) = server.post(&action("mouse/click"), json!({"selector": "#far"})).await;
    assert_eq!(status, StatusCode::OK);
    page_shows(&mut cdp, &page, "farClicks", json!(1)).await;

    // The screenshot is a PNG of the viewport (1440x900 by default).
    let response = server
        .http
        .get(format!("{}{}", server.base, action("screenshot")))
        .header("anchor-api-key", crate::support::TEST_KEY)
        .send()
        .await
        .expect("screenshot");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "image/png");
    let png = response.bytes().await.expect("body");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let side = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    assert_eq!((side(16), side(20)), (1440, 900));

    // Bad inputs: each names what is wrong, and nothing happens on the page.
    for (path, body, wanted) in [
        (
            "mouse/click",
            json!({"x": 5000, "y": 10}),
            "x must be within the viewport",
        ),
        ("mouse/click", json!({"x": 10}), "x and y are required"),
        ("mouse/click", json!({"x": "ten", "y": 10}), "x must be a number"),
        (
            "mouse/click",
            json!({"x": 1, "y": 1, "button": "side"}),
            "button must be",
        ),
        (
            "mouse/click",
            json!({"selector": "#nothing", "timeout": 100}),
            "matched no element",
        ),
        (
            "mouse/click",
            json!({"selector": "[[", "timeout": 100}),
            "not a valid CSS selector",
        ),
        ("mouse/click", json!({"selector": "#b", "index": -1}), "index"),
        (
            "drag-and-drop",
            json!({"startX": 1, "startY": 1, "endX": 99999, "endY": 1}),
            "end: x must be within",
        ),
        ("paste", json!({}), "text is required"),
        ("clipboard", json!({"text": 5}), "text must be a string"),
        ("mouse/down", json!({"x": 1, "y": -1}), "y must be within the viewport"),
        ("scroll", json!({"x": 1, "y": 1}), "deltaY is required"),
        ("scroll", json!({"x": 1, "y": 1, "deltaY": 1, "steps": 0}), "steps"),
        ("keyboard/type", json!({}), "text is required"),
        ("keyboard/type", json!({"text": "a", "delay": 5000}), "delay"),
        ("keyboard/shortcut", json!({"keys": []}), "keys must hold"),
        (
            "keyboard/shortcut",
            json!({"keys": ["Hyper"]}),
            "\"Hyper\" is not a key name",
        ),
        ("goto", json!({"url": "ftp://example.test/"}), "http or https"),
        ("goto", json!({"url": "not a url"}), "url is not a valid URL"),
        ("goto", json!([]), "JSON object"),
    ] {
        let (status, answer) = server.post(&action(path), body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path} {body}: {answer}");
        assert!(
            text(&answer["error"]["message"]).contains(wanted),
            "{path} {body}: {answer}"
        );
    }
    page_shows(
        &mut cdp,
        &page,
        "[clicks, doubles, farClicks, t.value]",
        json!([4, 1, 1, "x pasted"]),
    )
    .await;
    cdp.close().await;

    // Unknown, and another team's, sessions are 404; an ended one is 409.
    let unknown = format!("/v1/sessions/{}/mouse/click", uuid::Uuid::new_v4());
    assert_eq!(
        server.post(&unknown, json!({"x": 1, "y": 1})).await.0,
        StatusCode::NOT_FOUND
    );
    server.delete(&format!("/v1/sessions/{id}")).await;
    let (status, answer) = server.post(&action("mouse/click"), json!({"x": 1, "y": 1})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert!(text(&answer["error"]["message"]).contains("not running"), "{answer}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Uploads the `file` part `contents` named `name`; the status and answer.
async fn upload(server: &TestServer, session_id: &str, name: &str, contents: &'static [u8]) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(contents).file_name(name.to_owned()),
    );
    server
        .post_multipart(
            &format!("/v1/sessions/{session_id}/uploads"),
            crate::support::TEST_KEY,
            form,
        )
        .await
}

#[tokio::test]
async fn an_uploaded_file_reaches_a_file_input_and_an_oversized_one_is_refused() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_UPLOAD_BYTES", "64")], |_| {}).await;
    let pages = serve_test_page().await;
    let session = server.create_session(json!({})).await;
    let id = text(&session["id"]).to_owned();
    server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{pages}/actions")}),
        )
        .await;

    let (status, answer) = upload(&server, &id, "../../notes.txt", b"uploaded words").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["data"]["status"], json!("uploaded"));
    let message = text(&answer["data"]["message"]);
    let path = message
        .strip_prefix("saved as ")
        .and_then(|rest| rest.split(" (").next())
        .expect("the path")
        .to_owned();
    // The name was kept to its last part, in the session's uploads folder.
    assert!(path.ends_with("/uploads/notes.txt"), "{path}");
    assert!(path.starts_with(&server.browsers_dir().display().to_string()), "{path}");

    // A CDP client gives it to the page's file input; the page reads it.
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    let document = cdp.call("DOM.getDocument", json!({}), Some(&page)).await;
    let input = cdp
        .call(
            "DOM.querySelector",
            json!({"nodeId": document["root"]["nodeId"], "selector": "#f"}),
            Some(&page),
        )
        .await;
    cdp.call(
        "DOM.setFileInputFiles",
        json!({"files": [path], "nodeId": input["nodeId"]}),
        Some(&page),
    )
    .await;
    let read = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": "f.files[0].text()", "awaitPromise": true, "returnByValue": true}),
            Some(&page),
        )
        .await;
    assert_eq!(read["result"]["value"], json!("uploaded words"));
    cdp.close().await;

    // Over ANCHORAGE_MAX_UPLOAD_BYTES: 413, and nothing of it is kept.
    let (status, answer) = upload(&server, &id, "big.bin", &[7; 100]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    let uploads = std::path::Path::new(&path).parent().expect("folder").to_owned();
    let kept: Vec<_> = std::fs::read_dir(&uploads)
        .expect("uploads")
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(kept, vec![std::ffi::OsString::from("notes.txt")]);
    // Not multipart, or without a file part: 400.
    let (status, answer) = server.post(&format!("/v1/sessions/{id}/uploads"), json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");

    // The folder goes with the session.
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while uploads.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the uploads folder outlived its session"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn actions_follow_the_newest_tab_and_come_back_when_it_closes() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let session = server.create_session(json!({})).await;
    let id = text(&session["id"]).to_owned();
    let click = format!("/v1/sessions/{id}/mouse/click");
    server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{pages}/actions")}),
        )
        .await;
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let first = cdp.attach_newest_page().await;
    assert_eq!(server.post(&click, json!({"x": 100, "y": 50})).await.0, StatusCode::OK);
    page_shows(&mut cdp, &first, "clicks", json!(1)).await;

    // A tab opened by a client becomes the active page.
    let second = cdp.open_page(&format!("{pages}/actions")).await;
    assert_eq!(server.post(&click, json!({"x": 100, "y": 50})).await.0, StatusCode::OK);
    page_shows(&mut cdp, &second, "clicks", json!(1)).await;
    assert_eq!(cdp.evaluate(&first, "clicks").await, json!(1));

    // Closed again, the first page is the active one once more.
    let target = cdp.call("Target.getTargetInfo", json!({}), Some(&second)).await["targetInfo"]["targetId"].clone();
    cdp.call("Target.closeTarget", json!({"targetId": target}), None).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(server.post(&click, json!({"x": 100, "y": 50})).await.0, StatusCode::OK);
        if cdp.evaluate(&first, "clicks").await != json!(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the click never reached the first page again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    page_shows(&mut cdp, &first, "clicks", json!(2)).await;
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_download_lands_in_the_sessions_folder_and_is_listed_with_its_size() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let session = server.create_session(json!({})).await;
    let id = text(&session["id"]).to_owned();
    server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{pages}/actions")}),
        )
        .await;
    assert_eq!(
        server.get(&format!("/v1/sessions/{id}/downloads")).await.1,
        json!({"data": {"count": 0, "items": []}})
    );
    let clicked = Instant::now();
    let (status, _) = server
        .post(&format!("/v1/sessions/{id}/mouse/click"), json!({"selector": "#dl"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let size = crate::support::DOWNLOAD_BODY.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (_, listed) = server.get(&format!("/v1/sessions/{id}/downloads")).await;
        if listed["data"]["items"][0]["size"] == json!(size) {
            break listed;
        }
        assert!(Instant::now() < deadline, "the download was not listed: {listed}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let item = &listed["data"]["items"][0];
    assert_eq!(item["suggested_file_name"], json!("report.csv"));
    assert_eq!(item["original_download_url"], json!(format!("{pages}/report.csv")));
    assert!(
        item["duration"]
            .as_i64()
            .is_some_and(|ms| ms >= 0 && ms as u128 <= clicked.elapsed().as_millis()),
        "{item}"
    );
    // Its file_link serves the bytes, with the API key.
    let link = text(&item["file_link"]).to_owned();
    let (status, content_type, bytes) = server.get_url_for_bytes(&link).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(content_type, "application/octet-stream");
    assert_eq!(bytes, crate::support::DOWNLOAD_BODY.as_bytes());
    let (status, error) = server
        .get(&format!(
            "/v1/sessions/{id}/downloads/8a6e0804-2bd0-4672-b79d-d97027f22166"
        ))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{error}");
    let (status, _) = server
        .request(reqwest::Method::GET, link.trim_start_matches(&server.base), None, None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // The file is in the session's own folder, which goes with the session.
    let file = std::fs::read_dir(server.browsers_dir())
        .expect("browsers")
        .flatten()
        .map(|entry| entry.path().join("downloads/report.csv"))
        .find(|file| file.exists())
        .expect("the downloaded file");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        crate::support::DOWNLOAD_BODY
    );
    // A download that lasts (its server pauses mid-body) is listed once
    // finished, with a duration covering the pause and no longer than the test saw.
    let clicked = Instant::now();
    let (status, _) = server
        .post(
            &format!("/v1/sessions/{id}/mouse/click"),
            json!({"selector": "#slowdl"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(20);
    let slow = loop {
        let (_, listed) = server.get(&format!("/v1/sessions/{id}/downloads")).await;
        let found = listed["data"]["items"]
            .as_array()
            .and_then(|items| {
                items
                    .iter()
                    .find(|item| item["suggested_file_name"] == json!("slow.csv"))
            })
            .cloned();
        if let Some(item) = found {
            break item;
        }
        assert!(Instant::now() < deadline, "the slow download was not listed: {listed}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = slow["duration"].as_i64().unwrap_or(-1);
    assert!(
        took >= crate::support::SLOW_DOWNLOAD.as_millis() as i64 - 50 && took as u128 <= clicked.elapsed().as_millis(),
        "{slow} (the test saw {} ms)",
        clicked.elapsed().as_millis()
    );
    assert_eq!(slow["size"], json!(8), "{slow}");
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.exists() {
        assert!(Instant::now() < deadline, "the download outlived its session");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

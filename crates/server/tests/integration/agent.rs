//! What an agent reads and does on a page through the anchorage routes the
//! MCP tools use: a snapshot with references, actions on references, waits,
//! and the snapshot's budgets.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{serve_test_page, TestServer};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The reference on the first line of a snapshot that contains `needle`.
fn reference(snapshot: &str, needle: &str) -> String {
    let line = snapshot
        .lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{snapshot}"));
    let start = line.find("[ref=").expect("a reference") + 5;
    line[start..line[start..].find(']').expect("closed") + start].to_owned()
}

/// A session started at a page still being parsed (its start answers once
/// the navigation commits): the snapshot taken at once shows the whole
/// document, not its top.
#[tokio::test]
async fn a_snapshot_waits_for_the_document_to_be_parsed() {
    let pages = serve_test_page().await;
    let server = TestServer::start().await;
    let session = server
        .create_session(json!({"session": {"initial_url": format!("{pages}/parsing")}}))
        .await;
    let id = text(&session["id"]).to_owned();
    let started = std::time::Instant::now();
    let (status, read) = server.post(&format!("/v1/sessions/{id}/snapshot"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let snapshot = text(&read["data"]["snapshot"]);
    assert!(snapshot.contains("button \"Late\""), "{snapshot}");
    // It waited, and not for a fixed time: the end came within PARSING.
    assert!(
        started.elapsed() < crate::support::PARSING * 4,
        "{:?}",
        started.elapsed()
    );
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn an_agent_reads_references_acts_on_them_and_waits() {
    let pages = serve_test_page().await;
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let id = text(&session["id"]).to_owned();
    let (status, _) = server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{pages}/form")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, read) = server.post(&format!("/v1/sessions/{id}/snapshot"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    let snapshot = text(&read["data"]["snapshot"]).to_owned();
    assert_eq!(read["data"]["title"], "order form");
    assert!(snapshot.contains("- heading \"Order\" [level=1]"), "{snapshot}");
    assert!(snapshot.contains("- textbox \"Name\""), "{snapshot}");
    assert!(snapshot.contains("- combobox \"Size\""), "{snapshot}");
    let name = reference(&snapshot, "textbox \"Name\"");
    let size = reference(&snapshot, "combobox \"Size\"");
    let send = reference(&snapshot, "button \"Send\"");

    let act = |body: Value| {
        let path = format!("/v1/sessions/{id}/element");
        let server = &server;
        async move { server.post(&path, body).await }
    };
    let (status, done) = act(json!({"ref": name, "action": "type", "text": "Ada"})).await;
    assert_eq!(status, StatusCode::OK, "{done}");
    let (_, done) = act(json!({"ref": size, "action": "select", "values": ["Large"]})).await;
    assert_eq!(done["selected"], json!(["l"]), "{done}");
    let (_, done) = act(json!({"ref": send})).await;
    assert_eq!(done["status"], "clicked", "{done}");
    let (_, waited) = server
        .post(
            &format!("/v1/sessions/{id}/wait"),
            json!({"selector": "#later", "timeout": 5000}),
        )
        .await;
    assert_eq!(waited["data"]["found"], true, "{waited}");
    let (_, waited) = server
        .post(
            &format!("/v1/sessions/{id}/wait"),
            json!({"text": "no such words", "timeout": 200}),
        )
        .await;
    assert_eq!(waited["data"]["found"], false, "{waited}");

    // What changed since the last snapshot: the output and the new paragraph.
    let (_, changed) = server
        .post(&format!("/v1/sessions/{id}/snapshot"), json!({"changes_only": true}))
        .await;
    let changes = text(&changed["data"]["snapshot"]);
    assert!(changes.starts_with("# changes since the last snapshot"), "{changes}");
    assert!(changes.contains("sent Ada l"), "{changes}");
    assert!(changes.contains("thanks"), "{changes}");
    assert!(!changes.contains("heading \"Order\""), "{changes}");
    // One part of the page.
    let (_, part) = server
        .post(&format!("/v1/sessions/{id}/snapshot"), json!({"selector": "#box"}))
        .await;
    assert_eq!(
        text(&part["data"]["snapshot"]).trim(),
        format!("- button \"Inner\" [ref={}]", reference(&snapshot, "Inner"))
    );

    // Bad input is refused and changes nothing; a stale reference says so.
    for (body, status) in [
        (json!({"ref": "12"}), StatusCode::BAD_REQUEST),
        (json!({"ref": name, "action": "launch"}), StatusCode::BAD_REQUEST),
        (json!({"ref": name, "action": "type"}), StatusCode::BAD_REQUEST),
        (json!({"ref": "e999999"}), StatusCode::NOT_FOUND),
    ] {
        let (got, error) = act(body.clone()).await;
        assert_eq!(got, status, "{body}: {error}");
    }
    let (got, _) = server
        .post(&format!("/v1/sessions/{id}/snapshot"), json!({"max_chars": 5}))
        .await;
    assert_eq!(got, StatusCode::BAD_REQUEST);
    let (got, _) = server
        .post(&format!("/v1/sessions/{id}/snapshot"), json!({"selector": "#nothing"}))
        .await;
    assert_eq!(got, StatusCode::NOT_FOUND);

    // A tab opened becomes the active page; closed, the one before is again.
    let (status, opened) = server
        .post(
            &format!("/v1/sessions/{id}/pages"),
            json!({"url": format!("{pages}/article")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{opened}");
    let tab = text(&opened["data"]["id"]).to_owned();
    let (_, read) = server.post(&format!("/v1/sessions/{id}/snapshot"), json!({})).await;
    assert_eq!(read["data"]["title"], "article", "{read}");
    let (status, _) = server.delete(&format!("/v1/sessions/{id}/pages/{tab}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = server.delete(&format!("/v1/sessions/{id}/pages/{tab}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, read) = server.post(&format!("/v1/sessions/{id}/snapshot"), json!({})).await;
    assert_eq!(read["data"]["title"], "order form", "{read}");

    // Switching to an older tab makes it the active page until a tab opens;
    // once that one closes, the switch holds again.
    let open_tab = |path: &'static str| {
        let (server, id) = (&server, &id);
        let url = format!("{pages}/{path}");
        async move {
            let (status, opened) = server
                .post(&format!("/v1/sessions/{id}/pages"), json!({ "url": url }))
                .await;
            assert_eq!(status, StatusCode::OK, "{opened}");
            text(&opened["data"]["id"]).to_owned()
        }
    };
    let active_page = || async {
        let (_, listed) = server.get(&format!("/v1/sessions/{id}/pages")).await;
        let items = listed["data"]["items"].as_array().cloned().unwrap_or_default();
        let active: Vec<_> = items.iter().filter(|item| item["active"] == true).collect();
        assert_eq!(active.len(), 1, "{listed}");
        text(&active[0]["id"]).to_owned()
    };
    let title = || async {
        let (_, read) = server.post(&format!("/v1/sessions/{id}/snapshot"), json!({})).await;
        text(&read["data"]["title"]).to_owned()
    };
    let form = active_page().await;
    let article = open_tab("article").await;
    assert_eq!(active_page().await, article);
    let (status, switched) = server
        .post(&format!("/v1/sessions/{id}/pages/{form}/activate"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{switched}");
    assert_eq!(switched["status"], "activated");
    assert_eq!(active_page().await, form);
    assert_eq!(title().await, "order form");
    let third = open_tab("second").await;
    assert_eq!(active_page().await, third);
    server.delete(&format!("/v1/sessions/{id}/pages/{third}")).await;
    assert_eq!(active_page().await, form);
    assert_eq!(title().await, "order form");
    // Neither a made-up page nor another session's is switched to.
    let other = server.create_session(json!({})).await;
    let (_, listed) = server.get(&format!("/v1/sessions/{}/pages", text(&other["id"]))).await;
    let foreign = text(&listed["data"]["items"][0]["id"]).to_owned();
    assert!(!foreign.is_empty(), "{listed}");
    for missing in ["NOPAGE", foreign.as_str()] {
        let (status, answer) = server
            .post(&format!("/v1/sessions/{id}/pages/{missing}/activate"), json!({}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}: {answer}");
        assert_eq!(active_page().await, form);
    }
    server.delete(&format!("/v1/sessions/{}", text(&other["id"]))).await;
    // Closing the page switched to hands over to the newest.
    let (status, _) = server
        .post(&format!("/v1/sessions/{id}/pages/{article}/activate"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(title().await, "article");
    server.delete(&format!("/v1/sessions/{id}/pages/{article}")).await;
    assert_eq!(active_page().await, form);

    let (status, _) = server
        .post(
            &format!("/v1/sessions/{id}/pages"),
            json!({"url": "file:///etc/passwd"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A page of 10,000 links stays within its budget.
    server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{pages}/many")}),
        )
        .await;
    let (_, big) = server
        .post(&format!("/v1/sessions/{id}/snapshot"), json!({"max_chars": 5000}))
        .await;
    let shown = text(&big["data"]["snapshot"]);
    assert!(shown.len() <= 5000, "{}", shown.len());
    assert_eq!(big["data"]["truncated"], true);
    assert!(big["data"]["lines"].as_u64().expect("lines") >= 10_000, "{big}");
    assert!(shown.contains("more lines not shown"), "{shown}");

    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

//! The one-shot tools with real Chromium: a screenshot (its size, full
//! height, JPEG), a PDF, the rendered HTML, each without a session (a
//! session of its own, ended before the answer) and in a running session (a
//! tab of its own, closed after), and their bad inputs.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{serve_test_page, TestServer, TEST_PAGE_TITLE};

fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    let side = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (side(16), side(20))
}

async fn live_sessions(server: &TestServer) -> u64 {
    server.get("/v1/sessions/all/status").await.1["data"]["count"]
        .as_u64()
        .unwrap_or(u64::MAX)
}

#[tokio::test]
async fn tools_capture_print_and_fetch_pages_and_leave_nothing_running() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let actions = format!("{pages}/actions");

    // Without a session: a session of its own, ended before the answer.
    let (status, content_type, png) = server
        .post_for_bytes(
            "/v1/tools/screenshot",
            json!({"url": actions, "width": 800, "height": 600}),
        )
        .await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"));
    assert_eq!(png_size(&png), (800, 600));
    let (_, _, tall) = server
        .post_for_bytes(
            "/v1/tools/screenshot",
            json!({"url": actions, "capture_full_height": true}),
        )
        .await;
    assert_eq!(png_size(&tall), (1440, 5000));
    // scroll_all_content scrolls the page through first, so what loads on
    // the way down is in the picture; without it the page stays as loaded.
    let lazy = format!("{pages}/lazy");
    for (scroll, height) in [(false, 2001), (true, 4001)] {
        let (status, _, png) = server
            .post_for_bytes(
                "/v1/tools/screenshot",
                json!({"url": lazy, "capture_full_height": true, "scroll_all_content": scroll}),
            )
            .await;
        assert_eq!(
            (status, png_size(&png)),
            (StatusCode::OK, (1440, height)),
            "scroll {scroll}"
        );
    }
    let (status, content_type, jpeg) = server
        .post_for_bytes("/v1/tools/screenshot", json!({"url": actions, "image_quality": 50}))
        .await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/jpeg"));
    assert_eq!(&jpeg[..2], b"\xff\xd8");
    let (status, content_type, pdf) = server
        .post_for_bytes("/v1/tools/page-pdf", json!({"url": actions, "landscape": true}))
        .await;
    assert_eq!((status, content_type.as_str()), (StatusCode::OK, "application/pdf"));
    assert!(pdf.starts_with(b"%PDF"));
    for path in ["/v1/tools/fetch/webpage", "/v1/tools/fetch-webpage"] {
        let (status, content_type, html) = server.post_for_bytes(path, json!({"url": format!("{pages}/")})).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(content_type.starts_with("text/html"), "{content_type}");
        assert!(String::from_utf8_lossy(&html).contains(TEST_PAGE_TITLE), "{path}");
    }
    assert_eq!(live_sessions(&server).await, 0, "every tool ended its own session");

    // In a running session: a tab of its own, closed after; the session's pages stay.
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    // The pages by id and URL (a blank page's title fills in on its own).
    let pages_of = || async {
        let (_, pages) = server.get(&format!("/v1/sessions/{id}/pages")).await;
        pages["data"]["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|item| (item["id"].clone(), item["url"].clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let pages_before = pages_of().await;
    assert_eq!(pages_before.len(), 1);
    let (status, _, png) = server
        .post_for_bytes(&format!("/v1/tools/screenshot?sessionId={id}"), json!({"url": actions}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(png_size(&png), (1440, 900));
    let (status, _, html) = server
        .post_for_bytes(
            &format!("/v1/tools/fetch/webpage?sessionId={id}"),
            json!({"url": actions}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&html).contains("<title>actions</title>"));
    // Without a URL, the session's active page as it is.
    let (status, _, png) = server
        .post_for_bytes(&format!("/v1/tools/screenshot?sessionId={id}"), json!({}))
        .await;
    assert_eq!((status, png_size(&png)), (StatusCode::OK, (1440, 900)));
    assert_eq!(pages_of().await, pages_before);

    // Bad inputs.
    let unknown = uuid::Uuid::new_v4();
    for (path, body, wanted_status, wanted) in [
        ("/v1/tools/screenshot", json!({}), 400, "url is required"),
        (
            "/v1/tools/screenshot",
            json!({"url": actions, "width": 50}),
            400,
            "width must be between",
        ),
        (
            "/v1/tools/screenshot",
            json!({"url": "ftp://example.test/"}),
            400,
            "http or https",
        ),
        (
            "/v1/tools/screenshot",
            json!({"url": actions, "wait": "soon"}),
            400,
            "wait must be a number",
        ),
        (
            "/v1/tools/page-pdf",
            json!({"url": actions, "scale": 9}),
            400,
            "scale must be between",
        ),
        ("/v1/tools/page-pdf", json!({}), 400, "url is required"),
        (
            "/v1/tools/fetch/webpage",
            json!({"url": 5}),
            400,
            "url must be a string",
        ),
    ] {
        let (status, answer) = server.post(path, body.clone()).await;
        assert_eq!(status.as_u16(), wanted_status, "{path} {body}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap_or_default().contains(wanted),
            "{path} {body}: {answer}"
        );
    }
    for query in [format!("sessionId={unknown}"), "sessionId=nope".to_owned()] {
        let (status, answer) = server
            .post(&format!("/v1/tools/fetch/webpage?{query}"), json!({"url": actions}))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{query}: {answer}");
    }
    server.delete(&format!("/v1/sessions/{id}")).await;
    let (status, answer): (StatusCode, Value) = server
        .post(&format!("/v1/tools/screenshot?sessionId={id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn fetch_gives_markdown_and_honours_every_field_and_screenshot_its_size_in_a_session() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let article = format!("{pages}/article");

    // Markdown, without a session: headings, link, lists, table, code; no script or style.
    let (status, content_type, body) = server
        .post_for_bytes("/v1/tools/fetch-webpage", json!({"url": article, "format": "markdown"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/markdown"), "{content_type}");
    let text = String::from_utf8_lossy(&body).into_owned();
    for wanted in [
        "# Quarterly report",
        "## Revenue",
        "[the first quarter](https://example.com/q1)",
        "```\nlet total = 237;\n```",
    ] {
        assert!(text.contains(wanted), "{wanted:?} missing from:\n{text}");
    }
    // Lists and the table, whatever the spacing the converter chooses.
    let line = |prefix: &str, words: &[&str]| {
        text.lines()
            .any(|line| line.trim_start().starts_with(prefix) && words.iter().all(|word| line.contains(word)))
    };
    assert!(
        line("*", &["alpha"]) && line("1.", &["one"]) && line("2.", &["two"]),
        "{text}"
    );
    assert!(
        line("|", &["quarter", "revenue"]) && line("|", &["Q1", "112"]),
        "{text}"
    );
    assert!(!text.contains("script text") && !text.contains("color:red"), "{text}");

    // wait: content that comes 1.5 s after the load is there with it, not without.
    let later = format!("{pages}/later");
    let (_, _, quick) = server
        .post_for_bytes("/v1/tools/fetch-webpage", json!({"url": later}))
        .await;
    assert!(!String::from_utf8_lossy(&quick).contains("arrived later"));
    let (_, _, waited) = server
        .post_for_bytes("/v1/tools/fetch-webpage", json!({"url": later, "wait": 2500}))
        .await;
    assert!(String::from_utf8_lossy(&waited).contains("arrived later"));

    // A page that never loads: a 504 after 20 s, or what it shows by then.
    let stuck = format!("{pages}/stuck");
    let (refused, partial) = tokio::join!(
        server.post_for_bytes("/v1/tools/fetch-webpage", json!({"url": stuck})),
        server.post_for_bytes(
            "/v1/tools/fetch-webpage",
            json!({"url": stuck, "return_partial_on_timeout": true}),
        ),
    );
    assert_eq!(
        refused.0,
        StatusCode::GATEWAY_TIMEOUT,
        "{}",
        String::from_utf8_lossy(&refused.2)
    );
    assert_eq!(partial.0, StatusCode::OK);
    assert!(String::from_utf8_lossy(&partial.2).contains("shown before the load"));

    // In a session: an empty url is its page as it is; page_index picks a
    // page; new_page false loads the url in the active page and leaves it.
    let session = server.create_session(json!({})).await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let goto = server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": format!("{pages}/second")}),
        )
        .await;
    assert_eq!(goto.0, StatusCode::OK);
    let fetch = format!("/v1/tools/fetch-webpage?sessionId={id}");
    let (_, _, current) = server.post_for_bytes(&fetch, json!({"url": ""})).await;
    assert!(String::from_utf8_lossy(&current).contains("<title>second page</title>"));
    let (_, _, indexed) = server.post_for_bytes(&fetch, json!({"page_index": 0})).await;
    assert!(String::from_utf8_lossy(&indexed).contains("<title>second page</title>"));
    let (status, _, _) = server.post_for_bytes(&fetch, json!({"page_index": 5})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, moved) = server
        .post_for_bytes(&fetch, json!({"url": article, "new_page": false, "format": "markdown"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&moved).contains("# Quarterly report"));
    let (_, listed) = server.get(&format!("/v1/sessions/{id}/pages")).await;
    assert_eq!(listed["data"]["count"], json!(1), "{listed}");
    assert_eq!(listed["data"]["items"][0]["url"], json!(article), "{listed}");

    // The screenshot's size, in a session: a tab of that size.
    let (status, _, png) = server
        .post_for_bytes(
            &format!("/v1/tools/screenshot?sessionId={id}"),
            json!({"url": article, "width": 800, "height": 600}),
        )
        .await;
    assert_eq!((status, png_size(&png)), (StatusCode::OK, (800, 600)));
    let (status, _, error) = server
        .post_for_bytes(&format!("/v1/tools/screenshot?sessionId={id}"), json!({"width": 800}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&error).contains("width and height need a url"));
    let (status, _, error) = server
        .post_for_bytes(
            "/v1/tools/screenshot",
            json!({"url": article, "s3_target_address": "https://bucket.example/put"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&error).contains("s3_target_address"));

    // Fields it cannot take are refused by name.
    for (body, wanted) in [
        (
            json!({"url": article, "format": "pdf"}),
            "format must be html or markdown",
        ),
        (json!({"url": article, "wait": -1}), "wait must be between"),
        (json!({"url": article, "page_index": 0}), "page_index needs a sessionId"),
        (json!({}), "url is required"),
    ] {
        let (status, _, error) = server.post_for_bytes("/v1/tools/fetch-webpage", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            String::from_utf8_lossy(&error).contains(wanted),
            "{body}: {}",
            String::from_utf8_lossy(&error)
        );
    }
    server.delete(&format!("/v1/sessions/{id}")).await;
    assert_eq!(live_sessions(&server).await, 0);
    server.assert_no_browsers_left().await;
    server.stop().await;
}

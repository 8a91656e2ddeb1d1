//! Browser options that are Chromium switches, each shown by its effect on
//! a page: `browser.disable_web_security` lets a page read another origin
//! without CORS headers; `browser.popup_blocker.active: false` lets a page
//! open a window without a user gesture (blocked by default);
//! `browser.pdf_viewer.active: false` turns Chromium's PDF viewer off;
//! `browser.disable_dialogs` answers a page's dialogs as Cancel would, in
//! every tab; `browser.force_popups_as_tabs` opens a popup in its opener's
//! window.

use serde_json::{json, Value};

use crate::support::{serve_test_page, Cdp, TestServer};

/// What `expression` gives on the test page in a session started with `body`.
async fn on_page(server: &TestServer, pages: &str, body: Value, expression: &str) -> Value {
    let session = server.create_session(body).await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    server
        .post(&format!("/v1/sessions/{id}/goto"), json!({"url": format!("{pages}/")}))
        .await;
    let mut cdp = Cdp::connect(session["cdp_url"].as_str().unwrap_or_default()).await;
    let page = cdp.attach_newest_page().await;
    let answer = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            Some(&page),
        )
        .await;
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    answer["result"]["value"].clone()
}

#[tokio::test]
async fn browser_switches_show_their_effect_on_pages() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    // Another origin (another port) that sends no CORS headers.
    let other = serve_test_page().await;
    let read_other = format!("fetch('{other}/').then(r => r.text()).then(() => 'read', () => 'blocked')");
    assert_eq!(on_page(&server, &pages, json!({}), &read_other).await, json!("blocked"));
    assert_eq!(
        on_page(
            &server,
            &pages,
            json!({"browser": {"disable_web_security": {"active": true}}}),
            &read_other
        )
        .await,
        json!("read")
    );

    // Fullscreen: no browser frame, the screen and viewport both the viewport asked for.
    let sizes = "[innerWidth, innerHeight, screen.width, screen.height, outerWidth]";
    assert_eq!(
        on_page(
            &server,
            &pages,
            json!({"browser": {"fullscreen": {"active": true}, "viewport": {"width": 1024, "height": 700}}}),
            sizes
        )
        .await,
        json!([1024, 700, 1024, 700, 1024])
    );
    let windowed = on_page(&server, &pages, json!({}), sizes).await;
    assert_eq!((windowed[0].clone(), windowed[1].clone()), (json!(1440), json!(900)));

    let viewer = "navigator.pdfViewerEnabled";
    assert_eq!(on_page(&server, &pages, json!({}), viewer).await, json!(true));
    assert_eq!(
        on_page(
            &server,
            &pages,
            json!({"browser": {"pdf_viewer": {"active": false}}}),
            viewer
        )
        .await,
        json!(false)
    );

    let open = "window.open('about:blank') ? 'opened' : 'blocked'";
    assert_eq!(on_page(&server, &pages, json!({}), open).await, json!("blocked"));
    assert_eq!(
        on_page(
            &server,
            &pages,
            json!({"browser": {"popup_blocker": {"active": true}}}),
            open
        )
        .await,
        json!("blocked")
    );
    assert_eq!(
        on_page(
            &server,
            &pages,
            json!({"browser": {"popup_blocker": {"active": false}}}),
            open
        )
        .await,
        json!("opened")
    );
    for (body, needle) in [
        (
            json!({"browser": {"popup_blocker": {"active": "no"}}}),
            "browser.popup_blocker.active",
        ),
        (
            json!({"browser": {"disable_web_security": true}}),
            "browser.disable_web_security",
        ),
    ] {
        let (status, error) = server.post("/v1/sessions", body.clone()).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{body}");
        assert!(
            error["error"]["message"].as_str().unwrap_or_default().contains(needle),
            "{error}"
        );
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn dialogs_are_dismissed_in_every_tab_of_a_session_that_asks() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let session = server
        .create_session(json!({"browser": {"disable_dialogs": {"active": true}}}))
        .await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let mut cdp = Cdp::connect(session["cdp_url"].as_str().unwrap_or_default()).await;
    let first = cdp.attach_newest_page().await;
    let dialogs = "[confirm('sure?'), prompt('name?'), (alert('hi'), 'after the alert')]";
    let answer = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": dialogs, "returnByValue": true}),
            Some(&first),
        )
        .await;
    assert_eq!(answer["result"]["value"], json!([false, null, "after the alert"]));
    // A tab opened later too.
    let second = cdp.open_page(&format!("{pages}/")).await;
    let answer = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": "confirm('again?')", "returnByValue": true}),
            Some(&second),
        )
        .await;
    assert_eq!(answer["result"]["value"], json!(false));
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Opens a popup from the session's page (with a user gesture) and says
/// whether it came up in the opener's window.
async fn popup_in_same_window(server: &TestServer, body: Value) -> bool {
    let session = server.create_session(body).await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let mut cdp = Cdp::connect(session["cdp_url"].as_str().unwrap_or_default()).await;
    let opener = cdp.attach_newest_page().await;
    let opener_target =
        cdp.call("Target.getTargetInfo", json!({}), Some(&opener)).await["targetInfo"]["targetId"].clone();
    let opened = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": "window.open('about:blank#popup', '', 'popup,width=320,height=240') ? 1 : 0",
                   "userGesture": true, "returnByValue": true}),
            Some(&opener),
        )
        .await;
    assert_eq!(opened["result"]["value"], json!(1));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let popup = loop {
        let targets = cdp.call("Target.getTargets", json!({}), None).await;
        let found = targets["targetInfos"].as_array().into_iter().flatten().find(|info| {
            info["type"] == json!("page") && info["url"].as_str().is_some_and(|url| url.ends_with("#popup"))
        });
        if let Some(info) = found {
            break info["targetId"].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no popup");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let opener_window = cdp
        .call("Browser.getWindowForTarget", json!({"targetId": opener_target}), None)
        .await["windowId"]
        .clone();
    let popup_window = cdp
        .call("Browser.getWindowForTarget", json!({"targetId": popup}), None)
        .await["windowId"]
        .clone();
    let same = opener_window == popup_window;
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    same
}

#[tokio::test]
async fn popups_open_as_tabs_of_the_openers_window_when_asked() {
    let server = TestServer::start().await;
    assert!(
        !popup_in_same_window(&server, json!({})).await,
        "a popup gets a window of its own by default"
    );
    assert!(
        popup_in_same_window(&server, json!({"browser": {"force_popups_as_tabs": {"active": true}}})).await,
        "forced, it is a tab of the opener's window"
    );
    server.assert_no_browsers_left().await;
    server.stop().await;
}

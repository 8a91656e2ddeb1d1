//! Sessions end to end: real server, real Chromium, a local test page, CDP
//! through our proxy.

use std::time::Duration;

use crate::support::{refused_upgrade_status, serve_test_page, wait_until, Cdp, TestServer, TEST_KEY, TEST_PAGE_TITLE};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_session_is_driven_over_the_proxy_and_leaves_nothing_behind() {
    let page = serve_test_page().await;
    let server = TestServer::start().await;
    let session = server.create_session(json!({"session": {"tags": ["lifecycle"]}})).await;
    let session_id = text(&session["id"]).to_owned();
    assert!(text(&session["cdp_url"]).starts_with("ws://127.0.0.1:"));
    assert!(
        !text(&session["cdp_url"]).contains(TEST_KEY),
        "the cdp_url must not carry the API key"
    );
    assert!(text(&session["live_view_url"]).starts_with("http://127.0.0.1:"));
    assert!(server.browsers_dir().join(session_id.replace('-', "")).is_dir());

    // Two clients at once: one by token, one the SDK's way.
    let mut first = Cdp::connect(text(&session["cdp_url"])).await;
    let page_session = first.open_page(&format!("{page}/")).await;
    assert_eq!(
        first.evaluate(&page_session, "document.title").await,
        json!(TEST_PAGE_TITLE)
    );
    let sdk_url = format!(
        "{}/?apiKey={TEST_KEY}&sessionId={session_id}",
        server.base.replace("http://", "ws://")
    );
    let mut second = Cdp::connect(&sdk_url).await;
    let targets = second.call("Target.getTargets", json!({}), None).await;
    let titles: Vec<&str> = targets["targetInfos"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|info| text(&info["title"]))
        .collect();
    assert!(titles.contains(&TEST_PAGE_TITLE), "{titles:?}");

    let (status, data) = server.session_status(&session_id).await;
    assert_eq!(status, "running");
    assert_eq!(data["tags"], json!({"lifecycle": true}));
    let (code, pages) = server.get(&format!("/v1/sessions/{session_id}/pages")).await;
    assert_eq!(code, StatusCode::OK);
    assert!(
        pages["data"]["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|item| item["title"] == json!(TEST_PAGE_TITLE)),
        "{pages}"
    );

    let (code, answer) = server.delete(&format!("/v1/sessions/{session_id}")).await;
    assert_eq!((code, answer), (StatusCode::OK, json!({"data": {"status": "ok"}})));
    first.closed(Duration::from_secs(10)).await;
    second.closed(Duration::from_secs(10)).await;
    server.assert_no_browsers_left().await;
    let (status, data) = server.session_status(&session_id).await;
    assert_eq!(status, "completed");
    assert!(text(&data["end_reason"]).contains("DELETE"), "{data}");

    // Ending it again is fine; connecting to it is not.
    let (code, _) = server.delete(&format!("/v1/sessions/{session_id}")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(refused_upgrade_status(text(&session["cdp_url"])).await, 404);
    server.stop().await;
}

#[tokio::test]
async fn async_start_becomes_ready_and_reports_its_session() {
    let server = TestServer::start().await;
    let (code, accepted) = server
        .post(
            "/v1/sessions/async",
            json!({"browser": {"viewport": {"width": 800, "height": 600}}}),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{accepted}");
    assert_eq!(accepted["data"]["status"], json!("pending"));
    assert_eq!(accepted["data"]["session_id"], Value::Null);
    let request_id = text(&accepted["data"]["request_id"]).to_owned();

    let path = format!("/v1/sessions/async/{request_id}/status");
    let mut ready = Value::Null;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        let (code, answer) = server.get(&path).await;
        assert_eq!(code, StatusCode::OK, "{answer}");
        let status = text(&answer["data"]["status"]).to_owned();
        assert!(
            ["pending", "processing", "ready"].contains(&status.as_str()),
            "{answer}"
        );
        if status == "ready" {
            ready = answer["data"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(ready["progress"]["current_phase"], json!("ready"), "{ready}");
    let item = &ready["session"];
    assert_eq!(item["status"], json!("completed"));
    assert_eq!(item["retry_count"], json!(0));

    // The viewport asked for is the one pages get, on the first tab and new ones.
    let mut cdp = Cdp::connect(text(&item["cdp_url"])).await;
    let page = cdp.open_page("about:blank").await;
    assert_eq!(
        cdp.evaluate(&page, "[innerWidth, innerHeight]").await,
        json!([800, 600])
    );
    cdp.close().await;

    let (code, _) = server.delete("/v1/sessions/all").await;
    assert_eq!(code, StatusCode::OK);
    let (_, answer) = server.get(&path).await;
    assert_eq!(answer["data"]["status"], json!("completed"), "{answer}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Every client of a browser has its own browser session on the server's
/// DevTools pipe: its command ids, the page sessions it attached and the
/// contexts it made to go with it are its own, as on Chromium's own endpoint.
#[tokio::test]
async fn clients_of_one_browser_keep_their_own_ids_sessions_and_contexts() {
    let page = serve_test_page().await;
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let url = text(&session["cdp_url"]);
    let (mut a, mut b) = (Cdp::connect(url).await, Cdp::connect(url).await);
    let page_a = a.open_page(&format!("{page}/")).await;
    let page_b = b.open_page(&format!("{page}/")).await;
    // Both count their ids from 1: the same ids, in flight at once.
    let (mark_a, mark_b) = tokio::join!(
        a.evaluate(&page_a, "window.mark = 'a'"),
        b.evaluate(&page_b, "window.mark = 'b'")
    );
    assert_eq!((mark_a, mark_b), (json!("a"), json!("b")));
    let refused = b
        .answer("Runtime.evaluate", json!({"expression": "window.mark"}), Some(&page_a))
        .await;
    assert_eq!(refused["error"]["code"], json!(-32001), "{refused}");

    let created = a
        .call("Target.createBrowserContext", json!({"disposeOnDetach": true}), None)
        .await;
    let context = text(&created["browserContextId"]).to_owned();
    let contexts = |answer: Value| -> Vec<String> {
        answer["browserContextIds"]
            .as_array()
            .map(|ids| ids.iter().map(|id| text(id).to_owned()).collect())
            .unwrap_or_default()
    };
    assert!(contexts(b.call("Target.getBrowserContexts", json!({}), None).await).contains(&context));
    a.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while contexts(b.call("Target.getBrowserContexts", json!({}), None).await).contains(&context) {
        assert!(std::time::Instant::now() < deadline, "a's context outlived it");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // b goes on untouched.
    assert_eq!(b.evaluate(&page_b, "window.mark").await, json!("b"));
    b.close().await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// A script a client set to run in every new document of a page (through
/// the page's session it auto-attached, as Playwright does) goes with the
/// client: the proxy's detach of a leaving client's sessions reaches the
/// browser, and the next client's navigations run none of it.
#[tokio::test]
async fn what_a_client_set_up_in_a_page_leaves_with_it() {
    let page = serve_test_page().await;
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let url = text(&session["cdp_url"]);
    let mut opener = Cdp::connect(url).await;
    let opened = opener.open_page(&format!("{page}/")).await;
    let target = opener.call("Target.getTargetInfo", json!({}), Some(&opened)).await["targetInfo"]["targetId"]
        .as_str()
        .expect("target id")
        .to_owned();
    // As Playwright does: the page's session comes from auto-attaching.
    let mut first = Cdp::connect(url).await;
    first
        .call(
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": false, "flatten": true}),
            None,
        )
        .await;
    let page_session = first
        .passed_over
        .iter()
        .filter_map(|text| serde_json::from_str::<Value>(text).ok())
        .find(|event| {
            event["method"] == "Target.attachedToTarget" && event["params"]["targetInfo"]["targetId"] == json!(target)
        })
        .and_then(|event| event["params"]["sessionId"].as_str().map(str::to_owned))
        .expect("the page auto-attached");
    first.call("Page.enable", json!({}), Some(&page_session)).await;
    first
        .call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "globalThis.leftBehind = (globalThis.leftBehind || 0) + 1;"}),
            Some(&page_session),
        )
        .await;
    first
        .call(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "1", "worldName": "first client's world"}),
            Some(&page_session),
        )
        .await;
    first.call("Page.reload", json!({}), Some(&page_session)).await;
    wait_until_set(&mut first, &page_session, "globalThis.leftBehind").await;
    first.close().await;

    let mut second = Cdp::connect(url).await;
    let again = second.attach(&target).await;
    // The first client's detach reaches the browser just after it leaves.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        second.call("Page.reload", json!({}), Some(&again)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let left = second.evaluate(&again, "String(globalThis.leftBehind)").await;
        if left == json!("undefined") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first client's script still runs: {left}"
        );
    }
    second.close().await;
    opener.close().await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Waits until `expression` is not undefined in the page of `session`.
async fn wait_until_set(cdp: &mut Cdp, session: &str, expression: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cdp.evaluate(session, &format!("String({expression})")).await == json!("undefined") {
        assert!(std::time::Instant::now() < deadline, "{expression} never set");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn upgrades_with_wrong_credentials_are_refused_before_any_browser_is_touched() {
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let ws_base = server.base.replace("http://", "ws://");
    let other_key = anchorage_server::keys::create(&server.config, "other team", "test")
        .await
        .expect("key");
    let unknown = uuid_like();

    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/cdp/{session_id}?token=00ff")).await,
        401
    );
    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/cdp/{session_id}")).await,
        401
    );
    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/cdp/not-a-uuid?token=00")).await,
        404
    );
    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/?apiKey=wrong-key&sessionId={session_id}")).await,
        401
    );
    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/?apiKey={TEST_KEY}&sessionId={unknown}")).await,
        404
    );
    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/?apiKey={TEST_KEY}&sessionId=garbage")).await,
        404
    );
    // Another team's key cannot reach this session, and cannot learn it exists.
    assert_eq!(
        refused_upgrade_status(&format!("{ws_base}/?apiKey={other_key}&sessionId={session_id}")).await,
        404
    );
    let (code, body) = server
        .request(
            reqwest::Method::GET,
            &format!("/v1/sessions/{session_id}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(
        (code, body),
        (
            StatusCode::NOT_FOUND,
            json!({"error": {"code": 404, "message": "Session not found"}})
        )
    );

    let (status, _) = server.session_status(&session_id).await;
    assert_eq!(status, "running");
    // Shutdown ended the session and its browser: none of its processes is
    // left, and the next server on the same data dir reads it as ended.
    let data_dir = server.stop().await;
    assert!(
        anchorage_browser::leftover_browser_pids(
            &std::fs::canonicalize(data_dir.path().join("browsers")).expect("dir")
        )
        .is_empty(),
        "a browser outlived the shutdown"
    );
    let again = TestServer::start_in(data_dir, &[], |_| {}).await;
    let (status, read) = again.session_status(&session_id).await;
    assert_eq!(status, "completed", "{read}");
    again.stop().await;
}

fn uuid_like() -> String {
    "6f1c2a4e-8d1b-4c5e-9a7f-0b2c3d4e5f60".to_owned()
}

#[tokio::test]
async fn idle_timeout_waits_for_the_last_client_and_max_duration_ends_a_busy_session() {
    // One timeout minute lasts 500 ms here.
    let server = TestServer::start_with(&[], |config| config.timeout_minute = Duration::from_millis(500)).await;

    let idle = server
        .create_session(json!({"session": {"timeout": {"idle_timeout": 1, "max_duration": -1}}}))
        .await;
    let idle_id = text(&idle["id"]).to_owned();
    let mut client = Cdp::connect(text(&idle["cdp_url"])).await;
    // Connected for well over the idle limit: still running.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        client.call("Browser.getVersion", json!({}), None).await;
    }
    assert_eq!(server.session_status(&idle_id).await.0, "running");
    client.close().await;
    let ended = server
        .wait_for_status(&idle_id, "completed", Duration::from_secs(20))
        .await;
    assert!(text(&ended["end_reason"]).contains("idle_timeout"), "{ended}");

    let busy = server
        .create_session(json!({"session": {"timeout": {"idle_timeout": -1, "max_duration": 1}}}))
        .await;
    let busy_id = text(&busy["id"]).to_owned();
    let mut client = Cdp::connect(text(&busy["cdp_url"])).await;
    let ended = server
        .wait_for_status(&busy_id, "completed", Duration::from_secs(20))
        .await;
    assert!(text(&ended["end_reason"]).contains("max_duration"), "{ended}");
    client.closed(Duration::from_secs(10)).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_browser_that_dies_fails_its_session_and_frees_its_place() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "1")], |_| {}).await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let mut client = Cdp::connect(text(&session["cdp_url"])).await;
    let pid = server.main_browser_pid(&session_id).expect("browser process");
    crate::support::kill_process(pid);

    let failed = server
        .wait_for_status(&session_id, "failed", Duration::from_secs(20))
        .await;
    assert!(text(&failed["end_reason"]).contains("died"), "{failed}");
    client.closed(Duration::from_secs(10)).await;
    server.assert_no_browsers_left().await;

    // The only place is free again.
    let next = server.create_session(json!({})).await;
    assert_eq!(server.session_status(text(&next["id"])).await.0, "running");
    server.stop().await;
}

#[tokio::test]
async fn a_full_server_queues_starts_until_a_browser_is_freed() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_SESSIONS", "1")], |_| {}).await;
    let first = server.create_session(json!({})).await;
    let (_, accepted) = server.post("/v1/sessions/async", json!({})).await;
    let path = format!("/v1/sessions/async/{}/status", text(&accepted["data"]["request_id"]));
    // Once the queue has looked at it, it has (rightly) not started it.
    server.admission_settled().await;
    let (_, waiting) = server.get(&path).await;
    assert_eq!(waiting["data"]["status"], json!("pending"), "{waiting}");
    assert_eq!(waiting["data"]["progress"]["current_phase"], json!("queued"));
    assert_eq!(
        server
            .browser_pids()
            .iter()
            .filter(|pid| server.main_browser_pid_is(**pid))
            .count(),
        1
    );

    server.delete(&format!("/v1/sessions/{}", text(&first["id"]))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, answer) = server.get(&path).await;
        if answer["data"]["status"] == json!("ready") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "queued start never ran: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn lists_filter_by_tags_status_and_page() {
    let server = TestServer::start().await;
    let tagged = server
        .create_session(json!({"session": {"tags": ["alpha", "shared"]}}))
        .await;
    let other = server.create_session(json!({"session": {"tags": ["shared"]}})).await;
    server.delete(&format!("/v1/sessions/{}", text(&other["id"]))).await;

    let (code, live) = server.get("/v1/sessions/all/status").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(live["data"]["count"], json!(1), "{live}");
    assert_eq!(live["data"]["items"][0]["session_id"], tagged["id"]);
    let (_, by_tag) = server.get("/v1/sessions/all/status?tags=alpha,shared").await;
    assert_eq!(by_tag["data"]["count"], json!(1));
    let (_, none) = server.get("/v1/sessions/all/status?tags=missing").await;
    assert_eq!(none["data"]["count"], json!(0));

    let (code, history) = server.get("/v1/sessions?limit=10&sort_order=asc").await;
    assert_eq!(code, StatusCode::OK, "{history}");
    assert_eq!(history["data"]["total"], json!(2));
    assert_eq!(history["data"]["total_pages"], json!(1));
    assert_eq!(history["data"]["sessions"][0]["id"], tagged["id"]);
    assert_eq!(
        history["data"]["sessions"][0]["api_key_name"],
        json!("ANCHORAGE_API_KEY")
    );
    let (_, completed) = server.get("/v1/sessions?status=completed&tags=shared").await;
    assert_eq!(completed["data"]["total"], json!(1));
    assert_eq!(completed["data"]["sessions"][0]["id"], other["id"]);
    let (_, later) = server.get("/v1/sessions?created_from=2999-01-01T00:00:00Z").await;
    assert_eq!(later["data"]["total"], json!(0));
    let (_, page_two) = server.get("/v1/sessions?page=2&limit=10").await;
    assert_eq!(page_two["data"]["sessions"], json!([]));
    server.stop().await;
}

#[tokio::test]
async fn a_sessions_tags_read_as_an_object_in_its_answer_and_change_through_their_own_route() {
    let server = TestServer::start().await;
    let session = server
        .create_session(json!({"session": {"tags": ["zeta", "alpha", "zeta"]}}))
        .await;
    let id = text(&session["id"]).to_owned();
    // GET /v1/sessions/{id}: an object, in the order given, repeats dropped
    // (the raw text shows the order: a JSON object has none of its own).
    let (_, raw, bytes) = server
        .get_url_for_bytes(&format!("{}/v1/sessions/{id}", server.base))
        .await;
    let body = String::from_utf8_lossy(&bytes);
    assert!(body.contains(r#""tags":{"zeta":true,"alpha":true}"#), "{raw} {body}");
    let (code, tags) = server.get(&format!("/v1/sessions/{id}/tags")).await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(tags, json!({"data": {"session_id": id, "tags": ["zeta", "alpha"]}}));

    // Replaced; the listings' filters follow.
    let path = format!("/v1/sessions/{id}/tags");
    let (code, put) = server
        .request(
            reqwest::Method::PUT,
            &path,
            Some(crate::support::TEST_KEY),
            Some(json!({"tags": ["beta", "beta", "gamma"]})),
        )
        .await;
    assert_eq!(code, StatusCode::OK, "{put}");
    assert_eq!(put["data"]["tags"], json!(["beta", "gamma"]));
    let (_, listed) = server.get("/v1/sessions/all/status?tags=beta").await;
    assert_eq!(listed["data"]["count"], json!(1), "{listed}");
    assert_eq!(listed["data"]["items"][0]["tags"], json!(["beta", "gamma"]));
    let (_, old) = server.get("/v1/sessions/all/status?tags=alpha").await;
    assert_eq!(old["data"]["count"], json!(0), "{old}");

    // Bad bodies change nothing.
    for (body, needle) in [
        (json!({"tags": "beta"}), "array of strings"),
        (json!({"tags": [1]}), "array of strings"),
        (json!({"tags": [""]}), "1 to 256"),
        (json!({"tags": vec!["x"; 101]}), "at most 100"),
        (json!({"labels": []}), "labels is not a field"),
        (json!({}), "tags is required"),
        (json!([]), "JSON object"),
    ] {
        let (code, error) = server
            .request(
                reqwest::Method::PUT,
                &path,
                Some(crate::support::TEST_KEY),
                Some(body.clone()),
            )
            .await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert!(text(&error["error"]["message"]).contains(needle), "{body}: {error}");
    }
    assert_eq!(server.get(&path).await.1["data"]["tags"], json!(["beta", "gamma"]));

    // Another team cannot read or change them; an unknown session is 404.
    let other = anchorage_server::keys::create(&server.config, "others", "test")
        .await
        .expect("key");
    let (code, _) = server
        .request(reqwest::Method::PUT, &path, Some(&other), Some(json!({"tags": []})))
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = server.request(reqwest::Method::GET, &path, Some(&other), None).await;
    assert_eq!(code, StatusCode::NOT_FOUND);
    let (code, _) = server
        .get("/v1/sessions/6f1c2a4e-8d1b-4c5e-9a7f-0b2c3d4e5f60/tags")
        .await;
    assert_eq!(code, StatusCode::NOT_FOUND);

    // Removed, also once the session has ended.
    server.delete(&format!("/v1/sessions/{id}")).await;
    let (code, cleared) = server.delete(&path).await;
    assert_eq!((code, cleared["data"]["tags"].clone()), (StatusCode::OK, json!([])));
    let (_, read) = server.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(read["data"]["tags"], json!({}));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_ends_every_browser_and_records_why() {
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let browsers_dir = server.browsers_dir();
    let data_dir = server.stop().await;
    wait_until("browsers gone after shutdown", Duration::from_secs(10), || {
        anchorage_browser::leftover_browser_pids(&browsers_dir).is_empty()
    })
    .await;

    let again = TestServer::start_in(data_dir, &[], |_| {}).await;
    let (status, data) = again.session_status(&session_id).await;
    assert_eq!(status, "completed", "{data}");
    assert!(text(&data["end_reason"]).contains("shut down"), "{data}");
    again.stop().await;
}

#[tokio::test]
async fn frames_far_over_the_usual_limits_pass_both_ways_unchanged() {
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.open_page("about:blank").await;
    // 24 MiB up (over tungstenite's 16 MiB default frame limit) ...
    let big = "a".repeat(24 * 1024 * 1024);
    let length = cdp.evaluate(&page, &format!("'{big}'.length")).await;
    assert_eq!(length, json!(big.len()));
    // ... and 40 MiB down, byte for byte.
    let echoed = cdp.evaluate(&page, "'b'.repeat(40 * 1024 * 1024) + 'é'").await;
    let echoed = echoed.as_str().expect("a string");
    assert_eq!(echoed.len(), 40 * 1024 * 1024 + 'é'.len_utf8());
    assert!(echoed.ends_with('é'));
    cdp.close().await;
    server.stop().await;
}

#[tokio::test]
async fn ending_a_session_while_it_launches_leaves_no_browser() {
    let (server, hold) = crate::support::LaunchHold::server().await;
    let held = crate::support::LaunchHold::held_start();
    for round in 1..=2 {
        let (_, accepted) = server.post("/v1/sessions/async", held.clone()).await;
        let path = format!("/v1/sessions/async/{}/status", text(&accepted["data"]["request_id"]));
        // The launch has certainly begun and cannot finish: it is held.
        hold.wait_for(round).await;
        let (_, answer) = server.get(&path).await;
        assert_eq!(answer["data"]["status"], json!("processing"), "{answer}");
        let session_id = text(&answer["data"]["session"]["session_id"]).to_owned();
        assert_eq!(server.session_status(&session_id).await.0, "starting");
        assert_eq!(server.browser_pids().len(), 1, "the held launch is a process");
        let (code, _) = server.delete(&format!("/v1/sessions/{session_id}")).await;
        assert_eq!(code, StatusCode::OK);
        if round == 2 {
            // A launch let go right after the end comes to nothing either.
            hold.release();
        }
        // Killed with the DELETE; gone moments later.
        wait_until("no browser left", Duration::from_secs(10), || {
            server.browser_pids().is_empty()
        })
        .await;
        let (_, answer) = server.get(&path).await;
        assert_eq!(answer["data"]["status"], json!("cancelled"), "{answer}");
        assert_eq!(server.session_status(&session_id).await.0, "completed");
    }
    server.admission_settled().await;
    assert!(server.browser_pids().is_empty());
    server.stop().await;
}

/// The value of one sample line of `/metrics`.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
}

#[tokio::test]
async fn health_readiness_and_metrics_that_follow_the_sessions() {
    let server = TestServer::start().await;
    let get_text = |path: &'static str| {
        let http = server.http.clone();
        let url = format!("{}{path}", server.base);
        async move {
            let response = http.get(url).send().await.expect("sent");
            (response.status(), response.text().await.expect("body"))
        }
    };
    let (code, body) = get_text("/healthz").await;
    assert_eq!((code, body.as_str()), (StatusCode::OK, r#"{"data":{"status":"ok"}}"#));
    let (code, _) = get_text("/readyz").await;
    assert_eq!(code, StatusCode::OK);

    let (code, before) = get_text("/metrics").await;
    assert_eq!(code, StatusCode::OK);
    // Prometheus text: every line is a comment or `name{labels} number`.
    for line in before.lines().filter(|line| !line.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(series.starts_with("anchorage_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    let session = server.create_session(json!({})).await;
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    cdp.call("Browser.getVersion", json!({}), None).await;
    let (_, during) = get_text("/metrics").await;
    assert_eq!(metric(&during, "anchorage_sessions_running"), 1.0);
    assert_eq!(metric(&during, "anchorage_cdp_connections"), 1.0);
    assert_eq!(
        metric(&during, "anchorage_launches_total"),
        metric(&before, "anchorage_launches_total") + 1.0
    );
    assert_eq!(metric(&during, "anchorage_launch_duration_seconds_count"), 1.0);
    assert!(metric(&during, "anchorage_proxied_bytes_total") > 0.0);
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, after) = get_text("/metrics").await;
        if metric(&after, "anchorage_sessions_running") == 0.0 {
            assert_eq!(metric(&after, "anchorage_sessions_ended_total"), 1.0);
            // Counted once, also after the browser is fully gone.
            server.assert_no_browsers_left().await;
            let (_, settled) = get_text("/metrics").await;
            assert_eq!(metric(&settled, "anchorage_sessions_ended_total"), 1.0);
            assert_eq!(metric(&after, "anchorage_cdp_connections"), 0.0);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{after}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn the_usage_history_counts_the_teams_sessions_by_period() {
    let server = TestServer::start().await;
    let ended = server.create_session(json!({})).await;
    let running = server.create_session(json!({})).await;
    server
        .delete(&format!("/v1/sessions/{}", ended["id"].as_str().unwrap_or_default()))
        .await;

    let (status, history) = server.get("/v1/sessions/history?granularity=day").await;
    assert_eq!(status, StatusCode::OK, "{history}");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(history["data"].as_array().map(Vec::len), Some(1), "{history}");
    assert_eq!(history["data"][0]["date"], json!(today));
    assert_eq!(history["data"][0]["session_count"], json!(2.0));
    assert!(
        history["data"][0]["session_hours"]
            .as_f64()
            .is_some_and(|hours| hours > 0.0),
        "{history}"
    );
    assert_eq!(history["summary"]["total_sessions"], json!(2.0));
    assert_eq!(
        history["pagination"],
        json!({"current_page": 1, "total_pages": 1, "total_records": 1, "has_next": false, "has_prev": false})
    );
    // Only what was asked; metrics this server does not track are left out, not made up.
    let (_, counted) = server
        .get("/v1/sessions/history?metrics=session_count,credits_used")
        .await;
    assert_eq!(
        counted["data"][0],
        json!({"date": today, "session_count": 2.0}),
        "{counted}"
    );
    // A range without sessions has no periods.
    let (_, empty) = server
        .get("/v1/sessions/history?from_date=2020-01-01T00:00:00Z&to_date=2020-02-01T00:00:00Z")
        .await;
    assert_eq!(empty["data"], json!([]), "{empty}");
    for (query, wanted) in [
        ("granularity=year", "granularity"),
        ("metrics=bogus", "metrics"),
        (
            "from_date=2026-02-01T00:00:00Z&to_date=2026-01-01T00:00:00Z",
            "from_date",
        ),
        ("to_date=tomorrow", "to_date"),
        ("limit=0", "limit"),
    ] {
        let (status, answer) = server.get(&format!("/v1/sessions/history?{query}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {answer}");
        assert!(
            answer["error"]["message"].as_str().unwrap_or_default().contains(wanted),
            "{query}: {answer}"
        );
    }
    server
        .delete(&format!("/v1/sessions/{}", running["id"].as_str().unwrap_or_default()))
        .await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

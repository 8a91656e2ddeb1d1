//! Context sessions: several sessions as browser contexts of one host
//! Chromium, each client kept inside its own session by the proxy. The
//! security tests connect as one session and try to reach another through
//! every way found (ARCHITECTURE.md, "Context sessions"), then check the
//! other session is untouched.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{kill_process, serve_test_page, Cdp, TestServer};

const CONTEXT: &[(&str, &str)] = &[("ANCHORAGE_SESSION_ISOLATION", "context")];

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The pages a client sees (the browser's own UI targets of its window
/// aside, as on a browser of its own).
async fn target_ids(cdp: &mut Cdp) -> Vec<String> {
    targets_of(cdp, Some("page")).await
}

/// Every target a client sees, of any type.
async fn all_target_ids(cdp: &mut Cdp) -> Vec<String> {
    targets_of(cdp, None).await
}

/// The ids of the targets a client sees, of one type or of any.
async fn targets_of(cdp: &mut Cdp, kind: Option<&str>) -> Vec<String> {
    let targets = cdp.call("Target.getTargets", json!({}), None).await;
    targets["targetInfos"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|info| kind.is_none_or(|kind| info["type"] == kind))
        .map(|info| text(&info["targetId"]).to_owned())
        .collect()
}

/// The error message of a command that must be refused.
async fn refused(cdp: &mut Cdp, method: &str, params: Value, session: Option<&str>) -> String {
    let answer = cdp.answer(method, params.clone(), session).await;
    assert!(
        answer.get("error").is_some(),
        "{method} {params} was not refused: {answer}"
    );
    text(&answer["error"]["message"]).to_owned()
}

#[tokio::test]
async fn context_sessions_share_a_host_and_each_client_sees_only_its_own() {
    let server = TestServer::start_with(CONTEXT, |_| {}).await;
    let page = serve_test_page().await;
    let one = server.create_session(json!({"session": {"initial_url": page}})).await;
    let two = server
        .create_session(json!({"browser": {"viewport": {"width": 800, "height": 600}}}))
        .await;
    // One Chromium holds both.
    assert_eq!(server.main_browser_count(), 1);
    // No window of it keeps a WebUI renderer for the address bar's popups
    // (one per context, the largest share of a context's memory).
    let processes = server.browser_group_command_lines();
    assert!(
        processes.iter().any(|line| line.contains("--type=renderer")),
        "{processes:?}"
    );
    let webui: Vec<_> = processes
        .iter()
        .filter(|line| line.contains("--top-chrome-webui"))
        .collect();
    assert!(webui.is_empty(), "{webui:?}");
    assert_eq!(server.metric("anchorage_host_browsers").await, 1.0);
    assert_eq!(server.metric("anchorage_context_sessions").await, 2.0);

    let mut first = Cdp::connect(text(&one["cdp_url"])).await;
    let mut second = Cdp::connect(text(&two["cdp_url"])).await;
    let (mine, theirs) = (target_ids(&mut first).await, target_ids(&mut second).await);
    assert_eq!((mine.len(), theirs.len()), (1, 1), "{mine:?} {theirs:?}");
    assert_ne!(mine, theirs);
    // The session's own context is the default one; no other is listed.
    let contexts = first.call("Target.getBrowserContexts", json!({}), None).await;
    assert_eq!(contexts["browserContextIds"], json!([]), "{contexts}");
    let own_context = text(&contexts["defaultBrowserContextId"]).to_owned();
    let other = second.call("Target.getBrowserContexts", json!({}), None).await;
    assert_ne!(text(&other["defaultBrowserContextId"]), own_context);

    // Each page is its own session's: address, size, cookies, storage.
    let session = first.attach_newest_page().await;
    assert!(text(&first.evaluate(&session, "location.href").await).starts_with(&page));
    // The default viewport, as a browser session has it.
    assert_eq!(
        first.evaluate(&session, "[innerWidth, innerHeight]").await,
        json!([1440, 900])
    );
    first
        .evaluate(
            &session,
            "document.cookie = 'who=first'; localStorage.setItem('who', 'first'); 1",
        )
        .await;
    let session_two = second.attach_newest_page().await;
    assert_eq!(
        second.evaluate(&session_two, "[innerWidth, innerHeight]").await,
        json!([800, 600])
    );
    let cookies = second.call("Storage.getCookies", json!({}), None).await;
    assert_eq!(cookies["cookies"], json!([]), "{cookies}");
    let cookies = first.call("Storage.getCookies", json!({}), None).await;
    assert_eq!(cookies["cookies"][0]["name"], "who", "{cookies}");
    second
        .call("Page.navigate", json!({"url": page}), Some(&session_two))
        .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = second
            .evaluate(&session_two, "location.href + ' ' + document.readyState")
            .await;
        if text(&state).starts_with(&page) && text(&state).ends_with(" complete") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the second session's page did not load: {state}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = second
        .evaluate(&session_two, "[document.cookie, localStorage.getItem('who')]")
        .await;
    assert_eq!(stored, json!(["", null]));

    // A page a client opens lands in its own context; a context it makes
    // is listed to it only.
    let created = second
        .call("Target.createTarget", json!({"url": "about:blank"}), None)
        .await;
    let made = second.call("Target.createBrowserContext", json!({}), None).await;
    assert_eq!(target_ids(&mut second).await.len(), 2);
    assert_eq!(target_ids(&mut first).await.len(), 1);
    let listed = second.call("Target.getBrowserContexts", json!({}), None).await;
    assert_eq!(listed["browserContextIds"], json!([made["browserContextId"]]));
    let listed = first.call("Target.getBrowserContexts", json!({}), None).await;
    assert_eq!(listed["browserContextIds"], json!([]));
    second
        .call("Target.closeTarget", json!({"targetId": created["targetId"]}), None)
        .await;

    // A one-shot tool without a session runs in a context of the team's
    // host: no browser is launched for it.
    let launches = server.metric("anchorage_launches_total").await;
    let (status, kind, image) = server
        .post_for_bytes("/v1/tools/screenshot", json!({"url": page}))
        .await;
    assert_eq!(status, StatusCode::OK, "{kind}");
    assert!(image.starts_with(b"\x89PNG"), "{kind}");
    assert_eq!(server.metric("anchorage_launches_total").await, launches);
    assert_eq!(server.main_browser_count(), 1);

    // A profile is a browser's directory: a context session cannot be one's source.
    let (status, refused) = server
        .post(
            "/v1/profiles",
            json!({"name": "from-a-context", "source": "session", "session_id": one["id"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        text(&refused["error"]["message"]).contains("context session"),
        "{refused}"
    );

    first.close().await;
    second.close().await;
    for session in [&one, &two] {
        let (status, _) = server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
        assert_eq!(status, StatusCode::OK);
    }
    // The last session out retires the host.
    server.assert_no_browsers_left().await;
    assert_eq!(server.metric("anchorage_host_browsers").await, 0.0);
    server.stop().await;
}

#[tokio::test]
async fn a_context_sessions_client_cannot_reach_another_session_or_the_host() {
    let server = TestServer::start_with(CONTEXT, |_| {}).await;
    let page = serve_test_page().await;
    let victim = server.create_session(json!({"session": {"initial_url": page}})).await;
    let intruder = server.create_session(json!({})).await;
    assert_eq!(server.main_browser_count(), 1);
    let host_pid = server.browser_pids()[0];

    let mut own = Cdp::connect(text(&victim["cdp_url"])).await;
    let victim_page = target_ids(&mut own).await[0].clone();
    let victim_session = own.attach_newest_page().await;
    let victim_context =
        text(&own.call("Target.getBrowserContexts", json!({}), None).await["defaultBrowserContextId"]).to_owned();
    own.evaluate(&victim_session, "document.cookie = 'secret=1'; 1").await;

    let mut cdp = Cdp::connect(text(&intruder["cdp_url"])).await;
    // Watching: discovery and auto-attach never show the victim's targets,
    // not even a page opened after they were turned on.
    cdp.call("Target.setDiscoverTargets", json!({"discover": true}), None)
        .await;
    cdp.call(
        "Target.setAutoAttach",
        json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
        None,
    )
    .await;
    let opened = own
        .call("Target.createTarget", json!({"url": "about:blank"}), None)
        .await;
    let victim_new_page = text(&opened["targetId"]).to_owned();
    assert!(!target_ids(&mut cdp).await.contains(&victim_page));
    // The host blocks ads (the default) with an extension whose worker
    // could change the rules of every context: not shown, not reachable.
    assert!(targets_of(&mut cdp, Some("service_worker")).await.is_empty());

    let by_target = |method: &str| (method.to_owned(), json!({"targetId": victim_page, "flatten": true}));
    let mut attempts: Vec<(String, Value)> = [
        "Target.attachToTarget",
        "Target.closeTarget",
        "Target.activateTarget",
        "Target.getTargetInfo",
        "Target.autoAttachRelated",
        "Browser.getWindowForTarget",
        "Target.exposeDevToolsProtocol",
        "Target.sendMessageToTarget",
        "Target.openDevTools",
    ]
    .iter()
    .map(|method| by_target(method))
    .collect();
    for method in [
        "Target.createTarget",
        "Storage.getCookies",
        "Storage.setCookies",
        "Storage.clearCookies",
        "Target.disposeBrowserContext",
        "Browser.setDownloadBehavior",
        "Browser.grantPermissions",
        "Browser.resetPermissions",
    ] {
        attempts.push((
            method.to_owned(),
            json!({
                "browserContextId": victim_context, "url": "about:blank", "cookies": [],
                "behavior": "allow", "downloadPath": "/tmp", "permissions": ["geolocation"]
            }),
        ));
    }
    for method in [
        "Tracing.start",
        "Tracing.getCategories",
        "Browser.crash",
        "Browser.crashGpuProcess",
        "Browser.getBrowserCommandLine",
        "Browser.getHistograms",
        "SystemInfo.getProcessInfo",
        "Memory.getBrowserSamplingProfile",
        "Browser.setWindowBounds",
        "IO.read",
        "Fetch.enable",
        "Network.enable",
        "Page.navigate",
    ] {
        attempts.push((method.to_owned(), json!({"windowId": 1, "bounds": {}, "handle": "1"})));
    }
    // Non-flat sessions (their messages would bypass the routing).
    attempts.push((
        "Target.setAutoAttach".to_owned(),
        json!({"autoAttach": true, "waitForDebuggerOnStart": false}),
    ));
    for (method, params) in &attempts {
        refused(&mut cdp, method, params.clone(), None).await;
    }
    // The victim's CDP session id, named by another connection.
    let message = refused(
        &mut cdp,
        "Runtime.evaluate",
        json!({"expression": "document.cookie"}),
        Some(&victim_session),
    )
    .await;
    assert!(message.contains("not found"), "{message}");
    // Its own page may not open the browser's own pages (they list every
    // context's sites and processes).
    let own_page = cdp.attach_newest_page().await;
    for url in [
        "chrome://process-internals",
        "chrome://version",
        "devtools://devtools/bundled/inspector.html",
        // The host's ad blocking extension (its id is not shown: any id).
        "chrome-extension://abcdefghijklmnopabcdefghijklmnop/worker.js",
    ] {
        refused(&mut cdp, "Page.navigate", json!({"url": url}), Some(&own_page)).await;
        refused(&mut cdp, "Target.createTarget", json!({"url": url}), None).await;
    }
    // Its own tracing through its page session is refused too (a trace
    // records every process).
    refused(&mut cdp, "Tracing.start", json!({}), Some(&own_page)).await;
    // The session's own context cannot be disposed from inside.
    let own_context =
        text(&cdp.call("Target.getBrowserContexts", json!({}), None).await["defaultBrowserContextId"]).to_owned();
    refused(
        &mut cdp,
        "Target.disposeBrowserContext",
        json!({"browserContextId": own_context}),
        None,
    )
    .await;

    // Nothing of the victim's ever reached the intruder.
    let seen = all_target_ids(&mut cdp).await;
    assert!(
        !seen.contains(&victim_page) && !seen.contains(&victim_new_page),
        "{seen:?}"
    );
    // Not in any event either (discovery and auto-attach were on all along;
    // its own page's events prove events did arrive).
    assert!(!cdp.passed_over.is_empty());
    for message in &cdp.passed_over {
        for secret in [&victim_page, &victim_new_page, &victim_context, &victim_session] {
            assert!(
                !message.contains(secret.as_str()),
                "{secret} reached the intruder: {message}"
            );
        }
    }
    let cookies = cdp.call("Storage.getCookies", json!({}), None).await;
    assert_eq!(cookies["cookies"], json!([]));
    // Nor through the REST routes on tabs: the victim's page is no page of
    // the intruder's session, to switch to or close.
    let intruder_id = text(&intruder["id"]);
    let (status, answer) = server
        .post(
            &format!("/v1/sessions/{intruder_id}/pages/{victim_page}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (status, answer) = server
        .delete(&format!("/v1/sessions/{intruder_id}/pages/{victim_page}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
    let (_, listed) = server.get(&format!("/v1/sessions/{intruder_id}/pages")).await;
    assert!(!listed.to_string().contains(&victim_page), "{listed}");

    // `Browser.close` ends the intruder's session only.
    let closed = cdp.answer("Browser.close", json!({}), None).await;
    assert!(closed.get("error").is_none(), "{closed}");
    cdp.closed(Duration::from_secs(10)).await;
    server
        .wait_for_status(text(&intruder["id"]), "completed", Duration::from_secs(10))
        .await;
    // The victim and the host are untouched.
    assert_eq!(server.browser_pids().first(), Some(&host_pid));
    assert_eq!(
        own.evaluate(&victim_session, "document.cookie").await,
        json!("secret=1")
    );
    assert_eq!(target_ids(&mut own).await.len(), 2);
    let (status, _) = server.session_status(text(&victim["id"])).await;
    assert_eq!(status, "running");

    own.close().await;
    server.delete(&format!("/v1/sessions/{}", text(&victim["id"]))).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn teams_get_hosts_of_their_own_and_a_crash_fails_only_what_it_took() {
    let server = TestServer::start_with(CONTEXT, |_| {}).await;
    let other_key = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    // The other team's host comes first: its pid is the only one then.
    let (status, theirs) = server
        .request(reqwest::Method::POST, "/v1/sessions", Some(&other_key), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{theirs}");
    let theirs = theirs["data"].clone();
    let their_host = server.browser_pids();
    assert_eq!(their_host.len(), 1);
    let ours = [
        server.create_session(json!({})).await,
        server.create_session(json!({})).await,
        server.create_session(json!({})).await,
    ];
    // Two teams, two hosts.
    assert_eq!(server.main_browser_count(), 2);

    // A renderer that crashes ends its own session, failed.
    let mut cdp = Cdp::connect(text(&ours[0]["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    cdp.send("Page.crash", json!({}), Some(&page)).await;
    let ended = server
        .wait_for_status(text(&ours[0]["id"]), "failed", Duration::from_secs(20))
        .await;
    assert!(text(&ended["end_reason"]).contains("renderer"), "{ended}");
    for session in &ours[1..] {
        assert_eq!(server.session_status(text(&session["id"])).await.0, "running");
    }

    // A host that dies fails exactly its sessions, with the reason.
    let our_host = server
        .browser_pids()
        .into_iter()
        .find(|pid| !their_host.contains(pid))
        .expect("our host");
    kill_process(our_host);
    for session in &ours[1..] {
        let ended = server
            .wait_for_status(text(&session["id"]), "failed", Duration::from_secs(20))
            .await;
        assert!(text(&ended["end_reason"]).contains("host"), "{ended}");
    }
    let (status, still) = server
        .request(
            reqwest::Method::GET,
            &format!("/v1/sessions/{}", text(&theirs["id"])),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(still["data"]["status"], "running", "{still}");
    let mut theirs_cdp = Cdp::connect(text(&theirs["cdp_url"])).await;
    let page = theirs_cdp.attach_newest_page().await;
    assert_eq!(theirs_cdp.evaluate(&page, "1 + 1").await, json!(2));
    theirs_cdp.close().await;
    server
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{}", text(&theirs["id"])),
            Some(&other_key),
            None,
        )
        .await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_pooled_browser_becomes_the_host_of_a_teams_first_context_session() {
    let server = TestServer::start_with(
        &[("ANCHORAGE_SESSION_ISOLATION", "context"), ("ANCHORAGE_POOL_SIZE", "1")],
        |_| {},
    )
    .await;
    server.wait_for_metric("anchorage_pool_browsers", 1.0).await;
    let pooled = server.browser_pids();
    assert_eq!(pooled.len(), 1);
    let session = server.create_session(json!({})).await;
    // The pooled browser hosts the session (no launch was waited for), and
    // the pool refills behind it.
    assert_eq!(server.metric("anchorage_host_browsers").await, 1.0);
    server.wait_for_metric("anchorage_pool_browsers", 1.0).await;
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    assert_eq!(cdp.evaluate(&page, "1 + 1").await, json!(2));
    let info = cdp.call("Target.getBrowserContexts", json!({}), None).await;
    assert_eq!(info["browserContextIds"], json!([]));
    cdp.close().await;
    assert!(server.browser_pids().contains(&pooled[0]), "the pooled browser went");
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    // The host goes with its last session; the refilled pool stays.
    wait_host_gone(&server, pooled[0]).await;
    server.stop().await;
}

async fn wait_host_gone(server: &TestServer, pid: u32) {
    crate::support::wait_until("the host browser is gone", Duration::from_secs(10), || {
        !server.browser_pids().contains(&pid)
    })
    .await;
    assert_eq!(server.metric("anchorage_host_browsers").await, 0.0);
}

//! Ad blocking with Debian's EasyList and EasyPrivacy and a list of the
//! test's own, against a local site whose ads come from names those lists
//! know (mapped to 127.0.0.1 by the browsers' resolver rules): blocked
//! requests never reach the site, listed elements are hidden, the content
//! loads; with `browser.adblock.active: false` everything loads. A
//! recording shows the page as the session sees it (hidden elements hidden).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{Cdp, Settings, TestServer};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The requests the site answered, as `host path`.
type Seen = Arc<Mutex<Vec<String>>>;

/// A site on 127.0.0.1 that counts what it serves. Its page is
/// `http://site.test:{port}/adpage`.
async fn serve_site() -> (u16, Seen) {
    let seen: Seen = Arc::default();
    let log = Arc::clone(&seen);
    let router = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = Arc::clone(&log);
        async move {
            let host = request
                .headers()
                .get(axum::http::header::HOST)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            let path = request.uri().path().to_owned();
            if let Ok(mut log) = log.lock() {
                log.push(format!("{host} {path}"));
            }
            let port = request
                .headers()
                .get(axum::http::header::HOST)
                .and_then(|value| value.to_str().ok())
                .and_then(|host| host.split(':').nth(1))
                .unwrap_or("80")
                .to_owned();
            use axum::response::IntoResponse;
            match path.as_str() {
                "/adpage" => axum::response::Html(format!(
                    "<!doctype html><title>ad page</title>\
                     <p id=content>first-party content</p>\
                     <div id=ad_top>an ad</div><div class=house-ad>a house ad</div>\
                     <div data-ad-module=top>an ad the browser's own sheet hides</div>\
                     <img id=banner src=/ads/banners/top.png>\
                     <img id=pixel src=http://custom-blocked.test:{port}/pixel.png>\
                     <script src=http://tracker.hbiq.net:{port}/analytics.js></script>\
                     <iframe src=http://other.test:{port}/framed></iframe>\
                     <script>addEventListener('message', (event) => {{ window.framedAd = event.data; }});</script>\
                     <script src=/app.js></script>"
                ))
                .into_response(),
                // A frame from another site (in a process of its own) with
                // an element the test's list hides there; it tells its
                // parent what its element shows.
                "/framed" => axum::response::Html(
                    "<!doctype html><div class=framed-ad>a framed ad</div><script>\
                     setInterval(() => parent.postMessage(\
                       getComputedStyle(document.querySelector('.framed-ad')).display, '*'), 50);</script>",
                )
                .into_response(),
                // A site the test's list makes an exception for, to one rule
                // of the browsers' own generic sheet.
                "/quiet" => axum::response::Html(
                    "<!doctype html><title>quiet</title><div data-ad-module=kept>kept</div>\
                     <div id=div-gpt-ad-7>an ad of another rule of the sheet</div><div id=ad_top>an ad</div>",
                )
                .into_response(),
                // A page that never finishes loading (its image never
                // comes): its classes and ids are watched all the same.
                "/endless" => axum::response::Html(
                    "<!doctype html><title>endless</title><div id=ad_top>an ad</div><img src=/stall.png>",
                )
                .into_response(),
                "/stall.png" => {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    ([(axum::http::header::CONTENT_TYPE, "image/gif")], GIF.to_vec()).into_response()
                }
                // A page covered by an element the test's own list hides.
                "/cover" => axum::response::Html(
                    "<!doctype html><title>cover</title><body style='margin:0;background:rgb(0,0,255)'>\
                     <div class=house-ad style='position:fixed;inset:0;background:rgb(255,0,0)'></div>",
                )
                .into_response(),
                "/app.js" => (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    "window.appLoaded = true;",
                )
                    .into_response(),
                "/analytics.js" => (
                    [(axum::http::header::CONTENT_TYPE, "text/javascript")],
                    "window.tracked = true;",
                )
                    .into_response(),
                _ => ([(axum::http::header::CONTENT_TYPE, "image/gif")], GIF.to_vec()).into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (port, seen)
}

/// A 1×1 GIF.
const GIF: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";

/// The settings of a server that blocks with Debian's lists and `custom`.
fn settings(custom: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("ANCHORAGE_ADBLOCK_INDEX_AHEAD", "on".to_owned()),
        // One index of the lists for the tests that share them (the test of
        // index launches has a folder of its own).
        ("ANCHORAGE_ADBLOCK_INDEX_DIR", shared_index_dir()),
        ("ANCHORAGE_ADBLOCK_EXTRA_LISTS", custom.display().to_string()),
        (
            "ANCHORAGE_HOST_RESOLVER_RULES",
            "MAP site.test 127.0.0.1, MAP other.test 127.0.0.1, MAP tracker.hbiq.net 127.0.0.1, \
             MAP custom-blocked.test 127.0.0.1, MAP quiet.test 127.0.0.1"
                .to_owned(),
        ),
    ]
}

/// The index folder the ad blocking tests share.
fn shared_index_dir() -> String {
    format!("{}/adblock-index", env!("CARGO_TARGET_TMPDIR"))
}

fn custom_list() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(
        file.path(),
        "! Title: the test's own list\n||custom-blocked.test^\nsite.test##.house-ad\nother.test##.framed-ad\nquiet.test#@#[data-ad-module]\n\
         @@||site.test^*/app.js\n",
    )
    .expect("write the list");
    file
}

/// A server that blocks with Debian's lists and `custom`, with `extra`
/// settings, once its ruleset is indexed.
async fn blocking_server(custom: &std::path::Path, extra: &[(&'static str, &str)]) -> TestServer {
    let mut pairs = settings(custom);
    pairs.extend(extra.iter().map(|(key, value)| (*key, (*value).to_owned())));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let server = TestServer::start_with(&pairs, |_| {}).await;
    wait_until_indexed_ahead(&server).await;
    server
}

/// Waits until the node's ruleset is indexed (the node begins that as it
/// starts).
async fn wait_until_indexed_ahead(server: &TestServer) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.get("/v1/adblock").await.1["data"]["indexed_ahead"] != true {
        assert!(Instant::now() < deadline, "the rules were never indexed ahead");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a page shows: which scripts ran and which elements are hidden (the
/// framed one in a frame from another site),
/// once its own script ran and the lists' CSS had time to arrive (hiding is
/// asynchronous).
async fn look(cdp: &mut Cdp, page: &str, expect_hidden: bool) -> Value {
    let probe = "JSON.stringify({app: window.appLoaded === true, tracked: window.tracked === true, \
                 ad: getComputedStyle(document.getElementById('ad_top')).display, \
                 house: getComputedStyle(document.querySelector('.house-ad')).display, \
                 content: getComputedStyle(document.getElementById('content')).display, \
                 sheet: getComputedStyle(document.querySelector('[data-ad-module]')).display, \
                 framed: window.framedAd || 'not yet'})";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = cdp.evaluate_answer(page, probe).await;
        // An evaluation with no value (it failed once in CI, the cause not
        // told) is asked again; one that lasts is shown whole in the result.
        let seen = match answer["result"]["value"].as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(seen)) => seen,
            _ => json!({"no value": answer}),
        };
        let hidden = ["ad", "house", "framed", "sheet"]
            .iter()
            .all(|key| seen[*key] == "none");
        let shown = ["ad", "house", "framed", "sheet"]
            .iter()
            .all(|key| seen[*key] == "block");
        let settled = if expect_hidden { hidden } else { shown };
        if (settled && seen["app"] == true) || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What `session` sees on the page at `url` (see [`look`]); the session is
/// ended after.
async fn session_sees(server: &TestServer, session: &Value, url: &str, expect_hidden: bool) -> Value {
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.open_page(url).await;
    let shown = look(&mut cdp, &page, expect_hidden).await;
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    shown
}

async fn check_blocking(isolation: &str, pool_size: &str) {
    let (port, seen) = serve_site().await;
    let custom = custom_list();
    let server = blocking_server(
        custom.path(),
        &[
            ("ANCHORAGE_SESSION_ISOLATION", isolation),
            ("ANCHORAGE_POOL_SIZE", pool_size),
        ],
    )
    .await;
    let url = format!("http://site.test:{port}/adpage");

    let pooled: f64 = pool_size.parse().unwrap_or(0.0);
    // The default: ads blocked, the content there.
    server.wait_for_metric("anchorage_pool_browsers", pooled).await;
    let blocked = server.create_session(json!({})).await;
    let mut cdp = Cdp::connect(text(&blocked["cdp_url"])).await;
    let page = cdp.open_page(&url).await;
    let shown = look(&mut cdp, &page, true).await;
    assert_eq!(
        shown,
        json!({"app": true, "tracked": false, "ad": "none", "house": "none", "content": "block", "framed": "none",
               "sheet": "none"}),
        "{isolation}, pool of {pool_size}"
    );
    // The page reaches neither the binding nor the script of the world that
    // hides its elements.
    assert_eq!(
        cdp.evaluate(
            &page,
            "typeof window.__anchorage_cosmetics + ' ' + typeof window.__anchorage"
        )
        .await,
        json!("undefined undefined")
    );
    // A site with an exception to a rule of the browser's own sheet: the sheet
    // is left out there, and the server sends the rest of it.
    let quiet = cdp.open_page(&format!("http://quiet.test:{port}/quiet")).await;
    let probe = "JSON.stringify([...document.querySelectorAll('div')].map((div) => getComputedStyle(div).display))";
    let expected = json!(["block", "none", "none"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = Value::Null;
    while shown != expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = cdp.evaluate_answer(&quiet, probe).await;
        shown = answer["result"]["value"]
            .as_str()
            .and_then(|value| serde_json::from_str(value).ok())
            .unwrap_or(answer);
    }
    assert_eq!(shown, expected, "{isolation}, pool of {pool_size}");
    // A page still loading gets its classes and ids watched after a while.
    let created = cdp
        .call(
            "Target.createTarget",
            json!({"url": format!("http://site.test:{port}/endless")}),
            None,
        )
        .await;
    let endless = cdp.attach(created["targetId"].as_str().expect("target id")).await;
    let probe = "getComputedStyle(document.getElementById('ad_top')).display";
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut display = Value::Null;
    while display != "none" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        display = cdp.evaluate_answer(&endless, probe).await["result"]["value"].clone();
    }
    assert_eq!(display, "none", "{isolation}, pool of {pool_size}");
    let requests = seen.lock().map(|log| log.clone()).unwrap_or_default();
    assert!(
        requests.contains(&"site.test /adpage".to_owned()) && requests.contains(&"site.test /app.js".to_owned()),
        "{requests:?}"
    );
    for ad in [
        "tracker.hbiq.net /analytics.js",
        "site.test /ads/banners/top.png",
        "custom-blocked.test /pixel.png",
    ] {
        assert!(
            !requests.iter().any(|request| request == ad),
            "{ad} reached the site: {requests:?}"
        );
    }
    cdp.close().await;
    // The three blocks counted, and only them (the test's exception that
    // matched `/app.js` is not a block).
    server
        .wait_for_metric("anchorage_adblock_blocked_requests_total", 3.0)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(server.metric("anchorage_adblock_blocked_requests_total").await, 3.0);

    // Turned off: everything loads.
    seen.lock().expect("log").clear();
    server.wait_for_metric("anchorage_pool_browsers", pooled).await;
    let open = server
        .create_session(json!({"browser": {"adblock": {"active": false}}}))
        .await;
    let mut cdp = Cdp::connect(text(&open["cdp_url"])).await;
    let page = cdp.open_page(&url).await;
    let shown = look(&mut cdp, &page, false).await;
    assert_eq!(
        shown,
        json!({"app": true, "tracked": true, "ad": "block", "house": "block", "content": "block", "framed": "block",
               "sheet": "block"}),
        "{isolation}"
    );
    // Images may still be on their way after the load of a reused page.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let requests = seen.lock().map(|log| log.clone()).unwrap_or_default();
        let all = [
            "tracker.hbiq.net /analytics.js",
            "site.test /ads/banners/top.png",
            "custom-blocked.test /pixel.png",
        ]
        .iter()
        .all(|ad| requests.iter().any(|request| request == ad));
        if all {
            break;
        }
        assert!(Instant::now() < deadline, "not everything loaded: {requests:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cdp.close().await;

    for session in [&blocked, &open] {
        server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    }
    if pooled == 0.0 {
        server.assert_no_browsers_left().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn ads_are_blocked_by_default_and_not_when_turned_off() {
    check_blocking("browser", "0").await;
}

#[tokio::test]
async fn pooled_browsers_serve_both_settings() {
    // A pooled browser blocks from the time it is pooled; a start that turns
    // blocking off gets a browser launched without it.
    check_blocking("browser", "2").await;
}

#[tokio::test]
async fn context_sessions_block_ads_too_each_as_it_asks() {
    check_blocking("context", "1").await;
}

#[tokio::test]
async fn the_node_tells_its_lists_and_bad_lists_stop_the_start_naming_them() {
    let custom = custom_list();
    let pairs = settings(custom.path());
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let server = TestServer::start_with(&pairs, |_| {}).await;
    let (status, answer) = server.get("/v1/adblock").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let data = &answer["data"];
    assert_eq!(data["active"], true);
    let titles: Vec<&str> = data["lists"]
        .as_array()
        .map(|lists| lists.iter().map(|list| text(&list["title"])).collect())
        .unwrap_or_default();
    assert_eq!(titles, ["EasyList", "EasyPrivacy", "the test's own list"], "{answer}");
    for list in data["lists"].as_array().into_iter().flatten() {
        assert!(
            list["rules"].as_u64() > Some(0) && text(&list["modified"]).len() >= 20,
            "{list}"
        );
    }
    assert!(server
        .metrics()
        .await
        .contains("anchorage_adblock_list_modified_seconds{list=\""));
    server.stop().await;

    // A list that is not there, or not text, stops the start and names it.
    let binary = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(binary.path(), b"||a.example^\n\xff\xfe\n").expect("write");
    for (list, expected) in [
        (
            "/nonexistent/own-list.txt".to_owned(),
            "/nonexistent/own-list.txt".to_owned(),
        ),
        (
            binary.path().display().to_string(),
            format!("{} is not text: line 2", binary.path().display()),
        ),
    ] {
        let data_dir = tempfile::tempdir().expect("temp dir");
        let source = Settings(HashMap::from([
            ("ANCHORAGE_LISTEN".to_owned(), "127.0.0.1:0".to_owned()),
            ("ANCHORAGE_DATA_DIR".to_owned(), data_dir.path().display().to_string()),
            ("ANCHORAGE_ADBLOCK_EXTRA_LISTS".to_owned(), list),
        ]));
        let config = anchorage_server::Config::load(&source, None).expect("config");
        let error = match anchorage_server::App::build(config, &source).await {
            Ok(_) => panic!("started with a bad list"),
            Err(error) => error.to_string(),
        };
        assert!(
            error.contains("ANCHORAGE_ADBLOCK_LISTS") && error.contains(&expected),
            "{error}"
        );
    }
}

/// What a recorded session loading a page covered by a hidden element ends
/// up showing in its video: the colour names of its frames.
async fn recorded_colours(server: &TestServer, url: &str, adblock: bool) -> Vec<&'static str> {
    let session = server
        .create_session(json!({
            "session": {"initial_url": url, "recording": {"active": true}},
            "browser": {"adblock": {"active": adblock}, "viewport": {"width": 640, "height": 400}}
        }))
        .await;
    let id = text(&session["id"]).to_owned();
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    let probe = "(() => { const cover = document.querySelector('.house-ad'); \
                 return cover ? getComputedStyle(cover).display : 'not yet'; })()";
    let wanted = if adblock { "none" } else { "block" };
    let deadline = Instant::now() + Duration::from_secs(10);
    while text(&cdp.evaluate(&page, probe).await) != wanted {
        assert!(Instant::now() < deadline, "the cover never became {wanted}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A second and a half of the page as it now is.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    crate::recordings::primary_colours(server, &id)
        .await
        .into_iter()
        .filter(|name| *name != "other")
        .collect()
}

#[tokio::test]
async fn recordings_show_the_page_as_the_session_sees_it() {
    let (port, _seen) = serve_site().await;
    let custom = custom_list();
    let pairs = settings(custom.path());
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let server = TestServer::start_with(&pairs, |_| {}).await;
    let url = format!("http://site.test:{port}/cover");
    // Blocked: the cover is hidden, and the video ends on the page beneath.
    let shown = recorded_colours(&server, &url, true).await;
    assert_eq!(shown.last(), Some(&"blue"), "frames: {shown:?}");
    // Not blocked: the video ends on the cover.
    let shown = recorded_colours(&server, &url, false).await;
    assert_eq!(shown.last(), Some(&"red"), "frames: {shown:?}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// A node indexes its ruleset as it starts; a start that comes before the
/// index is there waits for it and blocks requests all the same; a restart
/// on the same index folder finds the index kept and launches no browser
/// for it.
#[tokio::test]
async fn the_ruleset_is_indexed_once_and_kept_across_restarts() {
    let (port, seen) = serve_site().await;
    let custom = custom_list();
    let index = tempfile::tempdir().expect("temp dir");
    let mut pairs = settings(custom.path());
    pairs.retain(|(key, _)| *key != "ANCHORAGE_ADBLOCK_INDEX_DIR");
    pairs.push(("ANCHORAGE_ADBLOCK_INDEX_DIR", index.path().display().to_string()));
    pairs.push(("ANCHORAGE_MAX_SESSIONS", "1".to_owned()));
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(key, value)| (*key, value.as_str())).collect();
    let server = TestServer::start_with(&pairs, |_| {}).await;
    let status = server.get("/v1/adblock").await.1;
    assert_eq!(status["data"]["indexed_ahead"], false, "{status}");
    // At once, while the index launch runs (beside the one place there is).
    let session = server.create_session(json!({})).await;
    assert_eq!(server.get("/v1/adblock").await.1["data"]["indexed_ahead"], true);
    let shown = session_sees(&server, &session, &format!("http://site.test:{port}/adpage"), true).await;
    assert_eq!(
        (&shown["tracked"], &shown["ad"]),
        (&json!(false), &json!("none")),
        "{shown}"
    );
    let requests = seen.lock().map(|log| log.clone()).unwrap_or_default();
    assert!(
        !requests
            .iter()
            .any(|request| request == "tracker.hbiq.net /analytics.js"),
        "{requests:?}"
    );
    server.assert_no_browsers_left().await;
    server.stop().await;
    let kept: Vec<_> = std::fs::read_dir(index.path())
        .expect("the index folder")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .collect();
    assert_eq!(kept.len(), 1, "one index, no staging left: {kept:?}");

    // Restarted: indexed before anything launched.
    let server = TestServer::start_with(&pairs, |_| {}).await;
    let status = server.get("/v1/adblock").await.1;
    assert_eq!(status["data"]["indexed_ahead"], true, "{status}");
    assert_eq!(server.main_browser_count(), 0);
    server.stop().await;
}

/// A session started from a saved profile blocks too, also when the profile
/// had the extension installed already (such a browser starts the
/// extension's worker only for an event the worker listens to; without it,
/// the second start below never found the worker), and the node's ruleset
/// is not saved with the profile.
#[tokio::test]
async fn sessions_from_a_saved_profile_block_with_the_rules_indexed_ahead() {
    let (port, _seen) = serve_site().await;
    let custom = custom_list();
    let server = blocking_server(custom.path(), &[("ANCHORAGE_POOL_SIZE", "0")]).await;
    let (status, made) = server.post("/v1/profiles", json!({"name": "kept"})).await;
    assert_eq!(status, StatusCode::OK, "{made}");
    let body = json!({"browser": {"profile": {"name": "kept", "persist": true}}});
    for round in 1..=2 {
        let session = server.create_session(body.clone()).await;
        let shown = session_sees(&server, &session, &format!("http://site.test:{port}/adpage"), true).await;
        assert_eq!(
            (&shown["tracked"], &shown["ad"], &shown["framed"]),
            (&json!(false), &json!("none"), &json!("none")),
            "start {round} from the profile: {shown}"
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.get("/v1/profiles/kept").await.1["data"]["status"] != "ready" {
            assert!(Instant::now() < deadline, "the profile was never saved");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let saved = server.browsers_dir().with_file_name("profiles");
    assert!(saved.is_dir(), "the profile was saved under {}", saved.display());
    let mut folders = vec![saved];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().filter_map(Result::ok) {
            assert_ne!(entry.file_name(), "Subresource Filter", "saved in {}", folder.display());
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                folders.push(entry.path());
            }
        }
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// A pooled browser whose filter blocks requests cannot serve a start that
/// turns blocking off; the pool's mix follows the starts: after one such
/// start (a launch), a browser without blocking is pooled in the place of
/// one with, the next such start is served from the pool and loads every
/// ad, and a start with the default still gets a browser that blocks.
#[tokio::test]
async fn the_pools_mix_follows_starts_that_turn_blocking_off() {
    let (port, seen) = serve_site().await;
    let custom = custom_list();
    let server = blocking_server(custom.path(), &[("ANCHORAGE_POOL_SIZE", "2")]).await;
    server.wait_for_metric("anchorage_pool_browsers", 2.0).await;
    let url = format!("http://site.test:{port}/adpage");
    let off = json!({"browser": {"adblock": {"active": false}}});
    let tracker_reached = || {
        seen.lock()
            .map(|log| log.iter().any(|request| request == "tracker.hbiq.net /analytics.js"))
            .unwrap_or(false)
    };

    let first = server.create_session(off.clone()).await;
    assert!(
        server.main_browser_pid(text(&first["id"])).is_some(),
        "the first start without blocking is a launch"
    );
    server.delete(&format!("/v1/sessions/{}", text(&first["id"]))).await;
    server.wait_for_metric("anchorage_pool_browsers", 2.0).await;

    let second = server.create_session(off).await;
    assert!(
        server.main_browser_pid(text(&second["id"])).is_none(),
        "the second start without blocking is served from the pool"
    );
    let shown = session_sees(&server, &second, &url, false).await;
    assert_eq!(
        (&shown["tracked"], &shown["ad"]),
        (&json!(true), &json!("block")),
        "{shown}"
    );
    assert!(tracker_reached());

    seen.lock().expect("log").clear();
    server.wait_for_metric("anchorage_pool_browsers", 2.0).await;
    let blocked = server.create_session(json!({})).await;
    assert!(server.main_browser_pid(text(&blocked["id"])).is_none(), "from the pool");
    let shown = session_sees(&server, &blocked, &url, true).await;
    assert_eq!(
        (&shown["tracked"], &shown["ad"]),
        (&json!(false), &json!("none")),
        "{shown}"
    );
    assert!(!tracker_reached());
    server.stop().await;
}

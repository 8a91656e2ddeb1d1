//! Saved profiles with real Chromium: a cookie and a localStorage value
//! set in a session that persists into a profile are there in the next
//! session started from it, and not in one without; a profile made from a
//! running session is saved when that session ends; two sessions of one
//! profile each get a copy and the one that ends last wins; another team
//! sees none of it; bad requests change nothing.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{serve_test_page, Cdp, TestServer};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Starts a session with `body`, opens the test page in it, and attaches a
/// DevTools client to that page: the session's id, the client, the page.
async fn on_test_page(server: &TestServer, pages: &str, body: Value) -> (String, Cdp, String) {
    let session = server.create_session(body).await;
    let id = text(&session["id"]).to_owned();
    let (status, _) = server
        .post(&format!("/v1/sessions/{id}/goto"), json!({"url": format!("{pages}/")}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    (id, cdp, page)
}

/// Starts a session, opens the test page in it, and reads its cookie and
/// localStorage value; then `write` (JavaScript) runs, and the session ends.
async fn visit(server: &TestServer, pages: &str, body: Value, write: &str) -> (Value, Value) {
    let (id, mut cdp, page) = on_test_page(server, pages, body).await;
    let cookie = cdp.evaluate(&page, "document.cookie").await;
    let stored = cdp.evaluate(&page, "localStorage.getItem('visits')").await;
    if !write.is_empty() {
        cdp.evaluate(&page, write).await;
    }
    cdp.close().await;
    let (status, _) = server.delete(&format!("/v1/sessions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    (cookie, stored)
}

async fn wait_until_ready(server: &TestServer, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, profile) = server.get(&format!("/v1/profiles/{name}")).await;
        if profile["data"]["status"] == json!("ready") {
            return;
        }
        assert!(Instant::now() < deadline, "the profile was not saved: {profile}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const WRITE: &str = "document.cookie = 'login=yes; max-age=3600; path=/'; localStorage.setItem('visits', '1'); 1";

#[tokio::test]
async fn a_persisting_session_saves_its_state_and_the_next_one_starts_from_it() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let (status, made) = server.post("/v1/profiles", json!({"name": "shop login"})).await;
    assert_eq!((status, made), (StatusCode::OK, json!({"data": {"status": "success"}})));

    let with_profile = json!({"browser": {"profile": {"name": "shop login", "persist": true}}});
    let (cookie, stored) = visit(&server, &pages, with_profile.clone(), WRITE).await;
    assert_eq!((cookie, stored), (json!(""), Value::Null), "a new profile is empty");
    // From the end call's answer until the state is written, it shows
    // `saving`; a start right then waits for the save.
    let status = server.get("/v1/profiles/shop%20login").await.1["data"]["status"].clone();
    assert!(status == json!("saving") || status == json!("ready"), "{status}");

    let (cookie, stored) = visit(&server, &pages, with_profile, "").await;
    assert_eq!(
        (cookie, stored),
        (json!("login=yes"), json!("1")),
        "the next session has the state"
    );
    let (cookie, stored) = visit(&server, &pages, json!({}), "").await;
    assert_eq!(
        (cookie, stored),
        (json!(""), Value::Null),
        "a session without the profile has none of it"
    );
    server.assert_no_browsers_left().await;

    // Without persist, a session's changes are not written back.
    let read_only = json!({"browser": {"profile": {"name": "shop login"}}});
    visit(
        &server,
        &pages,
        read_only.clone(),
        "localStorage.setItem('visits', '2'); 1",
    )
    .await;
    server.assert_no_browsers_left().await;
    let (_, stored) = visit(&server, &pages, read_only, "").await;
    assert_eq!(stored, json!("1"));

    let (status, listed) = server.get("/v1/profiles").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["data"]["count"], json!(1));
    assert_eq!(listed["data"]["items"][0]["name"], json!("shop login"));
    assert_eq!(listed["data"]["items"][0]["status"], json!("ready"));

    // Deleted: gone from the list and the disk; a start naming it is refused.
    let profiles_dir = server.data_dir.path().join("profiles");
    let (status, _) = server.delete("/v1/profiles/shop%20login").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.get("/v1/profiles/shop%20login").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        std::fs::read_dir(&profiles_dir)
            .map(|entries| entries.count())
            .unwrap_or(0),
        0,
        "the profile's files are gone"
    );
    let (status, error) = server
        .post("/v1/sessions", json!({"browser": {"profile": {"name": "shop login"}}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        text(&error["error"]["message"]).contains("browser.profile.name"),
        "{error}"
    );
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Opens (making it if missing) the page's IndexedDB store of blobs.
const OPEN_DB: &str = "new Promise((ok, fail) => { const open = indexedDB.open('kept', 1); \
    open.onupgradeneeded = () => open.result.createObjectStore('blobs'); \
    open.onsuccess = () => ok(open.result); open.onerror = () => fail(open.error); })";

async fn awaited(cdp: &mut Cdp, page: &str, expression: &str) -> Value {
    let answer = cdp
        .call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            Some(page),
        )
        .await;
    answer["result"]["value"].clone()
}

#[tokio::test]
async fn indexeddb_blobs_come_back_from_a_saved_profile() {
    // Blob files are linked, not copied, between a profile and its sessions.
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    server.post("/v1/profiles", json!({"name": "blobs"})).await;
    let body = json!({"browser": {"profile": {"name": "blobs", "persist": true}}});
    let blob_of = |size: usize| format!("new Blob([new Uint8Array({size}).fill(7)])");
    for round in 0..2 {
        let (id, mut cdp, page) = on_test_page(&server, &pages, body.clone()).await;
        let read = format!(
            "{OPEN_DB}.then(db => new Promise((ok, fail) => {{ const get = db.transaction('blobs').objectStore('blobs').get(1); \
             get.onsuccess = () => get.result ? get.result.arrayBuffer().then(b => ok(new Uint8Array(b).reduce((s, x) => s + x, 0))) : ok(null); \
             get.onerror = () => fail(get.error); }}))"
        );
        // A put succeeds before its transaction commits: wait for the commit, on disk.
        let write = format!(
            "{OPEN_DB}.then(db => new Promise((ok, fail) => {{ const tx = db.transaction('blobs', 'readwrite', {{durability: 'strict'}}); \
             tx.objectStore('blobs').put({}, 1); \
             tx.oncomplete = () => ok('kept'); tx.onerror = () => fail(tx.error); }}))",
            blob_of(300_000)
        );
        let before = awaited(&mut cdp, &page, &read).await;
        if round == 0 {
            assert_eq!(before, Value::Null, "a new profile has no blob");
            assert_eq!(awaited(&mut cdp, &page, &write).await, json!("kept"));
        } else {
            assert_eq!(before, json!(2_100_000), "the blob came back whole");
        }
        cdp.close().await;
        server.delete(&format!("/v1/sessions/{id}")).await;
        wait_until_ready(&server, "blobs").await;
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_profile_made_from_a_running_session_is_saved_when_it_ends() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let (id, mut cdp, page) = on_test_page(&server, &pages, json!({})).await;
    cdp.evaluate(&page, WRITE).await;
    cdp.close().await;
    let (status, _) = server
        .post(
            "/v1/profiles",
            json!({"name": "from session", "description": "made live", "source": "session", "session_id": id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, profile) = server.get("/v1/profiles/from%20session").await;
    assert_eq!(profile["data"]["status"], json!("pending"));
    assert_eq!(profile["data"]["session_id"], json!(id));
    // While its session runs, nothing is saved yet: a start naming it is
    // refused, with why, and starts nothing.
    let (status, refused) = server
        .post(
            "/v1/sessions",
            json!({"browser": {"profile": {"name": "from session"}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        text(&refused["error"]["message"]).contains(&format!("pending: it is saved when session {id} ends")),
        "{refused}"
    );
    // Started the moment its session has ended, while it is being saved:
    // the start waits for the save and begins from it.
    server.delete(&format!("/v1/sessions/{id}")).await;
    let (cookie, stored) = visit(
        &server,
        &pages,
        json!({"browser": {"profile": {"name": "from session"}}}),
        "",
    )
    .await;
    assert_eq!((cookie, stored), (json!("login=yes"), json!("1")));

    // Another team sees none of it.
    let other = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    for path in ["/v1/profiles/from%20session"] {
        let (status, _) = server.request(reqwest::Method::GET, path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = server.request(reqwest::Method::DELETE, path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, theirs) = server
        .request(reqwest::Method::GET, "/v1/profiles", Some(&other), None)
        .await;
    assert_eq!(theirs, json!({"data": {"count": 0, "items": []}}));
    let (status, _) = server
        .request(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(&other),
            Some(json!({"browser": {"profile": {"name": "from session"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn bad_profile_requests_are_refused_and_change_nothing() {
    let server = TestServer::start().await;
    server.post("/v1/profiles", json!({"name": "kept"})).await;
    let unknown_session = "8a6e0804-2bd0-4672-b79d-d97027f22166";
    for (body, wanted, needle) in [
        (json!({}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": ""}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "a/b"}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": 5}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "x".repeat(129)}), StatusCode::BAD_REQUEST, "name"),
        (json!({"name": "kept"}), StatusCode::CONFLICT, "kept"),
        (
            json!({"name": "n", "source": "upload"}),
            StatusCode::BAD_REQUEST,
            "source",
        ),
        (
            json!({"name": "n", "source": "session"}),
            StatusCode::BAD_REQUEST,
            "session_id",
        ),
        (
            json!({"name": "n", "source": "session", "session_id": "nope"}),
            StatusCode::BAD_REQUEST,
            "session_id",
        ),
        (
            json!({"name": "n", "source": "session", "session_id": unknown_session}),
            StatusCode::NOT_FOUND,
            "Session",
        ),
        (
            json!({"name": "n", "dedicated_sticky_ip": true}),
            StatusCode::BAD_REQUEST,
            "hosted",
        ),
        (
            json!({"name": "n", "description": "d".repeat(1001)}),
            StatusCode::BAD_REQUEST,
            "description",
        ),
    ] {
        let (status, error) = server.post("/v1/profiles", body.clone()).await;
        assert_eq!(status, wanted, "{body}: {error}");
        assert!(text(&error["error"]["message"]).contains(needle), "{body}: {error}");
    }
    for body in [
        json!({"browser": {"profile": {"name": 3}}}),
        json!({"browser": {"profile": {"persist": true}}}),
        json!({"browser": {"profile": {"name": "missing"}}}),
        json!({"browser": {"profile": {"name": "kept", "persist": "yes"}}}),
    ] {
        let (status, error) = server.post("/v1/sessions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert!(
            text(&error["error"]["message"]).contains("browser.profile"),
            "{body}: {error}"
        );
    }
    let (status, error) = server
        .post(
            "/v1/batch-sessions",
            json!({"count": 2, "configuration": {"browser": {"profile": {"name": "missing"}}}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(
        text(&error["error"]["message"]).contains("configuration.browser.profile.name"),
        "{error}"
    );
    assert_eq!(server.get("/v1/profiles").await.1["data"]["count"], json!(1));
    assert_eq!(server.get("/v1/profiles/missing").await.0, StatusCode::NOT_FOUND);
    assert_eq!(server.delete("/v1/profiles/missing").await.0, StatusCode::NOT_FOUND);
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn two_sessions_of_one_profile_each_get_a_copy_and_the_one_that_ends_last_wins() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    server.post("/v1/profiles", json!({"name": "shared"})).await;
    let persisting = json!({"browser": {"profile": {"name": "shared", "persist": true}}});
    let ((id_first, mut cdp_first, page_first), (id_second, mut cdp_second, page_second)) = tokio::join!(
        on_test_page(&server, &pages, persisting.clone()),
        on_test_page(&server, &pages, persisting.clone())
    );
    // Each writes its own copy; neither sees the other's writes.
    let read = "localStorage.getItem('who')";
    cdp_first
        .evaluate(&page_first, "localStorage.setItem('who', 'first'); 1")
        .await;
    assert_eq!(cdp_second.evaluate(&page_second, read).await, Value::Null);
    cdp_second
        .evaluate(&page_second, "localStorage.setItem('who', 'second'); 1")
        .await;
    assert_eq!(cdp_first.evaluate(&page_first, read).await, json!("first"));
    cdp_first.close().await;
    cdp_second.close().await;

    // The second ends last: its state is the profile's.
    assert_eq!(
        server.delete(&format!("/v1/sessions/{id_first}")).await.0,
        StatusCode::OK
    );
    wait_until_ready(&server, "shared").await;
    assert_eq!(
        server.delete(&format!("/v1/sessions/{id_second}")).await.0,
        StatusCode::OK
    );
    wait_until_ready(&server, "shared").await;
    let (id, mut cdp, page) = on_test_page(&server, &pages, json!({"browser": {"profile": {"name": "shared"}}})).await;
    assert_eq!(cdp.evaluate(&page, read).await, json!("second"));
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

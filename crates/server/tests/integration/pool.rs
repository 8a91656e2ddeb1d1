//! The warm pool with real Chromium: each pooled browser is handed out once,
//! the pool refills, starts that differ launch cold, the pool never takes the
//! server past its capacity, and nothing of it outlives a shutdown.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::{serve_test_page, wait_until, Cdp, TestServer, TEST_PAGE_TITLE};
use reqwest::StatusCode;
use serde_json::{json, Value};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

const WAIT: Duration = Duration::from_secs(60);

async fn start_with_pool(max_sessions: &str) -> TestServer {
    let server = TestServer::start_with(
        &[("ANCHORAGE_POOL_SIZE", "2"), ("ANCHORAGE_MAX_SESSIONS", max_sessions)],
        |_| {},
    )
    .await;
    wait_until("two browsers launched", WAIT, || server.main_browser_count() == 2).await;
    // Launched is not yet pooled (the first one also has its viewport fitted):
    // wait until /metrics shows both in the pool.
    server.wait_for_metric("anchorage_pool_browsers", 2.0).await;
    server
}

/// Titles of the page targets a session's browser has.
async fn page_titles(cdp: &mut Cdp) -> Vec<String> {
    let targets = cdp.call("Target.getTargets", json!({}), None).await;
    targets["targetInfos"]
        .as_array()
        .expect("targets")
        .iter()
        .filter(|info| info["type"] == json!("page"))
        .map(|info| text(&info["url"]).to_owned())
        .collect()
}

#[tokio::test]
async fn pooled_browsers_are_handed_out_once_each_and_the_pool_refills() {
    let server = start_with_pool("6").await;
    let (first, second) = tokio::join!(server.create_session(json!({})), server.create_session(json!({})));
    assert_ne!(first["id"], second["id"]);
    // Both came from the pool: no browser was launched under their names.
    for session in [&first, &second] {
        assert!(
            server.main_browser_pid(text(&session["id"])).is_none(),
            "{session} was launched cold"
        );
    }

    // Two sessions, two browsers: what one opens, the other does not see.
    let mut one = Cdp::connect(text(&first["cdp_url"])).await;
    let mut other = Cdp::connect(text(&second["cdp_url"])).await;
    let marked = one.open_page("about:blank#only-in-the-first").await;
    assert_eq!(
        one.evaluate(&marked, "[innerWidth, innerHeight]").await,
        json!([1440, 900])
    );
    assert!(page_titles(&mut one)
        .await
        .iter()
        .any(|url| url.ends_with("#only-in-the-first")));
    assert!(!page_titles(&mut other)
        .await
        .iter()
        .any(|url| url.ends_with("#only-in-the-first")));
    one.close().await;
    other.close().await;

    // The pool fills up again behind them.
    wait_until("the pool refilled", WAIT, || server.main_browser_count() == 4).await;
    for session in [&first, &second] {
        let (code, _) = server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
        assert_eq!(code, StatusCode::OK);
    }
    wait_until("only the pool is left", WAIT, || server.main_browser_count() == 2).await;
    server.stop().await;
}

#[tokio::test]
async fn a_pooled_session_opens_its_initial_url() {
    let page = serve_test_page().await;
    let server = start_with_pool("4").await;
    let session = server
        .create_session(json!({"session": {"initial_url": format!("{page}/")}}))
        .await;
    assert!(
        server.main_browser_pid(text(&session["id"])).is_none(),
        "it was launched cold, not taken from the pool"
    );
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let targets = cdp.call("Target.getTargets", json!({}), None).await;
        let infos = targets["targetInfos"].as_array().expect("targets");
        if infos.iter().any(|info| info["title"] == json!(TEST_PAGE_TITLE)) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the initial_url never opened: {targets}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cdp.close().await;
    server.stop().await;
}

#[tokio::test]
async fn a_start_that_differs_launches_cold_and_leaves_the_pool_alone() {
    let server = start_with_pool("6").await;
    let session = server
        .create_session(json!({"browser": {"viewport": {"width": 800, "height": 600}}}))
        .await;
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.open_page("about:blank").await;
    assert_eq!(
        cdp.evaluate(&page, "[innerWidth, innerHeight]").await,
        json!([800, 600])
    );
    cdp.close().await;
    // Its own browser, named after the session; the two pooled ones are still there.
    assert!(server.main_browser_pid(text(&session["id"])).is_some());
    assert_eq!(server.main_browser_count(), 3);
    server.stop().await;
}

#[tokio::test]
async fn the_pool_never_takes_the_server_past_its_capacity() {
    let server = Arc::new(start_with_pool("2").await);
    let most = Arc::new(AtomicUsize::new(0));
    let sampling = {
        let (server, most) = (Arc::clone(&server), Arc::clone(&most));
        tokio::spawn(async move {
            loop {
                let count = server.main_browser_count();
                most.fetch_max(count, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };

    // A cold start when only pooled browsers hold the places: one is ended for it.
    let cold = server
        .create_session(json!({"browser": {"viewport": {"width": 800, "height": 600}}}))
        .await;
    // A default start takes the last pooled browser.
    let pooled = server.create_session(json!({})).await;
    // Now the server is full: a third start waits.
    let (_, accepted) = server.post("/v1/sessions/async", json!({})).await;
    let status_path = format!("/v1/sessions/async/{}/status", text(&accepted["data"]["request_id"]));
    server.admission_settled().await;
    let (_, waiting) = server.get(&status_path).await;
    assert_eq!(waiting["data"]["status"], json!("pending"), "{waiting}");

    server.delete(&format!("/v1/sessions/{}", text(&cold["id"]))).await;
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (_, answer) = server.get(&status_path).await;
        if answer["data"]["status"] == json!("ready") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{answer}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.delete(&format!("/v1/sessions/{}", text(&pooled["id"]))).await;
    sampling.abort();
    let _ = sampling.await;
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "{} browsers ran at once",
        most.load(Ordering::SeqCst)
    );
    let server = Arc::try_unwrap(server).unwrap_or_else(|_| panic!("server still shared"));
    server.stop().await;
}

#[tokio::test]
async fn nothing_of_the_pool_outlives_a_shutdown() {
    let server = start_with_pool("4").await;
    let browsers_dir = server.browsers_dir();
    let _data_dir = server.stop().await;
    wait_until("pooled browsers gone", WAIT, || {
        anchorage_browser::leftover_browser_pids(&browsers_dir).is_empty()
    })
    .await;
    let left: Vec<_> = std::fs::read_dir(&browsers_dir)
        .map(|entries| entries.filter_map(Result::ok).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
    // Pooled browsers' TMPDIRs live outside the data dir (their names are
    // too long for Chromium's socket path under it); that root goes too.
    let short_root = anchorage_browser::BrowserDirs::new(browsers_dir.clone())
        .short_tmp_root()
        .to_path_buf();
    assert!(!short_root.exists(), "{} was left behind", short_root.display());
}

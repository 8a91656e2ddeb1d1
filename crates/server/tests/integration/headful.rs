//! Headful sessions on Xvfb: no `--headless`, no `HeadlessChrome`, the
//! viewport asked for, a display of their own each, screenshots and CDP as
//! for any session, and nothing of the display left after the end.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{wait_until, Cdp, TestServer};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The `DISPLAY` a process runs with.
fn display_of(pid: u32) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|byte| *byte == 0)
        .find_map(|entry| entry.strip_prefix(b"DISPLAY="))
        .map(|value| String::from_utf8_lossy(value).into_owned())
}

fn png_size(png: &[u8]) -> (u32, u32) {
    let read = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (read(16), read(20))
}

#[tokio::test]
async fn headful_sessions_get_a_display_each_and_leave_nothing_behind() {
    let server = TestServer::start().await;
    let body = json!({"browser": {"headless": {"active": false}, "viewport": {"width": 800, "height": 500}}});
    let (first, second) = tokio::join!(server.create_session(body.clone()), server.create_session(body.clone()));
    let mut displays = Vec::new();
    for session in [&first, &second] {
        let id = text(&session["id"]);
        let pid = server.main_browser_pid(id).expect("the session's browser runs");
        let cmdline =
            String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline")).into_owned();
        assert!(!cmdline.contains("--headless"), "{cmdline}");
        displays.push(display_of(pid).expect("the browser has a DISPLAY"));
        let (_, read) = server.get(&format!("/v1/sessions/{id}")).await;
        assert_eq!(
            read["data"]["configuration"]["browser"]["headless"]["active"],
            json!(false)
        );

        let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
        let page = cdp.attach_newest_page().await;
        let seen = cdp
            .evaluate(
                &page,
                "[navigator.userAgent, innerWidth, innerHeight, screen.width >= innerWidth]",
            )
            .await;
        assert!(!text(&seen[0]).contains("Headless"), "{seen}");
        assert_eq!(
            (seen[1].clone(), seen[2].clone(), seen[3].clone()),
            (json!(800), json!(500), json!(true)),
            "{seen}"
        );
        cdp.close().await;

        let screenshot = format!("{}/v1/sessions/{id}/screenshot", server.base);
        let (status, content_type, png) = server.get_url_for_bytes(&screenshot).await;
        assert_eq!((status, content_type.as_str()), (StatusCode::OK, "image/png"));
        assert_eq!(png_size(&png), (800, 500));
    }
    assert_ne!(displays[0], displays[1], "each session has its own display");
    let xvfbs = anchorage_browser::leftover_display_pids(&std::fs::canonicalize(server.browsers_dir()).expect("dir"));
    assert_eq!(xvfbs.len(), 2, "one Xvfb per headful session");
    // A later headful launch sizes its screen from the frame the first one
    // measured: its viewport is still exactly what was asked (it once came
    // out a pixel short on a screen exactly its window's size).
    let later = server.create_session(body.clone()).await;
    let mut cdp = Cdp::connect(text(&later["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    assert_eq!(
        cdp.evaluate(&page, "[innerWidth, innerHeight]").await,
        json!([800, 500])
    );
    cdp.close().await;

    server.delete("/v1/sessions/all").await;
    let root = std::fs::canonicalize(server.browsers_dir()).expect("dir");
    wait_until("the displays are gone", Duration::from_secs(20), || {
        anchorage_browser::leftover_display_pids(&root).is_empty()
    })
    .await;
    for display in displays {
        // Tests run in parallel: another test's Xvfb may hold the number
        // now. Ours left nothing: no lock of theirs, and no socket without a lock.
        let number = display.trim_start_matches(':');
        let lock = std::fs::read_to_string(format!("/tmp/.X{number}-lock")).ok();
        let holder = lock.as_deref().and_then(|text| text.trim().parse::<u32>().ok());
        assert!(
            holder.is_none_or(|pid| !xvfbs.contains(&pid)),
            "{display}'s lock is gone"
        );
        if lock.is_none() && std::path::Path::new(&format!("/tmp/.X11-unix/X{number}")).exists() {
            // Another test's Xvfb may have taken the number between the two
            // reads (it makes its lock, then its socket): then it holds the
            // lock now; a socket of ours would have no lock at all.
            let holder = std::fs::read_to_string(format!("/tmp/.X{number}-lock"))
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok());
            assert!(
                holder.is_some_and(|pid| !xvfbs.contains(&pid)),
                "{display}'s socket is gone"
            );
        }
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn the_default_kind_follows_the_server_and_the_pool_holds_it() {
    let server = TestServer::start_with(
        &[("ANCHORAGE_DEFAULT_HEADLESS", "false"), ("ANCHORAGE_POOL_SIZE", "1")],
        |_| {},
    )
    .await;
    let root = std::fs::canonicalize(server.browsers_dir()).expect("dir");
    wait_until("a headful browser in the pool", Duration::from_secs(30), || {
        anchorage_browser::leftover_display_pids(&root).len() == 1
    })
    .await;
    let session = server.create_session(json!({})).await;
    let pid = server.main_browser_pid(text(&session["id"])).expect("runs");
    assert!(display_of(pid).is_some(), "the default is headful here");
    let headless = server
        .create_session(json!({"browser": {"headless": {"active": true}}}))
        .await;
    let pid = server.main_browser_pid(text(&headless["id"])).expect("runs");
    let cmdline =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline")).into_owned();
    assert!(cmdline.contains("--headless"), "asked for headless: {cmdline}");
    server.delete("/v1/sessions/all").await;
    server.stop().await;
    assert!(anchorage_browser::leftover_display_pids(&root).is_empty());
}

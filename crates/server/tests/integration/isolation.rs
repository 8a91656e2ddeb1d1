//! Isolation and secrets: private networks when they are blocked, a revoked
//! key's open CDP connections, and the team quota following the browsers
//! that really run.

use std::os::unix::process::CommandExt;
use std::time::Duration;

use crate::support::{kill_process, serve_test_page, wait_until, Cdp, TestServer};
use serde_json::json;

fn text(value: &serde_json::Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[tokio::test]
async fn blocked_private_networks_are_refused_at_the_api_and_unreachable_from_the_browser() {
    let page = serve_test_page().await;
    let server = TestServer::start_with(&[("ANCHORAGE_BLOCK_PRIVATE_NETWORKS", "true")], |_| {}).await;

    for url in [
        page.as_str(),
        "http://localhost:9/",
        "http://169.254.169.254/latest",
        "http://[::1]/",
    ] {
        let (status, answer) = server
            .post("/v1/sessions", json!({"session": {"initial_url": url}}))
            .await;
        assert_eq!(status, 400, "{url}: {answer}");
        assert!(
            text(&answer["error"]["message"]).contains("ANCHORAGE_BLOCK_PRIVATE_NETWORKS"),
            "{answer}"
        );
    }
    let (status, answer) = server
        .post(
            "/v1/batch-sessions",
            json!({"count": 1, "configuration": {"session": {"initial_url": page}}}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(text(&answer["error"]["message"]).starts_with("configuration.session.initial_url"));

    // A session may not get there by navigating either: the names do not resolve.
    let session = server.create_session(json!({})).await;
    let mut client = Cdp::connect(text(&session["cdp_url"])).await;
    let tab = client.open_page("about:blank").await;
    for url in [
        format!("{page}/"),
        "http://localhost:3000/".to_owned(),
        server.base.clone(),
    ] {
        let navigated = client.call("Page.navigate", json!({"url": url}), Some(&tab)).await;
        assert!(
            text(&navigated["errorText"]).contains("ERR_NAME_NOT_RESOLVED"),
            "{url}: {navigated}"
        );
    }
    let fetched = client
        .call(
            "Runtime.evaluate",
            json!({"expression": format!("fetch('{page}/').then(() => 'reached', () => 'blocked')"),
                   "awaitPromise": true, "returnByValue": true}),
            Some(&tab),
        )
        .await;
    assert_eq!(fetched["result"]["value"], "blocked", "{fetched}");
    client.close().await;

    // Nor by a REST goto or a one-shot tool (with or without the session).
    let session_id = text(&session["id"]).to_owned();
    for (path, body) in [
        (format!("/v1/sessions/{session_id}/goto"), json!({"url": page})),
        ("/v1/tools/screenshot".to_owned(), json!({"url": page})),
        ("/v1/tools/page-pdf".to_owned(), json!({"url": "http://10.0.0.1/"})),
        (
            "/v1/tools/fetch/webpage".to_owned(),
            json!({"url": "http://[::1]:8080/"}),
        ),
        (
            format!("/v1/tools/screenshot?sessionId={session_id}"),
            json!({"url": "http://127.0.0.1/"}),
        ),
    ] {
        let (status, answer) = server.post(&path, body).await;
        assert_eq!(status, 400, "{path}: {answer}");
        assert!(
            text(&answer["error"]["message"]).contains("ANCHORAGE_BLOCK_PRIVATE_NETWORKS"),
            "{path}: {answer}"
        );
    }
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_revoked_key_stops_at_once_and_closes_the_connections_it_opened() {
    let server = TestServer::start().await;
    let key = anchorage_server::keys::create(&server.config, "default", "to-revoke")
        .await
        .expect("a second key");
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let by_key = format!(
        "{}/?apiKey={key}&sessionId={session_id}",
        server.base.replacen("http://", "ws://", 1)
    );
    let mut with_key = Cdp::connect(&by_key).await;
    let mut with_token = Cdp::connect(text(&session["cdp_url"])).await;
    with_key.call("Browser.getVersion", json!({}), None).await;

    let prefix: String = key.chars().take(12).collect();
    assert_eq!(
        anchorage_server::keys::revoke(&server.config, &prefix)
            .await
            .expect("revoke"),
        1
    );
    // HTTP at once, the open connection within moments.
    let (status, _) = server
        .request(reqwest::Method::GET, "/v1/sessions/all/status", Some(&key), None)
        .await;
    assert_eq!(status, 401);
    with_key.closed(Duration::from_secs(10)).await;
    assert_eq!(crate::support::refused_upgrade_status(&by_key).await, 401);
    // The session itself, and a connection that did not use the key, go on.
    with_token.call("Browser.getVersion", json!({}), None).await;
    assert_eq!(server.session_status(&session_id).await.0, "running");
    with_token.close().await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn the_team_quota_follows_the_browsers_that_really_run() {
    let server = TestServer::start_with(&[("ANCHORAGE_TEAM_MAX_SESSIONS", "2")], |_| {}).await;
    let first = server.create_session(json!({})).await;
    let second = server.create_session(json!({})).await;
    let (status, answer) = server.post("/v1/sessions", json!({})).await;
    assert_eq!(status, 429, "{answer}");

    // Killed behind the server's back: the count follows, a start fits again.
    let pid = server.main_browser_pid(text(&first["id"])).expect("browser");
    kill_process(pid);
    server
        .wait_for_status(text(&first["id"]), "failed", Duration::from_secs(20))
        .await;
    wait_until("the killed browser's processes gone", Duration::from_secs(10), || {
        server.main_browser_pid(text(&first["id"])).is_none()
    })
    .await;
    let mut third = None;
    for _ in 0..100 {
        let (status, answer) = server.post("/v1/sessions", json!({})).await;
        if status == 200 {
            third = Some(answer["data"].clone());
            break;
        }
        assert_eq!(status, 429, "{answer}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let third = third.expect("a start fits once the killed browser is gone");
    let (_, live) = server.get("/v1/sessions/all/status").await;
    assert_eq!(live["data"]["count"], 2, "{live}");
    for session in [&second, &third] {
        server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// The user id a process runs as.
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[tokio::test]
async fn browsers_of_a_root_server_run_unprivileged_and_cannot_read_the_database() {
    let server = TestServer::start().await;
    let server_uid = process_uid(std::process::id()).expect("own uid");
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let pid = server.main_browser_pid(&session_id).expect("browser");
    let browser_uid = process_uid(pid).expect("browser uid");
    let arguments = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    let sandboxed = !String::from_utf8_lossy(&arguments).contains("--no-sandbox");
    eprintln!("server uid {server_uid}, browser uid {browser_uid}, sandbox {sandboxed}");
    if !crate::support::running_as_root("the database's and profile's permissions against a root server's browser user")
    {
        // Not root: the browsers are the server's user, as configured.
        assert_eq!(browser_uid, server_uid);
    } else {
        assert_ne!(browser_uid, 0, "a root server's browsers must not run as root");
        assert_eq!(sandboxed, server.config.browser_sandbox);
        // The database is the server's alone, and the browser cannot open it.
        let database = server.data_dir.path().join("anchorage.db");
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&database).expect("db").permissions());
        assert_eq!(mode & 0o077, 0, "database mode {mode:o}");
        // Asked as the browser's own user: its profile yes, the database no.
        let readable_by_browser = |path: &std::path::Path| {
            std::process::Command::new("sh")
                .args(["-c", "test -r \"$0\""])
                .arg(path)
                .uid(browser_uid)
                .status()
                .expect("sh")
                .success()
        };
        let profile = server.browsers_dir().join(session_id.replace('-', "")).join("profile");
        assert!(readable_by_browser(&profile), "the check itself works");
        assert!(
            !readable_by_browser(&database),
            "the browser's user can read the database"
        );
    }
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// The inodes of the machine's listening TCP sockets.
fn listening_tcp_inodes() -> std::collections::HashSet<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    // State 0A is LISTEN; the inode is the tenth field.
                    (fields.get(3) == Some(&"0A")).then(|| fields.get(9).map(|inode| (*inode).to_owned()))?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The browser opens no port: DevTools is a pair of pipes held by the
/// server, and a local user other than root and the browser's own cannot
/// open them through `/proc`.
#[tokio::test]
async fn devtools_is_a_pipe_that_other_local_users_cannot_reach() {
    let server = TestServer::start().await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let pid = server.main_browser_pid(&session_id).expect("browser");
    let arguments =
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline")).replace('\0', " ");
    assert!(arguments.contains("--remote-debugging-pipe"), "{arguments}");
    assert!(!arguments.contains("--remote-debugging-port"), "{arguments}");

    // The browser is in use, and no process of it listens on TCP.
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let version = cdp.call("Browser.getVersion", json!({}), None).await;
    assert!(text(&version["product"]).contains("Chrome"), "{version}");
    let listening = listening_tcp_inodes();
    let members = crate::support::group_members(pid);
    assert!(members.contains(&pid), "{members:?}");
    for member in members {
        let Ok(descriptors) = std::fs::read_dir(format!("/proc/{member}/fd")) else {
            continue;
        };
        for descriptor in descriptors.filter_map(Result::ok) {
            let Ok(target) = std::fs::read_link(descriptor.path()) else {
                continue;
            };
            let target = target.to_string_lossy().into_owned();
            if let Some(inode) = target.strip_prefix("socket:[").and_then(|rest| rest.strip_suffix(']')) {
                assert!(
                    !listening.contains(inode),
                    "process {member} of the browser listens on TCP"
                );
            }
        }
    }

    // Its DevTools pipes are fds 3 and 4; through /proc, root could open
    // them, a stranger (neither root nor the browser's user) cannot.
    if crate::support::running_as_root("the DevTools pipes against another local user") {
        let browser_uid = process_uid(pid).expect("browser uid");
        let stranger = (60_000..65_000).find(|uid| *uid != browser_uid).expect("a free uid");
        let may = |uid: u32, test: &str, path: &str| {
            std::process::Command::new("sh")
                .args(["-c", &format!("test {test} \"$0\"")])
                .arg(path)
                .uid(uid)
                .gid(uid)
                .status()
                .expect("sh")
                .success()
        };
        // The checks themselves work: the stranger's shell sees the
        // browser's process, and the browser's own user reaches its pipes
        // (the documented limit).
        assert!(
            may(stranger, "-e", &format!("/proc/{pid}/stat")),
            "the stranger's check works"
        );
        for fd in [3, 4] {
            let path = format!("/proc/{pid}/fd/{fd}");
            let target = std::fs::read_link(&path).expect("the pipe");
            assert!(target.to_string_lossy().starts_with("pipe:"), "fd {fd} is {target:?}");
            assert!(may(browser_uid, "-e", &path), "the browser's own user reaches fd {fd}");
            assert!(!may(stranger, "-e", &path), "uid {stranger} can reach fd {fd}");
            assert!(!may(stranger, "-w", &path), "uid {stranger} can write fd {fd}");
        }
    }
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

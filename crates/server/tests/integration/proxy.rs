//! A session's own proxy with real Chromium: its traffic goes through an
//! authenticating proxy the test runs, which sees the right credentials,
//! while a session without it never reaches the proxy; the password is
//! not on any command line and is shown redacted.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::{serve_test_page, Cdp, TestServer};

const PASSWORD: &str = "s3cret-Pa55-word";

/// An HTTP proxy that wants `user:PASSWORD` (Basic) and answers every
/// request itself with a page naming the URL it was asked for.
struct TestProxy {
    port: u16,
    served: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    credentials: Arc<Mutex<Vec<String>>>,
    /// The request line of every request it was sent.
    requests: Arc<Mutex<Vec<String>>>,
}

async fn start_proxy() -> TestProxy {
    let wanted = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{PASSWORD}"))
    );
    start_proxy_wanting(Some(wanted)).await
}

/// The same proxy, wanting `wanted` as `Proxy-Authorization`, or nothing.
async fn start_proxy_wanting(wanted: Option<String>) -> TestProxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    let (served, refused, credentials) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (counter, refusals, seen, lines) = (
        Arc::clone(&served),
        Arc::clone(&refused),
        Arc::clone(&credentials),
        Arc::clone(&requests),
    );
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (counter, refusals, seen, lines, wanted) = (
                Arc::clone(&counter),
                Arc::clone(&refusals),
                Arc::clone(&seen),
                Arc::clone(&lines),
                wanted.clone(),
            );
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut reader = BufReader::new(reader);
                loop {
                    let mut head = Vec::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line).await {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => head.push(line.trim_end().to_owned()),
                        }
                    }
                    let target = head.first().cloned().unwrap_or_default();
                    if let Ok(mut lines) = lines.lock() {
                        lines.push(target.clone());
                    }
                    let authorization = head.iter().find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("proxy-authorization")
                            .then(|| value.trim().to_owned())
                    });
                    if let Some(given) = &authorization {
                        if let Ok(mut seen) = seen.lock() {
                            seen.push(given.clone());
                        }
                    }
                    let answer = if wanted.is_none() || authorization == wanted {
                        counter.fetch_add(1, Ordering::SeqCst);
                        let body = format!("<title>via proxy</title><p>{target}</p>");
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        refusals.fetch_add(1, Ordering::SeqCst);
                        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n\
                         Content-Length: 0\r\n\r\n"
                            .to_owned()
                    };
                    if writer.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    TestProxy {
        port,
        served,
        refused,
        credentials,
        requests,
    }
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Waits until `page` shows what the test proxy answers.
async fn wait_until_via_proxy(cdp: &mut Cdp, page: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while cdp.evaluate(page, "document.title").await != json!("via proxy") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first page did not come through the proxy"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Two context sessions of one host: a plain one, then one behind `proxy`
/// (a `session.proxy`), whose first page and a tab its client opens both
/// come through the proxy. The two sessions, and a client of the second.
async fn beside_one_behind_a_proxy(server: &TestServer, proxy: Value) -> (Value, Value, Cdp) {
    let neighbour = server.create_session(json!({})).await;
    let proxied = server
        .create_session(json!({"session": {"initial_url": "http://shop.test/first", "proxy": proxy}}))
        .await;
    assert_eq!(server.main_browser_count(), 1, "both are contexts of one host");
    assert_eq!(server.metric("anchorage_context_sessions").await, 2.0);
    let mut cdp = Cdp::connect(text(&proxied["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    wait_until_via_proxy(&mut cdp, &page).await;
    let tab = cdp.open_page("http://shop.test/second").await;
    assert_eq!(cdp.evaluate(&tab, "document.title").await, json!("via proxy"));
    (neighbour, proxied, cdp)
}

#[tokio::test]
async fn a_session_browses_through_its_own_authenticating_proxy() {
    let server = TestServer::start().await;
    let proxy = start_proxy().await;
    let body = json!({"session": {
        "initial_url": "http://shop.test/first",
        "proxy": {"type": "custom", "server": format!("http://127.0.0.1:{}", proxy.port),
                  "username": "user", "password": PASSWORD, "active": true}
    }});
    let session = server.create_session(body).await;
    let id = text(&session["id"]).to_owned();
    let mut cdp = Cdp::connect(text(&session["cdp_url"])).await;
    let page = cdp.attach_newest_page().await;
    // The first page came through the proxy, with the credentials.
    wait_until_via_proxy(&mut cdp, &page).await;
    assert!(text(&cdp.evaluate(&page, "document.body.innerText").await).contains("http://shop.test/first"));
    // So does a later navigation, and one in a new tab.
    let (status, _) = server
        .post(
            &format!("/v1/sessions/{id}/goto"),
            json!({"url": "http://shop.test/second"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let tab = cdp.open_page("http://shop.test/third").await;
    assert_eq!(cdp.evaluate(&tab, "document.title").await, json!("via proxy"));
    assert!(proxy.served.load(Ordering::SeqCst) >= 3);
    let wanted = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{PASSWORD}"))
    );
    assert!(proxy
        .credentials
        .lock()
        .expect("seen")
        .iter()
        .all(|given| *given == wanted));

    // The password is on no command line, and shown redacted.
    for pid in server.browser_pids() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmdline).contains(PASSWORD),
            "pid {pid} has it"
        );
    }
    let (_, shown) = server.get(&format!("/v1/sessions/{id}")).await;
    assert_eq!(
        shown["data"]["configuration"]["session"]["proxy"]["password"],
        json!("[redacted]")
    );
    assert!(!shown.to_string().contains(PASSWORD));
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;

    // A session without the proxy never reaches it.
    let served = proxy.served.load(Ordering::SeqCst) + proxy.refused.load(Ordering::SeqCst);
    let plain = server.create_session(json!({})).await;
    let plain_id = text(&plain["id"]).to_owned();
    let (status, _) = server
        .post(
            &format!("/v1/sessions/{plain_id}/goto"),
            json!({"url": "http://shop.test/"}),
        )
        .await;
    assert_ne!(status, StatusCode::OK, "shop.test has no address without the proxy");
    assert_eq!(
        proxy.served.load(Ordering::SeqCst) + proxy.refused.load(Ordering::SeqCst),
        served
    );
    server.delete(&format!("/v1/sessions/{plain_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn proxy_settings_that_cannot_work_are_refused() {
    let server = TestServer::start().await;
    for (proxy, needle) in [
        (json!({"active": true}), "hosted"),
        (
            json!({"type": "anchor_proxy", "active": true, "country_code": "de"}),
            "hosted",
        ),
        (
            json!({"type": "socks9", "server": "socks9://h:1", "active": true}),
            "session.proxy.type",
        ),
        (json!({"type": "custom", "active": true}), "session.proxy.server"),
        (
            json!({"type": "custom", "server": "ftp://h:21", "active": true}),
            "session.proxy.server",
        ),
        (
            json!({"type": "custom", "server": "http://u:p@h:1", "active": true}),
            "session.proxy.server",
        ),
        (
            json!({"type": "custom", "server": "not a url", "active": true}),
            "session.proxy.server",
        ),
        (
            json!({"type": "custom", "server": 5, "active": true}),
            "session.proxy.server",
        ),
        (
            json!({"type": "custom", "server": "http://h:1", "password": "a\nb", "active": true}),
            "session.proxy.password",
        ),
    ] {
        let (status, error) = server
            .post("/v1/sessions", json!({"session": {"proxy": proxy.clone()}}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{proxy}: {error}");
        assert!(text(&error["error"]["message"]).contains(needle), "{proxy}: {error}");
    }
    // Switched off, any proxy part is accepted and nothing is used.
    let session = server
        .create_session(json!({"session": {"proxy": {"type": "anchor_proxy", "active": false}}}))
        .await;
    server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_context_session_browses_through_its_own_proxy_and_its_neighbour_does_not() {
    let server = TestServer::start_with(&[("ANCHORAGE_SESSION_ISOLATION", "context")], |_| {}).await;
    let proxy = start_proxy_wanting(None).await;
    let (neighbour, proxied, cdp) = beside_one_behind_a_proxy(
        &server,
        json!({"type": "custom", "server": format!("http://127.0.0.1:{}", proxy.port), "active": true}),
    )
    .await;
    let served = proxy.served.load(Ordering::SeqCst);
    assert!(served >= 2, "{served}");
    // The neighbour in the same browser goes straight out: the proxy never
    // hears of its navigation (which fails: the name does not resolve).
    let mut other = Cdp::connect(text(&neighbour["cdp_url"])).await;
    let other_page = other.attach_newest_page().await;
    other
        .call(
            "Page.navigate",
            json!({"url": "http://shop.test/neighbour"}),
            Some(&other_page),
        )
        .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_ne!(other.evaluate(&other_page, "document.title").await, json!("via proxy"));
    // (The proxied session's own page may still ask for more, its icon say:
    // what matters is that nothing of the neighbour's went there.)
    let lines = proxy.requests.lock().map(|lines| lines.clone()).unwrap_or_default();
    assert!(!lines.iter().any(|line| line.contains("neighbour")), "{lines:?}");
    cdp.close().await;
    other.close().await;
    for session in [&proxied, &neighbour] {
        server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_context_session_answers_its_proxys_credentials_in_its_own_pages_only() {
    let server = TestServer::start_with(&[("ANCHORAGE_SESSION_ISOLATION", "context")], |_| {}).await;
    let proxy = start_proxy().await;
    // A proxy with credentials no longer makes a browser of its own.
    let (neighbour, authenticated, cdp) = beside_one_behind_a_proxy(
        &server,
        json!({"type": "custom", "server": format!("http://127.0.0.1:{}", proxy.port),
               "username": "user", "password": PASSWORD, "active": true}),
    )
    .await;
    let wanted = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("user:{PASSWORD}"))
    );
    let given = proxy.credentials.lock().expect("seen").clone();
    assert!(
        !given.is_empty() && given.iter().all(|given| *given == wanted),
        "{given:?}"
    );
    assert!(proxy.served.load(Ordering::SeqCst) >= 2);
    // The neighbour in the same browser browses its own pages, never
    // through the proxy.
    let local = serve_test_page().await;
    let mut other = Cdp::connect(text(&neighbour["cdp_url"])).await;
    let other_page = other.attach_newest_page().await;
    other
        .call("Page.navigate", json!({"url": local}), Some(&other_page))
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !text(&other.evaluate(&other_page, "location.href").await).starts_with(&local) {
        assert!(
            std::time::Instant::now() < deadline,
            "the neighbour's page did not load"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let port = local
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let requests = proxy.requests.lock().expect("requests").clone();
    assert!(
        requests.iter().all(|line| !line.contains(&format!(":{port}"))),
        "{requests:?}"
    );
    // The password is on no command line.
    for line in server.browser_group_command_lines() {
        assert!(!line.contains(PASSWORD), "{line}");
    }
    cdp.close().await;
    other.close().await;
    for session in [&authenticated, &neighbour] {
        server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    }
    server.assert_no_browsers_left().await;
    server.stop().await;
}

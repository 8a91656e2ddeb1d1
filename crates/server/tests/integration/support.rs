//! Shared test support: a real server in-process on port 0 with a temp data
//! dir and real Chromium, a local test page, and a small CDP client.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anchorage_server::{App, Config, Environment, Source};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const TEST_KEY: &str = "test-key-0123456789";
pub const TEST_PAGE_TITLE: &str = "anchorage test page";

/// Settings for a test server: only what the test gives, plus `PATH` from
/// the environment (to find Chromium), so that a developer's exported
/// `ANCHORAGE_*` never reaches a test.
pub struct Settings(pub HashMap<String, String>);

impl Source for Settings {
    fn get(&self, name: &str) -> Option<String> {
        match name {
            "PATH" => Environment.get(name),
            _ => self.0.get(name).cloned(),
        }
    }
}

pub struct TestServer {
    pub base: String,
    pub data_dir: tempfile::TempDir,
    pub config: Config,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(&[], |_| {}).await
    }

    /// Starts a server with extra settings and a chance to adjust the config.
    pub async fn start_with(pairs: &[(&str, &str)], adjust: impl FnOnce(&mut Config)) -> Self {
        let data_dir = tempfile::tempdir().expect("temp dir");
        Self::start_in(data_dir, pairs, adjust).await
    }

    pub async fn start_in(
        data_dir: tempfile::TempDir,
        pairs: &[(&str, &str)],
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let mut values: HashMap<String, String> = [
            ("ANCHORAGE_LISTEN", "127.0.0.1:0"),
            ("ANCHORAGE_API_KEY", TEST_KEY),
            ("ANCHORAGE_MAX_SESSIONS", "4"),
            // Tests that count browsers see only their sessions' unless they
            // turn the pool on.
            ("ANCHORAGE_POOL_SIZE", "0"),
            // No code runner, code cache or zygote is started for tests that
            // run no code (the code tests turn them on).
            ("ANCHORAGE_CODE_WARM", "0"),
            ("ANCHORAGE_CODE_CACHE", "off"),
            ("ANCHORAGE_CODE_ZYGOTE", "off"),
            // No template browser appears beside the tests' own (the
            // ad blocking tests turn it on).
            ("ANCHORAGE_ADBLOCK_INDEX_AHEAD", "off"),
        ]
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        values.insert("ANCHORAGE_DATA_DIR".into(), data_dir.path().display().to_string());
        for (key, value) in pairs {
            values.insert(key.to_string(), value.to_string());
        }
        let source = Settings(values);
        let mut config = Config::load(&source, None).expect("config");
        adjust(&mut config);
        let app = App::build(config.clone(), &source).await.expect("server starts");
        let base = format!("http://{}", app.local_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            data_dir,
            config,
            http: reqwest::Client::new(),
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    pub fn browsers_dir(&self) -> PathBuf {
        self.data_dir.path().join("browsers")
    }

    /// Stops the server the way SIGTERM does and waits until it returned.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server result");
        }
        let data_dir = tempfile::tempdir().expect("temp dir");
        std::mem::replace(&mut self.data_dir, data_dir)
    }

    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.header("anchor-api-key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("body");
        let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status} body is not JSON: {text:?}"));
        (status, value)
    }

    /// A call whose answer is not JSON (an image, a PDF, HTML): status,
    /// content type and bytes.
    pub async fn post_for_bytes(&self, path: &str, body: Value) -> (StatusCode, String, Vec<u8>) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("anchor-api-key", TEST_KEY)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        bytes_of(response).await
    }

    /// A `GET` of a full URL this server gave (a `file_link`) with the API
    /// key: status, content type and bytes.
    pub async fn get_url_for_bytes(&self, url: &str) -> (StatusCode, String, Vec<u8>) {
        assert!(url.starts_with(&self.base), "{url} is not on this server");
        let response = self
            .http
            .get(url)
            .header("anchor-api-key", TEST_KEY)
            .send()
            .await
            .expect("request sent");
        bytes_of(response).await
    }

    /// A multipart `POST` with an API key: status and JSON answer.
    pub async fn post_multipart(&self, path: &str, key: &str, form: reqwest::multipart::Form) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("anchor-api-key", key)
            .multipart(form)
            .send()
            .await
            .expect("upload");
        let status = response.status();
        (status, response.json().await.expect("JSON"))
    }

    /// One sample of `/metrics`, by its series name.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in {text}"))
    }

    /// Waits until `series` in `/metrics` reads `wanted` (or fails after 30 s).
    pub async fn wait_for_metric(&self, series: &str, wanted: f64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.metric(series).await;
            if now == wanted {
                return;
            }
            assert!(Instant::now() < deadline, "{series} stayed at {now}, not {wanted}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the admission loop has looked at every change so far
    /// (a start queued, a place freed), so that a test can check that
    /// something did *not* start without guessing a time to wait.
    pub async fn admission_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metric("anchorage_admission_unseen_changes").await != 0.0 {
            assert!(Instant::now() < deadline, "the admission loop did not catch up");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, Some(TEST_KEY), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::POST, path, Some(TEST_KEY), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(reqwest::Method::DELETE, path, Some(TEST_KEY), None).await
    }

    /// Starts a session synchronously and returns its data.
    pub async fn create_session(&self, body: Value) -> Value {
        let (status, answer) = self.post("/v1/sessions", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["data"].clone()
    }

    pub async fn session_status(&self, session_id: &str) -> (String, Value) {
        let (status, answer) = self.get(&format!("/v1/sessions/{session_id}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        (
            answer["data"]["status"].as_str().unwrap_or_default().to_owned(),
            answer["data"].clone(),
        )
    }

    /// Polls a session until its status is `wanted`.
    pub async fn wait_for_status(&self, session_id: &str, wanted: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let (status, data) = self.session_status(session_id).await;
            if status == wanted {
                return data;
            }
            assert!(
                Instant::now() < deadline,
                "session {session_id} is {status}, not {wanted}: {data}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Browser processes of this server alive now.
    pub fn browser_pids(&self) -> Vec<u32> {
        anchorage_browser::leftover_browser_pids(&self.browsers_dir())
    }

    /// Asserts that, within moments, no browser process of this server is
    /// alive and no session directory is left.
    pub async fn assert_no_browsers_left(&self) {
        wait_until("no browser process left", Duration::from_secs(10), || {
            self.browser_pids().is_empty()
        })
        .await;
        let dirs_left = || -> Vec<PathBuf> {
            std::fs::read_dir(self.browsers_dir())
                .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
                .unwrap_or_default()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dirs_left().is_empty() {
            assert!(Instant::now() < deadline, "session dirs left: {:?}", dirs_left());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // A test that panicked still must not leak browsers.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        for pid in self.browser_pids() {
            kill_process(pid);
        }
    }
}

/// SIGKILL to one process.
#[allow(unsafe_code)]
pub fn kill_process(pid: u32) {
    // SAFETY: a plain syscall with integer arguments.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
}

/// Polls `condition` until it holds, failing the test after `within`.
pub async fn wait_until(what: &str, within: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether this test process runs as root, which the checks of a root
/// server's isolation need (`check` names them). Not root, the test fails,
/// unless `ANCHORAGE_TEST_ALLOW_UNPRIVILEGED` is set (the test command sets
/// it, and says so, when it does not run as root); then the skip is printed.
pub fn running_as_root(check: &str) -> bool {
    // SAFETY: geteuid takes nothing and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var_os("ANCHORAGE_TEST_ALLOW_UNPRIVILEGED").is_some(),
            "{check} needs the tests to run as root; set ANCHORAGE_TEST_ALLOW_UNPRIVILEGED=1 to skip it"
        );
        eprintln!("SKIPPED (not root): {check}");
    }
    root
}

/// A Chromium for fault tests, written into `dir` (the first page is among
/// a launch's arguments only for a start without ad blocking): a launch
/// whose arguments mention `anchorage-fail-launch` exits at once, one that mentions
/// `anchorage-hang-launch` never opens DevTools (and keeps the browser's
/// arguments, so it is found like a browser), one that mentions
/// `anchorage-hold-launch` is held before the real one starts (see
/// [`LaunchHold`]), any other runs the real one.
pub fn fake_chromium(dir: &std::path::Path) -> PathBuf {
    let real = [
        "/usr/lib/chromium/chromium",
        "/usr/lib/chromium-browser/chromium-browser",
    ]
    .into_iter()
    .find(|path| std::path::Path::new(path).exists())
    .unwrap_or("chromium");
    let script = format!(
        "#!/bin/sh\n\
         for argument in \"$@\"; do\n\
           case \"$argument\" in\n\
             *anchorage-fail-launch*) echo 'refusing to start (a test asked)' >&2; exit 3 ;;\n\
             *anchorage-hang-launch*) exec python3 -c 'import time; time.sleep(600)' \"$@\" ;;\n\
             *anchorage-hold-launch*) touch {held}/held-$$; \
               while [ ! -e {held}/release ]; do sleep 0.02; done; exec {real} \"$@\" ;;\n\
           esac\n\
         done\n\
         exec {real} \"$@\"\n",
        held = dir.display()
    );
    let path = dir.join("chromium");
    std::fs::write(&path, script).expect("write the fake chromium");
    let mut permissions = std::fs::metadata(&path).expect("metadata").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&path, permissions).expect("chmod");
    path
}

/// The launches of a [`fake_chromium`] held on purpose (their arguments
/// mention `anchorage-hold-launch`): each is a process that has started,
/// with the browser's arguments, and opens no DevTools until released, so a
/// test can act while a launch is certainly under way.
pub struct LaunchHold {
    dir: tempfile::TempDir,
}

impl LaunchHold {
    /// A server whose Chromium is a [`fake_chromium`], and its holds;
    /// nothing is released yet.
    pub async fn server() -> (TestServer, Self) {
        let dir = tempfile::tempdir().expect("temp dir");
        let chromium = fake_chromium(dir.path()).display().to_string();
        // The browsers may run as another user: the hold's marks are theirs to write.
        let mut permissions = std::fs::metadata(dir.path()).expect("metadata").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o777);
        std::fs::set_permissions(dir.path(), permissions).expect("chmod");
        let server = TestServer::start_with(&[("ANCHORAGE_CHROMIUM", chromium.as_str())], |_| {}).await;
        (server, Self { dir })
    }

    /// A start body whose launch is held (its first page is among the
    /// launch's arguments only without ad blocking: with it, the page opens
    /// after the launch).
    pub fn held_start() -> Value {
        json!({"session": {"initial_url": "http://127.0.0.1:9/anchorage-hold-launch"},
               "browser": {"adblock": {"active": false}}})
    }

    /// How many launches have reached the hold so far.
    pub fn held(&self) -> usize {
        std::fs::read_dir(self.dir.path()).map_or(0, |entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.file_name().to_string_lossy().starts_with("held-"))
                .count()
        })
    }

    /// Waits until `count` launches are held.
    pub async fn wait_for(&self, count: usize) {
        wait_until(&format!("{count} launches held"), Duration::from_secs(30), || {
            self.held() >= count
        })
        .await;
    }

    /// Lets every held launch, and every later one, go on to the real Chromium.
    pub fn release(&self) {
        std::fs::write(self.dir.path().join("release"), b"").expect("release the launches");
    }
}

/// How long `/parsing` of [`serve_test_page`] holds the end of its document.
pub const PARSING: std::time::Duration = std::time::Duration::from_millis(1500);

/// A test page server on 127.0.0.1; returns its base URL.
pub async fn serve_test_page() -> String {
    let router = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async {
                axum::response::Html(format!("<!doctype html><title>{TEST_PAGE_TITLE}</title><h1>hello</h1>"))
            }),
        )
        .route(
            "/second",
            axum::routing::get(|| async { axum::response::Html("<!doctype html><title>second page</title>") }),
        )
        .route(
            "/actions",
            axum::routing::get(|| async { axum::response::Html(ACTIONS_PAGE) }),
        )
        .route(
            "/lazy",
            axum::routing::get(|| async { axum::response::Html(LAZY_PAGE) }),
        )
        .route(
            "/report.csv",
            axum::routing::get(|| async {
                (
                    [
                        (axum::http::header::CONTENT_TYPE, "text/csv"),
                        (
                            axum::http::header::CONTENT_DISPOSITION,
                            "attachment; filename=\"report.csv\"",
                        ),
                    ],
                    DOWNLOAD_BODY,
                )
            }),
        );
    let router = router
        .route(
            "/article",
            axum::routing::get(|| async { axum::response::Html(ARTICLE_PAGE) }),
        )
        .route(
            "/form",
            axum::routing::get(|| async { axum::response::Html(FORM_PAGE) }),
        )
        .route(
            "/many",
            axum::routing::get(|| async {
                let items: String = (0..10_000)
                    .map(|index| format!("<li><a href=#{index}>item {index}</a></li>"))
                    .collect();
                axum::response::Html(format!("<!doctype html><title>many</title><ul>{items}</ul>"))
            }),
        )
        .route(
            "/later",
            axum::routing::get(|| async {
                axum::response::Html(
                    "<!doctype html><title>later</title><p id=first>first</p>\
                     <script>setTimeout(() => document.body.insertAdjacentHTML('beforeend', \
                     '<p>arrived ' + 'later</p>'), 1500)</script>",
                )
            }),
        )
        .route(
            "/stuck",
            axum::routing::get(|| async {
                axum::response::Html(
                    "<!doctype html><title>stuck</title><h1>shown before the load</h1><img src=/never.png>",
                )
            }),
        )
        // Never answers: a page with it never fires its load event.
        .route("/never.png", axum::routing::get(std::future::pending::<()>))
        .route(
            "/parsing",
            axum::routing::get(|| async {
                // The top now, the rest after PARSING: a document still
                // being parsed when its navigation has committed.
                let parts = futures_util::stream::unfold(0, |sent| async move {
                    match sent {
                        0 => Some((
                            Ok::<_, std::io::Error>("<!doctype html><title>parsing</title><h1>top</h1>"),
                            1,
                        )),
                        1 => {
                            tokio::time::sleep(PARSING).await;
                            Some((Ok("<button>Late</button>"), 2))
                        }
                        _ => None,
                    }
                });
                (
                    [(axum::http::header::CONTENT_TYPE, "text/html")],
                    axum::body::Body::from_stream(parts),
                )
            }),
        );
    let router = router.route(
        "/slow.csv",
        axum::routing::get(|| async {
            // Half now, half after SLOW_DOWNLOAD: a download that lasts.
            let halves = futures_util::stream::unfold(0, |sent| async move {
                match sent {
                    0 => Some((Ok::<_, std::io::Error>("a,b\n"), 1)),
                    1 => {
                        tokio::time::sleep(SLOW_DOWNLOAD).await;
                        Some((Ok("1,2\n"), 2))
                    }
                    _ => None,
                }
            });
            (
                [
                    (axum::http::header::CONTENT_TYPE, "text/csv"),
                    (
                        axum::http::header::CONTENT_DISPOSITION,
                        "attachment; filename=\"slow.csv\"",
                    ),
                ],
                axum::body::Body::from_stream(halves),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}")
}

/// A page that loads more as it is scrolled: 2000 px tall, it grows to
/// 4000 px once its bottom has been in view (as lazy and endless pages do).
pub const LAZY_PAGE: &str = "<!doctype html><title>lazy</title>\
    <style>body{margin:0}#more{height:1px}</style><div id=first style=\"height:2000px\"></div><div id=more></div>\
    <script>new IntersectionObserver((seen)=>{if(seen.some(e=>e.isIntersecting)){first.style.height='4000px';}})\
    .observe(document.getElementById('more'));</script>";

/// A page with what Markdown keeps: headings, a link, lists, a table, code.
pub const ARTICLE_PAGE: &str = "<!doctype html><title>article</title><style>h1{color:red}</style>\
    <script>var hidden = 'script text';</script><h1>Quarterly report</h1><h2>Revenue</h2>\
    <p>See <a href=\"https://example.com/q1\">the first quarter</a>.</p>\
    <ul><li>alpha</li><li>beta</li></ul><ol><li>one</li><li>two</li></ol>\
    <table><thead><tr><th>quarter</th><th>revenue</th></tr></thead>\
    <tbody><tr><td>Q1</td><td>112</td></tr></tbody></table>\
    <pre><code>let total = 237;</code></pre>";

/// How long `/slow.csv` of the test page server pauses in the middle.
pub const SLOW_DOWNLOAD: Duration = Duration::from_millis(400);

/// What `/report.csv` of the test page server answers, as an attachment.
pub const DOWNLOAD_BODY: &str = "a,b\n1,2\n";

/// A page for the REST actions: a button at (0,0)-(200,100) that counts
/// clicks and double clicks, a text input at (0,200)-(300,240), a box at
/// (400,0)-(450,50) that follows a drag, a button far down (`#far`), and a
/// body tall enough to scroll.
pub const ACTIONS_PAGE: &str = "<!doctype html><title>actions</title>\
    <style>body{margin:0;height:5000px}#b{position:absolute;left:0;top:0;width:200px;height:100px}\
    #t{position:absolute;left:0;top:200px;width:300px;height:40px}\
    #d{position:absolute;left:400px;top:0;width:50px;height:50px;background:red}\
    #far{position:absolute;left:0;top:3000px}</style>\
    <button id=b>b</button><input id=t><div id=d></div><button id=far>far</button>\
    <input type=file id=f style=\"position:absolute;left:0;top:400px\">\
    <a id=dl href=/report.csv download style=\"position:absolute;left:0;top:500px\">report</a>\
    <a id=slowdl href=/slow.csv download style=\"position:absolute;left:0;top:540px\">slow</a>\
    <script>window.clicks=0;window.doubles=0;window.farClicks=0;let dragging=false;\
    b.addEventListener('click',()=>clicks++);b.addEventListener('dblclick',()=>doubles++);\
    far.addEventListener('click',()=>farClicks++);\
    d.addEventListener('mousedown',()=>{dragging=true});\
    addEventListener('mousemove',e=>{if(dragging){d.style.left=(e.clientX-25)+'px';d.style.top=(e.clientY-25)+'px'}});\
    addEventListener('mouseup',()=>{dragging=false});</script>";

/// A minimal CDP client.
pub struct Cdp {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    /// Every message that was not an awaited answer (events, mostly), as text.
    pub passed_over: Vec<String>,
}

impl Cdp {
    pub async fn connect(url: &str) -> Self {
        // Large frames are part of what the proxy must carry.
        let config = anchorage_browser::websocket_config();
        let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), false)
            .await
            .expect("CDP connect");
        Self {
            socket,
            next_id: 0,
            passed_over: Vec::new(),
        }
    }

    pub async fn call(&mut self, method: &str, params: Value, session_id: Option<&str>) -> Value {
        let answer = self.answer(method, params, session_id).await;
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Sends a command without waiting for its answer (one that may never
    /// come, such as `Page.crash`).
    pub async fn send(&mut self, method: &str, params: Value, session_id: Option<&str>) {
        self.next_id += 1;
        let mut message = json!({"id": self.next_id, "method": method, "params": params});
        if let Some(session_id) = session_id {
            message["sessionId"] = json!(session_id);
        }
        self.socket
            .send(Message::text(message.to_string()))
            .await
            .expect("send");
    }

    /// Sends a command and returns its whole answer, error or not.
    pub async fn answer(&mut self, method: &str, params: Value, session_id: Option<&str>) -> Value {
        self.send(method, params, session_id).await;
        let id = self.next_id;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.socket.next())
                .await
                .expect("CDP answer in time")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(text) = message {
                let value: Value = serde_json::from_str(&text).expect("CDP JSON");
                if value["id"] == json!(id) {
                    return value;
                }
                self.passed_over.push(text.to_string());
            }
        }
    }

    /// Opens `url` in a new tab, waits for it to load, returns the CDP session id.
    pub async fn open_page(&mut self, url: &str) -> String {
        let created = self.call("Target.createTarget", json!({"url": url}), None).await;
        let target_id = created["targetId"].as_str().expect("target id").to_owned();
        let session = self.attach(&target_id).await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let state = self.evaluate(&session, "document.readyState").await;
            let href = self.evaluate(&session, "location.href").await;
            if state == json!("complete") && href.as_str().is_some_and(|href| href.starts_with(url)) {
                return session;
            }
            assert!(Instant::now() < deadline, "page {url} did not load");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Attaches to a target (flat); the CDP session id.
    pub async fn attach(&mut self, target_id: &str) -> String {
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
                None,
            )
            .await;
        attached["sessionId"].as_str().expect("session id").to_owned()
    }

    /// Attaches to the newest page the browser has (the one REST actions
    /// act on) and returns the CDP session id.
    pub async fn attach_newest_page(&mut self) -> String {
        let targets = self.call("Target.getTargets", json!({}), None).await;
        let target_id = targets["targetInfos"]
            .as_array()
            .expect("targets")
            .iter()
            .rev()
            .find(|info| info["type"] == json!("page"))
            .and_then(|info| info["targetId"].as_str())
            .expect("a page")
            .to_owned();
        self.attach(&target_id).await
    }

    pub async fn evaluate(&mut self, session: &str, expression: &str) -> Value {
        self.evaluate_answer(session, expression).await["result"]["value"].clone()
    }

    /// Evaluates in a session and returns the whole answer: `result`, and
    /// `exceptionDetails` when the expression threw.
    pub async fn evaluate_answer(&mut self, session: &str, expression: &str) -> Value {
        self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
            Some(session),
        )
        .await
    }

    /// Waits until the server closes this connection.
    pub async fn closed(&mut self, within: Duration) {
        let outcome = tokio::time::timeout(within, async {
            loop {
                match self.socket.next().await {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await;
        assert!(outcome.is_ok(), "the connection stayed open");
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// The HTTP status a refused WebSocket upgrade answered with.
pub async fn refused_upgrade_status(url: &str) -> u16 {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("upgrade to {url} was accepted"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("unexpected upgrade error: {other}"),
    }
}

impl TestServer {
    /// The main Chromium process of a session.
    pub fn main_browser_pid(&self, session_id: &str) -> Option<u32> {
        let simple = session_id.replace('-', "");
        let marker = format!("--user-data-dir={}/{simple}/", self.browsers_dir().display());
        self.browser_pids().into_iter().find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let ours = cmdline
                .split(|byte| *byte == 0)
                .any(|argument| argument.starts_with(marker.as_bytes()));
            ours && self.main_browser_pid_is(*pid)
        })
    }
}

impl TestServer {
    /// Whether `pid` is a browser's main process: it leads its process group
    /// and its parent is not one of our browsers (a helper Chromium forks off
    /// into a session of its own, such as the crash handler, is not one).
    pub fn main_browser_pid_is(&self, pid: u32) -> bool {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<u32> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(2)
            .filter_map(|field| field.parse().ok())
            .collect();
        let [parent, group] = fields[..] else { return false };
        group == pid && !self.browser_pids().contains(&parent)
    }
}

impl TestServer {
    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(reqwest::Method::PATCH, path, Some(TEST_KEY), Some(body))
            .await
    }

    /// Creates a batch and returns its id.
    pub async fn create_batch(&self, body: Value) -> String {
        let (status, answer) = self.post("/v1/batch-sessions", body).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["data"]["status"], json!("pending"));
        answer["data"]["batch_id"].as_str().expect("batch id").to_owned()
    }

    pub async fn batch(&self, batch_id: &str) -> Value {
        let (status, answer) = self.get(&format!("/v1/batch-sessions/{batch_id}")).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        let data = answer["data"].clone();
        assert_counts_add_up(&data);
        data
    }

    /// Polls a batch until `done` holds for it.
    pub async fn wait_for_batch(&self, batch_id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let batch = self.batch(batch_id).await;
            if done(&batch) {
                return batch;
            }
            assert!(
                Instant::now() < deadline,
                "batch never reached the state waited for: {batch}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Command lines of every process in this server's browsers' process
    /// groups (renderers, GPU, utilities; each as one string).
    pub fn browser_group_command_lines(&self) -> Vec<String> {
        self.browser_pids()
            .into_iter()
            .filter(|pid| self.main_browser_pid_is(*pid))
            .flat_map(group_members)
            .filter_map(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).ok())
            .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
            .collect()
    }

    /// Main browser processes of this server alive now.
    pub fn main_browser_count(&self) -> usize {
        self.browser_pids()
            .into_iter()
            .filter(|pid| self.main_browser_pid_is(*pid))
            .count()
    }
}

/// The counts of a batch's full status always add up to its total.
pub fn assert_counts_add_up(batch: &Value) {
    let count = |key: &str| batch[key].as_i64().unwrap_or_else(|| panic!("{key} missing: {batch}"));
    let sum = count("completed_requests")
        + count("failed_requests")
        + count("processing_requests")
        + count("pending_requests")
        + count("cancelled_requests");
    assert_eq!(sum, count("total_requests"), "{batch}");
    let items = batch["sessions"].as_array().map_or(0, Vec::len) as i64;
    assert_eq!(items, count("total_requests"), "{batch}");
}

/// Defect: test settings fell back to the whole process environment, so a
/// developer's exported `ANCHORAGE_*` reached every test server.
#[test]
fn test_settings_take_nothing_from_the_environment_but_path() {
    use anchorage_server::Source;
    let settings = Settings(HashMap::from([("ANCHORAGE_MAX_SESSIONS".to_owned(), "4".to_owned())]));
    // Whatever else the environment holds does not come through.
    for (name, _) in std::env::vars().filter(|(name, _)| name != "PATH" && name != "ANCHORAGE_MAX_SESSIONS") {
        assert_eq!(settings.get(&name), None, "{name} leaked into the test settings");
    }
    assert_eq!(settings.get("ANCHORAGE_LOG"), None);
    assert_eq!(settings.get("ANCHORAGE_MAX_SESSIONS").as_deref(), Some("4"));
    assert_eq!(
        settings.get("PATH"),
        std::env::var("PATH").ok().filter(|path| !path.is_empty())
    );
}

/// An answer's status, content type and bytes.
async fn bytes_of(response: reqwest::Response) -> (StatusCode, String, Vec<u8>) {
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, response.bytes().await.expect("body").to_vec())
}

/// The processes of a browser's group (its main process is the group leader).
pub fn group_members(leader: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                // After the command's closing parenthesis: state, parent, group.
                stat.rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok())
                    == Some(leader)
            })
        })
        .collect()
}

/// A form for agents: a heading, a field, a choice, a button that writes
/// what it got into the page, and a box that appears a moment after a click.
pub const FORM_PAGE: &str = "<!doctype html><title>order form</title><h1>Order</h1>\
<label>Name <input id=name></label>\
<select id=size aria-label=Size><option value=s>Small</option><option value=l>Large</option></select>\
<button id=send onclick=\"document.getElementById('out').textContent = 'sent ' + document.getElementById('name').value + ' ' + document.getElementById('size').value; \
setTimeout(() => document.body.insertAdjacentHTML('beforeend', '<p id=later>thanks</p>'), 300)\">Send</button>\
<p id=out>nothing yet</p><div id=box><button>Inner</button></div>";

//! What the process tests share: the `anchorage` binary started as a
//! server process with a clean environment, calls to it, and waits.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const KEY: &str = "process-test-key-0123";

/// The binary with a clean environment: only what a test sets, plus `PATH`
/// (to find Chromium), `HOME` and `TMPDIR` (where the test run keeps its
/// browsers), so that a developer's exported `ANCHORAGE_*` never leaks in.
pub fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_anchorage"));
    command.env_clear();
    for name in ["PATH", "HOME", "TMPDIR"] {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    // Tests that count browsers see only their sessions': no template
    // browser indexing the ad blocking rules ahead beside them.
    command.env("ANCHORAGE_ADBLOCK_INDEX_AHEAD", "off");
    command
}

/// Follows a server's stderr in a thread: copies it to `log` if given, and
/// reads the address it listens on from its start line (the server binds
/// port 0, so no two tests can race for a port).
pub fn follow_stderr(
    stderr: std::process::ChildStderr,
    mut log: Option<std::fs::File>,
) -> (std::net::SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{BufRead, Write};
    let (address_sender, address) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut address_sender = Some(address_sender);
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(log) = log.as_mut() {
                let _ = writeln!(log, "{line}");
            }
            let bound = line
                .split("listening on ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|text| text.parse::<std::net::SocketAddr>().ok());
            if let (Some(bound), Some(sender)) = (bound, address_sender.as_ref()) {
                let _ = sender.send(bound);
                address_sender = None;
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(30))
        .expect("the server printed the address it listens on");
    (address, reader)
}

/// A log filter that keeps the server's start line (the bound address).
pub const QUIET_LOG: &str = "warn,anchorage=info";

pub struct Server {
    pub child: Child,
    pub base: String,
    pub data_dir: std::path::PathBuf,
    /// The thread copying its stderr; joined once it has exited, so that
    /// the log is complete.
    pub stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    pub fn start(data_dir: &Path, extra: &[(&str, &str)]) -> Self {
        Self::start_with_log(data_dir, extra, None)
    }

    /// Starts a server; its stderr goes to `log` when one is given.
    pub fn start_with_log(data_dir: &Path, extra: &[(&str, &str)], log: Option<std::fs::File>) -> Self {
        let mut command = binary();
        command
            .arg("serve")
            .env("ANCHORAGE_LISTEN", "127.0.0.1:0")
            .env("ANCHORAGE_DATA_DIR", data_dir)
            .env("ANCHORAGE_API_KEY", KEY)
            .env("ANCHORAGE_MAX_SESSIONS", "4")
            .env("ANCHORAGE_POOL_SIZE", "0")
            .env("ANCHORAGE_LOG", QUIET_LOG)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in extra {
            command.env(key, value);
        }
        // A file-size limit (the full-disk test) must fail writes with EFBIG,
        // as a full disk fails them with ENOSPC, not kill the server.
        #[allow(unsafe_code)]
        // SAFETY: only an async-signal-safe call between fork and exec.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn anchorage");
        let (bound, stderr_reader) = follow_stderr(child.stderr.take().expect("stderr"), log);
        let server = Self {
            child,
            base: format!("http://{bound}"),
            data_dir: data_dir.to_path_buf(),
            stderr_reader: Some(stderr_reader),
        };
        server.wait_ready();
        server
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(self.base.trim_start_matches("http://")).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server at {} never listened", self.base);
    }

    pub fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let mut request = reqwest::Client::new()
                .request(method, format!("{}{path}", self.base))
                .header("anchor-api-key", KEY);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.expect("send");
            let status = response.status().as_u16();
            (status, response.json().await.expect("JSON"))
        })
    }

    /// A `GET` of `path` as raw bytes: the status and the body.
    pub fn get_bytes(&self, path: &str) -> (u16, Vec<u8>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(format!("{}{path}", self.base))
                .header("anchor-api-key", KEY)
                .send()
                .await
                .expect("send");
            let status = response.status().as_u16();
            (status, response.bytes().await.expect("body").to_vec())
        })
    }

    pub fn signal(&self, signal: i32) {
        #[allow(unsafe_code)]
        // SAFETY: a plain syscall with integer arguments.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }
}

impl Drop for Server {
    /// Stops the server the clean way, so that it ends its browsers; a test
    /// must not leave any behind, even when it fails.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(25));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        if self.data_dir.exists() {
            for pid in browser_pids(&self.data_dir) {
                #[allow(unsafe_code)]
                // SAFETY: a plain syscall with integer arguments.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
    }
}

pub fn browser_pids(data_dir: &Path) -> Vec<u32> {
    let data_dir = std::fs::canonicalize(data_dir).expect("dir");
    anchorage_browser::leftover_browser_pids(&data_dir.join("browsers"))
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

pub fn batch(server: &Server, batch_id: &str) -> Value {
    let (status, answer) = server.call(reqwest::Method::GET, &format!("/v1/batch-sessions/{batch_id}"), None);
    assert_eq!(status, 200, "{answer}");
    answer["data"].clone()
}

pub fn wait_for_batch(server: &Server, batch_id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let current = batch(server, batch_id);
        if done(&current) {
            return current;
        }
        assert!(Instant::now() < deadline, "batch never got there: {current}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn create_batch(server: &Server, count: u32) -> String {
    let (status, answer) = server.call(
        reqwest::Method::POST,
        "/v1/batch-sessions",
        Some(json!({"count": count})),
    );
    assert_eq!(status, 200, "{answer}");
    answer["data"]["batch_id"].as_str().expect("batch id").to_owned()
}

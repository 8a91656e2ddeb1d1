//! The `anchorage` binary as a process: SIGKILL and restart, SIGTERM, first
//! start, key administration, and one-line errors for bad settings.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;

use common::*;

#[test]
fn after_a_sigkill_the_next_start_kills_the_old_browsers_and_shows_nothing_running() {
    killed_and_restarted(&[]);
}

/// The same with context sessions: their host browser is reaped like any.
#[test]
fn after_a_sigkill_the_next_start_kills_the_old_host_browsers_too() {
    killed_and_restarted(&[("ANCHORAGE_SESSION_ISOLATION", "context")]);
}

fn killed_and_restarted(settings: &[(&str, &str)]) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut first = Server::start(data_dir.path(), settings);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, answer) = first.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
        assert_eq!(status, 200, "{answer}");
        ids.push(answer["data"]["id"].as_str().expect("id").to_owned());
    }
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    // Its browsers are the subject of this test: dropping it must not clean them.
    first.data_dir = std::path::PathBuf::new();
    drop(first);
    // The browsers outlive a killed server: that is what the restart must clean.
    let orphans = browser_pids(data_dir.path());
    assert!(!orphans.is_empty(), "expected orphaned browsers after SIGKILL");

    let second = Server::start(data_dir.path(), settings);
    wait_until("old browsers gone", || browser_pids(data_dir.path()).is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(data_dir.path().join("browsers"))
        .expect("dir")
        .filter_map(Result::ok)
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for id in &ids {
        let (status, answer) = second.call(reqwest::Method::GET, &format!("/v1/sessions/{id}"), None);
        assert_eq!(status, 200);
        assert_eq!(answer["data"]["status"], json!("failed"), "{answer}");
        assert!(
            answer["data"]["end_reason"]
                .as_str()
                .unwrap_or_default()
                .contains("server stopped"),
            "{answer}"
        );
    }
    let (_, live) = second.call(reqwest::Method::GET, "/v1/sessions/all/status", None);
    assert_eq!(live["data"]["count"], json!(0));
    // And the restarted server works.
    let (status, _) = second.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
    assert_eq!(status, 200);
}

#[test]
fn sigterm_ends_every_browser_and_exits_zero() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut server = Server::start(data_dir.path(), &[]);
    let (status, _) = server.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
    assert_eq!(status, 200);
    assert!(!browser_pids(data_dir.path()).is_empty());
    server.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().expect("wait") {
            break exit;
        }
        assert!(Instant::now() < deadline, "server did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(25));
    };
    assert!(exit.success(), "{exit:?}");
    wait_until("browsers gone after SIGTERM", || {
        browser_pids(data_dir.path()).is_empty()
    });
}

fn run(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = binary();
    command.args(args).env_remove("ANCHORAGE_API_KEY");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("run anchorage")
}

#[test]
fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let dir = data_dir.path().display().to_string();
    let envs = [("ANCHORAGE_DATA_DIR", dir.as_str())];
    let created = run(&["keys", "create", "--team", "ops"], &envs);
    assert!(created.status.success(), "{created:?}");
    let stdout = String::from_utf8(created.stdout).expect("utf-8");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "the key alone on one line: {stdout:?}");
    let key = lines[0];
    assert!(key.starts_with("anc_") && key.len() > 40);

    let listed = String::from_utf8(run(&["keys", "list"], &envs).stdout).expect("utf-8");
    let prefix: String = key.chars().take(12).collect();
    assert!(listed.contains(&prefix) && listed.contains("ops"), "{listed}");
    assert!(!listed.contains(key), "keys must never be shown again");
    let database = std::fs::read(data_dir.path().join("anchorage.db")).expect("db");
    assert!(
        !database.windows(key.len()).any(|window| window == key.as_bytes()),
        "keys are stored hashed"
    );

    assert!(run(&["keys", "revoke", &prefix], &envs).status.success());
    let again = run(&["keys", "revoke", &prefix], &envs);
    assert!(!again.status.success());
}

#[test]
fn bad_settings_are_one_line_errors_naming_the_setting() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let dir = data_dir.path().display().to_string();
    let file = data_dir.path().join("file");
    std::fs::write(&file, "not a dir").expect("write");
    let file = file.display().to_string();
    for (envs, setting) in [
        (
            vec![
                ("ANCHORAGE_DATA_DIR", dir.as_str()),
                ("ANCHORAGE_CHROMIUM", "/nonexistent/chromium"),
            ],
            "ANCHORAGE_CHROMIUM",
        ),
        (
            vec![("ANCHORAGE_DATA_DIR", dir.as_str()), ("ANCHORAGE_MAX_SESSIONS", "lots")],
            "ANCHORAGE_MAX_SESSIONS",
        ),
        (
            vec![("ANCHORAGE_DATA_DIR", dir.as_str()), ("ANCHORAGE_LISTEN", "here")],
            "ANCHORAGE_LISTEN",
        ),
        (vec![("ANCHORAGE_DATA_DIR", file.as_str())], "ANCHORAGE_DATA_DIR"),
    ] {
        let output = run(&["serve"], &envs);
        assert!(!output.status.success());
        let stderr = String::from_utf8(output.stderr).expect("utf-8");
        let error_lines: Vec<&str> = stderr.lines().filter(|line| line.starts_with("anchorage:")).collect();
        assert_eq!(error_lines.len(), 1, "{stderr}");
        assert!(error_lines[0].contains(setting), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn the_first_start_prints_a_key_that_works() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut child = binary()
        .arg("serve")
        .env("ANCHORAGE_LISTEN", "127.0.0.1:0")
        .env("ANCHORAGE_DATA_DIR", data_dir.path())
        .env("ANCHORAGE_LOG", QUIET_LOG)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut bound = None;
    let key = lines.by_ref().map_while(Result::ok).find_map(|line| {
        if let Some(rest) = line.split("listening on ").nth(1) {
            bound = rest.split_whitespace().next().map(str::to_owned);
        }
        line.split_whitespace()
            .find(|word| word.starts_with("anc_"))
            .map(str::to_owned)
    });
    // Keep reading, as a terminal would, so the server never writes to a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    let mut server = Server {
        child,
        base: format!("http://{}", bound.expect("the start line names the address")),
        data_dir: data_dir.path().to_path_buf(),
        stderr_reader: None,
    };
    let key = key.expect("a key was printed");
    server.wait_ready();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .get(format!("{}/v1/sessions", server.base))
            .header("anchor-api-key", key.trim_end_matches('\''))
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    });
    assert_eq!(status, 200);
    server.signal(libc::SIGTERM);
    let _ = server.child.wait();
}

#[test]
fn after_a_sigkill_mid_batch_the_restart_resumes_it_and_keeps_a_cancel() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut first = Server::start(data_dir.path(), &[("ANCHORAGE_MAX_SESSIONS", "2")]);
    let half_done = create_batch(&first, 4);
    wait_for_batch(&first, &half_done, |batch| batch["completed_requests"] == json!(2));
    let cancelled = create_batch(&first, 2);
    let (status, answer) = first.call(
        reqwest::Method::PATCH,
        &format!("/v1/batch-sessions/{cancelled}"),
        Some(json!({"status": "cancelled"})),
    );
    assert_eq!(status, 200, "{answer}");
    // Killed while this one's items are queued or launching.
    let (status, _) = first.call(reqwest::Method::DELETE, "/v1/sessions/all", None);
    assert_eq!(status, 200);
    let mid_launch = create_batch(&first, 2);
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    first.data_dir = std::path::PathBuf::new();
    drop(first);

    let second = Server::start(data_dir.path(), &[("ANCHORAGE_MAX_SESSIONS", "4")]);
    let mut connectable = 0;
    for batch_id in [&half_done, &mid_launch] {
        let done = wait_for_batch(&second, batch_id, |batch| {
            batch["pending_requests"] == json!(0) && batch["processing_requests"] == json!(0)
        });
        assert_eq!(done["status"], json!("completed"), "{done}");
        let items = done["sessions"].as_array().expect("items");
        assert!(items.iter().all(|item| item["status"] == json!("completed")), "{done}");
        connectable += items.iter().filter(|item| item["cdp_url"].is_string()).count();
    }
    let cancelled = batch(&second, &cancelled);
    assert_eq!(cancelled["status"], json!("cancelled"));
    assert_eq!(cancelled["cancelled_requests"], json!(2), "{cancelled}");
    // Items whose session came up before the kill died with the old server;
    // the rest were started by the new one. Nothing of the cancelled batch.
    let (_, live) = second.call(reqwest::Method::GET, "/v1/sessions/all/status", None);
    assert_eq!(live["data"]["count"], json!(connectable), "{live}");
    assert!(connectable >= 2, "the killed mid-launch batch was not resumed");
    let (_, of_cancelled) = second.call(
        reqwest::Method::GET,
        &format!(
            "/v1/sessions/all/status?batch_id={}",
            cancelled["batch_id"].as_str().unwrap_or_default()
        ),
        None,
    );
    assert_eq!(of_cancelled["data"]["count"], json!(0));
    assert_eq!(browser_groups(data_dir.path()), connectable);
}

/// How many browsers (process groups) of this data dir run.
fn browser_groups(data_dir: &Path) -> usize {
    let mut groups: Vec<u32> = browser_pids(data_dir)
        .into_iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            stat.rsplit(')').next()?.split_whitespace().nth(2)?.parse().ok()
        })
        .collect();
    groups.sort_unstable();
    groups.dedup();
    groups.len()
}

/// Runs the command-line client against a server; parses stdout as JSON
/// when the command succeeded with `--json`.
fn cli(server: &Server, key: &str, args: &[&str]) -> (Output, Value) {
    let output = run(args, &[("ANCHORAGE_URL", &server.base), ("ANCHORAGE_API_KEY", key)]);
    let value = if output.status.success() && args.contains(&"--json") {
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(&output.stdout)))
    } else {
        Value::Null
    };
    (output, value)
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_cli_creates_waits_for_and_manages_batches_and_sessions() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data_dir.path(), &[]);
    let (output, batch) = cli(&server, KEY, &["batch", "create", "--count", "3", "--wait", "--json"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["completed_requests"], 3);
    let items = batch["sessions"].as_array().expect("items");
    assert_eq!(items.len(), 3);
    assert!(items.iter().all(|item| item["cdp_url"].as_str().is_some()), "{batch}");
    let batch_id = batch["batch_id"].as_str().expect("id").to_owned();

    let (_, listed) = cli(&server, KEY, &["batch", "list", "--json"]);
    assert_eq!(listed["batches"][0]["batch_id"], batch_id.as_str());
    let (_, shown) = cli(&server, KEY, &["batch", "show", &batch_id, "--json"]);
    assert_eq!(shown["total_requests"], 3);
    let (output, _) = cli(&server, KEY, &["batch", "show", &batch_id]);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("3 completed") && text.contains(&batch_id), "{text}");

    let (_, started) = cli(&server, KEY, &["session", "create", "--tag", "cli", "--json"]);
    let session_id = started["id"].as_str().expect("id").to_owned();
    let (_, live) = cli(&server, KEY, &["session", "list", "--json"]);
    assert_eq!(live["count"], 4, "{live}");
    let (output, _) = cli(&server, KEY, &["session", "end", &session_id]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let (_, live) = cli(&server, KEY, &["session", "list", "--json"]);
    assert_eq!(live["count"], 3, "{live}");

    let (_, retried) = cli(&server, KEY, &["batch", "retry", &batch_id, "--json"]);
    assert_eq!(retried["retried_sessions"], 0, "{retried}");
    // A completed batch cannot be cancelled: the server's message, exit 1.
    let (output, _) = cli(&server, KEY, &["batch", "cancel", &batch_id]);
    assert!(!output.status.success());
    assert!(
        stderr_of(&output).contains("already completed"),
        "{}",
        stderr_of(&output)
    );
    let (_, deleted) = cli(&server, KEY, &["batch", "delete", &batch_id, "--json"]);
    assert_eq!(deleted["deleted_sessions"], 3, "{deleted}");

    // Without --wait the answer comes at once, and a pending batch cancels.
    let (_, accepted) = cli(&server, KEY, &["batch", "create", "--count", "2", "--json"]);
    assert_eq!(accepted["status"], "pending");
    let second = accepted["batch_id"].as_str().expect("id");
    let (output, _) = cli(&server, KEY, &["batch", "cancel", second]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("batch cancelled"));
    wait_until("no browser left", || browser_pids(data_dir.path()).is_empty());
}

#[test]
fn every_cli_command_fails_with_the_servers_message() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data_dir.path(), &[]);
    let unknown = "6f1c2a4e-8d1b-4c5e-9a7f-0b2c3d4e5f60";
    let commands: [&[&str]; 10] = [
        &["batch", "create", "--count", "1"],
        &["batch", "list"],
        &["batch", "show", unknown],
        &["batch", "cancel", unknown],
        &["batch", "delete", unknown],
        &["batch", "retry", unknown],
        &["session", "create"],
        &["session", "list"],
        &["session", "end", unknown],
        &["batch", "create", "--count", "1", "--wait"],
    ];
    for command in commands {
        let (output, _) = cli(&server, "not-a-key", command);
        assert!(!output.status.success(), "{command:?} succeeded with a bad key");
        assert!(
            stderr_of(&output).contains("Invalid API Key"),
            "{command:?}: {}",
            stderr_of(&output)
        );
    }
    for (command, message) in [
        (&["batch", "show", unknown][..], "Batch not found"),
        (&["batch", "cancel", unknown][..], "Batch not found"),
        (&["batch", "delete", unknown][..], "Batch not found"),
        (&["batch", "retry", unknown][..], "Batch not found"),
        (&["batch", "show", "../../v1/sessions"][..], "Batch not found"),
        (&["session", "end", unknown][..], "Session not found"),
        (&["batch", "create", "--count", "0"][..], "count must be an integer"),
    ] {
        let (output, _) = cli(&server, KEY, command);
        assert!(!output.status.success(), "{command:?} succeeded");
        assert!(
            stderr_of(&output).contains(message),
            "{command:?}: {}",
            stderr_of(&output)
        );
    }
    // No key at all, and no server.
    let output = run(&["session", "list"], &[("ANCHORAGE_URL", &server.base)]);
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("--api-key"), "{}", stderr_of(&output));
    let output = run(
        &["session", "list", "--api-key", KEY],
        &[("ANCHORAGE_URL", "http://127.0.0.1:9")],
    );
    assert!(!output.status.success());
    assert!(stderr_of(&output).contains("cannot reach"), "{}", stderr_of(&output));
}

/// Sets the server's limit on the size of files it writes (`None`: none).
fn limit_file_size(server: &Server, bytes: Option<u64>) {
    let limit = libc::rlimit {
        rlim_cur: bytes.unwrap_or(libc::RLIM_INFINITY),
        rlim_max: libc::RLIM_INFINITY,
    };
    #[allow(unsafe_code)]
    // SAFETY: a plain syscall on another process with a valid struct.
    let result = unsafe {
        libc::prlimit(
            server.child.id() as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(result, 0, "prlimit: {}", std::io::Error::last_os_error());
}

#[test]
fn a_full_disk_is_a_clear_503_and_the_server_recovers_when_space_returns() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(data_dir.path(), &[]);
    let (status, _) = server.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
    assert_eq!(status, 200);

    // No file of the server may grow past one byte: every database write fails.
    limit_file_size(&server, Some(1));
    for (method, path, body) in [
        (reqwest::Method::POST, "/v1/sessions", json!({})),
        (reqwest::Method::POST, "/v1/sessions/async", json!({})),
        (reqwest::Method::POST, "/v1/batch-sessions", json!({"count": 2})),
    ] {
        let (status, answer) = server.call(method, path, Some(body));
        assert_eq!(status, 503, "{path}: {answer}");
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("database") && message.contains("try again"),
            "{answer}"
        );
    }
    let (status, live) = server.call(reqwest::Method::GET, "/v1/sessions/all/status", None);
    assert_eq!(status, 200, "reads still work: {live}");
    assert_eq!(live["data"]["count"], json!(1));

    // Space returns: everything works again, and nothing refused was kept.
    limit_file_size(&server, None);
    let (status, answer) = server.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
    assert_eq!(status, 200, "{answer}");
    let (_, batches) = server.call(reqwest::Method::GET, "/v1/batch-sessions", None);
    assert_eq!(batches["data"]["pagination"]["total_records"], json!(0), "{batches}");
    let (_, live) = server.call(reqwest::Method::GET, "/v1/sessions/all/status", None);
    assert_eq!(live["data"]["count"], json!(2), "{live}");
    drop(server);

    let output = Command::new("python3")
        .arg("-c")
        .arg("import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('PRAGMA integrity_check').fetchone()[0])")
        .arg(data_dir.path().join("anchorage.db"))
        .output()
        .expect("python3");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "ok", "{output:?}");
}

/// A small deterministic generator, seeded from the clock (the seed is printed).
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// Checks what must hold after any restart: every batch's counts add up,
/// and nothing of a cancelled batch runs.
fn check_batches(server: &Server, batches: &[String], cancelled: &[String]) {
    for batch_id in batches {
        let current = batch(server, batch_id);
        let sum: i64 = [
            "completed_requests",
            "failed_requests",
            "processing_requests",
            "pending_requests",
            "cancelled_requests",
        ]
        .iter()
        .map(|key| current[key].as_i64().unwrap_or(-1000))
        .sum();
        assert_eq!(Some(sum), current["total_requests"].as_i64(), "{current}");
    }
    for batch_id in cancelled {
        let current = batch(server, batch_id);
        assert_eq!(current["status"], json!("cancelled"), "{current}");
        let (_, running) = server.call(
            reqwest::Method::GET,
            &format!("/v1/sessions/all/status?batch_id={batch_id}"),
            None,
        );
        assert_eq!(running["data"]["count"], json!(0), "a cancelled batch runs: {running}");
    }
}

#[test]
fn killed_at_random_points_of_batches_again_and_again_the_server_always_recovers() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    // ANCHORAGE_TEST_SEED replays a run.
    let seed = std::env::var("ANCHORAGE_TEST_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |since| since.as_nanos() as u64)
        });
    eprintln!("seed {seed}");
    let mut random = Random(seed);
    let settings = [("ANCHORAGE_MAX_SESSIONS", "3")];
    let (mut batches, mut cancelled) = (Vec::new(), Vec::new());
    let mut orphans: Vec<u32> = Vec::new();
    for _ in 0..5 {
        let mut server = Server::start(data_dir.path(), &settings);
        wait_until("the last run's browsers gone", || {
            orphans.iter().all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        });
        check_batches(&server, &batches, &cancelled);

        let batch_id = create_batch(&server, 1 + random.below(4) as u32);
        batches.push(batch_id.clone());
        if random.below(2) == 0 {
            std::thread::sleep(Duration::from_millis(random.below(400)));
            let (status, answer) = server.call(
                reqwest::Method::PATCH,
                &format!("/v1/batch-sessions/{batch_id}"),
                Some(json!({"status": "cancelled"})),
            );
            // A cancel either wins, with its count, or finds the batch
            // already at its end (a small batch can finish first); any
            // other answer fails here instead of dropping out of the checks.
            match status {
                200 => {
                    assert!(answer["data"]["cancelled_sessions"].is_u64(), "{answer}");
                    cancelled.push(batch_id);
                }
                409 => {
                    let now = batch(&server, &batch_id);
                    assert!(
                        now["status"] == json!("completed") || now["status"] == json!("failed"),
                        "a 409 for a batch that had not ended: {answer} {now}"
                    );
                }
                _ => panic!("the cancel answered {status}: {answer}"),
            }
        }
        std::thread::sleep(Duration::from_millis(random.below(1500)));
        server.signal(libc::SIGKILL);
        let _ = server.child.wait();
        orphans = browser_pids(data_dir.path());
        // The orphans are for the next start to clean up.
        server.data_dir = std::path::PathBuf::new();
    }

    let server = Server::start(data_dir.path(), &settings);
    wait_until("the last run's browsers gone", || {
        orphans.iter().all(|pid| !Path::new(&format!("/proc/{pid}")).exists())
    });
    // No item stays stuck: every batch gets to its end. Sessions that run
    // hold their places (three here) until they end, so the test ends them
    // as they come up, as their users would.
    for batch_id in &batches {
        wait_for_batch(&server, batch_id, |batch| {
            let done = batch["pending_requests"] == json!(0) && batch["processing_requests"] == json!(0);
            if !done {
                server.call(reqwest::Method::DELETE, "/v1/sessions/all", None);
            }
            done
        });
    }
    check_batches(&server, &batches, &cancelled);
    let (_, live) = server.call(reqwest::Method::GET, "/v1/sessions/all/status", None);
    let running = live["data"]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("no count in {live}")) as usize;
    assert_eq!(browser_groups(data_dir.path()), running, "{live}");
}

#[test]
fn no_key_or_token_reaches_the_log_even_at_debug_level() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let log_path = data_dir.path().join("server.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let server = Server::start_with_log(data_dir.path(), &[("ANCHORAGE_LOG", "debug")], Some(log));
    // A webhook's secrets, made and rotated, and a delivery signed with
    // them, while the log is at debug.
    let receiver = HoldingReceiver::start();
    receiver.answer.store(true, std::sync::atomic::Ordering::SeqCst);
    let (_, webhook) = server.call(
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({"url": receiver.url, "subscribed_events": ["session.completed"]})),
    );
    let webhook_id = webhook["id"].as_str().expect("webhook id").to_owned();
    let (_, rotated) = server.call(
        reqwest::Method::POST,
        &format!("/v1/webhooks/{webhook_id}/rotate-secret"),
        None,
    );
    let secrets = [
        webhook["secret"].as_str().expect("secret").to_owned(),
        rotated["secret"].as_str().expect("secret").to_owned(),
    ];
    let (_, created) = server.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
    let cdp_url = created["data"]["cdp_url"].as_str().expect("cdp url").to_owned();
    let live_view_url = created["data"]["live_view_url"]
        .as_str()
        .expect("live view url")
        .to_owned();
    let session_id = created["data"]["id"].as_str().expect("id").to_owned();
    let token = cdp_url.rsplit("token=").next().expect("token").to_owned();
    let ws_base = server.base.replacen("http://", "ws://", 1);
    // Every way a secret travels: the header, the SDK's query form, the token
    // (right and wrong), the live view.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for url in [
            cdp_url.clone(),
            format!("{ws_base}/?apiKey={KEY}&sessionId={session_id}"),
            format!("{ws_base}/cdp/{session_id}?token=0{token}"),
            format!("{ws_base}/?apiKey=wrong-{KEY}&sessionId={session_id}"),
        ] {
            if let Ok((mut socket, _)) = tokio_tungstenite::connect_async(url.as_str()).await {
                let _ = socket.close(None).await;
            }
        }
        let page = reqwest::get(&live_view_url).await.expect("live view page");
        assert_eq!(page.status(), 200);
    });
    server.call(reqwest::Method::DELETE, &format!("/v1/sessions/{session_id}"), None);
    wait_until("the session's event delivered", || !receiver.got().is_empty());
    drop(server);
    let text = std::fs::read_to_string(&log_path).expect("log");
    assert!(text.contains("request"), "the log has request lines: {text:.500}");
    for secret in [KEY, token.as_str(), secrets[0].as_str(), secrets[1].as_str()] {
        assert!(!text.contains(secret), "a secret is in the log:\n{text}");
    }
}

/// A webhook receiver on 127.0.0.1 that records each request's
/// `Anchor-Delivery-Id` and body, and answers `200` only once `answer` is
/// set (until then it holds the connection open without a word).
struct HoldingReceiver {
    url: String,
    got: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    answer: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl HoldingReceiver {
    fn start() -> Self {
        use std::io::{BufRead, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let answer = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (recorded, answering) = (got.clone(), answer.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let (recorded, answering) = (recorded.clone(), answering.clone());
                std::thread::spawn(move || {
                    let mut reader = std::io::BufReader::new(&stream);
                    let (mut delivery_id, mut length) = (String::new(), 0usize);
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        let (name, value) = line.split_once(':').unwrap_or_default();
                        match name.to_ascii_lowercase().as_str() {
                            "anchor-delivery-id" => delivery_id = value.trim().to_owned(),
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    recorded
                        .lock()
                        .expect("lock")
                        .push((delivery_id, String::from_utf8_lossy(&body).into_owned()));
                    let deadline = Instant::now() + Duration::from_secs(60);
                    while !answering.load(Ordering::SeqCst) && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = (&stream).write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                });
            }
        });
        Self { url, got, answer }
    }

    fn got(&self) -> Vec<(String, String)> {
        self.got.lock().expect("lock").clone()
    }
}

#[test]
fn a_webhook_delivery_cut_off_by_a_sigkill_is_made_after_the_restart_with_its_delivery_id() {
    let receiver = HoldingReceiver::start();
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut first = Server::start(data_dir.path(), &[]);
    let (status, webhook) = first.call(
        reqwest::Method::POST,
        "/v1/webhooks",
        Some(json!({"url": receiver.url, "subscribed_events": ["session.completed"]})),
    );
    assert_eq!(status, 201, "{webhook}");
    let webhook_id = webhook["id"].as_str().expect("id").to_owned();
    let (status, session) = first.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
    assert_eq!(status, 200, "{session}");
    let session_id = session["data"]["id"].as_str().expect("id").to_owned();
    let (status, _) = first.call(reqwest::Method::DELETE, &format!("/v1/sessions/{session_id}"), None);
    assert_eq!(status, 200);
    // The receiver has the event and has not answered: the server dies now.
    wait_until("the first attempt", || !receiver.got().is_empty());
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    drop(first);
    receiver.answer.store(true, std::sync::atomic::Ordering::SeqCst);

    let second = Server::start(data_dir.path(), &[]);
    wait_until("the attempt made again", || receiver.got().len() >= 2);
    let got = receiver.got();
    assert!(
        got[0].0.len() == 32 && got[0].0.chars().all(|c| c.is_ascii_hexdigit()),
        "a delivery id: {:?}",
        got[0].0
    );
    assert_eq!(got[1], got[0], "the same delivery id and the same bytes");
    let envelope: Value = serde_json::from_str(&got[1].1).expect("JSON");
    assert_eq!(envelope["data"]["session_id"], json!(session_id));
    wait_until("the delivery recorded as made", || {
        let (_, rows) = second.call(reqwest::Method::GET, &format!("/v1/webhooks/{webhook_id}/events"), None);
        rows["events"][0]["status"] == json!("succeeded")
    });
    let (_, rows) = second.call(reqwest::Method::GET, &format!("/v1/webhooks/{webhook_id}/events"), None);
    assert_eq!(rows["pagination"]["total"], json!(1), "one attempt, made once: {rows}");
    assert_eq!(receiver.got().len(), 2, "no third copy");
}

#[test]
fn a_server_killed_mid_recording_leaves_a_playable_video_and_no_display_behind() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut first = Server::start(data_dir.path(), &[]);
    let (status, session) = first.call(
        reqwest::Method::POST,
        "/v1/sessions",
        Some(
            json!({"session": {"recording": {"active": true}}, "browser": {"headless": {"active": false},
                    "viewport": {"width": 640, "height": 400}}}),
        ),
    );
    assert_eq!(status, 200, "{session}");
    let session_id = session["data"]["id"].as_str().expect("id").to_owned();
    // Some seconds of video, then the server dies.
    std::thread::sleep(Duration::from_secs(3));
    let root = std::fs::canonicalize(data_dir.path().join("browsers")).expect("dir");
    assert_eq!(anchorage_browser::leftover_display_pids(&root).len(), 1);
    first.signal(libc::SIGKILL);
    let _ = first.child.wait();
    first.data_dir = std::path::PathBuf::new();
    drop(first);

    let second = Server::start(data_dir.path(), &[]);
    wait_until("the old display gone", || {
        anchorage_browser::leftover_display_pids(&root).is_empty()
    });
    let recordings = std::fs::canonicalize(data_dir.path().join("recordings")).expect("dir");
    wait_until("no encoder left", || {
        anchorage_browser::leftover_encoder_pids(&recordings).is_empty()
    });
    let (status, listed) = second.call(
        reqwest::Method::GET,
        &format!("/v1/sessions/{session_id}/recordings"),
        None,
    );
    assert_eq!(status, 200);
    let item = &listed["data"]["items"][0];
    assert_eq!(item["status"], json!("ready"), "never a stuck recording: {listed}");
    assert!(item["size"].as_f64().unwrap_or(0.0) > 0.0, "{listed}");
    assert_ne!(item["duration"], json!("00:00:00"), "{listed}");
    // The file itself plays: fetched as a user would, every frame decodes
    // without an error, and there are seconds of them.
    let (status, bytes) = second.get_bytes(&format!("/v1/sessions/{session_id}/recordings/primary/fetch"));
    assert_eq!(status, 200);
    let video = data_dir.path().join("fetched.mp4");
    std::fs::write(&video, &bytes).expect("write the video");
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&video)
        .args(["-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    assert!(
        decoded.status.success() && decoded.stderr.is_empty(),
        "the video does not decode cleanly: {}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let counted = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames,width,height", "-of", "csv=p=0"])
        .arg(&video)
        .output()
        .expect("ffprobe");
    let fields: Vec<u64> = String::from_utf8_lossy(&counted.stdout)
        .trim()
        .split(',')
        .filter_map(|field| field.parse().ok())
        .collect();
    let [width, height, frames] = fields[..] else {
        panic!("ffprobe said {counted:?}")
    };
    assert_eq!((width, height), (640, 400), "the session's window");
    assert!(frames >= 10, "only {frames} frames in about 3 s of recording");
}

#[test]
fn a_node_keeps_its_id_across_restarts_and_says_it_at_start() {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let mut ids = Vec::new();
    for start in 0..2 {
        let log_path = data_dir.path().join(format!("start{start}.log"));
        let log = std::fs::File::create(&log_path).expect("log file");
        let server = Server::start_with_log(
            data_dir.path(),
            &[("ANCHORAGE_NODE_URL", "http://10.1.2.3:8080")],
            Some(log),
        );
        let id = std::fs::read_to_string(data_dir.path().join("node-id")).expect("the node id is kept");
        let id = id.trim().to_owned();
        // `anchorage nodes` shows it live, with its capacity and its one session.
        let (status, _) = server.call(reqwest::Method::POST, "/v1/sessions", Some(json!({})));
        assert_eq!(status, 200);
        let dir = data_dir.path().display().to_string();
        let listed = run(&["nodes"], &[("ANCHORAGE_DATA_DIR", dir.as_str())]);
        assert!(listed.status.success(), "{listed:?}");
        let listed = String::from_utf8(listed.stdout).expect("utf-8");
        let row = listed
            .lines()
            .find(|line| line.starts_with(&id))
            .unwrap_or_default()
            .to_owned();
        let fields: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            (
                fields.get(1).copied(),
                fields.get(2).copied(),
                fields.get(3).copied(),
                fields.last().copied()
            ),
            (Some("live"), Some("1"), Some("4"), Some("http://10.1.2.3:8080/")),
            "{listed}"
        );
        drop(server);
        // A clean stop leaves the registry.
        let listed = run(&["nodes"], &[("ANCHORAGE_DATA_DIR", dir.as_str())]);
        assert!(!String::from_utf8_lossy(&listed.stdout).contains(&id), "{listed:?}");
        assert_eq!((id.len(), id.matches('-').count()), (36, 4), "a UUID: {id}");
        let text = std::fs::read_to_string(&log_path).expect("log");
        assert!(
            text.contains(&format!("node {id}")),
            "the start line names the node: {text:.400}"
        );
        ids.push(id);
    }
    assert_eq!(ids[0], ids[1], "a restart is the same node");
}

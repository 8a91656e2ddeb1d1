//! Users' code beside a session (`execute_code`): a snippet that drives the
//! page and returns, one that throws, one that runs out of time; and the
//! sandbox, tried from inside by snippets that reach for what they must
//! not (each boundary is first shown to be there from outside).

use std::time::Duration;

use serde_json::{json, Value};

use crate::support::{running_as_root, serve_test_page, TestServer, TEST_PAGE_TITLE};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Runs a snippet beside `session_id`; the answer's status and body.
async fn execute(server: &TestServer, session_id: &str, code: &str) -> (u16, Value) {
    let (status, answer) = server
        .post(
            &format!("/v1/tools/execute-code?sessionId={session_id}"),
            json!({ "code": code }),
        )
        .await;
    (status.as_u16(), answer)
}

/// Runs a snippet beside `session_id` in a task; resolves to the answer.
fn execute_in_background(server: &TestServer, session_id: &str, code: &str) -> tokio::task::JoinHandle<Value> {
    let (base, http) = (server.base.clone(), server.http.clone());
    let (session_id, code) = (session_id.to_owned(), code.to_owned());
    tokio::spawn(async move {
        http.post(format!("{base}/v1/tools/execute-code?sessionId={session_id}"))
            .header("anchor-api-key", crate::support::TEST_KEY)
            .json(&json!({ "code": code }))
            .send()
            .await
            .expect("send")
            .json::<Value>()
            .await
            .expect("json")
    })
}

/// The value a successful snippet returned.
fn returned(answer: &Value) -> Value {
    assert_eq!(answer["success"], true, "{answer}");
    serde_json::from_str(answer["output"].as_str().expect("output")).expect("output is JSON")
}

/// Live processes of a user (zombies, dead and waiting for their reaper,
/// do not count).
fn processes_of(uid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |name: &str| {
                status
                    .lines()
                    .find(|line| line.starts_with(name))
                    .unwrap_or_default()
                    .to_owned()
            };
            field("Uid:")
                .split_whitespace()
                .nth(1)
                .and_then(|uid| uid.parse::<u32>().ok())
                == Some(uid)
                && !field("State:").contains("Z (zombie)")
                && !field("State:").contains("X (dead)")
        })
        .collect()
}

/// The user id a run wrote into its page's URL (`about:blank#UID`).
async fn uid_in_page(server: &TestServer, session_id: &str) -> u32 {
    for _ in 0..100 {
        let (_, pages) = server.get(&format!("/v1/sessions/{session_id}/pages")).await;
        let found = pages.to_string();
        if let Some(uid) = found
            .split("about:blank#")
            .nth(1)
            .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|digits| digits.parse().ok())
        {
            return uid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the run never showed its user id");
}

/// The mark on the command line of `server`'s runners.
fn runner_marker(server: &TestServer) -> String {
    format!(
        "--anchorage-runs-of={}",
        server.data_dir.path().canonicalize().expect("dir").display()
    )
}

async fn code_server(pairs: &[(&str, &str)]) -> TestServer {
    let mut all = vec![("ANCHORAGE_CODE_WARM", "0"), ("ANCHORAGE_CODE_CACHE", "on")];
    all.extend_from_slice(pairs);
    TestServer::start_with(&all, |_| {}).await
}

#[tokio::test]
async fn a_snippet_drives_its_session_and_returns_json_and_a_throw_is_a_failure() {
    let page = serve_test_page().await;
    // Each run its own process here (the zygote's copies are tested below).
    let server = code_server(&[("ANCHORAGE_CODE_ZYGOTE", "off")]).await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let (status, answer) = execute(
        &server,
        &session_id,
        &format!(
            "const url: string = {page:?};\nawait page.goto(url);\nconst title = await page.title();\n\
             let sum = 0;\nfor (let i = 0; i < 20; i++) {{ sum += await page.evaluate((n) => n * 2, i); }}\n\
             return {{ title, sum, sessionId, contexts: browser.contexts().length, same: context === browser.contexts()[0] }};"
        ),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let value = returned(&answer);
    assert_eq!(value["title"], TEST_PAGE_TITLE, "{value}");
    assert_eq!(value["sum"], 380);
    assert_eq!(value["sessionId"], session_id.as_str());
    assert_eq!(value["same"], true);
    let execution = text(&answer["executionResultId"]).to_owned();
    assert!(execution.parse::<anchorage_core::ExecutionId>().is_ok(), "{answer}");

    // The page stays where the snippet left it: the session is the client's.
    let (_, pages) = server.get(&format!("/v1/sessions/{session_id}/pages")).await;
    assert!(pages.to_string().contains(TEST_PAGE_TITLE), "{pages}");

    // A snippet that throws: a 200 that says so, with the error.
    let (status, answer) = execute(&server, &session_id, "throw new Error('no such button: #buy');").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("no such button: #buy"), "{answer}");
    assert!(answer.get("output").is_none(), "{answer}");
    // Code that does not compile: a failure naming the problem.
    let (_, answer) = execute(&server, &session_id, "const = ;").await;
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("snippet.ts"), "{answer}");
    // Awaiting what nothing can settle: a failure that says so.
    let (_, answer) = execute(&server, &session_id, "await new Promise(() => {});").await;
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("never finished"), "{answer}");
    // Returning nothing: a success without output.
    let (_, answer) = execute(&server, &session_id, "await page.title();").await;
    assert_eq!(answer["success"], true, "{answer}");
    assert!(answer.get("output").is_none(), "{answer}");
    // Each of those five runs got a runner started for it (no warm ones
    // here), and says so in /metrics.
    server
        .wait_for_metric("anchorage_code_runners_total{runner=\"cold\"}", 5.0)
        .await;
    // Code can write a result line of its own and end (its own result: it
    // could return the same), but not make this node's counts absurd.
    let (_, answer) = execute(
        &server,
        &session_id,
        "require('fs').writeSync(3, JSON.stringify({ ok: true, output: '7', warmUp: 'done', \
         codeCache: { used: 1e15, rejected: 1e15 } }) + '\\n'); process.exit(0);",
    )
    .await;
    assert_eq!(answer["output"], "7", "{answer}");
    assert!(
        server
            .metric("anchorage_code_cache_modules_total{outcome=\"refused\"}")
            .await
            <= 16.0
    );

    // Bad input changes nothing.
    for (path, body) in [
        (format!("/v1/tools/execute-code?sessionId={session_id}"), json!({})),
        (
            format!("/v1/tools/execute-code?sessionId={session_id}"),
            json!({"code": 5}),
        ),
        ("/v1/tools/execute-code".to_owned(), json!({"code": "return 1"})),
        (
            "/v1/tools/execute-code?sessionId=nope".to_owned(),
            json!({"code": "return 1"}),
        ),
    ] {
        let (status, answer) = server.post(&path, body).await;
        assert_eq!(status.as_u16(), 400, "{path}: {answer}");
    }
    let (status, _) = server
        .post(
            &format!(
                "/v1/tools/execute-code?sessionId={}",
                anchorage_core::SessionId::new_random()
            ),
            json!({"code": "return 1"}),
        )
        .await;
    assert_eq!(status.as_u16(), 404);

    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_snippet_that_runs_past_its_time_is_stopped_with_everything_it_started() {
    runs_past_their_time_are_stopped(Origin::Forked).await;
}

#[tokio::test]
async fn a_snippet_that_runs_past_its_time_in_its_own_process_is_stopped_with_everything_it_started() {
    runs_past_their_time_are_stopped(Origin::Spawned).await;
}

/// Where a test's runs come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// Copies of the zygote (the server waits for it before the test).
    Forked,
    /// A process of their own each.
    Spawned,
}

/// A server for code whose runs come from `origin`, ready to fork them.
async fn code_server_from(origin: Origin, pairs: &[(&str, &str)]) -> TestServer {
    let zygote = if origin == Origin::Forked { "on" } else { "off" };
    let mut all = vec![("ANCHORAGE_CODE_ZYGOTE", zygote)];
    all.extend_from_slice(pairs);
    let server = code_server(&all).await;
    if origin == Origin::Forked {
        server.wait_for_metric("anchorage_code_zygote_ready", 1.0).await;
    }
    server
}

async fn runs_past_their_time_are_stopped(origin: Origin) {
    let server = code_server_from(
        origin,
        &[
            ("ANCHORAGE_CODE_TIMEOUT_SECONDS", "3"),
            ("ANCHORAGE_CODE_MAX_OUTPUT_BYTES", "4096"),
        ],
    )
    .await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    // It shows its user id, forks a child that leaves its process group
    // and session, and loops.
    let run = execute_in_background(
        &server,
        &session_id,
        "await page.goto('about:blank#' + process.getuid());\n\
         const { spawn } = require('child_process');\n\
         spawn('sh', ['-c', 'while :; do :; done'], { detached: true, stdio: 'ignore' }).unref();\n\
         while (true) {}",
    );
    let uid = uid_in_page(&server, &session_id).await;
    let answer = run.await.expect("task");
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("longer than 3 s"), "{answer}");
    if running_as_root("that nothing of a run outlives it, by its user id") {
        assert!(anchorage_browser::RUN_UIDS.contains(&uid), "{uid}");
        assert!(processes_of(uid).is_empty(), "left: {:?}", processes_of(uid));
    }
    // A result past the output limit, and a process that exits with an
    // error, are failures that say so.
    let (_, answer) = execute(&server, &session_id, "return 'x'.repeat(10000);").await;
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("larger than 4096 bytes"), "{answer}");
    let (_, answer) = execute(&server, &session_id, "console.error('giving up'); process.exit(3);").await;
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("exit status: 3"), "{answer}");
    assert!(text(&answer["error"]).contains("giving up"), "{answer}");
    // The session is still there, and code runs in it again.
    let (_, answer) = execute(&server, &session_id, "return 2 + 2;").await;
    assert_eq!(returned(&answer), json!(4));
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn ending_a_session_ends_the_code_that_runs_beside_it() {
    let server = code_server_from(Origin::Forked, &[]).await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let running = execute_in_background(
        &server,
        &session_id,
        "await new Promise((resolve) => setTimeout(resolve, 600000));",
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    let answer = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the run ends with its session")
        .expect("task");
    assert_eq!(answer["success"], false, "{answer}");
    assert!(text(&answer["error"]).contains("session ended"), "{answer}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Each boundary of the sandbox, tried from inside by a snippet after the
/// test has shown from outside that what lies behind it is there.
#[tokio::test]
async fn a_snippet_cannot_reach_files_processes_network_or_sessions_that_are_not_its_own() {
    escapes_are_refused(Origin::Forked).await;
}

#[tokio::test]
async fn a_snippet_in_its_own_process_cannot_reach_files_processes_network_or_sessions_that_are_not_its_own() {
    escapes_are_refused(Origin::Spawned).await;
}

async fn escapes_are_refused(origin: Origin) {
    let page = serve_test_page().await;
    let server = code_server_from(
        origin,
        &[
            ("ANCHORAGE_CODE_MEMORY_MIB", "512"),
            ("ANCHORAGE_CODE_TIMEOUT_SECONDS", "60"),
        ],
    )
    .await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let stranger_key = anchorage_server::keys::create(&server.config, "strangers", "test")
        .await
        .expect("key");
    let (status, theirs) = server
        .request(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(&stranger_key),
            Some(json!({})),
        )
        .await;
    assert_eq!(status.as_u16(), 200, "{theirs}");
    let their_session = text(&theirs["data"]["id"]).to_owned();

    // What lies outside, seen from outside: the database, another
    // session's profile, a TCP service on loopback, the server's process.
    let database = server.data_dir.path().join("anchorage.db");
    assert!(std::fs::metadata(&database).is_ok());
    let their_profile = server.browsers_dir().join(their_session.replace('-', ""));
    assert!(their_profile.is_dir(), "{}", their_profile.display());
    let service = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let service_port = service.local_addr().expect("address").port();
    let their_browser = server.main_browser_pid(&their_session).expect("their browser");
    let server_pid = std::process::id();
    let marker = std::env::temp_dir().join(format!("anchorage-code-test-{}", std::process::id()));
    std::fs::write(&marker, "outside").expect("marker");
    let marker_name = marker
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default()
        .to_owned();

    let probe = format!(
        r#"
const fs = require('fs');
const net = require('net');
const {{ spawn }} = require('child_process');
const tryIt = (what) => {{ try {{ what(); return 'allowed'; }} catch (error) {{ return error.code || error.message; }} }};
const connect = (port) => new Promise((resolve) => {{
  const socket = net.connect(port, '127.0.0.1');
  socket.on('connect', () => {{ socket.destroy(); resolve('connected'); }});
  socket.on('error', (error) => resolve(error.code));
}});
const result = {{}};
result.uid = process.getuid();
result.database = tryIt(() => fs.readFileSync({database:?}));
result.theirProfile = tryIt(() => fs.readdirSync({their_profile:?}));
result.writeRoot = tryIt(() => fs.writeFileSync('/anchorage-escape', 'x'));
result.writeEtc = tryIt(() => fs.writeFileSync('/etc/anchorage-escape', 'x'));
result.tmp = fs.readdirSync('/tmp');
result.marker = tryIt(() => fs.readFileSync('/tmp/{marker_name}'));
result.serverEnviron = tryIt(() => fs.readFileSync('/proc/{server_pid}/environ'));
result.theirPipe = tryIt(() => fs.openSync('/proc/{their_browser}/fd/3', 'r'));
result.killServer = tryIt(() => process.kill({server_pid}, 0));
result.killBrowser = tryIt(() => process.kill({their_browser}, 0));
result.environment = Object.keys(process.env).sort();
result.service = await connect({service_port});
result.theirSession = await anchorClient.sessions.retrieve({their_session:?}).then(() => 'seen', (error) => error.status);
result.ownSessions = (await anchorClient.sessions.all.status()).data.items.map((item) => item.session_id);
result.theirCdp = await (async () => {{
  const {{ chromium }} = require('playwright-core');
  const url = new URL({cdp:?});
  url.searchParams.set('sessionId', {their_session:?});
  return chromium.connectOverCDP(url.toString(), {{ timeout: 5000 }}).then(() => 'connected', (error) => 'refused');
}})();
result.ownPage = (await page.goto({page:?}), await page.title());
// Disk: one file past the size limit, then many files past the dir's size.
result.bigFile = tryIt(() => fs.writeFileSync('/tmp/big', Buffer.alloc(80 * 1024 * 1024)));
result.manyFiles = tryIt(() => {{ for (let i = 0; i < 100; i++) fs.writeFileSync('/tmp/part' + i, Buffer.alloc(1024 * 1024)); }});
// Processes: as many as it may make.
let children = 0;
result.forks = 'allowed';
for (let i = 0; i < 1000; i++) {{
  const started = await new Promise((resolve) => {{
    const child = spawn('sleep', ['600'], {{ detached: true, stdio: 'ignore' }});
    child.on('spawn', () => resolve('spawned'));
    child.on('error', (error) => resolve(error.code));
  }});
  if (started !== 'spawned') {{ result.forks = started; break; }}
  children++;
}}
result.children = children;
result.key = process.env.ANCHORBROWSER_API_KEY;
return result;
"#,
        cdp = format!("ws://{}/?apiKey=x", server.base.trim_start_matches("http://")),
    );
    let (status, answer) = execute(&server, &session_id, &probe).await;
    assert_eq!(status, 200, "{answer}");
    let seen = returned(&answer);
    eprintln!("{seen:#}");

    // Whoever runs the server: nothing of another team through the API.
    assert_eq!(seen["theirSession"], 404, "{seen}");
    assert_eq!(seen["ownSessions"], json!([session_id]), "{seen}");
    assert_eq!(seen["theirCdp"], "refused", "{seen}");
    assert_eq!(seen["ownPage"], TEST_PAGE_TITLE, "{seen}");
    for name in seen["environment"].as_array().expect("names") {
        let name = text(name);
        assert!(
            ["PATH", "HOME", "TMPDIR", "NODE_ENV"].contains(&name)
                || name.starts_with("ANCHOR_")
                || name.starts_with("ANCHORBROWSER_"),
            "the run sees the environment variable {name}"
        );
    }
    // Its key acts no more once the run is over.
    let key = text(&seen["key"]).to_owned();
    assert!(key.starts_with("anr_"), "{seen}");
    let (status, _) = server
        .request(reqwest::Method::GET, "/v1/sessions", Some(&key), None)
        .await;
    assert_eq!(status.as_u16(), 401);

    if running_as_root("the sandbox's files, processes, network and limits") {
        let uid = u32::try_from(seen["uid"].as_u64().expect("uid")).expect("uid");
        assert!(anchorage_browser::RUN_UIDS.contains(&uid), "{seen}");
        assert_eq!(seen["database"], "ENOENT", "{seen}");
        assert_eq!(seen["theirProfile"], "ENOENT", "{seen}");
        assert_eq!(seen["writeRoot"], "EROFS", "{seen}");
        assert_eq!(seen["writeEtc"], "EROFS", "{seen}");
        // Its /tmp is its own (the marker is in the machine's /tmp when the
        // tests' temp dir is there; it is unreadable either way).
        assert!(
            !seen["tmp"].to_string().contains(&marker_name),
            "the run sees the machine's /tmp: {seen}"
        );
        assert_eq!(seen["marker"], "ENOENT", "{seen}");
        assert_eq!(seen["serverEnviron"], "EACCES", "{seen}");
        assert_eq!(seen["theirPipe"], "EACCES", "{seen}");
        assert_eq!(seen["killServer"], "EPERM", "{seen}");
        assert_eq!(seen["killBrowser"], "EPERM", "{seen}");
        assert_eq!(
            seen["service"], "ECONNREFUSED",
            "the run reaches a service on the machine's loopback: {seen}"
        );
        assert!(
            matches!(text(&seen["bigFile"]), "EFBIG" | "ENOSPC" | "ERR_FS_FILE_TOO_LARGE"),
            "{seen}"
        );
        assert_eq!(seen["manyFiles"], "ENOSPC", "{seen}");
        assert_eq!(seen["forks"], "EAGAIN", "{seen}");
        assert!(seen["children"].as_u64().expect("children") < 256, "{seen}");
        assert!(!std::path::Path::new("/anchorage-escape").exists());
        // The run's user is swept right after its answer.
        crate::support::wait_until("nothing of the run left", Duration::from_secs(5), || {
            processes_of(uid).is_empty()
        })
        .await;

        // Memory: a heap that grows without end ends the run, clearly.
        let (_, answer) = execute(
            &server,
            &session_id,
            "const kept = []; while (true) { kept.push(new Array(1000000).fill(1.5)); }",
        )
        .await;
        assert_eq!(answer["success"], false, "{answer}");
        assert!(text(&answer["error"]).contains("out of memory"), "{answer}");
    }
    drop(service);
    let _ = std::fs::remove_file(&marker);
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/sessions/{their_session}"),
            Some(&stranger_key),
            None,
        )
        .await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Runs forked from the zygote: each is a process of its own (its pid, its
/// random numbers, its pipes and sockets), as its own user, and cannot
/// reach the zygote it came from; a zygote that dies is started again,
/// runs going on meanwhile in processes of their own.
#[tokio::test]
async fn runs_forked_from_the_zygote_share_nothing_with_it_or_each_other() {
    let server = code_server_from(Origin::Forked, &[]).await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let probe = "const fs = require('fs');\n\
        const files = fs.readdirSync('/proc/self/fd').map((fd) => { try { return fs.readlinkSync('/proc/self/fd/' + fd); } catch { return ''; } })\n\
          .filter((target) => /^(pipe|socket):/.test(target));\n\
        let signal = 'sent'; try { process.kill(process.ppid, 0); } catch (error) { signal = error.code; }\n\
        let environ = 'read'; try { fs.readFileSync(`/proc/${process.ppid}/environ`); } catch (error) { environ = error.code; }\n\
        await new Promise((resolve) => setTimeout(resolve, 300));\n\
        return { pid: process.pid, ownPid: Number(fs.readlinkSync('/proc/self')), zygote: process.ppid, random: Math.random(),\n\
          uuid: require('crypto').randomUUID(), uid: process.getuid(), files, signal, environ, title: await page.title() };";
    let (first, second) = tokio::join!(
        execute(&server, &session_id, probe),
        execute(&server, &session_id, probe)
    );
    let (first, second) = (returned(&first.1), returned(&second.1));
    for run in [&first, &second] {
        assert_eq!(run["pid"], run["ownPid"], "{run}");
        assert!(
            anchorage_browser::RUN_UIDS.contains(&u32::try_from(run["uid"].as_u64().expect("uid")).expect("uid")),
            "{run}"
        );
        assert_eq!(run["signal"], "EPERM", "{run}");
        assert_eq!(run["environ"], "EACCES", "{run}");
        assert_eq!(run["title"], "", "{run}");
    }
    assert_eq!(first["zygote"], second["zygote"], "both from the one zygote");
    assert_ne!(first["pid"], second["pid"]);
    assert_ne!(first["random"], second["random"]);
    assert_ne!(first["uuid"], second["uuid"]);
    let files = |run: &Value| -> Vec<String> {
        run["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|file| text(file).to_owned())
            .collect()
    };
    let (ours, theirs) = (files(&first), files(&second));
    assert!(ours.len() >= 4, "its own pipes at 0 to 3: {ours:?}");
    assert!(
        ours.iter().all(|file| !theirs.contains(file)),
        "{ours:?} and {theirs:?}"
    );
    server
        .wait_for_metric("anchorage_code_runners_total{runner=\"forked\"}", 2.0)
        .await;

    // The zygote killed: runs go on, and a new zygote serves again.
    let old_zygote = first["zygote"].as_i64().expect("zygote pid");
    // SAFETY: kill takes no pointers.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(i32::try_from(old_zygote).expect("pid"), libc::SIGKILL);
    }
    let (_, answer) = execute(&server, &session_id, "return 1 + 1;").await;
    assert_eq!(returned(&answer), json!(2), "{answer}");
    server.wait_for_metric("anchorage_code_zygote_ready", 1.0).await;
    let (_, answer) = execute(&server, &session_id, "return process.ppid;").await;
    let new_zygote = returned(&answer).as_i64().expect("ppid");
    assert_ne!(new_zygote, old_zygote, "{answer}");
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// Runs beyond the node's limit wait for a place; beyond the wait's room
/// they are refused with `429`, and the waiting ones run once it frees.
#[tokio::test]
async fn runs_past_the_limit_wait_and_past_the_waiting_room_are_refused() {
    let server = code_server(&[("ANCHORAGE_CODE_MAX_RUNS", "1")]).await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let long = execute_in_background(
        &server,
        &session_id,
        "await new Promise((resolve) => setTimeout(resolve, 4000)); return 'long';",
    );
    server.wait_for_metric("anchorage_code_runs", 1.0).await;
    // One place, and four may wait for it.
    let waiting: Vec<_> = (0..4)
        .map(|index| execute_in_background(&server, &session_id, &format!("return {index};")))
        .collect();
    server.wait_for_metric("anchorage_code_runs_waiting", 4.0).await;
    let (status, answer) = execute(&server, &session_id, "return 'one too many';").await;
    assert_eq!(status, 429, "{answer}");
    assert_eq!(returned(&long.await.expect("task")), json!("long"));
    let mut results = Vec::new();
    for run in waiting {
        results.push(returned(&run.await.expect("task")));
    }
    results.sort_by_key(|value| value.as_i64());
    assert_eq!(results, vec![json!(0), json!(1), json!(2), json!(3)]);
    server.wait_for_metric("anchorage_code_runs_waiting", 0.0).await;
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// With several runners kept warm, the one that waited longest (the most
/// likely to be ready) serves the next run.
#[tokio::test]
async fn the_longest_waiting_warm_runner_serves_first() {
    let server = code_server(&[("ANCHORAGE_CODE_WARM", "2"), ("ANCHORAGE_CODE_ZYGOTE", "off")]).await;
    let marker = runner_marker(&server);
    let runners = || -> Vec<u64> {
        anchorage_browser::leftover_runner_pids(&marker)
            .into_iter()
            .map(u64::from)
            .collect()
    };
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let snippet = "return { pid: process.pid };";
    crate::support::wait_until("two warm runners", Duration::from_secs(20), || runners().len() == 2).await;
    let first_two = runners();
    let (_, answer) = execute(&server, &session_id, snippet).await;
    let served = returned(&answer)["pid"].as_u64().expect("pid");
    assert!(first_two.contains(&served), "{served} not in {first_two:?}");
    // The other one has waited since the start; the one started after the
    // run is newer. The next run gets the one that waited longest.
    let waited = *first_two.iter().find(|pid| **pid != served).expect("the other runner");
    crate::support::wait_until("a new warm runner", Duration::from_secs(20), || {
        let now = runners();
        now.len() == 2 && now.contains(&waited) && !now.contains(&served)
    })
    .await;
    let (_, answer) = execute(&server, &session_id, snippet).await;
    assert_eq!(returned(&answer)["pid"], json!(waited), "{answer}");
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
    crate::support::wait_until("the warm runners ended", Duration::from_secs(10), || {
        runners().is_empty()
    })
    .await;
}

/// Runs that come faster than the pool refills (the runner taken has not
/// said it is warmed up) start the next runner while they run; a run that
/// finds a runner ready leaves the refill until it ends.
#[tokio::test]
async fn the_pool_refills_during_runs_that_come_faster_than_it_warms() {
    let server = code_server(&[("ANCHORAGE_CODE_WARM", "1"), ("ANCHORAGE_CODE_ZYGOTE", "off")]).await;
    let marker = runner_marker(&server);
    let runners = || anchorage_browser::leftover_runner_pids(&marker);
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let snippet = "await new Promise((resolve) => setTimeout(resolve, 1500)); return process.pid;";
    for young in [true, false] {
        crate::support::wait_until("one warm runner", Duration::from_secs(20), || runners().len() == 1).await;
        if !young {
            // Until it has warmed up and waits for its job (it said it was
            // ready just before): asleep, its CPU time no longer growing. A
            // runner starved of CPU by other tests is runnable, not asleep.
            let pid = runners()[0];
            let mut last = cpu_state(pid);
            for _ in 0..60 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let now = cpu_state(pid);
                if now == last && now.0 == "S" {
                    break;
                }
                last = now;
            }
        }
        let warm_before = warm_runs(&server).await;
        let waiting = runners();
        let run = execute_in_background(&server, &session_id, snippet);
        // While the run sleeps: is a new runner started beside it?
        let deadline = std::time::Instant::now() + Duration::from_millis(1200);
        let mut refilled = false;
        while std::time::Instant::now() < deadline && !run.is_finished() {
            let now = runners();
            if now.len() == 2 && now.iter().any(|pid| !waiting.contains(pid)) {
                refilled = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let answer = run.await.expect("the run");
        assert_eq!(answer["success"], true, "{answer}");
        assert_eq!(refilled, young, "a runner taken young: {young}");
        // The one taken later had finished its warm-up (and so had said it
        // was ready); the one taken at once had not.
        let warm_after = warm_runs(&server).await;
        assert_eq!(warm_after - warm_before, if young { 0.0 } else { 1.0 });
    }
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// How many runs got a runner that had warmed up (0 before the first).
async fn warm_runs(server: &TestServer) -> f64 {
    let metrics = server.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("anchorage_code_runners_total{runner=\"warm\"} "))
        .map_or(0.0, |value| value.parse().expect("a number"))
}

/// A process's state (`R` running or runnable, `S` asleep, ...) and the CPU
/// time it has used so far, in clock ticks.
fn cpu_state(pid: u32) -> (String, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // After the command's closing parenthesis: the state is the first
    // field, utime and stime the 12th and 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let state = fields.first().map_or_else(String::new, |state| (*state).to_owned());
    let ticks = fields.get(11..13).map_or(0, |times| {
        times.iter().filter_map(|time| time.parse::<u64>().ok()).sum()
    });
    (state, ticks)
}

/// A warm runner (started ahead, its modules loaded) serves one run, and
/// another takes its place: no two runs share a process or a user.
#[tokio::test]
async fn warm_runners_serve_one_run_each() {
    let server = code_server(&[("ANCHORAGE_CODE_WARM", "1"), ("ANCHORAGE_CODE_ZYGOTE", "off")]).await;
    let marker = runner_marker(&server);
    let warm_pid = |marker: &str| anchorage_browser::leftover_runner_pids(marker).first().copied();
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let snippet = "return { pid: process.pid, uid: process.getuid() };";
    let mut served = Vec::new();
    for _ in 0..2 {
        // The runner that served the run before goes a moment after its
        // answer: wait until the one waiting is the only one left.
        let before: Option<u64> = served.last().and_then(|ran: &Value| ran["pid"].as_u64());
        crate::support::wait_until("a warm runner", Duration::from_secs(20), || {
            let pids = anchorage_browser::leftover_runner_pids(&marker);
            pids.len() == 1 && pids.first().map(|pid| u64::from(*pid)) != before
        })
        .await;
        let ready = warm_pid(&marker).expect("a warm runner");
        let (_, answer) = execute(&server, &session_id, snippet).await;
        let ran = returned(&answer);
        // The run was served by the runner that was waiting, started before it.
        assert_eq!(ran["pid"], json!(ready), "{ran}");
        served.push(ran);
    }
    assert_ne!(served[0]["pid"], served[1]["pid"]);
    assert_ne!(served[0]["uid"], served[1]["uid"]);
    // Warm runners start once the node's code cache is built, and load from it.
    let cache = server
        .data_dir
        .path()
        .join("code-cache/playwright-core__lib__coreBundle.js.v8");
    assert!(cache.is_file(), "no code cache at {}", cache.display());
    // Both runs got a runner started ahead (ready, or still warming up if
    // the run came first), and it loaded its modules from that cache.
    let metrics = server.metrics().await;
    let runners = |kind: &str| {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&format!("anchorage_code_runners_total{{runner=\"{kind}\"}} ")))
            .map_or(0.0, |value| value.parse::<f64>().expect("a number"))
    };
    assert_eq!(runners("warm") + runners("warming"), 2.0, "{metrics}");
    assert_eq!(runners("cold"), 0.0, "{metrics}");
    assert!(
        server
            .metric("anchorage_code_cache_modules_total{outcome=\"used\"}")
            .await
            >= 4.0,
        "{metrics}"
    );
    assert_eq!(
        server
            .metric("anchorage_code_cache_modules_total{outcome=\"refused\"}")
            .await,
        0.0
    );
    server.delete(&format!("/v1/sessions/{session_id}")).await;
    server.assert_no_browsers_left().await;
    server.stop().await;
    // Stopping the server ends its warm runner.
    crate::support::wait_until("the warm runner ended", Duration::from_secs(10), || {
        anchorage_browser::leftover_runner_pids(&marker).is_empty()
    })
    .await;
}

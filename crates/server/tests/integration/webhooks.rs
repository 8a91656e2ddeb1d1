//! Webhooks against a receiver the test runs on 127.0.0.1: a batch and its
//! sessions are told, signed as upstream documents; a failing receiver gets
//! the same delivery again; rotation keeps the old secret valid; bad input
//! is refused and another team sees nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use crate::support::{wait_until, TestServer};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON envelope")
    }

    /// Whether one `v1` of `Anchor-Signature` is the documented HMAC with `secret`.
    fn signed_with(&self, secret: &str) -> bool {
        let timestamp = self.header("Anchor-Timestamp");
        let header = self.header("Anchor-Signature");
        assert!(header.starts_with(&format!("t={timestamp},")), "{header}");
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
        mac.update(format!("v0:{timestamp}:{}", self.body).as_bytes());
        let expected = hex::encode(mac.finalize().into_bytes());
        header.split(',').any(|part| part == format!("v1={expected}"))
    }
}

/// A receiver that records every request and answers the statuses it is
/// given in turn (then 200).
#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    answers: Arc<Mutex<Vec<u16>>>,
}

impl Receiver {
    async fn start(answers: &[u16]) -> (Self, String) {
        let receiver = Self::default();
        receiver.answers.lock().expect("lock").extend(answers.iter().rev());
        let state = receiver.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let state = state.clone();
                async move {
                    state.got.lock().expect("lock").push(Received { headers, body });
                    let status = state.answers.lock().expect("lock").pop().unwrap_or(200);
                    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (receiver, url)
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().expect("lock").clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_until(&format!("{count} deliveries"), Duration::from_secs(30), || {
            self.got.lock().expect("lock").len() >= count
        })
        .await;
        self.got()
    }
}

/// Retries after 100 ms, so a test sees them all.
fn quick_retries(config: &mut anchorage_server::Config) {
    config.webhook_retry_delays = vec![Duration::from_millis(100); 3];
}

async fn create(server: &TestServer, url: &str, events: &[&str]) -> Value {
    let (status, webhook) = server
        .post(
            "/v1/webhooks",
            json!({"url": url, "subscribed_events": events, "description": "test"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{webhook}");
    webhook
}

/// The listing at `path` once `settled` holds for it (or the last one
/// read after 5 s, for the caller's assertion to show).
async fn listing_once(server: &TestServer, path: &str, settled: impl Fn(&Value) -> bool) -> Value {
    let mut rows = Value::Null;
    for _ in 0..100 {
        let (status, listed) = server.get(path).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        rows = listed;
        if settled(&rows) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    rows
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_batch_and_each_of_its_sessions_are_told_with_a_signature_that_verifies() {
    let (receiver, url) = Receiver::start(&[]).await;
    let server = TestServer::start().await;
    let webhook = create(&server, &url, &["session.completed", "batch.completed"]).await;
    let secret = text(&webhook["secret"]).to_owned();
    assert_eq!(secret.len(), 64);
    assert!(webhook["id"].as_str().is_some_and(|id| id.starts_with("wh_")));
    let (_, read) = server.get(&format!("/v1/webhooks/{}", text(&webhook["id"]))).await;
    assert!(read.get("secret").is_none(), "the secret is shown once: {read}");

    let batch_id = server.create_batch(json!({"count": 2})).await;
    let batch = server
        .wait_for_batch(&batch_id, Duration::from_secs(60), |batch| {
            batch["status"] == "completed"
        })
        .await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "no session has ended yet");
    let told = got[0].json();
    assert_eq!(told["type"], json!("batch.completed"));
    assert_eq!(told["data"]["batch_id"], json!(batch_id));
    assert_eq!(told["data"]["completed_requests"], json!(2));
    assert!(got[0].signed_with(&secret));

    for item in batch["sessions"].as_array().expect("items") {
        let (status, _) = server
            .delete(&format!("/v1/sessions/{}", text(&item["session_id"])))
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let got = receiver.wait_for(3).await;
    let mut ended: Vec<String> = Vec::new();
    for delivery in &got[1..] {
        let envelope = delivery.json();
        assert_eq!(envelope["type"], json!("session.completed"));
        assert_eq!(delivery.header("Anchor-Event"), "session.completed");
        assert!(delivery.header("User-Agent").starts_with("anchorage-webhooks/"));
        assert_eq!(delivery.header("Content-Type"), "application/json");
        assert!(!delivery.header("Anchor-Delivery-Id").is_empty());
        assert!(delivery.signed_with(&secret), "{}", delivery.header("Anchor-Signature"));
        assert!(!delivery.signed_with("another secret"));
        assert!(envelope["id"].as_str().is_some_and(|id| id.starts_with("evt_")));
        assert!(envelope["project_id"].as_str().is_some_and(|id| id.len() == 36));
        assert!(envelope["text"].as_str().is_some_and(|line| !line.contains('\n')));
        assert_eq!(envelope["data"]["batch_id"], json!(batch_id));
        ended.push(text(&envelope["data"]["session_id"]).to_owned());
    }
    ended.sort();
    let mut items: Vec<String> = batch["sessions"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| text(&item["session_id"]).to_owned())
        .collect();
    items.sort();
    assert_eq!(ended, items, "one event per session");

    // A success is recorded after its receiver answered.
    let path = format!("/v1/webhooks/{}/events?status=succeeded", text(&webhook["id"]));
    let listed = listing_once(&server, &path, |rows| rows["pagination"]["total"] == json!(3)).await;
    assert_eq!(listed["pagination"]["total"], json!(3), "{listed}");
    assert_eq!(listed["events"].as_array().map(Vec::len), Some(3), "{listed}");
    assert!(listed["events"]
        .as_array()
        .expect("rows")
        .iter()
        .all(|row| row["attempt"] == json!(1) && row["response_status"] == json!(200)));
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_one_delivery_again_and_rotation_keeps_the_old_secret() {
    let (receiver, url) = Receiver::start(&[503, 503]).await;
    let server = TestServer::start_with(&[], quick_retries).await;
    let webhook = create(&server, &url, &["batch.failed"]).await;
    let id = text(&webhook["id"]).to_owned();
    let (status, sent) = server
        .post(
            &format!("/v1/webhooks/{id}/test"),
            json!({"event_type": "session.failed"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
    let got = receiver.wait_for(3).await;
    assert_eq!(got.len(), 3);
    let delivery_id = got[0].header("Anchor-Delivery-Id");
    for attempt in &got {
        assert_eq!(attempt.header("Anchor-Delivery-Id"), delivery_id, "one delivery id");
        assert_eq!(attempt.json()["id"], sent["external_event_id"], "one event id");
        assert_eq!(attempt.body, got[0].body, "the same bytes");
    }
    // The success is recorded after the receiver answered.
    let path = format!("/v1/webhooks/{id}/events");
    let rows = listing_once(&server, &path, |rows| rows["events"][0]["status"] == json!("succeeded")).await;
    let attempts: Vec<(i64, String, Option<i64>)> = rows["events"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            (
                row["attempt"].as_i64().unwrap_or_default(),
                text(&row["status"]).to_owned(),
                row["response_status"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (3, "succeeded".to_owned(), Some(200)),
            (2, "failed".to_owned(), Some(503)),
            (1, "failed".to_owned(), Some(503)),
        ],
        "{rows}"
    );

    // After a rotation both secrets verify, each with its own v1.
    let old = text(&webhook["secret"]).to_owned();
    let (status, rotated) = server
        .post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let new = text(&rotated["secret"]).to_owned();
    assert_ne!(new, old);
    server
        .post(
            &format!("/v1/webhooks/{id}/test"),
            json!({"event_type": "batch.completed"}),
        )
        .await;
    let got = receiver.wait_for(4).await;
    assert!(
        got[3].signed_with(&new) && got[3].signed_with(&old),
        "{}",
        got[3].header("Anchor-Signature")
    );

    assert_eq!(
        server
            .metric("anchorage_webhook_attempts_total{outcome=\"failed\"}")
            .await,
        2.0
    );
    assert_eq!(
        server
            .metric("anchorage_webhook_attempts_total{outcome=\"succeeded\"}")
            .await,
        2.0
    );

    // Disabled: no event fans out to it, a test event still goes. A second,
    // enabled webhook on the same event tells when the fan-out has happened.
    let (status, changed) = server
        .patch(
            &format!("/v1/webhooks/{id}"),
            json!({"enabled": false, "subscribed_events": ["session.completed"]}),
        )
        .await;
    assert_eq!((status, changed["enabled"].clone()), (StatusCode::OK, json!(false)));
    let (witness, witness_url) = Receiver::start(&[]).await;
    create(&server, &witness_url, &["session.completed"]).await;
    let session = server.create_session(json!({})).await;
    let session_id = text(&session["id"]).to_owned();
    let (status, ended) = server.delete(&format!("/v1/sessions/{session_id}")).await;
    assert_eq!(status, StatusCode::OK, "{ended}");
    let told = witness.wait_for(1).await;
    assert_eq!(told[0].json()["data"]["session_id"], json!(session_id));
    // A fan-out records every delivery before any is sent: the disabled
    // webhook's record has none beyond the four attempts above.
    let (_, rows) = server.get(&format!("/v1/webhooks/{id}/events")).await;
    assert_eq!(
        rows["pagination"]["total"],
        json!(4),
        "a disabled webhook got an event: {rows}"
    );
    assert_eq!(receiver.got().len(), 4, "a disabled webhook got an event");
    let (status, _) = server
        .post(
            &format!("/v1/webhooks/{id}/test"),
            json!({"event_type": "session.completed"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let got = receiver.wait_for(5).await;
    assert_eq!(got.len(), 5);
    assert_eq!(got[4].json()["type"], json!("session.completed"), "{}", got[4].body);
    let deliveries = listing_once(&server, &format!("/v1/webhooks/{id}/events"), |rows| {
        rows["pagination"]["total"] == json!(5)
    })
    .await;
    assert_eq!(deliveries["pagination"]["total"], json!(5), "{deliveries}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

#[tokio::test]
async fn bad_webhook_requests_are_refused_and_another_team_sees_nothing() {
    let server = TestServer::start().await;
    let url = "http://127.0.0.1:9/hook";
    for (body, needle) in [
        (
            json!({"url": "ftp://example.com/", "subscribed_events": ["batch.failed"]}),
            "http or https",
        ),
        (
            json!({"url": "https://user:pw@example.com/", "subscribed_events": ["batch.failed"]}),
            "credentials",
        ),
        (json!({"url": "", "subscribed_events": ["batch.failed"]}), "url"),
        (json!({"subscribed_events": ["batch.failed"]}), "url is required"),
        (json!({"url": url, "subscribed_events": []}), "subscribed_events"),
        (
            json!({"url": url, "subscribed_events": ["session.ended"]}),
            "not a webhook event type",
        ),
        (json!({"url": url, "subscribed_events": ["task.healed"]}), "hosted-only"),
        (
            json!({"url": url, "subscribed_events": ["batch.failed"], "description": "x".repeat(257)}),
            "description",
        ),
        (
            json!({"url": url, "subscribed_events": ["batch.failed"], "colour": 1}),
            "colour",
        ),
        (json!([1]), "JSON object"),
    ] {
        let (status, error) = server.post("/v1/webhooks", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert!(text(&error["error"]["message"]).contains(needle), "{body}: {error}");
    }
    let (_, listed) = server.get("/v1/webhooks").await;
    assert_eq!(listed, json!({"webhooks": []}), "nothing was made");

    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(text(&create(&server, url, &["batch.failed"]).await["id"]).to_owned());
    }
    let (status, error) = server
        .post(
            "/v1/webhooks",
            json!({"url": url, "subscribed_events": ["batch.failed"]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let (status, error) = server
        .patch(
            &format!("/v1/webhooks/{}", ids[0]),
            json!({"subscribed_events": ["identity.authenticated"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, error) = server
        .post(
            &format!("/v1/webhooks/{}/test", ids[0]),
            json!({"event_type": "task.healed"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, error) = server.get(&format!("/v1/webhooks/{}/events?status=lost", ids[0])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (_, read) = server.get(&format!("/v1/webhooks/{}", ids[0])).await;
    assert_eq!(
        read["subscribed_events"],
        json!(["batch.failed"]),
        "a refused change changes nothing"
    );

    let other = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    let call = |method: reqwest::Method, path: String, body: Option<Value>| {
        let (server, other) = (&server, other.clone());
        async move { server.request(method, &path, Some(&other), body).await }
    };
    let (_, theirs) = call(reqwest::Method::GET, "/v1/webhooks".to_owned(), None).await;
    assert_eq!(theirs, json!({"webhooks": []}));
    for (method, path, body) in [
        (reqwest::Method::GET, format!("/v1/webhooks/{}", ids[0]), None),
        (
            reqwest::Method::PATCH,
            format!("/v1/webhooks/{}", ids[0]),
            Some(json!({"enabled": false})),
        ),
        (reqwest::Method::DELETE, format!("/v1/webhooks/{}", ids[0]), None),
        (
            reqwest::Method::POST,
            format!("/v1/webhooks/{}/rotate-secret", ids[0]),
            None,
        ),
        (
            reqwest::Method::POST,
            format!("/v1/webhooks/{}/test", ids[0]),
            Some(json!({"event_type": "batch.failed"})),
        ),
        (reqwest::Method::GET, format!("/v1/webhooks/{}/events", ids[0]), None),
    ] {
        let (status, answer) = call(method.clone(), path.clone(), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
    }

    // Deleted: gone, and room for another; its attempts stay listed.
    let (status, deleted) = server.delete(&format!("/v1/webhooks/{}", ids[0])).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!({"ok": true})));
    assert_eq!(
        server.get(&format!("/v1/webhooks/{}", ids[0])).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        server.get(&format!("/v1/webhooks/{}/events", ids[0])).await.0,
        StatusCode::OK
    );
    create(&server, url, &["batch.failed"]).await;
    server.stop().await;

    // With private networks blocked, loopback and private targets are
    // refused, by address and by a name that resolves to one.
    let server = TestServer::start_with(&[("ANCHORAGE_BLOCK_PRIVATE_NETWORKS", "true")], |_| {}).await;
    let mut targets = vec![
        url.to_owned(),
        "http://localhost:8080/".to_owned(),
        "http://10.1.2.3/".to_owned(),
    ];
    // Never dropped quietly: a machine without such a name fails here.
    let name = name_of_a_private_address().expect(
        "no name in /etc/hosts for a private address (Debian's has ip6-loopback): the resolver check cannot run",
    );
    targets.push(format!("http://{name}:8080/hook"));
    for target in targets {
        let (status, error) = server
            .post(
                "/v1/webhooks",
                json!({"url": target, "subscribed_events": ["batch.failed"]}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{target}: {error}");
        assert!(
            text(&error["error"]["message"]).contains("ANCHORAGE_BLOCK_PRIVATE_NETWORKS"),
            "{error}"
        );
    }
    server.stop().await;
}

/// A name in `/etc/hosts` (such as Debian's `ip6-localhost`) for a loopback
/// or private address that its spelling does not give away.
fn name_of_a_private_address() -> Option<String> {
    let hosts = std::fs::read_to_string("/etc/hosts").ok()?;
    hosts.lines().find_map(|line| {
        let mut words = line.split('#').next()?.split_whitespace();
        let address: std::net::IpAddr = words.next()?.parse().ok()?;
        if !anchorage_core::network::is_private_ip(address) {
            return None;
        }
        words
            .find(|name| !name.contains("localhost") && name.contains(|c: char| c.is_ascii_alphabetic()))
            .map(str::to_owned)
    })
}

#[tokio::test]
async fn a_receiver_that_never_answers_holds_up_no_other_webhook() {
    // Accepts connections and never says a word.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_url = format!("http://{}/hook", silent.local_addr().expect("address"));
    let held = Arc::new(Mutex::new(Vec::new()));
    let holding = held.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = silent.accept().await {
            holding.lock().expect("lock").push(stream);
        }
    });
    let (receiver, url) = Receiver::start(&[]).await;
    let server = TestServer::start().await;
    let stuck = create(&server, &silent_url, &["session.completed"]).await;
    create(&server, &url, &["session.completed"]).await;
    for _ in 0..2 {
        let session = server.create_session(json!({})).await;
        server.delete(&format!("/v1/sessions/{}", text(&session["id"]))).await;
    }
    // Both events reach the answering receiver while the silent one still
    // holds its first connection open (its attempts time out after 10 s).
    receiver.wait_for(2).await;
    let (_, rows) = server
        .get(&format!("/v1/webhooks/{}/events?status=in_flight", text(&stuck["id"])))
        .await;
    assert_eq!(rows["pagination"]["total"], json!(2), "{rows}");
    assert!(!held.lock().expect("lock").is_empty());
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// A code task's runs tell the team's webhooks how they ended.
#[tokio::test]
async fn a_task_run_that_ends_is_told_as_task_completed_or_task_failed() {
    use base64::Engine as _;
    let (receiver, url) = Receiver::start(&[]).await;
    let server = TestServer::start_with(&[("ANCHORAGE_CODE_WARM", "0")], |_| {}).await;
    create(&server, &url, &["task.completed", "task.failed"]).await;
    let code = |source: &str| base64::engine::general_purpose::STANDARD.encode(source);
    let (status, task) = server
        .post(
            "/v1/task",
            json!({"name": "told", "language": "typescript", "code": code("export default async () => 'done';")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    let task_id = text(&task["data"]["id"]).to_owned();
    let (_, ran) = server.post("/v1/task/run", json!({"taskId": task_id})).await;
    assert_eq!(ran["data"]["success"], true, "{ran}");
    let (_, published) = server
        .post(
            &format!("/v1/task/{task_id}/2"),
            json!({"code": code("export default async () => { throw new Error('out of stock'); };")}),
        )
        .await;
    assert_eq!(published["data"]["version"], "2", "{published}");
    let (_, failed) = server.post("/v1/task/run", json!({"taskId": task_id})).await;
    assert_eq!(failed["data"]["success"], false, "{failed}");

    let got = receiver.wait_for(2).await;
    let told: Vec<Value> = got.iter().map(Received::json).collect();
    assert_eq!(told[0]["type"], "task.completed", "{told:?}");
    assert_eq!(told[0]["data"]["task_id"], json!(task_id));
    assert_eq!(told[0]["data"]["execution_id"], ran["data"]["executionResultId"]);
    assert_eq!(told[0]["data"]["version"], "draft");
    assert_eq!(told[1]["type"], "task.failed", "{told:?}");
    assert_eq!(told[1]["data"]["version"], "2");
    assert!(text(&told[1]["data"]["error"]).contains("out of stock"), "{told:?}");
    assert!(text(&told[1]["text"]).contains("out of stock"), "{told:?}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

//! CA certificates with real Chromium: a local HTTPS server whose
//! certificate is signed by a CA the test makes (with `openssl`) shows
//! Chromium's interstitial to a session without the CA and loads in a
//! session that names it; bad certificates are refused.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{Cdp, TestServer, TEST_KEY};

fn openssl(dir: &Path, arguments: &[&str]) {
    let status = Command::new("openssl")
        .args(arguments)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {arguments:?}");
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed.
fn make_ca_and_server_certificate(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=anchorage test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::write(dir.join("index.html"), "<title>secure page</title><p>over TLS</p>").expect("page");
}

/// `openssl s_server` serving the folder over HTTPS; killed on drop.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve_https(dir: &Path) -> HttpsServer {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("free port");
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-WWW",
            "-accept",
            &port.to_string(),
            "-cert",
            "leaf.pem",
            "-key",
            "leaf.key",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s_server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "s_server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    HttpsServer { child, port }
}

async fn upload(server: &TestServer, key: &str, name: &str, file: Vec<u8>) -> (StatusCode, Value) {
    let form = reqwest::multipart::Form::new()
        .text("name", name.to_owned())
        .text("description", "the test's CA")
        .part("file", reqwest::multipart::Part::bytes(file).file_name("ca.pem"));
    server.post_multipart("/v1/certificates", key, form).await
}

/// The title the session shows for `url`, once it has one.
async fn title_of(server: &TestServer, body: Value, url: &str) -> Value {
    let session = server.create_session(body).await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let mut cdp = Cdp::connect(session["cdp_url"].as_str().unwrap_or_default()).await;
    let page = cdp.attach_newest_page().await;
    cdp.call("Page.navigate", json!({"url": url}), Some(&page)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let title = loop {
        let title = cdp.evaluate(&page, "document.title").await;
        if title != json!("") && title != json!("about:blank") {
            break title;
        }
        assert!(Instant::now() < deadline, "no page came");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    title
}

#[tokio::test]
async fn a_session_trusts_the_ca_it_names_and_only_that_session() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    make_ca_and_server_certificate(dir.path());
    let https = serve_https(dir.path());
    let url = format!("https://127.0.0.1:{}/index.html", https.port);

    let ca = std::fs::read(dir.path().join("ca.pem")).expect("ca");
    let (status, uploaded) = upload(&server, TEST_KEY, "test-ca", ca.clone()).await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    assert_eq!(uploaded["data"]["name"], json!("test-ca"));

    assert_eq!(title_of(&server, json!({}), &url).await, json!("Privacy error"));
    assert_eq!(
        title_of(&server, json!({"browser": {"certificates": ["test-ca"]}}), &url).await,
        json!("secure page")
    );

    // Bad files and names are refused; a name is taken once.
    let leaf = std::fs::read(dir.path().join("leaf.pem")).expect("leaf");
    for (name, file, wanted, needle) in [
        ("test-ca", ca.clone(), StatusCode::CONFLICT, "already"),
        ("leaf", leaf, StatusCode::BAD_REQUEST, "not a CA"),
        (
            "junk",
            b"-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "file",
        ),
        (
            "der-junk",
            vec![0x30, 0x03, 0x02, 0x01, 0x01],
            StatusCode::BAD_REQUEST,
            "file",
        ),
        ("bad name!", ca.clone(), StatusCode::BAD_REQUEST, "name"),
    ] {
        let (status, error) = upload(&server, TEST_KEY, name, file).await;
        assert_eq!(status, wanted, "{name}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap_or_default().contains(needle),
            "{name}: {error}"
        );
    }
    let (_, listed) = server.get("/v1/certificates").await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));

    // Another team sees none of it.
    let other = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    let (_, theirs) = server
        .request(reqwest::Method::GET, "/v1/certificates", Some(&other), None)
        .await;
    assert_eq!(theirs, json!({"data": []}));
    let (status, _) = server
        .request(reqwest::Method::DELETE, "/v1/certificates/test-ca", Some(&other), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .request(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(&other),
            Some(json!({"browser": {"certificates": ["test-ca"]}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = server.delete("/v1/certificates/test-ca").await;
    assert_eq!(status, StatusCode::OK);
    let (status, error) = server
        .post("/v1/sessions", json!({"browser": {"certificates": ["test-ca"]}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("browser.certificates"));
    server.assert_no_browsers_left().await;
    server.stop().await;
}

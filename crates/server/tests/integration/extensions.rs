//! Uploaded extensions with real Chromium: a zip whose content script marks
//! every page is checked, kept, and loaded into a session that names it
//! (the page shows the mark), not into one that does not; bad zips and
//! oversized ones are refused and leave nothing; another team sees none.

use std::io::Write;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::support::{serve_test_page, Cdp, TestServer, TEST_KEY};

const MANIFEST: &str = r#"{"manifest_version": 3, "name": "marker", "version": "1.0",
  "content_scripts": [{"matches": ["<all_urls>"], "js": ["mark.js"], "run_at": "document_end"}]}"#;
const MARK: &str = "document.documentElement.setAttribute('data-marked', 'by extension');";

fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, body) in entries {
        writer.start_file(*name, options).expect("entry");
        writer.write_all(body).expect("body");
    }
    writer.finish().expect("finish").into_inner()
}

async fn upload(server: &TestServer, key: &str, name: Option<&str>, zip: Option<Vec<u8>>) -> (StatusCode, Value) {
    let mut form = reqwest::multipart::Form::new();
    if let Some(name) = name {
        form = form.text("name", name.to_owned());
    }
    if let Some(zip) = zip {
        form = form.part("file", reqwest::multipart::Part::bytes(zip).file_name("ext.zip"));
    }
    server.post_multipart("/v1/extensions", key, form).await
}

async fn marked(server: &TestServer, pages: &str, body: Value) -> Value {
    let session = server.create_session(body).await;
    let id = session["id"].as_str().unwrap_or_default().to_owned();
    let (status, _) = server
        .post(&format!("/v1/sessions/{id}/goto"), json!({"url": format!("{pages}/")}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut cdp = Cdp::connect(session["cdp_url"].as_str().unwrap_or_default()).await;
    let page = cdp.attach_newest_page().await;
    let mut mark = Value::Null;
    for _ in 0..50 {
        mark = cdp
            .evaluate(&page, "document.documentElement.getAttribute('data-marked')")
            .await;
        if !mark.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
    }
    cdp.close().await;
    server.delete(&format!("/v1/sessions/{id}")).await;
    mark
}

#[tokio::test]
async fn an_uploaded_extension_changes_the_pages_of_sessions_that_load_it() {
    let server = TestServer::start().await;
    let pages = serve_test_page().await;
    let zip = zip_of(&[("manifest.json", MANIFEST.as_bytes()), ("mark.js", MARK.as_bytes())]);
    let (status, uploaded) = upload(&server, TEST_KEY, Some("marker"), Some(zip)).await;
    assert_eq!(status, StatusCode::OK, "{uploaded}");
    let id = uploaded["data"]["id"].as_str().unwrap_or_default().to_owned();
    assert_eq!(uploaded["data"]["manifest"]["name"], json!("marker"));

    assert_eq!(
        marked(&server, &pages, json!({"browser": {"extensions": [id]}})).await,
        json!("by extension")
    );
    assert_eq!(marked(&server, &pages, json!({})).await, Value::Null);

    let (_, listed) = server.get("/v1/extensions").await;
    assert_eq!(listed["data"][0]["id"], json!(id));
    let (status, one) = server.get(&format!("/v1/extensions/{id}")).await;
    assert_eq!((status, &one["name"]), (StatusCode::OK, &json!("marker")));

    // Another team sees none of it.
    let other = anchorage_server::keys::create(&server.config, "second team", "test")
        .await
        .expect("key");
    let path = format!("/v1/extensions/{id}");
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let (status, _) = server.request(method, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, theirs) = server
        .request(reqwest::Method::GET, "/v1/extensions", Some(&other), None)
        .await;
    assert_eq!(theirs, json!({"data": []}));
    let (status, _) = server
        .request(
            reqwest::Method::POST,
            "/v1/sessions",
            Some(&other),
            Some(json!({"browser": {"extensions": [id]}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, deleted) = server.delete(&path).await;
    assert_eq!(
        (status, deleted),
        (StatusCode::OK, json!({"data": {"data": {"status": "success"}}}))
    );
    assert_eq!(server.get(&path).await.0, StatusCode::NOT_FOUND);
    let left = std::fs::read_dir(server.data_dir.path().join("extensions"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "its files are gone");
    let (status, error) = server
        .post("/v1/sessions", json!({"browser": {"extensions": [id]}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    server.assert_no_browsers_left().await;
    server.stop().await;
}

/// An upload's name and zip, the status wanted, and a word of the message.
type Case<'a> = (Option<&'a str>, Option<Vec<u8>>, StatusCode, &'a str);

#[tokio::test]
async fn bad_extensions_are_refused_and_leave_nothing() {
    let server = TestServer::start_with(&[("ANCHORAGE_MAX_EXTENSION_BYTES", "65536")], |_| {}).await;
    let good = |extra: &[(&str, &[u8])]| {
        let mut entries: Vec<(&str, &[u8])> = vec![("manifest.json", MANIFEST.as_bytes())];
        entries.extend_from_slice(extra);
        zip_of(&entries)
    };
    let bomb = vec![b'a'; 1 << 20];
    let cases: Vec<Case> = vec![
        (None, Some(good(&[])), StatusCode::BAD_REQUEST, "name"),
        (Some("  "), Some(good(&[])), StatusCode::BAD_REQUEST, "name"),
        (Some("x"), None, StatusCode::BAD_REQUEST, "file"),
        (
            Some("x"),
            Some(b"not a zip".to_vec()),
            StatusCode::BAD_REQUEST,
            "not a zip",
        ),
        (
            Some("x"),
            Some(zip_of(&[("mark.js", b"1")])),
            StatusCode::BAD_REQUEST,
            "manifest.json",
        ),
        (
            Some("x"),
            Some(good(&[("../escape.js", b"1")])),
            StatusCode::BAD_REQUEST,
            "leaves",
        ),
        (
            Some("x"),
            Some(good(&[("big.bin", &bomb)])),
            StatusCode::PAYLOAD_TOO_LARGE,
            "",
        ),
        (Some("x"), Some(vec![0_u8; 70_000]), StatusCode::PAYLOAD_TOO_LARGE, ""),
    ];
    for (index, (name, zip, wanted, needle)) in cases.into_iter().enumerate() {
        let (status, error) = upload(&server, TEST_KEY, name, zip).await;
        assert_eq!(status, wanted, "{index}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap_or_default().contains(needle),
            "{index}: {error}"
        );
    }
    assert_eq!(server.get("/v1/extensions").await.1, json!({"data": []}));
    let left: Vec<_> = std::fs::read_dir(server.data_dir.path().join("extensions"))
        .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing is kept: {left:?}");
    for (body, needle) in [
        (json!({"browser": {"extensions": ["nope"]}}), "browser.extensions"),
        (json!({"browser": {"extensions": [7]}}), "browser.extensions"),
        (
            json!({"browser": {"extensions": ["8a6e0804-2bd0-4672-b79d-d97027f22166"]}}),
            "browser.extensions",
        ),
    ] {
        let (status, error) = server.post("/v1/sessions", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert!(
            error["error"]["message"].as_str().unwrap_or_default().contains(needle),
            "{error}"
        );
    }
    assert_eq!(server.get("/v1/extensions/nope").await.0, StatusCode::NOT_FOUND);
    server.assert_no_browsers_left().await;
    server.stop().await;
}

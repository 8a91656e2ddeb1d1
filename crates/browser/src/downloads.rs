//! Downloads of a session's browser: a connection held for the session's
//! life tells Chromium to save downloads into the session's own folder
//! (`Browser.setDownloadBehavior` lasts only while the connection that set
//! it stays attached) and follows its download events, so that the server
//! can list what the browser downloaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// One download, as the browser reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// The browser's id for it.
    pub guid: String,
    /// Where it was downloaded from.
    pub url: String,
    /// The file's name in the downloads folder.
    pub file_name: String,
    /// Bytes received so far.
    pub received_bytes: u64,
    /// `inProgress`, `completed` or `canceled`.
    pub state: String,
    /// When it began, in milliseconds since the epoch.
    pub began_at_millis: i64,
    /// When it completed, in milliseconds since the epoch.
    pub completed_at_millis: Option<i64>,
}

/// The downloads of one browser, in the order they began.
#[derive(Debug, Clone, Default)]
pub struct Downloads(Arc<Mutex<BTreeMap<(i64, String), Download>>>);

impl Downloads {
    /// Every download so far, oldest first.
    pub fn list(&self) -> Vec<Download> {
        self.0
            .lock()
            .map(|downloads| downloads.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The completed download with this id.
    pub fn completed(&self, guid: &str) -> Option<Download> {
        self.list()
            .into_iter()
            .find(|download| download.guid == guid && download.state == "completed")
    }

    fn update(&self, guid: &str, change: impl FnOnce(&mut Download)) {
        if let Ok(mut downloads) = self.0.lock() {
            if let Some(download) = downloads.values_mut().find(|download| download.guid == guid) {
                change(download);
            }
        }
    }
}

/// Saves the browser's downloads into `folder` and records them in
/// `downloads` until `stop` fires or the browser goes.
pub async fn follow_downloads(
    devtools: &Devtools,
    folder: &Path,
    downloads: Downloads,
    stop: CancellationToken,
) -> Result<(), CdpError> {
    let mut client = CdpClient::open(devtools).await?;
    client
        .call(
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": folder, "eventsEnabled": true}),
            None,
        )
        .await?;
    loop {
        let Some(event) = client.next_until(&stop).await else {
            break;
        };
        let params = &event["params"];
        let text_of = |key: &str| params[key].as_str().unwrap_or_default().to_owned();
        match event["method"].as_str() {
            Some("Browser.downloadWillBegin") => {
                let began = chrono_free_now_millis();
                let download = Download {
                    guid: text_of("guid"),
                    url: text_of("url"),
                    file_name: safe_name(&text_of("suggestedFilename")),
                    received_bytes: 0,
                    state: "inProgress".to_owned(),
                    began_at_millis: began,
                    completed_at_millis: None,
                };
                if let Ok(mut all) = downloads.0.lock() {
                    all.insert((began, download.guid.clone()), download);
                }
            }
            Some("Browser.downloadProgress") => {
                let received = params["receivedBytes"].as_f64().unwrap_or(0.0) as u64;
                let state = text_of("state");
                downloads.update(&text_of("guid"), |download| {
                    if state == "completed" && download.completed_at_millis.is_none() {
                        download.completed_at_millis = Some(chrono_free_now_millis());
                    }
                    download.received_bytes = received;
                    download.state = state;
                });
            }
            _ => {}
        }
    }
    client.close().await;
    Ok(())
}

/// The path of a download's file in `folder`.
pub fn download_path(folder: &Path, download: &Download) -> PathBuf {
    folder.join(&download.file_name)
}

fn safe_name(suggested: &str) -> String {
    let last = suggested.rsplit(['/', '\\']).next().unwrap_or_default();
    if last.is_empty() || last.trim_matches('.').is_empty() {
        "download".to_owned()
    } else {
        last.to_owned()
    }
}

fn chrono_free_now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

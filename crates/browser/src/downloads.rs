//! Downloads of a session's browser: a connection held for the session's
//! life tells Chromium to save downloads into the session's own folder
//! (`Browser.setDownloadBehavior` lasts only while the connection that set
//! it stays attached) and follows its download events, so that the server
//! can list what the browser downloaded.
//!
//! A client may set its own download behaviour (Playwright does on
//! connect, to a folder of its own, naming files by their id). The browser
//! may not be able to write there (it runs as another user; the folder may
//! be on the client's machine), and the server must still list the file:
//! the proxy passes the command on with the session's folder in its place
//! ([`Downloads::client_frame`]), and when the browser reports the file
//! finished, puts a copy where the client asked, if that folder is on this
//! machine, before the client hears of it ([`Downloads::browser_frame`]), so
//! the client's own download API finds it. When the last client has gone,
//! the session's own behaviour is set again.

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

/// A finished download's copy into the folder a client named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCopy {
    from: PathBuf,
    to: PathBuf,
}

impl ClientCopy {
    /// Makes the copy, if the client's folder is on this machine (a client
    /// elsewhere named a folder of its own machine: it fetches the file by
    /// its link instead).
    pub async fn make(self) {
        let Some(folder) = self.to.parent() else { return };
        if !tokio::fs::metadata(folder).await.is_ok_and(|meta| meta.is_dir()) {
            return;
        }
        if let Err(error) = tokio::fs::copy(&self.from, &self.to).await {
            tracing::debug!(%error, "could not put a download where its client asked");
        }
    }
}

/// Where a client told the browser to save downloads.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ClientFolder {
    /// Files named by their download id (`allowAndName`), not their name.
    by_id: bool,
    folder: PathBuf,
}

/// The downloads of one browser, in the order they began.
#[derive(Debug, Clone, Default)]
pub struct Downloads {
    all: Arc<Mutex<BTreeMap<(i64, String), Download>>>,
    client_folders: Arc<Mutex<Vec<ClientFolder>>>,
    /// Asks the follower to set the session's own behaviour again.
    reassert: Arc<tokio::sync::Notify>,
}

impl Downloads {
    /// A text frame a client sends the browser, as it goes on: a
    /// `Browser.setDownloadBehavior` that saves files is remembered and
    /// given the session's `folder` instead of its own (`None`: unchanged).
    /// Cheap for every other frame.
    pub fn client_frame(&self, text: &str, folder: &Path) -> Option<String> {
        if !text.contains("Browser.setDownloadBehavior") {
            return None;
        }
        let mut message = serde_json::from_str::<serde_json::Value>(text).ok()?;
        if message["method"] != "Browser.setDownloadBehavior" {
            return None;
        }
        let params = message.get_mut("params")?;
        let behavior = params["behavior"].as_str()?.to_owned();
        let asked = params["downloadPath"].as_str()?.to_owned();
        if !matches!(behavior.as_str(), "allow" | "allowAndName") || asked.is_empty() {
            return None;
        }
        let noted = ClientFolder {
            by_id: behavior == "allowAndName",
            folder: PathBuf::from(asked),
        };
        if let Ok(mut folders) = self.client_folders.lock() {
            folders.retain(|known| known.folder != noted.folder);
            folders.push(noted);
        }
        params["downloadPath"] = json!(folder);
        Some(message.to_string())
    }

    /// A text frame the browser sends a client, before it goes on: when it
    /// says a download finished, the copy to make (from the session's
    /// `folder` to where that client's behaviour asked), for the proxy to
    /// make before the client hears of it. Cheap for every other frame.
    pub fn browser_frame(&self, text: &str, folder: &Path) -> Option<ClientCopy> {
        if !text.contains("Browser.downloadProgress") || !text.contains("completed") {
            return None;
        }
        let message = serde_json::from_str::<serde_json::Value>(text).ok()?;
        if message["method"] != "Browser.downloadProgress" || message["params"]["state"] != "completed" {
            return None;
        }
        let guid = message["params"]["guid"].as_str().unwrap_or_default();
        let client = self.client_folders.lock().ok()?.last().cloned()?;
        let name = if client.by_id {
            guid.to_owned()
        } else {
            self.list()
                .into_iter()
                .find(|download| download.guid == guid)?
                .file_name
        };
        (!name.is_empty()).then(|| ClientCopy {
            from: folder.join(&name),
            to: client.folder.join(&name),
        })
    }

    /// The session's last client has gone, and with its connection the
    /// download behaviour it set: the session's own is set again.
    pub fn clients_gone(&self) {
        if let Ok(mut folders) = self.client_folders.lock() {
            folders.clear();
        }
        self.reassert.notify_one();
    }

    /// Every download so far, oldest first.
    pub fn list(&self) -> Vec<Download> {
        self.all
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
        if let Ok(mut downloads) = self.all.lock() {
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
    let behaviour = json!({"behavior": "allow", "downloadPath": folder, "eventsEnabled": true});
    client
        .call("Browser.setDownloadBehavior", behaviour.clone(), None)
        .await?;
    let reassert = Arc::clone(&downloads.reassert);
    loop {
        let event = tokio::select! {
            event = client.next_until(&stop) => event,
            () = reassert.notified() => {
                // Answered through `next` like any message; its answer is passed over.
                client.send("Browser.setDownloadBehavior", behaviour.clone(), None).await?;
                continue;
            }
        };
        let Some(event) = event else {
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
                if let Ok(mut all) = downloads.all.lock() {
                    all.insert((began, download.guid.clone()), download);
                }
            }
            Some("Browser.downloadProgress") => {
                let received = params["receivedBytes"].as_f64().unwrap_or(0.0) as u64;
                let state = text_of("state");
                let guid = text_of("guid");
                if state == "completed" {
                    // Saved by its id (a client's behaviour): it gets its
                    // name too, so that it is listed with a file to serve.
                    let name = downloads
                        .list()
                        .into_iter()
                        .find(|download| download.guid == guid)
                        .map(|download| download.file_name);
                    let by_id = folder.join(&guid);
                    let exists = async |path: &Path| tokio::fs::metadata(path).await.is_ok_and(|meta| meta.is_file());
                    if let Some(name) = name {
                        if !exists(&folder.join(&name)).await && exists(&by_id).await {
                            if let Err(error) = tokio::fs::copy(&by_id, folder.join(&name)).await {
                                tracing::warn!(%error, "could not name a download saved by its id");
                            }
                        }
                    }
                }
                downloads.update(&guid, |download| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_download_behaviour_saves_into_the_session_folder_and_only_that_is_rewritten() {
        let downloads = Downloads::default();
        let session = Path::new("/data/browsers/s/downloads");
        let asked = json!({"id": 7, "method": "Browser.setDownloadBehavior",
            "params": {"behavior": "allowAndName", "downloadPath": "/tmp/client-folder", "eventsEnabled": true}});
        let rewritten: serde_json::Value =
            serde_json::from_str(&downloads.client_frame(&asked.to_string(), session).expect("rewritten"))
                .expect("JSON");
        assert_eq!(rewritten["id"], json!(7));
        assert_eq!(rewritten["params"]["downloadPath"], json!(session));
        assert_eq!(rewritten["params"]["behavior"], json!("allowAndName"));
        assert_eq!(rewritten["params"]["eventsEnabled"], json!(true));
        // Anything else passes unchanged: other methods, a deny, the text
        // merely mentioning the method.
        for other in [
            json!({"id": 8, "method": "Page.navigate", "params": {"url": "https://example.test/"}}),
            json!({"id": 9, "method": "Browser.setDownloadBehavior", "params": {"behavior": "deny"}}),
            json!({"id": 10, "method": "Runtime.evaluate", "params": {"expression": "'Browser.setDownloadBehavior'"}}),
        ] {
            assert_eq!(downloads.client_frame(&other.to_string(), session), None, "{other}");
        }
    }

    #[tokio::test]
    async fn a_finished_download_is_copied_where_its_client_asked() {
        let root = tempfile::tempdir().expect("dir");
        let (session, client) = (root.path().join("session"), root.path().join("client"));
        std::fs::create_dir_all(&session).expect("dir");
        std::fs::create_dir_all(&client).expect("dir");
        let downloads = Downloads::default();
        let asked = json!({"id": 1, "method": "Browser.setDownloadBehavior",
            "params": {"behavior": "allowAndName", "downloadPath": client, "eventsEnabled": true}});
        downloads.client_frame(&asked.to_string(), &session);
        std::fs::write(session.join("guid-1"), b"a,b\n").expect("write");
        let progress = |state: &str| {
            json!({"method": "Browser.downloadProgress", "params": {"guid": "guid-1", "state": state,
                "receivedBytes": 4, "totalBytes": 4}})
            .to_string()
        };
        assert_eq!(downloads.browser_frame(&progress("inProgress"), &session), None);
        let copy = downloads
            .browser_frame(&progress("completed"), &session)
            .expect("a copy");
        copy.make().await;
        assert_eq!(std::fs::read(client.join("guid-1")).expect("copied"), b"a,b\n");
        // A folder that is not on this machine gets nothing, and no error.
        std::fs::remove_dir_all(&client).expect("remove");
        let copy = downloads
            .browser_frame(&progress("completed"), &session)
            .expect("a copy");
        copy.make().await;
        assert!(!client.exists());
        // Once the clients have gone, nothing more is copied anywhere.
        downloads.clients_gone();
        assert_eq!(downloads.browser_frame(&progress("completed"), &session), None);
    }
}

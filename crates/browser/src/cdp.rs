//! Small CDP conversations the server has with a browser on its own behalf.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use url::Url;

use crate::devtools::{Devtools, DevtoolsConnection};

/// One open page of a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageInfo {
    /// The target id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// Its URL.
    pub url: String,
}

/// Asks the browser for its page targets with `Target.getTargets`.
pub async fn list_pages(devtools: &Devtools) -> Result<Vec<PageInfo>, String> {
    let mut conversation = Conversation::open(devtools).await?;
    let answer = conversation.call("Target.getTargets", json!({}), None).await;
    conversation.close().await;
    let answer = answer?;
    let infos = answer
        .pointer("/targetInfos")
        .and_then(Value::as_array)
        .ok_or_else(|| format!("unexpected answer to Target.getTargets: {answer}"))?;
    let text = |info: &Value, key: &str| info.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(infos
        .iter()
        .filter(|info| info.get("type").and_then(Value::as_str) == Some("page"))
        .map(|info| PageInfo {
            id: text(info, "targetId"),
            title: text(info, "title"),
            url: text(info, "url"),
        })
        .collect())
}

/// A CDP connection for the server's own short conversations.
struct Conversation {
    socket: DevtoolsConnection,
    next_id: u64,
}

impl Conversation {
    async fn open(devtools: &Devtools) -> Result<Self, String> {
        let socket = devtools
            .connect()
            .await
            .map_err(|error| format!("cannot reach the browser: {error}"))?;
        Ok(Self { socket, next_id: 0 })
    }

    /// Sends one command and returns its `result`.
    async fn call(&mut self, method: &str, params: Value, session_id: Option<&str>) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        self.socket
            .send(command(id, method, params, session_id))
            .await
            .map_err(|error| error.to_string())?;
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) => {
                    let value: Value = serde_json::from_str(&text).map_err(|error| error.to_string())?;
                    if value.get("id") != Some(&json!(id)) {
                        continue;
                    }
                    if let Some(error) = value.get("error") {
                        return Err(format!("{method} failed: {error}"));
                    }
                    return Ok(value.get("result").cloned().unwrap_or(Value::Null));
                }
                Some(Ok(_)) => continue,
                Some(Err(error)) => return Err(error.to_string()),
                None => return Err("the browser closed the connection".to_owned()),
            }
        }
    }

    /// The first page target's id.
    async fn first_page(&mut self) -> Result<String, String> {
        let targets = self.call("Target.getTargets", json!({}), None).await?;
        first_page_target(&targets).ok_or_else(|| "the browser has no page".to_owned())
    }

    /// Attaches to a target (flat mode) and returns the CDP session id.
    async fn attach(&mut self, target_id: &str) -> Result<String, String> {
        let attached = self
            .call(
                "Target.attachToTarget",
                json!({"targetId": target_id, "flatten": true}),
                None,
            )
            .await?;
        attached
            .get("sessionId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "no session id".to_owned())
    }

    async fn detach(&mut self, session: &str) {
        let _ = self
            .call("Target.detachFromTarget", json!({"sessionId": session}), None)
            .await;
    }

    async fn close(mut self) {
        let _ = self.socket.close().await;
    }
}

/// Sizes the browser window so that its first page's viewport is exactly
/// `width`×`height`, and returns the size of the window's own frame (window
/// minus viewport), which is the same for every browser of one build.
pub async fn fit_viewport(devtools: &Devtools, width: u32, height: u32) -> Result<(u32, u32), String> {
    let mut conversation = Conversation::open(devtools).await?;
    let outcome = async {
        let target_id = conversation.first_page().await?;
        let window = conversation
            .call("Browser.getWindowForTarget", json!({"targetId": target_id}), None)
            .await?;
        let window_id = window.get("windowId").cloned().ok_or("no window id")?;
        let bounds = |key: &str| {
            window
                .pointer(&format!("/bounds/{key}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let (window_width, window_height) = (bounds("width"), bounds("height"));
        let session = conversation.attach(&target_id).await?;
        let inner = conversation
            .call(
                "Runtime.evaluate",
                json!({"expression": "[window.innerWidth, window.innerHeight]", "returnByValue": true}),
                Some(&session),
            )
            .await?;
        let inner_size = |index: usize| {
            inner
                .pointer(&format!("/result/value/{index}"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        let frame_width = window_width.saturating_sub(inner_size(0)) as u32;
        let frame_height = window_height.saturating_sub(inner_size(1)) as u32;
        if frame_width > 0 || frame_height > 0 {
            let bounds = json!({"width": width + frame_width, "height": height + frame_height});
            conversation
                .call(
                    "Browser.setWindowBounds",
                    json!({"windowId": window_id, "bounds": bounds}),
                    None,
                )
                .await?;
        }
        conversation.detach(&session).await;
        Ok::<_, String>((frame_width, frame_height))
    }
    .await;
    conversation.close().await;
    outcome
}

/// Navigates the browser's first page to `url` (for a browser launched
/// before its session knew its `initial_url`); does not wait for the load.
pub async fn open_in_first_page(devtools: &Devtools, url: &Url) -> Result<(), String> {
    let mut conversation = Conversation::open(devtools).await?;
    let outcome = async {
        let target_id = conversation.first_page().await?;
        let session = conversation.attach(&target_id).await?;
        conversation
            .call("Page.navigate", json!({"url": url.as_str()}), Some(&session))
            .await?;
        conversation.detach(&session).await;
        Ok::<_, String>(())
    }
    .await;
    conversation.close().await;
    outcome
}

/// A CDP command message, addressed to a flat-mode session if one is given.
pub(crate) fn command(id: u64, method: &str, params: Value, session_id: Option<&str>) -> Message {
    let mut message = json!({"id": id, "method": method, "params": params});
    if let Some(session_id) = session_id {
        message["sessionId"] = json!(session_id);
    }
    Message::text(message.to_string())
}

/// The id of the first page target in a `Target.getTargets` answer.
fn first_page_target(targets: &Value) -> Option<String> {
    targets
        .pointer("/targetInfos")
        .and_then(Value::as_array)?
        .iter()
        .find(|info| info.get("type").and_then(Value::as_str) == Some("page"))
        .and_then(|info| info.get("targetId").and_then(Value::as_str))
        .map(str::to_owned)
}

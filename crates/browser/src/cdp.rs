//! The one CDP client of this crate ([`CdpClient`]), a connection of the
//! browser's DevTools hub with numbered commands, and the small
//! conversations the server has with a browser on its own behalf (the
//! pages, the first window's size, a page to open). The live view's
//! screencast speaks through the same client. Errors are typed
//! ([`CdpError`]).

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
    /// Whether it is the session's active page (see the crate's `pages` module).
    pub active: bool,
}

/// What can go wrong in a CDP conversation.
#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    /// No connection could be opened on the browser's pipe.
    #[error("cannot reach the browser: {0}")]
    Unreachable(String),
    /// The connection ended (the browser went, or closed it).
    #[error("the browser closed the connection")]
    Closed,
    /// A command could not be sent.
    #[error("the browser connection failed: {0}")]
    Send(String),
    /// The browser answered a command with an error.
    #[error("{method} failed: {error}")]
    Failed {
        /// The command.
        method: String,
        /// The browser's error object.
        error: Value,
    },
    /// An answer did not have the shape the protocol gives it.
    #[error("unexpected answer: {0}")]
    Malformed(String),
    /// The browser did not answer in time.
    #[error("the browser did not answer in time ({0})")]
    Timeout(String),
    /// The page a command was sent to detached (it closed, or swapped its
    /// process) before answering: Chromium then never answers.
    #[error("{0}: the page went away before it answered")]
    Detached(String),
}

impl CdpError {
    /// Whether the page a command was sent to had closed (its CDP session
    /// was gone when the command reached the browser).
    pub fn is_page_gone(&self) -> bool {
        match self {
            Self::Detached(_) => true,
            Self::Failed { error, .. } => {
                let message = error.get("message").and_then(Value::as_str).unwrap_or_default();
                error.get("code").and_then(Value::as_i64) == Some(-32001)
                    || message.contains("Session with given id not found")
                    || message.contains("No target with given id")
                    || message.contains("Target closed")
            }
            _ => false,
        }
    }
}

/// Asks the browser for its page targets with `Target.getTargets`, and
/// which of them is active.
pub async fn list_pages(devtools: &Devtools) -> Result<Vec<PageInfo>, CdpError> {
    let mut conversation = CdpClient::open(devtools).await?;
    let answer = async {
        let order = crate::pages::discover(&mut conversation, devtools).await?;
        let targets = conversation.call("Target.getTargets", json!({}), None).await?;
        Ok::<_, CdpError>((order.active().map(str::to_owned), targets))
    }
    .await;
    conversation.close().await;
    let (active, answer) = answer?;
    let infos = answer
        .pointer("/targetInfos")
        .and_then(Value::as_array)
        .ok_or_else(|| CdpError::Malformed(format!("Target.getTargets gave {answer}")))?;
    let text = |info: &Value, key: &str| info.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(infos
        .iter()
        .filter(|info| info.get("type").and_then(Value::as_str) == Some("page"))
        .map(|info| PageInfo {
            id: text(info, "targetId"),
            title: text(info, "title"),
            url: text(info, "url"),
            active: active.as_deref() == info.get("targetId").and_then(Value::as_str),
        })
        .collect())
}

/// Opens a new page (tab) at `url`; its target id. It becomes the
/// session's active page, as any page opened last does.
pub async fn open_page(devtools: &Devtools, url: &str) -> Result<String, CdpError> {
    let mut conversation = CdpClient::open(devtools).await?;
    let answer = conversation
        .call("Target.createTarget", json!({"url": url}), None)
        .await;
    conversation.close().await;
    answer?
        .get("targetId")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| CdpError::Malformed("Target.createTarget gave no target id".to_owned()))
}

/// Closes the page `target` if it is one of the browser's (as this
/// connection sees them); whether it was. Answers once the browser has
/// announced the page gone (`Target.closeTarget` answers before that), so a
/// listing made next no longer shows it; at most a few seconds.
pub async fn close_page(devtools: &Devtools, target: &str) -> Result<bool, CdpError> {
    let mut conversation = CdpClient::open(devtools).await?;
    let closed = async {
        let order = crate::pages::discover(&mut conversation, devtools).await?;
        if !order.pages().iter().any(|page| page == target) {
            return Ok(false);
        }
        let answer = conversation
            .call("Target.closeTarget", json!({"targetId": target}), None)
            .await?;
        if answer.get("success").and_then(Value::as_bool) == Some(false) {
            return Ok(false);
        }
        let gone = |event: &Value| {
            event.get("method").and_then(Value::as_str) == Some("Target.targetDestroyed")
                && event.pointer("/params/targetId").and_then(Value::as_str) == Some(target)
        };
        if conversation.take_events()?.iter().any(gone) {
            return Ok(true);
        }
        let wait = async {
            while let Some(Message::Text(text)) = conversation.next().await {
                if serde_json::from_str::<Value>(&text).is_ok_and(|event| gone(&event)) {
                    break;
                }
            }
        };
        // A page slow to go is reported closed as the browser answered.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), wait).await;
        Ok(true)
    }
    .await;
    conversation.close().await;
    closed
}

/// The ids of the targets in a `Target.getTargets` answer whose type is one
/// of `types`.
pub(crate) fn target_ids_of(targets: &Value, types: &[&str]) -> Vec<String> {
    targets
        .get("targetInfos")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|info| {
            info.get("type")
                .and_then(Value::as_str)
                .is_some_and(|kind| types.contains(&kind))
        })
        .filter_map(|info| info.get("targetId").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// A connection of the browser's DevTools hub that numbers its commands:
/// `call` waits for a command's answer, `send` only sends (its answer comes
/// through `next` like any message).
pub(crate) struct CdpClient {
    socket: DevtoolsConnection,
    next_id: u64,
    /// Whether target events that arrive while a call waits are kept for
    /// [`CdpClient::take_events`] instead of being passed over.
    keep_target_events: bool,
    /// Whether every event that arrives while a call waits is kept.
    keep_all_events: bool,
    kept: Vec<Value>,
}

impl CdpClient {
    /// Opens a connection with a browser session of its own.
    pub(crate) async fn open(devtools: &Devtools) -> Result<Self, CdpError> {
        let socket = devtools.connect().await.map_err(CdpError::Unreachable)?;
        Ok(Self {
            socket,
            next_id: 0,
            keep_target_events: false,
            keep_all_events: false,
            kept: Vec::new(),
        })
    }

    /// From now on, keeps the target events that arrive during calls.
    pub(crate) fn keep_target_events(&mut self) {
        self.keep_target_events = true;
    }

    /// From now on, keeps every event that arrives during calls (for a
    /// connection that must act on each, such as a paused request).
    pub(crate) fn keep_all_events(&mut self) {
        self.keep_all_events = true;
    }

    /// Keeps `message` if it is an event of a kind being kept.
    pub(crate) fn keep(&mut self, message: Value) {
        let wanted = if self.keep_all_events {
            message.get("method").is_some()
        } else {
            self.keep_target_events && crate::pages::is_target_event(&message)
        };
        if wanted {
            self.kept.push(message);
        }
    }

    /// The events kept so far, without reading more.
    pub(crate) fn take_kept(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.kept)
    }

    /// The target events kept so far and those already waiting, without
    /// waiting for more; `Err(Closed)` once the connection has ended.
    pub(crate) fn take_events(&mut self) -> Result<Vec<Value>, CdpError> {
        use futures_util::FutureExt;
        while let Some(message) = self.next().now_or_never() {
            let Some(Message::Text(text)) = message else {
                return Err(CdpError::Closed);
            };
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                self.keep(value);
            }
        }
        Ok(std::mem::take(&mut self.kept))
    }

    /// Sends one command, addressed to a flat-mode CDP session if given;
    /// returns its id.
    pub(crate) async fn send(
        &mut self,
        method: &str,
        params: Value,
        session_id: Option<&str>,
    ) -> Result<u64, CdpError> {
        self.next_id += 1;
        let id = self.next_id;
        self.socket
            .send(command(id, method, params, session_id))
            .await
            .map_err(|error| CdpError::Send(error.to_string()))?;
        Ok(id)
    }

    /// Sends one command and returns its `result`; other messages that
    /// arrive meanwhile are passed over.
    pub(crate) async fn call(
        &mut self,
        method: &str,
        params: Value,
        session_id: Option<&str>,
    ) -> Result<Value, CdpError> {
        let id = self.send(method, params, session_id).await?;
        loop {
            let Some(Message::Text(text)) = self.next().await else {
                return Err(CdpError::Closed);
            };
            let value: Value = serde_json::from_str(&text).map_err(|error| CdpError::Malformed(error.to_string()))?;
            if value.get("id") != Some(&json!(id)) {
                // A command to a page that detaches meanwhile is never
                // answered: say so now rather than wait for a timeout.
                let detached = session_id.is_some()
                    && value.get("method").and_then(Value::as_str) == Some("Target.detachedFromTarget")
                    && value.pointer("/params/sessionId").and_then(Value::as_str) == session_id;
                self.keep(value);
                if detached {
                    return Err(CdpError::Detached(method.to_owned()));
                }
                continue;
            }
            if let Some(error) = value.get("error") {
                return Err(CdpError::Failed {
                    method: method.to_owned(),
                    error: error.clone(),
                });
            }
            return Ok(value.get("result").cloned().unwrap_or(Value::Null));
        }
    }

    /// The next text message from the browser; `None` once the connection
    /// has ended. Cancel-safe.
    pub(crate) async fn next(&mut self) -> Option<Message> {
        loop {
            match self.socket.next().await {
                Some(Ok(message @ Message::Text(_))) => return Some(message),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next message as JSON, for a connection held for a session's
    /// life: `None` once `stop` fires or the connection ends; messages that
    /// are not JSON are passed over.
    pub(crate) async fn next_until(&mut self, stop: &tokio_util::sync::CancellationToken) -> Option<Value> {
        loop {
            let message = tokio::select! {
                message = self.next() => message,
                () = stop.cancelled() => return None,
            };
            let Message::Text(text) = message? else {
                return None;
            };
            if let Ok(value) = serde_json::from_str::<Value>(&text) {
                return Some(value);
            }
        }
    }

    /// The first page target's id.
    async fn first_page(&mut self) -> Result<String, CdpError> {
        let targets = self.call("Target.getTargets", json!({}), None).await?;
        first_page_target(&targets).ok_or_else(|| CdpError::Malformed("the browser has no page".to_owned()))
    }

    /// Attaches to every page opened from now on (flat mode), each waiting
    /// until it is told to run (`Runtime.runIfWaitingForDebugger`).
    pub(crate) async fn attach_to_new_pages(&mut self) -> Result<(), CdpError> {
        self.call(
            "Target.setAutoAttach",
            json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true,
                   "filter": [{"type": "page", "exclude": false}, {"exclude": true}]}),
            None,
        )
        .await
        .map(drop)
    }

    /// Attaches to a target (flat mode) and returns the CDP session id.
    pub(crate) async fn attach(&mut self, target_id: &str) -> Result<String, CdpError> {
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
            .ok_or_else(|| CdpError::Malformed("Target.attachToTarget gave no session id".to_owned()))
    }

    pub(crate) async fn detach(&mut self, session: &str) {
        let _ = self
            .call("Target.detachFromTarget", json!({"sessionId": session}), None)
            .await;
    }

    /// Closes the connection (the hub detaches its browser session).
    pub(crate) async fn close(mut self) {
        let _ = self.socket.close().await;
    }
}

/// Sizes the browser window so that its first page's viewport is exactly
/// `width`×`height`, and returns the size of the window's own frame (window
/// minus viewport), which is the same for every browser of one build.
pub async fn fit_viewport(devtools: &Devtools, width: u32, height: u32) -> Result<(u32, u32), CdpError> {
    let mut conversation = CdpClient::open(devtools).await?;
    let outcome = async {
        let target_id = conversation.first_page().await?;
        let window = conversation
            .call("Browser.getWindowForTarget", json!({"targetId": target_id}), None)
            .await?;
        let window_id = window
            .get("windowId")
            .cloned()
            .ok_or_else(|| CdpError::Malformed("Browser.getWindowForTarget gave no window id".to_owned()))?;
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
        Ok::<_, CdpError>((frame_width, frame_height))
    }
    .await;
    conversation.close().await;
    outcome
}

/// Navigates the browser's first page to `url` (for a browser launched
/// before its session knew its `initial_url`); does not wait for the load.
pub async fn open_in_first_page(devtools: &Devtools, url: &Url) -> Result<(), CdpError> {
    let mut conversation = CdpClient::open(devtools).await?;
    let outcome = async {
        let target_id = conversation.first_page().await?;
        let session = conversation.attach(&target_id).await?;
        conversation
            .call("Page.navigate", json!({"url": url.as_str()}), Some(&session))
            .await?;
        conversation.detach(&session).await;
        Ok::<_, CdpError>(())
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

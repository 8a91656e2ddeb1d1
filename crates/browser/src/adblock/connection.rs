//! The browser side of ad blocking: one DevTools connection per browser,
//! held by the server for the browser's life.
//!
//! - **Requests**: `Fetch.enable` on the connection's own browser session
//!   pauses every request of every page, frame and worker of the browser
//!   (all its contexts) before it leaves; the connection answers each at
//!   once from the engine in memory (a few microseconds), failing it as
//!   `BlockedByClient` or letting it go on. A client's own interception
//!   (Playwright's `page.route`) is nearer the page, so it sees every
//!   request first, and what it lets go on is checked here. A page's own
//!   navigation (a top-level document) is never blocked: the client asked
//!   for it.
//! - **Elements**: every page gets a script in an isolated world of its own
//!   (out of the page's reach) that reports the document's URL and then the
//!   classes and ids it meets (as they appear); the connection answers with
//!   CSS that hides what the lists name for the site and what their generic
//!   rules name among those classes and ids. Frames in other processes get
//!   their requests blocked but not their elements hidden.
//!
//! It must not block anything when its engine has no rule for it, and never
//! keeps a request waiting on anything but the engine.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Adblock, FilterEngine, Verdict};
use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// The binding the page script reports through (in its world only).
const BINDING: &str = "__anchorage_adblock";
/// The isolated world the page script runs in.
const WORLD: &str = "anchorage-adblock";
/// The most of one report that is read.
const MAX_REPORT_BYTES: usize = 256 * 1024;
/// Frames whose document URL is remembered, before the memory is cleared.
const MAX_FRAMES: usize = 4096;

/// Runs in the isolated world of every document: reports the URL, then the
/// classes and ids met (each once), and applies the CSS it is sent.
const PAGE_SCRIPT: &str = r#"(() => {
  const report = globalThis.__anchorage_adblock;
  if (typeof report !== 'function') return;
  const seen = new Set();
  let classes = [], ids = [], queued = false, sheet = null;
  const place = () => {
    const root = document.head || document.documentElement;
    if (!root) { document.addEventListener('readystatechange', place, { once: true }); return; }
    if (sheet.parentNode !== root) root.appendChild(sheet);
  };
  globalThis.__anchorage_hide = (css) => {
    if (!sheet) sheet = document.createElement('style');
    sheet.textContent += css;
    place();
  };
  const send = () => {
    queued = false;
    if (classes.length === 0 && ids.length === 0) return;
    report(JSON.stringify({ url: location.href, classes: classes.splice(0, 2000), ids: ids.splice(0, 2000) }));
    if (classes.length || ids.length) { queued = true; setTimeout(send, 20); }
  };
  const note = (element) => {
    const id = element.id;
    if (typeof id === 'string' && id && !seen.has('#' + id)) { seen.add('#' + id); ids.push(id); }
    const list = element.classList;
    if (list) for (let i = 0; i < list.length; i++) {
      if (!seen.has('.' + list[i])) { seen.add('.' + list[i]); classes.push(list[i]); }
    }
  };
  const scan = (node) => {
    if (node.nodeType !== 1) return;
    note(node);
    for (const element of node.querySelectorAll('[id],[class]')) note(element);
  };
  const later = () => { if (!queued && (classes.length || ids.length)) { queued = true; setTimeout(send, 20); } };
  report(JSON.stringify({ url: location.href, classes: [], ids: [] }));
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === 'attributes') note(record.target);
      else for (const node of record.addedNodes) scan(node);
    }
    later();
  }).observe(document, { childList: true, subtree: true, attributes: true, attributeFilter: ['class', 'id'] });
  if (document.documentElement) { scan(document.documentElement); later(); }
})();"#;

/// What a page script reported.
#[derive(Debug, serde::Deserialize)]
struct Report {
    url: String,
    #[serde(default)]
    classes: Vec<String>,
    #[serde(default)]
    ids: Vec<String>,
}

/// What hides elements in one document (an isolated world of one page).
#[derive(Debug)]
struct World {
    exceptions: HashSet<String>,
    generic_off: bool,
}

/// A connection that blocks a browser's ads (see the module).
pub struct AdblockConnection {
    client: CdpClient,
    adblock: Arc<Adblock>,
    /// The CDP session of each attached page, to its target id (which is
    /// also its main frame's id).
    sessions: HashMap<String, String>,
    /// The document URL of each frame seen navigating.
    frames: HashMap<String, String>,
    /// Each document's cosmetics, by page session and execution context.
    worlds: HashMap<(String, i64), World>,
}

impl std::fmt::Debug for AdblockConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdblockConnection")
            .field("pages", &self.sessions.len())
            .finish_non_exhaustive()
    }
}

/// The engine's request type for a CDP resource type.
fn request_kind(resource_type: &str, main_frame: bool) -> &'static str {
    match resource_type {
        "Document" if main_frame => "main_frame",
        "Document" => "sub_frame",
        "Stylesheet" => "stylesheet",
        "Image" => "image",
        "Media" => "media",
        "Font" => "font",
        "Script" => "script",
        "XHR" | "Fetch" => "xmlhttprequest",
        "WebSocket" => "websocket",
        "Ping" => "ping",
        "CSPViolationReport" => "csp_report",
        _ => "other",
    }
}

impl AdblockConnection {
    /// Opens the connection and starts blocking: when it returns, every
    /// request of the browser is checked, and every page open or opened
    /// later gets its elements hidden.
    pub async fn enable(devtools: &Devtools, adblock: Arc<Adblock>) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        // Paused requests and new pages that arrive while a call below
        // waits are kept for `run`, never passed over (they would hang).
        client.keep_all_events();
        client.attach_to_new_pages().await?;
        let mut connection = Self {
            client,
            adblock,
            sessions: HashMap::new(),
            frames: HashMap::new(),
            worlds: HashMap::new(),
        };
        let targets = connection.client.call("Target.getTargets", json!({}), None).await?;
        for page in crate::cdp::target_ids_of(&targets, &["page"]) {
            // A page that closed meanwhile is no error.
            if let Ok(session) = connection.client.attach(&page).await {
                connection.set_page_up(&page, &session, false).await?;
            }
        }
        connection
            .client
            .call(
                "Fetch.enable",
                json!({"patterns": [{"urlPattern": "*", "requestStage": "Request"}]}),
                None,
            )
            .await?;
        Ok(connection)
    }

    /// Blocks until `stop` fires or the browser goes.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut pending = self.client.take_kept();
        loop {
            let event = if pending.is_empty() {
                match self.client.next_until(&stop).await {
                    Some(event) => event,
                    None => break,
                }
            } else {
                pending.remove(0)
            };
            if self.handle(event).await.is_err() {
                break;
            }
        }
        self.client.close().await;
    }

    async fn handle(&mut self, event: Value) -> Result<(), CdpError> {
        let Some(method) = event.get("method").and_then(Value::as_str) else {
            return Ok(());
        };
        let params = event.get("params").unwrap_or(&Value::Null);
        match method {
            "Fetch.requestPaused" => self.decide(params).await,
            "Target.attachedToTarget" => {
                let (Some(session), Some(target)) = (
                    params.get("sessionId").and_then(Value::as_str),
                    params.pointer("/targetInfo/targetId").and_then(Value::as_str),
                ) else {
                    return Ok(());
                };
                // A page attached by `enable` is announced too: it is set up
                // already.
                if self.sessions.contains_key(session) {
                    return Ok(());
                }
                let (session, target) = (session.to_owned(), target.to_owned());
                self.set_page_up(&target, &session, true).await
            }
            "Target.detachedFromTarget" => {
                if let Some(session) = params.get("sessionId").and_then(Value::as_str) {
                    if let Some(target) = self.sessions.remove(session) {
                        self.frames.remove(&target);
                    }
                    self.worlds.retain(|(world_session, _), _| world_session != session);
                }
                Ok(())
            }
            "Runtime.executionContextDestroyed" => {
                if let (Some(session), Some(context)) = (
                    event.get("sessionId").and_then(Value::as_str),
                    params.get("executionContextId").and_then(Value::as_i64),
                ) {
                    self.worlds.remove(&(session.to_owned(), context));
                }
                Ok(())
            }
            "Runtime.executionContextsCleared" => {
                if let Some(session) = event.get("sessionId").and_then(Value::as_str) {
                    self.worlds.retain(|(world_session, _), _| world_session != session);
                }
                Ok(())
            }
            "Runtime.bindingCalled" if params.get("name").and_then(Value::as_str) == Some(BINDING) => {
                let session = event
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                self.hide(&session, params).await
            }
            _ => Ok(()),
        }
    }

    /// Gives a page the script that reports its documents (then lets it go
    /// on, if it waits for us).
    async fn set_page_up(&mut self, target: &str, session: &str, waiting: bool) -> Result<(), CdpError> {
        self.sessions.insert(session.to_owned(), target.to_owned());
        let commands = [
            (
                "Runtime.addBinding",
                json!({"name": BINDING, "executionContextName": WORLD}),
            ),
            // Both are needed for the script to run in each new document
            // and for its reports to arrive.
            ("Page.enable", json!({})),
            ("Runtime.enable", json!({})),
            (
                "Page.addScriptToEvaluateOnNewDocument",
                json!({"source": PAGE_SCRIPT, "worldName": WORLD, "runImmediately": true}),
            ),
        ];
        for (method, params) in commands {
            self.client.send(method, params, Some(session)).await?;
        }
        if waiting {
            self.client
                .send("Runtime.runIfWaitingForDebugger", json!({}), Some(session))
                .await?;
        }
        Ok(())
    }

    /// Answers one paused request.
    async fn decide(&mut self, params: &Value) -> Result<(), CdpError> {
        let Some(request_id) = params.get("requestId").and_then(Value::as_str) else {
            return Ok(());
        };
        let url = params
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let resource_type = params.get("resourceType").and_then(Value::as_str).unwrap_or_default();
        let frame = params.get("frameId").and_then(Value::as_str).unwrap_or_default();
        // A page's main frame has the page's target id.
        let main_frame = resource_type == "Document" && self.sessions.values().any(|page| page == frame);
        let verdict = if main_frame || !(url.starts_with("http:") || url.starts_with("https:")) {
            Verdict::Pass
        } else {
            let source = self
                .frames
                .get(frame)
                .map(String::as_str)
                .or_else(|| referrer(params))
                .unwrap_or_default();
            let engine: Arc<FilterEngine> = self.adblock.engine();
            self.adblock
                .check(&engine, url, source, request_kind(resource_type, main_frame))
        };
        if resource_type == "Document" && verdict == Verdict::Pass {
            if self.frames.len() >= MAX_FRAMES {
                self.frames.clear();
            }
            self.frames.insert(frame.to_owned(), url.to_owned());
        }
        let (method, answer) = match verdict {
            Verdict::Block => (
                "Fetch.failRequest",
                json!({"requestId": request_id, "errorReason": "BlockedByClient"}),
            ),
            Verdict::Pass => ("Fetch.continueRequest", json!({"requestId": request_id})),
        };
        self.client.send(method, answer, None).await.map(drop)
    }

    /// Answers a page script's report with the CSS that hides what the
    /// lists name.
    async fn hide(&mut self, session: &str, params: &Value) -> Result<(), CdpError> {
        let (Some(payload), Some(context)) = (
            params.get("payload").and_then(Value::as_str),
            params.get("executionContextId").and_then(Value::as_i64),
        ) else {
            return Ok(());
        };
        if payload.len() > MAX_REPORT_BYTES {
            return Ok(());
        }
        let Ok(report) = serde_json::from_str::<Report>(payload) else {
            return Ok(());
        };
        if !(report.url.starts_with("http:") || report.url.starts_with("https:")) {
            return Ok(());
        }
        let engine = self.adblock.engine();
        let key = (session.to_owned(), context);
        let mut css = String::new();
        let world = match self.worlds.entry(key) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let cosmetics = engine.page_cosmetics(&report.url);
                css = cosmetics.css;
                entry.insert(World {
                    exceptions: cosmetics.exceptions,
                    generic_off: cosmetics.generic_off,
                })
            }
        };
        let met_some = !report.classes.is_empty() || !report.ids.is_empty();
        if met_some && !world.generic_off {
            css.push_str(&engine.generic_css(&report.classes, &report.ids, &world.exceptions));
        }
        if css.is_empty() {
            return Ok(());
        }
        let expression = format!("globalThis.__anchorage_hide({})", Value::String(css));
        self.client
            .send(
                "Runtime.evaluate",
                json!({"expression": expression, "contextId": context}),
                Some(session),
            )
            .await
            .map(drop)
    }
}

/// The request's `Referer`, the document that asked for it as far as the
/// page's referrer policy tells.
fn referrer(params: &Value) -> Option<&str> {
    let headers = params.pointer("/request/headers")?.as_object()?;
    headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("referer"))
        .and_then(|(_, value)| value.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_types_map_to_the_engines_request_types() {
        assert_eq!(request_kind("Document", true), "main_frame");
        assert_eq!(request_kind("Document", false), "sub_frame");
        assert_eq!(request_kind("Fetch", false), "xmlhttprequest");
        assert_eq!(request_kind("Image", false), "image");
        assert_eq!(request_kind("Prefetch", false), "other");
    }

    #[test]
    fn the_referer_is_read_whatever_its_case() {
        let params = json!({"request": {"headers": {"referer": "https://a.example/"}}});
        assert_eq!(referrer(&params), Some("https://a.example/"));
        assert_eq!(referrer(&json!({"request": {"headers": {}}})), None);
    }
}

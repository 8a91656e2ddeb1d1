//! The browser side of ad blocking: one DevTools connection per browser,
//! held by the server for the browser's life.
//!
//! - **Requests** are blocked inside the browser, by the node's extension of
//!   `declarativeNetRequest` rules (see [`super::dnr`]), loaded at launch: no
//!   request waits on this connection. The connection attaches to the
//!   extension's service worker (which keeps it running), makes sure its
//!   ruleset is on before a session gets the browser (a start waits for it),
//!   turns it off when the browser is handed to a session that wants no
//!   blocking, and counts what it blocks (the worker reports each blocked
//!   request through a binding). A client's own interception (Playwright's
//!   `page.route`) sees the requests that were not blocked.
//! - **Elements**: every page gets a script in an isolated world of its own
//!   (out of the page's reach) that reports the document's URL and then the
//!   classes and ids it meets (as they appear); the connection answers with
//!   CSS that hides what the lists name for the site and what their generic
//!   rules name among those classes and ids. Frames in other processes get
//!   their requests blocked but not their elements hidden.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::Adblock;
use crate::cdp::{CdpClient, CdpError};
use crate::launch::Browser;

/// The binding the page script reports through (in its world only).
const BINDING: &str = "__anchorage_adblock";
/// The binding the extension's worker reports blocked requests through.
const WORKER_BINDING: &str = "__anchorage_blocked";
/// How long a browser may take to start the extension's worker.
const WORKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// The isolated world the page script runs in.
const WORLD: &str = "anchorage-adblock";
/// The most of one report that is read.
const MAX_REPORT_BYTES: usize = 256 * 1024;

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
    /// The CDP session of the extension's worker.
    worker: String,
    /// The CDP session of each attached page, to its target id (which is
    /// also its main frame's id).
    sessions: HashMap<String, String>,
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

impl AdblockConnection {
    /// Opens the connection and starts blocking: when it returns, the
    /// browser's extension blocks every listed request of the browser (all
    /// its contexts), and every page open or opened later gets its elements
    /// hidden. A browser launched without the extension is refused.
    pub async fn enable(browser: &Browser, adblock: Arc<Adblock>) -> Result<Self, CdpError> {
        let extension_id = browser.adblock_extension().ok_or_else(|| {
            CdpError::Unreachable("the browser was launched without the ad blocking extension".to_owned())
        })?;
        let started = std::time::Instant::now();
        let mut client = CdpClient::open(browser.devtools()).await?;
        // New pages that arrive while a call below waits are kept for
        // `run`, never passed over (they would hang).
        client.keep_all_events();
        let worker = ready_worker(&mut client, extension_id).await?;
        tracing::debug!(
            rules_on_ms = started.elapsed().as_millis() as u64,
            "ad blocking's rules are on in a browser"
        );
        client.attach_to_new_pages().await?;
        let mut connection = Self {
            client,
            adblock,
            worker,
            sessions: HashMap::new(),
            worlds: HashMap::new(),
        };
        let targets = connection.client.call("Target.getTargets", json!({}), None).await?;
        for page in crate::cdp::target_ids_of(&targets, &["page"]) {
            // A page that closed meanwhile is no error.
            if let Ok(session) = connection.client.attach(&page).await {
                connection.set_page_up(&page, &session, false).await?;
            }
        }
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
                self.client.close().await;
                return;
            }
        }
        // Ended from outside while the browser lives on (it goes to a
        // session that wants no blocking, or it is closing): nothing of the
        // lists applies after.
        let _ = set_rules(&mut self.client, &self.worker, false).await;
        self.client.close().await;
    }

    async fn handle(&mut self, event: Value) -> Result<(), CdpError> {
        let Some(method) = event.get("method").and_then(Value::as_str) else {
            return Ok(());
        };
        let params = event.get("params").unwrap_or(&Value::Null);
        match method {
            "Runtime.bindingCalled"
                if params.get("name").and_then(Value::as_str) == Some(WORKER_BINDING)
                    && event.get("sessionId").and_then(Value::as_str) == Some(self.worker.as_str()) =>
            {
                self.adblock.count_blocked();
                Ok(())
            }
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
                    self.sessions.remove(session);
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

/// Attaches to the extension's worker, gives it the binding it reports
/// through and turns the ruleset on; returns the worker's CDP session. A
/// worker that is still starting (no context to evaluate in yet) or that
/// the browser starts again is tried again, until [`WORKER_TIMEOUT`].
async fn ready_worker(client: &mut CdpClient, extension_id: &str) -> Result<String, CdpError> {
    let deadline = tokio::time::Instant::now() + WORKER_TIMEOUT;
    loop {
        let target = find_worker(client, extension_id, deadline).await?;
        let error = match client.attach(&target).await {
            Ok(worker) => {
                let readied = match client
                    .call("Runtime.addBinding", json!({"name": WORKER_BINDING}), Some(&worker))
                    .await
                {
                    Ok(_) => set_rules(client, &worker, true).await,
                    Err(error) => Err(error),
                };
                match readied {
                    Ok(()) => return Ok(worker),
                    Err(error) => {
                        client.detach(&worker).await;
                        error
                    }
                }
            }
            Err(error) => error,
        };
        if matches!(error, CdpError::Closed) || tokio::time::Instant::now() >= deadline {
            return Err(error);
        }
        tracing::debug!(%error, "the ad blocking extension's worker is not ready yet");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// The target id of the extension's worker, waiting until `deadline` for
/// the browser to start it.
async fn find_worker(
    client: &mut CdpClient,
    extension_id: &str,
    deadline: tokio::time::Instant,
) -> Result<String, CdpError> {
    let prefix = format!("chrome-extension://{extension_id}/");
    loop {
        let targets = client.call("Target.getTargets", json!({}), None).await?;
        let found = targets
            .get("targetInfos")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|target| {
                target.get("type").and_then(Value::as_str) == Some("service_worker")
                    && target
                        .get("url")
                        .and_then(Value::as_str)
                        .is_some_and(|url| url.starts_with(&prefix))
            })
            .and_then(|target| target.get("targetId").and_then(Value::as_str))
            .map(str::to_owned);
        if let Some(target) = found {
            return Ok(target);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CdpError::Timeout(format!(
                "the ad blocking extension {extension_id} did not start within {} s",
                WORKER_TIMEOUT.as_secs()
            )));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Turns the extension's ruleset on or off, and checks that it is so.
async fn set_rules(client: &mut CdpClient, worker: &str, on: bool) -> Result<(), CdpError> {
    let change = if on { "enableRulesetIds" } else { "disableRulesetIds" };
    let expression = format!(
        "chrome.declarativeNetRequest.updateEnabledRulesets({{{change}: ['{ruleset}']}})\
         .then(() => chrome.declarativeNetRequest.getEnabledRulesets())",
        ruleset = super::dnr::RULESET
    );
    let answer = client
        .call(
            "Runtime.evaluate",
            json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            Some(worker),
        )
        .await?;
    if let Some(exception) = answer.get("exceptionDetails") {
        return Err(CdpError::Failed {
            method: "declarativeNetRequest.updateEnabledRulesets".to_owned(),
            error: exception.clone(),
        });
    }
    let enabled = answer
        .pointer("/result/value")
        .and_then(Value::as_array)
        .is_some_and(|ids| ids.iter().any(|id| id.as_str() == Some(super::dnr::RULESET)));
    if enabled == on {
        Ok(())
    } else {
        Err(CdpError::Malformed(format!(
            "the ad blocking ruleset is {} after it was turned {}",
            if enabled { "on" } else { "off" },
            if on { "on" } else { "off" }
        )))
    }
}

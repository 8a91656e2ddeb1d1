//! The browser side of ad blocking: one DevTools connection per browser,
//! held by the server for the browser's life.
//!
//! - **Requests** are blocked inside the browser, by Chromium's own
//!   subresource filter (see [`super::filter`]), on from the launch: no
//!   request waits on this connection, and a client's own interception
//!   (Playwright's `page.route`) sees the requests that were not blocked.
//!   The connection counts what the filter blocked: it attaches to every
//!   page and out-of-process frame once the browser reports it (target
//!   discovery, not auto-attachment: with a browser-wide auto-attachment,
//!   even one that pauses nothing, a page's `window.open` never returned)
//!   and turns the `Log` domain on, where the filter reports each request
//!   it blocks (`Log.enable` replays what the page logged before). A page
//!   that ended before the attachment goes uncounted (never unblocked).
//! - **Elements**: the extension's content script runs in every http(s)
//!   document and frame, in the extension's isolated world (out of the
//!   page's reach), and reports the document's URL and then the classes and
//!   ids it meets (as they appear) to the extension's worker, which passes
//!   each report on through a binding the connection adds; the connection
//!   answers with CSS that hides what the lists name for the site and what
//!   their generic rules name among those classes and ids, and the content
//!   script applies it. Once the connection ends (the browser goes to a
//!   session that wants no blocking), the worker answers every report with
//!   "stop".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Adblock, FilterEngine};
use crate::cdp::{CdpClient, CdpError};
use crate::launch::Browser;

/// The binding the extension's worker passes the content script's reports
/// through (`<number> <report>`).
const COSMETICS_BINDING: &str = "__anchorage_cosmetics";
/// The `Log` source of the filter's reports, and how their text begins.
const BLOCK_SOURCE: &str = "other";
const BLOCK_TEXT: &str = "Chrome blocked resource";
/// How long a browser may take to start the extension's worker.
const WORKER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// The most of one report that is read.
const MAX_REPORT_BYTES: usize = 256 * 1024;
/// The most documents' addresses whose cosmetics are kept at once (the
/// cache starts again empty when it is full).
const MAX_CACHED_ADDRESSES: usize = 256;

/// What a content script reported.
#[derive(Debug, serde::Deserialize)]
struct Report {
    url: String,
    /// Whether this is the document's first report (which gets the site's
    /// own CSS; later ones get the generic rules' CSS only).
    #[serde(default)]
    first: bool,
    #[serde(default)]
    classes: Vec<String>,
    #[serde(default)]
    ids: Vec<String>,
}

/// What generic rules leave alone on one address.
#[derive(Debug)]
struct Site {
    exceptions: HashSet<String>,
    generic_off: bool,
}

/// A connection that blocks a browser's ads (see the module).
pub struct AdblockConnection {
    client: CdpClient,
    adblock: Arc<Adblock>,
    /// The CDP session of the extension's worker.
    worker: String,
    /// The engine `sites` was read from (a reload empties it).
    engine: Option<Arc<FilterEngine>>,
    /// What generic rules leave alone, by document address.
    sites: HashMap<String, Site>,
}

impl std::fmt::Debug for AdblockConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdblockConnection")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl AdblockConnection {
    /// Opens the connection and starts hiding elements: when it returns,
    /// every document loaded after gets its elements hidden, and what the
    /// browser's filter blocks is counted. A browser launched without the
    /// extension is refused.
    pub async fn enable(browser: &Browser, adblock: Arc<Adblock>) -> Result<Self, CdpError> {
        let extension_id = browser.adblock_extension().ok_or_else(|| {
            CdpError::Unreachable("the browser was launched without the ad blocking extension".to_owned())
        })?;
        let started = std::time::Instant::now();
        let mut client = CdpClient::open(browser.devtools()).await?;
        // Reports that arrive while a call below waits are kept for `run`.
        client.keep_all_events();
        let worker = ready_worker(&mut client, extension_id).await?;
        // Every page and frame, in every context, attached once it is
        // there (nothing waits on this connection).
        client
            .call(
                "Target.setDiscoverTargets",
                json!({"discover": true, "filter": [{"type": "page"}, {"type": "iframe"}]}),
                None,
            )
            .await?;
        tracing::debug!(
            ready_ms = started.elapsed().as_millis() as u64,
            "ad blocking's element hiding is on in a browser"
        );
        Ok(Self {
            client,
            adblock,
            worker,
            engine: None,
            sites: HashMap::new(),
        })
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
        // session that wants no element hiding, or it is closing).
        let _ = set_hiding(&mut self.client, &self.worker, false).await;
        self.client.close().await;
    }

    async fn handle(&mut self, event: Value) -> Result<(), CdpError> {
        let params = event.get("params").unwrap_or(&Value::Null);
        match event.get("method").and_then(Value::as_str) {
            Some("Runtime.bindingCalled")
                if event.get("sessionId").and_then(Value::as_str) == Some(self.worker.as_str())
                    && params.get("name").and_then(Value::as_str) == Some(COSMETICS_BINDING) =>
            {
                let payload = params.get("payload").and_then(Value::as_str).unwrap_or_default();
                self.answer(payload).await
            }
            Some("Target.targetCreated") => {
                let info = params.get("targetInfo").unwrap_or(&Value::Null);
                let kind = info.get("type").and_then(Value::as_str);
                match info.get("targetId").and_then(Value::as_str) {
                    Some(target) if matches!(kind, Some("page" | "iframe")) => self
                        .client
                        .send(
                            "Target.attachToTarget",
                            json!({"targetId": target, "flatten": true}),
                            None,
                        )
                        .await
                        .map(drop),
                    _ => Ok(()),
                }
            }
            Some("Target.attachedToTarget") => {
                // Pages and frames this connection attached to (not the worker).
                let kind = params.pointer("/targetInfo/type").and_then(Value::as_str);
                let Some(session) = params
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .filter(|_| matches!(kind, Some("page" | "iframe")))
                else {
                    return Ok(());
                };
                // Answers come back as messages `run` passes over; a target
                // gone meanwhile is no error of this connection's.
                self.client.send("Log.enable", json!({}), Some(session)).await.map(drop)
            }
            Some("Log.entryAdded") if is_filter_block(params) => {
                self.adblock.count_blocked();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Answers a content script's report (`<number> <report>`, passed on by
    /// the worker) with the CSS that hides what the lists name; every report
    /// gets an answer, if only an empty one.
    async fn answer(&mut self, payload: &str) -> Result<(), CdpError> {
        let Some((number, report)) = payload.split_once(' ') else {
            return Ok(());
        };
        let Ok(number) = number.parse::<u64>() else {
            return Ok(());
        };
        let css = self.css_for(report);
        let expression = format!("globalThis.__anchorage_answer({number}, {})", Value::String(css));
        self.client
            .send(
                "Runtime.evaluate",
                json!({"expression": expression}),
                Some(&self.worker),
            )
            .await
            .map(drop)
    }

    /// The CSS for one report (empty for a report that is not well formed
    /// or not of an http(s) document).
    fn css_for(&mut self, report: &str) -> String {
        if report.len() > MAX_REPORT_BYTES {
            return String::new();
        }
        let Ok(report) = serde_json::from_str::<Report>(report) else {
            return String::new();
        };
        if !(report.url.starts_with("http:") || report.url.starts_with("https:")) {
            return String::new();
        }
        let engine = self.adblock.engine();
        if !self.engine.as_ref().is_some_and(|read| Arc::ptr_eq(read, &engine)) {
            self.sites.clear();
            self.engine = Some(Arc::clone(&engine));
        }
        let mut css = String::new();
        if report.first || !self.sites.contains_key(&report.url) {
            let cosmetics = engine.page_cosmetics(&report.url);
            if report.first {
                css = cosmetics.css;
            }
            if self.sites.len() >= MAX_CACHED_ADDRESSES {
                self.sites.clear();
            }
            self.sites.insert(
                report.url.clone(),
                Site {
                    exceptions: cosmetics.exceptions,
                    generic_off: cosmetics.generic_off,
                },
            );
        }
        let met_some = !report.classes.is_empty() || !report.ids.is_empty();
        if let Some(site) = self.sites.get(&report.url).filter(|site| met_some && !site.generic_off) {
            css.push_str(&engine.generic_css(&report.classes, &report.ids, &site.exceptions));
        }
        css
    }
}

/// Whether a `Log.entryAdded` is the subresource filter's report of a
/// request it blocked (Chromium words it "Chrome blocked resource …").
fn is_filter_block(params: &Value) -> bool {
    let entry = params.get("entry").unwrap_or(&Value::Null);
    entry.get("source").and_then(Value::as_str) == Some(BLOCK_SOURCE)
        && entry
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|text| text.starts_with(BLOCK_TEXT))
}

/// Attaches to the extension's worker, gives it the binding it reports
/// through and turns element hiding on; returns the worker's CDP session. A
/// worker that is still starting (no context to evaluate in yet) or that
/// the browser starts again is tried again, until [`WORKER_TIMEOUT`].
async fn ready_worker(client: &mut CdpClient, extension_id: &str) -> Result<String, CdpError> {
    let deadline = tokio::time::Instant::now() + WORKER_TIMEOUT;
    loop {
        let target = find_worker(client, extension_id, deadline).await?;
        let error = match client.attach(&target).await {
            Ok(worker) => {
                let mut readied = client
                    .call("Runtime.addBinding", json!({"name": COSMETICS_BINDING}), Some(&worker))
                    .await
                    .map(drop);
                if readied.is_ok() {
                    readied = set_hiding(client, &worker, true).await;
                }
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

/// Turns the extension's element hiding on or off.
async fn set_hiding(client: &mut CdpClient, worker: &str, on: bool) -> Result<(), CdpError> {
    let answer = client
        .call(
            "Runtime.evaluate",
            json!({"expression": format!("globalThis.__anchorage_set({on})"), "returnByValue": true}),
            Some(worker),
        )
        .await?;
    match answer.get("exceptionDetails") {
        Some(exception) => Err(CdpError::Failed {
            method: "__anchorage_set".to_owned(),
            error: exception.clone(),
        }),
        None => Ok(()),
    }
}

//! The browser side of ad blocking: one DevTools connection per browser,
//! held by the server for the browser's life. It attaches to the node's
//! extension's service worker only (which keeps the worker running); pages
//! are never attached.
//!
//! - **Requests** are blocked inside the browser, by the extension's
//!   `declarativeNetRequest` rules (see [`super::dnr`]), loaded at launch: no
//!   request waits on this connection. The connection makes sure the ruleset
//!   is on before a session gets the browser (a start waits for it), turns it
//!   off when the browser is handed to a session that wants no blocking, and
//!   counts what it blocks (the worker reports each blocked request through a
//!   binding). A client's own interception (Playwright's `page.route`) sees
//!   the requests that were not blocked.
//! - **Elements**: the extension's content script (`page.js`) runs in every
//!   http(s) document and frame, in the extension's isolated world (out of the
//!   page's reach), and reports the document's URL and then the classes and
//!   ids it meets (as they appear) to the worker, which passes each report on
//!   through a second binding; the connection answers with CSS that hides what
//!   the lists name for the site and what their generic rules name among those
//!   classes and ids, and the content script applies it. With the ruleset off,
//!   the worker answers every report with "stop".

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Adblock, FilterEngine};
use crate::cdp::{CdpClient, CdpError};
use crate::launch::Browser;

/// The binding the extension's worker reports blocked requests through.
const WORKER_BINDING: &str = "__anchorage_blocked";
/// The binding the extension's worker passes the content script's reports
/// through (`<number> <report>`).
const COSMETICS_BINDING: &str = "__anchorage_cosmetics";
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
    /// Opens the connection and starts blocking: when it returns, the
    /// browser's extension blocks every listed request of the browser (all
    /// its contexts), and every document loaded after gets its elements
    /// hidden. A browser launched without the extension is refused.
    pub async fn enable(browser: &Browser, adblock: Arc<Adblock>) -> Result<Self, CdpError> {
        let extension_id = browser.adblock_extension().ok_or_else(|| {
            CdpError::Unreachable("the browser was launched without the ad blocking extension".to_owned())
        })?;
        let started = std::time::Instant::now();
        let mut client = CdpClient::open(browser.devtools()).await?;
        // Reports that arrive while a call below waits are kept for `run`.
        client.keep_all_events();
        let worker = ready_worker(&mut client, extension_id).await?;
        tracing::debug!(
            rules_on_ms = started.elapsed().as_millis() as u64,
            "ad blocking's rules are on in a browser"
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
        // session that wants no blocking, or it is closing): nothing of the
        // lists applies after.
        let _ = set_rules(&mut self.client, &self.worker, false).await;
        self.client.close().await;
    }

    async fn handle(&mut self, event: Value) -> Result<(), CdpError> {
        if event.get("method").and_then(Value::as_str) != Some("Runtime.bindingCalled")
            || event.get("sessionId").and_then(Value::as_str) != Some(self.worker.as_str())
        {
            return Ok(());
        }
        let params = event.get("params").unwrap_or(&Value::Null);
        match params.get("name").and_then(Value::as_str) {
            Some(WORKER_BINDING) => {
                self.adblock.count_blocked();
                Ok(())
            }
            Some(COSMETICS_BINDING) => {
                let payload = params.get("payload").and_then(Value::as_str).unwrap_or_default();
                self.answer(payload).await
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
                let mut readied = Ok(());
                for binding in [WORKER_BINDING, COSMETICS_BINDING] {
                    if readied.is_ok() {
                        readied = client
                            .call("Runtime.addBinding", json!({"name": binding}), Some(&worker))
                            .await
                            .map(drop);
                    }
                }
                if readied.is_ok() {
                    readied = set_rules(client, &worker, true).await;
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

/// Turns the extension's ruleset and element hiding on or off, and checks
/// that the ruleset is so.
async fn set_rules(client: &mut CdpClient, worker: &str, on: bool) -> Result<(), CdpError> {
    let change = if on { "enableRulesetIds" } else { "disableRulesetIds" };
    let expression = format!(
        "globalThis.__anchorage_set({on}), \
         chrome.declarativeNetRequest.updateEnabledRulesets({{{change}: ['{ruleset}']}})\
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

//! The browser side of ad blocking: one DevTools connection per browser,
//! held by the server for the browser's life. It attaches to every page and
//! out-of-process frame once the browser reports it (target discovery, not
//! auto-attachment: with a browser-wide auto-attachment, even one that
//! pauses nothing, a page's `window.open` never returned); nothing in a page
//! waits on it.
//!
//! - **Requests** are blocked inside the browser, by Chromium's own
//!   subresource filter (see [`super::filter`]), on from the launch; a
//!   client's own interception (Playwright's `page.route`) sees the requests
//!   that were not blocked. The connection counts what the filter blocked:
//!   it turns the `Log` domain on in each page and frame, where the filter
//!   reports each request it blocks (`Log.enable` replays what the page
//!   logged before). A page that ended before the attachment goes
//!   uncounted (never unblocked).
//! - **Elements**: the generic rules that are not a bare class or id come
//!   from the browser itself ([`super::sheet`]). The rest is sent from here,
//!   in an isolated world of the connection's own in each document (out of
//!   the page's reach): as a document starts (`Page.frameNavigated`), the
//!   CSS of the rules its site has, if it has any; once it has loaded
//!   (`Page.frameStoppedLoading`, or [`WATCH_AFTER`] after it started if it
//!   is loading still), a watch of its classes and ids, which it
//!   reports (each once, as they appear) through a binding of that world,
//!   answered with CSS for the generic class and id rules that name them.
//!   A document of a site no rule names runs no script of ours before its
//!   `load` event (a content script, even an empty one, cost every page
//!   load 4 to 7 %: BENCHMARKS.md).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{Adblock, FilterEngine};
use crate::cdp::{CdpClient, CdpError};
use crate::launch::Browser;

/// The isolated world element hiding runs in.
const WORLD: &str = "anchorage ad blocking";
/// The binding a document's watch reports through (in [`WORLD`] only).
const COSMETICS_BINDING: &str = "__anchorage_cosmetics";
/// What defines `__anchorage` in a document's world (once).
const HIDE_SCRIPT: &str = include_str!("hide.js");
/// The `Log` source of the filter's reports, and how their text begins.
const BLOCK_SOURCE: &str = "other";
const BLOCK_TEXT: &str = "Chrome blocked resource";
/// The most of one report that is read.
const MAX_REPORT_BYTES: usize = 256 * 1024;
/// The most documents' addresses whose cosmetics are kept at once (the
/// cache starts again empty when it is full).
const MAX_CACHED_ADDRESSES: usize = 256;
/// How long after its start a document that has not finished loading (a
/// resource that never ends) has its watch begun anyway.
const WATCH_AFTER: std::time::Duration = std::time::Duration::from_secs(2);
/// The most frames followed at once (past it, the oldest are forgotten:
/// they keep what they were given, and get no more).
const MAX_FRAMES: usize = 4096;

/// What a document's watch reported.
#[derive(Debug, serde::Deserialize)]
struct Report {
    url: String,
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

/// A frame's document, as far as element hiding goes.
#[derive(Debug)]
struct Frame {
    /// The world's execution context in the current document, once made.
    context: Option<i64>,
    /// Whether its watch was begun.
    watched: bool,
    /// Whether generic rules are off for its site.
    generic_off: bool,
    /// When it was first followed (to forget the oldest first).
    order: u64,
    /// When its document started.
    since: tokio::time::Instant,
}

/// A command whose answer the connection acts on.
#[derive(Debug)]
enum Pending {
    /// `Page.createIsolatedWorld` in a frame; then `script` runs there.
    World {
        session: String,
        frame: String,
        /// Which document of the frame asked ([`Frame::order`]).
        order: u64,
        script: String,
    },
    /// `Page.getFrameTree` of a page or frame just attached.
    Frames { session: String },
}

/// A connection that blocks a browser's ads (see the module).
pub struct AdblockConnection {
    client: CdpClient,
    adblock: Arc<Adblock>,
    /// The engine `sites` was read from (a reload empties it).
    engine: Option<Arc<FilterEngine>>,
    /// What generic rules leave alone, by document address.
    sites: HashMap<String, Site>,
    /// Documents followed, by CDP session and frame id.
    frames: HashMap<(String, String), Frame>,
    /// Commands sent whose answers are awaited, by id.
    pending: HashMap<u64, Pending>,
    followed: u64,
}

impl std::fmt::Debug for AdblockConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AdblockConnection")
            .field("frames", &self.frames.len())
            .finish_non_exhaustive()
    }
}

impl AdblockConnection {
    /// Opens the connection: when it returns, every page and frame the
    /// browser has or opens is being attached to. A browser launched
    /// without the ad blocking extension (and so without the generic
    /// stylesheet) is refused.
    pub async fn enable(browser: &Browser, adblock: Arc<Adblock>) -> Result<Self, CdpError> {
        if browser.adblock_extension().is_none() {
            return Err(CdpError::Unreachable(
                "the browser was launched without the ad blocking extension".to_owned(),
            ));
        }
        let mut client = CdpClient::open(browser.devtools()).await?;
        // Events that arrive while the call below waits are kept for `run`.
        client.keep_all_events();
        client
            .call(
                "Target.setDiscoverTargets",
                json!({"discover": true, "filter": [{"type": "page"}, {"type": "iframe"}]}),
                None,
            )
            .await?;
        Ok(Self {
            client,
            adblock,
            engine: None,
            sites: HashMap::new(),
            frames: HashMap::new(),
            pending: HashMap::new(),
            followed: 0,
        })
    }

    /// Blocks until `stop` fires or the browser goes. What documents were
    /// given stays; nothing more is sent after.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut pending = self.client.take_kept();
        let mut overdue = tokio::time::interval(WATCH_AFTER / 2);
        overdue.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let handled = if pending.is_empty() {
                tokio::select! {
                    message = self.client.next_until(&stop) => match message {
                        Some(message) => self.handle(message).await,
                        None => break,
                    },
                    _ = overdue.tick() => self.watch_overdue().await,
                }
            } else {
                let message = pending.remove(0);
                self.handle(message).await
            };
            if handled.is_err() {
                break;
            }
        }
        self.client.close().await;
    }

    async fn handle(&mut self, message: Value) -> Result<(), CdpError> {
        if let Some(id) = message.get("id").and_then(Value::as_u64) {
            return match self.pending.remove(&id) {
                Some(pending) => self.answered(pending, &message).await,
                None => Ok(()),
            };
        }
        let params = message.get("params").unwrap_or(&Value::Null);
        let session = message
            .get("sessionId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        match message.get("method").and_then(Value::as_str) {
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
                let kind = params.pointer("/targetInfo/type").and_then(Value::as_str);
                let Some(attached) = params
                    .get("sessionId")
                    .and_then(Value::as_str)
                    .filter(|_| matches!(kind, Some("page" | "iframe")))
                else {
                    return Ok(());
                };
                // Answers come back as messages `run` passes over (a target
                // gone meanwhile is no error of this connection's); the
                // frame tree's tells the documents already there.
                for method in ["Log.enable", "Page.enable"] {
                    self.client.send(method, json!({}), Some(attached)).await?;
                }
                let id = self.client.send("Page.getFrameTree", json!({}), Some(attached)).await?;
                self.pending.insert(
                    id,
                    Pending::Frames {
                        session: attached.to_owned(),
                    },
                );
                Ok(())
            }
            Some("Target.detachedFromTarget") => {
                if let Some(gone) = params.get("sessionId").and_then(Value::as_str) {
                    self.frames.retain(|(session, _), _| session != gone);
                }
                Ok(())
            }
            Some("Page.frameNavigated") => {
                let frame = params.get("frame").unwrap_or(&Value::Null);
                match (
                    frame.get("id").and_then(Value::as_str),
                    frame.get("url").and_then(Value::as_str),
                ) {
                    (Some(id), Some(url)) => self.navigated(&session, id, url).await,
                    _ => Ok(()),
                }
            }
            Some("Page.frameStoppedLoading") => match params.get("frameId").and_then(Value::as_str) {
                Some(frame) => self.loaded(&session, frame).await,
                None => Ok(()),
            },
            Some("Page.frameDetached") => {
                if let Some(frame) = params.get("frameId").and_then(Value::as_str) {
                    self.frames.remove(&(session, frame.to_owned()));
                }
                Ok(())
            }
            Some("Runtime.bindingCalled") if params.get("name").and_then(Value::as_str) == Some(COSMETICS_BINDING) => {
                let payload = params.get("payload").and_then(Value::as_str).unwrap_or_default();
                match params.get("executionContextId").and_then(Value::as_i64) {
                    Some(context) => self.answer(&session, context, payload).await,
                    None => Ok(()),
                }
            }
            Some("Log.entryAdded") if is_filter_block(params) => {
                self.adblock.count_blocked();
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Acts on the answer to a command of [`Pending`].
    async fn answered(&mut self, pending: Pending, message: &Value) -> Result<(), CdpError> {
        let Some(result) = message.get("result") else {
            // The frame or target went meanwhile.
            return Ok(());
        };
        match pending {
            Pending::World {
                session,
                frame,
                order,
                script,
            } => {
                let Some(context) = result.get("executionContextId").and_then(Value::as_i64) else {
                    return Ok(());
                };
                // A context made for a document the frame has left since is
                // not kept for the next one.
                if let Some(followed) = self
                    .frames
                    .get_mut(&(session.clone(), frame))
                    .filter(|followed| followed.order == order)
                {
                    followed.context = Some(context);
                }
                self.run_in(&session, context, &script).await
            }
            Pending::Frames { session } => {
                let mut frames = Vec::new();
                collect_frames(result.get("frameTree").unwrap_or(&Value::Null), &mut frames);
                for (frame, url) in frames {
                    // Attached late: a document loaded already gets no
                    // `frameStoppedLoading`, and its watch begins once it
                    // is overdue.
                    self.navigated(&session, &frame, &url).await?;
                }
                Ok(())
            }
        }
    }

    /// A frame's new document at `url`: gets its site's CSS at once.
    async fn navigated(&mut self, session: &str, frame: &str, url: &str) -> Result<(), CdpError> {
        let key = (session.to_owned(), frame.to_owned());
        if !(url.starts_with("http:") || url.starts_with("https:")) {
            self.frames.remove(&key);
            return Ok(());
        }
        let (css, generic_off) = self.site_css(url);
        if self.frames.len() >= MAX_FRAMES {
            if let Some(oldest) = self
                .frames
                .iter()
                .min_by_key(|(_, followed)| followed.order)
                .map(|(key, _)| key.clone())
            {
                self.frames.remove(&oldest);
            }
        }
        self.followed += 1;
        self.frames.insert(
            key,
            Frame {
                context: None,
                watched: false,
                generic_off,
                order: self.followed,
                since: tokio::time::Instant::now(),
            },
        );
        if css.is_empty() {
            return Ok(());
        }
        let script = format!("__anchorage.hide({});", Value::String(css));
        self.run_in_frame(session, frame, script).await
    }

    /// A frame's document has loaded: its watch begins.
    async fn loaded(&mut self, session: &str, frame: &str) -> Result<(), CdpError> {
        match self.frames.get_mut(&(session.to_owned(), frame.to_owned())) {
            Some(followed) if !followed.watched && !followed.generic_off => followed.watched = true,
            _ => return Ok(()),
        }
        self.run_in_frame(session, frame, "__anchorage.watch();".to_owned())
            .await
    }

    /// Begins the watch of documents still loading [`WATCH_AFTER`] after
    /// they started.
    async fn watch_overdue(&mut self) -> Result<(), CdpError> {
        let now = tokio::time::Instant::now();
        let overdue: Vec<(String, String)> = self
            .frames
            .iter()
            .filter(|(_, followed)| {
                !followed.watched && !followed.generic_off && now.duration_since(followed.since) >= WATCH_AFTER
            })
            .map(|(key, _)| key.clone())
            .collect();
        for (session, frame) in overdue {
            self.loaded(&session, &frame).await?;
        }
        Ok(())
    }

    /// Runs `script` in the frame's world (made first if its document has
    /// none yet), after what defines `__anchorage`.
    async fn run_in_frame(&mut self, session: &str, frame: &str, script: String) -> Result<(), CdpError> {
        let Some((context, order)) = self
            .frames
            .get(&(session.to_owned(), frame.to_owned()))
            .map(|followed| (followed.context, followed.order))
        else {
            return Ok(());
        };
        if let Some(context) = context {
            // The world there has the binding and `__anchorage` already.
            return self.evaluate(session, context, script).await;
        }
        let id = self
            .client
            .send(
                "Page.createIsolatedWorld",
                json!({"frameId": frame, "worldName": WORLD, "grantUniveralAccess": false}),
                Some(session),
            )
            .await?;
        self.pending.insert(
            id,
            Pending::World {
                session: session.to_owned(),
                frame: frame.to_owned(),
                order,
                script,
            },
        );
        Ok(())
    }

    /// Runs `script` in the world's context `context`, with the binding
    /// there (adding it to one context needs no `Runtime.enable`, which
    /// would report every console call of the page to this connection).
    async fn run_in(&mut self, session: &str, context: i64, script: &str) -> Result<(), CdpError> {
        self.client
            .send(
                "Runtime.addBinding",
                json!({"name": COSMETICS_BINDING, "executionContextId": context}),
                Some(session),
            )
            .await?;
        self.evaluate(session, context, format!("{HIDE_SCRIPT}\n{script}"))
            .await
    }

    /// Evaluates `expression` in the context `context` (its answer is
    /// passed over).
    async fn evaluate(&mut self, session: &str, context: i64, expression: String) -> Result<(), CdpError> {
        self.client
            .send(
                "Runtime.evaluate",
                json!({"expression": expression, "contextId": context}),
                Some(session),
            )
            .await
            .map(drop)
    }

    /// The CSS a document at `url` gets as it starts (see
    /// [`FilterEngine::page_cosmetics`]), and whether generic rules are off
    /// there; what they leave alone is kept for its reports.
    fn site_css(&mut self, url: &str) -> (String, bool) {
        let engine = self.current_engine();
        let cosmetics = engine.page_cosmetics(url);
        if self.sites.len() >= MAX_CACHED_ADDRESSES {
            self.sites.clear();
        }
        let generic_off = cosmetics.generic_off;
        self.sites.insert(
            url.to_owned(),
            Site {
                exceptions: cosmetics.exceptions,
                generic_off,
            },
        );
        (cosmetics.css, generic_off)
    }

    /// The engine in use; a reload forgets what was read from the one
    /// before.
    fn current_engine(&mut self) -> Arc<FilterEngine> {
        let engine = self.adblock.engine();
        if !self.engine.as_ref().is_some_and(|read| Arc::ptr_eq(read, &engine)) {
            self.sites.clear();
            self.engine = Some(Arc::clone(&engine));
        }
        engine
    }

    /// Answers a document's report with CSS that hides what generic rules
    /// name among its classes and ids (nothing is sent when none is named).
    async fn answer(&mut self, session: &str, context: i64, payload: &str) -> Result<(), CdpError> {
        let css = self.css_for(payload);
        if css.is_empty() {
            return Ok(());
        }
        self.evaluate(session, context, format!("__anchorage.hide({})", Value::String(css)))
            .await
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
        let engine = self.current_engine();
        if !self.sites.contains_key(&report.url) {
            self.site_css(&report.url);
        }
        match self.sites.get(&report.url) {
            Some(site) if !site.generic_off => engine.generic_css(&report.classes, &report.ids, &site.exceptions),
            _ => String::new(),
        }
    }
}

/// Every frame of a `Page.getFrameTree` answer, with its address.
fn collect_frames(tree: &Value, into: &mut Vec<(String, String)>) {
    let frame = tree.get("frame").unwrap_or(&Value::Null);
    if let (Some(id), Some(url)) = (
        frame.get("id").and_then(Value::as_str),
        frame.get("url").and_then(Value::as_str),
    ) {
        into.push((id.to_owned(), url.to_owned()));
    }
    for child in tree.get("childFrames").and_then(Value::as_array).into_iter().flatten() {
        collect_frames(child, into);
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

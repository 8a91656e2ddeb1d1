//! What a client of a *context session* may see and do in a browser that
//! hosts other sessions too.
//!
//! A context session is one browser context (plus the contexts its clients
//! make) inside a shared Chromium. Its clients reach the browser through the
//! same [`crate::Devtools`] hub as everyone else, with a [`Scope`] on their
//! connection; the hub asks the scope about every command on its way in and
//! every answer and event on its way out:
//!
//! - **Commands** on the connection's browser session pass only if their
//!   method is on an allow-list ([`BROWSER_SESSION_METHODS`]). On any
//!   session, a method that acts on the whole process is refused
//!   ([`REFUSED_METHODS`], the `Tracing` domain), and every `targetId`,
//!   `browserContextId` and `windowId` a command names must be the
//!   session's own. Browser-level methods that default to the browser's
//!   default context (`Target.createTarget`, downloads, permissions,
//!   cookies) get the session's context instead. `Browser.close` ends the
//!   session, not the browser ([`Scope::close_requested`]).
//! - **Answers**: `Target.getTargets` lists the session's targets only;
//!   `Target.getBrowserContexts` lists the contexts its clients made and
//!   names the session's own context as the default one, so a client maps
//!   its pages to its default context as on a browser of its own; contexts
//!   made and disposed, and windows found, are remembered.
//! - **Events**: target discovery and auto-attach events of other contexts
//!   are dropped; an auto-attach to a foreign target is detached at once.
//!
//! The decisions are pure functions of the message and the scope's state;
//! which target lives in which context comes from the hub, which follows
//! target discovery on the pipe's own session.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};

use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio_util::sync::CancellationToken;

/// Methods a scoped client may send on its browser session (every other one
/// is refused there; page sessions are the page's own business).
pub const BROWSER_SESSION_METHODS: &[&str] = &[
    "Browser.cancelDownload",
    "Browser.close",
    "Browser.getVersion",
    "Browser.getWindowBounds",
    "Browser.getWindowForTarget",
    "Browser.grantPermissions",
    "Browser.resetPermissions",
    "Browser.setContentsSize",
    "Browser.setDownloadBehavior",
    "Browser.setPermission",
    "Browser.setWindowBounds",
    "Schema.getDomains",
    "Storage.clearCookies",
    "Storage.getCookies",
    "Storage.setCookies",
    "SystemInfo.getFeatureState",
    "SystemInfo.getInfo",
    "Target.activateTarget",
    "Target.attachToBrowserTarget",
    "Target.attachToTarget",
    "Target.autoAttachRelated",
    "Target.closeTarget",
    "Target.createBrowserContext",
    "Target.createTarget",
    "Target.detachFromTarget",
    "Target.disposeBrowserContext",
    "Target.getBrowserContexts",
    "Target.getTargetInfo",
    "Target.getTargets",
    "Target.setAutoAttach",
    "Target.setDiscoverTargets",
];

/// Methods refused on every session of a scoped client: they act on the
/// whole browser process (or every context in it), or reach around the
/// proxy.
pub const REFUSED_METHODS: &[&str] = &[
    "Browser.addPrivacySandboxCoordinatorKeyConfig",
    "Browser.addPrivacySandboxEnrollmentOverride",
    "Browser.crash",
    "Browser.crashGpuProcess",
    "Browser.executeBrowserCommand",
    "Browser.getBrowserCommandLine",
    "Browser.getHistogram",
    "Browser.getHistograms",
    "Browser.setDockTile",
    "Memory.getAllTimeSamplingProfile",
    "Memory.getBrowserSamplingProfile",
    "SystemInfo.getProcessInfo",
    "Target.exposeDevToolsProtocol",
    "Target.getDevToolsTarget",
    "Target.openDevTools",
    "Target.sendMessageToTarget",
    "Target.setRemoteLocations",
];

/// Domains refused on every session of a scoped client (a trace records
/// every process of the browser, other sessions' pages included).
const REFUSED_DOMAINS: &[&str] = &["Tracing.", "Extensions."];

/// Browser-level methods that act on the default context when they name
/// none: a scoped client's get the session's context.
const CONTEXT_DEFAULTING: &[&str] = &[
    "Browser.cancelDownload",
    "Browser.grantPermissions",
    "Browser.resetPermissions",
    "Browser.setDownloadBehavior",
    "Browser.setPermission",
    "Storage.clearCookies",
    "Storage.getCookies",
    "Storage.setCookies",
    "Target.createTarget",
];

/// What the hub's target lookup answers for the browser target itself
/// (which is in no context): a scoped client may see it and attach to it,
/// and the session it gets is one more browser session under the scope.
pub(crate) const BROWSER_TARGET: &str = "<browser>";

/// One context session's boundary, shared by all its connections.
#[derive(Debug)]
pub struct Scope {
    /// The session's own context (made by the server, disposed at its end).
    primary: String,
    state: Mutex<ScopeState>,
    close_requested: CancellationToken,
    /// The page the session was switched to.
    front: crate::pages::FrontPage,
}

#[derive(Debug, Default)]
struct ScopeState {
    /// Contexts the session's clients made.
    made: Vec<String>,
    /// Window ids the session's clients were told of.
    windows: HashSet<i64>,
}

/// What becomes of a command.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CommandVerdict {
    /// Sent as it is.
    Pass,
    /// Sent with these params (a JSON object's text).
    Params(String),
    /// Refused with this message (a CDP error, code -32000).
    Refuse(String),
    /// Answered here with this result, never sent; then the connection
    /// closes and the session ends.
    AnswerThenClose(&'static str),
}

/// What to do with the answer to a command that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AnswerHook {
    /// Nothing.
    None,
    /// `Target.getTargets`: only the scope's targets.
    Targets,
    /// `Target.getBrowserContexts`: only the contexts made in the scope.
    Contexts,
    /// `Target.createBrowserContext`: the new context joins the scope.
    AddContext,
    /// `Target.disposeBrowserContext`: the context leaves it.
    RemoveContext(String),
    /// `Browser.getWindowForTarget`: the window is the scope's.
    Window,
}

/// What becomes of an event for a scoped connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum EventVerdict {
    Deliver,
    /// An attach to the browser target (`Target.attachToBrowserTarget`):
    /// shown, and its session is one more browser session of the
    /// connection, under the same rules.
    DeliverBrowser,
    Drop,
    /// An auto-attach to a foreign target: dropped, and its session (this
    /// id) detached at once.
    Detach(String),
}

impl Scope {
    /// The scope of the session whose own context is `primary`.
    pub fn new(primary: impl Into<String>) -> Self {
        Self {
            primary: primary.into(),
            state: Mutex::new(ScopeState::default()),
            close_requested: CancellationToken::new(),
            front: crate::pages::FrontPage::default(),
        }
    }

    /// The page the session was switched to.
    pub(crate) fn front(&self) -> &crate::pages::FrontPage {
        &self.front
    }

    /// The session's own context.
    pub fn primary(&self) -> &str {
        &self.primary
    }

    /// Every context of the session: its own first, then those its clients
    /// made and did not dispose.
    pub fn contexts(&self) -> Vec<String> {
        let mut all = vec![self.primary.clone()];
        all.extend(self.state().made.iter().cloned());
        all
    }

    /// Fires when a client sent `Browser.close` (which ends the session).
    pub fn close_requested(&self) -> CancellationToken {
        self.close_requested.clone()
    }

    /// A connection passed on the answer to a client's `Browser.close`.
    pub(crate) fn closed_by_client(&self) {
        self.close_requested.cancel();
    }

    fn state(&self) -> MutexGuard<'_, ScopeState> {
        // Every change is one insert or remove: a poisoned lock is usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `context` is one of the session's.
    pub(crate) fn owns_context(&self, context: &str) -> bool {
        context == self.primary || self.state().made.iter().any(|made| made == context)
    }

    /// Decides on one command. `on_browser_session`: it goes to the
    /// connection's browser session (it names no session). `context_of`
    /// tells which context a target is in, if the hub knows the target.
    pub(crate) fn check_command(
        &self,
        method: &str,
        params: Option<&RawValue>,
        on_browser_session: bool,
        context_of: impl Fn(&str) -> Option<String>,
    ) -> (CommandVerdict, AnswerHook) {
        let refuse = |why: String| (CommandVerdict::Refuse(why), AnswerHook::None);
        if REFUSED_METHODS.contains(&method) || REFUSED_DOMAINS.iter().any(|domain| method.starts_with(domain)) {
            return refuse(format!(
                "{method} is not available on a context session: it acts on the whole shared browser"
            ));
        }
        if on_browser_session && !BROWSER_SESSION_METHODS.contains(&method) {
            return refuse(format!(
                "{method} is not available on a context session's browser target"
            ));
        }
        if method == "Browser.close" {
            // The session ends once the connection has passed the answer on
            // (see `Scope::closed_by_client`).
            return (CommandVerdict::AnswerThenClose("{}"), AnswerHook::None);
        }
        // Most commands name nothing the scope cares about: a substring
        // look decides without parsing.
        let text = params.map_or("{}", RawValue::get);
        if matches!(method, "Page.navigate" | "Target.createTarget") && text.contains("\"url\"") {
            let url = serde_json::from_str::<Value>(text)
                .ok()
                .and_then(|params| params.get("url")?.as_str().map(str::to_owned))
                .unwrap_or_default();
            if browser_internal(&url) {
                return refuse(format!(
                    "{url:?} is one of the shared browser's own pages, not open to a context session"
                ));
            }
        }
        let names_something = ["\"targetId\"", "\"browserContextId\"", "\"windowId\"", "\"flatten\""]
            .iter()
            .any(|key| text.contains(key));
        let defaults = on_browser_session && CONTEXT_DEFAULTING.contains(&method);
        let hook = match method {
            "Target.getTargets" => AnswerHook::Targets,
            "Target.getBrowserContexts" => AnswerHook::Contexts,
            "Target.createBrowserContext" => AnswerHook::AddContext,
            "Browser.getWindowForTarget" => AnswerHook::Window,
            _ => AnswerHook::None,
        };
        let flat_only = matches!(method, "Target.attachToTarget" | "Target.setAutoAttach");
        if !names_something && !defaults && !flat_only && method != "Target.disposeBrowserContext" {
            return (CommandVerdict::Pass, hook);
        }
        let mut object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => object,
            _ => return (CommandVerdict::Pass, hook),
        };
        if flat_only && object.get("flatten").and_then(Value::as_bool) != Some(true) {
            return refuse(format!(
                "{method} needs \"flatten\": true on a context session (sessions are served flat only)"
            ));
        }
        if let Some(target) = object.get("targetId") {
            let context = target.as_str().and_then(&context_of);
            let browser_target = context.as_deref() == Some(BROWSER_TARGET)
                && matches!(method, "Target.attachToTarget" | "Target.getTargetInfo");
            let known = browser_target || context.is_some_and(|context| self.owns_context(&context));
            if !known {
                return refuse("No target with given id found".to_owned());
            }
        }
        if let Some(window) = object.get("windowId") {
            let known = window
                .as_i64()
                .is_some_and(|window| self.state().windows.contains(&window));
            if !known {
                return refuse("Browser window not found".to_owned());
            }
        }
        let hook = match (method, object.get("browserContextId")) {
            ("Target.disposeBrowserContext", Some(Value::String(context))) if *context == self.primary => {
                return refuse(
                    "the session's own browser context cannot be disposed; end the session instead".to_owned(),
                );
            }
            ("Target.disposeBrowserContext", Some(Value::String(context))) => {
                AnswerHook::RemoveContext(context.clone())
            }
            _ => hook,
        };
        match object.get("browserContextId") {
            Some(Value::String(context)) if self.owns_context(context) => {}
            Some(_) => return refuse("Failed to find browser context for id".to_owned()),
            None if defaults => return (CommandVerdict::Params(with_context(&mut object, &self.primary)), hook),
            None => {}
        }
        (CommandVerdict::Pass, hook)
    }

    /// Rewrites (or keeps) the result of a command that passed; `None`
    /// keeps it as it is.
    pub(crate) fn answer(&self, hook: &AnswerHook, result: &RawValue) -> Option<String> {
        let mut value: Value = serde_json::from_str(result.get()).ok()?;
        match hook {
            AnswerHook::None => return None,
            AnswerHook::Targets => {
                let infos = value.get_mut("targetInfos")?.as_array_mut()?;
                infos.retain(|info| self.info_in_scope(info));
            }
            AnswerHook::Contexts => {
                // Only those that still exist (a context made with
                // `disposeOnDetach` goes with its connection): the list is
                // pruned to the browser's.
                let existing: Vec<String> = value
                    .get("browserContextIds")
                    .and_then(Value::as_array)
                    .map(|ids| ids.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default();
                let made = {
                    let mut state = self.state();
                    state.made.retain(|made| existing.contains(made));
                    state.made.clone()
                };
                let object = value.as_object_mut()?;
                object.insert("browserContextIds".to_owned(), Value::from(made));
                object.insert("defaultBrowserContextId".to_owned(), Value::from(self.primary.clone()));
            }
            AnswerHook::AddContext => {
                if let Some(context) = value.get("browserContextId").and_then(Value::as_str) {
                    self.state().made.push(context.to_owned());
                }
                return None;
            }
            AnswerHook::RemoveContext(context) => {
                self.state().made.retain(|made| made != context);
                return None;
            }
            AnswerHook::Window => {
                if let Some(window) = value.get("windowId").and_then(Value::as_i64) {
                    self.state().windows.insert(window);
                }
                return None;
            }
        }
        Some(value.to_string())
    }

    /// Decides on an event for a scoped connection. `owned_session`: the
    /// child session a `Target.detachedFromTarget` names was this
    /// connection's.
    pub(crate) fn event(
        &self,
        method: &str,
        params: Option<&RawValue>,
        context_of: impl Fn(&str) -> Option<String>,
        owned_session: impl Fn(&str) -> bool,
    ) -> EventVerdict {
        if !method.starts_with("Target.") {
            return EventVerdict::Deliver;
        }
        let Some(value) = params.and_then(|params| serde_json::from_str::<Value>(params.get()).ok()) else {
            return EventVerdict::Drop;
        };
        let text = |key: &str| value.get(key).and_then(Value::as_str).map(str::to_owned);
        match method {
            "Target.targetCreated" | "Target.targetInfoChanged" => {
                keep(value.get("targetInfo").is_some_and(|info| self.info_in_scope(info)))
            }
            "Target.targetDestroyed" | "Target.targetCrashed" => keep(
                text("targetId")
                    .and_then(|target| context_of(&target))
                    .is_some_and(|context| self.owns_context(&context)),
            ),
            "Target.attachedToTarget" => {
                let info = value.get("targetInfo");
                if info.and_then(|info| info.get("type")).and_then(Value::as_str) == Some("browser") {
                    EventVerdict::DeliverBrowser
                } else if info.is_some_and(|info| self.info_in_scope(info)) {
                    EventVerdict::Deliver
                } else {
                    match text("sessionId") {
                        Some(session) => EventVerdict::Detach(session),
                        None => EventVerdict::Drop,
                    }
                }
            }
            "Target.detachedFromTarget" => keep(text("sessionId").is_some_and(|session| owned_session(&session))),
            // Non-flat sessions are refused; nothing else is shown.
            _ => EventVerdict::Drop,
        }
    }

    fn info_in_scope(&self, info: &Value) -> bool {
        info.get("type").and_then(Value::as_str) == Some("browser")
            || info
                .get("browserContextId")
                .and_then(Value::as_str)
                .is_some_and(|context| self.owns_context(context))
    }
}

/// Whether a URL is one of the browser's own pages (`chrome://`,
/// `devtools://`, `chrome-extension://`, …): they show and act on the whole
/// browser (its processes, every context's sites; an extension's pages can
/// change its rules for every context), and only the browser itself (here,
/// DevTools) can open them; web content cannot.
fn browser_internal(url: &str) -> bool {
    let scheme = url.split(':').next().unwrap_or_default().trim().to_ascii_lowercase();
    scheme.starts_with("chrome") || scheme == "devtools" || scheme == "edge" || scheme == "view-source"
}

fn keep(shown: bool) -> EventVerdict {
    if shown {
        EventVerdict::Deliver
    } else {
        EventVerdict::Drop
    }
}

fn with_context(object: &mut Map<String, Value>, context: &str) -> String {
    object.insert("browserContextId".to_owned(), Value::from(context));
    Value::Object(std::mem::take(object)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(value: Value) -> Box<RawValue> {
        RawValue::from_string(value.to_string()).expect("raw")
    }

    fn targets(target: &str) -> Option<String> {
        match target {
            "mine" => Some("A".to_owned()),
            "theirs" => Some("B".to_owned()),
            _ => None,
        }
    }

    fn check(scope: &Scope, method: &str, params: Value, browser: bool) -> (CommandVerdict, AnswerHook) {
        scope.check_command(method, Some(&raw(params)), browser, targets)
    }

    #[test]
    fn commands_reach_only_the_scopes_targets_and_contexts() {
        let scope = Scope::new("A");
        assert_eq!(
            check(
                &scope,
                "Target.attachToTarget",
                serde_json::json!({"targetId": "mine", "flatten": true}),
                true
            )
            .0,
            CommandVerdict::Pass
        );
        for target in ["theirs", "unknown"] {
            let (verdict, _) = check(
                &scope,
                "Target.attachToTarget",
                serde_json::json!({"targetId": target, "flatten": true}),
                true,
            );
            assert!(matches!(verdict, CommandVerdict::Refuse(_)), "{target}");
        }
        let (verdict, _) = check(
            &scope,
            "Target.attachToTarget",
            serde_json::json!({"targetId": "mine"}),
            true,
        );
        assert!(matches!(verdict, CommandVerdict::Refuse(ref why) if why.contains("flatten")));
        // A page made without a context goes into the session's.
        let (verdict, _) = check(
            &scope,
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
            true,
        );
        let CommandVerdict::Params(params) = verdict else {
            panic!("{verdict:?}")
        };
        assert_eq!(
            serde_json::from_str::<Value>(&params).expect("json")["browserContextId"],
            "A"
        );
        let (verdict, _) = check(
            &scope,
            "Storage.getCookies",
            serde_json::json!({"browserContextId": "B"}),
            true,
        );
        assert!(matches!(verdict, CommandVerdict::Refuse(_)));
        let (verdict, _) = check(
            &scope,
            "Target.disposeBrowserContext",
            serde_json::json!({"browserContextId": "A"}),
            true,
        );
        assert!(matches!(verdict, CommandVerdict::Refuse(_)));
        // Whole-browser methods, on any session.
        for (method, browser) in [
            ("Browser.crash", true),
            ("Tracing.start", false),
            ("Target.exposeDevToolsProtocol", false),
            ("Page.navigate", true),
        ] {
            let (verdict, _) = check(&scope, method, serde_json::json!({}), browser);
            assert!(matches!(verdict, CommandVerdict::Refuse(_)), "{method}");
        }
        assert_eq!(
            check(
                &scope,
                "Page.navigate",
                serde_json::json!({"url": "https://a.test/"}),
                false
            )
            .0,
            CommandVerdict::Pass
        );
        for url in [
            "chrome://process-internals",
            "CHROME-untrusted://x",
            "devtools://devtools/x",
            "view-source:https://a.test/",
            // The host's ad blocking extension: its pages could change the
            // rules of every context of the host.
            "chrome-extension://abcdefghijklmnopabcdefghijklmnop/worker.js",
        ] {
            let (verdict, _) = check(&scope, "Page.navigate", serde_json::json!({"url": url}), false);
            assert!(matches!(verdict, CommandVerdict::Refuse(_)), "{url}");
        }
        assert_eq!(
            check(&scope, "Browser.close", serde_json::json!({}), true).0,
            CommandVerdict::AnswerThenClose("{}")
        );
        // The session ends only once the answer was passed on.
        assert!(!scope.close_requested().is_cancelled());
    }

    #[test]
    fn answers_and_events_show_only_the_scope() {
        let scope = Scope::new("A");
        let (_, hook) = check(&scope, "Target.createBrowserContext", serde_json::json!({}), true);
        assert_eq!(
            scope.answer(&hook, &raw(serde_json::json!({"browserContextId": "C"}))),
            None
        );
        assert!(scope.owns_context("C"));
        let listed = scope
            .answer(
                &AnswerHook::Targets,
                &raw(serde_json::json!({"targetInfos": [
                    {"targetId": "1", "browserContextId": "A"},
                    {"targetId": "2", "browserContextId": "B"},
                    {"targetId": "3", "browserContextId": "C"},
                    {"targetId": "4"}
                ]})),
            )
            .expect("rewritten");
        let ids: Vec<String> = serde_json::from_str::<Value>(&listed).expect("json")["targetInfos"]
            .as_array()
            .expect("array")
            .iter()
            .map(|info| info["targetId"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(ids, ["1", "3"]);
        let contexts = scope
            .answer(
                &AnswerHook::Contexts,
                &raw(serde_json::json!({"browserContextIds": ["A", "B", "C"], "defaultBrowserContextId": "D"})),
            )
            .expect("rewritten");
        assert_eq!(
            serde_json::from_str::<Value>(&contexts).expect("json"),
            serde_json::json!({"browserContextIds": ["C"], "defaultBrowserContextId": "A"})
        );

        let event =
            |method: &str, params: Value| scope.event(method, Some(&raw(params)), targets, |session| session == "s1");
        assert_eq!(
            event(
                "Target.targetCreated",
                serde_json::json!({"targetInfo": {"browserContextId": "B"}})
            ),
            EventVerdict::Drop
        );
        assert_eq!(
            event(
                "Target.targetCreated",
                serde_json::json!({"targetInfo": {"browserContextId": "A"}})
            ),
            EventVerdict::Deliver
        );
        assert_eq!(
            event(
                "Target.attachedToTarget",
                serde_json::json!({"sessionId": "s2", "targetInfo": {"browserContextId": "B"}})
            ),
            EventVerdict::Detach("s2".to_owned())
        );
        assert_eq!(
            event("Target.targetDestroyed", serde_json::json!({"targetId": "theirs"})),
            EventVerdict::Drop
        );
        assert_eq!(
            event("Target.targetDestroyed", serde_json::json!({"targetId": "mine"})),
            EventVerdict::Deliver
        );
        assert_eq!(
            event("Target.detachedFromTarget", serde_json::json!({"sessionId": "s2"})),
            EventVerdict::Drop
        );
        assert_eq!(
            event("Page.loadEventFired", serde_json::json!({})),
            EventVerdict::Deliver
        );
    }
}

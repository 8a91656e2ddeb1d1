//! What the server does in every page of a browser for a session's
//! options: one connection, held for the session's life, attaches to every
//! page (those opened later too, which wait until it has set them up) and
//! - for `browser.disable_dialogs`, answers each JavaScript dialog (`alert`,
//!   `confirm`, `prompt`, `beforeunload`) as its Cancel button would;
//! - for `browser.force_popups_as_tabs`, has `window.open` drop its window
//!   features, so that a popup opens as a tab of the opener's window.

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// Runs before any script of a page: `window.open` without its features.
const OPEN_AS_TAB: &str = "(() => { const open = window.open; \
    window.open = function (url, target) { return open.call(this, url, target); }; })();";

/// What to do in every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageRules {
    /// Answer dialogs as Cancel.
    pub dismiss_dialogs: bool,
    /// Open popups as tabs.
    pub popups_as_tabs: bool,
}

/// A connection that applies [`PageRules`] to every page.
pub struct PageRulesConnection {
    client: CdpClient,
    rules: PageRules,
}

impl std::fmt::Debug for PageRulesConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("PageRulesConnection").finish_non_exhaustive()
    }
}

impl PageRulesConnection {
    /// Attaches to every page there is and will be and applies `rules` to
    /// those open now; later ones wait for [`PageRulesConnection::run`].
    pub async fn enable(devtools: &Devtools, rules: PageRules) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        client.attach_to_new_pages().await?;
        // Auto-attach covers the pages opened from now on; those open now
        // are attached here.
        let targets = client.call("Target.getTargets", json!({}), None).await?;
        for page in crate::cdp::target_ids_of(&targets, &["page"]) {
            // A page that closed meanwhile is no error.
            if let Ok(session) = client.attach(&page).await {
                for (method, params) in commands(rules) {
                    let _ = client.call(method, params.clone(), Some(&session)).await;
                    if method == "Page.addScriptToEvaluateOnNewDocument" {
                        // The page that is open already gets it now too.
                        let _ = client
                            .call("Runtime.evaluate", json!({"expression": OPEN_AS_TAB}), Some(&session))
                            .await;
                    }
                }
            }
        }
        Ok(Self { client, rules })
    }

    /// Answers dialogs until `stop` fires or the browser goes.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let Some(event) = self.client.next_until(&stop).await else {
                break;
            };
            let sent = match event.get("method").and_then(Value::as_str) {
                Some("Target.attachedToTarget") => {
                    let Some(session) = event.pointer("/params/sessionId").and_then(Value::as_str) else {
                        continue;
                    };
                    // Set up, then the page may go on (it waited for us).
                    let mut sent = Ok(0);
                    for (method, params) in commands(self.rules) {
                        sent = sent.and(self.client.send(method, params, Some(session)).await);
                    }
                    let resumed = self
                        .client
                        .send("Runtime.runIfWaitingForDebugger", json!({}), Some(session))
                        .await;
                    sent.and(resumed)
                }
                Some("Page.javascriptDialogOpening") if self.rules.dismiss_dialogs => {
                    let session = event.get("sessionId").and_then(Value::as_str);
                    self.client
                        .send("Page.handleJavaScriptDialog", json!({"accept": false}), session)
                        .await
                }
                _ => continue,
            };
            if sent.is_err() {
                break;
            }
        }
        self.client.close().await;
    }
}

/// The commands that set a page up for `rules`.
fn commands(rules: PageRules) -> Vec<(&'static str, Value)> {
    let mut commands = Vec::new();
    if rules.dismiss_dialogs {
        commands.push(("Page.enable", json!({})));
    }
    if rules.popups_as_tabs {
        commands.push(("Page.addScriptToEvaluateOnNewDocument", json!({"source": OPEN_AS_TAB})));
    }
    commands
}

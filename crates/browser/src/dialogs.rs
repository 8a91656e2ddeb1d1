//! Dismisses the JavaScript dialogs (`alert`, `confirm`, `prompt`,
//! `beforeunload`) of every page of a browser, for sessions started with
//! `browser.disable_dialogs`: one connection, held for the session's life,
//! attaches to every page (those opened later too) and answers each dialog
//! as its Cancel button would.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// A connection that dismisses dialogs.
pub struct DialogDismisser {
    client: CdpClient,
}

impl std::fmt::Debug for DialogDismisser {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("DialogDismisser").finish_non_exhaustive()
    }
}

impl DialogDismisser {
    /// Attaches to every page there is and will be; dialogs are dismissed
    /// once [`DialogDismisser::run`] runs (new pages wait for it).
    pub async fn enable(devtools: &Devtools) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        client
            .call(
                "Target.setAutoAttach",
                json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true,
                       "filter": [{"type": "page", "exclude": false}, {"exclude": true}]}),
                None,
            )
            .await?;
        // Auto-attach covers the pages opened from now on; those open now
        // are attached here.
        let targets = client.call("Target.getTargets", json!({}), None).await?;
        let pages: Vec<String> = targets
            .get("targetInfos")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|info| info.get("type").and_then(Value::as_str) == Some("page"))
            .filter_map(|info| info.get("targetId").and_then(Value::as_str).map(str::to_owned))
            .collect();
        for page in pages {
            // A page that closed meanwhile is no error.
            if let Ok(session) = client.attach(&page).await {
                let _ = client.call("Page.enable", json!({}), Some(&session)).await;
            }
        }
        Ok(Self { client })
    }

    /// Answers dialogs until `stop` fires or the browser goes.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let message = tokio::select! {
                message = self.client.next() => message,
                () = stop.cancelled() => break,
            };
            let Some(Message::Text(text)) = message else {
                break;
            };
            let Ok(event) = serde_json::from_str::<Value>(&text) else {
                continue;
            };
            let sent = match event.get("method").and_then(Value::as_str) {
                Some("Target.attachedToTarget") => {
                    let Some(session) = event.pointer("/params/sessionId").and_then(Value::as_str) else {
                        continue;
                    };
                    // Page events on, then the page may go on (it waited for us).
                    let enabled = self.client.send("Page.enable", json!({}), Some(session)).await;
                    let resumed = self
                        .client
                        .send("Runtime.runIfWaitingForDebugger", json!({}), Some(session))
                        .await;
                    enabled.and(resumed)
                }
                Some("Page.javascriptDialogOpening") => {
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

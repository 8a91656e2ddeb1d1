//! Answers a proxy's request for credentials over DevTools, so that the
//! password of a session's proxy never appears on a command line (where
//! any local user could read it) or in a log.
//!
//! One connection per browser, held for the session's life, enables the
//! `Fetch` domain on the browser target: that covers every page and worker
//! of the browser, those opened later included. Chromium then pauses every
//! request (handling credentials needs patterns, and an empty list is
//! refused), so each is let through at once; a proxy's challenge is
//! answered with the credentials once per request (a second challenge for
//! the same request means they were refused, and it is cancelled rather
//! than asked forever); a web server's own challenge gets the browser's
//! default handling.

use std::collections::HashSet;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// Credentials for a session's proxy, answering on a connection of its own.
pub struct ProxyAuthenticator {
    client: CdpClient,
    username: String,
    password: String,
    answered: HashSet<String>,
}

impl std::fmt::Debug for ProxyAuthenticator {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ProxyAuthenticator")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl ProxyAuthenticator {
    /// Starts intercepting; every request made from the moment this returns
    /// is covered (run [`ProxyAuthenticator::run`] at once: requests wait
    /// for it).
    pub async fn enable(devtools: &Devtools, username: &str, password: &str) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        client
            .call(
                "Fetch.enable",
                json!({"handleAuthRequests": true, "patterns": [{"urlPattern": "*"}]}),
                None,
            )
            .await?;
        Ok(Self {
            client,
            username: username.to_owned(),
            password: password.to_owned(),
            answered: HashSet::new(),
        })
    }

    /// Lets requests through and answers the proxy's challenges until
    /// `stop` fires or the browser goes.
    pub async fn run(mut self, stop: CancellationToken) {
        loop {
            let Some(event) = self.client.next_until(&stop).await else {
                break;
            };
            let session = event.get("sessionId").and_then(Value::as_str).map(str::to_owned);
            let params = &event["params"];
            let Some(request_id) = params.get("requestId").and_then(Value::as_str).map(str::to_owned) else {
                continue;
            };
            let (method, answer) = match event.get("method").and_then(Value::as_str) {
                Some("Fetch.requestPaused") => ("Fetch.continueRequest", json!({"requestId": request_id})),
                Some("Fetch.authRequired") => {
                    let from_proxy = params.pointer("/authChallenge/source").and_then(Value::as_str) == Some("Proxy");
                    let response = if !from_proxy {
                        json!({"response": "Default"})
                    } else if self.answered.insert(request_id.clone()) {
                        json!({"response": "ProvideCredentials", "username": self.username, "password": self.password})
                    } else {
                        json!({"response": "CancelAuth"})
                    };
                    (
                        "Fetch.continueWithAuth",
                        json!({"requestId": request_id, "authChallengeResponse": response}),
                    )
                }
                _ => continue,
            };
            // Answers are not awaited: the next event may be read meanwhile.
            if self.client.send(method, answer, session.as_deref()).await.is_err() {
                break;
            }
            if self.answered.len() > 10_000 {
                self.answered.clear();
            }
        }
        self.client.close().await;
    }
}

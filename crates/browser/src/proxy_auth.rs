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
//!
//! A context session shares its browser with other sessions, so `Fetch` is
//! never turned on for the browser target there: the connection is the
//! session's scoped one, attaches to each of its pages and workers (those
//! opened later wait until `Fetch` is on in them) and answers in each. The
//! browser keeps a proxy's accepted credentials for the context, so only a
//! context's first request through the proxy is challenged.

use std::collections::HashSet;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// The `Fetch.enable` that lets credentials be answered.
fn fetch_params() -> Value {
    json!({"handleAuthRequests": true, "patterns": [{"urlPattern": "*"}]})
}

/// Target types whose requests a context session's authenticator covers.
/// Frames of other sites and dedicated workers are not attached: they load
/// after their page, whose first request through the proxy left the
/// credentials with the context.
const COVERED_TYPES: [&str; 3] = ["page", "service_worker", "shared_worker"];

/// Credentials for a session's proxy, answering on a connection of its own.
pub struct ProxyAuthenticator {
    client: CdpClient,
    username: String,
    password: String,
    answered: HashSet<String>,
    /// For a context session: the targets `Fetch` is on in (`None`: it is
    /// on for the whole browser).
    covered: Option<HashSet<String>>,
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
        client.call("Fetch.enable", fetch_params(), None).await?;
        Ok(Self {
            client,
            username: username.to_owned(),
            password: password.to_owned(),
            answered: HashSet::new(),
            covered: None,
        })
    }

    /// As [`ProxyAuthenticator::enable`], for a context session: through
    /// its scoped pipe `devtools`, `Fetch` goes on in each of its pages and
    /// workers, those open now before this returns, later ones before they
    /// run (see [`ProxyAuthenticator::run`]).
    pub async fn enable_in_targets(devtools: &Devtools, username: &str, password: &str) -> Result<Self, CdpError> {
        let mut client = CdpClient::open(devtools).await?;
        client
            .call(
                "Target.setAutoAttach",
                json!({"autoAttach": true, "waitForDebuggerOnStart": true, "flatten": true}),
                None,
            )
            .await?;
        let targets = client.call("Target.getTargets", json!({}), None).await?;
        let mut covered = HashSet::new();
        for target in crate::cdp::target_ids_of(&targets, &COVERED_TYPES) {
            // A target that closed meanwhile is no error.
            if let Ok(session) = client.attach(&target).await {
                if client
                    .call("Fetch.enable", fetch_params(), Some(&session))
                    .await
                    .is_ok()
                {
                    covered.insert(target);
                }
            }
        }
        Ok(Self {
            client,
            username: username.to_owned(),
            password: password.to_owned(),
            answered: HashSet::new(),
            covered: Some(covered),
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
            if event.get("method").and_then(Value::as_str) == Some("Target.attachedToTarget") {
                if self.cover(params).await.is_err() {
                    break;
                }
                continue;
            }
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

    /// A context session's target was attached (auto-attach): `Fetch` goes
    /// on in it, unless it is on already, and it may run.
    async fn cover(&mut self, params: &Value) -> Result<(), CdpError> {
        let (Some(covered), Some(session)) = (self.covered.as_mut(), params.get("sessionId").and_then(Value::as_str))
        else {
            return Ok(());
        };
        let target = params.pointer("/targetInfo/targetId").and_then(Value::as_str);
        let kind = params.pointer("/targetInfo/type").and_then(Value::as_str);
        let wanted = kind.is_some_and(|kind| COVERED_TYPES.contains(&kind));
        if covered.len() > 10_000 {
            // A target seen again after this only gets `Fetch` twice.
            covered.clear();
        }
        if wanted && target.is_some_and(|target| covered.insert(target.to_owned())) {
            // Sent in order on the target's session: on before it runs.
            self.client.send("Fetch.enable", fetch_params(), Some(session)).await?;
        }
        self.client
            .send("Runtime.runIfWaitingForDebugger", json!({}), Some(session))
            .await
            .map(|_| ())
    }
}

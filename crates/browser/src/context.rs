//! A context session's browser context inside a host browser: made with its
//! first page, watched for a renderer crash, disposed at its end.
//!
//! The host is an ordinary [`crate::Browser`]; which host a context goes to
//! is the fleet's decision. Everything the server and the session's clients
//! do with the context goes through its scoped [`Devtools`] (see
//! [`crate::scope`]).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::cdp::CdpClient;
use crate::scope::Scope;
use crate::Devtools;

/// What a new context is made with.
#[derive(Debug, Clone)]
pub struct ContextSetup {
    /// The first page's address (`about:blank` when none).
    pub initial_url: Option<Url>,
    /// The first page's viewport.
    pub viewport: (u32, u32),
    /// A proxy for the context's traffic (`Target.createBrowserContext`'s
    /// `proxyServer`), without credentials.
    pub proxy_server: Option<String>,
    /// The session's folder for uploads and downloads (inside the host's
    /// directory; the browser makes its `downloads` folder itself).
    pub files_dir: PathBuf,
}

/// One context session's context in a host browser.
#[derive(Debug)]
pub struct HostedContext {
    host: Devtools,
    scoped: Devtools,
    scope: Arc<Scope>,
    files_dir: PathBuf,
}

/// A context made ahead in a host, its first page blank at `viewport`:
/// a start that takes it only names it its session's (and sizes it, and
/// opens its first address, if it asks for those).
#[derive(Debug)]
pub struct SpareContext {
    context: String,
    viewport: (u32, u32),
}

impl SpareContext {
    /// Makes one in the host whose pipe is `host`.
    pub async fn make(host: &Devtools, viewport: (u32, u32)) -> Result<Self, String> {
        Self::make_with(host, viewport, None).await
    }

    async fn make_with(host: &Devtools, viewport: (u32, u32), proxy_server: Option<&str>) -> Result<Self, String> {
        host.follow_targets().await?;
        let mut params = json!({"disposeOnDetach": false});
        if let Some(proxy) = proxy_server {
            params["proxyServer"] = json!(proxy);
        }
        let made = host.call("Target.createBrowserContext", params).await?;
        let context = serde_json::from_str::<Value>(made.get())
            .ok()
            .and_then(|made| made.get("browserContextId")?.as_str().map(str::to_owned))
            .ok_or_else(|| format!("unexpected answer to Target.createBrowserContext: {made}"))?;
        let spare = Self { context, viewport };
        // A failure from here on disposes what was made.
        let first_page = async {
            host.call(
                "Target.createTarget",
                json!({"url": "about:blank", "browserContextId": spare.context}),
            )
            .await?;
            let scoped = host.scoped(Arc::new(Scope::new(spare.context.clone())));
            crate::cdp::fit_viewport(&scoped, viewport.0, viewport.1)
                .await
                .map_err(|error| format!("cannot size the first page: {error}"))
        };
        match first_page.await {
            Ok(_) => Ok(spare),
            Err(error) => {
                dispose_context(host, &spare.context).await;
                Err(error)
            }
        }
    }
}

impl HostedContext {
    /// Makes a context with its first page in the host whose pipe is
    /// `host`, sized to the viewport and showing the first page's address.
    pub async fn open(host: &Devtools, setup: &ContextSetup) -> Result<Self, String> {
        let spare = SpareContext::make_with(host, setup.viewport, setup.proxy_server.as_deref()).await?;
        Self::adopt(host, spare, setup).await
    }

    /// Makes a spare context the session's: its folder, its size (when it
    /// asks for another), its first address.
    pub async fn adopt(host: &Devtools, spare: SpareContext, setup: &ContextSetup) -> Result<Self, String> {
        let scope = Arc::new(Scope::new(spare.context.clone()));
        let hosted = Self {
            host: host.clone(),
            scoped: host.scoped(Arc::clone(&scope)),
            scope,
            files_dir: setup.files_dir.clone(),
        };
        // From here on, a failure disposes what was made.
        match hosted.ready(&spare, setup).await {
            Ok(()) => Ok(hosted),
            Err(error) => {
                hosted.dispose().await;
                Err(error)
            }
        }
    }

    async fn ready(&self, spare: &SpareContext, setup: &ContextSetup) -> Result<(), String> {
        // Made here, open to the browser's user (it makes `downloads` in
        // it); only that user and the server pass through the host's
        // directory around it.
        tokio::fs::create_dir_all(&setup.files_dir)
            .await
            .map_err(|error| format!("cannot make {}: {error}", setup.files_dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            tokio::fs::set_permissions(&setup.files_dir, std::fs::Permissions::from_mode(0o777))
                .await
                .map_err(|error| format!("cannot open {} to the browser: {error}", setup.files_dir.display()))?;
        }
        if setup.viewport != spare.viewport {
            let (width, height) = setup.viewport;
            crate::cdp::fit_viewport(&self.scoped, width, height)
                .await
                .map_err(|error| format!("cannot size the first page: {error}"))?;
        }
        if let Some(url) = &setup.initial_url {
            crate::cdp::open_in_first_page(&self.scoped, url)
                .await
                .map_err(|error| format!("cannot open session.initial_url: {error}"))?;
        }
        Ok(())
    }

    /// The pipe as the session sees it: only its own contexts and targets.
    pub fn devtools(&self) -> &Devtools {
        &self.scoped
    }

    /// The session's folder for uploads and downloads.
    pub fn files_dir(&self) -> &std::path::Path {
        &self.files_dir
    }

    /// Fires when a client sent `Browser.close`.
    pub fn close_requested(&self) -> CancellationToken {
        self.scope.close_requested()
    }

    /// Resolves when a page of the session crashes (its renderer died or was
    /// killed), with what happened; pends while it cannot watch.
    pub async fn crashed(&self) -> String {
        let watched = async {
            let mut client = CdpClient::open(&self.scoped).await.ok()?;
            client
                .call("Target.setDiscoverTargets", json!({"discover": true}), None)
                .await
                .ok()?;
            let never = CancellationToken::new();
            while let Some(event) = client.next_until(&never).await {
                if event["method"] == "Target.targetCrashed" {
                    let status = event["params"]["status"].as_str().unwrap_or("crashed").to_owned();
                    return Some(format!("a page's renderer process ended ({status})"));
                }
            }
            None
        };
        match watched.await {
            Some(reason) => reason,
            None => std::future::pending().await,
        }
    }

    /// Disposes every context of the session (its pages and renderers go
    /// with them) and removes its folder. A host that is gone has nothing
    /// left to dispose.
    pub async fn dispose(&self) {
        for context in self.scope.contexts() {
            dispose_context(&self.host, &context).await;
        }
        let _ = tokio::fs::remove_dir_all(&self.files_dir).await;
    }
}

async fn dispose_context(host: &Devtools, context: &str) {
    if let Err(error) = host
        .call("Target.disposeBrowserContext", json!({"browserContextId": context}))
        .await
    {
        tracing::debug!(%context, %error, "a browser context was not disposed (its host may be gone)");
    }
}

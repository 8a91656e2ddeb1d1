//! WebSocket upgrades that connect a client to a session's browser:
//! `GET /cdp/{session_id}?token=…` (the `cdp_url` we hand out) and
//! `GET /?apiKey=…&sessionId=…` (what the SDK's `browser.connect` builds).
//!
//! Everything is checked before the upgrade is answered, so a wrong token,
//! key or id is an HTTP `401`/`404` and no browser is touched. The upgrade is
//! done by hand (not with a framework helper) so that the client's leg is a
//! plain tungstenite stream with our limits, and no compression is offered.
//! The browser's leg is a connection on its DevTools pipe
//! (`anchorage_browser::Devtools`), with a browser session of its own.

use std::sync::Arc;

use anchorage_browser::{pump_watching, websocket_config};
use anchorage_core::SessionId;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::extract::{session_by_token, QueryMap};
use crate::auth::authenticate;
use crate::error::ApiError;
use crate::fleet::LiveSession;
use crate::state::AppState;

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|part| part.trim().eq_ignore_ascii_case(token))
    };
    has_token(header::CONNECTION, "upgrade") && has_token(header::UPGRADE, "websocket")
}

/// `GET /cdp/{session_id}?token=…`.
#[utoipa::path(
    operation_id = "connect_cdp",
    get,
    path = "/cdp/{session_id}",
    tag = "connect",
    summary = "Connect a CDP client to a session (the cdp_url)",
    description = "A WebSocket upgrade. Pass the whole `cdp_url` to Playwright's `connectOverCDP` or Puppeteer's `connect`. CDP frames pass both ways unchanged; several clients may share a session; clients are closed when it ends.",
    params(
        ("session_id" = String, Path, description = "The session's id"),
        ("token" = String, Query, description = "The session's own token, from its cdp_url"),
    ),
    responses(
        (status = 101, description = "Switched to the WebSocket protocol")
    )
)]
pub async fn by_token(State(state): State<AppState>, Path(raw_id): Path<String>, request: Request) -> Response {
    let session_id = match session_by_token(&state, &raw_id, request.uri().query()) {
        Ok(session_id) => session_id,
        Err(error) => return error.into_response(),
    };
    match state.fleet.live_session_any_team(session_id) {
        Some(session) => upgrade(state, session, None, request).await,
        None => ApiError::session_not_found().into_response(),
    }
}

/// `GET /?apiKey=…&sessionId=…`, the SDK's form.
pub async fn by_api_key(state: AppState, request: Request) -> Response {
    let query = QueryMap::parse(request.uri().query());
    let key = query.get("apiKey").unwrap_or_default();
    let caller = match authenticate(&state, key).await {
        Ok(Some(caller)) => caller,
        Ok(None) => return ApiError::Unauthorized.into_response(),
        Err(error) => return error.into_response(),
    };
    let Some(session_id) = query.get("sessionId").and_then(|text| text.parse::<SessionId>().ok()) else {
        return ApiError::session_not_found().into_response();
    };
    match state.fleet.live_session(caller.team_id, session_id) {
        Some(session) => upgrade(state, session, Some(key.to_owned()), request).await,
        None => ApiError::session_not_found().into_response(),
    }
}

/// How often a connection opened with an API key checks that the key still
/// stands; a revoked key's connections close within this.
const KEY_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves once `key` is revoked (or unknown): the connection it opened
/// must close.
async fn revoked(state: AppState, key: String) {
    loop {
        tokio::time::sleep(KEY_RECHECK).await;
        // A database that cannot answer now is not a revocation.
        if let Ok(None) = authenticate(&state, &key).await {
            return;
        }
    }
}

/// Connects a client to a session's browser. A connection opened with an
/// API key (`opened_with`) ends when the key is revoked.
async fn upgrade(
    state: AppState,
    session: Arc<LiveSession>,
    opened_with: Option<String>,
    mut request: Request,
) -> Response {
    let handshake = match Handshake::accept(&mut request) {
        Ok(handshake) => handshake,
        Err(refusal) => return refusal.into_response(),
    };

    // Reach the browser first, so that a failure is still an HTTP answer.
    let browser = match session.devtools.connect().await {
        Ok(browser) => browser,
        Err(error) => {
            // The session ended while we connected: answer as for any ended one.
            if state.fleet.live_session_any_team(session.id).is_none() {
                return ApiError::session_not_found().into_response();
            }
            return ApiError::internal(format!("connecting to the browser of {}: {error}", session.id)).into_response();
        }
    };
    let guard = session.connect_client();
    let metrics = Arc::clone(&state.metrics);
    let key_state = state.clone();
    handshake.finish(&state, move |client| async move {
        let stop = async {
            match opened_with {
                Some(key) => {
                    tokio::select! {
                        () = session.ending() => {}
                        () = revoked(key_state, key) => {
                            tracing::info!(session_id = %session.id, "closing a CDP connection: its API key was revoked");
                        }
                    }
                }
                None => session.ending().await,
            }
        };
        // A client's own download behaviour saves into the session's folder
        // (`anchorage_browser::Downloads`), so that its downloads are listed too.
        let watch = DownloadWatch {
            downloads: session.downloads.clone(),
            folder: session.files_dir.as_ref().map(|dir| dir.join("downloads")),
        };
        let end = pump_watching(client, browser, stop, metrics.proxied_bytes(), &watch).await;
        tracing::debug!(session_id = %session.id, ?end, "CDP client disconnected");
        drop(guard);
        if session.client_count() == 0 {
            session.downloads.clients_gone();
        }
    })
}

/// Shows a client's frames to its session's downloads (see
/// [`anchorage_browser::Downloads::client_frame`]).
struct DownloadWatch {
    downloads: anchorage_browser::Downloads,
    folder: Option<std::path::PathBuf>,
}

impl anchorage_browser::FrameWatch for DownloadWatch {
    fn client_sent(&self, text: &str) -> Option<String> {
        self.downloads.client_frame(text, self.folder.as_deref()?)
    }

    fn browser_sent(&self, text: &str) -> Option<futures_util::future::BoxFuture<'static, ()>> {
        let copy = self.downloads.browser_frame(text, self.folder.as_deref()?)?;
        Some(Box::pin(copy.make()))
    }
}

/// A WebSocket upgrade request that passed its checks.
pub struct Handshake {
    on_upgrade: hyper::upgrade::OnUpgrade,
    accept: String,
}

impl Handshake {
    /// Checks the upgrade headers; the refusal is the HTTP answer to give.
    pub fn accept(request: &mut Request) -> Result<Self, ApiError> {
        let headers = request.headers();
        if !is_websocket_upgrade(headers) {
            return Err(ApiError::BadRequest(
                "this URL takes a WebSocket upgrade (connect with a CDP client, or open the live view page)".to_owned(),
            ));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .and_then(|value| value.to_str().ok())
            != Some("13")
        {
            return Err(ApiError::BadRequest("Sec-WebSocket-Version must be 13".to_owned()));
        }
        let Some(accept) = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .map(|key| derive_accept_key(key.as_bytes()))
        else {
            return Err(ApiError::BadRequest("Sec-WebSocket-Key is missing".to_owned()));
        };
        let Some(on_upgrade) = request.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
            return Err(ApiError::internal("the connection cannot be upgraded"));
        };
        Ok(Self { on_upgrade, accept })
    }

    /// Answers `101` and runs `serve` on the upgraded connection in its own
    /// task, counted in `anchorage_websocket_tasks` until it ends.
    pub fn finish<F, Fut>(self, state: &AppState, serve: F) -> Response
    where
        F: FnOnce(WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let on_upgrade = self.on_upgrade;
        let counted = RunningTask::start(Arc::clone(&state.metrics));
        tokio::spawn(async move {
            let _counted = counted;
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(error) => {
                    tracing::debug!(%error, "client left during the WebSocket handshake");
                    return;
                }
            };
            let client =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(websocket_config())).await;
            serve(client).await;
        });
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let response_headers = response.headers_mut();
        response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        if let Ok(value) = HeaderValue::from_str(&self.accept) {
            response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
        }
        response
    }
}

/// Counts one running WebSocket task while it lives.
struct RunningTask(Arc<crate::metrics::Metrics>);

impl RunningTask {
    fn start(metrics: Arc<crate::metrics::Metrics>) -> Self {
        metrics.websocket_task(true);
        Self(metrics)
    }
}

impl Drop for RunningTask {
    fn drop(&mut self) {
        self.0.websocket_task(false);
    }
}

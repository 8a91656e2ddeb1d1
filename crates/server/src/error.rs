//! The one error type of the HTTP API and its mapping to the contract's JSON
//! body `{"error": {"code", "message"}}`, and the one table of error
//! answers ([`Fault`]): each kind's status and documented meaning. The route
//! table (`routes::table`) names, per route, the faults it can answer; the
//! OpenAPI document's error responses are made from that, and the router
//! holds each route to it.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Everything a route can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the input is wrong; the message names the field.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no key, or an unknown one.
    #[error("Invalid API Key")]
    Unauthorized,
    /// 404: unknown, malformed or another team's id; or no such route.
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists, the method does not.
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409: the state does not allow this.
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is over the limit.
    #[error("the request body is larger than the limit of {0} bytes")]
    PayloadTooLarge(usize),
    /// 429: the team is over a quota.
    #[error("{message}")]
    TooManyRequests {
        /// What was exceeded.
        message: String,
        /// Seconds to wait.
        retry_after_seconds: u64,
    },
    /// 503: no capacity and the request cannot be queued, or shutting down.
    #[error("{0}")]
    Unavailable(String),
    /// 504: the browser or its page did not answer in time.
    #[error("{0}")]
    Timeout(String),
    /// 500: a fault of ours. The cause goes to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A kind of error answer: one status, one documented meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Fault {
    /// `400`.
    BadRequest,
    /// `401`.
    Unauthorized,
    /// `404`.
    NotFound,
    /// `405`.
    MethodNotAllowed,
    /// `409`.
    Conflict,
    /// `413`.
    PayloadTooLarge,
    /// `429`.
    TooManyRequests,
    /// `500`.
    Internal,
    /// `503`.
    Unavailable,
    /// `504`.
    Timeout,
}

impl Fault {
    /// The table: status and documented meaning of each kind.
    pub fn entry(self) -> (StatusCode, &'static str) {
        match self {
            Self::BadRequest => (StatusCode::BAD_REQUEST, "A value is wrong; the message names it"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "Missing or unknown API key, or a wrong token"),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "No such resource for this team (unknown, malformed, or another team's id)",
            ),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "The route does not take this method"),
            Self::Conflict => (
                StatusCode::CONFLICT,
                "The resource's state does not allow this; the message says which",
            ),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "The body is over the size limit"),
            Self::TooManyRequests => (
                StatusCode::TOO_MANY_REQUESTS,
                "The team is at its session quota; see Retry-After",
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "A fault of the server; details are in its log",
            ),
            Self::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "The database cannot take work right now, or the server is shutting down; nothing was changed",
            ),
            Self::Timeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "The browser or its page did not answer in time",
            ),
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        self.entry().0
    }

    /// The kind a status belongs to, if it is an error status of the table.
    pub fn of_status(status: StatusCode) -> Option<Self> {
        Self::ALL.into_iter().find(|fault| fault.status() == status)
    }

    /// Every kind.
    pub const ALL: [Fault; 10] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::Conflict,
        Self::PayloadTooLarge,
        Self::TooManyRequests,
        Self::Internal,
        Self::Unavailable,
        Self::Timeout,
    ];
}

impl ApiError {
    /// Its kind in the table.
    pub fn fault(&self) -> Fault {
        match self {
            Self::BadRequest(_) => Fault::BadRequest,
            Self::Unauthorized => Fault::Unauthorized,
            Self::NotFound(_) => Fault::NotFound,
            Self::MethodNotAllowed(_) => Fault::MethodNotAllowed,
            Self::Conflict(_) => Fault::Conflict,
            Self::PayloadTooLarge(_) => Fault::PayloadTooLarge,
            Self::TooManyRequests { .. } => Fault::TooManyRequests,
            Self::Unavailable(_) => Fault::Unavailable,
            Self::Timeout(_) => Fault::Timeout,
            Self::Internal(_) => Fault::Internal,
        }
    }

    /// A session id that is unknown, malformed, or another team's.
    pub fn session_not_found() -> Self {
        Self::NotFound("Session not found".to_owned())
    }

    /// A fault of ours, with its cause for the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.fault().status()
    }
}

impl From<anchorage_store::StoreError> for ApiError {
    /// A database that is locked, full or read-only is a `503` that says
    /// so (nothing was changed; trying again later can work); anything else
    /// is a fault of ours.
    fn from(error: anchorage_store::StoreError) -> Self {
        match error.unavailable() {
            Some(why) => {
                tracing::error!(%error, "the database cannot take work");
                Self::Unavailable(format!("{why}; nothing was changed, try again later"))
            }
            None => Self::internal(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            Self::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                "The server failed to handle this request; the cause is in its log".to_owned()
            }
            other => other.to_string(),
        };
        let body = json!({"error": {"code": status.as_u16(), "message": message}});
        let mut response = (status, axum::Json(body)).into_response();
        if let Self::TooManyRequests {
            retry_after_seconds, ..
        } = &self
        {
            if let Ok(value) = HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

//! The one error type of the HTTP API and its mapping to the contract's JSON
//! body `{"error": {"code", "message"}}`.

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
    /// 500: a fault of ours. The cause goes to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
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
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
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

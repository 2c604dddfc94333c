//! Errors: the server's startup and storage errors, and JSON error responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use thiserror::Error;

/// Why the server or one of its storage operations failed.
#[derive(Debug, Error)]
pub enum ServerError {
    /// The configuration cannot be used.
    #[error("bad configuration: {0}")]
    Config(String),
    /// The object store refused an operation.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A stored object is not what the server wrote.
    #[error("corrupt stored object {path}: {why}")]
    Corrupt {
        /// Where it is.
        path: String,
        /// What is wrong with it.
        why: String,
    },
    /// Binding or serving the socket failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// An HTTP error answered as `{"error": "..."}` (plus optional fields).
#[derive(Debug)]
pub struct ApiError {
    /// Status code.
    pub status: StatusCode,
    /// What went wrong, for a human.
    pub message: String,
    /// Further fields merged into the JSON object.
    pub extra: Option<Value>,
    /// Ask for a bearer token (`WWW-Authenticate`).
    pub challenge: bool,
}

impl ApiError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            extra: None,
            challenge: false,
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    /// Adds fields to the JSON body.
    pub fn with_extra(mut self, extra: Value) -> Self {
        self.extra = Some(extra);
        self
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        tracing::error!(error = %e, "storage error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage error: {e}"),
        )
    }
}

impl From<object_store::Error> for ApiError {
    fn from(e: object_store::Error) -> Self {
        ServerError::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let (Some(Value::Object(extra)), Some(obj)) = (self.extra, body.as_object_mut()) {
            for (k, v) in extra {
                obj.entry(k).or_insert(v);
            }
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

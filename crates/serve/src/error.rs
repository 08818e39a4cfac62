//! The one error type of the HTTP API: a status, a stable code, the offending request field
//! (a JSON path such as `items[2].vector[7]`, or `id`), and a message. Rendered as
//! `{"error": {"code": ..., "field": ..., "message": ...}}`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use silica_core::error::Error;

/// An API error. Client mistakes are 4xx; only server faults (I/O, a dead writer) are 5xx.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable machine-readable code (`bad_request`, `not_found`, `unauthorized`, ...).
    pub code: &'static str,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, field: Option<String>, message: impl Into<String>) -> Self {
        ApiError { status, code, field, message: message.into() }
    }
    /// 400 naming `field`.
    pub fn bad(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", Some(field.into()), message)
    }
    /// 404 for an unknown item id.
    pub fn not_found(id: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", Some("id".into()), format!("no item with id {id:?}"))
    }
    /// 503: the server cannot take the request now.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None, message)
    }
    /// 503 with `Retry-After: 1`: the search queue is full (`--max-queue`); retry later.
    pub fn overloaded(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", None, message)
    }
    /// 504: the request's deadline (`timeout_ms`) passed before it was searched.
    pub fn deadline(message: impl Into<String>) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded", Some("timeout_ms".into()), message)
    }
    /// 500: a server fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", None, message)
    }

    /// Prefix the field with `prefix` (`k` under `queries[3]` -> `queries[3].k`).
    pub fn within(mut self, prefix: &str) -> Self {
        if !prefix.is_empty() {
            self.field = Some(match self.field {
                Some(f) if f.starts_with('[') => format!("{prefix}{f}"),
                Some(f) => format!("{prefix}.{f}"),
                None => prefix.to_string(),
            });
        }
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "field": self.field, "message": self.message}})
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} {}: {}", self.status.as_u16(), field, self.message),
            None => write!(f, "{} {}", self.status.as_u16(), self.message),
        }
    }
}

/// Map a library error: validation errors are 400 naming their field, the rest 500.
impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let msg = e.to_string();
        match e {
            Error::Param { name, .. } => ApiError::bad(name, msg),
            Error::Dimension { .. } => ApiError::bad("vector", msg),
            Error::NonFinite { col, .. } | Error::OutOfRange { col: Some(col), .. } => ApiError::bad(format!("vector[{col}]"), msg),
            Error::OutOfRange { col: None, .. } => ApiError::bad("vector", msg),
            Error::Filter(_) => ApiError::bad("filter", msg),
            _ => ApiError::internal(msg),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        if self.code == "overloaded" {
            r.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
        }
        r
    }
}

//! The unified dialect's one error body (§11 of its spec): OpenAI-style
//! `{"error": {code, message, type, param}}`, with the HTTP status decided by the code.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::AuthFailure;

/// A refusal in this dialect's terms. `code` is stable and what clients branch on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedError {
    pub status: StatusCode,
    /// The `type` field.
    pub kind: &'static str,
    pub code: &'static str,
    pub message: String,
    /// The offending field path (`camera_control.config.zoom`), if one is to blame.
    pub param: Option<String>,
    /// Seconds for the `Retry-After` header of a 429.
    pub retry_after: Option<u64>,
}

const INVALID_REQUEST: &str = "invalid_request_error";
const RATE_LIMIT: &str = "rate_limit_error";

impl UnifiedError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
        param: Option<&str>,
    ) -> Self {
        Self {
            status,
            kind,
            code,
            message: message.into(),
            param: param.map(str::to_owned),
            retry_after: None,
        }
    }

    /// 429 `rate_limit_exceeded`: the key's submits per second.
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        Self {
            retry_after: Some(retry_after_seconds),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMIT,
                "rate_limit_exceeded",
                "this key is over its submits per second; retry after the Retry-After seconds",
                None,
            )
        }
    }

    /// 429 `concurrency_limit_exceeded`: the key's unfinished tasks.
    pub fn concurrency_limited(message: impl Into<String>) -> Self {
        Self {
            retry_after: Some(crate::billing::admission::CONCURRENCY_RETRY_AFTER_SECONDS),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                RATE_LIMIT,
                "concurrency_limit_exceeded",
                message,
                None,
            )
        }
    }

    /// 402 `insufficient_balance`.
    pub fn insufficient_balance(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::PAYMENT_REQUIRED,
            "insufficient_quota",
            "insufficient_balance",
            message,
            None,
        )
    }

    pub fn invalid_json(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "invalid_json",
            message,
            None,
        )
    }

    pub fn missing(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "missing_parameter",
            message,
            Some(param),
        )
    }

    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "invalid_parameter",
            message,
            Some(param),
        )
    }

    pub fn invalid_model(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "invalid_model",
            message,
            Some("model"),
        )
    }

    pub fn unsupported(param: Option<&str>, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "unsupported_combination",
            message,
            param,
        )
    }

    pub fn duplicate_external_task_id(id: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "duplicate_external_task_id",
            format!("external_task_id `{id}` is already used by another task of this account"),
            Some("external_task_id"),
        )
    }

    pub fn task_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "task_not_found",
            format!("no task `{id}`"),
            None,
        )
    }

    pub fn element_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "element_not_found",
            format!("no element `{id}`"),
            None,
        )
    }

    pub fn request_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            "request_too_large",
            format!(
                "the request body is larger than {} MiB",
                limit / (1024 * 1024)
            ),
            None,
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID_REQUEST,
            "method_not_allowed",
            "this path does not take that method",
            None,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal_error",
            message,
            None,
        )
    }

    /// The JSON body.
    pub fn body(&self) -> Value {
        json!({
            "error": {
                "code": self.code,
                "message": self.message,
                "type": self.kind,
                "param": self.param,
            }
        })
    }
}

impl From<AuthFailure> for UnifiedError {
    fn from(failure: AuthFailure) -> Self {
        let (code, message) = match failure {
            AuthFailure::Missing => (
                "missing_api_key",
                "send an API key as `Authorization: Bearer <key>`",
            ),
            AuthFailure::Invalid => ("invalid_api_key", "the API key is unknown or revoked"),
            AuthFailure::UnknownKey => (
                "invalid_api_key",
                "the API key or access key is unknown or revoked",
            ),
            AuthFailure::Disabled => ("invalid_api_key", "the access key has been revoked"),
            AuthFailure::NotYetValid => ("invalid_api_key", "the token is not valid yet (nbf)"),
            AuthFailure::Expired => ("invalid_api_key", "the token has expired (exp)"),
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            code,
            message,
            None,
        )
    }
}

impl From<crate::billing::admission::SubmitRefusal> for UnifiedError {
    fn from(refusal: crate::billing::admission::SubmitRefusal) -> Self {
        match refusal {
            crate::billing::admission::SubmitRefusal::RateLimited {
                retry_after_seconds,
            } => Self::rate_limited(retry_after_seconds),
        }
    }
}

impl IntoResponse for UnifiedError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        crate::http::set_retry_after(&mut response, self.retry_after);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_the_openai_shape() {
        let e = UnifiedError::unsupported(
            Some("camera_control"),
            "image_tail cannot be combined with camera_control",
        );
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            e.body(),
            json!({"error": {
                "code": "unsupported_combination",
                "message": "image_tail cannot be combined with camera_control",
                "type": "invalid_request_error",
                "param": "camera_control"
            }})
        );
        let auth = UnifiedError::from(AuthFailure::Missing);
        assert_eq!(auth.status, StatusCode::UNAUTHORIZED);
        assert_eq!(auth.body()["error"]["param"], Value::Null);
        assert_eq!(auth.body()["error"]["type"], "authentication_error");
    }
}

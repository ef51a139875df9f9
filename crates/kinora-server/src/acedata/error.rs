//! The AceData dialect's errors (§6.3, §9): `{success: false, error: {code, message}, trace_id}`
//! with a string code that decides the HTTP status, and `task_id` once a task exists.

use axum::http::StatusCode;
use kinora_core::{FailureClass, TaskId};
use serde_json::{json, Value};

use crate::auth::AuthFailure;

/// A refusal in this dialect's terms; `code` is what clients branch on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AceError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The task the error is about, when one exists (a failed or timed-out blocking request).
    pub task_id: Option<TaskId>,
    /// Seconds for the `Retry-After` header of a 429.
    pub retry_after: Option<u64>,
}

impl AceError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: status_of(code),
            code,
            message: message.into(),
            task_id: None,
            retry_after: None,
        }
    }

    /// The refusals the shared create service gives, in this dialect's codes (§9): rate and
    /// concurrency limits are `too_many_requests`, a short balance `used_up`.
    pub fn from_unified(e: crate::unified::error::UnifiedError) -> Self {
        match e.code {
            "internal_error" => Self::internal(e.message),
            "rate_limit_exceeded" | "concurrency_limit_exceeded" => Self {
                retry_after: e.retry_after,
                ..Self::new("too_many_requests", "You have exceeded the rate limit.")
            },
            "insufficient_balance" => Self::new(
                "used_up",
                "Your balance is not sufficient for current request.",
            ),
            _ => Self::bad_request(e.message),
        }
    }

    /// 400 `bad_request`: a field, a limit, an unknown model or action, unreadable JSON.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new("bad_request", message)
    }

    /// 500 `api_error`: a fault of the server.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new("api_error", message)
    }

    pub fn with_task(mut self, task_id: TaskId) -> Self {
        self.task_id = Some(task_id);
        self
    }

    /// The error body.
    pub fn body(&self, trace_id: impl std::fmt::Display) -> Value {
        let mut body = json!({
            "success": false,
            "error": {"code": self.code, "message": self.message},
            "trace_id": trace_id.to_string(),
        });
        if let Some(id) = self.task_id {
            body["task_id"] = json!(id.to_string());
        }
        body
    }

    /// How a failed task shows in this dialect (§8.2).
    pub fn for_failure(class: Option<FailureClass>, message: &str) -> Self {
        let code = match class {
            Some(FailureClass::ContentPolicy) => "forbidden",
            Some(FailureClass::InvalidInput) => "bad_request",
            Some(FailureClass::Deadline) => "timeout",
            Some(FailureClass::UpstreamError | FailureClass::Internal) | None => "api_error",
        };
        Self::new(code, message)
    }
}

/// The HTTP status of each code (§9).
pub fn status_of(code: &str) -> StatusCode {
    match code {
        "bad_request" | "no_token" | "api_not_implemented" | "token_mismatched" => {
            StatusCode::BAD_REQUEST
        }
        "invalid_token" | "token_expired" => StatusCode::UNAUTHORIZED,
        "disabled" | "used_up" | "forbidden" => StatusCode::FORBIDDEN,
        "no_api" => StatusCode::NOT_FOUND,
        "too_many_requests" => StatusCode::TOO_MANY_REQUESTS,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<AuthFailure> for AceError {
    fn from(failure: AuthFailure) -> Self {
        match failure {
            AuthFailure::Missing => Self::new("no_token", "No token specified for the request."),
            AuthFailure::Invalid | AuthFailure::UnknownKey | AuthFailure::NotYetValid => {
                Self::new("invalid_token", "The specified token is invalid or wrong.")
            }
            AuthFailure::Expired => Self::new("token_expired", "token expired."),
            AuthFailure::Disabled => Self::new(
                "disabled",
                "Your application has been disabled, please contact support.",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_published_status() {
        for (code, status) in [
            ("bad_request", 400),
            ("no_token", 400),
            ("api_not_implemented", 400),
            ("token_mismatched", 400),
            ("invalid_token", 401),
            ("token_expired", 401),
            ("disabled", 403),
            ("used_up", 403),
            ("forbidden", 403),
            ("no_api", 404),
            ("too_many_requests", 429),
            ("api_error", 500),
            ("timeout", 504),
        ] {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
        }
    }

    #[test]
    fn failures_map_by_class() {
        let code = |class| AceError::for_failure(Some(class), "m").code;
        assert_eq!(code(FailureClass::ContentPolicy), "forbidden");
        assert_eq!(code(FailureClass::InvalidInput), "bad_request");
        assert_eq!(code(FailureClass::UpstreamError), "api_error");
        assert_eq!(code(FailureClass::Internal), "api_error");
        assert_eq!(code(FailureClass::Deadline), "timeout");
    }
}

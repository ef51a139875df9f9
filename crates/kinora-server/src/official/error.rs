//! The official dialect's errors: Kling's numeric codes, each with its HTTP status (§10 of the
//! dialect's spec), in the envelope without `data`.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::auth::AuthFailure;

/// A refusal in this dialect's terms; `code` is what clients branch on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfficialError {
    pub status: StatusCode,
    pub code: u32,
    pub message: String,
    /// Seconds for the `Retry-After` header (429s that may be retried).
    pub retry_after: Option<u64>,
}

impl OfficialError {
    pub fn new(code: u32, message: impl Into<String>) -> Self {
        Self {
            status: status_of(code),
            code,
            message: message.into(),
            retry_after: default_retry_after(code),
        }
    }

    /// The refusals the shared create service gives, in this dialect's codes: 1302 request
    /// rate, 1303 concurrency, 1102 balance (§6.1's order), 1201 for field rules.
    pub fn from_unified(e: crate::unified::error::UnifiedError) -> Self {
        let code = match e.code {
            "internal_error" => 5000,
            "rate_limit_exceeded" => 1302,
            "concurrency_limit_exceeded" => 1303,
            "insufficient_balance" => 1102,
            _ => 1201,
        };
        let mut error = Self::new(code, e.message);
        if e.retry_after.is_some() {
            error.retry_after = e.retry_after;
        }
        error
    }

    /// 1201: a field, capability or paging rule.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(1201, message)
    }

    /// 1203: no such task, element or model.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(1203, message)
    }

    /// 5000: a fault of the server.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(5000, message)
    }

    /// The error body: the envelope without `data`.
    pub fn body(&self, request_id: impl std::fmt::Display) -> Value {
        json!({"code": self.code, "message": self.message, "request_id": request_id.to_string()})
    }
}

/// Every 429, 503 and 504 of this dialect carries `Retry-After` (§10, our decision): a second
/// for the request rate, the in-flight limit's wait for concurrency, a minute for an account
/// that needs an operator or a top-up, a few seconds for a server that is busy or timed out.
fn default_retry_after(code: u32) -> Option<u64> {
    match code {
        1302 => Some(1),
        1303 => Some(crate::billing::admission::CONCURRENCY_RETRY_AFTER_SECONDS),
        1100..=1102 | 1304 => Some(60),
        5001 | 5002 => Some(5),
        _ => None,
    }
}

/// The HTTP status Kling answers each code with.
pub fn status_of(code: u32) -> StatusCode {
    match code {
        0 => StatusCode::OK,
        1000..=1004 => StatusCode::UNAUTHORIZED,
        1100..=1102 | 1302..=1304 => StatusCode::TOO_MANY_REQUESTS,
        1103 => StatusCode::FORBIDDEN,
        1202 | 1203 => StatusCode::NOT_FOUND,
        1200 | 1201 | 1300 | 1301 => StatusCode::BAD_REQUEST,
        5001 => StatusCode::SERVICE_UNAVAILABLE,
        5002 => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<AuthFailure> for OfficialError {
    fn from(failure: AuthFailure) -> Self {
        let (code, message) = match failure {
            AuthFailure::Missing => (1001, "Authorization is empty"),
            AuthFailure::Invalid => (1002, "Authorization is invalid"),
            AuthFailure::UnknownKey => (1002, "api key not found"),
            AuthFailure::Disabled => (1000, "authentication failed"),
            AuthFailure::NotYetValid => (1003, "Authorization is not yet valid"),
            AuthFailure::Expired => (1004, "Authorization has expired"),
        };
        Self::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_published_status() {
        let table = [
            (1000, 401),
            (1001, 401),
            (1002, 401),
            (1003, 401),
            (1004, 401),
            (1100, 429),
            (1101, 429),
            (1102, 429),
            (1103, 403),
            (1200, 400),
            (1201, 400),
            (1202, 404),
            (1203, 404),
            (1300, 400),
            (1301, 400),
            (1302, 429),
            (1303, 429),
            (1304, 429),
            (5000, 500),
            (5001, 503),
            (5002, 504),
        ];
        for (code, status) in table {
            assert_eq!(status_of(code).as_u16(), status, "{code}");
            let retry = OfficialError::new(code, "x").retry_after;
            assert_eq!(
                retry.is_some(),
                matches!(status, 429 | 503 | 504),
                "{code}: Retry-After on every 429, 503 and 504"
            );
        }
        assert_eq!(
            OfficialError::new(1303, "parallel task over resource pack limit").body("r-1"),
            json!({"code": 1303, "message": "parallel task over resource pack limit", "request_id": "r-1"})
        );
    }
}

use std::fmt;

/// Stable, machine-readable error codes. Each dialect maps them to its own error body; the
/// code also decides the HTTP status, whether a job retries, and the log level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    InvalidInput,
    NotFound,
    /// `external_task_id` already used by another task of the same account.
    DuplicateExternalTaskId,
    /// A compare-and-set state change found the row in another state.
    StaleTransition,
    /// A job lease is no longer held by the caller (expired and claimed by another worker).
    LeaseLost,
    /// The key already has as many unfinished tasks as its app allows.
    ConcurrencyLimit,
    /// The purses that may pay for a task hold less than its price.
    InsufficientBalance,
    Unavailable,
    Storage,
    Database,
    Config,
    Internal,
}

impl ErrorCode {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidInput => "invalid_input",
            Self::NotFound => "not_found",
            Self::DuplicateExternalTaskId => "duplicate_external_task_id",
            Self::StaleTransition => "stale_transition",
            Self::LeaseLost => "lease_lost",
            Self::ConcurrencyLimit => "concurrency_limit_exceeded",
            Self::InsufficientBalance => "insufficient_balance",
            Self::Unavailable => "unavailable",
            Self::Storage => "storage_error",
            Self::Database => "database_error",
            Self::Config => "config_error",
            Self::Internal => "internal_error",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            Self::InvalidInput | Self::Config => 400,
            Self::NotFound => 404,
            Self::InsufficientBalance => 402,
            Self::ConcurrencyLimit => 429,
            Self::DuplicateExternalTaskId | Self::StaleTransition | Self::LeaseLost => 409,
            Self::Unavailable | Self::Database | Self::Storage => 503,
            Self::Internal => 500,
        }
    }

    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable | Self::Database | Self::Storage)
    }

    /// Server-side faults are logged as errors; client faults are not.
    pub fn is_server_fault(&self) -> bool {
        self.http_status() >= 500
    }
}

/// The one internal error type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: ErrorCode,
    message: String,
}

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn http_status(&self) -> u16 {
        self.code.http_status()
    }

    pub fn is_retryable(&self) -> bool {
        self.code.is_retryable()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_decide_status_and_retry() {
        assert_eq!(Error::not_found("x").http_status(), 404);
        assert!(!Error::invalid("x").is_retryable());
        assert!(Error::new(ErrorCode::Database, "down").is_retryable());
        assert!(ErrorCode::Internal.is_server_fault());
        assert!(!ErrorCode::StaleTransition.is_server_fault());
        assert_eq!(
            Error::new(ErrorCode::StaleTransition, "task t is running").to_string(),
            "stale_transition: task t is running"
        );
    }
}

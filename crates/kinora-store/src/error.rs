use kinora_core::{Error, ErrorCode};

/// Maps a database error to the internal error type. Pool exhaustion and lost connections are
/// retryable; the caller decides what a unique violation means.
pub(crate) fn db_error(context: &str, err: sqlx::Error) -> Error {
    let code = match &err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            ErrorCode::Unavailable
        }
        _ => ErrorCode::Database,
    };
    Error::new(code, format!("{context}: {err}"))
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

pub(crate) fn lease_lost(id: i64, owner: &str) -> Error {
    Error::new(
        ErrorCode::LeaseLost,
        format!("job {id} is no longer leased by {owner}"),
    )
}

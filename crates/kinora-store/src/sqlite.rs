use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use kinora_core::time::Clock;
use kinora_core::{Error, ErrorCode, JobKind};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use tokio::sync::Notify;

use crate::error::db_error;
use crate::shared::{impl_store, job_columns};
use crate::{Backend, Job, Result, StoreOptions};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// SQLite, the embedded default. All writes go through one connection: SQLite allows one
/// writer at a time anyway, and queueing in the pool is cheaper than `SQLITE_BUSY` retries.
/// Reads use a separate pool, which WAL lets run beside the writer.
#[derive(Debug)]
pub struct SqliteStore {
    read: SqlitePool,
    write: SqlitePool,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Notify>,
}

impl SqliteStore {
    pub async fn connect(options: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let connect_options = SqliteConnectOptions::from_str(&options.url)
            .map_err(|e| Error::new(ErrorCode::Config, format!("database.url: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.sqlite_synchronous_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout.max(Duration::from_secs(30)))
            .connect_with(connect_options.clone())
            .await
            .map_err(|e| db_error("open SQLite database", e))?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect_options.create_if_missing(false))
            .await
            .map_err(|e| db_error("open SQLite database", e))?;
        Ok(Self {
            read,
            write,
            clock,
            wakeups: Arc::new(Notify::new()),
        })
    }

    /// Other processes sharing the file are not told; they find new jobs by polling.
    async fn announce_jobs(&self, _tx: &mut Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }
}

impl_store!(
    SqliteStore,
    Sqlite,
    backend = Backend::Sqlite,
    migrator = MIGRATOR,
    specific = {
        async fn claim_jobs(
            &self,
            owner: &str,
            kinds: &[JobKind],
            limit: u32,
            lease: Duration,
        ) -> Result<Vec<Job>> {
            let now = self.clock.now_ms();
            let kinds_json =
                serde_json::Value::from(kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())
                    .to_string();
            sqlx::query(crate::shared::DEAD_LETTER_EXPIRED)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(|e| db_error("dead-letter expired jobs", e))?;
            // One statement: SQLite runs it under the write lock, so no two claimers see the same row.
            let rows = sqlx::query_as::<_, crate::rows::JobRow>(concat!(
            "UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, \
             attempts = attempts + 1, updated_at = $3 \
             WHERE id IN (SELECT id FROM jobs \
                 WHERE ((state = 'queued' AND next_run_at <= $3) OR (state = 'running' AND lease_until <= $3)) \
                 AND kind IN (SELECT value FROM json_each($4)) \
                 ORDER BY next_run_at, id LIMIT $5) \
             RETURNING ",
            job_columns!()
        ))
        .bind(owner)
        .bind(now.saturating_add(kinora_core::time::duration_ms(lease)))
        .bind(now)
        .bind(kinds_json)
        .bind(i64::from(limit))
        .fetch_all(&self.write)
        .await
        .map_err(|e| db_error("claim jobs", e))?;
            crate::rows::jobs(rows)
        }
    }
);

use std::sync::Arc;
use std::time::Duration;

use kinora_core::time::Clock;
use kinora_core::JobKind;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::error::db_error;
use crate::shared::impl_store;
use crate::{Backend, Job, Result, StoreOptions};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel enqueues NOTIFY on, so workers in every process wake at once.
const JOBS_CHANNEL: &str = "kinora_jobs";

/// PostgreSQL, for many processes on many machines sharing one database.
#[derive(Debug)]
pub struct PgStore {
    read: PgPool,
    write: PgPool,
    clock: Arc<dyn Clock>,
    wakeups: Arc<Notify>,
    listener: JoinHandle<()>,
}

impl PgStore {
    pub async fn connect(options: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(2))
            .acquire_timeout(options.acquire_timeout)
            .connect(&options.url)
            .await
            .map_err(|e| db_error("connect to PostgreSQL", e))?;
        let wakeups = Arc::new(Notify::new());
        let mut listener = PgListener::connect_with(&pool)
            .await
            .map_err(|e| db_error("open LISTEN connection", e))?;
        listener
            .listen(JOBS_CHANNEL)
            .await
            .map_err(|e| db_error("LISTEN for jobs", e))?;
        let listener = tokio::spawn(forward_notifications(listener, wakeups.clone()));
        Ok(Self {
            read: pool.clone(),
            write: pool,
            clock,
            wakeups,
            listener,
        })
    }

    async fn announce_jobs(&self, tx: &mut Transaction<'_, Postgres>) -> Result<()> {
        // Delivered on commit, and only then.
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(JOBS_CHANNEL)
            .execute(&mut **tx)
            .await
            .map_err(|e| db_error("NOTIFY jobs", e))?;
        Ok(())
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Lost notifications (while the listener reconnects) are covered by the workers' polling.
async fn forward_notifications(mut listener: PgListener, wakeups: Arc<Notify>) {
    loop {
        match listener.recv().await {
            Ok(_) => wakeups.notify_waiters(),
            Err(e) => {
                tracing::warn!(error = %e, "job notification listener lost its connection; reconnecting");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl_store!(
    PgStore,
    Postgres,
    backend = Backend::Postgres,
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
            let kinds: Vec<String> = kinds.iter().map(|k| k.as_str().to_owned()).collect();
            sqlx::query(crate::shared::DEAD_LETTER_EXPIRED)
                .bind(now)
                .execute(&self.write)
                .await
                .map_err(|e| db_error("dead-letter expired jobs", e))?;
            // SKIP LOCKED lets concurrent claimers in any process take disjoint rows without waiting.
            let rows = sqlx::query_as::<_, crate::rows::JobRow>(concat!(
            "WITH picked AS (SELECT id FROM jobs \
                 WHERE ((state = 'queued' AND next_run_at <= $3) OR (state = 'running' AND lease_until <= $3)) \
                 AND kind = ANY($4) \
                 ORDER BY next_run_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) \
             UPDATE jobs SET state = 'running', lease_owner = $1, lease_until = $2, \
                 attempts = jobs.attempts + 1, updated_at = $3 \
             FROM picked WHERE jobs.id = picked.id \
             RETURNING ",
            "jobs.id, jobs.kind, jobs.payload, jobs.task_id, jobs.state, jobs.attempts, jobs.max_attempts, \
             jobs.next_run_at, jobs.lease_owner, jobs.lease_until, jobs.last_error, jobs.created_at, \
             jobs.updated_at, jobs.finished_at"
        ))
        .bind(owner)
        .bind(now.saturating_add(kinora_core::time::duration_ms(lease)))
        .bind(now)
        .bind(kinds)
        .bind(i64::from(limit))
        .fetch_all(&self.write)
        .await
        .map_err(|e| db_error("claim jobs", e))?;
            crate::rows::jobs(rows)
        }
    }
);

//! The job runtime: claims due jobs by lease, runs each with its handler while a heartbeat
//! keeps the lease, and settles the job from the handler's outcome. Handlers must be
//! idempotent: after a crash a job runs again from the start.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kinora_core::{ErrorCode, JobKind};
use kinora_store::{Job, NewJob, RetryOutcome, Store};
use rand::Rng;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::config::QueueConfig;

/// What a handler wants done with its job.
#[derive(Debug)]
pub enum JobOutcome {
    Done,
    /// Finished this step; `next` continues the work (in one transaction with completion).
    Continue(NewJob),
    /// Not finished, nothing went wrong: run again after the delay (polling, waiting for a slot).
    RunAgainAfter(Duration),
}

/// Why a handler could not finish its job.
#[derive(Debug)]
pub enum JobError {
    /// Try again with exponential backoff; dead-lettered after `max_attempts`.
    Retry(String),
    /// Retrying cannot help.
    Abort(String),
}

impl From<kinora_core::Error> for JobError {
    fn from(err: kinora_core::Error) -> Self {
        if err.is_retryable() {
            Self::Retry(err.to_string())
        } else {
            Self::Abort(err.to_string())
        }
    }
}

/// What a handler gets besides the job.
#[derive(Clone)]
pub struct JobContext {
    /// Set when the job must stop early: shutdown past its grace period, or a lost lease.
    pub cancel: CancellationToken,
}

#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    fn kind(&self) -> JobKind;

    async fn run(&self, job: &Job, cx: &JobContext) -> Result<JobOutcome, JobError>;

    /// Called once when the job was dead-lettered or aborted, so the handler can settle what
    /// the job was responsible for (a task must not stay unfinished forever).
    async fn given_up(&self, _job: &Job, _error: &str) {}
}

/// A worker pool: one claim loop, `queue.concurrency` jobs at a time.
pub struct Workers {
    store: Arc<dyn Store>,
    handlers: HashMap<JobKind, Arc<dyn JobHandler>>,
    config: QueueConfig,
    owner: String,
    grace: Duration,
    sweeper: Option<Arc<dyn Sweeper>>,
}

/// Periodic repair work the pool runs between jobs.
#[async_trait]
pub trait Sweeper: Send + Sync + 'static {
    async fn sweep(&self);
}

impl Workers {
    pub fn new(store: Arc<dyn Store>, config: QueueConfig, grace: Duration) -> Self {
        Self {
            store,
            handlers: HashMap::new(),
            config,
            owner: worker_identity(),
            grace,
            sweeper: None,
        }
    }

    pub fn with_handler(mut self, handler: Arc<dyn JobHandler>) -> Self {
        self.handlers.insert(handler.kind(), handler);
        self
    }

    pub fn with_sweeper(mut self, sweeper: Arc<dyn Sweeper>) -> Self {
        self.sweeper = Some(sweeper);
        self
    }

    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Runs until `shutdown` fires. Then it claims nothing more, lets running jobs finish
    /// for the grace period, and hands the leases of the rest back to the queue.
    pub async fn run(self, shutdown: CancellationToken) {
        let kinds: Vec<JobKind> = self.handlers.keys().cloned().collect();
        if kinds.is_empty() {
            warn!("no job handlers registered; workers idle");
        }
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let hard_stop = CancellationToken::new();
        let wakeups = self.store.job_wakeups();
        let poll_every = Duration::from_millis(self.config.poll_interval_ms);
        let sweep_every = Duration::from_secs(self.config.sweep_interval_seconds);
        let mut next_sweep = tokio::time::Instant::now();
        let mut running = JoinSet::new();
        let shared = Arc::new(self);
        info!(owner = %shared.owner, concurrency = shared.config.concurrency, "workers started");

        while !shutdown.is_cancelled() {
            // Register for wake-ups before looking, so an enqueue between the claim and the
            // wait is not missed.
            let woken = wakeups.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();

            while running.try_join_next().is_some() {}
            if let Some(sweeper) = &shared.sweeper {
                if tokio::time::Instant::now() >= next_sweep {
                    sweeper.sweep().await;
                    next_sweep = tokio::time::Instant::now() + sweep_every;
                }
            }

            let free = slots.available_permits();
            let mut claimed_any = false;
            if free > 0 && !kinds.is_empty() {
                let limit = u32::try_from(free).unwrap_or(u32::MAX);
                match shared
                    .store
                    .claim_jobs(&shared.owner, &kinds, limit, shared.config.lease())
                    .await
                {
                    Ok(jobs) => {
                        claimed_any = !jobs.is_empty();
                        for job in jobs {
                            let Ok(permit) = slots.clone().acquire_owned().await else {
                                break;
                            };
                            let this = shared.clone();
                            let stop = hard_stop.child_token();
                            let span = tracing::info_span!("job", id = job.id, kind = %job.kind, attempt = job.attempts);
                            running.spawn(
                                async move {
                                    this.execute(job, stop).await;
                                    drop(permit);
                                }
                                .instrument(span),
                            );
                        }
                    }
                    Err(e) => warn!(error = %e, "claiming jobs failed; will retry"),
                }
            }
            if claimed_any && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                _ = &mut woken => {}
                _ = tokio::time::sleep(poll_every) => {}
                _ = shutdown.cancelled() => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }

        info!(in_flight = running.len(), "workers stopping");
        let drained = tokio::time::timeout(shared.grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            warn!(
                in_flight = running.len(),
                "grace period over; releasing leases of unfinished jobs"
            );
            hard_stop.cancel();
            while running.join_next().await.is_some() {}
        }
        info!("workers stopped");
    }

    async fn execute(&self, job: Job, stop: CancellationToken) {
        let Some(handler) = self.handlers.get(&job.kind).cloned() else {
            // Claims only ask for registered kinds; this is a programming error.
            error!("no handler for claimed job");
            return;
        };
        let lease_lost = CancellationToken::new();
        let cx = JobContext {
            cancel: stop.clone(),
        };
        let heartbeat = self.heartbeat(job.id, stop.clone(), lease_lost.clone());
        let outcome = tokio::select! {
            outcome = handler.run(&job, &cx) => Some(outcome),
            _ = stop.cancelled() => None,
            _ = lease_lost.cancelled() => {
                warn!("lease lost while running; another worker owns the job now");
                heartbeat.abort();
                return;
            }
        };
        heartbeat.abort();
        // A handler that gave up because it was told to stop has not failed: hand the job back.
        let outcome = outcome.filter(|o| !(o.is_err() && stop.is_cancelled()));
        let Some(outcome) = outcome else {
            match self.store.release_job(job.id, &self.owner).await {
                Ok(()) => info!("released unfinished job for another worker"),
                Err(e) => warn!(error = %e, "could not release job; its lease will expire"),
            }
            return;
        };
        self.settle(&job, &*handler, outcome).await;
    }

    async fn settle(
        &self,
        job: &Job,
        handler: &dyn JobHandler,
        outcome: Result<JobOutcome, JobError>,
    ) {
        let owner = self.owner.as_str();
        let result = match outcome {
            Ok(JobOutcome::Done) => self.store.complete_job(job.id, owner).await,
            Ok(JobOutcome::Continue(next)) => self
                .store
                .complete_job_and_enqueue(job.id, owner, next)
                .await
                .map(|_| ()),
            Ok(JobOutcome::RunAgainAfter(delay)) => {
                self.store.reschedule_job(job.id, owner, delay).await
            }
            Err(JobError::Retry(message)) => {
                let delay = self.backoff(job.attempts);
                match self.store.retry_job(job.id, owner, delay, &message).await {
                    Ok(RetryOutcome::Scheduled { .. }) => {
                        warn!(error = %message, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                        Ok(())
                    }
                    Ok(RetryOutcome::DeadLettered) => {
                        error!(error = %message, "job failed on its last attempt; dead-lettered");
                        handler.given_up(job, &message).await;
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
            Err(JobError::Abort(message)) => {
                error!(error = %message, "job aborted");
                let aborted = self.store.abort_job(job.id, owner, &message).await;
                if aborted.is_ok() {
                    handler.given_up(job, &message).await;
                }
                aborted
            }
        };
        match result {
            Ok(()) => debug!("job settled"),
            Err(e) if e.code() == ErrorCode::LeaseLost => {
                warn!(error = %e, "job settled by another worker")
            }
            Err(e) => error!(error = %e, "could not record the job's outcome; it will run again"),
        }
    }

    fn heartbeat(
        &self,
        id: i64,
        stop: CancellationToken,
        lease_lost: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = self.store.clone();
        let owner = self.owner.clone();
        let lease = self.config.lease();
        let every = Duration::from_secs(self.config.heartbeat_seconds);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = stop.cancelled() => return,
                }
                match store.heartbeat_job(id, &owner, lease).await {
                    Ok(()) => {}
                    Err(e) if e.code() == ErrorCode::LeaseLost => {
                        lease_lost.cancel();
                        return;
                    }
                    Err(e) => warn!(job = id, error = %e, "heartbeat failed; will try again"),
                }
            }
        })
    }

    /// Exponential backoff with ±25 % jitter, so jobs that failed together do not return together.
    fn backoff(&self, attempts: u32) -> Duration {
        backoff_delay(
            &self.config,
            attempts,
            rand::rng().random_range(0.75..=1.25),
        )
    }
}

/// `retry_base_ms * 2^(attempts - 1)`, capped at `retry_max_seconds`, scaled by `jitter`.
pub fn backoff_delay(config: &QueueConfig, attempts: u32, jitter: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let base = config.retry_base_ms.saturating_mul(1u64 << exponent);
    let capped = base.min(config.retry_max_seconds.saturating_mul(1000));
    Duration::from_millis((capped as f64 * jitter) as u64)
}

/// `host:pid:random`, unique per process, readable in the jobs table.
fn worker_identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "kinora".to_owned());
    // The tail of a UUIDv7 is random.
    let id = uuid::Uuid::now_v7().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &id[id.len() - 8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let config = QueueConfig {
            retry_base_ms: 1000,
            retry_max_seconds: 10,
            ..QueueConfig::default()
        };
        let ms = |a| backoff_delay(&config, a, 1.0).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(40)],
            [1000, 2000, 4000, 8000, 10_000, 10_000]
        );
        assert_eq!(backoff_delay(&config, 1, 0.75).as_millis(), 750);
    }
}

//! The task pipeline on the job queue: `task.submit` hands a queued task to the provider its
//! model routes to, `task.poll` follows it until it ends. Both are idempotent by rule: they
//! read the task's state first and only do what that state still needs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kinora_core::job::TaskJobPayload;
use kinora_core::time::Clock;
use kinora_core::{ErrorCode, FailureClass, JobKind, Task, TaskState};
use kinora_providers::{Progress, ProviderContext, ProviderError, Providers};
use kinora_storage::ObjectStorage;
use kinora_store::{Job, NewJob, Store, TaskTransition};
use tracing::{info, warn};

use crate::callbacks::outbox::Outbox;
use crate::task_events::TaskEvents;
use crate::worker::{JobContext, JobError, JobHandler, JobOutcome, Sweeper};

/// Polls start at this interval and grow with the task's age up to [`MAX_POLL_INTERVAL`].
const MIN_POLL_INTERVAL: Duration = Duration::from_secs(2);
const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// Everything the pipeline's handlers share.
pub struct Pipeline {
    pub store: Arc<dyn Store>,
    pub storage: ObjectStorage,
    pub providers: Arc<Providers>,
    pub clock: Arc<dyn Clock>,
    /// Told of every state change this process makes, for requests waiting on a task.
    pub events: Arc<TaskEvents>,
    /// Records the callbacks state changes call for.
    pub outbox: Arc<Outbox>,
}

impl Pipeline {
    pub fn handlers(self: &Arc<Self>) -> Vec<Arc<dyn JobHandler>> {
        vec![
            Arc::new(SubmitTask(self.clone())),
            Arc::new(PollTask(self.clone())),
        ]
    }

    async fn task_of(&self, job: &Job) -> Result<Task, JobError> {
        let payload: TaskJobPayload = serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Abort(format!("job payload is not a task reference: {e}")))?;
        self.store
            .load_task_for_worker(payload.task_id)
            .await?
            .ok_or_else(|| JobError::Abort(format!("task {} does not exist", payload.task_id)))
    }

    fn context(&self, cx: &JobContext) -> ProviderContext {
        ProviderContext {
            storage: self.storage.clone(),
            cancel: cx.cancel.clone(),
        }
    }

    /// Applies a transition; a stale one means another run already moved the task on.
    async fn transition(&self, task: &Task, transition: TaskTransition) -> Result<(), JobError> {
        match self.store.transition_task(task.id, transition).await {
            Ok(changed) => {
                self.events.announce(task.id);
                self.outbox.record(&changed).await;
                Ok(())
            }
            Err(e) if e.code() == ErrorCode::StaleTransition => {
                info!(task = %task.id, error = %e, "task already moved on");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn fail(
        &self,
        task: &Task,
        class: FailureClass,
        message: String,
    ) -> Result<JobOutcome, JobError> {
        warn!(task = %task.id, %class, %message, "task failed");
        self.transition(task, TaskTransition::Failed { class, message })
            .await?;
        Ok(JobOutcome::Done)
    }

    /// Busy waits its turn, transient errors retry with backoff, permanent ones fail the task.
    async fn provider_failed(
        &self,
        task: &Task,
        error: ProviderError,
    ) -> Result<JobOutcome, JobError> {
        match error {
            ProviderError::Busy { retry_after } => Ok(JobOutcome::RunAgainAfter(retry_after)),
            ProviderError::Transient { message } => Err(JobError::Retry(message)),
            ProviderError::Permanent { class, message } => self.fail(task, class, message).await,
        }
    }

    fn poll_job(&self, task: &Task, after: Duration) -> NewJob {
        let at = self
            .clock
            .now_ms()
            .saturating_add(kinora_core::time::duration_ms(after));
        NewJob::for_task(JobKind::POLL_TASK, task.id).run_at(at)
    }

    /// Young tasks are polled often, old ones less: a quarter of the task's age, clamped.
    fn next_poll_delay(&self, task: &Task) -> Duration {
        let since = task.submitted_at.unwrap_or(task.created_at);
        let age_ms = u64::try_from(self.clock.now_ms().saturating_sub(since)).unwrap_or(0);
        Duration::from_millis(age_ms / 4).clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL)
    }

    async fn give_up(&self, job: &Job, error: &str) {
        let Ok(task) = self.task_of(job).await else {
            return;
        };
        if task.state.is_terminal() {
            return;
        }
        let message = format!("gave up after {} attempts: {error}", job.attempts);
        if let Err(e) = self.fail(&task, FailureClass::UpstreamError, message).await {
            warn!(task = %task.id, error = ?e, "could not fail the task; the sweeper will");
        }
    }
}

struct SubmitTask(Arc<Pipeline>);

#[async_trait]
impl JobHandler for SubmitTask {
    fn kind(&self) -> JobKind {
        JobKind::SUBMIT_TASK
    }

    async fn run(&self, job: &Job, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let p = &self.0;
        let task = p.task_of(job).await?;
        match task.state {
            TaskState::Queued => {}
            // An earlier run submitted it and stopped before scheduling the poll.
            TaskState::Submitted | TaskState::Running => {
                return Ok(JobOutcome::Continue(p.poll_job(&task, Duration::ZERO)))
            }
            TaskState::Succeeded | TaskState::Failed | TaskState::Canceled => {
                return Ok(JobOutcome::Done)
            }
        }
        let Some((channel, provider)) = p.providers.for_model(&task.model) else {
            return p
                .fail(
                    &task,
                    FailureClass::Internal,
                    format!("no channel serves model `{}`", task.model),
                )
                .await;
        };
        match provider.submit(&task, &p.context(cx)).await {
            Ok(submission) => {
                let transition = TaskTransition::Submitted {
                    channel: channel.to_owned(),
                    upstream_task_id: submission.upstream_task_id,
                };
                p.transition(&task, transition).await?;
                Ok(JobOutcome::Continue(
                    p.poll_job(&task, submission.first_poll_after),
                ))
            }
            Err(error) => p.provider_failed(&task, error).await,
        }
    }

    async fn given_up(&self, job: &Job, error: &str) {
        self.0.give_up(job, error).await;
    }
}

struct PollTask(Arc<Pipeline>);

#[async_trait]
impl JobHandler for PollTask {
    fn kind(&self) -> JobKind {
        JobKind::POLL_TASK
    }

    async fn run(&self, job: &Job, cx: &JobContext) -> Result<JobOutcome, JobError> {
        let p = &self.0;
        let task = p.task_of(job).await?;
        if task.state.is_terminal() {
            return Ok(JobOutcome::Done);
        }
        let Some(provider) = task.channel.as_deref().and_then(|c| p.providers.channel(c)) else {
            let channel = task.channel.as_deref().unwrap_or("(none)");
            return p
                .fail(
                    &task,
                    FailureClass::Internal,
                    format!("channel `{channel}` is not configured any more"),
                )
                .await;
        };
        if provider.works_during_poll() && task.state == TaskState::Submitted {
            p.transition(&task, TaskTransition::Running).await?;
        }
        match provider.poll(&task, &p.context(cx)).await {
            Ok(Progress::Pending) => Ok(JobOutcome::RunAgainAfter(p.next_poll_delay(&task))),
            Ok(Progress::Running) => {
                if task.state != TaskState::Running {
                    p.transition(&task, TaskTransition::Running).await?;
                }
                Ok(JobOutcome::RunAgainAfter(p.next_poll_delay(&task)))
            }
            Ok(Progress::Succeeded { result }) => {
                p.transition(&task, TaskTransition::Succeeded { result })
                    .await?;
                info!(task = %task.id, "task succeeded");
                Ok(JobOutcome::Done)
            }
            Ok(Progress::Failed { class, message }) => p.fail(&task, class, message).await,
            Err(error) => p.provider_failed(&task, error).await,
        }
    }

    async fn given_up(&self, job: &Job, error: &str) {
        self.0.give_up(job, error).await;
    }
}

/// Fails unfinished tasks whose jobs are all gone (a job dead-lettered by an expired lease
/// never reaches its handler's `given_up`), so no task waits forever.
pub struct OrphanSweeper(pub Arc<Pipeline>);

#[async_trait]
impl Sweeper for OrphanSweeper {
    async fn sweep(&self) {
        let p = &self.0;
        let ids = match p.store.orphaned_task_ids(100).await {
            Ok(ids) => ids,
            Err(e) => {
                warn!(error = %e, "orphan sweep failed");
                return;
            }
        };
        for id in ids {
            let Ok(Some(task)) = p.store.load_task_for_worker(id).await else {
                continue;
            };
            let message = "the task's job stopped before the task finished".to_owned();
            if let Err(e) = p.fail(&task, FailureClass::Internal, message).await {
                warn!(task = %id, error = ?e, "could not fail orphaned task");
            }
        }
        // Callbacks a crash kept from being recorded.
        p.outbox.repair(p.clock.now_ms()).await;
    }
}

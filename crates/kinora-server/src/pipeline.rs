//! The task pipeline on the job queue: `task.submit` puts a queued task on a channel of its
//! model's route and hands it to that channel's provider, `task.poll` follows it until it
//! ends. Both are idempotent by rule: they read the task's state first and only do what that
//! state still needs.
//!
//! Routing: a route's channels are tried by priority, and by weight within one priority; a
//! channel at its `max_in_flight` is passed over, and when every channel is full the task
//! waits its turn. The chosen channel is written on the task before the provider is called,
//! so a retry after a crash or an ambiguous error asks the same channel first (which looks
//! the task up before creating it again). After `failover_after_attempts` failed attempts, or
//! at once when the channel itself is unusable (it is then disabled), the task moves on to the
//! route's next channel in a new submit job that remembers the channels already left.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kinora_core::job::TaskJobPayload;
use kinora_core::request::GenerationRequest;
use kinora_core::time::Clock;
use kinora_core::{ErrorCode, FailureClass, JobKind, Task, TaskKind, TaskState};
use kinora_providers::{Channel, Progress, ProviderContext, ProviderError, Providers};
use kinora_storage::ObjectStorage;
use kinora_store::{Job, NewJob, Store, TaskTransition};
use rand::Rng;
use tracing::{error, info, warn};

use crate::callbacks::outbox::Outbox;
use crate::task_events::TaskEvents;
use crate::upstream_push::UpstreamReceiver;
use crate::worker::{JobContext, JobError, JobHandler, JobOutcome, Sweeper};

/// A task whose every channel is full asks again after about this long.
const ROUTE_FULL_WAIT: Duration = Duration::from_secs(2);
/// The longest a task the upstream is too busy for waits between tries (§12).
const BUSY_BACKOFF_CAP: Duration = Duration::from_secs(60);
/// A task not finished this long after it was created fails (§12: 24 h).
const TASK_DEADLINE: Duration = Duration::from_secs(24 * 3600);
/// How long a read of the disabled channels is reused by this process's submits (a channel
/// this process disables is seen at once).
const DISABLED_CHANNELS_TTL: Duration = Duration::from_secs(1);

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
    /// Gives upstreams the URL to push task changes to; `None` turns pushes off.
    pub receiver: Option<UpstreamReceiver>,
    /// The disabled channels as last read, and when.
    pub disabled: DisabledChannels,
}

/// A short-lived copy of the disabled channels, so a burst of submits reads them once.
#[derive(Default)]
pub struct DisabledChannels(std::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>);

impl DisabledChannels {
    async fn get(&self, store: &dyn Store) -> Result<Vec<String>, kinora_core::Error> {
        {
            let cached = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some((at, names)) = cached.as_ref() {
                if at.elapsed() < DISABLED_CHANNELS_TTL {
                    return Ok(names.clone());
                }
            }
        }
        let names = store.disabled_channels().await?;
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) =
            Some((std::time::Instant::now(), names.clone()));
        Ok(names)
    }

    fn forget(&self) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

/// Where a submit stands on its route.
enum Placement<'a> {
    /// On this channel; `fresh` when it was put there just now (no earlier submit can have
    /// reached the channel's upstream).
    On { channel: &'a Channel, fresh: bool },
    /// Every usable channel is at its limit.
    Full,
    /// No usable channel is left; the message says why.
    Nowhere(String),
}

impl Pipeline {
    pub fn handlers(self: &Arc<Self>) -> Vec<Arc<dyn JobHandler>> {
        vec![
            Arc::new(SubmitTask(self.clone())),
            Arc::new(PollTask(self.clone())),
        ]
    }

    fn payload(job: &Job) -> Result<TaskJobPayload, JobError> {
        serde_json::from_value(job.payload.clone())
            .map_err(|e| JobError::Abort(format!("job payload is not a task reference: {e}")))
    }

    async fn task_of(&self, job: &Job) -> Result<Task, JobError> {
        let payload = Self::payload(job)?;
        self.store
            .load_task_for_worker(payload.task_id)
            .await?
            .ok_or_else(|| JobError::Abort(format!("task {} does not exist", payload.task_id)))
    }

    fn context(&self, cx: &JobContext, task: &Task) -> ProviderContext {
        let mut context = ProviderContext::new(self.storage.clone(), cx.cancel.clone());
        context.upstream_callback_url = self.receiver.as_ref().map(|r| r.url_for(&task.id));
        context
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
            ProviderError::Busy { retry_after } => Ok(JobOutcome::RunAgainAfter(
                self.busy_backoff(task, retry_after),
            )),
            ProviderError::Transient { message } => Err(JobError::Retry(message)),
            ProviderError::ChannelUnusable { message } => {
                let channel = task.channel.as_deref().unwrap_or("(none)");
                self.disable_channel(channel, &message).await;
                // The task was accepted upstream already; the channel's account may still
                // finish it, so polling goes on (slowly) rather than failing it.
                Ok(JobOutcome::RunAgainAfter(Duration::from_secs(60)))
            }
            ProviderError::Permanent { class, message } => self.fail(task, class, message).await,
        }
    }

    async fn disable_channel(&self, channel: &str, reason: &str) {
        self.disabled.forget();
        match self.store.disable_channel(channel, reason).await {
            Ok(true) => error!(
                channel,
                reason,
                "channel disabled: it takes no new tasks until an operator runs \
                 `kinora channels enable {channel}`"
            ),
            Ok(false) => {}
            Err(e) => warn!(channel, error = %e, "could not record the disabled channel"),
        }
    }

    fn poll_job(&self, task: &Task, after: Duration) -> NewJob {
        let at = self
            .clock
            .now_ms()
            .saturating_add(kinora_core::time::duration_ms(after));
        NewJob::for_task(JobKind::POLL_TASK, task.id).run_at(at)
    }

    /// How long a task the upstream is too busy for waits before asking again: the upstream's
    /// own figure at least, and longer the longer the task has waited (half its age, up to
    /// 60 s), drawn at random below that so tasks refused together do not return together.
    fn busy_backoff(&self, task: &Task, retry_after: Duration) -> Duration {
        let since = task.submitted_at.unwrap_or(task.created_at);
        let age_ms = u64::try_from(self.clock.now_ms().saturating_sub(since)).unwrap_or(0);
        let ceiling = Duration::from_millis(age_ms / 2).min(BUSY_BACKOFF_CAP);
        let drawn = ceiling.mul_f64(rand::rng().random_range(0.0..=1.0));
        drawn.max(retry_after)
    }

    /// Why the task must end now, if it is past its deadline.
    fn past_deadline(&self, task: &Task) -> Option<String> {
        let age_ms = self.clock.now_ms().saturating_sub(task.created_at);
        (age_ms > kinora_core::time::duration_ms(TASK_DEADLINE)).then(|| {
            format!(
                "the task did not finish within {} hours",
                TASK_DEADLINE.as_secs() / 3600
            )
        })
    }

    /// The provider's schedule for the task's next poll.
    fn next_poll_delay(&self, task: &Task, channel: &Channel) -> Duration {
        let since = task.submitted_at.unwrap_or(task.created_at);
        let age_ms = u64::try_from(self.clock.now_ms().saturating_sub(since)).unwrap_or(0);
        channel
            .provider
            .next_poll_delay(task, Duration::from_millis(age_ms))
    }

    /// The channels that may serve the task now: its route without the channels it left or
    /// that are disabled. An extension runs on the channel that made its source video.
    async fn usable_channels(
        &self,
        task: &Task,
        skip: &[String],
    ) -> Result<Result<Vec<&Channel>, String>, JobError> {
        let disabled = self.disabled.get(&*self.store).await?;
        let unusable = |name: &str| skip.iter().chain(&disabled).any(|s| s == name);
        if task.kind == TaskKind::VideoExtend {
            let source = GenerationRequest::from_value(&task.request)
                .ok()
                .and_then(|r| r.extend)
                .and_then(|e| e.source_channel);
            if let Some(source) = source {
                return Ok(match self.providers.channel(&source) {
                    Some(channel) if !unusable(&source) => Ok(vec![channel]),
                    Some(_) => Err(format!(
                        "the source video's channel `{source}` is disabled or failed"
                    )),
                    None => Err(format!(
                        "the source video's channel `{source}` is not configured any more"
                    )),
                });
            }
        }
        let routed = self.providers.candidates(&task.model, &[]);
        if routed.is_empty() {
            return Ok(Err(format!("no channel serves model `{}`", task.model)));
        }
        let usable: Vec<&Channel> = routed.into_iter().filter(|c| !unusable(&c.name)).collect();
        if usable.is_empty() {
            let mut left: Vec<&str> = skip.iter().map(String::as_str).collect();
            left.extend(disabled.iter().map(String::as_str));
            return Ok(Err(format!(
                "every channel that serves model `{}` failed or is disabled ({})",
                task.model,
                left.join(", ")
            )));
        }
        Ok(Ok(usable))
    }

    /// Keeps the task on the channel it was put on earlier, or puts it on the first channel
    /// (by priority, then weight) that has room.
    async fn place<'a>(&'a self, task: &Task, skip: &[String]) -> Result<Placement<'a>, JobError> {
        let usable = match self.usable_channels(task, skip).await? {
            Ok(usable) => usable,
            Err(why) => return Ok(Placement::Nowhere(why)),
        };
        if let Some(current) = task.channel.as_deref() {
            if let Some(channel) = usable.iter().find(|c| c.name == current) {
                return Ok(Placement::On {
                    channel,
                    fresh: false,
                });
            }
            // Its channel was disabled or left: the task moves on.
            self.store.release_channel(task.id).await?;
        }
        // A lone channel without a limit needs no record before the submit: a retry can only
        // come back to it (and looks the task up there first).
        if let [only] = usable.as_slice() {
            if only.settings.max_in_flight.is_none() {
                return Ok(Placement::On {
                    channel: only,
                    fresh: true,
                });
            }
        }
        let draws: Vec<f64> = {
            let mut rng = rand::rng();
            usable.iter().map(|_| rng.random::<f64>()).collect()
        };
        for channel in Providers::weighted_order(&usable, &draws) {
            let limit = channel.settings.max_in_flight;
            if self
                .store
                .assign_channel(task.id, &channel.name, limit)
                .await?
            {
                return Ok(Placement::On {
                    channel,
                    fresh: true,
                });
            }
        }
        Ok(Placement::Full)
    }

    /// Moves the task to its route's next channel: a new submit job that skips `channel`.
    async fn fail_over(
        &self,
        task: &Task,
        job: &Job,
        channel: &str,
        why: &str,
    ) -> Result<JobOutcome, JobError> {
        let mut payload = Self::payload(job)?;
        if !payload.skip_channels.iter().any(|c| c == channel) {
            payload.skip_channels.push(channel.to_owned());
        }
        if let Err(reason) = self.usable_channels(task, &payload.skip_channels).await? {
            let message = format!("{why}; {reason}");
            return self.fail(task, FailureClass::UpstreamError, message).await;
        }
        self.store.release_channel(task.id).await?;
        warn!(task = %task.id, channel, why, "failing over to the route's next channel");
        let body = serde_json::to_value(&payload)
            .map_err(|e| JobError::Abort(format!("submit payload: {e}")))?;
        Ok(JobOutcome::Continue(NewJob {
            task_id: Some(task.id),
            ..NewJob::new(JobKind::SUBMIT_TASK, body)
        }))
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
        if let Some(overdue) = p.past_deadline(&task) {
            return p.fail(&task, FailureClass::UpstreamError, overdue).await;
        }
        let skip = Pipeline::payload(job)?.skip_channels;
        let (channel, fresh) = match p.place(&task, &skip).await? {
            Placement::On { channel, fresh } => (channel, fresh),
            Placement::Full => {
                let jitter = rand::rng().random_range(0.5..=1.5);
                return Ok(JobOutcome::RunAgainAfter(ROUTE_FULL_WAIT.mul_f64(jitter)));
            }
            Placement::Nowhere(why) => {
                let class = if skip.is_empty() && why.starts_with("no channel") {
                    FailureClass::Internal
                } else {
                    FailureClass::UpstreamError
                };
                return p.fail(&task, class, why).await;
            }
        };
        let mut context = p.context(cx, &task);
        // Only the first run of the first submit job can be sure nothing reached the channel.
        context.first_submit = fresh && skip.is_empty() && job.attempts <= 1;
        match channel.provider.submit(&task, &context).await {
            Ok(submission) => {
                let transition = TaskTransition::Submitted {
                    channel: channel.name.clone(),
                    upstream_task_id: submission.upstream_task_id,
                };
                p.transition(&task, transition).await?;
                Ok(JobOutcome::Continue(
                    p.poll_job(&task, submission.first_poll_after),
                ))
            }
            Err(ProviderError::ChannelUnusable { message }) => {
                p.disable_channel(&channel.name, &message).await;
                p.fail_over(&task, job, &channel.name, &message).await
            }
            Err(ProviderError::Transient { message })
                if job.attempts >= channel.settings.failover_after_attempts =>
            {
                let why = format!(
                    "channel `{}` failed {} times: {message}",
                    channel.name, job.attempts
                );
                p.fail_over(&task, job, &channel.name, &why).await
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
        let Some(channel) = task.channel.as_deref().and_then(|c| p.providers.channel(c)) else {
            let channel = task.channel.as_deref().unwrap_or("(none)");
            return p
                .fail(
                    &task,
                    FailureClass::Internal,
                    format!("channel `{channel}` is not configured any more"),
                )
                .await;
        };
        let provider = &channel.provider;
        if provider.works_during_poll() && task.state == TaskState::Submitted {
            p.transition(&task, TaskTransition::Running).await?;
        }
        if let Some(overdue) = p.past_deadline(&task) {
            return p.fail(&task, FailureClass::UpstreamError, overdue).await;
        }
        let mut context = p.context(cx, &task);
        context.attempt = job.attempts.max(1);
        // Only a channel whose upstream pushes can have left something (no write otherwise).
        if provider.takes_pushes() {
            context.pushed = p.store.take_upstream_push(task.id).await?;
        }
        match provider.poll(&task, &context).await {
            Ok(Progress::Pending) => {
                Ok(JobOutcome::RunAgainAfter(p.next_poll_delay(&task, channel)))
            }
            Ok(Progress::Running) => {
                if task.state != TaskState::Running {
                    p.transition(&task, TaskTransition::Running).await?;
                }
                Ok(JobOutcome::RunAgainAfter(p.next_poll_delay(&task, channel)))
            }
            Ok(Progress::Succeeded { result }) => {
                let billed_ms = crate::billing::admission::billed_output_ms(task.kind, &result);
                p.transition(&task, TaskTransition::Succeeded { result, billed_ms })
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

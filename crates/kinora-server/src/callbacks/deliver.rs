//! Delivering one callback event (the `callback.deliver` job): in order per task, through the
//! address guard, signed when the account has a secret, every attempt recorded, retried on a
//! fixed schedule with jitter and then given up.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use kinora_core::JobKind;
use kinora_store::{
    CallbackAttempt, CallbackNext, CallbackPhase, CallbackState, Job, Store, DELIVER_CALLBACK,
};
use rand::Rng;
use serde_json::Value;
use tracing::{info, warn};

use super::secrets::signing_secrets;
use super::signing::signature_header;
use crate::worker::{JobContext, JobError, JobHandler, JobOutcome};
use crate::Services;

/// Connecting is bounded by this; the whole attempt by [`ATTEMPT_TIMEOUT`].
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this much of a receiver's answer is read.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// Each delay varies by up to this fraction either way.
const JITTER: f64 = 0.2;

pub struct DeliverCallback {
    pub services: Arc<Services>,
    pub poster: kinora_media::fetch::Poster,
}

/// How an attempt ended.
struct Outcome {
    http_status: Option<u16>,
    error: Option<String>,
}

impl DeliverCallback {
    pub fn new(services: Arc<Services>) -> Result<Self, kinora_core::Error> {
        let poster = services.stager.fetcher().poster(CONNECT_TIMEOUT)?;
        Ok(Self { services, poster })
    }

    fn store(&self) -> &dyn Store {
        &*self.services.store
    }

    /// The delay before retry number `attempt` + 1, with jitter.
    fn delay_after(&self, attempt: u32) -> Option<Duration> {
        let schedule = &self.services.config.callbacks.retry_delays_seconds;
        let base = *schedule.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
        let factor = 1.0 + rand::rng().random_range(-JITTER..=JITTER);
        Some(Duration::from_secs_f64(base as f64 * factor))
    }

    async fn attempt(&self, url: &str, headers: &[(&str, String)], body: Bytes) -> Outcome {
        // The guard runs again at every attempt: a name may resolve elsewhere by now.
        match self
            .poster
            .post(
                "callback_url",
                url,
                headers,
                body,
                ATTEMPT_TIMEOUT,
                MAX_ANSWER_BYTES,
            )
            .await
        {
            Ok(answer) if (200..300).contains(&answer.status) => Outcome {
                http_status: Some(answer.status),
                error: None,
            },
            Ok(answer) => Outcome {
                http_status: Some(answer.status),
                error: Some(format!(
                    "the receiver answered HTTP {}{}",
                    answer.status,
                    if (300..400).contains(&answer.status) {
                        " (redirects are not followed)"
                    } else {
                        ""
                    }
                )),
            },
            Err(e) => Outcome {
                http_status: None,
                error: Some(e.to_string()),
            },
        }
    }
}

fn event_id(job: &Job) -> Result<String, JobError> {
    job.payload
        .get("event_id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| JobError::Abort("callback job without an event id".to_owned()))
}

fn until(now_ms: i64, at_ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
}

#[async_trait]
impl JobHandler for DeliverCallback {
    fn kind(&self) -> JobKind {
        DELIVER_CALLBACK
    }

    async fn run(&self, job: &Job, _cx: &JobContext) -> Result<JobOutcome, JobError> {
        let id = event_id(job)?;
        let Some(event) = self.store().get_callback_event(&id).await? else {
            return Err(JobError::Abort(format!(
                "callback event {id} does not exist"
            )));
        };
        if event.state != CallbackState::Pending {
            return Ok(JobOutcome::Done);
        }
        let now = self.services.clock.now_ms();
        // Order per task: the end waits until the start was delivered or given up.
        if event.phase == CallbackPhase::Ended {
            let earlier = self.store().task_callback_events(event.task_id).await?;
            if let Some(first) = earlier
                .iter()
                .find(|e| e.phase < event.phase && e.state == CallbackState::Pending)
            {
                return Ok(JobOutcome::RunAgainAfter(
                    until(now, first.next_attempt_at).max(Duration::from_secs(1)),
                ));
            }
        }
        if now < event.next_attempt_at {
            return Ok(JobOutcome::RunAgainAfter(until(now, event.next_attempt_at)));
        }
        let secrets =
            signing_secrets(self.store(), &self.services.secrets, event.account_id, now).await?;
        let timestamp = now.div_euclid(1000);
        let mut headers = vec![
            ("content-type", "application/json; charset=utf-8".to_owned()),
            ("webhook-id", event.id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
        ];
        if !secrets.is_empty() {
            headers.push((
                "webhook-signature",
                signature_header(&secrets, &event.id, timestamp, event.body.as_bytes()),
            ));
        }
        let started = Instant::now();
        let outcome = self
            .attempt(&event.url, &headers, Bytes::from(event.body.clone()))
            .await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let attempt = event.attempts + 1;
        let next = match (&outcome.error, self.delay_after(attempt)) {
            (None, _) => CallbackNext::Delivered,
            (Some(_), Some(delay)) => CallbackNext::RetryAt(
                now.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            ),
            (Some(_), None) => CallbackNext::GiveUp,
        };
        match (&next, &outcome.error) {
            (CallbackNext::GiveUp, Some(error)) => {
                warn!(event = %event.id, task = %event.task_id, attempt, %error, "callback given up")
            }
            (_, Some(error)) => {
                info!(event = %event.id, task = %event.task_id, attempt, %error, "callback attempt failed")
            }
            _ => {}
        }
        self.store()
            .record_callback_attempt(
                CallbackAttempt {
                    event_id: event.id.clone(),
                    attempt,
                    at: now,
                    http_status: outcome.http_status,
                    latency_ms,
                    error: outcome.error,
                },
                next,
            )
            .await?;
        Ok(match next {
            CallbackNext::RetryAt(at) => JobOutcome::RunAgainAfter(until(now, at)),
            CallbackNext::Delivered | CallbackNext::GiveUp => JobOutcome::Done,
        })
    }
}

//! Row shapes shared by both backends: only types both drivers decode the same way.

use kinora_core::{AccountId, Error, FailureClass, JobKind, Submission, Task, TaskId};
use uuid::Uuid;

use crate::{
    AccessKey, Account, ApiKey, Element, ElementCreation, Job, JobState, ReferenceType, Result,
};

#[derive(sqlx::FromRow)]
pub(crate) struct AccountRow {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub metered: i64,
}

impl AccountRow {
    pub fn into_account(self) -> Result<Account> {
        Ok(Account {
            id: AccountId::from_uuid(uuid(&self.id)?),
            name: self.name,
            created_at: self.created_at,
            metered: self.metered != 0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub prefix: String,
    pub app_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl ApiKeyRow {
    pub fn into_key(self) -> Result<ApiKey> {
        Ok(ApiKey {
            id: uuid(&self.id)?,
            account_id: AccountId::from_uuid(uuid(&self.account_id)?),
            name: self.name,
            prefix: self.prefix,
            app_id: self.app_id.as_deref().map(uuid).transpose()?,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AccessKeyRow {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub access_key: String,
    pub secret_ciphertext: String,
    pub app_id: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl AccessKeyRow {
    pub fn into_key(self) -> Result<AccessKey> {
        Ok(AccessKey {
            id: uuid(&self.id)?,
            account_id: AccountId::from_uuid(uuid(&self.account_id)?),
            name: self.name,
            access_key: self.access_key,
            secret_ciphertext: self.secret_ciphertext,
            app_id: self.app_id.as_deref().map(uuid).transpose()?,
            created_at: self.created_at,
            revoked_at: self.revoked_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ElementRow {
    pub id: i64,
    pub account_id: Option<String>,
    pub name: String,
    pub description: String,
    pub frontal_image: String,
    pub refer_images: String,
    pub tags: String,
    pub reference_type: String,
    pub refer_video: Option<String>,
    pub voice_id: Option<String>,
    pub task_id: Option<String>,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
    pub created_at: i64,
}

impl ElementRow {
    pub fn into_element(self) -> Result<Element> {
        fn parse<T: serde::de::DeserializeOwned>(id: i64, text: &str, what: &str) -> Result<T> {
            serde_json::from_str(text)
                .map_err(|e| Error::internal(format!("element {id} {what}: {e}")))
        }
        Ok(Element {
            id: self.id,
            account_id: self
                .account_id
                .as_deref()
                .map(|a| uuid(a).map(AccountId::from_uuid))
                .transpose()?,
            frontal_image: parse(self.id, &self.frontal_image, "frontal_image")?,
            refer_images: parse(self.id, &self.refer_images, "refer_images")?,
            tags: parse(self.id, &self.tags, "tags")?,
            reference_type: ReferenceType::parse(&self.reference_type).ok_or_else(|| {
                Error::internal(format!(
                    "element {} reference_type `{}` is unknown",
                    self.id, self.reference_type
                ))
            })?,
            refer_video: self
                .refer_video
                .as_deref()
                .map(|v| parse(self.id, v, "refer_video"))
                .transpose()?,
            voice_id: self.voice_id,
            creation: self
                .task_id
                .as_deref()
                .map(|t| {
                    Ok::<_, Error>(ElementCreation {
                        task_id: TaskId::from_uuid(uuid(t)?),
                        external_task_id: self.external_task_id.clone(),
                        callback_url: self.callback_url.clone(),
                    })
                })
                .transpose()?,
            name: self.name,
            description: self.description,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TaskRow {
    pub id: String,
    pub account_id: String,
    pub dialect: String,
    pub kind: String,
    pub model: String,
    pub state: String,
    pub request: String,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
    pub channel: Option<String>,
    pub upstream_task_id: Option<String>,
    pub result: Option<String>,
    pub failure_class: Option<String>,
    pub failure_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub submitted_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub trace_id: Option<String>,
    pub submitted_body: Option<String>,
    pub charged: Option<i64>,
}

impl TaskRow {
    pub fn into_task(self) -> Result<Task> {
        Ok(Task {
            id: TaskId::from_uuid(uuid(&self.id)?),
            account_id: AccountId::from_uuid(uuid(&self.account_id)?),
            dialect: self.dialect.parse()?,
            kind: self.kind.parse()?,
            model: self.model,
            state: self.state.parse()?,
            request: json(&self.request)?,
            external_task_id: self.external_task_id,
            callback_url: self.callback_url,
            channel: self.channel,
            upstream_task_id: self.upstream_task_id,
            result: self.result.as_deref().map(json).transpose()?,
            failure_class: self
                .failure_class
                .as_deref()
                .map(str::parse::<FailureClass>)
                .transpose()?,
            failure_message: self.failure_message,
            created_at: self.created_at,
            updated_at: self.updated_at,
            submitted_at: self.submitted_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            submission: match (self.trace_id, self.submitted_body) {
                (Some(trace_id), Some(body)) => Some(Submission {
                    trace_id,
                    body: json(&body)?,
                }),
                _ => None,
            },
            charged: self.charged,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    pub id: i64,
    pub kind: String,
    pub payload: String,
    pub task_id: Option<String>,
    pub state: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub next_run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

impl JobRow {
    pub fn into_job(self) -> Result<Job> {
        Ok(Job {
            id: self.id,
            kind: JobKind::new(self.kind),
            payload: json(&self.payload)?,
            task_id: self
                .task_id
                .as_deref()
                .map(uuid)
                .transpose()?
                .map(TaskId::from_uuid),
            state: JobState::parse(&self.state)?,
            attempts: u32::try_from(self.attempts).unwrap_or(u32::MAX),
            max_attempts: u32::try_from(self.max_attempts).unwrap_or(u32::MAX),
            next_run_at: self.next_run_at,
            lease_owner: self.lease_owner,
            lease_until: self.lease_until,
            last_error: self.last_error,
            created_at: self.created_at,
            updated_at: self.updated_at,
            finished_at: self.finished_at,
        })
    }
}

pub(crate) fn jobs(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    let mut jobs = rows
        .into_iter()
        .map(JobRow::into_job)
        .collect::<Result<Vec<_>>>()?;
    jobs.sort_by_key(|j| (j.next_run_at, j.id));
    Ok(jobs)
}

fn uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text)
        .map_err(|e| Error::internal(format!("stored id `{text}` is not a UUID: {e}")))
}

fn json(text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| Error::internal(format!("stored JSON is invalid: {e}")))
}

pub(crate) fn to_json_text(value: &serde_json::Value) -> String {
    // Serializing a Value cannot fail: its keys are strings and it holds no foreign types.
    serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned())
}

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookSecretRow {
    pub id: String,
    pub account_id: String,
    pub secret_ciphertext: String,
    pub created_at: i64,
    pub retired_at: Option<i64>,
}

impl WebhookSecretRow {
    pub fn into_record(self) -> Result<crate::WebhookSecretRecord> {
        Ok(crate::WebhookSecretRecord {
            id: uuid(&self.id)?,
            account_id: AccountId::from_uuid(uuid(&self.account_id)?),
            secret_ciphertext: self.secret_ciphertext,
            created_at: self.created_at,
            retired_at: self.retired_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CallbackEventRow {
    pub id: String,
    pub task_id: String,
    pub account_id: String,
    pub phase: String,
    pub url: String,
    pub body: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

impl CallbackEventRow {
    pub fn into_event(self) -> Result<crate::CallbackEvent> {
        Ok(crate::CallbackEvent {
            phase: crate::CallbackPhase::parse(&self.phase).ok_or_else(|| {
                Error::internal(format!(
                    "callback {} phase `{}` is unknown",
                    self.id, self.phase
                ))
            })?,
            state: crate::CallbackState::parse(&self.state).ok_or_else(|| {
                Error::internal(format!(
                    "callback {} state `{}` is unknown",
                    self.id, self.state
                ))
            })?,
            task_id: TaskId::from_uuid(uuid(&self.task_id)?),
            account_id: AccountId::from_uuid(uuid(&self.account_id)?),
            attempts: u32::try_from(self.attempts).unwrap_or(0),
            id: self.id,
            url: self.url,
            body: self.body,
            next_attempt_at: self.next_attempt_at,
            created_at: self.created_at,
            finished_at: self.finished_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CallbackAttemptRow {
    pub event_id: String,
    pub attempt: i64,
    pub at: i64,
    pub http_status: Option<i64>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

impl CallbackAttemptRow {
    pub fn into_attempt(self) -> crate::CallbackAttempt {
        crate::CallbackAttempt {
            event_id: self.event_id,
            attempt: u32::try_from(self.attempt).unwrap_or(0),
            at: self.at,
            http_status: self.http_status.and_then(|s| u16::try_from(s).ok()),
            latency_ms: self.latency_ms,
            error: self.error,
        }
    }
}

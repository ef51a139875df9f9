//! Durable state: tasks, the job queue and accounts, behind one [`Store`] trait with a SQLite
//! and a PostgreSQL implementation. Stores persist what they are given; services decide.

mod error;
mod postgres;
mod rows;
mod shared;
mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kinora_core::time::Clock;
use kinora_core::{
    AccountId, Error, FailureClass, JobKind, NewTask, Task, TaskId, TaskKind, TaskState,
};
use serde::Serialize;
use tokio::sync::Notify;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

pub type Result<T> = std::result::Result<T, Error>;

/// Which database a store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path` or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// SQLite only: `full` syncs every commit to disk, so a power cut cannot lose an accepted
    /// task; `normal` survives process crashes only.
    pub sqlite_synchronous_full: bool,
    pub acquire_timeout: Duration,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 10,
            sqlite_synchronous_full: true,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

/// Opens the store named by the URL's scheme. Does not apply migrations.
pub async fn connect(options: &StoreOptions, clock: Arc<dyn Clock>) -> Result<Arc<dyn Store>> {
    if options.url.starts_with("postgres://") || options.url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(options, clock).await?))
    } else if options.url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(options, clock).await?))
    } else {
        Err(Error::new(
            kinora_core::ErrorCode::Config,
            "database.url must start with sqlite:// or postgres://",
        ))
    }
}

/// An account: the tenant boundary for every row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    pub created_at: i64,
    /// Whether its tasks are priced and paid for. Off for the bootstrap account until an
    /// operator turns it on or credits the account.
    pub metered: bool,
}

/// An API key as stored: everything but the secret, of which only the SHA-256 is kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: uuid::Uuid,
    pub account_id: AccountId,
    pub name: String,
    /// The first characters of the secret, enough for an operator to recognise it.
    pub prefix: String,
    /// The app whose balance and limits its tasks use; `None`: the account's general balance.
    pub app_id: Option<uuid::Uuid>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// An access-key pair of the official dialect. The secret is stored only encrypted; the
/// server decrypts it to check a JWT's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccessKey {
    pub id: uuid::Uuid,
    pub account_id: AccountId,
    pub name: String,
    /// The public half, the JWT's `iss`.
    pub access_key: String,
    #[serde(skip)]
    pub secret_ciphertext: String,
    /// The app whose balance and limits its tasks use; `None`: the account's general balance.
    pub app_id: Option<uuid::Uuid>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// An access-key pair to store, its secret already encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewAccessKey {
    pub name: String,
    pub access_key: String,
    pub secret_ciphertext: String,
    pub app_id: Option<uuid::Uuid>,
}

/// A key to store: `secret_hash` is the lowercase hex SHA-256 of the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewApiKey {
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub app_id: Option<uuid::Uuid>,
}

/// An element: a reusable subject. `account_id` is `None` for the built-in presets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Element {
    pub id: i64,
    pub account_id: Option<AccountId>,
    pub name: String,
    pub description: String,
    /// The front view.
    pub frontal_image: ElementImage,
    /// The other views, in order.
    pub refer_images: Vec<ElementImage>,
    /// Tag ids (`o_101` …).
    pub tags: Vec<String>,
    /// `image_refer` (the views above) or `video_refer` (a clip; the front view is then a
    /// still drawn from it).
    pub reference_type: ReferenceType,
    pub refer_video: Option<ElementImage>,
    pub voice_id: Option<String>,
    /// Set for elements created through the task-based element API.
    pub creation: Option<ElementCreation>,
    pub created_at: i64,
}

/// How an element was described.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ReferenceType {
    ImageRefer,
    VideoRefer,
}

impl ReferenceType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageRefer => "image_refer",
            Self::VideoRefer => "video_refer",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "image_refer" => Some(Self::ImageRefer),
            "video_refer" => Some(Self::VideoRefer),
            _ => None,
        }
    }
}

/// The task an element was created by: clients of the task-based API query the element by
/// its id or by their own external id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ElementCreation {
    pub task_id: TaskId,
    pub external_task_id: Option<String>,
    pub callback_url: Option<String>,
}

/// An element to store under a chosen id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewElement {
    pub id: i64,
    pub account_id: Option<AccountId>,
    pub name: String,
    pub description: String,
    pub frontal_image: ElementImage,
    pub refer_images: Vec<ElementImage>,
    pub tags: Vec<String>,
    pub reference_type: ReferenceType,
    pub refer_video: Option<ElementImage>,
    pub voice_id: Option<String>,
    pub creation: Option<ElementCreation>,
}

/// One image of an element (or its reference clip): the stored copy, and the URL it was
/// fetched from (absent for Base64 input and for presets), which the element endpoints echo
/// back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ElementImage {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_url: Option<String>,
}

/// A webhook signing secret of an account, sealed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WebhookSecretRecord {
    pub id: uuid::Uuid,
    pub account_id: AccountId,
    pub secret_ciphertext: String,
    pub created_at: i64,
    /// When a newer secret replaced it; it still signs for the rotation window after that.
    pub retired_at: Option<i64>,
}

/// An app of an account: its own balance (minor units), and whether the account's general
/// balance pays what the app's balance lacks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct App {
    pub id: uuid::Uuid,
    pub account_id: AccountId,
    pub name: String,
    pub balance: i64,
    pub allow_general_balance: bool,
    #[serde(flatten)]
    pub limits: KeyLimits,
    pub created_at: i64,
}

/// Limits an app sets for each of its keys; `None` takes the server's default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyLimits {
    /// Video submits a key may make per second.
    pub submits_per_second: Option<u32>,
    /// Unfinished tasks a key may have at once.
    pub max_in_flight: Option<u32>,
}

/// What a submit on a key is subject to, read before the request is parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubmitTerms {
    pub metered: bool,
    /// The key's app's limits (all `None` for a key without an app).
    pub limits: KeyLimits,
}

/// The conditions a new task is admitted under, checked in the transaction that creates it
/// (after the `external_task_id` check, in the order the dialects' specs give).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// The key that submits it (an API key's or an access key's id).
    pub key_id: Option<uuid::Uuid>,
    /// Unfinished tasks the key may have, this one included: more is `ConcurrencyLimit`.
    pub max_in_flight: Option<u32>,
    /// The price to hold; `None` for an unmetered account. Too little money is
    /// `InsufficientBalance`, and nothing is created.
    pub charge: Option<PriceHold>,
}

/// A task's price, held from a purse when the task is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceHold {
    pub purse: Purse,
    /// The rate the price was computed at; the capture prices the actual output with it.
    pub per_second: i64,
    /// What is held: the rate times the expected output length, rounded up.
    pub price: i64,
}

/// Which balance of an account: its general balance or one app's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Purse {
    General,
    App(uuid::Uuid),
}

/// One line of the append-only ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LedgerEntry {
    pub id: i64,
    pub account_id: AccountId,
    pub purse: Purse,
    pub task_id: Option<TaskId>,
    /// `credit`, `hold` or `release`.
    pub kind: String,
    /// Signed: holds are negative.
    pub amount: i64,
    pub note: String,
    pub created_at: i64,
}

/// The answer to a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Set aside: this much from the app's balance and this much from the general one.
    Held { from_app: i64, from_general: i64 },
    /// The purses that may pay hold less than the price; nothing changed.
    Insufficient { available: i64 },
}

/// An upstream channel as operators see it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelState {
    pub channel: String,
    /// Set while the channel is disabled (until an operator enables it).
    pub disabled_at: Option<i64>,
    pub reason: Option<String>,
    /// Tasks queued on it, submitted or running.
    pub in_flight: u64,
}

/// Which status change a callback reports: work started, or the task ended. Events of one
/// task are delivered in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum CallbackPhase {
    Processing,
    Ended,
}

impl CallbackPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Ended => "ended",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "processing" => Some(Self::Processing),
            "ended" => Some(Self::Ended),
            _ => None,
        }
    }
}

/// Where a callback event's delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CallbackState {
    Pending,
    Delivered,
    GivenUp,
}

impl CallbackState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::GivenUp => "given_up",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "given_up" => Some(Self::GivenUp),
            _ => None,
        }
    }
}

/// A callback to deliver: the id is its `webhook-id`, the body the exact bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewCallbackEvent {
    pub id: String,
    pub task_id: TaskId,
    pub account_id: AccountId,
    pub phase: CallbackPhase,
    pub url: String,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallbackEvent {
    pub id: String,
    pub task_id: TaskId,
    pub account_id: AccountId,
    pub phase: CallbackPhase,
    pub url: String,
    pub body: String,
    pub state: CallbackState,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// One delivery attempt, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CallbackAttempt {
    pub event_id: String,
    /// 1-based.
    pub attempt: u32,
    pub at: i64,
    pub http_status: Option<u16>,
    pub latency_ms: i64,
    pub error: Option<String>,
}

/// What follows an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallbackNext {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

/// The job kind that delivers one callback event; its payload is `{"event_id": ...}`.
pub const DELIVER_CALLBACK: JobKind = JobKind::from_static("callback.deliver");

/// Largest element id: JavaScript numbers hold integers exactly up to 2^53.
pub const MAX_ELEMENT_ID: i64 = (1 << 53) - 1;

/// Identifier of a job in the queue, increasing with enqueue order.
pub type JobId = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Waiting for `next_run_at`.
    Queued,
    /// Leased by `lease_owner` until `lease_until`.
    Running,
    Done,
    /// Stopped on purpose by its handler (the error is not worth retrying).
    Aborted,
    /// Ran out of attempts.
    Dead,
}

impl JobState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Done => "done",
            Self::Aborted => "aborted",
            Self::Dead => "dead",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "queued" => Self::Queued,
            "running" => Self::Running,
            "done" => Self::Done,
            "aborted" => Self::Aborted,
            "dead" => Self::Dead,
            other => {
                return Err(Error::internal(format!(
                    "unknown job state `{other}` in store"
                )))
            }
        })
    }
}

/// Default number of runs before a job is dead-lettered.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;

/// A job to put on the queue.
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub task_id: Option<TaskId>,
    /// Earliest run time in Unix ms; `None` means now.
    pub run_at: Option<i64>,
    pub max_attempts: u32,
}

impl NewJob {
    pub fn new(kind: JobKind, payload: serde_json::Value) -> Self {
        Self {
            kind,
            payload,
            task_id: None,
            run_at: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// A job of the task pipeline: its payload names the task.
    pub fn for_task(kind: JobKind, task_id: TaskId) -> Self {
        let payload = serde_json::json!({ "task_id": task_id });
        Self {
            task_id: Some(task_id),
            ..Self::new(kind, payload)
        }
    }

    pub fn run_at(mut self, at_ms: i64) -> Self {
        self.run_at = Some(at_ms);
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

/// A job as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Job {
    pub id: JobId,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub task_id: Option<TaskId>,
    pub state: JobState,
    /// Runs started so far, including the current one.
    pub attempts: u32,
    pub max_attempts: u32,
    pub next_run_at: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// What happened to a job handed back with [`Store::retry_job`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryOutcome {
    /// It runs again at this time (Unix ms).
    Scheduled { next_run_at: i64 },
    /// It used its last attempt and is now dead-lettered.
    DeadLettered,
}

/// Number of jobs in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub done: u64,
    pub aborted: u64,
    pub dead: u64,
}

/// A named, compare-and-set change of a task's state. Each variant may only start from the
/// states [`TaskState::allowed_sources`] lists for its target.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskTransition {
    /// queued → submitted: a provider channel accepted the task.
    Submitted {
        channel: String,
        upstream_task_id: Option<String>,
    },
    /// queued | submitted → running.
    Running,
    /// submitted | running → succeeded; outputs are already in object storage. A held charge
    /// is captured in the same transaction: `billed_ms` of output at the held rate (at most
    /// the hold), or the whole hold when `None`.
    Succeeded {
        result: serde_json::Value,
        billed_ms: Option<u64>,
    },
    /// any unfinished state → failed; a held charge is released in full in the same
    /// transaction (so is a canceled task's).
    Failed {
        class: FailureClass,
        message: String,
    },
    /// any unfinished state → canceled (an operator's action).
    Canceled { message: String },
}

impl TaskTransition {
    pub fn target(&self) -> TaskState {
        match self {
            Self::Submitted { .. } => TaskState::Submitted,
            Self::Running => TaskState::Running,
            Self::Succeeded { .. } => TaskState::Succeeded,
            Self::Failed { .. } => TaskState::Failed,
            Self::Canceled { .. } => TaskState::Canceled,
        }
    }
}

/// The durable state of kinora. Every method is one transaction.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies this backend's migrations (idempotent).
    async fn migrate(&self) -> Result<()>;

    /// Answers when the database answers.
    async fn ping(&self) -> Result<()>;

    /// Notified whenever jobs may have become ready: after every enqueue in this process, and
    /// on PostgreSQL also after enqueues by any other process (LISTEN/NOTIFY).
    fn job_wakeups(&self) -> Arc<Notify>;

    /// A new account, unmetered (operators' commands meter the accounts they create).
    async fn create_account(&self, name: &str) -> Result<Account>;
    async fn get_account(&self, id: AccountId) -> Result<Option<Account>>;
    /// Every account, oldest first.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// Turns metering on or off; false when there is no such account.
    async fn set_metering(&self, account: AccountId, metered: bool) -> Result<bool>;
    /// What a submit by a key of `app` (or of no app) on `account` is subject to; `not_found`
    /// when the account does not exist.
    async fn submit_terms(
        &self,
        account: AccountId,
        app: Option<uuid::Uuid>,
    ) -> Result<SubmitTerms>;

    /// On a database that was never bootstrapped, creates the first account and its first key
    /// in one transaction and returns them; otherwise (already bootstrapped, by this process
    /// or any other) returns `None` and changes nothing.
    async fn bootstrap(
        &self,
        account_name: &str,
        key: NewApiKey,
    ) -> Result<Option<(Account, ApiKey)>>;
    /// The account the first start created, if it has happened.
    async fn bootstrap_account(&self) -> Result<Option<Account>>;

    /// The deployment-wide secret called `name`: `candidate` is stored if none is yet, and the
    /// stored value is returned either way, so concurrent first calls agree.
    async fn server_secret(&self, name: &str, candidate: &str) -> Result<String>;

    /// Stores an element. For a custom element an id already taken fails with `InvalidInput`
    /// (the caller draws another); a preset (no account) is stored only if its id is free, and
    /// `Ok(None)` says it already was.
    async fn create_element(&self, element: NewElement) -> Result<Option<Element>>;
    /// An element the account may use: one of its own custom elements or a preset; deleted
    /// ones are gone.
    async fn get_element(&self, account: AccountId, id: i64) -> Result<Option<Element>>;
    /// Whether any element, of any account, deleted or not, has this id: a new element's
    /// images are stored under its id, so an id in use must never be staged into.
    async fn element_id_in_use(&self, id: i64) -> Result<bool>;
    /// A page (1-based) of the account's custom elements, or of the presets when `account` is
    /// `None`, newest first.
    async fn list_elements(
        &self,
        account: Option<AccountId>,
        page: u32,
        page_size: u32,
    ) -> Result<Vec<Element>>;
    /// An element the account created through the task-based API, by its creation task's id
    /// or by the external id the account gave that task.
    async fn get_element_by_task(
        &self,
        account: AccountId,
        task_id: TaskId,
    ) -> Result<Option<Element>>;
    async fn find_element_by_external_task_id(
        &self,
        account: AccountId,
        external_task_id: &str,
    ) -> Result<Option<Element>>;
    /// A page (1-based) of the account's elements created through the task-based API,
    /// newest first.
    async fn list_element_tasks(
        &self,
        account: AccountId,
        page: u32,
        page_size: u32,
    ) -> Result<Vec<Element>>;
    /// Adds a webhook secret for the account and retires the ones it had, in one transaction.
    async fn add_webhook_secret(
        &self,
        account: AccountId,
        secret_ciphertext: String,
    ) -> Result<WebhookSecretRecord>;
    /// The account's webhook secrets, newest first.
    async fn webhook_secrets(&self, account: AccountId) -> Result<Vec<WebhookSecretRecord>>;
    /// Stores a callback event and the job that delivers it, in one transaction. `false` (and
    /// nothing stored) when the task already has an event for that phase.
    async fn enqueue_callback_event(&self, event: NewCallbackEvent) -> Result<bool>;
    /// An event by id (a worker-side read).
    async fn get_callback_event(&self, id: &str) -> Result<Option<CallbackEvent>>;
    /// The task's events, in delivery order (a worker-side read).
    async fn task_callback_events(&self, task: TaskId) -> Result<Vec<CallbackEvent>>;
    /// Records an attempt and what follows it.
    async fn record_callback_attempt(
        &self,
        attempt: CallbackAttempt,
        next: CallbackNext,
    ) -> Result<()>;
    /// The account's events for a task with their attempts, in delivery order.
    async fn list_callback_attempts(
        &self,
        account: AccountId,
        task: TaskId,
    ) -> Result<Vec<(CallbackEvent, Vec<CallbackAttempt>)>>;
    /// Tasks with a callback URL whose current phase (running: processing; ended: ended) has
    /// no event yet, last changed before `changed_before` (a crash between a transition and
    /// its event leaves one).
    async fn tasks_missing_callbacks(&self, changed_before: i64, limit: u32) -> Result<Vec<Task>>;
    /// Deletes one of the account's custom elements; `false` if it has no such element.
    async fn delete_element(&self, account: AccountId, id: i64) -> Result<bool>;

    /// Stores a key of `account`. A secret hash already stored is an internal error.
    async fn create_api_key(&self, account: AccountId, key: NewApiKey) -> Result<ApiKey>;
    /// The unrevoked key whose secret hashes to `secret_hash`.
    async fn find_api_key(&self, secret_hash: &str) -> Result<Option<ApiKey>>;
    /// The account's keys, revoked ones included, oldest first.
    async fn list_api_keys(&self, account: AccountId) -> Result<Vec<ApiKey>>;
    /// Revokes one of the account's keys; `false` when the account has no such unrevoked key.
    async fn revoke_api_key(&self, account: AccountId, id: uuid::Uuid) -> Result<bool>;

    /// Stores an access-key pair of `account`.
    async fn create_access_key(&self, account: AccountId, key: NewAccessKey) -> Result<AccessKey>;
    /// The pair whose public half is `access_key`, revoked or not (a revoked key is refused
    /// with its own code).
    async fn find_access_key(&self, access_key: &str) -> Result<Option<AccessKey>>;
    /// The account's access keys, revoked ones included, oldest first.
    async fn list_access_keys(&self, account: AccountId) -> Result<Vec<AccessKey>>;
    /// Revokes one of the account's access keys; `false` when it has no such unrevoked key.
    async fn revoke_access_key(&self, account: AccountId, id: uuid::Uuid) -> Result<bool>;

    /// Inserts the task (state queued) and its first job, of kind `first_job` and naming the
    /// task, in one transaction. A reused `external_task_id` within the account fails with
    /// `DuplicateExternalTaskId`.
    async fn create_task(&self, task: NewTask, first_job: JobKind) -> Result<(Task, JobId)> {
        self.admit_task(task, first_job, Admission::default()).await
    }

    /// `create_task` under `admission`, in one transaction: the external id check, then the
    /// key's in-flight limit (`ConcurrencyLimit`), then the hold (`InsufficientBalance`).
    /// Concurrent admissions on one account are serialised, so neither limit can be overrun.
    async fn admit_task(
        &self,
        task: NewTask,
        first_job: JobKind,
        admission: Admission,
    ) -> Result<(Task, JobId)>;

    /// Reads a task within its account; another account's task is `None`.
    async fn get_task(&self, account: AccountId, id: TaskId) -> Result<Option<Task>>;
    /// A page (1-based) of the account's tasks, newest first, of one kind or of every kind.
    async fn list_tasks(
        &self,
        account: AccountId,
        kind: Option<TaskKind>,
        page: u32,
        page_size: u32,
    ) -> Result<Vec<Task>>;
    /// The current states of the given tasks, whoever owns them (a worker-side read for
    /// waking requests that wait on them); unknown ids are left out.
    async fn task_states(&self, ids: &[TaskId]) -> Result<Vec<(TaskId, TaskState)>>;
    async fn find_task_by_external_id(
        &self,
        account: AccountId,
        external_task_id: &str,
    ) -> Result<Option<Task>>;

    /// Reads a task without an account scope. For workers only, which got the id from a job.
    async fn load_task_for_worker(&self, id: TaskId) -> Result<Option<Task>>;

    /// Applies a named transition if the task is in one of its allowed source states;
    /// otherwise `StaleTransition` (or `NotFound`), leaving the row untouched.
    async fn transition_task(&self, id: TaskId, transition: TaskTransition) -> Result<Task>;

    /// Ids of tasks not yet in a terminal state, oldest first.
    async fn unfinished_task_ids(&self, limit: u32) -> Result<Vec<TaskId>>;

    /// Unfinished tasks that no queued or running job will move any more (their job was
    /// dead-lettered or aborted), oldest first.
    async fn orphaned_task_ids(&self, limit: u32) -> Result<Vec<TaskId>>;

    /// Adds an app to the account, with a zero balance.
    async fn create_app(
        &self,
        account: AccountId,
        name: &str,
        allow_general_balance: bool,
    ) -> Result<App>;

    /// The account's apps, oldest first.
    async fn list_apps(&self, account: AccountId) -> Result<Vec<App>>;

    /// Sets an app's per-key limits; false when the account has no such app.
    async fn set_app_limits(
        &self,
        account: AccountId,
        app: uuid::Uuid,
        limits: KeyLimits,
    ) -> Result<bool>;

    /// The account's general balance (0 when nothing was ever credited).
    async fn general_balance(&self, account: AccountId) -> Result<i64>;

    /// Adds `amount` (negative: takes it away) to a purse with a ledger entry; returns the new
    /// balance. A balance never goes below zero (`invalid` otherwise); another account's app
    /// is `not_found`. A positive credit turns metering on for the account.
    async fn credit(
        &self,
        account: AccountId,
        purse: Purse,
        amount: i64,
        note: &str,
    ) -> Result<i64>;

    /// Sets `price` aside for `task`: from the app's balance first, the rest from the general
    /// balance when the app allows it (`Purse::General` takes it all from there). All or
    /// nothing, safe against concurrent holds on the same purses, once per task (a second
    /// hold for the task answers what the first held).
    async fn hold_charge(
        &self,
        task: TaskId,
        account: AccountId,
        purse: Purse,
        price: i64,
    ) -> Result<HoldOutcome>;

    /// Ends a held charge at `actual` (at most what was held): the rest goes back, to the
    /// general balance first (it paid last). False when the charge is not held any more.
    async fn capture_charge(&self, task: TaskId, actual: i64) -> Result<bool>;

    /// Gives a held charge back in full. False when the charge is not held any more.
    async fn release_charge(&self, task: TaskId) -> Result<bool>;

    /// A purse's ledger entries, oldest first.
    async fn ledger(&self, account: AccountId, purse: Purse) -> Result<Vec<LedgerEntry>>;

    /// Puts a queued task on `channel` if the channel has fewer than `max_in_flight`
    /// unfinished tasks (no limit when `None`); false when it is full or the task is no
    /// longer queued. Concurrent assignments to one channel are serialised, so the limit holds.
    async fn assign_channel(
        &self,
        task: TaskId,
        channel: &str,
        max_in_flight: Option<u32>,
    ) -> Result<bool>;

    /// Takes a still-queued task off the channel it was assigned (failing over).
    async fn release_channel(&self, task: TaskId) -> Result<()>;

    /// Disables a channel with the reason; false when it was disabled already.
    async fn disable_channel(&self, channel: &str, reason: &str) -> Result<bool>;

    /// Enables a disabled channel; false when it was not disabled.
    async fn enable_channel(&self, channel: &str) -> Result<bool>;

    /// Names of the channels that are disabled (a cheap read, for every submit).
    async fn disabled_channels(&self) -> Result<Vec<String>>;

    /// Every channel that has a state or tasks in flight, by name.
    async fn channel_states(&self) -> Result<Vec<ChannelState>>;

    /// Keeps the task object an upstream pushed for `task` and makes the task's waiting poll
    /// due, ordered by the task's creation time (ahead of work queued for newer tasks).
    async fn record_upstream_push(&self, task: TaskId, body: &serde_json::Value) -> Result<()>;

    /// The task object an upstream last pushed for `task`, removed as it is read: a push is
    /// news for one poll, after which polling (or the next push) speaks for the upstream.
    async fn take_upstream_push(&self, task: TaskId) -> Result<Option<serde_json::Value>>;

    async fn enqueue_job(&self, job: NewJob) -> Result<JobId>;

    /// Leases up to `limit` runnable jobs of the given kinds to `owner` until now + `lease`.
    /// Runnable: queued with `next_run_at` due, or running with an expired lease. A job whose
    /// lease expired on its last attempt is dead-lettered instead.
    async fn claim_jobs(
        &self,
        owner: &str,
        kinds: &[JobKind],
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<Job>>;

    /// Extends the lease; `LeaseLost` when `owner` no longer holds it.
    async fn heartbeat_job(&self, id: JobId, owner: &str, lease: Duration) -> Result<()>;

    /// Marks the job done; `LeaseLost` when `owner` no longer holds it.
    async fn complete_job(&self, id: JobId, owner: &str) -> Result<()>;

    /// Marks the job done and enqueues its follow-up in one transaction, so a crash between
    /// the two can neither lose the next step nor duplicate it.
    async fn complete_job_and_enqueue(&self, id: JobId, owner: &str, next: NewJob)
        -> Result<JobId>;

    /// Puts the job back for another run after `delay`, or dead-letters it when it has used
    /// its attempts. `LeaseLost` when `owner` no longer holds it.
    async fn retry_job(
        &self,
        id: JobId,
        owner: &str,
        delay: Duration,
        error: &str,
    ) -> Result<RetryOutcome>;

    /// Runs the job again after `delay` as a new step (a poll that is not done yet), resetting
    /// its attempts. `LeaseLost` when `owner` no longer holds it.
    async fn reschedule_job(&self, id: JobId, owner: &str, delay: Duration) -> Result<()>;

    /// Stops the job for good with an error that retrying would not fix.
    async fn abort_job(&self, id: JobId, owner: &str, error: &str) -> Result<()>;

    /// Hands the lease back without counting the run (graceful shutdown).
    async fn release_job(&self, id: JobId, owner: &str) -> Result<()>;

    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;
    async fn jobs_for_task(&self, task_id: TaskId) -> Result<Vec<Job>>;
    async fn job_counts(&self) -> Result<JobCounts>;
}

#[cfg(feature = "testing")]
pub mod testing;

//! The statements both backends run unchanged. sqlx's SQLite driver accepts PostgreSQL's `$N`
//! placeholders, so one text serves both; only claiming and wake-ups differ per backend.

macro_rules! task_columns {
    () => {
        "id, account_id, dialect, kind, model, state, request, external_task_id, callback_url, \
         channel, upstream_task_id, result, failure_class, failure_message, created_at, \
         updated_at, submitted_at, started_at, finished_at, trace_id, submitted_body, charged"
    };
}

macro_rules! job_columns {
    () => {
        "id, kind, payload, task_id, state, attempts, max_attempts, next_run_at, lease_owner, \
         lease_until, last_error, created_at, updated_at, finished_at"
    };
}

macro_rules! api_key_columns {
    () => {
        "id, account_id, name, prefix, app_id, created_at, revoked_at"
    };
}

macro_rules! access_key_columns {
    () => {
        "id, account_id, name, access_key, secret_ciphertext, app_id, created_at, revoked_at"
    };
}

macro_rules! element_columns {
    () => {
        "id, account_id, name, description, frontal_image, refer_images, tags, reference_type, \
         refer_video, voice_id, task_id, external_task_id, callback_url, created_at"
    };
}

macro_rules! callback_event_columns {
    () => {
        "id, task_id, account_id, phase, url, body, state, attempts, next_attempt_at, \
         created_at, finished_at"
    };
}

pub(crate) use {
    access_key_columns, api_key_columns, callback_event_columns, element_columns, job_columns,
    task_columns,
};

/// One change of a purse's balance and the ledger entry that records it.
pub(crate) struct Movement<'a> {
    pub purse: crate::Purse,
    pub task: Option<kinora_core::TaskId>,
    pub kind: &'a str,
    pub amount: i64,
    pub note: &'a str,
}

/// How a held charge ends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Settlement {
    /// Keep this amount (at most the hold).
    Capture(i64),
    /// Keep the price of this much output at the held rate (at most the hold); the whole hold
    /// when `None`, or when the hold was a fixed price (no rate).
    CaptureOutput(Option<u64>),
    /// Give everything back.
    Release,
}

impl Settlement {
    /// What is kept of `held`, which was priced at `per_second`.
    pub fn captured(self, held: i64, per_second: i64) -> i64 {
        match self {
            Self::Capture(actual) => actual.clamp(0, held),
            Self::CaptureOutput(Some(ms)) if per_second > 0 => {
                kinora_core::billing::price_for_duration(per_second, ms)
                    .map_or(held, |p| p.clamp(0, held))
            }
            Self::CaptureOutput(_) => held,
            Self::Release => 0,
        }
    }
}

/// Marks a leased job done; binds (now, id, owner).
pub(crate) const COMPLETE_JOB: &str = "UPDATE jobs SET state = 'done', lease_owner = NULL, \
     lease_until = NULL, finished_at = $1, updated_at = $1 \
     WHERE id = $2 AND state = 'running' AND lease_owner = $3";

pub(crate) const INSERT_JOB: &str = "INSERT INTO jobs \
     (kind, payload, task_id, state, attempts, max_attempts, next_run_at, created_at, updated_at) \
     VALUES ($1, $2, $3, 'queued', 0, $4, $5, $6, $6) RETURNING id";

/// Jobs whose lease ran out on their last allowed attempt would otherwise be claimed forever.
pub(crate) const DEAD_LETTER_EXPIRED: &str = "UPDATE jobs SET state = 'dead', \
     last_error = 'lease expired on its last attempt', lease_owner = NULL, lease_until = NULL, \
     finished_at = $1, updated_at = $1 \
     WHERE state = 'running' AND lease_until <= $1 AND attempts >= max_attempts";

/// Generates the `Store` impl for a backend: every method but the backend-specific ones, which
/// the caller passes in `specific`. The backend type provides `read`, `write`, `clock` and
/// `wakeups` fields, an `announce_jobs(&mut tx)` method, and `claim_jobs` in `specific`.
macro_rules! impl_store {
    ($store:ty, $db:ty, backend = $backend:expr, migrator = $migrator:expr, specific = { $($specific:tt)* }) => {
        impl $store {
            async fn insert_job<'e, E>(exec: E, job: &$crate::NewJob, now: i64) -> $crate::Result<$crate::JobId>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                sqlx::query_scalar::<_, i64>($crate::shared::INSERT_JOB)
                    .bind(job.kind.as_str())
                    .bind($crate::rows::to_json_text(&job.payload))
                    .bind(job.task_id.map(|id| id.to_string()))
                    .bind(i64::from(job.max_attempts))
                    .bind(job.run_at.unwrap_or(now))
                    .bind(now)
                    .fetch_one(exec)
                    .await
                    .map_err(|e| $crate::error::db_error("enqueue job", e))
            }

            async fn insert_api_key<'e, E>(exec: E, account: kinora_core::AccountId, key: &$crate::NewApiKey, now: i64) -> $crate::Result<$crate::ApiKey>
            where
                E: sqlx::Executor<'e, Database = $db>,
            {
                let id = uuid::Uuid::now_v7();
                let inserted = sqlx::query("INSERT INTO api_keys (id, account_id, name, prefix, secret_hash, app_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .bind(&key.name)
                    .bind(&key.prefix)
                    .bind(&key.secret_hash)
                    .bind(key.app_id.map(|a| a.to_string()))
                    .bind(now)
                    .execute(exec)
                    .await;
                match inserted {
                    Ok(_) => Ok($crate::ApiKey { id, account_id: account, name: key.name.clone(), prefix: key.prefix.clone(), app_id: key.app_id, created_at: now, revoked_at: None }),
                    Err(e) if $crate::error::is_unique_violation(&e) => Err(kinora_core::Error::internal("an API key with this secret already exists")),
                    Err(e) => Err($crate::error::db_error("create API key", e)),
                }
            }

            /// Moves a purse's balance by `amount` and appends the matching ledger entry, inside
            /// the caller's transaction. The purse's row must exist.
            async fn move_purse(
                tx: &mut sqlx::Transaction<'_, $db>,
                account: kinora_core::AccountId,
                movement: $crate::shared::Movement<'_>,
                now: i64,
            ) -> $crate::Result<()> {
                let $crate::shared::Movement { purse, task, kind, amount, note } = movement;
                let app = match purse {
                    $crate::Purse::General => {
                        sqlx::query("UPDATE account_balances SET general_balance = general_balance + $1, updated_at = $2 WHERE account_id = $3")
                            .bind(amount)
                            .bind(now)
                            .bind(account.to_string())
                            .execute(&mut **tx)
                            .await
                            .map_err(|e| $crate::error::db_error("move balance", e))?;
                        None
                    }
                    $crate::Purse::App(id) => {
                        sqlx::query("UPDATE apps SET balance = balance + $1 WHERE id = $2 AND account_id = $3")
                            .bind(amount)
                            .bind(id.to_string())
                            .bind(account.to_string())
                            .execute(&mut **tx)
                            .await
                            .map_err(|e| $crate::error::db_error("move balance", e))?;
                        Some(id.to_string())
                    }
                };
                sqlx::query("INSERT INTO ledger_entries (account_id, app_id, task_id, kind, amount, note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(account.to_string())
                    .bind(app)
                    .bind(task.map(|t| t.to_string()))
                    .bind(kind)
                    .bind(amount)
                    .bind(note)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| $crate::error::db_error("append ledger entry", e))?;
                Ok(())
            }

            /// Locks the account's general balance (creating it at zero) and, for an app, the
            /// app's row, always in this order; returns (app balance, app allows general,
            /// general balance). An app of another account is `not_found`.
            async fn lock_purses(
                tx: &mut sqlx::Transaction<'_, $db>,
                account: kinora_core::AccountId,
                purse: $crate::Purse,
                now: i64,
            ) -> $crate::Result<(i64, bool, i64)> {
                let general: i64 = sqlx::query_scalar("INSERT INTO account_balances (account_id, general_balance, updated_at) VALUES ($1, 0, $2) \
                     ON CONFLICT (account_id) DO UPDATE SET updated_at = $2 RETURNING general_balance")
                    .bind(account.to_string())
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await
                    .map_err(|e| $crate::error::db_error("lock general balance", e))?;
                match purse {
                    $crate::Purse::General => Ok((0, true, general)),
                    $crate::Purse::App(id) => {
                        let row: Option<(i64, i64)> = sqlx::query_as("UPDATE apps SET balance = balance WHERE id = $1 AND account_id = $2 RETURNING balance, allow_general_balance")
                            .bind(id.to_string())
                            .bind(account.to_string())
                            .fetch_optional(&mut **tx)
                            .await
                            .map_err(|e| $crate::error::db_error("lock app balance", e))?;
                        let (balance, allow) = row.ok_or_else(|| kinora_core::Error::not_found(format!("app {id} does not exist")))?;
                        Ok((balance, allow != 0, general))
                    }
                }
            }

            /// Ends a task's charge inside the caller's transaction: what `settlement` keeps is
            /// captured and the rest goes back (to the general balance first: it paid last).
            /// Answers the charge's final captured amount, also when an earlier settlement
            /// already ended it, and `None` when the task has no charge.
            async fn settle_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                task: kinora_core::TaskId,
                settlement: $crate::shared::Settlement,
                now: i64,
            ) -> $crate::Result<Option<i64>> {
                let row: Option<(String, Option<String>, i64, i64, String, Option<i64>, i64)> = sqlx::query_as("SELECT account_id, app_id, held_app, held_general, state, captured, per_second FROM task_charges WHERE task_id = $1")
                    .bind(task.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(|e| $crate::error::db_error("read charge", e))?;
                let Some((account, app, held_app, held_general, state, captured, per_second)) = row else {
                    return Ok(None);
                };
                if state != "held" {
                    return Ok(Some(captured.unwrap_or(0)));
                }
                let account: kinora_core::AccountId = account.parse().map_err(|_| kinora_core::Error::internal(format!("charge of {task}: bad account id")))?;
                let held = held_app + held_general;
                let captured = settlement.captured(held, per_second);
                let (state, note) = match settlement {
                    $crate::shared::Settlement::Release => ("released", "the task did not succeed"),
                    _ => ("captured", "the task's unused price"),
                };
                let settled = sqlx::query("UPDATE task_charges SET state = $1, captured = $2, updated_at = $3 WHERE task_id = $4 AND state = 'held'")
                    .bind(state)
                    .bind(captured)
                    .bind(now)
                    .bind(task.to_string())
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| $crate::error::db_error("settle charge", e))?;
                if settled.rows_affected() == 0 {
                    return Err(kinora_core::Error::internal(format!("the charge of {task} changed while it was being settled")));
                }
                let refund = held - captured;
                let to_general = refund.min(held_general);
                let to_app = refund - to_general;
                let app_purse = match app {
                    Some(id) => Some($crate::Purse::App(uuid::Uuid::parse_str(&id).map_err(|e| kinora_core::Error::internal(format!("charge of {task}: {e}")))?)),
                    None => None,
                };
                if to_general > 0 {
                    Self::move_purse(tx, account, $crate::shared::Movement { purse: $crate::Purse::General, task: Some(task), kind: "release", amount: to_general, note }, now).await?;
                }
                if let (true, Some(purse)) = (to_app > 0, app_purse) {
                    Self::move_purse(tx, account, $crate::shared::Movement { purse, task: Some(task), kind: "release", amount: to_app, note }, now).await?;
                }
                Ok(Some(captured))
            }

            /// Ends a held charge in its own transaction; false when it was not held.
            async fn settle_charge(&self, task: kinora_core::TaskId, settlement: $crate::shared::Settlement) -> $crate::Result<bool> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let state: Option<String> = sqlx::query_scalar("SELECT state FROM task_charges WHERE task_id = $1")
                    .bind(task.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("read charge", e))?;
                if state.as_deref() != Some("held") {
                    return Ok(false);
                }
                Self::settle_in(&mut tx, task, settlement, now).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit charge", e))?;
                Ok(true)
            }

            /// Holds `price` for `task` inside the caller's transaction (see `hold_charge`).
            async fn hold_in(
                tx: &mut sqlx::Transaction<'_, $db>,
                task: kinora_core::TaskId,
                account: kinora_core::AccountId,
                hold: $crate::PriceHold,
                now: i64,
            ) -> $crate::Result<$crate::HoldOutcome> {
                let $crate::PriceHold { purse, per_second, price } = hold;
                if price < 0 || per_second < 0 {
                    return Err(kinora_core::Error::invalid("a price cannot be negative"));
                }
                let (app_balance, allow_general, general) = Self::lock_purses(tx, account, purse, now).await?;
                // Once per task: a repeated hold answers what the first one held.
                let earlier: Option<(i64, i64)> = sqlx::query_as("SELECT held_app, held_general FROM task_charges WHERE task_id = $1")
                    .bind(task.to_string())
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(|e| $crate::error::db_error("read charge", e))?;
                if let Some((from_app, from_general)) = earlier {
                    return Ok($crate::HoldOutcome::Held { from_app, from_general });
                }
                let from_app = match purse {
                    $crate::Purse::General => 0,
                    $crate::Purse::App(_) => app_balance.min(price).max(0),
                };
                let from_general = price - from_app;
                let general_usable = if allow_general { general } else { 0 };
                if from_general > general_usable {
                    return Ok($crate::HoldOutcome::Insufficient { available: from_app + general_usable });
                }
                if from_app > 0 {
                    Self::move_purse(tx, account, $crate::shared::Movement { purse, task: Some(task), kind: "hold", amount: -from_app, note: "the task's price, held" }, now).await?;
                }
                if from_general > 0 {
                    Self::move_purse(tx, account, $crate::shared::Movement { purse: $crate::Purse::General, task: Some(task), kind: "hold", amount: -from_general, note: "the task's price, held" }, now).await?;
                }
                let app = match purse {
                    $crate::Purse::General => None,
                    $crate::Purse::App(id) => Some(id.to_string()),
                };
                sqlx::query("INSERT INTO task_charges (task_id, account_id, app_id, held_app, held_general, state, per_second, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'held', $6, $7, $7)")
                    .bind(task.to_string())
                    .bind(account.to_string())
                    .bind(app)
                    .bind(from_app)
                    .bind(from_general)
                    .bind(per_second)
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(|e| $crate::error::db_error("record charge", e))?;
                Ok($crate::HoldOutcome::Held { from_app, from_general })
            }

            /// `not_found` unless `app` (when given) is one of the account's apps.
            async fn check_app(&self, account: kinora_core::AccountId, app: Option<uuid::Uuid>) -> $crate::Result<()> {
                let Some(app) = app else { return Ok(()) };
                let found: Option<String> = sqlx::query_scalar("SELECT id FROM apps WHERE id = $1 AND account_id = $2")
                    .bind(app.to_string())
                    .bind(account.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("find app", e))?;
                match found {
                    Some(_) => Ok(()),
                    None => Err(kinora_core::Error::not_found(format!("app {app} does not exist in account {account}"))),
                }
            }

            /// Runs a lease-guarded update; no row means the caller lost the lease.
            async fn update_leased<'q>(&self, query: sqlx::query::Query<'q, $db, <$db as sqlx::Database>::Arguments<'q>>, id: $crate::JobId, owner: &str, what: &str) -> $crate::Result<()> {
                let done = query
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error(what, e))?;
                if done.rows_affected() == 0 {
                    return Err($crate::error::lease_lost(id, owner));
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $store {
            fn backend(&self) -> $crate::Backend {
                $backend
            }

            async fn migrate(&self) -> $crate::Result<()> {
                $migrator
                    .run(&self.write)
                    .await
                    .map_err(|e| kinora_core::Error::new(kinora_core::ErrorCode::Database, format!("migrations failed: {e}")))
            }

            async fn ping(&self) -> $crate::Result<()> {
                sqlx::query("SELECT 1")
                    .execute(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("ping", e))?;
                Ok(())
            }

            fn job_wakeups(&self) -> std::sync::Arc<tokio::sync::Notify> {
                self.wakeups.clone()
            }

            async fn create_account(&self, name: &str) -> $crate::Result<$crate::Account> {
                let now = self.clock.now_ms();
                let id = kinora_core::AccountId::new();
                sqlx::query("INSERT INTO accounts (id, name, created_at, metered) VALUES ($1, $2, $3, 0)")
                    .bind(id.to_string())
                    .bind(name)
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("create account", e))?;
                Ok($crate::Account { id, name: name.to_owned(), created_at: now, metered: false })
            }

            async fn get_account(&self, id: kinora_core::AccountId) -> $crate::Result<Option<$crate::Account>> {
                sqlx::query_as::<_, $crate::rows::AccountRow>("SELECT id, name, created_at, metered FROM accounts WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("get account", e))?
                    .map($crate::rows::AccountRow::into_account)
                    .transpose()
            }

            async fn list_accounts(&self) -> $crate::Result<Vec<$crate::Account>> {
                sqlx::query_as::<_, $crate::rows::AccountRow>("SELECT id, name, created_at, metered FROM accounts ORDER BY created_at, id")
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list accounts", e))?
                    .into_iter()
                    .map($crate::rows::AccountRow::into_account)
                    .collect()
            }

            async fn set_metering(&self, account: kinora_core::AccountId, metered: bool) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE accounts SET metered = $1 WHERE id = $2")
                    .bind(i64::from(metered))
                    .bind(account.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("set metering", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn submit_terms(&self, account: kinora_core::AccountId, app: Option<uuid::Uuid>) -> $crate::Result<$crate::SubmitTerms> {
                let row: Option<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
                    "SELECT a.metered, p.submits_per_second, p.max_in_flight FROM accounts a \
                     LEFT JOIN apps p ON p.id = $2 AND p.account_id = a.id WHERE a.id = $1",
                )
                .bind(account.to_string())
                .bind(app.map(|a| a.to_string()))
                .fetch_optional(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("read submit terms", e))?;
                let (metered, submits_per_second, max_in_flight) = row.ok_or_else(|| kinora_core::Error::not_found(format!("account {account} does not exist")))?;
                Ok($crate::SubmitTerms {
                    metered: metered != 0,
                    limits: $crate::KeyLimits {
                        submits_per_second: submits_per_second.and_then(|n| u32::try_from(n).ok()),
                        max_in_flight: max_in_flight.and_then(|n| u32::try_from(n).ok()),
                    },
                })
            }

            async fn bootstrap(&self, account_name: &str, key: $crate::NewApiKey) -> $crate::Result<Option<($crate::Account, $crate::ApiKey)>> {
                let now = self.clock.now_ms();
                let account = $crate::Account { id: kinora_core::AccountId::new(), name: account_name.to_owned(), created_at: now, metered: false };
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin bootstrap", e))?;
                sqlx::query("INSERT INTO accounts (id, name, created_at) VALUES ($1, $2, $3)")
                    .bind(account.id.to_string())
                    .bind(&account.name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("create bootstrap account", e))?;
                // The marker row decides: whoever inserts it bootstraps; everyone else rolls back.
                let marked = sqlx::query("INSERT INTO bootstrap (singleton, account_id, created_at) VALUES (1, $1, $2) ON CONFLICT (singleton) DO NOTHING")
                    .bind(account.id.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("mark bootstrap", e))?;
                if marked.rows_affected() == 0 {
                    tx.rollback().await.map_err(|e| $crate::error::db_error("roll back bootstrap", e))?;
                    return Ok(None);
                }
                let stored = Self::insert_api_key(&mut *tx, account.id, &key, now).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit bootstrap", e))?;
                Ok(Some((account, stored)))
            }

            async fn bootstrap_account(&self) -> $crate::Result<Option<$crate::Account>> {
                sqlx::query_as::<_, $crate::rows::AccountRow>("SELECT a.id, a.name, a.created_at, a.metered FROM accounts a JOIN bootstrap b ON b.account_id = a.id")
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("get bootstrap account", e))?
                    .map($crate::rows::AccountRow::into_account)
                    .transpose()
            }

            async fn create_element(&self, element: $crate::NewElement) -> $crate::Result<Option<$crate::Element>> {
                if !(1..=$crate::MAX_ELEMENT_ID).contains(&element.id) {
                    return Err(kinora_core::Error::invalid(format!("element id {} is outside 1..2^53", element.id)));
                }
                let now = self.clock.now_ms();
                fn json<T: serde::Serialize>(value: &T) -> String {
                    // Plain structs, strings and lists of them always serialise.
                    serde_json::to_string(value).unwrap_or_default()
                }
                let creation = element.creation.as_ref();
                let inserted = sqlx::query("INSERT INTO elements (id, account_id, name, description, frontal_image, refer_images, tags, reference_type, refer_video, voice_id, task_id, external_task_id, callback_url, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING")
                    .bind(element.id)
                    .bind(element.account_id.map(|a| a.to_string()))
                    .bind(&element.name)
                    .bind(&element.description)
                    .bind(json(&element.frontal_image))
                    .bind(json(&element.refer_images))
                    .bind(json(&element.tags))
                    .bind(element.reference_type.as_str())
                    .bind(element.refer_video.as_ref().map(json))
                    .bind(element.voice_id.as_deref())
                    .bind(creation.map(|c| c.task_id.to_string()))
                    .bind(creation.and_then(|c| c.external_task_id.as_deref()))
                    .bind(creation.and_then(|c| c.callback_url.as_deref()))
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(|e| {
                        // The id conflict is handled below; the other unique key is the
                        // account's external task id.
                        if $crate::error::is_unique_violation(&e) {
                            kinora_core::Error::new(
                                kinora_core::ErrorCode::DuplicateExternalTaskId,
                                format!(
                                    "external_task_id `{}` is already used by another element task of this account",
                                    creation.and_then(|c| c.external_task_id.as_deref()).unwrap_or_default()
                                ),
                            )
                        } else {
                            $crate::error::db_error("create element", e)
                        }
                    })?;
                if inserted.rows_affected() == 0 {
                    if element.account_id.is_none() {
                        return Ok(None);
                    }
                    return Err(kinora_core::Error::invalid(format!("element id {} is taken", element.id)));
                }
                Ok(Some($crate::Element {
                    id: element.id,
                    account_id: element.account_id,
                    name: element.name,
                    description: element.description,
                    frontal_image: element.frontal_image,
                    refer_images: element.refer_images,
                    tags: element.tags,
                    reference_type: element.reference_type,
                    refer_video: element.refer_video,
                    voice_id: element.voice_id,
                    creation: element.creation,
                    created_at: now,
                }))
            }

            async fn task_states(&self, ids: &[kinora_core::TaskId]) -> $crate::Result<Vec<(kinora_core::TaskId, kinora_core::TaskState)>> {
                // Bounded statements: at most this many ids per query.
                const CHUNK: usize = 500;
                let mut states = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    let placeholders: Vec<String> = (1..=chunk.len()).map(|n| format!("${n}")).collect();
                    let sql = format!("SELECT id, state FROM tasks WHERE id IN ({})", placeholders.join(", "));
                    let mut query = sqlx::query_as::<_, (String, String)>(&sql);
                    for id in chunk {
                        query = query.bind(id.to_string());
                    }
                    let rows = query
                        .fetch_all(&self.read)
                        .await
                        .map_err(|e| $crate::error::db_error("read task states", e))?;
                    for (id, state) in rows {
                        let id = uuid::Uuid::parse_str(&id)
                            .map_err(|e| kinora_core::Error::internal(format!("task id {id}: {e}")))?;
                        states.push((kinora_core::TaskId::from_uuid(id), state.parse()?));
                    }
                }
                Ok(states)
            }

            async fn add_webhook_secret(&self, account: kinora_core::AccountId, secret_ciphertext: String) -> $crate::Result<$crate::WebhookSecretRecord> {
                let id = uuid::Uuid::now_v7();
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                sqlx::query("UPDATE webhook_secrets SET retired_at = $1 WHERE account_id = $2 AND retired_at IS NULL")
                    .bind(now)
                    .bind(account.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("retire webhook secrets", e))?;
                sqlx::query("INSERT INTO webhook_secrets (id, account_id, secret_ciphertext, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .bind(&secret_ciphertext)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("add webhook secret", e))?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit webhook secret", e))?;
                Ok($crate::WebhookSecretRecord { id, account_id: account, secret_ciphertext, created_at: now, retired_at: None })
            }

            async fn webhook_secrets(&self, account: kinora_core::AccountId) -> $crate::Result<Vec<$crate::WebhookSecretRecord>> {
                sqlx::query_as::<_, $crate::rows::WebhookSecretRow>("SELECT id, account_id, secret_ciphertext, created_at, retired_at FROM webhook_secrets WHERE account_id = $1 ORDER BY created_at DESC, id DESC")
                    .bind(account.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list webhook secrets", e))?
                    .into_iter()
                    .map($crate::rows::WebhookSecretRow::into_record)
                    .collect()
            }

            async fn enqueue_callback_event(&self, event: $crate::NewCallbackEvent) -> $crate::Result<bool> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let inserted = sqlx::query("INSERT INTO callback_events (id, task_id, account_id, phase, url, body, state, attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) ON CONFLICT (task_id, phase) DO NOTHING")
                    .bind(&event.id)
                    .bind(event.task_id.to_string())
                    .bind(event.account_id.to_string())
                    .bind(event.phase.as_str())
                    .bind(&event.url)
                    .bind(&event.body)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("enqueue callback", e))?;
                if inserted.rows_affected() == 0 {
                    return Ok(false);
                }
                let job = $crate::NewJob::new($crate::DELIVER_CALLBACK, serde_json::json!({"event_id": event.id}));
                Self::insert_job(&mut *tx, &job, now).await?;
                self.announce_jobs(&mut tx).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit callback", e))?;
                self.wakeups.notify_waiters();
                Ok(true)
            }

            async fn get_callback_event(&self, id: &str) -> $crate::Result<Option<$crate::CallbackEvent>> {
                sqlx::query_as::<_, $crate::rows::CallbackEventRow>(concat!("SELECT ", $crate::shared::callback_event_columns!(), " FROM callback_events WHERE id = $1"))
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("get callback", e))?
                    .map($crate::rows::CallbackEventRow::into_event)
                    .transpose()
            }

            async fn task_callback_events(&self, task: kinora_core::TaskId) -> $crate::Result<Vec<$crate::CallbackEvent>> {
                let mut events: Vec<$crate::CallbackEvent> = sqlx::query_as::<_, $crate::rows::CallbackEventRow>(concat!("SELECT ", $crate::shared::callback_event_columns!(), " FROM callback_events WHERE task_id = $1"))
                    .bind(task.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("task callbacks", e))?
                    .into_iter()
                    .map($crate::rows::CallbackEventRow::into_event)
                    .collect::<$crate::Result<_>>()?;
                events.sort_by_key(|e| e.phase);
                Ok(events)
            }

            async fn record_callback_attempt(&self, attempt: $crate::CallbackAttempt, next: $crate::CallbackNext) -> $crate::Result<()> {
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                // A retried job may record the same attempt twice; the first record stands.
                sqlx::query("INSERT INTO callback_attempts (event_id, attempt, at, http_status, latency_ms, error) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (event_id, attempt) DO NOTHING")
                    .bind(&attempt.event_id)
                    .bind(i64::from(attempt.attempt))
                    .bind(attempt.at)
                    .bind(attempt.http_status.map(i64::from))
                    .bind(attempt.latency_ms)
                    .bind(attempt.error.as_deref())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("record callback attempt", e))?;
                let (state, next_at, finished) = match next {
                    $crate::CallbackNext::Delivered => ($crate::CallbackState::Delivered, attempt.at, Some(attempt.at)),
                    $crate::CallbackNext::GiveUp => ($crate::CallbackState::GivenUp, attempt.at, Some(attempt.at)),
                    $crate::CallbackNext::RetryAt(at) => ($crate::CallbackState::Pending, at, None),
                };
                sqlx::query("UPDATE callback_events SET attempts = $1, state = $2, next_attempt_at = $3, finished_at = $4 WHERE id = $5 AND state = 'pending'")
                    .bind(i64::from(attempt.attempt))
                    .bind(state.as_str())
                    .bind(next_at)
                    .bind(finished)
                    .bind(&attempt.event_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("settle callback attempt", e))?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit callback attempt", e))
            }

            async fn list_callback_attempts(&self, account: kinora_core::AccountId, task: kinora_core::TaskId) -> $crate::Result<Vec<($crate::CallbackEvent, Vec<$crate::CallbackAttempt>)>> {
                let mut events: Vec<$crate::CallbackEvent> = sqlx::query_as::<_, $crate::rows::CallbackEventRow>(concat!("SELECT ", $crate::shared::callback_event_columns!(), " FROM callback_events WHERE task_id = $1 AND account_id = $2"))
                    .bind(task.to_string())
                    .bind(account.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list callbacks", e))?
                    .into_iter()
                    .map($crate::rows::CallbackEventRow::into_event)
                    .collect::<$crate::Result<_>>()?;
                events.sort_by_key(|e| e.phase);
                let mut listed = Vec::with_capacity(events.len());
                for event in events {
                    let attempts = sqlx::query_as::<_, $crate::rows::CallbackAttemptRow>("SELECT event_id, attempt, at, http_status, latency_ms, error FROM callback_attempts WHERE event_id = $1 ORDER BY attempt")
                        .bind(&event.id)
                        .fetch_all(&self.read)
                        .await
                        .map_err(|e| $crate::error::db_error("list callback attempts", e))?
                        .into_iter()
                        .map($crate::rows::CallbackAttemptRow::into_attempt)
                        .collect();
                    listed.push((event, attempts));
                }
                Ok(listed)
            }

            async fn tasks_missing_callbacks(&self, changed_before: i64, limit: u32) -> $crate::Result<Vec<kinora_core::Task>> {
                sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "SELECT ", $crate::shared::task_columns!(), " FROM tasks t WHERE t.callback_url IS NOT NULL \
                     AND t.state IN ('running', 'succeeded', 'failed', 'canceled') AND t.updated_at < $1 \
                     AND NOT (t.dialect = 'acedata' AND t.state = 'running') \
                     AND NOT EXISTS (SELECT 1 FROM callback_events e WHERE e.task_id = t.id AND e.phase = \
                     CASE WHEN t.state = 'running' THEN 'processing' ELSE 'ended' END) \
                     ORDER BY t.updated_at LIMIT $2"
                ))
                .bind(changed_before)
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("tasks missing callbacks", e))?
                .into_iter()
                .map($crate::rows::TaskRow::into_task)
                .collect()
            }

            async fn get_element_by_task(&self, account: kinora_core::AccountId, task_id: kinora_core::TaskId) -> $crate::Result<Option<$crate::Element>> {
                sqlx::query_as::<_, $crate::rows::ElementRow>(concat!("SELECT ", $crate::shared::element_columns!(), " FROM elements WHERE task_id = $1 AND account_id = $2 AND deleted_at IS NULL"))
                    .bind(task_id.to_string())
                    .bind(account.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("get element by task", e))?
                    .map($crate::rows::ElementRow::into_element)
                    .transpose()
            }

            async fn find_element_by_external_task_id(&self, account: kinora_core::AccountId, external_task_id: &str) -> $crate::Result<Option<$crate::Element>> {
                sqlx::query_as::<_, $crate::rows::ElementRow>(concat!("SELECT ", $crate::shared::element_columns!(), " FROM elements WHERE external_task_id = $1 AND account_id = $2 AND deleted_at IS NULL"))
                    .bind(external_task_id)
                    .bind(account.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("find element by external task id", e))?
                    .map($crate::rows::ElementRow::into_element)
                    .transpose()
            }

            async fn list_element_tasks(&self, account: kinora_core::AccountId, page: u32, page_size: u32) -> $crate::Result<Vec<$crate::Element>> {
                let offset = i64::from(page.max(1) - 1) * i64::from(page_size);
                sqlx::query_as::<_, $crate::rows::ElementRow>(concat!("SELECT ", $crate::shared::element_columns!(), " FROM elements WHERE account_id = $1 AND task_id IS NOT NULL AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"))
                    .bind(account.to_string())
                    .bind(i64::from(page_size))
                    .bind(offset)
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list element tasks", e))?
                    .into_iter()
                    .map($crate::rows::ElementRow::into_element)
                    .collect()
            }

            async fn get_element(&self, account: kinora_core::AccountId, id: i64) -> $crate::Result<Option<$crate::Element>> {
                sqlx::query_as::<_, $crate::rows::ElementRow>(concat!("SELECT ", $crate::shared::element_columns!(), " FROM elements WHERE id = $1 AND (account_id = $2 OR account_id IS NULL) AND deleted_at IS NULL"))
                    .bind(id)
                    .bind(account.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("get element", e))?
                    .map($crate::rows::ElementRow::into_element)
                    .transpose()
            }

            async fn element_id_in_use(&self, id: i64) -> $crate::Result<bool> {
                let found: Option<i64> = sqlx::query_scalar("SELECT id FROM elements WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("find element id", e))?;
                Ok(found.is_some())
            }

            async fn list_elements(&self, account: Option<kinora_core::AccountId>, page: u32, page_size: u32) -> $crate::Result<Vec<$crate::Element>> {
                let offset = i64::from(page.max(1) - 1) * i64::from(page_size);
                let rows = match account {
                    Some(account) => sqlx::query_as::<_, $crate::rows::ElementRow>(concat!("SELECT ", $crate::shared::element_columns!(), " FROM elements WHERE account_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"))
                        .bind(account.to_string())
                        .bind(i64::from(page_size))
                        .bind(offset)
                        .fetch_all(&self.read)
                        .await,
                    None => sqlx::query_as::<_, $crate::rows::ElementRow>(concat!("SELECT ", $crate::shared::element_columns!(), " FROM elements WHERE account_id IS NULL AND deleted_at IS NULL ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"))
                        .bind(i64::from(page_size))
                        .bind(offset)
                        .fetch_all(&self.read)
                        .await,
                };
                rows.map_err(|e| $crate::error::db_error("list elements", e))?
                    .into_iter()
                    .map($crate::rows::ElementRow::into_element)
                    .collect()
            }

            async fn delete_element(&self, account: kinora_core::AccountId, id: i64) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE elements SET deleted_at = $1 WHERE id = $2 AND account_id = $3 AND deleted_at IS NULL")
                    .bind(self.clock.now_ms())
                    .bind(id)
                    .bind(account.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("delete element", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn server_secret(&self, name: &str, candidate: &str) -> $crate::Result<String> {
                sqlx::query("INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
                    .bind(name)
                    .bind(candidate)
                    .bind(self.clock.now_ms())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("store server secret", e))?;
                sqlx::query_scalar::<_, String>("SELECT value FROM server_secrets WHERE name = $1")
                    .bind(name)
                    .fetch_one(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("read server secret", e))
            }

            async fn create_api_key(&self, account: kinora_core::AccountId, key: $crate::NewApiKey) -> $crate::Result<$crate::ApiKey> {
                let now = self.clock.now_ms();
                self.check_app(account, key.app_id).await?;
                Self::insert_api_key(&self.write, account, &key, now).await
            }

            async fn find_api_key(&self, secret_hash: &str) -> $crate::Result<Option<$crate::ApiKey>> {
                sqlx::query_as::<_, $crate::rows::ApiKeyRow>(concat!("SELECT ", $crate::shared::api_key_columns!(), " FROM api_keys WHERE secret_hash = $1 AND revoked_at IS NULL"))
                    .bind(secret_hash)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("find API key", e))?
                    .map($crate::rows::ApiKeyRow::into_key)
                    .transpose()
            }

            async fn list_api_keys(&self, account: kinora_core::AccountId) -> $crate::Result<Vec<$crate::ApiKey>> {
                sqlx::query_as::<_, $crate::rows::ApiKeyRow>(concat!("SELECT ", $crate::shared::api_key_columns!(), " FROM api_keys WHERE account_id = $1 ORDER BY created_at, id"))
                    .bind(account.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list API keys", e))?
                    .into_iter()
                    .map($crate::rows::ApiKeyRow::into_key)
                    .collect()
            }

            async fn revoke_api_key(&self, account: kinora_core::AccountId, id: uuid::Uuid) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL")
                    .bind(self.clock.now_ms())
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("revoke API key", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn create_access_key(&self, account: kinora_core::AccountId, key: $crate::NewAccessKey) -> $crate::Result<$crate::AccessKey> {
                let id = uuid::Uuid::now_v7();
                let now = self.clock.now_ms();
                self.check_app(account, key.app_id).await?;
                sqlx::query("INSERT INTO access_keys (id, account_id, name, access_key, secret_ciphertext, app_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .bind(&key.name)
                    .bind(&key.access_key)
                    .bind(&key.secret_ciphertext)
                    .bind(key.app_id.map(|a| a.to_string()))
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("create access key", e))?;
                Ok($crate::AccessKey {
                    id,
                    account_id: account,
                    name: key.name,
                    access_key: key.access_key,
                    secret_ciphertext: key.secret_ciphertext,
                    app_id: key.app_id,
                    created_at: now,
                    revoked_at: None,
                })
            }

            async fn find_access_key(&self, access_key: &str) -> $crate::Result<Option<$crate::AccessKey>> {
                sqlx::query_as::<_, $crate::rows::AccessKeyRow>(concat!("SELECT ", $crate::shared::access_key_columns!(), " FROM access_keys WHERE access_key = $1"))
                    .bind(access_key)
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("find access key", e))?
                    .map($crate::rows::AccessKeyRow::into_key)
                    .transpose()
            }

            async fn list_access_keys(&self, account: kinora_core::AccountId) -> $crate::Result<Vec<$crate::AccessKey>> {
                sqlx::query_as::<_, $crate::rows::AccessKeyRow>(concat!("SELECT ", $crate::shared::access_key_columns!(), " FROM access_keys WHERE account_id = $1 ORDER BY created_at, id"))
                    .bind(account.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list access keys", e))?
                    .into_iter()
                    .map($crate::rows::AccessKeyRow::into_key)
                    .collect()
            }

            async fn revoke_access_key(&self, account: kinora_core::AccountId, id: uuid::Uuid) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE access_keys SET revoked_at = $1 WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL")
                    .bind(self.clock.now_ms())
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("revoke access key", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn admit_task(&self, task: kinora_core::NewTask, first_job: kinora_core::JobKind, admission: $crate::Admission) -> $crate::Result<(kinora_core::Task, $crate::JobId)> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let inserted = sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "INSERT INTO tasks (id, account_id, dialect, kind, model, state, request, \
                     external_task_id, callback_url, created_at, updated_at, trace_id, \
                     submitted_body, key_id) \
                     VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $9, $10, $11, $12) RETURNING ",
                    $crate::shared::task_columns!()
                ))
                .bind(task.id.to_string())
                .bind(task.account_id.to_string())
                .bind(task.dialect.as_str())
                .bind(task.kind.as_str())
                .bind(&task.model)
                .bind($crate::rows::to_json_text(&task.request))
                .bind(task.external_task_id.as_deref())
                .bind(task.callback_url.as_deref())
                .bind(now)
                .bind(task.submission.as_ref().map(|s| s.trace_id.clone()))
                .bind(task.submission.as_ref().map(|s| $crate::rows::to_json_text(&s.body)))
                .bind(admission.key_id.map(|k| k.to_string()))
                .fetch_one(&mut *tx)
                .await;
                let row = match inserted {
                    Ok(row) => row,
                    Err(e) if $crate::error::is_unique_violation(&e) => {
                        return Err(kinora_core::Error::new(
                            kinora_core::ErrorCode::DuplicateExternalTaskId,
                            format!(
                                "external_task_id `{}` is already used by another task of this account",
                                task.external_task_id.as_deref().unwrap_or_default()
                            ),
                        ));
                    }
                    Err(e) => return Err($crate::error::db_error("create task", e)),
                };
                if admission.max_in_flight.is_some() || admission.charge.is_some() {
                    // One account's admissions queue on its balance row, so each sees the
                    // tasks and holds of those before it.
                    let purse = admission.charge.map_or($crate::Purse::General, |c| c.purse);
                    Self::lock_purses(&mut tx, task.account_id, purse, now).await?;
                }
                if let (Some(limit), Some(key)) = (admission.max_in_flight, admission.key_id) {
                    let in_flight: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE key_id = $1 AND state IN ('queued', 'submitted', 'running') AND id <> $2")
                        .bind(key.to_string())
                        .bind(task.id.to_string())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| $crate::error::db_error("count the key's unfinished tasks", e))?;
                    if in_flight >= i64::from(limit) {
                        return Err(kinora_core::Error::new(
                            kinora_core::ErrorCode::ConcurrencyLimit,
                            format!("this key already has {in_flight} unfinished tasks, its limit is {limit}"),
                        ));
                    }
                }
                if let Some(hold) = admission.charge {
                    if let $crate::HoldOutcome::Insufficient { available } = Self::hold_in(&mut tx, task.id, task.account_id, hold, now).await? {
                        return Err(kinora_core::Error::new(
                            kinora_core::ErrorCode::InsufficientBalance,
                            format!("the task costs {} and the balance that may pay for it is {available}", hold.price),
                        ));
                    }
                }
                let first_job = $crate::NewJob::for_task(first_job, task.id);
                let job_id = Self::insert_job(&mut *tx, &first_job, now).await?;
                self.announce_jobs(&mut tx).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit task", e))?;
                self.wakeups.notify_waiters();
                Ok((row.into_task()?, job_id))
            }

            async fn list_tasks(&self, account: kinora_core::AccountId, kind: Option<kinora_core::TaskKind>, page: u32, page_size: u32) -> $crate::Result<Vec<kinora_core::Task>> {
                // Task ids are UUIDv7, so id order is creation order.
                let offset = i64::from(page.max(1) - 1) * i64::from(page_size);
                sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "SELECT ", $crate::shared::task_columns!(), " FROM tasks WHERE account_id = $1 AND (CAST($2 AS TEXT) IS NULL OR kind = $2) ORDER BY id DESC LIMIT $3 OFFSET $4"
                ))
                .bind(account.to_string())
                .bind(kind.map(|k| k.as_str()))
                .bind(i64::from(page_size))
                .bind(offset)
                .fetch_all(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("list tasks", e))?
                .into_iter()
                .map($crate::rows::TaskRow::into_task)
                .collect()
            }

            async fn get_task(&self, account: kinora_core::AccountId, id: kinora_core::TaskId) -> $crate::Result<Option<kinora_core::Task>> {
                sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "SELECT ", $crate::shared::task_columns!(), " FROM tasks WHERE id = $1 AND account_id = $2"
                ))
                .bind(id.to_string())
                .bind(account.to_string())
                .fetch_optional(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("get task", e))?
                .map($crate::rows::TaskRow::into_task)
                .transpose()
            }

            async fn find_task_by_external_id(&self, account: kinora_core::AccountId, external_task_id: &str) -> $crate::Result<Option<kinora_core::Task>> {
                sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "SELECT ", $crate::shared::task_columns!(), " FROM tasks WHERE account_id = $1 AND external_task_id = $2"
                ))
                .bind(account.to_string())
                .bind(external_task_id)
                .fetch_optional(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("find task by external_task_id", e))?
                .map($crate::rows::TaskRow::into_task)
                .transpose()
            }

            async fn load_task_for_worker(&self, id: kinora_core::TaskId) -> $crate::Result<Option<kinora_core::Task>> {
                sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "SELECT ", $crate::shared::task_columns!(), " FROM tasks WHERE id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("load task", e))?
                .map($crate::rows::TaskRow::into_task)
                .transpose()
            }

            async fn transition_task(&self, id: kinora_core::TaskId, transition: $crate::TaskTransition) -> $crate::Result<kinora_core::Task> {
                use $crate::TaskTransition as T;
                let now = self.clock.now_ms();
                let target = transition.target();
                let sources = target.allowed_sources();
                let (mut channel, mut upstream, mut result, mut class, mut message) = (None, None, None, None, None);
                let (mut submitted_at, mut started_at, mut finished_at) = (None, None, None);
                match &transition {
                    T::Submitted { channel: c, upstream_task_id } => {
                        channel = Some(c.clone());
                        upstream = upstream_task_id.clone();
                        submitted_at = Some(now);
                    }
                    T::Running => started_at = Some(now),
                    T::Succeeded { result: r, .. } => {
                        result = Some($crate::rows::to_json_text(r));
                        finished_at = Some(now);
                    }
                    T::Failed { class: c, message: m } => {
                        class = Some(c.as_str());
                        message = Some(m.clone());
                        finished_at = Some(now);
                    }
                    T::Canceled { message: m } => {
                        message = Some(m.clone());
                        finished_at = Some(now);
                    }
                }
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                // Every target has one to three source states; pad the IN list with repeats.
                let source = |i: usize| sources.get(i).or(sources.last()).map(|s| s.as_str()).unwrap_or("");
                let updated = sqlx::query_as::<_, $crate::rows::TaskRow>(concat!(
                    "UPDATE tasks SET state = $1, updated_at = $2, \
                     channel = COALESCE($3, channel), upstream_task_id = COALESCE($4, upstream_task_id), \
                     result = COALESCE($5, result), failure_class = COALESCE($6, failure_class), \
                     failure_message = COALESCE($7, failure_message), \
                     submitted_at = COALESCE(submitted_at, $8), started_at = COALESCE(started_at, $9), \
                     finished_at = COALESCE(finished_at, $10) \
                     WHERE id = $11 AND state IN ($12, $13, $14) RETURNING ",
                    $crate::shared::task_columns!()
                ))
                .bind(target.as_str())
                .bind(now)
                .bind(channel)
                .bind(upstream)
                .bind(result)
                .bind(class)
                .bind(message)
                .bind(submitted_at)
                .bind(started_at)
                .bind(finished_at)
                .bind(id.to_string())
                .bind(source(0))
                .bind(source(1))
                .bind(source(2))
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| $crate::error::db_error("transition task", e))?;
                let settlement = match &transition {
                    T::Succeeded { billed_ms, .. } => Some($crate::shared::Settlement::CaptureOutput(*billed_ms)),
                    T::Failed { .. } | T::Canceled { .. } => Some($crate::shared::Settlement::Release),
                    T::Submitted { .. } | T::Running => None,
                };
                match updated {
                    Some(row) => {
                        let mut task = row.into_task()?;
                        // The charge ends with the task, in its transaction: a crash leaves
                        // both as they were or both settled.
                        if let Some(settlement) = settlement {
                            if let Some(charged) = Self::settle_in(&mut tx, id, settlement, now).await? {
                                sqlx::query("UPDATE tasks SET charged = $1 WHERE id = $2")
                                    .bind(charged)
                                    .bind(id.to_string())
                                    .execute(&mut *tx)
                                    .await
                                    .map_err(|e| $crate::error::db_error("record the task's charge", e))?;
                                task.charged = Some(charged);
                            }
                        }
                        tx.commit().await.map_err(|e| $crate::error::db_error("commit transition", e))?;
                        Ok(task)
                    }
                    None => {
                        // Nothing changed; the read below must not wait on this transaction.
                        drop(tx);
                        match self.load_task_for_worker(id).await? {
                            None => Err(kinora_core::Error::not_found(format!("task {id} does not exist"))),
                            Some(current) => Err(kinora_core::Error::new(
                                kinora_core::ErrorCode::StaleTransition,
                                format!("task {id} is {}, it cannot become {target}", current.state),
                            )),
                        }
                    }
                }
            }

            async fn unfinished_task_ids(&self, limit: u32) -> $crate::Result<Vec<kinora_core::TaskId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM tasks WHERE state IN ('queued', 'submitted', 'running') ORDER BY id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("list unfinished tasks", e))?;
                ids.iter()
                    .map(|id| id.parse::<kinora_core::TaskId>())
                    .collect()
            }

            async fn orphaned_task_ids(&self, limit: u32) -> $crate::Result<Vec<kinora_core::TaskId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM tasks t WHERE t.state IN ('queued', 'submitted', 'running') \
                     AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.task_id = t.id AND j.state IN ('queued', 'running')) \
                     ORDER BY t.id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("list orphaned tasks", e))?;
                ids.iter().map(|id| id.parse::<kinora_core::TaskId>()).collect()
            }

            async fn complete_job_and_enqueue(&self, id: $crate::JobId, owner: &str, next: $crate::NewJob) -> $crate::Result<$crate::JobId> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let done = sqlx::query($crate::shared::COMPLETE_JOB)
                .bind(now)
                .bind(id)
                .bind(owner)
                .execute(&mut *tx)
                .await
                .map_err(|e| $crate::error::db_error("complete job", e))?;
                if done.rows_affected() == 0 {
                    return Err($crate::error::lease_lost(id, owner));
                }
                let next_id = Self::insert_job(&mut *tx, &next, now).await?;
                self.announce_jobs(&mut tx).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit job", e))?;
                self.wakeups.notify_waiters();
                Ok(next_id)
            }

            async fn create_app(&self, account: kinora_core::AccountId, name: &str, allow_general_balance: bool) -> $crate::Result<$crate::App> {
                let id = uuid::Uuid::now_v7();
                let now = self.clock.now_ms();
                sqlx::query("INSERT INTO apps (id, account_id, name, balance, allow_general_balance, created_at) VALUES ($1, $2, $3, 0, $4, $5)")
                    .bind(id.to_string())
                    .bind(account.to_string())
                    .bind(name)
                    .bind(i64::from(allow_general_balance))
                    .bind(now)
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("create app", e))?;
                Ok($crate::App { id, account_id: account, name: name.to_owned(), balance: 0, allow_general_balance, limits: $crate::KeyLimits::default(), created_at: now })
            }

            async fn list_apps(&self, account: kinora_core::AccountId) -> $crate::Result<Vec<$crate::App>> {
                #[allow(clippy::type_complexity)]
                let rows: Vec<(String, String, i64, i64, Option<i64>, Option<i64>, i64)> = sqlx::query_as("SELECT id, name, balance, allow_general_balance, submits_per_second, max_in_flight, created_at FROM apps WHERE account_id = $1 ORDER BY created_at, id")
                    .bind(account.to_string())
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("list apps", e))?;
                rows.into_iter()
                    .map(|(id, name, balance, allow, submits_per_second, max_in_flight, created_at)| {
                        let id = uuid::Uuid::parse_str(&id).map_err(|e| kinora_core::Error::internal(format!("app id {id}: {e}")))?;
                        let limits = $crate::KeyLimits {
                            submits_per_second: submits_per_second.and_then(|n| u32::try_from(n).ok()),
                            max_in_flight: max_in_flight.and_then(|n| u32::try_from(n).ok()),
                        };
                        Ok($crate::App { id, account_id: account, name, balance, allow_general_balance: allow != 0, limits, created_at })
                    })
                    .collect()
            }

            async fn set_app_limits(&self, account: kinora_core::AccountId, app: uuid::Uuid, limits: $crate::KeyLimits) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE apps SET submits_per_second = $1, max_in_flight = $2 WHERE id = $3 AND account_id = $4")
                    .bind(limits.submits_per_second.map(i64::from))
                    .bind(limits.max_in_flight.map(i64::from))
                    .bind(app.to_string())
                    .bind(account.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("set app limits", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn general_balance(&self, account: kinora_core::AccountId) -> $crate::Result<i64> {
                let balance: Option<i64> = sqlx::query_scalar("SELECT general_balance FROM account_balances WHERE account_id = $1")
                    .bind(account.to_string())
                    .fetch_optional(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("read general balance", e))?;
                Ok(balance.unwrap_or(0))
            }

            async fn credit(&self, account: kinora_core::AccountId, purse: $crate::Purse, amount: i64, note: &str) -> $crate::Result<i64> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let (app_balance, _, general) = Self::lock_purses(&mut tx, account, purse, now).await?;
                let current = match purse {
                    $crate::Purse::General => general,
                    $crate::Purse::App(_) => app_balance,
                };
                let updated = current.checked_add(amount).ok_or_else(|| kinora_core::Error::invalid("the amount is too large"))?;
                if updated < 0 {
                    return Err(kinora_core::Error::invalid(format!("the balance is {current}; taking {} would make it negative", -amount)));
                }
                Self::move_purse(&mut tx, account, $crate::shared::Movement { purse, task: None, kind: "credit", amount, note }, now).await?;
                if amount > 0 {
                    // Money given to an account is there to be spent: its tasks are priced from now on.
                    sqlx::query("UPDATE accounts SET metered = 1 WHERE id = $1")
                        .bind(account.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| $crate::error::db_error("turn metering on", e))?;
                }
                tx.commit().await.map_err(|e| $crate::error::db_error("commit credit", e))?;
                Ok(updated)
            }

            async fn hold_charge(&self, task: kinora_core::TaskId, account: kinora_core::AccountId, purse: $crate::Purse, price: i64) -> $crate::Result<$crate::HoldOutcome> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let hold = $crate::PriceHold { purse, per_second: 0, price };
                let outcome = Self::hold_in(&mut tx, task, account, hold, now).await?;
                if let $crate::HoldOutcome::Held { .. } = outcome {
                    tx.commit().await.map_err(|e| $crate::error::db_error("commit hold", e))?;
                }
                Ok(outcome)
            }

            async fn capture_charge(&self, task: kinora_core::TaskId, actual: i64) -> $crate::Result<bool> {
                self.settle_charge(task, $crate::shared::Settlement::Capture(actual)).await
            }

            async fn release_charge(&self, task: kinora_core::TaskId) -> $crate::Result<bool> {
                self.settle_charge(task, $crate::shared::Settlement::Release).await
            }

            async fn ledger(&self, account: kinora_core::AccountId, purse: $crate::Purse) -> $crate::Result<Vec<$crate::LedgerEntry>> {
                let rows: Vec<(i64, Option<String>, Option<String>, String, i64, String, i64)> = match purse {
                    $crate::Purse::General => sqlx::query_as("SELECT id, app_id, task_id, kind, amount, note, created_at FROM ledger_entries WHERE account_id = $1 AND app_id IS NULL ORDER BY id")
                        .bind(account.to_string())
                        .fetch_all(&self.read)
                        .await,
                    $crate::Purse::App(app) => sqlx::query_as("SELECT id, app_id, task_id, kind, amount, note, created_at FROM ledger_entries WHERE account_id = $1 AND app_id = $2 ORDER BY id")
                        .bind(account.to_string())
                        .bind(app.to_string())
                        .fetch_all(&self.read)
                        .await,
                }
                .map_err(|e| $crate::error::db_error("read ledger", e))?;
                rows.into_iter()
                    .map(|(id, _, task, kind, amount, note, created_at)| {
                        let task_id = match task {
                            Some(t) => Some(kinora_core::TaskId::from_uuid(uuid::Uuid::parse_str(&t).map_err(|e| kinora_core::Error::internal(format!("ledger task id {t}: {e}")))?)),
                            None => None,
                        };
                        Ok($crate::LedgerEntry { id, account_id: account, purse, task_id, kind, amount, note, created_at })
                    })
                    .collect()
            }

            async fn assign_channel(&self, task: kinora_core::TaskId, channel: &str, max_in_flight: Option<u32>) -> $crate::Result<bool> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                // Writing the channel's row first makes concurrent assignments to the channel
                // wait for each other (a row lock in PostgreSQL, the write lock in SQLite).
                sqlx::query("INSERT INTO channel_states (channel, updated_at) VALUES ($1, $2) ON CONFLICT (channel) DO UPDATE SET updated_at = $2")
                    .bind(channel)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("lock channel", e))?;
                if let Some(limit) = max_in_flight {
                    let busy: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE channel = $1 AND state IN ('queued', 'submitted', 'running') AND id <> $2")
                        .bind(channel)
                        .bind(task.to_string())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(|e| $crate::error::db_error("count channel tasks", e))?;
                    if busy >= i64::from(limit) {
                        return Ok(false);
                    }
                }
                let assigned = sqlx::query("UPDATE tasks SET channel = $1, updated_at = $2 WHERE id = $3 AND state = 'queued'")
                    .bind(channel)
                    .bind(now)
                    .bind(task.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("assign channel", e))?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit channel", e))?;
                Ok(assigned.rows_affected() == 1)
            }

            async fn release_channel(&self, task: kinora_core::TaskId) -> $crate::Result<()> {
                sqlx::query("UPDATE tasks SET channel = NULL, updated_at = $1 WHERE id = $2 AND state = 'queued'")
                    .bind(self.clock.now_ms())
                    .bind(task.to_string())
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("release channel", e))?;
                Ok(())
            }

            async fn disable_channel(&self, channel: &str, reason: &str) -> $crate::Result<bool> {
                let now = self.clock.now_ms();
                let done = sqlx::query("INSERT INTO channel_states (channel, disabled_at, reason, updated_at) VALUES ($1, $2, $3, $2) \
                     ON CONFLICT (channel) DO UPDATE SET disabled_at = $2, reason = $3, updated_at = $2 WHERE channel_states.disabled_at IS NULL")
                    .bind(channel)
                    .bind(now)
                    .bind(reason)
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("disable channel", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn enable_channel(&self, channel: &str) -> $crate::Result<bool> {
                let done = sqlx::query("UPDATE channel_states SET disabled_at = NULL, reason = NULL, updated_at = $1 WHERE channel = $2 AND disabled_at IS NOT NULL")
                    .bind(self.clock.now_ms())
                    .bind(channel)
                    .execute(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("enable channel", e))?;
                Ok(done.rows_affected() == 1)
            }

            async fn disabled_channels(&self) -> $crate::Result<Vec<String>> {
                sqlx::query_scalar("SELECT channel FROM channel_states WHERE disabled_at IS NOT NULL ORDER BY channel")
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("read disabled channels", e))
            }

            async fn channel_states(&self) -> $crate::Result<Vec<$crate::ChannelState>> {
                let rows = sqlx::query_as::<_, (String, Option<i64>, Option<String>)>("SELECT channel, disabled_at, reason FROM channel_states")
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("read channel states", e))?;
                let counts = sqlx::query_as::<_, (String, i64)>("SELECT channel, COUNT(*) FROM tasks WHERE channel IS NOT NULL AND state IN ('queued', 'submitted', 'running') GROUP BY channel")
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("count channel tasks", e))?;
                let mut states: std::collections::BTreeMap<String, $crate::ChannelState> = std::collections::BTreeMap::new();
                for (channel, disabled_at, reason) in rows {
                    states.insert(channel.clone(), $crate::ChannelState { channel, disabled_at, reason, in_flight: 0 });
                }
                for (channel, count) in counts {
                    states
                        .entry(channel.clone())
                        .or_insert_with(|| $crate::ChannelState { channel, disabled_at: None, reason: None, in_flight: 0 })
                        .in_flight = u64::try_from(count).unwrap_or(0);
                }
                Ok(states.into_values().collect())
            }

            async fn record_upstream_push(&self, task: kinora_core::TaskId, body: &serde_json::Value) -> $crate::Result<()> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                sqlx::query("INSERT INTO upstream_pushes (task_id, body, received_at) VALUES ($1, $2, $3) ON CONFLICT (task_id) DO UPDATE SET body = $2, received_at = $3")
                    .bind(task.to_string())
                    .bind(body.to_string())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("record upstream push", e))?;
                // Due from the task's creation, so the pushed task's poll goes before work
                // queued for newer tasks (a burst of submits does not hold up finished tasks).
                sqlx::query("UPDATE jobs SET next_run_at = (SELECT created_at FROM tasks WHERE tasks.id = $2), updated_at = $1 \
                     WHERE task_id = $2 AND kind = $3 AND state = 'queued' AND next_run_at > (SELECT created_at FROM tasks WHERE tasks.id = $2)")
                    .bind(now)
                    .bind(task.to_string())
                    .bind(kinora_core::JobKind::POLL_TASK.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| $crate::error::db_error("wake poll", e))?;
                self.announce_jobs(&mut tx).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit upstream push", e))?;
                self.wakeups.notify_waiters();
                Ok(())
            }

            async fn take_upstream_push(&self, task: kinora_core::TaskId) -> $crate::Result<Option<serde_json::Value>> {
                let body: Option<String> = sqlx::query_scalar("DELETE FROM upstream_pushes WHERE task_id = $1 RETURNING body")
                    .bind(task.to_string())
                    .fetch_optional(&self.write)
                    .await
                    .map_err(|e| $crate::error::db_error("take upstream push", e))?;
                body.map(|b| serde_json::from_str(&b).map_err(|e| kinora_core::Error::internal(format!("stored upstream push: {e}"))))
                    .transpose()
            }

            async fn enqueue_job(&self, job: $crate::NewJob) -> $crate::Result<$crate::JobId> {
                let now = self.clock.now_ms();
                let mut tx = self.write.begin().await.map_err(|e| $crate::error::db_error("begin", e))?;
                let id = Self::insert_job(&mut *tx, &job, now).await?;
                self.announce_jobs(&mut tx).await?;
                tx.commit().await.map_err(|e| $crate::error::db_error("commit job", e))?;
                self.wakeups.notify_waiters();
                Ok(id)
            }

            async fn heartbeat_job(&self, id: $crate::JobId, owner: &str, lease: std::time::Duration) -> $crate::Result<()> {
                let now = self.clock.now_ms();
                let query = sqlx::query(
                    "UPDATE jobs SET lease_until = $1, updated_at = $2 \
                     WHERE id = $3 AND state = 'running' AND lease_owner = $4",
                )
                .bind(now.saturating_add(kinora_core::time::duration_ms(lease)))
                .bind(now)
                .bind(id)
                .bind(owner);
                self.update_leased(query, id, owner, "heartbeat job").await
            }

            async fn complete_job(&self, id: $crate::JobId, owner: &str) -> $crate::Result<()> {
                let query = sqlx::query($crate::shared::COMPLETE_JOB)
                .bind(self.clock.now_ms())
                .bind(id)
                .bind(owner);
                self.update_leased(query, id, owner, "complete job").await
            }

            async fn retry_job(&self, id: $crate::JobId, owner: &str, delay: std::time::Duration, error: &str) -> $crate::Result<$crate::RetryOutcome> {
                let now = self.clock.now_ms();
                let row: Option<(String, i64)> = sqlx::query_as(
                    "UPDATE jobs SET \
                     state = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'queued' END, \
                     finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END, \
                     next_run_at = $2, last_error = $3, lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                     WHERE id = $4 AND state = 'running' AND lease_owner = $5 \
                     RETURNING state, next_run_at",
                )
                .bind(now)
                .bind(now.saturating_add(kinora_core::time::duration_ms(delay)))
                .bind(error)
                .bind(id)
                .bind(owner)
                .fetch_optional(&self.write)
                .await
                .map_err(|e| $crate::error::db_error("retry job", e))?;
                match row {
                    None => Err($crate::error::lease_lost(id, owner)),
                    Some((state, _)) if state == "dead" => Ok($crate::RetryOutcome::DeadLettered),
                    Some((_, next_run_at)) => Ok($crate::RetryOutcome::Scheduled { next_run_at }),
                }
            }

            async fn reschedule_job(&self, id: $crate::JobId, owner: &str, delay: std::time::Duration) -> $crate::Result<()> {
                let now = self.clock.now_ms();
                let query = sqlx::query(
                    "UPDATE jobs SET state = 'queued', attempts = 0, next_run_at = $1, last_error = NULL, \
                     lease_owner = NULL, lease_until = NULL, updated_at = $2 \
                     WHERE id = $3 AND state = 'running' AND lease_owner = $4",
                )
                .bind(now.saturating_add(kinora_core::time::duration_ms(delay)))
                .bind(now)
                .bind(id)
                .bind(owner);
                self.update_leased(query, id, owner, "reschedule job").await
            }

            async fn abort_job(&self, id: $crate::JobId, owner: &str, error: &str) -> $crate::Result<()> {
                let query = sqlx::query(
                    "UPDATE jobs SET state = 'aborted', last_error = $1, lease_owner = NULL, lease_until = NULL, \
                     finished_at = $2, updated_at = $2 \
                     WHERE id = $3 AND state = 'running' AND lease_owner = $4",
                )
                .bind(error)
                .bind(self.clock.now_ms())
                .bind(id)
                .bind(owner);
                self.update_leased(query, id, owner, "abort job").await
            }

            async fn release_job(&self, id: $crate::JobId, owner: &str) -> $crate::Result<()> {
                let query = sqlx::query(
                    "UPDATE jobs SET state = 'queued', \
                     attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, \
                     next_run_at = $1, lease_owner = NULL, lease_until = NULL, updated_at = $1 \
                     WHERE id = $2 AND state = 'running' AND lease_owner = $3",
                )
                .bind(self.clock.now_ms())
                .bind(id)
                .bind(owner);
                self.update_leased(query, id, owner, "release job").await?;
                self.wakeups.notify_waiters();
                Ok(())
            }

            async fn get_job(&self, id: $crate::JobId) -> $crate::Result<Option<$crate::Job>> {
                sqlx::query_as::<_, $crate::rows::JobRow>(concat!(
                    "SELECT ", $crate::shared::job_columns!(), " FROM jobs WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("get job", e))?
                .map($crate::rows::JobRow::into_job)
                .transpose()
            }

            async fn jobs_for_task(&self, task_id: kinora_core::TaskId) -> $crate::Result<Vec<$crate::Job>> {
                let rows = sqlx::query_as::<_, $crate::rows::JobRow>(concat!(
                    "SELECT ", $crate::shared::job_columns!(), " FROM jobs WHERE task_id = $1 ORDER BY id"
                ))
                .bind(task_id.to_string())
                .fetch_all(&self.read)
                .await
                .map_err(|e| $crate::error::db_error("list jobs of task", e))?;
                rows.into_iter().map($crate::rows::JobRow::into_job).collect()
            }

            async fn job_counts(&self) -> $crate::Result<$crate::JobCounts> {
                let rows: Vec<(String, i64)> = sqlx::query_as("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                    .fetch_all(&self.read)
                    .await
                    .map_err(|e| $crate::error::db_error("count jobs", e))?;
                let mut counts = $crate::JobCounts::default();
                for (state, n) in rows {
                    let n = u64::try_from(n).unwrap_or(0);
                    match state.as_str() {
                        "queued" => counts.queued = n,
                        "running" => counts.running = n,
                        "done" => counts.done = n,
                        "aborted" => counts.aborted = n,
                        "dead" => counts.dead = n,
                        _ => {}
                    }
                }
                Ok(counts)
            }

            $($specific)*
        }
    };
}

pub(crate) use impl_store;

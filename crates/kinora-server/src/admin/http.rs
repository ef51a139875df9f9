//! The admin HTTP API under `/kinora/admin/v1`, guarded by `admin.token`. With no token
//! configured every path answers 404, as if the API did not exist. Errors are
//! `{"error": {"code", "message"}}` with the status the error code decides.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use kinora_core::{AccountId, Error};
use kinora_store::{KeyLimits, Purse};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::KeyKind;
use crate::auth::bearer_token;
use crate::Services;

pub fn routes() -> Router<Arc<Services>> {
    Router::new()
        .route(
            "/kinora/admin/v1/accounts",
            get(list_accounts).post(create_account),
        )
        .route("/kinora/admin/v1/accounts/{account}", get(show_account))
        .route(
            "/kinora/admin/v1/accounts/{account}/metering",
            put(set_metering),
        )
        .route(
            "/kinora/admin/v1/accounts/{account}/apps",
            get(list_apps).post(create_app),
        )
        .route(
            "/kinora/admin/v1/accounts/{account}/apps/{app}/limits",
            put(set_limits),
        )
        .route(
            "/kinora/admin/v1/accounts/{account}/keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/kinora/admin/v1/accounts/{account}/keys/{key}",
            delete(revoke_key),
        )
        .route("/kinora/admin/v1/accounts/{account}/credits", post(credit))
        .route("/kinora/admin/v1/accounts/{account}/ledger", get(ledger))
}

/// A refusal of the admin API.
#[derive(Debug)]
pub struct AdminError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AdminError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
}

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if e.code().is_server_fault() {
            tracing::error!(error = %e, "admin API request failed");
        }
        Self::new(status, e.code().as_str(), e.message())
    }
}

impl From<JsonRejection> for AdminError {
    fn from(rejection: JsonRejection) -> Self {
        Self::invalid(format!(
            "the request body is not the expected JSON: {rejection}"
        ))
    }
}

impl From<QueryRejection> for AdminError {
    fn from(rejection: QueryRejection) -> Self {
        Self::invalid(format!("the query string is not understood: {rejection}"))
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

type Result<T> = std::result::Result<T, AdminError>;

/// Proof that a request carries the configured admin token. Extracting it refuses every other
/// request; digests are compared, so the time taken says nothing about how much of a guess
/// was right.
pub struct Operator;

impl FromRequestParts<Arc<Services>> for Operator {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, services: &Arc<Services>) -> Result<Self> {
        let expected = &services.config.admin.token;
        if expected.is_empty() {
            return Err(AdminError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "the admin API is off (set admin.token to turn it on)",
            ));
        }
        let given = bearer_token(parts.headers.get(header::AUTHORIZATION)).unwrap_or_default();
        let digest = |text: &str| Sha256::digest(text.as_bytes());
        let differs = digest(given)
            .iter()
            .zip(digest(expected).iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if differs != 0 {
            return Err(AdminError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send the admin token as `Authorization: Bearer <token>`",
            ));
        }
        Ok(Self)
    }
}

fn account_id(text: &str) -> Result<AccountId> {
    text.parse()
        .map_err(|_| AdminError::invalid(format!("`{text}` is not an account id")))
}

fn uuid_of(what: &str, text: &str) -> Result<uuid::Uuid> {
    uuid::Uuid::parse_str(text)
        .map_err(|_| AdminError::invalid(format!("`{text}` is not {what} id")))
}

fn purse(app: Option<&str>) -> Result<Purse> {
    Ok(match app {
        Some(app) => Purse::App(uuid_of("an app", app)?),
        None => Purse::General,
    })
}

fn to_json(value: impl serde::Serialize) -> Result<Json<Value>> {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| AdminError::from(Error::internal(format!("answer does not serialise: {e}"))))
}

async fn list_accounts(State(services): State<Arc<Services>>, _: Operator) -> Result<Json<Value>> {
    to_json(json!({"data": services.store.list_accounts().await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccount {
    name: String,
    /// Defaults to true: a tenant pays for its tasks.
    #[serde(default = "default_true")]
    metered: bool,
}

fn default_true() -> bool {
    true
}

async fn create_account(
    State(services): State<Arc<Services>>,
    _: Operator,
    body: std::result::Result<Json<NewAccount>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let Json(body) = body?;
    let account = super::create_account(&*services.store, &body.name, body.metered).await?;
    Ok((StatusCode::CREATED, to_json(account)?))
}

async fn show_account(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
) -> Result<Json<Value>> {
    let id = account_id(&account)?;
    let found = super::account(&*services.store, id).await?;
    let balances = super::balances(&*services.store, id).await?;
    to_json(json!({
        "id": found.id,
        "name": found.name,
        "created_at": found.created_at,
        "metered": found.metered,
        "general_balance": balances.general_balance,
        "apps": balances.apps,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metering {
    metered: bool,
}

async fn set_metering(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
    body: std::result::Result<Json<Metering>, JsonRejection>,
) -> Result<Json<Value>> {
    let Json(body) = body?;
    let id = account_id(&account)?;
    super::set_metering(&*services.store, id, body.metered).await?;
    to_json(json!({"id": id, "metered": body.metered}))
}

async fn list_apps(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
) -> Result<Json<Value>> {
    let id = account_id(&account)?;
    to_json(json!({"data": super::balances(&*services.store, id).await?.apps}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    submits_per_second: Option<u32>,
    max_in_flight: Option<u32>,
}

impl From<Limits> for KeyLimits {
    fn from(limits: Limits) -> Self {
        Self {
            submits_per_second: limits.submits_per_second,
            max_in_flight: limits.max_in_flight,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    name: String,
    #[serde(default = "default_true")]
    allow_general_balance: bool,
    submits_per_second: Option<u32>,
    max_in_flight: Option<u32>,
}

async fn create_app(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
    body: std::result::Result<Json<NewApp>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let Json(body) = body?;
    let id = account_id(&account)?;
    let limits = KeyLimits {
        submits_per_second: body.submits_per_second,
        max_in_flight: body.max_in_flight,
    };
    let app = super::create_app(
        &*services.store,
        id,
        &body.name,
        body.allow_general_balance,
        limits,
    )
    .await?;
    Ok((StatusCode::CREATED, to_json(app)?))
}

async fn set_limits(
    State(services): State<Arc<Services>>,
    Path((account, app)): Path<(String, String)>,
    _: Operator,
    body: std::result::Result<Json<Limits>, JsonRejection>,
) -> Result<Json<Value>> {
    let Json(body) = body?;
    let (id, app) = (account_id(&account)?, uuid_of("an app", &app)?);
    let limits = KeyLimits::from(body);
    super::set_app_limits(&*services.store, id, app, limits).await?;
    to_json(json!({"app_id": app, "limits": limits}))
}

async fn list_keys(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
) -> Result<Json<Value>> {
    let id = account_id(&account)?;
    to_json(json!({"data": super::list_credentials(&*services.store, id).await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewKey {
    #[serde(default = "default_key_name")]
    name: String,
    /// `api_key` (default) or `access_key`.
    #[serde(default)]
    kind: Option<String>,
    app_id: Option<String>,
}

fn default_key_name() -> String {
    "admin-api".to_owned()
}

async fn create_key(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
    body: std::result::Result<Json<NewKey>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let Json(body) = body?;
    let id = account_id(&account)?;
    let kind = match body.kind.as_deref() {
        None | Some("api_key") => KeyKind::ApiKey,
        Some("access_key") => KeyKind::AccessKey,
        Some(other) => {
            return Err(AdminError::invalid(format!(
                "kind must be api_key or access_key, not `{other}`"
            )))
        }
    };
    let app = body
        .app_id
        .as_deref()
        .map(|a| uuid_of("an app", a))
        .transpose()?;
    let issued = super::issue_credential(
        &*services.store,
        &services.secrets,
        Some(id),
        app,
        kind,
        &body.name,
    )
    .await?;
    Ok((StatusCode::CREATED, to_json(issued)?))
}

async fn revoke_key(
    State(services): State<Arc<Services>>,
    Path((account, key)): Path<(String, String)>,
    _: Operator,
) -> Result<StatusCode> {
    let (id, key) = (account_id(&account)?, uuid_of("a key", &key)?);
    super::revoke_credential(&*services.store, id, key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Credit {
    /// Minor units; negative takes money away.
    amount: i64,
    app_id: Option<String>,
    #[serde(default = "default_note")]
    note: String,
}

fn default_note() -> String {
    "credited through the admin API".to_owned()
}

async fn credit(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    _: Operator,
    body: std::result::Result<Json<Credit>, JsonRejection>,
) -> Result<Json<Value>> {
    let Json(body) = body?;
    let id = account_id(&account)?;
    if body.note.chars().count() > 500 {
        return Err(AdminError::invalid("note is longer than 500 characters"));
    }
    let purse = purse(body.app_id.as_deref())?;
    let balance = super::credit(&*services.store, id, purse, body.amount, &body.note).await?;
    to_json(json!({"balance": balance}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerQuery {
    app_id: Option<String>,
}

async fn ledger(
    State(services): State<Arc<Services>>,
    Path(account): Path<String>,
    query: std::result::Result<Query<LedgerQuery>, QueryRejection>,
    _: Operator,
) -> Result<Json<Value>> {
    let Query(query) = query?;
    let id = account_id(&account)?;
    let purse = purse(query.app_id.as_deref())?;
    to_json(json!({"data": super::ledger(&*services.store, id, purse).await?}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kinora_core::ErrorCode;

    #[test]
    fn store_errors_keep_their_code_and_status() {
        let e = AdminError::from(Error::new(ErrorCode::NotFound, "no account x"));
        assert_eq!(e.status, StatusCode::NOT_FOUND);
        assert_eq!(e.code, "not_found");
        let e = AdminError::from(Error::invalid("bad"));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}

//! Operators' actions on accounts, apps, keys and balances. The `kinora` commands and the admin
//! HTTP API (`http`) both call these, so both behave the same.

pub mod http;

use kinora_core::{AccountId, Error, ErrorCode};
use kinora_store::{Account, App, KeyLimits, LedgerEntry, Purse, Store};
use serde::Serialize;

use crate::access_keys::{self, SecretBox};
use crate::auth;

/// Creates a tenant account. Accounts an operator creates are metered from the start (their
/// tasks need a balance) unless `metered` is false; only the bootstrap account starts free.
pub async fn create_account(
    store: &dyn Store,
    name: &str,
    metered: bool,
) -> Result<Account, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("an account name needs 1 to 100 characters"));
    }
    let mut account = store.create_account(name).await?;
    if metered {
        store.set_metering(account.id, true).await?;
        account.metered = true;
    }
    Ok(account)
}

/// Turns metering on or off for an account.
pub async fn set_metering(store: &dyn Store, account: AccountId, on: bool) -> Result<(), Error> {
    if store.set_metering(account, on).await? {
        Ok(())
    } else {
        Err(no_account(account))
    }
}

fn no_account(account: AccountId) -> Error {
    Error::new(ErrorCode::NotFound, format!("no account {account}"))
}

/// The account, or `not_found`.
pub async fn account(store: &dyn Store, account: AccountId) -> Result<Account, Error> {
    store
        .get_account(account)
        .await?
        .ok_or_else(|| no_account(account))
}

/// Adds an app to an existing account.
pub async fn create_app(
    store: &dyn Store,
    account: AccountId,
    name: &str,
    allow_general_balance: bool,
    limits: KeyLimits,
) -> Result<App, Error> {
    self::account(store, account).await?;
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("an app name needs 1 to 100 characters"));
    }
    let mut app = store
        .create_app(account, name, allow_general_balance)
        .await?;
    if limits != KeyLimits::default() {
        store.set_app_limits(account, app.id, limits).await?;
        app.limits = limits;
    }
    Ok(app)
}

/// Sets an app's per-key limits (`None` takes the server's default).
pub async fn set_app_limits(
    store: &dyn Store,
    account: AccountId,
    app: uuid::Uuid,
    limits: KeyLimits,
) -> Result<(), Error> {
    if store.set_app_limits(account, app, limits).await? {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::NotFound,
            format!("account {account} has no app {app}"),
        ))
    }
}

/// An account's balances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Balances {
    pub account_id: AccountId,
    pub metered: bool,
    /// Minor units (thousandths of a price unit).
    pub general_balance: i64,
    pub apps: Vec<App>,
}

pub async fn balances(store: &dyn Store, account: AccountId) -> Result<Balances, Error> {
    let found = self::account(store, account).await?;
    Ok(Balances {
        account_id: account,
        metered: found.metered,
        general_balance: store.general_balance(account).await?,
        apps: store.list_apps(account).await?,
    })
}

/// Credits (or, negative, debits) a purse; a positive credit meters the account.
pub async fn credit(
    store: &dyn Store,
    account: AccountId,
    purse: Purse,
    amount: i64,
    note: &str,
) -> Result<i64, Error> {
    self::account(store, account).await?;
    if amount == 0 {
        return Err(Error::invalid("the amount must not be 0"));
    }
    store.credit(account, purse, amount, note).await
}

pub async fn ledger(
    store: &dyn Store,
    account: AccountId,
    purse: Purse,
) -> Result<Vec<LedgerEntry>, Error> {
    self::account(store, account).await?;
    store.ledger(account, purse).await
}

/// Which kind of credential to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// A bearer secret.
    ApiKey,
    /// An access key and secret key that sign JWTs, as the official Kling API uses.
    AccessKey,
}

/// A credential just issued; the secret is shown only this once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuedCredential {
    pub id: uuid::Uuid,
    pub account_id: AccountId,
    pub app_id: Option<uuid::Uuid>,
    pub name: String,
    pub kind: &'static str,
    /// The API key (kind `api_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// The access key and secret key (kind `access_key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

/// Issues a credential for an account (the bootstrap account when `None`), optionally bound
/// to one of its apps.
pub async fn issue_credential(
    store: &dyn Store,
    secrets: &SecretBox,
    account: Option<AccountId>,
    app: Option<uuid::Uuid>,
    kind: KeyKind,
    name: &str,
) -> Result<IssuedCredential, Error> {
    let account = match account {
        Some(id) => self::account(store, id).await?.id,
        None => auth::default_account(store).await?,
    };
    match kind {
        KeyKind::ApiKey => {
            let issued = auth::issue_key(store, Some(account), app, name).await?;
            Ok(IssuedCredential {
                id: issued.key.id,
                account_id: account,
                app_id: issued.key.app_id,
                name: issued.key.name,
                kind: "api_key",
                api_key: Some(issued.secret),
                access_key: None,
                secret_key: None,
            })
        }
        KeyKind::AccessKey => {
            let issued = access_keys::issue_pair(store, secrets, account, app, name).await?;
            Ok(IssuedCredential {
                id: issued.key.id,
                account_id: account,
                app_id: issued.key.app_id,
                name: issued.key.name,
                kind: "access_key",
                api_key: None,
                access_key: Some(issued.key.access_key),
                secret_key: Some(issued.secret_key),
            })
        }
    }
}

/// A credential as listed: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CredentialInfo {
    pub id: uuid::Uuid,
    pub kind: &'static str,
    /// The API key's first characters, or the access key.
    pub shown: String,
    pub name: String,
    pub app_id: Option<uuid::Uuid>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

pub async fn list_credentials(
    store: &dyn Store,
    account: AccountId,
) -> Result<Vec<CredentialInfo>, Error> {
    self::account(store, account).await?;
    let mut listed: Vec<CredentialInfo> = store
        .list_api_keys(account)
        .await?
        .into_iter()
        .map(|k| CredentialInfo {
            id: k.id,
            kind: "api_key",
            shown: k.prefix,
            name: k.name,
            app_id: k.app_id,
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        })
        .collect();
    listed.extend(
        store
            .list_access_keys(account)
            .await?
            .into_iter()
            .map(|k| CredentialInfo {
                id: k.id,
                kind: "access_key",
                shown: k.access_key,
                name: k.name,
                app_id: k.app_id,
                created_at: k.created_at,
                revoked_at: k.revoked_at,
            }),
    );
    Ok(listed)
}

/// Revokes an API key or access key of the account.
pub async fn revoke_credential(
    store: &dyn Store,
    account: AccountId,
    id: uuid::Uuid,
) -> Result<(), Error> {
    if store.revoke_api_key(account, id).await? || store.revoke_access_key(account, id).await? {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::NotFound,
            format!("account {account} has no unrevoked key {id}"),
        ))
    }
}

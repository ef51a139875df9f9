//! Each account's webhook signing secrets. The HMAC needs the key itself, so a secret is
//! stored sealed (as access-key secrets are), bound to its account. A rotation adds a new
//! secret; the previous one keeps signing alongside it for [`ROTATION_WINDOW_MS`].

use kinora_core::{AccountId, Error};
use kinora_store::Store;
use tracing::warn;

use super::signing::WebhookSecret;
use crate::access_keys::SecretBox;

/// How long a replaced secret still signs (the official docs describe 7 days).
pub const ROTATION_WINDOW_MS: i64 = 7 * 86_400_000;

fn binding(account: AccountId) -> String {
    format!("webhook-secret:{account}")
}

/// Creates the account's first secret; an account that has one rotates it instead.
pub async fn create(
    store: &dyn Store,
    sealer: &SecretBox,
    account: AccountId,
) -> Result<WebhookSecret, Error> {
    if !store.webhook_secrets(account).await?.is_empty() {
        return Err(Error::invalid(format!(
            "account {account} already has a webhook secret; rotate it instead"
        )));
    }
    add(store, sealer, account).await
}

/// Replaces the account's secret with a new one; the old one signs for the rotation window.
pub async fn rotate(
    store: &dyn Store,
    sealer: &SecretBox,
    account: AccountId,
) -> Result<WebhookSecret, Error> {
    if store.webhook_secrets(account).await?.is_empty() {
        return Err(Error::invalid(format!(
            "account {account} has no webhook secret to rotate; create one first"
        )));
    }
    add(store, sealer, account).await
}

async fn add(
    store: &dyn Store,
    sealer: &SecretBox,
    account: AccountId,
) -> Result<WebhookSecret, Error> {
    let secret = WebhookSecret::generate();
    let sealed = sealer.seal(&binding(account), &secret.encoded())?;
    store.add_webhook_secret(account, sealed).await?;
    Ok(secret)
}

/// The secrets that sign the account's callbacks at `now_ms`, newest first: the current one
/// and those replaced less than the rotation window ago. Empty: callbacks go unsigned.
pub async fn signing_secrets(
    store: &dyn Store,
    sealer: &SecretBox,
    account: AccountId,
    now_ms: i64,
) -> Result<Vec<WebhookSecret>, Error> {
    let records = store.webhook_secrets(account).await?;
    let mut secrets = Vec::new();
    for record in records {
        if record
            .retired_at
            .is_some_and(|at| now_ms.saturating_sub(at) > ROTATION_WINDOW_MS)
        {
            continue;
        }
        match sealer
            .open(&binding(account), &record.secret_ciphertext)
            .and_then(|text| WebhookSecret::parse(&text))
        {
            Some(secret) => secrets.push(secret),
            // Sealed under another server key: it cannot sign, and saying so beats silence.
            None => {
                warn!(secret = %record.id, %account, "a webhook secret cannot be opened with this server's key")
            }
        }
    }
    Ok(secrets)
}

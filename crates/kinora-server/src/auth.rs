//! API keys: issuing them, the first start's bootstrap key, and resolving the credential a
//! request carries to the account it acts for.
//!
//! A key is `kin_` followed by 43 characters drawn uniformly from 62 (256 bits of entropy).
//! Only its SHA-256 is stored: with that much entropy a fast unsalted hash cannot be reversed,
//! and it lets each request find its key by one indexed lookup.

use axum::http::HeaderValue;
use kinora_core::{AccountId, Error, ErrorCode};
use kinora_store::{ApiKey, NewApiKey, Store};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::access_keys::{looks_like_jwt, verify_jwt, JwtRules, SecretBox};

/// Every secret starts with this, so leaked keys are easy to scan for.
pub const KEY_PREFIX: &str = "kin_";
/// Random characters after the prefix: 43 × log2(62) ≈ 256 bits.
const SECRET_CHARS: usize = 43;
/// Characters of the secret kept in the clear to recognise a key in listings.
const SHOWN_PREFIX_CHARS: usize = KEY_PREFIX.len() + 6;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The name of the account the first start creates.
pub const BOOTSTRAP_ACCOUNT: &str = "default";

/// A key just issued: the secret exists only here and is shown once.
#[derive(Debug)]
pub struct IssuedKey {
    pub secret: String,
    pub key: ApiKey,
}

/// A fresh secret from the operating system's CSPRNG (through the thread-local generator
/// `rand` seeds from it).
pub fn generate_secret() -> String {
    let mut rng = rand::rng();
    let mut secret = String::with_capacity(KEY_PREFIX.len() + SECRET_CHARS);
    secret.push_str(KEY_PREFIX);
    for _ in 0..SECRET_CHARS {
        secret.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    secret
}

/// Lowercase hex SHA-256 of a secret: what the store keeps and looks keys up by.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_key(name: &str, app: Option<uuid::Uuid>) -> (String, NewApiKey) {
    let secret = generate_secret();
    let key = NewApiKey {
        name: name.to_owned(),
        prefix: secret.chars().take(SHOWN_PREFIX_CHARS).collect(),
        secret_hash: hash_secret(&secret),
        app_id: app,
    };
    (secret, key)
}

/// On a database no process has bootstrapped yet, creates the `default` account with its
/// first key and returns the key (to be shown once); otherwise `None`.
pub async fn bootstrap(store: &dyn Store) -> Result<Option<IssuedKey>, Error> {
    let (secret, key) = new_key("bootstrap", None);
    Ok(store
        .bootstrap(BOOTSTRAP_ACCOUNT, key)
        .await?
        .map(|(_, key)| IssuedKey { secret, key }))
}

/// Issues a key for `account`, or for the bootstrap account when none is named (bootstrapping
/// the database first if no start has done so yet). A key of `app` spends that app's balance
/// under its limits; the app must belong to the account.
pub async fn issue_key(
    store: &dyn Store,
    account: Option<AccountId>,
    app: Option<uuid::Uuid>,
    name: &str,
) -> Result<IssuedKey, Error> {
    let account = match account {
        Some(id) => {
            store
                .get_account(id)
                .await?
                .ok_or_else(|| Error::new(ErrorCode::NotFound, format!("no account {id}")))?
                .id
        }
        None => default_account(store).await?,
    };
    let (secret, key) = new_key(name, app);
    let key = store.create_api_key(account, key).await?;
    Ok(IssuedKey { secret, key })
}

/// The bootstrap account, bootstrapping an empty database first. Keys made this way are the
/// only ones: the bootstrap's own key is revoked at once, since nobody was shown it.
pub async fn default_account(store: &dyn Store) -> Result<AccountId, Error> {
    if let Some(account) = store.bootstrap_account().await? {
        return Ok(account.id);
    }
    if let Some(issued) = bootstrap(store).await? {
        store
            .revoke_api_key(issued.key.account_id, issued.key.id)
            .await?;
    }
    store
        .bootstrap_account()
        .await?
        .map(|a| a.id)
        .ok_or_else(|| Error::internal("the database was bootstrapped without an account"))
}

/// Why a request's credential was refused. Each dialect renders these in its own shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization` header, another scheme, or an empty token.
    Missing,
    /// A malformed token, a bad signature or bad claims, or an API key that names no live key.
    Invalid,
    /// A well-formed JWT whose `iss` names no access key.
    UnknownKey,
    /// An access key an administrator revoked.
    Disabled,
    /// A JWT whose `nbf` is still ahead.
    NotYetValid,
    /// A JWT past its `exp`.
    Expired,
}

/// Who a request acts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: AccountId,
    /// The API key's or access key's id.
    pub key_id: uuid::Uuid,
    /// The key's app, whose balance and limits apply; `None`: the general balance.
    pub app: Option<uuid::Uuid>,
}

/// The token of an `Authorization: Bearer <token>` header: the scheme word in any case,
/// then one or more spaces.
pub fn bearer_token(header: Option<&HeaderValue>) -> Result<&str, AuthFailure> {
    let value = header
        .and_then(|h| h.to_str().ok())
        .ok_or(AuthFailure::Missing)?;
    let (scheme, rest) = value.split_at_checked(6).ok_or(AuthFailure::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with(' ') {
        return Err(AuthFailure::Missing);
    }
    let token = rest.trim_start_matches(' ').trim_end();
    if token.is_empty() {
        return Err(AuthFailure::Missing);
    }
    Ok(token)
}

/// Resolves a request's `Authorization` header to its caller: a JWT signed with an access-key
/// pair, or an API key. The outer error is a server fault (the database did not answer); the
/// inner one is the client's.
pub async fn authenticate(
    store: &dyn Store,
    jwt: (&SecretBox, JwtRules),
    now_ms: i64,
    header: Option<&HeaderValue>,
) -> Result<Result<Caller, AuthFailure>, Error> {
    let token = match bearer_token(header) {
        Ok(token) => token,
        Err(failure) => return Ok(Err(failure)),
    };
    if looks_like_jwt(token) {
        let (secrets, rules) = jwt;
        return Ok(
            verify_jwt(store, secrets, rules, token, now_ms.div_euclid(1000))
                .await?
                .map(|key| Caller {
                    account: key.account_id,
                    key_id: key.id,
                    app: key.app_id,
                }),
        );
    }
    api_key_caller(store, token).await
}

/// Resolves an `Authorization` header that must carry an API key (no JWT), as the CLI and
/// tools that hold only the store do.
pub async fn authenticate_api_key(
    store: &dyn Store,
    header: Option<&HeaderValue>,
) -> Result<Result<Caller, AuthFailure>, Error> {
    match bearer_token(header) {
        Ok(token) => api_key_caller(store, token).await,
        Err(failure) => Ok(Err(failure)),
    }
}

async fn api_key_caller(
    store: &dyn Store,
    token: &str,
) -> Result<Result<Caller, AuthFailure>, Error> {
    // Only well-formed secrets reach the database.
    let well_formed = token.len() == KEY_PREFIX.len() + SECRET_CHARS
        && token.starts_with(KEY_PREFIX)
        && token[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric());
    if !well_formed {
        return Ok(Err(AuthFailure::Invalid));
    }
    Ok(match store.find_api_key(&hash_secret(token)).await? {
        Some(key) => Ok(Caller {
            account: key.account_id,
            key_id: key.id,
            app: key.app_id,
        }),
        None => Err(AuthFailure::UnknownKey),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_hash_to_hex() {
        let a = generate_secret();
        let b = generate_secret();
        assert_ne!(a, b);
        assert_eq!(a.len(), KEY_PREFIX.len() + SECRET_CHARS);
        assert!(a.starts_with(KEY_PREFIX));
        assert!(a[KEY_PREFIX.len()..]
            .bytes()
            .all(|c| c.is_ascii_alphanumeric()));
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(
            hash_secret("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_with_any_number_of_spaces() {
        let h = |v: &str| HeaderValue::from_str(v).ok();
        assert_eq!(bearer_token(h("Bearer abc").as_ref()), Ok("abc"));
        assert_eq!(bearer_token(h("bearer    abc").as_ref()), Ok("abc"));
        assert_eq!(bearer_token(h("BEARER abc ").as_ref()), Ok("abc"));
        assert_eq!(bearer_token(None), Err(AuthFailure::Missing));
        assert_eq!(
            bearer_token(h("Bearer ").as_ref()),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            bearer_token(h("Bearerabc").as_ref()),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            bearer_token(h("Basic abc").as_ref()),
            Err(AuthFailure::Missing)
        );
    }
}

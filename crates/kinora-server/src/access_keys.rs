//! Access-key pairs and the JWTs the official dialect signs with them (HS256, `iss` = access
//! key, `exp`/`nbf` in Unix seconds).
//!
//! The secret key must stay usable for checking signatures, so it cannot be stored as a
//! one-way hash. It is sealed with XChaCha20-Poly1305 under a key that lives outside the
//! database (`auth.encryption_key`, or a key file in the data directory), with the access key
//! as associated data so a sealed secret cannot be moved to another row.

use std::path::Path;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use kinora_core::{AccountId, Error, ErrorCode};
use kinora_store::{AccessKey, NewAccessKey, Store};
use rand::Rng;
use serde_json::Value;
use sha2::Sha256;

use crate::auth::AuthFailure;
use crate::config::AuthConfig;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Access keys are `ak_` and 24 characters (public, but unguessable all the same).
const ACCESS_KEY_CHARS: usize = 24;
/// Secret keys are `sk_` and 43 characters: 256 bits.
const SECRET_KEY_CHARS: usize = 43;
/// Name of the key file used when the configuration gives no key.
pub const KEY_FILE: &str = "access-key-encryption.key";
const NONCE_BYTES: usize = 24;

fn random_text(prefix: &str, chars: usize) -> String {
    let mut rng = rand::rng();
    let mut text = String::with_capacity(prefix.len() + chars);
    text.push_str(prefix);
    for _ in 0..chars {
        text.push(char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]));
    }
    text
}

/// Seals and opens access-key secrets.
#[derive(Clone)]
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    /// The configured key, or the data directory's key file (created on first use, readable
    /// only by its owner).
    pub fn load(config: &AuthConfig, data_dir: &Path) -> Result<Self, Error> {
        let config_error = |m: String| Error::new(ErrorCode::Config, m);
        let hex = if config.encryption_key.is_empty() {
            let path = data_dir.join(KEY_FILE);
            match std::fs::read_to_string(&path) {
                Ok(text) => text.trim().to_owned(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key: [u8; 32] = rand::random();
                    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                    write_private(&path, &hex).map_err(|e| {
                        config_error(format!("cannot create {}: {e}", path.display()))
                    })?;
                    hex
                }
                Err(e) => return Err(config_error(format!("cannot read {}: {e}", path.display()))),
            }
        } else {
            config.encryption_key.clone()
        };
        let bytes = decode_hex(&hex)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or_else(|| {
                config_error("the access-key encryption key must be 64 hex digits".into())
            })?;
        Ok(Self::new(&bytes))
    }

    /// `base64(nonce ‖ ciphertext)` of `secret`, bound to `access_key`.
    pub fn seal(&self, access_key: &str, secret: &str) -> Result<String, Error> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let sealed = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: access_key.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("sealing an access-key secret failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// The secret sealed by [`SecretBox::seal`]; `None` when it was sealed under another key
    /// or for another access key, or has been altered.
    pub fn open(&self, access_key: &str, sealed: &str) -> Option<String> {
        let bytes = STANDARD.decode(sealed).ok()?;
        let (nonce, ciphertext) = bytes.split_at_checked(NONCE_BYTES)?;
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: access_key.as_bytes(),
                },
            )
            .ok()?;
        String::from_utf8(plain).ok()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A pair just issued: the secret exists only here and is shown once.
#[derive(Debug)]
pub struct IssuedPair {
    pub key: AccessKey,
    pub secret_key: String,
}

/// Issues an access-key pair for `account`.
pub async fn issue_pair(
    store: &dyn Store,
    secrets: &SecretBox,
    account: AccountId,
    app: Option<uuid::Uuid>,
    name: &str,
) -> Result<IssuedPair, Error> {
    let access_key = random_text("ak_", ACCESS_KEY_CHARS);
    let secret_key = random_text("sk_", SECRET_KEY_CHARS);
    let key = store
        .create_access_key(
            account,
            NewAccessKey {
                name: name.to_owned(),
                secret_ciphertext: secrets.seal(&access_key, &secret_key)?,
                access_key,
                app_id: app,
            },
        )
        .await?;
    Ok(IssuedPair { key, secret_key })
}

/// A JWT's parts, decoded but not yet trusted.
struct Jwt {
    signed: String,
    signature: Vec<u8>,
    header: Value,
    payload: Value,
}

/// Whether a bearer token is meant as a JWT: three non-empty dot-separated parts whose first
/// decodes to a JSON object with an `alg` member. Anything else is an API key.
pub fn looks_like_jwt(token: &str) -> bool {
    parse(token).is_some_and(|jwt| jwt.header.get("alg").is_some())
}

fn parse(token: &str) -> Option<Jwt> {
    let mut parts = token.split('.');
    let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || header.is_empty() || payload.is_empty() || signature.is_empty() {
        return None;
    }
    let json = |part: &str| -> Option<Value> {
        let bytes = URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()?;
        serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
    };
    Some(Jwt {
        signed: format!("{header}.{payload}"),
        signature: URL_SAFE_NO_PAD
            .decode(signature.trim_end_matches('='))
            .ok()?,
        header: json(header)?,
        payload: json(payload).unwrap_or(Value::Null),
    })
}

/// How a JWT is checked.
#[derive(Clone, Copy, Debug)]
pub struct JwtRules {
    pub leeway_seconds: i64,
    pub max_lifetime_seconds: i64,
}

impl From<&AuthConfig> for JwtRules {
    fn from(config: &AuthConfig) -> Self {
        Self {
            leeway_seconds: i64::try_from(config.jwt_leeway_seconds).unwrap_or(i64::MAX),
            max_lifetime_seconds: i64::try_from(config.jwt_max_lifetime_seconds)
                .unwrap_or(i64::MAX),
        }
    }
}

/// Checks a JWT at `now` (Unix seconds) and returns the access key it was signed with.
pub async fn verify_jwt(
    store: &dyn Store,
    secrets: &SecretBox,
    rules: JwtRules,
    token: &str,
    now: i64,
) -> Result<Result<AccessKey, AuthFailure>, Error> {
    let Some(jwt) = parse(token) else {
        return Ok(Err(AuthFailure::Invalid));
    };
    if jwt.header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return Ok(Err(AuthFailure::Invalid));
    }
    let Some(issuer) = jwt.payload.get("iss").and_then(Value::as_str) else {
        return Ok(Err(AuthFailure::Invalid));
    };
    let Some(key) = store.find_access_key(issuer).await? else {
        return Ok(Err(AuthFailure::UnknownKey));
    };
    let Some(secret) = secrets.open(&key.access_key, &key.secret_ciphertext) else {
        // The row cannot be read with this deployment's key: a configuration fault, not the
        // client's, but the client still cannot be let in.
        tracing::error!(
            access_key = %key.access_key,
            "an access-key secret does not open with the configured encryption key"
        );
        return Ok(Err(AuthFailure::Invalid));
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .map_err(|_| Error::internal("HMAC rejected a key"))?;
    mac.update(jwt.signed.as_bytes());
    if mac.verify_slice(&jwt.signature).is_err() {
        return Ok(Err(AuthFailure::Invalid));
    }
    // The signature is good: from here on the claims are the key holder's own.
    if key.revoked_at.is_some() {
        return Ok(Err(AuthFailure::Disabled));
    }
    let Some(exp) = jwt.payload.get("exp").and_then(Value::as_i64) else {
        return Ok(Err(AuthFailure::Invalid));
    };
    if now > exp.saturating_add(rules.leeway_seconds) {
        return Ok(Err(AuthFailure::Expired));
    }
    if exp > now.saturating_add(rules.max_lifetime_seconds) {
        return Ok(Err(AuthFailure::Invalid));
    }
    match jwt.payload.get("nbf") {
        None | Some(Value::Null) => {}
        Some(nbf) => match nbf.as_i64() {
            Some(nbf) if now.saturating_add(rules.leeway_seconds) < nbf => {
                return Ok(Err(AuthFailure::NotYetValid))
            }
            Some(_) => {}
            None => return Ok(Err(AuthFailure::Invalid)),
        },
    }
    Ok(Ok(key))
}

/// Signs an HS256 JWT for `access_key` (for clients, tests and the upstream adapter).
pub fn sign_jwt(access_key: &str, secret_key: &str, exp: i64, nbf: Option<i64>) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let mut claims = serde_json::json!({"iss": access_key, "exp": exp});
    if let (Some(nbf), Some(object)) = (nbf, claims.as_object_mut()) {
        object.insert("nbf".to_owned(), nbf.into());
    }
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signed = format!("{header}.{payload}");
    let signature = hmac_sign(secret_key, &signed);
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn hmac_sign(key: &str, message: &str) -> Vec<u8> {
    // HMAC takes keys of any length; the error arm cannot happen.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's test vector (kling-official.md §3.2).
    const VECTOR: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJBS19raW5vcmFfZXhhbXBsZSIsImV4cCI6MTczNjc2MDAwMCwibmJmIjoxNzM2NzU4MTk1fQ.yWn_REjkPRBkeVoVeudKyO0b4f2V898t6r6zuhPHk7s";

    #[test]
    fn the_published_test_vector_is_reproduced() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"iss":"AK_kinora_example","exp":1736760000,"nbf":1736758195}"#);
        let signed = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(hmac_sign("SK_kinora_example_secret", &signed));
        assert_eq!(format!("{signed}.{signature}"), VECTOR);
        assert!(looks_like_jwt(VECTOR));
        assert!(!looks_like_jwt("kin_abc"));
        assert!(!looks_like_jwt("a.b.c"));
        assert!(!looks_like_jwt(&format!("{header}..x")));
    }

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_access_key() {
        let secrets = SecretBox::new(&[7; 32]);
        let sealed = secrets.seal("ak_one", "sk_secret").expect("seal");
        assert_ne!(
            sealed,
            secrets.seal("ak_one", "sk_secret").expect("seal"),
            "fresh nonces"
        );
        assert_eq!(
            secrets.open("ak_one", &sealed).as_deref(),
            Some("sk_secret")
        );
        assert_eq!(secrets.open("ak_two", &sealed), None);
        assert_eq!(SecretBox::new(&[8; 32]).open("ak_one", &sealed), None);
        let mut tampered = STANDARD.decode(&sealed).expect("base64");
        if let Some(last) = tampered.last_mut() {
            *last ^= 1;
        }
        assert_eq!(secrets.open("ak_one", &STANDARD.encode(tampered)), None);
    }

    #[test]
    fn a_key_file_is_made_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = AuthConfig::default();
        let first = SecretBox::load(&config, dir.path()).expect("create");
        let sealed = first.seal("ak", "sk").expect("seal");
        let again = SecretBox::load(&config, dir.path()).expect("reuse");
        assert_eq!(again.open("ak", &sealed).as_deref(), Some("sk"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let configured = AuthConfig {
            encryption_key: "11".repeat(32),
            ..AuthConfig::default()
        };
        let from_config = SecretBox::load(&configured, dir.path()).expect("configured");
        assert_eq!(from_config.open("ak", &sealed), None);
    }
}

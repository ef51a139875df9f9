//! Standard Webhooks signatures (`kling-official.md` §11.3): `webhook-id`,
//! `webhook-timestamp`, and `webhook-signature` = `v1,` + base64(HMAC-SHA256(key,
//! "{id}.{timestamp}.{body}")), one entry per active secret, space-separated during a
//! rotation. Secrets are `whsec_` + base64 of the key bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// Key bytes of a secret kinora generates.
const GENERATED_KEY_BYTES: usize = 32;

/// A webhook signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let key: [u8; GENERATED_KEY_BYTES] = rand::random();
        Self { key: key.to_vec() }
    }

    /// Reads `whsec_<base64>`; `None` for anything else or an empty key.
    pub fn parse(text: &str) -> Option<Self> {
        let key = STANDARD.decode(text.strip_prefix(PREFIX)?).ok()?;
        (!key.is_empty()).then_some(Self { key })
    }

    /// The `whsec_...` form a receiver configures.
    pub fn encoded(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.key))
    }

    /// `v1,<base64 HMAC>` of one message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length.
        let mut mac = match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mac) => mac,
            Err(_) => return String::new(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header: one entry per secret, in the order given.
pub fn signature_header(
    secrets: &[WebhookSecret],
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A message id: `msg_` and 32 lowercase hex characters, the same for every retry.
pub fn message_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI=";

    #[test]
    fn the_published_vector() {
        let secret = WebhookSecret::parse(SECRET).expect("secret");
        let body = br#"{"id":"1234567890","status":"succeeded","message":"","create_time":1781080778802,"update_time":1781080794151}"#;
        assert_eq!(
            secret.sign("9876543210", 1_781_080_794, body),
            "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="
        );
    }

    #[test]
    fn the_legacy_body_vector() {
        let secret = WebhookSecret::parse(SECRET).expect("secret");
        let body = br#"{"task_id":"01945ee4-2e80-70a1-b2c3-d4e5f6071829","task_status":"succeed","task_status_msg":"","task_info":{"external_task_id":""},"created_at":1736758800000,"updated_at":1736758980000}"#;
        assert_eq!(
            secret.sign("msg_3f1a9c0e5b7d4e2f8a6c1b0d9e7f5a3c", 1_736_758_981, body),
            "v1,EB7FQ8yas2xxID/1ZsKXU4i7mmNsRExgf3EYzxgjv1Y="
        );
    }

    #[test]
    fn secrets_round_trip_and_rotation_signs_with_each() {
        let old = WebhookSecret::generate();
        let new = WebhookSecret::generate();
        assert_eq!(WebhookSecret::parse(&old.encoded()), Some(old.clone()));
        assert_eq!(WebhookSecret::parse("whsec_"), None);
        assert_eq!(WebhookSecret::parse("secret"), None);
        let header = signature_header(&[new.clone(), old.clone()], "msg_1", 1, b"{}");
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            entries,
            [new.sign("msg_1", 1, b"{}"), old.sign("msg_1", 1, b"{}")]
        );
        let id = message_id();
        assert!(
            id.starts_with("msg_")
                && id.len() == 36
                && id[4..].bytes().all(|b| b.is_ascii_hexdigit())
        );
    }
}

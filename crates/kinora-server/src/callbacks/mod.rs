//! Callbacks: task status changes delivered to the task's `callback_url` in its dialect's
//! payload, signed with the Standard Webhooks scheme when the account has a secret. Events are
//! recorded by the pipeline as tasks change (`outbox`), delivered by the `callback.deliver`
//! job (`deliver`), and listed for operators with every attempt.

pub mod deliver;
pub mod http;
pub mod outbox;
pub mod secrets;
pub mod signing;

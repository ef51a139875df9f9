//! What a submit must pass besides its fields: the key's request rate (before the body is
//! parsed), and its price (held with the task, see `Store::admit_task`). The order is the
//! specs' shared one: authentication → request rate → parsing … → idempotency → concurrency →
//! balance → create and charge.

use std::collections::HashMap;
use std::sync::Mutex;

use kinora_core::request::GenerationRequest;
use kinora_core::{TaskKind, TaskState};
use kinora_media::stage::StagedInput;
use kinora_store::{Admission, KeyLimits, PriceHold, Purse, SubmitTerms};
use serde_json::Value;

use super::prices::{PriceTable, Priced};
use crate::auth::Caller;
use crate::config::LimitsConfig;

/// How long a client told "too many tasks in flight" should wait before it tries again: tasks
/// take tens of seconds, so sooner would only be refused again.
pub const CONCURRENCY_RETRY_AFTER_SECONDS: u64 = 5;

/// An extension is priced as this much output of its source's model and mode (§14).
const EXTENSION_PRICED_MS: u64 = 5_000;

/// Output frames per second of every kinora result.
const FRAMES_PER_SECOND: u64 = 24;

/// Why a submit was turned away before its task existed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitRefusal {
    /// Over the key's submits per second; try again after this many seconds.
    RateLimited { retry_after_seconds: u64 },
}

/// The limits that apply to a key: its app's, else the server's defaults (0: none).
pub fn effective_limits(app: KeyLimits, defaults: &LimitsConfig) -> KeyLimits {
    let or_default = |own: Option<u32>, default: u32| own.or((default > 0).then_some(default));
    KeyLimits {
        submits_per_second: or_default(app.submits_per_second, defaults.submits_per_second)
            .filter(|n| *n > 0),
        max_in_flight: or_default(app.max_in_flight, defaults.max_in_flight).filter(|n| *n > 0),
    }
}

/// Per-key token buckets for submits, in this process: a key may submit `rate` times in any
/// second, with bursts of up to `rate`. Several processes behind one balancer each allow the
/// rate (documented in the README's limits section).
#[derive(Debug, Default)]
pub struct SubmitRate {
    buckets: Mutex<HashMap<uuid::Uuid, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at_ms: i64,
}

/// Buckets untouched this long are full again and can be forgotten.
const IDLE_BUCKET_MS: i64 = 60_000;

impl SubmitRate {
    /// Takes one submit from the key's bucket, or says how many whole seconds until one is
    /// there.
    pub fn take(&self, key: uuid::Uuid, rate: u32, now_ms: i64) -> Result<(), SubmitRefusal> {
        let rate = f64::from(rate.max(1));
        let mut buckets = match self.buckets.lock() {
            Ok(guard) => guard,
            // A panic elsewhere cannot leave a bucket half-written; keep counting.
            Err(poisoned) => poisoned.into_inner(),
        };
        if buckets.len() > 10_000 {
            buckets.retain(|_, b| now_ms - b.at_ms < IDLE_BUCKET_MS);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: rate,
            at_ms: now_ms,
        });
        let elapsed = (now_ms - bucket.at_ms).max(0) as f64 / 1000.0;
        bucket.tokens = (bucket.tokens + elapsed * rate).min(rate);
        bucket.at_ms = now_ms;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate;
        Err(SubmitRefusal::RateLimited {
            retry_after_seconds: wait.ceil().max(1.0) as u64,
        })
    }
}

/// Checks the key's submit rate; the answer is the terms the task will be admitted under, its
/// limits with the server's defaults filled in.
pub fn check_rate(
    rate: &SubmitRate,
    caller: Caller,
    terms: SubmitTerms,
    defaults: &LimitsConfig,
    now_ms: i64,
) -> Result<SubmitTerms, SubmitRefusal> {
    let limits = effective_limits(terms.limits, defaults);
    if let Some(per_second) = limits.submits_per_second {
        rate.take(caller.key_id, per_second, now_ms)?;
    }
    Ok(SubmitTerms { limits, ..terms })
}

/// The output length a request is priced for before it runs: motion control by its
/// reference video, an edit of a base video by the input's length, an extension by the fixed
/// extension length, everything else by its `duration` (5 s when absent).
pub fn expected_output_ms(
    kind: TaskKind,
    request: &GenerationRequest,
    staged: &[StagedInput],
) -> u64 {
    let staged_length = |key: &str| {
        staged
            .iter()
            .find(|s| s.key == key)
            .and_then(|s| s.duration_ms)
    };
    if kind == TaskKind::VideoExtend {
        return EXTENSION_PRICED_MS;
    }
    if let Some(length) = request
        .motion_control
        .as_ref()
        .and_then(|m| staged_length(&m.video.key))
    {
        return length;
    }
    if let Some(length) = request
        .video_reference
        .as_ref()
        .filter(|v| v.refer_type == "base")
        .and_then(|v| staged_length(&v.video.key))
    {
        return length;
    }
    u64::from(request.duration.unwrap_or(5)) * 1000
}

/// Everything a request's price depends on.
pub struct Quote<'a> {
    pub model: &'a str,
    pub kind: TaskKind,
    pub request: &'a GenerationRequest,
    pub voice_billed: bool,
    pub expected_ms: u64,
}

/// Why a metered request cannot be priced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unpriced {
    pub message: String,
}

/// The hold for a request on a metered account, paid from the key's app (or the general
/// balance for a key without one).
pub fn price_hold(
    table: &PriceTable,
    quote: &Quote<'_>,
    app: Option<uuid::Uuid>,
) -> Result<PriceHold, Unpriced> {
    let priced = Priced {
        model: quote.model,
        kind: crate::official::task::feature(quote.kind),
        mode: quote.request.mode.as_deref().unwrap_or("std"),
        sound: quote.request.sound,
        voices: quote.voice_billed,
        reference_video: quote.request.video_reference.is_some(),
        duration_ms: quote.expected_ms,
    };
    let unpriced = || Unpriced {
        message: format!(
            "the price table has no price for {} {} in {} mode; the operator must add one \
             before this account can use it",
            priced.model, priced.kind, priced.mode
        ),
    };
    let per_second = table.per_second(&priced).ok_or_else(unpriced)?;
    let price = table.price(&priced).ok_or_else(unpriced)?;
    Ok(PriceHold {
        purse: app.map_or(Purse::General, Purse::App),
        per_second,
        price,
    })
}

/// The admission of a task submitted under `permit` (the terms [`check_rate`] answered);
/// `hold` is `None` unless metered.
pub fn admission(caller: Caller, permit: SubmitTerms, hold: Option<PriceHold>) -> Admission {
    Admission {
        key_id: Some(caller.key_id),
        max_in_flight: permit.limits.max_in_flight,
        charge: hold,
    }
}

/// The output length a succeeded task is billed for: its videos' frames at 24 fps, rounded up
/// to a millisecond; `None` (the whole hold) for an extension, whose price is fixed.
pub fn billed_output_ms(kind: TaskKind, result: &Value) -> Option<u64> {
    if kind == TaskKind::VideoExtend {
        return None;
    }
    let frames: u64 = result
        .get("videos")?
        .as_array()?
        .iter()
        .filter_map(|v| v.get("frame_count").and_then(Value::as_u64))
        .sum();
    Some((frames * 1000).div_ceil(FRAMES_PER_SECOND))
}

/// `final_unit_deduction` and friends: a charge in minor units as a decimal in units, with no
/// trailing zeros (`2500` → `"2.5"`, `0` → `"0"`).
pub fn units_text(minor: i64) -> String {
    let per_unit = super::prices::MINOR_UNITS_PER_UNIT;
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    let per_unit = per_unit.unsigned_abs();
    let (whole, fraction) = (minor / per_unit, minor % per_unit);
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let fraction = format!("{fraction:03}");
    format!("{sign}{whole}.{}", fraction.trim_end_matches('0'))
}

/// What a task shows as charged once it ended: its captured price, 0 when nothing was charged
/// (a failure, or an unmetered account); `None` while it runs.
pub fn final_charge(state: TaskState, charged: Option<i64>) -> Option<i64> {
    state.is_terminal().then(|| charged.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_key_gets_its_rate_with_bursts_and_a_wait_in_whole_seconds() {
        let rate = SubmitRate::default();
        let key = uuid::Uuid::now_v7();
        assert_eq!(rate.take(key, 2, 0), Ok(()));
        assert_eq!(rate.take(key, 2, 0), Ok(()));
        assert_eq!(
            rate.take(key, 2, 0),
            Err(SubmitRefusal::RateLimited {
                retry_after_seconds: 1
            })
        );
        // Half a second refills one submit at 2 a second.
        assert_eq!(rate.take(key, 2, 500), Ok(()));
        assert!(rate.take(key, 2, 500).is_err());
        // Another key has its own bucket.
        assert_eq!(rate.take(uuid::Uuid::now_v7(), 2, 500), Ok(()));
    }

    #[test]
    fn an_apps_limits_override_the_defaults_and_zero_means_none() {
        let defaults = LimitsConfig {
            submits_per_second: 5,
            max_in_flight: 0,
        };
        let own = KeyLimits {
            submits_per_second: None,
            max_in_flight: Some(3),
        };
        assert_eq!(
            effective_limits(own, &defaults),
            KeyLimits {
                submits_per_second: Some(5),
                max_in_flight: Some(3)
            }
        );
        let lifted = KeyLimits {
            submits_per_second: Some(0),
            max_in_flight: None,
        };
        assert_eq!(effective_limits(lifted, &defaults), KeyLimits::default());
    }

    #[test]
    fn output_is_billed_by_its_frames_and_extensions_by_their_hold() {
        let result = json!({"videos": [{"frame_count": 121}]});
        assert_eq!(billed_output_ms(TaskKind::Text2Video, &result), Some(5_042));
        assert_eq!(billed_output_ms(TaskKind::VideoExtend, &result), None);
        assert_eq!(billed_output_ms(TaskKind::Text2Video, &json!({})), None);
    }

    #[test]
    fn charges_print_as_units() {
        assert_eq!(units_text(2_500), "2.5");
        assert_eq!(units_text(0), "0");
        assert_eq!(units_text(4_000), "4");
        assert_eq!(units_text(1_125), "1.125");
        assert_eq!(units_text(30), "0.03");
    }

    #[test]
    fn requests_are_priced_by_their_expected_output() {
        let table = PriceTable::parse(super::super::prices::DEFAULT_PRICES).expect("table");
        let request = GenerationRequest {
            duration: Some(10),
            mode: Some("pro".into()),
            ..GenerationRequest::text("a cat")
        };
        let quote = Quote {
            model: "kling-v3",
            kind: TaskKind::Text2Video,
            request: &request,
            voice_billed: false,
            expected_ms: expected_output_ms(TaskKind::Text2Video, &request, &[]),
        };
        let app = uuid::Uuid::now_v7();
        assert_eq!(
            price_hold(&table, &quote, Some(app)),
            Ok(PriceHold {
                purse: Purse::App(app),
                per_second: 800,
                price: 8_000
            })
        );
        let unknown = Quote {
            model: "no-such-model",
            ..quote
        };
        let refused = price_hold(&table, &unknown, None).map_err(|e| e.message);
        assert!(refused.is_err_and(|m| m.contains("no-such-model")));
    }
}

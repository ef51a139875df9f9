//! Callbacks end to end with a real receiver on loopback (allow-listed in the test config):
//! each dialect's payloads, Standard Webhooks signatures checked by an implementation written
//! here, retries after failures with every attempt recorded, strict order per task, and
//! refused targets.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use common::{serve_with, Server};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

mod common;

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: String,
    answered: u16,
}

/// A receiver that answers 500 to its first `failures` requests, then 200.
#[derive(Clone)]
struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(failures: usize) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let log: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = log.clone();
        let app = axum::Router::new().fallback(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut log = seen.lock().unwrap_or_else(|e| e.into_inner());
                let status = if log.len() < failures {
                    StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    StatusCode::OK
                };
                log.push(Received {
                    headers,
                    body,
                    answered: status.as_u16(),
                });
                status
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, log }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until `count` requests were answered 2xx.
    async fn delivered(&self, count: usize) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let ok: Vec<Received> = self
                .received()
                .into_iter()
                .filter(|r| r.answered == 200)
                .collect();
            if ok.len() >= count || Instant::now() > deadline {
                return ok;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn server() -> Server {
    serve_with(|config| {
        config.fetch.allow = vec!["127.0.0.1".into()];
        config.callbacks.retry_delays_seconds = vec![1; 7];
    })
    .await
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

/// The Standard Webhooks check, written from the scheme's description rather than with
/// kinora's signing code: HMAC-SHA256 over "id.timestamp.body" with the base64-decoded key.
fn verifies(secret: &str, r: &Received) -> bool {
    let Some(key) = secret
        .strip_prefix("whsec_")
        .and_then(|k| STANDARD.decode(k).ok())
    else {
        return false;
    };
    let signed = format!(
        "{}.{}.{}",
        header(r, "webhook-id"),
        header(r, "webhook-timestamp"),
        r.body
    );
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return false;
    };
    mac.update(signed.as_bytes());
    let expected = STANDARD.encode(mac.finalize().into_bytes());
    header(r, "webhook-signature")
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .any(|sig| sig == expected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_dialect_calls_back_in_its_own_payload_signed_and_in_order() {
    let server = server().await;
    let store = server.services.store.clone();
    let account = store
        .bootstrap_account()
        .await
        .expect("store")
        .expect("account")
        .id;
    let secret =
        kinora_server::callbacks::secrets::create(&*store, &server.services.secrets, account)
            .await
            .expect("secret")
            .encoded();
    let receiver = Receiver::start(0).await;
    let hook = receiver.url.clone();

    // Unified: processing, then completed.
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "a paper boat", "callback_url": hook}))
        .await;
    assert_eq!(status, 200, "{created}");
    let unified_id = created["id"].as_str().expect("id").to_owned();
    // Official: processing, then succeed; the bare task object.
    let (status, official) = common::official_post(
        &server,
        &server.key,
        "/v1/videos/text2video",
        json!({"prompt": "a kite", "callback_url": hook, "external_task_id": "kite-cb"}),
    )
    .await;
    assert_eq!(status, 200, "{official}");
    let official_id = official["data"]["task_id"].as_str().expect("id").to_owned();
    // AceData: one callback when it ends, the success body with the trace id.
    let (status, ace) = common::official_post(
        &server,
        &server.key,
        "/kling/videos",
        json!({"action": "text2video", "prompt": "a mug", "callback_url": hook}),
    )
    .await;
    assert_eq!(status, 200, "{ace}");
    let ace_id = ace["task_id"].as_str().expect("id").to_owned();

    let got = receiver.delivered(5).await;
    assert_eq!(got.len(), 5, "{got:?}");
    for r in &got {
        assert!(verifies(&secret, r), "signature of {}", r.body);
        assert_eq!(header(r, "content-type"), "application/json; charset=utf-8");
        let id = header(r, "webhook-id");
        assert!(id.starts_with("msg_") && id.len() == 36, "{id}");
        let ts: i64 = header(r, "webhook-timestamp").parse().expect("timestamp");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        assert!((now - ts).abs() < 300);
    }
    let bodies: Vec<Value> = got
        .iter()
        .map(|r| serde_json::from_str(&r.body).expect("JSON"))
        .collect();
    let of = |pick: &dyn Fn(&Value) -> bool| -> Vec<Value> {
        bodies.iter().filter(|b| pick(b)).cloned().collect()
    };
    let unified = of(&|b| b["id"] == json!(unified_id));
    assert_eq!(
        unified
            .iter()
            .map(|b| b["status"].clone())
            .collect::<Vec<_>>(),
        [json!("processing"), json!("completed")]
    );
    let (_, _, now_unified) = server
        .get(&server.key, &format!("/v1/videos/{unified_id}"))
        .await;
    assert_eq!(
        unified[1], now_unified,
        "the final callback is what GET returns"
    );
    let official = of(&|b| b["task_id"] == json!(official_id));
    assert_eq!(
        official
            .iter()
            .map(|b| b["task_status"].clone())
            .collect::<Vec<_>>(),
        [json!("processing"), json!("succeed")]
    );
    assert!(official[1].get("code").is_none(), "no envelope");
    let (_, now_official) = common::official_get(
        &server,
        Some(&server.key),
        &format!("/v1/videos/text2video/{official_id}"),
    )
    .await;
    assert_eq!(official[1], now_official["data"]);
    let ace_bodies = of(&|b| b["task_id"] == json!(ace_id) && b.get("success").is_some());
    assert_eq!(ace_bodies.len(), 1, "{ace_bodies:?}");
    assert_eq!(
        (
            &ace_bodies[0]["success"],
            &ace_bodies[0]["state"],
            &ace_bodies[0]["trace_id"]
        ),
        (&json!(true), &json!("succeed"), &ace["trace_id"])
    );

    // Every attempt is listed, per task.
    let (status, _, listed) = server
        .get(
            &server.key,
            &format!("/kinora/v1/tasks/{unified_id}/callbacks"),
        )
        .await;
    assert_eq!(status, 200, "{listed}");
    let events = listed["data"].as_array().expect("events").clone();
    assert_eq!(events.len(), 2);
    assert_eq!(
        events
            .iter()
            .map(|e| e["phase"].clone())
            .collect::<Vec<_>>(),
        [json!("processing"), json!("ended")]
    );
    assert!(events
        .iter()
        .all(|e| e["state"] == "delivered" && e["attempts"][0]["http_status"] == 200));

    // After a rotation both secrets sign, and each signature verifies on its own.
    let rotated =
        kinora_server::callbacks::secrets::rotate(&*store, &server.services.secrets, account)
            .await
            .expect("rotate")
            .encoded();
    let (status, more) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "after the rotation", "callback_url": receiver.url}))
        .await;
    assert_eq!(status, 200, "{more}");
    let later = receiver.delivered(7).await;
    let newest: Vec<&Received> = later
        .iter()
        .filter(|r| r.body.contains(more["id"].as_str().unwrap_or("?")))
        .collect();
    assert_eq!(newest.len(), 2);
    for r in newest {
        assert_eq!(header(r, "webhook-signature").split(' ').count(), 2);
        assert!(verifies(&secret, r) && verifies(&rotated, r));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redirects_are_answers_not_followed() {
    let server = server().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let target = format!("http://{}/moved", listener.local_addr().expect("addr"));
    let hits: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = hits.clone();
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(uri.path().to_owned());
            (StatusCode::FOUND, [("location", "/elsewhere")])
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "moved", "callback_url": target}))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    let listed = loop {
        let (_, _, listed) = server
            .get(&server.key, &format!("/kinora/v1/tasks/{id}/callbacks"))
            .await;
        if listed["data"][0]["attempts_made"].as_u64() >= Some(2) || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let attempt = &listed["data"][0]["attempts"][0];
    assert_eq!(attempt["http_status"], 302, "{listed}");
    assert_eq!(
        attempt["error"],
        "the receiver answered HTTP 302 (redirects are not followed)"
    );
    let paths = hits.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(paths.iter().all(|p| p == "/moved"), "{paths:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_receiver_gets_each_event_once_after_its_retries() {
    let server = server().await;
    let receiver = Receiver::start(3).await;
    let (status, created) = server
        .submit(json!({"model": "Kling-V2.6", "prompt": "retried", "callback_url": receiver.url}))
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let ok = receiver.delivered(2).await;
    // Exactly one successful delivery per event, the earlier status first.
    let delivered_ids: Vec<String> = ok
        .iter()
        .map(|r| header(r, "webhook-id").to_owned())
        .collect();
    assert_eq!(delivered_ids.len(), 2);
    assert_ne!(delivered_ids[0], delivered_ids[1]);
    let statuses: Vec<Value> = ok
        .iter()
        .map(|r| serde_json::from_str::<Value>(&r.body).expect("JSON")["status"].clone())
        .collect();
    assert_eq!(statuses, [json!("processing"), json!("completed")]);
    // The three failures went to the first event, with the same webhook-id each time, and
    // the second event waited for it.
    let all = receiver.received();
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all[..4]
        .iter()
        .all(|r| header(r, "webhook-id") == delivered_ids[0]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.received().len(),
        5,
        "nothing is sent twice once delivered"
    );
    let (_, _, listed) = server
        .get(&server.key, &format!("/kinora/v1/tasks/{id}/callbacks"))
        .await;
    let first = &listed["data"][0];
    assert_eq!(
        (first["state"].as_str(), first["attempts_made"].as_u64()),
        (Some("delivered"), Some(4))
    );
    let attempts = first["attempts"].as_array().expect("attempts");
    assert_eq!(
        attempts
            .iter()
            .map(|a| a["http_status"].clone())
            .collect::<Vec<_>>(),
        [json!(500), json!(500), json!(500), json!(200)]
    );
    assert!(attempts[..3]
        .iter()
        .all(|a| a["error"] == "the receiver answered HTTP 500"));
    assert!(attempts[3]["error"].is_null());
    assert_eq!(listed["data"][1]["attempts_made"], 1);
    // Another account cannot read them.
    let other_key = server.other_account_key().await;
    let (status, _, _) = server
        .get(&other_key, &format!("/kinora/v1/tasks/{id}/callbacks"))
        .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_receiver_that_never_answers_2xx_is_given_up_after_eight_attempts() {
    let server = server().await;
    let receiver = Receiver::start(usize::MAX).await;
    let (status, created) = common::official_post(
        &server,
        &server.key,
        "/kling/videos",
        json!({"action": "text2video", "prompt": "nobody listens", "callback_url": receiver.url}),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let id = created["task_id"].as_str().expect("id").to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    let listed = loop {
        let (_, _, listed) = server
            .get(&server.key, &format!("/kinora/v1/tasks/{id}/callbacks"))
            .await;
        if listed["data"][0]["state"] == "given_up" || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let event = &listed["data"][0];
    assert_eq!(
        (event["state"].as_str(), event["attempts_made"].as_u64()),
        (Some("given_up"), Some(8)),
        "{listed}"
    );
    assert_eq!(receiver.received().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callback_targets_the_guard_refuses_are_refused_at_submit_in_every_dialect() {
    // No allow-list here: loopback and link-local are refused.
    let server = serve_with(|_| {}).await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
    ] {
        let (status, unified) = server
            .submit(json!({"model": "Kling-V2.6", "prompt": "p", "callback_url": url}))
            .await;
        assert_eq!(
            (status, unified["error"]["param"].as_str()),
            (400, Some("callback_url")),
            "{unified}"
        );
        let (status, official) = common::official_post(
            &server,
            &server.key,
            "/v1/videos/text2video",
            json!({"prompt": "p", "callback_url": url}),
        )
        .await;
        assert_eq!(
            (status, official["code"].as_i64()),
            (400, Some(1201)),
            "{official}"
        );
        let (status, ace) = common::official_post(
            &server,
            &server.key,
            "/kling/videos",
            json!({"action": "text2video", "prompt": "p", "callback_url": url}),
        )
        .await;
        assert_eq!(
            (status, ace["error"]["code"].as_str()),
            (400, Some("bad_request")),
            "{ace}"
        );
        assert!(ace["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("callback_url"));
    }
    let account = server.account().await;
    assert!(server
        .services
        .store
        .list_tasks(account, None, 1, 10)
        .await
        .expect("list")
        .is_empty());
}

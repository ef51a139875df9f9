//! Billing and per-key limits over real HTTP: a metered task's price is held at submit,
//! captured at its actual output length when it succeeds and refunded in full when it fails;
//! a short balance and the per-key submit rate and in-flight limits are refused in each
//! dialect's own words (with Retry-After on the limits); concurrent submits on one key never
//! overdraw; the admin API manages accounts, apps, keys and balances behind its token.

use std::time::{Duration, Instant};

use common::{serve_with, Server};
use kinora_core::AccountId;
use kinora_server::config::ChannelConfig;
use kinora_server::store::{KeyLimits, Purse};
use kinora_server::{admin, Config};
use kinora_testkit::{MockConfig, MockKling, FAIL_MARKER};
use serde_json::{json, Value};

mod common;

/// 5 s of kling-v2-6 std at 0.3 a second (config/prices.toml), in thousandths.
const FIVE_SECONDS_STD: i64 = 1_500;

async fn start_mock(task_duration: Duration) -> MockKling {
    let config = MockConfig {
        task_duration,
        result_seconds: Some(5),
        ..MockConfig::default()
    };
    MockKling::start(config, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("mock")
}

/// A server whose kling-v2-6 runs on the mock Kling API (no renders).
async fn serve_on_mock(mock: &MockKling, adjust: impl FnOnce(&mut Config)) -> Server {
    let defaults = MockConfig::default();
    let channel = ChannelConfig {
        name: "kling".into(),
        base_url: mock.base_url().to_owned(),
        access_key: defaults.access_key,
        secret_key: defaults.secret_key,
        ..ChannelConfig::default()
    };
    serve_with(move |config| {
        config.queue.retry_base_ms = 50;
        config.channels = vec![channel];
        config
            .routes
            .insert("kling-v2-6".into(), vec!["kling".into()]);
        adjust(config);
    })
    .await
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

async fn call(server: &Server, key: &str, method: &str, path: &str, body: Option<Value>) -> Answer {
    let client = reqwest::Client::new();
    let url = format!("{}{path}", server.base);
    let mut request = match method {
        "GET" => client.get(url),
        "PUT" => client.put(url),
        "DELETE" => client.delete(url),
        _ => client.post(url),
    }
    .header("authorization", format!("Bearer {key}"));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("send");
    Answer {
        status: response.status().as_u16(),
        retry_after: response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: response.json().await.unwrap_or(Value::Null),
    }
}

/// A submit in each dialect, with the path it goes to.
fn submits(prompt: &str) -> [(&'static str, Value); 3] {
    [
        (
            "/v1/videos",
            json!({"model": "kling-v2-6", "prompt": prompt}),
        ),
        (
            "/v1/videos/text2video",
            json!({"model_name": "kling-v2-6", "prompt": prompt}),
        ),
        (
            "/kling/videos",
            json!({"action": "text2video", "model": "kling-v2-6", "prompt": prompt, "async": true}),
        ),
    ]
}

const UNIFIED: usize = 0;
const OFFICIAL: usize = 1;

/// Submits `prompt` in the dialect at `index` of [`submits`].
async fn submit(server: &Server, key: &str, index: usize, prompt: &str) -> Answer {
    let (path, body) = submits(prompt).into_iter().nth(index).expect("a dialect");
    call(server, key, "POST", path, Some(body)).await
}

/// The error code an answer carries, in whichever dialect's shape.
fn code_of(body: &Value) -> String {
    match &body["error"]["code"] {
        Value::String(code) => code.clone(),
        Value::Null => body["code"].to_string(),
        other => other.to_string(),
    }
}

async fn general_balance(server: &Server, account: AccountId) -> i64 {
    server
        .services
        .store
        .general_balance(account)
        .await
        .expect("balance")
}

async fn ledger_sum(server: &Server, account: AccountId, purse: Purse) -> i64 {
    server
        .services
        .store
        .ledger(account, purse)
        .await
        .expect("ledger")
        .iter()
        .map(|e| e.amount)
        .sum()
}

/// The official task object once the task ended.
async fn official_when_done(server: &Server, key: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = call(
            server,
            key,
            "GET",
            &format!("/v1/videos/text2video/{id}"),
            None,
        )
        .await;
        let data = answer.body["data"].clone();
        if matches!(data["task_status"].as_str(), Some("succeed" | "failed"))
            || Instant::now() > deadline
        {
            return data;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_metered_task_is_held_captured_by_its_output_and_a_failed_one_refunded() {
    let mock = start_mock(Duration::from_millis(300)).await;
    let server = serve_on_mock(&mock, |_| {}).await;
    let account = server.account().await;
    let store = &server.services.store;
    // A fresh install is unmetered: nothing is held or charged.
    let free = submit(&server, &server.key, OFFICIAL, "free").await;
    assert_eq!(free.status, 200, "{}", free.body);
    let free_id = free.body["data"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    let done = official_when_done(&server, &server.key, &free_id).await;
    assert_eq!(
        (
            done["task_status"].as_str(),
            done["final_unit_deduction"].as_str()
        ),
        (Some("succeed"), Some("0"))
    );
    assert!(store
        .ledger(account, Purse::General)
        .await
        .expect("ledger")
        .is_empty());

    // A credit meters the account: the price is held at submit.
    store
        .credit(account, Purse::General, 10_000, "top-up")
        .await
        .expect("credit");
    let paid = submit(&server, &server.key, OFFICIAL, "paid").await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    let paid_id = paid.body["data"]["task_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(
        general_balance(&server, account).await,
        10_000 - FIVE_SECONDS_STD
    );
    let done = official_when_done(&server, &server.key, &paid_id).await;
    assert_eq!(done["task_status"], "succeed", "{done}");
    // The mock's 5 s result is 120 frames: exactly what was held.
    assert_eq!(done["final_unit_deduction"], "1.5");
    assert_eq!(
        general_balance(&server, account).await,
        10_000 - FIVE_SECONDS_STD
    );

    // A failed task is refunded in full, in every dialect's view of it.
    let failing = submit(
        &server,
        &server.key,
        UNIFIED,
        &format!("doomed {FAIL_MARKER}"),
    )
    .await;
    assert_eq!(failing.status, 200, "{}", failing.body);
    assert_eq!(
        general_balance(&server, account).await,
        10_000 - 2 * FIVE_SECONDS_STD
    );
    let failed_id = kinora_core::TaskId::parse_any(failing.body["id"].as_str().expect("id"))
        .expect("id")
        .to_string();
    let failed = official_when_done(&server, &server.key, &failed_id).await;
    assert_eq!(
        (
            failed["task_status"].as_str(),
            failed["final_unit_deduction"].as_str()
        ),
        (Some("failed"), Some("0")),
        "{failed}"
    );
    assert_eq!(
        general_balance(&server, account).await,
        10_000 - FIVE_SECONDS_STD
    );
    assert_eq!(
        ledger_sum(&server, account, Purse::General).await,
        general_balance(&server, account).await
    );
    let kinds: Vec<String> = store
        .ledger(account, Purse::General)
        .await
        .expect("ledger")
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["credit", "hold", "hold", "release"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_short_balance_is_each_dialects_own_refusal() {
    let mock = start_mock(Duration::from_millis(300)).await;
    let server = serve_on_mock(&mock, |_| {}).await;
    let account = server.account().await;
    server
        .services
        .store
        .credit(account, Purse::General, 1_000, "less than one task")
        .await
        .expect("credit");
    let expected = [
        (402, "insufficient_balance"),
        (429, "1102"),
        (403, "used_up"),
    ];
    for ((path, body), (status, code)) in submits("too dear").into_iter().zip(expected) {
        let answer = call(&server, &server.key, "POST", path, Some(body)).await;
        assert_eq!(
            (answer.status, code_of(&answer.body)),
            (status, code.to_owned()),
            "{path}: {}",
            answer.body
        );
        // The official dialect's 429s all carry Retry-After (its §10); the others' 402 and 403
        // do not.
        let retry = (status == 429).then(|| "60".to_owned());
        assert_eq!(answer.retry_after, retry, "{path}");
    }
    let tasks = server
        .services
        .store
        .list_tasks(account, None, 1, 10)
        .await
        .expect("list");
    assert!(tasks.is_empty(), "a refused submit creates nothing");
    assert_eq!(general_balance(&server, account).await, 1_000);
    // Turning metering off lets the account run for free again.
    admin::set_metering(&*server.services.store, account, false)
        .await
        .expect("off");
    let answer = submit(&server, &server.key, UNIFIED, "free").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

/// A key of a new app with `limits`, on the bootstrap account.
async fn key_with_limits(server: &Server, limits: KeyLimits) -> String {
    let store = &*server.services.store;
    let account = server.account().await;
    let app = admin::create_app(store, account, "limited", true, limits)
        .await
        .expect("app");
    admin::issue_credential(
        store,
        &server.services.secrets,
        Some(account),
        Some(app.id),
        admin::KeyKind::ApiKey,
        "limited",
    )
    .await
    .expect("key")
    .api_key
    .expect("secret")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_are_each_dialects_rate_limit_error_with_retry_after() {
    let mock = start_mock(Duration::from_secs(30)).await;
    let server = serve_on_mock(&mock, |_| {}).await;

    // One submit a second per key: a second one at once is refused before its body is parsed.
    let expected_rate = [
        (429, "rate_limit_exceeded"),
        (429, "1302"),
        (429, "too_many_requests"),
    ];
    for ((path, body), (status, code)) in submits("fast").into_iter().zip(expected_rate) {
        let key = key_with_limits(
            &server,
            KeyLimits {
                submits_per_second: Some(1),
                max_in_flight: None,
            },
        )
        .await;
        let first = call(&server, &key, "POST", path, Some(body)).await;
        assert_eq!(first.status, 200, "{path}: {}", first.body);
        let second = call(
            &server,
            &key,
            "POST",
            path,
            Some(json!("not even JSON of the right shape")),
        )
        .await;
        assert_eq!(
            (second.status, code_of(&second.body)),
            (status, code.to_owned()),
            "{path}: {}",
            second.body
        );
        assert_eq!(second.retry_after.as_deref(), Some("1"), "{path}");
    }

    // One unfinished task per key: the next waits for it (the mock takes 30 s).
    let expected_in_flight = [
        (429, "concurrency_limit_exceeded"),
        (429, "1303"),
        (429, "too_many_requests"),
    ];
    for ((path, body), (status, code)) in submits("slow").into_iter().zip(expected_in_flight) {
        let key = key_with_limits(
            &server,
            KeyLimits {
                submits_per_second: None,
                max_in_flight: Some(1),
            },
        )
        .await;
        let first = call(&server, &key, "POST", path, Some(body.clone())).await;
        assert_eq!(first.status, 200, "{path}: {}", first.body);
        let second = call(&server, &key, "POST", path, Some(body)).await;
        assert_eq!(
            (second.status, code_of(&second.body)),
            (status, code.to_owned()),
            "{path}: {}",
            second.body
        );
        assert_eq!(second.retry_after.as_deref(), Some("5"), "{path}");
    }

    // The server's defaults apply to keys whose app sets nothing.
    let defaulted = {
        let mock = start_mock(Duration::from_secs(30)).await;
        serve_on_mock(&mock, |config| config.limits.max_in_flight = 1).await
    };
    let first = submit(&defaulted, &defaulted.key, UNIFIED, "a").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = submit(&defaulted, &defaulted.key, UNIFIED, "b").await;
    assert_eq!(code_of(&second.body), "concurrency_limit_exceeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_concurrent_submits_on_one_key_never_overdraw() {
    let mock = start_mock(Duration::from_millis(500)).await;
    let server = serve_on_mock(&mock, |_| {}).await;
    let account = server.account().await;
    let store = &server.services.store;
    store
        .credit(account, Purse::General, 10 * FIVE_SECONDS_STD, "ten tasks")
        .await
        .expect("credit");
    let mut submits = Vec::new();
    for i in 0..100 {
        let base = server.base.clone();
        let key = server.key.clone();
        submits.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{base}/v1/videos"))
                .header("authorization", format!("Bearer {key}"))
                .body(json!({"model": "kling-v2-6", "prompt": format!("task {i}")}).to_string())
                .send()
                .await
                .expect("send");
            response.status().as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for submit in submits {
        statuses.push(submit.await.expect("join"));
    }
    let accepted = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 402).count();
    assert_eq!((accepted, refused), (10, 90), "{statuses:?}");
    assert_eq!(general_balance(&server, account).await, 0);
    // Every accepted task ends charged exactly its price; the ledger matches the balance.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tasks = store.list_tasks(account, None, 1, 100).await.expect("list");
        if tasks.iter().all(|t| t.state.is_terminal()) || Instant::now() > deadline {
            assert_eq!(tasks.len(), 10);
            for task in &tasks {
                assert_eq!(task.charged, Some(FIVE_SECONDS_STD), "{task:?}");
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ledger_sum(&server, account, Purse::General).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_manages_accounts_apps_keys_and_balances() {
    let token = "t".repeat(40);
    let with_token = token.clone();
    let server = serve_with(move |config| config.admin.token = with_token).await;
    let admin_call = |method: &'static str, path: String, body: Option<Value>| {
        let server = &server;
        let token = token.clone();
        async move {
            call(
                server,
                &token,
                method,
                &format!("/kinora/admin/v1{path}"),
                body,
            )
            .await
        }
    };

    let wrong = call(
        &server,
        "not-the-token",
        "GET",
        "/kinora/admin/v1/accounts",
        None,
    )
    .await;
    assert_eq!(
        (wrong.status, code_of(&wrong.body)),
        (401, "unauthorized".to_owned())
    );
    let tenant_key = call(
        &server,
        &server.key,
        "GET",
        "/kinora/admin/v1/accounts",
        None,
    )
    .await;
    assert_eq!(tenant_key.status, 401, "an API key is not the admin token");

    let created = admin_call("POST", "/accounts".into(), Some(json!({"name": "acme"}))).await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["metered"], true);
    let account = created.body["id"].as_str().expect("id").to_owned();
    let listed = admin_call("GET", "/accounts".into(), None).await;
    let names: Vec<&str> = listed.body["data"]
        .as_array()
        .expect("accounts")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["default", "acme"]);

    let app = admin_call(
        "POST",
        format!("/accounts/{account}/apps"),
        Some(json!({"name": "web", "allow_general_balance": false, "max_in_flight": 3})),
    )
    .await;
    assert_eq!(app.status, 201, "{}", app.body);
    assert_eq!(app.body["max_in_flight"], 3);
    let app_id = app.body["id"].as_str().expect("app").to_owned();
    let limits = admin_call(
        "PUT",
        format!("/accounts/{account}/apps/{app_id}/limits"),
        Some(json!({"submits_per_second": 2, "max_in_flight": null})),
    )
    .await;
    assert_eq!(limits.status, 200, "{}", limits.body);

    let key = admin_call(
        "POST",
        format!("/accounts/{account}/keys"),
        Some(json!({"name": "ci", "app_id": app_id})),
    )
    .await;
    assert_eq!(key.status, 201, "{}", key.body);
    let secret = key.body["api_key"].as_str().expect("secret").to_owned();
    let key_id = key.body["id"].as_str().expect("key id").to_owned();
    let pair = admin_call(
        "POST",
        format!("/accounts/{account}/keys"),
        Some(json!({"kind": "access_key"})),
    )
    .await;
    assert_eq!(pair.status, 201, "{}", pair.body);
    assert!(pair.body["secret_key"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));

    // A metered account with no money cannot submit; a credit to the app pays.
    let poor = submit(&server, &secret, UNIFIED, "p").await;
    assert_eq!(
        (poor.status, code_of(&poor.body)),
        (402, "insufficient_balance".to_owned())
    );
    let credited = admin_call(
        "POST",
        format!("/accounts/{account}/credits"),
        Some(json!({"amount": 5_000, "app_id": app_id, "note": "first top-up"})),
    )
    .await;
    assert_eq!(
        (credited.status, credited.body["balance"].as_i64()),
        (200, Some(5_000))
    );
    let paid = submit(&server, &secret, UNIFIED, "p").await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    let shown = admin_call("GET", format!("/accounts/{account}"), None).await;
    assert_eq!(
        shown.body["apps"][0]["balance"],
        5_000 - FIVE_SECONDS_STD,
        "{}",
        shown.body
    );
    assert_eq!(shown.body["apps"][0]["submits_per_second"], 2);
    let ledger = admin_call(
        "GET",
        format!("/accounts/{account}/ledger?app_id={app_id}"),
        None,
    )
    .await;
    let kinds: Vec<&str> = ledger.body["data"]
        .as_array()
        .expect("ledger")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["credit", "hold"]);
    let overdraw = admin_call(
        "POST",
        format!("/accounts/{account}/credits"),
        Some(json!({"amount": -1_000_000})),
    )
    .await;
    assert_eq!(overdraw.status, 400, "{}", overdraw.body);

    let keys = admin_call("GET", format!("/accounts/{account}/keys"), None).await;
    assert_eq!(keys.body["data"].as_array().map(Vec::len), Some(2));
    assert!(
        !keys.body.to_string().contains(&secret),
        "secrets are never listed"
    );
    let revoked = admin_call("DELETE", format!("/accounts/{account}/keys/{key_id}"), None).await;
    assert_eq!(revoked.status, 204);
    let after = submit(&server, &secret, UNIFIED, "p").await;
    assert_eq!(after.status, 401);

    let bad_query = admin_call(
        "GET",
        format!("/accounts/{account}/ledger?app_id=1&x=2"),
        None,
    )
    .await;
    assert_eq!(
        (bad_query.status, code_of(&bad_query.body)),
        (400, "invalid_request".to_owned())
    );
    let unknown = admin_call("GET", format!("/accounts/{}", AccountId::new()), None).await;
    assert_eq!(
        (unknown.status, code_of(&unknown.body)),
        (404, "not_found".to_owned())
    );
    let bad = admin_call(
        "POST",
        "/accounts".into(),
        Some(json!({"name": "x", "colour": "red"})),
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    let metering = admin_call(
        "PUT",
        format!("/accounts/{account}/metering"),
        Some(json!({"metered": false})),
    )
    .await;
    assert_eq!(
        (metering.status, metering.body["metered"].as_bool()),
        (200, Some(false))
    );

    // Without a token the admin API does not exist.
    let closed = common::serve().await;
    let off = call(
        &closed,
        "anything",
        "GET",
        "/kinora/admin/v1/accounts",
        None,
    )
    .await;
    assert_eq!(off.status, 404);
}

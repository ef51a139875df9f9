//! 500 blocking AceData requests held open at once against one `kinora` process: all must
//! complete, and the server's resident memory while they wait is compared with its idle
//! memory (target: under 50 MB above idle). The tasks run on the scripted provider, so the
//! figure is the cost of waiting, not of rendering.
//!
//! `cargo bench -p kinora --bench blocking_wait` (`KINORA_BENCH_REQUESTS` changes the count).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod support;
use support::{free_port, status_kb, Server};

fn start(dir: &Path, port: u16) -> Server {
    let config = format!(
        r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
[queue]
concurrency = 32
[testing.scripted]
submit_delay_ms = 50
running_polls = 3
poll_interval_ms = 1000
"#,
        data = dir.join("data").display()
    );
    support::start(dir, &config, "warn,kinora_server=info")
}

fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

#[tokio::main]
async fn main() {
    let requests: usize = std::env::var("KINORA_BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let port = free_port();
    let server = start(dir.path(), port);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(requests)
        .timeout(Duration::from_secs(900))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let key = support::ready(&client, &base, dir.path()).await;
    let body = |n: usize| {
        json!({"action": "text2video", "model": "kling-v1", "prompt": format!("waiting request {n}")}).to_string()
    };
    let post = |n: usize| {
        let client = client.clone();
        let key = key.clone();
        let url = format!("{base}/kling/videos");
        let body = body(n);
        async move {
            let response = client.post(url).bearer_auth(key).body(body).send().await;
            match response {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    (status, body)
                }
                Err(e) => (0, json!({"client_error": e.to_string()})),
            }
        }
    };
    // Warm up: one request end to end, so pools and caches exist before idle is measured.
    let (status, warm) = post(0).await;
    assert_eq!(status, 200, "warm-up: {warm}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kb(pid);

    let started = Instant::now();
    let all = tokio::spawn(futures::future::join_all((1..=requests).map(post)));
    let mut peak = idle;
    let mut samples = 0u32;
    while !all.is_finished() {
        peak = peak.max(rss_kb(pid));
        samples += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answers = all.await.unwrap_or_else(|e| panic!("requests: {e}"));
    let wall = started.elapsed();
    let ok = answers
        .iter()
        .filter(|(status, body)| *status == 200 && body["success"] == true)
        .count();
    let first_failure = answers.iter().find(|(status, _)| *status != 200);
    println!("blocking requests:       {requests}");
    println!("completed with success:  {ok}");
    if let Some((status, body)) = first_failure {
        println!("first failure:           HTTP {status} {body}");
    }
    println!("wall time:               {:.1} s", wall.as_secs_f64());
    println!("server RSS idle:         {:.1} MB", idle as f64 / 1024.0);
    println!(
        "server RSS peak waiting: {:.1} MB ({samples} samples)",
        peak as f64 / 1024.0
    );
    println!(
        "above idle:              {:.1} MB (target < 50 MB)",
        peak.saturating_sub(idle) as f64 / 1024.0
    );
    drop(server);
    assert_eq!(ok, requests, "every blocking request completes");
}

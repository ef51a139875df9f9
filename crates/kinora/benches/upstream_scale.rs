//! 10,000 tasks in flight on one Kling channel at once, against the mock Kling API: the mock
//! finishes them spread over about a minute and pushes each change to kinora's receiver.
//! Measured on the `kinora serve` process: how long after the mock finished each task kinora
//! recorded it succeeded, its video stored (`finished_at`, read from kinora's database by
//! this script, so watching costs the server nothing; target: all within 5 s), kinora's
//! average CPU from the first submit to the last success (target: under one core) and its
//! peak resident memory (target: under 300 MB). Each figure is printed as a ratio of its
//! budget too.
//!
//! `cargo bench -p kinora --bench upstream_scale` (`KINORA_BENCH_TASKS` changes the count;
//! `KINORA_BENCH_DATABASE_URL=postgres://…` runs kinora on that PostgreSQL database instead of
//! its default SQLite file).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kinora_core::time::SystemClock;
use kinora_core::{TaskId, TaskState};
use kinora_store::StoreOptions;
use kinora_testkit::{MockConfig, MockKling};
use serde_json::{json, Value};

mod support;
use support::{free_port, status_kb, Server};

const LAG_BUDGET: Duration = Duration::from_secs(5);
const CPU_BUDGET_CORES: f64 = 1.0;
const RSS_BUDGET_MB: f64 = 300.0;

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks_per_second = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|t| t.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    (field(14).unwrap_or(0.0) + field(15).unwrap_or(0.0)) / ticks_per_second
}

fn start(dir: &Path, port: u16, mock: &MockKling, database: &str) -> Server {
    let defaults = MockConfig::default();
    let config = format!(
        r#"data_dir = "{data}"
[database]
url = "{database}"
[server]
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
[queue]
concurrency = 64
[[channels]]
name = "mock-kling"
kind = "kling"
base_url = "{base}"
access_key = "{ak}"
secret_key = "{sk}"
send_callbacks = true
[routes]
"kling-v2-6" = ["mock-kling"]
"#,
        data = dir.join("data").display(),
        base = mock.base_url(),
        ak = defaults.access_key,
        sk = defaults.secret_key,
    );
    support::start(dir, &config, "warn")
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let tasks: usize = std::env::var("KINORA_BENCH_TASKS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let mock = MockKling::start(
        MockConfig {
            task_duration: Duration::from_secs(10),
            task_duration_spread: Duration::from_secs(50),
            result_seconds: Some(1),
            ..MockConfig::default()
        },
        "127.0.0.1:0"
            .parse()
            .unwrap_or_else(|e| panic!("address: {e}")),
    )
    .await
    .unwrap_or_else(|e| panic!("mock: {e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let port = free_port();
    let database = std::env::var("KINORA_BENCH_DATABASE_URL").unwrap_or_else(|_| {
        format!(
            "sqlite://{}",
            dir.path().join("data").join("kinora.db").display()
        )
    });
    let server = start(dir.path(), port, &mock, &database);
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap_or_else(|e| panic!("client: {e}"));
    let key = support::ready(&client, &base, dir.path()).await;
    let idle_rss_kb = status_kb(pid, "VmRSS:");
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();

    let submitted: Vec<TaskId> = futures::stream::iter(0..tasks)
        .map(|n| {
            let client = client.clone();
            let (base, key) = (base.clone(), key.clone());
            async move {
                let body = json!({"model": "kling-v2-6", "prompt": format!("task {n}")});
                let answer = client
                    .post(format!("{base}/v1/videos"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("submit {n}: {e}"));
                let status = answer.status();
                let created: Value = answer
                    .json()
                    .await
                    .unwrap_or_else(|e| panic!("submit {n}: {e}"));
                assert!(status.is_success(), "submit {n}: {status} {created}");
                let id = created["id"].as_str().unwrap_or_default();
                TaskId::parse_any(id).unwrap_or_else(|| panic!("submit {n}: id {id}"))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let submit_seconds = started.elapsed().as_secs_f64();
    eprintln!("{tasks} tasks submitted in {submit_seconds:.1} s; waiting for them to end");

    // Read-only watching: kinora's database, as any process of the deployment sees it.
    let store = kinora_store::connect(&StoreOptions::new(database.clone()), Arc::new(SystemClock))
        .await
        .unwrap_or_else(|e| panic!("kinora's database: {e}"));
    let deadline = Instant::now() + Duration::from_secs(300);
    let ended = loop {
        let states = store
            .task_states(&submitted)
            .await
            .unwrap_or_else(|e| panic!("task states: {e}"));
        let ended = states.iter().filter(|(_, s)| s.is_terminal()).count();
        if ended >= tasks || Instant::now() > deadline {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let wall = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let peak_rss_mb = status_kb(pid, "VmHWM:") as f64 / 1024.0;

    let succeeded = ended
        .iter()
        .filter(|(_, s)| *s == TaskState::Succeeded)
        .count();
    let unfinished = tasks - ended.iter().filter(|(_, s)| s.is_terminal()).count();
    let mut lags = Vec::with_capacity(tasks);
    // (when the mock finished, lag), to show where in the run any lag came from.
    let mut timeline = Vec::with_capacity(tasks);
    let mut submitted_by = 0;
    for id in &submitted {
        let Ok(Some(task)) = store.load_task_for_worker(*id).await else {
            continue;
        };
        submitted_by = submitted_by.max(task.submitted_at.unwrap_or(0));
        if let (Some(done), Some(finished)) = (task.finished_at, mock.finishes_at(&id.to_string()))
        {
            lags.push((done - finished).max(0));
            timeline.push((finished, (done - finished).max(0)));
        }
    }
    timeline.sort_unstable();
    if let (Some(first), Some(last)) = (timeline.first(), timeline.last()) {
        let span = (last.0 - first.0).max(1);
        let mut line = String::from("max lag per tenth of the run ");
        for tenth in 0..10 {
            let worst = timeline
                .iter()
                .filter(|(at, _)| ((at - first.0) * 10 / span).min(9) == tenth)
                .map(|(_, lag)| *lag)
                .max()
                .unwrap_or(0);
            line.push_str(&format!(" {worst}"));
        }
        println!("{line} (ms)");
        println!(
            "every task submitted upstream {:.1} s after the first",
            (submitted_by - first.0 + 10_000) as f64 / 1000.0
        );
    }
    lags.sort_unstable();
    let max_lag = lags.last().copied().unwrap_or(0);
    let cores = cpu / wall;
    println!("tasks                       {tasks}");
    println!(
        "database                    {}",
        database.split(':').next().unwrap_or_default()
    );
    println!("submitted in                {submit_seconds:.1} s");
    println!("succeeded / unfinished      {succeeded} / {unfinished}");
    println!(
        "lag after the mock finished p50 {} ms, p99 {} ms, max {} ms (ratio to the 5 s budget {:.2})",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        max_lag,
        max_lag as f64 / LAG_BUDGET.as_millis() as f64
    );
    println!(
        "kinora CPU                  {cpu:.1} s over {wall:.1} s = {cores:.2} cores (ratio to the 1-core budget {:.2})",
        cores / CPU_BUDGET_CORES
    );
    println!(
        "kinora memory               idle {:.0} MB, peak {peak_rss_mb:.0} MB (ratio to the 300 MB budget {:.2})",
        idle_rss_kb as f64 / 1024.0,
        peak_rss_mb / RSS_BUDGET_MB
    );
    drop(server);
    let ok = succeeded == tasks
        && Duration::from_millis(max_lag as u64) <= LAG_BUDGET
        && cores < CPU_BUDGET_CORES
        && peak_rss_mb < RSS_BUDGET_MB;
    println!("{}", if ok { "PASS" } else { "FAIL" });
    if !ok {
        std::process::exit(1);
    }
}

//! The mock Kling API as a standalone server, for trying kinora's upstream channels by hand or
//! from scripts: `kinora-testkit --listen 127.0.0.1:9800 --task-seconds 5`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kinora_testkit::{Faults, MockConfig, MockKling};

#[derive(Parser)]
#[command(about = "A mock of the official Kling API")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9800")]
    listen: SocketAddr,
    #[arg(long, default_value = "mock-access-key")]
    access_key: String,
    #[arg(long, default_value = "mock-secret-key")]
    secret_key: String,
    /// Seconds from create to `succeed`.
    #[arg(long, default_value_t = 5.0)]
    task_seconds: f64,
    /// Each task takes a random extra share of this many seconds.
    #[arg(long, default_value_t = 0.0)]
    task_spread_seconds: f64,
    /// Length of the result video in seconds (the local engine's default when absent).
    #[arg(long)]
    result_seconds: Option<u32>,
    /// Milliseconds added before every answer.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of creates answered HTTP 500 (code 5000) without creating the task.
    #[arg(long, default_value_t = 0.0)]
    server_error_rate: f64,
    /// Share of creates that create the task but answer HTTP 500 anyway.
    #[arg(long, default_value_t = 0.0)]
    server_error_after_create_rate: f64,
    /// Share of creates refused with 1302 (rate limit).
    #[arg(long, default_value_t = 0.0)]
    rate_limited_rate: f64,
    /// Share of creates refused with 1303 (concurrency limit).
    #[arg(long, default_value_t = 0.0)]
    over_concurrency_rate: f64,
    /// Share of creates refused with 1102 (resource pack exhausted).
    #[arg(long, default_value_t = 0.0)]
    no_balance_rate: f64,
    /// Share of creates that never answer.
    #[arg(long, default_value_t = 0.0)]
    hang_rate: f64,
    /// Share of creates answered with a body that is not JSON.
    #[arg(long, default_value_t = 0.0)]
    malformed_rate: f64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = MockConfig {
        access_key: args.access_key,
        secret_key: args.secret_key,
        task_duration: Duration::from_secs_f64(args.task_seconds.max(0.0)),
        task_duration_spread: Duration::from_secs_f64(args.task_spread_seconds.max(0.0)),
        result_seconds: args.result_seconds,
        latency: Duration::from_millis(args.latency_ms),
        faults: Faults {
            hang: args.hang_rate,
            malformed: args.malformed_rate,
            server_error_after_create: args.server_error_after_create_rate,
            server_error: args.server_error_rate,
            rate_limited: args.rate_limited_rate,
            over_concurrency: args.over_concurrency_rate,
            no_balance: args.no_balance_rate,
        },
    };
    let mock = match MockKling::start(config, args.listen).await {
        Ok(mock) => mock,
        Err(e) => {
            eprintln!("kinora-testkit: cannot listen on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    eprintln!("mock Kling API at {}", mock.base_url());
    match tokio::signal::ctrl_c().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinora-testkit: {e}");
            ExitCode::FAILURE
        }
    }
}

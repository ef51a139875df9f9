//! What the benches share: the real `kinora serve` binary as a child process with a config
//! written for the run, readiness, the bootstrap key from its log, and /proc readings.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_kinora");

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18_080)
}

/// A field of /proc/PID/status (`VmRSS:`, `VmHWM:`), in kB.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

/// The server process; killed when dropped.
pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kinora serve` with `config` (TOML) in `dir`, logging to `dir/kinora.log`.
pub fn start(dir: &Path, config: &str, rust_log: &str) -> Server {
    let path = dir.join("kinora.toml");
    if let Err(e) = std::fs::write(&path, config) {
        panic!("cannot write the config: {e}");
    }
    let log = std::fs::File::create(dir.join("kinora.log"))
        .unwrap_or_else(|e| panic!("cannot create the log: {e}"));
    let child = Command::new(BIN)
        .args(["serve", "--config", &path.display().to_string()])
        .env("RUST_LOG", rust_log)
        // KINORA_* variables configure the server; the benches' own are not for it.
        .env_remove("KINORA_BENCH_TASKS")
        .env_remove("KINORA_BENCH_REQUESTS")
        .env_remove("KINORA_BENCH_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap_or_else(|e| panic!("log: {e}")))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    Server(child)
}

/// Waits until the server in `dir` answers `/readyz` at `base` and returns the bootstrap key
/// it printed.
pub async fn ready(client: &reqwest::Client, base: &str, dir: &Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    while client
        .get(format!("{base}/readyz"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        assert!(
            Instant::now() < deadline,
            "kinora never became ready: {}",
            std::fs::read_to_string(dir.join("kinora.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::read_to_string(dir.join("kinora.log"))
        .ok()
        .and_then(|log| {
            log.lines()
                .map(str::trim)
                .find(|l| l.starts_with("kin_") && !l.contains(' '))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no bootstrap key in the log"))
}

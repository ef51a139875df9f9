//! The real `kinora` binary as an operator runs it: default start, crash recovery after
//! SIGKILL, graceful shutdown on SIGTERM, and the configuration commands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kinora_core::time::SystemClock;
use kinora_core::{Dialect, JobKind, NewTask, TaskId, TaskKind, TaskState};
use kinora_store::{JobState, Store, StoreOptions};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_kinora");

/// A running `kinora` process whose output goes to a log file in its directory.
struct Kinora {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Kinora {
    fn spawn(dir: &Path, args: &[&str], port: u16, configure: impl FnOnce(&mut Command)) -> Self {
        let log = dir.join(format!("kinora-{}.log", TaskId::new().as_uuid().simple()));
        let out = std::fs::File::create(&log).expect("log file");
        let mut command = Command::new(BIN);
        command
            .args(args)
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log"))
            .stderr(out);
        configure(&mut command);
        let child = command.spawn().expect("start kinora");
        Self { child, port, log }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    async fn wait_ready(&mut self) {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("kinora exited early ({status}):\n{}", self.logs());
            }
            if let Ok(resp) = client.get(self.url("/readyz")).send().await {
                if resp.status().is_success() {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "kinora never became ready:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        kill(Pid::from_raw(pid), signal).expect("send signal");
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kinora did not exit in {within:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Kinora {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A database URL per backend: SQLite always; PostgreSQL when the test server is configured.
async fn database_urls(dir: &Path, test: &str) -> Vec<String> {
    let mut urls = vec![format!("sqlite://{}", dir.join("kinora.db").display())];
    match std::env::var(kinora_store::testing::POSTGRES_URL_VAR) {
        Ok(server) => urls.push(kinora_store::testing::fresh_postgres_database(&server).await),
        Err(_) => kinora_store::testing::report_skip(
            &format!("{test} on postgres"),
            "set KINORA_TEST_DATABASE_URL to run it on PostgreSQL",
        ),
    }
    urls
}

fn write_config(
    dir: &Path,
    port: u16,
    database_url: &str,
    submit_delay_ms: u64,
    grace_seconds: u64,
) -> PathBuf {
    let path = dir.join("kinora.toml");
    let text = format!(
        r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
shutdown_grace_seconds = {grace_seconds}
[database]
url = "{database_url}"
[queue]
concurrency = 8
lease_seconds = 3
heartbeat_seconds = 1
poll_interval_ms = 100
sweep_interval_seconds = 1
[testing.scripted]
submit_delay_ms = {submit_delay_ms}
running_polls = 2
poll_interval_ms = 100
"#,
        data = dir.join("data").display(),
    );
    std::fs::write(&path, text).expect("write config");
    path
}

async fn open_store(url: &str) -> Arc<dyn Store> {
    kinora_store::connect(&StoreOptions::new(url), Arc::new(SystemClock))
        .await
        .expect("open store")
}

async fn create_tasks(store: &dyn Store, count: usize) -> Vec<TaskId> {
    let account = store.create_account("crash-test").await.expect("account");
    let mut ids = Vec::new();
    for n in 0..count {
        let task = NewTask {
            id: TaskId::new(),
            account_id: account.id,
            dialect: Dialect::Unified,
            kind: TaskKind::Text2Video,
            model: "kling-v2-6".into(),
            request: serde_json::json!({ "prompt": format!("shot {n}") }),
            external_task_id: Some(format!("crash-{n}")),
            callback_url: None,
            submission: None,
        };
        let (task, _) = store
            .create_task(task, JobKind::SUBMIT_TASK)
            .await
            .expect("create task");
        ids.push(task.id);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_command_serves_healthz_with_no_config_and_no_network() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The README's first command: `kinora serve` with no config file and no KINORA_* variables.
    let mut kinora = Kinora::spawn(dir.path(), &["serve"], 8080, |_| {});
    kinora.wait_ready().await;
    let health: serde_json::Value = reqwest::get(kinora.url("/healthz"))
        .await
        .expect("healthz")
        .json()
        .await
        .expect("json");
    assert_eq!(health, serde_json::json!({ "status": "ok" }));
    let ready: serde_json::Value = reqwest::get(kinora.url("/readyz"))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["status"], "ready");
    assert!(
        dir.path().join("kinora-data/kinora.db").is_file(),
        "SQLite database under ./kinora-data"
    );
    assert!(
        dir.path().join("kinora-data/objects").is_dir(),
        "object storage under ./kinora-data"
    );
    kinora.signal(Signal::SIGTERM);
    let status = kinora.wait_exit(Duration::from_secs(15)).await;
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status}\n{}",
        kinora.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_jobs_are_leased_loses_nothing() {
    const TASKS: usize = 24;
    let dir = tempfile::tempdir().expect("tempdir");
    for url in database_urls(dir.path(), "sigkill_while_jobs_are_leased_loses_nothing").await {
        let port = free_port();
        let config = write_config(dir.path(), port, &url, 1500, 5);
        let config_arg = config.to_str().expect("utf-8 path");
        let mut first = Kinora::spawn(dir.path(), &["serve", "--config", config_arg], port, |_| {});
        first.wait_ready().await;
        let store = open_store(&url).await;
        let ids = create_tasks(&*store, TASKS).await;

        wait_until("jobs leased", Duration::from_secs(30), async || {
            store.job_counts().await.expect("counts").running >= 4
        })
        .await;
        first.signal(Signal::SIGKILL);
        first.wait_exit(Duration::from_secs(10)).await;
        let mut leased_at_kill = Vec::new();
        for id in &ids {
            for job in store.jobs_for_task(*id).await.expect("jobs") {
                if job.state == JobState::Running {
                    leased_at_kill.push(job.id);
                }
            }
        }
        assert!(!leased_at_kill.is_empty(), "the kill hit leased jobs");
        assert!(!store
            .unfinished_task_ids(100)
            .await
            .expect("unfinished")
            .is_empty());

        let mut second =
            Kinora::spawn(dir.path(), &["serve", "--config", config_arg], port, |_| {});
        second.wait_ready().await;
        wait_until(
            "every task finished",
            Duration::from_secs(120),
            async || {
                store
                    .unfinished_task_ids(100)
                    .await
                    .expect("unfinished")
                    .is_empty()
            },
        )
        .await;
        for id in &ids {
            let task = store
                .load_task_for_worker(*id)
                .await
                .expect("load")
                .expect("exists");
            assert_eq!(
                task.state,
                TaskState::Succeeded,
                "{task:?}\n{}",
                second.logs()
            );
        }
        for id in leased_at_kill {
            let job = store.get_job(id).await.expect("get").expect("exists");
            assert_eq!(job.state, JobState::Done, "{job:?}");
            assert!(
                job.attempts >= 2,
                "the job leased at the kill ran again: {job:?}"
            );
        }
        let counts = store.job_counts().await.expect("counts");
        assert_eq!(
            (counts.queued, counts.running, counts.dead, counts.aborted),
            (0, 0, 0, 0),
            "{counts:?}"
        );

        second.signal(Signal::SIGTERM);
        let status = second.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "{status}\n{}", second.logs());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_leases_of_unfinished_jobs() {
    let dir = tempfile::tempdir().expect("tempdir");
    for url in database_urls(dir.path(), "sigterm_releases_leases_of_unfinished_jobs").await {
        let port = free_port();
        // Submits take a minute and the grace period is one second: the jobs cannot finish.
        let config = write_config(dir.path(), port, &url, 60_000, 1);
        let config_arg = config.to_str().expect("utf-8 path");
        let mut kinora =
            Kinora::spawn(dir.path(), &["serve", "--config", config_arg], port, |_| {});
        kinora.wait_ready().await;
        let store = open_store(&url).await;
        let ids = create_tasks(&*store, 2).await;
        wait_until("both leased", Duration::from_secs(30), async || {
            store.job_counts().await.expect("counts").running == 2
        })
        .await;
        let asked = Instant::now();
        kinora.signal(Signal::SIGTERM);
        let status = kinora.wait_exit(Duration::from_secs(15)).await;
        assert!(status.success(), "{status}\n{}", kinora.logs());
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "shutdown waited for the grace period only"
        );
        for id in ids {
            let task = store
                .load_task_for_worker(id)
                .await
                .expect("load")
                .expect("exists");
            assert_eq!(
                task.state,
                TaskState::Queued,
                "the task is untouched and will run later"
            );
            let jobs = store.jobs_for_task(id).await.expect("jobs");
            assert_eq!(jobs.len(), 1);
            assert_eq!(jobs[0].state, JobState::Queued, "released: {:?}", jobs[0]);
            assert_eq!(jobs[0].lease_owner, None);
            assert_eq!(jobs[0].attempts, 0);
        }
    }
}

fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run kinora")
}

#[test]
fn check_config_prints_the_effective_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(
        dir.path(),
        &["check-config"],
        &[
            (
                "KINORA_DATABASE__URL",
                "postgres://kinora:s3cret@db:5432/kinora",
            ),
            ("KINORA_QUEUE__CONCURRENCY", "3"),
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("postgres://kinora:<redacted>@db:5432/kinora"),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
    assert!(text.contains("concurrency = 3"), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
    assert!(
        !dir.path().join("kinora-data").exists(),
        "check-config changes nothing"
    );
}

#[test]
fn check_config_prints_which_channel_serves_each_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kinora.toml");
    std::fs::write(
        &config,
        "[[channels]]\nname = \"kling-sg\"\nkind = \"kling\"\naccess_key = \"ak-1\"\nsecret_key = \"sk-very-secret\"\n\n[routes]\n\"kling-v2-6\" = [\"kling-sg\", \"local\"]\n",
    )
    .expect("write");
    let path = config.to_str().expect("utf-8");
    let out = run(dir.path(), &["check-config", "--config", path], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("# kling-v2-6 -> kling-sg, local"), "{text}");
    assert!(text.contains("# every other model -> local"), "{text}");
    assert!(
        text.contains("base_url = \"https://api-singapore.klingai.com\""),
        "{text}"
    );
    assert!(!text.contains("sk-very-secret"), "{text}");
    // A route to a channel that does not exist stops the command, naming both.
    std::fs::write(&config, "[routes]\n\"kling-v3\" = [\"nowhere\"]\n").expect("write");
    let out = run(dir.path(), &["check-config", "--config", path], &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kling-v3") && err.contains("nowhere"), "{err}");
}

#[test]
fn unknown_configuration_keys_stop_every_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[server]\nlisten = \"127.0.0.1:1\"\nworkers = 4\n").expect("write");
    for command in ["check-config", "serve", "migrate"] {
        let out = run(
            dir.path(),
            &[command, "--config", config.to_str().expect("utf-8")],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{command}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("workers"), "{command} names the key: {err}");
    }
    let out = run(
        dir.path(),
        &["check-config"],
        &[("KINORA_SERVER__LISTN", "127.0.0.1:1")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("listn"),
        "{out:?}"
    );
}

#[test]
fn migrate_creates_the_default_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["migrate"], &[]);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("kinora-data/kinora.db").is_file());
    let again = run(dir.path(), &["migrate"], &[]);
    assert!(
        again.status.success(),
        "migrations are idempotent: {again:?}"
    );
}

#[test]
fn help_says_what_the_built_in_engine_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run(dir.path(), &["--help"], &[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not AI generations"), "{text}");
}

/// The bootstrap key in a first start's output: the indented line after the banner.
fn printed_key(logs: &str) -> Option<String> {
    logs.lines()
        .map(str::trim)
        .find(|line| line.starts_with(kinora_server::auth::KEY_PREFIX) && !line.contains(' '))
        .map(str::to_owned)
}

async fn default_store(dir: &Path) -> Arc<dyn Store> {
    let path = dir.join("kinora-data/kinora.db");
    open_store(&format!("sqlite://{}", path.display())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_one_api_key_and_later_starts_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let start = |dir: &Path| {
        Kinora::spawn(dir, &["serve"], port, |c| {
            c.env("KINORA_SERVER__LISTEN", &listen);
        })
    };
    let mut first = start(dir.path());
    first.wait_ready().await;
    let logs = first.logs();
    let secret = printed_key(&logs).unwrap_or_else(|| panic!("no key printed:\n{logs}"));
    assert!(logs.contains("shown only once"), "{logs}");
    first.signal(Signal::SIGTERM);
    first.wait_exit(Duration::from_secs(15)).await;

    let mut second = start(dir.path());
    second.wait_ready().await;
    let logs = second.logs();
    assert_eq!(
        printed_key(&logs),
        None,
        "a second start prints no key:\n{logs}"
    );
    second.signal(Signal::SIGTERM);
    second.wait_exit(Duration::from_secs(15)).await;

    // The printed secret is a live credential; only its hash is in the database.
    let store = default_store(dir.path()).await;
    let header = axum_header(&format!("Bearer {secret}"));
    let caller = kinora_server::auth::authenticate_api_key(&*store, Some(&header))
        .await
        .expect("database")
        .expect("the printed key authenticates");
    let bootstrap = store
        .bootstrap_account()
        .await
        .expect("account")
        .expect("bootstrapped");
    assert_eq!(caller.account, bootstrap.id);
    let db = std::fs::read(dir.path().join("kinora-data/kinora.db")).expect("db file");
    assert!(!db.windows(secret.len()).any(|w| w == secret.as_bytes()));
}

fn axum_header(value: &str) -> reqwest::header::HeaderValue {
    reqwest::header::HeaderValue::from_str(value).expect("header")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_commands_create_list_and_revoke() {
    let dir = tempfile::tempdir().expect("tempdir");
    let created = run(dir.path(), &["keys", "create", "--name", "ci"], &[]);
    assert!(created.status.success(), "{created:?}");
    let secret = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(
        secret.starts_with("kin_"),
        "stdout is the secret alone: {secret}"
    );
    assert!(String::from_utf8_lossy(&created.stderr).contains("shown only once"));

    let listed = run(dir.path(), &["keys", "list"], &[]);
    assert!(listed.status.success(), "{listed:?}");
    let text = String::from_utf8_lossy(&listed.stdout).to_string();
    let row = text
        .lines()
        .find(|l| l.contains(" ci "))
        .unwrap_or_else(|| panic!("no `ci` key listed:\n{text}"));
    assert!(row.contains(&secret[..10]), "the prefix is shown: {row}");
    assert!(!text.contains(&secret), "never the secret: {text}");
    let id = row.split_whitespace().next().expect("id column").to_owned();

    let store = default_store(dir.path()).await;
    let header = axum_header(&format!("Bearer {secret}"));
    let auth = || {
        let (store, header) = (store.clone(), header.clone());
        async move {
            kinora_server::auth::authenticate_api_key(&*store, Some(&header))
                .await
                .expect("database")
        }
    };
    assert!(auth().await.is_ok());
    let revoked = run(dir.path(), &["keys", "revoke", &id], &[]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(
        auth().await,
        Err(kinora_server::auth::AuthFailure::UnknownKey)
    );
    let again = run(dir.path(), &["keys", "revoke", &id], &[]);
    assert!(!again.status.success(), "revoking twice fails: {again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no unrevoked key"));

    // The database was bootstrapped by the command, so a first serve prints no key.
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut kinora = Kinora::spawn(dir.path(), &["serve"], port, |c| {
        c.env("KINORA_SERVER__LISTEN", &listen);
    });
    kinora.wait_ready().await;
    assert_eq!(printed_key(&kinora.logs()), None, "{}", kinora.logs());

    // An access-key pair: printed once, the secret stored only encrypted, and a JWT signed
    // with it is accepted by the running server.
    let pair = run(
        dir.path(),
        &["keys", "create", "--kind", "access-key", "--name", "jwt"],
        &[],
    );
    assert!(pair.status.success(), "{pair:?}");
    let printed = String::from_utf8_lossy(&pair.stdout).into_owned();
    let field = |name: &str| {
        printed
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
            .unwrap_or_else(|| panic!("no {name} in {printed}"))
    };
    let (ak, sk) = (field("access_key:"), field("secret_key:"));
    let listed = run(dir.path(), &["keys", "list"], &[]);
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        text.lines()
            .any(|l| l.contains("access-key") && l.contains(&ak)),
        "{text}"
    );
    assert!(!text.contains(&sk), "never the secret: {text}");
    let db = std::fs::read(dir.path().join("kinora-data/kinora.db")).expect("db file");
    assert!(!db.windows(sk.len()).any(|w| w == sk.as_bytes()));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    let jwt = kinora_server::access_keys::sign_jwt(&ak, &sk, now + 600, Some(now - 5));
    let answer = reqwest::Client::new()
        .get(format!("http://{listen}/v1/videos/text2video"))
        .bearer_auth(&jwt)
        .send()
        .await
        .expect("send");
    assert_eq!(answer.status().as_u16(), 200);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(
        (body["code"].as_i64(), &body["data"]),
        (Some(0), &serde_json::json!([]))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_waits_and_downloads_a_video() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut kinora = Kinora::spawn(dir.path(), &["serve"], port, |c| {
        c.env("KINORA_SERVER__LISTEN", &listen);
    });
    kinora.wait_ready().await;
    let key = printed_key(&kinora.logs()).expect("bootstrap key");
    let url = format!("http://{listen}");
    let env = [
        ("KINORA_URL", url.as_str()),
        ("KINORA_API_KEY", key.as_str()),
    ];
    let cli = |args: Vec<String>| {
        let dir = dir.path().to_owned();
        let env = env.map(|(k, v)| (k.to_owned(), v.to_owned()));
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> =
                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&dir, &args, &env)
        })
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    let created = cli(args(&[
        "video",
        "create",
        "--prompt",
        "a paper boat on a pond",
        "--aspect-ratio",
        "9:16",
        "--seconds",
        "5",
        "--external-task-id",
        "boat-1",
        "--wait",
        "--output",
        "boat.mp4",
    ]))
    .await
    .expect("cli");
    assert!(created.status.success(), "{created:?}\n{}", kinora.logs());
    let printed = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert_eq!(printed, "boat.mp4");
    let bytes = bytes::Bytes::from(std::fs::read(dir.path().join("boat.mp4")).expect("video file"));
    let info = kinora_media::video::probe_video("video", &bytes)
        .await
        .expect("probe");
    assert_eq!(
        (info.width, info.height, info.duration_ms),
        (720, 1280, 5000)
    );

    // get and download by the external id.
    let got = cli(args(&["video", "get", "boat-1"])).await.expect("cli");
    assert!(got.status.success(), "{got:?}");
    let task: serde_json::Value = serde_json::from_slice(&got.stdout).expect("json");
    assert_eq!(task["status"], "completed");
    let again = cli(args(&["video", "download", "boat-1", "-o", "again.mp4"]))
        .await
        .expect("cli");
    assert!(again.status.success(), "{again:?}");
    assert_eq!(
        std::fs::read(dir.path().join("again.mp4")).expect("file"),
        bytes.to_vec()
    );

    // list shows the task as a table, and as JSON.
    let listed = cli(args(&["video", "list"])).await.expect("cli");
    assert!(listed.status.success(), "{listed:?}");
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("STATUS"),
        "{table}"
    );
    assert!(
        lines[1].starts_with(task["id"].as_str().unwrap_or("?"))
            && lines[1].contains("completed")
            && lines[1].ends_with("boat-1"),
        "{table}"
    );
    let listed = cli(args(&["video", "list", "--json", "--page-size", "5"]))
        .await
        .expect("cli");
    let tasks: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(tasks[0]["id"], task["id"]);
    let past = cli(args(&["video", "list", "--json", "--page", "2"]))
        .await
        .expect("cli");
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&past.stdout).expect("json"),
        serde_json::json!([])
    );

    // A refused request prints the server's reason and fails.
    let refused = cli(args(&[
        "video",
        "create",
        "--prompt",
        "p",
        "--seconds",
        "7",
    ]))
    .await
    .expect("cli");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("invalid_parameter") && err.contains("5 or 10"),
        "{err}"
    );
    // Without a key the CLI says how to give one.
    let no_key = run(
        dir.path(),
        &["video", "get", "boat-1"],
        &[("KINORA_URL", url.as_str())],
    );
    assert!(
        String::from_utf8_lossy(&no_key.stderr).contains("KINORA_API_KEY"),
        "{no_key:?}"
    );
}

/// A loopback receiver that answers 500 until `healthy` is set, then 200, and records every
/// (webhook-id, status) pair it answered.
async fn flaky_receiver(
    healthy: Arc<std::sync::atomic::AtomicBool>,
) -> (String, Arc<std::sync::Mutex<Vec<(String, u16)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let log: Arc<std::sync::Mutex<Vec<(String, u16)>>> = Arc::default();
    let seen = log.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        let healthy = healthy.clone();
        async move {
            let status = if healthy.load(std::sync::atomic::Ordering::SeqCst) {
                200
            } else {
                500
            };
            let id = headers
                .get("webhook-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((id, status));
            axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::OK)
        }
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_callbacks_wait_to_retry_delivers_them_after_a_restart() {
    const TASKS: usize = 6;
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}", dir.path().join("kinora.db").display());
    let port = free_port();
    let config = write_config(dir.path(), port, &url, 50, 5);
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str("[fetch]\nallow = [\"127.0.0.1\"]\n[callbacks]\nretry_delays_seconds = [2, 2, 2, 2, 2, 2, 2]\n");
    std::fs::write(&config, text).expect("config");
    let config_arg = config.to_str().expect("utf-8 path");
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (hook, log) = flaky_receiver(healthy.clone()).await;

    let mut first = Kinora::spawn(dir.path(), &["serve", "--config", config_arg], port, |_| {});
    first.wait_ready().await;
    let store = open_store(&url).await;
    let account = store.create_account("callbacks").await.expect("account").id;
    let mut ids = Vec::new();
    for n in 0..TASKS {
        let (task, _) = store
            .create_task(
                NewTask {
                    id: TaskId::new(),
                    account_id: account,
                    dialect: Dialect::Official,
                    kind: TaskKind::Text2Video,
                    model: "kling-v2-6".into(),
                    request: serde_json::json!({ "prompt": format!("shot {n}") }),
                    external_task_id: None,
                    callback_url: Some(hook.clone()),
                    submission: None,
                },
                JobKind::SUBMIT_TASK,
            )
            .await
            .expect("create task");
        ids.push(task.id);
    }
    // Every task has ended, so both its callbacks are recorded, and the first has failed at
    // least once (the second waits for it: order per task is strict).
    wait_until("failed callbacks", Duration::from_secs(60), async || {
        let mut ready = 0;
        for id in &ids {
            let events = store
                .list_callback_attempts(account, *id)
                .await
                .expect("events");
            let waiting = events
                .iter()
                .all(|(e, _)| e.state == kinora_store::CallbackState::Pending);
            if events.len() == 2 && waiting && events[0].0.attempts >= 1 {
                ready += 1;
            }
        }
        ready == TASKS
    })
    .await;
    first.signal(Signal::SIGKILL);
    first.wait_exit(Duration::from_secs(10)).await;
    let answered_before = log.lock().unwrap_or_else(|e| e.into_inner()).len();
    assert!(
        answered_before >= TASKS,
        "failures were answered before the kill"
    );

    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut second = Kinora::spawn(dir.path(), &["serve", "--config", config_arg], port, |_| {});
    second.wait_ready().await;
    wait_until(
        "every callback delivered",
        Duration::from_secs(90),
        async || {
            let mut delivered = 0;
            for id in &ids {
                for (event, _) in store
                    .list_callback_attempts(account, *id)
                    .await
                    .expect("events")
                {
                    if event.state == kinora_store::CallbackState::Delivered {
                        delivered += 1;
                    }
                }
            }
            delivered == 2 * TASKS
        },
    )
    .await;
    // Each event reached the receiver with a 2xx, the start before the end of its task.
    let answered = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for id in &ids {
        let events = store
            .list_callback_attempts(account, *id)
            .await
            .expect("events");
        let webhook_ids: Vec<String> = events.iter().map(|(e, _)| e.id.clone()).collect();
        for webhook_id in &webhook_ids {
            assert!(
                answered
                    .iter()
                    .any(|(w, status)| w == webhook_id && *status == 200),
                "{webhook_id} delivered\n{}",
                second.logs()
            );
        }
        let first_ok = |w: &str| answered.iter().position(|(x, s)| x == w && *s == 200);
        assert!(
            first_ok(&webhook_ids[0]) < first_ok(&webhook_ids[1]),
            "in order"
        );
    }
    second.signal(Signal::SIGTERM);
    second.wait_exit(Duration::from_secs(15)).await;

    // The CLI lists the attempts: failures before the kill, the delivery after it.
    let account_arg = account.to_string();
    let out = run(
        dir.path(),
        &[
            "callbacks",
            &ids[0].to_string(),
            "--account",
            &account_arg,
            "--config",
            config_arg,
        ],
        &[],
    );
    assert!(out.status.success(), "{out:?}");
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("processing") && listing.contains("ended"),
        "{listing}"
    );
    assert!(
        listing.contains("status 500") && listing.contains("status 200"),
        "{listing}"
    );
    assert!(listing.matches("delivered").count() >= 2, "{listing}");

    // Webhook secrets: created once (printed), then only rotated.
    let webhooks = |verb: &str| {
        run(
            dir.path(),
            &[
                "webhooks",
                verb,
                "--account",
                &account_arg,
                "--config",
                config_arg,
            ],
            &[],
        )
    };
    let created = webhooks("create");
    assert!(created.status.success(), "{created:?}");
    let first = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(first.starts_with("whsec_"), "{first}");
    let again = webhooks("create");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("rotate it instead"));
    let rotated = webhooks("rotate");
    assert!(rotated.status.success(), "{rotated:?}");
    let second_secret = String::from_utf8_lossy(&rotated.stdout).trim().to_owned();
    assert!(second_secret.starts_with("whsec_") && second_secret != first);
    let secrets = store.webhook_secrets(account).await.expect("secrets");
    assert_eq!(secrets.len(), 2);
    assert!(secrets[0].retired_at.is_none() && secrets[1].retired_at.is_some());
    assert!(
        !secrets
            .iter()
            .any(|s| s.secret_ciphertext.contains(&first[6..])),
        "stored sealed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_are_listed_and_a_disabled_one_is_enabled_by_the_operator() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kinora.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[[channels]]\nname = \"kling-sg\"\nkind = \"kling\"\naccess_key = \"ak\"\nsecret_key = \"sk\"\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write");
    let path = config.to_str().expect("utf-8");
    let out = run(dir.path(), &["migrate", "--config", path], &[]);
    assert!(out.status.success(), "{out:?}");
    let url = format!(
        "sqlite://{}",
        dir.path().join("data").join("kinora.db").display()
    );
    let store = open_store(&url).await;
    assert!(store
        .disable_channel("kling-sg", "the Kling account cannot take tasks (1102)")
        .await
        .expect("disable"));

    let list = |args: &[&str]| {
        let mut all = vec!["channels"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", path]);
        run(dir.path(), &all, &[])
    };
    let out = list(&[]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("kling-sg  disabled  0  the Kling account cannot take tasks (1102)"),
        "{text}"
    );
    assert!(text.contains("local  enabled  0  -"), "{text}");

    let out = list(&["enable", "kling-sg"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("channel kling-sg enabled"));
    let text = String::from_utf8_lossy(&list(&["list"]).stdout).into_owned();
    assert!(text.contains("kling-sg  enabled  0  -"), "{text}");
    assert!(store.disabled_channels().await.expect("read").is_empty());

    let out = list(&["enable", "nowhere"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no channel `nowhere`"));
}

#[test]
fn operators_add_apps_credit_balances_and_read_the_ledger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kinora.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    )
    .expect("write");
    let path = config.to_str().expect("utf-8");
    let kinora = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--config", path]);
        let out = run(dir.path(), &all, &[]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, app, err) = kinora(&["apps", "create", "web"]);
    assert!(ok, "{err}");
    let app = app.trim().to_owned();
    let (ok, strict, err) = kinora(&["apps", "create", "batch", "--no-general-balance"]);
    assert!(ok, "{err}");
    let (ok, listed, _) = kinora(&["apps", "list"]);
    assert!(ok);
    assert!(listed.contains(&format!("{app}  web  0  yes")), "{listed}");
    assert!(
        listed.contains(&format!("{}  batch  0  no", strict.trim())),
        "{listed}"
    );

    assert_eq!(kinora(&["balance", "credit", "1500"]).1.trim(), "1500");
    assert_eq!(
        kinora(&[
            "balance",
            "credit",
            "250",
            "--app",
            &app,
            "--note",
            "invoice 7"
        ])
        .1
        .trim(),
        "250"
    );
    assert_eq!(kinora(&["balance", "credit", "-500"]).1.trim(), "1000");
    let (ok, _, err) = kinora(&["balance", "credit", "-5000"]);
    assert!(!ok && err.contains("negative"), "{err}");
    let (ok, _, err) = kinora(&["balance", "credit", "5", "--app", "not-an-app"]);
    assert!(!ok && err.contains("not an app id"), "{err}");

    let (_, shown, _) = kinora(&["balance"]);
    assert!(shown.contains("general  1000"), "{shown}");
    assert!(shown.contains(&format!("app {app} (web)  250")), "{shown}");
    let (_, ledger, _) = kinora(&["balance", "ledger", "--app", &app]);
    assert!(
        ledger.contains("credit") && ledger.contains("250") && ledger.contains("invoice 7"),
        "{ledger}"
    );
    let (_, ledger, _) = kinora(&["balance", "ledger"]);
    assert_eq!(
        ledger.lines().count(),
        2,
        "two entries on the general balance: {ledger}"
    );

    // The credit metered the bootstrap account; an operator can turn that off again.
    let (_, accounts, _) = kinora(&["accounts", "list"]);
    assert!(accounts.contains("  default  yes  "), "{accounts}");
    let (ok, _, err) = kinora(&["accounts", "metering", "off"]);
    assert!(ok && err.contains("metering is off"), "{err}");
    let (_, accounts, _) = kinora(&["accounts", "list"]);
    assert!(accounts.contains("  default  no  "), "{accounts}");
    // New tenants are metered; their apps set limits; keys are bound to an app.
    let (ok, tenant, err) = kinora(&["accounts", "create", "acme"]);
    assert!(ok, "{err}");
    let tenant = tenant.trim().to_owned();
    let (_, accounts, _) = kinora(&["accounts", "list"]);
    assert!(
        accounts.contains(&format!("{tenant}  acme  yes  ")),
        "{accounts}"
    );
    let (ok, tenant_app, err) = kinora(&[
        "apps",
        "create",
        "api",
        "--account",
        &tenant,
        "--max-in-flight",
        "4",
    ]);
    assert!(ok, "{err}");
    let tenant_app = tenant_app.trim().to_owned();
    let (ok, _, err) = kinora(&[
        "apps",
        "limits",
        &tenant_app,
        "--account",
        &tenant,
        "--submits-per-second",
        "2",
        "--max-in-flight",
        "4",
    ]);
    assert!(ok, "{err}");
    let (_, listed, _) = kinora(&["apps", "list", "--account", &tenant]);
    assert!(
        listed.contains(&format!("{tenant_app}  api  0  yes  2  4")),
        "{listed}"
    );
    let (ok, _, err) = kinora(&["apps", "limits", &tenant_app, "--max-in-flight", "1"]);
    assert!(
        !ok && err.contains("has no app"),
        "another account's app: {err}"
    );
    let (ok, secret, err) = kinora(&["keys", "create", "--account", &tenant, "--app", &tenant_app]);
    assert!(ok && secret.trim().starts_with("kin_"), "{err}");
    let (ok, _, err) = kinora(&["keys", "create", "--app", &tenant_app]);
    assert!(
        !ok && err.contains("does not exist"),
        "an app of another account: {err}"
    );
}

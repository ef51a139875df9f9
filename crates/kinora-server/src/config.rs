//! Configuration: embedded defaults, then a TOML file, then `KINORA_*` environment variables
//! (`KINORA_SERVER__LISTEN` sets `server.listen`: sections are joined by a double underscore).
//! Unknown keys are errors naming the key, wherever they come from.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::official::capabilities::{CapabilityTable, DEFAULT_TABLE};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use kinora_core::{Error, ErrorCode};
use kinora_media::fetch::FetchConfig;
use kinora_storage::{S3Config, StorageConfig};
use kinora_store::StoreOptions;
use serde::{Deserialize, Serialize};

/// Environment variables that start with `KINORA_` but are not configuration keys.
pub const NON_CONFIG_ENV: &[&str] = &["URL", "API_KEY", "CONFIG"];
/// `KINORA_TEST_*` variables belong to the test suite.
const TEST_ENV_PREFIX: &str = "TEST_";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the embedded defaults keep the SQLite database and stored objects.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub storage: StorageSection,
    pub queue: QueueConfig,
    /// How user-supplied URLs (media inputs) are fetched, and which private hosts the
    /// address guard lets through.
    pub fetch: FetchConfig,
    pub render: RenderConfig,
    pub auth: AuthConfig,
    pub official: OfficialConfig,
    pub acedata: AceDataConfig,
    pub billing: BillingConfig,
    /// Per-key limits for keys whose app sets none.
    pub limits: LimitsConfig,
    /// The operators' HTTP API.
    pub admin: AdminConfig,
    pub callbacks: CallbacksConfig,
    /// Upstream accounts besides the built-in `local` engine.
    pub channels: Vec<ChannelConfig>,
    /// Model name → the channels that serve it, in order of preference. A model without a
    /// route is served by `local`.
    pub routes: std::collections::BTreeMap<String, Vec<String>>,
    pub log: LogConfig,
    #[cfg(feature = "scripted-provider")]
    pub testing: TestingConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./kinora-data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            storage: StorageSection::default(),
            queue: QueueConfig::default(),
            fetch: FetchConfig::default(),
            render: RenderConfig::default(),
            auth: AuthConfig::default(),
            official: OfficialConfig::default(),
            billing: BillingConfig::default(),
            limits: LimitsConfig::default(),
            admin: AdminConfig::default(),
            acedata: AceDataConfig::default(),
            callbacks: CallbacksConfig::default(),
            channels: Vec::new(),
            routes: std::collections::BTreeMap::new(),
            log: LogConfig::default(),
            #[cfg(feature = "scripted-provider")]
            testing: TestingConfig::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// How long a shutdown waits for in-flight requests and jobs before it releases leases.
    pub shutdown_grace_seconds: u64,
    /// The base URL clients reach kinora at, for the result URLs it hands out. Empty: the
    /// listen address over plain HTTP.
    pub public_url: String,
    /// How long result URLs stay valid after a task ends.
    pub result_retention_days: u32,
}

impl ServerConfig {
    /// [`ServerConfig::public_url`], or `http://<listen>` when it is empty; no trailing slash.
    pub fn public_base(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            shutdown_grace_seconds: 30,
            public_url: String::new(),
            result_retention_days: 30,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://path` or `postgres://user:password@host/db`. Empty: `<data_dir>/kinora.db`.
    pub url: String,
    pub max_connections: u32,
    /// SQLite only: `full` (every commit reaches the disk) or `normal` (survives a process
    /// crash, may lose the last commits on power loss).
    pub sqlite_synchronous: SqliteSynchronous,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 10,
            sqlite_synchronous: SqliteSynchronous::Full,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSynchronous {
    Full,
    Normal,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Filesystem,
    S3,
    Memory,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub backend: StorageBackend,
    /// Filesystem root. Empty: `<data_dir>/objects`.
    pub path: String,
    pub s3: S3Section,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            backend: StorageBackend::Filesystem,
            path: String::new(),
            s3: S3Section::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct S3Section {
    pub bucket: String,
    pub region: String,
    /// For S3-compatible servers (MinIO, Ceph, R2...); empty means AWS.
    pub endpoint: String,
    /// Empty: taken from the usual AWS environment variables.
    pub access_key_id: String,
    pub secret_access_key: String,
    pub allow_http: bool,
    /// Bucket in the host name (AWS style) instead of the path (what most compatible servers use).
    pub virtual_hosted_style: bool,
}

impl Default for S3Section {
    fn default() -> Self {
        Self {
            bucket: String::new(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            virtual_hosted_style: false,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Jobs one process runs at the same time.
    pub concurrency: usize,
    /// How long a claimed job stays leased without a heartbeat.
    pub lease_seconds: u64,
    pub heartbeat_seconds: u64,
    /// How often idle workers look for due jobs when no wake-up came.
    pub poll_interval_ms: u64,
    /// Runs before a job is dead-lettered.
    pub max_attempts: u32,
    /// First retry delay; each further retry doubles it, up to `retry_max_seconds`.
    pub retry_base_ms: u64,
    pub retry_max_seconds: u64,
    /// How often a worker looks for unfinished tasks that no job will move any more.
    pub sweep_interval_seconds: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease_seconds: 60,
            heartbeat_seconds: 15,
            poll_interval_ms: 1000,
            max_attempts: kinora_store::DEFAULT_MAX_ATTEMPTS,
            retry_base_ms: 1000,
            retry_max_seconds: 600,
            sweep_interval_seconds: 60,
        }
    }
}

impl QueueConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_seconds)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct RenderConfig {
    /// Threads of the local render engine; 0 means one per core.
    pub threads: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// A price table replacing the built-in `config/prices.toml`; empty: built in.
    pub prices_file: String,
}

impl BillingConfig {
    /// The price table this configuration names.
    pub fn prices(&self) -> Result<crate::billing::prices::PriceTable, Error> {
        let text = if self.prices_file.is_empty() {
            crate::billing::prices::DEFAULT_PRICES.to_owned()
        } else {
            std::fs::read_to_string(&self.prices_file).map_err(|e| {
                config_error(format!(
                    "cannot read billing.prices_file {}: {e}",
                    self.prices_file
                ))
            })?
        };
        crate::billing::prices::PriceTable::parse(&text).map_err(config_error)
    }
}

/// Limits on each key, for keys whose app does not set its own; 0 is no limit.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Video submits per second per key (bursts up to this many).
    pub submits_per_second: u32,
    /// Unfinished tasks per key.
    pub max_in_flight: u32,
}

/// The operators' HTTP API under `/kinora/admin/v1`.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The bearer token the admin API requires; empty turns the admin API off (404).
    pub token: String,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let token = if self.token.is_empty() {
            ""
        } else {
            "<redacted>"
        };
        f.debug_struct("AdminConfig")
            .field("token", &token)
            .finish()
    }
}

/// Admin tokens shorter than this are refused at start: the token guards every account.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 32;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OfficialConfig {
    /// A capability table replacing the built-in `config/capabilities.toml`; empty: built in.
    pub capabilities_file: String,
}

impl OfficialConfig {
    /// The capability table this configuration names.
    pub fn capabilities(&self) -> Result<CapabilityTable, Error> {
        let text = if self.capabilities_file.is_empty() {
            DEFAULT_TABLE.to_owned()
        } else {
            std::fs::read_to_string(&self.capabilities_file).map_err(|e| {
                config_error(format!(
                    "cannot read official.capabilities_file {}: {e}",
                    self.capabilities_file
                ))
            })?
        };
        CapabilityTable::parse(&text).map_err(config_error)
    }
}

/// The built-in channel: the local render engine.
pub const LOCAL_CHANNEL: &str = "local";

/// What kind of upstream a channel is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// The official Kling API.
    #[default]
    Kling,
}

/// One upstream account.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: ChannelKind,
    pub base_url: String,
    pub access_key: String,
    pub secret_key: String,
    /// Channels of a higher priority in a route are tried first.
    pub priority: i32,
    /// Among a route's channels of one priority, the share of tasks each gets first; 0 takes
    /// no part in sharing and keeps the route's order (after the weighted channels).
    pub weight: u32,
    /// Tasks the channel holds at once (queued on it, submitted, running); 0 is no limit.
    /// Tasks beyond it wait in the queue.
    pub max_in_flight: u32,
    /// Failed submit attempts (5xx, timeouts, broken answers) before a task fails over to
    /// its route's next channel.
    pub failover_after_attempts: u32,
    /// Ask the upstream to push task changes to kinora (`server.public_url` must reach
    /// kinora from the upstream); polling remains the fallback.
    pub send_callbacks: bool,
    /// The average rate of task queries kept to on this channel: polls of the tasks it
    /// follows are spaced to stay under it. 0 is no limit.
    pub max_queries_per_second: u32,
    /// Queries sent to the channel at the same time.
    pub max_parallel_queries: u32,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        let kling = kinora_providers::kling::KlingChannel::new(
            kinora_providers::kling::DEFAULT_BASE_URL,
            "",
            "",
        );
        let routing = kinora_providers::ChannelSettings::default();
        Self {
            name: String::new(),
            kind: ChannelKind::Kling,
            base_url: kling.base_url,
            access_key: String::new(),
            secret_key: String::new(),
            priority: routing.priority,
            weight: routing.weight,
            max_in_flight: 0,
            failover_after_attempts: routing.failover_after_attempts,
            send_callbacks: kling.send_callbacks,
            max_queries_per_second: kling.max_queries_per_second,
            max_parallel_queries: kling.max_parallel_queries,
        }
    }
}

impl ChannelConfig {
    /// How the channel takes part in routing.
    pub fn routing(&self) -> kinora_providers::ChannelSettings {
        kinora_providers::ChannelSettings {
            priority: self.priority,
            weight: self.weight,
            max_in_flight: (self.max_in_flight > 0).then_some(self.max_in_flight),
            failover_after_attempts: self.failover_after_attempts,
        }
    }

    /// The Kling account the channel uses.
    pub fn kling(&self) -> kinora_providers::kling::KlingChannel {
        kinora_providers::kling::KlingChannel {
            send_callbacks: self.send_callbacks,
            max_queries_per_second: self.max_queries_per_second,
            max_parallel_queries: self.max_parallel_queries,
            ..kinora_providers::kling::KlingChannel::new(
                &self.base_url,
                &self.access_key,
                &self.secret_key,
            )
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    /// Seconds between a failed attempt and the next, ±20 % jitter; one more attempt than
    /// delays is made, then the event is given up.
    pub retry_delays_seconds: Vec<u64>,
}

impl Default for CallbacksConfig {
    fn default() -> Self {
        Self {
            // 8 attempts over about 24 hours.
            retry_delays_seconds: vec![30, 120, 600, 1800, 3600, 14_400, 64_800],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AceDataConfig {
    /// Longest a blocking `/kling/videos` or `/kling/motion` request waits for its task before
    /// answering 504 with the task id (the task keeps running).
    pub sync_max_wait_seconds: u64,
}

impl Default for AceDataConfig {
    fn default() -> Self {
        Self {
            sync_max_wait_seconds: 600,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// 64 hex digits: the key access-key secrets are encrypted under in the database. Empty:
    /// a key generated on first use and kept in `<data_dir>/access-key-encryption.key`. Every
    /// process of one deployment needs the same key.
    pub encryption_key: String,
    /// Clock skew allowed when checking a JWT's `exp` and `nbf`.
    pub jwt_leeway_seconds: u64,
    /// A JWT whose `exp` lies further ahead than this is refused.
    pub jwt_max_lifetime_seconds: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            encryption_key: String::new(),
            jwt_leeway_seconds: 30,
            jwt_max_lifetime_seconds: 86_400,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter such as `info` or `kinora=debug,sqlx=warn`; `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[cfg(feature = "scripted-provider")]
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Present: every model is routed to the scripted provider.
    pub scripted: Option<kinora_providers::scripted::ScriptedConfig>,
}

impl Config {
    /// Defaults, then the file (if any), then the environment.
    pub fn load(file: Option<&Path>) -> Result<Self, Error> {
        Self::load_from(file, std::env::vars())
    }

    /// Like [`Config::load`] with the environment given explicitly (tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, Error> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(config_error(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file_exact(path));
        }
        let vars: Vec<(String, String)> = env
            .into_iter()
            .filter_map(|(name, value)| {
                let key = name.strip_prefix("KINORA_")?;
                if NON_CONFIG_ENV.contains(&key) || key.starts_with(TEST_ENV_PREFIX) {
                    return None;
                }
                Some((key.to_owned(), value))
            })
            .collect();
        if !vars.is_empty() {
            figment = figment.merge(EnvOverrides(env_to_table(&vars)));
        }
        let config: Config = figment.extract().map_err(|e| {
            let details: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            config_error(details.join("; "))
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Error> {
        self.official.capabilities()?;
        self.billing.prices()?;
        let token = &self.admin.token;
        if !token.is_empty() && token.chars().count() < MIN_ADMIN_TOKEN_CHARS {
            return Err(config_error(format!(
                "admin.token must be at least {MIN_ADMIN_TOKEN_CHARS} characters (or empty to turn the admin API off)"
            )));
        }
        let mut names = std::collections::BTreeSet::new();
        for channel in &self.channels {
            if channel.name.is_empty() || channel.name == LOCAL_CHANNEL {
                return Err(config_error(format!(
                    "every channel needs a name other than `{LOCAL_CHANNEL}` (the built-in engine)"
                )));
            }
            if !names.insert(channel.name.as_str()) {
                return Err(config_error(format!(
                    "channel `{}` is defined twice",
                    channel.name
                )));
            }
            if channel.access_key.is_empty() || channel.secret_key.is_empty() {
                return Err(config_error(format!(
                    "channel `{}` needs access_key and secret_key",
                    channel.name
                )));
            }
            if channel.failover_after_attempts == 0 || channel.max_parallel_queries == 0 {
                return Err(config_error(format!(
                    "channel `{}`: failover_after_attempts and max_parallel_queries must be at least 1",
                    channel.name
                )));
            }
            if url::Url::parse(&channel.base_url).is_err() {
                return Err(config_error(format!(
                    "channel `{}`: base_url `{}` is not a URL",
                    channel.name, channel.base_url
                )));
            }
        }
        for (model, route) in &self.routes {
            if route.is_empty() {
                return Err(config_error(format!("routes.{model} names no channel")));
            }
            if let Some(unknown) = route
                .iter()
                .find(|c| c.as_str() != LOCAL_CHANNEL && !names.contains(c.as_str()))
            {
                return Err(config_error(format!(
                    "routes.{model} names channel `{unknown}`, which is not defined"
                )));
            }
        }
        if self.callbacks.retry_delays_seconds.contains(&0) {
            return Err(config_error(
                "callbacks.retry_delays_seconds must hold delays of at least 1 s",
            ));
        }
        if self.acedata.sync_max_wait_seconds == 0 {
            return Err(config_error(
                "acedata.sync_max_wait_seconds must be at least 1",
            ));
        }
        let q = &self.queue;
        if q.concurrency == 0 {
            return Err(config_error("queue.concurrency must be at least 1"));
        }
        if q.lease_seconds == 0
            || q.heartbeat_seconds == 0
            || q.heartbeat_seconds >= q.lease_seconds
        {
            return Err(config_error(
                "queue.heartbeat_seconds must be at least 1 and shorter than queue.lease_seconds",
            ));
        }
        if q.max_attempts == 0 {
            return Err(config_error("queue.max_attempts must be at least 1"));
        }
        if q.poll_interval_ms == 0 || q.sweep_interval_seconds == 0 {
            return Err(config_error(
                "queue.poll_interval_ms and queue.sweep_interval_seconds must be positive",
            ));
        }
        let key = &self.auth.encryption_key;
        if !key.is_empty() && (key.len() != 64 || !key.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(config_error(
                "auth.encryption_key must be 64 hex digits (32 bytes)",
            ));
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(config_error(
                "database.url must start with sqlite://, postgres:// or postgresql://",
            ));
        }
        self.fetch
            .validate()
            .map_err(|e| config_error(e.message()))?;
        if self.storage.backend == StorageBackend::S3 && self.storage.s3.bucket.is_empty() {
            return Err(config_error(
                "storage.s3.bucket is required when storage.backend is \"s3\"",
            ));
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or the SQLite file under `data_dir`.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("kinora.db").display())
        } else {
            self.database.url.clone()
        }
    }

    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_connections: self.database.max_connections,
            sqlite_synchronous_full: self.database.sqlite_synchronous == SqliteSynchronous::Full,
            ..StoreOptions::new(self.database_url())
        }
    }

    pub fn storage_config(&self) -> StorageConfig {
        let s = &self.storage;
        match s.backend {
            StorageBackend::Memory => StorageConfig::Memory,
            StorageBackend::Filesystem => StorageConfig::Filesystem {
                root: if s.path.is_empty() {
                    self.data_dir.join("objects")
                } else {
                    PathBuf::from(&s.path)
                },
            },
            StorageBackend::S3 => StorageConfig::S3(S3Config {
                bucket: s.s3.bucket.clone(),
                region: s.s3.region.clone(),
                endpoint: non_empty(&s.s3.endpoint),
                access_key_id: non_empty(&s.s3.access_key_id),
                secret_access_key: non_empty(&s.s3.secret_access_key),
                allow_http: s.s3.allow_http,
                virtual_hosted_style: s.s3.virtual_hosted_style,
            }),
        }
    }

    /// The effective configuration as TOML, secrets replaced by `<redacted>`.
    pub fn to_redacted_toml(&self) -> Result<String, Error> {
        let mut shown = self.clone();
        shown.database.url = redact_url_password(&self.database_url());
        for secret in [
            &mut shown.storage.s3.access_key_id,
            &mut shown.storage.s3.secret_access_key,
            &mut shown.auth.encryption_key,
        ] {
            if !secret.is_empty() {
                *secret = "<redacted>".into();
            }
        }
        for channel in &mut shown.channels {
            channel.secret_key = "<redacted>".into();
        }
        if shown.storage.path.is_empty() && shown.storage.backend == StorageBackend::Filesystem {
            shown.storage.path = self.data_dir.join("objects").display().to_string();
        }
        toml::to_string_pretty(&shown).map_err(|e| Error::internal(format!("render config: {e}")))
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn config_error(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Config, message)
}

fn redact_url_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("<redacted>")).is_ok() {
                parsed.to_string().replace("%3Credacted%3E", "<redacted>")
            } else {
                "<redacted>".into()
            }
        }
        _ => raw.to_owned(),
    }
}

/// `KINORA_*` variables as a figment source, so errors name the environment as their origin.
struct EnvOverrides(toml::Table);

impl figment::Provider for EnvOverrides {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("KINORA_* environment variables")
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        Serialized::defaults(&self.0).data()
    }
}

/// Turns `SECTION__KEY=value` pairs into a table. Values that parse as TOML values (numbers,
/// booleans, quoted strings, arrays) keep their type; anything else is a string.
fn env_to_table(vars: &[(String, String)]) -> toml::Table {
    let mut root = toml::Table::new();
    for (name, raw) in vars {
        let path: Vec<String> = name.split("__").map(|p| p.to_ascii_lowercase()).collect();
        let value = format!("v = {raw}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        insert_path(&mut root, &path, value);
    }
    root
}

fn insert_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    match path {
        [] => {}
        [leaf] => {
            table.insert(leaf.clone(), value);
        }
        [section, rest @ ..] => {
            let entry = table
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            if let toml::Value::Table(next) = entry {
                insert_path(next, rest, value);
            }
        }
    }
}

impl Config {
    /// Which channels serve each model, in order: every routed model, then the rest.
    pub fn route_table(&self) -> Vec<(String, Vec<String>)> {
        let mut table: Vec<(String, Vec<String>)> = self
            .routes
            .iter()
            .map(|(model, channels)| (model.clone(), channels.clone()))
            .collect();
        table.push((
            "every other model".to_owned(),
            vec![LOCAL_CHANNEL.to_owned()],
        ));
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn write(dir: &tempfile::TempDir, text: &str) -> PathBuf {
        let path = dir.path().join("kinora.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    #[test]
    fn embedded_defaults_need_nothing() {
        let config = Config::load_from(None, env(&[])).expect("defaults");
        assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./kinora-data"));
        assert_eq!(config.database_url(), "sqlite://./kinora-data/kinora.db");
        assert_eq!(
            config.storage_config(),
            StorageConfig::Filesystem {
                root: PathBuf::from("./kinora-data/objects")
            }
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(&dir, "data_dir = \"/srv/kinora\"\n[server]\nlisten = \"0.0.0.0:9000\"\n[queue]\nconcurrency = 3\n");
        let config = Config::load_from(
            Some(&path),
            env(&[
                ("KINORA_QUEUE__CONCURRENCY", "5"),
                (
                    "KINORA_DATABASE__URL",
                    "postgres://kinora:hunter2@db/kinora",
                ),
                ("KINORA_STORAGE__S3__ALLOW_HTTP", "true"),
                ("KINORA_FETCH__ALLOW", "[\"127.0.0.1/32\"]"),
                ("KINORA_URL", "http://client.example"),
                ("KINORA_API_KEY", "sk-client"),
                ("KINORA_TEST_DATABASE_URL", "postgres://test"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .expect("load");
        assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
        assert_eq!(config.data_dir, PathBuf::from("/srv/kinora"));
        assert_eq!(config.queue.concurrency, 5);
        assert_eq!(config.fetch.allow, vec!["127.0.0.1/32".to_owned()]);
        assert!(config.storage.s3.allow_http);
        assert_eq!(config.database_url(), "postgres://kinora:hunter2@db/kinora");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            &dir,
            "[server]\nlisten = \"127.0.0.1:1\"\nlisten_backlog = 5\n",
        );
        let err = Config::load_from(Some(&path), env(&[])).expect_err("unknown file key");
        assert_eq!(err.code(), ErrorCode::Config);
        assert!(err.message().contains("listen_backlog"), "{err}");

        let err =
            Config::load_from(None, env(&[("KINORA_QUEUE__CONCURENCY", "4")])).expect_err("typo");
        assert!(err.message().contains("concurency"), "{err}");
        assert!(
            err.message().contains("KINORA_"),
            "names the environment as the source: {err}"
        );

        let err = Config::load_from(None, env(&[("KINORA_STORAGE__BACKEND", "floppy")]))
            .expect_err("bad value");
        assert!(err.message().contains("floppy"), "{err}");
    }

    #[test]
    fn missing_file_and_inconsistent_values_are_refused() {
        let err = Config::load_from(Some(Path::new("/nonexistent/kinora.toml")), env(&[]))
            .expect_err("missing");
        assert!(err.message().contains("does not exist"), "{err}");
        let err = Config::load_from(None, env(&[("KINORA_QUEUE__HEARTBEAT_SECONDS", "60")]))
            .expect_err("hb");
        assert!(err.message().contains("heartbeat_seconds"), "{err}");
        let err =
            Config::load_from(None, env(&[("KINORA_STORAGE__BACKEND", "s3")])).expect_err("bucket");
        assert!(err.message().contains("storage.s3.bucket"), "{err}");
        let err = Config::load_from(None, env(&[("KINORA_DATABASE__URL", "mysql://x")]))
            .expect_err("url");
        assert!(err.message().contains("database.url"), "{err}");
    }

    #[test]
    fn redacted_output_hides_secrets() {
        let config = Config::load_from(
            None,
            env(&[
                (
                    "KINORA_DATABASE__URL",
                    "postgres://kinora:hunter2@db:5432/kinora",
                ),
                ("KINORA_STORAGE__BACKEND", "s3"),
                ("KINORA_STORAGE__S3__BUCKET", "videos"),
                ("KINORA_STORAGE__S3__ACCESS_KEY_ID", "AKIAEXAMPLE"),
                ("KINORA_STORAGE__S3__SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ]),
        )
        .expect("load");
        let text = config.to_redacted_toml().expect("render");
        for secret in ["hunter2", "AKIAEXAMPLE", "wJalrXUtnFEMI"] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        assert!(
            text.contains("postgres://kinora:<redacted>@db:5432/kinora"),
            "{text}"
        );
        assert!(text.contains("bucket = \"videos\""), "{text}");
        // The printed configuration is itself a valid configuration file.
        let reparsed: Config = toml::from_str(&text).expect("printed config parses");
        assert_eq!(reparsed.storage.s3.bucket, "videos");
    }

    #[test]
    fn example_file_documents_every_key_with_its_default() {
        let example = include_str!("../../../config/example.toml");
        let parsed: Config =
            toml::from_str(example).expect("example.toml parses with no unknown keys");
        assert_eq!(parsed, Config::default(), "example.toml shows the defaults");
        let mut defaults = toml::Value::try_from(Config::default()).expect("serialize defaults");
        if let toml::Value::Table(t) = &mut defaults {
            t.remove("testing");
        }
        let documented: toml::Value = toml::from_str(example).expect("example parses");
        let mut missing = Vec::new();
        collect_missing("", &defaults, &documented, &mut missing);
        assert!(
            missing.is_empty(),
            "keys missing from config/example.toml: {missing:?}"
        );
    }

    fn collect_missing(
        prefix: &str,
        defaults: &toml::Value,
        documented: &toml::Value,
        missing: &mut Vec<String>,
    ) {
        if let toml::Value::Table(table) = defaults {
            for (key, value) in table {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                match documented.get(key) {
                    Some(doc) => collect_missing(&path, value, doc, missing),
                    None => missing.push(path),
                }
            }
        }
    }

    #[test]
    fn a_broken_capability_table_is_a_configuration_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("caps.toml");
        std::fs::write(&path, "[text2video.kling-v1]\nmodes = []\n").expect("write");
        let config = OfficialConfig {
            capabilities_file: path.display().to_string(),
        };
        let e = config.capabilities().expect_err("no modes");
        assert_eq!(e.code(), ErrorCode::Config);
        assert!(e.message().contains("lists no mode"), "{e}");
        let missing = OfficialConfig {
            capabilities_file: dir.path().join("none.toml").display().to_string(),
        };
        assert!(missing.capabilities().is_err());
        assert!(OfficialConfig::default().capabilities().is_ok());
    }

    #[test]
    fn a_replacement_price_table_is_read_and_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("prices.toml");
        std::fs::write(&path, "[[rule]]\nmodels = [\"*\"]\nstd = \"1.2345\"\n").expect("write");
        let config = BillingConfig {
            prices_file: path.display().to_string(),
        };
        let e = config.prices().expect_err("four places");
        assert_eq!(e.code(), ErrorCode::Config);
        assert!(e.message().contains("1.2345"), "{e}");
        std::fs::write(&path, "[[rule]]\nmodels = [\"*\"]\nstd = \"1.25\"\n").expect("write");
        assert!(config.prices().is_ok());
        assert!(BillingConfig::default().prices().is_ok());
    }
}

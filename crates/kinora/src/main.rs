//! The one kinora binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod video;
use kinora_server::{admin, Config};

#[derive(Parser)]
#[command(
    name = "kinora",
    version,
    about = "A self-hostable, Kling-compatible video-generation API server",
    after_help = "Out of the box every model is served by the built-in local render engine: real H.264 \
        MP4s that honour the request's controllable parameters, whose pictures are deterministic \
        procedural renders for development, tests and demos, not AI generations."
)]
struct Cli {
    /// TOML configuration file. Without one, embedded defaults apply; KINORA_* variables
    /// override either (KINORA_SERVER__LISTEN sets server.listen).
    #[arg(long, short, global = true, env = "KINORA_CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and run the workers in one process (the default).
    Serve,
    /// Run only the workers.
    Worker,
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and print it, secrets redacted.
    CheckConfig,
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Tenant accounts: list them, add one, or turn metering on or off.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Create, read, wait for and download videos through a kinora server's unified API.
    Video(Box<VideoCli>),
    /// Manage an account's webhook signing secret.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// List the upstream channels (disabled or not, tasks in flight), or enable one that an
    /// upstream refusal disabled.
    Channels {
        #[command(subcommand)]
        command: Option<ChannelsCommand>,
    },
    /// An account's apps: list them, add one, or set the limits of its keys.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// An account's balances (minor units): show them, credit one, or list its ledger.
    Balance {
        #[command(subcommand)]
        command: Option<BalanceCommand>,
        /// The account (UUID); by default the bootstrap account.
        #[arg(long, global = true)]
        account: Option<String>,
    },
    /// Show a task's callbacks and every delivery attempt.
    Callbacks {
        /// The task id, in any dialect's form.
        task_id: String,
        /// The account (UUID) the task belongs to; by default the bootstrap account.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// Create the account's webhook secret and print it (shown only this once); callbacks are
    /// signed with it from then on.
    Create {
        #[arg(long)]
        account: Option<String>,
    },
    /// Replace the secret with a new one, printed once; the old one keeps signing alongside it
    /// for 7 days, so receivers can switch without losing a callback.
    Rotate {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum AppsCommand {
    /// List the account's apps with their balances.
    List {
        #[arg(long)]
        account: Option<String>,
    },
    /// Add an app (balance 0). By default the account's general balance pays what the app's
    /// balance lacks.
    Create {
        name: String,
        #[arg(long)]
        account: Option<String>,
        /// The app's tasks may use only its own balance.
        #[arg(long)]
        no_general_balance: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Set the per-key limits of an app's keys; a limit left out takes the server's default
    /// (`limits` in the configuration), 0 lifts it.
    Limits {
        app: String,
        #[arg(long)]
        account: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
    },
}

#[derive(clap::Args)]
struct LimitArgs {
    /// Video submits per second each key may make.
    #[arg(long)]
    submits_per_second: Option<u32>,
    /// Unfinished tasks each key may have.
    #[arg(long)]
    max_in_flight: Option<u32>,
}

impl From<LimitArgs> for kinora_server::store::KeyLimits {
    fn from(args: LimitArgs) -> Self {
        Self {
            submits_per_second: args.submits_per_second,
            max_in_flight: args.max_in_flight,
        }
    }
}

#[derive(Subcommand)]
enum AccountsCommand {
    /// Every account, with whether its tasks are metered.
    List,
    /// Add an account and print its id. It is metered (its tasks need a balance) unless
    /// --unmetered; give it keys with `kinora keys create --account ID`.
    Create {
        name: String,
        #[arg(long)]
        unmetered: bool,
    },
    /// Turn metering on or off. An unmetered account's tasks are free; crediting an account
    /// turns metering on.
    Metering {
        #[arg(value_parser = ["on", "off"])]
        state: String,
        /// The account (UUID); by default the bootstrap account.
        #[arg(long)]
        account: Option<String>,
    },
}

async fn run_accounts(
    config: &Config,
    command: AccountsCommand,
) -> Result<(), kinora_server::Error> {
    let store = kinora_server::open_store(config).await?;
    match command {
        AccountsCommand::List => {
            println!("# account  name  metered  created_at");
            for account in store.list_accounts().await? {
                println!(
                    "{}  {}  {}  {}",
                    account.id,
                    account.name,
                    if account.metered { "yes" } else { "no" },
                    account.created_at
                );
            }
        }
        AccountsCommand::Create { name, unmetered } => {
            let account = admin::create_account(&*store, &name, !unmetered).await?;
            println!("{}", account.id);
        }
        AccountsCommand::Metering { state, account } => {
            let account = account_or_default(&*store, account).await?;
            admin::set_metering(&*store, account, state == "on").await?;
            eprintln!("metering is {state} for account {account}");
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum BalanceCommand {
    /// The general balance and every app's (the default).
    Show,
    /// Add AMOUNT minor units (negative takes them away; a balance never goes below zero).
    Credit {
        #[arg(allow_negative_numbers = true)]
        amount: i64,
        /// The app to credit; by default the general balance.
        #[arg(long)]
        app: Option<String>,
        #[arg(long, default_value = "credited by an operator")]
        note: String,
    },
    /// Every ledger entry of the general balance, or of one app.
    Ledger {
        #[arg(long)]
        app: Option<String>,
    },
}

fn purse(app: Option<String>) -> Result<kinora_server::store::Purse, kinora_server::Error> {
    match app {
        None => Ok(kinora_server::store::Purse::General),
        Some(text) => uuid::Uuid::parse_str(&text)
            .map(kinora_server::store::Purse::App)
            .map_err(|_| kinora_server::Error::invalid(format!("`{text}` is not an app id"))),
    }
}

async fn run_apps(config: &Config, command: AppsCommand) -> Result<(), kinora_server::Error> {
    let store = kinora_server::open_store(config).await?;
    match command {
        AppsCommand::List { account } => {
            let account = account_or_default(&*store, account).await?;
            println!(
                "# app  name  balance  uses-general-balance  submits-per-second  max-in-flight"
            );
            let limit = |n: Option<u32>| n.map_or_else(|| "default".to_owned(), |n| n.to_string());
            for app in store.list_apps(account).await? {
                println!(
                    "{}  {}  {}  {}  {}  {}",
                    app.id,
                    app.name,
                    app.balance,
                    if app.allow_general_balance {
                        "yes"
                    } else {
                        "no"
                    },
                    limit(app.limits.submits_per_second),
                    limit(app.limits.max_in_flight)
                );
            }
        }
        AppsCommand::Create {
            name,
            account,
            no_general_balance,
            limits,
        } => {
            let account = account_or_default(&*store, account).await?;
            let app =
                admin::create_app(&*store, account, &name, !no_general_balance, limits.into())
                    .await?;
            println!("{}", app.id);
        }
        AppsCommand::Limits {
            app,
            account,
            limits,
        } => {
            let account = account_or_default(&*store, account).await?;
            let app = uuid::Uuid::parse_str(&app)
                .map_err(|_| kinora_server::Error::invalid(format!("`{app}` is not an app id")))?;
            admin::set_app_limits(&*store, account, app, limits.into()).await?;
            eprintln!("limits of app {app} set");
        }
    }
    Ok(())
}

async fn run_balance(
    config: &Config,
    account: Option<String>,
    command: Option<BalanceCommand>,
) -> Result<(), kinora_server::Error> {
    let store = kinora_server::open_store(config).await?;
    let account = account_or_default(&*store, account).await?;
    match command.unwrap_or(BalanceCommand::Show) {
        BalanceCommand::Show => {
            let balances = admin::balances(&*store, account).await?;
            println!(
                "metered  {}",
                if balances.metered {
                    "yes"
                } else {
                    "no (tasks are free)"
                }
            );
            println!("general  {}", balances.general_balance);
            for app in balances.apps {
                println!("app {} ({})  {}", app.id, app.name, app.balance);
            }
        }
        BalanceCommand::Credit { amount, app, note } => {
            let balance = admin::credit(&*store, account, purse(app)?, amount, &note).await?;
            println!("{balance}");
        }
        BalanceCommand::Ledger { app } => {
            for entry in store.ledger(account, purse(app)?).await? {
                println!(
                    "{}  {}  {:>8}  {}  {}",
                    entry.created_at,
                    entry.kind,
                    entry.amount,
                    entry
                        .task_id
                        .map_or_else(|| "-".to_owned(), |t| t.to_string()),
                    entry.note
                );
            }
        }
    }
    Ok(())
}

#[derive(Subcommand)]
enum ChannelsCommand {
    /// List every configured channel (the default).
    List,
    /// Let a disabled channel take tasks again (after topping up or fixing its account).
    Enable { name: String },
}

async fn run_channels(
    config: &Config,
    command: Option<ChannelsCommand>,
) -> Result<(), kinora_server::Error> {
    let store = kinora_server::open_store(config).await?;
    let configured: Vec<&str> = std::iter::once(kinora_server::config::LOCAL_CHANNEL)
        .chain(config.channels.iter().map(|c| c.name.as_str()))
        .collect();
    match command.unwrap_or(ChannelsCommand::List) {
        ChannelsCommand::List => {
            let states = store.channel_states().await?;
            println!("# channel  state  tasks-in-flight  reason");
            for name in configured {
                let state = states.iter().find(|s| s.channel == name);
                let disabled = state.and_then(|s| s.disabled_at).is_some();
                println!(
                    "{name}  {}  {}  {}",
                    if disabled { "disabled" } else { "enabled" },
                    state.map_or(0, |s| s.in_flight),
                    state.and_then(|s| s.reason.as_deref()).unwrap_or("-")
                );
            }
        }
        ChannelsCommand::Enable { name } => {
            if !configured.contains(&name.as_str()) {
                return Err(kinora_server::Error::invalid(format!(
                    "no channel `{name}` is configured"
                )));
            }
            if store.enable_channel(&name).await? {
                println!("channel {name} enabled: it takes new tasks again");
            } else {
                println!("channel {name} was not disabled");
            }
        }
    }
    Ok(())
}

async fn account_or_default(
    store: &dyn kinora_server::store::Store,
    given: Option<String>,
) -> Result<kinora_server::AccountId, kinora_server::Error> {
    match given {
        Some(text) => text
            .parse()
            .map_err(|_| kinora_server::Error::invalid(format!("`{text}` is not an account id"))),
        None => kinora_server::auth::default_account(store).await,
    }
}

async fn run_webhooks(
    config: &Config,
    command: WebhooksCommand,
) -> Result<(), kinora_server::Error> {
    use kinora_server::callbacks::secrets;
    let store = kinora_server::open_store(config).await?;
    let sealer = kinora_server::access_keys::SecretBox::load(&config.auth, &config.data_dir)?;
    let (secret, account, verb) = match command {
        WebhooksCommand::Create { account } => {
            let account = account_or_default(&*store, account).await?;
            (
                secrets::create(&*store, &sealer, account).await?,
                account,
                "created",
            )
        }
        WebhooksCommand::Rotate { account } => {
            let account = account_or_default(&*store, account).await?;
            (
                secrets::rotate(&*store, &sealer, account).await?,
                account,
                "rotated",
            )
        }
    };
    eprintln!("{verb} the webhook secret of account {account}; it is shown only once:");
    println!("{}", secret.encoded());
    Ok(())
}

async fn run_callbacks(
    config: &Config,
    task_id: &str,
    account: Option<String>,
) -> Result<(), kinora_server::Error> {
    let store = kinora_server::open_store(config).await?;
    let account = account_or_default(&*store, account).await?;
    let id = kinora_server::TaskId::parse_any(task_id)
        .ok_or_else(|| kinora_server::Error::invalid(format!("`{task_id}` is not a task id")))?;
    let events = store.list_callback_attempts(account, id).await?;
    if events.is_empty() {
        eprintln!("task {id} of account {account} has no callbacks");
    }
    for (event, attempts) in events {
        println!(
            "{}  {:<10}  {:<9}  {}",
            event.id,
            event.phase.as_str(),
            event.state.as_str(),
            event.url
        );
        for a in attempts {
            println!(
                "    #{}  at {}  status {}  {} ms  {}",
                a.attempt,
                a.at,
                a.http_status
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                a.latency_ms,
                a.error.as_deref().unwrap_or("delivered")
            );
        }
    }
    Ok(())
}

#[derive(clap::Args)]
struct VideoCli {
    #[command(flatten)]
    connection: Connection,
    #[command(subcommand)]
    command: VideoCommand,
}

#[derive(clap::Args)]
struct Connection {
    /// The kinora server.
    #[arg(
        long,
        env = "KINORA_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// An API key (`kinora keys create` makes one).
    #[arg(long, env = "KINORA_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
}

#[derive(Subcommand)]
enum VideoCommand {
    /// Create a video task (POST /v1/videos) and print it, or with --wait the downloaded file.
    Create(Box<CreateArgs>),
    /// Print a task (by task id or external_task_id) as JSON.
    Get { id: String },
    /// List the account's tasks, newest first: id, status, model, created, external id.
    List {
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Tasks per page (1-500).
        #[arg(long, default_value_t = 30)]
        page_size: u32,
        /// Print the task objects as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Wait until a task ends, showing its progress, and print it.
    Wait {
        id: String,
        #[arg(long, default_value_t = 900)]
        timeout: u64,
    },
    /// Download a completed task's video.
    Download {
        id: String,
        /// Where to write it (default: ./<task id>.mp4).
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct CreateArgs {
    /// A JSON file with the whole request body; the flags below override its fields.
    #[arg(long)]
    json: Option<PathBuf>,
    #[arg(long)]
    model: Option<String>,
    #[arg(long)]
    prompt: Option<String>,
    #[arg(long)]
    negative_prompt: Option<String>,
    /// std or pro.
    #[arg(long)]
    mode: Option<String>,
    /// 16:9, 9:16 or 1:1.
    #[arg(long)]
    aspect_ratio: Option<String>,
    #[arg(long)]
    seconds: Option<u32>,
    /// on or off.
    #[arg(long)]
    sound: Option<String>,
    /// First frame: a URL or a local image file (sent as Base64).
    #[arg(long)]
    image: Option<String>,
    #[arg(long)]
    external_task_id: Option<String>,
    #[arg(long)]
    callback_url: Option<String>,
    /// Wait for the task, download its video and print the file's path.
    #[arg(long)]
    wait: bool,
    /// With --wait: where to write the video (default: ./<task id>.mp4).
    #[arg(long, short)]
    output: Option<PathBuf>,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 900)]
    timeout: u64,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Issue a new API key, or an access-key pair for JWTs, and print its secret (shown only
    /// this once).
    Create {
        /// A label to recognise the key by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// `api-key` (a bearer secret) or `access-key` (an access key and secret key that
        /// sign JWTs, as the official Kling API uses).
        #[arg(long, value_enum, default_value_t = KeyKind::ApiKey)]
        kind: KeyKind,
        /// The account (UUID) the key acts for; by default the bootstrap account.
        #[arg(long)]
        account: Option<String>,
        /// The account's app (UUID) whose balance and limits the key's tasks use; by default
        /// none (the general balance and the server's default limits).
        #[arg(long)]
        app: Option<String>,
    },
    /// List an account's keys (prefix, name, created, revoked); never the secrets.
    List {
        #[arg(long)]
        account: Option<String>,
    },
    /// Revoke a key by its id; requests with it are refused from then on.
    Revoke {
        id: String,
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum KeyKind {
    ApiKey,
    AccessKey,
}

async fn run_keys(config: &Config, command: KeysCommand) -> Result<(), kinora_server::Error> {
    use kinora_server::auth;
    let store = kinora_server::open_store(config).await?;
    let account = |given: Option<String>| async {
        match given {
            Some(text) => text.parse().map_err(|_| {
                kinora_server::Error::invalid(format!("`{text}` is not an account id"))
            }),
            None => auth::default_account(&*store).await,
        }
    };
    match command {
        KeysCommand::Create {
            name,
            kind,
            account: id,
            app,
        } => {
            let id = match id {
                Some(text) => Some(account(Some(text)).await?),
                None => None,
            };
            let app = app
                .map(|text| {
                    uuid::Uuid::parse_str(&text).map_err(|_| {
                        kinora_server::Error::invalid(format!("`{text}` is not an app id"))
                    })
                })
                .transpose()?;
            let secrets =
                kinora_server::access_keys::SecretBox::load(&config.auth, &config.data_dir)?;
            let kind = match kind {
                KeyKind::ApiKey => admin::KeyKind::ApiKey,
                KeyKind::AccessKey => admin::KeyKind::AccessKey,
            };
            let issued = admin::issue_credential(&*store, &secrets, id, app, kind, &name).await?;
            eprintln!(
                "created {} {} ({}) for account {}; the secret below is shown only once:",
                issued.kind.replace('_', " "),
                issued.id,
                issued.name,
                issued.account_id
            );
            if let Some(secret) = &issued.api_key {
                println!("{secret}");
            }
            if let (Some(access), Some(secret)) = (&issued.access_key, &issued.secret_key) {
                println!("access_key: {access}");
                println!("secret_key: {secret}");
            }
        }
        KeysCommand::List { account: id } => {
            let id = account(id).await?;
            println!(
                "{:<36}  {:<10}  {:<27}  {:<16}  {:<36}  {:<13}  revoked_at",
                "id", "kind", "prefix / access key", "name", "app", "created_at"
            );
            let or_dash = |text: Option<String>| text.unwrap_or_else(|| "-".to_owned());
            for key in admin::list_credentials(&*store, id).await? {
                println!(
                    "{:<36}  {:<10}  {:<27}  {:<16}  {:<36}  {:<13}  {}",
                    key.id,
                    key.kind.replace('_', "-"),
                    key.shown,
                    key.name,
                    or_dash(key.app_id.map(|a| a.to_string())),
                    key.created_at,
                    or_dash(key.revoked_at.map(|t| t.to_string()))
                );
            }
        }
        KeysCommand::Revoke { id, account: owner } => {
            let owner = account(owner).await?;
            let key_id = id
                .parse()
                .map_err(|_| kinora_server::Error::invalid(format!("`{id}` is not a key id")))?;
            admin::revoke_credential(&*store, owner, key_id).await?;
            eprintln!("revoked key {id}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kinora: invalid configuration: {}", e.message());
            return ExitCode::from(2);
        }
    };
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::CheckConfig = command {
        return match config.to_redacted_toml() {
            Ok(text) => {
                println!("# effective configuration (secrets redacted)\n{text}");
                println!("# which channel serves each model (in order of preference)");
                for (model, channels) in config.route_table() {
                    println!("# {model} -> {}", channels.join(", "));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("kinora: {e}");
                ExitCode::FAILURE
            }
        };
    }
    kinora_server::init_logging(&config.log);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kinora: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve => kinora_server::serve(config).await,
            Command::Worker => kinora_server::work(config).await,
            Command::Migrate => kinora_server::migrate(&config).await,
            Command::Keys(keys) => run_keys(&config, keys).await,
            Command::Accounts(command) => run_accounts(&config, command).await,
            Command::Video(cli) => video::run(
                &cli.connection.url,
                cli.connection.api_key.as_deref(),
                cli.command,
            )
            .await
            .map_err(|e| kinora_server::Error::new(kinora_server::ErrorCode::InvalidInput, e)),
            Command::CheckConfig => Ok(()),
            Command::Webhooks(command) => run_webhooks(&config, command).await,
            Command::Channels { command } => run_channels(&config, command).await,
            Command::Apps(command) => run_apps(&config, command).await,
            Command::Balance { command, account } => run_balance(&config, account, command).await,
            Command::Callbacks { task_id, account } => {
                run_callbacks(&config, &task_id, account).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kinora: {e}");
            ExitCode::FAILURE
        }
    }
}

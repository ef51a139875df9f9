//! kinora's server process: configuration, HTTP, and the job workers, wired together.

pub mod access_keys;
pub mod acedata;
pub mod admin;
pub mod auth;
pub mod billing;
pub mod callbacks;
pub mod channels;
pub mod config;
pub mod elements;
pub mod extend;
pub mod files;
pub mod http;
pub mod official;
pub mod pipeline;
pub mod task_events;
pub mod unified;
pub mod upstream_push;
pub mod worker;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kinora_core::time::{Clock, SystemClock};
use kinora_media::fetch::Fetcher;
use kinora_media::stage::Stager;
use kinora_providers::local::LocalProvider;
use kinora_providers::Providers;
use kinora_storage::{ObjectStorage, StorageConfig};
use kinora_store::Store;
use tokio_util::sync::CancellationToken;
use tracing::info;

pub use crate::pipeline::{OrphanSweeper, Pipeline};
use crate::worker::Workers;
pub use config::Config;
pub use kinora_core::{AccountId, Error, ErrorCode, TaskId};
pub use kinora_store as store;

/// The long-lived parts every handler and worker uses.
pub struct Services {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub storage: ObjectStorage,
    pub providers: Arc<Providers>,
    /// Fetches, probes and stores the media inputs requests name.
    pub stager: Stager,
    /// Signs the result URLs the dialects hand out.
    pub files: files::FileUrls,
    /// Opens the access-key secrets that JWTs are checked with.
    pub secrets: access_keys::SecretBox,
    /// What each upstream model offers (the official dialect's capability table).
    pub capabilities: official::capabilities::CapabilityTable,
    /// What a task costs.
    pub prices: billing::prices::PriceTable,
    /// Each key's recent submits, for its submits-per-second limit.
    pub submit_rate: billing::admission::SubmitRate,
    pub clock: Arc<dyn Clock>,
    /// Wakes requests that wait for a task to end.
    pub task_events: Arc<task_events::TaskEvents>,
    /// Cancelled when the server begins to shut down, so waiting requests answer at once.
    pub stopping: CancellationToken,
    /// Makes and checks the URLs upstreams push task changes to.
    pub upstream_receiver: upstream_push::UpstreamReceiver,
}

impl Services {
    /// Opens the database (applying migrations) and object storage named by the config,
    /// creating the data directory the embedded defaults live in.
    pub async fn open(config: Config) -> Result<Arc<Self>, Error> {
        prepare_data_dir(&config)?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = kinora_store::connect(&config.store_options(), clock.clone()).await?;
        store.migrate().await?;
        let storage = ObjectStorage::open(&config.storage_config())?;
        let providers = Arc::new(build_providers(&config)?);
        let stager = Stager::new(Fetcher::new(&config.fetch)?, storage.clone());
        let files = files::FileUrls::load(
            &*store,
            config.server.public_base(),
            config.server.result_retention_days,
        )
        .await?;
        let secrets = access_keys::SecretBox::load(&config.auth, &config.data_dir)?;
        let upstream_receiver =
            upstream_push::UpstreamReceiver::load(&*store, config.server.public_base()).await?;
        let capabilities = config.official.capabilities()?;
        let prices = config.billing.prices()?;
        elements::install_presets(&*store, &storage).await?;
        Ok(Arc::new(Self {
            config,
            store,
            storage,
            providers,
            stager,
            files,
            secrets,
            capabilities,
            prices,
            submit_rate: Default::default(),
            clock,
            task_events: Arc::default(),
            stopping: CancellationToken::new(),
            upstream_receiver,
        }))
    }

    /// The first check of a video submit after authentication: the key's request rate. The
    /// permit says whether the task is paid for and under which in-flight limit.
    pub async fn open_submit(
        &self,
        caller: auth::Caller,
    ) -> Result<Result<kinora_store::SubmitTerms, billing::admission::SubmitRefusal>, Error> {
        let terms = self.store.submit_terms(caller.account, caller.app).await?;
        Ok(billing::admission::check_rate(
            &self.submit_rate,
            caller,
            terms,
            &self.config.limits,
            self.clock.now_ms(),
        ))
    }

    /// The caller a request's `Authorization` header names (see [`auth::authenticate`]).
    pub async fn authenticate(
        &self,
        header: Option<&axum::http::HeaderValue>,
    ) -> Result<Result<auth::Caller, auth::AuthFailure>, Error> {
        let rules = access_keys::JwtRules::from(&self.config.auth);
        auth::authenticate(
            &*self.store,
            (&self.secrets, rules),
            self.clock.now_ms(),
            header,
        )
        .await
    }

    /// The worker pool with every handler this build has.
    pub fn workers(self: &Arc<Self>) -> Workers {
        let pipeline = Arc::new(Pipeline {
            store: self.store.clone(),
            storage: self.storage.clone(),
            providers: self.providers.clone(),
            clock: self.clock.clone(),
            events: self.task_events.clone(),
            outbox: Arc::new(callbacks::outbox::Outbox::new(
                self.store.clone(),
                self.files.clone(),
            )),
            receiver: Some(self.upstream_receiver.clone()),
            disabled: Default::default(),
        });
        let grace = Duration::from_secs(self.config.server.shutdown_grace_seconds);
        let mut workers = Workers::new(self.store.clone(), self.config.queue.clone(), grace)
            .with_sweeper(Arc::new(OrphanSweeper(pipeline.clone())));
        for handler in pipeline.handlers() {
            workers = workers.with_handler(handler);
        }
        match callbacks::deliver::DeliverCallback::new(self.clone()) {
            Ok(deliver) => workers = workers.with_handler(Arc::new(deliver)),
            // Building the guarded client only fails on a broken TLS setup; the tasks still run
            // and their callbacks wait, recorded, for a worker that can send them.
            Err(e) => tracing::error!(error = %e, "callbacks cannot be delivered by this worker"),
        }
        workers
    }
}

/// Every model is served by the built-in `local` render engine unless a test build routes
/// them to the scripted provider.
fn build_providers(config: &Config) -> Result<Providers, Error> {
    let mut providers = Providers::new();
    let local = LocalProvider::new(Some(config.render.threads))?;
    providers.add_channel(config::LOCAL_CHANNEL, Arc::new(local));
    providers.set_default_channel(config::LOCAL_CHANNEL);
    for channel in &config.channels {
        let provider = match channel.kind {
            config::ChannelKind::Kling => {
                kinora_providers::kling::KlingProvider::new(channel.kling())?
            }
        };
        providers.add_channel_with(channel.name.clone(), Arc::new(provider), channel.routing());
    }
    for (model, route) in &config.routes {
        providers.route(model, route.clone());
    }
    info!(
        "local render engine active: results are deterministic procedural renders for development, \
         tests and demos, not AI generations"
    );
    #[cfg(feature = "scripted-provider")]
    if let Some(script) = &config.testing.scripted {
        let provider = kinora_providers::scripted::ScriptedProvider::new(script.clone());
        providers.add_channel("scripted", Arc::new(provider));
        providers.set_default_channel("scripted");
    }
    Ok(providers)
}

fn prepare_data_dir(config: &Config) -> Result<(), Error> {
    let uses_sqlite_default = config.database.url.is_empty();
    let uses_fs_default = matches!(config.storage_config(), StorageConfig::Filesystem { .. });
    if uses_sqlite_default || uses_fs_default {
        std::fs::create_dir_all(&config.data_dir).map_err(|e| {
            Error::new(
                ErrorCode::Config,
                format!("cannot create data_dir {}: {e}", config.data_dir.display()),
            )
        })?;
    }
    if let Some(path) = config.database_url().strip_prefix("sqlite://") {
        if let Some(parent) = Path::new(path.split('?').next().unwrap_or(path)).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    Error::new(
                        ErrorCode::Config,
                        format!("cannot create {}: {e}", parent.display()),
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// `kinora serve`: the API and the workers in one process, until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<(), Error> {
    let listen = config.server.listen;
    let services = Services::open(config).await?;
    announce_bootstrap_key(&*services.store).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| Error::new(ErrorCode::Config, format!("cannot listen on {listen}: {e}")))?;
    serve_on(services, listener, shutdown_signal()).await
}

/// Serves on an already bound listener until `shutdown` completes: stops accepting, lets
/// in-flight requests finish, then stops the workers (which finish or release their jobs).
pub async fn serve_on(
    services: Arc<Services>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let stop = CancellationToken::new();
    let workers = tokio::spawn(services.workers().run(stop.clone()));
    let sweep = tokio::spawn(
        services
            .task_events
            .clone()
            .sweep(services.store.clone(), stop.clone()),
    );
    let stopping = services.stopping.clone();
    let addr = listener
        .local_addr()
        .map_err(|e| Error::internal(e.to_string()))?;
    info!(%addr, backend = ?services.store.backend(), storage = services.storage.backend_name(), "kinora listening");
    let http_stop = stop.clone();
    let served = axum::serve(listener, http::router(services.clone()))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {}
                _ = http_stop.cancelled() => {}
            }
            // Requests waiting for a task answer now instead of holding the shutdown.
            stopping.cancel();
        })
        .await;
    stop.cancel();
    let _ = workers.await;
    let _ = sweep.await;
    info!("kinora stopped");
    served.map_err(|e| Error::internal(format!("HTTP server failed: {e}")))
}

/// On the first start of a database, creates the first API key and prints it, once: only its
/// hash is stored.
async fn announce_bootstrap_key(store: &dyn Store) -> Result<(), Error> {
    if let Some(issued) = auth::bootstrap(store).await? {
        info!(key_prefix = %issued.key.prefix, "first start: created the bootstrap account and its first API key");
        println!(
            "\nkinora: first start. This API key is shown only once; keep it:\n\n    {}\n\n\
             Use it as `Authorization: Bearer <key>`. `kinora keys create` makes more.\n",
            issued.secret
        );
    }
    Ok(())
}

/// Opens and migrates the configured database, for the admin commands.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, Error> {
    prepare_data_dir(config)?;
    let store = kinora_store::connect(&config.store_options(), Arc::new(SystemClock)).await?;
    store.migrate().await?;
    Ok(store)
}

/// `kinora worker`: only the workers, until SIGTERM or SIGINT.
pub async fn work(config: Config) -> Result<(), Error> {
    let services = Services::open(config).await?;
    let stop = CancellationToken::new();
    let workers = tokio::spawn(services.workers().run(stop.clone()));
    shutdown_signal().await;
    stop.cancel();
    workers
        .await
        .map_err(|e| Error::internal(format!("workers panicked: {e}")))
}

/// `kinora migrate`: applies the database migrations and exits.
pub async fn migrate(config: &Config) -> Result<(), Error> {
    let store = open_store(config).await?;
    info!(backend = ?store.backend(), "migrations applied");
    Ok(())
}

/// Completes on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => info!("SIGINT received; shutting down"),
        _ = terminate => info!("SIGTERM received; shutting down"),
    }
}

/// Installs the log subscriber the config asks for; `RUST_LOG` wins over `log.level`.
pub fn init_logging(config: &config::LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        config::LogFormat::Json => builder.json().try_init(),
        config::LogFormat::Text => builder.try_init(),
    };
}

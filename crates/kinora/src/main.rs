//! The one kinora binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kinora_server::Config;

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
            Command::CheckConfig => Ok(()),
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

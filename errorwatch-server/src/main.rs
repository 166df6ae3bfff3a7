//! `errorwatch-server`: serve, create projects, run migrations.
//!
//! ```text
//! API_KEY_HASH_SECRET=... errorwatch-server serve
//! API_KEY_HASH_SECRET=... errorwatch-server project create checkout [--json]
//! errorwatch-server migrate
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use errorwatch_server::{Config, Server, Store};

#[derive(Parser)]
#[command(
    name = "errorwatch-server",
    version,
    about = "An ErrorWatch-compatible ingestion server"
)]
struct Cli {
    /// Without API_KEY_HASH_SECRET, use a throwaway secret (keys stop working on restart).
    #[arg(long, global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the ingestion, query, health and metrics routes.
    Serve,
    /// Apply the store's migrations.
    Migrate,
    /// Manage projects.
    Project {
        #[command(subcommand)]
        action: ProjectAction,
    },
}

#[derive(Subcommand)]
enum ProjectAction {
    /// Create a project and print its new API key (shown this once).
    Create {
        /// The project's name.
        name: String,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("errorwatch-server: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let env = |name: &str| std::env::var(name).ok();
    match cli.command {
        Command::Migrate => {
            let url = env("DATABASE_URL").unwrap_or_else(|| "sqlite://errorwatch.db".into());
            // Opening the store applies the migrations.
            Store::open(&url).await.map_err(|e| e.to_string())?;
            println!("migrations applied to {url}");
            Ok(())
        }
        Command::Project {
            action: ProjectAction::Create { name, json },
        } => {
            let config = Config::from_lookup(env, false).map_err(|e| e.to_string())?;
            let store = Store::open(&config.database_url)
                .await
                .map_err(|e| e.to_string())?;
            let (id, key) = errorwatch_server::create_project(
                &store,
                config.api_key_hash_secret.as_bytes(),
                &name,
            )
            .await
            .map_err(|e| e.to_string())?;
            store.close().await;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "name": name, "api_key": key })
                );
            } else {
                println!("created project {id} ({name}); its API key, shown only now:");
                println!("{key}");
            }
            Ok(())
        }
        Command::Serve => {
            let dev = cli.dev && env("API_KEY_HASH_SECRET").is_none();
            let config = Config::from_lookup(env, cli.dev).map_err(|e| e.to_string())?;
            if dev {
                eprintln!("errorwatch-server: --dev: using a throwaway API_KEY_HASH_SECRET; keys will not survive a restart");
            }
            let server = Server::start(config).await.map_err(|e| e.to_string())?;
            eprintln!("errorwatch-server: listening on {}", server.url());
            shutdown_signal().await;
            eprintln!("errorwatch-server: shutting down; storing what was accepted");
            server.shutdown().await;
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

//! `errorwatch-server`: serve, create projects, run migrations.
//!
//! ```text
//! errorwatch-server migrate                     # creates the database, or brings it up to date
//! API_KEY_HASH_SECRET=... errorwatch-server project create checkout [--json]
//! API_KEY_HASH_SECRET=... errorwatch-server serve
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use errorwatch_server::{Config, OpenOptions, Server, Store};

#[derive(Parser)]
#[command(
    name = "errorwatch-server",
    version,
    about = "An ErrorWatch-compatible ingestion server"
)]
struct Cli {
    /// Without API_KEY_HASH_SECRET, use a throwaway secret (keys stop working on restart);
    /// create the database if missing.
    #[arg(long, global = true)]
    dev: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the ingestion, query, health and metrics routes.
    Serve {
        /// Create the database file if it does not exist (by default a missing file stops
        /// startup: a deployment's database is never silently replaced by an empty one).
        #[arg(long)]
        create_database: bool,
    },
    /// Create the database, or apply the migrations it lacks.
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
            let options = OpenOptions {
                create_if_missing: true,
                ..OpenOptions::default()
            };
            // Opening the store applies the migrations.
            let store = Store::open(&url, &options)
                .await
                .map_err(|e| e.to_string())?;
            store.close().await;
            println!("migrations applied to {url}");
            Ok(())
        }
        Command::Project {
            action: ProjectAction::Create { name, json },
        } => {
            let config = Config::from_lookup(env, cli.dev).map_err(|e| e.to_string())?;
            let options = OpenOptions {
                create_if_missing: config.create_database,
                max_bytes: config.max_database_bytes,
            };
            let store = Store::open(&config.database_url, &options)
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
        Command::Serve { create_database } => {
            let dev = cli.dev && env("API_KEY_HASH_SECRET").is_none();
            let mut config = Config::from_lookup(env, cli.dev).map_err(|e| e.to_string())?;
            config.create_database |= create_database;
            config.max_connections = within_open_files(config.max_connections);
            if dev {
                eprintln!("errorwatch-server: --dev: using a throwaway API_KEY_HASH_SECRET; keys will not survive a restart");
            }
            ignore_file_size_signal();
            let server = Server::start(config).await.map_err(|e| e.to_string())?;
            eprintln!("errorwatch-server: listening on {}", server.url());
            shutdown_signal().await;
            eprintln!("errorwatch-server: shutting down; storing what was accepted");
            server.shutdown().await;
            Ok(())
        }
    }
}

/// Raises the open-files limit as far as the system allows, and keeps `max_connections`
/// below it (with room for the store's files), so a crowd of connections meets the limit the
/// server chose, not `accept` failing for want of descriptors.
fn within_open_files(max_connections: usize) -> usize {
    const RESERVED: u64 = 64;
    let allowed = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(_) => return max_connections,
    };
    let fit = allowed.saturating_sub(RESERVED).max(1);
    if (max_connections as u64) > fit {
        eprintln!(
            "errorwatch-server: MAX_CONNECTIONS lowered from {max_connections} to {fit}: the process may open {allowed} files"
        );
        return fit as usize;
    }
    max_connections
}

/// Past a file-size limit (`ulimit -f`), a write raises SIGXFSZ, which kills the process by
/// default, losing what was acknowledged and queued alike. Handled, the write fails with
/// EFBIG instead, like a full disk, and the server answers 503 until it can write again.
fn ignore_file_size_signal() {
    #[cfg(target_os = "linux")]
    {
        use tokio::signal::unix::{signal, SignalKind};
        const SIGXFSZ: i32 = 25;
        if let Ok(mut signals) = signal(SignalKind::from_raw(SIGXFSZ)) {
            tokio::spawn(async move { while signals.recv().await.is_some() {} });
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

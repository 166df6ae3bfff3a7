//! `errorwatch-server`: serve, create projects, run migrations.
//!
//! ```text
//! errorwatch-server migrate                     # creates the database, or brings it up to date
//! API_KEY_HASH_SECRET=... errorwatch-server project create checkout [--json]
//! errorwatch-server project list [--json]
//! errorwatch-server key list [--project ID] [--json]
//! API_KEY_HASH_SECRET=... errorwatch-server key create --project ID [--json]
//! errorwatch-server key revoke KEY_ID
//! errorwatch-server issues [--project ID] [--status unresolved|resolved|ignored|all] [--limit N]
//! API_KEY_HASH_SECRET=... errorwatch-server serve
//! ```

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use errorwatch_server::store::GroupQuery;
use errorwatch_server::{Config, OpenOptions, Server, Store};

/// mimalloc: less server CPU per stored event than the system's allocator under the ingest
/// benchmark (`cargo bench -p errorwatch-server --bench ingest`; figures in the README). Its
/// `no_thp` feature keeps transparent huge pages out, which more than doubled the peak RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Manage API keys: list them, add one, revoke one (to rotate: create, deploy, revoke).
    Key {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// List issues, most recently seen first, as a table (the pages' list, for terminals).
    Issues {
        /// Only this project's.
        #[arg(long)]
        project: Option<i64>,
        /// Only issues with this status.
        #[arg(long, value_enum, default_value_t = IssueStatus::Unresolved)]
        status: IssueStatus,
        /// At most this many (1 to 100).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=100))]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum IssueStatus {
    Unresolved,
    Resolved,
    Ignored,
    All,
}

#[derive(Subcommand)]
enum KeyAction {
    /// List keys (their first characters only), revoked ones included.
    List {
        /// Only this project's.
        #[arg(long)]
        project: Option<i64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a key to a project and print it (shown this once).
    Create {
        /// The project.
        #[arg(long)]
        project: i64,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key: running servers refuse it within 30 s.
    Revoke {
        /// The key's id, as `key list` shows it.
        id: i64,
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
    /// List projects.
    List {
        /// Print JSON instead of text.
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
            println!(
                "migrations applied to {}",
                errorwatch_server::store::redact_url(&url)
            );
            Ok(())
        }
        Command::Project {
            action: ProjectAction::Create { name, json },
        } => {
            let (config, store) = open(cli.dev).await?;
            let created = errorwatch_server::create_project(
                &store,
                config.api_key_hash_secret.as_bytes(),
                &name,
            )
            .await;
            store.close().await;
            let (id, key) = created.map_err(|e| e.to_string())?;
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
        Command::Project {
            action: ProjectAction::List { json },
        } => {
            let store = open_existing().await?;
            let projects = store.projects().await;
            store.close().await;
            let projects = projects.map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::json!({ "projects": projects }));
            } else {
                println!(
                    "{:>4}  {:<24} {:>4}  {:<9} {:>6}  {:>9}  created",
                    "id", "name", "keys", "ingestion", "sample", "quota"
                );
                for p in projects {
                    println!(
                        "{:>4}  {:<24} {:>4}  {:<9} {:>6}  {:>9}  {}",
                        p.id,
                        p.name,
                        p.live_keys,
                        if p.ingestion_enabled { "on" } else { "off" },
                        p.sample_rate,
                        p.daily_quota
                            .map_or_else(|| "none".to_owned(), |q| q.to_string()),
                        p.created_at
                    );
                }
            }
            Ok(())
        }
        Command::Key {
            action: KeyAction::List { project, json },
        } => {
            let store = open_existing().await?;
            let keys = store.api_keys(project).await;
            store.close().await;
            let keys = keys.map_err(|e| e.to_string())?;
            if json {
                println!("{}", serde_json::json!({ "keys": keys }));
            } else {
                println!(
                    "{:>4}  {:>7}  {:<14} {:<26} revoked",
                    "id", "project", "starts with", "created"
                );
                for k in keys {
                    println!(
                        "{:>4}  {:>7}  {:<14} {:<26} {}",
                        k.id,
                        k.project_id,
                        k.prefix,
                        k.created_at,
                        k.revoked_at.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        Command::Key {
            action: KeyAction::Create { project, json },
        } => {
            let (config, store) = open(false).await?;
            let added = errorwatch_server::add_api_key(
                &store,
                config.api_key_hash_secret.as_bytes(),
                project,
            )
            .await;
            store.close().await;
            let (id, key) = added.map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "id": id, "project": project, "api_key": key })
                );
            } else {
                println!("added key {id} to project {project}; the key, shown only now:");
                println!("{key}");
            }
            Ok(())
        }
        Command::Key {
            action: KeyAction::Revoke { id },
        } => {
            let store = open_existing().await?;
            let revoked = store
                .revoke_api_key(id, chrono::Utc::now().timestamp_millis())
                .await;
            store.close().await;
            if revoked.map_err(|e| e.to_string())? {
                println!("revoked key {id}; running servers refuse it within 30 s");
            } else {
                println!("key {id} was revoked already");
            }
            Ok(())
        }
        Command::Issues {
            project,
            status,
            limit,
            json,
        } => {
            let store = open_existing().await?;
            let status = match status {
                IssueStatus::Unresolved => Some("unresolved"),
                IssueStatus::Resolved => Some("resolved"),
                IssueStatus::Ignored => Some("ignored"),
                IssueStatus::All => None,
            };
            let query = GroupQuery {
                project,
                status: status.map(str::to_owned),
                page: 1,
                limit,
                ..GroupQuery::default()
            };
            let listed = store.groups(&query).await;
            store.close().await;
            let (groups, total) = listed.map_err(|e| e.to_string())?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({ "issues": groups, "total": total })
                );
            } else {
                print!("{}", errorwatch_server::issue_table(&groups));
                if total > groups.len() as i64 {
                    println!("({} of {total}; --limit shows more)", groups.len());
                }
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
            let pages = config.admin_api_key.is_some();
            let server = Server::start(config).await.map_err(|e| e.to_string())?;
            eprintln!("errorwatch-server: listening on {}", server.url());
            if pages {
                eprintln!(
                    "errorwatch-server: issues at {}/issues (sign in with ADMIN_API_KEY)",
                    server.url()
                );
            } else {
                eprintln!("errorwatch-server: the pages are off until ADMIN_API_KEY is set");
            }
            shutdown_signal().await;
            eprintln!("errorwatch-server: shutting down; storing what was accepted");
            server.shutdown().await;
            Ok(())
        }
    }
}

/// The settings and the store, for commands that need the key secret.
async fn open(dev: bool) -> Result<(Config, Store), String> {
    let env = |name: &str| std::env::var(name).ok();
    let config = Config::from_lookup(env, dev).map_err(|e| e.to_string())?;
    let options = OpenOptions {
        create_if_missing: config.create_database,
        max_bytes: config.max_database_bytes,
        max_connections: Some(config.database_max_connections),
    };
    let store = Store::open(&config.database_url, &options)
        .await
        .map_err(|e| e.to_string())?;
    Ok((config, store))
}

/// The store of `DATABASE_URL`, for commands that only read or revoke (no secret needed).
async fn open_existing() -> Result<Store, String> {
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| "sqlite://errorwatch.db".into());
    Store::open(&url, &OpenOptions::default())
        .await
        .map_err(|e| e.to_string())
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

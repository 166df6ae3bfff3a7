//! The whole flow in one command: `cargo run -p errorwatch-examples --example demo`.
//!
//! Starts `errorwatch-server` in-process on a SQLite file, reports through the SDK (a message,
//! an error with its source chain and a secret in its text, a panic on a worker thread),
//! prints the stored issues as a table, and shows that the secret never reached the store.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use errorwatch_sdk::{capture_error, capture_message, configure_scope, Level, Options, User};
use errorwatch_server::{Config, Server};

/// What the demo's "service" fails with.
#[derive(Debug)]
struct PaymentError {
    source: std::io::Error,
}

impl fmt::Display for PaymentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A careless message: it carries the gateway credentials.
        f.write_str("payment gateway refused https://shop:hunter2-SECRET@pay.example.com/charge?api_key=sk_demo_SECRET")
    }
}

impl Error for PaymentError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.source)
    }
}

#[inline(never)]
fn charge_card(order: u32) -> Result<(), PaymentError> {
    Err(PaymentError {
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            format!("order {order}: connection reset"),
        ),
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let dir = std::env::temp_dir().join(format!("errorwatch-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let database = dir.join("errorwatch.db");
    let mut config = Config::for_tests("demo-secret-0123456789");
    config.database_url = format!("sqlite://{}", database.display());
    config.admin_api_key = Some("demo-admin".into());
    let server = Server::start(config).await?;
    let (_, api_key) = server.create_project("demo").await?;
    println!(
        "errorwatch-server listening on {} (store: {})",
        server.url(),
        database.display()
    );

    let guard = errorwatch_sdk::init(
        Options::new(server.url(), api_key)
            .environment("demo")
            .release(errorwatch_sdk::release_name!()),
    );
    configure_scope(|scope| {
        scope.set_tag("service", "shop");
        scope.set_user(Some(User {
            id: Some("customer-7".into()),
            ..User::default()
        }));
    });

    capture_message("checkout latency above 2 s", Level::Warning);
    // Three identical failures within 10 s: the server stores the first and acknowledges the
    // others as duplicates, as the production server does.
    for order in [1001, 1002, 1003] {
        if let Err(error) = charge_card(order) {
            capture_error(&error);
        }
    }
    let worker = std::thread::Builder::new()
        .name("stock-sync".into())
        .spawn(|| {
            let stock: Vec<u32> = Vec::new();
            stock[3] // index out of bounds: a panic on a worker thread
        })?;
    let _ = worker.join();

    let delivered =
        tokio::task::spawn_blocking(|| errorwatch_sdk::flush(Duration::from_secs(5))).await?;
    let stats = guard.stats();
    println!(
        "SDK: captured {}, sent {}, delivered everything: {delivered}\n",
        stats.captured, stats.sent
    );

    let (groups, _) = server
        .store()
        .groups(&errorwatch_server::store::GroupQuery {
            page: 1,
            limit: 100,
            ..Default::default()
        })
        .await?;
    println!(
        "{:<58} {:<8} {:>5}  {:<28} {:<24} {:<24}",
        "ISSUE", "LEVEL", "COUNT", "FILE:LINE", "FIRST SEEN", "LAST SEEN"
    );
    for group in &groups {
        let place = match (&group.file, group.line) {
            (Some(file), Some(line)) => format!("{}:{line}", short(file, 22)),
            (Some(file), None) => short(file, 28),
            _ => "-".into(),
        };
        println!(
            "{:<58} {:<8} {:>5}  {:<28} {:<24} {:<24}",
            short(&group.title, 58),
            group.level,
            group.count,
            place,
            group.first_seen,
            group.last_seen
        );
    }

    drop(guard);
    server.shutdown().await;
    // Read the store's files byte by byte: the secret must not be anywhere in them.
    let mut stored = Vec::new();
    for name in ["errorwatch.db", "errorwatch.db-wal"] {
        if let Ok(bytes) = std::fs::read(dir.join(name)) {
            stored.extend(bytes);
        }
    }
    let leaked = ["hunter2-SECRET", "sk_demo_SECRET"]
        .iter()
        .any(|secret| stored.windows(secret.len()).any(|w| w == secret.as_bytes()));
    println!(
        "\nsecrets in the store ({} bytes scanned): {}",
        stored.len(),
        if leaked {
            "FOUND (this is a bug)"
        } else {
            "none: scrubbed before they left the process"
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    if leaked {
        return Err("a secret reached the store".into());
    }
    Ok(())
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let start = text.chars().count() - (max - 1);
        format!("…{}", text.chars().skip(start).collect::<String>())
    }
}

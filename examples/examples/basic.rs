//! Reports a message, an error with its source chain, and a panic to the server given by
//! `ERRORWATCH_API_URL` and `ERRORWATCH_API_KEY`.
//!
//! ```text
//! ERRORWATCH_API_URL=http://127.0.0.1:3333 ERRORWATCH_API_KEY=ew_test_... \
//!     cargo run -p errorwatch-examples --example basic
//! ```

use std::time::Duration;

use errorwatch_sdk::{capture_error, capture_message, configure_scope, Level, Options, User};

fn main() {
    let options = match Options::from_env() {
        Ok(options) => options.release(errorwatch_sdk::release_name!()).debug(true),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    };
    if !options.is_configured() {
        eprintln!("set ERRORWATCH_API_URL and ERRORWATCH_API_KEY to send events somewhere");
    }
    let guard = errorwatch_sdk::init(options);

    configure_scope(|scope| {
        scope.set_tag("example", "basic");
        scope.set_user(Some(User {
            id: Some("user-42".into()),
            ..User::default()
        }));
    });
    capture_message("the basic example started", Level::Info);

    let config = std::fs::read_to_string("/nonexistent/errorwatch-example.toml");
    if let Err(error) = config {
        capture_error(&error);
    }

    let worker = std::thread::spawn(|| {
        let port: u16 = "http".parse().expect("a port number");
        port
    });
    let _ = worker.join();

    let delivered = errorwatch_sdk::flush(Duration::from_secs(5));
    println!("delivered everything: {delivered}; {:?}", guard.stats());
}

//! An actix-web service that reports to the server given by `ERRORWATCH_API_URL` and
//! `ERRORWATCH_API_KEY`.
//!
//! ```text
//! ERRORWATCH_API_URL=http://127.0.0.1:3333 ERRORWATCH_API_KEY=ew_live_... \
//!     cargo run -p errorwatch-examples --example actix_service
//! curl localhost:8081/panic    # 500, reported as fatal
//! curl localhost:8081/error    # 500, reported with the error's type and message
//! ```

use actix_web::{web, App, HttpServer, ResponseError};

#[derive(Debug)]
struct InventoryError(&'static str);

impl std::fmt::Display for InventoryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "inventory unavailable: {}", self.0)
    }
}

impl ResponseError for InventoryError {}

#[actix_web::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = errorwatch_sdk::Options::from_env()?.release(errorwatch_sdk::release_name!());
    if !options.is_configured() {
        eprintln!(
            "ERRORWATCH_API_URL and ERRORWATCH_API_KEY are not set: nothing will be reported"
        );
    }
    let _guard = errorwatch_sdk::init(options);
    let addr = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8081".into());
    println!("actix service on http://{addr}");
    HttpServer::new(|| {
        App::new()
            .wrap(errorwatch_actix::ErrorWatch::new())
            .route("/", web::get().to(|| async { "try /panic, /error" }))
            .route(
                "/panic",
                web::get().to(|| async { Vec::<u8>::new()[1].to_string() }),
            )
            .route(
                "/error",
                web::get().to(|| async { Err::<String, _>(InventoryError("warehouse 3 offline")) }),
            )
    })
    .bind(addr)?
    .run()
    .await?;
    Ok(())
}

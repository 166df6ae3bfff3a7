//! The page tests of `pages.rs`, run on PostgreSQL (a real server, started by the tests).

#[path = "pages.rs"]
mod on_postgres;

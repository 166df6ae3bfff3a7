//! The hostile clients of `hostile.rs`, against a server on PostgreSQL (a real server, started
//! by the tests).

#[path = "hostile.rs"]
mod on_postgres;

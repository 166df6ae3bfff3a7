//! The conformance tests of `conformance.rs`, run on PostgreSQL (a real server, started by the tests).

#[path = "conformance.rs"]
mod on_postgres;

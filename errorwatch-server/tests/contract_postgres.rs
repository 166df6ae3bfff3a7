//! The contract tests of `contract.rs`, run on PostgreSQL (a real server, started by the tests).

#[path = "contract.rs"]
mod on_postgres;

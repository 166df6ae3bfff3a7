//! The grouping tests of `grouping.rs`, run on PostgreSQL (a real server, started by the tests).

#[path = "grouping.rs"]
mod on_postgres;

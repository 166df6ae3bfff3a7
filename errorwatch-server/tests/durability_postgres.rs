//! The durability tests of `durability.rs`, run on PostgreSQL (a real server, started by the tests).

#[path = "durability.rs"]
mod on_postgres;

//! `anyhow::Error`s, as services build them: typed by their root cause, valued by their
//! context, with their chain, their culprit line and anyhow's own backtrace.
#![cfg(feature = "anyhow")]

use anyhow::Context;
use errorwatch_sdk::testing;

fn read_order_count() -> anyhow::Result<u32> {
    let count = "12a".parse::<u32>().context("parsing the order count")?;
    Ok(count)
}

fn load_orders() -> anyhow::Result<u32> {
    read_order_count().context("loading today's orders")
}

#[test]
fn an_anyhow_error_keeps_its_root_type_its_chain_and_its_line() {
    // anyhow captures its backtrace when asked to at creation.
    std::env::set_var("RUST_LIB_BACKTRACE", "1");
    let error = load_orders().expect_err("12a is no number");
    let line = line!() + 2;
    let events = testing::capture_events(|| {
        errorwatch_sdk::capture_anyhow(&error);
    });
    let event = &events[0];
    let exception = event.exception.as_ref().expect("an exception");
    assert_eq!(
        exception.ty, "ParseIntError",
        "the root cause's type, not `Error`"
    );
    assert_eq!(exception.value, "loading today's orders");
    let sources = event.extra["error.sources"].as_array().expect("the chain");
    let values: Vec<&str> = sources.iter().filter_map(|s| s["value"].as_str()).collect();
    assert_eq!(
        values,
        ["parsing the order count", "invalid digit found in string"]
    );
    assert_eq!(sources[1]["type"], "ParseIntError");
    assert!(event
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("anyhow_errors.rs")));
    assert_eq!(event.line, Some(line), "the culprit is the capturing line");
    let backtrace = event.extra["anyhow.backtrace"]
        .as_str()
        .expect("anyhow's backtrace");
    assert!(backtrace.contains("read_order_count"), "{backtrace}");
}

#[test]
fn a_message_made_with_anyhow_is_kept_as_it_is() {
    let error = anyhow::anyhow!("the cache is cold");
    let event = errorwatch_sdk::event_from_anyhow(&error);
    let exception = event.exception.expect("an exception");
    assert_eq!(exception.value, "the cache is cold");
    assert_eq!(exception.ty, "Error");
}

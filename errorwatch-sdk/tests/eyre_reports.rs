//! `eyre::Report`s: typed by their root cause, valued by their context, with their chain and
//! their culprit line.
#![cfg(feature = "eyre")]

use errorwatch_sdk::testing;
use eyre::WrapErr;

fn read_order_count() -> eyre::Result<u32> {
    let count = "12a".parse::<u32>().wrap_err("parsing the order count")?;
    Ok(count)
}

#[test]
fn an_eyre_report_keeps_its_root_type_its_chain_and_its_line() {
    let report = read_order_count()
        .wrap_err("loading today's orders")
        .expect_err("12a is no number");
    let line = line!() + 2;
    let events = testing::capture_events(|| {
        errorwatch_sdk::capture_eyre(&report);
    });
    let event = &events[0];
    let exception = event.exception.as_ref().expect("an exception");
    assert_eq!(exception.ty, "ParseIntError", "the root cause's type");
    assert_eq!(exception.value, "loading today's orders");
    let sources = event.extra["error.sources"].as_array().expect("the chain");
    let values: Vec<&str> = sources.iter().filter_map(|s| s["value"].as_str()).collect();
    assert_eq!(
        values,
        ["parsing the order count", "invalid digit found in string"]
    );
    assert!(event
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("eyre_reports.rs")));
    assert_eq!(event.line, Some(line), "the culprit is the capturing line");
}

//! The stack starts at the code that captured, however that code is wrapped in scopes.

use errorwatch_sdk::{capture_error, testing, with_scope, Client, Options, ScopeFutureExt};

#[inline(never)]
fn the_function_that_failed() {
    let error = "x".parse::<u8>().unwrap_err();
    capture_error(&error);
}

fn top_function(events: &[errorwatch_sdk::Event]) -> String {
    events[0].frames[0].function.clone().unwrap_or_default()
}

#[test]
fn the_top_frame_is_the_caller_inside_the_test_helper_and_nested_scopes() {
    let events = testing::capture_events(the_function_that_failed);
    assert!(
        top_function(&events).ends_with("the_function_that_failed"),
        "{}",
        top_function(&events)
    );

    let events = testing::capture_events(|| with_scope(the_function_that_failed));
    assert!(
        top_function(&events).ends_with("the_function_that_failed"),
        "{}",
        top_function(&events)
    );

    let events = testing::capture_events(|| {
        let client = Client::new(Options::default()).expect("client");
        client.run(|| with_scope(the_function_that_failed));
    });
    // The unconfigured client drops it; the one from the helper is bound outside `run`.
    assert!(events.is_empty() || top_function(&events).ends_with("the_function_that_failed"));

    let file = testing::capture_events(the_function_that_failed)[0]
        .file
        .clone()
        .unwrap_or_default();
    assert!(file.ends_with("stack_traces.rs"), "{file}");
}

#[tokio::test]
async fn the_top_frame_is_the_caller_inside_a_scoped_future() {
    let events = testing::capture_events_async(async {
        async { the_function_that_failed() }.with_new_scope().await;
    })
    .await;
    assert!(
        top_function(&events).ends_with("the_function_that_failed"),
        "{}",
        top_function(&events)
    );
}

//! Context is per task, not per thread: hundreds of tasks with their own scopes, interleaved
//! on the same runtime threads, never see each other's tags, user or breadcrumbs.

mod support;

use std::time::Duration;

use errorwatch_sdk::{
    add_breadcrumb, capture_error, capture_message, configure_scope, testing, with_scope,
    Breadcrumb, Level, ScopeFutureExt, User,
};
use support::*;

const TASKS: usize = 400;

async fn task(i: usize) {
    configure_scope(|scope| {
        scope.set_tag("task", i.to_string());
        scope.set_user(Some(User {
            id: Some(format!("user-{i}")),
            ..User::default()
        }));
    });
    for step in 0..3 {
        add_breadcrumb(Breadcrumb::new("step", format!("task-{i}-step-{step}")));
        // Yield so that other tasks run on this thread between our scope changes.
        tokio::task::yield_now().await;
    }
    capture_message(&format!("message from {i}"), Level::Error);
    tokio::task::yield_now().await;
    let error = format!("{i}x").parse::<u32>().unwrap_err();
    capture_error(&error);
}

fn check(event: &serde_json::Value) {
    let task = event["tags"]["task"]
        .as_str()
        .expect("every event has its task tag");
    let user = event["user"]["id"]
        .as_str()
        .expect("every event has its user");
    assert_eq!(
        user,
        format!("user-{task}"),
        "user of another task: {event}"
    );
    assert_eq!(event["user_id"], format!("user-{task}"));
    if let Some(message) = event["message"].as_str() {
        assert_eq!(message, format!("message from {task}"));
    }
    let crumbs = event["breadcrumbs"].as_array().expect("breadcrumbs");
    assert_eq!(crumbs.len(), 3, "its own three breadcrumbs: {event}");
    for crumb in crumbs {
        let text = crumb["message"].as_str().expect("crumb message");
        assert!(
            text.starts_with(&format!("task-{task}-step-")),
            "{text} in task {task}'s event"
        );
    }
}

#[test]
fn interleaved_tasks_over_real_http_keep_their_own_context() {
    let server = Listener::healthy();
    let client = client(options(&server.url).attach_stacktrace(false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // Each task is bound to the test client (and a fork of the root scope), so this test
        // does not touch the process-wide client.
        let handles: Vec<_> = (0..TASKS)
            .map(|i| tokio::spawn(client.bind(task(i))))
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
    });
    assert!(client.flush(Duration::from_secs(20)));
    assert_eq!(
        client.stats().sent as usize,
        2 * TASKS,
        "{:?}",
        client.stats()
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2 * TASKS);
    let mut tasks_seen = std::collections::BTreeSet::new();
    for request in &requests {
        let event = request.json();
        check(&event);
        tasks_seen.insert(
            event["tags"]["task"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert_eq!(tasks_seen.len(), TASKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn spawned_tasks_carry_a_fork_of_the_context_along() {
    let events = testing::capture_events_async(async {
        configure_scope(|scope| scope.set_tag("request", "r-1"));
        let child = tokio::spawn(
            async {
                configure_scope(|scope| scope.set_tag("child", "yes"));
                capture_message("from the child", Level::Info);
            }
            .with_new_scope(),
        );
        child.await.expect("child");
        capture_message("from the parent", Level::Info);
    })
    .await;
    assert_eq!(events.len(), 2);
    let child = &events[0];
    let parent = &events[1];
    assert_eq!(
        (child.tag("request"), child.tag("child")),
        (Some("r-1"), Some("yes"))
    );
    assert_eq!(
        (parent.tag("request"), parent.tag("child")),
        (Some("r-1"), None),
        "the fork's changes stay in the fork"
    );
}

#[test]
fn with_scope_changes_do_not_outlive_the_closure() {
    let events = testing::capture_events(|| {
        with_scope(|| {
            configure_scope(|scope| scope.set_tag("inner", "1"));
            capture_message("inside", Level::Info);
        });
        capture_message("outside", Level::Info);
    });
    assert_eq!(events[0].tag("inner"), Some("1"));
    assert_eq!(events[1].tag("inner"), None);
}

#[test]
fn a_panic_inside_a_scope_restores_the_outer_scope() {
    let events = testing::capture_events(|| {
        configure_scope(|scope| scope.set_tag("outer", "kept"));
        let _ = std::panic::catch_unwind(|| {
            with_scope(|| {
                configure_scope(|scope| scope.set_tag("inner", "gone"));
                panic!("unwinds through with_scope");
            })
        });
        capture_message("after", Level::Info);
    });
    let last = events.last().expect("an event");
    assert_eq!((last.tag("outer"), last.tag("inner")), (Some("kept"), None));
}

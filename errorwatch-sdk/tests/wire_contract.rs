//! Whatever a service captures, the body the SDK sends is one the server accepts.
//!
//! Arbitrary messages, exception names and values, tags, users, requests, breadcrumbs, frames
//! and deeply nested extra data go through the SDK's own pipeline (scope, scrubbing, fitting to
//! the limits); each resulting body is read back with the production server's rules (the
//! shared validator of `errorwatch-protocol`) and must pass, with nothing the production store
//! cannot keep.

use std::collections::BTreeMap;

use errorwatch_protocol::{json, validate};
use errorwatch_sdk::protocol::{Frame, Request};
use errorwatch_sdk::{
    capture_event, configure_scope, testing, Breadcrumb, Event, Exception, Level, User, Value,
};
use proptest::prelude::*;

/// Text of every kind: arbitrary characters (NUL and astral ones included), and long runs that
/// cross every limit, counted in UTF-16 units.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => (prop::sample::select(vec!['a', 'é', '😀', '中', '\0', ' ']), 0usize..12_000)
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
        1 => (any::<char>(), 0usize..600).prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

/// Text for fields with small limits: up to 1,100 characters, past the limits of names
/// (50..1,000) without the cost of the large ones.
fn short_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        1 => (prop::sample::select(vec!['a', 'é', '😀', '\0']), 0usize..1_100)
            .prop_map(|(c, n)| std::iter::repeat_n(c, n).collect()),
    ]
}

fn level() -> impl Strategy<Value = Level> {
    prop::sample::select(Level::ALL.to_vec())
}

fn deep_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        short_text().prop_map(Value::from),
    ];
    leaf.prop_recursive(14, 48, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(short_text(), inner, 0..6)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn frame() -> impl Strategy<Value = Frame> {
    (
        short_text(),
        prop::option::of(short_text()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(filename, function, lineno, colno, in_app)| Frame {
            filename,
            function,
            lineno,
            colno,
            in_app,
        })
}

fn user() -> impl Strategy<Value = User> {
    (
        prop::option::of(short_text()),
        prop::option::of(short_text()),
        prop::option::of(short_text()),
        prop::option::of(short_text()),
    )
        .prop_map(|(id, email, ip_address, username)| User {
            id,
            email,
            ip_address,
            username,
        })
}

fn request() -> impl Strategy<Value = Request> {
    (
        prop::option::of(prop_oneof![
            short_text(),
            Just("https://shop.example/cart?token=abc".to_owned())
        ]),
        prop::option::of(short_text()),
        prop::collection::btree_map(short_text(), short_text(), 0..5),
        prop::option::of(text()),
        prop::option::of(deep_value()),
    )
        .prop_map(|(url, method, headers, query_string, data)| Request {
            url,
            method,
            headers,
            query_string,
            data,
        })
}

fn breadcrumb() -> impl Strategy<Value = Breadcrumb> {
    (
        short_text(),
        short_text(),
        prop::option::of(level()),
        prop::option::of(short_text()),
        prop::collection::btree_map(short_text(), deep_value(), 0..3),
    )
        .prop_map(|(category, message, level, ty, data)| {
            let mut crumb = Breadcrumb::new(category, message);
            crumb.level = level;
            crumb.ty = ty;
            crumb.data = data;
            crumb
        })
}

thread_local! {
    /// One client for every case: building one per case would dominate the run.
    static RECORDER: testing::Recorder = testing::Recorder::new(errorwatch_sdk::Options::default());
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(10_000)
}

prop_compose! {
    fn event()(
        message in prop::option::of(text()),
        exception in prop::option::of((text(), text())),
        level in level(),
        // Mostly a few; sometimes past the limit of 200.
        frames in prop_oneof![9 => prop::collection::vec(frame(), 0..8), 1 => prop::collection::vec(frame(), 195..230)],
        file in prop::option::of(short_text()),
        url in prop::option::of(prop_oneof![short_text(), Just("http://127.0.0.1:3000/x".to_owned())]),
        status_code in prop::option::of(any::<u16>()),
        tags in prop::collection::btree_map(short_text(), short_text(), 0..8),
        extra in prop::collection::btree_map(short_text(), deep_value(), 0..4),
        user in prop::option::of(user()),
        request in prop::option::of(request()),
        // Mostly a few; sometimes past the limit of 100.
        breadcrumbs in prop_oneof![9 => prop::collection::vec(breadcrumb(), 0..6), 1 => prop::collection::vec(breadcrumb(), 95..120)],
        names in (prop::option::of(short_text()), prop::option::of(short_text()), prop::option::of(short_text())),
        ids in (prop::option::of(short_text()), prop::option::of(short_text()), prop::option::of(short_text())),
    ) -> Event {
        let (env, release, server_name) = names;
        let (fingerprint, trace_id, span_id) = ids;
        Event {
            message,
            exception: exception.map(|(ty, value)| Exception::new(ty, value)),
            level,
            frames,
            file,
            url,
            status_code,
            tags,
            extra: extra.into_iter().collect::<BTreeMap<_, _>>(),
            user,
            request,
            breadcrumbs,
            env,
            release,
            server_name,
            fingerprint,
            trace_id,
            span_id,
            ..Event::default()
        }
    }
}

/// One case: the event, captured with a tag, a user and a `fatal` breadcrumb in its scope,
/// must become a body the server accepts.
fn check(event: Event, tag: (String, String), scope_user: User) -> Result<(), TestCaseError> {
    let events = RECORDER.with(|recorder| {
        recorder.capture(|| {
            configure_scope(|scope| {
                scope.set_tag(tag.0, tag.1);
                scope.set_user(Some(scope_user));
                scope.add_breadcrumb(
                    Breadcrumb::new("scope", "from the scope").with_level(Level::Fatal),
                );
            });
            capture_event(event);
        })
    });
    prop_assert_eq!(events.len(), 1);
    let mut sent = events.into_iter().next().unwrap_or_default();
    let body = sent.to_body();
    let text = String::from_utf8_lossy(&body);
    prop_assert!(!text.contains("\\u0000"), "a NUL reached the wire");
    let value = json::parse(&body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    if let Err(details) = validate::event(&value, 0) {
        return Err(TestCaseError::fail(format!(
            "the server would answer 400: {details:?}"
        )));
    }
    Ok(())
}

/// The cases are split between this many tests, which the test harness runs side by side:
/// one test alone took 3 of CI's 30 minutes on one core while the other waited.
const SHARDS: u32 = 4;

#[test]
fn every_body_the_sdk_sends_is_accepted_1() {
    every_body_the_sdk_sends_is_accepted();
}

#[test]
fn every_body_the_sdk_sends_is_accepted_2() {
    every_body_the_sdk_sends_is_accepted();
}

#[test]
fn every_body_the_sdk_sends_is_accepted_3() {
    every_body_the_sdk_sends_is_accepted();
}

#[test]
fn every_body_the_sdk_sends_is_accepted_4() {
    every_body_the_sdk_sends_is_accepted();
}

/// One shard of the cases, from a seed of its own.
fn every_body_the_sdk_sends_is_accepted() {
    // Generating and shrinking nested values recurses deeply in a debug build: run on a
    // thread with room for it.
    let run = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(|| {
            let config = ProptestConfig {
                cases: cases().div_ceil(SHARDS),
                // A failure is shrunk for a minute at most.
                max_shrink_time: 60_000,
                ..ProptestConfig::default()
            };
            let mut runner = proptest::test_runner::TestRunner::new(config);
            runner
                .run(
                    &(event(), (short_text(), text()), user()),
                    |(event, tag, user)| check(event, tag, user),
                )
                .map_err(|failure| failure.to_string())
        })
        .expect("a thread for the property test");
    match run.join() {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => panic!("{failure}"),
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

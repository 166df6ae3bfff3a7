//! The layer's mapping, fields, errors, spans and scrubbing, checked with the SDK's in-memory
//! capture helper (each test installs its subscriber on its own thread only).

use std::error::Error;
use std::fmt;

use errorwatch_sdk::{testing, Event, Level};
use errorwatch_tracing::{default_event_filter, EventFilter};
use tracing_subscriber::prelude::*;

/// Runs `f` with `layer` installed (beside `fmt`, as services do) and returns the events.
fn events_with(layer: errorwatch_tracing::ErrorWatchLayer, f: impl FnOnce()) -> Vec<Event> {
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_test_writer())
        .with(layer);
    testing::capture_events(|| tracing::subscriber::with_default(subscriber, f))
}

fn events(f: impl FnOnce()) -> Vec<Event> {
    events_with(errorwatch_tracing::layer(), f)
}

#[test]
fn error_is_an_event_warn_and_info_are_breadcrumbs_debug_and_trace_nothing() {
    let events = events(|| {
        tracing::trace!("trace line");
        tracing::debug!("debug line");
        tracing::info!(step = 1, "connected");
        tracing::warn!("slow query");
        tracing::error!("the payment failed");
    });
    assert_eq!(events.len(), 1);
    let event = &events[0];
    assert_eq!(event.level, Level::Error);
    assert_eq!(event.message.as_deref(), Some("the payment failed"));
    let crumbs: Vec<_> = event
        .breadcrumbs
        .iter()
        .map(|c| c.message.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(crumbs, vec!["connected", "slow query"]);
    assert_eq!(event.breadcrumbs[0].level, Some(Level::Info));
    assert_eq!(event.breadcrumbs[0].data["step"], 1);
    assert_eq!(event.breadcrumbs[1].level, Some(Level::Warning));
}

#[test]
fn fields_go_to_extra_and_marked_fields_to_tags_with_the_place_kept() {
    let events = events(|| {
        tracing::error!(
            order_id = 42,
            amount = 9.5,
            retried = true,
            tag.region = "eu",
            "charge failed"
        );
    });
    let event = &events[0];
    assert_eq!(event.extra["order_id"], 42);
    assert_eq!(event.extra["amount"], 9.5);
    assert_eq!(event.extra["retried"], true);
    assert_eq!(event.tag("region"), Some("eu"));
    assert!(!event.extra.contains_key("tag.region"));
    assert_eq!(event.tag("logger"), Some("layer"));
    assert_eq!(event.contexts["tracing"]["module"], "layer");
    assert!(event
        .file
        .as_deref()
        .is_some_and(|f| f.ends_with("layer.rs")));
    assert!(event.line.is_some_and(|l| l > 0));
    // The stack starts at the `error!` itself: its first frame is this function, at that line.
    let first = &event.frames[0];
    assert_eq!(first.in_app, Some(true));
    assert_eq!(
        (first.lineno, Some(first.filename.as_str())),
        (event.line, event.file.as_deref())
    );
    assert!(
        first
            .function
            .as_deref()
            .is_some_and(|f| f.contains("fields_go_to_extra")),
        "{first:?}"
    );
}

#[derive(Debug)]
struct Outer(std::num::ParseIntError);

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the config is broken")
    }
}

impl Error for Outer {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn an_error_field_becomes_the_exception_with_its_source_chain() {
    let events = events(|| {
        let error = Outer("x".parse::<u16>().unwrap_err());
        tracing::error!(error = &error as &dyn Error, "loading failed");
    });
    let event = &events[0];
    let exception = event.exception.as_ref().expect("exception");
    assert_eq!(exception.ty, "Outer");
    assert_eq!(exception.value, "the config is broken");
    assert_eq!(event.message.as_deref(), Some("loading failed"));
    let sources = event.extra["error.sources"].as_array().expect("sources");
    assert_eq!(sources[0]["type"], "ParseIntError");
}

#[tracing::instrument(err)]
fn load_settings(path: &str) -> Result<u32, std::io::Error> {
    std::fs::read_to_string(path).map(|text| text.len() as u32)
}

#[test]
fn instrument_err_is_reported_as_an_exception_with_the_span() {
    let events = events(|| {
        let _ = load_settings("/nonexistent/errorwatch.toml");
    });
    assert_eq!(events.len(), 1);
    let event = &events[0];
    let exception = event.exception.as_ref().expect("exception");
    assert!(exception.value.contains("No such file"), "{exception:?}");
    let spans = event.contexts["spans"].as_array().expect("spans");
    assert_eq!(spans[0]["name"], "load_settings");
    assert_eq!(spans[0]["fields"]["path"], "/nonexistent/errorwatch.toml");
}

#[test]
fn a_custom_tag_prefix_applies_to_span_fields_as_to_event_fields() {
    let events = events_with(errorwatch_tracing::layer().tag_prefix("t_"), || {
        let request = tracing::info_span!("request", t_route = "/pay", tag.kept = "extra");
        let _entered = request.enter();
        tracing::error!(t_region = "eu", "charge failed");
    });
    let event = &events[0];
    assert_eq!(
        event.tag("route"),
        Some("/pay"),
        "a span field with the prefix"
    );
    assert_eq!(
        event.tag("region"),
        Some("eu"),
        "an event field with the prefix"
    );
    assert_eq!(event.tag("kept"), None, "`tag.` is no prefix any more");
    assert_eq!(event.extra["tag.kept"], "extra");

    let events = events_with(errorwatch_tracing::layer().tag_prefix(""), || {
        let request = tracing::info_span!("request", route = "/pay");
        let _entered = request.enter();
        tracing::error!(region = "eu", "charge failed");
    });
    assert_eq!(
        (events[0].tag("route"), events[0].tag("region")),
        (None, None),
        "an empty prefix makes no tags of fields: {:?}",
        events[0].tags
    );
    assert_eq!(events[0].extra["route"], "/pay");
}

#[test]
fn span_fields_feed_the_events_inside_them() {
    let events = events(|| {
        let request = tracing::info_span!(
            "request",
            request_id = "r-17",
            tag.route = "/pay",
            user = tracing::field::Empty
        );
        let _entered = request.enter();
        request.record("user", "u-3");
        let inner = tracing::info_span!("db", table = "orders");
        let _inner = inner.enter();
        tracing::error!(table = "payments", "insert failed");
    });
    let event = &events[0];
    assert_eq!(event.extra["request_id"], "r-17");
    assert_eq!(
        event.extra["user"], "u-3",
        "fields recorded later count too"
    );
    assert_eq!(
        event.extra["table"], "payments",
        "the event's own fields win"
    );
    assert_eq!(event.tag("route"), Some("/pay"));
    let names: Vec<_> = event.contexts["spans"]
        .as_array()
        .expect("spans")
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, vec!["request", "db"], "outermost first");
}

#[test]
fn a_custom_filter_and_mappers_decide_and_edit() {
    let layer = errorwatch_tracing::layer()
        .event_filter(|metadata| match metadata.level().as_str() {
            "WARN" => EventFilter::EventAndBreadcrumb,
            _ if metadata.fields().field("noise").is_some() => EventFilter::Ignore,
            _ => default_event_filter(metadata),
        })
        .map_event(|mut event, _| {
            event.tags.insert("mapped".into(), "yes".into());
            (event.message.as_deref() != Some("drop me")).then_some(event)
        })
        .map_breadcrumb(|mut crumb, _| {
            crumb.category = "custom".into();
            Some(crumb)
        });
    let events = events_with(layer, || {
        tracing::warn!("disk at 91%");
        tracing::error!(noise = true, "ignored by the filter");
        tracing::error!("drop me");
        tracing::error!("kept");
    });
    let messages: Vec<_> = events
        .iter()
        .map(|e| e.message.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(messages, vec!["disk at 91%", "kept"]);
    assert_eq!(events[0].level, Level::Warning);
    assert!(events.iter().all(|e| e.tag("mapped") == Some("yes")));
    let crumb = &events[1].breadcrumbs[0];
    assert_eq!(
        (crumb.category.as_str(), crumb.message.as_deref()),
        ("custom", Some("disk at 91%"))
    );
}

#[test]
fn secrets_in_fields_are_scrubbed() {
    let events = events(|| {
        tracing::info!(password = "hunter2", "login attempt");
        tracing::error!(
            api_token = "tok-123456",
            url = "https://u:pw-SECRET@db/x",
            "Bearer abcdefgh12345 rejected"
        );
    });
    let event = &events[0];
    let json = event.to_json();
    for secret in ["hunter2", "tok-123456", "pw-SECRET", "abcdefgh12345"] {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
    assert_eq!(event.extra["api_token"], "[Filtered]");
    assert_eq!(event.breadcrumbs[0].data["password"], "[Filtered]");
}

#[test]
fn works_with_env_filter_and_per_layer_filters() {
    use tracing_subscriber::filter::LevelFilter;
    // Only the layer's own filter decides what reaches it: here WARN and above.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new("trace"))
        .with(errorwatch_tracing::layer().with_filter(LevelFilter::WARN));
    let events = testing::capture_events(|| {
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("filtered out before the layer");
            tracing::warn!("a breadcrumb");
            tracing::error!("an event");
        })
    });
    assert_eq!(events.len(), 1);
    let crumbs: Vec<_> = events[0]
        .breadcrumbs
        .iter()
        .filter_map(|c| c.message.as_deref())
        .collect();
    assert_eq!(crumbs, vec!["a breadcrumb"]);
}

#[test]
fn events_of_the_sdks_own_crates_are_never_reported() {
    let events = events(|| {
        tracing::error!(target: "errorwatch_sdk::transport", "would recurse");
        tracing::error!(target: "errorwatch_tracing", "would recurse too");
    });
    assert!(events.is_empty());
}

#[tokio::test]
async fn breadcrumbs_stay_with_their_task() {
    let subscriber = tracing_subscriber::registry().with(errorwatch_tracing::layer());
    let _default = tracing::subscriber::set_default(subscriber);
    use errorwatch_sdk::ScopeFutureExt;
    let events = testing::capture_events_async(async {
        let a = async {
            tracing::info!("a: step");
            tokio::task::yield_now().await;
            tracing::error!("a: failed");
        }
        .with_new_scope();
        let b = async {
            tracing::info!("b: step");
            tokio::task::yield_now().await;
            tracing::error!("b: failed");
        }
        .with_new_scope();
        tokio::join!(a, b);
    })
    .await;
    assert_eq!(events.len(), 2);
    for event in &events {
        let who = &event.message.as_deref().unwrap_or("")[..1];
        let crumbs: Vec<_> = event
            .breadcrumbs
            .iter()
            .filter_map(|c| c.message.as_deref())
            .collect();
        assert_eq!(
            crumbs,
            vec![format!("{who}: step")],
            "only its own task's breadcrumbs"
        );
    }
}

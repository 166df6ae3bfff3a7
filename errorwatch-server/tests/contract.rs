//! The ingestion contract over HTTP: every row of the field table, every status code and body,
//! authentication, v1/v2/envelope detection and aliases.

mod support;

use serde_json::{json, Value};
use support::*;

fn long(n: usize) -> Value {
    Value::String("x".repeat(n))
}

#[tokio::test]
async fn authentication_answers_401_with_the_contract_codes() {
    let s = TestServer::start().await;
    let body = v2("auth").to_string();
    let missing = s.post_raw("/api/v1/event", None, body.clone()).await;
    assert_eq!((missing.status, missing.code()), (401, "MISSING_API_KEY"));
    assert_eq!(missing.body["error"], "API key required");
    let format = s
        .post_raw("/api/v1/event", Some("Bearer abc"), body.clone())
        .await;
    assert_eq!(
        (format.status, format.code()),
        (401, "INVALID_API_KEY_FORMAT")
    );
    assert_eq!(format.body["error"], "Invalid API key format");
    let unknown = s
        .post_raw(
            "/api/v1/event",
            Some("ew_live_0000000000000000000000000000000000"),
            body.clone(),
        )
        .await;
    assert_eq!((unknown.status, unknown.code()), (401, "INVALID_API_KEY"));
    assert_eq!(unknown.body["error"], "Invalid API key");
    let good = s.post_raw("/api/v1/event", Some(&s.key), body).await;
    assert_eq!(good.status, 202);
    assert_eq!(good.body, json!({ "success": true, "queued": true }));
}

#[tokio::test]
async fn a_new_secret_invalidates_every_key() {
    let s = TestServer::start().await;
    let other = errorwatch_server::Server::start({
        let mut config = errorwatch_server::Config::for_tests("a-different-secret-0123");
        config.database_url = "sqlite::memory:".into();
        config
    })
    .await
    .expect("server");
    let answer = s
        .send(
            s.http
                .post(format!("{}/api/v1/event", other.url()))
                .header("X-API-Key", &s.key)
                .body(v2("x").to_string()),
        )
        .await;
    assert_eq!(answer.code(), "INVALID_API_KEY");
    other.shutdown().await;
}

#[tokio::test]
async fn v1_requires_message_file_line_and_stack() {
    let s = TestServer::start().await;
    assert_eq!(s.event(&v1("fine")).await.status, 202);
    let answer = s.event(&json!({ "message": "only" })).await;
    assert_eq!((answer.status, answer.code()), (400, "VALIDATION_ERROR"));
    assert_eq!(answer.body["error"], "Invalid input");
    assert_eq!(answer.paths(), vec!["file", "line", "stack"]);
    // v1 breadcrumbs: a fixed set of categories and numeric timestamps.
    let crumbs = |crumb: Value| with(v1("crumbs"), "breadcrumbs", json!([crumb]));
    assert_eq!(
        s.event(&crumbs(
            json!({ "timestamp": 1_700_000_000, "category": "http" })
        ))
        .await
        .status,
        202
    );
    assert_eq!(
        s.event(&crumbs(
            json!({ "timestamp": 1_700_000_000, "category": "db" })
        ))
        .await
        .paths(),
        vec!["breadcrumbs.0.category"]
    );
    assert_eq!(
        s.event(&crumbs(
            json!({ "timestamp": "2024-01-01T00:00:00Z", "category": "ui" })
        ))
        .await
        .paths(),
        vec!["breadcrumbs.0.timestamp"]
    );
    assert_eq!(
        s.event(&with(v1("ts"), "created_at", json!("2024-01-01T00:00:00Z")))
            .await
            .paths(),
        vec!["created_at"]
    );
}

#[tokio::test]
async fn each_v2_marker_makes_a_body_v2() {
    let s = TestServer::start().await;
    // None of these carries v1's required fields: accepted only because they read as v2.
    let bodies = [
        json!({ "exception": { "type": "E", "value": "marker exception" } }),
        json!({ "message": "marker sdk", "sdk": { "name": "x", "version": "1" } }),
        json!({ "message": "marker frames", "frames": [] }),
        json!({ "message": "marker event_id", "event_id": "e" }),
        json!({ "message": "marker timestamp", "timestamp": "2024-05-01T10:00:00Z" }),
    ];
    for body in bodies {
        let answer = s.event(&body).await;
        assert_eq!(answer.status, 202, "{body}: {}", answer.body);
    }
    let not_v2 = s
        .event(&json!({ "message": "number timestamp", "timestamp": 1_700_000_000 }))
        .await;
    assert_eq!(not_v2.status, 400, "a numeric timestamp is no v2 marker");
}

/// (field, value, accepted?) rows, each sent on its own on a valid v2 body.
fn field_table() -> Vec<(&'static str, Value, bool)> {
    let crumb = |extra: Value| {
        let mut crumb =
            json!({ "timestamp": "2024-01-01T00:00:00Z", "category": "custom.category" });
        if let (Some(crumb), Some(extra)) = (crumb.as_object_mut(), extra.as_object()) {
            crumb.extend(extra.clone());
        }
        json!([crumb])
    };
    vec![
        ("message", long(10_000), true),
        ("message", long(10_001), false),
        // Production accepts an empty v2 message, stack and an unparseable date string
        // (the event then takes the time of receipt): the conformance vectors show it.
        ("message", json!(""), true),
        ("message", Value::String("😀".repeat(5_001)), false), // 10 002 UTF-16 units
        ("file", long(1_000), true),
        ("file", long(1_001), false),
        ("line", json!(1), true),
        ("line", json!(0), false),
        ("line", json!(1.5), false),
        ("stack", long(100_000), true),
        ("stack", json!(""), true),
        ("env", long(50), true),
        ("env", long(51), false),
        ("url", json!("https://example.com/a?b=c"), true),
        ("url", Value::Null, true),
        ("url", json!("/relative"), false),
        (
            "url",
            Value::String(format!("https://e.com/{}", "x".repeat(2_000))),
            false,
        ),
        ("status_code", json!(500), true),
        ("status_code", Value::Null, true),
        ("status_code", json!(99), false),
        ("status_code", json!(600), false),
        ("level", json!("warning"), true),
        ("level", json!("critical"), false),
        ("created_at", json!(1_700_000_000), true),
        ("created_at", json!(1_700_000_000_000u64), true),
        ("created_at", json!("2024-01-01T00:00:00+02:00"), true),
        ("created_at", json!("yesterday"), true),
        ("created_at", json!(1e300), false),
        ("created_at", Value::Null, false),
        (
            "breadcrumbs",
            crumb(json!({ "message": "m", "level": "info", "type": "default", "data": {"k": 1} })),
            true,
        ),
        (
            "breadcrumbs",
            crumb(json!({ "message": "x".repeat(1_001) })),
            false,
        ),
        (
            "breadcrumbs",
            crumb(json!({ "category": "c".repeat(51) })),
            false,
        ),
        (
            "breadcrumbs",
            Value::Array(vec![json!({ "timestamp": 1, "category": "c" }); 101]),
            false,
        ),
        ("session_id", long(100), true),
        ("session_id", long(101), false),
        ("release", long(200), true),
        ("release", Value::Null, true),
        ("release", long(201), false),
        ("user_id", json!("42"), true),
        ("user_id", json!(42), false),
        ("user_id", long(201), false),
        ("fingerprint", long(128), true),
        ("fingerprint", long(129), false),
        ("fingerprint", json!(["a", "b"]), true),
        ("fingerprint", Value::Array(vec![json!("a"); 11]), false),
        ("trace_id", long(64), true),
        ("trace_id", long(65), false),
        ("span_id", long(32), true),
        ("span_id", long(33), false),
        ("event_id", long(64), true),
        ("event_id", long(65), false),
        ("exception", json!({ "type": "E", "value": "" }), true),
        ("exception", json!({ "type": "", "value": "v" }), false),
        ("exception", json!({ "type": "E" }), false),
        (
            "exception",
            json!({ "type": "x".repeat(501), "value": "v" }),
            false,
        ),
        (
            "exception",
            json!({ "type": "E", "value": "x".repeat(10_001) }),
            false,
        ),
        (
            "frames",
            json!([{ "filename": "a.rs", "function": "f", "lineno": 1, "colno": 2, "in_app": true, "context_line": "x", "pre_context": [], "post_context": [] }]),
            true,
        ),
        ("frames", json!([{ "function": "f" }]), false),
        ("frames", json!([{ "filename": "x".repeat(1_001) }]), false),
        (
            "frames",
            json!([{ "filename": "a", "context_line": "x".repeat(501) }]),
            false,
        ),
        (
            "frames",
            Value::Array(vec![json!({ "filename": "a" }); 201]),
            false,
        ),
        ("platform", long(50), true),
        ("platform", long(51), false),
        ("server_name", long(200), true),
        ("server_name", long(201), false),
        ("tags", json!({ "k": "v" }), true),
        ("tags", json!({ "k": 1 }), false),
        ("tags", json!({ "k": "x".repeat(1_001) }), false),
        ("tags", json!({ "k".repeat(201): "v" }), false),
        ("extra", json!({ "any": { "thing": [1, null] } }), true),
        ("extra", json!([1]), false),
        ("contexts", json!({ "os": { "name": "linux" } }), true),
        ("contexts", json!("os"), false),
        (
            "user",
            json!({ "id": "1", "email": "a@b.c", "ip_address": "::1", "username": "u" }),
            true,
        ),
        ("user", json!({ "id": "1", "email": null }), false),
        ("user", json!({ "id": 1 }), false),
        ("user", json!({ "ip_address": "x".repeat(46) }), false),
        (
            "request",
            json!({ "url": "https://e.com", "method": "POST", "headers": { "a": "b" }, "query_string": "a=b", "data": {"x": 1} }),
            true,
        ),
        ("request", json!({ "method": "x".repeat(11) }), false),
        (
            "request",
            json!({ "query_string": "x".repeat(5_001) }),
            false,
        ),
        ("request", json!({ "headers": { "a": 1 } }), false),
        (
            "sdk",
            json!({ "name": "x".repeat(100), "version": "x".repeat(50) }),
            true,
        ),
        ("sdk", json!({ "name": "x" }), false),
        (
            "sdk",
            json!({ "name": "x".repeat(101), "version": "1" }),
            false,
        ),
    ]
}

#[tokio::test]
async fn every_row_of_the_field_table() {
    let s = TestServer::start().await;
    for (i, (field, value, accepted)) in field_table().into_iter().enumerate() {
        let mut body = json!({ "event_id": format!("row-{i}"), "message": format!("row {i}") });
        body[field] = value;
        let answer = s.event(&body).await;
        if accepted {
            assert_eq!(
                answer.status, 202,
                "row {i} ({field}) should pass: {}",
                answer.body
            );
        } else {
            assert_eq!(answer.status, 400, "row {i} ({field}) should fail");
            assert_eq!(answer.code(), "VALIDATION_ERROR");
            assert!(
                answer.paths().iter().all(|p| p.starts_with(field)),
                "row {i}: the detail names {field}: {:?}",
                answer.paths()
            );
        }
    }
}

#[tokio::test]
async fn aliases_apply_only_when_the_canonical_key_is_absent() {
    let s = TestServer::start().await;
    let body = json!({ "event_id": "alias", "message": "aliases", "environment": "staging", "timestamp": "2024-03-01T12:00:00Z" });
    assert_eq!(s.event(&body).await.status, 202);
    let both =
        json!({ "event_id": "alias2", "message": "both", "environment": "staging", "env": "prod" });
    assert_eq!(s.event(&both).await.status, 202);
    // Message-only events group by level and message (as production does): two groups.
    let groups = s.groups().await;
    assert_eq!(groups.len(), 2);
    let first = groups
        .iter()
        .find(|g| g["title"] == "ERROR: aliases")
        .expect("the aliases group");
    assert_eq!(
        first["firstSeen"], "2024-03-01T12:00:00.000Z",
        "timestamp -> created_at"
    );
    let mut events = Vec::new();
    for group in &groups {
        events.extend(
            s.events_of(group["fingerprint"].as_str().unwrap_or_default())
                .await,
        );
    }
    let env_of = |message: &str| {
        events
            .iter()
            .find(|e| e["message"] == message)
            .map(|e| e["env"].clone())
    };
    assert_eq!(
        env_of("aliases"),
        Some(json!("staging")),
        "environment -> env"
    );
    assert_eq!(
        env_of("both"),
        Some(json!("prod")),
        "the canonical key wins"
    );
}

#[tokio::test]
async fn malformed_json_is_a_400_that_says_where() {
    let s = TestServer::start().await;
    let answer = s
        .post_raw(
            "/api/v1/event",
            Some(&s.key),
            "{\"message\": \"x\",\n \"file\": ",
        )
        .await;
    assert_eq!((answer.status, answer.code()), (400, "VALIDATION_ERROR"));
    let message = answer.body["details"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("Malformed JSON") && message.contains("line 2"),
        "{message}"
    );
}

#[tokio::test]
async fn payload_too_large_is_measured_on_the_bytes_read() {
    let s = TestServer::start().await;
    let big = format!("{{\"message\":\"{}\"}}", "x".repeat(5 * 1024 * 1024));
    let answer = s.post_raw("/api/v1/event", Some(&s.key), big.clone()).await;
    assert_eq!((answer.status, answer.code()), (413, "PAYLOAD_TOO_LARGE"));
    assert_eq!(answer.body["error"], "Payload too large");
    // Chunked, with no Content-Length at all: still counted, still refused.
    let status = support_chunked(&s, big.as_bytes()).await;
    assert_eq!(status, 413);
    // Before authentication: size is checked first.
    let anonymous = s.post_raw("/api/v1/event", None, big).await;
    assert_eq!(anonymous.status, 413);
}

/// Sends `body` with `Transfer-Encoding: chunked` over a raw connection; returns the status.
async fn support_chunked(s: &TestServer, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(s.server.addr())
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/event HTTP/1.1\r\nhost: x\r\nx-api-key: {}\r\ntransfer-encoding: chunked\r\ncontent-type: application/json\r\n\r\n",
        s.key
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in body.chunks(64 * 1024) {
        let frame = format!("{:x}\r\n", chunk.len());
        if stream.write_all(frame.as_bytes()).await.is_err()
            || stream.write_all(chunk).await.is_err()
            || stream.write_all(b"\r\n").await.is_err()
        {
            break; // the server may answer and close before the end: that is the point
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut answer = vec![0u8; 1024];
    let n = stream.read(&mut answer).await.expect("answer");
    let text = String::from_utf8_lossy(&answer[..n]);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn rate_limited_clients_get_429_with_retry_after() {
    let s = TestServer::with(|config| config.rate_limit_per_minute = 3).await;
    for i in 0..3 {
        let answer = s.event(&v2(&format!("rl {i}"))).await;
        assert_eq!(answer.status, 202);
        assert_eq!(answer.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(
            answer.header("x-ratelimit-remaining"),
            Some(&*(2 - i).to_string())
        );
    }
    let answer = s.event(&v2("rl 3")).await;
    assert_eq!((answer.status, answer.code()), (429, "RATE_LIMIT_EXCEEDED"));
    assert_eq!(
        answer.body["error"],
        "Too many requests, please try again later"
    );
    let retry_after: u64 = answer
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After");
    assert!((1..=60).contains(&retry_after));
    assert_eq!(answer.body["retryAfter"], retry_after);
    assert!(answer.header("x-ratelimit-reset").is_some());
}

#[tokio::test]
async fn project_switch_sampling_and_quota() {
    let s = TestServer::start().await;
    let project = format!("/api/v1/projects/{}", s.project);

    assert_eq!(
        s.admin_patch(&project, &json!({ "ingestionEnabled": false }))
            .await
            .status,
        200
    );
    let off = s.event(&v2("off")).await;
    assert_eq!((off.status, off.code()), (403, "INGESTION_DISABLED"));
    assert_eq!(off.body["error"], "Event ingestion disabled");
    // Validation comes before the switch.
    assert_eq!(
        s.event(&json!({ "message": 1, "event_id": "x" }))
            .await
            .status,
        400
    );

    s.admin_patch(
        &project,
        &json!({ "ingestionEnabled": true, "sampleRate": 0.0 }),
    )
    .await;
    let sampled = s.event(&v2("sampled")).await;
    assert_eq!(sampled.status, 202);
    assert_eq!(sampled.body, json!({ "success": true, "sampled": false }));

    s.admin_patch(&project, &json!({ "sampleRate": 1.0, "dailyQuota": 1 }))
        .await;
    assert_eq!(s.event(&v2("within quota")).await.status, 202);
    let over = s.event(&v2("over quota")).await;
    assert_eq!((over.status, over.code()), (429, "QUOTA_EXCEEDED"));
    assert_eq!(over.body["error"], "Quota exceeded");
    assert!(
        over.header("retry-after").is_none(),
        "production sends no Retry-After here"
    );

    assert_eq!(s.server.store().event_count().await.expect("count"), 1);
}

#[tokio::test]
async fn events_stored_without_a_quota_count_toward_one_set_later() {
    let s = TestServer::start().await;
    let project = format!("/api/v1/projects/{}", s.project);
    let mut n = 0;
    let mut next = || {
        n += 1;
        v2(&format!("event {n}"))
    };
    // Without a quota the day's use is not read: the quota set later counts the day.
    for _ in 0..3 {
        assert_eq!(s.event(&next()).await.status, 202);
    }
    s.admin_patch(&project, &json!({ "dailyQuota": 5 })).await;
    assert_eq!(s.event(&next()).await.status, 202);
    // Once counted, the day is kept up to date with or without a quota.
    s.admin_patch(&project, &json!({ "dailyQuota": null }))
        .await;
    assert_eq!(s.event(&next()).await.status, 202);
    s.admin_patch(&project, &json!({ "dailyQuota": 6 })).await;
    assert_eq!(s.event(&next()).await.status, 202);
    let over = s.event(&next()).await;
    assert_eq!((over.status, over.code()), (429, "QUOTA_EXCEEDED"));
    assert_eq!(s.server.store().event_count().await.expect("count"), 6);
}

#[tokio::test]
async fn text_is_stored_exactly_as_sent() {
    // A batch's texts go to the store as statement parameters: every character must come
    // back as it went.
    let s = TestServer::start().await;
    let odd = "quote \" backslash \\ slash / newline \n tab \t é 日本 🚀 \u{7f} \u{2028} \\u0041 [1,2] {}";
    let body = json!({
        "event_id": "id-\"odd\"-é",
        "message": odd,
        "exception": { "type": "Odd\\Error", "value": odd },
        "release": "v1 ☃",
        "env": "prod \"eu\"",
        "sdk": { "name": "tests", "version": "1" },
    });
    assert_eq!(s.event(&body).await.status, 202);
    let events = s.server.store().events(1).await.expect("events");
    let stored = &events[0];
    assert_eq!(stored.event_id.as_deref(), Some("id-\"odd\"-é"));
    assert_eq!(stored.message.as_deref(), Some(odd));
    assert_eq!(stored.error_type.as_deref(), Some("Odd\\Error"));
    assert_eq!(stored.value.as_deref(), Some(odd));
    assert_eq!(stored.release.as_deref(), Some("v1 ☃"));
    assert_eq!(stored.env, "prod \"eu\"");
    assert_eq!(stored.payload, body);
}

#[tokio::test]
async fn a_repeat_within_ten_seconds_is_acknowledged_not_stored() {
    let s = TestServer::start().await;
    let event = v2("same");
    assert_eq!(
        s.event(&event).await.body,
        json!({ "success": true, "queued": true })
    );
    let again = s.event(&event).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.body, json!({ "success": true, "deduplicated": true }));
    // v1 key: message|file|line.
    assert_eq!(s.event(&v1("v1 same")).await.body["queued"], true);
    assert_eq!(s.event(&v1("v1 same")).await.body["deduplicated"], true);
    assert_eq!(s.server.store().event_count().await.expect("count"), 2);
}

#[tokio::test]
async fn a_stopped_queue_answers_503_and_readiness_says_so() {
    let s = TestServer::start().await;
    assert_eq!(
        s.send(s.http.get(s.url("/health/ready"))).await.body["status"],
        "healthy"
    );
    s.server.stop_ingesting();
    let answer = s.event(&v2("stopped")).await;
    assert_eq!((answer.status, answer.code()), (503, "SERVICE_UNAVAILABLE"));
    assert_eq!(answer.body["error"], "Service temporarily unavailable");
    let ready = s.send(s.http.get(s.url("/health/ready"))).await;
    assert_eq!(
        (ready.status, ready.body["status"].as_str()),
        (503, Some("unhealthy"))
    );
    assert_eq!(
        s.admin_get("/api/v1/groups").await.status,
        200,
        "queries still served"
    );
}

#[tokio::test]
async fn envelopes_are_accepted_with_their_event_id_echoed() {
    let s = TestServer::start().await;
    let envelope = json!({
        "event_id": "abc123",
        "timestamp": 1_700_000_000.5,
        "platform": "php",
        "level": "error",
        "environment": "prod",
        "exception": { "values": [{ "type": "RuntimeException", "value": "boom 1234", "stacktrace": { "frames": [
            { "filename": "vendor/lib.php", "function": "lib", "lineno": 1, "in_app": false },
            { "filename": "src/Controller.php", "function": "handle", "lineno": 42, "in_app": true },
            { "filename": "src/Inner.php", "function": "inner", "lineno": 7, "in_app": false }
        ] } }] },
        "tags": { "route": "/x" },
        "user": { "id": "7" },
    });
    let answer = s
        .post_raw("/api/v1/envelope", Some(&s.key), envelope.to_string())
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(
        answer.body,
        json!({ "success": true, "queued": true, "event_id": "abc123" })
    );
    let without_id = s
        .post_raw(
            "/api/v1/envelope",
            Some(&s.key),
            json!({ "message": "no id" }).to_string(),
        )
        .await;
    assert_eq!(without_id.body["event_id"], Value::Null);
    let groups = s.groups().await;
    let group = groups
        .iter()
        .find(|g| g["type"] == "RuntimeException")
        .expect("group");
    assert_eq!(
        group["file"], "src/Controller.php",
        "the last in-app frame is the culprit"
    );
    assert_eq!(group["line"], 42);
    assert_eq!(group["env"], "prod");
    let missing_key = s.post_raw("/api/v1/envelope", None, "{}").await;
    assert_eq!(missing_key.code(), "MISSING_API_KEY");
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let s = TestServer::with(|config| config.metrics_token = Some("metrics-token".into())).await;
    let live = s.send(s.http.get(s.url("/health/live"))).await;
    assert_eq!(
        (live.status, live.body["status"].as_str()),
        (200, Some("ok"))
    );
    assert!(live.body["timestamp"].is_string());
    let ready = s.send(s.http.get(s.url("/health/ready"))).await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.body["checks"]["store"]["status"], "ok");

    s.event(&v2("counted")).await;
    s.post_raw("/api/v1/event", None, "{}").await;
    let refused = s.send(s.http.get(s.url("/metrics"))).await;
    assert_eq!(
        refused.status, 401,
        "a token is set: loopback alone is not enough"
    );
    let metrics = s
        .send(s.http.get(s.url("/metrics")).bearer_auth("metrics-token"))
        .await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(
        text.contains("errorwatch_events_accepted_total 1"),
        "{text}"
    );
    assert!(text.contains("errorwatch_events_rejected_total{reason=\"missing_api_key\"} 1"));
    // Five requests were answered before this one: each is timed.
    let timed = text
        .lines()
        .find_map(|line| line.strip_prefix("errorwatch_http_request_duration_seconds_count "))
        .and_then(|count| count.trim().parse::<u64>().ok());
    assert!(timed.is_some_and(|n| n >= 5), "{timed:?}");
    assert!(text.contains("errorwatch_store_batch_duration_seconds_count 1"));
    assert!(text.contains("errorwatch_ingest_queue_depth"));
    assert!(!text.contains(&s.key), "no key in the metrics");

    let open = TestServer::start().await;
    assert_eq!(
        open.send(open.http.get(open.url("/metrics"))).await.status,
        200,
        "no token: loopback may read"
    );

    let nowhere = s.send(s.http.get(s.url("/api/v2/nothing"))).await;
    assert_eq!((nowhere.status, nowhere.code()), (404, "NOT_FOUND"));
}

#[tokio::test]
async fn logs_and_checkins_are_stored_and_listed() {
    let s = TestServer::start().await;
    let log = json!({ "level": "warning", "channel": "billing", "message": "retrying", "context": { "attempt": 2 } });
    let answer = s
        .post_raw("/api/v1/logs", Some(&s.key), log.to_string())
        .await;
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body, json!({ "success": true, "sampled": false }));
    let logs = s.admin_get("/api/v1/logs").await;
    assert_eq!(logs.status, 200);
    assert_eq!(logs.body["logs"][0]["message"], "retrying");
    assert_eq!(logs.body["logs"][0]["source"], "app");
    assert_eq!(logs.body["logs"][0]["context"]["attempt"], 2);

    let start = s
        .post_raw(
            "/api/v1/cron/checkin",
            Some(&s.key),
            json!({ "slug": "nightly", "status": "in_progress" }).to_string(),
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let checkin_id = start.body["checkinId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!checkin_id.is_empty(), "a start is answered with its id");
    let finish = s
        .post_raw(
            "/api/v1/cron/checkin",
            Some(&s.key),
            json!({ "slug": "nightly", "status": "ok", "checkinId": checkin_id, "duration": 1200 })
                .to_string(),
        )
        .await;
    assert_eq!(finish.status, 200);
    assert_eq!(finish.body["checkin"]["status"], "ok");
    assert_eq!(finish.body["checkin"]["duration"], 1200);
    let checkins = s.admin_get("/api/v1/cron/checkins").await;
    let listed = checkins.body["checkins"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        listed.len(),
        1,
        "the finish completed the start: {listed:?}"
    );
    assert_eq!(listed[0]["slug"], "nightly");
    let unauthorised = s.send(s.http.get(s.url("/api/v1/logs"))).await;
    assert_eq!(unauthorised.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_other_writes_go_on_while_events_stream_in() {
    // Batches are written over a connection of their own (in memory, one cache shared with
    // the pool's): pages, logs and check-ins must neither fail nor wait for the stream to end.
    const CLIENTS: usize = 6;
    const EACH: usize = 60;
    let s = std::sync::Arc::new(TestServer::start().await);
    let mut senders = Vec::new();
    for client in 0..CLIENTS {
        let s = s.clone();
        senders.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            for n in 0..EACH {
                statuses.push(s.event(&v2(&format!("stream {client} {n}"))).await.status);
            }
            statuses
        }));
    }
    let mut rounds = 0;
    let mut failures = Vec::new();
    while senders.iter().any(|sender| !sender.is_finished()) {
        rounds += 1;
        for path in [
            "/api/v1/groups?limit=5",
            "/api/v1/logs",
            "/api/v1/cron/checkins",
        ] {
            let answer = s.admin_get(path).await;
            if answer.status != 200 {
                failures.push(format!("GET {path}: {} {}", answer.status, answer.body));
            }
        }
        let log =
            json!({ "level": "info", "channel": "app", "message": format!("round {rounds}") });
        let answer = s
            .post_raw("/api/v1/logs", Some(&s.key), log.to_string())
            .await;
        if answer.status != 202 {
            failures.push(format!("POST log: {} {}", answer.status, answer.body));
        }
        let checkin = json!({ "slug": "stream", "status": "ok" });
        let answer = s
            .post_raw("/api/v1/cron/checkin", Some(&s.key), checkin.to_string())
            .await;
        if answer.status != 200 {
            failures.push(format!("POST check-in: {} {}", answer.status, answer.body));
        }
    }
    for sender in senders {
        let statuses = sender.await.expect("a sender finishes");
        assert!(statuses.iter().all(|&status| status == 202), "{statuses:?}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(rounds > 0);
    assert_eq!(
        s.server.store().event_count().await.expect("count"),
        (CLIENTS * EACH) as i64
    );
}

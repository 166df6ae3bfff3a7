//! Grouping as the contract states it, what each group counts, resolve and regression, and the
//! query API.

mod support;

use serde_json::{json, Value};
use support::*;

fn exception(ty: &str, value: &str, frames: Value) -> Value {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    json!({
        "event_id": format!("event-{n}"),
        "exception": { "type": ty, "value": value },
        "frames": frames,
        "sdk": { "name": "tests", "version": "1" },
    })
}

fn frame(file: &str, function: &str, line: u32, in_app: bool) -> Value {
    json!({ "filename": file, "function": function, "lineno": line, "in_app": in_app })
}

async fn send(s: &TestServer, body: &Value) {
    let answer = s.event(body).await;
    assert_eq!(answer.status, 202, "{}", answer.body);
}

#[tokio::test]
async fn values_that_differ_only_in_variable_parts_share_a_group() {
    let s = TestServer::start().await;
    let frames = json!([frame("src/db.rs", "db::load", 10, true)]);
    let variants = [
        "user 1234 not found at 0xdeadbeef in 550e8400-e29b-41d4-a716-446655440000 named \"alice\"",
        "user 98765 not found at 0x1 in 123e4567-e89b-12d3-a456-426614174000 named \"bob\"",
        "user 5555 not found at 0xABCDEF in ffffffff-ffff-ffff-ffff-ffffffffffff named 'carol'",
    ];
    for (i, value) in variants.iter().enumerate() {
        // Line numbers are not part of the key either.
        let frames = json!([frame("src/db.rs", "db::load", 10 + i as u32, true)]);
        send(&s, &exception("NotFound", value, frames)).await;
    }
    let groups = s.groups().await;
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["count"], 3);
    // The very same event again within 10 s is a duplicate: acknowledged, not counted.
    let repeat = s.event(&exception("NotFound", variants[0], frames)).await;
    assert_eq!(repeat.body["deduplicated"], true);
    assert_eq!(s.groups().await[0]["count"], 3);
}

#[tokio::test]
async fn different_in_app_frames_or_types_make_different_groups() {
    let s = TestServer::start().await;
    // Raw values differ (so the 10 s duplicate window, keyed on the raw value, keeps them all)
    // but clean to the same "same <num>".
    let a = exception(
        "E",
        "same 1000",
        json!([
            frame("std.rs", "std::x", 1, false),
            frame("src/a.rs", "app::a", 1, true)
        ]),
    );
    let b = exception(
        "E",
        "same 1001",
        json!([
            frame("std.rs", "std::x", 1, false),
            frame("src/b.rs", "app::b", 1, true)
        ]),
    );
    let c = exception(
        "E",
        "same 1002",
        json!([frame("src/a.rs", "app::other", 1, true)]),
    );
    let d = exception(
        "F",
        "same 1003",
        json!([frame("src/a.rs", "app::a", 1, true)]),
    );
    let e = exception(
        "E",
        "different",
        json!([frame("src/a.rs", "app::a", 1, true)]),
    );
    for body in [&a, &b, &c, &d, &e] {
        send(&s, body).await;
    }
    assert_eq!(
        s.groups().await.len(),
        5,
        "file, function, type and cleaned value each split groups"
    );
    // The culprit is the first in-app frame in array order, not frame 0.
    let groups = s.groups().await;
    let first = groups
        .iter()
        .find(|g| g["file"] == "src/b.rs")
        .expect("culprit b");
    assert_eq!(first["type"], "E");
}

#[tokio::test]
async fn sdk_fingerprints_override_the_rest_within_a_project() {
    let s = TestServer::start().await;
    let mut one = exception("A", "first", json!([]));
    one["fingerprint"] = json!(["checkout", "payment"]);
    let mut two = exception("B", "second", json!([]));
    two["fingerprint"] = json!("checkout|payment");
    send(&s, &one).await;
    send(&s, &two).await;
    let groups = s.groups().await;
    assert_eq!(
        groups.len(),
        1,
        "same fingerprint, different exceptions: one group"
    );
    assert_eq!(groups[0]["count"], 2);

    // The same event in another project is another group: the project is in the hash.
    let (_, other_key) = s.server.create_project("other").await.expect("project");
    let answer = s
        .post_raw("/api/v1/event", Some(&other_key), one.to_string())
        .await;
    assert_eq!(answer.status, 202);
    assert_eq!(s.groups().await.len(), 2);
}

#[tokio::test]
async fn the_fallback_groups_by_type_file_and_line_not_by_message() {
    let s = TestServer::start().await;
    let event = |message: &str, file: &str, line: u32| json!({ "message": message, "file": file, "line": line, "stack": "s" });
    s.event(&event("first text", "https://cdn.x/app.js?v=1", 10))
        .await;
    s.event(&event("other text", "https://cdn.x/app.js#top", 10))
        .await;
    s.event(&event("third", "https://cdn.x/app.js", 11)).await;
    let groups = s.groups().await;
    let counts: Vec<i64> = {
        let mut counts: Vec<i64> = groups
            .iter()
            .map(|g| g["count"].as_i64().unwrap_or(0))
            .collect();
        counts.sort();
        counts
    };
    assert_eq!(
        counts,
        vec![1, 2],
        "query and hash are stripped from the file; the line splits"
    );
}

#[tokio::test]
async fn groups_count_events_users_and_times_and_reopen_on_regression() {
    let s = TestServer::start().await;
    let body = |value: &str, user: &str, ts: &str| {
        let mut event = exception("Boom", value, json!([frame("src/a.rs", "app::a", 1, true)]));
        event["user"] = json!({ "id": user });
        event["timestamp"] = json!(ts);
        event["level"] = json!("fatal");
        event
    };
    s.event(&body("n 1001", "u1", "2024-01-02T00:00:00Z")).await;
    s.event(&body("n 1002", "u2", "2024-01-01T00:00:00Z")).await;
    s.event(&body("n 1003", "u1", "2024-01-03T00:00:00Z")).await;
    let groups = s.groups().await;
    assert_eq!(groups.len(), 1);
    let group = &groups[0];
    assert_eq!(group["count"], 3);
    assert_eq!(group["usersAffected"], 2);
    assert_eq!(group["firstSeen"], "2024-01-01T00:00:00.000Z");
    // As in production: last seen is when the newest event arrived, and the title is the
    // first event's.
    assert!(group["lastSeen"].as_str().unwrap_or_default() > "2025");
    assert_eq!(group["title"], "Boom: n 1001");
    assert_eq!(group["level"], "fatal");
    assert_eq!(group["status"], "unresolved");
    let fingerprint = group["fingerprint"].as_str().unwrap_or_default().to_owned();

    let resolved = s
        .admin_patch(
            &format!("/api/v1/groups/{fingerprint}/status"),
            &json!({ "status": "resolved" }),
        )
        .await;
    assert_eq!(
        resolved.body,
        json!({ "success": true, "status": "resolved" })
    );
    assert_eq!(
        s.admin_get(&format!("/api/v1/groups/{fingerprint}"))
            .await
            .body["group"]["status"],
        "resolved"
    );
    s.event(&body("n 1004", "u3", "2024-01-04T00:00:00Z")).await;
    let group = s
        .admin_get(&format!("/api/v1/groups/{fingerprint}"))
        .await
        .body["group"]
        .clone();
    assert_eq!(
        group["status"], "unresolved",
        "a new event reopens a resolved group"
    );
    assert_eq!(
        group["regressedAt"], group["lastSeen"],
        "reopened when the new event arrived"
    );
    assert_eq!(group["usersAffected"], 3);

    let events = s.events_of(&fingerprint).await;
    assert_eq!(events.len(), 4);
    assert_eq!(events[0]["value"], "n 1004", "newest first");
    assert_eq!(events[0]["payload"]["user"]["id"], "u3", "the body is kept");
}

#[tokio::test]
async fn the_query_api_filters_sorts_pages_and_guards() {
    let s = TestServer::start().await;
    for (i, (env, level)) in [("prod", "error"), ("prod", "warning"), ("staging", "error")]
        .iter()
        .enumerate()
    {
        for n in 0..=i {
            // Values differing only in a 4+ digit number: one group per type.
            let mut event = exception(
                &format!("T{i}"),
                // A separate number: `v1001` would be one word, never cleaned to `<num>`.
                &format!("v {}", 1000 + n),
                json!([frame("a.rs", "f", 1, true)]),
            );
            event["env"] = json!(env);
            event["level"] = json!(level);
            s.event(&event).await;
        }
    }
    let titles = |answer: &Answer| -> Vec<String> {
        answer.body["groups"]
            .as_array()
            .map(|g| {
                g.iter()
                    .map(|g| g["type"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let by_count = s.admin_get("/api/v1/groups?sort=count").await;
    assert_eq!(titles(&by_count), vec!["T2", "T1", "T0"]);
    assert_eq!(by_count.body["total"], 3);
    assert_eq!(
        titles(&s.admin_get("/api/v1/groups?env=prod&sort=count").await),
        vec!["T1", "T0"]
    );
    assert_eq!(
        titles(&s.admin_get("/api/v1/groups?level=warning").await),
        vec!["T1"]
    );
    assert_eq!(
        titles(&s.admin_get("/api/v1/groups?search=t2").await),
        vec!["T2"]
    );
    assert_eq!(
        titles(&s.admin_get("/api/v1/groups?status=resolved").await),
        Vec::<String>::new()
    );
    let page2 = s
        .admin_get("/api/v1/groups?sort=count&limit=2&page=2")
        .await;
    assert_eq!(
        (titles(&page2), page2.body["total"].as_i64()),
        (vec!["T0".to_owned()], Some(3))
    );
    assert_eq!(
        titles(
            &s.admin_get(&format!(
                "/api/v1/groups?project={}&sort=firstSeen",
                s.project
            ))
            .await
        )
        .len(),
        3
    );

    for bad in [
        "limit=101",
        "limit=0",
        "page=0",
        "sort=title",
        "status=open",
        "project=abc",
    ] {
        let answer = s.admin_get(&format!("/api/v1/groups?{bad}")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "VALIDATION_ERROR"),
            "{bad}"
        );
    }
    let unknown = s.admin_get("/api/v1/groups/nope").await;
    assert_eq!((unknown.status, unknown.code()), (404, "NOT_FOUND"));
    assert_eq!(s.admin_get("/api/v1/groups/nope/events").await.status, 404);
    let bad_status = s
        .admin_patch("/api/v1/groups/nope/status", &json!({ "status": "closed" }))
        .await;
    assert_eq!(bad_status.status, 400);

    let no_auth = s.send(s.http.get(s.url("/api/v1/groups"))).await;
    assert_eq!(no_auth.status, 401);
    let wrong = s
        .send(s.http.get(s.url("/api/v1/groups")).bearer_auth("wrong"))
        .await;
    assert_eq!(wrong.status, 401);
    let closed = TestServer::with(|config| config.admin_api_key = None).await;
    let answer = closed
        .send(
            closed
                .http
                .get(closed.url("/api/v1/groups"))
                .bearer_auth(ADMIN),
        )
        .await;
    assert_eq!(
        answer.status, 503,
        "no admin key configured: the routes are off"
    );
}

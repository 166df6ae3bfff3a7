//! Bad input of every kind gets a 4xx with a reason, and the server goes on serving.

mod support;

use serde_json::json;
use support::*;

#[tokio::test]
async fn every_kind_of_bad_body_is_refused_and_the_server_keeps_serving() {
    let s = TestServer::start().await;
    let deep_array = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!(
        "{{\"extra\":{}1{}}}",
        "{\"a\":".repeat(5_000),
        "}".repeat(5_000)
    );
    let huge_frames = json!({
        "event_id": "e",
        "frames": vec![json!({ "filename": "a.rs" }); 100_000],
    })
    .to_string();
    let huge_crumbs = json!({
        "event_id": "e",
        "breadcrumbs": vec![json!({ "timestamp": 1, "category": "c" }); 50_000],
    })
    .to_string();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "truncated JSON",
            b"{\"event_id\": \"e\", \"message\": \"cut".to_vec(),
            400,
        ),
        (
            "invalid UTF-8",
            b"{\"event_id\": \"e\", \"message\": \"\xff\xfe\"}".to_vec(),
            400,
        ),
        ("empty body", Vec::new(), 400),
        ("not an object", b"[1, 2, 3]".to_vec(), 400),
        ("a bare string", b"\"event\"".to_vec(), 400),
        ("10 MB body", vec![b'x'; 10 * 1024 * 1024], 413),
        ("deep array nesting", deep_array.into_bytes(), 400),
        ("deep object nesting", deep_object.into_bytes(), 400),
        (
            "wrong types",
            br#"{"event_id": 5, "message": true, "line": "ten", "tags": []}"#.to_vec(),
            400,
        ),
        ("huge frames array", huge_frames.into_bytes(), 400),
        ("huge breadcrumbs array", huge_crumbs.into_bytes(), 400),
        (
            "nulls where strings go",
            br#"{"event_id": "e", "user": {"id": null}}"#.to_vec(),
            400,
        ),
    ];
    for (name, body, status) in cases {
        let answer = s.post_raw("/api/v1/event", Some(&s.key), body).await;
        assert_eq!(answer.status, status, "{name}: {}", answer.body);
        assert!(
            answer.body["error"].is_string() && answer.body["code"].is_string(),
            "{name}: a reason"
        );
        if status == 400 {
            let detail = answer.body["details"][0]["message"]
                .as_str()
                .unwrap_or_default();
            assert!(!detail.is_empty(), "{name}: the details say what is wrong");
        }
        // Still serving, after each one.
        assert_eq!(
            s.send(s.http.get(s.url("/health/live"))).await.status,
            200,
            "{name}"
        );
    }
    let answer = s.event(&v2("still fine")).await;
    assert_eq!(answer.status, 202);
    assert_eq!(
        s.server.store().event_count().await.expect("count"),
        1,
        "nothing bad was stored"
    );
}

#[tokio::test]
async fn bad_query_and_admin_input_gets_a_4xx() {
    let s = TestServer::start().await;
    let cases = [
        s.http
            .patch(s.url(&format!("/api/v1/projects/{}", s.project)))
            .bearer_auth(ADMIN)
            .body("{not json"),
        s.http
            .patch(s.url(&format!("/api/v1/projects/{}", s.project)))
            .bearer_auth(ADMIN)
            .body(r#"{"sampleRate": 2}"#),
        s.http
            .patch(s.url(&format!("/api/v1/projects/{}", s.project)))
            .bearer_auth(ADMIN)
            .body(r#"{"unknown": 1}"#),
        s.http
            .patch(s.url("/api/v1/projects/999"))
            .bearer_auth(ADMIN)
            .body(r#"{"sampleRate": 1}"#),
        s.http
            .patch(s.url("/api/v1/projects/abc"))
            .bearer_auth(ADMIN)
            .body("{}"),
        s.http
            .patch(s.url("/api/v1/groups/x/status"))
            .bearer_auth(ADMIN)
            .body("[]"),
        s.http
            .get(s.url("/api/v1/groups?limit=many"))
            .bearer_auth(ADMIN),
    ];
    for request in cases {
        let answer = s.send(request).await;
        assert!(
            (400..500).contains(&answer.status),
            "{}: {}",
            answer.status,
            answer.body
        );
    }
    assert_eq!(s.send(s.http.get(s.url("/health/live"))).await.status, 200);
}

#[tokio::test]
async fn connections_beyond_the_limit_wait_for_a_free_one() {
    let s = TestServer::with(|config| config.max_connections = 2).await;
    let held_a = tokio::net::TcpStream::connect(s.server.addr())
        .await
        .expect("connect");
    let held_b = tokio::net::TcpStream::connect(s.server.addr())
        .await
        .expect("connect");
    let url = s.url("/health/live");
    let mut third =
        tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status().as_u16()) });
    // Two idle connections hold both slots: the third is not served while they stay open.
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), &mut third).await;
    assert!(
        early.is_err(),
        "a third connection was served beyond the limit of 2"
    );
    drop(held_a);
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), third)
        .await
        .expect("served once a slot frees up")
        .expect("task")
        .expect("request");
    assert_eq!(status, 200);
    drop(held_b);
}

#[tokio::test]
async fn every_rejection_from_the_http_layer_is_json_with_a_reason() {
    let s = TestServer::start().await;
    let cases = [
        (s.http.get(s.url("/api/v1/event")), 405),
        (s.http.put(s.url("/api/v1/groups")).bearer_auth(ADMIN), 405),
        (s.http.get(s.url("/no/such/route")), 404),
        (
            s.http
                .patch(s.url("/api/v1/projects/abc"))
                .bearer_auth(ADMIN)
                .body("{}"),
            400,
        ),
        (
            s.http
                .get(s.url("/api/v1/groups?limit=many"))
                .bearer_auth(ADMIN),
            400,
        ),
        (
            s.http
                .get(s.url("/api/v1/groups?sort=sideways"))
                .bearer_auth(ADMIN),
            400,
        ),
        (
            s.http
                .get(s.url("/api/v1/groups?limit=1000"))
                .bearer_auth(ADMIN),
            400,
        ),
        (
            s.http
                .get(s.url("/api/v1/cron/checkins?project=x"))
                .bearer_auth(ADMIN),
            400,
        ),
        (s.http.get(s.url("/api/v1/groups")), 401),
        (
            s.http
                .patch(s.url("/api/v1/projects/1"))
                .bearer_auth(ADMIN)
                .body(r#"{"dailyQuota": -1}"#),
            400,
        ),
    ];
    for (request, status) in cases {
        let response = request.send().await.expect("an answer");
        let url = response.url().to_string();
        assert_eq!(response.status().as_u16(), status, "{url}");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(
            content_type.starts_with("application/json"),
            "{url}: {content_type}"
        );
        let body: serde_json::Value =
            serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty())
                && body["code"].as_str().is_some_and(|c| !c.is_empty()),
            "{url}: {body}"
        );
    }
}

#[tokio::test]
async fn an_http2_client_with_prior_knowledge_is_answered() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let mut stream = tokio::net::TcpStream::connect(s.server.addr())
        .await
        .expect("connect");
    // The client preface, then an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .expect("write");
    let mut header = [0u8; 9];
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_exact(&mut header),
    )
    .await
    .expect("an answer in time")
    .expect("a frame");
    assert_eq!(header[3], 0x04, "the server's first frame is SETTINGS");
}

//! Attacks and bad input (issue 5): each test is a row of the table in `docs/security.md`,
//! with the outcome it expects. Rows tested elsewhere are named there.
mod common;

use std::time::{Duration, Instant};

use common::{code, upgrade, ws_request, Api, Backend, TestApp};
use renkei_protocol::{EventData, GroupEvent};
use serde_json::json;

on_both_backends!(injection_strings_are_stored_and_returned_verbatim);

/// Strings that break badly escaped SQL or HTML.
const HOSTILE: [&str; 4] = [
    "'; DROP TABLE users; --",
    "<script>alert('x')</script>",
    "\" OR 1=1 --",
    "<img src=x onerror=alert(1)> & &amp; \\u0000",
];

/// A request with the session in a cookie, as a browser sends it.
async fn with_cookie(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    origin: Option<&str>,
) -> u16 {
    let mut request = reqwest::Client::new()
        .request(method, app.url(path))
        .header("cookie", format!("renkei_session={token}"));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("request").status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_requests_with_the_cookie_are_refused() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(app.fixture.alice).await;
    let own = format!("http://{}", app.addr);
    let path = "/api/v1/sessions/00";
    let delete = reqwest::Method::DELETE;
    // A form or script on another site (CSRF), or one that hides its origin: refused.
    let evil = Some("https://evil.example");
    assert_eq!(
        with_cookie(&app, delete.clone(), path, &token, evil).await,
        403
    );
    assert_eq!(
        with_cookie(&app, delete.clone(), path, &token, None).await,
        403
    );
    // The server's own page gets through to the handler (which finds the id malformed).
    assert_eq!(
        with_cookie(&app, delete, path, &token, Some(&own)).await,
        400
    );
    // Reads without an origin (navigation) are fine; reads by a foreign page are not.
    let get = reqwest::Method::GET;
    assert_eq!(
        with_cookie(&app, get.clone(), "/api/v1/session", &token, None).await,
        200
    );
    assert_eq!(
        with_cookie(&app, get, "/api/v1/session", &token, evil).await,
        403
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origins_are_checked_against_the_allowlist() {
    let site = "https://renkei.example.jp";
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.allowed_origins = vec![site.into()]).await;
    let token = app.token(app.fixture.alice).await;
    let bearer = ("authorization", format!("Bearer {token}"));
    let cookie = ("cookie", format!("renkei_session={token}"));
    let origin = |o: &str| ("origin", o.to_string());
    // Hijacking from another site fails whatever carries the session.
    for carrier in [&bearer, &cookie] {
        let foreign = ws_request(
            app.addr,
            "/ws",
            &[carrier.clone(), origin("https://evil.example")],
        );
        assert_eq!(upgrade(foreign).await.0, 403);
    }
    // With a list, the server's own address is not an allowed origin any more.
    let own = origin(&format!("http://{}", app.addr));
    assert_eq!(
        upgrade(ws_request(app.addr, "/ws", &[cookie.clone(), own]))
            .await
            .0,
        403
    );
    assert_eq!(
        upgrade(ws_request(app.addr, "/ws", &[cookie.clone(), origin(site)]))
            .await
            .0,
        101
    );
    // Apps that are not browsers send no origin.
    assert_eq!(upgrade(ws_request(app.addr, "/ws", &[bearer])).await.0, 101);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_is_never_compressed() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(app.fixture.alice).await;
    let (status, headers) = upgrade(ws_request(
        app.addr,
        "/ws",
        &[
            ("authorization", format!("Bearer {token}")),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits".into(),
            ),
        ],
    ))
    .await;
    assert_eq!(status, 101);
    assert!(
        !headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions")),
        "no extension accepted: {headers:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_requests_is_limited_per_user_and_per_address() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.limits.requests_per_second = 1;
        c.limits.request_burst = 5;
        c.limits.address_requests_per_second = 1;
        c.limits.address_request_burst = 10;
    })
    .await;
    let alice = app.api(app.fixture.alice).await;
    let statuses: Vec<u16> = statuses_of(&alice, 7).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        2,
        "{statuses:?}"
    );
    let (status, body) = alice.get("/api/v1/sessions").await;
    assert_eq!((status, code(&body)), (429, "rate_limited"));
    // Another user from the same address has a bucket of their own, until the address's
    // (10, of which alice took 8) runs out too.
    let bob = app.api(app.fixture.bob).await;
    assert_eq!(statuses_of(&bob, 3).await, [200, 200, 429]);
    app.stop().await;
}

async fn statuses_of(api: &Api, n: usize) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        statuses.push(api.get("/api/v1/sessions").await.0);
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_login_answers_like_a_wrong_password_in_time_too() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    // Alternate the two, on logins that are never delayed (3 failures each, then others).
    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let logins = ["alice", "bob", "carol", "dave"];
    for (i, login) in logins.iter().enumerate() {
        for attempt in 0..2 {
            for (times, who) in [
                (&mut known, login.to_string()),
                (&mut unknown, format!("nobody{i}-{attempt}@example.jp")),
            ] {
                let started = Instant::now();
                let response = client
                    .post(app.url("/api/v1/session"))
                    .json(&json!({"login": who, "password": "wrong password 1!"}))
                    .send()
                    .await
                    .expect("login");
                assert_eq!(response.status(), 401);
                times.push(started.elapsed());
            }
        }
    }
    let median = |times: &mut Vec<Duration>| {
        times.sort();
        times[times.len() / 2]
    };
    let (known, unknown) = (median(&mut known), median(&mut unknown));
    // Both check one argon2id hash: an unknown login is not answered at once.
    let ratio = unknown.as_secs_f64() / known.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "unknown {unknown:?} vs wrong password {known:?}"
    );
    app.stop().await;
}

async fn injection_strings_are_stored_and_returned_verbatim(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = &app.fixture;
    let admin = app.api(f.adam).await;
    let alice = app.api(f.alice).await;
    let mut client = app.client(f.alice).await;
    for (i, text) in HOSTILE.iter().enumerate() {
        // A post, read back live and from history.
        let seq = client
            .post_acked(f.patient_group, &format!("hostile-{i}"), text)
            .await;
        let events: Vec<GroupEvent> = client.sync(f.patient_group, seq - 1).await;
        let stored = events.iter().find_map(|e| match &e.data {
            EventData::Post { text, .. } => Some(text.clone()),
            _ => None,
        });
        assert_eq!(stored.as_deref(), Some(*text), "post {i}");
        // A patient group: name, kana, notes.
        let group = admin
            .ok(
                reqwest::Method::POST,
                "/api/v1/groups",
                Some(json!({"kind": "patient", "patient": {
                    "name": format!("{text} {i}"), "kana": text,
                    "birth_date": "1940-01-01", "notes": text}})),
            )
            .await;
        let id = group["summary"]["id"].as_i64().expect("group id");
        let details = admin.get(&format!("/api/v1/groups/{id}")).await.1;
        assert_eq!(details["patient"]["name"], format!("{text} {i}"));
        assert_eq!(details["patient"]["kana"], *text);
        assert_eq!(details["patient"]["notes"], *text);
        // A free group's name, and one's own display name.
        let free = admin
            .ok(
                reqwest::Method::POST,
                "/api/v1/groups",
                Some(json!({"kind": "free", "name": text})),
            )
            .await;
        assert_eq!(free["summary"]["name"], *text);
        let me = alice
            .ok(
                reqwest::Method::PATCH,
                &format!("/api/v1/users/{}", f.alice),
                Some(json!({"name": text})),
            )
            .await;
        assert_eq!(me["name"], *text);
        // A report's reason.
        let (status, _) = alice
            .post(
                &format!("/api/v1/groups/{}/posts/{seq}/report", f.patient_group),
                json!({"reason": text}),
            )
            .await;
        assert!((200..300).contains(&status), "report {i}: {status}");
    }
    let (_, reports) = admin
        .get(&format!("/api/v1/facilities/{}/reports", f.facility))
        .await;
    let reasons: Vec<&str> = reports
        .as_array()
        .expect("reports")
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    for text in HOSTILE {
        assert!(reasons.contains(&text), "{text} in {reasons:?}");
    }
    // The tables are all there.
    assert_eq!(admin.get("/api/v1/session").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.limits.header_timeout_seconds = 1).await;
    let mut slow = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");
    // Slowloris: one more byte every 200 ms, never the end of the head.
    let started = Instant::now();
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buffer = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_millis(1), slow.read(&mut buffer)).await;
        if let Ok(Ok(0) | Err(_)) = read {
            closed = true;
            break;
        }
        if let Ok(Ok(n)) = read {
            // hyper answers 408 before closing; either way the connection is over.
            assert!(String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408"));
            closed = true;
            break;
        }
    }
    assert!(closed, "the slow client is still connected");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Everyone else is served as before.
    let ok = reqwest::get(app.url("/healthz")).await.expect("healthz");
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

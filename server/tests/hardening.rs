//! The smaller findings of the security review of issue 20: a promotion to admin ends the
//! sessions opened without a second factor; behind a TLS proxy the cookie is Secure and
//! HSTS is sent; request bodies have a deadline; `/metrics` is served apart and `/readyz`
//! is throttled; facility applications are throttled per address and their roster bounded.
mod common;

use std::time::Duration;

use common::{code, Api, Backend, Client, TestApp, PASSWORD};
use renkei_protocol::LoginResponse;
use serde_json::json;

on_both_backends!(a_promotion_to_admin_ends_the_sessions_without_a_second_factor);

async fn login(app: &TestApp, login: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/api/v1/session"))
        .json(&json!({"login": login, "password": PASSWORD}))
        .send()
        .await
        .expect("login")
}

async fn logged_in(app: &TestApp, user: &str) -> LoginResponse {
    let response = login(app, user).await;
    assert_eq!(response.status(), 200, "{user} logs in");
    response.json().await.expect("login body")
}

/// Staff log in with a password alone; admins need a second factor. A staff member
/// promoted to admin must not keep a password-only session (up to 12 hours) with the
/// admin's powers: it ends, with its socket, and the next login asks for the setup.
async fn a_promotion_to_admin_ends_the_sessions_without_a_second_factor(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.two_factor = renkei_domain::two_factor::Requirement::Admins;
    })
    .await;
    let f = app.fixture.clone();
    let session = logged_in(&app, "alice").await;
    assert!(
        !session.second_factor_enrollment_required,
        "staff need none"
    );
    let alice = Api::new(app.addr, &session.token);
    let mut socket = Client::connect(app.addr, &session.token).await;
    assert_eq!(alice.get("/api/v1/session").await.0, 200);

    let (status, body) = app
        .api(f.adam)
        .await
        .put(
            &format!("/api/v1/users/{}/role", f.alice),
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The old session can do nothing any more, as admin or otherwise; its socket closed.
    let closed = tokio::time::timeout(Duration::from_secs(5), socket.close_code())
        .await
        .expect("the socket closes within seconds");
    assert_eq!(closed, Some(4001));
    let (status, body) = alice.get("/api/v1/session").await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, _) = alice.get(&format!("/api/v1/users/{}", f.bob)).await;
    assert_eq!(status, 401);
    // Logging in again gives a session that may only set the second factor up.
    let again = logged_in(&app, "alice").await;
    assert!(again.second_factor_enrollment_required);
    let (status, body) = Api::new(app.addr, &again.token)
        .get("/api/v1/invitations")
        .await;
    assert_eq!(
        (status, code(&body)),
        (403, "second_factor_enrollment_required")
    );
    app.stop().await;
}

/// Behind a proxy that terminates TLS (`RENKEI_ALLOW_PLAIN_HTTP`), browsers reach the
/// server over HTTPS: the session cookie must never go out over plain HTTP, and browsers
/// must not try plain HTTP first (HSTS). An explicit off switch turns both off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_a_tls_proxy_the_cookie_is_secure_and_hsts_is_sent() {
    for (behind_proxy, secure) in [(None, true), (Some(false), false)] {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.allow_plain_http = true;
            c.behind_tls_proxy = behind_proxy;
        })
        .await;
        let response = login(&app, "alice").await;
        assert_eq!(response.status(), 200);
        let cookie = response
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .expect("a session cookie")
            .to_string();
        assert_eq!(cookie.contains("; Secure"), secure, "{cookie}");
        let hsts = response.headers().get("strict-transport-security").cloned();
        assert_eq!(hsts.is_some(), secure, "{hsts:?}");
        if let Some(hsts) = hsts {
            assert_eq!(hsts, "max-age=31536000");
        }
        let page = reqwest::get(app.url("/healthz")).await.expect("healthz");
        assert_eq!(
            page.headers().contains_key("strict-transport-security"),
            secure,
            "on every response"
        );
        app.stop().await;
    }
}

/// A request whose head arrives but whose body stalls or trickles a byte now and then.
async fn slow_body(app: &TestApp, trickle: bool) -> (Duration, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let stream = tokio::net::TcpStream::connect(app.addr)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(
            b"POST /api/v1/session HTTP/1.1\r\nHost: localhost\r\n\
              Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"login\":",
        )
        .await
        .expect("head");
    let started = std::time::Instant::now();
    let writer = tokio::spawn(async move {
        // A byte every 200 ms, for at most 20 s (the server cuts it off long before).
        for _ in 0..if trickle { 100 } else { 0 } {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if write.write_all(b" ").await.is_err() {
                break;
            }
        }
        // Stalled: keeps the connection open without sending more.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut answer = Vec::new();
    let cut = tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut answer)).await;
    writer.abort();
    assert!(
        cut.is_ok(),
        "the server cut the slow body off (trickle: {trickle})"
    );
    (
        started.elapsed(),
        String::from_utf8_lossy(&answer).into_owned(),
    )
}

/// Request heads have a deadline (slowloris); bodies too: a client that sends a head and
/// then stalls, or trickles its body, is answered 408 and disconnected after
/// `RENKEI_BODY_TIMEOUT_SECONDS`, so slow bodies cannot pile up connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_trickling_body_is_cut_off() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.limits.body_timeout_seconds = 1;
    })
    .await;
    for trickle in [false, true] {
        let (after, answer) = slow_body(&app, trickle).await;
        assert!(after >= Duration::from_millis(900), "{after:?}");
        assert!(after < Duration::from_secs(5), "{after:?}");
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    // A body that arrives in time is read as always.
    assert_eq!(login(&app, "alice").await.status(), 200);
    app.stop().await;
}

/// `/metrics` is not on the address clients reach, but on its own
/// (`RENKEI_METRICS_LISTEN`); with `RENKEI_METRICS_TOKEN`, only for its bearer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_on_their_own_address_only() {
    for token in [None, Some("a long random scraping token")] {
        let app = TestApp::spawn_with(Backend::Sqlite, |c| {
            c.metrics_token = token.map(Into::into);
        })
        .await;
        let response = reqwest::get(app.url("/metrics")).await.expect("metrics");
        assert_eq!(response.status(), 404, "not on the clients' address");
        let metrics = format!("http://{}", common::metrics_addr(app.addr));
        let client = reqwest::Client::new();
        let scrape = |bearer: Option<&str>| {
            let mut request = client.get(format!("{metrics}/metrics"));
            if let Some(bearer) = bearer {
                request = request.bearer_auth(bearer);
            }
            request.send()
        };
        if token.is_some() {
            let refused = scrape(None).await.expect("scrape");
            assert_eq!(refused.status(), 401);
            assert!(refused.headers().contains_key("www-authenticate"));
            assert_eq!(scrape(Some("a guess")).await.expect("scrape").status(), 401);
        }
        let scraped = scrape(token).await.expect("scrape");
        assert_eq!(scraped.status(), 200);
        let text = scraped.text().await.expect("text");
        assert!(text.contains("renkei_connections"), "{text}");
        // Nothing else is served there.
        let other = client
            .get(format!("{metrics}/readyz"))
            .send()
            .await
            .expect("other");
        assert_eq!(other.status(), 404);
        app.stop().await;
    }
}

/// `/readyz` asks the database: from one address it is throttled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_probes_from_one_address_are_throttled() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..200 {
        let response = client.get(app.url("/readyz")).send().await.expect("readyz");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[0], 200);
    assert!(statuses.contains(&429), "{statuses:?}");
    app.stop().await;
}

on_both_backends!(
    facility_applications_are_throttled_per_address,
    an_oversized_roster_is_refused,
);

/// An application (様式1) of facility number `i`, with `staff` roster lines.
fn application(i: usize, staff: usize) -> serde_json::Value {
    let roster: Vec<_> = (0..staff)
        .map(|s| json!({"name": format!("職員 {s}"), "profession": "nurse", "email": ""}))
        .collect();
    json!({
        "name": format!("みどり訪問看護 {i}"),
        "kind": "visiting_nurse_station",
        "address": "市内 1-2-3",
        "contact": {"name": "窓口 花子", "email": format!("contact{i}@midori.example.jp"), "phone": "000-0000"},
        "admins": [{"name": "管理 一郎", "kana": "", "email": format!("admin{i}@midori.example.jp"), "profession": "nurse"}],
        "roster": roster,
        "pledged": true
    })
}

/// Anyone may apply, so one address may not fill the operator's queue (and mailbox).
async fn facility_applications_are_throttled_per_address(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let anonymous = app.anonymous();
    for i in 0..10 {
        let (status, body) = anonymous
            .post("/api/v1/facilities/applications", application(i, 1))
            .await;
        assert_eq!(status, 201, "application {i}: {body}");
    }
    let (status, body) = anonymous
        .post("/api/v1/facilities/applications", application(10, 1))
        .await;
    assert_eq!((status, code(&body)), (429, "rate_limited"), "{body}");
    app.stop().await;
}

/// A roster beyond any facility's staff is refused, naming the field and the limit.
async fn an_oversized_roster_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let anonymous = app.anonymous();
    let (status, body) = anonymous
        .post("/api/v1/facilities/applications", application(0, 501))
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("roster") && message.contains("500"),
        "{message}"
    );
    let (status, body) = anonymous
        .post("/api/v1/facilities/applications", application(1, 500))
        .await;
    assert_eq!(status, 201, "{body}");
    app.stop().await;
}

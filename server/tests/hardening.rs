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
        c.two_factor = renkei::two_factor::Requirement::Admins;
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


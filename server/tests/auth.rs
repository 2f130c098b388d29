//! Black-box tests of logging in, out, and authenticating the WebSocket upgrade.

mod common;

use common::{upgrade, ws_request, Backend, Client, TestApp, PASSWORD};
use renkei_protocol::{close, ApiError, ErrorCode, LoginResponse};
use tokio_tungstenite::tungstenite::http::Request;

/// The HTTP status of a WebSocket upgrade (101 when accepted).
async fn upgrade_status(request: Request<()>) -> u16 {
    upgrade(request).await.0
}

async fn login(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/api/v1/session"))
        .json(&serde_json::json!({ "login": login, "password": password }))
        .send()
        .await
        .expect("login request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_opens_a_session_for_bearer_and_cookie() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = login(&app, "alice", PASSWORD).await;
    assert_eq!(response.status(), 200);
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_string();
    assert!(cookie.starts_with("renkei_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let body: LoginResponse = response.json().await.expect("body");
    assert_eq!(body.user.id, app.fixture.alice);
    assert!(cookie.contains(&body.token));

    let client = Client::connect(app.addr, &body.token).await;
    assert_eq!(client.welcome.user.id, app.fixture.alice);
    assert_eq!(
        client.welcome.protocol_version,
        renkei_protocol::PROTOCOL_VERSION
    );

    // A browser on this server's own page authenticates with the cookie.
    let mut request = ws_request(app.addr, "/ws", &[]);
    let headers = request.headers_mut();
    headers.insert(
        "cookie",
        format!("renkei_session={}", body.token).parse().expect("h"),
    );
    headers.insert("origin", format!("http://{}", app.addr).parse().expect("h"));
    assert_eq!(upgrade_status(request).await, 101);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_unknown_logins_get_the_same_answer() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let mut answers = Vec::new();
    for (user, password) in [("alice", "wrong password 1!"), ("nobody", PASSWORD)] {
        let response = login(&app, user, password).await;
        assert_eq!(response.status(), 401);
        let body: ApiError = response.json().await.expect("body");
        assert_eq!(body.error.code, ErrorCode::InvalidCredentials);
        answers.push(body);
    }
    assert_eq!(answers[0], answers[1], "the same answer, word for word");
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/session"))
        .header("content-type", "application/json")
        .body("{\"login\": 3}")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let body: ApiError = response.json().await.expect("body");
    assert_eq!(body.error.code, ErrorCode::BadRequest);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_without_a_valid_session_are_refused_before_upgrading() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(app.fixture.alice).await;

    assert_eq!(
        upgrade_status(ws_request(app.addr, "/ws", &[])).await,
        401,
        "no credential"
    );
    let mut bad = ws_request(app.addr, "/ws", &[]);
    bad.headers_mut()
        .insert("authorization", "Bearer not-a-session".parse().expect("h"));
    assert_eq!(upgrade_status(bad).await, 401, "unknown token");
    for query in [
        format!("/ws?token={token}"),
        format!("/ws?access_token={token}"),
    ] {
        assert_eq!(
            upgrade_status(ws_request(app.addr, &query, &[])).await,
            401,
            "token in the URL"
        );
    }
    let mut foreign = ws_request(app.addr, "/ws", &[]);
    foreign.headers_mut().insert(
        "cookie",
        format!("renkei_session={token}").parse().expect("h"),
    );
    foreign
        .headers_mut()
        .insert("origin", "https://evil.example".parse().expect("h"));
    assert_eq!(
        upgrade_status(foreign).await,
        403,
        "cookie from a foreign page"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_closes_its_sockets() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let token = app.token(app.fixture.alice).await;
    let other_device = app.token(app.fixture.alice).await;
    let mut socket = Client::connect(app.addr, &token).await;
    let mut other = Client::connect(app.addr, &other_device).await;

    let response = common::logout(app.addr, &token).await;
    assert_eq!(response.status(), 204);
    assert!(response.headers()["set-cookie"]
        .to_str()
        .expect("c")
        .contains("Max-Age=0"));
    assert_eq!(socket.close_code().await, Some(close::SESSION_ENDED));

    let mut again = ws_request(app.addr, "/ws", &[]);
    again.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("h"),
    );
    assert_eq!(upgrade_status(again).await, 401, "the token is dead");

    // The other device's session is untouched.
    other
        .send(&renkei_protocol::ClientMessage::History {
            group: app.fixture.patient_group,
            before: None,
            limit: None,
        })
        .await;
    assert!(matches!(
        other.recv().await,
        renkei_protocol::ServerMessage::Page { .. }
    ));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user_are_limited() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.limits.max_connections_per_user = 2).await;
    let token = app.token(app.fixture.bob).await;
    let first = Client::connect(app.addr, &token).await;
    let _second = Client::connect(app.addr, &token).await;
    let mut third = ws_request(app.addr, "/ws", &[]);
    third.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("h"),
    );
    assert_eq!(upgrade_status(third.clone()).await, 429);
    drop(first);
    // The slot frees when the server notices the first socket is gone.
    let mut status = 0;
    for _ in 0..100 {
        status = upgrade_status(third.clone()).await;
        if status == 101 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(status, 101);
    app.stop().await;
}

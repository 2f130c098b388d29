//! Black-box tests of logging in, out, and authenticating the WebSocket upgrade.

mod common;

use common::{upgrade, ws_request, Api, Backend, Client, TestApp, PASSWORD};
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

on_both_backends!(storage_key_belongs_to_one_session_and_ends_with_it);

/// The key a browser encrypts its unsent posts under: per session, the same on every
/// call, never cached, and gone from the database when the session ends (logout, ending
/// every session, a ban) or expires.
async fn storage_key_belongs_to_one_session_and_ends_with_it(backend: Backend) {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let key_of = |token: String| {
        let url = app.url("/api/v1/session/key");
        async move {
            let response = reqwest::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("key request");
            let status = response.status().as_u16();
            let cache = response
                .headers()
                .get("cache-control")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            (status, cache, body)
        }
    };
    let phone = app.token(f.alice).await;
    let (status, cache, body) = key_of(phone.clone()).await;
    assert_eq!((status, cache.as_str()), (200, "no-store"), "{body}");
    let key = URL_SAFE_NO_PAD
        .decode(body["key"].as_str().expect("key"))
        .expect("base64url");
    assert_eq!(key.len(), 32);
    assert_eq!(
        key_of(phone.clone()).await.2,
        body,
        "the same key on every call"
    );
    let pc = app.token(f.alice).await;
    assert_ne!(key_of(pc.clone()).await.2, body, "each session its own key");
    let (status, _, refused) = key_of(String::new()).await;
    assert_eq!((status, common::code(&refused)), (401, "unauthorized"));

    // Logout: the key goes with the session's row.
    let hash = renkei::session::token_hash(&phone);
    assert_eq!(common::logout(app.addr, &phone).await.status(), 204);
    assert_eq!(key_of(phone).await.0, 401);
    let stored = app.store.session_storage_key(&hash, &[1; 32]).await;
    assert_eq!(
        stored.expect("store"),
        None,
        "nothing of the session is left"
    );

    // Ending every session, and a ban, end the keys with the sessions.
    let pc_hash = renkei::session::token_hash(&pc);
    let (status, _) = Api::new(app.addr, &pc).delete("/api/v1/sessions").await;
    assert_eq!(status, 204);
    assert_eq!(key_of(pc).await.0, 401);
    let stored = app.store.session_storage_key(&pc_hash, &[1; 32]).await;
    assert_eq!(stored.expect("store"), None);
    let bob = app.token(f.bob).await;
    assert_eq!(key_of(bob.clone()).await.0, 200);
    let (status, answer) = app
        .api(f.adam)
        .await
        .post(
            &format!("/api/v1/users/{}/ban", f.bob),
            serde_json::json!({"reason": "不正アクセス"}),
        )
        .await;
    assert!(status < 300, "{status} {answer}");
    assert_eq!(key_of(bob.clone()).await.0, 401);
    let stored = app
        .store
        .session_storage_key(&renkei::session::token_hash(&bob), &[1; 32])
        .await;
    assert_eq!(stored.expect("store"), None);

    // An expired or idle session keeps its row for a while, not its key.
    let dave = app.token(f.dave).await;
    let dave_hash = renkei::session::token_hash(&dave);
    let (_, _, first) = key_of(dave).await;
    let first = URL_SAFE_NO_PAD
        .decode(first["key"].as_str().expect("key"))
        .expect("base64url");
    let now = renkei_domain::clock::now_ms();
    assert_eq!(
        app.store
            .forget_ended_storage_keys(now, now - 3_600_000)
            .await
            .expect("store"),
        0,
        "live sessions keep their keys"
    );
    let forgotten = app
        .store
        .forget_ended_storage_keys(now + 7_200_000, 0)
        .await
        .expect("store");
    assert!(forgotten >= 1);
    let after = app
        .store
        .session_storage_key(&dave_hash, &[9; 32])
        .await
        .expect("store")
        .expect("the row remains");
    assert_ne!(after, first, "the old key is gone");
    app.stop().await;
}

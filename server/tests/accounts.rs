//! Accounts and sessions (issue 5): password changes with every rule, history and the end
//! of the other sessions; an admin's reset; throttled and locked logins with the admins
//! told; the list of one's sessions, ending one or all; idle and expired sessions; the
//! `rotated` policy forcing a change; password hashes upgraded when the cost is raised.
mod common;

use std::time::Duration;

use common::second_factor::{enroll, totp};
use common::{code, execute, upgrade, ws_request, Api, Backend, Client, TestApp, PASSWORD};
use renkei_protocol::{LoginResponse, ServerMessage};
use serde_json::{json, Value};

on_both_backends!(
    a_password_change_checks_every_rule_and_ends_the_other_sessions,
    an_admins_reset_ends_every_session_and_lifts_a_lock,
    sessions_are_listed_and_ended_one_or_all,
    idle_and_expired_sessions_end,
    a_rotated_password_must_be_changed_before_anything_else,
);

/// Logs in with a password, as a given device.
async fn login(app: &TestApp, login: &str, password: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(app.url("/api/v1/session"))
        .header("user-agent", "TestPhone/1.0")
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .expect("login")
}

async fn logged_in(app: &TestApp, user: &str, password: &str) -> LoginResponse {
    let response = login(app, user, password).await;
    assert_eq!(response.status(), 200, "{user} logs in");
    response.json().await.expect("login body")
}

fn rules(body: &Value) -> Vec<&str> {
    body["error"]["rules"]
        .as_array()
        .map(|rules| rules.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Waits for the socket to be closed by the server.
async fn closed(client: &mut Client) -> Option<u16> {
    tokio::time::timeout(Duration::from_secs(5), client.close_code())
        .await
        .expect("the socket closes within seconds")
}

async fn a_password_change_checks_every_rule_and_ends_the_other_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let here = logged_in(&app, "alice", PASSWORD).await;
    let there = logged_in(&app, "alice", PASSWORD).await;
    let mut other_socket = Client::connect(app.addr, &there.token).await;
    let api = Api::new(app.addr, &here.token);
    let change = |current: &str, new: &str| json!({"current": current, "new": new});

    let (status, body) = api
        .put(
            "/api/v1/session/password",
            change("wrong 1!", "tsukimi-dango 2026"),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "invalid_credentials"));
    // Every rule broken is listed, for the client to show.
    let cases: [(&str, &[&str]); 7] = [
        ("short", &["too_short", "needs_letters_digits_symbols"]),
        ("aaaa-bbbb-1234x-yz", &["repetitive"]),
        ("Sunshine2026!!!", &["common"]),
        ("alice-in-2026-看護師", &["personal"]),
        ("看護師 アリス 2026!", &["personal"]),
        (PASSWORD, &["reused"]),
        ("correct horse battery 8?", &["similar"]),
    ];
    for (new, expected) in cases {
        let (status, body) = api
            .put("/api/v1/session/password", change(PASSWORD, new))
            .await;
        assert_eq!((status, code(&body)), (400, "weak_password"), "{new}");
        assert_eq!(rules(&body), expected, "{new}");
    }
    let new = "tsukimi-dango 2026";
    let (status, _) = api
        .put("/api/v1/session/password", change(PASSWORD, new))
        .await;
    assert_eq!(status, 204);
    // The other session ends at once, its socket too; this one goes on.
    assert_eq!(closed(&mut other_socket).await, Some(4001));
    let (status, _) = Api::new(app.addr, &there.token)
        .get("/api/v1/session")
        .await;
    assert_eq!(status, 401);
    assert_eq!(api.get("/api/v1/session").await.0, 200);
    assert_eq!(login(&app, "alice", PASSWORD).await.status(), 401);
    logged_in(&app, "alice", new).await;
    // Changing back to an earlier password is refused.
    let (status, body) = api
        .put("/api/v1/session/password", change(new, PASSWORD))
        .await;
    assert_eq!((status, rules(&body)), (400, vec!["reused"]));
    app.stop().await;
}

async fn an_admins_reset_ends_every_session_and_lifts_a_lock(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.login_lock_failures = 3).await;
    let f = &app.fixture;
    let mut admin_socket = app.client(f.adam).await;
    let mut alice_socket = app.client(f.alice).await;
    // Three wrong passwords lock the account; the admin is told.
    for _ in 0..3 {
        assert_eq!(
            login(&app, "alice", "wrong password 1!").await.status(),
            401
        );
    }
    let notice = loop {
        match admin_socket.recv().await {
            ServerMessage::AccountLocked { user, until } => break (user.id, until),
            _ => continue,
        }
    };
    assert_eq!(notice.0, f.alice);
    assert!(notice.1 > renkei_domain::clock::now_ms() + 10 * 60_000);
    // Locked, the right password gets the same answer as a wrong one. (The delays of the
    // login's failures are waited out first.)
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = login(&app, "alice", PASSWORD).await;
    assert_eq!(response.status(), 401, "locked");
    // The lock and the failures are in the audit trail.
    let trail = app.api(f.adam).await;
    let (_, records) = trail
        .get(&format!(
            "/api/v1/facilities/{}/audit?actor={}",
            f.facility, f.alice
        ))
        .await;
    let actions: Vec<&str> = records
        .as_array()
        .expect("records")
        .iter()
        .filter_map(|r| r["action"].as_str())
        .collect();
    assert!(actions.contains(&"account locked"), "{actions:?}");
    assert!(actions.contains(&"POST /api/v1/session"), "{actions:?}");

    // The admin resets the password: her sessions end, the lock is lifted, a code follows.
    let admin = app.api(f.adam).await;
    let (status, body) = admin
        .post(
            &format!("/api/v1/users/{}/password-reset", f.alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(closed(&mut alice_socket).await, Some(4001));
    let setup_code = body["setup_code"].as_str().expect("a code").to_string();
    // Four groups of five characters of Crockford's base32, for typing from paper.
    assert_eq!(setup_code.len(), 23, "{setup_code}");
    assert!(
        setup_code.split('-').all(|g| g.len() == 5
            && g.bytes()
                .all(|b| b"0123456789ABCDEFGHJKMNPQRSTVWXYZ".contains(&b))),
        "{setup_code}"
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        login(&app, "alice", PASSWORD).await.status(),
        401,
        "no password"
    );
    // Nobody resets their own password this way, nor another facility's.
    let (status, _) = Api::new(app.addr, &app.token(f.alice).await)
        .post(
            &format!("/api/v1/users/{}/password-reset", f.bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);
    // The next password may not be an earlier one.
    let anonymous = app.anonymous();
    let setup = |password: &str| json!({"code": setup_code, "password": password});
    let (status, body) = anonymous
        .post("/api/v1/password-setup", setup(PASSWORD))
        .await;
    assert_eq!((status, rules(&body)), (400, vec!["reused"]));
    // Typed as a phone may: lower case, spaces between the groups, a 0 read as O.
    let typed = setup_code
        .to_lowercase()
        .replace('-', " ")
        .replace('0', "o");
    let (status, _) = anonymous
        .post(
            "/api/v1/password-setup",
            json!({"code": typed, "password": "tsukimi-dango 2026"}),
        )
        .await;
    assert_eq!(status, 204);
    logged_in(&app, "alice", "tsukimi-dango 2026").await;
    app.stop().await;
}

async fn sessions_are_listed_and_ended_one_or_all(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let phone = logged_in(&app, "bob", PASSWORD).await;
    let pc = logged_in(&app, "bob", PASSWORD).await;
    let mut phone_socket = Client::connect(app.addr, &phone.token).await;
    let api = Api::new(app.addr, &pc.token);
    let (status, sessions) = api.get("/api/v1/sessions").await;
    assert_eq!(status, 200);
    let sessions = sessions.as_array().expect("a list").clone();
    assert_eq!(sessions.len(), 2);
    for session in &sessions {
        assert_eq!(session["device"], "TestPhone/1.0");
        assert_eq!(session["source"], "127.0.0.1");
        assert!(session["expires_at"].as_i64() > session["last_used_at"].as_i64());
    }
    let current: Vec<bool> = sessions.iter().map(|s| s["current"] == true).collect();
    assert_eq!(current.iter().filter(|c| **c).count(), 1);
    let other = sessions
        .iter()
        .find(|s| s["current"] == false)
        .expect("the phone's");
    // Ending the phone's session closes its socket.
    let id = other["id"].as_str().expect("an id");
    let (status, _) = api.delete(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!(status, 204);
    assert_eq!(closed(&mut phone_socket).await, Some(4001));
    let (status, body) = api.delete(&format!("/api/v1/sessions/{id}")).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = api.delete("/api/v1/sessions/not-an-id").await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    // Another user's session cannot be named.
    let carol = app.api(app.fixture.carol).await;
    let (_, carols) = carol.get("/api/v1/sessions").await;
    let carols_id = carols[0]["id"].as_str().expect("carol's").to_string();
    assert_eq!(
        api.delete(&format!("/api/v1/sessions/{carols_id}")).await.0,
        404
    );
    assert_eq!(carol.get("/api/v1/sessions").await.0, 200);
    // Logging out everywhere ends this session too.
    let again = logged_in(&app, "bob", PASSWORD).await;
    let mut again_socket = Client::connect(app.addr, &again.token).await;
    assert_eq!(api.delete("/api/v1/sessions").await.0, 204);
    assert_eq!(closed(&mut again_socket).await, Some(4001));
    assert_eq!(api.get("/api/v1/sessions").await.0, 401);
    app.stop().await;
}

async fn idle_and_expired_sessions_end(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = &app.fixture;
    let idle = app.api(f.alice).await;
    let expired = app.api(f.bob).await;
    assert_eq!(idle.get("/api/v1/session").await.0, 200);
    let hour_ago = renkei_domain::clock::now_ms() - 61 * 60_000;
    execute(
        &app.db.url,
        &format!(
            "UPDATE sessions SET last_used_at = {hour_ago} WHERE user_id = {}",
            f.alice
        ),
    )
    .await;
    execute(
        &app.db.url,
        &format!(
            "UPDATE sessions SET expires_at = {} WHERE user_id = {}",
            renkei_domain::clock::now_ms(),
            f.bob
        ),
    )
    .await;
    assert_eq!(idle.get("/api/v1/session").await.0, 401, "idle for an hour");
    assert_eq!(
        expired.get("/api/v1/session").await.0,
        401,
        "past its lifetime"
    );
    app.stop().await;
}

async fn a_rotated_password_must_be_changed_before_anything_else(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.password_policy = renkei_domain::password::Policy::Rotated;
    })
    .await;
    let f = &app.fixture;
    let (_, policy) = app.anonymous().get("/api/v1/password-policy").await;
    assert_eq!(
        policy,
        json!({"policy": "rotated", "min_length": 8, "min_length_with_second_factor": 8,
            "max_age_days": 60, "history": 5})
    );
    let fresh = logged_in(&app, "bob", PASSWORD).await;
    assert!(!fresh.password_change_required);
    let long_ago = renkei_domain::clock::now_ms() - 61 * 86_400_000;
    execute(
        &app.db.url,
        &format!(
            "UPDATE users SET password_changed_at = {long_ago} WHERE id = {}",
            f.alice
        ),
    )
    .await;
    let expired = logged_in(&app, "alice", PASSWORD).await;
    assert!(expired.password_change_required);
    let api = Api::new(app.addr, &expired.token);
    let (status, body) = api.get("/api/v1/invitations").await;
    assert_eq!((status, code(&body)), (403, "password_change_required"));
    let request = ws_request(
        app.addr,
        "/ws",
        &[("authorization", format!("Bearer {}", expired.token))],
    );
    assert_eq!(upgrade(request).await.0, 403, "no socket before the change");
    let (_, info) = api.get("/api/v1/session").await;
    assert_eq!(info["password_change_required"], true);
    // Eight characters are enough under this policy.
    let (status, body) = api
        .put(
            "/api/v1/session/password",
            json!({"current": PASSWORD, "new": "kiku#2026"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(api.get("/api/v1/invitations").await.0, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_delayed_alike_for_known_and_unknown_logins() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    for who in ["alice", "nobody@example.jp"] {
        for _ in 0..3 {
            assert_eq!(login(&app, who, "wrong password 1!").await.status(), 401);
        }
        let response = login(&app, who, PASSWORD).await;
        assert_eq!(response.status(), 429, "{who}: the fourth try waits");
        assert_eq!(
            response.headers().get("retry-after").map(|v| v.as_bytes()),
            Some(&b"1"[..])
        );
    }
    // Once the delay is over, the right password works.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(login(&app, "alice", PASSWORD).await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_hash_cost_rehashes_at_the_next_login() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.password_memory_kib = 32 * 1024).await;
    let before = app
        .store
        .password_state(app.fixture.alice)
        .await
        .expect("state")
        .expect("a password");
    assert!(before.hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
    logged_in(&app, "alice", PASSWORD).await;
    let after = app
        .store
        .password_state(app.fixture.alice)
        .await
        .expect("state")
        .expect("a password");
    assert!(
        after.hash.starts_with("$argon2id$v=19$m=32768,t=2,p=1$"),
        "{}",
        after.hash
    );
    assert_eq!(after.history[0], after.hash, "the history follows");
    logged_in(&app, "alice", PASSWORD).await;
    app.stop().await;
}

async fn login_with_code(app: &TestApp, user: &str, code: Option<&str>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/session"))
        .json(&json!({"login": user, "password": PASSWORD, "code": code}))
        .send()
        .await
        .expect("login");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

on_both_backends!(a_second_factor_is_required_of_admins_and_no_code_works_twice);

async fn a_second_factor_is_required_of_admins_and_no_code_works_twice(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.two_factor = renkei_domain::two_factor::Requirement::Admins;
    })
    .await;
    // An admin without a second factor gets a session that may only set one up.
    let first = logged_in(&app, "adam@example.jp", PASSWORD).await;
    assert!(first.second_factor_enrollment_required);
    let api = Api::new(app.addr, &first.token);
    let (status, body) = api.get("/api/v1/invitations").await;
    assert_eq!(
        (status, code(&body)),
        (403, "second_factor_enrollment_required")
    );
    let request = ws_request(
        app.addr,
        "/ws",
        &[("authorization", format!("Bearer {}", first.token))],
    );
    assert_eq!(upgrade(request).await.0, 403, "no socket before the setup");
    let (_, status) = api.get("/api/v1/session/two-factor").await;
    assert_eq!(
        status,
        json!({"enabled": false, "required": true, "recovery_codes_left": 0})
    );
    let (secret, recovery) = enroll(&api).await;
    // Now the same session may do everything; the second factor stays on.
    assert_eq!(api.get("/api/v1/invitations").await.0, 200);
    let (status, _) = api
        .call(
            reqwest::Method::DELETE,
            "/api/v1/session/two-factor",
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 403, "required for admins");

    // Logging in asks for the code once the password is right.
    let (status, body) = login_with_code(&app, "adam@example.jp", None).await;
    assert_eq!((status, code(&body)), (401, "second_factor_required"));
    // The code that confirmed the setup was used: it does not open a session.
    let (status, body) = login_with_code(&app, "adam@example.jp", Some(&totp(&secret, 0))).await;
    assert_eq!(
        (status, code(&body)),
        (401, "invalid_credentials"),
        "replayed"
    );
    // The next one does, once.
    let next = totp(&secret, 1);
    let (status, body) = login_with_code(&app, "adam@example.jp", Some(&next)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["second_factor_enrollment_required"], false);
    let (status, _) = login_with_code(&app, "adam@example.jp", Some(&next)).await;
    assert_eq!(status, 401, "a code works once");
    // A recovery code, typed loosely, works once.
    let typed = recovery[0].to_uppercase().replace('-', " ");
    let (status, _) = login_with_code(&app, "adam@example.jp", Some(&typed)).await;
    assert_eq!(status, 200);
    let (status, _) = login_with_code(&app, "adam@example.jp", Some(&recovery[0])).await;
    assert_eq!(status, 401, "a recovery code works once");
    let (_, status) = api.get("/api/v1/session/two-factor").await;
    assert_eq!(status["recovery_codes_left"], 9);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_may_add_a_second_factor_and_a_reset_removes_it() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let f = &app.fixture;
    let session = logged_in(&app, "alice", PASSWORD).await;
    assert!(
        !session.second_factor_enrollment_required,
        "optional for staff"
    );
    let api = Api::new(app.addr, &session.token);
    let (secret, _) = enroll(&api).await;
    let (status, body) = login_with_code(&app, "alice", None).await;
    assert_eq!((status, code(&body)), (401, "second_factor_required"));
    assert_eq!(
        login_with_code(&app, "alice", Some(&totp(&secret, 1)))
            .await
            .0,
        200
    );
    // A lost phone: her admin resets the password, which removes the second factor.
    let admin = app.api(f.adam).await;
    let (_, setup) = admin
        .post(
            &format!("/api/v1/users/{}/password-reset", f.alice),
            json!({}),
        )
        .await;
    let setup_code = setup["setup_code"].as_str().expect("code");
    let (status, _) = app
        .anonymous()
        .post(
            "/api/v1/password-setup",
            json!({"code": setup_code, "password": "tsukimi-dango 2026"}),
        )
        .await;
    assert_eq!(status, 204);
    logged_in(&app, "alice", "tsukimi-dango 2026").await;
    // Turning it off needs the password.
    let again = logged_in(&app, "alice", "tsukimi-dango 2026").await;
    let api = Api::new(app.addr, &again.token);
    enroll(&api).await;
    let off = |password: &str| {
        let api = api.clone();
        let body = json!({ "password": password });
        async move {
            api.call(
                reqwest::Method::DELETE,
                "/api/v1/session/two-factor",
                Some(body),
            )
            .await
            .0
        }
    };
    assert_eq!(off("wrong password 1!").await, 403);
    assert_eq!(off("tsukimi-dango 2026").await, 204);
    logged_in(&app, "alice", "tsukimi-dango 2026").await;
    app.stop().await;
}

//! Facilities and accounts, black-box: a facility applies, the operator decides, admins
//! set their first password with a one-time code, register staff, and restrict, ban or
//! deactivate them; suspension and withdrawal end their users' access at once.

mod common;

use common::{code, Api, Backend, Client, TestApp};
use renkei_protocol::{close, Role, ServerMessage};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    an_operator_is_added_at_installation,
    a_facility_applies_is_approved_and_registers_staff,
    suspension_and_withdrawal_end_access_at_once,
    the_last_admin_stays_and_the_admins_room_follows_the_role,
    restriction_and_ban_take_effect_on_open_sockets,
);

fn application() -> Value {
    json!({
        "name": "みどり薬局",
        "kind": "pharmacy",
        "address": "市内 1-2-3",
        "contact": {"name": "窓口 花子", "email": "contact@midori.example.jp", "phone": "000-0000"},
        "admins": [{"name": "管理 一郎", "kana": "かんり いちろう", "email": "Admin@Midori.example.jp", "profession": "pharmacist"}],
        "roster": [{"name": "薬剤師 二郎", "profession": "pharmacist", "email": "jiro@midori.example.jp"}],
        "pledged": true
    })
}

/// Sets a first password with a setup code and logs in; returns the session token.
async fn activate(app: &TestApp, setup: &Value, login: &str) -> String {
    let anonymous = app.anonymous();
    let code = setup["setup_code"].as_str().expect("a setup code");
    let (status, body) = anonymous
        .post(
            "/api/v1/password-setup",
            json!({"code": code, "password": "short"}),
        )
        .await;
    assert_eq!((status, common::code(&body)), (400, "weak_password"));
    let password = "連携 は 大切 2026!";
    let (status, _) = anonymous
        .post(
            "/api/v1/password-setup",
            json!({"code": code, "password": password}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = anonymous
        .post(
            "/api/v1/password-setup",
            json!({"code": code, "password": password}),
        )
        .await;
    assert_eq!(status, 400, "a code works once");
    login_as(app, login, password).await.expect("logs in")
}

async fn login_as(app: &TestApp, login: &str, password: &str) -> Option<String> {
    let (status, body) = app
        .anonymous()
        .post(
            "/api/v1/session",
            json!({"login": login, "password": password}),
        )
        .await;
    (status == 200).then(|| body["token"].as_str().expect("token").to_string())
}

/// An approved facility with one admin who has logged in: (facility, admin id, admin api).
async fn approved_facility(app: &TestApp, operator: &Api) -> (i64, i64, Api) {
    let (status, applied) = app
        .anonymous()
        .post("/api/v1/facilities/applications", application())
        .await;
    assert_eq!(status, 201, "{applied}");
    let id = applied["id"].as_i64().expect("id");
    let approved = operator
        .ok(
            Method::POST,
            &format!("/api/v1/facilities/{id}/approve"),
            Some(json!({"pledge_received_on": "2026-11-20"})),
        )
        .await;
    let setup = &approved["admins"][0];
    let admin = setup["user"]["id"].as_i64().expect("admin id");
    let token = activate(app, setup, "ADMIN@midori.example.jp").await;
    (id, admin, Api::new(app.addr, &token))
}

async fn a_facility_applies_is_approved_and_registers_staff(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let operator_id = app.user(None, "city@example.jp", Role::Operator).await;
    let operator = app.api(operator_id).await;
    let alice = app.api(f.alice).await;

    // Bad applications are refused field by field; nothing is stored.
    let mut bad = application();
    bad["admins"][0]["email"] = json!("not-an-address");
    let (status, body) = app
        .anonymous()
        .post("/api/v1/facilities/applications", bad)
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap_or("")
        .starts_with("admins[0].email "));
    // Each refusal names its field first, rows by index, for the web form.
    for (field, value, named) in [
        ("admins", json!([]), "admins:"),
        ("pledged", json!(false), "pledged:"),
        (
            "roster",
            json!([{"name": "a", "profession": "nurse"}, {"name": " ", "profession": "nurse"}]),
            "roster[1].name ",
        ),
        (
            "roster",
            json!([{"name": "a", "profession": "nurse", "email": "nope"}]),
            "roster[0].email ",
        ),
    ] {
        let mut bad = application();
        bad[field] = value;
        let (status, body) = app
            .anonymous()
            .post("/api/v1/facilities/applications", bad)
            .await;
        assert_eq!(status, 400);
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(message.starts_with(named), "{message}");
    }

    let (status, applied) = app
        .anonymous()
        .post("/api/v1/facilities/applications", application())
        .await;
    assert_eq!(status, 201);
    assert_eq!(applied["status"], "applied");
    let id = applied["id"].as_i64().expect("id");

    // Only the operator sees applications and decides.
    let (status, body) = alice.get("/api/v1/facilities/applications").await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let waiting = operator
        .ok(
            Method::GET,
            "/api/v1/facilities/applications?status=applied",
            None,
        )
        .await;
    assert_eq!(waiting.as_array().map(Vec::len), Some(1));
    assert_eq!(
        waiting[0]["application"]["roster"][0]["name"],
        "薬剤師 二郎"
    );
    assert_eq!(
        waiting[0]["application"]["roster"][0]["email"],
        "jiro@midori.example.jp"
    );
    assert_eq!(waiting[0]["application"]["pledged"], true);
    let (status, _) = operator
        .get("/api/v1/facilities/applications?status=nonsense")
        .await;
    assert_eq!(status, 400);

    // The public list (公示) shows approved facilities only, with no personal data.
    let public = app
        .anonymous()
        .ok(Method::GET, "/api/v1/facilities", None)
        .await;
    assert!(!public.to_string().contains("みどり薬局"));
    let approved = operator
        .ok(
            Method::POST,
            &format!("/api/v1/facilities/{id}/approve"),
            Some(json!({"pledge_received_on": "2026-11-20"})),
        )
        .await;
    assert_eq!(approved["facility"]["status"], "approved");
    assert_eq!(approved["facility"]["pledge_received_on"], "2026-11-20");
    let (status, body) = operator
        .post(&format!("/api/v1/facilities/{id}/approve"), json!({}))
        .await;
    assert_eq!((status, code(&body)), (409, "conflict"), "decided once");
    let public = app
        .anonymous()
        .ok(Method::GET, "/api/v1/facilities", None)
        .await;
    let listed = public
        .as_array()
        .and_then(|list| list.iter().find(|f| f["id"] == id))
        .expect("listed");
    let mut keys: Vec<&str> = listed
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["address", "id", "kind", "name"]);

    // The admin sets a password with the one-time code, logs in (the login is the
    // e-mail address, in any case), and is in the admins' room.
    let setup = &approved["admins"][0];
    assert_eq!(setup["user"]["role"], "admin");
    let admin_id = setup["user"]["id"].as_i64().expect("id");
    assert_eq!(
        login_as(&app, "admin@midori.example.jp", "連携 は 大切 2026!").await,
        None
    );
    let token = activate(&app, setup, "ADMIN@midori.example.jp").await;
    let admin = Api::new(app.addr, &token);
    let socket = Client::connect(app.addr, &token).await;
    let welcome = socket.welcome.clone();
    assert!(
        welcome.groups.iter().any(|g| g.admins_room),
        "{:?}",
        welcome.groups
    );
    assert!(app.store.user(admin_id).await.expect("read").is_some());

    // The admin registers staff: one account per e-mail address across the network.
    let (status, body) = admin
        .post(
            &format!("/api/v1/facilities/{id}/users"),
            json!({"email": "alice", "name": "x", "profession": "nurse"}),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let staff = admin
        .ok(
            Method::POST,
            &format!("/api/v1/facilities/{id}/users"),
            Some(json!({"email": "jiro@midori.example.jp", "name": "薬剤師 二郎", "kana": "やくざいし じろう", "profession": "pharmacist", "pledge_received_on": "2026-11-21"})),
        )
        .await;
    assert_eq!(staff["user"]["pledge_received_on"], "2026-11-21");
    let (status, body) = admin
        .post(
            &format!("/api/v1/facilities/{id}/users"),
            json!({"email": "JIRO@midori.example.jp", "name": "別人", "profession": "pharmacist"}),
        )
        .await;
    assert_eq!((status, code(&body)), (409, "conflict"));
    let jiro = staff["user"]["id"].as_i64().expect("id");
    let listed = admin
        .ok(Method::GET, &format!("/api/v1/facilities/{id}/users"), None)
        .await;
    assert!(listed.to_string().contains("jiro@midori.example.jp"));
    // Others see the public profile only; another facility's staff list is closed.
    let profile = alice
        .ok(Method::GET, &format!("/api/v1/users/{jiro}"), None)
        .await;
    assert_eq!(profile["name"], "薬剤師 二郎");
    assert!(profile.get("email").is_none(), "{profile}");
    let (status, _) = alice.get(&format!("/api/v1/facilities/{id}/users")).await;
    assert_eq!(status, 403);
    let directory = alice
        .ok(
            Method::GET,
            &format!("/api/v1/facilities/{id}/directory"),
            None,
        )
        .await;
    assert!(directory.to_string().contains("薬剤師 二郎"));
    assert!(
        !directory.to_string().contains("@midori"),
        "no addresses: {directory}"
    );

    // Professions are the admin's to change; names are also the user's own.
    let jiro_token = activate(&app, &staff, "jiro@midori.example.jp").await;
    let jiro_api = Api::new(app.addr, &jiro_token);
    let (status, _) = jiro_api
        .patch(
            &format!("/api/v1/users/{jiro}"),
            json!({"profession": "doctor"}),
        )
        .await;
    assert_eq!(status, 403);
    jiro_api
        .ok(
            Method::PATCH,
            &format!("/api/v1/users/{jiro}"),
            Some(json!({"kana": "じろう"})),
        )
        .await;
    let changed = admin
        .ok(
            Method::PATCH,
            &format!("/api/v1/users/{jiro}"),
            Some(json!({"profession": "pharmacist_lead"})),
        )
        .await;
    assert_eq!(
        (changed["kana"].as_str(), changed["profession"].as_str()),
        (Some("じろう"), Some("pharmacist_lead"))
    );

    // Photos: images only, by their bytes, bounded.
    let png = [&b"\x89PNG\r\n\x1a\n"[..], &[0u8; 64]].concat();
    let put = |bytes: Vec<u8>, kind: &'static str| {
        let token = jiro_token.clone();
        async move {
            reqwest::Client::new()
                .put(format!("http://{}/api/v1/users/{jiro}/photo", app.addr))
                .bearer_auth(token)
                .header("content-type", kind)
                .body(bytes)
                .send()
                .await
                .expect("upload")
                .status()
                .as_u16()
        }
    };
    assert_eq!(put(b"<svg/>".to_vec(), "image/svg+xml").await, 415);
    assert_eq!(
        put(png.clone(), "image/jpeg").await,
        415,
        "the declared type must agree"
    );
    assert_eq!(put(vec![0xff; 600 * 1024], "image/jpeg").await, 413);
    assert_eq!(put(png.clone(), "image/png").await, 204);
    let photo = reqwest::Client::new()
        .get(format!("http://{}/api/v1/users/{jiro}/photo", app.addr))
        .bearer_auth(app.token(f.alice).await)
        .send()
        .await
        .expect("photo");
    assert_eq!(photo.headers()["content-type"], "image/png");
    assert_eq!(photo.bytes().await.expect("bytes").as_ref(), png.as_slice());
}

async fn suspension_and_withdrawal_end_access_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let operator = app
        .api(app.user(None, "city@example.jp", Role::Operator).await)
        .await;
    let (id, admin_id, admin) = approved_facility(&app, &operator).await;
    let mut socket = Client::connect(app.addr, &admin.token).await;

    let (status, _) = operator
        .post(
            &format!("/api/v1/facilities/{id}/suspend"),
            json!({"reason": ""}),
        )
        .await;
    assert_eq!(status, 400, "a suspension gives a reason");
    operator
        .ok(
            Method::POST,
            &format!("/api/v1/facilities/{id}/suspend"),
            Some(json!({"reason": "様式2 未提出"})),
        )
        .await;
    assert_eq!(socket.close_code().await, Some(close::ACCOUNT_ENDED));
    let (status, _) = admin.get("/api/v1/session").await;
    assert_eq!(status, 401, "its sessions ended");
    assert_eq!(
        login_as(&app, "admin@midori.example.jp", "連携 は 大切 2026!").await,
        None
    );
    let public = app
        .anonymous()
        .ok(Method::GET, "/api/v1/facilities", None)
        .await;
    assert!(!public.to_string().contains("みどり薬局"));

    operator
        .ok(
            Method::POST,
            &format!("/api/v1/facilities/{id}/reinstate"),
            None,
        )
        .await;
    let token = login_as(&app, "admin@midori.example.jp", "連携 は 大切 2026!")
        .await
        .expect("reinstated");
    let mut socket = Client::connect(app.addr, &token).await;
    let welcome = socket.welcome.clone();
    let room = welcome
        .groups
        .iter()
        .find(|g| g.admins_room)
        .expect("still in the room")
        .id;

    // Withdrawal deactivates every user: removed from every group, sockets ended.
    operator
        .ok(
            Method::POST,
            &format!("/api/v1/facilities/{id}/withdraw"),
            Some(json!({"reason": "事業所廃止"})),
        )
        .await;
    assert_eq!(socket.close_code().await, Some(close::ACCOUNT_ENDED));
    assert_eq!(
        login_as(&app, "admin@midori.example.jp", "連携 は 大切 2026!").await,
        None
    );
    let details = app
        .store
        .group_details(room)
        .await
        .expect("read")
        .expect("room");
    assert!(!details.members.iter().any(|(m, _)| m.id == admin_id));
    let user = operator
        .ok(Method::GET, &format!("/api/v1/users/{admin_id}"), None)
        .await;
    assert_eq!(user["status"], "deactivated");
    let (status, _) = operator
        .post(&format!("/api/v1/facilities/{id}/reinstate"), json!({}))
        .await;
    assert_eq!(status, 409, "withdrawn is final");
}

async fn the_last_admin_stays_and_the_admins_room_follows_the_role(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let adam = f.adam;
    let adam_api = app.api(adam).await;
    let operator = app
        .api(app.user(None, "city@example.jp", Role::Operator).await)
        .await;

    for (path, body) in [
        (
            format!("/api/v1/users/{adam}/role"),
            json!({"role": "staff"}),
        ),
        (format!("/api/v1/users/{adam}/ban"), json!({"reason": "x"})),
    ] {
        let (status, body) = operator
            .call(
                if path.ends_with("role") {
                    Method::PUT
                } else {
                    Method::POST
                },
                &path,
                Some(body),
            )
            .await;
        assert_eq!((status, code(&body)), (409, "last_admin"), "{path}");
    }
    let (status, body) = operator
        .post(&format!("/api/v1/users/{adam}/deactivate"), json!({}))
        .await;
    assert_eq!((status, code(&body)), (409, "last_admin"));

    // Alice becomes admin: she joins the admins' room live.
    let mut alice = app.client(f.alice).await;
    adam_api
        .ok(
            Method::PUT,
            &format!("/api/v1/users/{}/role", f.alice),
            Some(json!({"role": "admin"})),
        )
        .await;
    let room = loop {
        match alice.recv().await {
            ServerMessage::GroupJoined { group } if group.admins_room => break group.id,
            ServerMessage::Account { user, .. } => assert_eq!(user.role, Role::Admin),
            _ => continue,
        }
    };
    let history = alice.sync(room, 0).await;
    assert!(!history.is_empty(), "the room's history is readable");
    // Now adam may step down; alice is the facility's admin.
    let alice_api = app.api(f.alice).await;
    alice_api
        .ok(
            Method::PUT,
            &format!("/api/v1/users/{adam}/role"),
            Some(json!({"role": "staff"})),
        )
        .await;
    let details = app
        .store
        .group_details(room)
        .await
        .expect("read")
        .expect("room");
    assert!(!details.members.iter().any(|(m, _)| m.id == adam));
    let (status, _) = alice_api
        .put(
            &format!("/api/v1/users/{}/role", f.alice),
            json!({"role": "staff"}),
        )
        .await;
    assert_eq!(status, 409, "and cannot step down herself now");
}

async fn restriction_and_ban_take_effect_on_open_sockets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let adam = app.api(f.adam).await;
    let mut bob = app.client(f.bob).await;
    bob.sync(f.patient_group, 0).await;

    adam.ok(
        Method::POST,
        &format!("/api/v1/users/{}/restrict", f.bob),
        Some(json!({"reason": "誤投稿が続いたため"})),
    )
    .await;
    loop {
        if let ServerMessage::Account { status, .. } = bob.recv().await {
            assert_eq!(status, renkei_protocol::AccountStatus::Restricted);
            break;
        }
    }
    bob.post(f.patient_group, "r-1", "書けないはず").await;
    let error = bob.next_error().await;
    assert_eq!(error.code, renkei_protocol::ErrorCode::AccountRestricted);
    // Reading still works.
    bob.sync(f.patient_group, 0).await;

    adam.ok(
        Method::POST,
        &format!("/api/v1/users/{}/reinstate", f.bob),
        None,
    )
    .await;
    loop {
        if let ServerMessage::Account { status, .. } = bob.recv().await {
            assert_eq!(status, renkei_protocol::AccountStatus::Active);
            break;
        }
    }
    bob.post_acked(f.patient_group, "r-2", "また書ける").await;

    adam.ok(
        Method::POST,
        &format!("/api/v1/users/{}/ban", f.bob),
        Some(json!({"reason": "不正アクセス"})),
    )
    .await;
    assert_eq!(bob.close_code().await, Some(close::ACCOUNT_ENDED));
    let (status, _) = Api::new(app.addr, &app.token(f.bob).await)
        .get("/api/v1/session")
        .await;
    assert_eq!(status, 401, "a banned account has no session");
}

async fn an_operator_is_added_at_installation(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let bad = renkei::account::add_operator(app.store.as_ref(), "not an address", "市", 1).await;
    assert!(bad.is_err());
    let (setup_code, _) =
        renkei::account::add_operator(app.store.as_ref(), "City@Example.jp", "市 健康福祉部", 1)
            .await
            .expect("operator");
    let setup = json!({"setup_code": setup_code});
    let token = activate(&app, &setup, "city@example.jp").await;
    let operator = Api::new(app.addr, &token);
    let session = operator.ok(Method::GET, "/api/v1/session", None).await;
    assert_eq!(session["user"]["role"], "operator");
    operator
        .ok(Method::GET, "/api/v1/facilities/applications", None)
        .await;
    let room = app.store.admins_room().await.expect("room");
    let id = session["user"]["id"].as_i64().expect("id");
    let members = app
        .store
        .group_details(room)
        .await
        .expect("read")
        .expect("room")
        .members;
    assert!(
        members.iter().any(|(m, _)| m.id == id),
        "in the admins' room"
    );
}

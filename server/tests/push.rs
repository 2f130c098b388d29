//! Web Push end to end, on both engines: the real server sends to `renkei-testbed`'s push
//! service over HTTPS, which verifies the VAPID JWT and decrypts each payload with the
//! subscription's private key — so these tests read exactly what Google's or Apple's push
//! service would, and check that it holds no patient datum.

mod common;

use std::time::Duration;

use common::{code, Api, Backend, Client, TestApp, WAIT};
use renkei::store::DeliveryState;
use renkei_domain::clock::Clock;
use renkei_protocol::ClientMessage;
use renkei_testbed::{Behaviour, OwnPush, PushSubscription, Received};
use serde_json::{json, Value};

/// A server that sends pushes to `push`, on a clock the test holds.
async fn spawn(backend: Backend, push: &OwnPush) -> TestApp {
    TestApp::spawn_with(backend, |config| {
        let ca = config.data_dir.join("push-ca.pem");
        std::fs::write(&ca, push.certificate_pem()).expect("write the CA");
        config.notify.push_ca_file = Some(ca);
        config.notify.push_hosts = vec![push.host()];
        config.notify.tick_ms = 20;
        config.notify.push_timeout_seconds = 2;
        config.clock = Clock::manual(renkei_domain::clock::now_ms());
    })
    .await
}

/// Subscribes `api`'s session to a new subscription of the push service; its id there.
async fn subscribe(api: &Api, push: &OwnPush) -> PushSubscription {
    let (_, key) = api.get("/api/v1/push/key").await;
    let subscription = push
        .subscribe_for(key["public_key"].as_str().expect("key"))
        .expect("subscription");
    let (status, body) = api
        .post("/api/v1/push/subscriptions", body(&subscription))
        .await;
    assert_eq!(status, 201, "{body}");
    subscription
}

fn body(subscription: &PushSubscription) -> Value {
    json!({
        "endpoint": subscription.endpoint,
        "p256dh": subscription.p256dh,
        "auth": subscription.auth,
    })
}

/// Waits until every committed event was looked at and no push is due.
async fn settled(app: &TestApp) {
    for _ in 0..400 {
        let now = app.config.clock.now();
        let backlog = app.store.notice_backlog(1).await.expect("backlog");
        let due = deliveries(app)
            .await
            .iter()
            .any(|d| d.outcome.is_none() && d.due_at <= now);
        if backlog.is_empty() && !due {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("notifications did not settle");
}

async fn deliveries(app: &TestApp) -> Vec<DeliveryState> {
    app.store.push_deliveries().await.expect("deliveries")
}

/// The pushes the service accepted for `subscription`.
fn accepted(push: &OwnPush, subscription: &PushSubscription) -> Vec<Received> {
    push.received()
        .into_iter()
        .filter(|r| r.subscription == Some(subscription.id) && r.status == 201)
        .collect()
}

fn payload(received: &Received) -> Value {
    let bytes = received.payload.as_ref().expect("decrypted");
    serde_json::from_slice(bytes).expect("JSON payload")
}

/// A member away from the page gets a push that says only "a post, in group G": the push
/// service reads no text, name or patient; VAPID names this installation; the author and
/// non-members get nothing; a second post within the window brings no second push, and a
/// mention breaks through it.
async fn an_absent_member_gets_a_content_free_push(backend: Backend) {
    let push = OwnPush::start().await.expect("push service");
    let app = spawn(backend, &push).await;
    let f = &app.fixture;
    let bob = subscribe(&app.api(f.bob).await, &push).await;
    let alice_sub = subscribe(&app.api(f.alice).await, &push).await;
    let carol = subscribe(&app.api(f.carol).await, &push).await;
    let mut alice = app.client(f.alice).await;
    let text = "山田 太郎さん 血圧 182/104、SpO2 91%。至急ご確認ください";
    let seq = alice.post_acked(f.patient_group, "p1", text).await;

    let received = push.wait_for(1, WAIT).await;
    settled(&app).await;
    let to_bob = accepted(&push, &bob);
    assert_eq!(to_bob.len(), 1, "one push: {received:?}");
    let first = &to_bob[0];
    assert_eq!(first.refused, None);
    let vapid = first.vapid.as_ref().expect("VAPID verified");
    let (_, key) = app.api(f.bob).await.get("/api/v1/push/key").await;
    assert_eq!(vapid.public_key, key["public_key"].as_str().unwrap());
    assert_eq!(vapid.aud, push.origin());
    assert_eq!(first.content_encoding.as_deref(), Some("aes128gcm"));
    assert_eq!(first.urgency.as_deref(), Some("normal"));
    assert_eq!(first.topic, Some(format!("group-{}", f.patient_group)));
    assert!(first.ttl.is_some_and(|ttl| ttl > 0));
    let sent = payload(first);
    assert_eq!(sent["kind"], "post");
    assert_eq!(sent["group"], f.patient_group);
    assert!(sent["id"].is_i64());
    assert_eq!(sent.as_object().map(|o| o.len()), Some(3), "{sent}");
    let plain = String::from_utf8_lossy(first.payload.as_ref().unwrap()).to_string();
    for secret in [text, "山田", "太郎", "血圧", "アリス", "alice", "bob"] {
        assert!(!plain.contains(secret), "{secret:?} in {plain}");
    }
    assert!(accepted(&push, &alice_sub).is_empty(), "the author");
    assert!(accepted(&push, &carol).is_empty(), "not a member");
    assert!(seq > 0);

    // Within the window: stored, not pushed again.
    alice.post_acked(f.patient_group, "p2", "追記です").await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 1);
    // A mention breaks through, at high urgency.
    alice
        .post_acked(f.patient_group, "p3", "@医師ボブ 往診をお願いします")
        .await;
    settled(&app).await;
    let to_bob = accepted(&push, &bob);
    assert_eq!(to_bob.len(), 2);
    assert_eq!(payload(&to_bob[1])["kind"], "mention");
    assert_eq!(to_bob[1].urgency.as_deref(), Some("high"));
    // After the window: a plain post is pushed again.
    app.config.clock.advance(61_000);
    alice.post_acked(f.patient_group, "p4", "その後").await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 3);
    // Every request the service got was valid.
    assert!(push.received().iter().all(|r| r.refused.is_none()));
    app.stop().await;
}

/// No push to someone looking at the page, nor for a muted group, nor in quiet hours.
async fn visible_pages_mutes_and_quiet_hours_hold_pushes(backend: Backend) {
    let push = OwnPush::start().await.expect("push service");
    let app = spawn(backend, &push).await;
    let f = &app.fixture;
    let bob_api = app.api(f.bob).await;
    let bob = subscribe(&bob_api, &push).await;
    let mut alice = app.client(f.alice).await;

    // A socket that says nothing counts as a visible page.
    let mut bob_socket = Client::connect(app.addr, &bob_api.token).await;
    wait_visible(&app, f.bob, true).await;
    alice.post_acked(f.patient_group, "v1", "見ています").await;
    settled(&app).await;
    assert!(accepted(&push, &bob).is_empty(), "bob was looking");

    // The page goes to the background: pushed.
    bob_socket
        .send(&ClientMessage::Visibility { visible: false })
        .await;
    wait_visible(&app, f.bob, false).await;
    alice.post_acked(f.patient_group, "v2", "見ていない").await;
    push.wait_for(1, WAIT).await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 1);

    // Muted: nothing.
    app.config.clock.advance(61_000);
    let (status, _) = bob_api
        .put(
            &format!("/api/v1/groups/{}/mute", f.patient_group),
            json!({ "muted": true }),
        )
        .await;
    assert_eq!(status, 204);
    alice.post_acked(f.patient_group, "v3", "ミュート中").await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 1);
    bob_api
        .put(
            &format!("/api/v1/groups/{}/mute", f.patient_group),
            json!({ "muted": false }),
        )
        .await;

    // Quiet hours around now (Japan time): nothing, not even a mention.
    let minute = renkei_domain::clock::japan_minute_of_day(app.config.clock.now());
    let at = |m: i32| {
        format!(
            "{:02}:{:02}",
            m.rem_euclid(1440) / 60,
            m.rem_euclid(1440) % 60
        )
    };
    let (status, settings) = bob_api
        .put(
            "/api/v1/notifications/settings",
            json!({ "push": true, "email": true,
                    "quiet_hours": { "start": at(minute - 60), "end": at(minute + 60) } }),
        )
        .await;
    assert_eq!(status, 200, "{settings}");
    alice
        .post_acked(f.patient_group, "v4", "@医師ボブ 夜間")
        .await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 1);

    // Push off: nothing either; back on, outside quiet hours: pushed.
    bob_api
        .put(
            "/api/v1/notifications/settings",
            json!({ "push": false, "email": true, "quiet_hours": null }),
        )
        .await;
    alice.post_acked(f.patient_group, "v5", "オフ").await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 1);
    bob_api
        .put(
            "/api/v1/notifications/settings",
            json!({ "push": true, "email": true }),
        )
        .await;
    alice.post_acked(f.patient_group, "v6", "オン").await;
    settled(&app).await;
    assert_eq!(accepted(&push, &bob).len(), 2);
    drop(bob_socket);
    app.stop().await;
}

/// Waits until the cluster's presence says whether `user` has a visible page.
async fn wait_visible(app: &TestApp, user: i64, visible: bool) {
    for _ in 0..400 {
        let now = app.config.clock.now();
        let users = app.store.visible_users(now).await.expect("presence");
        if users.contains(&user) == visible {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("presence of {user} never became {visible}");
}

/// Subscriptions end with their session: logout, password change (the other sessions),
/// a ban. Refused: endpoints outside the allowlist, plain http, malformed keys.
async fn subscriptions_end_with_the_session(backend: Backend) {
    let push = OwnPush::start().await.expect("push service");
    let app = spawn(backend, &push).await;
    let f = &app.fixture;
    let live = |app: &TestApp| {
        let store = app.store.clone();
        let now = app.config.clock.now();
        async move { store.live_subscriptions(f.bob, now, 0).await.expect("subs") }
    };

    let first = app.api(f.bob).await;
    subscribe(&first, &push).await;
    assert_eq!(live(&app).await.len(), 1);
    assert_eq!(common::logout(app.addr, &first.token).await.status(), 204);
    assert!(live(&app).await.is_empty(), "logout");

    let other = app.api(f.bob).await;
    subscribe(&other, &push).await;
    let current = app.api(f.bob).await;
    let kept = subscribe(&current, &push).await;
    let (status, body) = current
        .put(
            "/api/v1/session/password",
            json!({ "current": common::PASSWORD, "new": "a new long passphrase 42!" }),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(
        live(&app).await.len(),
        1,
        "only the changing session's stays"
    );
    let (_, settings) = current.get("/api/v1/notifications/settings").await;
    assert_eq!(settings["push_subscriptions"], 1);
    // The same endpoint again is the same subscription.
    let (_, again) = current
        .post("/api/v1/push/subscriptions", body_of(&kept))
        .await;
    assert_eq!(live(&app).await, vec![again["id"].as_i64().unwrap()]);

    let (status, body) = app
        .api(f.adam)
        .await
        .post(
            &format!("/api/v1/users/{}/ban", f.bob),
            json!({ "reason": "端末紛失" }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(live(&app).await.is_empty(), "ban");

    // Refusals, with the code that says why.
    let carol = app.api(f.carol).await;
    let good = push.subscribe();
    for (endpoint, expected) in [
        (
            "https://evil.example.jp/push/1".to_string(),
            "push_host_not_allowed",
        ),
        (
            "https://169.254.169.254/latest".to_string(),
            "push_host_not_allowed",
        ),
        (
            good.endpoint.replace("https://", "http://"),
            "push_host_not_allowed",
        ),
        ("no url at all".to_string(), "invalid_push_subscription"),
    ] {
        let (status, body) = carol
            .post(
                "/api/v1/push/subscriptions",
                json!({ "endpoint": endpoint, "p256dh": good.p256dh, "auth": good.auth }),
            )
            .await;
        assert_eq!((status, code(&body)), (400, expected), "{endpoint}");
    }
    let (status, body) = carol
        .post(
            "/api/v1/push/subscriptions",
            json!({ "endpoint": good.endpoint, "p256dh": "AAAA", "auth": good.auth }),
        )
        .await;
    assert_eq!((status, code(&body)), (400, "invalid_push_subscription"));
    let (status, _) = carol
        .post(
            "/api/v1/push/subscriptions",
            json!({ "endpoint": good.endpoint }),
        )
        .await;
    assert_eq!(status, 400);
    // Nobody removes another's subscription.
    let (status, _) = carol
        .delete(&format!("/api/v1/push/subscriptions/{}", again["id"]))
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

fn body_of(subscription: &PushSubscription) -> Value {
    body(subscription)
}

/// What the push service answers decides what happens next: 410 ends the subscription,
/// 429 waits at least its Retry-After, 500 backs off, 400 gives up and is recorded.
async fn the_push_services_answers_are_honoured(backend: Backend) {
    let push = OwnPush::start().await.expect("push service");
    let app = spawn(backend, &push).await;
    let f = &app.fixture;
    let bob = subscribe(&app.api(f.bob).await, &push).await;
    let mut alice = app.client(f.alice).await;
    let clock = app.config.clock.clone();

    // 429 with Retry-After: 30 s — longer than the first backoff (5 s).
    push.set_behaviour(
        bob.id,
        Behaviour::TooMany {
            retry_after_seconds: 30,
            times: 1,
        },
    )
    .expect("behaviour");
    alice.post_acked(f.patient_group, "r1", "一件目").await;
    push.wait_for(1, WAIT).await;
    let waiting = wait_delivery(&app, |d| d.detail.is_some() && d.outcome.is_none()).await;
    assert_eq!(waiting.due_at, clock.now() + 30_000, "{waiting:?}");
    assert_eq!(waiting.detail.as_deref(), Some("status 429"));
    clock.advance(29_000);
    settled(&app).await;
    assert_eq!(push.received().len(), 1, "not before Retry-After");
    clock.advance(1_000);
    push.wait_for(2, WAIT).await;
    let done = wait_delivery(&app, |d| d.id == waiting.id && d.outcome.is_some()).await;
    assert_eq!(done.outcome.as_deref(), Some("sent"));
    let received = push.received();
    assert_eq!(received[1].status, 201);
    assert_eq!(payload(&received[0])["id"], payload(&received[1])["id"]);

    // 500: backed off 5 s.
    clock.advance(61_000);
    push.set_behaviour(bob.id, Behaviour::Fail(500))
        .expect("behaviour");
    alice.post_acked(f.patient_group, "r2", "二件目").await;
    push.wait_for(3, WAIT).await;
    let failing = wait_delivery(&app, |d| d.detail.as_deref() == Some("status 500")).await;
    assert_eq!(failing.due_at, clock.now() + 5_000);

    // 400: given up at once, and recorded.
    push.set_behaviour(bob.id, Behaviour::Fail(400))
        .expect("behaviour");
    clock.advance(5_000);
    push.wait_for(4, WAIT).await;
    let given_up = wait_delivery(&app, |d| d.id == failing.id && d.outcome.is_some()).await;
    assert_eq!(given_up.outcome.as_deref(), Some("gave_up"));
    assert_eq!(given_up.detail.as_deref(), Some("status 400"));

    // 410: the subscription is deleted, with what waited for it.
    clock.advance(61_000);
    push.set_behaviour(bob.id, Behaviour::Gone(410))
        .expect("behaviour");
    alice.post_acked(f.patient_group, "r3", "三件目").await;
    push.wait_for(5, WAIT).await;
    for _ in 0..400 {
        let now = clock.now();
        if app
            .store
            .live_subscriptions(f.bob, now, 0)
            .await
            .unwrap()
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(app
        .store
        .live_subscriptions(f.bob, clock.now(), 0)
        .await
        .unwrap()
        .is_empty());
    clock.advance(61_000);
    alice.post_acked(f.patient_group, "r4", "四件目").await;
    settled(&app).await;
    assert_eq!(
        push.received().len(),
        5,
        "nothing sent to a gone subscription"
    );
    app.stop().await;
}

/// The newest delivery once it matches `ready`.
async fn wait_delivery(app: &TestApp, ready: impl Fn(&DeliveryState) -> bool) -> DeliveryState {
    for _ in 0..400 {
        if let Some(found) = deliveries(app).await.into_iter().rev().find(|d| ready(d)) {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no delivery became ready: {:?}", deliveries(app).await);
}

/// The test button: a push of kind `test` to each device, even in quiet hours.
async fn a_test_notification_reaches_every_device(backend: Backend) {
    let push = OwnPush::start().await.expect("push service");
    let app = spawn(backend, &push).await;
    let f = &app.fixture;
    let phone = app.api(f.bob).await;
    let pc = app.api(f.bob).await;
    subscribe(&phone, &push).await;
    subscribe(&pc, &push).await;
    let (status, queued) = phone.post("/api/v1/notifications/test", json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(queued, json!({ "push": 2, "email": false }));
    let received = push.wait_for(2, WAIT).await;
    assert!(received.iter().all(|r| r.status == 201));
    assert!(received.iter().all(|r| payload(r)["kind"] == "test"));
    app.stop().await;
}

/// A node killed (SIGKILL) while its push is in flight loses nothing: once its claim
/// lapses, another node sends the same notice, which the push service accepts once.
async fn a_killed_node_loses_no_push(backend: Backend) {
    let push = OwnPush::start().await.expect("push service");
    let db = common::TestDb::new(backend).await;
    let store = renkei::store::open(&db.url).await.expect("store");
    let f = common::seed(store.as_ref()).await;
    let ca = db.dir.path().join("push-ca.pem");
    std::fs::write(&ca, push.certificate_pem()).expect("CA");
    let dir = db.dir.path().display().to_string();
    let ca = ca.display().to_string();
    let host = push.host();
    let env = [
        ("RENKEI_DATABASE_URL", db.url.as_str()),
        ("RENKEI_DATA_DIR", dir.as_str()),
        ("RENKEI_PUSH_HOSTS", host.as_str()),
        ("RENKEI_PUSH_CA_FILE", ca.as_str()),
        ("RENKEI_PUSH_TIMEOUT_SECONDS", "1"),
        ("RENKEI_NOTIFY_TICK_MS", "20"),
    ];
    let first = common::Process::start(&env).await;
    let bob = Api::new(first.addr, &common::session(store.as_ref(), f.bob).await);
    let subscription = subscribe(&bob, &push).await;
    push.set_behaviour(subscription.id, Behaviour::Hang)
        .expect("behaviour");
    let alice = common::session(store.as_ref(), f.alice).await;
    let mut client = Client::connect(first.addr, &alice).await;
    client.post_acked(f.patient_group, "k1", "夜間の急変").await;
    let hung = push.wait_for(1, WAIT).await;
    assert_eq!(hung[0].status, 0, "in flight");
    first.signal("KILL");
    drop(client);
    drop(first);

    push.set_behaviour(subscription.id, Behaviour::Accept)
        .expect("behaviour");
    let second = common::Process::start(&env).await;
    let received = push.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(
        received.len(),
        2,
        "sent again after the lease: {received:?}"
    );
    assert_eq!(received[1].status, 201);
    assert_eq!(payload(&received[0])["id"], payload(&received[1])["id"]);
    // Recorded as sent, and not sent a third time.
    for _ in 0..400 {
        let states = store.push_deliveries().await.expect("deliveries");
        if states.iter().all(|d| d.outcome.as_deref() == Some("sent")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let states = store.push_deliveries().await.expect("deliveries");
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].outcome.as_deref(), Some("sent"));
    assert_eq!(states[0].attempts, 2);
    assert_eq!(push.received().len(), 2);
    drop(second);
}

on_both_backends!(
    a_killed_node_loses_no_push,
    an_absent_member_gets_a_content_free_push,
    visible_pages_mutes_and_quiet_hours_hold_pushes,
    subscriptions_end_with_the_session,
    the_push_services_answers_are_honoured,
    a_test_notification_reaches_every_device,
);

//! E-mail notices end to end, on both engines, against a real SMTP server on loopback
//! (`renkei-testbed::OwnSmtp`, aiosmtpd): digests of unread posts on a clock the test
//! moves, invitations, refused addresses shown to the admins, a server that never answers.

mod common;

use std::time::Duration;

use common::{Backend, TestApp, WAIT};
use renkei_domain::clock::Clock;
use renkei_protocol::{ClientMessage, Role, ServerMessage};
use renkei_testbed::{Mail, OwnSmtp, SilentSmtp};
use serde_json::json;

const MINUTE: i64 = 60_000;

async fn spawn(backend: Backend, smtp_url: String) -> TestApp {
    let app = TestApp::spawn_with(backend, |config| {
        config.notify.smtp_url = Some(smtp_url);
        config.notify.mail_from = Some("Renkei <renkei@example.jp>".into());
        config.notify.public_url = Some("https://renkei.example.jp".into());
        config.notify.tick_ms = 20;
        config.clock = Clock::manual(renkei_domain::clock::now_ms());
    })
    .await;
    // The fixture's logins are not addresses; these are.
    for (user, address) in [
        (app.fixture.bob, "bob@example.jp"),
        (app.fixture.carol, "carol@example.jp"),
    ] {
        common::execute(
            &app.db.url,
            &format!("UPDATE users SET login = '{address}' WHERE id = {user}"),
        )
        .await;
    }
    app
}

/// Moves the clock and waits until the digest job has run at the new time.
async fn advance(app: &TestApp, by: i64) {
    let before = app.metric("renkei_digest_runs_total").await;
    app.config.clock.advance(by);
    for _ in 0..500 {
        if app.metric("renkei_digest_runs_total").await > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the digest job did not run");
}

/// Waits until no mail waits to be sent (each is sent, refused, or due later).
async fn mails_settled(app: &TestApp) {
    for _ in 0..500 {
        let now = app.config.clock.now();
        let mails = app.store.mails().await.expect("mails");
        if mails.iter().all(|m| m.outcome.is_some() || m.due_at > now) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("mails did not settle: {:?}", app.store.mails().await);
}

fn to(mails: &[Mail], address: &str) -> Vec<Mail> {
    mails
        .iter()
        .filter(|m| m.to.iter().any(|t| t == address))
        .cloned()
        .collect()
}

/// Unread posts older than 30 minutes bring one digest per 180 minutes, with a number and
/// the server's address only; a post read in time brings none.
async fn unread_posts_bring_a_content_free_digest(backend: Backend) {
    let smtp = OwnSmtp::start().await.expect("SMTP server");
    let app = spawn(backend, smtp.url()).await;
    let f = &app.fixture;
    let mut alice = app.client(f.alice).await;
    let text = "山田 太郎さん 褥瘡が悪化しています";
    alice.post_acked(f.patient_group, "m1", text).await;

    advance(&app, 29 * MINUTE).await;
    mails_settled(&app).await;
    assert!(
        to(&smtp.messages(), "bob@example.jp").is_empty(),
        "too early"
    );

    advance(&app, 2 * MINUTE).await;
    let mails = smtp.wait_for(1, WAIT).await;
    let digest = to(&mails, "bob@example.jp");
    assert_eq!(digest.len(), 1, "{mails:?}");
    let mail = &digest[0];
    assert_eq!(mail.subject, "Renkeiに未読のメッセージが 1 件あります");
    assert!(mail.from.contains("renkei@example.jp"));
    assert!(mail.body.contains("https://renkei.example.jp"));
    for secret in [text, "山田", "褥瘡", "アリス", "テスト在宅クリニック"] {
        assert!(
            !mail.raw.contains(secret) && !mail.body.contains(secret),
            "{secret}"
        );
    }
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);

    // Another unread post: not before the interval is over.
    alice.post_acked(f.patient_group, "m2", "追記").await;
    advance(&app, 31 * MINUTE).await;
    mails_settled(&app).await;
    assert_eq!(to(&smtp.messages(), "bob@example.jp").len(), 1);
    advance(&app, 150 * MINUTE).await;
    mails_settled(&app).await;
    let digests = to(&smtp.messages(), "bob@example.jp");
    assert_eq!(digests.len(), 2);
    assert_eq!(
        digests[1].subject,
        "Renkeiに未読のメッセージが 1 件あります"
    );

    // Read in time: no mail.
    let seq = alice.post_acked(f.patient_group, "m3", "読まれる").await;
    let mut bob = app.client(f.bob).await;
    bob.send(&ClientMessage::Read {
        group: f.patient_group,
        seq,
    })
    .await;
    wait_read(&app, f.bob, f.patient_group, seq).await;
    advance(&app, 181 * MINUTE).await;
    mails_settled(&app).await;
    assert_eq!(to(&smtp.messages(), "bob@example.jp").len(), 2);

    // Off in the settings: none either.
    let bob_api = app.api(f.bob).await;
    let (_, settings) = bob_api.get("/api/v1/notifications/settings").await;
    assert_eq!(settings["email_available"], true);
    assert_eq!(settings["email_address"], "bob@example.jp");
    bob_api
        .put(
            "/api/v1/notifications/settings",
            json!({ "push": true, "email": false }),
        )
        .await;
    alice.post_acked(f.patient_group, "m4", "メールなし").await;
    advance(&app, 200 * MINUTE).await;
    mails_settled(&app).await;
    assert_eq!(to(&smtp.messages(), "bob@example.jp").len(), 2);
    app.stop().await;
}

async fn wait_read(app: &TestApp, user: i64, group: i64, seq: i64) {
    for _ in 0..500 {
        let states = app
            .store
            .read_states(user, Some(group))
            .await
            .expect("read");
        if states.iter().any(|s| s.read_seq >= seq) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the read position did not move");
}

/// An invitation waiting for someone's answer mails them; an address the mail server
/// refuses is marked, and the facility's admins see it in the staff list.
async fn invitations_mail_and_refusals_reach_the_admins(backend: Backend) {
    let smtp = OwnSmtp::start_refusing(&["carol@example.jp"])
        .await
        .expect("SMTP server");
    let app = spawn(backend, smtp.url()).await;
    let f = &app.fixture;
    let other = app.facility("みなと薬局").await;
    let erin = app.user(Some(other), "erin@example.jp", Role::Staff).await;
    let adam = app.api(f.adam).await;
    for invitee in [erin, f.carol] {
        let (status, body) = adam
            .post(
                &format!("/api/v1/groups/{}/invitations", f.patient_group),
                json!({ "user": invitee }),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let mails = smtp.wait_for(1, WAIT).await;
    let invited = to(&mails, "erin@example.jp");
    assert_eq!(invited.len(), 1, "{mails:?}");
    assert_eq!(invited[0].subject, "Renkeiでグループへの招待があります");
    assert!(!invited[0].raw.contains("山田"), "no patient in the mail");

    mails_settled(&app).await;
    let (_, staff) = adam
        .get(&format!("/api/v1/facilities/{}/users", f.facility))
        .await;
    let carol = staff
        .as_array()
        .expect("staff")
        .iter()
        .find(|u| u["id"] == f.carol)
        .expect("carol")
        .clone();
    assert_eq!(carol["reachable"]["bounced"], true, "{carol}");
    assert_eq!(carol["reachable"]["email"], false);
    let bob = staff
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == f.bob)
        .unwrap()
        .clone();
    assert_eq!(
        bob["reachable"],
        json!({ "push": 0, "email": true, "bounced": false })
    );
    // Her own settings say so too.
    let (_, settings) = app
        .api(f.carol)
        .await
        .get("/api/v1/notifications/settings")
        .await;
    assert_eq!(settings["email_bounced"], true);
    app.stop().await;
}

/// A mail server that accepts connections and never answers holds nothing up: posts are
/// acknowledged and the API answers while the mail waits for its timeout.
async fn a_silent_mail_server_blocks_nothing(backend: Backend) {
    let smtp = SilentSmtp::start().await.expect("silent server");
    let app = spawn(backend, smtp.url()).await;
    let f = &app.fixture;
    let bob = app.api(f.bob).await;
    let (status, queued) = bob.post("/api/v1/notifications/test", json!({})).await;
    assert_eq!(status, 202);
    assert_eq!(queued["email"], true);
    let mut alice = app.client(f.alice).await;
    for i in 0..20 {
        tokio::time::timeout(
            WAIT,
            alice.post_acked(f.patient_group, &format!("s{i}"), "投稿"),
        )
        .await
        .expect("acknowledged while the mail server hangs");
    }
    let (status, _) = bob.get("/api/v1/notifications/settings").await;
    assert_eq!(status, 200);
    app.stop().await;
}

/// A facility's application (様式1) reaches the operators at once: a notice on their open
/// page and a content-free mail. Nobody else hears of it.
async fn an_application_tells_the_operators(backend: Backend) {
    let smtp = OwnSmtp::start().await.expect("SMTP server");
    let app = spawn(backend, smtp.url()).await;
    let operator = app.user(None, "city@example.jp", Role::Operator).await;
    let mut page = app.client(operator).await;
    let (status, applied) = app
        .anonymous()
        .post(
            "/api/v1/facilities/applications",
            json!({
                "name": "ひまわり訪問看護ステーション",
                "kind": "visiting_nurse_station",
                "address": "市内 2-3-4",
                "contact": {"name": "窓口 一子", "email": "info@himawari.example.jp", "phone": "000"},
                "admins": [{"name": "管理 二子", "email": "admin@himawari.example.jp", "profession": "nurse"}],
                "pledged": true
            }),
        )
        .await;
    assert_eq!(status, 201, "{applied}");
    let id = applied["id"].as_i64().expect("id");
    let mut told = false;
    for _ in 0..50 {
        if let ServerMessage::FacilityApplied { facility } = page.recv().await {
            assert_eq!(facility, id);
            told = true;
            break;
        }
    }
    assert!(told, "the operator's open page is told");

    let mails = smtp.wait_for(1, WAIT).await;
    let mail = to(&mails, "city@example.jp");
    assert_eq!(mail.len(), 1, "{mails:?}");
    assert_eq!(mail[0].subject, "Renkeiに新しい利用申請が届きました");
    assert!(mail[0].body.contains("https://renkei.example.jp"));
    for detail in ["ひまわり", "himawari", "管理 二子"] {
        assert!(!mail[0].raw.contains(detail), "{detail}");
    }
    mails_settled(&app).await;
    assert_eq!(smtp.messages().len(), 1, "only the operator");
    app.stop().await;
}

on_both_backends!(
    an_application_tells_the_operators,
    unread_posts_bring_a_content_free_digest,
    invitations_mail_and_refusals_reach_the_admins,
    a_silent_mail_server_blocks_nothing,
);

//! Someone who may not act on a group learns nothing of it by sending ids: which users are
//! its members (bulk and single removal), and which sequence numbers hold a post or a
//! deleted one (deleting, confirming). The policy is asked about the group before anything
//! is looked up, so every id gets the same answer, byte for byte; and it is the answer for
//! a group that does not exist. Deleting and confirming exist only over REST (the
//! WebSocket has no message for them).

mod common;

use common::{Api, Backend, TestApp};
use renkei_protocol::Role;
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    bulk_removal_answers_outsiders_alike,
    event_numbers_cannot_be_probed
);

/// A group id no group has.
const NO_GROUP: i64 = 987_654;
/// A user id no user has.
const NO_USER: i64 = 876_543;

/// Sends a request and returns its status and body exactly as they came.
async fn raw(api: &Api, method: Method, path: &str, body: Option<Value>) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .request(method, format!("http://{}{path}", api.addr))
        .bearer_auth(&api.token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Asserts that every answer is the first one, byte for byte.
fn all_alike(what: &str, answers: &[(String, (u16, String))]) {
    let (first_case, first) = &answers[0];
    for (case, answer) in answers {
        assert_eq!(
            answer, first,
            "{what}: {case} is answered unlike {first_case}"
        );
    }
}

async fn bulk_removal_answers_outsiders_alike(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let other = app.facility("ひまわり訪問看護").await;
    let ben = app
        .api(app.user(Some(other), "ben@example.jp", Role::Staff).await)
        .await;
    let beth = app
        .api(app.user(Some(other), "beth@example.jp", Role::Admin).await)
        .await;
    // alice and bob are members, carol is not, NO_USER is nobody.
    let cases = [
        ("members", vec![f.alice, f.bob]),
        ("a member", vec![f.alice]),
        ("a non-member", vec![f.carol]),
        ("nobody", vec![NO_USER]),
    ];

    // A staff member of another facility may not act on the group at all: one refusal,
    // the same as for a group that does not exist.
    let mut answers = Vec::new();
    for (case, users) in &cases {
        for group in [g, NO_GROUP] {
            let path = format!("/api/v1/groups/{group}/members/remove");
            let answer = raw(&ben, Method::POST, &path, Some(json!({ "users": users }))).await;
            answers.push((format!("{case} of group {group}"), answer));
        }
    }
    assert_eq!(answers[0].1 .0, 403, "{:?}", answers[0]);
    all_alike("a stranger's bulk removal", &answers);
    let mut answers = Vec::new();
    for user in [f.alice, f.carol, NO_USER] {
        for group in [g, NO_GROUP] {
            let path = format!("/api/v1/groups/{group}/members/{user}");
            let answer = raw(&ben, Method::DELETE, &path, None).await;
            answers.push((format!("user {user} of group {group}"), answer));
        }
    }
    all_alike("a stranger's removal", &answers);

    // An admin of another facility may take their own staff out of any group, so the
    // group lets them ask; of others' staff they learn nothing, member or not.
    let mut answers = Vec::new();
    for (case, users) in &cases[1..3] {
        let path = format!("/api/v1/groups/{g}/members/remove");
        let (status, body) = raw(&beth, Method::POST, &path, Some(json!({ "users": users }))).await;
        let body: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["removed"], json!([]), "{case}: {body}");
        let reasons = (status, body["skipped"][0]["reason"].to_string());
        answers.push((case.to_string(), reasons));
    }
    all_alike("another facility's admin's bulk removal", &answers);

    let details = app
        .store
        .group_details(g)
        .await
        .expect("read")
        .expect("group");
    assert_eq!(details.members.len(), 3, "nobody was removed");
    app.stop().await;
}

async fn event_numbers_cannot_be_probed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    let kept = bob.post_acked(g, "b-1", "褥瘡の処置をしました").await;
    let gone = bob.post_acked(g, "b-2", "消す投稿").await;
    app.delete_post(f.bob, g, gone).await;
    let never = gone + 100;
    let other = app.facility("ひまわり訪問看護").await;
    let ben = app
        .api(app.user(Some(other), "ben@example.jp", Role::Staff).await)
        .await;
    let beth = app
        .api(app.user(Some(other), "beth@example.jp", Role::Admin).await)
        .await;
    let reason = json!({ "reason": "確認のため" });

    for (who, api) in [("staff of another facility", &ben), ("their admin", &beth)] {
        for (verb, body) in [("delete", Some(reason.clone())), ("confirm", None)] {
            let mut answers = Vec::new();
            for (case, seq) in [
                ("a post", kept),
                ("a deleted post", gone),
                ("nothing", never),
            ] {
                let path = format!("/api/v1/groups/{g}/posts/{seq}/{verb}");
                let answer = raw(api, Method::POST, &path, body.clone()).await;
                answers.push((case.to_string(), answer));
            }
            if who == "staff of another facility" {
                // Nor does the group's existence show.
                let path = format!("/api/v1/groups/{NO_GROUP}/posts/{kept}/{verb}");
                let answer = raw(api, Method::POST, &path, body.clone()).await;
                answers.push(("no such group".into(), answer));
            }
            assert_eq!(answers[0].1 .0, 403, "{who} {verb}: {:?}", answers[0]);
            all_alike(&format!("{who} {verb}"), &answers);
        }
    }

    // The post is untouched, and members still get precise answers.
    let events = bob.sync(g, 0).await;
    assert!(events
        .iter()
        .any(|e| e.seq == kept && matches!(&e.data, renkei_protocol::EventData::Post { .. })));
    let alice = app.api(f.alice).await;
    let confirm = |seq: i64| format!("/api/v1/groups/{g}/posts/{seq}/confirm");
    assert_eq!(alice.post(&confirm(never), json!({})).await.0, 404);
    assert_eq!(alice.post(&confirm(kept), json!({})).await.0, 204);
    let adam = app.api(f.adam).await;
    let delete = |seq: i64| format!("/api/v1/groups/{g}/posts/{seq}/delete");
    assert_eq!(adam.post(&delete(never), reason.clone()).await.0, 404);
    assert_eq!(adam.post(&delete(gone), reason.clone()).await.0, 409);
    app.stop().await;
}

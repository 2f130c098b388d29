//! Search (検索) in Japanese text: any part of a word, full- and half-width forms alike,
//! only in the groups the user may read now.

mod common;

use common::{code, Api, Backend, TestApp};
use reqwest::Method;
use serde_json::Value;

/// The texts of the hits for `q`.
async fn hits(api: &Api, q: &str) -> Vec<String> {
    let path = format!("/api/v1/search?q={}", urlencode(q));
    let (status, body) = api.get(&path).await;
    assert_eq!(status, 200, "search {q:?}: {body}");
    body["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|h| h["text"].as_str().expect("text").to_string())
        .collect()
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Brings the fixture's archived group back, to post in it.
async fn restore(app: &TestApp, group: i64) {
    app.api(app.fixture.adam)
        .await
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{group}/restore"),
            None,
        )
        .await;
}

async fn search_finds_parts_of_japanese_words_where_the_user_may_read(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    restore(&app, f.archived_group).await;
    let mut bob = app.client(f.bob).await;
    let vitals = "血圧１２８／８０、褥瘡の処置を実施";
    bob.post_acked(f.patient_group, "b-1", vitals).await;
    let mut alice = app.client(f.alice).await;
    alice
        .post_acked(f.free_group, "a-1", "ｶﾞｰｾﾞ交換 100% 完了")
        .await;
    alice
        .post_acked(f.archived_group, "a-2", "保管前の血圧記録")
        .await;
    let as_alice = app.api(f.alice).await;

    assert_eq!(
        hits(&as_alice, "血圧").await.len(),
        2,
        "a two-character word"
    );
    assert_eq!(hits(&as_alice, "褥").await, vec![vitals], "one character");
    assert_eq!(
        hits(&as_alice, "128/80").await,
        vec![vitals],
        "full width folds"
    );
    assert_eq!(
        hits(&as_alice, "圧1").await,
        vec![vitals],
        "across word parts"
    );
    assert_eq!(
        hits(&as_alice, "ガーゼ").await.len(),
        1,
        "half-width kana fold"
    );
    assert_eq!(hits(&as_alice, "100%").await.len(), 1);
    assert!(
        hits(&as_alice, "%").await.len() == 1,
        "% is a character, not a wildcard"
    );
    assert!(hits(&as_alice, "_").await.is_empty());
    assert!(hits(&as_alice, "往診").await.is_empty());
    // Newest first, with the group named.
    let (_, body) = as_alice
        .get("/api/v1/search?q=%E8%A1%80%E5%9C%A7&limit=1")
        .await;
    assert_eq!(body["hits"][0]["group"], f.archived_group);
    assert_eq!(body["has_more"], true);
    let before = body["hits"][0]["at"].as_i64().expect("at");
    let (_, next) = as_alice
        .get(&format!(
            "/api/v1/search?q=%E8%A1%80%E5%9C%A7&before={before}"
        ))
        .await;
    let older: Vec<&Value> = next["hits"].as_array().expect("hits").iter().collect();
    assert_eq!(older.len(), 1, "the next page holds the older hit: {next}");
    assert_eq!(older[0]["text"], vitals);
    assert!(older[0]["at"].as_i64() < Some(before));

    // Never in others' groups.
    let as_carol = app.api(f.carol).await;
    assert!(hits(&as_carol, "血圧").await.is_empty());
    assert_eq!(hits(&as_carol, "ガーゼ").await.len(), 1);

    // Archived groups while members may read them (the default).
    let admin = app.api(f.adam).await;
    admin
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/archive", f.archived_group),
            None,
        )
        .await;
    assert_eq!(hits(&as_alice, "保管前").await.len(), 1);

    // A deleted post and a group left are out of reach.
    as_alice
        .ok(
            Method::DELETE,
            &format!("/api/v1/groups/{}/members/{}", f.patient_group, f.alice),
            None,
        )
        .await;
    assert_eq!(
        hits(&as_alice, "血圧").await.len(),
        1,
        "only the archived one"
    );
    let as_dave = app.api(f.dave).await;
    assert_eq!(hits(&as_dave, "褥瘡").await.len(), 1);
    app.delete_post(f.bob, f.patient_group, 1).await;
    assert!(hits(&as_dave, "褥瘡").await.is_empty());

    // Bad input gets a clear answer.
    let (status, body) = as_alice.get("/api/v1/search?q=%20").await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let long = "あ".repeat(101);
    let (status, _) = as_alice
        .get(&format!("/api/v1/search?q={}", urlencode(&long)))
        .await;
    assert_eq!(status, 400);
    let (status, _) = as_alice.get("/api/v1/search").await;
    assert_eq!(status, 400);
    assert_eq!(app.anonymous().get("/api/v1/search?q=a").await.0, 401);
}

async fn archived_groups_are_not_searched_when_closed_to_members(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.archive_readable_by_members = false).await;
    let f = app.fixture.clone();
    restore(&app, f.archived_group).await;
    let mut alice = app.client(f.alice).await;
    alice
        .post_acked(f.archived_group, "a-1", "保管前の記録")
        .await;
    let as_alice = app.api(f.alice).await;
    assert_eq!(hits(&as_alice, "保管前").await.len(), 1);
    app.api(f.adam)
        .await
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/archive", f.archived_group),
            None,
        )
        .await;
    assert!(hits(&as_alice, "保管前").await.is_empty());
}

on_both_backends!(
    search_finds_parts_of_japanese_words_where_the_user_may_read,
    archived_groups_are_not_searched_when_closed_to_members
);

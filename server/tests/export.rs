//! Per-patient export (art. 13(16)): the whole timeline with confirmations and tombstones,
//! as JSON and as a self-contained HTML document, for entitled admins only, on record.

mod common;

use common::{code, Backend, TestApp};
use reqwest::Method;

async fn an_owning_admin_exports_a_patient_group(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    let report = bob
        .post_acked(g, "b-1", "褥瘡の処置 <script>alert(1)</script>")
        .await;
    let mut alice = app.client(f.alice).await;
    let mistaken = alice.post_acked(g, "a-1", "別の患者の記録（誤送信）").await;
    let as_alice = app.api(f.alice).await;
    as_alice
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{g}/posts/{report}/confirm"),
            None,
        )
        .await;
    app.delete_post(f.alice, g, mistaken).await;

    let admin = app.api(f.adam).await;
    let export = admin
        .ok(Method::GET, &format!("/api/v1/groups/{g}/export"), None)
        .await;
    assert_eq!(export["group"]["patient"]["name"], "山田 太郎");
    assert_eq!(export["exported_by"]["id"], f.adam);
    let events = export["events"].as_array().expect("events");
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(
        kinds,
        ["post", "deleted_post", "post_confirmed", "post_deleted"],
        "every event from the first, the deleted post as a tombstone"
    );
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4]);
    assert_eq!(events[1]["data"]["author"]["id"], f.alice);
    assert!(events[1]["data"].get("text").is_none(), "the text is gone");

    let response = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/groups/{g}/export?format=html")))
        .bearer_auth(&admin.token)
        .send()
        .await
        .expect("export");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("content-disposition").starts_with("attachment"));
    assert!(header("content-security-policy").contains("default-src 'self'"));
    let html = response.text().await.expect("html");
    assert!(html.contains("山田 太郎"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains("<script"), "nothing to run");
    assert!(html.contains("確認しました"));
    assert!(html.contains("削除された投稿"));
    assert!(!html.contains("誤送信"), "the deleted text is not exported");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing to fetch"
    );

    // Members who are not its admins, and admins of other facilities, may not.
    let (status, body) = as_alice.get(&format!("/api/v1/groups/{g}/export")).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let stranger = app
        .user(None, "operator@example.jp", renkei_protocol::Role::Operator)
        .await;
    let (status, _) = app
        .api(stranger)
        .await
        .get(&format!("/api/v1/groups/{g}/export"))
        .await;
    assert_eq!(status, 200, "the city operator may");
    let (status, body) = admin
        .get(&format!("/api/v1/groups/{g}/export?format=pdf"))
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    let (status, body) = admin.get("/api/v1/groups/999999/export").await;
    assert_eq!(
        (status, code(&body)),
        (403, "not_member"),
        "no probing of group ids"
    );

    // On record: who exported which group, and the refusal.
    let exports = app.audit_records("GET /api/v1/groups/{id}/export").await;
    assert!(exports
        .iter()
        .any(|r| r["actor"] == f.adam && r["result"] == "200"));
    assert!(exports
        .iter()
        .any(|r| r["actor"] == f.alice && r["result"] == "403"));
}

on_both_backends!(an_owning_admin_exports_a_patient_group);

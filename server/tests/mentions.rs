//! Mentions (`@name`): the named member is told on every device and finds the post in
//! their list, as long as they may read its group and the post is not deleted.

mod common;

use common::{Backend, Client, TestApp};
use renkei_protocol::api::MentionView;
use renkei_protocol::ServerMessage;
use reqwest::Method;

async fn mention(client: &mut Client) -> MentionView {
    loop {
        if let ServerMessage::Mention(mention) = client.recv().await {
            return mention;
        }
    }
}

async fn listed(app: &TestApp, user: i64) -> Vec<String> {
    let list = app
        .api(user)
        .await
        .ok(Method::GET, "/api/v1/mentions", None)
        .await;
    list.as_array()
        .expect("list")
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_string())
        .collect()
}

async fn a_mention_reaches_the_named_member(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut phone = app.client(f.alice).await;
    let mut desk = app.client(f.alice).await;
    let mut bob = app.client(f.bob).await;
    let ask = "@看護師 アリス 血圧の記録をお願いします";
    let seq = bob.post_acked(g, "b-1", ask).await;
    for device in [&mut phone, &mut desk] {
        let told = mention(device).await;
        assert_eq!((told.group, told.seq, told.author.id), (g, seq, f.bob));
        assert_eq!(told.text, ask);
    }
    // Without the space, and with a full-width ＠; several at once; never the author.
    bob.post_acked(g, "b-2", "＠ケアマネデイブ ＠医師 ボブ 明日の調整を")
        .await;
    bob.post_acked(g, "b-3", "看護師 アリス さんへ（@なし）")
        .await;
    bob.post_acked(g, "b-4", "@看護師 アリス 追加の確認").await;
    assert_eq!(
        listed(&app, f.alice).await,
        ["@看護師 アリス 追加の確認", ask]
    );
    assert_eq!(listed(&app, f.dave).await.len(), 1);
    assert!(
        listed(&app, f.bob).await.is_empty(),
        "naming oneself is no mention"
    );
    // Carol is not in the group: her name there mentions nobody.
    bob.post_acked(g, "b-5", "@ヘルパー キャロル").await;
    assert!(listed(&app, f.carol).await.is_empty());

    // A deleted post leaves the list; so does a group left.
    app.delete_post(f.bob, g, seq).await;
    assert_eq!(listed(&app, f.alice).await, ["@看護師 アリス 追加の確認"]);
    app.api(f.alice)
        .await
        .ok(
            Method::DELETE,
            &format!("/api/v1/groups/{g}/members/{}", f.alice),
            None,
        )
        .await;
    assert!(listed(&app, f.alice).await.is_empty());
}

on_both_backends!(a_mention_reaches_the_named_member);

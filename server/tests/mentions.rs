//! Mentions (`@name`): the named member is told on every device and finds the post in
//! their list, as long as they may read its group and the post is not deleted.

mod common;

use common::{Backend, Client, TestApp};
use renkei_protocol::api::MentionView;
use renkei_protocol::{ClientMessage, ServerMessage};
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

/// Mentions received while logged out count at the next connection: the welcome gives each
/// group's mentions in posts after the read position, deleted posts left out.
async fn mentions_while_away_are_counted_in_the_welcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let unread_mentions = |client: &Client| {
        client
            .welcome
            .groups
            .iter()
            .find(|s| s.id == g)
            .map(|s| s.unread_mentions)
    };
    let mut bob = app.client(f.bob).await;
    let first = bob
        .post_acked(g, "w-1", "@看護師 アリス 午後の訪問で")
        .await;
    bob.post_acked(g, "w-2", "申し送りです").await;
    let second = bob.post_acked(g, "w-3", "@看護師アリス 追加です").await;
    bob.post_acked(g, "w-4", "@看護師 アリス 取り消します")
        .await;
    let last = bob.post_acked(g, "w-5", "念のため").await;
    app.delete_post(f.bob, g, last - 1).await;

    let mut alice = app.client(f.alice).await;
    assert_eq!(
        unread_mentions(&alice),
        Some(2),
        "two live mentions, one deleted"
    );
    assert_eq!(
        unread_mentions(&bob),
        Some(0),
        "the author is not mentioned"
    );
    // Read past the first: one is left; read to the end: none.
    alice
        .send(&ClientMessage::Read {
            group: g,
            seq: first,
        })
        .await;
    wait_read(&app, f.alice, g, first).await;
    assert_eq!(unread_mentions(&app.client(f.alice).await), Some(1));
    alice
        .send(&ClientMessage::Read {
            group: g,
            seq: second,
        })
        .await;
    wait_read(&app, f.alice, g, second).await;
    assert_eq!(unread_mentions(&app.client(f.alice).await), Some(0));
}

/// Waits until the store holds `user`'s read position `seq` in `group`.
async fn wait_read(app: &TestApp, user: i64, group: i64, seq: i64) {
    for _ in 0..500 {
        let states = app
            .store
            .read_states(user, Some(group))
            .await
            .expect("read");
        if states.first().is_some_and(|s| s.read_seq >= seq) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the read position did not reach {seq}");
}

on_both_backends!(
    a_mention_reaches_the_named_member,
    mentions_while_away_are_counted_in_the_welcome,
);

//! Who has seen a post: read positions (既読) and unread counts across devices, nodes and
//! reconnects, receipts to the group, and 確認しました confirmations in the sequence.

mod common;

use common::{code, Backend, Client, TestApp};
use renkei_protocol::{ClientMessage, EventData, GroupId, Receipt, Seq, ServerMessage, UserId};
use reqwest::Method;

/// Reads until a message `pick` accepts, skipping the others.
async fn until<T>(client: &mut Client, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
    loop {
        if let Some(found) = pick(client.recv().await) {
            return found;
        }
    }
}

async fn read(client: &mut Client, group: GroupId, seq: Seq) {
    client.send(&ClientMessage::Read { group, seq }).await;
}

/// The next read position notice: (seq, unread, last_seq).
async fn position(client: &mut Client) -> (Seq, u32, Seq) {
    until(client, |m| match m {
        ServerMessage::ReadPosition {
            seq,
            unread,
            last_seq,
            ..
        } => Some((seq, unread, last_seq)),
        _ => None,
    })
    .await
}

async fn receipt(client: &mut Client) -> Receipt {
    until(client, |m| match m {
        ServerMessage::Receipt(receipt) => Some(receipt),
        _ => None,
    })
    .await
}

/// The welcome's (read_seq, unread, last_seq) of a group.
fn listed(client: &Client, group: GroupId) -> (Seq, u32, Seq) {
    let summary = client
        .welcome
        .groups
        .iter()
        .find(|g| g.id == group)
        .expect("group listed");
    (summary.read_seq, summary.unread, summary.last_seq)
}

async fn unread_counts_follow_the_reader_across_devices(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    for i in 1..=3 {
        bob.post_acked(g, &format!("b-{i}"), &format!("訪問記録 {i}"))
            .await;
    }
    // Alice's own post is never unread for her.
    let mut phone = app.client(f.alice).await;
    phone.post_acked(g, "a-1", "承知しました").await;
    let mut desk = app.client(f.alice).await;
    assert_eq!(listed(&desk, g), (0, 3, 4), "three of bob's posts unread");
    let mut dave = app.client(f.dave).await;

    // Read on the phone: both devices learn it, the group gets a receipt.
    read(&mut phone, g, 2).await;
    assert_eq!(position(&mut phone).await, (2, 1, 4));
    assert_eq!(position(&mut desk).await, (2, 1, 4));
    let seen = receipt(&mut dave).await;
    assert_eq!((seen.group, seen.user, seen.seq), (g, f.alice, 2));
    let seen = receipt(&mut bob).await;
    assert_eq!((seen.user, seen.seq), (f.alice, 2));

    // A position never moves back, and a step back tells nobody anything.
    read(&mut desk, g, 1).await;
    read(&mut desk, g, 4).await;
    assert_eq!(
        position(&mut desk).await,
        (4, 0, 4),
        "the step back was silent"
    );
    assert_eq!(position(&mut phone).await, (4, 0, 4));

    // A new post by bob is counted by the client after `last_seq`; a reconnect counts it.
    bob.post_acked(g, "b-4", "追加の記録").await;
    let laptop = app.client(f.alice).await;
    assert_eq!(listed(&laptop, g), (4, 1, 5));
    // Deleted posts are not unread.
    app.delete_post(f.bob, g, 5).await;
    let laptop = app.client(f.alice).await;
    assert_eq!(listed(&laptop, g), (4, 0, 6));

    // Every member's position, for the 既読 of each post; members only.
    let reads = app
        .api(f.dave)
        .await
        .ok(Method::GET, &format!("/api/v1/groups/{g}/reads"), None)
        .await;
    let position_of = |user: UserId| {
        reads["members"]
            .as_array()
            .expect("members")
            .iter()
            .find(|m| m["user"]["id"] == user)
            .map(|m| m["seq"].as_i64().expect("seq"))
    };
    assert_eq!(position_of(f.alice), Some(4));
    assert_eq!(position_of(f.bob), Some(0));
    assert_eq!(position_of(f.carol), None, "not a member");
    let (status, body) = app
        .api(f.carol)
        .await
        .get(&format!("/api/v1/groups/{g}/reads"))
        .await;
    assert_eq!((status, code(&body)), (403, "not_member"));
}

async fn confirmations_join_the_sequence(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    bob.sync(g, 0).await;
    let report = bob
        .post_acked(g, "b-1", "褥瘡が悪化、往診お願いします")
        .await;
    let confirm = |user: i64, seq: Seq| {
        let app = &app;
        async move {
            app.api(user)
                .await
                .post(
                    &format!("/api/v1/groups/{g}/posts/{seq}/confirm"),
                    serde_json::json!({}),
                )
                .await
        }
    };
    assert_eq!(confirm(f.alice, report).await.0, 204);
    // Live, to every member, as the group's next event.
    let event = until(&mut bob, |m| match m {
        ServerMessage::Event(e) if e.seq > report => Some(e),
        _ => None,
    })
    .await;
    match event.data {
        EventData::PostConfirmed { seq, by } => assert_eq!((seq, by.id), (report, f.alice)),
        other => panic!("expected a confirmation, got {other:?}"),
    }
    let (status, body) = confirm(f.alice, report).await;
    assert_eq!((status, code(&body)), (409, "conflict"), "once per member");
    let (status, body) = confirm(f.bob, report).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "not one's own");
    let (status, body) = confirm(f.carol, report).await;
    assert_eq!((status, code(&body)), (403, "not_member"));
    let (status, _) = confirm(f.dave, event.seq).await;
    assert_eq!(status, 404, "a confirmation is not a post");
    let (status, _) = confirm(f.dave, 99).await;
    assert_eq!(status, 404);

    // A member catching up later sees it in place.
    let mut dave = app.client(f.dave).await;
    let events = dave.sync(g, 0).await;
    assert!(events.iter().any(|e| matches!(
        &e.data,
        EventData::PostConfirmed { seq, by } if *seq == report && by.id == f.alice
    )));
    // Deleted posts and archived groups take no confirmation.
    app.delete_post(f.bob, g, report).await;
    assert_eq!(confirm(f.dave, report).await.0, 404);
    let later = bob.post_acked(g, "b-2", "往診済み").await;
    app.api(f.adam)
        .await
        .ok(Method::POST, &format!("/api/v1/groups/{g}/archive"), None)
        .await;
    let (status, body) = confirm(f.dave, later).await;
    assert_eq!((status, code(&body)), (403, "group_archived"));
}

on_both_backends!(
    unread_counts_follow_the_reader_across_devices,
    confirmations_join_the_sequence
);

/// Two nodes over Redis: the reader's other device and the group's members on the other
/// node hear of a read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_reach_devices_and_members_on_other_nodes() {
    let (redis, prefix) = common::redis();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis);
        c.redis_prefix = prefix;
    })
    .await;
    let other = app.another_node().await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    let seq = bob.post_acked(g, "b-1", "夜間の発熱なし").await;
    let mut phone = app.client(f.alice).await;
    let mut desk = Client::connect(other.addr, &app.token(f.alice).await).await;
    let mut dave = Client::connect(other.addr, &app.token(f.dave).await).await;
    read(&mut phone, g, seq).await;
    assert_eq!(position(&mut desk).await, (seq, 0, seq));
    let seen = receipt(&mut dave).await;
    assert_eq!((seen.user, seen.seq), (f.alice, seq));
    other.stop().await;
}

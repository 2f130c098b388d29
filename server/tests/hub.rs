//! Black-box tests of the messaging core: the real server on an ephemeral port, real
//! WebSockets, on SQLite and on PostgreSQL.

mod common;

use common::{Backend, Client, TestApp};
use renkei_protocol::{close, ClientMessage, ErrorCode, EventData, ServerMessage};

on_both_backends!(
    members_see_posts_live_and_outsiders_nothing,
    retried_client_id_is_stored_once,
    catch_up_during_concurrent_posts_has_no_gap_and_no_duplicate,
    history_pages_backwards,
    archived_group_takes_no_posts,
    ping_is_answered_with_its_number_and_counts_as_a_frame,
);

async fn members_see_posts_live_and_outsiders_nothing(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    let mut bob_phone = app.client(f.bob).await;
    let mut bob_pc = app.client(f.bob).await;
    let mut carol = app.client(f.carol).await;

    let listed: Vec<_> = bob_phone.welcome.groups.iter().map(|g| g.id).collect();
    assert_eq!(
        listed,
        [f.patient_group],
        "bob is in the patient group only"
    );
    assert!(!carol.welcome.groups.iter().any(|g| g.id == f.patient_group));

    for client in [&mut alice, &mut bob_phone, &mut bob_pc] {
        assert!(client.sync(f.patient_group, 0).await.is_empty());
    }
    carol.sync(f.free_group, 0).await;

    let seq = alice
        .post_acked(f.patient_group, "a-1", "血圧 128/80、SpO2 97%")
        .await;
    assert_eq!(seq, 1);
    for bob in [&mut bob_phone, &mut bob_pc] {
        let event = bob.next_event().await;
        assert_eq!((event.group, event.seq), (f.patient_group, 1));
        let EventData::Post {
            author,
            text,
            client_id,
            file: None,
        } = event.data
        else {
            panic!("a post");
        };
        assert_eq!(
            (author.id, text.as_str(), client_id.as_str()),
            (f.alice, "血圧 128/80、SpO2 97%", "a-1")
        );
        assert_eq!(
            author.facility.map(|fac| fac.name).as_deref(),
            Some("テスト在宅クリニック")
        );
    }

    // The outsider can neither post, sync nor page into the group, and got nothing of it:
    // a leaked event would have been queued before these answers.
    carol.post(f.patient_group, "c-1", "覗き見").await;
    let refused = carol.next_error().await;
    assert_eq!(
        (refused.code, refused.client_id.as_deref()),
        (ErrorCode::NotMember, Some("c-1"))
    );
    carol
        .send(&ClientMessage::Sync {
            groups: vec![renkei_protocol::SyncCursor {
                group: f.patient_group,
                after: 0,
            }],
        })
        .await;
    assert_eq!(carol.next_error().await.code, ErrorCode::NotMember);
    carol
        .send(&ClientMessage::History {
            group: f.patient_group,
            before: None,
            limit: None,
        })
        .await;
    assert_eq!(carol.next_error().await.code, ErrorCode::NotMember);

    let stored = app
        .store
        .events_after(f.patient_group, 0, i64::MAX, 100)
        .await
        .expect("read");
    assert_eq!(stored.len(), 1, "the refused post was not stored");
    app.stop().await;
}

async fn retried_client_id_is_stored_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    let first = alice
        .post_acked(f.patient_group, "retry-1", "褥瘡の処置をしました")
        .await;
    let again = alice
        .post_acked(f.patient_group, "retry-1", "褥瘡の処置をしました")
        .await;
    assert_eq!(first, again);

    // A retry after a reconnect gets the original ack too.
    drop(alice);
    let mut alice = app.client(f.alice).await;
    assert_eq!(
        alice
            .post_acked(f.patient_group, "retry-1", "褥瘡の処置をしました")
            .await,
        first
    );

    alice.post(f.patient_group, "retry-1", "別の内容").await;
    let conflict = alice.next_error().await;
    assert_eq!(
        (conflict.code, conflict.client_id.as_deref()),
        (ErrorCode::ClientIdConflict, Some("retry-1"))
    );
    alice
        .post(f.free_group, "retry-1", "褥瘡の処置をしました")
        .await;
    assert_eq!(
        alice.next_error().await.code,
        ErrorCode::ClientIdConflict,
        "same id, other group"
    );

    // Another author may use the same id.
    let mut bob = app.client(f.bob).await;
    assert_eq!(
        bob.post_acked(f.patient_group, "retry-1", "確認しました")
            .await,
        first + 1
    );

    let stored = app
        .store
        .events_after(f.patient_group, 0, i64::MAX, 100)
        .await
        .expect("read");
    assert_eq!(stored.len(), 2);
    app.stop().await;
}

async fn catch_up_during_concurrent_posts_has_no_gap_and_no_duplicate(backend: Backend) {
    const TOTAL: i64 = 300;
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut bob = app.client(f.bob).await;
    bob.sync(f.patient_group, 0).await;

    // Alice posts without pause while Bob drops off and comes back.
    let token = app.token(f.alice).await;
    let addr = app.addr;
    let group = f.patient_group;
    let writer = tokio::spawn(async move {
        let mut alice = Client::connect(addr, &token).await;
        for i in 0..TOTAL {
            alice
                .post_acked(group, &format!("p-{i}"), &format!("経過記録 {i}"))
                .await;
        }
    });

    let mut held = 0;
    while held < 20 {
        let event = bob.next_event().await;
        assert_eq!(event.seq, held + 1);
        held = event.seq;
    }
    drop(bob);
    let mut bob = app.client(f.bob).await;
    let mut seen: Vec<i64> = bob
        .sync(f.patient_group, held)
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    while seen.last().copied().unwrap_or(held) < TOTAL {
        seen.push(bob.next_event().await.seq);
    }
    let expected: Vec<i64> = (held + 1..=TOTAL).collect();
    assert_eq!(
        seen, expected,
        "exactly the missed events, in order, then live ones"
    );
    writer.await.expect("writer");
    app.stop().await;
}

async fn history_pages_backwards(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    for i in 1..=7 {
        alice
            .post_acked(f.patient_group, &format!("h-{i}"), &format!("記録 {i}"))
            .await;
    }
    let mut pages = Vec::new();
    let mut before = None;
    loop {
        alice
            .send(&ClientMessage::History {
                group: f.patient_group,
                before,
                limit: Some(3),
            })
            .await;
        let ServerMessage::Page {
            events, has_more, ..
        } = alice.recv().await
        else {
            panic!("expected a page");
        };
        pages.push(events.iter().map(|e| e.seq).collect::<Vec<_>>());
        before = events.first().map(|e| e.seq);
        if !has_more {
            break;
        }
    }
    assert_eq!(pages, [vec![5, 6, 7], vec![2, 3, 4], vec![1]]);
    app.stop().await;
}

async fn archived_group_takes_no_posts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    let archived = alice
        .welcome
        .groups
        .iter()
        .find(|g| g.id == f.archived_group)
        .expect("listed");
    assert!(archived.archived);
    alice.post(f.archived_group, "x-1", "保管後の投稿").await;
    assert_eq!(alice.next_error().await.code, ErrorCode::GroupArchived);
    assert!(
        alice.sync(f.archived_group, 0).await.is_empty(),
        "still readable"
    );
    app.stop().await;
}

/// Every malformed input gets its documented answer, and the server keeps serving: the same
/// socket for answers that are error messages, and everyone else in every case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_inputs_get_documented_answers() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::Message;

    enum Expect {
        Error(ErrorCode),
        Close(u16),
    }
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.limits.max_frame_bytes = 16 * 1024;
        c.limits.max_post_chars = 1000;
    })
    .await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let invalid_utf8 = Message::Frame(Frame::message(
        vec![0x7b, 0xff, 0xfe, 0x7d],
        OpCode::Data(Data::Text),
        true,
    ));
    let cases: Vec<(&str, Message, Expect)> = vec![
        (
            "bad JSON",
            Message::text("{not json"),
            Expect::Error(ErrorCode::InvalidMessage),
        ),
        (
            "unknown type",
            Message::text(r#"{"type":"shout","group":1}"#),
            Expect::Error(ErrorCode::UnknownType),
        ),
        (
            "wrong field type",
            Message::text(r#"{"type":"post","group":"one","client_id":"a","text":"t"}"#),
            Expect::Error(ErrorCode::InvalidMessage),
        ),
        (
            "missing field",
            Message::text(r#"{"type":"post","group":1}"#),
            Expect::Error(ErrorCode::InvalidMessage),
        ),
        (
            "unknown field",
            Message::text(format!(
                r#"{{"type":"post","group":{g},"client_id":"a","text":"t","x":1}}"#
            )),
            Expect::Error(ErrorCode::InvalidMessage),
        ),
        (
            "huge post",
            Message::text(format!(
                r#"{{"type":"post","group":{g},"client_id":"big","text":"{}"}}"#,
                "あ".repeat(1001)
            )),
            Expect::Error(ErrorCode::PostTooLong),
        ),
        (
            "empty post",
            Message::text(format!(
                r#"{{"type":"post","group":{g},"client_id":"e","text":"  "}}"#
            )),
            Expect::Error(ErrorCode::EmptyPost),
        ),
        (
            "bad client id",
            Message::text(format!(
                r#"{{"type":"post","group":{g},"client_id":"","text":"t"}}"#
            )),
            Expect::Error(ErrorCode::InvalidClientId),
        ),
        (
            "unknown group",
            Message::text(r#"{"type":"post","group":999999,"client_id":"u","text":"t"}"#),
            Expect::Error(ErrorCode::NotMember),
        ),
        (
            "negative sequence",
            Message::text(format!(
                r#"{{"type":"sync","groups":[{{"group":{g},"after":-5}}]}}"#
            )),
            Expect::Error(ErrorCode::InvalidSequence),
        ),
        (
            "negative before",
            Message::text(format!(r#"{{"type":"history","group":{g},"before":-1}}"#)),
            Expect::Error(ErrorCode::InvalidSequence),
        ),
        (
            "oversized frame",
            Message::text("x".repeat(17 * 1024)),
            Expect::Close(close::MESSAGE_TOO_BIG),
        ),
        (
            "binary frame",
            Message::binary(vec![1, 2, 3]),
            Expect::Close(close::UNSUPPORTED_DATA),
        ),
        (
            "invalid UTF-8",
            invalid_utf8,
            Expect::Close(close::INVALID_PAYLOAD),
        ),
    ];

    let mut bystander = app.client(f.bob).await;
    bystander.sync(g, 0).await;
    let mut sent = 0;
    for (name, frame, expect) in cases {
        let mut client = app.client(f.alice).await;
        client.send_raw(frame).await;
        match expect {
            Expect::Error(code) => {
                let error = client.next_error().await;
                assert_eq!(error.code, code, "{name}: {error:?}");
                client
                    .send(&ClientMessage::History {
                        group: g,
                        before: None,
                        limit: Some(1),
                    })
                    .await;
                assert!(
                    matches!(client.recv().await, ServerMessage::Page { .. }),
                    "{name}: socket still serves"
                );
            }
            Expect::Close(code) => {
                assert_eq!(client.close_code().await, Some(code), "{name}");
            }
        }
        // Everyone else is unaffected.
        let mut poster = app.client(f.dave).await;
        sent += 1;
        poster.post_acked(g, &format!("after-{sent}"), name).await;
        assert_eq!(bystander.next_event().await.seq, sent);
    }
    app.stop().await;
}

/// A client that stops reading is closed as a slow consumer while the other members keep
/// getting every post as it is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_is_closed_and_others_are_not_delayed() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.limits.outbox_bytes = 64 * 1024;
        c.limits.max_post_chars = 6_000;
        c.limits.max_frame_bytes = 256 * 1024;
    })
    .await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut slow = app.client(f.bob).await;
    slow.sync(g, 0).await;
    let mut reader = app.client(f.dave).await;
    reader.sync(g, 0).await;
    let mut alice = app.client(f.alice).await;

    let text = "申し送り".repeat(1500); // 18 KB of UTF-8: 3 posts fill the outbox
    let mut posts = 0;
    // The slow client reads nothing from here on; the kernel's socket buffers absorb some
    // megabytes before its outbox fills, so this loop is bounded well above that.
    while app.metric("renkei_slow_consumer_disconnects_total").await < 1.0 {
        posts += 1;
        assert!(posts <= 2000, "the slow consumer was never closed");
        let seq = alice.post_acked(g, &format!("flood-{posts}"), &text).await;
        let event = reader.next_event().await;
        assert_eq!(
            event.seq, seq,
            "the reading member gets each post as it is acknowledged"
        );
    }
    assert_eq!(slow.close_code().await, Some(close::SLOW_CONSUMER));
    app.stop().await;
}

/// Posts beyond a user's burst are refused with `rate_limited`, across all of the user's
/// sockets, and nothing refused is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_beyond_the_users_budget_are_refused() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.limits.posts_per_second = 1;
        c.limits.post_burst = 3;
    })
    .await;
    let g = app.fixture.patient_group;
    let mut phone = app.client(app.fixture.alice).await;
    let mut pc = app.client(app.fixture.alice).await;
    for i in 0..2 {
        phone.post_acked(g, &format!("r-{i}"), "記録").await;
    }
    pc.post_acked(g, "r-2", "記録").await;
    pc.post(g, "r-3", "記録").await;
    let refused = pc.next_error().await;
    assert_eq!(
        (refused.code, refused.client_id.as_deref()),
        (ErrorCode::RateLimited, Some("r-3"))
    );
    assert!(refused.code.retryable());
    phone.post(g, "r-4", "記録").await;
    assert_eq!(
        phone.next_error().await.code,
        ErrorCode::RateLimited,
        "the budget is the user's"
    );
    assert_eq!(
        app.store
            .events_after(g, 0, i64::MAX, 100)
            .await
            .expect("read")
            .len(),
        3
    );
    app.stop().await;
}

/// A client that stops answering pings is dropped, and its slot and memory are freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_sockets_are_reaped() {
    let app = TestApp::spawn_with(Backend::Sqlite, |c| c.limits.ping_seconds = 1).await;
    // A client that never reads never answers the server's pings.
    let silent = app.client(app.fixture.carol).await;
    assert_eq!(app.metric("renkei_connections").await, 1.0);
    let mut gone = false;
    for _ in 0..100 {
        if app.metric("renkei_connections").await == 0.0 {
            gone = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(gone, "the silent socket was never reaped");
    drop(silent);
    app.stop().await;
}

/// The client's heartbeat: every `ping` is answered by a `pong` with its `n`, in order,
/// and pings spend the socket's frame budget like any frame (a flood is refused).
async fn ping_is_answered_with_its_number_and_counts_as_a_frame(backend: Backend) {
    let app = TestApp::spawn_with(backend, |config| {
        // No refill: the test's pace cannot matter.
        config.limits.frames_per_second = 0;
        config.limits.frame_burst = 3;
    })
    .await;
    let mut alice = app.client(app.fixture.alice).await;
    for n in [7, u64::MAX] {
        alice.send(&ClientMessage::Ping { n }).await;
        assert_eq!(alice.recv().await, ServerMessage::Pong { n });
    }
    // The raw frame as a browser writes it.
    alice
        .send_raw(tokio_tungstenite::tungstenite::Message::text(
            r#"{"type":"ping","n":0}"#,
        ))
        .await;
    assert_eq!(alice.recv().await, ServerMessage::Pong { n: 0 });
    // The burst of 3 is spent: the next ping is refused, not answered.
    alice.send(&ClientMessage::Ping { n: 8 }).await;
    assert_eq!(alice.next_error().await.code, ErrorCode::RateLimited);
    app.stop().await;
}

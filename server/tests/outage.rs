//! PostgreSQL crashing and coming back, on a private server this test starts (initdb into
//! a temporary directory, a free port) so that stopping it disturbs no other test.
//!
//! Jepsen-style over every acknowledged post: lost = 0, duplicates = 0, order kept. Posts
//! are refused with a retryable error (never acknowledged) while the database is down,
//! sockets stay open, `/readyz` reports the outage, the server recovers by itself, and a
//! post retried under its client id is one row however often it was sent.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Client, TestApp, TestDb};
use renkei_protocol::Seq;
use renkei_testbed::OwnPostgres;
use sqlx::Connection as _;

async fn ready(app: &TestApp) -> u16 {
    reqwest::get(app.url("/readyz"))
        .await
        .expect("readyz")
        .status()
        .as_u16()
}

/// Polls `/readyz` (at most 30 s) until it answers `status`.
async fn until_ready_is(app: &TestApp, status: u16) {
    for _ in 0..300 {
        if ready(app).await == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("/readyz never answered {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgresql_crash_under_a_stream_of_posts_loses_nothing_acknowledged() {
    const POSTS: usize = 200;
    let mut pg = OwnPostgres::start().await.expect("a private PostgreSQL");
    let app = TestApp::spawn_in(TestDb::on_postgres(&pg.url()).await, |_| {}).await;
    let g = app.fixture.patient_group;
    let mut bob = app.client(app.fixture.bob).await;
    bob.sync(g, 0).await;

    // Alice posts one after another, retrying what is refused, as the web client does.
    let (addr, alice) = (app.addr, app.token(app.fixture.alice).await);
    let writer = tokio::spawn(async move {
        let mut writer = Client::connect(addr, &alice).await;
        let mut acked = Vec::new();
        let mut refusals = 0;
        for i in 0..POSTS {
            let id = format!("p-{i}");
            let (seq, refused) = writer.post_retrying(g, &id, &format!("記録 {i}")).await;
            acked.push((id, seq));
            refusals += refused;
        }
        (acked, refusals)
    });

    // Bob reads the stream; the database crashes in its middle.
    let mut seen: Vec<Seq> = Vec::new();
    while seen.len() < 50 {
        seen.push(bob.next_event().await.seq);
    }
    pg.crash().await.expect("PostgreSQL crashed");
    until_ready_is(&app, 503).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.resume().await.expect("PostgreSQL started again");
    until_ready_is(&app, 200).await;

    let (acked, refusals) = writer.await.expect("writer");
    assert!(refusals > 0, "the writer met the outage");
    let last = acked.last().map(|(_, seq)| *seq).expect("acks");
    while seen.last().copied().unwrap_or(0) < last {
        seen.push(bob.next_event().await.seq);
    }

    let expected: Vec<Seq> = (1..=POSTS as Seq).collect();
    let acked_seqs: Vec<Seq> = acked.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(
        acked_seqs, expected,
        "every post acknowledged once, in order"
    );
    assert_eq!(
        seen, expected,
        "Bob, whose socket stayed open: lost 0, duplicates 0, in order"
    );

    // What was acknowledged is what the restarted database holds: one row per client id.
    let mut conn = sqlx::PgConnection::connect(&app.db.url)
        .await
        .expect("connect");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT client_id, seq FROM events WHERE group_id = $1 AND kind = 'post'")
            .bind(g)
            .fetch_all(&mut conn)
            .await
            .expect("events");
    assert_eq!(rows.len(), POSTS, "one row per post, retries included");
    let stored: HashMap<String, Seq> = rows.into_iter().collect();
    for (id, seq) in &acked {
        assert_eq!(stored.get(id), Some(seq), "acknowledged {id} is committed");
    }
    app.stop().await;
}

on_both_backends!(a_post_whose_commit_answer_was_lost_reaches_the_members_on_retry);

/// A commit can succeed while its answer is lost with the database connection: the node
/// then never published the event. When the client retries under the same id, the store
/// finds the post, the ack names its place, and the members get the event after all.
async fn a_post_whose_commit_answer_was_lost_reaches_the_members_on_retry(
    backend: common::Backend,
) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    bob.sync(g, 0).await;
    let token = app.token(f.alice).await;
    let alice = app
        .store
        .session_user(
            &renkei::session::token_hash(&token),
            renkei_domain::clock::now_ms(),
            0,
        )
        .await
        .expect("session")
        .expect("alice")
        .user;
    let text = "夜間の訪問で発熱なし";
    // Committed behind the node's back, as a commit whose answer never came back.
    let post = renkei::store::NewPost {
        at: renkei_domain::clock::now_ms(),
        ..renkei::store::NewPost::new(g, std::sync::Arc::new(alice), "lost-1".into(), text.into())
    };
    app.store.append_posts(&[post]).await.expect("stored");

    let mut writer = Client::connect(app.addr, &token).await;
    assert_eq!(writer.post_acked(g, "lost-1", text).await, 1);
    let event = bob.next_event().await;
    assert_eq!(
        event.seq, 1,
        "Bob gets the post that was never published: {event:?}"
    );
    app.stop().await;
}

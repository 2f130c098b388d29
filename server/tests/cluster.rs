//! Several nodes on one PostgreSQL and one Redis: a post made on one node reaches members
//! on every node, in order, once, also when Redis goes away and comes back.

mod common;

use std::time::Duration;

use common::{Backend, Client, TestApp};
use renkei_protocol::Seq;
use renkei_testbed::OwnRedis;

async fn cluster(redis_url: String, prefix: String) -> TestApp {
    TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis_url);
        c.redis_prefix = prefix;
    })
    .await
}

/// Reads events until `count` have come, and returns their sequence numbers.
async fn collect(client: &mut Client, count: usize) -> Vec<Seq> {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        seqs.push(client.next_event().await.seq);
    }
    seqs
}

/// `n` real node processes on a fresh PostgreSQL database with the fixture, and Redis.
struct Processes {
    _db: common::TestDb,
    store: std::sync::Arc<dyn renkei::store::Store>,
    f: common::Fixture,
    nodes: Vec<common::Process>,
}

impl Processes {
    async fn start(n: usize) -> Processes {
        let (redis, prefix) = common::redis();
        let db = common::TestDb::new(Backend::Postgres).await;
        let store = renkei::store::open(&db.url).await.expect("store");
        let f = common::seed(store.as_ref()).await;
        let env = [
            ("RENKEI_DATABASE_URL", db.url.as_str()),
            ("RENKEI_REDIS_URL", redis.as_str()),
            ("RENKEI_REDIS_PREFIX", prefix.as_str()),
        ];
        let mut nodes = Vec::with_capacity(n);
        for _ in 0..n {
            nodes.push(common::Process::start(&env).await);
        }
        Processes {
            _db: db,
            store,
            f,
            nodes,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_on_every_node_reach_every_node_in_order_once() {
    const EACH: i64 = 150;
    // Three real server processes on one PostgreSQL and one Redis.
    let Processes {
        _db,
        store,
        f,
        nodes,
    } = Processes::start(3).await;
    let g = f.patient_group;

    // Dave reads on every node (three devices); Bob reads on the third.
    let mut readers = Vec::new();
    for node in &nodes {
        readers
            .push(Client::connect(node.addr, &common::session(store.as_ref(), f.dave).await).await);
    }
    readers
        .push(Client::connect(nodes[2].addr, &common::session(store.as_ref(), f.bob).await).await);
    for reader in &mut readers {
        reader.sync(g, 0).await;
    }
    // Alice posts on the first node, Bob on the second, at the same time.
    let mut writers = Vec::new();
    for (node, user, tag) in [(&nodes[0], f.alice, "a"), (&nodes[1], f.bob, "b")] {
        let (addr, token) = (node.addr, common::session(store.as_ref(), user).await);
        writers.push(tokio::spawn(async move {
            let mut writer = Client::connect(addr, &token).await;
            for i in 0..EACH {
                writer
                    .post_acked(g, &format!("{tag}-{i}"), &format!("ノード{tag}の記録 {i}"))
                    .await;
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let expected: Vec<Seq> = (1..=2 * EACH).collect();
    for reader in &mut readers {
        assert_eq!(collect(reader, expected.len()).await, expected);
    }
    // Each node heard the others' posts through Redis, not only through the store.
    for node in &nodes {
        assert!(common::metric(node.addr, "renkei_bus_received_total").await >= EACH as f64);
        assert_eq!(common::metric(node.addr, "renkei_bus_connected").await, 1.0);
    }
}

/// Jepsen-style: Redis is killed in the middle of a stream of posts and started again
/// later. Posts keep being committed and acknowledged; the other node recovers what it
/// missed from PostgreSQL. Over every acknowledged post, for a member on each node:
/// lost = 0, duplicates = 0, order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_redis_restarts_during_a_stream_of_posts() {
    const POSTS: i64 = 300;
    let port = renkei_testbed::free_port().expect("port");
    let mut redis = OwnRedis::start(port).await.expect("a private Redis");
    let (_, prefix) = common::redis();
    let a = cluster(format!("redis://127.0.0.1:{port}"), prefix).await;
    let b = a.another_node().await;
    let f = a.fixture.clone();
    let g = f.patient_group;
    let mut on_b = Client::connect(b.addr, &a.token(f.dave).await).await;
    on_b.sync(g, 0).await;
    let mut on_a = a.client(f.bob).await;
    on_a.sync(g, 0).await;

    let (addr, alice) = (a.addr, a.token(f.alice).await);
    let writer = tokio::spawn(async move {
        let mut writer = Client::connect(addr, &alice).await;
        let mut acked = Vec::new();
        for i in 0..POSTS {
            acked.push(writer.post_acked(g, &format!("r-{i}"), "申し送り").await);
            // Paced, so that the stream spans Redis's death and return.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acked
    });

    let mut seen = collect(&mut on_b, 30).await;
    redis.kill().await.expect("Redis killed");
    // The stream goes on without Redis (Bob, on the writer's node, sees it)...
    let mut seen_on_a = collect(&mut on_a, 90).await;
    let writer_finished_before_restart = writer.is_finished();
    // ...and Redis comes back while it still flows.
    redis.resume().await.expect("Redis started again");
    let acked = writer.await.expect("writer");
    seen.extend(collect(&mut on_b, acked.len() - seen.len()).await);
    seen_on_a.extend(collect(&mut on_a, acked.len() - seen_on_a.len()).await);
    assert!(
        !writer_finished_before_restart,
        "the stream outlasted Redis's absence"
    );

    let expected: Vec<Seq> = (1..=POSTS).collect();
    assert_eq!(acked, expected, "every post acknowledged, in order");
    assert_eq!(seen, expected, "Dave on the other node");
    assert_eq!(seen_on_a, expected, "Bob on the writer's node");
    // Both nodes are back on Redis by themselves.
    for node in [a.addr, b.addr] {
        let mut connected = 0.0;
        for _ in 0..100 {
            connected = common::metric(node, "renkei_bus_connected").await;
            if connected == 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(connected, 1.0, "{node} reconnected to Redis");
    }
    drop(b);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logging_out_on_one_node_closes_the_sessions_sockets_on_every_node() {
    let (url, prefix) = common::redis();
    let a = cluster(url, prefix).await;
    let b = a.another_node().await;
    let token = a.token(a.fixture.alice).await;
    let mut on_a = Client::connect(a.addr, &token).await;
    let mut on_b = Client::connect(b.addr, &token).await;
    let response = common::logout(a.addr, &token).await;
    assert_eq!(response.status(), 204);
    assert_eq!(
        on_a.close_code().await,
        Some(renkei_protocol::close::SESSION_ENDED)
    );
    assert_eq!(
        on_b.close_code().await,
        Some(renkei_protocol::close::SESSION_ENDED)
    );
    drop(b);
    a.stop().await;
}

/// Jepsen-style: with two real node processes, `kill -9` one under load; its clients
/// reconnect to the other and catch up. Over every acknowledged post: lost = 0,
/// duplicates = 0, order kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_node_loses_nothing_acknowledged() {
    const POSTS: i64 = 300;
    let Processes {
        _db,
        store,
        f,
        nodes,
    } = Processes::start(2).await;
    let [doomed, survivor]: [common::Process; 2] = nodes.try_into().ok().expect("two nodes");
    let g = f.patient_group;
    let dave = common::session(store.as_ref(), f.dave).await;
    let mut reader = Client::connect(doomed.addr, &dave).await;
    reader.sync(g, 0).await;
    let mut bob =
        Client::connect(survivor.addr, &common::session(store.as_ref(), f.bob).await).await;
    bob.sync(g, 0).await;

    let alice = common::session(store.as_ref(), f.alice).await;
    let survivor_addr = survivor.addr;
    let writer = tokio::spawn(async move {
        let mut writer = Client::connect(survivor_addr, &alice).await;
        let mut acked = Vec::new();
        for i in 0..POSTS {
            acked.push(
                writer
                    .post_acked(g, &format!("k-{i}"), &format!("記録 {i}"))
                    .await,
            );
        }
        acked
    });

    // Dave reads on the doomed node until it dies mid-stream...
    let mut seen = Vec::new();
    while seen.len() < 50 {
        seen.push(reader.next_event().await.seq);
    }
    doomed.signal("KILL");
    while let Ok(message) = reader.next().await {
        if let renkei_protocol::ServerMessage::Event(event) = message {
            seen.push(event.seq);
        }
    }
    // ...then reconnects to the survivor and catches up from what he holds.
    let mut reader = Client::connect(survivor.addr, &dave).await;
    let held = seen.last().copied().unwrap_or(0);
    seen.extend(reader.sync(g, held).await.iter().map(|e| e.seq));
    let acked = writer.await.expect("writer");
    let last = acked.iter().copied().max().expect("acks");
    while seen.last().copied().unwrap_or(0) < last {
        seen.push(reader.next_event().await.seq);
    }

    let expected: Vec<Seq> = (1..=POSTS).collect();
    assert_eq!(acked, expected, "every post acknowledged, in order");
    assert_eq!(
        seen, expected,
        "Dave: lost 0, duplicates 0, in order, across the failover"
    );
    assert_eq!(
        collect(&mut bob, expected.len()).await,
        expected,
        "Bob on the survivor"
    );
}

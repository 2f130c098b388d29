//! The bus between nodes as someone with access to the deployment's Redis meets it: they
//! read nothing of a post, cannot make themselves a member with a forged event, cannot
//! replay a genuine message, and two installations sharing a Redis and a prefix never hear
//! each other. Nodes sealing two envelope versions work side by side (a rolling upgrade).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use common::{Client, Node, TestApp};
use futures::StreamExt as _;
use renkei::bus::envelope::{self, BusKey};
use renkei_protocol::{ClientMessage, EventData, GroupEvent, ServerMessage};

/// A node of a cluster on PostgreSQL and the shared Redis under `prefix`.
async fn first_node(redis: &str, prefix: &str, envelope: u8) -> TestApp {
    let (redis, prefix) = (redis.to_string(), prefix.to_string());
    TestApp::spawn_with(common::Backend::Postgres, move |c| {
        c.redis_url = Some(redis);
        c.redis_prefix = prefix;
        c.bus_envelope = envelope;
    })
    .await
}

/// What an eavesdropper read: each message's channel and bytes.
type Read = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// Someone subscribed to every channel under the prefix, keeping what they read.
struct Eavesdropper {
    read: Read,
    task: tokio::task::JoinHandle<()>,
}

impl Eavesdropper {
    async fn start(redis: &str, prefix: &str) -> Eavesdropper {
        let client = redis::Client::open(redis).expect("redis url");
        let mut pubsub = client.get_async_pubsub().await.expect("redis");
        pubsub
            .psubscribe(format!("{prefix}:*"))
            .await
            .expect("psubscribe");
        let read = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let read = Arc::clone(&read);
            async move {
                let mut messages = pubsub.into_on_message();
                while let Some(message) = messages.next().await {
                    read.lock().unwrap_or_else(PoisonError::into_inner).push((
                        message.get_channel_name().to_string(),
                        message.get_payload_bytes().to_vec(),
                    ));
                }
            }
        });
        Eavesdropper { read, task }
    }

    fn read(&self) -> Vec<(String, Vec<u8>)> {
        self.read
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `count` messages were read.
    async fn until(&self, count: usize) -> Vec<(String, Vec<u8>)> {
        for _ in 0..200 {
            let read = self.read();
            if read.len() >= count {
                return read;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the eavesdropper read fewer than {count} messages");
    }
}

impl Drop for Eavesdropper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes `bytes` on `channel` of the shared Redis.
async fn publish(redis: &str, channel: &str, bytes: &[u8]) {
    let client = redis::Client::open(redis).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(bytes)
        .query_async(&mut connection)
        .await
        .expect("publish");
}

/// The channels nodes listen on under `prefix` (what `PUBSUB CHANNELS` tells anyone),
/// and the one the bus used before it was sealed.
async fn channels(redis: &str, prefix: &str) -> Vec<String> {
    let client = redis::Client::open(redis).expect("redis url");
    let mut connection = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let mut channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut connection)
        .await
        .expect("pubsub channels");
    channels.push(format!("{prefix}:events"));
    channels
}

/// `renkei_bus_rejected_total{reason="…"}` of the node at `addr`.
async fn rejected(addr: SocketAddr, reason: &str) -> f64 {
    common::metric(
        addr,
        &format!("renkei_bus_rejected_total{{reason=\"{reason}\"}}"),
    )
    .await
}

/// Waits until the node at `addr` has rejected at least `count` messages for `reason`.
async fn rejects(addr: SocketAddr, reason: &str, count: f64) {
    let mut seen = 0.0;
    for _ in 0..200 {
        seen = rejected(addr, reason).await;
        if seen >= count {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{addr} rejected {seen} messages as {reason}, expected {count}");
}

fn text(event: &GroupEvent) -> &str {
    match &event.data {
        EventData::Post { text, .. } => text,
        other => panic!("expected a post, got {other:?}"),
    }
}

/// The installation's bus key, read from the database as only a node (or a test) can.
async fn key(app: &TestApp) -> BusKey {
    let stored = app
        .store
        .installation_secret(envelope::SECRET_NAME, &[0; 32], 0)
        .await
        .expect("key");
    BusKey::new(&stored).expect("32 bytes")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_redis_reads_nothing_of_posts_or_patients() {
    let (redis, prefix) = common::redis();
    let a = first_node(&redis, &prefix, envelope::NEWEST).await;
    let b = a.another_node().await;
    let f = a.fixture.clone();
    let spy = Eavesdropper::start(&redis, &prefix).await;
    let mut dave = Client::connect(b.addr, &a.token(f.dave).await).await;
    dave.sync(f.patient_group, 0).await;

    let secret = "仙骨部の褥瘡 2cm、滲出液あり";
    a.client(f.alice)
        .await
        .post_acked(f.patient_group, "p-1", secret)
        .await;
    assert_eq!(text(&dave.next_event().await), secret);
    // A new patient group: its creator's join carries the group, named after the patient.
    let before = spy.until(1).await.len();
    let patient = "鈴木 一郎";
    a.api(f.adam)
        .await
        .ok(
            reqwest::Method::POST,
            "/api/v1/groups",
            Some(serde_json::json!({"kind": "patient", "patient": {"name": patient, "birth_date": "1931-04-01"}})),
        )
        .await;

    let read = spy.until(before + 1).await;
    for needle in [secret, patient, "褥瘡", "alice", "看護師"] {
        for (channel, bytes) in &read {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{needle:?} readable on {channel}"
            );
        }
    }
    drop(b);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_join_on_redis_makes_nobody_a_member() {
    let (redis, prefix) = common::redis();
    let a = first_node(&redis, &prefix, envelope::NEWEST).await;
    let b = a.another_node().await;
    let f = a.fixture.clone();
    let g = f.patient_group;
    let mut dave = Client::connect(b.addr, &a.token(f.dave).await).await;
    dave.sync(g, 0).await;
    let mut alice = a.client(f.alice).await;
    assert_eq!(alice.post_acked(g, "real-1", "本物 1").await, 1);
    let first = dave.next_event().await;

    // Carol (a member of the free group only) forges the next event of the patient group:
    // her own join, in the format nodes exchanged before the bus was sealed.
    let group = a
        .store
        .group_details(g)
        .await
        .expect("store")
        .expect("group")
        .group;
    let effect = serde_json::json!({"Joined": {"user": f.carol, "group": group}});
    let effect = serde_json::to_vec(&effect).expect("json");
    let frame = serde_json::to_string(&ServerMessage::Event(GroupEvent {
        seq: 2,
        ..first.clone()
    }))
    .expect("json");
    let mut forged = vec![1u8];
    forged.extend_from_slice(&0x0bad_u64.to_be_bytes());
    forged.extend_from_slice(&g.to_be_bytes());
    forged.extend_from_slice(&2i64.to_be_bytes());
    forged.extend_from_slice(&u32::try_from(effect.len()).expect("len").to_be_bytes());
    forged.extend_from_slice(&effect);
    forged.extend_from_slice(frame.as_bytes());
    let channels = channels(&redis, &prefix).await;
    for channel in &channels {
        publish(&redis, channel, &forged).await;
    }
    for node in [a.addr, b.addr] {
        rejects(node, "unopenable", 1.0).await;
    }

    // Neither node counts her a member: sync and history are refused on both.
    let token = a.token(f.carol).await;
    for node in [a.addr, b.addr] {
        let mut carol = Client::connect(node, &token).await;
        carol
            .send(&ClientMessage::Sync {
                groups: vec![renkei_protocol::SyncCursor { group: g, after: 0 }],
            })
            .await;
        let refused = carol.next_error().await;
        assert_eq!(refused.group, Some(g), "{refused:?}");
        carol
            .send(&ClientMessage::History {
                group: g,
                before: None,
                limit: None,
            })
            .await;
        let refused = carol.next_error().await;
        assert_eq!(refused.group, Some(g), "{refused:?}");
    }
    // The real second post is not taken for the forged one: it reaches Dave on the other node.
    assert_eq!(alice.post_acked(g, "real-2", "本物 2").await, 2);
    let second = dave.next_event().await;
    assert_eq!((second.seq, text(&second)), (2, "本物 2"));
    drop(b);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_or_stale_message_is_dropped_and_counted() {
    let (redis, prefix) = common::redis();
    let a = first_node(&redis, &prefix, envelope::NEWEST).await;
    let b = a.another_node().await;
    let f = a.fixture.clone();
    let g = f.patient_group;
    let spy = Eavesdropper::start(&redis, &prefix).await;
    let mut dave = Client::connect(b.addr, &a.token(f.dave).await).await;
    dave.sync(g, 0).await;
    let mut alice = a.client(f.alice).await;
    alice.post_acked(g, "r-1", "一回目").await;
    assert_eq!(dave.next_event().await.seq, 1);

    // Every sealed message read so far, published again as it was.
    let captured = spy.until(1).await;
    for (channel, bytes) in &captured {
        publish(&redis, channel, bytes).await;
    }
    rejects(b.addr, "replayed", 1.0).await;
    // A message sealed with the real key (as a node would) but sent two minutes ago.
    let key = key(&a).await;
    let stale = envelope::seal(
        &key,
        envelope::NEWEST,
        &[0x5a; 16],
        1,
        renkei_domain::clock::now_ms() - 120_000,
        &[2, b'{', b'}'],
    );
    publish(&redis, &key.channel(&prefix), &stale).await;
    rejects(b.addr, "stale", 1.0).await;
    rejects(a.addr, "stale", 1.0).await;

    // Nothing was displaced or repeated: the next post is the next event Dave sees.
    alice.post_acked(g, "r-2", "二回目").await;
    let next = dave.next_event().await;
    assert_eq!((next.seq, text(&next)), (2, "二回目"));
    assert_eq!(rejected(b.addr, "unopenable").await, 0.0);
    drop(b);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_installations_on_one_redis_and_prefix_never_mix() {
    let (redis, prefix) = common::redis();
    let one = first_node(&redis, &prefix, envelope::NEWEST).await;
    let two = first_node(&redis, &prefix, envelope::NEWEST).await;
    // Both fixtures have the same ids: the same group, the same users.
    let (f1, f2) = (one.fixture.clone(), two.fixture.clone());
    assert_eq!(f1.patient_group, f2.patient_group);
    let g = f2.patient_group;
    let mut dave = two.client(f2.dave).await;
    dave.sync(g, 0).await;

    one.client(f1.alice)
        .await
        .post_acked(g, "one", "一つ目の施設")
        .await;
    two.client(f2.alice)
        .await
        .post_acked(g, "two", "二つ目の施設")
        .await;
    let seen = dave.next_event().await;
    assert_eq!((seen.seq, text(&seen)), (1, "二つ目の施設"));
    assert_eq!(two.metric("renkei_bus_received_total").await, 0.0);
    assert_ne!(
        key(&one).await.channel(&prefix),
        key(&two).await.channel(&prefix)
    );
    one.stop().await;
    two.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sealing_versions_one_and_two_work_side_by_side() {
    let (redis, prefix) = common::redis();
    let old = first_node(&redis, &prefix, 1).await;
    let mut config = old.config.clone();
    config.bus_envelope = 2;
    let new = Node::start_with(config).await;
    let f = old.fixture.clone();
    let g = f.patient_group;
    let spy = Eavesdropper::start(&redis, &prefix).await;
    let mut bob = old.client(f.bob).await;
    bob.sync(g, 0).await;
    let mut dave = Client::connect(new.addr, &old.token(f.dave).await).await;
    dave.sync(g, 0).await;

    let alice = old.token(f.alice).await;
    Client::connect(old.addr, &alice)
        .await
        .post_acked(g, "from-old", "旧版から")
        .await;
    assert_eq!(text(&dave.next_event().await), "旧版から");
    assert_eq!(text(&bob.next_event().await), "旧版から");
    Client::connect(new.addr, &alice)
        .await
        .post_acked(g, "from-new", "新版から")
        .await;
    assert_eq!(text(&bob.next_event().await), "新版から");
    assert_eq!(text(&dave.next_event().await), "新版から");
    // Each heard the other through Redis, in the other's version.
    for node in [old.addr, new.addr] {
        assert!(common::metric(node, "renkei_bus_received_total").await >= 1.0);
    }
    let versions: std::collections::BTreeSet<u8> = spy
        .until(2)
        .await
        .iter()
        .map(|(_, bytes)| bytes[0])
        .collect();
    assert_eq!(versions, [1, 2].into());

    // A version neither knows, sealed with the real key, is dropped and counted by both.
    let key = key(&old).await;
    let future = envelope::seal(&key, 3, &[3; 16], 1, renkei_domain::clock::now_ms(), &[2]);
    publish(&redis, &key.channel(&prefix), &future).await;
    for node in [old.addr, new.addr] {
        rejects(node, "unknown_version", 1.0).await;
        assert_eq!(rejected(node, "unopenable").await, 0.0);
    }
    drop(new);
    old.stop().await;
}

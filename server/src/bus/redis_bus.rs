//! The Redis backend of the bus: publish once per commit, route on every node, and
//! recover from the store whatever Redis lost. Every message travels sealed
//! ([`super::envelope`]): Redis is a carrier, not trusted with content or authority.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use redis::AsyncCommands as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::envelope::{self, BusKey, NodeId, Opener, Rejected, Sealer};
use super::recovery::Recovery;
use crate::hub::{Control, Hub};
use crate::metrics::Metrics;
use crate::outbox::{Delivery, Effect};
use crate::store::{Store, StoreError};

/// How often every group's last sequence number is compared with the store's, to find
/// events whose publication Redis lost with no later event to reveal the gap.
const RECONCILE_EVERY: Duration = Duration::from_secs(5);
/// Publications waiting for the publisher; beyond this they are dropped (and recovered
/// by the other nodes from the store).
const OUTGOING: usize = 16 * 1024;

/// Why the Redis bus could not start.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("Redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("RENKEI_REDIS_CA_FILE {path}: {detail}")]
    CaFile { path: String, detail: String },
    #[error("the bus key: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] envelope::KeyLength),
}

/// Fan-out across nodes through Redis pub/sub.
pub struct RedisBus {
    /// This node's id: its own publications come back from Redis and are skipped.
    node: NodeId,
    /// The installation's key, for the subscriber's [`Opener`].
    key: BusKey,
    /// `{prefix}:bus:{id}`, the id derived from the key: installations sharing one Redis
    /// and one prefix never hear each other.
    channel: String,
    /// This node's hub, and what fills its gaps from the store.
    pub recovery: Arc<Recovery>,
    store: Arc<dyn Store>,
    outgoing: mpsc::Sender<Vec<u8>>,
    metrics: Arc<Metrics>,
    /// The second of the last rejection logged: an attacker flooding Redis fills the
    /// metric, not the log.
    last_logged: AtomicI64,
}

impl RedisBus {
    /// Reads (or, at the first start, makes) the installation's bus key, connects
    /// (failing at once if Redis cannot be reached, or its certificate is not signed by
    /// `ca_file`'s authorities or is not for its host) and starts the publisher, sealing in
    /// envelope `version`, the subscriber and the periodic check, which stop when
    /// `shutdown` is cancelled.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        url: &str,
        ca_file: Option<&Path>,
        prefix: &str,
        version: u8,
        hub: Arc<Hub>,
        store: Arc<dyn Store>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, BusError> {
        let failed = |source| BusError::Redis {
            url: crate::config::mask_password(url),
            source,
        };
        let stored = store
            .installation_secret(
                envelope::SECRET_NAME,
                &BusKey::candidate(),
                renkei_domain::clock::now_ms(),
            )
            .await?;
        let key = BusKey::new(&stored)?;
        let client = client(url, ca_file, failed)?;
        let publisher = client
            .get_multiplexed_async_connection()
            .await
            .map_err(failed)?;
        let (outgoing, queue) = mpsc::channel(OUTGOING);
        let channel = key.channel(prefix);
        let sealer = Sealer::new(&key, version);
        let bus = Arc::new(RedisBus {
            node: sealer.node(),
            key,
            channel: channel.clone(),
            recovery: Recovery::new(hub, Arc::clone(&store), Arc::clone(&metrics)),
            store,
            outgoing,
            metrics,
            last_logged: AtomicI64::new(0),
        });
        tokio::spawn(publish(
            client.clone(),
            publisher,
            channel,
            sealer,
            queue,
            shutdown.clone(),
        ));
        tokio::spawn(Arc::clone(&bus).subscribe(client, shutdown.clone()));
        tokio::spawn(Arc::clone(&bus).check_periodically(shutdown));
        Ok(bus)
    }

    /// Delivers on this node and publishes to the others.
    pub fn publish(self: &Arc<Self>, delivery: Arc<Delivery>) {
        let message = encode_event(&delivery);
        self.recovery.deliver(delivery);
        if self.outgoing.try_send(message).is_err() {
            tracing::warn!(
                "Redis publisher behind; other nodes will read the event from the store"
            );
        }
    }

    /// Acts on a control message here and on every other node.
    pub fn control(&self, control: Control) {
        self.recovery.hub.control(&control);
        let message = encode(&Message::Control(control));
        if self.outgoing.try_send(message).is_err() {
            tracing::error!("Redis publisher full: a control message may not reach other nodes");
        }
    }

    /// Acts on a message another node published, if it opens.
    fn receive(self: &Arc<Self>, opener: &mut Opener, payload: &[u8]) {
        let opened = opener
            .open(payload, renkei_domain::clock::now_ms())
            .and_then(|message| match message {
                Some(message) => decode(&message).map(Some).ok_or(Rejected::Malformed),
                None => Ok(None),
            });
        let message = match opened {
            Ok(Some(message)) => message,
            // This node's own publication, back from Redis.
            Ok(None) => return,
            Err(rejected) => {
                self.reject(rejected, payload.len());
                return;
            }
        };
        self.metrics.bus_received.inc();
        match message {
            Message::Event(delivery) => self.recovery.deliver(Arc::new(delivery)),
            Message::Control(control) => self.recovery.hub.control(&control),
        }
    }

    /// Counts a dropped message, and logs it (its size and why, never its bytes) at most
    /// once a second. What it carried, if genuine, the gap recovery reads from the store.
    fn reject(&self, rejected: Rejected, bytes: usize) {
        self.metrics.count_bus_rejected(rejected.reason());
        let second = renkei_domain::clock::now_ms() / 1000;
        if self.last_logged.swap(second, Ordering::Relaxed) != second {
            tracing::error!(
                reason = rejected.reason(),
                bytes,
                "bus message dropped: not a genuine, fresh message of this installation"
            );
        }
    }

    /// Catches up every group this node is behind on.
    async fn reconcile(&self) {
        let last = match self.store.last_seqs().await {
            Ok(last) => last,
            Err(err) => {
                tracing::warn!(error = %err, "cannot compare sequences with the store");
                return;
            }
        };
        for (group, seq) in last {
            if self.recovery.hub.last_seq(group) < seq {
                tracing::info!(
                    group,
                    behind_by = seq - self.recovery.hub.last_seq(group),
                    "catching up from the store"
                );
                if let Err(err) = self.recovery.catch_up(group, seq).await {
                    tracing::warn!(error = %err, group, "catch-up failed; the periodic check retries");
                }
            }
        }
    }

    async fn check_periodically(self: Arc<Self>, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(RECONCILE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = every.tick() => self.reconcile().await,
            }
        }
    }

    /// Subscribes, and after every (re)subscription reads from the store what was missed.
    async fn subscribe(self: Arc<Self>, client: redis::Client, shutdown: CancellationToken) {
        // Kept across reconnections: a message replayed after one is still a replay.
        let mut opener = Opener::new(self.key.clone(), self.node, renkei_domain::clock::now_ms());
        let mut backoff = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            match client.get_async_pubsub().await {
                Ok(mut pubsub) => match pubsub.subscribe(&self.channel).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        self.metrics.bus_connected.set(1);
                        // Subscribed first, then read: nothing falls between the two.
                        self.reconcile().await;
                        let mut messages = pubsub.on_message();
                        loop {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                message = messages.next() => match message {
                                    Some(message) => self.receive(&mut opener, message.get_payload_bytes()),
                                    None => break,
                                },
                            }
                        }
                        self.metrics.bus_connected.set(0);
                        tracing::warn!("Redis subscription lost; reconnecting");
                    }
                    Err(err) => tracing::warn!(error = %err, "Redis subscribe failed"),
                },
                Err(err) => tracing::warn!(error = %err, "Redis unreachable; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// A client for `url`. A `rediss://` one verifies the server's certificate and host name
/// against `ca_file`'s authorities only when given, the system's otherwise.
fn client(
    url: &str,
    ca_file: Option<&Path>,
    failed: impl Fn(redis::RedisError) -> BusError,
) -> Result<redis::Client, BusError> {
    let Some(path) = ca_file else {
        return redis::Client::open(url).map_err(failed);
    };
    let ca_error = |detail: String| BusError::CaFile {
        path: path.display().to_string(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
    if !pem
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(ca_error("no PEM certificate in the file".into()));
    }
    // The redis crate builds its TLS settings with rustls's process-wide provider: make it
    // `ring`, as everywhere else in the server (a no-op when one is installed already).
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(pem),
        },
    )
    .map_err(failed)
}

/// Seals and publishes queued messages in order; while Redis is down they are dropped
/// (the other nodes read events from the store) and the connection is retried at most
/// once a second. Sealing here, in the one task that publishes, makes counters reach
/// Redis in increasing order, which receivers require.
async fn publish(
    client: redis::Client,
    connection: redis::aio::MultiplexedConnection,
    channel: String,
    mut sealer: Sealer,
    mut queue: mpsc::Receiver<Vec<u8>>,
    shutdown: CancellationToken,
) {
    let mut connection = Some(connection);
    let mut last_attempt = Instant::now();
    loop {
        let message = tokio::select! {
            _ = shutdown.cancelled() => return,
            message = queue.recv() => match message {
                Some(message) => message,
                None => return,
            },
        };
        if connection.is_none() && last_attempt.elapsed() >= Duration::from_secs(1) {
            last_attempt = Instant::now();
            connection = client.get_multiplexed_async_connection().await.ok();
        }
        if let Some(conn) = connection.as_mut() {
            let sealed = sealer.seal(&message, renkei_domain::clock::now_ms());
            let sent: Result<(), _> = conn.publish(&channel, sealed).await;
            if let Err(err) = sent {
                tracing::warn!(error = %err, "Redis publish failed");
                connection = None;
            }
        }
    }
}

/// What nodes tell each other.
enum Message {
    /// A committed event.
    Event(Delivery),
    /// A session ended, an account ended or changed, a notice for a user.
    Control(Control),
}

const EVENT: u8 = 1;
const CONTROL: u8 = 2;

/// The message inside the envelope: `kind (1) | …`, integers big-endian. An event goes on
/// with `group (8) | seq (8) | effect length (4) | effect (JSON) | frame`, a control
/// message with its JSON.
fn encode(message: &Message) -> Vec<u8> {
    match message {
        Message::Event(delivery) => encode_event(delivery),
        Message::Control(control) => {
            let mut bytes = vec![CONTROL];
            // Plain data: serializing cannot fail.
            bytes.extend_from_slice(&serde_json::to_vec(control).unwrap_or_default());
            bytes
        }
    }
}

fn encode_event(delivery: &Delivery) -> Vec<u8> {
    let effect = delivery
        .effect
        .as_ref()
        .and_then(|effect| serde_json::to_vec(effect).ok())
        .unwrap_or_default();
    let mut bytes = Vec::with_capacity(21 + effect.len() + delivery.frame.len());
    bytes.push(EVENT);
    bytes.extend_from_slice(&delivery.group.to_be_bytes());
    bytes.extend_from_slice(&delivery.seq.to_be_bytes());
    bytes.extend_from_slice(&u32::try_from(effect.len()).unwrap_or(0).to_be_bytes());
    bytes.extend_from_slice(&effect);
    bytes.extend_from_slice(delivery.frame.as_bytes());
    bytes
}

fn decode(payload: &[u8]) -> Option<Message> {
    let number = |at: usize| -> Option<[u8; 8]> { payload.get(at..at + 8)?.try_into().ok() };
    let message = match *payload.first()? {
        EVENT => {
            let group = i64::from_be_bytes(number(1)?);
            let seq = i64::from_be_bytes(number(9)?);
            let length: [u8; 4] = payload.get(17..21)?.try_into().ok()?;
            let end = 21usize.checked_add(u32::from_be_bytes(length) as usize)?;
            let effect = match payload.get(21..end)? {
                [] => None,
                json => Some(serde_json::from_slice::<Effect>(json).ok()?),
            };
            let frame = bytes::Bytes::copy_from_slice(payload.get(end..)?);
            let frame = axum::extract::ws::Utf8Bytes::try_from(frame).ok()?;
            Message::Event(Delivery {
                group,
                seq,
                frame,
                committed: Instant::now(),
                effect,
            })
        }
        CONTROL => Message::Control(serde_json::from_slice(payload.get(1..)?).ok()?),
        _ => return None,
    };
    Some(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let delivery = Delivery {
            group: 7,
            seq: 42,
            frame: r#"{"type":"event"}"#.into(),
            committed: Instant::now(),
            effect: Some(Effect::Left { user: 3 }),
        };
        let Some(Message::Event(back)) = decode(&encode_event(&delivery)) else {
            panic!("an event decodes");
        };
        assert_eq!(
            (back.group, back.seq, back.frame.as_str(), back.effect),
            (7, 42, r#"{"type":"event"}"#, Some(Effect::Left { user: 3 }))
        );
        let plain = Delivery {
            effect: None,
            ..delivery
        };
        let Some(Message::Event(back)) = decode(&encode_event(&plain)) else {
            panic!("an event without effect decodes");
        };
        assert_eq!(back.effect, None);
        let ended = encode(&Message::Control(Control::SessionEnded(vec![1, 2, 3])));
        assert!(matches!(
            decode(&ended),
            Some(Message::Control(Control::SessionEnded(h))) if h == [1, 2, 3]
        ));
        assert!(decode(&[1, 2, 3]).is_none());
        assert!(decode(&[9; 30]).is_none(), "unknown kind");
        let mut bad = encode_event(&plain);
        bad.extend_from_slice(&[0xff, 0xfe]);
        assert!(decode(&bad).is_none(), "invalid UTF-8 is refused");
    }
}

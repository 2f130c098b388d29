//! The sealed envelope every message between nodes travels in: nothing on Redis is
//! readable, forgeable or replayable without the installation's bus key, which lives in
//! the database and never in Redis.
//!
//! ```text
//! version (1) | node (16) | counter (8) | sent at (8, Unix ms) | AES-256-GCM(message) | tag (16)
//! ```
//!
//! The header (the first 33 bytes) is the AEAD's associated data, so none of it can be
//! changed. Each node seals under its own key, derived with HKDF-SHA256 from the
//! installation's key and the node's random 16-byte id, and uses its counter as the nonce:
//! a counter never repeats within a node's life, and a node's id is new at every start, so
//! no nonce is ever used twice under one key (GCM's one fatal misuse) however many
//! messages the installation sends.
//!
//! A receiver keeps, per sender, the highest counter it accepted: a message at or below
//! it is a replay. A restarted node has a fresh id and starts again at 1, so its messages
//! are new; what bounds a replay to a receiver that never heard of the sender (it started
//! after the message was sent) is time: a message sent more than [`WINDOW_MS`] away from
//! the receiver's clock, or before the receiver started (less [`START_GRACE_MS`]), is stale.
//!
//! Versions: a node opens every version in [`VERSIONS`] and seals with one
//! (`RENKEI_BUS_ENVELOPE`, default [`NEWEST`]). Version 1 seals the message as it is;
//! version 2 pads it to a multiple of [`PAD`] bytes first, so that a reader of Redis
//! learns less from a message's size (a post's length). A rolling upgrade to a build
//! with a new version keeps sealing the old one until every node opens the new one.

use std::collections::HashMap;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand::RngCore as _;
use sha2::Sha256;

/// The versions this build opens, oldest first.
pub const VERSIONS: [u8; 2] = [1, 2];
/// The newest version this build seals.
pub const NEWEST: u8 = 2;
/// How far a message's time may lie from the receiver's clock (either way) before it is
/// stale: a bound on nodes' clock skew plus Redis's and the subscriber's delay.
pub const WINDOW_MS: i64 = 30_000;
/// How long before a receiver started a message may have been sent: Redis delivers
/// nothing published before a subscription, so only one in flight at that moment, or a
/// sender's clock a little behind, legitimately comes from before.
pub const START_GRACE_MS: i64 = 2_000;
/// Version 2 pads messages to a multiple of this many bytes.
pub const PAD: usize = 256;
/// The name of the key's row in `installation_secrets`.
pub const SECRET_NAME: &str = "bus";

const HEADER: usize = 1 + 16 + 8 + 8;
const TAG: usize = 16;

/// A node's id: random at every start.
pub type NodeId = [u8; 16];

/// The installation's bus key: 32 random bytes, made at the first start and kept in the
/// database (`installation_secrets`).
#[derive(Clone)]
pub struct BusKey {
    secret: [u8; 32],
    /// Hex of a value derived from the key: names this installation's channel, so two
    /// installations on one Redis never share one.
    id: String,
}

/// The stored key does not have 32 bytes.
#[derive(Debug, thiserror::Error)]
#[error("the stored bus key has {0} bytes, not 32")]
pub struct KeyLength(usize);

impl BusKey {
    /// A fresh key, to offer to the database (whichever is stored first wins).
    pub fn candidate() -> [u8; 32] {
        let mut secret = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        secret
    }

    /// The key from its stored bytes.
    pub fn new(secret: &[u8]) -> Result<BusKey, KeyLength> {
        let secret: [u8; 32] = secret.try_into().map_err(|_| KeyLength(secret.len()))?;
        let mut id = [0; 16];
        Self::expand(&secret, b"renkei bus channel", &mut id);
        Ok(BusKey {
            secret,
            id: id.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }

    /// The channel this installation's nodes talk on.
    pub fn channel(&self, prefix: &str) -> String {
        format!("{prefix}:bus:{}", self.id)
    }

    /// The cipher of the node `node`.
    fn cipher(&self, node: &NodeId) -> Aes256Gcm {
        let mut info = b"renkei bus node ".to_vec();
        info.extend_from_slice(node);
        let mut key = [0; 32];
        Self::expand(&self.secret, &info, &mut key);
        Aes256Gcm::new(&key.into())
    }

    fn expand(secret: &[u8; 32], info: &[u8], out: &mut [u8]) {
        // At most 32 bytes are asked for, far below HKDF-SHA256's 8160: cannot fail.
        let _ = Hkdf::<Sha256>::new(Some(&b"renkei bus"[..]), secret).expand(info, out);
    }
}

/// Seals `message` as `node`'s `counter`-th, sent at `sent_at`, in envelope `version`.
/// The counter must never repeat for a node: [`Sealer`] keeps that promise; this is the
/// bare operation, public for tests that play an attacker holding the key.
pub fn seal(
    key: &BusKey,
    version: u8,
    node: &NodeId,
    counter: u64,
    sent_at: i64,
    message: &[u8],
) -> Vec<u8> {
    seal_with(&key.cipher(node), version, node, counter, sent_at, message)
}

fn seal_with(
    cipher: &Aes256Gcm,
    version: u8,
    node: &NodeId,
    counter: u64,
    sent_at: i64,
    message: &[u8],
) -> Vec<u8> {
    let mut header = Vec::with_capacity(HEADER + message.len() + PAD + 4 + TAG);
    header.push(version);
    header.extend_from_slice(node);
    header.extend_from_slice(&counter.to_be_bytes());
    header.extend_from_slice(&sent_at.to_be_bytes());
    let padded;
    let plain = if version >= 2 {
        padded = pad(message);
        &padded
    } else {
        message
    };
    // AES-GCM fails only beyond 64 GiB of plaintext.
    let sealed = cipher
        .encrypt(
            &nonce(counter),
            Payload {
                msg: plain,
                aad: &header,
            },
        )
        .unwrap_or_default();
    header.extend_from_slice(&sealed);
    header
}

fn nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut nonce = [0; 12];
    nonce[4..].copy_from_slice(&counter.to_be_bytes());
    nonce.into()
}

/// `length (4) | message | zeros` up to a multiple of [`PAD`].
fn pad(message: &[u8]) -> Vec<u8> {
    let length = 4 + message.len();
    let mut padded = Vec::with_capacity(length.div_ceil(PAD) * PAD);
    padded.extend_from_slice(
        &u32::try_from(message.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    padded.extend_from_slice(message);
    padded.resize(length.div_ceil(PAD) * PAD, 0);
    padded
}

fn unpad(padded: &[u8]) -> Option<Vec<u8>> {
    let length: [u8; 4] = padded.get(..4)?.try_into().ok()?;
    let end = 4usize.checked_add(u32::from_be_bytes(length) as usize)?;
    Some(padded.get(4..end)?.to_vec())
}

/// One node's sending side: its id, its counter, its cipher.
pub struct Sealer {
    node: NodeId,
    version: u8,
    cipher: Aes256Gcm,
    /// The last counter used; the next message gets the one after.
    counter: u64,
    /// The last time sealed: times never go back, even if the clock does, so that a
    /// receiver's window never drops a later message while keeping an earlier one.
    sent_at: i64,
}

impl Sealer {
    /// A sender with a fresh random id, sealing envelope `version`.
    pub fn new(key: &BusKey, version: u8) -> Sealer {
        let mut node = [0; 16];
        rand::rngs::OsRng.fill_bytes(&mut node);
        Sealer {
            cipher: key.cipher(&node),
            node,
            version,
            counter: 0,
            sent_at: 0,
        }
    }

    /// This node's id.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// Seals the next message, sent `now` (Unix ms).
    pub fn seal(&mut self, message: &[u8], now: i64) -> Vec<u8> {
        self.counter += 1;
        self.sent_at = self.sent_at.max(now);
        seal_with(
            &self.cipher,
            self.version,
            &self.node,
            self.counter,
            self.sent_at,
            message,
        )
    }
}

/// Why a message was dropped: the label of `renkei_bus_rejected_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Too short for an envelope, or its content unreadable once opened.
    Malformed,
    /// A version this build does not open.
    UnknownVersion,
    /// Not sealed under this installation's key, or changed on the way.
    Unopenable,
    /// Sent too long ago, or too far ahead, for this node's clock.
    Stale,
    /// A sender's counter at or below one already accepted.
    Replayed,
}

impl Rejected {
    /// Every reason, for the metric's fixed label set.
    pub const ALL: [Rejected; 5] = [
        Rejected::Malformed,
        Rejected::UnknownVersion,
        Rejected::Unopenable,
        Rejected::Stale,
        Rejected::Replayed,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Rejected::Malformed => "malformed",
            Rejected::UnknownVersion => "unknown_version",
            Rejected::Unopenable => "unopenable",
            Rejected::Stale => "stale",
            Rejected::Replayed => "replayed",
        }
    }
}

/// A sender this node has accepted messages from.
struct Peer {
    cipher: Aes256Gcm,
    /// The highest counter accepted from it.
    counter: u64,
    /// When that message was sent: once it is older than the window, so is every
    /// message at or below the counter, and the peer can be forgotten.
    sent_at: i64,
}

/// One node's receiving side.
pub struct Opener {
    key: BusKey,
    /// This node's own id: its own messages come back from Redis and are skipped.
    own: NodeId,
    peers: HashMap<NodeId, Peer>,
    /// Messages sent before this are stale: this node could not have received them when
    /// they were new, so they are replays.
    since: i64,
}

impl Opener {
    /// The receiving side of the node `own`, starting `now` (Unix ms).
    pub fn new(key: BusKey, own: NodeId, now: i64) -> Opener {
        Opener {
            key,
            own,
            peers: HashMap::new(),
            since: now - START_GRACE_MS,
        }
    }

    /// Opens `envelope` received `now` (Unix ms): its message, `None` for this node's own,
    /// or why it is dropped. Only a message that opens can move a sender's counter.
    pub fn open(&mut self, envelope: &[u8], now: i64) -> Result<Option<Vec<u8>>, Rejected> {
        let version = *envelope.first().ok_or(Rejected::Malformed)?;
        if !VERSIONS.contains(&version) {
            return Err(Rejected::UnknownVersion);
        }
        if envelope.len() < HEADER + TAG {
            return Err(Rejected::Malformed);
        }
        let (header, sealed) = envelope.split_at(HEADER);
        let field = |at: usize| -> [u8; 8] {
            // Within the header checked above.
            header[at..at + 8].try_into().unwrap_or_default()
        };
        let node: NodeId = header[1..17].try_into().unwrap_or_default();
        if node == self.own {
            return Ok(None);
        }
        let counter = u64::from_be_bytes(field(17));
        let sent_at = i64::from_be_bytes(field(25));
        let mut fresh = None;
        let cipher = match self.peers.get(&node) {
            Some(peer) => &peer.cipher,
            None => &*fresh.insert(self.key.cipher(&node)),
        };
        let plain = cipher
            .decrypt(
                &nonce(counter),
                Payload {
                    msg: sealed,
                    aad: header,
                },
            )
            .map_err(|_| Rejected::Unopenable)?;
        if sent_at.abs_diff(now) > WINDOW_MS.unsigned_abs() || sent_at < self.since {
            return Err(Rejected::Stale);
        }
        match self.peers.get_mut(&node) {
            Some(peer) if counter <= peer.counter => return Err(Rejected::Replayed),
            Some(peer) => {
                peer.counter = counter;
                peer.sent_at = sent_at;
            }
            None => {
                // Senders heard from within the window only: ids of stopped nodes go.
                self.peers
                    .retain(|_, peer| now.saturating_sub(peer.sent_at) <= WINDOW_MS);
                let cipher = fresh.unwrap_or_else(|| self.key.cipher(&node));
                self.peers.insert(
                    node,
                    Peer {
                        cipher,
                        counter,
                        sent_at,
                    },
                );
            }
        }
        let message = if version >= 2 {
            unpad(&plain).ok_or(Rejected::Malformed)?
        } else {
            plain
        };
        Ok(Some(message))
    }

    /// How many senders are remembered.
    pub fn peers(&self) -> usize {
        self.peers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn key() -> BusKey {
        BusKey::new(&BusKey::candidate()).expect("32 bytes")
    }

    #[test]
    fn a_sealed_message_opens_once_and_hides_its_text() {
        let key = key();
        let mut alice = Sealer::new(&key, NEWEST);
        let mut bob = Opener::new(key.clone(), [7; 16], NOW - WINDOW_MS);
        let text = "山田 太郎 さんの褥瘡";
        let sealed = alice.seal(text.as_bytes(), NOW);
        assert!(!sealed
            .windows(text.len())
            .any(|window| window == text.as_bytes()));
        assert_eq!(sealed.len() % PAD, (HEADER + TAG) % PAD, "padded");
        assert_eq!(
            bob.open(&sealed, NOW + 5),
            Ok(Some(text.as_bytes().to_vec()))
        );
        assert_eq!(bob.open(&sealed, NOW + 6), Err(Rejected::Replayed));
        // Later messages still come through; an earlier one held back is a replay too.
        let second = alice.seal(b"2", NOW);
        let third = alice.seal(b"3", NOW);
        assert_eq!(bob.open(&third, NOW), Ok(Some(b"3".to_vec())));
        assert_eq!(bob.open(&second, NOW), Err(Rejected::Replayed));
        // A node's own messages are skipped.
        let mut own = Opener::new(key, alice.node(), NOW);
        assert_eq!(own.open(&alice.seal(b"4", NOW), NOW), Ok(None));
    }

    #[test]
    fn forged_changed_stale_and_foreign_messages_are_refused() {
        let key = key();
        let mut alice = Sealer::new(&key, 1);
        let mut bob = Opener::new(key.clone(), [7; 16], NOW - WINDOW_MS);
        let sealed = alice.seal(b"message", NOW);
        for at in [0, 1, 17, 25, HEADER, sealed.len() - 1] {
            let mut changed = sealed.clone();
            changed[at] ^= 1;
            let expected = if at == 0 {
                // Version 1 becomes 0, which no build opens.
                Rejected::UnknownVersion
            } else {
                Rejected::Unopenable
            };
            assert_eq!(bob.open(&changed, NOW), Err(expected), "byte {at}");
        }
        let other = Sealer::new(&self::key(), 1).seal(b"message", NOW);
        assert_eq!(bob.open(&other, NOW), Err(Rejected::Unopenable));
        assert_eq!(bob.open(&[1; 20], NOW), Err(Rejected::Malformed));
        assert_eq!(bob.open(&[], NOW), Err(Rejected::Malformed));
        assert_eq!(bob.open(&sealed, NOW + WINDOW_MS + 1), Err(Rejected::Stale));
        assert_eq!(bob.open(&sealed, NOW - WINDOW_MS - 1), Err(Rejected::Stale));
        // A version this build does not know, even sealed with the right key.
        let future = seal(&key, 3, &[9; 16], 1, NOW, b"message");
        assert_eq!(bob.open(&future, NOW), Err(Rejected::UnknownVersion));
        assert_eq!(bob.open(&sealed, NOW), Ok(Some(b"message".to_vec())));
        assert_ne!(key.channel("renkei"), self::key().channel("renkei"));
    }

    #[test]
    fn a_message_sent_before_the_receiver_started_is_stale() {
        let key = key();
        let mut sender = Sealer::new(&key, NEWEST);
        let before = sender.seal(b"before", NOW - START_GRACE_MS - 1);
        let in_flight = sender.seal(b"in flight", NOW - START_GRACE_MS);
        let mut started = Opener::new(key, [7; 16], NOW);
        assert_eq!(started.open(&before, NOW), Err(Rejected::Stale));
        assert_eq!(
            started.open(&in_flight, NOW),
            Ok(Some(b"in flight".to_vec()))
        );
    }

    #[test]
    fn versions_one_and_two_open_side_by_side() {
        let key = key();
        let mut old = Sealer::new(&key, 1);
        let mut new = Sealer::new(&key, 2);
        let mut receiver = Opener::new(key, [7; 16], NOW - WINDOW_MS);
        let messages: [&[u8]; 5] = [b"", b"x", &[0xab; 252], &[0xcd; 253], &[1; 1000]];
        for message in messages {
            let v1 = old.seal(message, NOW);
            let v2 = new.seal(message, NOW);
            assert_eq!(v1[0], 1);
            assert_eq!(v2[0], 2);
            assert_eq!((v2.len() - HEADER - TAG) % PAD, 0);
            assert_eq!(receiver.open(&v1, NOW), Ok(Some(message.to_vec())));
            assert_eq!(receiver.open(&v2, NOW), Ok(Some(message.to_vec())));
        }
    }

    #[test]
    fn senders_not_heard_within_the_window_are_forgotten() {
        let key = key();
        let mut receiver = Opener::new(key.clone(), [7; 16], NOW - WINDOW_MS);
        let mut gone = Sealer::new(&key, NEWEST);
        assert!(receiver.open(&gone.seal(b"a", NOW), NOW).is_ok());
        let mut later = Sealer::new(&key, NEWEST);
        let at = NOW + WINDOW_MS + 1;
        assert!(receiver.open(&later.seal(b"b", at), at).is_ok());
        assert_eq!(receiver.peers(), 1);
        // A sealer's times never go back with the clock.
        let first = later.seal(b"c", at + 10);
        let second = later.seal(b"d", at);
        assert_eq!(first[25..33], second[25..33]);
    }
}

//! One socket's outgoing queue, bounded in bytes.
//!
//! Fan-out pushes into it without ever waiting; the socket's task drains it and writes
//! everything queued in one flush (write coalescing). When a client reads too slowly and
//! the queue would pass its byte limit, the queue is emptied and the socket is ended with
//! the slow-consumer close code: the client reconnects and catches up from the database.
//! Nothing a slow client does can grow server memory or delay another member.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use renkei_protocol::{close, GroupId, Seq, UserId};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::store::{EventBody, EventRecord, GroupRecord};

/// A committed event, serialized once; every recipient shares the same bytes. Or a
/// notice to one user outside any group's sequence (`seq` 0).
#[derive(Debug)]
pub struct Delivery {
    pub group: GroupId,
    pub seq: Seq,
    /// The JSON text of the `event` message (or of the notice).
    pub frame: Utf8Bytes,
    /// When it was committed, for the delivery-latency histogram.
    pub committed: Instant,
    /// What the event changes in the hub (membership, name, consent), applied in sequence
    /// order on every node.
    pub effect: Option<Effect>,
}

impl Delivery {
    /// A notice to a user: written to their sockets as it is, whatever they synced.
    pub fn notice(frame: Utf8Bytes) -> Self {
        Delivery {
            group: 0,
            seq: 0,
            frame,
            committed: Instant::now(),
            effect: None,
        }
    }

    pub fn is_notice(&self) -> bool {
        self.seq == 0
    }
}

/// What an event of a group's sequence changes in the hub.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Effect {
    /// `user` joined. `group` is the group as it stands after the event, so that a hub
    /// that never saw the group (created after it started) learns it here.
    Joined {
        user: UserId,
        group: GroupRecord,
    },
    /// `user` left or was removed.
    Left {
        user: UserId,
    },
    Renamed {
        name: String,
    },
    /// The consent record is on file.
    Consented,
    /// The group moved to the archive: it takes no posts.
    Archived,
    /// The group came back from the archive.
    Restored,
}

impl Effect {
    /// The effect of a stored event; `group` is the group's record, needed for joins.
    pub fn of(event: &EventRecord, group: Option<&GroupRecord>) -> Option<Self> {
        match &event.body {
            EventBody::Post { .. } => None,
            EventBody::MemberJoined { member, .. } => group.map(|group| Effect::Joined {
                user: member.id,
                group: group.clone(),
            }),
            EventBody::MemberLeft { member } | EventBody::MemberRemoved { member, .. } => {
                Some(Effect::Left { user: member.id })
            }
            EventBody::GroupRenamed { name, .. } => Some(Effect::Renamed { name: name.clone() }),
            EventBody::ConsentRecorded { .. } => Some(Effect::Consented),
            EventBody::GroupArchived { .. } => Some(Effect::Archived),
            EventBody::GroupRestored { .. } => Some(Effect::Restored),
            EventBody::DeletedPost { .. }
            | EventBody::PostDeleted { .. }
            | EventBody::PostConfirmed { .. }
            | EventBody::ArchiveNotice { .. } => None,
        }
    }
}

/// Why a socket is ended from outside its own task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ending {
    pub code: u16,
    pub reason: &'static str,
}

/// The slow-consumer ending.
pub const SLOW_CONSUMER: Ending = Ending {
    code: close::SLOW_CONSUMER,
    reason: "too slow: reconnect and sync",
};

/// The ending of the sockets of a session that was logged out.
pub const SESSION_ENDED: Ending = Ending {
    code: close::SESSION_ENDED,
    reason: "logged out",
};

/// The ending of the sockets of an account that can no longer be used.
pub const ACCOUNT_ENDED: Ending = Ending {
    code: close::ACCOUNT_ENDED,
    reason: "account no longer active",
};

/// A socket's queue of live events.
pub struct Outbox {
    queue: Mutex<Queue>,
    /// Wakes the socket's task when something was queued.
    ready: Notify,
    /// Cancelled when the socket must end (slow consumer, session ended).
    ended: CancellationToken,
    /// The byte limit of `queue`.
    limit: usize,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Arc<Delivery>>,
    bytes: usize,
    ending: Option<Ending>,
}

impl Outbox {
    /// An empty outbox holding at most `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Outbox {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            ended: CancellationToken::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a push or a swap), so a poisoned lock is still usable.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a delivery. Returns false when this push overflowed the queue and ended the
    /// socket (the caller counts slow consumers); pushes to an ended socket are dropped.
    pub fn push(&self, delivery: &Arc<Delivery>) -> bool {
        let mut queue = self.lock();
        if queue.ending.is_some() {
            return true;
        }
        let size = delivery.frame.len();
        if queue.bytes + size > self.limit {
            drop(queue);
            self.end(SLOW_CONSUMER);
            return false;
        }
        queue.bytes += size;
        queue.items.push_back(Arc::clone(delivery));
        drop(queue);
        self.ready.notify_one();
        true
    }

    /// Takes everything queued.
    pub fn take(&self) -> VecDeque<Arc<Delivery>> {
        let mut queue = self.lock();
        queue.bytes = 0;
        std::mem::take(&mut queue.items)
    }

    /// Waits until something is queued (or the socket is ended).
    pub async fn ready(&self) {
        self.ready.notified().await
    }

    /// Ends the socket: its task sends `ending` as the close frame and stops.
    pub fn end(&self, ending: Ending) {
        let mut queue = self.lock();
        if queue.ending.is_none() {
            queue.ending = Some(ending);
            queue.items.clear();
            queue.bytes = 0;
        }
        drop(queue);
        self.ended.cancel();
        self.ready.notify_one();
    }

    /// Why the socket was ended, if it was.
    pub fn ending(&self) -> Option<Ending> {
        self.lock().ending
    }

    /// Completes when the socket is ended.
    pub async fn ended(&self) {
        self.ended.cancelled().await
    }

    /// The byte limit.
    pub fn limit(&self) -> usize {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(seq: Seq, size: usize) -> Arc<Delivery> {
        Arc::new(Delivery {
            group: 1,
            seq,
            frame: Utf8Bytes::from("x".repeat(size)),
            committed: Instant::now(),
            effect: None,
        })
    }

    #[test]
    fn queues_in_order_within_the_limit() {
        let outbox = Outbox::new(10);
        assert!(outbox.push(&delivery(1, 4)));
        assert!(outbox.push(&delivery(2, 6)));
        let seqs: Vec<_> = outbox.take().iter().map(|d| d.seq).collect();
        assert_eq!(seqs, [1, 2]);
        assert!(outbox.push(&delivery(3, 10)), "taking frees the bytes");
        assert_eq!(outbox.ending(), None);
    }

    #[test]
    fn overflow_ends_the_socket_and_frees_the_queue() {
        let outbox = Outbox::new(10);
        assert!(outbox.push(&delivery(1, 8)));
        assert!(!outbox.push(&delivery(2, 8)));
        assert_eq!(outbox.ending(), Some(SLOW_CONSUMER));
        assert!(outbox.take().is_empty());
        assert!(
            outbox.push(&delivery(3, 1)),
            "pushes after the end are dropped quietly"
        );
        assert!(outbox.take().is_empty());
    }

    #[tokio::test]
    async fn ending_wakes_the_task() {
        let outbox = Outbox::new(10);
        outbox.end(SLOW_CONSUMER);
        outbox.ended().await;
        outbox.ready().await;
    }
}

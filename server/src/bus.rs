//! Fan-out of committed events, behind one type with two backends.
//!
//! In-process (the embedded default): the event goes straight to this node's hub.
//! Redis (several nodes): the event goes to this node's hub at once, and its serialized
//! bytes are published once to a Redis channel; every other node's subscriber hands them
//! to its own hub. Redis pub/sub drops messages when a connection breaks, so nothing relies
//! on it alone: a sequence gap is filled from the store, a reconnect and a periodic check
//! compare every group's last sequence number with the store's.

mod redis_bus;

use std::sync::Arc;

pub use redis_bus::{BusError, RedisBus};

use crate::hub::{Control, Hub};
use crate::outbox::Delivery;

/// Where committed events go.
#[derive(Clone)]
pub enum Bus {
    InProcess(Arc<Hub>),
    Redis(Arc<RedisBus>),
}

impl Bus {
    /// Delivers a committed event on this node and, with Redis, to every other node.
    pub fn publish(&self, delivery: Arc<Delivery>) {
        match self {
            Bus::InProcess(hub) => {
                // One node, one writer per group: events arrive in order, so a gap means a
                // bug. Say so loudly rather than hold the group's events back silently.
                if let Some(gap) = hub.deliver(delivery) {
                    tracing::error!(?gap, "sequence gap on a single node");
                }
            }
            Bus::Redis(redis) => redis.publish(delivery),
        }
    }

    /// Acts on a control message on this node and, with Redis, on every other node.
    pub fn control(&self, control: Control) {
        match self {
            Bus::InProcess(hub) => hub.control(&control),
            Bus::Redis(redis) => redis.control(control),
        }
    }

    /// Ends, on every node, the sockets of the session whose token hashes to `session`.
    pub fn end_session(&self, session: &[u8]) {
        self.control(Control::SessionEnded(session.to_vec()));
    }

    /// Sends a notice to every socket of `user`, on every node.
    pub fn notify(&self, user: renkei_protocol::UserId, message: &renkei_protocol::ServerMessage) {
        self.control(Control::Notice {
            user,
            frame: crate::wire::frame(message).as_str().to_string(),
        });
    }
}

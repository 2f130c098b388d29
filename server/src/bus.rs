//! Fan-out of committed events, behind one type with two backends.
//!
//! In-process (the embedded default): the event goes straight to this node's hub.
//! Redis (several nodes): the event goes to this node's hub at once, and its serialized
//! bytes are published once to a Redis channel; every other node's subscriber hands them
//! to its own hub. Redis pub/sub drops messages when a connection breaks, so nothing relies
//! on it alone: a sequence gap is filled from the store, a reconnect and a periodic check
//! compare every group's last sequence number with the store's. Between nodes every
//! message is sealed in a versioned envelope (`envelope`) under the installation's key.

pub mod envelope;
mod recovery;
mod redis_bus;

use std::sync::Arc;

pub use recovery::Recovery;
pub use redis_bus::{BusError, RedisBus};

use crate::hub::Control;
use crate::outbox::Delivery;

/// Where committed events go.
#[derive(Clone)]
pub enum Bus {
    InProcess(Arc<Recovery>),
    Redis(Arc<RedisBus>),
}

impl Bus {
    /// Delivers a committed event on this node and, with Redis, to every other node.
    pub fn publish(&self, delivery: Arc<Delivery>) {
        match self {
            // One node, one writer per group: events arrive in order, and a gap comes
            // only from a commit whose answer was lost (filled from the store).
            Bus::InProcess(recovery) => recovery.deliver(delivery),
            Bus::Redis(redis) => redis.publish(delivery),
        }
    }

    /// Makes sure this node delivers `group` up to `seq`: a post the store found stored by
    /// an earlier commit whose answer (and so its publication) was lost.
    pub fn ensure(&self, group: renkei_protocol::GroupId, seq: renkei_protocol::Seq) {
        match self {
            Bus::InProcess(recovery) => recovery.ensure(group, seq),
            Bus::Redis(redis) => redis.recovery.ensure(group, seq),
        }
    }

    /// Acts on a control message on this node and, with Redis, on every other node.
    pub fn control(&self, control: Control) {
        match self {
            Bus::InProcess(recovery) => recovery.hub.control(&control),
            Bus::Redis(redis) => redis.control(control),
        }
    }

    /// Ends, on every node, the sockets of the session whose token hashes to `session`.
    pub fn end_session(&self, session: &[u8]) {
        self.control(Control::SessionEnded(session.to_vec()));
    }

    /// Sends a notice to every socket of every member of `group`, on every node.
    pub fn notify_group(
        &self,
        group: renkei_protocol::GroupId,
        message: &renkei_protocol::ServerMessage,
    ) {
        self.control(Control::GroupNotice {
            group,
            frame: crate::wire::frame(message).as_str().to_string(),
        });
    }

    /// Sends a notice to every socket of `user`, on every node.
    pub fn notify(&self, user: renkei_protocol::UserId, message: &renkei_protocol::ServerMessage) {
        self.control(Control::Notice {
            user,
            frame: crate::wire::frame(message).as_str().to_string(),
        });
    }
}

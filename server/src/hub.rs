//! The hub: who is in which group, which sockets are open, and fan-out.
//!
//! It holds the membership of every group in memory, loaded from the store at start-up
//! (the database stays the source of truth; every change goes to the store first, then
//! here), so checking a post costs no query. Fan-out walks a group's members and pushes
//! the shared bytes of an event into each of their sockets' outboxes without waiting.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use renkei_protocol::{GroupId, Seq, UserId};

use crate::metrics::Metrics;
use crate::outbox::{Delivery, Ending, Outbox};
use crate::policy::GroupFacts;
use crate::store::{Directory, GroupRecord};
use crate::throttle::TokenBucket;

/// The in-memory directory and the socket registry.
pub struct Hub {
    state: RwLock<State>,
    metrics: Arc<Metrics>,
    limits: HubLimits,
}

/// The limits the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    pub max_connections_per_user: usize,
    pub outbox_bytes: usize,
    pub posts_per_second: u32,
    pub post_burst: u32,
}

#[derive(Default)]
struct State {
    groups: HashMap<GroupId, GroupEntry>,
    users: HashMap<UserId, UserEntry>,
    next_socket: u64,
}

struct GroupEntry {
    /// The group as loaded; its `last_seq` is stale, see `last_seq` below.
    record: GroupRecord,
    /// The latest sequence number dispatched. Stored before the event is pushed to any
    /// socket, so whoever reads `n` here will find every event up to `n` in the store and
    /// every later one in its outbox.
    last_seq: AtomicI64,
    members: HashSet<UserId>,
}

#[derive(Default)]
struct UserEntry {
    groups: HashSet<GroupId>,
    sockets: Vec<Socket>,
    /// Shared by all of the user's sockets, so more devices do not mean more posts.
    posts: Option<Arc<Mutex<TokenBucket>>>,
}

struct Socket {
    id: u64,
    session: Arc<[u8]>,
    outbox: Arc<Outbox>,
}

/// Why a socket could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("too many connections for this user")]
    TooManyConnections,
}

/// A registered socket; dropping it unregisters the socket.
pub struct Registration {
    hub: Arc<Hub>,
    user: UserId,
    socket: u64,
    /// The socket's outgoing queue.
    pub outbox: Arc<Outbox>,
    /// The user's groups at registration, with their latest sequence numbers.
    pub groups: Vec<GroupRecord>,
    /// The user's post budget.
    pub posts: Arc<Mutex<TokenBucket>>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.user, self.socket);
    }
}

impl Hub {
    /// A hub holding `directory`.
    pub fn new(directory: Directory, limits: HubLimits, metrics: Arc<Metrics>) -> Self {
        let mut state = State::default();
        for record in directory.groups {
            state.groups.insert(
                record.id,
                GroupEntry {
                    last_seq: AtomicI64::new(record.last_seq),
                    record,
                    members: HashSet::new(),
                },
            );
        }
        for (group, user) in directory.memberships {
            if let Some(entry) = state.groups.get_mut(&group) {
                entry.members.insert(user);
                state.users.entry(user).or_default().groups.insert(group);
            }
        }
        Hub {
            state: RwLock::new(state),
            metrics,
            limits,
        }
    }

    // A panic while holding the lock leaves each map consistent (every critical section
    // is a single insert, remove or read), so a poisoned lock is still usable.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the policy needs to know about `user` and `group`.
    pub fn facts(&self, user: UserId, group: GroupId) -> GroupFacts {
        let state = self.read();
        match state.groups.get(&group) {
            Some(entry) => GroupFacts {
                exists: true,
                actor_is_member: entry.members.contains(&user),
                archived: entry.record.archived,
            },
            None => GroupFacts {
                exists: false,
                actor_is_member: false,
                archived: false,
            },
        }
    }

    /// The latest sequence number the hub has delivered for `group`.
    pub fn last_seq(&self, group: GroupId) -> Seq {
        self.read()
            .groups
            .get(&group)
            .map_or(0, |entry| entry.last_seq.load(Ordering::SeqCst))
    }

    /// Registers a socket of `user`, opened with the session whose token hashes to `session`.
    pub fn register(
        self: &Arc<Self>,
        user: UserId,
        session: Arc<[u8]>,
    ) -> Result<Registration, HubError> {
        let mut state = self.write();
        state.next_socket += 1;
        let id = state.next_socket;
        let State { groups, users, .. } = &mut *state;
        let entry = users.entry(user).or_default();
        if entry.sockets.len() >= self.limits.max_connections_per_user {
            return Err(HubError::TooManyConnections);
        }
        let outbox = Arc::new(Outbox::new(self.limits.outbox_bytes));
        entry.sockets.push(Socket {
            id,
            session,
            outbox: Arc::clone(&outbox),
        });
        let posts = entry
            .posts
            .get_or_insert_with(|| {
                Arc::new(Mutex::new(TokenBucket::new(
                    self.limits.posts_per_second,
                    self.limits.post_burst,
                )))
            })
            .clone();
        let mut mine: Vec<GroupRecord> = entry
            .groups
            .iter()
            .filter_map(|g| {
                groups.get(g).map(|e| GroupRecord {
                    last_seq: e.last_seq.load(Ordering::SeqCst),
                    ..e.record.clone()
                })
            })
            .collect();
        mine.sort_by_key(|g| g.id);
        self.metrics.connections.inc();
        Ok(Registration {
            hub: Arc::clone(self),
            user,
            socket: id,
            outbox,
            groups: mine,
            posts,
        })
    }

    fn unregister(&self, user: UserId, socket: u64) {
        let mut state = self.write();
        if let Some(entry) = state.users.get_mut(&user) {
            let before = entry.sockets.len();
            entry.sockets.retain(|s| s.id != socket);
            if entry.sockets.len() < before {
                self.metrics.connections.dec();
            }
        }
    }

    /// Ends every socket opened with the session whose token hashes to `session`.
    pub fn end_session(&self, session: &[u8], ending: Ending) {
        let state = self.read();
        for entry in state.users.values() {
            for socket in entry.sockets.iter().filter(|s| &*s.session == session) {
                socket.outbox.end(ending);
            }
        }
    }

    /// Ends every socket (server shutdown).
    pub fn end_all(&self, ending: Ending) {
        let state = self.read();
        for socket in state.users.values().flat_map(|u| &u.sockets) {
            socket.outbox.end(ending);
        }
    }

    /// Fans a committed event out to every socket of every member of its group. Events of
    /// one group must be dispatched in sequence order, by one task at a time.
    pub fn dispatch(&self, delivery: &Arc<Delivery>) {
        let state = self.read();
        let Some(group) = state.groups.get(&delivery.group) else {
            return;
        };
        group.last_seq.fetch_max(delivery.seq, Ordering::SeqCst);
        for member in &group.members {
            for socket in state.users.get(member).map_or(&[][..], |u| &u.sockets[..]) {
                if !socket.outbox.push(delivery) {
                    self.metrics.slow_consumers.inc();
                }
            }
        }
    }
}

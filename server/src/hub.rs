//! The hub: who is in which group, which sockets are open, and fan-out.
//!
//! It holds the membership of every group in memory, loaded from the store at start-up
//! (the database stays the source of truth), so checking a post costs no query. Every
//! later change (a join, a removal, a rename, a consent) is an event of the group's
//! sequence carrying an [`Effect`], applied here when the event is delivered — in sequence
//! order, on every node — so a post after a removal never reaches the removed member.
//! Fan-out walks a group's members and pushes the shared bytes of an event into each of
//! their sockets' outboxes without waiting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use renkei_domain::policy::GroupFacts;
use renkei_protocol::{GroupId, Seq, UserId};

use crate::metrics::Metrics;
use crate::outbox::{Delivery, Effect, Outbox, ACCOUNT_ENDED, SESSION_ENDED};
use crate::store::{Directory, GroupRecord};
use crate::throttle::TokenBucket;

/// The in-memory directory and the socket registry.
pub struct Hub {
    state: RwLock<State>,
    metrics: Arc<Metrics>,
    limits: HubLimits,
    /// Woken when whether a user has a visible page here may have changed (a socket said
    /// so, or closed): the presence writer then tells the other nodes.
    pub visibility_changed: tokio::sync::Notify,
}

/// The limits the hub enforces.
#[derive(Debug, Clone, Copy)]
pub struct HubLimits {
    pub max_connections_per_user: usize,
    pub outbox_bytes: usize,
    pub posts_per_second: u32,
    pub post_burst: u32,
    /// Whether members keep reading a group once it is archived.
    pub archive_readable_by_members: bool,
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
    /// Events that arrived ahead of a missing one (from other nodes), by sequence number.
    /// Its lock also makes delivery to the group one at a time.
    early: Mutex<BTreeMap<Seq, Arc<Delivery>>>,
    members: HashSet<UserId>,
}

impl GroupEntry {
    fn new(record: GroupRecord) -> Self {
        GroupEntry {
            last_seq: AtomicI64::new(record.last_seq),
            early: Mutex::new(BTreeMap::new()),
            record,
            members: HashSet::new(),
        }
    }
}

/// What nodes tell each other besides events: per session or per user, not per group.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// A session ended (its token's hash): its sockets close.
    SessionEnded(Vec<u8>),
    /// An account can no longer be used: every socket of it closes.
    AccountEnded { user: UserId },
    /// An account was restricted to reading, or reinstated.
    Restricted { user: UserId, restricted: bool },
    /// A notice (a serialized server message) for every socket of a user.
    Notice { user: UserId, frame: String },
    /// A group was purged for good (retention): it no longer exists.
    GroupPurged { group: GroupId },
    /// A notice (a serialized server message) for every socket of every member of a group.
    GroupNotice { group: GroupId, frame: String },
}

/// Events missing from a group's sequence: `after < seq <= upto` has not arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub group: GroupId,
    pub after: Seq,
    pub upto: Seq,
}

/// The records of `ids`, by id, with their latest sequence numbers.
fn records_of(groups: &HashMap<GroupId, GroupEntry>, ids: &HashSet<GroupId>) -> Vec<GroupRecord> {
    let mut records: Vec<GroupRecord> = ids
        .iter()
        .filter_map(|g| {
            groups.get(g).map(|e| GroupRecord {
                last_seq: e.last_seq.load(Ordering::SeqCst),
                ..e.record.clone()
            })
        })
        .collect();
    records.sort_by_key(|g| g.id);
    records
}

/// Events a group holds back waiting for a missing one; beyond this they are dropped
/// (and read again from the store when the gap is recovered).
const MAX_EARLY: usize = 4096;

#[derive(Default)]
struct UserEntry {
    groups: HashSet<GroupId>,
    /// Restricted to reading (別紙(2)).
    restricted: bool,
    sockets: Vec<Socket>,
    /// Shared by all of the user's sockets, so more devices do not mean more posts.
    posts: Option<Arc<Mutex<TokenBucket>>>,
}

struct Socket {
    id: u64,
    session: Arc<[u8]>,
    outbox: Arc<Outbox>,
    /// Its page is visible to its user (the client says so); a user with a visible
    /// socket on any node gets no push. Until told otherwise a socket counts as visible.
    visible: bool,
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

impl Registration {
    /// Records whether this socket's page is visible.
    pub fn set_visible(&self, visible: bool) {
        let changed = {
            let mut state = self.hub.write();
            let Some(entry) = state.users.get_mut(&self.user) else {
                return;
            };
            let before = entry.sockets.iter().any(|s| s.visible);
            if let Some(socket) = entry.sockets.iter_mut().find(|s| s.id == self.socket) {
                socket.visible = visible;
            }
            before != entry.sockets.iter().any(|s| s.visible)
        };
        if changed {
            self.hub.visibility_changed.notify_one();
        }
    }
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
            state.groups.insert(record.id, GroupEntry::new(record));
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
            visibility_changed: tokio::sync::Notify::new(),
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

    /// What the policy needs to know about `user` and `group`: whether the user is
    /// restricted to reading (as this node last heard), and the group's facts. One look
    /// under the lock, for every post.
    pub fn facts(&self, user: UserId, group: GroupId) -> (bool, GroupFacts) {
        let state = self.read();
        let restricted = state.users.get(&user).is_some_and(|u| u.restricted);
        let facts = match state.groups.get(&group) {
            Some(entry) => GroupFacts {
                exists: true,
                actor_is_member: entry.members.contains(&user),
                owner: entry.record.owner_facility_id,
                archived: entry.record.archived,
                needs_consent: entry.record.needs_consent,
                admins_room: entry.record.admins_room,
                members_read_archive: self.limits.archive_readable_by_members,
            },
            None => GroupFacts::default(),
        };
        (restricted, facts)
    }

    /// The latest sequence number the hub has delivered for `group`.
    pub fn last_seq(&self, group: GroupId) -> Seq {
        self.read()
            .groups
            .get(&group)
            .map_or(0, |entry| entry.last_seq.load(Ordering::SeqCst))
    }

    /// Registers a socket of `user`, opened with the session whose token hashes to `session`.
    /// `restricted` is the account's state as just read from the store.
    pub fn register(
        self: &Arc<Self>,
        user: UserId,
        restricted: bool,
        session: Arc<[u8]>,
    ) -> Result<Registration, HubError> {
        let mut state = self.write();
        state.next_socket += 1;
        let id = state.next_socket;
        let State { groups, users, .. } = &mut *state;
        let entry = users.entry(user).or_default();
        entry.restricted = restricted;
        if entry.sockets.len() >= self.limits.max_connections_per_user {
            return Err(HubError::TooManyConnections);
        }
        let outbox = Arc::new(Outbox::new(self.limits.outbox_bytes));
        entry.sockets.push(Socket {
            id,
            session,
            outbox: Arc::clone(&outbox),
            visible: true,
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
        let mine = records_of(groups, &entry.groups);
        self.metrics.connections.inc();
        drop(state);
        // A new socket counts as a visible page until it says otherwise.
        self.visibility_changed.notify_one();
        Ok(Registration {
            hub: Arc::clone(self),
            user,
            socket: id,
            outbox,
            groups: mine,
            posts,
        })
    }

    /// The groups `user` is a member of, by id, with their latest sequence numbers.
    pub fn groups_of(&self, user: UserId) -> Vec<GroupRecord> {
        let state = self.read();
        state
            .users
            .get(&user)
            .map_or_else(Vec::new, |entry| records_of(&state.groups, &entry.groups))
    }

    /// How many groups `user` is a member of.
    pub fn group_count(&self, user: UserId) -> usize {
        self.read()
            .users
            .get(&user)
            .map_or(0, |entry| entry.groups.len())
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
        drop(state);
        self.visibility_changed.notify_one();
    }

    /// The users with a visible page on this node.
    pub fn visible_users(&self) -> Vec<UserId> {
        self.read()
            .users
            .iter()
            .filter(|(_, entry)| entry.sockets.iter().any(|s| s.visible))
            .map(|(user, _)| *user)
            .collect()
    }

    /// The sessions of this node's open sockets, each once.
    pub fn open_sessions(&self) -> Vec<Vec<u8>> {
        let state = self.read();
        let sessions: HashSet<&[u8]> = state
            .users
            .values()
            .flat_map(|entry| entry.sockets.iter().map(|s| &*s.session))
            .collect();
        sessions.into_iter().map(<[u8]>::to_vec).collect()
    }

    /// Acts on a control message (from this node or, through the bus, another one).
    pub fn control(&self, control: &Control) {
        match control {
            Control::SessionEnded(session) => {
                let state = self.read();
                for entry in state.users.values() {
                    for socket in entry.sockets.iter().filter(|s| *s.session == session[..]) {
                        socket.outbox.end(SESSION_ENDED);
                    }
                }
            }
            Control::AccountEnded { user } => self.each_socket(*user, |outbox| {
                outbox.end(ACCOUNT_ENDED);
            }),
            Control::GroupPurged { group } => {
                let mut state = self.write();
                if let Some(entry) = state.groups.remove(group) {
                    for member in entry.members {
                        if let Some(user) = state.users.get_mut(&member) {
                            user.groups.remove(group);
                        }
                    }
                }
            }
            Control::Restricted { user, restricted } => {
                self.write().users.entry(*user).or_default().restricted = *restricted;
            }
            Control::Notice { user, frame } => {
                let notice = Arc::new(Delivery::notice(frame.as_str().into()));
                self.each_socket(*user, |outbox| self.push_notice(outbox, &notice));
            }
            Control::GroupNotice { group, frame } => {
                let notice = Arc::new(Delivery::notice(frame.as_str().into()));
                let state = self.read();
                let Some(entry) = state.groups.get(group) else {
                    return;
                };
                for member in &entry.members {
                    for socket in state.users.get(member).map_or(&[][..], |u| &u.sockets[..]) {
                        self.push_notice(&socket.outbox, &notice);
                    }
                }
            }
        }
    }

    fn push_notice(&self, outbox: &Outbox, notice: &Arc<Delivery>) {
        if !outbox.push(notice) {
            self.metrics.slow_consumers.inc();
        }
    }

    fn each_socket(&self, user: UserId, mut act: impl FnMut(&Outbox)) {
        let state = self.read();
        for socket in state.users.get(&user).map_or(&[][..], |u| &u.sockets[..]) {
            act(&socket.outbox);
        }
    }

    /// Delivers a committed event to every socket of every member of its group, in
    /// sequence order, applying its effect first (a join, a rename) or last (a departure:
    /// the leaving member still sees it). An event that arrives before an earlier one
    /// waits, and the gap is returned so that the caller can fetch what is missing from
    /// the store. Events delivered already are ignored.
    pub fn deliver(&self, delivery: Arc<Delivery>) -> Option<Gap> {
        if delivery.effect.is_none() {
            // The common case, under the shared lock: a post, next in line, nothing waiting.
            let state = self.read();
            let group = state.groups.get(&delivery.group)?;
            let early = group.early.lock().unwrap_or_else(PoisonError::into_inner);
            let last = group.last_seq.load(Ordering::SeqCst);
            if delivery.seq <= last {
                return None;
            }
            if delivery.seq == last + 1 && early.is_empty() {
                self.fan_out(&state, group, &delivery);
                return None;
            }
        }
        // Effects change membership, and waiting events may carry effects: exclusively.
        let id = delivery.group;
        let mut state = self.write();
        if let Some(Effect::Joined { group, .. }) = &delivery.effect {
            state.groups.entry(id).or_insert_with(|| {
                GroupEntry::new(GroupRecord {
                    last_seq: delivery.seq - 1,
                    ..group.clone()
                })
            });
        }
        let group = state.groups.get(&id)?;
        let last = group.last_seq.load(Ordering::SeqCst);
        let mut early =
            std::mem::take(&mut *group.early.lock().unwrap_or_else(PoisonError::into_inner));
        if delivery.seq > last {
            early.insert(delivery.seq, delivery);
        }
        let mut next = last + 1;
        while let Some(ready) = early.remove(&next) {
            self.apply(&mut state, &ready);
            next += 1;
        }
        let gap = early.keys().next().map(|first| Gap {
            group: id,
            after: next - 1,
            upto: first - 1,
        });
        while early.len() > MAX_EARLY {
            early.pop_last();
        }
        if let Some(group) = state.groups.get(&id) {
            *group.early.lock().unwrap_or_else(PoisonError::into_inner) = early;
        }
        gap
    }

    /// Applies an event's effect around its fan-out.
    fn apply(&self, state: &mut State, delivery: &Arc<Delivery>) {
        let id = delivery.group;
        let Some(group) = state.groups.get_mut(&id) else {
            return;
        };
        match &delivery.effect {
            Some(Effect::Joined { user, group: after }) => {
                group.members.insert(*user);
                group.record = GroupRecord {
                    last_seq: group.record.last_seq,
                    ..after.clone()
                };
                state.users.entry(*user).or_default().groups.insert(id);
            }
            Some(Effect::Renamed { name }) => group.record.name = name.clone(),
            Some(Effect::Consented) => group.record.needs_consent = false,
            Some(Effect::Archived) => group.record.archived = true,
            Some(Effect::Restored) => group.record.archived = false,
            Some(Effect::Left { .. }) | None => {}
        }
        if let Some(group) = state.groups.get(&id) {
            self.fan_out(state, group, delivery);
        }
        if let Some(Effect::Left { user }) = &delivery.effect {
            if let Some(group) = state.groups.get_mut(&id) {
                group.members.remove(user);
            }
            if let Some(entry) = state.users.get_mut(user) {
                entry.groups.remove(&id);
            }
        }
    }

    /// Pushes one event, the next of its group, into every member's sockets.
    fn fan_out(&self, state: &State, group: &GroupEntry, delivery: &Arc<Delivery>) {
        // Stored before any push: whoever reads `n` finds every event up to `n` in the
        // store and every later one in its outbox.
        group.last_seq.store(delivery.seq, Ordering::SeqCst);
        for member in &group.members {
            for socket in state.users.get(member).map_or(&[][..], |u| &u.sockets[..]) {
                if !socket.outbox.push(delivery) {
                    self.metrics.slow_consumers.inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::GroupRecord;
    use renkei_protocol::GroupKind;
    use std::time::Instant;

    fn hub() -> Arc<Hub> {
        let directory = Directory {
            groups: vec![GroupRecord {
                id: 1,
                kind: GroupKind::Patient,
                name: "g".into(),
                patient_name: Some("p".into()),
                owner_facility_id: None,
                archived: false,
                needs_consent: false,
                admins_room: false,
                last_seq: 0,
            }],
            memberships: vec![(1, 10)],
        };
        let limits = HubLimits {
            max_connections_per_user: 4,
            outbox_bytes: 1 << 20,
            posts_per_second: 1,
            post_burst: 1,
            archive_readable_by_members: true,
        };
        Arc::new(Hub::new(directory, limits, Arc::new(Metrics::new())))
    }

    fn event(seq: Seq) -> Arc<Delivery> {
        Arc::new(Delivery {
            group: 1,
            seq,
            frame: format!("{seq}").into(),
            committed: Instant::now(),
            effect: None,
        })
    }

    fn change(group: GroupId, seq: Seq, effect: Effect) -> Arc<Delivery> {
        Arc::new(Delivery {
            group,
            seq,
            frame: format!("{seq}").into(),
            committed: Instant::now(),
            effect: Some(effect),
        })
    }

    #[test]
    fn membership_follows_the_sequence_and_unknown_groups_are_learnt_from_a_join() {
        let hub = hub();
        let newcomer = hub
            .register(20, false, Arc::from(&b"n"[..]))
            .expect("register");
        let record = |id| GroupRecord {
            id,
            kind: GroupKind::Free,
            name: "new".into(),
            patient_name: None,
            owner_facility_id: None,
            archived: false,
            needs_consent: false,
            admins_room: false,
            last_seq: 1,
        };
        // Group 1 exists; 20 joins it at seq 1, hears seq 2, leaves at 3, misses 4.
        assert_eq!(
            hub.deliver(change(
                1,
                1,
                Effect::Joined {
                    user: 20,
                    group: record(1)
                }
            )),
            None
        );
        assert!(hub.facts(20, 1).1.actor_is_member);
        assert_eq!(hub.deliver(event(2)), None);
        assert_eq!(hub.deliver(change(1, 3, Effect::Left { user: 20 })), None);
        assert!(!hub.facts(20, 1).1.actor_is_member);
        assert_eq!(hub.deliver(event(4)), None);
        let seqs: Vec<Seq> = newcomer.outbox.take().iter().map(|d| d.seq).collect();
        assert_eq!(seqs, [1, 2, 3], "the departure is seen, nothing after it");
        // Group 9 was created elsewhere: its first event (the creator's join) teaches it.
        assert!(!hub.facts(20, 9).1.exists);
        assert_eq!(
            hub.deliver(change(
                9,
                1,
                Effect::Joined {
                    user: 20,
                    group: record(9)
                }
            )),
            None
        );
        assert!(hub.facts(20, 9).1.actor_is_member);
        assert_eq!(newcomer.outbox.take().len(), 1);
        // A change that arrives early waits for its turn like any event.
        let rename = change(
            9,
            3,
            Effect::Renamed {
                name: "renamed".into(),
            },
        );
        assert!(hub.deliver(rename).is_some(), "seq 2 is missing");
        let post = Arc::new(Delivery {
            group: 9,
            seq: 2,
            frame: "2".into(),
            committed: Instant::now(),
            effect: None,
        });
        assert_eq!(hub.deliver(post), None);
        assert_eq!(hub.last_seq(9), 3);
    }

    #[test]
    fn events_reach_sockets_in_order_whatever_order_they_arrive_in() {
        let hub = hub();
        let socket = hub
            .register(10, false, Arc::from(&b"s"[..]))
            .expect("register");
        assert_eq!(hub.deliver(event(1)), None);
        assert_eq!(
            hub.deliver(event(3)),
            Some(Gap {
                group: 1,
                after: 1,
                upto: 2
            })
        );
        assert_eq!(
            hub.deliver(event(4)),
            Some(Gap {
                group: 1,
                after: 1,
                upto: 2
            })
        );
        assert_eq!(hub.last_seq(1), 1, "3 and 4 wait for 2");
        assert_eq!(hub.deliver(event(2)), None);
        assert_eq!(hub.deliver(event(3)), None, "delivered already: ignored");
        let seqs: Vec<Seq> = socket.outbox.take().iter().map(|d| d.seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
        assert_eq!(hub.last_seq(1), 4);
        let gap = Gap {
            group: 1,
            after: 4,
            upto: 6,
        };
        assert_eq!(
            hub.deliver(event(7)),
            Some(gap),
            "a later gap is reported as such"
        );
    }
}

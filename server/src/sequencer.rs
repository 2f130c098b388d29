//! The sequencer: the only writer of group events.
//!
//! Posts and changes (joins, removals, renames, consents) queue per shard (a group always maps to the same shard, so its events are committed
//! and published by one task, in sequence order). A shard takes everything queued, up to a
//! batch limit, commits it in one transaction, publishes each new event on the bus, and
//! only then acknowledges: an ack always means "committed". A failed commit acknowledges
//! nothing and answers every post of the batch with a retryable error. A change commits
//! alone, in its place in the queue, and is published the same way.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures::FutureExt as _;
use renkei_protocol::api::MentionView;
use renkei_protocol::{ErrorCode, EventData, GroupEvent, GroupId, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::bus::Bus;
use crate::metrics::Metrics;
use crate::outbox::Delivery;
use crate::outbox::Effect;
use crate::store::{
    AppendOutcome, Change, Changed, NewPost, Placement, Store, StoreError, UserRecord,
};
use crate::wire;

/// The most posts one transaction commits.
const MAX_BATCH: usize = 256;
/// Posts waiting per shard before `submit` waits (backpressure on the posting sockets).
const QUEUE: usize = 4096;

/// Why a post was not committed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostError {
    #[error("the client id was used before for a different post")]
    ClientIdConflict,
    #[error("the group is archived")]
    GroupArchived,
    #[error("no such group")]
    NoSuchGroup,
    #[error("you may no longer post in this group")]
    Refused,
    #[error("no such file of yours to attach: upload it into this group first")]
    FileUnavailable,
    #[error("the database is unavailable; nothing was stored")]
    Unavailable,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("internal error; nothing was stored")]
    Internal,
}

impl PostError {
    /// The wire code of a failed post.
    pub fn code(&self) -> ErrorCode {
        match self {
            PostError::ClientIdConflict => ErrorCode::ClientIdConflict,
            PostError::GroupArchived => ErrorCode::GroupArchived,
            PostError::NoSuchGroup => ErrorCode::NotMember,
            PostError::FileUnavailable => ErrorCode::NotFound,
            PostError::Refused => ErrorCode::Forbidden,
            PostError::Unavailable => ErrorCode::Unavailable,
            PostError::ShuttingDown => ErrorCode::ShuttingDown,
            PostError::Internal => ErrorCode::Internal,
        }
    }
}

/// A post to commit.
pub struct PostRequest {
    pub group: renkei_protocol::GroupId,
    pub author: Arc<UserRecord>,
    pub client_id: String,
    pub text: String,
    /// The file to attach, as the author uploaded it.
    pub file: Option<renkei_protocol::FileRef>,
}

/// Why a change was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("internal error; nothing was stored")]
    Internal,
}

struct PostJob {
    post: NewPost,
    reply: oneshot::Sender<Result<Placement, PostError>>,
}

struct ChangeJob {
    group: GroupId,
    change: Change,
    reply: oneshot::Sender<Result<Changed, StoreError>>,
}

enum Job {
    Post(PostJob),
    Change(ChangeJob),
}

/// The handle through which sockets submit posts.
#[derive(Clone)]
pub struct Sequencer {
    shards: Arc<[mpsc::Sender<Job>]>,
}

impl Sequencer {
    /// Starts `shards` writer tasks (1 for SQLite, which has one writer anyway). They stop
    /// when every handle is dropped and their queues are empty.
    pub fn start(
        shards: usize,
        store: Arc<dyn Store>,
        bus: Bus,
        metrics: Arc<Metrics>,
        committed: Arc<tokio::sync::Notify>,
        clock: renkei_domain::clock::Clock,
    ) -> (Self, Vec<JoinHandle<()>>) {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..shards.max(1) {
            let (tx, rx) = mpsc::channel(QUEUE);
            senders.push(tx);
            let shard = Shard {
                queue: rx,
                store: Arc::clone(&store),
                bus: bus.clone(),
                metrics: Arc::clone(&metrics),
                committed: Arc::clone(&committed),
                clock: clock.clone(),
            };
            tasks.push(tokio::spawn(shard.run()));
        }
        (
            Sequencer {
                shards: senders.into(),
            },
            tasks,
        )
    }

    /// Commits a post and returns where it stands; a retry with the same client id
    /// returns the original placement.
    pub async fn submit(&self, request: PostRequest) -> Result<Placement, PostError> {
        let shard = self.shard(request.group);
        let (reply, answer) = oneshot::channel();
        let post = NewPost {
            file: request.file,
            ..NewPost::new(
                request.group,
                request.author,
                request.client_id,
                request.text,
            )
        };
        self.shards[shard]
            .send(Job::Post(PostJob { post, reply }))
            .await
            .map_err(|_| PostError::ShuttingDown)?;
        // A shard only drops a reply unanswered when its commit panicked (it outlives every
        // sender, so it cannot have stopped).
        answer.await.map_err(|_| PostError::Internal)?
    }

    /// Commits a change to a group as the next event of its sequence, and publishes it.
    pub async fn change(&self, group: GroupId, change: Change) -> Result<Changed, ChangeError> {
        let (reply, answer) = oneshot::channel();
        self.shards[self.shard(group)]
            .send(Job::Change(ChangeJob {
                group,
                change,
                reply,
            }))
            .await
            .map_err(|_| ChangeError::ShuttingDown)?;
        Ok(answer.await.map_err(|_| ChangeError::Internal)??)
    }

    fn shard(&self, group: GroupId) -> usize {
        group.unsigned_abs() as usize % self.shards.len()
    }
}

struct Shard {
    queue: mpsc::Receiver<Job>,
    store: Arc<dyn Store>,
    bus: Bus,
    metrics: Arc<Metrics>,
    /// Woken after each commit of posts: the notifications follower reads what was
    /// committed (off this path; a wake-up is one atomic operation).
    committed: Arc<tokio::sync::Notify>,
    /// The time events are stamped with (a test's clock in tests).
    clock: renkei_domain::clock::Clock,
}

impl Shard {
    async fn run(mut self) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while self.queue.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // Posts between changes commit as one batch; each change commits alone, in
            // its place.
            let mut posts = Vec::new();
            for job in jobs.drain(..) {
                match job {
                    Job::Post(post) => posts.push(post),
                    Job::Change(change) => {
                        self.guarded(self.commit(std::mem::take(&mut posts))).await;
                        self.guarded(self.commit_change(change)).await;
                    }
                }
            }
            self.guarded(self.commit(posts)).await;
        }
    }

    /// A bug that panics inside a commit costs that commit (its posts are answered
    /// `internal`, nothing acknowledged), not the shard and every later post.
    async fn guarded(&self, commit: impl std::future::Future<Output = ()>) {
        if AssertUnwindSafe(commit).catch_unwind().await.is_err() {
            tracing::error!("commit panicked; its jobs were answered with internal errors");
        }
    }

    async fn commit_change(&self, job: ChangeJob) {
        let result = self
            .store
            .apply_change(job.group, &job.change, self.clock.now())
            .await;
        if let Ok(changed) = &result {
            self.bus.publish(Arc::new(Delivery {
                group: changed.event.group,
                seq: changed.event.seq,
                frame: wire::frame(&ServerMessage::Event(wire::event(&changed.event))),
                committed: Instant::now(),
                effect: Effect::of(&changed.event, Some(&changed.group)),
            }));
        }
        let _ = job.reply.send(result);
    }

    async fn commit(&self, batch: Vec<PostJob>) {
        if batch.is_empty() {
            return;
        }
        let at = self.clock.now();
        let (posts, replies): (Vec<NewPost>, Vec<_>) = batch
            .into_iter()
            .map(|job| (NewPost { at, ..job.post }, job.reply))
            .unzip();
        self.metrics.batch_size.observe(posts.len() as f64);
        let mut result = self.store.append_posts(&posts).await;
        if matches!(result, Err(StoreError::Conflict(_))) {
            // Another shard committed the same client id in between (an author reusing an
            // id across groups); once more, the check inside the transaction sees it.
            result = self.store.append_posts(&posts).await;
        }
        let outcomes = match result {
            Ok(outcomes) => outcomes,
            Err(err) => {
                tracing::error!(error = %err, posts = posts.len(), "commit failed; nothing acknowledged");
                for reply in replies {
                    // The socket may have gone away; its client retries with the same id.
                    let _ = reply.send(Err(PostError::Unavailable));
                }
                return;
            }
        };
        let committed = Instant::now();
        for ((post, reply), outcome) in posts.iter().zip(replies).zip(outcomes) {
            let answer = match outcome {
                AppendOutcome::Committed(placement) => {
                    self.metrics.posts.inc();
                    self.bus
                        .publish(Arc::new(delivery(post, placement, committed)));
                    if renkei_domain::mention::may_mention(&post.text) {
                        tokio::spawn(notify_mentioned(
                            Arc::clone(&self.store),
                            self.bus.clone(),
                            MentionView {
                                group: placement.group,
                                seq: placement.seq,
                                at: placement.at,
                                author: wire::profile(&post.author),
                                text: post.text.clone(),
                            },
                        ));
                    }
                    Ok(placement)
                }
                AppendOutcome::Duplicate(placement) => {
                    // Stored by an earlier commit, whose answer may have been lost with the
                    // database connection before its event was published.
                    self.bus.ensure(placement.group, placement.seq);
                    Ok(placement)
                }
                AppendOutcome::ClientIdConflict => Err(PostError::ClientIdConflict),
                AppendOutcome::GroupArchived => Err(PostError::GroupArchived),
                AppendOutcome::NoSuchGroup => Err(PostError::NoSuchGroup),
                AppendOutcome::Refused => Err(PostError::Refused),
                AppendOutcome::FileUnavailable => Err(PostError::FileUnavailable),
            };
            let _ = reply.send(answer);
        }
        self.committed.notify_one();
    }
}

/// Tells each member a committed post names that it does (the commit stored who; off
/// the shard's path). Without the store just now, the notice is skipped: the mention is
/// in their list.
async fn notify_mentioned(store: Arc<dyn Store>, bus: Bus, mention: MentionView) {
    match store.mentioned(mention.group, mention.seq).await {
        Ok(users) => {
            let notice = ServerMessage::Mention(mention);
            for user in users {
                bus.notify(user, &notice);
            }
        }
        Err(err) => tracing::warn!(error = %err, "mention notices not sent"),
    }
}

/// The event of a committed post, serialized once for every recipient.
fn delivery(post: &NewPost, placement: Placement, committed: Instant) -> Delivery {
    let event = GroupEvent {
        group: placement.group,
        seq: placement.seq,
        at: placement.at,
        data: EventData::Post {
            author: wire::profile(&post.author),
            client_id: post.client_id.clone(),
            text: post.text.clone(),
            file: post.file.clone(),
        },
    };
    Delivery {
        group: placement.group,
        seq: placement.seq,
        frame: wire::frame(&ServerMessage::Event(event)),
        committed,
        effect: None,
    }
}

//! One WebSocket connection: reads the client's requests, writes its replies and the live
//! events of the groups it has synced, in one task.
//!
//! Per group the socket is in one of three states. *Not synced*: live events are dropped
//! (the client has not said what it holds). *Syncing*: the missed events are read from the
//! store in pages up to `S`, the hub's last sequence number when the sync began, while
//! live events wait in a buffer; every event up to `S` is in the store and every later one
//! reaches the buffer, so nothing is missed, and whatever is both is written once.
//! *Live*: events are written as they come, each at most once (`seq > cursor`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures::stream::{FuturesUnordered, SplitSink, SplitStream, StreamExt};
use futures::SinkExt;
use renkei_domain::policy::{self, Action, Actor, GroupFacts};
use renkei_protocol::{
    close, Ack, ClientMessage, ErrorBody, ErrorCode, GroupId, Seq, ServerMessage, SyncCursor,
    Welcome, PROTOCOL_VERSION, SYNC_CURSOR_MARGIN,
};
use tokio::time::MissedTickBehavior;

use crate::app::App;
use crate::hub::Registration;
use crate::outbox::{Delivery, Effect, Ending, Outbox, SLOW_CONSUMER};
use crate::sequencer::{PostError, PostRequest};
use crate::store::{GroupRecord, Placement, UserRecord};
use crate::throttle::TokenBucket;
use crate::{files, reading, wire};
use renkei_domain::audit::{self, AuditEntry};

/// Posts of one socket awaiting their commit; beyond this the socket is not read.
const MAX_IN_FLIGHT: usize = 64;
/// Events per catch-up page read from the store, and the largest `history` page.
const SYNC_PAGE: u32 = 256;
/// Text bytes a `history` page carries at most; older events wait for the next page.
const PAGE_TEXT_BYTES: usize = 512 * 1024;
/// A write that makes no progress for this long means the client is gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing socket waits for its close frame to be taken.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client-chosen id: 1 to 64 printable ASCII characters.
const MAX_CLIENT_ID: usize = 64;

type PostFuture =
    Pin<Box<dyn Future<Output = (String, GroupId, Result<Placement, PostError>)> + Send>>;

/// How a connection ends.
enum Stop {
    /// The peer is gone or the transport failed: nothing more can be sent.
    Gone,
    /// Close with this code and reason.
    Close(u16, &'static str),
}

impl From<Ending> for Stop {
    fn from(ending: Ending) -> Self {
        Stop::Close(ending.code, ending.reason)
    }
}

/// Where one group's events stand on this socket.
enum Feed {
    Syncing {
        buffer: Vec<Arc<Delivery>>,
        buffered_bytes: usize,
    },
    Live {
        cursor: Seq,
    },
}

struct SyncJob {
    group: GroupId,
    after: Seq,
    /// The hub's last sequence number when this job began; set by its first step.
    upto: Option<Seq>,
}

/// Bytes of frames a writer collects before writing them without waiting for a flush.
const FEED_BATCH_BYTES: usize = 64 * 1024;

/// The writing half: frames are collected and written together at the next flush (or
/// every [`FEED_BATCH_BYTES`]), under one guard: the write gives up when the socket is
/// ended or stalls. One guard per write, not per frame, keeps a timer and a wake-up
/// registration off every delivery.
struct Writer {
    sink: SplitSink<WebSocket, Message>,
    outbox: Arc<Outbox>,
    queued: Vec<Utf8Bytes>,
    queued_bytes: usize,
}

impl Writer {
    async fn guard<F, E>(outbox: &Outbox, write: F) -> Result<(), Stop>
    where
        F: Future<Output = Result<(), E>>,
    {
        tokio::select! {
            biased;
            _ = outbox.ended() => Err(outbox.ending().map_or(Stop::Gone, Stop::from)),
            result = tokio::time::timeout(WRITE_TIMEOUT, write) => match result {
                Ok(Ok(())) => Ok(()),
                _ => Err(Stop::Gone),
            },
        }
    }

    async fn feed(&mut self, frame: Utf8Bytes) -> Result<(), Stop> {
        self.queued_bytes += frame.len();
        self.queued.push(frame);
        if self.queued_bytes >= FEED_BATCH_BYTES {
            self.write_queued(false).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Stop> {
        self.write_queued(true).await
    }

    async fn write_queued(&mut self, flush: bool) -> Result<(), Stop> {
        let frames = std::mem::take(&mut self.queued);
        self.queued_bytes = 0;
        let sink = &mut self.sink;
        let write = async move {
            for frame in frames {
                sink.feed(Message::Text(frame)).await?;
            }
            if flush {
                sink.flush().await?;
            }
            Ok::<(), axum::Error>(())
        };
        Self::guard(&self.outbox, write).await
    }

    async fn send(&mut self, message: &ServerMessage) -> Result<(), Stop> {
        self.feed(wire::frame(message)).await?;
        self.flush().await
    }

    async fn error(&mut self, body: ErrorBody) -> Result<(), Stop> {
        self.send(&ServerMessage::Error(body)).await
    }

    /// The closing handshake: sends the close frame, then reads (and drops) whatever the
    /// client still sends until its close frame comes back. Dropping the TCP connection
    /// with unread input would make the kernel reset it, and the client could lose the
    /// close frame that tells it what to do.
    async fn close(mut self, stream: &mut SplitStream<WebSocket>, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
            if self.sink.send(Message::Close(Some(frame))).await.is_ok() {
                while let Some(Ok(message)) = stream.next().await {
                    if matches!(message, Message::Close(_)) {
                        break;
                    }
                }
            }
        })
        .await;
    }
}

/// A connection's state.
pub struct Connection {
    app: Arc<App>,
    user: Arc<UserRecord>,
    registration: Registration,
    feeds: HashMap<GroupId, Feed>,
    syncs: VecDeque<SyncJob>,
    frames: TokenBucket,
    last_heard: Instant,
    /// The peer's address, for the audit trail.
    source: String,
}

impl Connection {
    /// A connection of `user` over a registered socket.
    pub fn new(
        app: Arc<App>,
        user: UserRecord,
        registration: Registration,
        source: String,
    ) -> Self {
        Connection {
            user: Arc::new(user),
            registration,
            feeds: HashMap::new(),
            syncs: VecDeque::new(),
            frames: TokenBucket::new(
                app.config.limits.frames_per_second,
                app.config.limits.frame_burst,
            ),
            last_heard: Instant::now(),
            source,
            app,
        }
    }

    /// Serves the socket until the client leaves, the socket is ended or the server stops.
    pub async fn run(mut self, socket: WebSocket) {
        let (sink, mut stream) = socket.split();
        let outbox = Arc::clone(&self.registration.outbox);
        let mut writer = Writer {
            sink,
            outbox: Arc::clone(&outbox),
            queued: Vec::new(),
            queued_bytes: 0,
        };
        let welcome = self.welcome().await;
        let stop = match writer.send(&welcome).await {
            Ok(()) => self.serve(&mut writer, &mut stream).await,
            Err(stop) => stop,
        };
        if let Stop::Close(code, reason) = stop {
            if code == close::SLOW_CONSUMER {
                tracing::info!(user = self.user.id, "slow consumer closed");
            }
            writer.close(&mut stream, code, reason).await;
        }
    }

    /// Asks the policy about an action on `group`, with what this node's hub knows of the
    /// user and the group; the error to answer with if denied.
    fn refusal(&self, group: GroupId, action: fn(GroupFacts) -> Action) -> Option<ErrorBody> {
        let (restricted, facts) = self.app.hub.facts(self.user.id, group);
        let actor = Actor {
            id: self.user.id,
            role: self.user.role,
            facility: self.user.facility_id,
            restricted,
        };
        policy::authorize(&actor, action(facts))
            .err()
            .map(|denial| wire::group_error(wire::denial_code(denial), denial.to_string(), group))
    }

    /// An audit record of this user's `action` on `group`.
    fn audit_entry(
        &self,
        action: &str,
        group: Option<GroupId>,
        target: String,
        refused: Option<ErrorCode>,
    ) -> AuditEntry {
        AuditEntry {
            at: renkei_domain::clock::now_ms(),
            actor: Some(self.user.id),
            facility: self.user.facility_id,
            action: action.into(),
            group,
            target,
            source: self.source.clone(),
            result: audit::outcome(refused),
        }
    }

    async fn welcome(&self) -> ServerMessage {
        let limits = &self.app.config.limits;
        ServerMessage::Welcome(Welcome {
            protocol_version: PROTOCOL_VERSION,
            user: wire::profile(&self.user),
            groups: reading::summaries(&self.app, &self.user, &self.registration.groups).await,
            limits: renkei_protocol::Limits {
                max_frame_bytes: limits.max_frame_bytes,
                max_post_chars: limits.max_post_chars,
                posts_per_second: limits.posts_per_second,
                post_burst: limits.post_burst,
                max_page: SYNC_PAGE,
            },
        })
    }

    async fn serve(&mut self, writer: &mut Writer, stream: &mut SplitStream<WebSocket>) -> Stop {
        let outbox = Arc::clone(&self.registration.outbox);
        let shutdown = self.app.shutdown.clone();
        let ping_every = Duration::from_secs(u64::from(self.app.config.limits.ping_seconds.max(1)));
        let mut ping = tokio::time::interval(ping_every);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ping.tick().await;
        let mut pending: FuturesUnordered<PostFuture> = FuturesUnordered::new();
        let mut draining = false;
        // Made once: a new one per turn of the loop would register with the token each time.
        let mut stopping = std::pin::pin!(shutdown.cancelled());
        loop {
            if let Some(ending) = outbox.ending() {
                return ending.into();
            }
            if draining && pending.is_empty() {
                let _ = self.forward_live(writer).await;
                return Stop::Close(close::GOING_AWAY, "server shutting down: reconnect");
            }
            let step = tokio::select! {
                biased;
                () = &mut stopping, if !draining => {
                    draining = true;
                    Ok(())
                }
                _ = outbox.ready() => self.forward_live(writer).await,
                Some((client_id, group, result)) = pending.next(), if !pending.is_empty() => {
                    self.answer_post(writer, client_id, group, result).await
                }
                frame = stream.next(), if !draining && pending.len() < MAX_IN_FLIGHT => {
                    self.last_heard = Instant::now();
                    match frame {
                        Some(Ok(Message::Text(text))) => {
                            self.on_text(writer, &mut pending, text.as_str()).await
                        }
                        Some(Ok(Message::Binary(_))) => {
                            Err(Stop::Close(close::UNSUPPORTED_DATA, "binary frames are not supported"))
                        }
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                        Some(Ok(Message::Close(_))) | None => Err(Stop::Gone),
                        Some(Err(err)) => Err(read_error(err)),
                    }
                }
                _ = ping.tick() => {
                    // While posts await their commit the socket is not read, so silence
                    // then is ours, not the client's.
                    if pending.is_empty() && self.last_heard.elapsed() > ping_every * 2 {
                        Err(Stop::Gone)
                    } else {
                        let ping = Writer::guard(&outbox, writer.sink.send(Message::Ping(Default::default())));
                        ping.await
                    }
                }
                _ = std::future::ready(()), if !self.syncs.is_empty() => self.sync_step(writer).await,
            };
            if let Err(stop) = step {
                return stop;
            }
        }
    }

    /// Writes the queued live events of synced groups, then flushes once.
    async fn forward_live(&mut self, writer: &mut Writer) -> Result<(), Stop> {
        let queued = self.registration.outbox.take();
        if queued.is_empty() {
            return Ok(());
        }
        let limit = self.registration.outbox.limit();
        let mut wrote = false;
        for delivery in queued {
            let group = delivery.group;
            if delivery.is_notice() {
                writer.feed(delivery.frame.clone()).await?;
                wrote = true;
                continue;
            }
            match &delivery.effect {
                Some(Effect::Joined {
                    user,
                    group: record,
                }) if *user == self.user.id => {
                    // The client learns of the group and syncs it; the event is in its
                    // history.
                    let summary = wire::group_summary(&GroupRecord {
                        last_seq: delivery.seq,
                        ..record.clone()
                    });
                    writer
                        .feed(wire::frame(&ServerMessage::GroupJoined { group: summary }))
                        .await?;
                    wrote = true;
                    continue;
                }
                Some(Effect::Left { user }) if *user == self.user.id => {
                    // Nothing more of the group reaches this user (the hub no longer
                    // counts them as a member); the client drops it.
                    self.feeds.remove(&group);
                    self.syncs.retain(|job| job.group != group);
                    writer
                        .feed(wire::frame(&ServerMessage::GroupLeft { group }))
                        .await?;
                    wrote = true;
                    continue;
                }
                _ => {}
            }
            match self.feeds.get_mut(&group) {
                None => {}
                Some(Feed::Syncing {
                    buffer,
                    buffered_bytes,
                }) => {
                    *buffered_bytes += delivery.frame.len();
                    if *buffered_bytes > limit {
                        self.app.metrics.slow_consumers.inc();
                        return Err(SLOW_CONSUMER.into());
                    }
                    buffer.push(delivery);
                }
                Some(Feed::Live { cursor }) if delivery.seq <= *cursor => {}
                Some(Feed::Live { cursor }) if delivery.seq > *cursor + 1 => {
                    // Hub::deliver hands out each group in order on every node, so this is a
                    // broken invariant, not a late event: say so, and catch up from the store.
                    tracing::error!(
                        group,
                        cursor = *cursor,
                        seq = delivery.seq,
                        "sequence gap on a socket"
                    );
                    let after = *cursor;
                    self.start_sync(group, after);
                    if let Some(Feed::Syncing {
                        buffer,
                        buffered_bytes,
                    }) = self.feeds.get_mut(&group)
                    {
                        *buffered_bytes += delivery.frame.len();
                        buffer.push(delivery);
                    }
                }
                Some(Feed::Live { cursor }) => {
                    *cursor = delivery.seq;
                    self.write_live(writer, &delivery).await?;
                    wrote = true;
                }
            }
        }
        if wrote {
            writer.flush().await?;
        }
        Ok(())
    }

    async fn write_live(&self, writer: &mut Writer, delivery: &Delivery) -> Result<(), Stop> {
        writer.feed(delivery.frame.clone()).await?;
        self.app.metrics.deliveries.inc();
        self.app
            .metrics
            .delivery_latency
            .observe(delivery.committed.elapsed().as_secs_f64());
        Ok(())
    }

    async fn on_text(
        &mut self,
        writer: &mut Writer,
        pending: &mut FuturesUnordered<PostFuture>,
        text: &str,
    ) -> Result<(), Stop> {
        if !self.frames.try_take() {
            return writer
                .error(wire::error(
                    ErrorCode::RateLimited,
                    "too many messages: slow down",
                ))
                .await;
        }
        match decode(text) {
            Err(body) => writer.error(body).await,
            Ok(ClientMessage::Post {
                group,
                client_id,
                text,
                file,
            }) => {
                self.on_post(writer, pending, group, client_id, text, file)
                    .await
            }
            Ok(ClientMessage::Sync { groups }) => self.on_sync(writer, groups).await,
            Ok(ClientMessage::History {
                group,
                before,
                limit,
            }) => self.on_history(writer, group, before, limit).await,
            Ok(ClientMessage::Read { group, seq }) => self.on_read(writer, group, seq).await,
            Ok(ClientMessage::Visibility { visible }) => {
                self.registration.set_visible(visible);
                Ok(())
            }
            // The client's heartbeat (browsers cannot send ping frames): answered from
            // memory at once, so a pong proves the path is alive, not the database.
            Ok(ClientMessage::Ping { n }) => writer.send(&ServerMessage::Pong { n }).await,
        }
    }

    /// Keeps how far the user has read a group (既読; the membership review uses it too).
    async fn on_read(&mut self, writer: &mut Writer, group: GroupId, seq: Seq) -> Result<(), Stop> {
        if seq < 0 {
            return writer
                .error(wire::group_error(
                    ErrorCode::InvalidSequence,
                    "seq must be 0 or more",
                    group,
                ))
                .await;
        }
        if let Some(refusal) = self.refusal(group, Action::ReadGroup) {
            return writer.error(refusal).await;
        }
        // Nobody reads what does not exist yet.
        let seq = seq.min(self.app.hub.last_seq(group));
        if let Err(err) = reading::mark(&self.app, &self.user, group, seq).await {
            tracing::warn!(error = %err, group, "read position not stored");
            return writer
                .error(wire::group_error(
                    ErrorCode::Unavailable,
                    "read position not stored: retry",
                    group,
                ))
                .await;
        }
        Ok(())
    }

    async fn on_post(
        &mut self,
        writer: &mut Writer,
        pending: &mut FuturesUnordered<PostFuture>,
        group: GroupId,
        client_id: String,
        text: String,
        file: Option<i64>,
    ) -> Result<(), Stop> {
        let refuse = |code, message: &str| ErrorBody {
            client_id: Some(client_id.clone()),
            ..wire::group_error(code, message, group)
        };
        if client_id.is_empty()
            || client_id.len() > MAX_CLIENT_ID
            || !client_id.bytes().all(|b| b.is_ascii_graphic())
        {
            return writer
                .error(refuse(
                    ErrorCode::InvalidClientId,
                    "client_id must be 1 to 64 printable ASCII characters",
                ))
                .await;
        }
        if text.trim().is_empty() {
            return writer
                .error(refuse(ErrorCode::EmptyPost, "the post is empty"))
                .await;
        }
        let max = self.app.config.limits.max_post_chars as usize;
        if text.chars().count() > max {
            return writer
                .error(refuse(
                    ErrorCode::PostTooLong,
                    &format!("a post has at most {max} characters"),
                ))
                .await;
        }
        if let Some(refusal) = self.refusal(group, Action::PostToGroup) {
            return writer
                .error(ErrorBody {
                    client_id: Some(client_id),
                    ..refusal
                })
                .await;
        }
        let allowed = self
            .registration
            .posts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_take();
        if !allowed {
            return writer
                .error(refuse(
                    ErrorCode::RateLimited,
                    "too many posts: slow down and retry",
                ))
                .await;
        }
        let file = match file {
            None => None,
            Some(id) => {
                match files::attachable(self.app.store.as_ref(), id, group, self.user.id).await {
                    Ok(file) => Some(file),
                    Err(err) => {
                        if matches!(err, files::AttachError::Store(_)) {
                            tracing::warn!(error = %err, "file not checked");
                        }
                        return writer
                            .error(refuse(err.code(), &err.public_message()))
                            .await;
                    }
                }
            }
        };
        let sequencer = self.app.sequencer.clone();
        let request = PostRequest {
            group,
            author: Arc::clone(&self.user),
            client_id: client_id.clone(),
            text,
            file,
        };
        // A post's record is its event row (author, time, group, seq), committed with it;
        // an audit record per post cost target 2 its latency bar (load-tests/RESULTS.md).
        pending.push(Box::pin(async move {
            let result = sequencer.submit(request).await;
            (client_id, group, result)
        }));
        Ok(())
    }

    async fn answer_post(
        &mut self,
        writer: &mut Writer,
        client_id: String,
        group: GroupId,
        result: Result<Placement, PostError>,
    ) -> Result<(), Stop> {
        // The post's own event goes out before its ack.
        self.forward_live(writer).await?;
        match result {
            Ok(placement) => {
                writer
                    .send(&ServerMessage::Ack(Ack {
                        client_id,
                        group: placement.group,
                        seq: placement.seq,
                        at: placement.at,
                    }))
                    .await
            }
            Err(err) => {
                writer
                    .error(ErrorBody {
                        client_id: Some(client_id),
                        ..wire::group_error(err.code(), err.to_string(), group)
                    })
                    .await
            }
        }
    }

    /// A catch-up of each group a frame names. The frame names at most the user's groups
    /// and a margin, and its refused cursors leave one record between them: a frame of
    /// thousands of foreign ids would otherwise become thousands of records, written
    /// while audited REST calls wait for theirs.
    async fn on_sync(&mut self, writer: &mut Writer, cursors: Vec<SyncCursor>) -> Result<(), Stop> {
        let most = self.app.hub.group_count(self.user.id) + SYNC_CURSOR_MARGIN;
        if cursors.len() > most {
            let code = ErrorCode::TooManyCursors;
            let target = format!("cursors={}", cursors.len());
            self.app
                .audit
                .record(self.audit_entry("ws sync", None, target, Some(code)))
                .await;
            return writer
                .error(wire::error(
                    code,
                    format!(
                        "a sync names at most {most} groups (yours, and {SYNC_CURSOR_MARGIN} more)"
                    ),
                ))
                .await;
        }
        let mut refusals = Vec::new();
        let mut reads = Vec::with_capacity(cursors.len());
        for SyncCursor { group, after } in cursors {
            let refusal = if after < 0 {
                Some(wire::group_error(
                    ErrorCode::InvalidSequence,
                    "after must be 0 or more",
                    group,
                ))
            } else {
                self.refusal(group, Action::ReadGroup)
            };
            match refusal {
                Some(refusal) => refusals.push((refusal, after)),
                None => {
                    let target = format!("after={after}");
                    reads.push(self.audit_entry("ws sync", Some(group), target, None));
                    self.start_sync(group, after);
                }
            }
        }
        if let Some(summary) = self.refused_sync(&refusals) {
            reads.push(summary);
        }
        // Every read of a group is on record before any of its content goes out.
        self.app.audit.record_all(reads).await;
        for (refusal, _) in refusals {
            writer.error(refusal).await?;
        }
        Ok(())
    }

    /// The one record of a sync frame's refused cursors: the group and cursor when it
    /// names one (its owning facility sees it in its trail), else their count and the
    /// first few ids; the first refusal's code.
    fn refused_sync(&self, refusals: &[(ErrorBody, Seq)]) -> Option<AuditEntry> {
        /// Ids named in the record of a frame refused for several groups.
        const NAMED: usize = 10;
        let (first, after) = refusals.first()?;
        if refusals.len() == 1 {
            let target = format!("after={after}");
            return Some(self.audit_entry("ws sync", first.group, target, Some(first.code)));
        }
        let ids: Vec<String> = refusals
            .iter()
            .filter_map(|(refusal, _)| refusal.group)
            .take(NAMED)
            .map(|group| group.to_string())
            .collect();
        let more = if refusals.len() > NAMED { ",…" } else { "" };
        let target = format!("refused={} groups={}{more}", refusals.len(), ids.join(","));
        Some(self.audit_entry("ws sync", None, target, Some(first.code)))
    }

    /// Puts `group` into the syncing state (live events wait) and queues its catch-up.
    fn start_sync(&mut self, group: GroupId, after: Seq) {
        self.syncs.retain(|job| job.group != group);
        self.feeds.insert(
            group,
            Feed::Syncing {
                buffer: Vec::new(),
                buffered_bytes: 0,
            },
        );
        self.syncs.push_back(SyncJob {
            group,
            after,
            upto: None,
        });
    }

    /// Writes one page of the first queued catch-up; finishes it when nothing is left.
    async fn sync_step(&mut self, writer: &mut Writer) -> Result<(), Stop> {
        let Some(job) = self.syncs.front_mut() else {
            return Ok(());
        };
        let group = job.group;
        let upto = *job.upto.get_or_insert_with(|| self.app.hub.last_seq(group));
        let page = if job.after < upto {
            match self
                .app
                .store
                .events_after(group, job.after, upto, SYNC_PAGE)
                .await
            {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(error = %err, group, "catch-up read failed");
                    self.syncs.pop_front();
                    self.feeds.remove(&group);
                    return writer
                        .error(wire::group_error(
                            ErrorCode::Unavailable,
                            "catch-up failed: sync again",
                            group,
                        ))
                        .await;
                }
            }
        } else {
            Vec::new()
        };
        let mut after = job.after;
        let full = page.len() == SYNC_PAGE as usize;
        for record in &page {
            writer
                .feed(wire::frame(&ServerMessage::Event(wire::event(record))))
                .await?;
            after = record.seq;
        }
        if let Some(job) = self.syncs.front_mut() {
            job.after = after;
        }
        if full && after < upto {
            return writer.flush().await;
        }
        self.syncs.pop_front();
        if let Some(Feed::Syncing { buffer, .. }) = self.feeds.remove(&group) {
            for delivery in &buffer {
                if delivery.seq <= after {
                    continue;
                }
                if delivery.seq != after + 1 {
                    // A broken invariant (the hub delivers in order): catch up again.
                    tracing::error!(
                        group,
                        after,
                        seq = delivery.seq,
                        "sequence gap after a sync"
                    );
                    self.start_sync(group, after);
                    return writer.flush().await;
                }
                after = delivery.seq;
                self.write_live(writer, delivery).await?;
            }
        }
        self.feeds.insert(group, Feed::Live { cursor: after });
        writer
            .send(&ServerMessage::Synced { group, seq: after })
            .await
    }

    async fn on_history(
        &mut self,
        writer: &mut Writer,
        group: GroupId,
        before: Option<Seq>,
        limit: Option<u32>,
    ) -> Result<(), Stop> {
        if before.is_some_and(|b| b < 0) {
            return writer
                .error(wire::group_error(
                    ErrorCode::InvalidSequence,
                    "before must be 0 or more",
                    group,
                ))
                .await;
        }
        let refusal = self.refusal(group, Action::ReadGroup);
        let target = before.map_or_else(|| "latest".into(), |b| format!("before={b}"));
        let code = refusal.as_ref().map(|r| r.code);
        self.app
            .audit
            .record(self.audit_entry("ws history", Some(group), target, code))
            .await;
        if let Some(refusal) = refusal {
            return writer.error(refusal).await;
        }
        let limit = limit.unwrap_or(50).clamp(1, SYNC_PAGE);
        match self.app.store.events_before(group, before, limit + 1).await {
            Ok(mut records) => {
                let mut has_more = records.len() > limit as usize;
                if has_more {
                    records.remove(0);
                }
                // Keep the newest events that fit the byte budget (at least one).
                let mut budget = PAGE_TEXT_BYTES;
                let fit = records
                    .iter()
                    .rev()
                    .take_while(|r| {
                        let size = r.text_len();
                        let fits = size <= budget;
                        budget = budget.saturating_sub(size);
                        fits
                    })
                    .count()
                    .max(1);
                if fit < records.len() {
                    records.drain(..records.len() - fit);
                    has_more = true;
                }
                let events = records.iter().map(wire::event).collect();
                writer
                    .send(&ServerMessage::Page {
                        group,
                        events,
                        has_more,
                    })
                    .await
            }
            Err(err) => {
                tracing::warn!(error = %err, group, "history read failed");
                writer
                    .error(wire::group_error(
                        ErrorCode::Unavailable,
                        "history unavailable: retry",
                        group,
                    ))
                    .await
            }
        }
    }
}

/// Parses a client frame, or says precisely what is wrong with it.
fn decode(text: &str) -> Result<ClientMessage, ErrorBody> {
    serde_json::from_str(text).map_err(|err| {
        #[derive(serde::Deserialize)]
        struct Probe {
            #[serde(rename = "type")]
            kind: Option<serde_json::Value>,
        }
        const KNOWN: [&str; 4] = ["post", "sync", "history", "read"];
        match serde_json::from_str::<Probe>(text) {
            Ok(Probe {
                kind: Some(serde_json::Value::String(kind)),
            }) if !KNOWN.contains(&kind.as_str()) => wire::error(
                ErrorCode::UnknownType,
                format!("unknown message type {kind:?}"),
            ),
            _ => wire::error(ErrorCode::InvalidMessage, format!("invalid message: {err}")),
        }
    })
}

/// The close that answers a failed read.
fn read_error(err: axum::Error) -> Stop {
    match err
        .into_inner()
        .downcast::<tungstenite::Error>()
        .map(|e| *e)
    {
        Ok(tungstenite::Error::Capacity(_)) => {
            Stop::Close(close::MESSAGE_TOO_BIG, "frame larger than max_frame_bytes")
        }
        Ok(tungstenite::Error::Utf8(_)) => {
            Stop::Close(close::INVALID_PAYLOAD, "text frame is not UTF-8")
        }
        Ok(tungstenite::Error::Protocol(_)) => {
            Stop::Close(close::POLICY_VIOLATION, "WebSocket protocol error")
        }
        _ => Stop::Gone,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed corpus (`tests/corpus/*.frame`): one frame per file, read once.
    fn corpus() -> &'static [(String, String)] {
        static CORPUS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
        CORPUS.get_or_init(read_corpus)
    }

    fn read_corpus() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
        let mut frames: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("tests/corpus")
            .flatten()
            .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "frame"))
            .map(|entry| {
                let text = std::fs::read_to_string(entry.path()).expect("a UTF-8 frame");
                (entry.file_name().to_string_lossy().into_owned(), text)
            })
            .collect();
        frames.sort();
        assert!(frames.len() >= 30, "the corpus is there");
        frames
    }

    /// Applies `edits` (position, kind, character) to `text`: insert, delete, replace, or
    /// repeat a stretch.
    fn mutate(text: &str, edits: &[(usize, u8, char)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for &(at, kind, c) in edits {
            let at = if chars.is_empty() {
                0
            } else {
                at % (chars.len() + 1)
            };
            match kind % 4 {
                0 => chars.insert(at, c),
                1 if at < chars.len() => {
                    chars.remove(at);
                }
                2 if at < chars.len() => chars[at] = c,
                _ => {
                    let end = (at + 16).min(chars.len());
                    let stretch: Vec<char> = chars[at..end].to_vec();
                    chars.splice(at..at, stretch);
                }
            }
        }
        chars.into_iter().collect()
    }

    #[test]
    fn every_corpus_frame_decodes_or_is_refused_with_a_documented_code() {
        for (name, text) in corpus() {
            match decode(text) {
                Ok(message) => {
                    let again = serde_json::to_string(&message).expect("encodes");
                    assert_eq!(decode(&again).ok(), Some(message), "{name}");
                }
                Err(body) => assert!(
                    matches!(
                        body.code,
                        ErrorCode::InvalidMessage | ErrorCode::UnknownType
                    ),
                    "{name}: {body:?}"
                ),
            }
        }
        // The documented forms decode; the rest is refused.
        let decoded: Vec<&str> = corpus()
            .iter()
            .filter(|(_, text)| decode(text).is_ok())
            .map(|(name, _)| name.as_str())
            .collect();
        for name in ["post.frame", "sync.frame", "history.frame", "read.frame"] {
            assert!(decoded.contains(&name), "{name} decodes");
        }
        assert!(!decoded.contains(&"deep-nesting.frame"));
    }

    /// Any JSON value, a few levels deep.
    fn json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>().prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("type".to_string()),
                        Just("group".to_string()),
                        Just("client_id".to_string()),
                        Just("text".to_string()),
                        Just("groups".to_string()),
                        Just("seq".to_string()),
                        ".{0,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(2000))]

        /// Whatever a client sends, decoding answers: a message, or one of the two
        /// documented refusals. (The frame decoder before it is tungstenite's, bounded
        /// by `max_frame_bytes`; the handlers after it are exercised over a real socket in
        /// `tests/hostile.rs`.)
        #[test]
        fn any_text_decodes_or_is_refused_with_a_documented_code(text in ".{0,200}") {
            if let Err(body) = decode(&text) {
                proptest::prop_assert!(matches!(body.code, ErrorCode::InvalidMessage | ErrorCode::UnknownType));
            }
        }

        /// Mutations of the seed corpus: the frames most likely to reach deep into the
        /// decoder, bent a little (a fuzzer's first move).
        #[test]
        fn mutated_corpus_frames_decode_or_are_refused_with_a_documented_code(
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            edits in proptest::collection::vec((proptest::prelude::any::<usize>(), 0u8..4, proptest::prelude::any::<char>()), 0..8),
        ) {
            let frames = corpus();
            let (_, text) = &frames[pick.index(frames.len())];
            let text = mutate(text, &edits);
            if let Err(body) = decode(&text) {
                proptest::prop_assert!(matches!(body.code, ErrorCode::InvalidMessage | ErrorCode::UnknownType));
            }
        }

        #[test]
        fn any_json_decodes_or_is_refused_with_a_documented_code(value in json(), kind in proptest::option::of(proptest::sample::select(vec!["post", "sync", "history", "read", "shout", ""]))) {
            let mut value = value;
            if let (Some(kind), serde_json::Value::Object(map)) = (kind, &mut value) {
                map.insert("type".into(), kind.into());
            }
            let text = value.to_string();
            match decode(&text) {
                // What decodes encodes back to a message of the same meaning.
                Ok(message) => {
                    let again = serde_json::to_string(&message).map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                    proptest::prop_assert_eq!(decode(&again).ok(), Some(message));
                }
                Err(body) => proptest::prop_assert!(matches!(body.code, ErrorCode::InvalidMessage | ErrorCode::UnknownType)),
            }
        }
    }

    #[test]
    fn decode_tells_unknown_types_from_invalid_messages() {
        let code = |text: &str| decode(text).err().map(|e| e.code);
        assert_eq!(
            code(r#"{"type":"post","group":1,"client_id":"a","text":"t"}"#),
            None
        );
        assert_eq!(code("not json"), Some(ErrorCode::InvalidMessage));
        assert_eq!(code(r#"{"type":"shout"}"#), Some(ErrorCode::UnknownType));
        assert_eq!(
            code(r#"{"type":"post","group":"x"}"#),
            Some(ErrorCode::InvalidMessage)
        );
        assert_eq!(code(r#"{"type":7}"#), Some(ErrorCode::InvalidMessage));
        assert_eq!(code(r#"{"group":1}"#), Some(ErrorCode::InvalidMessage));
    }
}

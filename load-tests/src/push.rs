//! `renkei-load push`: Web Push under load (issue 18). Each group has one poster with a
//! live socket and members who are subscribed and away (no socket at all); posts go out
//! open-loop at a rate, and renkei pushes to `renkei-testbed`'s push service on loopback,
//! which verifies every request's VAPID signature and decrypts its payload as Google's or
//! Mozilla's would. Measures the pushes per second and the time from a post's
//! acknowledgement to the receipt of the push for the notice that covers it, and checks
//! every post against the coalescing rule: each subscribed member is told of it (or was
//! told of the group within the window before), each notice reaches its subscription
//! exactly once, and no two notices to one person about one group are closer than the
//! window.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt as _, StreamExt as _};
use rand::{Rng as _, SeedableRng as _};
use renkei::store::Store;
use renkei_protocol::api::{PushKey, PushPayload, PushSubscriptionRequest};
use renkei_protocol::{ClientMessage, GroupId, Millis, Seq, UserId};
use renkei_testbed::{OwnPush, Received};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::member;
use crate::population::{Extras, Member, Population};
use crate::target::{Database, FreshDb, Problems, Target};

/// Subscriptions made at once, as that many browsers would.
const SUBSCRIBE_AT_ONCE: usize = 64;
/// Tries of one subscription request the server sheds (429) or fails (5xx).
const SUBSCRIBE_TRIES: u64 = 5;
/// Posters connecting at once.
const CONNECT_WAVE: usize = 250;
/// How long acknowledgements may take after the last post is due.
const ACK_WAIT: Duration = Duration::from_secs(20);
/// How long the pushes may take to drain after the last acknowledgement. Coalescing drops
/// a post inside the window rather than deferring it (`notice::plan`), so nothing is due
/// after the follower has seen the last post but retries: waiting a window buys nothing.
const DRAIN: Duration = Duration::from_secs(30);
/// The push service counts as quiet after this long without a request.
const QUIET: Duration = Duration::from_secs(3);
/// How often the drain looks.
const POLL: Duration = Duration::from_millis(500);
/// A post's own notice (one that covers its sequence number) written later than this after
/// its commit makes the post count as told late: still told, so not lost, but a follower
/// that far behind is a failure to see.
const SLACK_MS: Millis = 10_000;

/// Why a push run could not be made (as opposed to one that ran and failed its check).
#[derive(Debug, thiserror::Error)]
pub enum PushRunError {
    #[error("{0}")]
    Shape(&'static str),
    #[error("push service: {0}")]
    Service(#[from] renkei_testbed::TestbedError),
    #[error("{0}")]
    Target(#[from] crate::target::TargetError),
    #[error("store: {0}")]
    Store(#[from] renkei::store::StoreError),
    #[error("the push service's certificate: {0}")]
    Certificate(std::io::Error),
    #[error("subscribing {login}: {detail}")]
    Subscribe { login: String, detail: String },
    #[error("poster {login}: {detail}")]
    Poster { login: String, detail: String },
}

/// The parameters of a run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub groups: usize,
    /// Members per group: one poster, the rest subscribed and away.
    pub members: usize,
    /// Posts per second over all groups.
    pub rate: f64,
    /// Seconds of traffic.
    pub duration: f64,
    /// The server's `RENKEI_PUSH_COALESCE_SECONDS`.
    pub coalesce_seconds: u32,
    pub database: Database,
    pub server_bin: PathBuf,
}

impl Spec {
    /// The CI-sized run: 20 groups × 4 members, 50 posts/s for 6 s, a 2 s window (so each
    /// person is told of a group again and again), on SQLite.
    pub fn quick(server_bin: PathBuf) -> Spec {
        Spec {
            groups: 20,
            members: 4,
            rate: 50.0,
            duration: 6.0,
            coalesce_seconds: 2,
            database: Database::Sqlite,
            server_bin,
        }
    }
}

/// What a push run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    /// `renkei-sqlite` or `renkei-postgres`.
    pub target: String,
    pub groups: u64,
    pub members: u64,
    /// Members subscribed and away: all but each group's poster.
    pub subscribers: u64,
    pub target_rate: f64,
    pub duration_s: f64,
    pub coalesce_s: u32,
    /// Seconds to subscribe everyone over REST, `SUBSCRIBE_AT_ONCE` at a time.
    pub subscribe_s: f64,
    pub posts_sent: u64,
    pub posts_acked: u64,
    pub posts_refused: u64,
    /// Notices the server wrote from the start of the traffic.
    pub notices: u64,
    /// Requests the push service accepted (201: valid VAPID, decryptable payload).
    pub pushes_accepted: u64,
    /// Requests it refused, for whatever reason.
    pub pushes_refused: u64,
    /// Accepted pushes over the seconds of traffic.
    pub pushes_per_sec: f64,
    /// The most pushes accepted within one second (counted from the start of traffic).
    pub peak_pushes_per_sec: u64,
    /// When 99 % of the pushes, and the last, had been accepted, in seconds from the start
    /// of traffic.
    pub pushes_99_s: f64,
    pub last_push_s: f64,
    /// The server's own account of its deliveries.
    pub deliveries_sent: u64,
    pub deliveries_gave_up: u64,
    pub deliveries_pending: u64,
    /// Deliveries tried more than once.
    pub deliveries_retried: u64,
    /// From a post's due time to its acknowledgement: what push costs the posters.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_max_ms: f64,
    /// The ack p99 of posts due before `pushes_99_s`, and of those due after (when the
    /// sender had all but a few pushes behind it; none when it took to the end).
    pub ack_p99_while_pushing_ms: f64,
    pub ack_p99_after_pushes_ms: Option<f64>,
    /// From the acknowledgement of the post a notice covers (its newest) to the push
    /// service's receipt of that notice's first accepted push.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The first part of it: from the post's commit to the notice written (the follower),
    /// both on the server's clock.
    pub notice_p50_ms: f64,
    pub notice_p99_ms: f64,
    pub notice_max_ms: f64,
    /// The second: from the notice written to the push service's receipt (the sender).
    pub send_p50_ms: f64,
    pub send_p99_ms: f64,
    pub send_max_ms: f64,
    /// `notices_unpushed` + `posts_untold`.
    pub lost: u64,
    /// Notices with no accepted push to their person's subscription.
    pub notices_unpushed: u64,
    /// (Post, subscribed member of its group) pairs with no notice that covers the post:
    /// neither an earlier one within the window before it nor one of its own.
    pub posts_untold: u64,
    /// Pairs covered only by a notice of their own written more than `SLACK_MS` after the
    /// commit (counted in neither `lost` nor the check).
    pub posts_told_late: u64,
    /// Accepted pushes beyond the first of one notice to one subscription.
    pub duplicates: u64,
    /// Accepted pushes to someone else's subscription than the notice's person, or naming
    /// another group or kind than the notice, or no notice of this run.
    pub misdirected: u64,
    /// Two post notices to one person about one group less than the window apart.
    pub coalescing_violations: u64,
    pub errors: u64,
    /// Lines the server logged at WARN or ERROR.
    pub server_warnings: u64,
    /// The server's CPU seconds from the start of traffic to the end of the drain.
    pub server_cpu_s: f64,
    pub server_rss_mib: f64,
    /// This process's CPU seconds over the same time: the posters, and the push service's
    /// TLS, VAPID verification and decryption.
    pub load_cpu_s: f64,
}

impl Report {
    /// True when nothing was lost, duplicated, misdirected or pushed inside a window, and
    /// the run measured something at all.
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicates == 0
            && self.misdirected == 0
            && self.coalescing_violations == 0
            && self.posts_acked > 0
            && self.notices > 0
    }
}

/// Runs `spec`: the push service, a fresh database and population, the server, the run.
/// Returns the report and what the server logged of problems.
pub async fn run(spec: &Spec) -> Result<(Report, Problems), PushRunError> {
    if spec.groups == 0 || spec.members < 2 {
        return Err(PushRunError::Shape(
            "a push run needs at least one group of two members (a poster and a subscriber)",
        ));
    }
    if !(spec.rate > 0.0 && spec.duration > 0.0) {
        return Err(PushRunError::Shape(
            "--rate and --duration must be positive",
        ));
    }
    let push = OwnPush::start().await?;
    // The server trusts the service's self-signed certificate through a file.
    let dir = tempfile::tempdir().map_err(PushRunError::Certificate)?;
    let ca = dir.path().join("push-ca.pem");
    std::fs::write(&ca, push.certificate_pem()).map_err(PushRunError::Certificate)?;
    let db = FreshDb::create(&spec.database).await?;
    let result = run_on(spec, &push, &ca, &db).await;
    db.remove().await;
    result
}

async fn run_on(
    spec: &Spec,
    push: &OwnPush,
    ca: &Path,
    db: &FreshDb,
) -> Result<(Report, Problems), PushRunError> {
    let store = renkei::store::open(&db.url).await?;
    let population =
        Population::create(store.as_ref(), spec.groups, spec.members, Extras::default()).await?;
    // The tick (RENKEI_NOTIFY_TICK_MS) stays at the server's default: the product as shipped.
    let env = [
        ("RENKEI_PUSH_HOSTS", push.host()),
        // As an operator would set it; without it the server warns at every start.
        ("RENKEI_PUSH_CONTACT", "mailto:renkei-load@localhost".into()),
        ("RENKEI_PUSH_CA_FILE", ca.display().to_string()),
        (
            "RENKEI_PUSH_COALESCE_SECONDS",
            spec.coalesce_seconds.to_string(),
        ),
    ];
    let server = Target::renkei(&spec.server_bin, db, &env).await?;
    let measured = measure(spec, &server, store.as_ref(), push, &population).await;
    let problems = server.problems();
    let label = server.label.clone();
    server.stop().await;
    let mut report = measured?;
    report.target = label;
    report.server_warnings = problems.count;
    Ok((report, problems))
}

/// Counters the posters share with the scheduler.
#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    refused: AtomicU64,
}

/// One acknowledged post.
#[derive(Debug, Clone, Copy)]
struct Acked {
    /// The scheduler's number (its client id is `p<id>`); `None` if the id was not ours.
    id: Option<u64>,
    group: GroupId,
    seq: Seq,
    /// The commit's time as the server stamped it (its clock, as notices' `created_at`).
    at: Millis,
    /// When the acknowledgement arrived here.
    arrived: Instant,
}

/// What one poster saw.
#[derive(Default)]
struct PosterOutcome {
    acked: Vec<Acked>,
    errors: u64,
}

/// A notice as the check needs it (the store's record, in this crate's terms).
#[derive(Debug, Clone)]
struct Notice {
    id: i64,
    user: UserId,
    group: Option<GroupId>,
    kind: String,
    seq: Option<Seq>,
    created_at: Millis,
}

async fn measure(
    spec: &Spec,
    server: &Target,
    store: &dyn Store,
    push: &OwnPush,
    population: &Population,
) -> Result<Report, PushRunError> {
    let size = population.members.max(1);
    let posters: Vec<Member> = population
        .people
        .chunks(size)
        .map(|group| group[0].clone())
        .collect();
    let away: Vec<&Member> = population
        .people
        .chunks(size)
        .flat_map(|group| &group[1..])
        .collect();

    let began = Instant::now();
    let subscriptions = subscribe_all(server.addr, push, &away).await?;
    let subscribe_s = began.elapsed().as_secs_f64();

    let counters = Arc::new(Counters::default());
    let (senders, tasks) = connect_posters(server.addr, &posters, &counters).await?;

    let before = server.usage().await;
    let load_before = own_cpu_seconds();
    let since = renkei_domain::clock::now_ms();
    let traffic_start = Instant::now();
    let (queued, dropped, sent_for) =
        schedule(&senders, traffic_start, spec.rate, spec.duration).await;
    wait_for_acks(&counters, queued).await;
    drain(store, push).await?;
    let end = server.usage().await;
    let load_cpu_s = own_cpu_seconds() - load_before;

    drop(senders);
    let mut acked = Vec::new();
    let mut errors = dropped;
    for task in tasks {
        match task.await {
            Ok(outcome) => {
                acked.extend(outcome.acked);
                errors += outcome.errors;
            }
            Err(_) => errors += 1,
        }
    }
    let notices: Vec<Notice> = store
        .notices_since(since)
        .await?
        .into_iter()
        .map(|n| Notice {
            id: n.id,
            user: n.user_id,
            group: n.group_id,
            kind: n.kind,
            seq: n.seq,
            created_at: n.created_at,
        })
        .collect();
    let deliveries: Vec<(Option<String>, i32)> = store
        .push_deliveries()
        .await?
        .into_iter()
        .map(|d| (d.outcome, d.attempts))
        .collect();
    let received = push.received();

    let mut report = tally(&Facts {
        window_ms: i64::from(spec.coalesce_seconds) * 1000,
        traffic_start,
        traffic_start_ms: since,
        subscriptions: &subscriptions,
        acked: &acked,
        notices: &notices,
        deliveries: &deliveries,
        received: &received,
    });
    // The posts' own latency, from when each was due: all of them, and apart those due
    // while pushes were still going out and after, to see what sending costs the posts.
    let pushed = Duration::from_secs_f64(report.pushes_99_s);
    let (mut acks, mut while_pushing, mut after) = (
        member::histogram(),
        member::histogram(),
        member::histogram(),
    );
    for acked in &acked {
        if let Some(id) = acked.id {
            let due_after = Duration::from_secs_f64(id as f64 / spec.rate);
            let due = traffic_start + due_after;
            let micros = acked.arrived.saturating_duration_since(due).as_micros();
            let micros = u64::try_from(micros).unwrap_or(u64::MAX).max(1);
            let _ = acks.record(micros);
            let part = if due_after <= pushed {
                &mut while_pushing
            } else {
                &mut after
            };
            let _ = part.record(micros);
        }
    }
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    report.ack_p50_ms = ms(&acks, 0.5);
    report.ack_p99_ms = ms(&acks, 0.99);
    report.ack_max_ms = acks.max() as f64 / 1000.0;
    report.ack_p99_while_pushing_ms = ms(&while_pushing, 0.99);
    report.ack_p99_after_pushes_ms = (!after.is_empty()).then(|| ms(&after, 0.99));
    report.scenario = "push".into();
    report.groups = population.groups as u64;
    report.members = population.members as u64;
    report.subscribers = away.len() as u64;
    report.target_rate = spec.rate;
    report.duration_s = sent_for;
    report.coalesce_s = spec.coalesce_seconds;
    report.subscribe_s = subscribe_s;
    report.posts_sent = counters.sent.load(Ordering::Relaxed);
    report.posts_refused = counters.refused.load(Ordering::Relaxed);
    report.pushes_per_sec = report.pushes_accepted as f64 / sent_for.max(1e-9);
    report.errors += errors;
    report.server_cpu_s = end.cpu_seconds - before.cpu_seconds;
    report.server_rss_mib = end.rss_kib as f64 / 1024.0;
    report.load_cpu_s = load_cpu_s;
    Ok(report)
}

/// This process's CPU seconds so far (zero when `/proc` cannot say).
fn own_cpu_seconds() -> f64 {
    renkei::metrics::Process::of(std::process::id())
        .map_or(0.0, |p| p.cpu_milliseconds as f64 / 1000.0)
}

/// A subscription of the push service (its id) and whom it was made for (person, group).
type Subscribed = (u64, (UserId, GroupId));

/// Subscribes every member in `away` as a browser would, `SUBSCRIBE_AT_ONCE` at a time;
/// the push service's subscription id → (person, group).
async fn subscribe_all(
    addr: SocketAddr,
    push: &OwnPush,
    away: &[&Member],
) -> Result<HashMap<u64, (UserId, GroupId)>, PushRunError> {
    let client = reqwest::Client::new();
    let results: Vec<Result<Subscribed, PushRunError>> =
        futures::stream::iter(away.iter().copied())
            .map(|member| subscribe(&client, addr, push, member))
            .buffer_unordered(SUBSCRIBE_AT_ONCE)
            .collect()
            .await;
    results.into_iter().collect()
}

/// The server's VAPID key, a subscription made for it, and the subscription handed to the
/// server with the member's session: what a page does when push is turned on.
async fn subscribe(
    client: &reqwest::Client,
    addr: SocketAddr,
    push: &OwnPush,
    member: &Member,
) -> Result<Subscribed, PushRunError> {
    let fail = |detail: String| PushRunError::Subscribe {
        login: member.login.clone(),
        detail,
    };
    let key: PushKey = client
        .get(format!("http://{addr}/api/v1/push/key"))
        .bearer_auth(&member.token)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| fail(e.to_string()))?
        .json()
        .await
        .map_err(|e| fail(e.to_string()))?;
    let subscription = push
        .subscribe_for(&key.public_key)
        .map_err(|e| fail(e.to_string()))?;
    let body = PushSubscriptionRequest {
        endpoint: subscription.endpoint.clone(),
        p256dh: subscription.p256dh.clone(),
        auth: subscription.auth.clone(),
    };
    let mut last = String::new();
    for attempt in 1..=SUBSCRIBE_TRIES {
        let response = client
            .post(format!("http://{addr}/api/v1/push/subscriptions"))
            .bearer_auth(&member.token)
            .json(&body)
            .send()
            .await;
        match response.map(|r| r.status()) {
            Ok(status) if status == reqwest::StatusCode::CREATED => {
                return Ok((subscription.id, (member.user, member.group)));
            }
            // Shed or failing for a moment: a page tries again; the same endpoint again
            // keeps its subscription.
            Ok(status) if status.as_u16() == 429 || status.is_server_error() => {
                last = format!("status {status}");
            }
            Ok(status) => return Err(fail(format!("status {status}"))),
            Err(err) => last = err.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
    }
    Err(fail(last))
}

/// Connects every poster in waves; their command channels and tasks.
async fn connect_posters(
    addr: SocketAddr,
    posters: &[Member],
    counters: &Arc<Counters>,
) -> Result<(Vec<mpsc::Sender<u64>>, Vec<JoinHandle<PosterOutcome>>), PushRunError> {
    let mut senders = Vec::with_capacity(posters.len());
    let mut tasks = Vec::with_capacity(posters.len());
    for wave in posters.chunks(CONNECT_WAVE) {
        let mut readies = Vec::with_capacity(wave.len());
        for member in wave {
            let (tx, rx) = mpsc::channel(256);
            let (ready_tx, ready_rx) = oneshot::channel();
            senders.push(tx);
            readies.push((member, ready_rx));
            tasks.push(tokio::spawn(poster(
                addr,
                member.clone(),
                Arc::clone(counters),
                rx,
                ready_tx,
            )));
        }
        for (member, ready) in readies {
            let failed = match ready.await {
                Ok(Ok(())) => continue,
                Ok(Err(detail)) => detail,
                Err(_) => "its task ended".into(),
            };
            return Err(PushRunError::Poster {
                login: member.login.clone(),
                detail: failed,
            });
        }
    }
    Ok((senders, tasks))
}

/// The subset of a server message a poster reads.
#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    client_id: Cow<'a, str>,
    #[serde(default)]
    group: GroupId,
    #[serde(default)]
    seq: Seq,
    #[serde(default)]
    at: Millis,
}

/// One poster: a socket (never synced, so it is sent no events, and counts as a visible
/// page) that posts post `id` to its group when told, and records each acknowledgement.
async fn poster(
    addr: SocketAddr,
    member: Member,
    counters: Arc<Counters>,
    mut commands: mpsc::Receiver<u64>,
    ready: oneshot::Sender<Result<(), String>>,
) -> PosterOutcome {
    let mut outcome = PosterOutcome::default();
    let ws = match member::connect(addr, false, &member).await {
        Ok(ws) => {
            let _ = ready.send(Ok(()));
            ws
        }
        Err(err) => {
            let _ = ready.send(Err(err));
            outcome.errors += 1;
            return outcome;
        }
    };
    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(id) => {
                    let post = ClientMessage::Post {
                        group: member.group,
                        client_id: format!("p{id}"),
                        text: format!("push load {id}"),
                        file: None,
                    };
                    let Ok(text) = serde_json::to_string(&post) else {
                        outcome.errors += 1;
                        continue;
                    };
                    if sink.send(Message::text(text)).await.is_err() {
                        outcome.errors += 1;
                        break;
                    }
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    let arrived = Instant::now();
                    match serde_json::from_str::<Frame>(&text) {
                        Ok(frame) if frame.kind == "ack" => {
                            outcome.acked.push(Acked {
                                id: frame.client_id.strip_prefix('p').and_then(|id| id.parse().ok()),
                                group: frame.group,
                                seq: frame.seq,
                                at: frame.at,
                                arrived,
                            });
                            counters.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(frame) if frame.kind == "error" => {
                            outcome.errors += 1;
                            counters.refused.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => outcome.errors += 1,
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    outcome.errors += 1;
                    break;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let _ = sink.send(Message::Close(None)).await;
    outcome
}

/// Posts open-loop: post `id` is due at `id / rate` seconds, to a group drawn at random,
/// whatever became of the ones before. Returns the posts queued, those that could not even
/// be queued, and the seconds it ran.
async fn schedule(
    senders: &[mpsc::Sender<u64>],
    start: Instant,
    rate: f64,
    duration: f64,
) -> (u64, u64, f64) {
    let total = (rate * duration).round() as u64;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut dropped = 0;
    for id in 0..total {
        let due = start + Duration::from_secs_f64(id as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let group = rng.gen_range(0..senders.len());
        if senders[group].try_send(id).is_err() {
            dropped += 1;
        }
    }
    (total - dropped, dropped, start.elapsed().as_secs_f64())
}

/// Waits until every queued post is answered, or `ACK_WAIT` passes.
async fn wait_for_acks(counters: &Counters, queued: u64) {
    let deadline = Instant::now() + ACK_WAIT;
    while Instant::now() < deadline {
        let sent = queued.max(counters.sent.load(Ordering::Relaxed));
        let answered =
            counters.acked.load(Ordering::Relaxed) + counters.refused.load(Ordering::Relaxed);
        if answered >= sent {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits, at most `DRAIN`, until the push service has been quiet for `QUIET`, the follower
/// has looked at every committed post and no delivery waits (for a retry, say).
async fn drain(store: &dyn Store, push: &OwnPush) -> Result<(), PushRunError> {
    let deadline = Instant::now() + DRAIN;
    let mut seen = push.received().len();
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let count = push.received().len();
        if count != seen {
            seen = count;
            quiet_since = Instant::now();
            continue;
        }
        if quiet_since.elapsed() < QUIET || !store.notice_backlog(1).await?.is_empty() {
            continue;
        }
        let waiting = store
            .push_deliveries()
            .await?
            .iter()
            .any(|d| d.outcome.is_none());
        if !waiting {
            return Ok(());
        }
    }
    Ok(())
}

/// What the check reads.
struct Facts<'a> {
    window_ms: Millis,
    traffic_start: Instant,
    /// The wall clock at `traffic_start`, in ms, to place the service's receipts on the
    /// server's clock (the same machine's).
    traffic_start_ms: Millis,
    /// The push service's subscription id → the member it was made for (person, group).
    subscriptions: &'a HashMap<u64, (UserId, GroupId)>,
    acked: &'a [Acked],
    notices: &'a [Notice],
    /// Each delivery's outcome (none while it waits) and tries.
    deliveries: &'a [(Option<String>, i32)],
    received: &'a [Received],
}

/// Checks every notice, push and post; fills in the counts and the latency.
fn tally(facts: &Facts) -> Report {
    let mut report = Report {
        posts_acked: facts.acked.len() as u64,
        notices: facts.notices.len() as u64,
        ..Report::default()
    };
    // Posts by group, and when each was acknowledged.
    let mut posts: HashMap<GroupId, Vec<(Seq, Millis)>> = HashMap::new();
    let mut acks: HashMap<(GroupId, Seq), (Millis, Instant)> = HashMap::new();
    for acked in facts.acked {
        posts
            .entry(acked.group)
            .or_default()
            .push((acked.seq, acked.at));
        acks.insert((acked.group, acked.seq), (acked.at, acked.arrived));
    }
    let by_id: HashMap<i64, &Notice> = facts.notices.iter().map(|n| (n.id, n)).collect();
    let subscription_of: HashMap<UserId, u64> = facts
        .subscriptions
        .iter()
        .map(|(id, (user, _))| (*user, *id))
        .collect();

    // What the service accepted, per (subscription, notice).
    let mut pushes: HashMap<(u64, i64), Vec<Instant>> = HashMap::new();
    let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
    let mut accepted_at = member::histogram();
    for received in facts.received {
        if received.status != 201 || received.refused.is_some() {
            report.pushes_refused += 1;
            continue;
        }
        report.pushes_accepted += 1;
        let after = received.at.saturating_duration_since(facts.traffic_start);
        *per_second.entry(after.as_secs()).or_default() += 1;
        let _ = accepted_at.record(u64::try_from(after.as_micros()).unwrap_or(u64::MAX).max(1));
        let payload = received
            .payload
            .as_ref()
            .ok()
            .and_then(|bytes| serde_json::from_slice::<PushPayload>(bytes).ok());
        let Some(payload) = payload else {
            report.errors += 1;
            continue;
        };
        let whose = received
            .subscription
            .and_then(|id| Some((id, facts.subscriptions.get(&id)?.0)));
        match (whose, by_id.get(&payload.id)) {
            (Some((subscription, user)), Some(notice))
                if notice.user == user
                    && notice.group == payload.group
                    && notice.kind == renkei::store::notice_kind_name(payload.kind) =>
            {
                pushes
                    .entry((subscription, notice.id))
                    .or_default()
                    .push(received.at);
            }
            _ => report.misdirected += 1,
        }
    }
    report.peak_pushes_per_sec = per_second.values().copied().max().unwrap_or(0);
    report.pushes_99_s = accepted_at.value_at_quantile(0.99) as f64 / 1e6;
    report.last_push_s = accepted_at.max() as f64 / 1e6;

    // Each notice pushed once; the latency of its first push, whole and in two parts.
    let mut latency = member::histogram();
    let mut noticed = member::histogram();
    let mut sent = member::histogram();
    let micros = |ms: Millis| u64::try_from(ms.saturating_mul(1000)).unwrap_or(0).max(1);
    for notice in facts.notices {
        let Some(&subscription) = subscription_of.get(&notice.user) else {
            // Nobody but the subscribed members can be told: a notice for anyone else is
            // the server's mistake.
            report.misdirected += 1;
            continue;
        };
        let Some(times) = pushes.get(&(subscription, notice.id)) else {
            report.notices_unpushed += 1;
            continue;
        };
        report.duplicates += times.len().saturating_sub(1) as u64;
        let first = times.iter().min();
        let key = notice.group.zip(notice.seq);
        match (first, key.and_then(|key| acks.get(&key))) {
            (Some(first), Some((committed, arrived))) => {
                let whole = first.saturating_duration_since(*arrived).as_micros();
                let _ = latency.record(u64::try_from(whole).unwrap_or(u64::MAX).max(1));
                let _ = noticed.record(micros(notice.created_at - committed));
                let received_ms = facts.traffic_start_ms
                    + i64::try_from(
                        first
                            .saturating_duration_since(facts.traffic_start)
                            .as_millis(),
                    )
                    .unwrap_or(0);
                let _ = sent.record(micros(received_ms - notice.created_at));
            }
            // A notice of a post whose acknowledgement never came.
            _ => report.errors += 1,
        }
    }
    let ms = |h: &hdrhistogram::Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let max = |h: &hdrhistogram::Histogram<u64>| h.max() as f64 / 1000.0;
    report.p50_ms = ms(&latency, 0.5);
    report.p95_ms = ms(&latency, 0.95);
    report.p99_ms = ms(&latency, 0.99);
    report.max_ms = max(&latency);
    report.notice_p50_ms = ms(&noticed, 0.5);
    report.notice_p99_ms = ms(&noticed, 0.99);
    report.notice_max_ms = max(&noticed);
    report.send_p50_ms = ms(&sent, 0.5);
    report.send_p99_ms = ms(&sent, 0.99);
    report.send_max_ms = max(&sent);

    // Notices by person and group, in the order they were written.
    let mut told: HashMap<(UserId, GroupId), Vec<&Notice>> = HashMap::new();
    for notice in facts.notices {
        if let Some(group) = notice.group {
            told.entry((notice.user, group)).or_default().push(notice);
        }
    }
    for list in told.values_mut() {
        list.sort_by_key(|n| (n.created_at, n.id));
        let plain: Vec<Millis> = list
            .iter()
            .filter(|n| n.kind == "post")
            .map(|n| n.created_at)
            .collect();
        report.coalescing_violations += plain
            .windows(2)
            .filter(|pair| pair[1] - pair[0] < facts.window_ms)
            .count() as u64;
    }

    // Every post, for every subscribed member of its group (none of whom posts): covered
    // by an earlier notice written within the window before its commit (the follower
    // looked at the post later still, so that notice held it back), or by a notice that
    // covers its sequence number, in time if written within `SLACK_MS` of the commit. Per
    // group the follower goes in sequence order, so an earlier notice has a smaller `seq`.
    let empty = Vec::new();
    for (user, group) in facts.subscriptions.values() {
        let list = told.get(&(*user, *group)).unwrap_or(&empty);
        for (seq, at) in posts.get(group).unwrap_or(&Vec::new()) {
            let held_back = list.iter().any(|n| {
                n.seq.is_some_and(|covers| covers < *seq) && n.created_at > at - facts.window_ms
            });
            let own = list
                .iter()
                .filter(|n| n.seq.is_some_and(|covers| covers >= *seq))
                .map(|n| n.created_at)
                .min();
            match own {
                _ if held_back => {}
                Some(written) if written <= at + SLACK_MS => {}
                Some(_) => report.posts_told_late += 1,
                None => report.posts_untold += 1,
            }
        }
    }
    report.lost = report.notices_unpushed + report.posts_untold;

    for (outcome, attempts) in facts.deliveries {
        match outcome.as_deref() {
            Some("sent") => report.deliveries_sent += 1,
            Some(_) => report.deliveries_gave_up += 1,
            None => report.deliveries_pending += 1,
        }
        if *attempts > 1 {
            report.deliveries_retried += 1;
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Millis = 60_000;

    fn notice(id: i64, user: UserId, group: GroupId, seq: Seq, created_at: Millis) -> Notice {
        Notice {
            id,
            user,
            group: Some(group),
            kind: "post".into(),
            seq: Some(seq),
            created_at,
        }
    }

    fn accepted(subscription: u64, notice: &Notice, at: Instant) -> Received {
        let payload =
            serde_json::json!({ "kind": notice.kind, "group": notice.group, "id": notice.id });
        Received {
            subscription: Some(subscription),
            method: "POST".into(),
            path: format!("/push/{subscription}"),
            at,
            status: 201,
            refused: None,
            ttl: Some(86_400),
            urgency: Some("normal".into()),
            topic: None,
            content_encoding: Some("aes128gcm".into()),
            vapid: Err("not checked here".into()),
            payload: Ok(payload.to_string().into_bytes()),
        }
    }

    struct Case {
        start: Instant,
        subscriptions: HashMap<u64, (UserId, GroupId)>,
        acked: Vec<Acked>,
        notices: Vec<Notice>,
        received: Vec<Received>,
    }

    impl Case {
        /// Group 7: user 1 posts seq 1 at 1 s and seq 2 at 2 s; users 2 and 3 are away
        /// (subscriptions 20 and 30) and are told of seq 1 at 1.1 s, pushed at 1.3 s.
        fn new() -> Case {
            let start = Instant::now();
            let at = |ms: u64| start + Duration::from_millis(ms);
            let notices = vec![notice(100, 2, 7, 1, 1_100), notice(101, 3, 7, 1, 1_100)];
            let received = vec![
                accepted(20, &notices[0], at(1_300)),
                accepted(30, &notices[1], at(1_300)),
            ];
            Case {
                start,
                subscriptions: HashMap::from([(20, (2, 7)), (30, (3, 7))]),
                acked: vec![
                    Acked {
                        id: None,
                        group: 7,
                        seq: 1,
                        at: 1_000,
                        arrived: at(1_000),
                    },
                    Acked {
                        id: None,
                        group: 7,
                        seq: 2,
                        at: 2_000,
                        arrived: at(2_000),
                    },
                ],
                notices,
                received,
            }
        }

        fn tally(&self) -> Report {
            tally(&Facts {
                window_ms: WINDOW,
                traffic_start: self.start,
                traffic_start_ms: 0,
                subscriptions: &self.subscriptions,
                acked: &self.acked,
                notices: &self.notices,
                deliveries: &[(Some("sent".into()), 1), (Some("sent".into()), 2)],
                received: &self.received,
            })
        }
    }

    #[test]
    fn a_second_post_inside_the_window_is_covered_by_the_first_push() {
        let report = Case::new().tally();
        assert_eq!(report.lost, 0, "{report:?}");
        assert_eq!(report.duplicates, 0);
        assert_eq!(report.misdirected, 0);
        assert_eq!(report.coalescing_violations, 0);
        assert_eq!(report.pushes_accepted, 2);
        assert_eq!(report.peak_pushes_per_sec, 2);
        assert_eq!((report.deliveries_sent, report.deliveries_retried), (2, 1));
        // Commit of seq 1 at 1.0 s, notice at 1.1 s, receipt at 1.3 s.
        assert!((report.p99_ms - 300.0).abs() < 1.0, "{}", report.p99_ms);
        assert!((report.notice_p99_ms - 100.0).abs() < 1.0, "{report:?}");
        assert!((report.send_p99_ms - 200.0).abs() < 1.0, "{report:?}");
    }

    #[test]
    fn a_member_never_told_loses_every_post() {
        let mut case = Case::new();
        case.notices.remove(1);
        case.received.remove(1);
        let report = case.tally();
        assert_eq!((report.posts_untold, report.lost), (2, 2), "{report:?}");
    }

    #[test]
    fn a_post_after_the_window_needs_a_notice_of_its_own() {
        let mut case = Case::new();
        for acked in &mut case.acked {
            if acked.seq == 2 {
                acked.at = 1_100 + WINDOW + 5;
            }
        }
        assert_eq!(case.tally().posts_untold, 2);
        // Told within the slack: covered; beyond it: late, not lost.
        case.notices.push(notice(102, 2, 7, 2, 1_100 + WINDOW + 50));
        case.notices
            .push(notice(103, 3, 7, 2, 1_100 + WINDOW + 5 + SLACK_MS + 1));
        let report = case.tally();
        assert_eq!(report.posts_untold, 0, "{report:?}");
        assert_eq!(report.posts_told_late, 1, "{report:?}");
        // Neither was pushed.
        assert_eq!(report.notices_unpushed, 2);
        assert_eq!(report.lost, 2);
    }

    #[test]
    fn a_repeat_a_stray_and_a_notice_inside_the_window_are_caught() {
        let mut case = Case::new();
        let again = case.received[0].clone();
        case.received.push(again);
        // Notice 100 sent to user 3's subscription.
        let mut stray = case.received[0].clone();
        stray.subscription = Some(30);
        case.received.push(stray);
        // Told twice within the window.
        case.notices.push(notice(104, 2, 7, 2, 2_100));
        let pushed = accepted(20, &case.notices[2], case.start + Duration::from_secs(3));
        case.received.push(pushed);
        let report = case.tally();
        assert_eq!(report.duplicates, 1, "{report:?}");
        assert_eq!(report.misdirected, 1);
        assert_eq!(report.coalescing_violations, 1);
        assert_eq!(report.lost, 0);
        assert!(!report.passed());
    }

    #[test]
    fn refused_and_undecryptable_requests_are_not_pushes() {
        let mut case = Case::new();
        case.received[1].status = 403;
        case.received[1].refused = Some("the JWT's signature does not verify".into());
        let report = case.tally();
        assert_eq!(report.pushes_refused, 1);
        assert_eq!(report.notices_unpushed, 1);
        assert!(!report.passed());
    }
}

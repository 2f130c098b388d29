//! `renkei-load soak` (issue 10): mixed traffic for minutes on two nodes over a private
//! PostgreSQL and Redis, while faults are injected in turn — `kill -9` of a node (started
//! again on its port), a Redis restart, a PostgreSQL crash. Members post, reconnect now and
//! then, read history and resend what was not acknowledged (the client contract: the same
//! client id); an admin deletes posts and archives and restores groups. At the end, the
//! Jepsen-style check over every acknowledged post (lost, duplicates, order per group), the
//! memory of the node never killed, and `renkei audit verify`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use renkei_protocol::{
    ClientMessage, ErrorCode, EventData, GroupId, Seq, ServerMessage, SyncCursor,
};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::member::histogram;
use crate::population::{Extras, Member, Population};
use crate::target::{Database, FreshDb, Target};

/// How long members may take, once the traffic stops, to get every post acknowledged.
const SETTLE: Duration = Duration::from_secs(90);

/// The parameters of a soak.
#[derive(Debug, Clone)]
pub struct Spec {
    pub seconds: f64,
    pub groups: usize,
    pub members: usize,
    /// Posts per second over the whole population.
    pub rate: f64,
    /// Seconds between faults.
    pub fault_every: f64,
}

/// One injected fault.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    pub at_s: f64,
    pub what: String,
    /// Seconds until the part was back (node listening, server accepting).
    pub back_after_s: f64,
}

/// What a soak found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: String,
    pub duration_s: f64,
    pub groups: u64,
    pub members: u64,
    pub target_rate: f64,
    /// Post frames sent, resends included.
    pub posts_sent: u64,
    /// Distinct posts acknowledged.
    pub posts_acked: u64,
    /// Posts refused for good (a group in the archive for a moment, say).
    pub posts_refused: u64,
    /// Posts sent again with their client id after a reconnect or a retryable error.
    pub resent: u64,
    pub reconnects: u64,
    pub history_pages: u64,
    pub deleted: u64,
    pub archived: u64,
    pub restored: u64,
    pub faults: Vec<Fault>,
    /// Acknowledged posts missing from their group's final history.
    pub lost: u64,
    /// Times an acknowledged post in the history was never received by another member of
    /// its group (live or by catch-up): a delivery fault, told apart from a storage one.
    pub undelivered: u64,
    /// A client id twice in a group's final history, or an event received twice.
    pub duplicates: u64,
    /// Events a member received after a later one, and holes in a group's sequence.
    pub out_of_order: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Resident memory of the node never killed, a fifth into the run and at the end.
    pub rss_mib_after_warmup: f64,
    pub rss_mib_at_end: f64,
    pub memory_steady: bool,
    pub audit_verified: bool,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.undelivered == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.memory_steady
            && self.audit_verified
    }
}

/// What the members share with the admin: every acknowledged post, to pick from.
#[derive(Default)]
struct Shared {
    acked: Mutex<Vec<(GroupId, Seq)>>,
}

/// What one member did and saw.
struct Outcome {
    member: Member,
    acked: Vec<(String, Seq)>,
    seen: HashSet<Seq>,
    latency: Histogram<u64>,
    sent: u64,
    resent: u64,
    refused: u64,
    reconnects: u64,
    history_pages: u64,
    duplicates: u64,
    out_of_order: u64,
    errors: u64,
}

/// The two nodes' fixed ports (a killed node comes back on its own) and how to start one.
struct Nodes {
    ports: [u16; 2],
    bin: std::path::PathBuf,
    db: FreshDb,
    redis_url: String,
    prefix: String,
}

impl Nodes {
    fn addrs(&self) -> Vec<SocketAddr> {
        self.ports
            .iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect()
    }

    /// Starts node `i`, retrying while its port is still being released.
    async fn start(&self, i: usize) -> Result<Target, String> {
        let env = [
            ("RENKEI_LISTEN", format!("127.0.0.1:{}", self.ports[i])),
            ("RENKEI_REDIS_URL", self.redis_url.clone()),
            ("RENKEI_REDIS_PREFIX", self.prefix.clone()),
            ("RENKEI_TWO_FACTOR", "optional".to_string()),
            // Seals during the run, so that the final verification covers them.
            ("RENKEI_AUDIT_SEAL_SECONDS", "20".to_string()),
        ];
        let mut last = String::new();
        for _ in 0..20 {
            match Target::renkei(&self.bin, &self.db, &env).await {
                Ok(target) => return Ok(target),
                Err(err) => last = err.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(last)
    }
}

/// Runs the soak; `Err` when it could not be set up.
pub async fn run(spec: &Spec, bin: &Path) -> Result<Report, String> {
    let text = |e: renkei_testbed::TestbedError| e.to_string();
    let mut pg = renkei_testbed::OwnPostgres::start().await.map_err(text)?;
    let mut redis = renkei_testbed::OwnRedis::start(renkei_testbed::free_port().map_err(text)?)
        .await
        .map_err(text)?;
    let db = FreshDb::create(&Database::Postgres(pg.url()))
        .await
        .map_err(|e| e.to_string())?;
    let population = {
        let store = renkei::store::open(&db.url)
            .await
            .map_err(|e| e.to_string())?;
        let extras = Extras {
            intruder: false,
            admin: true,
        };
        Population::create(store.as_ref(), spec.groups, spec.members, extras)
            .await
            .map_err(|e| e.to_string())?
    };
    let admin = population
        .admin
        .clone()
        .ok_or("no admin in the population")?;
    let nodes = Nodes {
        ports: [
            renkei_testbed::free_port().map_err(text)?,
            renkei_testbed::free_port().map_err(text)?,
        ],
        bin: bin.to_path_buf(),
        db,
        redis_url: redis.url(),
        prefix: format!("renkei-soak-{}", std::process::id()),
    };
    let mut killed = Some(nodes.start(0).await?);
    let steady = nodes.start(1).await?;
    let addrs: Arc<[SocketAddr]> = nodes.addrs().into();

    let start = Instant::now();
    let shared = Arc::new(Shared::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut senders = Vec::with_capacity(population.people.len());
    let mut tasks = Vec::with_capacity(population.people.len());
    for (i, person) in population.people.iter().enumerate() {
        let (tx, rx) = mpsc::channel(64);
        senders.push(tx);
        tasks.push(tokio::spawn(member(
            Arc::clone(&addrs),
            person.clone(),
            start,
            rx,
            Arc::clone(&shared),
            i as u64,
        )));
    }
    let moderation = tokio::spawn(moderate(
        Arc::clone(&addrs),
        admin,
        population.group_ids(),
        Arc::clone(&shared),
        stop_rx.clone(),
    ));

    // Traffic and memory samples on this task; faults on the schedule, in turn.
    let end = start + Duration::from_secs_f64(spec.seconds);
    let warmup = start + Duration::from_secs_f64(spec.seconds / 5.0);
    let schedule = tokio::spawn(schedule(senders, start, spec.rate, spec.seconds));
    let mut faults = Vec::new();
    let mut rss_after_warmup = None;
    let mut next_fault = start + Duration::from_secs_f64(spec.fault_every);
    let mut turn = 0;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= warmup && rss_after_warmup.is_none() {
            rss_after_warmup = Some(steady.usage().await.rss_kib);
        }
        if now >= next_fault && now + Duration::from_secs(5) < end {
            let at_s = start.elapsed().as_secs_f64();
            let began = Instant::now();
            let what = match turn % 3 {
                0 => {
                    if let Some(node) = killed.take() {
                        node.stop().await; // SIGKILL
                    }
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    killed = Some(nodes.start(0).await?);
                    "kill -9 of node 1, started again"
                }
                1 => {
                    redis.kill().await.map_err(text)?;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    redis.resume().await.map_err(text)?;
                    "Redis killed, started again (empty)"
                }
                _ => {
                    pg.crash().await.map_err(text)?;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    pg.resume().await.map_err(text)?;
                    "PostgreSQL crashed (immediate shutdown), started again"
                }
            };
            faults.push(Fault {
                at_s,
                what: what.into(),
                back_after_s: began.elapsed().as_secs_f64(),
            });
            turn += 1;
            next_fault += Duration::from_secs_f64(spec.fault_every);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let sent_for = schedule.await.unwrap_or(spec.seconds);
    let _ = stop_tx.send(true);
    let moderation = moderation.await.unwrap_or_default();
    let mut outcomes = Vec::with_capacity(tasks.len());
    let mut errors = 0;
    for task in tasks {
        match task.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => errors += 1,
        }
    }
    let rss_at_end = steady.usage().await.rss_kib;

    let mut report = check(&population, &outcomes, &moderation.deleted, addrs[1]).await;
    report.scenario = "soak".into();
    report.target = "renkei-postgres ×2 nodes, Redis".into();
    report.duration_s = sent_for;
    report.groups = population.groups as u64;
    report.members = population.members as u64;
    report.target_rate = spec.rate;
    report.deleted = moderation.deleted.len() as u64;
    report.archived = moderation.archived;
    report.restored = moderation.restored;
    report.errors += errors + moderation.errors;
    report.faults = faults;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let warm = rss_after_warmup.unwrap_or(rss_at_end);
    report.rss_mib_after_warmup = mib(warm);
    report.rss_mib_at_end = mib(rss_at_end);
    // Steady: within a quarter (and 16 MiB) of what it held once warmed up.
    report.memory_steady = rss_at_end as f64 <= warm as f64 * 1.25 + 16.0 * 1024.0;
    report.audit_verified = verify_audit(bin, &nodes.db.url).await;

    if let Some(node) = killed {
        node.stop().await;
    }
    steady.stop().await;
    nodes.db.remove().await;
    drop(redis);
    drop(pg);
    Ok(report)
}

/// Posts open-loop at `rate` for `seconds`, each to a random member; returns how long it ran.
async fn schedule(senders: Vec<mpsc::Sender<u64>>, start: Instant, rate: f64, seconds: f64) -> f64 {
    let total = (rate * seconds).round() as u64;
    let mut rng = StdRng::seed_from_u64(7);
    for id in 0..total {
        let due = start + Duration::from_secs_f64(id as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        let member = rng.gen_range(0..senders.len());
        // A member whose queue is full (stuck behind an outage) skips this post.
        let _ = senders[member].try_send(start.elapsed().as_micros() as u64);
    }
    start.elapsed().as_secs_f64()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: SocketAddr, token: &str) -> Option<Socket> {
    let mut request = format!("ws://{addr}/ws").into_client_request().ok()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().ok()?);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .ok()?
    .ok()?;
    // The welcome comes first.
    match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => Some(ws),
        _ => None,
    }
}

fn frame(message: &ClientMessage) -> Message {
    Message::text(serde_json::to_string(message).unwrap_or_default())
}

/// Errors after which the same post may succeed later (sent again with its client id).
fn retryable(code: ErrorCode) -> bool {
    matches!(
        code,
        ErrorCode::Unavailable
            | ErrorCode::ShuttingDown
            | ErrorCode::Internal
            | ErrorCode::RateLimited
            | ErrorCode::Overloaded
    )
}

/// One member: connects to either node, syncs from what it holds, posts what the scheduler
/// sends, resends what is unacknowledged after every reconnect, drops its connection now
/// and then, and reads a page of history now and then.
async fn member(
    nodes: Arc<[SocketAddr]>,
    me: Member,
    start: Instant,
    mut commands: mpsc::Receiver<u64>,
    shared: Arc<Shared>,
    seed: u64,
) -> Outcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Outcome {
        member: me.clone(),
        acked: Vec::new(),
        seen: HashSet::new(),
        latency: histogram(),
        sent: 0,
        resent: 0,
        refused: 0,
        reconnects: 0,
        history_pages: 0,
        duplicates: 0,
        out_of_order: 0,
        errors: 0,
    };
    let mut next_id = 0u64;
    let mut pending: BTreeMap<String, String> = BTreeMap::new(); // client id -> text
    let mut last: Seq = 0;
    let mut traffic = true;
    let mut settle_until: Option<Instant> = None;
    'connection: loop {
        if let Some(until) = settle_until {
            if pending.is_empty() || Instant::now() >= until {
                break;
            }
        }
        let addr = nodes[rng.gen_range(0..nodes.len())];
        let Some(ws) = connect(addr, &me.token).await else {
            tokio::time::sleep(Duration::from_millis(300)).await;
            continue;
        };
        let (mut sink, mut stream) = ws.split();
        let sync = ClientMessage::Sync {
            groups: vec![SyncCursor {
                group: me.group,
                after: last,
            }],
        };
        if sink.send(frame(&sync)).await.is_err() {
            continue;
        }
        let mut synced = false;
        let mut drop_at = Instant::now() + Duration::from_secs(rng.gen_range(20..120));
        let mut read_at = Instant::now() + Duration::from_secs(rng.gen_range(10..60));
        let mut retry_at: Option<Instant> = None;
        loop {
            let wake = [Some(drop_at), Some(read_at), retry_at, settle_until]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(drop_at);
            tokio::select! {
                command = commands.recv(), if traffic => match command {
                    Some(scheduled_us) => {
                        let client_id = format!("s{seed}-{next_id}");
                        next_id += 1;
                        let text = format!("{scheduled_us}|soak");
                        pending.insert(client_id.clone(), text.clone());
                        if synced {
                            out.sent += 1;
                            let post = ClientMessage::Post {
                                group: me.group,
                                client_id,
                                text,
                                file: None,
                            };
                            if sink.send(frame(&post)).await.is_err() {
                                break;
                            }
                        }
                    }
                    None => {
                        traffic = false;
                        settle_until = Some(Instant::now() + SETTLE);
                    }
                },
                incoming = stream.next() => match incoming {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(message) = serde_json::from_str::<ServerMessage>(text.as_str()) else {
                            out.errors += 1;
                            continue;
                        };
                        match message {
                            ServerMessage::Event(event) if event.group == me.group => {
                                if event.seq <= last {
                                    if out.seen.contains(&event.seq) {
                                        out.duplicates += 1;
                                    } else {
                                        out.out_of_order += 1;
                                    }
                                    continue;
                                }
                                last = event.seq;
                                out.seen.insert(event.seq);
                                if let EventData::Post { author, text, .. } = &event.data {
                                    if author.id != me.user {
                                        if let Some(scheduled) = text.split('|').next().and_then(|s| s.parse::<u64>().ok()) {
                                            let now = start.elapsed().as_micros() as u64;
                                            let _ = out.latency.record(now.saturating_sub(scheduled).max(1));
                                        }
                                    }
                                }
                            }
                            ServerMessage::Synced { .. } => {
                                synced = true;
                                if !resend(&mut sink, me.group, &pending, &mut out).await {
                                    break;
                                }
                            }
                            ServerMessage::Ack(ack) if pending.remove(&ack.client_id).is_some() => {
                                shared.acked.lock().unwrap_or_else(PoisonError::into_inner).push((me.group, ack.seq));
                                out.acked.push((ack.client_id, ack.seq));
                            }
                            ServerMessage::Error(error) => match error.client_id {
                                Some(client_id) if retryable(error.code) => {
                                    if pending.contains_key(&client_id) {
                                        retry_at.get_or_insert(Instant::now() + Duration::from_secs(1));
                                    }
                                }
                                Some(client_id) => {
                                    if pending.remove(&client_id).is_some() {
                                        out.refused += 1;
                                    }
                                }
                                None => out.errors += 1,
                            },
                            ServerMessage::Page { .. } => out.history_pages += 1,
                            _ => {}
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                    Some(Ok(_)) => {}
                },
                () = tokio::time::sleep_until(wake.into()) => {
                    let now = Instant::now();
                    if let Some(until) = settle_until {
                        if pending.is_empty() || now >= until {
                            let _ = sink.send(Message::Close(None)).await;
                            break 'connection;
                        }
                    }
                    if now >= drop_at {
                        // A phone going through a tunnel: drop, reconnect, catch up.
                        let _ = sink.send(Message::Close(None)).await;
                        drop_at = now + Duration::from_secs(3600);
                        break;
                    }
                    if now >= read_at {
                        read_at = now + Duration::from_secs(rng.gen_range(30..90));
                        let history = ClientMessage::History { group: me.group, before: Some(last.max(1)), limit: Some(20) };
                        if sink.send(frame(&history)).await.is_err() {
                            break;
                        }
                    }
                    if retry_at.is_some_and(|at| now >= at) && synced {
                        retry_at = None;
                        if !resend(&mut sink, me.group, &pending, &mut out).await {
                            break;
                        }
                    }
                }
            }
        }
        out.reconnects += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(100..600))).await;
    }
    out.errors += pending.len() as u64; // never acknowledged: counted, not lost (never acked)
    out
}

/// Sends every unacknowledged post again, with its client id (the server stores each once
/// and acknowledges a repeat with the first one's place); false when the socket failed.
async fn resend(
    sink: &mut futures::stream::SplitSink<Socket, Message>,
    group: GroupId,
    pending: &BTreeMap<String, String>,
    out: &mut Outcome,
) -> bool {
    for (client_id, text) in pending {
        out.sent += 1;
        out.resent += 1;
        let post = ClientMessage::Post {
            group,
            client_id: client_id.clone(),
            text: text.clone(),
            file: None,
        };
        if sink.send(frame(&post)).await.is_err() {
            return false;
        }
    }
    true
}

/// What the admin did.
#[derive(Default)]
struct Moderation {
    deleted: HashSet<(GroupId, Seq)>,
    archived: u64,
    restored: u64,
    errors: u64,
}

/// The admin: every few seconds deletes an acknowledged post (with a reason); now and then
/// moves a group to the archive and, a few seconds later, back. Calls go to either node;
/// one that fails (a node or the database away) is tried again at the next turn.
async fn moderate(
    nodes: Arc<[SocketAddr]>,
    admin: Member,
    groups: Vec<GroupId>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Moderation {
    let client = reqwest::Client::new();
    let mut rng = StdRng::seed_from_u64(3);
    let mut done = Moderation::default();
    let mut archived: Option<(GroupId, Instant)> = None;
    let mut turn = 0u64;
    let call = |path: String, body: serde_json::Value, node: SocketAddr| {
        client
            .post(format!("http://{node}{path}"))
            .bearer_auth(&admin.token)
            .json(&body)
            .timeout(Duration::from_secs(10))
            .send()
    };
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            () = tokio::time::sleep(Duration::from_secs(4)) => {}
        }
        turn += 1;
        let node = nodes[rng.gen_range(0..nodes.len())];
        if let Some((group, since)) = archived {
            if since.elapsed() >= Duration::from_secs(5) {
                let path = format!("/api/v1/groups/{group}/restore");
                match call(path, serde_json::json!({}), node).await {
                    Ok(r) if r.status().is_success() => {
                        done.restored += 1;
                        archived = None;
                    }
                    _ => done.errors += 1,
                }
            }
            continue;
        }
        if turn.is_multiple_of(8) {
            let group = groups[rng.gen_range(0..groups.len())];
            let path = format!("/api/v1/groups/{group}/archive");
            match call(path, serde_json::json!({}), node).await {
                Ok(r) if r.status().is_success() => {
                    done.archived += 1;
                    archived = Some((group, Instant::now()));
                }
                _ => done.errors += 1,
            }
            continue;
        }
        let pick = {
            let acked = shared.acked.lock().unwrap_or_else(PoisonError::into_inner);
            (!acked.is_empty()).then(|| acked[rng.gen_range(0..acked.len())])
        };
        let Some((group, seq)) = pick else { continue };
        if done.deleted.contains(&(group, seq)) {
            continue;
        }
        let path = format!("/api/v1/groups/{group}/posts/{seq}/delete");
        match call(
            path,
            serde_json::json!({ "reason": "soak: moderation" }),
            node,
        )
        .await
        {
            Ok(r) if r.status().is_success() => {
                done.deleted.insert((group, seq));
            }
            _ => done.errors += 1,
        }
    }
    // A group still in the archive comes back, so that the check reads it like the others.
    if let Some((group, _)) = archived {
        for _ in 0..20 {
            let node = nodes[rng.gen_range(0..nodes.len())];
            let path = format!("/api/v1/groups/{group}/restore");
            if matches!(call(path, serde_json::json!({}), node).await, Ok(r) if r.status().is_success())
            {
                done.restored += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    done
}

/// The Jepsen-style check. Each group is read from its start by a fresh socket of one of
/// its members: its sequence has no holes; every acknowledged post is at its place, once
/// (or its tombstone, if the admin deleted it); and every member of the group received
/// every acknowledged post of the others.
async fn check(
    population: &Population,
    outcomes: &[Outcome],
    deleted: &HashSet<(GroupId, Seq)>,
    node: SocketAddr,
) -> Report {
    let mut report = Report::default();
    let mut latency = histogram();
    for outcome in outcomes {
        report.posts_sent += outcome.sent;
        report.posts_acked += outcome.acked.len() as u64;
        report.posts_refused += outcome.refused;
        report.resent += outcome.resent;
        report.reconnects += outcome.reconnects;
        report.history_pages += outcome.history_pages;
        report.duplicates += outcome.duplicates;
        report.out_of_order += outcome.out_of_order;
        report.errors += outcome.errors;
        let _ = latency.add(&outcome.latency);
    }
    for group in outcomes.chunks(population.members.max(1)) {
        let id = group[0].member.group;
        let Some(events) = read_group(node, &group[0].member).await else {
            report.errors += 1;
            report.lost += group.iter().map(|o| o.acked.len() as u64).sum::<u64>();
            continue;
        };
        // No holes, in order.
        for (i, event) in events.iter().enumerate() {
            if event.0 != i as Seq + 1 {
                report.out_of_order += 1;
            }
        }
        let at: HashMap<Seq, &EventData> = events.iter().map(|(seq, data)| (*seq, data)).collect();
        let mut ids: HashMap<(i64, &str), u64> = HashMap::new();
        for (_, data) in &events {
            if let EventData::Post {
                author, client_id, ..
            } = data
            {
                *ids.entry((author.id, client_id.as_str())).or_default() += 1;
            }
        }
        report.duplicates += ids.values().filter(|n| **n > 1).map(|n| n - 1).sum::<u64>();
        for (author, outcome) in group.iter().enumerate() {
            for (client_id, seq) in &outcome.acked {
                let in_place = match at.get(seq) {
                    Some(EventData::Post {
                        client_id: stored,
                        author: who,
                        ..
                    }) => stored == client_id && who.id == outcome.member.user,
                    Some(EventData::DeletedPost { .. }) => deleted.contains(&(id, *seq)),
                    _ => false,
                };
                if !in_place {
                    report.lost += 1;
                }
                for (reader, other) in group.iter().enumerate() {
                    if reader != author && !other.seen.contains(seq) {
                        report.undelivered += 1;
                    }
                }
            }
        }
    }
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    report.p50_ms = ms(0.5);
    report.p99_ms = ms(0.99);
    report.max_ms = latency.max() as f64 / 1000.0;
    report
}

/// Every event of `member`'s group, read from the start on a fresh socket.
async fn read_group(node: SocketAddr, member: &Member) -> Option<Vec<(Seq, EventData)>> {
    let ws = connect(node, &member.token).await?;
    let (mut sink, mut stream) = ws.split();
    let sync = ClientMessage::Sync {
        groups: vec![SyncCursor {
            group: member.group,
            after: 0,
        }],
    };
    sink.send(frame(&sync)).await.ok()?;
    let mut events = Vec::new();
    let read = async {
        while let Some(Ok(incoming)) = stream.next().await {
            let Message::Text(text) = incoming else {
                continue;
            };
            match serde_json::from_str::<ServerMessage>(text.as_str()) {
                Ok(ServerMessage::Event(event)) if event.group == member.group => {
                    events.push((event.seq, event.data));
                }
                Ok(ServerMessage::Synced { group, .. }) if group == member.group => return true,
                _ => {}
            }
        }
        false
    };
    let complete = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .unwrap_or(false);
    let _ = sink.send(Message::Close(None)).await;
    complete.then_some(events)
}

/// `renkei audit verify` on the run's database: the chain, the seals, every post's hash.
async fn verify_audit(bin: &Path, database_url: &str) -> bool {
    tokio::process::Command::new(bin)
        .args(["audit", "verify"])
        .env("RENKEI_DATABASE_URL", database_url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|status| status.success())
}

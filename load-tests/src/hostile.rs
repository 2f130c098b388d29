//! Hostile clients (issue 10), one at a time beside the fan-out: for a window in the middle
//! of the run an intruder — a member of every group, with a valid session — misbehaves,
//! while the members' delivery latency in that window is measured on its own. Every attack
//! is bounded in count and time, and runs on loopback only (the targets this tool drives).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use rand::{Rng as _, SeedableRng as _};
use renkei_protocol::{ClientMessage, GroupId};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::population::Member;

/// The misbehaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Attack {
    /// Opens WebSockets as fast as it can (half with the intruder's session, half with
    /// none), holding every one it gets.
    Sockets,
    /// Opens as many sockets as it may and never reads from them while every group's
    /// posts are sent to it.
    NeverReads,
    /// Hundreds of connections sending a request head one byte a second.
    Slowloris,
    /// Posts as fast as the socket takes them, reconnecting whenever it is closed.
    Flood,
    /// 1 MiB frames, reconnecting whenever it is closed.
    BigFrames,
    /// Posts under the client ids the members use (`p{n}`), each twice with other text.
    Replay,
    /// Uploads decompression bombs (a 35-byte GIF declaring a 6000 × 6000 screen: 144 MB
    /// once decoded) into the groups from many connections at once, each sending the next
    /// as soon as the last is answered (50 ms after a 429).
    Uploads,
    /// Nothing: the intruder is a member of every group and holds its session, as in every
    /// attack, but does nothing in the window. The control for the others, measured the
    /// same way in the same minutes.
    None,
}

impl Attack {
    pub fn name(self) -> &'static str {
        match self {
            Attack::Sockets => "sockets",
            Attack::NeverReads => "never-reads",
            Attack::Slowloris => "slowloris",
            Attack::Flood => "flood",
            Attack::BigFrames => "big-frames",
            Attack::Replay => "replay",
            Attack::Uploads => "uploads",
            Attack::None => "none",
        }
    }
}

/// What the intruder did and what the server made of it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackStats {
    pub attack: String,
    /// Sockets, connections or frames the intruder tried.
    pub attempted: u64,
    /// What the server took: sockets upgraded, posts stored.
    pub accepted: u64,
    /// What the server refused: upgrades answered with an error status, error frames.
    pub refused: u64,
    /// Times the server closed one of the intruder's connections.
    pub closed_by_server: u64,
    /// The intruder's connections still open when the attack ended.
    pub still_open: u64,
    /// Uploads: how many answers of each HTTP status (0: no answer).
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub statuses: std::collections::BTreeMap<u16, u64>,
}

/// Upper bounds, whatever the window: the attack never runs away.
const MAX_SOCKETS: u64 = 2_000;
const SLOWLORIS_CONNECTIONS: usize = 300;
const MAX_FLOOD_FRAMES: u64 = 200_000;
const BIG_FRAME: usize = 1024 * 1024;
const MAX_BIG_FRAMES: u64 = 200;
/// Replayed posts per second: under the per-user post limit, so that what is measured is
/// what a replay does, not the rate limit.
const REPLAYS_PER_SECOND: f64 = 5.0;
/// Uploads in flight at once: each of these connections sends its next bomb when the last
/// is answered, so a server that decodes them all holds this many decoded images at most.
const UPLOAD_CONNECTIONS: usize = 16;
const MAX_UPLOADS: u64 = 100_000;

/// Runs `attack` against `addr` for `seconds`, after `delay`.
pub async fn run(
    attack: Attack,
    addr: SocketAddr,
    intruder: Member,
    groups: Vec<GroupId>,
    delay: Duration,
    seconds: f64,
) -> AttackStats {
    tokio::time::sleep(delay).await;
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let mut stats = AttackStats {
        attack: attack.name().into(),
        ..AttackStats::default()
    };
    match attack {
        Attack::Sockets => sockets(addr, &intruder, until, &mut stats).await,
        Attack::NeverReads => never_reads(addr, &intruder, until, &mut stats).await,
        Attack::Slowloris => slowloris(addr, until, &mut stats).await,
        Attack::Flood => flood(addr, &intruder, &groups, until, &mut stats).await,
        Attack::BigFrames => big_frames(addr, &intruder, until, &mut stats).await,
        Attack::Replay => replay(addr, &intruder, &groups, until, &mut stats).await,
        Attack::Uploads => uploads(addr, &intruder, &groups, until, &mut stats).await,
        Attack::None => tokio::time::sleep_until(until.into()).await,
    }
    stats
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a WebSocket (with the intruder's session when `token` is given); `Err` carries
/// the HTTP status of a refused upgrade (0: no answer).
async fn open(addr: SocketAddr, token: Option<&str>) -> Result<Socket, u16> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|_| 0u16)?;
    if let Some(token) = token {
        let header = format!("Bearer {token}").parse().map_err(|_| 0u16)?;
        request.headers_mut().insert("authorization", header);
    }
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            Err(response.status().as_u16())
        }
        _ => Err(0),
    }
}

async fn sockets(addr: SocketAddr, intruder: &Member, until: Instant, stats: &mut AttackStats) {
    let mut held = Vec::new();
    while Instant::now() < until && stats.attempted < MAX_SOCKETS {
        let token = stats
            .attempted
            .is_multiple_of(2)
            .then_some(intruder.token.as_str());
        stats.attempted += 1;
        match open(addr, token).await {
            Ok(ws) => {
                stats.accepted += 1;
                held.push(ws);
            }
            Err(_) => stats.refused += 1,
        }
    }
    stats.still_open = held.len() as u64;
    for mut ws in held {
        let _ = ws.close(None).await;
    }
}

async fn never_reads(addr: SocketAddr, intruder: &Member, until: Instant, stats: &mut AttackStats) {
    // As many sockets as the intruder may have; none is ever read until the end.
    let mut held = Vec::new();
    for _ in 0..16 {
        stats.attempted += 1;
        match open(addr, Some(&intruder.token)).await {
            Ok(ws) => {
                stats.accepted += 1;
                held.push(ws);
            }
            Err(_) => stats.refused += 1,
        }
    }
    tokio::time::sleep_until(until.into()).await;
    // Now read what piled up: a socket the server gave up on ends in a close or an error.
    for mut ws in held {
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match ws.next().await {
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return true,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .unwrap_or(false);
        if ended {
            stats.closed_by_server += 1;
        } else {
            stats.still_open += 1;
            let _ = ws.close(None).await;
        }
    }
}

async fn slowloris(addr: SocketAddr, until: Instant, stats: &mut AttackStats) {
    let mut tasks = Vec::with_capacity(SLOWLORIS_CONNECTIONS);
    for _ in 0..SLOWLORIS_CONNECTIONS {
        stats.attempted += 1;
        tasks.push(tokio::spawn(async move {
            let Ok(mut stream) = TcpStream::connect(addr).await else {
                return None;
            };
            let head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Slow: ";
            let mut buf = [0u8; 512];
            for byte in head.iter().chain(std::iter::repeat(&b'a')) {
                if Instant::now() >= until {
                    return Some(false); // still open at the end
                }
                if stream.write_all(&[*byte]).await.is_err() {
                    return Some(true);
                }
                // Anything the server sends (a 408, or the end) means it gave up on us.
                match tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await {
                    Ok(Ok(_)) | Ok(Err(_)) => return Some(true),
                    Err(_) => {}
                }
            }
            Some(false)
        }));
    }
    for task in tasks {
        match task.await {
            Ok(Some(true)) => stats.closed_by_server += 1,
            Ok(Some(false)) => stats.still_open += 1,
            _ => stats.refused += 1,
        }
    }
}

/// Reads a socket's answers on its own task: acks, errors and the close.
fn answers(
    stream: futures::stream::SplitStream<Socket>,
) -> tokio::task::JoinHandle<(u64, u64, bool)> {
    tokio::spawn(async move {
        let (mut acked, mut refused) = (0, 0);
        let mut stream = stream;
        while let Some(frame) = stream.next().await {
            match frame {
                Ok(Message::Text(text)) => {
                    if text.as_str().starts_with(r#"{"type":"ack""#) {
                        acked += 1;
                    } else if text.as_str().starts_with(r#"{"type":"error""#) {
                        refused += 1;
                    }
                }
                Ok(Message::Close(_)) | Err(_) => return (acked, refused, true),
                Ok(_) => {}
            }
        }
        (acked, refused, true)
    })
}

/// Sends frames made by `frame` on a socket until `until` or `budget` frames (reconnecting
/// when the server closes it), pausing `pause` between frames.
async fn send_until(
    addr: SocketAddr,
    intruder: &Member,
    until: Instant,
    budget: u64,
    pause: Duration,
    stats: &mut AttackStats,
    mut frame: impl FnMut(u64) -> String,
) {
    while Instant::now() < until && stats.attempted < budget {
        let Ok(ws) = open(addr, Some(&intruder.token)).await else {
            stats.refused += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (mut sink, stream) = ws.split();
        let reader = answers(stream);
        let mut open = true;
        while Instant::now() < until && stats.attempted < budget {
            stats.attempted += 1;
            let sent = tokio::time::timeout(
                Duration::from_secs(5),
                sink.send(Message::text(frame(stats.attempted))),
            )
            .await;
            if !matches!(sent, Ok(Ok(()))) || reader.is_finished() {
                open = false;
                break;
            }
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        if open {
            let _ = sink.send(Message::Close(None)).await;
        }
        let closed_early = !open;
        if let Ok(Ok((acked, refused, _))) =
            tokio::time::timeout(Duration::from_secs(10), reader).await
        {
            stats.accepted += acked;
            stats.refused += refused;
        }
        if closed_early {
            stats.closed_by_server += 1;
        } else {
            stats.still_open = 1;
        }
    }
}

fn post(group: GroupId, client_id: String, text: String) -> String {
    serde_json::to_string(&ClientMessage::Post {
        group,
        client_id,
        text,
        file: None,
    })
    .unwrap_or_default()
}

async fn flood(
    addr: SocketAddr,
    intruder: &Member,
    groups: &[GroupId],
    until: Instant,
    stats: &mut AttackStats,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(10);
    send_until(
        addr,
        intruder,
        until,
        MAX_FLOOD_FRAMES,
        Duration::ZERO,
        stats,
        |n| {
            let group = groups[rng.gen_range(0..groups.len())];
            post(group, format!("flood-{n}"), format!("hostile flood {n}"))
        },
    )
    .await;
}

async fn big_frames(addr: SocketAddr, intruder: &Member, until: Instant, stats: &mut AttackStats) {
    let big = "x".repeat(BIG_FRAME);
    send_until(
        addr,
        intruder,
        until,
        MAX_BIG_FRAMES,
        Duration::from_millis(100),
        stats,
        |_| big.clone(),
    )
    .await;
}

async fn replay(
    addr: SocketAddr,
    intruder: &Member,
    groups: &[GroupId],
    until: Instant,
    stats: &mut AttackStats,
) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let budget = (until
        .saturating_duration_since(Instant::now())
        .as_secs_f64()
        * REPLAYS_PER_SECOND)
        .ceil() as u64;
    send_until(
        addr,
        intruder,
        until,
        budget,
        Duration::from_secs_f64(1.0 / REPLAYS_PER_SECOND),
        stats,
        |n| {
            // The members' ids are `p0`, `p1`, …: each is used twice, the second time
            // with other text (the server must keep the first and refuse the second).
            let group = groups[rng.gen_range(0..groups.len())];
            post(group, format!("p{}", n / 2), format!("hostile replay {n}"))
        },
    )
    .await;
}

async fn uploads(
    addr: SocketAddr,
    intruder: &Member,
    groups: &[GroupId],
    until: Instant,
    stats: &mut AttackStats,
) {
    let bomb = renkei_testbed::gif_bomb(6_000, 6_000);
    let client = reqwest::Client::new();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(UPLOAD_CONNECTIONS);
    for n in 0..UPLOAD_CONNECTIONS {
        let (client, bomb, sent) = (client.clone(), bomb.clone(), sent.clone());
        let token = intruder.token.clone();
        let groups = groups.to_vec();
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(12 + n as u64);
            let mut statuses = std::collections::BTreeMap::<u16, u64>::new();
            while Instant::now() < until
                && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < MAX_UPLOADS
            {
                let group = groups[rng.gen_range(0..groups.len())];
                let answer = client
                    .post(format!(
                        "http://{addr}/api/v1/groups/{group}/files?name=bomb.gif"
                    ))
                    .bearer_auth(&token)
                    .body(bomb.clone())
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
                let status = match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        let _ = response.bytes().await;
                        status
                    }
                    Err(_) => 0,
                };
                *statuses.entry(status).or_default() += 1;
                if status == 429 || status == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            statuses
        }));
    }
    for task in tasks {
        if let Ok(statuses) = task.await {
            for (status, count) in statuses {
                stats.attempted += count;
                match status {
                    200..=299 => stats.accepted += count,
                    0 => stats.closed_by_server += count,
                    _ => stats.refused += count,
                }
                *stats.statuses.entry(status).or_default() += count;
            }
        }
    }
}

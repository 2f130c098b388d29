//! One simulated member: one WebSocket that syncs its group, posts when the scheduler says,
//! and records every delivery: latency from the post's *scheduled* send time (so a slow
//! server cannot hide its delay by slowing the sender), and exactly-once per sequence number.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use renkei_protocol::{ClientMessage, Seq, SyncCursor};
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::population::Member;

/// What the scheduler asks a member to do.
pub enum Command {
    /// Post now; `scheduled_us` is when it should have been sent (µs since the run began).
    Post { id: u64, scheduled_us: u64 },
}

/// Counters shared by all members, read while the run drains.
#[derive(Default)]
pub struct Shared {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub refused: AtomicU64,
    pub delivered: AtomicU64,
    /// Posts scheduled in `[window_from, window_to)` µs also count in a second histogram
    /// (the login storm's).
    pub window_from: AtomicU64,
    pub window_to: AtomicU64,
}

/// What one member saw.
pub struct Outcome {
    /// Delivery latency of posts by others, in µs.
    pub latency: Histogram<u64>,
    /// Delivery latency of posts scheduled within the watch window, in µs.
    pub latency_in_window: Histogram<u64>,
    /// `seen[seq]`: this member received that event of its group (from another author).
    pub seen: Vec<bool>,
    /// Sequence numbers of this member's own acknowledged posts.
    pub acked: Vec<Seq>,
    pub duplicates: u64,
    pub errors: u64,
}

/// The subset of a server message the load reads, borrowed where it can be.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    seq: Seq,
    #[serde(default, borrow)]
    data: Option<Data<'a>>,
}

#[derive(Deserialize)]
struct Data<'a> {
    author: Author,
    #[serde(borrow)]
    text: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Author {
    id: i64,
}

/// A latency histogram: 1 µs to 10 minutes at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // Constant, valid bounds (low >= 1, high >= 2 * low, sigfig <= 5): this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Connects, syncs, reports ready, then serves commands until the scheduler hangs up.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    addr: SocketAddr,
    bare: bool,
    member: Member,
    start: Instant,
    padding: Arc<str>,
    shared: Arc<Shared>,
    mut commands: mpsc::Receiver<Command>,
    ready: oneshot::Sender<Result<(), String>>,
) -> Outcome {
    let mut outcome = Outcome {
        latency: histogram(),
        latency_in_window: histogram(),
        seen: Vec::new(),
        acked: Vec::new(),
        duplicates: 0,
        errors: 0,
    };
    let mut ws = match connect(addr, bare, &member).await {
        Ok(ws) => ws,
        Err(err) => {
            let _ = ready.send(Err(err));
            outcome.errors += 1;
            return outcome;
        }
    };
    let sync = ClientMessage::Sync {
        groups: vec![SyncCursor {
            group: member.group,
            after: 0,
        }],
    };
    let synced = async {
        ws.send(Message::text(
            serde_json::to_string(&sync).map_err(|e| e.to_string())?,
        ))
        .await
        .map_err(|e| e.to_string())?;
        while let Some(frame) = ws.next().await {
            if let Message::Text(text) = frame.map_err(|e| e.to_string())? {
                if text.as_str().starts_with(r#"{"type":"synced""#) {
                    return Ok(());
                }
            }
        }
        Err("closed before synced".to_string())
    };
    match tokio::time::timeout(Duration::from_secs(60), synced).await {
        Ok(Ok(())) => {
            let _ = ready.send(Ok(()));
        }
        Ok(Err(err)) => {
            let _ = ready.send(Err(err));
            outcome.errors += 1;
            return outcome;
        }
        Err(_) => {
            let _ = ready.send(Err("sync timed out".into()));
            outcome.errors += 1;
            return outcome;
        }
    }

    let (mut sink, mut stream) = ws.split();
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Post { id, scheduled_us }) => {
                    let post = ClientMessage::Post {
                        group: member.group,
                        client_id: format!("p{id}"),
                        text: format!("{scheduled_us}|{padding}"),
                        file: None,
                    };
                    let text = serde_json::to_string(&post).unwrap_or_default();
                    if sink.send(Message::text(text)).await.is_err() {
                        outcome.errors += 1;
                        break;
                    }
                    shared.sent.fetch_add(1, Ordering::Relaxed);
                }
                None => break,
            },
            frame = stream.next() => match frame {
                Some(Ok(Message::Text(text))) => {
                    record(&text, member.user, start, &shared, &mut outcome);
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

fn record(text: &str, me: i64, start: Instant, shared: &Shared, outcome: &mut Outcome) {
    let Ok(incoming) = serde_json::from_str::<Incoming>(text) else {
        outcome.errors += 1;
        return;
    };
    match incoming.kind.as_ref() {
        "event" => {
            let Some(data) = incoming.data else { return };
            if data.author.id == me {
                return;
            }
            let Ok(seq) = usize::try_from(incoming.seq) else {
                return;
            };
            if outcome.seen.len() <= seq {
                outcome.seen.resize(seq + 1, false);
            }
            if outcome.seen[seq] {
                outcome.duplicates += 1;
                return;
            }
            outcome.seen[seq] = true;
            // Only the load's own posts carry their scheduled time (an intruder's do not,
            // and must not count towards the deliveries the run waits for).
            if let Some(scheduled) = data
                .text
                .split('|')
                .next()
                .and_then(|s| s.parse::<u64>().ok())
            {
                shared.delivered.fetch_add(1, Ordering::Relaxed);
                let now = start.elapsed().as_micros() as u64;
                let latency = now.saturating_sub(scheduled).max(1);
                let _ = outcome.latency.record(latency);
                let window = shared.window_from.load(Ordering::Relaxed)
                    ..shared.window_to.load(Ordering::Relaxed);
                if window.contains(&scheduled) {
                    let _ = outcome.latency_in_window.record(latency);
                }
            }
        }
        "ack" => {
            outcome.acked.push(incoming.seq);
            shared.acked.fetch_add(1, Ordering::Relaxed);
        }
        "error" => {
            outcome.errors += 1;
            shared.refused.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
}

pub(crate) type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `member`'s socket and reads the welcome, trying a refused connection a few times.
pub(crate) async fn connect(
    addr: SocketAddr,
    bare: bool,
    member: &Member,
) -> Result<Socket, String> {
    let url = if bare {
        format!("ws://{addr}/ws?user={}", member.user)
    } else {
        format!("ws://{addr}/ws")
    };
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    if !bare {
        let header = format!("Bearer {}", member.token)
            .parse()
            .map_err(|_| "bad token".to_string())?;
        request.headers_mut().insert("authorization", header);
    }
    let mut last = String::new();
    for attempt in 0..5u64 {
        match tokio_tungstenite::connect_async(request.clone()).await {
            Ok((mut ws, _)) => {
                // The welcome comes first.
                return match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
                    Ok(Some(Ok(Message::Text(_)))) => Ok(ws),
                    _ => Err("no welcome".into()),
                };
            }
            Err(err) => {
                last = err.to_string();
                tokio::time::sleep(Duration::from_millis(100 * (attempt + 1))).await;
            }
        }
    }
    Err(last)
}

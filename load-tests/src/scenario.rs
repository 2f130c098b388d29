//! Runs a scenario against a target: connect every member, drive posts open-loop at the
//! target rate (and logins, for a storm), wait for deliveries to drain, then check that
//! every acknowledged post reached every other member of its group exactly once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::{Rng as _, SeedableRng as _};
use tokio::sync::{mpsc, oneshot};

use crate::hostile::{self, Attack};
use crate::member::{self, Command, Outcome, Shared};
use crate::population::{Population, PASSWORD};
use crate::report::{LoginStats, Report};
use crate::target::{Target, Usage};

/// Members connecting at once.
const CONNECT_WAVE: usize = 250;
/// How long deliveries may take to drain after the last post before the rest count as lost.
const DRAIN: Duration = Duration::from_secs(20);

/// Which scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Connections,
    Fanout,
    LoginStorm,
    /// The fan-out with a hostile client misbehaving for a window.
    Hostile(Attack),
}

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Connections => "connections",
            Scenario::Fanout => "fanout",
            Scenario::LoginStorm => "login-storm",
            Scenario::Hostile(_) => "hostile",
        }
    }
}

/// The parameters of a run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub scenario: Scenario,
    /// Posts per second (fan-out and login storm).
    pub rate: f64,
    /// Seconds of traffic (or of idling, for `connections`).
    pub duration: f64,
    /// Logins per second (login storm).
    pub login_rate: f64,
    /// Seconds of the login storm or the attack, starting a quarter into the run; the
    /// delivery latency of posts scheduled in that window is also reported on its own.
    pub window_seconds: f64,
    /// Bytes of filler in each post's text.
    pub post_bytes: usize,
}

/// Runs `spec` against `targets` (several nodes of one deployment, members spread over
/// them in turn) with `population`.
pub async fn run(targets: &[Target], population: &Population, spec: &Spec) -> Report {
    let before = usage(targets).await;
    let start = Instant::now();
    let shared = Arc::new(Shared::default());
    let padding: Arc<str> = "x".repeat(spec.post_bytes).into();
    let storm_start = spec.duration / 4.0;
    let mut errors = 0;

    // Connect everyone, in waves.
    let mut senders = Vec::with_capacity(population.people.len());
    let mut tasks = Vec::with_capacity(population.people.len());
    for wave in population.people.chunks(CONNECT_WAVE) {
        let mut readies = Vec::with_capacity(wave.len());
        for person in wave {
            let target = &targets[senders.len() % targets.len()];
            let (tx, rx) = mpsc::channel(256);
            let (ready_tx, ready_rx) = oneshot::channel();
            senders.push(tx);
            readies.push(ready_rx);
            tasks.push(tokio::spawn(member::run(
                target.addr,
                target.bare,
                person.clone(),
                start,
                Arc::clone(&padding),
                Arc::clone(&shared),
                rx,
                ready_tx,
            )));
        }
        for ready in readies {
            if !matches!(ready.await, Ok(Ok(()))) {
                errors += 1;
            }
        }
    }
    let connected = population.people.len() as u64;
    let connected_usage = usage(targets).await;

    // Traffic, timed from now.
    let traffic_start_us = start.elapsed().as_micros() as u64;
    if matches!(spec.scenario, Scenario::LoginStorm | Scenario::Hostile(_)) {
        let from = traffic_start_us + (storm_start * 1e6) as u64;
        let to = from + (spec.window_seconds * 1e6) as u64;
        shared.window_from.store(from, Ordering::Relaxed);
        shared.window_to.store(to, Ordering::Relaxed);
    }
    let mut logins = None;
    let mut attack = None;
    let mut duration = spec.duration;
    match spec.scenario {
        Scenario::Connections => {
            tokio::time::sleep(Duration::from_secs_f64(spec.duration)).await;
        }
        Scenario::Fanout | Scenario::LoginStorm | Scenario::Hostile(_) => {
            let storm = (spec.scenario == Scenario::LoginStorm).then(|| {
                tokio::spawn(login_storm(
                    targets.iter().map(|t| t.addr).collect(),
                    population.clone(),
                    Duration::from_secs_f64(storm_start),
                    spec.login_rate,
                    spec.window_seconds,
                ))
            });
            // The bare hub has no limits to test: only renkei meets the intruder.
            let intruder = match (spec.scenario, &population.intruder) {
                (Scenario::Hostile(kind), Some(intruder)) if !targets[0].bare => {
                    Some(tokio::spawn(hostile::run(
                        kind,
                        targets[0].addr,
                        intruder.clone(),
                        population.group_ids(),
                        Duration::from_secs_f64(storm_start),
                        spec.window_seconds,
                    )))
                }
                _ => None,
            };
            let (queued, dropped, sent_for) =
                schedule(&senders, start, traffic_start_us, spec.rate, spec.duration).await;
            errors += dropped;
            duration = sent_for;
            if let Some(storm) = storm {
                logins = storm.await.ok();
            }
            if let Some(intruder) = intruder {
                attack = intruder.await.ok();
            }
            drain(&shared, queued, population.members as u64).await;
        }
    }
    let end = usage(targets).await;
    drop(senders);
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(outcome) => outcomes.push(outcome),
            Err(_) => errors += 1,
        }
    }

    let (mut report, window_p99) = tally(population, &outcomes);
    report.scenario = spec.scenario.name().into();
    report.target = match targets {
        [one] => one.label.clone(),
        [first, ..] => format!("{} ×{} nodes", first.label, targets.len()),
        [] => String::new(),
    };
    report.connections = connected;
    report.groups = population.groups as u64;
    report.members = population.members as u64;
    report.target_rate = if spec.scenario == Scenario::Connections {
        0.0
    } else {
        spec.rate
    };
    report.duration_s = duration;
    report.posts_sent = shared.sent.load(Ordering::Relaxed);
    report.posts_per_sec = report.posts_acked as f64 / duration.max(1e-9);
    report.deliveries_per_sec = report.deliveries as f64 / duration.max(1e-9);
    report.errors += errors;
    report.server_rss_mib = end.rss_kib as f64 / 1024.0;
    let peaks: Vec<u64> = targets.iter().filter_map(Target::peak_rss_kib).collect();
    if !peaks.is_empty() {
        report.server_peak_rss_mib = Some(peaks.iter().sum::<u64>() as f64 / 1024.0);
    }
    report.server_rss_per_conn_kib =
        connected_usage.rss_kib.saturating_sub(before.rss_kib) as f64 / connected.max(1) as f64;
    report.server_cpu_s = end.cpu_seconds - before.cpu_seconds;
    report.logins = logins;
    match spec.scenario {
        Scenario::LoginStorm => report.p99_during_logins_ms = window_p99,
        Scenario::Hostile(_) => report.p99_during_attack_ms = window_p99,
        _ => {}
    }
    report.attack = attack;
    report
}

/// The targets' memory and CPU together.
async fn usage(targets: &[Target]) -> Usage {
    let mut total = Usage::default();
    for target in targets {
        let one = target.usage().await;
        total.rss_kib += one.rss_kib;
        total.cpu_seconds += one.cpu_seconds;
    }
    total
}

/// Sends posts open-loop: post `i` is due at `i / rate` seconds, whatever became of the
/// ones before. Returns the posts queued, those that could not even be queued, and the
/// seconds it ran.
async fn schedule(
    senders: &[mpsc::Sender<Command>],
    start: Instant,
    traffic_start_us: u64,
    rate: f64,
    duration: f64,
) -> (u64, u64, f64) {
    let total = (rate * duration).round() as u64;
    let mut rng = rand::rngs::StdRng::from_entropy();
    let mut dropped = 0;
    for id in 0..total {
        let due_us = traffic_start_us + (id as f64 * 1e6 / rate) as u64;
        tokio::time::sleep_until((start + Duration::from_micros(due_us)).into()).await;
        let member = rng.gen_range(0..senders.len());
        if senders[member]
            .try_send(Command::Post {
                id,
                scheduled_us: due_us,
            })
            .is_err()
        {
            dropped += 1;
        }
    }
    let seconds = (start.elapsed().as_micros() as u64 - traffic_start_us) as f64 / 1e6;
    (total - dropped, dropped, seconds)
}

/// Waits until every queued post is answered and every acknowledged one delivered, or
/// `DRAIN` passes.
async fn drain(shared: &Shared, queued: u64, members: u64) {
    let deadline = Instant::now() + DRAIN;
    while Instant::now() < deadline {
        let sent = queued.max(shared.sent.load(Ordering::Relaxed));
        let answered =
            shared.acked.load(Ordering::Relaxed) + shared.refused.load(Ordering::Relaxed);
        let expected = shared.acked.load(Ordering::Relaxed) * members.saturating_sub(1);
        if answered >= sent && shared.delivered.load(Ordering::Relaxed) >= expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks every acknowledged post against every other member of its group; also returns
/// the delivery p99 of posts scheduled within the window, if any were.
fn tally(population: &Population, outcomes: &[Outcome]) -> (Report, Option<f64>) {
    let mut report = Report::default();
    let mut latency = member::histogram();
    let mut in_window = member::histogram();
    let size = population.members;
    for group in outcomes.chunks(size) {
        for (author, outcome) in group.iter().enumerate() {
            report.posts_acked += outcome.acked.len() as u64;
            for seq in &outcome.acked {
                for (reader, other) in group.iter().enumerate() {
                    if reader == author {
                        continue;
                    }
                    report.deliveries_expected += 1;
                    if usize::try_from(*seq)
                        .ok()
                        .and_then(|s| other.seen.get(s))
                        .copied()
                        .unwrap_or(false)
                    {
                        report.deliveries += 1;
                    } else {
                        report.lost += 1;
                    }
                }
            }
        }
        for outcome in group {
            report.duplicates += outcome.duplicates;
            report.errors += outcome.errors;
            let _ = latency.add(&outcome.latency);
            let _ = in_window.add(&outcome.latency_in_window);
        }
    }
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    report.p50_ms = ms(&latency, 0.5);
    report.p90_ms = ms(&latency, 0.9);
    report.p99_ms = ms(&latency, 0.99);
    report.p999_ms = ms(&latency, 0.999);
    report.max_ms = latency.max() as f64 / 1000.0;
    let window_p99 = (!in_window.is_empty()).then(|| ms(&in_window, 0.99));
    if !in_window.is_empty() {
        let mut outside = latency.clone();
        if outside.subtract(&in_window).is_ok() && !outside.is_empty() {
            report.p99_outside_window_ms = Some(ms(&outside, 0.99));
        }
    }
    (report, window_p99)
}

/// Logs in `rate` times a second for `seconds`, after `delay`, as the population's users,
/// on the nodes in turn.
async fn login_storm(
    nodes: Vec<std::net::SocketAddr>,
    population: Population,
    delay: Duration,
    rate: f64,
    seconds: f64,
) -> LoginStats {
    tokio::time::sleep(delay).await;
    let client = reqwest::Client::new();
    let latencies = Arc::new(Mutex::new(member::histogram()));
    let stats = Arc::new(Mutex::new(LoginStats::default()));
    let start = Instant::now();
    let total = (rate * seconds).round() as usize;
    let mut requests = Vec::with_capacity(total);
    for i in 0..total {
        tokio::time::sleep_until((start + Duration::from_secs_f64(i as f64 / rate)).into()).await;
        let login = population.people[i % population.people.len()].login.clone();
        let addr = nodes[i % nodes.len()];
        let (client, latencies, stats) =
            (client.clone(), Arc::clone(&latencies), Arc::clone(&stats));
        requests.push(tokio::spawn(async move {
            let began = Instant::now();
            let response = client
                .post(format!("http://{addr}/api/v1/session"))
                .json(&serde_json::json!({ "login": login, "password": PASSWORD }))
                .send()
                .await;
            let elapsed = began.elapsed().as_micros() as u64;
            let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner);
            stats.attempted += 1;
            match response.map(|r| r.status().as_u16()) {
                Ok(200) => {
                    stats.ok += 1;
                    let _ = latencies
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .record(elapsed.max(1));
                }
                Ok(429) => stats.shed += 1,
                _ => stats.failed += 1,
            }
        }));
    }
    for request in requests {
        let _ = request.await;
    }
    let latencies = latencies
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let mut stats = stats.lock().unwrap_or_else(PoisonError::into_inner).clone();
    stats.p50_ms = latencies.value_at_quantile(0.5) as f64 / 1000.0;
    stats.p99_ms = latencies.value_at_quantile(0.99) as f64 / 1000.0;
    stats
}

//! Prometheus metrics, served at `/metrics` on their own address (`RENKEI_METRICS_LISTEN`).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Open WebSockets.
    pub connections: Gauge,
    /// Posts committed.
    pub posts: Counter,
    /// Events handed to sockets (one per recipient socket).
    pub deliveries: Counter,
    /// Seconds from commit to the write of the event into a recipient's socket.
    pub delivery_latency: Histogram,
    /// Sockets closed because their outgoing queue overflowed.
    pub slow_consumers: Counter,
    /// HTTP requests shed with 429 (rate limits, uploads beyond their bounds): not on the
    /// audit trail, since nothing of them was done.
    pub requests_shed: Counter,
    /// Commit batches and their sizes.
    pub batch_size: Histogram,
    /// 1 while the Redis subscription is up (several nodes only).
    pub bus_connected: Gauge,
    /// Events of other nodes received through Redis.
    pub bus_received: Counter,
    /// Events read from the store because Redis lost them.
    pub bus_recovered: Counter,
    /// Messages from Redis dropped, by reason (`envelope::Rejected`): fixed labels.
    bus_rejected: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// The process's resident memory and CPU time, read from `/proc` at each scrape, so
    /// that a load run against servers it did not start can still report them.
    resident_memory: Gauge,
    cpu_milliseconds: Counter,
    /// Push deliveries by outcome (sent, retry, gave_up, gone): fixed labels, no ids.
    pushes: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Mails by outcome (sent, retry, refused, gave_up).
    mails: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Runs of the digest job on this node.
    pub digest_runs: Counter,
    /// The audit seals this node made, and the last one's record id, time (Unix seconds)
    /// and head hash's first 48 bits (a gauge holds a number, not a 256-bit hash, and a
    /// label per hash would be a new series per seal): a scrape history then keeps a
    /// truncated copy of each anchor outside the database.
    pub audit_seals: Counter,
    pub audit_seal_record: Gauge,
    pub audit_seal_time: Gauge,
    pub audit_seal_head: Gauge,
}

impl Metrics {
    /// A fresh set of metrics in its own registry.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("renkei");
        let connections = Gauge::default();
        let posts = Counter::default();
        let deliveries = Counter::default();
        let delivery_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let slow_consumers = Counter::default();
        let batch_size = Histogram::new(exponential_buckets(1.0, 2.0, 10));
        registry.register("connections", "Open WebSockets", connections.clone());
        registry.register("posts", "Posts committed", posts.clone());
        registry.register(
            "deliveries",
            "Events written to recipient sockets",
            deliveries.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "Seconds from commit to socket write",
            delivery_latency.clone(),
        );
        registry.register(
            "slow_consumer_disconnects",
            "Sockets closed because they read too slowly",
            slow_consumers.clone(),
        );
        registry.register("commit_batch_size", "Posts per commit", batch_size.clone());
        let requests_shed = Counter::default();
        registry.register(
            "http_requests_shed",
            "HTTP requests shed with 429 before any of their work was done",
            requests_shed.clone(),
        );
        let bus_connected = Gauge::default();
        let bus_received = Counter::default();
        let bus_recovered = Counter::default();
        registry.register(
            "bus_received",
            "Events of other nodes received through Redis",
            bus_received.clone(),
        );
        registry.register(
            "bus_recovered",
            "Events read from the store because Redis lost them",
            bus_recovered.clone(),
        );
        registry.register(
            "bus_connected",
            "1 while the Redis subscription is up",
            bus_connected.clone(),
        );
        let bus_rejected = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        registry.register(
            "bus_rejected",
            "Messages from Redis dropped: unopenable, unknown version, stale, replayed, malformed",
            bus_rejected.clone(),
        );
        for rejected in crate::bus::envelope::Rejected::ALL {
            let _ = bus_rejected.get_or_create(&vec![("reason", rejected.reason())]);
        }
        let resident_memory = Gauge::default();
        let cpu_milliseconds = Counter::default();
        registry.register(
            "process_resident_memory_bytes",
            "Resident memory of this process",
            resident_memory.clone(),
        );
        registry.register(
            "process_cpu_milliseconds",
            "User and system CPU time of this process",
            cpu_milliseconds.clone(),
        );
        let pushes = Family::default();
        let mails = Family::default();
        let digest_runs = Counter::default();
        registry.register("pushes", "Push deliveries by outcome", pushes.clone());
        registry.register("mails", "E-mails by outcome", mails.clone());
        registry.register(
            "digest_runs",
            "Runs of the e-mail digest job",
            digest_runs.clone(),
        );
        let audit_seals = Counter::default();
        let audit_seal_record = Gauge::default();
        let audit_seal_time = Gauge::default();
        let audit_seal_head = Gauge::default();
        registry.register(
            "audit_seals",
            "Audit seals made by this node",
            audit_seals.clone(),
        );
        registry.register(
            "audit_last_seal_record",
            "Audit record id of the last seal this node made",
            audit_seal_record.clone(),
        );
        registry.register(
            "audit_last_seal_timestamp_seconds",
            "Time of the last seal this node made",
            audit_seal_time.clone(),
        );
        registry.register(
            "audit_last_seal_head_prefix",
            "First 48 bits of the chain hash of the last seal this node made",
            audit_seal_head.clone(),
        );
        Metrics {
            audit_seals,
            audit_seal_record,
            audit_seal_time,
            audit_seal_head,
            registry,
            pushes,
            mails,
            digest_runs,
            resident_memory,
            cpu_milliseconds,
            connections,
            posts,
            deliveries,
            delivery_latency,
            slow_consumers,
            requests_shed,
            batch_size,
            bus_connected,
            bus_received,
            bus_recovered,
            bus_rejected,
        }
    }

    pub fn count_bus_rejected(&self, reason: &'static str) {
        self.bus_rejected
            .get_or_create(&vec![("reason", reason)])
            .inc();
    }

    pub fn count_push(&self, outcome: &'static str) {
        self.pushes.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    pub fn count_mail(&self, outcome: &'static str) {
        self.mails.get_or_create(&vec![("outcome", outcome)]).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        if let Some(process) = Process::read() {
            self.resident_memory.set(process.resident_bytes);
            let spent = self.cpu_milliseconds.get();
            self.cpu_milliseconds
                .inc_by(process.cpu_milliseconds.saturating_sub(spent));
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// A process's resident memory and CPU time, from Linux's `/proc` (the load tester reads
/// the servers it starts with it too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub resident_bytes: i64,
    pub cpu_milliseconds: u64,
}

impl Process {
    /// This process.
    pub fn read() -> Option<Process> {
        Process::read_from("/proc/self")
    }

    /// The process `pid`.
    pub fn of(pid: u32) -> Option<Process> {
        Process::read_from(&format!("/proc/{pid}"))
    }

    fn read_from(dir: &str) -> Option<Process> {
        let status = std::fs::read_to_string(format!("{dir}/status")).ok()?;
        let stat = std::fs::read_to_string(format!("{dir}/stat")).ok()?;
        Process::parse(&status, &stat)
    }

    fn parse(status: &str, stat: &str) -> Option<Process> {
        let resident_kib: i64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()?;
        // The command name may hold spaces; fields count from after its parenthesis:
        // utime and stime are the 12th and 13th, in USER_HZ (100 on every Linux).
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 =
            fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Process {
            resident_bytes: resident_kib * 1024,
            cpu_milliseconds: ticks * 10,
        })
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memory_and_cpu_from_proc() {
        let status = "Name:\tren kei\nVmPeak:\t 9000 kB\nVmRSS:\t  2048 kB\n";
        let stat = "42 (ren kei) S 1 42 42 0 -1 4194560 1 0 0 0 150 25 0 0 20 0 9 0 1 2 3";
        assert_eq!(
            Process::parse(status, stat),
            Some(Process {
                resident_bytes: 2048 * 1024,
                cpu_milliseconds: 1750,
            })
        );
        assert_eq!(Process::parse("VmPeak: 1 kB\n", stat), None);
    }

    #[test]
    fn the_exposition_holds_this_process() {
        let text = Metrics::new().render();
        let rss = text
            .lines()
            .find_map(|line| line.strip_prefix("renkei_process_resident_memory_bytes "))
            .and_then(|value| value.parse::<f64>().ok());
        assert!(rss.is_some_and(|bytes| bytes > 0.0), "{text}");
        assert!(
            text.contains("renkei_process_cpu_milliseconds_total "),
            "{text}"
        );
    }
}

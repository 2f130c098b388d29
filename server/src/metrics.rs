//! Prometheus metrics, served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
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
    /// Commit batches and their sizes.
    pub batch_size: Histogram,
    /// 1 while the Redis subscription is up (several nodes only).
    pub bus_connected: Gauge,
    /// Events of other nodes received through Redis.
    pub bus_received: Counter,
    /// Events read from the store because Redis lost them.
    pub bus_recovered: Counter,
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
        Metrics {
            registry,
            connections,
            posts,
            deliveries,
            delivery_latency,
            slow_consumers,
            batch_size,
            bus_connected,
            bus_received,
            bus_recovered,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

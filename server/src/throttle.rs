//! Token buckets: a sustained rate with a burst allowance; per socket, per user and per
//! source address.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use renkei_protocol::UserId;

use crate::config::LimitsConfig;

/// A token bucket refilled continuously at `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        Self::with_rate(f64::from(rate), burst)
    }

    /// A full bucket refilled at `rate` tokens per second, which may be below one.
    fn with_rate(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            rate,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self) -> bool {
        self.try_take_at(Instant::now())
    }

    /// True when the bucket would be full at `now`: forgetting it changes nothing.
    fn is_full_at(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    fn try_take_at(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Keys remembered at most by a [`Limiter`] before full buckets are forgotten.
const MAX_KEYS: usize = 100_000;

/// One token bucket per key (a user, an address), created full on first use.
pub struct Limiter<K> {
    /// Tokens per second.
    rate: f64,
    burst: u32,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Hash + Eq> Limiter<K> {
    pub fn new(rate: u32, burst: u32) -> Self {
        Limiter {
            rate: f64::from(rate),
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `count` at once, and `count` again per `period` (for rare acts: per hour).
    pub fn per(count: u32, period: Duration) -> Self {
        Limiter {
            rate: f64::from(count) / period.as_secs_f64().max(1.0),
            burst: count,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `key`'s bucket if there is one.
    pub fn try_take(&self, key: K) -> bool {
        self.try_take_at(key, Instant::now())
    }

    fn try_take_at(&self, key: K, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_KEYS && !buckets.contains_key(&key) {
            buckets.retain(|_, bucket| !bucket.is_full_at(now));
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = buckets.entry(key).or_insert_with(|| {
            let mut bucket = TokenBucket::with_rate(rate, burst);
            bucket.updated = now;
            bucket
        });
        bucket.try_take_at(now)
    }
}

/// Readiness probes (`/readyz`, which asks the database) per second per address, and at
/// once: a load balancer checks every few seconds.
const PROBES_PER_SECOND: u32 = 10;
const PROBE_BURST: u32 = 50;

/// The REST API's limits: per user, and per source address (which many users of one
/// facility may share).
pub struct RequestLimits {
    pub users: Limiter<UserId>,
    pub addresses: Limiter<IpAddr>,
    /// `/readyz` per address.
    pub probes: Limiter<IpAddr>,
    /// Facility applications (様式1, public) per address.
    pub applications: Limiter<IpAddr>,
}

impl RequestLimits {
    pub fn new(limits: &LimitsConfig) -> Self {
        RequestLimits {
            users: Limiter::new(limits.requests_per_second, limits.request_burst),
            addresses: Limiter::new(
                limits.address_requests_per_second,
                limits.address_request_burst,
            ),
            probes: Limiter::new(PROBES_PER_SECOND, PROBE_BURST),
            applications: Limiter::per(limits.applications_per_hour, Duration::from_secs(3600)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(2, 3);
        bucket.updated = start;
        assert!((0..3).all(|_| bucket.try_take_at(start)));
        assert!(!bucket.try_take_at(start));
        assert!(bucket.try_take_at(start + Duration::from_millis(500)));
        assert!(!bucket.try_take_at(start + Duration::from_millis(500)));
        assert!(bucket.try_take_at(start + Duration::from_secs(10)));
        let after = start + Duration::from_secs(10);
        assert_eq!(
            (0..10).filter(|_| bucket.try_take_at(after)).count(),
            2,
            "refill caps at burst"
        );
    }

    #[test]
    fn rare_acts_refill_over_their_period() {
        let limiter = Limiter::per(2, Duration::from_secs(3600));
        let now = Instant::now();
        assert!(limiter.try_take_at("a", now));
        assert!(limiter.try_take_at("a", now));
        assert!(!limiter.try_take_at("a", now + Duration::from_secs(60)));
        assert!(limiter.try_take_at("a", now + Duration::from_secs(1900)));
        assert!(!limiter.try_take_at("a", now + Duration::from_secs(1901)));
    }

    #[test]
    fn each_key_has_its_own_bucket() {
        let limiter = Limiter::new(1, 2);
        let now = Instant::now();
        assert!(limiter.try_take_at("a", now));
        assert!(limiter.try_take_at("a", now));
        assert!(!limiter.try_take_at("a", now));
        assert!(limiter.try_take_at("b", now));
        assert!(limiter.try_take_at("a", now + Duration::from_secs(1)));
    }
}

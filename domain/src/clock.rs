//! Wall-clock time as the protocol carries it: milliseconds since the Unix epoch, and the
//! clock that time-driven work (notifications, digests) reads, which tests can hold and
//! move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use renkei_protocol::Millis;

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Japan has one time zone and no daylight saving: JST is UTC+9 all year.
const JST_OFFSET_MINUTES: i64 = 9 * 60;

/// Minutes after midnight in Japan at `at` (quiet hours are set in it).
pub fn japan_minute_of_day(at: Millis) -> i32 {
    let minutes = at.div_euclid(60_000) + JST_OFFSET_MINUTES;
    i32::try_from(minutes.rem_euclid(24 * 60)).unwrap_or(0)
}

/// How long to wait after the `attempts`-th failed try of something: `first`, doubling
/// each time, at most `most`.
pub fn backoff(attempts: i32, first: Duration, most: Duration) -> Duration {
    let doublings = u32::try_from(attempts.clamp(1, 16) - 1).unwrap_or(0);
    first
        .saturating_mul(2u32.saturating_pow(doublings))
        .min(most)
}

/// The system clock, or one a test sets and moves (`Clock::manual`).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// `None`: the system clock. A shared cell, so the test's handle moves the server's.
    manual: Option<Arc<AtomicI64>>,
}

impl Clock {
    /// A clock that stands at `at` until moved.
    pub fn manual(at: Millis) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicI64::new(at))),
        }
    }

    pub fn now(&self) -> Millis {
        match &self.manual {
            Some(at) => at.load(Ordering::SeqCst),
            None => now_ms(),
        }
    }

    /// Moves a manual clock forward; the system clock ignores it.
    pub fn advance(&self, by: Millis) {
        if let Some(at) = &self.manual {
            at.fetch_add(by, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told_and_everywhere_at_once() {
        let clock = Clock::manual(1_000);
        let copy = clock.clone();
        assert_eq!(copy.now(), 1_000);
        clock.advance(500);
        assert_eq!(copy.now(), 1_500);
        assert!(Clock::default().now() > 1_700_000_000_000);
    }

    #[test]
    fn japan_time_of_day() {
        // 2026-12-02 03:00 UTC is noon in Japan.
        assert_eq!(japan_minute_of_day(1_796_180_400_000), 12 * 60);
        assert_eq!(japan_minute_of_day(0), 9 * 60);
    }

    #[test]
    fn backoff_doubles_up_to_its_most() {
        let (first, most) = (Duration::from_secs(5), Duration::from_secs(600));
        assert_eq!(backoff(1, first, most), first);
        assert_eq!(backoff(3, first, most), Duration::from_secs(20));
        assert_eq!(backoff(40, first, most), most);
    }
}

//! Wall-clock time as the protocol carries it: milliseconds since the Unix epoch, and the
//! clock that time-driven work (notifications, digests) reads, which tests can hold and
//! move.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use renkei_protocol::Millis;

/// Now, in milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
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
}

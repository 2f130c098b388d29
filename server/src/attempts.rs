//! Failed logins this node remembers (art. 13(2)(6)): growing delays per login and per
//! source address, 1 s, 2 s, 4 s, … up to a minute, after a few free failures; memory
//! bounded under a spray. The account's lock is in the database (`login`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one login, or from one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Login(String),
    Address(IpAddr),
}

/// Failures free of delay: a login's owner mistypes a few times; many people may log in
/// from one facility's address.
const FREE_PER_LOGIN: u32 = 3;
const FREE_PER_ADDRESS: u32 = 20;
/// The longest delay, and how long failures are remembered.
const MAX_DELAY: Duration = Duration::from_secs(60);
const FORGET: Duration = Duration::from_secs(15 * 60);
/// Logins and addresses remembered at most (memory stays bounded under a spray).
const MAX_REMEMBERED: usize = 100_000;

/// The delay after `count` failures when the first `free` cost nothing: 1 s, 2 s, 4 s, …
/// up to a minute.
fn delay(count: u32, free: u32) -> Duration {
    if count < free {
        return Duration::ZERO;
    }
    let doublings = (count - free).min(6);
    Duration::from_secs(1 << doublings).min(MAX_DELAY)
}

/// Recent failed logins of this node, per login and per source address.
#[derive(Default)]
pub struct Attempts {
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Attempts {
    fn keys(login: &str, address: IpAddr) -> [(Key, u32); 2] {
        [
            (Key::Login(login.to_string()), FREE_PER_LOGIN),
            (Key::Address(address), FREE_PER_ADDRESS),
        ]
    }

    /// How long a login attempt (or another check of the password) must still wait.
    pub fn wait(&self, login: &str, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::keys(login, address)
            .iter()
            .filter_map(|(key, free)| {
                let f = failures.get(key)?;
                (f.last + delay(f.count, *free)).checked_duration_since(now)
            })
            .filter(|wait| !wait.is_zero())
            .max()
    }

    pub fn failed(&self, login: &str, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, _) in Self::keys(login, address) {
            Self::count(&mut failures, key, now);
        }
    }

    /// Counts one failure of `key`, forgetting old ones first when memory is full; a key
    /// not yet known is dropped while it stays full.
    fn count(failures: &mut HashMap<Key, Failures>, key: Key, now: Instant) {
        if failures.len() >= MAX_REMEMBERED && !failures.contains_key(&key) {
            failures.retain(|_, f| now.saturating_duration_since(f.last) < FORGET);
            if failures.len() >= MAX_REMEMBERED {
                return;
            }
        }
        let entry = failures.entry(key).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(entry.last) >= FORGET {
            entry.count = 0;
        }
        entry.count += 1;
        entry.last = now;
    }

    /// How long a guess from `address` of something that names no login (a setup code)
    /// must still wait: only the address's failures count.
    pub fn wait_address(&self, address: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let f = failures.get(&Key::Address(address))?;
        (f.last + delay(f.count, FREE_PER_ADDRESS))
            .checked_duration_since(now)
            .filter(|wait| !wait.is_zero())
    }

    /// A wrong guess from `address` that names no login: counted with its failed logins.
    pub fn failed_address(&self, address: IpAddr, now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        Self::count(&mut failures, Key::Address(address), now);
    }

    pub fn succeeded(&self, login: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.remove(&Key::Login(login.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        assert_eq!(delay(0, 3), Duration::ZERO);
        assert_eq!(delay(2, 3), Duration::ZERO);
        assert_eq!(delay(3, 3), Duration::from_secs(1));
        assert_eq!(delay(4, 3), Duration::from_secs(2));
        assert_eq!(delay(8, 3), Duration::from_secs(32));
        assert_eq!(delay(9, 3), MAX_DELAY);
        assert_eq!(delay(1000, 3), MAX_DELAY);
    }

    #[test]
    fn a_login_waits_after_failures_and_is_forgotten_after_success() {
        let attempts = Attempts::default();
        let address: IpAddr = [127, 0, 0, 1].into();
        let start = Instant::now();
        for _ in 0..FREE_PER_LOGIN {
            assert_eq!(attempts.wait("a@x.jp", address, start), None);
            attempts.failed("a@x.jp", address, start);
        }
        assert_eq!(
            attempts.wait("a@x.jp", address, start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            attempts.wait("a@x.jp", address, start + Duration::from_secs(1)),
            None
        );
        // Another login from the same address is not held up by these failures…
        assert_eq!(attempts.wait("b@x.jp", address, start), None);
        // …and the owner's success clears the login's failures.
        attempts.succeeded("a@x.jp");
        assert_eq!(attempts.wait("a@x.jp", address, start), None);
    }

    #[test]
    fn an_address_guessing_setup_codes_waits_with_its_failed_logins() {
        let attempts = Attempts::default();
        let address: IpAddr = [127, 0, 0, 1].into();
        let other: IpAddr = [127, 0, 0, 2].into();
        let start = Instant::now();
        for _ in 0..FREE_PER_ADDRESS - 1 {
            assert_eq!(attempts.wait_address(address, start), None);
            attempts.failed_address(address, start);
        }
        attempts.failed("a@x.jp", address, start);
        assert_eq!(
            attempts.wait_address(address, start),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            attempts.wait("b@x.jp", address, start),
            Some(Duration::from_secs(1)),
            "a login from the guessing address waits too"
        );
        assert_eq!(attempts.wait_address(other, start), None);
    }

    #[test]
    fn an_address_spraying_many_logins_waits() {
        let attempts = Attempts::default();
        let address: IpAddr = [10, 0, 0, 9].into();
        let now = Instant::now();
        for i in 0..FREE_PER_ADDRESS {
            attempts.failed(&format!("user{i}@x.jp"), address, now);
        }
        assert!(attempts.wait("new@x.jp", address, now).is_some());
        let elsewhere: IpAddr = [10, 0, 0, 10].into();
        assert_eq!(attempts.wait("new@x.jp", elsewhere, now), None);
        // The wait ends; failures long past start the count again.
        assert_eq!(attempts.wait("new@x.jp", address, now + MAX_DELAY), None);
        attempts.failed("new@x.jp", address, now + FORGET);
        assert_eq!(attempts.wait("new@x.jp", address, now + FORGET), None);
    }
}

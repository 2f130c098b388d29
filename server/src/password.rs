//! Passwords: hashing with argon2id, by default at OWASP's parameters (m = 19 MiB, t = 2,
//! p = 1), run off the async runtime on blocking threads, at most `workers` at once, with
//! at most `queue` waiting. Beyond that a login is shed with
//! [`PasswordError::Overloaded`] (HTTP 429) rather than queued without bound. A hash made
//! with other parameters than the configured ones is replaced at the next successful
//! login. The rules a new password must meet (art. 13(2), 13(6)) are
//! [`renkei_domain::password`].

use std::sync::Arc;

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use tokio::sync::Semaphore;

/// What can go wrong checking or hashing a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("too many password checks in progress")]
    Overloaded,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

/// argon2id's cost: memory in KiB and passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for Cost {
    /// OWASP's recommendation.
    fn default() -> Self {
        Cost {
            memory_kib: 19 * 1024,
            iterations: 2,
        }
    }
}

impl Cost {
    /// The cost of new hashes that the settings give.
    pub fn of(config: &crate::config::Config) -> Cost {
        Cost {
            memory_kib: config.password_memory_kib,
            iterations: config.password_iterations,
        }
    }

    fn argon2(self) -> Result<Argon2<'static>, PasswordError> {
        let params = Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| PasswordError::Hash(e.to_string()))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// True when `hash` was made by argon2id with exactly this cost.
    fn made(self, hash: &PasswordHash<'_>) -> bool {
        let param = |name: &str| hash.params.get_decimal(name);
        hash.algorithm.as_str() == "argon2id"
            && param("m") == Some(self.memory_kib)
            && param("t") == Some(self.iterations)
            && param("p") == Some(1)
    }
}

/// What checking a password found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    pub matched: bool,
    /// The hash was made with other parameters than the configured ones: store a new one.
    pub outdated: bool,
}

/// Hashes and verifies passwords under a concurrency cap.
#[derive(Clone)]
pub struct Passwords {
    cost: Cost,
    /// Permits to run a hash now (one per worker).
    workers: Arc<Semaphore>,
    /// Permits to be in the system at all (running or waiting).
    admitted: Arc<Semaphore>,
    /// A real hash of a random password, verified for unknown logins so that they take
    /// as long as wrong passwords.
    decoy: Arc<str>,
}

/// Hashes a password on the calling thread at the default cost (for the demo and tests;
/// the server uses [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    hash_with(Cost::default(), password)
}

fn hash_with(cost: Cost, password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    cost.argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(cost: Cost, hash: &str, password: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return Verified {
            matched: false,
            outdated: false,
        };
    };
    // Verification uses the parameters stored in the hash, whatever the configuration.
    let matched = Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok();
    Verified {
        matched,
        outdated: !cost.made(&parsed),
    }
}

impl Passwords {
    /// A hasher at `cost` running at most `workers` hashes with at most `queue` more
    /// waiting.
    pub fn new(cost: Cost, workers: u32, queue: u32) -> Result<Self, PasswordError> {
        let workers = workers.max(1) as usize;
        // The decoy that unknown logins are checked against: any secret nobody knows.
        let unknowable = rand::distributions::DistString::sample_string(
            &rand::distributions::Alphanumeric,
            &mut rand::rngs::OsRng,
            43,
        );
        let decoy = hash_with(cost, &unknowable)?;
        Ok(Passwords {
            cost,
            workers: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue as usize)),
            decoy: decoy.into(),
        })
    }

    /// Whether `password` matches `hash`. With no hash (unknown login) a decoy is checked,
    /// so the answer takes the same time and does not match.
    pub async fn verify(
        &self,
        hash: Option<&str>,
        password: &str,
    ) -> Result<Verified, PasswordError> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.decoy.to_string(), str::to_string);
        let password = password.to_string();
        let cost = self.cost;
        let verified = self
            .run(move || verify_blocking(cost, &hash, &password))
            .await?;
        Ok(Verified {
            matched: known && verified.matched,
            ..verified
        })
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_string();
        let cost = self.cost;
        self.run(move || hash_with(cost, &password)).await?
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _admitted = self
            .admitted
            .clone()
            .try_acquire_owned()
            .map_err(|_| PasswordError::Overloaded)?;
        let _worker = self
            .workers
            .acquire()
            .await
            .map_err(|_| PasswordError::Overloaded)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| PasswordError::Hash(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let passwords = Passwords::new(Cost::default(), 1, 4).expect("hasher");
        let hash = passwords.hash("correct horse 7!").await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        let right = passwords
            .verify(Some(&hash), "correct horse 7!")
            .await
            .expect("verify");
        assert_eq!(
            right,
            Verified {
                matched: true,
                outdated: false
            }
        );
        let wrong = passwords.verify(Some(&hash), "wrong horse 7!");
        assert!(!wrong.await.expect("verify").matched);
        let unknown = passwords.verify(None, "correct horse 7!");
        assert!(!unknown.await.expect("verify").matched);
    }

    #[tokio::test]
    async fn hashes_of_another_cost_verify_and_are_outdated() {
        let cheap = Cost {
            memory_kib: 8 * 1024,
            iterations: 1,
        };
        let old = hash_with(cheap, "correct horse 7!").expect("hash");
        let passwords = Passwords::new(Cost::default(), 1, 4).expect("hasher");
        let verified = passwords.verify(Some(&old), "correct horse 7!");
        assert_eq!(
            verified.await.expect("verify"),
            Verified {
                matched: true,
                outdated: true
            }
        );
        let raised = Passwords::new(cheap, 1, 4).expect("hasher");
        let current = raised.verify(Some(&old), "correct horse 7!");
        assert!(!current.await.expect("verify").outdated);
    }

    #[tokio::test]
    async fn sheds_load_beyond_the_queue() {
        let passwords = Passwords::new(Cost::default(), 1, 0).expect("hasher");
        let hash = hash_blocking("x").expect("hash");
        let (a, b) = tokio::join!(
            passwords.verify(Some(&hash), "x"),
            passwords.verify(Some(&hash), "x")
        );
        let overloaded = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(PasswordError::Overloaded)))
            .count();
        assert_eq!(overloaded, 1, "one of two concurrent checks must be shed");
    }
}

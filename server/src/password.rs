//! Password hashing: argon2id with OWASP's parameters (m = 19 MiB, t = 2, p = 1), run off
//! the async runtime on blocking threads, at most `workers` at once, with at most `queue`
//! waiting. Beyond that a login is shed with [`PasswordError::Overloaded`] (HTTP 429)
//! rather than queued without bound.

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

/// Hashes and verifies passwords under a concurrency cap.
#[derive(Clone)]
pub struct Passwords {
    /// Permits to run a hash now (one per worker).
    workers: Arc<Semaphore>,
    /// Permits to be in the system at all (running or waiting).
    admitted: Arc<Semaphore>,
    /// A real hash of a random password, verified for unknown logins so that they take
    /// as long as wrong passwords.
    decoy: Arc<str>,
}

fn argon2() -> Argon2<'static> {
    // OWASP: m = 19 MiB, t = 2, p = 1. The values are valid constants, so `new` cannot fail.
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password on the calling thread (for the demo and tests; the server uses
/// [`Passwords::hash`]).
pub fn hash_blocking(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

fn verify_blocking(hash: &str, password: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

impl Passwords {
    /// A hasher running at most `workers` hashes with at most `queue` more waiting.
    pub fn new(workers: u32, queue: u32) -> Result<Self, PasswordError> {
        let workers = workers.max(1) as usize;
        let decoy = hash_blocking(&crate::session::random_token())?;
        Ok(Passwords {
            workers: Arc::new(Semaphore::new(workers)),
            admitted: Arc::new(Semaphore::new(workers + queue as usize)),
            decoy: decoy.into(),
        })
    }

    /// True when `password` matches `hash`. With no hash (unknown login) a decoy is
    /// checked, so the answer takes the same time and is `false`.
    pub async fn verify(&self, hash: Option<&str>, password: &str) -> Result<bool, PasswordError> {
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.decoy.to_string(), str::to_string);
        let password = password.to_string();
        let matched = self.run(move || verify_blocking(&hash, &password)).await?;
        Ok(known && matched)
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_string();
        self.run(move || hash_blocking(&password)).await?
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

/// Why a new password is refused (art. 13(2), 13(6)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("a password has at least 13 characters")]
    TooShort,
    #[error("a password mixes letters, digits and symbols")]
    TooSimple,
    #[error("a password does not repeat one character four times in a row")]
    Repetitive,
    #[error("a password has at most 1024 bytes")]
    TooLong,
}

/// Checks a new password against the city's rules: 13 or more characters mixing letters,
/// digits and symbols (art. 13(2)), and nothing as guessable as a long run of one
/// character (13(6)). The shorter option of 13(2), 8 characters changed every two months,
/// needs password ageing, which is not offered.
pub fn check_rules(password: &str) -> Result<(), WeakPassword> {
    if password.len() > 1024 {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < 13 {
        return Err(WeakPassword::TooShort);
    }
    let letters = password.chars().any(char::is_alphabetic);
    let digits = password.chars().any(|c| c.is_ascii_digit());
    let symbols = password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace());
    if !(letters && digits && symbols) {
        return Err(WeakPassword::TooSimple);
    }
    let chars: Vec<char> = password.chars().collect();
    if chars.windows(4).any(|w| w.iter().all(|c| *c == w[0])) {
        return Err(WeakPassword::Repetitive);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_of_article_13() {
        assert_eq!(check_rules("correct horse battery 7!"), Ok(()));
        assert_eq!(check_rules("看護記録は大切です2026!"), Ok(()));
        assert_eq!(check_rules("short 7!"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_rules("onlylettersandmore"),
            Err(WeakPassword::TooSimple)
        );
        assert_eq!(
            check_rules("lettersand1234567"),
            Err(WeakPassword::TooSimple)
        );
        assert_eq!(
            check_rules("aaaa-bbbb-1234x"),
            Err(WeakPassword::Repetitive)
        );
    }

    #[tokio::test]
    async fn verifies_the_right_password_only() {
        let passwords = Passwords::new(1, 4).expect("hasher");
        let hash = passwords.hash("correct horse 7!").await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(passwords
            .verify(Some(&hash), "correct horse 7!")
            .await
            .expect("verify"));
        assert!(!passwords
            .verify(Some(&hash), "wrong horse 7!")
            .await
            .expect("verify"));
        assert!(!passwords
            .verify(None, "correct horse 7!")
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn sheds_load_beyond_the_queue() {
        let passwords = Passwords::new(1, 0).expect("hasher");
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

//! Passwords: the rules a new one must meet (art. 13(2), 13(6)), and hashing with
//! argon2id, by default at OWASP's parameters (m = 19 MiB, t = 2, p = 1), run off the
//! async runtime on blocking threads, at most `workers` at once, with at most `queue`
//! waiting. Beyond that a login is shed with [`PasswordError::Overloaded`] (HTTP 429)
//! rather than queued without bound. A hash made with other parameters than the
//! configured ones is replaced at the next successful login.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use argon2::password_hash::{rand_core::OsRng, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, PasswordVerifier as _, Version};
use renkei_protocol::api::PasswordRule;
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
        let decoy = hash_with(cost, &crate::session::random_token())?;
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

/// The password policy of the deployment (art. 13(2)): `long` = 13 or more characters;
/// `rotated` = 8 or more, changed at least every 60 days (login then forces a change);
/// `mfa` = 8 or more for accounts with a second factor, 13 for the others. All mix
/// letters, digits and symbols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    #[default]
    Long,
    Rotated,
    Mfa,
}

impl Policy {
    /// The fewest characters of a password, for an account with or without a second
    /// factor.
    pub fn min_length(self, second_factor: bool) -> usize {
        match (self, second_factor) {
            (Policy::Long, _) | (Policy::Mfa, false) => 13,
            (Policy::Rotated, _) | (Policy::Mfa, true) => 8,
        }
    }

    /// Days after which a password must be changed, if it ever must.
    pub fn max_age_days(self) -> Option<u32> {
        match self {
            Policy::Rotated => Some(60),
            Policy::Long | Policy::Mfa => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Policy::Long => "long",
            Policy::Rotated => "rotated",
            Policy::Mfa => "mfa",
        }
    }

    /// True when a password set at `changed_at` must be changed at `now`.
    pub fn expired(self, changed_at: Option<i64>, now: i64) -> bool {
        match (self.max_age_days(), changed_at) {
            (Some(days), Some(at)) => now - at >= i64::from(days) * 86_400_000,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }
}

/// How many of an account's last passwords (the current one included) a new one may not
/// equal.
pub const HISTORY: usize = 5;

/// The longest password accepted, in bytes (well beyond the 128 characters the rules ask
/// to allow, even in four-byte characters).
pub const MAX_BYTES: usize = 1024;

/// Who the password is for: it may not contain their login (e-mail address) or name.
#[derive(Debug, Clone, Copy)]
pub struct Personal<'a> {
    pub login: &'a str,
    pub name: &'a str,
}

/// The 10,000 most common passwords (`server/data/README.md`), lower case.
fn common() -> &'static HashSet<&'static str> {
    static COMMON: OnceLock<HashSet<&'static str>> = OnceLock::new();
    COMMON.get_or_init(|| {
        include_str!("../data/common-passwords.txt")
            .lines()
            .filter(|line| !line.is_empty())
            .collect()
    })
}

/// The password with common letter substitutions undone (`p@ssw0rd` → `password`).
fn unleet(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '0' => 'o',
            '1' | '!' => 'i',
            '3' => 'e',
            '$' | '5' => 's',
            '7' => 't',
            c => c,
        })
        .collect()
}

/// True when the password is one of the common ones, or one of them with digits and
/// symbols around it and letters swapped for look-alikes (`Sunshine2026!`, `P@ssw0rd1`).
fn is_common(password: &str) -> bool {
    let lower = password.to_lowercase();
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    let unleeted = unleet(lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!'));
    let unleeted_core = unleet(&lower);
    let unleeted_core = unleeted_core.trim_matches(|c: char| !c.is_alphabetic());
    [lower.as_str(), core, unleeted.as_str(), unleeted_core]
        .iter()
        .any(|candidate| candidate.chars().count() >= 4 && common().contains(candidate))
}

/// True when the password contains the login, the e-mail address's local part or a part
/// of the name (compared without case and spaces).
fn is_personal(password: &str, personal: Personal<'_>) -> bool {
    let squeeze = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect()
    };
    let password = squeeze(password);
    let login = personal.login.trim().to_lowercase();
    let local = login.split('@').next().unwrap_or_default().to_string();
    let name_parts = personal
        .name
        .split(|c: char| c.is_whitespace() || c == '・')
        .map(squeeze)
        .chain([squeeze(personal.name)]);
    // Three letters of a Latin name say little; two kanji of a Japanese name are a word.
    let long_enough = |part: &String| {
        let chars = part.chars().count();
        chars >= 4 || (chars >= 2 && !part.is_ascii())
    };
    [login, local]
        .into_iter()
        .chain(name_parts)
        .filter(long_enough)
        .any(|part| password.contains(&part))
}

/// Every rule the new password does not meet (at least `min_length` characters, from the
/// policy), none when it is acceptable. (Reuse and resemblance need the account's history:
/// [`similar`] and the caller.)
pub fn check(password: &str, min_length: usize, personal: Personal<'_>) -> Vec<PasswordRule> {
    let mut broken = Vec::new();
    if password.len() > MAX_BYTES {
        broken.push(PasswordRule::TooLong);
        return broken;
    }
    if password.chars().count() < min_length {
        broken.push(PasswordRule::TooShort);
    }
    let letters = password.chars().any(char::is_alphabetic);
    let digits = password.chars().any(|c| c.is_ascii_digit());
    let symbols = password
        .chars()
        .any(|c| !c.is_alphanumeric() && !c.is_whitespace());
    if !(letters && digits && symbols) {
        broken.push(PasswordRule::NeedsLettersDigitsSymbols);
    }
    let chars: Vec<char> = password.chars().collect();
    if chars.windows(4).any(|w| w.iter().all(|c| *c == w[0])) {
        broken.push(PasswordRule::Repetitive);
    }
    if is_common(password) {
        broken.push(PasswordRule::Common);
    }
    if is_personal(password, personal) {
        broken.push(PasswordRule::Personal);
    }
    broken
}

/// The letters of a password in lower case: what is left when digits, symbols and case,
/// the parts people change from one password to the next, are taken away.
fn skeleton(password: &str) -> String {
    password
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect()
}

/// True when `new` closely resembles `old`: the same letters apart from digits, symbols
/// and case (`Haruyasumi2025!` → `haruyasumi2026?`), or at most three characters
/// inserted, removed or replaced.
pub fn similar(new: &str, old: &str) -> bool {
    let (a, b) = (skeleton(new), skeleton(old));
    (!a.is_empty() && a == b) || edit_distance(new, old) <= 3
}

/// Levenshtein distance in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// What a list of broken rules says, in English (the client translates the rule codes).
pub fn describe(rules: &[PasswordRule], min_length: usize) -> String {
    let said: Vec<String> = rules
        .iter()
        .map(|rule| match rule {
            PasswordRule::TooShort => {
                format!("has at least {min_length} characters")
            }
            PasswordRule::TooLong => format!("has at most {MAX_BYTES} bytes"),
            PasswordRule::NeedsLettersDigitsSymbols => "mixes letters, digits and symbols".into(),
            PasswordRule::Repetitive => "does not repeat a character four times in a row".into(),
            PasswordRule::Common => "is not one of the most common passwords".into(),
            PasswordRule::Personal => "does not contain the login or the name".into(),
            PasswordRule::Reused => {
                format!("differs from the last {HISTORY} passwords")
            }
            PasswordRule::Similar => "does not closely resemble the current password".into(),
        })
        .collect();
    format!("a password {}", said.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOBODY: Personal<'static> = Personal {
        login: "hanako.sato@example.jp",
        name: "佐藤 花子",
    };

    fn rules(password: &str, policy: Policy) -> Vec<PasswordRule> {
        check(password, policy.min_length(false), NOBODY)
    }

    #[test]
    fn rules_of_article_13() {
        use PasswordRule::*;
        assert_eq!(rules("correct horse battery 7!", Policy::Long), vec![]);
        assert_eq!(rules("看護記録は大切です2026!", Policy::Long), vec![]);
        assert_eq!(rules("short 7!", Policy::Long), vec![TooShort]);
        assert_eq!(rules("short 7!", Policy::Rotated), vec![]);
        assert_eq!(
            rules("onlylettersandmore", Policy::Long),
            vec![NeedsLettersDigitsSymbols]
        );
        assert_eq!(rules("aaaa-bbbb-1234x", Policy::Long), vec![Repetitive]);
        // Every broken rule is listed, not only the first.
        assert_eq!(
            rules("aaaa", Policy::Long),
            vec![TooShort, NeedsLettersDigitsSymbols, Repetitive]
        );
        let long = "長".repeat(MAX_BYTES / 3 + 1);
        assert_eq!(rules(&long, Policy::Long), vec![TooLong]);
        // 128 characters of any script are accepted.
        let many = format!("{}1!", "あa".repeat(63));
        assert_eq!(many.chars().count(), 128);
        assert_eq!(rules(&many, Policy::Long), vec![]);
    }

    #[test]
    fn common_passwords_and_their_disguises_are_refused() {
        assert_eq!(common().len(), 10_000);
        for password in ["password", "P@ssw0rd2026!", "Sunshine2026!", "!!dragon1234"] {
            assert!(
                rules(password, Policy::Rotated).contains(&PasswordRule::Common),
                "{password}"
            );
        }
        assert!(!rules("tsukimi-dango 2026", Policy::Rotated).contains(&PasswordRule::Common));
    }

    #[test]
    fn login_and_name_may_not_be_in_the_password() {
        for password in [
            "hanako.sato@example.jp1!",
            "X hanako.sato 2026!",
            "佐藤花子-2026!!",
            "花子さん-2026!!",
        ] {
            assert!(
                rules(password, Policy::Long).contains(&PasswordRule::Personal),
                "{password}"
            );
        }
        assert!(!rules("correct horse battery 7!", Policy::Long).contains(&PasswordRule::Personal));
    }

    #[test]
    fn resemblance() {
        assert!(similar("Haruyasumi2026?", "haruyasumi2025!"));
        assert!(similar(
            "correct horse battery 8!",
            "correct horse battery 7!"
        ));
        assert!(!similar("tsukimi-dango 2026", "correct horse battery 7!"));
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn rotated_passwords_expire_after_sixty_days() {
        let day = 86_400_000;
        assert!(!Policy::Long.expired(Some(0), 1000 * day));
        assert!(!Policy::Rotated.expired(Some(0), 59 * day));
        assert!(Policy::Rotated.expired(Some(0), 60 * day));
        assert!(Policy::Rotated.expired(None, 0));
    }

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

//! Passwords: the rules a new one must meet (art. 13(2), 13(6)) — length by the
//! deployment's policy, a mix of letters, digits and symbols, not common, not personal,
//! not one of the last few, not a near copy of the current one.

use std::collections::HashSet;
use std::sync::OnceLock;

use renkei_protocol::api::PasswordRule;

/// The password policy of the deployment (art. 13(2)): `long` = 13 or more characters;
/// `rotated` = 8 or more, changed at least every 60 days (login then forces a change);
/// `mfa` = 8 or more for accounts with a second factor, 13 for the others. All mix
/// letters, digits and symbols.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
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

/// The 10,000 most common passwords (`domain/data/README.md`), lower case.
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
}

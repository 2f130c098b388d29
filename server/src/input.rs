//! Checks of what people type into forms: every field is trimmed, bounded and, where it
//! has a shape (an e-mail address, a date), parsed. A bad field is a 400 naming it.

use crate::http::HttpError;

/// A required line of text: trimmed, 1 to `max` characters, no control characters.
pub fn text(field: &str, value: &str, max: usize) -> Result<String, HttpError> {
    let value = value.trim();
    if value.is_empty() {
        return Err(HttpError::bad_request(format!("{field} is required")));
    }
    optional_text(field, value, max)
}

/// An optional line of text (may be empty): trimmed, at most `max` characters.
pub fn optional_text(field: &str, value: &str, max: usize) -> Result<String, HttpError> {
    let value = value.trim();
    if value.chars().count() > max {
        return Err(HttpError::bad_request(format!(
            "{field} is longer than {max} characters"
        )));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(HttpError::bad_request(format!(
            "{field} contains control characters"
        )));
    }
    Ok(value.to_string())
}

/// An e-mail address, in lower case: the login of an account.
pub fn email(field: &str, value: &str) -> Result<String, HttpError> {
    let value = value.trim().to_lowercase();
    let valid = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        })
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(HttpError::bad_request(format!(
            "{field} is not an e-mail address"
        )));
    }
    Ok(value)
}

/// A calendar date, `YYYY-MM-DD`.
pub fn date(field: &str, value: &str) -> Result<String, HttpError> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(value.trim(), format)
        .map(|_| value.trim().to_string())
        .map_err(|_| HttpError::bad_request(format!("{field} must be a date, YYYY-MM-DD")))
}

/// A reason for a decision: required, at most 1000 characters.
pub fn reason(value: &str) -> Result<String, HttpError> {
    text("reason", value, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_trimmed_bounded_and_parsed() {
        assert_eq!(text("name", "  山田 ", 10).ok().as_deref(), Some("山田"));
        assert!(text("name", "   ", 10).is_err());
        assert!(text("name", "あいうえおかきくけこさ", 10).is_err());
        assert!(text("name", "a\u{7}b", 10).is_err());
        assert_eq!(
            email("email", " Nurse@Example.JP ").ok().as_deref(),
            Some("nurse@example.jp")
        );
        for bad in [
            "",
            "nurse",
            "@example.jp",
            "a@b",
            "a@.jp",
            "a b@c.jp",
            "a@b@c.jp",
        ] {
            assert!(email("email", bad).is_err(), "{bad:?}");
        }
        assert!(date("signed_on", "2026-11-24").is_ok());
        for bad in ["2026-13-01", "2026-02-30", "24/11/2026", ""] {
            assert!(date("signed_on", bad).is_err(), "{bad:?}");
        }
    }
}

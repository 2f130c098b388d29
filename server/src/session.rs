//! Sessions: random bearer tokens, stored only as SHA-256 hashes, carried by an HttpOnly
//! SameSite cookie (browsers) or an `Authorization: Bearer` header (other clients).
//! A token in a URL is never read.

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

/// The name of the session cookie.
pub const COOKIE: &str = "renkei_session";

/// A new random token: 32 bytes from the OS, base64url.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// How a request presented its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    Bearer,
    Cookie,
}

/// The token a request carries: the `Authorization: Bearer` header first, else the cookie.
pub fn presented_token(headers: &HeaderMap) -> Option<(String, Carrier)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = value.to_str().ok()?.strip_prefix("Bearer ")?.trim();
        return (!token.is_empty()).then(|| (token.to_string(), Carrier::Bearer));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == COOKIE && !value.is_empty())
        .map(|(_, value)| (value.to_string(), Carrier::Cookie))
}

/// The `Set-Cookie` value that stores a session in a browser.
pub fn set_cookie(token: &str, max_age_secs: u64, secure: bool) -> String {
    format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// True when a cookie-authenticated request comes from a page of this server: its `Origin`
/// (if any) names the same host as its `Host` header. Blocks cross-site WebSocket hijacking;
/// bearer tokens are not sent by browsers on their own and need no such check.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let (Ok(origin), Some(Ok(host))) = (
        origin.to_str(),
        headers.get(header::HOST).map(|h| h.to_str()),
    ) else {
        return false;
    };
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).expect("header"));
        }
        map
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (random_token(), random_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(token_hash(&a).len(), 32);
        assert_ne!(token_hash(&a), token_hash(&b));
    }

    #[test]
    fn bearer_then_cookie() {
        let h = headers(&[(header::AUTHORIZATION, "Bearer abc")]);
        assert_eq!(presented_token(&h), Some(("abc".into(), Carrier::Bearer)));
        let h = headers(&[(header::COOKIE, "a=1; renkei_session=xyz; b=2")]);
        assert_eq!(presented_token(&h), Some(("xyz".into(), Carrier::Cookie)));
        let h = headers(&[(header::AUTHORIZATION, "Basic abc")]);
        assert_eq!(presented_token(&h), None);
        assert_eq!(presented_token(&HeaderMap::new()), None);
    }

    #[test]
    fn origin_must_match_host() {
        let ok = headers(&[
            (header::ORIGIN, "http://127.0.0.1:8080"),
            (header::HOST, "127.0.0.1:8080"),
        ]);
        assert!(same_origin(&ok));
        let evil = headers(&[
            (header::ORIGIN, "https://evil.example"),
            (header::HOST, "127.0.0.1:8080"),
        ]);
        assert!(!same_origin(&evil));
        assert!(same_origin(&headers(&[(header::HOST, "x")])));
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("t", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("t", 60, false).contains("Secure"));
    }
}

//! Sessions: random bearer tokens, stored only as SHA-256 hashes, carried by an HttpOnly
//! SameSite cookie (browsers) or an `Authorization: Bearer` header (other clients).
//! A token in a URL is never read. A session ends after its absolute lifetime, after an
//! idle period without use, at logout (one or all of a user's), and when the password
//! changes or an admin resets it, bans or deactivates the account.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use renkei_domain::policy::{self, Action, Actor};
use renkei_protocol::api::{SessionKey, SessionView};
use renkei_protocol::{AccountStatus, ErrorCode, Millis, SessionInfo};
use sha2::{Digest as _, Sha256};

use crate::app::App;
use crate::config::Config;
use crate::http::HttpError;
use crate::hub::Control;
use crate::store::UserRecord;
use crate::wire;
use renkei_domain::clock;

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

/// What a browser's `Origin` header says of where a request comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// No `Origin` header: not a browser, or a browser's same-origin read.
    Absent,
    /// A page of an allowed origin.
    Allowed,
    /// A page of any other site.
    Foreign,
}

/// Checks the request's `Origin` against `allowed` (exact matches), or, when the list is
/// empty, against the origin the server was reached at (its `Host`).
pub fn origin(headers: &HeaderMap, allowed: &[String]) -> Origin {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Origin::Absent;
    };
    let Ok(origin) = origin.to_str() else {
        return Origin::Foreign;
    };
    let matches = if allowed.is_empty() {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        host.is_some_and(|host| {
            origin
                .split_once("://")
                .is_some_and(|(_, rest)| rest == host)
        })
    } else {
        allowed.iter().any(|a| a == origin)
    };
    if matches {
        Origin::Allowed
    } else {
        Origin::Foreign
    }
}

/// Whether a request carrying a session may use it, as far as its origin goes. Browsers
/// send cookies on their own, so a cookie-carried request that changes something must
/// come from an allowed page, saying so (CSRF); a read may omit `Origin` (same-origin
/// navigation). A bearer token is never sent on its own and needs no such check. The
/// WebSocket upgrade is checked by [`upgrade_allowed`].
pub fn request_allowed(method: &Method, carrier: Carrier, origin: Origin) -> bool {
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    match (carrier, origin) {
        (Carrier::Bearer, _) | (_, Origin::Allowed) => true,
        (Carrier::Cookie, Origin::Absent) => safe,
        (Carrier::Cookie, Origin::Foreign) => false,
    }
}

/// Whether a WebSocket upgrade may proceed: browsers always send `Origin` with one, so a
/// foreign origin is refused whatever carries the session (Cross-Site WebSocket
/// Hijacking); other clients send none.
pub fn upgrade_allowed(origin: Origin) -> bool {
    origin != Origin::Foreign
}

/// A request's session, once checked.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: UserRecord,
    pub token_hash: Vec<u8>,
    pub carrier: Carrier,
    /// The password expired: the session may only change it (and list or end sessions).
    pub must_change_password: bool,
    /// A required second factor is not set up: the session may only set it up.
    pub must_enroll_second_factor: bool,
}

impl Authenticated {
    /// Why this session may only finish setting up its account, if it may.
    pub fn unfinished(&self) -> Option<HttpError> {
        if self.must_change_password {
            Some(HttpError::password_change_required())
        } else if self.must_enroll_second_factor {
            Some(HttpError::second_factor_enrollment_required())
        } else {
            None
        }
    }
}

/// The session a request carries, if it is valid: unexpired, not idle, its user still
/// able to log in, its origin acceptable. Marks it used (at most once a minute, so that
/// requests do not each write).
pub async fn authenticate(
    app: &App,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Authenticated, HttpError> {
    let (token, carrier) = presented_token(headers).ok_or_else(HttpError::unauthorized)?;
    if !request_allowed(
        method,
        carrier,
        origin(headers, &app.config.allowed_origins),
    ) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-origin request refused",
        ));
    }
    let token_hash = token_hash(&token);
    let now = clock::now_ms();
    let found = app
        .store
        .session_user(&token_hash, now, idle_since(&app.config, now))
        .await?
        .ok_or_else(HttpError::unauthorized)?;
    if now - found.last_used_at > TOUCH_INTERVAL.as_millis() as i64 {
        app.store
            .touch_sessions(std::slice::from_ref(&token_hash), now)
            .await?;
    }
    Ok(Authenticated {
        user: found.user,
        token_hash,
        carrier,
        must_change_password: found.must_change_password,
        must_enroll_second_factor: found.must_enroll_second_factor,
    })
}

/// How often a used session's last use is written down.
const TOUCH_INTERVAL: Duration = Duration::from_secs(60);
/// How often each node writes it for the sessions of its open sockets (well within the
/// idle timeout; at 10,000 sockets that is 20 short writes every five minutes).
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(300);

/// Sessions last used before this time have ended (idle timeout).
pub fn idle_since(config: &Config, now: Millis) -> Millis {
    now - i64::from(config.session_idle_minutes) * 60_000
}

/// Keeps the sessions of this node's open sockets in use (an open app is in use), closes
/// the sockets of sessions that ended meanwhile (absolute lifetime reached), and erases
/// the storage keys of sessions that expired or went idle.
pub fn spawn_keepalive(app: Arc<App>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(KEEPALIVE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = app.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let open = app.hub.open_sessions();
            match app.store.touch_sessions(&open, clock::now_ms()).await {
                Ok(ended) => {
                    for session in ended {
                        app.hub.control(&Control::SessionEnded(session));
                    }
                }
                Err(err) => tracing::warn!(error = %err, "could not mark sessions in use"),
            }
            // Expired and idle sessions keep their rows; their storage keys go.
            let now = clock::now_ms();
            if let Err(err) = app
                .store
                .forget_ended_storage_keys(now, idle_since(&app.config, now))
                .await
            {
                tracing::warn!(error = %err, "could not erase the keys of ended sessions");
            }
        }
    });
}

/// `GET /api/v1/sessions`: the caller's open sessions (device, address, last use).
pub async fn list(
    State(app): State<Arc<App>>,
    session: AnySession,
) -> Result<Json<Vec<SessionView>>, HttpError> {
    let now = clock::now_ms();
    let config = &app.config;
    let idle_ms = i64::from(config.session_idle_minutes) * 60_000;
    let sessions = app
        .store
        .user_sessions(session.0.user.id, now, idle_since(config, now))
        .await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView {
                id: hex(&s.token_hash),
                current: s.token_hash == session.0.token_hash,
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at.min(s.last_used_at.max(now) + idle_ms),
                device: s.user_agent,
                source: s.source,
            })
            .collect(),
    ))
}

/// `GET /api/v1/session/key`: the calling session's storage key, made at its first call
/// (32 bytes from the OS). What the browser encrypted under it becomes unreadable when the
/// session ends, since the key is kept in the session's row and nowhere else on the
/// server; the answer is never cached.
pub async fn storage_key(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
) -> Result<Response, HttpError> {
    if let Some(refusal) = session.unfinished() {
        return Err(refusal);
    }
    let mut fresh = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut fresh);
    let key = app
        .store
        .session_storage_key(&session.token_hash, &fresh)
        .await?
        // Ended between its check and here (a logout on another tab).
        .ok_or_else(HttpError::unauthorized)?;
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(SessionKey {
            key: URL_SAFE_NO_PAD.encode(key),
        }),
    )
        .into_response())
}

/// `DELETE /api/v1/sessions`: logs out everywhere: every session of the caller ends, this
/// one included, and their sockets close on every node.
pub async fn end_all(
    State(app): State<Arc<App>>,
    session: AnySession,
) -> Result<Response, HttpError> {
    let ended = app.store.end_user_sessions(session.0.user.id, None).await?;
    for hash in &ended {
        app.bus.end_session(hash);
    }
    tracing::info!(
        user = session.0.user.id,
        sessions = ended.len(),
        "logged out everywhere"
    );
    Ok(logged_out(&app))
}

/// `DELETE /api/v1/sessions/{id}`: ends one of the caller's sessions (a lost phone).
pub async fn end_one(
    State(app): State<Arc<App>>,
    session: AnySession,
    Path(id): Path<String>,
) -> Result<Response, HttpError> {
    let hash = unhex(&id).ok_or_else(|| HttpError::bad_request("not a session id"))?;
    if !app.store.end_user_session(session.0.user.id, &hash).await? {
        return Err(HttpError::not_found("session"));
    }
    app.bus.end_session(&hash);
    if hash == session.0.token_hash {
        return Ok(logged_out(&app));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The answer that ends this browser's session: no content, and the cookie removed.
pub fn logged_out(app: &App) -> Response {
    (
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            clear_cookie(app.config.secure_cookies()),
        )],
    )
        .into_response()
}

/// The caller's session, even one that may only change its expired password.
pub struct AnySession(pub Authenticated);

impl FromRequestParts<Arc<App>> for AnySession {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, HttpError> {
        if let Some(found) = parts.extensions.get::<Authenticated>() {
            return Ok(AnySession(found.clone()));
        }
        Ok(AnySession(
            authenticate(app, &parts.method, &parts.headers).await?,
        ))
    }
}

/// The logged-in user a request acts for.
pub struct Caller {
    pub user: UserRecord,
}

impl Caller {
    /// The caller as the policy sees them.
    pub fn actor(&self) -> Actor {
        Actor {
            id: self.user.id,
            role: self.user.role,
            facility: self.user.facility_id,
            restricted: self.user.status == AccountStatus::Restricted,
        }
    }

    /// Asks the policy; a denial becomes the response.
    pub fn may(&self, action: Action) -> Result<(), HttpError> {
        Ok(policy::authorize(&self.actor(), action)?)
    }
}

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, HttpError> {
        let AnySession(session) = AnySession::from_request_parts(parts, app).await?;
        if let Some(refusal) = session.unfinished() {
            return Err(refusal);
        }
        Ok(Caller { user: session.user })
    }
}

/// `GET /api/v1/session`: whose session this is.
pub async fn whoami(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
) -> Result<Response, HttpError> {
    let user = session.user;
    let info = SessionInfo {
        user: wire::profile(&user),
        status: user.status,
        login: user.login,
        idle_lock_seconds: app.config.idle_lock_seconds,
        password_change_required: session.must_change_password,
        second_factor_enrollment_required: session.must_enroll_second_factor,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(info)).into_response())
}

/// `DELETE /api/v1/session`: ends the session and closes its sockets.
pub async fn logout(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
) -> Result<Response, HttpError> {
    app.store.delete_session(&session.token_hash).await?;
    app.bus.end_session(&session.token_hash);
    Ok(logged_out(&app))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
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
    fn origins_are_checked_exactly() {
        let from =
            |origin: &str| headers(&[(header::ORIGIN, origin), (header::HOST, "127.0.0.1:8080")]);
        assert_eq!(origin(&from("http://127.0.0.1:8080"), &[]), Origin::Allowed);
        assert_eq!(origin(&from("https://evil.example"), &[]), Origin::Foreign);
        assert_eq!(
            origin(&from("http://127.0.0.1:8080.evil"), &[]),
            Origin::Foreign
        );
        assert_eq!(
            origin(&headers(&[(header::HOST, "x")]), &[]),
            Origin::Absent
        );
        let allowed = vec!["https://renkei.example.jp".to_string()];
        assert_eq!(
            origin(&from("https://renkei.example.jp"), &allowed),
            Origin::Allowed
        );
        // With a list, the Host no longer counts.
        assert_eq!(
            origin(&from("http://127.0.0.1:8080"), &allowed),
            Origin::Foreign
        );
        assert_eq!(
            origin(&from("https://renkei.example.jp.evil"), &allowed),
            Origin::Foreign
        );
    }

    #[test]
    fn cookies_need_an_allowed_origin_to_change_anything() {
        use Carrier::*;
        assert!(request_allowed(&Method::GET, Cookie, Origin::Absent));
        assert!(!request_allowed(&Method::POST, Cookie, Origin::Absent));
        assert!(!request_allowed(&Method::DELETE, Cookie, Origin::Foreign));
        assert!(!request_allowed(&Method::GET, Cookie, Origin::Foreign));
        assert!(request_allowed(&Method::POST, Cookie, Origin::Allowed));
        assert!(request_allowed(&Method::POST, Bearer, Origin::Foreign));
        assert!(!upgrade_allowed(Origin::Foreign));
        assert!(upgrade_allowed(Origin::Absent));
    }

    #[test]
    fn session_ids_round_trip() {
        let hash = token_hash("t");
        assert_eq!(unhex(&hex(&hash)), Some(hash));
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex(&"g".repeat(64)), None);
    }

    #[test]
    fn cookie_attributes() {
        let c = set_cookie("t", 60, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"));
        assert!(!set_cookie("t", 60, false).contains("Secure"));
    }
}

//! Logging in (art. 13(2)(6)): a password checked in constant-looking time, growing delays
//! after failures per login and per source address, and a temporary lock of the account
//! after repeated failures, of which its admins are told.
//!
//! The trade-off: an attacker who knows a login can keep that account locked by trying a
//! wrong password every lock period. They cannot lock it out for good — each lock ends by
//! itself, an admin's password reset lifts it at once, and the admins are told of every
//! lock, so that a lasting attack is seen. Delays are per node (in memory); the lock is in
//! the database and holds on every node.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use renkei_domain::password;
use renkei_protocol::{ErrorCode, LoginRequest, LoginResponse, ServerMessage};

use crate::app::App;
use crate::http::{AuditActor, ClientIp, HttpError};
use crate::store::{Credentials, NewSession};
use crate::{session, two_factor, wire};
use renkei_domain::audit::AuditEntry;
use renkei_domain::clock;

/// Longest login accepted (longer input is refused before hashing).
const MAX_LOGIN: usize = 254;
/// Longest User-Agent kept with a session.
const MAX_DEVICE: usize = 200;

/// The one answer to every failed login, whatever failed: the login, the password, or a
/// lock (which is not revealed to whoever tries).
fn refused(tried: Option<AuditActor>) -> Response {
    let refused = HttpError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidCredentials,
        "wrong login or password (after repeated failures an account is locked for a while)",
    )
    .into_response();
    naming(refused, tried)
}

/// Names the account tried in the response, for its audit record.
fn naming(mut response: Response, tried: Option<AuditActor>) -> Response {
    if let Some(tried) = tried {
        response.extensions_mut().insert(tried);
    }
    response
}

/// `POST /api/v1/session`: checks a password and opens a session.
pub async fn login(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    headers: HeaderMap,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(request) = body?;
    if request.login.len() > MAX_LOGIN || request.password.len() > password::MAX_BYTES {
        return Err(HttpError::bad_request("login or password too long"));
    }
    // Logins are e-mail addresses, compared in lower case.
    let login = request.login.trim().to_lowercase();
    if let Some(wait) = app.logins.wait(&login, client, Instant::now()) {
        return Err(HttpError::rate_limited(
            wait,
            "too many failed logins: wait before trying again",
        ));
    }
    // An account without a password yet (waiting for its setup code) cannot log in.
    let credentials = app
        .store
        .credentials(&login)
        .await?
        .filter(|c| !c.password_hash.is_empty());
    let now = clock::now_ms();
    let locked = credentials
        .as_ref()
        .is_some_and(|c| c.locked_until.is_some_and(|until| until > now));
    // A locked account's password is not checked; the decoy takes the same time.
    let hash = credentials
        .as_ref()
        .filter(|_| !locked)
        .map(|c| c.password_hash.as_str());
    let verified = app.passwords.verify(hash, &request.password).await?;
    // The audit record of a login names the account tried, when it exists.
    let tried = credentials.as_ref().map(|c| AuditActor {
        user: c.user.id,
        facility: c.user.facility_id,
    });
    let Some(credentials) = credentials.filter(|_| verified.matched) else {
        app.logins.failed(&login, client, Instant::now());
        if let (Some(tried), false) = (tried, locked) {
            count_failure(&app, tried, client, now).await?;
        }
        return Ok(refused(tried));
    };
    // The second factor, when the account has one: a wrong or replayed code counts as a
    // failed login. (Asking for it tells whoever tries that the password was right; the
    // delays and the lock still bound how often they may try.)
    if let Some(secret) = &credentials.totp_secret {
        let Some(code) = request.code.as_deref().filter(|c| !c.trim().is_empty()) else {
            let ask = HttpError::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::SecondFactorRequired,
                "enter the code of your authenticator app, or a recovery code",
            )
            .into_response();
            return Ok(naming(ask, tried));
        };
        if !two_factor::accept(&app, credentials.user.id, secret, code).await? {
            app.logins.failed(&login, client, Instant::now());
            if let Some(tried) = tried {
                count_failure(&app, tried, client, now).await?;
            }
            return Ok(refused(tried));
        }
    }
    app.logins.succeeded(&login);
    let user = credentials.user.id;
    app.store.login_succeeded(user).await?;
    if verified.outdated {
        upgrade_hash(&app, &credentials, &request.password).await;
    }
    let must_change_password = app
        .config
        .password_policy
        .expired(credentials.password_changed_at, now);
    let must_enroll_second_factor = credentials.totp_secret.is_none()
        && app.config.two_factor.applies_to(credentials.user.role);
    let token = session::random_token();
    let lifetime_secs = u64::from(app.config.session_hours) * 3600;
    let expires_at = now + i64::try_from(lifetime_secs * 1000).unwrap_or(i64::MAX);
    let device = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .take(MAX_DEVICE)
        .collect();
    app.store
        .create_sessions(&[NewSession {
            token_hash: session::token_hash(&token),
            user_id: user,
            created_at: now,
            expires_at,
            user_agent: device,
            source: client.to_string(),
            must_change_password,
            must_enroll_second_factor,
        }])
        .await?;
    tracing::info!(user, must_change_password, "logged in");
    let cookie = session::set_cookie(&token, lifetime_secs, app.config.secure_cookies());
    let body = LoginResponse {
        token,
        expires_at,
        user: wire::profile(&credentials.user),
        password_change_required: must_change_password,
        second_factor_enrollment_required: must_enroll_second_factor,
    };
    let response = (
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(body),
    )
        .into_response();
    Ok(naming(response, tried))
}

/// Counts a wrong password of a known account; when it locks the account, records the
/// lock and tells the admins.
async fn count_failure(
    app: &App,
    tried: AuditActor,
    client: IpAddr,
    now: i64,
) -> Result<(), HttpError> {
    let config = &app.config;
    let lock_ms = i64::from(config.login_lock_minutes) * 60_000;
    let Some(until) = app
        .store
        .login_failed(tried.user, now, config.login_lock_failures, lock_ms)
        .await?
    else {
        return Ok(());
    };
    tracing::warn!(
        user = tried.user,
        until,
        "account locked after failed logins"
    );
    app.audit
        .record(AuditEntry {
            at: now,
            actor: Some(tried.user),
            facility: tried.facility,
            action: "account locked".into(),
            group: None,
            target: format!("/api/v1/users/{}", tried.user),
            source: client.to_string(),
            result: format!("locked for {} min", config.login_lock_minutes),
        })
        .await;
    if let Some(user) = app.store.user(tried.user).await? {
        let notice = ServerMessage::AccountLocked {
            user: wire::details_profile(&user),
            until,
        };
        for admin in app.store.lock_notice_recipients(tried.user).await? {
            app.bus.notify(admin, &notice);
        }
    }
    // The owner learns of it too, away from the page: someone may be guessing.
    crate::notice::tell(
        app,
        tried.user,
        renkei_protocol::api::NoticeKind::Account,
        Some(crate::store::MailKind::Locked),
    )
    .await;
    Ok(())
}

/// Stores the password's hash again at the configured cost. A failure leaves the old
/// hash, which still works; the next login tries again.
async fn upgrade_hash(app: &App, credentials: &Credentials, password: &str) {
    let upgraded = match app.passwords.hash(password).await {
        Ok(new) => {
            app.store
                .rehash_password(credentials.user.id, &credentials.password_hash, &new)
                .await
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not re-hash a password");
            return;
        }
    };
    match upgraded {
        Ok(()) => tracing::info!(
            user = credentials.user.id,
            "password re-hashed at the configured cost"
        ),
        Err(err) => tracing::warn!(error = %err, "could not store a re-hashed password"),
    }
}

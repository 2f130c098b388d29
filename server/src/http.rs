//! The HTTP surface: the REST API, the WebSocket upgrade, health and metrics.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use renkei_protocol::{ApiError, ErrorCode, LoginRequest, LoginResponse, SessionInfo};

use crate::api::AuditActor;
use crate::app::App;
use crate::connection::Connection;
use crate::hub::HubError;
use crate::password::PasswordError;
use crate::policy::Denial;
use crate::sequencer::ChangeError;
use crate::session::{self, Carrier};
use crate::store::{NewSession, StoreError, UserRecord};
use crate::{clock, wire};

/// Longest login and password accepted (longer input is refused before hashing).
const MAX_LOGIN: usize = 254;
const MAX_PASSWORD: usize = 1024;

/// The whole HTTP application: the REST API as `api::endpoints` lists (and documents) it,
/// the WebSocket, health, metrics and the web client.
pub fn router(app: Arc<App>) -> Router {
    crate::api::routes(&app)
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .merge(crate::web::routes())
        .fallback(|| async {
            HttpError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such resource",
            )
        })
        .layer(axum::middleware::map_response(crate::web::security_headers))
        .with_state(app)
}

/// An error response: a status and the protocol's error body.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    body: ApiError,
}

impl HttpError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            body: ApiError {
                error: wire::error(code, message),
            },
        }
    }

    /// The request's input is invalid: say which field and why.
    pub fn bad_request(message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }

    pub fn not_found(what: &str) -> Self {
        HttpError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            format!("no such {what}"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        HttpError::new(StatusCode::CONFLICT, ErrorCode::Conflict, message)
    }

    /// The wire code, for tests and logs.
    pub fn code(&self) -> ErrorCode {
        self.body.error.code
    }
}

impl From<Denial> for HttpError {
    fn from(denial: Denial) -> Self {
        HttpError::new(
            StatusCode::FORBIDDEN,
            wire::denial_code(denial),
            denial.to_string(),
        )
    }
}

impl From<ChangeError> for HttpError {
    fn from(err: ChangeError) -> Self {
        match err {
            ChangeError::Store(err) => err.into(),
            ChangeError::ShuttingDown => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::ShuttingDown,
                "shutting down: retry",
            ),
            ChangeError::Internal => HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal,
                "internal error: nothing was changed",
            ),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<StoreError> for HttpError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => HttpError::conflict(what),
            StoreError::NotFound(what) => HttpError::not_found(what),
            StoreError::LastAdmin => HttpError::new(
                StatusCode::CONFLICT,
                ErrorCode::LastAdmin,
                "the facility's last active admin cannot lose the role or the account: \
                 make someone else admin first",
            ),
            err => {
                tracing::error!(error = %err, "storage error");
                HttpError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    "database unavailable: retry",
                )
            }
        }
    }
}

impl From<PasswordError> for HttpError {
    fn from(err: PasswordError) -> Self {
        match err {
            PasswordError::Overloaded => HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::Overloaded,
                "too many logins at once: retry in a second",
            ),
            PasswordError::Hash(detail) => {
                tracing::error!(%detail, "password hashing failed");
                HttpError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "internal error",
                )
            }
        }
    }
}

impl From<JsonRejection> for HttpError {
    fn from(rejection: JsonRejection) -> Self {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            rejection.body_text(),
        )
    }
}

impl From<HubError> for HttpError {
    fn from(err: HubError) -> Self {
        match err {
            HubError::TooManyConnections => HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::TooManyConnections,
                "too many open connections for this user: close one first",
            ),
        }
    }
}

fn unauthorized() -> HttpError {
    HttpError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "log in first",
    )
}

/// `POST /api/v1/session`: checks a password and opens a session.
pub async fn login(
    State(app): State<Arc<App>>,
    body: Result<Json<LoginRequest>, JsonRejection>,
) -> Result<Response, HttpError> {
    let Json(request) = body?;
    if request.login.len() > MAX_LOGIN || request.password.len() > MAX_PASSWORD {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "login or password too long",
        ));
    }
    // Logins are e-mail addresses, compared in lower case; an account without a password
    // yet (waiting for its setup code) cannot log in.
    let credentials = app
        .store
        .credentials(&request.login.trim().to_lowercase())
        .await?
        .filter(|c| !c.password_hash.is_empty());
    let hash = credentials.as_ref().map(|c| c.password_hash.as_str());
    let matched = app.passwords.verify(hash, &request.password).await?;
    // The audit record of a login names the account tried, when it exists.
    let tried = credentials.as_ref().map(|c| AuditActor {
        user: c.user.id,
        facility: c.user.facility_id,
    });
    let Some(credentials) = credentials.filter(|_| matched) else {
        let mut refused = HttpError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::InvalidCredentials,
            "wrong login or password",
        )
        .into_response();
        if let Some(tried) = tried {
            refused.extensions_mut().insert(tried);
        }
        return Ok(refused);
    };
    let token = session::random_token();
    let lifetime_secs = u64::from(app.config.session_hours) * 3600;
    let now = clock::now_ms();
    let expires_at = now + i64::try_from(lifetime_secs * 1000).unwrap_or(i64::MAX);
    app.store
        .create_sessions(&[NewSession {
            token_hash: session::token_hash(&token),
            user_id: credentials.user.id,
            created_at: now,
            expires_at,
        }])
        .await?;
    tracing::info!(user = credentials.user.id, "logged in");
    let cookie = session::set_cookie(&token, lifetime_secs, app.config.cookie_secure);
    let body = LoginResponse {
        token,
        expires_at,
        user: wire::profile(&credentials.user),
    };
    let mut response = (
        [
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        Json(body),
    )
        .into_response();
    if let Some(tried) = tried {
        response.extensions_mut().insert(tried);
    }
    Ok(response)
}

/// The address a request came from, for the audit trail (the peer; behind a reverse
/// proxy, the proxy).
pub fn source<B>(request: &axum::http::Request<B>) -> String {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.to_string())
        .unwrap_or_default()
}

/// `GET /api/v1/session`: whose session this is.
pub async fn whoami(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (user, _) = authenticate(&app, &headers).await?;
    let info = SessionInfo {
        user: wire::profile(&user),
        status: user.status,
        login: user.login,
        idle_lock_seconds: app.config.idle_lock_seconds,
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(info)).into_response())
}

/// `DELETE /api/v1/session`: ends the session and closes its sockets.
pub async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (token, carrier) = session::presented_token(&headers).ok_or_else(unauthorized)?;
    check_origin(carrier, &headers)?;
    let hash = session::token_hash(&token);
    app.store.delete_session(&hash).await?;
    app.bus.end_session(&hash);
    Ok((
        StatusCode::NO_CONTENT,
        [(
            header::SET_COOKIE,
            session::clear_cookie(app.config.cookie_secure),
        )],
    )
        .into_response())
}

/// Refuses a cookie-carried session used from another site's page.
fn check_origin(carrier: Carrier, headers: &HeaderMap) -> Result<(), HttpError> {
    if carrier == Carrier::Cookie && !session::same_origin(headers) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-origin request refused",
        ));
    }
    Ok(())
}

/// The user of the session a request carries.
pub async fn authenticate(
    app: &App,
    headers: &HeaderMap,
) -> Result<(UserRecord, Vec<u8>), HttpError> {
    let (token, carrier) = session::presented_token(headers).ok_or_else(unauthorized)?;
    if carrier == Carrier::Cookie && !session::same_origin(headers) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-origin request refused",
        ));
    }
    let hash = session::token_hash(&token);
    let user = app
        .store
        .session_user(&hash, clock::now_ms())
        .await?
        .ok_or_else(unauthorized)?;
    Ok((user, hash))
}

/// `GET /ws`: authenticates, registers the socket, then upgrades. Every refusal is an HTTP
/// error before the upgrade.
async fn websocket(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Result<Response, HttpError> {
    if app.shutdown.is_cancelled() {
        return Err(HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            "shutting down",
        ));
    }
    let (user, session) = authenticate(&app, &headers).await?;
    let restricted = user.status == renkei_protocol::AccountStatus::Restricted;
    let registration = app.hub.register(user.id, restricted, session.into())?;
    let limits = &app.config.limits;
    let max = limits.max_frame_bytes as usize;
    let tracker = app.sockets.clone();
    Ok(upgrade
        // tungstenite reads into a 128 KiB buffer per socket by default: far too much for
        // thousands of mostly idle sockets. Larger frames grow it on demand.
        .read_buffer_size(4 * 1024)
        // We coalesce writes ourselves (one flush per drain of the outbox).
        .write_buffer_size(8 * 1024)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| {
            tracker.track_future(
                Connection::new(app, user, registration, peer.to_string()).run(socket),
            )
        }))
}

/// `GET /readyz`: 200 when the database answers.
async fn ready(State(app): State<Arc<App>>) -> Response {
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics(State(app): State<Arc<App>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

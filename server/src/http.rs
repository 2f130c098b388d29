//! The HTTP surface: the REST API, the WebSocket upgrade, health and metrics.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use renkei_domain::policy::Denial;
use renkei_protocol::api::PasswordRule;
use renkei_protocol::{ApiError, ErrorCode, SessionInfo};

use crate::app::App;
use crate::config::Config;
use crate::connection::Connection;
use crate::hub::HubError;
use crate::password::PasswordError;
use crate::sequencer::ChangeError;
use crate::session::{self, AnySession};
use crate::store::StoreError;
use crate::wire;

/// The whole HTTP application: the REST API as `api::endpoints` lists (and documents) it,
/// the WebSocket, health, metrics and the web client.
pub fn router(app: Arc<App>) -> Router {
    crate::api::routes(&app)
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .merge(crate::web::routes())
        .fallback(|| async {
            HttpError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                "no such resource",
            )
        })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&app),
            crate::accept::time_bodies,
        ))
        .layer(axum::middleware::map_response_with_state(
            Arc::clone(&app),
            crate::web::security_headers,
        ))
        .with_state(app)
}

/// An error response: a status and the protocol's error body.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    body: ApiError,
    /// Seconds to wait before retrying (`Retry-After`) of a 429; 1 when not set.
    retry_after: Option<u64>,
}

impl HttpError {
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        HttpError {
            status,
            body: ApiError {
                error: wire::error(code, message),
            },
            retry_after: None,
        }
    }

    /// No valid session.
    pub fn unauthorized() -> Self {
        HttpError::new(
            StatusCode::UNAUTHORIZED,
            ErrorCode::Unauthorized,
            "log in first",
        )
    }

    /// Too many requests: retry after `wait`.
    pub fn rate_limited(wait: Duration, message: impl Into<String>) -> Self {
        HttpError {
            retry_after: Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            ..HttpError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                message,
            )
        }
    }

    /// The session may only change its expired password.
    pub fn password_change_required() -> Self {
        HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::PasswordChangeRequired,
            "the password has expired: change it first",
        )
    }

    /// A required second factor is not set up yet.
    pub fn second_factor_enrollment_required() -> Self {
        HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::SecondFactorEnrollmentRequired,
            "set up the second factor first",
        )
    }

    /// A new password breaks these rules (at least `min_length` characters among them).
    pub fn weak_password(rules: Vec<PasswordRule>, min_length: usize) -> Self {
        let mut error = HttpError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::WeakPassword,
            renkei_domain::password::describe(&rules, min_length),
        );
        error.body.error.rules = rules;
        error
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
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after.unwrap_or(1)),
            );
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

/// The address a request comes from: the peer's, or, when the peer is a trusted reverse
/// proxy (`RENKEI_TRUSTED_PROXIES`), the address that proxy appended to
/// `X-Forwarded-For`. Rate limits, login delays, sessions and the audit trail use it.
pub fn client_ip(config: &Config, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
    if !config.trusted_proxies.contains(&peer) {
        return peer;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .next_back()
        .and_then(|last| last.trim().parse().ok())
        .unwrap_or(peer)
}

/// The client's address of a request, as [`client_ip`] finds it from the peer's.
pub fn client_of(config: &Config, parts_extensions: &Extensions, headers: &HeaderMap) -> IpAddr {
    let peer = parts_extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |info| info.0.ip());
    client_ip(config, peer, headers)
}

/// The client's address as [`client_of`] finds it.
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<App>> for ClientIp {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, HttpError> {
        Ok(ClientIp(client_of(
            &app.config,
            &parts.extensions,
            &parts.headers,
        )))
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
    Ok(session::logged_out(&app))
}

/// `GET /ws`: authenticates, registers the socket, then upgrades. Every refusal is an HTTP
/// error before the upgrade.
async fn websocket(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
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
    if !app.requests.addresses.try_take(client) {
        return Err(HttpError::rate_limited(
            Duration::from_secs(1),
            "too many requests: slow down",
        ));
    }
    if !session::upgrade_allowed(session::origin(&headers, &app.config.allowed_origins)) {
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "cross-origin WebSocket refused",
        ));
    }
    let found = session::authenticate(&app, &Method::GET, &headers).await?;
    if let Some(refusal) = found.unfinished() {
        return Err(refusal);
    }
    let user = found.user;
    let restricted = user.status == renkei_protocol::AccountStatus::Restricted;
    let registration = app
        .hub
        .register(user.id, restricted, found.token_hash.into())?;
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
                Connection::new(app, user, registration, client.to_string()).run(socket),
            )
        }))
}

/// What the metrics address serves (`RENKEI_METRICS_LISTEN`): `/metrics` and nothing
/// else. Not the clients' address: the counts tell how busy the service is and when.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { HttpError::not_found("resource") })
        .with_state(app)
}

/// `GET /readyz`: 200 when the database answers. Each call asks the database, so it is
/// throttled per address (429).
async fn ready(State(app): State<Arc<App>>, ClientIp(client): ClientIp) -> Response {
    if !app.requests.probes.try_take(client) {
        return HttpError::rate_limited(Duration::from_secs(1), "too many probes: slow down")
            .into_response();
    }
    match app.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready").into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable").into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text exposition; with `RENKEI_METRICS_TOKEN`, only for a
/// request that carries it as a bearer token (401 otherwise).
async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Some(token) = &app.config.metrics_token {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or_default();
        // Compared as digests: the time taken tells nothing of how much of it matched.
        if session::token_hash(presented) != session::token_hash(token) {
            let mut refused = HttpError::unauthorized().into_response();
            refused.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return refused;
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let mut config = crate::config::Cli::try_parse_from(["renkei"])
            .expect("defaults")
            .config;
        let proxy: IpAddr = [10, 0, 0, 1].into();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 198.51.100.7"),
        );
        // Anyone may write the header: untrusted, it is ignored.
        assert_eq!(client_ip(&config, proxy, &headers), proxy);
        config.trusted_proxies = vec![proxy];
        // The proxy appends the address it saw: the last one.
        let client: IpAddr = [198, 51, 100, 7].into();
        assert_eq!(client_ip(&config, proxy, &headers), client);
        let other: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(client_ip(&config, other, &headers), other);
        assert_eq!(client_ip(&config, proxy, &HeaderMap::new()), proxy);
    }
}

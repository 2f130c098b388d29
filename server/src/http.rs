//! The HTTP surface: the REST API, the WebSocket upgrade, health and metrics.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use renkei_domain::policy::Denial;
use renkei_protocol::api::PasswordRule;
use renkei_protocol::{ApiError, ErrorCode};

use crate::config::Config;
use crate::hub::HubError;
use crate::password::PasswordError;
use crate::sequencer::ChangeError;
use crate::store::StoreError;
use crate::wire;

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

/// What the extractors here need of the handlers' state: the settings (which proxies are
/// trusted), and nothing of the handlers.
pub trait Settings {
    fn settings(&self) -> &Config;
}

/// The client's address as [`client_of`] finds it.
pub struct ClientIp(pub IpAddr);

impl<S: Settings + Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        Ok(ClientIp(client_of(
            state.settings(),
            &parts.extensions,
            &parts.headers,
        )))
    }
}

/// Who acted, for a handler that knows it without a session (a login): put it in the
/// response's extensions and the audit record names them.
#[derive(Debug, Clone, Copy)]
pub struct AuditActor {
    pub user: renkei_protocol::UserId,
    pub facility: Option<i64>,
}

/// The groups whose patient data a response carries, for a handler whose path does not
/// name its group: a file's download (its group), a read across groups (search, mentions:
/// each group with which of its posts, `seq=3,7`). Put in the response's extensions, it
/// makes the audit layer write one record per group instead of one without a group, so
/// that each group's owning facility finds the read in its own trail (its admins' trail is
/// filtered by the records' group). What was asked (a search's text, which may hold a
/// patient's name) is never in them: the target is the path and the sequence numbers.
#[derive(Debug, Clone, Default)]
pub struct AuditReads(pub Vec<(renkei_protocol::GroupId, String)>);

impl AuditReads {
    /// The one group a response concerned (the path names only a file).
    pub fn group(group: renkei_protocol::GroupId) -> Self {
        AuditReads(vec![(group, String::new())])
    }

    /// The groups of `posts` (group, seq), in group order, each with its posts' numbers.
    pub fn of(
        posts: impl IntoIterator<Item = (renkei_protocol::GroupId, renkei_protocol::Seq)>,
    ) -> Self {
        let mut groups: BTreeMap<renkei_protocol::GroupId, Vec<String>> = BTreeMap::new();
        for (group, seq) in posts {
            groups.entry(group).or_default().push(seq.to_string());
        }
        AuditReads(
            groups
                .into_iter()
                .map(|(group, seqs)| (group, format!("seq={}", seqs.join(","))))
                .collect(),
        )
    }
}

/// An id in a path; anything else is a clear 400, not a 404.
pub struct Id(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Id {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::bad_request(e.body_text()))?;
        raw.parse()
            .map(Id)
            .map_err(|_| HttpError::bad_request(format!("{raw:?} is not an id")))
    }
}

/// Two ids in a path (a group and a user, or a group and a sequence number).
pub struct Ids(pub i64, pub i64);

impl<S: Send + Sync> FromRequestParts<S> for Ids {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, HttpError> {
        let Path((a, b)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| HttpError::bad_request(e.body_text()))?;
        let parse = |raw: &str| {
            raw.parse::<i64>()
                .map_err(|_| HttpError::bad_request(format!("{raw:?} is not an id")))
        };
        Ok(Ids(parse(&a)?, parse(&b)?))
    }
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

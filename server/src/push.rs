//! Web Push (RFC 8030): the installation's VAPID key (RFC 8292), browsers' subscriptions
//! tied to their sessions, and the sender every node runs, which claims due deliveries once
//! across the cluster, encrypts each payload to its subscription (RFC 8291, aes128gcm) and
//! posts it to the push service.
//!
//! A payload holds a kind and opaque ids only ([`PushPayload`]): the push services of
//! Google, Mozilla, Apple and Microsoft, and the lock screen of a lost phone, learn nothing
//! of a patient. The service worker shows the kind's fixed text.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use futures::StreamExt as _;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use renkei_protocol::api::{
    NoticeKind, PushKey, PushPayload, PushSubscriptionCreated, PushSubscriptionRequest,
};
use renkei_protocol::{ErrorCode, Millis};

use crate::app::App;
use crate::config::{Config, NotifyConfig};
use crate::http::HttpError;
use crate::session::AnySession;
use crate::store::{ClaimedPush, PushOutcome, Store, StoreError};

/// Deliveries claimed at once, and sent at once.
const CLAIM_BATCH: u32 = 128;
const CONCURRENT_SENDS: usize = 32;
/// Tries before a delivery is given up (and recorded as such).
const MAX_ATTEMPTS: i32 = 8;
/// How long a push service keeps a push for a phone that is off, by kind.
const TTL_SECONDS: u32 = 24 * 3600;

/// Why push could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("RENKEI_VAPID_KEY_FILE: {0}")]
    KeyFile(String),
    #[error("the stored VAPID key is not a P-256 private key")]
    StoredKey,
    #[error("RENKEI_PUSH_CA_FILE: {0}")]
    CaFile(String),
    #[error("HTTP client: {0}")]
    Client(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// The installation's VAPID key pair and contact: how push services know this server.
pub struct VapidKey {
    signing: p256::ecdsa::SigningKey,
    /// The uncompressed public point, base64url without padding (`k=`, and the browser's
    /// `applicationServerKey`).
    public: String,
    contact: String,
}

impl VapidKey {
    /// The key from `RENKEI_VAPID_KEY_FILE`, or the one in the database (created at the
    /// first start and shared by every node).
    pub async fn load(config: &Config, store: &dyn Store) -> Result<VapidKey, PushError> {
        let secret = match &config.notify.vapid_key_file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|err| PushError::KeyFile(err.to_string()))?;
                parse_private_key(&text).map_err(PushError::KeyFile)?
            }
            None => {
                let candidate = p256::SecretKey::random(&mut rand::rngs::OsRng);
                let stored = store
                    .installation_secret("vapid", &candidate.to_bytes(), config.clock.now())
                    .await?;
                p256::SecretKey::from_slice(&stored).map_err(|_| PushError::StoredKey)?
            }
        };
        let contact = config
            .notify
            .push_contact
            .clone()
            .unwrap_or_else(|| default_contact(config));
        Ok(VapidKey::new(secret, contact))
    }

    fn new(secret: p256::SecretKey, contact: String) -> VapidKey {
        let public = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes());
        VapidKey {
            signing: p256::ecdsa::SigningKey::from(secret),
            public,
            contact,
        }
    }

    pub fn public_key(&self) -> &str {
        &self.public
    }

    /// The `Authorization` header for a push to `endpoint` (RFC 8292): a JWT signed with
    /// ES256 for the push service's origin, valid for 12 hours, and the public key.
    pub fn authorization(&self, endpoint: &url::Url, now: Millis) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": endpoint.origin().ascii_serialization(),
            "exp": now / 1000 + 12 * 3600,
            "sub": self.contact,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{claims}");
        let signature: p256::ecdsa::Signature = self.signing.sign(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(signature.to_bytes());
        format!("vapid t={signed}.{signature}, k={}", self.public)
    }
}

/// Whom a push service may write to about this server (RFC 8292 `sub`: `mailto:` or
/// `https:`): the mail sender, else the public URL if it is https, else the postmaster of
/// its host — said in the log, since a push service may refuse a contact it cannot reach.
fn default_contact(config: &Config) -> String {
    if let Some(address) = config.notify.mail_from.as_deref().and_then(mail_address) {
        return format!("mailto:{address}");
    }
    let public = config.public_url();
    if public.starts_with("https://") {
        return public;
    }
    let host = url::Url::parse(&public)
        .ok()
        .and_then(|url| url.host_str().map(str::to_string))
        .unwrap_or_else(|| "localhost".into());
    tracing::warn!("set RENKEI_PUSH_CONTACT (or RENKEI_MAIL_FROM): push services are told mailto:postmaster@{host}");
    format!("mailto:postmaster@{host}")
}

/// A P-256 private key from PEM (SEC 1 or PKCS #8) or a base64url 32-byte scalar.
fn parse_private_key(text: &str) -> Result<p256::SecretKey, String> {
    use p256::pkcs8::DecodePrivateKey as _;
    let text = text.trim();
    if text.starts_with("-----BEGIN EC PRIVATE KEY") {
        return p256::SecretKey::from_sec1_pem(text).map_err(|_| "not a P-256 EC key".into());
    }
    if text.starts_with("-----BEGIN PRIVATE KEY") {
        return p256::SecretKey::from_pkcs8_pem(text).map_err(|_| "not a P-256 key".into());
    }
    let bytes = decode_base64url(text).ok_or("neither PEM nor base64url")?;
    p256::SecretKey::from_slice(&bytes).map_err(|_| "not a 32-byte P-256 scalar".into())
}

/// The address of a `Name <address>` or bare sender, as lettre parses a mailbox.
fn mail_address(from: &str) -> Option<String> {
    from.parse::<lettre::message::Mailbox>()
        .ok()
        .map(|mailbox| mailbox.email.to_string())
}

/// Base64url with or without padding (browsers send it without).
fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

/// Why a subscription is refused: the client is told exactly which.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscriptionError {
    #[error("the endpoint is not a URL")]
    NotUrl,
    #[error("the endpoint must use https")]
    NotHttps,
    #[error("the push service {0} is not one this server sends to (RENKEI_PUSH_HOSTS)")]
    HostNotAllowed(String),
    #[error("p256dh must be a base64url P-256 public key (65 bytes, uncompressed)")]
    BadKey,
    #[error("auth must be a base64url 16-byte secret")]
    BadAuth,
}

impl From<SubscriptionError> for HttpError {
    fn from(err: SubscriptionError) -> Self {
        let code = match err {
            SubscriptionError::NotHttps | SubscriptionError::HostNotAllowed(_) => {
                ErrorCode::PushHostNotAllowed
            }
            _ => ErrorCode::InvalidPushSubscription,
        };
        HttpError::new(StatusCode::BAD_REQUEST, code, err.to_string())
    }
}

/// A subscription that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedSubscription {
    pub endpoint: url::Url,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
}

/// Checks a subscription: an `https` URL on an allowed push service, with no user info,
/// and keys that are what RFC 8291 says. The allowlist keeps the server from being made to
/// post to an arbitrary address (SSRF).
pub fn check_subscription(
    request: &PushSubscriptionRequest,
    hosts: &[String],
) -> Result<CheckedSubscription, SubscriptionError> {
    if request.endpoint.len() > 2048 {
        return Err(SubscriptionError::NotUrl);
    }
    let endpoint = url::Url::parse(&request.endpoint).map_err(|_| SubscriptionError::NotUrl)?;
    if endpoint.scheme() != "https" {
        return Err(SubscriptionError::NotHttps);
    }
    let host = endpoint
        .host_str()
        .ok_or(SubscriptionError::NotUrl)?
        .to_ascii_lowercase();
    if !endpoint.username().is_empty() || endpoint.password().is_some() {
        return Err(SubscriptionError::NotUrl);
    }
    if !host_allowed(&host, hosts) {
        return Err(SubscriptionError::HostNotAllowed(host));
    }
    let p256dh = decode_base64url(&request.p256dh)
        .filter(|key| key.len() == 65 && p256::PublicKey::from_sec1_bytes(key).is_ok())
        .ok_or(SubscriptionError::BadKey)?;
    let auth = decode_base64url(&request.auth)
        .filter(|auth| auth.len() == 16)
        .ok_or(SubscriptionError::BadAuth)?;
    Ok(CheckedSubscription {
        endpoint,
        p256dh,
        auth,
    })
}

/// Whether `host` is on the allowlist: equal to an entry, or under a `*.domain` entry.
fn host_allowed(host: &str, hosts: &[String]) -> bool {
    hosts.iter().any(|allowed| {
        let allowed = allowed.to_ascii_lowercase();
        match allowed.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host == allowed,
        }
    })
}

/// `GET /api/v1/push/key`.
pub async fn key(State(app): State<Arc<App>>, _caller: crate::session::Caller) -> Json<PushKey> {
    Json(PushKey {
        public_key: app.notices.vapid.public_key().to_string(),
    })
}

/// `POST /api/v1/push/subscriptions`: tied to the calling session.
pub async fn subscribe(
    State(app): State<Arc<App>>,
    AnySession(session): AnySession,
    body: Result<Json<PushSubscriptionRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<PushSubscriptionCreated>), HttpError> {
    if let Some(refusal) = session.unfinished() {
        return Err(refusal);
    }
    let Json(request) = body?;
    let checked = check_subscription(&request, &app.config.notify.push_hosts)?;
    let id = app
        .store
        .create_push_subscription(
            session.user.id,
            &session.token_hash,
            checked.endpoint.as_str(),
            &checked.p256dh,
            &checked.auth,
            app.config.clock.now(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(PushSubscriptionCreated { id })))
}

/// `DELETE /api/v1/push/subscriptions/{id}`: only one's own.
pub async fn unsubscribe(
    State(app): State<Arc<App>>,
    caller: crate::session::Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, HttpError> {
    if app
        .store
        .delete_push_subscription(caller.user.id, id)
        .await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(HttpError::not_found("push subscription"))
    }
}

/// Sends pushes: the HTTP client and the key it signs with.
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    /// An HTTPS-only client on rustls that follows no redirect (a push service's answer
    /// must not lead the server elsewhere) and trusts the web's roots plus, if given,
    /// `RENKEI_PUSH_CA_FILE`.
    pub fn new(config: &NotifyConfig) -> Result<Sender, PushError> {
        let timeout = Duration::from_secs(u64::from(config.push_timeout_seconds));
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("renkei/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.push_ca_file {
            let pem = std::fs::read(path).map_err(|err| PushError::CaFile(err.to_string()))?;
            let certificate = reqwest::Certificate::from_pem(&pem)
                .map_err(|err| PushError::CaFile(err.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|err| PushError::Client(err.to_string()))?;
        Ok(Sender { client })
    }
}

/// Sends every due delivery, then waits for a wake-up or the next tick; until shutdown.
pub fn spawn_sender(app: Arc<App>) {
    tokio::spawn(async move {
        let tick = Duration::from_millis(u64::from(app.config.notify.tick_ms));
        // How long a node holds claimed deliveries before another may take them (a node
        // killed mid-send): well past the request timeout.
        let lease = i64::from(app.config.notify.push_timeout_seconds) * 3_000;
        loop {
            loop {
                let now = app.config.clock.now();
                let claimed = app
                    .store
                    .claim_pushes(
                        now,
                        crate::session::idle_since(&app.config, now),
                        now + lease,
                        CLAIM_BATCH,
                    )
                    .await;
                match claimed {
                    Ok(claimed) if claimed.is_empty() => break,
                    Ok(claimed) => {
                        let done: Vec<(ClaimedPush, PushOutcome)> = futures::stream::iter(claimed)
                            .map(|push| {
                                let app = Arc::clone(&app);
                                async move {
                                    let outcome = deliver(&app, &push).await;
                                    (push, outcome)
                                }
                            })
                            .buffer_unordered(CONCURRENT_SENDS)
                            .collect()
                            .await;
                        let now = app.config.clock.now();
                        if let Err(err) = app.store.finish_pushes(&done, now).await {
                            // The leases run out and another try sends them again: the
                            // same notice id and Topic replace the earlier one on the device.
                            tracing::warn!(error = %err, pushes = done.len(), "cannot record pushes' outcomes");
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot claim pushes");
                        break;
                    }
                }
            }
            tokio::select! {
                () = app.shutdown.cancelled() => return,
                () = app.notices.wake_sender.notified() => {}
                () = tokio::time::sleep(tick) => {}
            }
        }
    });
}

/// Sends one delivery; how it ended.
async fn deliver(app: &App, push: &ClaimedPush) -> PushOutcome {
    let outcome = if push.session_live {
        send(app, push).await
    } else {
        PushOutcome::Gone
    };
    let label = match &outcome {
        PushOutcome::Sent => "sent",
        PushOutcome::Retry { .. } => "retry",
        PushOutcome::GaveUp { .. } => "gave_up",
        PushOutcome::Gone => "gone",
    };
    app.metrics.count_push(label);
    if let PushOutcome::GaveUp { detail } = &outcome {
        tracing::warn!(delivery = push.id, detail = %detail, "push given up");
    }
    outcome
}

/// What the push service said, as an outcome.
async fn send(app: &App, push: &ClaimedPush) -> PushOutcome {
    let now = app.config.clock.now();
    let request = match build(app, push, now) {
        Ok(request) => request,
        Err(detail) => return PushOutcome::GaveUp { detail },
    };
    let retry = |wait: Option<Duration>, detail: String| {
        if push.attempts >= MAX_ATTEMPTS {
            PushOutcome::GaveUp { detail }
        } else {
            let backoff = backoff(push.attempts);
            let wait = wait.map_or(backoff, |w| w.max(backoff));
            PushOutcome::Retry {
                at: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
                detail,
            }
        }
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            match status.as_u16() {
                200..=299 => PushOutcome::Sent,
                404 | 410 => PushOutcome::Gone,
                429 | 500..=599 => retry(
                    retry_after(response.headers(), now),
                    format!("status {}", status.as_u16()),
                ),
                other => PushOutcome::GaveUp {
                    detail: format!("status {other}"),
                },
            }
        }
        Err(err) if err.is_timeout() => retry(None, "timeout".into()),
        Err(err) if err.is_connect() => retry(None, "connect".into()),
        Err(_) => retry(None, "request failed".into()),
    }
}

/// The encrypted request for one delivery; why not, when its subscription is unusable.
fn build(app: &App, push: &ClaimedPush, now: Millis) -> Result<reqwest::RequestBuilder, String> {
    let endpoint = url::Url::parse(&push.endpoint).map_err(|_| "stored endpoint".to_string())?;
    let key = p256::PublicKey::from_sec1_bytes(&push.p256dh).map_err(|_| "p256dh".to_string())?;
    if push.auth.len() != 16 {
        return Err("auth".into());
    }
    let auth = web_push_native::Auth::clone_from_slice(&push.auth);
    let payload = serde_json::to_vec(&PushPayload {
        kind: push.kind,
        group: push.group,
        id: push.notice,
    })
    .map_err(|_| "payload".to_string())?;
    let body = web_push_native::encrypt(payload, &key, &auth).map_err(|_| "encrypt".to_string())?;
    Ok(app
        .notices
        .sender
        .client
        .post(endpoint.clone())
        .header("TTL", TTL_SECONDS)
        .header("Urgency", urgency(push.kind))
        .header("Topic", topic(push))
        .header("Content-Encoding", "aes128gcm")
        .header("Content-Type", "application/octet-stream")
        .header(
            "Authorization",
            app.notices.vapid.authorization(&endpoint, now),
        )
        .body(body))
}

/// Mentions, invitations and account notices are worth waking a phone for.
fn urgency(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Mention | NoticeKind::Invitation | NoticeKind::Account => "high",
        NoticeKind::Post | NoticeKind::Test | NoticeKind::FacilityApplied => "normal",
    }
}

/// A newer push of the same topic replaces an older one still waiting on the push
/// service: one per group, or per kind (RFC 8030 §5.4: at most 32 base64url characters).
fn topic(push: &ClaimedPush) -> String {
    match (push.kind, push.group) {
        (NoticeKind::Post | NoticeKind::Mention, Some(group)) => format!("group-{group}"),
        (kind, _) => crate::store::notice_kind_name(kind).replace('_', "-"),
    }
}

/// 5 s, 10 s, 20 s … up to 10 minutes.
fn backoff(attempts: i32) -> Duration {
    renkei_domain::clock::backoff(attempts, Duration::from_secs(5), Duration::from_secs(600))
}

/// `Retry-After` as seconds or an HTTP date, capped at an hour.
fn retry_after(headers: &reqwest::header::HeaderMap, now: Millis) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let wait = match value.trim().parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at = httpdate::parse_http_date(value).ok()?;
            let at = at.duration_since(std::time::UNIX_EPOCH).ok()?;
            let now = Duration::from_millis(u64::try_from(now).unwrap_or(0));
            at.saturating_sub(now)
        }
    };
    Some(wait.min(Duration::from_secs(3600)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(endpoint: &str) -> PushSubscriptionRequest {
        let key = p256::SecretKey::random(&mut rand::rngs::OsRng).public_key();
        PushSubscriptionRequest {
            endpoint: endpoint.into(),
            p256dh: URL_SAFE_NO_PAD.encode(key.to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode([7u8; 16]),
        }
    }

    fn hosts() -> Vec<String> {
        vec!["fcm.googleapis.com".into(), "*.notify.windows.com".into()]
    }

    #[test]
    fn only_https_endpoints_of_allowed_push_services_pass() {
        assert!(check_subscription(
            &request("https://fcm.googleapis.com/fcm/send/abc"),
            &hosts()
        )
        .is_ok());
        assert!(check_subscription(
            &request("https://wns2-par02p.notify.windows.com/w/?token=x"),
            &hosts()
        )
        .is_ok());
        assert_eq!(
            check_subscription(&request("http://fcm.googleapis.com/fcm/send/abc"), &hosts()),
            Err(SubscriptionError::NotHttps)
        );
        for refused in [
            "https://169.254.169.254/latest/meta-data",
            "https://127.0.0.1:5432/",
            "https://fcm.googleapis.com.evil.example/x",
            "https://evilfcm.googleapis.com/x",
            "https://notify.windows.com/x",
        ] {
            assert!(
                matches!(
                    check_subscription(&request(refused), &hosts()),
                    Err(SubscriptionError::HostNotAllowed(_))
                ),
                "{refused}"
            );
        }
        assert_eq!(
            check_subscription(&request("https://user:pw@fcm.googleapis.com/x"), &hosts()),
            Err(SubscriptionError::NotUrl)
        );
        assert_eq!(
            check_subscription(&request("not a url"), &hosts()),
            Err(SubscriptionError::NotUrl)
        );
    }

    #[test]
    fn malformed_keys_are_refused() {
        let mut bad = request("https://fcm.googleapis.com/x");
        bad.p256dh = URL_SAFE_NO_PAD.encode([4u8; 65]);
        assert_eq!(
            check_subscription(&bad, &hosts()),
            Err(SubscriptionError::BadKey)
        );
        let mut bad = request("https://fcm.googleapis.com/x");
        bad.auth = "short".into();
        assert_eq!(
            check_subscription(&bad, &hosts()),
            Err(SubscriptionError::BadAuth)
        );
    }

    #[test]
    fn the_vapid_jwt_verifies_with_the_public_key_and_names_the_origin() {
        use p256::ecdsa::signature::Verifier as _;
        let key = VapidKey::new(
            p256::SecretKey::random(&mut rand::rngs::OsRng),
            "mailto:renkei@example.jp".into(),
        );
        let endpoint = url::Url::parse("https://fcm.googleapis.com:443/fcm/send/x").unwrap();
        let header = key.authorization(&endpoint, 1_700_000_000_000);
        let (token, k) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .expect("vapid t=…, k=…");
        assert_eq!(k, key.public_key());
        let (signed, signature) = token.rsplit_once('.').expect("three parts");
        let public = p256::PublicKey::from_sec1_bytes(&decode_base64url(k).unwrap()).unwrap();
        let signature =
            p256::ecdsa::Signature::from_slice(&decode_base64url(signature).unwrap()).unwrap();
        p256::ecdsa::VerifyingKey::from(public)
            .verify(signed.as_bytes(), &signature)
            .expect("the signature verifies");
        let claims: serde_json::Value =
            serde_json::from_slice(&decode_base64url(signed.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims["aud"], "https://fcm.googleapis.com");
        assert_eq!(claims["sub"], "mailto:renkei@example.jp");
        assert_eq!(claims["exp"], 1_700_000_000 + 12 * 3600);
    }

    #[test]
    fn keys_are_read_from_pem_or_base64url() {
        use p256::pkcs8::EncodePrivateKey as _;
        let secret = p256::SecretKey::random(&mut rand::rngs::OsRng);
        let pem = secret.to_pkcs8_pem(Default::default()).unwrap();
        assert_eq!(parse_private_key(&pem).unwrap(), secret);
        let raw = URL_SAFE_NO_PAD.encode(secret.to_bytes());
        assert_eq!(parse_private_key(&raw).unwrap(), secret);
        assert!(parse_private_key("nonsense").is_err());
    }

    #[test]
    fn retries_back_off_and_honour_retry_after() {
        assert_eq!(backoff(1), Duration::from_secs(5));
        assert_eq!(backoff(3), Duration::from_secs(20));
        assert_eq!(backoff(20), Duration::from_secs(600));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::RETRY_AFTER, "120".parse().unwrap());
        assert_eq!(retry_after(&headers, 0), Some(Duration::from_secs(120)));
        headers.insert(
            reqwest::header::RETRY_AFTER,
            "Thu, 01 Jan 1970 00:01:40 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers, 40_000), Some(Duration::from_secs(60)));
    }

    #[test]
    fn mail_addresses_are_found_in_a_from_line() {
        assert_eq!(
            mail_address("Renkei <renkei@city.example.jp>").as_deref(),
            Some("renkei@city.example.jp")
        );
        assert_eq!(
            mail_address("renkei@city.example.jp").as_deref(),
            Some("renkei@city.example.jp")
        );
        assert_eq!(mail_address("Renkei"), None);
    }
}

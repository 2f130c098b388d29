//! A Web Push service of one's own (RFC 8030, with RFC 8291 encryption and RFC 8292 VAPID):
//! an HTTPS server on a free loopback port with a self-signed certificate, that makes
//! subscriptions as a browser would and keeps their private keys, so it can decrypt what it
//! is sent, check the sender's signature, and answer as a test tells it to.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::rand_core::RngCore as _;
use aes_gcm::aead::{Aead as _, KeyInit as _, OsRng};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{header, Method, Request, Response, StatusCode};
use p256::ecdsa::signature::Verifier as _;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::rustls;

use crate::TestbedError;

/// The largest body accepted: RFC 8030 §7.2 lets a push service refuse bodies past 4096
/// bytes (413), and the big ones do; a server that sends more would fail in production.
const MAX_BODY: usize = 4096;
/// The furthest ahead a VAPID `exp` may be (RFC 8292 §2).
const MAX_EXP_AHEAD: u64 = 24 * 60 * 60;
/// Connections accepted in one service's life; past them it stops listening (connections
/// are then refused), so nothing that connects in a loop keeps it busy forever.
const MAX_CONNECTIONS: usize = 65_536;
/// Connections open at once; more are closed at once.
const MAX_OPEN: usize = 1_024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct OwnPush {
    port: u16,
    /// The self-signed certificate, for the server under test to trust.
    certificate_pem: String,
    shared: Arc<Shared>,
    /// Accepts connections; aborting it (on drop) also ends every open connection.
    server: JoinHandle<()>,
}

/// A subscription as a browser hands it to an application (`PushSubscription.toJSON()`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushSubscription {
    pub id: u64,
    /// `https://127.0.0.1:<port>/push/<id>`.
    pub endpoint: String,
    /// The subscription's public key: base64url without padding, an uncompressed P-256
    /// point (65 bytes).
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url without padding.
    pub auth: String,
}

impl PushSubscription {
    /// What a browser's `JSON.stringify(subscription)` gives, for posting to the server.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "endpoint": self.endpoint,
            "expirationTime": null,
            "keys": { "p256dh": self.p256dh, "auth": self.auth },
        })
    }
}

/// How the service answers valid requests for one subscription, from when it is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 201 Created: the message is queued for the browser.
    Accept,
    /// The subscription expired or was withdrawn: 404 or 410 (the code given).
    Gone(u16),
    /// 429 Too Many Requests with `Retry-After: <retry_after_seconds>` for the next `times`
    /// requests, then `Accept`.
    TooMany {
        retry_after_seconds: u32,
        times: u32,
    },
    /// This status (e.g. 500 or 503) every time.
    Fail(u16),
    /// Reads the request and never answers, until the service is dropped.
    Hang,
}

/// A request the service received, and how it judged it.
#[derive(Clone, Debug)]
pub struct Received {
    /// The subscription addressed; `None` when the path names none of this service's.
    pub subscription: Option<u64>,
    pub method: String,
    pub path: String,
    pub at: Instant,
    /// What the service answered; 0 when it never answers (`Behaviour::Hang`).
    pub status: u16,
    /// Why the request was refused (every reason found, joined by "; "), `None` when it
    /// was valid. The status is the first reason's: 405 (method), 404 (no such
    /// subscription), 413 (body), 400 (headers), 401 or 403 (VAPID), 400 (payload).
    pub refused: Option<String>,
    /// `TTL`, when it is a number of seconds.
    pub ttl: Option<u32>,
    pub urgency: Option<String>,
    pub topic: Option<String>,
    pub content_encoding: Option<String>,
    /// The sender's identity, only when its JWT's signature and claims verified.
    pub vapid: Result<VapidClaims, String>,
    /// The plaintext, decrypted with the subscription's keys (RFC 8291), or why it could not
    /// be. A request without a body has an empty payload.
    pub payload: Result<Vec<u8>, String>,
}

/// What a valid VAPID `Authorization` header said (RFC 8292).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VapidClaims {
    /// `k`: the application server's public key, base64url (uncompressed P-256 point).
    pub public_key: String,
    pub aud: String,
    /// Seconds since the Unix epoch.
    pub exp: u64,
    pub sub: String,
}

struct Shared {
    /// `https://127.0.0.1:<port>`: what `aud` must be, and the endpoints' prefix.
    origin: String,
    state: Mutex<State>,
    /// Woken at every request recorded, for `wait_for`.
    arrived: Notify,
}

#[derive(Default)]
struct State {
    subscriptions: HashMap<u64, Subscription>,
    received: Vec<Received>,
    /// The last subscription's id.
    subscribed: u64,
    /// The last accepted message's number, for its `Location`.
    accepted: u64,
}

struct Subscription {
    /// The browser's half of the key agreement: decrypts what is sent to the subscription.
    secret: p256::SecretKey,
    auth: [u8; 16],
    /// The VAPID key the subscription was made for (`applicationServerKey`): requests
    /// signed with another are refused, as real push services do.
    server_key: Option<Vec<u8>>,
    behaviour: Behaviour,
}

impl OwnPush {
    /// Starts the service on 127.0.0.1 and a free port, with a new certificate.
    pub async fn start() -> Result<OwnPush, TestbedError> {
        let tls = |what: &str, e: &dyn std::fmt::Display| TestbedError::Tls(format!("{what}: {e}"));
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".into()])
                .map_err(|e| tls("the certificate", &e))?;
        let key = rustls::pki_types::PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der());
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| tls("the TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key.into())
        .map_err(|e| tls("the certificate", &e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| TestbedError::Io("binding the push service", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| TestbedError::Io("the push service's port", e))?
            .port();
        let shared = Arc::new(Shared {
            origin: format!("https://127.0.0.1:{port}"),
            state: Mutex::default(),
            arrived: Notify::new(),
        });
        let server = tokio::spawn(serve(listener, acceptor, Arc::clone(&shared)));
        Ok(OwnPush {
            port,
            certificate_pem: certified.cert.pem(),
            shared,
            server,
        })
    }

    /// The certificate (PEM) the server under test must trust.
    pub fn certificate_pem(&self) -> String {
        self.certificate_pem.clone()
    }

    /// The push host, for the server's allowlist.
    pub fn host(&self) -> String {
        "127.0.0.1".to_string()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:<port>`: the endpoints' origin, which a VAPID `aud` must be.
    pub fn origin(&self) -> String {
        self.shared.origin.clone()
    }

    /// A new subscription as a browser makes it: a fresh P-256 key pair and auth secret,
    /// kept here to decrypt what is sent to it. Any VAPID key is accepted for it.
    pub fn subscribe(&self) -> PushSubscription {
        self.add(None)
    }

    /// A subscription made with `applicationServerKey` (base64url, the uncompressed public
    /// key): requests signed with another VAPID key are refused with 403.
    pub fn subscribe_for(
        &self,
        application_server_key: &str,
    ) -> Result<PushSubscription, TestbedError> {
        let key = URL_SAFE_NO_PAD
            .decode(application_server_key)
            .ok()
            .filter(|key| key.len() == 65 && p256::PublicKey::from_sec1_bytes(key).is_ok())
            .ok_or_else(|| {
                TestbedError::Invalid(format!(
                    "{application_server_key:?} is not a base64url uncompressed P-256 public key"
                ))
            })?;
        Ok(self.add(Some(key)))
    }

    fn add(&self, server_key: Option<Vec<u8>>) -> PushSubscription {
        // OsRng panics only when the OS has no random source: nothing a request can cause.
        let secret = p256::SecretKey::random(&mut OsRng);
        let mut auth = [0u8; 16];
        OsRng.fill_bytes(&mut auth);
        let p256dh = URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false));
        let mut state = self.shared.lock();
        state.subscribed += 1;
        let id = state.subscribed;
        state.subscriptions.insert(
            id,
            Subscription {
                secret,
                auth,
                server_key,
                behaviour: Behaviour::Accept,
            },
        );
        PushSubscription {
            id,
            endpoint: format!("{}/push/{id}", self.shared.origin),
            p256dh,
            auth: URL_SAFE_NO_PAD.encode(auth),
        }
    }

    /// How the subscription's endpoint answers valid requests from now on.
    pub fn set_behaviour(
        &self,
        subscription: u64,
        behaviour: Behaviour,
    ) -> Result<(), TestbedError> {
        let mut state = self.shared.lock();
        let known = state
            .subscriptions
            .get_mut(&subscription)
            .ok_or_else(|| TestbedError::Invalid(format!("no subscription {subscription}")))?;
        known.behaviour = behaviour;
        Ok(())
    }

    /// Every request received so far, in order of arrival.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Waits until at least `n` requests were received, or `timeout` passed; returns
    /// them all either way.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Bounded by the deadline; each turn but the last is a request's arrival.
        loop {
            let mut arrived = std::pin::pin!(self.shared.arrived.notified());
            // Registered before looking, so an arrival in between still wakes it.
            arrived.as_mut().enable();
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return self.received();
            }
        }
    }
}

impl Drop for OwnPush {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while it was held leaves plain data: still good to read.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    // Dropped when this task is aborted, which aborts every connection's task.
    let mut connections = JoinSet::new();
    for _ in 0..MAX_CONNECTIONS {
        let accepted = listener.accept().await;
        while connections.try_join_next().is_some() {}
        let Ok((tcp, _)) = accepted else { continue };
        if connections.len() >= MAX_OPEN {
            continue;
        }
        let acceptor = acceptor.clone();
        let shared = Arc::clone(&shared);
        connections.spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            else {
                return;
            };
            let service =
                hyper::service::service_fn(move |request| handle(Arc::clone(&shared), request));
            // A connection's error (the client went away) concerns no one here.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                .await;
        });
    }
}

/// The checks of one request, in the order of their answers' precedence.
struct Refusals(Vec<(StatusCode, String)>);

impl Refusals {
    fn add(&mut self, status: StatusCode, reason: impl Into<String>) {
        self.0.push((status, reason.into()));
    }
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let (parts, body) = request.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("the body is unreadable or over {MAX_BODY} bytes: {e}"));
    let text = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let path = parts.uri.path().to_string();
    let mut refusals = Refusals(Vec::new());

    if parts.method != Method::POST {
        refusals.add(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} (a push message is a POST)", parts.method),
        );
    }
    let id: Option<u64> = path.strip_prefix("/push/").and_then(|id| id.parse().ok());
    let keys = id.and_then(|id| {
        let state = shared.lock();
        let known = state.subscriptions.get(&id)?;
        Some((known.secret.clone(), known.auth, known.server_key.clone()))
    });
    let subscription = keys.as_ref().and(id);
    if keys.is_none() {
        refusals.add(StatusCode::NOT_FOUND, format!("no subscription at {path}"));
    }
    if let Err(reason) = &body {
        refusals.add(StatusCode::PAYLOAD_TOO_LARGE, reason.clone());
    }

    let ttl_header = text("ttl");
    let ttl = ttl_header
        .as_deref()
        .and_then(|ttl| ttl.trim().parse::<u32>().ok());
    match (&ttl_header, ttl) {
        (None, _) => refusals.add(StatusCode::BAD_REQUEST, "no TTL header (RFC 8030 §5.2)"),
        (Some(given), None) => refusals.add(
            StatusCode::BAD_REQUEST,
            format!("TTL {given:?} is not a number of seconds"),
        ),
        _ => {}
    }
    let urgency = text("urgency");
    if let Some(urgency) = &urgency {
        if !["very-low", "low", "normal", "high"].contains(&urgency.as_str()) {
            refusals.add(
                StatusCode::BAD_REQUEST,
                format!("Urgency {urgency:?} is none of very-low, low, normal, high"),
            );
        }
    }
    let topic = text("topic");
    if let Some(topic) = &topic {
        let base64url = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if topic.is_empty() || topic.chars().count() > 32 || !topic.chars().all(base64url) {
            refusals.add(
                StatusCode::BAD_REQUEST,
                format!("Topic {topic:?} is not 1 to 32 base64url characters (RFC 8030 §5.4)"),
            );
        }
    }
    let content_encoding = text("content-encoding");
    let aes128gcm = content_encoding
        .as_deref()
        .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("aes128gcm"));
    if body.as_ref().is_ok_and(|body| !body.is_empty()) && !aes128gcm {
        refusals.add(
            StatusCode::BAD_REQUEST,
            format!("Content-Encoding {content_encoding:?} with a body: it must be aes128gcm"),
        );
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let mut vapid = verify_vapid(text("authorization").as_deref(), &shared.origin, now);
    if let (Ok(claims), Some((_, _, Some(server_key)))) = (&vapid, &keys) {
        if URL_SAFE_NO_PAD.encode(server_key) != claims.public_key {
            vapid = Err((
                StatusCode::FORBIDDEN,
                format!(
                    "k={} is not the key the subscription was made for ({})",
                    claims.public_key,
                    URL_SAFE_NO_PAD.encode(server_key)
                ),
            ));
        }
    }
    if let Err((status, reason)) = &vapid {
        refusals.add(*status, format!("VAPID: {reason}"));
    }
    let vapid = vapid.map_err(|(_, reason)| reason);

    let payload = match (&keys, &body) {
        (_, Err(reason)) => Err(reason.clone()),
        (None, Ok(_)) => Err("no subscription, so no keys".to_string()),
        (Some(_), Ok(body)) if body.is_empty() => Ok(Vec::new()),
        (Some((secret, auth, _)), Ok(body)) => {
            let payload = decrypt(body, secret, auth);
            if let Err(reason) = &payload {
                refusals.add(StatusCode::BAD_REQUEST, format!("payload: {reason}"));
            }
            payload
        }
    };

    let answer = {
        let mut state = shared.lock();
        let answer = match (refusals.0.first(), subscription) {
            (Some((status, _)), _) => Answer::Reply(*status, None),
            (None, Some(id)) => behave(&mut state, id, &shared.origin),
            // Cannot be: an unknown subscription is among the refusals.
            (None, None) => Answer::Reply(StatusCode::NOT_FOUND, None),
        };
        let refused = (!refusals.0.is_empty()).then(|| {
            let reasons: Vec<&str> = refusals.0.iter().map(|(_, r)| r.as_str()).collect();
            reasons.join("; ")
        });
        state.received.push(Received {
            subscription,
            method: parts.method.to_string(),
            path,
            at,
            status: match &answer {
                Answer::Reply(status, _) => status.as_u16(),
                Answer::Hang => 0,
            },
            refused,
            ttl,
            urgency,
            topic,
            content_encoding,
            vapid,
            payload,
        });
        answer
    };
    shared.arrived.notify_waiters();
    let Answer::Reply(status, header) = answer else {
        return std::future::pending().await;
    };
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if let Some((name, value)) = header {
        response = response.header(name, value);
    }
    if status == StatusCode::UNAUTHORIZED {
        response = response.header(header::WWW_AUTHENTICATE, "vapid");
    }
    let reason = refusals.0.first().map_or(String::new(), |(_, r)| r.clone());
    Ok(response
        .body(Full::new(Bytes::from(reason)))
        .unwrap_or_else(|_| {
            // Only a header value could be invalid, and every one above is ASCII made here.
            let mut fallback = Response::new(Full::new(Bytes::new()));
            *fallback.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        }))
}

/// How the service answers a request.
enum Answer {
    /// This status, with this header when there is one.
    Reply(StatusCode, Option<(header::HeaderName, String)>),
    Hang,
}

/// The answer to a valid request for subscription `id`, by its behaviour (counting a
/// `TooMany` down).
fn behave(state: &mut State, id: u64, origin: &str) -> Answer {
    let Some(known) = state.subscriptions.get_mut(&id) else {
        return Answer::Reply(StatusCode::NOT_FOUND, None);
    };
    let behaviour = known.behaviour.clone();
    if let Behaviour::TooMany {
        retry_after_seconds,
        times,
    } = behaviour
    {
        known.behaviour = match times {
            0 | 1 => Behaviour::Accept,
            more => Behaviour::TooMany {
                retry_after_seconds,
                times: more - 1,
            },
        };
    }
    let status = |code| StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match behaviour {
        Behaviour::TooMany { times: 0, .. } | Behaviour::Accept => {
            state.accepted += 1;
            let location = format!("{origin}/message/{}", state.accepted);
            Answer::Reply(StatusCode::CREATED, Some((header::LOCATION, location)))
        }
        Behaviour::Gone(code) | Behaviour::Fail(code) => Answer::Reply(status(code), None),
        Behaviour::TooMany {
            retry_after_seconds,
            ..
        } => Answer::Reply(
            StatusCode::TOO_MANY_REQUESTS,
            Some((header::RETRY_AFTER, retry_after_seconds.to_string())),
        ),
        Behaviour::Hang => Answer::Hang,
    }
}

/// Checks an `Authorization: vapid t=<JWT>, k=<key>` header (RFC 8292 §3): an ES256 JWT
/// signed by `k` whose `aud` is `origin`, whose `exp` is after `now` and at most 24 hours
/// ahead, with a `mailto:` or `https:` `sub`. 401 when there is no VAPID at all, 403 when
/// there is and it is wrong.
fn verify_vapid(
    authorization: Option<&str>,
    origin: &str,
    now: u64,
) -> Result<VapidClaims, (StatusCode, String)> {
    let forbidden = |reason: String| (StatusCode::FORBIDDEN, reason);
    let authorization = authorization
        .ok_or_else(|| {
            (
                StatusCode::UNAUTHORIZED,
                "no Authorization header".to_string(),
            )
        })?
        .trim();
    let (scheme, params) = authorization
        .split_once(char::is_whitespace)
        .unwrap_or((authorization, ""));
    if !scheme.eq_ignore_ascii_case("vapid") {
        return Err((
            StatusCode::UNAUTHORIZED,
            format!("Authorization scheme {scheme:?}, not vapid"),
        ));
    }
    let (mut token, mut key) = (None, None);
    for param in params.split(',') {
        let Some((name, value)) = param.split_once('=') else {
            return Err(forbidden(format!("{param:?} is not name=value")));
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let slot = match name.trim().to_ascii_lowercase().as_str() {
            "t" => &mut token,
            "k" => &mut key,
            _ => continue,
        };
        if slot.replace(value).is_some() {
            return Err(forbidden(format!("{} given twice", name.trim())));
        }
    }
    let token = token.ok_or_else(|| forbidden("no t= (the JWT)".into()))?;
    let key_text = key.ok_or_else(|| forbidden("no k= (the public key)".into()))?;
    let key = URL_SAFE_NO_PAD
        .decode(key_text)
        .map_err(|e| forbidden(format!("k is not base64url without padding: {e}")))?;
    if key.len() != 65 {
        return Err(forbidden(format!(
            "k has {} bytes, not the 65 of an uncompressed P-256 point",
            key.len()
        )));
    }
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&key)
        .map_err(|_| forbidden("k is not a point on P-256".into()))?;

    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(forbidden(
            "t is not a JWS in compact form (three parts)".into(),
        ));
    };
    let json = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .filter(serde_json::Value::is_object)
            .ok_or_else(|| forbidden(format!("the JWT's {what} is not base64url JSON object")))
    };
    let header_json = json(header, "header")?;
    if header_json["alg"] != "ES256" {
        return Err(forbidden(format!(
            "the JWT's alg is {}, not ES256",
            header_json["alg"]
        )));
    }
    if let Some(typ) = header_json.get("typ") {
        if !typ.as_str().is_some_and(|t| t.eq_ignore_ascii_case("JWT")) {
            return Err(forbidden(format!("the JWT's typ is {typ}, not JWT")));
        }
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .ok()
        .and_then(|raw| p256::ecdsa::Signature::from_slice(&raw).ok())
        .ok_or_else(|| {
            forbidden("the JWT's signature is not a base64url r||s (64 bytes)".into())
        })?;
    key.verify(format!("{header}.{claims}").as_bytes(), &signature)
        .map_err(|_| forbidden("the JWT's ES256 signature does not verify with k".into()))?;

    let claims = json(claims, "claims")?;
    let aud = claims["aud"]
        .as_str()
        .ok_or_else(|| forbidden(format!("aud is {}, not a string", claims["aud"])))?;
    if aud != origin {
        return Err(forbidden(format!(
            "aud is {aud:?}, not the push resource's origin {origin:?}"
        )));
    }
    let exp = claims["exp"]
        .as_u64()
        .ok_or_else(|| forbidden(format!("exp is {}, not whole seconds", claims["exp"])))?;
    if exp <= now {
        return Err(forbidden(format!("exp {exp} has passed (now {now})")));
    }
    if exp > now + MAX_EXP_AHEAD {
        return Err(forbidden(format!(
            "exp {exp} is more than 24 hours ahead (now {now})"
        )));
    }
    let sub = claims["sub"]
        .as_str()
        .filter(|sub| sub.starts_with("mailto:") || sub.starts_with("https:"))
        .ok_or_else(|| {
            forbidden(format!(
                "sub is {}, not a mailto: or https: URI",
                claims["sub"]
            ))
        })?;
    Ok(VapidClaims {
        public_key: key_text.to_string(),
        aud: aud.to_string(),
        exp,
        sub: sub.to_string(),
    })
}

/// Decrypts a push message body (RFC 8291, one aes128gcm record of RFC 8188) with the
/// subscription's private key and auth secret.
fn decrypt(body: &[u8], secret: &p256::SecretKey, auth: &[u8; 16]) -> Result<Vec<u8>, String> {
    let short = || format!("{} bytes: shorter than the aes128gcm header", body.len());
    let (salt, rest) = body.split_first_chunk::<16>().ok_or_else(short)?;
    let (rs, rest) = rest.split_first_chunk::<4>().ok_or_else(short)?;
    let (&idlen, rest) = rest.split_first().ok_or_else(short)?;
    if idlen != 65 {
        return Err(format!(
            "idlen {idlen}: the keyid must be the sender's 65-byte public key (RFC 8291 §4)"
        ));
    }
    let (sender, record) = rest.split_first_chunk::<65>().ok_or_else(short)?;
    let rs = u32::from_be_bytes(*rs);
    if rs < 18 {
        return Err(format!("rs {rs}: under 18 (RFC 8188 §2.1)"));
    }
    if record.len() > rs as usize {
        return Err(format!(
            "a record of {} bytes, over rs {rs}: a push message is one record (RFC 8291 §4)",
            record.len()
        ));
    }
    if record.len() < 17 {
        return Err(format!(
            "a record of {} bytes cannot hold a delimiter and a 16-byte tag",
            record.len()
        ));
    }
    let sender_key = p256::PublicKey::from_sec1_bytes(sender)
        .map_err(|_| "the keyid is not an uncompressed P-256 point".to_string())?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), sender_key.as_affine());

    // RFC 8291 §3.4: IKM from the ECDH secret and the auth secret, keyed to both keys.
    let mut info = b"WebPush: info\0".to_vec();
    info.extend_from_slice(secret.public_key().to_encoded_point(false).as_bytes());
    info.extend_from_slice(sender);
    let mut ikm = [0u8; 32];
    hkdf::Hkdf::<sha2::Sha256>::new(Some(&auth[..]), shared.raw_secret_bytes())
        .expand(&info, &mut ikm)
        .map_err(|e| format!("HKDF: {e}"))?;
    // RFC 8188 §2.2 and §2.3: the content encryption key and nonce from the salt.
    let prk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&salt[..]), &ikm);
    let (mut cek, mut nonce) = ([0u8; 16], [0u8; 12]);
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .and_then(|()| prk.expand(b"Content-Encoding: nonce\0", &mut nonce))
        .map_err(|e| format!("HKDF: {e}"))?;
    // The only record is record 0: its nonce is NONCE xor 0.
    let mut plain = aes_gcm::Aes128Gcm::new(&cek.into())
        .decrypt(&nonce.into(), record)
        .map_err(|_| {
            "AES-GCM authentication failed: not encrypted for this subscription's keys and \
             auth secret, or altered"
                .to_string()
        })?;
    // RFC 8188 §2: the plaintext, a delimiter (2 in the last record), then zero padding.
    let end = plain
        .iter()
        .rposition(|&byte| byte != 0)
        .ok_or("the record is all padding, with no delimiter")?;
    plain.truncate(end + 1);
    match plain.pop() {
        Some(2) => Ok(plain),
        Some(1) => {
            Err("delimiter 1: a record that is not the last, in a one-record message".into())
        }
        other => Err(format!("padding delimiter {other:?}, not 2")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> Vec<u8> {
        URL_SAFE_NO_PAD.decode(text).expect("test vector")
    }

    /// RFC 8291 §5 (and Appendix A): the body the RFC gives decrypts to its plaintext with
    /// its user agent's private key and auth secret.
    #[test]
    fn decrypts_the_rfc_8291_example() {
        let body = b64(concat!(
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27ml",
            "mlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPT",
            "pK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
        ));
        let secret =
            p256::SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"))
                .expect("test vector");
        assert_eq!(
            URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false)),
            "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
        );
        let auth: [u8; 16] = b64("BTBZMqHH6r4Tts7J_aSIgg").try_into().expect("16 bytes");
        assert_eq!(
            decrypt(&body, &secret, &auth).as_deref(),
            Ok(&b"When I grow up, I want to be a watermelon"[..])
        );

        let mut wrong_auth = auth;
        wrong_auth[0] ^= 1;
        assert!(decrypt(&body, &secret, &wrong_auth).is_err());
        let mut altered = body.clone();
        if let Some(last) = altered.last_mut() {
            *last ^= 1;
        }
        assert!(decrypt(&altered, &secret, &auth).is_err());
        assert!(decrypt(&body[..40], &secret, &auth).is_err());
    }

    /// A VAPID header made by another implementation (Node's WebCrypto, ES256 over P-256)
    /// verifies, and its claims are judged against the time and origin given.
    #[test]
    fn verifies_a_vapid_header_made_elsewhere() {
        let header = concat!(
            "vapid t=eyJ0eXAiOiJKV1QiLCJhbGciOiJFUzI1NiJ9.eyJhdWQiOiJodHRwczovLzEyNy4wLjAuMTo4ND",
            "QzIiwiZXhwIjoxOTAwMDAwMDAwLCJzdWIiOiJtYWlsdG86b3BzQHJlbmtlaS5leGFtcGxlIn0.hgTopXdif3",
            "Oz0UueV6YE4T0gnItpvt4MYWCU2K_T45vwhHaNCrggb06K1Kbh3hDWczcVU0Mzq_v5qas0D7Yp3w, k=BJd8",
            "qkAs8x7D0_P1bDGLMvdLSYg8yawJTuNQV5piE7-vlN2fuOm9cmfL40__CfEU0LQcRfZSlA_iSBgj-CsiXzU",
        );
        let origin = "https://127.0.0.1:8443";
        let exp = 1_900_000_000;
        assert_eq!(
            verify_vapid(Some(header), origin, exp - 3600),
            Ok(VapidClaims {
                public_key: "BJd8qkAs8x7D0_P1bDGLMvdLSYg8yawJTuNQV5piE7-vlN2fuOm9cmfL40__CfEU0LQcRfZSlA_iSBgj-CsiXzU".into(),
                aud: origin.into(),
                exp,
                sub: "mailto:ops@renkei.example".into(),
            })
        );
        let refused = |header: &str, origin: &str, now: u64| {
            verify_vapid(Some(header), origin, now)
                .map_err(|(status, reason)| (status.as_u16(), reason))
        };
        let passed = refused(header, origin, exp);
        assert!(
            matches!(&passed, Err((403, why)) if why.contains("passed")),
            "{passed:?}"
        );
        let ahead = refused(header, origin, exp - MAX_EXP_AHEAD - 1);
        assert!(
            matches!(&ahead, Err((403, why)) if why.contains("24 hours")),
            "{ahead:?}"
        );
        let elsewhere = refused(header, "https://127.0.0.1", exp - 3600);
        assert!(
            matches!(&elsewhere, Err((403, why)) if why.contains("aud")),
            "{elsewhere:?}"
        );
        // One bit of the claims changed: the signature no longer covers them.
        let altered = header.replacen(
            "eyJhdWQiOiJodHRwczovLzEyNy4wLjAuMTo4ND",
            "eyJhdWQiOiJodHRwczovLzEyNy4wLjAuMTo5ND",
            1,
        );
        let forged = refused(&altered, "https://127.0.0.1:9443", exp - 3600);
        assert!(
            matches!(&forged, Err((403, why)) if why.contains("signature")),
            "{forged:?}"
        );
        assert!(matches!(
            verify_vapid(None, origin, exp - 3600),
            Err((StatusCode::UNAUTHORIZED, _))
        ));
        let bearer = verify_vapid(Some("Bearer abc"), origin, exp - 3600);
        assert!(matches!(bearer, Err((StatusCode::UNAUTHORIZED, _))));
    }
}

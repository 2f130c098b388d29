//! A node: its state built, its background jobs started, its routes served on the
//! listeners it is given until shutdown, then drained so that nothing acknowledged is lost.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use renkei_protocol::ErrorCode;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::app::App;
use crate::bus::{Bus, RedisBus};
use crate::config::Config;
use crate::connection::Connection;
use crate::http::{ClientIp, HttpError};
use crate::hub::{Hub, HubLimits};
use crate::metrics::Metrics;
use crate::password::{PasswordError, Passwords};
use crate::sequencer::Sequencer;
use crate::session;
use crate::store::{self, Store, StoreError};

/// How long shutdown waits for sockets to finish their in-flight posts and close.
const SOCKET_DRAIN: Duration = Duration::from_secs(20);
/// How long shutdown waits for the sequencer to commit what is queued.
const COMMIT_DRAIN: Duration = Duration::from_secs(20);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("password hasher: {0}")]
    Password(#[from] PasswordError),
    #[error("bus: {0}")]
    Bus(#[from] crate::bus::BusError),
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("notifications: {0}")]
    Notices(#[from] crate::notice::NoticeError),
    #[error("configuration: {0}")]
    Config(String),
    #[error("secret key: {0}")]
    SecretKey(#[from] crate::secret::KeyError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Opens the configured store, creating the data directory for the embedded default.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ServeError> {
    if config.database_url.is_none() {
        tokio::fs::create_dir_all(&config.data_dir).await?;
    }
    Ok(store::open(&config.effective_database_url()).await?)
}

/// Serves on `listener` until `shutdown` is cancelled, then stops accepting, lets every
/// socket finish its in-flight posts, tells clients to reconnect, and commits what is
/// queued before returning: nothing acknowledged is lost. `/metrics` is served on
/// `RENKEI_METRICS_LISTEN`, bound here.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    let metrics = TcpListener::bind(config.metrics_listen)
        .await
        .map_err(|err| {
            ServeError::Config(format!(
                "RENKEI_METRICS_LISTEN {}: {err}",
                config.metrics_listen
            ))
        })?;
    run_with(listener, metrics, config, shutdown).await
}

/// [`run`] with the metrics listener bound by the caller too (tests bind `127.0.0.1:0`).
pub async fn run_with(
    listener: TcpListener,
    metrics_listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    config.validate().map_err(ServeError::Config)?;
    tracing::info!(settings = %config.describe(), "starting");
    let store = open_store(&config).await?;
    let secrets = crate::secret::open(&config.secret_key_path(), store.as_ref()).await?;
    let metrics = Arc::new(Metrics::new());
    let anchor = Arc::new(crate::seal::Anchor::open(
        config.audit_anchor_file.as_deref(),
        Arc::clone(&metrics),
    )?);
    let limits = &config.limits;
    let hub = Arc::new(Hub::new(
        store.directory().await?,
        HubLimits {
            max_connections_per_user: limits.max_connections_per_user as usize,
            outbox_bytes: limits.outbox_bytes as usize,
            posts_per_second: limits.posts_per_second,
            post_burst: limits.post_burst,
            archive_readable_by_members: config.archive_readable_by_members,
        },
        Arc::clone(&metrics),
    ));
    // SQLite has one writer; PostgreSQL commits different groups in parallel.
    let shards = if config.effective_database_url().starts_with("sqlite") {
        1
    } else {
        4
    };
    let bus = match &config.redis_url {
        Some(url) => Bus::Redis(
            RedisBus::start(
                url,
                config.redis_ca_file.as_deref(),
                &config.redis_prefix,
                config.bus_envelope,
                Arc::clone(&hub),
                Arc::clone(&store),
                Arc::clone(&metrics),
                shutdown.clone(),
            )
            .await?,
        ),
        None => Bus::InProcess(crate::bus::Recovery::new(
            Arc::clone(&hub),
            Arc::clone(&store),
            Arc::clone(&metrics),
        )),
    };
    let committed = Arc::new(tokio::sync::Notify::new());
    let notices =
        crate::notice::Notifications::new(&config, store.as_ref(), Arc::clone(&committed)).await?;
    let (sequencer, writers) = Sequencer::start(
        shards,
        Arc::clone(&store),
        bus.clone(),
        Arc::clone(&metrics),
        committed,
        config.clock.clone(),
    );
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key)?),
        _ => None,
    };
    let passwords = Passwords::new(
        crate::password::Cost::of(&config),
        config.password_workers(),
        limits.password_queue,
    )?;
    let audit = crate::audit::Auditor::start(Arc::clone(&store));
    let requests = crate::throttle::RequestLimits::new(&config.limits);
    let files = crate::files::FileStore::open(&config).map_err(ServeError::Config)?;
    let uploads = crate::files::Uploads::new(&config);
    let app = Arc::new(App {
        files,
        uploads,
        notices,
        config,
        store,
        hub,
        sequencer,
        bus,
        passwords,
        logins: crate::attempts::Attempts::default(),
        requests,
        metrics,
        audit,
        secrets,
        shutdown: shutdown.clone(),
        sockets: TaskTracker::new(),
    });
    crate::archive::spawn(Arc::clone(&app));
    crate::session::spawn_keepalive(Arc::clone(&app));
    crate::seal::spawn(
        Arc::clone(&app.store),
        anchor,
        app.config.audit_seal_seconds,
        shutdown.clone(),
    );
    crate::notice::spawn(Arc::clone(&app));
    let header_timeout = Duration::from_secs(u64::from(app.config.limits.header_timeout_seconds));
    // Logged before `listening`, which those who start the binary wait for.
    tracing::info!(addr = %metrics_listener.local_addr()?, "serving metrics");
    let metrics_served = tokio::spawn(crate::accept::serve(
        metrics_listener,
        metrics_router(Arc::clone(&app)),
        header_timeout,
        shutdown.clone(),
    ));
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let router = router(Arc::clone(&app));
    match tls {
        Some(acceptor) => {
            let listener = crate::tls::TlsListener::new(listener, acceptor, shutdown.clone())?;
            crate::accept::serve(listener, router, header_timeout, shutdown.clone()).await;
        }
        None => crate::accept::serve(listener, router, header_timeout, shutdown.clone()).await,
    }
    if let Err(err) = metrics_served.await {
        tracing::error!(error = %err, "the metrics listener failed");
    }
    tracing::info!("stopped accepting; draining sockets");
    app.sockets.close();
    if tokio::time::timeout(SOCKET_DRAIN, app.sockets.wait())
        .await
        .is_err()
    {
        tracing::warn!("sockets still open after the drain period");
    }
    let store = Arc::clone(&app.store);
    // The last handle to the sequencer goes with `app`; its writers then commit what is
    // queued and stop.
    drop(app);
    let drained = tokio::time::timeout(COMMIT_DRAIN, futures::future::join_all(writers)).await;
    if drained.is_err() {
        tracing::error!("sequencer did not drain in time");
    }
    drop(store);
    tracing::info!("stopped");
    Ok(())
}
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

/// What the metrics address serves (`RENKEI_METRICS_LISTEN`): `/metrics` and nothing
/// else. Not the clients' address: the counts tell how busy the service is and when.
pub fn metrics_router(app: Arc<App>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { HttpError::not_found("resource") })
        .with_state(app)
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

//! The running server: its shared state and `run`, which serves until told to stop.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::{Bus, RedisBus};
use crate::config::Config;
use crate::hub::{Hub, HubLimits};
use crate::metrics::Metrics;
use crate::password::{PasswordError, Passwords};
use crate::sequencer::Sequencer;
use crate::store::{self, Store, StoreError};

/// How long shutdown waits for sockets to finish their in-flight posts and close.
const SOCKET_DRAIN: Duration = Duration::from_secs(20);
/// How long shutdown waits for the sequencer to commit what is queued.
const COMMIT_DRAIN: Duration = Duration::from_secs(20);

/// Everything a request handler or socket task needs.
pub struct App {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub sequencer: Sequencer,
    /// Where events and invalidations go (this node, or every node).
    pub bus: Bus,
    pub passwords: Passwords,
    /// Recent failed logins of this node (growing delays).
    pub logins: crate::login::Attempts,
    /// REST requests per user and per source address.
    pub requests: crate::throttle::RequestLimits,
    pub metrics: Arc<Metrics>,
    /// The audit trail's writer.
    pub audit: crate::audit::Auditor,
    /// The key TOTP secrets are encrypted under (from `RENKEI_SECRET_KEY_FILE`).
    pub secrets: crate::secret::SecretKey,
    /// Where each seal's head hash is published besides the database.
    pub anchor: crate::seal::Anchor,
    /// The bytes of uploaded files.
    pub files: crate::attachment::FileStore,
    /// Uploads in progress, and their bounds.
    pub uploads: crate::attachment::Uploads,
    /// Reaching people away from the page: push and e-mail.
    pub notices: crate::notice::Notifications,
    /// Cancelled when the server stops: sockets finish their posts and close.
    pub shutdown: CancellationToken,
    /// The socket tasks, so that shutdown can wait for them.
    pub sockets: TaskTracker,
}

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
    let anchor =
        crate::seal::Anchor::open(config.audit_anchor_file.as_deref(), Arc::clone(&metrics))?;
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
        config.password_cost(),
        config.password_workers(),
        limits.password_queue,
    )?;
    let audit = crate::audit::Auditor::start(Arc::clone(&store));
    let requests = crate::throttle::RequestLimits::new(&config.limits);
    let files = crate::attachment::FileStore::open(&config).map_err(ServeError::Config)?;
    let uploads = crate::attachment::Uploads::new(&config);
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
        logins: crate::login::Attempts::default(),
        requests,
        metrics,
        audit,
        secrets,
        anchor,
        shutdown: shutdown.clone(),
        sockets: TaskTracker::new(),
    });
    crate::archive::spawn(Arc::clone(&app));
    crate::session::spawn_keepalive(Arc::clone(&app));
    crate::seal::spawn(Arc::clone(&app));
    crate::notice::spawn(Arc::clone(&app));
    let header_timeout = Duration::from_secs(u64::from(app.config.limits.header_timeout_seconds));
    // Logged before `listening`, which those who start the binary wait for.
    tracing::info!(addr = %metrics_listener.local_addr()?, "serving metrics");
    let metrics_served = tokio::spawn(crate::accept::serve(
        metrics_listener,
        crate::http::metrics_router(Arc::clone(&app)),
        header_timeout,
        shutdown.clone(),
    ));
    tracing::info!(addr = %listener.local_addr()?, "listening");
    let router = crate::http::router(Arc::clone(&app));
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

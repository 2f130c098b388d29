//! The state a node's request handlers, socket tasks and jobs share ([`crate::node`] builds
//! it and serves).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::config::Config;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::sequencer::Sequencer;
use crate::store::Store;

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
    pub logins: crate::attempts::Attempts,
    /// REST requests per user and per source address.
    pub requests: crate::throttle::RequestLimits,
    pub metrics: Arc<Metrics>,
    /// The audit trail's writer.
    pub audit: crate::audit::Auditor,
    /// The key TOTP secrets are encrypted under (from `RENKEI_SECRET_KEY_FILE`).
    pub secrets: crate::secret::SecretKey,
    /// The bytes of uploaded files.
    pub files: crate::files::FileStore,
    /// Uploads in progress, and their bounds.
    pub uploads: crate::files::Uploads,
    /// Reaching people away from the page: push and e-mail.
    pub notices: crate::notice::Notifications,
    /// Cancelled when the server stops: sockets finish their posts and close.
    pub shutdown: CancellationToken,
    /// The socket tasks, so that shutdown can wait for them.
    pub sockets: TaskTracker,
}

impl crate::http::Settings for Arc<App> {
    fn settings(&self) -> &Config {
        &self.config
    }
}

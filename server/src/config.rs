//! Configuration from flags and `RENKEI_*` environment variables, with defaults that run on
//! a bare machine: listen on loopback, keep a SQLite file in `./renkei-data`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// The `renkei` command line.
#[derive(Debug, Parser)]
#[command(
    name = "renkei",
    version,
    about = "Renkei (連携): messaging for home-care teams"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// What `renkei` does; serving is the default.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API, the WebSocket hub and the web client (the default).
    Serve,
    /// Fill an empty database with a demo city and print the logins and passwords.
    Demo {
        /// Leave the groups empty, without the week of posts (for tests that start from
        /// empty groups).
        #[arg(long)]
        empty: bool,
    },
    /// Show what the archive process would do now (it runs inside the server).
    Archive {
        /// Print the plan without changing anything (the only mode: the server runs it).
        #[arg(long)]
        dry_run: bool,
    },
    /// Create a city operator account (市) and print its one-time setup code. Run it
    /// before the first start (a running server learns the operator's admins' room
    /// membership at its next start).
    AddOperator {
        /// The operator's e-mail address: their login.
        email: String,
        /// Their display name.
        name: String,
    },
    /// The audit trail (監査証跡).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Write a consistent copy of the SQLite database to a new file while the server runs
    /// (PostgreSQL: use pg_dump, see docs/operations.md).
    Backup {
        /// The file to create; it must not exist.
        #[arg(long)]
        to: std::path::PathBuf,
    },
}

/// What `renkei audit` does.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditCommand {
    /// Follow the hash chain from the first record to the head; exits non-zero and names
    /// the first altered, removed or inserted record when it is broken. Note the printed
    /// head hash somewhere else: a chain rewritten from some record on would verify, but
    /// no longer end in it. With anchor files (or `RENKEI_AUDIT_ANCHOR_FILE`), also checks
    /// that every seal's record still has the chain hash published when it was made.
    Verify {
        /// An anchor file to compare with (one per node that seals, or shipped log lines
        /// of the same form); repeatable. Default: `RENKEI_AUDIT_ANCHOR_FILE`, if set.
        #[arg(long = "anchor-file")]
        anchor_files: Vec<std::path::PathBuf>,
    },
}

/// Every setting of a running server.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "RENKEI_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Address of the Prometheus endpoint (`GET /metrics`), apart from the one clients
    /// reach: loopback by default, for a scraper on the same host. Port 0 takes any free
    /// port (logged as `serving metrics`).
    #[arg(long, env = "RENKEI_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,
    /// A bearer token `/metrics` then asks for (`Authorization: Bearer <token>`); needed
    /// when `RENKEI_METRICS_LISTEN` is not a loopback address.
    #[arg(long, env = "RENKEI_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Directory for the embedded database and, later, files.
    #[arg(long, env = "RENKEI_DATA_DIR", default_value = "renkei-data")]
    pub data_dir: PathBuf,
    /// Database URL: `sqlite://…` or `postgres://…`. Default: `renkei.db` in the data directory.
    #[arg(long, env = "RENKEI_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Redis URL: with it, several nodes on one PostgreSQL fan out through Redis pub/sub.
    /// `rediss://user:password@host:6380` for TLS and a Redis ACL user.
    #[arg(long, env = "RENKEI_REDIS_URL")]
    pub redis_url: Option<String>,
    /// PEM file of the authorities a `rediss://` Redis's certificate must be signed by
    /// (instead of the system's). PostgreSQL takes its own in the URL (`sslrootcert`).
    #[arg(long, env = "RENKEI_REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// Prefix of this deployment's Redis channel names.
    #[arg(long, env = "RENKEI_REDIS_PREFIX", default_value = "renkei")]
    pub redis_prefix: String,
    /// The envelope version this node seals bus messages in (it opens every version it
    /// knows). During a rolling upgrade to a build with a newer one, keep the old one
    /// until every node runs the new build.
    #[arg(long, env = "RENKEI_BUS_ENVELOPE", default_value_t = crate::bus::envelope::NEWEST,
          value_parser = clap::value_parser!(u8).range(1..=i64::from(crate::bus::envelope::NEWEST)))]
    pub bus_envelope: u8,
    /// Send the session cookie only over HTTPS. Turn on behind a TLS proxy (built-in TLS
    /// turns it on by itself).
    #[arg(long, env = "RENKEI_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
    /// Serve HTTPS with this PEM certificate chain (with `RENKEI_TLS_KEY`).
    #[arg(long, env = "RENKEI_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of `RENKEI_TLS_CERT`.
    #[arg(long, env = "RENKEI_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on an address other than loopback: only behind a reverse proxy
    /// that terminates TLS on a network no one else reaches. Without it, such a listen
    /// address needs built-in TLS.
    #[arg(long, env = "RENKEI_ALLOW_PLAIN_HTTP", default_value_t = false)]
    pub allow_plain_http: bool,
    /// Browsers reach the server over HTTPS through a proxy that terminates TLS: the
    /// session cookie is `Secure` and responses carry HSTS, as with built-in TLS. Default:
    /// on with `RENKEI_ALLOW_PLAIN_HTTP`; `false` turns both off (a proxy that serves plain
    /// HTTP, on a closed network only).
    #[arg(long, env = "RENKEI_BEHIND_TLS_PROXY", action = clap::ArgAction::Set)]
    pub behind_tls_proxy: Option<bool>,
    /// A session's absolute lifetime, in hours: a shift with its handover, after which
    /// one logs in again whatever the use (art. 13(4)).
    #[arg(long, env = "RENKEI_SESSION_HOURS", default_value_t = 12)]
    pub session_hours: u32,
    /// Minutes without any use (a request, or an open WebSocket) after which a session
    /// ends: a phone or PC left logged in but closed stops being a way in (art. 14(1)).
    #[arg(long, env = "RENKEI_SESSION_IDLE_MINUTES", default_value_t = 60)]
    pub session_idle_minutes: u32,
    /// Web origins (`https://renkei.example.jp`) whose pages may use a session from a
    /// browser: WebSocket upgrades and cookie-authenticated requests from any other origin
    /// are refused. Comma-separated; empty = only the origin the server is reached at
    /// (its `Host`).
    #[arg(long, env = "RENKEI_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
    /// Addresses of reverse proxies in front of the server (nginx): for requests from
    /// them, the client's address is the last one in `X-Forwarded-For`. Comma-separated;
    /// empty = the peer's address is the client's. Never list an address clients can
    /// reach the server from directly.
    #[arg(long, env = "RENKEI_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Who must log in with a second factor (TOTP): `admins` (the operator and facility
    /// admins), `everyone`, or `optional` (anyone may; below the guideline, for trials).
    #[arg(long, env = "RENKEI_TWO_FACTOR", value_enum, default_value_t = renkei_domain::two_factor::Requirement::Admins)]
    pub two_factor: renkei_domain::two_factor::Requirement,
    /// The password policy (art. 13(2)): `long` = 13+ characters mixing letters, digits
    /// and symbols; `rotated` = 8+ such characters, changed at least every 60 days; `mfa`
    /// = 8+ for accounts with a second factor (13+ for the others).
    #[arg(long, env = "RENKEI_PASSWORD_POLICY", value_enum, default_value_t = renkei_domain::password::Policy::Long)]
    pub password_policy: renkei_domain::password::Policy,
    /// argon2id memory cost in KiB (OWASP: 19456). Raising it re-hashes each password at
    /// its owner's next login.
    #[arg(long, env = "RENKEI_PASSWORD_MEMORY_KIB", default_value_t = 19 * 1024)]
    pub password_memory_kib: u32,
    /// argon2id passes (OWASP: 2).
    #[arg(long, env = "RENKEI_PASSWORD_ITERATIONS", default_value_t = 2)]
    pub password_iterations: u32,
    /// Consecutive wrong passwords after which an account is locked (and its admins told).
    #[arg(long, env = "RENKEI_LOGIN_LOCK_FAILURES", default_value_t = 10)]
    pub login_lock_failures: u32,
    /// How long such a lock lasts, in minutes. An admin's password reset lifts it sooner.
    #[arg(long, env = "RENKEI_LOGIN_LOCK_MINUTES", default_value_t = 15)]
    pub login_lock_minutes: u32,
    /// Seconds without input after which the web client locks the screen and ends the
    /// session (art. 14(1)).
    #[arg(long, env = "RENKEI_IDLE_LOCK_SECONDS", default_value_t = 900)]
    pub idle_lock_seconds: u32,
    /// Days an invitation waits for its acceptance and approval before it expires.
    #[arg(long, env = "RENKEI_INVITATION_DAYS", default_value_t = 14)]
    pub invitation_days: u32,
    /// Hours a one-time code for setting a first password stays valid.
    #[arg(long, env = "RENKEI_SETUP_CODE_HOURS", default_value_t = 72)]
    pub setup_code_hours: u32,
    /// Days without a post after which a review flags a member as inactive, unless the
    /// review asks for another number.
    #[arg(long, env = "RENKEI_REVIEW_INACTIVE_DAYS", default_value_t = 90)]
    pub review_inactive_days: u32,
    /// The archive process (保管庫): patient groups without a post for this many days are
    /// moved to the archive…
    #[arg(long, env = "RENKEI_ARCHIVE_AFTER_DAYS", default_value_t = 90)]
    pub archive_after_days: u32,
    /// …after a notice in the group (and to its owning admins) this many days before.
    #[arg(long, env = "RENKEI_ARCHIVE_NOTICE_DAYS", default_value_t = 14)]
    pub archive_notice_days: u32,
    /// Whether the members of an archived group keep reading it (the owning facility's
    /// admins and the operator always can).
    #[arg(long, env = "RENKEI_ARCHIVE_READABLE_BY_MEMBERS", default_value_t = true, action = clap::ArgAction::Set)]
    pub archive_readable_by_members: bool,
    /// The largest file a member may upload into a group, in bytes.
    #[arg(long, env = "RENKEI_MAX_FILE_BYTES", default_value_t = 20 * 1024 * 1024)]
    pub max_file_bytes: u64,
    /// The kinds of file members may upload, recognised by content: any of jpeg, png,
    /// gif, webp, pdf.
    #[arg(
        long,
        env = "RENKEI_FILE_TYPES",
        value_delimiter = ',',
        default_value = "jpeg,png,gif,webp,pdf"
    )]
    pub file_types: Vec<String>,
    /// Uploads this node receives at once, from everyone (429 `overloaded` beyond). Each
    /// streams to a temporary file in `<data dir>/incoming`, so one costs little memory;
    /// the bound keeps disk writes and open files in check.
    #[arg(long, env = "RENKEI_UPLOADS_AT_ONCE", default_value_t = 16)]
    pub uploads_at_once: u32,
    /// Uploads one person may have in progress at once on a node (429 `rate_limited`
    /// beyond).
    #[arg(long, env = "RENKEI_UPLOADS_PER_USER", default_value_t = 2)]
    pub uploads_per_user: u32,
    /// Images wider or taller than this many pixels are refused before they are decoded.
    #[arg(long, env = "RENKEI_IMAGE_MAX_EDGE", default_value_t = 8192)]
    pub image_max_edge: u32,
    /// The most memory one image may take once decoded, in MiB: a larger one is refused
    /// from its header, before anything is allocated (a 24-megapixel photo takes 70 MiB).
    #[arg(long, env = "RENKEI_IMAGE_MAX_DECODE_MIB", default_value_t = 128)]
    pub image_max_decode_mib: u32,
    /// Images decoded at once on a node (each up to `RENKEI_IMAGE_MAX_DECODE_MIB`; the
    /// others wait). Default: half the cores, at least one.
    #[arg(long, env = "RENKEI_IMAGE_WORKERS")]
    pub image_workers: Option<u32>,
    /// Where uploaded files go: `s3://bucket/prefix` for an S3-compatible object store;
    /// by default `files/` in the data directory.
    #[arg(long, env = "RENKEI_FILE_STORE_URL")]
    pub file_store_url: Option<String>,
    /// The S3 store's access key.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// The S3 store's secret key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// The S3 endpoint of a service other than AWS (`https://s3.example.jp`, or
    /// `http://127.0.0.1:9000` on a closed network).
    #[arg(long, env = "RENKEI_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The S3 region.
    #[arg(long, env = "RENKEI_S3_REGION", default_value = "ap-northeast-1")]
    pub s3_region: String,
    /// Retention: archived groups archived this many days ago are purged for good by the
    /// archive process, with the erase guarantees of deletion; 0 (the default) keeps them.
    #[arg(long, env = "RENKEI_RETENTION_DAYS", default_value_t = 0)]
    pub retention_days: u32,
    /// How often the archive process runs, in seconds, once across all nodes; 0 turns it
    /// off.
    #[arg(long, env = "RENKEI_ARCHIVE_JOB_SECONDS", default_value_t = 3600)]
    pub archive_job_seconds: u32,
    /// How often the events appended since the last time are sealed into the audit trail
    /// (one record for them all, once across all nodes), in seconds; 0 turns it off.
    #[arg(long, env = "RENKEI_AUDIT_SEAL_SECONDS", default_value_t = 300)]
    pub audit_seal_seconds: u32,
    /// A file each seal's head hash is appended to as it is made (one line per seal,
    /// fsynced), for `renkei audit verify --anchor-file`: keep it where whoever can write
    /// the database cannot (another disk, a log shipper, WORM storage). Off by default;
    /// every seal's hash is logged at info level either way.
    #[arg(long, env = "RENKEI_AUDIT_ANCHOR_FILE")]
    pub audit_anchor_file: Option<PathBuf>,
    /// The file holding the key TOTP secrets are encrypted under (64 hex digits, mode
    /// 0600), made at the first start if absent. Default: `secret.key` in the data
    /// directory. Back it up apart from the database; every node needs the same file.
    #[arg(long, env = "RENKEI_SECRET_KEY_FILE")]
    pub secret_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitsConfig,
    #[command(flatten)]
    pub notify: NotifyConfig,
    /// The clock notifications and digests go by: the system's, or a test's.
    #[arg(skip)]
    pub clock: renkei_domain::clock::Clock,
}

/// How people are reached away from the page: Web Push and e-mail.
#[derive(Debug, Clone, Args)]
pub struct NotifyConfig {
    /// The server's address as people type it (`https://renkei.example.jp`), named in
    /// e-mails. Default: the first of `RENKEI_ALLOWED_ORIGINS`, else the listen address.
    #[arg(long, env = "RENKEI_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A file holding the VAPID private key (a PEM `EC PRIVATE KEY`/`PRIVATE KEY`, or the
    /// 32-byte scalar in base64url). Default: one created at the first start and kept in
    /// the database, shared by every node.
    #[arg(long, env = "RENKEI_VAPID_KEY_FILE")]
    pub vapid_key_file: Option<std::path::PathBuf>,
    /// Who push services may contact about this server (VAPID `sub`): `mailto:` or
    /// `https:`. Default: `mailto:` the mail sender, else the public URL.
    #[arg(long, env = "RENKEI_PUSH_CONTACT")]
    pub push_contact: Option<String>,
    /// Push services the server will send to (host names; `*.` for a domain's hosts): a
    /// subscription naming any other host is refused, so the server cannot be made to
    /// post to an arbitrary address.
    #[arg(
        long,
        env = "RENKEI_PUSH_HOSTS",
        value_delimiter = ',',
        default_value = "fcm.googleapis.com,*.push.services.mozilla.com,web.push.apple.com,*.notify.windows.com"
    )]
    pub push_hosts: Vec<String>,
    /// An extra CA certificate (PEM) to trust for push services (a push service on a
    /// closed network, or a test's).
    #[arg(long, env = "RENKEI_PUSH_CA_FILE")]
    pub push_ca_file: Option<std::path::PathBuf>,
    /// A push service that does not answer within this many seconds is tried again later;
    /// a node's claim on a push lasts three times as long (then another node may send it).
    #[arg(long, env = "RENKEI_PUSH_TIMEOUT_SECONDS", default_value_t = 10)]
    pub push_timeout_seconds: u32,
    /// At most one push per person and group per this many seconds.
    #[arg(long, env = "RENKEI_PUSH_COALESCE_SECONDS", default_value_t = 60)]
    pub push_coalesce_seconds: u32,
    /// The mail server: `smtps://user:password@host:465` or `smtp://…:587` (STARTTLS
    /// required, except on a loopback address). Without it nothing is mailed.
    #[arg(long, env = "RENKEI_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,
    /// The sender of e-mails (`Renkei <renkei@city.example.jp>`).
    #[arg(long, env = "RENKEI_MAIL_FROM")]
    pub mail_from: Option<String>,
    /// Unread posts older than this many minutes, that no push or screen showed, bring a
    /// digest e-mail.
    #[arg(long, env = "RENKEI_EMAIL_AFTER_MINUTES", default_value_t = 30)]
    pub email_after_minutes: u32,
    /// At most one digest per person per this many minutes.
    #[arg(long, env = "RENKEI_EMAIL_INTERVAL_MINUTES", default_value_t = 180)]
    pub email_interval_minutes: u32,
    /// How often each node looks for notifications to derive and send, in milliseconds
    /// (a commit on this node wakes it at once).
    #[arg(long, env = "RENKEI_NOTIFY_TICK_MS", default_value_t = 1000)]
    pub tick_ms: u32,
}

/// Limits that protect the server and the other members from one client.
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Largest WebSocket frame or message read, in bytes.
    #[arg(long, env = "RENKEI_MAX_FRAME_BYTES", default_value_t = 64 * 1024)]
    pub max_frame_bytes: u32,
    /// Longest post, in characters.
    #[arg(long, env = "RENKEI_MAX_POST_CHARS", default_value_t = 10_000)]
    pub max_post_chars: u32,
    /// Sustained posts per second per user.
    #[arg(long, env = "RENKEI_POSTS_PER_SECOND", default_value_t = 10)]
    pub posts_per_second: u32,
    /// Posts a user may send at once before the per-second rate applies.
    #[arg(long, env = "RENKEI_POST_BURST", default_value_t = 30)]
    pub post_burst: u32,
    /// Frames of any kind a socket may send per second, sustained.
    #[arg(long, env = "RENKEI_FRAMES_PER_SECOND", default_value_t = 50)]
    pub frames_per_second: u32,
    /// Frames a socket may send at once before the per-second rate applies.
    #[arg(long, env = "RENKEI_FRAME_BURST", default_value_t = 200)]
    pub frame_burst: u32,
    /// Open WebSockets per user (phones, tablets, PCs).
    #[arg(long, env = "RENKEI_MAX_CONNECTIONS_PER_USER", default_value_t = 8)]
    pub max_connections_per_user: u32,
    /// Bytes queued for one socket before it counts as a slow consumer and is closed.
    #[arg(long, env = "RENKEI_OUTBOX_BYTES", default_value_t = 1024 * 1024)]
    pub outbox_bytes: u32,
    /// Seconds a client has to send a request's head (method, path, headers) once it
    /// starts one or opens a connection: slower ones (slowloris) are disconnected.
    #[arg(long, env = "RENKEI_HEADER_TIMEOUT_SECONDS", default_value_t = 10)]
    pub header_timeout_seconds: u32,
    /// Seconds a request's body may take once its handler starts reading it, extended by
    /// a second per 16 KiB received (a large upload on a slow but working line finishes;
    /// a stalled or trickling body does not): slower ones get 408 and are disconnected.
    #[arg(long, env = "RENKEI_BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    pub body_timeout_seconds: u32,
    /// Seconds between keepalive pings; a socket silent for two intervals is dropped.
    #[arg(long, env = "RENKEI_PING_SECONDS", default_value_t = 30)]
    pub ping_seconds: u32,
    /// Password checks running at once (each takes 19 MiB and ~25 ms of a core). Default:
    /// half the cores, at least one, so that a storm of logins leaves the other half to
    /// the messages (measured: 100 logins/s on two cores took delivery p99 from 28 ms with
    /// one worker to 152 ms with two).
    #[arg(long, env = "RENKEI_PASSWORD_WORKERS")]
    pub password_workers: Option<u32>,
    /// Password checks allowed to wait; beyond that logins get 429.
    #[arg(long, env = "RENKEI_PASSWORD_QUEUE", default_value_t = 64)]
    pub password_queue: u32,
    /// REST requests per second per user, sustained (429 beyond).
    #[arg(long, env = "RENKEI_REQUESTS_PER_SECOND", default_value_t = 20)]
    pub requests_per_second: u32,
    /// REST requests a user may send at once before the per-second rate applies.
    #[arg(long, env = "RENKEI_REQUEST_BURST", default_value_t = 100)]
    pub request_burst: u32,
    /// REST requests per second per source address, sustained. A facility's staff may
    /// share one address (NAT), so this is well above one user's rate.
    #[arg(
        long,
        env = "RENKEI_ADDRESS_REQUESTS_PER_SECOND",
        default_value_t = 200
    )]
    pub address_requests_per_second: u32,
    /// REST requests an address may send at once before its per-second rate applies.
    #[arg(long, env = "RENKEI_ADDRESS_REQUEST_BURST", default_value_t = 400)]
    pub address_request_burst: u32,
    /// Facility applications (様式1, open to anyone) an address may send per hour, all at
    /// once at most: a city office helping several facilities apply stays well below.
    #[arg(long, env = "RENKEI_APPLICATIONS_PER_HOUR", default_value_t = 10)]
    pub applications_per_hour: u32,
}

impl Config {
    /// The database URL in force: the configured one, or a SQLite file in the data directory.
    pub fn effective_database_url(&self) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.data_dir.join("renkei.db").display()),
        }
    }

    /// The secret key file in force: the configured one, or `secret.key` in the data
    /// directory.
    pub fn secret_key_path(&self) -> PathBuf {
        self.secret_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret.key"))
    }

    /// Refuses settings that contradict each other.
    pub fn validate(&self) -> Result<(), String> {
        let known: Vec<&str> = renkei_domain::upload::Kind::ALL
            .iter()
            .map(|k| k.name())
            .collect();
        if let Some(unknown) = self
            .file_types
            .iter()
            .find(|t| !known.contains(&t.as_str()))
        {
            return Err(format!(
                "RENKEI_FILE_TYPES: unknown type {unknown:?} (known: {})",
                known.join(", ")
            ));
        }
        if self.uploads_at_once == 0 || self.uploads_per_user == 0 || self.image_workers == Some(0)
        {
            return Err(
                "RENKEI_UPLOADS_AT_ONCE, RENKEI_UPLOADS_PER_USER and RENKEI_IMAGE_WORKERS must be \
                 at least 1"
                    .into(),
            );
        }
        if self.image_max_edge < 320 || self.image_max_decode_mib == 0 {
            return Err(
                "RENKEI_IMAGE_MAX_EDGE must be at least 320 and RENKEI_IMAGE_MAX_DECODE_MIB at \
                 least 1"
                    .into(),
            );
        }
        let l = &self.limits;
        // A post's event carries its text (up to 4 bytes a character) and its author.
        let largest_event = u64::from(l.max_post_chars) * 4 + 4096;
        if u64::from(l.outbox_bytes) < largest_event {
            return Err(format!(
                "RENKEI_OUTBOX_BYTES ({}) must hold at least one largest post: {largest_event} bytes \
                 for RENKEI_MAX_POST_CHARS = {}",
                l.outbox_bytes, l.max_post_chars
            ));
        }
        if l.applications_per_hour == 0 {
            return Err("RENKEI_APPLICATIONS_PER_HOUR must be at least 1".into());
        }
        if l.body_timeout_seconds == 0 {
            return Err("RENKEI_BODY_TIMEOUT_SECONDS must be at least 1".into());
        }
        if l.max_frame_bytes < 1024 {
            return Err("RENKEI_MAX_FRAME_BYTES must be at least 1024".into());
        }
        if self.redis_url.is_some() && self.effective_database_url().starts_with("sqlite") {
            return Err(
                "RENKEI_REDIS_URL needs a shared PostgreSQL (RENKEI_DATABASE_URL): \
                        nodes cannot share a SQLite file"
                    .into(),
            );
        }
        if self.redis_ca_file.is_some()
            && !self
                .redis_url
                .as_deref()
                .is_some_and(|url| url.starts_with("rediss://"))
        {
            return Err("RENKEI_REDIS_CA_FILE needs a rediss:// RENKEI_REDIS_URL".into());
        }
        if self.invitation_days == 0 || self.setup_code_hours == 0 {
            return Err(
                "RENKEI_INVITATION_DAYS and RENKEI_SETUP_CODE_HOURS must be at least 1".into(),
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("RENKEI_TLS_CERT and RENKEI_TLS_KEY go together".into());
        }
        if !self.tls() && !self.listen.ip().is_loopback() && !self.allow_plain_http {
            return Err(format!(
                "listening on {} without TLS would send passwords and patient data in the \
                 clear: set RENKEI_TLS_CERT and RENKEI_TLS_KEY, or, behind a reverse proxy \
                 that terminates TLS, RENKEI_ALLOW_PLAIN_HTTP=true",
                self.listen
            ));
        }
        if self
            .metrics_token
            .as_ref()
            .is_some_and(|t| t.trim().is_empty())
        {
            return Err("RENKEI_METRICS_TOKEN must not be empty".into());
        }
        if !self.metrics_listen.ip().is_loopback() && self.metrics_token.is_none() {
            return Err(format!(
                "serving /metrics on {} would show this server's activity to anyone who \
                 reaches it: set RENKEI_METRICS_TOKEN, or keep RENKEI_METRICS_LISTEN on loopback",
                self.metrics_listen
            ));
        }
        if self.session_hours == 0 || self.session_idle_minutes == 0 {
            return Err(
                "RENKEI_SESSION_HOURS and RENKEI_SESSION_IDLE_MINUTES must be at least 1".into(),
            );
        }
        if self.login_lock_failures == 0 || self.login_lock_minutes == 0 {
            return Err(
                "RENKEI_LOGIN_LOCK_FAILURES and RENKEI_LOGIN_LOCK_MINUTES must be at least 1"
                    .into(),
            );
        }
        if let Err(err) =
            argon2::Params::new(self.password_memory_kib, self.password_iterations, 1, None)
        {
            return Err(format!(
                "RENKEI_PASSWORD_MEMORY_KIB / RENKEI_PASSWORD_ITERATIONS: {err}"
            ));
        }
        if self.password_memory_kib < 19 * 1024 || self.password_iterations < 2 {
            return Err(
                "argon2id below OWASP's minimum (RENKEI_PASSWORD_MEMORY_KIB 19456, \
                 RENKEI_PASSWORD_ITERATIONS 2) is refused"
                    .into(),
            );
        }
        self.notify.validate()?;
        if let Some(origin) = self.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(format!(
                "RENKEI_ALLOWED_ORIGINS: {origin:?} is not an origin like https://renkei.example.jp"
            ));
        }
        Ok(())
    }

    /// The server's address as named in e-mails.
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.notify.public_url {
            return url.trim_end_matches('/').to_string();
        }
        match self.allowed_origins.first() {
            Some(origin) => origin.clone(),
            None => {
                let scheme = if self.tls() { "https" } else { "http" };
                format!("{scheme}://{}", self.listen)
            }
        }
    }

    /// Whether the server itself serves HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// Whether browsers reach the server over HTTPS through a TLS-terminating proxy: as
    /// set, else whenever plain HTTP is allowed (that is what it is allowed for).
    pub fn behind_tls_proxy(&self) -> bool {
        self.behind_tls_proxy.unwrap_or(self.allow_plain_http)
    }

    /// Whether the session cookie is sent only over HTTPS.
    pub fn secure_cookies(&self) -> bool {
        self.cookie_secure || self.tls() || self.behind_tls_proxy()
    }

    /// Whether responses tell browsers to use HTTPS only (HSTS).
    pub fn hsts(&self) -> bool {
        self.tls() || self.behind_tls_proxy()
    }

    /// Password checks running at once: the configured number, or half the cores.
    pub fn password_workers(&self) -> u32 {
        self.limits.password_workers.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            u32::try_from(cores / 2).unwrap_or(1).max(1)
        })
    }

    /// The settings as they may be logged: passwords in URLs are masked.
    pub fn describe(&self) -> String {
        format!(
                        "listen={} metrics_listen={} tls={} behind_tls_proxy={} data_dir={} files={} database={} redis={} cookie_secure={} session_hours={} mail={} {:?}",
            self.listen,
            self.metrics_listen,
            self.tls(),
            self.behind_tls_proxy(),
            self.data_dir.display(),
            self.file_store_url.as_deref().unwrap_or("data_dir/files"),
            mask_password(&self.effective_database_url()),
            self.redis_url
                .as_deref()
                .map_or("none (in-process bus)".into(), mask_password),
            self.secure_cookies(),
            self.session_hours,
            self.notify
                .smtp_url
                .as_deref()
                .map_or("off".into(), mask_password),
            self.limits
        )
    }
}

impl NotifyConfig {
    fn validate(&self) -> Result<(), String> {
        if self.tick_ms < 10 || self.tick_ms > 60_000 {
            return Err("RENKEI_NOTIFY_TICK_MS must be between 10 and 60000".into());
        }
        if !(1..=120).contains(&self.push_timeout_seconds) {
            return Err("RENKEI_PUSH_TIMEOUT_SECONDS must be between 1 and 120".into());
        }
        if self.email_interval_minutes == 0 {
            return Err("RENKEI_EMAIL_INTERVAL_MINUTES must be at least 1".into());
        }
        if let Some(host) = self
            .push_hosts
            .iter()
            .find(|h| h.is_empty() || h.contains(['/', ':', '@', ' ']))
        {
            return Err(format!(
                "RENKEI_PUSH_HOSTS: {host:?} is not a host name like fcm.googleapis.com"
            ));
        }
        if let Some(contact) = &self.push_contact {
            if !contact.starts_with("mailto:") && !contact.starts_with("https:") {
                return Err("RENKEI_PUSH_CONTACT must start with mailto: or https:".into());
            }
        }
        if self.smtp_url.is_some() && self.mail_from.is_none() {
            return Err("RENKEI_SMTP_URL needs RENKEI_MAIL_FROM (the sender's address)".into());
        }
        if let Some(url) = &self.smtp_url {
            MailServer::parse(url).map_err(|err| format!("RENKEI_SMTP_URL: {err}"))?;
        }
        Ok(())
    }
}

/// Replaces the password of a `scheme://user:password@host` URL with `***`: the user
/// information ends at the last `@` before the query, so an `@` or `:` left unencoded in
/// the password is masked with it.
pub fn mask_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let before_query = rest.find(['?', '#']).map_or(rest, |end| &rest[..end]);
    let Some(at) = before_query.rfind('@') else {
        return url.to_string();
    };
    match rest[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end + 3],
            &rest[..colon],
            &rest[at..]
        ),
        None => url.to_string(),
    }
}

/// How the mail server is reached, from `RENKEI_SMTP_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailServer {
    pub host: String,
    pub port: u16,
    /// `smtps`: TLS from the first byte; otherwise STARTTLS, required unless on loopback.
    pub implicit_tls: bool,
    /// A relay on this machine (`127.0.0.0/8`, `::1`, `localhost`): plain SMTP allowed.
    pub loopback: bool,
    pub credentials: Option<(String, String)>,
}

impl MailServer {
    pub fn parse(text: &str) -> Result<MailServer, SmtpUrlError> {
        let url = url::Url::parse(text).map_err(|_| SmtpUrlError::NotUrl)?;
        let implicit_tls = match url.scheme() {
            "smtps" => true,
            "smtp" => false,
            _ => return Err(SmtpUrlError::Scheme),
        };
        let host = url
            .host_str()
            .ok_or(SmtpUrlError::NotUrl)?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let decode = |part: &str| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8_lossy()
                .into_owned()
        };
        let credentials = (!url.username().is_empty()).then(|| {
            (
                decode(url.username()),
                decode(url.password().unwrap_or_default()),
            )
        });
        Ok(MailServer {
            port: url.port().unwrap_or(if implicit_tls { 465 } else { 587 }),
            host,
            implicit_tls,
            loopback,
            credentials,
        })
    }
}

/// Why `RENKEI_SMTP_URL` names no mail server.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SmtpUrlError {
    #[error("not a URL like smtps://user:password@mail.example.jp:465")]
    NotUrl,
    #[error("the scheme must be smtps (implicit TLS) or smtp (STARTTLS)")]
    Scheme,
}

/// True when `text` is a web origin: `scheme://host[:port]`, nothing after.
fn is_origin(text: &str) -> bool {
    text.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https")
            && !rest.is_empty()
            && !rest.contains(['/', '?', '#', '@', ' '])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_the_transport() {
        let server = MailServer::parse("smtps://renkei:p%40ss@mail.example.jp").unwrap();
        assert_eq!(server.port, 465);
        assert!(server.implicit_tls && !server.loopback);
        assert_eq!(server.credentials, Some(("renkei".into(), "p@ss".into())));
        let relay = MailServer::parse("smtp://127.0.0.1:2525").unwrap();
        assert!(!relay.implicit_tls && relay.loopback && relay.credentials.is_none());
        assert!(MailServer::parse("smtp://[::1]:25").unwrap().loopback);
        assert_eq!(
            MailServer::parse("smtp://mail.example.jp").unwrap().port,
            587
        );
        assert_eq!(
            MailServer::parse("http://mail.example.jp"),
            Err(SmtpUrlError::Scheme)
        );
        assert_eq!(
            MailServer::parse("mail.example.jp"),
            Err(SmtpUrlError::NotUrl)
        );
    }

    #[test]
    fn origins_in_configuration() {
        assert!(is_origin("https://renkei.example.jp"));
        assert!(is_origin("http://127.0.0.1:8080"));
        assert!(!is_origin("renkei.example.jp"));
        assert!(!is_origin("https://renkei.example.jp/"));
        assert!(!is_origin("ftp://x"));
    }

    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            mask_password("postgres://renkei:s3cret@db:5432/renkei"),
            "postgres://renkei:***@db:5432/renkei"
        );
        assert_eq!(
            mask_password("postgres://renkei@db/renkei"),
            "postgres://renkei@db/renkei"
        );
        assert_eq!(
            mask_password("sqlite://data/renkei.db"),
            "sqlite://data/renkei.db"
        );
        assert_eq!(
            mask_password("rediss://renkei:p@ss:w0rd@redis.internal:6380"),
            "rediss://renkei:***@redis.internal:6380"
        );
        assert_eq!(
            mask_password("rediss://:s3cret@redis.internal:6380"),
            "rediss://:***@redis.internal:6380"
        );
        assert_eq!(
            mask_password(
                "postgres://renkei:s3cret@db/renkei?sslmode=verify-full&sslrootcert=/etc/a@b.pem"
            ),
            "postgres://renkei:***@db/renkei?sslmode=verify-full&sslrootcert=/etc/a@b.pem"
        );
    }

    #[test]
    fn contradictory_limits_are_refused() {
        let mut config = Cli::try_parse_from(["renkei"])
            .expect("defaults parse")
            .config;
        assert_eq!(config.validate(), Ok(()));
        config.limits.outbox_bytes = 1000;
        assert!(config
            .validate()
            .is_err_and(|e| e.contains("RENKEI_OUTBOX_BYTES")));
    }

    #[test]
    fn plain_http_stays_on_loopback_unless_allowed() {
        let mut config = Cli::try_parse_from(["renkei", "--listen", "0.0.0.0:8080"])
            .expect("parses")
            .config;
        assert!(config
            .validate()
            .is_err_and(|e| e.contains("RENKEI_ALLOW_PLAIN_HTTP")));
        config.allow_plain_http = true;
        assert_eq!(config.validate(), Ok(()));
        // Behind the TLS proxy that implies: Secure cookies and HSTS, unless turned off.
        assert!(config.secure_cookies() && config.hsts());
        config.behind_tls_proxy = Some(false);
        assert!(!config.secure_cookies() && !config.hsts());
        config.behind_tls_proxy = None;
        config.allow_plain_http = false;
        assert!(!config.secure_cookies() && !config.hsts());
        config.tls_cert = Some("cert.pem".into());
        config.tls_key = Some("key.pem".into());
        assert_eq!(config.validate(), Ok(()));
        assert!(config.secure_cookies());
        assert!(Cli::try_parse_from(["renkei", "--tls-cert", "c.pem"]).is_err());
    }

    #[test]
    fn metrics_stay_on_loopback_unless_a_token_guards_them() {
        let mut config = Cli::try_parse_from(["renkei", "--metrics-listen", "0.0.0.0:9464"])
            .expect("parses")
            .config;
        assert!(config
            .validate()
            .is_err_and(|e| e.contains("RENKEI_METRICS_TOKEN")));
        config.metrics_token = Some("a long random token".into());
        assert_eq!(config.validate(), Ok(()));
        config.metrics_token = Some(" ".into());
        assert!(config.validate().is_err());
    }

    #[test]
    fn defaults_need_no_environment() {
        let cli = Cli::try_parse_from(["renkei"]).expect("defaults parse");
        assert!(cli.command.is_none());
        assert_eq!(cli.config.listen.to_string(), "127.0.0.1:8080");
        assert!(cli.config.effective_database_url().ends_with("renkei.db"));
    }
}

//! Test helpers: a fresh database per test on either backend, the real server booted on an
//! ephemeral loopback port, and a WebSocket client speaking the protocol.
//!
//! PostgreSQL tests read `RENKEI_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and fail, never skip, when it is unreachable.
//! Logs appear when `TEST_LOG` is set.
#![allow(dead_code)]

pub mod second_factor;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use renkei::config::{Cli, Config};
use renkei::store::{NewFacility, NewGroup, NewSession, NewUser, Store};
use renkei_protocol::api::{Consent, ConsentSigner, FacilityKind, Patient};
use renkei_protocol::{
    ClientMessage, GroupEvent, GroupId, GroupKind, Role, Seq, ServerMessage, SyncCursor, Welcome,
};
use sqlx::Connection as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::Request;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// How long a test waits for any one message before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// The two storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend, as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::common::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::common::Backend::Postgres).await
            }
        }
    )*};
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_env_filter("info").try_init();
    }
}

/// A fresh, empty database for one test, and a data directory of its own (the SQLite
/// file, uploaded files). Both are removed when it is dropped: left behind, hundreds of
/// test databases slow the shared PostgreSQL (autovacuum visits each) for every later run.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    /// On PostgreSQL: the admin URL it was created through, and its name.
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("renkei.db").display());
                TestDb {
                    url,
                    dir,
                    postgres: None,
                }
            }
            Backend::Postgres => {
                let admin = std::env::var("RENKEI_TEST_POSTGRES_URL")
                    .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
                TestDb::on_postgres(&admin).await
            }
        }
    }

    /// A fresh database on the PostgreSQL server of `admin` (a URL that may create databases).
    pub async fn on_postgres(admin: &str) -> TestDb {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "renkei_t_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst),
            renkei_domain::clock::now_ms()
        );
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL at {admin} is unreachable ({e}); set RENKEI_TEST_POSTGRES_URL")
            });
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        // The new database's name replaces the admin URL's; its parameters
        // (`?sslmode=…&sslrootcert=/path`) stay.
        let (admin_base, query) = admin
            .split_once('?')
            .map_or((admin, String::new()), |(b, q)| (b, format!("?{q}")));
        let base = admin_base.rsplit_once('/').map_or(admin_base, |(b, _)| b);
        TestDb {
            url: format!("{base}/{name}{query}"),
            dir: tempfile::tempdir().expect("temp dir"),
            postgres: Some((admin.to_owned(), name)),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else {
            return;
        };
        // Drop cannot await, and it runs on the test's runtime: the drop runs on a thread
        // and a runtime of its own. FORCE ends what a node still has open.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop a test database: {e}");
        }
    }
}

/// The people and groups every test starts with.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// Nurse, member of the patient group and the free group.
    pub alice: i64,
    /// Doctor, member of the patient group.
    pub bob: i64,
    /// Helper, member of the free group only.
    pub carol: i64,
    /// Care manager, member of the patient group (a second reader).
    pub dave: i64,
    /// The facility's admin (MCS管理者), member of no group.
    pub adam: i64,
    pub patient_group: GroupId,
    pub free_group: GroupId,
    pub archived_group: GroupId,
    /// The facility of alice, bob, carol and dave, which owns the groups.
    pub facility: i64,
}

/// The password of every fixture user.
pub const PASSWORD: &str = "correct horse battery 7!";

/// A patient of the fixture.
pub fn patient(name: &str) -> Patient {
    Patient {
        name: name.into(),
        kana: String::new(),
        birth_date: "1938-05-05".into(),
        notes: String::new(),
    }
}

/// A consent record (様式3).
pub fn consent() -> Consent {
    Consent {
        signed_by: ConsentSigner::Patient,
        signed_on: "2026-11-01".into(),
        copy_sent_on: None,
    }
}

/// Fills an empty store with the fixture.
pub async fn seed(store: &dyn Store) -> Fixture {
    let hash = renkei::password::hash_blocking(PASSWORD).expect("hash");
    let facility = store
        .create_facility(&NewFacility {
            name: "テスト在宅クリニック".into(),
            kind: FacilityKind::Clinic,
        })
        .await
        .expect("facility");
    let user = async |login: &str, name: &str, profession: &str| {
        store
            .create_users(&[NewUser {
                facility_id: Some(facility),
                login: login.into(),
                name: name.into(),
                profession: profession.into(),
                role: Role::Staff,
                password_hash: hash.clone(),
                ..NewUser::default()
            }])
            .await
            .expect("user")[0]
    };
    let alice = user("alice", "看護師 アリス", "nurse").await;
    let bob = user("bob", "医師 ボブ", "doctor").await;
    let carol = user("carol", "ヘルパー キャロル", "helper").await;
    let dave = user("dave", "ケアマネ デイブ", "care_manager").await;
    let adam = store
        .create_users(&[NewUser {
            facility_id: Some(facility),
            login: "adam@example.jp".into(),
            name: "管理者 アダム".into(),
            profession: "nurse".into(),
            role: Role::Admin,
            password_hash: hash.clone(),
            ..NewUser::default()
        }])
        .await
        .expect("admin")[0];
    // Created now, as groups are: the archive process leaves them alone for months.
    let now = renkei_domain::clock::now_ms();
    let group = async |kind: GroupKind, name: &str, members: &[i64]| {
        let id = store
            .create_group(&NewGroup {
                kind,
                name: name.into(),
                patient: (kind == GroupKind::Patient).then(|| patient(name)),
                owner_facility_id: Some(facility),
                consent: (kind == GroupKind::Patient).then(consent),
                created_at: now,
            })
            .await
            .expect("group");
        let members: Vec<_> = members.iter().map(|m| (id, *m)).collect();
        store.add_members(&members, 0).await.expect("members");
        id
    };
    let patient_group = group(GroupKind::Patient, "山田 太郎", &[alice, bob, dave]).await;
    let free_group = group(GroupKind::Free, "連絡板", &[alice, carol]).await;
    let archived_group = group(GroupKind::Patient, "保管 花子", &[alice]).await;
    Fixture {
        alice,
        bob,
        carol,
        dave,
        adam,
        patient_group,
        free_group,
        archived_group,
        facility,
    }
}

/// A running server on a fresh database with the fixture.
pub struct TestApp {
    pub addr: SocketAddr,
    /// The settings it runs with, for more nodes on the same database.
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub fixture: Fixture,
    node: Node,
    /// Last: dropped after the node that uses it.
    pub db: TestDb,
}

/// A running server.
pub struct Node {
    pub addr: SocketAddr,
    /// Where it serves `/metrics` (`RENKEI_METRICS_LISTEN`).
    pub metrics_addr: SocketAddr,
    shutdown: CancellationToken,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The metrics address of each node started here, by its address, so that [`metric`]
/// takes the address tests know a node by.
static METRICS_ADDRS: std::sync::Mutex<Vec<(SocketAddr, SocketAddr)>> =
    std::sync::Mutex::new(Vec::new());

/// The metrics address of the node at `addr` (a node started by [`Node`]).
pub fn metrics_addr(addr: SocketAddr) -> SocketAddr {
    METRICS_ADDRS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .rev()
        .find(|(node, _)| *node == addr)
        .map(|(_, metrics)| *metrics)
        .unwrap_or_else(|| panic!("no node of this test listens on {addr}"))
}

impl Node {
    async fn start(config: Config) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let metrics_addr = metrics.local_addr().expect("addr");
        METRICS_ADDRS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((addr, metrics_addr));
        let shutdown = CancellationToken::new();
        let server = tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                renkei::run_with(listener, metrics, config, shutdown)
                    .await
                    .expect("server runs")
            }
        });
        Node {
            addr,
            metrics_addr,
            shutdown,
            server: Some(server),
        }
    }

    /// Another server with these settings (on the same database as the one they name).
    pub async fn start_with(config: Config) -> Node {
        Node::start(config).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server.await.expect("server task");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The value of a counter or gauge in the `/metrics` of the server at `addr` (served on
/// its metrics address).
pub async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", metrics_addr(addr)))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// A Redis URL and a key prefix of this test's own.
pub fn redis() -> (String, String) {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let url =
        std::env::var("RENKEI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!(
        "renkei-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    (url, prefix)
}

/// Settings for tests: generous rates so that tests are not throttled unless they mean it.
pub fn test_config(db: &TestDb) -> Config {
    let mut config = default_config();
    config.listen = "127.0.0.1:0".parse().expect("addr");
    config.metrics_listen = "127.0.0.1:0".parse().expect("addr");
    config.database_url = Some(db.url.clone());
    config.data_dir = db.dir.path().to_path_buf();
    config.limits.posts_per_second = 10_000;
    config.limits.post_burst = 10_000;
    config.limits.frames_per_second = 10_000;
    config.limits.frame_burst = 10_000;
    config.limits.password_workers = Some(2);
    // Admins log in with a password alone in most tests; the tests of the second factor
    // (accounts.rs) require it as the default does.
    config.two_factor = renkei_domain::two_factor::Requirement::Optional;
    // Records are counted in the audit tests; the seal's own test seals when it means to.
    config.audit_seal_seconds = 0;
    config
}

/// The default settings (clap still reads any `RENKEI_*` variable the test runs with).
pub fn default_config() -> Config {
    use clap::Parser as _;
    let mut config = Cli::try_parse_from(["renkei"])
        .expect("defaults parse")
        .config;
    // Tests run at once: each server's metrics on a port of its own.
    config.metrics_listen = "127.0.0.1:0".parse().expect("addr");
    config
}

/// Logs out the session of `token` on the server at `addr`.
pub async fn logout(addr: SocketAddr, token: &str) -> reqwest::Response {
    reqwest::Client::new()
        .delete(format!("http://{addr}/api/v1/session"))
        .bearer_auth(token)
        .send()
        .await
        .expect("logout")
}

impl TestApp {
    /// Boots a server with the test settings.
    pub async fn spawn(backend: Backend) -> TestApp {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Boots a server with the test settings changed by `tweak`.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> TestApp {
        Self::spawn_in(TestDb::new(backend).await, tweak).await
    }

    /// Boots a server on `db` with the test settings changed by `tweak`.
    pub async fn spawn_in(db: TestDb, tweak: impl FnOnce(&mut Config)) -> TestApp {
        init_logs();
        let store = renkei::store::open(&db.url).await.expect("open store");
        let fixture = seed(store.as_ref()).await;
        set_archived(&db.url, fixture.archived_group).await;
        let mut config = test_config(&db);
        tweak(&mut config);
        let node = Node::start(config.clone()).await;
        let app = TestApp {
            addr: node.addr,
            config,
            db,
            store,
            fixture,
            node,
        };
        app.wait_ready().await;
        app
    }

    /// Another node on the same database (and Redis, if configured).
    pub async fn another_node(&self) -> Node {
        Node::start(self.config.clone()).await
    }

    async fn wait_ready(&self) {
        for _ in 0..200 {
            if let Ok(r) = reqwest::get(self.url("/readyz")).await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("server did not become ready");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A session token for `user`, stored directly (password logins are tested on their own).
    pub async fn token(&self, user: i64) -> String {
        let token = renkei::session::random_token();
        self.store
            .create_sessions(&[NewSession {
                token_hash: renkei::session::token_hash(&token),
                user_id: user,
                created_at: renkei_domain::clock::now_ms(),
                expires_at: renkei_domain::clock::now_ms() + 3_600_000,
                ..NewSession::default()
            }])
            .await
            .expect("session");
        token
    }

    /// A connected client of `user`.
    pub async fn client(&self, user: i64) -> Client {
        let token = self.token(user).await;
        Client::connect(self.addr, &token).await
    }

    /// The value of a counter or gauge in `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        metric(self.addr, name).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) {
        self.node.stop().await;
    }
}

/// Marks a group archived with plain SQL (the archive feature is a later issue).
pub async fn set_archived(url: &str, group: GroupId) {
    execute(
        url,
        &format!("UPDATE care_groups SET archived_at = 1 WHERE id = {group}"),
    )
    .await;
}

/// Runs one SQL statement on the database at `url`, behind the server's back.
pub async fn execute(url: &str, sql: &str) {
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
        sqlx::query(sql).execute(&mut conn).await.expect(sql);
    }
}

/// A WebSocket client.
pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub welcome: Welcome,
}

/// What a read ended with, when it was not a message.
#[derive(Debug)]
pub enum Ended {
    Closed(Option<CloseFrame>),
    Eof,
}

impl Client {
    /// Connects with a bearer token and reads the welcome.
    pub async fn connect(addr: SocketAddr, token: &str) -> Client {
        let mut request = format!("ws://{addr}/ws")
            .into_client_request()
            .expect("request");
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("header"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        match read(&mut ws).await {
            Ok(ServerMessage::Welcome(welcome)) => Client { ws, welcome },
            other => panic!("expected welcome, got {other:?}"),
        }
    }

    pub async fn send(&mut self, message: &ClientMessage) {
        let text = serde_json::to_string(message).expect("json");
        self.ws.send(Message::text(text)).await.expect("send");
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.ws.send(message).await.expect("send raw");
    }

    /// The next protocol message, or how the connection ended.
    pub async fn next(&mut self) -> Result<ServerMessage, Ended> {
        read(&mut self.ws).await
    }

    /// The next protocol message; panics if the connection ended.
    pub async fn recv(&mut self) -> ServerMessage {
        match self.next().await {
            Ok(message) => message,
            Err(ended) => panic!("connection ended: {ended:?}"),
        }
    }

    /// The close code the connection ends with, skipping any messages before it.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match self.next().await {
                Ok(_) => continue,
                Err(Ended::Closed(frame)) => return frame.map(|f| u16::from(f.code)),
                Err(Ended::Eof) => return None,
            }
        }
    }

    pub async fn post(&mut self, group: GroupId, client_id: &str, text: &str) {
        self.send(&ClientMessage::Post {
            group,
            client_id: client_id.into(),
            text: text.into(),
            file: None,
        })
        .await;
    }

    /// Posts and waits for the ack (skipping events), returning its seq.
    pub async fn post_acked(&mut self, group: GroupId, client_id: &str, text: &str) -> Seq {
        self.post(group, client_id, text).await;
        loop {
            match self.recv().await {
                ServerMessage::Ack(ack) if ack.client_id == client_id => return ack.seq,
                ServerMessage::Error(e) => panic!("post refused: {e:?}"),
                _ => continue,
            }
        }
    }

    /// Posts until acknowledged, as a careful client does: a retryable refusal (the database
    /// is down) is retried under the same client id after a pause, for at most 30 s.
    /// Returns the seq and how many times the post was refused.
    pub async fn post_retrying(
        &mut self,
        group: GroupId,
        client_id: &str,
        text: &str,
    ) -> (Seq, u32) {
        for refusals in 0..600 {
            self.post(group, client_id, text).await;
            loop {
                match self.recv().await {
                    ServerMessage::Ack(ack) if ack.client_id == client_id => {
                        return (ack.seq, refusals)
                    }
                    ServerMessage::Error(e) if e.client_id.as_deref() == Some(client_id) => {
                        assert!(e.code.retryable(), "post refused for good: {e:?}");
                        break;
                    }
                    ServerMessage::Error(e) => panic!("unexpected error: {e:?}"),
                    _ => continue,
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("post {client_id} was never acknowledged");
    }

    /// Syncs one group from `after` and returns the catch-up events, through `synced`.
    pub async fn sync(&mut self, group: GroupId, after: Seq) -> Vec<GroupEvent> {
        self.send(&ClientMessage::Sync {
            groups: vec![SyncCursor { group, after }],
        })
        .await;
        let mut events = Vec::new();
        loop {
            match self.recv().await {
                ServerMessage::Event(event) if event.group == group => events.push(event),
                ServerMessage::Synced { group: g, .. } if g == group => return events,
                ServerMessage::Error(e) => panic!("sync refused: {e:?}"),
                _ => continue,
            }
        }
    }

    /// The next event, skipping acks and notices (invitations, account changes, reads,
    /// mentions).
    pub async fn next_event(&mut self) -> GroupEvent {
        loop {
            match self.recv().await {
                ServerMessage::Event(event) => return event,
                ServerMessage::Ack(_)
                | ServerMessage::Invitation(_)
                | ServerMessage::Account { .. }
                | ServerMessage::Receipt(_)
                | ServerMessage::ReadPosition { .. }
                | ServerMessage::Mention(_) => continue,
                other => panic!("expected an event, got {other:?}"),
            }
        }
    }

    /// The next error message.
    pub async fn next_error(&mut self) -> renkei_protocol::ErrorBody {
        match self.recv().await {
            ServerMessage::Error(e) => e,
            other => panic!("expected an error, got {other:?}"),
        }
    }
}

/// The next protocol message on `ws`, skipping pings, or how the connection ended.
async fn read(ws: &mut WebSocketStream<MaybeTlsStream<TcpStream>>) -> Result<ServerMessage, Ended> {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("timed out waiting for a message");
        match frame {
            Some(Ok(Message::Text(text))) => {
                return Ok(serde_json::from_str(text.as_str()).expect("server sent valid JSON"));
            }
            Some(Ok(Message::Close(frame))) => return Err(Ended::Closed(frame)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return Err(Ended::Eof),
        }
    }
}

/// The real `renkei` binary running as its own process, its log lines kept.
pub struct Process {
    pub addr: SocketAddr,
    pub child: tokio::process::Child,
    lines: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Process {
    /// Starts `renkei` on a loopback port with `env` (plus generous rate limits) and waits
    /// until it listens.
    pub async fn start(env: &[(&str, &str)]) -> Process {
        use tokio::io::AsyncBufReadExt as _;
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_renkei"));
        command
            .env("RENKEI_LISTEN", "127.0.0.1:0")
            .env("RENKEI_METRICS_LISTEN", "127.0.0.1:0")
            .env("RENKEI_LOG_FORMAT", "json")
            .env("RENKEI_POSTS_PER_SECOND", "100000")
            .env("RENKEI_POST_BURST", "100000")
            .env("RENKEI_FRAMES_PER_SECOND", "100000")
            .env("RENKEI_FRAME_BURST", "100000")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start renkei");
        let mut logs = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = |line: String| {
            lines
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(line)
        };
        // `serving metrics` comes before `listening`: both addresses, for `metric`.
        let (addr, metrics) = tokio::time::timeout(Duration::from_secs(30), async {
            let mut metrics = None;
            while let Some(line) = logs.next_line().await.expect("log line") {
                let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                keep(line);
                let logged = || {
                    entry["fields"]["addr"]
                        .as_str()
                        .expect("addr")
                        .parse::<SocketAddr>()
                        .expect("addr")
                };
                if entry["fields"]["message"] == "serving metrics" {
                    metrics = Some(logged());
                } else if entry["fields"]["message"] == "listening" {
                    return (logged(), metrics);
                }
            }
            panic!("renkei exited before listening: {:?}", lines.lock());
        })
        .await
        .expect("renkei did not start listening");
        if let Some(metrics) = metrics {
            METRICS_ADDRS
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push((addr, metrics));
        }
        let kept = Arc::clone(&lines);
        tokio::spawn(async move {
            while let Ok(Some(line)) = logs.next_line().await {
                kept.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(line);
            }
        });
        Process { addr, child, lines }
    }

    /// What it has logged so far, a line per entry.
    pub fn logs(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .join("\n")
    }

    /// Sends a signal (`TERM`, `KILL`) to the process.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    }
}

/// `renkei audit verify` (with `args`) on the database at `url`, as an operator runs it:
/// whether it passed, and what it printed.
pub fn audit_verify(url: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
        .args(["audit", "verify"])
        .args(args)
        .env("RENKEI_DATABASE_URL", url)
        .env("RUST_LOG", "error")
        .output()
        .expect("renkei audit verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// A session token for `user`, stored directly in `store`.
pub async fn session(store: &dyn Store, user: i64) -> String {
    let token = renkei::session::random_token();
    store
        .create_sessions(&[NewSession {
            token_hash: renkei::session::token_hash(&token),
            user_id: user,
            created_at: renkei_domain::clock::now_ms(),
            expires_at: i64::MAX,
            ..NewSession::default()
        }])
        .await
        .expect("session");
    token
}

/// The HTTP status of a WebSocket upgrade (101 when accepted) and its response headers.
pub async fn upgrade(request: Request<()>) -> (u16, Vec<(String, String)>) {
    let (status, headers) = match tokio_tungstenite::connect_async(request).await {
        Ok((_, response)) => (response.status(), response.headers().clone()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            (response.status(), response.headers().clone())
        }
        Err(other) => panic!("unexpected upgrade failure: {other}"),
    };
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    (status.as_u16(), headers)
}

/// A WebSocket upgrade request to `path` with these headers.
pub fn ws_request(addr: SocketAddr, path: &str, headers: &[(&'static str, String)]) -> Request<()> {
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, value.parse().expect("header"));
    }
    request
}

/// A REST client acting with one session.
#[derive(Clone)]
pub struct Api {
    pub addr: SocketAddr,
    pub token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(addr: SocketAddr, token: &str) -> Api {
        Api {
            addr,
            token: token.into(),
            http: reqwest::Client::new(),
        }
    }

    /// Sends a request and returns the status and the JSON body (null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self
            .http
            .request(method, format!("http://{}{}", self.addr, path));
        if !self.token.is_empty() {
            request = request.bearer_auth(&self.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        let json = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A request that must succeed (2xx); returns its body.
    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> serde_json::Value {
        let (status, json) = self.call(method.clone(), path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path} answered {status}: {json}"
        );
        json
    }
}

/// Downloads `path` from the server at `addr` with `token`: status, headers, bytes.
pub async fn download(
    addr: SocketAddr,
    token: &str,
    path: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("download");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.bytes().await.expect("body").to_vec(),
    )
}

/// The error code of an error body.
pub fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

impl TestApp {
    /// A REST client acting as `user`.
    pub async fn api(&self, user: i64) -> Api {
        Api::new(self.addr, &self.token(user).await)
    }

    /// `user` deletes the post at (`group`, `seq`) (their own: no reason needed).
    pub async fn delete_post(&self, user: i64, group: GroupId, seq: Seq) {
        self.api(user)
            .await
            .ok(
                reqwest::Method::POST,
                &format!("/api/v1/groups/{group}/posts/{seq}/delete"),
                Some(serde_json::json!({})),
            )
            .await;
    }

    /// The records of `action` on the fixture facility's audit trail, as its admin sees it.
    pub async fn audit_records(&self, action: &str) -> Vec<serde_json::Value> {
        let path = format!("/api/v1/facilities/{}/audit", self.fixture.facility);
        let records = self
            .api(self.fixture.adam)
            .await
            .ok(reqwest::Method::GET, &path, None)
            .await;
        records
            .as_array()
            .expect("records")
            .iter()
            .filter(|r| r["action"] == action)
            .cloned()
            .collect()
    }

    /// Uploads `bytes` as `user` into `group`: the status and the JSON answer.
    pub async fn upload(
        &self,
        user: i64,
        group: GroupId,
        name: &str,
        bytes: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        let response = reqwest::Client::new()
            .post(self.url(&format!("/api/v1/groups/{group}/files")))
            .query(&[("name", name)])
            .bearer_auth(self.token(user).await)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    /// A REST client with no session.
    pub fn anonymous(&self) -> Api {
        Api::new(self.addr, "")
    }

    /// Creates a user with a password-less account directly in the store.
    pub async fn user(&self, facility: Option<i64>, login: &str, role: Role) -> i64 {
        self.store
            .create_users(&[NewUser {
                facility_id: facility,
                login: login.into(),
                name: format!("{login} さん"),
                profession: "nurse".into(),
                role,
                ..NewUser::default()
            }])
            .await
            .expect("user")[0]
    }

    /// Another approved facility.
    pub async fn facility(&self, name: &str) -> i64 {
        self.store
            .create_facility(&NewFacility {
                name: name.into(),
                kind: FacilityKind::Pharmacy,
            })
            .await
            .expect("facility")
    }
}

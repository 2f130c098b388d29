//! TOTP secrets at rest (issue 20, finding 8): encrypted under the key of
//! `RENKEI_SECRET_KEY_FILE`, which lives outside the database; secrets stored in the clear
//! by earlier versions are encrypted at the next start; a server with another key cannot
//! verify and says why; a key file others may read is refused.
mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use common::second_factor::{self, base32_encode, totp};
use common::{code, Backend, Process, TestApp, PASSWORD};
use renkei::secret::SecretKey;
use serde_json::{json, Value};
use sqlx::Connection as _;

on_both_backends!(
    a_secret_is_stored_encrypted_and_still_logs_in,
    secrets_stored_in_the_clear_are_encrypted_at_start,
    another_key_cannot_verify_and_says_why,
);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn login_with_code(addr: std::net::SocketAddr, code: Option<&str>) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!("http://{addr}/api/v1/session"))
        .json(&json!({"login": "alice", "password": PASSWORD, "code": code}))
        .send()
        .await
        .expect("login");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Alice sets up a second factor on `app`; the secret as the API gave it.
async fn enroll(app: &TestApp) -> Vec<u8> {
    second_factor::enroll(&app.api(app.fixture.alice).await)
        .await
        .0
}

/// Alice's TOTP columns as stored: (secret, pending).
async fn stored(url: &str, user: i64) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let sql = "SELECT totp_secret, totp_pending FROM users WHERE id = $1";
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query_as(sql)
            .bind(user)
            .fetch_one(&mut conn)
            .await
            .expect(sql)
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
        sqlx::query_as(sql)
            .bind(user)
            .fetch_one(&mut conn)
            .await
            .expect(sql)
    }
}

/// Writes `secret` in the clear as the code before the encryption did (and its mark as
/// migration 0010 leaves such rows).
async fn store_in_the_clear(url: &str, user: i64, secret: &[u8]) {
    let sql = "UPDATE users SET totp_secret = $2, totp_pending = NULL, totp_last_step = 0, \
               totp_encrypted = FALSE WHERE id = $1";
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        sqlx::query(sql)
            .bind(user)
            .bind(secret)
            .execute(&mut conn)
            .await
            .expect(sql);
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
        sqlx::query(sql)
            .bind(user)
            .bind(secret)
            .execute(&mut conn)
            .await
            .expect(sql);
    }
}

/// Whether `haystack` holds `needle` anywhere, as bytes.
fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn a_secret_is_stored_encrypted_and_still_logs_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = enroll(&app).await;
    let (in_use, pending) = stored(&app.db.url, app.fixture.alice).await;
    let in_use = in_use.expect("a second factor in use");
    assert_eq!(pending, None);
    // Neither the secret's bytes nor any of its spellings are in the row.
    assert!(
        !holds(&in_use, &secret),
        "the secret is stored in the clear"
    );
    assert!(
        !holds(&in_use, &secret[..8]),
        "part of the secret in the clear"
    );
    assert!(!holds(&in_use, hex(&secret).as_bytes()));
    // The key is outside the database, private to the server's user.
    let key_file = app.db.dir.path().join("secret.key");
    let mode = std::fs::metadata(&key_file)
        .expect("the key file is made at the first start")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let key = SecretKey::read(&key_file).expect("key");
    assert_eq!(
        key.open_totp(app.fixture.alice, &in_use).as_deref(),
        Ok(&secret[..])
    );
    // Bound to the account: moved to bob's row it does not open.
    assert!(key.open_totp(app.fixture.bob, &in_use).is_err());

    let (status, body) = login_with_code(app.addr, None).await;
    assert_eq!((status, code(&body)), (401, "second_factor_required"));
    let (status, body) = login_with_code(app.addr, Some(&totp(&secret, 1))).await;
    assert_eq!(status, 200, "{body}");
    app.stop().await;
}

async fn secrets_stored_in_the_clear_are_encrypted_at_start(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.fixture.alice;
    // A secret as the code before the encryption stored it.
    let secret = b"12345678901234567890";
    store_in_the_clear(&app.db.url, alice, secret).await;
    // Two nodes start at once on the database: the secret is encrypted once.
    let (first, second) = tokio::join!(app.another_node(), app.another_node());
    wait_listening(first.addr).await;
    wait_listening(second.addr).await;
    let (in_use, _) = stored(&app.db.url, alice).await;
    let in_use = in_use.expect("still a second factor");
    assert!(!holds(&in_use, secret), "encrypted at start");
    let key = SecretKey::read(&app.db.dir.path().join("secret.key")).expect("key");
    assert_eq!(
        key.open_totp(alice, &in_use).as_deref(),
        Ok(&secret[..]),
        "encrypted once, under the key file's key"
    );
    second.stop().await;
    // Once: a later start leaves it as it is.
    let third = app.another_node().await;
    wait_listening(third.addr).await;
    third.stop().await;
    assert_eq!(stored(&app.db.url, alice).await.0, Some(in_use));
    // The account still logs in with its authenticator.
    let (status, body) = login_with_code(first.addr, Some(&totp(secret, 0))).await;
    assert_eq!(status, 200, "{body}");
    first.stop().await;
    app.stop().await;
}

async fn wait_listening(addr: std::net::SocketAddr) {
    for _ in 0..200 {
        if reqwest::get(format!("http://{addr}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("node at {addr} not ready");
}

/// The `renkei` binary with `env`, as these tests' in-process servers are configured.
async fn start_logged(env: &[(&str, &str)]) -> Process {
    let mut all = vec![
        ("RENKEI_TWO_FACTOR", "optional"),
        ("RENKEI_AUDIT_SEAL_SECONDS", "0"),
    ];
    all.extend_from_slice(env);
    Process::start(&all).await
}

/// A key file of a random key with `mode`.
fn write_key(path: &Path, mode: u32) {
    let key: String = (0..32)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect();
    std::fs::write(path, format!("{key}\n")).expect("key file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

async fn another_key_cannot_verify_and_says_why(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let secret = enroll(&app).await;
    let ours = SecretKey::read(&app.db.dir.path().join("secret.key"))
        .expect("key")
        .id();
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = dir.path().display().to_string();
    let other = dir.path().join("other.key");
    write_key(&other, 0o600);
    let theirs = SecretKey::read(&other).expect("key").id();
    let other = other.display().to_string();
    let node = start_logged(&[
        ("RENKEI_DATABASE_URL", &app.db.url),
        ("RENKEI_DATA_DIR", &data_dir),
        ("RENKEI_SECRET_KEY_FILE", &other),
    ])
    .await;
    let (status, body) = login_with_code(node.addr, Some(&totp(&secret, 1))).await;
    assert_eq!((status, code(&body)), (500, "internal"), "{body}");
    let logs = node.logs();
    let why =
        format!("it was encrypted under key {ours}, but RENKEI_SECRET_KEY_FILE holds key {theirs}");
    assert!(logs.contains(&why), "{logs}");
    assert!(
        logs.contains("TOTP secrets encrypted under another key"),
        "said at start: {logs}"
    );
    // No secret in any spelling.
    let base32 = base32_encode(&secret);
    assert!(!logs.contains(&base32) && !logs.contains(&hex(&secret)));
    // With the right key the same code works (it was not used up).
    let (status, body) = login_with_code(app.addr, Some(&totp(&secret, 1))).await;
    assert_eq!(status, 200, "{body}");

    // A node without the key file does not make a new one over the database's secrets.
    let missing = dir.path().join("missing.key").display().to_string();
    let (ok, text) = run_once(&[
        ("RENKEI_DATABASE_URL", &app.db.url),
        ("RENKEI_DATA_DIR", &data_dir),
        ("RENKEI_SECRET_KEY_FILE", &missing),
    ]);
    assert!(
        !ok && text.contains("does not exist, but the database holds TOTP secrets"),
        "{text}"
    );
    assert!(!Path::new(&missing).exists());
    app.stop().await;
}

/// Runs `renkei` with `env` until it exits (it should refuse to start): success, output.
fn run_once(env: &[(&str, &str)]) -> (bool, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"));
    command
        .env("RENKEI_LISTEN", "127.0.0.1:0")
        .env("RENKEI_METRICS_LISTEN", "127.0.0.1:0")
        .env("RENKEI_AUDIT_SEAL_SECONDS", "0");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("renkei");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_file_others_may_read_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let data_dir = dir.path().display().to_string();
    let key = dir.path().join("secret.key");
    write_key(&key, 0o644);
    let (ok, text) = run_once(&[("RENKEI_DATA_DIR", &data_dir)]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("may be read by other users (mode 0644)") && text.contains("chmod 600"),
        "{text}"
    );
    // Nor one of the wrong length.
    std::fs::write(&key, "00112233\n").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let (ok, text) = run_once(&[("RENKEI_DATA_DIR", &data_dir)]);
    assert!(!ok && text.contains("expected 64 hex digits"), "{text}");
    // Private and whole, it serves.
    write_key(&key, 0o600);
    let node = start_logged(&[("RENKEI_DATA_DIR", &data_dir)]).await;
    assert!(reqwest::get(format!("http://{}/healthz", node.addr))
        .await
        .expect("serves")
        .status()
        .is_success());
}

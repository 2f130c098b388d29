//! TLS to the databases: the server against the testbed's own PostgreSQL and Redis started
//! with TLS on loopback (certificates from an rcgen authority of their own).
//!
//! PostgreSQL with `sslmode=verify-full` and the authority in `sslrootcert`, Redis with
//! `rediss://`, an ACL user allowed only the documented commands and
//! `RENKEI_REDIS_CA_FILE`. A certificate not signed by the configured authority, or not
//! made for the host connected to, stops the server at start with an error saying so,
//! never a hang and never a password in the message.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Backend, Client, TestApp, TestDb};
use renkei::config::Config;
use renkei_testbed::{OwnPostgres, OwnRedis, TestCa, REDIS_PASSWORD};
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;

/// Starts a server with `config` and returns why it refused to start; a start that hangs
/// or succeeds fails the test.
async fn refusal(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let shutdown = CancellationToken::new();
    let started = tokio::time::timeout(
        Duration::from_secs(20),
        renkei::run(listener, config, shutdown.clone()),
    )
    .await;
    shutdown.cancel();
    match started {
        Ok(Err(err)) => err.to_string(),
        Ok(Ok(())) => panic!("the server started and stopped"),
        Err(_) => panic!("the server neither started nor refused within 20 s"),
    }
}

/// A CA file of an authority that signed nothing the servers present.
fn stranger_ca(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("stranger.pem");
    TestCa::new("Someone else's CA")
        .expect("a CA")
        .write_pem(&path)
        .expect("written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_round_trips_over_verify_full_tls_to_postgresql() {
    let pg = OwnPostgres::start_tls()
        .await
        .expect("a private PostgreSQL with TLS");
    let db = TestDb::on_postgres(&pg.url()).await;
    assert!(db.url.contains("sslmode=verify-full&sslrootcert="));
    let name = db
        .url
        .split_once('?')
        .and_then(|(base, _)| base.rsplit_once('/'))
        .map(|(_, name)| name.to_string())
        .expect("the database's name");
    let app = TestApp::spawn_in(db, |_| {}).await;
    let g = app.fixture.patient_group;
    let mut bob = app.client(app.fixture.bob).await;
    bob.sync(g, 0).await;
    let mut alice = app.client(app.fixture.alice).await;
    let seq = alice.post_acked(g, "tls-1", "訪問記録").await;
    assert_eq!(bob.next_event().await.seq, seq);
    // Read back from the store by a client that syncs from the start.
    let mut dave = app.client(app.fixture.dave).await;
    let events = dave.sync(g, 0).await;
    assert!(events.iter().any(|e| e.seq == seq
        && matches!(
            &e.data,
            renkei_protocol::EventData::Post { text, .. } if text == "訪問記録"
        )));

    // Every connection of the server to its database is encrypted (the cluster refuses
    // TCP without TLS anyway: `hostssl` only).
    let mut conn = sqlx::PgConnection::connect(&pg.url())
        .await
        .expect("admin connection");
    let (plain, encrypted): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE NOT s.ssl), count(*) FILTER (WHERE s.ssl) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .expect("pg_stat_ssl");
    assert_eq!(plain, 0);
    assert!(encrypted > 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_with_an_unknown_authority_or_another_host_name_is_refused_at_start() {
    let pg = OwnPostgres::start_tls()
        .await
        .expect("a private PostgreSQL with TLS");
    let db = TestDb::on_postgres(&pg.url()).await;
    let good_ca = pg.ca_file().expect("TLS").display().to_string();
    let dir = tempfile::tempdir().expect("dir");

    // A CA that did not sign the server's certificate.
    let mut config = common::test_config(&db);
    let wrong_ca = db
        .url
        .replace(&good_ca, &stranger_ca(&dir).display().to_string());
    config.database_url = Some(wrong_ca);
    let err = refusal(config).await;
    assert!(err.contains("database unavailable"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");

    // The right CA, but the certificate is for 127.0.0.1, not for `localhost`.
    let mut config = common::test_config(&db);
    config.database_url = Some(db.url.replace("@127.0.0.1:", "@localhost:"));
    let err = refusal(config).await;
    assert!(err.contains("database unavailable"), "{err}");
    assert!(
        err.contains("NotValidForName") || err.contains("not valid for name"),
        "{err}"
    );

    // `verify-full` refuses no right certificate: the same URL starts.
    let app = TestApp::spawn_in(db, |_| {}).await;
    app.stop().await;
}

/// Two nodes on one Redis that speaks only TLS, as its ACL user.
async fn tls_cluster(redis: &OwnRedis, prefix: &str) -> TestApp {
    TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis.url());
        c.redis_ca_file = redis.ca_file();
        c.redis_prefix = prefix.into();
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_deliver_a_post_over_rediss_as_an_acl_user() {
    let (_, prefix) = common::redis();
    let port = renkei_testbed::free_port().expect("port");
    let redis = OwnRedis::start_tls(port, &format!("{prefix}:*"))
        .await
        .expect("a private Redis with TLS");
    assert!(redis.url().starts_with("rediss://renkei:"));
    let a = tls_cluster(&redis, &prefix).await;
    let b = a.another_node().await;
    let f = a.fixture.clone();
    let g = f.patient_group;
    let mut on_b = Client::connect(b.addr, &a.token(f.dave).await).await;
    on_b.sync(g, 0).await;
    let mut alice = a.client(f.alice).await;
    let seq = alice.post_acked(g, "rediss-1", "申し送り").await;
    assert_eq!(on_b.next_event().await.seq, seq);
    // It came through Redis, not from the store's periodic check.
    assert!(common::metric(b.addr, "renkei_bus_received_total").await >= 1.0);
    assert_eq!(common::metric(b.addr, "renkei_bus_connected").await, 1.0);
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_with_an_unknown_authority_or_a_wrong_password_is_refused_at_start() {
    let (_, prefix) = common::redis();
    let port = renkei_testbed::free_port().expect("port");
    let redis = OwnRedis::start_tls(port, &format!("{prefix}:*"))
        .await
        .expect("a private Redis with TLS");
    let db = TestDb::new(Backend::Postgres).await;
    let dir = tempfile::tempdir().expect("dir");

    let mut config = common::test_config(&db);
    config.redis_url = Some(redis.url());
    config.redis_prefix = prefix.clone();
    config.redis_ca_file = Some(stranger_ca(&dir));
    let err = refusal(config).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    assert!(err.contains("rediss://renkei:***@127.0.0.1"), "{err}");
    assert!(!err.contains(REDIS_PASSWORD), "{err}");

    // Without the CA file the system's authorities are asked, and none signed it.
    let mut config = common::test_config(&db);
    config.redis_url = Some(redis.url());
    config.redis_prefix = prefix.clone();
    let err = refusal(config).await;
    assert!(err.contains("rediss://renkei:***@127.0.0.1"), "{err}");
    assert!(!err.contains(REDIS_PASSWORD), "{err}");

    let mut config = common::test_config(&db);
    let wrong = redis.url().replace(REDIS_PASSWORD, "not-the-password");
    config.redis_url = Some(wrong);
    config.redis_prefix = prefix;
    config.redis_ca_file = redis.ca_file();
    let err = refusal(config).await;
    assert!(err.contains("rediss://renkei:***@127.0.0.1"), "{err}");
    assert!(!err.contains("not-the-password"), "{err}");
}

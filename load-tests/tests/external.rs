//! `renkei-load` against nodes it did not start: a population saved by `populate` into the
//! deployment's PostgreSQL, two nodes on it fanning out through Redis, and a quick fan-out
//! given their URLs. It must see every acknowledged post delivered once and read the
//! nodes' memory from their `/metrics` (on their metrics addresses).
//!
//! Reads `RENKEI_TEST_POSTGRES_URL` and `RENKEI_TEST_REDIS_URL` (defaults: the local
//! services) and fails, never skips, when they are unreachable.

use std::net::SocketAddr;
use std::process::Command;

use clap::Parser as _;
use sqlx::Connection as _;
use tokio_util::sync::CancellationToken;

/// A fresh database on the test PostgreSQL server.
async fn fresh_database() -> (String, String) {
    let admin = std::env::var("RENKEI_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!(
        "renkei_t_load_{}_{}",
        std::process::id(),
        renkei_domain::clock::now_ms()
    );
    let mut conn = sqlx::PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is unreachable ({e})"));
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    (admin.clone(), format!("{base}/{name}"))
}

/// A node in this process, on `database` and Redis: its address and its metrics address.
async fn node(
    database: &str,
    prefix: &str,
    shutdown: &CancellationToken,
) -> (SocketAddr, SocketAddr) {
    let mut config = renkei::config::Cli::try_parse_from(["renkei"])
        .expect("defaults")
        .config;
    config.database_url = Some(database.into());
    config.redis_url = Some(
        std::env::var("RENKEI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    );
    config.redis_prefix = prefix.into();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let metrics = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let metrics_addr = metrics.local_addr().expect("addr");
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        renkei::run_with(listener, metrics, config, shutdown)
            .await
            .expect("node runs")
    });
    for _ in 0..200 {
        if reqwest::get(format!("http://{addr}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return (addr, metrics_addr);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("node did not become ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quick_fanout_against_two_nodes_given_by_url() {
    let (admin, database) = fresh_database().await;
    let dir = tempfile::tempdir().expect("dir");
    let population = dir.path().join("population.json");
    let load = env!("CARGO_BIN_EXE_renkei-load");

    let populated = Command::new(load)
        .args([
            "populate",
            "--database",
            &database,
            "--groups",
            "20",
            "--members",
            "5",
        ])
        .arg("--out")
        .arg(&population)
        .output()
        .expect("renkei-load populate");
    assert!(populated.status.success(), "{populated:?}");

    let shutdown = CancellationToken::new();
    let prefix = format!("renkei-test-load-{}", std::process::id());
    let (a, a_metrics) = node(&database, &prefix, &shutdown).await;
    let (b, b_metrics) = node(&database, &prefix, &shutdown).await;

    let run = tokio::process::Command::new(load)
        .args(["fanout", "--quick", "--json"])
        .args([
            "--url",
            &format!("http://{a}"),
            "--url",
            &format!("http://{b}"),
            "--metrics-url",
            &format!("http://{a_metrics}"),
            "--metrics-url",
            &format!("http://{b_metrics}"),
        ])
        .arg("--population")
        .arg(&population)
        .output()
        .await
        .expect("renkei-load fanout");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.lines().last().expect("a JSON line")).expect("JSON");
    assert_eq!(report["connections"], 100, "{report}");
    assert_eq!(
        (report["groups"].as_u64(), report["members"].as_u64()),
        (Some(20), Some(5))
    );
    assert!(
        report["target"]
            .as_str()
            .is_some_and(|t| t.ends_with("×2 nodes")),
        "{report}"
    );
    assert!(
        report["posts_acked"].as_u64().is_some_and(|n| n > 0),
        "{report}"
    );
    assert_eq!(
        report["deliveries"], report["deliveries_expected"],
        "{report}"
    );
    assert_eq!(
        (report["lost"].as_u64(), report["duplicates"].as_u64()),
        (Some(0), Some(0))
    );
    // Memory and CPU came from the nodes' /metrics, on their metrics addresses.
    assert!(
        report["server_rss_mib"].as_f64().is_some_and(|m| m > 0.0),
        "{report}"
    );
    assert!(
        report["server_cpu_s"].as_f64().is_some_and(|s| s > 0.0),
        "{report}"
    );

    shutdown.cancel();
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
        let name = database.rsplit_once('/').map_or("", |(_, name)| name);
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

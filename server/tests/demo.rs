//! `renkei demo` end to end: the real binary fills an empty data directory and prints the
//! logins; a second run refuses; the server then serves the demo city to those logins.

mod common;

use std::process::Command;

use common::Client;
use renkei_protocol::{EventData, GroupKind, LoginResponse};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_city_is_ready_to_chat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run_demo = || {
        Command::new(env!("CARGO_BIN_EXE_renkei"))
            .arg("demo")
            .env("RENKEI_DATA_DIR", dir.path())
            .env_remove("RENKEI_DATABASE_URL")
            .output()
            .expect("run renkei demo")
    };
    let first = run_demo();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8(first.stdout).expect("utf-8");
    let logins: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let login = words.next()?;
            let password = words.next()?;
            login
                .contains('.')
                .then(|| (login.to_string(), password.to_string()))
        })
        .collect();
    assert_eq!(logins.len(), 10, "{stdout}");
    let second = run_demo();
    assert!(
        !second.status.success(),
        "a used database is not filled twice"
    );
    assert!(String::from_utf8_lossy(&second.stderr).contains("empty database"));

    let mut config = common::default_config();
    config.data_dir = dir.path().to_path_buf();
    config.database_url = None;
    // The operator would set up a second factor first (accounts.rs tests that).
    config.two_factor = renkei_domain::two_factor::Requirement::Optional;
    config.metrics_listen = "127.0.0.1:0".parse().expect("addr");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(renkei::run(listener, config, shutdown.clone()));

    let password_of = |login: &str| {
        logins
            .iter()
            .find(|(l, _)| l == login)
            .map(|(_, p)| p.clone())
            .expect("login")
    };
    let login = async |login: &str| -> LoginResponse {
        let body = serde_json::json!({ "login": login, "password": password_of(login) });
        let mut response = None;
        for _ in 0..100 {
            match reqwest::Client::new()
                .post(format!("http://{addr}/api/v1/session"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) => {
                    response = Some(r);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
            }
        }
        let response = response.expect("server answers");
        assert_eq!(response.status(), 200, "{login}");
        response.json().await.expect("login body")
    };
    let nurse = login("sakura.ns.suzuki").await;
    let helper = login("midori.hp.yoshida").await;
    let nurse_token = nurse.token.clone();
    let mut nurse = Client::connect(addr, &nurse.token).await;

    // A week of posts in her groups, with confirmations and a file, dated over the past
    // week by the server's clock.
    let now = renkei_domain::clock::now_ms();
    let groups: Vec<_> = nurse.welcome.groups.iter().map(|g| g.id).collect();
    let mut events = Vec::new();
    for group in groups {
        events.extend(nurse.sync(group, 0).await);
    }
    let posts: Vec<_> = events
        .iter()
        .filter(|e| matches!(e.data, EventData::Post { .. }))
        .collect();
    assert!(posts.len() >= 10, "{} posts", posts.len());
    assert!(posts
        .iter()
        .all(|p| p.at < now && p.at > now - 8 * 86_400_000));
    let days: std::collections::HashSet<i64> =
        posts.iter().map(|p| (now - p.at) / 86_400_000).collect();
    assert!(days.len() >= 5, "spread over the week: {days:?}");
    assert!(
        events
            .iter()
            .any(|e| matches!(e.data, EventData::PostConfirmed { .. })),
        "a confirmation"
    );
    let file = posts
        .iter()
        .find_map(|p| match &p.data {
            EventData::Post { file, .. } => file.clone(),
            _ => None,
        })
        .expect("a post with a file");
    assert_eq!(file.media_type, "image/png");
    assert!(file.thumbnail);
    let download = reqwest::Client::new()
        .get(format!("http://{addr}/api/v1/files/{}", file.id))
        .bearer_auth(&nurse_token)
        .send()
        .await
        .expect("download");
    assert_eq!(download.status(), 200);
    let bytes = download.bytes().await.expect("bytes");
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "the file's bytes are in the file store"
    );

    let mut helper = Client::connect(addr, &helper.token).await;

    // 中村 次郎 様 has both of them; the helper's list has patient groups only.
    let shared = nurse
        .welcome
        .groups
        .iter()
        .find(|g| helper.welcome.groups.iter().any(|h| h.id == g.id))
        .expect("a shared patient group")
        .clone();
    assert_eq!(shared.kind, GroupKind::Patient);
    assert_eq!(shared.patient_name.as_deref(), Some("中村 次郎"));
    helper.sync(shared.id, 0).await;
    nurse
        .post_acked(
            shared.id,
            "demo-1",
            "本日の訪問で血圧 130/82。服薬確認済み。",
        )
        .await;
    let event = helper.next_event().await;
    assert_eq!(event.group, shared.id);

    let admin = login("city.operator").await;
    let admin = Client::connect(addr, &admin.token).await;
    let room = admin
        .welcome
        .groups
        .iter()
        .find(|g| g.kind == GroupKind::Free)
        .expect("admins' room");
    assert_eq!(room.name, "MCS管理者の部屋");

    shutdown.cancel();
    drop((nurse, helper, admin));
    server.await.expect("server task").expect("server ran");
}

//! Backup and restore, with the commands `docs/operations.md` gives: a backup taken while
//! the server runs, restored into an empty instance, holds every post, tombstone,
//! confirmation and file, and an audit trail whose chain and seals verify.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{Backend, Client, Node, TestApp, TestDb};
use renkei::store::{EventRecord, Store};
use renkei_protocol::GroupId;
use reqwest::Method;

/// Every event of `group`, from the first.
async fn events(store: &dyn Store, group: GroupId) -> Vec<EventRecord> {
    store
        .events_after(group, 0, i64::MAX, 100_000)
        .await
        .expect("events")
}

/// Runs a command; panics with its output unless it succeeds.
fn run(program: &str, args: &[&str]) {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} could not run: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Backs up the running instance's database and its file store, and restores them into
/// an empty instance, as the operations guide says.
async fn backup_and_restore(backend: Backend, url: &str, data: &Path, dir: &Path) -> TestDb {
    let restored = match backend {
        Backend::Sqlite => {
            let file = dir.join("renkei-backup.db");
            let file = file.to_str().expect("path");
            run(
                env!("CARGO_BIN_EXE_renkei"),
                &["--database-url", url, "backup", "--to", file],
            );
            // Restoring is copying the file into an empty data directory.
            let restored = TestDb::new(Backend::Sqlite).await;
            let target = restored.url.trim_start_matches("sqlite://");
            std::fs::copy(file, target).expect("copy the backup into place");
            restored
        }
        Backend::Postgres => {
            let file = dir.join("renkei.dump");
            let file = file.to_str().expect("path");
            run("pg_dump", &["--format=custom", "--file", file, url]);
            let restored = TestDb::new(Backend::Postgres).await;
            run(
                "pg_restore",
                &[
                    "--no-owner",
                    "--exit-on-error",
                    "--dbname",
                    &restored.url,
                    file,
                ],
            );
            restored
        }
    };
    // The file store after the database: every file the copy names is in it.
    let files = dir.join("files");
    let (from, to) = (data.join("files"), files.to_str().expect("path"));
    run("cp", &["-a", from.to_str().expect("path"), to]);
    run(
        "cp",
        &["-a", to, restored.dir.path().to_str().expect("path")],
    );
    restored
}

async fn a_backup_restores_into_an_empty_instance(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut bob = app.client(f.bob).await;
    for i in 0..30 {
        bob.post_acked(
            g,
            &format!("b-{i}"),
            &format!("訪問記録 {i}: 血圧 12{i}/80"),
        )
        .await;
    }
    let mut alice = app.client(f.alice).await;
    alice
        .post_acked(f.free_group, "a-1", "明日の訪問時間の変更")
        .await;
    let photo = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/screenshots/members.png"
    ))
    .expect("a PNG");
    let (_, uploaded) = app
        .upload(f.alice, f.free_group, "photo.png", photo.clone())
        .await;
    let file: renkei_protocol::FileRef = serde_json::from_value(uploaded).expect("uploaded");
    alice
        .send(&renkei_protocol::ClientMessage::Post {
            group: f.free_group,
            client_id: "a-2".into(),
            text: "写真".into(),
            file: Some(file.id),
        })
        .await;
    while !matches!(alice.recv().await, renkei_protocol::ServerMessage::Ack(_)) {}
    let alice_api = app.api(f.alice).await;
    alice_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{g}/posts/3/confirm"),
            None,
        )
        .await;
    app.delete_post(f.bob, g, 5).await;
    // Audited calls, so the trail has records to chain.
    app.api(f.adam)
        .await
        .ok(
            Method::GET,
            &format!("/api/v1/facilities/{}/audit", f.facility),
            None,
        )
        .await;
    let (records, head) = renkei::audit::verify(app.store.as_ref())
        .await
        .expect("read")
        .expect("the original chain verifies");
    assert!(records > 0);

    let dir = tempfile::tempdir().expect("temp dir");
    let restored_db =
        backup_and_restore(backend, &app.db.url, &app.config.data_dir, dir.path()).await;
    let restored: Arc<dyn Store> = renkei::store::open(&restored_db.url)
        .await
        .expect("open the restored database");

    for group in [g, f.free_group, f.archived_group] {
        assert_eq!(
            events(restored.as_ref(), group).await,
            events(app.store.as_ref(), group).await,
            "group {group} restored event for event"
        );
    }
    assert_eq!(events(restored.as_ref(), g).await.len(), 32);
    assert_eq!(
        renkei::audit::verify(restored.as_ref())
            .await
            .expect("read")
            .expect("the restored chain verifies"),
        (records, head),
        "the same trail, up to the same head"
    );
    renkei::seal::verify(restored.as_ref())
        .await
        .expect("read")
        .expect("the restored seals verify");

    // A server on the restored database serves it: a member catches up on everything.
    let node = Node::start_with(common::test_config(&restored_db)).await;
    let token = common::session(restored.as_ref(), f.dave).await;
    let mut dave = Client::connect(node.addr, &token).await;
    let caught_up = dave.sync(g, 0).await;
    assert_eq!(caught_up.len(), 32);
    assert!(caught_up
        .iter()
        .any(|e| matches!(&e.data, renkei_protocol::EventData::DeletedPost { .. })));
    dave.post_acked(g, "d-1", "復元後の最初の記録").await;
    // The file came back with its record.
    let token = common::session(restored.as_ref(), f.alice).await;
    let (_, _, bytes) =
        common::download(node.addr, &token, &format!("/api/v1/files/{}", file.id)).await;
    assert_eq!(bytes, photo);
    node.stop().await;

    // A second backup to the same file is refused rather than overwriting it.
    if backend == Backend::Sqlite {
        let file = dir.path().join("renkei-backup.db");
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_renkei"))
            .args([
                "--database-url",
                &app.db.url,
                "backup",
                "--to",
                file.to_str().expect("path"),
            ])
            .output()
            .expect("run");
        assert!(!output.status.success());
        assert!(String::from_utf8_lossy(&output.stderr).contains("exists already"));
    }
}

on_both_backends!(a_backup_restores_into_an_empty_instance);

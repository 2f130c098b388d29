//! Deleting posts and the archive (保管庫), black-box: a deletion reaches every member at
//! once and those who catch up later, the text leaves every table (and, on SQLite, the
//! database files), the record of the deletion stays; archived groups take no posts,
//! stay readable to those entitled, and come back when restored.

mod common;

use common::{code, Backend, TestApp};
use renkei_protocol::{ClientMessage, ErrorCode, EventData, Role};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest as _, Sha256};

on_both_backends!(
    retention_purges_old_archived_groups_for_good,
    the_archive_notice_shows_in_the_review_and_a_post_withdraws_it,
    an_archive_can_be_closed_to_its_members,
    members_report_and_admins_watch_delete_or_dismiss,
    a_deleted_post_leaves_the_system_and_its_record_stays,
    an_archived_group_takes_no_posts_and_comes_back,
);

/// Every value of every table, as text, for the erase check.
async fn every_value(app: &TestApp, backend: Backend) -> String {
    use sqlx::{Column as _, Row as _};
    let mut all = String::new();
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.expect("open");
            let tables: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'table'")
                    .fetch_all(&pool)
                    .await
                    .expect("tables");
            for (table,) in tables {
                let rows = sqlx::query(&format!("SELECT * FROM \"{table}\""))
                    .fetch_all(&pool)
                    .await
                    .expect("rows");
                for row in rows {
                    for column in row.columns() {
                        let i = column.ordinal();
                        if let Ok(Some(text)) = row.try_get::<Option<String>, _>(i) {
                            all.push_str(&text);
                        } else if let Ok(Some(bytes)) = row.try_get::<Option<Vec<u8>>, _>(i) {
                            all.push_str(&String::from_utf8_lossy(&bytes));
                        }
                    }
                }
            }
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.expect("open");
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public'",
            )
            .fetch_all(&pool)
            .await
            .expect("tables");
            for (table,) in tables {
                // Each row as its text representation: every column, whatever its type.
                let rows: Vec<(String,)> =
                    sqlx::query_as(&format!("SELECT t::text FROM \"{table}\" t"))
                        .fetch_all(&pool)
                        .await
                        .expect("rows");
                for (row,) in rows {
                    all.push_str(&row);
                }
            }
        }
    }
    all
}

async fn a_deleted_post_leaves_the_system_and_its_record_stays(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let adam = f.adam;
    let secret = "誤送信：別の患者さんの記録 ZX-4471";
    let mut alice = app.client(f.alice).await;
    let mut bob = app.client(f.bob).await;
    bob.sync(f.patient_group, 0).await;
    let seq = alice.post_acked(f.patient_group, "wrong-1", secret).await;
    let other = alice
        .post_acked(f.patient_group, "right-1", "正しい記録")
        .await;
    assert_eq!(bob.next_event().await.seq, seq);
    assert_eq!(bob.next_event().await.seq, other);

    // Others may not delete it; the author may, without a reason.
    let bob_api = app.api(f.bob).await;
    let (status, body) = bob_api
        .post(
            &format!("/api/v1/groups/{}/posts/{seq}/delete", f.patient_group),
            json!({}),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let alice_api = app.api(f.alice).await;
    let (status, _) = alice_api
        .post(
            &format!("/api/v1/groups/{}/posts/{seq}/delete", f.patient_group),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = alice_api
        .post(
            &format!("/api/v1/groups/{}/posts/{seq}/delete", f.patient_group),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "once");

    // Every connected member sees it at once…
    let event = bob.next_event().await;
    assert!(
        matches!(event.data, EventData::PostDeleted { seq: s, ref by } if s == seq && by.id == f.alice)
    );
    // …and one who catches up later finds a tombstone in its place.
    let mut dave = app.client(f.dave).await;
    let history = dave.sync(f.patient_group, 0).await;
    let tombstone = history
        .iter()
        .find(|e| e.seq == seq)
        .expect("the place stays");
    assert!(
        matches!(&tombstone.data, EventData::DeletedPost { author, deleted_by, .. } if author.id == f.alice && deleted_by.id == f.alice)
    );
    assert!(!serde_json::to_string(&history)
        .expect("json")
        .contains("ZX-4471"));

    // A moderator deletes another's post, with a reason only.
    let adam_api = app.api(adam).await;
    let (status, _) = adam_api
        .post(
            &format!("/api/v1/groups/{}/posts/{other}/delete", f.patient_group),
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "a moderator gives a reason");
    adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/posts/{other}/delete", f.patient_group),
            Some(json!({"reason": "患者取り違えのため"})),
        )
        .await;

    // The text is nowhere; who deleted what, when and why is, with the text's hash.
    let everything = every_value(&app, backend).await;
    assert!(
        !everything.contains("ZX-4471"),
        "the text is erased from every table"
    );
    assert!(
        everything.contains("患者取り違えのため"),
        "the reason is kept"
    );
    let hash = Sha256::digest(secret.as_bytes());
    let recorded: Vec<(i64, Vec<u8>)> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.expect("open");
            sqlx::query_as("SELECT deleted_by, content_hash FROM deletions WHERE seq = $1")
                .bind(seq)
                .fetch_all(&pool)
                .await
                .expect("deletions")
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.expect("open");
            sqlx::query_as("SELECT deleted_by, content_hash FROM deletions WHERE seq = $1")
                .bind(seq)
                .fetch_all(&pool)
                .await
                .expect("deletions")
        }
    };
    assert_eq!(recorded, [(f.alice, hash.to_vec())]);
    assert_files_free_of(&app, backend, "ZX-4471");
}

/// On SQLite, not even the database files keep `text` (secure_delete and a checkpoint
/// of the log after every erase).
fn assert_files_free_of(app: &TestApp, backend: Backend, text: &str) {
    if backend != Backend::Sqlite {
        return;
    }
    let path = app.db.url.trim_start_matches("sqlite://").to_string();
    for file in [path.clone(), format!("{path}-wal")] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        let needle = text.as_bytes();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "{file} still holds {text:?}"
        );
    }
}

async fn an_archived_group_takes_no_posts_and_comes_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let adam = f.adam;
    let other = app.facility("ひまわり訪問看護").await;
    let ben = app.user(Some(other), "ben@example.jp", Role::Staff).await;
    let adam_api = app.api(adam).await;
    let mut alice = app.client(f.alice).await;
    alice.sync(f.patient_group, 0).await;
    alice.post_acked(f.patient_group, "a-1", "最後の訪問").await;

    let (status, _) = app
        .api(f.alice)
        .await
        .post(
            &format!("/api/v1/groups/{}/archive", f.patient_group),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "staff do not archive");
    let (status, _) = adam_api
        .post(
            &format!("/api/v1/groups/{}/archive", f.free_group),
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "only patient groups");
    let archived = adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/archive", f.patient_group),
            None,
        )
        .await;
    assert_eq!(archived["summary"]["archived"], true);
    let event = alice.next_event().await;
    assert!(matches!(event.data, EventData::GroupArchived { by: Some(ref by) } if by.id == adam));
    alice.post(f.patient_group, "a-2", "保管後").await;
    assert_eq!(alice.next_error().await.code, ErrorCode::GroupArchived);
    let (status, _) = adam_api
        .post(
            &format!("/api/v1/groups/{}/archive", f.patient_group),
            json!({}),
        )
        .await;
    assert_eq!(status, 409);

    // Readable in the archive view by the owning facility's admin (not a member), not by
    // an outsider.
    let listed = adam_api.ok(Method::GET, "/api/v1/archive", None).await;
    assert!(listed
        .as_array()
        .is_some_and(|l| l.iter().any(|g| g["id"] == f.patient_group)));
    let page = adam_api
        .ok(
            Method::GET,
            &format!("/api/v1/groups/{}/history?limit=10", f.patient_group),
            None,
        )
        .await;
    assert!(page.to_string().contains("最後の訪問"));
    let ben_api = app.api(ben).await;
    let (status, _) = ben_api
        .get(&format!("/api/v1/groups/{}/history", f.patient_group))
        .await;
    assert_eq!(status, 403);
    let listed = ben_api.ok(Method::GET, "/api/v1/archive", None).await;
    assert_eq!(listed, json!([]));
    // Members keep reading it.
    alice
        .send(&ClientMessage::History {
            group: f.patient_group,
            before: None,
            limit: Some(5),
        })
        .await;
    assert!(matches!(
        alice.recv().await,
        renkei_protocol::ServerMessage::Page { .. }
    ));

    let restored = adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/restore", f.patient_group),
            None,
        )
        .await;
    assert_eq!(restored["summary"]["archived"], false);
    let event = alice.next_event().await;
    assert!(matches!(event.data, EventData::GroupRestored { .. }));
    alice
        .post_acked(f.patient_group, "a-3", "再開しました")
        .await;
    let (status, _) = adam_api
        .get(&format!("/api/v1/groups/{}/history", f.patient_group))
        .await;
    assert_eq!(
        status, 403,
        "not archived: the archive view is closed to non-members"
    );
}

/// A deletion on one node reaches members on another at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_reaches_every_node() {
    let (redis_url, prefix) = common::redis();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis_url);
        c.redis_prefix = prefix;
    })
    .await;
    let f = app.fixture.clone();
    let b = app.another_node().await;
    let mut bob_on_b = common::Client::connect(b.addr, &app.token(f.bob).await).await;
    bob_on_b.sync(f.patient_group, 0).await;
    let mut alice = app.client(f.alice).await;
    let seq = alice.post_acked(f.patient_group, "n-1", "消す投稿").await;
    assert_eq!(bob_on_b.next_event().await.seq, seq);
    app.api(f.alice)
        .await
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/posts/{seq}/delete", f.patient_group),
            Some(json!({})),
        )
        .await;
    let event = bob_on_b.next_event().await;
    assert!(matches!(event.data, EventData::PostDeleted { seq: s, .. } if s == seq));
    b.stop().await;
}

/// The archive process, on two nodes sharing one database: an inactive patient group gets
/// one notice, then is archived once, live for its members; `--dry-run` changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_process_gives_notice_then_archives_once_across_nodes() {
    let (redis_url, prefix) = common::redis();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis_url);
        c.redis_prefix = prefix;
    })
    .await;
    let f = app.fixture.clone();

    // What it would do, without doing it: with no inactivity allowed, every patient group
    // gets its notice.
    let mut config = app.config.clone();
    config.archive_after_days = 0;
    config.archive_notice_days = 14;
    let plan = renkei::archive::dry_run(app.store.as_ref(), &config)
        .await
        .expect("dry run");
    assert!(
        plan.contains(&format!("group {} 山田 太郎: notice", f.patient_group)),
        "{plan}"
    );
    assert_eq!(
        app.store
            .last_seqs()
            .await
            .expect("seqs")
            .iter()
            .find(|(g, _)| *g == f.patient_group)
            .map(|(_, s)| *s),
        Some(0),
        "a dry run changes nothing"
    );

    // Two more nodes run the process every second, with no waiting periods.
    let mut config = app.config.clone();
    config.archive_after_days = 0;
    config.archive_notice_days = 0;
    config.archive_job_seconds = 1;
    let mut alice = app.client(f.alice).await;
    alice.sync(f.patient_group, 0).await;
    let nodes = [
        common::Node::start_with(config.clone()).await,
        common::Node::start_with(config).await,
    ];
    let notice = alice.next_event().await;
    assert!(
        matches!(notice.data, EventData::ArchiveNotice { .. }),
        "{notice:?}"
    );
    let archived = alice.next_event().await;
    assert!(
        matches!(archived.data, EventData::GroupArchived { by: None }),
        "{archived:?}"
    );
    // Two more runs of the process (whichever node claims them): nothing more happens.
    let pool = sqlx::PgPool::connect(&app.db.url).await.expect("open");
    let last_run = async || -> i64 {
        sqlx::query_as::<_, (i64,)>("SELECT last_run_at FROM jobs WHERE name = 'archive'")
            .fetch_one(&pool)
            .await
            .expect("the job's row")
            .0
    };
    let mut runs = vec![last_run().await];
    for _ in 0..100 {
        if runs.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = last_run().await;
        if Some(&now) != runs.last() {
            runs.push(now);
        }
    }
    assert_eq!(runs.len(), 3, "two more runs were claimed: {runs:?}");
    let events = app
        .store
        .events_after(f.patient_group, 0, i64::MAX, 100)
        .await
        .expect("events");
    assert_eq!(events.len(), 2, "one notice and one archiving: {events:?}");
    // Both steps are on the audit trail once, with the system as the actor.
    let trail = app
        .store
        .search_audit(&renkei::store::AuditFilter {
            group: Some(f.patient_group),
            limit: 100,
            ..Default::default()
        })
        .await
        .expect("trail");
    let mut steps: Vec<(&str, Option<i64>)> = trail
        .iter()
        .filter(|r| r.entry.action.starts_with("archive process"))
        .map(|r| (r.entry.action.as_str(), r.entry.actor))
        .collect();
    steps.sort_unstable();
    assert_eq!(
        steps,
        [
            ("archive process: archive", None),
            ("archive process: notice", None)
        ]
    );
    alice.post(f.patient_group, "late", "保管後").await;
    assert_eq!(alice.next_error().await.code, ErrorCode::GroupArchived);
    for node in nodes {
        node.stop().await;
    }
}

async fn members_report_and_admins_watch_delete_or_dismiss(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let adam = app.api(f.adam).await;
    let other = app.facility("ひまわり訪問看護").await;
    let beth = app
        .api(app.user(Some(other), "beth@example.jp", Role::Admin).await)
        .await;
    let mut alice = app.client(f.alice).await;
    let bad = alice
        .post_acked(f.patient_group, "m-1", "不適切な投稿 AB-77")
        .await;
    let fine = alice
        .post_acked(f.patient_group, "m-2", "普通の記録 CD-88 100%")
        .await;
    let bob = app.api(f.bob).await;
    let report = |seq: i64, reason: &str| {
        let bob = bob.clone();
        let body = json!({"reason": reason});
        let path = format!("/api/v1/groups/{}/posts/{seq}/report", f.patient_group);
        async move { bob.post(&path, body).await }
    };

    // Members report, with a reason; others cannot.
    let (status, _) = report(bad, " ").await;
    assert_eq!(status, 400);
    let (status, reported) = report(bad, "他の患者さんの情報が含まれています").await;
    assert_eq!(status, 201, "{reported}");
    assert_eq!(reported["state"], "open");
    assert_eq!(reported["text"], "不適切な投稿 AB-77");
    let (status, body) = app
        .api(f.carol)
        .await
        .post(
            &format!("/api/v1/groups/{}/posts/{bad}/report", f.patient_group),
            json!({"reason": "x"}),
        )
        .await;
    assert_eq!((status, code(&body)), (403, "not_member"));
    let (status, _) = report(999, "ない投稿").await;
    assert_eq!(status, 404);

    // The owning facility's admin has the queue and the monitoring view; others do not.
    let reports_path = format!("/api/v1/facilities/{}/reports?state=open", f.facility);
    let (status, _) = app.api(f.alice).await.get(&reports_path).await;
    assert_eq!(status, 403);
    let (status, _) = beth.get(&reports_path).await;
    assert_eq!(status, 403);
    let queue = adam.ok(Method::GET, &reports_path, None).await;
    assert_eq!(queue.as_array().map(Vec::len), Some(1));
    assert_eq!(queue[0]["reporter"]["id"], f.bob);
    let watch = |query: String| {
        let adam = adam.clone();
        let path = format!("/api/v1/facilities/{}/posts?{query}", f.facility);
        async move { adam.ok(Method::GET, &path, None).await }
    };
    let found = watch("q=AB-77".into()).await;
    assert_eq!(found.as_array().map(Vec::len), Some(1));
    assert_eq!(found[0]["seq"], bad);
    assert_eq!(
        watch(format!("author={}", f.alice))
            .await
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    assert_eq!(watch(format!("group={}", f.free_group)).await, json!([]));
    assert_eq!(
        watch("q=%25".into()).await.as_array().map(Vec::len),
        Some(1),
        "a % is a % (CD-88 100%)"
    );
    assert_eq!(watch("q=_".into()).await, json!([]), "an _ is an _");
    let now = renkei_domain::clock::now_ms();
    assert_eq!(watch(format!("since={}", now + 60_000)).await, json!([]));
    let (status, _) = beth
        .get(&format!("/api/v1/facilities/{}/posts", f.facility))
        .await;
    assert_eq!(status, 403);

    // Deleting the post settles its report; another is dismissed, once.
    adam.ok(
        Method::POST,
        &format!("/api/v1/groups/{}/posts/{bad}/delete", f.patient_group),
        Some(json!({"reason": "通報により確認"})),
    )
    .await;
    let settled = adam
        .ok(
            Method::GET,
            &format!("/api/v1/facilities/{}/reports", f.facility),
            None,
        )
        .await;
    assert_eq!(settled[0]["state"], "deleted");
    assert_eq!(settled[0]["text"], serde_json::Value::Null);
    let (status, reported) = report(fine, "念のため").await;
    assert_eq!(status, 201);
    let id = reported["id"].as_i64().expect("id");
    let (status, _) = beth
        .post(&format!("/api/v1/reports/{id}/dismiss"), json!({}))
        .await;
    assert_eq!(status, 403);
    let dismissed = adam
        .ok(Method::POST, &format!("/api/v1/reports/{id}/dismiss"), None)
        .await;
    assert_eq!(dismissed["state"], "dismissed");
    let (status, _) = adam
        .post(&format!("/api/v1/reports/{id}/dismiss"), json!({}))
        .await;
    assert_eq!(status, 409);
}

async fn the_archive_notice_shows_in_the_review_and_a_post_withdraws_it(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.archive_after_days = 0;
        c.archive_job_seconds = 1;
    })
    .await;
    let f = app.fixture.clone();
    let adam = app.api(f.adam).await;
    let review_path = format!("/api/v1/facilities/{}/review", f.facility);
    let group = |review: &serde_json::Value| {
        review["groups"]
            .as_array()
            .and_then(|g| g.iter().find(|g| g["group"]["id"] == f.patient_group))
            .cloned()
            .expect("reviewed")
    };
    // No inactivity allowed: the first run gives notice, 14 days ahead; the
    // admin view shows it…
    let mut shown = serde_json::Value::Null;
    for _ in 0..50 {
        shown = group(&adam.ok(Method::GET, &review_path, None).await)["archive_after"].clone();
        if !shown.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let in_14_days = renkei_domain::clock::now_ms() + 14 * 86_400_000;
    let archive_after = shown.as_i64().expect("a notice");
    assert!(
        (archive_after - in_14_days).abs() < 60_000,
        "{archive_after}"
    );
    // …and so does the group, to its members.
    let mut alice = app.client(f.alice).await;
    let events = alice.sync(f.patient_group, 0).await;
    assert!(events.iter().any(
        |e| matches!(e.data, EventData::ArchiveNotice { archive_after: a } if a == archive_after)
    ));
    // A post withdraws it at the next run.
    alice
        .post_acked(f.patient_group, "alive", "まだ訪問しています")
        .await;
    let mut withdrawn = false;
    for _ in 0..50 {
        let review = adam.ok(Method::GET, &review_path, None).await;
        if group(&review)["archive_after"].is_null() {
            withdrawn = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(withdrawn, "the notice was withdrawn");
    assert!(
        !app.store
            .group_details(f.patient_group)
            .await
            .expect("read")
            .expect("group")
            .group
            .archived
    );
}

async fn an_archive_can_be_closed_to_its_members(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| c.archive_readable_by_members = false).await;
    let f = app.fixture.clone();
    let adam = app.api(f.adam).await;
    let mut alice = app.client(f.alice).await;
    alice.sync(f.patient_group, 0).await;
    adam.ok(
        Method::POST,
        &format!("/api/v1/groups/{}/archive", f.patient_group),
        None,
    )
    .await;
    alice.next_event().await;
    alice
        .send(&ClientMessage::History {
            group: f.patient_group,
            before: None,
            limit: None,
        })
        .await;
    assert_eq!(alice.next_error().await.code, ErrorCode::Forbidden);
    let (status, _) = app
        .api(f.alice)
        .await
        .get(&format!("/api/v1/groups/{}/history", f.patient_group))
        .await;
    assert_eq!(status, 403);
    adam.ok(
        Method::GET,
        &format!("/api/v1/groups/{}/history", f.patient_group),
        None,
    )
    .await;
}

async fn retention_purges_old_archived_groups_for_good(backend: Backend) {
    let app = TestApp::spawn_with(backend, |c| {
        c.retention_days = 30;
        c.archive_job_seconds = 1;
    })
    .await;
    let f = app.fixture.clone();
    let adam = app.api(f.adam).await;
    let mut alice = app.client(f.alice).await;
    alice
        .post_acked(f.patient_group, "old-1", "保管期限切れの記録 RT-9")
        .await;
    adam.ok(
        Method::POST,
        &format!("/api/v1/groups/{}/archive", f.patient_group),
        None,
    )
    .await;
    // Archived in 1970, as far as retention is concerned.
    common::set_archived(&app.db.url, f.patient_group).await;
    let mut purged = false;
    for _ in 0..100 {
        if app
            .store
            .group_details(f.patient_group)
            .await
            .expect("read")
            .is_none()
        {
            purged = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(purged, "the process purged it");

    let everything = every_value(&app, backend).await;
    assert!(!everything.contains("RT-9"), "no trace of its posts");
    assert!(!everything.contains("山田 太郎"), "nor of its patient");
    assert_files_free_of(&app, backend, "RT-9");
    let recorded: Vec<(i64, i64)> = match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&app.db.url).await.expect("open");
            sqlx::query_as("SELECT group_id, events FROM purges ORDER BY group_id")
                .fetch_all(&pool)
                .await
                .expect("purges")
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&app.db.url).await.expect("open");
            sqlx::query_as("SELECT group_id, events FROM purges ORDER BY group_id")
                .fetch_all(&pool)
                .await
                .expect("purges")
        }
    };
    assert!(
        recorded
            .iter()
            .any(|(g, events)| *g == f.patient_group && *events == 2),
        "the purge is recorded: {recorded:?}"
    );
    // Members find nothing left; the group is gone from every list.
    alice
        .send(&ClientMessage::History {
            group: f.patient_group,
            before: None,
            limit: None,
        })
        .await;
    loop {
        match alice.recv().await {
            renkei_protocol::ServerMessage::Error(error) => {
                assert_eq!(error.code, ErrorCode::NotMember);
                break;
            }
            _ => continue,
        }
    }
    let listed = adam.ok(Method::GET, "/api/v1/archive", None).await;
    assert!(!listed
        .to_string()
        .contains(&format!("\"id\":{}", f.patient_group)));
}

//! The audit chain's anchors (issue 20, finding 8): each seal's head hash is published
//! outside the database as it is made — a log line, metrics, and a line of
//! `RENKEI_AUDIT_ANCHOR_FILE` — so a chain rewritten and recomputed by someone who can
//! write the database verifies on its own but no longer matches its anchors.
mod common;

use std::time::Duration;

use common::{Backend, TestApp};
use renkei::seal::AnchorMismatch;
use renkei_domain::audit::AuditRecord;
use sqlx::Connection as _;

on_both_backends!(each_seal_is_anchored_and_a_rewritten_chain_differs);

/// The anchor file's lines, once there are at least `n`.
async fn anchor_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    for _ in 0..400 {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= n {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("fewer than {n} anchors in {}", path.display());
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {line}"))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn all_records(store: &dyn renkei::store::Store) -> Vec<AuditRecord> {
    store.audit_records(0, 10_000).await.expect("records")
}

/// What an attacker who can write the database does: alters record `id` and recomputes
/// the hash of every record from it on, and the head, so the chain verifies again.
async fn rewrite_chain(url: &str, store: &dyn renkei::store::Store, id: i64) {
    let records = all_records(store).await;
    let mut previous = records
        .iter()
        .find(|r| r.id == id - 1)
        .map_or_else(Vec::new, |r| r.hash.clone());
    let mut statements: Vec<(i64, String, Vec<u8>)> = Vec::new();
    for record in records.iter().filter(|r| r.id >= id) {
        let mut entry = record.entry.clone();
        if record.id == id {
            entry.result = "403".into();
        }
        let hash = renkei_domain::audit::link(&previous, record.id, &entry);
        statements.push((record.id, entry.result.clone(), hash.clone()));
        previous = hash;
    }
    let last = statements.last().expect("records").clone();
    macro_rules! run {
        ($conn:expr) => {{
            for (id, result, hash) in &statements {
                sqlx::query("UPDATE audit_log SET result = $2, hash = $3 WHERE id = $1")
                    .bind(id)
                    .bind(result)
                    .bind(hash)
                    .execute(&mut $conn)
                    .await
                    .expect("rewrite");
            }
            sqlx::query("UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1")
                .bind(last.0)
                .bind(&last.2)
                .execute(&mut $conn)
                .await
                .expect("head");
        }};
    }
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(url).await.expect("sqlite");
        run!(conn);
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await.expect("pg");
        run!(conn);
    }
}

/// `renkei audit verify --anchor-file`, as an operator runs it.
fn verify_command(url: &str, anchor: &std::path::Path) -> (bool, String) {
    common::audit_verify(url, &["--anchor-file".as_ref(), anchor.as_os_str()])
}

async fn each_seal_is_anchored_and_a_rewritten_chain_differs(backend: Backend) {
    let dir = tempfile::tempdir().expect("dir");
    let anchor = dir.path().join("anchors.log");
    let app = TestApp::spawn_with(backend, |c| {
        c.audit_seal_seconds = 1;
        c.audit_anchor_file = Some(anchor.clone());
    })
    .await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    // The fixture's groups start without events: a post makes the first seal.
    alice.sync(f.patient_group, 0).await;
    alice.post_acked(f.patient_group, "a-0", "申し送り").await;
    let first = anchor_lines(&anchor, 1).await;
    alice.post_acked(f.patient_group, "a-1", "訪問記録").await;
    anchor_lines(&anchor, first.len() + 1).await;
    // Once everything is sealed no more seals come: one line per seal record.
    let store = app.store.as_ref();
    let mut seals = Vec::new();
    let mut lines = Vec::new();
    for _ in 0..200 {
        seals = all_records(store)
            .await
            .into_iter()
            .filter(|r| r.entry.action == renkei::seal::ACTION)
            .collect();
        lines = anchor_lines(&anchor, 1).await;
        if lines.len() == seals.len() && store.unsealed_groups(10).await.expect("").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(seals.len() >= 2, "{seals:?}");
    assert_eq!(lines.len(), seals.len(), "one line per seal: {lines:?}");
    for (line, seal) in lines.iter().zip(&seals) {
        assert_eq!(field(line, "record"), seal.id.to_string(), "{line}");
        assert_eq!(field(line, "head"), hex(&seal.hash), "{line}");
        assert!(!line.contains("訪問") && !line.contains("山田"), "{line}");
    }
    let last = seals.last().expect("a seal");
    assert_eq!(
        app.metric("renkei_audit_last_seal_record").await,
        last.id as f64
    );
    assert_eq!(
        app.metric("renkei_audit_seals_total").await,
        seals.len() as f64
    );
    assert!(app.metric("renkei_audit_last_seal_timestamp_seconds").await > 1.7e9);
    let (ok, text) = verify_command(&app.db.url, &anchor);
    assert!(ok && text.contains("anchors match"), "{text}");

    // The attacker rewrites the first record and recomputes the chain: the chain alone
    // verifies, the anchors do not.
    rewrite_chain(&app.db.url, store, 1).await;
    assert!(renkei::audit::verify(store).await.expect("reads").is_ok());
    let text = std::fs::read_to_string(&anchor).expect("anchors");
    let mismatch = renkei::seal::check_anchors(store, &text)
        .await
        .expect("reads");
    assert!(
        matches!(mismatch, Err(AnchorMismatch::Differs { record, .. }) if record == seals[0].id),
        "{mismatch:?}"
    );
    let (ok, text) = verify_command(&app.db.url, &anchor);
    assert!(
        !ok && text.contains(&format!("record {}'s chain hash", seals[0].id))
            && text.contains("rewritten"),
        "{text}"
    );
    drop(alice);
    app.stop().await;
}

//! The audit trail (監査証跡): reads of a patient group, logins and REST actions are
//! recorded with actor, facility, target, source and result — never content, passwords or
//! tokens; admins search their facility's records and the operator everything, as JSON or
//! CSV; and `renkei audit verify` finds an altered, removed or inserted record.

mod common;

use common::{code, execute, Backend, TestApp, PASSWORD};
use renkei::seal::{Sealed, Tampered};
use renkei_domain::audit::Break;
use renkei_protocol::Role;
use serde_json::{json, Value};

on_both_backends!(
    reads_logins_and_actions_are_on_record,
    each_sees_the_records_they_are_entitled_to,
    tampering_is_detected,
    events_are_sealed_into_the_trail,
);

async fn login(app: &TestApp, login: &str, password: &str) -> u16 {
    reqwest::Client::new()
        .post(app.url("/api/v1/session"))
        .json(&json!({ "login": login, "password": password }))
        .send()
        .await
        .expect("login")
        .status()
        .as_u16()
}

/// The records of `actor` with `action`, from a JSON list.
fn find<'a>(records: &'a [Value], actor: Option<i64>, action: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["actor"].as_i64() == actor && r["action"] == action)
        .collect()
}

async fn reads_logins_and_actions_are_on_record(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut alice = app.client(f.alice).await;
    alice.sync(g, 0).await;
    alice.post_acked(g, "a-1", "血圧 128/80 秘密の所見").await;
    let mut carol = app.client(f.carol).await;
    carol
        .send(&renkei_protocol::ClientMessage::Sync {
            groups: vec![renkei_protocol::SyncCursor { group: g, after: 0 }],
        })
        .await;
    assert_eq!(
        carol.next_error().await.code,
        renkei_protocol::ErrorCode::NotMember
    );
    assert_eq!(login(&app, "alice", "wrong password 1!").await, 401);
    assert_eq!(
        login(&app, "nobody@example.jp", "wrong password 1!").await,
        401
    );
    assert_eq!(login(&app, "alice", PASSWORD).await, 200);
    let adam = app.api(f.adam).await;
    adam.ok(
        reqwest::Method::POST,
        &format!("/api/v1/groups/{g}/archive"),
        None,
    )
    .await;

    let (status, trail) = adam
        .get(&format!("/api/v1/facilities/{}/audit", f.facility))
        .await;
    assert_eq!(status, 200, "{trail}");
    let records = trail.as_array().expect("a list").clone();

    let sync = find(&records, Some(f.alice), "ws sync");
    assert_eq!(sync.len(), 1, "{records:#?}");
    assert_eq!(
        (&sync[0]["group"], &sync[0]["target"], &sync[0]["result"]),
        (&json!(g), &json!("after=0"), &json!("ok"))
    );
    assert_eq!(sync[0]["facility"], json!(f.facility));
    assert!(sync[0]["source"].as_str().is_some_and(|s| s == "127.0.0.1"));
    // A post's record is its event row, committed with it: no second record per post.
    assert!(find(&records, Some(f.alice), "ws post").is_empty());
    let refused = find(&records, Some(f.carol), "ws sync");
    assert_eq!(refused[0]["result"], "not_member");
    let logins = find(&records, Some(f.alice), "POST /api/v1/session");
    let mut results: Vec<&str> = logins.iter().filter_map(|r| r["result"].as_str()).collect();
    results.sort_unstable();
    assert_eq!(results, ["200", "401"]);
    let archive = find(&records, Some(f.adam), "POST /api/v1/groups/{id}/archive");
    assert_eq!(
        (
            &archive[0]["group"],
            &archive[0]["target"],
            &archive[0]["result"]
        ),
        (
            &json!(g),
            &json!(format!("/api/v1/groups/{g}/archive")),
            &json!("200")
        )
    );
    // The audit search itself is on record (from the next search on).
    let (_, again) = adam
        .get(&format!("/api/v1/facilities/{}/audit", f.facility))
        .await;
    let again = again.as_array().expect("list").clone();
    assert_eq!(
        find(&again, Some(f.adam), "GET /api/v1/facilities/{id}/audit").len(),
        1
    );

    // The unknown login is on the operator's record without an actor; no record holds
    // a password, a token or a post's text.
    let operator = app.user(None, "op@city.example.jp", Role::Operator).await;
    let (_, all) = app.api(operator).await.get("/api/v1/audit").await;
    let all = all.as_array().expect("list").clone();
    let anonymous = find(&all, None, "POST /api/v1/session");
    assert_eq!(anonymous.len(), 1);
    assert_eq!(anonymous[0]["result"], "401");
    let text = serde_json::to_string(&all).expect("json");
    for secret in [
        PASSWORD,
        "wrong password",
        "秘密の所見",
        adam.token.as_str(),
    ] {
        assert!(!text.contains(secret), "{secret:?} is in the audit trail");
    }
    app.stop().await;
}

async fn each_sees_the_records_they_are_entitled_to(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    alice.sync(f.patient_group, 0).await;
    let other = app.facility("他の訪問看護ステーション").await;
    let stranger = app
        .user(Some(other), "admin@other.example.jp", Role::Admin)
        .await;
    let mut theirs = app.client(stranger).await;
    theirs
        .send(&renkei_protocol::ClientMessage::Sync {
            groups: vec![renkei_protocol::SyncCursor {
                group: f.free_group,
                after: 0,
            }],
        })
        .await;
    assert_eq!(
        theirs.next_error().await.code,
        renkei_protocol::ErrorCode::NotMember
    );

    let path = format!("/api/v1/facilities/{}/audit", f.facility);
    for (who, status) in [(f.alice, 403), (stranger, 403), (f.adam, 200)] {
        let (got, body) = app.api(who).await.get(&path).await;
        assert_eq!(got, status, "{body}");
    }
    let (status, body) = app.api(f.adam).await.get("/api/v1/audit").await;
    assert_eq!((status, code(&body)), (403, "forbidden"));

    // The stranger's refused read of our free group concerns us: it is in our trail;
    // their own facility's trail has it too, and the operator sees both.
    let (_, ours) = app.api(f.adam).await.get(&path).await;
    let ours = ours.as_array().expect("list").clone();
    assert_eq!(find(&ours, Some(f.alice), "ws sync").len(), 1);
    assert_eq!(find(&ours, Some(stranger), "ws sync").len(), 1);
    let (_, theirs_trail) = app
        .api(stranger)
        .await
        .get(&format!("/api/v1/facilities/{other}/audit"))
        .await;
    let theirs_trail = theirs_trail.as_array().expect("list").clone();
    assert!(find(&theirs_trail, Some(f.alice), "ws sync").is_empty());
    assert_eq!(find(&theirs_trail, Some(stranger), "ws sync").len(), 1);

    // Filters, and the CSV export.
    let filtered = format!("{path}?actor={}&group={}", f.alice, f.patient_group);
    let (_, only) = app.api(f.adam).await.get(&filtered).await;
    assert!(only
        .as_array()
        .is_some_and(|r| !r.is_empty() && r.iter().all(|r| r["actor"] == json!(f.alice))));
    let csv = reqwest::Client::new()
        .get(app.url(&format!("{filtered}&format=csv")))
        .bearer_auth(&app.api(f.adam).await.token)
        .send()
        .await
        .expect("csv");
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"]
        .to_str()
        .is_ok_and(|t| t.starts_with("text/csv")));
    let body = csv.text().await.expect("body");
    let mut lines = body.lines();
    assert_eq!(
        lines.next(),
        Some("\u{feff}id,time,at_ms,actor,facility,action,group,target,source,result,hash")
    );
    let row = lines.next().expect("a row");
    assert!(
        row.contains(",ws sync,") && row.contains(",after=0,"),
        "{row}"
    );
    let (status, body) = app
        .api(f.adam)
        .await
        .get(&format!("{path}?format=xml"))
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request"));
    app.stop().await;
}

/// `renkei audit verify` on the test's database, as an operator would run it.
fn verify_command(app: &TestApp) -> (bool, String) {
    common::audit_verify(&app.db.url, &[])
}

async fn tampering_is_detected(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let mut alice = app.client(f.alice).await;
    alice.sync(f.patient_group, 0).await;
    drop(alice);
    let adam = app.api(f.adam).await;
    for _ in 0..3 {
        adam.ok(
            reqwest::Method::GET,
            &format!("/api/v1/groups/{}", f.patient_group),
            None,
        )
        .await;
    }
    let store = renkei::store::open(&app.db.url).await.expect("store");
    let verify = async || renkei::audit::verify(store.as_ref()).await.expect("reads");
    let (count, _) = verify().await.expect("intact");
    assert_eq!(count, 4, "one read over the socket and three over REST");
    let (ok, text) = verify_command(&app);
    assert!(ok && text.contains("intact: 4 records"), "{text}");

    let url = &app.db.url;
    execute(url, "UPDATE audit_log SET result = '403' WHERE id = 2").await;
    assert_eq!(verify().await, Err(Break::Altered(2)));
    let (ok, text) = verify_command(&app);
    assert!(!ok && text.contains("record 2 was altered"), "{text}");
    execute(url, "UPDATE audit_log SET result = '200' WHERE id = 2").await;
    assert!(verify().await.is_ok());

    execute(url, "UPDATE audit_log SET id = 100 WHERE id = 3").await;
    assert_eq!(verify().await, Err(Break::Missing { from: 3, to: 3 }));
    execute(url, "UPDATE audit_log SET id = 3 WHERE id = 100").await;

    execute(url, "DELETE FROM audit_log WHERE id = 4").await;
    assert_eq!(verify().await, Err(Break::Truncated { last: 3, head: 4 }));
    execute(
        url,
        "INSERT INTO audit_log (id, at, actor_id, facility_id, action, group_id, target, \
         source, result, hash) SELECT 4, at, actor_id, facility_id, action, group_id, \
         'seq=99', source, result, hash FROM audit_log WHERE id = 3",
    )
    .await;
    assert_eq!(verify().await, Err(Break::Altered(4)));
    let (ok, text) = verify_command(&app);
    assert!(!ok && text.contains("record 4"), "{text}");
    app.stop().await;
}

async fn events_are_sealed_into_the_trail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let g = f.patient_group;
    let mut alice = app.client(f.alice).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(
            alice
                .post_acked(g, &format!("seal-{i}"), &format!("訪問記録 {i}"))
                .await,
        );
    }
    let store = renkei::store::open(&app.db.url).await.expect("store");
    let now = renkei_domain::clock::now_ms();
    let sealed = renkei::seal::seal_once(store.as_ref(), now)
        .await
        .expect("seal");
    assert!(sealed >= 3, "the posts and the fixture's joins: {sealed}");
    assert_eq!(
        renkei::seal::seal_once(store.as_ref(), now)
            .await
            .expect("seal"),
        0,
        "nothing new"
    );
    let check = async || renkei::seal::verify(store.as_ref()).await.expect("reads");
    let found = check().await.expect("intact");
    assert_eq!((found.seals, found.events), (1, sealed));
    // A post after the seal, and a deletion of a sealed post: the next seal covers the
    // new post and the deletion's event only, and the deletion (text erased, hash kept)
    // leaves the first seal valid.
    alice.post_acked(g, "seal-3", "追記").await;
    let (status, _) = app
        .api(f.alice)
        .await
        .post(
            &format!("/api/v1/groups/{g}/posts/{}/delete", seqs[0]),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        renkei::seal::seal_once(store.as_ref(), now + 1)
            .await
            .expect("seal"),
        2
    );
    assert_eq!(
        check().await,
        Ok(Sealed {
            seals: 2,
            events: sealed + 2,
            purged_groups: 0
        })
    );
    assert!(renkei::audit::verify(store.as_ref())
        .await
        .expect("reads")
        .is_ok());
    let (ok, text) = verify_command(&app);
    assert!(ok && text.contains("events match their seals"), "{text}");

    let url = &app.db.url;
    let one = |sql: &str| {
        sql.replace("{g}", &g.to_string())
            .replace("{seq}", &seqs[1].to_string())
    };
    execute(
        url,
        &one("UPDATE events SET text = '改ざん' WHERE group_id = {g} AND seq = {seq}"),
    )
    .await;
    assert_eq!(
        check().await,
        Err(Tampered::Text {
            group: g,
            seq: seqs[1]
        })
    );
    let (ok, text) = verify_command(&app);
    assert!(!ok && text.contains("does not match its hash"), "{text}");
    execute(
        url,
        &one("UPDATE events SET text = '訪問記録 1' WHERE group_id = {g} AND seq = {seq}"),
    )
    .await;
    assert!(check().await.is_ok());
    execute(
        url,
        &one("UPDATE events SET created_at = created_at - 1 WHERE group_id = {g} AND seq = {seq}"),
    )
    .await;
    assert!(matches!(check().await, Err(Tampered::Events { .. })));
    execute(
        url,
        &one("UPDATE events SET created_at = created_at + 1 WHERE group_id = {g} AND seq = {seq}"),
    )
    .await;
    assert!(check().await.is_ok());
    execute(
        url,
        &one("DELETE FROM events WHERE group_id = {g} AND seq = {seq}"),
    )
    .await;
    assert!(matches!(check().await, Err(Tampered::Events { .. })));
    app.stop().await;
}

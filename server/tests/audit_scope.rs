//! What the audit trail ties to a group, and what one socket can make it write: a search
//! or the mentions list is on record once per group whose posts it returned (so the
//! group's owning facility sees it in its own trail), never with the query; and one
//! `sync` frame names at most the user's groups and a margin, its refused cursors leaving
//! one record between them.

mod common;

use common::{Backend, Client, TestApp, TestDb};
use renkei::store::{NewFacility, NewGroup, NewUser};
use renkei_protocol::api::FacilityKind;
use renkei_protocol::{ClientMessage, ErrorCode, GroupKind, Role, ServerMessage, SyncCursor};
use serde_json::Value;

on_both_backends!(
    search_and_mentions_are_on_each_groups_trail,
    a_sync_frame_is_capped_and_its_refusals_summarised
);

/// A patient's name that a search asks for: never to be found in the trail.
const ASKED: &str = "秘密花子";

async fn search_and_mentions_are_on_each_groups_trail(backend: Backend) {
    // Facility B owns a patient group; a pharmacist of facility C is a member of it.
    let db = TestDb::new(backend).await;
    let store = renkei::store::open(&db.url).await.expect("store");
    let facility = |name: &'static str| {
        let store = &store;
        async move {
            store
                .create_facility(&NewFacility {
                    name: name.into(),
                    kind: FacilityKind::Clinic,
                })
                .await
                .expect("facility")
        }
    };
    let b = facility("B 訪問看護").await;
    let c = facility("C 薬局").await;
    let user = |facility: i64, login: &'static str, name: &'static str, role: Role| {
        let store = &store;
        async move {
            store
                .create_users(&[NewUser {
                    facility_id: Some(facility),
                    login: login.into(),
                    name: name.into(),
                    profession: "nurse".into(),
                    role,
                    ..NewUser::default()
                }])
                .await
                .expect("user")[0]
        }
    };
    let beth = user(b, "beth@b.example.jp", "管理者 ベス", Role::Admin).await;
    let ben = user(b, "ben@b.example.jp", "看護師 ベン", Role::Staff).await;
    let carl = user(c, "carl@c.example.jp", "薬剤師 カール", Role::Staff).await;
    let cleo = user(c, "cleo@c.example.jp", "管理者 クレオ", Role::Admin).await;
    let group = store
        .create_group(&NewGroup {
            kind: GroupKind::Patient,
            name: "秘密 花子".into(),
            patient: Some(common::patient("秘密 花子")),
            owner_facility_id: Some(b),
            consent: Some(common::consent()),
            created_at: renkei_domain::clock::now_ms(),
        })
        .await
        .expect("group");
    store
        .add_members(&[(group, ben), (group, carl)], 0)
        .await
        .expect("members");
    drop(store);
    let app = TestApp::spawn_in(db, |_| {}).await;

    let mut poster = app.client(ben).await;
    let seq = poster
        .post_acked(group, "b-1", "@薬剤師 カール 秘密花子さんの処方の件")
        .await;
    let carl_api = app.api(carl).await;
    let path = format!("/api/v1/search?q={ASKED}");
    let hits = carl_api.ok(reqwest::Method::GET, &path, None).await;
    assert_eq!(hits["hits"].as_array().map(Vec::len), Some(1), "{hits}");
    let mentions = carl_api
        .ok(reqwest::Method::GET, "/api/v1/mentions", None)
        .await;
    assert_eq!(mentions.as_array().map(Vec::len), Some(1), "{mentions}");
    // A search that finds nothing is on record without a group.
    let nothing = carl_api
        .ok(reqwest::Method::GET, "/api/v1/search?q=zzz", None)
        .await;
    assert_eq!(nothing["hits"], serde_json::json!([]));

    // B's admin sees both reads in B's trail, tied to the group and the post.
    let beth_api = app.api(beth).await;
    let trail = format!("/api/v1/facilities/{b}/audit");
    let records = beth_api.ok(reqwest::Method::GET, &trail, None).await;
    let records = records.as_array().expect("records").clone();
    for action in ["GET /api/v1/search", "GET /api/v1/mentions"] {
        let found: Vec<&Value> = records
            .iter()
            .filter(|r| r["action"] == action && r["actor"] == carl)
            .collect();
        assert_eq!(found.len(), 1, "{action} in B's trail: {records:#?}");
        assert_eq!(found[0]["group"], group, "{action}");
        assert_eq!(found[0]["facility"], c, "{action}");
        let target = found[0]["target"].as_str().unwrap_or_default();
        assert!(target.ends_with(&format!("seq={seq}")), "{target}");
    }
    // C's admin sees their pharmacist's reads too, and the search that found nothing.
    let cleo_api = app.api(cleo).await;
    let theirs = cleo_api
        .ok(
            reqwest::Method::GET,
            &format!("/api/v1/facilities/{c}/audit"),
            None,
        )
        .await;
    let searches: Vec<&Value> = theirs
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "GET /api/v1/search")
        .collect();
    assert_eq!(searches.len(), 2, "{theirs:#}");
    assert!(searches.iter().any(|r| r["group"].is_null()));

    // The query is nowhere: not in the JSON, not in the CSV export, of either trail or
    // the whole network's.
    let operator = app.user(None, "op@city.example.jp", Role::Operator).await;
    let operator_api = app.api(operator).await;
    let encoded: String = url_encoded(ASKED);
    for (api, path) in [
        (&beth_api, trail.clone()),
        (&cleo_api, format!("/api/v1/facilities/{c}/audit")),
        (&operator_api, "/api/v1/audit".to_string()),
    ] {
        for format in ["json", "csv"] {
            let body = reqwest::Client::new()
                .get(app.url(&format!("{path}?format={format}")))
                .bearer_auth(&api.token)
                .send()
                .await
                .expect("trail")
                .text()
                .await
                .expect("body");
            assert!(body.contains("/api/v1/search"), "{path} {format}: {body}");
            for secret in [ASKED, encoded.as_str(), "zzz"] {
                assert!(
                    !body.contains(secret),
                    "{secret:?} is in {path} as {format}"
                );
            }
        }
    }
    app.stop().await;
}

/// `text` as a URL's query carries it.
fn url_encoded(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// The `ws sync` records of `user`, from the whole network's trail.
async fn sync_records(app: &TestApp, operator: i64, user: i64) -> Vec<Value> {
    let path = format!("/api/v1/audit?actor={user}");
    let records = app
        .api(operator)
        .await
        .ok(reqwest::Method::GET, &path, None)
        .await;
    records
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["action"] == "ws sync")
        .cloned()
        .collect()
}

async fn a_sync_frame_is_capped_and_its_refusals_summarised(backend: Backend) {
    // Frames large enough for thousands of cursors: the cap, not the frame size, refuses.
    let app = TestApp::spawn_with(backend, |c| c.limits.max_frame_bytes = 1 << 20).await;
    let f = app.fixture.clone();
    let operator = app.user(None, "op@city.example.jp", Role::Operator).await;
    let cursors = |groups: &[i64]| ClientMessage::Sync {
        groups: groups
            .iter()
            .map(|&group| SyncCursor { group, after: 0 })
            .collect(),
    };

    // Thousands of group ids: one clear refusal, nothing synced, one record.
    let mut alice = app.client(f.alice).await;
    let many: Vec<i64> = (1..=5000).collect();
    alice.send(&cursors(&many)).await;
    let refusal = alice.next_error().await;
    assert_eq!(refusal.code, ErrorCode::TooManyCursors, "{refusal:?}");
    alice.send(&ClientMessage::Ping { n: 7 }).await;
    assert!(
        matches!(alice.recv().await, ServerMessage::Pong { n: 7 }),
        "nothing else came of the frame"
    );
    let records = sync_records(&app, operator, f.alice).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["result"], "too_many_cursors");
    assert_eq!(records[0]["target"], "cursors=5000");

    // A few foreign groups (carol is in the free group only), within the cap: each is
    // refused, and the frame leaves one record.
    let mut carol = Client::connect(app.addr, &app.token(f.carol).await).await;
    let foreign = [f.patient_group, f.archived_group, 987_654];
    carol.send(&cursors(&foreign)).await;
    for group in foreign {
        let refusal = carol.next_error().await;
        assert_eq!(
            (refusal.code, refusal.group),
            (ErrorCode::NotMember, Some(group))
        );
    }
    let records = sync_records(&app, operator, f.carol).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0]["result"], "not_member");
    assert_eq!(
        records[0]["target"],
        format!(
            "refused=3 groups={},{},987654",
            f.patient_group, f.archived_group
        )
    );

    // Her own group and a foreign one: the read on record with its group, the refusal
    // too (one, so with its group: the owning facility sees it).
    carol.send(&cursors(&[f.free_group, f.patient_group])).await;
    let mut synced = false;
    let mut refused = false;
    while !(synced && refused) {
        match carol.recv().await {
            ServerMessage::Synced { group, .. } => synced |= group == f.free_group,
            ServerMessage::Error(e) => refused |= e.group == Some(f.patient_group),
            _ => {}
        }
    }
    let records = sync_records(&app, operator, f.carol).await;
    assert_eq!(records.len(), 3, "{records:#?}");
    let groups: Vec<&Value> = records[..2].iter().map(|r| &r["group"]).collect();
    assert!(groups.contains(&&Value::from(f.free_group)), "{records:#?}");
    assert!(
        groups.contains(&&Value::from(f.patient_group)),
        "{records:#?}"
    );
    app.stop().await;
}

//! Groups and invitations, black-box: a patient group needs its consent before anyone
//! posts; an invitation becomes a membership only when accepted and approved; removal
//! stops delivery and posting at once, also across nodes.

mod common;

use std::time::Duration;

use common::{code, Api, Backend, Client, TestApp};
use renkei::store::InvitationStep;
use renkei_protocol::{ClientMessage, ErrorCode, EventData, GroupId, Role, ServerMessage};
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(
    a_patient_group_opens_with_its_consent,
    an_invitation_needs_acceptance_and_approval,
    invitations_close_declined_cancelled_or_expired,
    removal_stops_delivery_and_posting_at_once,
    the_review_shows_who_reads_and_who_posts,
);

/// The people of these tests: an admin of the fixture's facility (which owns its groups),
/// and a second facility with its admin and a staff member.
struct People {
    adam: i64,
    beth: i64,
    ben: i64,
}

async fn people(app: &TestApp) -> People {
    let other = app.facility("ひまわり訪問看護").await;
    People {
        adam: app.fixture.adam,
        beth: app.user(Some(other), "beth@example.jp", Role::Admin).await,
        ben: app.user(Some(other), "ben@example.jp", Role::Staff).await,
    }
}

/// Reads until a message matches, skipping the rest.
async fn until<T>(client: &mut Client, mut pick: impl FnMut(ServerMessage) -> Option<T>) -> T {
    loop {
        if let Some(found) = pick(client.recv().await) {
            return found;
        }
    }
}

async fn create_patient_group(adam: &Api) -> (GroupId, Value) {
    let created = adam
        .ok(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"kind": "patient", "patient": {"name": "高橋 ウメ", "kana": "たかはし うめ", "birth_date": "1936-02-29"}})),
        )
        .await;
    (created["summary"]["id"].as_i64().expect("id"), created)
}

async fn a_patient_group_opens_with_its_consent(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let p = people(&app).await;
    let adam_api = app.api(p.adam).await;
    let (status, body) = adam_api
        .post("/api/v1/groups", json!({"kind": "patient", "patient": {"name": "高橋 ウメ", "birth_date": "1936-02-30"}}))
        .await;
    assert_eq!((status, code(&body)), (400, "bad_request"), "no such date");

    let (group, created) = create_patient_group(&adam_api).await;
    assert_eq!(created["summary"]["needs_consent"], true);
    assert_eq!(created["summary"]["name"], "高橋 ウメ");
    assert_eq!(created["patient"]["birth_date"], "1936-02-29");
    assert_eq!(
        created["members"][0]["user"]["id"], p.adam,
        "the creator is its first member"
    );

    let mut adam = app.client(p.adam).await;
    let events = adam.sync(group, 0).await;
    assert!(
        matches!(&events[0].data, EventData::MemberJoined { member, by: None } if member.id == p.adam)
    );
    adam.post(group, "c-1", "同意前の投稿").await;
    assert_eq!(adam.next_error().await.code, ErrorCode::ConsentRequired);

    let (status, _) = adam_api
        .put(
            &format!("/api/v1/groups/{group}/consent"),
            json!({"signed_by": "family", "signed_on": "someday"}),
        )
        .await;
    assert_eq!(status, 400);
    let consented = adam_api
        .ok(
            Method::PUT,
            &format!("/api/v1/groups/{group}/consent"),
            Some(json!({"signed_by": "patient_and_family", "signed_on": "2026-11-20", "copy_sent_on": "2026-11-21"})),
        )
        .await;
    assert_eq!(consented["consent"]["signed_by"], "patient_and_family");
    assert_eq!(consented["summary"]["needs_consent"], false);
    let event = adam.next_event().await;
    assert!(matches!(event.data, EventData::ConsentRecorded { by } if by.id == p.adam));
    adam.post_acked(group, "c-2", "同意後の投稿").await;

    // A patient group bears its patient's name; free groups can be renamed, live.
    let (status, _) = adam_api
        .patch(&format!("/api/v1/groups/{group}"), json!({"name": "別名"}))
        .await;
    assert_eq!(status, 400);
    let free = adam_api
        .ok(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"kind": "free", "name": "連絡網"})),
        )
        .await;
    let free = free["summary"]["id"].as_i64().expect("id");
    adam.sync(free, 0).await;
    adam_api
        .ok(
            Method::PATCH,
            &format!("/api/v1/groups/{free}"),
            Some(json!({"name": "事業所内連絡網"})),
        )
        .await;
    let event = adam.next_event().await;
    assert!(
        matches!(event.data, EventData::GroupRenamed { ref name, .. } if name == "事業所内連絡網")
    );
}

async fn an_invitation_needs_acceptance_and_approval(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let p = people(&app).await;
    let adam_api = app.api(p.adam).await;
    let mut adam = app.client(p.adam).await;
    let mut ben = app.client(p.ben).await;
    let mut beth = app.client(p.beth).await;
    let (group, _) = create_patient_group(&adam_api).await;
    adam_api
        .ok(
            Method::PUT,
            &format!("/api/v1/groups/{group}/consent"),
            Some(json!({"signed_by": "patient", "signed_on": "2026-11-20"})),
        )
        .await;
    adam.sync(group, 0).await;

    // The invitee and the approver see it live, with what they need to judge it.
    let invited = adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{group}/invitations"),
            Some(json!({"user": p.ben})),
        )
        .await;
    let id = invited["id"].as_i64().expect("id");
    assert_eq!(
        (invited["state"].as_str(), invited["approved"].as_bool()),
        (Some("pending"), Some(false))
    );
    for client in [&mut ben, &mut beth] {
        let seen = until(client, |m| match m {
            ServerMessage::Invitation(view) => Some(view),
            _ => None,
        })
        .await;
        assert_eq!(seen.id, id);
        assert_eq!(seen.patient_name.as_deref(), Some("高橋 ウメ"));
        assert_eq!(seen.owner.as_ref().map(|o| o.id), Some(f.facility));
        assert_eq!(seen.inviter.id, p.adam);
    }
    let (status, _) = adam_api
        .post(
            &format!("/api/v1/groups/{group}/invitations"),
            json!({"user": p.ben}),
        )
        .await;
    assert_eq!(status, 409, "one pending invitation per person and group");

    // Accepting alone is not joining.
    let ben_api = app.api(p.ben).await;
    let accepted = ben_api
        .ok(
            Method::POST,
            &format!("/api/v1/invitations/{id}/accept"),
            None,
        )
        .await;
    assert_eq!(
        (accepted["state"].as_str(), accepted["accepted"].as_bool()),
        (Some("pending"), Some(true))
    );
    ben.post(group, "b-0", "まだ").await;
    let error = until(&mut ben, |m| match m {
        ServerMessage::Error(error) => Some(error),
        _ => None,
    })
    .await;
    assert_eq!(error.code, ErrorCode::NotMember);
    let list = app
        .api(p.beth)
        .await
        .ok(Method::GET, "/api/v1/invitations", None)
        .await;
    assert_eq!(list["to_approve"][0]["id"], id);

    // The approval of the invitee's own admin completes it: the group appears at once.
    let beth_api = app.api(p.beth).await;
    let joined = beth_api
        .ok(
            Method::POST,
            &format!("/api/v1/invitations/{id}/approve"),
            None,
        )
        .await;
    assert_eq!(joined["state"], "joined");
    let summary = until(&mut ben, |m| match m {
        ServerMessage::GroupJoined { group } => Some(group),
        _ => None,
    })
    .await;
    assert_eq!(
        (summary.id, summary.patient_name.as_deref()),
        (group, Some("高橋 ウメ"))
    );
    let history = ben.sync(group, 0).await;
    assert!(history.iter().any(|e| matches!(&e.data, EventData::MemberJoined { member, by: Some(by) } if member.id == p.ben && by.id == p.adam)));
    let event = adam.next_event().await;
    assert!(matches!(event.data, EventData::MemberJoined { member, .. } if member.id == p.ben));
    ben.post_acked(group, "b-1", "訪問しました").await;
    let (status, _) = ben_api
        .post(&format!("/api/v1/invitations/{id}/decline"), json!({}))
        .await;
    assert_eq!(status, 409, "a closed invitation takes no step");
    // The admin of ben's own facility may take him out of another facility's group.
    let (status, _) = beth_api
        .delete(&format!("/api/v1/groups/{group}/members/{}", p.ben))
        .await;
    assert_eq!(status, 204);
    until(&mut ben, |m| {
        matches!(m, ServerMessage::GroupLeft { .. }).then_some(())
    })
    .await;

    // An admin inviting their own staff approves at once: accepting joins.
    let implicit = adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{group}/invitations"),
            Some(json!({"user": f.carol})),
        )
        .await;
    assert_eq!(implicit["approved"], true);
    let id = implicit["id"].as_i64().expect("id");
    let joined = app
        .api(f.carol)
        .await
        .ok(
            Method::POST,
            &format!("/api/v1/invitations/{id}/accept"),
            None,
        )
        .await;
    assert_eq!(joined["state"], "joined");
}

async fn invitations_close_declined_cancelled_or_expired(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let p = people(&app).await;
    let adam_api = app.api(p.adam).await;
    let invite = async |user: i64| {
        adam_api
            .ok(
                Method::POST,
                &format!("/api/v1/groups/{}/invitations", f.patient_group),
                Some(json!({"user": user})),
            )
            .await["id"]
            .as_i64()
            .expect("id")
    };
    let ben_api = app.api(p.ben).await;

    let id = invite(p.ben).await;
    let (status, _) = app
        .api(f.alice)
        .await
        .post(&format!("/api/v1/invitations/{id}/accept"), json!({}))
        .await;
    assert_eq!(status, 403, "only the invitee answers");
    let declined = ben_api
        .ok(
            Method::POST,
            &format!("/api/v1/invitations/{id}/decline"),
            None,
        )
        .await;
    assert_eq!(declined["state"], "declined");
    let (status, body) = ben_api
        .post(&format!("/api/v1/invitations/{id}/accept"), json!({}))
        .await;
    assert_eq!((status, code(&body)), (409, "conflict"));

    let id = invite(p.ben).await;
    let (status, _) = ben_api
        .post(&format!("/api/v1/invitations/{id}/cancel"), json!({}))
        .await;
    assert_eq!(status, 403, "the invitee cannot withdraw it");
    let cancelled = adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/invitations/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(cancelled["state"], "cancelled");

    let id = invite(p.ben).await;
    let refused = app
        .api(p.beth)
        .await
        .ok(
            Method::POST,
            &format!("/api/v1/invitations/{id}/refuse"),
            None,
        )
        .await;
    assert_eq!(refused["state"], "refused");

    // Expiry: an invitation past its time shows as expired and takes no step.
    let now = renkei_domain::clock::now_ms();
    let old = app
        .store
        .create_invitation(f.patient_group, p.ben, p.adam, None, now - 10_000, now - 1)
        .await
        .expect("invitation");
    let view = ben_api.ok(Method::GET, "/api/v1/invitations", None).await;
    let listed = view["received"]
        .as_array()
        .and_then(|l| l.iter().find(|i| i["id"] == old))
        .cloned();
    assert_eq!(listed.map(|i| i["state"].clone()), Some(json!("expired")));
    let (status, _) = ben_api
        .post(&format!("/api/v1/invitations/{old}/accept"), json!({}))
        .await;
    assert_eq!(status, 409);
    assert!(app
        .store
        .step_invitation(old, InvitationStep::Accept, now)
        .await
        .is_err());
    // …and the invitee can be invited again.
    invite(p.ben).await;
}

async fn removal_stops_delivery_and_posting_at_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let p = people(&app).await;
    let adam_api = app.api(p.adam).await;
    let mut alice = app.client(f.alice).await;
    let mut bob = app.client(f.bob).await;
    alice.sync(f.patient_group, 0).await;
    bob.sync(f.patient_group, 0).await;

    let (status, body) = app
        .api(f.bob)
        .await
        .delete(&format!(
            "/api/v1/groups/{}/members/{}",
            f.patient_group, f.alice
        ))
        .await;
    assert_eq!(
        (status, code(&body)),
        (403, "forbidden"),
        "staff do not remove others"
    );
    let (status, _) = adam_api
        .delete(&format!(
            "/api/v1/groups/{}/members/{}",
            f.patient_group, f.alice
        ))
        .await;
    assert_eq!(status, 204);
    // The removal is acknowledged: alice's socket has been told, and nothing later reaches it.
    until(&mut alice, |m| match m {
        ServerMessage::GroupLeft { group } if group == f.patient_group => Some(()),
        _ => None,
    })
    .await;
    let event = bob.next_event().await;
    assert!(
        matches!(event.data, EventData::MemberRemoved { member, by } if member.id == f.alice && by.id == p.adam)
    );
    bob.post_acked(f.patient_group, "after-removal", "アリスには届かない")
        .await;
    alice.post(f.patient_group, "late", "もう書けない").await;
    assert_eq!(
        alice.next_error().await.code,
        ErrorCode::NotMember,
        "nothing came before the refusal"
    );
    alice
        .send(&ClientMessage::History {
            group: f.patient_group,
            before: None,
            limit: None,
        })
        .await;
    assert_eq!(alice.next_error().await.code, ErrorCode::NotMember);
    let (status, _) = adam_api
        .delete(&format!(
            "/api/v1/groups/{}/members/{}",
            f.patient_group, f.alice
        ))
        .await;
    assert_eq!(status, 409, "not a member any more");

    // Leaving on one's own, and bulk removal after a review.
    let (status, _) = app
        .api(f.dave)
        .await
        .delete(&format!(
            "/api/v1/groups/{}/members/{}",
            f.patient_group, f.dave
        ))
        .await;
    assert_eq!(status, 204);
    let review = adam_api
        .ok(
            Method::GET,
            &format!("/api/v1/facilities/{}/review?inactive_days=0", f.facility),
            None,
        )
        .await;
    let patient = review["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"]["id"] == f.patient_group))
        .expect("reviewed");
    let members: Vec<i64> = patient["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["user"]["id"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(members, [f.bob]);
    assert!(patient["members"][0]["last_post_at"].is_i64());
    let result = adam_api
        .ok(
            Method::POST,
            &format!("/api/v1/groups/{}/members/remove", f.patient_group),
            Some(json!({"users": [f.bob, f.carol]})),
        )
        .await;
    assert_eq!(result["removed"], json!([f.bob]));
    assert_eq!(result["skipped"][0]["user"], f.carol);
}

/// A removal on one node reaches sockets on another: nothing later is delivered there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_reaches_every_node() {
    let (redis_url, prefix) = common::redis();
    let app = TestApp::spawn_with(Backend::Postgres, |c| {
        c.redis_url = Some(redis_url);
        c.redis_prefix = prefix;
    })
    .await;
    let f = app.fixture.clone();
    let p = people(&app).await;
    let b = app.another_node().await;
    let mut alice_on_b = Client::connect(b.addr, &app.token(f.alice).await).await;
    let mut dave_on_b = Client::connect(b.addr, &app.token(f.dave).await).await;
    alice_on_b.sync(f.patient_group, 0).await;
    dave_on_b.sync(f.patient_group, 0).await;
    let mut bob_on_a = app.client(f.bob).await;

    let (status, _) = app
        .api(p.adam)
        .await
        .delete(&format!(
            "/api/v1/groups/{}/members/{}",
            f.patient_group, f.alice
        ))
        .await;
    assert_eq!(status, 204);
    until(&mut alice_on_b, |m| {
        matches!(m, ServerMessage::GroupLeft { .. }).then_some(())
    })
    .await;
    bob_on_a
        .post_acked(f.patient_group, "x-1", "別ノードから")
        .await;
    // Dave, on the same node as alice, gets the post; alice does not.
    let event = dave_on_b.next_event().await;
    assert!(matches!(event.data, EventData::MemberRemoved { .. }));
    let event = dave_on_b.next_event().await;
    assert!(matches!(event.data, EventData::Post { ref client_id, .. } if client_id == "x-1"));
    alice_on_b.post(f.patient_group, "x-2", "届かない").await;
    assert_eq!(alice_on_b.next_error().await.code, ErrorCode::NotMember);
    // A group created on node A is known to node B: its creator's socket there learns it.
    let mut adam_on_b = Client::connect(b.addr, &app.token(p.adam).await).await;
    let free = app
        .api(p.adam)
        .await
        .ok(
            Method::POST,
            "/api/v1/groups",
            Some(json!({"kind": "free", "name": "ノード間"})),
        )
        .await["summary"]["id"]
        .as_i64()
        .expect("id");
    let joined = tokio::time::timeout(
        Duration::from_secs(10),
        until(&mut adam_on_b, |m| match m {
            ServerMessage::GroupJoined { group } => Some(group.id),
            _ => None,
        }),
    )
    .await
    .expect("in time");
    assert_eq!(joined, free);
    adam_on_b.sync(free, 0).await;
    adam_on_b.post_acked(free, "n-1", "ノードBから").await;
    // A ban on node A closes the banned user's socket on node B.
    app.api(p.adam)
        .await
        .ok(
            Method::POST,
            &format!("/api/v1/users/{}/ban", f.dave),
            Some(json!({"reason": "端末紛失"})),
        )
        .await;
    assert_eq!(
        dave_on_b.close_code().await,
        Some(renkei_protocol::close::ACCOUNT_ENDED)
    );
    b.stop().await;
}

async fn the_review_shows_who_reads_and_who_posts(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let p = people(&app).await;
    let mut bob = app.client(f.bob).await;
    let last = bob.post_acked(f.patient_group, "v-1", "訪問記録").await;
    let mut alice = app.client(f.alice).await;
    alice.sync(f.patient_group, 0).await;
    alice
        .send(&ClientMessage::Read {
            group: f.patient_group,
            seq: -1,
        })
        .await;
    assert_eq!(alice.next_error().await.code, ErrorCode::InvalidSequence);
    alice
        .send(&ClientMessage::Read {
            group: f.patient_group,
            seq: 1_000,
        })
        .await;
    // Frames are handled in order: once this page comes, the read is stored.
    alice
        .send(&ClientMessage::History {
            group: f.patient_group,
            before: None,
            limit: Some(1),
        })
        .await;
    until(&mut alice, |m| {
        matches!(m, ServerMessage::Page { .. }).then_some(())
    })
    .await;
    let mut carol = app.client(f.carol).await;
    carol
        .send(&ClientMessage::Read {
            group: f.patient_group,
            seq: 1,
        })
        .await;
    assert_eq!(
        carol.next_error().await.code,
        ErrorCode::NotMember,
        "only members read"
    );

    let review = app
        .api(p.adam)
        .await
        .ok(
            Method::GET,
            &format!("/api/v1/facilities/{}/review?inactive_days=1", f.facility),
            None,
        )
        .await;
    let group = review["groups"]
        .as_array()
        .and_then(|g| g.iter().find(|g| g["group"]["id"] == f.patient_group))
        .expect("reviewed");
    let member = |id: i64| {
        group["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["user"]["id"] == id))
            .cloned()
            .expect("a member")
    };
    let (alice, bob, dave) = (member(f.alice), member(f.bob), member(f.dave));
    assert_eq!(alice["last_read_seq"], last, "clamped to what exists");
    assert!(alice["last_read_at"].is_i64());
    assert_eq!(alice["flags"], json!([]));
    assert!(bob["last_post_at"].is_i64());
    assert_eq!(bob["flags"], json!([]));
    assert_eq!(dave["last_read_at"], Value::Null);
    assert_eq!(
        dave["flags"],
        json!(["inactive"]),
        "neither read nor posted"
    );
    // Contact details of the facility's own staff are there for its admin.
    assert!(dave["user"]["email"].is_string());
}

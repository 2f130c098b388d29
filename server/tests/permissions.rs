//! Every action a role must not take is refused over the REST API, with `403 forbidden`
//! (or the more precise code), and changes nothing. The policy's own table test checks
//! each decision; this checks that every endpoint asks it.

mod common;

use common::{code, Api, Backend, TestApp};
use renkei_protocol::Role;
use reqwest::Method;
use serde_json::{json, Value};

on_both_backends!(every_forbidden_action_is_refused);

async fn every_forbidden_action_is_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let f = app.fixture.clone();
    let home = f.facility;
    let other = app.facility("ひまわり訪問看護").await;
    let adam = f.adam;
    let beth = app.user(Some(other), "beth@example.jp", Role::Admin).await;
    let ben = app.user(Some(other), "ben@example.jp", Role::Staff).await;
    let olga = app.user(None, "city@example.jp", Role::Operator).await;
    let restricted = app.user(Some(home), "rita@example.jp", Role::Staff).await;
    app.store
        .set_user_status(
            restricted,
            renkei_protocol::AccountStatus::Restricted,
            Some("test"),
        )
        .await
        .expect("restrict");
    app.store
        .add_members(&[(f.patient_group, restricted)], 0)
        .await
        .expect("member");
    let room = app.store.admins_room().await.expect("room");
    app.store
        .add_members(&[(room, adam), (room, beth)], 0)
        .await
        .expect("room members");
    // An invitation of ben's (the other facility), pending, sent by adam.
    let invitation = app
        .store
        .create_invitation(f.patient_group, ben, adam, None, 0, i64::MAX)
        .await
        .expect("invitation");
    let applied = app
        .anonymous()
        .ok(
            Method::POST,
            "/api/v1/facilities/applications",
            Some(json!({"name": "申請中", "kind": "other", "address": "市内",
                "contact": {"name": "c", "email": "c@example.jp", "phone": "0"},
                "admins": [{"name": "a", "email": "a@applied.example.jp", "profession": "nurse"}],
                "pledged": true})),
        )
        .await["id"]
        .as_i64()
        .expect("id");

    let alice = app.api(f.alice).await;
    let beth_api = app.api(beth).await;
    let ben_api = app.api(ben).await;
    let olga_api = app.api(olga).await;
    let rita = app.api(restricted).await;
    let anonymous = app.anonymous();
    let (g, fg) = (f.patient_group, f.free_group);
    let reason = json!({"reason": "理由"});
    let patient = json!({"kind": "patient", "patient": {"name": "x", "birth_date": "1940-01-01"}});
    let free = json!({"kind": "free", "name": "x"});
    let consent = json!({"signed_by": "patient", "signed_on": "2026-01-01"});
    type Case<'a> = (&'a str, &'a Api, Method, String, Option<Value>, &'a str);
    let cases: Vec<Case> = vec![
        // Staff: nothing of facilities, accounts, groups or invitations but their own.
        (
            "staff lists applications",
            &alice,
            Method::GET,
            "/api/v1/facilities/applications".into(),
            None,
            "forbidden",
        ),
        (
            "staff approves",
            &alice,
            Method::POST,
            format!("/api/v1/facilities/{applied}/approve"),
            Some(json!({})),
            "forbidden",
        ),
        (
            "staff rejects",
            &alice,
            Method::POST,
            format!("/api/v1/facilities/{applied}/reject"),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "staff suspends",
            &alice,
            Method::POST,
            format!("/api/v1/facilities/{home}/suspend"),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "staff reinstates a facility",
            &alice,
            Method::POST,
            format!("/api/v1/facilities/{home}/reinstate"),
            None,
            "forbidden",
        ),
        (
            "staff withdraws",
            &alice,
            Method::POST,
            format!("/api/v1/facilities/{home}/withdraw"),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "staff records a facility pledge",
            &alice,
            Method::PUT,
            format!("/api/v1/facilities/{home}/pledge"),
            Some(json!({"received_on": "2026-01-01"})),
            "forbidden",
        ),
        (
            "staff views their facility",
            &alice,
            Method::GET,
            format!("/api/v1/facilities/{home}"),
            None,
            "forbidden",
        ),
        (
            "staff views the staff list",
            &alice,
            Method::GET,
            format!("/api/v1/facilities/{home}/users"),
            None,
            "forbidden",
        ),
        (
            "staff registers staff",
            &alice,
            Method::POST,
            format!("/api/v1/facilities/{home}/users"),
            Some(json!({"email": "n@example.jp", "name": "n", "profession": "nurse"})),
            "forbidden",
        ),
        (
            "staff reviews",
            &alice,
            Method::GET,
            format!("/api/v1/facilities/{home}/review"),
            None,
            "forbidden",
        ),
        (
            "staff creates a patient group",
            &alice,
            Method::POST,
            "/api/v1/groups".into(),
            Some(patient.clone()),
            "forbidden",
        ),
        (
            "staff creates a free group",
            &alice,
            Method::POST,
            "/api/v1/groups".into(),
            Some(free.clone()),
            "forbidden",
        ),
        (
            "staff records consent",
            &alice,
            Method::PUT,
            format!("/api/v1/groups/{g}/consent"),
            Some(consent.clone()),
            "forbidden",
        ),
        (
            "staff renames",
            &alice,
            Method::PATCH,
            format!("/api/v1/groups/{fg}"),
            Some(json!({"name": "x"})),
            "forbidden",
        ),
        (
            "staff invites",
            &alice,
            Method::POST,
            format!("/api/v1/groups/{g}/invitations"),
            Some(json!({"user": f.carol})),
            "forbidden",
        ),
        (
            "staff removes a member",
            &alice,
            Method::DELETE,
            format!("/api/v1/groups/{g}/members/{}", f.bob),
            None,
            "forbidden",
        ),
        (
            "staff bulk-removes",
            &alice,
            Method::POST,
            format!("/api/v1/groups/{g}/members/remove"),
            Some(json!({"users": [f.bob]})),
            "skipped",
        ),
        (
            "staff changes a role",
            &alice,
            Method::PUT,
            format!("/api/v1/users/{}/role", f.bob),
            Some(json!({"role": "admin"})),
            "forbidden",
        ),
        (
            "staff deactivates",
            &alice,
            Method::POST,
            format!("/api/v1/users/{}/deactivate", f.bob),
            None,
            "forbidden",
        ),
        (
            "staff restricts",
            &alice,
            Method::POST,
            format!("/api/v1/users/{}/restrict", f.bob),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "staff bans",
            &alice,
            Method::POST,
            format!("/api/v1/users/{}/ban", f.bob),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "staff reinstates a user",
            &alice,
            Method::POST,
            format!("/api/v1/users/{restricted}/reinstate"),
            None,
            "forbidden",
        ),
        (
            "staff records a user pledge",
            &alice,
            Method::PUT,
            format!("/api/v1/users/{}/pledge", f.bob),
            Some(json!({"received_on": "2026-01-01"})),
            "forbidden",
        ),
        (
            "staff renames a colleague",
            &alice,
            Method::PATCH,
            format!("/api/v1/users/{}", f.bob),
            Some(json!({"name": "x"})),
            "forbidden",
        ),
        (
            "staff changes their own profession",
            &alice,
            Method::PATCH,
            format!("/api/v1/users/{}", f.alice),
            Some(json!({"profession": "doctor"})),
            "forbidden",
        ),
        (
            "staff uploads a colleague's photo",
            &alice,
            Method::PUT,
            format!("/api/v1/users/{}/photo", f.bob),
            None,
            "forbidden",
        ),
        (
            "a non-invitee accepts",
            &alice,
            Method::POST,
            format!("/api/v1/invitations/{invitation}/accept"),
            None,
            "forbidden",
        ),
        (
            "staff approves their own invitation",
            &ben_api,
            Method::POST,
            format!("/api/v1/invitations/{invitation}/approve"),
            None,
            "forbidden",
        ),
        (
            "the invitee cancels",
            &ben_api,
            Method::POST,
            format!("/api/v1/invitations/{invitation}/cancel"),
            None,
            "forbidden",
        ),
        (
            "a non-member views a group",
            &ben_api,
            Method::GET,
            format!("/api/v1/groups/{g}"),
            None,
            "not_member",
        ),
        (
            "a non-member leaves",
            &ben_api,
            Method::DELETE,
            format!("/api/v1/groups/{g}/members/{ben}"),
            None,
            "not_member",
        ),
        // An admin of another facility: nothing of this facility, its groups or staff.
        (
            "admin decides a facility",
            &beth_api,
            Method::POST,
            format!("/api/v1/facilities/{applied}/approve"),
            Some(json!({})),
            "forbidden",
        ),
        (
            "admin views another facility",
            &beth_api,
            Method::GET,
            format!("/api/v1/facilities/{home}"),
            None,
            "forbidden",
        ),
        (
            "admin lists another's staff",
            &beth_api,
            Method::GET,
            format!("/api/v1/facilities/{home}/users"),
            None,
            "forbidden",
        ),
        (
            "admin registers in another facility",
            &beth_api,
            Method::POST,
            format!("/api/v1/facilities/{home}/users"),
            Some(json!({"email": "m@example.jp", "name": "m", "profession": "nurse"})),
            "forbidden",
        ),
        (
            "admin reviews another facility",
            &beth_api,
            Method::GET,
            format!("/api/v1/facilities/{home}/review"),
            None,
            "forbidden",
        ),
        (
            "admin views another's group",
            &beth_api,
            Method::GET,
            format!("/api/v1/groups/{g}"),
            None,
            "not_member",
        ),
        (
            "admin records another's consent",
            &beth_api,
            Method::PUT,
            format!("/api/v1/groups/{g}/consent"),
            Some(consent.clone()),
            "forbidden",
        ),
        (
            "admin renames another's group",
            &beth_api,
            Method::PATCH,
            format!("/api/v1/groups/{fg}"),
            Some(json!({"name": "x"})),
            "forbidden",
        ),
        (
            "admin invites into another's group",
            &beth_api,
            Method::POST,
            format!("/api/v1/groups/{g}/invitations"),
            Some(json!({"user": ben})),
            "forbidden",
        ),
        (
            "admin removes another's member",
            &beth_api,
            Method::DELETE,
            format!("/api/v1/groups/{g}/members/{}", f.bob),
            None,
            "forbidden",
        ),
        (
            "admin changes another's role",
            &beth_api,
            Method::PUT,
            format!("/api/v1/users/{}/role", f.bob),
            Some(json!({"role": "admin"})),
            "forbidden",
        ),
        (
            "admin deactivates another's staff",
            &beth_api,
            Method::POST,
            format!("/api/v1/users/{}/deactivate", f.bob),
            None,
            "forbidden",
        ),
        (
            "admin restricts another's staff",
            &beth_api,
            Method::POST,
            format!("/api/v1/users/{}/restrict", f.bob),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "admin bans another's staff",
            &beth_api,
            Method::POST,
            format!("/api/v1/users/{}/ban", f.bob),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "admin restricts themselves",
            &beth_api,
            Method::POST,
            format!("/api/v1/users/{beth}/restrict"),
            Some(reason.clone()),
            "forbidden",
        ),
        (
            "admin cancels another's invitation",
            &beth_api,
            Method::POST,
            format!("/api/v1/invitations/{invitation}/cancel"),
            None,
            "forbidden",
        ),
        (
            "admin leaves the admins' room",
            &beth_api,
            Method::DELETE,
            format!("/api/v1/groups/{room}/members/{beth}"),
            None,
            "forbidden",
        ),
        (
            "admin invites into the admins' room",
            &beth_api,
            Method::POST,
            format!("/api/v1/groups/{room}/invitations"),
            Some(json!({"user": ben})),
            "forbidden",
        ),
        // The operator belongs to no facility: no patient groups, no approvals of staff.
        (
            "operator creates a patient group",
            &olga_api,
            Method::POST,
            "/api/v1/groups".into(),
            Some(patient.clone()),
            "forbidden",
        ),
        (
            "operator approves an invitation",
            &olga_api,
            Method::POST,
            format!("/api/v1/invitations/{invitation}/approve"),
            None,
            "forbidden",
        ),
        (
            "operator records a facility's consent",
            &olga_api,
            Method::PUT,
            format!("/api/v1/groups/{g}/consent"),
            Some(consent.clone()),
            "forbidden",
        ),
        (
            "operator bans themselves",
            &olga_api,
            Method::POST,
            format!("/api/v1/users/{olga}/ban"),
            Some(reason.clone()),
            "forbidden",
        ),
        // A restricted account reads but changes nothing.
        (
            "restricted renames themselves",
            &rita,
            Method::PATCH,
            format!("/api/v1/users/{restricted}"),
            Some(json!({"name": "x"})),
            "account_restricted",
        ),
        (
            "restricted leaves",
            &rita,
            Method::DELETE,
            format!("/api/v1/groups/{g}/members/{restricted}"),
            None,
            "account_restricted",
        ),
        // Without a session, nothing but the public endpoints.
        (
            "anonymous reads a group",
            &anonymous,
            Method::GET,
            format!("/api/v1/groups/{g}"),
            None,
            "unauthorized",
        ),
        (
            "anonymous lists invitations",
            &anonymous,
            Method::GET,
            "/api/v1/invitations".into(),
            None,
            "unauthorized",
        ),
    ];
    let before = app
        .store
        .group_details(g)
        .await
        .expect("read")
        .expect("group");
    for (what, api, method, path, body, expected) in cases {
        let (status, answer) = api.call(method, &path, body).await;
        if expected == "skipped" {
            // A bulk removal answers per user: nobody removed.
            assert_eq!(answer["removed"], json!([]), "{what}: {answer}");
            assert_eq!(answer["skipped"][0]["reason"], "Forbidden", "{what}");
            continue;
        }
        assert!(matches!(status, 401 | 403), "{what}: {status} {answer}");
        assert_eq!(code(&answer), expected, "{what}: {answer}");
    }
    // Nothing changed.
    let after = app
        .store
        .group_details(g)
        .await
        .expect("read")
        .expect("group");
    assert_eq!(before.members.len(), after.members.len());
    assert_eq!(after.group.name, before.group.name);
    assert_eq!(
        app.store
            .facility(applied)
            .await
            .expect("read")
            .expect("facility")
            .status,
        renkei_protocol::api::FacilityStatus::Applied
    );
    let view = app
        .store
        .invitation(invitation, 0)
        .await
        .expect("read")
        .expect("invitation");
    assert_eq!(view.state, renkei_protocol::api::InvitationState::Pending);
    assert!(!view.approved && !view.accepted);
}

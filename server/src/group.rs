//! Groups (art. 4–7, 別紙(1)): patient groups with their one patient and consent record
//! (様式3), free groups, their details and members, leaving and removal (解除), and the
//! periodic membership review (定期的に精査).

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use renkei_domain::policy::{Action, GroupFacts};
use renkei_protocol::api::{
    Consent, FacilityStatus, GroupDetails, Member, NewGroupRequest, Patient, RemovalResult,
    RemoveMembers, Rename, Review, ReviewFlag, ReviewGroup, ReviewMember, Skipped,
};
use renkei_protocol::{AccountStatus, GroupId, GroupKind, Seq};

use crate::app::App;
use crate::http::{HttpError, Id, Ids};
use crate::session::Caller;
use crate::store::{Change, EventBody, GroupDetailsRecord, GroupRecord, NewGroup};
use crate::{account, input, membership, wire};
use renkei_domain::clock;

/// The most members one bulk removal names.
const MAX_BULK: usize = 500;

/// A group's record and what the policy needs to know of it for `caller`.
pub async fn target(
    app: &App,
    caller: &Caller,
    group: GroupId,
) -> Result<(GroupDetailsRecord, GroupFacts), HttpError> {
    let Some(details) = app.store.group_details(group).await? else {
        // One answer for "no such group" and "not yours", as on the WebSocket.
        caller.may(Action::ViewGroup(GroupFacts::default()))?;
        return Err(HttpError::not_found("group"));
    };
    let facts = GroupFacts {
        exists: true,
        actor_is_member: details.members.iter().any(|(m, _)| m.id == caller.user.id),
        owner: details.group.owner_facility_id,
        archived: details.group.archived,
        needs_consent: details.group.needs_consent,
        admins_room: details.group.admins_room,
        members_read_archive: app.config.archive_readable_by_members,
    };
    Ok((details, facts))
}

/// The groups `caller` may read now, by id: their memberships the policy lets them read
/// (an archived one only while members may read the archive). Search and mentions look
/// only there.
pub fn readable(app: &App, caller: &Caller) -> Vec<GroupRecord> {
    app.hub
        .groups_of(caller.user.id)
        .into_iter()
        .filter(|record| {
            let (_, facts) = app.hub.facts(caller.user.id, record.id);
            caller.may(Action::ReadGroup(facts)).is_ok()
        })
        .collect()
}

/// The event at (`group`, `seq`), if any: the post an action names.
pub async fn event_at(app: &App, group: GroupId, seq: Seq) -> Result<Option<EventBody>, HttpError> {
    Ok(app
        .store
        .events_after(group, seq.saturating_sub(1), seq, 1)
        .await?
        .into_iter()
        .next()
        .map(|event| event.body))
}

/// A group's details as the API shows them.
pub fn view(details: GroupDetailsRecord) -> GroupDetails {
    GroupDetails {
        summary: wire::group_summary(&details.group),
        owner: details.owner,
        patient: details.patient,
        consent: details.consent,
        members: details
            .members
            .iter()
            .map(|(user, joined_at)| Member {
                user: wire::profile(user),
                joined_at: *joined_at,
            })
            .collect(),
    }
}

pub async fn reload(app: &App, group: GroupId) -> Result<GroupDetails, HttpError> {
    let details = app
        .store
        .group_details(group)
        .await?
        .ok_or_else(|| HttpError::not_found("group"))?;
    Ok(view(details))
}

/// `POST /api/v1/groups`: the creator becomes its first member (an event of its sequence).
pub async fn create(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Result<Json<NewGroupRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<GroupDetails>), HttpError> {
    let Json(request) = body?;
    let new = match request {
        NewGroupRequest::Patient { patient } => {
            caller.may(Action::CreatePatientGroup)?;
            let patient = Patient {
                name: input::text("patient.name", &patient.name, 100)?,
                kana: input::optional_text("patient.kana", &patient.kana, 100)?,
                birth_date: input::date("patient.birth_date", &patient.birth_date)?,
                notes: input::optional_text("patient.notes", &patient.notes, 2000)?,
            };
            NewGroup {
                kind: GroupKind::Patient,
                name: patient.name.clone(),
                patient: Some(patient),
                owner_facility_id: caller.user.facility_id,
                consent: None,
                created_at: clock::now_ms(),
            }
        }
        NewGroupRequest::Free { name } => {
            caller.may(Action::CreateFreeGroup)?;
            NewGroup {
                kind: GroupKind::Free,
                name: input::text("name", &name, 100)?,
                patient: None,
                owner_facility_id: caller.user.facility_id,
                consent: None,
                created_at: clock::now_ms(),
            }
        }
    };
    let id = app.store.create_group(&new).await?;
    membership::join(&app, id, caller.user.id, None, None).await?;
    tracing::info!(group = id, by = caller.user.id, kind = ?new.kind, "group created");
    Ok((StatusCode::CREATED, Json(reload(&app, id).await?)))
}

/// `GET /api/v1/groups/{id}`.
pub async fn details(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group): Id,
) -> Result<Json<GroupDetails>, HttpError> {
    let (details, facts) = target(&app, &caller, group).await?;
    caller.may(Action::ViewGroup(facts))?;
    Ok(Json(view(details)))
}

/// `PATCH /api/v1/groups/{id}`: renames a free group (a patient group bears its
/// patient's name).
pub async fn rename(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group): Id,
    body: Result<Json<Rename>, JsonRejection>,
) -> Result<Json<GroupDetails>, HttpError> {
    let Json(Rename { name }) = body?;
    let (details, facts) = target(&app, &caller, group).await?;
    caller.may(Action::RenameGroup(facts))?;
    if details.group.kind == GroupKind::Patient {
        return Err(HttpError::bad_request(
            "a patient group is named after its patient",
        ));
    }
    let name = input::text("name", &name, 100)?;
    let by = caller.user.id;
    membership::change(&app, group, Change::Rename { name, by }).await?;
    Ok(Json(reload(&app, group).await?))
}

/// `PUT /api/v1/groups/{id}/consent`: nobody posts in a patient group before this.
pub async fn consent(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group): Id,
    body: Result<Json<Consent>, JsonRejection>,
) -> Result<Json<GroupDetails>, HttpError> {
    let Json(consent) = body?;
    let (details, facts) = target(&app, &caller, group).await?;
    caller.may(Action::RecordConsent(facts))?;
    if details.group.kind != GroupKind::Patient {
        return Err(HttpError::bad_request("only a patient group has a consent"));
    }
    let consent = Consent {
        signed_by: consent.signed_by,
        signed_on: input::date("signed_on", &consent.signed_on)?,
        copy_sent_on: consent
            .copy_sent_on
            .as_deref()
            .map(|d| input::date("copy_sent_on", d))
            .transpose()?,
    };
    let by = caller.user.id;
    membership::change(&app, group, Change::Consent { consent, by }).await?;
    Ok(Json(reload(&app, group).await?))
}

/// Checks that `caller` may take `user` out of a group.
async fn may_remove(
    app: &App,
    caller: &Caller,
    facts: GroupFacts,
    user: i64,
) -> Result<(), HttpError> {
    if user == caller.user.id {
        return caller.may(Action::LeaveGroup(facts));
    }
    let (_, member) = account::target(app, user).await?;
    caller.may(Action::RemoveMember {
        group: facts,
        member,
    })
}

/// `DELETE /api/v1/groups/{id}/members/{user}`: leave (one's own id) or remove. Once this
/// answers, no node delivers the group's later posts to the user, and their posts to it
/// are refused.
pub async fn remove_member(
    State(app): State<Arc<App>>,
    caller: Caller,
    Ids(group, user): Ids,
) -> Result<StatusCode, HttpError> {
    let (details, facts) = target(&app, &caller, group).await?;
    caller.may(Action::RemoveFromGroup(facts))?;
    may_remove(&app, &caller, facts, user).await?;
    if !details.members.iter().any(|(m, _)| m.id == user) {
        return Err(HttpError::conflict("not a member"));
    }
    membership::remove(&app, group, user, caller.user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/groups/{id}/members/remove`: bulk removal after a review.
pub async fn remove_members(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group): Id,
    body: Result<Json<RemoveMembers>, JsonRejection>,
) -> Result<Json<RemovalResult>, HttpError> {
    let Json(RemoveMembers { users }) = body?;
    if users.len() > MAX_BULK {
        return Err(HttpError::bad_request(format!(
            "at most {MAX_BULK} users at once"
        )));
    }
    let (details, facts) = target(&app, &caller, group).await?;
    // The policy first, on the group and then on each user, and only then whether they
    // are a member: someone who may not act on the group gets one refusal whatever ids
    // they send, and an admin of another facility learns only of their own staff.
    caller.may(Action::RemoveFromGroup(facts))?;
    let mut result = RemovalResult {
        removed: Vec::new(),
        skipped: Vec::new(),
    };
    for user in users {
        let skip = |reason: String| Skipped { user, reason };
        if let Err(err) = may_remove(&app, &caller, facts, user).await {
            result.skipped.push(skip(format!("{:?}", err.code())));
            continue;
        }
        if !details.members.iter().any(|(m, _)| m.id == user) {
            result.skipped.push(skip("not a member".into()));
            continue;
        }
        membership::remove(&app, group, user, caller.user.id).await?;
        result.removed.push(user);
    }
    Ok(Json(result))
}

#[derive(serde::Deserialize)]
pub struct ReviewQuery {
    inactive_days: Option<u32>,
}

/// `GET /api/v1/facilities/{id}/review`: every member of every group the facility owns,
/// flagged when inactive, restricted, banned, deactivated or of a suspended facility.
pub async fn review(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(facility): Id,
    query: Result<Query<ReviewQuery>, QueryRejection>,
) -> Result<Json<Review>, HttpError> {
    caller.may(Action::ReviewFacility { facility })?;
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let inactive_days = query
        .inactive_days
        .unwrap_or(app.config.review_inactive_days)
        .min(36_500);
    let since = clock::now_ms() - i64::from(inactive_days) * 86_400_000;
    let notices: std::collections::HashMap<GroupId, i64> = app
        .store
        .archive_notices(facility)
        .await?
        .into_iter()
        .collect();
    let mut groups: Vec<ReviewGroup> = app
        .store
        .owned_groups(facility)
        .await?
        .iter()
        .map(|group| ReviewGroup {
            group: wire::group_summary(group),
            archive_after: notices.get(&group.id).copied(),
            members: Vec::new(),
        })
        .collect();
    for row in app.store.review(facility).await? {
        let mut flags = Vec::new();
        let last_seen = [Some(row.joined_at), row.last_post_at, row.last_read_at]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(row.joined_at);
        if last_seen < since {
            flags.push(ReviewFlag::Inactive);
        }
        match row.user.status {
            AccountStatus::Active => {}
            AccountStatus::Restricted => flags.push(ReviewFlag::Restricted),
            AccountStatus::Banned => flags.push(ReviewFlag::Banned),
            AccountStatus::Deactivated => flags.push(ReviewFlag::Deactivated),
        }
        if matches!(
            row.facility_status,
            Some(FacilityStatus::Suspended | FacilityStatus::Withdrawn)
        ) {
            flags.push(ReviewFlag::FacilitySuspended);
        }
        // Other facilities' users appear without their contact details.
        let own = caller.user.role == renkei_protocol::Role::Operator
            || row.user.facility.as_ref().map(|f| f.id) == Some(facility);
        let user = if own {
            row.user
        } else {
            account::public(row.user)
        };
        if let Some(group) = groups.iter_mut().find(|g| g.group.id == row.group) {
            group.members.push(ReviewMember {
                user,
                joined_at: row.joined_at,
                last_post_at: row.last_post_at,
                last_read_at: row.last_read_at,
                last_read_seq: row.last_read_seq,
                flags,
            });
        }
    }
    Ok(Json(Review {
        inactive_days,
        groups,
    }))
}

//! Invitations (別紙(2)(3), art. 10(7)): an admin of the owning facility invites; the
//! invitee accepts (招待の受理) and an admin of the invitee's facility approves (招待承認),
//! in either order — implicitly when the inviter is such an admin. The step that
//! completes the pair makes the invitee a member. The invitee and their approvers see
//! every invitation live over the WebSocket.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use renkei_domain::policy::{Action, InvitationFacts};
use renkei_protocol::api::{
    InvitationList, InvitationState, InvitationView, InviteRequest, NoticeKind,
};
use renkei_protocol::{AccountStatus, Role, ServerMessage, UserId};

use crate::app::App;
use crate::http::{HttpError, Id};
use crate::session::Caller;
use crate::store::{InvitationStep, MailKind};
use crate::{account, group, membership, notice};
use renkei_domain::clock;

fn facts(view: &InvitationView) -> InvitationFacts {
    InvitationFacts {
        invitee: view.invitee.id,
        invitee_facility: view.invitee.facility.as_ref().map(|f| f.id),
        inviter: view.inviter.id,
        owner: view.owner.as_ref().map(|f| f.id),
    }
}

/// Tells everyone concerned (the invitee, the inviter, the admins of the invitee's
/// facility) how an invitation stands, on every node.
async fn announce(app: &App, view: &InvitationView) -> Result<(), HttpError> {
    let admins = approvers(app, view).await?;
    let mut users = vec![view.invitee.id, view.inviter.id];
    users.extend(&admins);
    users.sort_unstable();
    users.dedup();
    let message = ServerMessage::Invitation(view.clone());
    for user in users {
        app.bus.notify(user, &message);
    }
    Ok(())
}

/// The active admins of the invitee's facility.
async fn approvers(app: &App, view: &InvitationView) -> Result<Vec<UserId>, HttpError> {
    let mut admins = Vec::new();
    if let Some(facility) = &view.invitee.facility {
        admins.extend(
            app.store
                .facility_users(facility.id)
                .await?
                .into_iter()
                .filter(|u| u.role == Role::Admin && u.status == AccountStatus::Active)
                .map(|u| u.id),
        );
    }
    Ok(admins)
}

/// A new invitation waits for the invitee's answer and, unless the inviter is their
/// admin, an admin's approval: those it waits for are told away from the page too, by
/// push and a content-free mail.
async fn tell_waiting(app: &App, view: &InvitationView) -> Result<(), HttpError> {
    if view.state != InvitationState::Pending {
        return Ok(());
    }
    let mut waiting_for = Vec::new();
    if !view.accepted {
        waiting_for.push(view.invitee.id);
    }
    if !view.approved {
        waiting_for.extend(approvers(app, view).await?);
    }
    waiting_for.sort_unstable();
    waiting_for.dedup();
    for user in waiting_for {
        notice::tell(
            app,
            user,
            NoticeKind::Invitation,
            Some(MailKind::Invitation),
        )
        .await;
    }
    Ok(())
}

/// `POST /api/v1/groups/{id}/invitations`.
pub async fn invite(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(group): Id,
    body: Result<Json<InviteRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<InvitationView>), HttpError> {
    let Json(InviteRequest { user }) = body?;
    let (_, group_facts) = group::target(&app, &caller, group).await?;
    let (_, invitee) = account::target(&app, user).await?;
    caller.may(Action::Invite {
        group: group_facts,
        invitee,
    })?;
    // Approval is implicit when the inviter is an admin of the invitee's facility.
    let implicit = caller
        .may(Action::ApproveInvitation(InvitationFacts {
            invitee: user,
            invitee_facility: invitee.facility,
            inviter: caller.user.id,
            owner: group_facts.owner,
        }))
        .is_ok();
    let now = clock::now_ms();
    let expires_at = now + i64::from(app.config.invitation_days) * 86_400_000;
    let id = app
        .store
        .create_invitation(
            group,
            user,
            caller.user.id,
            implicit.then_some(caller.user.id),
            now,
            expires_at,
        )
        .await?;
    let view = load(&app, id).await?;
    tracing::info!(
        invitation = id,
        group,
        invitee = user,
        by = caller.user.id,
        "invited"
    );
    announce(&app, &view).await?;
    tell_waiting(&app, &view).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

async fn load(app: &App, id: i64) -> Result<InvitationView, HttpError> {
    app.store
        .invitation(id, clock::now_ms())
        .await?
        .ok_or_else(|| HttpError::not_found("invitation"))
}

/// `GET /api/v1/invitations`.
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<InvitationList>, HttpError> {
    let approver_of = match caller.user.role {
        Role::Admin => caller.user.facility_id,
        _ => None,
    };
    let list = app
        .store
        .invitations(caller.user.id, approver_of, clock::now_ms())
        .await?;
    Ok(Json(list))
}

/// Takes one step, after the policy allowed it; completes the membership when the step
/// made the invitation both accepted and approved.
async fn step(
    app: &App,
    caller: &Caller,
    id: i64,
    action: fn(InvitationFacts) -> Action,
    step: InvitationStep,
) -> Result<Json<InvitationView>, HttpError> {
    let view = load(app, id).await?;
    caller.may(action(facts(&view)))?;
    let mut view = app.store.step_invitation(id, step, clock::now_ms()).await?;
    if view.state == InvitationState::Pending && view.accepted && view.approved {
        membership::join(
            app,
            view.group,
            view.invitee.id,
            Some(view.inviter.id),
            Some(id),
        )
        .await?;
        view = load(app, id).await?;
        tracing::info!(
            invitation = id,
            group = view.group,
            user = view.invitee.id,
            "joined"
        );
    }
    announce(app, &view).await?;
    Ok(Json(view))
}

/// `POST /api/v1/invitations/{id}/accept`.
pub async fn accept(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<InvitationView>, HttpError> {
    step(
        &app,
        &caller,
        id,
        Action::RespondToInvitation,
        InvitationStep::Accept,
    )
    .await
}

/// `POST /api/v1/invitations/{id}/decline`.
pub async fn decline(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<InvitationView>, HttpError> {
    step(
        &app,
        &caller,
        id,
        Action::RespondToInvitation,
        InvitationStep::Decline,
    )
    .await
}

/// `POST /api/v1/invitations/{id}/approve`.
pub async fn approve(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<InvitationView>, HttpError> {
    let by = caller.user.id;
    step(
        &app,
        &caller,
        id,
        Action::ApproveInvitation,
        InvitationStep::Approve { by },
    )
    .await
}

/// `POST /api/v1/invitations/{id}/refuse`.
pub async fn refuse(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<InvitationView>, HttpError> {
    let by = caller.user.id;
    step(
        &app,
        &caller,
        id,
        Action::ApproveInvitation,
        InvitationStep::Refuse { by },
    )
    .await
}

/// `POST /api/v1/invitations/{id}/cancel`.
pub async fn cancel(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<InvitationView>, HttpError> {
    let by = caller.user.id;
    step(
        &app,
        &caller,
        id,
        Action::CancelInvitation,
        InvitationStep::Cancel { by },
    )
    .await
}

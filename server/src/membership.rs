//! Membership changes that several requests share: joining and leaving (always as events
//! of the group's sequence, through the sequencer), the admins' room following the admin
//! role, and ending an account everywhere.

use renkei_protocol::{GroupId, Role, ServerMessage, UserId};

use crate::app::App;
use crate::http::HttpError;
use crate::hub::Control;
use crate::sequencer::ChangeError;
use crate::store::{Change, Changed, StoreError};

/// Commits a change to a group as the next event of its sequence; every node applies it
/// when it delivers the event.
pub async fn change(app: &App, group: GroupId, change: Change) -> Result<Changed, HttpError> {
    Ok(app.sequencer.change(group, change).await?)
}

/// Makes `user` a member, unless they are one already.
pub async fn join(
    app: &App,
    group: GroupId,
    user: UserId,
    by: Option<UserId>,
    invitation: Option<i64>,
) -> Result<(), HttpError> {
    let joining = Change::Join {
        user,
        by,
        invitation,
    };
    match app.sequencer.change(group, joining).await {
        Ok(_) | Err(ChangeError::Store(StoreError::Conflict(_))) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Removes `user` by `by` (or lets them leave when `by` is themselves), unless they are
/// not a member.
pub async fn remove(app: &App, group: GroupId, user: UserId, by: UserId) -> Result<(), HttpError> {
    let leaving = if user == by {
        Change::Leave { user }
    } else {
        Change::Remove { user, by }
    };
    match app.sequencer.change(group, leaving).await {
        Ok(_) | Err(ChangeError::Store(StoreError::Conflict(_))) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Puts the admins' room (MCS管理者の部屋) membership in line with `role`: admins and the
/// operator are in it, staff are not.
pub async fn follow_role(app: &App, user: UserId, role: Role, by: UserId) -> Result<(), HttpError> {
    let room = app.store.admins_room().await?;
    match role {
        Role::Admin | Role::Operator => join(app, room, user, None, None).await,
        Role::Staff => remove(app, room, user, by).await,
    }
}

/// Ends an account that can no longer be used (deactivated, banned, its facility
/// suspended or withdrawn): every socket of it closes, on every node. Its sessions were
/// deleted in the same transaction as its new status.
pub fn end_sockets(app: &App, user: UserId) {
    app.bus.control(Control::AccountEnded { user });
}

/// Ends every session of `user` (their push subscriptions go with them) and closes the
/// sockets of each, on every node: they log in again.
pub async fn end_sessions(app: &App, user: UserId) -> Result<(), HttpError> {
    let ended = app.store.end_user_sessions(user, None).await?;
    for hash in &ended {
        app.bus.end_session(hash);
    }
    tracing::info!(user, sessions = ended.len(), "sessions ended");
    Ok(())
}

/// Removes a deactivated user from every group (each removal an event of its group) and
/// ends their sockets. Safe to repeat: a retry finishes what a failure left.
pub async fn remove_everywhere(app: &App, user: UserId, by: UserId) -> Result<(), HttpError> {
    end_sockets(app, user);
    for group in app.store.user_groups(user).await? {
        let change = Change::Remove { user, by };
        match app.sequencer.change(group, change).await {
            Ok(_) | Err(ChangeError::Store(StoreError::Conflict(_))) => {}
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Tells a user's sockets, on every node, that their account changed.
pub async fn announce_account(app: &App, user: UserId) -> Result<(), HttpError> {
    if let Some(details) = app.store.user(user).await? {
        let restricted = details.status == renkei_protocol::AccountStatus::Restricted;
        app.bus.control(Control::Restricted { user, restricted });
        app.bus.notify(
            user,
            &ServerMessage::Account {
                user: crate::wire::details_profile(&details),
                status: details.status,
            },
        );
    }
    Ok(())
}

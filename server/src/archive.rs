//! The archive (保管庫, 別紙(2)): an admin of the owning facility moves a patient group no
//! longer served to the archive and back. Both are events of the group's sequence, so
//! every member's client moves the group at once; an archived group takes no post on any
//! path and stays readable to its members, the owning facility's admins and the operator.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use renkei_protocol::api::{GroupDetails, HistoryPage};
use renkei_protocol::{GroupKind, GroupSummary, Role, Seq};

use crate::api::{Caller, Id};
use crate::app::App;
use crate::http::HttpError;
use crate::policy::Action;
use crate::store::Change;
use crate::{group, membership, wire};

/// The largest page of `history`.
const MAX_PAGE: u32 = 256;

async fn move_group(
    app: &App,
    caller: &Caller,
    id: i64,
    archive: bool,
) -> Result<Json<GroupDetails>, HttpError> {
    let (details, facts) = group::target(app, caller, id).await?;
    caller.may(Action::ArchiveGroup(facts))?;
    if details.group.kind != GroupKind::Patient {
        return Err(HttpError::bad_request(
            "only patient groups go to the archive",
        ));
    }
    let by = caller.user.id;
    let change = if archive {
        Change::Archive { by }
    } else {
        Change::Restore { by }
    };
    membership::change(app, id, change).await?;
    tracing::info!(group = id, by, archive, "archive changed");
    Ok(Json(group::reload(app, id).await?))
}

/// `POST /api/v1/groups/{id}/archive`.
pub async fn archive(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<GroupDetails>, HttpError> {
    move_group(&app, &caller, id, true).await
}

/// `POST /api/v1/groups/{id}/restore`.
pub async fn restore(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<GroupDetails>, HttpError> {
    move_group(&app, &caller, id, false).await
}

/// `GET /api/v1/archive`: the archived groups the caller may read.
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<Vec<GroupSummary>>, HttpError> {
    let admin_of = match caller.user.role {
        Role::Admin => caller.user.facility_id,
        _ => None,
    };
    let operator = caller.user.role == Role::Operator;
    let groups = app
        .store
        .archived_groups(caller.user.id, admin_of, operator)
        .await?;
    Ok(Json(groups.iter().map(wire::group_summary).collect()))
}

#[derive(serde::Deserialize)]
pub struct HistoryQuery {
    before: Option<Seq>,
    limit: Option<u32>,
}

/// `GET /api/v1/groups/{id}/history`: an archived group's events for those entitled (and
/// any group's for its members).
pub async fn history(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    if query.before.is_some_and(|b| b < 0) {
        return Err(HttpError::bad_request("before must be 0 or more"));
    }
    let (_, facts) = group::target(&app, &caller, id).await?;
    if !facts.actor_is_member {
        caller.may(Action::ViewArchive(facts))?;
    }
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let mut records = app.store.events_before(id, query.before, limit + 1).await?;
    let has_more = records.len() > limit as usize;
    if has_more {
        records.remove(0);
    }
    Ok(Json(HistoryPage {
        group: id,
        events: records.iter().map(wire::event).collect(),
        has_more,
    }))
}

//! Deleting posts (art. 10(6), 13(9)): by their author, by an admin of the owning facility
//! or of the author's facility (with a reason), or by the operator. The deletion is an
//! event of the group's sequence, so every member sees the post turn into a tombstone at
//! once and a member catching up later learns it; the text leaves the database, and who
//! deleted what, when and why stays on record with the text's hash.
//!
//! Watching (別紙(2)(3)): members report a post with a reason; the admins of the owning
//! facility have the queue of reports and a monitoring view of recent posts across their
//! groups, from which they delete or dismiss.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use renkei_domain::policy::{Action, PostFacts};
use renkei_protocol::api::{DeletePost, MonitoredPost, ReportRequest, ReportState, ReportView};

use crate::app::App;
use crate::http::{HttpError, Id, Ids};
use crate::session::Caller;
use crate::store::{Change, EventBody, PostFilter, ReportRow};
use crate::{account, group, input, membership, wire};
use renkei_domain::clock;

/// `POST /api/v1/groups/{id}/posts/{seq}/delete`.
pub async fn delete_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    Ids(group, seq): Ids,
    body: Result<Json<DeletePost>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(request) = body?;
    let (_, facts) = group::target(&app, &caller, group).await?;
    // The policy on the group before anything is looked up, then on the post with what
    // `seq` holds (a deleted post as the post it was; nothing as no one's post): only
    // who may delete it learns that it is gone, so a sequence number tells an outsider
    // nothing (they get the same refusal for every one).
    caller.may(Action::DeleteInGroup(facts))?;
    let (post, deleted) = match group::event_at(&app, group, seq).await? {
        Some(EventBody::Post { author, file, .. }) => (Some((author, file)), false),
        Some(EventBody::DeletedPost { author, .. }) => (Some((author, None)), true),
        _ => (None, false),
    };
    let author = post.as_ref().map(|(author, _)| author);
    caller.may(Action::DeletePost(PostFacts {
        group: facts,
        author: author.map(|a| a.id),
        author_facility: author.and_then(|a| a.facility_id),
    }))?;
    let Some((author, file)) = post else {
        return Err(HttpError::not_found("post"));
    };
    if deleted {
        return Err(HttpError::conflict("the post is deleted already"));
    }
    let reason = match request.reason.as_deref().map(str::trim) {
        Some(reason) if !reason.is_empty() => Some(input::reason(reason)?),
        _ if author.id != caller.user.id => {
            return Err(HttpError::bad_request(
                "a moderator deleting another's post gives a reason",
            ))
        }
        _ => None,
    };
    let by = caller.user.id;
    membership::change(&app, group, Change::DeletePost { seq, by, reason }).await?;
    // Its file was marked deleted in the same commit; now its bytes go.
    if let Some(file) = file {
        app.files.remove(group, file.id).await;
    }
    tracing::info!(group, seq, by, "post deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// The report of a stored row, with its post and people.
async fn report_view(app: &App, row: ReportRow) -> Result<ReportView, HttpError> {
    let (author, text) = match group::event_at(app, row.group_id, row.seq).await? {
        Some(EventBody::Post { author, text, .. }) => (wire::profile(&author), Some(text)),
        Some(EventBody::DeletedPost { author, .. }) => (wire::profile(&author), None),
        _ => return Err(HttpError::not_found("post")),
    };
    let reporter = account::target(app, row.reporter_id).await?.0;
    Ok(ReportView {
        id: row.id,
        state: match row.state.as_str() {
            "dismissed" => ReportState::Dismissed,
            "deleted" => ReportState::Deleted,
            _ => ReportState::Open,
        },
        group: row.group_id,
        group_name: row.group_name,
        seq: row.seq,
        author,
        text,
        reporter: wire::details_profile(&reporter),
        reason: row.reason,
        created_at: row.created_at,
        handled_by: row.handled_by,
        handled_at: row.handled_at,
    })
}

/// `POST /api/v1/groups/{id}/posts/{seq}/report`: a member asks the admins to look.
pub async fn report(
    State(app): State<Arc<App>>,
    caller: Caller,
    Ids(group, seq): Ids,
    body: Result<Json<ReportRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ReportView>), HttpError> {
    let Json(request) = body?;
    let (_, facts) = group::target(&app, &caller, group).await?;
    caller.may(Action::ReportPost(facts))?;
    let reason = input::reason(&request.reason)?;
    let id = app
        .store
        .create_report(group, seq, caller.user.id, &reason, clock::now_ms())
        .await?;
    tracing::info!(
        report = id,
        group,
        seq,
        by = caller.user.id,
        "post reported"
    );
    let row = app
        .store
        .report(id)
        .await?
        .ok_or_else(|| HttpError::not_found("report"))?;
    Ok((StatusCode::CREATED, Json(report_view(&app, row).await?)))
}

#[derive(serde::Deserialize)]
pub struct ReportQuery {
    state: Option<ReportState>,
}

/// `GET /api/v1/facilities/{id}/reports`: the reports on posts in the facility's groups.
pub async fn reports(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(facility): Id,
    query: Result<Query<ReportQuery>, QueryRejection>,
) -> Result<Json<Vec<ReportView>>, HttpError> {
    caller.may(Action::Moderate { facility })?;
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let state = query.state.map(|state| match state {
        ReportState::Open => "open",
        ReportState::Dismissed => "dismissed",
        ReportState::Deleted => "deleted",
    });
    let mut views = Vec::new();
    for row in app.store.reports(Some(facility), state).await? {
        views.push(report_view(&app, row).await?);
    }
    Ok(Json(views))
}

/// `POST /api/v1/reports/{id}/dismiss`: the admin looked and leaves the post.
pub async fn dismiss(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<ReportView>, HttpError> {
    let row = app
        .store
        .report(id)
        .await?
        .ok_or_else(|| HttpError::not_found("report"))?;
    match row.owner {
        Some(facility) => caller.may(Action::Moderate { facility })?,
        None => caller.may(Action::DecideFacility)?,
    }
    app.store
        .close_report(id, "dismissed", caller.user.id, clock::now_ms())
        .await?;
    let row = app
        .store
        .report(id)
        .await?
        .ok_or_else(|| HttpError::not_found("report"))?;
    Ok(Json(report_view(&app, row).await?))
}

#[derive(serde::Deserialize)]
pub struct MonitorQuery {
    group: Option<i64>,
    author: Option<i64>,
    since: Option<i64>,
    until: Option<i64>,
    q: Option<String>,
    limit: Option<u32>,
}

/// `GET /api/v1/facilities/{id}/posts`: recent posts across the facility's groups,
/// newest first, by group, author, time and text.
pub async fn monitor(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(facility): Id,
    query: Result<Query<MonitorQuery>, QueryRejection>,
) -> Result<Json<Vec<MonitoredPost>>, HttpError> {
    caller.may(Action::Moderate { facility })?;
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let text = query
        .q
        .as_deref()
        .map(|q| input::optional_text("q", q, 200))
        .transpose()?
        .filter(|q| !q.is_empty());
    let filter = PostFilter {
        group: query.group,
        author: query.author,
        since: query.since,
        until: query.until,
        text,
        limit: query.limit.unwrap_or(100).clamp(1, 500),
    };
    let names: std::collections::HashMap<i64, String> = app
        .store
        .owned_groups(facility)
        .await?
        .into_iter()
        .map(|g| (g.id, g.name))
        .collect();
    let posts = app
        .store
        .monitor(facility, &filter)
        .await?
        .into_iter()
        .filter_map(|event| match event.body {
            EventBody::Post { author, text, .. } => Some(MonitoredPost {
                group: event.group,
                group_name: names.get(&event.group).cloned().unwrap_or_default(),
                seq: event.seq,
                at: event.at,
                author: wire::profile(&author),
                text,
            }),
            _ => None,
        })
        .collect();
    Ok(Json(posts))
}

//! Deleting posts (art. 10(6), 13(9)): by their author, by an admin of the owning facility
//! or of the author's facility (with a reason), or by the operator. The deletion is an
//! event of the group's sequence, so every member sees the post turn into a tombstone at
//! once and a member catching up later learns it; the text leaves the database, and who
//! deleted what, when and why stays on record with the text's hash.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use renkei_protocol::api::DeletePost;

use crate::api::{Caller, Ids};
use crate::app::App;
use crate::http::HttpError;
use crate::policy::{Action, PostFacts};
use crate::store::{Change, EventBody};
use crate::{group, input, membership};

/// `POST /api/v1/groups/{id}/posts/{seq}/delete`.
pub async fn delete_post(
    State(app): State<Arc<App>>,
    caller: Caller,
    Ids(group, seq): Ids,
    body: Result<Json<DeletePost>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(request) = body?;
    let (_, facts) = group::target(&app, &caller, group).await?;
    let event = app
        .store
        .events_after(group, seq.saturating_sub(1), seq, 1)
        .await?
        .into_iter()
        .next();
    let author = match event.map(|e| e.body) {
        Some(EventBody::Post { author, .. }) => author,
        Some(EventBody::DeletedPost { .. }) => {
            return Err(HttpError::conflict("the post is deleted already"))
        }
        _ => return Err(HttpError::not_found("post")),
    };
    caller.may(Action::DeletePost(PostFacts {
        group: facts,
        author: author.id,
        author_facility: author.facility_id,
    }))?;
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
    tracing::info!(group, seq, by, "post deleted");
    Ok(StatusCode::NO_CONTENT)
}

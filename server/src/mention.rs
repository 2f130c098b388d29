//! Mentions (`@name`): the list of posts that named the caller (`GET /api/v1/mentions`).
//! Who a post names is [`renkei_domain::mention`]; the commit that stores the post stores
//! its mentions in the same transaction, and the sequencer then sends each named member a
//! `mention` notice.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use renkei_protocol::api::MentionView;
use renkei_protocol::Millis;

use crate::app::App;
use crate::http::{AuditReads, HttpError};
use crate::session::Caller;
use crate::store::EventBody;
use crate::{group, wire};

/// What `GET /api/v1/mentions` takes.
#[derive(Debug, serde::Deserialize)]
pub struct MentionQuery {
    /// Mentions in posts committed before this time (the previous page's last `at`).
    before: Option<Millis>,
    limit: Option<u32>,
}

/// `GET /api/v1/mentions`: the posts that mention the caller, newest first, in the groups
/// they may read now; deleted posts are left out.
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
    query: Result<Query<MentionQuery>, QueryRejection>,
) -> Result<(Extension<AuditReads>, Json<Vec<MentionView>>), HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(50).clamp(1, 200);
    let groups: Vec<_> = group::readable(&app, &caller)
        .into_iter()
        .map(|record| record.id)
        .collect();
    let records = app
        .store
        .mentions_of(caller.user.id, &groups, query.before, limit)
        .await?;
    let mentions: Vec<MentionView> = records
        .into_iter()
        .filter_map(|record| match record.body {
            EventBody::Post { author, text, .. } => Some(MentionView {
                group: record.group,
                seq: record.seq,
                at: record.at,
                author: wire::profile(&author),
                text,
            }),
            _ => None,
        })
        .collect();
    // On record per group whose posts are returned.
    let reads = AuditReads::of(mentions.iter().map(|m| (m.group, m.seq)));
    Ok((Extension(reads), Json(mentions)))
}

//! Who has seen a post: read positions (既読), unread counts, and 確認しました.
//!
//! A member's read position is how far they have read a group, on any device. When it
//! moves forward, every socket of the reader learns its new position and unread count
//! (so a second device clears its badge), and every member of the group gets a receipt,
//! so that a post shows how many and which members have read it. Positions are stored
//! per membership; the count of unread posts is read from the store, never kept in memory.
//!
//! 確認しました is stronger than having read: a member confirms they have acted on a
//! post. It is an event of the group's sequence (`post_confirmed`), so it reaches every
//! member live and on catch-up, and stays in the group's record (the export, the audit
//! seals).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use renkei_domain::policy::{Action, PostFacts};
use renkei_protocol::api::{MemberRead, ReadList};
use renkei_protocol::{GroupId, GroupSummary, Receipt, Seq, ServerMessage};

use crate::app::App;
use crate::http::{HttpError, Id, Ids};
use crate::session::Caller;
use crate::store::{Change, EventBody, GroupRecord, StoreError, UserRecord};
use crate::{group, membership, wire};
use renkei_domain::clock;

/// The groups of a welcome, each with the user's read position and unread count. Without
/// the store (it failed just now) the groups are listed with nothing unread.
pub async fn summaries(app: &App, user: &UserRecord, groups: &[GroupRecord]) -> Vec<GroupSummary> {
    let states: HashMap<GroupId, _> = match app.store.read_states(user.id, None).await {
        Ok(states) => states.into_iter().map(|s| (s.group, s)).collect(),
        Err(err) => {
            tracing::warn!(error = %err, user = user.id, "unread counts not read");
            HashMap::new()
        }
    };
    groups
        .iter()
        .map(|record| {
            let mut summary = wire::group_summary(record);
            if let Some(state) = states.get(&record.id) {
                summary.read_seq = state.read_seq;
                summary.unread = u32::try_from(state.unread).unwrap_or(u32::MAX);
                summary.unread_mentions = u32::try_from(state.mentions).unwrap_or(u32::MAX);
                // The count covers the group up to the store's last event; the client
                // counts what arrives after `last_seq`.
                summary.last_seq = summary.last_seq.max(state.last_seq);
            }
            summary
        })
        .collect()
}

/// Moves `user`'s read position in `group` forward to `seq` (the caller clamps it to the
/// group's last event) and tells their sockets and the group's members. `Ok(false)` when
/// they are not a member.
pub async fn mark(
    app: &App,
    user: &UserRecord,
    group: GroupId,
    seq: Seq,
) -> Result<bool, StoreError> {
    let at = clock::now_ms();
    let Some(stored) = app.store.mark_read(group, user.id, seq, at).await? else {
        return Ok(false);
    };
    if stored != seq || seq == 0 {
        // Further already (another device): nothing moved. (A repeat of the position it
        // holds is told again: clients send each position once, the frame budget bounds
        // the rest.)
        return Ok(true);
    }
    if let Some(state) = app.store.read_states(user.id, Some(group)).await?.first() {
        app.bus.notify(
            user.id,
            &ServerMessage::ReadPosition {
                group,
                seq: state.read_seq,
                unread: u32::try_from(state.unread).unwrap_or(u32::MAX),
                last_seq: state.last_seq,
            },
        );
    }
    app.bus.notify_group(
        group,
        &ServerMessage::Receipt(Receipt {
            group,
            user: user.id,
            seq,
            at,
        }),
    );
    Ok(true)
}

/// `GET /api/v1/groups/{id}/reads`: every member's read position (members of the group).
pub async fn reads(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<ReadList>, HttpError> {
    let (_, facts) = group::target(&app, &caller, id).await?;
    caller.may(Action::ReadGroup(facts))?;
    let members = app
        .store
        .group_reads(id)
        .await?
        .into_iter()
        .map(|read| MemberRead {
            user: wire::profile(&read.user),
            seq: read.seq,
            at: read.at,
        })
        .collect();
    Ok(Json(ReadList { group: id, members }))
}

/// `POST /api/v1/groups/{id}/posts/{seq}/confirm`: 確認しました.
pub async fn confirm(
    State(app): State<Arc<App>>,
    caller: Caller,
    Ids(group, seq): Ids,
) -> Result<StatusCode, HttpError> {
    let (_, facts) = group::target(&app, &caller, group).await?;
    // The policy on the group before the post is looked up: a non-member gets the same
    // answer for every sequence number (existing, deleted or never used).
    caller.may(Action::ReadGroup(facts))?;
    let author = match group::event_at(&app, group, seq).await? {
        Some(EventBody::Post { author, .. }) => Some(author),
        _ => None,
    };
    caller.may(Action::ConfirmPost(PostFacts {
        group: facts,
        author: author.as_ref().map(|a| a.id),
        author_facility: author.as_ref().and_then(|a| a.facility_id),
    }))?;
    if author.is_none() {
        return Err(HttpError::not_found("post"));
    }
    let by = caller.user.id;
    membership::change(&app, group, Change::Confirm { seq, by }).await?;
    tracing::info!(group, seq, by, "post confirmed");
    Ok(StatusCode::NO_CONTENT)
}

//! Mentions (`@name`): a post that names a member of its group after an `@` notifies them
//! and enters their list of mentions.
//!
//! A member is named by their display name as the group shows it, with or without its
//! spaces (`@看護師 アリス` or `@看護師アリス`), compared as search compares text
//! ([`crate::search::fold`]: full-width `＠` and letters fold). The commit that stores the
//! post stores its mentions in the same transaction; the sequencer then sends each named
//! member a `mention` notice.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use renkei_protocol::api::MentionView;
use renkei_protocol::{Millis, UserId};

use crate::api::{AuditReads, Caller};
use crate::app::App;
use crate::http::HttpError;
use crate::search::fold;
use crate::store::EventBody;
use crate::{group, wire};

/// Whether a text may mention anyone (cheap: most posts have no `@`).
pub fn may_mention(text: &str) -> bool {
    text.contains('@') || text.contains('＠')
}

/// The members `text` names, among `members` (id, display name), without its author.
pub fn find(text: &str, author: UserId, members: &[(UserId, String)]) -> Vec<UserId> {
    let text = fold(text);
    let mut named: Vec<UserId> = members
        .iter()
        .filter(|(id, _)| *id != author)
        .filter(|(_, name)| {
            let name = fold(name.trim());
            if name.is_empty() {
                return false;
            }
            let joined: String = name.chars().filter(|c| !c.is_whitespace()).collect();
            text.contains(&format!("@{name}")) || text.contains(&format!("@{joined}"))
        })
        .map(|(id, _)| *id)
        .collect();
    named.sort_unstable();
    named.dedup();
    named
}

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

#[cfg(test)]
mod tests {
    use super::find;

    fn members() -> Vec<(i64, String)> {
        vec![
            (1, "看護師 アリス".into()),
            (2, "医師 ボブ".into()),
            (3, "Carol Smith".into()),
            (4, "".into()),
        ]
    }

    #[test]
    fn a_name_with_or_without_its_spaces() {
        assert_eq!(find("@医師 ボブ 往診お願いします", 1, &members()), vec![2]);
        assert_eq!(find("＠医師ボブ 往診お願いします", 1, &members()), vec![2]);
        assert_eq!(
            find("@carol smith and @看護師アリス", 2, &members()),
            vec![1, 3]
        );
    }

    #[test]
    fn no_at_no_mention_and_never_oneself() {
        assert!(find("医師 ボブ に連絡済み", 1, &members()).is_empty());
        assert!(find("@看護師 アリス メモ", 1, &members()).is_empty());
        assert!(find("@ 医師 ボブ", 1, &members()).is_empty());
        assert!(
            find("@", 1, &members()).is_empty(),
            "an empty name names nobody"
        );
    }
}

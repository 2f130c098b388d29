//! Search (検索) of posts in the groups a user may read, in Japanese text.
//!
//! Japanese has no spaces between words, and the words care teams look for are often one
//! or two characters (熱, 血圧, 褥瘡, 便). Word tokenizers need a dictionary; the n-gram
//! indexes both engines offer (SQLite FTS5's `trigram`, PostgreSQL's `pg_trgm`) cannot
//! use their index for a query shorter than three characters. So a search is a substring
//! match over the posts of the caller's own groups, walked on each group's primary key:
//! it finds any part of a word, of any length, and reads only what the caller may read.
//! `docs/search.md` gives the measurements and when to revisit the choice.
//!
//! Both the text and the query are folded the same way ([`fold`]): Unicode NFKC, so that
//! full-width and half-width forms match (１２８ and 128, ｶﾀｶﾅ and カタカナ), and lower
//! case. The folded copy is stored beside the text when it differs.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::{Extension, Json};
use renkei_protocol::api::{SearchHit, SearchResults};
use renkei_protocol::Millis;

use renkei_domain::search::fold;

use crate::app::App;
use crate::http::{AuditReads, HttpError};
use crate::session::Caller;
use crate::store::{EventBody, PostSearch};
use crate::{group, wire};

/// The longest query, in characters.
const MAX_QUERY_CHARS: usize = 100;
/// The largest page of hits.
const MAX_HITS: u32 = 100;

/// What `GET /api/v1/search` takes.
#[derive(Debug, serde::Deserialize)]
pub struct SearchQuery {
    q: String,
    /// Hits committed before this time (the `at` of the last hit of the previous page).
    before: Option<Millis>,
    limit: Option<u32>,
}

/// `GET /api/v1/search?q=`: posts containing the text, newest first, in the groups the
/// caller may read now (their groups; archived ones only while members may read them).
pub async fn search(
    State(app): State<Arc<App>>,
    caller: Caller,
    query: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<(Extension<AuditReads>, Json<SearchResults>), HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let folded = fold(query.q.trim());
    if folded.is_empty() {
        return Err(HttpError::bad_request("say what to search for (q)"));
    }
    if folded.chars().count() > MAX_QUERY_CHARS {
        return Err(HttpError::bad_request(format!(
            "a search has at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_HITS);
    let groups = group::readable(&app, &caller);
    let records = app
        .store
        .search_posts(&PostSearch {
            groups: groups.iter().map(|g| g.id).collect(),
            folded,
            before: query.before,
            limit: limit + 1,
        })
        .await?;
    let has_more = records.len() > limit as usize;
    let hits: Vec<SearchHit> = records
        .into_iter()
        .take(limit as usize)
        .filter_map(|record| {
            let EventBody::Post { author, text, .. } = record.body else {
                return None;
            };
            let group = groups.iter().find(|g| g.id == record.group)?;
            Some(SearchHit {
                group: group.id,
                group_name: group.name.clone(),
                patient_name: group.patient_name.clone(),
                seq: record.seq,
                at: record.at,
                author: wire::profile(&author),
                text,
            })
        })
        .collect();
    // On record per group whose posts are returned, never with the query.
    let reads = AuditReads::of(hits.iter().map(|hit| (hit.group, hit.seq)));
    Ok((Extension(reads), Json(SearchResults { hits, has_more })))
}

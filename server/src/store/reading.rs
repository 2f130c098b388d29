//! Storage of what members read: read positions (既読) with unread counts, search of the
//! posts a user may read, and the posts that mention them. One body of SQL for both engines.

use async_trait::async_trait;
use renkei_protocol::{GroupId, Millis, Seq, UserId};

use super::queries::{event_record, user_record, EventRow, UserRow, EVENT_SELECT, USER_COLUMNS};
use super::{EventRecord, StoreError, UserRecord};

/// A member's read position in a group, and what is left unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadState {
    pub group: GroupId,
    pub read_seq: Seq,
    /// Posts by others after `read_seq` up to `last_seq`, not deleted.
    pub unread: i64,
    /// Of those, the posts that mention the member.
    pub mentions: i64,
    /// The group's last sequence number when counted.
    pub last_seq: Seq,
}

/// A member of a group with how far they have read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRead {
    pub user: UserRecord,
    pub seq: Seq,
    pub at: Option<Millis>,
}

/// Posts to look for: those whose folded text contains `folded`, in `groups`, committed
/// before `before`, newest first.
#[derive(Debug, Clone)]
pub struct PostSearch {
    pub groups: Vec<GroupId>,
    /// The text as [`renkei_domain::search::fold`] folds it.
    pub folded: String,
    pub before: Option<Millis>,
    pub limit: u32,
}

/// What members read, as stored. Every method is one statement or one transaction.
#[async_trait]
pub trait Reading: Send + Sync {
    /// Moves a member's read position forward to `seq` (never back) and returns where it
    /// stands; `None` when they are not a member.
    async fn mark_read(
        &self,
        group: GroupId,
        user: UserId,
        seq: Seq,
        at: Millis,
    ) -> Result<Option<Seq>, StoreError>;
    /// The user's read state in each of their groups (or in `group` only).
    async fn read_states(
        &self,
        user: UserId,
        group: Option<GroupId>,
    ) -> Result<Vec<ReadState>, StoreError>;
    /// Every member of a group with their read position, by id.
    async fn group_reads(&self, group: GroupId) -> Result<Vec<MemberRead>, StoreError>;
    /// Posts that are not deleted and contain the searched text, newest first.
    async fn search_posts(&self, search: &PostSearch) -> Result<Vec<EventRecord>, StoreError>;
    /// Who the post at (`group`, `seq`) mentions.
    async fn mentioned(&self, group: GroupId, seq: Seq) -> Result<Vec<UserId>, StoreError>;
    /// The posts that mention `user` in `groups`, not deleted, committed before `before`,
    /// newest first.
    async fn mentions_of(
        &self,
        user: UserId,
        groups: &[GroupId],
        before: Option<Millis>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
}

/// Adds the condition that a post's folded text contains `folded` (its LIKE wildcards
/// escaped). The folded copy is stored only where it differs from the text.
pub(super) fn push_contains<'a, DB: sqlx::Database>(
    query: &mut sqlx::QueryBuilder<'a, DB>,
    folded: &str,
) where
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    let pattern = format!(
        "%{}%",
        folded
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    query
        .push(" AND COALESCE(e.search_text, e.text) LIKE ")
        .push_bind(pattern)
        .push(" ESCAPE '\\'");
}

macro_rules! reading_store {
    ($store:ty, $db:ty) => {
        #[async_trait]
        impl Reading for $store {
            async fn mark_read(
                &self,
                group: GroupId,
                user: UserId,
                seq: Seq,
                at: Millis,
            ) -> Result<Option<Seq>, StoreError> {
                let stored: Option<(i64,)> = sqlx::query_as(
                    "UPDATE memberships SET last_read_at = $4, last_read_seq = \
                     CASE WHEN $3 > last_read_seq THEN $3 ELSE last_read_seq END \
                     WHERE group_id = $1 AND user_id = $2 RETURNING last_read_seq",
                )
                .bind(group)
                .bind(user)
                .bind(seq)
                .bind(at)
                .fetch_optional(&self.pool)
                .await?;
                Ok(stored.map(|(seq,)| seq))
            }

            async fn read_states(
                &self,
                user: UserId,
                group: Option<GroupId>,
            ) -> Result<Vec<ReadState>, StoreError> {
                // One seek per group: the count walks the group's events after the read
                // position on the primary key.
                // Mentions seek on their primary key (user, group, seq) the same way.
                let rows: Vec<(i64, i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT m.group_id, m.last_read_seq, \
                     (SELECT COUNT(*) FROM events e WHERE e.group_id = m.group_id \
                      AND e.seq > m.last_read_seq AND e.seq <= g.last_seq AND e.kind = 'post' \
                      AND e.deleted_at IS NULL AND e.author_id <> m.user_id), g.last_seq, \
                     (SELECT COUNT(*) FROM mentions n JOIN events e \
                      ON e.group_id = n.group_id AND e.seq = n.seq \
                      WHERE n.user_id = m.user_id AND n.group_id = m.group_id \
                      AND n.seq > m.last_read_seq AND n.seq <= g.last_seq \
                      AND e.deleted_at IS NULL) \
                     FROM memberships m JOIN care_groups g ON g.id = m.group_id \
                     WHERE m.user_id = $1 AND ($2 IS NULL OR m.group_id = $2) ORDER BY m.group_id",
                )
                .bind(user)
                .bind(group)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(group, read_seq, unread, last_seq, mentions)| ReadState {
                        group,
                        read_seq,
                        unread,
                        mentions,
                        last_seq,
                    })
                    .collect())
            }

            async fn group_reads(&self, group: GroupId) -> Result<Vec<MemberRead>, StoreError> {
                #[derive(sqlx::FromRow)]
                struct Row {
                    #[sqlx(flatten)]
                    user: UserRow,
                    last_read_seq: i64,
                    last_read_at: Option<i64>,
                }
                let sql = format!(
                    "SELECT {USER_COLUMNS}, m.last_read_seq, m.last_read_at FROM memberships m \
                     JOIN users u ON u.id = m.user_id LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE m.group_id = $1 ORDER BY u.id"
                );
                let rows: Vec<Row> = sqlx::query_as(&sql).bind(group).fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| {
                        Ok(MemberRead {
                            user: user_record(row.user)?,
                            seq: row.last_read_seq,
                            at: row.last_read_at,
                        })
                    })
                    .collect()
            }

            async fn search_posts(
                &self,
                search: &PostSearch,
            ) -> Result<Vec<EventRecord>, StoreError> {
                if search.groups.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(EVENT_SELECT);
                query.push(" WHERE e.group_id IN (");
                let mut groups = query.separated(", ");
                for group in &search.groups {
                    groups.push_bind(*group);
                }
                query.push(") AND e.kind = 'post' AND e.deleted_at IS NULL");
                push_contains(&mut query, &search.folded);
                if let Some(before) = search.before {
                    query.push(" AND e.created_at < ").push_bind(before);
                }
                query
                    .push(" ORDER BY e.created_at DESC, e.group_id, e.seq DESC LIMIT ")
                    .push_bind(i64::from(search.limit));
                let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(event_record).collect()
            }

            async fn mentioned(&self, group: GroupId, seq: Seq) -> Result<Vec<UserId>, StoreError> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT user_id FROM mentions WHERE group_id = $1 AND seq = $2 ORDER BY user_id",
                )
                .bind(group)
                .bind(seq)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(user,)| user).collect())
            }

            async fn mentions_of(
                &self,
                user: UserId,
                groups: &[GroupId],
                before: Option<Millis>,
                limit: u32,
            ) -> Result<Vec<EventRecord>, StoreError> {
                if groups.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(EVENT_SELECT);
                query
                    .push(" JOIN mentions m ON m.group_id = e.group_id AND m.seq = e.seq WHERE m.user_id = ")
                    .push_bind(user)
                    .push(" AND e.deleted_at IS NULL AND e.group_id IN (");
                let mut list = query.separated(", ");
                for group in groups {
                    list.push_bind(*group);
                }
                query.push(")");
                if let Some(before) = before {
                    query.push(" AND m.created_at < ").push_bind(before);
                }
                query
                    .push(" ORDER BY m.created_at DESC, e.group_id, e.seq DESC LIMIT ")
                    .push_bind(i64::from(limit));
                let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(event_record).collect()
            }
        }
    };
}

reading_store!(super::SqliteStore, sqlx::Sqlite);
reading_store!(super::PgStore, sqlx::Postgres);

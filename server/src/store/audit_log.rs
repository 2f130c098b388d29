//! Storage of the audit trail: appends that extend the hash chain under the head's lock,
//! reads in id order for verification, and searches. One body of SQL for both engines.

use async_trait::async_trait;
use renkei_protocol::{GroupId, Millis, Seq, UserId};

use super::StoreError;
use renkei_domain::audit::{link, AuditEntry, AuditRecord};

/// Which records a search returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    pub actor: Option<UserId>,
    pub group: Option<GroupId>,
    /// Only what concerns this facility: its people's actions and its groups' records.
    pub facility: Option<i64>,
    pub limit: u32,
}

/// The audit trail as stored. Every method is one transaction.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends `entries` in order, each chained to the one before, after the head's lock.
    async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    /// Up to `limit` records after id `after`, in id order.
    async fn audit_records(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>, StoreError>;
    /// The head: the last appended record's id and hash (0 and empty before the first).
    async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError>;
    /// Records matching `filter`, newest first.
    async fn search_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;

    /// Groups with events not sealed yet: (group, sealed up to, last seq), at most `limit`.
    async fn unsealed_groups(&self, limit: u32) -> Result<Vec<(GroupId, Seq, Seq)>, StoreError>;
    /// What a seal covers of a group's events `after < seq <= upto`, in order.
    async fn sealed_events(
        &self,
        group: GroupId,
        after: Seq,
        upto: Seq,
    ) -> Result<Vec<SealedEvent>, StoreError>;
    /// Appends `entry`, a seal of events, and moves each group's seal mark to its `Seq`
    /// in `marks`, in one transaction. Returns the record's id and chain hash (the head
    /// it made, published elsewhere as the seal's anchor).
    async fn append_seal(
        &self,
        entry: &AuditEntry,
        marks: &[(GroupId, Seq)],
    ) -> Result<(i64, Vec<u8>), StoreError>;
}

/// An event as a seal covers it: the fields that never change, and the text (a post's is
/// checked against its hash; a deletion erases it but keeps the hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct SealedEvent {
    pub seq: i64,
    pub kind: String,
    pub author_id: Option<i64>,
    pub subject_id: Option<i64>,
    pub client_id: Option<String>,
    pub text: Option<String>,
    pub content_hash: Option<Vec<u8>>,
    pub target_seq: Option<i64>,
    pub due_at: Option<i64>,
    pub created_at: i64,
}

/// Rows per multi-row `INSERT`: ten values each, well below either engine's bind limit.
const INSERT_ROWS: usize = 500;

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor_id: Option<i64>,
    facility_id: Option<i64>,
    action: String,
    group_id: Option<i64>,
    target: String,
    source: String,
    result: String,
    hash: Vec<u8>,
}

impl From<AuditRow> for AuditRecord {
    fn from(row: AuditRow) -> Self {
        AuditRecord {
            id: row.id,
            entry: AuditEntry {
                at: row.at,
                actor: row.actor_id,
                facility: row.facility_id,
                action: row.action,
                group: row.group_id,
                target: row.target,
                source: row.source,
                result: row.result,
            },
            hash: row.hash,
        }
    }
}

const AUDIT_COLUMNS: &str =
    "id, at, actor_id, facility_id, action, group_id, target, source, result, hash";

macro_rules! audit_store {
    ($store:ty, $db:ty, $lock:literal) => {
        #[async_trait]
        impl AuditLog for $store {
            async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
                if entries.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                Self::append_in(&mut tx, entries).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn unsealed_groups(
                &self,
                limit: u32,
            ) -> Result<Vec<(GroupId, Seq, Seq)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT g.id, COALESCE(s.sealed_seq, 0), g.last_seq FROM care_groups g \
                     LEFT JOIN audit_seals s ON s.group_id = g.id \
                     WHERE g.last_seq > COALESCE(s.sealed_seq, 0) ORDER BY g.id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn sealed_events(
                &self,
                group: GroupId,
                after: Seq,
                upto: Seq,
            ) -> Result<Vec<SealedEvent>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT seq, kind, author_id, subject_id, client_id, text, content_hash, \
                     target_seq, due_at, created_at FROM events \
                     WHERE group_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
                )
                .bind(group)
                .bind(after)
                .bind(upto)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn append_seal(
                &self,
                entry: &AuditEntry,
                marks: &[(GroupId, Seq)],
            ) -> Result<(i64, Vec<u8>), StoreError> {
                let mut tx = self.begin_write().await?;
                let head = Self::append_in(&mut tx, std::slice::from_ref(entry)).await?;
                for (group, upto) in marks {
                    sqlx::query(
                        "INSERT INTO audit_seals (group_id, sealed_seq) VALUES ($1, $2) \
                         ON CONFLICT (group_id) DO UPDATE SET sealed_seq = excluded.sealed_seq",
                    )
                    .bind(group)
                    .bind(upto)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(head)
            }

            async fn audit_records(
                &self,
                after: i64,
                limit: u32,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2"
                ))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(AuditRecord::from).collect())
            }

            async fn audit_head(&self) -> Result<(i64, Vec<u8>), StoreError> {
                Ok(
                    sqlx::query_as("SELECT last_id, last_hash FROM audit_head WHERE id = 1")
                        .fetch_one(&self.pool)
                        .await?,
                )
            }

            async fn search_audit(
                &self,
                filter: &AuditFilter,
            ) -> Result<Vec<AuditRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit_log WHERE 1 = 1"
                ));
                if let Some(since) = filter.since {
                    query.push(" AND at >= ").push_bind(since);
                }
                if let Some(until) = filter.until {
                    query.push(" AND at < ").push_bind(until);
                }
                if let Some(actor) = filter.actor {
                    query.push(" AND actor_id = ").push_bind(actor);
                }
                if let Some(group) = filter.group {
                    query.push(" AND group_id = ").push_bind(group);
                }
                if let Some(facility) = filter.facility {
                    query
                        .push(" AND (facility_id = ")
                        .push_bind(facility)
                        .push(" OR group_id IN (SELECT id FROM care_groups WHERE owner_facility_id = ")
                        .push_bind(facility)
                        .push("))");
                }
                query
                    .push(" ORDER BY id DESC LIMIT ")
                    .push_bind(i64::from(filter.limit));
                let rows: Vec<AuditRow> = query.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows.into_iter().map(AuditRecord::from).collect())
            }
        }

        impl $store {
            /// Appends `entries` inside `tx`, each chained to the one before, after the
            /// head's lock.
            async fn append_in(
                tx: &mut sqlx::Transaction<'static, $db>,
                entries: &[AuditEntry],
            ) -> Result<(i64, Vec<u8>), StoreError> {
                let sql = concat!("SELECT last_id, last_hash FROM audit_head WHERE id = 1", $lock);
                let (mut id, mut hash): (i64, Vec<u8>) =
                    sqlx::query_as(sql).fetch_one(&mut **tx).await?;
                for chunk in entries.chunks(INSERT_ROWS) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(format!(
                        "INSERT INTO audit_log ({AUDIT_COLUMNS}) "
                    ));
                    insert.push_values(chunk, |mut row, entry| {
                        id += 1;
                        hash = link(&hash, id, entry);
                        row.push_bind(id)
                            .push_bind(entry.at)
                            .push_bind(entry.actor)
                            .push_bind(entry.facility)
                            .push_bind(entry.action.clone())
                            .push_bind(entry.group)
                            .push_bind(entry.target.clone())
                            .push_bind(entry.source.clone())
                            .push_bind(entry.result.clone())
                            .push_bind(hash.clone());
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                sqlx::query("UPDATE audit_head SET last_id = $1, last_hash = $2 WHERE id = 1")
                    .bind(id)
                    .bind(&hash)
                    .execute(&mut **tx)
                    .await?;
                Ok((id, hash))
            }
        }
    };
}

audit_store!(super::SqliteStore, sqlx::Sqlite, "");
audit_store!(super::PgStore, sqlx::Postgres, " FOR UPDATE");

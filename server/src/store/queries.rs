//! The SQL both engines run. SQLite and PostgreSQL accept the same `$N` placeholders and
//! `RETURNING`, so one body implements [`Store`] for each pool type; the engines differ
//! only in how they are opened (`sqlite.rs`, `postgres.rs`) and in their migrations.

use super::{
    kind_name, parse_kind, parse_role, role_name, AppendOutcome, Credentials, Directory, EventBody,
    EventRecord, GroupRecord, NewFacility, NewGroup, NewPost, NewSession, NewUser, Placement,
    Store, StoreError, UserRecord,
};
use std::collections::{HashMap, HashSet};

use renkei_protocol::{GroupId, Millis, Seq, UserId};

/// Columns of a user as others see them, with `users u LEFT JOIN facilities f`.
const USER_COLUMNS: &str =
    "u.id, u.login, u.display_name, u.profession, u.role, u.facility_id, f.name";

type UserRow = (
    i64,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
);

fn user_record(row: UserRow) -> Result<UserRecord, StoreError> {
    let (id, login, name, profession, role, facility_id, facility_name) = row;
    Ok(UserRecord {
        id,
        login,
        name,
        profession,
        role: parse_role(&role)?,
        facility_id,
        facility_name,
    })
}

type EventRow = (
    i64,
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

const EVENT_SELECT: &str = "SELECT e.group_id, e.seq, e.created_at, e.kind, e.client_id, e.text, \
     u.id, u.login, u.display_name, u.profession, u.role, u.facility_id, f.name \
     FROM events e LEFT JOIN users u ON u.id = e.author_id \
     LEFT JOIN facilities f ON f.id = u.facility_id";

fn event_record(row: EventRow) -> Result<EventRecord, StoreError> {
    let (group, seq, at, kind, client_id, text, uid, ulogin, uname, uprof, urole, ufac, ufacname) =
        row;
    let body = match kind.as_str() {
        "post" => {
            let author = match (uid, ulogin, uname, uprof, urole) {
                (Some(id), Some(login), Some(name), Some(profession), Some(role)) => {
                    user_record((id, login, name, profession, role, ufac, ufacname))?
                }
                _ => {
                    return Err(StoreError::Corrupt(format!(
                        "post {group}/{seq} has no author"
                    )))
                }
            };
            EventBody::Post {
                author,
                client_id: client_id.unwrap_or_default(),
                text: text.unwrap_or_default(),
            }
        }
        other => return Err(StoreError::Corrupt(format!("event kind {other:?}"))),
    };
    Ok(EventRecord {
        group,
        seq,
        at,
        body,
    })
}

fn event_records(rows: Vec<EventRow>) -> Result<Vec<EventRecord>, StoreError> {
    rows.into_iter().map(event_record).collect()
}

/// What the batch knows of a client id: stored by an earlier batch, or claimed by an
/// earlier post of this batch (by its index).
enum Earlier {
    Stored(Placement, Option<Vec<u8>>),
    InBatch(usize),
}

/// Which posts of a batch are new, and how many new posts each group gets.
struct BatchPlan {
    /// Per post: `None` when new, else what it repeats.
    repeats: Vec<Option<Repeat>>,
    new_per_group: HashMap<GroupId, i64>,
}

enum Repeat {
    /// The same post as one stored before.
    Stored(Placement),
    /// The same post as an earlier new post of this batch (by index).
    InBatch(usize),
    /// The client id was used for a different post.
    Conflict,
}

fn plan_batch(posts: &[NewPost], earlier: &mut HashMap<(i64, String), Earlier>) -> BatchPlan {
    let mut plan = BatchPlan {
        repeats: Vec::with_capacity(posts.len()),
        new_per_group: HashMap::new(),
    };
    for (index, post) in posts.iter().enumerate() {
        let key = (post.author.id, post.client_id.clone());
        let repeat = match earlier.get(&key) {
            Some(Earlier::Stored(placement, hash)) => {
                let same = placement.group == post.group
                    && hash.as_deref() == Some(post.content_hash.as_slice());
                Some(if same {
                    Repeat::Stored(*placement)
                } else {
                    Repeat::Conflict
                })
            }
            Some(Earlier::InBatch(first)) => {
                let original = &posts[*first];
                let same =
                    original.group == post.group && original.content_hash == post.content_hash;
                Some(if same {
                    Repeat::InBatch(*first)
                } else {
                    Repeat::Conflict
                })
            }
            None => {
                earlier.insert(key, Earlier::InBatch(index));
                *plan.new_per_group.entry(post.group).or_default() += 1;
                None
            }
        };
        plan.repeats.push(repeat);
    }
    plan
}

/// The outcome of every post, given each group's first new sequence number (absent for
/// groups that took nothing) and the groups that exist.
fn place_batch(
    posts: &[NewPost],
    plan: &BatchPlan,
    next_seq: &mut HashMap<GroupId, Seq>,
    existing: &HashSet<GroupId>,
) -> Vec<AppendOutcome> {
    let mut outcomes: Vec<AppendOutcome> = Vec::with_capacity(posts.len());
    for (post, repeat) in posts.iter().zip(&plan.repeats) {
        let outcome = match repeat {
            Some(Repeat::Stored(placement)) => AppendOutcome::Duplicate(*placement),
            Some(Repeat::Conflict) => AppendOutcome::ClientIdConflict,
            Some(Repeat::InBatch(first)) => match &outcomes[*first] {
                AppendOutcome::Committed(placement) => AppendOutcome::Duplicate(*placement),
                other => other.clone(),
            },
            None => match next_seq.get_mut(&post.group) {
                Some(seq) => {
                    let placement = Placement {
                        group: post.group,
                        seq: *seq,
                        at: post.at,
                    };
                    *seq += 1;
                    AppendOutcome::Committed(placement)
                }
                None if existing.contains(&post.group) => AppendOutcome::GroupArchived,
                None => AppendOutcome::NoSuchGroup,
            },
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// Implements [`Store`] for a type with a `pool` field of an sqlx pool.
macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl Store for $store {
            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn is_empty(&self) -> Result<bool, StoreError> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await?;
                Ok(count == 0)
            }

            async fn create_facility(&self, facility: &NewFacility) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO facilities (name, kind, created_at) VALUES ($1, $2, $3) \
                     RETURNING id",
                )
                .bind(&facility.name)
                .bind(&facility.kind)
                .bind(crate::clock::now_ms())
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn create_users(&self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut ids = Vec::with_capacity(users.len());
                let now = crate::clock::now_ms();
                for user in users {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO users (facility_id, login, display_name, profession, role, \
                         password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                    )
                    .bind(user.facility_id)
                    .bind(&user.login)
                    .bind(&user.name)
                    .bind(&user.profession)
                    .bind(role_name(user.role))
                    .bind(&user.password_hash)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                    ids.push(id);
                }
                tx.commit().await?;
                Ok(ids)
            }

            async fn credentials(&self, login: &str) -> Result<Option<Credentials>, StoreError> {
                let sql = format!(
                    "SELECT {USER_COLUMNS}, u.password_hash FROM users u \
                     LEFT JOIN facilities f ON f.id = u.facility_id WHERE u.login = $1"
                );
                type Row = (i64, String, String, String, String, Option<i64>, Option<String>, String);
                let row: Option<Row> =
                    sqlx::query_as(&sql).bind(login).fetch_optional(&self.pool).await?;
                row.map(|(id, login, name, profession, role, fid, fname, password_hash)| {
                    Ok(Credentials {
                        user: user_record((id, login, name, profession, role, fid, fname))?,
                        password_hash,
                    })
                })
                .transpose()
            }

            async fn create_sessions(&self, sessions: &[NewSession]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                for session in sessions {
                    sqlx::query(
                        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(&session.token_hash)
                    .bind(session.user_id)
                    .bind(session.created_at)
                    .bind(session.expires_at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn session_user(
                &self,
                token_hash: &[u8],
                now: Millis,
            ) -> Result<Option<UserRecord>, StoreError> {
                let sql = format!(
                    "SELECT {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
                     LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2"
                );
                let row: Option<UserRow> = sqlx::query_as(&sql)
                    .bind(token_hash)
                    .bind(now)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(user_record).transpose()
            }

            async fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_group(&self, group: &NewGroup) -> Result<GroupId, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO care_groups (kind, name, patient_name, owner_facility_id, \
                     created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(kind_name(group.kind))
                .bind(&group.name)
                .bind(&group.patient_name)
                .bind(group.owner_facility_id)
                .bind(group.created_at)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn directory(&self) -> Result<Directory, StoreError> {
                let mut tx = self.pool.begin().await?;
                let groups: Vec<(i64, String, String, Option<String>, Option<i64>, Option<i64>, i64)> =
                    sqlx::query_as(
                        "SELECT id, kind, name, patient_name, owner_facility_id, archived_at, \
                         last_seq FROM care_groups ORDER BY id",
                    )
                    .fetch_all(&mut *tx)
                    .await?;
                let memberships: Vec<(i64, i64)> =
                    sqlx::query_as("SELECT group_id, user_id FROM memberships ORDER BY group_id")
                        .fetch_all(&mut *tx)
                        .await?;
                tx.commit().await?;
                let groups = groups
                    .into_iter()
                    .map(|(id, kind, name, patient_name, owner, archived_at, last_seq)| {
                        Ok(GroupRecord {
                            id,
                            kind: parse_kind(&kind)?,
                            name,
                            patient_name,
                            owner_facility_id: owner,
                            archived: archived_at.is_some(),
                            last_seq,
                        })
                    })
                    .collect::<Result<_, StoreError>>()?;
                Ok(Directory {
                    groups,
                    memberships,
                })
            }

            async fn last_seqs(&self) -> Result<Vec<(GroupId, Seq)>, StoreError> {
                Ok(sqlx::query_as("SELECT id, last_seq FROM care_groups ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn add_members(
                &self,
                members: &[(GroupId, UserId)],
                at: Millis,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                for (group, user) in members {
                    sqlx::query(
                        "INSERT INTO memberships (group_id, user_id, joined_at) VALUES ($1, $2, $3)",
                    )
                    .bind(group)
                    .bind(user)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn append_posts(
                &self,
                posts: &[NewPost],
            ) -> Result<Vec<AppendOutcome>, StoreError> {
                // Three statements per batch, not per post: the earlier uses of the batch's
                // client ids, one bump of every group's sequence, one insert of every event.
                let mut tx = self.begin_write().await?;

                let mut earlier = HashMap::new();
                if !posts.is_empty() {
                    // Two IN lists, not a row-value IN: both engines then seek the unique
                    // index instead of scanning it. The few extra rows (an author's other
                    // ids) never match a lookup, which is by exact (author, client id).
                    let authors: HashSet<i64> = posts.iter().map(|p| p.author.id).collect();
                    let client_ids: HashSet<&str> = posts.iter().map(|p| p.client_id.as_str()).collect();
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT author_id, client_id, group_id, seq, created_at, content_hash \
                         FROM events WHERE client_id IS NOT NULL AND author_id IN (",
                    );
                    let mut list = query.separated(", ");
                    for author in authors {
                        list.push_bind(author);
                    }
                    query.push(") AND client_id IN (");
                    let mut list = query.separated(", ");
                    for client_id in client_ids {
                        list.push_bind(client_id);
                    }
                    query.push(")");
                    let rows: Vec<(i64, String, i64, i64, i64, Option<Vec<u8>>)> =
                        query.build_query_as().fetch_all(&mut *tx).await?;
                    for (author, client_id, group, seq, at, hash) in rows {
                        earlier.insert((author, client_id), Earlier::Stored(Placement { group, seq, at }, hash));
                    }
                }
                let plan = plan_batch(posts, &mut earlier);

                let mut next_seq: HashMap<GroupId, Seq> = HashMap::new();
                if !plan.new_per_group.is_empty() {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE care_groups SET last_seq = last_seq + CASE id",
                    );
                    for (group, count) in &plan.new_per_group {
                        query.push(" WHEN ").push_bind(*group).push(" THEN ").push_bind(*count);
                    }
                    query.push(" ELSE 0 END WHERE archived_at IS NULL AND id IN (");
                    let mut ids = query.separated(", ");
                    for group in plan.new_per_group.keys() {
                        ids.push_bind(*group);
                    }
                    query.push(") RETURNING id, last_seq");
                    let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut *tx).await?;
                    for (group, last) in rows {
                        let count = plan.new_per_group.get(&group).copied().unwrap_or(0);
                        next_seq.insert(group, last - count + 1);
                    }
                }
                let mut existing: HashSet<GroupId> = next_seq.keys().copied().collect();
                let refused: Vec<GroupId> = plan
                    .new_per_group
                    .keys()
                    .filter(|g| !next_seq.contains_key(g))
                    .copied()
                    .collect();
                if !refused.is_empty() {
                    let mut query =
                        sqlx::QueryBuilder::<$db>::new("SELECT id FROM care_groups WHERE id IN (");
                    let mut ids = query.separated(", ");
                    for group in &refused {
                        ids.push_bind(*group);
                    }
                    query.push(")");
                    let rows: Vec<(i64,)> = query.build_query_as().fetch_all(&mut *tx).await?;
                    existing.extend(rows.into_iter().map(|(id,)| id));
                }

                let outcomes = place_batch(posts, &plan, &mut next_seq, &existing);
                let rows: Vec<(&NewPost, Seq)> = posts
                    .iter()
                    .zip(&outcomes)
                    .filter_map(|(post, outcome)| match outcome {
                        AppendOutcome::Committed(placement) => Some((post, placement.seq)),
                        _ => None,
                    })
                    .collect();
                // A batch of nothing but repeats and refusals inserts nothing (and an empty
                // VALUES list is not SQL).
                if !rows.is_empty() {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO events (group_id, seq, kind, author_id, client_id, text, \
                         content_hash, created_at) ",
                    );
                    query.push_values(rows, |mut row, (post, seq)| {
                        row.push_bind(post.group)
                            .push_bind(seq)
                            .push_bind("post")
                            .push_bind(post.author.id)
                            .push_bind(&post.client_id)
                            .push_bind(&post.text)
                            .push_bind(&post.content_hash)
                            .push_bind(post.at);
                    });
                    query.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(outcomes)
            }

            async fn events_after(
                &self,
                group: GroupId,
                after: Seq,
                upto: Seq,
                limit: u32,
            ) -> Result<Vec<EventRecord>, StoreError> {
                let sql = format!(
                    "{EVENT_SELECT} WHERE e.group_id = $1 AND e.seq > $2 AND e.seq <= $3 \
                     ORDER BY e.seq LIMIT $4"
                );
                let rows: Vec<EventRow> = sqlx::query_as(&sql)
                    .bind(group)
                    .bind(after)
                    .bind(upto)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                event_records(rows)
            }

            async fn events_before(
                &self,
                group: GroupId,
                before: Option<Seq>,
                limit: u32,
            ) -> Result<Vec<EventRecord>, StoreError> {
                let sql = format!(
                    "{EVENT_SELECT} WHERE e.group_id = $1 AND e.seq < $2 \
                     ORDER BY e.seq DESC LIMIT $3"
                );
                let rows: Vec<EventRow> = sqlx::query_as(&sql)
                    .bind(group)
                    .bind(before.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                let mut events = event_records(rows)?;
                events.reverse();
                Ok(events)
            }
        }
    };
}

sql_store!(super::SqliteStore, sqlx::Sqlite);
sql_store!(super::PgStore, sqlx::Postgres);

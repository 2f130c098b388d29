//! The SQL both engines run. SQLite and PostgreSQL accept the same `$N` placeholders and
//! `RETURNING`, so one body implements [`Store`] for each pool type; the engines differ
//! only in how they are opened (`sqlite.rs`, `postgres.rs`) and in their migrations.

use super::{
    kind_name, parse_kind, parse_role, parse_status, role_name, signer_name, AppendOutcome, Change,
    Changed, Credentials, Directory, EventBody, EventRecord, GroupRecord, NewFacility, NewGroup,
    NewPost, NewSession, NewUser, Placement, SessionUser, Store, StoreError, UserRecord,
};
use std::collections::{HashMap, HashSet};

use renkei_protocol::{GroupId, Millis, Seq, UserId};

/// Columns of a user as others see them, with `users u LEFT JOIN facilities f`.
pub(super) const USER_COLUMNS: &str = "u.id, u.login, u.display_name, u.profession, u.role, \
     u.status, u.facility_id, f.name AS facility_name";

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    id: i64,
    login: String,
    display_name: String,
    profession: String,
    role: String,
    status: String,
    facility_id: Option<i64>,
    facility_name: Option<String>,
}

pub(super) fn user_record(row: UserRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.id,
        login: row.login,
        name: row.display_name,
        profession: row.profession,
        role: parse_role(&row.role)?,
        status: parse_status(&row.status)?,
        facility_id: row.facility_id,
        facility_name: row.facility_name,
    })
}

#[derive(sqlx::FromRow)]
struct CredentialsRow {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
    password_changed_at: Option<i64>,
    locked_until: Option<i64>,
    totp_secret: Option<Vec<u8>>,
}

#[derive(sqlx::FromRow)]
struct SessionUserRow {
    #[sqlx(flatten)]
    user: UserRow,
    last_used_at: i64,
    must_change_password: bool,
    must_enroll_second_factor: bool,
}

/// Columns of a group, from `care_groups g`.
pub(super) const GROUP_COLUMNS: &str = "g.id, g.kind, g.name, g.patient_name, \
     g.owner_facility_id, g.archived_at, g.consent_signed_on, g.system, g.last_seq";

#[derive(sqlx::FromRow)]
pub(super) struct GroupRow {
    pub(super) id: i64,
    pub(super) kind: String,
    pub(super) name: String,
    pub(super) patient_name: Option<String>,
    pub(super) owner_facility_id: Option<i64>,
    pub(super) archived_at: Option<i64>,
    pub(super) consent_signed_on: Option<String>,
    pub(super) system: Option<String>,
    pub(super) last_seq: i64,
}

pub(super) fn group_record(row: GroupRow) -> Result<GroupRecord, StoreError> {
    let kind = parse_kind(&row.kind)?;
    Ok(GroupRecord {
        id: row.id,
        kind,
        name: row.name,
        patient_name: row.patient_name,
        owner_facility_id: row.owner_facility_id,
        archived: row.archived_at.is_some(),
        needs_consent: kind == renkei_protocol::GroupKind::Patient
            && row.consent_signed_on.is_none(),
        admins_room: row.system.as_deref() == Some("admins_room"),
        last_seq: row.last_seq,
    })
}

/// An event with its author (`a_…`) and subject (`s_…`).
#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    group_id: i64,
    seq: i64,
    created_at: i64,
    kind: String,
    client_id: Option<String>,
    text: Option<String>,
    target_seq: Option<i64>,
    deleted_at: Option<i64>,
    due_at: Option<i64>,
    a_id: Option<i64>,
    a_login: Option<String>,
    a_name: Option<String>,
    a_profession: Option<String>,
    a_role: Option<String>,
    a_status: Option<String>,
    a_facility_id: Option<i64>,
    a_facility_name: Option<String>,
    s_id: Option<i64>,
    s_login: Option<String>,
    s_name: Option<String>,
    s_profession: Option<String>,
    s_role: Option<String>,
    s_status: Option<String>,
    s_facility_id: Option<i64>,
    s_facility_name: Option<String>,
    f_id: Option<i64>,
    f_name: Option<String>,
    f_media_type: Option<String>,
    f_size: Option<i64>,
    f_thumbnail: Option<bool>,
}

pub(super) const EVENT_SELECT: &str =
    "SELECT e.group_id, e.seq, e.created_at, e.kind, e.client_id, e.text, \
     e.target_seq, e.deleted_at, e.due_at, \
     a.id AS a_id, a.login AS a_login, a.display_name AS a_name, a.profession AS a_profession, \
     a.role AS a_role, a.status AS a_status, a.facility_id AS a_facility_id, \
     af.name AS a_facility_name, \
     s.id AS s_id, s.login AS s_login, s.display_name AS s_name, s.profession AS s_profession, \
     s.role AS s_role, s.status AS s_status, s.facility_id AS s_facility_id, \
     sf.name AS s_facility_name, \
     fl.id AS f_id, fl.name AS f_name, fl.media_type AS f_media_type, fl.size AS f_size, \
     fl.has_thumbnail AS f_thumbnail \
     FROM events e LEFT JOIN users a ON a.id = e.author_id \
     LEFT JOIN facilities af ON af.id = a.facility_id \
     LEFT JOIN users s ON s.id = e.subject_id \
     LEFT JOIN facilities sf ON sf.id = s.facility_id \
     LEFT JOIN files fl ON fl.id = e.file_id";

#[allow(clippy::too_many_arguments)]
fn optional_user(
    id: Option<i64>,
    login: Option<String>,
    name: Option<String>,
    profession: Option<String>,
    role: Option<String>,
    status: Option<String>,
    facility_id: Option<i64>,
    facility_name: Option<String>,
) -> Result<Option<UserRecord>, StoreError> {
    match (id, login, name, profession, role, status) {
        (Some(id), Some(login), Some(display_name), Some(profession), Some(role), Some(status)) => {
            user_record(UserRow {
                id,
                login,
                display_name,
                profession,
                role,
                status,
                facility_id,
                facility_name,
            })
            .map(Some)
        }
        _ => Ok(None),
    }
}

pub(super) fn event_record(row: EventRow) -> Result<EventRecord, StoreError> {
    let (group, seq) = (row.group_id, row.seq);
    let author = optional_user(
        row.a_id,
        row.a_login,
        row.a_name,
        row.a_profession,
        row.a_role,
        row.a_status,
        row.a_facility_id,
        row.a_facility_name,
    )?;
    let subject = optional_user(
        row.s_id,
        row.s_login,
        row.s_name,
        row.s_profession,
        row.s_role,
        row.s_status,
        row.s_facility_id,
        row.s_facility_name,
    )?;
    let missing = |what: &str| StoreError::Corrupt(format!("event {group}/{seq} has no {what}"));
    let body = match row.kind.as_str() {
        "post" => match row.deleted_at {
            // On a deleted post the subject is who deleted it.
            Some(deleted_at) => EventBody::DeletedPost {
                author: author.ok_or_else(|| missing("author"))?,
                deleted_by: subject.ok_or_else(|| missing("deleter"))?,
                deleted_at,
            },
            None => EventBody::Post {
                author: author.ok_or_else(|| missing("author"))?,
                client_id: row.client_id.unwrap_or_default(),
                text: row.text.unwrap_or_default(),
                file: match (row.f_id, row.f_name, row.f_media_type, row.f_size) {
                    (Some(id), Some(name), Some(media_type), Some(size)) => {
                        Some(renkei_protocol::FileRef {
                            id,
                            name,
                            media_type,
                            size,
                            thumbnail: row.f_thumbnail.unwrap_or(false),
                        })
                    }
                    _ => None,
                },
            },
        },
        "post_deleted" => EventBody::PostDeleted {
            seq: row.target_seq.ok_or_else(|| missing("deleted post"))?,
            by: author.ok_or_else(|| missing("deleter"))?,
        },
        "group_archived" => EventBody::GroupArchived { by: author },
        "archive_notice" => EventBody::ArchiveNotice {
            archive_after: row.due_at.ok_or_else(|| missing("due time"))?,
        },
        "group_restored" => EventBody::GroupRestored {
            by: author.ok_or_else(|| missing("author"))?,
        },
        "post_confirmed" => EventBody::PostConfirmed {
            seq: row.target_seq.ok_or_else(|| missing("confirmed post"))?,
            by: author.ok_or_else(|| missing("confirmer"))?,
        },
        "member_joined" => EventBody::MemberJoined {
            member: subject.ok_or_else(|| missing("member"))?,
            by: author,
        },
        "member_left" => EventBody::MemberLeft {
            member: subject.ok_or_else(|| missing("member"))?,
        },
        "member_removed" => EventBody::MemberRemoved {
            member: subject.ok_or_else(|| missing("member"))?,
            by: author.ok_or_else(|| missing("remover"))?,
        },
        "group_renamed" => EventBody::GroupRenamed {
            name: row.text.unwrap_or_default(),
            by: author.ok_or_else(|| missing("author"))?,
        },
        "consent_recorded" => EventBody::ConsentRecorded {
            by: author.ok_or_else(|| missing("author"))?,
        },
        other => return Err(StoreError::Corrupt(format!("event kind {other:?}"))),
    };
    Ok(EventRecord {
        group,
        seq,
        at: row.created_at,
        body,
    })
}

fn event_records(rows: Vec<EventRow>) -> Result<Vec<EventRecord>, StoreError> {
    rows.into_iter().map(event_record).collect()
}

/// How a change is stored as an event.
struct ChangeColumns<'a> {
    kind: &'static str,
    author: Option<UserId>,
    subject: Option<UserId>,
    text: Option<&'a str>,
    target_seq: Option<Seq>,
    due_at: Option<Millis>,
}

fn change_columns(change: &Change) -> ChangeColumns<'_> {
    let columns = |kind, author, subject| ChangeColumns {
        kind,
        author,
        subject,
        text: None,
        target_seq: None,
        due_at: None,
    };
    match change {
        Change::Join { user, by, .. } => columns("member_joined", *by, Some(*user)),
        Change::Leave { user } => columns("member_left", None, Some(*user)),
        Change::Remove { user, by } => columns("member_removed", Some(*by), Some(*user)),
        Change::Rename { name, by } => ChangeColumns {
            text: Some(name.as_str()),
            ..columns("group_renamed", Some(*by), None)
        },
        Change::Consent { by, .. } => columns("consent_recorded", Some(*by), None),
        Change::DeletePost { seq, by, .. } => ChangeColumns {
            target_seq: Some(*seq),
            ..columns("post_deleted", Some(*by), None)
        },
        Change::Archive { by } => columns("group_archived", *by, None),
        Change::ArchiveNotice { archive_after } => ChangeColumns {
            due_at: Some(*archive_after),
            ..columns("archive_notice", None, None)
        },
        Change::Restore { by } => columns("group_restored", Some(*by), None),
        Change::Confirm { seq, by } => ChangeColumns {
            target_seq: Some(*seq),
            ..columns("post_confirmed", Some(*by), None)
        },
    }
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
    /// The author may not post in the group (any more).
    Refused,
    /// The file is not the author's to attach there.
    FileUnavailable,
}

/// Plans a batch, given the earlier uses of its client ids, the groups that exist and take
/// posts, and the (group, author) pairs whose posts are still allowed there.
/// `attachable` holds the files the batch may attach, by id, with the group and uploader
/// they belong to; each is taken by the first post that attaches it.
fn plan_batch(
    posts: &[NewPost],
    earlier: &mut HashMap<(i64, String), Earlier>,
    open: &HashSet<GroupId>,
    allowed: &HashSet<(GroupId, UserId)>,
    attachable: &mut HashMap<i64, (GroupId, UserId)>,
) -> BatchPlan {
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
            None if open.contains(&post.group)
                && !allowed.contains(&(post.group, post.author.id)) =>
            {
                Some(Repeat::Refused)
            }
            None if post.file.as_ref().is_some_and(|file| {
                attachable.remove(&file.id) != Some((post.group, post.author.id))
            }) =>
            {
                Some(Repeat::FileUnavailable)
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
            Some(Repeat::Refused) => AppendOutcome::Refused,
            Some(Repeat::FileUnavailable) => AppendOutcome::FileUnavailable,
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

/// Implements [`Store`] for a type with a `pool` field of an sqlx pool. `$lock` is appended
/// to the statement that locks a group's row before its sequence grows: a row lock on
/// PostgreSQL; empty on SQLite, whose `BEGIN IMMEDIATE` holds the one write lock already.
macro_rules! sql_store {
    ($store:ty, $db:ty, $lock:literal) => {
        impl $store {
            /// Stores who each new post mentions (`@name`, [`renkei_domain::mention`]), in the
            /// commit's transaction. Posts without an `@` cost nothing.
            async fn record_mentions(
                tx: &mut sqlx::Transaction<'static, $db>,
                rows: &[(&NewPost, Seq)],
            ) -> Result<(), StoreError> {
                let named: Vec<&(&NewPost, Seq)> = rows
                    .iter()
                    .filter(|(post, _)| renkei_domain::mention::may_mention(&post.text))
                    .collect();
                if named.is_empty() {
                    return Ok(());
                }
                let groups: std::collections::BTreeSet<GroupId> =
                    named.iter().map(|(post, _)| post.group).collect();
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT m.group_id, u.id, u.display_name FROM memberships m \
                     JOIN users u ON u.id = m.user_id WHERE m.group_id IN (",
                );
                let mut list = query.separated(", ");
                for group in &groups {
                    list.push_bind(*group);
                }
                query.push(")");
                let members: Vec<(i64, i64, String)> =
                    query.build_query_as().fetch_all(&mut **tx).await?;
                let mut mentions = Vec::new();
                for (post, seq) in named {
                    let in_group: Vec<(UserId, String)> = members
                        .iter()
                        .filter(|(group, _, _)| *group == post.group)
                        .map(|(_, id, name)| (*id, name.clone()))
                        .collect();
                    for user in renkei_domain::mention::find(&post.text, post.author.id, &in_group) {
                        mentions.push((post.group, *seq, user, post.at));
                    }
                }
                if mentions.is_empty() {
                    return Ok(());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "INSERT INTO mentions (group_id, seq, user_id, created_at) ",
                );
                query.push_values(mentions, |mut row, (group, seq, user, at)| {
                    row.push_bind(group)
                        .push_bind(seq)
                        .push_bind(user)
                        .push_bind(at);
                });
                query.build().execute(&mut **tx).await?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            async fn backup(&self, to: &std::path::Path) -> Result<(), StoreError> {
                self.backup_to(to).await
            }

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
                .bind(super::facility_kind_name(facility.kind))
                .bind(renkei_domain::clock::now_ms())
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn create_users(&self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let ids = Self::insert_users(&mut tx, users, renkei_domain::clock::now_ms()).await?;
                tx.commit().await?;
                Ok(ids)
            }

            async fn credentials(&self, login: &str) -> Result<Option<Credentials>, StoreError> {
                // Only accounts that may log in: active or restricted, of an approved
                // facility (or none: the operator).
                let sql = format!(
                    "SELECT {USER_COLUMNS}, u.password_hash, u.password_changed_at, u.locked_until, \
                     u.totp_secret \
                     FROM users u \
                     LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE u.login = $1 AND u.status IN ('active', 'restricted') \
                     AND (f.id IS NULL OR f.status = 'approved')"
                );
                let row: Option<CredentialsRow> =
                    sqlx::query_as(&sql).bind(login).fetch_optional(&self.pool).await?;
                row.map(|row| {
                    Ok(Credentials {
                        user: user_record(row.user)?,
                        password_hash: row.password_hash,
                        password_changed_at: row.password_changed_at,
                        locked_until: row.locked_until,
                        totp_secret: row.totp_secret,
                    })
                })
                .transpose()
            }

            async fn create_sessions(&self, sessions: &[NewSession]) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                for session in sessions {
                    sqlx::query(
                        "INSERT INTO sessions (token_hash, user_id, created_at, expires_at, \
                         last_used_at, user_agent, source, must_change_password, \
                         must_enroll_second_factor) \
                         VALUES ($1, $2, $3, $4, $3, $5, $6, $7, $8)",
                    )
                    .bind(&session.token_hash)
                    .bind(session.user_id)
                    .bind(session.created_at)
                    .bind(session.expires_at)
                    .bind(&session.user_agent)
                    .bind(&session.source)
                    .bind(session.must_change_password)
                    .bind(session.must_enroll_second_factor)
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
                idle_since: Millis,
            ) -> Result<Option<SessionUser>, StoreError> {
                let sql = format!(
                    "SELECT {USER_COLUMNS}, s.last_used_at, s.must_change_password, \
                     s.must_enroll_second_factor \
                     FROM sessions s JOIN users u ON u.id = s.user_id \
                     LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_used_at > $3 \
                     AND u.status IN ('active', 'restricted') \
                     AND (f.id IS NULL OR f.status = 'approved')"
                );
                let row: Option<SessionUserRow> = sqlx::query_as(&sql)
                    .bind(token_hash)
                    .bind(now)
                    .bind(idle_since)
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(|row| {
                    Ok(SessionUser {
                        user: user_record(row.user)?,
                        last_used_at: row.last_used_at,
                        must_change_password: row.must_change_password,
                        must_enroll_second_factor: row.must_enroll_second_factor,
                    })
                })
                .transpose()
            }

            async fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn create_group(&self, group: &NewGroup) -> Result<GroupId, StoreError> {
                let patient = group.patient.as_ref();
                let consent = group.consent.as_ref();
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO care_groups (kind, name, patient_name, patient_kana, \
                     patient_birth_date, patient_notes, owner_facility_id, consent_signed_by, \
                     consent_signed_on, consent_copy_sent_on, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .bind(kind_name(group.kind))
                .bind(&group.name)
                .bind(patient.map(|p| &p.name))
                .bind(patient.map(|p| &p.kana))
                .bind(patient.map(|p| &p.birth_date))
                .bind(patient.map(|p| &p.notes))
                .bind(group.owner_facility_id)
                .bind(consent.map(|c| signer_name(c.signed_by)))
                .bind(consent.map(|c| &c.signed_on))
                .bind(consent.and_then(|c| c.copy_sent_on.as_ref()))
                .bind(group.created_at)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn directory(&self) -> Result<Directory, StoreError> {
                let mut tx = self.pool.begin().await?;
                let sql = format!("SELECT {GROUP_COLUMNS} FROM care_groups g ORDER BY g.id");
                let groups: Vec<GroupRow> = sqlx::query_as(&sql).fetch_all(&mut *tx).await?;
                let memberships: Vec<(i64, i64)> =
                    sqlx::query_as("SELECT group_id, user_id FROM memberships ORDER BY group_id")
                        .fetch_all(&mut *tx)
                        .await?;
                tx.commit().await?;
                let groups = groups
                    .into_iter()
                    .map(group_record)
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

            async fn apply_change(
                &self,
                group: GroupId,
                change: &Change,
                at: Millis,
            ) -> Result<Changed, StoreError> {
                let mut tx = self.begin_write().await?;
                // The group's row first: changes and posts to one group take its lock in
                // the same order, so a post committed after a removal sees it.
                let locked: Option<(i64,)> =
                    sqlx::query_as(concat!("SELECT id FROM care_groups WHERE id = $1", $lock))
                        .bind(group)
                        .fetch_optional(&mut *tx)
                        .await?;
                if locked.is_none() {
                    return Err(StoreError::NotFound("group"));
                }
                match change {
                    Change::Join { user, invitation, .. } => {
                        let inserted = sqlx::query(
                            "INSERT INTO memberships (group_id, user_id, joined_at) \
                             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                        )
                        .bind(group)
                        .bind(user)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        if let Some(invitation) = invitation {
                            sqlx::query(
                                "UPDATE invitations SET state = 'joined', closed_at = $2 \
                                 WHERE id = $1 AND state = 'pending'",
                            )
                            .bind(invitation)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        if inserted.rows_affected() == 0 {
                            // The invitation is closed either way: they are a member.
                            tx.commit().await?;
                            return Err(StoreError::Conflict("already a member"));
                        }
                    }
                    Change::Leave { user } | Change::Remove { user, .. } => {
                        let deleted = sqlx::query(
                            "DELETE FROM memberships WHERE group_id = $1 AND user_id = $2",
                        )
                        .bind(group)
                        .bind(user)
                        .execute(&mut *tx)
                        .await?;
                        if deleted.rows_affected() == 0 {
                            return Err(StoreError::Conflict("not a member"));
                        }
                    }
                    Change::Rename { name, .. } => {
                        sqlx::query("UPDATE care_groups SET name = $2 WHERE id = $1")
                            .bind(group)
                            .bind(name)
                            .execute(&mut *tx)
                            .await?;
                    }
                    Change::DeletePost { seq, by, reason } => {
                        let post: Option<(String, Option<i64>, Option<Vec<u8>>, Option<i64>)> =
                            sqlx::query_as(
                                "SELECT kind, author_id, content_hash, deleted_at FROM events \
                                 WHERE group_id = $1 AND seq = $2",
                            )
                            .bind(group)
                            .bind(seq)
                            .fetch_optional(&mut *tx)
                            .await?;
                        let (author, hash) = match post {
                            Some((kind, author, hash, None)) if kind == "post" => (author, hash),
                            Some((kind, _, _, Some(_))) if kind == "post" => {
                                return Err(StoreError::Conflict("the post is deleted already"))
                            }
                            _ => return Err(StoreError::NotFound("post")),
                        };
                        // The text leaves; who deleted it (the subject) and when stay.
                        sqlx::query(
                            "UPDATE events SET text = NULL, search_text = NULL, subject_id = $3, \
                             deleted_at = $4 \
                             WHERE group_id = $1 AND seq = $2",
                        )
                        .bind(group)
                        .bind(seq)
                        .bind(by)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        // Its file goes with it (the bytes leave the file store after).
                        sqlx::query(
                            "UPDATE files SET deleted_at = $3 WHERE id IN \
                             (SELECT file_id FROM events WHERE group_id = $1 AND seq = $2)",
                        )
                        .bind(group)
                        .bind(seq)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        // Reports of it are settled by its deletion.
                        sqlx::query(
                            "UPDATE reports SET state = 'deleted', handled_by = $3, handled_at = $4 \
                             WHERE group_id = $1 AND seq = $2 AND state = 'open'",
                        )
                        .bind(group)
                        .bind(seq)
                        .bind(by)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO deletions (group_id, seq, author_id, deleted_by, \
                             deleted_at, reason, content_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(group)
                        .bind(seq)
                        .bind(author)
                        .bind(by)
                        .bind(at)
                        .bind(reason)
                        .bind(hash.unwrap_or_default())
                        .execute(&mut *tx)
                        .await?;
                    }
                    Change::Confirm { seq, by } => {
                        let post: Option<(String, Option<i64>, Option<i64>)> = sqlx::query_as(
                            "SELECT kind, author_id, deleted_at FROM events \
                             WHERE group_id = $1 AND seq = $2",
                        )
                        .bind(group)
                        .bind(seq)
                        .fetch_optional(&mut *tx)
                        .await?;
                        match post {
                            Some((kind, Some(author), None)) if kind == "post" => {
                                if author == *by {
                                    return Err(StoreError::Conflict("one's own post"));
                                }
                            }
                            _ => return Err(StoreError::NotFound("post")),
                        }
                        let confirmed: Option<(i64,)> = sqlx::query_as(
                            "SELECT seq FROM events WHERE group_id = $1 AND target_seq = $2 \
                             AND author_id = $3 AND kind = 'post_confirmed'",
                        )
                        .bind(group)
                        .bind(seq)
                        .bind(by)
                        .fetch_optional(&mut *tx)
                        .await?;
                        if confirmed.is_some() {
                            return Err(StoreError::Conflict("confirmed already"));
                        }
                    }
                    Change::Archive { .. } | Change::Restore { .. } => {
                        let archive = matches!(change, Change::Archive { .. });
                        let query = if archive {
                            sqlx::query(
                                "UPDATE care_groups SET archived_at = $2, archive_notice_at = NULL, \
                                 archive_due_at = NULL WHERE id = $1 AND archived_at IS NULL",
                            )
                            .bind(group)
                            .bind(at)
                        } else {
                            sqlx::query(
                                "UPDATE care_groups SET archived_at = NULL WHERE id = $1 \
                                 AND archived_at IS NOT NULL",
                            )
                            .bind(group)
                        };
                        let updated = query.execute(&mut *tx).await?;
                        if updated.rows_affected() == 0 {
                            return Err(StoreError::Conflict(if archive {
                                "the group is archived already"
                            } else {
                                "the group is not archived"
                            }));
                        }
                    }
                    Change::ArchiveNotice { archive_after } => {
                        sqlx::query(
                            "UPDATE care_groups SET archive_notice_at = $2, archive_due_at = $3 \
                             WHERE id = $1",
                        )
                        .bind(group)
                        .bind(at)
                        .bind(archive_after)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Change::Consent { consent, .. } => {
                        sqlx::query(
                            "UPDATE care_groups SET consent_signed_by = $2, consent_signed_on = $3, \
                             consent_copy_sent_on = $4 WHERE id = $1",
                        )
                        .bind(group)
                        .bind(signer_name(consent.signed_by))
                        .bind(&consent.signed_on)
                        .bind(&consent.copy_sent_on)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                sqlx::query("UPDATE care_groups SET last_seq = last_seq + 1 WHERE id = $1")
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
                let sql = format!("SELECT {GROUP_COLUMNS} FROM care_groups g WHERE g.id = $1");
                let row: GroupRow = sqlx::query_as(&sql).bind(group).fetch_one(&mut *tx).await?;
                let record = group_record(row)?;
                let columns = change_columns(change);
                sqlx::query(
                    "INSERT INTO events (group_id, seq, kind, author_id, subject_id, text, \
                     target_seq, due_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(group)
                .bind(record.last_seq)
                .bind(columns.kind)
                .bind(columns.author)
                .bind(columns.subject)
                .bind(columns.text)
                .bind(columns.target_seq)
                .bind(columns.due_at)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                let sql = format!("{EVENT_SELECT} WHERE e.group_id = $1 AND e.seq = $2");
                let row: EventRow = sqlx::query_as(&sql)
                    .bind(group)
                    .bind(record.last_seq)
                    .fetch_one(&mut *tx)
                    .await?;
                let event = event_record(row)?;
                tx.commit().await?;
                if matches!(change, Change::DeletePost { .. }) {
                    self.erase_residue().await;
                }
                Ok(Changed {
                    event,
                    group: record,
                })
            }

            async fn append_posts(
                &self,
                posts: &[NewPost],
            ) -> Result<Vec<AppendOutcome>, StoreError> {
                // A few statements per batch, not per post: the earlier uses of the batch's
                // client ids, the groups' locks, who may still post, one bump of every
                // group's sequence, one insert of every event.
                let mut tx = self.begin_write().await?;

                let mut earlier = HashMap::new();
                let mut existing = HashSet::new();
                let mut open = HashSet::new();
                let mut allowed = HashSet::new();
                if !posts.is_empty() {
                    let authors: HashSet<i64> = posts.iter().map(|p| p.author.id).collect();
                    let groups: std::collections::BTreeSet<GroupId> =
                        posts.iter().map(|p| p.group).collect();
                    // The batch's exact (author, client id) pairs joined to the unique
                    // index: one seek per post. (Two IN lists seek every author × every
                    // client id: quadratic in the batch, which at saturation — batches of
                    // hundreds — made these lookups most of SQLite's time. A row-value IN
                    // is scanned instead of sought.) The casts type the parameters for
                    // PostgreSQL.
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "WITH batch (author_id, client_id) AS (",
                    );
                    query.push_values(posts, |mut row, post| {
                        row.push("CAST(")
                            .push_bind_unseparated(post.author.id)
                            .push_unseparated(" AS BIGINT)")
                            .push("CAST(")
                            .push_bind_unseparated(post.client_id.as_str())
                            .push_unseparated(" AS TEXT)");
                    });
                    query.push(
                        ") SELECT e.author_id, e.client_id, e.group_id, e.seq, e.created_at, \
                         e.content_hash FROM batch JOIN events e ON e.author_id = batch.author_id \
                         AND e.client_id = batch.client_id WHERE e.client_id IS NOT NULL",
                    );
                    let rows: Vec<(i64, String, i64, i64, i64, Option<Vec<u8>>)> =
                        query.build_query_as().fetch_all(&mut *tx).await?;
                    for (author, client_id, group, seq, at, hash) in rows {
                        earlier.insert((author, client_id), Earlier::Stored(Placement { group, seq, at }, hash));
                    }

                    // The groups, locked in id order (so that two batches never wait on
                    // each other), which of them take posts, and which have their consent.
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "SELECT id, archived_at, kind, consent_signed_on FROM care_groups \
                         WHERE id IN (",
                    );
                    let mut list = query.separated(", ");
                    for group in &groups {
                        list.push_bind(*group);
                    }
                    query.push(") ORDER BY id").push($lock);
                    let rows: Vec<(i64, Option<i64>, String, Option<String>)> =
                        query.build_query_as().fetch_all(&mut *tx).await?;
                    let mut consented = HashSet::new();
                    for (group, archived_at, kind, consent) in rows {
                        existing.insert(group);
                        if archived_at.is_none() {
                            open.insert(group);
                        }
                        if kind == "free" || consent.is_some() {
                            consented.insert(group);
                        }
                    }

                    // Under the groups' locks (a new statement: it sees every removal
                    // committed before them): who is still a member with an account that
                    // may post. The batch's distinct (group, author) pairs joined to the
                    // primary key: one seek per pair, not per group × author.
                    let pairs: std::collections::BTreeSet<(GroupId, i64)> =
                        posts.iter().map(|p| (p.group, p.author.id)).collect();
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                        "WITH batch (group_id, user_id) AS (",
                    );
                    query.push_values(pairs, |mut row, (group, author)| {
                        row.push("CAST(")
                            .push_bind_unseparated(group)
                            .push_unseparated(" AS BIGINT)")
                            .push("CAST(")
                            .push_bind_unseparated(author)
                            .push_unseparated(" AS BIGINT)");
                    });
                    query.push(
                        ") SELECT m.group_id, m.user_id FROM batch JOIN memberships m \
                         ON m.group_id = batch.group_id AND m.user_id = batch.user_id \
                         WHERE m.user_id IN (SELECT u.id FROM users u \
                         LEFT JOIN facilities f ON f.id = u.facility_id \
                         WHERE u.status = 'active' AND (f.id IS NULL OR f.status = 'approved') \
                         AND u.id IN (",
                    );
                    let mut list = query.separated(", ");
                    for author in &authors {
                        list.push_bind(*author);
                    }
                    query.push("))");
                    let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut *tx).await?;
                    // A patient group without its consent takes no post from anyone.
                    allowed.extend(rows.into_iter().filter(|(group, _)| consented.contains(group)));
                }
                // The files the batch attaches: uploaded, not deleted, on no post yet.
                let files: Vec<i64> = posts.iter().filter_map(|p| p.file.as_ref().map(|f| f.id)).collect();
                let mut attachable: HashMap<i64, (GroupId, UserId)> = HashMap::new();
                if !files.is_empty() {
                    let mut query = sqlx::QueryBuilder::<$db>::new(
                                                "SELECT f.id, f.group_id, f.uploader_id FROM files f \
                         WHERE f.deleted_at IS NULL AND NOT EXISTS \
                         (SELECT 1 FROM events e WHERE e.file_id = f.id) AND f.created_at > ",
                    );
                    // Never one the clean-up of abandoned uploads may be taking.
                    let at = posts.first().map_or(0, |p| p.at);
                    query
                        .push_bind(at - renkei_domain::upload::POST_WITHIN_MS)
                        .push(" AND f.id IN (");
                    let mut list = query.separated(", ");
                    for file in &files {
                        list.push_bind(*file);
                    }
                    query.push(")");
                    let rows: Vec<(i64, i64, i64)> = query.build_query_as().fetch_all(&mut *tx).await?;
                    attachable.extend(rows.into_iter().map(|(id, group, uploader)| (id, (group, uploader))));
                }
                let plan = plan_batch(posts, &mut earlier, &open, &allowed, &mut attachable);

                let mut next_seq: HashMap<GroupId, Seq> = HashMap::new();
                if !plan.new_per_group.is_empty() {
                    // Each group's count joined in (a CASE with a branch per group would be
                    // evaluated for every group: quadratic in the batch again).
                    let mut query = sqlx::QueryBuilder::<$db>::new("WITH counts (id, n) AS (");
                    query.push_values(&plan.new_per_group, |mut row, (group, count)| {
                        row.push("CAST(")
                            .push_bind_unseparated(*group)
                            .push_unseparated(" AS BIGINT)")
                            .push("CAST(")
                            .push_bind_unseparated(*count)
                            .push_unseparated(" AS BIGINT)");
                    });
                    query.push(
                        ") UPDATE care_groups SET last_seq = care_groups.last_seq + counts.n \
                         FROM counts WHERE care_groups.id = counts.id \
                         AND care_groups.archived_at IS NULL \
                         RETURNING care_groups.id, care_groups.last_seq",
                    );
                    let rows: Vec<(i64, i64)> = query.build_query_as().fetch_all(&mut *tx).await?;
                    for (group, last) in rows {
                        let count = plan.new_per_group.get(&group).copied().unwrap_or(0);
                        next_seq.insert(group, last - count + 1);
                    }
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
                         content_hash, search_text, file_id, created_at) ",
                    );
                    query.push_values(&rows, |mut row, &(post, seq)| {
                        row.push_bind(post.group)
                            .push_bind(seq)
                            .push_bind("post")
                            .push_bind(post.author.id)
                            .push_bind(&post.client_id)
                            .push_bind(&post.text)
                            .push_bind(&post.content_hash)
                            .push_bind(&post.search_text)
                            .push_bind(post.file.as_ref().map(|f| f.id))
                            .push_bind(post.at);
                    });
                    query.build().execute(&mut *tx).await?;
                    Self::record_mentions(&mut tx, &rows).await?;
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

        impl $store {
            /// Inserts users inside a transaction and returns their ids in order.
            pub(super) async fn insert_users(
                tx: &mut sqlx::Transaction<'static, $db>,
                users: &[NewUser],
                now: Millis,
            ) -> Result<Vec<UserId>, StoreError> {
                let mut ids = Vec::with_capacity(users.len());
                for user in users {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO users (facility_id, login, display_name, kana, profession, \
                         role, password_hash, pledge_received_on, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
                    )
                    .bind(user.facility_id)
                    .bind(&user.login)
                    .bind(&user.name)
                    .bind(&user.kana)
                    .bind(&user.profession)
                    .bind(role_name(user.role))
                    .bind(&user.password_hash)
                    .bind(&user.pledge_received_on)
                    .bind(now)
                    .fetch_one(&mut **tx)
                    .await?;
                    if !user.password_hash.is_empty() {
                        sqlx::query(
                            "UPDATE users SET password_changed_at = $2 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                        sqlx::query(
                            "INSERT INTO password_history (user_id, hash, set_at) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(id)
                        .bind(&user.password_hash)
                        .bind(now)
                        .execute(&mut **tx)
                        .await?;
                    }
                    ids.push(id);
                }
                Ok(ids)
            }
        }
    };
}

sql_store!(super::SqliteStore, sqlx::Sqlite, "");
// NO KEY UPDATE: it excludes other posts and changes to the group as FOR UPDATE would, but
// not the KEY SHARE locks of inserts that merely reference the group (invitations).
sql_store!(super::PgStore, sqlx::Postgres, " FOR NO KEY UPDATE");

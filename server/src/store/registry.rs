//! Storage of the city's operating rules: facilities and their applications, accounts,
//! profiles and photos, first-password codes, group details, reviews and invitations.
//! Like `queries`, one body of SQL implements [`Registry`] for both engines.

use async_trait::async_trait;
use renkei_protocol::api::{
    AccountStatus, Consent, FacilityApplication, FacilityDetails, FacilityStatus, InvitationList,
    InvitationState, InvitationView, Patient, ProfileUpdate, PublicFacility, UserDetails,
};
use renkei_protocol::{FacilityRef, GroupId, Millis, Role, UserId, UserProfile};

use super::queries::{
    event_record, group_record, user_record, EventRow, GroupRow, UserRow, EVENT_SELECT,
    GROUP_COLUMNS, USER_COLUMNS,
};
use super::{
    facility_kind_name, facility_status_name, parse_facility_kind, parse_facility_status,
    parse_role, parse_signer, parse_status, role_name, status_name, EventRecord, GroupRecord,
    NewUser, StoreError, UserRecord,
};

/// A group with everything its details page shows.
#[derive(Debug, Clone)]
pub struct GroupDetailsRecord {
    pub group: GroupRecord,
    pub owner: Option<FacilityRef>,
    pub patient: Option<Patient>,
    pub consent: Option<Consent>,
    /// Members with when they joined, by id.
    pub members: Vec<(UserRecord, Millis)>,
}

/// One member of one group, for a review (定期的に精査).
#[derive(Debug, Clone)]
pub struct ReviewRow {
    pub group: GroupId,
    pub user: UserDetails,
    pub joined_at: Millis,
    pub last_post_at: Option<Millis>,
    pub last_read_at: Option<Millis>,
    pub last_read_seq: i64,
    pub facility_status: Option<FacilityStatus>,
}

/// A patient group the archive process considers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveCandidate {
    pub group: GroupId,
    pub name: String,
    /// The last post, or the group's creation when it has none.
    pub last_activity: Millis,
    /// When the process told the group it would be archived, if it did.
    pub notice_at: Option<Millis>,
}

/// A report of a post, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ReportRow {
    pub id: i64,
    pub state: String,
    pub group_id: i64,
    pub group_name: String,
    pub owner: Option<i64>,
    pub seq: i64,
    pub reporter_id: i64,
    pub reason: String,
    pub created_at: i64,
    pub handled_by: Option<i64>,
    pub handled_at: Option<i64>,
}

const REPORT_SELECT: &str = "SELECT r.id, r.state, r.group_id, g.name AS group_name, \
     g.owner_facility_id AS owner, r.seq, r.reporter_id, r.reason, r.created_at, r.handled_by, \
     r.handled_at FROM reports r JOIN care_groups g ON g.id = r.group_id";

/// Which posts the monitoring view shows.
#[derive(Debug, Clone, Default)]
pub struct PostFilter {
    pub group: Option<GroupId>,
    pub author: Option<UserId>,
    pub since: Option<Millis>,
    pub until: Option<Millis>,
    /// Text the post contains.
    pub text: Option<String>,
    pub limit: u32,
}

/// A step an invitation takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvitationStep {
    /// The invitee accepts (招待の受理).
    Accept,
    /// The invitee declines.
    Decline,
    /// An admin of the invitee's facility approves (招待承認).
    Approve { by: UserId },
    /// An admin of the invitee's facility refuses.
    Refuse { by: UserId },
    /// The inviter or an admin of the owning facility withdraws it.
    Cancel { by: UserId },
}

/// A facility's move from one status to another.
#[derive(Debug, Clone, Copy)]
pub struct StatusChange<'a> {
    /// The statuses it may move from; `Conflict` otherwise.
    pub from: &'a [FacilityStatus],
    pub to: FacilityStatus,
    pub reason: Option<&'a str>,
    pub at: Millis,
}

/// Everything stored about the operating rules. Every method is one transaction.
#[async_trait]
pub trait Registry: Send + Sync {
    /// Stores a facility's application (様式1) and returns its id.
    async fn apply_facility(
        &self,
        application: &FacilityApplication,
        at: Millis,
    ) -> Result<i64, StoreError>;
    async fn facility(&self, id: i64) -> Result<Option<FacilityDetails>, StoreError>;
    /// Facilities, all or of one status, by id.
    async fn facilities(
        &self,
        status: Option<FacilityStatus>,
    ) -> Result<Vec<FacilityDetails>, StoreError>;
    /// The participating (approved) facilities, by name: the public list (公示).
    async fn public_facilities(&self) -> Result<Vec<PublicFacility>, StoreError>;
    /// Approves an applied facility and creates its admin accounts, returning their ids.
    /// `Conflict` (and nothing changed) when it is not `applied` or a login is taken.
    async fn approve_facility(
        &self,
        id: i64,
        pledge_received_on: Option<&str>,
        admins: &[NewUser],
        at: Millis,
    ) -> Result<Vec<UserId>, StoreError>;
    /// Moves a facility to another status and returns the ids of its users. Moving to
    /// `suspended` or `withdrawn` ends every session of its users.
    async fn set_facility_status(
        &self,
        id: i64,
        change: StatusChange<'_>,
    ) -> Result<Vec<UserId>, StoreError>;
    async fn set_facility_pledge(&self, id: i64, received_on: &str) -> Result<(), StoreError>;

    /// Stores a first-password code (its hash) for a user.
    async fn create_password_setup(
        &self,
        user: UserId,
        token_hash: &[u8],
        at: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError>;
    /// Uses up a first-password code and sets the password; `NotFound` when the code is
    /// unknown, used or expired.
    async fn use_password_setup(
        &self,
        token_hash: &[u8],
        password_hash: &str,
        now: Millis,
    ) -> Result<UserId, StoreError>;

    /// A user with every detail (callers hide what the asker may not see).
    async fn user(&self, id: UserId) -> Result<Option<UserDetails>, StoreError>;
    /// The users of a facility, by id.
    async fn facility_users(&self, facility: i64) -> Result<Vec<UserDetails>, StoreError>;
    async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<(), StoreError>;
    async fn set_user_pledge(&self, id: UserId, received_on: &str) -> Result<(), StoreError>;
    /// Sets an account's status. Banning or deactivating ends every session of the
    /// account. `LastAdmin` when it would leave an approved facility with no active admin.
    async fn set_user_status(
        &self,
        id: UserId,
        status: AccountStatus,
        reason: Option<&str>,
    ) -> Result<(), StoreError>;
    /// Sets a user's role (admin or staff). `LastAdmin` as above.
    async fn set_role(&self, id: UserId, role: Role) -> Result<(), StoreError>;
    async fn put_photo(
        &self,
        user: UserId,
        content_type: &str,
        bytes: &[u8],
        at: Millis,
    ) -> Result<(), StoreError>;
    /// A user's photo: its content type and bytes.
    async fn photo(&self, user: UserId) -> Result<Option<(String, Vec<u8>)>, StoreError>;

    async fn group_details(&self, id: GroupId) -> Result<Option<GroupDetailsRecord>, StoreError>;
    /// The groups a user is a member of.
    async fn user_groups(&self, user: UserId) -> Result<Vec<GroupId>, StoreError>;
    /// The admins' room (MCS管理者の部屋).
    async fn admins_room(&self) -> Result<GroupId, StoreError>;
    /// Every member of every group a facility owns, by group then user.
    async fn review(&self, facility: i64) -> Result<Vec<ReviewRow>, StoreError>;
    /// The archived groups `user` may view: those they are a member of, those `facility`
    /// owns (for its admins), or all of them (`all`, for the operator), by id.
    async fn archived_groups(
        &self,
        user: UserId,
        facility: Option<i64>,
        all: bool,
    ) -> Result<Vec<GroupRecord>, StoreError>;
    /// Stores a member's report of the post at (`group`, `seq`); `NotFound` when there is
    /// no such post (or it was deleted).
    async fn create_report(
        &self,
        group: GroupId,
        seq: i64,
        reporter: UserId,
        reason: &str,
        at: Millis,
    ) -> Result<i64, StoreError>;
    /// Reports on posts in the groups `facility` owns (every group: `None`), of one state
    /// or all, newest first, at most 500.
    async fn reports(
        &self,
        facility: Option<i64>,
        state: Option<&str>,
    ) -> Result<Vec<ReportRow>, StoreError>;
    async fn report(&self, id: i64) -> Result<Option<ReportRow>, StoreError>;
    /// Closes an open report as `state`; `Conflict` when it is not open.
    async fn close_report(
        &self,
        id: i64,
        state: &str,
        by: UserId,
        at: Millis,
    ) -> Result<(), StoreError>;
    /// Posts (not deleted) in the groups `facility` owns, newest first, that match.
    async fn monitor(
        &self,
        facility: i64,
        filter: &PostFilter,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// Claims this interval's run of a job: true on exactly one node per `every` ms.
    async fn claim_job(&self, name: &str, now: Millis, every: Millis) -> Result<bool, StoreError>;
    /// Every patient group not archived, with its last activity and archive notice.
    async fn archive_candidates(&self) -> Result<Vec<ArchiveCandidate>, StoreError>;
    /// The groups `facility` owns that the archive process gave notice to, with when it
    /// will archive them.
    async fn archive_notices(&self, facility: i64) -> Result<Vec<(GroupId, Millis)>, StoreError>;
    /// Archived groups archived before `archived_before`, for retention, by id.
    async fn purge_candidates(&self, archived_before: Millis) -> Result<Vec<GroupId>, StoreError>;
    /// Purges an archived group for good — its events, members, invitations, reports and
    /// deletion records, then the group — and records the purge. `NotFound` unless the
    /// group exists and was archived before `archived_before`.
    async fn purge_group(
        &self,
        group: GroupId,
        archived_before: Millis,
        at: Millis,
    ) -> Result<(), StoreError>;
    /// Forgets an archive notice (the group became active again).
    async fn clear_archive_notice(&self, group: GroupId) -> Result<(), StoreError>;
    /// The groups a facility owns (also those without members), by id.
    async fn owned_groups(&self, facility: i64) -> Result<Vec<GroupRecord>, StoreError>;

    /// Invites a user into a group; approved at once when `approved_by` is given.
    /// `Conflict` when they are a member or an invitation of theirs is pending.
    async fn create_invitation(
        &self,
        group: GroupId,
        invitee: UserId,
        inviter: UserId,
        approved_by: Option<UserId>,
        at: Millis,
        expires_at: Millis,
    ) -> Result<i64, StoreError>;
    async fn invitation(&self, id: i64, now: Millis) -> Result<Option<InvitationView>, StoreError>;
    /// Takes a step; `Conflict` when the invitation is no longer pending (or has expired).
    async fn step_invitation(
        &self,
        id: i64,
        step: InvitationStep,
        now: Millis,
    ) -> Result<InvitationView, StoreError>;
    /// The invitations to `user`, sent by `user`, and — for an admin — those of their
    /// facility's staff, newest first.
    async fn invitations(
        &self,
        user: UserId,
        approver_of: Option<i64>,
        now: Millis,
    ) -> Result<InvitationList, StoreError>;
}

const FACILITY_COLUMNS: &str = "f.id, f.name, f.kind, f.address, f.status, f.status_reason, \
     f.pledge_received_on, f.created_at, f.decided_at, f.application";

#[derive(sqlx::FromRow)]
struct FacilityRow {
    id: i64,
    name: String,
    kind: String,
    address: String,
    status: String,
    status_reason: Option<String>,
    pledge_received_on: Option<String>,
    created_at: i64,
    decided_at: Option<i64>,
    application: String,
}

fn facility_details(row: FacilityRow) -> Result<FacilityDetails, StoreError> {
    let kind = parse_facility_kind(&row.kind)?;
    // Facilities created before applications were stored have none: show what is known.
    let application =
        serde_json::from_str(&row.application).unwrap_or_else(|_| FacilityApplication {
            name: row.name.clone(),
            kind,
            address: row.address.clone(),
            contact: renkei_protocol::api::Contact {
                name: String::new(),
                email: String::new(),
                phone: String::new(),
            },
            admins: Vec::new(),
            roster: Vec::new(),
            pledged: false,
        });
    Ok(FacilityDetails {
        id: row.id,
        name: row.name,
        kind,
        address: row.address,
        status: parse_facility_status(&row.status)?,
        status_reason: row.status_reason,
        pledge_received_on: row.pledge_received_on,
        applied_at: row.created_at,
        decided_at: row.decided_at,
        application,
    })
}

/// Columns of a user's details, with `users u LEFT JOIN facilities f`.
const DETAILS_COLUMNS: &str = "u.id, u.display_name, u.kana, u.profession, u.role, u.status, \
     u.login, u.pledge_received_on, u.status_reason, u.facility_id, f.name AS facility_name, \
     (SELECT COUNT(*) FROM user_photos p WHERE p.user_id = u.id) AS photos";

#[derive(sqlx::FromRow)]
struct DetailsRow {
    id: i64,
    display_name: String,
    kana: String,
    profession: String,
    role: String,
    status: String,
    login: String,
    pledge_received_on: Option<String>,
    status_reason: Option<String>,
    facility_id: Option<i64>,
    facility_name: Option<String>,
    photos: i64,
}

fn user_details(row: DetailsRow) -> Result<UserDetails, StoreError> {
    Ok(UserDetails {
        id: row.id,
        name: row.display_name,
        kana: row.kana,
        profession: row.profession,
        role: parse_role(&row.role)?,
        facility: row.facility_id.map(|id| FacilityRef {
            id,
            name: row.facility_name.unwrap_or_default(),
        }),
        status: parse_status(&row.status)?,
        email: Some(row.login),
        pledge_received_on: row.pledge_received_on,
        status_reason: row.status_reason,
        has_photo: row.photos > 0,
        reachable: None,
    })
}

const INVITATION_SELECT: &str = "SELECT i.id, i.state, i.group_id, g.name AS group_name, \
     g.patient_name, g.owner_facility_id, o.name AS owner_name, i.created_at, i.expires_at, \
     i.accepted_at, i.approved_at, \
     r.id AS r_id, r.display_name AS r_name, r.profession AS r_profession, r.role AS r_role, \
     r.facility_id AS r_facility_id, rf.name AS r_facility_name, \
     e.id AS e_id, e.display_name AS e_name, e.profession AS e_profession, e.role AS e_role, \
     e.facility_id AS e_facility_id, ef.name AS e_facility_name \
     FROM invitations i JOIN care_groups g ON g.id = i.group_id \
     LEFT JOIN facilities o ON o.id = g.owner_facility_id \
     JOIN users r ON r.id = i.inviter_id LEFT JOIN facilities rf ON rf.id = r.facility_id \
     JOIN users e ON e.id = i.invitee_id LEFT JOIN facilities ef ON ef.id = e.facility_id";

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: i64,
    state: String,
    group_id: i64,
    group_name: String,
    patient_name: Option<String>,
    owner_facility_id: Option<i64>,
    owner_name: Option<String>,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
    approved_at: Option<i64>,
    r_id: i64,
    r_name: String,
    r_profession: String,
    r_role: String,
    r_facility_id: Option<i64>,
    r_facility_name: Option<String>,
    e_id: i64,
    e_name: String,
    e_profession: String,
    e_role: String,
    e_facility_id: Option<i64>,
    e_facility_name: Option<String>,
}

fn facility_ref(id: Option<i64>, name: Option<String>) -> Option<FacilityRef> {
    id.map(|id| FacilityRef {
        id,
        name: name.unwrap_or_default(),
    })
}

fn invitation_view(row: InvitationRow, now: Millis) -> Result<InvitationView, StoreError> {
    let state = match row.state.as_str() {
        "pending" if row.expires_at <= now => InvitationState::Expired,
        "pending" => InvitationState::Pending,
        "joined" => InvitationState::Joined,
        "declined" => InvitationState::Declined,
        "refused" => InvitationState::Refused,
        "cancelled" => InvitationState::Cancelled,
        "expired" => InvitationState::Expired,
        other => return Err(StoreError::Corrupt(format!("invitation state {other:?}"))),
    };
    Ok(InvitationView {
        id: row.id,
        state,
        group: row.group_id,
        group_name: row.group_name,
        patient_name: row.patient_name,
        owner: facility_ref(row.owner_facility_id, row.owner_name),
        inviter: UserProfile {
            id: row.r_id,
            name: row.r_name,
            profession: row.r_profession,
            facility: facility_ref(row.r_facility_id, row.r_facility_name),
            role: parse_role(&row.r_role)?,
        },
        invitee: UserProfile {
            id: row.e_id,
            name: row.e_name,
            profession: row.e_profession,
            facility: facility_ref(row.e_facility_id, row.e_facility_name),
            role: parse_role(&row.e_role)?,
        },
        created_at: row.created_at,
        expires_at: row.expires_at,
        accepted: row.accepted_at.is_some(),
        approved: row.approved_at.is_some(),
    })
}

#[derive(sqlx::FromRow)]
struct GroupDetailsRow {
    #[sqlx(flatten)]
    group: GroupRow,
    owner_name: Option<String>,
    patient_kana: Option<String>,
    patient_birth_date: Option<String>,
    patient_notes: Option<String>,
    consent_signed_by: Option<String>,
    consent_copy_sent_on: Option<String>,
}

#[derive(sqlx::FromRow)]
struct ReviewDbRow {
    group_id: i64,
    #[sqlx(flatten)]
    user: DetailsRow,
    joined_at: i64,
    last_post_at: Option<i64>,
    last_read_at: Option<i64>,
    last_read_seq: i64,
    facility_status: Option<String>,
}

macro_rules! registry_store {
    ($store:ty, $db:ty, $lock:literal) => {
        impl $store {
            /// Fails with `LastAdmin` when `user` is an active admin and the only one of
            /// an approved facility.
            async fn check_not_last_admin(
                tx: &mut sqlx::Transaction<'static, $db>,
                user: UserId,
            ) -> Result<(), StoreError> {
                let row: Option<(String, String, Option<i64>)> = sqlx::query_as(
                    "SELECT u.role, u.status, u.facility_id FROM users u WHERE u.id = $1",
                )
                .bind(user)
                .fetch_optional(&mut **tx)
                .await?;
                let Some((role, status, Some(facility))) = row else {
                    return Ok(());
                };
                if role != "admin" || status != "active" {
                    return Ok(());
                }
                // Locks the facility's row: two admins demoting each other wait in turn.
                let sql = concat!("SELECT status FROM facilities WHERE id = $1", $lock);
                let (facility_status,): (String,) =
                    sqlx::query_as(sql).bind(facility).fetch_one(&mut **tx).await?;
                if facility_status != "approved" {
                    return Ok(());
                }
                let (others,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM users WHERE facility_id = $1 AND role = 'admin' \
                     AND status = 'active' AND id <> $2",
                )
                .bind(facility)
                .bind(user)
                .fetch_one(&mut **tx)
                .await?;
                if others == 0 {
                    return Err(StoreError::LastAdmin);
                }
                Ok(())
            }
        }

        #[async_trait]
        impl Registry for $store {
            async fn apply_facility(
                &self,
                application: &FacilityApplication,
                at: Millis,
            ) -> Result<i64, StoreError> {
                let json = serde_json::to_string(application)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO facilities (name, kind, address, application, status, created_at) \
                     VALUES ($1, $2, $3, $4, 'applied', $5) RETURNING id",
                )
                .bind(&application.name)
                .bind(facility_kind_name(application.kind))
                .bind(&application.address)
                .bind(json)
                .bind(at)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn facility(&self, id: i64) -> Result<Option<FacilityDetails>, StoreError> {
                let sql = format!("SELECT {FACILITY_COLUMNS} FROM facilities f WHERE f.id = $1");
                let row: Option<FacilityRow> =
                    sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.map(facility_details).transpose()
            }

            async fn facilities(
                &self,
                status: Option<FacilityStatus>,
            ) -> Result<Vec<FacilityDetails>, StoreError> {
                let sql = format!(
                    "SELECT {FACILITY_COLUMNS} FROM facilities f \
                     WHERE $1 IS NULL OR f.status = $1 ORDER BY f.id"
                );
                let rows: Vec<FacilityRow> = sqlx::query_as(&sql)
                    .bind(status.map(facility_status_name))
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(facility_details).collect()
            }

            async fn public_facilities(&self) -> Result<Vec<PublicFacility>, StoreError> {
                let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
                    "SELECT id, name, kind, address FROM facilities WHERE status = 'approved' \
                     ORDER BY name, id",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.into_iter()
                    .map(|(id, name, kind, address)| {
                        Ok(PublicFacility {
                            id,
                            name,
                            kind: parse_facility_kind(&kind)?,
                            address,
                        })
                    })
                    .collect()
            }

            async fn approve_facility(
                &self,
                id: i64,
                pledge_received_on: Option<&str>,
                admins: &[NewUser],
                at: Millis,
            ) -> Result<Vec<UserId>, StoreError> {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE facilities SET status = 'approved', decided_at = $2, \
                     status_reason = NULL, pledge_received_on = COALESCE($3, pledge_received_on) \
                     WHERE id = $1 AND status = 'applied'",
                )
                .bind(id)
                .bind(at)
                .bind(pledge_received_on)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::Conflict("the facility is not waiting for a decision"));
                }
                let ids = Self::insert_users(&mut tx, admins, at).await?;
                tx.commit().await?;
                Ok(ids)
            }

            async fn set_facility_status(
                &self,
                id: i64,
                change: StatusChange<'_>,
            ) -> Result<Vec<UserId>, StoreError> {
                let mut tx = self.begin_write().await?;
                let sql = concat!("SELECT status FROM facilities WHERE id = $1", $lock);
                let current: Option<(String,)> =
                    sqlx::query_as(sql).bind(id).fetch_optional(&mut *tx).await?;
                let (current,) = current.ok_or(StoreError::NotFound("facility"))?;
                if !change.from.contains(&parse_facility_status(&current)?) {
                    return Err(StoreError::Conflict("the facility's status does not allow this"));
                }
                sqlx::query(
                    "UPDATE facilities SET status = $2, status_reason = $3, decided_at = $4 \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(facility_status_name(change.to))
                .bind(change.reason)
                .bind(change.at)
                .execute(&mut *tx)
                .await?;
                let users: Vec<(i64,)> =
                    sqlx::query_as("SELECT id FROM users WHERE facility_id = $1 ORDER BY id")
                        .bind(id)
                        .fetch_all(&mut *tx)
                        .await?;
                if matches!(change.to, FacilityStatus::Suspended | FacilityStatus::Withdrawn) {
                    sqlx::query(
                        "DELETE FROM sessions WHERE user_id IN \
                         (SELECT id FROM users WHERE facility_id = $1)",
                    )
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(users.into_iter().map(|(id,)| id).collect())
            }

            async fn set_facility_pledge(&self, id: i64, received_on: &str) -> Result<(), StoreError> {
                let updated = sqlx::query("UPDATE facilities SET pledge_received_on = $2 WHERE id = $1")
                    .bind(id)
                    .bind(received_on)
                    .execute(&self.pool)
                    .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("facility"));
                }
                Ok(())
            }

            async fn create_password_setup(
                &self,
                user: UserId,
                token_hash: &[u8],
                at: Millis,
                expires_at: Millis,
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                // One code at a time: a new one replaces any earlier.
                sqlx::query("DELETE FROM password_setups WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO password_setups (token_hash, user_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(user)
                .bind(at)
                .bind(expires_at)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn use_password_setup(
                &self,
                token_hash: &[u8],
                password_hash: &str,
                now: Millis,
            ) -> Result<UserId, StoreError> {
                let mut tx = self.begin_write().await?;
                let row: Option<(i64,)> = sqlx::query_as(
                    "DELETE FROM password_setups WHERE token_hash = $1 AND expires_at > $2 \
                     RETURNING user_id",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let (user,) = row.ok_or(StoreError::NotFound("setup code"))?;
                Self::set_password(&mut tx, user, password_hash, now).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn user(&self, id: UserId) -> Result<Option<UserDetails>, StoreError> {
                let sql = format!(
                    "SELECT {DETAILS_COLUMNS} FROM users u \
                     LEFT JOIN facilities f ON f.id = u.facility_id WHERE u.id = $1"
                );
                let row: Option<DetailsRow> =
                    sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.map(user_details).transpose()
            }

            async fn facility_users(&self, facility: i64) -> Result<Vec<UserDetails>, StoreError> {
                let sql = format!(
                    "SELECT {DETAILS_COLUMNS} FROM users u \
                     LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE u.facility_id = $1 ORDER BY u.id"
                );
                let rows: Vec<DetailsRow> =
                    sqlx::query_as(&sql).bind(facility).fetch_all(&self.pool).await?;
                rows.into_iter().map(user_details).collect()
            }

            async fn update_profile(&self, id: UserId, update: &ProfileUpdate) -> Result<(), StoreError> {
                let updated = sqlx::query(
                    "UPDATE users SET display_name = COALESCE($2, display_name), \
                     kana = COALESCE($3, kana), profession = COALESCE($4, profession) WHERE id = $1",
                )
                .bind(id)
                .bind(&update.name)
                .bind(&update.kana)
                .bind(&update.profession)
                .execute(&self.pool)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                Ok(())
            }

            async fn set_user_pledge(&self, id: UserId, received_on: &str) -> Result<(), StoreError> {
                let updated = sqlx::query("UPDATE users SET pledge_received_on = $2 WHERE id = $1")
                    .bind(id)
                    .bind(received_on)
                    .execute(&self.pool)
                    .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                Ok(())
            }

            async fn set_user_status(
                &self,
                id: UserId,
                status: AccountStatus,
                reason: Option<&str>,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                if status != AccountStatus::Active {
                    Self::check_not_last_admin(&mut tx, id).await?;
                }
                let updated = sqlx::query(
                    "UPDATE users SET status = $2, status_reason = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(status_name(status))
                .bind(reason)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                if matches!(status, AccountStatus::Banned | AccountStatus::Deactivated) {
                    for table in ["sessions", "password_setups"] {
                        sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn set_role(&self, id: UserId, role: Role) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                if role != Role::Admin {
                    Self::check_not_last_admin(&mut tx, id).await?;
                }
                let updated = sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
                    .bind(id)
                    .bind(role_name(role))
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound("user"));
                }
                tx.commit().await?;
                Ok(())
            }

            async fn put_photo(
                &self,
                user: UserId,
                content_type: &str,
                bytes: &[u8],
                at: Millis,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO user_photos (user_id, content_type, bytes, updated_at) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (user_id) DO UPDATE SET \
                     content_type = excluded.content_type, bytes = excluded.bytes, \
                     updated_at = excluded.updated_at",
                )
                .bind(user)
                .bind(content_type)
                .bind(bytes)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn photo(&self, user: UserId) -> Result<Option<(String, Vec<u8>)>, StoreError> {
                Ok(sqlx::query_as("SELECT content_type, bytes FROM user_photos WHERE user_id = $1")
                    .bind(user)
                    .fetch_optional(&self.pool)
                    .await?)
            }

            async fn group_details(&self, id: GroupId) -> Result<Option<GroupDetailsRecord>, StoreError> {
                let mut tx = self.pool.begin().await?;
                let sql = format!(
                    "SELECT {GROUP_COLUMNS}, o.name AS owner_name, g.patient_kana, \
                     g.patient_birth_date, g.patient_notes, g.consent_signed_by, \
                     g.consent_copy_sent_on FROM care_groups g \
                     LEFT JOIN facilities o ON o.id = g.owner_facility_id WHERE g.id = $1"
                );
                let row: Option<GroupDetailsRow> =
                    sqlx::query_as(&sql).bind(id).fetch_optional(&mut *tx).await?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let sql = format!(
                    "SELECT {USER_COLUMNS}, m.joined_at FROM memberships m \
                     JOIN users u ON u.id = m.user_id LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE m.group_id = $1 ORDER BY u.id"
                );
                #[derive(sqlx::FromRow)]
                struct MemberRow {
                    #[sqlx(flatten)]
                    user: UserRow,
                    joined_at: i64,
                }
                let members: Vec<MemberRow> =
                    sqlx::query_as(&sql).bind(id).fetch_all(&mut *tx).await?;
                tx.commit().await?;
                let owner = facility_ref(row.group.owner_facility_id, row.owner_name);
                let patient = row.group.patient_name.clone().map(|name| Patient {
                    name,
                    kana: row.patient_kana.unwrap_or_default(),
                    birth_date: row.patient_birth_date.unwrap_or_default(),
                    notes: row.patient_notes.unwrap_or_default(),
                });
                let consent = match (row.consent_signed_by, row.group.consent_signed_on.clone()) {
                    (Some(by), Some(on)) => Some(Consent {
                        signed_by: parse_signer(&by)?,
                        signed_on: on,
                        copy_sent_on: row.consent_copy_sent_on,
                    }),
                    _ => None,
                };
                let members = members
                    .into_iter()
                    .map(|m| Ok((user_record(m.user)?, m.joined_at)))
                    .collect::<Result<_, StoreError>>()?;
                Ok(Some(GroupDetailsRecord {
                    group: group_record(row.group)?,
                    owner,
                    patient,
                    consent,
                    members,
                }))
            }

            async fn user_groups(&self, user: UserId) -> Result<Vec<GroupId>, StoreError> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT group_id FROM memberships WHERE user_id = $1 ORDER BY group_id",
                )
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn admins_room(&self) -> Result<GroupId, StoreError> {
                let row: Option<(i64,)> =
                    sqlx::query_as("SELECT id FROM care_groups WHERE system = 'admins_room'")
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(|(id,)| id).ok_or(StoreError::NotFound("admins' room"))
            }

            async fn review(&self, facility: i64) -> Result<Vec<ReviewRow>, StoreError> {
                let sql = format!(
                    "SELECT m.group_id, {DETAILS_COLUMNS}, m.joined_at, m.last_read_at, m.last_read_seq, \
                     (SELECT MAX(e.created_at) FROM events e WHERE e.author_id = m.user_id \
                      AND e.group_id = m.group_id AND e.kind = 'post') AS last_post_at, \
                     f.status AS facility_status \
                     FROM care_groups g JOIN memberships m ON m.group_id = g.id \
                     JOIN users u ON u.id = m.user_id LEFT JOIN facilities f ON f.id = u.facility_id \
                     WHERE g.owner_facility_id = $1 ORDER BY g.id, u.id"
                );
                let rows: Vec<ReviewDbRow> =
                    sqlx::query_as(&sql).bind(facility).fetch_all(&self.pool).await?;
                rows.into_iter()
                    .map(|row| {
                        Ok(ReviewRow {
                            group: row.group_id,
                            user: user_details(row.user)?,
                            joined_at: row.joined_at,
                            last_post_at: row.last_post_at,
                            last_read_at: row.last_read_at,
                            last_read_seq: row.last_read_seq,
                            facility_status: row
                                .facility_status
                                .as_deref()
                                .map(parse_facility_status)
                                .transpose()?,
                        })
                    })
                    .collect()
            }

            async fn archived_groups(
                &self,
                user: UserId,
                facility: Option<i64>,
                all: bool,
            ) -> Result<Vec<GroupRecord>, StoreError> {
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM care_groups g WHERE g.archived_at IS NOT NULL \
                     AND ($3 OR g.owner_facility_id = $2 OR EXISTS (SELECT 1 FROM memberships m \
                     WHERE m.group_id = g.id AND m.user_id = $1)) ORDER BY g.id"
                );
                let rows: Vec<GroupRow> = sqlx::query_as(&sql)
                    .bind(user)
                    .bind(facility)
                    .bind(all)
                    .fetch_all(&self.pool)
                    .await?;
                rows.into_iter().map(group_record).collect()
            }

            async fn create_report(
                &self,
                group: GroupId,
                seq: i64,
                reporter: UserId,
                reason: &str,
                at: Millis,
            ) -> Result<i64, StoreError> {
                let row: Option<(i64,)> = sqlx::query_as(
                    "INSERT INTO reports (group_id, seq, reporter_id, reason, created_at) \
                     SELECT group_id, seq, $3, $4, $5 FROM events WHERE group_id = $1 \
                     AND seq = $2 AND kind = 'post' AND deleted_at IS NULL RETURNING id",
                )
                .bind(group)
                .bind(seq)
                .bind(reporter)
                .bind(reason)
                .bind(at)
                .fetch_optional(&self.pool)
                .await?;
                row.map(|(id,)| id).ok_or(StoreError::NotFound("post"))
            }

            async fn reports(
                &self,
                facility: Option<i64>,
                state: Option<&str>,
            ) -> Result<Vec<ReportRow>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(REPORT_SELECT);
                query.push(" WHERE 1 = 1");
                if let Some(facility) = facility {
                    query.push(" AND g.owner_facility_id = ").push_bind(facility);
                }
                if let Some(state) = state {
                    query.push(" AND r.state = ").push_bind(state);
                }
                query.push(" ORDER BY r.id DESC LIMIT 500");
                Ok(query.build_query_as().fetch_all(&self.pool).await?)
            }

            async fn report(&self, id: i64) -> Result<Option<ReportRow>, StoreError> {
                let sql = format!("{REPORT_SELECT} WHERE r.id = $1");
                Ok(sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?)
            }

            async fn close_report(
                &self,
                id: i64,
                state: &str,
                by: UserId,
                at: Millis,
            ) -> Result<(), StoreError> {
                let updated = sqlx::query(
                    "UPDATE reports SET state = $2, handled_by = $3, handled_at = $4 \
                     WHERE id = $1 AND state = 'open'",
                )
                .bind(id)
                .bind(state)
                .bind(by)
                .bind(at)
                .execute(&self.pool)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::Conflict("the report is closed already"));
                }
                Ok(())
            }

            async fn monitor(
                &self,
                facility: i64,
                filter: &PostFilter,
            ) -> Result<Vec<EventRecord>, StoreError> {
                let mut query = sqlx::QueryBuilder::<$db>::new(EVENT_SELECT);
                query
                    .push(" JOIN care_groups g ON g.id = e.group_id WHERE g.owner_facility_id = ")
                    .push_bind(facility)
                    .push(" AND e.kind = 'post' AND e.deleted_at IS NULL");
                if let Some(group) = filter.group {
                    query.push(" AND e.group_id = ").push_bind(group);
                }
                if let Some(author) = filter.author {
                    query.push(" AND e.author_id = ").push_bind(author);
                }
                if let Some(since) = filter.since {
                    query.push(" AND e.created_at >= ").push_bind(since);
                }
                if let Some(until) = filter.until {
                    query.push(" AND e.created_at < ").push_bind(until);
                }
                if let Some(text) = &filter.text {
                    super::reading::push_contains(&mut query, &renkei_domain::search::fold(text));
                }
                query
                    .push(" ORDER BY e.created_at DESC, e.seq DESC LIMIT ")
                    .push_bind(i64::from(filter.limit));
                let rows: Vec<EventRow> = query.build_query_as().fetch_all(&self.pool).await?;
                rows.into_iter().map(event_record).collect()
            }

            async fn claim_job(&self, name: &str, now: Millis, every: Millis) -> Result<bool, StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO jobs (name, last_run_at) VALUES ($1, 0) ON CONFLICT DO NOTHING",
                )
                .bind(name)
                .execute(&mut *tx)
                .await?;
                // The row lock makes a second node wait here, then find the time moved on.
                let claimed = sqlx::query(
                    "UPDATE jobs SET last_run_at = $2 WHERE name = $1 AND last_run_at <= $3",
                )
                .bind(name)
                .bind(now)
                .bind(now - every)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(claimed.rows_affected() == 1)
            }

            async fn archive_candidates(&self) -> Result<Vec<ArchiveCandidate>, StoreError> {
                let rows: Vec<(i64, String, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT g.id, g.name, COALESCE((SELECT MAX(e.created_at) \
                     FROM events e WHERE e.group_id = g.id AND e.kind = 'post'), g.created_at), \
                     g.archive_notice_at FROM care_groups g \
                     WHERE g.kind = 'patient' AND g.archived_at IS NULL ORDER BY g.id",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(group, name, last_activity, notice_at)| ArchiveCandidate {
                        group,
                        name,
                        last_activity,
                        notice_at,
                    })
                    .collect())
            }

            async fn archive_notices(
                &self,
                facility: i64,
            ) -> Result<Vec<(GroupId, Millis)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, archive_due_at FROM care_groups WHERE owner_facility_id = $1 \
                     AND archived_at IS NULL AND archive_due_at IS NOT NULL ORDER BY id",
                )
                .bind(facility)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn purge_candidates(
                &self,
                archived_before: Millis,
            ) -> Result<Vec<GroupId>, StoreError> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT id FROM care_groups WHERE archived_at IS NOT NULL \
                     AND archived_at < $1 ORDER BY id",
                )
                .bind(archived_before)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn purge_group(
                &self,
                group: GroupId,
                archived_before: Millis,
                at: Millis,
            ) -> Result<(), StoreError> {
                use sha2::{Digest as _, Sha256};
                let mut tx = self.begin_write().await?;
                let sql = concat!(
                    "SELECT owner_facility_id, archived_at FROM care_groups WHERE id = $1 \
                     AND archived_at IS NOT NULL AND archived_at < $2",
                    $lock
                );
                let row: Option<(Option<i64>, i64)> = sqlx::query_as(sql)
                    .bind(group)
                    .bind(archived_before)
                    .fetch_optional(&mut *tx)
                    .await?;
                let (owner, archived_at) = row.ok_or(StoreError::NotFound("archived group"))?;
                let hashes: Vec<(Option<Vec<u8>>,)> = sqlx::query_as(
                    "SELECT content_hash FROM events WHERE group_id = $1 ORDER BY seq",
                )
                .bind(group)
                .fetch_all(&mut *tx)
                .await?;
                let mut digest = Sha256::new();
                for (hash,) in &hashes {
                    digest.update(hash.as_deref().unwrap_or_default());
                }
                let (deletions,): (i64,) =
                    sqlx::query_as("SELECT COUNT(*) FROM deletions WHERE group_id = $1")
                        .bind(group)
                        .fetch_one(&mut *tx)
                        .await?;
                sqlx::query(
                    "INSERT INTO purges (group_id, owner_facility_id, archived_at, purged_at, \
                     events, deletions, content_digest) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(group)
                .bind(owner)
                .bind(archived_at)
                .bind(at)
                .bind(hashes.len() as i64)
                .bind(deletions)
                .bind(digest.finalize().to_vec())
                .execute(&mut *tx)
                .await?;
                for table in [
                    "reports",
                    "invitations",
                    "deletions",
                    "memberships",
                    "mentions",
                    "events",
                    "files",
                ] {
                    sqlx::query(&format!("DELETE FROM {table} WHERE group_id = $1"))
                        .bind(group)
                        .execute(&mut *tx)
                        .await?;
                }
                sqlx::query("DELETE FROM care_groups WHERE id = $1")
                    .bind(group)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                self.erase_residue().await;
                Ok(())
            }

            async fn clear_archive_notice(&self, group: GroupId) -> Result<(), StoreError> {
                sqlx::query(
                    "UPDATE care_groups SET archive_notice_at = NULL, archive_due_at = NULL \
                     WHERE id = $1",
                )
                    .bind(group)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn owned_groups(&self, facility: i64) -> Result<Vec<GroupRecord>, StoreError> {
                let sql = format!(
                    "SELECT {GROUP_COLUMNS} FROM care_groups g WHERE g.owner_facility_id = $1 \
                     ORDER BY g.id"
                );
                let rows: Vec<GroupRow> =
                    sqlx::query_as(&sql).bind(facility).fetch_all(&self.pool).await?;
                rows.into_iter().map(group_record).collect()
            }

            async fn create_invitation(
                &self,
                group: GroupId,
                invitee: UserId,
                inviter: UserId,
                approved_by: Option<UserId>,
                at: Millis,
                expires_at: Millis,
            ) -> Result<i64, StoreError> {
                let mut tx = self.begin_write().await?;
                let (members,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM memberships WHERE group_id = $1 AND user_id = $2",
                )
                .bind(group)
                .bind(invitee)
                .fetch_one(&mut *tx)
                .await?;
                if members > 0 {
                    return Err(StoreError::Conflict("already a member"));
                }
                sqlx::query(
                    "UPDATE invitations SET state = 'expired', closed_at = expires_at \
                     WHERE group_id = $1 AND invitee_id = $2 AND state = 'pending' \
                     AND expires_at <= $3",
                )
                .bind(group)
                .bind(invitee)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                let inserted: Result<(i64,), sqlx::Error> = sqlx::query_as(
                    "INSERT INTO invitations (group_id, invitee_id, inviter_id, created_at, \
                     expires_at, approved_at, approved_by) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     RETURNING id",
                )
                .bind(group)
                .bind(invitee)
                .bind(inviter)
                .bind(at)
                .bind(expires_at)
                .bind(approved_by.map(|_| at))
                .bind(approved_by)
                .fetch_one(&mut *tx)
                .await;
                let (id,) = match inserted {
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        return Err(StoreError::Conflict("an invitation is pending already"))
                    }
                    other => other?,
                };
                tx.commit().await?;
                Ok(id)
            }

            async fn invitation(
                &self,
                id: i64,
                now: Millis,
            ) -> Result<Option<InvitationView>, StoreError> {
                let sql = format!("{INVITATION_SELECT} WHERE i.id = $1");
                let row: Option<InvitationRow> =
                    sqlx::query_as(&sql).bind(id).fetch_optional(&self.pool).await?;
                row.map(|row| invitation_view(row, now)).transpose()
            }

            async fn step_invitation(
                &self,
                id: i64,
                step: InvitationStep,
                now: Millis,
            ) -> Result<InvitationView, StoreError> {
                let mut tx = self.begin_write().await?;
                let sql = concat!("SELECT state, expires_at FROM invitations WHERE id = $1", $lock);
                let row: Option<(String, i64)> =
                    sqlx::query_as(sql).bind(id).fetch_optional(&mut *tx).await?;
                let (state, expires_at) = row.ok_or(StoreError::NotFound("invitation"))?;
                if state == "pending" && expires_at <= now {
                    sqlx::query("UPDATE invitations SET state = 'expired', closed_at = $2 WHERE id = $1")
                        .bind(id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await?;
                    return Err(StoreError::Conflict("the invitation has expired"));
                }
                if state != "pending" {
                    return Err(StoreError::Conflict("the invitation is closed"));
                }
                let (sql, by) = match step {
                    InvitationStep::Accept => {
                        ("UPDATE invitations SET accepted_at = COALESCE(accepted_at, $2) WHERE id = $1", None)
                    }
                    InvitationStep::Decline => (
                        "UPDATE invitations SET state = 'declined', closed_at = $2, \
                         closed_by = invitee_id WHERE id = $1",
                        None,
                    ),
                    InvitationStep::Approve { by } => (
                        "UPDATE invitations SET approved_at = COALESCE(approved_at, $2), \
                         approved_by = COALESCE(approved_by, $3) WHERE id = $1",
                        Some(by),
                    ),
                    InvitationStep::Refuse { by } => (
                        "UPDATE invitations SET state = 'refused', closed_at = $2, closed_by = $3 \
                         WHERE id = $1",
                        Some(by),
                    ),
                    InvitationStep::Cancel { by } => (
                        "UPDATE invitations SET state = 'cancelled', closed_at = $2, closed_by = $3 \
                         WHERE id = $1",
                        Some(by),
                    ),
                };
                let mut query = sqlx::query(sql).bind(id).bind(now);
                if let Some(by) = by {
                    query = query.bind(by);
                }
                query.execute(&mut *tx).await?;
                let sql = format!("{INVITATION_SELECT} WHERE i.id = $1");
                let row: InvitationRow = sqlx::query_as(&sql).bind(id).fetch_one(&mut *tx).await?;
                tx.commit().await?;
                invitation_view(row, now)
            }

            async fn invitations(
                &self,
                user: UserId,
                approver_of: Option<i64>,
                now: Millis,
            ) -> Result<InvitationList, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut lists = Vec::with_capacity(3);
                // The invitee's facility: -1 (no facility) for one who approves nothing.
                let queries = [
                    ("i.invitee_id = $1", user),
                    ("e.facility_id = $1 AND i.state = 'pending'", approver_of.unwrap_or(-1)),
                    ("i.inviter_id = $1", user),
                ];
                for (condition, value) in queries {
                    let sql = format!(
                        "{INVITATION_SELECT} WHERE {condition} ORDER BY i.id DESC LIMIT 500"
                    );
                    let rows: Vec<InvitationRow> = sqlx::query_as(&sql)
                        .bind(value)
                        .fetch_all(&mut *tx)
                        .await?;
                    let views = rows
                        .into_iter()
                        .map(|row| invitation_view(row, now))
                        .collect::<Result<Vec<_>, StoreError>>()?;
                    lists.push(views);
                }
                tx.commit().await?;
                let sent = lists.pop().unwrap_or_default();
                let to_approve = lists
                    .pop()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|i| i.state == InvitationState::Pending && !i.approved)
                    .collect();
                let received = lists.pop().unwrap_or_default();
                Ok(InvitationList {
                    received,
                    to_approve,
                    sent,
                })
            }
        }
    };
}

registry_store!(super::SqliteStore, sqlx::Sqlite, "");
registry_store!(super::PgStore, sqlx::Postgres, " FOR UPDATE");

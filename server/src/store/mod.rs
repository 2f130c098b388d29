//! Storage: the database is the source of truth for everything Renkei knows.
//!
//! One trait, [`Store`], in create-read-update-delete order per aggregate, implemented for
//! SQLite (the embedded default, [`sqlite`]) and PostgreSQL ([`postgres`]). Both run the
//! same SQL (`queries`), so the conformance suite in `tests/store.rs` checks one behaviour
//! on two engines. Only this module contains SQL.

mod access;
mod attachment;
mod audit_log;
mod notice;
mod postgres;
mod queries;
mod reading;
mod registry;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use renkei_protocol::api::{Consent, ConsentSigner, FacilityStatus, Patient};
use renkei_protocol::{AccountStatus, GroupId, GroupKind, Millis, Role, Seq, UserId};

pub use access::{Access, PasswordState, SessionRecord};
pub use attachment::{Attachments, NewFile, StoredFile};
pub use audit_log::{AuditFilter, AuditLog, SealedEvent};
pub use notice::{
    kind_name as notice_kind_name, ClaimedMail, ClaimedPush, DeliveryState, DigestRule, MailKind,
    MailOutcome, MailState, NewActivity, NewNotice, NoticeCandidate, NoticeSettingsRecord, Notices,
    PushOutcome, QuietMinutes,
};
pub use postgres::PgStore;
pub use reading::{MemberRead, PostSearch, ReadState, Reading};
pub use registry::{
    ArchiveCandidate, GroupDetailsRecord, InvitationStep, PostFilter, Registry, ReportRow,
    ReviewRow, StatusChange,
};
pub use sqlite::SqliteStore;

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique value (a login, a membership) exists already.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// A referenced row does not exist.
    #[error("not found: {0}")]
    NotFound(&'static str),
    /// The database could not be reached or failed; nothing was written.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// Migrations failed at start-up.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value in the database is not one this version understands.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The change would leave an approved facility without an active admin.
    #[error("the facility's last active admin cannot lose the role or the account")]
    LastAdmin,
    /// A backup could not be written.
    #[error("backup failed: {0}")]
    Backup(String),
    /// The database URL names no engine Renkei supports.
    #[error("unsupported database URL (use sqlite:// or postgres://)")]
    UnsupportedUrl,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict("unique value exists")
            }
            sqlx::Error::Database(db) if db.is_foreign_key_violation() => {
                StoreError::NotFound("referenced row")
            }
            _ => StoreError::Unavailable(err),
        }
    }
}

/// A new facility (事業所), approved from the start (fixtures, the demo, the load tester;
/// real facilities apply with [`Registry::apply_facility`]).
#[derive(Debug, Clone)]
pub struct NewFacility {
    pub name: String,
    pub kind: renkei_protocol::api::FacilityKind,
}

/// A new user account, with its already-hashed password (empty until the owner sets one
/// with a setup code).
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub facility_id: Option<i64>,
    /// The person's e-mail address.
    pub login: String,
    pub name: String,
    pub kana: String,
    pub profession: String,
    pub role: Role,
    pub password_hash: String,
    pub pledge_received_on: Option<String>,
}

/// A user as shown to others: what every post carries about its author.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: UserId,
    /// Never shown to other users.
    pub login: String,
    pub name: String,
    pub profession: String,
    pub role: Role,
    pub status: AccountStatus,
    pub facility_id: Option<i64>,
    pub facility_name: Option<String>,
}

/// A user with the hash to check a password against.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub user: UserRecord,
    pub password_hash: String,
    pub password_changed_at: Option<Millis>,
    /// Locked after repeated failed logins until this time.
    pub locked_until: Option<Millis>,
    /// The TOTP secret as stored (encrypted: `secret`), when the account has a second
    /// factor.
    pub totp_secret: Option<Vec<u8>>,
}

/// A new session; only the token's hash is stored.
#[derive(Debug, Clone, Default)]
pub struct NewSession {
    pub token_hash: Vec<u8>,
    pub user_id: UserId,
    pub created_at: Millis,
    pub expires_at: Millis,
    /// The User-Agent it was opened with (shown in the user's list of sessions).
    pub user_agent: String,
    /// The address it was opened from.
    pub source: String,
    /// The password has expired: the session may only change it.
    pub must_change_password: bool,
    /// A required second factor is not set up: the session may only set it up.
    pub must_enroll_second_factor: bool,
}

/// The user behind a session, and what the session allows.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: UserRecord,
    pub last_used_at: Millis,
    pub must_change_password: bool,
    pub must_enroll_second_factor: bool,
}

/// A new group.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub kind: GroupKind,
    pub name: String,
    /// Required for patient groups, absent for free groups.
    pub patient: Option<Patient>,
    pub owner_facility_id: Option<i64>,
    /// On file from the start (fixtures and imports); otherwise recorded later.
    pub consent: Option<Consent>,
    pub created_at: Millis,
}

/// A group as the hub holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GroupRecord {
    pub id: GroupId,
    pub kind: GroupKind,
    pub name: String,
    pub patient_name: Option<String>,
    pub owner_facility_id: Option<i64>,
    pub archived: bool,
    /// A patient group without its consent record (様式3).
    pub needs_consent: bool,
    /// The admins' room (MCS管理者の部屋).
    pub admins_room: bool,
    pub last_seq: Seq,
}

/// Every group and membership: what the hub loads at start-up.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub groups: Vec<GroupRecord>,
    pub memberships: Vec<(GroupId, UserId)>,
}

/// A post to append to its group's sequence.
#[derive(Debug, Clone)]
pub struct NewPost {
    pub group: GroupId,
    pub author: Arc<UserRecord>,
    pub client_id: String,
    pub text: String,
    /// SHA-256 of `text`.
    pub content_hash: Vec<u8>,
    /// `text` folded for search ([`renkei_domain::search::fold`]) when that differs from it.
    pub search_text: Option<String>,
    /// A file uploaded by the author into the group, attached in the commit.
    pub file: Option<renkei_protocol::FileRef>,
    pub at: Millis,
}

impl NewPost {
    /// A post with its text's hash and folded copy; `at` is set by the commit.
    pub fn new(group: GroupId, author: Arc<UserRecord>, client_id: String, text: String) -> Self {
        use sha2::Digest;
        let folded = renkei_domain::search::fold(&text);
        NewPost {
            content_hash: sha2::Sha256::digest(text.as_bytes()).to_vec(),
            search_text: (folded != text).then_some(folded),
            file: None,
            group,
            author,
            client_id,
            text,
            at: 0,
        }
    }
}

/// Where a committed post stands in its group's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    pub group: GroupId,
    pub seq: Seq,
    pub at: Millis,
}

/// What became of one post of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored now, at this place.
    Committed(Placement),
    /// The author used this client id before for the same post: stored there, once.
    Duplicate(Placement),
    /// The author used this client id before for a different post; nothing stored.
    ClientIdConflict,
    /// The group is archived; nothing stored.
    GroupArchived,
    /// The author may not post there any more (removed, restricted, consent missing):
    /// the facts the policy allowed the post on changed before its commit. Nothing stored.
    Refused,
    /// The group does not exist; nothing stored.
    NoSuchGroup,
    /// The file is not the author's upload into this group, or is attached or deleted
    /// already; nothing stored.
    FileUnavailable,
}

/// One stored event of a group's sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub group: GroupId,
    pub seq: Seq,
    pub at: Millis,
    pub body: EventBody,
}

impl EventRecord {
    /// The bytes of text the event carries.
    pub fn text_len(&self) -> usize {
        match &self.body {
            EventBody::Post { text, .. } | EventBody::GroupRenamed { name: text, .. } => text.len(),
            _ => 0,
        }
    }
}

/// What a stored event holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    Post {
        author: UserRecord,
        client_id: String,
        text: String,
        file: Option<renkei_protocol::FileRef>,
    },
    MemberJoined {
        member: UserRecord,
        by: Option<UserRecord>,
    },
    MemberLeft {
        member: UserRecord,
    },
    MemberRemoved {
        member: UserRecord,
        by: UserRecord,
    },
    GroupRenamed {
        name: String,
        by: UserRecord,
    },
    ConsentRecorded {
        by: UserRecord,
    },
    /// A post whose text was erased.
    DeletedPost {
        author: UserRecord,
        deleted_by: UserRecord,
        deleted_at: Millis,
    },
    PostDeleted {
        seq: Seq,
        by: UserRecord,
    },
    GroupArchived {
        by: Option<UserRecord>,
    },
    ArchiveNotice {
        archive_after: Millis,
    },
    GroupRestored {
        by: UserRecord,
    },
    PostConfirmed {
        seq: Seq,
        by: UserRecord,
    },
}

/// A change to a group that takes the next place in its sequence, like a post.
#[derive(Debug, Clone)]
pub enum Change {
    /// `user` joins; `by` invited them (with `invitation`, which becomes `joined`).
    Join {
        user: UserId,
        by: Option<UserId>,
        invitation: Option<i64>,
    },
    /// `user` leaves on their own.
    Leave {
        user: UserId,
    },
    /// `by` removes `user` (解除).
    Remove {
        user: UserId,
        by: UserId,
    },
    Rename {
        name: String,
        by: UserId,
    },
    /// The consent record (様式3) is put on file.
    Consent {
        consent: Consent,
        by: UserId,
    },
    /// The post at `seq` is erased (its text leaves the database) and the deletion is
    /// recorded with the text's hash and the reason.
    DeletePost {
        seq: Seq,
        by: UserId,
        reason: Option<String>,
    },
    /// The group moves to the archive (保管庫); `by` is absent for the archive process.
    Archive {
        by: Option<UserId>,
    },
    /// The archive process tells the group it will be archived at `archive_after`.
    ArchiveNotice {
        archive_after: Millis,
    },
    /// The group comes back from the archive.
    Restore {
        by: UserId,
    },
    /// 確認しました: `by` confirms the post at `seq`. `NotFound` when it is not a post
    /// (or deleted), `Conflict` when they wrote it or confirmed it already.
    Confirm {
        seq: Seq,
        by: UserId,
    },
}

/// What a change did: its event, and the group as it is after it.
#[derive(Debug, Clone)]
pub struct Changed {
    pub event: EventRecord,
    pub group: GroupRecord,
}

/// The storage interface of the messaging core; [`Registry`] holds the rest. Every method
/// is one transaction.
#[async_trait]
pub trait Store:
    Registry + Reading + Attachments + AuditLog + Access + Notices + Send + Sync + 'static
{
    /// Succeeds when the database answers (for `/readyz`).
    async fn ping(&self) -> Result<(), StoreError>;
    /// Writes a consistent copy of the database to a new file `to` while serving
    /// (SQLite); PostgreSQL is backed up with its own tools.
    async fn backup(&self, to: &std::path::Path) -> Result<(), StoreError>;
    /// True when no user exists yet (the demo refuses to fill a used database).
    async fn is_empty(&self) -> Result<bool, StoreError>;

    /// Creates a facility and returns its id.
    async fn create_facility(&self, facility: &NewFacility) -> Result<i64, StoreError>;

    /// Creates users in one transaction and returns their ids in order; `Conflict` (and
    /// nobody created) when a login is taken.
    async fn create_users(&self, users: &[NewUser]) -> Result<Vec<UserId>, StoreError>;
    /// The user with this login and their password hash, if any.
    async fn credentials(&self, login: &str) -> Result<Option<Credentials>, StoreError>;

    /// Stores sessions in one transaction.
    async fn create_sessions(&self, sessions: &[NewSession]) -> Result<(), StoreError>;
    /// The user of a session that has not expired (`expires_at > now`) nor been idle
    /// (`last_used_at > idle_since`), if any.
    async fn session_user(
        &self,
        token_hash: &[u8],
        now: Millis,
        idle_since: Millis,
    ) -> Result<Option<SessionUser>, StoreError>;
    /// Ends a session; ending an unknown session is not an error.
    async fn delete_session(&self, token_hash: &[u8]) -> Result<(), StoreError>;

    /// Creates a group and returns its id.
    async fn create_group(&self, group: &NewGroup) -> Result<GroupId, StoreError>;
    /// Every group and membership.
    async fn directory(&self) -> Result<Directory, StoreError>;
    /// Every group's last sequence number (to find what a node missed).
    async fn last_seqs(&self) -> Result<Vec<(GroupId, Seq)>, StoreError>;

    /// Makes users members of groups in one transaction; `Conflict` (and nothing added)
    /// when one of them is a member already.
    async fn add_members(
        &self,
        members: &[(GroupId, UserId)],
        at: Millis,
    ) -> Result<(), StoreError>;

    /// Applies a change to a group and appends its event, in one transaction. `NotFound`
    /// when the group does not exist; `Conflict` when a joining user is a member already
    /// or a leaving one is not.
    async fn apply_change(
        &self,
        group: GroupId,
        change: &Change,
        at: Millis,
    ) -> Result<Changed, StoreError>;

    /// Appends a batch of posts in one transaction, in order: each new post gets the next
    /// sequence number of its group. Returns one outcome per post. On `Err` nothing of the
    /// batch was stored.
    async fn append_posts(&self, posts: &[NewPost]) -> Result<Vec<AppendOutcome>, StoreError>;
    /// Events of a group with `after < seq <= upto`, oldest first, at most `limit`.
    async fn events_after(
        &self,
        group: GroupId,
        after: Seq,
        upto: Seq,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
    /// The newest events of a group before `before` (all when `None`), oldest first,
    /// at most `limit`.
    async fn events_before(
        &self,
        group: GroupId,
        before: Option<Seq>,
        limit: u32,
    ) -> Result<Vec<EventRecord>, StoreError>;
}

/// Opens the store a database URL names, running its migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PgStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl)
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Operator => "operator",
        Role::Admin => "admin",
        Role::Staff => "staff",
    }
}

fn parse_role(name: &str) -> Result<Role, StoreError> {
    match name {
        "operator" => Ok(Role::Operator),
        "admin" => Ok(Role::Admin),
        "staff" => Ok(Role::Staff),
        other => Err(StoreError::Corrupt(format!("role {other:?}"))),
    }
}

fn status_name(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "active",
        AccountStatus::Restricted => "restricted",
        AccountStatus::Banned => "banned",
        AccountStatus::Deactivated => "deactivated",
    }
}

fn parse_status(name: &str) -> Result<AccountStatus, StoreError> {
    match name {
        "active" => Ok(AccountStatus::Active),
        "restricted" => Ok(AccountStatus::Restricted),
        "banned" => Ok(AccountStatus::Banned),
        "deactivated" => Ok(AccountStatus::Deactivated),
        other => Err(StoreError::Corrupt(format!("account status {other:?}"))),
    }
}

fn facility_status_name(status: FacilityStatus) -> &'static str {
    match status {
        FacilityStatus::Applied => "applied",
        FacilityStatus::Approved => "approved",
        FacilityStatus::Rejected => "rejected",
        FacilityStatus::Suspended => "suspended",
        FacilityStatus::Withdrawn => "withdrawn",
    }
}

fn parse_facility_status(name: &str) -> Result<FacilityStatus, StoreError> {
    match name {
        "applied" => Ok(FacilityStatus::Applied),
        "approved" => Ok(FacilityStatus::Approved),
        "rejected" => Ok(FacilityStatus::Rejected),
        "suspended" => Ok(FacilityStatus::Suspended),
        "withdrawn" => Ok(FacilityStatus::Withdrawn),
        other => Err(StoreError::Corrupt(format!("facility status {other:?}"))),
    }
}

fn signer_name(signer: ConsentSigner) -> &'static str {
    match signer {
        ConsentSigner::Patient => "patient",
        ConsentSigner::Family => "family",
        ConsentSigner::PatientAndFamily => "patient_and_family",
    }
}

fn parse_signer(name: &str) -> Result<ConsentSigner, StoreError> {
    match name {
        "patient" => Ok(ConsentSigner::Patient),
        "family" => Ok(ConsentSigner::Family),
        "patient_and_family" => Ok(ConsentSigner::PatientAndFamily),
        other => Err(StoreError::Corrupt(format!("consent signer {other:?}"))),
    }
}

fn facility_kind_name(kind: renkei_protocol::api::FacilityKind) -> String {
    match serde_json::to_value(kind) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "other".into(),
    }
}

fn parse_facility_kind(name: &str) -> Result<renkei_protocol::api::FacilityKind, StoreError> {
    serde_json::from_value(serde_json::Value::String(name.into()))
        .map_err(|_| StoreError::Corrupt(format!("facility kind {name:?}")))
}

fn kind_name(kind: GroupKind) -> &'static str {
    match kind {
        GroupKind::Patient => "patient",
        GroupKind::Free => "free",
    }
}

fn parse_kind(name: &str) -> Result<GroupKind, StoreError> {
    match name {
        "patient" => Ok(GroupKind::Patient),
        "free" => Ok(GroupKind::Free),
        other => Err(StoreError::Corrupt(format!("group kind {other:?}"))),
    }
}

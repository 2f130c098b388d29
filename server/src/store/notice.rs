//! Storage of what reaches people away from the page: the installation's VAPID key, push
//! subscriptions, each person's settings and muted groups, who has a visible page, the
//! notices the follower derives from committed events, and the push and mail queues that
//! every node works off once. One body of SQL for both engines; PostgreSQL's claims skip
//! rows another node holds (`FOR UPDATE SKIP LOCKED`), SQLite's single writer needs nothing.

use async_trait::async_trait;
use renkei_protocol::api::NoticeKind;
use renkei_protocol::{GroupId, Millis, Seq, UserId};

use super::StoreError;

/// Quiet hours as stored: minutes after midnight, Japan time.
pub type QuietMinutes = (i32, i32);

/// A person's notification settings as stored, with what the server knows of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeSettingsRecord {
    pub push: bool,
    pub email: bool,
    pub quiet: Option<QuietMinutes>,
    pub bounced: bool,
    pub muted: Vec<GroupId>,
    /// Subscriptions of their live sessions, by id.
    pub subscriptions: Vec<i64>,
}

/// A member who may be pushed about a group's new posts: push on, group not muted, no
/// visible page, at least one subscription of a live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeCandidate {
    pub user: UserId,
    pub quiet: Option<QuietMinutes>,
    pub subscriptions: Vec<i64>,
    /// When they were last told of this group's posts, and of a mention in it.
    pub last_post_notice: Option<Millis>,
    pub last_mention_notice: Option<Millis>,
}

/// What a group's events since the cursor hold for the follower.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewActivity {
    /// Posts not deleted: (seq, author).
    pub posts: Vec<(Seq, UserId)>,
    /// Mentions: (seq, named member).
    pub mentions: Vec<(Seq, UserId)>,
}

/// A notice to write, with the subscriptions it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotice {
    pub user: UserId,
    pub kind: NoticeKind,
    pub group: Option<GroupId>,
    /// The newest event it covers.
    pub seq: Option<Seq>,
    pub subscriptions: Vec<i64>,
}

/// A push delivery one node now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPush {
    pub id: i64,
    /// Including this one.
    pub attempts: i32,
    pub notice: i64,
    pub kind: NoticeKind,
    pub group: Option<GroupId>,
    pub subscription: i64,
    pub endpoint: String,
    pub p256dh: Vec<u8>,
    pub auth: Vec<u8>,
    /// The subscription's session is still live; otherwise the subscription ends.
    pub session_live: bool,
}

/// A notice as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct NoticeRecord {
    pub id: i64,
    pub user_id: UserId,
    pub group_id: Option<GroupId>,
    pub kind: String,
    /// The newest event it covers.
    pub seq: Option<Seq>,
    pub created_at: Millis,
}

/// A push delivery as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeliveryState {
    pub id: i64,
    pub user_id: UserId,
    pub kind: String,
    pub subscription_id: i64,
    pub due_at: Millis,
    pub attempts: i32,
    /// `sent`, `gave_up`, or `None` while it waits.
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

/// How a push delivery ended, or when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    Sent,
    Retry {
        at: Millis,
        detail: String,
    },
    GaveUp {
        detail: String,
    },
    /// The push service no longer knows the subscription (404, 410), or its session
    /// ended: the subscription is deleted with what waits for it.
    Gone,
}

/// What an e-mail says, never more: its kind and, for a digest, a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MailKind {
    Digest,
    Invitation,
    SetupCode,
    Locked,
    PasswordReset,
    Test,
    /// To an operator: a facility applied (様式1).
    FacilityApplied,
}

impl MailKind {
    pub fn name(self) -> &'static str {
        match self {
            MailKind::Digest => "digest",
            MailKind::Invitation => "invitation",
            MailKind::SetupCode => "setup_code",
            MailKind::Locked => "locked",
            MailKind::PasswordReset => "password_reset",
            MailKind::Test => "test",
            MailKind::FacilityApplied => "facility_applied",
        }
    }

    fn parse(name: &str) -> Result<Self, StoreError> {
        Ok(match name {
            "digest" => MailKind::Digest,
            "invitation" => MailKind::Invitation,
            "setup_code" => MailKind::SetupCode,
            "locked" => MailKind::Locked,
            "password_reset" => MailKind::PasswordReset,
            "test" => MailKind::Test,
            "facility_applied" => MailKind::FacilityApplied,
            other => return Err(StoreError::Corrupt(format!("mail kind {other:?}"))),
        })
    }
}

/// A mail one node now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedMail {
    pub id: i64,
    /// Including this one.
    pub attempts: i32,
    pub user: UserId,
    pub kind: MailKind,
    pub count: Option<i64>,
    /// The user's login, which is their e-mail address.
    pub address: String,
}

/// A mail as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MailState {
    pub id: i64,
    pub user_id: UserId,
    pub kind: String,
    pub due_at: Millis,
    pub attempts: i32,
    /// `sent`, `refused`, `gave_up`, or `None` while it waits.
    pub outcome: Option<String>,
    pub detail: Option<String>,
}

/// How a mail ended, or when it is tried again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    Sent,
    Retry {
        at: Millis,
        detail: String,
    },
    /// The mail server refused the address for good: the user is marked bounced.
    Refused {
        detail: String,
    },
    GaveUp {
        detail: String,
    },
}

/// When digests are due: unread posts committed at or before `older_than`, for people
/// whose last digest is at or before `interval_since`, outside their quiet hours at
/// `minute_of_day` (Japan time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestRule {
    pub now: Millis,
    pub older_than: Millis,
    pub interval_since: Millis,
    pub minute_of_day: i32,
}

pub fn kind_name(kind: NoticeKind) -> &'static str {
    match kind {
        NoticeKind::Post => "post",
        NoticeKind::Mention => "mention",
        NoticeKind::Invitation => "invitation",
        NoticeKind::Account => "account",
        NoticeKind::Test => "test",
        NoticeKind::FacilityApplied => "facility_applied",
    }
}

fn parse_kind(name: &str) -> Result<NoticeKind, StoreError> {
    Ok(match name {
        "post" => NoticeKind::Post,
        "mention" => NoticeKind::Mention,
        "invitation" => NoticeKind::Invitation,
        "account" => NoticeKind::Account,
        "test" => NoticeKind::Test,
        "facility_applied" => NoticeKind::FacilityApplied,
        other => return Err(StoreError::Corrupt(format!("notice kind {other:?}"))),
    })
}

/// The two queues nodes claim work from.
#[derive(Debug, Clone, Copy)]
enum Queue {
    Pushes,
    Mails,
}

impl Queue {
    fn table(self) -> &'static str {
        match self {
            Queue::Pushes => "push_deliveries",
            Queue::Mails => "mails",
        }
    }
}

fn quiet(start: Option<i32>, end: Option<i32>) -> Option<QuietMinutes> {
    start.zip(end)
}

/// Notifications as stored. Methods in create-read-update-delete order per aggregate.
#[async_trait]
pub trait Notices: Send + Sync {
    /// The installation's secret `name`: `candidate` is stored if there is none yet, and
    /// whichever is stored is returned, so nodes starting together agree.
    async fn installation_secret(
        &self,
        name: &str,
        candidate: &[u8],
        at: Millis,
    ) -> Result<Vec<u8>, StoreError>;

    /// Stores a subscription for `user`'s session and returns its id; the same endpoint
    /// again (a renewed subscription, or another login on the device) replaces its keys,
    /// user and session and keeps the id.
    async fn create_push_subscription(
        &self,
        user: UserId,
        session_hash: &[u8],
        endpoint: &str,
        p256dh: &[u8],
        auth: &[u8],
        at: Millis,
    ) -> Result<i64, StoreError>;
    /// Subscriptions of `user`'s live sessions.
    async fn live_subscriptions(
        &self,
        user: UserId,
        now: Millis,
        idle_since: Millis,
    ) -> Result<Vec<i64>, StoreError>;
    /// Deletes `user`'s subscription `id`; false when they have no such subscription.
    async fn delete_push_subscription(&self, user: UserId, id: i64) -> Result<bool, StoreError>;

    /// A person's settings (the defaults when never set).
    async fn notice_settings(
        &self,
        user: UserId,
        now: Millis,
        idle_since: Millis,
    ) -> Result<NoticeSettingsRecord, StoreError>;
    /// How each of `users` can be reached: (user, live subscriptions, e-mail on, bounced).
    async fn reachability(
        &self,
        users: &[UserId],
        now: Millis,
        idle_since: Millis,
    ) -> Result<Vec<(UserId, u32, bool, bool)>, StoreError>;
    async fn set_notice_settings(
        &self,
        user: UserId,
        push: bool,
        email: bool,
        quiet: Option<QuietMinutes>,
    ) -> Result<(), StoreError>;
    async fn set_group_muted(
        &self,
        user: UserId,
        group: GroupId,
        muted: bool,
    ) -> Result<(), StoreError>;

    /// This node is alive until `until`; `shown` now have a visible page on it, `hidden`
    /// no more. Nodes that expired before `now` go, with their rows.
    async fn set_presence(
        &self,
        node: &str,
        shown: &[UserId],
        hidden: &[UserId],
        until: Millis,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// Who has a visible page on any node at `now`.
    async fn visible_users(&self, now: Millis) -> Result<Vec<UserId>, StoreError>;

    /// Groups with events the follower has not turned into notices yet: (group, cursor,
    /// last seq), at most `limit`.
    async fn notice_backlog(&self, limit: u32) -> Result<Vec<(GroupId, Seq, Seq)>, StoreError>;
    /// The posts and mentions of each group in its range `(after, upto]`.
    async fn new_activity(
        &self,
        ranges: &[(GroupId, Seq, Seq)],
    ) -> Result<Vec<(GroupId, NewActivity)>, StoreError>;
    /// The members of `groups` who may be pushed about them now, by group.
    async fn notice_candidates(
        &self,
        groups: &[GroupId],
        now: Millis,
        idle_since: Millis,
    ) -> Result<Vec<(GroupId, NoticeCandidate)>, StoreError>;
    /// Moves each group's cursor from `after` to `upto` and writes the notices of the
    /// groups it moved, with their deliveries (due at `at`), in one transaction. A cursor
    /// that is no longer at `after` (another node did it) stays, and its group's notices
    /// are not written. Returns the groups moved.
    async fn commit_notices(
        &self,
        moves: &[(GroupId, Seq, Seq)],
        notices: &[NewNotice],
        at: Millis,
    ) -> Result<Vec<GroupId>, StoreError>;
    /// Writes one notice with its deliveries (due at `at`); its id.
    async fn create_notice(&self, notice: &NewNotice, at: Millis) -> Result<i64, StoreError>;

    /// Takes up to `limit` due push deliveries for this node until `lease_until`.
    async fn claim_pushes(
        &self,
        now: Millis,
        idle_since: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedPush>, StoreError>;
    /// Records how each of a batch of deliveries ended, in one transaction.
    async fn finish_pushes(
        &self,
        done: &[(ClaimedPush, PushOutcome)],
        at: Millis,
    ) -> Result<(), StoreError>;
    /// Every notice written at or after `since`, by id (operations, load runs, tests).
    async fn notices_since(&self, since: Millis) -> Result<Vec<NoticeRecord>, StoreError>;
    /// Every push delivery as it stands, by id (operations and tests).
    async fn push_deliveries(&self) -> Result<Vec<DeliveryState>, StoreError>;

    /// Queues a mail to `user`, due at `at`.
    async fn create_mail(
        &self,
        user: UserId,
        kind: MailKind,
        count: Option<i64>,
        at: Millis,
    ) -> Result<(), StoreError>;
    /// Queues a digest for everyone the rule says is due one, in one transaction, and
    /// marks when; how many were queued.
    async fn queue_digests(&self, rule: DigestRule) -> Result<u32, StoreError>;
    /// Every mail as it stands, by id (operations and tests).
    async fn mails(&self) -> Result<Vec<MailState>, StoreError>;
    /// Takes up to `limit` due mails for this node until `lease_until`.
    async fn claim_mails(
        &self,
        now: Millis,
        lease_until: Millis,
        limit: u32,
    ) -> Result<Vec<ClaimedMail>, StoreError>;
    async fn finish_mail(
        &self,
        claimed: &ClaimedMail,
        outcome: &MailOutcome,
        at: Millis,
    ) -> Result<(), StoreError>;
}

/// The members of some groups who may be pushed about them now: one row per
/// subscription. Completed by the session's times, [`CANDIDATES_WHERE`], the time for
/// presence and the groups.
const CANDIDATES: &str = "SELECT m.group_id, m.user_id, s.quiet_start, s.quiet_end, ps.id, \
     (SELECT MAX(n.created_at) FROM notices n WHERE n.user_id = m.user_id \
       AND n.group_id = m.group_id AND n.kind = 'post'), \
     (SELECT MAX(n.created_at) FROM notices n WHERE n.user_id = m.user_id \
       AND n.group_id = m.group_id AND n.kind = 'mention') \
     FROM memberships m \
     JOIN push_subscriptions ps ON ps.user_id = m.user_id \
     JOIN sessions se ON se.token_hash = ps.session_hash AND se.expires_at > ";
const CANDIDATES_WHERE: &str = " LEFT JOIN notification_settings s ON s.user_id = m.user_id \
     WHERE COALESCE(s.push, TRUE) \
       AND NOT EXISTS (SELECT 1 FROM group_mutes gm \
         WHERE gm.user_id = m.user_id AND gm.group_id = m.group_id) \
       AND NOT EXISTS (SELECT 1 FROM presence p \
         JOIN presence_nodes pn ON pn.node = p.node \
         WHERE p.user_id = m.user_id AND pn.until_at > ";

/// Who is due a digest under `DigestRule` (`$1` older than, `$2` interval since, `$3`
/// minute of the day) and how many unread posts: posts by others after their
/// read position and after they joined, not deleted, in groups neither archived nor muted,
/// committed since their last digest (at or after: a frozen clock stamps both alike), that no accepted push covered; people with e-mail on
/// and no bounce, of an approved facility (or none: the operator), outside quiet hours.
const DIGEST_DUE: &str = "SELECT m.user_id, COUNT(*) FROM memberships m \
     JOIN users u ON u.id = m.user_id AND u.status IN ('active', 'restricted') \
     LEFT JOIN facilities f ON f.id = u.facility_id \
     JOIN care_groups g ON g.id = m.group_id AND g.archived_at IS NULL \
     JOIN events e ON e.group_id = m.group_id AND e.seq > m.last_read_seq \
     LEFT JOIN notification_settings s ON s.user_id = m.user_id \
     WHERE e.kind = 'post' AND e.deleted_at IS NULL AND e.author_id <> m.user_id \
       AND e.created_at <= $1 AND e.created_at > m.joined_at \
       AND e.created_at >= COALESCE(s.last_digest_at, 0) \
       AND COALESCE(s.last_digest_at, 0) <= $2 \
       AND COALESCE(s.email, TRUE) AND s.bounced_at IS NULL \
       AND (u.facility_id IS NULL OR f.status = 'approved') \
       AND NOT (s.quiet_start IS NOT NULL AND ( \
         (s.quiet_start < s.quiet_end AND $3 >= s.quiet_start AND $3 < s.quiet_end) \
         OR (s.quiet_start > s.quiet_end AND ($3 >= s.quiet_start OR $3 < s.quiet_end)))) \
       AND NOT EXISTS (SELECT 1 FROM group_mutes gm \
         WHERE gm.user_id = m.user_id AND gm.group_id = m.group_id) \
       AND NOT EXISTS (SELECT 1 FROM notices n JOIN push_deliveries d ON d.notice_id = n.id \
         WHERE n.user_id = m.user_id AND n.group_id = m.group_id AND n.seq >= e.seq \
           AND d.outcome = 'sent') \
     GROUP BY m.user_id";

/// The rows of `{table}` (as `x`, with `{rows}` true) in each (group, after, upto] range of
/// a list `r(g, a, u)`, with one row of NULLs for a range that has none; the list stays
/// the outer side and each range is sought by the `(group_id, seq)` key. An inner join
/// let PostgreSQL put the table outside and scan it whole once per range when its
/// statistics lagged behind a burst of posts (the filter's default selectivities then
/// make `events` look empty): the notice follower's round took 10–30 s at 2,000 posts/s
/// and starved the nodes. A lateral subquery is planned per range, where the key's seek
/// costs a few pages against the scan's thousands; `OFFSET 0` keeps PostgreSQL from
/// pulling it up into a join (it then plans the same scan again). SQLite has no LATERAL;
/// it never moves the preserved side of a LEFT JOIN inside, and seeks by the key.
const RANGES_POSTGRES: &str = "FROM r LEFT JOIN LATERAL (SELECT * FROM {table} x \
     WHERE x.group_id = r.g AND x.seq > r.a AND x.seq <= r.u AND {rows} OFFSET 0) x ON TRUE";
const RANGES_SQLITE: &str = "FROM r LEFT JOIN {table} x \
     ON x.group_id = r.g AND x.seq > r.a AND x.seq <= r.u AND {rows}";

macro_rules! notice_store {
    ($store:ty, $db:ty, $skip_locked:literal, $in_ranges:expr) => {
        #[async_trait]
        impl Notices for $store {
            async fn installation_secret(
                &self,
                name: &str,
                candidate: &[u8],
                at: Millis,
            ) -> Result<Vec<u8>, StoreError> {
                sqlx::query(
                    "INSERT INTO installation_secrets (name, secret, created_at) \
                     VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
                )
                .bind(name)
                .bind(candidate)
                .bind(at)
                .execute(&self.pool)
                .await?;
                let (secret,): (Vec<u8>,) =
                    sqlx::query_as("SELECT secret FROM installation_secrets WHERE name = $1")
                        .bind(name)
                        .fetch_one(&self.pool)
                        .await?;
                Ok(secret)
            }

            async fn create_push_subscription(
                &self,
                user: UserId,
                session_hash: &[u8],
                endpoint: &str,
                p256dh: &[u8],
                auth: &[u8],
                at: Millis,
            ) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO push_subscriptions \
                     (user_id, session_hash, endpoint, p256dh, auth, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) \
                     ON CONFLICT (endpoint) DO UPDATE SET user_id = excluded.user_id, \
                     session_hash = excluded.session_hash, p256dh = excluded.p256dh, \
                     auth = excluded.auth, created_at = excluded.created_at \
                     RETURNING id",
                )
                .bind(user)
                .bind(session_hash)
                .bind(endpoint)
                .bind(p256dh)
                .bind(auth)
                .bind(at)
                .fetch_one(&self.pool)
                .await?;
                Ok(id)
            }

            async fn live_subscriptions(
                &self,
                user: UserId,
                now: Millis,
                idle_since: Millis,
            ) -> Result<Vec<i64>, StoreError> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT ps.id FROM push_subscriptions ps \
                     JOIN sessions se ON se.token_hash = ps.session_hash \
                     WHERE ps.user_id = $1 AND se.expires_at > $2 AND se.last_used_at > $3 \
                     ORDER BY ps.id",
                )
                .bind(user)
                .bind(now)
                .bind(idle_since)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn delete_push_subscription(
                &self,
                user: UserId,
                id: i64,
            ) -> Result<bool, StoreError> {
                let done = sqlx::query("DELETE FROM push_subscriptions WHERE id = $1 AND user_id = $2")
                    .bind(id)
                    .bind(user)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected() > 0)
            }

            async fn notice_settings(
                &self,
                user: UserId,
                now: Millis,
                idle_since: Millis,
            ) -> Result<NoticeSettingsRecord, StoreError> {
                let row: Option<(bool, bool, Option<i32>, Option<i32>, Option<Millis>)> =
                    sqlx::query_as(
                        "SELECT push, email, quiet_start, quiet_end, bounced_at \
                         FROM notification_settings WHERE user_id = $1",
                    )
                    .bind(user)
                    .fetch_optional(&self.pool)
                    .await?;
                let (push, email, start, end, bounced) = row.unwrap_or((true, true, None, None, None));
                let muted: Vec<(GroupId,)> = sqlx::query_as(
                    "SELECT group_id FROM group_mutes WHERE user_id = $1 ORDER BY group_id",
                )
                .bind(user)
                .fetch_all(&self.pool)
                .await?;
                let subscriptions = self.live_subscriptions(user, now, idle_since).await?;
                Ok(NoticeSettingsRecord {
                    push,
                    email,
                    quiet: quiet(start, end),
                    bounced: bounced.is_some(),
                    muted: muted.into_iter().map(|(group,)| group).collect(),
                    subscriptions,
                })
            }

            async fn reachability(
                &self,
                users: &[UserId],
                now: Millis,
                idle_since: Millis,
            ) -> Result<Vec<(UserId, u32, bool, bool)>, StoreError> {
                if users.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT u.id, (SELECT COUNT(*) FROM push_subscriptions ps \
                     JOIN sessions se ON se.token_hash = ps.session_hash \
                     WHERE ps.user_id = u.id AND COALESCE(s.push, TRUE) AND se.expires_at > ",
                );
                query
                    .push_bind(now)
                    .push(" AND se.last_used_at > ")
                    .push_bind(idle_since)
                    .push(
                        "), COALESCE(s.email, TRUE), s.bounced_at IS NOT NULL FROM users u \
                         LEFT JOIN notification_settings s ON s.user_id = u.id WHERE u.id IN (",
                    );
                let mut ids = query.separated(", ");
                for user in users {
                    ids.push_bind(*user);
                }
                query.push(")");
                let rows: Vec<(UserId, i64, bool, bool)> =
                    query.build_query_as().fetch_all(&self.pool).await?;
                Ok(rows
                    .into_iter()
                    .map(|(user, subs, email, bounced)| {
                        (user, u32::try_from(subs).unwrap_or(u32::MAX), email, bounced)
                    })
                    .collect())
            }

            async fn set_notice_settings(
                &self,
                user: UserId,
                push: bool,
                email: bool,
                quiet: Option<QuietMinutes>,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO notification_settings (user_id, push, email, quiet_start, quiet_end) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (user_id) DO UPDATE SET \
                     push = excluded.push, email = excluded.email, \
                     quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end",
                )
                .bind(user)
                .bind(push)
                .bind(email)
                .bind(quiet.map(|q| q.0))
                .bind(quiet.map(|q| q.1))
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn set_group_muted(
                &self,
                user: UserId,
                group: GroupId,
                muted: bool,
            ) -> Result<(), StoreError> {
                let sql = if muted {
                    "INSERT INTO group_mutes (user_id, group_id) VALUES ($1, $2) \
                     ON CONFLICT (user_id, group_id) DO NOTHING"
                } else {
                    "DELETE FROM group_mutes WHERE user_id = $1 AND group_id = $2"
                };
                sqlx::query(sql)
                    .bind(user)
                    .bind(group)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn set_presence(
                &self,
                node: &str,
                shown: &[UserId],
                hidden: &[UserId],
                until: Millis,
                now: Millis,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO presence_nodes (node, until_at) VALUES ($1, $2) \
                     ON CONFLICT (node) DO UPDATE SET until_at = excluded.until_at",
                )
                .bind(node)
                .bind(until)
                .execute(&mut *tx)
                .await?;
                for chunk in shown.chunks(500) {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO presence (user_id, node) ",
                    );
                    insert.push_values(chunk, |mut row, user| {
                        row.push_bind(*user).push_bind(node);
                    });
                    insert.push(" ON CONFLICT (user_id, node) DO NOTHING");
                    insert.build().execute(&mut *tx).await?;
                }
                for chunk in hidden.chunks(500) {
                    let mut delete = sqlx::QueryBuilder::<$db>::new(
                        "DELETE FROM presence WHERE node = ",
                    );
                    delete.push_bind(node).push(" AND user_id IN (");
                    let mut ids = delete.separated(", ");
                    for user in chunk {
                        ids.push_bind(*user);
                    }
                    delete.push(")");
                    delete.build().execute(&mut *tx).await?;
                }
                // Dead nodes, and with them (the cascade) what they said.
                sqlx::query("DELETE FROM presence_nodes WHERE until_at <= $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn visible_users(&self, now: Millis) -> Result<Vec<UserId>, StoreError> {
                let rows: Vec<(UserId,)> = sqlx::query_as(
                    "SELECT DISTINCT p.user_id FROM presence p \
                     JOIN presence_nodes n ON n.node = p.node \
                     WHERE n.until_at > $1 ORDER BY p.user_id",
                )
                .bind(now)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(user,)| user).collect())
            }

            async fn notice_backlog(
                &self,
                limit: u32,
            ) -> Result<Vec<(GroupId, Seq, Seq)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT g.id, COALESCE(c.seq, 0), g.last_seq FROM care_groups g \
                     LEFT JOIN notice_cursors c ON c.group_id = g.id \
                     WHERE g.last_seq > COALESCE(c.seq, 0) ORDER BY g.id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await?)
            }

            async fn new_activity(
                &self,
                ranges: &[(GroupId, Seq, Seq)],
            ) -> Result<Vec<(GroupId, NewActivity)>, StoreError> {
                if ranges.is_empty() {
                    return Ok(Vec::new());
                }
                // `what` of the `rows` of `table` in each range, a row of NULLs for a
                // range with none (`RANGES_*`: each range sought by the key).
                let select = |what: &str, table: &str, rows: &str, order: &str| {
                    let mut query = sqlx::QueryBuilder::<$db>::new("WITH r(g, a, u) AS (");
                    query.push_values(ranges, |mut row, (group, after, upto)| {
                        row.push_bind(*group).push_bind(*after).push_bind(*upto);
                    });
                    let from = $in_ranges.replace("{table}", table).replace("{rows}", rows);
                    query.push(format!(") SELECT r.g, {what} {from} ORDER BY r.g, {order}"));
                    query
                };
                let mut posts = select(
                    "x.seq, x.author_id",
                    "events",
                    "x.kind = 'post' AND x.deleted_at IS NULL AND x.author_id IS NOT NULL",
                    "x.seq",
                );
                let posts: Vec<(GroupId, Option<Seq>, Option<UserId>)> =
                    posts.build_query_as().fetch_all(&self.pool).await?;
                let mut activity: Vec<(GroupId, NewActivity)> = Vec::new();
                let posts = posts
                    .into_iter()
                    .filter_map(|(group, seq, author)| Some((group, seq?, author?)));
                for (group, seq, author) in posts {
                    match activity.last_mut() {
                        Some((last, found)) if *last == group => found.posts.push((seq, author)),
                        _ => activity.push((
                            group,
                            NewActivity {
                                posts: vec![(seq, author)],
                                mentions: Vec::new(),
                            },
                        )),
                    }
                }
                if activity.is_empty() {
                    return Ok(activity);
                }
                let mut mentions = select("x.seq, x.user_id", "mentions", "TRUE", "x.seq, x.user_id");
                let mentions: Vec<(GroupId, Option<Seq>, Option<UserId>)> =
                    mentions.build_query_as().fetch_all(&self.pool).await?;
                let mentions = mentions
                    .into_iter()
                    .filter_map(|(group, seq, user)| Some((group, seq?, user?)));
                for (group, seq, user) in mentions {
                    if let Some((_, found)) = activity.iter_mut().find(|(g, _)| *g == group) {
                        found.mentions.push((seq, user));
                    }
                }
                Ok(activity)
            }

            async fn notice_candidates(
                &self,
                groups: &[GroupId],
                now: Millis,
                idle_since: Millis,
            ) -> Result<Vec<(GroupId, NoticeCandidate)>, StoreError> {
                if groups.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(CANDIDATES);
                query
                    .push_bind(now)
                    .push(" AND se.last_used_at > ")
                    .push_bind(idle_since)
                    .push(CANDIDATES_WHERE)
                    .push_bind(now)
                    .push(") AND m.group_id IN (");
                let mut ids = query.separated(", ");
                for group in groups {
                    ids.push_bind(*group);
                }
                query.push(") ORDER BY m.group_id, m.user_id, ps.id");
                type Row = (
                    GroupId,
                    UserId,
                    Option<i32>,
                    Option<i32>,
                    i64,
                    Option<Millis>,
                    Option<Millis>,
                );
                let rows: Vec<Row> = query.build_query_as().fetch_all(&self.pool).await?;
                let mut candidates: Vec<(GroupId, NoticeCandidate)> = Vec::new();
                for (group, user, start, end, subscription, last_post, last_mention) in rows {
                    match candidates.last_mut() {
                        Some((g, last)) if *g == group && last.user == user => {
                            last.subscriptions.push(subscription)
                        }
                        _ => candidates.push((
                            group,
                            NoticeCandidate {
                                user,
                                quiet: quiet(start, end),
                                subscriptions: vec![subscription],
                                last_post_notice: last_post,
                                last_mention_notice: last_mention,
                            },
                        )),
                    }
                }
                Ok(candidates)
            }

            async fn commit_notices(
                &self,
                moves: &[(GroupId, Seq, Seq)],
                notices: &[NewNotice],
                at: Millis,
            ) -> Result<Vec<GroupId>, StoreError> {
                if moves.is_empty() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                // Groups created since the migration have no cursor yet: it starts at 0.
                let fresh: Vec<GroupId> = moves
                    .iter()
                    .filter(|(_, after, _)| *after == 0)
                    .map(|(group, _, _)| *group)
                    .collect();
                if !fresh.is_empty() {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO notice_cursors (group_id, seq) ",
                    );
                    insert.push_values(&fresh, |mut row, group| {
                        row.push_bind(*group).push_bind(0i64);
                    });
                    insert.push(" ON CONFLICT (group_id) DO NOTHING");
                    insert.build().execute(&mut *tx).await?;
                }
                // The conditional move is the claim: on PostgreSQL a second node waits for
                // the first one's row locks and then finds the cursors moved.
                let mut update = sqlx::QueryBuilder::<$db>::new("WITH r(g, a, u) AS (");
                update.push_values(moves, |mut row, (group, after, upto)| {
                    row.push_bind(*group).push_bind(*after).push_bind(*upto);
                });
                // `FROM r`: the planner walks the list and seeks each cursor by its key
                // (a correlated subquery would scan the list once per cursor, under the
                // write lock).
                update.push(
                    ") UPDATE notice_cursors SET seq = r.u FROM r \
                     WHERE notice_cursors.group_id = r.g AND notice_cursors.seq = r.a \
                     RETURNING notice_cursors.group_id",
                );
                let moved: Vec<(GroupId,)> = update.build_query_as().fetch_all(&mut *tx).await?;
                let moved: Vec<GroupId> = moved.into_iter().map(|(group,)| group).collect();
                for notice in notices {
                    if notice.group.is_some_and(|group| moved.contains(&group)) {
                        Self::insert_notice(&mut tx, notice, at).await?;
                    }
                }
                tx.commit().await?;
                Ok(moved)
            }

            async fn create_notice(
                &self,
                notice: &NewNotice,
                at: Millis,
            ) -> Result<i64, StoreError> {
                let mut tx = self.begin_write().await?;
                let id = Self::insert_notice(&mut tx, notice, at).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn claim_pushes(
                &self,
                now: Millis,
                idle_since: Millis,
                lease_until: Millis,
                limit: u32,
            ) -> Result<Vec<ClaimedPush>, StoreError> {
                let mut tx = self.begin_write().await?;
                let claimed =
                    Self::claim_due(&mut tx, Queue::Pushes, now, lease_until, limit).await?;
                if claimed.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT d.id, d.attempts, n.id, n.kind, n.group_id, ps.id, ps.endpoint, \
                     ps.p256dh, ps.auth, se.expires_at > ",
                );
                query
                    .push_bind(now)
                    .push(" AND se.last_used_at > ")
                    .push_bind(idle_since)
                    .push(
                        " FROM push_deliveries d JOIN notices n ON n.id = d.notice_id \
                         JOIN push_subscriptions ps ON ps.id = d.subscription_id \
                         JOIN sessions se ON se.token_hash = ps.session_hash \
                         WHERE d.id IN (",
                    );
                let mut ids = query.separated(", ");
                for id in &claimed {
                    ids.push_bind(*id);
                }
                query.push(") ORDER BY d.id");
                type Row = (
                    i64, i32, i64, String, Option<GroupId>, i64, String, Vec<u8>, Vec<u8>, bool,
                );
                let rows: Vec<Row> = query.build_query_as().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows.into_iter()
                    .map(
                        |(id, attempts, notice, kind, group, subscription, endpoint, p256dh, auth, live)| {
                            Ok(ClaimedPush {
                                id,
                                attempts,
                                notice,
                                kind: parse_kind(&kind)?,
                                group,
                                subscription,
                                endpoint,
                                p256dh,
                                auth,
                                session_live: live,
                            })
                        },
                    )
                    .collect()
            }

            async fn finish_pushes(
                &self,
                done: &[(ClaimedPush, PushOutcome)],
                at: Millis,
            ) -> Result<(), StoreError> {
                // One transaction for the batch: on SQLite one synchronous commit, not one
                // per push behind the sequencer's.
                let mut tx = self.begin_write().await?;
                for (claimed, outcome) in done {
                    match outcome {
                        PushOutcome::Sent => {
                            sqlx::query(
                                "UPDATE push_deliveries SET outcome = 'sent', sent_at = $2, \
                                 claimed_until = NULL, detail = NULL WHERE id = $1",
                            )
                            .bind(claimed.id)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                            sqlx::query(
                                "UPDATE push_subscriptions SET last_ok_at = $2 WHERE id = $1",
                            )
                            .bind(claimed.subscription)
                            .bind(at)
                            .execute(&mut *tx)
                            .await?;
                        }
                        PushOutcome::Retry { at: due, detail } => {
                            sqlx::query(
                                "UPDATE push_deliveries SET due_at = $2, claimed_until = NULL, \
                                 detail = $3 WHERE id = $1",
                            )
                            .bind(claimed.id)
                            .bind(due)
                            .bind(detail)
                            .execute(&mut *tx)
                            .await?;
                        }
                        PushOutcome::GaveUp { detail } => {
                            sqlx::query(
                                "UPDATE push_deliveries SET outcome = 'gave_up', \
                                 claimed_until = NULL, detail = $2 WHERE id = $1",
                            )
                            .bind(claimed.id)
                            .bind(detail)
                            .execute(&mut *tx)
                            .await?;
                        }
                        PushOutcome::Gone => {
                            sqlx::query("DELETE FROM push_subscriptions WHERE id = $1")
                                .bind(claimed.subscription)
                                .execute(&mut *tx)
                                .await?;
                        }
                    }
                }
                tx.commit().await?;
                Ok(())
            }

            async fn notices_since(&self, since: Millis) -> Result<Vec<NoticeRecord>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, group_id, kind, seq, created_at FROM notices \
                     WHERE created_at >= $1 ORDER BY id",
                )
                .bind(since)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn push_deliveries(&self) -> Result<Vec<DeliveryState>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT d.id, n.user_id, n.kind, d.subscription_id, d.due_at, d.attempts, \
                     d.outcome, d.detail FROM push_deliveries d \
                     JOIN notices n ON n.id = d.notice_id ORDER BY d.id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn create_mail(
                &self,
                user: UserId,
                kind: MailKind,
                count: Option<i64>,
                at: Millis,
            ) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO mails (user_id, kind, count, created_at, due_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(user)
                .bind(kind.name())
                .bind(count)
                .bind(at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn queue_digests(&self, rule: DigestRule) -> Result<u32, StoreError> {
                let mut tx = self.begin_write().await?;
                let due: Vec<(UserId, i64)> = sqlx::query_as(DIGEST_DUE)
                    .bind(rule.older_than)
                    .bind(rule.interval_since)
                    .bind(rule.minute_of_day)
                    .fetch_all(&mut *tx)
                    .await?;
                for (user, count) in &due {
                    sqlx::query(
                        "INSERT INTO mails (user_id, kind, count, created_at, due_at) \
                         VALUES ($1, 'digest', $2, $3, $3)",
                    )
                    .bind(user)
                    .bind(count)
                    .bind(rule.now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO notification_settings (user_id, last_digest_at) \
                         VALUES ($1, $2) ON CONFLICT (user_id) DO UPDATE \
                         SET last_digest_at = excluded.last_digest_at",
                    )
                    .bind(user)
                    .bind(rule.now)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(u32::try_from(due.len()).unwrap_or(u32::MAX))
            }

            async fn mails(&self) -> Result<Vec<MailState>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, user_id, kind, due_at, attempts, outcome, detail \
                     FROM mails ORDER BY id",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn claim_mails(
                &self,
                now: Millis,
                lease_until: Millis,
                limit: u32,
            ) -> Result<Vec<ClaimedMail>, StoreError> {
                let mut tx = self.begin_write().await?;
                let claimed =
                    Self::claim_due(&mut tx, Queue::Mails, now, lease_until, limit).await?;
                if claimed.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<$db>::new(
                    "SELECT m.id, m.attempts, m.user_id, m.kind, m.count, u.login \
                     FROM mails m JOIN users u ON u.id = m.user_id WHERE m.id IN (",
                );
                let mut ids = query.separated(", ");
                for id in &claimed {
                    ids.push_bind(*id);
                }
                query.push(") ORDER BY m.id");
                let rows: Vec<(i64, i32, UserId, String, Option<i64>, String)> =
                    query.build_query_as().fetch_all(&mut *tx).await?;
                tx.commit().await?;
                rows.into_iter()
                    .map(|(id, attempts, user, kind, count, address)| {
                        Ok(ClaimedMail {
                            id,
                            attempts,
                            user,
                            kind: MailKind::parse(&kind)?,
                            count,
                            address,
                        })
                    })
                    .collect()
            }

            async fn finish_mail(
                &self,
                claimed: &ClaimedMail,
                outcome: &MailOutcome,
                at: Millis,
            ) -> Result<(), StoreError> {
                let mut tx = self.begin_write().await?;
                let (state, due, detail) = match outcome {
                    MailOutcome::Sent => (Some("sent"), None, None),
                    MailOutcome::Retry { at: due, detail } => (None, Some(*due), Some(detail)),
                    MailOutcome::Refused { detail } => (Some("refused"), None, Some(detail)),
                    MailOutcome::GaveUp { detail } => (Some("gave_up"), None, Some(detail)),
                };
                sqlx::query(
                    "UPDATE mails SET outcome = $2, due_at = COALESCE($3, due_at), \
                     claimed_until = NULL, detail = $4, \
                     sent_at = CASE WHEN $2 = 'sent' THEN $5 ELSE sent_at END WHERE id = $1",
                )
                .bind(claimed.id)
                .bind(state)
                .bind(due)
                .bind(detail)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                // A refusal marks the address for the admins; a delivery clears the mark.
                let bounce: Option<(Option<Millis>, Option<&String>)> = match outcome {
                    MailOutcome::Refused { detail } => Some((Some(at), Some(detail))),
                    MailOutcome::Sent => Some((None, None)),
                    _ => None,
                };
                if let Some((bounced_at, detail)) = bounce {
                    sqlx::query(
                        "INSERT INTO notification_settings (user_id, bounced_at, bounce_detail) \
                         VALUES ($1, $2, $3) ON CONFLICT (user_id) DO UPDATE \
                         SET bounced_at = excluded.bounced_at, \
                         bounce_detail = excluded.bounce_detail",
                    )
                    .bind(claimed.user)
                    .bind(bounced_at)
                    .bind(detail)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }

        impl $store {
            /// Takes up to `limit` due rows of a queue until `lease_until` inside `tx`: rows
            /// not done, due, and not held by a node (or held past their lease). Their ids.
            async fn claim_due(
                tx: &mut sqlx::Transaction<'static, $db>,
                queue: Queue,
                now: Millis,
                lease_until: Millis,
                limit: u32,
            ) -> Result<Vec<i64>, StoreError> {
                let table = queue.table();
                let sql = format!(
                    "UPDATE {table} SET claimed_until = $2, attempts = attempts + 1 \
                     WHERE id IN (SELECT id FROM {table} WHERE outcome IS NULL \
                     AND due_at <= $1 AND (claimed_until IS NULL OR claimed_until <= $1) \
                     ORDER BY due_at LIMIT $3{}) RETURNING id",
                    $skip_locked
                );
                let claimed: Vec<(i64,)> = sqlx::query_as(&sql)
                    .bind(now)
                    .bind(lease_until)
                    .bind(i64::from(limit))
                    .fetch_all(&mut **tx)
                    .await?;
                Ok(claimed.into_iter().map(|(id,)| id).collect())
            }

            /// Writes one notice and its deliveries inside `tx`; the notice's id.
            async fn insert_notice(
                tx: &mut sqlx::Transaction<'static, $db>,
                notice: &NewNotice,
                at: Millis,
            ) -> Result<i64, StoreError> {
                let (id,): (i64,) = sqlx::query_as(
                    "INSERT INTO notices (user_id, group_id, kind, seq, created_at) \
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(notice.user)
                .bind(notice.group)
                .bind(kind_name(notice.kind))
                .bind(notice.seq)
                .bind(at)
                .fetch_one(&mut **tx)
                .await?;
                if !notice.subscriptions.is_empty() {
                    let mut insert = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO push_deliveries (notice_id, subscription_id, due_at) ",
                    );
                    insert.push_values(&notice.subscriptions, |mut row, subscription| {
                        row.push_bind(id).push_bind(*subscription).push_bind(at);
                    });
                    insert.build().execute(&mut **tx).await?;
                }
                Ok(id)
            }
        }
    };
}

notice_store!(super::SqliteStore, sqlx::Sqlite, "", RANGES_SQLITE);
notice_store!(
    super::PgStore,
    sqlx::Postgres,
    " FOR UPDATE SKIP LOCKED",
    RANGES_POSTGRES
);

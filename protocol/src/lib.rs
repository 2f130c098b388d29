//! The Renkei wire protocol: every message that crosses the WebSocket or the REST API.
//!
//! This crate knows nothing of tokio, axum or sqlx. It is shared by the server, the load
//! tester and the documentation; `docs/protocol.md` describes each message with an example
//! and `schema/renkei-protocol.schema.json` is generated from these types.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub mod api;

pub use api::AccountStatus;

/// The protocol version announced in [`Welcome`]. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// How many cursors a `sync` may name beyond the user's number of groups (a group joined
/// or left while the frame was on its way); more is refused with
/// [`ErrorCode::TooManyCursors`].
pub const SYNC_CURSOR_MARGIN: usize = 16;

/// A group's id (a patient group or a free group).
pub type GroupId = i64;
/// A user's id.
pub type UserId = i64;
/// A position in a group's sequence: consecutive integers from 1, no gaps.
pub type Seq = i64;
/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Everything a client may send over the WebSocket, as one JSON text frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Post a text into a group. Answered by [`ServerMessage::Ack`] once committed, or by
    /// [`ServerMessage::Error`] carrying the same `client_id`.
    Post {
        group: GroupId,
        /// Chosen by the client, unique per author: 1 to 64 printable ASCII characters.
        /// A retry with the same id is stored once and answered with the original ack.
        client_id: String,
        /// The text; with a file, its caption (the file's name if nothing else).
        text: String,
        /// A file uploaded into this group by this user (`POST /api/v1/groups/{id}/files`)
        /// and not attached to a post yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<i64>,
    },
    /// Catch up: for each group, every event after `after`, in order, then
    /// [`ServerMessage::Synced`]. Live events of that group wait until the catch-up is done.
    /// At most as many cursors as the user has groups, plus a margin of
    /// [`SYNC_CURSOR_MARGIN`]; beyond, the whole frame is refused with
    /// [`ErrorCode::TooManyCursors`].
    Sync { groups: Vec<SyncCursor> },
    /// Page backwards through a group's history: up to `limit` events before `before`
    /// (or the newest ones when `before` is absent), answered by [`ServerMessage::Page`].
    History {
        group: GroupId,
        #[serde(default)]
        before: Option<Seq>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// The user has read the group up to `seq` (the client shows it on screen). Kept as
    /// the member's read position (既読): when it moves forward, the user's sockets get
    /// [`ServerMessage::ReadPosition`] and the group's members a
    /// [`ServerMessage::Receipt`]. Answered only when wrong.
    Read { group: GroupId, seq: Seq },
    /// Whether the page of this socket is visible to its user now (sent after connecting
    /// and on every change). A user with a visible page gets no push; a socket that never
    /// says so counts as visible. Never answered.
    Visibility { visible: bool },
    /// A heartbeat: answered at once by [`ServerMessage::Pong`] with the same `n`, without
    /// touching the database. Browsers cannot send WebSocket ping frames, so this is how a
    /// client finds a connection that went silent (packets dropped, no reset): no frame at
    /// all within its deadline after a ping, and it gives the socket up and reconnects.
    /// Counts against the socket's frame budget like any frame.
    Ping { n: u64 },
}

/// The last sequence number a client holds for a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncCursor {
    pub group: GroupId,
    /// The last sequence number the client holds; 0 when it holds nothing.
    pub after: Seq,
}

/// Everything the server sends over the WebSocket, as one JSON text frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// The first message on every connection.
    Welcome(Welcome),
    /// One event of a group's sequence, live or during a catch-up.
    Event(GroupEvent),
    /// A post was committed. Sent only to the socket that posted it.
    Ack(Ack),
    /// A catch-up of one group is complete: live events follow.
    Synced { group: GroupId, seq: Seq },
    /// A page of history, newest last.
    Page {
        group: GroupId,
        events: Vec<GroupEvent>,
        /// True when older events exist before the first one in `events`.
        has_more: bool,
    },
    /// A request could not be carried out. The connection stays open.
    Error(ErrorBody),
    /// Notice: the user became a member of a group (an invitation completed, or they
    /// created it). Send `sync` for it to read its history.
    GroupJoined { group: GroupSummary },
    /// Notice: the user is no longer a member of a group (left or removed); nothing more
    /// of it arrives.
    GroupLeft { group: GroupId },
    /// Notice: an invitation concerning the user was created or changed (to the invitee,
    /// and to the admins of the invitee's facility who approve it).
    Invitation(api::InvitationView),
    /// Notice: the user's own account changed (role, restriction).
    Account {
        user: UserProfile,
        status: AccountStatus,
    },
    /// Notice, to every socket of the reader: they have read `group` up to `seq` (on this
    /// device or another), which leaves `unread` posts by others unread up to `last_seq`;
    /// posts after `last_seq` are the client's to count.
    ReadPosition {
        group: GroupId,
        seq: Seq,
        unread: u32,
        last_seq: Seq,
    },
    /// Notice, to every member of `group`: `user` has read it up to `seq` (既読). Posts up
    /// to `seq` count them among their readers.
    Receipt(Receipt),
    /// Notice: a post in one of the user's groups names them (`@name`).
    Mention(api::MentionView),
    /// Notice, to the admins of the account's facility (the operator for a facility's
    /// last admin and for operators): repeated wrong passwords locked an account until
    /// `until`. A password reset by an admin lifts the lock.
    AccountLocked { user: UserProfile, until: Millis },
    /// The answer to [`ClientMessage::Ping`], with its `n`.
    Pong { n: u64 },
    /// Notice, to the operators: a facility applied (様式1); its application waits in the
    /// operator's list (`GET /api/v1/facilities/applications`).
    FacilityApplied { facility: i64 },
}

/// What a client needs to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Welcome {
    pub protocol_version: u32,
    pub user: UserProfile,
    /// Every group the user is a member of, with its latest sequence number.
    pub groups: Vec<GroupSummary>,
    pub limits: Limits,
}

/// A user as other users see them: the sender and their facility are always shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserProfile {
    pub id: UserId,
    pub name: String,
    /// 職種: the user's profession (nurse, doctor, pharmacist, care manager, ...).
    pub profession: String,
    pub facility: Option<FacilityRef>,
    pub role: Role,
}

/// A facility (事業所) as shown next to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FacilityRef {
    pub id: i64,
    pub name: String,
}

/// A user's role in the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 市: the city operator.
    Operator,
    /// MCS管理者: a facility admin.
    Admin,
    /// MCSユーザー: a staff user.
    #[default]
    Staff,
}

/// A group as listed for a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupSummary {
    pub id: GroupId,
    pub kind: GroupKind,
    pub name: String,
    /// The patient (患者・利用者) of a patient group; absent for free groups.
    pub patient_name: Option<String>,
    pub archived: bool,
    /// A patient group without its consent record (様式3): nobody can post yet.
    pub needs_consent: bool,
    /// The admins' room (MCS管理者の部屋), which every facility admin is in.
    pub admins_room: bool,
    /// The group's latest sequence number (0 when the group has no events yet).
    pub last_seq: Seq,
    /// How far the user has read the group (既読), on any of their devices.
    #[serde(default)]
    pub read_seq: Seq,
    /// Posts by others after `read_seq` up to `last_seq`, not deleted: the unread count.
    /// The client counts the posts by others that arrive after `last_seq`.
    #[serde(default)]
    pub unread: u32,
    /// Of those, the posts that mention the user (`@name`): the 自分宛て count of
    /// mentions received while they were away. Later ones arrive as `mention` notices.
    #[serde(default)]
    pub unread_mentions: u32,
}

/// The two kinds of group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum GroupKind {
    /// 患者・利用者グループ: exactly one patient.
    Patient,
    /// 自由グループ: exchange among members, or the admins' room.
    Free,
}

/// Limits the server enforces, so that clients can check before sending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Limits {
    /// Largest WebSocket frame (and message) the server reads, in bytes.
    pub max_frame_bytes: u32,
    /// Longest post, in Unicode scalar values.
    pub max_post_chars: u32,
    /// Sustained posts per second per user (bursts up to `post_burst`).
    pub posts_per_second: u32,
    pub post_burst: u32,
    /// Largest page a `history` request returns.
    pub max_page: u32,
}

/// One event in a group's sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupEvent {
    pub group: GroupId,
    pub seq: Seq,
    /// When it was committed.
    pub at: Millis,
    pub data: EventData,
}

/// What happened at one position of a group's sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventData {
    /// A post.
    Post {
        author: UserProfile,
        client_id: String,
        text: String,
        /// The file attached to it, if any (`GET /api/v1/files/{id}`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        file: Option<FileRef>,
    },
    /// A member joined; `by` invited them (absent when they created the group).
    MemberJoined {
        member: UserProfile,
        by: Option<UserProfile>,
    },
    /// A member left on their own.
    MemberLeft { member: UserProfile },
    /// A member was removed (解除) by an admin.
    MemberRemoved {
        member: UserProfile,
        by: UserProfile,
    },
    /// The group was renamed.
    GroupRenamed { name: String, by: UserProfile },
    /// The patient's consent (様式3) was put on file: posting is open.
    ConsentRecorded { by: UserProfile },
    /// What remains of a deleted post at its place: who wrote it, who deleted it, when.
    /// The text is gone from the system.
    DeletedPost {
        author: UserProfile,
        deleted_by: UserProfile,
        deleted_at: Millis,
    },
    /// The post at `seq` was deleted by `by`: show its place as deleted.
    PostDeleted { seq: Seq, by: UserProfile },
    /// The group moved to the archive (保管庫): readable, no posts. `by` is absent when the
    /// archive process moved it for inactivity.
    GroupArchived { by: Option<UserProfile> },
    /// The archive process will move this inactive patient group to the archive at
    /// `archive_after`, unless someone posts before.
    ArchiveNotice { archive_after: Millis },
    /// The group came back from the archive.
    GroupRestored { by: UserProfile },
    /// 確認しました: `by` confirmed the post at `seq` (they read it and acted on it).
    PostConfirmed { seq: Seq, by: UserProfile },
}

/// A file attached to a post (an image, a PDF…), as members see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FileRef {
    pub id: i64,
    /// The name it was uploaded with.
    pub name: String,
    /// The type recognised from its content (never from its name).
    pub media_type: String,
    /// Bytes.
    pub size: i64,
    /// An image has a small JPEG preview at `GET /api/v1/files/{id}/thumbnail`.
    pub thumbnail: bool,
}

/// A member's read position in a group (既読).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Receipt {
    pub group: GroupId,
    pub user: UserId,
    pub seq: Seq,
    pub at: Millis,
}

/// The acknowledgement of a committed post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Ack {
    pub client_id: String,
    pub group: GroupId,
    pub seq: Seq,
    pub at: Millis,
}

/// An error, on the WebSocket and (inside [`ApiError`]) on the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// A human-readable explanation in English; never contains internal details.
    pub message: String,
    /// The `client_id` of the post this error answers, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The group the failed request named, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// With `weak_password`: every rule the password does not meet, for the client to
    /// show next to the field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<api::PasswordRule>,
}

/// The body of every REST error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApiError {
    pub error: ErrorBody,
}

/// Every error code, on the WebSocket and the REST API. `retryable` says whether the same
/// request may succeed later unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not JSON, or a field is missing or of the wrong type.
    InvalidMessage,
    /// The frame is JSON with a `type` the server does not know.
    UnknownType,
    /// A sequence number is negative.
    InvalidSequence,
    /// A `client_id` is empty, longer than 64 characters or not printable ASCII.
    InvalidClientId,
    /// The post's text is empty or only white space.
    EmptyPost,
    /// The post's text is longer than `limits.max_post_chars`.
    PostTooLong,
    /// A `sync` names more groups than the user has, beyond a small margin (a client
    /// names each of its groups once): nothing of it was done.
    TooManyCursors,
    /// The group does not exist or the user is not a member of it (deliberately one code,
    /// so that group ids cannot be probed).
    NotMember,
    /// The group is archived (保管庫) and takes no posts.
    GroupArchived,
    /// The patient group has no consent record (様式3) yet: nobody can post.
    ConsentRequired,
    /// The account is restricted to reading (別紙(2)).
    AccountRestricted,
    /// The `client_id` was used before by this user for a different post.
    ClientIdConflict,
    /// Too many posts or frames: slow down. Retryable.
    RateLimited,
    /// The server cannot reach its database: nothing was stored. Retryable.
    Unavailable,
    /// The server is shutting down: reconnect (possibly to another node) and retry.
    ShuttingDown,
    /// An unexpected server error: nothing was stored. Retryable.
    Internal,
    /// REST: the request body is not valid.
    BadRequest,
    /// REST: wrong login or password.
    InvalidCredentials,
    /// REST / WebSocket upgrade: no valid session.
    Unauthorized,
    /// REST / WebSocket upgrade: the request came from a foreign origin, or the caller's
    /// role and relationship do not allow the action (the message says why).
    Forbidden,
    /// REST: the resource is not in a state that allows this (already decided, already a
    /// member, invitation closed, e-mail address taken…).
    Conflict,
    /// REST: the facility's last active admin cannot lose the role or the account.
    LastAdmin,
    /// REST: the password does not meet the rules (art. 13(2)).
    WeakPassword,
    /// REST: the upload is larger than allowed.
    TooLarge,
    /// REST: the upload's type is not accepted.
    UnsupportedMediaType,
    /// REST: no such resource.
    NotFound,
    /// Too many connections for this user. Close one first.
    TooManyConnections,
    /// The server sheds load (for example password checks). Retry after a second.
    Overloaded,
    /// REST / WebSocket upgrade: the password has expired (policy `rotated`) or was set by
    /// an admin's reset; this session may only change it (`PUT /api/v1/session/password`).
    PasswordChangeRequired,
    /// REST: the password was right; send the second factor too (`code`).
    SecondFactorRequired,
    /// REST / WebSocket upgrade: the account's role requires a second factor that is not
    /// set up yet; this session may only set it up (`/api/v1/session/two-factor`).
    SecondFactorEnrollmentRequired,
    /// REST: a push subscription is malformed (endpoint, keys).
    InvalidPushSubscription,
    /// REST: the push subscription's endpoint is not `https` on a push service of the
    /// server's allowlist (`RENKEI_PUSH_HOSTS`).
    PushHostNotAllowed,
    /// REST: quiet hours are not two different `HH:MM` times.
    InvalidQuietHours,
}

impl ErrorCode {
    /// Whether the same request may succeed later, unchanged.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited
                | ErrorCode::Unavailable
                | ErrorCode::ShuttingDown
                | ErrorCode::Internal
                | ErrorCode::Overloaded
                | ErrorCode::TooManyConnections
        )
    }
}

/// WebSocket close codes the server uses, besides the standard ones it may also send:
/// 1001 (shutting down), 1003 (binary frame: the protocol is text-only), 1007 (invalid
/// UTF-8), 1008 (WebSocket protocol violation) and 1009 (frame larger than
/// `limits.max_frame_bytes`).
pub mod close {
    /// The server is shutting down: reconnect (to any node) and catch up.
    pub const GOING_AWAY: u16 = 1001;
    /// A binary frame was received; the protocol is JSON text only.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The client broke the protocol beyond what an error message can answer.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A frame was larger than `limits.max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client did not read fast enough and its outgoing queue overflowed:
    /// reconnect and catch up with `sync`.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// The session ended (logout): log in again before reconnecting.
    pub const SESSION_ENDED: u16 = 4001;
    /// The account can no longer be used (deactivated, banned, facility suspended or
    /// withdrawn): do not reconnect.
    pub const ACCOUNT_ENDED: u16 = 4002;
}

/// `POST /api/v1/session`: log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    pub password: String,
    /// The second factor, for an account that has one: the 6 digits of the authenticator
    /// app, or one of the recovery codes. Asked for by `second_factor_required`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// The answer to a successful login. The same token is also set as an HttpOnly cookie.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LoginResponse {
    /// Send as `Authorization: Bearer <token>`; never put it in a URL.
    pub token: String,
    /// When the session ends at the latest (its absolute lifetime); it ends earlier after
    /// the configured idle time without use.
    pub expires_at: Millis,
    pub user: UserProfile,
    /// The password has expired: this session may only change it.
    #[serde(default)]
    pub password_change_required: bool,
    /// A second factor is required for this account and not set up yet: this session may
    /// only set it up (`/api/v1/session/two-factor`).
    #[serde(default)]
    pub second_factor_enrollment_required: bool,
}

/// `GET /api/v1/session`: who the current session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionInfo {
    pub user: UserProfile,
    /// The login of this session's user (shown only to that user).
    pub login: String,
    pub status: AccountStatus,
    /// After this many seconds without input, clients lock the screen and end the session
    /// (art. 14(1)).
    pub idle_lock_seconds: u32,
    /// The password has expired: this session may only change it.
    #[serde(default)]
    pub password_change_required: bool,
    /// A required second factor is not set up yet: this session may only set it up.
    #[serde(default)]
    pub second_factor_enrollment_required: bool,
}

/// The whole protocol as one JSON Schema document, for clients in other languages.
pub fn json_schema() -> serde_json::Value {
    #[derive(JsonSchema)]
    #[allow(dead_code)]
    struct RenkeiProtocol {
        client_message: ClientMessage,
        server_message: ServerMessage,
        api_error: ApiError,
        login_request: LoginRequest,
        login_response: LoginResponse,
        session_info: SessionInfo,
    }
    let schema = schemars::schema_for!(RenkeiProtocol);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn post_round_trips_in_the_documented_shape() {
        let json = r#"{"type":"post","group":3,"client_id":"c-1","text":"血圧 128/80"}"#;
        let parsed: ClientMessage = serde_json::from_str(json).expect("valid post");
        assert_eq!(
            parsed,
            ClientMessage::Post {
                group: 3,
                client_id: "c-1".into(),
                text: "血圧 128/80".into(),
                file: None,
            }
        );
        assert_eq!(serde_json::to_string(&parsed).expect("serializes"), json);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json = r#"{"type":"post","group":3,"client_id":"c","text":"x","extra":1}"#;
        assert!(serde_json::from_str::<ClientMessage>(json).is_err());
    }

    #[test]
    fn event_serializes_with_kind_tag() {
        let event = ServerMessage::Event(GroupEvent {
            group: 1,
            seq: 2,
            at: 3,
            data: EventData::Post {
                author: UserProfile {
                    id: 4,
                    name: "佐藤".into(),
                    profession: "nurse".into(),
                    facility: None,
                    role: Role::Staff,
                },
                client_id: "c".into(),
                text: "t".into(),
                file: None,
            },
        });
        let value = serde_json::to_value(&event).expect("serializes");
        assert_eq!(value["type"], "event");
        assert_eq!(value["data"]["kind"], "post");
        assert_eq!(value["data"]["author"]["role"], "staff");
    }

    #[test]
    fn ping_and_pong_carry_their_number() {
        let ping: ClientMessage =
            serde_json::from_str(r#"{"type":"ping","n":7}"#).expect("valid ping");
        assert_eq!(ping, ClientMessage::Ping { n: 7 });
        let pong = serde_json::to_string(&ServerMessage::Pong { n: 7 }).expect("serializes");
        assert_eq!(pong, r#"{"type":"pong","n":7}"#);
    }

    #[test]
    fn retryable_codes() {
        assert!(ErrorCode::Unavailable.retryable());
        assert!(!ErrorCode::NotMember.retryable());
    }
}

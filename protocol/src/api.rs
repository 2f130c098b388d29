//! The REST API's request and response bodies for facilities, accounts, groups and
//! invitations (the city's operating rules). Dates on forms are calendar dates,
//! `YYYY-MM-DD`; instants are [`Millis`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{FacilityRef, GroupId, GroupSummary, Millis, Role, UserId, UserProfile};

/// What kind of facility (事業所) applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FacilityKind {
    /// 病院
    Hospital,
    /// 診療所
    Clinic,
    /// 歯科診療所
    DentalClinic,
    /// 薬局
    Pharmacy,
    /// 訪問看護ステーション
    VisitingNurseStation,
    /// 居宅介護支援事業所
    CareManagementOffice,
    /// 訪問介護事業所
    HomeHelpOffice,
    /// 通所介護 (デイサービス)
    DayService,
    Other,
}

/// Where a facility stands with the city.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FacilityStatus {
    /// Applied (様式1); waiting for the operator.
    Applied,
    /// Participating: its users may use the network.
    Approved,
    /// The application was turned down.
    Rejected,
    /// Temporarily out: its users cannot log in; their memberships stay.
    Suspended,
    /// Left the network: its users were deactivated.
    Withdrawn,
}

/// Where an account stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Active,
    /// Read-only: may read their groups, may not post (別紙(2)).
    Restricted,
    /// May not log in; every session ended.
    Banned,
    /// Left their facility (art. 13(7)): removed from every group, may not log in.
    Deactivated,
}

/// A person on a facility application, to become its admin (MCS管理者).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplicantAdmin {
    pub name: String,
    #[serde(default)]
    pub kana: String,
    /// Also their login; unique across the network.
    pub email: String,
    pub profession: String,
}

/// One line of the staff roster (職員名簿) of 様式1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    pub name: String,
    pub profession: String,
    /// The staff member's own e-mail address, for the invitation to register (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub email: String,
}

/// Who the city contacts about the application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
    pub phone: String,
}

/// `POST /api/v1/facilities/applications`: a facility applies (様式1). No login needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FacilityApplication {
    pub name: String,
    pub kind: FacilityKind,
    pub address: String,
    pub contact: Contact,
    /// At least one: they become the facility's admins on approval.
    pub admins: Vec<ApplicantAdmin>,
    #[serde(default)]
    pub roster: Vec<RosterEntry>,
    /// The applicant pledges that the facility will keep what it learns confidential and
    /// send its pledge (様式2) to the city, and that each staff member signs theirs (様式4)
    /// before using the network. Required to be true for a new application; applications
    /// stored before it existed read as false.
    #[serde(default)]
    pub pledged: bool,
}

/// A participating facility as the public list (公示, art. 3(2)) shows it: no personal data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PublicFacility {
    pub id: i64,
    pub name: String,
    pub kind: FacilityKind,
    pub address: String,
}

/// A facility as the operator (and its own admins) see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FacilityDetails {
    pub id: i64,
    pub name: String,
    pub kind: FacilityKind,
    pub address: String,
    pub status: FacilityStatus,
    /// The reason given with the last decision (rejection, suspension, withdrawal).
    pub status_reason: Option<String>,
    /// When the pledge (様式2) was received.
    pub pledge_received_on: Option<String>,
    pub applied_at: Millis,
    pub decided_at: Option<Millis>,
    /// The application as submitted.
    pub application: FacilityApplication,
}

/// `POST /api/v1/facilities/{id}/approve`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// When the pledge (様式2) was received, if it has been.
    #[serde(default)]
    pub pledge_received_on: Option<String>,
}

/// A reason, required for rejections, suspensions, withdrawals, restrictions and bans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    pub reason: String,
}

/// `PUT /api/v1/facilities/{id}/pledge` and `PUT /api/v1/users/{id}/pledge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Pledge {
    pub received_on: String,
}

/// A new account and the one-time code with which its owner sets a first password.
/// Hand the code to the person (printed or in person); it works once and expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountSetup {
    pub user: UserDetails,
    pub setup_code: String,
    pub expires_at: Millis,
}

/// The answer to an approval: the facility and its new admin accounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalResult {
    pub facility: FacilityDetails,
    pub admins: Vec<AccountSetup>,
}

/// `POST /api/v1/password-setup`: sets a first password with a one-time code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordSetup {
    pub code: String,
    pub password: String,
}

/// A rule of the password policy (art. 13(2), 13(6)) that a new password does not meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PasswordRule {
    /// Shorter than the policy's minimum length (`PasswordPolicy::min_length` characters).
    TooShort,
    /// Longer than 1024 bytes.
    TooLong,
    /// Does not mix letters, digits and symbols.
    NeedsLettersDigitsSymbols,
    /// Repeats one character four times in a row.
    Repetitive,
    /// Is, or is built on, one of the most common passwords.
    Common,
    /// Contains the login, the e-mail address or the name.
    Personal,
    /// Equals one of the account's last passwords.
    Reused,
    /// Closely resembles the current password (the same apart from digits, symbols and
    /// case, or a few characters changed).
    Similar,
}

/// `GET /api/v1/password-policy`: the rules a new password must meet, for clients to
/// check as the user types (the server checks them again, and the common-password list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PasswordPolicy {
    /// `long` (13+ characters), `rotated` (8+ characters, changed every `max_age_days`) or
    /// `mfa` (8+ characters with a second factor, 13+ without).
    pub policy: String,
    /// The fewest characters for an account without a second factor…
    pub min_length: u32,
    /// …and for one with a second factor.
    pub min_length_with_second_factor: u32,
    /// Days after which a password must be changed; absent when passwords do not expire.
    pub max_age_days: Option<u32>,
    /// How many of the last passwords a new one may not equal.
    pub history: u32,
}

/// `PUT /api/v1/session/password`: the logged-in user changes their password. Every other
/// session of the user ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current: String,
    pub new: String,
}

/// `GET /api/v1/session/two-factor`: the caller's second factor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorStatus {
    pub enabled: bool,
    /// Required for the caller's role: it cannot be turned off.
    pub required: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: u32,
}

/// `POST /api/v1/session/two-factor`: a new TOTP secret (RFC 6238: SHA-1, 6 digits,
/// 30 s) to put in an authenticator app; it takes effect once a code confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TwoFactorSetup {
    /// The secret in base32, for typing into the app.
    pub secret: String,
    /// The same as an `otpauth://totp/…` URI, for apps that read one.
    pub uri: String,
    /// `uri` as a QR code, an SVG document drawn by the server (black modules on white,
    /// with the quiet zone), for the app's camera.
    pub qr_svg: String,
}

/// `PUT /api/v1/session/two-factor`: a code from the app, confirming the new secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoFactorConfirm {
    pub code: String,
}

/// The answer to a confirmed second factor: one-time recovery codes, shown this once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecoveryCodes {
    pub codes: Vec<String>,
}

/// `DELETE /api/v1/session/two-factor`: turning the second factor off needs the password.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TwoFactorDisable {
    pub password: String,
}

/// `GET /api/v1/session/key`: the calling session's storage key. The web client encrypts
/// what it keeps in the browser across reloads (unsent posts, drafts) under it, so that
/// nothing of it can be read once the session has ended: the key ends with the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionKey {
    /// 32 random bytes (an AES-256 key), base64url without padding.
    pub key: String,
}

/// `GET /api/v1/sessions`: one of the caller's open sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SessionView {
    /// Names the session for `DELETE /api/v1/sessions/{id}`; not its token.
    pub id: String,
    pub created_at: Millis,
    pub last_used_at: Millis,
    /// When it ends unless used again (idle timeout) or at the latest (absolute lifetime).
    pub expires_at: Millis,
    /// The browser or app it was opened with (its User-Agent).
    pub device: String,
    /// The address it was opened from.
    pub source: String,
    /// The session of this request.
    pub current: bool,
}

/// `POST /api/v1/facilities/{id}/users`: an admin registers a staff member (art. 9).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStaff {
    /// Their own address, also their login: one account per person (art. 13(1)).
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub kana: String,
    pub profession: String,
    /// When their pledge (様式4) was received.
    #[serde(default)]
    pub pledge_received_on: Option<String>,
}

/// `PATCH /api/v1/users/{id}`: fields to change; absent fields stay.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileUpdate {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub kana: Option<String>,
    /// Only the user's facility admins and the operator change a profession.
    #[serde(default)]
    pub profession: Option<String>,
}

/// `PUT /api/v1/users/{id}/role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `admin` or `staff`.
    pub role: Role,
}

/// A user with everything their profile shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct UserDetails {
    pub id: UserId,
    pub name: String,
    pub kana: String,
    pub profession: String,
    pub role: Role,
    pub facility: Option<FacilityRef>,
    pub status: AccountStatus,
    /// Shown to the user's own facility admins and the operator only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pledge_received_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    /// `GET /api/v1/users/{id}/photo` returns it.
    pub has_photo: bool,
    /// How notifications reach them (shown to their own facility's admins and the
    /// operator, with `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<Reachability>,
}

/// How a user can be reached away from the page: the staff list flags who cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reachability {
    /// Push subscriptions of their live sessions.
    pub push: u32,
    /// E-mail notices are on, the server sends mail, and the address was not refused.
    pub email: bool,
    /// The mail server refused their address (the admins should correct it).
    pub bounced: bool,
}

/// The patient (患者・利用者) of a patient group: exactly one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Patient {
    pub name: String,
    #[serde(default)]
    pub kana: String,
    pub birth_date: String,
    #[serde(default)]
    pub notes: String,
}

/// `POST /api/v1/groups`: a patient group (with its patient) or a free group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewGroupRequest {
    Patient { patient: Patient },
    Free { name: String },
}

/// Who signed the consent (様式3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentSigner {
    Patient,
    Family,
    PatientAndFamily,
}

/// `PUT /api/v1/groups/{id}/consent`: the consent record (様式3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub signed_by: ConsentSigner,
    pub signed_on: String,
    /// When the copy was sent to the city.
    #[serde(default)]
    pub copy_sent_on: Option<String>,
}

/// `PATCH /api/v1/groups/{id}`: a new name (free groups) — a patient group is named after
/// its patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rename {
    pub name: String,
}

/// A group with what its members and owning admins may see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupDetails {
    pub summary: GroupSummary,
    /// The originating facility (連携元事業所).
    pub owner: Option<FacilityRef>,
    pub patient: Option<Patient>,
    pub consent: Option<Consent>,
    pub members: Vec<Member>,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Member {
    pub user: UserProfile,
    pub joined_at: Millis,
}

/// `POST /api/v1/groups/{id}/invitations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub user: UserId,
}

/// Where an invitation stands. `pending` until both the invitee accepted (招待の受理) and an
/// admin of the invitee's facility approved (招待承認); then `joined`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    Pending,
    Joined,
    /// The invitee declined.
    Declined,
    /// An admin of the invitee's facility refused approval.
    Refused,
    /// The inviter (or an admin of the owning facility) withdrew it.
    Cancelled,
    /// Not completed in time.
    Expired,
}

/// An invitation, with what the invitee needs to judge whether joining is appropriate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvitationView {
    pub id: i64,
    pub state: InvitationState,
    pub group: GroupId,
    pub group_name: String,
    /// The patient of a patient group.
    pub patient_name: Option<String>,
    /// The inviting (owning) facility.
    pub owner: Option<FacilityRef>,
    pub inviter: UserProfile,
    pub invitee: UserProfile,
    pub created_at: Millis,
    pub expires_at: Millis,
    pub accepted: bool,
    pub approved: bool,
}

/// `GET /api/v1/invitations`: the invitations that concern the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InvitationList {
    /// Invitations to the caller.
    pub received: Vec<InvitationView>,
    /// Invitations of the caller's staff waiting for an admin's approval (admins only).
    pub to_approve: Vec<InvitationView>,
    /// Invitations the caller sent.
    pub sent: Vec<InvitationView>,
}

/// `POST /api/v1/groups/{id}/members/remove`: bulk removal (解除) after a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RemoveMembers {
    pub users: Vec<UserId>,
}

/// What a bulk removal did, per user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RemovalResult {
    pub removed: Vec<UserId>,
    /// Users who were not members (or could not be removed), with why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    pub user: UserId,
    pub reason: String,
}

/// Why a member is flagged in a review (定期的に精査).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewFlag {
    /// Neither a post nor a read for the review's number of days.
    Inactive,
    Restricted,
    Banned,
    Deactivated,
    /// The member's facility is suspended or withdrawn.
    FacilitySuspended,
}

/// A member as a review shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewMember {
    pub user: UserDetails,
    pub joined_at: Millis,
    pub last_post_at: Option<Millis>,
    /// When the member last read the group (their client reported it), if ever.
    pub last_read_at: Option<Millis>,
    /// How far they have read (a sequence number; 0 when never).
    pub last_read_seq: crate::Seq,
    pub flags: Vec<ReviewFlag>,
}

/// One group of a review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReviewGroup {
    pub group: GroupSummary,
    /// When the archive process will move this inactive group to the archive, if it gave
    /// notice (a post before then withdraws it).
    pub archive_after: Option<Millis>,
    pub members: Vec<ReviewMember>,
}

/// `GET /api/v1/facilities/{id}/review?inactive_days=N`: every group the facility owns,
/// with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    pub inactive_days: u32,
    pub groups: Vec<ReviewGroup>,
}

/// `POST /api/v1/groups/{id}/posts/{seq}/delete`: a moderator states why; an author
/// deleting their own post need not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePost {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /api/v1/groups/{id}/history?before=&limit=`: a page of a group's events, oldest
/// first (the archive view, and history for members).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HistoryPage {
    pub group: GroupId,
    pub events: Vec<crate::GroupEvent>,
    /// True when older events exist before the first one.
    pub has_more: bool,
}

/// `POST /api/v1/groups/{id}/posts/{seq}/report`: a member reports a post to the admins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    pub reason: String,
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportState {
    Open,
    /// An admin looked and left the post.
    Dismissed,
    /// The post was deleted.
    Deleted,
}

/// A report, as the admins' queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportView {
    pub id: i64,
    pub state: ReportState,
    pub group: GroupId,
    pub group_name: String,
    pub seq: crate::Seq,
    pub author: UserProfile,
    /// The post's text; absent once it was deleted.
    pub text: Option<String>,
    pub reporter: UserProfile,
    pub reason: String,
    pub created_at: Millis,
    pub handled_by: Option<UserId>,
    pub handled_at: Option<Millis>,
}

/// A post in the moderators' monitoring view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MonitoredPost {
    pub group: GroupId,
    pub group_name: String,
    pub seq: crate::Seq,
    pub at: Millis,
    pub author: UserProfile,
    pub text: String,
}

/// One record of the audit trail (監査証跡): who did what, to which group, from where,
/// with what result. Never content, passwords or tokens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditRecord {
    /// Consecutive from 1 across the network.
    pub id: i64,
    pub at: Millis,
    /// Who acted (`null`: an unknown login, or the system).
    pub actor: Option<UserId>,
    /// The actor's facility.
    pub facility: Option<i64>,
    /// The endpoint (`POST /api/v1/groups/{id}/archive`) or WebSocket message (`ws sync`).
    pub action: String,
    pub group: Option<GroupId>,
    /// The ids acted on: the request path, or `seq=12`, `after=40`.
    pub target: String,
    /// The source address.
    pub source: String,
    /// `ok`, an HTTP status, or the error code given.
    pub result: String,
    /// SHA-256 chaining this record to the one before, hex.
    pub hash: String,
}

/// `GET /api/v1/groups/{id}/reads`: how far each member has read the group (既読). A post
/// at `seq` has been read by the members whose `seq` is at least its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReadList {
    pub group: GroupId,
    pub members: Vec<MemberRead>,
}

/// One member's read position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberRead {
    pub user: UserProfile,
    /// 0 when they have read nothing yet.
    pub seq: crate::Seq,
    pub at: Option<Millis>,
}

/// `GET /api/v1/search?q=&before=&limit=`: posts that contain the text, in the groups the
/// caller may read, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SearchResults {
    pub hits: Vec<SearchHit>,
    /// More hits exist before the last one: ask again with `before` set to its `at`.
    pub has_more: bool,
}

/// A post that matched a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SearchHit {
    pub group: GroupId,
    pub group_name: String,
    pub patient_name: Option<String>,
    pub seq: crate::Seq,
    pub at: Millis,
    pub author: UserProfile,
    pub text: String,
}

/// `GET /api/v1/groups/{id}/export?format=json`: a group's whole timeline for continuity of
/// care and records (art. 13(16)). The same content as a self-contained HTML document with
/// `format=html`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct GroupExport {
    pub exported_at: Millis,
    pub exported_by: UserProfile,
    pub group: GroupDetails,
    /// Every event from the first, in order: posts, deletions as tombstones
    /// (`deleted_post`), confirmations (`post_confirmed`), membership changes.
    pub events: Vec<crate::GroupEvent>,
}

/// A post that mentions the user (`@name`): the `mention` notice, and
/// `GET /api/v1/mentions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MentionView {
    pub group: GroupId,
    pub seq: crate::Seq,
    pub at: Millis,
    pub author: UserProfile,
    pub text: String,
}

/// `GET /api/v1/push/key`: the installation's VAPID public key (RFC 8292), the
/// `applicationServerKey` a browser subscribes with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushKey {
    /// The uncompressed P-256 point, base64url without padding.
    pub public_key: String,
}

/// `POST /api/v1/push/subscriptions`: a browser's push subscription (its
/// `PushSubscription.toJSON()`), tied to the caller's session: it ends with the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PushSubscriptionRequest {
    /// The push service's URL: `https`, on a host of the server's allowlist.
    pub endpoint: String,
    /// The browser's P-256 public key, base64url (`keys.p256dh`).
    pub p256dh: String,
    /// The 16-byte authentication secret, base64url (`keys.auth`).
    pub auth: String,
}

/// A stored push subscription; the same endpoint again gives the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushSubscriptionCreated {
    pub id: i64,
}

/// What a push carries, encrypted to the subscription (RFC 8291) and still without any
/// text, name or patient datum: the service worker shows the kind's fixed text and opens
/// the group, whose content then loads over the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushPayload {
    pub kind: NoticeKind,
    /// The group to open, for posts and mentions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<GroupId>,
    /// The notice's id: a repeat of the same notice replaces the earlier one.
    pub id: i64,
}

/// Why someone is told (a push's kind, an e-mail's subject).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// New posts in a group.
    Post,
    /// A post names the user (`@name`).
    Mention,
    /// An invitation waits for the user's answer or approval.
    Invitation,
    /// Something happened to the user's account (locked, password reset, setup code).
    Account,
    /// The user asked for a test notification.
    Test,
    /// A facility applied to join (様式1): to the operators.
    FacilityApplied,
}

/// Quiet hours (夜間は通知しない), in Japan time: no push between `start` and `end`
/// (across midnight when `end` is earlier), and e-mail waits until they end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`, not equal to `start`.
    pub end: String,
}

/// `GET /api/v1/notifications/settings`: how the caller is notified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NotificationSettings {
    /// Pushes to this user's subscribed devices.
    pub push: bool,
    /// E-mail notices (a digest of unread posts, invitations, account events).
    pub email: bool,
    pub quiet_hours: Option<QuietHours>,
    /// Groups whose posts notify nobody of this user.
    pub muted_groups: Vec<GroupId>,
    /// The server is configured to send mail (`RENKEI_SMTP_URL`).
    pub email_available: bool,
    /// Where mail goes: the user's login address.
    pub email_address: String,
    /// The mail server refused that address.
    pub email_bounced: bool,
    /// This user's push subscriptions (over all their sessions).
    pub push_subscriptions: u32,
}

/// `PUT /api/v1/notifications/settings`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NotificationSettingsUpdate {
    pub push: bool,
    pub email: bool,
    #[serde(default)]
    pub quiet_hours: Option<QuietHours>,
}

/// `PUT /api/v1/groups/{id}/mute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteRequest {
    pub muted: bool,
}

/// `POST /api/v1/notifications/test`: what was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TestNotification {
    /// Subscriptions a test push was queued for.
    pub push: u32,
    /// A test mail was queued.
    pub email: bool,
}

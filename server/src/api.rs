//! The REST API as one table: every endpoint with its method, path, summary, request and
//! response types and handler. The router is built from this table and the OpenAPI
//! document (`docs/openapi.json`) is generated from it, so the two cannot drift; a test
//! fails when the committed document is stale.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::http::Method;
use axum::routing::{delete, get, patch, post, put, MethodRouter};
use axum::Router;
use renkei_protocol::api as types;
use renkei_protocol::{LoginRequest, LoginResponse, SessionInfo};
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use crate::app::App;
use crate::http::{AuditActor, AuditReads, HttpError};
use crate::session::authenticate;
use crate::{
    account, archive, attachment, export, facility, group, invitation, mention, moderation,
    reading, search, trail,
};
use renkei_domain::audit::AuditEntry;

/// In front of every endpoint: the per-address and per-user rate limits, the session
/// checked once for the handler, and for an audited endpoint its record
/// ([`admit_and_record`]). Every request shed with 429 — by the rate limits or by a
/// handler's own bound (uploads in progress, login delays) — is counted here, on every
/// endpoint (`renkei_http_requests_shed_total`).
async fn admitted(
    app: Arc<App>,
    template: &'static str,
    audited: bool,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let response = admit_and_record(Arc::clone(&app), template, audited, request, next).await;
    if response.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
        app.metrics.requests_shed.inc();
    }
    response
}

/// The rate limits (429 beyond, before any work), the session, and for an audited endpoint
/// its record: who (the session's user, or the handler's `AuditActor`), the endpoint, the
/// path's ids, the group if the path names one, the source address and the status. The
/// response waits until the record is stored.
///
/// A request shed with 429 did nothing and read nothing: it is not recorded, so that a
/// client hammering a bound costs the audit writer, and the commits it shares the database
/// with, nothing. (What leads to a bound is recorded: the failed logins before a delay, the
/// lock of an account.)
async fn admit_and_record(
    app: Arc<App>,
    template: &'static str,
    audited: bool,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let client = crate::http::client_of(&app.config, request.extensions(), request.headers());
    if !app.requests.addresses.try_take(client) {
        return too_many();
    }
    let session = authenticate(&app, request.method(), request.headers())
        .await
        .ok();
    if let Some(session) = &session {
        if !app.requests.users.try_take(session.user.id) {
            return too_many();
        }
        request.extensions_mut().insert(session.clone());
    }
    if !audited {
        return next.run(request).await;
    }
    let action = format!("{} {template}", request.method());
    let target = request.uri().path().to_string();
    let source = client.to_string();
    let response = next.run(request).await;
    if response.status() == axum::http::StatusCode::TOO_MANY_REQUESTS {
        return response;
    }
    let actor = session
        .map(|s| AuditActor {
            user: s.user.id,
            facility: s.user.facility_id,
        })
        .or_else(|| response.extensions().get::<AuditActor>().copied());
    let group = template
        .strip_prefix("/api/v1/groups/{id}")
        .and_then(|_| target.split('/').nth(4)?.parse().ok());
    let entry = AuditEntry {
        at: renkei_domain::clock::now_ms(),
        actor: actor.map(|a| a.user),
        facility: actor.and_then(|a| a.facility),
        action,
        group,
        target,
        source,
        result: response.status().as_u16().to_string(),
    };
    match response.extensions().get::<AuditReads>() {
        Some(AuditReads(reads)) if !reads.is_empty() => {
            let entries = reads
                .iter()
                .map(|(group, what)| AuditEntry {
                    group: Some(*group),
                    target: if what.is_empty() {
                        entry.target.clone()
                    } else {
                        format!("{} {what}", entry.target)
                    },
                    ..entry.clone()
                })
                .collect();
            app.audit.record_all(entries).await;
        }
        _ => app.audit.record(entry).await,
    }
    response
}

fn too_many() -> axum::response::Response {
    use axum::response::IntoResponse as _;
    HttpError::rate_limited(
        std::time::Duration::from_secs(1),
        "too many requests: slow down",
    )
    .into_response()
}

type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// Who may call an endpoint at all (the policy decides the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    Session,
}

/// One endpoint of the REST API.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    pub summary: &'static str,
    pub access: Access,
    request: Option<(SchemaFn, &'static str)>,
    response: Option<SchemaFn>,
    /// The status of success.
    status: u16,
    query: &'static [(&'static str, &'static str, &'static str)],
    /// Whether each call leaves an audit record (all but a few reads of no personal data).
    audited: bool,
    handler: MethodRouter<Arc<App>>,
}

impl Endpoint {
    fn new(
        method: Method,
        path: &'static str,
        summary: &'static str,
        handler: MethodRouter<Arc<App>>,
    ) -> Self {
        Endpoint {
            method,
            path,
            summary,
            access: Access::Session,
            request: None,
            response: None,
            status: 200,
            query: &[],
            audited: true,
            handler,
        }
    }

    /// Calls leave no audit record: frequent reads that show no patient's information.
    fn unaudited(mut self) -> Self {
        self.audited = false;
        self
    }

    fn public(mut self) -> Self {
        self.access = Access::Public;
        self
    }

    fn takes<T: JsonSchema>(mut self) -> Self {
        self.request = Some((schema_of::<T>, "application/json"));
        self
    }

    fn takes_image(mut self) -> Self {
        self.request = Some((binary, "image/*"));
        self
    }

    fn takes_file(mut self) -> Self {
        self.request = Some((binary, "application/octet-stream"));
        self
    }

    fn gives<T: JsonSchema>(mut self) -> Self {
        self.response = Some(schema_of::<T>);
        self
    }

    fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    fn query(mut self, query: &'static [(&'static str, &'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
}

/// The search parameters of both audit trail endpoints.
const AUDIT_QUERY: &[(&str, &str, &str)] = &[
    (
        "since",
        "integer",
        "records at or after this time (ms since the epoch)",
    ),
    (
        "until",
        "integer",
        "records before this time (ms since the epoch)",
    ),
    ("actor", "integer", "records of this user's actions"),
    ("group", "integer", "records concerning this group"),
    (
        "limit",
        "integer",
        "at most this many records (default 1000, at most 10000)",
    ),
    ("format", "string", "json (default) or csv"),
];

/// Every REST endpoint.
pub fn endpoints() -> Vec<Endpoint> {
    use Method as M;
    vec![
        Endpoint::new(
            M::POST,
            "/api/v1/session",
            "Log in",
            post(crate::login::login),
        )
        .public()
        .takes::<LoginRequest>()
        .gives::<LoginResponse>(),
        Endpoint::new(
            M::GET,
            "/api/v1/session",
            "Who the session belongs to",
            get(crate::session::whoami),
        )
        .unaudited()
        .gives::<SessionInfo>(),
        Endpoint::new(
            M::DELETE,
            "/api/v1/session",
            "Log out: ends the session and its sockets",
            delete(crate::session::logout),
        )
        .status(204),
        Endpoint::new(
            M::PUT,
            "/api/v1/session/password",
            "Change one's password (giving the current one): every other session ends",
            put(account::change_password),
        )
        .takes::<types::PasswordChange>()
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/session/two-factor",
            "Whether one has a second factor (TOTP), whether one's role requires it",
            get(crate::two_factor::status),
        )
        .gives::<types::TwoFactorStatus>(),
        Endpoint::new(
            M::POST,
            "/api/v1/session/two-factor",
            "Start setting up a second factor: a new TOTP secret for the authenticator app",
            post(crate::two_factor::start),
        )
        .gives::<types::TwoFactorSetup>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/session/two-factor",
            "Confirm the new secret with a code: it takes effect; returns recovery codes",
            put(crate::two_factor::confirm),
        )
        .takes::<types::TwoFactorConfirm>()
        .gives::<types::RecoveryCodes>(),
        Endpoint::new(
            M::DELETE,
            "/api/v1/session/two-factor",
            "Turn the second factor off (with the password), unless one's role requires it",
            delete(crate::two_factor::disable),
        )
        .takes::<types::TwoFactorDisable>()
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/session/key",
            "This session's storage key: what the browser keeps encrypted under it (unsent \
             posts, drafts) is unreadable once the session ends",
            get(crate::session::storage_key),
        )
        .gives::<types::SessionKey>(),
        Endpoint::new(
            M::GET,
            "/api/v1/sessions",
            "One's open sessions: device, address, last use",
            get(crate::session::list),
        )
        .gives::<Vec<types::SessionView>>(),
        Endpoint::new(
            M::DELETE,
            "/api/v1/sessions",
            "Log out everywhere: every session of one's own ends, this one too",
            delete(crate::session::end_all),
        )
        .status(204),
        Endpoint::new(
            M::DELETE,
            "/api/v1/sessions/{session}",
            "End one of one's sessions (a lost phone)",
            delete(crate::session::end_one),
        )
        .status(204),
        Endpoint::new(
            M::POST,
            "/api/v1/password-setup",
            "Set a password with a one-time code (the first, or the next after a reset)",
            post(account::setup_password),
        )
        .public()
        .takes::<types::PasswordSetup>()
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/password-policy",
            "The rules a new password must meet",
            get(account::password_policy),
        )
        .public()
        .unaudited()
        .gives::<types::PasswordPolicy>(),
        // Facilities (art. 3, 様式1–2)
        Endpoint::new(
            M::GET,
            "/api/v1/facilities",
            "The participating facilities (公示): no personal data",
            get(facility::public_list),
        )
        .public()
        .unaudited()
        .gives::<Vec<types::PublicFacility>>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/applications",
            "A facility applies (様式1)",
            post(facility::apply),
        )
        .public()
        .takes::<types::FacilityApplication>()
        .gives::<types::FacilityDetails>()
        .status(201),
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/applications",
            "Facilities with their applications (operator)",
            get(facility::applications),
        )
        .query(&[(
            "status",
            "string",
            "only facilities of this status (applied, approved, rejected, suspended, withdrawn)",
        )])
        .gives::<Vec<types::FacilityDetails>>(),
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}",
            "A facility with its application",
            get(facility::details),
        )
        .gives::<types::FacilityDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/{id}/approve",
            "Approve an application: creates the admin accounts",
            post(facility::approve),
        )
        .takes::<types::Approval>()
        .gives::<types::ApprovalResult>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/{id}/reject",
            "Reject an application, with a reason",
            post(facility::reject),
        )
        .takes::<types::Reason>()
        .gives::<types::FacilityDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/{id}/suspend",
            "Suspend a facility: its users' sessions and sockets end",
            post(facility::suspend),
        )
        .takes::<types::Reason>()
        .gives::<types::FacilityDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/{id}/reinstate",
            "Reinstate a suspended facility",
            post(facility::reinstate),
        )
        .gives::<types::FacilityDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/{id}/withdraw",
            "Withdraw a facility: its users are deactivated",
            post(facility::withdraw),
        )
        .takes::<types::Reason>()
        .gives::<types::FacilityDetails>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/facilities/{id}/pledge",
            "Record the facility's pledge (様式2)",
            put(facility::pledge),
        )
        .takes::<types::Pledge>()
        .gives::<types::FacilityDetails>(),
        // Staff (art. 9–11, 13(7), 様式4)
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}/users",
            "A facility's staff with their details (its admins, the operator)",
            get(account::staff),
        )
        .gives::<Vec<types::UserDetails>>(),
        Endpoint::new(
            M::POST,
            "/api/v1/facilities/{id}/users",
            "Register a staff member; returns their one-time setup code",
            post(account::register),
        )
        .takes::<types::NewStaff>()
        .gives::<types::AccountSetup>()
        .status(201),
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}/directory",
            "The active staff of an approved facility, to invite them",
            get(account::directory),
        )
        .gives::<Vec<types::UserDetails>>(),
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}/review",
            "Review the members of every group the facility owns (定期的に精査)",
            get(group::review),
        )
        .query(&[(
            "inactive_days",
            "integer",
            "flag members without a post for this many days (default RENKEI_REVIEW_INACTIVE_DAYS)",
        )])
        .gives::<types::Review>(),
        Endpoint::new(
            M::GET,
            "/api/v1/users/{id}",
            "A user's profile (details for the user and their admins)",
            get(account::profile),
        )
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::PATCH,
            "/api/v1/users/{id}",
            "Change a user's name, kana or profession",
            patch(account::update),
        )
        .takes::<types::ProfileUpdate>()
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/users/{id}/pledge",
            "Record a staff member's pledge (様式4)",
            put(account::pledge),
        )
        .takes::<types::Pledge>()
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/users/{id}/role",
            "Make a user admin or staff",
            put(account::set_role),
        )
        .takes::<types::RoleChange>()
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/users/{id}/deactivate",
            "Deactivate a user who left: removed from every group, every socket ends",
            post(account::deactivate),
        )
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/users/{id}/restrict",
            "Restrict a user to reading",
            post(account::restrict),
        )
        .takes::<types::Reason>()
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/users/{id}/ban",
            "Ban a user: every session and socket ends",
            post(account::ban),
        )
        .takes::<types::Reason>()
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/users/{id}/reinstate",
            "Lift a restriction or a ban",
            post(account::reinstate),
        )
        .gives::<types::UserDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/users/{id}/password-reset",
            "Reset a user's password (lost device, leaked password): every session ends; \
             returns a one-time code for the next password",
            post(account::reset_password),
        )
        .gives::<types::AccountSetup>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/users/{id}/photo",
            "Upload a profile photo (PNG, JPEG or WebP, at most 512 KiB)",
            put(account::put_photo),
        )
        .takes_image()
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/users/{id}/photo",
            "A user's profile photo",
            get(account::photo),
        )
        .unaudited(),
        // The audit trail (MHLW guideline)
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}/audit",
            "The audit trail of a facility's people and groups, newest first (JSON or CSV)",
            get(trail::facility_trail),
        )
        .query(AUDIT_QUERY)
        .gives::<Vec<types::AuditRecord>>(),
        Endpoint::new(
            M::GET,
            "/api/v1/audit",
            "The whole network's audit trail, newest first (the operator; JSON or CSV)",
            get(trail::network_trail),
        )
        .query(AUDIT_QUERY)
        .gives::<Vec<types::AuditRecord>>(),
        // Groups (art. 4–7, 別紙(1))
        Endpoint::new(
            M::POST,
            "/api/v1/groups",
            "Create a patient group (with its patient) or a free group",
            post(group::create),
        )
        .takes::<types::NewGroupRequest>()
        .gives::<types::GroupDetails>()
        .status(201),
        Endpoint::new(
            M::GET,
            "/api/v1/groups/{id}",
            "A group's details and members",
            get(group::details),
        )
        .gives::<types::GroupDetails>(),
        Endpoint::new(
            M::PATCH,
            "/api/v1/groups/{id}",
            "Rename a free group",
            patch(group::rename),
        )
        .takes::<types::Rename>()
        .gives::<types::GroupDetails>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/groups/{id}/consent",
            "Put the patient's consent (様式3) on file",
            put(group::consent),
        )
        .takes::<types::Consent>()
        .gives::<types::GroupDetails>(),
        Endpoint::new(
            M::DELETE,
            "/api/v1/groups/{id}/members/{user}",
            "Leave a group (one's own id) or remove a member (解除)",
            delete(group::remove_member),
        )
        .status(204),
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/members/remove",
            "Remove several members at once",
            post(group::remove_members),
        )
        .takes::<types::RemoveMembers>()
        .gives::<types::RemovalResult>(),
        // Deleting posts and the archive (art. 10(6), 13(9), 別紙(2))
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/posts/{seq}/delete",
            "Delete a post: its text leaves the system, a tombstone stays",
            post(moderation::delete_post),
        )
        .takes::<types::DeletePost>()
        .status(204),
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/posts/{seq}/report",
            "Report a post to the admins, with a reason",
            post(moderation::report),
        )
        .takes::<types::ReportRequest>()
        .gives::<types::ReportView>()
        .status(201),
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/files",
            "Upload a file into a group (the body: its bytes), to post it with `post.file`",
            post(attachment::upload),
        )
        .query(&[("name", "string", "the file's name as shown to members")])
        .takes_file()
        .gives::<renkei_protocol::FileRef>()
        .status(201),
        Endpoint::new(
            M::GET,
            "/api/v1/files/{id}",
            "A posted file, to members who may read its group (as an attachment; images inline on request)",
            get(attachment::download),
        )
        .query(&[("inline", "boolean", "show an image in the browser")]),
        Endpoint::new(
            M::GET,
            "/api/v1/files/{id}/thumbnail",
            "An image's JPEG preview",
            get(attachment::thumbnail_of),
        ),
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/posts/{seq}/confirm",
            "確認しました: confirm having read and acted on another member's post",
            post(reading::confirm),
        )
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/groups/{id}/reads",
            "How far each member has read the group (既読)",
            get(reading::reads),
        )
        .gives::<types::ReadList>(),
        Endpoint::new(
            M::GET,
            "/api/v1/search",
            "Posts containing a text (Japanese: any part of a word), in the caller's groups, newest first",
            get(search::search),
        )
        .query(&[
            ("q", "string", "the text to find (1 to 100 characters)"),
            (
                "before",
                "integer",
                "hits before this time (ms): the `at` of the previous page's last hit",
            ),
            (
                "limit",
                "integer",
                "at most this many (default 50, at most 100)",
            ),
        ])
        .gives::<types::SearchResults>(),
        Endpoint::new(
            M::GET,
            "/api/v1/mentions",
            "Posts that mention the caller (@name), newest first, in the groups they may read",
            get(mention::list),
        )
        .query(&[
            (
                "before",
                "integer",
                "mentions before this time (ms): the `at` of the previous page's last one",
            ),
            (
                "limit",
                "integer",
                "at most this many (default 50, at most 200)",
            ),
        ])
        .gives::<Vec<types::MentionView>>(),
        // Reaching people away from the page (issue 18): each user's own, nobody else's.
        Endpoint::new(
            M::GET,
            "/api/v1/push/key",
            "The installation's VAPID public key, to subscribe a browser to Web Push",
            get(crate::push::key),
        )
        .unaudited()
        .gives::<types::PushKey>(),
        Endpoint::new(
            M::POST,
            "/api/v1/push/subscriptions",
            "Subscribe this browser to Web Push; the subscription ends with the session",
            post(crate::push::subscribe),
        )
        .takes::<types::PushSubscriptionRequest>()
        .gives::<types::PushSubscriptionCreated>()
        .status(201),
        Endpoint::new(
            M::DELETE,
            "/api/v1/push/subscriptions/{id}",
            "Unsubscribe one of one's browsers",
            delete(crate::push::unsubscribe),
        )
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/notifications/settings",
            "How one is notified: push, e-mail, quiet hours, muted groups",
            get(crate::notice::settings),
        )
        .unaudited()
        .gives::<types::NotificationSettings>(),
        Endpoint::new(
            M::PUT,
            "/api/v1/notifications/settings",
            "Choose the channels (push, e-mail) and quiet hours (夜間は通知しない)",
            put(crate::notice::update_settings),
        )
        .takes::<types::NotificationSettingsUpdate>()
        .gives::<types::NotificationSettings>(),
        Endpoint::new(
            M::POST,
            "/api/v1/notifications/test",
            "Send oneself a test notification on every channel one has",
            post(crate::notice::test),
        )
        .gives::<types::TestNotification>()
        .status(202),
        Endpoint::new(
            M::PUT,
            "/api/v1/groups/{id}/mute",
            "Turn one's notifications of a group off or on",
            put(crate::notice::mute),
        )
        .takes::<types::MuteRequest>()
        .status(204),
        Endpoint::new(
            M::GET,
            "/api/v1/groups/{id}/export",
            "Export a group's whole timeline for continuity of care (art. 13(16)), as JSON or a self-contained HTML document",
            get(export::export),
        )
        .query(&[("format", "string", "json (the default) or html")])
        .gives::<types::GroupExport>(),
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}/reports",
            "The reports on posts in the facility's groups, newest first",
            get(moderation::reports),
        )
        .query(&[(
            "state",
            "string",
            "only reports in this state (open, dismissed, deleted)",
        )])
        .gives::<Vec<types::ReportView>>(),
        Endpoint::new(
            M::POST,
            "/api/v1/reports/{id}/dismiss",
            "Dismiss a report: the post stays",
            post(moderation::dismiss),
        )
        .gives::<types::ReportView>(),
        Endpoint::new(
            M::GET,
            "/api/v1/facilities/{id}/posts",
            "The monitoring view: recent posts across the facility's groups",
            get(moderation::monitor),
        )
        .query(&[
            ("group", "integer", "only this group"),
            ("author", "integer", "only this author"),
            ("since", "integer", "posts at or after this time (ms)"),
            ("until", "integer", "posts before this time (ms)"),
            ("q", "string", "posts containing this text"),
            (
                "limit",
                "integer",
                "at most this many (default 100, at most 500)",
            ),
        ])
        .gives::<Vec<types::MonitoredPost>>(),
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/archive",
            "Move a patient group to the archive (保管庫)",
            post(archive::archive),
        )
        .gives::<types::GroupDetails>(),
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/restore",
            "Bring a group back from the archive",
            post(archive::restore),
        )
        .gives::<types::GroupDetails>(),
        Endpoint::new(
            M::GET,
            "/api/v1/archive",
            "The archived groups the caller may read",
            get(archive::list),
        )
        .gives::<Vec<renkei_protocol::GroupSummary>>(),
        Endpoint::new(
            M::GET,
            "/api/v1/groups/{id}/history",
            "A page of a group's events, oldest first (the archive view)",
            get(archive::history),
        )
        .query(&[
            (
                "before",
                "integer",
                "events before this seq (default: the newest)",
            ),
            (
                "limit",
                "integer",
                "at most this many (default 50, at most 256)",
            ),
        ])
        .gives::<types::HistoryPage>(),
        // Invitations (別紙(2)(3), art. 10(7))
        Endpoint::new(
            M::POST,
            "/api/v1/groups/{id}/invitations",
            "Invite a user into a group",
            post(invitation::invite),
        )
        .takes::<types::InviteRequest>()
        .gives::<types::InvitationView>()
        .status(201),
        Endpoint::new(
            M::GET,
            "/api/v1/invitations",
            "The invitations that concern the caller",
            get(invitation::list),
        )
        .gives::<types::InvitationList>(),
        Endpoint::new(
            M::POST,
            "/api/v1/invitations/{id}/accept",
            "Accept an invitation (招待の受理)",
            post(invitation::accept),
        )
        .gives::<types::InvitationView>(),
        Endpoint::new(
            M::POST,
            "/api/v1/invitations/{id}/decline",
            "Decline an invitation",
            post(invitation::decline),
        )
        .gives::<types::InvitationView>(),
        Endpoint::new(
            M::POST,
            "/api/v1/invitations/{id}/approve",
            "Approve an invitation of one's staff (招待承認)",
            post(invitation::approve),
        )
        .gives::<types::InvitationView>(),
        Endpoint::new(
            M::POST,
            "/api/v1/invitations/{id}/refuse",
            "Refuse an invitation of one's staff",
            post(invitation::refuse),
        )
        .gives::<types::InvitationView>(),
        Endpoint::new(
            M::POST,
            "/api/v1/invitations/{id}/cancel",
            "Withdraw an invitation",
            post(invitation::cancel),
        )
        .gives::<types::InvitationView>(),
    ]
}

/// A request body of raw bytes.
fn binary(_: &mut SchemaGenerator) -> Schema {
    schemars::json_schema!({ "type": "string", "format": "binary" })
}

/// The router of every endpoint, each audited call behind the audit layer.
pub fn routes(app: &Arc<App>) -> Router<Arc<App>> {
    let mut by_path: BTreeMap<&str, MethodRouter<Arc<App>>> = BTreeMap::new();
    for endpoint in endpoints() {
        let (app, template, audited) = (Arc::clone(app), endpoint.path, endpoint.audited);
        let handler = endpoint
            .handler
            .layer(axum::middleware::from_fn(move |request, next| {
                admitted(Arc::clone(&app), template, audited, request, next)
            }));
        let merged = match by_path.remove(endpoint.path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(endpoint.path, merged);
    }
    by_path
        .into_iter()
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
}

/// The OpenAPI 3.0 document of the REST API.
pub fn openapi() -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let error = schema_of::<renkei_protocol::ApiError>(&mut generator);
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for endpoint in endpoints() {
        let mut operation = serde_json::Map::new();
        operation.insert("summary".into(), json!(endpoint.summary));
        let parameters: Vec<Value> = endpoint
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| {
                // Every path parameter is an id but a session's, which is hexadecimal.
                let kind = if name == "session" { "string" } else { "integer" };
                json!({"name": name, "in": "path", "required": true, "schema": {"type": kind}})
            })
            .chain(endpoint.query.iter().map(|(name, kind, description)| {
                json!({"name": name, "in": "query", "required": false, "description": description, "schema": {"type": kind}})
            }))
            .collect();
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some((schema, content_type)) = endpoint.request {
            operation.insert(
                "requestBody".into(),
                json!({"required": true, "content": {content_type: {"schema": schema(&mut generator)}}}),
            );
        }
        let success = match endpoint.response {
            Some(schema) => {
                json!({"description": "success", "content": {"application/json": {"schema": schema(&mut generator)}}})
            }
            None => json!({"description": "success"}),
        };
        operation.insert(
            "responses".into(),
            json!({
                endpoint.status.to_string(): success,
                "default": {"description": "an error; `error.code` says which", "content": {"application/json": {"schema": error.clone()}}}
            }),
        );
        if endpoint.access == Access::Public {
            operation.insert("security".into(), json!([]));
        }
        paths.entry(endpoint.path).or_default().insert(
            endpoint.method.as_str().to_lowercase(),
            Value::Object(operation),
        );
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Renkei REST API",
            "version": "1",
            "description": "Facilities, accounts, groups and invitations of a Renkei network. \
                Real-time messages go over the WebSocket at /ws (docs/protocol.md)."
        },
        "paths": paths,
        "security": [{"bearer": []}, {"cookie": []}],
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": crate::session::COOKIE}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed document matches the code; `RENKEI_UPDATE_OPENAPI=1` rewrites it.
    #[test]
    fn the_committed_openapi_document_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
        let current = format!(
            "{}\n",
            serde_json::to_string_pretty(&openapi()).expect("serializes")
        );
        if std::env::var_os("RENKEI_UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &current).expect("write docs/openapi.json");
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == current,
            "docs/openapi.json is stale: run RENKEI_UPDATE_OPENAPI=1 cargo test -p renkei-server --lib api"
        );
    }

    #[test]
    fn every_endpoint_is_unique_and_under_api_v1() {
        let mut seen = std::collections::HashSet::new();
        for endpoint in endpoints() {
            assert!(endpoint.path.starts_with("/api/v1/"), "{}", endpoint.path);
            assert!(
                seen.insert((endpoint.method.clone(), endpoint.path)),
                "{} {} twice",
                endpoint.method,
                endpoint.path
            );
        }
    }
}

//! Accounts (art. 9–11, 13): first passwords by one-time code, staff registration with
//! its pledge (様式4), profiles and photos, roles, and the states an admin or the operator
//! puts an account in — restricted, banned, deactivated — effective at once on every node.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use renkei_domain::password;
use renkei_domain::policy::{Action, UserFacts};
use renkei_protocol::api::{
    AccountSetup, FacilityStatus, NewStaff, NoticeKind, PasswordChange, PasswordPolicy,
    PasswordRule, PasswordSetup, Pledge, ProfileUpdate, Reachability, Reason, RoleChange,
    UserDetails,
};
use renkei_protocol::{AccountStatus, ErrorCode, Role, UserId};

use crate::app::App;
use crate::http::{ClientIp, HttpError, Id};
use crate::session::AnySession;
use crate::session::Caller;
use crate::store::{MailKind, NewUser, Store, StoreError};
use crate::{input, membership, notice, session};
use renkei_domain::clock;

/// The largest profile photo accepted.
pub const MAX_PHOTO_BYTES: usize = 512 * 1024;

/// Stores a new one-time code with which `user` sets a first password, valid for `hours`;
/// returns the code and when it expires.
pub async fn new_setup_code(
    store: &dyn Store,
    user: UserId,
    hours: u32,
) -> Result<(String, i64), StoreError> {
    let code = random_setup_code();
    let now = clock::now_ms();
    let expires_at = now + i64::from(hours) * 3_600_000;
    let canonical = normalize_setup_code(&code).unwrap_or_default();
    store
        .create_password_setup(user, &session::token_hash(&canonical), now, expires_at)
        .await?;
    Ok((code, expires_at))
}

/// Crockford's base32 alphabet: no I, L, O or U, so no two characters look alike.
const SETUP_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Characters of a setup code: 20 × 5 bits = 100 bits, in groups of 5.
const SETUP_CHARS: usize = 20;
const SETUP_GROUP: usize = 5;

/// A new setup code as handed over on paper: `XXXXX-XXXXX-XXXXX-XXXXX`, 100 random bits.
fn random_setup_code() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; SETUP_CHARS];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let mut code = String::with_capacity(SETUP_CHARS + SETUP_CHARS / SETUP_GROUP);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 && i % SETUP_GROUP == 0 {
            code.push('-');
        }
        // 256 is a multiple of 32: the low five bits of a random byte are uniform.
        code.push(char::from(SETUP_ALPHABET[usize::from(byte & 0x1f)]));
    }
    code
}

/// A setup code as typed, in its one canonical form (20 upper-case characters), or `None`
/// if it cannot be one. Crockford's decoding: case does not matter, O reads as 0, I and L
/// as 1; hyphens and spaces (also full-width ones from a Japanese keyboard) are ignored.
pub fn normalize_setup_code(typed: &str) -> Option<String> {
    use unicode_normalization::UnicodeNormalization as _;
    let mut canonical = String::with_capacity(SETUP_CHARS);
    for c in typed.nfkc() {
        let c = match c.to_ascii_uppercase() {
            c if c.is_whitespace() || matches!(c, '-' | '‐' | '‑' | '–' | '—' | 'ー') => {
                continue
            }
            'O' => '0',
            'I' | 'L' => '1',
            c if c.is_ascii() && SETUP_ALPHABET.contains(&(c as u8)) => c,
            _ => return None,
        };
        if canonical.len() == SETUP_CHARS {
            return None;
        }
        canonical.push(c);
    }
    (canonical.len() == SETUP_CHARS).then_some(canonical)
}

/// Creates a one-time code with which `user` sets a first password.
pub async fn issue_setup_code(app: &App, user: UserId) -> Result<AccountSetup, HttpError> {
    let (code, expires_at) =
        new_setup_code(app.store.as_ref(), user, app.config.setup_code_hours).await?;
    let details = load(app, user).await?;
    Ok(AccountSetup {
        user: details,
        setup_code: code,
        expires_at,
    })
}

async fn load(app: &App, user: UserId) -> Result<UserDetails, HttpError> {
    app.store
        .user(user)
        .await?
        .ok_or_else(|| HttpError::not_found("user"))
}

/// What the policy needs to know of a user.
pub fn facts(user: &UserDetails, facility_approved: bool) -> UserFacts {
    UserFacts {
        id: user.id,
        facility: user.facility.as_ref().map(|f| f.id),
        available: user.status == AccountStatus::Active && facility_approved,
    }
}

/// The user and their facts, or 404.
pub async fn target(app: &App, user: UserId) -> Result<(UserDetails, UserFacts), HttpError> {
    let details = load(app, user).await?;
    let approved = match &details.facility {
        Some(facility) => app
            .store
            .facility(facility.id)
            .await?
            .is_some_and(|f| f.status == FacilityStatus::Approved),
        None => true,
    };
    let facts = facts(&details, approved);
    Ok((details, facts))
}

/// A profile as others see it: without e-mail address, pledge and status reason.
pub fn public(details: UserDetails) -> UserDetails {
    UserDetails {
        email: None,
        pledge_received_on: None,
        status_reason: None,
        reachable: None,
        ..details
    }
}

/// `GET /api/v1/password-policy`: the rules, for clients to check as the user types.
pub async fn password_policy(State(app): State<Arc<App>>) -> Json<PasswordPolicy> {
    let policy = app.config.password_policy;
    Json(PasswordPolicy {
        policy: policy.name().into(),
        min_length: policy.min_length(false) as u32,
        min_length_with_second_factor: policy.min_length(true) as u32,
        max_age_days: policy.max_age_days(),
        history: password::HISTORY as u32,
    })
}

/// Refuses a new password for `user` that breaks a rule, equals one of their last
/// passwords (`history`, hashes) or closely resembles `current`, listing every such rule.
async fn check_new_password(
    app: &App,
    user: &UserDetails,
    new: &str,
    current: Option<&str>,
    history: &[String],
) -> Result<(), HttpError> {
    let second_factor = app.store.two_factor(user.id).await?.0;
    let min_length = app.config.password_policy.min_length(second_factor);
    let personal = password::Personal {
        login: user.email.as_deref().unwrap_or_default(),
        name: &user.name,
    };
    let mut broken = password::check(new, min_length, personal);
    if broken.contains(&PasswordRule::TooLong) {
        return Err(HttpError::weak_password(broken, min_length));
    }
    for hash in history {
        if app.passwords.verify(Some(hash), new).await?.matched {
            broken.push(PasswordRule::Reused);
            break;
        }
    }
    if let Some(current) = current.filter(|current| *current != new) {
        if password::similar(new, current) {
            broken.push(PasswordRule::Similar);
        }
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(HttpError::weak_password(broken, min_length))
    }
}

/// `POST /api/v1/password-setup`: a first password, or the next one after an admin's
/// reset, with a one-time code.
pub async fn setup_password(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    body: Result<Json<PasswordSetup>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(setup) = body?;
    // Wrong codes count with the source address's failed logins (after 20, delays grow
    // from 1 s to a minute): with 100 bits per code, guessing is hopeless either way.
    if let Some(wait) = app.logins.wait_address(client, Instant::now()) {
        return Err(HttpError::rate_limited(
            wait,
            "too many wrong setup codes: wait",
        ));
    }
    let invalid = || {
        app.logins.failed_address(client, Instant::now());
        HttpError::bad_request("invalid or expired code")
    };
    if setup.code.len() > 100 {
        return Err(invalid());
    }
    // Codes issued before they became Crockford base32 were stored as typed; they still
    // work until they expire.
    let code = match normalize_setup_code(&setup.code) {
        Some(canonical) => session::token_hash(&canonical),
        None => session::token_hash(setup.code.trim()),
    };
    let now = clock::now_ms();
    let user = app
        .store
        .setup_code_user(&code, now)
        .await?
        .ok_or_else(invalid)?;
    let details = load(&app, user).await?;
    let history = app.store.password_history(user).await?;
    check_new_password(&app, &details, &setup.password, None, &history).await?;
    let hash = app.passwords.hash(&setup.password).await?;
    match app.store.use_password_setup(&code, &hash, now).await {
        Ok(user) => {
            // Failures of the login before its reset no longer delay its owner.
            app.logins
                .succeeded(details.email.as_deref().unwrap_or_default());
            tracing::info!(user, "password set with a setup code");
            Ok(StatusCode::NO_CONTENT)
        }
        Err(StoreError::NotFound(_)) => Err(invalid()),
        Err(err) => Err(err.into()),
    }
}

/// `PUT /api/v1/session/password`: the caller changes their password, giving the current
/// one. Every other session of theirs ends, and its sockets close on every node; this one
/// goes on (and may do more than change the password, if it had expired).
pub async fn change_password(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    AnySession(session): AnySession,
    body: Result<Json<PasswordChange>, JsonRejection>,
) -> Result<StatusCode, HttpError> {
    let Json(change) = body?;
    if change.current.len() > password::MAX_BYTES {
        return Err(HttpError::bad_request("current password too long"));
    }
    let user = session.user.id;
    let state = app
        .store
        .password_state(user)
        .await?
        .ok_or_else(|| HttpError::not_found("password"))?;
    // Someone with a borrowed session must not learn the password by trying.
    let login = &session.user.login;
    if let Some(wait) = app.logins.wait(login, client, Instant::now()) {
        return Err(HttpError::rate_limited(
            wait,
            "too many wrong passwords: wait",
        ));
    }
    if !app
        .passwords
        .verify(Some(&state.hash), &change.current)
        .await?
        .matched
    {
        app.logins.failed(login, client, Instant::now());
        return Err(HttpError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::InvalidCredentials,
            "the current password is wrong",
        ));
    }
    let details = load(&app, user).await?;
    check_new_password(
        &app,
        &details,
        &change.new,
        Some(&change.current),
        &state.history,
    )
    .await?;
    let hash = app.passwords.hash(&change.new).await?;
    let ended = app
        .store
        .change_password(user, &hash, clock::now_ms(), Some(&session.token_hash))
        .await?;
    for other in &ended {
        app.bus.end_session(other);
    }
    tracing::info!(user, other_sessions_ended = ended.len(), "password changed");
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/users/{id}/password-reset`: the response to a lost device or a leaked
/// password. The password stops working, every session of the user ends and their sockets
/// close on every node, a lock is lifted, and a one-time code sets the next password.
pub async fn reset_password(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
) -> Result<Json<AccountSetup>, HttpError> {
    let (_, facts) = target(&app, user).await?;
    caller.may(Action::RestrictUser(facts))?;
    let ended = app.store.reset_password(user).await?;
    for session in &ended {
        app.bus.end_session(session);
    }
    tracing::info!(
        user,
        by = caller.user.id,
        sessions = ended.len(),
        "password reset"
    );
    let setup = issue_setup_code(&app, user).await?;
    // Its sessions, and so its push subscriptions, have ended: a mail tells the owner.
    notice::tell(
        &app,
        user,
        NoticeKind::Account,
        Some(MailKind::PasswordReset),
    )
    .await;
    Ok(Json(setup))
}

/// `GET /api/v1/facilities/{id}/users`.
pub async fn staff(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(facility): Id,
) -> Result<Json<Vec<UserDetails>>, HttpError> {
    caller.may(Action::ViewStaff { facility })?;
    let mut users = app.store.facility_users(facility).await?;
    // Who cannot be reached away from the page: no push subscription and no working mail.
    let ids: Vec<UserId> = users.iter().map(|u| u.id).collect();
    let now = app.config.clock.now();
    let reach = app
        .store
        .reachability(&ids, now, crate::session::idle_since(&app.config, now))
        .await?;
    let mailer = app.notices.mailer.is_some();
    for user in &mut users {
        if let Some(&(_, push, email, bounced)) = reach.iter().find(|r| r.0 == user.id) {
            user.reachable = Some(Reachability {
                push,
                email: mailer && email && !bounced,
                bounced,
            });
        }
    }
    Ok(Json(users))
}

/// `GET /api/v1/facilities/{id}/directory`: whom one can invite from a facility.
pub async fn directory(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Id(facility): Id,
) -> Result<Json<Vec<UserDetails>>, HttpError> {
    let approved = app
        .store
        .facility(facility)
        .await?
        .is_some_and(|f| f.status == FacilityStatus::Approved);
    if !approved {
        return Err(HttpError::not_found("participating facility"));
    }
    let users = app.store.facility_users(facility).await?;
    Ok(Json(
        users
            .into_iter()
            .filter(|u| u.status == AccountStatus::Active)
            .map(public)
            .collect(),
    ))
}

/// `POST /api/v1/facilities/{id}/users`: one account per person, the e-mail address
/// unique across the network.
pub async fn register(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(facility): Id,
    body: Result<Json<NewStaff>, JsonRejection>,
) -> Result<(StatusCode, Json<AccountSetup>), HttpError> {
    caller.may(Action::RegisterStaff { facility })?;
    let Json(staff) = body?;
    let approved = app
        .store
        .facility(facility)
        .await?
        .ok_or_else(|| HttpError::not_found("facility"))?
        .status
        == FacilityStatus::Approved;
    if !approved {
        return Err(HttpError::conflict("the facility is not participating"));
    }
    let user = NewUser {
        facility_id: Some(facility),
        login: input::email("email", &staff.email)?,
        name: input::text("name", &staff.name, 100)?,
        kana: input::optional_text("kana", &staff.kana, 100)?,
        profession: input::text("profession", &staff.profession, 100)?,
        role: Role::Staff,
        password_hash: String::new(),
        pledge_received_on: staff
            .pledge_received_on
            .as_deref()
            .map(|d| input::date("pledge_received_on", d))
            .transpose()?,
    };
    let ids = app
        .store
        .create_users(&[user])
        .await
        .map_err(|err| match err {
            StoreError::Conflict(_) => {
                HttpError::conflict("this e-mail address has an account already (one per person)")
            }
            err => err.into(),
        })?;
    let id = ids
        .first()
        .copied()
        .ok_or_else(|| HttpError::not_found("user"))?;
    tracing::info!(user = id, facility, by = caller.user.id, "staff registered");
    let setup = issue_setup_code(&app, id).await?;
    notice::tell(&app, id, NoticeKind::Account, Some(MailKind::SetupCode)).await;
    Ok((StatusCode::CREATED, Json(setup)))
}

/// `GET /api/v1/users/{id}`: everything for the user and their admins, the public
/// profile for everyone else.
pub async fn profile(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
) -> Result<Json<UserDetails>, HttpError> {
    let (details, facts) = target(&app, user).await?;
    let own = user == caller.user.id || caller.may(Action::ManageUser(facts)).is_ok();
    Ok(Json(if own { details } else { public(details) }))
}

/// `PATCH /api/v1/users/{id}`.
pub async fn update(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
    body: Result<Json<ProfileUpdate>, JsonRejection>,
) -> Result<Json<UserDetails>, HttpError> {
    let Json(update) = body?;
    let (_, facts) = target(&app, user).await?;
    caller.may(Action::EditProfile(facts))?;
    if update.profession.is_some() {
        caller.may(Action::ManageUser(facts))?;
    }
    let update = ProfileUpdate {
        name: update
            .name
            .map(|v| input::text("name", &v, 100))
            .transpose()?,
        kana: update
            .kana
            .map(|v| input::optional_text("kana", &v, 100))
            .transpose()?,
        profession: update
            .profession
            .map(|v| input::text("profession", &v, 100))
            .transpose()?,
    };
    app.store.update_profile(user, &update).await?;
    Ok(Json(load(&app, user).await?))
}

/// `PUT /api/v1/users/{id}/pledge`: the date the pledge (様式4) was received.
pub async fn pledge(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
    body: Result<Json<Pledge>, JsonRejection>,
) -> Result<Json<UserDetails>, HttpError> {
    let Json(pledge) = body?;
    let (_, facts) = target(&app, user).await?;
    caller.may(Action::ManageUser(facts))?;
    let date = input::date("received_on", &pledge.received_on)?;
    app.store.set_user_pledge(user, &date).await?;
    Ok(Json(load(&app, user).await?))
}

/// `PUT /api/v1/users/{id}/role`: admin or staff; the admins' room follows.
pub async fn set_role(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
    body: Result<Json<RoleChange>, JsonRejection>,
) -> Result<Json<UserDetails>, HttpError> {
    let Json(RoleChange { role }) = body?;
    let (details, facts) = target(&app, user).await?;
    caller.may(Action::ManageUser(facts))?;
    if role == Role::Operator || details.facility.is_none() {
        return Err(HttpError::bad_request(
            "a facility's users are admin or staff; the operator's role does not change",
        ));
    }
    app.store.set_role(user, role).await?;
    // Their sessions were opened without the second factor the new role requires: they
    // end (with their sockets on every node, and their push subscriptions), so the next
    // login asks for the code or its setup. Before the admins' room is joined, so that no
    // old socket receives it.
    let two_factor = app.config.two_factor;
    if two_factor.applies_to(role) && !two_factor.applies_to(details.role) {
        membership::end_sessions(&app, user).await?;
    }
    membership::follow_role(&app, user, role, caller.user.id).await?;
    membership::announce_account(&app, user).await?;
    tracing::info!(user, ?role, by = caller.user.id, "role changed");
    Ok(Json(load(&app, user).await?))
}

/// `POST /api/v1/users/{id}/deactivate`: for staff who left (art. 13(7)).
pub async fn deactivate(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
) -> Result<Json<UserDetails>, HttpError> {
    let (_, facts) = target(&app, user).await?;
    caller.may(Action::ManageUser(facts))?;
    app.store
        .set_user_status(user, AccountStatus::Deactivated, None)
        .await?;
    membership::remove_everywhere(&app, user, caller.user.id).await?;
    tracing::info!(user, by = caller.user.id, "account deactivated");
    Ok(Json(load(&app, user).await?))
}

async fn set_status(
    app: &App,
    caller: &Caller,
    user: UserId,
    status: AccountStatus,
    reason: Option<&str>,
) -> Result<UserDetails, HttpError> {
    let (details, facts) = target(app, user).await?;
    caller.may(Action::RestrictUser(facts))?;
    if details.status == AccountStatus::Deactivated {
        return Err(HttpError::conflict("the account is deactivated"));
    }
    app.store.set_user_status(user, status, reason).await?;
    match status {
        AccountStatus::Banned | AccountStatus::Deactivated => membership::end_sockets(app, user),
        AccountStatus::Active | AccountStatus::Restricted => {
            membership::announce_account(app, user).await?
        }
    }
    tracing::info!(
        user,
        ?status,
        reason,
        by = caller.user.id,
        "account status changed"
    );
    load(app, user).await
}

/// `POST /api/v1/users/{id}/restrict`: read-only from now on, on open sockets too.
pub async fn restrict(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<UserDetails>, HttpError> {
    let Json(Reason { reason }) = body?;
    let reason = input::reason(&reason)?;
    let details = set_status(
        &app,
        &caller,
        user,
        AccountStatus::Restricted,
        Some(&reason),
    )
    .await?;
    Ok(Json(details))
}

/// `POST /api/v1/users/{id}/ban`: no login; every session and socket ends.
pub async fn ban(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<UserDetails>, HttpError> {
    let Json(Reason { reason }) = body?;
    let reason = input::reason(&reason)?;
    let details = set_status(&app, &caller, user, AccountStatus::Banned, Some(&reason)).await?;
    Ok(Json(details))
}

/// `POST /api/v1/users/{id}/reinstate`.
pub async fn reinstate(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
) -> Result<Json<UserDetails>, HttpError> {
    Ok(Json(
        set_status(&app, &caller, user, AccountStatus::Active, None).await?,
    ))
}

/// The image types a photo may be, recognised by their first bytes (the declared type must
/// agree): a photo is never served as anything but an image.
fn image_type(bytes: &[u8]) -> Option<&'static str> {
    use renkei_domain::upload::Kind;
    renkei_domain::upload::detect(bytes)
        .filter(|kind| matches!(kind, Kind::Png | Kind::Jpeg | Kind::Webp))
        .map(Kind::media_type)
}

/// `PUT /api/v1/users/{id}/photo`.
pub async fn put_photo(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(user): Id,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, HttpError> {
    let (_, facts) = target(&app, user).await?;
    caller.may(Action::EditProfile(facts))?;
    if body.len() > MAX_PHOTO_BYTES {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("a photo has at most {} KiB", MAX_PHOTO_BYTES / 1024),
        ));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(kind) = image_type(&body).filter(|kind| declared == *kind) else {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::UnsupportedMediaType,
            "a photo is a PNG, JPEG or WebP image, sent with its Content-Type",
        ));
    };
    app.store
        .put_photo(user, kind, &body, clock::now_ms())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v1/users/{id}/photo`.
pub async fn photo(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Id(user): Id,
) -> Result<Response, HttpError> {
    let (kind, bytes) = app
        .store
        .photo(user)
        .await?
        .ok_or_else(|| HttpError::not_found("photo"))?;
    Ok((
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "private, max-age=300".to_string()),
        ],
        bytes,
    )
        .into_response())
}

/// `renkei add-operator`: creates a city operator account (市) at installation, puts it in
/// the admins' room, and returns its one-time setup code.
pub async fn add_operator(
    store: &dyn Store,
    email: &str,
    name: &str,
    hours: u32,
) -> Result<(String, i64), Box<dyn std::error::Error>> {
    let login = input::email("email", email).map_err(|e| format!("{:?}", e.code()))?;
    let name = input::text("name", name, 100).map_err(|e| format!("{:?}", e.code()))?;
    let ids = store
        .create_users(&[NewUser {
            login,
            name,
            profession: "city_official".into(),
            role: Role::Operator,
            ..NewUser::default()
        }])
        .await?;
    let user = ids
        .first()
        .copied()
        .ok_or(StoreError::NotFound("created user"))?;
    let room = store.admins_room().await?;
    store.add_members(&[(room, user)], clock::now_ms()).await?;
    Ok(new_setup_code(store, user, hours).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(&[0xff, 0xd8, 0xff, 0xe0]), Some("image/jpeg"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(image_type(b"<svg xmlns=..."), None);
        assert_eq!(image_type(b""), None);
    }

    #[test]
    fn setup_codes_are_four_groups_of_crockford_base32() {
        let code = random_setup_code();
        let groups: Vec<&str> = code.split('-').collect();
        assert_eq!(groups.len(), 4, "{code}");
        for group in groups {
            assert_eq!(group.len(), 5, "{code}");
            assert!(group.bytes().all(|b| SETUP_ALPHABET.contains(&b)), "{code}");
        }
        assert_ne!(random_setup_code(), code);
        assert_eq!(normalize_setup_code(&code), Some(code.replace('-', "")));
    }

    #[test]
    fn setup_codes_are_read_as_crockford_decodes_them() {
        let canonical = Some("0123456789ABCDEFGHJK".to_string());
        for typed in [
            "01234-56789-ABCDE-FGHJK",
            "01234 56789 abcde fghjk",
            "o1234-56789-abcde-fghjk",
            "0I234-56789-ABCDE-FGHJK",
            "0l234-56789-ABCDE-FGHJK",
            "０１２３４ー５６７８９ーＡＢＣＤＥーＦＧＨＪＫ",
            " 0123456789ABCDEFGHJK\n",
        ] {
            assert_eq!(normalize_setup_code(typed), canonical, "{typed}");
        }
        // U is not in the alphabet; too short, too long, or another kind of token.
        for typed in [
            "U1234-56789-ABCDE-FGHJK",
            "01234-56789-ABCDE-FGHJ",
            "01234-56789-ABCDE-FGHJK-0",
            "",
            "dGhpcyBpcyBhbiBvbGQgc2V0dXAgY29kZSBvZiA0MyBjaA",
        ] {
            assert_eq!(normalize_setup_code(typed), None, "{typed}");
        }
    }
}

//! Facilities (事業所): applications (様式1), the operator's decisions, pledges (様式2),
//! suspension and withdrawal, and the public list of participants (公示, art. 3(2)).

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use renkei_domain::policy::Action;
use renkei_protocol::api::NoticeKind;
use renkei_protocol::api::{
    ApplicantAdmin, Approval, ApprovalResult, FacilityApplication, FacilityDetails, FacilityStatus,
    Pledge, PublicFacility, Reason, RosterEntry,
};
use renkei_protocol::{AccountStatus, Role, ServerMessage};

use crate::account::issue_setup_code;
use crate::app::App;
use crate::http::{ClientIp, HttpError, Id};
use crate::session::Caller;
use crate::store::{MailKind, NewUser, StatusChange};
use crate::{input, membership};
use renkei_domain::clock;

/// The most admins and roster lines an application lists: more staff than any home-care
/// facility has, and a bound on what one public request makes the server check and store.
const MAX_ADMINS: usize = 20;
const MAX_ROSTER: usize = 500;

/// `GET /api/v1/facilities`: the participating facilities.
pub async fn public_list(
    State(app): State<Arc<App>>,
) -> Result<Json<Vec<PublicFacility>>, HttpError> {
    Ok(Json(app.store.public_facilities().await?))
}

/// Checks an application field by field. A refusal's message starts with the field it
/// names, rows by index (`admins[1].email`), so a form can show it next to that field.
fn checked(application: FacilityApplication) -> Result<FacilityApplication, HttpError> {
    if application.admins.is_empty() || application.admins.len() > MAX_ADMINS {
        return Err(HttpError::bad_request(format!(
            "admins: an application names 1 to {MAX_ADMINS} admins"
        )));
    }
    if application.roster.len() > MAX_ROSTER {
        return Err(HttpError::bad_request(format!(
            "roster: a roster has at most {MAX_ROSTER} staff: list the others after approval"
        )));
    }
    if !application.pledged {
        return Err(HttpError::bad_request(
            "pledged: the pledges (様式2, 様式4) must be accepted",
        ));
    }
    let mut admins = Vec::with_capacity(application.admins.len());
    for (i, admin) in application.admins.into_iter().enumerate() {
        let email = input::email(&format!("admins[{i}].email"), &admin.email)?;
        if admins.iter().any(|a: &ApplicantAdmin| a.email == email) {
            return Err(HttpError::bad_request(format!(
                "admins[{i}].email is another admin's too: each admin needs their own \
                 e-mail address (one account per person)"
            )));
        }
        admins.push(ApplicantAdmin {
            name: input::text(&format!("admins[{i}].name"), &admin.name, 100)?,
            kana: input::optional_text(&format!("admins[{i}].kana"), &admin.kana, 100)?,
            email,
            profession: input::text(&format!("admins[{i}].profession"), &admin.profession, 100)?,
        });
    }
    let roster = application
        .roster
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let email = if line.email.trim().is_empty() {
                String::new()
            } else {
                input::email(&format!("roster[{i}].email"), &line.email)?
            };
            Ok(RosterEntry {
                name: input::text(&format!("roster[{i}].name"), &line.name, 100)?,
                profession: input::text(&format!("roster[{i}].profession"), &line.profession, 100)?,
                email,
            })
        })
        .collect::<Result<_, HttpError>>()?;
    Ok(FacilityApplication {
        name: input::text("name", &application.name, 200)?,
        kind: application.kind,
        address: input::text("address", &application.address, 300)?,
        contact: renkei_protocol::api::Contact {
            name: input::text("contact.name", &application.contact.name, 100)?,
            email: input::email("contact.email", &application.contact.email)?,
            phone: input::text("contact.phone", &application.contact.phone, 40)?,
        },
        admins,
        roster,
        pledged: true,
    })
}

/// `POST /api/v1/facilities/applications`: anyone may apply; the operator decides. Each
/// address may apply `RENKEI_APPLICATIONS_PER_HOUR` times an hour (429 beyond), so that no
/// one fills the operator's queue and mailbox.
pub async fn apply(
    State(app): State<Arc<App>>,
    ClientIp(client): ClientIp,
    body: Result<Json<FacilityApplication>, JsonRejection>,
) -> Result<(StatusCode, Json<FacilityDetails>), HttpError> {
    if !app.requests.applications.try_take(client) {
        return Err(HttpError::rate_limited(
            std::time::Duration::from_secs(
                3600 / u64::from(app.config.limits.applications_per_hour.max(1)),
            ),
            "too many applications from this address: retry later",
        ));
    }
    let Json(application) = body?;
    let application = checked(application)?;
    let id = app
        .store
        .apply_facility(&application, clock::now_ms())
        .await?;
    tracing::info!(facility = id, name = %application.name, "facility applied");
    // The operators learn of it on their open pages, and by push and mail, which say only
    // that an application arrived.
    let notice = ServerMessage::FacilityApplied { facility: id };
    for operator in app.store.operators().await? {
        app.bus.notify(operator, &notice);
        crate::notice::tell(
            &app,
            operator,
            NoticeKind::FacilityApplied,
            Some(MailKind::FacilityApplied),
        )
        .await;
    }
    Ok((StatusCode::CREATED, Json(load(&app, id).await?)))
}

async fn load(app: &App, id: i64) -> Result<FacilityDetails, HttpError> {
    app.store
        .facility(id)
        .await?
        .ok_or_else(|| HttpError::not_found("facility"))
}

#[derive(serde::Deserialize)]
pub struct StatusQuery {
    status: Option<FacilityStatus>,
}

/// `GET /api/v1/facilities/applications`.
pub async fn applications(
    State(app): State<Arc<App>>,
    caller: Caller,
    query: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<FacilityDetails>>, HttpError> {
    caller.may(Action::DecideFacility)?;
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    Ok(Json(app.store.facilities(query.status).await?))
}

/// `GET /api/v1/facilities/{id}`.
pub async fn details(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<FacilityDetails>, HttpError> {
    caller.may(Action::ViewFacility { facility: id })?;
    Ok(Json(load(&app, id).await?))
}

/// `POST /api/v1/facilities/{id}/approve`: creates the applicants' admin accounts, each
/// with a one-time code to set a first password, and puts them in the admins' room.
pub async fn approve(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    body: Result<Json<Approval>, JsonRejection>,
) -> Result<Json<ApprovalResult>, HttpError> {
    caller.may(Action::DecideFacility)?;
    let Json(approval) = body?;
    let pledge = approval
        .pledge_received_on
        .as_deref()
        .map(|d| input::date("pledge_received_on", d))
        .transpose()?;
    let facility = load(&app, id).await?;
    let admins: Vec<NewUser> = facility
        .application
        .admins
        .iter()
        .map(|admin| NewUser {
            facility_id: Some(id),
            login: admin.email.clone(),
            name: admin.name.clone(),
            kana: admin.kana.clone(),
            profession: admin.profession.clone(),
            role: Role::Admin,
            ..NewUser::default()
        })
        .collect();
    let ids = app
        .store
        .approve_facility(id, pledge.as_deref(), &admins, clock::now_ms())
        .await?;
    tracing::info!(facility = id, by = caller.user.id, "facility approved");
    let mut setups = Vec::with_capacity(ids.len());
    for user in ids {
        membership::follow_role(&app, user, Role::Admin, caller.user.id).await?;
        setups.push(issue_setup_code(&app, user).await?);
        crate::notice::tell(
            &app,
            user,
            renkei_protocol::api::NoticeKind::Account,
            Some(crate::store::MailKind::SetupCode),
        )
        .await;
    }
    Ok(Json(ApprovalResult {
        facility: load(&app, id).await?,
        admins: setups,
    }))
}

/// Moves a facility between statuses, for the operator.
async fn decide(
    app: &App,
    caller: &Caller,
    id: i64,
    from: &[FacilityStatus],
    to: FacilityStatus,
    reason: Option<&str>,
) -> Result<Vec<i64>, HttpError> {
    caller.may(Action::DecideFacility)?;
    let users = app
        .store
        .set_facility_status(
            id,
            StatusChange {
                from,
                to,
                reason,
                at: clock::now_ms(),
            },
        )
        .await?;
    tracing::info!(facility = id, by = caller.user.id, status = ?to, reason, "facility status changed");
    Ok(users)
}

fn reason(body: Result<Json<Reason>, JsonRejection>) -> Result<String, HttpError> {
    let Json(Reason { reason }) = body?;
    input::reason(&reason)
}

/// `POST /api/v1/facilities/{id}/reject`.
pub async fn reject(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<FacilityDetails>, HttpError> {
    let reason = reason(body)?;
    use FacilityStatus as S;
    decide(&app, &caller, id, &[S::Applied], S::Rejected, Some(&reason)).await?;
    Ok(Json(load(&app, id).await?))
}

/// `POST /api/v1/facilities/{id}/suspend`: the facility's users can no longer log in;
/// their open sockets end at once. Memberships stay for a reinstatement.
pub async fn suspend(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<FacilityDetails>, HttpError> {
    let reason = reason(body)?;
    use FacilityStatus as S;
    let users = decide(
        &app,
        &caller,
        id,
        &[S::Approved],
        S::Suspended,
        Some(&reason),
    )
    .await?;
    for user in users {
        membership::end_sockets(&app, user);
    }
    Ok(Json(load(&app, id).await?))
}

/// `POST /api/v1/facilities/{id}/reinstate`.
pub async fn reinstate(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<FacilityDetails>, HttpError> {
    use FacilityStatus as S;
    decide(&app, &caller, id, &[S::Suspended], S::Approved, None).await?;
    Ok(Json(load(&app, id).await?))
}

/// `POST /api/v1/facilities/{id}/withdraw`: the facility leaves the network; its users
/// are deactivated (removed from every group, sockets ended).
pub async fn withdraw(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    body: Result<Json<Reason>, JsonRejection>,
) -> Result<Json<FacilityDetails>, HttpError> {
    let reason = reason(body)?;
    use FacilityStatus as S;
    let users = decide(
        &app,
        &caller,
        id,
        &[S::Approved, S::Suspended],
        S::Withdrawn,
        Some(&reason),
    )
    .await?;
    for user in users {
        app.store
            .set_user_status(user, AccountStatus::Deactivated, Some(&reason))
            .await?;
        membership::remove_everywhere(&app, user, caller.user.id).await?;
    }
    Ok(Json(load(&app, id).await?))
}

/// `PUT /api/v1/facilities/{id}/pledge`: the date the pledge (様式2) was received.
pub async fn pledge(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    body: Result<Json<Pledge>, JsonRejection>,
) -> Result<Json<FacilityDetails>, HttpError> {
    caller.may(Action::DecideFacility)?;
    let Json(pledge) = body?;
    let date = input::date("received_on", &pledge.received_on)?;
    app.store.set_facility_pledge(id, &date).await?;
    Ok(Json(load(&app, id).await?))
}

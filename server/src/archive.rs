//! The archive (保管庫, 別紙(2)): an admin of the owning facility moves a patient group no
//! longer served to the archive and back. Both are events of the group's sequence, so
//! every member's client moves the group at once; an archived group takes no post on any
//! path and stays readable to its members, the owning facility's admins and the operator.
//!
//! The archive process finds patient groups without a post for `RENKEI_ARCHIVE_AFTER_DAYS`,
//! gives them a notice (an event in the group) `RENKEI_ARCHIVE_NOTICE_DAYS` before, then
//! archives them. It runs once per interval across all nodes: a row in `jobs` decides.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use renkei_domain::policy::Action;
use renkei_protocol::api::{GroupDetails, HistoryPage};
use renkei_protocol::{GroupId, GroupKind, GroupSummary, Millis, Role, Seq};

use crate::app::App;
use crate::config::Config;
use crate::http::{HttpError, Id};
use crate::session::Caller;
use crate::store::{ArchiveCandidate, Change, Store, StoreError};
use crate::{group, membership, wire};

/// The largest page of `history`.
const MAX_PAGE: u32 = 256;

async fn move_group(
    app: &App,
    caller: &Caller,
    id: i64,
    archive: bool,
) -> Result<Json<GroupDetails>, HttpError> {
    let (details, facts) = group::target(app, caller, id).await?;
    caller.may(Action::ArchiveGroup(facts))?;
    if details.group.kind != GroupKind::Patient {
        return Err(HttpError::bad_request(
            "only patient groups go to the archive",
        ));
    }
    let by = caller.user.id;
    let change = if archive {
        Change::Archive { by: Some(by) }
    } else {
        Change::Restore { by }
    };
    membership::change(app, id, change).await?;
    tracing::info!(group = id, by, archive, "archive changed");
    Ok(Json(group::reload(app, id).await?))
}

/// `POST /api/v1/groups/{id}/archive`.
pub async fn archive(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<GroupDetails>, HttpError> {
    move_group(&app, &caller, id, true).await
}

/// `POST /api/v1/groups/{id}/restore`.
pub async fn restore(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
) -> Result<Json<GroupDetails>, HttpError> {
    move_group(&app, &caller, id, false).await
}

/// `GET /api/v1/archive`: the archived groups the caller may read.
pub async fn list(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<Json<Vec<GroupSummary>>, HttpError> {
    let admin_of = match caller.user.role {
        Role::Admin => caller.user.facility_id,
        _ => None,
    };
    let operator = caller.user.role == Role::Operator;
    let groups = app
        .store
        .archived_groups(caller.user.id, admin_of, operator)
        .await?;
    Ok(Json(groups.iter().map(wire::group_summary).collect()))
}

#[derive(serde::Deserialize)]
pub struct HistoryQuery {
    before: Option<Seq>,
    limit: Option<u32>,
}

/// `GET /api/v1/groups/{id}/history`: an archived group's events for those entitled (and
/// any group's for its members).
pub async fn history(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(id): Id,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<HistoryPage>, HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    if query.before.is_some_and(|b| b < 0) {
        return Err(HttpError::bad_request("before must be 0 or more"));
    }
    let (_, facts) = group::target(&app, &caller, id).await?;
    // Members read as on the WebSocket; others only through the archive view.
    caller
        .may(Action::ReadGroup(facts))
        .or_else(|_| caller.may(Action::ViewArchive(facts)))?;
    let limit = query.limit.unwrap_or(50).clamp(1, MAX_PAGE);
    let mut records = app.store.events_before(id, query.before, limit + 1).await?;
    let has_more = records.len() > limit as usize;
    if has_more {
        records.remove(0);
    }
    Ok(Json(HistoryPage {
        group: id,
        events: records.iter().map(wire::event).collect(),
        has_more,
    }))
}

/// What the archive process does to one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Tell the group (and its owning admins) that it will be archived then.
    Notice { archive_after: Millis },
    /// Archive it: inactive for the whole period, and told long enough before.
    Archive,
    /// Someone posted after the notice: the notice no longer holds.
    Withdraw,
}

/// The archive process's periods, in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Periods {
    pub inactive: Millis,
    pub notice: Millis,
}

impl Periods {
    pub fn of(config: &Config) -> Self {
        Periods {
            inactive: i64::from(config.archive_after_days) * DAY,
            notice: i64::from(config.archive_notice_days) * DAY,
        }
    }
}

const DAY: Millis = 86_400_000;

/// What the process would do now to each candidate (pure: the same input, the same plan).
pub fn plan(
    candidates: &[ArchiveCandidate],
    now: Millis,
    periods: Periods,
) -> Vec<(GroupId, Step)> {
    candidates
        .iter()
        .filter_map(|c| {
            let due = c.last_activity + periods.inactive;
            let step = match c.notice_at {
                Some(notice) if c.last_activity > notice => Step::Withdraw,
                Some(notice) if now >= due && now >= notice + periods.notice => Step::Archive,
                Some(_) => return None,
                None if now >= due - periods.notice => Step::Notice {
                    archive_after: due.max(now + periods.notice),
                },
                None => return None,
            };
            Some((c.group, step))
        })
        .collect()
}

/// Runs the process once: gives notices, archives, withdraws notices; logs each step.
pub async fn run_once(app: &App) -> Result<usize, HttpError> {
    let candidates = app.store.archive_candidates().await?;
    let steps = plan(
        &candidates,
        renkei_domain::clock::now_ms(),
        Periods::of(&app.config),
    );
    for (group, step) in &steps {
        let change = match *step {
            Step::Notice { archive_after } => Change::ArchiveNotice { archive_after },
            Step::Archive => Change::Archive { by: None },
            Step::Withdraw => {
                app.store.clear_archive_notice(*group).await?;
                tracing::info!(group, "archive notice withdrawn: the group is active again");
                continue;
            }
        };
        membership::change(app, *group, change).await?;
        tracing::info!(group, ?step, "archive process");
        let action = match step {
            Step::Notice { .. } => "archive process: notice",
            _ => "archive process: archive",
        };
        app.audit.record(system_entry(action, *group)).await;
    }
    let mut purged = 0;
    if let Some(before) = retention_cutoff(&app.config) {
        for group in app.store.purge_candidates(before).await? {
            app.store
                .purge_group(group, before, renkei_domain::clock::now_ms())
                .await?;
            app.bus.control(crate::hub::Control::GroupPurged { group });
            app.files.remove_group(group).await;
            tracing::info!(group, "archived group purged (retention)");
            app.audit
                .record(system_entry("archive process: purge", group))
                .await;
            purged += 1;
        }
    }
    let abandoned = crate::attachment::erase_abandoned(app).await?;
    if abandoned > 0 {
        tracing::info!(files = abandoned, "uploads never posted erased");
    }
    Ok(steps.len() + purged + abandoned)
}

/// The audit record of a step the archive process (the system, no actor) took.
fn system_entry(action: &str, group: GroupId) -> renkei_domain::audit::AuditEntry {
    renkei_domain::audit::AuditEntry {
        at: renkei_domain::clock::now_ms(),
        actor: None,
        facility: None,
        action: action.into(),
        group: Some(group),
        target: format!("group={group}"),
        source: "archive process".into(),
        result: renkei_domain::audit::outcome(None),
    }
}

/// Groups archived before this are purged, when retention is on.
fn retention_cutoff(config: &Config) -> Option<Millis> {
    (config.retention_days > 0)
        .then(|| renkei_domain::clock::now_ms() - i64::from(config.retention_days) * DAY)
}

/// Runs the process every `archive_job_seconds`, once across the cluster (`job`).
pub fn spawn(app: std::sync::Arc<App>) {
    let every = app.config.archive_job_seconds;
    let (store, shutdown) = (std::sync::Arc::clone(&app.store), app.shutdown.clone());
    crate::job::spawn(store, shutdown, "archive", every, app, |app| async move {
        match run_once(&app).await {
            Ok(steps) => tracing::info!(steps, "archive process ran"),
            Err(err) => {
                tracing::warn!(code = ?err.code(), "archive process failed; it runs again next interval")
            }
        }
    });
}

/// `renkei archive --dry-run`: what the process would do now, one line per group.
pub async fn dry_run(store: &dyn Store, config: &Config) -> Result<String, StoreError> {
    let candidates = store.archive_candidates().await?;
    let now = renkei_domain::clock::now_ms();
    let steps = plan(&candidates, now, Periods::of(config));
    let mut out = format!(
        "Archive process (inactive {} days, notice {} days): {} step(s) now\n",
        config.archive_after_days,
        config.archive_notice_days,
        steps.len()
    );
    for (group, step) in steps {
        let name = candidates
            .iter()
            .find(|c| c.group == group)
            .map_or("", |c| c.name.as_str());
        let what = match step {
            Step::Notice { archive_after } => format!(
                "notice: archived after {} unless someone posts",
                date(archive_after)
            ),
            Step::Archive => "archive".to_string(),
            Step::Withdraw => "withdraw the notice (active again)".to_string(),
        };
        out.push_str(&format!("  group {group} {name}: {what}\n"));
    }
    if let Some(before) = retention_cutoff(config) {
        for group in store.purge_candidates(before).await? {
            out.push_str(&format!(
                "  group {group}: purge (archived more than {} days ago)\n",
                config.retention_days
            ));
        }
    }
    Ok(out)
}

fn date(at: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp(at / 1000)
        .map(|t| t.date().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(last_activity: Millis, notice_at: Option<Millis>) -> ArchiveCandidate {
        ArchiveCandidate {
            group: 1,
            name: "g".into(),
            last_activity,
            notice_at,
        }
    }

    #[test]
    fn notice_first_then_archive_unless_someone_posts() {
        let periods = Periods {
            inactive: 90 * DAY,
            notice: 14 * DAY,
        };
        let step = |c: ArchiveCandidate, now: Millis| plan(&[c], now, periods).first().map(|s| s.1);
        // Active recently: nothing.
        assert_eq!(step(candidate(0, None), 70 * DAY), None);
        // 76 days quiet: the notice, for the 90th day.
        assert_eq!(
            step(candidate(0, None), 76 * DAY),
            Some(Step::Notice {
                archive_after: 90 * DAY
            })
        );
        // Noticed late (day 100): still 14 days of notice.
        assert_eq!(
            step(candidate(0, None), 100 * DAY),
            Some(Step::Notice {
                archive_after: 114 * DAY
            })
        );
        // Noticed on day 76: archived on day 90, not before.
        assert_eq!(step(candidate(0, Some(76 * DAY)), 89 * DAY), None);
        assert_eq!(
            step(candidate(0, Some(76 * DAY)), 90 * DAY),
            Some(Step::Archive)
        );
        // Noticed on day 100: archived on day 114, not on day 110.
        assert_eq!(step(candidate(0, Some(100 * DAY)), 110 * DAY), None);
        assert_eq!(
            step(candidate(0, Some(100 * DAY)), 114 * DAY),
            Some(Step::Archive)
        );
        // A post after the notice withdraws it.
        assert_eq!(
            step(candidate(80 * DAY, Some(76 * DAY)), 81 * DAY),
            Some(Step::Withdraw)
        );
    }
}

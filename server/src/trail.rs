//! Reading the audit trail (監査証跡): a facility's admins see their people's actions and
//! everything done in their groups, the operator the whole network's; as JSON or as a CSV
//! file. The records are written by [`crate::audit`].

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use renkei_domain::audit::{AuditEntry, AuditRecord};
use renkei_domain::policy::Action;
use renkei_protocol::api as types;
use renkei_protocol::{GroupId, Millis, UserId};

use crate::app::App;
use crate::http::{HttpError, Id};
use crate::session::Caller;
use crate::store::AuditFilter;

/// What `GET …/audit` takes.
#[derive(Debug, serde::Deserialize)]
pub struct AuditQuery {
    since: Option<Millis>,
    until: Option<Millis>,
    actor: Option<UserId>,
    group: Option<GroupId>,
    limit: Option<u32>,
    /// `csv` for a CSV file; JSON otherwise.
    format: Option<String>,
}

/// `GET /api/v1/facilities/{id}/audit`: the facility's people's actions and everything
/// done in its groups (its admins, the operator).
pub async fn facility_trail(
    State(app): State<Arc<App>>,
    caller: Caller,
    Id(facility): Id,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    caller.may(Action::ViewAudit {
        facility: Some(facility),
    })?;
    search(&app, Some(facility), query).await
}

/// `GET /api/v1/audit`: the whole network's trail (the operator).
pub async fn network_trail(
    State(app): State<Arc<App>>,
    caller: Caller,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    caller.may(Action::ViewAudit { facility: None })?;
    search(&app, None, query).await
}

async fn search(
    app: &App,
    facility: Option<i64>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<Response, HttpError> {
    let Query(query) = query.map_err(|e| HttpError::bad_request(e.body_text()))?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(HttpError::bad_request(format!(
                "format {other:?}: use json or csv"
            )))
        }
    };
    let filter = AuditFilter {
        since: query.since,
        until: query.until,
        actor: query.actor,
        group: query.group,
        facility,
        limit: query.limit.unwrap_or(1000).clamp(1, 10_000),
    };
    let records: Vec<types::AuditRecord> = app
        .store
        .search_audit(&filter)
        .await?
        .into_iter()
        .map(wire_record)
        .collect();
    if !csv {
        return Ok(Json(records).into_response());
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"renkei-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        to_csv(&records),
    )
        .into_response())
}

fn wire_record(record: AuditRecord) -> types::AuditRecord {
    let AuditEntry {
        at,
        actor,
        facility,
        action,
        group,
        target,
        source,
        result,
    } = record.entry;
    types::AuditRecord {
        id: record.id,
        at,
        actor,
        facility,
        action,
        group,
        target,
        source,
        result,
        hash: record.hash.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// The records as CSV (RFC 4180, with a UTF-8 byte order mark so that spreadsheet
/// programs read it as UTF-8), times in UTC (RFC 3339) beside the milliseconds.
fn to_csv(records: &[types::AuditRecord]) -> String {
    let mut out = String::from(
        "\u{feff}id,time,at_ms,actor,facility,action,group,target,source,result,hash\r\n",
    );
    let number = |n: Option<i64>| n.map(|n| n.to_string()).unwrap_or_default();
    for r in records {
        let fields = [
            r.id.to_string(),
            rfc3339(r.at),
            r.at.to_string(),
            number(r.actor),
            number(r.facility),
            r.action.clone(),
            number(r.group),
            r.target.clone(),
            r.source.clone(),
            r.result.clone(),
            r.hash.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|f| csv_field(f)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

fn rfc3339(at: Millis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_it_must_and_defuses_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("-1,2"), "\"'-1,2\"");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

//! The audit trail (監査証跡; MHLW safety guideline): who did what to which patient's
//! information, from where, with what result — never content, passwords or tokens.
//!
//! Records are appended by one writer task per node in batches (a group commit), so that
//! recording costs the message path a channel send, and a caller that must not answer
//! before its record is stored (a post's ack, a REST response) awaits the batch's commit.
//! The records and their hash chain are [`renkei_domain::audit`]; the chain's head is
//! locked by every append, so several nodes append in turn, and [`verify`] follows the
//! stored chain to find an altered, removed or inserted record.

use std::sync::Arc;
use std::time::Duration;

use renkei_domain::audit::{verify_end, verify_page, AuditEntry, AuditRecord, Break};
use renkei_protocol::{GroupId, Millis, UserId};
use tokio::sync::{mpsc, oneshot};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use renkei_domain::policy::Action;
use renkei_protocol::api as types;

use crate::app::App;
use crate::http::{HttpError, Id};
use crate::session::Caller;
use crate::store::{AuditFilter, Store, StoreError};

/// Records one batch appends at most.
const BATCH: usize = 512;
/// Records waiting for the writer before `record` waits too.
const QUEUE: usize = 65_536;
/// How long a caller waits for its record to be stored before answering anyway (the
/// record stays queued and is written when the database returns, unless the node dies).
const WAIT: Duration = Duration::from_secs(5);

/// Verifies the whole stored chain; the number of records and the last hash when whole.
pub async fn verify(store: &dyn Store) -> Result<Result<(i64, Vec<u8>), Break>, StoreError> {
    let mut last = (0, Vec::new());
    loop {
        let mut page = store.audit_records(last.0, 1000).await?;
        if page.is_empty() {
            // The end, unless records were appended since the last page: an append moves
            // the head in the same transaction, so the head never runs ahead of the rows.
            let head = store.audit_head().await?;
            page = store.audit_records(last.0, 1000).await?;
            if page.is_empty() {
                return Ok(verify_end(&last, &head).map(|()| last));
            }
        }
        if let Err(broken) = verify_page(&mut last, &page) {
            return Ok(Err(broken));
        }
    }
}

/// A record waiting for the writer, and who waits for it.
type Pending = (AuditEntry, Option<oneshot::Sender<()>>);

/// The handle that records; cheap to clone.
#[derive(Clone)]
pub struct Auditor {
    queue: mpsc::Sender<Pending>,
}

impl Auditor {
    /// Starts the writer on `store`.
    pub fn start(store: Arc<dyn Store>) -> Auditor {
        let (queue, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, receiver));
        Auditor { queue }
    }

    /// Records `entry` and returns once it is stored (or after `WAIT`, with it queued).
    pub async fn record(&self, entry: AuditEntry) {
        self.record_all(vec![entry]).await;
    }

    /// Records `entries` in order and returns once all are stored (or after `WAIT`).
    /// Batches are appended in queue order, so the last one stored means all are.
    pub async fn record_all(&self, entries: Vec<AuditEntry>) {
        let (stored, wait) = oneshot::channel();
        let mut stored = Some(stored);
        let count = entries.len();
        for (i, entry) in entries.into_iter().enumerate() {
            let waiter = if i + 1 == count { stored.take() } else { None };
            if self.queue.send((entry, waiter)).await.is_err() {
                tracing::error!("audit writer gone; record lost");
                return;
            }
        }
        if stored.is_none() && tokio::time::timeout(WAIT, wait).await.is_err() {
            tracing::warn!("audit record not stored yet; answering anyway");
        }
    }
}

/// The writer: takes what is queued (up to `BATCH`), appends it in one transaction, then
/// releases the waiting callers. A failed append is retried, in order, with backoff.
async fn write(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Pending>) {
    let mut batch: Vec<Pending> = Vec::with_capacity(BATCH);
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        let entries: Vec<AuditEntry> = batch.iter().map(|(entry, _)| entry.clone()).collect();
        let mut backoff = Duration::from_millis(50);
        while let Err(err) = store.append_audit(&entries).await {
            tracing::error!(error = %err, records = entries.len(), "audit append failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        for (_, stored) in batch.drain(..) {
            if let Some(stored) = stored {
                let _ = stored.send(());
            }
        }
    }
}

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

//! The audit trail (監査証跡; MHLW safety guideline): who did what to which patient's
//! information, from where, with what result — never content, passwords or tokens.
//!
//! Records are appended by one writer task per node in batches (a group commit), so that
//! recording costs the message path a channel send, and a caller that must not answer
//! before its record is stored (a post's ack, a REST response) awaits the batch's commit.
//! Each record's hash covers the previous one's hash and its own fields ([`link`]); the
//! chain's head is locked by every append, so several nodes append in turn, and
//! [`verify`] finds an altered, removed or inserted record.

use std::sync::Arc;
use std::time::Duration;

use renkei_protocol::{ErrorCode, GroupId, Millis, UserId};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use renkei_protocol::api as types;

use crate::api::{Caller, Id};
use crate::app::App;
use crate::http::HttpError;
use crate::policy::Action;
use crate::store::{AuditFilter, Store, StoreError};

/// Records one batch appends at most.
const BATCH: usize = 512;
/// Records waiting for the writer before `record` waits too.
const QUEUE: usize = 65_536;
/// How long a caller waits for its record to be stored before answering anyway (the
/// record stays queued and is written when the database returns, unless the node dies).
const WAIT: Duration = Duration::from_secs(5);

/// What happened, before it is numbered and chained.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    pub at: Millis,
    /// Who acted; `None` for an unknown login or the system (the archive process).
    pub actor: Option<UserId>,
    /// The actor's facility.
    pub facility: Option<i64>,
    /// What was done: an endpoint (`POST /api/v1/groups/{id}/archive`), `ws sync`, …
    pub action: String,
    /// The patient or free group concerned, if any.
    pub group: Option<GroupId>,
    /// The ids acted on (the request path, or `seq=12`).
    pub target: String,
    /// The source address.
    pub source: String,
    /// `ok`, an HTTP status, or an error code.
    pub result: String,
}

/// A stored record: its place in the chain and its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub id: i64,
    pub entry: AuditEntry,
    pub hash: Vec<u8>,
}

/// The result of an action for the record: `ok`, or the error code the user was given.
pub fn outcome(refused: Option<ErrorCode>) -> String {
    match refused {
        None => "ok".into(),
        Some(code) => serde_json::to_value(code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{code:?}")),
    }
}

/// The hash of record `id` holding `entry`, chained to the previous record's hash.
pub fn link(previous: &[u8], id: i64, entry: &AuditEntry) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    // JSON of numbers, strings and nulls in a fixed order is one byte string per record.
    let fields = (
        id,
        entry.at,
        entry.actor,
        entry.facility,
        &entry.action,
        entry.group,
        &entry.target,
        &entry.source,
        &entry.result,
    );
    hasher.update(serde_json::to_vec(&fields).unwrap_or_default());
    hasher.finalize().to_vec()
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Break {
    #[error("records {from} to {to} are missing")]
    Missing { from: i64, to: i64 },
    #[error("record {0} was altered, or a record before it was replaced")]
    Altered(i64),
    #[error("records after {last} were removed (the head names record {head})")]
    Truncated { last: i64, head: i64 },
    #[error(
        "record {0} and those after it were added outside the server (the head names record {1})"
    )]
    Inserted(i64, i64),
}

/// Follows the chain record by record from the start; `previous` carries the state
/// between pages: (last id, last hash).
pub fn verify_page(previous: &mut (i64, Vec<u8>), page: &[AuditRecord]) -> Result<(), Break> {
    for record in page {
        let expected = previous.0 + 1;
        if record.id != expected {
            return Err(Break::Missing {
                from: expected,
                to: record.id - 1,
            });
        }
        let hash = link(&previous.1, record.id, &record.entry);
        if hash != record.hash {
            return Err(Break::Altered(record.id));
        }
        *previous = (record.id, hash);
    }
    Ok(())
}

/// After the last page: the chain must end where the head says.
pub fn verify_end(last: &(i64, Vec<u8>), head: &(i64, Vec<u8>)) -> Result<(), Break> {
    if last.0 < head.0 {
        return Err(Break::Truncated {
            last: last.0,
            head: head.0,
        });
    }
    if last.0 > head.0 || last.1 != head.1 {
        return Err(Break::Inserted(head.0 + 1, head.0));
    }
    Ok(())
}

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

    fn entry(action: &str) -> AuditEntry {
        AuditEntry {
            at: 1_700_000_000_000,
            actor: Some(7),
            facility: Some(3),
            action: action.into(),
            group: Some(12),
            target: "/api/v1/groups/12/history".into(),
            source: "127.0.0.1:5000".into(),
            result: "200".into(),
        }
    }

    fn chain(actions: &[&str]) -> Vec<AuditRecord> {
        let mut hash = Vec::new();
        actions
            .iter()
            .enumerate()
            .map(|(i, action)| {
                let id = i as i64 + 1;
                hash = link(&hash, id, &entry(action));
                AuditRecord {
                    id,
                    entry: entry(action),
                    hash: hash.clone(),
                }
            })
            .collect()
    }

    fn check(records: &[AuditRecord], head: (i64, Vec<u8>)) -> Result<(), Break> {
        let mut last = (0, Vec::new());
        verify_page(&mut last, records)?;
        verify_end(&last, &head)
    }

    #[test]
    fn a_whole_chain_verifies_and_every_kind_of_tampering_is_found() {
        let records = chain(&["a", "b", "c", "d"]);
        let head = (4, records[3].hash.clone());
        assert_eq!(check(&records, head.clone()), Ok(()));

        let mut altered = records.clone();
        altered[1].entry.result = "403".into();
        assert_eq!(check(&altered, head.clone()), Err(Break::Altered(2)));

        let mut removed = records.clone();
        removed.remove(1);
        assert_eq!(
            check(&removed, head.clone()),
            Err(Break::Missing { from: 2, to: 2 })
        );

        // A copy of record 3 slipped in before it, renumbering the rest: the copy chains
        // like the original did, and the chain breaks at the record after it.
        let mut inserted = records.clone();
        inserted.insert(2, inserted[2].clone());
        for (i, record) in inserted.iter_mut().enumerate() {
            record.id = i as i64 + 1;
        }
        assert_eq!(check(&inserted, head.clone()), Err(Break::Altered(4)));

        let mut cut = records.clone();
        cut.pop();
        assert_eq!(
            check(&cut, head.clone()),
            Err(Break::Truncated { last: 3, head: 4 })
        );

        // Appended outside the server, even with a correct hash: the head does not know it.
        let mut appended = records.clone();
        let hash = link(&records[3].hash, 5, &entry("e"));
        appended.push(AuditRecord {
            id: 5,
            entry: entry("e"),
            hash,
        });
        assert_eq!(check(&appended, head), Err(Break::Inserted(5, 4)));
    }

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

    #[test]
    fn the_hash_covers_every_field() {
        let base = entry("x");
        let fields: [fn(&mut AuditEntry); 8] = [
            |e| e.at += 1,
            |e| e.actor = None,
            |e| e.facility = Some(4),
            |e| e.action.push('!'),
            |e| e.group = None,
            |e| e.target.push('1'),
            |e| e.source = "::1".into(),
            |e| e.result = "ok".into(),
        ];
        for change in fields {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(link(b"p", 1, &base), link(b"p", 1, &other), "{other:?}");
        }
        assert_ne!(link(b"p", 1, &base), link(b"p", 2, &base));
        assert_ne!(link(b"p", 1, &base), link(b"q", 1, &base));
    }
}

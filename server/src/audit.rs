//! The audit trail (監査証跡; MHLW safety guideline): who did what to which patient's
//! information, from where, with what result — never content, passwords or tokens.
//!
//! Records are appended by one writer task per node in batches (a group commit), so that
//! recording costs the message path a channel send, and a caller that must not answer
//! before its record is stored (a post's ack, a REST response) awaits the batch's commit.
//! The records and their hash chain are [`renkei_domain::audit`]; the chain's head is
//! locked by every append, so several nodes append in turn, and [`verify`] follows the
//! stored chain to find an altered, removed or inserted record. Admins read the trail
//! through [`crate::trail`].

use std::sync::Arc;
use std::time::Duration;

use renkei_domain::audit::{verify_end, verify_page, AuditEntry, Break};
use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError};

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

//! Seals: events of every group's sequence (posts, membership changes, deletions…) bound
//! into the audit trail's hash chain without a record per post. A post's record is its
//! event row, committed before its ack (who, when, which group); every interval, once
//! across the cluster, one record ("events sealed") holds the digest of the events
//! appended since the last seal, group by group. `renkei audit verify` recomputes each
//! digest from the events table, so an event altered, removed or inserted after its seal
//! is found, and checks each post's text against its hash. What a seal covers never
//! changes: the text of a post is left out (a deletion erases it; its hash stays).
//!
//! A chain can be recomputed by whoever can write the database, so each seal's head (its
//! record's chain hash, which covers every record before it) is also published elsewhere
//! as it is made ([`Anchor`]): a log line at info level, metrics, and optionally a line
//! appended to `RENKEI_AUDIT_ANCHOR_FILE`. `renkei audit verify --anchor-file` compares
//! them with the database ([`check_anchors`]).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use renkei_protocol::{GroupId, Seq};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::store::{SealedEvent, Store, StoreError};
use renkei_domain::audit::AuditEntry;

/// The action of a seal's record.
pub const ACTION: &str = "events sealed";
/// The action of a retention purge's record: its group's events are gone on purpose.
const PURGE: &str = "archive process: purge";
/// Groups one record seals at most, and events of one group per seal at most (the rest
/// waits for the next run).
const GROUPS_PER_SEAL: u32 = 1000;
const EVENTS_PER_GROUP: Seq = 10_000;

/// The digest of one group's range of events.
fn digest_into(hasher: &mut Sha256, group: GroupId, events: &[SealedEvent]) {
    for event in events {
        // Fields that never change, in a fixed order: JSON of numbers, strings and nulls
        // is one byte string per event.
        let post = event.kind == "post";
        let fields = (
            group,
            event.seq,
            &event.kind,
            event.author_id,
            // A deletion fills in who deleted a post; other events are born with it.
            event.subject_id.filter(|_| !post),
            &event.client_id,
            event.text.as_ref().filter(|_| !post),
            &event.content_hash,
            event.target_seq,
            event.due_at,
            event.created_at,
        );
        hasher.update(serde_json::to_vec(&fields).unwrap_or_default());
    }
}

/// A seal's ranges as its record's target: `group:first-last` separated by spaces.
fn target(ranges: &[(GroupId, Seq, Seq)]) -> String {
    let mut text = String::new();
    for (group, first, last) in ranges {
        let _ = write!(
            text,
            "{}{group}:{first}-{last}",
            if text.is_empty() { "" } else { " " }
        );
    }
    text
}

fn parse_target(text: &str) -> Option<Vec<(GroupId, Seq, Seq)>> {
    text.split_whitespace()
        .map(|range| {
            let (group, seqs) = range.split_once(':')?;
            let (first, last) = seqs.split_once('-')?;
            Some((group.parse().ok()?, first.parse().ok()?, last.parse().ok()?))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A seal as made: what its anchor says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub at: i64,
    /// The seal's audit record.
    pub record: i64,
    pub groups: usize,
    pub events: u64,
    /// The record's chain hash: the head of the trail once it was appended.
    pub head: Vec<u8>,
}

impl Made {
    /// Its line in the anchor file: `<time> record=<id> groups=<n> events=<n> head=<hex>`.
    pub fn line(&self) -> String {
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| self.at.to_string());
        format!(
            "{time} record={} groups={} events={} head={}",
            self.record,
            self.groups,
            self.events,
            hex(&self.head)
        )
    }
}

/// Where each seal's head is published besides the database: the log (always), this
/// node's metrics, and the anchor file if one is configured.
#[derive(Clone, Default)]
pub struct Anchor {
    /// Opened append-only; a std lock, held for one write and its fsync on a blocking
    /// thread.
    file: Option<(PathBuf, Arc<Mutex<std::fs::File>>)>,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Anchor {
    /// Opens (creating, mode 0600) the anchor file at `path` for appending, if any.
    pub fn open(
        path: Option<&Path>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Anchor, std::io::Error> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = match path {
            Some(path) => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|err| {
                        std::io::Error::new(
                            err.kind(),
                            format!("RENKEI_AUDIT_ANCHOR_FILE {}: {err}", path.display()),
                        )
                    })?;
                Some((path.to_path_buf(), Arc::new(Mutex::new(file))))
            }
            None => None,
        };
        Ok(Anchor {
            file,
            metrics: Some(metrics),
        })
    }

    /// Publishes a seal just committed.
    pub async fn publish(&self, made: &Made) {
        let head = hex(&made.head);
        // Ids and counts only: no patient data.
        tracing::info!(
            record = made.record,
            groups = made.groups,
            events = made.events,
            head = %head,
            "audit seal made"
        );
        if let Some(metrics) = &self.metrics {
            metrics.audit_seals.inc();
            metrics.audit_seal_record.set(made.record);
            metrics.audit_seal_time.set(made.at / 1000);
            let mut prefix = [0u8; 8];
            if let Some(first) = made.head.get(..6) {
                prefix[2..].copy_from_slice(first);
            }
            metrics.audit_seal_head.set(i64::from_be_bytes(prefix));
        }
        if let Some((path, file)) = &self.file {
            let line = made.line();
            let file = Arc::clone(file);
            let written = tokio::task::spawn_blocking(move || {
                // A poisoned lock still guards a file: writing on is right.
                let mut file = file.lock().unwrap_or_else(|e| e.into_inner());
                file.write_all(format!("{line}\n").as_bytes())?;
                file.sync_data()
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(err)) => tracing::error!(
                    path = %path.display(),
                    record = made.record,
                    error = %err,
                    "cannot append the seal to the anchor file"
                ),
                Err(err) => tracing::error!(error = %err, "anchor file writer failed"),
            }
        }
    }
}

/// Seals what is unsealed, one record per [`GROUPS_PER_SEAL`] groups; the number of
/// events sealed. Each seal is published only in the log.
pub async fn seal_once(store: &dyn Store, now: i64) -> Result<u64, StoreError> {
    seal_anchored(store, now, &Anchor::default()).await
}

/// [`seal_once`], publishing each seal through `anchor` once committed.
pub async fn seal_anchored(
    store: &dyn Store,
    now: i64,
    anchor: &Anchor,
) -> Result<u64, StoreError> {
    let mut sealed = 0;
    loop {
        let unsealed = store.unsealed_groups(GROUPS_PER_SEAL).await?;
        if unsealed.is_empty() {
            return Ok(sealed);
        }
        let mut hasher = Sha256::new();
        let mut ranges = Vec::with_capacity(unsealed.len());
        let mut events_in_seal = 0;
        for (group, after, last) in &unsealed {
            let upto = (*last).min(after + EVENTS_PER_GROUP);
            let events = store.sealed_events(*group, *after, upto).await?;
            digest_into(&mut hasher, *group, &events);
            events_in_seal += events.len() as u64;
            ranges.push((*group, after + 1, upto));
        }
        let marks: Vec<(GroupId, Seq)> = ranges.iter().map(|(g, _, last)| (*g, *last)).collect();
        let entry = AuditEntry {
            at: now,
            actor: None,
            facility: None,
            action: ACTION.into(),
            group: None,
            target: target(&ranges),
            source: "audit seal".into(),
            result: hex(&hasher.finalize()),
        };
        let (record, head) = store.append_seal(&entry, &marks).await?;
        sealed += events_in_seal;
        anchor
            .publish(&Made {
                at: now,
                record,
                groups: ranges.len(),
                events: events_in_seal,
                head,
            })
            .await;
        if unsealed.len() < GROUPS_PER_SEAL as usize
            && unsealed
                .iter()
                .all(|(_, after, last)| last - after <= EVENTS_PER_GROUP)
        {
            return Ok(sealed);
        }
    }
}

/// Runs [`seal_anchored`] every `every_seconds` (`RENKEI_AUDIT_SEAL_SECONDS`), once across
/// the cluster (`job`), publishing each seal's head to `anchor`.
pub fn spawn(
    store: Arc<dyn Store>,
    anchor: Arc<Anchor>,
    every_seconds: u32,
    shutdown: CancellationToken,
) {
    let context = (Arc::clone(&store), anchor);
    crate::job::spawn(
        store,
        shutdown,
        "audit seal",
        every_seconds,
        context,
        |(store, anchor)| async move {
            match seal_anchored(store.as_ref(), renkei_domain::clock::now_ms(), &anchor).await {
                Ok(events) => tracing::debug!(events, "events sealed"),
                Err(err) => tracing::warn!(error = %err, "sealing failed; it runs again"),
            }
        },
    );
}

/// Where the database differs from the anchors published as seals were made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorMismatch {
    #[error("line {line} of the anchor file is not a seal's anchor")]
    Malformed { line: usize },
    #[error("record {record} is anchored but no longer in the database")]
    Missing { record: i64 },
    #[error(
        "record {record}'s chain hash is {stored} in the database but {anchored} in the \
         anchor: the trail up to it was rewritten"
    )]
    Differs {
        record: i64,
        anchored: String,
        stored: String,
    },
}

/// Compares every anchor in `text` (the anchor file's lines, or the `head=` and `record=`
/// fields of shipped "audit seal made" log lines in the same form) with the chain hash of
/// its record in the database; how many matched.
pub async fn check_anchors(
    store: &dyn Store,
    text: &str,
) -> Result<Result<u64, AnchorMismatch>, StoreError> {
    let mut matched = 0;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
        };
        let (Some(record), Some(anchored)) = (
            field("record").and_then(|r| r.parse::<i64>().ok()),
            field("head"),
        ) else {
            return Ok(Err(AnchorMismatch::Malformed { line: index + 1 }));
        };
        let stored = store.audit_records(record - 1, 1).await?;
        let Some(stored) = stored.first().filter(|r| r.id == record) else {
            return Ok(Err(AnchorMismatch::Missing { record }));
        };
        let stored = hex(&stored.hash);
        if stored != anchored {
            return Ok(Err(AnchorMismatch::Differs {
                record,
                anchored: anchored.to_string(),
                stored,
            }));
        }
        matched += 1;
    }
    Ok(Ok(matched))
}

/// What the events' check found when nothing was wrong.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sealed {
    pub seals: u64,
    pub events: u64,
    /// Groups whose sealed events were purged on purpose (retention).
    pub purged_groups: u64,
}

/// Where the events differ from their seals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tampered {
    #[error("the events sealed by record {record} differ from their seal (altered, removed or inserted)")]
    Events { record: i64 },
    #[error("the text of event {seq} of group {group} does not match its hash")]
    Text { group: GroupId, seq: Seq },
    #[error("record {0} is not a seal the server writes")]
    Malformed(i64),
}

/// Recomputes every seal from the events table and checks every sealed post's text
/// against its hash.
pub async fn verify(store: &dyn Store) -> Result<Result<Sealed, Tampered>, StoreError> {
    // Groups purged on purpose, from their records.
    let mut purged = HashSet::new();
    let mut after = 0;
    loop {
        let page = store.audit_records(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        purged.extend(
            page.iter()
                .filter(|r| r.entry.action == PURGE)
                .filter_map(|r| r.entry.group),
        );
    }
    let mut found = Sealed {
        purged_groups: purged.len() as u64,
        ..Sealed::default()
    };
    let mut after = 0;
    loop {
        let page = store.audit_records(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for record in page.iter().filter(|r| r.entry.action == ACTION) {
            let Some(ranges) = parse_target(&record.entry.target) else {
                return Ok(Err(Tampered::Malformed(record.id)));
            };
            let mut hasher = Sha256::new();
            let mut gone = false;
            for (group, first, last) in ranges {
                let events = store.sealed_events(group, first - 1, last).await?;
                if events.is_empty() && purged.contains(&group) {
                    gone = true;
                    continue;
                }
                for event in &events {
                    let text = event.text.as_ref().filter(|_| event.kind == "post");
                    if let (Some(text), Some(hash)) = (text, &event.content_hash) {
                        if Sha256::digest(text.as_bytes()).as_slice() != hash.as_slice() {
                            return Ok(Err(Tampered::Text {
                                group,
                                seq: event.seq,
                            }));
                        }
                    }
                }
                digest_into(&mut hasher, group, &events);
                found.events += events.len() as u64;
            }
            // A seal that covered a purged group cannot be recomputed; the rest of its
            // groups were checked event by event above.
            if !gone && hex(&hasher.finalize()) != record.entry.result {
                return Ok(Err(Tampered::Events { record: record.id }));
            }
            found.seals += 1;
        }
    }
    Ok(Ok(found))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: Seq, kind: &str, text: Option<&str>, subject: Option<i64>) -> SealedEvent {
        SealedEvent {
            seq,
            kind: kind.into(),
            author_id: Some(7),
            subject_id: subject,
            client_id: Some(format!("c-{seq}")),
            text: text.map(str::to_string),
            content_hash: Some(vec![seq as u8; 32]),
            target_seq: None,
            due_at: None,
            created_at: 1000 + seq,
        }
    }

    fn digest(group: GroupId, events: &[SealedEvent]) -> Vec<u8> {
        let mut hasher = Sha256::new();
        digest_into(&mut hasher, group, events);
        hasher.finalize().to_vec()
    }

    #[test]
    fn a_deletion_keeps_the_seal_and_anything_else_breaks_it() {
        let events = vec![
            event(1, "post", Some("血圧 128/80"), None),
            event(2, "renamed", Some("山田 太郎"), Some(3)),
        ];
        let sealed = digest(4, &events);
        // A deletion erases the text and names who deleted it: the seal holds.
        let mut deleted = events.clone();
        deleted[0].text = None;
        deleted[0].subject_id = Some(9);
        assert_eq!(digest(4, &deleted), sealed);
        // Anything else changes it.
        let mut altered = events.clone();
        altered[0].created_at += 1;
        assert_ne!(digest(4, &altered), sealed);
        let mut renamed = events.clone();
        renamed[1].text = Some("別人".into());
        assert_ne!(digest(4, &renamed), sealed);
        assert_ne!(digest(4, &events[..1]), sealed, "a removed event");
        assert_ne!(digest(5, &events), sealed, "another group");
    }

    #[test]
    fn an_anchor_line_names_the_record_and_head() {
        let made = Made {
            at: 1_764_745_200_123,
            record: 42,
            groups: 3,
            events: 17,
            head: vec![0xab; 32],
        };
        assert_eq!(
            made.line(),
            format!(
                "2025-12-03T07:00:00.123Z record=42 groups=3 events=17 head={}",
                "ab".repeat(32)
            )
        );
    }

    #[test]
    fn targets_round_trip() {
        let ranges = vec![(3, 1, 40), (12, 7, 7)];
        assert_eq!(target(&ranges), "3:1-40 12:7-7");
        assert_eq!(parse_target(&target(&ranges)), Some(ranges));
        assert_eq!(parse_target("3:1"), None);
        assert_eq!(parse_target(""), Some(vec![]));
    }
}

//! Seals: events of every group's sequence (posts, membership changes, deletions…) bound
//! into the audit trail's hash chain without a record per post. A post's record is its
//! event row, committed before its ack (who, when, which group); every interval, once
//! across the cluster, one record ("events sealed") holds the digest of the events
//! appended since the last seal, group by group. `renkei audit verify` recomputes each
//! digest from the events table, so an event altered, removed or inserted after its seal
//! is found, and checks each post's text against its hash. What a seal covers never
//! changes: the text of a post is left out (a deletion erases it; its hash stays).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use renkei_protocol::{GroupId, Seq};
use sha2::{Digest as _, Sha256};

use crate::app::App;
use crate::audit::AuditEntry;
use crate::store::{SealedEvent, Store, StoreError};

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

/// Seals what is unsealed, one record per [`GROUPS_PER_SEAL`] groups; the number of
/// events sealed.
pub async fn seal_once(store: &dyn Store, now: i64) -> Result<u64, StoreError> {
    let mut sealed = 0;
    loop {
        let unsealed = store.unsealed_groups(GROUPS_PER_SEAL).await?;
        if unsealed.is_empty() {
            return Ok(sealed);
        }
        let mut hasher = Sha256::new();
        let mut ranges = Vec::with_capacity(unsealed.len());
        for (group, after, last) in &unsealed {
            let upto = (*last).min(after + EVENTS_PER_GROUP);
            let events = store.sealed_events(*group, *after, upto).await?;
            digest_into(&mut hasher, *group, &events);
            sealed += events.len() as u64;
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
        store.append_seal(&entry, &marks).await?;
        if unsealed.len() < GROUPS_PER_SEAL as usize
            && unsealed
                .iter()
                .all(|(_, after, last)| last - after <= EVENTS_PER_GROUP)
        {
            return Ok(sealed);
        }
    }
}

/// Runs [`seal_once`] every `RENKEI_AUDIT_SEAL_SECONDS`, once across the cluster (`job`).
pub fn spawn(app: Arc<App>) {
    let every = app.config.audit_seal_seconds;
    crate::job::spawn(app, "audit seal", every, |app| async move {
        match seal_once(app.store.as_ref(), crate::clock::now_ms()).await {
            Ok(events) => tracing::debug!(events, "events sealed"),
            Err(err) => tracing::warn!(error = %err, "sealing failed; it runs again"),
        }
    });
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
    fn targets_round_trip() {
        let ranges = vec![(3, 1, 40), (12, 7, 7)];
        assert_eq!(target(&ranges), "3:1-40 12:7-7");
        assert_eq!(parse_target(&target(&ranges)), Some(ranges));
        assert_eq!(parse_target("3:1"), None);
        assert_eq!(parse_target(""), Some(vec![]));
    }
}

//! The audit trail's records (監査証跡; MHLW safety guideline): who did what to which
//! patient's information, from where, with what result — never content, passwords or
//! tokens — and the hash chain that binds them: each record's hash covers the previous
//! one's hash and its own fields ([`link`]), so that following the chain ([`verify_page`],
//! [`verify_end`]) finds an altered, removed or inserted record.

use renkei_protocol::{ErrorCode, GroupId, Millis, UserId};
use sha2::{Digest as _, Sha256};

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

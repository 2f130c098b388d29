//! Filling sequence gaps from the store: an event that was committed but never reached
//! this node's hub (Redis lost its publication, or the commit's answer was lost with the
//! database connection and the post was found stored on retry) is read back and delivered,
//! in order, so that no member misses it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use renkei_protocol::{GroupId, ServerMessage};

use crate::hub::{Gap, Hub};
use crate::metrics::Metrics;
use crate::outbox::{Delivery, Effect};
use crate::store::{Store, StoreError};
use crate::wire;

/// How long a gap may wait for its events to arrive by themselves (from Redis) before
/// they are read from the store.
const GAP_GRACE: Duration = Duration::from_millis(150);
/// Events read from the store per query when recovering.
const RECOVERY_PAGE: u32 = 256;

/// Fills a node's gaps from the store.
pub struct Recovery {
    pub hub: Arc<Hub>,
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Groups with a recovery under way, so that one gap starts one recovery.
    recovering: Mutex<HashSet<GroupId>>,
}

impl Recovery {
    pub fn new(hub: Arc<Hub>, store: Arc<dyn Store>, metrics: Arc<Metrics>) -> Arc<Recovery> {
        Arc::new(Recovery {
            hub,
            store,
            metrics,
            recovering: Mutex::new(HashSet::new()),
        })
    }

    /// Delivers `delivery` on this node, filling from the store any gap it reveals.
    pub fn deliver(self: &Arc<Self>, delivery: Arc<Delivery>) {
        if let Some(gap) = self.hub.deliver(delivery) {
            self.recover(gap);
        }
    }

    /// Makes sure this node delivers `group` up to `seq` (a post found stored by an
    /// earlier commit whose answer was lost).
    pub fn ensure(self: &Arc<Self>, group: GroupId, seq: i64) {
        let after = self.hub.last_seq(group);
        if after < seq {
            self.recover(Gap {
                group,
                after,
                upto: seq,
            });
        }
    }

    /// Fills a gap from the store unless its events arrive within `GAP_GRACE`.
    pub fn recover(self: &Arc<Self>, gap: Gap) {
        let fresh = self
            .recovering
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(gap.group);
        if !fresh {
            return;
        }
        let recovery = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(GAP_GRACE).await;
            if recovery.hub.last_seq(gap.group) < gap.upto {
                if let Err(err) = recovery.catch_up(gap.group, gap.upto).await {
                    tracing::warn!(error = %err, ?gap, "gap recovery failed; the periodic check retries");
                }
            }
            recovery
                .recovering
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&gap.group);
        });
    }

    /// Delivers a group's events from the store, from this node's last one up to `upto`.
    pub async fn catch_up(&self, group: GroupId, upto: i64) -> Result<(), StoreError> {
        loop {
            let after = self.hub.last_seq(group);
            if after >= upto {
                return Ok(());
            }
            let events = self
                .store
                .events_after(group, after, upto, RECOVERY_PAGE)
                .await?;
            let full = events.len() == RECOVERY_PAGE as usize;
            // A join's effect carries the group as it stands (read once, if needed).
            let mut record_of_group = None;
            for record in &events {
                if record_of_group.is_none()
                    && matches!(record.body, crate::store::EventBody::MemberJoined { .. })
                {
                    record_of_group = self.store.group_details(group).await?.map(|d| d.group);
                }
                let effect = Effect::of(record, record_of_group.as_ref());
                let delivery = Delivery {
                    group: record.group,
                    seq: record.seq,
                    frame: wire::frame(&ServerMessage::Event(wire::event(record))),
                    committed: Instant::now(),
                    effect,
                };
                // Events that arrive meanwhile are ignored as delivered already.
                let _ = self.hub.deliver(Arc::new(delivery));
                self.metrics.bus_recovered.inc();
            }
            if !full {
                return Ok(());
            }
        }
    }
}

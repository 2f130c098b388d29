//! Background jobs that run once per interval across the whole cluster: every node looks
//! four times per interval, and whichever first claims the interval (a row of `jobs`,
//! moved by one conditional `UPDATE`) runs the job. A timer per node could not say that.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Runs `run` with `context` every `every_seconds` on whichever node claims the interval
/// of job `name` in `store`, until `shutdown`; 0 seconds turns the job off. `run` reports
/// its own outcome.
pub fn spawn<C, F, Fut>(
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
    name: &'static str,
    every_seconds: u32,
    context: C,
    run: F,
) where
    C: Clone + Send + 'static,
    F: Fn(C) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let every = u64::from(every_seconds);
    if every == 0 {
        return;
    }
    tokio::spawn(async move {
        // Looking four times per interval keeps a run late by at most a quarter of it.
        let mut tick = tokio::time::interval(Duration::from_millis(every * 250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let now = renkei_domain::clock::now_ms();
            match store.claim_job(name, now, (every * 1000) as i64).await {
                Ok(true) => run(context.clone()).await,
                Ok(false) => {}
                Err(err) => tracing::warn!(job = name, error = %err, "cannot claim the job"),
            }
        }
    });
}

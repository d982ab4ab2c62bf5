//! What every controller is to the manager: a name, a work queue its informer handlers fill,
//! and a [`Reconcile`] that a few workers call with one key at a time. A reconcile is
//! level-triggered: it reads the caches and makes the world match, whatever the reason it was
//! called; an error retries the key with back-off, and `Ok(Some(after))` looks again later.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Error;
use crate::metrics::{ControllerLabel, Metrics, ResultLabel};
use crate::queue::Queue;

/// The sync of one controller.
pub trait Reconcile: Send + Sync + 'static {
    /// Makes the object behind `key` (`namespace/name`, or `name`) what it should be; returns
    /// when to look again, if time alone can change the answer (minReadySeconds, a schedule).
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>>;
}

pub struct Controller {
    pub name: &'static str,
    pub queue: Arc<Queue>,
    pub workers: usize,
    pub reconciler: Arc<dyn Reconcile>,
    /// Resolves once every informer the controller reads has its first list.
    pub synced: BoxFuture<'static, ()>,
}

/// How often the queue depth gauge is refreshed.
const GAUGE_EVERY: Duration = Duration::from_secs(1);

/// Waits for the caches, then reconciles until `shutdown`.
pub async fn run(controller: Controller, metrics: Metrics, shutdown: CancellationToken) {
    let Controller { name, queue, workers, reconciler, synced } = controller;
    tokio::select! {
        () = synced => {}
        () = shutdown.cancelled() => return,
    }
    tracing::info!(controller = name, workers, "caches synced; reconciling");
    let gauge = {
        let (queue, metrics, shutdown) = (queue.clone(), metrics.clone(), shutdown.clone());
        tokio::spawn(async move {
            let depth = metrics.queue_depth.get_or_create(&ControllerLabel { controller: name }).clone();
            while shutdown.run_until_cancelled(tokio::time::sleep(GAUGE_EVERY)).await.is_some() {
                depth.set(i64::try_from(queue.len()).unwrap_or(i64::MAX));
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers.max(1) {
        let (queue, reconciler, metrics, shutdown) =
            (queue.clone(), reconciler.clone(), metrics.clone(), shutdown.clone());
        tasks.spawn(async move {
            while let Some(key) = queue.next(&shutdown).await {
                work(name, &queue, reconciler.as_ref(), &metrics, &key).await;
                queue.done(&key);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    gauge.abort();
}

async fn work(name: &'static str, queue: &Queue, reconciler: &dyn Reconcile, metrics: &Metrics, key: &str) {
    let started = Instant::now();
    let span = tracing::debug_span!("reconcile", controller = name, key);
    let result = reconciler.reconcile(key).instrument(span).await;
    metrics.duration.get_or_create(&ControllerLabel { controller: name }).observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "success" } else { "error" };
    metrics.reconciles.get_or_create(&ResultLabel { controller: name, result: outcome }).inc();
    match result {
        Ok(again) => {
            queue.forget(key);
            if let Some(after) = again {
                queue.add_after(key.to_string(), after);
            }
        }
        Err(e) => {
            let failures = queue.failures(key);
            // The first failures are usually a stale cache (a 409) and heal at once; say more
            // as they repeat.
            if failures < 3 {
                tracing::debug!(controller = name, key, error = %e, "reconcile failed; retrying");
            } else {
                tracing::warn!(controller = name, key, failures, error = %e, "reconcile failed; retrying");
            }
            queue.add_rate_limited(key.to_string());
        }
    }
}

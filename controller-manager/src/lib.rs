//! rk-controller-manager: the controllers that turn intent into pods, in one process.
//!
//! A tour of the modules:
//! - [`informers`]: one kube-rs watcher per kind for the whole process, a cache indexed by
//!   namespace, and change handlers that only enqueue keys.
//! - [`queue`]: a controller's work queue (deduplicated keys, never two workers on one key,
//!   delayed adds, per-key back-off).
//! - [`expectations`]: a controller's own writes not yet seen in the cache.
//! - [`controller`]: a controller as the manager sees it (name, queue, [`controller::Reconcile`])
//!   and the workers that drive it.
//! - [`controllers`]: the registry, and one module per controller with a pure `plan`.
//! - [`pods`]: keys, controller references, readiness, pods from templates.
//! - [`services`]: which pods a Service selects and which port its targetPort means on them.
//! - [`config`], [`metrics`], [`error`].
//!
//! [`run`] starts the informers at once (a standby keeps warm caches), stands for the
//! `kube-system/rk-controller-manager` Lease, and once it leads runs every selected
//! controller until shutdown or until the Lease is lost.

pub mod config;
pub mod controller;
pub mod controllers;
mod error;
pub mod expectations;
pub mod informers;
pub mod metrics;
pub mod pods;
pub mod queue;
pub mod services;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::Error;

use daemon::events::Recorder;
use informers::Informers;
use metrics::Metrics;

/// What every controller's constructor gets.
pub struct Context {
    pub client: kube::Client,
    pub informers: Arc<Informers>,
    pub recorder: Arc<Recorder>,
    pub config: Arc<Config>,
}

/// Runs the controllers until `shutdown`; returns [`Error::LostLeadership`] if the Lease is lost.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let client = daemon::client_from_kubeconfig(&config.kubeconfig).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("rk_controller_manager");
    let metrics = Metrics::new(&mut registry);
    if let Some(address) = config.health_address {
        let listener = daemon::health::bind(address).await?;
        tracing::info!(address = %listener.local_addr()?, "serving /healthz and /metrics");
        tokio::spawn(daemon::health::serve(listener, Arc::new(registry), shutdown.clone()));
    }
    let config = Arc::new(config);
    let ctx = Context {
        client: client.clone(),
        informers: Arc::new(Informers::new(client.clone())),
        recorder: Arc::new(Recorder::new(client.clone(), "controller-manager", None)),
        config: config.clone(),
    };
    let controllers: Vec<_> = controllers::REGISTRY
        .iter()
        .filter(|entry| config.controllers.contains(entry.name))
        .map(|entry| (entry.new)(&ctx))
        .collect();
    let stop = shutdown.child_token();
    ctx.informers.start(&stop);

    let leadership = match config.leader_election.clone() {
        Some(lease) => match daemon::leader::acquire(client, lease, shutdown.clone()).await? {
            Some(held) => Some(held),
            None => return Ok(()),
        },
        None => None,
    };
    let lost = leadership.as_ref().map(daemon::leader::Leadership::lost).unwrap_or_default();
    metrics.leader.set(1);
    let names: Vec<&str> = controllers.iter().map(|c| c.name).collect();
    tracing::info!(controllers = ?names, "running controllers");
    let mut running = tokio::task::JoinSet::new();
    for controller in controllers {
        running.spawn(controller::run(controller, metrics.clone(), stop.clone()));
    }
    let result = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        () = lost.cancelled() => Err(Error::LostLeadership),
    };
    stop.cancel();
    while running.join_next().await.is_some() {}
    metrics.leader.set(0);
    if let Some(held) = leadership {
        held.release().await;
    }
    result
}

//! The pv-protection controller: a volume being deleted keeps its finalizer while it is Bound.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, PostParams};

use super::plan::{self, PV_PROTECTION, Plan};
use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "pv-protection-controller";
/// As upstream: one worker.
const WORKERS: usize = 1;

fn needs_sync(volume: &PersistentVolume) -> bool {
    volume.metadata.deletion_timestamp.is_some() || !plan::has_finalizer(&volume.metadata, PV_PROTECTION)
}

pub fn new(ctx: &Context) -> Controller {
    let volumes = ctx.informers.get::<PersistentVolume>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        volumes.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && needs_sync(new)
            {
                queue.add(new.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let synced = informers::all_synced([volumes.until_synced()]);
    let reconciler = PvProtection { client: ctx.client.clone(), volumes };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct PvProtection {
    client: kube::Client,
    volumes: Informer<PersistentVolume>,
}

impl Reconcile for PvProtection {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl PvProtection {
    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(volume) = self.volumes.get("", name) else { return Ok(None) };
        let finalizers = match plan::volume(&volume) {
            Plan::Steady => return Ok(None),
            Plan::InUse(claim) => {
                tracing::debug!(volume = name, claim, "bound; keeping it");
                return Ok(None);
            }
            Plan::AddFinalizer => plan::with_finalizer(&volume.metadata, PV_PROTECTION),
            Plan::RemoveFinalizer => plan::without_finalizer(&volume.metadata, PV_PROTECTION),
        };
        let adding = volume.metadata.deletion_timestamp.is_none();
        let mut updated = (*volume).clone();
        updated.metadata.finalizers = Some(finalizers);
        // Conditional on the cached resourceVersion: a volume bound since is looked at again.
        match Api::<PersistentVolume>::all(self.client.clone()).replace(name, &PostParams::default(), &updated).await {
            Ok(_) if adding => tracing::debug!(volume = name, "added the finalizer"),
            Ok(_) => tracing::info!(volume = name, "not bound; removed the finalizer"),
            Err(e) if super::is_gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

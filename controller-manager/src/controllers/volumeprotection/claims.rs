//! The pvc-protection controller: a claim being deleted keeps its finalizer while a pod uses it.
//! Claims are synced when they change (and need something: a finalizer to add or a deletion) and
//! when a pod referring to a claim being deleted changes or goes.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PostParams};

use super::plan::{self, PVC_PROTECTION, Plan};
use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::pods::{key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "pvc-protection-controller";
/// As upstream: one worker.
const WORKERS: usize = 1;

fn needs_sync(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.deletion_timestamp.is_some() || !plan::has_finalizer(&claim.metadata, PVC_PROTECTION)
}

pub fn new(ctx: &Context) -> Controller {
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        claims.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && needs_sync(new)
            {
                queue.add(key(&new.metadata));
            }
        });
    }
    {
        let (queue, claims) = (queue.clone(), claims.clone());
        pods.on_change(move |change| {
            let pod = change.object();
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            for name in plan::claims_of(pod) {
                if claims.get(ns, &name).is_some_and(|c| c.metadata.deletion_timestamp.is_some()) {
                    queue.add(format!("{ns}/{name}"));
                }
            }
        });
    }
    let synced = informers::all_synced([claims.until_synced(), pods.until_synced()]);
    let reconciler = PvcProtection { client: ctx.client.clone(), claims, pods };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct PvcProtection {
    client: kube::Client,
    claims: Informer<PersistentVolumeClaim>,
    pods: Informer<Pod>,
}

impl Reconcile for PvcProtection {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl PvcProtection {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(claim) = self.claims.get(ns, name) else { return Ok(None) };
        let cached = self.pods.list(ns);
        let finalizers = match plan::claim(&claim, cached.iter().map(Arc::as_ref)) {
            Plan::Steady => return Ok(None),
            Plan::InUse(pod) => {
                tracing::debug!(claim = key, pod, "in use; keeping it");
                return Ok(None);
            }
            Plan::AddFinalizer => plan::with_finalizer(&claim.metadata, PVC_PROTECTION),
            Plan::RemoveFinalizer => {
                // The cache may not have seen a pod made a moment ago: ask the API server.
                let live = Api::<Pod>::namespaced(self.client.clone(), ns).list(&ListParams::default()).await?;
                if let Some(pod) = plan::user(&claim, &live.items) {
                    let pod = pod.metadata.name.as_deref().unwrap_or("");
                    tracing::debug!(claim = key, pod, "in use (the cache was behind); keeping it");
                    return Ok(None);
                }
                plan::without_finalizer(&claim.metadata, PVC_PROTECTION)
            }
        };
        let adding = claim.metadata.deletion_timestamp.is_none();
        let mut updated = (*claim).clone();
        updated.metadata.finalizers = Some(finalizers);
        // Conditional on the cached resourceVersion: a claim changed since is looked at again.
        match Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
            .replace(name, &PostParams::default(), &updated)
            .await
        {
            Ok(_) if adding => tracing::debug!(claim = key, "added the finalizer"),
            Ok(_) => tracing::info!(claim = key, "no pod uses it; removed the finalizer"),
            Err(e) if super::is_gone(&e) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

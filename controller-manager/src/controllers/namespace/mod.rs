//! The namespace controller: a namespace being deleted (Terminating, with the `kubernetes`
//! finalizer in its spec) is emptied of every namespaced kind, and once nothing is left its
//! finalizer is dropped through the `finalize` subresource, so the API server removes it.
//! Objects that take time to go (pods stopping gracefully, objects with finalizers) are looked
//! at again every few seconds.

use std::sync::Arc;
use std::time::Duration;

use api_types::registry;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::core::PartialObjectMeta;

use crate::controller::{Controller, Reconcile};
use crate::controllers::api_resource;
use crate::informers::{self, Change, Informer};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "namespace-controller";
/// The finalizer in `spec.finalizers` that this controller owns.
pub const FINALIZER: &str = "kubernetes";
const WORKERS: usize = 2;
/// How soon to look again while content remains.
const RECHECK: Duration = Duration::from_secs(2);

pub fn new(ctx: &Context) -> Controller {
    let namespaces = ctx.informers.get::<Namespace>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        namespaces.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && new.metadata.deletion_timestamp.is_some()
            {
                queue.add(new.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let synced = informers::all_synced([namespaces.until_synced()]);
    let reconciler = Namespaces { client: ctx.client.clone(), namespaces };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Namespaces {
    client: kube::Client,
    namespaces: Informer<Namespace>,
}

impl Reconcile for Namespaces {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Namespaces {
    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get("", name) else { return Ok(None) };
        let finalizers = ns.spec.as_ref().and_then(|s| s.finalizers.clone()).unwrap_or_default();
        if ns.metadata.deletion_timestamp.is_none() || !finalizers.iter().any(|f| f == FINALIZER) {
            return Ok(None);
        }
        let mut remaining = Vec::new();
        for resource in registry::RESOURCES.iter().filter(|r| r.namespaced) {
            let ar = api_resource(resource);
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), name, &ar);
            match api.delete_collection(&DeleteParams::background(), &ListParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 405 => continue,
                Err(e) => return Err(e.into()),
            }
            let left: Api<PartialObjectMeta<DynamicObject>> = Api::namespaced_with(self.client.clone(), name, &ar);
            if !left.list(&ListParams::default().limit(1)).await?.items.is_empty() {
                remaining.push(resource.group_resource());
            }
        }
        if !remaining.is_empty() {
            tracing::debug!(namespace = name, ?remaining, "content remains");
            return Ok(Some(RECHECK));
        }
        let mut finalized = (*ns).clone();
        if let Some(spec) = finalized.spec.as_mut() {
            spec.finalizers = Some(finalizers.into_iter().filter(|f| f != FINALIZER).collect());
        }
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        match namespaces.replace_subresource("finalize", name, &PostParams::default(), &finalized).await {
            Ok(_) => tracing::info!(namespace = name, "emptied and finalized"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

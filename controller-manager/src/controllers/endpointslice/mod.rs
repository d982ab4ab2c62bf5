//! The EndpointSlice controller: every Service with a selector gets EndpointSlices (owned by it,
//! labelled `kubernetes.io/service-name`) holding its pods' endpoints, at most 100 per slice,
//! terminating ones marked ([`plan`]). The garbage collector removes them with the Service.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Informer};
use crate::pods::{key, split_key};
use crate::queue::Queue;
use crate::{Context, Error, services};

pub const NAME: &str = "endpointslice-controller";
/// Upstream's `--concurrent-service-endpoint-syncs`.
const WORKERS: usize = 5;

/// The Service a slice managed here belongs to.
fn service_of(slice: &EndpointSlice) -> Option<String> {
    let labels = slice.metadata.labels.as_ref()?;
    if labels.get(plan::MANAGED_BY_LABEL).map(String::as_str) != Some(plan::MANAGED_BY) {
        return None;
    }
    let name = labels.get(plan::SERVICE_NAME_LABEL)?;
    Some(format!("{}/{name}", slice.metadata.namespace.as_deref().unwrap_or("")))
}

pub fn new(ctx: &Context) -> Controller {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let slices = ctx.informers.get::<EndpointSlice>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        services.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (queue, services) = (queue.clone(), services.clone());
        pods.on_change(move |change| {
            for k in services::keys_for_pod_change(&services, change) {
                queue.add(k);
            }
        });
    }
    {
        let queue = queue.clone();
        slices.on_change(move |change| {
            if let Some(k) = service_of(change.object()) {
                queue.add(k);
            }
        });
    }
    let synced = informers::all_synced([services.until_synced(), pods.until_synced(), slices.until_synced()]);
    let reconciler = Slices { client: ctx.client.clone(), services, pods, slices, written: Default::default() };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Slices {
    client: kube::Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    slices: Informer<EndpointSlice>,
    /// By Service, the latest change already written (upstream keeps the same to report each
    /// change once in `endpoints.kubernetes.io/last-change-trigger-time`). After a restart the
    /// time the slices carry stands in.
    written: Mutex<HashMap<String, Timestamp>>,
}

impl Reconcile for Slices {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Slices {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        // A deleted Service's slices go with it through their owner reference.
        let Some(svc) = self.services.get(ns, name).filter(|s| s.metadata.deletion_timestamp.is_none()) else {
            self.written.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
            return Ok(None);
        };
        let Some(selector) = services::managed_selector(&svc) else { return Ok(None) };
        let selected: Vec<Arc<Pod>> =
            self.pods.list(ns).into_iter().filter(|p| services::selects(selector, p)).collect();
        let uid = svc.metadata.uid.as_deref().unwrap_or("");
        let existing: Vec<Arc<EndpointSlice>> = self
            .slices
            .list(ns)
            .into_iter()
            .filter(|s| service_of(s).as_deref() == Some(key))
            .filter(|s| crate::pods::controller_of(&s.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let mut plan = plan::plan(&svc, &existing, plan::desired(&svc, &selected));
        let since = self.written.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied();
        let (earliest, latest) = plan::changes_since(&svc, &selected, since.max(plan::carried(&existing)));
        plan::stamp(&mut plan, earliest);
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), ns);
        let pp = PostParams::default();
        for slice in &plan.update {
            api.replace(slice.metadata.name.as_deref().unwrap_or(""), &pp, slice).await?;
        }
        for slice in &plan.create {
            api.create(&pp, slice).await?;
        }
        for name in &plan.delete {
            match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(latest) = latest {
            self.written.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_string(), latest);
        }
        if !(plan.create.is_empty() && plan.update.is_empty() && plan.delete.is_empty()) {
            tracing::debug!(
                service = key,
                created = plan.create.len(),
                updated = plan.update.len(),
                deleted = plan.delete.len(),
                "endpoint slices written"
            );
        }
        Ok(None)
    }
}

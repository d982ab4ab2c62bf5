//! The Endpoints controller: the Endpoints object of every Service with a selector lists the
//! selected pods' IPs and target ports ([`plan::subsets`]); it goes when its Service goes.
//! Services without a selector keep the Endpoints their owners write.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use kube::api::{Api, DeleteParams, ObjectMeta, PostParams};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Informer};
use crate::pods::{key, split_key};
use crate::queue::Queue;
use crate::{Context, Error, services};

pub const NAME: &str = "endpoints-controller";
/// Upstream's `--concurrent-endpoint-syncs`.
const WORKERS: usize = 5;

pub fn new(ctx: &Context) -> Controller {
    let services = ctx.informers.get::<Service>();
    let pods = ctx.informers.get::<Pod>();
    let endpoints = ctx.informers.get::<Endpoints>();
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
        // Endpoints deleted or changed by someone else are put back.
        let queue = queue.clone();
        endpoints.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    let synced = informers::all_synced([services.until_synced(), pods.until_synced(), endpoints.until_synced()]);
    let reconciler = EndpointsController { client: ctx.client.clone(), services, pods, endpoints };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct EndpointsController {
    client: kube::Client,
    services: Informer<Service>,
    pods: Informer<Pod>,
    endpoints: Informer<Endpoints>,
}

impl Reconcile for EndpointsController {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl EndpointsController {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let api: Api<Endpoints> = Api::namespaced(self.client.clone(), ns);
        let current = self.endpoints.get(ns, name);
        let Some(svc) = self.services.get(ns, name) else {
            if current.is_some() {
                match api.delete(name, &DeleteParams::default()).await {
                    Ok(_) => tracing::debug!(endpoints = key, "deleted with its service"),
                    Err(kube::Error::Api(e)) if e.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(None);
        };
        let Some(selector) = services::managed_selector(&svc) else { return Ok(None) };
        let selected: Vec<Arc<Pod>> =
            self.pods.list(ns).into_iter().filter(|p| services::selects(selector, p)).collect();
        let subsets = plan::subsets(&svc, &selected);
        let labels = plan::labels(&svc);
        let subsets_field = (!subsets.is_empty()).then_some(subsets);
        let labels_field = (!labels.is_empty()).then_some(labels);
        match current {
            Some(e) if e.subsets == subsets_field && e.metadata.labels == labels_field => Ok(None),
            Some(e) => {
                let mut updated = (*e).clone();
                updated.subsets = subsets_field;
                updated.metadata.labels = labels_field;
                api.replace(name, &PostParams::default(), &updated).await?;
                Ok(None)
            }
            None => {
                let endpoints = Endpoints {
                    metadata: ObjectMeta { name: Some(name.into()), labels: labels_field, ..Default::default() },
                    subsets: subsets_field,
                };
                match api.create(&PostParams::default(), &endpoints).await {
                    Ok(_) => Ok(None),
                    // The cache is behind: look again once it has caught up.
                    Err(kube::Error::Api(e)) if e.code == 409 => Ok(Some(Duration::from_millis(100))),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }
}

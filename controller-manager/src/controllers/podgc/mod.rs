//! The pod garbage collector: pods bound to a node that no longer exists are deleted at once
//! (grace period 0: there is no kubelet left to stop them). A node missing from the cache is
//! looked up through the API first, so a lagging watch never costs a pod.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Preconditions};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::pods::{key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "pod-garbage-collector-controller";
const WORKERS: usize = 2;

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref().filter(|n| !n.is_empty())
}

pub fn new(ctx: &Context) -> Controller {
    let nodes = ctx.informers.get::<Node>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    {
        let (queue, nodes) = (queue.clone(), nodes.clone());
        pods.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && node_of(new).is_some_and(|n| nodes.get("", n).is_none())
            {
                queue.add(key(&new.metadata));
            }
        });
    }
    {
        let (queue, pods) = (queue.clone(), pods.clone());
        nodes.on_change(move |change| {
            if let Change::Deleted(node) = change {
                let name = node.metadata.name.as_deref();
                for pod in pods.all().iter().filter(|p| node_of(p) == name) {
                    queue.add(key(&pod.metadata));
                }
            }
        });
    }
    let synced = informers::all_synced([nodes.until_synced(), pods.until_synced()]);
    let reconciler = PodGc { client: ctx.client.clone(), nodes, pods };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct PodGc {
    client: kube::Client,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
}

impl Reconcile for PodGc {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl PodGc {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(pod) = self.pods.get(ns, name) else { return Ok(None) };
        let Some(node) = node_of(&pod) else { return Ok(None) };
        if self.nodes.get("", node).is_some() {
            return Ok(None);
        }
        if Api::<Node>::all(self.client.clone()).get_opt(node).await?.is_some() {
            return Ok(None);
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match Api::<Pod>::namespaced(self.client.clone(), ns).delete(name, &params).await {
            Ok(_) => tracing::info!(pod = key, node, "deleted: its node is gone"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

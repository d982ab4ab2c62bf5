//! The garbage collector: deletes objects whose owners are all gone, and carries out the
//! `Foreground` and `Orphan` propagation policies the API server leaves to it (as the
//! `foregroundDeletion` and `orphan` finalizers).
//!
//! It watches the metadata of every served kind but Events (`as=PartialObjectMetadata`, as
//! upstream's metadata informers do) into a [`graph::Graph`] of owners and dependents. Graph
//! changes enqueue UIDs; a reconcile decides for one object with [`graph::decide`]. An owner
//! missing from the graph is looked up through the API before anything is deleted, so a watch
//! that lags can never make a live owner look gone.

pub mod graph;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::registry::{self, ResourceInfo};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller::{Controller, Reconcile};
use crate::controllers::api_resource;
use crate::queue::Queue;
use crate::{Context, Error};
use graph::{Action, FOREGROUND, Graph, Node, ORPHAN, Owner};

pub const NAME: &str = "garbage-collector-controller";
/// Upstream's `--concurrent-gc-syncs` is 20; these reconciles are mostly one API call.
const WORKERS: usize = 10;

type Shared = Arc<Mutex<Graph>>;

fn lock(graph: &Shared) -> std::sync::MutexGuard<'_, Graph> {
    graph.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The kinds watched: everything served that can have owners (not Events).
fn watched() -> impl Iterator<Item = &'static ResourceInfo> {
    registry::RESOURCES.iter().filter(|r| r.kind != "Event")
}

fn api_for(client: &kube::Client, r: &ResourceInfo, namespace: &str) -> Api<DynamicObject> {
    let ar = api_resource(r);
    if r.namespaced { Api::namespaced_with(client.clone(), namespace, &ar) } else { Api::all_with(client.clone(), &ar) }
}

pub fn new(ctx: &Context) -> Controller {
    let graph: Shared = Arc::default();
    let queue = Arc::new(Queue::new());
    let (synced_tx, mut synced_rx) = tokio::sync::watch::channel(false);
    let kinds: Vec<&'static ResourceInfo> = watched().collect();
    let left = Arc::new(AtomicUsize::new(kinds.len()));
    let synced_tx = Arc::new(synced_tx);
    for resource in kinds {
        let (client, graph, queue, left, synced_tx) =
            (ctx.client.clone(), graph.clone(), queue.clone(), left.clone(), synced_tx.clone());
        ctx.informers.on_start(move |shutdown| {
            tokio::spawn(async move {
                let first_list = move || {
                    if left.fetch_sub(1, Ordering::AcqRel) == 1 {
                        synced_tx.send_replace(true);
                    }
                };
                watch(client, resource, graph, queue, first_list, shutdown).await;
            });
        });
    }
    let synced = async move {
        let _ = synced_rx.wait_for(|s| *s).await;
    }
    .boxed();
    let reconciler = Collector { client: ctx.client.clone(), graph };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

/// Feeds one kind's metadata into the graph; `first_list` is called once, after the first list.
async fn watch(
    client: kube::Client,
    resource: &'static ResourceInfo,
    graph: Shared,
    queue: Arc<Queue>,
    first_list: impl FnOnce(),
    shutdown: CancellationToken,
) {
    let api: Api<PartialObjectMeta<DynamicObject>> = Api::all_with(client, &api_resource(resource));
    let mut events = std::pin::pin!(watcher(api, watcher::Config::default().any_semantic()).default_backoff());
    let mut first_list = Some(first_list);
    let mut relist: Vec<Node> = Vec::new();
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = shutdown.cancelled() => return,
        };
        let look = match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!(kind = resource.kind, error = %e, "metadata watch failed; retrying");
                continue;
            }
            Some(Ok(watcher::Event::Apply(o))) => match Node::from_meta(resource, &o.metadata) {
                Some(node) => lock(&graph).apply(node),
                None => continue,
            },
            Some(Ok(watcher::Event::Delete(o))) => match o.metadata.uid {
                Some(uid) => lock(&graph).remove(&uid),
                None => continue,
            },
            Some(Ok(watcher::Event::Init)) => {
                relist.clear();
                continue;
            }
            Some(Ok(watcher::Event::InitApply(o))) => {
                relist.extend(Node::from_meta(resource, &o.metadata));
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => {
                let fresh: HashSet<String> = relist.iter().map(|n| n.uid.clone()).collect();
                let mut g = lock(&graph);
                let mut look: Vec<String> = relist.drain(..).flat_map(|n| g.apply(n)).collect();
                for gone in g.uids_of(resource).into_iter().filter(|u| !fresh.contains(u)) {
                    look.extend(g.remove(&gone));
                }
                drop(g);
                if let Some(done) = first_list.take() {
                    done();
                }
                look
            }
        };
        for uid in look {
            queue.add(uid);
        }
    }
}

struct Collector {
    client: kube::Client,
    graph: Shared,
}

impl Reconcile for Collector {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 409)
}

impl Collector {
    async fn sync(&self, uid: &str) -> Result<Option<Duration>, Error> {
        // Read the graph, then let go of it before any API call.
        let (node, mut owners, dependents) = {
            let g = lock(&self.graph);
            let Some(node) = g.get(uid).cloned() else { return Ok(None) };
            let owners: Vec<Option<Owner>> = node
                .owners
                .iter()
                .map(|r| {
                    g.get(&r.uid)
                        .map(|o| if o.deleting_dependents() { Owner::WaitingForDependents } else { Owner::Solid })
                })
                .collect();
            let dependents: Vec<Node> = g.dependents(uid).into_iter().cloned().collect();
            (node, owners, dependents)
        };
        for (reference, state) in node.owners.iter().zip(owners.iter_mut()) {
            if state.is_none() {
                *state = Some(self.look_up(&node, reference).await?);
            }
        }
        let owners: Vec<Owner> = owners.into_iter().map(|s| s.unwrap_or(Owner::Solid)).collect();
        let dependents: Vec<&Node> = dependents.iter().collect();
        let action = graph::decide(&node, &owners, &dependents);
        if action != Action::Nothing {
            tracing::debug!(object = %node.describe(), ?action, "collecting");
        }
        match action {
            Action::Nothing => {}
            Action::Delete(policy) => {
                let propagation =
                    if policy == "Foreground" { PropagationPolicy::Foreground } else { PropagationPolicy::Background };
                self.delete(&node, propagation).await?;
                tracing::info!(object = %node.describe(), policy, "deleted: its owners are gone");
            }
            Action::RemoveOwners(gone) => {
                let kept: Vec<_> = node.owners.iter().filter(|r| !gone.contains(&r.uid)).collect();
                self.patch_meta(&node, json!({"ownerReferences": kept})).await?;
            }
            Action::Orphan { dependents: orphans } => {
                for dependent in dependents.iter().filter(|d| orphans.contains(&d.uid)) {
                    let kept: Vec<_> = dependent.owners.iter().filter(|r| r.uid != node.uid).collect();
                    let kept = (!kept.is_empty()).then_some(kept);
                    self.patch_meta(dependent, json!({"ownerReferences": kept})).await?;
                }
                self.remove_finalizer(&node, ORPHAN).await?;
                tracing::info!(object = %node.describe(), orphaned = orphans.len(), "orphaned its dependents");
            }
            Action::DeleteDependents(uids) => {
                for dependent in dependents.iter().filter(|d| uids.contains(&d.uid)) {
                    self.delete(dependent, PropagationPolicy::Foreground).await?;
                }
            }
            Action::RemoveFinalizer(f) => {
                self.remove_finalizer(&node, f).await?;
                if f == FOREGROUND {
                    tracing::info!(object = %node.describe(), "dependents gone; deleting");
                }
            }
        }
        Ok(None)
    }

    /// Whether an owner the graph has not seen exists, asking the API server.
    async fn look_up(
        &self,
        node: &Node,
        reference: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Result<Owner, Error> {
        let (group, version) = registry::split_api_version(&reference.api_version);
        let Some(resource) = registry::by_kind(group, version, &reference.kind) else {
            // A kind this cluster does not serve: never collect on its account.
            tracing::debug!(object = %node.describe(), kind = %reference.kind, "owner of an unknown kind");
            return Ok(Owner::Solid);
        };
        let namespace = if resource.namespaced { node.namespace.as_str() } else { "" };
        match api_for(&self.client, resource, namespace).get_metadata_opt(&reference.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(reference.uid.as_str()) => {
                let deleting = o.metadata.deletion_timestamp.is_some()
                    && o.metadata.finalizers.iter().flatten().any(|f| f == FOREGROUND);
                Ok(if deleting { Owner::WaitingForDependents } else { Owner::Solid })
            }
            _ => Ok(Owner::Dangling),
        }
    }

    async fn delete(&self, node: &Node, propagation: PropagationPolicy) -> Result<(), Error> {
        let params = DeleteParams {
            propagation_policy: Some(propagation),
            preconditions: Some(Preconditions { uid: Some(node.uid.clone()), resource_version: None }),
            ..Default::default()
        };
        match api_for(&self.client, node.resource, &node.namespace).delete(&node.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_gone(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Merge-patches `metadata`, on the version the graph saw (a conflict retries on a fresh one).
    async fn patch_meta(&self, node: &Node, mut metadata: serde_json::Value) -> Result<(), Error> {
        metadata["resourceVersion"] = node.resource_version.clone().into();
        let patch = json!({"metadata": metadata});
        match api_for(&self.client, node.resource, &node.namespace)
            .patch(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let kept: Vec<&String> = node.finalizers.iter().filter(|f| *f != finalizer).collect();
        let kept = (!kept.is_empty()).then_some(kept);
        self.patch_meta(node, json!({"finalizers": kept})).await
    }
}

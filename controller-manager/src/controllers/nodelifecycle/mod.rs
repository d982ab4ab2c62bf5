//! The node lifecycle controller: a node whose kubelet stops renewing its Lease (and posting
//! status) for `--node-monitor-grace-period` (40 s) turns Ready=Unknown and gets the
//! `node.kubernetes.io/unreachable` taints (`not-ready` when it reports Ready=False); its pods are
//! marked not ready. Pods on a node with NoExecute taints are evicted once their tolerations run
//! out (300 s by default, from the API server's DefaultTolerationSeconds), as upstream's taint
//! manager does; the taints go when the node is Ready again.
//!
//! Silence is measured on this process's clock, from the last time it saw the Lease or the
//! Ready heartbeat change (so clock skew between hosts does not matter), and starts counting when
//! the controller starts.

pub mod plan;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use daemon::events::{Recorder, Type};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::Eviction;

pub const NAME: &str = "node-lifecycle-controller";
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
const WORKERS: usize = 2;

/// The last heartbeat seen of a node (Lease renewTime, Ready heartbeat) and when it was seen.
type Heartbeats = Arc<Mutex<HashMap<String, ((Option<String>, Option<String>), Instant)>>>;

pub fn new(ctx: &Context) -> Controller {
    let nodes = ctx.informers.get::<Node>();
    let leases = ctx.informers.get::<Lease>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    let heartbeats: Heartbeats = Arc::default();
    {
        let (queue, heartbeats) = (queue.clone(), heartbeats.clone());
        nodes.on_change(move |change| {
            let name = change.object().metadata.name.clone().unwrap_or_default();
            if let Change::Deleted(_) = change {
                heartbeats.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&name);
            } else {
                queue.add(name);
            }
        });
    }
    {
        let queue = queue.clone();
        leases.on_change(move |change| {
            let lease = change.object();
            if lease.metadata.namespace.as_deref() == Some(LEASE_NAMESPACE) {
                queue.add(lease.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    {
        // A pod landing on a tainted node may have to go.
        let queue = queue.clone();
        pods.on_change(move |change| {
            if let Change::Applied { old, new } = change {
                let node = new.spec.as_ref().and_then(|s| s.node_name.as_deref());
                let before = old.as_ref().and_then(|o| o.spec.as_ref()).and_then(|s| s.node_name.as_deref());
                if let Some(node) = node.filter(|n| Some(*n) != before) {
                    queue.add(node.to_string());
                }
            }
        });
    }
    let synced = informers::all_synced([nodes.until_synced(), leases.until_synced(), pods.until_synced()]);
    let reconciler = Lifecycle {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        nodes,
        leases,
        pods,
        heartbeats,
        grace: ctx.config.node_monitor_grace_period,
    };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Lifecycle {
    client: kube::Client,
    recorder: Arc<Recorder>,
    nodes: Informer<Node>,
    leases: Informer<Lease>,
    pods: Informer<Pod>,
    heartbeats: Heartbeats,
    grace: Duration,
}

impl Reconcile for Lifecycle {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

fn ready_condition(node: &Node) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status.as_ref()?.conditions.as_deref()?.iter().find(|c| c.type_ == "Ready")
}

impl Lifecycle {
    /// How long the node has been silent, on this process's clock.
    fn silent_for(&self, node: &Node, name: &str) -> Duration {
        let lease = self
            .leases
            .get(LEASE_NAMESPACE, name)
            .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0.to_string()));
        let beat = ready_condition(node).and_then(|c| c.last_heartbeat_time.as_ref().map(|t| t.0.to_string()));
        let seen = (lease, beat);
        let mut heartbeats = self.heartbeats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = heartbeats.entry(name.to_string()).or_insert_with(|| (seen.clone(), Instant::now()));
        if entry.0 != seen {
            *entry = (seen, Instant::now());
        }
        entry.1.elapsed()
    }

    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get("", name) else { return Ok(None) };
        let now = Timestamp::now();
        let silent = self.silent_for(&node, name);
        let api: Api<Node> = Api::all(self.client.clone());
        let mut ready = ready_condition(&node).map(|c| c.status.clone());
        let mut again: Option<Duration> = None;
        if silent > self.grace {
            let conditions = node.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            if let Some(next) = plan::unknown_conditions(&conditions, now) {
                let patch = json!({"status": {"conditions": next}});
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                tracing::info!(node = name, silent_secs = silent.as_secs(), "node stopped reporting: Ready=Unknown");
                self.recorder.object(
                    &*node,
                    Type::Normal,
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
                self.mark_pods_not_ready(name, now).await?;
            }
            ready = Some("Unknown".into());
        } else if ready.as_deref() == Some("True") {
            again = Some(self.grace.saturating_sub(silent) + Duration::from_secs(1));
        }
        let current = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
        if ready.is_none() {
            // A node that has not reported yet gets its grace period before any verdict.
            return Ok(Some(self.grace.saturating_sub(silent) + Duration::from_secs(1)));
        }
        let taints = match plan::taints(&current, ready.as_deref(), now) {
            Some(next) => {
                let patch =
                    json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": next}});
                api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                tracing::info!(node = name, ready = ?ready, taints = next.len(), "node taints updated");
                next
            }
            None => current,
        };
        if taints.iter().any(|t| t.effect == "NoExecute")
            && let Some(at) = self.evict(name, &taints, now).await?
        {
            again = Some(again.map_or(at, |a| a.min(at)));
        }
        Ok(again)
    }

    fn pods_on(&self, node: &str) -> Vec<Arc<Pod>> {
        self.pods
            .all()
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect()
    }

    /// Upstream's MarkPodsNotReady: the pods of a silent node stop counting as ready.
    async fn mark_pods_not_ready(&self, node: &str, now: Timestamp) -> Result<(), Error> {
        for pod in self.pods_on(node) {
            let conditions = pod.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
            if !conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True") {
                continue;
            }
            let next: Vec<PodCondition> = conditions
                .into_iter()
                .map(|c| {
                    if c.type_ == "Ready" {
                        PodCondition { status: "False".into(), last_transition_time: Some(Time(now)), ..c }
                    } else {
                        c
                    }
                })
                .collect();
            let api: Api<Pod> = Api::namespaced(self.client.clone(), pod.metadata.namespace.as_deref().unwrap_or(""));
            let patch = json!({"status": {"conditions": next}});
            match api
                .patch_status(
                    pod.metadata.name.as_deref().unwrap_or(""),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Evicts the pods whose tolerations have run out; returns when the next one will.
    async fn evict(
        &self,
        node: &str,
        taints: &[k8s_openapi::api::core::v1::Taint],
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        let mut next: Option<Duration> = None;
        for pod in self.pods_on(node) {
            match plan::eviction(&pod, taints, now) {
                Eviction::Never => {}
                Eviction::At(at) => {
                    let wait =
                        Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_millis(100);
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                }
                Eviction::Now => {
                    let (ns, pod_name) =
                        (pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""));
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
                    match api.delete(pod_name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(e)) if e.code == 404 => {}
                        Err(e) => return Err(e.into()),
                    }
                    tracing::info!(node, pod = %format!("{ns}/{pod_name}"), "evicted: NoExecute taint not tolerated");
                    self.recorder.pod(
                        &pod,
                        None,
                        Type::Normal,
                        "TaintManagerEviction",
                        format!("Marking for deletion Pod {ns}/{pod_name}"),
                    );
                }
            }
        }
        Ok(next)
    }
}

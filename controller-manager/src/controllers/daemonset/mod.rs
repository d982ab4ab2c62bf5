//! The DaemonSet controller: one pod of the set's template on every eligible node (node
//! selector, required node affinity, taints against the template's tolerations plus the daemon
//! tolerations every daemon pod gets), bound by `spec.nodeName`; a new node gets one, a node
//! that stops matching loses it, a failed daemon pod is replaced. A template change rolls out
//! node by node within `maxUnavailable` (or `maxSurge`), or, with `OnDelete`, as the user deletes
//! old pods. Status counts desired, current, misscheduled, ready, available and updated pods.
//!
//! Handlers map a set change to its key, a pod change to its controller's key (or, for an
//! orphan, to every matching set), and a node change that can alter eligibility (labels,
//! taints) to every set. As the ReplicaSet controller, it writes pods only when its
//! expectations are met.

pub mod plan;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use api_types::labels::LabelSelector;
use daemon::events::{Recorder, Type};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::controller::{Controller, Reconcile};
use crate::controllers::owned::{claim_pods, pod_changed};
use crate::controllers::replicaset::plan::slow_start_batches;
use crate::expectations::Expectations;
use crate::informers::{self, Change, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::{Actions, NodePods};

pub const NAME: &str = "daemonset-controller";
const WORKERS: usize = 2;
/// Pods created or deleted in one reconcile at most (upstream's BurstReplicas).
const BURST: usize = 250;
/// Pod writes of one reconcile in flight at once.
const WRITES_IN_FLIGHT: usize = 64;

pub fn new(ctx: &Context) -> Controller {
    let sets = ctx.informers.get::<DaemonSet>();
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    let queue = Arc::new(Queue::new());
    let expectations = Arc::new(Expectations::default());
    {
        let queue = queue.clone();
        sets.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (sets, queue, expectations) = (sets.clone(), queue.clone(), expectations.clone());
        pods.on_change(move |change| pod_changed(&sets, selector, &queue, Some(&expectations), change));
    }
    {
        let (sets, queue) = (sets.clone(), queue.clone());
        nodes.on_change(move |change| {
            let relevant = match change {
                Change::Applied { old: Some(old), new } => {
                    old.metadata.labels != new.metadata.labels
                        || old.spec.as_ref().map(|s| &s.taints) != new.spec.as_ref().map(|s| &s.taints)
                }
                _ => true,
            };
            if relevant {
                for set in sets.all() {
                    queue.add(key(&set.metadata));
                }
            }
        });
    }
    let synced = informers::all_synced([sets.until_synced(), pods.until_synced(), nodes.until_synced()]);
    let reconciler =
        DaemonSets { client: ctx.client.clone(), recorder: ctx.recorder.clone(), sets, pods, nodes, expectations };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

fn selector(set: &DaemonSet) -> Result<LabelSelector, Error> {
    let sel = set.spec.as_ref().map(|s| &s.selector).cloned().unwrap_or_default();
    LabelSelector::from_label_selector(&sel).map_err(|e| Error::Config(format!("selector: {e}")))
}

struct DaemonSets {
    client: kube::Client,
    recorder: Arc<Recorder>,
    sets: Informer<DaemonSet>,
    pods: Informer<Pod>,
    nodes: Informer<Node>,
    expectations: Arc<Expectations>,
}

impl Reconcile for DaemonSets {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl DaemonSets {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(ds) = self.sets.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let selector = match selector(&ds) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(daemonset = key, error = %e, "invalid selector; nothing to do");
                return Ok(None);
            }
        };
        // Read before the pods, so a creation seen in between cannot be counted twice.
        let needs_sync = self.expectations.satisfied(key);
        let owned = claim_pods(&self.client, ds.as_ref(), &selector, self.pods.list(ns)).await?;
        let spec = ds.spec.clone().unwrap_or_default();
        let hash = plan::template_hash(&spec.template, ds.status.as_ref().and_then(|s| s.collision_count));
        let mut fit_spec = spec.template.spec.clone().unwrap_or_default();
        plan::add_daemon_tolerations(&mut fit_spec);
        let mut by_node: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
        for pod in owned {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                by_node.entry(node).or_default().push(pod);
            }
        }
        let mut nodes: Vec<NodePods> = self
            .nodes
            .all()
            .iter()
            .map(|node| {
                let name = node.metadata.name.clone().unwrap_or_default();
                let pods = by_node.remove(&name).unwrap_or_default();
                NodePods { fit: plan::fit(&fit_spec, node), name, pods }
            })
            .collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let now = Timestamp::now();
        let mut result = Ok(());
        if needs_sync && ds.metadata.deletion_timestamp.is_none() {
            result = self.update(&ds, key, &nodes, &hash, min_ready, now).await;
        }
        let observed = if needs_sync { ds.metadata.generation } else { None };
        let status = plan::status(ds.status.as_ref(), &nodes, &hash, min_ready, observed, now);
        if ds.status.as_ref() != Some(&status) {
            let api: Api<DaemonSet> = Api::namespaced(self.client.clone(), ns);
            let mut updated = (*ds).clone();
            updated.status = Some(status.clone());
            api.replace_status(name, &PostParams::default(), &updated).await?;
        }
        result?;
        let waiting = status.number_ready > status.number_available.unwrap_or(0);
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1)))
    }

    /// One pass of pod writes: the core loop's (a pod per eligible node, none elsewhere), or,
    /// when that has nothing to do, the rolling update's next step. Deletions go first, alone:
    /// the creations they make room for come in the pass after they are seen.
    async fn update(
        &self,
        ds: &DaemonSet,
        key: &str,
        nodes: &[NodePods],
        hash: &str,
        min_ready: i32,
        now: Timestamp,
    ) -> Result<(), Error> {
        let strategy = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref());
        let rolling = strategy.and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
        let desired = nodes.iter().filter(|n| n.fit.should_run).count();
        let (max_surge, max_unavailable) = if rolling { plan::limits(ds, desired) } else { (0, 0) };
        let mut actions = plan::manage(nodes, max_surge > 0, hash, min_ready, now);
        if actions.is_empty() && rolling {
            actions = plan::rolling_update(nodes, hash, max_surge, max_unavailable, min_ready, now);
        }
        let Actions { mut create_on, mut delete } = actions;
        if !delete.is_empty() {
            delete.truncate(BURST);
            return self.delete(ds, key, &delete).await;
        }
        create_on.truncate(BURST);
        self.create(ds, key, &create_on, hash).await
    }

    async fn create(&self, ds: &DaemonSet, key: &str, nodes: &[String], hash: &str) -> Result<(), Error> {
        if nodes.is_empty() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ds.metadata.namespace.as_deref().unwrap_or(""));
        let owner = pods::controller_reference(ds);
        self.expectations.expect_creations(key, nodes.len());
        let params = PostParams::default();
        let mut attempted = 0;
        let mut remaining = nodes;
        for batch in slow_start_batches(nodes.len()) {
            let (now, later) = remaining.split_at(batch.min(remaining.len()));
            remaining = later;
            attempted += now.len();
            let pods: Vec<Pod> = now.iter().map(|node| plan::daemon_pod(ds, node, hash, owner.clone())).collect();
            let results: Vec<_> = futures::stream::iter(pods)
                .map(|pod: Pod| {
                    let (api, params) = (api.clone(), params.clone());
                    async move { api.create(&params, &pod).await }
                })
                .buffer_unordered(WRITES_IN_FLIGHT)
                .collect()
                .await;
            let mut failed = 0;
            let mut first = None;
            for result in results {
                match result {
                    Ok(created) => self.recorder.object(
                        ds,
                        Type::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", created.metadata.name.as_deref().unwrap_or("")),
                    ),
                    Err(e) => {
                        // No watch event will come for a pod never made.
                        self.expectations.creation_observed(key);
                        failed += 1;
                        if first.is_none() {
                            self.recorder.object(ds, Type::Warning, "FailedCreate", format!("Error creating: {e}"));
                            first = Some(e);
                        }
                    }
                }
            }
            if let Some(first) = first {
                for _ in attempted..nodes.len() {
                    self.expectations.creation_observed(key);
                }
                return Err(Error::Partial { what: "pod creates", attempted, failed, first });
            }
        }
        tracing::debug!(daemonset = key, count = nodes.len(), "created pods");
        Ok(())
    }

    async fn delete(&self, ds: &DaemonSet, key: &str, victims: &[Arc<Pod>]) -> Result<(), Error> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ds.metadata.namespace.as_deref().unwrap_or(""));
        self.expectations.expect_deletions(key, victims.iter().filter_map(|p| p.metadata.uid.clone()));
        let results: Vec<_> = futures::stream::iter(victims.iter().cloned())
            .map(|pod: Arc<Pod>| {
                let api = api.clone();
                async move {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                        ..Default::default()
                    };
                    let result = api.delete(pod.metadata.name.as_deref().unwrap_or(""), &params).await;
                    (pod, result)
                }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut failed = 0;
        let mut first = None;
        for (pod, result) in results {
            let pod_name = pod.metadata.name.as_deref().unwrap_or("");
            let uid = pod.metadata.uid.as_deref().unwrap_or("");
            match result {
                Ok(_) => self.recorder.object(ds, Type::Normal, "SuccessfulDelete", format!("Deleted pod: {pod_name}")),
                Err(kube::Error::Api(e)) if e.code == 404 => self.expectations.deletion_observed(key, uid),
                Err(e) => {
                    self.expectations.deletion_observed(key, uid);
                    failed += 1;
                    if first.is_none() {
                        self.recorder.object(ds, Type::Warning, "FailedDelete", format!("Error deleting: {e}"));
                        first = Some(e);
                    }
                }
            }
        }
        match first {
            Some(first) => Err(Error::Partial { what: "pod deletes", attempted: victims.len(), failed, first }),
            None => Ok(()),
        }
    }
}

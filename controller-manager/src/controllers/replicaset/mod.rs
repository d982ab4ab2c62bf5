//! The ReplicaSet controller: keeps `spec.replicas` pods of the set's template, adopting
//! matching orphans and releasing pods that stopped matching, and reports the counts in status.
//! The same code, through [`Replicated`], is the ReplicationController controller (core/v1's
//! older form, with an equality-only selector), as upstream runs one on the other.
//!
//! Handlers map a ReplicaSet change to its key and a pod change to its controller's key (or, for
//! an orphan, to every set whose selector matches). The reconcile claims pods, then creates (in
//! slow-start batches) or deletes (least valuable first) only when its expectations are met, so
//! it never acts twice on a cache that has not yet seen its own writes.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use api_types::labels::LabelSelector;
use daemon::events::{Recorder, Type};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetStatus};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ReplicationController};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as MetaSelector;
use k8s_openapi::jiff::Timestamp;
use kube::Resource;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::controller::{Controller, Reconcile};
use crate::controllers::owned;
use crate::expectations::Expectations;
use crate::informers::{self, Change, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::{Failure, Scale};

pub const NAME: &str = "replicaset-controller";
pub const RC_NAME: &str = "replicationcontroller-controller";
/// Pod writes of one reconcile in flight at once.
const WRITES_IN_FLIGHT: usize = 64;

/// What the controller reads and writes of a ReplicaSet or a ReplicationController.
pub trait Replicated:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    const CONTROLLER: &'static str;
    fn selector(&self) -> Result<LabelSelector, Error>;
    fn replicas(&self) -> i32;
    fn min_ready_seconds(&self) -> i32;
    fn template(&self) -> Option<&PodTemplateSpec>;
    /// The status, as a ReplicaSet's (a ReplicationController's has the same fields).
    fn replica_status(&self) -> Option<ReplicaSetStatus>;
    fn set_replica_status(&mut self, status: ReplicaSetStatus);
}

impl Replicated for ReplicaSet {
    const CONTROLLER: &'static str = NAME;

    fn selector(&self) -> Result<LabelSelector, Error> {
        let sel = self.spec.as_ref().map(|s| &s.selector).cloned().unwrap_or_default();
        LabelSelector::from_label_selector(&sel).map_err(|e| Error::Config(format!("selector: {e}")))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.clone()
    }

    fn set_replica_status(&mut self, status: ReplicaSetStatus) {
        self.status = Some(status);
    }
}

impl Replicated for ReplicationController {
    const CONTROLLER: &'static str = RC_NAME;

    fn selector(&self) -> Result<LabelSelector, Error> {
        let labels = self.spec.as_ref().and_then(|s| s.selector.clone());
        let sel = MetaSelector { match_labels: labels, match_expressions: None };
        LabelSelector::from_label_selector(&sel).map_err(|e| Error::Config(format!("selector: {e}")))
    }

    fn replicas(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
    }

    fn min_ready_seconds(&self) -> i32 {
        self.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0)
    }

    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref()?.template.as_ref()
    }

    fn replica_status(&self) -> Option<ReplicaSetStatus> {
        self.status.as_ref().and_then(|s| serde_json::to_value(s).ok()).and_then(|v| serde_json::from_value(v).ok())
    }

    fn set_replica_status(&mut self, status: ReplicaSetStatus) {
        self.status = serde_json::to_value(status).ok().and_then(|v| serde_json::from_value(v).ok());
    }
}

pub fn new(ctx: &Context) -> Controller {
    new_for::<ReplicaSet>(ctx)
}

pub fn new_replication_controller(ctx: &Context) -> Controller {
    new_for::<ReplicationController>(ctx)
}

fn new_for<K: Replicated>(ctx: &Context) -> Controller {
    let sets = ctx.informers.get::<K>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    let expectations = Arc::new(Expectations::default());
    {
        let queue = queue.clone();
        sets.on_change(move |change| queue.add(key(change.object().meta())));
    }
    {
        let (sets, queue, expectations) = (sets.clone(), queue.clone(), expectations.clone());
        pods.on_change(move |change| {
            owned::pod_changed(&sets, K::selector, &queue, Some(&expectations), change);
            // A pod that just became ready becomes available minReadySeconds later.
            if let Change::Applied { old: Some(old), new } = change
                && let Some(set) = owned::owner(&sets, new)
            {
                let min_ready = set.min_ready_seconds();
                if min_ready > 0 && !pods::is_ready(old) && pods::is_ready(new) {
                    let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
                    queue.add_after(key(set.meta()), after);
                }
            }
        });
    }
    let synced = informers::all_synced([sets.until_synced(), pods.until_synced()]);
    let reconciler =
        ReplicaSets { client: ctx.client.clone(), recorder: ctx.recorder.clone(), sets, pods, expectations };
    Controller {
        name: K::CONTROLLER,
        queue,
        workers: ctx.config.concurrent_replicaset_syncs,
        reconciler: Arc::new(reconciler),
        synced,
    }
}

struct ReplicaSets<K> {
    client: kube::Client,
    recorder: Arc<Recorder>,
    sets: Informer<K>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
}

impl<K: Replicated> Reconcile for ReplicaSets<K> {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl<K: Replicated> ReplicaSets<K> {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(set) = self.sets.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let selector = match set.selector() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(replicaset = key, error = %e, "invalid selector; nothing to do");
                return Ok(None);
            }
        };
        // Read before the pods, so a creation seen in between cannot be counted twice.
        let needs_sync = self.expectations.satisfied(key);
        let owned = owned::claim_pods(&self.client, set.as_ref(), &selector, self.pods.list(ns)).await?;
        let active: Vec<Arc<Pod>> = owned.iter().filter(|p| pods::is_active(p)).cloned().collect();
        let mut failure = None;
        if needs_sync
            && set.meta().deletion_timestamp.is_none()
            && let Err((reason, e)) = self.scale(&set, key, &active).await
        {
            failure = Some((Failure { reason, message: e.to_string() }, e));
        }
        let now = Timestamp::now();
        let template_labels = set.template().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
        let min_ready = set.min_ready_seconds();
        let previous = set.replica_status();
        let status = plan::status(
            set.meta().generation,
            template_labels,
            min_ready,
            previous.as_ref(),
            &owned,
            failure.as_ref().map(|(f, _)| f),
            now,
        );
        if previous.as_ref() != Some(&status) {
            let api: Api<K> = Api::namespaced(self.client.clone(), ns);
            let mut updated = (*set).clone();
            updated.set_replica_status(status.clone());
            api.replace_status(name, &PostParams::default(), &updated).await?;
        }
        if let Some((_, e)) = failure {
            return Err(e);
        }
        let waiting = status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0);
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0))))
    }

    /// Creates or deletes pods towards `spec.replicas`; on failure, the condition reason.
    async fn scale(&self, set: &K, key: &str, active: &[Arc<Pod>]) -> Result<(), (&'static str, Error)> {
        let ns = set.meta().namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match plan::scale(set.replicas(), active) {
            Scale::Steady => Ok(()),
            Scale::Create(count) => {
                let template = set.template().cloned().unwrap_or_default();
                let name = set.meta().name.as_deref().unwrap_or("");
                let pod = pods::from_template(&template, ns, &format!("{name}-"), pods::controller_reference(set));
                self.expectations.expect_creations(key, count);
                let params = PostParams::default();
                let mut attempted = 0;
                for batch in plan::slow_start_batches(count) {
                    attempted += batch;
                    let results: Vec<_> = futures::stream::iter(0..batch)
                        .map(|_| api.create(&params, &pod))
                        .buffer_unordered(WRITES_IN_FLIGHT)
                        .collect()
                        .await;
                    let mut failed = 0;
                    let mut first = None;
                    for result in results {
                        match result {
                            Ok(created) => self.recorder.object(
                                set,
                                Type::Normal,
                                "SuccessfulCreate",
                                format!("Created pod: {}", created.metadata.name.as_deref().unwrap_or("")),
                            ),
                            Err(e) => {
                                // No watch event will come for a pod never made.
                                self.expectations.creation_observed(key);
                                failed += 1;
                                if first.is_none() {
                                    self.recorder.object(
                                        set,
                                        Type::Warning,
                                        "FailedCreate",
                                        format!("Error creating: {e}"),
                                    );
                                    first = Some(e);
                                }
                            }
                        }
                    }
                    if let Some(first) = first {
                        for _ in attempted..count {
                            self.expectations.creation_observed(key);
                        }
                        return Err(("FailedCreate", Error::Partial { what: "pod creates", attempted, failed, first }));
                    }
                }
                tracing::debug!(replicaset = key, count, "created pods");
                Ok(())
            }
            Scale::Delete(victims) => {
                self.expectations.expect_deletions(key, victims.iter().filter_map(|p| p.metadata.uid.clone()));
                let results: Vec<_> = futures::stream::iter(victims.iter().cloned())
                    .map(|pod: Arc<Pod>| {
                        let api = api.clone();
                        async move {
                            let params = DeleteParams {
                                preconditions: Some(Preconditions {
                                    uid: pod.metadata.uid.clone(),
                                    resource_version: None,
                                }),
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
                    match result {
                        Ok(_) => self.recorder.object(
                            set,
                            Type::Normal,
                            "SuccessfulDelete",
                            format!("Deleted pod: {pod_name}"),
                        ),
                        Err(kube::Error::Api(e)) if e.code == 404 => {
                            self.expectations.deletion_observed(key, pod.metadata.uid.as_deref().unwrap_or(""));
                        }
                        Err(e) => {
                            self.expectations.deletion_observed(key, pod.metadata.uid.as_deref().unwrap_or(""));
                            failed += 1;
                            if first.is_none() {
                                self.recorder.object(
                                    set,
                                    Type::Warning,
                                    "FailedDelete",
                                    format!("Error deleting: {e}"),
                                );
                                first = Some(e);
                            }
                        }
                    }
                }
                match first {
                    Some(first) => Err((
                        "FailedDelete",
                        Error::Partial { what: "pod deletes", attempted: victims.len(), failed, first },
                    )),
                    None => Ok(()),
                }
            }
        }
    }
}

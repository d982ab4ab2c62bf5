//! The ReplicaSet controller: keeps `spec.replicas` pods of the set's template, adopting
//! matching orphans and releasing pods that stopped matching, and reports the counts in status.
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
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
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
/// Pod writes of one reconcile in flight at once.
const WRITES_IN_FLIGHT: usize = 64;

pub fn new(ctx: &Context) -> Controller {
    let sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    let expectations = Arc::new(Expectations::default());
    {
        let queue = queue.clone();
        sets.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (sets, queue, expectations) = (sets.clone(), queue.clone(), expectations.clone());
        pods.on_change(move |change| {
            owned::pod_changed(&sets, selector, &queue, Some(&expectations), change);
            // A pod that just became ready becomes available minReadySeconds later.
            if let Change::Applied { old: Some(old), new } = change
                && let Some(set) = owned::owner(&sets, new)
            {
                let min_ready = set.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0);
                if min_ready > 0 && !pods::is_ready(old) && pods::is_ready(new) {
                    let after = Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1);
                    queue.add_after(key(&set.metadata), after);
                }
            }
        });
    }
    let synced = informers::all_synced([sets.until_synced(), pods.until_synced()]);
    let reconciler =
        ReplicaSets { client: ctx.client.clone(), recorder: ctx.recorder.clone(), sets, pods, expectations };
    Controller {
        name: NAME,
        queue,
        workers: ctx.config.concurrent_replicaset_syncs,
        reconciler: Arc::new(reconciler),
        synced,
    }
}

fn selector(set: &ReplicaSet) -> Result<LabelSelector, Error> {
    let sel = set.spec.as_ref().map(|s| &s.selector).cloned().unwrap_or_default();
    LabelSelector::from_label_selector(&sel).map_err(|e| Error::Config(format!("selector: {e}")))
}

struct ReplicaSets {
    client: kube::Client,
    recorder: Arc<Recorder>,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
}

impl Reconcile for ReplicaSets {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl ReplicaSets {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(set) = self.sets.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let selector = match selector(&set) {
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
        let spec = set.spec.clone().unwrap_or_default();
        let mut failure = None;
        if needs_sync
            && set.metadata.deletion_timestamp.is_none()
            && let Err((reason, e)) = self.scale(&set, key, &active).await
        {
            failure = Some((Failure { reason, message: e.to_string() }, e));
        }
        let now = Timestamp::now();
        let template_labels = spec.template.as_ref().and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.as_ref());
        let min_ready = spec.min_ready_seconds.unwrap_or(0);
        let status = plan::status(
            set.metadata.generation,
            template_labels,
            min_ready,
            set.status.as_ref(),
            &owned,
            failure.as_ref().map(|(f, _)| f),
            now,
        );
        if set.status.as_ref() != Some(&status) {
            let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
            let mut updated = (*set).clone();
            updated.status = Some(status.clone());
            api.replace_status(name, &PostParams::default(), &updated).await?;
        }
        if let Some((_, e)) = failure {
            return Err(e);
        }
        let waiting = status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0);
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0))))
    }

    /// Creates or deletes pods towards `spec.replicas`; on failure, the condition reason.
    async fn scale(&self, set: &ReplicaSet, key: &str, active: &[Arc<Pod>]) -> Result<(), (&'static str, Error)> {
        let spec = set.spec.clone().unwrap_or_default();
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match plan::scale(spec.replicas.unwrap_or(1), active) {
            Scale::Steady => Ok(()),
            Scale::Create(count) => {
                let template = spec.template.unwrap_or_default();
                let name = set.metadata.name.as_deref().unwrap_or("");
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

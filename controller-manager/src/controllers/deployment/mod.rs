//! The Deployment controller: rolls a Deployment's pod template out through ReplicaSets, one
//! per template (named `<deployment>-<pod-template-hash>`), and reports progress in status.
//!
//! Handlers map a Deployment change to its key, a ReplicaSet change to its controller's key (or,
//! for an orphan, to every Deployment whose selector matches it), and a pod deletion to the
//! Deployment above its set when that Deployment recreates (it waits for old pods to go).
//!
//! A sync follows upstream's `syncDeployment`: claim sets; note a pause or resume; then a paused
//! or resized Deployment only scales (in proportion across sets mid-rollout), and otherwise one
//! step of its strategy is taken: for RollingUpdate, grow the new set within maxSurge or shrink
//! old ones within maxUnavailable; for Recreate, scale old sets to zero, wait for their pods, then
//! scale the new set up. Old empty sets beyond revisionHistoryLimit go once a rollout is done.
//! The decisions are [`plan`]'s; this module reads caches and writes. Set writes carry the
//! cached resourceVersion, so a sync acting on a stale set fails with a conflict and is retried.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use api_types::labels::LabelSelector;
use daemon::events::{Recorder, Type};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::controller::{Controller, Reconcile};
use crate::controllers::replicaset::plan::Claim;
use crate::expectations::Expectations;
use crate::informers::{self, Change, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::{RecreateStep, Rollout, Step, Strategy};

pub const NAME: &str = "deployment-controller";

pub fn new(ctx: &Context) -> Controller {
    let deployments = ctx.informers.get::<Deployment>();
    let sets = ctx.informers.get::<ReplicaSet>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    let expectations = Arc::new(Expectations::default());
    {
        let queue = queue.clone();
        deployments.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (deployments, queue, expectations) = (deployments.clone(), queue.clone(), expectations.clone());
        sets.on_change(move |change| set_changed(&deployments, &queue, &expectations, change));
    }
    {
        let (deployments, sets, queue) = (deployments.clone(), sets.clone(), queue.clone());
        pods.on_change(move |change| {
            if let Change::Deleted(pod) = change {
                pod_deleted(&deployments, &sets, &queue, pod);
            }
        });
    }
    let synced = informers::all_synced([deployments.until_synced(), sets.until_synced(), pods.until_synced()]);
    let reconciler = Deployments {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        deployments,
        sets,
        pods,
        expectations,
    };
    Controller {
        name: NAME,
        queue,
        workers: ctx.config.concurrent_deployment_syncs,
        reconciler: Arc::new(reconciler),
        synced,
    }
}

/// The Deployment that controls `set`, if it is in the cache with that UID.
fn owner(deployments: &Informer<Deployment>, set: &ReplicaSet) -> Option<Arc<Deployment>> {
    let r = pods::controller_of(&set.metadata).filter(|r| r.kind == "Deployment")?;
    let deployment = deployments.get(set.metadata.namespace.as_deref().unwrap_or(""), &r.name)?;
    (deployment.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(deployment)
}

fn selector(deployment: &Deployment) -> Result<LabelSelector, Error> {
    let sel = deployment.spec.as_ref().map(|s| &s.selector).cloned().unwrap_or_default();
    LabelSelector::from_label_selector(&sel).map_err(|e| Error::Config(format!("selector: {e}")))
}

/// Every Deployment of the set's namespace whose (non-empty) selector matches it.
fn matching_deployments(deployments: &Informer<Deployment>, set: &ReplicaSet) -> Vec<Arc<Deployment>> {
    let empty = Default::default();
    let labels = set.metadata.labels.as_ref().unwrap_or(&empty);
    deployments
        .list(set.metadata.namespace.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|d| selector(d).is_ok_and(|sel| !sel.is_empty() && sel.matches(labels)))
        .collect()
}

fn set_changed(
    deployments: &Informer<Deployment>,
    queue: &Queue,
    expectations: &Expectations,
    change: &Change<ReplicaSet>,
) {
    match change {
        Change::Applied { old: None, new } => {
            if let Some(d) = owner(deployments, new) {
                let k = key(&d.metadata);
                expectations.creation_observed(&k);
                queue.add(k);
            } else if pods::controller_of(&new.metadata).is_none() {
                for d in matching_deployments(deployments, new) {
                    queue.add(key(&d.metadata));
                }
            }
        }
        Change::Applied { old: Some(old), new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let old_owner = owner(deployments, old);
            let new_owner = owner(deployments, new);
            if let Some(d) = old_owner.filter(|o| new_owner.as_ref().is_none_or(|n| n.metadata.uid != o.metadata.uid)) {
                queue.add(key(&d.metadata));
            }
            match new_owner {
                Some(d) => queue.add(key(&d.metadata)),
                None if pods::controller_of(&new.metadata).is_none() => {
                    let mut candidates = matching_deployments(deployments, new);
                    if old.metadata.labels != new.metadata.labels {
                        candidates.extend(matching_deployments(deployments, old));
                    }
                    for d in candidates {
                        queue.add(key(&d.metadata));
                    }
                }
                None => {}
            }
        }
        Change::Deleted(set) => {
            if let Some(d) = owner(deployments, set) {
                queue.add(key(&d.metadata));
            }
        }
    }
}

/// A Recreate waits for the old pods to be gone: each one going may let it go on.
fn pod_deleted(deployments: &Informer<Deployment>, sets: &Informer<ReplicaSet>, queue: &Queue, pod: &Pod) {
    let Some(r) = pods::controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet") else { return };
    let Some(set) = sets.get(pod.metadata.namespace.as_deref().unwrap_or(""), &r.name) else { return };
    if set.metadata.uid.as_deref() != Some(r.uid.as_str()) {
        return;
    }
    if let Some(d) = owner(deployments, &set) {
        let recreate = d.spec.as_ref().and_then(|s| s.strategy.as_ref()).and_then(|s| s.type_.as_deref());
        if recreate == Some("Recreate") {
            queue.add(key(&d.metadata));
        }
    }
}

struct Deployments {
    client: kube::Client,
    recorder: Arc<Recorder>,
    deployments: Informer<Deployment>,
    sets: Informer<ReplicaSet>,
    pods: Informer<Pod>,
    /// The new set's creation, until the cache has it.
    expectations: Arc<Expectations>,
}

impl Reconcile for Deployments {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Deployments {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(cached) = self.deployments.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        // A set this controller created is not in the cache yet; its arrival requeues the key.
        if !self.expectations.satisfied(key) {
            return Ok(None);
        }
        let selector = match selector(&cached) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(deployment = key, error = %e, "invalid selector; nothing to do");
                return Ok(None);
            }
        };
        let api: Api<Deployment> = Api::namespaced(self.client.clone(), ns);
        if selector.is_empty() {
            let message = "This deployment is selecting all pods. A non-empty selector is required.";
            self.recorder.object(&*cached, Type::Warning, "SelectingAll", message.into());
            let status = cached.status.clone().unwrap_or_default();
            if status.observed_generation < cached.metadata.generation {
                let mut updated = (*cached).clone();
                updated.status = Some(DeploymentStatus { observed_generation: cached.metadata.generation, ..status });
                api.replace_status(name, &PostParams::default(), &updated).await?;
            }
            return Ok(None);
        }
        let rollout = match Rollout::of(&cached.spec.clone().unwrap_or_default()) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(deployment = key, error = %e, "invalid rolling update; nothing to do");
                return Ok(None);
            }
        };
        let sets = self.claim(&cached, &selector).await?;
        // Condition times are whole seconds, as they are stored.
        let now = Timestamp::from_second(Timestamp::now().as_second()).unwrap_or_else(|_| Timestamp::now());
        let mut run = Run { ctl: self, api, key, original: cached.clone(), d: (*cached).clone(), rollout, sets, now };
        run.run().await
    }

    /// The Deployment's sets after adopting matching orphans and releasing sets that stopped
    /// matching.
    async fn claim(&self, d: &Deployment, selector: &LabelSelector) -> Result<Vec<Arc<ReplicaSet>>, Error> {
        let uid = d.metadata.uid.as_deref().unwrap_or("");
        let deleting = d.metadata.deletion_timestamp.is_some();
        let ns = d.metadata.namespace.as_deref().unwrap_or("");
        let api: Api<ReplicaSet> = Api::namespaced(self.client.clone(), ns);
        let mut owned = Vec::new();
        for set in self.sets.list(ns) {
            let set_name = set.metadata.name.as_deref().unwrap_or("");
            let mut references = set.metadata.owner_references.clone().unwrap_or_default();
            let patch = match plan::claim(uid, deleting, selector, &set.metadata) {
                Claim::Owned => {
                    owned.push(set);
                    continue;
                }
                Claim::Ignore => continue,
                Claim::Adopt => {
                    references.push(pods::controller_reference(d));
                    Some(references)
                }
                Claim::Release => {
                    references.retain(|r| r.uid != uid);
                    (!references.is_empty()).then_some(references)
                }
            };
            let adopt = patch.as_ref().is_some_and(|refs| refs.iter().any(|r| r.uid == uid));
            let body = json!({"metadata": {
                "ownerReferences": patch,
                "resourceVersion": set.metadata.resource_version,
            }});
            match api.patch(set_name, &PatchParams::default(), &Patch::Merge(&body)).await {
                Ok(updated) if adopt => {
                    tracing::info!(deployment = %key(&d.metadata), replicaset = set_name, "adopted");
                    owned.push(Arc::new(updated));
                }
                Ok(_) => tracing::info!(deployment = %key(&d.metadata), replicaset = set_name, "released"),
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(owned)
    }
}

/// One sync of one Deployment: `d` is the working copy whose status and revision annotation
/// are written at the end when they differ from `original`'s.
struct Run<'a> {
    ctl: &'a Deployments,
    api: Api<Deployment>,
    key: &'a str,
    original: Arc<Deployment>,
    d: Deployment,
    rollout: Rollout,
    /// Every set the Deployment owns, as last written or seen.
    sets: Vec<Arc<ReplicaSet>>,
    now: Timestamp,
}

impl Run<'_> {
    fn ns(&self) -> &str {
        self.original.metadata.namespace.as_deref().unwrap_or("")
    }

    fn set_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctl.client.clone(), self.ns())
    }

    fn spec(&self) -> DeploymentSpec {
        self.d.spec.clone().unwrap_or_default()
    }

    fn status(&mut self) -> &mut DeploymentStatus {
        self.d.status.get_or_insert_default()
    }

    fn has_deadline(&self) -> bool {
        plan::progress_deadline(&self.spec()).is_some()
    }

    /// The new set and the old ones, as they stand.
    fn split(&self) -> (Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>) {
        plan::split(&self.spec().template, &self.sets)
    }

    fn replace(&mut self, updated: ReplicaSet) -> Arc<ReplicaSet> {
        let updated = Arc::new(updated);
        match self.sets.iter_mut().find(|s| s.metadata.uid == updated.metadata.uid) {
            Some(slot) => *slot = updated.clone(),
            None => self.sets.push(updated.clone()),
        }
        updated
    }

    fn set_revision(&mut self, revision: Option<String>) {
        if let Some(revision) = revision {
            self.d.metadata.annotations.get_or_insert_default().insert(plan::REVISION.into(), revision);
        }
    }

    async fn run(&mut self) -> Result<Option<Duration>, Error> {
        if self.d.metadata.deletion_timestamp.is_some() {
            self.sync_new_set().await?;
            return self.finish_scaling().await;
        }
        if let Some(c) = plan::pause_condition(&self.d, self.now) {
            plan::set_condition(self.status(), c);
        }
        self.sync_new_set().await?;
        let spec = self.spec();
        if spec.paused.unwrap_or(false) || plan::is_scaling_event(self.rollout.replicas, &self.sets) {
            return self.scale().await;
        }
        match self.rollout.strategy {
            Strategy::Recreate => self.recreate().await,
            Strategy::RollingUpdate { .. } => self.rolling().await,
        }
    }

    /// Upstream's getNewReplicaSet for a new set that exists: its annotations (and revision)
    /// and minReadySeconds brought up to date, and its revision noted on the Deployment.
    async fn sync_new_set(&mut self) -> Result<(), Error> {
        let (Some(new), olds) = self.split() else { return Ok(()) };
        let revision = plan::max_revision(&olds) + 1;
        let annotations = plan::new_set_annotations(
            self.d.metadata.annotations.as_ref(),
            new.metadata.annotations.as_ref(),
            revision,
        );
        let min_ready = self.spec().min_ready_seconds.unwrap_or(0);
        let new = if new.metadata.annotations.as_ref() != Some(&annotations)
            || new.spec.as_ref().and_then(|s| s.min_ready_seconds).unwrap_or(0) != min_ready
        {
            let body = json!({
                "metadata": {"annotations": annotations, "resourceVersion": new.metadata.resource_version},
                "spec": {"minReadySeconds": min_ready},
            });
            let name = new.metadata.name.as_deref().unwrap_or("");
            let updated = self.set_api().patch(name, &PatchParams::default(), &Patch::Merge(&body)).await?;
            self.replace(updated)
        } else {
            new
        };
        self.set_revision(new.metadata.annotations.as_ref().and_then(|a| a.get(plan::REVISION)).cloned());
        if self.has_deadline() && plan::get_condition(self.status(), plan::PROGRESSING).is_none() {
            let message = format!("Found new replica set {:?}", new.metadata.name.as_deref().unwrap_or(""));
            let c = plan::condition(plan::PROGRESSING, "True", plan::FOUND_NEW_RS, message, self.now);
            plan::set_condition(self.status(), c);
        }
        Ok(())
    }

    /// Upstream's getNewReplicaSet creating the new set, sized for the strategy's first step.
    /// A name taken by a set that is not this template's is a hash collision: the count goes up
    /// (changing the hash) and the sync is retried.
    async fn create_new_set(&mut self, olds: &[Arc<ReplicaSet>]) -> Result<Arc<ReplicaSet>, Error> {
        let spec = self.spec();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = plan::pod_template_hash(&spec.template, collision_count);
        let pods: i32 = olds.iter().map(|rs| plan::pods_of(rs)).sum();
        let replicas = plan::new_set_replicas(&self.rollout, pods, 0);
        let revision = plan::max_revision(olds) + 1;
        let set = plan::new_replica_set(&self.d, &self.rollout, &hash, replicas, revision);
        let set_name = set.metadata.name.clone().unwrap_or_default();
        self.ctl.expectations.expect_creations(self.key, 1);
        match self.set_api().create(&PostParams::default(), &set).await {
            Ok(created) => {
                tracing::info!(deployment = self.key, replicaset = %set_name, replicas, "created the new replica set");
                if replicas > 0 {
                    self.event(format!("Scaled up replica set {set_name} from 0 to {replicas}"));
                }
                self.set_revision(Some(revision.to_string()));
                if self.has_deadline() {
                    let message = format!("Created new replica set {set_name:?}");
                    let c = plan::condition(plan::PROGRESSING, "True", plan::NEW_RS_CREATED, message, self.now);
                    plan::set_condition(self.status(), c);
                }
                Ok(self.replace(created))
            }
            Err(kube::Error::Api(e)) if e.code == 409 && e.reason == "AlreadyExists" => {
                self.ctl.expectations.creation_observed(self.key);
                let Some(existing) = self.ctl.sets.get(self.ns(), &set_name) else {
                    // The cache is behind: retry once it has the set.
                    return Err(kube::Error::Api(e).into());
                };
                let ours =
                    pods::controller_of(&existing.metadata).map(|r| r.uid.as_str()) == self.d.metadata.uid.as_deref();
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| plan::equal_ignore_hash(t, &spec.template));
                if ours && same {
                    self.set_revision(Some(revision.to_string()));
                    return Ok(self.replace((*existing).clone()));
                }
                let count = collision_count.unwrap_or(0).saturating_add(1);
                tracing::info!(deployment = self.key, replicaset = %set_name, collision_count = count, "hash collision");
                self.status().collision_count = Some(count);
                self.write_status().await?;
                Err(kube::Error::Api(e).into())
            }
            Err(e) => {
                self.ctl.expectations.creation_observed(self.key);
                if matches!(&e, kube::Error::Api(s) if s.code == 403) {
                    return Err(e.into());
                }
                let message = format!("Failed to create new replica set {set_name:?}: {e}");
                self.ctl.recorder.object(&*self.original, Type::Warning, "FailedCreate", message.clone());
                if self.has_deadline() {
                    let c = plan::condition(plan::PROGRESSING, "False", plan::FAILED_RS_CREATE, message, self.now);
                    plan::set_condition(self.status(), c);
                    self.write_status().await?;
                }
                Err(e.into())
            }
        }
    }

    fn event(&self, message: String) {
        self.ctl.recorder.object(&*self.original, Type::Normal, "ScalingReplicaSet", message);
    }

    /// Upstream's scaleReplicaSet: the set's size and replica annotations, a resize told in an
    /// event. Nothing is written when both are already right.
    async fn resize(&mut self, set: &ReplicaSet, size: i32) -> Result<(), Error> {
        let from = plan::spec_replicas(set);
        if from == size && plan::replica_annotations_current(set, &self.rollout) {
            return Ok(());
        }
        let body = json!({
            "metadata": {
                "resourceVersion": set.metadata.resource_version,
                "annotations": {
                    plan::DESIRED_REPLICAS: self.rollout.replicas.to_string(),
                    plan::MAX_REPLICAS: self.rollout.max_replicas().to_string(),
                },
            },
            "spec": {"replicas": size},
        });
        let set_name = set.metadata.name.as_deref().unwrap_or("");
        let updated = self.set_api().patch(set_name, &PatchParams::default(), &Patch::Merge(&body)).await?;
        if from != size {
            let direction = if size > from { "up" } else { "down" };
            tracing::debug!(deployment = self.key, replicaset = set_name, from, to = size, "scaled");
            self.event(format!("Scaled {direction} replica set {set_name} from {from} to {size}"));
        }
        self.replace(updated);
        Ok(())
    }

    /// Upstream's `sync`: a paused or resized Deployment only scales; a paused one also trims
    /// its history. Status counts, no rollout conditions.
    async fn scale(&mut self) -> Result<Option<Duration>, Error> {
        let (new, olds) = self.split();
        let status_replicas = self.original.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        for (set, size) in plan::scale(&self.rollout, status_replicas, new.as_ref(), &olds) {
            self.resize(&set, size).await?;
        }
        if self.spec().paused.unwrap_or(false) {
            let (_, olds) = self.split();
            self.cleanup(&olds).await?;
        }
        self.finish_scaling().await
    }

    /// Upstream's rolloutRolling: one step, then status.
    async fn rolling(&mut self) -> Result<Option<Duration>, Error> {
        let (new, olds) = self.split();
        let new = match new {
            Some(new) => new,
            None => self.create_new_set(&olds).await?,
        };
        match plan::rolling_step(&self.rollout, &new, &olds) {
            Step::ScaleNew(size) => {
                self.resize(&new, size).await?;
            }
            Step::ScaleOld(targets) => {
                for (set, size) in targets {
                    self.resize(&set, size).await?;
                }
            }
            Step::Wait => {
                if self.complete() {
                    self.cleanup(&olds).await?;
                }
            }
        }
        self.finish_rollout().await
    }

    /// Upstream's rolloutRecreate: old sets to zero, wait for their pods, then the new set.
    async fn recreate(&mut self) -> Result<Option<Duration>, Error> {
        let (new, olds) = self.split();
        let pods = self.ctl.pods.list(self.ns());
        match plan::recreate_step(&olds, &pods) {
            RecreateStep::ScaleDownOld(sets) => {
                for set in sets {
                    self.resize(&set, 0).await?;
                }
            }
            RecreateStep::WaitForOldPods => {}
            RecreateStep::ScaleUpNew => {
                let new = match new {
                    Some(new) => new,
                    None => self.create_new_set(&olds).await?,
                };
                if plan::spec_replicas(&new) != self.rollout.replicas {
                    self.resize(&new, self.rollout.replicas).await?;
                }
                if self.complete() {
                    self.cleanup(&olds).await?;
                }
            }
        }
        self.finish_rollout().await
    }

    /// Upstream's DeploymentComplete on the status as the sync found it.
    fn complete(&self) -> bool {
        let status = self.d.status.clone().unwrap_or_default();
        plan::complete(self.rollout.replicas, self.d.metadata.generation, &status)
    }

    /// Upstream's cleanupDeployment: old empty sets beyond revisionHistoryLimit go.
    async fn cleanup(&self, olds: &[Arc<ReplicaSet>]) -> Result<(), Error> {
        let api = self.set_api();
        for set in plan::history_to_delete(self.spec().revision_history_limit, olds) {
            let set_name = set.metadata.name.as_deref().unwrap_or("");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: set.metadata.uid.clone(),
                    resource_version: set.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            match api.delete(set_name, &params).await {
                Ok(_) => tracing::info!(deployment = self.key, replicaset = set_name, "deleted an old replica set"),
                // Gone, or changed since: the next sync decides again.
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Status after scaling only (paused, resized, being deleted): counts and Available.
    async fn finish_scaling(&mut self) -> Result<Option<Duration>, Error> {
        let (new, _) = self.split();
        let status = plan::status(&self.d, &self.rollout, &self.sets, new.as_deref(), self.now);
        self.d.status = Some(status);
        self.write_status().await?;
        Ok(None)
    }

    /// Status after a rollout step, with Progressing; when to look again for the deadline.
    async fn finish_rollout(&mut self) -> Result<Option<Duration>, Error> {
        let (new, _) = self.split();
        let status = plan::rollout_status(&self.d, &self.rollout, &self.sets, new.as_deref(), self.now);
        let again = plan::progress_check_after(&self.d, &self.rollout, &status, self.now);
        self.d.status = Some(status);
        self.write_status().await?;
        Ok(again)
    }

    /// Writes the working status (against the cached resourceVersion, so a stale sync fails
    /// with a conflict), then the revision annotation, each when it changed.
    async fn write_status(&self) -> Result<(), Error> {
        let (name, original) = (self.original.metadata.name.as_deref().unwrap_or(""), &self.original);
        if original.status != self.d.status {
            let mut updated = (**original).clone();
            updated.status.clone_from(&self.d.status);
            self.api.replace_status(name, &PostParams::default(), &updated).await?;
        }
        let revision = |d: &Deployment| d.metadata.annotations.as_ref().and_then(|a| a.get(plan::REVISION)).cloned();
        if let Some(want) = revision(&self.d).filter(|want| revision(original).as_ref() != Some(want)) {
            let body = json!({"metadata": {"annotations": {plan::REVISION: want}}});
            self.api.patch(name, &PatchParams::default(), &Patch::Merge(&body)).await?;
        }
        Ok(())
    }
}

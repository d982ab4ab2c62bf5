//! The StatefulSet controller: pods with stable names (`<set>-<ordinal>`), hostnames and
//! storage (a PersistentVolumeClaim per claim template and ordinal, made before the pod and kept
//! when the pod or the ordinal goes), created in order and each only once its predecessors are
//! Running and Ready (`OrderedReady`), or all at once (`Parallel`); scaled down from the highest
//! ordinal. Each template version is a ControllerRevision; a RollingUpdate replaces pods of old
//! revisions from the highest ordinal down to the partition, one at a time.
//!
//! Pod names are fixed, so a stale cache cannot make a second pod: a create that finds the name
//! taken waits for the watch, and deletes carry the pod's UID as a precondition. So, unlike the
//! ReplicaSet and DaemonSet controllers, this one needs no expectations.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use api_types::labels::LabelSelector;
use daemon::events::{Recorder, Type};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodTemplateSpec};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::json;

use crate::controller::{Controller, Reconcile};
use crate::controllers::owned::{claim_pods, pod_changed};
use crate::informers::{self, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::{Action, Input, UpdateRevision, Why};

pub const NAME: &str = "statefulset-controller";
const WORKERS: usize = 2;

pub fn new(ctx: &Context) -> Controller {
    let sets = ctx.informers.get::<StatefulSet>();
    let pods = ctx.informers.get::<Pod>();
    let revisions = ctx.informers.get::<ControllerRevision>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        sets.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (sets, queue) = (sets.clone(), queue.clone());
        pods.on_change(move |change| pod_changed(&sets, selector, &queue, None, change));
    }
    {
        let (sets, queue) = (sets.clone(), queue.clone());
        revisions.on_change(move |change| {
            let revision = change.object();
            if let Some(r) = pods::controller_of(&revision.metadata).filter(|r| r.kind == "StatefulSet") {
                let ns = revision.metadata.namespace.as_deref().unwrap_or("");
                if let Some(set) = sets.get(ns, &r.name) {
                    queue.add(key(&set.metadata));
                }
            }
        });
    }
    let synced = informers::all_synced([
        sets.until_synced(),
        pods.until_synced(),
        revisions.until_synced(),
        claims.until_synced(),
    ]);
    let reconciler =
        StatefulSets { client: ctx.client.clone(), recorder: ctx.recorder.clone(), sets, pods, revisions, claims };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

fn selector(set: &StatefulSet) -> Result<LabelSelector, Error> {
    let sel = set.spec.as_ref().map(|s| &s.selector).cloned().unwrap_or_default();
    LabelSelector::from_label_selector(&sel).map_err(|e| Error::Config(format!("selector: {e}")))
}

fn already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

fn not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

struct StatefulSets {
    client: kube::Client,
    recorder: Arc<Recorder>,
    sets: Informer<StatefulSet>,
    pods: Informer<Pod>,
    revisions: Informer<ControllerRevision>,
    claims: Informer<PersistentVolumeClaim>,
}

impl Reconcile for StatefulSets {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

/// The revisions a sync works with.
struct Revisions {
    /// Every revision of the set, oldest first.
    all: Vec<Arc<ControllerRevision>>,
    current: Arc<ControllerRevision>,
    update: Arc<ControllerRevision>,
    collision_count: Option<i32>,
}

impl StatefulSets {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(set) = self.sets.get(ns, name) else { return Ok(None) };
        let selector = match selector(&set) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(statefulset = key, error = %e, "invalid selector; nothing to do");
                return Ok(None);
            }
        };
        let owned = claim_pods(&self.client, set.as_ref(), &selector, self.pods.list(ns)).await?;
        let members: Vec<Arc<Pod>> = owned
            .into_iter()
            .filter(|p| plan::ordinal(name, p.metadata.name.as_deref().unwrap_or("")).is_some())
            .collect();
        let revisions = self.revisions(&set).await?;
        let current_name = revisions.current.metadata.name.clone().unwrap_or_default();
        let update_name = revisions.update.metadata.name.clone().unwrap_or_default();
        let spec = set.spec.clone().unwrap_or_default();
        let strategy = spec.update_strategy.clone().unwrap_or_default();
        let partition = match strategy.type_.as_deref().unwrap_or("RollingUpdate") {
            "OnDelete" => None,
            _ => Some(strategy.rolling_update.and_then(|r| r.partition).unwrap_or(0)),
        };
        let now = Timestamp::now();
        let input = Input {
            set_name: name,
            replicas: spec.replicas.unwrap_or(1),
            parallel: spec.pod_management_policy.as_deref() == Some("Parallel"),
            partition,
            current_revision: &current_name,
            update_revision: &update_name,
            min_ready_seconds: spec.min_ready_seconds.unwrap_or(0),
            now,
        };
        let mut result = Ok(());
        if set.metadata.deletion_timestamp.is_none() {
            for action in plan::plan(&input, &members) {
                result = self.act(&set, &revisions, action).await;
                if result.is_err() {
                    break;
                }
            }
        }
        let status = plan::status(&set, &members, &current_name, &update_name, revisions.collision_count, now);
        if set.status.as_ref() != Some(&status) {
            let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
            let mut updated = (*set).clone();
            updated.status = Some(status.clone());
            api.replace_status(name, &PostParams::default(), &updated).await?;
        }
        result?;
        let current = status.current_revision.as_deref().unwrap_or(&current_name);
        self.truncate_history(&set, &revisions.all, &members, current, &update_name).await?;
        let min_ready = input.min_ready_seconds;
        let waiting = status.ready_replicas.unwrap_or(0) > status.available_replicas.unwrap_or(0);
        Ok((min_ready > 0 && waiting).then(|| Duration::from_secs(u64::try_from(min_ready).unwrap_or(0) + 1)))
    }

    /// The set's revisions, with the one of its template made (or renumbered, for a rollback)
    /// if need be; a name taken by other data is a hash collision, so the count goes up.
    async fn revisions(&self, set: &StatefulSet) -> Result<Revisions, Error> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let uid = set.metadata.uid.as_deref().unwrap_or("");
        let mut all: Vec<Arc<ControllerRevision>> = self
            .revisions
            .list(ns)
            .into_iter()
            .filter(|r| pods::controller_of(&r.metadata).is_some_and(|o| o.uid == uid))
            .collect();
        plan::sort_revisions(&mut all);
        let template = set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let data = plan::revision_data(&template);
        let mut collision_count = set.status.as_ref().and_then(|s| s.collision_count);
        let api: Api<ControllerRevision> = Api::namespaced(self.client.clone(), ns);
        let update = match plan::update_revision(&all, &data) {
            UpdateRevision::Existing(name) => all.iter().find(|r| r.metadata.name.as_ref() == Some(&name)).cloned(),
            UpdateRevision::Renumber { name, revision } => {
                let patch = json!({"revision": revision});
                let renumbered = api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                tracing::info!(statefulset = %key(&set.metadata), revision = name, number = revision, "rolled back");
                Some(Arc::new(renumbered))
            }
            UpdateRevision::Create { revision } => loop {
                let fresh = plan::new_revision(set, data.clone(), revision, collision_count);
                let name = fresh.metadata.name.clone().unwrap_or_default();
                match api.create(&PostParams::default(), &fresh).await {
                    Ok(created) => break Some(Arc::new(created)),
                    Err(e) if already_exists(&e) => {
                        let existing = api.get(&name).await?;
                        if existing.data.as_ref().map(|d| &d.0) == Some(&data) {
                            break Some(Arc::new(existing));
                        }
                        collision_count = Some(collision_count.unwrap_or(0).saturating_add(1));
                        tracing::info!(statefulset = %key(&set.metadata), revision = name, "hash collision");
                    }
                    Err(e) => return Err(e.into()),
                }
            },
        };
        let Some(update) = update else {
            return Err(Error::Config(format!("revision of {} missing from the cache", key(&set.metadata))));
        };
        if !all.iter().any(|r| r.metadata.name == update.metadata.name) {
            all.push(update.clone());
        }
        let current_name = set.status.as_ref().and_then(|s| s.current_revision.as_deref());
        let current = all
            .iter()
            .find(|r| current_name.is_some_and(|c| r.metadata.name.as_deref() == Some(c)))
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok(Revisions { all, current, update, collision_count })
    }

    async fn act(&self, set: &StatefulSet, revisions: &Revisions, action: Action) -> Result<(), Error> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let set_name = set.metadata.name.as_deref().unwrap_or("");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        match action {
            Action::Create { ordinal, revision } => {
                let pod_name = plan::pod_name(set_name, ordinal);
                self.create_claims(set, ordinal, &pod_name).await?;
                let source = if revision == revisions.update.metadata.name.as_deref().unwrap_or("") {
                    &revisions.update
                } else {
                    &revisions.current
                };
                let template: PodTemplateSpec = plan::revision_template(source)
                    .unwrap_or_else(|| set.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default());
                let pod = plan::stateful_pod(set, &template, &revision, ordinal, pods::controller_reference(set));
                match pods.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        self.recorder.object(
                            set,
                            Type::Normal,
                            "SuccessfulCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} successful"),
                        );
                        Ok(())
                    }
                    // The cache is behind: the watch brings the pod and another sync.
                    Err(e) if already_exists(&e) => Ok(()),
                    Err(e) => {
                        self.recorder.object(
                            set,
                            Type::Warning,
                            "FailedCreate",
                            format!("create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                        );
                        Err(e.into())
                    }
                }
            }
            Action::Delete { pod, why } => {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                if why == Why::Failed {
                    self.recorder.object(
                        set,
                        Type::Warning,
                        "RecreatingFailedPod",
                        format!("StatefulSet {ns}/{set_name} is recreating failed Pod {pod_name}"),
                    );
                }
                let params = DeleteParams {
                    preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                    ..Default::default()
                };
                match pods.delete(&pod_name, &params).await {
                    Ok(_) => {
                        tracing::debug!(statefulset = %key(&set.metadata), pod = pod_name, ?why, "deleted");
                        self.recorder.object(
                            set,
                            Type::Normal,
                            "SuccessfulDelete",
                            format!("delete Pod {pod_name} in StatefulSet {set_name} successful"),
                        );
                        Ok(())
                    }
                    Err(e) if not_found(&e) => Ok(()),
                    Err(e) => {
                        self.recorder.object(
                            set,
                            Type::Warning,
                            "FailedDelete",
                            format!("delete Pod {pod_name} in StatefulSet {set_name} failed error: {e}"),
                        );
                        Err(e.into())
                    }
                }
            }
        }
    }

    /// Makes the ordinal's claims that do not exist yet; a claim being deleted is an error (the
    /// pod would lose its storage), retried until it is gone and can be made again.
    async fn create_claims(&self, set: &StatefulSet, ordinal: i32, pod_name: &str) -> Result<(), Error> {
        let ns = set.metadata.namespace.as_deref().unwrap_or("");
        let set_name = set.metadata.name.as_deref().unwrap_or("");
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        for claim in plan::claims(set, ordinal) {
            let claim_name = claim.metadata.name.clone().unwrap_or_default();
            let existing = match self.claims.get(ns, &claim_name) {
                Some(c) => Some(c),
                None => api.get_opt(&claim_name).await?.map(Arc::new),
            };
            if let Some(existing) = existing {
                if existing.metadata.deletion_timestamp.is_some() {
                    return Err(Error::Config(format!(
                        "claim {ns}/{claim_name} of pod {pod_name} is being deleted; waiting to make it again"
                    )));
                }
                continue;
            }
            match api.create(&PostParams::default(), &claim).await {
                Ok(_) => self.recorder.object(
                    set,
                    Type::Normal,
                    "SuccessfulCreate",
                    format!("create Claim {claim_name} Pod {pod_name} in StatefulSet {set_name} success"),
                ),
                Err(e) if already_exists(&e) => {}
                Err(e) => {
                    self.recorder.object(
                        set,
                        Type::Warning,
                        "FailedCreate",
                        format!(
                            "create Claim {claim_name} for Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                        ),
                    );
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that nothing uses.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        all: &[Arc<ControllerRevision>],
        members: &[Arc<Pod>],
        current: &str,
        update: &str,
    ) -> Result<(), Error> {
        let limit = set.spec.as_ref().and_then(|s| s.revision_history_limit).unwrap_or(10);
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), set.metadata.namespace.as_deref().unwrap_or(""));
        for name in plan::history_to_delete(all, members, current, update, limit) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::debug!(statefulset = %key(&set.metadata), revision = name, "dropped old revision"),
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

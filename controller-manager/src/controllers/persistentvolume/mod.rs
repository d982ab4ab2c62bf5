//! The PersistentVolume binder (upstream's `persistentvolume-binder`) and the built-in
//! local-path provisioner ([`localpath`]).
//!
//! One queue carries three kinds of key: `persistentvolumeclaims/<ns>/<name>`,
//! `persistentvolumes/<name>` and `storageclasses/local-path` (made at start unless
//! `--default-storage-class=false`). A claim's sync binds it to the volume [`plan::find_match`]
//! picks (volume first, then claim, as upstream), waits for its first consumer, or provisions;
//! a volume's sync keeps its phase and, once its claim is gone, releases it and carries out its
//! reclaim policy. Local-path volumes are deleted by a helper pod on their node that removes the
//! directory, then the volume goes. Every write is conditional on the cached resourceVersion, so
//! a decision made on a stale cache fails and is made again; one worker, as upstream's one per
//! queue, keeps two claims from reaching for one volume at once.

pub mod localpath;
pub mod plan;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use daemon::events::{Recorder, Type};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::{ClaimPlan, VolumePlan};

pub const NAME: &str = "persistentvolume-binder-controller";
const WORKERS: usize = 1;

const CLAIMS: &str = "persistentvolumeclaims/";
const VOLUMES: &str = "persistentvolumes/";
const CLASSES: &str = "storageclasses/";

fn claim_key(namespace: Option<&str>, name: Option<&str>) -> String {
    format!("{CLAIMS}{}/{}", namespace.unwrap_or(""), name.unwrap_or(""))
}

fn volume_key(name: &str) -> String {
    format!("{VOLUMES}{name}")
}

fn is_unbound(claim: &PersistentVolumeClaim) -> bool {
    claim.metadata.annotations.as_ref().is_none_or(|a| !a.contains_key(plan::BIND_COMPLETED))
}

fn volume_name_of(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())
}

fn names(volume: &PersistentVolume, claim: &ObjectMeta) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| r.name == claim.name && r.namespace == claim.namespace)
}

pub fn new(ctx: &Context) -> Controller {
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    let volumes = ctx.informers.get::<PersistentVolume>();
    let classes = ctx.informers.get::<StorageClass>();
    let nodes = ctx.informers.get::<Node>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    {
        let (queue, volumes) = (queue.clone(), volumes.clone());
        claims.on_change(move |change| {
            let claim = change.object();
            queue.add(claim_key(claim.metadata.namespace.as_deref(), claim.metadata.name.as_deref()));
            if let Some(volume) = volume_name_of(claim) {
                queue.add(volume_key(volume));
            }
            if let Change::Deleted(_) = change {
                for v in volumes.all().iter().filter(|v| names(v, &claim.metadata)) {
                    queue.add(volume_key(v.metadata.name.as_deref().unwrap_or("")));
                }
            }
        });
    }
    let unbound_claims = {
        let claims = claims.clone();
        move |queue: &Queue| {
            for c in claims.all().iter().filter(|c| is_unbound(c)) {
                queue.add(claim_key(c.metadata.namespace.as_deref(), c.metadata.name.as_deref()));
            }
        }
    };
    {
        let (queue, unbound_claims) = (queue.clone(), unbound_claims.clone());
        volumes.on_change(move |change| {
            let volume = change.object();
            queue.add(volume_key(volume.metadata.name.as_deref().unwrap_or("")));
            match volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) {
                Some(r) => queue.add(claim_key(r.namespace.as_deref(), r.name.as_deref())),
                // A free volume may be what a waiting claim needs.
                None if matches!(change, Change::Applied { .. }) => unbound_claims(&queue),
                None => {}
            }
        });
    }
    {
        let queue = queue.clone();
        classes.on_change(move |change| {
            if let Change::Applied { .. } = change {
                unbound_claims(&queue);
            }
        });
    }
    {
        let queue = queue.clone();
        pods.on_change(move |change| {
            let pod = change.object();
            if pod.metadata.namespace.as_deref() == Some(localpath::HELPER_NAMESPACE)
                && let Some(volume) = pod.metadata.labels.as_ref().and_then(|l| l.get(localpath::HELPER_LABEL))
            {
                queue.add(volume_key(volume));
            }
        });
    }
    if ctx.config.default_storage_class {
        queue.add(format!("{CLASSES}{}", localpath::CLASS));
    }
    let synced = informers::all_synced([
        claims.until_synced(),
        volumes.until_synced(),
        classes.until_synced(),
        nodes.until_synced(),
        pods.until_synced(),
    ]);
    let reconciler = Binder {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        claims,
        volumes,
        classes,
        nodes,
        pods,
        local_path_dir: ctx.config.local_path_dir.clone(),
        helper_image: ctx.config.local_path_helper_image.clone(),
    };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Binder {
    client: kube::Client,
    recorder: Arc<Recorder>,
    claims: Informer<PersistentVolumeClaim>,
    volumes: Informer<PersistentVolume>,
    classes: Informer<StorageClass>,
    nodes: Informer<Node>,
    pods: Informer<Pod>,
    local_path_dir: PathBuf,
    helper_image: String,
}

impl Reconcile for Binder {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        async move {
            if let Some(rest) = key.strip_prefix(CLAIMS) {
                let (ns, name) = rest.split_once('/').unwrap_or(("", rest));
                self.sync_claim(ns, name).await
            } else if let Some(name) = key.strip_prefix(VOLUMES) {
                self.sync_volume(name).await
            } else if let Some(name) = key.strip_prefix(CLASSES) {
                self.ensure_class(name).await
            } else {
                Ok(None)
            }
        }
        .boxed()
    }
}

impl Binder {
    fn record<K: kube::Resource<DynamicType = ()>>(&self, object: &K, event: &plan::Event) {
        let type_ = if event.warning { Type::Warning } else { Type::Normal };
        self.recorder.object(object, type_, event.reason, event.message.clone());
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<Option<Duration>, Error> {
        let Some(claim) = self.claims.get(ns, name) else { return Ok(None) };
        if claim.metadata.deletion_timestamp.is_some() && is_unbound(&claim) {
            return Ok(None);
        }
        let mut volumes = self.volumes.all();
        if let Some(wanted) = volume_name_of(&claim)
            && !volumes.iter().any(|v| v.metadata.name.as_deref() == Some(wanted))
        {
            // The cache may be behind a volume just made: ask before calling the claim Lost.
            if let Some(v) = Api::<PersistentVolume>::all(self.client.clone()).get_opt(wanted).await? {
                volumes.push(Arc::new(v));
            }
        }
        let classes = self.classes.all();
        let selected = claim.metadata.annotations.as_ref().and_then(|a| a.get(plan::SELECTED_NODE));
        let node = match selected {
            Some(n) => match self.nodes.get("", n) {
                Some(node) => Some(node),
                None => Api::<Node>::all(self.client.clone()).get_opt(n).await?.map(Arc::new),
            },
            None => None,
        };
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let params = PostParams::default();
        match plan::claim(&claim, &volumes, &classes, node.as_deref()) {
            ClaimPlan::Steady => {}
            ClaimPlan::Phase(phase, event) => {
                if let Some(e) = event {
                    self.record(claim.as_ref(), &e);
                }
                if claim.status.as_ref().and_then(|s| s.phase.as_deref()) != Some(phase) {
                    let mut updated = (*claim).clone();
                    updated.status.get_or_insert_default().phase = Some(phase.into());
                    api.replace_status(name, &params, &updated).await?;
                    tracing::info!(claim = %format!("{ns}/{name}"), phase, "claim phase");
                }
            }
            ClaimPlan::Bind(binding) => self.bind(&claim, &volumes, *binding).await?,
            ClaimPlan::AssignClass(class) => {
                let mut updated = (*claim).clone();
                updated.spec.get_or_insert_default().storage_class_name = Some(class.clone());
                api.replace(name, &params, &updated).await?;
                tracing::info!(claim = %format!("{ns}/{name}"), class, "assigned the default storage class");
            }
            ClaimPlan::Reschedule(event) => {
                self.record(claim.as_ref(), &event);
                let mut updated = (*claim).clone();
                if let Some(a) = updated.metadata.annotations.as_mut() {
                    a.remove(plan::SELECTED_NODE);
                }
                api.replace(name, &params, &updated).await?;
            }
            ClaimPlan::Provision(provisioner) => {
                self.provision(&claim, &classes, &provisioner, node.as_deref()).await?;
            }
        }
        Ok(None)
    }

    /// Writes a binding: the volume (spec, then phase), then the claim (spec, then status),
    /// each only if it differs.
    async fn bind(
        &self,
        claim: &PersistentVolumeClaim,
        volumes: &[Arc<PersistentVolume>],
        binding: plan::Binding,
    ) -> Result<(), Error> {
        let volume_name = binding.volume.metadata.name.clone().unwrap_or_default();
        let Some(current) = volumes.iter().find(|v| v.metadata.name.as_deref() == Some(volume_name.as_str())) else {
            return Ok(());
        };
        let params = PostParams::default();
        let pv_api: Api<PersistentVolume> = Api::all(self.client.clone());
        let mut volume = (**current).clone();
        if binding.volume_changed(&volume) {
            volume = pv_api.replace(&volume_name, &params, &binding.volume).await?;
        }
        if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Bound") {
            let bound = plan::with_phase(&volume, "Bound", None, Timestamp::now());
            pv_api.replace_status(&volume_name, &params, &bound).await?;
        }
        let (ns, name) =
            (claim.metadata.namespace.as_deref().unwrap_or(""), claim.metadata.name.as_deref().unwrap_or(""));
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
        let mut updated = claim.clone();
        if binding.claim_changed(&updated) {
            updated = api.replace(name, &params, &binding.claim).await?;
        }
        if updated.status != binding.claim.status {
            updated.status = binding.claim.status.clone();
            api.replace_status(name, &params, &updated).await?;
            tracing::info!(claim = %format!("{ns}/{name}"), volume = volume_name, "bound");
        }
        Ok(())
    }

    /// The claim names its provisioner (as upstream's binder does for external ones); the
    /// built-in local-path one makes the volume, pre-bound, and the claim's next sync binds it.
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        classes: &[Arc<StorageClass>],
        provisioner: &str,
        node: Option<&Node>,
    ) -> Result<(), Error> {
        let (ns, name) =
            (claim.metadata.namespace.as_deref().unwrap_or(""), claim.metadata.name.as_deref().unwrap_or(""));
        let ours = provisioner == localpath::PROVISIONER;
        let claim = match plan::with_provisioner(claim, provisioner) {
            Some(annotated) => {
                if !ours {
                    let message = format!(
                        "waiting for a volume to be made by the external provisioner {provisioner:?} or by hand"
                    );
                    self.recorder.object(claim, Type::Normal, "ExternalProvisioning", message);
                }
                let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), ns);
                api.replace(name, &PostParams::default(), &annotated).await?
            }
            None => claim.clone(),
        };
        if !ours {
            return Ok(());
        }
        let class_name = plan::claim_class(&claim);
        let Some(class) = classes.iter().find(|c| c.metadata.name.as_deref() == Some(class_name)) else {
            return Ok(());
        };
        let volume = match localpath::volume(&claim, class, node, &self.local_path_dir) {
            Ok(v) => v,
            Err(why) => {
                self.recorder.object(&claim, Type::Warning, "ProvisioningFailed", why);
                return Ok(());
            }
        };
        let volume_name = volume.metadata.name.clone().unwrap_or_default();
        if self.volumes.get("", &volume_name).is_some() {
            return Ok(());
        }
        let node_name = node.and_then(|n| n.metadata.name.as_deref()).unwrap_or("");
        self.recorder.object(
            &claim,
            Type::Normal,
            "Provisioning",
            format!("{provisioner} is making a volume for claim \"{ns}/{name}\" on node {node_name}"),
        );
        match Api::<PersistentVolume>::all(self.client.clone()).create(&PostParams::default(), &volume).await {
            Ok(_) => {
                tracing::info!(claim = %format!("{ns}/{name}"), volume = volume_name, node = node_name, "provisioned");
                let message = format!("Successfully provisioned volume {volume_name}");
                self.recorder.object(&claim, Type::Normal, "ProvisioningSucceeded", message);
            }
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                self.recorder.object(&claim, Type::Warning, "ProvisioningFailed", e.to_string());
                return Err(e.into());
            }
        }
        Ok(())
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(volume) = self.volumes.get("", name) else {
            // A helper still at work is left to finish (a volume deleted by hand can go before
            // its helper is done); its change brings this key back.
            let helper = self.pods.get(localpath::HELPER_NAMESPACE, &localpath::helper_name(name));
            if helper.is_none_or(|h| localpath::has_finished(&h)) {
                self.remove_helper(name).await?;
            }
            return Ok(None);
        };
        let reference = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
        let claim = match reference.filter(|r| r.uid.as_deref().is_some_and(|u| !u.is_empty())) {
            Some(r) => {
                let (ns, claim_name) = (r.namespace.as_deref().unwrap_or(""), r.name.as_deref().unwrap_or(""));
                match self.claims.get(ns, claim_name).filter(|c| c.metadata.uid == r.uid) {
                    Some(c) => Some(c),
                    // Gone or replaced, says the cache: make sure before releasing the volume.
                    None => Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), ns)
                        .get_opt(claim_name)
                        .await?
                        .map(Arc::new),
                }
            }
            None => None,
        };
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        let params = PostParams::default();
        match plan::volume(&volume, claim.as_deref()) {
            VolumePlan::Steady => Ok(None),
            VolumePlan::Phase(phase) => {
                api.replace_status(name, &params, &plan::with_phase(&volume, phase, None, Timestamp::now())).await?;
                tracing::debug!(volume = name, phase, "volume phase");
                Ok(None)
            }
            VolumePlan::Unbind(unbound) => {
                let unbound = api.replace(name, &params, &unbound).await?;
                api.replace_status(name, &params, &plan::with_phase(&unbound, "Available", None, Timestamp::now()))
                    .await?;
                tracing::info!(volume = name, "unbound: its claim took another volume");
                Ok(None)
            }
            VolumePlan::Reclaim { release: true } if volume.metadata.deletion_timestamp.is_some() => {
                // Deleted by hand while bound: its pv-protection finalizer goes as soon as it is
                // not Bound, so the reclaim (a local-path helper) starts before it is Released.
                let after = self.reclaim(&volume).await?;
                api.replace_status(name, &params, &plan::with_phase(&volume, "Released", None, Timestamp::now()))
                    .await?;
                tracing::info!(volume = name, "released: its claim is gone");
                Ok(after)
            }
            VolumePlan::Reclaim { release } => {
                let volume = if release {
                    let released = plan::with_phase(&volume, "Released", None, Timestamp::now());
                    let released = api.replace_status(name, &params, &released).await?;
                    tracing::info!(volume = name, "released: its claim is gone");
                    Arc::new(released)
                } else {
                    volume
                };
                self.reclaim(&volume).await
            }
        }
    }

    /// Carries out the reclaim policy of a released volume.
    async fn reclaim(&self, volume: &PersistentVolume) -> Result<Option<Duration>, Error> {
        let policy = volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
        let provisioned_by = volume.metadata.annotations.as_ref().and_then(|a| a.get(plan::PROVISIONED_BY));
        match policy.unwrap_or("Retain") {
            "Retain" => Ok(None),
            "Delete" if localpath::is_local_path(volume) => self.delete_local(volume).await,
            // An external provisioner deletes what it made.
            "Delete" if provisioned_by.is_some() => Ok(None),
            "Delete" => {
                self.delete_volume(volume).await?;
                Ok(None)
            }
            "Recycle" => {
                let message = "recycling is not supported; delete and recreate the volume".to_string();
                self.recorder.object(volume, Type::Warning, "VolumeFailedRecycle", message);
                Ok(None)
            }
            other => {
                let message = format!("unknown persistentVolumeReclaimPolicy {other:?}");
                self.recorder.object(volume, Type::Warning, "VolumeUnknownReclaimPolicy", message);
                Ok(None)
            }
        }
    }

    async fn delete_volume(&self, volume: &PersistentVolume) -> Result<(), Error> {
        let name = volume.metadata.name.as_deref().unwrap_or("");
        let params = DeleteParams {
            preconditions: Some(Preconditions { uid: volume.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match Api::<PersistentVolume>::all(self.client.clone()).delete(name, &params).await {
            Ok(_) => tracing::info!(volume = name, "deleted"),
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Deletes a local-path volume: a helper pod on its node removes the directory first.
    async fn delete_local(&self, volume: &PersistentVolume) -> Result<Option<Duration>, Error> {
        use localpath::Deletion;
        let name = volume.metadata.name.as_deref().unwrap_or("");
        let helper = self.pods.get(localpath::HELPER_NAMESPACE, &localpath::helper_name(name));
        let nodes = self.nodes.all();
        let now = Timestamp::now();
        match localpath::deletion(volume, helper.as_deref(), nodes.iter().map(Arc::as_ref), &self.helper_image, now) {
            Deletion::Start(pod) => {
                let node = pod.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
                match Api::<Pod>::namespaced(self.client.clone(), localpath::HELPER_NAMESPACE)
                    .create(&PostParams::default(), &pod)
                    .await
                {
                    Ok(_) => tracing::info!(volume = name, node, "removing the volume's directory"),
                    Err(kube::Error::Api(e)) if e.code == 409 => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(None)
            }
            Deletion::Wait => Ok(None),
            Deletion::RetryAfter(after) => Ok(Some(after)),
            Deletion::Finish => {
                self.delete_volume(volume).await?;
                self.remove_helper(name).await?;
                Ok(None)
            }
            Deletion::NodeGone => {
                tracing::info!(volume = name, "its node is gone, and the directory with it");
                self.delete_volume(volume).await?;
                Ok(None)
            }
            Deletion::Failed(message) => {
                self.recorder.object(volume, Type::Warning, "VolumeFailedDelete", message.clone());
                let failed = plan::with_phase(volume, "Failed", Some(message), now);
                Api::<PersistentVolume>::all(self.client.clone())
                    .replace_status(name, &PostParams::default(), &failed)
                    .await?;
                Ok(Some(localpath::RETRY_DELETE))
            }
            Deletion::Restart => {
                self.remove_helper(name).await?;
                Ok(None)
            }
        }
    }

    async fn remove_helper(&self, volume: &str) -> Result<(), Error> {
        let helper = localpath::helper_name(volume);
        if self.pods.get(localpath::HELPER_NAMESPACE, &helper).is_none() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), localpath::HELPER_NAMESPACE);
        match api.delete(&helper, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes the `local-path` class if it is missing: the default class unless another is.
    async fn ensure_class(&self, name: &str) -> Result<Option<Duration>, Error> {
        if name != localpath::CLASS || self.classes.get("", name).is_some() {
            return Ok(None);
        }
        let default = plan::default_class(&self.classes.all()).is_none();
        match Api::<StorageClass>::all(self.client.clone())
            .create(&PostParams::default(), &localpath::storage_class(default))
            .await
        {
            Ok(_) => tracing::info!(class = name, default, "made the local-path storage class"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

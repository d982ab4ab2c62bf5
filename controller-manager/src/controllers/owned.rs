//! What every controller of pods shares (ReplicaSet, DaemonSet, StatefulSet, Job): which cached
//! object of kind `K` controls a pod, the pod handler that enqueues it (and meets its
//! expectations), and upstream's ClaimPods (adopt matching orphans, release pods that stopped
//! matching).

use std::sync::Arc;

use api_types::labels::LabelSelector;
use k8s_openapi::api::core::v1::Pod;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::Error;
use crate::controllers::replicaset::plan::{Claim, claim};
use crate::expectations::Expectations;
use crate::informers::{Change, Informer};
use crate::pods::{self, key};
use crate::queue::Queue;

/// The object of kind `K` that controls `pod`, if it is in the cache with that UID.
pub(crate) fn owner<K>(sets: &Informer<K>, pod: &Pod) -> Option<Arc<K>>
where
    K: Resource<DynamicType = ()> + 'static,
{
    let kind = K::kind(&());
    let r = pods::controller_of(&pod.metadata).filter(|r| r.kind == kind)?;
    let set = sets.get(pod.metadata.namespace.as_deref().unwrap_or(""), &r.name)?;
    (set.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(set)
}

/// Every object of the pod's namespace whose selector matches it (for an orphan to be adopted).
fn matching<K>(sets: &Informer<K>, selector: fn(&K) -> Result<LabelSelector, Error>, pod: &Pod) -> Vec<Arc<K>>
where
    K: Resource<DynamicType = ()> + 'static,
{
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    sets.list(pod.metadata.namespace.as_deref().unwrap_or(""))
        .into_iter()
        .filter(|s| selector(s).is_ok_and(|sel| !sel.is_empty() && sel.matches(labels)))
        .collect()
}

/// The pod handler of a controller of pods of kind `K` (DaemonSet, StatefulSet): the owner is
/// enqueued and, if it keeps expectations, told of its creations and deletions seen; an orphan
/// enqueues every object whose selector matches it (before and after a label change).
pub(crate) fn pod_changed<K>(
    sets: &Informer<K>,
    selector: fn(&K) -> Result<LabelSelector, Error>,
    queue: &Queue,
    expectations: Option<&Expectations>,
    change: &Change<Pod>,
) where
    K: Resource<DynamicType = ()> + 'static,
{
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
    match change {
        Change::Applied { old: None, new } => {
            if let Some(set) = owner(sets, new) {
                let k = key(set.meta());
                if new.metadata.deletion_timestamp.is_some() {
                    if let Some(e) = expectations {
                        e.deletion_observed(&k, &uid(new));
                    }
                } else {
                    if let Some(e) = expectations {
                        e.creation_observed(&k);
                    }
                }
                queue.add(k);
            } else if pods::controller_of(&new.metadata).is_none() {
                for set in matching(sets, selector, new) {
                    queue.add(key(set.meta()));
                }
            }
        }
        Change::Applied { old: Some(old), new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            let old_owner = owner(sets, old);
            let new_owner = owner(sets, new);
            if let Some(set) = &new_owner
                && let Some(e) = expectations
                && new.metadata.deletion_timestamp.is_some()
                && old.metadata.deletion_timestamp.is_none()
            {
                e.deletion_observed(&key(set.meta()), &uid(new));
            }
            if let Some(set) = old_owner.filter(|o| new_owner.as_ref().is_none_or(|n| n.meta().uid != o.meta().uid)) {
                queue.add(key(set.meta()));
            }
            match new_owner {
                Some(set) => queue.add(key(set.meta())),
                None if pods::controller_of(&new.metadata).is_none() => {
                    let mut candidates = matching(sets, selector, new);
                    if old.metadata.labels != new.metadata.labels {
                        candidates.extend(matching(sets, selector, old));
                    }
                    for set in candidates {
                        queue.add(key(set.meta()));
                    }
                }
                None => {}
            }
        }
        Change::Deleted(pod) => {
            if let Some(set) = owner(sets, pod) {
                let k = key(set.meta());
                if let Some(e) = expectations {
                    e.deletion_observed(&k, &uid(pod));
                }
                queue.add(k);
            }
        }
    }
}

/// The pods `owner` controls after adopting matching orphans and releasing its pods that
/// stopped matching (upstream's ClaimPods).
pub(crate) async fn claim_pods<K>(
    client: &kube::Client,
    owner: &K,
    selector: &LabelSelector,
    candidates: Vec<Arc<Pod>>,
) -> Result<Vec<Arc<Pod>>, Error>
where
    K: Resource<DynamicType = ()>,
{
    let meta = owner.meta();
    let uid = meta.uid.as_deref().unwrap_or("");
    let deleting = meta.deletion_timestamp.is_some();
    let api: Api<Pod> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or(""));
    let mut owned = Vec::new();
    for pod in candidates {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        let mut references = pod.metadata.owner_references.clone().unwrap_or_default();
        let references = match claim(uid, deleting, selector, &pod) {
            Claim::Owned => {
                owned.push(pod);
                continue;
            }
            Claim::Ignore => continue,
            Claim::Adopt => {
                references.push(pods::controller_reference(owner));
                Some(references)
            }
            Claim::Release => {
                references.retain(|r| r.uid != uid);
                (!references.is_empty()).then_some(references)
            }
        };
        let adopting = references.as_ref().is_some_and(|r| r.iter().any(|r| r.uid == uid));
        let patch = json!({"metadata": {
            "ownerReferences": references,
            "resourceVersion": pod.metadata.resource_version,
        }});
        match api.patch(pod_name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(patched) => {
                let what = if adopting { "adopted" } else { "released" };
                tracing::info!(owner = %key(meta), kind = %K::kind(&()), pod = pod_name, what);
                if adopting {
                    owned.push(Arc::new(patched));
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(owned)
}

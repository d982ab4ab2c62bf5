//! VolumeBinding: a pod's PersistentVolumeClaims. A bound claim's volume must be reachable from
//! the node (its required node affinity, such as a local-path volume's hostname); an unbound
//! claim of a WaitForFirstConsumer class fits any node; any other unbound claim keeps the pod
//! waiting. Once a node is chosen, [`prebind`] writes it on the pod's unbound WaitForFirstConsumer
//! claims (`volume.kubernetes.io/selected-node`, where the provisioner makes the volume) and
//! waits for them to be bound before the pod is, as upstream's PreBind does.
//!
//! What the plugin reads ([`Volumes`]: claims, volumes, classes) is kept from three watches in
//! the scheduler's cache. Upstream also matches unbound claims against static volumes per node;
//! here the binder does that once the node is chosen.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Filter, Prepared};
use api_types::node_selector::term_matches;

pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
/// How long a binding waits for the pod's claims to be bound (upstream's bindTimeoutSeconds).
pub const BIND_TIMEOUT: Duration = Duration::from_secs(600);

pub const UNBOUND_IMMEDIATE: &str = "pod has unbound immediate PersistentVolumeClaims";
pub const AFFINITY_CONFLICT: &str = "node(s) had volume node affinity conflict";
pub const MISSING_VOLUME: &str = "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)";

/// One kind's objects by `namespace/name` (`name` when cluster-scoped), kept from its watch; a
/// relist replaces them whole.
#[derive(Debug)]
pub struct Objects<K> {
    objects: HashMap<String, Arc<K>>,
    relist: Option<HashMap<String, Arc<K>>>,
    synced: bool,
}

impl<K> Default for Objects<K> {
    fn default() -> Self {
        Objects { objects: HashMap::new(), relist: None, synced: false }
    }
}

fn key(namespace: Option<&str>, name: &str) -> String {
    match namespace.filter(|n| !n.is_empty()) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

impl<K: Resource> Objects<K> {
    fn key_of(object: &K) -> String {
        let meta = object.meta();
        key(meta.namespace.as_deref(), meta.name.as_deref().unwrap_or(""))
    }

    pub fn apply(&mut self, event: watcher::Event<K>) {
        match event {
            watcher::Event::Apply(o) => {
                self.objects.insert(Self::key_of(&o), Arc::new(o));
            }
            watcher::Event::Delete(o) => {
                self.objects.remove(&Self::key_of(&o));
            }
            watcher::Event::Init => self.relist = Some(HashMap::new()),
            watcher::Event::InitApply(o) => {
                self.relist.get_or_insert_default().insert(Self::key_of(&o), Arc::new(o));
            }
            watcher::Event::InitDone => {
                self.objects = self.relist.take().unwrap_or_default();
                self.synced = true;
            }
        }
    }

    /// One object; `namespace` is `""` for cluster-scoped kinds.
    pub fn get(&self, namespace: &str, name: &str) -> Option<&Arc<K>> {
        self.objects.get(&key(Some(namespace), name))
    }
}

/// The storage objects the plugin reads.
#[derive(Debug, Default)]
pub struct Volumes {
    pub claims: Objects<PersistentVolumeClaim>,
    pub volumes: Objects<PersistentVolume>,
    pub classes: Objects<StorageClass>,
}

impl Volumes {
    /// Whether all three watches have delivered their first list.
    pub fn synced(&self) -> bool {
        self.claims.synced && self.volumes.synced && self.classes.synced
    }
}

fn claim_names(pod: &PodInfo) -> impl Iterator<Item = &str> {
    pod.spec()
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

fn volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())
}

fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    claim
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BETA_STORAGE_CLASS))
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_ref())
        .map_or("", String::as_str)
}

fn reachable(volume: &PersistentVolume, node: &NodeInfo) -> bool {
    let required = volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref());
    required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, &node.labels, &node.name)))
}

/// An unbound claim waits for its first consumer: its class binds late.
fn delayed(volumes: &Volumes, claim: &PersistentVolumeClaim) -> Result<bool, String> {
    let class = claim_class(claim);
    if class.is_empty() {
        return Ok(false);
    }
    let c = volumes.classes.get("", class).ok_or_else(|| format!("storageclass.storage.k8s.io {class:?} not found"))?;
    Ok(c.volume_binding_mode.as_deref() == Some(WAIT_FOR_FIRST_CONSUMER))
}

pub struct VolumeBinding;

impl Filter for VolumeBinding {
    fn name(&self) -> &'static str {
        "VolumeBinding"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        let volumes = &p.cache.volumes;
        let mut reasons = Vec::new();
        for name in claim_names(p.pod) {
            let Some(claim) = volumes.claims.get(&p.pod.namespace, name) else {
                reasons.push(format!("persistentvolumeclaim {name:?} not found"));
                continue;
            };
            if claim.metadata.deletion_timestamp.is_some() {
                reasons.push(format!("persistentvolumeclaim {name:?} is being deleted"));
                continue;
            }
            let reason = match volume_name(claim) {
                Some(bound) => match volumes.volumes.get("", bound) {
                    None => Some(MISSING_VOLUME.to_string()),
                    Some(v) if !reachable(v, node) => Some(AFFINITY_CONFLICT.to_string()),
                    Some(_) => None,
                },
                None => match delayed(volumes, claim) {
                    Ok(true) => None,
                    Ok(false) => Some(UNBOUND_IMMEDIATE.to_string()),
                    Err(e) => Some(e),
                },
            };
            reasons.extend(reason);
        }
        reasons.sort();
        reasons.dedup();
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }
}

/// The pod's unbound WaitForFirstConsumer claims that do not name `node` as selected yet.
pub fn to_select(pod: &PodInfo, volumes: &Volumes, node: &str) -> Vec<String> {
    claim_names(pod)
        .filter(|name| {
            volumes.claims.get(&pod.namespace, name).is_some_and(|c| {
                let selected = c.metadata.annotations.as_ref().and_then(|a| a.get(SELECTED_NODE));
                volume_name(c).is_none()
                    && delayed(volumes, c) == Ok(true)
                    && selected.map(String::as_str) != Some(node)
            })
        })
        .map(str::to_string)
        .collect()
}

fn is_bound(claim: &PersistentVolumeClaim) -> bool {
    claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Writes `node` on the claims (`namespace`'s `claims`) as their selected node, then waits at
/// most `timeout` for each to be bound. `Err` says what went wrong, for the pod's event.
pub async fn prebind(
    client: &kube::Client,
    namespace: &str,
    claims: &[String],
    node: &str,
    timeout: Duration,
) -> Result<(), String> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {SELECTED_NODE: node}}});
    for name in claims {
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| format!("selecting node {node:?} for persistentvolumeclaim {name:?}: {e}"))?;
    }
    let deadline = tokio::time::Instant::now() + timeout;
    for name in claims {
        let done = |c: Option<&PersistentVolumeClaim>| c.is_none_or(is_bound);
        let waited = tokio::time::timeout_at(deadline, kube::runtime::wait::await_condition(api.clone(), name, done));
        match waited.await {
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => return Err(format!("persistentvolumeclaim {name:?} not found")),
            Ok(Err(e)) => return Err(format!("waiting for persistentvolumeclaim {name:?}: {e}")),
            Err(_) => return Err(format!("binding volumes: timed out waiting for persistentvolumeclaim {name:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    fn volumes() -> Volumes {
        let mut v = Volumes::default();
        let claim = |name: &str, class: &str, volume: Option<&str>, extra: serde_json::Value| {
            let mut c = json!({"metadata": {"name": name, "namespace": "default"},
                               "spec": {"storageClassName": class, "volumeName": volume}});
            if let (Some(m), Some(e)) = (c["metadata"].as_object_mut(), extra.as_object()) {
                m.extend(e.clone());
            }
            watcher::Event::Apply(serde_json::from_value(c).expect("claim"))
        };
        v.claims.apply(claim("local", "local-path", None, json!({})));
        v.claims.apply(claim("selected", "local-path", None, json!({"annotations": {SELECTED_NODE: "a"}})));
        v.claims.apply(claim("immediate", "manual", None, json!({})));
        v.claims.apply(claim("classless", "", None, json!({})));
        v.claims.apply(claim("ghost-class", "gone", None, json!({})));
        v.claims.apply(claim("on-a", "local-path", Some("pv-a"), json!({})));
        v.claims.apply(claim("anywhere", "manual", Some("pv-any"), json!({})));
        v.claims.apply(claim("dangling", "manual", Some("pv-gone"), json!({})));
        v.claims.apply(claim("leaving", "manual", None, json!({"deletionTimestamp": "2024-01-01T00:00:00Z"})));
        let class = |name: &str, mode: &str| {
            watcher::Event::Apply(
                serde_json::from_value(
                    json!({"metadata": {"name": name}, "provisioner": "p", "volumeBindingMode": mode}),
                )
                .expect("class"),
            )
        };
        v.classes.apply(class("local-path", WAIT_FOR_FIRST_CONSUMER));
        v.classes.apply(class("manual", "Immediate"));
        v.volumes.apply(watcher::Event::Apply(
            serde_json::from_value(json!({"metadata": {"name": "pv-a"}, "spec": {"nodeAffinity": {"required": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["a"]}]}]}}}}))
            .expect("pv"),
        ));
        v.volumes.apply(watcher::Event::Apply(
            serde_json::from_value(json!({"metadata": {"name": "pv-any"}, "spec": {}})).expect("pv"),
        ));
        v
    }

    fn with_claims(names: &[&str]) -> PodInfo {
        let volumes: Vec<_> =
            names.iter().map(|n| json!({"name": n, "persistentVolumeClaim": {"claimName": n}})).collect();
        pod(json!({"spec": {"volumes": volumes}}))
    }

    #[test]
    fn claims_keep_pods_where_their_volumes_are() {
        let mut c = cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {"kubernetes.io/hostname": "a"}}})),
                node(json!({"metadata": {"name": "b", "labels": {"kubernetes.io/hostname": "b"}}})),
            ],
            vec![],
        );
        c.volumes = volumes();
        let conflict = Err(vec![AFFINITY_CONFLICT.to_string()]);
        let unbound = Err(vec![UNBOUND_IMMEDIATE.to_string()]);
        type Case<'a> = (&'a [&'a str], [Result<(), Vec<String>>; 2]);
        let cases: Vec<Case> = vec![
            (&[], [Ok(()), Ok(())]),
            (&["local"], [Ok(()), Ok(())]),
            (&["on-a"], [Ok(()), conflict.clone()]),
            (&["on-a", "local"], [Ok(()), conflict.clone()]),
            (&["anywhere"], [Ok(()), Ok(())]),
            (&["immediate"], [unbound.clone(), unbound.clone()]),
            (&["classless"], [unbound.clone(), unbound]),
            (&["dangling"], [Err(vec![MISSING_VOLUME.into()]), Err(vec![MISSING_VOLUME.into()])]),
            (
                &["ghost-class"],
                [
                    Err(vec!["storageclass.storage.k8s.io \"gone\" not found".into()]),
                    Err(vec!["storageclass.storage.k8s.io \"gone\" not found".into()]),
                ],
            ),
            (
                &["missing"],
                [
                    Err(vec!["persistentvolumeclaim \"missing\" not found".into()]),
                    Err(vec!["persistentvolumeclaim \"missing\" not found".into()]),
                ],
            ),
            (
                &["leaving"],
                [
                    Err(vec!["persistentvolumeclaim \"leaving\" is being deleted".into()]),
                    Err(vec!["persistentvolumeclaim \"leaving\" is being deleted".into()]),
                ],
            ),
        ];
        for (claims, want) in cases {
            let p = with_claims(claims);
            let prepared = Prepared::new(&p, &c);
            let got = [VolumeBinding.filter(&prepared, info(&c, "a")), VolumeBinding.filter(&prepared, info(&c, "b"))];
            assert_eq!(got, want, "{claims:?}");
        }
    }

    #[test]
    fn the_chosen_node_is_written_on_unbound_late_binding_claims_only() {
        let v = volumes();
        let p = with_claims(&["local", "selected", "immediate", "on-a"]);
        assert_eq!(to_select(&p, &v, "a"), ["local"], "selected already names a");
        assert_eq!(to_select(&p, &v, "b"), ["local", "selected"]);
    }

    #[test]
    fn a_relist_replaces_what_was_kept() {
        let mut v = volumes();
        assert!(!v.synced());
        v.classes.apply(watcher::Event::Init);
        v.classes.apply(watcher::Event::InitApply(
            serde_json::from_value(json!({"metadata": {"name": "fresh"}, "provisioner": "p"})).expect("class"),
        ));
        assert!(v.classes.get("", "manual").is_some(), "kept until the relist is done");
        v.classes.apply(watcher::Event::InitDone);
        assert!(v.classes.get("", "manual").is_none());
        assert!(v.classes.get("", "fresh").is_some());
        v.claims.apply(watcher::Event::Init);
        v.claims.apply(watcher::Event::InitDone);
        assert!(v.claims.get("default", "local").is_none(), "an empty relist empties");
        v.volumes.apply(watcher::Event::Init);
        v.volumes.apply(watcher::Event::InitDone);
        assert!(v.synced());
    }
}

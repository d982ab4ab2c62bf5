//! The protection controllers' decisions, pure: whether a claim or a volume needs its finalizer
//! added, kept (it is in use) or removed, and which pods use which claims.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Holds a claim while a pod uses it.
pub const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// Holds a volume while it is bound to a claim.
pub const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// What a claim's or a volume's finalizer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Steady,
    /// Not being deleted and without the finalizer (made before the admission plugin was on):
    /// add it.
    AddFinalizer,
    /// Being deleted but still in use, by this pod (of a claim) or claim (`ns/name`, of a
    /// volume): keep the finalizer.
    InUse(String),
    /// Being deleted and no longer in use: remove the finalizer, which lets the object go.
    RemoveFinalizer,
}

pub fn has_finalizer(meta: &ObjectMeta, finalizer: &str) -> bool {
    meta.finalizers.as_deref().is_some_and(|f| f.iter().any(|x| x == finalizer))
}

/// The object's finalizers with `finalizer` added (once).
pub fn with_finalizer(meta: &ObjectMeta, finalizer: &str) -> Vec<String> {
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(finalizer.to_string());
    }
    finalizers
}

/// The object's finalizers without `finalizer`.
pub fn without_finalizer(meta: &ObjectMeta, finalizer: &str) -> Vec<String> {
    meta.finalizers.iter().flatten().filter(|f| *f != finalizer).cloned().collect()
}

fn is_finished(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// The names of the claims `pod` refers to: its `persistentVolumeClaim` volumes' claims and its
/// ephemeral volumes' `<pod>-<volume>`.
pub fn claims_of(pod: &Pod) -> impl Iterator<Item = String> + '_ {
    let pod_name = pod.metadata.name.as_deref().unwrap_or("");
    pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).filter_map(move |v| {
        if let Some(c) = &v.persistent_volume_claim {
            Some(c.claim_name.clone())
        } else {
            v.ephemeral.as_ref().map(|_| format!("{pod_name}-{}", v.name))
        }
    })
}

/// Whether `pod` uses the claim `claim` of its namespace: it refers to it, is bound to a node
/// and has not finished. A pod not yet on a node does not count, as upstream: the kubelet never
/// starts a pod whose claim is being deleted.
pub fn uses(pod: &Pod, claim: &str) -> bool {
    let scheduled = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| !n.is_empty());
    scheduled && !is_finished(pod) && claims_of(pod).any(|c| c == claim)
}

/// The first of `pods` (of any namespace) that uses `claim`.
pub fn user<'a>(claim: &PersistentVolumeClaim, pods: impl IntoIterator<Item = &'a Pod>) -> Option<&'a Pod> {
    let name = claim.metadata.name.as_deref().unwrap_or("");
    pods.into_iter().find(|p| p.metadata.namespace == claim.metadata.namespace && uses(p, name))
}

fn by_finalizer(meta: &ObjectMeta, finalizer: &str, in_use: impl FnOnce() -> Option<String>) -> Plan {
    match (meta.deletion_timestamp.is_some(), has_finalizer(meta, finalizer)) {
        (false, false) => Plan::AddFinalizer,
        (false, true) | (true, false) => Plan::Steady,
        (true, true) => in_use().map_or(Plan::RemoveFinalizer, Plan::InUse),
    }
}

/// Upstream's pvc-protection sync, on the pods known: a claim being deleted keeps its finalizer
/// while one of `pods` uses it. (The controller asks the API server before it removes it.)
pub fn claim<'a>(claim: &PersistentVolumeClaim, pods: impl IntoIterator<Item = &'a Pod>) -> Plan {
    by_finalizer(&claim.metadata, PVC_PROTECTION, || {
        user(claim, pods).map(|p| p.metadata.name.clone().unwrap_or_default())
    })
}

/// Upstream's pv-protection sync: a volume being deleted keeps its finalizer while it is Bound
/// (the binder releases it once its claim is gone).
pub fn volume(volume: &PersistentVolume) -> Plan {
    by_finalizer(&volume.metadata, PV_PROTECTION, || {
        let bound = volume.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        bound.then(|| {
            let r = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
            let part = |s: Option<&String>| s.cloned().unwrap_or_default();
            format!("{}/{}", part(r.and_then(|r| r.namespace.as_ref())), part(r.and_then(|r| r.name.as_ref())))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    const NOW: &str = "2026-01-01T00:00:00Z";

    fn pvc(deleting: bool, finalizers: Value) -> PersistentVolumeClaim {
        let deleted = deleting.then_some(NOW);
        serde_json::from_value(json!({
            "metadata": {"name": "data", "namespace": "web", "finalizers": finalizers, "deletionTimestamp": deleted},
            "spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"},
        }))
        .expect("claim")
    }

    fn pod(ns: &str, name: &str, node: Option<&str>, phase: &str, volumes: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}], "volumes": volumes},
            "status": {"phase": phase},
        }))
        .expect("pod")
    }

    fn claim_volume(claim: &str) -> Value {
        json!([{"name": "v", "persistentVolumeClaim": {"claimName": claim}}])
    }

    fn pv(deleting: bool, finalizers: Value, phase: &str) -> PersistentVolume {
        let deleted = deleting.then_some(NOW);
        serde_json::from_value(json!({
            "metadata": {"name": "pv-1", "finalizers": finalizers, "deletionTimestamp": deleted},
            "spec": {"claimRef": {"namespace": "web", "name": "data", "uid": "u1"}},
            "status": {"phase": phase},
        }))
        .expect("volume")
    }

    #[test]
    fn a_claim_being_deleted_keeps_its_finalizer_while_a_running_pod_uses_it() {
        let protected = json!([PVC_PROTECTION]);
        let running = pod("web", "app", Some("n1"), "Running", claim_volume("data"));
        let pending_on_node = pod("web", "app", Some("n1"), "Pending", claim_volume("data"));
        let unscheduled = pod("web", "app", None, "Pending", claim_volume("data"));
        let finished = pod("web", "app", Some("n1"), "Succeeded", claim_volume("data"));
        let failed = pod("web", "app", Some("n1"), "Failed", claim_volume("data"));
        let other_claim = pod("web", "app", Some("n1"), "Running", claim_volume("logs"));
        let other_namespace = pod("db", "app", Some("n1"), "Running", claim_volume("data"));
        // An ephemeral volume's claim is `<pod>-<volume>`.
        let mut scratch = pvc(true, protected.clone());
        scratch.metadata.name = Some("app-scratch".into());
        let ephemeral = pod("web", "app", Some("n1"), "Running", json!([{"name": "scratch", "ephemeral": {}}]));
        let ephemeral_other = pod("web", "app", Some("n1"), "Running", json!([{"name": "other", "ephemeral": {}}]));
        let in_use = |name: &str| Plan::InUse(name.into());
        let cases: Vec<(&str, PersistentVolumeClaim, Vec<&Pod>, Plan)> = vec![
            ("new, protected", pvc(false, protected.clone()), vec![&running], Plan::Steady),
            ("made before the plugin", pvc(false, json!(null)), vec![], Plan::AddFinalizer),
            ("other finalizers only", pvc(false, json!(["x/y"])), vec![], Plan::AddFinalizer),
            ("deleting, finalizer gone", pvc(true, json!(["x/y"])), vec![&running], Plan::Steady),
            ("deleting, used by a running pod", pvc(true, protected.clone()), vec![&running], in_use("app")),
            ("deleting, used by a pod on a node", pvc(true, protected.clone()), vec![&pending_on_node], in_use("app")),
            ("deleting, pod not scheduled", pvc(true, protected.clone()), vec![&unscheduled], Plan::RemoveFinalizer),
            ("deleting, pod succeeded", pvc(true, protected.clone()), vec![&finished], Plan::RemoveFinalizer),
            ("deleting, pod failed", pvc(true, protected.clone()), vec![&failed], Plan::RemoveFinalizer),
            ("deleting, another claim", pvc(true, protected.clone()), vec![&other_claim], Plan::RemoveFinalizer),
            (
                "deleting, another namespace",
                pvc(true, protected.clone()),
                vec![&other_namespace],
                Plan::RemoveFinalizer,
            ),
            ("deleting, ephemeral <pod>-<volume>", scratch.clone(), vec![&ephemeral], in_use("app")),
            ("deleting, another ephemeral", scratch, vec![&ephemeral_other], Plan::RemoveFinalizer),
            ("deleting, no pods", pvc(true, protected.clone()), vec![], Plan::RemoveFinalizer),
            ("deleting, one of several", pvc(true, protected), vec![&finished, &running], in_use("app")),
        ];
        for (what, c, pods, want) in cases {
            assert_eq!(claim(&c, pods), want, "{what}");
        }
    }

    #[test]
    fn a_volume_being_deleted_keeps_its_finalizer_while_bound() {
        let protected = json!([PV_PROTECTION]);
        let cases = [
            ("new, protected", pv(false, protected.clone(), "Bound"), Plan::Steady),
            ("made before the plugin", pv(false, json!(null), "Available"), Plan::AddFinalizer),
            ("deleting, finalizer gone", pv(true, json!([]), "Bound"), Plan::Steady),
            ("deleting, bound", pv(true, protected.clone(), "Bound"), Plan::InUse("web/data".into())),
            ("deleting, released", pv(true, protected.clone(), "Released"), Plan::RemoveFinalizer),
            ("deleting, available", pv(true, protected.clone(), "Available"), Plan::RemoveFinalizer),
            ("deleting, failed", pv(true, protected, "Failed"), Plan::RemoveFinalizer),
        ];
        for (what, v, want) in cases {
            assert_eq!(volume(&v), want, "{what}");
        }
    }

    #[test]
    fn finalizers_are_added_once_and_removed_alone() {
        let meta: ObjectMeta = serde_json::from_value(json!({"finalizers": ["x/y", PVC_PROTECTION]})).expect("meta");
        assert_eq!(with_finalizer(&meta, PVC_PROTECTION), ["x/y", PVC_PROTECTION]);
        assert_eq!(with_finalizer(&meta, PV_PROTECTION), ["x/y", PVC_PROTECTION, PV_PROTECTION]);
        assert_eq!(without_finalizer(&meta, PVC_PROTECTION), ["x/y"]);
        assert_eq!(without_finalizer(&ObjectMeta::default(), PVC_PROTECTION), Vec::<String>::new());
    }

    #[test]
    fn a_pod_refers_to_its_claims_and_ephemeral_claims() {
        let p = pod(
            "web",
            "app",
            None,
            "Pending",
            json!([{"name": "a", "persistentVolumeClaim": {"claimName": "data"}},
                   {"name": "scratch", "ephemeral": {}}, {"name": "e", "emptyDir": {}}]),
        );
        assert_eq!(claims_of(&p).collect::<Vec<_>>(), ["data", "app-scratch"]);
    }
}

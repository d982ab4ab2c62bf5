//! What the workload controllers share about pods and owners: keys, controller references,
//! readiness and availability, and pods made from a template.

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;

/// The work-queue key of an object: `namespace/name`, or `name` when cluster-scoped.
pub fn key(meta: &ObjectMeta) -> String {
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        _ => meta.name.clone().unwrap_or_default(),
    }
}

/// Splits a key back into (namespace, name); the namespace is `""` for cluster-scoped objects.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references.as_deref()?.iter().find(|r| r.controller == Some(true))
}

/// A controller reference to `owner`, blocking its foreground deletion as upstream's do.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// Neither finished nor being deleted: a pod that counts towards replicas.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && pod.metadata.deletion_timestamp.is_none()
}

/// When the pod's Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<Timestamp> {
    let ready = pod.status.as_ref()?.conditions.as_deref()?.iter().find(|c| c.type_ == "Ready")?;
    (ready.status == "True").then(|| ready.last_transition_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH))
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    ready_since(pod).is_some_and(|since| {
        min_ready_seconds <= 0 || since + SignedDuration::from_secs(i64::from(min_ready_seconds)) <= now
    })
}

/// A pod of `template` for `owner`, named `<prefix><random>` by the API server.
pub fn from_template(template: &PodTemplateSpec, namespace: &str, prefix: &str, owner: OwnerReference) -> Pod {
    let meta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix.to_string()),
            namespace: Some(namespace.to_string()),
            labels: meta.labels,
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

#[cfg(test)]
pub mod testing {
    //! Pods for table tests.
    use k8s_openapi::api::core::v1::{Pod, PodCondition, PodSpec, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
    use k8s_openapi::jiff::Timestamp;

    /// A pod `name` created at second `created`, in `phase`, on `node` (or none), Ready since
    /// second `ready` (or not ready).
    pub fn pod(name: &str, created: i64, phase: &str, node: Option<&str>, ready: Option<i64>) -> Pod {
        let at = |s: i64| Time(Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH));
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(at(created)),
                owner_references: Some(vec![OwnerReference {
                    api_version: "apps/v1".into(),
                    kind: "ReplicaSet".into(),
                    name: "rs".into(),
                    uid: "rs-uid".into(),
                    controller: Some(true),
                    ..Default::default()
                }]),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            spec: Some(PodSpec { node_name: node.map(str::to_string), ..Default::default() }),
            status: Some(PodStatus {
                phase: Some(phase.into()),
                conditions: ready.map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(at(s)),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;

    #[test]
    fn keys_split_back() {
        for (ns, name, key) in [(Some("a"), "b", "a/b"), (None, "n", "n"), (Some(""), "n", "n")] {
            let meta = ObjectMeta { namespace: ns.map(str::to_string), name: Some(name.into()), ..Default::default() };
            assert_eq!(super::key(&meta), key);
            assert_eq!(split_key(key), (ns.unwrap_or(""), name));
        }
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now = Timestamp::from_second(100).unwrap_or(Timestamp::UNIX_EPOCH);
        let cases = [(Some(90), 0, true), (Some(90), 10, true), (Some(95), 10, false), (None, 0, false)];
        for (ready, min_ready, want) in cases {
            let p = pod("p", 0, "Running", Some("n"), ready);
            assert_eq!(is_available(&p, min_ready, now), want, "{ready:?} {min_ready}");
        }
    }

    #[test]
    fn finished_and_deleted_pods_are_not_active() {
        assert!(is_active(&pod("p", 0, "Running", None, None)));
        assert!(is_active(&pod("p", 0, "Pending", None, None)));
        assert!(!is_active(&pod("p", 0, "Succeeded", None, None)));
        assert!(!is_active(&pod("p", 0, "Failed", None, None)));
        let mut deleting = pod("p", 0, "Running", None, None);
        deleting.metadata.deletion_timestamp = deleting.metadata.creation_timestamp.clone();
        assert!(!is_active(&deleting));
    }
}

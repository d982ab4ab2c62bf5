//! The strategic-merge-patch metadata and list types of the built-in types, as data, and the
//! function that writes them into generated definitions.
//!
//! Upstream declares these with struct tags (`patchStrategy`, `patchMergeKey`) and markers
//! (`+listType`, `+listMapKey`) and publishes them as OpenAPI extensions; k8s-openapi drops
//! them. Fields whose lists are replaced as a whole (tolerations, args, rules, ...) have no
//! entry: no strategy means "replace".

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{LIST_MAP_KEYS, LIST_TYPE, PATCH_MERGE_KEY, PATCH_STRATEGY};

/// `(definition, field, x-kubernetes-patch-strategy, x-kubernetes-patch-merge-key)`.
#[rustfmt::skip]
pub const PATCH_META: &[(&str, &str, &str, Option<&str>)] = &[
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", "merge", None),
    ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", "merge", Some("uid")),

    // core/v1 Pod
    ("io.k8s.api.core.v1.PodSpec", "volumes", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "initContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "containers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "ephemeralContainers", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "imagePullSecrets", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "hostAliases", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "merge", Some("topologyKey")),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "merge,retainKeys", Some("name")),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.Container", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.Container", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.Container", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "merge", Some("containerPort")),
    ("io.k8s.api.core.v1.EphemeralContainer", "env", "merge", Some("name")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", "merge", Some("mountPath")),
    ("io.k8s.api.core.v1.EphemeralContainer", "volumeDevices", "merge", Some("devicePath")),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "merge", Some("name")),
    ("io.k8s.api.core.v1.PodStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PodStatus", "podIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "hostIPs", "merge", Some("ip")),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "merge,retainKeys", Some("name")),

    // core/v1 others
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "merge", None),
    ("io.k8s.api.core.v1.NodeStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.NodeStatus", "addresses", "merge", Some("type")),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "merge", Some("port")),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.NamespaceStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.PersistentVolumeClaimStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ReplicationControllerStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ComponentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.core.v1.ServiceAccount", "secrets", "merge", Some("name")),

    // apps/v1
    ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", "retainKeys", None),
    ("io.k8s.api.apps.v1.DeploymentStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.ReplicaSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.StatefulSetStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.apps.v1.DaemonSetStatus", "conditions", "merge", Some("type")),

    // batch, autoscaling, policy
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "merge", Some("type")),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "merge", Some("type")),

    // admission webhooks, storage
    ("io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration", "webhooks", "merge", Some("name")),
    ("io.k8s.api.admissionregistration.v1.ValidatingWebhookConfiguration", "webhooks", "merge", Some("name")),
    ("io.k8s.api.storage.v1.CSINodeSpec", "drivers", "merge", Some("name")),
];

/// `(definition, field, x-kubernetes-list-type, x-kubernetes-list-map-keys)`: the list types
/// used by server-side apply, for the lists above and a few well-known others. Not complete.
#[rustfmt::skip]
pub const LIST_TYPES: &[(&str, &str, &str, &[&str])] = &[
    ("io.k8s.api.core.v1.PodSpec", "topologySpreadConstraints", "map", &["topologyKey", "whenUnsatisfiable"]),
    ("io.k8s.api.core.v1.PodSpec", "resourceClaims", "map", &["name"]),
    ("io.k8s.api.core.v1.PodSpec", "schedulingGates", "map", &["name"]),
    ("io.k8s.api.core.v1.Container", "ports", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.Container", "resizePolicy", "atomic", &[]),
    ("io.k8s.api.core.v1.EphemeralContainer", "ports", "map", &["containerPort", "protocol"]),
    ("io.k8s.api.core.v1.EphemeralContainer", "resizePolicy", "atomic", &[]),
    ("io.k8s.api.core.v1.ContainerStatus", "allocatedResourcesStatus", "map", &["name"]),
    ("io.k8s.api.core.v1.PodStatus", "resourceClaimStatuses", "map", &["name"]),
    ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", "set", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ports", "map", &["port", "protocol"]),
    ("io.k8s.api.core.v1.ServiceSpec", "clusterIPs", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceSpec", "ipFamilies", "atomic", &[]),
    ("io.k8s.api.core.v1.ServiceStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.batch.v1.JobStatus", "conditions", "atomic", &[]),
    ("io.k8s.api.autoscaling.v2.HorizontalPodAutoscalerStatus", "conditions", "map", &["type"]),
    ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", "map", &["type"]),
];

/// Writes [`PATCH_META`] and [`LIST_TYPES`] into the property schemas of `definitions`.
/// Entries for definitions that were not generated are skipped.
pub(super) fn annotate(definitions: &mut BTreeMap<String, Value>) {
    for (definition, field, strategy, merge_key) in PATCH_META {
        if let Some(Value::Object(property)) = property_mut(definitions, definition, field) {
            property.insert(PATCH_STRATEGY.to_string(), json!(strategy));
            if let Some(key) = merge_key {
                property.insert(PATCH_MERGE_KEY.to_string(), json!(key));
            }
        }
    }
    for (definition, field, list_type, keys) in LIST_TYPES {
        if let Some(Value::Object(property)) = property_mut(definitions, definition, field) {
            property.insert(LIST_TYPE.to_string(), json!(list_type));
            if !keys.is_empty() {
                property.insert(LIST_MAP_KEYS.to_string(), json!(keys));
            }
        }
    }
}

fn property_mut<'a>(
    definitions: &'a mut BTreeMap<String, Value>,
    definition: &str,
    field: &str,
) -> Option<&'a mut Value> {
    definitions.get_mut(definition)?.get_mut("properties")?.get_mut(field)
}

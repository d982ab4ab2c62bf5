//! The resource registry: every kind rkube serves, with the names discovery publishes, and a
//! way to reach each kind's Rust type generically ([`visit_kind`]).

use k8s_openapi::api;
use serde::{Serialize, de::DeserializeOwned};

/// One served resource: what discovery says about it and how the API server stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group; `""` is the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    /// Subresources served beside the resource (`status`, `scale`, `binding`, `eviction`).
    pub subresources: &'static [&'static str],
    pub categories: &'static [&'static str],
}

impl ResourceInfo {
    /// `v1` for the core group, `apps/v1` otherwise: the `apiVersion` field of objects.
    pub fn api_version(&self) -> String {
        group_version(self.group, self.version)
    }

    /// `pods` for the core group, `deployments.apps` otherwise: the name kubectl and error
    /// messages use for the resource.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() { self.plural.to_string() } else { format!("{}.{}", self.plural, self.group) }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// The kind of a list of this resource (`PodList`).
    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }
}

/// `v1` for the core group, `<group>/<version>` otherwise.
pub fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() { version.to_string() } else { format!("{group}/{version}") }
}

const STATUS: &[&str] = &["status"];
const STATUS_SCALE: &[&str] = &["status", "scale"];
const NONE: &[&str] = &[];
const ALL: &[&str] = &["all"];

macro_rules! resource {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal,
     [$($short:literal),*], namespaced: $ns:literal, $sub:expr, $cat:expr) => {
        ResourceInfo {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            short_names: &[$($short),*],
            namespaced: $ns,
            subresources: $sub,
            categories: $cat,
        }
    };
}

/// Every served resource, in the order discovery lists groups (core first, as upstream).
pub static RESOURCES: &[ResourceInfo] = &[
    resource!("", "v1", "Namespace", "namespaces", "namespace", ["ns"], namespaced: false, &["status", "finalize"], NONE),
    resource!("", "v1", "Node", "nodes", "node", ["no"], namespaced: false, &["status", "proxy"], NONE),
    resource!("", "v1", "Pod", "pods", "pod", ["po"], namespaced: true, &["status", "binding", "eviction", "log", "exec"], ALL),
    resource!("", "v1", "Service", "services", "service", ["svc"], namespaced: true, STATUS, ALL),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints", ["ep"], namespaced: true, NONE, NONE),
    resource!("", "v1", "ConfigMap", "configmaps", "configmap", ["cm"], namespaced: true, NONE, NONE),
    resource!("", "v1", "Secret", "secrets", "secret", [], namespaced: true, NONE, NONE),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount", ["sa"], namespaced: true, NONE, NONE),
    resource!("", "v1", "Event", "events", "event", ["ev"], namespaced: true, NONE, NONE),
    resource!("", "v1", "PersistentVolume", "persistentvolumes", "persistentvolume", ["pv"], namespaced: false, STATUS, NONE),
    resource!("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim", ["pvc"], namespaced: true, STATUS, NONE),
    resource!("", "v1", "ResourceQuota", "resourcequotas", "resourcequota", ["quota"], namespaced: true, STATUS, NONE),
    resource!("", "v1", "LimitRange", "limitranges", "limitrange", ["limits"], namespaced: true, NONE, NONE),
    resource!("", "v1", "ReplicationController", "replicationcontrollers", "replicationcontroller", ["rc"], namespaced: true, STATUS_SCALE, ALL),
    resource!("apps", "v1", "Deployment", "deployments", "deployment", ["deploy"], namespaced: true, STATUS_SCALE, ALL),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset", ["rs"], namespaced: true, STATUS_SCALE, ALL),
    resource!("apps", "v1", "StatefulSet", "statefulsets", "statefulset", ["sts"], namespaced: true, STATUS_SCALE, ALL),
    resource!("apps", "v1", "DaemonSet", "daemonsets", "daemonset", ["ds"], namespaced: true, STATUS, ALL),
    resource!("apps", "v1", "ControllerRevision", "controllerrevisions", "controllerrevision", [], namespaced: true, NONE, NONE),
    resource!("batch", "v1", "Job", "jobs", "job", [], namespaced: true, STATUS, ALL),
    resource!("batch", "v1", "CronJob", "cronjobs", "cronjob", ["cj"], namespaced: true, STATUS, ALL),
    resource!("autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler", ["hpa"], namespaced: true, STATUS, ALL),
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease", [], namespaced: true, NONE, NONE),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice", [], namespaced: true, NONE, NONE),
    resource!("networking.k8s.io", "v1", "Ingress", "ingresses", "ingress", ["ing"], namespaced: true, STATUS, NONE),
    resource!("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", "networkpolicy", ["netpol"], namespaced: true, NONE, NONE),
    resource!("storage.k8s.io", "v1", "StorageClass", "storageclasses", "storageclass", ["sc"], namespaced: false, NONE, NONE),
    resource!("rbac.authorization.k8s.io", "v1", "Role", "roles", "role", [], namespaced: true, NONE, NONE),
    resource!("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", "rolebinding", [], namespaced: true, NONE, NONE),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", "clusterrole", [], namespaced: false, NONE, NONE),
    resource!("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding", [], namespaced: false, NONE, NONE),
    resource!("policy", "v1", "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", ["pdb"], namespaced: true, STATUS, NONE),
    resource!("certificates.k8s.io", "v1", "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest", ["csr"], namespaced: false, &["status", "approval"], NONE),
    resource!("events.k8s.io", "v1", "Event", "events", "event", ["ev"], namespaced: true, NONE, NONE),
];

/// The group versions served, in discovery order. (`autoscaling/v1` is not among them: its
/// `Scale` kind is only the body of `scale` subresources, and discovery clients reject a group
/// version with no resources.)
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// The resource served at `/<group>/<version>/<plural>`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's `apiVersion` and `kind`.
pub fn by_kind(group: &str, version: &str, kind: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Resolves what a user typed (`po`, `pod`, `pods`, `deployments.apps`, `deploy`) the way
/// kubectl does: plural, singular or short name, optionally qualified by group.
pub fn resolve(name: &str) -> Option<&'static ResourceInfo> {
    let lower = name.to_ascii_lowercase();
    let (base, group) = match lower.split_once('.') {
        Some((b, g)) => (b.to_string(), Some(g.to_string())),
        None => (lower, None),
    };
    RESOURCES.iter().find(|r| {
        group.as_deref().is_none_or(|g| g == r.group)
            && (r.plural == base || r.singular == base || r.short_names.contains(&base.as_str()))
    })
}

/// Splits `apps/v1` into `("apps", "v1")` and `v1` into `("", "v1")`.
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// Something done with a kind's Rust type, chosen at run time by [`visit_kind`].
pub trait KindVisitor {
    type Output;
    fn visit<T>(self) -> Self::Output
    where
        T: k8s_openapi::Resource + Serialize + DeserializeOwned + schemars::JsonSchema + 'static;
}

/// Calls `visitor.visit::<T>()` with the k8s-openapi type of `info`'s kind. Every entry of
/// [`RESOURCES`] has a type, so this only returns `None` for kinds not in the registry.
pub fn visit_kind<V: KindVisitor>(group: &str, kind: &str, visitor: V) -> Option<V::Output> {
    use api::{
        apps::v1 as apps, autoscaling::v1 as autoscaling1, autoscaling::v2 as autoscaling2, batch::v1 as batch,
        certificates::v1 as certificates, coordination::v1 as coordination, core::v1 as core,
        discovery::v1 as discovery, events::v1 as events, networking::v1 as networking, policy::v1 as policy,
        rbac::v1 as rbac, storage::v1 as storage,
    };
    Some(match (group, kind) {
        ("", "Namespace") => visitor.visit::<core::Namespace>(),
        ("", "Node") => visitor.visit::<core::Node>(),
        ("", "Pod") => visitor.visit::<core::Pod>(),
        ("", "Service") => visitor.visit::<core::Service>(),
        ("", "Endpoints") => visitor.visit::<core::Endpoints>(),
        ("", "ConfigMap") => visitor.visit::<core::ConfigMap>(),
        ("", "Secret") => visitor.visit::<core::Secret>(),
        ("", "ServiceAccount") => visitor.visit::<core::ServiceAccount>(),
        ("", "Event") => visitor.visit::<core::Event>(),
        ("", "PersistentVolume") => visitor.visit::<core::PersistentVolume>(),
        ("", "PersistentVolumeClaim") => visitor.visit::<core::PersistentVolumeClaim>(),
        ("", "ResourceQuota") => visitor.visit::<core::ResourceQuota>(),
        ("", "LimitRange") => visitor.visit::<core::LimitRange>(),
        ("", "ReplicationController") => visitor.visit::<core::ReplicationController>(),
        ("", "Binding") => visitor.visit::<core::Binding>(),
        ("apps", "Deployment") => visitor.visit::<apps::Deployment>(),
        ("apps", "ReplicaSet") => visitor.visit::<apps::ReplicaSet>(),
        ("apps", "StatefulSet") => visitor.visit::<apps::StatefulSet>(),
        ("apps", "DaemonSet") => visitor.visit::<apps::DaemonSet>(),
        ("apps", "ControllerRevision") => visitor.visit::<apps::ControllerRevision>(),
        ("batch", "Job") => visitor.visit::<batch::Job>(),
        ("batch", "CronJob") => visitor.visit::<batch::CronJob>(),
        ("autoscaling", "HorizontalPodAutoscaler") => visitor.visit::<autoscaling2::HorizontalPodAutoscaler>(),
        ("autoscaling", "Scale") => visitor.visit::<autoscaling1::Scale>(),
        ("coordination.k8s.io", "Lease") => visitor.visit::<coordination::Lease>(),
        ("discovery.k8s.io", "EndpointSlice") => visitor.visit::<discovery::EndpointSlice>(),
        ("networking.k8s.io", "Ingress") => visitor.visit::<networking::Ingress>(),
        ("networking.k8s.io", "NetworkPolicy") => visitor.visit::<networking::NetworkPolicy>(),
        ("storage.k8s.io", "StorageClass") => visitor.visit::<storage::StorageClass>(),
        ("rbac.authorization.k8s.io", "Role") => visitor.visit::<rbac::Role>(),
        ("rbac.authorization.k8s.io", "RoleBinding") => visitor.visit::<rbac::RoleBinding>(),
        ("rbac.authorization.k8s.io", "ClusterRole") => visitor.visit::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => visitor.visit::<rbac::ClusterRoleBinding>(),
        ("policy", "PodDisruptionBudget") => visitor.visit::<policy::PodDisruptionBudget>(),
        ("policy", "Eviction") => visitor.visit::<policy::Eviction>(),
        ("certificates.k8s.io", "CertificateSigningRequest") => {
            visitor.visit::<certificates::CertificateSigningRequest>()
        }
        ("events.k8s.io", "Event") => visitor.visit::<events::Event>(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct KindOf;
    impl KindVisitor for KindOf {
        type Output = (&'static str, &'static str);
        fn visit<T>(self) -> Self::Output
        where
            T: k8s_openapi::Resource + Serialize + DeserializeOwned + schemars::JsonSchema,
        {
            (T::API_VERSION, T::KIND)
        }
    }

    #[test]
    fn every_resource_has_its_own_rust_type() {
        for r in RESOURCES {
            let got = visit_kind(r.group, r.kind, KindOf).map(|(v, k)| (v.to_string(), k));
            assert_eq!(got, Some((r.api_version(), r.kind)), "{}", r.plural);
        }
    }

    #[test]
    fn plural_and_kind_are_unique_per_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                if a.group == b.group && a.version == b.version {
                    assert_ne!(a.plural, b.plural);
                    assert_ne!(a.kind, b.kind);
                }
            }
        }
    }

    #[test]
    fn resolve_accepts_plural_singular_short_and_group_qualified_names() {
        let cases = [
            ("po", Some("pods")),
            ("pod", Some("pods")),
            ("Pods", Some("pods")),
            ("deploy", Some("deployments")),
            ("deployments.apps", Some("deployments")),
            ("hpa", Some("horizontalpodautoscalers")),
            ("ev", Some("events")),
            ("events.events.k8s.io", Some("events")),
            ("widgets", None),
        ];
        for (input, want) in cases {
            assert_eq!(resolve(input).map(|r| r.plural), want, "{input}");
        }
        assert_eq!(resolve("ev").map(|r| r.group), Some(""), "core events win, as in kubectl");
    }

    #[test]
    fn issue_short_names_are_all_known() {
        for short in [
            "po", "svc", "deploy", "rs", "ds", "sts", "ns", "no", "cm", "ep", "pv", "pvc", "sa", "cj", "hpa", "ing",
            "netpol", "pdb", "sc", "csr", "ev",
        ] {
            assert!(resolve(short).is_some(), "{short}");
        }
    }

    #[test]
    fn api_version_omits_the_empty_core_group() {
        assert_eq!(by_plural("", "v1", "pods").map(|r| r.api_version()), Some("v1".into()));
        assert_eq!(by_kind("apps", "v1", "Deployment").map(|r| r.group_resource()), Some("deployments.apps".into()));
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(split_api_version("v1"), ("", "v1"));
    }
}

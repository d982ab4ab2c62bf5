//! The Filter and Score plugins, one concept per file, and the one list that registers them.
//!
//! | plugin | filter | score (default weight) |
//! |---|---|---|
//! | NodeName | `spec.nodeName`, when set | |
//! | NodeUnschedulable | cordoned nodes | |
//! | TaintToleration | NoSchedule / NoExecute taints (not-ready, unreachable, …) | PreferNoSchedule taints (3) |
//! | NodeResourcesFit | cpu, memory, ephemeral-storage, extended resources, pod count | least allocated (1) |
//! | NodeResourcesBalancedAllocation | | cpu and memory in balance (1) |
//! | NodeAffinity | nodeSelector, required node affinity | preferred node affinity (2) |
//! | NodePorts | hostPort clashes | |
//! | InterPodAffinity | required pod affinity / anti-affinity (both ways) | preferred terms (2) |
//! | PodTopologySpread | DoNotSchedule constraints | ScheduleAnyway constraints (2) |
//! | ImageLocality | | images already on the node (1) |
//! | VolumeBinding | claims: a bound one's volume reachable from the node, unbound ones late-binding | |

pub mod affinity;
pub mod image_locality;
pub mod node_affinity;
pub mod node_name;
pub mod node_ports;
pub mod node_resources;
pub mod node_unschedulable;
pub mod spread;
pub mod taint_toleration;
pub mod volume_binding;

use std::collections::BTreeMap;

use crate::framework::{Filter, Profile, Score};

/// Upstream's default score weights, by plugin name.
pub const DEFAULT_WEIGHTS: [(&str, i64); 7] = [
    ("TaintToleration", 3),
    ("NodeAffinity", 2),
    ("PodTopologySpread", 2),
    ("InterPodAffinity", 2),
    ("NodeResourcesFit", 1),
    ("NodeResourcesBalancedAllocation", 1),
    ("ImageLocality", 1),
];

/// Every plugin, with the score weights given (a weight of 0 turns a score off).
pub fn profile(weights: &BTreeMap<String, i64>, percentage_of_nodes_to_score: u32) -> Profile {
    let filters: Vec<Box<dyn Filter>> = vec![
        Box::new(node_name::NodeName),
        Box::new(node_unschedulable::NodeUnschedulable),
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(node_ports::NodePorts),
        Box::new(node_resources::Fit),
        Box::new(volume_binding::VolumeBinding),
        Box::new(affinity::InterPodAffinity),
        Box::new(spread::PodTopologySpread),
    ];
    let all: Vec<Box<dyn Score>> = vec![
        Box::new(taint_toleration::TaintToleration),
        Box::new(node_affinity::NodeAffinity),
        Box::new(spread::PodTopologySpread),
        Box::new(affinity::InterPodAffinity),
        Box::new(node_resources::Fit),
        Box::new(node_resources::BalancedAllocation),
        Box::new(image_locality::ImageLocality),
    ];
    let scores = all
        .into_iter()
        .filter_map(|s| {
            let weight = weights.get(s.name()).copied().unwrap_or(1);
            (weight > 0).then_some((s, weight))
        })
        .collect();
    Profile { filters, scores, percentage_of_nodes_to_score }
}

#[cfg(test)]
pub mod testing {
    //! Builders for plugin table tests.
    use std::sync::Arc;

    use k8s_openapi::api::core::v1::{Node, Pod};

    use crate::cache::{Cache, NodeInfo, PodInfo};

    pub fn pod(v: serde_json::Value) -> PodInfo {
        let mut v = v;
        if v.get("metadata").is_none() {
            v["metadata"] = serde_json::json!({"name": "p", "namespace": "default", "uid": "p"});
        }
        if v["spec"].get("containers").is_none() {
            v["spec"]["containers"] = serde_json::json!([{"name": "c"}]);
        }
        let pod: Pod = serde_json::from_value(v).expect("pod");
        PodInfo::new(Arc::new(pod))
    }

    pub fn node(v: serde_json::Value) -> Arc<Node> {
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    /// A cache with these nodes and (uid, node, pod) placed on them.
    pub fn cache(nodes: Vec<Arc<Node>>, pods: Vec<(&str, PodInfo)>) -> Cache {
        let mut c = Cache::default();
        for n in nodes {
            c.upsert_node(n);
        }
        for (node, p) in pods {
            c.upsert_bound_pod(Arc::new(p), node);
        }
        c
    }

    pub fn info<'a>(c: &'a Cache, name: &str) -> &'a NodeInfo {
        c.node(name).expect("node in cache")
    }
}

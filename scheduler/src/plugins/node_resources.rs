//! NodeResourcesFit (the filter, and the least-allocated score) and
//! NodeResourcesBalancedAllocation: what a node has left against what the pod requests.

use crate::cache::NodeInfo;
use crate::framework::{Filter, MAX_NODE_SCORE, Prepared, Score};

pub struct Fit;
pub struct BalancedAllocation;

impl Filter for Fit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// Every shortfall is a reason of its own (`Too many pods`, `Insufficient cpu`, …), as
    /// upstream counts them.
    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        let want = &p.pod.requests;
        let (has, used) = (&node.allocatable, &node.requested);
        let mut reasons = Vec::new();
        if node.pods.len() as i64 + 1 > has.pods {
            reasons.push("Too many pods".to_string());
        }
        let short = |want: i64, has: i64, used: i64| want > 0 && want > has - used;
        if short(want.milli_cpu, has.milli_cpu, used.milli_cpu) {
            reasons.push("Insufficient cpu".into());
        }
        if short(want.memory, has.memory, used.memory) {
            reasons.push("Insufficient memory".into());
        }
        if short(want.ephemeral_storage, has.ephemeral_storage, used.ephemeral_storage) {
            reasons.push("Insufficient ephemeral-storage".into());
        }
        for (name, amount) in &want.scalar {
            let available = has.scalar.get(name).copied().unwrap_or(0) - used.scalar.get(name).copied().unwrap_or(0);
            if *amount > 0 && *amount > available {
                reasons.push(format!("Insufficient {name}"));
            }
        }
        if reasons.is_empty() { Ok(()) } else { Err(reasons) }
    }
}

/// CPU and memory fractions in use once the pod is added (with the scoring defaults).
fn fractions(p: &Prepared<'_>, node: &NodeInfo) -> [(i64, i64); 2] {
    let (cpu, memory) = p.pod.non_zero;
    [
        (node.non_zero_requested.0 + cpu, node.allocatable.milli_cpu),
        (node.non_zero_requested.1 + memory, node.allocatable.memory),
    ]
}

impl Score for Fit {
    fn name(&self) -> &'static str {
        "NodeResourcesFit"
    }

    /// Least allocated: the share of CPU and memory still free, averaged.
    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        let parts = fractions(p, node)
            .map(|(used, has)| if has == 0 || used > has { 0 } else { (has - used) * MAX_NODE_SCORE / has });
        parts.iter().sum::<i64>() / parts.len() as i64
    }
}

impl Score for BalancedAllocation {
    fn name(&self) -> &'static str {
        "NodeResourcesBalancedAllocation"
    }

    /// 100 when CPU and memory are used in the same proportion, less as they drift apart.
    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        let [cpu, memory] =
            fractions(p, node).map(|(used, has)| if has == 0 { 1.0 } else { (used as f64 / has as f64).min(1.0) });
        let std = (cpu - memory).abs() / 2.0;
        ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    fn n(name: &str, cpu: &str, memory: &str, pods: &str) -> std::sync::Arc<k8s_openapi::api::core::v1::Node> {
        node(json!({"metadata": {"name": name}, "status": {"allocatable": {
            "cpu": cpu, "memory": memory, "pods": pods, "example.com/gpu": "1"}}}))
    }

    fn requesting(requests: serde_json::Value) -> crate::cache::PodInfo {
        pod(json!({"spec": {"containers": [{"name": "c", "resources": {"requests": requests}}]}}))
    }

    #[test]
    fn fit_names_every_shortfall() {
        let c =
            cache(vec![n("a", "2", "1Gi", "2")], vec![("a", requesting(json!({"cpu": "1500m", "memory": "512Mi"})))]);
        let cases = [
            (json!({"cpu": "500m"}), Ok(())),
            (json!({"cpu": "501m"}), Err(vec!["Insufficient cpu".to_string()])),
            (
                json!({"cpu": "1", "memory": "1Gi"}),
                Err(vec!["Insufficient cpu".to_string(), "Insufficient memory".to_string()]),
            ),
            (json!({"example.com/gpu": "2"}), Err(vec!["Insufficient example.com/gpu".to_string()])),
            (json!({"example.com/gpu": "1"}), Ok(())),
        ];
        for (requests, want) in cases {
            let p = requesting(requests.clone());
            assert_eq!(Fit.filter(&Prepared::new(&p, &c), info(&c, "a")), want, "{requests}");
        }
        let full = cache(vec![n("a", "2", "1Gi", "1")], vec![("a", requesting(json!({})))]);
        let p = requesting(json!({}));
        assert_eq!(Fit.filter(&Prepared::new(&p, &full), info(&full, "a")), Err(vec!["Too many pods".to_string()]));
    }

    #[test]
    fn emptier_and_more_balanced_nodes_score_higher() {
        let c = cache(
            vec![n("empty", "4", "4Gi", "10"), n("busy", "4", "4Gi", "10")],
            vec![("busy", requesting(json!({"cpu": "3", "memory": "1Gi"})))],
        );
        let p = requesting(json!({"cpu": "1", "memory": "1Gi"}));
        let prepared = Prepared::new(&p, &c);
        assert_eq!(Fit.score(&prepared, info(&c, "empty")), 75, "cpu 75% free, memory 75% free");
        assert_eq!(Fit.score(&prepared, info(&c, "busy")), 25, "cpu 0% free, memory 50% free");
        assert_eq!(BalancedAllocation.score(&prepared, info(&c, "empty")), 100);
        assert_eq!(BalancedAllocation.score(&prepared, info(&c, "busy")), 75, "cpu 100%, memory 50%");
    }
}

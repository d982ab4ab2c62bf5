//! NodeUnschedulable: a cordoned node (`spec.unschedulable`) takes only pods that tolerate
//! `node.kubernetes.io/unschedulable:NoSchedule`.

use k8s_openapi::api::core::v1::Taint;

use crate::cache::NodeInfo;
use crate::framework::{Filter, Prepared};
use crate::plugins::taint_toleration::tolerated;

pub struct NodeUnschedulable;

impl Filter for NodeUnschedulable {
    fn name(&self) -> &'static str {
        "NodeUnschedulable"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        if !node.unschedulable {
            return Ok(());
        }
        let taint =
            Taint { key: "node.kubernetes.io/unschedulable".into(), effect: "NoSchedule".into(), ..Default::default() };
        if tolerated(p.pod.spec().tolerations.as_deref().unwrap_or_default(), &taint) {
            Ok(())
        } else {
            Err(vec!["node(s) were unschedulable".into()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn cordoned_nodes_take_only_tolerating_pods() {
        let c = cache(vec![node(json!({"metadata": {"name": "a"}, "spec": {"unschedulable": true}}))], vec![]);
        let cases = [
            (json!({}), false),
            (
                json!({"tolerations": [{"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}),
                true,
            ),
        ];
        for (spec, fits) in cases {
            let p = pod(json!({"spec": spec}));
            assert_eq!(NodeUnschedulable.filter(&Prepared::new(&p, &c), info(&c, "a")).is_ok(), fits, "{spec}");
        }
    }
}

//! NodeAffinity: `nodeSelector` and the required node affinity (terms ORed, expressions within
//! a term ANDed; In, NotIn, Exists, DoesNotExist, Gt, Lt; `matchFields` on `metadata.name`)
//! filter; the preferred terms' weights score.

use api_types::node_selector::term_matches;
use std::collections::BTreeMap;

use crate::cache::{NodeInfo, PodInfo};
use crate::framework::{Filter, Prepared, Score, normalize_to_max};

pub struct NodeAffinity;

/// The pod's nodeSelector and required node affinity against a node's labels.
pub fn required_matches(pod: &PodInfo, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    let spec = pod.spec();
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    selector_ok && required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, labels, node_name)))
}

impl Filter for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        if required_matches(p.pod, &node.labels, &node.name) {
            Ok(())
        } else {
            Err(vec!["node(s) didn't match Pod's node affinity/selector".into()])
        }
    }
}

impl Score for NodeAffinity {
    fn name(&self) -> &'static str {
        "NodeAffinity"
    }

    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        let preferred = p
            .pod
            .spec()
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.preferred_during_scheduling_ignored_during_execution.as_ref());
        preferred
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0 && term_matches(&t.preference, &node.labels, &node.name))
            .map(|t| i64::from(t.weight))
            .sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn selectors_and_required_terms_filter() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {"zone": "z1", "disk": "ssd", "cores": "8"}}})),
                node(json!({"metadata": {"name": "b", "labels": {"zone": "z2", "cores": "2"}}})),
            ],
            vec![],
        );
        let term = |exprs: serde_json::Value| json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": exprs}]}}}});
        let cases = [
            (json!({"nodeSelector": {"disk": "ssd"}}), [true, false]),
            (term(json!([{"key": "zone", "operator": "In", "values": ["z2", "z3"]}])), [false, true]),
            (term(json!([{"key": "zone", "operator": "NotIn", "values": ["z1"]}])), [false, true]),
            (term(json!([{"key": "disk", "operator": "Exists"}])), [true, false]),
            (term(json!([{"key": "disk", "operator": "DoesNotExist"}])), [false, true]),
            (term(json!([{"key": "cores", "operator": "Gt", "values": ["4"]}])), [true, false]),
            (term(json!([{"key": "cores", "operator": "Lt", "values": ["4"]}])), [false, true]),
            (
                term(
                    json!([{"key": "zone", "operator": "In", "values": ["z1"]}, {"key": "cores", "operator": "Lt", "values": ["4"]}]),
                ),
                [false, false],
            ),
            (
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]},
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}
                ]}}}}),
                [true, true],
            ),
            (json!({}), [true, true]),
        ];
        for (spec, want) in cases {
            let p = pod(json!({"spec": spec}));
            let prepared = Prepared::new(&p, &c);
            let got = ["a", "b"].map(|n| NodeAffinity.filter(&prepared, info(&c, n)).is_ok());
            assert_eq!(got, want, "{spec}");
        }
    }

    #[test]
    fn preferred_terms_add_their_weights() {
        let c = cache(
            vec![
                node(json!({"metadata": {"name": "a", "labels": {"zone": "z1"}}})),
                node(json!({"metadata": {"name": "b"}})),
            ],
            vec![],
        );
        let p = pod(json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}}
        ]}}}}));
        let prepared = Prepared::new(&p, &c);
        let mut scores =
            vec![NodeAffinity.score(&prepared, info(&c, "a")), NodeAffinity.score(&prepared, info(&c, "b"))];
        assert_eq!(scores, [30, 0]);
        NodeAffinity.normalize(&mut scores);
        assert_eq!(scores, [100, 0]);
    }
}

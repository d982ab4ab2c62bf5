//! PodTopologySpread: `topologySpreadConstraints`. Matching pods are counted per domain of the
//! topology key over the nodes the pod could go to (its nodeSelector and required node affinity
//! honoured, as upstream's default); DoNotSchedule constraints filter out nodes where placing
//! the pod would leave the skew above `maxSkew`, ScheduleAnyway constraints prefer emptier
//! domains.

use std::collections::HashMap;

use api_types::labels::LabelSelector;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Filter, MAX_NODE_SCORE, Prepared, Score};
use crate::plugins::node_affinity::required_matches;

pub struct PodTopologySpread;

#[derive(Debug)]
struct Constraint {
    key: String,
    max_skew: i64,
    hard: bool,
    /// Whether the incoming pod matches its own selector (then it adds one to its domain).
    self_match: i64,
    counts: HashMap<String, i64>,
    min: i64,
}

#[derive(Debug, Default)]
pub struct State {
    constraints: Vec<Constraint>,
}

impl State {
    pub fn new(pod: &PodInfo, cache: &Cache) -> Self {
        let specs = pod.spec().topology_spread_constraints.as_deref().unwrap_or_default();
        let mut constraints = Vec::with_capacity(specs.len());
        for c in specs {
            let selector = c.label_selector.as_ref().and_then(|s| LabelSelector::from_label_selector(s).ok());
            let matches =
                |p: &PodInfo| p.namespace == pod.namespace && selector.as_ref().is_some_and(|s| s.matches(&p.labels));
            let mut counts: HashMap<String, i64> = HashMap::new();
            for node in cache.nodes() {
                let Some(value) = node.labels.get(&c.topology_key) else { continue };
                if !required_matches(pod, &node.labels, &node.name) {
                    continue;
                }
                let n =
                    node.pods.values().filter(|p| p.pod.metadata.deletion_timestamp.is_none() && matches(p)).count();
                *counts.entry(value.clone()).or_default() += n as i64;
            }
            constraints.push(Constraint {
                key: c.topology_key.clone(),
                max_skew: i64::from(c.max_skew.max(1)),
                hard: c.when_unsatisfiable == "DoNotSchedule",
                self_match: i64::from(matches(pod)),
                min: counts.values().copied().min().unwrap_or(0),
                counts,
            });
        }
        State { constraints }
    }
}

impl Filter for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        for c in p.spread.constraints.iter().filter(|c| c.hard) {
            let Some(value) = node.labels.get(&c.key) else {
                return Err(vec![
                    "node(s) didn't match pod topology spread constraints (missing required label)".into(),
                ]);
            };
            let skew = c.counts.get(value).copied().unwrap_or(0) + c.self_match - c.min;
            if skew > c.max_skew {
                return Err(vec!["node(s) didn't match pod topology spread constraints".into()]);
            }
        }
        Ok(())
    }
}

/// The raw score of a node missing a soft constraint's key: the worst.
const MISSING: i64 = i64::MAX;

impl Score for PodTopologySpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    /// Matching pods in the node's domains, over the ScheduleAnyway constraints; fewer is better.
    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        let mut total = 0;
        for c in p.spread.constraints.iter().filter(|c| !c.hard) {
            match node.labels.get(&c.key) {
                Some(v) => total += c.counts.get(v).copied().unwrap_or(0),
                None => return MISSING,
            }
        }
        total
    }

    fn normalize(&self, scores: &mut [i64]) {
        let present = scores.iter().copied().filter(|s| *s != MISSING);
        let (min, max) = (present.clone().min().unwrap_or(0), present.max().unwrap_or(0));
        for s in scores.iter_mut() {
            *s = match *s {
                MISSING => 0,
                _ if max == min => MAX_NODE_SCORE,
                v => (max - v) * MAX_NODE_SCORE / (max - min),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    fn web(name: &str) -> PodInfo {
        pod(
            json!({"metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "web"}}, "spec": {}}),
        )
    }

    fn spreading(when: &str, max_skew: i32) -> PodInfo {
        pod(
            json!({"metadata": {"name": "new", "namespace": "default", "uid": "new", "labels": {"app": "web"}}, "spec": {
            "topologySpreadConstraints": [{"maxSkew": max_skew, "topologyKey": "zone", "whenUnsatisfiable": when,
                                           "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        )
    }

    fn nodes() -> Vec<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        vec![
            node(json!({"metadata": {"name": "a", "labels": {"zone": "za"}}})),
            node(json!({"metadata": {"name": "b", "labels": {"zone": "zb"}}})),
            node(json!({"metadata": {"name": "c", "labels": {"zone": "zc"}}})),
            node(json!({"metadata": {"name": "nolabel"}})),
        ]
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_max_skew() {
        let c = cache(nodes(), vec![("a", web("w1")), ("a", web("w2")), ("b", web("w3"))]);
        let cases = [(1, vec!["c"]), (2, vec!["b", "c"]), (3, vec!["a", "b", "c"])];
        for (max_skew, want) in cases {
            let p = spreading("DoNotSchedule", max_skew);
            let prepared = Prepared::new(&p, &c);
            let got: Vec<&str> = ["a", "b", "c", "nolabel"]
                .into_iter()
                .filter(|n| PodTopologySpread.filter(&prepared, info(&c, n)).is_ok())
                .collect();
            assert_eq!(got, want, "maxSkew {max_skew}");
        }
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let c = cache(nodes(), vec![("a", web("w1")), ("a", web("w2")), ("b", web("w3"))]);
        let p = spreading("ScheduleAnyway", 1);
        let prepared = Prepared::new(&p, &c);
        assert!(PodTopologySpread.filter(&prepared, info(&c, "a")).is_ok(), "soft constraints do not filter");
        let mut scores: Vec<i64> =
            ["a", "b", "c", "nolabel"].iter().map(|n| PodTopologySpread.score(&prepared, info(&c, n))).collect();
        PodTopologySpread.normalize(&mut scores);
        assert_eq!(scores, [0, 50, 100, 0]);
    }
}

//! The decision for one pod, shaped like upstream's framework: small Filter plugins (a node fits,
//! or the reasons it does not) and Score plugins (0–100 per node, normalized, weighted) over the
//! [`Cache`]. "Unschedulable" is an answer with its reasons, not an error.

use std::collections::BTreeMap;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::plugins::{affinity, image_locality, spread};

pub const MAX_NODE_SCORE: i64 = 100;
/// Below this many nodes every node is filtered and scored (upstream's minFeasibleNodesToFind).
const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// What the plugins share about the pod being placed, computed once per decision.
pub struct Prepared<'a> {
    pub pod: &'a PodInfo,
    pub cache: &'a Cache,
    pub affinity: affinity::State,
    pub spread: spread::State,
    pub images: image_locality::State,
}

impl<'a> Prepared<'a> {
    pub fn new(pod: &'a PodInfo, cache: &'a Cache) -> Self {
        Prepared {
            pod,
            cache,
            affinity: affinity::State::new(pod, cache),
            spread: spread::State::new(pod, cache),
            images: image_locality::State::new(pod, cache),
        }
    }
}

/// Decides whether a node can take the pod.
pub trait Filter: Send + Sync {
    fn name(&self) -> &'static str;
    /// `Err` carries upstream's reason text(s), e.g. `Insufficient cpu`.
    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>>;
}

/// Ranks the nodes that fit.
pub trait Score: Send + Sync {
    fn name(&self) -> &'static str;
    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64;
    /// Brings the raw scores of all feasible nodes to 0–100 (most plugins already are).
    fn normalize(&self, _scores: &mut [i64]) {}
}

/// The plugins and their weights, in the order they run.
pub struct Profile {
    pub filters: Vec<Box<dyn Filter>>,
    pub scores: Vec<(Box<dyn Score>, i64)>,
    /// Share of the nodes to find feasible before scoring (`percentageOfNodesToScore`); 0 means
    /// upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
}

/// Why no node took the pod: for each reason, on how many nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diagnosis {
    pub nodes: usize,
    pub reasons: BTreeMap<String, usize>,
}

impl Diagnosis {
    /// Upstream's message: `0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had
    /// untolerated taint {dedicated: gpu}.`
    pub fn message(&self) -> String {
        if self.nodes == 0 {
            return "no nodes available to schedule pods".to_string();
        }
        let mut parts: Vec<String> = self.reasons.iter().map(|(reason, n)| format!("{n} {reason}")).collect();
        parts.sort();
        format!("0/{} nodes are available: {}.", self.nodes, parts.join(", "))
    }
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Node(String),
    Unschedulable(Diagnosis),
}

/// How many feasible nodes to find before scoring (upstream's numFeasibleNodesToFind).
pub fn feasible_nodes_to_find(all: usize, percentage: u32) -> usize {
    if all < MIN_FEASIBLE_NODES_TO_FIND {
        return all;
    }
    let percentage =
        if percentage == 0 { (50 - (all / 125) as i64).max(5) as usize } else { percentage.min(100) as usize };
    (all * percentage / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

impl Profile {
    /// Filters nodes starting at `start` (rotating, so successive pods look at different nodes
    /// first) until enough fit, scores those, and picks the best; ties go to `tie_break`'s pick.
    /// Returns the decision and how many nodes were looked at.
    pub fn decide(
        &self,
        pod: &PodInfo,
        cache: &Cache,
        start: usize,
        tie_break: &mut impl FnMut(usize) -> usize,
    ) -> (Decision, usize) {
        let total = cache.len();
        if total == 0 {
            return (Decision::Unschedulable(Diagnosis::default()), 0);
        }
        let prepared = Prepared::new(pod, cache);
        let want = feasible_nodes_to_find(total, self.percentage_of_nodes_to_score);
        let mut feasible: Vec<&NodeInfo> = Vec::with_capacity(want.min(total));
        let mut diagnosis = Diagnosis { nodes: total, reasons: BTreeMap::new() };
        let mut looked = 0;
        for i in 0..total {
            if feasible.len() >= want {
                break;
            }
            looked += 1;
            let node = cache.nth((start + i) % total);
            match self.filters.iter().try_for_each(|f| f.filter(&prepared, node)) {
                Ok(()) => feasible.push(node),
                Err(reasons) => {
                    for r in reasons {
                        *diagnosis.reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        if feasible.is_empty() {
            return (Decision::Unschedulable(diagnosis), looked);
        }
        if feasible.len() == 1 {
            return (Decision::Node(feasible[0].name.clone()), looked);
        }
        let mut totals = vec![0i64; feasible.len()];
        for (plugin, weight) in &self.scores {
            let mut scores: Vec<i64> = feasible.iter().map(|n| plugin.score(&prepared, n)).collect();
            plugin.normalize(&mut scores);
            for (t, s) in totals.iter_mut().zip(scores) {
                *t += s * weight;
            }
        }
        let best = totals.iter().copied().max().unwrap_or(0);
        let tied: Vec<usize> = (0..feasible.len()).filter(|i| totals[*i] == best).collect();
        let pick = tied[tie_break(tied.len()) % tied.len()];
        (Decision::Node(feasible[pick].name.clone()), looked)
    }
}

/// Scales raw scores so the highest is 100 (`reverse`: so the lowest is 100).
pub fn normalize_to_max(scores: &mut [i64], reverse: bool) {
    let max = scores.iter().copied().max().unwrap_or(0);
    for s in scores.iter_mut() {
        *s = match (max, reverse) {
            (0, true) => MAX_NODE_SCORE,
            (0, false) => 0,
            (m, false) => *s * MAX_NODE_SCORE / m,
            (m, true) => MAX_NODE_SCORE - *s * MAX_NODE_SCORE / m,
        };
    }
}

/// Scales raw scores linearly onto 0–100 between their minimum and maximum.
pub fn normalize_min_max(scores: &mut [i64]) {
    let (min, max) = (scores.iter().copied().min().unwrap_or(0), scores.iter().copied().max().unwrap_or(0));
    for s in scores.iter_mut() {
        *s = if max == min { 0 } else { (*s - min) * MAX_NODE_SCORE / (max - min) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_counts_reasons_like_upstream() {
        let d = Diagnosis {
            nodes: 5,
            reasons: BTreeMap::from([
                ("node(s) had untolerated taint {dedicated: gpu}".to_string(), 3),
                ("Insufficient cpu".to_string(), 2),
            ]),
        };
        assert_eq!(
            d.message(),
            "0/5 nodes are available: 2 Insufficient cpu, 3 node(s) had untolerated taint {dedicated: gpu}."
        );
        assert_eq!(Diagnosis::default().message(), "no nodes available to schedule pods");
    }

    #[test]
    fn small_clusters_are_searched_whole_and_large_ones_sampled() {
        assert_eq!(feasible_nodes_to_find(50, 0), 50);
        assert_eq!(feasible_nodes_to_find(1000, 0), 420);
        assert_eq!(feasible_nodes_to_find(5000, 0), 500);
        assert_eq!(feasible_nodes_to_find(5000, 100), 5000);
        assert_eq!(feasible_nodes_to_find(200, 10), 100, "never fewer than 100");
    }

    #[test]
    fn normalizations_map_onto_0_to_100() {
        let mut s = vec![0, 5, 10];
        normalize_to_max(&mut s, false);
        assert_eq!(s, [0, 50, 100]);
        let mut s = vec![0, 5, 10];
        normalize_to_max(&mut s, true);
        assert_eq!(s, [100, 50, 0]);
        let mut s = vec![-4, 0, 4];
        normalize_min_max(&mut s);
        assert_eq!(s, [0, 50, 100]);
    }
}

//! InterPodAffinity: required pod affinity and anti-affinity by topology key, both the incoming
//! pod's and, in reverse, the anti-affinity of pods already placed (a pod that says "not next to
//! app=web" keeps web pods away too); preferred terms (and existing pods' terms that name the
//! incoming pod) add or take away their weights per topology domain.

use std::collections::HashMap;

use api_types::labels::LabelSelector;
use k8s_openapi::api::core::v1::PodAffinityTerm;

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{Filter, Prepared, Score, normalize_min_max};

pub struct InterPodAffinity;

/// Upstream's weight for an existing pod's *required* affinity towards the incoming pod, in
/// scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// Whether `term`, written by a pod in namespace `owner_ns`, selects `target`. Namespaces: the
/// term's list, all of them for an empty `namespaceSelector`, else the owner's.
pub fn term_selects(term: &PodAffinityTerm, owner_ns: &str, target: &PodInfo) -> bool {
    let namespaces = term.namespaces.as_deref().unwrap_or_default();
    let all_namespaces = term.namespace_selector.as_ref().is_some_and(|s| {
        s.match_labels.as_ref().is_none_or(|m| m.is_empty())
            && s.match_expressions.as_ref().is_none_or(|e| e.is_empty())
    });
    let in_namespace = all_namespaces
        || namespaces.contains(&target.namespace)
        || (namespaces.is_empty() && term.namespace_selector.is_none() && owner_ns == target.namespace);
    if !in_namespace {
        return false;
    }
    match &term.label_selector {
        None => false,
        Some(s) => LabelSelector::from_label_selector(s).is_ok_and(|sel| sel.matches(&target.labels)),
    }
}

type Domain = (String, String);

/// The incoming pod's terms with their counts over the cluster, computed once per decision.
#[derive(Debug, Default)]
pub struct State {
    /// Per required affinity term: its topology key, pods it selects per domain value, and
    /// whether it selects any pod at all.
    affinity: Vec<(String, HashMap<String, usize>, bool)>,
    /// Whether the incoming pod matches all its own required affinity terms (the first pod of a
    /// group may then go anywhere).
    self_affine: bool,
    /// Domains the incoming pod's required anti-affinity rules out.
    anti: HashMap<Domain, usize>,
    /// Domains placed pods' required anti-affinity rules out for the incoming pod.
    existing_anti: HashMap<Domain, usize>,
    /// Preferred weights per domain (both directions).
    preferred: HashMap<Domain, i64>,
}

impl State {
    pub fn new(pod: &PodInfo, cache: &Cache) -> Self {
        let mut s = State::default();
        let affinity = pod.spec().affinity.as_ref();
        let (pa, paa) =
            (affinity.and_then(|a| a.pod_affinity.as_ref()), affinity.and_then(|a| a.pod_anti_affinity.as_ref()));
        let required_affinity =
            pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default();
        let required_anti =
            paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default();
        let preferred_affinity =
            pa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default();
        let preferred_anti =
            paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default();
        s.affinity = required_affinity.iter().map(|t| (t.topology_key.clone(), HashMap::new(), false)).collect();
        s.self_affine = required_affinity.iter().all(|t| term_selects(t, &pod.namespace, pod));
        let incoming_terms = !(required_affinity.is_empty()
            && required_anti.is_empty()
            && preferred_affinity.is_empty()
            && preferred_anti.is_empty());
        if incoming_terms {
            for node in cache.nodes() {
                for existing in node.pods.values() {
                    for (i, t) in required_affinity.iter().enumerate() {
                        if term_selects(t, &pod.namespace, existing) {
                            s.affinity[i].2 = true;
                            if let Some(v) = node.labels.get(&t.topology_key) {
                                *s.affinity[i].1.entry(v.clone()).or_default() += 1;
                            }
                        }
                    }
                    for t in required_anti {
                        if let Some(v) =
                            node.labels.get(&t.topology_key).filter(|_| term_selects(t, &pod.namespace, existing))
                        {
                            *s.anti.entry((t.topology_key.clone(), v.clone())).or_default() += 1;
                        }
                    }
                    for (w, sign) in
                        preferred_affinity.iter().map(|w| (w, 1)).chain(preferred_anti.iter().map(|w| (w, -1)))
                    {
                        let t = &w.pod_affinity_term;
                        if let Some(v) =
                            node.labels.get(&t.topology_key).filter(|_| term_selects(t, &pod.namespace, existing))
                        {
                            *s.preferred.entry((t.topology_key.clone(), v.clone())).or_default() +=
                                sign * i64::from(w.weight);
                        }
                    }
                }
            }
        }
        // The other direction: placed pods' terms that select the incoming pod.
        for (node_name, existing) in cache.pods_with_affinity() {
            let Some(node) = cache.node(node_name) else { continue };
            let affinity = existing.spec().affinity.as_ref();
            let (pa, paa) =
                (affinity.and_then(|a| a.pod_affinity.as_ref()), affinity.and_then(|a| a.pod_anti_affinity.as_ref()));
            let domain =
                |t: &PodAffinityTerm| node.labels.get(&t.topology_key).map(|v| (t.topology_key.clone(), v.clone()));
            for t in
                paa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
            {
                if let Some(d) = domain(t).filter(|_| term_selects(t, &existing.namespace, pod)) {
                    *s.existing_anti.entry(d).or_default() += 1;
                }
            }
            for t in
                pa.and_then(|a| a.required_during_scheduling_ignored_during_execution.as_deref()).unwrap_or_default()
            {
                if let Some(d) = domain(t).filter(|_| term_selects(t, &existing.namespace, pod)) {
                    *s.preferred.entry(d).or_default() += HARD_POD_AFFINITY_WEIGHT;
                }
            }
            let preferred = pa
                .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
                .unwrap_or_default()
                .iter()
                .map(|w| (w, 1))
                .chain(
                    paa.and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_deref())
                        .unwrap_or_default()
                        .iter()
                        .map(|w| (w, -1)),
                );
            for (w, sign) in preferred {
                let t = &w.pod_affinity_term;
                if let Some(d) = domain(t).filter(|_| term_selects(t, &existing.namespace, pod)) {
                    *s.preferred.entry(d).or_default() += sign * i64::from(w.weight);
                }
            }
        }
        s
    }
}

fn in_domain(node: &NodeInfo, (key, value): &Domain) -> bool {
    node.labels.get(key) == Some(value)
}

impl Filter for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        let s = &p.affinity;
        if s.existing_anti.keys().any(|d| in_domain(node, d)) {
            return Err(vec!["node(s) didn't satisfy existing pods anti-affinity rules".into()]);
        }
        if s.anti.keys().any(|d| in_domain(node, d)) {
            return Err(vec!["node(s) didn't match pod anti-affinity rules".into()]);
        }
        let nobody_matches = s.affinity.iter().all(|(_, _, any)| !any);
        let affine = s
            .affinity
            .iter()
            .all(|(key, counts, _)| node.labels.get(key).is_some_and(|v| counts.get(v).copied().unwrap_or(0) > 0));
        // The first pod of a group that selects itself may go anywhere its key exists.
        let first_of_group =
            nobody_matches && s.self_affine && s.affinity.iter().all(|(key, _, _)| node.labels.contains_key(key));
        if affine || first_of_group { Ok(()) } else { Err(vec!["node(s) didn't match pod affinity rules".into()]) }
    }
}

impl Score for InterPodAffinity {
    fn name(&self) -> &'static str {
        "InterPodAffinity"
    }

    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        p.affinity.preferred.iter().filter(|(d, _)| in_domain(node, d)).map(|(_, w)| *w).sum()
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_min_max(scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    fn labelled(name: &str, labels: serde_json::Value) -> crate::cache::PodInfo {
        pod(json!({"metadata": {"name": name, "namespace": "default", "uid": name, "labels": labels}, "spec": {}}))
    }

    fn zones() -> Vec<std::sync::Arc<k8s_openapi::api::core::v1::Node>> {
        [("a1", "za"), ("a2", "za"), ("b1", "zb"), ("c1", "zc")]
            .iter()
            .map(|(n, z)| node(json!({"metadata": {"name": n, "labels": {"zone": z, "kubernetes.io/hostname": n}}})))
            .collect()
    }

    fn term(key: &str, app: &str) -> serde_json::Value {
        json!({"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}})
    }

    fn fits(c: &crate::cache::Cache, p: &crate::cache::PodInfo) -> Vec<&'static str> {
        let prepared = Prepared::new(p, c);
        ["a1", "a2", "b1", "c1"]
            .into_iter()
            .filter(|n| InterPodAffinity.filter(&prepared, info(c, n)).is_ok())
            .collect()
    }

    #[test]
    fn required_affinity_and_anti_affinity_by_topology_key() {
        let c = cache(zones(), vec![("a1", labelled("db", json!({"app": "db"})))]);
        let cases = [
            (
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]}}),
                vec!["a1", "a2"],
            ),
            (
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("kubernetes.io/hostname", "db")]}}),
                vec!["a1"],
            ),
            (
                json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "db")]}}),
                vec!["b1", "c1"],
            ),
            (
                json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "cache")]}}),
                vec![],
            ),
        ];
        for (affinity, want) in cases {
            let p = pod(
                json!({"metadata": {"name": "p", "namespace": "default", "uid": "p", "labels": {"app": "web"}}, "spec": {"affinity": affinity}}),
            );
            assert_eq!(fits(&c, &p), want, "{affinity}");
        }
    }

    #[test]
    fn the_first_pod_of_a_self_affine_group_goes_anywhere() {
        let c = cache(zones(), vec![]);
        let p = pod(json!({"metadata": {"name": "p", "namespace": "default", "uid": "p", "labels": {"app": "web"}},
            "spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "web")]}}}}));
        assert_eq!(fits(&c, &p), ["a1", "a2", "b1", "c1"]);
    }

    #[test]
    fn placed_pods_anti_affinity_keeps_matching_pods_away() {
        let loner = pod(json!({"metadata": {"name": "loner", "namespace": "default", "uid": "loner"},
            "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term("zone", "web")]}}}}));
        let c = cache(zones(), vec![("b1", loner)]);
        let web = labelled("w", json!({"app": "web"}));
        assert_eq!(fits(&c, &web), ["a1", "a2", "c1"]);
        let other = labelled("o", json!({"app": "batch"}));
        assert_eq!(fits(&c, &other), ["a1", "a2", "b1", "c1"]);
    }

    #[test]
    fn namespaces_limit_what_a_term_selects() {
        let elsewhere = pod(
            json!({"metadata": {"name": "db", "namespace": "other", "uid": "db", "labels": {"app": "db"}}, "spec": {}}),
        );
        let c = cache(zones(), vec![("a1", elsewhere)]);
        let anti = |t: serde_json::Value| {
            pod(json!({"metadata": {"name": "p", "namespace": "default", "uid": "p"},
            "spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [t]}}}}))
        };
        let mut own_namespace = term("zone", "db");
        assert_eq!(fits(&c, &anti(own_namespace.clone())).len(), 4, "the db pod is in another namespace");
        own_namespace["namespaces"] = json!(["other"]);
        assert_eq!(fits(&c, &anti(own_namespace)), ["b1", "c1"]);
        let mut everywhere = term("zone", "db");
        everywhere["namespaceSelector"] = json!({});
        assert_eq!(fits(&c, &anti(everywhere)), ["b1", "c1"]);
    }

    #[test]
    fn preferred_terms_score_by_domain() {
        let c = cache(
            zones(),
            vec![("a1", labelled("db", json!({"app": "db"}))), ("b1", labelled("web", json!({"app": "web"})))],
        );
        let p = pod(json!({"metadata": {"name": "p", "namespace": "default", "uid": "p"}, "spec": {"affinity": {
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 10, "podAffinityTerm": term("zone", "db")}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 5, "podAffinityTerm": term("zone", "web")}]}
        }}}));
        let prepared = Prepared::new(&p, &c);
        let mut scores: Vec<i64> =
            ["a1", "a2", "b1", "c1"].iter().map(|n| InterPodAffinity.score(&prepared, info(&c, n))).collect();
        assert_eq!(scores, [10, 10, -5, 0]);
        InterPodAffinity.normalize(&mut scores);
        assert_eq!(scores, [100, 100, 0, 33]);
    }
}

//! TaintToleration: NoSchedule and NoExecute taints keep out pods that do not tolerate them
//! (the node lifecycle's `node.kubernetes.io/not-ready` and `unreachable` taints among them);
//! untolerated PreferNoSchedule taints lower a node's score.

use k8s_openapi::api::core::v1::{Taint, Toleration};

use crate::cache::NodeInfo;
use crate::framework::{Filter, Prepared, Score, normalize_to_max};

pub struct TaintToleration;

/// Whether one toleration matches a taint: same effect (or any, when empty), and `Exists` (an
/// empty key matching every key) or `Equal` with the same value.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" => {
            !key.is_empty() && t.value.as_deref().unwrap_or_default() == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

impl Filter for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        let tolerations = p.pod.spec().tolerations.as_deref().unwrap_or_default();
        let untolerated = node
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .find(|t| !tolerated(tolerations, t));
        match untolerated {
            None => Ok(()),
            Some(t) => Err(vec![format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )]),
        }
    }
}

impl Score for TaintToleration {
    fn name(&self) -> &'static str {
        "TaintToleration"
    }

    /// The number of untolerated PreferNoSchedule taints; fewer is better.
    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        let tolerations: Vec<&Toleration> = p
            .pod
            .spec()
            .tolerations
            .iter()
            .flatten()
            .filter(|t| t.effect.as_deref().is_none_or(|e| e.is_empty() || e == "PreferNoSchedule"))
            .collect();
        node.taints
            .iter()
            .filter(|t| t.effect == "PreferNoSchedule" && !tolerations.iter().any(|tol| tolerates(tol, t)))
            .count() as i64
    }

    fn normalize(&self, scores: &mut [i64]) {
        normalize_to_max(scores, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint { key: key.into(), value: Some(value.into()), effect: effect.into(), ..Default::default() }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration")
    }

    #[test]
    fn tolerations_match_by_key_operator_value_and_effect() {
        let gpu = taint("dedicated", "gpu", "NoSchedule");
        let cases = [
            (json!({"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}), true),
            (json!({"key": "dedicated", "value": "gpu"}), true),
            (json!({"key": "dedicated", "value": "cpu"}), false),
            (json!({"key": "dedicated", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"value": "gpu"}), false),
        ];
        for (t, want) in cases {
            assert_eq!(tolerates(&toleration(t.clone()), &gpu), want, "{t}");
        }
    }

    #[test]
    fn hard_taints_filter_and_soft_ones_score() {
        let c = cache(
            vec![
                node(
                    json!({"metadata": {"name": "tainted"}, "spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
                ),
                node(
                    json!({"metadata": {"name": "soft"}, "spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}}),
                ),
                node(json!({"metadata": {"name": "clean"}})),
            ],
            vec![],
        );
        let plain = pod(json!({"spec": {}}));
        let p = Prepared::new(&plain, &c);
        assert_eq!(
            TaintToleration.filter(&p, info(&c, "tainted")),
            Err(vec!["node(s) had untolerated taint {dedicated: gpu}".into()])
        );
        assert!(TaintToleration.filter(&p, info(&c, "soft")).is_ok());
        let mut scores =
            vec![TaintToleration.score(&p, info(&c, "soft")), TaintToleration.score(&p, info(&c, "clean"))];
        TaintToleration.normalize(&mut scores);
        assert_eq!(scores, [0, 100]);
        let tolerant = pod(json!({"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}));
        assert_eq!(TaintToleration.score(&Prepared::new(&tolerant, &c), info(&c, "soft")), 0);
    }
}

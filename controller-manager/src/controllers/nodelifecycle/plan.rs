//! The node lifecycle controller's decisions, pure: a silent node's conditions, the taints a
//! node's Ready condition calls for, and when a NoExecute taint evicts a pod.

use k8s_openapi::api::core::v1::{NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The conditions a kubelet reports and the controller turns Unknown when it falls silent.
const REPORTED: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The conditions of a node whose kubelet stopped reporting: each reported condition becomes
/// Unknown (its heartbeat kept); `None` when they already are.
pub fn unknown_conditions(conditions: &[NodeCondition], now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut changed = false;
    let mut next: Vec<NodeCondition> = conditions
        .iter()
        .map(|c| {
            if REPORTED.contains(&c.type_.as_str()) && c.status != "Unknown" {
                changed = true;
                NodeCondition {
                    status: "Unknown".into(),
                    reason: Some("NodeStatusUnknown".into()),
                    message: Some("Kubelet stopped posting node status.".into()),
                    last_transition_time: Some(Time(now)),
                    ..c.clone()
                }
            } else {
                c.clone()
            }
        })
        .collect();
    if !next.iter().any(|c| c.type_ == "Ready") {
        changed = true;
        next.push(NodeCondition {
            type_: "Ready".into(),
            status: "Unknown".into(),
            reason: Some("NodeStatusNeverUpdated".into()),
            message: Some("Kubelet never posted node status.".into()),
            last_transition_time: Some(Time(now)),
            last_heartbeat_time: None,
        });
    }
    changed.then_some(next)
}

/// The node's taints as its Ready status (`True`, `False`, `Unknown`, or none yet) calls for:
/// not-ready or unreachable, NoSchedule and NoExecute; other taints and the `timeAdded` of those
/// already there are kept. `None` when nothing changes.
pub fn taints(current: &[Taint], ready: Option<&str>, now: Timestamp) -> Option<Vec<Taint>> {
    let wanted: &[&str] = match ready {
        Some("True") => &[],
        Some("False") => &[NOT_READY],
        _ => &[UNREACHABLE],
    };
    let ours = |t: &Taint| {
        (t.key == NOT_READY || t.key == UNREACHABLE) && matches!(t.effect.as_str(), "NoSchedule" | "NoExecute")
    };
    let mut next: Vec<Taint> =
        current.iter().filter(|t| !ours(t) || wanted.contains(&t.key.as_str())).cloned().collect();
    for key in wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !next.iter().any(|t| t.key == *key && t.effect == effect) {
                next.push(Taint {
                    key: (*key).into(),
                    effect: effect.into(),
                    time_added: (effect == "NoExecute").then_some(Time(now)),
                    value: None,
                });
            }
        }
    }
    (next != current).then_some(next)
}

fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = match toleration.key.as_deref() {
        None | Some("") => toleration.operator.as_deref() == Some("Exists"),
        Some(k) => k == taint.key,
    };
    let value_ok = match toleration.operator.as_deref() {
        Some("Exists") => true,
        _ => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
    };
    effect_ok && key_ok && value_ok
}

/// What a node's NoExecute taints mean for one of its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// Tolerated for good (or no NoExecute taint).
    Never,
    /// Evict now: a taint is not tolerated, or its tolerationSeconds have run out.
    Now,
    /// Evict at this time unless the taint goes first.
    At(Timestamp),
}

/// Upstream's taint manager: the earliest end of the pod's tolerations of the node's NoExecute
/// taints, counted from each taint's `timeAdded`.
pub fn eviction(pod: &Pod, taints: &[Taint], now: Timestamp) -> Eviction {
    let tolerations = pod.spec.as_ref().and_then(|s| s.tolerations.as_deref()).unwrap_or_default();
    let mut earliest: Option<Timestamp> = None;
    for taint in taints.iter().filter(|t| t.effect == "NoExecute") {
        let matching: Vec<&Toleration> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return Eviction::Now;
        }
        // The shortest tolerationSeconds among those that match; none set means for ever.
        let Some(seconds) = matching.iter().filter_map(|t| t.toleration_seconds).min() else { continue };
        let added = taint.time_added.as_ref().map(|t| t.0).unwrap_or(now);
        let at = added + SignedDuration::from_secs(seconds.max(0));
        earliest = Some(earliest.map_or(at, |e| e.min(at)));
    }
    match earliest {
        None => Eviction::Never,
        Some(at) if at <= now => Eviction::Now,
        Some(at) => Eviction::At(at),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint { key: key.into(), effect: effect.into(), time_added: added.map(|s| Time(at(s))), value: None }
    }

    #[test]
    fn ready_status_calls_for_taints() {
        let other = taint("dedicated", "NoSchedule", None);
        type Case<'a> = (&'a [Taint], Option<&'a str>, Option<Vec<(&'a str, &'a str)>>);
        let cases: [Case; 5] = [
            (&[], Some("True"), None),
            (&[], Some("Unknown"), Some(vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")])),
            (&[], None, Some(vec![(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")])),
            (
                &[other.clone(), taint(UNREACHABLE, "NoSchedule", None), taint(UNREACHABLE, "NoExecute", Some(5))],
                Some("False"),
                Some(vec![("dedicated", "NoSchedule"), (NOT_READY, "NoSchedule"), (NOT_READY, "NoExecute")]),
            ),
            (
                &[other.clone(), taint(NOT_READY, "NoExecute", Some(5))],
                Some("True"),
                Some(vec![("dedicated", "NoSchedule")]),
            ),
        ];
        for (i, (current, ready, want)) in cases.into_iter().enumerate() {
            let got = taints(current, ready, at(100));
            let got: Option<Vec<(String, String)>> = got.map(|ts| ts.into_iter().map(|t| (t.key, t.effect)).collect());
            let want: Option<Vec<(String, String)>> =
                want.map(|w| w.into_iter().map(|(k, e)| (k.to_string(), e.to_string())).collect());
            assert_eq!(got, want, "case {i}");
        }
        let kept = [taint(UNREACHABLE, "NoSchedule", None), taint(UNREACHABLE, "NoExecute", Some(5))];
        assert_eq!(taints(&kept, Some("Unknown"), at(100)), None, "timeAdded kept, nothing to write");
    }

    #[test]
    fn tolerations_decide_when_a_pod_is_evicted() {
        let pod = |tolerations: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"spec": {"containers": [], "tolerations": tolerations}})).unwrap_or_default()
        };
        let unreachable = [taint(UNREACHABLE, "NoExecute", Some(100))];
        let default =
            pod(json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
        let forever = pod(json!([{"operator": "Exists"}]));
        let short_and_long = pod(json!([
            {"key": UNREACHABLE, "operator": "Exists", "tolerationSeconds": 600},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10},
        ]));
        let cases = [
            (pod(json!([])), &unreachable[..], 150, Eviction::Now),
            (default.clone(), &unreachable[..], 150, Eviction::At(at(400))),
            (default.clone(), &unreachable[..], 400, Eviction::Now),
            (default.clone(), &[][..], 150, Eviction::Never),
            (forever, &unreachable[..], 10_000, Eviction::Never),
            (short_and_long, &unreachable[..], 105, Eviction::At(at(110))),
        ];
        for (i, (p, taints, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(eviction(&p, taints, at(now)), want, "case {i}");
        }
    }

    #[test]
    fn a_silent_node_turns_unknown_once() {
        let ready = NodeCondition { type_: "Ready".into(), status: "True".into(), ..Default::default() };
        let disk = NodeCondition { type_: "DiskPressure".into(), status: "False".into(), ..Default::default() };
        let other = NodeCondition { type_: "NetworkUnavailable".into(), status: "False".into(), ..Default::default() };
        let next = unknown_conditions(&[ready, disk, other], at(100)).unwrap_or_default();
        let statuses: Vec<(&str, &str)> = next.iter().map(|c| (c.type_.as_str(), c.status.as_str())).collect();
        assert_eq!(statuses, [("Ready", "Unknown"), ("DiskPressure", "Unknown"), ("NetworkUnavailable", "False")]);
        assert_eq!(unknown_conditions(&next, at(200)), None);
        let never = unknown_conditions(&[], at(100)).unwrap_or_default();
        assert_eq!(never[0].reason.as_deref(), Some("NodeStatusNeverUpdated"));
    }
}

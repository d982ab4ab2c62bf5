//! ResourceQuota accounting, shared by the API server's quota admission and the controller that
//! keeps `status.used`: what one object counts for, by quota resource name (`pods`,
//! `requests.cpu`, `count/deployments.apps`…), and upstream's words when a quota is exceeded.
//! Amounts are nanounits, as [`crate::quantity`] parses them.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::Value;

use crate::quantity::{self, Format, ParsedQuantity};

const ONE: i128 = 1_000_000_000;

/// The count name of a kind: `count/pods`, `count/deployments.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() { format!("count/{plural}") } else { format!("count/{plural}.{group}") }
}

fn amount(v: &Value) -> i128 {
    v.as_str().and_then(|s| quantity::parse_quantity(s).ok()).map_or(0, |q| q.nanos())
}

/// A pod counts while it is neither finished nor being deleted.
fn pod_counts(pod: &Value) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending");
    !matches!(phase, "Succeeded" | "Failed") && pod.pointer("/metadata/deletionTimestamp").is_none()
}

/// A pod's requests or limits (`which`), the upstream way: the larger of the app containers'
/// sum and any one init container.
fn pod_amounts(pod: &Value, which: &str) -> BTreeMap<String, i128> {
    let of = |c: &Value| -> BTreeMap<String, i128> {
        c.pointer(&format!("/resources/{which}"))
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), amount(v))).collect())
            .unwrap_or_default()
    };
    let list =
        |field: &str| pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut total: BTreeMap<String, i128> = BTreeMap::new();
    for c in list("containers") {
        for (k, v) in of(&c) {
            *total.entry(k).or_default() += v;
        }
    }
    for c in list("initContainers") {
        for (k, v) in of(&c) {
            let t = total.entry(k).or_default();
            *t = (*t).max(v);
        }
    }
    total
}

/// What `obj`, of the kind `group`/`plural`, counts for in a quota.
pub fn usage(group: &str, plural: &str, obj: &Value) -> BTreeMap<String, i128> {
    let mut u = BTreeMap::new();
    if (group, plural) == ("", "pods") && !pod_counts(obj) {
        return u;
    }
    u.insert(count_name(group, plural), ONE);
    if !group.is_empty() {
        return u;
    }
    match plural {
        "pods" => {
            u.insert("pods".into(), ONE);
            for (name, v) in pod_amounts(obj, "requests") {
                if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    u.insert(name.clone(), v);
                }
                u.insert(format!("requests.{name}"), v);
            }
            for (name, v) in pod_amounts(obj, "limits") {
                u.insert(format!("limits.{name}"), v);
            }
        }
        "services" => {
            u.insert("services".into(), ONE);
            let kind = obj.pointer("/spec/type").and_then(Value::as_str).unwrap_or("ClusterIP");
            if matches!(kind, "NodePort" | "LoadBalancer") {
                let ports = obj.pointer("/spec/ports").and_then(Value::as_array).map_or(0, Vec::len);
                u.insert("services.nodeports".into(), ONE * i128::try_from(ports).unwrap_or(0));
            }
            if kind == "LoadBalancer" {
                u.insert("services.loadbalancers".into(), ONE);
            }
        }
        "persistentvolumeclaims" => {
            u.insert("persistentvolumeclaims".into(), ONE);
            let storage = obj.pointer("/spec/resources/requests/storage").map_or(0, amount);
            u.insert("requests.storage".into(), storage);
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            u.insert(plural.into(), ONE);
        }
        _ => {}
    }
    u
}

/// Parses a quota's `hard` or `used` map.
pub fn parse(map: &BTreeMap<String, Quantity>) -> BTreeMap<String, i128> {
    map.iter().map(|(k, q)| (k.clone(), quantity::parse(q).map_or(0, |p| p.nanos()))).collect()
}

/// Renders an amount for `status.used`: memory and storage in binary units, the rest decimal.
pub fn render(name: &str, nanos: i128) -> Quantity {
    let binary = ["memory", "storage", "ephemeral-storage"].iter().any(|s| name.ends_with(s));
    ParsedQuantity::from_nanos(nanos, if binary { Format::BinarySI } else { Format::DecimalSI }).to_quantity()
}

/// The resources of `hard` that `delta` would push past their limit, given `used`.
pub fn exceeded(
    hard: &BTreeMap<String, i128>,
    used: &BTreeMap<String, i128>,
    delta: &BTreeMap<String, i128>,
) -> Vec<String> {
    delta
        .iter()
        .filter(|(name, d)| {
            **d > 0 && hard.get(*name).is_some_and(|h| used.get(*name).copied().unwrap_or(0) + **d > *h)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Upstream's message: `exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2`.
pub fn exceeded_message(
    quota: &str,
    names: &[String],
    hard: &BTreeMap<String, i128>,
    used: &BTreeMap<String, i128>,
    delta: &BTreeMap<String, i128>,
) -> String {
    let list = |m: &BTreeMap<String, i128>| {
        names
            .iter()
            .map(|n| format!("{n}={}", render(n, m.get(n).copied().unwrap_or(0)).0))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!("exceeded quota: {quota}, requested: {}, used: {}, limited: {}", list(delta), list(used), list(hard))
}

/// Compute resources a quota limits that some container of the pod does not set (upstream
/// refuses such pods: the quota could not account for them).
pub fn unspecified(hard: &BTreeMap<String, i128>, pod: &Value) -> Vec<String> {
    let containers = pod.pointer("/spec/containers").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut missing = Vec::new();
    for (name, field) in [
        ("requests.cpu", "/resources/requests/cpu"),
        ("cpu", "/resources/requests/cpu"),
        ("requests.memory", "/resources/requests/memory"),
        ("memory", "/resources/requests/memory"),
        ("limits.cpu", "/resources/limits/cpu"),
        ("limits.memory", "/resources/limits/memory"),
    ] {
        if hard.contains_key(name) && containers.iter().any(|c| c.pointer(field).is_none()) {
            missing.push(name.to_string());
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn q(s: &str) -> i128 {
        quantity::parse_quantity(s).map_or(0, |p| p.nanos())
    }

    #[test]
    fn a_pod_counts_its_requests_limits_and_itself() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "1"}}},
                {"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "2"}}}],
        }});
        let u = usage("", "pods", &pod);
        assert_eq!(u.get("pods"), Some(&ONE));
        assert_eq!(u.get("count/pods"), Some(&ONE));
        assert_eq!(u.get("requests.cpu"), Some(&q("2")), "the init container's 2 beats the sum 500m");
        assert_eq!(u.get("cpu"), Some(&q("2")));
        assert_eq!(u.get("requests.memory"), Some(&q("128Mi")));
        assert_eq!(u.get("limits.cpu"), Some(&q("1")));
        let finished = json!({"spec": {"containers": []}, "status": {"phase": "Succeeded"}});
        assert!(usage("", "pods", &finished).is_empty());
    }

    #[test]
    fn other_kinds_count_by_name() {
        let svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc);
        assert_eq!((u.get("services"), u.get("services.nodeports")), (Some(&ONE), Some(&(2 * ONE))));
        let u = usage("apps", "deployments", &json!({}));
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(usage("", "persistentvolumeclaims", &pvc).get("requests.storage"), Some(&q("1Gi")));
    }

    #[test]
    fn exceeding_reads_like_upstream() {
        let hard = BTreeMap::from([("pods".to_string(), 2 * ONE), ("requests.memory".to_string(), q("1Gi"))]);
        let used = BTreeMap::from([("pods".to_string(), 2 * ONE), ("requests.memory".to_string(), q("512Mi"))]);
        let delta = BTreeMap::from([("pods".to_string(), ONE), ("requests.memory".to_string(), q("256Mi"))]);
        let over = exceeded(&hard, &used, &delta);
        assert_eq!(over, ["pods"]);
        assert_eq!(
            exceeded_message("q", &over, &hard, &used, &delta),
            "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
        );
        assert_eq!(render("requests.memory", q("512Mi")).0, "512Mi");
        let pod = json!({"spec": {"containers": [{"resources": {}}]}});
        assert_eq!(unspecified(&hard, &pod), ["requests.memory"]);
    }
}

//! How many replicas may run: HorizontalPodAutoscalers and PodDisruptionBudgets.

use api_types::k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, MetricSpec, MetricStatus, MetricTarget, MetricValueStatus,
};
use api_types::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use api_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api_types::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, NONE, UNKNOWN, UNSET};
use super::{AGE, Column, NAME, Printer, decode};

/// How many metrics TARGETS lists before ` + N more...`.
const METRICS_LISTED: usize = 2;

pub(super) static HORIZONTAL_POD_AUTOSCALER: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Reference", "The kind and name of what is scaled."),
        Column::string("Targets", "Each metric's current value against its target."),
        Column::string("MinPods", "The fewest replicas."),
        Column::integer("MaxPods", "The most replicas."),
        Column::integer("Replicas", "Replicas now."),
        AGE,
    ],
    cells: hpa_cells,
};

fn hpa_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let hpa: HorizontalPodAutoscaler = decode(object)?;
    let spec = hpa.spec.unwrap_or_default();
    let status = hpa.status.unwrap_or_default();
    let target = &spec.scale_target_ref;
    Ok(vec![
        format::name(&hpa.metadata).into(),
        format!("{}/{}", target.kind, target.name).into(),
        metrics(spec.metrics.as_deref().unwrap_or_default(), status.current_metrics.as_deref().unwrap_or_default())
            .into(),
        spec.min_replicas.map_or_else(|| UNSET.to_string(), |n| n.to_string()).into(),
        spec.max_replicas.into(),
        status.current_replicas.unwrap_or(0).into(),
        format::age(&hpa.metadata, now).into(),
    ])
}

/// The TARGETS cell: `current/target` per metric (`cpu: 40%/80%` for resources), the i-th
/// status reporting on the i-th metric.
fn metrics(specs: &[MetricSpec], statuses: &[MetricStatus]) -> String {
    if specs.is_empty() {
        return NONE.to_string();
    }
    let listed: Vec<String> =
        specs.iter().take(METRICS_LISTED).enumerate().map(|(i, spec)| metric(spec, statuses.get(i))).collect();
    let shown = listed.join(", ");
    if specs.len() > METRICS_LISTED { format!("{shown} + {} more...", specs.len() - METRICS_LISTED) } else { shown }
}

fn metric(spec: &MetricSpec, status: Option<&MetricStatus>) -> String {
    match spec.type_.as_str() {
        "Resource" => match &spec.resource {
            Some(source) => {
                let current = status.and_then(|s| s.resource.as_ref()).map(|s| &s.current);
                format!("{}: {}", source.name, against(&source.target, current, false))
            }
            None => UNKNOWN.to_string(),
        },
        "ContainerResource" => match &spec.container_resource {
            Some(source) => {
                let current = status.and_then(|s| s.container_resource.as_ref()).map(|s| &s.current);
                format!("{}: {}", source.name, against(&source.target, current, false))
            }
            None => UNKNOWN.to_string(),
        },
        "Pods" => match &spec.pods {
            Some(source) => {
                let current = status.and_then(|s| s.pods.as_ref()).map(|s| &s.current);
                against(&source.target, current, false)
            }
            None => UNKNOWN.to_string(),
        },
        "Object" => match &spec.object {
            Some(source) => {
                let current = status.and_then(|s| s.object.as_ref()).map(|s| &s.current);
                against(&source.target, current, true)
            }
            None => UNKNOWN.to_string(),
        },
        "External" => match &spec.external {
            Some(source) => {
                let current = status.and_then(|s| s.external.as_ref()).map(|s| &s.current);
                against(&source.target, current, true)
            }
            None => UNKNOWN.to_string(),
        },
        _ => "<unknown type>".to_string(),
    }
}

/// `current/target` for one metric: utilization in percent, an average value (marked `(avg)`
/// when `mark_average`: for object and external metrics, where it is not implied), or a value.
fn against(target: &MetricTarget, current: Option<&MetricValueStatus>, mark_average: bool) -> String {
    let quantity = |q: Option<&Quantity>| q.map_or_else(|| UNKNOWN.to_string(), |q| q.0.clone());
    match target.type_.as_str() {
        "Utilization" => {
            let now =
                current.and_then(|c| c.average_utilization).map_or_else(|| UNKNOWN.to_string(), |u| format!("{u}%"));
            let want = target.average_utilization.map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
            format!("{now}/{want}")
        }
        "AverageValue" => format!(
            "{}/{}{}",
            quantity(current.and_then(|c| c.average_value.as_ref())),
            quantity(target.average_value.as_ref()),
            if mark_average { " (avg)" } else { "" }
        ),
        _ => format!("{}/{}", quantity(current.and_then(|c| c.value.as_ref())), quantity(target.value.as_ref())),
    }
}

pub(super) static POD_DISRUPTION_BUDGET: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Min Available", "Pods that must stay available."),
        Column::string("Max Unavailable", "Pods that may be unavailable."),
        Column::integer("Allowed Disruptions", "Pods that may be evicted now."),
        AGE,
    ],
    cells: pdb_cells,
};

fn pdb_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let pdb: PodDisruptionBudget = decode(object)?;
    let spec = pdb.spec.unwrap_or_default();
    let int_or_string = |v: Option<IntOrString>| match v {
        Some(IntOrString::Int(n)) => n.to_string(),
        Some(IntOrString::String(s)) => s,
        None => "N/A".to_string(),
    };
    Ok(vec![
        format::name(&pdb.metadata).into(),
        int_or_string(spec.min_available).into(),
        int_or_string(spec.max_unavailable).into(),
        pdb.status.map_or(0, |s| s.disruptions_allowed).into(),
        format::age(&pdb.metadata, now).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    fn hpa(metrics: Value, current: Value) -> Value {
        json!({
            "metadata": {"name": "web", "creationTimestamp": ago(600)},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 2, "maxReplicas": 10, "metrics": metrics},
            "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": current},
        })
    }

    fn cpu(utilization: i32) -> Value {
        json!({"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": utilization}}})
    }

    #[test]
    fn prints_an_hpa_scaling_on_cpu() {
        assert_eq!(
            headers(&HORIZONTAL_POD_AUTOSCALER),
            ["Name", "Reference", "Targets", "MinPods", "MaxPods", "Replicas", "Age"]
        );
        let object = hpa(
            json!([cpu(80)]),
            json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 42}}}]),
        );
        assert_eq!(
            cells(&HORIZONTAL_POD_AUTOSCALER, &object),
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 42%/80%"),
                json!("2"),
                json!(10),
                json!(3),
                json!("10m")
            ]
        );
    }

    #[test]
    fn formats_hpa_targets_of_each_kind() {
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "1k"}}});
        let external = json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}});
        let object = json!({"type": "Object", "object": {"describedObject": {"kind": "Service", "name": "s"},
            "metric": {"name": "rps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let cases = [
            (json!(null), json!(null), "<none>"),
            (json!([object]), json!(null), "<unknown>/10 (avg)"),
            (json!([cpu(80)]), json!(null), "cpu: <unknown>/80%"),
            (
                json!([pods.clone()]),
                json!([{"type": "Pods", "pods": {"metric": {"name": "qps"}, "current": {"averageValue": "250"}}}]),
                "250/1k",
            ),
            (
                json!([cpu(50), pods.clone(), external.clone()]),
                json!(null),
                "cpu: <unknown>/50%, <unknown>/1k + 1 more...",
            ),
            (
                json!([external]),
                json!([{"type": "External", "external": {"metric": {"name": "queue"}, "current": {"value": "12"}}}]),
                "12/30",
            ),
        ];
        for (specs, current, want) in cases {
            assert_eq!(cells(&HORIZONTAL_POD_AUTOSCALER, &hpa(specs.clone(), current))[2], want, "{specs}");
        }
    }

    #[test]
    fn prints_a_pod_disruption_budget() {
        let object = json!({
            "metadata": {"name": "db", "creationTimestamp": ago(60)},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "db"}}},
            "status": {"disruptionsAllowed": 1, "currentHealthy": 3, "desiredHealthy": 2, "expectedPods": 3},
        });
        assert_eq!(
            cells(&POD_DISRUPTION_BUDGET, &object),
            [json!("db"), json!("2"), json!("N/A"), json!(1), json!("60s")]
        );
        let percent = json!({"metadata": {"name": "web"}, "spec": {"maxUnavailable": "25%"}});
        assert_eq!(cells(&POD_DISRUPTION_BUDGET, &percent)[1..4], [json!("N/A"), json!("25%"), json!(0)]);
    }
}

//! `metrics.k8s.io/v1beta1`: the resource metrics API that `kubectl top` and the
//! HorizontalPodAutoscaler read. Upstream serves it from metrics-server behind the aggregator;
//! here the API server answers it itself, asking each node's kubelet for `/stats/summary` (whose
//! CPU rates the kubelet already computes from two readings) when a request comes. Nothing is
//! stored: the objects are built from the summary and the cached Node and Pod objects.

use std::collections::BTreeMap;
use std::time::Duration;

use api_types::labels::LabelSelector;
use api_types::registry;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tracing::debug;

use super::{Api, Body, json_response};
use crate::error::Error;
use crate::request::{MetricsRequest, Query};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
/// How long one kubelet may take to answer before its node is left out of the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// The window the kubelet's CPU rate covers (its stats interval).
const WINDOW: &str = "10s";

/// The discovery document of `metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    let entry = |name: &str, kind: &str, namespaced: bool| json!({"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": ["get", "list"]});
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [entry("nodes", "NodeMetrics", false), entry("pods", "PodMetrics", true)],
    })
}

fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default()
}

/// `usageNanoCores` as a quantity in nanocores, as metrics-server writes it.
fn cpu(stats: &Value) -> Option<String> {
    stats.pointer("/cpu/usageNanoCores").and_then(Value::as_u64).map(|n| format!("{n}n"))
}

/// The working set in KiB, as metrics-server writes it.
fn memory(stats: &Value) -> Option<String> {
    stats.pointer("/memory/workingSetBytes").and_then(Value::as_u64).map(|b| format!("{}Ki", b / 1024))
}

fn timestamp(stats: &Value) -> Value {
    stats.pointer("/cpu/time").cloned().unwrap_or(Value::Null)
}

/// A NodeMetrics from the node object and its kubelet's summary; `None` until the kubelet has two
/// readings (no CPU rate yet), as metrics-server leaves such nodes out.
pub fn node_metrics(node: &Value, summary: &Value) -> Option<Value> {
    let stats = summary.get("node")?;
    let (cpu, memory) = (cpu(stats)?, memory(stats)?);
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {"name": node.pointer("/metadata/name")?, "labels": labels_of(node), "creationTimestamp": now()},
        "timestamp": timestamp(stats),
        "window": WINDOW,
        "usage": {"cpu": cpu, "memory": memory},
    }))
}

/// A PodMetrics from the pod object and its entry in the summary; `None` while any container
/// lacks a CPU rate.
pub fn pod_metrics(pod: &Value, stats: &Value) -> Option<Value> {
    let containers: Option<Vec<Value>> = stats["containers"]
        .as_array()?
        .iter()
        .map(|c| Some(json!({"name": c.get("name")?, "usage": {"cpu": cpu(c)?, "memory": memory(c)?}})))
        .collect();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "metadata": {
            "name": pod.pointer("/metadata/name")?,
            "namespace": pod.pointer("/metadata/namespace")?,
            "labels": labels_of(pod),
            "creationTimestamp": now(),
        },
        "timestamp": timestamp(stats),
        "window": WINDOW,
        "containers": containers?,
    }))
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"), "metadata": {}, "items": items})
}

impl Api {
    /// Answers a GET of `metrics.k8s.io/v1beta1` nodes or pods, one or a list.
    pub async fn resource_metrics(&self, req: &MetricsRequest, query: &Query) -> Result<Response<Body>, Error> {
        let selector = LabelSelector::parse(query.value("labelSelector").unwrap_or_default())
            .map_err(|e| Error::BadRequest(format!("unable to parse requirement: {e}")))?;
        let nodes_info = registry::by_plural("", "v1", "nodes").ok_or(Error::PathNotFound)?;
        let (nodes, _) = self.cache(nodes_info).snapshot(&crate::object::list_prefix(&self.root, nodes_info, None));
        let nodes: Vec<&Value> = nodes.iter().map(|n| n.value()).collect();
        if !req.pods {
            let wanted: Vec<&Value> = nodes
                .into_iter()
                .filter(|n| req.name.as_deref().is_none_or(|name| crate::object::name(n) == name))
                .filter(|n| selector.matches(&labels_of(n)))
                .collect();
            let summaries = self.summaries(&wanted).await;
            let items: Vec<Value> =
                wanted.iter().zip(&summaries).filter_map(|(n, s)| node_metrics(n, s.as_ref()?)).collect();
            return single_or_list(req, "NodeMetrics", "nodes", items);
        }
        let pods_info = registry::by_plural("", "v1", "pods").ok_or(Error::PathNotFound)?;
        let prefix = crate::object::list_prefix(&self.root, pods_info, req.namespace.as_deref());
        let (pods, _) = self.cache(pods_info).snapshot(&prefix);
        let pods: BTreeMap<(String, String), &Value> = pods
            .iter()
            .map(|p| p.value())
            .filter(|p| req.name.as_deref().is_none_or(|name| crate::object::name(p) == name))
            .filter(|p| selector.matches(&labels_of(p)))
            .map(|p| {
                ((crate::object::namespace(p).unwrap_or_default().to_string(), crate::object::name(p).to_string()), p)
            })
            .collect();
        // Only the nodes running a wanted pod are asked.
        let hosting: Vec<&Value> = nodes
            .into_iter()
            .filter(|n| {
                let name = crate::object::name(n);
                pods.values().any(|p| p.pointer("/spec/nodeName").and_then(Value::as_str) == Some(name))
            })
            .collect();
        let mut items = Vec::new();
        for summary in self.summaries(&hosting).await.into_iter().flatten() {
            for stats in summary["pods"].as_array().into_iter().flatten() {
                let key = (
                    stats.pointer("/podRef/namespace").and_then(Value::as_str).unwrap_or_default().to_string(),
                    stats.pointer("/podRef/name").and_then(Value::as_str).unwrap_or_default().to_string(),
                );
                let same_pod = |p: &&&Value| {
                    stats.pointer("/podRef/uid").and_then(Value::as_str) == crate::object::str_at(p, "/metadata/uid")
                };
                if let Some(metrics) = pods.get(&key).filter(same_pod).and_then(|p| pod_metrics(p, stats)) {
                    items.push(metrics);
                }
            }
        }
        items.sort_by_key(|m| (m["metadata"]["namespace"].to_string(), m["metadata"]["name"].to_string()));
        single_or_list(req, "PodMetrics", "pods", items)
    }

    /// Every node's `/stats/summary`, asked of all kubelets at once; `None` for a node whose
    /// kubelet did not answer in time (logged, not an error: the others still count).
    async fn summaries(&self, nodes: &[&Value]) -> Vec<Option<Value>> {
        let asks = nodes.iter().map(|node| async move {
            let name = crate::object::name(node);
            let ask = async {
                let (address, port) = super::connect::kubelet_endpoint(node)?;
                let request =
                    hyper::Request::get("/stats/summary").body(()).map_err(|e| Error::Internal(e.to_string()))?;
                let resp = self.kubelet.send(&address, port, request).await?;
                if !resp.status().is_success() {
                    return Err(Error::Internal(format!("kubelet answered {}", resp.status())));
                }
                let body = resp.into_body().collect().await.map_err(|e| Error::Internal(e.to_string()))?;
                serde_json::from_slice::<Value>(&body.to_bytes()).map_err(|e| Error::Internal(e.to_string()))
            };
            match tokio::time::timeout(SCRAPE_TIMEOUT, ask).await {
                Ok(Ok(summary)) => Some(summary),
                Ok(Err(e)) => {
                    debug!(node = name, error = %e, "no resource metrics from the kubelet");
                    None
                }
                Err(_) => {
                    debug!(node = name, "the kubelet did not answer for resource metrics in time");
                    None
                }
            }
        });
        futures::future::join_all(asks).await
    }
}

fn single_or_list(
    req: &MetricsRequest,
    kind: &str,
    plural: &str,
    mut items: Vec<Value>,
) -> Result<Response<Body>, Error> {
    match &req.name {
        None => Ok(json_response(StatusCode::OK, &list(kind, items))),
        Some(_) if items.len() == 1 => Ok(json_response(StatusCode::OK, &items.remove(0))),
        Some(name) => Err(Error::NotFound { resource: format!("{plural}.{GROUP}"), name: name.clone() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> Value {
        json!({
            "node": {"nodeName": "n1",
                "cpu": {"time": "2026-11-22T10:00:00Z", "usageNanoCores": 250_000_000u64},
                "memory": {"workingSetBytes": 2_048_000u64}},
            "pods": [
                {"podRef": {"name": "web", "namespace": "default", "uid": "u1"},
                 "containers": [{"name": "app", "cpu": {"time": "2026-11-22T10:00:00Z", "usageNanoCores": 5_000_000u64},
                                 "memory": {"workingSetBytes": 10_240u64}}]},
                {"podRef": {"name": "new", "namespace": "default", "uid": "u2"},
                 "containers": [{"name": "app", "cpu": {"usageCoreNanoSeconds": 9}, "memory": {"workingSetBytes": 1}}]},
            ],
        })
    }

    #[test]
    fn node_usage_is_nanocores_and_working_set_kibibytes() {
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let m = node_metrics(&node, &summary()).expect("metrics");
        assert_eq!(m["usage"], json!({"cpu": "250000000n", "memory": "2000Ki"}));
        assert_eq!((m["metadata"]["labels"]["zone"].as_str(), m["window"].as_str()), (Some("a"), Some("10s")));
        assert_eq!(m["timestamp"], "2026-11-22T10:00:00Z");
    }

    #[test]
    fn a_node_or_pod_without_a_cpu_rate_yet_is_left_out() {
        let node = json!({"metadata": {"name": "n1"}});
        assert!(node_metrics(&node, &json!({"node": {"memory": {"workingSetBytes": 1}}})).is_none());
        let pod = json!({"metadata": {"name": "new", "namespace": "default"}});
        assert!(pod_metrics(&pod, &summary()["pods"][1]).is_none());
    }

    #[test]
    fn pod_metrics_list_each_container() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}}});
        let m = pod_metrics(&pod, &summary()["pods"][0]).expect("metrics");
        assert_eq!(m["containers"], json!([{"name": "app", "usage": {"cpu": "5000000n", "memory": "10Ki"}}]));
        assert_eq!((m["kind"].as_str(), m["metadata"]["namespace"].as_str()), (Some("PodMetrics"), Some("default")));
    }

    #[test]
    fn discovery_lists_nodes_and_namespaced_pods() {
        let list = resource_list();
        assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
        let pods = &list["resources"][1];
        assert_eq!((pods["name"].as_str(), pods["namespaced"].as_bool()), (Some("pods"), Some(true)));
    }
}

//! The Endpoints of a Service, pure: its selected pods grouped into subsets by the ports they
//! serve, ready ones in `addresses`, the others in `notReadyAddresses`.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, Pod, Service};

use crate::{pods, services};

pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

/// A pod's address in a Service's endpoints (the hostname only when the pod's subdomain is the
/// Service, as upstream's DNS needs).
pub fn address(svc: &Service, pod: &Pod, ip: &str) -> EndpointAddress {
    let spec = pod.spec.as_ref();
    let subdomain_is_service = spec.and_then(|s| s.subdomain.as_deref()) == svc.metadata.name.as_deref();
    EndpointAddress {
        ip: ip.to_string(),
        hostname: spec.and_then(|s| s.hostname.clone()).filter(|_| subdomain_is_service),
        node_name: spec.and_then(|s| s.node_name.clone()),
        target_ref: Some(ObjectReference {
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            ..Default::default()
        }),
    }
}

/// The ports `pod` serves for `svc` (those whose targetPort resolves on it).
pub fn ports(svc: &Service, pod: &Pod) -> Vec<EndpointPort> {
    let service_ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
    let mut ports: Vec<EndpointPort> = service_ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPort {
                name: p.name.clone().filter(|n| !n.is_empty()),
                port: services::target_port(p, pod)?,
                protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                app_protocol: p.app_protocol.clone(),
            })
        })
        .collect();
    ports.sort_by(|a, b| (&a.name, a.port, &a.protocol).cmp(&(&b.name, b.port, &b.protocol)));
    ports
}

/// The subsets of `svc`'s Endpoints from the pods its selector matched.
pub fn subsets(svc: &Service, selected: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let has_ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).is_some_and(|p| !p.is_empty());
    // Subsets by their port list (serialized, to order them), ready and not-ready addresses.
    type Group = (Vec<EndpointPort>, Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in selected {
        let Some(ip) = services::endpoint_ip(pod) else { continue };
        if pod.metadata.deletion_timestamp.is_some() && !publish {
            continue;
        }
        let ports = ports(svc, pod);
        if has_ports && ports.is_empty() {
            continue;
        }
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let group = groups.entry(key).or_insert_with(|| (ports, Vec::new(), Vec::new()));
        let address = address(svc, pod, ip);
        if publish || pods::is_ready(pod) {
            group.1.push(address);
        } else {
            group.2.push(address);
        }
    }
    groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            not_ready.sort_by(|a, b| a.ip.cmp(&b.ip));
            EndpointSubset {
                addresses: (!ready.is_empty()).then_some(ready),
                not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
                ports: (!ports.is_empty()).then_some(ports),
            }
        })
        .collect()
}

/// The labels of the Endpoints (and EndpointSlices) of `svc`: its own, plus the headless mark.
pub fn labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    }
    labels
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc(extra: serde_json::Value) -> Service {
        let mut spec = json!({
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}, {"name": "metrics", "port": 9100, "targetPort": 9100}],
        });
        if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "ns"}, "spec": spec}))
            .unwrap_or_default()
    }

    fn pod(name: &str, ip: &str, ready: bool, http_port: Option<i32>) -> Arc<Pod> {
        let ports: Vec<serde_json::Value> =
            http_port.map(|p| json!({"name": "http", "containerPort": p})).into_iter().collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}")},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": ports}]},
                "status": {"phase": "Running", "podIP": ip,
                           "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap_or_default(),
        )
    }

    fn ips(addresses: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        addresses.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn pods_group_by_the_ports_they_serve_and_readiness_splits_addresses() {
        let pods = [
            pod("a", "10.0.0.2", true, Some(8080)),
            pod("b", "10.0.0.1", false, Some(8080)),
            pod("c", "10.0.0.3", true, None),
            pod("d", "", true, Some(8080)),
        ];
        let subsets = subsets(&svc(json!({})), &pods);
        assert_eq!(subsets.len(), 2, "{subsets:?}");
        let full = subsets.iter().find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 2)).cloned().unwrap_or_default();
        assert_eq!(ips(&full.addresses), ["10.0.0.2"]);
        assert_eq!(ips(&full.not_ready_addresses), ["10.0.0.1"]);
        let http = full.ports.unwrap_or_default().into_iter().find(|p| p.name.as_deref() == Some("http"));
        assert_eq!(http.map(|p| p.port), Some(8080));
        let metrics_only =
            subsets.iter().find(|s| s.ports.as_ref().is_some_and(|p| p.len() == 1)).cloned().unwrap_or_default();
        assert_eq!(ips(&metrics_only.addresses), ["10.0.0.3"], "a pod without the named port serves the numbered one");
    }

    #[test]
    fn publish_not_ready_addresses_and_terminating_pods() {
        let mut leaving = (*pod("x", "10.0.0.9", true, Some(8080))).clone();
        leaving.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let pods = [pod("b", "10.0.0.1", false, Some(8080)), Arc::new(leaving)];
        let normal = subsets(&svc(json!({})), &pods);
        assert_eq!(normal.len(), 1);
        assert_eq!(ips(&normal[0].not_ready_addresses), ["10.0.0.1"], "a terminating pod is left out");
        let published = subsets(&svc(json!({"publishNotReadyAddresses": true})), &pods);
        assert_eq!(ips(&published[0].addresses), ["10.0.0.1", "10.0.0.9"]);
    }

    #[test]
    fn a_headless_service_without_ports_lists_addresses_with_hostnames() {
        let service = svc(json!({"clusterIP": "None", "ports": null}));
        let mut named = (*pod("db-0", "10.0.0.5", true, None)).clone();
        if let Some(spec) = named.spec.as_mut() {
            spec.hostname = Some("db-0".into());
            spec.subdomain = Some("web".into());
        }
        let subsets = subsets(&service, &[Arc::new(named)]);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0].ports, None);
        let address = subsets[0].addresses.iter().flatten().next().cloned().unwrap_or_default();
        assert_eq!(address.hostname.as_deref(), Some("db-0"));
        assert_eq!(labels(&service).get(HEADLESS_LABEL).map(String::as_str), Some(""));
    }
}
